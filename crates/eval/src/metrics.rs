//! Retrieval metrics computed exactly as trec_eval 9.0.5+ / pytrec_eval do.
//!
//! * Ranking: score (as a C float) descending, ties broken by document id in
//!   descending byte order (`strcmp(b, a)`); ranks given with a run are ignored.
//! * Gains are the judged relevance (only `rel > 0` counts); the ideal DCG uses
//!   every judged document of the query, retrieved or not.
//! * Discount `1 / log2(rank + 1)` from rank 1 (trec_eval ≥ 9.0.4).
//! * Query set: queries present in both the run and the qrels (pytrec_eval's
//!   semantics, and trec_eval's without `-c`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

pub use reasonembed_data::trec::{Qrels, Run};

/// `qid → measure name (trec_eval's, e.g. ndcg_cut_10) → value`.
pub type PerQuery = BTreeMap<String, BTreeMap<String, f64>>;

/// trec_eval's default cut-offs for the `.k` measures.
const DEFAULT_CUTOFFS: [usize; 9] = [5, 10, 15, 20, 30, 100, 200, 500, 1000];

/// Declared in trec_eval's print order, so sorting measures sorts output lines
/// as trec_eval does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    Map,
    RecipRank,
    Precision(usize),
    Recall(usize),
    NdcgCut(usize),
    MapCut(usize),
}

impl Measure {
    /// Parses a trec_eval `-m` value: `ndcg_cut.10`, `P.5,10`, `recall`
    /// (default cut-offs), `map`, `map_cut.100`, `recip_rank`; the output
    /// names (`ndcg_cut_10`) are accepted too.
    pub fn parse(spec: &str) -> Result<Vec<Measure>, String> {
        let (name, list) = match spec.split_once('.') {
            Some((name, list)) => (name, Some(list)),
            None => match spec.rsplit_once('_').filter(|(_, k)| k.parse::<usize>().is_ok()) {
                Some((name, k)) => (name, Some(k)),
                None => (spec, None),
            },
        };
        let cutoffs = || -> Result<Vec<usize>, String> {
            match list {
                None => Ok(DEFAULT_CUTOFFS.to_vec()),
                Some(list) => list
                    .split(',')
                    .map(|k| {
                        k.parse::<usize>()
                            .ok()
                            .filter(|&k| k > 0)
                            .ok_or(format!("invalid cut-off '{k}' in '{spec}'"))
                    })
                    .collect(),
            }
        };
        let with = |f: fn(usize) -> Measure| cutoffs().map(|ks| ks.into_iter().map(f).collect());
        match name {
            "ndcg_cut" => with(Measure::NdcgCut),
            "recall" => with(Measure::Recall),
            "P" => with(Measure::Precision),
            "map_cut" => with(Measure::MapCut),
            "map" if list.is_none() => Ok(vec![Measure::Map]),
            "recip_rank" if list.is_none() => Ok(vec![Measure::RecipRank]),
            _ => Err(format!(
                "unknown measure '{spec}' (ndcg_cut.k, recall.k, P.k, map, map_cut.k, recip_rank)"
            )),
        }
    }
}

impl fmt::Display for Measure {
    /// trec_eval's output name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NdcgCut(k) => write!(f, "ndcg_cut_{k}"),
            Self::Recall(k) => write!(f, "recall_{k}"),
            Self::Precision(k) => write!(f, "P_{k}"),
            Self::Map => write!(f, "map"),
            Self::MapCut(k) => write!(f, "map_cut_{k}"),
            Self::RecipRank => write!(f, "recip_rank"),
        }
    }
}

/// Sorts a query's results as trec_eval does; fails on a repeated document.
pub fn rank(qid: &str, docs: &[(String, f64)]) -> Result<Vec<(String, f64)>, String> {
    let mut seen = HashSet::with_capacity(docs.len());
    if let Some((doc, _)) = docs.iter().find(|(d, _)| !seen.insert(d.as_str())) {
        return Err(format!("query {qid}: document {doc} is retrieved twice"));
    }
    let mut ranked = docs.to_vec();
    // trec_eval keeps scores as C floats and compares them with `<`: doubles
    // that round to the same float tie, -0 ties +0 (adding 0.0 folds them),
    // and a tie goes to the larger document id.
    let key = |score: f64| score as f32 + 0.0;
    ranked.sort_by(|a, b| {
        key(b.1)
            .total_cmp(&key(a.1))
            .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
    });
    Ok(ranked)
}

/// One query's measures from its ranked documents and its judgements.
fn evaluate_query(
    ranked: &[(String, f64)],
    judged: &BTreeMap<String, i64>,
    measures: &[Measure],
) -> BTreeMap<String, f64> {
    let gains: Vec<f64> = ranked
        .iter()
        .map(|(d, _)| judged.get(d).copied().unwrap_or(0).max(0) as f64)
        .collect();
    let mut ideal: Vec<f64> = judged.values().filter(|&&r| r > 0).map(|&r| r as f64).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let num_rel = ideal.len() as f64;
    let dcg = |g: &[f64], k: usize| -> f64 {
        g.iter()
            .take(k)
            .enumerate()
            .map(|(i, g)| g / ((i + 2) as f64).log2())
            .sum()
    };
    let rel_in = |k: usize| gains.iter().take(k).filter(|&&g| g > 0.0).count() as f64;
    // Sum of precision at the rank of each relevant document within the top k.
    let ap_sum = |k: usize| -> f64 {
        let mut found = 0.0;
        gains
            .iter()
            .take(k)
            .enumerate()
            .filter(|(_, g)| **g > 0.0)
            .map(|(i, _)| {
                found += 1.0;
                found / (i + 1) as f64
            })
            .sum()
    };
    let per_rel = |x: f64| if num_rel > 0.0 { x / num_rel } else { 0.0 };
    measures
        .iter()
        .map(|m| {
            let value = match *m {
                Measure::NdcgCut(k) => {
                    let idcg = dcg(&ideal, k);
                    if idcg > 0.0 { dcg(&gains, k) / idcg } else { 0.0 }
                }
                Measure::Recall(k) => per_rel(rel_in(k)),
                Measure::Precision(k) => rel_in(k) / k as f64,
                Measure::Map => per_rel(ap_sum(usize::MAX)),
                Measure::MapCut(k) => per_rel(ap_sum(k)),
                Measure::RecipRank => gains
                    .iter()
                    .position(|&g| g > 0.0)
                    .map_or(0.0, |i| 1.0 / (i + 1) as f64),
            };
            (m.to_string(), value)
        })
        .collect()
}

/// Per-query measures for the queries in both `run` and `qrels` (a query
/// whose judgement map is empty counts as absent, as in pytrec_eval).
pub fn evaluate(qrels: &Qrels, run: &Run, measures: &[Measure]) -> Result<PerQuery, String> {
    run.iter()
        .filter_map(|(qid, docs)| {
            qrels
                .get(qid)
                .filter(|j| !j.is_empty())
                .map(|judged| (qid, docs, judged))
        })
        .map(|(qid, docs, judged)| Ok((qid.clone(), evaluate_query(&rank(qid, docs)?, judged, measures))))
        .collect()
}

/// The mean of every measure over the evaluated queries (trec_eval's `all`).
pub fn mean(per_query: &PerQuery) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for values in per_query.values() {
        for (name, v) in values {
            *sums.entry(name.clone()).or_default() += v;
        }
    }
    let n = per_query.len().max(1) as f64;
    sums.into_iter().map(|(k, v)| (k, v / n)).collect()
}
