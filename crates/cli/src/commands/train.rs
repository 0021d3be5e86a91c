//! `reasonembed train`: Redapter (or plain InfoNCE) training.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use reasonembed_train::TrainConfig;
use reasonembed_train::trainer::Start;
use serde::Serialize;

use crate::progress::Bars;

/// Train an embedder with Redapter (reasoning-intensity-weighted InfoNCE) or plain InfoNCE.
///
/// Data: FlagEmbedding JSONL files, one per domain (query, pos, neg, and optionally prompt,
/// reasoning_query, train_group_size, batch_size). Defaults follow the ReasonEmbed recipe
/// (print them with --print-config); a TOML file sets any of them, and every flag overrides
/// the file. Writes metrics.jsonl, checkpoints, loss and reasoning-intensity plots, the
/// model as a sentence-transformers folder and, for LoRA, a PEFT adapter into --output.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  reasonembed train --model minilm --data train/ --loss infonce --finetune full --output runs/minilm"
)]
pub struct Args {
    /// A TOML file of settings (keys as printed by --print-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the resolved configuration (defaults, file and flags) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Continue from the latest checkpoint in --output.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start afresh in an --output that holds an earlier run, removing that run's
    /// checkpoints, logs, plots and exported model first (without it, such a folder is refused).
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    settings: Settings,
}

/// Every setting of the configuration, as a flag.
#[derive(clap::Args, Debug, Serialize)]
struct Settings {
    /// Model to start from: a folder, a built-in name or a Hub id.
    #[arg(short, long)]
    model: Option<String>,
    /// Training files or folders of them (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    data: Vec<PathBuf>,
    /// Output folder.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// redapter or infonce.
    #[arg(long)]
    loss: Option<String>,
    #[arg(long, value_parser = finite)]
    temperature: Option<f64>,
    #[arg(long)]
    epochs: Option<u64>,
    /// Stop after this many steps (0: the whole schedule).
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long, value_parser = finite)]
    learning_rate: Option<f64>,
    #[arg(long, value_parser = finite)]
    warmup_ratio: Option<f64>,
    #[arg(long, value_parser = finite)]
    weight_decay: Option<f64>,
    #[arg(long, value_parser = finite)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Queries per batch (records' batch_size wins).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Passages per query: 1 positive + G−1 negatives (records' train_group_size wins).
    #[arg(long)]
    group_size: Option<usize>,
    #[arg(long)]
    query_max_length: Option<usize>,
    #[arg(long)]
    passage_max_length: Option<usize>,
    /// Texts per forward pass.
    #[arg(long)]
    chunk_size: Option<usize>,
    /// GradCache on (true) or off (false).
    #[arg(long)]
    grad_cache: Option<bool>,
    /// lora or full.
    #[arg(long)]
    finetune: Option<String>,
    #[arg(long)]
    lora_rank: Option<usize>,
    #[arg(long, value_parser = finite)]
    lora_alpha: Option<f64>,
    #[arg(long, value_parser = finite)]
    lora_dropout: Option<f64>,
    /// Module names (q_proj, query, …) or all-linear.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lora_target_modules: Vec<String>,
    /// Also write the model with the adapter merged.
    #[arg(long)]
    merge_lora: Option<bool>,
    #[arg(long)]
    redapter_start_step: Option<i64>,
    /// clamp or none.
    #[arg(long)]
    redapter_mapping: Option<String>,
    #[arg(long, value_parser = finite)]
    redapter_clamp_min: Option<f64>,
    #[arg(long, value_parser = finite)]
    redapter_clamp_max: Option<f64>,
    /// l1 or none.
    #[arg(long)]
    redapter_normalization: Option<String>,
    #[arg(long)]
    query_instruction_format: Option<String>,
    /// Instruction for records without a prompt.
    #[arg(long)]
    instruction: Option<String>,
    /// Drop other copies of a query's positive from its candidates.
    #[arg(long)]
    no_duplicates: Option<bool>,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Skip invalid records (counted and reported) instead of failing.
    #[arg(long)]
    skip_invalid: Option<bool>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Weight precision: f32, bf16 or f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    dtype: Option<String>,
    /// Which code computes the gradients: by-hand (on the CPU in f32, several times faster and
    /// leaner; elsewhere autograd) or autograd (candle's, the reference) [default: by-hand].
    #[arg(long)]
    gradients: Option<String>,
    /// A BEIR folder to evaluate on during training and after the model is written
    /// (nDCG@10 etc. in eval.jsonl).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// The qrels split of --eval-data to evaluate on [default: dev]; `test` is allowed, with a
    /// warning not to select checkpoints by it.
    #[arg(long)]
    eval_split: Option<String>,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    eval_every: Option<u64>,
}

pub fn run(args: Args) -> Result<()> {
    let overrides = serde_json::to_value(&args.settings).expect("settings serialise");
    let cfg = TrainConfig::resolve(args.config.as_deref(), overrides)?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if cfg.data.is_empty() {
        return Err(anyhow!(
            "no training data: give --data FILE|DIR or `data` in the config file"
        ));
    }
    let start = match (args.resume, args.overwrite) {
        (true, _) => Start::Resume,
        (false, true) => Start::Overwrite,
        (false, false) => Start::Fresh,
    };
    let summary = reasonembed_train::train(&cfg, start, None, &mut Bars::new(args.quiet))?;
    if summary.skipped_records > 0 {
        eprintln!(
            "skipped {} invalid records (see the warnings above)",
            summary.skipped_records
        );
    }
    eprintln!(
        "trained {} steps{}",
        summary.steps,
        summary
            .resumed_from
            .map_or(String::new(), |s| format!(" (resumed at step {s})"))
    );
    for dir in summary.model_dir.iter().chain(&summary.adapter_dir) {
        println!("{}", dir.display());
    }
    Ok(())
}

/// A number flag that must be finite: NaN and infinity are refused here,
/// before they can become a silently ignored or poisoned setting.
fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(e.to_string()),
    }
}
