//! Linear layers on MKL (feature `mkl`, x86_64 Linux), for inference on CPU:
//!
//! * bf16: `x Wᵀ` through `cblas_gemm_bf16bf16f32`, which runs on AMX tiles or
//!   AVX512-BF16 where the CPU has them (MKL picks at run time). candle's own
//!   bf16 matrix product on CPU widens both operands to f32 first. The
//!   product is accumulated in f32 and rounded to bf16 once, with the bias
//!   added before the rounding.
//! * f32: `cblas_sgemm` (what candle's matmul calls with MKL) with the bias
//!   folded in: the output starts as the bias and MKL accumulates onto it, in
//!   place of candle's broadcast add, a single-threaded pass over the output
//!   that cost about as much as the product itself on MiniLM's shapes.
//!
//! Training, other dtypes and other devices keep candle's ops (which record
//! gradients; these do not).

use candle_core::{DType, Result, Tensor};

use crate::ops::Mode;

/// Whether [`linear`] takes the MKL path for these operands.
pub(crate) fn applies(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, mode: Mode) -> bool {
    let dtype = x.dtype();
    mkl_linked()
        && mode == Mode::Inference
        && matches!(dtype, DType::F32 | DType::BF16)
        && x.device().is_cpu()
        && weight.device().is_cpu()
        && weight.dtype() == dtype
        && weight.rank() == 2
        && bias.is_none_or(|b| b.dtype() == dtype && b.rank() == 1 && b.device().is_cpu())
}

fn mkl_linked() -> bool {
    #[cfg(feature = "mkl")]
    return reasonembed_mkl::LINKED;
    #[cfg(not(feature = "mkl"))]
    false
}

/// `x Wᵀ + b` on MKL when [`applies`] says so, else `None`.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, mode: Mode) -> Result<Option<Tensor>> {
    if !applies(x, weight, bias, mode) {
        return Ok(None);
    }
    #[cfg(feature = "mkl")]
    {
        let (x, weight) = (x.contiguous()?, weight.contiguous()?);
        let y = match bias {
            Some(b) => x.apply_op3_no_bwd(&weight, &b.contiguous()?, &imp::Linear)?,
            None => x.apply_op2_no_bwd(&weight, &imp::Linear)?,
        };
        Ok(Some(y))
    }
    #[cfg(not(feature = "mkl"))]
    unreachable!("applies() is false without the mkl feature")
}

