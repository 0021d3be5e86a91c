//! Query-time reasoning: an LLM reasons about each query before retrieval,
//! and its answer is the query that gets embedded (or scored by BM25).
//!
//! Built the way BRIGHT builds its `*_reason` query configs (`reason.py`): the
//! query with newlines made spaces, then BRIGHT's three-step instruction
//! ([`crate::prompts::REASON`]), temperature 0.8, top-p 0.8, and the LLM's
//! whole answer (a leading `<think>` block dropped) replaces the query. An
//! answer cut off at `max_tokens` is kept, as BRIGHT keeps whatever its LLM
//! wrote, and counted. [`Augment::QueryAndReasoning`] keeps the original query
//! in front of the reasoning instead.
//!
//! Answers are cached on disk, one append-only file per (LLM identity, prompt,
//! sampling): each answer is appended as it arrives, so a killed run resumes
//! where it stopped, and a failed call is retried by the next run. A lock
//! file beside it makes concurrent users (threads of a server, or another
//! process) take turns, so no one cuts off a line another is writing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reasonembed_data::Progress;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};
use crate::llm::{Llm, LlmError, Message, Sampling};
use crate::prompts::{REASON, fill};
use crate::run::derive_seed;
use crate::runner::{Call, Job, Unfinished, call_all};
use crate::stages::{fields, text_answer};
use crate::store::StageFile;

/// What the retriever gets for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// The LLM's reasoning alone (BRIGHT's reasoning-query configs).
    Reasoning,
    /// The original query, a blank line, then the reasoning.
    QueryAndReasoning,
}

/// BRIGHT's sampling for its reasoning queries.
pub fn bright_sampling(max_tokens: usize) -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: Some(0.8),
        top_k: None,
        max_tokens,
        prefill: None,
        // Free text: there is no answer format to hold it to.
        constrain: false,
    }
}

/// Counts a report records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReasoningCounts {
    pub queries: usize,
    /// Answered from the cache of an earlier run.
    pub cached: usize,
    /// Answered by the LLM in this run.
    pub generated: usize,
    /// Answers cut off at `max_tokens` (kept).
    pub truncated: usize,
    /// Empty answers: the original query is used for these.
    pub empty: usize,
}

pub struct QueryReasoner {
    llm: Arc<dyn Llm>,
    /// Everything that decides the LLM's answers besides the prompt and
    /// sampling: backend, model, and for a local file its bytes' digest.
    llm_identity: String,
    prompt: String,
    sampling: Sampling,
    augment: Augment,
    cache: PathBuf,
    counts: Mutex<ReasoningCounts>,
}

impl QueryReasoner {
    /// A reasoner answering with `llm` (whose identity key is
    /// `llm_identity`), caching under `cache_dir`.
    pub fn new(
        llm: Arc<dyn Llm>,
        llm_identity: String,
        sampling: Sampling,
        augment: Augment,
        cache_dir: &Path,
    ) -> Self {
        let prompt = REASON.to_string();
        let key = hex::encode(Sha256::digest(
            json!({
                "llm": llm_identity,
                "prompt": prompt,
                "sampling": sampling,
                "version": 1,
            })
            .to_string(),
        ));
        Self {
            llm,
            llm_identity,
            prompt,
            sampling,
            augment,
            cache: cache_dir.join(format!("{key}.jsonl")),
            counts: Mutex::default(),
        }
    }

