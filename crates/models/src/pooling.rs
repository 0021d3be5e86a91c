//! Turning per-token hidden states into one vector per text.

use candle_core::{D, Tensor};
type Result<T, E = candle_core::Error> = std::result::Result<T, E>;
use serde::{Deserialize, Serialize};

use crate::batch::TokenBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first real token (BERT's `[CLS]`; bge).
    Cls,
    /// The mean over real tokens (all-MiniLM, e5, ReasonIR).
    Mean,
    /// The last real token, whatever the padding side (decoder embedders).
    LastToken,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            "last_token" | "lasttoken" | "last-token" => Ok(Self::LastToken),
            _ => Err(format!("unknown pooling '{s}' (cls, mean, last_token)")),
        }
    }
}

impl Pooling {
    /// Pools `hidden: [b, s, h]` into `[b, h]`; differentiable.
    pub fn pool(self, hidden: &Tensor, batch: &TokenBatch) -> Result<Tensor> {
        let (b, s, h) = hidden.dims3()?;
        let pick = |index: &dyn Fn(usize) -> usize| -> Result<Tensor> {
            let rows: Vec<u32> = (0..b).map(|r| (r * s + index(r)) as u32).collect();
            let rows = Tensor::from_vec(rows, b, hidden.device())?;
            hidden.reshape((b * s, h))?.index_select(&rows, 0)
        };
        match self {
            Self::Cls => pick(&|r| batch.first_token(r)),
            Self::LastToken => pick(&|r| batch.last_token(r)),
            Self::Mean => {
                let mask = batch.mask(hidden.dtype())?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
                sum.broadcast_div(&mask.sum(1)?)
            }
        }
    }
}

impl Pooling {
    /// [`Pooling::pool`] on packed rows: each sequence's real tokens back to
    /// back (`lengths[i]` rows of `dim` values for sequence `i`), no padding.
    pub fn pool_packed(self, rows: &[f32], lengths: &[usize], dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(lengths.len() * dim);
        let mut start = 0;
        for &len in lengths {
            let seq = &rows[start * dim..(start + len) * dim];
            match self {
                Self::Cls => out.extend_from_slice(&seq[..dim]),
                Self::LastToken => out.extend_from_slice(&seq[(len - 1) * dim..]),
                Self::Mean => {
                    let mut sum = vec![0f32; dim];
                    for token in seq.chunks(dim) {
                        sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
                    }
                    out.extend(sum.iter().map(|s| s / len as f32));
                }
            }
            start += len;
        }
        out
    }

    /// The gradient of [`Pooling::pool_packed`]: `d_pooled` (`dim` values per
    /// sequence) spread back onto the packed rows it was pooled from.
    pub fn pool_packed_backward(self, d_pooled: &[f32], lengths: &[usize], dim: usize) -> Vec<f32> {
        let mut out = vec![0f32; lengths.iter().sum::<usize>() * dim];
        let mut start = 0;
        for (&len, d) in lengths.iter().zip(d_pooled.chunks(dim)) {
            let seq = &mut out[start * dim..(start + len) * dim];
            match self {
                Self::Cls => seq[..dim].copy_from_slice(d),
                Self::LastToken => seq[(len - 1) * dim..].copy_from_slice(d),
                Self::Mean => seq
                    .chunks_mut(dim)
                    .for_each(|t| t.iter_mut().zip(d).for_each(|(t, d)| *t = d / len as f32)),
            }
            start += len;
        }
        out
    }
}

/// `x / max(‖x‖₂, 1e-12)` row-wise, as `torch.nn.functional.normalize`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

/// The same normalisation on one vector in place, for inference outputs (and
/// for vectors cut to fewer dimensions after embedding).
pub fn l2_normalize_vec(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PaddingSide;
    use candle_core::Device;

    fn hidden() -> Tensor {
        // Row 0: tokens 1,2,3; row 1: tokens 10, 20, 30 (the padding slot holds 99s).
        Tensor::new(&[[[1f32], [2.], [3.]], [[10.], [20.], [99.]]], &Device::Cpu).unwrap()
    }

    #[test]
    fn pools_real_tokens_with_right_padding() {
        let batch = TokenBatch::new(&[&[1, 1, 1], &[1, 1]], 0, PaddingSide::Right, &Device::Cpu).unwrap();
        let values = |p: Pooling| {
            p.pool(&hidden(), &batch)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(values(Pooling::Cls), vec![1.0, 10.0]);
        assert_eq!(values(Pooling::LastToken), vec![3.0, 20.0]);
        assert_eq!(values(Pooling::Mean), vec![2.0, 15.0]);
    }

    #[test]
    fn pools_real_tokens_with_left_padding() {
        let hidden = Tensor::new(&[[[1f32], [2.], [3.]], [[99.], [10.], [20.]]], &Device::Cpu).unwrap();
        let batch = TokenBatch::new(&[&[1, 1, 1], &[1, 1]], 0, PaddingSide::Left, &Device::Cpu).unwrap();
        let values = |p: Pooling| {
            p.pool(&hidden, &batch)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(values(Pooling::Cls), vec![1.0, 10.0]);
        assert_eq!(values(Pooling::LastToken), vec![3.0, 20.0]);
        assert_eq!(values(Pooling::Mean), vec![2.0, 15.0]);
    }

    #[test]
    fn packed_rows_pool_as_padded_batches_do() {
        // The rows of `hidden()`'s batch without its padding slot.
        let rows = [1f32, 2., 3., 10., 20.];
        assert_eq!(Pooling::Cls.pool_packed(&rows, &[3, 2], 1), vec![1.0, 10.0]);
        assert_eq!(Pooling::LastToken.pool_packed(&rows, &[3, 2], 1), vec![3.0, 20.0]);
        assert_eq!(Pooling::Mean.pool_packed(&rows, &[3, 2], 1), vec![2.0, 15.0]);
    }

    #[test]
    fn normalises_rows_and_leaves_zero_rows_finite() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let n = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(n, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
        let mut rows = [vec![3f32, 4.], vec![0., 0.]];
        rows.iter_mut().for_each(|r| l2_normalize_vec(r));
        assert_eq!(rows.to_vec(), n);
    }
}
