//! Embedding files: `.npy` (float32 `[n, d]`), `.jsonl` (`{"embedding": [...]}`
//! per line) or `.safetensors` (one float32 tensor `embeddings`).
//!
//! An [`EmbeddingWriter`] is opened before the work starts, so an unwritable
//! destination fails fast, and it commits by renaming its temporary file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::atomic::AtomicFile;
use crate::error::DataError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    Npy,
    Jsonl,
    Safetensors,
}

impl EmbeddingFormat {
    pub fn from_path(path: &Path) -> Result<Self, DataError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(Self::Npy),
            Some("jsonl") => Ok(Self::Jsonl),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => Err(DataError::File {
                path: path.into(),
                message: "unknown output format: expected .npy, .jsonl or .safetensors".into(),
            }),
        }
    }
}

/// The safetensors tensor name of the embedding matrix.
pub const SAFETENSORS_NAME: &str = "embeddings";

pub struct EmbeddingWriter {
    file: AtomicFile,
    format: EmbeddingFormat,
}

impl EmbeddingWriter {
    /// Opens the temporary file beside `path`, so an unwritable destination
    /// fails before any work is done.
    pub fn create(path: &Path) -> Result<Self, DataError> {
        let format = EmbeddingFormat::from_path(path)?;
        Ok(Self {
            file: AtomicFile::create(path)?,
            format,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Writes `data` (row-major `[n, dim]`) and renames the file into place.
    pub fn commit(self, data: &[f32], dim: usize) -> Result<(), DataError> {
        let path = self.file.path().to_path_buf();
        let io = |source| DataError::Io {
            path: path.clone(),
            source,
        };
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(DataError::File {
                path: path.clone(),
                message: format!("{} values do not form rows of {dim}", data.len()),
            });
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(DataError::File {
                path: path.clone(),
                message: format!(
                    "row {} holds a non-finite value ({}); nothing was written",
                    i / dim + 1,
                    data[i]
                ),
            });
        }
        let rows = data.len() / dim;
        match self.format {
            EmbeddingFormat::Jsonl => {
                let mut out = BufWriter::new(self.file.as_file());
                for row in data.chunks(dim) {
                    serde_json::to_writer(&mut out, &serde_json::json!({ "embedding": row }))
                        .map_err(|e| io(std::io::Error::other(e)))?;
                    out.write_all(b"\n").map_err(io)?;
                }
                out.flush().map_err(io)?;
            }
            EmbeddingFormat::Npy | EmbeddingFormat::Safetensors => {
                let tensor =
                    Tensor::from_slice(data, (rows, dim), &Device::Cpu).map_err(|e| io(std::io::Error::other(e)))?;
                let written = if self.format == EmbeddingFormat::Npy {
                    tensor.write_npy(self.file.temp_path())
                } else {
                    candle_core::safetensors::save(&HashMap::from([(SAFETENSORS_NAME, tensor)]), self.file.temp_path())
                };
                written.map_err(|e| io(std::io::Error::other(e)))?;
            }
        }
        self.file.commit()
    }
}
