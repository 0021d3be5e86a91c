//! A synthesis run: the config, the loaded domains (corpus, leak-control
//! exclusions, prompts) and the run folder with one append-only file per
//! stage. Everything a stage decides is derived from the config and the
//! files, so stages run alone or together and resume alike.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use reasonembed_data::Document;
use reasonembed_data::retrieval::{read_any_qrels, read_corpus};
use serde_json::Value;

use crate::audit::Audit;
use crate::config::{DomainConfig, SynthConfig};
use crate::error::{Error, Result, io};
use crate::prompts::{Prompts, read_overrides};
use crate::store::StageFile;

/// The stages, in pipeline order, as `reasonembed synth <stage>` names them.
/// What one run of a stage did; appended to `runs.jsonl` for the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageStats {
    pub stage: String,
    pub calls: usize,
    pub failed: usize,
    /// Answers whose verdict the backend forced (embedded backend only).
    #[serde(default)]
    pub forced: usize,
    /// Finished answers the stage could not read.
    #[serde(default)]
    pub parse_failures: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// From the first call to the last answer.
    pub wall_seconds: f64,
    /// The part of `wall_seconds` with at least one call in flight.
    pub busy_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Clean,
    Generate,
    Reason,
    Mine,
    Annotate,
    Format,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Self::Clean,
        Self::Generate,
        Self::Reason,
        Self::Mine,
        Self::Annotate,
        Self::Format,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Generate => "generate",
            Self::Reason => "reason",
            Self::Mine => "mine",
            Self::Annotate => "annotate",
            Self::Format => "format",
        }
    }

    /// The verdict format the stage's parser reads, which the backends
    /// enforce unless `[sampling.<stage>] constrain = false`.
    pub fn answer(self) -> Option<crate::llm::AnswerFormat> {
        use crate::llm::AnswerFormat;
        match self {
            Self::Clean => Some(AnswerFormat::YesNo),
            Self::Annotate => Some(AnswerFormat::Score1to5),
            Self::Generate | Self::Reason | Self::Mine | Self::Format => None,
        }
    }

    /// The stage's append-only file in the run folder.
    pub fn file(self) -> &'static str {
        match self {
            Self::Clean => "clean.jsonl",
            Self::Generate => "queries.jsonl",
            Self::Reason => "reasoning.jsonl",
            Self::Mine => "candidates.jsonl",
            Self::Annotate => "labels.jsonl",
            Self::Format => "train",
        }
    }
}

/// One domain, loaded.
pub struct Domain {
    pub config: DomainConfig,
    pub prompts: Prompts,
    pub docs: Vec<Document>,
    pub by_id: HashMap<String, usize>,
    /// Documents named in the exclusion qrels: never sources, nor
    /// candidates unless `[mine] keep_excluded`.
    pub excluded: HashSet<String>,
}

impl Domain {
    /// Eligible sources: within the length bounds, not excluded, and not a
    /// text already seen (the md5 rule for sources), in a seeded order.
    pub fn eligible(&self, seed: u64) -> Vec<usize> {
        let c = &self.config;
        let mut seen = HashSet::new();
        let mut eligible: Vec<usize> = (0..self.docs.len())
            .filter(|&i| {
                let d = &self.docs[i];
                let chars = d.text.chars().count();
                chars >= c.min_chars
                    && chars <= c.max_chars
                    && !self.excluded.contains(&d.id)
                    && seen.insert(md5_hex(&d.text))
            })
            .collect();
        eligible.shuffle(&mut rng(seed, &["sources", &c.name]));
        eligible
    }

    /// The documents stage 0 judges: the eligible ones, up to `clean_max`.
    pub fn to_clean(&self, seed: u64) -> Vec<usize> {
        let mut eligible = self.eligible(seed);
        eligible.truncate(self.config.clean_max.unwrap_or(usize::MAX));
        eligible
    }

    pub fn doc(&self, id: &str) -> Option<&Document> {
        self.by_id.get(id).map(|&i| &self.docs[i])
    }

    fn source_indices(&self, seed: u64, kept: Option<&HashSet<String>>) -> Vec<usize> {
        self.eligible(seed)
            .into_iter()
            .filter(|&i| kept.is_none_or(|k| k.contains(&self.docs[i].id)))
            .take(self.config.sources)
            .collect()
    }
}

pub struct Run {
    pub config: SynthConfig,
    pub dir: PathBuf,
    pub domains: Vec<Domain>,
    pub audit: Option<Audit>,
}

