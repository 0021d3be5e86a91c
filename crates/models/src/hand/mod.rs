//! Training by hand on the CPU in f32 (feature `mkl`): the forward pass of a
//! backbone that keeps what its backward pass needs (a [`Tape`]), and the
//! backward pass written out, giving the gradient of every trainable
//! parameter in closed form.
//!
//! candle's autograd on a padded batch keeps every intermediate of every
//! primitive op until the backward pass and makes a pass over memory for
//! each: a MiniLM step took 2.8× PyTorch's time, and a LoRA step on a
//! Qwen3-0.6B shape ran out of 24 GB where PEFT took 15. Here the forward
//! pass runs on packed rows as the packed inference path does (no padding;
//! see `packed.rs`), with the model's dropout and LoRA adapters, and the
//! backward pass is GEMMs (a weight's gradient `dYᵀ·X` accumulated in place)
//! plus one pass each for the norm, activation, softmax and dropout
//! gradients. Frozen weights get no gradient and cost only their share of
//! the input's gradient.
//!
//! This module holds what every architecture shares (linear layers with
//! LoRA, layer norm and RMSNorm, attention, GELU and SwiGLU); `bert.rs` and
//! `decoder.rs` chain them as their backbone files do. Dropout masks come
//! from the seeded stream of [`crate::ops::seed_dropout`], so a seed replays
//! a pass exactly (GradCache relies on it); they are not candle's path's
//! masks, since this path has no padding. [`crate::Embedder`] takes this
//! path under [`crate::Kernels::Fast`]; `Kernels::Reference` keeps candle's
//! autograd, which the parity tests compare it with.

mod bert;
mod decoder;

use std::collections::{HashMap, HashSet};

use candle_core::{CpuStorage, DType, Result, Storage, Tensor, TensorId, Var};
use multiversion::multiversion;
use rayon::prelude::*;
use reasonembed_mkl::{ALayout, BLayout, Mat, MatMut, Output, gemm_with, sequential};

use crate::nn::{LayerNorm, Linear, RmsNorm};
use crate::ops::{DropoutDraw, dropout_draw, dropout_mask};
use crate::packed::{Packed, chunk_rows, erf, exp, softmax, sum};

/// Gradients of the trainable parameters, as f32 buffers the backward
/// passes add into.
pub struct HandGrads {
    trainable: HashSet<TensorId>,
    by_param: HashMap<TensorId, (Tensor, Vec<f32>)>,
}

impl HandGrads {
    /// Empty gradients for `vars`; other parameters get none.
    pub fn new(vars: &[(String, Var)]) -> Self {
        Self {
            trainable: vars.iter().map(|(_, v)| v.as_tensor().id()).collect(),
            by_param: HashMap::new(),
        }
    }

    /// The buffer of `param`'s gradient (zeros at first), or `None` when it
    /// is frozen.
    fn of(&mut self, param: &Tensor) -> Option<&mut [f32]> {
        if !self.trainable.contains(&param.id()) {
            return None;
        }
        Some(
            &mut self
                .by_param
                .entry(param.id())
                .or_insert_with(|| (param.clone(), vec![0.0; param.elem_count()]))
                .1,
        )
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
    layers: Layers,
}

enum Layers {
    Bert(bert::BertTape),
    Decoder(decoder::DecoderTape),
}

impl Tape {
    /// Real length of each sequence of the batch.
    pub(crate) fn lengths(&self) -> &[usize] {
        &self.packed.lengths
    }
}

/// Whether a tensor is f32 on the CPU, as everything here takes it.
fn f32_cpu(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu()
}

/// Whether a linear layer (and its adapter) can train by hand.
fn covers(layer: &Linear) -> bool {
    f32_cpu(layer.parts().0)
        && layer.lora().is_none_or(|l| {
            let (a, b, _, _) = l.parts();
            f32_cpu(a) && f32_cpu(b)
        })
}

/// Runs `f` on the values of a contiguous f32 tensor on the CPU.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => Ok(f(&v[start..end])),
        _ => candle_core::bail!("training by hand: expected a contiguous f32 tensor on the CPU"),
    }
}

