//! Matrix-product rates of a linear layer (`x Wᵀ + b`, as the backbones run
//! it) on MiniLM's shapes, in GFLOP/s, best of several repetitions, one JSON
//! line per shape and path (`GEMM_ROUNDS` interleaved rounds, 15 by default). Build with and without the `mkl` feature to
//! compare candle's pure-Rust kernels with MKL:
//!
//!     cargo bench -p reasonembed-models --bench gemm
//!     cargo bench -p reasonembed-models --bench gemm --no-default-features
//!
//! Paths: `f32` and `bf16` are the layer in inference mode, bias included
//! (bf16 takes MKL's bf16 GEMM when MKL is linked, else candle's matmul,
//! which widens to f32); `f32-matmul` is candle's bare f32 product and
//! `candle-bf16` candle's bf16 product plus bias, whatever the build.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use reasonembed_models::Mode;
use reasonembed_models::nn::Weights;

/// (m, k, n): 56 texts × 32 tokens through MiniLM's attention projections,
/// its MLP up and down, and a square reference.
const SHAPES: &[(usize, usize, usize)] = &[
    (1792, 384, 384),
    (1792, 384, 1536),
    (1792, 1536, 384),
    (2048, 2048, 2048),
];

/// One repetition of a path.
type Run = Box<dyn Fn()>;

fn seconds(f: &dyn Fn()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

fn main() {
    reasonembed_models::device::configure_cpu_threads();
    let dev = Device::Cpu;
    let blas = reasonembed_models::device::cpu_blas().map_or("candle (gemm crate)".to_string(), |v| v);
    let threads = rayon::current_num_threads();
    let rounds: usize = std::env::var("GEMM_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    for &(m, k, n) in SHAPES {
        let flop = 2.0 * (m * k * n) as f64;
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let mut runs: Vec<(&str, Run)> = Vec::new();
        for (path, dtype) in [
            ("f32", DType::F32),
            ("f32-matmul", DType::F32),
            ("bf16", DType::BF16),
            ("candle-bf16", DType::BF16),
        ] {
            let x = x.to_dtype(dtype).unwrap();
            let (w, b) = (w.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
            let tensors = HashMap::from([("weight".to_string(), w.clone()), ("bias".to_string(), b.clone())]);
            let layer = Weights::new(VarBuilder::from_tensors(tensors, dtype, &dev))
                .linear(k, n, true)
                .unwrap();
            let wt = w.t().unwrap();
            let run: Run = match path {
                "candle-bf16" => Box::new(move || drop(x.matmul(&wt).unwrap().broadcast_add(&b).unwrap())),
                "f32-matmul" => Box::new(move || drop(x.matmul(&wt).unwrap())),
                _ => Box::new(move || drop(layer.forward(&x, Mode::Inference).unwrap())),
            };
            run(); // warm-up
            runs.push((path, run));
        }
        // Interleaved rounds, best of each: on a shared machine the best
        // round is the one least disturbed.
        let mut best = vec![f64::INFINITY; runs.len()];
        for _ in 0..rounds {
            for (i, (_, run)) in runs.iter().enumerate() {
                best[i] = best[i].min(seconds(run.as_ref()));
            }
        }
        for ((path, _), seconds) in runs.iter().zip(best) {
            println!(
                "{}",
                serde_json::json!({
                    "shape_mkn": [m, k, n], "path": path, "gflops": (flop / seconds / 1e9).round(),
                    "ms": (seconds * 1e5).round() / 100.0, "blas": blas, "threads": threads,
                })
            );
        }
    }
}
