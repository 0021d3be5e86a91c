//! Evaluation on any BEIR-style collection (corpus, queries, qrels), e.g.
//! Cranfield: the queries that have judgements are run against the whole
//! corpus and scored with trec_eval's measures.

use reasonembed_data::BeirDataset;
use reasonembed_data::Progress;
use reasonembed_models::Prompt;

use crate::bright::run_of;
use crate::error::{Error, Result};
use crate::metrics::{self, Measure};
use crate::report::{Report, TaskResult};
use crate::retriever::{Corpus, Queries, QueryRewriter, Retriever};

/// nDCG@10 (the headline), nDCG@100, MAP, recall at 10, 100 and 1,000, P@10
/// and the reciprocal rank.
pub fn measures() -> Vec<Measure> {
    vec![
        Measure::NdcgCut(10),
        Measure::NdcgCut(100),
        Measure::Map,
        Measure::Recall(10),
        Measure::Recall(100),
        Measure::Recall(1000),
        Measure::Precision(10),
        Measure::RecipRank,
    ]
}

/// A BEIR-style evaluation: the collection and how it is run.
pub struct BeirTask {
    /// The collection's name in the report.
    pub name: String,
    /// Where it was read from.
    pub source: String,
    pub split: String,
    pub dataset: BeirDataset,
    /// Results kept per query.
    pub top_k: usize,
}

/// Evaluates `task` and builds the report. `spec` is the model as the user
/// named it; `prompt` is the embedder's query prompt (see the encode contract).
pub fn report(
    retriever: &Retriever,
    rewriter: Option<&dyn QueryRewriter>,
    spec: &str,
    task: BeirTask,
    prompt: &Prompt,
    progress: &mut dyn Progress,
) -> Result<Report> {
    let start = std::time::Instant::now();
    let query_prompt = retriever.query_prompt(prompt)?;
    let result = evaluate(
        retriever,
        rewriter,
        &task.name,
        task.dataset,
        prompt,
        task.top_k,
        progress,
    )?;
    let settings = serde_json::json!({
        "split": task.split, "top_k": task.top_k, "query_prompt": query_prompt,
        "reasoning": rewriter.map(|r| r.describe()),
    });
    Ok(Report::new(
        "BEIR",
        retriever.describe(spec)?,
        serde_json::json!({ "name": task.name, "source": task.source }),
        settings,
        vec![result],
        start.elapsed().as_secs_f64(),
    ))
}

/// The one task of `dataset`; `prompt` is the embedder's query prompt.
pub fn evaluate(
    retriever: &Retriever,
    rewriter: Option<&dyn QueryRewriter>,
    name: &str,
    dataset: BeirDataset,
    prompt: &Prompt,
    top_k: usize,
    progress: &mut dyn Progress,
) -> Result<TaskResult> {
    let queries: Vec<_> = dataset
        .queries
        .into_iter()
        .filter(|q| dataset.qrels.contains_key(&q.id))
        .collect();
    if queries.is_empty() {
        return Err(Error::Protocol(format!("{name}: no query has judgements")));
    }
    let corpus = Corpus::new(dataset.corpus);
    let texts: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
    let texts = match rewriter {
        Some(r) => r.rewrite(&texts, progress).map_err(Error::Protocol)?,
        None => texts,
    };
    let queries_of_run = Queries {
        raw: &texts,
        dense: &texts,
        prompt,
    };
    let hits = retriever.retrieve(&corpus, &queries_of_run, &[], top_k, progress)?;
    let run = run_of(&corpus, queries.iter().map(|q| q.id.clone()).collect(), hits);
    let per_query = metrics::evaluate(&dataset.qrels, &run, &measures()).map_err(Error::Protocol)?;
    Ok(TaskResult {
        task: name.into(),
        queries: queries.len(),
        evaluated_queries: per_query.len(),
        corpus: corpus.stats,
        excluded_pairs: 0,
        metrics: metrics::mean(&per_query),
        per_query,
        run,
    })
}