/// `C = α·op(A)·op(B)` (or `C +=`), C's rows split among rayon's threads and
/// MKL sequential in each: one thread pool, as the packed path.
fn par_gemm(alpha: f32, a: Mat<f32>, a_layout: ALayout, b: Mat<f32>, b_layout: BLayout, c: MatMut, output: Output) {
    let (m, n, stride) = (c.rows, c.cols, c.stride);
    let block = chunk_rows(m).next_multiple_of(16);
    let mut parts = Vec::new();
    let mut rest = c.data;
    for r0 in (0..m).step_by(block) {
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
        let c = MatMut::strided(part, rows, n, stride);
        sequential(|| gemm_with(alpha, a, a_layout, b, b_layout, c, output));
    });
}

/// What a linear layer's backward pass needs beyond its input: its LoRA
/// adapter's `u = drop(x)·Aᵀ` and the draw of its dropout mask.
struct LinearTape {
    lora: Option<(Vec<f32>, Option<DropoutDraw>)>,
}

/// `x ⊙ mask`, or `x` itself without dropout.
fn dropped<'a>(x: &'a [f32], draw: &Option<DropoutDraw>) -> std::borrow::Cow<'a, [f32]> {
    match draw {
        Some(d) => {
            let mut v = x.to_vec();
            d.apply(&mut v);
            std::borrow::Cow::Owned(v)
        }
        None => std::borrow::Cow::Borrowed(x),
    }
}

/// `Y = X·Wᵀ + b + s·(drop(X)·Aᵀ)·Bᵀ` (the LoRA term when an adapter is
/// attached) into `y`, a `rows × out` block of rows `stride` wide.
fn linear_forward(x: &[f32], rows: usize, layer: &Linear, y: &mut [f32], stride: usize) -> Result<LinearTape> {
    let (weight, bias) = layer.parts();
    let (out, k) = weight.dims2()?;
    match bias {
        Some(b) => with_values(b, |b| {
            y.par_chunks_mut(stride).for_each(|row| row[..out].copy_from_slice(b))
        })?,
        None => y.par_chunks_mut(stride).for_each(|row| row[..out].fill(0.0)),
    }
    let x_mat = Mat::dense(x, rows, k);
    with_values(weight, |w| {
        let c = MatMut::strided(y, rows, out, stride);
        par_gemm(
            1.0,
            x_mat,
            ALayout::MByK,
            Mat::dense(w, out, k),
            BLayout::NByK,
            c,
            Output::Accumulate,
        )
    })?;
    let Some(adapter) = layer.lora() else {
        return Ok(LinearTape { lora: None });
    };
    let (a, b, scale, p) = adapter.parts();
    let rank = a.dim(0)?;
    let draw = dropout_draw(rows * k, p)?;
    let mut u = vec![0f32; rows * rank];
    let xd = dropped(x, &draw);
    with_values(a, |a| {
        let c = MatMut::dense(&mut u, rows, rank);
        let xd = Mat::dense(&xd, rows, k);
        par_gemm(
            1.0,
            xd,
            ALayout::MByK,
            Mat::dense(a, rank, k),
            BLayout::NByK,
            c,
            Output::Overwrite,
        )
    })?;
    with_values(b, |b| {
        let c = MatMut::strided(y, rows, out, stride);
        let u = Mat::dense(&u, rows, rank);
        par_gemm(
            scale,
            u,
            ALayout::MByK,
            Mat::dense(b, out, rank),
            BLayout::NByK,
            c,
            Output::Accumulate,
        )
    })?;
    Ok(LinearTape { lora: Some((u, draw)) })
}

