//! The training configuration: ReasonEmbed's recipe by default, overridden
//! by a TOML file (`--config train.toml`) and then by command-line flags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
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

/// Which code computes the gradients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gradients {
    /// By hand on the CPU in f32 (`reasonembed_models::hand`), where it
    /// covers the model; candle's autograd elsewhere.
    #[default]
    ByHand,
    /// candle's autograd everywhere: the reference the hand-written
    /// backward passes are tested against, and what other devices run.
    Autograd,
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
    /// `by-hand` or `autograd`.
    pub gradients: Gradients,
    /// A BEIR folder to evaluate on every `eval_every` steps and at the end
    /// (after the model is written); results go to `eval.jsonl`.
    pub eval_data: Option<PathBuf>,
    /// The qrels split of `eval_data` (`qrels/<split>.tsv`).
    pub eval_split: String,
    pub eval_every: u64,
}

impl Default for TrainConfig {
    /// ReasonEmbed's released `train.sh`, on one device.
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
            gradients: Gradients::ByHand,
            eval_data: None,
            eval_split: "dev".into(),
            eval_every: 0,
        }
    }
}

impl TrainConfig {
    /// Defaults, then `file` (TOML), then `overrides` (a JSON object of the
    /// settings given on the command line).
    pub fn resolve(file: Option<&std::path::Path>, overrides: serde_json::Value) -> Result<Self> {
        let mut merged = serde_json::to_value(Self::default()).expect("the defaults serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
            let table: toml::Table = toml::from_str(&text).map_err(crate::error::file(path))?;
            // JSON has no NaN: a `nan` here would silently become the default.
            if let Some((key, v)) = table.iter().find(|(_, v)| v.as_float().is_some_and(|f| !f.is_finite())) {
                return Err(crate::error::file(path)(format!("{key} = {v} is not a finite number")));
            }
            overlay(
                &mut merged,
                serde_json::to_value(table).map_err(crate::error::file(path))?,
            );
        }
        overlay(&mut merged, overrides);
        // The error names the setting (`gradients: unknown variant …`).
        serde_path_to_error::deserialize(merged)
            .map_err(|e| Error::Config(format!("invalid training configuration: {e}")))
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

    /// The prompt in front of a query under `instruction` ("" for none):
    /// `query_instruction_format` with the instruction in its first `{}` and
    /// its final `{}` (the query's place) removed.
    pub fn query_prompt(&self, instruction: &str) -> String {
        if instruction.is_empty() {
            return String::new();
        }
        let format = self.query_instruction_format.strip_suffix("{}").unwrap_or_default();
        format.replacen("{}", instruction, 1)
    }

    /// Checks every setting before any work: a bad value is an error naming
    /// the setting, never a run that ends in NaN.
    pub fn validate(&self) -> Result<()> {
        let fail = |name: &str, why: &str, value: &dyn std::fmt::Display| {
            Err(Error::Config(format!("invalid setting {name} = {value}: {why}")))
        };
        let positive = [("temperature", self.temperature), ("lora_alpha", self.lora_alpha)];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return fail(name, "must be a finite number above 0", &v);
            }
        }
        let non_negative = [
            ("learning_rate", self.learning_rate),
            ("weight_decay", self.weight_decay),
            ("max_grad_norm", self.max_grad_norm),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return fail(name, "must be a finite number, 0 or above", &v);
            }
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return fail("warmup_ratio", "must be between 0 and 1", &self.warmup_ratio);
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return fail("lora_dropout", "must be at least 0 and below 1", &self.lora_dropout);
        }
        let counts = [
            ("epochs", self.epochs as usize),
            ("batch_size", self.batch_size),
            ("group_size", self.group_size),
            ("chunk_size", self.chunk_size),
            ("query_max_length", self.query_max_length),
            ("passage_max_length", self.passage_max_length),
            ("lora_rank", self.lora_rank),
        ];
        for (name, v) in counts {
            if v == 0 {
                return fail(name, "must be at least 1", &v);
            }
        }
        let (lo, hi) = (self.redapter_clamp_min, self.redapter_clamp_max);
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::Config(format!(
                "invalid settings redapter_clamp_min = {lo}, redapter_clamp_max = {hi}: must be finite with min ≤ max"
            )));
        }
        let format = &self.query_instruction_format;
        if format.matches("{}").count() != 2 || !format.ends_with("{}") {
            return fail(
                "query_instruction_format",
                "must hold two {} (the instruction, then the query at the very end)",
                &format!("{format:?}"),
            );
        }
        if self.eval_data.is_some() && self.eval_split.is_empty() {
            return fail("eval_split", "must name a qrels split", &"\"\"");
        }
        Ok(())
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
    use serde_json::json;

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
                .to_string()
                .contains("learning_rat")
        );
    }

    #[test]
    fn queries_get_their_instruction_as_a_prompt() {
        let cfg = TrainConfig::default();
        assert_eq!(cfg.query_prompt("Find it."), "Instruct: Find it.\nQuery: ");
        assert_eq!(cfg.query_prompt(""), "");
    }

    #[test]
    fn settings_that_would_end_in_nan_are_refused_up_front() {
        let bad = [
            json!({"temperature": 0.0}),
            json!({"temperature": -0.5}),
            json!({"learning_rate": -1.0}),
            json!({"warmup_ratio": 1.5}),
            json!({"batch_size": 0}),
            json!({"group_size": 0}),
            json!({"chunk_size": 0}),
            json!({"lora_dropout": 1.0}),
            json!({"redapter_clamp_min": 6.0}),
            json!({"query_instruction_format": "{}: {} (query)"}),
        ];
        for overrides in bad {
            let cfg = TrainConfig::resolve(None, overrides.clone()).unwrap();
            let err = cfg.validate().expect_err(&overrides.to_string()).to_string();
            let name = overrides.as_object().unwrap().keys().next().unwrap().clone();
            assert!(err.contains(&name), "{err}");
        }
        TrainConfig::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.toml");
        std::fs::write(&file, "temperature = nan\n").unwrap();
        let err = TrainConfig::resolve(Some(&file), json!({})).unwrap_err().to_string();
        assert!(err.contains("temperature") && err.contains("finite"), "{err}");
    }
}
