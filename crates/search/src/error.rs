use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] reasonembed_models::Error),
    #[error(transparent)]
    Data(#[from] reasonembed_data::DataError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A PostgreSQL / pgvector failure, with what we were doing.
    #[error("PostgreSQL ({what}): {message}")]
    Postgres { what: String, message: String },
    /// A search this index cannot do.
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}
