//! Unpadded ("packed") inference on CPU, for the encoder and decoder
//! backbones: the real tokens of a batch sit back to back as the rows of one
//! `[tokens, hidden]` matrix, so no pad token is ever computed; dense layers
//! are GEMMs (MKL's; for bf16 on AMX, our own) over blocks of those rows,
//! attention runs per sequence, and
//! bias, residual, activation (GELU, SwiGLU) and norm (layer norm, RMSNorm)
//! run on each block while it is in cache.
//!
//! Threads: every parallel region is a rayon one (row chunks of a GEMM,
//! sequences of attention), and MKL runs single-threaded inside it
//! ([`reasonembed_mkl::sequential`]). Two thread pools taking turns would
//! leave MKL's OpenMP workers spinning through rayon's work.
//!
//! Precision: activations stay f32. With bf16 weights each GEMM takes its
//! input rounded to bf16 and accumulates in f32: on our own AMX kernel
//! ([`crate::amx`]) where the CPU has AMX, else on MKL (AVX512-BF16 where the
//! CPU has it); norms, softmax and GELU are computed in f32. f32 weights run
//! on MKL's SGEMM, or at [`MatmulPrecision::High`] on AMX as pairs of bf16
//! values (attention too, on heads of [`SPLIT_ATTENTION_DIM`] or more).
//!
//! Inference only, on frozen weights: nothing here records a gradient, and
//! each layer keeps its weight packed for its GEMM after the first batch.
//! `Mode::Train` and every model this path does not cover use the candle ops
//! of the backbone files, the reference this path is tested against; training
//! by hand (`hand/`) reuses the packing and the row kernels here.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};
use half::slice::HalfFloatSliceExt as _;
use multiversion::multiversion;
use rayon::prelude::*;
use reasonembed_mkl::{BLayout, Mat, MatMut, Output, PackedB};
use std::sync::Arc;

use crate::amx::{AmxRows, AmxWeight, bf16_bits, split_bf16};
use crate::batch::TokenBatch;
use crate::embedder::MatmulPrecision;
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
}

/// Adds row `ids[i]` of `table` (`[rows, dim]`, f32 or bf16) to row `i` of
/// `out`: embedding look-ups straight into the packed rows.
pub(crate) fn add_rows(table: &Tensor, ids: impl ExactSizeIterator<Item = usize>, out: &mut [f32]) -> Result<()> {
    let (rows, dim) = table.dims2()?;
    if ids.len() * dim != out.len() {
        candle_core::bail!("packed path: {} look-ups do not fill {} values", ids.len(), out.len());
    }
    let (storage, layout) = table.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("packed path: expected a contiguous embedding table");
    };
    for (id, row) in ids.zip(out.chunks_mut(dim)) {
        if id >= rows {
            candle_core::bail!("token id {id} is past the embedding table's {rows} rows");
        }
        let at = id * dim;
        match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => add_into(row, Some(&v[start..end][at..at + dim]), None),
            Storage::Cpu(CpuStorage::BF16(v)) => row
                .iter_mut()
                .zip(&v[start..end][at..at + dim])
                .for_each(|(o, t)| *o += t.to_f32()),
            _ => candle_core::bail!("packed path: expected an f32 or bf16 embedding table on the CPU"),
        }
    }
    Ok(())
}

/// How a dense layer of the packed path multiplies: as its weight's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// f32 weights and inputs: MKL's SGEMM, or at
    /// [`MatmulPrecision::High`] on AMX, each value split into two bf16
    /// ones ([`AmxWeight::from_f32_split`]).
    F32,
    /// bf16 weights, inputs rounded to bf16, f32 sums.
    Bf16,
}

/// Output columns per packed slab of a bf16 weight for MKL. MKL's bf16 GEMM
/// streams its whole `B` once per few rows of `A`: on a wide weight
/// (megabytes) that is bound by memory, on a slab that stays in the L2 cache
/// across a block's rows it runs faster (measured on the 1024 × 6144 layers
/// of the Qwen3-0.6B shape: ≈ 1.1 TFLOP/s → 1.4–1.6 TFLOP/s on 2 cores).
/// SGEMM is bound by arithmetic, so f32 weights stay whole.
const SLAB_COLUMNS: usize = 256;

/// A layer's weight, packed for the GEMM that multiplies it.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    form: Form,
    kernel: WeightKernel,
    /// `(n, k)` of the layer: `n` outputs, `k` inputs.
    n: usize,
    k: usize,
}

/// Which GEMM a weight is packed for.
#[derive(Debug)]
enum WeightKernel {
    /// MKL's packed layout, as column slabs of the output (whole for f32).
    Mkl(Vec<PackedB>),
    /// Our own AMX kernel ([`crate::amx`]), for bf16 where the CPU has AMX:
    /// about 2 TFLOP/s on 2 cores in the Qwen3-0.6B shape, where MKL's slabs
    /// reach 1.4–1.6; and for f32 at [`MatmulPrecision::High`], split.
    Amx(AmxWeight),
}