/// The backward pass of [`linear_forward`], given `dY`: adds the gradients
/// of the trainable parameters (`dW += dYᵀ·X`, `db += Σ dY`, and the
/// adapter's `dB += s·dYᵀ·u`, `dA += (s·dY·B)ᵀ·drop(X)`), then writes (or
/// adds) the input's gradient into `dx` when given.
fn linear_backward(
    dy: Mat<f32>,
    x: &[f32],
    layer: &Linear,
    tape: &LinearTape,
    grads: &mut HandGrads,
    dx: Option<(&mut [f32], Output)>,
) -> Result<()> {
    let (weight, bias) = layer.parts();
    let (out, k) = weight.dims2()?;
    let rows = dy.rows;
    if let Some(g) = grads.of(weight) {
        let (x, g) = (Mat::dense(x, rows, k), MatMut::dense(g, out, k));
        par_gemm(1.0, dy, ALayout::KByM, x, BLayout::KByN, g, Output::Accumulate);
    }
    if let Some(g) = bias.and_then(|b| grads.of(b)) {
        add_column_sums(dy, g);
    }
    let mut dx = dx;
    if let Some((dx, output)) = &mut dx {
        with_values(weight, |w| {
            let c = MatMut::dense(dx, rows, k);
            par_gemm(1.0, dy, ALayout::MByK, Mat::dense(w, out, k), BLayout::KByN, c, *output)
        })?;
    }
    let (Some(adapter), Some((u, draw))) = (layer.lora(), &tape.lora) else {
        return Ok(());
    };
    let (a, b, scale, _) = adapter.parts();
    let rank = a.dim(0)?;
    if let Some(g) = grads.of(b) {
        let (u, g) = (Mat::dense(u, rows, rank), MatMut::dense(g, out, rank));
        par_gemm(scale, dy, ALayout::KByM, u, BLayout::KByN, g, Output::Accumulate);
    }
    let mut du = vec![0f32; rows * rank];
    with_values(b, |b| {
        let c = MatMut::dense(&mut du, rows, rank);
        par_gemm(
            scale,
            dy,
            ALayout::MByK,
            Mat::dense(b, out, rank),
            BLayout::KByN,
            c,
            Output::Overwrite,
        )
    })?;
    let du_mat = Mat::dense(&du, rows, rank);
    if let Some(g) = grads.of(a) {
        let xd = dropped(x, draw);
        let (xd, g) = (Mat::dense(&xd, rows, k), MatMut::dense(g, rank, k));
        par_gemm(1.0, du_mat, ALayout::KByM, xd, BLayout::KByN, g, Output::Accumulate);
    }
    if let Some((dx, _)) = dx {
        with_values(a, |a| {
            let a = Mat::dense(a, rank, k);
            match draw {
                None => {
                    let c = MatMut::dense(dx, rows, k);
                    par_gemm(1.0, du_mat, ALayout::MByK, a, BLayout::KByN, c, Output::Accumulate)
                }
                Some(draw) => {
                    let mut t = vec![0f32; rows * k];
                    let c = MatMut::dense(&mut t, rows, k);
                    par_gemm(1.0, du_mat, ALayout::MByK, a, BLayout::KByN, c, Output::Overwrite);
                    draw.apply(&mut t);
                    add_assign(dx, &t);
                }
            }
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

/// `x += y`.
fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
}

/// Adds a gradient's partial sums (one per block of rows) into `param`'s.
fn add_partials(grads: &mut HandGrads, param: &Tensor, partials: impl Iterator<Item = Vec<f32>>) {
    if let Some(g) = grads.of(param) {
        for p in partials {
            g.iter_mut().zip(p).for_each(|(g, v)| *g += v);
        }
    }
}

/// A layer norm's normalised input `x̂` and `1/σ` per row.
struct NormTape {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
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
    let rstd = 1.0 / (sum_squares(x) / n + eps).sqrt();
    x.iter_mut().for_each(|v| *v *= rstd);
    rstd
}

#[inline(always)]
fn sum_squares(x: &[f32]) -> f32 {
    let mut sq = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        sq.iter_mut().zip(c).for_each(|(a, v)| *a += v * v);
    }
    sq.iter().sum::<f32>() + tail
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
                norm_row_backward(dy, xhat, r, &w, &mut dw, Some(&mut db));
            }
            (dw, db)
        })
        .collect();
    let (weight, bias) = norm.tensors();
    let (dw, db): (Vec<_>, Vec<_>) = partial.into_iter().unzip();
    add_partials(grads, weight, dw.into_iter());
    add_partials(grads, bias, db.into_iter());
    Ok(())
}

