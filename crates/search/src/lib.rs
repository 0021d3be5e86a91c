//! # reasonembed-search
//!
//! Finding documents: exact top-k inner-product search over embeddings
//! (blocked matrix products, bounded memory, per-query exclusions),
//! query-side BM25 as BRIGHT computes it, the on-disk cache of corpus
//! embeddings, and the incrementally updated passage index behind
//! `reasonembed search`, and its export to PostgreSQL + pgvector.
//!
//! It calls the models crate to embed and the data crate to read files; it
//! knows nothing of metrics, benchmarks or the command line.

pub mod bm25;
pub mod cache;
mod error;
pub mod index;
pub mod passages;
pub mod pgvector;
pub mod progress;
pub mod topk;

pub use error::{Error, Result};
pub use progress::{Progress, Silent};
