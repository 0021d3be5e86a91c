#!/usr/bin/env bash
# Training-step time: reasonembed against sentence-transformers (PyTorch) on the same batch (16
# queries, 1 positive + 1 hard negative each, max length 128, MiniLM, full fine-tuning, AdamW,
# dropout on, 2 threads), in one run; then the peak memory of a GradCache step (chunks of 8)
# against a plain one. Prints the JSON lines and the ratios.
#
#   scripts/bench-train.sh            # needs the venv of scripts/README.md
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export RAYON_NUM_THREADS=${THREADS:-2}
# OpenBLAS settings forced on some machines slow PyTorch down; benchmarks only.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

theirs=$("$PYTHON" scripts/bench_train_st.py --threads "$RAYON_NUM_THREADS" --steps 5 | tail -n1)
plain=$(cargo bench -q -p reasonembed-train --bench step -- plain 16 5 | tail -n1)
cached=$(cargo bench -q -p reasonembed-train --bench step -- cached 16 5 8 | tail -n1)
printf '%s\n%s\n%s\n' "$theirs" "$plain" "$cached"
"$PYTHON" - "$theirs" "$plain" "$cached" <<'PY'
import json, sys
theirs, plain, cached = (json.loads(a) for a in sys.argv[1:4])
print(f"step time reasonembed / sentence-transformers: {plain['step_seconds_mean'] / theirs['step_seconds_mean']:.2f}x "
      f"({plain['step_seconds_mean']:.2f} s vs {theirs['step_seconds_mean']:.2f} s)")
print(f"peak memory GradCache / plain: {cached['peak_rss_mib']:.0f} / {plain['peak_rss_mib']:.0f} MiB, "
      f"step time {cached['step_seconds_mean']:.2f} s vs {plain['step_seconds_mean']:.2f} s")
PY
