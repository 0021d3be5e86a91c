//! # reasonembed-data
//!
//! File formats at the edges of the pipeline: texts to embed (`.txt`,
//! `.jsonl`), embedding outputs (`.npy`, `.jsonl`, `.safetensors`), retrieval
//! collections (BEIR folders, BRIGHT in its Hugging Face layout, corpus and
//! query JSONL files) and TREC qrels and runs.
//!
//! Every reading error names the file, the line (or row) and, for JSON, the
//! field. Every output is written to a hidden temporary file beside its
//! destination and renamed into place, so a failed or interrupted run never
//! leaves a partial file under the requested name. This crate knows nothing
//! of models, search or metrics.

pub mod atomic;
pub mod bright;
mod error;
pub mod inputs;
pub mod jsonl;
mod lines;
pub mod outputs;
pub mod retrieval;
pub mod trec;

pub use error::{DataError, Location};
pub use inputs::{InputOptions, read_texts};
pub use outputs::{EmbeddingFormat, EmbeddingWriter};
pub use retrieval::{BeirDataset, Document, Query};
pub use trec::{Qrels, Run};
