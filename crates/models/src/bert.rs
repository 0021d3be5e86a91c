//! BERT (Devlin et al., 2019) as used by all-MiniLM, bge and e5: absolute
//! position embeddings, post-norm layers, bidirectional attention.
//!
//! Tensor names are those of `transformers.BertModel`, with or without the
//! `bert.` prefix that `BertFor*` checkpoints carry.

use candle_core::{Result, Tensor};
use serde::Deserialize;

use crate::attention::{merge_heads, scaled_dot_product, split_heads};
use crate::batch::{Attention, TokenBatch};
use crate::nn::{Activation, Embedding, LayerNorm, Linear, Weights};
use crate::ops::{Mode, dropout};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl Config {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(kind) = self.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
            return Err(format!(
                "position_embedding_type '{kind}' is not supported (only 'absolute')"
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err("hidden_size must be a multiple of num_attention_heads".into());
        }
        Ok(())
    }
}

pub(crate) struct Embeddings {
    pub(crate) word: Embedding,
    pub(crate) position: Embedding,
    pub(crate) token_type: Embedding,
    pub(crate) norm: LayerNorm,
    pub(crate) dropout: f64,
}

impl Embeddings {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        Ok(Self {
            word: w.pp("word_embeddings").embedding(cfg.vocab_size, cfg.hidden_size)?,
            position: w
                .pp("position_embeddings")
                .embedding(cfg.max_position_embeddings, cfg.hidden_size)?,
            token_type: w
                .pp("token_type_embeddings")
                .embedding(cfg.type_vocab_size, cfg.hidden_size)?,
            norm: w.pp("LayerNorm").layer_norm(cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        // Single-segment inputs: every token has type 0.
        let x = self
            .word
            .forward(&batch.input_ids)?
            .broadcast_add(&self.position.forward(&batch.position_ids()?)?)?
            .broadcast_add(&self.token_type.row(0)?)?;
        dropout(&self.norm.forward(&x, mode)?, self.dropout, mode)
    }
}

#[cfg(feature = "mkl")]
impl Embeddings {
    /// The normalised embeddings of every packed token, `[tokens, hidden]`.
    fn forward_packed(&self, packed: &crate::packed::Packed) -> Result<Vec<f32>> {
        let mut x = self.sum_packed(packed)?;
        crate::packed::layer_norm_rows(&mut x, &self.norm)?;
        Ok(x)
    }

    /// Word, position and token-type embeddings of every packed token,
    /// summed (before the norm), `[tokens, hidden]`.
    pub(crate) fn sum_packed(&self, packed: &crate::packed::Packed) -> Result<Vec<f32>> {
        use crate::packed::add_rows;
        let mut x = vec![0f32; packed.tokens() * self.word.weight.dim(1)?];
        add_rows(&self.word.weight, packed.ids.iter().map(|&i| i as usize), &mut x)?;
        add_rows(
            &self.position.weight,
            packed.positions.iter().map(|&p| p as usize),
            &mut x,
        )?;
        // Single-segment inputs: every token has type 0.
        add_rows(&self.token_type.weight, std::iter::repeat_n(0, packed.tokens()), &mut x)?;
        Ok(x)
    }
}

pub(crate) struct Layer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attn_out: Linear,
    pub(crate) attn_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) out_norm: LayerNorm,
    pub(crate) heads: usize,
    pub(crate) act: Activation,
    pub(crate) hidden_dropout: f64,
    pub(crate) attn_dropout: f64,
}

impl Layer {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let attn = w.pp("attention");
        let this = attn.pp("self");
        Ok(Self {
            query: this.pp("query").linear(h, h, true)?,
            key: this.pp("key").linear(h, h, true)?,
            value: this.pp("value").linear(h, h, true)?,
            attn_out: attn.pp("output").pp("dense").linear(h, h, true)?,
            attn_norm: attn.pp("output").pp("LayerNorm").layer_norm(h, cfg.layer_norm_eps)?,
            intermediate: w.pp("intermediate").pp("dense").linear(h, i, true)?,
            output: w.pp("output").pp("dense").linear(i, h, true)?,
            out_norm: w.pp("output").pp("LayerNorm").layer_norm(h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            hidden_dropout: cfg.hidden_dropout_prob,
            attn_dropout: cfg.attention_probs_dropout_prob,
        })
    }

