//! What an evaluation writes: `results.json` (every number and setting),
//! `results.md` (the table, in the papers' column order), and one TREC run
//! file per task under `runs/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use reasonembed_data::{atomic, trec};
use serde::Serialize;

use crate::error::Result;
use crate::metrics::{PerQuery, Run};
use crate::published::PublishedRow;
use crate::retriever::CorpusStats;

/// The headline measure of every table.
pub const HEADLINE: &str = "ndcg_cut_10";

#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task: String,
    /// Queries in the task.
    pub queries: usize,
    /// Queries with judgements, over which the means are taken.
    pub evaluated_queries: usize,
    pub corpus: CorpusStats,
    /// (query, document) exclusions that matched a corpus id.
    pub excluded_pairs: usize,
    /// Mean of each measure over the evaluated queries.
    pub metrics: BTreeMap<String, f64>,
    pub per_query: PerQuery,
    #[serde(skip)]
    pub run: Run,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: String,
    pub reasonembed_version: String,
    pub model: serde_json::Value,
    pub dataset: serde_json::Value,
    pub settings: serde_json::Value,
    pub tasks: Vec<TaskResult>,
    /// The unweighted mean over tasks of each measure.
    pub average: BTreeMap<String, f64>,
    pub elapsed_seconds: f64,
}

impl Report {
    pub fn new(
        benchmark: &str,
        model: serde_json::Value,
        dataset: serde_json::Value,
        settings: serde_json::Value,
        tasks: Vec<TaskResult>,
        elapsed_seconds: f64,
    ) -> Self {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for t in &tasks {
            for (k, v) in &t.metrics {
                *sums.entry(k.clone()).or_default() += v;
            }
        }
        let n = tasks.len().max(1) as f64;
        let average = sums.into_iter().map(|(k, v)| (k, v / n)).collect();
        Self {
            benchmark: benchmark.into(),
            reasonembed_version: env!("CARGO_PKG_VERSION").into(),
            model,
            dataset,
            settings,
            tasks,
            average,
            elapsed_seconds,
        }
    }

    /// Writes `results.json`, `results.md` and `runs/<task>.trec` into `dir`.
    pub fn write(&self, dir: &Path, label: &str) -> Result<()> {
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|source| reasonembed_data::DataError::Io {
            path: runs.clone(),
            source,
        })?;
        atomic::write(
            &dir.join("results.json"),
            &serde_json::to_vec_pretty(self).expect("report serialises"),
        )?;
        atomic::write(&dir.join("results.md"), self.markdown(label).as_bytes())?;
        for t in &self.tasks {
            trec::write_run(&runs.join(format!("{}.trec", t.task)), &t.run, "reasonembed")?;
        }
        Ok(())
    }

    /// nDCG@10 ×100 per task and the average, one row labelled `label`.
    pub fn markdown(&self, label: &str) -> String {
        let mut header = String::from("| model |");
        let mut rule = String::from("|---|");
        let mut row = format!("| {label} |");
        for t in &self.tasks {
            let _ = write!(header, " {} |", short_name(&t.task));
            rule.push_str("---|");
            let _ = write!(row, " {:.1} |", 100.0 * t.metrics.get(HEADLINE).copied().unwrap_or(0.0));
        }
        if self.tasks.len() > 1 {
            header.push_str(" Avg |");
            rule.push_str("---|");
            let _ = write!(
                row,
                " {:.1} |",
                100.0 * self.average.get(HEADLINE).copied().unwrap_or(0.0)
            );
        }
        format!("{} nDCG@10 ×100\n\n{header}\n{rule}\n{row}\n", self.benchmark)
    }

    /// Our row beside a published one, with the differences, over our tasks.
    pub fn compare(&self, published: &PublishedRow) -> String {
        let mut out = format!("{:<28}", "task");
        let _ = writeln!(out, "{:>8} {:>10} {:>8}", "ours", "published", "Δ");
        let mut ours_sum = 0.0;
        let mut theirs = Vec::new();
        for t in &self.tasks {
            let ours = 100.0 * t.metrics.get(HEADLINE).copied().unwrap_or(0.0);
            ours_sum += ours;
            match published.scores.get(&t.task) {
                Some(&p) => {
                    theirs.push(p);
                    let _ = writeln!(out, "{:<28}{ours:>8.1} {p:>10.1} {:>+8.1}", t.task, ours - p);
                }
                None => {
                    let _ = writeln!(out, "{:<28}{ours:>8.1} {:>10} {:>8}", t.task, "–", "");
                }
            }
        }
        if theirs.len() == self.tasks.len() && !theirs.is_empty() {
            let n = theirs.len() as f64;
            let (ours, p) = (ours_sum / n, theirs.iter().sum::<f64>() / n);
            let _ = writeln!(
                out,
                "{:<28}{ours:>8.1} {p:>10.1} {:>+8.1}",
                "average (these tasks)",
                ours - p
            );
        }
        format!("{} — {}\n{out}", published.name, published.source)
    }
}

/// The papers' column names.
pub fn short_name(task: &str) -> &str {
    match task {
        "biology" => "Bio",
        "earth_science" => "Earth",
        "economics" => "Econ",
        "psychology" => "Psy",
        "robotics" => "Rob",
        "stackoverflow" => "Stack",
        "sustainable_living" => "Sus",
        "leetcode" => "Leet",
        "pony" => "Pony",
        "aops" => "AoPS",
        "theoremqa_questions" => "TheoQ",
        "theoremqa_theorems" => "TheoT",
        other => other,
    }
}
