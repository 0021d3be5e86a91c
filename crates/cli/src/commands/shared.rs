//! Flags shared by every command that loads an embedding model, or the LLM
//! that reasons about queries.

use anyhow::Result;
use clap::ValueEnum;
use reasonembed_data::Progress;
use reasonembed_eval::retriever::QueryRewriter;
use reasonembed_models::device::{parse_device, parse_dtype};
use reasonembed_models::{Attention, EmbedderOptions, EosPolicy, MatmulPrecision, PaddingSide, Pooling};
use reasonembed_synth::config::{Backend, LlmConfig};
use reasonembed_synth::llm::openai::Structured;
use reasonembed_synth::query_reasoning::{Augment, QueryReasoner, bright_sampling};

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

    /// How f32 weights are multiplied on the CPU: high (on CPUs with AMX, each value split into
    /// two bf16 values, three bf16 products per product: about twice as fast, vectors measured
    /// within 1e-9 of a cosine of 1 to highest's; elsewhere as highest), or highest (IEEE f32
    /// products, as PyTorch by default). The two never share a cache or an index.
    #[arg(long, value_enum, default_value_t = PrecisionArg::High)]
    pub matmul_precision: PrecisionArg,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum PrecisionArg {
    Highest,
    High,
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
            matmul_precision: match self.matmul_precision {
                PrecisionArg::Highest => MatmulPrecision::Highest,
                PrecisionArg::High => MatmulPrecision::High,
            },
            ..Default::default()
        })
    }
}

/// The LLM of a command that asks one (query reasoning, refine): embedded or served.
#[derive(clap::Args, Debug, Clone)]
pub struct LlmArgs {
    /// The LLM: a .gguf file or a built-in LLM (smollm2) run embedded, or with --llm-url the
    /// model name the server serves.
    #[arg(long, value_name = "MODEL", default_value = reasonembed_models::source::DEFAULT_LLM)]
    pub llm_model: String,
    /// An OpenAI-compatible server (…/v1) instead of the embedded LLM.
    #[arg(long, value_name = "URL")]
    pub llm_url: Option<String>,
    /// The environment variable holding the server's API key.
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    pub llm_api_key_env: String,
    /// The server's structured-output option, to hold a verdict to its format: none,
    /// llama-server (GBNF grammar), vllm, vllm-legacy or sglang (regex).
    #[arg(long, value_name = "SERVER", default_value = "none", value_parser = structured)]
    pub llm_structured: Structured,
}

fn structured(name: &str) -> Result<Structured, String> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| "expected none, llama-server, vllm, vllm-legacy or sglang".into())
}

impl LlmArgs {
    /// The LLM these flags name, loaded, with its identity key.
    pub fn load(&self) -> Result<(std::sync::Arc<dyn reasonembed_synth::llm::Llm>, String)> {
        let config = LlmConfig {
            backend: if self.llm_url.is_some() {
                Backend::Openai
            } else {
                Backend::Local
            },
            model: self.llm_model.clone(),
            base_urls: self.llm_url.iter().cloned().collect(),
            api_key_env: self.llm_api_key_env.clone(),
            structured: self.llm_structured,
            ..LlmConfig::default()
        };
        let identity = reasonembed_synth::llm_identity(&config)?;
        Ok((reasonembed_synth::build_llm(&config)?, identity))
    }
}

/// Query-time reasoning: an LLM reasons about each query (BRIGHT's reasoning
/// prompt) and its answer is what gets retrieved with.
#[derive(clap::Args, Debug, Clone)]
pub struct ReasonArgs {
    /// Let an LLM reason about each query first; its answer replaces the query, as in BRIGHT's
    /// reasoning-query configs. Answers are cached and a killed run resumes.
    #[arg(long)]
    pub reason: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Longest reasoning, in tokens (BRIGHT: 2048); a longer one is cut there and still used.
    #[arg(long, value_name = "N", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    pub reason_max_tokens: u64,
    /// What replaces the query: the reasoning alone (BRIGHT), or the query followed by it.
    #[arg(long, value_enum, default_value_t = AugmentArg::Reasoning)]
    pub reason_augment: AugmentArg,
    /// Where reasoning answers are cached [default: <cache>/reasoning].
    #[arg(long, value_name = "DIR")]
    pub reason_cache: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AugmentArg {
    Reasoning,
    QueryAndReasoning,
}

impl ReasonArgs {
    /// The reasoner these flags ask for (none without --reason); loads the LLM.
    pub fn reasoner(&self) -> Result<Option<QueryReasoner>> {
        if !self.reason {
            return Ok(None);
        }
        let (llm, identity) = self.llm.load()?;
        let augment = match self.reason_augment {
            AugmentArg::Reasoning => Augment::Reasoning,
            AugmentArg::QueryAndReasoning => Augment::QueryAndReasoning,
        };
        let max_tokens = usize::try_from(self.reason_max_tokens).unwrap_or(usize::MAX);
        Ok(Some(QueryReasoner::new(
            llm,
            identity,
            bright_sampling(max_tokens),
            augment,
            &self
                .reason_cache
                .clone()
                .unwrap_or_else(|| reasonembed_models::source::cache_dir().join("reasoning")),
        )))
    }
}

/// The reasoner as the evaluator's query rewriter.
pub struct Reasoning(pub QueryReasoner);

impl QueryRewriter for Reasoning {
    fn rewrite(&self, queries: &[String], progress: &mut dyn Progress) -> Result<Vec<String>, String> {
        self.0.reason(queries, progress).map_err(|e| e.to_string())
    }

    fn describe(&self) -> serde_json::Value {
        self.0.describe()
    }
}
