//! Stage 1b, the reasoning-augmented query q′ that Redapter weights by. The
//! method is unpublished; our default is BRIGHT's reasoning prompt
//! (`reason.py`): the query on one line, then "identify the essential
//! problem, reason step by step, draft an answer"; the whole answer is q′.
//! The model and prompt are recorded with each q′.

use reasonembed_data::Progress;
use serde_json::json;

use super::{fields, text_answer};
use crate::error::Result;
use crate::llm::{Llm, Message};
use crate::prompts::fill;
use crate::run::{Run, Stage, StageStats, derive_seed};
use crate::runner::{Job, run_jobs};

pub fn run(run: &Run, llm: &dyn Llm, progress: &mut dyn Progress) -> Result<StageStats> {
    let generated = run.open_stage(Stage::Generate)?;
    let mut store = run.open_stage(Stage::Reason)?;
    let mut jobs = Vec::new();
    for item in run.queries(&generated)? {
        if store.is_done(&item.id) {
            continue;
        }
        let domain = run
            .domain(&item.domain)
            .expect("queries come from the config's domains");
        let one_line = item.query.replace('\n', " ");
        let prompt = fill(&domain.prompts.reason, &[("query", &one_line)]);
        jobs.push(Job {
            seed: derive_seed(run.config.seed, &["reason", &item.id]),
            id: item.id.clone(),
            messages: vec![Message::user(prompt)],
            fields: fields([("domain", json!(item.domain))]),
        });
    }
    let parse = |_: &Job, answer: &str| text_answer("reasoning_query", answer);
    run_jobs(run, Stage::Reason, llm, jobs, &mut store, progress, &parse)
}
