//! Full fine-tuning of BERT on the CPU in f32, with the backward pass written
//! by hand (feature `mkl`).
//!
//! candle's autograd on a padded batch keeps every intermediate of every
//! primitive op until the backward pass and makes a pass over memory for
//! each (a MiniLM step took 2.8× PyTorch's time). Here the forward pass runs
//! on packed rows, as the packed inference path does (no padding; see
//! `packed.rs`), with the model's dropout, and keeps only what the backward
//! pass needs: a [`Tape`]. The backward pass then gives every parameter's
//! gradient in closed form: GEMMs for the products (a weight's gradient
//! `dYᵀ·X` accumulated in place), attention per sequence, and one pass each
//! for the layer norm, GELU, softmax and dropout gradients.
//!
//! Dropout masks come from the same seeded stream as candle's path
//! ([`crate::ops::seed_dropout`]), so a seed replays a pass exactly (GradCache
//! relies on it); they are not the same masks, since this path has no padding.
//! [`crate::Embedder`] takes this path for full fine-tuning of a BERT under
//! [`crate::Kernels::Fast`]; `Kernels::Reference` keeps candle's autograd,
//! which the parity tests compare it with. Nothing here touches LoRA,
//! decoders or other dtypes: those train on candle's autograd.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Result, Storage, Tensor, TensorId, Var};
use multiversion::multiversion;
use rayon::prelude::*;
use reasonembed_mkl::{ALayout, BLayout, Mat, MatMut, Output, gemm_with, sequential};

use crate::batch::TokenBatch;
use crate::bert::{Bert, Embeddings, Layer};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::ops::dropout_mask;
use crate::packed::{Packed, add_rows, chunk_rows, erf, exp, gelu_erf, softmax, sum};

/// Gradients by parameter, as f32 buffers the backward passes add into.
#[derive(Default)]
pub struct HandGrads {
    by_param: HashMap<TensorId, (Tensor, Vec<f32>)>,
}

impl HandGrads {
    /// The buffer of `param`'s gradient, zeros at first.
    fn of(&mut self, param: &Tensor) -> &mut [f32] {
        &mut self
            .by_param
            .entry(param.id())
            .or_insert_with(|| (param.clone(), vec![0.0; param.elem_count()]))
            .1
    }

    /// The gradients of `vars` that the backward passes reached, by name.
    pub fn into_named(mut self, vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, var) in vars {
            if let Some((param, grad)) = self.by_param.remove(&var.as_tensor().id()) {
                out.insert(name.clone(), Tensor::from_vec(grad, param.shape(), param.device())?);
            }
        }
        Ok(out)
    }
}

/// What one forward pass keeps for its backward pass.
pub struct Tape {
    packed: Packed,
    embeddings: EmbeddingsTape,
    layers: Vec<LayerTape>,
}

impl Tape {
    /// Real length of each sequence of the batch.
    pub(crate) fn lengths(&self) -> &[usize] {
        &self.packed.lengths
    }
}

/// A layer norm's normalised input `x̂` and `1/σ` per row.
struct NormTape {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
}

struct EmbeddingsTape {
    norm: NormTape,
    dropout: Option<Vec<f32>>,
}

struct LayerTape {
    input: Vec<f32>,
    qkv: Vec<f32>,
    attention: AttentionTape,
    ctx: Vec<f32>,
    attn_dropout: Option<Vec<f32>>,
    attn_norm: NormTape,
    /// The attention block's output, the feed-forward block's input.
    mid: Vec<f32>,
    /// The feed-forward block's pre-activation.
    up: Vec<f32>,
    out_dropout: Option<Vec<f32>>,
    out_norm: NormTape,
}

/// Each sequence's attention probabilities, every head, rows padded to
/// [`prob_stride`] (zeros past the sequence), and their dropout mask.
struct AttentionTape {
    probs: Vec<f32>,
    dropout: Option<Vec<f32>>,
}

/// Score rows padded to whole 16-wide vectors, as `packed::softmax` takes them.
fn prob_stride(len: usize) -> usize {
    len.next_multiple_of(16)
}

