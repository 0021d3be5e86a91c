#!/usr/bin/env bash
# Embedding throughput: reasonembed against sentence-transformers (PyTorch) on
# the same 1,000 texts, same model (all-MiniLM-L6-v2), batch 32, 2 threads, in
# one run; prints both JSON lines and the ratio ours / PyTorch.
#
#   scripts/bench-embed.sh            # needs the venv of scripts/README.md
#   PYTHON=/path/to/python scripts/bench-embed.sh
#   DTYPE=bf16 scripts/bench-embed.sh # both sides in bfloat16
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
CORPUS=benches/corpus-1k.txt
# OpenBLAS settings forced on some machines slow PyTorch down; benchmarks only.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

export RAYON_NUM_THREADS=$THREADS
ours=$(cargo bench -q -p reasonembed-models --bench embed -- "$CORPUS" 32 "$DTYPE" | tail -n1)
model_dir=$(cargo run -q --release -p reasonembed-cli -- pull minilm)
theirs=$("$PYTHON" scripts/bench_embed_pytorch.py --model "$model_dir" --input "$CORPUS" --threads "$THREADS" --dtype "$DTYPE" | tail -n1)
echo "$ours"
echo "$theirs"
"$PYTHON" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = (json.loads(a) for a in sys.argv[1:3])
print(f"ratio reasonembed / {theirs['engine']}: {ours['texts_per_s'] / theirs['texts_per_s']:.2f}x "
      f"({ours['texts_per_s']:.1f} vs {theirs['texts_per_s']:.1f} texts/s)")
PY