    /// What a report records: the LLM, the prompt, the sampling, the cache
    /// file and the counts so far.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "llm": self.llm.name(),
            "llm_identity": self.llm_identity,
            "prompt": self.prompt,
            "sampling": self.sampling,
            "augment": self.augment,
            "cache": self.cache.display().to_string(),
            "counts": *self.counts.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }

    /// The reasoning-augmented form of every query, in order.
    pub fn reason(&self, queries: &[String], progress: &mut dyn Progress) -> Result<Vec<String>> {
        let _turn = self.lock()?;
        let mut store = StageFile::open(&self.cache)?;
        let ids: Vec<String> = queries.iter().map(|q| query_id(q)).collect();
        let mut jobs: Vec<Job> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        let mut cached = 0;
        for (query, id) in queries.iter().zip(&ids) {
            if store.is_done(id) {
                cached += 1;
            } else if asked.insert(id) {
                jobs.push(self.job(query, id));
            }
        }
        let generated = jobs.len();
        let call = Call {
            stage: "reasoning",
            sampling: &self.sampling,
            answer: None,
            unfinished: Unfinished::Keep,
        };
        let parse = |_: &Job, answer: &str| text_answer("reasoning", answer);
        let stats = call_all(&call, self.llm.as_ref(), jobs, &mut store, None, progress, &parse)?;
        if stats.failed > 0 {
            let first = ids
                .iter()
                .filter_map(|id| store.get(id))
                .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_default();
            return Err(Error::Llm(LlmError::Permanent(format!(
                "{} of {generated} query reasonings failed (first: {first}); the {} answered are cached in {}: run again to retry the rest",
                stats.failed,
                generated - stats.failed,
                self.cache.display()
            ))));
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.queries += queries.len();
        counts.cached += cached;
        counts.generated += generated;
        let reasoned = queries
            .iter()
            .zip(&ids)
            .map(|(query, id)| {
                let record = store.get(id).expect("every query answered above");
                counts.truncated += usize::from(record.get("truncated").is_some_and(|t| t == true));
                let reasoning = record.get("reasoning").and_then(|r| r.as_str()).unwrap_or("");
                self.augmented(query, reasoning, &mut counts)
            })
            .collect();
        Ok(reasoned)
    }

    /// Exclusive use of the cache file until the returned file is dropped.
    fn lock(&self) -> Result<std::fs::File> {
        let path = self.cache.with_extension("lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    fn job(&self, query: &str, id: &str) -> Job {
        let one_line = query.replace('\n', " ");
        Job {
            id: id.into(),
            messages: vec![Message::user(fill(&self.prompt, &[("query", &one_line)]))],
            seed: derive_seed(0, &["reasoning", id]),
            fields: fields([("query", json!(query))]),
        }
    }

    fn augmented(&self, query: &str, reasoning: &str, counts: &mut ReasoningCounts) -> String {
        if reasoning.is_empty() {
            counts.empty += 1;
            return query.to_string();
        }
        match self.augment {
            Augment::Reasoning => reasoning.to_string(),
            Augment::QueryAndReasoning => format!("{query}\n\n{reasoning}"),
        }
    }
}

/// A query's key in the cache: the digest of its exact text.
fn query_id(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::llm::{Completion, Request};

    /// A fake LLM (unit tests only): answers "about <query>", cut off when
    /// the query says "long", fails when it says "fail", empty for "blank";
    /// counts its calls.
    struct FakeLlm {
        calls: AtomicUsize,
    }

    impl Llm for FakeLlm {
        fn name(&self) -> &str {
            "fake"
        }

        fn concurrency(&self) -> usize {
            2
        }

        fn chat(&self, request: &Request) -> std::result::Result<Completion, LlmError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let prompt = &request.messages[0].content;
            let query = prompt.split("\n\nInstructions:").next().unwrap();
            if query.contains("fail") {
                return Err(LlmError::Permanent("the fake refuses".into()));
            }
            let text = if query.contains("blank") {
                String::new()
            } else {
                format!("<think>hm</think>about {query}")
            };
            Ok(Completion {
                text,
                truncated: query.contains("long"),
                ..Default::default()
            })
        }
    }

    struct Silent;
    impl Progress for Silent {
        fn start(&mut self, _: &str, _: usize) {}
        fn update(&mut self, _: usize) {}
        fn finish(&mut self) {}
    }

    fn reasoner(llm: &Arc<FakeLlm>, dir: &Path, augment: Augment) -> QueryReasoner {
        QueryReasoner::new(llm.clone(), "fake:1".into(), bright_sampling(16), augment, dir)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_replace_queries_and_are_cached_once_per_text() {
        let dir = tempfile::tempdir().unwrap();
        let llm = Arc::new(FakeLlm {
            calls: AtomicUsize::new(0),
        });
        let r = reasoner(&llm, dir.path(), Augment::Reasoning);
        let queries = strings(&["a\nb", "long c", "a\nb", "blank"]);
        let out = r.reason(&queries, &mut Silent).unwrap();
        // BRIGHT's prompt gets the query on one line; a leading think block is dropped.
        assert_eq!(out, strings(&["about a b", "about long c", "about a b", "blank"]));
        assert_eq!(llm.calls.load(Ordering::SeqCst), 3, "a repeated query is asked once");
        let counts = r.describe()["counts"].clone();
        assert_eq!(counts["truncated"], 1);
        assert_eq!(counts["empty"], 1);
        // Another run (another process) answers from the file alone.
        let again = reasoner(&llm, dir.path(), Augment::QueryAndReasoning);
        let out = again.reason(&queries[..2], &mut Silent).unwrap();
        assert_eq!(out, strings(&["a\nb\n\nabout a b", "long c\n\nabout long c"]));
        assert_eq!(llm.calls.load(Ordering::SeqCst), 3);
        assert_eq!(again.describe()["counts"]["cached"], 2);
        // Other sampling is another cache.
        let other = QueryReasoner::new(
            llm.clone(),
            "fake:1".into(),
            bright_sampling(17),
            Augment::Reasoning,
            dir.path(),
        );
        other.reason(&queries[..1], &mut Silent).unwrap();
        assert_eq!(llm.calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn failed_calls_fail_the_run_keep_the_rest_and_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let llm = Arc::new(FakeLlm {
            calls: AtomicUsize::new(0),
        });
        let r = reasoner(&llm, dir.path(), Augment::Reasoning);
        let err = r
            .reason(&strings(&["ok", "fail"]), &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 of 2 query reasonings failed") && err.contains("the fake refuses"),
            "{err}"
        );
        let err = r
            .reason(&strings(&["ok", "fail"]), &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 of 1 query reasonings failed"),
            "the answered one is cached: {err}"
        );
        assert_eq!(llm.calls.load(Ordering::SeqCst), 3);
    }
}
