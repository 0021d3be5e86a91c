//! Checkpoints: the trainable parameters, the optimiser's moments and the
//! step reached, written into a temporary folder and renamed into place, so a
//! run killed at any moment leaves only whole checkpoints. The data order and
//! the dropout masks are functions of (seed, step), so the step is all the
//! position a resumed run needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Error, Result, file, io};
use crate::optim::{AdamW, Moments};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Optimiser steps completed.
    pub step: u64,
    pub total_steps: u64,
    pub config: TrainConfig,
}

/// `<output>/checkpoints/step-NNNNNNNN`.
pub fn dir_for(output: &Path, step: u64) -> PathBuf {
    output.join("checkpoints").join(format!("step-{step:08}"))
}

/// The checkpoint with the highest step under `output`, if any.
pub fn latest(output: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(output.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")) && p.join("state.json").exists()
        })
        .collect();
    found.sort();
    found.pop()
}

pub fn save(output: &Path, params: &[(String, Var)], optimizer: &AdamW, state: &State) -> Result<PathBuf> {
    let final_dir = dir_for(output, state.step);
    let parent = final_dir.parent().expect("a checkpoint folder has a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let temp = tempfile::Builder::new()
        .prefix(".step-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let tensors: HashMap<String, Tensor> = params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    let params_path = temp.path().join("params.safetensors");
    candle_core::safetensors::save(&tensors, &params_path).map_err(file(&params_path))?;
    let mut moments = HashMap::new();
    for (name, m) in &optimizer.state {
        moments.insert(format!("m.{name}"), m.m.clone());
        moments.insert(format!("v.{name}"), m.v.clone());
    }
    moments.insert("steps".into(), Tensor::new(&[optimizer.steps as f64], &Device::Cpu)?);
    let moments_path = temp.path().join("optimizer.safetensors");
    candle_core::safetensors::save(&moments, &moments_path).map_err(file(&moments_path))?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    std::fs::write(temp.path().join("state.json"), json).map_err(io(temp.path()))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    let kept = temp.keep();
    std::fs::rename(&kept, &final_dir).map_err(io(&final_dir))?;
    Ok(final_dir)
}

/// Restores parameters and optimiser from `dir`; returns its state.
pub fn load(dir: &Path, params: &[(String, Var)], optimizer: &mut AdamW) -> Result<State> {
    let state_path = dir.join("state.json");
    let state: State =
        serde_json::from_slice(&std::fs::read(&state_path).map_err(io(&state_path))?).map_err(file(&state_path))?;
    let device = params.first().map(|(_, v)| v.device().clone()).unwrap_or(Device::Cpu);
    let params_path = dir.join("params.safetensors");
    let saved = candle_core::safetensors::load(&params_path, &device).map_err(file(&params_path))?;
    for (name, var) in params {
        let value = saved.get(name).ok_or_else(|| Error::File {
            path: params_path.clone(),
            message: format!("no parameter '{name}' in the checkpoint (another model or finetune mode?)"),
        })?;
        var.set(value).map_err(|e| file(&params_path)(format!("{name}: {e}")))?;
    }
    let moments_path = dir.join("optimizer.safetensors");
    let moments = candle_core::safetensors::load(&moments_path, &device).map_err(file(&moments_path))?;
    optimizer.state.clear();
    for (name, _) in params {
        if let (Some(m), Some(v)) = (moments.get(&format!("m.{name}")), moments.get(&format!("v.{name}"))) {
            optimizer.state.insert(
                name.clone(),
                Moments {
                    m: m.clone(),
                    v: v.clone(),
                },
            );
        }
    }
    optimizer.steps = moments
        .get("steps")
        .and_then(|t| t.to_vec1::<f64>().ok())
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0) as u64;
    Ok(state)
}
