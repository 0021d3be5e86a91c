#!/usr/bin/env bash
# Decoder embedding throughput: reasonembed against transformers on a Qwen3-0.6B-shaped model
# (random weights, created by scripts/gpu_check_peer.py with transformers, seed 0), on the same
# passages of 512 tokens, last-token pooling, left padding, 2 threads, in one run: ROUNDS
# alternating runs of each side (3 by default); prints every JSON line, then the median of each
# side and their ratio ours / transformers.
#
#   scripts/bench-decoder.sh                 # f32 on both sides (needs the venv of scripts/README.md)
#   DTYPE=bf16 scripts/bench-decoder.sh      # bfloat16 on both sides
#   MATMUL_PRECISION=highest scripts/bench-decoder.sh  # ours at IEEE f32 products (default high)
#   PASSAGES=32 BATCH=8 ROUNDS=5 scripts/bench-decoder.sh
#
# The checkpoint (2.4 GB in f32) is written under target/bench-decoder and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
PASSAGES=${PASSAGES:-16}
BATCH=${BATCH:-4}
ROUNDS=${ROUNDS:-3}
TOKENS=512
SHAPE='{"hidden": 1024, "layers": 28, "heads": 16, "kv_heads": 8, "head_dim": 128, "intermediate": 3072, "vocab": 151936}'
# OpenBLAS settings forced on some machines slow PyTorch down; benchmarks only.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

work=$PWD/target/bench-decoder
model=$work/qwen3-0.6B-$DTYPE
mkdir -p "$work"
# Passages longer than 512 tokens (cut there by both sides), seeded.
"$PYTHON" - "$work/passages.jsonl" "$work/passages.txt" "$PASSAGES" <<'PY'
import json, random, sys
jsonl, txt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(0)
words = ["retrieval", "reasoning", "theorem", "protein", "economy", "lemma", "gradient", "river", "station",
         "hospital", "network", "biology", "query", "passage", "sample", "energy", "matrix", "proof"]
texts = [" ".join(rng.choice(words) for _ in range(600)) for _ in range(n)]
with open(jsonl, "w") as f:
    f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
with open(txt, "w") as f:
    f.writelines(t + "\n" for t in texts)
PY

# ROUNDS alternating runs of each side (transformers first: it creates the model and saves it
# for us, the same weights every time, seed 0), so that a noisy neighbour slows both sides.
cargo bench -q -p reasonembed-models --bench embed --no-run
lines=()
for _ in $(seq "$ROUNDS"); do
    lines+=("$("$PYTHON" scripts/gpu_check_peer.py --device cpu --dtype "$DTYPE" --dir "$model" --shape "$SHAPE" \
        --tokenizer fixtures/models/tiny-qwen3 --embed-texts "$work/passages.jsonl" --max-length $TOKENS \
        --batch-size "$BATCH" 2>/dev/null | grep '^RESULT ' | tail -n1 | cut -c8-)")
    lines+=("$(cargo bench -q -p reasonembed-models --bench embed -- "$work/passages.txt" "$BATCH" "$DTYPE" "$model" $TOKENS | tail -n1)")
done
printf '%s\n' "${lines[@]}"
"$PYTHON" - "${lines[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
ours_runs = [r for r in runs if r.get("engine") == "reasonembed"]
ours = statistics.median(r["tokens_per_s"] for r in ours_runs)
theirs = statistics.median(r["embed"]["tokens_per_s"] for r in runs if r.get("engine") != "reasonembed")
first = ours_runs[0]
# The matmul precision applies to f32 weights only.
precision = f", matmul precision {first['matmul_precision']}" if first["dtype"] == "f32" else ""
print(f"ratio reasonembed / transformers ({first['dtype']}{precision}, Qwen3-0.6B shape, "
      f"medians of {len(ours_runs)}): {ours / theirs:.2f}x ({ours:.0f} vs {theirs:.0f} tokens/s)")
PY
