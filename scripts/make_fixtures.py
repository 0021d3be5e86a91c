#!/usr/bin/env python3
"""Generate the tiny random-initialised model fixtures under fixtures/models/.

Four folders are written, each small enough to commit (all together well under 2 MB):

  tiny-bert    BertModel + WordPiece tokenizer, sentence-transformers layout (mean pooling,
               normalise, "query: " prompt), tokenizer.json pins Fixed(128) padding and
               truncation 128 exactly like the real all-MiniLM-L6-v2 tokenizer.json.
  tiny-qwen3   Qwen3Model (no `model.` prefix, head_dim != hidden/heads), byte-level BPE whose
               post-processor appends <|endoftext|>, sentence-transformers layout with
               last-token pooling and left padding (like Qwen3-Embedding).
  tiny-llama   LlamaForCausalLM (`model.` prefix, untied lm_head, llama3 rope scaling),
               byte-level BPE that prepends <|begin_of_text|>; tokenizer_config asks for EOS.
  tiny-qwen2   Qwen2ForCausalLM (`model.` prefix, q/k/v biases), Qwen tokenizer without the
               EOS-appending post-processor.

Everything is deterministic: the tokenizers are built from the corpus embedded below and the
weights are drawn under fixed torch seeds. Re-running the script reproduces the files byte for
byte (checked with `--check-determinism`).

Usage:  python scripts/make_fixtures.py [--out fixtures/models] [--check-determinism]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

# Nothing here may touch the Hugging Face hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from tokenizers import (  # noqa: E402
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

REPO = Path(__file__).resolve().parent.parent

# Small English corpus the tokenizers are trained on. Plain prose plus numbers and punctuation so
# that the vocabularies contain a mix of whole words, sub-words and single characters. The
# instruction lines make tiny-qwen3's query prompt compact enough (~16 tokens) that a query
# still fits next to it in max_seq_length = 24, as it does with the real Qwen3 vocabulary.
CORPUS = """\
The quick brown fox jumps over the lazy dog while the cat sleeps on the warm windowsill.
Text embeddings map sentences to vectors so that similar meanings end up close together.
A retrieval system ranks documents by the cosine similarity between query and passage vectors.
Why do I only breathe out of one nostril? The nasal cycle alternates airflow between nostrils.
Insects are attracted to artificial light at night, and nobody is entirely sure why.
How do I reverse a linked list in Rust without fighting the borrow checker?
The train leaves the station at 10:45 and arrives in the city at 13:20, about 2.5 hours later.
She bought 3 apples, 12 oranges and 7 pears for $4.99 at the market on Saturday morning.
Researchers measured the temperature every 15 minutes for 30 days during the experiment.
Please read the instructions carefully before you start writing the answer to the question.
The model reads a passage, then writes a short summary of the most important points in it.
Mountains, rivers and forests cover most of the northern part of the country.
Learning a new language takes time, patience and a lot of practice with native speakers.
The library opens at nine in the morning and closes at six in the evening on weekdays.
If the tests pass on every platform, we can release the new version of the software next week.
Water boils at 100 degrees Celsius at sea level, but at a lower temperature on a high mountain.
Children often ask questions that adults find surprisingly hard to answer well.
The committee will meet again next month to discuss the budget and the schedule.
Good documentation explains not only what the code does but also why it does it that way.
Search engines index billions of pages and return the most relevant results in milliseconds.
Instruct: Given a question, retrieve passages that answer it
Query: what are text embeddings?
Instruct: Given a question, retrieve passages that answer it
Query: how long does the train take to reach the city?
Instruct: Given a question, retrieve passages that answer it
Query: why are insects attracted to light?
"""

# Qwen2/Qwen3 pre-tokenisation regex, verbatim from their tokenizer.json (and from transformers'
# Qwen2Tokenizer, which rebuilds the pipeline from it: the fixture must match what it rebuilds).
QWEN_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


def wordpiece_vocab(normalizer, pre_tokenizer, specials: list[str], size: int) -> dict[str, int]:
    """Derive a WordPiece vocabulary from corpus counts.

    tokenizers' WordPieceTrainer is not deterministic (its "##" alphabet comes out of a hash map,
    which changes merge tie-breaks from run to run), so the vocabulary is built directly: every
    character with and without "##", then the most frequent whole words, word-initial pieces and
    word endings (ties broken alphabetically). Greedy longest-match WordPiece then splits rarer
    words into several pieces and maps unseen characters (e.g. "€") to [UNK]."""
    words: Counter[str] = Counter()
    for line in CORPUS.splitlines():
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + ["##" + c for c in chars]

    def most_common(counter: Counter[str], n: int) -> list[str]:
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return [t for t, _ in ranked if t not in vocab][:n]

    budget = size - len(vocab)
    vocab += most_common(Counter({w: n for w, n in words.items() if len(w) > 1}), budget // 2)
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for w, n in words.items():
        for k in (2, 3):
            if len(w) > k:
                starts[w[:k]] += n
                ends["##" + w[-k:]] += n
    vocab += most_common(starts, (size - len(vocab)) // 2)
    vocab += most_common(ends, size - len(vocab))
    assert len(vocab) == size, len(vocab)
    return {t: i for i, t in enumerate(vocab)}


def build_wordpiece_tokenizer() -> Tokenizer:
    """BERT-style uncased WordPiece, laid out like all-MiniLM-L6-v2's tokenizer.json."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(normalizer, pre_tokenizer, specials, size=400)
    tok = Tokenizer(
        models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens(specials)  # already in the vocab: they keep ids 0..4
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert [tok.token_to_id(t) for t in specials] == [0, 1, 2, 3, 4]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    # The trap: the real MiniLM tokenizer.json pads every encoding to 128 and truncates at 128.
    # A loader that keeps these settings silently runs on 128 tokens (and ignores max_seq_length).
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]", length=128)
    tok.enable_truncation(max_length=128, strategy="longest_first", direction="right")
    return tok


