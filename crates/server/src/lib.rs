//! # reasonembed-server
//!
//! `reasonembed serve`: a thin HTTP layer (OpenAI and text-embeddings-inference
//! request shapes) over a core that owns the model and batches requests under
//! a token budget, as text-embeddings-inference is built. Depends on models
//! (the encode contract) and search (the index behind `POST /search`); it
//! knows nothing of the command line.

pub mod api;
mod conn;
pub mod core;
pub mod metrics;

use std::net::SocketAddr;

use std::sync::Arc;

use metrics::Metrics;
use reasonembed_models::Embedder;
use reasonembed_search::index::{PassageIndex, SearchHit};
use reasonembed_search::pgvector::PgVectorIndex;

pub use api::{Limits, Settings};

/// What `POST /search` searches: a local index (`--index`) or a pgvector
/// table (`--pgvector`).
pub enum SearchIndex {
    Local(PassageIndex),
    Pgvector(Box<PgVectorIndex>),
}

impl SearchIndex {
    /// The embedder settings the passages were embedded with.
    pub fn model(&self) -> &serde_json::Value {
        match self {
            Self::Local(index) => index.model(),
            Self::Pgvector(index) => index.model(),
        }
    }

    /// The `k` nearest passages; blocking (a database round trip for pgvector).
    pub fn search(&self, query: &[f32], k: usize) -> reasonembed_search::Result<Vec<SearchHit>> {
        match self {
            Self::Local(index) => Ok(index.search(query, k).remove(0)),
            Self::Pgvector(index) => index.search(query, k),
        }
    }
}

/// Serves on `addr` until SIGTERM or Ctrl-C, finishing requests in flight.
/// `ready(addr)` is called once the socket listens (with the real port when
/// `addr` asked for port 0).
/// `models` are served by name (`settings.model_name` is the default), each
/// with its own batching worker.
pub fn serve(
    models: Vec<(String, Embedder)>,
    settings: Settings,
    index: Option<SearchIndex>,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let served = models
            .into_iter()
            .map(|(name, embedder)| {
                let (infer, embedder) = core::Infer::start(embedder, settings.limits.max_batch_tokens, metrics.clone());
                (name, api::Served { infer, embedder })
            })
            .collect();
        let read_timeout = settings.limits.read_timeout;
        let app = api::router(served, metrics, settings, index);
        let stop = conn::stop_signal()?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready(listener.local_addr()?);
        conn::serve(listener, app, read_timeout, stop).await;
        Ok(())
    })
}
