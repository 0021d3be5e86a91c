//! Qwen2 (gte-Qwen2-7B-instruct, the paper's candidate miner): the shared
//! decoder with biases on the query, key and value projections only.
//! Sliding-window attention is not applied (embedding models disable it).

use crate::decoder::{Config, HfConfig, Variant};

pub fn config(hf: &HfConfig) -> Result<Config, String> {
    Config::from_hf(
        hf,
        Variant {
            qkv_bias: true,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        },
    )
}
