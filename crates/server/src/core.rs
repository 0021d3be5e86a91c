//! The inference core, built as text-embeddings-inference is: requests are
//! tokenised on a pool of worker threads (one per core, off the async
//! handlers), then each text is queued on its own and one worker thread owns
//! the model and serves the queue, grouping waiting texts into batches under a
//! token budget (padded cost: the longest sequence times the batch size, as
//! text-embeddings-inference counts it for padded backends). A request larger
//! than the budget is thus spread over several batches. Texts whose client has
//! gone are dropped before inference.

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

/// One text of a request, waiting for a batch.
struct Entry {
    seq: Vec<u32>,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
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
    queue: mpsc::Sender<Entry>,
    tokenizers: mpsc::Sender<TokenizeJob>,
    pub metrics: Arc<Metrics>,
}

impl Infer {
    /// Starts the worker; `max_batch_tokens` bounds the padded size of a batch
    /// (a single text longer than it is a batch of its own).
    pub fn start(embedder: Embedder, max_batch_tokens: usize, metrics: Arc<Metrics>) -> (Self, Arc<Embedder>) {
        let embedder = Arc::new(embedder);
        let (queue, entries) = mpsc::channel::<Entry>();
        let (worker, counters) = (embedder.clone(), metrics.clone());
        thread::spawn(move || run(&worker, &entries, max_batch_tokens, &counters));
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

    /// Embeds token sequences (already truncated) through the queue, each
    /// queued on its own; the vectors come back in the order of `seqs`.
    pub async fn embed(&self, seqs: Vec<Vec<u32>>) -> Result<Output, String> {
        let stopped = || "the inference worker stopped".to_string();
        let tokens = seqs.iter().map(Vec::len).sum();
        let queued = Instant::now();
        let answers = seqs
            .into_iter()
            .map(|seq| {
                let (reply, answer) = oneshot::channel();
                self.queue.send(Entry { seq, reply, queued }).map_err(|_| stopped())?;
                Ok(answer)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut vectors = Vec::with_capacity(answers.len());
        for answer in answers {
            vectors.push(answer.await.map_err(|_| stopped())??);
        }
        Ok(Output { vectors, tokens })
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

fn run(embedder: &Embedder, entries: &mpsc::Receiver<Entry>, max_batch_tokens: usize, metrics: &Metrics) {
    let mut carried: Option<Entry> = None;
    loop {
        let first = match carried.take() {
            Some(entry) => entry,
            None => match entries.recv() {
                Ok(entry) => entry,
                Err(_) => return, // the server is shutting down
            },
        };
        let (batch, next) = take_batch(first, entries, max_batch_tokens);
        carried = next;
        if batch.is_empty() {
            continue;
        }
        let seqs: Vec<&[u32]> = batch.iter().map(|e| e.seq.as_slice()).collect();
        let started = Instant::now();
        let queued = batch.iter().map(|e| started - e.queued).sum();
        let result = embed(embedder, &seqs);
        metrics.batch(
            seqs.len(),
            seqs.iter().map(|s| s.len()).sum(),
            queued,
            started.elapsed(),
        );
        match result {
            Ok(rows) => batch.into_iter().zip(rows).for_each(|(e, row)| {
                let _ = e.reply.send(Ok(row));
            }),
            Err(message) => batch.into_iter().for_each(|e| {
                let _ = e.reply.send(Err(message.clone()));
            }),
        }
    }
}

/// `first` and whatever else is waiting while the padded cost (batch size
/// times the longest sequence) stays within `max_batch_tokens`, skipping texts
/// whose client has gone; the text that would exceed the budget is returned
/// to open the next batch. `first` is taken even alone over budget, since a
/// text cannot be split.
fn take_batch(first: Entry, entries: &mpsc::Receiver<Entry>, max_batch_tokens: usize) -> (Vec<Entry>, Option<Entry>) {
    let mut batch = Vec::new();
    let mut longest = 0;
    for entry in std::iter::once(first).chain(std::iter::from_fn(|| entries.try_recv().ok())) {
        if entry.reply.is_closed() {
            continue; // the client left while the text waited
        }
        let longer = longest.max(entry.seq.len());
        if !batch.is_empty() && longer * (batch.len() + 1) > max_batch_tokens {
            return (batch, Some(entry));
        }
        longest = longer;
        batch.push(entry);
    }
    (batch, None)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued text of `len` tokens; the receiver keeps its client "connected".
    fn entry(len: usize) -> (Entry, oneshot::Receiver<Result<Vec<f32>, String>>) {
        let (reply, answer) = oneshot::channel();
        let entry = Entry {
            seq: vec![1; len],
            reply,
            queued: Instant::now(),
        };
        (entry, answer)
    }

    /// The batches `take_batch` cuts the queue into, as lists of sequence lengths.
    fn batches(lengths: &[usize], budget: usize, leave: &[usize]) -> Vec<Vec<usize>> {
        let (queue, entries) = mpsc::channel();
        let mut clients = Vec::new();
        for (i, &len) in lengths.iter().enumerate() {
            let (e, answer) = entry(len);
            queue.send(e).unwrap();
            if !leave.contains(&i) {
                clients.push(answer);
            }
        }
        let mut out = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| entries.try_recv().ok()) {
            let (batch, next) = take_batch(first, &entries, budget);
            carried = next;
            out.push(batch.iter().map(|e| e.seq.len()).collect());
        }
        out
    }

    #[test]
    fn a_request_larger_than_the_budget_is_spread_over_batches_within_it() {
        // 2,048 texts of 8 tokens under a budget of 32: batches of 4.
        let got = batches(&[8; 2048], 32, &[]);
        assert_eq!(got.len(), 512);
        assert!(got.iter().all(|b| b.len() * b.iter().max().unwrap() <= 32));
        // Padded cost counts the longest text: 10 then 3 and 3 cost 30, a fourth costs 40.
        assert_eq!(
            batches(&[10, 3, 3, 3, 20], 30, &[]),
            vec![vec![10, 3, 3], vec![3], vec![20]]
        );
    }

    #[test]
    fn a_text_over_the_budget_is_a_batch_of_its_own_and_gone_clients_are_skipped() {
        assert_eq!(batches(&[50, 5, 5], 16, &[]), vec![vec![50], vec![5, 5]]);
        assert_eq!(batches(&[5, 50, 5], 16, &[1]), vec![vec![5, 5]]);
    }
}
