//! Stage 4, formatting into the trainer's JSONL (FlagEmbedding's format, one
//! file per domain, `train/{domain}.jsonl`): labels 3–5 are positives, 1–2
//! negatives, −1 is ignored; a query needs a positive and a negative (and q′
//! when the run writes it); each record carries the domain's group and
//! batch size. A passage that is empty or gone from the corpus is never
//! written, nor (unless `[mine] keep_excluded`) a document `exclude_qrels`
//! names, even if it was mined before the exclusion. Files are rewritten
//! whole and atomically on every run.

use std::collections::BTreeMap;

use reasonembed_data::atomic;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::annotate::pair_id;
use crate::error::{Result, io};
use crate::run::{Domain, Run, Stage, train_dir};

/// What formatting kept and dropped in one domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainFormat {
    pub queries: usize,
    pub kept: usize,
    pub positives: usize,
    pub negatives: usize,
    pub no_positive: usize,
    pub no_negative: usize,
    pub no_reasoning_query: usize,
    /// Candidates of mined queries with no label yet (pending or failed).
    pub unlabelled: usize,
    /// Candidates left out because `exclude_qrels` names them.
    #[serde(default)]
    pub excluded: usize,
    /// Positives and negatives left out because their passage is empty or
    /// no longer in the corpus.
    #[serde(default)]
    pub empty_passages: usize,
}

/// The split of one query's labels: `(positives, negatives)` as document ids.
pub fn split_labels<'a>(labels: impl IntoIterator<Item = (&'a str, i64)>) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for (doc, score) in labels {
        match score {
            3..=5 => pos.push(doc),
            1 | 2 => neg.push(doc),
            _ => {}
        }
    }
    (pos, neg)
}

pub fn run(run: &Run) -> Result<BTreeMap<String, DomainFormat>> {
    let generated = run.open_stage(Stage::Generate)?;
    let reasoning = run.open_stage(Stage::Reason)?;
    let mined = run.open_stage(Stage::Mine)?;
    let labels = run.open_stage(Stage::Annotate)?;
    let queries = run.queries(&generated)?;
    let dir = train_dir(&run.dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut summary = BTreeMap::new();
    for domain in &run.domains {
        let name = &domain.config.name;
        let (group, batch) = domain.config.batch_settings();
        let mut stats = DomainFormat::default();
        let mut out = String::new();
        for item in queries.iter().filter(|q| &q.domain == name) {
            let Some(candidates) = mined
                .get(&item.id)
                .and_then(|r| r.get("candidates"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            stats.queries += 1;
            let mut scored = Vec::new();
            for doc_id in candidates.iter().filter_map(Value::as_str) {
                if !run.config.mine.keep_excluded && domain.excluded.contains(doc_id) {
                    stats.excluded += 1;
                    continue;
                }
                match labels
                    .get(&pair_id(&item.id, doc_id))
                    .filter(|r| !r.contains_key("error"))
                {
                    Some(label) => scored.push((doc_id, label.get("score").and_then(Value::as_i64).unwrap_or(-1))),
                    None => stats.unlabelled += 1,
                }
            }
            let (pos, neg) = split_labels(scored);
            let pos = passages(domain, &pos, &mut stats.empty_passages);
            let neg = passages(domain, &neg, &mut stats.empty_passages);
            let reasoning_query = reasoning
                .get(&item.id)
                .filter(|r| !r.contains_key("error"))
                .and_then(|r| r.get("reasoning_query"))
                .and_then(Value::as_str)
                .filter(|q| !q.is_empty());
            if pos.is_empty() {
                stats.no_positive += 1;
                continue;
            }
            if neg.is_empty() {
                stats.no_negative += 1;
                continue;
            }
            if run.config.reasoning_query && reasoning_query.is_none() {
                stats.no_reasoning_query += 1;
                continue;
            }
            let mut record = json!({
                "prompt": domain.prompts.instruction,
                "query": item.query,
                "pos": pos,
                "neg": neg,
                "train_group_size": group,
                "batch_size": batch,
            });
            if let Some(q) = reasoning_query.filter(|_| run.config.reasoning_query) {
                record["reasoning_query"] = json!(q);
            }
            stats.kept += 1;
            stats.positives += pos.len();
            stats.negatives += neg.len();
            out.push_str(&serde_json::to_string(&record).expect("JSON values serialise"));
            out.push('\n');
        }
        atomic::write(&dir.join(format!("{name}.jsonl")), out.as_bytes())?;
        summary.insert(name.clone(), stats);
    }
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    atomic::write(&run.dir.join(SUMMARY), json.as_bytes())?;
    Ok(summary)
}

/// The passages of `ids`, without (counting them in `dropped`) those that
/// are blank or no longer in the corpus: an empty text would train as a
/// real passage.
fn passages<'a>(domain: &'a Domain, ids: &[&str], dropped: &mut usize) -> Vec<&'a str> {
    let texts: Vec<&str> = ids
        .iter()
        .filter_map(|id| domain.doc(id).map(|d| d.text.as_str()))
        .filter(|text| !text.trim().is_empty())
        .collect();
    *dropped += ids.len() - texts.len();
    texts
}

/// The last formatting's summary, kept for the report.
pub const SUMMARY: &str = "format.json";

/// Reads the last formatting's summary (empty before the first).
pub fn last_summary(run: &Run) -> BTreeMap<String, DomainFormat> {
    std::fs::read_to_string(run.dir.join(SUMMARY))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_split_positives_and_negatives() {
        let (pos, neg) = split_labels([
            ("a", 5),
            ("b", 3),
            ("c", 2),
            ("d", 1),
            ("e", -1),
            ("f", 4),
            ("g", 0),
            ("h", 6),
        ]);
        assert_eq!(pos, ["a", "b", "f"]);
        assert_eq!(neg, ["c", "d"]);
    }
}