    #[cfg(feature = "mkl")]
    pub(crate) fn linears(&self) -> impl Iterator<Item = &Linear> {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attn_out,
            &self.intermediate,
            &self.output,
        ]
        .into_iter()
    }

    /// One layer on packed rows, in place: `x` ← the layer's output.
    #[cfg(feature = "mkl")]
    fn forward_packed(&self, x: &mut [f32], packed: &crate::packed::Packed, buf: &mut LayerBuffers) -> Result<()> {
        use crate::packed::{Heads, Products, Prologue, attention, feed_forward, layer_norm, linear};
        let h = x.len() / packed.tokens().max(1);
        // Q, K and V side by side in one row per token.
        let qkv = [&self.query, &self.key, &self.value];
        linear(x, Prologue::Plain, &qkv, &mut buf.qkv, None, |_, _| {})?;
        let heads = Heads {
            q: self.heads,
            kv: self.heads,
            dim: h / self.heads,
            causal: false,
        };
        attention(&buf.qkv, packed, heads, Products::of(&self.query)?, &mut buf.ctx);
        let (w, b, eps) = self.attn_norm.parts_f32()?;
        let norm = |_, row: &mut [f32]| layer_norm(row, &w, &b, eps);
        linear(
            &buf.ctx,
            Prologue::Plain,
            &[&self.attn_out],
            &mut buf.mid,
            Some(&*x),
            norm,
        )?;
        let (w, b, eps) = self.out_norm.parts_f32()?;
        let norm = |_, row: &mut [f32]| layer_norm(row, &w, &b, eps);
        feed_forward(
            &buf.mid,
            Prologue::Plain,
            &[&self.intermediate],
            Prologue::Gelu,
            &self.output,
            x,
            &buf.mid,
            norm,
        )
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, mode: Mode) -> Result<Tensor> {
        let head_dim = x.dim(2)? / self.heads;
        let q = split_heads(&self.query.forward(x, mode)?, self.heads, head_dim)?;
        let k = split_heads(&self.key.forward(x, mode)?, self.heads, head_dim)?;
        let v = split_heads(&self.value.forward(x, mode)?, self.heads, head_dim)?;
        let ctx = merge_heads(&scaled_dot_product(&q, &k, &v, bias, self.attn_dropout, mode)?)?;
        let attn = dropout(&self.attn_out.forward(&ctx, mode)?, self.hidden_dropout, mode)?;
        let x = self.attn_norm.forward(&(x + attn)?, mode)?;
        let h = self.act.apply(&self.intermediate.forward(&x, mode)?, mode)?;
        let h = dropout(&self.output.forward(&h, mode)?, self.hidden_dropout, mode)?;
        self.out_norm.forward(&(x + h)?, mode)
    }
}

/// Scratch rows of [`Layer::forward_packed`], reused by every layer.
#[cfg(feature = "mkl")]
struct LayerBuffers {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    mid: Vec<f32>,
}

pub struct Bert {
    pub(crate) embeddings: Embeddings,
    pub(crate) layers: Vec<Layer>,
    hidden_size: usize,
}

impl Bert {
    pub fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let w = if w.contains("bert.embeddings.word_embeddings.weight") {
            w.pp("bert")
        } else {
            w.clone()
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(&w.pp("encoder").pp("layer").pp(i), cfg))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::load(&w.pp("embeddings"), cfg)?,
            layers,
            hidden_size: cfg.hidden_size,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Last hidden states `[b, s, hidden]`.
    pub fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let bias = batch.attention_bias(Attention::Bidirectional)?;
        let mut x = self.embeddings.forward(batch, mode)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, mode)?;
        }
        Ok(x)
    }

    /// Whether [`Bert::forward_packed`] covers this model as it stands:
    /// MKL linked, exact GELU, f32 or bf16 weights on the CPU, no unmerged
    /// LoRA adapter.
    #[cfg(feature = "mkl")]
    pub fn packs(&self) -> bool {
        crate::packed::AVAILABLE
            && crate::packed::supports(&self.embeddings.word.weight)
            && self.layers.iter().all(|l| {
                l.act == Activation::Gelu
                    && l.linears()
                        .all(|lin| !lin.has_lora() && crate::packed::supports(lin.parts().0))
            })
    }

    /// [`Bert::forward`] in [`Mode::Inference`] on the packed path (see
    /// [`crate::packed`]): the hidden states of the real tokens only,
    /// `[tokens, hidden]`, sequence after sequence.
    #[cfg(feature = "mkl")]
    pub fn forward_packed(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let packed = crate::packed::Packed::new(batch)?;
        let h = self.hidden_size;
        let mut x = self.embeddings.forward_packed(&packed)?;
        let t = packed.tokens();
        let mut buffers = LayerBuffers {
            qkv: vec![0f32; t * 3 * h],
            ctx: vec![0f32; t * h],
            mid: vec![0f32; t * h],
        };
        for layer in &self.layers {
            layer.forward_packed(&mut x, &packed, &mut buffers)?;
        }
        Ok(x)
    }

    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers.iter_mut().flat_map(|l| {
            [
                &mut l.query,
                &mut l.key,
                &mut l.value,
                &mut l.attn_out,
                &mut l.intermediate,
                &mut l.output,
            ]
        })
    }
}
