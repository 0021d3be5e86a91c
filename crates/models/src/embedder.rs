//! The embedding model: tokenizer → backbone → pooling → optional L2
//! normalisation, configured from a model folder and the caller's options.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::Serialize;

use crate::backbone::{Architecture, Backbone, BackboneConfig};
use crate::batch::{Attention, PaddingSide, TokenBatch};
use crate::error::{Error, Result};
use crate::folder::ModelFolder;
use crate::nn::Mode;
use crate::params::{self, Trainable};
use crate::pooling::{Pooling, l2_normalize};
use crate::tokenizer::{TextTokenizer, TokenizerSettings, appends_eos};

/// When to append the EOS token to every text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EosPolicy {
    /// As the checkpoint says: when `tokenizer_config.json` sets
    /// `add_eos_token` and the tokenizer does not already add it.
    #[default]
    Auto,
    Always,
    Never,
}

/// Overrides of what the model folder specifies; `None` keeps its choice.
#[derive(Debug, Clone, Default)]
pub struct EmbedderOptions {
    pub max_length: Option<usize>,
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub padding_side: Option<PaddingSide>,
    pub attention: Option<Attention>,
    pub eos: EosPolicy,
    pub dtype: Option<DType>,
    pub device: Option<Device>,
    pub trainable: Trainable,
    /// A LoRA adapter in the PEFT layout to apply (inference).
    pub adapter: Option<std::path::PathBuf>,
}

/// The settings an embedder ended up with, for reports and `/info`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub dimensions: usize,
    pub max_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
    pub padding_side: PaddingSide,
    pub attention: Attention,
    pub append_eos: bool,
    pub dtype: String,
}

/// The embeddings of many texts, row-major `[n, dim]`, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub data: Vec<f32>,
    pub dim: usize,
    /// Tokens processed, special tokens included, padding excluded.
    pub tokens: usize,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

pub struct Embedder {
    backbone: Backbone,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
    padding_side: PaddingSide,
    pad_id: u32,
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
    trainable_vars: VarMap,
    device: Device,
    max_positions: Option<usize>,
    /// The tokenizer without truncation, made on first use (to measure inputs).
    untruncated: std::sync::OnceLock<TextTokenizer>,
    weight_files: Vec<std::path::PathBuf>,
    info: ModelInfo,
}

impl Embedder {
    /// Loads a model given as a folder, a built-in name or a Hub id.
    pub fn from_spec(spec: &str, options: EmbedderOptions) -> Result<Self> {
        let folder = ModelFolder::open(&crate::source::resolve(spec)?)?;
        Self::load(&folder, options)
    }

    pub fn load(folder: &ModelFolder, options: EmbedderOptions) -> Result<Self> {
        let arch = folder.architecture;
        let config_err = |message: String| Error::Invalid {
            path: folder.config_path(),
            message,
        };
        let config = BackboneConfig::parse(arch, &folder.config).map_err(config_err)?;
        let st = folder.sentence_transformers.clone().unwrap_or_default();
        let device = options.device.clone().unwrap_or(Device::Cpu);
        let dtype = options.dtype.unwrap_or(DType::F32);

        let trainable = match &options.adapter {
            Some(dir) => Trainable::Lora(crate::adapter::read_config(dir)?),
            None => options.trainable.clone(),
        };
        let (weights, trainable_vars) = params::open(&folder.weight_files, &trainable, dtype, &device)?;
        let mut backbone = Backbone::load(&weights, &config).map_err(|e| Error::Weights {
            path: folder.weight_files[0].clone(),
            message: e.to_string(),
        })?;
        if let Some(attention) = options.attention {
            backbone.set_attention(attention).map_err(Error::Input)?;
        }
        if let Some(dir) = &options.adapter {
            let vars = trainable_vars.data().lock().expect("VarMap lock poisoned");
            let mut named: Vec<(String, Var)> = vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            crate::adapter::load_weights(dir, &named, &device)?;
        }

        let tokenizer = TextTokenizer::from_file(&folder.tokenizer_file)?;
        let eos_id = eos_token_id(folder, &tokenizer);
        let append_eos = match options.eos {
            EosPolicy::Never => None,
            EosPolicy::Always => Some(eos_id.ok_or_else(|| Error::Invalid {
                path: folder.tokenizer_file.clone(),
                message: "no EOS token is defined (tokenizer_config.json eos_token or config.json eos_token_id)".into(),
            })?),
            EosPolicy::Auto => {
                eos_id.filter(|&id| folder.tokenizer_config.add_eos_token == Some(true) && !appends_eos(&tokenizer, id))
            }
        };
        let position_limit = BackboneConfig::max_position_embeddings(&folder.config);
        // Absolute position embeddings cap BERT; rotary decoders extrapolate.
        let max_positions = position_limit.filter(|_| arch == Architecture::Bert);
        let default_max = st
            .max_seq_length
            .or(folder.tokenizer_config.model_max_length)
            .or(position_limit)
            .unwrap_or(512);
        let max_length = options.max_length.unwrap_or(default_max);
        check_max_length(max_length, max_positions)?;
        let tokenizer = TextTokenizer::new(
            tokenizer,
            TokenizerSettings {
                max_length,
                append_eos,
                lowercase: st.do_lower_case,
            },
        )?;

        let pooling = options.pooling.or(st.pooling).unwrap_or(if arch.is_decoder() {
            Pooling::LastToken
        } else {
            Pooling::Mean
        });
        // sentence-transformers folders say whether they normalise; elsewhere
        // we normalise, as embedding search expects.
        let normalize = options
            .normalize
            .unwrap_or(folder.sentence_transformers.as_ref().is_none_or(|s| s.normalize));
        let padding_side =
            options
                .padding_side
                .or(folder.tokenizer_config.padding_side)
                .unwrap_or(if arch.is_decoder() {
                    PaddingSide::Left
                } else {
                    PaddingSide::Right
                });
        let pad_id = folder.config_token_id("pad_token_id").or(eos_id).unwrap_or(0);
        let info = ModelInfo {
            path: folder.root.display().to_string(),
            architecture: format!("{arch:?}").to_lowercase(),
            dimensions: backbone.hidden_size(),
            max_length,
            pooling,
            normalize,
            padding_side,
            attention: backbone.attention(),
            append_eos: append_eos.is_some(),
            dtype: format!("{dtype:?}").to_lowercase(),
        };
        Ok(Self {
            backbone,
            tokenizer,
            pooling,
            normalize,
            padding_side,
            pad_id,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            trainable_vars,
            device,
            max_positions,
            untruncated: std::sync::OnceLock::new(),
            weight_files: folder.weight_files.clone(),
            info,
        })
    }

