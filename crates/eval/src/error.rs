#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Search(#[from] reasonembed_search::Error),
    #[error(transparent)]
    Model(#[from] reasonembed_models::Error),
    #[error(transparent)]
    Data(#[from] reasonembed_data::DataError),
    /// The data break a rule of the protocol (e.g. a gold id is also excluded).
    #[error("{0}")]
    Protocol(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
