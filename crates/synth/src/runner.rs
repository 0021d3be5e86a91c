//! Runs a stage's LLM calls: up to the backend's concurrency in flight,
//! each answer turned into a record and appended as soon as it arrives (so a
//! kill loses only the calls in flight), with timing that separates waiting
//! on the LLM from the pipeline's own work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reasonembed_data::Progress;
use serde_json::{Value, json};

use crate::audit::Audit;
use crate::error::Result;
use crate::llm::{AnswerFormat, Completion, Llm, LlmError, Message, Request, Sampling};
use crate::run::{Run, Stage, StageStats};
use crate::store::{Record, StageFile};

/// One call to make: its item id, the messages, a per-item seed and the
/// fields the record carries whatever the answer.
pub struct Job {
    pub id: String,
    pub messages: Vec<Message>,
    pub seed: u64,
    pub fields: Record,
}

/// Wall time during which at least one call is in flight.
#[derive(Default)]
struct Busy {
    in_flight: usize,
    since: Option<Instant>,
    total: Duration,
}

impl Busy {
    fn enter(&mut self) {
        if self.in_flight == 0 {
            self.since = Some(Instant::now());
        }
        self.in_flight += 1;
    }

    fn leave(&mut self) {
        self.in_flight -= 1;
        if self.in_flight == 0
            && let Some(since) = self.since.take()
        {
            self.total += since.elapsed();
        }
    }
}

type Outcome = (usize, std::result::Result<Completion, LlmError>, f64);

/// Makes every call in `jobs`; `parse` turns an answer into the record's
/// fields (and may flag a parse failure in them). Failed calls are recorded
/// with `error` and retried by the next run.
pub fn run_jobs(
    run: &Run,
    stage: Stage,
    llm: &dyn Llm,
    jobs: Vec<Job>,
    store: &mut StageFile,
    progress: &mut dyn Progress,
    parse: &dyn Fn(&Job, &str) -> Record,
) -> Result<StageStats> {
    let sampling = run.config.sampling.of(stage).expect("an LLM stage");
    let call = Call {
        stage: stage.name(),
        sampling,
        answer: stage.answer().filter(|_| sampling.constrain),
        unfinished: Unfinished::Fail,
    };
    let stats = call_all(&call, llm, jobs, store, run.audit.as_ref(), progress, parse)?;
    run.log_stats(&stats)?;
    Ok(stats)
}

/// What becomes of an answer cut off at `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfinished {
    /// A failed call, retried by the next run (ReMixer's stages: a prefix
    /// would pass for a short query, a score or a "no").
    Fail,
    /// Parsed like any answer, and counted (query-time reasoning, as BRIGHT
    /// keeps whatever its LLM wrote).
    Keep,
}

/// How every call of a stage (or of query reasoning, or refine) is made.
pub(crate) struct Call<'a> {
    pub stage: &'a str,
    pub sampling: &'a Sampling,
    pub answer: Option<AnswerFormat>,
    pub unfinished: Unfinished,
}

pub(crate) fn call_all(
    call: &Call,
    llm: &dyn Llm,
    jobs: Vec<Job>,
    store: &mut StageFile,
    audit: Option<&Audit>,
    progress: &mut dyn Progress,
    parse: &dyn Fn(&Job, &str) -> Record,
) -> Result<StageStats> {
    let stage = call.stage;
    let already = store.done().count();
    progress.start(stage, already + jobs.len());
    progress.update(already);
    let mut stats = StageStats {
        stage: stage.into(),
        ..Default::default()
    };
    if jobs.is_empty() {
        progress.finish();
        return Ok(stats);
    }
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let busy = Arc::new(Mutex::new(Busy::default()));
    let workers = llm.concurrency().clamp(1, jobs.len());
    let (send, receive) = mpsc::channel::<Outcome>();
    let result = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let send = send.clone();
            let (jobs, next, busy) = (&jobs, &next, busy.clone());
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let request = Request {
                        messages: &job.messages,
                        sampling: call.sampling,
                        seed: job.seed,
                        answer: call.answer,
                    };
                    busy.lock().unwrap_or_else(|e| e.into_inner()).enter();
                    let start = Instant::now();
                    let answer = llm.chat(&request);
                    let seconds = start.elapsed().as_secs_f64();
                    busy.lock().unwrap_or_else(|e| e.into_inner()).leave();
                    if send.send((i, answer, seconds)).is_err() {
                        break; // the writer stopped on an error
                    }
                }
            });
        }
        drop(send);
        // Owned here, so that an error below drops it and the workers stop
        // at their next answer instead of draining the queue.
        let receive = receive;
        for (finished, (i, answer, seconds)) in receive.iter().enumerate() {
            let job = &jobs[i];
            let record = record_of(
                job,
                stage,
                llm.name(),
                &answer,
                seconds,
                parse,
                call.unfinished,
                &mut stats,
            );
            if let Some(audit) = audit {
                audit.write(stage, &job.id, &job.messages, &answer, seconds)?;
            }
            store.append(record)?;
            progress.update(already + finished + 1);
        }
        Ok(())
    });
    stats.wall_seconds = started.elapsed().as_secs_f64();
    stats.busy_seconds = busy.lock().unwrap_or_else(|e| e.into_inner()).total.as_secs_f64();
    progress.finish();
    result.map(|()| stats)
}

/// The record of one call. An unfinished answer (cut off at `max_tokens`,
/// or inside an unclosed `<think>`) is a failed call, never parsed: its
/// prefix would pass for a short query, a q′, a score or a "no". It is not
/// retried at once, as the same seed and limit would cut it again; the next
/// run retries it, with a higher limit if the user follows the error.
/// Under [`Unfinished::Keep`] it is parsed and marked `truncated`.
#[allow(clippy::too_many_arguments)]
fn record_of(
    job: &Job,
    stage: &str,
    model: &str,
    answer: &std::result::Result<Completion, LlmError>,
    seconds: f64,
    parse: &dyn Fn(&Job, &str) -> Record,
    unfinished: Unfinished,
    stats: &mut StageStats,
) -> Record {
    let mut record = Record::new();
    record.insert("id".into(), Value::String(job.id.clone()));
    record.extend(job.fields.clone());
    stats.calls += 1;
    match answer {
        Ok(completion) => {
            stats.prompt_tokens += completion.prompt_tokens;
            stats.completion_tokens += completion.completion_tokens;
            if completion.forced {
                stats.forced += 1;
                record.insert("forced".into(), Value::Bool(true));
            }
            match completion.unfinished() {
                None => {
                    record.extend(parse(job, &completion.text));
                    stats.parse_failures += usize::from(record.contains_key("parse_error"));
                }
                Some(_) if unfinished == Unfinished::Keep => {
                    record.extend(parse(job, &completion.text));
                    record.insert("truncated".into(), Value::Bool(true));
                }
                Some(reason) => {
                    stats.failed += 1;
                    let error = format!(
                        "{reason} ({} tokens); raise [sampling.{stage}] max_tokens",
                        completion.completion_tokens
                    );
                    record.insert("error".into(), Value::String(error));
                    record.insert("truncated".into(), Value::Bool(true));
                }
            }
            record.insert(
                "llm".into(),
                json!({
                    "model": model,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "seconds": round3(seconds),
                }),
            );
        }
        Err(error) => {
            stats.failed += 1;
            record.insert("error".into(), Value::String(error.to_string()));
            record.insert("llm".into(), json!({"model": model, "seconds": round3(seconds)}));
        }
    }
    record
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
