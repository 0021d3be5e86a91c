//! The BRIGHT evaluation protocol, as the official `run.py` runs it:
//! every query scored against the whole task corpus, each query's
//! `excluded_ids` removed (ignoring the literal "N/A") before the top-k cut,
//! binary qrels from `gold_ids` (or `gold_ids_long`), trec_eval-exact metrics,
//! the mean per task and then the unweighted mean over tasks.

use std::collections::{BTreeMap, HashSet};

use reasonembed_data::bright::BrightData;
use reasonembed_search::Progress;

use crate::error::{Error, Result};
use crate::instructions::InstructionSet;
use crate::metrics::{self, Measure, Qrels, Run};
use crate::report::TaskResult;
use crate::retriever::{Corpus, Retriever};

#[derive(Debug, Clone)]
pub struct BrightOptions {
    pub tasks: Vec<String>,
    /// `long_documents` with `gold_ids_long`.
    pub long: bool,
    /// The config holding the queries: `examples` (original) or a `*_reason` one.
    pub queries: String,
    pub instructions: InstructionSet,
    /// Results kept per query after exclusions (BRIGHT 1,000; ReasonEmbed 2,000).
    pub top_k: usize,
}

/// BRIGHT's measures: nDCG, MAP, recall and precision at 1, 5, 10, 25, 50 and
/// 100, and the reciprocal rank.
pub fn measures() -> Vec<Measure> {
    let ks = [1, 5, 10, 25, 50, 100];
    let mut m: Vec<Measure> = Vec::new();
    for f in [Measure::NdcgCut, Measure::MapCut, Measure::Recall, Measure::Precision] {
        m.extend(ks.iter().map(|&k| f(k)));
    }
    m.push(Measure::RecipRank);
    m
}

/// The query config for a `--queries` value: `original` → `examples`,
/// `gpt4` → `gpt4_reason`, a full config name as it is.
pub fn query_config(variant: &str) -> String {
    match variant {
        "original" | "examples" => "examples".into(),
        v if v.ends_with("_reason") => v.into(),
        v => format!("{v}_reason"),
    }
}

pub fn evaluate_task(
    retriever: &Retriever,
    data: &BrightData,
    task: &str,
    options: &BrightOptions,
    progress: &mut dyn Progress,
) -> Result<TaskResult> {
    let examples = data.examples(&options.queries, task)?;
    let corpus = Corpus::new(data.documents(task, options.long)?);
    let mut seen = HashSet::new();
    let (mut qrels, mut exclusions, mut texts, mut qids) = (Qrels::new(), Vec::new(), Vec::new(), Vec::new());
    let mut excluded_pairs = 0;
    for ex in &examples {
        if !seen.insert(ex.id.as_str()) {
            return Err(Error::Protocol(format!("{task}: query id '{}' appears twice", ex.id)));
        }
        let excluded: HashSet<&String> = ex.excluded_ids.iter().filter(|id| id.as_str() != "N/A").collect();
        let gold = if options.long { &ex.gold_ids_long } else { &ex.gold_ids };
        if let Some(both) = gold.iter().find(|g| excluded.contains(g)) {
            return Err(Error::Protocol(format!(
                "{task}: query '{}' lists '{both}' as both gold and excluded",
                ex.id
            )));
        }
        if !gold.is_empty() {
            qrels.insert(
                ex.id.clone(),
                gold.iter().map(|g| (g.clone(), 1)).collect::<BTreeMap<_, _>>(),
            );
        }
        let excluded = corpus.indices(excluded.into_iter());
        excluded_pairs += excluded.len();
        exclusions.push(excluded);
        texts.push(ex.query.clone());
        qids.push(ex.id.clone());
    }
    // BRIGHT gives BM25 its queries as they are; embedders get the instruction set's format.
    let (texts, prompt) = match retriever {
        Retriever::Bm25(_) => (texts, reasonembed_models::Prompt::None),
        Retriever::Dense(_) => options
            .instructions
            .format(task, options.long)
            .map_err(Error::Protocol)?
            .apply(texts),
    };
    let hits = retriever.retrieve(&corpus, &texts, &prompt, &exclusions, options.top_k, progress)?;
    let run: Run = qids
        .into_iter()
        .zip(hits)
        .map(|(qid, hits)| {
            (
                qid,
                hits.into_iter()
                    .map(|h| (corpus.ids[h.index as usize].clone(), h.score as f64))
                    .collect(),
            )
        })
        .collect();
    let per_query = metrics::evaluate(&qrels, &run, &measures()).map_err(Error::Protocol)?;
    Ok(TaskResult {
        task: task.into(),
        queries: examples.len(),
        evaluated_queries: per_query.len(),
        corpus: corpus.stats,
        excluded_pairs,
        metrics: metrics::mean(&per_query),
        per_query,
        run,
    })
}
