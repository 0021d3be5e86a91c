#!/usr/bin/env python3
"""Reference values for the trec_eval metrics (nDCG@k, recall@k, P@k, MAP, MAP@k, MRR) as
pytrec_eval computes them, plus a small TREC-format fixture.

Writes
  fixtures/goldens/trec_eval.json   the cases below with pytrec_eval's per-query output
  fixtures/trec/qrels.txt           TREC qrels `qid 0 docid rel` of the case "rand-trec-files"
  fixtures/trec/run.txt             TREC run `qid Q0 docid rank score tag` of the same case; the
                                    rank column deliberately contradicts the scores (trec_eval
                                    ignores it and re-sorts by score)
  fixtures/trec/expected.txt        what `trec_eval -q -m map -m recip_rank -m P.5 -m recall.100
                                    -m ndcg_cut.10 qrels.txt run.txt` prints (see below)

Schema of trec_eval.json (compact JSON):
  {"generator": "scripts/make_trec_goldens.py",
   "versions": {"python", "pytrec_eval_terrier", "numpy"},
   "measures": [the MEASURES strings passed to pytrec_eval.RelevanceEvaluator],
   "cases": [{"name": str, "note": str,
              "qrels": {qid: {docid: int}}, "run": {qid: {docid: float}},
              "expected": {qid: {measure: float}}}]}
`expected` is exactly `pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)`: keys like
ndcg_cut_10, recall_100, P_5, map, map_cut_10, recip_rank. Queries missing from its output (not
in both run and qrels, or with an empty qrels map) are missing here too. Numbers are the doubles
pytrec_eval returned (JSON round-trips them exactly).

Cases: the seven test vectors of shared/reference/bright.md §9 (A, B1, B2, C, D, E, F, G; the
script aborts if pytrec_eval does not give the values listed there) and seeded random cases with
graded relevance 0-3, many tied scores (numeric-string docids such as "10" vs "9", mixed-case,
path-like and non-ASCII ids), runs longer than 100, queries only in the run or only in the qrels,
a query whose judgements are all 0, an empty run, negative scores, scores that are distinct
doubles but the SAME float32, and (case "negative-zero-tie") -0.0 tied with +0.0.

trec_eval rules a reimplementation must follow (all verified below by an independent Python
implementation that must agree with pytrec_eval to 1e-12 on every case):
  * scores are stored as C `float` (trec_format.h: `float sim`), so a run's doubles are rounded
    to float32 before ranking: 0.1 and 0.1 + 1e-12 tie, so do 16777216.0 and 16777217.0;
  * sort by float32 score descending, ties by docid in descending byte order (strcmp(b, a));
    the comparison is C's `>`/`<` on floats, so -0.0 and +0.0 tie (no total order);
  * gain = integer relevance, only rel > 0 counts; relevant for P/recall/MAP/MRR means rel >= 1;
  * IDCG@k from all judged relevances of the query sorted descending, cut at k; 0 when IDCG = 0;
  * P@k divides by k even when fewer documents were retrieved; recall and MAP divide by the number
    of relevant judgements (0 when there are none);
  * only queries in both run and qrels are evaluated; a run query with {} is reported (all 0).

expected.txt: trec_eval prints each value as printf("%-22s\\t%s\\t%6.4f\\n", measure, qid,
value) — the measure name left-justified and space-padded to 22 characters, then a tab. With -q
the per-query blocks come first, queries in strcmp order of their qids ("1" < "10" < "2"),
measures within a block in trec_eval's internal table order (map, recip_rank, P_5, recall_100,
ndcg_cut_10), then the same measures for "all", the arithmetic mean over the evaluated queries
(those in BOTH qrels and run, i.e. trec_eval without -c = pytrec_eval's query set). The case has a
qrels-only query ("4") and a run-only query ("30"); neither appears in expected.txt nor in the
means.

Usage:  python scripts/make_trec_goldens.py
"""

from __future__ import annotations

import json
import math
import random
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytrec_eval

REPO = Path(__file__).resolve().parent.parent
GOLDENS = REPO / "fixtures" / "goldens"
TREC = REPO / "fixtures" / "trec"
SEED = 20260522

MEASURES = ["ndcg_cut.1,5,10,100", "recall.1,5,10,100", "P.1,5,10", "map", "map_cut.10,100", "recip_rank"]
CUTS = {"ndcg_cut": (1, 5, 10, 100), "recall": (1, 5, 10, 100), "P": (1, 5, 10), "map_cut": (10, 100)}

