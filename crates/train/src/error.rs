//! One error type for training; every variant about a file names it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting, or a combination of settings, that cannot train.
    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Data(#[from] reasonembed_data::DataError),

    #[error(transparent)]
    Model(#[from] reasonembed_models::Error),

    #[error(transparent)]
    Eval(#[from] reasonembed_eval::Error),

    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A file that is there but cannot be used (a checkpoint of another run,
    /// unreadable tensors, a plot that cannot be drawn).
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    /// Training cannot go on (no complete batch, a non-finite loss).
    #[error("{0}")]
    Run(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to one naming `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// Maps any error about `path` to one naming it.
pub(crate) fn file<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::File {
        path: path.into(),
        message: e.to_string(),
    }
}
