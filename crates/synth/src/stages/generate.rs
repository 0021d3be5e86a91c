//! Stage 1, conditioned query generation: one query per source document,
//! with a length target and an education level drawn from the paper's
//! weighted lists, written by the generator under the domain's prompt.

use rand::Rng;
use reasonembed_data::Progress;
use serde_json::json;

use super::{fields, text_answer};
use crate::error::Result;
use crate::llm::{Llm, Message};
use crate::prompts::{LENGTHS, LEVELS, fill};
use crate::run::{Run, Stage, StageStats, derive_seed, item_id, rng};
use crate::runner::{Job, run_jobs};

/// The `(length, level)` drawn for an item, the same on every run.
pub fn draw(seed: u64, id: &str) -> (&'static str, &'static str) {
    let mut rng = rng(seed, &["conditions", id]);
    let length = LENGTHS[rng.random_range(0..LENGTHS.len())];
    let level = LEVELS[rng.random_range(0..LEVELS.len())];
    (length, level)
}

pub fn run(run: &Run, llm: &dyn Llm, progress: &mut dyn Progress) -> Result<StageStats> {
    let mut store = run.open_stage(Stage::Generate)?;
    let mut jobs = Vec::new();
    for (domain, sources) in run.domains.iter().zip(run.sources()?) {
        for i in sources {
            let doc = &domain.docs[i];
            let id = item_id(&domain.config.name, &doc.id);
            if store.is_done(&id) {
                continue;
            }
            let (length, level) = draw(run.config.seed, &id);
            let prompt = fill(
                &domain.prompts.generate,
                &[("document", &doc.text), ("length", length), ("level", level)],
            );
            jobs.push(Job {
                seed: derive_seed(run.config.seed, &["generate", &id]),
                id,
                messages: vec![Message::user(prompt)],
                fields: fields([
                    ("domain", json!(domain.config.name)),
                    ("source_id", json!(doc.id)),
                    ("length", json!(length)),
                    ("level", json!(level)),
                    ("prompt", json!(domain.prompts.instruction)),
                ]),
            });
        }
    }
    let parse = |_: &Job, answer: &str| text_answer("query", answer);
    run_jobs(run, Stage::Generate, llm, jobs, &mut store, progress, &parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_weighted_lists_and_are_stable() {
        assert_eq!(draw(42, "d/1"), draw(42, "d/1"));
        let n = 12_000;
        let mut long = 0;
        let mut phd = 0;
        for i in 0..n {
            let (length, level) = draw(7, &format!("d/{i}"));
            long += usize::from(length == "200 to 300 words");
            phd += usize::from(level == "phd");
        }
        // 3/12 and 2/5, within four standard deviations.
        assert!((long as f64 / n as f64 - 0.25).abs() < 0.016, "{long}");
        assert!((phd as f64 / n as f64 - 0.40).abs() < 0.018, "{phd}");
    }
}
