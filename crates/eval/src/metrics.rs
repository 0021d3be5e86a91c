//! Retrieval metrics computed exactly as pytrec_eval (trec_eval 9.0.8) does,
//! by the [`crate::trec_eval`] engine with scores compared as C floats.
//!
//! * Ranking: score (as a C float) descending, ties broken by document id in
//!   descending byte order (`strcmp(b, a)`); ranks given with a run are ignored.
//! * Gains are the judged relevance (only `rel > 0` counts); the ideal DCG uses
//!   every judged document of the query, retrieved or not.
//! * Discount `1 / log2(rank + 1)` from rank 1 (trec_eval ≥ 9.0.4).
//! * Query set: queries present in both the run and the qrels (pytrec_eval's
//!   semantics, and trec_eval's without `-c`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

pub use reasonembed_data::trec::{Qrels, Run};

use crate::trec_eval::{self, Options, Scores};

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

/// Sorts a query's results as trec_eval does (scores as C floats, see the
/// module docs); fails on a repeated document.
pub fn rank(qid: &str, docs: &[(String, f64)]) -> Result<Vec<(String, f64)>, String> {
    trec_eval::rank(qid, docs, Scores::Float)
}

/// The trec_eval `-m` arguments that compute `measures`.
fn specs(measures: &[Measure]) -> Vec<String> {
    let mut cutoffs: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut specs = Vec::new();
    for m in measures {
        let (name, k) = match *m {
            Measure::Map => ("map", None),
            Measure::RecipRank => ("recip_rank", None),
            Measure::Precision(k) => ("P", Some(k)),
            Measure::Recall(k) => ("recall", Some(k)),
            Measure::NdcgCut(k) => ("ndcg_cut", Some(k)),
            Measure::MapCut(k) => ("map_cut", Some(k)),
        };
        match k {
            Some(k) => {
                cutoffs.entry(name).or_default().insert(k);
            }
            None => specs.push(name.to_string()),
        }
    }
    for (name, ks) in cutoffs {
        let list: Vec<String> = ks.iter().map(usize::to_string).collect();
        specs.push(format!("{name}.{}", list.join(",")));
    }
    specs
}

/// Per-query measures for the queries in both `run` and `qrels` (a query
/// whose judgement map is empty counts as absent, as in pytrec_eval), by
/// [`trec_eval::evaluate`] with scores compared as C floats.
pub fn evaluate(qrels: &Qrels, run: &Run, measures: &[Measure]) -> Result<PerQuery, String> {
    if !run.keys().any(|q| qrels.get(q).is_some_and(|j| !j.is_empty())) {
        return Ok(PerQuery::new());
    }
    let engine = trec_eval::Measures::parse(&specs(measures))?;
    let options = Options {
        scores: Scores::Float,
        ..Options::default()
    };
    let evaluation = trec_eval::evaluate(qrels, run, "", &engine, &options)?;
    let names: Vec<&str> = evaluation.value_names().collect();
    let wanted: HashSet<String> = measures.iter().map(Measure::to_string).collect();
    Ok(evaluation
        .queries()
        .iter()
        .map(|q| {
            let values = names
                .iter()
                .zip(&q.values)
                .filter(|(name, _)| wanted.contains(**name))
                .map(|(name, v)| (name.to_string(), *v))
                .collect();
            (q.qid.clone(), values)
        })
        .collect())
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
