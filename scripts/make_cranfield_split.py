#!/usr/bin/env python3
"""A fixed train / held-out split of Cranfield's 225 queries, for fine-tuning experiments that
must be evaluated on queries the model was not trained on, plus the base model's score on the
held-out part (the number a fine-tuned model has to beat).

Writes fixtures/cranfield-split.json (compact JSON).

Rule: query ids are the `_id` of shared/data/cranfield/queries.jsonl ("1".."225", joined with
qrels/test.tsv on `_id`, never on `orig_I`). Every id divisible by 5 ("5", "10", .., "225": 45
queries) is held out; the other 180 are training queries. No randomness, so the split is the same
everywhere; every query has judgements in qrels/test.tsv.

Base score: all-MiniLM-L6-v2 with exactly the procedure of scripts/cranfield_reference.py (its
`retrieve` function is imported, not copied: documents (title + " " + text).strip(), normalised
float32 embeddings, max_seq_length 256, exhaustive dot product over all 1,400 documents, top 1000),
then pytrec_eval ndcg_cut.10 on the held-out queries only (qrels and run restricted to them). The
per-query values do not depend on which other queries are evaluated, so they must equal the
held-out entries of fixtures/goldens/cranfield-minilm.json; the script asserts that (to 1e-9) and
that the mean over all 225 queries is that file's mean.

Schema:
  {"generator": "scripts/make_cranfield_split.py",
   "versions": {"python", "torch", "transformers", "sentence_transformers", "pytrec_eval_terrier",
                "numpy"},
   "data": "shared/data/cranfield", "rule": str,
   "train": [qid, ...] (180, ascending numeric order), "heldout": [qid, ...] (45, same order),
   "qrels": {"train": int, "heldout": int}   (judgement lines in each part),
   "model": "sentence-transformers/all-MiniLM-L6-v2", "model_sha256": str,
   "measure": "ndcg_cut_10",
   "base_heldout_ndcg_cut_10": float          (mean over the 45 held-out queries),
   "base_train_ndcg_cut_10": float            (mean over the 180 training queries, for reference),
   "base_all_ndcg_cut_10": float              (all 225; = cranfield-minilm.json "mean"),
   "per_query_heldout": {qid: float}}         (ndcg_cut_10 of each held-out query)
Query ids are strings.

Usage:  python scripts/make_cranfield_split.py [--minilm DIR] [--data shared/data/cranfield]
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cranfield_reference as ref  # noqa: E402  (sets HF_HUB_OFFLINE before importing transformers)
import numpy as np  # noqa: E402
import pytrec_eval  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "cranfield-split.json"
RULE = "query ids (queries.jsonl _id, 1..225) divisible by 5 are held out (45); the other 180 are training queries"
MEASURE = "ndcg_cut_10"


def ndcg10(qrels: dict, run: dict, qids: list[str]) -> dict[str, float]:
    evaluated = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in qids}, {"ndcg_cut.10"}).evaluate(
        {q: run[q] for q in qids}
    )
    assert set(evaluated) == set(qids)
    return {q: evaluated[q][MEASURE] for q in qids}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, default=ref.DEFAULT_MINILM, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--data", type=Path, default=ref.DEFAULT_DATA, help="Cranfield in BEIR layout")
    args = parser.parse_args()
    ref.setup_torch()

    _, queries, qrels = ref.load(args.data)
    ids = [q["_id"] for q in queries]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 226)], "expected query ids 1..225"
    heldout = [q for q in sorted(ids, key=int) if int(q) % 5 == 0]
    train = [q for q in sorted(ids, key=int) if int(q) % 5 != 0]
    assert len(heldout) == 45 and len(train) == 180 and not set(heldout) & set(train)
    assert all(qrels.get(q) for q in ids), "a query without judgements"

    r = ref.retrieve(args.minilm, args.data)
    run = r["run"]
    held = ndcg10(qrels, run, heldout)
    trained = ndcg10(qrels, run, train)
    everything = ndcg10(qrels, run, ids)

    golden_path = ref.GOLDENS / "cranfield-minilm.json"
    golden = json.loads(golden_path.read_text(encoding="utf-8"))
    worst = max(abs(everything[q] - golden["per_query"][q][MEASURE]) for q in ids)
    assert worst < 1e-9, f"per-query nDCG@10 differs from {golden_path.name} by {worst}"
    assert abs(mean(everything.values()) - golden["mean"][MEASURE]) < 1e-9
    assert all(held[q] == everything[q] for q in heldout)

    out = {
        "generator": "scripts/make_cranfield_split.py",
        "versions": {
            "python": ".".join(map(str, sys.version_info[:3])),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "pytrec_eval_terrier": version("pytrec-eval-terrier"),
            "numpy": np.__version__,
        },
        "data": "shared/data/cranfield",
        "rule": RULE,
        "train": train,
        "heldout": heldout,
        "qrels": {"train": sum(len(qrels[q]) for q in train), "heldout": sum(len(qrels[q]) for q in heldout)},
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_sha256": ref.MINILM_SHA256,
        "measure": MEASURE,
        "base_heldout_ndcg_cut_10": mean(held.values()),
        "base_train_ndcg_cut_10": mean(trained.values()),
        "base_all_ndcg_cut_10": mean(everything.values()),
        "per_query_heldout": held,
    }
    OUT.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size} bytes)")
    print(json.dumps({k: out[k] for k in ("qrels", "base_heldout_ndcg_cut_10", "base_train_ndcg_cut_10",
                                           "base_all_ndcg_cut_10")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