/// One row of a norm's backward pass: with `g = dy ⊙ γ`, `dy` becomes
/// `(g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ` for a layer norm (`db` given),
/// `(g − x̂ · mean(g ⊙ x̂)) / σ` for an RMSNorm (its mean is not subtracted).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn norm_row_backward(dy: &mut [f32], xhat: &[f32], rstd: f32, w: &[f32], dw: &mut [f32], db: Option<&mut [f32]>) {
    let n = dy.len() as f32;
    let (mut sum_g, mut sum_gx) = ([0f32; 16], [0f32; 16]);
    for (i, ((d, x), w)) in dy.iter().zip(xhat).zip(w).enumerate() {
        sum_g[i % 16] += d * w;
        sum_gx[i % 16] += d * w * x;
    }
    let mean_g = if db.is_some() {
        sum_g.iter().sum::<f32>() / n
    } else {
        0.0
    };
    let mean_gx = sum_gx.iter().sum::<f32>() / n;
    if let Some(db) = db {
        db.iter_mut().zip(dy.iter()).for_each(|(b, d)| *b += d);
    }
    for (((d, x), w), dw) in dy.iter_mut().zip(xhat).zip(w).zip(dw.iter_mut()) {
        *dw += *d * x;
        *d = (*d * w - mean_g - x * mean_gx) * rstd;
    }
}

/// `out = RMSNorm(x)` row by row (`x / √(mean x² + ε) · w`, as
/// transformers); gives `1/rms` per row.
fn rms_norm_forward(x: &[f32], norm: &RmsNorm, out: &mut [f32]) -> Result<Vec<f32>> {
    let (w, eps) = norm.parts_f32()?;
    let dim = w.len();
    let mut rstd = vec![0f32; x.len() / dim];
    x.par_chunks(dim)
        .zip(out.par_chunks_mut(dim))
        .zip(rstd.par_iter_mut())
        .for_each(|((x, o), r)| *r = rms_row(x, &w, eps, o));
    Ok(rstd)
}

/// One row of an RMSNorm into `out`; gives `1/rms`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn rms_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) -> f32 {
    let rstd = 1.0 / (sum_squares(x) / x.len() as f32 + eps).sqrt();
    for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
        *o = x * rstd * w;
    }
    rstd
}