impl PackedWeight {
    fn new(weight: &Tensor, precision: MatmulPrecision) -> Result<Self> {
        let (n, k) = weight.dims2()?;
        let (storage, tensor_layout) = weight.storage_and_layout();
        let Some((start, end)) = tensor_layout.contiguous_offsets() else {
            candle_core::bail!("packed path: expected a contiguous weight");
        };
        let (form, kernel) = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) if precision == MatmulPrecision::High && crate::amx::available() => (
                Form::F32,
                WeightKernel::Amx(AmxWeight::from_f32_split(&v[start..end], n, k)),
            ),
            Storage::Cpu(CpuStorage::F32(v)) => (
                Form::F32,
                WeightKernel::Mkl(vec![PackedB::new(Mat::dense(&v[start..end], n, k), BLayout::NByK)]),
            ),
            Storage::Cpu(CpuStorage::BF16(v)) if crate::amx::available() => {
                let bits: &[u16] = v[start..end].reinterpret_cast();
                let tiles = AmxWeight::from_bf16(bits, n, k);
                (Form::Bf16, WeightKernel::Amx(tiles))
            }
            Storage::Cpu(CpuStorage::BF16(v)) => {
                let bits: &[u16] = v[start..end].reinterpret_cast();
                let slab = |j: usize| {
                    let cols = SLAB_COLUMNS.min(n - j);
                    PackedB::new(Mat::dense(&bits[j * k..(j + cols) * k], cols, k), BLayout::NByK)
                };
                (
                    Form::Bf16,
                    WeightKernel::Mkl((0..n).step_by(SLAB_COLUMNS).map(slab).collect()),
                )
            }
            _ => candle_core::bail!("packed path: expected f32 or bf16 weights on the CPU"),
        };
        Ok(Self { form, kernel, n, k })
    }

    /// MKL's slabs with their first output column (none for AMX).
    fn slabs(&self) -> impl Iterator<Item = (usize, &PackedB)> {
        let slabs = match &self.kernel {
            WeightKernel::Mkl(slabs) => &slabs[..],
            WeightKernel::Amx(_) => &[],
        };
        slabs.iter().scan(0, |col, s| {
            let at = *col;
            *col += s.dims().0;
            Some((at, s))
        })
    }
}

/// The layer's weight packed for its GEMM (made on first use, then kept with
/// the layer).
fn packed_weight(layer: &Linear) -> Result<Arc<PackedWeight>> {
    if let Some(p) = layer.packed.get() {
        return Ok(p.clone());
    }
    let pack = PackedWeight::new(layer.parts().0, layer.matmul_precision())?;
    Ok(layer.packed.get_or_init(|| Arc::new(pack)).clone())
}

/// A vector parameter (bias, norm scale) in f32.
fn vector(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1()
}

