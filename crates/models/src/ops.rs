//! The primitives every layer builds on: the forward pass [`Mode`], dropout
//! with seeded masks, `x Wᵀ`, and fused kernels with closed-form backward
//! passes for the training path on CPU in f32 (softmax over the last
//! dimension and the exact (erf) GELU).
//! candle's fused softmax records no gradient, and its primitive composition
//! keeps four attention-sized intermediates alive until the backward pass;
//! its GELU backward builds six temporaries the size of the MLP activations.
//! These compute the gradient in one pass. Other devices and dtypes use
//! candle's own ops.

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether a forward pass may take inference-only shortcuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused kernels, no dropout; gradients are not recorded through norms.
    Inference,
    /// Differentiable primitives everywhere and the configured dropout.
    Train,
}

/// `x Wᵀ` for `x` of any rank ≥ 2, without materialising `Wᵀ`.
pub(crate) fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, last))?.matmul(&w.t()?)?;
    let mut out = dims[..dims.len() - 1].to_vec();
    out.push(w.dim(0)?);
    y.reshape(out)
}

thread_local! {
    /// (seed, calls so far) of this thread's dropout masks.
    static DROPOUT_STREAM: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Restarts this thread's dropout masks from `seed`: the same seed followed by
/// the same forward passes gives the same masks. Training relies on it to be
/// deterministic, to resume exactly, and to replay a mini-batch bit for bit
/// in the second pass of GradCache. (candle's own dropout draws from an
/// unseeded generator.)
pub fn seed_dropout(seed: u64) {
    DROPOUT_STREAM.with(|s| s.set((seed, 0)));
}

const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: a tiny, well-mixed generator for masks and sampling.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(SPLITMIX_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout, active only while training, with masks from the
/// thread's seeded stream (see [`seed_dropout`]).
pub fn dropout(x: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
    if mode != Mode::Train {
        return Ok(x.clone());
    }
    match dropout_mask(x.elem_count(), p)? {
        Some(mask) => x * Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?,
        None => Ok(x.clone()),
    }
}

/// The next mask of the thread's seeded stream for `len` values: each
/// `1/(1−p)` (kept) or 0 (dropped); `None` when `p` is 0.
pub(crate) fn dropout_mask(len: usize, p: f64) -> Result<Option<Vec<f32>>> {
    Ok(dropout_draw(len, p)?.map(|d| d.mask()))
}

/// The next mask of the thread's seeded stream, as the position to draw it
/// from: a pass that keeps many masks for its backward pass (LoRA's, one per
/// adapter input) keeps these and draws each mask again when it needs it.
pub(crate) fn dropout_draw(len: usize, p: f64) -> Result<Option<DropoutDraw>> {
    if p <= 0.0 {
        return Ok(None);
    }
    if p >= 1.0 || p.is_nan() {
        candle_core::bail!("dropout probability has to be in [0, 1), got {p}");
    }
    let (seed, call) = DROPOUT_STREAM.with(|s| {
        let (seed, call) = s.get();
        s.set((seed, call + 1));
        (seed, call)
    });
    Ok(Some(DropoutDraw { seed, call, len, p }))
}

/// One mask of the seeded dropout stream (see [`dropout_draw`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropoutDraw {
    seed: u64,
    call: u64,
    len: usize,
    p: f64,
}

impl DropoutDraw {
    /// The mask: each value `1/(1−p)` (kept) or 0 (dropped).
    pub(crate) fn mask(&self) -> Vec<f32> {
        let mut mask = vec![1f32; self.len];
        self.apply(&mut mask);
        mask
    }

    /// `x ⊙= mask`, without the mask in memory, in parallel: SplitMix64's
    /// n-th value depends only on its seed and n, so each block of values
    /// starts from its own state and the result is the serial stream's.
    pub(crate) fn apply(&self, x: &mut [f32]) {
        const BLOCK: usize = 1 << 14;
        debug_assert_eq!(x.len(), self.len);
        let start = self.seed ^ self.call.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let threshold = (self.p * u64::MAX as f64) as u64;
        let keep = (1.0 / (1.0 - self.p)) as f32;
        x.par_chunks_mut(BLOCK).enumerate().for_each(|(i, block)| {
            let mut state = start.wrapping_add(((i * BLOCK) as u64).wrapping_mul(SPLITMIX_GAMMA));
            for v in block {
                *v *= if splitmix64(&mut state) >= threshold { keep } else { 0.0 };
            }
        });
    }
}

fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The contiguous f32 values of a CPU storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{op}: expected f32")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous input"),
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "reasonembed-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(storage, layout, self.name())?;
        let n = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(o, row)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - max).exp();
                sum += *o;
            }
            o.iter_mut().for_each(|v| *v /= sum);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// `dx = y ⊙ (g − Σ g ⊙ y)`.
    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let dot = (g * y)?.sum_keepdim(D::Minus1)?;
        Ok(Some((y * g.broadcast_sub(&dot)?)?))
    }
}