impl Run {
    /// Loads the domains' corpora, exclusions and prompts; creates the run folder.
    pub fn open(config: SynthConfig) -> Result<Self> {
        let overrides = match &config.prompts {
            Some(path) => read_overrides(path).map_err(Error::Config)?,
            None => Default::default(),
        };
        if let Some(unknown) = overrides.keys().find(|k| !config.domains.iter().any(|d| &d.name == *k)) {
            return Err(Error::Config(format!(
                "the prompts file overrides domain '{unknown}', which the config does not have"
            )));
        }
        let mut domains = Vec::new();
        for d in &config.domains {
            let docs = read_corpus(&d.corpus)?;
            let mut by_id = HashMap::new();
            for (i, doc) in docs.iter().enumerate() {
                by_id.insert(doc.id.clone(), i); // a repeated id keeps its last row
            }
            let mut excluded = HashSet::new();
            for path in &d.exclude_qrels {
                excluded.extend(read_any_qrels(path)?.into_values().flat_map(|docs| docs.into_keys()));
            }
            domains.push(Domain {
                prompts: Prompts::for_domain(&d.name, d.display_name(), overrides.get(&d.name)),
                config: d.clone(),
                docs,
                by_id,
                excluded,
            });
        }
        let dir = config.output.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let audit = if config.audit {
            Some(Audit::open(&dir.join("audit.jsonl"))?)
        } else {
            None
        };
        Ok(Self {
            config,
            dir,
            domains,
            audit,
        })
    }

    pub fn open_stage(&self, stage: Stage) -> Result<StageFile> {
        StageFile::open(&self.dir.join(stage.file()))
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.config.name == name)
    }

    /// Stage 1's source documents of each domain (aligned with `domains`):
    /// the first `sources` eligible documents in the seeded order, counting
    /// only those stage 0 kept when the domain is cleaned.
    pub fn sources(&self) -> Result<Vec<Vec<usize>>> {
        let clean = match self.domains.iter().any(|d| d.config.clean) {
            true => Some(self.open_stage(Stage::Clean)?),
            false => None,
        };
        Ok(self
            .domains
            .iter()
            .map(|domain| {
                let kept = clean.as_ref().filter(|_| domain.config.clean).map(|clean| {
                    let prefix = item_id(&domain.config.name, "");
                    clean
                        .done()
                        .filter(|r| r.get("keep").and_then(Value::as_bool) == Some(true))
                        .filter_map(|r| r["id"].as_str()?.strip_prefix(&prefix).map(String::from))
                        .collect::<HashSet<String>>()
                });
                domain.source_indices(self.config.seed, kept.as_ref())
            })
            .collect())
    }

    /// The finished, usable queries of stage 1 in source order, after the
    /// md5 rule for queries (a repeated query keeps its first occurrence).
    pub fn queries(&self, generated: &StageFile) -> Result<Vec<QueryItem>> {
        Ok(self.queries_of(&self.sources()?, generated))
    }

    /// [`Run::queries`] with the sources already known.
    pub fn queries_of(&self, sources: &[Vec<usize>], generated: &StageFile) -> Vec<QueryItem> {
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        for (domain, sources) in self.domains.iter().zip(sources) {
            for &i in sources {
                let id = item_id(&domain.config.name, &domain.docs[i].id);
                let Some(record) = generated.get(&id).filter(|r| !r.contains_key("error")) else {
                    continue;
                };
                let query = record.get("query").and_then(Value::as_str).unwrap_or("");
                if query.is_empty() || !seen.insert(md5_hex(query)) {
                    continue;
                }
                items.push(QueryItem {
                    id,
                    domain: domain.config.name.clone(),
                    source: domain.docs[i].id.clone(),
                    query: query.into(),
                });
            }
        }
        items
    }

    /// Appends one stage run's figures to `runs.jsonl`.
    pub fn log_stats(&self, stats: &StageStats) -> Result<()> {
        use std::io::Write;
        let path = self.dir.join("runs.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut line = serde_json::to_string(stats).expect("stats serialise");
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io(&path))
    }
}

/// A usable stage-1 query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryItem {
    pub id: String,
    pub domain: String,
    /// The source document's id.
    pub source: String,
    pub query: String,
}

/// `{domain}/{doc_id}`: the id of everything derived from one source document.
pub fn item_id(domain: &str, doc_id: &str) -> String {
    format!("{domain}/{doc_id}")
}

pub fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A generator seeded by the run seed and a path of names, so each draw is
/// independent of the order in which items are processed.
pub fn rng(seed: u64, names: &[&str]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, names))
}

pub fn derive_seed(seed: u64, names: &[&str]) -> u64 {
    let mut hasher = sha2::Sha256::new();
    sha2::Digest::update(&mut hasher, seed.to_le_bytes());
    for name in names {
        sha2::Digest::update(&mut hasher, (name.len() as u64).to_le_bytes());
        sha2::Digest::update(&mut hasher, name.as_bytes());
    }
    let digest = sha2::Digest::finalize(hasher);
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The training files' folder.
pub fn train_dir(dir: &Path) -> PathBuf {
    dir.join(Stage::Format.file())
}