# Measures of fixtures/trec/expected.txt, in trec_eval's print order (measures.c table order).
TREC_FILE_MEASURES = ["map", "recip_rank", "P_5", "recall_100", "ndcg_cut_10"]
TREC_FILE_CASE = "rand-trec-files"


def evaluate(qrels: dict, run: dict) -> dict:
    return pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES)).evaluate(run)


# --------------------------------------------------------------------------------------------
# Independent implementation of the trec_eval rules, used only to cross-check pytrec_eval
# --------------------------------------------------------------------------------------------


def trec_ranking(run_q: dict[str, float]) -> list[str]:
    """Documents in trec_eval order: float32 score descending, then docid descending by bytes."""
    keyed = [(float(np.float32(score)), doc.encode("utf-8"), doc) for doc, score in run_q.items()]
    keyed.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [doc for _, _, doc in keyed]


def reference_measures(qrels_q: dict[str, int], run_q: dict[str, float]) -> dict[str, float]:
    ranked = trec_ranking(run_q)
    rels = [qrels_q.get(doc, 0) for doc in ranked]
    num_rel = sum(1 for r in qrels_q.values() if r >= 1)
    hits = [1 if r >= 1 else 0 for r in rels]
    out: dict[str, float] = {}

    prec_sum, found, prec_at = 0.0, 0, []
    for i, h in enumerate(hits):
        found += h
        if h:
            prec_sum += found / (i + 1)
        prec_at.append(prec_sum)
    out["map"] = prec_sum / num_rel if num_rel else 0.0
    for k in CUTS["map_cut"]:
        s = prec_at[min(k, len(prec_at)) - 1] if prec_at else 0.0
        out[f"map_cut_{k}"] = s / num_rel if num_rel else 0.0
    first = next((i for i, h in enumerate(hits) if h), None)
    out["recip_rank"] = 1.0 / (first + 1) if first is not None else 0.0
    for k in CUTS["P"]:
        out[f"P_{k}"] = sum(hits[:k]) / k
    for k in CUTS["recall"]:
        out[f"recall_{k}"] = sum(hits[:k]) / num_rel if num_rel else 0.0
    ideal = sorted((r for r in qrels_q.values() if r > 0), reverse=True)
    for k in CUTS["ndcg_cut"]:
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rels[:k]) if r > 0)
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal[:k]))
        out[f"ndcg_cut_{k}"] = dcg / idcg if idcg > 0 else 0.0
    return out


def cross_check(case: dict) -> None:
    qrels, run, expected = case["qrels"], case["run"], case["expected"]
    evaluated = {q for q in run if q in qrels and qrels[q]}
    assert set(expected) == evaluated, (case["name"], sorted(expected), sorted(evaluated))
    for qid in evaluated:
        ref = reference_measures(qrels[qid], run[qid])
        assert set(ref) == set(expected[qid]), (case["name"], qid)
        for m, v in ref.items():
            assert abs(v - expected[qid][m]) < 1e-12, (case["name"], qid, m, v, expected[qid][m])


# --------------------------------------------------------------------------------------------
# bright.md §9 test vectors
# --------------------------------------------------------------------------------------------

