#!/usr/bin/env python3
"""PEFT + PyTorch peer for the LoRA training-step benchmark (scripts/bench-train-lora.sh): one
contrastive LoRA step on a decoder checkpoint (the Qwen3-0.6B shape of scripts/bench-decoder.sh),
on CPU, as `cargo bench -p reasonembed-train --bench step -- plain B STEPS CHUNK --model DIR --lora`
runs it.

Prints ONE JSON line:
  {"engine": "PEFT + PyTorch", "batch": B, "group": 2, "max_length": L, "step_seconds_mean": float,
   "step_seconds_min": float, "losses": [first 3 losses], "peak_rss_mib": float,
   "rss_before_steps_mib": float, "trainable_params": int, "threads": int}

Set-up (the same on our side):
  * model: transformers' AutoModel from --model in float32, PEFT LoRA r 32, alpha 64, dropout 0.1
    on every linear projection (ReasonEmbed's recipe), train mode;
  * batch: benches/corpus-1k.txt: for i in range(B), query = line 3i, positive = line 3i+1,
    negative = line 3i+2; the queries one forward pass, the 2B passages (positive, negative, ...)
    another, each padded on the left to its longest text, cut at --max-length tokens;
  * embedding: the last token's hidden state, L2-normalised;
  * loss: InfoNCE of each query over all 2B passages at temperature 0.05, target its positive
    (mean over queries);
  * optimiser: torch.optim.AdamW(lr 1e-4, weight_decay 0.01) on the adapters;
  * torch.set_num_threads(--threads), torch.manual_seed(0); 1 warm-up step, then --steps timed.

Usage:  python scripts/bench_train_lora.py --model DIR [--batch 4] [--max-length 128] [--steps 3]
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
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WARMUP_STEPS = 1


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--input", type=Path, default=REPO / "benches" / "corpus-1k.txt")
    parser.add_argument("--batch", type=int, default=4, help="queries per batch (B)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after 1 warm-up step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.05)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    lines = args.input.read_text(encoding="utf-8").splitlines()
    queries = [lines[3 * i] for i in range(args.batch)]
    passages = [p for i in range(args.batch) for p in (lines[3 * i + 1], lines[3 * i + 2])]

    tok = AutoTokenizer.from_pretrained(str(args.model))
    tok.padding_side = "left"
    model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32)
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1, target_modules="all-linear")
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    features = [tok(t, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
                for t in (queries, passages)]
    rss_before = peak_rss_mib()

    def embed(enc) -> torch.Tensor:
        hidden = model(**enc).last_hidden_state
        return F.normalize(hidden[:, -1], dim=-1)  # left padding: the last token is real

    def step() -> float:
        q, p = (embed(f) for f in features)
        scores = q @ p.T / args.temperature
        loss = F.cross_entropy(scores, torch.arange(q.size(0)) * 2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    losses, times = [], []
    for i in range(WARMUP_STEPS + args.steps):
        start = time.perf_counter()
        losses.append(step())
        if i >= WARMUP_STEPS:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "engine": "PEFT + PyTorch",
        "batch": args.batch,
        "group": 2,
        "max_length": args.max_length,
        "step_seconds_mean": round(sum(times) / len(times), 4),
        "step_seconds_min": round(min(times), 4),
        "losses": [round(v, 6) for v in losses[:3]],
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_steps_mib": rss_before,
        "trainable_params": sum(p.numel() for p in params),
        "threads": args.threads,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