/// `x · Φ(x)`, the exact GELU, differentiable.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// Applies `f` to every value of a contiguous f32 storage, in parallel.
fn map_f32(storage: &CpuStorage, layout: &Layout, op: &str, f: fn(f32) -> f32) -> Result<(CpuStorage, Shape)> {
    let x = values(storage, layout, op)?;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v)));
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "reasonembed-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, self.name(), |v| {
            0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
        })
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((g * x.apply_op1_no_bwd(&GeluErfGrad)?)?))
    }
}

/// `Φ(x) + x φ(x)`, the derivative of the exact GELU.
struct GeluErfGrad;

impl CustomOp1 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "reasonembed-gelu-erf-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        map_f32(storage, layout, self.name(), |v| {
            0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)) + v * INV_SQRT_2PI * (-0.5 * v * v).exp()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Gradients of `Σ f(x) ⊙ r` through the fused op and through primitives.
    fn compare(fused_f: impl Fn(&[Tensor]) -> Tensor, primitive_f: impl Fn(&[Tensor]) -> Tensor, shapes: &[&[usize]]) {
        let vars: Vec<Var> = shapes
            .iter()
            .map(|s| Var::randn(0f32, 1.0, *s, &Device::Cpu).unwrap())
            .collect();
        let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused_f(&inputs), primitive_f(&inputs));
        let r = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu).unwrap();
        let diff = (&a - &b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        let (ga, gb) = (
            (a * &r).unwrap().sum_all().unwrap().backward().unwrap(),
            (b * &r).unwrap().sum_all().unwrap().backward().unwrap(),
        );
        for v in &vars {
            let (x, y) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
            let diff = (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "gradient differs by {diff}");
        }
    }

    #[test]
    fn a_mask_drawn_in_parallel_blocks_is_the_serial_stream() {
        seed_dropout(5);
        let draw = dropout_draw(40_000, 0.3).unwrap().unwrap();
        let mut state = 5u64; // call 0: the seed itself
        let threshold = (0.3 * u64::MAX as f64) as u64;
        let serial: Vec<f32> = (0..40_000)
            .map(|_| {
                if splitmix64(&mut state) >= threshold {
                    (1.0 / 0.7) as f32
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(draw.mask(), serial);
        let kept = serial.iter().filter(|&&v| v > 0.0).count() as f64 / 40_000.0;
        assert!((kept - 0.7).abs() < 0.01, "{kept} kept");
    }

    #[test]
    fn fused_gelu_matches_candles_and_its_gradient() {
        compare(
            |x| gelu_erf(&(&x[0] * 2.0).unwrap()).unwrap(),
            |x| (&x[0] * 2.0).unwrap().gelu_erf().unwrap(),
            &[&[3, 50]],
        );
    }

    #[test]
    fn fused_softmax_matches_the_primitive_one_and_its_gradient() {
        compare(
            |x| softmax_last_dim(&(&x[0] * 3.0).unwrap()).unwrap(),
            |x| candle_nn::ops::softmax(&(&x[0] * 3.0).unwrap(), D::Minus1).unwrap(),
            &[&[2, 3, 7]],
        );
    }
}