/// Runs `f` on the values of a contiguous f32 tensor on the CPU.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => Ok(f(&v[start..end])),
        _ => candle_core::bail!("training by hand: expected a contiguous f32 tensor on the CPU"),
    }
}

/// `C = op(A)·op(B)` (or `C +=`), C's rows split among rayon's threads and
/// MKL sequential in each: one thread pool, as the packed path.
fn par_gemm(a: Mat<f32>, a_layout: ALayout, b: Mat<f32>, b_layout: BLayout, c: MatMut, output: Output) {
    let (m, n, stride) = (c.rows, c.cols, c.stride);
    let block = chunk_rows(m).next_multiple_of(16);
    let mut parts = Vec::new();
    let mut rest = c.data;
    for r0 in (0..m).step_by(block.max(1)) {
        let rows = block.min(m - r0);
        let take = if r0 + rows == m { rest.len() } else { rows * stride };
        let (part, tail) = rest.split_at_mut(take);
        parts.push((r0, rows, part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(r0, rows, part)| {
        let a = match a_layout {
            ALayout::MByK => Mat::strided(&a.data[r0 * a.stride..], rows, a.cols, a.stride),
            ALayout::KByM => Mat::strided(&a.data[r0..], a.rows, rows, a.stride),
        };
        sequential(|| {
            gemm_with(
                1.0,
                a,
                a_layout,
                b,
                b_layout,
                MatMut::strided(part, rows, n, stride),
                output,
            )
        });
    });
}

/// `Y = X·Wᵀ + b` into `y` (a `rows × out` block of rows `stride` wide).
fn linear_forward(x: &[f32], rows: usize, layer: &Linear, y: &mut [f32], stride: usize) -> Result<()> {
    let (weight, bias) = layer.parts();
    let (out, k) = weight.dims2()?;
    match bias {
        Some(b) => with_values(b, |b| {
            y.par_chunks_mut(stride).for_each(|row| row[..out].copy_from_slice(b))
        })?,
        None => y.par_chunks_mut(stride).for_each(|row| row[..out].fill(0.0)),
    }
    with_values(weight, |w| {
        par_gemm(
            Mat::dense(x, rows, k),
            ALayout::MByK,
            Mat::dense(w, out, k),
            BLayout::NByK,
            MatMut::strided(y, rows, out, stride),
            Output::Accumulate,
        )
    })
}

/// The backward pass of `Y = X·Wᵀ + b`, given `dY`: adds `dYᵀ·X` to W's
/// gradient and the column sums of `dY` to b's; then writes (or adds) `dY·W`
/// into `dx` when given.
fn linear_backward(
    dy: Mat<f32>,
    x: &[f32],
    layer: &Linear,
    grads: &mut HandGrads,
    dx: Option<(&mut [f32], Output)>,
) -> Result<()> {
    let (weight, bias) = layer.parts();
    let (out, k) = weight.dims2()?;
    let rows = dy.rows;
    par_gemm(
        dy,
        ALayout::KByM,
        Mat::dense(x, rows, k),
        BLayout::KByN,
        MatMut::dense(grads.of(weight), out, k),
        Output::Accumulate,
    );
    if let Some(b) = bias {
        add_column_sums(dy, grads.of(b));
    }
    if let Some((dx, output)) = dx {
        with_values(weight, |w| {
            par_gemm(
                dy,
                ALayout::MByK,
                Mat::dense(w, out, k),
                BLayout::KByN,
                MatMut::dense(dx, rows, k),
                output,
            )
        })?;
    }
    Ok(())
}

/// `out += Σ_rows m`, in parallel over blocks of rows.
fn add_column_sums(m: Mat<f32>, out: &mut [f32]) {
    let block = chunk_rows(m.rows);
    let partial: Vec<Vec<f32>> = (0..m.rows.div_ceil(block))
        .into_par_iter()
        .map(|i| {
            let mut acc = vec![0f32; m.cols];
            for r in i * block..((i + 1) * block).min(m.rows) {
                let row = &m.data[r * m.stride..r * m.stride + m.cols];
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .collect();
    for p in partial {
        out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
    }
}

/// `x ⊙= mask` when dropout is on.
fn apply_mask(x: &mut [f32], mask: &Option<Vec<f32>>) {
    if let Some(mask) = mask {
        x.par_chunks_mut(4096)
            .zip(mask.par_chunks(4096))
            .for_each(|(x, m)| x.iter_mut().zip(m).for_each(|(x, m)| *x *= m));
    }
}

/// `out = LN(z)` row by row, `z` becoming `x̂` (kept with `1/σ`).
fn layer_norm_forward(mut z: Vec<f32>, norm: &LayerNorm, out: &mut [f32]) -> Result<NormTape> {
    let (w, b, eps) = norm.parts_f32()?;
    let dim = w.len();
    let mut rstd = vec![0f32; z.len() / dim];
    z.par_chunks_mut(dim)
        .zip(out.par_chunks_mut(dim))
        .zip(rstd.par_iter_mut())
        .for_each(|((x, o), r)| {
            *r = normalize_row(x, eps);
            for ((o, x), (w, b)) in o.iter_mut().zip(x.iter()).zip(w.iter().zip(&b)) {
                *o = x * w + b;
            }
        });
    Ok(NormTape { xhat: z, rstd })
}

/// The row minus its mean, over its standard deviation (two passes, as
/// PyTorch); gives `1/σ`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn normalize_row(x: &mut [f32], eps: f32) -> f32 {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    x.iter_mut().for_each(|v| *v -= mean);
    let mut sq = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        sq.iter_mut().zip(c).for_each(|(a, v)| *a += v * v);
    }
    let rstd = 1.0 / ((sq.iter().sum::<f32>() + tail) / n + eps).sqrt();
    x.iter_mut().for_each(|v| *v *= rstd);
    rstd
}

/// The backward pass of `y = x̂·γ + β`: `dy` becomes `dz`, the gradient of
/// the norm's input; adds `Σ dy ⊙ x̂` to γ's gradient and `Σ dy` to β's.
fn layer_norm_backward(dy: &mut [f32], tape: &NormTape, norm: &LayerNorm, grads: &mut HandGrads) -> Result<()> {
    let (w, _, _) = norm.parts_f32()?;
    let dim = w.len();
    let block = chunk_rows(tape.rstd.len()) * dim;
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dy
        .par_chunks_mut(block)
        .zip(tape.xhat.par_chunks(block))
        .zip(tape.rstd.par_chunks(block / dim))
        .map(|((dy, xhat), rstd)| {
            let (mut dw, mut db) = (vec![0f32; dim], vec![0f32; dim]);
            for ((dy, xhat), &r) in dy.chunks_mut(dim).zip(xhat.chunks(dim)).zip(rstd) {
                norm_row_backward(dy, xhat, r, &w, &mut dw, &mut db);
            }
            (dw, db)
        })
        .collect();
    let (weight, bias) = norm.tensors();
    for (dw, db) in partial {
        grads.of(weight).iter_mut().zip(dw).for_each(|(g, v)| *g += v);
        grads.of(bias).iter_mut().zip(db).for_each(|(g, v)| *g += v);
    }
    Ok(())
}

/// One row of [`layer_norm_backward`]: with `g = dy ⊙ γ`,
/// `dz = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn norm_row_backward(dy: &mut [f32], xhat: &[f32], rstd: f32, w: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let n = dy.len() as f32;
    let (mut sum_g, mut sum_gx) = ([0f32; 16], [0f32; 16]);
    for (i, ((d, x), w)) in dy.iter().zip(xhat).zip(w).enumerate() {
        sum_g[i % 16] += d * w;
        sum_gx[i % 16] += d * w * x;
    }
    let mean_g = sum_g.iter().sum::<f32>() / n;
    let mean_gx = sum_gx.iter().sum::<f32>() / n;
    for ((((d, x), w), dw), db) in dy.iter_mut().zip(xhat).zip(w).zip(dw.iter_mut()).zip(db.iter_mut()) {
        *dw += *d * x;
        *db += *d;
        *d = (*d * w - mean_g - x * mean_gx) * rstd;
    }
}

/// `dy ⊙= GELU′(x)`, the derivative of the exact GELU: `Φ(x) + x·φ(x)`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn gelu_erf_backward(x: &[f32], dy: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (d, &v) in dy.iter_mut().zip(x) {
        let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        *d *= cdf + v * INV_SQRT_2PI * exp(-0.5 * v * v);
    }
}

