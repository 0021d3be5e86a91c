//! Unpadded ("packed") inference on CPU, for the encoder backbone: the real
//! tokens of a batch sit back to back as the rows of one `[tokens, hidden]`
//! matrix, so no pad token is ever computed; dense layers are MKL GEMMs over
//! those rows, attention runs per sequence, and bias, activation, residual
//! and layer norm are fused into the GEMM's output pass.
//!
//! Threads: every parallel region is a rayon one (row chunks of a GEMM,
//! sequences of attention), and MKL runs single-threaded inside it
//! ([`reasonembed_mkl::sequential`]). Two thread pools taking turns would
//! leave MKL's OpenMP workers spinning through rayon's work.
//!
//! Precision: activations stay f32. With bf16 weights each GEMM takes its
//! input rounded to bf16 and accumulates in f32 (AMX or AVX512-BF16 where the
//! CPU has them); norms, softmax and GELU are computed in f32.
//!
//! Inference only: nothing here records a gradient. `Mode::Train` and every
//! model this path does not cover use the candle ops of the backbone files,
//! the reference this path is tested against.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use half::bf16;
use half::slice::HalfFloatSliceExt as _;
use multiversion::multiversion;
use rayon::prelude::*;
use reasonembed_mkl::{BLayout, Mat, MatMut, Output};

use crate::batch::TokenBatch;
use crate::nn::{LayerNorm, Linear};

/// Whether MKL, which every GEMM here runs on, is linked into this build.
pub(crate) const AVAILABLE: bool = reasonembed_mkl::LINKED;

/// Whether a weight of this dtype and device can feed the packed path.
pub(crate) fn supports(t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F32 | DType::BF16) && t.device().is_cpu()
}

/// Where each sequence of a batch sits among the packed rows.
pub(crate) struct Packed {
    /// Real length of each sequence.
    pub lengths: Vec<usize>,
    /// First packed row of each sequence.
    pub starts: Vec<usize>,
    /// Every real token id, sequence after sequence.
    pub ids: Vec<u32>,
    /// Each token's position within its sequence.
    pub positions: Vec<u32>,
}

impl Packed {
    pub fn new(batch: &TokenBatch) -> Result<Self> {
        let padded = batch.input_ids.to_vec2::<u32>()?;
        let (mut ids, mut positions, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        let lengths = batch.lengths().to_vec();
        for (row, &len) in padded.iter().zip(&lengths) {
            let first = batch.first_token(starts.len());
            starts.push(ids.len());
            ids.extend_from_slice(&row[first..first + len]);
            positions.extend(0..len as u32);
        }
        Ok(Self {
            lengths,
            starts,
            ids,
            positions,
        })
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// `rows: [tokens, dim]` back into the batch's padded `[b, s, dim]`
    /// layout (zeros on padding), for the pooling every path shares.
    pub fn unpack(&self, rows: &[f32], dim: usize, batch: &TokenBatch) -> Result<Tensor> {
        let (b, s) = batch.input_ids.dims2()?;
        let mut padded = vec![0f32; b * s * dim];
        for (r, (&start, &len)) in self.starts.iter().zip(&self.lengths).enumerate() {
            let at = (r * s + batch.first_token(r)) * dim;
            padded[at..at + len * dim].copy_from_slice(&rows[start * dim..(start + len) * dim]);
        }
        Tensor::from_vec(padded, (b, s, dim), &Device::Cpu)
    }
}

/// The values of a contiguous CPU weight.
enum Values<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

/// A weight's storage, read-locked while a kernel uses its values.
struct Locked<G> {
    storage: G,
    range: (usize, usize),
}

fn lock(t: &Tensor) -> Result<Locked<impl std::ops::Deref<Target = Storage> + '_>> {
    let (storage, layout) = t.storage_and_layout();
    let Some(range) = layout.contiguous_offsets() else {
        candle_core::bail!("packed path: expected a contiguous weight");
    };
    Ok(Locked { storage, range })
}

impl<G: std::ops::Deref<Target = Storage>> Locked<G> {
    fn values(&self) -> Result<Values<'_>> {
        let (start, end) = self.range;
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => Ok(Values::F32(&v[start..end])),
            Storage::Cpu(CpuStorage::BF16(v)) => Ok(Values::Bf16(&v[start..end])),
            _ => candle_core::bail!("packed path: expected f32 or bf16 weights on the CPU"),
        }
    }
}

/// A vector parameter (bias, norm scale) in f32.
fn vector(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1()
}

