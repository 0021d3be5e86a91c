//! `reasonembed embed`: a file of texts in, a file of embeddings out.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use reasonembed_data::{EmbeddingWriter, InputOptions, read_texts};
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::cache::EmbeddingCache;

use super::shared::ModelArgs;
use crate::progress;

/// Embed texts from a .txt (one per line) or .jsonl file into .npy, .jsonl or .safetensors.
///
/// Output rows follow input order. Queries get `Instruct: {instruction}\nQuery: {text}`
/// with --instruction (the ReasonEmbed format) or a sentence-transformers prompt with
/// --prompt-name; otherwise the model's default prompt applies, if it names one
/// (sentence-transformers' `encode`).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  reasonembed embed docs.txt -o docs.npy\n  reasonembed embed --instruction 'Given a question, retrieve passages that answer it' queries.jsonl -o q.npy"
)]
pub struct Args {
    /// Input file: .txt (one text per line) or .jsonl (one object per line).
    pub input: PathBuf,

    /// Output file; the format follows the extension: .npy, .jsonl or .safetensors.
    #[arg(short, long)]
    pub output: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Task instruction for queries, in the ReasonEmbed format `Instruct: …\nQuery: …`.
    #[arg(long, conflicts_with = "prompt_name")]
    pub instruction: Option<String>,

    /// Prefix texts with the model's sentence-transformers prompt of this name (e.g. query)
    /// [default: the model's default_prompt_name, if any].
    #[arg(long)]
    pub prompt_name: Option<String>,

    /// JSONL field holding the text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub field: String,

    /// Skip blank lines (and empty JSONL texts) instead of failing on them.
    #[arg(long)]
    pub skip_empty: bool,

    /// Texts per forward pass.
    #[arg(short, long, default_value_t = 32)]
    pub batch_size: usize,

    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Do not keep (or reuse) the embeddings in the cache. With the cache, a run that is
    /// interrupted resumes from its last finished chunk of 1,024 texts.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if same_file(&args.input, &args.output) {
        bail!(
            "{}: the output would overwrite the input; choose another --output",
            args.output.display()
        );
    }
    // Open the output first, so an unwritable destination fails before any work.
    let writer = EmbeddingWriter::create(&args.output)?;
    let options = InputOptions {
        field: args.field.clone(),
        skip_empty: args.skip_empty,
    };
    let texts = read_texts(&args.input, &options)?;
    if texts.is_empty() {
        bail!("{}: no texts to embed", args.input.display());
    }
    let embedder = Embedder::from_spec(&args.model.model, args.model.options()?)
        .with_context(|| format!("cannot load model '{}'", args.model.model))?;
    let options = EncodeOptions {
        prompt: Prompt::from_flags(args.instruction.as_deref(), args.prompt_name.as_deref()),
        batch_size: args.batch_size,
        ..Default::default()
    };

    let start = Instant::now();
    let bar = progress::bar(texts.len() as u64, "texts", args.quiet);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Through the embedding cache: a killed run resumes from its finished chunks.
    let cache = if args.no_cache {
        EmbeddingCache::disabled()
    } else {
        EmbeddingCache::new(reasonembed_models::source::cache_dir().join("embeddings"))
    };
    let embeddings = cache.embed(&embedder, &refs, &options, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    writer.commit(&embeddings.data, embeddings.dim)?;

    if !args.quiet {
        let secs = start.elapsed().as_secs_f64();
        let fresh = match embeddings.tokens {
            0 => "all from the cache".to_string(),
            t => format!("{t} tokens embedded, {:.0} tokens/s", t as f64 / secs),
        };
        eprintln!(
            "embedded {} texts ({fresh}) in {secs:.2} s: {:.1} texts/s → {} [{} × {}]",
            embeddings.len(),
            embeddings.len() as f64 / secs,
            args.output.display(),
            embeddings.len(),
            embeddings.dim,
        );
    }
    Ok(())
}

/// Whether two paths name the same file, links included (the output may not exist yet).
fn same_file(input: &std::path::Path, output: &std::path::Path) -> bool {
    same_file::is_same_file(input, output).unwrap_or(false)
}
