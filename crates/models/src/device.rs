//! Where and in which precision a model runs: `cpu`, `cuda` or `cuda:N`;
//! float32 on CPU and bfloat16 on CUDA unless asked otherwise.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    let open = |n: usize| Device::new_cuda(n).map_err(|e| Error::Input(format!("cannot open CUDA device {n}: {e}")));
    match spec.split_once(':') {
        None if spec == "cpu" => Ok(Device::Cpu),
        None if spec == "cuda" => open(0),
        Some(("cuda", n)) => open(
            n.parse()
                .map_err(|_| Error::Input(format!("invalid CUDA device number '{n}'")))?,
        ),
        _ => Err(Error::Input(format!("unknown device '{spec}' (cpu, cuda, cuda:N)"))),
    }
}

/// `f32`, `bf16` or `f16`; by default f32 on CPU and bf16 on CUDA.
pub fn parse_dtype(spec: Option<&str>, device: &Device) -> Result<DType> {
    match spec {
        None if device.is_cuda() => Ok(DType::BF16),
        None | Some("f32") => Ok(DType::F32),
        Some("bf16") => Ok(DType::BF16),
        Some("f16") => Ok(DType::F16),
        Some(other) => Err(Error::Input(format!("unknown precision '{other}' (f32, bf16, f16)"))),
    }
}

/// Sizes MKL's thread team to the rayon pool, once per process, when MKL is
/// linked (feature `mkl`; see `reasonembed_mkl::configure_threads`): candle's
/// other CPU kernels run on rayon, so `RAYON_NUM_THREADS` bounds both, and
/// `MKL_NUM_THREADS` / `OMP_NUM_THREADS` still override MKL's. Loading a model
/// calls it; a binary may call it earlier.
pub fn configure_cpu_threads() {
    #[cfg(feature = "mkl")]
    reasonembed_mkl::configure_threads();
}

/// The CPU math library candle's matrix products run on in this build:
/// MKL's version string, or `None` for candle's pure-Rust kernels.
pub fn cpu_blas() -> Option<String> {
    #[cfg(feature = "mkl")]
    return reasonembed_mkl::version();
    #[cfg(not(feature = "mkl"))]
    None
}

/// Whether the packed path multiplies bf16 on its own AMX kernel (the CPU
/// has AMX-BF16 and Linux grants the tile state) rather than on MKL: the two
/// sum products in different orders, so bf16 vectors differ in their last
/// bits between such machines.
pub fn amx() -> bool {
    #[cfg(feature = "mkl")]
    return crate::amx::available();
    #[cfg(not(feature = "mkl"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_precisions() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        assert_eq!(parse_dtype(None, &Device::Cpu).unwrap(), DType::F32);
        assert_eq!(parse_dtype(Some("bf16"), &Device::Cpu).unwrap(), DType::BF16);
        assert!(parse_dtype(Some("f8"), &Device::Cpu).is_err());
    }
}
