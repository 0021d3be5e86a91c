#!/usr/bin/env python3
"""Expected outputs of trec_eval 10.0 itself on seeded random qrels and runs, for
`reasonembed eval trec` to reproduce line for line.

Builds trec_eval from a source checkout of the public repository usnistgov/trec_eval at the tag
v10.0 (the source is only read: it is copied to a temporary folder and built there with `make`,
so a C compiler and make are needed), checks the build against trec_eval's own test suite
(every `quicktest` output for the qrels/trec_results formats), then writes

  fixtures/trec_eval-cases/<data>.qrels, <data>.run   the generated inputs
  fixtures/trec_eval-cases/<case>.out                 what trec_eval printed for the case
  fixtures/trec_eval-cases/cases.tsv                  one line per case:
                                                      name, qrels file, run file, arguments

Only our generated data and trec_eval's printed numbers are written; none of trec_eval's source.

What the cases cover: comment lines (`#`) and blank lines, graded judgements 0-4 with negative ones (-1, "in the pool, unjudged"),
queries whose judgements are all 0, queries only in the qrels and only in the run, runs longer
than the cut-offs, many tied scores (ties go to the larger document id in byte order, so ids like
"10" and "9", "D1" and "d1" are mixed), negative scores, -0 and +0, scores that are distinct
doubles but the same C float (trec_eval 10.0 ranks by double), and the options -q, -c, -M, -l,
-J, -N, -n with `-m all_trec` and every parametrised measure (P, recall, iprec_at_recall,
Rprec_mult, utility, 11pt_avg, ndcg/G/Rndcg/ndcg_rel/dcg/ideal_dcg with level=gain pairs,
including gains less than 1 apart, whose order depends on glibc's merge sort; rbp.p=...,
relstring, set_F, success, unj, ndcg_cut, map_cut, relative_P).

Queries missing from the run: trec_eval 10.0 stops with "result qid 'X' not found in qrels" when
a query of the qrels has no results and -c is not given (9.x evaluated the queries in both
files). `eval trec` keeps 9.x's behaviour there (which trec_eval's own help text describes), so for
a case without -c the expected output is trec_eval 10.0's output on the qrels restricted to the
run's queries -- exactly what 9.x printed. The case still gives `eval trec` the full qrels.

Every query of the generated qrels has at least one judgement >= 0: for a query whose judgements
are all negative trec_eval reads uninitialised memory.

Usage:
  git clone https://github.com/usnistgov/trec_eval && git -C trec_eval checkout v10.0
  python3 scripts/make_trec_eval_cases.py --trec-eval-src trec_eval
(or set TREC_EVAL_SRC). Deterministic: a rerun rewrites the same files.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "trec_eval-cases"

# trec_eval's quicktest commands for the formats `eval trec` reads, and their expected outputs.
QUICKTEST = [
    ([], "qrels.test", "results.test", "out.test"),
    ([], "qrels.test.with-comments", "results.test", "out.test"),
    (["-m", "all_trec"], "qrels.test", "results.test", "out.test.a"),
    (["-m", "all_trec", "-q"], "qrels.test", "results.test", "out.test.aq"),
    (["-m", "all_trec", "-q", "-c"], "qrels.test", "results.trunc", "out.test.aqc"),
    (["-m", "all_trec", "-q", "-c", "-M100"], "qrels.test", "results.trunc", "out.test.aqcM"),
    (["-m", "all_trec", "-mrelstring.20", "-q", "-l2"], "qrels.rel_level", "results.test", "out.test.aql"),
]

PARAMS = [
    "-q",
    "-m", "P.3,7,12",
    "-m", "recall.2,9",
    "-m", "iprec_at_recall..33,0.66,.05",
    "-m", "Rprec_mult.0.5,3,1.25",
    "-m", "utility.1.5,-2,0.5,0.1",
    "-N", "1000",
    "-m", "11pt_avg.0.5,.2,1",
    "-m", "ndcg.0=0.5,1=2.5,2=2,3=7",
    "-m", "G.1=0.5,2=0.7,4=-1",
    "-m", "Rndcg.2=1.5",
    "-m", "ndcg_rel.1=1,3=1.2",
    "-m", "rbp.p=0.5,2=3",
    "-m", "rbp_resid.p=0.7",
    "-m", "relstring.5",
    "-m", "set_F.0.5",
    "-m", "success.1,2,3",
    "-m", "unj.1,3",
    "-m", "ndcg_cut.1,4",
    "-m", "map_cut.2,50",
    "-m", "relative_P.2,6",
]

README = """# trec_eval 10.0 on generated cases

