#!/usr/bin/env python3
"""Reference outputs of BRIGHT's BM25 baseline, produced by BRIGHT's own code path: the function
`retrieval_bm25` of xlang-ai/BRIGHT `retrievers.py` (pyserini's Lucene analyzer, gensim's
Dictionary + LuceneBM25Model(k1=0.9, b=0.4) + SparseMatrixSimilarity without normalisation,
excluded ids popped, stable sort by score, top 1,000) and its nDCG through pytrec_eval.

Writes fixtures/goldens/bm25-bright.json (compact JSON; schema below).

Environment: `scripts/bm25-goldens.sh` builds the pinned virtual environment
(scripts/requirements-bm25-golden.txt) in /.venv-bm25 and runs this script. It needs a Java
runtime: Debian's openjdk-17 (`apt-get install openjdk-17-jdk-headless`), found through
JAVA_HOME (default /usr/lib/jvm/java-17-openjdk-amd64). pyserini 0.22.1 is the last release whose
Anserini jar (0.22.1, Lucene 9.5.0) runs on Java 11+/17; later releases need Java 21, which
Debian 12 does not package. The analysis chain has not changed since (Anserini's
DefaultEnglishAnalyzer: StandardTokenizer, EnglishPossessiveFilter, LowerCaseFilter, StopFilter
with EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, PorterStemFilter). pyserini is installed with
--no-deps: `from pyserini import analysis` needs only pyjnius and the bundled fat jar.

Schema of bm25-bright.json:
  {"generator", "versions": {...}, "k1": 0.9, "b": 0.4, "depth": 1000, "stored_top": 100,
   "texts": [{"text": str, "tokens": [str]}]           BRIGHT's analyzer on hand-picked texts
   "vocabularies": {name: {"words": [str], "stems": [str]}}
        every distinct token of the corpus and queries after tokenisation, possessive removal,
        lower-casing and stop-word removal (pyserini's analyzer with stemming=False), sorted by
        code point, with its Porter stem from BRIGHT's analyzer (same position in the stream)
   "sweep": {"note": str, "blocks": [[first_code_point, tokens, sha256]]}
        the analyzer without stemming and stop words (stemming=False, stopwords=False) on the
        text `sweep_block(first)` (see below) for every block of 4,096 code points in
        U+0020..U+3FFFF and U+E0000..U+E0FFF; sha256 of the tokens joined by "\n"
   "collections": {name: {
        "documents": int, "tokens": int, "terms": int   (gensim's num_docs, num_pos, len(dictionary)),
        "analysis_sha256": {"documents": hex, "queries": hex}
            sha256 of the analysed texts, one line per text, tokens joined by " ",
        "evaluated_queries": int, "mean": {"ndcg_cut_10": float},
        "queries": {qid: {"ndcg_cut_10": float, "ids": [str], "scores": [float]}}}}
        ids/scores: BRIGHT's ranking (float32 score descending, ties in corpus order: Python's
        stable sort of the score dict, whose order is the first appearance of each id), cut at
        "stored_top"; scores are float32 values written as their shortest float32 repr.
  Collections: "cranfield" (shared/data/cranfield: documents `(title + " " + text).strip()`,
  all queries, qrels/test.tsv graded as given, no exclusions) and, for the BRIGHT-shaped fixture
  (fixtures/bright-hub), "bright/<setting>/<task>" with the settings of make_bright_fixture.py:
  short (examples, documents, gold_ids), long (examples, long_documents, gold_ids_long; biology)
  and gpt4_reason (gpt4_reason, documents, gold_ids).

Checks before writing: the float32 scores equal, bit for bit, a float32 accumulation of
float32(w_q) * float32(w_d) over the query's terms in ascending gensim term id (gensim's
csr x csc product in scipy), and agree to 1e-9 relative with a float64 re-implementation of
bright.md §8; every stored score round-trips through its decimal to the same float32 (also via a
double, as serde_json reads it).

Usage:  scripts/bm25-goldens.sh   (or: .venv-bm25/bin/python scripts/make_bm25_goldens.py
        [--cranfield DIR] [--dump DIR])
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytrec_eval  # noqa: E402
from gensim.corpora import Dictionary  # noqa: E402
from gensim.models import LuceneBM25Model  # noqa: E402
from gensim.similarities import SparseMatrixSimilarity  # noqa: E402
from pyserini import analysis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures/goldens/bm25-bright.json"
OUT_CRANFIELD = ROOT / "fixtures/goldens/bm25-cranfield.json"
K1, B = 0.9, 0.4
DEPTH = 1000
STORED_TOP = 100

# BRIGHT's analyzer, and the same chain without Porter (and without stop words).
ANALYZER = analysis.Analyzer(analysis.get_lucene_analyzer())
WORDS = analysis.Analyzer(analysis.get_lucene_analyzer(stemming=False))
SURFACE = analysis.Analyzer(analysis.get_lucene_analyzer(stemming=False, stopwords=False))

# Porter's own examples, and words on which Lucene's Porter stemmer (Martin Porter's ANSI C
# reference: -bli -> -ble, -logi -> -log, nothing shorter than 3 letters stemmed) differs from the
# published algorithm or from the `porter-stemmer` crate our BM25 used before (found by running
# both over the Cranfield and fixture vocabularies: -ment/-ement, y after a lone consonant, ...).
PORTER_WORDS = (
    "agreement element document movement statement argument instrument supplement increment "
    "dry fly flying why sky lying phys technology terminology physiology flexibly negligibly "
    "plausibly "
    "biology biological analogy archaeology apology possibly sensibly visibly feasibly audibly "
    "is as us ys yes sky skies news dies ties lies ies bis gas its has was does goes "
    "caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated troubled "
    "sized hopping tanned falling hissing fizzed failing filing happy relational conditional "
    "rational valenci hesitanci digitizer conformabli radicalli differentli vileli analogousli "
    "vietnamization predication operator feudalism decisiveness hopefulness callousness "
    "formaliti sensitiviti sensibiliti triplicate formative formalize electriciti electrical "
    "hopeful goodness revival allowance inference airliner gyroscopic adjustable defensible "
    "irritant replacement adjustment dependent adoption homologou communism activate "
    "angulariti homologous effective bowdlerize probate rate cease controll roll generalizations "
    "oscillations aeroelastic ionization eed ied ing sing bring string thing y yy by ay oy "
    "abli bli logi alli eli ousli entli anci enci izer ization ation ator alism iveness fulness "
    "ousness aliti iviti biliti icate ative alize iciti ical ful ness "
    "naïveness résumés zoë’s cañons straße"
)

TEXTS = [
    "The Insects' attraction to John's lights is running",
    "3.14 1,000 1.000,5 10-20 2024-06-12 12:30 $100 50% 1e-5 0x1F 3rd 1st 42nd 1/2 -7 +3 .5 5.",
    "U.S.A. e.g. i.e. Ph.D. a.m. U.K.'s A.B.C.D.E",
    "john.doe@example.com, mailto:jane_doe+tag@mail.example.org <x@y.z>",
    "https://www.example.com/path/to/page.html?query=1&b=two#frag http://localhost:8080/ ftp://ftp.x.org",
    "state-of-the-art well-known e-mail co-operate re-enter x-ray T-shirt -- — – ‐",
    "don't can't won't it's I'm we're they'll O'Neil rock'n'roll 'quoted' '' a''b a'b'c",
    "John's JOHN'S Johns' James’s James‘s Ｊｏｈｎ＇ｓ dog's's s's 's x'S",
    "don’t O’Neil’s Peter’s dogs’ it′s",
    "naïve café résumé Zoë façade Ærø straße İstanbul ΣΊΣΥΦΟΣ Ολυμπος Москва ǅemal ǈ",
    "北京大学 中华人民共和国 漢字 々 〆 〇 日本語のテキスト ひらがな カタカナ ｶﾀｶﾅ ー ゛",
    "한국어 텍스트 ภาษาไทย ພາສາລາວ မြန်မာ ខ្មែរ ᄀᄁ",
    'עברית "quoted" צה"ל ג\'ירפה א"',
    "😀 👍🏽 👨‍👩‍👧 🇺🇸🇬🇧 🇺 #️⃣ 1️⃣ 1⃣ ©️ ® ™ ☺️ 🏳️‍🌈 🏴󠁧󠁢󠁳󠁣󠁴󠁿 a😀b 😀😀 ☝🏿 🏽",
    "snake_case CamelCase __init__ _private a_1 foo__bar _ __ 1_000 _1_",
    "Mixed CASE WoRdS UPPER lower MiXeD",
    "tab\tnew\nline\r\ncarriage  spaces\u00a0nbsp\u2003em\u3000ideographic",
    "C++ C# F# .NET node.js 3.x v1.2.3 a.b.c 1.2.3.4 ... --- a...b 1..2 a:b 1:2 a;b a,b 1,2,3",
    "x² H₂O ½ ① Ⅻ ﬁ ﬂ ℃ ™ ㎏ ℓ µ Ω",
    "e\u0301te\u0301 a\u0308 \u200bzero\u200bwidth soft\u00adhyphen word\u200dzwj \u0301lead",
    "０１２３ ＡＢＣ ｆｕｌｌｗｉｄｔｈ ١٢٣ ٣.١٤ ߀ ०१२",
    "العربية فارسی हिन्दी বাংলা தமிழ் ქართული Հայերեն አማርኛ",
    "$x^2 + y_1$ \\alpha \\frac{a}{b} f(x)=x^2 a<b a>b a=b a|b a&b a~b a^b",
    "def foo(bar_baz): return bar_baz.qux[0] # comment; int main() { printf(\"%d\\n\", x); }",
    "IEEE754 x86_64 utf-8 sha256 md5sum ipv6 2001:db8::1 192.168.0.1 10.0.0.1:80",
    "'s s' ' \" \"\" a\"b 1'2 1'a a'1 a.1 1.a",
    "a" * 300,
    "x" * 255,
    "y" * 256 + " tail",
    "1" * 600,
    "ab." * 100,
    "\U0001d431" * 200,
    "é" * 300,
    "e\u0301" * 200,
    "x" * 254 + ".xy",
    "x" * 253 + "\U0001d431yy",
    "x" * 254 + "\U0001d431yy",
    "x" * 254 + "\u0301\u0301z",
    "1" * 254 + ",23",
    "Running RUNNING runs ran easily fairly cats' cat's",
    PORTER_WORDS,
]

EMOJI_RANGES = [(0x2000, 0x2BFF), (0x3000, 0x303F), (0x1F000, 0x1FFFF)]
EMOJI_EXTRA = set(map(ord, "#*0123456789\u00a9\u00ae"))


def sweep_block(first: int) -> str:
    """The sweep text for code points first..first+4095 (surrogates and C0/C1 controls left out):
    one line per code point c, contexts separated by a space: c, a c a, 1 c 1, c c, c a, a c, and
    for emoji-like code points also c ZWJ c, c U+1F3FB, c U+FE0F, c U+20E3, c U+E0067 U+E007F."""
    lines = []
    for cp in range(first, first + 4096):
        if 0xD800 <= cp <= 0xDFFF or cp < 0x20 or 0x7F <= cp <= 0x9F:
            continue
        c = chr(cp)
        group = [c, "a" + c + "a", "1" + c + "1", c + c, c + "a", "a" + c]
        if cp in EMOJI_EXTRA or any(lo <= cp <= hi for lo, hi in EMOJI_RANGES):
            group += [c + "\u200d" + c, c + "\U0001f3fb", c + "\ufe0f", c + "\u20e3", c + "\U000e0067\U000e007f"]
        lines.append(" ".join(group))
    return "\n".join(lines)


def sweep_firsts() -> list[int]:
    return list(range(0, 0x40000, 4096)) + list(range(0xE0000, 0xE1000, 4096))


def sha256_lines(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def vocabulary(texts: list[str]) -> dict:
    """Every distinct pre-stemming word with its stem, from the same analysed positions."""
    pairs: dict[str, str] = {}
    for text in texts:
        words, stems = WORDS.analyze(text), ANALYZER.analyze(text)
        assert len(words) == len(stems), text[:80]
        for w, s in zip(words, stems):
            assert pairs.setdefault(w, s) == s, (w, s, pairs[w])
    words = sorted(pairs)
    assert not any(" " in w or " " in pairs[w] for w in words)
    return {"words": " ".join(words), "stems": " ".join(pairs[w] for w in words)}


def bright_bm25(queries, query_ids, documents, doc_ids, excluded_ids):
    """xlang-ai/BRIGHT retrievers.py `retrieval_bm25`: the same calls in the same order. Returns
    BRIGHT's `all_scores` and what is needed to re-check the arithmetic."""
    analyzer = ANALYZER
    corpus = [analyzer.analyze(x) for x in documents]
    dictionary = Dictionary(corpus)
    model = LuceneBM25Model(dictionary=dictionary, k1=K1, b=B)
    bm25_corpus = model[list(map(dictionary.doc2bow, corpus))]
    bm25_index = SparseMatrixSimilarity(bm25_corpus, num_docs=len(corpus), num_terms=len(dictionary),
                                        normalize_queries=False, normalize_documents=False)
    all_scores, raw = {}, {}
    for query_id, query in zip(query_ids, queries):
        query = analyzer.analyze(query)
        bm25_query = model[dictionary.doc2bow(query)]
        result = bm25_index[bm25_query]
        assert result.dtype == np.float32
        raw[str(query_id)] = (query, bm25_query, result)
        similarities = result.tolist()
        all_scores[str(query_id)] = {}
        for did, s in zip(doc_ids, similarities):
            all_scores[str(query_id)][did] = s
        for did in set(excluded_ids[str(query_id)]):
            if did != "N/A":
                all_scores[str(query_id)].pop(did)
        cur_scores = sorted(all_scores[str(query_id)].items(), key=lambda x: x[1], reverse=True)[:DEPTH]
        all_scores[str(query_id)] = {}
        for pair in cur_scores:
            all_scores[str(query_id)][pair[0]] = pair[1]
    return all_scores, (corpus, dictionary, model, bm25_index, raw)