def build_bytelevel_bpe(
    specials: list[str], *, qwen_style: bool, vocab_size: int = 500
) -> Tokenizer:
    """Byte-level BPE. The special tokens are added after training so that, as in the real
    Qwen and Llama-3 vocabularies, they get the highest ids (pad id is therefore not 0)."""
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    if qwen_style:
        # Exactly the Qwen pipeline (NFC, regex split, byte-level without its own regex).
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    else:
        # Plain GPT-2 style byte-level pre-tokenizer (its built-in regex).
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def build_qwen_tokenizer(*, append_eos: bool) -> Tokenizer:
    tok = build_bytelevel_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], qwen_style=True)
    if append_eos:
        # Qwen3-Embedding's tokenizer.json appends <|endoftext|> to every sequence; last-token
        # pooling then reads the hidden state of that EOS token.
        eos = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(
            single="$A:0 <|endoftext|>:0",
            pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eos)],
        )
    else:
        # Plain Qwen2 tokenizer.json: a ByteLevel post-processor that adds nothing.
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def build_llama_tokenizer() -> Tokenizer:
    tok = build_bytelevel_bpe(
        ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_0|>"], qwen_style=False
    )
    bos = tok.token_to_id("<|begin_of_text|>")
    # As Llama-3: the post-processor prepends BOS only; EOS is the caller's business.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|>:0 $A:0",
                pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    return tok


def write_tokenizer(
    folder: Path, tok: Tokenizer, tokenizer_cls, load_kwargs: dict, overrides: dict | None = None
) -> None:
    """Write tokenizer.json (ours, verbatim) and tokenizer_config.json as transformers writes it.

    transformers' save_pretrained re-serialises the backend tokenizer (dropping e.g. the pinned
    padding), so the config is produced in a scratch folder and only tokenizer_config.json is
    kept; tokenizer.json is the one built here. `overrides` adds keys transformers 5 does not
    write back but real hub configs carry (and the loader under test must honour)."""
    tok.save(str(folder / "tokenizer.json"), pretty=True)
    with tempfile.TemporaryDirectory() as scratch:
        hf_tok = tokenizer_cls.from_pretrained(str(folder), **load_kwargs)
        hf_tok.save_pretrained(scratch)
        cfg = json.loads(Path(scratch, "tokenizer_config.json").read_text())
    # Loading state that from_pretrained leaks into the saved config, not tokenizer properties.
    for key in ("name_or_path", "is_local", "local_files_only"):
        cfg.pop(key, None)
    cfg.update(overrides or {})
    write_json(folder / "tokenizer_config.json", dict(sorted(cfg.items())))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def perturb_norms_and_biases(model: torch.nn.Module, seed: int) -> None:
    """Default init leaves norm weights at 1 and biases/norm biases at 0, which would let a
    loader that forgets a norm weight or a bias pass every test. Shift them all by N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("bias") or "norm" in name.lower():
            param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def save_model(folder: Path, model: torch.nn.Module, legacy_config: bool) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)
    if legacy_config:
        to_legacy_rope_config(folder / "config.json")


def to_legacy_rope_config(path: Path) -> None:
    """transformers 5 writes `rope_parameters` (with rope_theta inside) and `dtype`; every real
    Qwen3-Embedding / Llama-3 checkpoint on the hub has top-level `rope_theta`, `rope_scaling`
    and `torch_dtype`. Rewrite to that layout, which transformers 5 still reads (make_goldens.py
    loads the models from these folders, so the round trip is exercised). tiny-qwen2 is left in
    the transformers-5 layout so that the loader is tested on both."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    theta = rope.pop("rope_theta")
    cfg["rope_theta"] = theta
    cfg["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg.pop("layer_types", None)  # absent from legacy configs; all layers are full attention
    write_json(path, dict(sorted(cfg.items())))


# Larger than the transformers default of 0.02: with hidden size 32 and std 0.02 the attention
# logits are ~1e-3, attention is uniform and rotary / masking bugs would barely move the output.
INIT_STD = 0.2


def make_tiny_bert(folder: Path) -> None:
    tok = build_wordpiece_tokenizer()
    torch.manual_seed(1001)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=2,
        hidden_act="gelu",
        initializer_range=INIT_STD,
        pad_token_id=0,
    )
    model = transformers.BertModel(config).eval()
    perturb_norms_and_biases(model, seed=2001)
    save_model(folder, model, legacy_config=False)
    write_tokenizer(folder, tok, transformers.BertTokenizer, {"model_max_length": 128})
    # sentence-transformers layout, file for file as all-MiniLM-L6-v2 has it (no 2_Normalize
    # folder on disk: Normalize has no config).
    write_json(folder / "modules.json", st_modules())
    write_json(folder / "1_Pooling" / "config.json", pooling_config(32, "mean"))
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": 24, "do_lower_case": False})
    write_json(
        folder / "config_sentence_transformers.json",
        st_config({"query": "query: ", "document": ""}),
    )


