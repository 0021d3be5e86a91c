#!/usr/bin/env python3
"""PyTorch peer for the training-step benchmark: one contrastive fine-tuning step of
all-MiniLM-L6-v2 with sentence-transformers, on CPU.

Prints ONE JSON line:
  {"engine": "sentence-transformers", "batch": B, "group": 2, "max_length": 128,
   "step_seconds_mean": float, "step_seconds_min": float, "losses": [first 3 losses],
   "peak_rss_mib": float, "rss_before_steps_mib": float, "threads": int}
where `losses` are the losses of the first three steps (the two warm-up steps and the first timed
one), and `peak_rss_mib` is the process's peak resident set size (getrusage ru_maxrss, MiB), which
includes the Python interpreter, torch (the CUDA build maps ~0.5 GB of libraries) and the model,
not only the step; `rss_before_steps_mib` is the same peak just before the first step (model,
optimiser and tokenised batch ready), so the difference is what the steps themselves add
(activations kept for backward, gradients, AdamW state).

Set-up:
  * model: SentenceTransformer(DIR) (default ~/.cache/reasonembed/models/minilm), CPU, float32,
    max_seq_length 128 (--max-length), train mode, so the model's own dropout (0.1) is active;
  * batch: a fixed synthetic batch from benches/corpus-1k.txt: for i in range(B), anchor = line 3i,
    positive = line 3i+1, negative = line 3i+2 (B = 16 by default, --batch);
  * loss: MultipleNegativesRankingLoss(scale = 1/temperature) (temperature 0.05 → scale 20), its
    defaults otherwise (cosine similarity, directions query_to_doc, joint softmax). With columns
    (anchor, positive, negative) it scores every anchor against all B positives and all B negatives
    (2B candidates), target = its own positive: exactly InfoNCE over every passage of the batch
    with group size 2 (one positive + one hard negative per query, in-batch negatives), only the
    candidate order differs (all positives first, then all negatives, instead of interleaved);
  * optimiser: torch.optim.AdamW(lr 2e-5, weight_decay 0.01), other arguments default; no
    scheduler, no gradient clipping;
  * the step loop is written by hand (no Trainer): the three columns are tokenised once with
    model.preprocess (sentence-transformers 6's name for the deprecated model.tokenize; the batch
    is fixed, so tokenisation is not part of a step), then each step is
    model(features)["sentence_embedding"] for anchor, positive and negative (three forwards, each
    column padded to its own longest text), loss.compute_loss_from_embeddings, backward,
    optimizer.step, optimizer.zero_grad. Two warm-up steps, then --steps timed steps (default 10).
    (MNRL's own forward would instead merge the positive and negative columns into one padded
    forward pass; three plain forwards is the classic pattern.) On the first step the loss is
    asserted to equal an explicit cross-entropy over the 2B candidates;
  * torch.set_num_threads(--threads) (default 2), torch.manual_seed(0) for the dropout masks.

Usage:  python scripts/bench_train_st.py [--model DIR] [--batch 16] [--max-length 128]
                                         [--steps 10] [--threads 2] [--temperature 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MINILM = Path.home() / ".cache" / "reasonembed" / "models" / "minilm"
WARMUP_STEPS = 2


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def check_infonce(embeddings: list[torch.Tensor], loss: float, scale: float) -> None:
    """Cross-entropy of cos(anchor_i, passage_j)·scale over the 2B passages [positives; negatives]
    with target i must equal the MNRL loss."""
    with torch.no_grad():
        a, pos, neg = (torch.nn.functional.normalize(e, dim=-1) for e in embeddings)
        logits = a @ torch.cat([pos, neg]).T * scale
        ref = torch.nn.functional.cross_entropy(logits, torch.arange(a.size(0))).item()
    assert abs(ref - loss) < 1e-5 * max(1.0, ref), (ref, loss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MINILM, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--input", type=Path, default=REPO / "benches" / "corpus-1k.txt")
    parser.add_argument("--batch", type=int, default=16, help="queries per batch (B)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps after 2 warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.05)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    lines = args.input.read_text(encoding="utf-8").splitlines()
    if len(lines) < 3 * args.batch:
        sys.exit(f"{args.input} has {len(lines)} lines, need {3 * args.batch}")
    anchors = [lines[3 * i] for i in range(args.batch)]
    positives = [lines[3 * i + 1] for i in range(args.batch)]
    negatives = [lines[3 * i + 2] for i in range(args.batch)]

    model = SentenceTransformer(str(args.model), device="cpu")
    model.max_seq_length = args.max_length
    model.train()
    loss_fn = MultipleNegativesRankingLoss(model, scale=1.0 / args.temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    # model.preprocess is what sentence-transformers 6 calls model.tokenize (now deprecated)
    features = [model.preprocess(texts) for texts in (anchors, positives, negatives)]
    rss_before = peak_rss_mib()

    def step() -> float:
        embeddings = [model(dict(f))["sentence_embedding"] for f in features]
        loss = loss_fn.compute_loss_from_embeddings(embeddings, None)
        if not losses:  # once: MNRL is InfoNCE over all 2B passages (see the docstring)
            check_infonce(embeddings, loss.item(), 1.0 / args.temperature)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    losses, times = [], []
    for i in range(WARMUP_STEPS + args.steps):
        start = time.perf_counter()
        losses.append(step())
        if i >= WARMUP_STEPS:
            times.append(time.perf_counter() - start)

    print(
        json.dumps(
            {
                "engine": "sentence-transformers",
                "batch": args.batch,
                "group": 2,
                "max_length": args.max_length,
                "step_seconds_mean": round(sum(times) / len(times), 4),
                "step_seconds_min": round(min(times), 4),
                "losses": [round(v, 6) for v in losses[:3]],
                "peak_rss_mib": peak_rss_mib(),
                "rss_before_steps_mib": rss_before,
                "threads": args.threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
