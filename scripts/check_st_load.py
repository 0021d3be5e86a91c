#!/usr/bin/env python3
"""Checks that a model folder written by `reasonembed train` loads in sentence-transformers and
embeds as `reasonembed embed` does.

Embeds a few texts with `SentenceTransformer(DIR).encode(...)` and with the reasonembed binary
(`--binary`, default target/release/reasonembed) on the same folder, and prints the smallest
per-text cosine between the two; exits 1 below 0.9999. Not run by CI (it needs the Python
environment of scripts/README.md).

Usage:  python scripts/check_st_load.py DIR [--binary PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402

TEXTS = [
    "What is the boundary layer on a flat plate at high Mach number?",
    "The nasal cycle alternates airflow between the nostrils.",
    "short",
    "Heat transfer in laminar flow over a cone at supersonic speed, with a comparison to experiments.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--binary", type=Path, default=Path(__file__).resolve().parent.parent / "target/release/reasonembed")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(args.model), device="cpu").encode(TEXTS, normalize_embeddings=True)
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.txt"
        texts.write_text("\n".join(TEXTS) + "\n")
        out = Path(tmp) / "out.npy"
        subprocess.run([str(args.binary), "embed", "--quiet", "--model", str(args.model), str(texts), "-o", str(out)], check=True)
        ours = np.load(out)
    cosines = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    print(json.dumps({"model": str(args.model), "min_cosine": float(cosines.min()), "texts": len(TEXTS)}))
    sys.exit(0 if cosines.min() >= 0.9999 else 1)


if __name__ == "__main__":
    main()
