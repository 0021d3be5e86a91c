//! The trained model in the formats the ecosystem reads:
//!
//! * `model/`: a sentence-transformers folder (the base's configs and
//!   tokenizer, `model.safetensors` with the trained weights under their
//!   original names, `modules.json`, the pooling config, and the training
//!   instructions as prompts), written for full fine-tuning, and for LoRA
//!   with `merge_lora` (the adapter folded into the base weights);
//! * `adapter/`: for LoRA, a PEFT adapter (`adapter_config.json` and
//!   `adapter_model.safetensors`).
//!
//! Each folder is assembled under a temporary name and renamed into place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reasonembed_models::{Embedder, ModelFolder, Pooling};
use serde_json::json;

use crate::config::{Finetune, TrainConfig};
use crate::data::Domain;
use crate::error::{Error, file, io};

/// Writes the outputs; returns (model folder, adapter folder).
pub fn write(
    folder: &ModelFolder,
    embedder: &Embedder,
    cfg: &TrainConfig,
    domains: &[Domain],
) -> Result<(Option<PathBuf>, Option<PathBuf>), Error> {
    let params: HashMap<String, Tensor> = embedder
        .trainable_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let adapter = match cfg.finetune {
        Finetune::Lora => Some(in_place(&cfg.output.join("adapter"), |dir| {
            write_adapter(dir, &params, cfg)
        })?),
        Finetune::Full => None,
    };
    let model = if cfg.finetune == Finetune::Full || cfg.merge_lora {
        Some(in_place(&cfg.output.join("model"), |dir| {
            write_model(dir, folder, embedder, cfg, domains, &params)
        })?)
    } else {
        None
    };
    Ok((model, adapter))
}

/// Builds `dest` in a temporary sibling folder, then renames it into place.
fn in_place(dest: &Path, build: impl FnOnce(&Path) -> Result<(), Error>) -> Result<PathBuf, Error> {
    let parent = dest.parent().expect("an output folder has a parent");
    let temp = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    build(temp.path())?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io(dest))?;
    }
    std::fs::rename(temp.keep(), dest).map_err(io(dest))?;
    Ok(dest.to_path_buf())
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), Error> {
    candle_core::safetensors::save(tensors, path).map_err(file(path))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("JSON serialises")).map_err(io(path))
}

fn write_adapter(dir: &Path, params: &HashMap<String, Tensor>, cfg: &TrainConfig) -> Result<(), Error> {
    // PEFT names adapter tensors after the wrapped model's modules.
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, t)| (format!("base_model.model.{n}"), t.clone()))
        .collect();
    save(&tensors, &dir.join("adapter_model.safetensors"))?;
    let targets: Vec<&str> = cfg.lora_target_modules.iter().map(String::as_str).collect();
    write_json(
        &dir.join("adapter_config.json"),
        &json!({
            "peft_type": "LORA",
            "task_type": "FEATURE_EXTRACTION",
            "base_model_name_or_path": cfg.model,
            "r": cfg.lora_rank,
            "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout,
            "target_modules": if targets == ["all-linear"] { json!("all-linear") } else { json!(targets) },
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "modules_to_save": null,
        }),
    )
}

/// The base checkpoint's tensors with the trained values: trained weights
/// replace theirs (full fine-tuning), LoRA pairs are folded in (`W + s·B·A`).
fn trained_weights(
    folder: &ModelFolder,
    params: &HashMap<String, Tensor>,
    cfg: &TrainConfig,
) -> Result<HashMap<String, Tensor>, Error> {
    let mut weights = HashMap::new();
    for path in &folder.weight_files {
        weights.extend(candle_core::safetensors::load(path, &Device::Cpu).map_err(file(path))?);
    }
    let scale = cfg.lora_alpha / cfg.lora_rank as f64;
    for (name, value) in params {
        if let Some(prefix) = name.strip_suffix(".lora_A.weight") {
            let b = &params[&format!("{prefix}.lora_B.weight")];
            let target = format!("{prefix}.weight");
            let base = weights.get(&target).ok_or_else(|| Error::File {
                path: folder.weight_files[0].clone(),
                message: format!("the base checkpoint has no '{target}'"),
            })?;
            let delta = (b.matmul(value)? * scale)?;
            let merged = (base + delta.to_dtype(base.dtype())?)?;
            weights.insert(target, merged);
        } else if !name.ends_with(".lora_B.weight") {
            weights.insert(name.clone(), value.to_device(&Device::Cpu)?);
        }
    }
    Ok(weights)
}

fn write_model(
    dir: &Path,
    folder: &ModelFolder,
    embedder: &Embedder,
    cfg: &TrainConfig,
    domains: &[Domain],
    params: &HashMap<String, Tensor>,
) -> Result<(), Error> {
    copy_configs(&folder.root, dir)?;
    let transformer = folder
        .transformer_dir
        .strip_prefix(&folder.root)
        .unwrap_or(Path::new(""));
    save(
        &trained_weights(folder, params, cfg)?,
        &dir.join(transformer).join("model.safetensors"),
    )?;

    let info = embedder.info();
    let transformer_path = transformer.display().to_string();
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": transformer_path, "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if info.normalize {
        modules.push(
            json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}),
        );
    }
    write_json(&dir.join("modules.json"), &json!(modules))?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": info.dimensions,
            "pooling_mode_cls_token": info.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": info.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": info.pooling == Pooling::LastToken,
            "include_prompt": true,
        }),
    )?;
    write_json(
        &dir.join(transformer).join("sentence_bert_config.json"),
        &json!({"max_seq_length": cfg.passage_max_length.max(cfg.query_max_length), "do_lower_case": false}),
    )?;
    // The instructions the model was trained with become prompts: one per
    // domain, and `query` for the default instruction.
    let mut prompts: BTreeMap<String, String> = embedder.prompts().clone();
    for domain in domains {
        if let Some(prompt) = domain.records.first().and_then(|r| r.prompt.as_deref()) {
            prompts.insert(domain.name.clone(), cfg.query_prompt(prompt));
        }
    }
    if !cfg.instruction.is_empty() {
        prompts.insert("query".into(), cfg.query_prompt(&cfg.instruction));
    }
    prompts.entry("document".into()).or_default();
    write_json(
        &dir.join("config_sentence_transformers.json"),
        &json!({"prompts": prompts, "default_prompt_name": null, "similarity_fn_name": "cosine", "reasonembed": {"trained_with": cfg.loss, "finetune": cfg.finetune}}),
    )
}

/// Copies everything but weights, hidden files and model cards.
fn copy_configs(from: &Path, to: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let skip = name.starts_with('.')
            || name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || name.ends_with(".bin")
            || name == "README.md";
        if skip {
            continue;
        }
        let target = to.join(&name);
        if path.is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            copy_configs(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(io(&target))?;
        }
    }
    Ok(())
}
