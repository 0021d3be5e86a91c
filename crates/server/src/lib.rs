//! # reasonembed-server
//!
//! `reasonembed serve`: a thin HTTP layer (OpenAI and text-embeddings-inference
//! request shapes) over a core that owns the model and batches requests under
//! a token budget, as text-embeddings-inference is built. It calls the models
//! crate; it knows nothing of the command line.

pub mod api;
pub mod core;
pub mod metrics;

use std::net::SocketAddr;

use std::sync::Arc;

use metrics::Metrics;
use reasonembed_models::Embedder;
use reasonembed_search::index::PassageIndex;

pub use api::{Limits, Settings};

/// Serves on `addr` until Ctrl-C, finishing requests in flight.
/// `ready(addr)` is called once the socket listens (with the real port when
/// `addr` asked for port 0).
/// `models` are served by name (`settings.model_name` is the default), each
/// with its own batching worker.
pub fn serve(
    models: Vec<(String, Embedder)>,
    settings: Settings,
    index: Option<PassageIndex>,
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
        let app = api::router(served, metrics, settings, index);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready(listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}
