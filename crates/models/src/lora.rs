//! LoRA adapters (Hu et al., 2021) for the linear layers of every backbone:
//! the base weight stays frozen and `y += (α/r) · B·A·dropout(x)` is learned.
//! Names and initialisation follow PEFT (`lora_A.weight` Kaiming-uniform,
//! `lora_B.weight` zeros), so adapters can later be saved in its layout.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::ops::{Mode, dropout, matmul_t};

/// Which linear layers get an adapter and how big it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names as PEFT takes them (`q_proj`, `query`, …); `all-linear`
    /// selects every linear projection of the backbone.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    /// ReasonEmbed's recipe: rank 32, α 64, dropout 0.1, all projections.
    fn default() -> Self {
        Self {
            rank: 32,
            alpha: 64.0,
            dropout: 0.1,
            target_modules: vec!["all-linear".into()],
        }
    }
}

impl LoraConfig {
    /// Whether the linear layer at `path` (e.g. `layers.0.self_attn.q_proj`)
    /// is targeted; matching is on whole trailing name components, as in PEFT.
    pub fn targets(&self, path: &str) -> bool {
        self.target_modules
            .iter()
            .any(|t| t == "all-linear" || path == t || path.ends_with(&format!(".{t}")))
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The trainable pair `A: [r, in]`, `B: [out, r]` of one linear layer.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
}

impl LoraAdapter {
    pub fn new(config: &LoraConfig, in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Result<Self> {
        // kaiming_uniform_(a = √5) as PEFT uses: bound = 1/√fan_in.
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = vb.get_with_hints(
            (config.rank, in_dim),
            "lora_A.weight",
            Init::Uniform { lo: -bound, up: bound },
        )?;
        let b = vb.get_with_hints((out_dim, config.rank), "lora_B.weight", Init::Const(0.0))?;
        Ok(Self {
            a,
            b,
            scale: config.scale(),
            dropout: config.dropout,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = dropout(x, self.dropout, mode)?;
        let a = self.a.to_dtype(x.dtype())?;
        let b = self.b.to_dtype(x.dtype())?;
        matmul_t(&matmul_t(&x, &a)?, &b)? * self.scale
    }

    /// `A` (`rank × in`), `B` (`out × rank`), the scale `s` and the dropout
    /// probability, for kernels that take the adapter apart.
    #[cfg(feature = "mkl")]
    pub(crate) fn parts(&self) -> (&Tensor, &Tensor, f32, f64) {
        (&self.a, &self.b, self.scale as f32, self.dropout)
    }

    /// `s·B·A`, the change this adapter makes to the base weight.
    pub fn delta_weight(&self) -> Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }
}