/// Rows per parallel chunk: one chunk per thread.
pub(crate) fn chunk_rows(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// Rows per block of an f32 [`linear`]: small enough that a block's output
/// (up to a few thousand columns) stays in the L2 cache for the passes after
/// the GEMM, large enough for MKL's kernels to run at full rate.
const BLOCK_ROWS: usize = 64;

/// The most rows per block of a bf16 [`linear`]: each block reads every slab
/// of the weight once, so larger blocks read less of it, but a block's
/// feed-forward intermediate should stay in the L2 cache for `down` to read
/// (at 256 rows the Qwen3-0.6B shape's is 6 MB; 128 rows ran 5 % faster).
const BF16_BLOCK_ROWS: usize = 128;

/// Linear layers side by side, ready for packed rows: weights packed for
/// their GEMM, biases in f32.
struct Dense {
    weights: Vec<Arc<PackedWeight>>,
    biases: Vec<Option<Vec<f32>>>,
    form: Form,
    /// Whether the weights are packed for [`crate::amx`] (else for MKL).
    amx: bool,
    /// Input width.
    k: usize,
    /// Output width: the layers' widths summed.
    width: usize,
}

thread_local! {
    /// Per-thread scratch rows, reused across blocks: a fresh allocation of
    /// this size would be a new mapping (and its page faults) every time.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread f32 rows of a block after their prologue, as [`SCRATCH`].
    static PROLOGUE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread bf16 rows of a block, as [`SCRATCH`].
    static X16: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread bf16 rows of a block in AMX tiles, as [`SCRATCH`].
    static AMX_ROWS: std::cell::RefCell<AmxRows> = std::cell::RefCell::new(AmxRows::default());
}

impl Dense {
    fn new(layers: &[&Linear]) -> Result<Self> {
        let weights = layers.iter().map(|l| packed_weight(l)).collect::<Result<Vec<_>>>()?;
        let form = weights.first().map_or(Form::F32, |w| w.form);
        let biases = layers
            .iter()
            .map(|l| l.parts().1.map(vector).transpose())
            .collect::<Result<Vec<_>>>()?;
        let k = weights.first().map_or(0, |w| w.k);
        let amx = weights
            .first()
            .is_some_and(|w| matches!(w.kernel, WeightKernel::Amx(_)));
        if weights
            .iter()
            .any(|w| w.k != k || w.form != form || matches!(w.kernel, WeightKernel::Amx(_)) != amx)
        {
            candle_core::bail!("packed path: side-by-side layers need one input width, dtype and kernel");
        }
        let width = weights.iter().map(|w| w.n).sum();
        Ok(Self {
            weights,
            biases,
            form,
            amx,
            k,
            width,
        })
    }

    /// Whether the GEMM is MKL's SGEMM: f32, not split for AMX.
    fn sgemm(&self) -> bool {
        self.form == Form::F32 && !self.amx
    }

    /// Rows per block for a matrix of `rows` rows: [`BLOCK_ROWS`] for MKL's
    /// SGEMM; for bf16 products at most [`BF16_BLOCK_ROWS`], in a number of
    /// blocks that the threads share evenly (on AMX rounded up to whole
    /// blocks of its kernel, so the last block may be shorter).
    fn block_rows(&self, rows: usize) -> usize {
        if self.sgemm() {
            return BLOCK_ROWS;
        }
        let threads = rayon::current_num_threads().max(1);
        let blocks = threads * rows.div_ceil(threads * BF16_BLOCK_ROWS).max(1);
        let block = rows.div_ceil(blocks).max(1);
        // Whole blocks of the AMX kernel's rows: a partial one goes through a
        // scratch block (its rows copied in and out) and computes 32 rows anyway.
        if self.amx {
            block.next_multiple_of(crate::amx::BLOCK)
        } else {
            block
        }
    }

    /// One block of rows: `out = prologue(x) · Wᵀ + b (+ residual)`, then
    /// `post(r, row)` on each finished row `r` of the block while it is in
    /// cache. For bf16 weights the block goes through the prologue and is
    /// rounded once, for every layer. `x` holds rows `lda` apart, each the
    /// prologue's input (`lda` may be wider than it reads).
    fn block(
        &self,
        x: &[f32],
        lda: usize,
        prologue: Prologue,
        out: &mut [f32],
        residual: Option<&[f32]>,
        post: &(impl Fn(usize, &mut [f32]) + Sync),
    ) {
        let (k, ldc) = (self.k, self.width);
        let m = x.len() / lda;
        // MKL's SGEMM overwrites its output: there bias and residual are
        // added after, on rows still in cache. The other GEMMs accumulate
        // onto rows that start as bias + residual (MKL's bf16 GEMM clears an
        // output it overwrites in a pass of its own), or in the AMX kernel's
        // tiles at 0.
        let starts_at_zero = self.amx && residual.is_none() && self.biases.iter().all(Option::is_none);
        if !self.sgemm() && !starts_at_zero {
            self.start_rows(out, residual);
        }
        let mut col = 0;
        if self.sgemm() {
            with_prologue(x, lda, prologue, m, k, |a, lda| {
                for weight in &self.weights {
                    for (at, slab) in weight.slabs() {
                        let c = MatMut::strided(&mut out[col + at..], m, slab.dims().0, ldc);
                        let a = Mat::strided(a, m, k, lda);
                        reasonembed_mkl::sequential(|| reasonembed_mkl::gemm_packed(a, slab, c, Output::Overwrite));
                    }
                    col += weight.n;
                }
            });
        } else if self.amx {
            // The block into tiles once, for every layer: rounded to bf16,
            // or split into two bf16 values for f32 weights.
            AMX_ROWS.with_borrow_mut(|rows| {
                match (self.form, prologue) {
                    (Form::F32, Prologue::Plain) => rows.pack_split(x, m, k, lda),
                    (Form::F32, _) => rows.pack_split_with(m, k, |r, values| prologue.to_f32(&x[r * lda..], values)),
                    (Form::Bf16, Prologue::Plain) => rows.pack(x, m, k, lda),
                    (Form::Bf16, _) => rows.pack_bits(m, k, |r, bits| prologue.to_bf16(&x[r * lda..][..lda], bits)),
                }
                for weight in &self.weights {
                    if let WeightKernel::Amx(w) = &weight.kernel {
                        crate::amx::gemm(rows, w, &mut out[col..], ldc, weight.n, !starts_at_zero);
                    }
                    col += weight.n;
                }
            });
        } else {
            // The block rounded to bf16 once, for every slab of every layer.
            X16.with_borrow_mut(|x16| {
                x16.clear();
                x16.resize(m * k, 0);
                for (row, bits) in x.chunks(lda).zip(x16.chunks_mut(k)) {
                    prologue.to_bf16(row, bits);
                }
                for weight in &self.weights {
                    for (at, slab) in weight.slabs() {
                        let c = MatMut::strided(&mut out[col + at..], m, slab.dims().0, ldc);
                        let a = Mat::dense(&x16[..], m, k);
                        reasonembed_mkl::sequential(|| reasonembed_mkl::gemm_packed(a, slab, c, Output::Accumulate));
                    }
                    col += weight.n;
                }
            });
        }
        for (r, row) in out.chunks_mut(ldc).enumerate() {
            if self.sgemm() {
                let res = residual.map(|res| &res[r * ldc..][..ldc]);
                self.for_each_layer(row, res, add_into);
            }
            post(r, row);
        }
    }

    /// Each row of `out` set to the biases plus the residual (0 where neither).
    fn start_rows(&self, out: &mut [f32], residual: Option<&[f32]>) {
        let ldc = self.width;
        for (r, row) in out.chunks_mut(ldc).enumerate() {
            let res = residual.map(|res| &res[r * ldc..][..ldc]);
            self.for_each_layer(row, res, set_sum);
        }
    }

    /// `f(segment, bias, residual segment)` on each layer's columns of a row.
    fn for_each_layer(
        &self,
        row: &mut [f32],
        residual: Option<&[f32]>,
        f: impl Fn(&mut [f32], Option<&[f32]>, Option<&[f32]>),
    ) {
        let mut col = 0;
        for (weight, bias) in self.weights.iter().zip(&self.biases) {
            let n = weight.n;
            f(
                &mut row[col..col + n],
                bias.as_deref(),
                residual.map(|r| &r[col..col + n]),
            );
            col += n;
        }
    }
}

/// `f(a, lda)` on the `m` rows of `x` (`lda` apart) after `prologue`, in f32:
/// `x` itself for [`Prologue::Plain`], else a per-thread scratch block
/// ([`PROLOGUE`]) of rows `k` wide.
fn with_prologue(x: &[f32], lda: usize, prologue: Prologue, m: usize, k: usize, f: impl FnOnce(&[f32], usize)) {
    if let Prologue::Plain = prologue {
        return f(x, lda);
    }
    PROLOGUE.with_borrow_mut(|scratch| {
        scratch.resize(m * k, 0.0);
        for (row, out) in x.chunks(lda).zip(scratch.chunks_mut(k)) {
            prologue.to_f32(row, out);
        }
        f(&scratch[..], k)
    })
}

/// `out[r] = x[r] · [W₁ W₂ …]ᵀ + [b₁ b₂ …] (+ residual[r])` for each row of
/// `x`: the layers' outputs side by side in one row of `out`, then
/// `post(r, out[r])` on each finished row; block by block of rows, each
/// finished while in cache.
pub(crate) fn linear(
    x: &[f32],
    prologue: Prologue,
    layers: &[&Linear],
    out: &mut [f32],
    residual: Option<&[f32]>,
    post: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<()> {
    let dense = Dense::new(layers)?;
    let rows = x.len() / dense.k.max(1);
    assert_eq!(out.len(), rows * dense.width, "the output must hold every row");
    assert!(
        residual.is_none_or(|r| r.len() == out.len()),
        "the residual must match the output"
    );
    let block = dense.block_rows(rows);
    out.par_chunks_mut(block * dense.width)
        .zip(x.par_chunks(block * dense.k.max(1)))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let res = residual.map(|r| &r[i * block * dense.width..][..out.len()]);
            dense.block(x, dense.k, prologue, out, res, &|r, row| post(i * block + r, row));
        });
    Ok(())
}

