//! The pre-norm decoder stack shared by Qwen3, Qwen2 and Llama: RMSNorm,
//! rotary attention with grouped key/value heads, SwiGLU MLP.
//!
//! The three families differ only in a few switches (biases, QK-norm, RoPE
//! scaling), which their own files (`qwen3.rs`, `qwen2.rs`, `llama.rs`) set from
//! the checkpoint's `config.json`; the layers themselves live here once.
//! Attention is causal by default and bidirectional when the configuration
//! says so (`is_causal: false`, as in gte-Qwen2 and ReasonIR). There is no KV
//! cache: every call embeds a whole batch.

use candle_core::{Result, Tensor};
use serde::Deserialize;

use crate::attention::{merge_heads, repeat_kv, scaled_dot_product, split_heads};
use crate::batch::{Attention, TokenBatch};
use crate::nn::{Activation, Embedding, Linear, RmsNorm, Weights};
use crate::ops::Mode;
use crate::rope::{self, RopeScaling};

/// The fields of a decoder `config.json` that the three families share.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<RopeScaling>,
    pub rope_parameters: Option<RopeScaling>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default)]
    pub attention_dropout: f64,
    pub is_causal: Option<bool>,
}

fn default_act() -> Activation {
    Activation::Silu
}

/// Where a family puts biases and norms.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMSNorm on queries and keys (Qwen3).
    pub qk_norm: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub inv_freq: Vec<f32>,
    pub hidden_act: Activation,
    pub attention_dropout: f64,
    pub attention: Attention,
    pub variant: Variant,
}

impl Config {
    pub fn from_hf(hf: &HfConfig, variant: Variant) -> std::result::Result<Self, String> {
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        if hf.num_attention_heads == 0 || num_kv_heads == 0 || !hf.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err("num_attention_heads must be a positive multiple of num_key_value_heads".into());
        }
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads);
        if !head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {head_dim} must be even for rotary embeddings"));
        }
        let scaling = hf.rope_parameters.as_ref().or(hf.rope_scaling.as_ref());
        let theta = hf.rope_theta.or(scaling.and_then(|s| s.rope_theta)).unwrap_or(10_000.0);
        Ok(Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            inv_freq: rope::inv_freq(theta, head_dim, scaling)?,
            hidden_act: hf.hidden_act,
            attention_dropout: hf.attention_dropout,
            attention: if hf.is_causal == Some(false) {
                Attention::Bidirectional
            } else {
                Attention::Causal
            },
            variant,
        })
    }
}

pub(crate) struct SelfAttention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) qk_norm: Option<(RmsNorm, RmsNorm)>,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) dropout: f64,
}

impl SelfAttention {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, d, v) = (cfg.hidden_size, cfg.head_dim, cfg.variant);
        let qk_norm = if v.qk_norm {
            Some((
                w.pp("q_norm").rms_norm(d, cfg.rms_norm_eps)?,
                w.pp("k_norm").rms_norm(d, cfg.rms_norm_eps)?,
            ))
        } else {
            None
        };
        Ok(Self {
            q_proj: w.pp("q_proj").linear(h, cfg.num_heads * d, v.qkv_bias)?,
            k_proj: w.pp("k_proj").linear(h, cfg.num_kv_heads * d, v.qkv_bias)?,
            v_proj: w.pp("v_proj").linear(h, cfg.num_kv_heads * d, v.qkv_bias)?,
            o_proj: w.pp("o_proj").linear(cfg.num_heads * d, h, v.o_bias)?,
            qk_norm,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: d,
            dropout: cfg.attention_dropout,
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, rope: &(Tensor, Tensor), mode: Mode) -> Result<Tensor> {
        let mut q = split_heads(&self.q_proj.forward(x, mode)?, self.num_heads, self.head_dim)?;
        let mut k = split_heads(&self.k_proj.forward(x, mode)?, self.num_kv_heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(x, mode)?, self.num_kv_heads, self.head_dim)?;
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            q = q_norm.forward(&q, mode)?;
            k = k_norm.forward(&k, mode)?;
        }
        let q = rope::apply(&q, &rope.0, &rope.1)?;
        let k = rope::apply(&k, &rope.0, &rope.1)?;
        let groups = self.num_heads / self.num_kv_heads;
        let out = scaled_dot_product(
            &q,
            &repeat_kv(k, groups)?,
            &repeat_kv(v, groups)?,
            bias,
            self.dropout,
            mode,
        )?;
        self.o_proj.forward(&merge_heads(&out)?, mode)
    }
}

