//! A synthesis run's settings (`synth.toml`): the LLMs, sampling per stage,
//! the mining embedder, and the domains with their corpora. Defaults are the
//! released ReMixer settings (the ReasonEmbed paper's §3 and its released scripts). Relative paths are read
//! from the config file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::llm::Sampling;
use crate::llm::openai::Structured;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// The run folder: every stage's JSONL, the report and the training data.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Seeds source sampling, length/level draws, padding and local LLM sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Per-domain prompt overrides (TOML, `[domain]` tables).
    #[serde(default)]
    pub prompts: Option<PathBuf>,
    /// Keep every prompt and answer in `audit.jsonl`.
    #[serde(default)]
    pub audit: bool,
    /// Write q′ (`reasoning_query`, stage 1b); Redapter needs it.
    #[serde(default = "yes")]
    pub reasoning_query: bool,
    /// The generator: stages 0, 1 and 1b.
    #[serde(default)]
    pub llm: LlmConfig,
    /// The annotator (stage 3); the generator when absent.
    #[serde(default)]
    pub annotator: Option<LlmConfig>,
    #[serde(default)]
    pub sampling: StageSampling,
    #[serde(default)]
    pub mine: MineConfig,
    #[serde(rename = "domain", default)]
    pub domains: Vec<DomainConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A GGUF file run in-process (candle's quantized models).
    Local,
    /// An OpenAI-compatible chat-completions server.
    Openai,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub backend: Backend,
    /// `local`: a .gguf file or a built-in LLM (`smollm2`); `openai`: the served model name.
    pub model: String,
    /// `openai`: base URLs (…/v1); calls are spread over them.
    pub base_urls: Vec<String>,
    /// `openai`: the environment variable holding the API key (unset: no auth).
    pub api_key_env: String,
    /// `openai`: calls in flight at once.
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_retries: u32,
    pub backoff_ms: u64,
    /// `openai`: the server's structured-output option, which forces the
    /// score and yes/no stages' answer format: `llama-server` (GBNF
    /// `grammar`), `vllm` (`structured_outputs`, vLLM ≥ 0.11),
    /// `vllm-legacy` (`guided_regex`, vLLM < 0.12), `sglang` (`regex`), or
    /// `none` (the default: unknown servers get no extra field).
    pub structured: Structured,
    /// `local`: `cpu` or `cuda[:N]`.
    pub device: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            model: reasonembed_models::source::DEFAULT_LLM.into(),
            base_urls: Vec::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            concurrency: 8,
            timeout_secs: 600,
            max_retries: 5,
            backoff_ms: 500,
            structured: Structured::None,
            device: "cpu".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageSampling {
    pub clean: Sampling,
    pub generate: Sampling,
    pub reason: Sampling,
    pub annotate: Sampling,
}

impl StageSampling {
    /// The settings of an LLM stage; `None` for mining and formatting.
    pub fn of(&self, stage: crate::run::Stage) -> Option<&Sampling> {
        use crate::run::Stage;
        match stage {
            Stage::Clean => Some(&self.clean),
            Stage::Generate => Some(&self.generate),
            Stage::Reason => Some(&self.reason),
            Stage::Annotate => Some(&self.annotate),
            Stage::Mine | Stage::Format => None,
        }
    }
}

impl Default for StageSampling {
    fn default() -> Self {
        let s = |temperature, top_p, top_k, max_tokens| Sampling {
            temperature,
            top_p,
            top_k,
            max_tokens,
            prefill: None,
            constrain: true,
        };
        Self {
            clean: s(0.0, None, None, 8),
            generate: s(1.0, Some(0.6), None, 8192),
            reason: s(0.8, Some(0.8), None, 2048),
            annotate: s(0.7, Some(0.95), Some(40), 2048),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MineConfig {
    /// The embedder (folder, built-in name or Hub id).
    pub model: String,
    pub batch_size: usize,
    /// Query text as `Instruct: {instruction}\nQuery: {query}` (ReasonEmbed's format);
    /// otherwise the model's own query prompt, if it has one.
    pub instruct: bool,
    /// Documents retrieved before the cut.
    pub depth: usize,
    /// Candidates kept per query (before the source document is removed).
    pub candidates: usize,
    /// Let documents named in a domain's `exclude_qrels` be candidates (the
    /// released script's behaviour). By default they are skipped, so no
    /// benchmark document becomes a training positive or negative.
    pub keep_excluded: bool,
}

impl Default for MineConfig {
    fn default() -> Self {
        Self {
            model: reasonembed_models::source::DEFAULT_MODEL.into(),
            batch_size: 32,
            instruct: true,
            depth: 1000,
            candidates: 100,
            keep_excluded: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// A BRIGHT domain name selects its prompts; any other name is generic.
    pub name: String,
    /// How generic prompts name the field (default: `name`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The corpus (JSONL with `_id`/`id` and `text`/`content`, optional `title`).
    pub corpus: PathBuf,
    /// Qrels files (TREC or BEIR TSV) whose documents are never sources nor
    /// (unless `[mine] keep_excluded`) candidates: benchmark gold and
    /// excluded ids.
    #[serde(default)]
    pub exclude_qrels: Vec<PathBuf>,
    /// Source documents sampled for query generation.
    #[serde(default = "default_sources")]
    pub sources: usize,
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
    /// Run stage 0 (domain cleaning) on the eligible documents first.
    #[serde(default)]
    pub clean: bool,
    /// Judge at most this many eligible documents (in the seeded order) in
    /// stage 0, instead of all of them; sources come from those kept.
    #[serde(default)]
    pub clean_max: Option<usize>,
    /// Passages per query in training; the domain's tuned value by default.
    #[serde(default)]
    pub train_group_size: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
}

impl DomainConfig {
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// `(train_group_size, batch_size)`: ReasonEmbed's tuned values (1,024
    /// passages per global batch) unless set.
    pub fn batch_settings(&self) -> (usize, usize) {
        let (group, batch) = match self.name.as_str() {
            "leetcode" => (2, 64),
            "pony" => (64, 2),
            _ => (16, 8),
        };
        (self.train_group_size.unwrap_or(group), self.batch_size.unwrap_or(batch))
    }
}

fn default_output() -> PathBuf {
    PathBuf::from("synth-run")
}
fn default_seed() -> u64 {
    42
}
fn yes() -> bool {
    true
}
fn default_sources() -> usize {
    10_000
}
fn default_min_chars() -> usize {
    200
}
fn default_max_chars() -> usize {
    5000
}

impl SynthConfig {
    /// Reads a config file; relative paths become relative to its folder.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.output);
        if let Some(p) = &mut self.prompts {
            fix(p);
        }
        for d in &mut self.domains {
            fix(&mut d.corpus);
            d.exclude_qrels.iter_mut().for_each(fix);
        }
        for llm in std::iter::once(&mut self.llm).chain(self.annotator.as_mut()) {
            if llm.backend == Backend::Local && llm.model.ends_with(".gguf") {
                let mut p = PathBuf::from(&llm.model);
                fix(&mut p);
                llm.model = p.to_string_lossy().into_owned();
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.domains.is_empty() {
            return Err("no [[domain]] given".into());
        }
        let mut names = std::collections::HashSet::new();
        for d in &self.domains {
            if !names.insert(&d.name) {
                return Err(format!("domain '{}' is given twice", d.name));
            }
            if d.name.is_empty() || d.name.contains(['/', '\t', '\n']) {
                return Err(format!(
                    "domain name '{}' must be non-empty, without '/' or tabs",
                    d.name
                ));
            }
            if d.min_chars > d.max_chars {
                return Err(format!("domain '{}': min_chars exceeds max_chars", d.name));
            }
        }
        for llm in std::iter::once(&self.llm).chain(self.annotator.as_ref()) {
            if llm.backend == Backend::Openai && llm.base_urls.is_empty() {
                return Err("the openai backend needs base_urls".into());
            }
        }
        if self.mine.candidates == 0 || self.mine.depth < self.mine.candidates {
            return Err("mine.candidates must be at least 1 and at most mine.depth".into());
        }
        Ok(())
    }

    pub fn annotator(&self) -> &LlmConfig {
        self.annotator.as_ref().unwrap_or(&self.llm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_gets_the_released_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.toml");
        std::fs::write(&path, "[[domain]]\nname = \"pony\"\ncorpus = \"docs.jsonl\"\n").unwrap();
        let c = SynthConfig::read(&path).unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.domains[0].corpus, dir.path().join("docs.jsonl"));
        assert_eq!(c.domains[0].batch_settings(), (64, 2));
        assert_eq!(
            (c.domains[0].min_chars, c.domains[0].max_chars, c.domains[0].sources),
            (200, 5000, 10_000)
        );
        assert_eq!(c.sampling.generate.top_p, Some(0.6));
        assert_eq!((c.mine.depth, c.mine.candidates), (1000, 100));
        assert_eq!(c.llm.backend, Backend::Local);
        assert_eq!(c.llm.structured, Structured::None);
        assert!(c.sampling.annotate.constrain && c.sampling.clean.constrain);
    }

    #[test]
    fn the_constraint_can_be_named_per_server_and_turned_off_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.toml");
        let text = "[llm]\nbackend = \"openai\"\nbase_urls = [\"http://x/v1\"]\nstructured = \"llama-server\"\n[sampling.annotate]\ntemperature = 0.7\nmax_tokens = 64\nconstrain = false\n[[domain]]\nname = \"x\"\ncorpus = \"c\"\n";
        std::fs::write(&path, text).unwrap();
        let c = SynthConfig::read(&path).unwrap();
        assert_eq!(c.llm.structured, Structured::LlamaServer);
        assert!(!c.sampling.annotate.constrain && c.sampling.clean.constrain);
        std::fs::write(&path, text.replace("llama-server", "tgi")).unwrap();
        assert!(SynthConfig::read(&path).unwrap_err().contains("tgi"));
    }

    #[test]
    fn bad_configs_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.toml");
        std::fs::write(&path, "[[domain]]\nname = \"x\"\ncorpus = \"c\"\nsurces = 3\n").unwrap();
        let e = SynthConfig::read(&path).unwrap_err();
        assert!(e.contains("synth.toml") && e.contains("surces"), "{e}");
        std::fs::write(
            &path,
            "[llm]\nbackend = \"openai\"\n[[domain]]\nname = \"x\"\ncorpus = \"c\"\n",
        )
        .unwrap();
        assert!(SynthConfig::read(&path).unwrap_err().contains("base_urls"));
    }
}
