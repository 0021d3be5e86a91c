//! # reasonembed-data
//!
//! File formats at the edges of the pipeline: reading texts to embed (`.txt`,
//! one text per line, or `.jsonl` with a text field) and writing embeddings
//! (`.npy`, `.jsonl`, `.safetensors`).
//!
//! Every reading error names the file, the line and, for JSON, the field.
//! Every output is written to a hidden temporary file beside its destination
//! and renamed into place, so a failed or interrupted run never leaves a
//! partial file under the requested name. This crate knows nothing of models.

mod error;
pub mod inputs;
pub mod outputs;

pub use error::{DataError, Location};
pub use inputs::{InputOptions, read_texts};
pub use outputs::{EmbeddingFormat, EmbeddingWriter};
