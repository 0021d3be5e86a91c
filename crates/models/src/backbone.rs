//! The architectures we can load, chosen by `config.json`'s `model_type`.

use candle_core::{Result, Tensor};

use crate::batch::{Attention, TokenBatch};
use crate::nn::{Linear, Weights};
use crate::ops::Mode;
use crate::{bert, decoder, llama, qwen2, qwen3};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    Qwen3,
    Qwen2,
    Llama,
}

impl Architecture {
    pub const SUPPORTED: &'static str = "bert, qwen3, qwen2, llama";

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Self::Bert),
            "qwen3" => Some(Self::Qwen3),
            "qwen2" => Some(Self::Qwen2),
            "llama" => Some(Self::Llama),
            _ => None,
        }
    }

    pub fn is_decoder(self) -> bool {
        self != Self::Bert
    }
}

/// A parsed configuration, ready to build its backbone.
#[derive(Debug, Clone)]
pub enum BackboneConfig {
    Bert(bert::Config),
    Decoder(decoder::Config),
}

impl BackboneConfig {
    /// Parses `config.json` for `arch`; the error is a message for the caller
    /// to attach to the file name.
    pub fn parse(arch: Architecture, json: &serde_json::Value) -> std::result::Result<Self, String> {
        let parse_err = |e: serde_json::Error| e.to_string();
        match arch {
            Architecture::Bert => {
                let cfg: bert::Config = serde_json::from_value(json.clone()).map_err(parse_err)?;
                cfg.validate()?;
                Ok(Self::Bert(cfg))
            }
            _ => {
                let hf: decoder::HfConfig = serde_json::from_value(json.clone()).map_err(parse_err)?;
                let cfg = match arch {
                    Architecture::Qwen3 => qwen3::config(&hf),
                    Architecture::Qwen2 => qwen2::config(&hf),
                    _ => llama::config(&hf),
                }?;
                Ok(Self::Decoder(cfg))
            }
        }
    }

    pub fn max_position_embeddings(json: &serde_json::Value) -> Option<usize> {
        json.get("max_position_embeddings")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
    }
}

pub enum Backbone {
    Bert(bert::Bert),
    Decoder(decoder::Decoder),
}

impl Backbone {
    pub fn load(weights: &Weights, config: &BackboneConfig) -> Result<Self> {
        Ok(match config {
            BackboneConfig::Bert(c) => Self::Bert(bert::Bert::load(weights, c)?),
            BackboneConfig::Decoder(c) => Self::Decoder(decoder::Decoder::load(weights, c)?),
        })
    }

    /// Last hidden states `[b, s, hidden]`.
    pub fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        match self {
            Self::Bert(m) => m.forward(batch, mode),
            Self::Decoder(m) => m.forward(batch, mode),
        }
    }

    /// Whether [`Backbone::forward_packed`] covers this model (see
    /// [`crate::packed`]); only with the `mkl` feature.
    pub fn packs(&self) -> bool {
        match self {
            #[cfg(feature = "mkl")]
            Self::Bert(m) => m.packs(),
            #[cfg(feature = "mkl")]
            Self::Decoder(m) => m.packs(),
            #[cfg(not(feature = "mkl"))]
            _ => false,
        }
    }

    /// [`Backbone::forward`] in [`Mode::Inference`] on the packed path: the
    /// last hidden states of the real tokens only, `[tokens, hidden]`,
    /// sequence after sequence (pool them with [`crate::Pooling::pool_packed`]);
    /// call it only where [`Backbone::packs`] holds.
    #[cfg_attr(not(feature = "mkl"), allow(unused_variables))]
    pub fn forward_packed(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        match self {
            #[cfg(feature = "mkl")]
            Self::Bert(m) if m.packs() => m.forward_packed(batch),
            #[cfg(feature = "mkl")]
            Self::Decoder(m) if m.packs() => m.forward_packed(batch),
            _ => candle_core::bail!("this model has no packed inference path"),
        }
    }

    /// Whether training takes the hand-written backward pass ([`crate::hand`]).
    #[cfg(feature = "mkl")]
    pub(crate) fn trains_by_hand(&self) -> bool {
        match self {
            Self::Bert(m) => m.trains_by_hand(),
            Self::Decoder(m) => m.trains_by_hand(),
        }
    }

    /// The forward pass in training mode on packed rows, with its tape (see
    /// [`crate::hand`]): the last hidden states of the real tokens.
    #[cfg(feature = "mkl")]
    pub(crate) fn forward_taped(&self, batch: &TokenBatch) -> Result<(Vec<f32>, crate::hand::Tape)> {
        match self {
            Self::Bert(m) => m.forward_taped(batch),
            Self::Decoder(m) => m.forward_taped(batch),
        }
    }

    /// The backward pass of [`Backbone::forward_taped`], given the gradient
    /// of its hidden states.
    #[cfg(feature = "mkl")]
    pub(crate) fn backward_taped(
        &self,
        tape: crate::hand::Tape,
        dy: Vec<f32>,
        grads: &mut crate::hand::HandGrads,
    ) -> Result<()> {
        match self {
            Self::Bert(m) => m.backward_taped(tape, dy, grads),
            Self::Decoder(m) => m.backward_taped(tape, dy, grads),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(m) => m.hidden_size(),
            Self::Decoder(m) => m.hidden_size(),
        }
    }

    pub fn attention(&self) -> Attention {
        match self {
            Self::Bert(_) => Attention::Bidirectional,
            Self::Decoder(m) => m.attention(),
        }
    }

    /// Switches a decoder between causal and bidirectional attention.
    pub fn set_attention(&mut self, attention: Attention) -> std::result::Result<(), String> {
        match self {
            Self::Bert(_) if attention == Attention::Causal => {
                Err("BERT encoders only support bidirectional attention".into())
            }
            Self::Bert(_) => Ok(()),
            Self::Decoder(m) => {
                m.set_attention(attention);
                Ok(())
            }
        }
    }

    /// Folds every LoRA adapter into its base weight.
    pub fn merge_lora(&mut self) -> Result<()> {
        self.linears_mut().into_iter().try_for_each(Linear::merge_lora)
    }

    /// How the packed path multiplies the f32 weights of every linear layer.
    pub fn set_matmul_precision(&mut self, precision: crate::MatmulPrecision) {
        for linear in self.linears_mut() {
            linear.set_matmul_precision(precision);
        }
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match self {
            Self::Bert(m) => m.linears_mut().collect(),
            Self::Decoder(m) => m.linears_mut().collect(),
        }
    }
}
