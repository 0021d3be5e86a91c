//! # reasonembed-search
//!
//! Finding documents: exact top-k inner-product search over embeddings
//! (blocked matrix products, bounded memory, per-query exclusions),
//! query-side BM25 as BRIGHT computes it, the on-disk cache of corpus
//! embeddings, and the incrementally updated passage index behind
//! `reasonembed search`, and its export to PostgreSQL + pgvector.
//!
//! Depends on models (to embed) and data (to read files, to report progress);
//! it knows nothing of metrics, benchmarks, training or the command line.

pub mod bm25;
pub mod cache;
mod error;
pub mod fusion;
pub mod index;
pub mod passages;
pub mod pgvector;
pub mod topk;

pub use error::{Error, Result};
