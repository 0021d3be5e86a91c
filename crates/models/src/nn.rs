//! Layers shared by every backbone, built from primitive tensor ops so that they
//! record gradients (candle's fused `layer_norm`, `rms_norm` and
//! `softmax_last_dim` have no backward pass).
//!
//! The fused kernels are used only in [`Mode::Inference`], where no gradient is
//! needed and they are markedly faster.

use candle_core::{D, DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lora::{LoraAdapter, LoraConfig};
use crate::ops::{Mode, matmul_t};

/// Where a layer's tensors come from: the base checkpoint and, when LoRA is on,
/// a second store holding the trainable adapters. `pp` walks both in step so an
/// adapter is named after the linear layer it wraps, as PEFT names it.
#[derive(Clone)]
pub struct Weights {
    base: VarBuilder<'static>,
    lora: Option<LoraWeights>,
}

#[derive(Clone)]
struct LoraWeights {
    config: LoraConfig,
    vb: VarBuilder<'static>,
}

impl Weights {
    pub fn new(base: VarBuilder<'static>) -> Self {
        Self { base, lora: None }
    }

    /// Adds LoRA adapters, created in `adapters`, to every linear layer that
    /// `config.target_modules` selects.
    pub fn with_lora(mut self, config: LoraConfig, adapters: VarBuilder<'static>) -> Self {
        self.lora = Some(LoraWeights { config, vb: adapters });
        self
    }

    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        Self {
            base: self.base.pp(&name),
            lora: self.lora.as_ref().map(|l| LoraWeights {
                config: l.config.clone(),
                vb: l.vb.pp(&name),
            }),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }

    pub fn dtype(&self) -> DType {
        self.base.dtype()
    }

    pub fn device(&self) -> &candle_core::Device {
        self.base.device()
    }

    pub fn get(&self, shape: impl Into<candle_core::Shape>, name: &str) -> Result<Tensor> {
        self.base.get(shape, name)
    }

    /// A linear layer `out × in` at this path; `bias` says whether the
    /// checkpoint has one.
    pub fn linear(&self, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let weight = self.base.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(self.base.get(out_dim, "bias")?)
        } else {
            None
        };
        let lora = match &self.lora {
            Some(l) if l.config.targets(&self.base.prefix()) => {
                Some(LoraAdapter::new(&l.config, in_dim, out_dim, &l.vb)?)
            }
            _ => None,
        };
        Ok(Linear {
            weight,
            bias,
            lora,
            #[cfg(feature = "mkl")]
            packed: Default::default(),
            #[cfg(feature = "mkl")]
            matmul_precision: Default::default(),
        })
    }

    pub fn embedding(&self, vocab: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding {
            weight: self.base.get((vocab, dim), "weight")?,
        })
    }

    pub fn layer_norm(&self, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.base.get(dim, "weight")?,
            bias: self.base.get(dim, "bias")?,
            eps,
        })
    }

    pub fn rms_norm(&self, dim: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.base.get(dim, "weight")?,
            eps,
        })
    }
}

/// `y = x Wᵀ + b`, plus a LoRA update when an adapter is attached.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraAdapter>,
    /// The weight in MKL's packed layout, made by the packed inference path
    /// on first use (it runs on frozen weights only).
    #[cfg(feature = "mkl")]
    pub(crate) packed: std::sync::OnceLock<std::sync::Arc<crate::packed::PackedWeight>>,
    /// How the packed path multiplies an f32 weight.
    #[cfg(feature = "mkl")]
    matmul_precision: crate::MatmulPrecision,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = match crate::mkl::linear(x, &self.weight, self.bias.as_ref(), mode)? {
            Some(y) => y,
            None => {
                let y = matmul_t(x, &self.weight)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                }
            }
        };
        match &self.lora {
            Some(lora) => y + lora.forward(x, mode)?,
            None => Ok(y),
        }
    }

    /// The weight `[out, in]` and bias, for kernels that take the layer apart.
    #[cfg(feature = "mkl")]
    pub(crate) fn parts(&self) -> (&Tensor, Option<&Tensor>) {
        (&self.weight, self.bias.as_ref())
    }

    /// The LoRA adapter, when one is attached (and not merged).
    #[cfg(feature = "mkl")]
    pub(crate) fn lora(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }

    /// How the packed path multiplies an f32 weight.
    #[cfg(feature = "mkl")]
    pub(crate) fn matmul_precision(&self) -> crate::MatmulPrecision {
        self.matmul_precision
    }

    /// Sets [`Linear::matmul_precision`]; the weight is packed again.
    pub fn set_matmul_precision(&mut self, precision: crate::MatmulPrecision) {
        #[cfg(feature = "mkl")]
        {
            self.matmul_precision = precision;
            self.packed = Default::default();
        }
        #[cfg(not(feature = "mkl"))]
        let _ = precision;
    }

    /// Whether a LoRA adapter is attached (and not merged).
    #[cfg(feature = "mkl")]
    pub(crate) fn has_lora(&self) -> bool {
        self.lora.is_some()
    }

    /// Folds the adapter into the base weight (`W + s·B·A`) and drops it.
    pub fn merge_lora(&mut self) -> Result<()> {
        if let Some(lora) = self.lora.take() {
            self.weight = (&self.weight + lora.delta_weight()?.to_dtype(self.weight.dtype())?)?;
            #[cfg(feature = "mkl")]
            {
                self.packed = Default::default();
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Embedding {
    pub(crate) weight: Tensor,
}

impl Embedding {
    /// Looks up `ids` of shape `[b, s]`, giving `[b, s, dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let dim = self.weight.dim(1)?;
        self.weight.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, dim))
    }

    pub fn row(&self, index: usize) -> Result<Tensor> {
        self.weight.get(index)
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Scale and shift, the parameters themselves.
    #[cfg(feature = "mkl")]
    pub(crate) fn tensors(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    /// Scale, shift and epsilon in f32, for kernels that take the norm apart.
    #[cfg(feature = "mkl")]
    pub(crate) fn parts_f32(&self) -> Result<(Vec<f32>, Vec<f32>, f32)> {
        let f32s = |t: &Tensor| t.to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok((f32s(&self.weight)?, f32s(&self.bias)?, self.eps as f32))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Inference && x.is_contiguous() {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// The scale, the parameter itself.
    #[cfg(feature = "mkl")]
    pub(crate) fn tensor(&self) -> &Tensor {
        &self.weight
    }

    /// Scale and epsilon in f32, for kernels that take the norm apart.
    #[cfg(feature = "mkl")]
    pub(crate) fn parts_f32(&self) -> Result<(Vec<f32>, f32)> {
        Ok((self.weight.to_dtype(DType::F32)?.to_vec1::<f32>()?, self.eps as f32))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Inference && x.is_contiguous() {
            return candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
        x.broadcast_div(&rms)?.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// Softmax over the last dimension, fused when no gradient is needed.
pub fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::softmax_last_dim(x),
        Mode::Train => crate::ops::softmax_last_dim(x),
    }
}

/// Hidden activations named as in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact, erf-based GELU (`gelu` in transformers).
    Gelu,
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    pub fn apply(self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            // Our fused GELU has a cheap backward; candle's is faster forward only.
            Self::Gelu if mode == Mode::Train => crate::ops::gelu_erf(x),
            Self::Gelu => x.gelu_erf(),
            Self::GeluNew => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => candle_nn::ops::silu(x),
        }
    }
}