/// The shape of a layer's attention.
#[derive(Clone, Copy)]
struct Heads {
    count: usize,
    dim: usize,
}

impl Heads {
    fn hidden(self) -> usize {
        self.count * self.dim
    }
}

/// Splits `v` into consecutive blocks of the given sizes.
fn split_sizes(mut v: &mut [f32], sizes: impl Iterator<Item = usize>) -> Vec<&mut [f32]> {
    sizes
        .map(|n| {
            let (head, tail) = std::mem::take(&mut v).split_at_mut(n);
            v = tail;
            head
        })
        .collect()
}

/// Values of the attention probabilities of each sequence (every head).
fn prob_sizes(packed: &Packed, heads: Heads) -> impl Iterator<Item = usize> + '_ {
    packed.lengths.iter().map(move |&l| heads.count * l * prob_stride(l))
}

/// Bidirectional attention per sequence over `qkv` rows (`[Q | K | V]`,
/// `3·hidden` wide): the context rows and the tape of the probabilities.
fn attention_forward(qkv: &[f32], packed: &Packed, heads: Heads, p: f64) -> Result<(Vec<f32>, AttentionTape)> {
    let (h, d) = (heads.hidden(), heads.dim);
    let total: usize = prob_sizes(packed, heads).sum();
    let mut probs = vec![0f32; total];
    let dropout = dropout_mask(total, p)?;
    let mut ctx = vec![0f32; packed.tokens() * h];
    let scale = 1.0 / (d as f32).sqrt();
    let prob_blocks = split_sizes(&mut probs, prob_sizes(packed, heads));
    let ctx_blocks = split_sizes(&mut ctx, packed.lengths.iter().map(|l| l * h));
    let mask_offsets = offsets(prob_sizes(packed, heads));
    prob_blocks
        .into_par_iter()
        .zip(ctx_blocks)
        .zip(packed.starts.par_iter().zip(&packed.lengths))
        .zip(mask_offsets)
        .for_each(|(((probs, ctx), (&start, &len)), at)| {
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let stride = prob_stride(len);
            let mut dropped = Vec::new();
            sequential(|| {
                for (i, p) in probs.chunks_mut(len * stride).enumerate() {
                    let part = |offset: usize| Mat::strided(&rows[offset + i * d..], len, d, 3 * h);
                    let s = MatMut::strided(p, len, len, stride);
                    gemm_with(
                        1.0,
                        part(0),
                        ALayout::MByK,
                        part(h),
                        BLayout::NByK,
                        s,
                        Output::Overwrite,
                    );
                    p.chunks_mut(stride).for_each(|row| softmax(row, len, scale));
                    let p: &[f32] = match &dropout {
                        Some(mask) => {
                            let mask = &mask[at + i * len * stride..][..len * stride];
                            dropped.clear();
                            dropped.extend(p.iter().zip(mask).map(|(p, m)| p * m));
                            &dropped
                        }
                        None => p,
                    };
                    let out = MatMut::strided(&mut ctx[i * d..], len, d, h);
                    let p = Mat::strided(p, len, len, stride);
                    gemm_with(
                        1.0,
                        p,
                        ALayout::MByK,
                        part(2 * h),
                        BLayout::KByN,
                        out,
                        Output::Overwrite,
                    );
                }
            });
        });
    Ok((ctx, AttentionTape { probs, dropout }))
}