def check_arithmetic(corpus, dictionary, model, bm25_index, raw) -> None:
    """The float32 scores are a float32 sum, in ascending term id, of float32 products; and they
    are BM25 as bright.md §8 states it (float64, to float32 precision)."""
    index = bm25_index.index.tocsc()  # documents x terms, float32
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    assert avgdl == sum(dictionary.cfs.values()) / dictionary.num_docs == model.avgdl
    bows = [dict(dictionary.doc2bow(d)) for d in corpus]

    def weight(term: int, tf: int, length: int) -> float:
        idf = math.log(n + 1) - math.log(dictionary.dfs[term] + 0.5)
        return idf * tf / (tf + K1 * (1 - B + B * length / avgdl))

    for qid, (tokens, bm25_query, result) in raw.items():
        acc = np.zeros(n, dtype=np.float32)
        for term, wq in sorted(bm25_query):
            acc = acc + np.float32(wq) * index.getcol(term).toarray().ravel()
            assert acc.dtype == np.float32
        assert np.array_equal(acc, result), qid
        tf_q: dict[int, int] = {}
        for t in tokens:
            if t in dictionary.token2id:
                tf_q[dictionary.token2id[t]] = tf_q.get(dictionary.token2id[t], 0) + 1
        len_q = sum(tf_q.values())
        exact = np.zeros(n, dtype=np.float64)
        for term, tf in tf_q.items():
            wq = weight(term, tf, len_q)
            for d in index.getcol(term).indices:
                exact[d] += wq * weight(term, bows[d][term], len(corpus[d]))
        assert np.allclose(result.astype(np.float64), exact, rtol=1e-6, atol=1e-9), qid


