//! Query-side BM25 exactly as BRIGHT computes its BM25 baseline (gensim's
//! `LuceneBM25Model` over pyserini's English analysis): the query is weighted
//! like a document and the score is the dot product of the two weight vectors.
//!
//! * analysis: [`analysis`], Lucene's StandardTokenizer, English possessive
//!   filter, lower-casing, English stop words and Porter stemmer ([`porter`]);
//! * `idf(t) = ln(N + 1) − ln(df(t) + 0.5)`;
//! * `w(t) = idf(t) · (tf / (tf + k1 · (1 − b + b · len / avgdl)))`, k1 = 0.9,
//!   b = 0.4, with the corpus `avgdl` for queries too and `len` the number of
//!   in-vocabulary tokens; query tokens outside the corpus vocabulary are dropped.
//!
//! The arithmetic is gensim's and scipy's, so scores are the same float32
//! values bit for bit: weights in float64 (same operation order), rounded to
//! float32; the score is a float32 sum of float32 products, taken in
//! ascending gensim term id (a gensim `Dictionary` numbers the new terms of
//! each document in code-point order, document after document). Checked
//! against BRIGHT's own code by `scripts/make_bm25_goldens.py`.

use std::collections::HashMap;

use rayon::prelude::*;

pub mod analysis;
pub mod porter;
mod tables;

pub use analysis::analyze;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f64,
    pub b: f64,
}

impl Default for Bm25Params {
    /// BRIGHT's (and ReasonIR's miner's) setting.
    fn default() -> Self {
        Self { k1: 0.9, b: 0.4 }
    }
}

pub struct Bm25Index {
    params: Bm25Params,
    /// Stemmed term → term id.
    vocab: HashMap<String, u32>,
    idf: Vec<f64>,
    /// Per term: (document, document-side weight).
    postings: Vec<Vec<(u32, f32)>>,
    avgdl: f64,
    num_docs: usize,
}

impl Bm25Index {
    pub fn build(docs: &[&str], params: Bm25Params) -> Self {
        let mut builder = Builder::default();
        // Analysed in parallel a chunk at a time, so memory stays bounded.
        for chunk in docs.chunks(4096) {
            let analysed: Vec<Vec<String>> = chunk.par_iter().map(|d| analyze(d)).collect();
            analysed.iter().for_each(|doc| builder.add(doc));
        }
        builder.finish(params)
    }

    /// The index of documents already analysed ([`analyze`]), in order: what
    /// a stored index keeps so that an update analyses only what changed.
    pub fn from_analysed<D: AsRef<[String]>>(docs: &[D], params: Bm25Params) -> Self {
        let mut builder = Builder::default();
        docs.iter().for_each(|doc| builder.add(doc.as_ref()));
        builder.finish(params)
    }

    /// The number of distinct terms (gensim's `len(dictionary)`).
    pub fn num_terms(&self) -> usize {
        self.vocab.len()
    }

    /// The query's term weights (in-vocabulary terms only), in ascending term id.
    pub fn query_weights(&self, query: &str) -> Vec<(u32, f64)> {
        let mut tf: HashMap<u32, u32> = HashMap::new();
        for term in analyze(query) {
            if let Some(&id) = self.vocab.get(&term) {
                *tf.entry(id).or_default() += 1;
            }
        }
        let len: u32 = tf.values().sum();
        let mut weights: Vec<(u32, f64)> = tf
            .into_iter()
            .map(|(t, n)| {
                (
                    t,
                    weight(self.idf[t as usize], n as f64, len as f64, self.avgdl, self.params),
                )
            })
            .collect();
        weights.sort_by_key(|w| w.0);
        weights
    }

    /// The score of every document for `query`: scipy's float32 sparse
    /// product, i.e. per document a float32 sum in ascending term id of
    /// float32(w_d) · float32(w_q).
    pub fn scores(&self, query: &str) -> Vec<f32> {
        let mut scores = vec![0f32; self.num_docs];
        for (t, wq) in self.query_weights(query) {
            let wq = wq as f32;
            for &(doc, wd) in &self.postings[t as usize] {
                scores[doc as usize] += wd * wq;
            }
        }
        scores
    }
}

