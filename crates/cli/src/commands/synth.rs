//! `reasonembed synth`: ReMixer data synthesis, stage by stage or all at once.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use reasonembed_data::BeirDataset;
use reasonembed_models::{Embedder, EmbedderOptions};
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_synth::config::{Backend, StageSampling};
use reasonembed_synth::refine::{FalseNegatives, Input, RefineOptions};
use reasonembed_synth::{Pipeline, Run, Stage, SynthConfig};

use super::shared::LlmArgs;
use crate::progress::Bars;

/// Synthesise training data from a corpus with LLMs (ReMixer).
///
/// Stages: clean (optional yes/no domain filter), generate (a query per sampled source
/// document), reason (the reasoning-augmented query q′), mine (candidates by exact search,
/// source removed), annotate (a 1–5 relevance score per candidate), format (the trainer's
/// JSONL in OUT/train/). Each stage appends to its own JSONL file in the run folder and skips
/// what is already there, so any command resumes an interrupted run; `status` shows progress.
/// The LLM is the embedded SmolLM2 GGUF by default (fetched on first use), or any
/// OpenAI-compatible server (--llm-url). A report is written to OUT/report.{json,md}.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  reasonembed synth run --config examples/synth/cranfield.toml\n  reasonembed synth status --config examples/synth/cranfield.toml\n  reasonembed synth annotate --config synth.toml --llm-url http://127.0.0.1:8080/v1"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Every stage in order (clean only for domains that ask for it).
    Run(Common),
    /// Stage 0: keep documents the LLM judges to belong to the domain.
    Clean(Common),
    /// Stage 1: one query per sampled source document.
    Generate(Common),
    /// Stage 1b: the reasoning-augmented query q′ of each query.
    Reason(Common),
    /// Stage 2: candidates by exact search with the source document removed.
    Mine(Common),
    /// Stage 3: a 1–5 relevance score for every (query, candidate).
    Annotate(Common),
    /// Stage 4: the trainer's JSONL (positives ≥ 3, negatives ≤ 2).
    Format(Common),
    /// Each stage's progress: done, planned, failed (and truncated among them).
    Status(Common),
    /// Grade the negatives (and optionally positives) of training data you already have with
    /// the annotator, and write it back without its false negatives.
    Refine(Box<RefineArgs>),
}

