//! Corpus embeddings on disk, so that re-running an evaluation or a search
//! re-embeds nothing.
//!
//! An entry is keyed by the model's identity (the bytes of its checkpoint and
//! adapter, every setting that changes a vector, the embedding code's
//! version: see `reasonembed_models::identity`), by the resolved encode
//! settings (prompt, max length, normalisation) and by the exact texts. It is stored as chunks of 1,024 rows, each written atomically as
//! it is finished, so an interrupted run resumes where it stopped and never
//! loses or duplicates work.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reasonembed_data::atomic;
use reasonembed_models::{Embedder, Embeddings, EncodeOptions, EncodeSettings};
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

    /// The embeddings of `texts` (row-major `[n, dim]`) under `options`, from
    /// the cache where present; `progress(done, total)` follows the work.
    /// `tokens` counts only the texts embedded by this call.
    pub fn embed(
        &self,
        embedder: &Embedder,
        texts: &[&str],
        options: &EncodeOptions,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let total = texts.len();
        let dim = embedder.dimensions();
        let Some(root) = &self.dir else {
            return Ok(embedder.encode(texts, options, |done, _| progress(done, total))?);
        };
        let settings = embedder.resolve(options)?;
        let entry = root.join(entry_key(embedder, &settings, texts)?);
        std::fs::create_dir_all(&entry).map_err(io(&entry))?;
        atomic::remove_stale_temps(&entry);
        let mut data = Vec::with_capacity(total * dim);
        let (mut tokens, mut reused) = (0, 0);
        for (i, chunk) in texts.chunks(CHUNK).enumerate() {
            let path = entry.join(format!("chunk-{i:06}.npy"));
            let rows = match read_chunk(&path, chunk.len(), dim) {
                Some(rows) => {
                    reused += chunk.len();
                    rows
                }
                None => {
                    let offset = i * CHUNK;
                    let fresh = embedder.encode(chunk, options, |done, _| progress(offset + done, total))?;
                    write_chunk(&path, &fresh.data, dim)?;
                    tokens += fresh.tokens;
                    fresh.data
                }
            };
            data.extend_from_slice(&rows);
            progress(data.len() / dim, total);
        }
        // Only the texts embedded now count tokens; cached chunks cost none.
        Ok(Embeddings {
            data,
            dim,
            tokens,
            reused,
        })
    }
}

/// A finished chunk, or `None` when it was never written or cannot be
/// trusted (unreadable, another shape, a non-finite value): such a chunk is
/// recomputed and replaced, never served.
fn read_chunk(path: &Path, rows: usize, dim: usize) -> Option<Vec<f32>> {
    if !path.exists() {
        return None;
    }
    let values = Tensor::read_npy(path)
        .ok()
        .filter(|t| t.dims() == [rows, dim])
        .and_then(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok())
        .filter(|v| v.iter().all(|x| x.is_finite()));
    if values.is_none() {
        tracing::warn!("{}: damaged cache chunk; recomputing it", path.display());
    }
    values
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

/// The cache entry name: a hash of the model's identity, the resolved encode
/// settings (prompt, max length, normalisation) and the texts.
fn entry_key(embedder: &Embedder, settings: &EncodeSettings, texts: &[&str]) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(embedder.identity()?.as_bytes());
    hasher.update(serde_json::to_string(settings).expect("settings serialise").as_bytes());
    for text in texts {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}
