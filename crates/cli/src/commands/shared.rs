//! Flags shared by every command that loads an embedding model.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use clap::ValueEnum;
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

impl ModelArgs {
    pub fn options(&self) -> Result<EmbedderOptions> {
        let device = parse_device(&self.device)?;
        let dtype = match self.dtype {
            Some(DTypeArg::F32) => DType::F32,
            Some(DTypeArg::Bf16) => DType::BF16,
            Some(DTypeArg::F16) => DType::F16,
            None if device.is_cuda() => DType::BF16,
            None => DType::F32,
        };
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
            ..Default::default()
        })
    }
}

fn parse_device(spec: &str) -> Result<Device> {
    match spec.split_once(':') {
        None if spec == "cpu" => Ok(Device::Cpu),
        None if spec == "cuda" => Device::new_cuda(0).context("cannot open CUDA device 0"),
        Some(("cuda", n)) => {
            let n: usize = n.parse().with_context(|| format!("invalid CUDA device number '{n}'"))?;
            Device::new_cuda(n).with_context(|| format!("cannot open CUDA device {n}"))
        }
        _ => bail!("unknown device '{spec}' (cpu, cuda, cuda:N)"),
    }
}
