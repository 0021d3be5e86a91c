//! An embedded chat LLM: a GGUF file (Llama, Qwen2 or Qwen3 architecture) run
//! by candle's quantized models, with the tokenizer rebuilt from the file's
//! metadata and its own chat template applied, so `synth` needs no server.
//!
//! One model answers one call at a time (it owns a single KV cache); a
//! stage's concurrency is therefore 1 with this backend.

use std::fs::File;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as Sampler};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::decode::{self, Model, Task, Vocabulary};
use super::template::ChatTemplate;
use super::{Completion, Llm, LlmError, Request, Sampling};

/// GGUF token types that are control or user-defined tokens: matched whole
/// in the prompt text (`<|im_start|>` …), never split by BPE.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The split patterns of llama.cpp's BPE pre-tokenizers (`tokenizer.ggml.pre`).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Llama(m) => m.forward(input, position),
            Self::Qwen2(m) => m.forward(input, position),
            Self::Qwen3(m) => m.forward(input, position),
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Self::Llama(m) => m.clear_kv_cache(),
            Self::Qwen2(m) => m.clear_kv_cache(),
            Self::Qwen3(m) => m.clear_kv_cache(),
        }
    }
}

pub struct LocalLlm {
    name: String,
    weights: Mutex<Weights>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    bos: Option<u32>,
    stop: Vec<u32>,
    context: usize,
    device: Device,
    /// Every token's text, built on the first constrained call.
    token_texts: OnceLock<Vec<String>>,
}

/// The weights run from position 0 of a fresh KV cache.
struct Running<'w> {
    weights: &'w mut Weights,
    device: &'w Device,
    position: usize,
}

impl Model for Running<'_> {
    fn feed(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let input = Tensor::new(tokens, self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, self.position)?.squeeze(0)?;
        self.position += tokens.len();
        Ok(logits)
    }
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> LlmError {
    LlmError::Permanent(format!("{}: {message}", path.display()))
}

impl LocalLlm {
    /// Loads a GGUF chat model on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, LlmError> {
        let mut file = File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")))?;
        let content = Content::read(&mut file).map_err(|e| invalid(path, format!("not a GGUF file: {e}")))?;
        let meta = &content.metadata;
        let string = |key: &str| meta.get(key).and_then(|v| v.to_string().ok()).cloned();
        let architecture = string("general.architecture").ok_or_else(|| invalid(path, "no general.architecture"))?;
        let context = meta
            .get(&format!("{architecture}.context_length"))
            .and_then(|v| v.to_u32().ok())
            .map_or(4096, |v| v as usize);
        let tokenizer = gguf_tokenizer(path, &content)?;
        let token_id = |key: &str| meta.get(key).and_then(|v| v.to_u32().ok());
        let token_text = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
        let bos = token_id("tokenizer.ggml.bos_token_id");
        let eos = token_id("tokenizer.ggml.eos_token_id");
        let template = ChatTemplate::new(
            string("tokenizer.chat_template").as_deref(),
            &token_text(bos),
            &token_text(eos),
        )
        .map_err(|e| invalid(path, e))?;
        // Chat models end a turn with their own marker, which is not always
        // the EOS of the metadata.
        let mut stop: Vec<u32> = eos.into_iter().collect();
        for marker in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<|end_of_text|>",
            "<end_of_turn>",
        ] {
            stop.extend(tokenizer.token_to_id(marker));
        }
        let add_bos = meta
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let weights = match architecture.as_str() {
            "llama" => Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(content, &mut file, device).map_err(|e| invalid(path, e))?,
            ),
            "qwen2" => Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device).map_err(|e| invalid(path, e))?,
            ),
            "qwen3" => Weights::Qwen3(
                quantized_qwen3::ModelWeights::from_gguf(content, &mut file, device).map_err(|e| invalid(path, e))?,
            ),
            other => {
                return Err(invalid(
                    path,
                    format!("architecture '{other}' is not supported (llama, qwen2, qwen3)"),
                ));
            }
        };
        Ok(Self {
            name: model_name(path),
            weights: Mutex::new(weights),
            tokenizer,
            template,
            bos: bos.filter(|_| add_bos),
            stop,
            context,
            device: device.clone(),
            token_texts: OnceLock::new(),
        })
    }

    /// The prompt text the model's chat template makes of `messages`.
    pub fn prompt_text(&self, messages: &[super::Message]) -> Result<String, LlmError> {
        self.template.render(messages).map_err(LlmError::Permanent)
    }

    /// The prompt's token ids after the chat template (and any prefill).
    pub fn prompt_ids(&self, request: &Request) -> Result<Vec<u32>, LlmError> {
        let mut text = self.prompt_text(request.messages)?;
        text.push_str(request.sampling.prefill.as_deref().unwrap_or(""));
        let mut ids = self.encode(&text)?;
        if let Some(bos) = self.bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Token ids of `text` with special tokens matched whole and no BOS added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlmError::Permanent(format!("cannot tokenise the prompt: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The answer's tokens, whether it ended (a stop token or a verdict)
    /// rather than running out of `max_tokens` or context, and whether its
    /// verdict was forced.
    fn generate(&self, prompt: &[u32], request: &Request) -> Result<decode::Decoded, LlmError> {
        let sampling = request.sampling;
        let mut weights = self.weights.lock().unwrap_or_else(|e| e.into_inner());
        weights.clear_kv_cache();
        let mut model = Running {
            weights: &mut weights,
            device: &self.device,
            position: 0,
        };
        let task = Task {
            prompt,
            prefill: sampling.prefill.as_deref().unwrap_or(""),
            budget: sampling.max_tokens.min(self.context.saturating_sub(prompt.len())),
            stop: &self.stop,
            format: request.answer,
        };
        let mut sampler = LogitsProcessor::from_sampling(request.seed, sampler(sampling));
        let decoded = decode::decode(&mut model, self, &mut sampler, &task);
        weights.clear_kv_cache();
        decoded
    }
}

impl Vocabulary for LocalLlm {
    fn tokens(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.encode(text)
    }

    fn text(&self, tokens: &[u32]) -> Result<String, LlmError> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| LlmError::Permanent(format!("cannot decode the answer: {e}")))
    }

    fn token_texts(&self) -> &[String] {
        self.token_texts.get_or_init(|| {
            // Special tokens keep their marker text, which no verdict begins with.
            (0..self.tokenizer.get_vocab_size(true) as u32)
                .map(|id| self.tokenizer.decode(&[id], false).unwrap_or_default())
                .collect()
        })
    }
}