/// The feed-forward block `out = down(act(up(prologue(x)))) + residual`,
/// then `post(r, out[r])`, block by block of rows: the wide intermediate
/// rows never leave the cache. `up` may be several layers side by side
/// (SwiGLU's gate and up, which [`Prologue::SiluGate`] takes); `act` is
/// [`Prologue::Gelu`] or [`Prologue::SiluGate`], applied in place for f32
/// weights and on the way into `down`'s tiles for bf16 ones.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feed_forward(
    x: &[f32],
    prologue: Prologue,
    up: &[&Linear],
    act: Prologue,
    down: &Linear,
    out: &mut [f32],
    residual: &[f32],
    post: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<()> {
    let (up, down) = (Dense::new(up)?, Dense::new(&[down])?);
    if down.k > up.width || x.len() / up.k.max(1) * down.width != out.len() || residual.len() != out.len() {
        candle_core::bail!("packed path: feed-forward shapes do not chain");
    }
    let block = up.block_rows(x.len() / up.k.max(1));
    out.par_chunks_mut(block * down.width)
        .zip(x.par_chunks(block * up.k.max(1)))
        .zip(residual.par_chunks(block * down.width.max(1)))
        .enumerate()
        .for_each(|(i, ((out, x), res))| {
            let post = |r, row: &mut [f32]| post(i * block + r, row);
            let mut inter = SCRATCH.with_borrow_mut(std::mem::take);
            inter.resize(x.len() / up.k * up.width, 0.0);
            if up.form == Form::F32 {
                up.block(x, up.k, prologue, &mut inter, None, &|_, row: &mut [f32]| {
                    act.in_place(row)
                });
                down.block(&inter, up.width, Prologue::Plain, out, Some(res), &post);
            } else {
                up.block(x, up.k, prologue, &mut inter, None, &|_, _: &mut [f32]| {});
                down.block(&inter, up.width, act, out, Some(res), &post);
            }
            SCRATCH.with_borrow_mut(|f| *f = inter);
        });
    Ok(())
}

/// What each row goes through on its way into a dense layer's GEMM: fused
/// with the rounding to bf16 (so its f32 result is never stored), or into a
/// scratch block for f32 weights.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prologue<'a> {
    /// The rows as they are.
    Plain,
    /// RMSNorm with this scale and epsilon.
    RmsNorm(&'a [f32], f32),
    /// SwiGLU on rows holding `[gate | up]`: `silu(gate) · up`, half as wide.
    SiluGate,
    /// The exact (erf) GELU.
    Gelu,
}

impl Prologue<'_> {
    /// The prologue of `row` into `out` (as wide as the layer's input).
    fn to_f32(self, row: &[f32], out: &mut [f32]) {
        match self {
            Self::RmsNorm(weight, eps) => rms_norm_into(&row[..out.len()], weight, eps, out),
            Self::SiluGate => silu_gate_into(&row[..2 * out.len()], out),
            Self::Plain | Self::Gelu => {
                out.copy_from_slice(&row[..out.len()]);
                self.in_place(out);
            }
        }
    }

    /// The prologue of `row` rounded to bf16 into `out`.
    fn to_bf16(self, row: &[f32], out: &mut [u16]) {
        match self {
            Self::Plain => to_bf16(&row[..out.len()], out),
            Self::RmsNorm(weight, eps) => rms_norm_to_bf16(&row[..out.len()], weight, eps, out),
            Self::SiluGate => silu_gate_to_bf16(&row[..2 * out.len()], out),
            Self::Gelu => gelu_to_bf16(&row[..out.len()], out),
        }
    }

    /// An activation in place (a `[gate | up]` row keeps `silu(gate) · up`
    /// in its first half).
    fn in_place(self, row: &mut [f32]) {
        match self {
            Self::Gelu => gelu_erf(row),
            Self::SiluGate => silu_gate(row),
            Self::Plain => {}
            Self::RmsNorm(weight, eps) => rms_norm(row, weight, eps),
        }
    }
}

/// `x` rounded to bf16 into `out`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn to_bf16(x: &[f32], out: &mut [u16]) {
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = bf16_bits(v));
}

/// What [`to_bf16`] leaves of `x`, rounded to bf16 into `out`: the `lo` of
/// [`crate::amx::split_bf16`].
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn to_bf16_rest(x: &[f32], out: &mut [u16]) {
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = split_bf16(v).1);
}

/// RMSNorm of `x` rounded to bf16 into `out`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn rms_norm_to_bf16(x: &[f32], weight: &[f32], eps: f32, out: &mut [u16]) {
    let scale = inverse_rms(x, eps);
    out.iter_mut()
        .zip(x)
        .zip(weight)
        .for_each(|((o, v), w)| *o = bf16_bits(*v * scale * w));
}

