//! The embedding model: tokenizer → backbone → pooling → optional L2
//! normalisation, configured from a model folder and the caller's options.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::Serialize;

use crate::backbone::{Architecture, Backbone, BackboneConfig};
use crate::batch::{Attention, PaddingSide, TokenBatch};
use crate::encode::{
    EncodeOptions, EncodeSettings, MAX_CHARS_PER_TOKEN, Prompt, cut_chars, default_prompt_name, with_instruction,
};
use crate::error::{Error, Result};
use crate::folder::ModelFolder;
use crate::ops::Mode;
use crate::params::{self, Trainable};
use crate::pooling::{Pooling, l2_normalize, l2_normalize_vec};
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
    /// Which code runs on the CPU (the packed path by default).
    pub kernels: Kernels,
    /// How the packed path multiplies f32 weights.
    pub matmul_precision: MatmulPrecision,
}

/// How the packed path multiplies f32 matrices, named as PyTorch's
/// `torch.set_float32_matmul_precision` names its settings. bf16 weights,
/// the reference kernels and training do not look at it.
///
/// The default is `High`: on AMX it embeds about twice as fast as IEEE
/// products, and its vectors differ from theirs far below the f32 parity bar
/// (cosine ≥ 0.99999 to sentence-transformers). Like every kernel choice it
/// is part of the identity key, so caches and indexes never mix the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MatmulPrecision {
    /// IEEE f32 products (MKL's SGEMM), as PyTorch's default.
    Highest,
    /// On CPUs with AMX: each f32 value as the sum of two bf16 values
    /// (`hi + lo`), each product as three bf16 products summed in f32
    /// (`hi·hi + lo·hi + hi·lo`) on AMX tiles, so about 16 of 24 significant
    /// bits per product (PyTorch's "high" on GPUs). About twice SGEMM's rate;
    /// vectors measured within 1.5·10⁻¹⁰ of a cosine of 1 to `Highest`'s
    /// (MiniLM, the Qwen3-0.6B shape). Elsewhere the same as `Highest`.
    #[default]
    High,
}

/// Which code runs on the CPU, for inference and for training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The packed path ([`crate::packed`]: no padding, MKL GEMMs, fused
    /// element-wise passes) for inference, and backward passes written by
    /// hand on it ([`crate::hand`]) for training, where they cover the
    /// model; else `Reference`.
    #[default]
    Fast,
    /// The backbone's candle ops, differentiated by candle's autograd when
    /// training.
    Reference,
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
    /// The inference code path (`packed`, or `candle`) and the CPU math
    /// library (`+mkl`): they differ in the last digits of a vector.
    pub kernels: String,
    /// The LoRA adapter folder applied, if any.
    pub adapter: Option<String>,
}

/// The embeddings of many texts, row-major `[n, dim]`, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub data: Vec<f32>,
    pub dim: usize,
    /// Tokens processed by this call, special tokens included, padding excluded.
    pub tokens: usize,
    /// Rows served from a cache rather than embedded by this call.
    pub reused: usize,
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
    /// The tokenizer at the model's max length; others are derived per length.
    tokenizer_base: TextTokenizer,
    tokenizers: Mutex<HashMap<usize, Arc<TextTokenizer>>>,
    pooling: Pooling,
    normalize: bool,
    padding_side: PaddingSide,
    pad_id: u32,
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
    trainable_vars: VarMap,
    device: Device,
    max_positions: Option<usize>,
    weight_files: Vec<PathBuf>,
    /// Every file of the checkpoint that decides a vector, for [`Embedder::identity`].
    model_files: Vec<PathBuf>,
    adapter_files: Vec<PathBuf>,
    identity: OnceLock<String>,
    kernels: Kernels,
    info: ModelInfo,
}