/// `synth refine`: FlagEmbedding JSONL in, the same without false negatives out.
///
/// Every negative of every record is graded 1–5 with the domain's rubric (stage 3's prompt);
/// one scored at or above --threshold is a false negative, dropped or moved to the positives.
/// Judgements are appended to OUT/judgements.jsonl as they arrive, so a killed run resumes;
/// OUT/refined/<domain>.jsonl and OUT/report.{json,md} are rewritten whole on every run.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  reasonembed synth refine train/biology.jsonl --out refined-run --llm-url http://127.0.0.1:8080/v1"
)]
struct RefineArgs {
    /// FlagEmbedding JSONL files (`query`, `pos`, `neg`, other fields kept); each is a domain
    /// named by its file stem unless --domain says otherwise.
    #[arg(value_name = "FILE", required_unless_present = "beir", conflicts_with = "beir")]
    inputs: Vec<PathBuf>,
    /// A BEIR folder instead (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): judged documents
    /// are the positives, and negatives are mined (--mine).
    #[arg(long, value_name = "DIR", requires = "mine")]
    beir: Option<PathBuf>,
    /// The BEIR qrels split.
    #[arg(long, default_value = "train", requires = "beir")]
    split: String,
    /// The smallest BEIR judgement that makes a positive.
    #[arg(long, default_value_t = 1, requires = "beir")]
    min_relevance: i64,
    /// Mine N negatives per query anew with --mine-model (exact search, positives and the query
    /// left out) before grading, replacing the records' own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    mine: Option<u64>,
    /// The embedder that mines (a folder, a built-in name or a Hub id).
    #[arg(long, value_name = "MODEL", default_value = reasonembed_models::source::DEFAULT_MODEL, requires = "mine")]
    mine_model: String,
    /// The corpus to mine from (JSONL documents) [default: the BEIR corpus, or every passage of
    /// the input file].
    #[arg(long, value_name = "FILE", requires = "mine")]
    corpus: Option<PathBuf>,
    /// The run folder (judgements, refined files, report).
    #[arg(long, short)]
    out: PathBuf,
    /// The rubric's domain for every input: a BRIGHT task (biology, leetcode, …) gets its own
    /// relevance definition, any other name the generic one.
    #[arg(long)]
    domain: Option<String>,
    /// What becomes of a false negative.
    #[arg(long, value_enum, default_value_t = FalseNegativesArg::Drop)]
    false_negatives: FalseNegativesArg,
    /// Grade the positives too (reported; dropped with --drop-false-positives).
    #[arg(long)]
    check_positives: bool,
    /// Remove positives scored below --threshold.
    #[arg(long, requires = "check_positives")]
    drop_false_positives: bool,
    /// Grade only the first N negatives of each record (mined lists are ranked: the hardest
    /// first); the others are kept as they are [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    negatives_per_query: Option<u64>,
    /// Scores at or above this are relevant (stage 4's split: 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=5))]
    threshold: i64,
    /// The annotator's longest answer, in tokens (an answer cut off is a failed call).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: u64,
    /// Seed of the per-pair sampling seeds.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Examples of false negatives per domain in the report.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    #[command(flatten)]
    llm: LlmArgs,
    /// Keep every prompt and answer in OUT/audit.jsonl.
    #[arg(long)]
    audit: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FalseNegativesArg {
    Drop,
    ToPositive,
}

/// The inputs of `refine`, negatives mined anew if asked.
fn refine_inputs(args: &RefineArgs, bars: &mut Bars) -> Result<Vec<Input>> {
    let domain_of = |path: &std::path::Path| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        args.domain.clone().or(stem).unwrap_or_else(|| "generic".into())
    };
    let mut beir_corpus = Vec::new();
    let mut inputs = match &args.beir {
        Some(dir) => {
            let dataset = BeirDataset::open(dir, &args.split)?;
            let input = Input::from_beir(dir, &dataset, &domain_of(dir), args.min_relevance);
            beir_corpus = dataset.corpus.into_iter().map(|d| d.text).collect();
            vec![input]
        }
        None => args
            .inputs
            .iter()
            .map(|path| Input::read(path, &domain_of(path)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let Some(n) = args.mine else { return Ok(inputs) };
    let embedder = Embedder::from_spec(&args.mine_model, EmbedderOptions::default())
        .with_context(|| format!("cannot load model '{}'", args.mine_model))?;
    let cache = EmbeddingCache::new(reasonembed_models::source::cache_dir().join("embeddings"));
    let given: Option<Vec<String>> = match &args.corpus {
        Some(path) => Some(
            reasonembed_data::retrieval::read_corpus(path)?
                .into_iter()
                .map(|d| d.text)
                .collect(),
        ),
        None => (!beir_corpus.is_empty()).then_some(beir_corpus),
    };
    for input in &mut inputs {
        let corpus: Vec<String> = match &given {
            Some(texts) => texts.clone(),
            None => input.passages().into_iter().map(String::from).collect(),
        };
        let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        input.mine_negatives(&refs, &embedder, &cache, n, bars)?;
    }
    Ok(inputs)
}

fn refine(args: RefineArgs) -> Result<()> {
    let mut bars = Bars::new(args.quiet);
    let inputs = refine_inputs(&args, &mut bars)?;
    let mut sampling = StageSampling::default().annotate;
    sampling.max_tokens = usize::try_from(args.max_tokens).unwrap_or(usize::MAX);
    let options = RefineOptions {
        sampling,
        false_negatives: match args.false_negatives {
            FalseNegativesArg::Drop => FalseNegatives::Drop,
            FalseNegativesArg::ToPositive => FalseNegatives::ToPositive,
        },
        negatives_per_query: args
            .negatives_per_query
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        check_positives: args.check_positives,
        drop_false_positives: args.drop_false_positives,
        threshold: args.threshold,
        seed: args.seed,
        examples: args.examples,
    };
    let (llm, identity) = args.llm.load()?;
    let report = reasonembed_synth::refine::refine(
        &inputs,
        llm.as_ref(),
        &identity,
        &options,
        &args.out,
        args.audit,
        &mut bars,
    )?;
    for (domain, d) in &report.domains {
        eprintln!(
            "{domain}: {} of {} negatives are false ({} records written of {}; {} pairs unjudged)",
            d.false_negatives, d.negatives, d.written, d.records, d.unjudged
        );
    }
    if report.failed_calls > 0 {
        eprintln!(
            "{} calls failed: run the same command again to retry them",
            report.failed_calls
        );
    }
    eprintln!("report: {}", args.out.join("report.md").display());
    Ok(())
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The run's settings (TOML): LLMs, sampling, mining, domains and corpora.
    #[arg(long, short)]
    config: PathBuf,
    /// The run folder (overrides `output` in the config).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use an OpenAI-compatible server for the generator (repeat to spread load), e.g.
    /// http://127.0.0.1:8080/v1. The API key comes from the environment (`api_key_env`).
    #[arg(long = "llm-url", value_name = "URL")]
    llm_urls: Vec<String>,
    /// The model name sent to the server, or the GGUF file / built-in LLM for the local backend.
    #[arg(long)]
    llm_model: Option<String>,
    /// Keep every prompt and answer in OUT/audit.jsonl.
    #[arg(long)]
    audit: bool,
    /// Do not cache corpus embeddings.
    #[arg(long)]
    no_cache: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

impl Common {
    fn config(&self) -> Result<SynthConfig> {
        let mut config = SynthConfig::read(&self.config).map_err(|e| anyhow!(e))?;
        if let Some(out) = &self.out {
            config.output = out.clone();
        }
        if !self.llm_urls.is_empty() {
            config.llm.backend = Backend::Openai;
            config.llm.base_urls = self.llm_urls.clone();
            if self.llm_model.is_none() {
                config.llm.model = "default".into();
            }
        }
        if let Some(model) = &self.llm_model {
            config.llm.model = model.clone();
        }
        config.audit |= self.audit;
        config
            .validate()
            .map_err(|e| anyhow!("{}: {e}", self.config.display()))?;
        Ok(config)
    }
}

pub fn run(args: Args) -> Result<()> {
    let (stage, common) = match args.command {
        Command::Run(c) => (None, c),
        Command::Clean(c) => (Some(Stage::Clean), c),
        Command::Generate(c) => (Some(Stage::Generate), c),
        Command::Reason(c) => (Some(Stage::Reason), c),
        Command::Mine(c) => (Some(Stage::Mine), c),
        Command::Annotate(c) => (Some(Stage::Annotate), c),
        Command::Format(c) => (Some(Stage::Format), c),
        Command::Refine(a) => return refine(*a),
        Command::Status(c) => {
            let run = Run::open(c.config()?)?;
            print_status(&reasonembed_synth::report::status(&run)?);
            return Ok(());
        }
    };
    let run = Run::open(common.config()?)?;
    let cache = if common.no_cache {
        EmbeddingCache::disabled()
    } else {
        EmbeddingCache::new(reasonembed_models::source::cache_dir().join("embeddings"))
    };
    let pipeline = Pipeline::new(run, cache, EmbedderOptions::default());
    let mut bars = Bars::new(common.quiet);
    let report = match stage {
        None => pipeline.run_all(&mut bars)?,
        Some(stage) => pipeline.stage(stage, &mut bars)?,
    };
    print_status(&report.status);
    let dir = &pipeline.run.dir;
    for (name, d) in &report.domains {
        if d.training.kept > 0 {
            eprintln!(
                "{name}: {} training queries, {:.1} positives and {:.1} negatives per query",
                d.training.kept, d.positives_per_query, d.negatives_per_query
            );
        }
    }
    eprintln!("report: {}", dir.join("report.md").display());
    if stage.is_none() || stage == Some(Stage::Format) {
        eprintln!("training data: {}", reasonembed_synth::run::train_dir(dir).display());
    }
    Ok(())
}

/// Per stage: items done, planned, failed, and the failed ones whose answer
/// was cut off at `max_tokens`.
fn print_status(status: &[reasonembed_synth::report::StageStatus]) {
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>10}",
        "stage", "done", "planned", "failed", "truncated"
    );
    for s in status {
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>10}",
            s.stage, s.done, s.total, s.failed, s.truncated
        );
    }
}