impl Llm for LocalLlm {
    fn name(&self) -> &str {
        &self.name
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn chat(&self, request: &Request) -> Result<Completion, LlmError> {
        let prompt = self.prompt_ids(request)?;
        if prompt.len() >= self.context {
            return Err(LlmError::Permanent(format!(
                "the prompt has {} tokens, the model's context is {}",
                prompt.len(),
                self.context
            )));
        }
        let decoded = self.generate(&prompt, request)?;
        let text = self.text(&decoded.tokens)?;
        Ok(Completion {
            text: super::with_prefill(request.sampling.prefill.as_deref(), text),
            prompt_tokens: prompt.len(),
            completion_tokens: decoded.tokens.len(),
            truncated: !decoded.ended,
            forced: decoded.forced,
        })
    }
}

fn sampler(s: &Sampling) -> Sampler {
    let temperature = s.temperature;
    if temperature <= 1e-7 {
        return Sampler::ArgMax;
    }
    match (s.top_k, s.top_p) {
        (Some(k), Some(p)) => Sampler::TopKThenTopP { k, p, temperature },
        (Some(k), None) => Sampler::TopK { k, temperature },
        (None, Some(p)) => Sampler::TopP { p, temperature },
        (None, None) => Sampler::All { temperature },
    }
}

fn model_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned())
}

/// Rebuilds the byte-level BPE tokenizer stored in GGUF metadata.
fn gguf_tokenizer(path: &Path, content: &Content) -> Result<Tokenizer, LlmError> {
    let meta = &content.metadata;
    let kind = meta.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok());
    if kind.map(String::as_str) != Some("gpt2") {
        return Err(invalid(
            path,
            format!("tokenizer model {kind:?} is not supported (byte-level BPE, 'gpt2', only)"),
        ));
    }
    let strings = |key: &str| -> Result<Vec<String>, LlmError> {
        let values = meta
            .get(key)
            .and_then(|v| v.to_vec().ok())
            .ok_or_else(|| invalid(path, format!("no {key} in the metadata")))?;
        values
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| invalid(path, format!("{key}: {e}"))))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| invalid(path, format!("malformed merge '{m}'")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(false)
        .build()
        .map_err(|e| invalid(path, format!("cannot build the BPE tokenizer: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = meta
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre).map_err(|e| invalid(path, e))?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let types: Vec<i32> = meta
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default();
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, CONTROL | USER_DEFINED))
        .map(|(token, _)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| invalid(path, format!("cannot register the special tokens: {e}")))?;
    Ok(tokenizer)
}

/// llama.cpp's pre-tokenizer for a `tokenizer.ggml.pre` value, before the
/// byte-level mapping.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, String> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    match pre {
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_SPLIT),
        // SmolLM splits digits one by one before GPT-2's pattern.
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into()),
        _ => Ok(ByteLevel::new(false, true, true).into()),
    }
}
