//! Exact top-k throughput on stored vectors, for `scripts/bench_search_faiss.py`:
//!
//!     cargo bench -p reasonembed-search --bench topk -- DOCS.npy QUERIES.npy K OUT.npy
//!
//! prints one JSON line (best of three runs after a warm-up) and writes the
//! top-k row indices, best first, as int64 `[queries, k]` to OUT.npy.

use std::time::Instant;

use candle_core::{Device, Tensor};
use reasonembed_search::topk::search;

fn load(path: &str) -> (Vec<f32>, usize) {
    let t = Tensor::read_npy(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dim = t.dim(1).expect("a 2-D array");
    (
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("float32 values"),
        dim,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [docs, queries, k, out] = &args[..] else {
        panic!("usage: topk DOCS.npy QUERIES.npy K OUT.npy");
    };
    let k: usize = k.parse().expect("K is a number");
    let (docs, dim) = load(docs);
    let (queries, qdim) = load(queries);
    assert_eq!(dim, qdim, "documents and queries differ in dimension");
    search(&queries, &docs, dim, k, &[]);
    let mut best = f64::INFINITY;
    let mut hits = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        hits = search(&queries, &docs, dim, k, &[]);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let ids: Vec<i64> = hits.iter().flat_map(|h| h.iter().map(|h| h.index as i64)).collect();
    let rows = hits.len();
    Tensor::from_vec(ids, (rows, k), &Device::Cpu)
        .and_then(|t| t.write_npy(out))
        .expect("write the indices");
    println!(
        "{}",
        serde_json::json!({"engine": "reasonembed", "seconds": best, "queries": rows, "documents": docs.len() / dim, "dim": dim, "k": k,
            "threads": rayon::current_num_threads()})
    );
}
