//! Llama (ReasonEmbed-Llama-3.1-8B, ReasonIR): the shared decoder with optional
//! `attention_bias` / `mlp_bias` and Llama 3.1's `llama3` RoPE scaling
//! (implemented in `rope.rs`).

use crate::decoder::{Config, HfConfig, Variant};

pub fn config(hf: &HfConfig) -> Result<Config, String> {
    let bias = hf.attention_bias.unwrap_or(false);
    Config::from_hf(
        hf,
        Variant {
            qkv_bias: bias,
            o_bias: bias,
            mlp_bias: hf.mlp_bias.unwrap_or(false),
            qk_norm: false,
        },
    )
}