/// The corpus statistics gathered document by document.
#[derive(Default)]
struct Builder {
    /// Stemmed term → term id.
    vocab: HashMap<String, u32>,
    /// Per document: (term, tf).
    doc_terms: Vec<Vec<(u32, u32)>>,
    lengths: Vec<usize>,
}

impl Builder {
    fn add(&mut self, doc: &[String]) {
        // gensim's Dictionary: a document's new terms get the next ids in
        // code-point order.
        let mut fresh: Vec<&String> = doc.iter().filter(|t| !self.vocab.contains_key(*t)).collect();
        fresh.sort_unstable();
        fresh.dedup();
        for term in fresh {
            let id = self.vocab.len() as u32;
            self.vocab.insert(term.clone(), id);
        }
        let mut tf: HashMap<u32, u32> = HashMap::new();
        for term in doc {
            *tf.entry(self.vocab[term]).or_default() += 1;
        }
        self.lengths.push(doc.len());
        self.doc_terms.push(tf.into_iter().collect());
    }

    fn finish(self, params: Bm25Params) -> Bm25Index {
        let Builder {
            vocab,
            doc_terms,
            lengths,
        } = self;
        let num_docs = lengths.len();
        let avgdl = lengths.iter().sum::<usize>() as f64 / num_docs.max(1) as f64;
        let mut df = vec![0u32; vocab.len()];
        for terms in &doc_terms {
            for &(t, _) in terms {
                df[t as usize] += 1;
            }
        }
        let idf: Vec<f64> = df
            .iter()
            .map(|&d| ((num_docs + 1) as f64).ln() - (d as f64 + 0.5).ln())
            .collect();
        let mut postings: Vec<Vec<(u32, f32)>> = df.iter().map(|&d| Vec::with_capacity(d as usize)).collect();
        for (doc, terms) in doc_terms.into_iter().enumerate() {
            for (t, tf) in terms {
                let w = weight(idf[t as usize], tf as f64, lengths[doc] as f64, avgdl, params);
                postings[t as usize].push((doc as u32, w as f32));
            }
        }
        Bm25Index {
            params,
            vocab,
            idf,
            postings,
            avgdl,
            num_docs,
        }
    }
}

/// gensim's `LuceneBM25Model.get_term_weights`, in its order of operations.
fn weight(idf: f64, tf: f64, len: f64, avgdl: f64, p: Bm25Params) -> f64 {
    idf * (tf / (tf + p.k1 * (1.0 - p.b + p.b * len / avgdl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_lowercases_drops_stop_words_and_possessives_and_stems() {
        assert_eq!(
            analyze("The Insects' attraction to John's lights is running"),
            vec!["insect", "attract", "john", "light", "run"]
        );
    }

    /// A corpus small enough to compute by hand.
    #[test]
    fn weights_follow_the_lucene_formula_on_both_sides() {
        let docs = ["cat cat dog", "dog bird", "fish"];
        let index = Bm25Index::build(&docs, Bm25Params::default());
        let (n, avgdl) = (3.0f64, 2.0f64);
        let idf = |df: f64| (n + 1.0).ln() - (df + 0.5).ln();
        let w = |idf: f64, tf: f64, len: f64| idf * tf / (tf + 0.9 * (1.0 - 0.4 + 0.4 * len / avgdl));
        // Query "cat bird unknown": "unknown" is out of vocabulary, so len_q = 2.
        let (wq_cat, wq_bird) = (w(idf(1.0), 1.0, 2.0), w(idf(1.0), 1.0, 2.0));
        let scores = index.scores("cat bird unknown");
        let expected = [wq_cat * w(idf(1.0), 2.0, 3.0), wq_bird * w(idf(1.0), 1.0, 2.0), 0.0];
        for (s, e) in scores.iter().zip(expected) {
            assert!((*s as f64 - e).abs() < 1e-6, "{s} vs {e}");
        }
        // A term in every document still has a positive idf in the Lucene form.
        assert!(idf(3.0) > 0.0);
    }

    #[test]
    fn repeated_query_terms_raise_their_weight() {
        let index = Bm25Index::build(&["alpha beta", "beta gamma", "gamma delta"], Bm25Params::default());
        let once = index.scores("alpha gamma");
        let twice = index.scores("alpha alpha gamma");
        assert!(twice[0] > once[0]);
    }
}