/// Rows per parallel chunk: one chunk per thread.
fn chunk_rows(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// `out[r] = x[r] · [W₁ W₂ …]ᵀ + [b₁ b₂ …] (+ residual[r])` for each row of
/// `x` (`k` wide): the layers' outputs side by side in one row of `out`,
/// then `post` on each finished row, all in one pass per chunk of rows (and
/// one bf16 rounding of the input, shared by the layers).
pub(crate) fn linear(
    x: &[f32],
    k: usize,
    layers: &[&Linear],
    out: &mut [f32],
    residual: Option<&[f32]>,
    post: impl Fn(&mut [f32]) + Sync,
) -> Result<()> {
    let locked = layers.iter().map(|l| lock(l.parts().0)).collect::<Result<Vec<_>>>()?;
    let weights = locked.iter().map(Locked::values).collect::<Result<Vec<_>>>()?;
    let biases = layers
        .iter()
        .map(|l| l.parts().1.map(vector).transpose())
        .collect::<Result<Vec<_>>>()?;
    let widths = layers.iter().map(|l| l.parts().0.dim(0)).collect::<Result<Vec<_>>>()?;
    let ldc: usize = widths.iter().sum();
    let rows = x.len() / k;
    assert_eq!(out.len(), rows * ldc, "the output must hold every row");
    if let Some(res) = residual {
        assert!(
            layers.len() == 1 && res.len() == rows * ldc,
            "a residual needs one layer"
        );
    }
    let per = chunk_rows(rows);
    out.par_chunks_mut(per * ldc)
        .zip(x.par_chunks(per * k))
        .enumerate()
        .for_each(|(chunk, (out, x))| {
            let m = x.len() / k;
            let x16 = matches!(weights[0], Values::Bf16(_)).then(|| to_bf16_bits(x));
            let mut col = 0;
            for ((weight, bias), &n) in weights.iter().zip(&biases).zip(&widths) {
                for (r, row) in out.chunks_mut(ldc).enumerate() {
                    let res = residual.map(|res| &res[(chunk * per + r) * n..][..n]);
                    prefill(&mut row[col..col + n], bias.as_deref(), res);
                }
                let c = MatMut::strided(&mut out[col..], m, n, ldc);
                reasonembed_mkl::sequential(|| match (weight, &x16) {
                    (Values::Bf16(w), Some(a)) => {
                        let (a, w) = (Mat::dense(a, m, k), Mat::dense(w.reinterpret_cast(), n, k));
                        reasonembed_mkl::gemm_bf16(1.0, a, w, BLayout::NByK, c, Output::Accumulate);
                    }
                    (Values::F32(w), _) => {
                        let (a, w) = (Mat::dense(x, m, k), Mat::dense(w, n, k));
                        reasonembed_mkl::gemm_f32(1.0, a, w, BLayout::NByK, c, Output::Accumulate);
                    }
                    (Values::Bf16(_), None) => unreachable!("bf16 input rows are made for bf16 weights"),
                });
                col += n;
            }
            out.chunks_mut(ldc).for_each(&post);
        });
    Ok(())
}

/// A GEMM's output row before it accumulates: bias plus residual (either
/// may be absent).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn prefill(row: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>) {
    match (bias, residual) {
        (Some(b), Some(r)) => row.iter_mut().zip(b).zip(r).for_each(|((o, b), r)| *o = b + r),
        (Some(v), None) | (None, Some(v)) => row.copy_from_slice(v),
        (None, None) => row.fill(0.0),
    }
}

/// `x` rounded to bf16 (to nearest, ties to even; as their bits), for the
/// input of a bf16 GEMM. NaN stays NaN.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn to_bf16_bits(x: &[f32]) -> Vec<u16> {
    x.iter()
        .map(|v| {
            let b = v.to_bits();
            let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
            if v.is_nan() { (b >> 16) as u16 | 0x40 } else { rounded }
        })
        .collect()
}

