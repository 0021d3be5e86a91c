//! Embedding throughput of the built-in MiniLM on a fixed corpus, measured the
//! way `scripts/bench_embed_pytorch.py` measures sentence-transformers (warm-up
//! on the first batch, then every text, batch 32), printing the same JSON line.
//! `scripts/bench-embed.sh` runs both in one go and prints the ratio.
//!
//!     cargo bench -p reasonembed-models --bench embed -- [CORPUS] [BATCH] [f32|bf16] [MODEL] [MAX_LENGTH]
//!
//! MODEL is a built-in name or a folder (default `minilm`); MAX_LENGTH
//! overrides the model's. `scripts/bench-decoder.sh` uses both.
//! f32 weights are multiplied at `MATMUL_PRECISION` (`high`, the default:
//! [`MatmulPrecision::High`]; or `highest`, IEEE f32 products).

use std::time::Instant;

use reasonembed_models::{Embedder, EmbedderOptions, EncodeOptions, MatmulPrecision};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let corpus = args.first().map_or("benches/corpus-1k.txt", String::as_str);
    let batch: usize = args.get(1).and_then(|b| b.parse().ok()).unwrap_or(32);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(corpus);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    let dtype = args.get(2).map_or("f32", String::as_str);
    let model = args.get(3).map_or("minilm", String::as_str);
    let max_length = args
        .get(4)
        .map(|m| m.parse().expect("MAX_LENGTH is a number of tokens"));
    let precision = std::env::var("MATMUL_PRECISION").unwrap_or_else(|_| "high".into());
    let options = EmbedderOptions {
        max_length,
        dtype: Some(match dtype {
            "f32" => candle_core::DType::F32,
            "bf16" => candle_core::DType::BF16,
            other => panic!("dtype {other}: expected f32 or bf16"),
        }),
        matmul_precision: match precision.as_str() {
            "highest" => MatmulPrecision::Highest,
            "high" => MatmulPrecision::High,
            other => panic!("MATMUL_PRECISION {other}: expected highest or high"),
        },
        ..EmbedderOptions::default()
    };
    let embedder = Embedder::from_spec(model, options).unwrap_or_else(|e| panic!("load {model}: {e}"));
    let options = EncodeOptions::default().with_batch_size(batch);
    embedder
        .encode(&texts[..batch.min(texts.len())], &options, |_, _| {})
        .expect("warm-up");
    let start = Instant::now();
    let out = embedder.encode(&texts, &options, |_, _| {}).expect("encode");
    let seconds = start.elapsed().as_secs_f64();
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(num_threads);
    println!(
        "{}",
        serde_json::json!({
            "engine": "reasonembed",
            "texts": texts.len(),
            "tokens": out.tokens,
            "seconds": (seconds * 1e4).round() / 1e4,
            "texts_per_s": (texts.len() as f64 / seconds * 100.0).round() / 100.0,
            "tokens_per_s": (out.tokens as f64 / seconds * 10.0).round() / 10.0,
            "threads": threads,
            "batch_size": batch,
            "dtype": dtype,
            "matmul_precision": precision,
            "kernels": embedder.info().kernels,
        })
    );
}

fn num_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