/// `silu(gate) · up` of a `[gate | up]` row into `out` (half as wide).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn silu_gate_into(row: &[f32], out: &mut [f32]) {
    let (gate, up) = row.split_at(row.len() / 2);
    out.iter_mut()
        .zip(gate.iter().zip(up))
        .for_each(|(o, (g, u))| *o = silu(*g) * u);
}

/// [`silu_gate_into`] rounded to bf16.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn silu_gate_to_bf16(row: &[f32], out: &mut [u16]) {
    let (gate, up) = row.split_at(row.len() / 2);
    out.iter_mut()
        .zip(gate.iter().zip(up))
        .for_each(|(o, (g, u))| *o = bf16_bits(silu(*g) * u));
}

/// The exact GELU of `x` rounded to bf16 into `out`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn gelu_to_bf16(x: &[f32], out: &mut [u16]) {
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = bf16_bits(gelu(v)));
}

/// `row += bias (+ residual)`, either may be absent.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn add_into(row: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>) {
    for v in [bias, residual].into_iter().flatten() {
        row.iter_mut().zip(v).for_each(|(o, v)| *o += v);
    }
}

/// `row = bias + residual`, either may be absent (0).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn set_sum(row: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>) {
    match (bias, residual) {
        (Some(b), Some(r)) => row.iter_mut().zip(b.iter().zip(r)).for_each(|(o, (b, r))| *o = b + r),
        (Some(v), None) | (None, Some(v)) => row.copy_from_slice(v),
        (None, None) => row.fill(0.0),
    }
}

/// How the heads of an attention layer sit in a packed `qkv` row: the query
/// heads, then the key heads, then the value heads (grouped-query attention
/// when there are fewer key/value heads than query heads).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
    /// Each token sees only itself and the tokens before it.
    pub causal: bool,
}

impl Heads {
    /// The width of a `qkv` row.
    pub fn qkv_width(&self) -> usize {
        (self.q + 2 * self.kv) * self.dim
    }
}

/// Scratch rows of a decoder layer on the packed path, reused by every layer.
pub(crate) struct DecoderBuffers {
    pub normed: Vec<f32>,
    pub mid: Vec<f32>,
    pub qkv: Vec<f32>,
    pub ctx: Vec<f32>,
}

impl DecoderBuffers {
    pub fn new(tokens: usize, hidden: usize) -> Self {
        Self {
            normed: vec![0f32; tokens * hidden],
            mid: vec![0f32; tokens * hidden],
            qkv: Vec::new(),
            ctx: Vec::new(),
        }
    }
}

/// Query rows per block of attention: causal attention reads only the keys
/// up to a block's last query, so blocks skip most of the masked half.
const QUERY_BLOCK: usize = 64;

/// [`QUERY_BLOCK`] for bf16 products on AMX: one block of the kernel's 32
/// rows, which skips more of the masked half (at 64 rows the decoder ran 2 to
/// 3 % slower; MKL's f32 products, with a cost per call to amortise, run
/// faster at 64).
const AMX_QUERY_BLOCK: usize = 32;

/// Sequences longer than this take bf16 products (or split ones) in
/// attention; on shorter ones the bf16 GEMM's fixed cost per call (tile
/// set-up, clearing the output) outweighs its speed, and f32 is the more
/// accurate anyway.
const BF16_ATTENTION_FROM: usize = 128;

/// The smallest head size whose attention takes split products: on MiniLM's
/// heads of 32 (a split depth of 3 steps, `P·V` 32 columns wide, as three
/// products) they ran 2 % slower than SGEMM, on Qwen3's of 128 10 % faster
/// (64, unmeasured, stays on SGEMM).
const SPLIT_ATTENTION_DIM: usize = 128;

/// How attention multiplies: as the layer whose outputs it reads (`q_proj`,
/// or BERT's `query`) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Products {
    /// f32 on MKL's SGEMM.
    F32,
    /// Rounded to bf16: a bf16 model's.
    Bf16,
    /// f32 values split into two bf16 ones on AMX, as the layers at
    /// [`MatmulPrecision::High`] multiply ([`crate::amx::split_bf16`]).
    Split,
}

impl Products {
    /// As `layer`'s weight is packed to multiply (so attention never
    /// decides apart from the layers).
    pub fn of(layer: &Linear) -> Result<Self> {
        let weight = packed_weight(layer)?;
        Ok(match (weight.form, &weight.kernel) {
            (Form::Bf16, _) => Self::Bf16,
            (Form::F32, WeightKernel::Amx(_)) => Self::Split,
            (Form::F32, WeightKernel::Mkl(_)) => Self::F32,
        })
    }
}

/// Multi-head attention over each sequence's own tokens: `qkv` holds Q, K
/// and V side by side, `ctx` receives `softmax(Q Kᵀ / √d) V`
/// (`[tokens, q·dim]`). On sequences longer than [`BF16_ATTENTION_FROM`],
/// with [`Products::Bf16`] Q, K, V and the probabilities enter the two
/// products rounded to bf16 (as a bf16 model's attention does, on AMX where
/// the CPU has it), and with [`Products::Split`] (on heads of at least
/// [`SPLIT_ATTENTION_DIM`]) split into two bf16 values each; scores, softmax
/// and sums stay f32.
pub(crate) fn attention(qkv: &[f32], packed: &Packed, heads: Heads, products: Products, ctx: &mut [f32]) {
    let (width, hidden) = (heads.qkv_width(), heads.q * heads.dim);
    let mut blocks = Vec::with_capacity(packed.lengths.len());
    let mut rest = ctx;
    for &len in &packed.lengths {
        let (block, tail) = rest.split_at_mut(len * hidden);
        blocks.push(block);
        rest = tail;
    }
    blocks.into_par_iter().zip(&packed.starts).for_each(|(ctx, &start)| {
        let len = ctx.len() / hidden;
        let rows = &qkv[start * width..(start + len) * width];
        reasonembed_mkl::sequential(|| match products {
            _ if len <= BF16_ATTENTION_FROM => attend(rows, len, heads, ctx),
            Products::Split if heads.dim >= SPLIT_ATTENTION_DIM => attend_amx(rows, len, heads, true, ctx),
            Products::Bf16 if crate::amx::available() => attend_amx(rows, len, heads, false, ctx),
            Products::Bf16 => {
                let mut rows16 = vec![0; rows.len()];
                to_bf16(rows, &mut rows16);
                attend(&rows16, len, heads, ctx);
            }
            Products::F32 | Products::Split => attend(rows, len, heads, ctx),
        });
    });
}