BRIGHT_VECTORS = [
    {
        "name": "A",
        "note": "bright.md §9 A: binary qrels, relevant documents at ranks 2 and 4",
        "qrels": {"q1": {"d1": 1, "d2": 1, "d3": 1}},
        "run": {"q1": {"d4": 0.9, "d1": 0.8, "d5": 0.7, "d2": 0.6, "d6": 0.5}},
        "check": {"q1": {"ndcg_cut_10": 0.498189, "ndcg_cut_1": 0.0, "P_10": 0.2, "recall_10": 0.666667,
                         "map_cut_10": 0.333333, "recip_rank": 0.5}},
    },
    {
        "name": "B1",
        "note": "bright.md §9 B1: tie, 'b' ranks first because it is the larger id",
        "qrels": {"q1": {"a": 1}},
        "run": {"q1": {"a": 0.5, "b": 0.5}},
        "check": {"q1": {"ndcg_cut_10": 0.630930}},
    },
    {
        "name": "B2",
        "note": "bright.md §9 B2: tie, 'a' > '0' in byte order so 'a' ranks first",
        "qrels": {"q1": {"a": 1}},
        "run": {"q1": {"a": 0.5, "0": 0.5}},
        "check": {"q1": {"ndcg_cut_10": 1.0}},
    },
    {
        "name": "C",
        "note": "bright.md §9 C: graded gains",
        "qrels": {"q1": {"d1": 2, "d2": 1}},
        "run": {"q1": {"d2": 0.9, "d1": 0.8}},
        "check": {"q1": {"ndcg_cut_10": 0.859719}},
    },
    {
        "name": "D",
        "note": "bright.md §9 D: q2 only in qrels, q3 only in run; only q1 is evaluated",
        "qrels": {"q1": {"d1": 1, "d2": 1}, "q2": {"d1": 1}},
        "run": {"q1": {"d1": 0.9, "d3": 0.8, "d2": 0.7}, "q3": {"d1": 0.9}},
        "check": {"q1": {}},
    },
    {
        "name": "E",
        "note": "bright.md §9 E: 15 relevant documents, one retrieved at rank 1 (IDCG cut at 10)",
        "qrels": {"q1": {f"d{i:02d}": 1 for i in range(1, 16)}},
        "run": {"q1": {"d01": 1.0}},
        "check": {"q1": {"ndcg_cut_10": 0.220092}},
    },
    {
        "name": "F",
        "note": "bright.md §9 F: a relevance-0 judgement changes nothing",
        "qrels": {"q1": {"d1": 1, "x": 0}},
        "run": {"q1": {"x": 0.9, "d1": 0.8}},
        "check": {"q1": {"ndcg_cut_10": 0.630930}},
    },
    {
        "name": "G",
        "note": "bright.md §9 G: empty run for q1: reported, every measure 0",
        "qrels": {"q1": {"d1": 1}},
        "run": {"q1": {}},
        "check": {"q1": {"*": 0.0}},
    },
]


def bright_cases() -> list[dict]:
    cases = []
    for vec in BRIGHT_VECTORS:
        expected = evaluate(vec["qrels"], vec["run"])
        if set(expected) != set(vec["check"]):
            sys.exit(f"bright.md §9 {vec['name']}: pytrec_eval evaluated {sorted(expected)}, "
                     f"expected {sorted(vec['check'])}")
        for qid, checks in vec["check"].items():
            for measure, want in checks.items():
                got = expected[qid].values() if measure == "*" else [expected[qid][measure]]
                if any(abs(g - want) > 5e-7 for g in got):
                    sys.exit(f"bright.md §9 {vec['name']}: {measure} = {list(got)}, bright.md says {want}")
        cases.append({k: vec[k] for k in ("name", "note", "qrels", "run")} | {"expected": expected})
    return cases


# --------------------------------------------------------------------------------------------
# Seeded random cases
# --------------------------------------------------------------------------------------------


def numeric_ids(rng: random.Random, n: int) -> list[str]:
    """Numeric-string docids whose byte order differs from numeric order ("9" > "10" > "100")."""
    must = ["9", "10", "99", "100", "1", "2", "20", "200"]
    rest = rng.sample([str(i) for i in range(3, 400) if str(i) not in must], n - len(must))
    return must + rest


def mixed_ids(rng: random.Random, n: int) -> list[str]:
    pools = [
        lambda i: f"d{i}",
        lambda i: f"D{i}",
        lambda i: str(i),
        lambda i: f"bio/Phototaxis_{i}.txt",
        lambda i: f"leetcode/leetcode_{i}.txt",
        lambda i: f"doc-{i:03d}",
        lambda i: f"caf\u00e9_{i}",
        lambda i: f"\u00fcber/{i}",
        lambda i: f"Z_{i}",
    ]
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        ids.append(pools[i % len(pools)](rng.randrange(1000)))
        ids = list(dict.fromkeys(ids))
        i += 1
    return ids


def random_query(
    rng: random.Random,
    pool: list[str],
    n_judged: int,
    run_len: int,
    scores,
    rel_weights=(3, 3, 2, 1),
) -> tuple[dict[str, int], dict[str, float]]:
    """Judged docs with relevance 0..3 and a run over the pool (part judged, part not); the run
    keeps a random (not score-sorted) insertion order."""
    judged = rng.sample(pool, min(n_judged, len(pool)))
    qrels = {d: rng.choices(range(4), weights=rel_weights)[0] for d in judged}
    ranked_pool = rng.sample(pool, min(run_len, len(pool)))
    run = {d: scores(rng) for d in ranked_pool}
    return qrels, run


