//! A model's identity: one key for everything that decides its vectors, so
//! that caches and indexes keyed by it can never serve a stale or foreign
//! vector.
//!
//! The key covers the bytes of the checkpoint (weights, tokenizer and every
//! configuration file that is read), the bytes of a LoRA adapter, the
//! resolved settings (pooling, normalisation default, padding side,
//! attention, EOS, precision) and [`EMBEDDING_CODE_VERSION`]. Where the files
//! live does not count: a moved model keeps its identity.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The version of the embedding code's numerics. Bump it whenever a change
/// alters any vector (tokenisation, kernels, pooling, prompts, text cuts), so
/// that an upgrade never reuses vectors computed by older code.
pub const EMBEDDING_CODE_VERSION: u32 = 6;

/// The sha256 of `files`, in order. Large files are hashed once: the digest is
/// memoised under the cache by path, size and modification time.
pub fn files_fingerprint(files: &[PathBuf]) -> Result<String> {
    let memo_dir = crate::source::cache_dir().join("fingerprints");
    let mut hasher = Sha256::new();
    for file in files {
        let sha = memoised_sha256(file, &memo_dir)?;
        hasher.update(sha.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

fn memoised_sha256(file: &Path, memo_dir: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: file.into(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(io)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let absolute = std::fs::canonicalize(file).map_err(io)?;
    let stamp = hex::encode(Sha256::digest(format!(
        "{}\0{}\0{mtime}",
        absolute.display(),
        meta.len()
    )));
    let memo = memo_dir.join(stamp);
    if let Ok(sha) = std::fs::read_to_string(&memo)
        && sha.len() == 64
    {
        return Ok(sha);
    }
    let sha = crate::source::sha256_file(file)?;
    // The memo only saves time; failing to write it is not an error.
    if std::fs::create_dir_all(memo_dir).is_ok() {
        let temp = memo.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&temp, sha.as_bytes()).is_ok() {
            let _ = std::fs::rename(&temp, &memo);
        }
    }
    Ok(sha)
}

/// The identity key of a model given its files and resolved settings.
pub fn identity_key(
    model_files: &[PathBuf],
    adapter_files: &[PathBuf],
    settings: &serde_json::Value,
) -> Result<String> {
    let adapter = match adapter_files {
        [] => serde_json::Value::Null,
        files => files_fingerprint(files)?.into(),
    };
    let key = serde_json::json!({
        "code": EMBEDDING_CODE_VERSION,
        "model": files_fingerprint(model_files)?,
        "adapter": adapter,
        "settings": settings,
    });
    Ok(hex::encode(Sha256::digest(key.to_string().as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_byte_and_setting_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "weights").unwrap();
        std::fs::write(&b, "adapter").unwrap();
        let settings = serde_json::json!({"pooling": "mean"});
        let base = identity_key(std::slice::from_ref(&a), &[], &settings).unwrap();
        let with_adapter = identity_key(std::slice::from_ref(&a), std::slice::from_ref(&b), &settings).unwrap();
        assert_ne!(base, with_adapter);
        let other = identity_key(std::slice::from_ref(&a), &[], &serde_json::json!({"pooling": "cls"})).unwrap();
        assert_ne!(base, other);
        // Same size, new bytes (and so a new mtime): the memo must not hide it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&b, "adapteR").unwrap();
        let retrained = identity_key(std::slice::from_ref(&a), std::slice::from_ref(&b), &settings).unwrap();
        assert_ne!(with_adapter, retrained);
    }
}
