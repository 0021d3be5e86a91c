use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Data(#[from] reasonembed_data::DataError),
    #[error(transparent)]
    Model(#[from] reasonembed_models::Error),
    #[error(transparent)]
    Search(#[from] reasonembed_search::Error),
    #[error("{0}")]
    Config(String),
    #[error("LLM: {0}")]
    Llm(#[from] crate::llm::LlmError),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}
