//! `reasonembed serve`: an embedding server for existing clients.

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::NonEmptyStringValueParser;
use reasonembed_models::{Embedder, EmbedderOptions};
use reasonembed_search::index::PassageIndex;
use reasonembed_search::pgvector::PgVectorIndex;
use reasonembed_server::{Limits, Settings};
use reasonembed_server::{Search, SearchIndex};

use super::shared::{ModelArgs, ReasonArgs};

/// Serve a model over HTTP: OpenAI's POST /v1/embeddings and text-embeddings-inference's
/// POST /embed (also at POST /, where TEI's official client posts), GET /health (also GET /),
/// GET /info and GET /metrics, and POST /search with --index or --pgvector.
///
/// Each text is queued on its own and one inference worker batches them under a token budget
/// (--max-batch-tokens), so a large request spans several batches. Texts longer than the
/// model's max length are truncated (or refused with --no-auto-truncate); very long ones are
/// first cut to 250 characters per token of the max length, as TEI does, so a multi-megabyte
/// text is not tokenised in full. Beyond --max-concurrent-requests the server answers 429.
/// With --api-key (or REASONEMBED_API_KEY) every route but the health probes (GET /health and
/// GET /) needs `Authorization: Bearer KEY` (401 otherwise): /v1/embeddings, /embed, POST /,
/// /search, /info and /metrics. SIGTERM or Ctrl-C stops accepting connections and finishes the
/// requests in flight.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one).
    #[arg(short, long, default_value_t = 3000)]
    port: u16,
    /// Bearer token required from clients on every route but GET /health and GET /
    /// (`Authorization: Bearer KEY`, the scheme in any case).
    #[arg(long, env = "REASONEMBED_API_KEY", hide_env_values = true, value_parser = NonEmptyStringValueParser::new())]
    api_key: Option<String>,
    /// Padded tokens (texts times the longest) per inference batch; at least the model's max
    /// length.
    #[arg(long, default_value_t = 16_384, value_parser = at_least_one::<usize>)]
    max_batch_tokens: usize,
    /// Requests handled at once; more get 429.
    #[arg(long, default_value_t = 512, value_parser = at_least_one::<usize>)]
    max_concurrent_requests: usize,
    /// Inputs per request to POST /embed and POST / (TEI's limit).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    max_client_batch_size: usize,
    /// Inputs per request to POST /v1/embeddings (OpenAI's limit).
    #[arg(long, default_value_t = 2048, value_parser = at_least_one::<usize>)]
    max_openai_inputs: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2_000_000, value_parser = at_least_one::<usize>)]
    payload_limit: usize,
    /// Seconds a client has to send a request's headers (from connecting, or since its last
    /// answer on a kept-alive connection, which is closed after it) and then its body (408).
    /// Behind a load balancer keep it above the balancer's idle timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 75, value_parser = at_least_one::<u64>)]
    read_timeout: u64,
    /// Answer 413 to inputs longer than the model's max length instead of truncating them.
    #[arg(long)]
    no_auto_truncate: bool,
    /// More models to serve: the base model with a LoRA adapter (PEFT layout), chosen per
    /// request by `model: NAME` (repeat for several).
    #[arg(long = "adapters", value_name = "NAME=DIR")]
    adapters: Vec<String>,
    /// An index built by `reasonembed search --index DIR` with the same model, for POST /search.
    #[arg(long, conflicts_with = "pgvector")]
    index: Option<std::path::PathBuf>,
    /// Search a pgvector table written by `reasonembed index export` instead of a local index
    /// (a PostgreSQL URL, e.g. postgres://user@host:5432/db).
    #[arg(long, value_name = "URL", env = "REASONEMBED_PGVECTOR_URL", hide_env_values = true)]
    pgvector: Option<String>,
    /// The pgvector table to search.
    #[arg(long, default_value = "passages", requires = "pgvector")]
    pg_table: String,
    /// With --reason, POST /search takes `"reason": true`: the LLM reasons about the query
    /// first (answers cached, as for eval). `"hybrid": "rrf"` fuses with BM25 (--index only).
    #[command(flatten)]
    reason: ReasonArgs,
}

/// A count or a number of seconds, which must be at least 1 (0 would refuse
/// every request or disable the limit).
fn at_least_one<T: FromStr<Err: Display> + Default + PartialEq>(value: &str) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(n) if n == T::default() => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: Args) -> Result<()> {
    let options = args.model.options()?;
    // The server normalises per request (TEI's `normalize`); this is the default.
    let normalize_default = !args.model.no_normalize;
    let mut models = Vec::new();
    for spec in &args.adapters {
        let (name, dir) = spec
            .split_once('=')
            .with_context(|| format!("--adapters takes NAME=DIR, not '{spec}'"))?;
        let adapted = EmbedderOptions {
            adapter: Some(dir.into()),
            ..options.clone()
        };
        let embedder = Embedder::from_spec(&args.model.model, adapted)
            .with_context(|| format!("cannot load adapter '{name}' from {dir}"))?;
        models.push((name.to_string(), embedder));
    }
    let embedder = Embedder::from_spec(&args.model.model, options)
        .with_context(|| format!("cannot load model '{}'", args.model.model))?;
    let max_length = embedder.info().max_length;
    anyhow::ensure!(
        args.max_batch_tokens >= max_length,
        "--max-batch-tokens {} is below the model's max length {max_length}: a full-length text would not fit \
         in a batch",
        args.max_batch_tokens
    );
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("invalid address {}:{}", args.host, args.port))?;
    let index = match (&args.index, &args.pgvector) {
        (Some(dir), _) => {
            let index = PassageIndex::open(dir)?;
            check_model(index.model(), &embedder).with_context(|| format!("index {}", dir.display()))?;
            Some(SearchIndex::Local(index))
        }
        (None, Some(url)) => {
            let index = PgVectorIndex::connect(url, &args.pg_table)?;
            check_model(index.model(), &embedder).with_context(|| format!("pgvector table {}", args.pg_table))?;
            Some(SearchIndex::Pgvector(Box::new(index)))
        }
        (None, None) => None,
    };
    anyhow::ensure!(
        index.is_some() || !args.reason.reason,
        "--reason serves POST /search: give --index or --pgvector"
    );
    let search = match index {
        Some(index) => Some(Search {
            index,
            reasoner: args.reason.reasoner()?,
        }),
        None => None,
    };
    let limits = Limits {
        max_batch_tokens: args.max_batch_tokens,
        payload_bytes: args.payload_limit,
        max_client_batch_size: args.max_client_batch_size,
        max_openai_inputs: args.max_openai_inputs,
        max_concurrent: args.max_concurrent_requests,
        auto_truncate: !args.no_auto_truncate,
        read_timeout: Duration::from_secs(args.read_timeout),
    };
    let settings = Settings {
        model_name: args.model.model.clone(),
        normalize_default,
        api_key: args.api_key,
        limits,
    };
    models.insert(0, (args.model.model.clone(), embedder));
    reasonembed_server::serve(models, settings, search, addr, |bound| {
        eprintln!("listening on http://{bound}")
    })
    .with_context(|| format!("cannot serve on {addr}"))
}

/// Passages embedded with `model` can be searched with `embedder`'s vectors:
/// the same identity (checkpoint and adapter bytes, settings, code version).
fn check_model(model: &serde_json::Value, embedder: &Embedder) -> Result<()> {
    anyhow::ensure!(
        model.get("identity").and_then(|v| v.as_str()) == Some(embedder.identity()?),
        "built with another model, adapter or settings, or by another version ({model}); \
         rebuild it with this model and these flags"
    );
    Ok(())
}
