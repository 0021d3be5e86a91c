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

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    dropout: f64,
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

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
    act: Activation,
    hidden_dropout: f64,
    attn_dropout: f64,
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

pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
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