def f32(x: float) -> float:
    """The float32 value as its shortest float32 decimal, as a Python float for JSON."""
    v = np.float32(x)
    assert float(v) == x
    s = float(str(v))
    assert np.float32(s) == v  # round-trips via a double (serde_json reads f64)
    return s


def evaluate(name, queries, query_ids, documents, doc_ids, excluded_ids, qrels) -> dict:
    all_scores, state = bright_bm25(queries, query_ids, documents, doc_ids, excluded_ids)
    check_arithmetic(*state)
    corpus, dictionary = state[0], state[1]
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(all_scores)
    out = {
        "documents": dictionary.num_docs,
        "tokens": dictionary.num_pos,
        "terms": len(dictionary),
        "analysis_sha256": {
            "documents": sha256_lines(" ".join(t) for t in corpus),
            "queries": sha256_lines(" ".join(ANALYZER.analyze(q)) for q in queries),
        },
        "evaluated_queries": len(per_query),
        "mean": {"ndcg_cut_10": sum(v["ndcg_cut_10"] for v in per_query.values()) / len(per_query)},
        "queries": {},
    }
    ties = 0
    for qid in map(str, query_ids):
        top = list(all_scores[qid].items())[:STORED_TOP]
        ties += sum(1 for a, b in zip(top, top[1:]) if a[1] == b[1])
        assert not any(" " in d for d, _ in top)
        entry = {"ids": " ".join(d for d, _ in top), "scores": [f32(s) for _, s in top]}
        if qid in per_query:
            entry = {"ndcg_cut_10": per_query[qid]["ndcg_cut_10"]} | entry
        out["queries"][qid] = entry
    print(f"{name}: {len(query_ids)} queries, {dictionary.num_docs} documents, {len(dictionary)} terms, "
          f"nDCG@10 {out['mean']['ndcg_cut_10']:.5f}, {ties} tied neighbours in the stored tops", flush=True)
    return out


