#!/usr/bin/env python3
"""Reference implementation of hybrid fusion (crates/search/src/fusion.rs)
and the goldens the Rust tests check it against.

Plain Python floats (IEEE doubles), the operations in the order the module
documents; sums are explicit left-to-right loops (Python >= 3.12's sum() of
floats is compensated, which Rust's is not). Inputs are float32 values, as
retrievers return them.

    python3 scripts/fusion_reference.py > fixtures/goldens/fusion.json
"""
import json
import random
import struct


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def total(values):
    s = 0.0
    for v in values:
        s += v
    return s


def min_max(hits):
    lo = min(s for _, s in hits)
    hi = max(s for _, s in hits)
    return {i: ((s - lo) / (hi - lo) if hi > lo else 1.0) for i, s in hits}


def z_score(hits):
    n = float(len(hits))
    mean = total(s for _, s in hits) / n
    var = total((s - mean) * (s - mean) for _, s in hits) / n
    std = var ** 0.5
    return {i: ((s - mean) / std if std > 0.0 else 0.0) for i, s in hits}


def fuse(kind, param, dense, bm25, k):
    fused = {}
    if kind == "rrf":
        for hits in (dense, bm25):
            for rank, (i, _) in enumerate(hits, start=1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (param + float(rank))
    else:
        norm = min_max if kind == "minmax" else z_score
        d = norm(dense) if dense else {}
        s = norm(bm25) if bm25 else {}
        d_floor = min(d.values()) if d else 0.0
        s_floor = min(s.values()) if s else 0.0
        for i, _ in dense + bm25:
            if i not in fused:
                fused[i] = param * d.get(i, d_floor) + (1.0 - param) * s.get(i, s_floor)
    ranked = sorted(fused.items(), key=lambda t: (-t[1], t[0]))
    return ranked[:k]


def ranked_list(rng, n_docs, depth, scale, ties):
    ids = rng.sample(range(n_docs), depth)
    scores = [f32(rng.random() * scale) for _ in ids]
    if ties:
        scores = [f32(round(s, 1)) for s in scores]
    hits = list(zip(ids, scores))
    hits.sort(key=lambda t: (-t[1], t[0]))
    return hits


def main():
    rng = random.Random(20261129)
    cases = []
    specs = [("rrf", 60.0), ("rrf", 1.0), ("minmax", 0.5), ("minmax", 0.8), ("zscore", 0.5), ("zscore", 0.3)]
    for case in range(24):
        kind, param = specs[case % len(specs)]
        n_docs = rng.choice([5, 40, 300])
        dense = ranked_list(rng, n_docs, rng.randint(0, min(n_docs, 50)), 1.0, case % 4 == 3)
        bm25 = ranked_list(rng, n_docs, rng.randint(1, min(n_docs, 50)), 30.0, case % 5 == 4)
        k = rng.choice([1, 10, 100])
        cases.append({
            "fusion": f"{kind}:{param}",
            "k": k,
            "dense": dense,
            "bm25": bm25,
            # Scores as their IEEE bits, so the comparison is exact.
            "fused": [[i, bits(s)] for i, s in fuse(kind, param, dense, bm25, k)],
        })
    print(json.dumps({"generator": "scripts/fusion_reference.py", "cases": cases}, separators=(",", ":")))


if __name__ == "__main__":
    main()
