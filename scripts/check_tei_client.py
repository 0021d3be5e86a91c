#!/usr/bin/env python3
"""Checks that the official text-embeddings-inference client works unchanged against `reasonembed serve`.

huggingface_hub's `InferenceClient(base_url=...).feature_extraction(...)` posts TEI's `/embed` body
to the server's root route, `POST /`. This starts `reasonembed serve` (`--binary`) on a free port
with an API key and the given model, embeds texts through the client (a list and a single text,
`normalize=False`, `prompt_name`, `dimensions`), compares every answer with `reasonembed embed` on
the same texts, checks that a wrong key and `truncate=False` on a too-long text are refused with
their status (401, 413), prints one JSON line and exits 1 on a mismatch.

Needs `pip install -r scripts/requirements-tei-client.txt` (huggingface_hub, numpy). Run by the
test `the_official_tei_client_works_unchanged` in crates/cli/tests/serve.rs, which makes that venv.

Usage:  python scripts/check_tei_client.py [--model minilm] [--binary target/release/reasonembed]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TEXTS = ["Why do I only breathe out of one nostril?", "Insects are attracted to artificial light at night."]


def embed(binary: Path, model: str, texts: list[str], *flags: str) -> np.ndarray:
    """`reasonembed embed` of `texts`: the reference vectors."""
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "t.txt", Path(tmp) / "e.npy"
        path.write_text("\n".join(texts) + "\n")
        subprocess.run([str(binary), "embed", "--quiet", "--no-cache", "--model", model, *flags, str(path), "-o", str(out)],
                       check=True)
        return np.load(out)


def status_of(call) -> int | None:
    """The HTTP status of the error `call` raises (None when it succeeds)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        call()
    except HfHubHTTPError as e:
        return e.response.status_code
    return None


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--binary", type=Path, default=Path(__file__).resolve().parent.parent / "target/release/reasonembed")
    args = parser.parse_args()
    import huggingface_hub
    from huggingface_hub import InferenceClient

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
        client = InferenceClient(base_url=url, api_key="k")
        ours = embed(args.binary, args.model, TEXTS)
        raw = embed(args.binary, args.model, TEXTS, "--no-normalize")
        query = embed(args.binary, args.model, TEXTS, "--prompt-name", "query")
        got = {
            "list": client.feature_extraction(TEXTS),
            "single": client.feature_extraction(TEXTS[0]),
            "normalize_false": client.feature_extraction(TEXTS, normalize=False),
            "prompt_name": client.feature_extraction(TEXTS, prompt_name="query"),
            "dimensions": client.feature_extraction(TEXTS, dimensions=8),
        }
        want = {
            "list": ours,
            "single": ours[:1],
            "normalize_false": raw,
            "prompt_name": query,
            # TEI cuts, then normalises.
            "dimensions": unit(raw[:, :8]),
        }
        diffs = {k: float(np.abs(got[k] - want[k]).max()) if got[k].shape == want[k].shape else f"shape {got[k].shape}"
                 for k in got}
        wrong_key = status_of(lambda: InferenceClient(base_url=url, api_key="nope").feature_extraction(TEXTS[0]))
        too_long = status_of(lambda: client.feature_extraction("word " * 5000, truncate=False))
        ok = (all(isinstance(d, float) and d < 1e-5 for d in diffs.values())
              and not np.allclose(query, ours, atol=1e-3) and wrong_key == 401 and too_long == 413)
        print(json.dumps({"huggingface_hub": huggingface_hub.__version__, "max_abs_diff": diffs,
                          "wrong_key": wrong_key, "truncate_false": too_long, "ok": ok}))
        sys.exit(0 if ok else 1)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
