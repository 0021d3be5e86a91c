//! Corpus embeddings on disk, so that re-running an evaluation or a search
//! re-embeds nothing.
//!
//! An entry is keyed by the model's identity (a hash of its weight files and
//! every setting that changes a vector: pooling, normalisation, max length,
//! padding, attention, EOS, precision) and by the exact texts, instruction
//! included. It is stored as chunks of 1,024 rows, each written atomically as
//! it is finished, so an interrupted run resumes where it stopped and never
//! loses or duplicates work.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reasonembed_data::atomic;
use reasonembed_models::{Embedder, Embeddings};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};

/// Rows per chunk file: the unit of resumption.
pub const CHUNK: usize = 1024;

#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    /// `None` disables caching (`--no-cache`).
    dir: Option<PathBuf>,
}

impl EmbeddingCache {
    /// A cache under `dir` (e.g. `~/.cache/reasonembed/embeddings`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir: Some(dir) }
    }

    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// The embeddings of `texts` (row-major `[n, dim]`), from the cache where
    /// present; `progress(done, total)` follows the work. `tokens` counts only
    /// the texts embedded by this call.
    pub fn embed(
        &self,
        embedder: &Embedder,
        texts: &[&str],
        batch_size: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let total = texts.len();
        let dim = embedder.dimensions();
        let Some(root) = &self.dir else {
            return Ok(embedder.encode(texts, batch_size, |done, _| progress(done, total))?);
        };
        let entry = root.join(entry_key(embedder, texts)?);
        std::fs::create_dir_all(&entry).map_err(io(&entry))?;
        let mut data = Vec::with_capacity(total * dim);
        let mut tokens = 0;
        for (i, chunk) in texts.chunks(CHUNK).enumerate() {
            let path = entry.join(format!("chunk-{i:06}.npy"));
            let rows = match read_chunk(&path, chunk.len(), dim)? {
                Some(rows) => rows,
                None => {
                    let offset = i * CHUNK;
                    let fresh = embedder.encode(chunk, batch_size, |done, _| progress(offset + done, total))?;
                    write_chunk(&path, &fresh.data, dim)?;
                    tokens += fresh.tokens;
                    fresh.data
                }
            };
            data.extend_from_slice(&rows);
            progress(data.len() / dim, total);
        }
        // Only the texts embedded now count tokens; cached chunks cost none.
        Ok(Embeddings { data, dim, tokens })
    }
}

/// A finished chunk, or `None` when it was never written. A file of the wrong
/// shape (another format version, a damaged disk) is an error naming it.
fn read_chunk(path: &Path, rows: usize, dim: usize) -> Result<Option<Vec<f32>>> {
    if !path.exists() {
        return Ok(None);
    }
    let invalid = |message: String| Error::Invalid {
        path: path.into(),
        message,
    };
    let tensor =
        Tensor::read_npy(path).map_err(|e| invalid(format!("unreadable cache chunk ({e}); delete it to recompute")))?;
    if tensor.dims() != [rows, dim] {
        return Err(invalid(format!(
            "cache chunk has shape {:?}, expected [{rows}, {dim}]; delete it to recompute",
            tensor.dims()
        )));
    }
    let values = tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Some(values))
}

fn write_chunk(path: &Path, rows: &[f32], dim: usize) -> Result<()> {
    let file = atomic::AtomicFile::create(path)?;
    let tensor = Tensor::from_slice(rows, (rows.len() / dim, dim), &Device::Cpu).map_err(|e| Error::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    tensor.write_npy(file.temp_path()).map_err(|e| Error::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(file.commit()?)
}

/// The cache entry name: a hash of the model's identity and of the texts.
fn entry_key(embedder: &Embedder, texts: &[&str]) -> Result<String> {
    let mut settings = serde_json::to_value(embedder.info()).expect("model info serialises");
    // Where the model lives does not change its vectors; its weights do.
    settings.as_object_mut().map(|o| o.remove("path"));
    let mut hasher = Sha256::new();
    hasher.update(weights_fingerprint(embedder.weight_files())?.as_bytes());
    hasher.update(settings.to_string().as_bytes());
    for text in texts {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of the weight files, memoised beside the cache by path, size
/// and modification time so that multi-gigabyte checkpoints are hashed once.
pub fn weights_fingerprint(files: &[PathBuf]) -> Result<String> {
    let memo_dir = reasonembed_models::source::cache_dir().join("fingerprints");
    let mut hasher = Sha256::new();
    for file in files {
        let meta = std::fs::metadata(file).map_err(io(file))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let absolute = std::fs::canonicalize(file).map_err(io(file))?;
        let stamp = hex::encode(Sha256::digest(format!(
            "{}\0{}\0{mtime}",
            absolute.display(),
            meta.len()
        )));
        let memo = memo_dir.join(stamp);
        let sha = match std::fs::read_to_string(&memo) {
            Ok(sha) if sha.len() == 64 => sha,
            _ => {
                let sha = reasonembed_models::source::sha256_file(file)?;
                // The memo only saves time; failing to write it is not an error.
                if std::fs::create_dir_all(&memo_dir).is_ok() {
                    let _ = atomic::write(&memo, sha.as_bytes());
                }
                sha
            }
        };
        hasher.update(sha.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}
