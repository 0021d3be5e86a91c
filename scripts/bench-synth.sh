#!/usr/bin/env bash
# Throughput of ReMixer against a real OpenAI-compatible server (llama.cpp's llama-server with
# SmolLM2, built by scripts/test-llm-server.sh): requests/s and tokens/s per stage, and the
# pipeline's own overhead as a share of the time spent waiting on the LLM (the time no call was
# in flight, over the time some call was). Prints the report's LLM table.
#   usage: scripts/bench-synth.sh [sources [candidates [concurrency]]]
set -euo pipefail
cd "$(dirname "$0")/.."
sources=${1:-8} candidates=${2:-16} concurrency=${3:-4}
venv="${REASONEMBED_LLAMA_VENV:-${REASONEMBED_CACHE:-$HOME/.cache/reasonembed}/llama-venv}"
[[ -x "$venv/bin/llama-cpp-server" ]] || { echo "run scripts/test-llm-server.sh first (builds llama-server)" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/reasonembed
model=$($bin pull smollm2)/SmolLM2-135M-Instruct.Q4_1.gguf
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$venv/bin/llama-cpp-server" -m "$model" --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
server=$!
trap 'kill -9 -- -$server 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.5; done
data=$(cd ../shared/data/cranfield && pwd)
cat > "$work/synth.toml" <<TOML
output = "$work/run"
[llm]
backend = "openai"
model = "smollm2"
base_urls = ["http://127.0.0.1:$port/v1"]
concurrency = $concurrency
[sampling.generate]
temperature = 1.0
top_p = 0.6
max_tokens = 128
[sampling.reason]
temperature = 0.8
top_p = 0.8
max_tokens = 256
[sampling.annotate]
temperature = 0.7
top_p = 0.95
top_k = 40
max_tokens = 256
[mine]
instruct = false
candidates = $candidates
[[domain]]
name = "cranfield"
display_name = "Aerodynamics"
corpus = "$data/corpus.jsonl"
exclude_qrels = ["$data/qrels/test.tsv"]
sources = $sources
TOML
$bin synth run --config "$work/synth.toml" --quiet > /dev/null
sed -n '/## LLM calls/,$p' "$work/run/report.md"
