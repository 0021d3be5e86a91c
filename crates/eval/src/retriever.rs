//! Scoring a whole corpus for a set of queries: dense (an embedder, exact
//! search, cached corpus embeddings), BM25 as BRIGHT computes it, or both
//! fused ([`Fusion`]), optionally after an LLM has reasoned about each query
//! ([`QueryRewriter`]).
//!
//! A corpus may repeat ids and texts. As in BRIGHT, a repeated id keeps the
//! text of its last row (its score overwrites the earlier ones there); each
//! distinct text is embedded once and its vector shared by every id that has
//! it. BM25 statistics are taken over all rows, as gensim does in BRIGHT.

use std::collections::{HashMap, HashSet};

use reasonembed_data::Document;
use reasonembed_data::Progress;
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::bm25::{Bm25Index, Bm25Params};
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_search::fusion::Fusion;
use reasonembed_search::topk::{Hit, search, top_k_of};
use serde::Serialize;

use crate::error::Result;

/// Counts a result file records for every task.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CorpusStats {
    pub rows: usize,
    pub distinct_ids: usize,
    pub id_collisions: usize,
    pub distinct_texts: usize,
}

pub struct Corpus {
    /// Distinct ids, in order of first appearance.
    pub ids: Vec<String>,
    /// Position of each id in `ids`, built once (exclusions look ids up per query).
    index: HashMap<String, u32>,
    /// The row holding each id's text (its last row).
    id_row: Vec<usize>,
    /// The distinct text of each id.
    id_text: Vec<usize>,
    texts: Vec<String>,
    rows: Vec<String>,
    pub stats: CorpusStats,
}

impl Corpus {
    pub fn new(docs: Vec<Document>) -> Self {
        let mut index: HashMap<String, u32> = HashMap::new();
        let (mut ids, mut id_row) = (Vec::new(), Vec::new());
        for (row, doc) in docs.iter().enumerate() {
            match index.get(&doc.id) {
                Some(&i) => id_row[i as usize] = row,
                None => {
                    index.insert(doc.id.clone(), ids.len() as u32);
                    ids.push(doc.id.clone());
                    id_row.push(row);
                }
            }
        }
        let mut text_index: HashMap<&str, usize> = HashMap::new();
        let mut texts = Vec::new();
        let id_text = id_row
            .iter()
            .map(|&row| {
                let text = docs[row].text.as_str();
                *text_index.entry(text).or_insert_with(|| {
                    texts.push(text.to_string());
                    texts.len() - 1
                })
            })
            .collect();
        let stats = CorpusStats {
            rows: docs.len(),
            distinct_ids: ids.len(),
            id_collisions: docs.len() - ids.len(),
            distinct_texts: texts.len(),
        };
        let rows = docs.into_iter().map(|d| d.text).collect();
        Self {
            ids,
            index,
            id_row,
            id_text,
            texts,
            rows,
            stats,
        }
    }

    /// Row indices of `ids` in this corpus; ids it does not hold are ignored.
    pub fn indices<'a>(&self, ids: impl Iterator<Item = &'a String>) -> HashSet<u32> {
        ids.filter_map(|id| self.index.get(id).copied()).collect()
    }
}

pub enum Retriever {
    Dense(Box<DenseRetriever>),
    Bm25(Bm25Params),
    /// Both, each keeping its best `k`, fused into one best `k`.
    Hybrid {
        dense: Box<DenseRetriever>,
        bm25: Bm25Params,
        fusion: Fusion,
    },
}

/// Rewrites queries before retrieval (query-time reasoning): one text per
/// query, in order. Implemented outside this crate (the LLM lives in synth).
pub trait QueryRewriter {
    fn rewrite(&self, queries: &[String], progress: &mut dyn Progress) -> std::result::Result<Vec<String>, String>;
    /// What a report records of it (model, prompt, counts).
    fn describe(&self) -> serde_json::Value;
}

/// The queries of one retrieval: as written (what BM25 gets, as in BRIGHT),
/// and as the embedder gets them (an instruction template applied) with the
/// embedder's prompt.
pub struct Queries<'a> {
    pub raw: &'a [String],
    pub dense: &'a [String],
    pub prompt: &'a Prompt,
}

/// A ranked list: corpus id indices with scores, best first.
pub type Ranking = Vec<(u32, f64)>;

pub struct DenseRetriever {
    pub embedder: Embedder,
    pub cache: EmbeddingCache,
    pub batch_size: usize,
    pub query_max_length: Option<usize>,
    pub doc_max_length: Option<usize>,
}

impl Retriever {
    /// What a report records of this retriever: the embedder's description,
    /// BM25's parameters, or both with the fusion.
    pub fn describe(&self, spec: &str) -> Result<serde_json::Value> {
        Ok(match self {
            Self::Dense(d) => d.describe(spec)?,
            Self::Bm25(p) => serde_json::json!({ "spec": "bm25", "k1": p.k1, "b": p.b }),
            Self::Hybrid { dense, bm25, fusion } => {
                let mut described = dense.describe(spec)?;
                described["bm25"] = serde_json::json!({ "k1": bm25.k1, "b": bm25.b });
                described["fusion"] = fusion.to_string().into();
                described
            }
        })
    }

    /// Whether queries go to an embedder (and so get the instruction set).
    pub fn embeds(&self) -> bool {
        !matches!(self, Self::Bm25(_))
    }

