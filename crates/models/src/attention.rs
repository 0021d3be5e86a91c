//! Scaled dot-product attention from matmul and a masked softmax, shared by the
//! encoder and decoder backbones (candle's fused attention records no gradient).

use candle_core::{DType, Result, Tensor};

use crate::nn::softmax;
use crate::ops::{Mode, dropout};

/// `[b, s, heads·dim]` → `[b, heads, s, dim]`.
pub fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    x.reshape((b, s, heads, head_dim))?.transpose(1, 2)?.contiguous()
}

/// `[b, heads, s, dim]` → `[b, s, heads·dim]`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, s, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, s, h * d))
}

/// `softmax(q kᵀ / √d + bias) v` for `q, k, v: [b, h, s, d]` and an additive
/// f32 `bias` broadcastable to `[b, h, s, s]`. Scores are taken in f32 so that
/// half-precision runs mask and normalise exactly.
pub fn scaled_dot_product(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dropout_p: f64,
    mode: Mode,
) -> Result<Tensor> {
    let head_dim = q.dim(3)?;
    let q = (q * (1.0 / (head_dim as f64).sqrt()))?;
    let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?.broadcast_add(bias)?;
    let probs = softmax(&scores, mode)?.to_dtype(v.dtype())?;
    dropout(&probs, dropout_p, mode)?.matmul(v)
}

/// Repeats each key/value head `n` times for grouped-query attention.
pub fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x);
    }
    let (b, kv, s, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n, s, d))?
        .reshape((b, kv * n, s, d))
}
