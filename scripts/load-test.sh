#!/usr/bin/env bash
# Load test of `reasonembed serve` on loopback with wrk (Debian package `wrk`): POST /v1/embeddings
# with one short text, at a given concurrency, for a bounded time; then the same at 4× the
# server's --max-concurrent-requests to see 429s instead of failures. Prints wrk's reports and the
# server's /metrics, and the server's resident memory sampled every second throughout (it should
# stay flat once warm). Everything stays on 127.0.0.1 and stops by itself.
#
#   scripts/load-test.sh [MODEL] [CONNECTIONS] [SECONDS]     # defaults: minilm 8 10
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-minilm}; CONNECTIONS=${2:-8}; SECONDS_=${3:-10}
BIN=target/release/reasonembed
cargo build -q --release -p reasonembed-cli
log=$(mktemp); lua=$(mktemp --suffix=.lua)
"$BIN" serve --model "$MODEL" --port 0 --max-concurrent-requests "$CONNECTIONS" 2> "$log" &
server=$!
trap 'kill $server $sampler 2>/dev/null || true' EXIT
until grep -q "listening on" "$log"; do sleep 0.2; done
rss=$(mktemp)
(while kill -0 $server 2>/dev/null; do ps -o rss= -p $server >> "$rss"; sleep 1; done) &
sampler=$!
url=$(grep -o "http://[0-9.:]*" "$log" | head -n1)
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"input": "Why do I only breathe out of one nostril at a time?"}'
LUA
echo "== $CONNECTIONS connections (= the concurrency limit), ${SECONDS_}s"
wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_}s" --latency -s "$lua" "$url/v1/embeddings"
echo "== $((4 * CONNECTIONS)) connections (4× the limit), ${SECONDS_}s: the excess gets 429 (wrk counts them as non-2xx)"
wrk -t 2 -c "$((4 * CONNECTIONS))" -d "${SECONDS_}s" -s "$lua" "$url/v1/embeddings"
echo "== /metrics"
curl -s "$url/metrics" | grep -v '^#'
curl -sf "$url/health" > /dev/null && echo "server still healthy; RSS $(ps -o rss= -p $server) KiB"
echo "== RSS (MiB) sampled every second: start, after the first phase's warm-up (5 s), peak, end"
awk -v warm=5 '{ v[NR] = $1 / 1024; if ($1 > max) max = $1 }
    END { printf "%.0f %.0f %.0f %.0f (%d samples)\n", v[1], v[warm + 1], max / 1024, v[NR], NR }' "$rss"
