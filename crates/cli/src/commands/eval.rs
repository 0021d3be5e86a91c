//! `reasonembed eval`: trec_eval-exact metrics on TREC files, and the BRIGHT
//! and BEIR evaluation protocols end to end.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reasonembed_data::bright::{BrightData, LONG_TASKS, TASKS};
use reasonembed_data::{BeirDataset, trec};
use reasonembed_eval::bright::{BrightOptions, evaluate_task, query_config};
use reasonembed_eval::instructions::InstructionSet;
use reasonembed_eval::metrics::{self, Measure};
use reasonembed_eval::report::Report;
use reasonembed_eval::retriever::{DenseRetriever, Retriever};
use reasonembed_eval::{beir, published};
use reasonembed_models::{Embedder, with_instruction};
use reasonembed_search::bm25::Bm25Params;
use reasonembed_search::cache::EmbeddingCache;
use serde_json::json;

use super::shared::ModelArgs;
use crate::progress::Bars;

/// Evaluate retrieval: metrics on TREC files, or a model on BRIGHT or a BEIR collection.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    Trec(TrecArgs),
    Bright(BrightArgs),
    Beir(BeirArgs),
}

/// trec_eval-compatible metrics for a run file against qrels.
///
/// Prints `measure<TAB>qid<TAB>value` lines as trec_eval does, with `all` for the mean
/// over the queries present in both files (pytrec_eval's query set).
#[derive(clap::Args, Debug)]
struct TrecArgs {
    /// Qrels file: `qid iter docid rel` (or BEIR TSV with a header).
    #[arg(long)]
    qrels: PathBuf,
    /// Run file: `qid Q0 docid rank score tag`.
    #[arg(long)]
    run: PathBuf,
    /// Measures: ndcg_cut.k, recall.k, P.k, map, map_cut.k, recip_rank (k lists like 5,10).
    #[arg(short = 'm', long = "measure", default_values = ["ndcg_cut.10", "map", "recip_rank", "P.10", "recall.100"])]
    measures: Vec<String>,
    /// Also print every query's values.
    #[arg(short = 'q', long)]
    per_query: bool,
}

/// Options shared by the BRIGHT and BEIR evaluations.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Model: as for embed, or `bm25` for BRIGHT's query-side BM25 baseline.
    #[command(flatten)]
    model: ModelArgs,
    /// Maximum tokens per query [default: --max-length].
    #[arg(long, value_name = "N")]
    query_max_length: Option<usize>,
    /// Maximum tokens per document [default: --max-length].
    #[arg(long, value_name = "N")]
    doc_max_length: Option<usize>,
    /// Results kept per query (BRIGHT uses 1,000; ReasonEmbed reported 2,000).
    #[arg(long, default_value_t = 1000)]
    top_k: usize,
    /// Texts per forward pass.
    #[arg(short, long, default_value_t = 32)]
    batch_size: usize,
    /// Folder for results.json, results.md and runs/ [default: results/<benchmark>-<model>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Embed the corpus again instead of reusing cached embeddings.
    #[arg(long)]
    no_cache: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Evaluate on BRIGHT with its official protocol (nDCG@10 per task and averaged).
///
/// Reads the Hugging Face layout of xlangai/BRIGHT (<config>/<task>-*.parquet) or the same
/// rows as <config>/<task>.jsonl. BRIGHT's corpora must be supplied: they are not shipped.
#[derive(clap::Args, Debug)]
struct BrightArgs {
    #[command(flatten)]
    run: RunArgs,
    /// BRIGHT folder (configs examples, documents, long_documents, *_reason).
    #[arg(long, conflicts_with = "revision")]
    data: Option<PathBuf>,
    /// xlangai/BRIGHT at this Hub revision, from the Hugging Face cache (or downloaded with the `hub` feature).
    #[arg(long)]
    revision: Option<String>,
    /// Comma-separated tasks [default: all twelve, or the eight long ones with --long].
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Long documents, judged by gold_ids_long.
    #[arg(long)]
    long: bool,
    /// Query variant: original, or a reasoning config such as gpt4_reason.
    #[arg(long, default_value = "original")]
    queries: String,
    /// Query instructions: reasonembed, bright, bright-bge, none, or a JSON file of task → instruction
    /// [default: reasonembed; none for bm25, which BRIGHT runs without instructions].
    #[arg(long)]
    instructions: Option<String>,
    /// Print our numbers beside a published row (name or part of it, e.g. "ReasonIR").
    #[arg(long)]
    compare: Option<String>,
}