pub(crate) struct Mlp {
    pub(crate) gate_proj: Linear,
    pub(crate) up_proj: Linear,
    pub(crate) down_proj: Linear,
    pub(crate) act: Activation,
}

impl Mlp {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.variant.mlp_bias);
        Ok(Self {
            gate_proj: w.pp("gate_proj").linear(h, i, b)?,
            up_proj: w.pp("up_proj").linear(h, i, b)?,
            down_proj: w.pp("down_proj").linear(i, h, b)?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let gate = self.act.apply(&self.gate_proj.forward(x, mode)?, mode)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x, mode)?)?, mode)
    }
}

pub(crate) struct Layer {
    pub(crate) input_norm: RmsNorm,
    pub(crate) attn: SelfAttention,
    pub(crate) post_attn_norm: RmsNorm,
    pub(crate) mlp: Mlp,
}

impl Layer {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        Ok(Self {
            input_norm: w.pp("input_layernorm").rms_norm(cfg.hidden_size, cfg.rms_norm_eps)?,
            attn: SelfAttention::load(&w.pp("self_attn"), cfg)?,
            post_attn_norm: w
                .pp("post_attention_layernorm")
                .rms_norm(cfg.hidden_size, cfg.rms_norm_eps)?,
            mlp: Mlp::load(&w.pp("mlp"), cfg)?,
        })
    }

    #[cfg(feature = "mkl")]
    pub(crate) fn linears(&self) -> impl Iterator<Item = &Linear> {
        let (a, m) = (&self.attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
        .into_iter()
    }

    /// One layer on packed rows, in place: `x` ← the layer's output.
    #[cfg(feature = "mkl")]
    fn forward_packed(
        &self,
        x: &mut [f32],
        packed: &crate::packed::Packed,
        decoder: &Decoder,
        buf: &mut crate::packed::DecoderBuffers,
    ) -> Result<()> {
        use crate::packed::{Heads, Products, Prologue, attention, feed_forward, linear, rotary_row};
        let a = &self.attn;
        let heads = Heads {
            q: a.num_heads,
            kv: a.num_kv_heads,
            dim: a.head_dim,
            causal: decoder.attention == Attention::Causal,
        };
        let t = packed.tokens();
        let (weight, eps) = self.input_norm.parts_f32()?;
        let qk_norm = match &a.qk_norm {
            Some((q, k)) => {
                let ((qw, eps), (kw, _)) = (q.parts_f32()?, k.parts_f32()?);
                Some((qw, kw, eps))
            }
            None => None,
        };
        let qk_norm = qk_norm.as_ref().map(|(q, k, eps)| (q.as_slice(), k.as_slice(), *eps));
        buf.qkv.resize(t * heads.qkv_width(), 0.0);
        linear(
            x,
            Prologue::RmsNorm(&weight, eps),
            &[&a.q_proj, &a.k_proj, &a.v_proj],
            &mut buf.qkv,
            None,
            |row, qkv| rotary_row(qkv, packed.positions[row], heads, &decoder.inv_freq, qk_norm),
        )?;
        buf.ctx.resize(t * heads.q * heads.dim, 0.0);
        attention(&buf.qkv, packed, heads, Products::of(&a.q_proj)?, &mut buf.ctx);
        linear(
            &buf.ctx,
            Prologue::Plain,
            &[&a.o_proj],
            &mut buf.mid,
            Some(x),
            |_, _| {},
        )?;
        let (weight, eps) = self.post_attn_norm.parts_f32()?;
        let m = &self.mlp;
        feed_forward(
            &buf.mid,
            Prologue::RmsNorm(&weight, eps),
            &[&m.gate_proj, &m.up_proj],
            Prologue::SiluGate,
            &m.down_proj,
            x,
            &buf.mid,
            |_, _| {},
        )
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, rope: &(Tensor, Tensor), mode: Mode) -> Result<Tensor> {
        let x = (x + self
            .attn
            .forward(&self.input_norm.forward(x, mode)?, bias, rope, mode)?)?;
        &x + self.mlp.forward(&self.post_attn_norm.forward(&x, mode)?, mode)?
    }
}

