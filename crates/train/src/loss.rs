//! Contrastive losses over a batch of B queries and B·G passages, where row
//! i·G is query i's positive and the next G − 1 rows its hard negatives; every
//! passage of the batch is a candidate for every query (own positive, own and
//! others' negatives, others' positives).
//!
//! * InfoNCE: `mean_i L_i` with `L_i = −log softmax(q_i·Pᵀ/τ)[i·G]`
//!   (ReasonEmbed-basic).
//! * Redapter (ReasonEmbed's released `DynQRIBiDecoderOnlyEmbedderModel`):
//!   `RI_i = L_i / (L′_i + 1e-6)` with `L′` the same loss for the reasoning
//!   query q′ against the detached passages, RI mapped (clamp to [0, 5]) and
//!   L1-normalised over the batch into weights `w`, and `loss = Σ w_i L_i`;
//!   the weights carry no gradient; before `start_step` the plain mean.

use candle_core::{D, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// Clamp RI to `[clamp_min, clamp_max]`.
    Clamp,
    /// Use RI as it is.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// Weights sum to 1 over the batch.
    L1,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RedapterConfig {
    /// Weighting applies from this step (0-based); earlier steps use the mean.
    pub start_step: i64,
    pub mapping: Mapping,
    pub clamp_min: f64,
    pub clamp_max: f64,
    pub normalization: Normalization,
}

impl Default for RedapterConfig {
    /// The released `train.sh`: start step 100, clamp to [0, 5], L1.
    fn default() -> Self {
        Self {
            start_step: 100,
            mapping: Mapping::Clamp,
            clamp_min: 0.0,
            clamp_max: 5.0,
            normalization: Normalization::L1,
        }
    }
}

impl RedapterConfig {
    pub fn active(&self, step: u64) -> bool {
        step as i64 >= self.start_step
    }

    /// Per-query weights from the detached losses of q and q′.
    pub fn weights(&self, losses: &[f64], reason_losses: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let ri: Vec<f64> = losses
            .iter()
            .zip(reason_losses)
            .map(|(l, lr)| l / (lr + 1e-6))
            .collect();
        let mapped: Vec<f64> = match self.mapping {
            Mapping::Clamp => ri.iter().map(|r| r.clamp(self.clamp_min, self.clamp_max)).collect(),
            Mapping::None => ri.clone(),
        };
        let weights = match self.normalization {
            Normalization::L1 => {
                let sum: f64 = mapped.iter().map(|w| w.abs()).sum();
                // Every RI underflowing to 0 would divide by zero: fall back to the mean.
                if sum > 0.0 {
                    mapped.iter().map(|w| w / sum).collect()
                } else {
                    vec![1.0 / mapped.len() as f64; mapped.len()]
                }
            }
            Normalization::None => mapped,
        };
        (ri, weights)
    }
}

/// Which loss to train with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    InfoNce,
    Redapter(RedapterConfig),
}

/// The value to back-propagate and what to report about it.
#[derive(Debug, Clone)]
pub struct LossOutput {
    pub loss: Tensor,
    /// `L_i`, detached.
    pub per_query: Vec<f64>,
    /// Raw RI and the weights, when Redapter weighting was active.
    pub ri: Option<Vec<f64>>,
    pub weights: Option<Vec<f64>>,
}

/// `L_i` for every query: `[B]`. `exclude` (`[B, B·G]`, 1 = drop) removes
/// candidates from a query's softmax, e.g. other copies of its positive.
pub fn per_query_infonce(
    queries: &Tensor,
    passages: &Tensor,
    group: usize,
    temperature: f64,
    exclude: Option<&Tensor>,
) -> Result<Tensor> {
    let b = queries.dim(0)?;
    let n = passages.dim(0)?;
    if n != b * group {
        candle_core::bail!(
            "expected {} passages for {b} queries of group {group}, found {n}",
            b * group
        );
    }
    let mut scores = (queries.matmul(&passages.t()?)? / temperature)?;
    if let Some(exclude) = exclude {
        scores = (scores + (exclude * -1e9)?)?;
    }
    let log_probs = candle_nn::ops::log_softmax(&scores, D::Minus1)?;
    let mut target = vec![0f32; b * n];
    for i in 0..b {
        target[i * n + i * group] = 1.0;
    }
    let target = Tensor::from_vec(target, (b, n), queries.device())?.to_dtype(log_probs.dtype())?;
    (log_probs * target)?.sum(1)?.neg()
}

/// A batch's embeddings as the loss sees them.
pub struct BatchEmbeddings<'a> {
    /// `[B, d]`.
    pub queries: &'a Tensor,
    /// `[B·G, d]`, row i·G the positive of query i.
    pub passages: &'a Tensor,
    /// The q′ embeddings `[B, d]`, needed when Redapter is active.
    pub reasoning: Option<&'a Tensor>,
    pub group: usize,
    /// `[B, B·G]`, 1 where a candidate is dropped from a query's softmax.
    pub exclude: Option<&'a Tensor>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    pub temperature: f64,
    pub kind: LossKind,
}

impl Loss {
    /// The loss of one batch at optimiser step `step` (0-based).
    pub fn compute(&self, e: &BatchEmbeddings, step: u64) -> Result<LossOutput> {
        let losses = per_query_infonce(e.queries, e.passages, e.group, self.temperature, e.exclude)?;
        let per_query: Vec<f64> = losses.to_dtype(DType::F64)?.to_vec1()?;
        let redapter = match self.kind {
            LossKind::Redapter(cfg) if cfg.active(step) => cfg,
            _ => {
                return Ok(LossOutput {
                    loss: losses.mean_all()?,
                    per_query,
                    ri: None,
                    weights: None,
                });
            }
        };
        let Some(reasoning) = e.reasoning else {
            candle_core::bail!("the redapter loss needs the reasoning-query embeddings");
        };
        let reason_losses = per_query_infonce(
            &reasoning.detach(),
            &e.passages.detach(),
            e.group,
            self.temperature,
            e.exclude,
        )?;
        let reason_losses: Vec<f64> = reason_losses.to_dtype(DType::F64)?.to_vec1()?;
        let (ri, weights) = redapter.weights(&per_query, &reason_losses);
        let w = Tensor::new(weights.as_slice(), e.queries.device())?.to_dtype(losses.dtype())?;
        let loss = (losses * w)?.sum_all()?;
        Ok(LossOutput {
            loss,
            per_query,
            ri: Some(ri),
            weights: Some(weights),
        })
    }
}
