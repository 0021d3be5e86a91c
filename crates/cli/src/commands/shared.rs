//! Flags shared by every command that loads an embedding model.

use anyhow::Result;
use clap::ValueEnum;
use reasonembed_models::device::{parse_device, parse_dtype};
use reasonembed_models::{Attention, EmbedderOptions, EosPolicy, PaddingSide, Pooling};

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a folder, a built-in name (minilm) or a Hugging Face id (owner/name[@revision]);
    /// `eval` also takes bm25.
    #[arg(short, long, default_value = reasonembed_models::source::DEFAULT_MODEL)]
    pub model: String,

    /// Maximum tokens per text, special tokens included [default: the model's
    /// sentence-transformers max_seq_length, else its tokenizer/config limit].
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,

    /// Return raw pooled vectors instead of L2-normalised ones.
    #[arg(long)]
    pub no_normalize: bool,

    /// Override the model's pooling.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,

    /// Override the padding side (decoders default to left, encoders to right).
    #[arg(long, value_enum)]
    pub padding_side: Option<SideArg>,

    /// Override the attention of a decoder (e.g. bidirectional for gte-Qwen2 / ReasonIR).
    #[arg(long, value_enum)]
    pub attention: Option<AttentionArg>,

    /// Append the EOS token: as the checkpoint's tokenizer_config.json says (auto), always or never.
    #[arg(long, value_enum, default_value_t = EosArg::Auto)]
    pub eos: EosArg,

    /// Device: cpu, or cuda / cuda:N with a CUDA build.
    #[arg(long, default_value = "cpu")]
    pub device: String,

    /// A LoRA adapter (PEFT layout: adapter_config.json, adapter_model.safetensors) to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,

    /// Weight precision [default: f32 on CPU, bf16 on CUDA].
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum PoolingArg {
    Cls,
    Mean,
    LastToken,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SideArg {
    Left,
    Right,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum AttentionArg {
    Causal,
    Bidirectional,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum EosArg {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DTypeArg {
    F32,
    Bf16,
    F16,
}

impl DTypeArg {
    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl ModelArgs {
    pub fn options(&self) -> Result<EmbedderOptions> {
        let device = parse_device(&self.device)?;
        let dtype = parse_dtype(self.dtype.map(DTypeArg::name), &device)?;
        Ok(EmbedderOptions {
            max_length: self.max_length,
            pooling: self.pooling.map(|p| match p {
                PoolingArg::Cls => Pooling::Cls,
                PoolingArg::Mean => Pooling::Mean,
                PoolingArg::LastToken => Pooling::LastToken,
            }),
            normalize: self.no_normalize.then_some(false),
            padding_side: self.padding_side.map(|s| match s {
                SideArg::Left => PaddingSide::Left,
                SideArg::Right => PaddingSide::Right,
            }),
            attention: self.attention.map(|a| match a {
                AttentionArg::Causal => Attention::Causal,
                AttentionArg::Bidirectional => Attention::Bidirectional,
            }),
            eos: match self.eos {
                EosArg::Auto => EosPolicy::Auto,
                EosArg::Always => EosPolicy::Always,
                EosArg::Never => EosPolicy::Never,
            },
            dtype: Some(dtype),
            device: Some(device),
            adapter: self.adapter.clone(),
            ..Default::default()
        })
    }
}
