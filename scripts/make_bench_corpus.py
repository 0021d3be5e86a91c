#!/usr/bin/env python3
"""Write benches/corpus-1k.txt: 1,000 synthetic English texts, one per line, for throughput
benchmarks (scripts/bench_embed_pytorch.py and the Rust benches embed the same file).

The texts are generated from a small seeded grammar, so the file is identical on every run and
needs no download. Lengths are deliberately spread: about 15% one short sentence, most two to five
sentences, and a tail of long paragraphs, for roughly 50-60 all-MiniLM-L6-v2 tokens on average
and ~200 at the top (pass --tokenizer DIR/tokenizer.json to print the token statistics).

Usage:  python scripts/make_bench_corpus.py [--out benches/corpus-1k.txt] [--tokenizer FILE]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = 20240601
N_TEXTS = 1000

ADJECTIVES = (
    "small large quiet busy ancient modern bright careful curious distant local remote rapid slow "
    "reliable fragile popular obscure northern coastal"
).split()
NOUNS = (
    "engineer library river committee village researcher train model farmer teacher museum garden "
    "bridge market student server company orchestra hospital satellite"
).split()
PLURALS = (
    "engineers libraries rivers committees villages researchers trains models farmers teachers "
    "museums gardens bridges markets students servers companies orchestras hospitals satellites"
).split()
VERBS_PAST = (
    "studied repaired described measured visited announced replaced reviewed painted tested "
    "designed moved collected translated questioned"
).split()
OBJECTS = (
    "the old report|a new schedule|the water supply|several rare books|the annual budget|"
    "a detailed map|the evening concert|the broken window|a long list of questions|the test results|"
    "the harvest|an unusual signal|the final draft|the network cables|a set of photographs"
).split("|")
PLACES = (
    "near the harbour|in the mountains|at the university|along the coast|in the city centre|"
    "behind the station|across the valley|on the third floor|outside the town|in a quiet suburb"
).split("|")
TIMES = (
    "last week|in the morning|after the storm|during the holidays|before sunrise|every spring|"
    "on Tuesday|at midnight|over the summer|in 1998"
).split("|")
REASONS = (
    "because the deadline was close|although nobody had asked for it|so that visitors could "
    "find their way|since the previous attempt had failed|while the rest of the team waited|"
    "even though the weather was poor"
).split("|")
TOPICS = (
    "climate data|language models|medieval history|urban planning|marine biology|public health|"
    "renewable energy|ancient astronomy|software testing|supply chains"
).split("|")


def sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return (
            f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS_PAST)} "
            f"{rng.choice(OBJECTS)} {rng.choice(PLACES)} {rng.choice(TIMES)}."
        )
    if kind < 0.55:
        when = rng.choice(TIMES)
        return (
            f"{when[0].upper()}{when[1:]}, {rng.randint(2, 950)} {rng.choice(PLURALS)} "
            f"{rng.choice(VERBS_PAST)} {rng.choice(OBJECTS)} {rng.choice(REASONS)}."
        )
    if kind < 0.70:
        return f"Why did the {rng.choice(NOUNS)} {rng.choice(PLACES)} care so much about {rng.choice(TOPICS)}?"
    if kind < 0.85:
        return (
            f"A survey of {rng.randint(10, 9999)} {rng.choice(PLURALS)} found that "
            f"{rng.randint(1, 99)}.{rng.randint(0, 9)}% of them read about {rng.choice(TOPICS)} "
            f"{rng.choice(TIMES)}."
        )
    return (
        f"Experts in {rng.choice(TOPICS)} say the {rng.choice(ADJECTIVES)} {rng.choice(PLURALS)} "
        f"{rng.choice(PLACES)} are changing, {rng.choice(REASONS)}."
    )


def text(rng: random.Random) -> str:
    bucket = rng.random()
    if bucket < 0.15:  # a short phrase or question: a handful of tokens
        words = sentence(rng).rstrip(".?").split()
        return " ".join(words[: rng.randint(2, 7)])
    if bucket < 0.88:  # ordinary passages
        n = rng.randint(2, 4)
    elif bucket < 0.97:  # longer paragraphs
        n = rng.randint(5, 7)
    else:  # the ~200-token tail
        n = rng.randint(9, 11)
    return " ".join(sentence(rng) for _ in range(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benches" / "corpus-1k.txt")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json to report token statistics with")
    args = parser.parse_args()

    rng = random.Random(SEED)
    texts = [text(rng) for _ in range(N_TEXTS)]
    assert all(t and "\n" not in t for t in texts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(texts) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(texts)} lines)")

    if args.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.tokenizer))
        tok.no_padding()
        tok.no_truncation()
        counts = sorted(len(e.ids) for e in tok.encode_batch(texts))
        print(
            f"tokens (special tokens included): mean {statistics.mean(counts):.1f}, "
            f"median {counts[len(counts) // 2]}, min {counts[0]}, p95 {counts[int(0.95 * len(counts))]}, "
            f"max {counts[-1]}, total {sum(counts)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
