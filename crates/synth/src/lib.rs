//! ReMixer: synthesise reasoning-intensive training data from a corpus with
//! LLMs (Chen et al., ACL 2026, §3). Stage 0 cleans the corpus, stage 1 writes a
//! query per sampled source document, stage 1b its reasoning-augmented q′,
//! stage 2 mines candidates with the source removed, stage 3 has a reasoning
//! LLM grade every candidate, stage 4 writes the trainer's JSONL.
//!
//! Owns the stages, their prompts, the LLM backends and the run folder. It
//! uses the models crate (the mining embedder), search (exact top-k, the
//! embedding cache) and data (corpora, qrels); it never touches the CLI or
//! the trainer, whose input format it only writes.

pub mod audit;
pub mod config;
mod error;
pub mod llm;
pub mod prompts;
pub mod query_reasoning;
pub mod refine;
pub mod report;
pub mod run;
pub mod runner;
pub mod stages;
pub mod store;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use config::SynthConfig;
pub use error::{Error, Result};
use reasonembed_data::Progress;
use reasonembed_models::{Embedder, EmbedderOptions};
use reasonembed_search::cache::EmbeddingCache;
pub use run::{Run, Stage};

use crate::config::{Backend, LlmConfig};
use crate::llm::Llm;
use crate::llm::local::LocalLlm;
use crate::llm::openai::{OpenAi, OpenAiConfig};

/// Builds the LLM a config names.
pub fn build_llm(config: &LlmConfig) -> Result<Arc<dyn Llm>> {
    Ok(match config.backend {
        Backend::Local => {
            let path = reasonembed_models::source::resolve_llm(&config.model)?;
            let device = reasonembed_models::device::parse_device(&config.device)?;
            tracing::info!("loading {}", path.display());
            Arc::new(LocalLlm::load(&path, &device)?)
        }
        Backend::Openai => Arc::new(OpenAi::new(OpenAiConfig {
            base_urls: config.base_urls.clone(),
            model: config.model.clone(),
            api_key: std::env::var(&config.api_key_env).ok().filter(|k| !k.is_empty()),
            concurrency: config.concurrency,
            timeout: Duration::from_secs(config.timeout_secs),
            max_retries: config.max_retries,
            backoff: Duration::from_millis(config.backoff_ms),
            structured: config.structured,
        })?),
    })
}

/// The identity key of the LLM a config names: everything that decides its
/// answers besides prompt and sampling (backend, model, and for a local
/// model the digest of its file's bytes; for a server the model name and
/// its URLs: another server may serve other weights under the same name).
pub fn llm_identity(config: &LlmConfig) -> Result<String> {
    Ok(match config.backend {
        Backend::Local => {
            let path = reasonembed_models::source::resolve_llm(&config.model)?;
            let digest = reasonembed_models::identity::files_fingerprint(&[path])?;
            format!("local:{digest}")
        }
        Backend::Openai => format!("openai:{}@{}", config.model, config.base_urls.join(",")),
    })
}

/// A run with its LLMs and embedder loaded on first need, so a stage that
/// needs none of them (format, status) starts at once.
pub struct Pipeline {
    pub run: Run,
    cache: EmbeddingCache,
    embedder_options: EmbedderOptions,
    generator: OnceLock<Arc<dyn Llm>>,
    annotator: OnceLock<Arc<dyn Llm>>,
}

impl Pipeline {
    pub fn new(run: Run, cache: EmbeddingCache, embedder_options: EmbedderOptions) -> Self {
        Self {
            run,
            cache,
            embedder_options,
            generator: OnceLock::new(),
            annotator: OnceLock::new(),
        }
    }

    /// Uses `llm` for every LLM stage instead of the configured backends.
    pub fn with_llm(self, llm: Arc<dyn Llm>) -> Self {
        let _ = self.generator.set(llm.clone());
        let _ = self.annotator.set(llm);
        self
    }

    fn generator(&self) -> Result<&dyn Llm> {
        if let Some(llm) = self.generator.get() {
            return Ok(llm.as_ref());
        }
        let llm = build_llm(&self.run.config.llm)?;
        Ok(self.generator.get_or_init(|| llm).as_ref())
    }

    fn annotator(&self) -> Result<&dyn Llm> {
        if let Some(llm) = self.annotator.get() {
            return Ok(llm.as_ref());
        }
        let llm = match &self.run.config.annotator {
            None => self
                .generator
                .get()
                .cloned()
                .map_or_else(|| build_llm(&self.run.config.llm), Ok)?,
            Some(config) => build_llm(config)?,
        };
        Ok(self.annotator.get_or_init(|| llm).as_ref())
    }

    /// Runs one stage to completion (resuming), then rewrites the report.
    pub fn stage(&self, stage: Stage, progress: &mut dyn Progress) -> Result<report::Report> {
        let run = &self.run;
        match stage {
            Stage::Clean => {
                if run.domains.iter().any(|d| d.config.clean) {
                    stages::clean::run(run, self.generator()?, progress)?;
                }
            }
            Stage::Generate => {
                stages::generate::run(run, self.generator()?, progress)?;
            }
            Stage::Reason => {
                stages::reason::run(run, self.generator()?, progress)?;
            }
            Stage::Mine => {
                let embedder = Embedder::from_spec(&run.config.mine.model, self.embedder_options.clone())?;
                stages::mine::run(run, &embedder, &self.cache, progress)?;
            }
            Stage::Annotate => {
                stages::annotate::run(run, self.annotator()?, progress)?;
            }
            Stage::Format => {
                stages::format::run(run)?;
            }
        }
        self.write_report()
    }

    /// Every stage in order: the whole pipeline, resumable.
    pub fn run_all(&self, progress: &mut dyn Progress) -> Result<report::Report> {
        let mut report = None;
        for stage in Stage::ALL {
            if stage == Stage::Reason && !self.run.config.reasoning_query {
                continue;
            }
            report = Some(self.stage(stage, progress)?);
        }
        Ok(report.expect("at least one stage ran"))
    }

    fn write_report(&self) -> Result<report::Report> {
        let report = report::report(&self.run)?;
        report.write(&self.run)?;
        Ok(report)
    }
}
