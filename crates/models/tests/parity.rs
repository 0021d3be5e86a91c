//! Parity with transformers / sentence-transformers on the tiny random
//! checkpoints of `fixtures/models`, against the goldens that
//! `scripts/make_goldens.py` wrote: token ids, and embeddings of one padded
//! batch with left and right padding, causal and bidirectional attention,
//! through both inference paths (the packed one and the candle reference).

mod common;

use common::{Golden, GoldenCase, fixture, golden, max_abs_diff};
use reasonembed_models::{
    Attention, Embedder, EmbedderOptions, Kernels, MatmulPrecision, Mode, ModelFolder, PaddingSide, Pooling,
};

const TOLERANCE: f32 = 1e-4;

fn options(golden: &Golden, case: &GoldenCase) -> EmbedderOptions {
    EmbedderOptions {
        max_length: Some(golden.max_length),
        pooling: Some(case.pooling.parse::<Pooling>().unwrap()),
        normalize: Some(case.normalize),
        padding_side: Some(if case.padding_side == "left" {
            PaddingSide::Left
        } else {
            PaddingSide::Right
        }),
        attention: Some(if case.attention == "causal" {
            Attention::Causal
        } else {
            Attention::Bidirectional
        }),
        ..Default::default()
    }
}

/// Runs every case of `name`'s golden file through one padded batch, on
/// both inference paths (the packed one at either matmul precision).
fn check_model(name: &str) {
    let golden = golden(&format!("tiny-{name}"));
    let folder = ModelFolder::open(&fixture(&format!("tiny-{name}"))).unwrap();
    let paths = [
        (Kernels::Fast, MatmulPrecision::Highest),
        (Kernels::Fast, MatmulPrecision::High),
        (Kernels::Reference, MatmulPrecision::Highest),
    ];
    for (case, (kernels, matmul_precision)) in golden.cases.iter().flat_map(|c| paths.map(|p| (c, p))) {
        let options = EmbedderOptions {
            kernels,
            matmul_precision,
            ..options(&golden, case)
        };
        let embedder = Embedder::load(&folder, options).unwrap();
        let packed = embedder.info().kernels.starts_with("packed");
        assert_eq!(
            packed,
            common::PACKED_BUILD && kernels == Kernels::Fast,
            "{name}/{}: {kernels:?}",
            case.name
        );
        let prompt = case.prompt.as_deref().unwrap_or("");
        let texts: Vec<String> = golden.texts.iter().map(|t| format!("{prompt}{t}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids = embedder.tokenize(&refs).unwrap();
        assert_eq!(
            &ids,
            case.input_ids.as_ref().unwrap_or(&golden.input_ids),
            "{name}/{}: token ids",
            case.name
        );

        let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let batch = embedder.batch(&seqs).unwrap();
        let ours = embedder
            .embed_batch(&batch, Mode::Inference)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, (a, b)) in ours.iter().zip(&case.embeddings).enumerate() {
            let diff = max_abs_diff(a, b);
            assert!(
                diff <= TOLERANCE,
                "{name}/{} ({kernels:?}, {matmul_precision:?}): text {i} differs by {diff}",
                case.name
            );
        }
    }
}

#[test]
fn bert_matches_transformers_and_sentence_transformers() {
    check_model("bert");
}

#[test]
fn qwen3_matches_transformers_with_left_and_right_padding() {
    check_model("qwen3");
}

#[test]
fn llama_matches_transformers_with_left_and_right_padding() {
    check_model("llama");
}

#[test]
fn qwen2_matches_transformers_with_left_and_right_padding() {
    check_model("qwen2");
}

/// The folder's own settings (sentence-transformers modules, left padding,
/// EOS from the post-processor) reproduce `SentenceTransformer.encode`, and
/// length-sorted batching returns rows in input order.
#[test]
fn folder_defaults_reproduce_sentence_transformers_encode() {
    for name in ["bert", "qwen3"] {
        let golden = golden(&format!("tiny-{name}"));
        let case = golden.cases.iter().find(|c| c.name == "st-encode").unwrap();
        let embedder = Embedder::from_spec(
            fixture(&format!("tiny-{name}")).to_str().unwrap(),
            EmbedderOptions::default(),
        )
        .unwrap();
        let refs: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
        let out = embedder
            .encode(
                &refs,
                &reasonembed_models::EncodeOptions::default().with_batch_size(3),
                |_, _| {},
            )
            .unwrap();
        for (i, expected) in case.embeddings.iter().enumerate() {
            let diff = max_abs_diff(out.row(i), expected);
            assert!(diff <= TOLERANCE, "{name}: text {i} differs by {diff}");
        }
    }
}

#[test]
fn decoder_defaults_follow_the_checkpoint() {
    let qwen3 = Embedder::from_spec(fixture("tiny-qwen3").to_str().unwrap(), EmbedderOptions::default()).unwrap();
    let info = qwen3.info();
    assert_eq!(
        (info.pooling, info.padding_side, info.attention),
        (Pooling::LastToken, PaddingSide::Left, Attention::Causal)
    );
    assert!(!info.append_eos, "Qwen3's post-processor already appends EOS");
    assert_eq!(info.max_length, 24, "sentence_bert_config.json max_seq_length");

    let llama = Embedder::from_spec(fixture("tiny-llama").to_str().unwrap(), EmbedderOptions::default()).unwrap();
    assert!(llama.info().append_eos, "tokenizer_config.json asks for add_eos_token");
    assert!(llama.info().normalize, "plain folders are normalised by default");
}

/// Sequences longer than one block of query rows (64), of mixed lengths in
/// one batch, through every tiny backbone, causal and bidirectional, f32 (at
/// either matmul precision) and bf16: the packed path against the candle
/// reference.
#[test]
fn packed_path_matches_the_reference_on_long_mixed_batches() {
    let texts: Vec<String> = [3, 40, 97, 150, 200]
        .iter()
        .map(|&n| (0..n).map(|i| format!("w{} ", i % 37)).collect())
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for name in ["bert", "qwen3", "llama", "qwen2"] {
        let folder = ModelFolder::open(&fixture(&format!("tiny-{name}"))).unwrap();
        let attentions: &[Attention] = if name == "bert" {
            &[Attention::Bidirectional]
        } else {
            &[Attention::Causal, Attention::Bidirectional]
        };
        for &attention in attentions {
            for (dtype, matmul_precision, bar) in [
                (candle_core::DType::F32, MatmulPrecision::Highest, 1e-4f32),
                (candle_core::DType::F32, MatmulPrecision::High, 1e-4),
                (candle_core::DType::BF16, MatmulPrecision::Highest, 2e-2),
            ] {
                let embed = |kernels| {
                    let options = EmbedderOptions {
                        attention: Some(attention),
                        dtype: Some(dtype),
                        max_length: Some(if name == "bert" { 128 } else { 256 }),
                        kernels,
                        matmul_precision,
                        ..Default::default()
                    };
                    let embedder = Embedder::load(&folder, options).unwrap();
                    let options = reasonembed_models::EncodeOptions::default().with_batch_size(5);
                    embedder.encode(&refs, &options, |_, _| {}).unwrap()
                };
                let (fast, reference) = (embed(Kernels::Fast), embed(Kernels::Reference));
                assert!(
                    fast.tokens > 300,
                    "{name}: the texts must be long ({} tokens)",
                    fast.tokens
                );
                for i in 0..refs.len() {
                    let diff = max_abs_diff(fast.row(i), reference.row(i));
                    assert!(
                        diff <= bar,
                        "{name} {attention:?} {dtype:?} {matmul_precision:?}: text {i} differs by {diff}"
                    );
                }
            }
        }
    }
}
