//! The training loop: batches from the sampler, gradients (GradCache or
//! plain), clipping, AdamW under the warm-up/decay schedule, a metrics line
//! per step, checkpoints, and the trained model written out at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use reasonembed_data::Progress;
use reasonembed_eval::retriever::{DenseRetriever, Retriever};
use reasonembed_models::ops::splitmix64;
use reasonembed_models::{
    Embedder, EmbedderOptions, EncodeOptions, Kernels, LoraConfig, ModelFolder, Prompt, Side, Trainable,
};
use reasonembed_search::cache::EmbeddingCache;

use crate::checkpoint::{self, State};
use crate::config::{Finetune, Gradients, LossName, TrainConfig};
use crate::data::{self, Domain};
use crate::error::{Error, Result, io};
use crate::export;
use crate::log::{StepMetrics, open_log};
use crate::loss::Loss;
use crate::optim::{AdamW, AdamWConfig, clip_grad_norm, linear_schedule, warmup_steps};
use crate::sampler::{PlannedBatch, plan_epoch, sample_group};
use crate::step::{StepBatch, StepOptions, gradients};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub skipped_records: usize,
    pub model_dir: Option<PathBuf>,
    pub adapter_dir: Option<PathBuf>,
}

/// How a run treats what is already in its output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: the output folder must be empty or absent.
    Fresh,
    /// Continue from the latest checkpoint (from step 0 if there is none).
    Resume,
    /// A new run that first removes an earlier run's outputs.
    Overwrite,
}

/// What a run writes into its output folder (`--overwrite` removes these).
const OUTPUTS: [&str; 7] = [
    "checkpoints",
    "metrics.jsonl",
    "eval.jsonl",
    "model",
    "adapter",
    "loss.svg",
    "reasoning-intensity.svg",
];