def quantized(step: float, lo: float, hi: float):
    n = int(round((hi - lo) / step))
    return lambda rng: lo + step * rng.randint(0, n)


def continuous_f32(lo: float, hi: float):
    return lambda rng: float(np.float32(rng.uniform(lo, hi)))


def case_ties_numeric(rng):
    pool = numeric_ids(rng, 60)
    qrels, run = {}, {}
    for q in range(1, 7):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 15, rng.randint(10, 40), quantized(0.5, 0.0, 1.5))
    # One query where every document ties: the order is pure byte order.
    qrels["q7"] = {"9": 1, "10": 2, "100": 3, "99": 0}
    run["q7"] = {d: 0.25 for d in ["1", "2", "9", "10", "20", "99", "100", "200"]}
    return "numeric-string docids, only four score levels (massive ties), one query where all scores tie", qrels, run


def case_graded(rng):
    pool = mixed_ids(rng, 80)
    qrels, run = {}, {}
    for q in range(1, 7):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 20, rng.randint(20, 60), continuous_f32(-1.0, 1.0))
    return "graded relevance 0-3, continuous float32 scores", qrels, run


def case_long_runs(rng):
    pool = [f"doc{i}" for i in range(400)]
    qrels, run = {}, {}
    for q in range(1, 5):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(
            rng, pool, 60, rng.randint(120, 260), quantized(1 / 64, 0.0, 1.0), rel_weights=(2, 3, 2, 1)
        )
    return "runs of 120-260 documents (beyond the @100 cut-offs), scores quantised to 1/64", qrels, run


def case_many_relevant(rng):
    pool = [str(i) for i in range(300)]
    qrels = {"q1": {d: 1 for d in pool[:130]}, "q2": {d: rng.randint(1, 3) for d in pool[50:170]}}
    run = {
        "q1": {d: quantized(0.125, 0.0, 2.0)(rng) for d in rng.sample(pool, 180)},
        "q2": {d: continuous_f32(0.0, 1.0)(rng) for d in rng.sample(pool, 150)},
    }
    return "more than 100 relevant documents (IDCG@100 and recall@100 saturate)", qrels, run


def case_negative(rng):
    pool = mixed_ids(rng, 50)
    qrels, run = {}, {}
    for q in range(1, 6):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 12, rng.randint(15, 35), quantized(0.25, -3.0, -0.25))
    run["q5"] |= {pool[0]: 0.0, pool[1]: -0.0}  # +0 and -0 compare equal
    return "negative scores (multiples of 0.25 in [-3, -0.25]), plus 0.0 and -0.0 tied", qrels, run


def case_missing_queries(rng):
    pool = numeric_ids(rng, 40)
    qrels, run = {}, {}
    for q in range(1, 9):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 10, 20, quantized(0.1, 0.0, 1.0))
    for q in ("q1", "q2"):
        del run[q]
    for q in ("q7", "q8"):
        del qrels[q]
    return "q1, q2 only in the qrels and q7, q8 only in the run: only q3-q6 are evaluated", qrels, run


def case_nonrelevant(rng):
    pool = mixed_ids(rng, 40)
    qrels, run = {}, {}
    for q in range(1, 4):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 10, 25, quantized(0.2, 0.0, 2.0))
    qrels["q1"] = {d: 0 for d in qrels["q1"]}  # judged, but nothing relevant
    run["q1"] |= dict.fromkeys(list(qrels["q1"])[:5], 1.0)
    qrels["q2"] = {d: rng.randint(1, 3) for d in pool[:5]}  # relevant docs exist, none retrieved
    run["q2"] = {d: 0.5 for d in pool[5:30]}
    run["q3"] = {}  # empty run: reported with zeros
    qrels["q4"] = {}  # empty qrels map: pytrec_eval drops the query
    run["q4"] = {pool[0]: 1.0}
    return ("q1 judged but all relevance 0; q2 relevant documents never retrieved; q3 empty run; "
            "q4 empty qrels map (dropped)"), qrels, run


def case_id_bytes(rng):
    pool = mixed_ids(rng, 45)
    qrels, run = {}, {}
    for q in range(1, 6):
        qrels[f"q{q}"], run[f"q{q}"] = random_query(rng, pool, 14, 30, quantized(1.0, 0.0, 2.0))
    return ("mixed-case, path-like ('/', '.txt') and non-ASCII (UTF-8 bytes > 0x7f sort last) ids, "
            "three score levels"), qrels, run


