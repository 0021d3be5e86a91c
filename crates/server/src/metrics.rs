//! Counters exposed at `GET /metrics` in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    inputs: AtomicU64,
    tokens: AtomicU64,
    batches: AtomicU64,
    batch_inputs: AtomicU64,
    queue_micros: AtomicU64,
    inference_micros: AtomicU64,
}

impl Metrics {
    pub fn request(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One inference batch: its inputs and tokens, the time its texts
    /// waited in the queue (summed) and the time the batch took.
    pub fn batch(&self, inputs: usize, tokens: usize, queued: std::time::Duration, inference: std::time::Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_inputs.fetch_add(inputs as u64, Ordering::Relaxed);
        self.inputs.fetch_add(inputs as u64, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.queue_micros
            .fetch_add(queued.as_micros() as u64, Ordering::Relaxed);
        self.inference_micros
            .fetch_add(inference.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let seconds = |c: &AtomicU64| get(c) as f64 / 1e6;
        let rows: [(&str, &str, String); 8] = [
            (
                "reasonembed_requests_total",
                "API requests answered",
                get(&self.requests).to_string(),
            ),
            (
                "reasonembed_request_errors_total",
                "API requests answered with an error",
                get(&self.errors).to_string(),
            ),
            (
                "reasonembed_inputs_total",
                "texts embedded",
                get(&self.inputs).to_string(),
            ),
            (
                "reasonembed_tokens_total",
                "tokens embedded",
                get(&self.tokens).to_string(),
            ),
            (
                "reasonembed_batches_total",
                "inference batches",
                get(&self.batches).to_string(),
            ),
            (
                "reasonembed_batch_inputs_total",
                "texts over all batches (divide by batches for the mean batch size)",
                get(&self.batch_inputs).to_string(),
            ),
            (
                "reasonembed_queue_seconds_total",
                "time texts waited for a batch, summed over texts",
                seconds(&self.queue_micros).to_string(),
            ),
            (
                "reasonembed_inference_seconds_total",
                "time spent in inference",
                seconds(&self.inference_micros).to_string(),
            ),
        ];
        rows.iter()
            .map(|(name, help, value)| format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"))
            .collect()
    }
}