/// Where each block of the given sizes starts.
fn offsets(sizes: impl Iterator<Item = usize>) -> Vec<usize> {
    sizes
        .scan(0, |at, n| {
            let start = *at;
            *at += n;
            Some(start)
        })
        .collect()
}

/// The backward pass of [`attention_forward`]: the gradient of the `qkv`
/// rows from that of the context rows.
fn attention_backward(qkv: &[f32], dctx: &[f32], tape: &AttentionTape, packed: &Packed, heads: Heads) -> Vec<f32> {
    let (h, d) = (heads.hidden(), heads.dim);
    let scale = 1.0 / (d as f32).sqrt();
    let mut dqkv = vec![0f32; qkv.len()];
    let blocks = split_sizes(&mut dqkv, packed.lengths.iter().map(|l| l * 3 * h));
    let prob_offsets = offsets(prob_sizes(packed, heads));
    blocks
        .into_par_iter()
        .zip(packed.starts.par_iter().zip(&packed.lengths))
        .zip(prob_offsets)
        .for_each(|((dqkv, (&start, &len)), at)| {
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let dctx = &dctx[start * h..(start + len) * h];
            let stride = prob_stride(len);
            let (mut dp, mut dropped) = (vec![0f32; len * stride], Vec::new());
            sequential(|| {
                for i in 0..heads.count {
                    let at = at + i * len * stride;
                    let p = &tape.probs[at..at + len * stride];
                    let part = |offset: usize| Mat::strided(&rows[offset + i * d..], len, d, 3 * h);
                    let dout = Mat::strided(&dctx[i * d..], len, d, h);
                    // dV = (P ⊙ M)ᵀ · dC
                    let pd: &[f32] = match &tape.dropout {
                        Some(mask) => {
                            dropped.clear();
                            dropped.extend(p.iter().zip(&mask[at..at + len * stride]).map(|(p, m)| p * m));
                            &dropped
                        }
                        None => p,
                    };
                    let dv = MatMut::strided(&mut dqkv[2 * h + i * d..], len, d, 3 * h);
                    let pd = Mat::strided(pd, len, len, stride);
                    gemm_with(1.0, pd, ALayout::KByM, dout, BLayout::KByN, dv, Output::Overwrite);
                    // dP = (dC · Vᵀ) ⊙ M, then the softmax's backward pass, scale included.
                    let s = MatMut::strided(&mut dp, len, len, stride);
                    gemm_with(
                        1.0,
                        dout,
                        ALayout::MByK,
                        part(2 * h),
                        BLayout::NByK,
                        s,
                        Output::Overwrite,
                    );
                    for (r, (dp, p)) in dp.chunks_mut(stride).zip(p.chunks(stride)).enumerate() {
                        let mask = tape.dropout.as_ref().map(|m| &m[at + r * stride..][..len]);
                        softmax_row_backward(&mut dp[..len], &p[..len], mask, scale);
                    }
                    let ds = Mat::strided(&dp, len, len, stride);
                    let dq = MatMut::strided(&mut dqkv[i * d..], len, d, 3 * h);
                    gemm_with(1.0, ds, ALayout::MByK, part(h), BLayout::KByN, dq, Output::Overwrite);
                    let dk = MatMut::strided(&mut dqkv[h + i * d..], len, d, 3 * h);
                    gemm_with(1.0, ds, ALayout::KByM, part(0), BLayout::KByN, dk, Output::Overwrite);
                }
            });
        });
    dqkv
}