/// Trains as `cfg` says, starting as `start` says. `stop_after` ends the run
/// early (after that many steps in this process) without writing the final
/// model, as a kill would.
pub fn train(
    cfg: &TrainConfig,
    start_mode: Start,
    stop_after: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    cfg.validate()?;
    prepare_output(&cfg.output, start_mode)?;
    // Open the evaluation data now: a wrong path must fail before step 1, not after the last.
    let eval_set = cfg
        .eval_data
        .as_ref()
        .map(|dir| reasonembed_data::BeirDataset::open(dir, &cfg.eval_split))
        .transpose()?;
    if eval_set.is_some() && cfg.eval_split == "test" {
        tracing::warn!(
            "evaluating on the test split during training: report it, but do not pick checkpoints by it (use a dev split)"
        );
    }
    let folder = ModelFolder::open(&reasonembed_models::source::resolve(&cfg.model)?)?;
    let trainable = match cfg.finetune {
        Finetune::Full => Trainable::All,
        Finetune::Lora => Trainable::Lora(LoraConfig {
            rank: cfg.lora_rank,
            alpha: cfg.lora_alpha,
            dropout: cfg.lora_dropout,
            target_modules: cfg.lora_target_modules.clone(),
        }),
    };
    let device = reasonembed_models::device::parse_device(&cfg.device)?;
    let dtype = reasonembed_models::device::parse_dtype(cfg.dtype.as_deref(), &device)?;
    let options = EmbedderOptions {
        trainable,
        device: Some(device),
        dtype: Some(dtype),
        kernels: match cfg.gradients {
            Gradients::ByHand => Kernels::Fast,
            Gradients::Autograd => Kernels::Reference,
        },
        ..Default::default()
    };
    let mut embedder = Embedder::load(&folder, options)?;
    let rules = data::Rules {
        need_reasoning: cfg.loss == LossName::Redapter,
        skip_invalid: cfg.skip_invalid,
        batch_size: cfg.batch_size,
        group_size: cfg.group_size,
    };
    let (domains, skipped) = data::load(&cfg.data, &rules)?;
    for (reason, n) in &skipped.reasons {
        tracing::warn!("skipped {n} invalid record(s): {reason}");
    }
    let per_epoch = plan_epoch(&domains, cfg.seed, 0).len() as u64;
    if per_epoch == 0 {
        return Err(Error::Run(format!(
            "no complete batch: every domain has fewer records than its batch size ({}); lower --batch-size",
            cfg.batch_size
        )));
    }
    let mut total = per_epoch * cfg.epochs;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    let warmup = warmup_steps(total, cfg.warmup_ratio);
    let params = embedder.trainable_vars();
    init_lora(&params, cfg.seed)?;
    tracing::info!("gradients: {}", crate::step::gradient_path(&embedder));
    let mut optimizer = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..Default::default()
    });
    let loss = Loss {
        temperature: cfg.temperature,
        kind: cfg.loss_kind(),
    };

    let mut start = 0;
    let mut resumed_from = None;
    if start_mode == Start::Resume
        && let Some(dir) = checkpoint::latest(&cfg.output)
    {
        let state = checkpoint::load(&dir, &params, &mut optimizer)?;
        if !same_run(&state.config, cfg) {
            return Err(Error::File {
                path: dir,
                message: "the checkpoint was made with other settings; use another --output or the same configuration"
                    .into(),
            });
        }
        start = state.step;
        resumed_from = Some(start);
        tracing::info!("resuming from {} (step {start} of {total})", dir.display());
    }
    let metrics_path = cfg.output.join("metrics.jsonl");
    let mut metrics = open_log(&metrics_path, start)?;
    // Evaluations after the checkpoint resumed from are redone.
    drop(open_log(&cfg.output.join("eval.jsonl"), start + 1)?);

    progress.start("steps", total as usize);
    progress.update(start as usize);
    let mut plan: Option<(u64, Vec<PlannedBatch>)> = None;
    for (done_here, step) in (start..total).enumerate() {
        if stop_after.is_some_and(|n| done_here as u64 >= n) {
            progress.finish();
            return Ok(Summary {
                steps: step,
                resumed_from,
                skipped_records: skipped.total(),
                model_dir: None,
                adapter_dir: None,
            });
        }
        let started = Instant::now();
        let epoch = step / per_epoch;
        if plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
            plan = Some((epoch, plan_epoch(&domains, cfg.seed, epoch)));
        }
        let planned = &plan.as_ref().expect("planned above").1[(step % per_epoch) as usize];
        let batch = materialize(&embedder, cfg, &domains, planned, [cfg.seed, epoch, step, 0])?;
        let options = StepOptions {
            chunk: cfg.chunk_size,
            grad_cache: cfg.grad_cache,
            seed: cfg.seed ^ step.wrapping_mul(0x9E37_79B9),
        };
        let (mut grads, out) = gradients(&embedder, &batch, &loss, step, &options)?;
        let loss_value = out
            .loss
            .to_dtype(candle_core::DType::F64)
            .and_then(|l| l.to_scalar::<f64>())?;
        let grad_norm = clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
        if !(loss_value.is_finite() && grad_norm.is_finite()) {
            // The weights are still those before this step: keep them, then stop.
            let state = State {
                step,
                total_steps: total,
                config: cfg.clone(),
            };
            let dir = checkpoint::save(&cfg.output, &params, &optimizer, &state)?;
            return Err(Error::Run(format!(
                "step {step}: the loss ({loss_value}) or its gradient norm ({grad_norm}) is not finite; \
                 stopped before updating the weights, which are saved in {} (lower the learning rate, \
                 raise the temperature, or check the data of domain '{}')",
                dir.display(),
                domains[planned.domain].name
            )));
        }
        let learning_rate = cfg.learning_rate * linear_schedule(step, warmup, total);
        optimizer.step(&params, &grads, learning_rate)?;

        let line = StepMetrics {
            step,
            epoch,
            domain: domains[planned.domain].name.clone(),
            loss: loss_value,
            mean_loss: out.per_query.iter().sum::<f64>() / out.per_query.len().max(1) as f64,
            learning_rate,
            grad_norm,
            ri: out.ri.as_deref().map(stats),
            passages: batch.passages.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        writeln!(metrics, "{}", serde_json::to_string(&line).expect("metrics serialise")).map_err(io(&metrics_path))?;
        metrics.flush().map_err(io(&metrics_path))?;
        progress.update(step as usize + 1);
        progress.message(&status(&line));
        let finished = step + 1;
        if cfg.checkpoint_every > 0 && finished % cfg.checkpoint_every == 0 && finished < total {
            checkpoint::save(
                &cfg.output,
                &params,
                &optimizer,
                &State {
                    step: finished,
                    total_steps: total,
                    config: cfg.clone(),
                },
            )?;
        }
        if let Some(set) = &eval_set
            && cfg.eval_every > 0
            && finished % cfg.eval_every == 0
            && finished < total
        {
            embedder = evaluate(embedder, set, cfg, finished, progress)?;
        }
    }
    progress.finish();
    // Everything is saved before the final evaluation, so that a failure there loses nothing.
    checkpoint::save(
        &cfg.output,
        &params,
        &optimizer,
        &State {
            step: total,
            total_steps: total,
            config: cfg.clone(),
        },
    )?;
    let (model_dir, adapter_dir) = export::write(&folder, &embedder, cfg, &domains)?;
    crate::plot::write(&metrics_path, &cfg.output)?;
    if let Some(set) = &eval_set {
        evaluate(embedder, set, cfg, total, progress)?;
    }
    Ok(Summary {
        steps: total,
        resumed_from,
        skipped_records: skipped.total(),
        model_dir,
        adapter_dir,
    })
}