def cranfield(data: Path) -> tuple[dict, list[str], list[str]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    qrels: dict[str, dict[str, int]] = {}
    for i, line in enumerate((data / "qrels/test.tsv").read_text(encoding="utf-8").splitlines()):
        if i == 0:
            continue
        q, d, r = line.split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    documents = [(d["title"] + " " + d["text"]).strip() for d in corpus]
    doc_ids = [d["_id"] for d in corpus]
    texts = [q["text"] for q in queries]
    ids = [q["_id"] for q in queries]
    result = evaluate("cranfield", texts, ids, documents, doc_ids, {q: [] for q in ids}, qrels)
    return result, documents, texts


SETTINGS = {
    "short": ("examples", "documents", "gold_ids", ["biology", "leetcode", "theoremqa_theorems"]),
    "long": ("examples", "long_documents", "gold_ids_long", ["biology"]),
    "gpt4_reason": ("gpt4_reason", "documents", "gold_ids", ["biology", "leetcode", "theoremqa_theorems"]),
}


def bright_fixture(hub: Path) -> tuple[dict, list[str]]:
    def rows(config, task):
        return pq.read_table(hub / config / f"{task}-00000-of-00001.parquet").to_pylist()

    out, texts = {}, []
    for setting, (qconfig, dconfig, gold_field, tasks) in SETTINGS.items():
        for task in tasks:
            examples, docs = rows(qconfig, task), rows(dconfig, task)
            queries = [e["query"] for e in examples]
            query_ids = [e["id"] for e in examples]
            excluded = {e["id"]: e["excluded_ids"] for e in examples}
            for e in examples:
                assert not set(e["excluded_ids"]) & set(e[gold_field])
            qrels = {e["id"]: {g: 1 for g in e[gold_field]} for e in examples}
            documents = [d["content"] for d in docs]
            doc_ids = [d["id"] for d in docs]
            name = f"bright/{setting}/{task}"
            out[name] = evaluate(name, queries, query_ids, documents, doc_ids, excluded, qrels)
            texts += documents + queries
    return out, texts


def sweep(dump: Path | None) -> dict:
    blocks = []
    for first in sweep_firsts():
        tokens = SURFACE.analyze(sweep_block(first))
        blocks.append([first, len(tokens), sha256_lines(tokens)])
        if dump:
            (dump / f"sweep-{first:06X}.txt").write_text("\n".join(tokens), encoding="utf-8")
    print(f"sweep: {len(blocks)} blocks, {sum(b[1] for b in blocks)} tokens", flush=True)
    return {
        "note": "pyserini get_lucene_analyzer(stemming=False, stopwords=False): StandardTokenizer, "
                "EnglishPossessiveFilter, LowerCaseFilter",
        "blocks": blocks,
    }


def versions() -> dict:
    from jnius import autoclass

    system = autoclass("java.lang.System")
    jars = sorted(p.name for p in (Path(analysis.__file__).parent.parent / "resources/jars").glob("*.jar"))
    return {
        "python": platform.python_version(),
        "pyserini": version("pyserini"),
        "anserini_jar": jars,
        "lucene": autoclass("org.apache.lucene.util.Version").LATEST.toString(),
        "java": f"{system.getProperty('java.vendor')} {system.getProperty('java.version')}",
        "pyjnius": version("pyjnius"),
        "gensim": version("gensim"),
        "scipy": version("scipy"),
        "numpy": version("numpy"),
        "pytrec_eval_terrier": version("pytrec-eval-terrier"),
        "pyarrow": version("pyarrow"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cranfield", type=Path, default=ROOT.parent / "shared/data/cranfield")
    parser.add_argument("--dump", type=Path, help="also write the sweep tokens and vocabularies here")
    args = parser.parse_args()
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)

    texts = [{"text": t, "tokens": ANALYZER.analyze(t)} for t in TEXTS]
    cran, cran_docs, cran_queries = cranfield(args.cranfield)
    fixture, fixture_texts = bright_fixture(ROOT / "fixtures/bright-hub")
    head = {
        "generator": "scripts/make_bm25_goldens.py",
        "versions": versions(),
        "k1": K1,
        "b": B,
        "depth": DEPTH,
        "stored_top": STORED_TOP,
    }
    goldens = {
        OUT: head | {
            "texts": texts,
            "vocabularies": {"texts": vocabulary(TEXTS), "bright-fixture": vocabulary(fixture_texts)},
            "sweep": sweep(args.dump),
            "collections": fixture,
        },
        OUT_CRANFIELD: head | {
            "vocabularies": {"cranfield": vocabulary(cran_docs + cran_queries)},
            "collections": {"cranfield": cran},
        },
    }
    for path, golden in goldens.items():
        if args.dump:
            for name, v in golden["vocabularies"].items():
                (args.dump / f"vocabulary-{name}.tsv").write_text(
                    "".join(f"{w}\t{s}\n" for w, s in zip(v["words"].split(" "), v["stems"].split(" "))),
                    encoding="utf-8")
        path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
