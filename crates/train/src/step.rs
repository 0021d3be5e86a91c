//! The gradients of one training step, computed plainly or with GradCache.
//!
//! Both embed the batch in chunks of `chunk` texts. The plain way keeps every
//! chunk's graph until the loss is back-propagated, so memory grows with the
//! batch. GradCache (Gao et al., 2021) first embeds every chunk without
//! keeping a graph, computes the loss and its gradient with respect to the
//! embeddings, then embeds each chunk again with a graph and back-propagates
//! `Σ embedding · cached gradient` — the same parameter gradients, with
//! memory bounded by one chunk whatever the batch size. Dropout masks are
//! seeded per chunk, so the second pass replays the first exactly.
//!
//! Where the model trains by hand (the CPU in f32, `reasonembed_models::hand`)
//! a chunk's "graph" is the tape of its forward pass, and its backward pass is
//! the hand-written one; candle's autograd then covers only the loss.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};
use reasonembed_models::ops::{seed_dropout, splitmix64};
use reasonembed_models::{Embedder, Mode, TokenBatch};

use crate::loss::{BatchEmbeddings, Loss, LossKind, LossOutput};

/// Gradients by parameter name.
pub type Grads = HashMap<String, Tensor>;

/// One batch, tokenised.
pub struct StepBatch {
    pub queries: Vec<Vec<u32>>,
    /// `B·G` passages, row i·G the positive of query i.
    pub passages: Vec<Vec<u32>>,
    /// The reasoning queries q′ (Redapter).
    pub reasoning: Option<Vec<Vec<u32>>>,
    pub group: usize,
    /// `[B, B·G]`, 1 where a candidate is dropped from a query's softmax.
    pub exclude: Option<Tensor>,
}

#[derive(Debug, Clone, Copy)]
pub struct StepOptions {
    /// Texts per forward pass.
    pub chunk: usize,
    /// GradCache (Gao et al., 2021): embed without a graph, cache the loss's
    /// gradient with respect to the embeddings, then back-propagate it chunk
    /// by chunk; off: one graph over the whole batch.
    pub grad_cache: bool,
    /// Base of this step's dropout seeds.
    pub seed: u64,
}

#[derive(Clone, Copy)]
enum Side {
    Queries = 0,
    Passages = 1,
    Reasoning = 2,
}

fn chunk_seed(base: u64, side: Side, chunk: usize) -> u64 {
    let mut state = base ^ ((side as u64) << 56) ^ chunk as u64;
    splitmix64(&mut state)
}

/// One chunk's batch, with the dropout masks of `seed` ready for its forward pass.
fn chunk_batch(embedder: &Embedder, chunk: &[Vec<u32>], seed: u64) -> Result<TokenBatch> {
    seed_dropout(seed);
    let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
    embedder.batch(&refs).map_err(candle_core::Error::wrap)
}

/// One chunk's embeddings in training mode, with the dropout masks of `seed`
/// (no graph where the model trains by hand: it records none).
fn embed_chunk(embedder: &Embedder, chunk: &[Vec<u32>], seed: u64) -> Result<Tensor> {
    let batch = chunk_batch(embedder, chunk, seed)?;
    #[cfg(feature = "mkl")]
    if embedder.trains_by_hand() {
        let (pooled, _) = embedder.pool_taped(&batch).map_err(candle_core::Error::wrap)?;
        return embedder.normalize_pooled(&pooled).map_err(candle_core::Error::wrap);
    }
    embedder
        .embed_batch(&batch, Mode::Train)
        .map_err(candle_core::Error::wrap)
}

/// Embeddings of `seqs`, chunk by chunk, each chunk with its own dropout seed.
fn embed(
    embedder: &Embedder,
    seqs: &[Vec<u32>],
    side: Side,
    opts: &StepOptions,
    keep_graph: bool,
) -> Result<Vec<Tensor>> {
    seqs.chunks(opts.chunk.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let e = embed_chunk(embedder, chunk, chunk_seed(opts.seed, side, i))?;
            Ok(if keep_graph { e } else { e.detach() })
        })
        .collect()
}

/// Adds the gradients that `store` holds for the trainable parameters.
fn accumulate(grads: &mut Grads, params: &[(String, Var)], store: &candle_core::backprop::GradStore) -> Result<()> {
    for (name, var) in params {
        if let Some(g) = store.get(var.as_tensor()) {
            let sum = match grads.remove(name) {
                Some(prev) => (prev + g)?,
                None => g.clone(),
            };
            grads.insert(name.clone(), sum);
        }
    }
    Ok(())
}

/// Which code computes the gradients, for the run's log.
pub fn gradient_path(embedder: &Embedder) -> &'static str {
    #[cfg(feature = "mkl")]
    if embedder.trains_by_hand() {
        return "by hand (packed rows, MKL; reasonembed_models::hand)";
    }
    let _ = embedder;
    "candle's autograd"
}

fn needs_reasoning(loss: &Loss, step: u64) -> bool {
    matches!(loss.kind, LossKind::Redapter(cfg) if cfg.active(step))
}

