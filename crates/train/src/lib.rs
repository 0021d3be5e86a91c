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
//! It calls the models crate for the network and the data crate for files;
//! it knows nothing of the command line.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod export;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod sampler;
pub mod step;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{Summary, train};
