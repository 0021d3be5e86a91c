#!/usr/bin/env bash
# Embedding throughput: reasonembed against sentence-transformers (PyTorch) on
# the same 1,000 texts, same model (all-MiniLM-L6-v2), batch 32, 2 threads, in
# one run: ROUNDS alternating runs of each side (3 by default), so that a
# noisy neighbour slows both; prints every JSON line, then the median of each
# side and their ratio ours / PyTorch.
#
#   scripts/bench-embed.sh            # needs the venv of scripts/README.md
#   PYTHON=/path/to/python scripts/bench-embed.sh
#   DTYPE=bf16 scripts/bench-embed.sh # both sides in bfloat16
#   MATMUL_PRECISION=highest scripts/bench-embed.sh  # ours at IEEE f32 products (default high)
#   ROUNDS=5 scripts/bench-embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
ROUNDS=${ROUNDS:-3}
CORPUS=benches/corpus-1k.txt
# OpenBLAS settings forced on some machines slow PyTorch down; benchmarks only.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

export RAYON_NUM_THREADS=$THREADS
cargo bench -q -p reasonembed-models --bench embed --no-run
model_dir=$(cargo run -q --release -p reasonembed-cli -- pull minilm)
lines=()
for _ in $(seq "$ROUNDS"); do
    lines+=("$(cargo bench -q -p reasonembed-models --bench embed -- "$CORPUS" 32 "$DTYPE" | tail -n1)")
    lines+=("$("$PYTHON" scripts/bench_embed_pytorch.py --model "$model_dir" --input "$CORPUS" \
        --threads "$THREADS" --dtype "$DTYPE" | tail -n1)")
done
printf '%s\n' "${lines[@]}"
"$PYTHON" - "${lines[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
ours = statistics.median(r["texts_per_s"] for r in runs if r["engine"] == "reasonembed")
theirs = statistics.median(r["texts_per_s"] for r in runs if r["engine"] != "reasonembed")
engine = next(r["engine"] for r in runs if r["engine"] != "reasonembed")
# The matmul precision applies to f32 weights only.
precision = f", matmul precision {runs[0]['matmul_precision']}" if runs[0]["dtype"] == "f32" else ""
print(f"ratio reasonembed / {engine} ({runs[0]['dtype']}{precision}, medians of {len(runs) // 2}): "
      f"{ours / theirs:.2f}x ({ours:.1f} vs {theirs:.1f} texts/s)")
PY