/// The loss of `batch` and the gradients of `embedder`'s trainable parameters.
pub fn gradients(
    embedder: &Embedder,
    batch: &StepBatch,
    loss: &Loss,
    step: u64,
    opts: &StepOptions,
) -> Result<(Grads, LossOutput)> {
    let params = embedder.trainable_vars();
    let reasoning = match (&batch.reasoning, needs_reasoning(loss, step)) {
        (Some(r), true) => Some(Tensor::cat(&embed(embedder, r, Side::Reasoning, opts, false)?, 0)?),
        (None, true) => candle_core::bail!("the redapter loss needs reasoning queries"),
        _ => None,
    };
    #[cfg(feature = "mkl")]
    if embedder.trains_by_hand() {
        return gradients_by_hand(embedder, batch, loss, step, opts, reasoning.as_ref(), &params);
    }
    let mut grads = Grads::new();
    if !opts.grad_cache {
        let q = Tensor::cat(&embed(embedder, &batch.queries, Side::Queries, opts, true)?, 0)?;
        let p = Tensor::cat(&embed(embedder, &batch.passages, Side::Passages, opts, true)?, 0)?;
        let out = loss.compute(&embeddings(&q, &p, reasoning.as_ref(), batch), step)?;
        accumulate(&mut grads, &params, &out.loss.backward()?)?;
        return Ok((grads, out));
    }
    // Pass 1: embeddings without graph; the loss's gradient with respect to them.
    let q = Var::from_tensor(&Tensor::cat(
        &embed(embedder, &batch.queries, Side::Queries, opts, false)?,
        0,
    )?)?;
    let p = Var::from_tensor(&Tensor::cat(
        &embed(embedder, &batch.passages, Side::Passages, opts, false)?,
        0,
    )?)?;
    let out = loss.compute(
        &embeddings(q.as_tensor(), p.as_tensor(), reasoning.as_ref(), batch),
        step,
    )?;
    let store = out.loss.backward()?;
    let missing = || candle_core::Error::Msg("the loss did not reach the embeddings".into());
    let (dq, dp) = (
        store.get(q.as_tensor()).ok_or_else(missing)?,
        store.get(p.as_tensor()).ok_or_else(missing)?,
    );
    // Pass 2: each chunk again, with graph, back-propagating its cached gradient.
    for (seqs, side, cached) in [
        (&batch.queries, Side::Queries, dq),
        (&batch.passages, Side::Passages, dp),
    ] {
        let mut start = 0;
        for (i, chunk) in seqs.chunks(opts.chunk.max(1)).enumerate() {
            let e = embed_chunk(embedder, chunk, chunk_seed(opts.seed, side, i))?;
            let surrogate = (e * cached.narrow(0, start, chunk.len())?)?.sum_all()?;
            accumulate(&mut grads, &params, &surrogate.backward()?)?;
            start += chunk.len();
        }
    }
    Ok((grads, out))
}

/// [`gradients`] where the model trains by hand (on the CPU in f32,
/// `reasonembed_models::hand`): every chunk's pooled
/// vectors and the tape of their forward pass; the loss's gradient with
/// respect to those vectors from candle's autograd; then each chunk's
/// backward pass by hand. GradCache keeps no tape: it replays a chunk's
/// forward pass from its seed just before that chunk's backward pass.
#[cfg(feature = "mkl")]
fn gradients_by_hand(
    embedder: &Embedder,
    batch: &StepBatch,
    loss: &Loss,
    step: u64,
    opts: &StepOptions,
    reasoning: Option<&Tensor>,
    params: &[(String, Var)],
) -> Result<(Grads, LossOutput)> {
    use reasonembed_models::hand::HandGrads;
    let wrap = candle_core::Error::wrap;
    let taped = |chunk: &[Vec<u32>], seed| embedder.pool_taped(&chunk_batch(embedder, chunk, seed)?).map_err(wrap);
    let sides = [(&batch.queries, Side::Queries), (&batch.passages, Side::Passages)];
    let (mut pooled, mut tapes) = (Vec::new(), Vec::new());
    for (seqs, side) in sides {
        let (mut rows, mut kept) = (Vec::new(), Vec::new());
        for (i, chunk) in seqs.chunks(opts.chunk.max(1)).enumerate() {
            let (p, tape) = taped(chunk, chunk_seed(opts.seed, side, i))?;
            rows.push(p);
            kept.push((!opts.grad_cache).then_some(tape));
        }
        pooled.push(Var::from_tensor(&Tensor::cat(&rows, 0)?)?);
        tapes.push(kept);
    }
    let q = embedder.normalize_pooled(pooled[0].as_tensor()).map_err(wrap)?;
    let p = embedder.normalize_pooled(pooled[1].as_tensor()).map_err(wrap)?;
    let out = loss.compute(&embeddings(&q, &p, reasoning, batch), step)?;
    let store = out.loss.backward()?;
    let mut grads = HandGrads::new(params);
    for ((seqs, side), (var, kept)) in sides.into_iter().zip(pooled.iter().zip(tapes)) {
        let d = store
            .get(var.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("the loss did not reach the embeddings".into()))?;
        let mut start = 0;
        for ((i, chunk), tape) in seqs.chunks(opts.chunk.max(1)).enumerate().zip(kept) {
            let tape = match tape {
                Some(tape) => tape,
                None => taped(chunk, chunk_seed(opts.seed, side, i))?.1,
            };
            embedder
                .backward_taped(tape, &d.narrow(0, start, chunk.len())?, &mut grads)
                .map_err(wrap)?;
            start += chunk.len();
        }
    }
    Ok((grads.into_named(params)?, out))
}

fn embeddings<'a>(
    q: &'a Tensor,
    p: &'a Tensor,
    reasoning: Option<&'a Tensor>,
    batch: &'a StepBatch,
) -> BatchEmbeddings<'a> {
    BatchEmbeddings {
        queries: q,
        passages: p,
        reasoning,
        group: batch.group,
        exclude: batch.exclude.as_ref(),
    }
}
