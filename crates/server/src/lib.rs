//! # reasonembed-server
//!
//! `reasonembed serve`: a thin HTTP layer (OpenAI and text-embeddings-inference
//! request shapes) over a core that owns the model and batches requests under
//! a token budget, as text-embeddings-inference is built. Depends on models
//! (the encode contract), search (the index behind `POST /search`) and synth
//! (the LLM that reasons about a query when a request asks); it knows
//! nothing of the command line.

pub mod api;
mod conn;
pub mod core;
pub mod metrics;

use std::net::SocketAddr;

use std::sync::Arc;

use metrics::Metrics;
use reasonembed_models::Embedder;
use reasonembed_search::index::{PassageIndex, Retrieval, SearchHit};
use reasonembed_search::pgvector::PgVectorIndex;
use reasonembed_synth::query_reasoning::QueryReasoner;

pub use api::{Limits, Settings};

/// What `POST /search` searches: a local index (`--index`) or a pgvector
/// table (`--pgvector`).
pub enum SearchIndex {
    Local(PassageIndex),
    Pgvector(Box<PgVectorIndex>),
}

/// `POST /search`: the index, and the LLM that reasons about a query first
/// when a request says `"reason": true` (`serve --reason`).
pub struct Search {
    pub index: SearchIndex,
    pub reasoner: Option<QueryReasoner>,
}

impl SearchIndex {
    /// The embedder settings the passages were embedded with.
    pub fn model(&self) -> &serde_json::Value {
        match self {
            Self::Local(index) => index.model(),
            Self::Pgvector(index) => index.model(),
        }
    }

    /// Whether it can fuse with BM25 (a local index keeps BM25 terms).
    pub fn has_bm25(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The best `k` passages for a query (its vector, and its text for the
    /// BM25 side of a hybrid search); blocking (a database round trip for
    /// pgvector, which searches dense only).
    pub fn search(
        &self,
        vector: &[f32],
        text: &str,
        k: usize,
        retrieval: Retrieval,
    ) -> reasonembed_search::Result<Vec<SearchHit>> {
        match (self, retrieval) {
            (Self::Local(index), _) => Ok(index.search_with(vector, &[text.to_string()], k, retrieval).remove(0)),
            (Self::Pgvector(index), Retrieval::Dense) => index.search(vector, k),
            (Self::Pgvector(_), Retrieval::Hybrid(_)) => Err(reasonembed_search::Error::Unsupported(
                "hybrid search needs a local index (--index); a pgvector table holds no BM25 terms".into(),
            )),
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
    search: Option<Search>,
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
        let app = api::router(served, metrics, settings, search);
        let stop = conn::stop_signal()?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready(listener.local_addr()?);
        conn::serve(listener, app, read_timeout, stop).await;
        Ok(())
    })
}
