//! The inference core, built as text-embeddings-inference is: requests are
//! tokenised on a pool of worker threads (one per core, off the async
//! handlers), then one worker thread owns the model and serves a queue,
//! grouping waiting requests into batches under a token budget (padded cost:
//! the longest sequence times the batch size, as text-embeddings-inference
//! counts it for padded backends). Requests whose client has gone are dropped
//! before inference.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Instant;

use reasonembed_models::{Embedder, EncodeSettings};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Embeddings of one request, raw (not normalised), with the tokens used.
pub struct Output {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

struct Job {
    seqs: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<Output, String>>,
    queued: Instant,
}

/// Why texts could not be tokenised.
#[derive(Debug)]
pub enum TokenizeError {
    /// Input `index` has `tokens` tokens, more than the model's `max` (no truncation asked).
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    Failed(String),
}

struct TokenizeJob {
    texts: Vec<String>,
    settings: EncodeSettings,
    truncate: bool,
    reply: oneshot::Sender<Result<Vec<Vec<u32>>, TokenizeError>>,
}

#[derive(Clone)]
pub struct Infer {
    queue: mpsc::Sender<Job>,
    tokenizers: mpsc::Sender<TokenizeJob>,
    pub metrics: Arc<Metrics>,
}

impl Infer {
    /// Starts the worker; `max_batch_tokens` bounds the padded size of a batch.
    pub fn start(embedder: Embedder, max_batch_tokens: usize, metrics: Arc<Metrics>) -> (Self, Arc<Embedder>) {
        let embedder = Arc::new(embedder);
        let (queue, jobs) = mpsc::channel::<Job>();
        let (worker, counters) = (embedder.clone(), metrics.clone());
        thread::spawn(move || run(&worker, &jobs, max_batch_tokens, &counters));
        let (tokenizers, requests) = mpsc::channel::<TokenizeJob>();
        let requests = Arc::new(Mutex::new(requests));
        let workers = thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..workers {
            let (embedder, requests) = (embedder.clone(), requests.clone());
            thread::spawn(move || tokenize_worker(&embedder, &requests));
        }
        (
            Self {
                queue,
                tokenizers,
                metrics,
            },
            embedder,
        )
    }

    /// Token ids of `texts` under `settings` (the encode contract: prompt,
    /// cut, truncation to the max length when `truncate`, refusal when too
    /// long otherwise), computed on the pool.
    pub async fn tokenize(
        &self,
        texts: Vec<String>,
        settings: EncodeSettings,
        truncate: bool,
    ) -> Result<Vec<Vec<u32>>, TokenizeError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || TokenizeError::Failed("the tokenizer pool stopped".into());
        self.tokenizers
            .send(TokenizeJob {
                texts,
                settings,
                truncate,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Embeds token sequences (already truncated) through the queue.
    pub async fn embed(&self, seqs: Vec<Vec<u32>>) -> Result<Output, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                seqs,
                reply,
                queued: Instant::now(),
            })
            .map_err(|_| "the inference worker stopped".to_string())?;
        answer.await.map_err(|_| "the inference worker stopped".to_string())?
    }
}

fn tokenize_worker(embedder: &Embedder, requests: &Mutex<mpsc::Receiver<TokenizeJob>>) {
    loop {
        let job = match requests.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the server is shutting down
        };
        if job.reply.is_closed() {
            continue; // the client left while the job waited
        }
        let refs: Vec<&str> = job.texts.iter().map(String::as_str).collect();
        let ids = embedder
            .prepare(&refs, &job.settings, job.truncate)
            .map_err(|e| match e {
                reasonembed_models::Error::TooLong { index, tokens, max } => {
                    TokenizeError::TooLong { index, tokens, max }
                }
                e => TokenizeError::Failed(e.to_string()),
            });
        let _ = job.reply.send(ids);
    }
}

fn run(embedder: &Embedder, jobs: &mpsc::Receiver<Job>, max_batch_tokens: usize, metrics: &Metrics) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        // Take whatever else is waiting while the padded cost stays in budget;
        // the job that would exceed it opens the next batch.
        while let Ok(next) = jobs.try_recv() {
            batch.push(next);
            if padded_cost(&batch) > max_batch_tokens {
                carried = batch.pop();
                break;
            }
        }
        let live: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if live.is_empty() {
            continue;
        }
        let seqs: Vec<&[u32]> = live.iter().flat_map(|j| j.seqs.iter().map(Vec::as_slice)).collect();
        let started = Instant::now();
        let queued = live.iter().map(|j| started - j.queued).sum();
        let result = embed(embedder, &seqs);
        metrics.batch(
            seqs.len(),
            seqs.iter().map(|s| s.len()).sum(),
            queued,
            started.elapsed(),
        );
        let mut offset = 0;
        for job in live {
            let n = job.seqs.len();
            let answer = match &result {
                Ok(rows) => Ok(Output {
                    vectors: rows[offset..offset + n].to_vec(),
                    tokens: job.seqs.iter().map(Vec::len).sum(),
                }),
                Err(e) => Err(e.clone()),
            };
            offset += n;
            let _ = job.reply.send(answer);
        }
    }
}

fn padded_cost(jobs: &[Job]) -> usize {
    let seqs = jobs.iter().flat_map(|j| j.seqs.iter());
    let (count, longest) = seqs.fold((0, 0), |(c, l), s| (c + 1, l.max(s.len())));
    count * longest
}

/// Sequences per forward pass: the batch is sorted by length and cut into
/// groups, so a long text does not pad every short one.
const GROUP: usize = 16;

/// Raw (not normalised) vectors of `seqs`, through the encode contract.
fn embed(embedder: &Embedder, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
    let out = embedder
        .embed_tokens(seqs, false, GROUP, |_, _| {})
        .map_err(|e| e.to_string())?;
    Ok(out.data.chunks(out.dim).map(<[f32]>::to_vec).collect())
}