def make_tiny_qwen3(folder: Path) -> None:
    tok = build_qwen_tokenizer(append_eos=True)
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(1002)
    config = transformers.Qwen3Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # != hidden / heads = 8, as in the real Qwen3 models (1024 / 16 != 128)
        intermediate_size=64,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        attention_bias=False,
        tie_word_embeddings=True,
        initializer_range=INIT_STD,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.Qwen3Model(config).eval()
    perturb_norms_and_biases(model, seed=2002)
    save_model(folder, model, legacy_config=True)
    write_tokenizer(
        folder,
        tok,
        transformers.Qwen2Tokenizer,
        {
            "padding_side": "left",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "model_max_length": 256,
        },
    )
    write_json(folder / "modules.json", st_modules())
    write_json(folder / "1_Pooling" / "config.json", pooling_config(32, "lasttoken"))
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": 24, "do_lower_case": False})
    write_json(
        folder / "config_sentence_transformers.json",
        st_config(
            {
                "query": "Instruct: Given a question, retrieve passages that answer it\nQuery: ",
                "document": "",
            }
        ),
    )


def make_tiny_llama(folder: Path) -> None:
    tok = build_llama_tokenizer()
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    torch.manual_seed(1003)
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        rope_theta=500000.0,
        max_position_embeddings=256,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=None,  # Llama-3 has no pad token
    )
    model = transformers.LlamaForCausalLM(config).eval()
    perturb_norms_and_biases(model, seed=2003)
    save_model(folder, model, legacy_config=True)
    # add_eos_token asks the embedder to append EOS (truncating to max_length - 1 first), the way
    # some decoder embedding models are configured. Note that transformers 5 itself ignores
    # add_bos_token / add_eos_token whenever a tokenizer.json exists (it pops them on load and does
    # not write them back, hence `overrides`), so AutoTokenizer yields BOS + text without EOS.
    # tokenizer_class is what real Llama-3 repositories name (transformers 5 writes its alias
    # "TokenizersBackend").
    write_tokenizer(
        folder,
        tok,
        transformers.PreTrainedTokenizerFast,
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
            "padding_side": "left",
            "model_max_length": 256,
        },
        overrides={
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": True,
            "add_eos_token": True,
        },
    )


def make_tiny_qwen2(folder: Path) -> None:
    tok = build_qwen_tokenizer(append_eos=False)
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(1004)
    config = transformers.Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        use_sliding_window=False,
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.Qwen2ForCausalLM(config).eval()
    perturb_norms_and_biases(model, seed=2004)  # q/k/v biases are zero-initialised otherwise
    save_model(folder, model, legacy_config=False)
    write_tokenizer(
        folder,
        tok,
        transformers.Qwen2Tokenizer,
        {
            "padding_side": "left",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "model_max_length": 256,
        },
    )


# --------------------------------------------------------------------------------------------
# sentence-transformers files (legacy module names, as found in real hub repositories)
# --------------------------------------------------------------------------------------------


def st_modules() -> list[dict]:
    return [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]


def pooling_config(dim: int, mode: str) -> dict:
    cfg = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    if mode == "lasttoken":  # the longer form Qwen3-Embedding's 1_Pooling/config.json has
        cfg.update(
            {"pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": True, "include_prompt": True}
        )
    return cfg


def st_config(prompts: dict) -> dict:
    return {
        "__version__": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        "prompts": prompts,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }


# --------------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


BUILDERS = {
    "tiny-bert": make_tiny_bert,
    "tiny-qwen3": make_tiny_qwen3,
    "tiny-llama": make_tiny_llama,
    "tiny-qwen2": make_tiny_qwen2,
}


def generate(out: Path) -> None:
    for name, build in BUILDERS.items():
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        build(folder)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "fixtures" / "models")
    parser.add_argument(
        "--check-determinism",
        action="store_true",
        help="also generate into a scratch folder and require byte-identical files",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()

    generate(args.out)
    if args.check_determinism:
        with tempfile.TemporaryDirectory() as scratch:
            generate(Path(scratch))
            if digest_tree(Path(scratch)) != digest_tree(args.out):
                print("fixtures are NOT deterministic", file=sys.stderr)
                return 1
        print("determinism check passed")

    total = 0
    for path in sorted(args.out.rglob("*")):
        if path.is_file():
            total += path.stat().st_size
            print(f"{path.stat().st_size:>9}  {path.relative_to(args.out)}")
    print(f"{total:>9}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