    /// Changes the maximum tokens per text (e.g. between the query and the
    /// document side of an evaluation).
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        check_max_length(max_length, self.max_positions)?;
        self.tokenizer = self.tokenizer.with_max_length(max_length)?;
        self.untruncated = std::sync::OnceLock::new();
        self.info.max_length = max_length;
        Ok(())
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The checkpoint files, for identifying the model (e.g. in caches).
    pub fn weight_files(&self) -> &[std::path::PathBuf] {
        &self.weight_files
    }

    pub fn dimensions(&self) -> usize {
        self.info.dimensions
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The sentence-transformers prompts of the folder (`query`, `document`, …).
    pub fn prompts(&self) -> &BTreeMap<String, String> {
        &self.prompts
    }

    pub fn default_prompt_name(&self) -> Option<&str> {
        self.default_prompt_name.as_deref()
    }

    /// Parameters that receive gradients, by checkpoint (or adapter) name.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let vars = self.trainable_vars.data().lock().expect("VarMap lock poisoned");
        let mut out: Vec<_> = vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Folds LoRA adapters into the base weights.
    pub fn merge_lora(&mut self) -> Result<()> {
        Ok(self.backbone.merge_lora()?)
    }

    /// Token ids of each text. An empty text is fine where the model adds
    /// special tokens (BERT's `[CLS] [SEP]`, as sentence-transformers embeds
    /// it); a text that yields no token at all is an error.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let ids = self.tokenizer.encode(texts)?;
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            return Err(Error::Input(format!(
                "text {i} ({:?}) yields no token for this model",
                texts[i]
            )));
        }
        Ok(ids)
    }

    /// How many tokens each text has before truncation (special tokens included).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        let tokenizer = match self.untruncated.get() {
            Some(t) => t,
            None => {
                let t = self.tokenizer.with_max_length(usize::MAX / 2)?;
                self.untruncated.get_or_init(|| t)
            }
        };
        Ok(tokenizer.encode(texts)?.iter().map(Vec::len).collect())
    }

    /// Pads `seqs` into one batch.
    pub fn batch(&self, seqs: &[&[u32]]) -> Result<TokenBatch> {
        Ok(TokenBatch::new(seqs, self.pad_id, self.padding_side, &self.device)?)
    }

    /// Pooled (and, if configured, normalised) embeddings `[b, dim]` of one
    /// batch; differentiable in [`Mode::Train`].
    pub fn embed_batch(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let hidden = self.backbone.forward(batch, mode)?;
        let pooled = self.pooling.pool(&hidden, batch)?.to_dtype(DType::F32)?;
        Ok(if self.normalize { l2_normalize(&pooled)? } else { pooled })
    }

    /// Embeds `texts` in batches of `batch_size`, grouping texts of similar
    /// length to limit padding; rows come back in input order.
    /// `progress(texts_done, tokens_done)` is called after every batch.
    pub fn encode(
        &self,
        texts: &[&str],
        batch_size: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let seqs = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let dim = self.dimensions();
        let mut data = vec![0f32; seqs.len() * dim];
        let (mut done, mut tokens) = (0, 0);
        for chunk in order.chunks(batch_size.max(1)) {
            let batch_seqs: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
            let batch = self.batch(&batch_seqs)?;
            let rows = self.embed_batch(&batch, Mode::Inference)?.to_vec2::<f32>()?;
            for (&i, row) in chunk.iter().zip(rows) {
                data[i * dim..(i + 1) * dim].copy_from_slice(&row);
            }
            done += chunk.len();
            tokens += batch.real_tokens();
            progress(done, tokens);
        }
        Ok(Embeddings { data, dim, tokens })
    }
}

fn check_max_length(max_length: usize, max_positions: Option<usize>) -> Result<()> {
    match max_positions {
        Some(limit) if max_length > limit => Err(Error::Input(format!(
            "max length {max_length} exceeds the model's {limit} position embeddings"
        ))),
        _ => Ok(()),
    }
}

fn eos_token_id(folder: &ModelFolder, tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    folder
        .tokenizer_config
        .eos_token
        .as_deref()
        .and_then(|t| tokenizer.token_to_id(t))
        .or_else(|| folder.config_token_id("eos_token_id"))
}

/// The ReasonEmbed query format: `Instruct: {instruction}\nQuery: {text}`.
pub fn with_instruction(instruction: &str, text: &str) -> String {
    format!("Instruct: {instruction}\nQuery: {text}")
}
