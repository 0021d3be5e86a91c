//! # reasonembed-eval
//!
//! Evaluation exactly as the reference implementations compute it: retrieval
//! metrics equal to trec_eval / pytrec_eval, the BRIGHT protocol (exclusions
//! before the cut, binary qrels, per-task then unweighted means, its
//! instruction sets), BEIR-style collections, and the reports that go with
//! them (results.json, Markdown tables, TREC runs, published rows to compare).
//!
//! Depends on models (the embedder), search (exact top-k, BM25, the
//! embedding cache) and data (the collections); it knows nothing of training
//! or the command line.

pub mod beir;
pub mod bright;
mod error;
pub mod instructions;
pub mod metrics;
pub mod published;
pub mod report;
pub mod retriever;
pub mod trec_eval;

pub use error::{Error, Result};
