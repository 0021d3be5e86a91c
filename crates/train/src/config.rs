//! The training configuration: ReasonEmbed's recipe by default, overridden
//! by a TOML file (`--config train.toml`) and then by command-line flags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::loss::{LossKind, Mapping, Normalization, RedapterConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossName {
    /// Reasoning-intensity-weighted InfoNCE (ReasonEmbed).
    Redapter,
    /// Plain InfoNCE (ReasonEmbed-basic).
    Infonce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finetune {
    Lora,
    Full,
}

/// Every setting of a run. Field names are the TOML keys and, with dashes,
/// the command-line flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The model to start from (folder, built-in name or Hub id).
    pub model: String,
    /// Training files (FlagEmbedding JSONL, one per domain) or folders of them.
    pub data: Vec<PathBuf>,
    /// Where checkpoints, metrics, plots and the trained model go.
    pub output: PathBuf,
    pub loss: LossName,
    pub temperature: f64,
    pub epochs: u64,
    /// Stop after this many steps (0: the whole schedule).
    pub max_steps: u64,
    pub learning_rate: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Queries per batch, unless the records say otherwise (`batch_size`).
    pub batch_size: usize,
    /// Passages per query (1 positive + G − 1 negatives), unless the records say otherwise.
    pub group_size: usize,
    pub query_max_length: usize,
    pub passage_max_length: usize,
    /// Texts per forward pass (ReasonEmbed's `sub_batch_size`).
    pub chunk_size: usize,
    /// Cached-gradient loss (GradCache): memory bounded by one chunk.
    pub grad_cache: bool,
    pub finetune: Finetune,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_target_modules: Vec<String>,
    /// Also write the model with the LoRA adapter merged into its weights.
    pub merge_lora: bool,
    pub redapter_start_step: i64,
    pub redapter_mapping: Mapping,
    pub redapter_clamp_min: f64,
    pub redapter_clamp_max: f64,
    pub redapter_normalization: Normalization,
    /// How an instruction and a query are joined.
    pub query_instruction_format: String,
    /// The instruction for records without a `prompt` ("" for none).
    pub instruction: String,
    /// Drop other copies of a query's positive from its candidates.
    pub no_duplicates: bool,
    /// Save a checkpoint every N steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Skip invalid training records (reported) instead of failing.
    pub skip_invalid: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Weight precision: f32, bf16 or f16 [default: f32 on CPU, bf16 on CUDA].
    /// LoRA adapters and the loss stay in f32.
    pub dtype: Option<String>,
    /// A BEIR folder (qrels/test.tsv) to evaluate on every `eval_every` steps
    /// and at the end; results go to `eval.jsonl`.
    pub eval_data: Option<PathBuf>,
    pub eval_every: u64,
}

impl Default for TrainConfig {
    /// ReasonEmbed's `train.sh` (reasonembed.md §6), on one device.
    fn default() -> Self {
        let redapter = RedapterConfig::default();
        Self {
            model: "minilm".into(),
            data: Vec::new(),
            output: PathBuf::from("runs/reasonembed"),
            loss: LossName::Redapter,
            temperature: 0.02,
            epochs: 1,
            max_steps: 0,
            learning_rate: 1e-4,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 42,
            batch_size: 8,
            group_size: 16,
            query_max_length: 512,
            passage_max_length: 512,
            chunk_size: 4,
            grad_cache: true,
            finetune: Finetune::Lora,
            lora_rank: 32,
            lora_alpha: 64.0,
            lora_dropout: 0.1,
            lora_target_modules: vec!["all-linear".into()],
            merge_lora: false,
            redapter_start_step: redapter.start_step,
            redapter_mapping: redapter.mapping,
            redapter_clamp_min: redapter.clamp_min,
            redapter_clamp_max: redapter.clamp_max,
            redapter_normalization: redapter.normalization,
            query_instruction_format: "Instruct: {}\nQuery: {}".into(),
            instruction: String::new(),
            no_duplicates: false,
            checkpoint_every: 100,
            skip_invalid: false,
            device: "cpu".into(),
            dtype: None,
            eval_data: None,
            eval_every: 0,
        }
    }
}

impl TrainConfig {
    /// Defaults, then `file` (TOML), then `overrides` (a JSON object of the
    /// settings given on the command line).
    pub fn resolve(file: Option<&std::path::Path>, overrides: serde_json::Value) -> Result<Self, String> {
        let mut merged = serde_json::to_value(Self::default()).expect("the defaults serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            overlay(&mut merged, serde_json::to_value(table).map_err(|e| e.to_string())?);
        }
        overlay(&mut merged, overrides);
        serde_json::from_value(merged).map_err(|e| format!("invalid training configuration: {e}"))
    }

    /// The configuration as TOML (`--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serialises")
    }

    pub fn loss_kind(&self) -> LossKind {
        match self.loss {
            LossName::Infonce => LossKind::InfoNce,
            LossName::Redapter => LossKind::Redapter(RedapterConfig {
                start_step: self.redapter_start_step,
                mapping: self.redapter_mapping,
                clamp_min: self.redapter_clamp_min,
                clamp_max: self.redapter_clamp_max,
                normalization: self.redapter_normalization,
            }),
        }
    }

    /// The query text the model sees for `query` under `instruction`.
    pub fn format_query(&self, instruction: &str, query: &str) -> String {
        if instruction.is_empty() {
            return query.to_string();
        }
        self.query_instruction_format
            .replacen("{}", instruction, 1)
            .replacen("{}", query, 1)
    }
}

/// Copies the non-null fields of `top` over `base`.
fn overlay(base: &mut serde_json::Value, top: serde_json::Value) {
    if let (Some(base), serde_json::Value::Object(top)) = (base.as_object_mut(), top) {
        for (k, v) in top {
            if !v.is_null() {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_the_paper_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.toml");
        std::fs::write(&file, "learning_rate = 2e-5\nfinetune = \"full\"\ngroup_size = 4\n").unwrap();
        let cfg = TrainConfig::resolve(Some(&file), serde_json::json!({"group_size": 2, "seed": null})).unwrap();
        assert_eq!(
            (cfg.learning_rate, cfg.finetune, cfg.group_size, cfg.seed),
            (2e-5, Finetune::Full, 2, 42)
        );
        assert_eq!(cfg.temperature, 0.02);
        let printed = TrainConfig::resolve(None, serde_json::json!({})).unwrap().to_toml();
        assert!(printed.contains("temperature = 0.02") && printed.contains("lora_rank = 32"));
        std::fs::write(&file, "learning_rat = 1.0\n").unwrap();
        assert!(
            TrainConfig::resolve(Some(&file), serde_json::json!({}))
                .unwrap_err()
                .contains("learning_rat")
        );
    }

    #[test]
    fn queries_are_formatted_with_their_instruction() {
        let cfg = TrainConfig::default();
        assert_eq!(cfg.format_query("Find it.", "why?"), "Instruct: Find it.\nQuery: why?");
        assert_eq!(cfg.format_query("", "why?"), "why?");
    }
}
