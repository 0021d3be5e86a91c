#!/usr/bin/env python3
"""PyTorch baseline for the embedding throughput benchmark.

Embeds a text file (one text per line) with all-MiniLM-L6-v2 on CPU and prints ONE JSON line:
  {"engine", "texts", "tokens", "seconds", "texts_per_s", "tokens_per_s", "threads", "batch_size"}
where `tokens` counts the tokens actually embedded (after truncation, special tokens included)
and `seconds` covers tokenisation + forward passes + pooling of all texts, after a warm-up on the
first batch.

Engines:
  sentence-transformers  SentenceTransformer(model).encode(texts, batch_size=32): what most users run
                         (it sorts by length internally and normalises via the model's modules).
  transformers           AutoTokenizer + AutoModel, length-sorted batches, masked mean pooling and
                         L2 normalisation under torch.inference_mode: the bare minimum in PyTorch.

Usage:  python scripts/bench_embed_pytorch.py --model DIR [--input benches/corpus-1k.txt]
                                              [--threads 2] [--engine transformers] [--dtype bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BATCH_SIZE = 32


def max_seq_length(model_dir: Path, tokenizer) -> int:
    """sentence-transformers' limit (256 for MiniLM), else the tokenizer's."""
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.exists():
        return json.loads(cfg.read_text())["max_seq_length"]
    return tokenizer.model_max_length


def count_tokens(tokenizer, texts: list[str], max_length: int) -> int:
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def bench_sentence_transformers(model_dir: Path, texts: list[str], dtype: torch.dtype) -> tuple[float, int]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu").to(dtype)
    model.encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True)
    seconds = time.perf_counter() - start
    return seconds, count_tokens(model.tokenizer, texts, model.max_seq_length)


def bench_transformers(model_dir: Path, texts: list[str], dtype: torch.dtype) -> tuple[float, int]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), dtype=dtype).eval()
    max_length = max_seq_length(model_dir, tokenizer)

    @torch.inference_mode()
    def embed(batch: list[str]) -> torch.Tensor:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def run(batch_texts: list[str]) -> None:
        # Length-sorted batches keep padding small; sorting by characters is what
        # sentence-transformers does too and costs nothing compared to tokenising twice.
        order = sorted(range(len(batch_texts)), key=lambda i: -len(batch_texts[i]))
        for start in range(0, len(order), BATCH_SIZE):
            embed([batch_texts[i] for i in order[start : start + BATCH_SIZE]])

    run(texts[:BATCH_SIZE])  # warm-up
    start = time.perf_counter()
    run(texts)
    seconds = time.perf_counter() - start
    return seconds, count_tokens(tokenizer, texts, max_length)


ENGINES = {"sentence-transformers": bench_sentence_transformers, "transformers": bench_transformers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--input", type=Path, default=REPO / "benches" / "corpus-1k.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engine", choices=ENGINES, default="sentence-transformers")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="the model's weights and activations")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    texts = [line for line in args.input.read_text(encoding="utf-8").splitlines() if line]
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    seconds, tokens = ENGINES[args.engine](args.model, texts, dtype)
    print(
        json.dumps(
            {
                "engine": args.engine,
                "texts": len(texts),
                "tokens": tokens,
                "seconds": round(seconds, 4),
                "texts_per_s": round(len(texts) / seconds, 2),
                "tokens_per_s": round(tokens / seconds, 1),
                "threads": args.threads,
                "batch_size": BATCH_SIZE,
                "dtype": args.dtype,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
