#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu_check.py, for one Qwen3 shape, in one process:

  1. --peak: the device's matrix-product rate (CUDA: bf16 8192^3, 3 warm-ups, mean of 10;
     CPU: f32 1024^3), the denominator of every MFU in the report;
  2. a Qwen3Model with that shape and random weights (transformers' own initialisation,
     initializer_range 0.02, seed 0), created on the device in bf16 with SDPA attention;
  3. --embed-texts: transformers' embedding throughput on those texts, as reasonembed embeds them
     (tokenised with the fixture's tokenizer, left padding, truncation at --max-length, batches
     of --batch-size, last-token pooling, L2 normalisation, under torch.inference_mode):
     one warm-up batch, then every text timed, tokenisation and the copy to the host included;
  4. the checkpoint: save_pretrained (safetensors) plus the tokenizer into --dir, which
     reasonembed then loads: both engines run the very same weights;
  5. --train-data/--train: the same training step as `reasonembed train` with GradCache, on
     PEFT + PyTorch: LoRA r 32, alpha 64, all linear projections (adapters in f32 over the bf16
     base, PEFT's default), Redapter loss (InfoNCE over all B*G passages of the batch at
     temperature tau, reasoning-intensity weights RI = L / (L' + 1e-6) clamped to [0, 5] and
     L1-normalised, q' embedded without gradient), AdamW, gradient clipping at 1.0. GradCache
     as Gao et al. release it: every chunk embedded without a graph (RNG state saved per chunk),
     the loss's gradient with respect to the embeddings, then every chunk again with a graph,
     its RNG state restored, back-propagating the cached gradient. Tokenisation is part of the
     step, as in reasonembed. One warm-up step, then timed steps with LoRA dropout 0.1 (the
     paper's) and 0.

Prints a line `RESULT {json}` after each stage, the whole result so far (the last one counts,
so a run stopped at its time limit still reports what it measured); errors are reported in it
under "errors" (per stage), and the checkpoint is still written when a measurement fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_peak(device: str) -> tuple:
    if device.startswith("cuda"):
        n, dtype, how = 8192, torch.bfloat16, "bf16 8192^3 torch.matmul, mean of 10 after 3 warm-ups"
    else:
        n, dtype, how = 1024, torch.float32, "f32 1024^3 torch.matmul on the CPU, mean of 10 after 3 warm-ups"
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    seconds = time.perf_counter() - t0
    del a, b
    return 2 * n**3 * 10 / seconds / 1e12, how


def create(shape: dict, dtype, device: str):
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(
        vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"], head_dim=shape["head_dim"], max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, attention_dropout=0.0,
        initializer_range=0.02, bos_token_id=500, eos_token_id=500, pad_token_id=500, use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3Model._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model


def tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.padding_side = "left"
    return tok


def last_token(model, enc) -> torch.Tensor:
    hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return F.normalize(hidden[:, -1].float(), dim=-1)  # left padding: the last position is the last token


def embed_bench(model, tok, texts: list, max_length: int, batch_size: int, device: str) -> dict:
    model.eval()

    @torch.inference_mode()
    def run(batch: list) -> int:
        enc = tok(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        tokens = int(enc["attention_mask"].sum())
        last_token(model, {k: v.to(device) for k, v in enc.items()}).cpu()
        return tokens

    run(texts[:batch_size])  # warm-up
    sync(device)
    t0 = time.perf_counter()
    tokens = sum(run(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size))
    sync(device)
    seconds = time.perf_counter() - t0
    return {"texts": len(texts), "tokens": tokens, "seconds": round(seconds, 4),
            "tokens_per_s": round(tokens / seconds, 1), "texts_per_s": round(len(texts) / seconds, 2),
            "batch_size": batch_size, "attention": getattr(model.config, "_attn_implementation", None)}


def save(model, folder: Path, tokenizer_dir: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    shutil.copy2(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 32768
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1) + "\n")


class RngState:
    """The CPU and CUDA generators' state, to replay a chunk's dropout masks (GradCache's RandContext)."""

    def __init__(self, device: str):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state() if device.startswith("cuda") else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)


def per_query_infonce(q: torch.Tensor, p: torch.Tensor, group: int, temperature: float) -> torch.Tensor:
    scores = q @ p.T / temperature
    target = torch.arange(q.size(0), device=q.device) * group
    return F.cross_entropy(scores, target, reduction="none")


def redapter_loss(q, p, reasoning, group: int, temperature: float) -> torch.Tensor:
    losses = per_query_infonce(q, p, group, temperature)
    with torch.no_grad():
        reason = per_query_infonce(reasoning, p.detach(), group, temperature)
        ri = (losses.detach() / (reason + 1e-6)).clamp(0.0, 5.0)
        weights = ri / ri.sum().clamp(min=1e-12)
    return (losses * weights).sum()


def train_bench(model, tok, records: list, t: dict, device: str) -> dict:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=t["lora_rank"], lora_alpha=t["lora_alpha"], lora_dropout=0.1, target_modules="all-linear")
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    adapter_dtype = str(params[0].dtype) if params else None
    optimizer = torch.optim.AdamW(params, lr=t["lr"], weight_decay=0.0)
    b, g, chunk = t["batch"], t["group"], t["chunk"]

    def tokens(texts: list, max_length: int):
        enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items()}

    def chunks(enc):
        n = enc["input_ids"].size(0)
        return [{k: v[i : i + chunk] for k, v in enc.items()} for i in range(0, n, chunk)]

    def step(recs: list) -> float:
        queries = [x["query"] for x in recs]
        reasoning = [x["reasoning_query"] for x in recs]
        passages = [p for x in recs for p in [x["pos"][0]] + x["neg"][: g - 1]]
        q_enc, r_enc, p_enc = tokens(queries, t["qlen"]), tokens(reasoning, t["qlen"]), tokens(passages, t["plen"])
        # Pass 1: no graph.
        states, reps = {}, {}
        with torch.no_grad():
            r_reps = torch.cat([last_token(peft_model, c) for c in chunks(r_enc)])
            for side, enc in (("q", q_enc), ("p", p_enc)):
                states[side], out = [], []
                for c in chunks(enc):
                    states[side].append(RngState(device))
                    out.append(last_token(peft_model, c))
                reps[side] = torch.cat(out).requires_grad_()
        loss = redapter_loss(reps["q"], reps["p"], r_reps, g, t["temperature"])
        loss.backward()
        # Pass 2: each chunk again with its RNG state, back-propagating the cached gradient.
        for side, enc in (("q", q_enc), ("p", p_enc)):
            cached = reps[side].grad
            for i, (c, state) in enumerate(zip(chunks(enc), states[side])):
                state.restore()
                e = last_token(peft_model, c)
                e.backward(cached[i * chunk : i * chunk + e.size(0)])
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def dropout(p: float) -> None:
        for module in peft_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = p

    batches = [records[i : i + b] for i in range(0, len(records) - b + 1, b)]
    result = {"engine": "PEFT + PyTorch", "trainable_params": trainable, "adapter_dtype": adapter_dtype,
              "attention": getattr(model.config, "_attn_implementation", None), "variants": {}}
    warm0 = time.perf_counter()
    result["warmup_loss"] = step(batches[0])
    sync(device)
    result["warmup_step_s"] = round(time.perf_counter() - warm0, 3)
    for label, p in (("dropout 0.1 (the paper's)", 0.1), ("dropout 0", 0.0)):
        dropout(p)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        t0 = time.perf_counter()
        loss = step(batches[1 % len(batches)])
        sync(device)
        v = {"step_s": round(time.perf_counter() - t0, 3), "loss": loss, "lora_dropout": p}
        if device.startswith("cuda"):
            v["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            v["max_memory_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20)
        result["variants"][label] = v
        print(f"peer train {label}: {v}", file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dir", type=Path, required=True, help="where the checkpoint is written")
    parser.add_argument("--shape", required=True, help="JSON: hidden, layers, heads, kv_heads, head_dim, intermediate, vocab")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json and tokenizer_config.json")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    parser.add_argument("--peak", action="store_true")
    parser.add_argument("--embed-texts", type=Path)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-data", type=Path)
    parser.add_argument("--train", help="JSON: batch, group, qlen, plen, chunk, steps, lora_rank, lora_alpha, temperature, lr")
    args = parser.parse_args()

    import transformers

    result: dict = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    device = args.device
    if device.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def stage(name: str, fn):
        t0 = time.perf_counter()
        try:
            value = fn()
            sync(device)
            result[f"{name}_s"] = round(time.perf_counter() - t0, 2)
            print(f"peer {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            return value
        except Exception as e:  # noqa: BLE001 - reported in RESULT; later stages still run
            traceback.print_exc()
            result.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
            result["error"] = f"{name}: {type(e).__name__}: {e}"
            return None
        finally:
            # What is known so far, in case a later stage runs out of time (the last line counts).
            print("RESULT " + json.dumps(result), flush=True)

    try:
        if args.peak:
            peak = stage("peak", lambda: measure_peak(device))
            if peak:
                result["peak_tflops"], result["peak_how"] = round(peak[0], 1), peak[1]
        shape = json.loads(args.shape)
        model = stage("create", lambda: create(shape, dtype, device))
        if model is None:
            return 1
        tok = tokenizer(args.tokenizer)
        if args.embed_texts:
            texts = [json.loads(line)["text"] for line in args.embed_texts.read_text().splitlines() if line.strip()]
            emb = stage("embed", lambda: embed_bench(model, tok, texts, args.max_length, args.batch_size, device))
            if emb:
                result["embed"] = emb
        stage("save", lambda: save(model, args.dir, args.tokenizer))
        if args.train_data and args.train:
            import peft

            result["versions"]["peft"] = peft.__version__
            records = [json.loads(line) for line in args.train_data.read_text().splitlines() if line.strip()]
            tr = stage("train", lambda: train_bench(model, tok, records, json.loads(args.train), device))
            if tr:
                result["train"] = tr
    finally:
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
