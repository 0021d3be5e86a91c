#!/usr/bin/env bash
# Decoder embedding throughput: reasonembed against transformers on a Qwen3-0.6B-shaped model
# (random weights, created by scripts/gpu_check_peer.py with transformers, seed 0), on the same
# passages of 512 tokens, last-token pooling, left padding, 2 threads, in one run; prints both
# JSON lines and the ratio ours / transformers.
#
#   scripts/bench-decoder.sh                 # f32 on both sides (needs the venv of scripts/README.md)
#   DTYPE=bf16 scripts/bench-decoder.sh      # bfloat16 on both sides
#   MATMUL_PRECISION=high scripts/bench-decoder.sh  # ours with --matmul-precision high (f32)
#   PASSAGES=32 BATCH=8 scripts/bench-decoder.sh
#
# The checkpoint (2.4 GB in f32) is written under target/bench-decoder and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
PASSAGES=${PASSAGES:-16}
BATCH=${BATCH:-4}
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

# transformers: creates the model (and saves it for us), then embeds the passages.
theirs=$("$PYTHON" scripts/gpu_check_peer.py --device cpu --dtype "$DTYPE" --dir "$model" --shape "$SHAPE" \
    --tokenizer fixtures/models/tiny-qwen3 --embed-texts "$work/passages.jsonl" --max-length $TOKENS \
    --batch-size "$BATCH" 2>/dev/null | grep '^RESULT ' | tail -n1 | cut -c8-)
ours=$(cargo bench -q -p reasonembed-models --bench embed -- "$work/passages.txt" "$BATCH" "$DTYPE" "$model" $TOKENS | tail -n1)
echo "$ours"
echo "$theirs"
"$PYTHON" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])["embed"]
print(f"ratio reasonembed / transformers ({ours['dtype']}, matmul precision {ours['matmul_precision']}, Qwen3-0.6B shape): "
      f"{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x "
      f"({ours['tokens_per_s']:.0f} vs {theirs['tokens_per_s']:.0f} tokens/s)")
PY
