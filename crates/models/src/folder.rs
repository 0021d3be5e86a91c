//! Reading a model folder in the Hugging Face / sentence-transformers layout:
//! `config.json`, `tokenizer.json`, `tokenizer_config.json`, weights in
//! `model.safetensors` or shards listed in `model.safetensors.index.json`, and
//! the sentence-transformers files `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json` and `config_sentence_transformers.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::backbone::Architecture;
use crate::batch::PaddingSide;
use crate::error::{Error, Result, read_json};
use crate::pooling::Pooling;

/// What sentence-transformers would apply on top of the transformer.
#[derive(Debug, Clone, Default)]
pub struct SentenceTransformersConfig {
    pub pooling: Option<Pooling>,
    /// The `Pooling` module's `config.json`.
    pub pooling_config: Option<PathBuf>,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
    pub do_lower_case: bool,
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
}

/// The few `tokenizer_config.json` settings that change embeddings.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    pub add_eos_token: Option<bool>,
    pub eos_token: Option<String>,
    pub padding_side: Option<PaddingSide>,
    pub model_max_length: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ModelFolder {
    /// The folder the user gave.
    pub root: PathBuf,
    /// The folder holding the transformer (the root, or the path of the
    /// sentence-transformers `Transformer` module).
    pub transformer_dir: PathBuf,
    pub config: Value,
    pub architecture: Architecture,
    pub weight_files: Vec<PathBuf>,
    pub tokenizer_file: PathBuf,
    pub tokenizer_config: TokenizerConfig,
    pub sentence_transformers: Option<SentenceTransformersConfig>,
}

#[derive(Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

impl ModelFolder {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::MissingFile {
                path: root.into(),
                hint: "expected a model folder".into(),
            });
        }
        let modules_path = root.join("modules.json");
        let modules: Option<Vec<StModule>> = modules_path.exists().then(|| read_json(&modules_path)).transpose()?;
        let (transformer_dir, st) = match &modules {
            Some(modules) => read_st_modules(root, &modules_path, modules)?,
            None => (root.to_path_buf(), None),
        };
        let config_path = transformer_dir.join("config.json");
        let config: Value = read_json(&config_path)?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architecture = Architecture::from_model_type(model_type).ok_or_else(|| Error::Invalid {
            path: config_path.clone(),
            message: format!(
                "model_type '{model_type}' is not supported (supported: {})",
                Architecture::SUPPORTED
            ),
        })?;
        Ok(Self {
            root: root.into(),
            weight_files: weight_files(&transformer_dir)?,
            tokenizer_file: transformer_dir.join("tokenizer.json"),
            tokenizer_config: read_tokenizer_config(&transformer_dir.join("tokenizer_config.json"))?,
            transformer_dir,
            config,
            architecture,
            sentence_transformers: st,
        })
    }

    /// Every file that decides this model's vectors: weights, tokenizer and
    /// the configuration files that exist.
    pub fn identity_files(&self) -> Vec<PathBuf> {
        let configs = [
            self.transformer_dir.join("config.json"),
            self.transformer_dir.join("tokenizer.json"),
            self.transformer_dir.join("tokenizer_config.json"),
            self.transformer_dir.join("sentence_bert_config.json"),
            self.root.join("modules.json"),
            self.root.join("config_sentence_transformers.json"),
        ];
        let mut files = self.weight_files.clone();
        files.extend(configs.into_iter().filter(|p| p.exists()));
        files.extend(
            self.sentence_transformers
                .as_ref()
                .and_then(|st| st.pooling_config.clone()),
        );
        files
    }

    pub fn config_path(&self) -> PathBuf {
        self.transformer_dir.join("config.json")
    }

    /// An id from `config.json` (`eos_token_id` may be a list; the first counts).
    pub fn config_token_id(&self, key: &str) -> Option<u32> {
        let v = self.config.get(key)?;
        v.as_u64()
            .or_else(|| v.as_array()?.first()?.as_u64())
            .map(|id| id as u32)
    }
}

