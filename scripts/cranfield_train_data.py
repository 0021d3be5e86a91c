#!/usr/bin/env python3
"""Training rows for the Cranfield learning check, with negatives mined by the base model.

Reads the fixed split of `fixtures/cranfield-split.json` (every 5th query held out), Cranfield
(`../shared/data/cranfield`, BEIR layout) and a TREC run of the BASE model over all queries (what
`reasonembed eval beir --model minilm --data ../shared/data/cranfield --out DIR` writes to
`DIR/runs/cranfield.trec`). Writes into OUT:

  train.jsonl        FlagEmbedding rows for the 180 training queries: `pos` = the judged documents
                     with relevance >= 2 (useful background or better), `neg` = the base model's
                     top-ranked documents that carry no judgement for the query (up to 30 from the
                     top 60) -- hard negatives mined by the model being fine-tuned
  heldout/           a BEIR folder of the 45 held-out queries: corpus.jsonl (all 1,400 documents),
                     queries.jsonl, qrels/test.tsv

Document text is `(title + " " + text).strip()`, as the evaluator builds it. No model is run here:
only files are read and written, so the script needs nothing beyond the standard library.

Usage:  python3 scripts/cranfield_train_data.py --run DIR/runs/cranfield.trec --out OUT
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POSITIVE_MIN = 2
NEGATIVES = 30
MINING_DEPTH = 60


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/cranfield")
    parser.add_argument("--run", type=Path, required=True, help="TREC run of the base model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    split = json.loads((REPO / "fixtures/cranfield-split.json").read_text())
    corpus = read_jsonl(args.data / "corpus.jsonl")
    text = {str(d["_id"]): f"{d.get('title', '')} {d['text']}".strip() for d in corpus}
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(args.data / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (args.data / "qrels/test.tsv").read_text().splitlines()[1:]:
        qid, doc, rel = line.split("\t")
        qrels[qid][doc] = int(rel)
    ranked: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in args.run.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        ranked[qid].append((float(score), doc))

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for qid in split["train"]:
        positives = [text[d] for d, r in sorted(qrels[qid].items()) if r >= POSITIVE_MIN and d in text]
        top = [doc for _, doc in sorted(ranked[qid], key=lambda x: -x[0])[:MINING_DEPTH]]
        negatives = [text[d] for d in top if d not in qrels[qid]][:NEGATIVES]
        if positives and negatives:
            rows.append({"query": queries[qid], "pos": positives, "neg": negatives})
    (args.out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    held = args.out / "heldout"
    (held / "qrels").mkdir(parents=True, exist_ok=True)
    (held / "corpus.jsonl").write_text((args.data / "corpus.jsonl").read_text())
    (held / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in split["heldout"]))
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q in split["heldout"] for d, r in sorted(qrels[q].items())]
    (held / "qrels/test.tsv").write_text("\n".join(lines) + "\n")
    print(json.dumps({"train_rows": len(rows), "heldout_queries": len(split["heldout"]),
                      "positives": sum(len(r["pos"]) for r in rows), "negatives_per_row": NEGATIVES}))


if __name__ == "__main__":
    main()
