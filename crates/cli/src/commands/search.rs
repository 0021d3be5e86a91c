//! `reasonembed search`: semantic search over your own files.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::fusion::Fusion;
use reasonembed_search::index::{PassageIndex, Retrieval};
use sha2::{Digest, Sha256};

use super::shared::{ModelArgs, ReasonArgs};
use crate::progress::Bars;

/// Search a folder of text/Markdown files (or a .jsonl corpus) with an embedding model.
///
/// The corpus is split into passages, embedded once into an index, and the index is
/// updated incrementally on later runs: only new or changed files are embedded again.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  reasonembed search --corpus notes/ 'why do we breathe through one nostril'")]
pub struct Args {
    /// The queries.
    #[arg(required = true)]
    pub queries: Vec<String>,

    /// A folder (.txt, .md, .markdown, .rst files, searched recursively) or a .jsonl file
    /// (one document per line: id/_id and text/content, optional title).
    #[arg(long)]
    pub corpus: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Where the index lives [default: in the cache, one per corpus and model].
    #[arg(long)]
    pub index: Option<PathBuf>,

    /// Results per query.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub top_k: usize,

    /// Task instruction for the queries, in the ReasonEmbed format.
    #[arg(long, conflicts_with = "prompt_name")]
    pub instruction: Option<String>,

    /// The model's sentence-transformers prompt for queries, by name [default: its `query`
    /// prompt, else its default prompt, if it has one].
    #[arg(long)]
    pub prompt_name: Option<String>,

    /// Words per passage (keep it under the model's max length).
    #[arg(long, default_value_t = 150)]
    pub passage_words: usize,

    /// Texts per forward pass while indexing.
    #[arg(short, long, default_value_t = 32)]
    pub batch_size: usize,

    /// Dense and BM25 fused: rrf[:K] (reciprocal-rank fusion, K 60), minmax[:W] or zscore[:W]
    /// (normalised scores, W the dense weight, 0.5). The index keeps BM25 terms beside its
    /// vectors; each side's best 100 (or -k if more) are fused.
    #[arg(long, value_name = "FUSION", value_parser = Fusion::parse)]
    pub hybrid: Option<Fusion>,

    #[command(flatten)]
    pub reason: ReasonArgs,

    /// Print JSON (one object per query) instead of text.
    #[arg(long)]
    pub json: bool,

    /// No progress bars or index summary.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.top_k == 0 {
        bail!("-k must be at least 1");
    }
    if args.passage_words == 0 {
        bail!("--passage-words must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let embedder = Embedder::from_spec(&args.model.model, args.model.options()?)
        .with_context(|| format!("cannot load model '{}'", args.model.model))?;
    let query_options = EncodeOptions::query(Prompt::from_flags(
        args.instruction.as_deref(),
        args.prompt_name.as_deref(),
    ))
    .with_batch_size(args.batch_size);
    // An unknown prompt name fails before any indexing work.
    embedder.resolve(&query_options)?;
    let index_dir = match args.index.clone() {
        Some(dir) => dir,
        None => default_index_dir(&args, embedder.identity()?),
    };
    let start = Instant::now();
    let mut bars = Bars::new(args.quiet);
    let (index, stats) = PassageIndex::update(
        &index_dir,
        &args.corpus,
        &embedder,
        args.passage_words,
        args.batch_size,
        &mut bars,
    )?;
    if !args.quiet {
        let resumed = match stats.resumed_passages {
            0 => String::new(),
            n => format!(", {n} taken from an interrupted run"),
        };
        eprintln!(
            "index {}: {} sources, {} passages ({} new or changed, {} removed, {} passages embedded{resumed}) in {:.1} s",
            index_dir.display(),
            stats.sources,
            stats.passages,
            stats.added_or_changed,
            stats.removed,
            stats.embedded_passages,
            start.elapsed().as_secs_f64()
        );
    }
    if index.is_empty() {
        bail!("{}: no text to search", args.corpus.display());
    }
    // What is retrieved with: each query, or an LLM's reasoning about it.
    let texts = match args.reason.reasoner()? {
        Some(reasoner) => reasoner.reason(&args.queries, &mut bars)?,
        None => args.queries.clone(),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.encode(&refs, &query_options, |_, _| {})?;
    let retrieval = args.hybrid.map_or(Retrieval::Dense, Retrieval::Hybrid);
    let results = index.search_with(&vectors.data, &texts, args.top_k, retrieval);
    for ((query, text), hits) in args.queries.iter().zip(&texts).zip(results) {
        let reasoned = args.reason.reason.then_some(text);
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "query": query, "reasoned_query": reasoned, "hits": hits })
            );
            continue;
        }
        println!("\n{query}");
        if let Some(text) = reasoned {
            println!("     reasoned: {}", snippet(text, 200));
        }
        for (rank, hit) in hits.iter().enumerate() {
            println!("{:>3}. {:.4}  {}:{}", rank + 1, hit.score, hit.source, hit.line);
            println!("     {}", snippet(&hit.text, 200));
        }
    }
    Ok(())
}

/// `<cache>/indexes/<corpus hash>-<model>-<identity>`: one index per corpus
/// and model identity (so a base model and its adapter keep separate indexes).
fn default_index_dir(args: &Args, identity: &str) -> PathBuf {
    let corpus = std::fs::canonicalize(&args.corpus).unwrap_or_else(|_| args.corpus.clone());
    let hash = hex::encode(&Sha256::digest(corpus.display().to_string().as_bytes())[..8]);
    let model: String = args
        .model
        .model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    reasonembed_models::source::cache_dir()
        .join("indexes")
        .join(format!("{hash}-{model}-{}", &identity[..12]))
}

/// The first `max` characters of `text`, on one line.
fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