/// The element types attention multiplies in: f32, or bf16 as its bits.
trait AttentionInput: reasonembed_mkl::Element {
    /// The probabilities of a block of score rows (`stride` apart; row `i`
    /// has `len(i)` real scores), as the input of the second product: in
    /// place for f32, in `out` for bf16.
    fn probabilities<'a>(
        scores: &'a mut [f32],
        stride: usize,
        len: impl Fn(usize) -> usize,
        scale: f32,
        out: &'a mut Vec<Self>,
    ) -> &'a [Self];
}

impl AttentionInput for f32 {
    fn probabilities<'a>(
        scores: &'a mut [f32],
        stride: usize,
        len: impl Fn(usize) -> usize,
        scale: f32,
        _: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        for (i, row) in scores.chunks_mut(stride).enumerate() {
            softmax(row, len(i), scale);
        }
        scores
    }
}

impl AttentionInput for u16 {
    fn probabilities<'a>(
        scores: &'a mut [f32],
        stride: usize,
        len: impl Fn(usize) -> usize,
        scale: f32,
        out: &'a mut Vec<u16>,
    ) -> &'a [u16] {
        out.clear();
        out.resize(scores.len(), 0);
        for (i, (row, bits)) in scores.chunks_mut(stride).zip(out.chunks_mut(stride)).enumerate() {
            softmax_to_bf16(row, len(i), scale, bits);
        }
        out
    }
}

/// One sequence's attention, every head, block by block of query rows.
fn attend<T: AttentionInput>(rows: &[T], len: usize, heads: Heads, ctx: &mut [f32]) {
    let (width, hidden, d) = (heads.qkv_width(), heads.q * heads.dim, heads.dim);
    let group = heads.q / heads.kv.max(1);
    let scale = 1.0 / (d as f32).sqrt();
    let (mut scores, mut probs) = (Vec::new(), Vec::new());
    for h in 0..heads.q {
        let kv = h / group;
        for r0 in (0..len).step_by(QUERY_BLOCK) {
            let m = QUERY_BLOCK.min(len - r0);
            let keys = if heads.causal { r0 + m } else { len };
            // Score rows padded to whole vectors, so softmax has no scalar tail.
            let stride = keys.next_multiple_of(16);
            scores.resize(m * stride, 0.0);
            let part = |row: usize, offset: usize, n: usize| Mat::strided(&rows[row * width + offset..], n, d, width);
            let q = part(r0, h * d, m);
            let (k, v) = (
                part(0, (heads.q + kv) * d, keys),
                part(0, (heads.q + heads.kv + kv) * d, keys),
            );
            // The 1/√d scale is applied inside softmax: MKL would make a
            // separate pass over the scores for an alpha other than 1.
            let s = MatMut::strided(&mut scores, m, keys, stride);
            reasonembed_mkl::gemm(1.0, q, k, BLayout::NByK, s, Output::Overwrite);
            let real = |i: usize| if heads.causal { r0 + i + 1 } else { len };
            let p = T::probabilities(&mut scores, stride, real, scale, &mut probs);
            let out = MatMut::strided(&mut ctx[r0 * hidden + h * d..], m, d, hidden);
            let p = Mat::strided(p, m, keys, stride);
            reasonembed_mkl::gemm(1.0, p, v, BLayout::KByN, out, Output::Overwrite);
        }
    }
}