#[cfg(feature = "mkl")]
mod imp {
    use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, WithDType};
    use half::bf16;
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;
    use reasonembed_mkl::{BLayout, Mat, MatMut, Output};

    /// `(x, W[, b]) ↦ x Wᵀ (+ b)`, f32 or bf16 in and out, f32 accumulation.
    pub(super) struct Linear;

    const NAME: &str = "reasonembed-mkl-linear";

    /// The contiguous values of a CPU storage.
    fn values<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
        let v = storage.as_slice::<T>()?;
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok(&v[start..end]),
            None => candle_core::bail!("{NAME}: expected a contiguous input"),
        }
    }

    /// Rows per parallel chunk of an `n`-wide output: about 16k values.
    fn rows(n: usize) -> usize {
        (16384 / n.max(1)).max(1)
    }

    fn forward(
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = w.1.shape().dims2()?;
        let dims = x.1.dims();
        if dims.last() != Some(&k) || b.is_some_and(|(_, l)| l.dims() != [n]) {
            candle_core::bail!("{NAME}: input {dims:?} and bias against weight {n}×{k}");
        }
        let m = x.1.shape().elem_count() / k.max(1);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("x has rank ≥ 1") = n;
        let out = match x.0 {
            CpuStorage::F32(_) => {
                let (xv, wv) = (values::<f32>(x.0, x.1)?, values::<f32>(w.0, w.1)?);
                let mut out = vec![0f32; m * n];
                let output = match b {
                    Some((s, l)) => {
                        let bias = values::<f32>(s, l)?;
                        out.par_chunks_mut(rows(n) * n)
                            .for_each(|o| o.chunks_mut(n).for_each(|row| row.copy_from_slice(bias)));
                        Output::Accumulate
                    }
                    None => Output::Overwrite,
                };
                let (a, w) = (Mat::dense(xv, m, k), Mat::dense(wv, n, k));
                reasonembed_mkl::gemm(1.0, a, w, BLayout::NByK, MatMut::dense(&mut out, m, n), output);
                CpuStorage::F32(out)
            }
            CpuStorage::BF16(_) => {
                let (xv, wv) = (values::<bf16>(x.0, x.1)?, values::<bf16>(w.0, w.1)?);
                let bias = b.map(|(s, l)| values::<bf16>(s, l)).transpose()?;
                let mut acc = vec![0f32; m * n];
                let (a, b) = (xv.reinterpret_cast(), wv.reinterpret_cast());
                let (a, w) = (Mat::dense(a, m, k), Mat::dense(b, n, k));
                reasonembed_mkl::gemm(
                    1.0,
                    a,
                    w,
                    BLayout::NByK,
                    MatMut::dense(&mut acc, m, n),
                    Output::Overwrite,
                );
                // Round to bf16 (adding the bias first) in parallel: at AMX
                // rates this pass is not negligible next to the product.
                let mut out = vec![bf16::ZERO; m * n];
                let chunk = rows(n) * n;
                out.par_chunks_mut(chunk)
                    .zip(acc.par_chunks(chunk))
                    .for_each(|(o, a)| match bias {
                        Some(bias) => {
                            for (o, a) in o.chunks_mut(n).zip(a.chunks(n)) {
                                for ((o, &a), &b) in o.iter_mut().zip(a).zip(bias) {
                                    *o = bf16::from_f32(a + b.to_f32());
                                }
                            }
                        }
                        None => o.convert_from_f32_slice(a),
                    });
                CpuStorage::BF16(out)
            }
            _ => candle_core::bail!("{NAME}: expected f32 or bf16"),
        };
        Ok((out, Shape::from(shape)))
    }

    impl CustomOp2 for Linear {
        fn name(&self) -> &'static str {
            NAME
        }

        fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
            forward((s1, l1), (s2, l2), None)
        }
    }

    impl CustomOp3 for Linear {
        fn name(&self) -> &'static str {
            NAME
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            forward((s1, l1), (s2, l2), Some((s3, l3)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The MKL path against candle's matmul plus broadcast add, in f32 on the
    /// same (bf16-representable) operands: bf16 results differ by the one
    /// rounding of the output, f32 ones by the order of the sums.
    #[test]
    fn linear_matches_candles_matmul() {
        let dev = Device::Cpu;
        let round = |t: Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let x = round(Tensor::randn(0f32, 1.0, (2, 37, 96), &dev).unwrap());
        let w = round(Tensor::randn(0f32, 0.1, (80, 96), &dev).unwrap());
        let b = round(Tensor::randn(0f32, 1.0, 80, &dev).unwrap());
        let max = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        for bias in [None, Some(&b)] {
            let mut expected = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            if let Some(b) = bias {
                expected = expected.broadcast_add(b).unwrap();
            }
            let scale = max(&expected);
            for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, 1.0 / 256.0)] {
                let [x, w] = [&x, &w].map(|t| t.to_dtype(dtype).unwrap());
                let b = bias.map(|b| b.to_dtype(dtype).unwrap());
                let Some(y) = linear(&x, &w, b.as_ref(), Mode::Inference).unwrap() else {
                    assert!(!mkl_linked(), "the MKL path must apply when MKL is linked");
                    return;
                };
                assert_eq!((y.dims(), y.dtype()), (&[2, 37, 80][..], dtype));
                let err = max(&(y.to_dtype(DType::F32).unwrap() - &expected).unwrap());
                // bf16: one rounding of the output, half an ulp (2⁻⁹ relative).
                assert!(err <= scale * tolerance, "{dtype:?}: max error {err} at scale {scale}");
            }
        }
        assert!(
            linear(&x, &w, None, Mode::Train).unwrap().is_none(),
            "training keeps candle's ops"
        );
        let x16 = x.to_dtype(DType::BF16).unwrap();
        assert!(
            linear(&x16, &w, None, Mode::Inference).unwrap().is_none(),
            "mixed dtypes keep candle's ops"
        );
    }
}
