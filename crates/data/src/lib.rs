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
//! leaves a partial file under the requested name. It also holds the
//! [`Progress`] trait through which long jobs report, and the reading of a
//! folder of text files. This crate knows nothing of models, search or
//! metrics, and depends on no other crate of the workspace.

pub mod atomic;
pub mod bright;
mod error;
pub mod inputs;
pub mod jsonl;
mod lines;
pub mod outputs;
pub mod progress;
pub mod retrieval;
pub mod sources;
pub mod trec;

pub use error::{DataError, Location};
pub use inputs::{InputOptions, read_texts};
pub use outputs::{EmbeddingFormat, EmbeddingWriter};
pub use progress::{Progress, Silent};
pub use retrieval::{BeirDataset, Document, Query};
pub use trec::{Qrels, Run};