/// Evaluate on a BEIR-style collection (corpus.jsonl, queries.jsonl, qrels/<split>.tsv),
/// or on your own corpus, queries and qrels files.
#[derive(clap::Args, Debug)]
struct BeirArgs {
    #[command(flatten)]
    run: RunArgs,
    /// BEIR folder.
    #[arg(long, required_unless_present_all = ["corpus", "queries", "qrels"], conflicts_with_all = ["corpus", "queries", "qrels"])]
    data: Option<PathBuf>,
    /// Corpus JSONL (`_id`/`id`, `text`/`content`, optional `title`), instead of --data.
    #[arg(long, requires_all = ["queries", "qrels"])]
    corpus: Option<PathBuf>,
    /// Queries JSONL (`_id`/`id`, `text`/`query`).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Qrels: TREC (`qid iter docid rel`) or BEIR TSV.
    #[arg(long)]
    qrels: Option<PathBuf>,
    /// Qrels split.
    #[arg(long, default_value = "test")]
    split: String,
    /// Query instruction, in the ReasonEmbed format.
    #[arg(long, conflicts_with = "prompt_name")]
    instruction: Option<String>,
    /// The model's sentence-transformers prompt for queries.
    #[arg(long)]
    prompt_name: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        EvalCommand::Trec(a) => trec_eval(a),
        EvalCommand::Bright(a) => bright(a),
        EvalCommand::Beir(a) => beir_eval(a),
    }
}

fn trec_eval(args: TrecArgs) -> Result<()> {
    let mut measures: Vec<Measure> = args
        .measures
        .iter()
        .map(|m| Measure::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?
        .concat();
    measures.sort();
    measures.dedup();
    let qrels = reasonembed_data::retrieval::read_any_qrels(&args.qrels)?;
    let run = trec::read_run(&args.run)?;
    let per_query =
        metrics::evaluate(&qrels, &run, &measures).map_err(|e| anyhow::anyhow!("{}: {e}", args.run.display()))?;
    // As trec_eval prints: per-query blocks in qid byte order, then `all`.
    let mut blocks: Vec<(&str, std::collections::BTreeMap<String, f64>)> = Vec::new();
    if args.per_query {
        blocks.extend(per_query.iter().map(|(qid, values)| (qid.as_str(), values.clone())));
    }
    blocks.push(("all", metrics::mean(&per_query)));
    for (qid, values) in blocks {
        for m in &measures {
            let name = m.to_string();
            println!("{name:<22}\t{qid}\t{:6.4}", values.get(&name).copied().unwrap_or(0.0));
        }
    }
    Ok(())
}

/// The retriever `--model` asks for.
fn retriever(args: &RunArgs) -> Result<Retriever> {
    if args.model.model == "bm25" {
        return Ok(Retriever::Bm25(Bm25Params::default()));
    }
    let embedder = Embedder::from_spec(&args.model.model, args.model.options()?)
        .with_context(|| format!("cannot load model '{}'", args.model.model))?;
    let cache = if args.no_cache {
        EmbeddingCache::disabled()
    } else {
        EmbeddingCache::new(reasonembed_models::source::cache_dir().join("embeddings"))
    };
    Ok(Retriever::Dense(Box::new(DenseRetriever {
        embedder,
        cache,
        batch_size: args.batch_size,
        query_max_length: args.query_max_length,
        doc_max_length: args.doc_max_length,
    })))
}

fn model_json(retriever: &Retriever, spec: &str) -> serde_json::Value {
    match retriever {
        Retriever::Dense(d) => json!({ "spec": spec, "info": d.embedder.info() }),
        Retriever::Bm25(p) => json!({ "spec": "bm25", "k1": p.k1, "b": p.b }),
    }
}

fn out_dir(args: &RunArgs, benchmark: &str) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let slug: String = args
            .model
            .model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        PathBuf::from("results").join(format!("{benchmark}-{}", slug.trim_matches('_')))
    })
}