/// `dp` (the gradient of a row of probabilities `p`, before its dropout
/// mask) becomes that of the scores: `scale · p ⊙ (dp − Σ dp ⊙ p)`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn softmax_row_backward(dp: &mut [f32], p: &[f32], mask: Option<&[f32]>, scale: f32) {
    if let Some(mask) = mask {
        dp.iter_mut().zip(mask).for_each(|(d, m)| *d *= m);
    }
    let mut acc = [0f32; 16];
    for (i, (d, p)) in dp.iter().zip(p).enumerate() {
        acc[i % 16] += d * p;
    }
    let dot: f32 = acc.iter().sum();
    dp.iter_mut().zip(p).for_each(|(d, p)| *d = scale * p * (*d - dot));
}

impl Embeddings {
    fn forward_taped(&self, packed: &Packed) -> Result<(Vec<f32>, EmbeddingsTape)> {
        let dim = self.word.weight.dim(1)?;
        let mut x = vec![0f32; packed.tokens() * dim];
        add_rows(&self.word.weight, packed.ids.iter().map(|&i| i as usize), &mut x)?;
        add_rows(
            &self.position.weight,
            packed.positions.iter().map(|&p| p as usize),
            &mut x,
        )?;
        // Single-segment inputs: every token has type 0.
        add_rows(&self.token_type.weight, std::iter::repeat_n(0, packed.tokens()), &mut x)?;
        let mut out = vec![0f32; x.len()];
        let norm = layer_norm_forward(x, &self.norm, &mut out)?;
        let dropout = dropout_mask(out.len(), self.dropout)?;
        apply_mask(&mut out, &dropout);
        Ok((out, EmbeddingsTape { norm, dropout }))
    }