impl Embedder {
    /// Loads a model given as a folder, a built-in name or a Hub id.
    pub fn from_spec(spec: &str, options: EmbedderOptions) -> Result<Self> {
        let folder = ModelFolder::open(&crate::source::resolve(spec)?)?;
        Self::load(&folder, options)
    }

    pub fn load(folder: &ModelFolder, options: EmbedderOptions) -> Result<Self> {
        crate::device::configure_cpu_threads();
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
        backbone.set_matmul_precision(options.matmul_precision);
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
        let packed = runs_packed(options.kernels, &device, &backbone, &trainable_vars);
        let kernels = format!(
            "{}{}{}",
            if packed { "packed" } else { "candle" },
            if crate::device::cpu_blas().is_some() {
                "+mkl"
            } else {
                ""
            },
            // Part of the identity key: vectors differ between kernels.
            match (packed && crate::device::amx(), dtype, options.matmul_precision) {
                (true, DType::BF16, _) => "+amx",
                (true, DType::F32, MatmulPrecision::High) => "+amx-bf16x3",
                _ => "",
            }
        );
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
            kernels,
            adapter: options.adapter.as_ref().map(|d| d.display().to_string()),
        };
        let adapter_files = options
            .adapter
            .as_ref()
            .map(|d| crate::adapter::files(d))
            .unwrap_or_default();
        Ok(Self {
            backbone,
            tokenizers: Mutex::new(HashMap::new()),
            tokenizer_base: tokenizer,
            pooling,
            normalize,
            padding_side,
            pad_id,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            trainable_vars,
            device,
            max_positions,
            weight_files: folder.weight_files.clone(),
            model_files: folder.identity_files(),
            adapter_files,
            identity: OnceLock::new(),
            kernels: options.kernels,
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The identity key of this model (checkpoint and adapter bytes, settings,
    /// code version); computed once. See [`crate::identity`]. It describes the
    /// weights as read from their files: vectors of a model whose weights are
    /// being trained in memory must not be cached under it (the trainer's
    /// evaluations use no cache).
    pub fn identity(&self) -> Result<&str> {
        if let Some(key) = self.identity.get() {
            return Ok(key);
        }
        let mut settings = serde_json::to_value(&self.info).expect("model info serialises");
        // Where the files live does not change a vector; their bytes do.
        // Normalisation is chosen per call (`EncodeSettings`), so keys carry it there.
        if let Some(o) = settings.as_object_mut() {
            o.remove("path");
            o.remove("adapter");
            o.remove("normalize");
        }
        let key = crate::identity::identity_key(&self.model_files, &self.adapter_files, &settings)?;
        Ok(self.identity.get_or_init(|| key))
    }

    /// The checkpoint's weight files.
    pub fn weight_files(&self) -> &[PathBuf] {
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

    /// What `options` resolve to for this model: the prompt (sentence-
    /// transformers' rules, see [`crate::encode`]), the max length and
    /// whether vectors are normalised.
    pub fn resolve(&self, options: &EncodeOptions) -> Result<EncodeSettings> {
        let named = |name: &str| {
            self.prompts.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = self.prompts.keys().map(String::as_str).collect();
                Error::Input(format!(
                    "the model has no prompt named '{name}' (it has: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })
        };
        let prompt = match &options.prompt {
            Prompt::Auto => {
                match default_prompt_name(options.side, &self.prompts, self.default_prompt_name.as_deref()) {
                    Some(name) => named(name)?,
                    None => String::new(),
                }
            }
            Prompt::None => String::new(),
            Prompt::Name(name) => named(name)?,
            Prompt::Text(text) => text.clone(),
            Prompt::Instruction(instruction) => with_instruction(instruction, ""),
        };
        let max_length = options.max_length.unwrap_or(self.info.max_length);
        check_max_length(max_length, self.max_positions)?;
        Ok(EncodeSettings {
            prompt,
            max_length,
            normalize: options.normalize.unwrap_or(self.normalize),
        })
    }

    /// Token ids of each text under `settings`: the prompt in front, very long
    /// texts cut first (as text-embeddings-inference does), truncated to the
    /// max length. Without `truncate`, a text longer than the max length is an
    /// [`Error::TooLong`] instead. A text that yields no token is an error.
    pub fn prepare(&self, texts: &[&str], settings: &EncodeSettings, truncate: bool) -> Result<Vec<Vec<u32>>> {
        let max_chars = settings.max_length.saturating_mul(MAX_CHARS_PER_TOKEN);
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{}", settings.prompt, cut_chars(t, max_chars)))
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        if !truncate {
            let counts = self.tokenizer(usize::MAX / 2)?.encode(&refs)?;
            if let Some(index) = counts.iter().position(|ids| ids.len() > settings.max_length) {
                return Err(Error::TooLong {
                    index,
                    tokens: counts[index].len(),
                    max: settings.max_length,
                });
            }
        }
        let ids = self.tokenizer(settings.max_length)?.encode(&refs)?;
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            return Err(Error::Input(format!(
                "text {i} ({:?}) yields no token for this model",
                texts[i]
            )));
        }
        Ok(ids)
    }

    /// Token ids of each text as it is (no prompt), at the model's max length.
    /// An empty text is fine where the model adds special tokens (BERT's
    /// `[CLS] [SEP]`, as sentence-transformers embeds it).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let settings = self.resolve(&EncodeOptions {
            prompt: Prompt::None,
            ..Default::default()
        })?;
        self.prepare(texts, &settings, true)
    }

    /// The tokenizer truncating at `max_length`, made once per length.
    fn tokenizer(&self, max_length: usize) -> Result<Arc<TextTokenizer>> {
        let mut by_length = self.tokenizers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = by_length.get(&max_length) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.tokenizer_base.with_max_length(max_length)?);
        by_length.insert(max_length, t.clone());
        Ok(t)
    }

    /// Pads `seqs` into one batch.
    pub fn batch(&self, seqs: &[&[u32]]) -> Result<TokenBatch> {
        Ok(TokenBatch::new(seqs, self.pad_id, self.padding_side, &self.device)?)
    }

    /// Pooled (and, if the model normalises, normalised) embeddings `[b, dim]`
    /// of one batch; differentiable in [`Mode::Train`].
    pub fn embed_batch(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        self.normalize_pooled(&self.pool(batch, mode)?)
    }

    /// Pooled vectors as the model gives them: normalised if it normalises;
    /// differentiable.
    pub fn normalize_pooled(&self, pooled: &Tensor) -> Result<Tensor> {
        Ok(if self.normalize {
            l2_normalize(pooled)?
        } else {
            pooled.clone()
        })
    }

    /// Whether training computes its gradients by hand ([`crate::hand`]):
    /// on the CPU in f32, under [`Kernels::Fast`], for full fine-tuning or
    /// LoRA. Otherwise it differentiates the backbone's candle ops.
    #[cfg(feature = "mkl")]
    pub fn trains_by_hand(&self) -> bool {
        self.kernels == Kernels::Fast
            && self.device.is_cpu()
            && !self.trainable_vars.all_vars().is_empty()
            && self.backbone.trains_by_hand()
    }

    /// Where [`Embedder::trains_by_hand`]: the pooled vectors `[b, hidden]`
    /// of one batch in training mode (dropout on, before
    /// [`Embedder::normalize_pooled`]) and the tape of their forward pass.
    #[cfg(feature = "mkl")]
    pub fn pool_taped(&self, batch: &TokenBatch) -> Result<(Tensor, crate::hand::Tape)> {
        self.check_by_hand()?;
        let (rows, tape) = self.backbone.forward_taped(batch)?;
        let dim = self.backbone.hidden_size();
        let pooled = self.pooling.pool_packed(&rows, batch.lengths(), dim);
        Ok((Tensor::from_vec(pooled, (batch.len(), dim), &self.device)?, tape))
    }

    /// Adds to `grads` the gradient of every trainable parameter, given that
    /// of the pooled vectors that [`Embedder::pool_taped`] gave with `tape`.
    #[cfg(feature = "mkl")]
    pub fn backward_taped(
        &self,
        tape: crate::hand::Tape,
        d_pooled: &Tensor,
        grads: &mut crate::hand::HandGrads,
    ) -> Result<()> {
        self.check_by_hand()?;
        let d = d_pooled.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let dy = self
            .pooling
            .pool_packed_backward(&d, tape.lengths(), self.backbone.hidden_size());
        Ok(self.backbone.backward_taped(tape, dy, grads)?)
    }

    #[cfg(feature = "mkl")]
    fn check_by_hand(&self) -> Result<()> {
        if self.trains_by_hand() {
            Ok(())
        } else {
            Err(Error::Input("this model does not train by hand".into()))
        }
    }

    fn pool(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Inference && runs_packed(self.kernels, &self.device, &self.backbone, &self.trainable_vars) {
            let rows = self.backbone.forward_packed(batch)?;
            let dim = self.backbone.hidden_size();
            let pooled = self.pooling.pool_packed(&rows, batch.lengths(), dim);
            return Ok(Tensor::from_vec(pooled, (batch.len(), dim), &self.device)?);
        }
        let hidden = self.backbone.forward(batch, mode)?;
        Ok(self.pooling.pool(&hidden, batch)?.to_dtype(DType::F32)?)
    }

    /// Embeds token sequences (from [`Embedder::prepare`]) for inference:
    /// sorted by length so that a batch of `batch_size` holds texts of similar
    /// length; rows come back in input order, normalised when `normalize`. A
    /// non-finite vector is an error, never a result.
    /// `progress(texts_done, tokens_done)` is called after every batch.
    pub fn embed_tokens(
        &self,
        seqs: &[&[u32]],
        normalize: bool,
        batch_size: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let dim = self.dimensions();
        let mut data = vec![0f32; seqs.len() * dim];
        let (mut done, mut tokens) = (0, 0);
        for chunk in order.chunks(batch_size.max(1)) {
            let batch_seqs: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i]).collect();
            let batch = self.batch(&batch_seqs)?;
            let pooled = self.pool(&batch, Mode::Inference)?;
            for (&i, mut row) in chunk.iter().zip(pooled.to_vec2::<f32>()?) {
                if normalize {
                    l2_normalize_vec(&mut row);
                }
                if let Some(bad) = row.iter().find(|x| !x.is_finite()) {
                    return Err(Error::NonFinite(format!(
                        "input {i} embeds to a non-finite value ({bad}); the weights or the precision are broken"
                    )));
                }
                data[i * dim..(i + 1) * dim].copy_from_slice(&row);
            }
            done += chunk.len();
            tokens += batch.real_tokens();
            progress(done, tokens);
        }
        Ok(Embeddings {
            data,
            dim,
            tokens,
            reused: 0,
        })
    }

    /// Embeds `texts` under `options`: the whole encode contract (prompt,
    /// truncation, length-sorted batches, normalisation) in one call.
    /// `progress(texts_done, tokens_done)` is called after every batch.
    pub fn encode(
        &self,
        texts: &[&str],
        options: &EncodeOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let settings = self.resolve(options)?;
        let seqs = self.prepare(texts, &settings, true)?;
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        self.embed_tokens(&refs, settings.normalize, options.batch_size, progress)
    }
}

/// Whether inference takes the packed path: on the CPU, for a model it
/// covers, with frozen weights (it keeps packed copies of them; a model in
/// training keeps the candle path, whose evaluations see every update).
fn runs_packed(kernels: Kernels, device: &Device, backbone: &Backbone, trainable: &VarMap) -> bool {
    kernels == Kernels::Fast && device.is_cpu() && trainable.all_vars().is_empty() && backbone.packs()
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
