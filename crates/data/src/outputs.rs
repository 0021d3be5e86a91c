//! Embedding files: `.npy` (float32 `[n, d]`), `.jsonl` (`{"embedding": [...]}`
//! per line) or `.safetensors` (one float32 tensor `embeddings`).
//!
//! An [`EmbeddingWriter`] is opened before the work starts, so an unwritable
//! destination fails fast, and it commits by renaming its temporary file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tempfile::NamedTempFile;

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
    path: PathBuf,
    format: EmbeddingFormat,
    temp: NamedTempFile,
}

impl EmbeddingWriter {
    /// Creates the temporary file beside `path` (hidden, `.<name>.XXXX.tmp`).
    pub fn create(path: &Path) -> Result<Self, DataError> {
        let format = EmbeddingFormat::from_path(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|source| DataError::Io {
                path: path.into(),
                source,
            })?;
        Ok(Self {
            path: path.into(),
            format,
            temp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` (row-major `[n, dim]`) and renames the file into place.
    pub fn commit(self, data: &[f32], dim: usize) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: self.path.clone(),
            source,
        };
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(DataError::File {
                path: self.path.clone(),
                message: format!("{} values do not form rows of {dim}", data.len()),
            });
        }
        let rows = data.len() / dim;
        match self.format {
            EmbeddingFormat::Jsonl => {
                let mut out = BufWriter::new(self.temp.as_file());
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
                    tensor.write_npy(self.temp.path())
                } else {
                    candle_core::safetensors::save(&HashMap::from([(SAFETENSORS_NAME, tensor)]), self.temp.path())
                };
                written.map_err(|e| io(std::io::Error::other(e)))?;
            }
        }
        self.temp.as_file().sync_all().map_err(io)?;
        // Temporary files are private (0600); outputs get the usual 0644.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.temp.path(), std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        self.temp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}
