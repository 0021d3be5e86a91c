//! # reasonembed-train
//!
//! Redapter (Chen et al., ACL 2026): contrastive training in which each
//! query's InfoNCE loss is weighted by its reasoning intensity
//! `RI = L(q) / L(q′)`, exactly as the authors' release computes it; plain
//! InfoNCE for ReasonEmbed-basic; GradCache so that a batch of 1,024 passages
//! fits in memory; LoRA or full fine-tuning with AdamW, warm-up and decay and
//! gradient clipping; deterministic data order and dropout; checkpoints that
//! resume bit for bit; and the trained model written as a
//! sentence-transformers folder and a PEFT adapter.
//!
//! Depends on models (the network), data (files, progress), eval (the
//! evaluation during training) and search (the embedding cache type eval
//! takes); it knows nothing of the command line.

pub mod checkpoint;
pub mod config;
pub mod data;
mod error;
pub mod export;
pub mod log;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod sampler;
pub mod step;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Error, Result};
pub use trainer::{Summary, train};
