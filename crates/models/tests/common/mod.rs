//! Helpers shared by the integration tests: fixture paths and golden files.

#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

/// Whether this build has the packed inference path (the `mkl` feature, on
/// the one platform MKL is linked on), so that `Kernels::Fast` takes it.
pub const PACKED_BUILD: bool = cfg!(all(feature = "mkl", target_arch = "x86_64", target_os = "linux"));

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/models").join(name)
}

/// A file written by `scripts/make_goldens.py`.
#[derive(Deserialize)]
pub struct Golden {
    pub max_length: usize,
    pub texts: Vec<String>,
    pub input_ids: Vec<Vec<u32>>,
    #[serde(default)]
    pub token_counts: Vec<usize>,
    pub cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
pub struct GoldenCase {
    pub name: String,
    pub attention: String,
    pub padding_side: String,
    pub pooling: String,
    #[serde(default)]
    pub normalize: bool,
    pub prompt: Option<String>,
    pub input_ids: Option<Vec<Vec<u32>>>,
    pub embeddings: Vec<Vec<f32>>,
}

pub fn golden(name: &str) -> Golden {
    let path = repo_root().join("fixtures/goldens").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
