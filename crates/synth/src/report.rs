//! What a run has done, read back from its files: `synth status` (each
//! stage's progress) and the final report (`report.json`, `report.md`):
//! queries per domain, candidates per query, the label histogram, positives
//! and negatives per query, parse failures, LLM calls, tokens and time.

use std::collections::{BTreeMap, HashSet};

use reasonembed_data::atomic;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::run::{QueryItem, Run, Stage, StageStats};

use crate::stages::annotate::pair_id;
use crate::stages::format::DomainFormat;
use crate::store::{Record, StageFile};

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStatus {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
    pub failed: usize,
    /// The failed items whose answer was cut off (`max_tokens`, open `<think>`).
    pub truncated: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmUsage {
    pub calls: usize,
    pub failed: usize,
    /// The failed calls whose answer was cut off.
    pub truncated: usize,
    /// Finished answers the stage could not read.
    pub parse_failures: usize,
    /// Answers whose verdict the embedded backend forced (the model ended,
    /// or ran out of room, without one).
    pub forced: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Sum of the calls' durations.
    pub call_seconds: f64,
    /// Over every run of the stage (`runs.jsonl`).
    pub wall_seconds: f64,
    pub busy_seconds: f64,
    pub requests_per_second: f64,
    pub completion_tokens_per_second: f64,
    /// Pipeline time outside LLM calls, as a share of the time waiting on them.
    pub overhead: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainReport {
    pub sources: usize,
    pub generated: usize,
    pub duplicate_or_empty: usize,
    pub queries: usize,
    pub reasoning_queries: usize,
    pub mined: usize,
    pub candidates_mean: f64,
    pub candidates_min: usize,
    pub candidates_max: usize,
    pub padded: usize,
    /// Documents named in `exclude_qrels` skipped while mining.
    pub excluded: usize,
    /// Label → count (−1 = unparseable).
    pub labels: BTreeMap<i64, usize>,
    pub training: DomainFormat,
    pub positives_per_query: f64,
    pub negatives_per_query: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub status: Vec<StageStatus>,
    pub domains: BTreeMap<String, DomainReport>,
    pub llm: BTreeMap<&'static str, LlmUsage>,
    pub labels: BTreeMap<i64, usize>,
}

/// The stage files, with the sources and queries derived from them once.
struct Files {
    clean: StageFile,
    generated: StageFile,
    reasoning: StageFile,
    mined: StageFile,
    labels: StageFile,
    sources: Vec<Vec<usize>>,
    queries: Vec<QueryItem>,
}

impl Files {
    fn open(run: &Run) -> Result<Self> {
        let generated = run.open_stage(Stage::Generate)?;
        let sources = run.sources()?;
        let queries = run.queries_of(&sources, &generated);
        Ok(Self {
            clean: run.open_stage(Stage::Clean)?,
            generated,
            reasoning: run.open_stage(Stage::Reason)?,
            mined: run.open_stage(Stage::Mine)?,
            labels: run.open_stage(Stage::Annotate)?,
            sources,
            queries,
        })
    }

    fn stage(&self, stage: Stage) -> Option<&StageFile> {
        match stage {
            Stage::Clean => Some(&self.clean),
            Stage::Generate => Some(&self.generated),
            Stage::Reason => Some(&self.reasoning),
            Stage::Mine => Some(&self.mined),
            Stage::Annotate => Some(&self.labels),
            Stage::Format => None,
        }
    }
}

fn truncated(record: &Record) -> bool {
    record.get("truncated").and_then(Value::as_bool) == Some(true)
}

fn candidates(record: &Record) -> Vec<&str> {
    record
        .get("candidates")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Each stage's planned items, finished and failed ones.
pub fn status(run: &Run) -> Result<Vec<StageStatus>> {
    Ok(status_of(run, &Files::open(run)?))
}

fn status_of(run: &Run, files: &Files) -> Vec<StageStatus> {
    let mut planned: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let seed = run.config.seed;
    for (domain, sources) in run.domains.iter().zip(&files.sources) {
        let name = &domain.config.name;
        if domain.config.clean {
            let ids = domain
                .to_clean(seed)
                .into_iter()
                .map(|i| crate::run::item_id(name, &domain.docs[i].id));
            planned.entry("clean").or_default().extend(ids);
        }
        let ids = sources.iter().map(|&i| crate::run::item_id(name, &domain.docs[i].id));
        planned.entry("generate").or_default().extend(ids);
    }
    let query_ids: Vec<String> = files.queries.iter().map(|q| q.id.clone()).collect();
    if run.config.reasoning_query {
        planned.insert("reason", query_ids.clone());
    }
    planned.insert("mine", query_ids.clone());
    let pairs = query_ids
        .iter()
        .filter_map(|id| files.mined.get(id).map(|r| (id, r)))
        .flat_map(|(id, r)| candidates(r).into_iter().map(move |d| pair_id(id, d)))
        .collect();
    planned.insert("annotate", pairs);
    let mut out = Vec::new();
    for stage in Stage::ALL {
        let Some(file) = files.stage(stage) else { continue };
        let ids = planned.get(stage.name()).map_or(&[][..], Vec::as_slice);
        let failed: Vec<&Record> = ids
            .iter()
            .filter_map(|id| file.get(id).filter(|r| r.contains_key("error")))
            .collect();
        out.push(StageStatus {
            stage: stage.name(),
            done: ids.iter().filter(|id| file.is_done(id)).count(),
            failed: failed.len(),
            truncated: failed.iter().filter(|r| truncated(r)).count(),
            total: ids.len(),
        });
    }
    out
}

fn usage(file: &StageFile, runs: &[StageStats], stage: &str) -> LlmUsage {
    let mut u = LlmUsage::default();
    for r in file.records() {
        let llm = r.get("llm");
        let count = |key: &str| llm.and_then(|l| l.get(key)).and_then(Value::as_u64).unwrap_or(0) as usize;
        u.calls += 1;
        u.failed += usize::from(r.contains_key("error"));
        u.truncated += usize::from(truncated(r));
        u.parse_failures += usize::from(r.contains_key("parse_error"));
        u.forced += usize::from(r.get("forced").and_then(Value::as_bool) == Some(true));
        u.prompt_tokens += count("prompt_tokens");
        u.completion_tokens += count("completion_tokens");
        u.call_seconds += llm
            .and_then(|l| l.get("seconds"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
    }
    for s in runs.iter().filter(|s| s.stage == stage) {
        u.wall_seconds += s.wall_seconds;
        u.busy_seconds += s.busy_seconds;
    }
    let runs_calls: usize = runs.iter().filter(|s| s.stage == stage).map(|s| s.calls).sum();
    let runs_tokens: usize = runs
        .iter()
        .filter(|s| s.stage == stage)
        .map(|s| s.completion_tokens)
        .sum();
    if u.wall_seconds > 0.0 {
        u.requests_per_second = runs_calls as f64 / u.wall_seconds;
        u.completion_tokens_per_second = runs_tokens as f64 / u.wall_seconds;
    }
    if u.busy_seconds > 0.0 {
        u.overhead = (u.wall_seconds - u.busy_seconds).max(0.0) / u.busy_seconds;
    }
    u
}

fn read_runs(run: &Run) -> Vec<StageStats> {
    let text = std::fs::read_to_string(run.dir.join("runs.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The report of the run so far.
pub fn report(run: &Run) -> Result<Report> {
    let format = crate::stages::format::last_summary(run);
    let files = Files::open(run)?;
    let runs = read_runs(run);
    let mut report = Report {
        status: status_of(run, &files),
        ..Default::default()
    };
    for stage in [Stage::Clean, Stage::Generate, Stage::Reason, Stage::Annotate] {
        let file = files.stage(stage).expect("an LLM stage has a file");
        report.llm.insert(stage.name(), usage(file, &runs, stage.name()));
    }
    for (domain, sources) in run.domains.iter().zip(&files.sources) {
        let name = &domain.config.name;
        let prefix = crate::run::item_id(name, "");
        let generated = files
            .generated
            .done()
            .filter(|r| r["id"].as_str().is_some_and(|id| id.starts_with(&prefix)))
            .count();
        let mine: Vec<&str> = files
            .queries
            .iter()
            .filter(|q| &q.domain == name)
            .map(|q| q.id.as_str())
            .collect();
        let mut d = DomainReport {
            sources: sources.len(),
            generated,
            queries: mine.len(),
            duplicate_or_empty: generated.saturating_sub(mine.len()),
            reasoning_queries: mine.iter().filter(|id| files.reasoning.is_done(id)).count(),
            candidates_min: usize::MAX,
            training: format.get(name).cloned().unwrap_or_default(),
            ..Default::default()
        };
        let mut seen = HashSet::new();
        for id in &mine {
            let Some(r) = files.mined.get(id) else { continue };
            let list = candidates(r);
            d.mined += 1;
            d.candidates_mean += list.len() as f64;
            d.candidates_min = d.candidates_min.min(list.len());
            d.candidates_max = d.candidates_max.max(list.len());
            d.padded += r.get("padded").and_then(Value::as_u64).unwrap_or(0) as usize;
            d.excluded += r.get("excluded").and_then(Value::as_u64).unwrap_or(0) as usize;
            for doc in list {
                let Some(label) = files.labels.get(&pair_id(id, doc)).filter(|l| !l.contains_key("error")) else {
                    continue;
                };
                if seen.insert(pair_id(id, doc)) {
                    let score = label.get("score").and_then(Value::as_i64).unwrap_or(-1);
                    *d.labels.entry(score).or_default() += 1;
                    *report.labels.entry(score).or_default() += 1;
                }
            }
        }
        if d.mined > 0 {
            d.candidates_mean /= d.mined as f64;
        } else {
            d.candidates_min = 0;
        }
        if d.training.kept > 0 {
            d.positives_per_query = d.training.positives as f64 / d.training.kept as f64;
            d.negatives_per_query = d.training.negatives as f64 / d.training.kept as f64;
        }
        report.domains.insert(name.clone(), d);
    }
    Ok(report)
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "# ReMixer synthesis report\n\n## Stages\n\n| stage | done | total | failed | of which truncated |\n|---|---:|---:|---:|---:|\n",
        );
        for s in &self.status {
            md += &format!(
                "| {} | {} | {} | {} | {} |\n",
                s.stage, s.done, s.total, s.failed, s.truncated
            );
        }
        md += "\n## Domains\n\n| domain | sources | queries | dup./empty | q′ | mined | candidates/query (min–max) | padded | excluded | training queries | pos/query | neg/query | no pos | no neg | passages dropped (excluded/empty) |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
        for (name, d) in &self.domains {
            md += &format!(
                "| {name} | {} | {} | {} | {} | {} | {:.1} ({}–{}) | {} | {} | {} | {:.1} | {:.1} | {} | {} | {}/{} |\n",
                d.sources,
                d.queries,
                d.duplicate_or_empty,
                d.reasoning_queries,
                d.mined,
                d.candidates_mean,
                d.candidates_min,
                d.candidates_max,
                d.padded,
                d.excluded,
                d.training.kept,
                d.positives_per_query,
                d.negatives_per_query,
                d.training.no_positive,
                d.training.no_negative,
                d.training.excluded,
                d.training.empty_passages,
            );
        }
        md += "\n## Labels\n\n| label | count |\n|---|---:|\n";
        for (label, count) in &self.labels {
            let name = if *label < 0 {
                "unparseable (−1)".to_string()
            } else {
                label.to_string()
            };
            md += &format!("| {name} | {count} |\n");
        }
        md += "\n## LLM calls\n\n| stage | calls | failed | of which truncated | parse failures | forced verdicts | prompt tokens | completion tokens | wall s | req/s | tokens/s | overhead |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (stage, u) in &self.llm {
            md += &format!(
                "| {stage} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.1} | {:.2}% |\n",
                u.calls,
                u.failed,
                u.truncated,
                u.parse_failures,
                u.forced,
                u.prompt_tokens,
                u.completion_tokens,
                u.wall_seconds,
                u.requests_per_second,
                u.completion_tokens_per_second,
                u.overhead * 100.0
            );
        }
        md
    }

    /// Writes `report.json` and `report.md` into the run folder.
    pub fn write(&self, run: &Run) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("the report serialises");
        atomic::write(&run.dir.join("report.json"), json.as_bytes())?;
        atomic::write(&run.dir.join("report.md"), self.markdown().as_bytes())?;
        Ok(())
    }
}
