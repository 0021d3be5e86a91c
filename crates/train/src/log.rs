//! The logs of a run: `metrics.jsonl` (a [`StepMetrics`] line per step) and
//! `eval.jsonl`, appended as training goes and trimmed to the checkpoint
//! when a run resumes.

use std::path::Path;

use serde::Serialize;

use crate::error::{Result, io};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    pub domain: String,
    /// The loss back-propagated (weighted under Redapter).
    pub loss: f64,
    /// The plain mean of the per-query losses.
    pub mean_loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    /// Raw reasoning intensity over the batch: min, mean, median, max.
    pub ri: Option<[f64; 4]>,
    pub passages: usize,
    pub seconds: f64,
}

/// A log of steps (`metrics.jsonl`, `eval.jsonl`) opened for appending,
/// keeping only the lines of steps before `start` (a killed run may have
/// logged steps that its last checkpoint does not hold).
pub fn open_log(path: &Path, start: u64) -> Result<std::fs::File> {
    let step_of = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()?
            .get("step")?
            .as_u64()
    };
    let kept: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| step_of(l).is_some_and(|step| step < start))
        .map(str::to_string)
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    reasonembed_data::atomic::write(path, text.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(path).map_err(io(path))
}
