#!/usr/bin/env python3
"""Reference retrieval scores of all-MiniLM-L6-v2 on Cranfield (shared/data/cranfield), the
end-to-end check for `reasonembed` evaluation and search.

Writes fixtures/goldens/cranfield-minilm.json (compact JSON).

Procedure (BEIR / MTEB exact search):
  * documents: `(title + " " + text).strip()` for every row of corpus.jsonl, exactly as BEIR's
    SentenceBERT.encode_corpus builds them (sep " ", then str.strip); Cranfield's text repeats the
    title, so the title appears twice. Docs 471 and 995 are empty (title and text ""), so their
    text is "" and embeds as [CLS] [SEP]; 995 is judged (query 125, relevance 2). Every distinct
    text is embedded once and its vector shared, so the two empty documents score identically
    and tie (broken by docid descending: "995" before "471").
  * queries: the `text` of queries.jsonl, unchanged (BEIR does not strip queries; none has edge
    whitespace anyway), joined with the qrels on `_id` (1..225), never on `orig_I`.
  * model: SentenceTransformer(all-MiniLM-L6-v2) on CPU, max_seq_length 256, float32,
    normalize_embeddings=True, batch size 32, torch single-threaded;
  * score: float32 dot product of the normalised vectors (= cosine), exhaustive over the 1,400
    documents, top 1000 per query;
  * metrics: pytrec_eval with the graded qrels as given (relevance 1-4, linear gain):
    ndcg_cut.10 (headline), recall.100, map, recip_rank; mean over the evaluated queries (all 225).

Schema:
  {"generator", "versions", "model", "model_sha256", "max_seq_length": 256, "normalize": true,
   "document_text": "(title + \" \" + text).strip()", "score": str, "top_k": 1000,
   "measures": ["ndcg_cut_10", "recall_100", "map", "recip_rank"],
   "documents": 1400, "distinct_document_texts": int, "documents_over_max_length": int,
   "queries": 225, "evaluated_queries": int, "qrels": int,
   "mean": {measure: float},
   "per_query": {qid: {measure: float}},
   "top10": {qid: [[doc_id, score], ...]}   (pytrec_eval order: float32 score desc, id desc),
   "boundary_gaps": {"min_gap_at_10": float, "queries_gap_below_1e-5": int}}
"boundary_gaps" says how close the 10th and 11th scores come (a reimplementation whose scores
differ by ~1e-6 may swap documents there; compare per-query values with that in mind).

Usage:  python scripts/cranfield_reference.py [--minilm DIR] [--data shared/data/cranfield]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytrec_eval  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GOLDENS = REPO / "fixtures" / "goldens"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cranfield"
DEFAULT_MINILM = Path.home() / ".cache" / "reasonembed" / "models" / "minilm"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_SEQ_LENGTH = 256
TOP_K = 1000
PYTREC_MEASURES = {"ndcg_cut.10", "recall.100", "map", "recip_rank"}
MEASURES = ["ndcg_cut_10", "recall_100", "map", "recip_rank"]


def load(data: Path):
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (data / "queries.jsonl").open(encoding="utf-8")]
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        assert next(reader) == ["query-id", "corpus-id", "score"]
        for qid, did, score in reader:
            qrels.setdefault(qid, {})[did] = int(score)
    return corpus, queries, qrels


def setup_torch() -> None:
    torch.set_num_threads(1)  # deterministic, and leaves the other core free
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def retrieve(minilm: Path, data: Path) -> dict:
    """The procedure of the module docstring up to the run (also used by make_cranfield_split.py).
    Returns {"corpus", "queries", "qrels", "run": {qid: {doc_id: score}} (top TOP_K),
    "top10": {qid: [[doc_id, score]]}, "gaps": [10th - 11th score per query],
    "distinct": [distinct document texts], "over": count of them longer than MAX_SEQ_LENGTH}."""
    digest = hashlib.sha256((minilm / "model.safetensors").read_bytes()).hexdigest()
    if digest != MINILM_SHA256:
        sys.exit(f"{minilm}/model.safetensors has sha256 {digest}, expected {MINILM_SHA256}")

    corpus, queries, qrels = load(data)
    assert len(corpus) == 1400 and len(queries) == 225 and sum(map(len, qrels.values())) == 1837
    doc_ids = [d["_id"] for d in corpus]
    assert len(set(doc_ids)) == len(doc_ids)
    doc_texts = [(d["title"] + " " + d["text"]).strip() for d in corpus]
    distinct = list(dict.fromkeys(doc_texts))
    index = {t: i for i, t in enumerate(distinct)}

    st = SentenceTransformer(str(minilm), device="cpu")
    assert st.max_seq_length == MAX_SEQ_LENGTH
    over = sum(len(ids) > MAX_SEQ_LENGTH for ids in st.tokenizer(distinct)["input_ids"])

    start = time.perf_counter()
    doc_emb = st.encode(distinct, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    print(f"embedded {len(distinct)} distinct document texts in {time.perf_counter() - start:.1f} s", flush=True)
    query_emb = st.encode([q["text"] for q in queries], batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    assert doc_emb.dtype == np.float32 and query_emb.dtype == np.float32
    scores = query_emb @ doc_emb.T  # [225, distinct] float32
    cols = np.array([index[t] for t in doc_texts])

    run, top10, gaps = {}, {}, []
    for q, row in zip(queries, scores):
        full = row[cols]  # per document row
        order = sorted(range(len(doc_ids)), key=lambda i: (float(full[i]), doc_ids[i].encode()), reverse=True)
        top = order[:TOP_K]
        run[q["_id"]] = {doc_ids[i]: float(full[i]) for i in top}
        top10[q["_id"]] = [[doc_ids[i], float(full[i])] for i in top[:10]]
        gaps.append(float(full[order[9]] - full[order[10]]))
    return {"corpus": corpus, "queries": queries, "qrels": qrels, "run": run, "top10": top10, "gaps": gaps,
            "distinct": distinct, "over": over}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, default=DEFAULT_MINILM, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Cranfield in BEIR layout")
    args = parser.parse_args()
    setup_torch()
    r = retrieve(args.minilm, args.data)
    corpus, queries, qrels, run, top10, gaps = (r[k] for k in ("corpus", "queries", "qrels", "run", "top10", "gaps"))
    distinct, over = r["distinct"], r["over"]

    evaluated = pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES).evaluate(run)
    per_query = {q["_id"]: {m: evaluated[q["_id"]][m] for m in MEASURES} for q in queries if q["_id"] in evaluated}
    mean = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in MEASURES}

    golden = {
        "generator": "scripts/cranfield_reference.py",
        "versions": {
            "python": ".".join(map(str, sys.version_info[:3])),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "pytrec_eval_terrier": version("pytrec-eval-terrier"),
            "numpy": np.__version__,
        },
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_sha256": MINILM_SHA256,
        "max_seq_length": MAX_SEQ_LENGTH,
        "normalize": True,
        "document_text": '(title + " " + text).strip()',
        "score": "float32 dot product of L2-normalised float32 embeddings (cosine); one embedding per distinct text",
        "top_k": TOP_K,
        "measures": MEASURES,
        "documents": len(corpus),
        "distinct_document_texts": len(distinct),
        "documents_over_max_length": over,
        "queries": len(queries),
        "evaluated_queries": len(per_query),
        "qrels": sum(map(len, qrels.values())),
        "mean": mean,
        "per_query": per_query,
        "top10": top10,
        "boundary_gaps": {
            "min_gap_at_10": min(gaps),
            "queries_gap_below_1e-5": sum(g < 1e-5 for g in gaps),
        },
    }
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / "cranfield-minilm.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")
    print(json.dumps({"evaluated_queries": len(per_query), **mean, **golden["boundary_gaps"],
                      "documents_over_max_length": over}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
