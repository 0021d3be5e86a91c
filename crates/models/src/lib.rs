//! # reasonembed-models
//!
//! Text-embedding models: the backbones (BERT, Qwen3, Qwen2, Llama) written on
//! candle primitives so the same code serves inference and training (LoRA or
//! full fine-tuning), the attention masks for padded batches, pooling, model
//! folders in the Hugging Face / sentence-transformers layout, and where
//! models come from (local folders, built-ins fetched on first use, the Hub).
//!
//! This crate owns everything from text to vector, including the encode
//! contract (prompts, truncation, batching, normalisation: [`encode`]) and a
//! model's identity ([`identity`]) that keys every cache. On the CPU,
//! inference takes the packed path (`packed.rs`, feature `mkl`): unpadded
//! rows through MKL GEMMs (bf16 on AMX through our own kernel, `amx.rs`)
//! and fused passes, tested against the backbones'
//! candle ops; training in f32 takes backward passes written by hand on the
//! same rows ([`hand`]), tested against candle's autograd. Of the workspace it depends only on `reasonembed-mkl` (the
//! BLAS it calls), and knows nothing of files of texts, search, training
//! loops or the command line: those stages call it.

pub mod adapter;
#[cfg(feature = "mkl")]
mod amx;
pub mod attention;
pub mod backbone;
pub mod batch;
pub mod bert;
pub mod decoder;
pub mod device;
pub mod embedder;
pub mod encode;
pub mod error;
pub mod folder;
#[cfg(feature = "mkl")]
pub mod hand;
#[cfg(feature = "hub")]
mod hub;
pub mod identity;
pub mod llama;
pub mod lora;
mod mkl;
pub mod nn;
pub mod ops;
#[cfg(feature = "mkl")]
mod packed;
pub mod params;
pub mod pooling;
pub mod qwen2;
pub mod qwen3;
pub mod rope;
pub mod source;
pub mod tokenizer;

pub use backbone::Architecture;
pub use batch::{Attention, PaddingSide, TokenBatch};
pub use embedder::{Embedder, EmbedderOptions, Embeddings, EosPolicy, Kernels, MatmulPrecision, ModelInfo};
pub use encode::{EncodeOptions, EncodeSettings, Prompt, Side, with_instruction};
pub use error::{Error, Result};
pub use folder::ModelFolder;
pub use lora::LoraConfig;
pub use ops::Mode;
pub use params::Trainable;
pub use pooling::Pooling;