/// The backward pass of [`rms_norm_forward`] on input `x`: adds the input's
/// gradient to `dx` and `Σ dy ⊙ x̂` to the scale's gradient.
fn rms_norm_backward(
    dy: &[f32],
    x: &[f32],
    rstd: &[f32],
    norm: &RmsNorm,
    grads: &mut HandGrads,
    dx: &mut [f32],
) -> Result<()> {
    let (w, _) = norm.parts_f32()?;
    let dim = w.len();
    let block = chunk_rows(rstd.len()) * dim;
    let partial: Vec<Vec<f32>> = dy
        .par_chunks(block)
        .zip(x.par_chunks(block))
        .zip(rstd.par_chunks(block / dim))
        .zip(dx.par_chunks_mut(block))
        .map(|(((dy, x), rstd), dx)| {
            let mut dw = vec![0f32; dim];
            let (mut g, mut xhat) = (vec![0f32; dim], vec![0f32; dim]);
            for (((dy, x), &r), dx) in dy.chunks(dim).zip(x.chunks(dim)).zip(rstd).zip(dx.chunks_mut(dim)) {
                g.copy_from_slice(dy);
                xhat.iter_mut().zip(x).for_each(|(h, x)| *h = x * r);
                norm_row_backward(&mut g, &xhat, r, &w, &mut dw, None);
                dx.iter_mut().zip(&g).for_each(|(d, g)| *d += g);
            }
            dw
        })
        .collect();
    add_partials(grads, norm.tensor(), partial.into_iter());
    Ok(())
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

/// The shape of a layer's attention over `qkv` rows `[Q | K | V]`.
#[derive(Clone, Copy)]
struct Heads {
    q: usize,
    kv: usize,
    dim: usize,
    causal: bool,
}

impl Heads {
    fn width(self) -> usize {
        (self.q + 2 * self.kv) * self.dim
    }

    /// Offsets of query head `i`'s Q, K and V in a `qkv` row.
    fn offsets(self, i: usize) -> (usize, usize, usize) {
        let kv = i / (self.q / self.kv);
        let d = self.dim;
        (i * d, (self.q + kv) * d, (self.q + self.kv + kv) * d)
    }

    /// Whether query head `i` is the first of its key/value group (the one
    /// that overwrites the group's K and V gradients; the others add).
    fn first_of_group(self, i: usize) -> bool {
        i.is_multiple_of(self.q / self.kv)
    }
}

/// Each sequence's attention probabilities, every head, rows padded to
/// [`prob_stride`] (zeros past the sequence, or past the query when causal),
/// and their dropout mask.
struct AttentionTape {
    probs: Vec<f32>,
    dropout: Option<Vec<f32>>,
}

/// Score rows padded to whole 16-wide vectors, as `packed::softmax` takes them.
fn prob_stride(len: usize) -> usize {
    len.next_multiple_of(16)
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

/// Values of the attention probabilities of each sequence (every head).
fn prob_sizes(packed: &Packed, heads: Heads) -> impl Iterator<Item = usize> + '_ {
    packed.lengths.iter().map(move |&l| heads.q * l * prob_stride(l))
}

/// Attention per sequence over `qkv` rows: the context rows (`q·dim` wide)
/// and the tape of the probabilities.
fn attention_forward(qkv: &[f32], packed: &Packed, heads: Heads, p: f64) -> Result<(Vec<f32>, AttentionTape)> {
    let (w, h, d) = (heads.width(), heads.q * heads.dim, heads.dim);
    let total: usize = prob_sizes(packed, heads).sum();
    let mut probs = vec![0f32; total];
    let dropout = dropout_mask(total, p)?;
    let mut ctx = vec![0f32; packed.tokens() * h];
    let scale = 1.0 / (d as f32).sqrt();
    let prob_blocks = split_sizes(&mut probs, prob_sizes(packed, heads));
    let ctx_blocks = split_sizes(&mut ctx, packed.lengths.iter().map(|l| l * h));
    prob_blocks
        .into_par_iter()
        .zip(ctx_blocks)
        .zip(packed.starts.par_iter().zip(&packed.lengths))
        .zip(offsets(prob_sizes(packed, heads)))
        .for_each(|(((probs, ctx), (&start, &len)), at)| {
            let rows = &qkv[start * w..(start + len) * w];
            let stride = prob_stride(len);
            let mut kept = Vec::new();
            sequential(|| {
                for (i, p) in probs.chunks_mut(len * stride).enumerate() {
                    let (q, k, v) = heads.offsets(i);
                    let part = |offset: usize| Mat::strided(&rows[offset..], len, d, w);
                    let s = MatMut::strided(p, len, len, stride);
                    gemm_with(
                        1.0,
                        part(q),
                        ALayout::MByK,
                        part(k),
                        BLayout::NByK,
                        s,
                        Output::Overwrite,
                    );
                    for (r, row) in p.chunks_mut(stride).enumerate() {
                        softmax(row, if heads.causal { r + 1 } else { len }, scale);
                    }
                    let p: &[f32] = match &dropout {
                        Some(mask) => {
                            let mask = &mask[at + i * len * stride..][..len * stride];
                            kept.clear();
                            kept.extend(p.iter().zip(mask).map(|(p, m)| p * m));
                            &kept
                        }
                        None => p,
                    };
                    let out = MatMut::strided(&mut ctx[i * d..], len, d, h);
                    let p = Mat::strided(p, len, len, stride);
                    gemm_with(1.0, p, ALayout::MByK, part(v), BLayout::KByN, out, Output::Overwrite);
                }
            });
        });
    Ok((ctx, AttentionTape { probs, dropout }))
}

/// The backward pass of [`attention_forward`]: the gradient of the `qkv`
/// rows from that of the context rows.
fn attention_backward(qkv: &[f32], dctx: &[f32], tape: &AttentionTape, packed: &Packed, heads: Heads) -> Vec<f32> {
    let (w, h, d) = (heads.width(), heads.q * heads.dim, heads.dim);
    let scale = 1.0 / (d as f32).sqrt();
    let mut dqkv = vec![0f32; qkv.len()];
    let blocks = split_sizes(&mut dqkv, packed.lengths.iter().map(|l| l * w));
    blocks
        .into_par_iter()
        .zip(packed.starts.par_iter().zip(&packed.lengths))
        .zip(offsets(prob_sizes(packed, heads)))
        .for_each(|((dqkv, (&start, &len)), at)| {
            let rows = &qkv[start * w..(start + len) * w];
            let dctx = &dctx[start * h..(start + len) * h];
            let stride = prob_stride(len);
            let (mut dp, mut kept) = (vec![0f32; len * stride], Vec::new());
            sequential(|| {
                for i in 0..heads.q {
                    let (q, k, v) = heads.offsets(i);
                    let group = if heads.first_of_group(i) {
                        Output::Overwrite
                    } else {
                        Output::Accumulate
                    };
                    let at = at + i * len * stride;
                    let p = &tape.probs[at..at + len * stride];
                    let part = |offset: usize| Mat::strided(&rows[offset..], len, d, w);
                    let dout = Mat::strided(&dctx[i * d..], len, d, h);
                    // dV = (P ⊙ M)ᵀ · dC
                    let pd: &[f32] = match &tape.dropout {
                        Some(mask) => {
                            kept.clear();
                            kept.extend(p.iter().zip(&mask[at..at + len * stride]).map(|(p, m)| p * m));
                            &kept
                        }
                        None => p,
                    };
                    let dv = MatMut::strided(&mut dqkv[v..], len, d, w);
                    let pd = Mat::strided(pd, len, len, stride);
                    gemm_with(1.0, pd, ALayout::KByM, dout, BLayout::KByN, dv, group);
                    // dP = (dC · Vᵀ) ⊙ M, then the softmax's backward pass, scale included.
                    let s = MatMut::strided(&mut dp, len, len, stride);
                    gemm_with(1.0, dout, ALayout::MByK, part(v), BLayout::NByK, s, Output::Overwrite);
                    for (r, (dp, p)) in dp.chunks_mut(stride).zip(p.chunks(stride)).enumerate() {
                        let mask = tape.dropout.as_ref().map(|m| &m[at + r * stride..][..len]);
                        softmax_row_backward(&mut dp[..len], &p[..len], mask, scale);
                    }
                    let ds = Mat::strided(&dp, len, len, stride);
                    let dq = MatMut::strided(&mut dqkv[q..], len, d, w);
                    gemm_with(1.0, ds, ALayout::MByK, part(k), BLayout::KByN, dq, Output::Overwrite);
                    let dk = MatMut::strided(&mut dqkv[k..], len, d, w);
                    gemm_with(1.0, ds, ALayout::KByM, part(q), BLayout::KByN, dk, group);
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

/// Adds rows of `d` to the rows `ids` of an embedding table's gradient.
fn add_embedding_rows(
    grads: &mut HandGrads,
    table: &Tensor,
    ids: impl Iterator<Item = usize>,
    d: &[f32],
) -> Result<()> {
    let dim = table.dim(1)?;
    if let Some(g) = grads.of(table) {
        for (id, d) in ids.zip(d.chunks(dim)) {
            g[id * dim..][..dim].iter_mut().zip(d).for_each(|(g, d)| *g += d);
        }
    }
    Ok(())
}