fn read_st_modules(
    root: &Path,
    modules_path: &Path,
    modules: &[StModule],
) -> Result<(PathBuf, Option<SentenceTransformersConfig>)> {
    let mut st = SentenceTransformersConfig::default();
    let mut transformer_dir = root.to_path_buf();
    for module in modules {
        let kind = module.kind.rsplit('.').next().unwrap_or_default();
        let dir = root.join(&module.path);
        match kind {
            "Transformer" => transformer_dir = dir,
            "Pooling" => {
                let path = dir.join("config.json");
                st.pooling = Some(read_pooling(&path)?);
                st.pooling_config = Some(path);
            }
            "Normalize" => st.normalize = true,
            _ => {
                return Err(Error::Invalid {
                    path: modules_path.into(),
                    message: format!(
                        "sentence-transformers module '{}' is not supported (Transformer, Pooling, Normalize)",
                        module.kind
                    ),
                });
            }
        }
    }
    let bert_config = transformer_dir.join("sentence_bert_config.json");
    if bert_config.exists() {
        let v: Value = read_json(&bert_config)?;
        st.max_seq_length = v.get("max_seq_length").and_then(Value::as_u64).map(|n| n as usize);
        st.do_lower_case = v.get("do_lower_case").and_then(Value::as_bool).unwrap_or(false);
    }
    let st_config = root.join("config_sentence_transformers.json");
    if st_config.exists() {
        let v: Value = read_json(&st_config)?;
        if let Some(prompts) = v.get("prompts").and_then(Value::as_object) {
            st.prompts = prompts
                .iter()
                .filter_map(|(k, p)| Some((k.clone(), p.as_str()?.to_string())))
                .collect();
        }
        st.default_prompt_name = v.get("default_prompt_name").and_then(Value::as_str).map(str::to_string);
    }
    Ok((transformer_dir, Some(st)))
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    let v: Value = read_json(path)?;
    let on = |key: &str| v.get(key).and_then(Value::as_bool).unwrap_or(false);
    let invalid = |message: String| Error::Invalid {
        path: path.into(),
        message,
    };
    if v.get("include_prompt").and_then(Value::as_bool) == Some(false) {
        return Err(invalid("include_prompt = false is not supported".into()));
    }
    let modes = [
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_lasttoken", Some(Pooling::LastToken)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
    ];
    let chosen: Vec<_> = modes.iter().filter(|(key, _)| on(key)).collect();
    match chosen.as_slice() {
        [(_, Some(pooling))] => Ok(*pooling),
        [(key, None)] => Err(invalid(format!("{key} is not supported (cls, mean, last token)"))),
        [] => Err(invalid("no pooling mode is set".into())),
        _ => Err(invalid("several pooling modes are set; only one is supported".into())),
    }
}

fn read_tokenizer_config(path: &Path) -> Result<TokenizerConfig> {
    if !path.exists() {
        return Ok(TokenizerConfig::default());
    }
    let v: Value = read_json(path)?;
    // Special tokens are either plain strings or AddedToken objects.
    let token = |key: &str| {
        let t = v.get(key)?;
        t.as_str().or_else(|| t.get("content")?.as_str()).map(str::to_string)
    };
    let padding_side = match v.get("padding_side").and_then(Value::as_str) {
        Some("left") => Some(PaddingSide::Left),
        Some("right") => Some(PaddingSide::Right),
        _ => None,
    };
    Ok(TokenizerConfig {
        add_eos_token: v.get("add_eos_token").and_then(Value::as_bool),
        eos_token: token("eos_token"),
        padding_side,
        // Tokenizers without a limit store a huge sentinel (1e30) here.
        model_max_length: v
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|n| *n < 1e9)
            .map(|n| n as usize),
    })
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        return Err(Error::MissingFile {
            path: single,
            hint:
                "or model.safetensors.index.json with its shards; convert pytorch_model.bin checkpoints to safetensors"
                    .into(),
        });
    }
    let index: Value = read_json(&index_path)?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Invalid {
            path: index_path.clone(),
            message: "no 'weight_map' object".into(),
        })?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
