//! Qwen3 (Qwen3-Embedding, ReasonEmbed-Qwen3): the shared decoder with per-head
//! RMSNorm on queries and keys ("QK-norm"), an explicit `head_dim`, and
//! projection biases only when `attention_bias` is set.

use crate::decoder::{Config, HfConfig, Variant};

pub fn config(hf: &HfConfig) -> Result<Config, String> {
    let bias = hf.attention_bias.unwrap_or(false);
    Config::from_hf(
        hf,
        Variant {
            qkv_bias: bias,
            o_bias: bias,
            mlp_bias: false,
            qk_norm: true,
        },
    )
}