/// Evaluates `set` (the `eval_split` of `cfg.eval_data`) with the current
/// weights and appends the metrics to `eval.jsonl`; gives the embedder back.
fn evaluate(
    embedder: Embedder,
    set: &reasonembed_data::BeirDataset,
    cfg: &TrainConfig,
    step: u64,
    progress: &mut dyn Progress,
) -> Result<Embedder> {
    let prompt = Prompt::Text(cfg.query_prompt(&cfg.instruction));
    let retriever = Retriever::Dense(Box::new(DenseRetriever {
        embedder,
        cache: EmbeddingCache::disabled(),
        batch_size: 32,
        query_max_length: Some(cfg.query_max_length),
        doc_max_length: Some(cfg.passage_max_length),
    }));
    let split = &cfg.eval_split;
    let result = reasonembed_eval::beir::evaluate(&retriever, None, split, set.clone(), &prompt, 1000, progress);
    let Retriever::Dense(dense) = retriever else {
        unreachable!("built as dense above")
    };
    let result = result?;
    tracing::info!(
        "step {step}: {split} nDCG@10 {:.4}",
        result.metrics.get("ndcg_cut_10").copied().unwrap_or(0.0)
    );
    let line = serde_json::json!({ "step": step, "split": split, "metrics": result.metrics });
    let path = cfg.output.join("eval.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    writeln!(file, "{line}").map_err(io(&path))?;
    Ok(dense.embedder)
}

/// Makes the output folder ready for a run starting as `start` says: a fresh
/// run refuses a folder holding another run's outputs, an overwriting run
/// removes them.
fn prepare_output(output: &Path, start: Start) -> Result<()> {
    let present: Vec<&str> = OUTPUTS.iter().copied().filter(|n| output.join(n).exists()).collect();
    match start {
        Start::Fresh if !present.is_empty() => {
            return Err(Error::File {
                path: output.into(),
                message: format!(
                    "holds an earlier run ({}); continue it with --resume, replace it with --overwrite, or choose another --output",
                    present.join(", ")
                ),
            });
        }
        Start::Overwrite => {
            for name in present {
                let path = output.join(name);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(io(&path))?;
            }
        }
        _ => {}
    }
    std::fs::create_dir_all(output).map_err(io(output))
}

/// Draws every LoRA `A` again from `seed` (PEFT's Kaiming-uniform bound
/// 1/√fan_in), so that runs with the same seed start identically; candle's
/// own initialisation draws from an unseeded generator. `B` stays zero.
fn init_lora(params: &[(String, candle_core::Var)], seed: u64) -> candle_core::Result<()> {
    for (name, var) in params.iter().filter(|(n, _)| n.ends_with("lora_A.weight")) {
        let (rank, fan_in) = var.dims2()?;
        let bound = 1.0 / (fan_in as f64).sqrt();
        // FNV-1a of the name, so each adapter has its own stream.
        let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        let values: Vec<f32> = (0..rank * fan_in)
            .map(|_| ((splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound)
            .map(|v| v as f32)
            .collect();
        var.set(&Tensor::from_vec(values, (rank, fan_in), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Whether a checkpoint's settings describe this run (the output folder and
/// the step limit may change between sessions).
fn same_run(saved: &TrainConfig, current: &TrainConfig) -> bool {
    let strip = |c: &TrainConfig| TrainConfig {
        max_steps: 0,
        output: PathBuf::new(),
        checkpoint_every: 0,
        ..c.clone()
    };
    strip(saved) == strip(current)
}

fn stats(values: &[f64]) -> [f64; 4] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    [sorted[0], values.iter().sum::<f64>() / n as f64, median, sorted[n - 1]]
}

fn status(m: &StepMetrics) -> String {
    let ri = m.ri.map_or(String::new(), |r| {
        format!(" RI {:.2}/{:.2}/{:.2}/{:.2}", r[0], r[1], r[2], r[3])
    });
    format!(
        "loss {:.4} lr {:.2e}{ri} {:.0} passages/s",
        m.loss,
        m.learning_rate,
        m.passages as f64 / m.seconds.max(1e-9)
    )
}

/// The texts of a planned batch, tokenised through the encode contract:
/// queries (and q′) with their instruction as the prompt and the query max
/// length, passages as documents with the passage max length.
fn materialize(
    embedder: &Embedder,
    cfg: &TrainConfig,
    domains: &[Domain],
    planned: &PlannedBatch,
    key: [u64; 4],
) -> reasonembed_models::Result<StepBatch> {
    let domain = &domains[planned.domain];
    let (mut queries, mut reasoning, mut passages) = (Vec::new(), Vec::new(), Vec::new());
    for (j, &r) in planned.records.iter().enumerate() {
        let record = &domain.records[r];
        let prompt = cfg.query_prompt(record.prompt.as_deref().unwrap_or(&cfg.instruction));
        queries.push((prompt.clone(), record.query.as_str()));
        if let Some(rq) = &record.reasoning_query {
            reasoning.push((prompt, rq.as_str()));
        }
        let (pos, negs) = sample_group(
            record.pos.len(),
            record.neg.len(),
            planned.group,
            [key[0], key[1], key[2], j as u64],
        );
        passages.push(record.pos[pos].as_str());
        passages.extend(negs.iter().map(|&n| record.neg[n].as_str()));
    }
    let exclude = cfg
        .no_duplicates
        .then(|| duplicate_mask(&passages, planned.group, embedder.device()))
        .transpose()?;
    let query_ids = tokenize_queries(embedder, &queries, cfg.query_max_length)?;
    let reasoning_ids = if reasoning.len() == queries.len() {
        Some(tokenize_queries(embedder, &reasoning, cfg.query_max_length)?)
    } else {
        None
    };
    let documents = EncodeOptions::document().with_max_length(Some(cfg.passage_max_length));
    let passage_ids = embedder.prepare(&passages, &embedder.resolve(&documents)?, true)?;
    Ok(StepBatch {
        queries: query_ids,
        passages: passage_ids,
        reasoning: reasoning_ids,
        group: planned.group,
        exclude,
    })
}

/// Token ids of `(prompt, query)` pairs, in order; runs of one prompt are
/// tokenised together.
fn tokenize_queries(
    embedder: &Embedder,
    queries: &[(String, &str)],
    max_length: usize,
) -> reasonembed_models::Result<Vec<Vec<u32>>> {
    let mut ids = Vec::with_capacity(queries.len());
    for run in queries.chunk_by(|a, b| a.0 == b.0) {
        let options = EncodeOptions {
            side: Side::Query,
            prompt: Prompt::Text(run[0].0.clone()),
            max_length: Some(max_length),
            ..Default::default()
        };
        let texts: Vec<&str> = run.iter().map(|(_, q)| *q).collect();
        ids.extend(embedder.prepare(&texts, &embedder.resolve(&options)?, true)?);
    }
    Ok(ids)
}

/// `[B, B·G]`: 1 where a passage is another copy of query i's positive (a
/// false negative), 0 elsewhere.
fn duplicate_mask(passages: &[&str], group: usize, device: &candle_core::Device) -> reasonembed_models::Result<Tensor> {
    let b = passages.len() / group;
    let mut mask = vec![0f32; b * passages.len()];
    for i in 0..b {
        let positive = passages[i * group];
        for (j, p) in passages.iter().enumerate() {
            if j != i * group && *p == positive {
                mask[i * passages.len() + j] = 1.0;
            }
        }
    }
    Ok(Tensor::from_vec(mask, (b, passages.len()), device)?)
}
