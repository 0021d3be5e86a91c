#!/usr/bin/env python3
"""Checks that the official OpenAI Python client works unchanged against `reasonembed serve`.

Starts `reasonembed serve` (the release binary, `--binary`) on a free port with the given model,
embeds texts through `openai.OpenAI(base_url=..., api_key=...).embeddings.create(...)` in both
float and base64 encodings and with `dimensions`, compares with `reasonembed embed` on the same
texts, prints one JSON line and exits 1 on a mismatch. Not run by CI (it needs `pip install openai`).

Usage:  python scripts/check_openai_client.py [--model minilm] [--binary target/release/reasonembed]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TEXTS = ["Why do I only breathe out of one nostril?", "Insects are attracted to artificial light at night."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--binary", type=Path, default=Path(__file__).resolve().parent.parent / "target/release/reasonembed")
    args = parser.parse_args()
    from openai import OpenAI

    server = subprocess.Popen([str(args.binary), "serve", "--port", "0", "--api-key", "k", "--model", args.model],
                              stderr=subprocess.PIPE, text=True)
    try:
        while True:
            line = server.stderr.readline()
            if not line:
                sys.exit("the server stopped before listening")
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
        client = OpenAI(base_url=f"{url}/v1", api_key="k")
        floats = client.embeddings.create(model=args.model, input=TEXTS)
        b64 = client.embeddings.create(model=args.model, input=TEXTS, encoding_format="base64")
        short = client.embeddings.create(model=args.model, input=TEXTS[0], dimensions=64)
        with tempfile.TemporaryDirectory() as tmp:
            texts, out = Path(tmp) / "t.txt", Path(tmp) / "e.npy"
            texts.write_text("\n".join(TEXTS) + "\n")
            subprocess.run([str(args.binary), "embed", "--quiet", "--no-cache", "--model", args.model, str(texts), "-o", str(out)], check=True)
            ours = np.load(out)
        via_client = np.array([d.embedding for d in floats.data], dtype=np.float32)
        # Asked explicitly for base64, the client hands back the encoded string.
        via_b64 = np.array([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") if isinstance(d.embedding, str)
                            else d.embedding for d in b64.data], dtype=np.float32)
        diff = float(max(np.abs(via_client - ours).max(), np.abs(via_b64 - ours).max()))
        ok = diff < 1e-5 and len(short.data[0].embedding) == 64 and floats.usage.total_tokens > 0
        print(json.dumps({"max_abs_diff": diff, "dimensions_64": len(short.data[0].embedding), "usage": floats.usage.total_tokens, "ok": ok}))
        sys.exit(0 if ok else 1)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