Written by `scripts/make_trec_eval_cases.py` (see its docstring) from a trec_eval 10.0 built from
the public source (usnistgov/trec_eval at v10.0): seeded random qrels and runs (`*.qrels`,
`*.run`), and what trec_eval printed (`<case>.out`) for each line of `cases.tsv`
(`case<TAB>qrels<TAB>run<TAB>arguments`). `crates/cli/tests/eval.rs` runs `reasonembed eval trec
ARGUMENTS QRELS RUN` for each case and requires the same output, line for line.

Without `-c`, trec_eval 10.0 refuses a run that lacks a query of the qrels; the expected output of
such a case is trec_eval's on the qrels restricted to the run's queries (trec_eval 9.x's
behaviour, which `eval trec` keeps), while `eval trec` is given the full qrels.
"""

DOC_IDS = ["1", "2", "9", "10", "11", "100", "D1", "d1", "d10", "d9", "doc-a", "doc_b", "X.7", "x7"]


def build(src: Path, work: Path) -> Path:
    """trec_eval built from a copy of `src`; its quicktest must pass."""
    if not (src / "trec_eval.c").exists() or not (src / "test" / "out.test").exists():
        sys.exit(f"{src} is not a trec_eval source checkout (want usnistgov/trec_eval at v10.0)")
    tree = work / "trec_eval"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".git"))
    subprocess.run(["make", "-s"], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    binary = tree / "trec_eval"
    for args, qrels, run, expected in QUICKTEST:
        got = trec_eval(binary, args, tree / "test" / qrels, tree / "test" / run)
        if got != (tree / "test" / expected).read_text():
            sys.exit(f"the trec_eval build fails its own test: {args} {qrels} {run} != {expected}")
    return binary


def trec_eval(binary: Path, args: list[str], qrels: Path, run: Path) -> str:
    done = subprocess.run([str(binary), *args, str(qrels), str(run)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"trec_eval {args} failed: {done.stderr.strip()}")
    return done.stdout


def score_text(rng: random.Random, score: float) -> str:
    choice = rng.random()
    if choice < 0.05:
        return rng.choice(["0", "-0", "0.0", "-0.0"])
    if choice < 0.12:
        # Distinct doubles that are the same C float.
        return rng.choice(["0.1", "0.100000000001", "16777216", "16777217"])
    return f"{score:.{rng.choice([1, 2, 6])}f}"


def make_data(rng: random.Random, queries: int, max_docs: int) -> tuple[str, str]:
    """(qrels text, run text) with the features listed in the module docs."""
    qrels, run = [], []
    qids = [str(q) for q in rng.sample(range(1, 60), queries + 2)]
    only_qrels, only_run, *both = qids
    for n, qid in enumerate(both + [only_qrels, only_run]):
        pool = [f"{rng.choice(DOC_IDS)}-{i}" if rng.random() < 0.7 else rng.choice(DOC_IDS) for i in range(3 * max_docs)]
        pool = list(dict.fromkeys(pool))
        retrieved = pool[: rng.randint(max(3, max_docs // 3), max_docs)]
        judged = rng.sample(pool, rng.randint(3, min(len(pool), max_docs)))
        if qid != only_run:
            all_zero = n == 1
            rels = {}
            for doc in judged:
                rels[doc] = 0 if all_zero else rng.choices([-1, 0, 1, 2, 3, 4], [1, 6, 3, 2, 1, 1])[0]
            if all(r < 0 for r in rels.values()):
                rels[judged[0]] = 0
            for doc, rel in rels.items():
                qrels.append(f"{qid} {rng.choice(['0', 'Q0', '1'])} {doc} {rel}")
        if qid != only_qrels:
            levels = [round(rng.uniform(-3, 8), 1) for _ in range(rng.randint(2, 6))]
            for rank, doc in enumerate(retrieved, 1):
                score = rng.choice(levels) if rng.random() < 0.5 else rng.uniform(-3, 8)
                tag = "genrun"
                run.append(f"{qid}\tQ0\t{doc}\t{rank}\t{score_text(rng, score)}\t{tag}")
    rng.shuffle(qrels)
    rng.shuffle(run)
    # Comment lines (trec_eval 10.0 skips them; in qrels it mis-parses two in a row).
    for lines, comment in ((qrels, "# judged by the generator"), (run, "  # a comment, after blanks")):
        for at in sorted(rng.sample(range(2, len(lines)), 2), reverse=True):
            lines.insert(at, comment)
    qrels.insert(0, "# generated by scripts/make_trec_eval_cases.py")
    run.insert(0, "")
    return "\n".join(qrels) + "\n", "\n".join(run) + "\n"


def restricted(qrels_text: str, run_text: str) -> str:
    """The qrels lines of the queries the run has results for."""
    run_qids = {line.split()[0] for line in run_text.splitlines() if line.strip() and not line.strip().startswith("#")}
    return "".join(line + "\n" for line in qrels_text.splitlines() if line.split()[0] in run_qids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trec-eval-src", type=Path, default=os.environ.get("TREC_EVAL_SRC"))
    args = parser.parse_args()
    if args.trec_eval_src is None:
        sys.exit("give --trec-eval-src DIR (a checkout of usnistgov/trec_eval at v10.0) or set TREC_EVAL_SRC")
    rng = random.Random(20240610)
    data = {
        "small": make_data(rng, queries=3, max_docs=12),
        "medium": make_data(rng, queries=5, max_docs=40),
        "long": make_data(rng, queries=4, max_docs=120),
    }
    cases = [
        ("small-default-q", "small", ["-q"]),
        ("small-all-q", "small", ["-m", "all_trec", "-q"]),
        ("small-all-qc", "small", ["-m", "all_trec", "-q", "-c"]),
        ("small-params", "small", PARAMS),
        ("medium-default", "medium", []),
        ("medium-all", "medium", ["-m", "all_trec"]),
        ("medium-all-c-M7", "medium", ["-m", "all_trec", "-c", "-M", "7"]),
        ("medium-all-l2", "medium", ["-m", "all_trec", "-l", "2"]),
        ("medium-all-c-l3", "medium", ["-m", "all_trec", "-c", "-l3"]),
        ("medium-all-l0", "medium", ["-m", "all_trec", "-l", "0"]),
        ("medium-all-J", "medium", ["-m", "all_trec", "-J"]),
        ("medium-params-c", "medium", [*PARAMS, "-c"]),
        ("medium-set-n", "medium", ["-m", "set", "-q", "-n"]),
        # dcg, ideal_dcg and ndcg share one parameter block in trec_eval: asking for two of
        # them when one has parameters makes it free that block twice and crash.
        ("medium-dcg", "medium", ["-q", "-m", "ndcg", "-m", "dcg", "-m", "ideal_dcg"]),
        ("medium-dcg-gains", "medium", ["-m", "dcg.1=4,3=0.5"]),
        ("medium-ideal-dcg-gains", "medium", ["-m", "ideal_dcg.0=1,2=2.25"]),
        ("long-all", "long", ["-m", "all_trec"]),
        ("long-all-c-M50", "long", ["-m", "all_trec", "-c", "-M50"]),
        ("long-official-l2-M30", "long", ["-m", "official", "-l2", "-M", "30", "-m", "ndcg_cut", "-m", "success"]),
    ]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        binary = build(args.trec_eval_src.resolve(), work)
        for name, (qrels_text, run_text) in data.items():
            (OUT / f"{name}.qrels").write_text(qrels_text)
            (OUT / f"{name}.run").write_text(run_text)
            (work / f"{name}.restricted.qrels").write_text(restricted(qrels_text, run_text))
        manifest = []
        for case, name, case_args in cases:
            complete = "-c" in case_args
            qrels = OUT / f"{name}.qrels" if complete else work / f"{name}.restricted.qrels"
            out = trec_eval(binary, case_args, qrels, OUT / f"{name}.run")
            (OUT / f"{case}.out").write_text(out)
            manifest.append("\t".join([case, f"{name}.qrels", f"{name}.run", " ".join(case_args)]))
    (OUT / "cases.tsv").write_text("\n".join(manifest) + "\n")
    (OUT / "README.md").write_text(README)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(cases)} cases to {OUT.relative_to(ROOT)} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