    fn backward(&self, mut dy: Vec<f32>, tape: &EmbeddingsTape, packed: &Packed, grads: &mut HandGrads) -> Result<()> {
        let dim = self.word.weight.dim(1)?;
        apply_mask(&mut dy, &tape.dropout);
        layer_norm_backward(&mut dy, &tape.norm, &self.norm, grads)?;
        let word = grads.of(&self.word.weight);
        for (&id, d) in packed.ids.iter().zip(dy.chunks(dim)) {
            let row = &mut word[id as usize * dim..][..dim];
            row.iter_mut().zip(d).for_each(|(g, d)| *g += d);
        }
        let position = grads.of(&self.position.weight);
        for (&p, d) in packed.positions.iter().zip(dy.chunks(dim)) {
            let row = &mut position[p as usize * dim..][..dim];
            row.iter_mut().zip(d).for_each(|(g, d)| *g += d);
        }
        let rows = dy.len() / dim;
        add_column_sums(
            Mat::dense(&dy, rows, dim),
            &mut grads.of(&self.token_type.weight)[..dim],
        );
        Ok(())
    }
}

impl Layer {
    fn heads(&self) -> Result<Heads> {
        let hidden = self.query.parts().0.dim(0)?;
        Ok(Heads {
            count: self.heads,
            dim: hidden / self.heads,
        })
    }

    fn forward_taped(&self, input: Vec<f32>, packed: &Packed) -> Result<(Vec<f32>, LayerTape)> {
        let heads = self.heads()?;
        let (t, h) = (packed.tokens(), heads.hidden());
        let inter = self.intermediate.parts().0.dim(0)?;
        let mut qkv = vec![0f32; t * 3 * h];
        for (i, layer) in [&self.query, &self.key, &self.value].into_iter().enumerate() {
            linear_forward(&input, t, layer, &mut qkv[i * h..], 3 * h)?;
        }
        let (ctx, attention) = attention_forward(&qkv, packed, heads, self.attn_dropout)?;
        let mut z = vec![0f32; t * h];
        linear_forward(&ctx, t, &self.attn_out, &mut z, h)?;
        let attn_dropout = dropout_mask(z.len(), self.hidden_dropout)?;
        apply_mask(&mut z, &attn_dropout);
        add_assign(&mut z, &input);
        let mut mid = vec![0f32; t * h];
        let attn_norm = layer_norm_forward(z, &self.attn_norm, &mut mid)?;
        let mut up = vec![0f32; t * inter];
        linear_forward(&mid, t, &self.intermediate, &mut up, inter)?;
        let act = gelu(&up);
        let mut z = vec![0f32; t * h];
        linear_forward(&act, t, &self.output, &mut z, h)?;
        let out_dropout = dropout_mask(z.len(), self.hidden_dropout)?;
        apply_mask(&mut z, &out_dropout);
        add_assign(&mut z, &mid);
        let mut out = vec![0f32; t * h];
        let out_norm = layer_norm_forward(z, &self.out_norm, &mut out)?;
        let tape = LayerTape {
            input,
            qkv,
            attention,
            ctx,
            attn_dropout,
            attn_norm,
            mid,
            up,
            out_dropout,
            out_norm,
        };
        Ok((out, tape))
    }

