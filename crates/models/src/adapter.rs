//! LoRA adapters saved in the PEFT layout (`adapter_config.json` and
//! `adapter_model.safetensors`, tensors named `base_model.model.<module>.lora_A.weight`),
//! as `reasonembed train` and PEFT write them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde_json::Value;

use crate::error::{Error, Result, read_json};
use crate::lora::LoraConfig;

/// The files of an adapter folder that decide its vectors.
pub fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    vec![dir.join("adapter_config.json"), dir.join("adapter_model.safetensors")]
}

/// The LoRA settings of an adapter folder.
pub fn read_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join("adapter_config.json");
    let v: Value = read_json(&path)?;
    let invalid = |message: &str| Error::Invalid {
        path: path.clone(),
        message: message.into(),
    };
    if v.get("peft_type").and_then(Value::as_str).is_some_and(|t| t != "LORA") {
        return Err(invalid("only LORA adapters are supported"));
    }
    let rank = v.get("r").and_then(Value::as_u64).ok_or_else(|| invalid("no 'r'"))? as usize;
    let alpha = v
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| invalid("no 'lora_alpha'"))?;
    let target_modules = match v.get("target_modules") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        _ => return Err(invalid("no 'target_modules'")),
    };
    let dropout = v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    Ok(LoraConfig {
        rank,
        alpha,
        dropout,
        target_modules,
    })
}

/// Sets the adapter `vars` (named as the model creates them) from the folder's weights.
pub fn load_weights(dir: &Path, vars: &[(String, Var)], device: &Device) -> Result<()> {
    let path = dir.join("adapter_model.safetensors");
    let weights_err = |message: String| Error::Weights {
        path: path.clone(),
        message,
    };
    let saved: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, device).map_err(|e| weights_err(e.to_string()))?;
    if saved.len() != vars.len() {
        return Err(weights_err(format!(
            "{} tensors for {} adapter weights of this model",
            saved.len(),
            vars.len()
        )));
    }
    for (name, var) in vars {
        let value = saved
            .get(&format!("base_model.model.{name}"))
            .ok_or_else(|| weights_err(format!("no tensor for '{name}'")))?;
        var.set(&value.to_dtype(var.dtype())?)
            .map_err(|e| weights_err(format!("{name}: {e}")))?;
    }
    Ok(())
}