/// [`attend`] with bf16 products on AMX tiles ([`crate::amx`]): each key
/// and value head is rounded into tiles once, for every query head of its
/// group and every block of queries; scores and softmax stay f32. With
/// `split`, each value is split into two bf16 ones: the scores as one split
/// product, and `P·V` as `Pₕᵢ·Vₕᵢ + Pₕᵢ·Vₗₒ + Pₗₒ·Vₕᵢ` in three products,
/// each as shallow as a causal block's keys.
fn attend_amx(rows: &[f32], len: usize, heads: Heads, split: bool, ctx: &mut [f32]) {
    let (width, hidden, d) = (heads.qkv_width(), heads.q * heads.dim, heads.dim);
    let group = heads.q / heads.kv.max(1);
    let scale = 1.0 / (d as f32).sqrt();
    let (mut queries, mut probs, mut probs_lo) = (AmxRows::default(), AmxRows::default(), AmxRows::default());
    let mut scores = Vec::new();
    for kv in 0..heads.kv {
        let (k_at, v_at) = ((heads.q + kv) * d, (heads.q + heads.kv + kv) * d);
        let keys_w = if split {
            AmxWeight::from_f32_split_rows(&rows[k_at..], len, d, width)
        } else {
            AmxWeight::from_f32_rows(&rows[k_at..], len, d, width)
        };
        let values_w = AmxWeight::from_f32_columns(&rows[v_at..], d, len, width, false);
        let values_lo = split.then(|| AmxWeight::from_f32_columns(&rows[v_at..], d, len, width, true));
        for h in kv * group..(kv + 1) * group {
            for r0 in (0..len).step_by(AMX_QUERY_BLOCK) {
                let m = AMX_QUERY_BLOCK.min(len - r0);
                let keys = if heads.causal { r0 + m } else { len };
                let real = |i: usize| if heads.causal { r0 + i + 1 } else { len };
                // Whole tiles of scores, so softmax has no scalar tail.
                let stride = keys.next_multiple_of(32);
                scores.resize(m * stride, 0.0);
                let q = &rows[r0 * width + h * d..];
                if split {
                    queries.pack_split(q, m, d, width);
                } else {
                    queries.pack(q, m, d, width);
                }
                crate::amx::gemm(&queries, &keys_w, &mut scores, stride, stride, false);
                let out = &mut ctx[r0 * hidden + h * d..];
                match &values_lo {
                    Some(values_lo) => {
                        for (i, row) in scores.chunks_mut(stride).enumerate() {
                            softmax(row, real(i), scale);
                        }
                        probs.pack(&scores, m, keys, stride);
                        probs_lo.pack_bits(m, keys, |i, bits| to_bf16_rest(&scores[i * stride..][..keys], bits));
                        crate::amx::gemm(&probs, &values_w, out, hidden, d, false);
                        crate::amx::gemm(&probs, values_lo, out, hidden, d, true);
                        crate::amx::gemm(&probs_lo, &values_w, out, hidden, d, true);
                    }
                    None => {
                        probs.pack_bits(m, keys, |i, bits| {
                            softmax_to_bf16(&mut scores[i * stride..][..stride], real(i), scale, bits)
                        });
                        crate::amx::gemm(&probs, &values_w, out, hidden, d, false);
                    }
                }
            }
        }
    }
}

/// Rotary position embeddings (and Qwen3's per-head RMSNorm before them) on
/// the query and key heads of a `qkv` row, in place, at its token's
/// `position`: the layout of [`crate::rope::apply`], rotated halves. A `post`
/// of the `qkv` [`linear`], so that each row is rotated while in cache.
pub(crate) fn rotary_row(
    row: &mut [f32],
    position: u32,
    heads: Heads,
    inv_freq: &[f32],
    qk_norm: Option<(&[f32], &[f32], f32)>,
) {
    let (d, half) = (heads.dim, inv_freq.len());
    let angles: Vec<f32> = inv_freq.iter().map(|f| position as f32 * f).collect();
    let (cos, sin): (Vec<f32>, Vec<f32>) = angles.iter().map(|a| (a.cos(), a.sin())).unzip();
    for (i, head) in row[..(heads.q + heads.kv) * d].chunks_mut(d).enumerate() {
        if let Some((q_norm, k_norm, eps)) = qk_norm {
            rms_norm(head, if i < heads.q { q_norm } else { k_norm }, eps);
        }
        let (a, b) = head.split_at_mut(half);
        for (((a, b), c), s) in a.iter_mut().zip(b).zip(&cos).zip(&sin) {
            (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
        }
    }
}

/// RMSNorm of each row of `x` (`weight.len()` wide) into `out`.
pub(crate) fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    out.par_chunks_mut(BLOCK_ROWS * dim)
        .zip(x.par_chunks(BLOCK_ROWS * dim))
        .for_each(|(out, x)| {
            out.chunks_mut(dim)
                .zip(x.chunks(dim))
                .for_each(|(out, x)| rms_norm_into(x, weight, eps, out))
        });
}

/// The row's RMSNorm in place, as transformers' (`x / √(mean x² + ε) · w`).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn rms_norm(row: &mut [f32], weight: &[f32], eps: f32) {
    let scale = inverse_rms(row, eps);
    row.iter_mut().zip(weight).for_each(|(v, w)| *v = *v * scale * w);
}

/// The RMSNorm of `x` written to `out`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn rms_norm_into(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = inverse_rms(x, eps);
    out.iter_mut()
        .zip(x)
        .zip(weight)
        .for_each(|((o, v), w)| *o = *v * scale * w);
}

/// `1 / √(mean x² + ε)`.
#[inline(always)]
fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mut sq = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in sq.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    1.0 / ((sq.iter().sum::<f32>() + tail) / x.len() as f32 + eps).sqrt()
}

/// SwiGLU on a row holding `[gate | up]`: its first half becomes
/// `silu(gate) · up`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn silu_gate(row: &mut [f32]) {
    let (gate, up) = row.split_at_mut(row.len() / 2);
    for (g, u) in gate.iter_mut().zip(up.iter()) {
        *g = silu(*g) * u;
    }
}

/// `x · sigmoid(x)`.
#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
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
pub(crate) fn sum(x: &[f32]) -> f32 {
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

/// `softmax(scale · row[..len])` in place; `row` is a whole number of
/// 16-wide vectors, and its values past `len` (padding) end as 0.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn softmax(row: &mut [f32], len: usize, scale: f32) {
    let inv = softmax_unnormalised(row, len, scale);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// [`softmax`], with the first `out.len()` probabilities written to `out`
/// rounded to bf16 (as their bits) rather than back to `row`, which keeps
/// `e^(scale·(x - max))`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn softmax_to_bf16(row: &mut [f32], len: usize, scale: f32, out: &mut [u16]) {
    let inv = softmax_unnormalised(row, len, scale);
    out.iter_mut()
        .zip(row.iter())
        .for_each(|(o, v)| *o = bf16_bits(v * inv));
}