pub struct Decoder {
    pub(crate) embed_tokens: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: RmsNorm,
    pub(crate) inv_freq: Vec<f32>,
    pub(crate) attention: Attention,
    hidden_size: usize,
}

impl Decoder {
    /// Loads the stack from a base-model checkpoint (`embed_tokens.weight`, as
    /// embedding models are saved) or a causal-LM one (`model.embed_tokens…`).
    pub fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let w = if w.contains("model.embed_tokens.weight") {
            w.pp("model")
        } else {
            w.clone()
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(&w.pp("layers").pp(i), cfg))
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens: w.pp("embed_tokens").embedding(cfg.vocab_size, cfg.hidden_size)?,
            layers,
            norm: w.pp("norm").rms_norm(cfg.hidden_size, cfg.rms_norm_eps)?,
            inv_freq: cfg.inv_freq.clone(),
            attention: cfg.attention,
            hidden_size: cfg.hidden_size,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    pub fn attention(&self) -> Attention {
        self.attention
    }

    pub fn set_attention(&mut self, attention: Attention) {
        self.attention = attention;
    }

    /// Final-norm hidden states `[b, s, hidden]`.
    pub fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let mut x = self.embed_tokens.forward(&batch.input_ids)?;
        let bias = batch.attention_bias(self.attention)?;
        let rope = rope::cos_sin(&self.inv_freq, &batch.position_ids()?, x.dtype())?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, &rope, mode)?;
        }
        self.norm.forward(&x, mode)
    }

    /// Whether [`Decoder::forward_packed`] covers this model as it stands:
    /// MKL linked, SwiGLU with SiLU, f32 or bf16 weights on the CPU, no
    /// unmerged LoRA adapter.
    #[cfg(feature = "mkl")]
    pub fn packs(&self) -> bool {
        crate::packed::AVAILABLE
            && crate::packed::supports(&self.embed_tokens.weight)
            && self.layers.iter().all(|l| {
                l.mlp.act == Activation::Silu
                    && l.linears()
                        .all(|lin| !lin.has_lora() && crate::packed::supports(lin.parts().0))
            })
    }

    /// [`Decoder::forward`] in [`Mode::Inference`] on the packed path (see
    /// [`crate::packed`]): the final-norm hidden states of the real tokens
    /// only, `[tokens, hidden]`, sequence after sequence.
    #[cfg(feature = "mkl")]
    pub fn forward_packed(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        use crate::packed::{add_rows, rms_norm_rows};
        let packed = crate::packed::Packed::new(batch)?;
        let (h, t) = (self.hidden_size, packed.tokens());
        let mut x = vec![0f32; t * h];
        add_rows(
            &self.embed_tokens.weight,
            packed.ids.iter().map(|&i| i as usize),
            &mut x,
        )?;
        let mut buf = crate::packed::DecoderBuffers::new(t, h);
        for layer in &self.layers {
            layer.forward_packed(&mut x, &packed, self, &mut buf)?;
        }
        let (weight, eps) = self.norm.parts_f32()?;
        rms_norm_rows(&x, &weight, eps, &mut buf.normed);
        Ok(buf.normed)
    }

    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers.iter_mut().flat_map(|l| {
            [
                &mut l.attn.q_proj,
                &mut l.attn.k_proj,
                &mut l.attn.v_proj,
                &mut l.attn.o_proj,
                &mut l.mlp.gate_proj,
                &mut l.mlp.up_proj,
                &mut l.mlp.down_proj,
            ]
        })
    }
}
