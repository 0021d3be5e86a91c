//! Stage 0, domain cleaning: the generator answers yes or no to "does this
//! passage belong to the domain?" for each eligible source document of the
//! domains that ask for it; only "yes" documents become sources.

use reasonembed_data::Progress;
use serde_json::{Value, json};

use super::fields;
use crate::error::Result;
use crate::llm::{Llm, Message, strip_reasoning};
use crate::prompts::fill;
use crate::run::{Run, Stage, StageStats, derive_seed, item_id};
use crate::runner::{Job, run_jobs};

/// The judgement in an answer: `Some(true)` for yes, `None` when it says neither.
pub fn parse_yes_no(answer: &str) -> Option<bool> {
    let word: String = strip_reasoning(answer)
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect::<String>()
        .to_lowercase();
    match word.as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

pub fn run(run: &Run, llm: &dyn Llm, progress: &mut dyn Progress) -> Result<StageStats> {
    let mut store = run.open_stage(Stage::Clean)?;
    let mut jobs = Vec::new();
    for domain in run.domains.iter().filter(|d| d.config.clean) {
        for i in domain.to_clean(run.config.seed) {
            let doc = &domain.docs[i];
            let id = item_id(&domain.config.name, &doc.id);
            if store.is_done(&id) {
                continue;
            }
            let prompt = fill(&domain.prompts.clean, &[("document", &doc.text)]);
            jobs.push(Job {
                seed: derive_seed(run.config.seed, &["clean", &id]),
                id,
                messages: vec![Message::user(prompt)],
                fields: fields([("domain", json!(domain.config.name)), ("doc_id", json!(doc.id))]),
            });
        }
    }
    let parse = |_: &Job, answer: &str| match parse_yes_no(answer) {
        Some(keep) => fields([("keep", Value::Bool(keep))]),
        // Unclear answers drop the document and are counted.
        None => fields([
            ("keep", Value::Bool(false)),
            ("parse_error", json!("neither yes nor no")),
        ]),
    };
    run_jobs(run, Stage::Clean, llm, jobs, &mut store, progress, &parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_answers_parse_leniently_but_not_loosely() {
        assert_eq!(parse_yes_no("Yes"), Some(true));
        assert_eq!(parse_yes_no("  **YES**, it does."), Some(true));
        assert_eq!(parse_yes_no("<think>maybe</think>No."), Some(false));
        assert_eq!(parse_yes_no("Yesterday"), None);
        assert_eq!(parse_yes_no("It belongs"), None);
        assert_eq!(parse_yes_no(""), None);
    }
}