fn bright(args: BrightArgs) -> Result<()> {
    let start = Instant::now();
    let (root, revision) = match (&args.data, &args.revision) {
        (Some(dir), _) => (dir.clone(), None),
        (None, Some(rev)) => {
            let patterns = ["examples/*", "documents/*", "long_documents/*", "*_reason/*"];
            (
                reasonembed_models::source::resolve_dataset("xlangai/BRIGHT", rev, "examples", &patterns)?,
                Some(rev.clone()),
            )
        }
        (None, None) => bail!("give the BRIGHT folder with --data DIR, or a Hub revision with --revision REV"),
    };
    let data = BrightData::open(&root)?;
    let tasks: Vec<String> = if args.tasks.is_empty() {
        let all: &[&str] = if args.long { &LONG_TASKS } else { &TASKS };
        all.iter().map(|t| t.to_string()).collect()
    } else {
        args.tasks.clone()
    };
    // BRIGHT's BM25 takes no instruction.
    let default_instructions = if args.run.model.model == "bm25" {
        "none"
    } else {
        "reasonembed"
    };
    let instructions = args.instructions.as_deref().unwrap_or(default_instructions);
    let options = BrightOptions {
        tasks: tasks.clone(),
        long: args.long,
        queries: query_config(&args.queries),
        instructions: InstructionSet::parse(instructions).map_err(anyhow::Error::msg)?,
        top_k: args.run.top_k,
    };
    let mut retriever = retriever(&args.run)?;
    let mut bars = Bars::new(args.run.quiet);
    let mut results = Vec::new();
    for task in &options.tasks {
        bars.context = task.clone();
        let result = evaluate_task(&mut retriever, &data, task, &options, &mut bars)
            .with_context(|| format!("BRIGHT task '{task}'"))?;
        eprintln!(
            "{task}: nDCG@10 {:.4} over {} queries, {} documents ({} id collisions, {} distinct texts)",
            result.metrics.get("ndcg_cut_10").copied().unwrap_or(0.0),
            result.evaluated_queries,
            result.corpus.distinct_ids,
            result.corpus.id_collisions,
            result.corpus.distinct_texts
        );
        results.push(result);
    }
    let settings = json!({
        "long": options.long, "queries": options.queries, "instructions": options.instructions.name(), "top_k": options.top_k,
        "query_max_length": args.run.query_max_length, "doc_max_length": args.run.doc_max_length, "batch_size": args.run.batch_size,
        "tasks": tasks,
    });
    let dataset = json!({ "name": "BRIGHT", "source": root.display().to_string(), "revision": revision });
    let report = Report::new(
        "BRIGHT",
        model_json(&retriever, &args.run.model.model),
        dataset,
        settings,
        results,
        start.elapsed().as_secs_f64(),
    );
    finish(&report, &args.run, "bright")?;
    if let Some(name) = &args.compare {
        let rows = published::find(name);
        if rows.is_empty() {
            bail!("no published row matches '{name}'");
        }
        for row in rows {
            println!("\n{}", report.compare(&row));
        }
    }
    Ok(())
}

fn beir_eval(args: BeirArgs) -> Result<()> {
    let start = Instant::now();
    let (dataset, source) = match (&args.data, &args.corpus, &args.queries, &args.qrels) {
        (Some(dir), ..) => (BeirDataset::open(dir, &args.split)?, dir.clone()),
        (None, Some(c), Some(q), Some(r)) => (BeirDataset::from_files(c, q, r)?, c.clone()),
        _ => bail!("give a BEIR folder with --data, or --corpus, --queries and --qrels"),
    };
    let name = source
        .file_stem()
        .map_or("beir".into(), |n| n.to_string_lossy().into_owned());
    let mut retriever = retriever(&args.run)?;
    let prompt = match (&args.instruction, &args.prompt_name, &retriever) {
        (Some(i), _, _) => with_instruction(i, ""),
        (None, Some(p), Retriever::Dense(d)) => d
            .embedder
            .prompts()
            .get(p)
            .cloned()
            .with_context(|| format!("the model has no prompt named '{p}'"))?,
        _ => String::new(),
    };
    let mut bars = Bars::new(args.run.quiet);
    let result = beir::evaluate(&mut retriever, &name, dataset, &prompt, args.run.top_k, &mut bars)?;
    let settings = json!({ "split": args.split, "top_k": args.run.top_k, "query_prompt": prompt,
        "query_max_length": args.run.query_max_length, "doc_max_length": args.run.doc_max_length });
    let dataset = json!({ "name": name, "source": source.display().to_string() });
    let report = Report::new(
        "BEIR",
        model_json(&retriever, &args.run.model.model),
        dataset,
        settings,
        vec![result],
        start.elapsed().as_secs_f64(),
    );
    for (k, v) in &report.tasks[0].metrics {
        println!("{k:<22}\t{v:.4}");
    }
    finish(&report, &args.run, "beir")
}

/// Prints the table and writes the report.
fn finish(report: &Report, args: &RunArgs, benchmark: &str) -> Result<()> {
    let dir = out_dir(args, benchmark);
    println!("\n{}", report.markdown(&args.model.model));
    report.write(&dir, &args.model.model)?;
    eprintln!("results in {} ({:.1} s)", dir.display(), report.elapsed_seconds);
    Ok(())
}
