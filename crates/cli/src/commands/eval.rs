//! `reasonembed eval`: trec_eval-exact metrics on TREC files, and the BRIGHT
//! and BEIR evaluation protocols end to end.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reasonembed_data::bright::BrightData;
use reasonembed_data::{BeirDataset, trec};
use reasonembed_eval::beir::BeirTask;
use reasonembed_eval::bright::{self, BrightOptions, query_config};
use reasonembed_eval::instructions::InstructionSet;
use reasonembed_eval::report::Report;
use reasonembed_eval::retriever::{DenseRetriever, Retriever};
use reasonembed_eval::trec_eval;
use reasonembed_eval::{beir, published};
use reasonembed_models::{Embedder, Prompt};
use reasonembed_search::bm25::Bm25Params;
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_search::fusion::Fusion;
use serde_json::json;

use super::shared::{ModelArgs, ReasonArgs, Reasoning};
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

/// trec_eval 10.0 drop-in: evaluate a run file against qrels.
///
/// `reasonembed eval trec [-q] [-c] [-M N] [-l N] [-m MEASURE]... QRELS RUN` prints what
/// trec_eval prints, line for line: without -m, its default measures; `-m all_trec` every
/// measure of that set; `-m P.5,10` a measure with parameters. Queries are those of the qrels
/// with results in the run (-c: every query of the qrels, a missing one scoring 0).
#[derive(clap::Args, Debug)]
struct TrecArgs {
    /// QRELS and RUN, as trec_eval takes them (or give --qrels and --run).
    #[arg(value_name = "FILE", num_args = 0..=2)]
    files: Vec<PathBuf>,
    /// Qrels file: `qid iter docid rel` (or BEIR TSV with a header).
    #[arg(long)]
    qrels: Option<PathBuf>,
    /// Run file: `qid Q0 docid rank score tag`.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Measure, nickname (official, all_trec, set) or measure.params (P.5,10; ndcg.1=3,2=9); repeatable [default: official].
    #[arg(short = 'm', long = "measure", value_name = "MEASURE")]
    measures: Vec<String>,
    /// Also print every query's values.
    #[arg(short = 'q', long, alias = "query_eval_wanted")]
    per_query: bool,
    /// Average over every query of the qrels; queries missing from the run score 0.
    #[arg(short = 'c', long, alias = "complete_rel_info_wanted")]
    complete: bool,
    /// Evaluate only the best N documents of each query.
    #[arg(short = 'M', long, value_name = "N", alias = "Max_retrieved_per_topic", value_parser = clap::value_parser!(u64).range(1..))]
    max_retrieved: Option<u64>,
    /// Smallest judgement that counts as relevant.
    #[arg(
        short = 'l',
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true,
        alias = "level_for_rel"
    )]
    level_for_rel: i64,
    /// Drop unjudged documents from each ranking before evaluating.
    #[arg(short = 'J', long, alias = "Judged_docs_only")]
    judged_only: bool,
    /// Number of documents in the collection (for utility's fourth coefficient).
    #[arg(
        short = 'N',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true,
        alias = "Number_docs_in_coll"
    )]
    num_docs_in_coll: i64,
    /// Print no summary (`all`) lines.
    #[arg(short = 'n', long, alias = "nosummary")]
    no_summary: bool,
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
    /// Dense and BM25 fused: rrf[:K] (reciprocal-rank fusion, K 60), minmax[:W] or zscore[:W]
    /// (normalised scores, W the dense weight, 0.5). Each side keeps its best --top-k first.
    #[arg(long, value_name = "FUSION", value_parser = Fusion::parse)]
    hybrid: Option<Fusion>,
    #[command(flatten)]
    reason: ReasonArgs,
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
    /// The model's sentence-transformers prompt for queries, by name [default: its `query`
    /// prompt, else its default prompt, if it has one].
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
    let (qrels_path, run_path) = match (&args.files[..], &args.qrels, &args.run) {
        ([qrels, run], None, None) => (qrels, run),
        ([], Some(qrels), Some(run)) => (qrels, run),
        ([run], Some(qrels), None) => (qrels, run),
        _ => bail!("give the qrels and the run: `eval trec QRELS RUN` or `eval trec --qrels QRELS --run RUN`"),
    };
    let measures = if args.measures.is_empty() {
        trec_eval::Measures::official()
    } else {
        trec_eval::Measures::parse(&args.measures).map_err(anyhow::Error::msg)?
    };
    let options = trec_eval::Options {
        relevance_level: args.level_for_rel,
        max_retrieved: args.max_retrieved.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        complete: args.complete,
        judged_only: args.judged_only,
        num_docs_in_coll: args.num_docs_in_coll,
        scores: trec_eval::Scores::Double,
    };
    let qrels = reasonembed_data::retrieval::read_any_qrels_strict(qrels_path)?;
    let run = trec::read_run_file(run_path)?;
    if let Some((line, fields)) = run.extra_fields {
        eprintln!(
            "note: {}:{line}: {fields} fields; those after the sixth (the run tag) are ignored, as trec_eval ignores them",
            run_path.display()
        );
    }
    let evaluation = trec_eval::evaluate(&qrels, &run.run, &run.tag, &measures, &options)
        .map_err(|e| anyhow::anyhow!("{} against {}: {e}", run_path.display(), qrels_path.display()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(evaluation.format(args.per_query, !args.no_summary).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Refuses flags that cannot go together, before any data or model is read.
fn check(args: &RunArgs) -> Result<()> {
    if args.top_k == 0 || args.batch_size == 0 {
        bail!("--top-k and --batch-size must be at least 1");
    }
    if args.model.model == "bm25" && args.hybrid.is_some() {
        bail!("--hybrid fuses a dense model with BM25: give the dense model with --model");
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
    let dense = Box::new(DenseRetriever {
        embedder,
        cache,
        batch_size: args.batch_size,
        query_max_length: args.query_max_length,
        doc_max_length: args.doc_max_length,
    });
    Ok(match args.hybrid {
        Some(fusion) => Retriever::Hybrid {
            dense,
            bm25: Bm25Params::default(),
            fusion,
        },
        None => Retriever::Dense(dense),
    })
}

/// The results folder: --out, else one per benchmark, model, fusion and
/// reasoning setting, so that no run overwrites another setting's results.
fn out_dir(args: &RunArgs, benchmark: &str) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let mut name = args.model.model.clone();
        if let Some(fusion) = args.hybrid {
            name.push_str(&format!("-hybrid-{fusion}"));
        }
        if args.reason.reason {
            name.push_str(&format!("-reason-{}", args.reason.llm.llm_model));
        }
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        PathBuf::from("results").join(format!("{benchmark}-{}", slug.trim_matches('_')))
    })
}

fn bright(args: BrightArgs) -> Result<()> {
    check(&args.run)?;
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
    // BRIGHT's BM25 takes no instruction.
    let default_instructions = if args.run.model.model == "bm25" {
        "none"
    } else {
        "reasonembed"
    };
    let instructions = args.instructions.as_deref().unwrap_or(default_instructions);
    let options = BrightOptions {
        tasks: args.tasks.clone(),
        long: args.long,
        queries: query_config(&args.queries),
        instructions: InstructionSet::parse(instructions).map_err(anyhow::Error::msg)?,
        top_k: args.run.top_k,
    };
    let retriever = retriever(&args.run)?;
    let reasoner = args.run.reason.reasoner()?.map(Reasoning);
    let dataset = json!({ "name": "BRIGHT", "source": root.display().to_string(), "revision": revision });
    let mut bars = Bars::new(args.run.quiet);
    let report = bright::evaluate(
        &retriever,
        reasoner.as_ref().map(|r| r as _),
        &data,
        &options,
        &args.run.model.model,
        dataset,
        &mut bars,
    )?;
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
    check(&args.run)?;
    let (dataset, source) = match (&args.data, &args.corpus, &args.queries, &args.qrels) {
        (Some(dir), ..) => (BeirDataset::open(dir, &args.split)?, dir.clone()),
        (None, Some(c), Some(q), Some(r)) => (BeirDataset::from_files(c, q, r)?, c.clone()),
        _ => bail!("give a BEIR folder with --data, or --corpus, --queries and --qrels"),
    };
    let task = BeirTask {
        name: source
            .file_stem()
            .map_or("beir".into(), |n| n.to_string_lossy().into_owned()),
        source: source.display().to_string(),
        split: args.split.clone(),
        dataset,
        top_k: args.run.top_k,
    };
    let retriever = retriever(&args.run)?;
    let reasoner = args.run.reason.reasoner()?.map(Reasoning);
    let prompt = Prompt::from_flags(args.instruction.as_deref(), args.prompt_name.as_deref());
    let mut bars = Bars::new(args.run.quiet);
    let report = beir::report(
        &retriever,
        reasoner.as_ref().map(|r| r as _),
        &args.run.model.model,
        task,
        &prompt,
        &mut bars,
    )?;
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
