#!/usr/bin/env python3
"""Exact top-k inner-product search: FAISS IndexFlatIP (faiss-cpu) against reasonembed's search.

Generates seeded random L2-normalised float32 vectors (default 400,000 x 384 documents and 150
queries), saves them as docs.npy and queries.npy in a work folder, times FAISS, then runs OUR
benchmark command on the same files and checks that both return the same top-k SETS. Prints one
JSON line per engine and a summary line; exits 1 if the result sets differ other than at ties.

  FAISS:  faiss.omp_set_num_threads(THREADS); IndexFlatIP(dim).add(docs); one warm-up
          index.search(queries, k), then the best of --repeats timed searches (search only; the
          add is a copy and is not timed).
  ours:   --ours is a command template with the placeholders {docs} {queries} {k} {out}
          (shell-quoted paths) and {threads}; default
            cargo bench -q -p reasonembed-search --bench topk -- {docs} {queries} {k} {out}
          It must print one JSON line {"engine": "reasonembed", "seconds": best_of_3, ...} on
          stdout (other lines are ignored) and write {out}: an .npy int64 array [queries, k] of
          document row indices, best first. The command runs in the repository root with
          RAYON_NUM_THREADS and OMP_NUM_THREADS set to THREADS unless the caller set them.

Check: for every query the set of our k indices must equal FAISS's. A difference is accepted only
at a boundary tie: each document in only one of the two sets must score within --tie-tol (default
1e-6, float32 accumulation noise) of FAISS's k-th score, scores recomputed in float64 from the
float32 vectors. Also reported: queries whose returned order is not best-first (beyond the same
tolerance), as a warning.

The environment is the caller's business: for comparable timings unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (or set them identically for both engines) before running this script.

Output lines (JSON):
  {"engine": "faiss-IndexFlatIP", "seconds", "runs": [...], "threads", "docs", "dim", "queries", "k",
   "faiss": version}
  {"engine": "reasonembed", "seconds", ...}          (ours, as printed, passed through)
  {"summary": true, "speedup": faiss_seconds / our_seconds, "mismatched_queries",
   "boundary_tie_mismatches", "real_mismatches", "order_violations", "checked_queries"}

Usage:  python scripts/bench_search_faiss.py [--docs 400000] [--dim 384] [--queries 150]
            [--k 1000] [--threads 2] [--repeats 3] [--seed 0] [--workdir DIR] [--ours CMD]
            [--faiss-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OURS = "cargo bench -q -p reasonembed-search --bench topk -- {docs} {queries} {k} {out}"
CHUNK = 50_000


def random_unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        block = rng.standard_normal((min(CHUNK, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def prepare(workdir: Path, n_docs: int, n_queries: int, dim: int, seed: int) -> tuple[Path, Path]:
    """Write docs.npy / queries.npy, or reuse them if meta.json says they match."""
    docs_path, queries_path, meta_path = workdir / "docs.npy", workdir / "queries.npy", workdir / "meta.json"
    meta = {"docs": n_docs, "queries": n_queries, "dim": dim, "seed": seed, "dtype": "float32", "normalised": True}
    if docs_path.exists() and queries_path.exists() and meta_path.exists():
        if json.loads(meta_path.read_text()) == meta:
            return docs_path, queries_path
    rng = np.random.default_rng(seed)
    np.save(docs_path, random_unit_vectors(rng, n_docs, dim))
    np.save(queries_path, random_unit_vectors(rng, n_queries, dim))
    meta_path.write_text(json.dumps(meta) + "\n")
    return docs_path, queries_path


def bench_faiss(docs: np.ndarray, queries: np.ndarray, k: int, threads: int, repeats: int):
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    index.search(queries, k)  # warm-up
    runs, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        scores, ids = index.search(queries, k)
        runs.append(time.perf_counter() - start)
        result = (scores, ids)
    return min(runs), runs, result


def run_ours(template: str, docs: Path, queries: Path, k: int, out: Path, threads: int) -> dict:
    cmd = template.format(
        docs=shlex.quote(str(docs)), queries=shlex.quote(str(queries)), k=k, out=shlex.quote(str(out)),
        threads=threads,
    )
    env = dict(os.environ)
    env.setdefault("RAYON_NUM_THREADS", str(threads))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    print(f"running: {cmd}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, shell=True, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"our benchmark failed with exit code {proc.returncode}:\n{proc.stdout}")
    line = None
    for raw in proc.stdout.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "engine" in obj and "seconds" in obj:
                line = obj
    if line is None:
        sys.exit(f"our benchmark printed no JSON line with engine and seconds:\n{proc.stdout}")
    return line


def compare(docs: np.ndarray, queries: np.ndarray, faiss_scores, faiss_ids, ours: np.ndarray, tol: float) -> dict:
    n_q, k = faiss_ids.shape
    if ours.shape != (n_q, k) or ours.dtype != np.int64:
        sys.exit(f"our output has shape {ours.shape} and dtype {ours.dtype}, expected ({n_q}, {k}) int64")
    if ours.min() < 0 or ours.max() >= len(docs):
        sys.exit("our output contains row indices outside the document matrix")
    mismatched = ties = real = order_bad = 0
    details = []
    for q in range(n_q):
        ours_q = ours[q]
        if len(set(ours_q.tolist())) != k:
            real += 1
            details.append({"query": q, "problem": "duplicate indices"})
            continue
        qv = queries[q].astype(np.float64)
        exact = docs[ours_q].astype(np.float64) @ qv
        if np.any(np.diff(exact) > tol):
            order_bad += 1
        a, b = set(ours_q.tolist()), set(faiss_ids[q].tolist())
        if a == b:
            continue
        mismatched += 1
        kth = float(docs[faiss_ids[q, -1]].astype(np.float64) @ qv)
        diff = sorted(a ^ b)
        diff_scores = docs[diff].astype(np.float64) @ qv
        if np.all(np.abs(diff_scores - kth) <= tol):
            ties += 1
            details.append({"query": q, "problem": "boundary tie", "docs": diff, "kth": kth})
        else:
            real += 1
            details.append({"query": q, "problem": "different set", "only_ours": sorted(a - b)[:5],
                            "only_faiss": sorted(b - a)[:5], "kth": kth,
                            "max_dev": float(np.abs(diff_scores - kth).max())})
    return {"mismatched_queries": mismatched, "boundary_tie_mismatches": ties, "real_mismatches": real,
            "order_violations": order_bad, "checked_queries": n_q, "details": details[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tie-tol", type=float, default=1e-6)
    parser.add_argument("--workdir", type=Path, help="keep docs.npy / queries.npy here (default: a temp dir)")
    parser.add_argument("--ours", default=DEFAULT_OURS, help="our benchmark command template")
    parser.add_argument("--faiss-only", action="store_true", help="time FAISS only, skip our command")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        docs_path, queries_path = prepare(workdir, args.docs, args.queries, args.dim, args.seed)
        docs, queries = np.load(docs_path), np.load(queries_path)

        best, runs, (faiss_scores, faiss_ids) = bench_faiss(docs, queries, args.k, args.threads, args.repeats)
        print(json.dumps({"engine": "faiss-IndexFlatIP", "seconds": best, "runs": runs, "threads": args.threads,
                          "docs": args.docs, "dim": args.dim, "queries": args.queries, "k": args.k,
                          "faiss": faiss.__version__}), flush=True)
        if args.faiss_only:
            return 0

        out = Path(tmp) / "ours-topk.npy"
        ours_line = run_ours(args.ours, docs_path, queries_path, args.k, out, args.threads)
        print(json.dumps(ours_line), flush=True)
        if not out.exists():
            sys.exit(f"our benchmark did not write {out}")
        check = compare(docs, queries, faiss_scores, faiss_ids, np.load(out), args.tie_tol)
        summary = {"summary": True, "speedup": best / float(ours_line["seconds"]), **check}
        print(json.dumps(summary), flush=True)
        return 1 if check["real_mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
