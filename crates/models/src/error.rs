//! One error type for loading and running models; every variant that concerns
//! a file names it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: file not found{}", path.display(), hint_suffix(hint))]
    MissingFile { path: PathBuf, hint: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: invalid JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    #[error("{}: cannot load tokenizer: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },

    #[error("{}: cannot read weights: {message}", path.display())]
    Weights { path: PathBuf, message: String },

    #[error("{}: checksum mismatch: expected sha256 {expected}, found {found}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("unknown model '{spec}': not a folder, a built-in model ({builtins}) or a Hugging Face id (owner/name)")]
    UnknownModel { spec: String, builtins: String },

    #[error("cannot fetch {what}: {message}")]
    Fetch { what: String, message: String },

    #[error("invalid input: {0}")]
    Input(String),

    #[error("input {index} has {tokens} tokens; the model takes at most {max}")]
    TooLong { index: usize, tokens: usize, max: usize },

    #[error("{0}")]
    NonFinite(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a file, naming it in the error.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            path: path.into(),
            hint: String::new(),
        },
        _ => Error::Io {
            path: path.into(),
            source,
        },
    })
}

/// Reads and parses a JSON file, naming it in the error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.into(),
        source,
    })
}