/// Bidirectional multi-head attention over each sequence's own tokens:
/// `qkv` holds Q, K and V side by side (`[tokens, 3·heads·head_dim]`), `ctx`
/// receives `softmax(Q Kᵀ / √d) V` (`[tokens, heads·head_dim]`).
pub(crate) fn attention(qkv: &[f32], packed: &Packed, heads: usize, head_dim: usize, ctx: &mut [f32]) {
    let hidden = heads * head_dim;
    let mut blocks = Vec::with_capacity(packed.lengths.len());
    let mut rest = ctx;
    for &len in &packed.lengths {
        let (block, tail) = rest.split_at_mut(len * hidden);
        blocks.push(block);
        rest = tail;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    blocks.into_par_iter().zip(&packed.starts).for_each(|(ctx, &start)| {
        let len = ctx.len() / hidden;
        let rows = &qkv[start * 3 * hidden..(start + len) * 3 * hidden];
        let mut scores = vec![0f32; len * len];
        reasonembed_mkl::sequential(|| {
            for h in 0..heads {
                let part = |i: usize| Mat::strided(&rows[i * hidden + h * head_dim..], len, head_dim, 3 * hidden);
                let s = MatMut::dense(&mut scores, len, len);
                reasonembed_mkl::gemm_f32(scale, part(0), part(1), BLayout::NByK, s, Output::Overwrite);
                scores.chunks_mut(len).for_each(softmax);
                let out = MatMut::strided(&mut ctx[h * head_dim..], len, head_dim, hidden);
                let p = Mat::dense(&scores, len, len);
                reasonembed_mkl::gemm_f32(1.0, p, part(2), BLayout::KByN, out, Output::Overwrite);
            }
        });
    });
}

/// Layer norm of each row of `x` (`dim` wide) in place.
pub(crate) fn layer_norm_rows(x: &mut [f32], norm: &LayerNorm) -> Result<()> {
    let (weight, bias, eps) = norm.parts_f32()?;
    let dim = weight.len();
    x.par_chunks_mut(chunk_rows(x.len() / dim) * dim).for_each(|rows| {
        rows.chunks_mut(dim)
            .for_each(|row| layer_norm(row, &weight, &bias, eps))
    });
    Ok(())
}

/// Sum with 16 independent accumulators, so that it vectorises (a single
/// running float sum may not be reordered by the compiler).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The row's layer norm in place: two passes for the variance, as PyTorch.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn layer_norm(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    row.iter_mut().for_each(|v| *v -= mean);
    let mut sq = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in sq.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let var = (sq.iter().sum::<f32>() + tail) / n;
    let scale = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
        *v = *v * scale * w + b;
    }
}

/// Softmax of one row in place.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn softmax(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = lanes.iter().copied().fold(tail, f32::max);
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The exact (erf) GELU in place, as transformers' `gelu`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn gelu_erf(x: &mut [f32]) {
    x.iter_mut()
        .for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)));
}

/// `eˣ` to about 1 ulp, branch-free so that it vectorises: `x = n ln 2 + r`,
/// Cephes' polynomial for `eʳ`, and `2ⁿ` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below the first bound eˣ is under f32's smallest normal: flushed to
    // ~1e-38, harmless for softmax and GELU; above the second it would overflow.
    let x = x.clamp(-87.336_54, 88.029_69);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from the bits of n + 127 + 2²³, whose low mantissa bits hold the
    // integer n + 127 (in 1..=254): a bit cast, where `as i32` would not
    // vectorise.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    e * f32::from_bits(biased << 23)
}

/// `erf(x)` to 1.5e-7 plus rounding (Abramowitz & Stegun 7.1.26, the form PyTorch's
/// vectorised CPU `erf` uses).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_agree_with_libm() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}) = {got}, libm {want}"
            );
            let (got, want) = (erf(x), libm::erff(x));
            assert!((got - want).abs() <= 4e-7, "erf({x}) = {got}, libm {want}");
        }
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let values = [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 1.0 / 256.0, // ties: to even
            1.0 + 3.0 / 256.0,
            -3.3,
            1e-40,
            3.4e38,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ];
        let want: Vec<u16> = values.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
        assert_eq!(to_bf16_bits(&values), want);
        assert!(bf16::from_bits(to_bf16_bits(&[f32::NAN])[0]).is_nan());
    }

    #[test]
    fn row_kernels_match_their_definitions() {
        let row: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.5).collect();
        let mut s = row.clone();
        softmax(&mut s);
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let total: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for (got, v) in s.iter().zip(&row) {
            assert!((got - (v - max).exp() / total).abs() < 1e-6);
        }
        let (w, b): (Vec<f32>, Vec<f32>) = (0..37).map(|i| (1.0 + i as f32 * 0.01, i as f32 * -0.02)).unzip();
        let mut ln = row.clone();
        layer_norm(&mut ln, &w, &b, 1e-12);
        let mean = row.iter().sum::<f32>() / 37.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 37.0;
        for (i, got) in ln.iter().enumerate() {
            let want = (row[i] - mean) / (var + 1e-12).sqrt() * w[i] + b[i];
            assert!((got - want).abs() < 1e-5, "{i}: {got} vs {want}");
        }
        let mut g = row.clone();
        gelu_erf(&mut g);
        for (got, v) in g.iter().zip(&row) {
            let want = 0.5 * v * (1.0 + libm::erff(v / 2f32.sqrt()));
            assert!((got - want).abs() < 1e-6);
        }
    }
}
