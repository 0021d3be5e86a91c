#!/usr/bin/env python3
"""Serving throughput: `reasonembed serve` against sentence-transformers behind a minimal Python
HTTP server, on the same model and the same requests, in one run, on loopback.

The peer is `http.server.ThreadingHTTPServer` answering `POST /embed` ({"inputs": [...]}) with
`SentenceTransformer(DIR).encode(inputs, normalize_embeddings=True)` (torch threads: --threads).
Both servers get the same requests: `--requests` requests of `--batch` texts from
benches/corpus-1k.txt, sent by `--clients` concurrent clients after a warm-up. Prints one JSON line
per engine (texts/s, requests/s, p50/p99 latency) and the ratio ours / peer.

Usage:  python scripts/bench_serve_peer.py [--model DIR] [--binary target/release/reasonembed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parent.parent


def peer_server(model_dir: Path, threads: int) -> tuple[ThreadingHTTPServer, str]:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    lock = threading.Lock()  # one forward at a time, as one worker would

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                vectors = model.encode(body["inputs"], normalize_embeddings=True).tolist()
            payload = json.dumps(vectors).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def drive(url: str, batches: list[list[str]], clients: int) -> dict:
    def one(texts: list[str]) -> float:
        data = json.dumps({"inputs": texts}).encode()
        request = urllib.request.Request(f"{url}/embed", data=data, headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
            json.loads(response.read())
        return time.perf_counter() - start

    one(batches[0])  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, batches))
    seconds = time.perf_counter() - start
    texts = sum(len(b) for b in batches)
    return {"texts_per_s": round(texts / seconds, 1), "requests_per_s": round(len(batches) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache/reasonembed/models/minilm")
    parser.add_argument("--binary", type=Path, default=REPO / "target/release/reasonembed")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    lines = [l for l in (REPO / "benches/corpus-1k.txt").read_text().splitlines() if l.strip()]
    batches = [[lines[(i * args.batch + j) % len(lines)] for j in range(args.batch)] for i in range(args.requests)]

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    ours = subprocess.Popen([str(args.binary), "serve", "--port", "0", "--model", str(args.model)],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        while True:
            line = ours.stderr.readline()
            if not line:
                sys.exit("reasonembed serve stopped before listening")
            if line.startswith("listening on "):
                our_url = line.split()[-1]
                break
        our_result = {"engine": "reasonembed serve", **drive(our_url, batches, args.clients)}
    finally:
        ours.terminate()
        ours.wait()
    server, peer_url = peer_server(args.model, args.threads)
    peer_result = {"engine": "sentence-transformers + http.server", **drive(peer_url, batches, args.clients)}
    server.shutdown()
    print(json.dumps(our_result))
    print(json.dumps(peer_result))
    print(f"ratio reasonembed / sentence-transformers: {our_result['texts_per_s'] / peer_result['texts_per_s']:.2f}x texts/s")


if __name__ == "__main__":
    main()
