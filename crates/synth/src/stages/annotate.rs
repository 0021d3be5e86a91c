//! Stage 3, relevance annotation: one call per (query, candidate) with the
//! domain's relevance definition and the 1–5 rubric; the score is read from
//! the last `<score>…</score>` of the answer. Answers without a usable score
//! get −1, are ignored by formatting, and are counted.

use std::sync::LazyLock;

use reasonembed_data::Progress;
use regex::Regex;
use serde_json::{Value, json};

use super::fields;
use crate::error::Result;
use crate::llm::{Llm, Message, strip_reasoning};
use crate::prompts::fill;
use crate::run::{Run, Stage, StageStats, derive_seed};
use crate::runner::{Job, run_jobs};

/// Queries or documents longer than this many characters are not annotated
/// (the released script's 0.3 × 4 × 40,960 for a 40,960-token context).
pub const MAX_CHARS: usize = 49_152;

static SCORE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)<score>(.*?)</score>").expect("valid regex"));
static INTEGER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-?\d+(\.\d+)?").expect("valid regex"));

/// The 1–5 score of an answer, or −1: the last `<score>` tag wins (models
/// quote the format before giving their verdict), and it must hold exactly
/// one whole number in range, optionally decorated (`**4**`, `4/5` is not).
pub fn parse_score(answer: &str) -> i64 {
    let answer = strip_reasoning(answer);
    let Some(inside) = SCORE
        .captures_iter(answer)
        .last()
        .map(|c| c.get(1).expect("group 1").as_str())
    else {
        return -1;
    };
    let numbers: Vec<&str> = INTEGER.find_iter(inside).map(|m| m.as_str()).collect();
    match numbers.as_slice() {
        [one] => one.parse::<i64>().ok().filter(|s| (1..=5).contains(s)).unwrap_or(-1),
        _ => -1,
    }
}

/// The label id of a (query, document) pair.
pub fn pair_id(query_id: &str, doc_id: &str) -> String {
    format!("{query_id}\t{doc_id}")
}

pub fn run(run: &Run, llm: &dyn Llm, progress: &mut dyn Progress) -> Result<StageStats> {
    let generated = run.open_stage(Stage::Generate)?;
    let mined = run.open_stage(Stage::Mine)?;
    let mut store = run.open_stage(Stage::Annotate)?;
    let mut jobs = Vec::new();
    for item in run.queries(&generated)? {
        let Some(record) = mined.get(&item.id).filter(|r| !r.contains_key("error")) else {
            continue;
        };
        let domain = run
            .domain(&item.domain)
            .expect("queries come from the config's domains");
        if item.query.chars().count() > MAX_CHARS {
            continue;
        }
        for doc_id in record["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let id = pair_id(&item.id, doc_id);
            if store.is_done(&id) {
                continue;
            }
            let Some(doc) = domain.doc(doc_id).filter(|d| d.text.chars().count() <= MAX_CHARS) else {
                continue;
            };
            let prompt = fill(
                &domain.prompts.annotate,
                &[("query", &item.query), ("document", &doc.text)],
            );
            jobs.push(Job {
                seed: derive_seed(run.config.seed, &["annotate", &id]),
                id,
                messages: vec![Message::user(prompt)],
                fields: fields([("query_id", json!(item.id)), ("doc_id", json!(doc_id))]),
            });
        }
    }
    let parse = |_: &Job, answer: &str| {
        let score = parse_score(answer);
        if score < 0 {
            fields([
                ("score", json!(-1)),
                ("parse_error", json!("no score in range 1-5 between <score> tags")),
            ])
        } else {
            fields([("score", json!(score))])
        }
    };
    run_jobs(run, Stage::Annotate, llm, jobs, &mut store, progress, &parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_from_odd_answers() {
        assert_eq!(parse_score("Analysis...\n<score>4</score>"), 4);
        assert_eq!(parse_score("<score> 5 </score>"), 5);
        assert_eq!(parse_score("<SCORE>**2**</SCORE>"), 2);
        assert_eq!(parse_score("format: <score>3</score> ... verdict <score>1</score>"), 1);
        assert_eq!(parse_score("<think><score>5</score></think>final <score>2</score>"), 2);
        assert_eq!(parse_score("Score: 4"), -1);
        assert_eq!(parse_score("<score>4/5</score>"), -1);
        assert_eq!(parse_score("<score>6</score>"), -1);
        assert_eq!(parse_score("<score>0</score>"), -1);
        assert_eq!(parse_score("<score>3.5</score>"), -1);
        assert_eq!(parse_score("<score>four</score>"), -1);
        assert_eq!(parse_score("<score>4"), -1);
        assert_eq!(parse_score(""), -1);
    }
}