    /// The gradient of the layer's input from that of its output (`dy`).
    fn backward(&self, mut dy: Vec<f32>, tape: &LayerTape, packed: &Packed, grads: &mut HandGrads) -> Result<Vec<f32>> {
        let heads = self.heads()?;
        let (t, h) = (packed.tokens(), heads.hidden());
        let inter = self.intermediate.parts().0.dim(0)?;
        // Feed-forward block: out = LN(mid + drop(W₂·GELU(W₁·mid)))
        layer_norm_backward(&mut dy, &tape.out_norm, &self.out_norm, grads)?;
        let mut dmid = dy.clone();
        apply_mask(&mut dy, &tape.out_dropout);
        let mut dact = vec![0f32; t * inter];
        let act = gelu(&tape.up);
        linear_backward(
            Mat::dense(&dy, t, h),
            &act,
            &self.output,
            grads,
            Some((&mut dact, Output::Overwrite)),
        )?;
        drop(act);
        dact.par_chunks_mut(4096)
            .zip(tape.up.par_chunks(4096))
            .for_each(|(d, x)| gelu_erf_backward(x, d));
        linear_backward(
            Mat::dense(&dact, t, inter),
            &tape.mid,
            &self.intermediate,
            grads,
            Some((&mut dmid, Output::Accumulate)),
        )?;
        // Attention block: mid = LN(input + drop(Wₒ·attention(W_qkv·input)))
        layer_norm_backward(&mut dmid, &tape.attn_norm, &self.attn_norm, grads)?;
        let mut dinput = dmid.clone();
        apply_mask(&mut dmid, &tape.attn_dropout);
        let mut dctx = vec![0f32; t * h];
        linear_backward(
            Mat::dense(&dmid, t, h),
            &tape.ctx,
            &self.attn_out,
            grads,
            Some((&mut dctx, Output::Overwrite)),
        )?;
        let dqkv = attention_backward(&tape.qkv, &dctx, &tape.attention, packed, heads);
        for (i, layer) in [&self.query, &self.key, &self.value].into_iter().enumerate() {
            let dy = Mat::strided(&dqkv[i * h..], t, h, 3 * h);
            linear_backward(dy, &tape.input, layer, grads, Some((&mut dinput, Output::Accumulate)))?;
        }
        Ok(dinput)
    }
}

/// `x += y`.
fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
}

/// The exact GELU of every value.
fn gelu(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut(4096).for_each(gelu_erf);
    out
}

impl Bert {
    /// Whether [`Bert::forward_taped`] covers this model: MKL linked, f32
    /// weights on the CPU, exact GELU, no unmerged LoRA adapter.
    pub(crate) fn trains_by_hand(&self) -> bool {
        let f32_cpu = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu();
        crate::packed::AVAILABLE
            && f32_cpu(&self.embeddings.word.weight)
            && self
                .layers
                .iter()
                .all(|l| l.act == Activation::Gelu && l.linears().all(|lin| !lin.has_lora() && f32_cpu(lin.parts().0)))
    }

    /// The forward pass in training mode (dropout on) on packed rows: the
    /// last hidden states of the real tokens, `[tokens, hidden]`, and the
    /// tape for [`Bert::backward_taped`].
    pub(crate) fn forward_taped(&self, batch: &TokenBatch) -> Result<(Vec<f32>, Tape)> {
        let packed = Packed::new(batch)?;
        let (mut x, embeddings) = self.embeddings.forward_taped(&packed)?;
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, tape) = layer.forward_taped(x, &packed)?;
            layers.push(tape);
            x = out;
        }
        let tape = Tape {
            packed,
            embeddings,
            layers,
        };
        Ok((x, tape))
    }

    /// Adds every parameter's gradient to `grads`, given the gradient of
    /// the last hidden states that [`Bert::forward_taped`] gave.
    pub(crate) fn backward_taped(&self, tape: Tape, mut dy: Vec<f32>, grads: &mut HandGrads) -> Result<()> {
        let Tape {
            packed,
            embeddings,
            mut layers,
        } = tape;
        for layer in self.layers.iter().rev() {
            let layer_tape = layers.pop().expect("a tape per layer");
            dy = layer.backward(dy, &layer_tape, &packed, grads)?;
        }
        self.embeddings.backward(dy, &embeddings, &packed, grads)
    }
}
