//! One full fine-tuning step of the built-in MiniLM, measured as
//! `scripts/bench_train_st.py` measures sentence-transformers: the fixed
//! batch of `benches/corpus-1k.txt` (anchor, positive, negative = lines 3i,
//! 3i+1, 3i+2), InfoNCE over every passage (group 2) at temperature 0.05,
//! AdamW lr 2e-5 and weight decay 0.01, dropout on, 2 warm-up steps then
//! timed steps. Prints one JSON line with the step times and the peak RSS.
//!
//!     cargo bench -p reasonembed-train --bench step -- [plain|cached] [BATCH] [STEPS] [CHUNK]

use std::collections::HashMap;
use std::time::Instant;

use reasonembed_models::{Embedder, EmbedderOptions, Trainable};
use reasonembed_train::loss::{Loss, LossKind};
use reasonembed_train::optim::{AdamW, AdamWConfig};
use reasonembed_train::step::{StepBatch, StepOptions, gradients};

/// Peak resident memory of this process, from /proc (MiB).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let cached = args.first().is_some_and(|m| m == "cached");
    let batch: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(16);
    let steps: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10);
    let chunk: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(2 * batch);
    let corpus =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/corpus-1k.txt"))
            .expect("the corpus");
    let lines: Vec<&str> = corpus.lines().collect();

    let options = EmbedderOptions {
        trainable: Trainable::All,
        max_length: Some(128),
        ..Default::default()
    };
    let embedder = Embedder::from_spec("minilm", options).expect("load minilm");
    let anchors: Vec<&str> = (0..batch).map(|i| lines[3 * i]).collect();
    let passages: Vec<&str> = (0..batch).flat_map(|i| [lines[3 * i + 1], lines[3 * i + 2]]).collect();
    let step_batch = StepBatch {
        queries: embedder.tokenize(&anchors).unwrap(),
        passages: embedder.tokenize(&passages).unwrap(),
        reasoning: None,
        group: 2,
        exclude: None,
    };
    let loss = Loss {
        temperature: 0.05,
        kind: LossKind::InfoNce,
    };
    let params = embedder.trainable_vars();
    let mut optimizer = AdamW::new(AdamWConfig {
        weight_decay: 0.01,
        ..Default::default()
    });
    let before = peak_rss_mib();
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for step in 0..steps + 2 {
        let start = Instant::now();
        let (grads, out): (HashMap<_, _>, _) = gradients(
            &embedder,
            &step_batch,
            &loss,
            step as u64,
            &StepOptions {
                chunk,
                grad_cache: cached,
                seed: step as u64,
            },
        )
        .unwrap();
        optimizer.step(&params, &grads, 2e-5).unwrap();
        losses.push(out.per_query.iter().sum::<f64>() / out.per_query.len() as f64);
        if step >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        serde_json::json!({"engine": "reasonembed", "mode": if cached { "gradcache" } else { "plain" }, "batch": batch, "group": 2, "max_length": 128,
            "chunk": chunk, "step_seconds_mean": mean, "step_seconds_min": min, "losses": &losses[..3], "peak_rss_mib": peak_rss_mib(),
            "rss_before_steps_mib": before, "threads": rayon::current_num_threads()})
    );
}
