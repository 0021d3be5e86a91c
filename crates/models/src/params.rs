//! How checkpoint tensors become model parameters: frozen (memory-mapped,
//! no gradient), fully trainable (each tensor a `Var` registered in a
//! `VarMap` under its checkpoint name), or frozen with LoRA adapters.

use std::path::PathBuf;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::lora::LoraConfig;
use crate::nn::Weights;

/// Which parameters receive gradients.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Trainable {
    /// Inference only.
    #[default]
    Nothing,
    /// Full fine-tuning: every weight of the backbone.
    All,
    /// LoRA: the base is frozen; adapters are trained.
    Lora(LoraConfig),
}

/// Loads every requested tensor from the checkpoint as a fresh `Var`.
struct TrainableBackend {
    checkpoint: MmapedSafetensors,
    vars: VarMap,
}

impl SimpleBackend for TrainableBackend {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.vars.data().lock().expect("VarMap lock poisoned");
        if let Some(var) = vars.get(name) {
            return Ok(var.as_tensor().clone());
        }
        let tensor = self.checkpoint.load(name, dev)?.to_dtype(dtype)?;
        if tensor.shape() != &shape {
            candle_core::bail!(
                "shape mismatch for {name}: expected {shape:?}, found {:?}",
                tensor.shape()
            );
        }
        let var = Var::from_tensor(&tensor)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.checkpoint.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.checkpoint.get(name).is_ok()
    }
}

/// Opens `files` and returns the weight source for the backbone plus the
/// `VarMap` holding whatever is trainable (empty for inference).
pub fn open(
    files: &[PathBuf],
    trainable: &Trainable,
    dtype: DType,
    device: &Device,
) -> crate::Result<(Weights, VarMap)> {
    for file in files {
        // Opened one by one first so that a corrupt shard is named.
        // SAFETY: the files are memory-mapped read-only; as everywhere with
        // mmap, they must not be truncated while the model is alive.
        unsafe { MmapedSafetensors::new(file) }.map_err(|e| crate::Error::Weights {
            path: file.clone(),
            message: e.to_string(),
        })?;
    }
    let weights_err = |e: candle_core::Error| crate::Error::Weights {
        path: files[0].clone(),
        message: e.to_string(),
    };
    // SAFETY: as above.
    let checkpoint = unsafe { MmapedSafetensors::multi(files) }.map_err(weights_err)?;
    let vars = VarMap::new();
    let weights = match trainable {
        Trainable::All => {
            let backend = TrainableBackend {
                checkpoint,
                vars: vars.clone(),
            };
            Weights::new(VarBuilder::from_backend(Box::new(backend), dtype, device.clone()))
        }
        Trainable::Nothing | Trainable::Lora(_) => {
            Weights::new(VarBuilder::from_backend(Box::new(checkpoint), dtype, device.clone()))
        }
    };
    let weights = match trainable {
        // Adapters stay in f32 whatever the base precision: they are the
        // master copy the optimiser updates.
        Trainable::Lora(config) => {
            weights.with_lora(config.clone(), VarBuilder::from_varmap(&vars, DType::F32, device))
        }
        _ => weights,
    };
    Ok((weights, vars))
}
