//! One full fine-tuning step of the built-in MiniLM, measured as
//! `scripts/bench_train_st.py` measures sentence-transformers: the fixed
//! batch of `benches/corpus-1k.txt` (anchor, positive, negative = lines 3i,
//! 3i+1, 3i+2), InfoNCE over every passage (group 2) at temperature 0.05,
//! AdamW lr 2e-5 and weight decay 0.01, dropout on, 2 warm-up steps then
//! timed steps. Prints one JSON line with the step times and the peak RSS.
//!
//! `--model DIR --lora` measures instead a LoRA step (r 32, α 64, dropout 0.1,
//! every linear projection) on a decoder checkpoint at AdamW lr 1e-4, one
//! warm-up step, as `scripts/bench_train_lora.py` measures PEFT.
//!
//!     cargo bench -p reasonembed-train --bench step -- [plain|cached] [BATCH] [STEPS] [CHUNK] [--model DIR --lora]

use std::collections::HashMap;
use std::time::Instant;

use reasonembed_models::{Embedder, EmbedderOptions, LoraConfig, Trainable};
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
    let all: Vec<String> = std::env::args().skip(1).collect();
    let model = all
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| all.get(i + 1))
        .cloned();
    let lora = all.iter().any(|a| a == "--lora");
    let args: Vec<&String> = all
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || all[i - 1] != "--model"))
        .map(|(_, a)| a)
        .collect();
    let cached = args.first().is_some_and(|m| *m == "cached");
    let batch: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(16);
    let steps: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10);
    let chunk: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(2 * batch);
    let corpus =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/corpus-1k.txt"))
            .expect("the corpus");
    let lines: Vec<&str> = corpus.lines().collect();

    let options = EmbedderOptions {
        trainable: if lora {
            Trainable::Lora(LoraConfig::default())
        } else {
            Trainable::All
        },
        max_length: Some(128),
        ..Default::default()
    };
    let spec = model.as_deref().unwrap_or("minilm");
    let embedder = Embedder::from_spec(spec, options).expect("load the model");
    let (lr, warmup) = if lora { (1e-4, 1) } else { (2e-5, 2) };
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
    for step in 0..steps + warmup {
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
        optimizer.step(&params, &grads, lr).unwrap();
        losses.push(out.per_query.iter().sum::<f64>() / out.per_query.len() as f64);
        if step >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        serde_json::json!({"engine": "reasonembed", "model": spec, "lora": lora, "mode": if cached { "gradcache" } else { "plain" }, "batch": batch, "group": 2, "max_length": 128,
            "chunk": chunk, "step_seconds_mean": mean, "step_seconds_min": min, "losses": &losses[..losses.len().min(3)], "peak_rss_mib": peak_rss_mib(),
            "rss_before_steps_mib": before, "threads": rayon::current_num_threads()})
    );
}