    /// The prompt queries get under `prompt`, resolved now so that an
    /// unknown prompt name fails before any work (none for BM25).
    pub fn query_prompt(&self, prompt: &Prompt) -> Result<String> {
        Ok(match self {
            Self::Dense(d) | Self::Hybrid { dense: d, .. } => {
                d.embedder.resolve(&EncodeOptions::query(prompt.clone()))?.prompt
            }
            Self::Bm25(_) => String::new(),
        })
    }

    /// The best `k` corpus ids (as indices into `corpus.ids`) for each query,
    /// excluded ids removed before the cut.
    pub fn retrieve(
        &self,
        corpus: &Corpus,
        queries: &Queries,
        exclusions: &[HashSet<u32>],
        k: usize,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Ranking>> {
        let ranking = |hits: Vec<Hit>| hits.into_iter().map(|h| (h.index, h.score as f64)).collect();
        Ok(match self {
            Self::Dense(dense) => dense
                .retrieve(corpus, queries.dense, queries.prompt, exclusions, k, progress)?
                .into_iter()
                .map(ranking)
                .collect(),
            Self::Bm25(params) => bm25(corpus, queries.raw, *params, exclusions, k, progress)
                .into_iter()
                .map(ranking)
                .collect(),
            Self::Hybrid {
                dense,
                bm25: params,
                fusion,
            } => {
                let dense = dense.retrieve(corpus, queries.dense, queries.prompt, exclusions, k, progress)?;
                let sparse = bm25(corpus, queries.raw, *params, exclusions, k, progress);
                dense.iter().zip(&sparse).map(|(d, s)| fusion.fuse(d, s, k)).collect()
            }
        })
    }
}

/// BRIGHT's BM25: every row scored, each id taking its last row's score.
fn bm25(
    corpus: &Corpus,
    queries: &[String],
    params: Bm25Params,
    exclusions: &[HashSet<u32>],
    k: usize,
    progress: &mut dyn Progress,
) -> Vec<Vec<Hit>> {
    progress.start("BM25 index", 1);
    let rows: Vec<&str> = corpus.rows.iter().map(String::as_str).collect();
    let index = Bm25Index::build(&rows, params);
    progress.finish();
    progress.start("queries", queries.len());
    let empty = HashSet::new();
    let hits = queries
        .iter()
        .enumerate()
        .map(|(q, query)| {
            let row_scores = index.scores(query);
            let scores: Vec<f32> = corpus.id_row.iter().map(|&row| row_scores[row]).collect();
            progress.update(q + 1);
            top_k_of(&scores, k, exclusions.get(q).unwrap_or(&empty))
        })
        .collect();
    progress.finish();
    hits
}

impl DenseRetriever {
    /// The model as given (`spec`), its settings and identity, and the
    /// per-side max lengths.
    fn describe(&self, spec: &str) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "spec": spec,
            "info": self.embedder.info(),
            "identity": self.embedder.identity()?,
            "query_max_length": self.query_max_length,
            "doc_max_length": self.doc_max_length,
            "batch_size": self.batch_size,
        }))
    }

    fn retrieve(
        &self,
        corpus: &Corpus,
        queries: &[String],
        prompt: &Prompt,
        exclusions: &[HashSet<u32>],
        k: usize,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Vec<Hit>>> {
        let texts: Vec<&str> = corpus.texts.iter().map(String::as_str).collect();
        let docs = EncodeOptions::document()
            .with_max_length(self.doc_max_length)
            .with_batch_size(self.batch_size);
        let docs = self.embed("documents", &texts, &docs, progress)?;
        let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
        let options = EncodeOptions::query(prompt.clone())
            .with_max_length(self.query_max_length)
            .with_batch_size(self.batch_size);
        let queries = self.embed("queries", &queries, &options, progress)?;
        let dim = self.embedder.dimensions();
        // One vector per id: distinct texts fanned out.
        let mut by_id = Vec::with_capacity(corpus.ids.len() * dim);
        for &t in &corpus.id_text {
            by_id.extend_from_slice(&docs[t * dim..(t + 1) * dim]);
        }
        progress.start("search", 1);
        let hits = search(&queries, &by_id, dim, k, exclusions);
        progress.finish();
        Ok(hits)
    }

    fn embed(
        &self,
        label: &str,
        texts: &[&str],
        options: &EncodeOptions,
        progress: &mut dyn Progress,
    ) -> Result<Vec<f32>> {
        progress.start(label, texts.len());
        let vectors = self
            .cache
            .embed(&self.embedder, texts, options, |done, _| progress.update(done))?
            .data;
        progress.finish();
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        Document {
            id: id.into(),
            text: text.into(),
        }
    }

    #[test]
    fn repeated_ids_keep_their_last_text_and_texts_are_shared() {
        let corpus = Corpus::new(vec![
            doc("a", "one"),
            doc("b", "two"),
            doc("a", "three"),
            doc("c", "two"),
        ]);
        assert_eq!(corpus.ids, vec!["a", "b", "c"]);
        assert_eq!(
            corpus.stats,
            CorpusStats {
                rows: 4,
                distinct_ids: 3,
                id_collisions: 1,
                distinct_texts: 2
            }
        );
        assert_eq!(corpus.texts[corpus.id_text[0]], "three");
        assert_eq!(corpus.id_text[1], corpus.id_text[2]);
        assert_eq!(
            corpus.indices(["c".to_string(), "zzz".to_string()].iter()),
            HashSet::from([2])
        );
    }
}