/// The exponentials of [`softmax`] in place (padding 0), and 1 / their sum.
#[inline(always)]
fn softmax_unnormalised(row: &mut [f32], len: usize, scale: f32) -> f32 {
    debug_assert!(row.len().is_multiple_of(16) && len <= row.len());
    // Only the vectors that hold real scores are computed.
    let (row, rest) = row.split_at_mut(len.next_multiple_of(16).min(row.len()));
    rest.fill(0.0);
    row[len..].fill(f32::NEG_INFINITY);
    let mut lanes = [f32::NEG_INFINITY; 16];
    for c in row.chunks_exact(16) {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|v| *v = exp((*v - max) * scale));
    row[len..].fill(0.0);
    1.0 / sum(row)
}

/// The exact (erf) GELU in place, as transformers' `gelu`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
pub(crate) fn gelu_erf(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu(*v));
}

/// The exact (erf) GELU: `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `eˣ` to about 1 ulp, branch-free so that it vectorises: `x = n ln 2 + r`,
/// Cephes' polynomial for `eʳ`, and `2ⁿ` built in the exponent bits.
///
/// Here and in [`erf`] the polynomials are fused multiply-adds (`mul_add`):
/// one rounding each, so every CPU gets the same bits. The callers are
/// compiled for FMA (`multiversion` targets), where each is one instruction
/// and the polynomials a fifth faster; elsewhere libm computes them.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below the first bound eˣ is under f32's smallest normal: flushed to
    // ~1e-38, harmless for softmax and GELU; above the second it would overflow.
    let x = x.clamp(-87.336_54, 88.029_69);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = 1.987_569_2e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r + 1.0);
    // 2ⁿ from the bits of n + 127 + 2²³, whose low mantissa bits hold the
    // integer n + 127 (in 1..=254): a bit cast, where `as i32` would not
    // vectorise.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    e * f32::from_bits(biased << 23)
}

/// `erf(x)` to 1.5e-7 plus rounding (Abramowitz & Stegun 7.1.26, the form PyTorch's
/// vectorised CPU `erf` uses).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let poly = 1.061_405_4f32
        .mul_add(t, -1.453_152)
        .mul_add(t, 1.421_413_7)
        .mul_add(t, -0.284_496_74)
        .mul_add(t, 0.254_829_6)
        * t;
    (-poly).mul_add(exp(-a * a), 1.0).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    /// Attention with split products on AMX against SGEMM's, on sequences
    /// long enough to take them (and one too short), causal and not, with
    /// grouped heads: within 10⁻⁵ of the largest output, where bf16's
    /// products err a hundred times more.
    #[test]
    fn split_attention_matches_f32_attention() {
        if !crate::amx::available() {
            return;
        }
        let lengths = vec![BF16_ATTENTION_FROM + 77, BF16_ATTENTION_FROM + 1, 5];
        let starts = lengths
            .iter()
            .scan(0, |at, &len| {
                *at += len;
                Some(*at - len)
            })
            .collect();
        let tokens: usize = lengths.iter().sum();
        let (ids, positions) = (vec![0; tokens], vec![0; tokens]);
        let packed = Packed {
            lengths,
            starts,
            ids,
            positions,
        };
        for causal in [true, false] {
            let heads = Heads {
                q: 4,
                kv: 2,
                dim: SPLIT_ATTENTION_DIM,
                causal,
            };
            let noise =
                |i: usize| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32 / (1 << 23) as f32 - 1.0;
            let qkv: Vec<f32> = (0..tokens * heads.qkv_width()).map(noise).collect();
            let run = |products| {
                let mut ctx = vec![0f32; tokens * heads.q * heads.dim];
                attention(&qkv, &packed, heads, products, &mut ctx);
                ctx
            };
            let exact = run(Products::F32);
            let size = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
            let error = |products| {
                let ctx = run(products);
                ctx.iter().zip(&exact).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / size
            };
            let (split, bf16) = (error(Products::Split), error(Products::Bf16));
            assert!(split > 0.0 && split < 1e-5, "causal {causal}: split errs by {split:e}");
            assert!(bf16 > 100.0 * split, "causal {causal}: bf16 {bf16:e}, split {split:e}");
        }
    }

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
    fn embedding_rows_add_up_and_ids_past_the_table_are_errors() {
        let table = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &candle_core::Device::Cpu).unwrap();
        let mut out = vec![0.5f32; 4];
        add_rows(&table, [2, 0].into_iter(), &mut out).unwrap();
        assert_eq!(out, vec![5.5, 6.5, 1.5, 2.5]);
        let bf16 = table.to_dtype(DType::BF16).unwrap();
        add_rows(&bf16, [1, 1].into_iter(), &mut out).unwrap();
        assert_eq!(out, vec![8.5, 10.5, 4.5, 6.5]);
        let err = add_rows(&table, [0, 3].into_iter(), &mut out).unwrap_err();
        assert!(err.to_string().contains("token id 3"), "{err}");
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
        let mut got = vec![0; values.len()];
        to_bf16(&values, &mut got);
        assert_eq!(got, want);
        to_bf16(&[f32::NAN], &mut got[..1]);
        assert!(bf16::from_bits(got[0]).is_nan(), "NaN stays NaN");
    }

    #[test]
    fn row_kernels_match_their_definitions() {
        let row: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.5).collect();
        let mut s = row.clone();
        s.resize(48, 5.0); // padding, larger than every value
        softmax(&mut s, row.len(), 0.7);
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let total: f32 = row.iter().map(|v| (0.7 * (v - max)).exp()).sum();
        for (got, v) in s.iter().zip(&row) {
            assert!((got - (0.7 * (v - max)).exp() / total).abs() < 1e-6);
        }
        assert!(s[row.len()..].iter().all(|&p| p == 0.0), "padding ends as 0");
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
