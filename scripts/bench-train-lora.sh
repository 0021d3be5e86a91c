#!/usr/bin/env bash
# LoRA training-step time: reasonembed against PEFT + PyTorch on a Qwen3-0.6B-shaped checkpoint
# (random weights, made by scripts/gpu_check_peer.py with transformers, seed 0, as
# scripts/bench-decoder.sh makes it), f32, LoRA r 32 / alpha 64 / dropout 0.1 on every linear
# projection, 4 queries with 1 positive and 1 hard negative each from benches/corpus-1k.txt (at most
# 128 tokens), InfoNCE over the 8 passages, AdamW, 2 threads, in one run; prints both JSON lines and
# the ratio.
#
#   scripts/bench-train-lora.sh          # needs the venv of scripts/README.md, plus: .venv/bin/pip install peft==0.21.2
#   STEPS=3 BATCH=4 scripts/bench-train-lora.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
STEPS=${STEPS:-2}
BATCH=${BATCH:-4}
SHAPE='{"hidden": 1024, "layers": 28, "heads": 16, "kv_heads": 8, "head_dim": 128, "intermediate": 3072, "vocab": 151936}'
# OpenBLAS settings forced on some machines slow PyTorch down; benchmarks only.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

model=$PWD/target/bench-decoder/qwen3-0.6B-f32
if [ ! -f "$model/model.safetensors" ]; then
    "$PYTHON" scripts/gpu_check_peer.py --device cpu --dtype f32 --dir "$model" --shape "$SHAPE" \
        --tokenizer fixtures/models/tiny-qwen3 >/dev/null 2>&1
fi
theirs=$("$PYTHON" scripts/bench_train_lora.py --model "$model" --batch "$BATCH" --steps "$STEPS" \
    --threads "$THREADS" 2>/dev/null | tail -n1)
ours=$(cargo bench -q -p reasonembed-train --bench step -- plain "$BATCH" "$STEPS" $((2 * BATCH)) --model "$model" --lora | tail -n1)
printf '%s\n%s\n' "$theirs" "$ours"
"$PYTHON" - "$theirs" "$ours" <<'PY'
import json, sys
theirs, ours = (json.loads(a) for a in sys.argv[1:3])
print(f"LoRA step time reasonembed / PEFT: {ours['step_seconds_mean'] / theirs['step_seconds_mean']:.2f}x "
      f"({ours['step_seconds_mean']:.2f} s vs {theirs['step_seconds_mean']:.2f} s); "
      f"peak RSS {ours['peak_rss_mib']:.0f} vs {theirs['peak_rss_mib']:.0f} MiB")
PY
