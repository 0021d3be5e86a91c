//! Layers shared by every backbone, built from primitive tensor ops so that they
//! record gradients (candle's fused `layer_norm`, `rms_norm` and
//! `softmax_last_dim` have no backward pass; see `rust-stack.md` §4.1).
//!
//! The fused kernels are used only in [`Mode::Inference`], where no gradient is
//! needed and they are markedly faster.

use candle_core::{D, DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::lora::{LoraAdapter, LoraConfig};

/// Whether a forward pass may take inference-only shortcuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused kernels, no dropout; gradients are not recorded through norms.
    Inference,
    /// Differentiable primitives everywhere and the configured dropout.
    Train,
}

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
        Ok(Linear { weight, bias, lora })
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
}

impl Linear {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = matmul_t(x, &self.weight)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            Some(lora) => y + lora.forward(x, mode)?,
            None => Ok(y),
        }
    }

    /// Folds the adapter into the base weight (`W + s·B·A`) and drops it.
    pub fn merge_lora(&mut self) -> Result<()> {
        if let Some(lora) = self.lora.take() {
            self.weight = (&self.weight + lora.delta_weight()?.to_dtype(self.weight.dtype())?)?;
        }
        Ok(())
    }
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

#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
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

/// SplitMix64: a tiny, well-mixed generator for masks and sampling.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout, active only while training, with masks from the
/// thread's seeded stream (see [`seed_dropout`]).
pub fn dropout(x: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
    if mode != Mode::Train || p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        candle_core::bail!("dropout probability has to be below 1, got {p}");
    }
    let (seed, call) = DROPOUT_STREAM.with(|s| {
        let (seed, call) = s.get();
        s.set((seed, call + 1));
        (seed, call)
    });
    let mut state = seed ^ call.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let threshold = (p * u64::MAX as f64) as u64;
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if splitmix64(&mut state) >= threshold { keep } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
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
