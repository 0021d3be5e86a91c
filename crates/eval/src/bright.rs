//! The BRIGHT evaluation protocol, as the official `run.py` runs it:
//! every query scored against the whole task corpus, each query's
//! `excluded_ids` removed (ignoring the literal "N/A") before the top-k cut,
//! binary qrels from `gold_ids` (or `gold_ids_long`), trec_eval-exact metrics,
//! the mean per task and then the unweighted mean over tasks.

use std::collections::{BTreeMap, HashSet};

use reasonembed_data::Progress;
use reasonembed_data::bright::{BrightData, LONG_TASKS, TASKS};

use crate::error::{Error, Result};
use crate::instructions::InstructionSet;
use crate::metrics::{self, Measure, Qrels, Run};
use crate::report::{HEADLINE, Report, TaskResult};
use crate::retriever::{Corpus, Queries, QueryRewriter, Ranking, Retriever};

#[derive(Debug, Clone)]
pub struct BrightOptions {
    /// Tasks to run; empty: all twelve, or the eight long ones with `long`.
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

impl BrightOptions {
    /// The tasks to run, defaults resolved.
    pub fn tasks(&self) -> Vec<String> {
        if !self.tasks.is_empty() {
            return self.tasks.clone();
        }
        let all: &[&str] = if self.long { &LONG_TASKS } else { &TASKS };
        all.iter().map(|t| t.to_string()).collect()
    }
}

/// Runs every task and builds the report: the benchmark's task loop.
/// `dataset` says where the data came from (recorded as it is); `spec` is
/// the model as the user named it.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    retriever: &Retriever,
    rewriter: Option<&dyn QueryRewriter>,
    data: &BrightData,
    options: &BrightOptions,
    spec: &str,
    dataset: serde_json::Value,
    progress: &mut dyn Progress,
) -> Result<Report> {
    let start = std::time::Instant::now();
    let tasks = options.tasks();
    let mut results = Vec::with_capacity(tasks.len());
    for task in &tasks {
        progress.context(task);
        let result = evaluate_task(retriever, rewriter, data, task, options, progress)
            .map_err(|e| Error::Protocol(format!("BRIGHT task '{task}': {e}")))?;
        tracing::info!(
            "{task}: nDCG@10 {:.4} over {} queries, {} documents ({} id collisions, {} distinct texts)",
            result.metrics.get(HEADLINE).copied().unwrap_or(0.0),
            result.evaluated_queries,
            result.corpus.distinct_ids,
            result.corpus.id_collisions,
            result.corpus.distinct_texts
        );
        results.push(result);
    }
    progress.context("");
    let settings = serde_json::json!({
        "long": options.long, "queries": options.queries, "instructions": options.instructions.name(),
        "top_k": options.top_k, "tasks": tasks, "reasoning": rewriter.map(|r| r.describe()),
    });
    Ok(Report::new(
        "BRIGHT",
        retriever.describe(spec)?,
        dataset,
        settings,
        results,
        start.elapsed().as_secs_f64(),
    ))
}

/// The TREC run of rankings: query ids with corpus ids and scores.
pub(crate) fn run_of(corpus: &Corpus, qids: Vec<String>, rankings: Vec<Ranking>) -> Run {
    qids.into_iter()
        .zip(rankings)
        .map(|(qid, ranking)| {
            let docs = ranking
                .into_iter()
                .map(|(i, score)| (corpus.ids[i as usize].clone(), score))
                .collect();
            (qid, docs)
        })
        .collect()
}

pub fn evaluate_task(
    retriever: &Retriever,
    rewriter: Option<&dyn QueryRewriter>,
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
    let raw = match rewriter {
        Some(r) => r.rewrite(&texts, progress).map_err(Error::Protocol)?,
        None => texts,
    };
    // BRIGHT gives BM25 its queries as they are; embedders get the instruction set's format.
    let (dense, prompt) = if retriever.embeds() {
        options
            .instructions
            .format(task, options.long)
            .map_err(Error::Protocol)?
            .apply(raw.clone())
    } else {
        (Vec::new(), reasonembed_models::Prompt::None)
    };
    let queries = Queries {
        raw: &raw,
        dense: &dense,
        prompt: &prompt,
    };
    let hits = retriever.retrieve(&corpus, &queries, &exclusions, options.top_k, progress)?;
    let run = run_of(&corpus, qids, hits);
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