def case_float32(rng):
    base = [0.1, 0.3, 0.7, -0.2]
    qrels = {"q1": {"a": 1, "m": 2, "z": 0}, "q2": {"1": 1, "2": 1}, "q3": {}}
    run = {
        # distinct doubles, equal float32 values: trec_eval ties them and orders by docid
        "q1": {"a": 0.1 + 1e-12, "z": 0.1, "m": 0.1 - 1e-12, "b": 0.3 + 2e-10, "y": 0.3},
        # float32 spacing is 1.0 at 2**24 and 2.0 above 2**25
        "q2": {"1": 16777217.0, "2": 33554433.0, "3": 16777216.0, "4": 33554432.0, "5": 33554434.0},
    }
    for q in range(4, 8):
        pool = [f"d{i}" for i in range(30)]
        qrels[f"q{q}"] = {d: rng.randint(0, 3) for d in rng.sample(pool, 10)}
        run[f"q{q}"] = {d: rng.choice(base) + rng.choice([0.0, 1e-13, -1e-13, 3e-9]) for d in pool}
    del qrels["q3"]
    return "scores that differ as doubles but round to the same float32 (trec_eval stores float)", qrels, run


def case_big(rng):
    pool = mixed_ids(rng, 150) + numeric_ids(rng, 50)
    pool = list(dict.fromkeys(pool))
    qrels, run = {}, {}
    for q in range(1, 13):
        scorer = rng.choice([quantized(0.05, -1.0, 1.0), continuous_f32(-2.0, 2.0), quantized(0.5, 0.0, 2.0)])
        qrels[str(q)], run[str(q)] = random_query(rng, pool, rng.randint(3, 40), rng.randint(1, 200), scorer)
    return "12 queries with numeric qids, mixed ids and scorers, runs of 1-200 documents", qrels, run


def case_trec_files(rng):
    pool = numeric_ids(rng, 40) + [f"doc/{i}.txt" for i in range(60)]
    qrels, run = {}, {}
    for q in ["1", "2", "3", "4", "10", "11", "20", "30"]:
        n_judged, run_len = rng.randint(8, 25), rng.randint(20, 150)
        qrels[q], run[q] = random_query(rng, pool, n_judged, run_len, quantized(0.125, -1.0, 3.0))
    del run["4"]  # qrels only
    del qrels["30"]  # run only
    qrels["11"] = {d: 0 for d in qrels["11"]}  # judged, nothing relevant
    return ("the case written to fixtures/trec/: numeric qids (strcmp order 1 < 10 < 11 < 2 ...), "
            "'4' only in qrels, '30' only in the run, '11' without relevant documents"), qrels, run


RANDOM_CASES = [
    ("rand-ties-numeric-ids", case_ties_numeric),
    ("rand-graded", case_graded),
    ("rand-long-runs", case_long_runs),
    ("rand-many-relevant", case_many_relevant),
    ("rand-negative-scores", case_negative),
    ("rand-missing-queries", case_missing_queries),
    ("rand-nonrelevant", case_nonrelevant),
    ("rand-id-bytes", case_id_bytes),
    ("rand-float32-ties", case_float32),
    ("rand-big", case_big),
    (TREC_FILE_CASE, case_trec_files),
]


# Hand-made edge cases, appended after the random ones.
EDGE_CASES = [
    {
        "name": "negative-zero-tie",
        "note": "-0.0 and +0.0 are equal C floats, so they tie and the larger id ranks first "
                "(a total order such as Rust's f32::total_cmp would put +0.0 first)",
        "qrels": {"q1": {"zero-b": 2, "x": 1}},
        "run": {"q1": {"zero-a": 0.0, "zero-b": -0.0, "x": -0.5, "y": 0.5}},
    },
]


def edge_cases() -> list[dict]:
    return [case | {"expected": evaluate(case["qrels"], case["run"])} for case in EDGE_CASES]


def random_cases() -> list[dict]:
    cases = []
    for i, (name, make) in enumerate(RANDOM_CASES):
        rng = random.Random(SEED + i)
        note, qrels, run = make(rng)
        cases.append({"name": name, "note": note, "qrels": qrels, "run": run, "expected": evaluate(qrels, run)})
    return cases


