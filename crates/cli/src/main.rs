//! `reasonembed`: embed, search, evaluate, train and serve text embedders for
//! reasoning-intensive retrieval (ReasonEmbed, Chen et al., ACL 2026).
//!
//! This crate is only the command line: it parses flags, shows progress and
//! reports errors, and calls the pipeline crates for the work itself.

mod commands;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Text embeddings for reasoning-intensive retrieval, offline by default.
///
/// Models are given with --model as a local folder (Hugging Face /
/// sentence-transformers layout), a built-in name (`minilm`, fetched into the
/// cache on first use) or a Hugging Face id (`owner/name[@revision]`, read
/// from the Hugging Face cache).
#[derive(Parser)]
#[command(name = "reasonembed", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Search(commands::search::Args),
    Embed(commands::embed::Args),
    Eval(commands::eval::Args),
    Train(Box<commands::train::Args>),
    Serve(Box<commands::serve::Args>),
    Index(commands::index::Args),
    Synth(commands::synth::Args),
    Pull(commands::pull::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Synth(_)) {
        dequantize_gguf_weights();
    }
    let quiet = match &cli.command {
        Command::Embed(a) => a.quiet,
        Command::Search(a) => a.quiet,
        _ => false,
    };
    init_logging(quiet);
    let result = match cli.command {
        Command::Search(args) => commands::search::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Index(args) => commands::index::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Pull(args) => commands::pull::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once (our errors often already quote
/// their source).
fn describe(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

/// The embedded LLM answers about ten times faster on CPU with its GGUF
/// weights dequantised to f32 at load (prompt processing then runs on a
/// dense matrix product), at four times the memory: 0.5 GB for SmolLM2.
/// candle reads this switch once per thread, so it is set here, before any
/// thread starts; an explicit `CANDLE_DEQUANTIZE_ALL=0` keeps the weights
/// quantised.
fn dequantize_gguf_weights() {
    if std::env::var_os("CANDLE_DEQUANTIZE_ALL").is_none() {
        // SAFETY: the process is still single-threaded here.
        unsafe { std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1") };
    }
}

/// Logs go to stderr, at `info` unless `RUST_LOG` says otherwise.
fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        // A closed stderr (a server whose parent went away) must not turn a
        // log line into a panic: tracing would report the failed write with eprintln.
        .log_internal_errors(false)
        .init();
}