def check_properties(cases: dict[str, dict]) -> None:
    """The random cases must really contain what they claim."""

    def ties_decide(case):  # some tie between a relevant and a non-relevant document
        for qid, run_q in case["run"].items():
            groups: dict[float, set[int]] = {}
            for d, s in run_q.items():
                groups.setdefault(float(np.float32(s)), set()).add(case["qrels"].get(qid, {}).get(d, 0) >= 1)
            if any(len(g) == 2 for g in groups.values()):
                return True
        return False

    for name in ("rand-ties-numeric-ids", "rand-long-runs", "rand-negative-scores", "rand-id-bytes",
                 "rand-float32-ties", TREC_FILE_CASE):
        assert ties_decide(cases[name]), name
    assert max(len(r) for r in cases["rand-long-runs"]["run"].values()) > 100
    assert any(v < 0 for r in cases["rand-negative-scores"]["run"].values() for v in r.values())
    assert all(v == 0.0 for v in cases["rand-nonrelevant"]["expected"]["q1"].values())
    assert any(abs(s) > 0 and float(np.float32(s)) != s for s in cases["rand-float32-ties"]["run"]["q1"].values())
    tf = cases[TREC_FILE_CASE]
    assert "4" in tf["qrels"] and "4" not in tf["run"] and "30" in tf["run"] and "30" not in tf["qrels"]
    # -0.0 ties with +0.0: zero-b (the larger id, relevant) ranks 2nd, not 3rd.
    assert cases["negative-zero-tie"]["expected"]["q1"]["recip_rank"] == 0.5
    # Where the float32 rounding matters: ranking by the raw doubles would give other values.
    fc = cases["rand-float32-ties"]
    q1 = sorted(fc["run"]["q1"].items(), key=lambda t: (t[1], t[0]), reverse=True)
    assert q1[-1][0] != trec_ranking(fc["run"]["q1"])[-1]


# --------------------------------------------------------------------------------------------
# TREC files
# --------------------------------------------------------------------------------------------


def write_trec_files(case: dict) -> None:
    TREC.mkdir(parents=True, exist_ok=True)
    qrels, run, expected = case["qrels"], case["run"], case["expected"]
    rng = random.Random(SEED)
    lines = [f"{qid} 0 {doc} {rel}\n" for qid in qrels for doc, rel in qrels[qid].items()]
    (TREC / "qrels.txt").write_text("".join(lines), encoding="utf-8")

    lines = []
    for qid in run:
        docs = list(run[qid].items())
        rng.shuffle(docs)  # file order and rank column are unrelated to the scores
        for rank, (doc, score) in enumerate(docs, start=1):
            lines.append(f"{qid} Q0 {doc} {rank} {score!r} reasonembed-fixture\n")
    (TREC / "run.txt").write_text("".join(lines), encoding="utf-8")

    # Ranks must contradict the scores somewhere, or the fixture would not test anything.
    assert any(trec_ranking(run[q]) != [d for d in run[q]] for q in run)

    evaluated = sorted(expected, key=lambda q: q.encode("utf-8"))  # strcmp order
    out = []
    for qid in evaluated:
        out += [f"{m:<22}\t{qid}\t{expected[qid][m]:6.4f}\n" for m in TREC_FILE_MEASURES]
    for m in TREC_FILE_MEASURES:
        total = 0.0
        for qid in evaluated:  # trec_eval accumulates in this order
            total += expected[qid][m]
        out.append(f"{m:<22}\tall\t{total / len(evaluated):6.4f}\n")
    (TREC / "expected.txt").write_text("".join(out), encoding="utf-8")
    for name in ("qrels.txt", "run.txt", "expected.txt"):
        path = TREC / name
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")


def main() -> int:
    cases = bright_cases() + random_cases() + edge_cases()
    for case in cases:
        cross_check(case)
    by_name = {c["name"]: c for c in cases}
    assert len(by_name) == len(cases)
    check_properties(by_name)

    golden = {
        "generator": "scripts/make_trec_goldens.py",
        "versions": {
            "python": ".".join(map(str, sys.version_info[:3])),
            "pytrec_eval_terrier": version("pytrec-eval-terrier"),
            "numpy": np.__version__,
        },
        "measures": MEASURES,
        "cases": cases,
    }
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / "trec_eval.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes, {len(cases)} cases)")
    write_trec_files(by_name[TREC_FILE_CASE])
    return 0


if __name__ == "__main__":
    sys.exit(main())
