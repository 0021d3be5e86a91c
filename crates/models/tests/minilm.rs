//! The real all-MiniLM-L6-v2 weights against sentence-transformers
//! (`fixtures/goldens/minilm.json`, from `scripts/make_goldens.py`): texts of
//! every length, three of them past the 256-token limit, in length-sorted
//! padded batches. The model is fetched on first use; if it cannot be, this
//! test fails rather than passing silently.

mod common;

use common::{Golden, cosine, golden, max_abs_diff};
use reasonembed_models::{Embedder, EmbedderOptions, EncodeOptions, Kernels, MatmulPrecision, PaddingSide, Pooling};

/// The golden texts embedded as `SentenceTransformer.encode` embeds them
/// (batch 32), with the golden vectors to compare against.
fn encode_golden<'a>(embedder: &Embedder, golden: &'a Golden) -> (reasonembed_models::Embeddings, &'a [Vec<f32>]) {
    let refs: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let out = embedder
        .encode(&refs, &EncodeOptions::default().with_batch_size(32), |_, _| {})
        .unwrap();
    let expected = &golden.cases.iter().find(|c| c.name == "st-encode").unwrap().embeddings;
    (out, expected)
}

fn minilm() -> Embedder {
    Embedder::from_spec("minilm", EmbedderOptions::default())
        .expect("the built-in minilm must load (it is fetched with pip on first use)")
}

#[test]
fn minilm_matches_sentence_transformers() {
    let golden = golden("minilm");
    let embedder = minilm();
    let info = embedder.info();
    assert_eq!(
        (info.dimensions, info.max_length, info.pooling, info.normalize),
        (384, 256, Pooling::Mean, true)
    );

    let refs: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let ids = embedder.tokenize(&refs).unwrap();
    assert_eq!(
        ids, golden.input_ids,
        "token ids (tokenizer.json pins 128; sentence-transformers uses 256)"
    );
    assert_eq!(ids.iter().map(Vec::len).collect::<Vec<_>>(), golden.token_counts);

    let (out, expected) = encode_golden(&embedder, &golden);
    for (i, e) in expected.iter().enumerate() {
        let cos = cosine(out.row(i), e);
        assert!(cos >= 0.99999, "text {i}: cosine {cos}");
        assert!(max_abs_diff(out.row(i), e) < 1e-5, "text {i}");
    }
}

/// Both matmul precisions hold the f32 bar against sentence-transformers:
/// the default `High` (on AMX, f32 values split into pairs of bf16 ones) and
/// `Highest` (IEEE products); their vectors agree far below the bar, and they
/// share a cache or index key exactly when they are the same code.
#[test]
fn minilm_at_either_matmul_precision_holds_the_f32_bar() {
    let golden = golden("minilm");
    let load = |matmul_precision| {
        let options = EmbedderOptions {
            matmul_precision,
            ..EmbedderOptions::default()
        };
        Embedder::from_spec("minilm", options).unwrap()
    };
    let high = minilm();
    let highest_model = load(MatmulPrecision::Highest);
    let split = common::PACKED_BUILD && reasonembed_models::device::amx();
    let expected = |high| match (common::PACKED_BUILD, split && high) {
        (false, _) => "candle",
        (true, true) => "packed+mkl+amx-bf16x3",
        (true, false) => "packed+mkl",
    };
    assert_eq!(
        high.info().kernels,
        expected(true),
        "the default kernels of this build and CPU"
    );
    assert_eq!(highest_model.info().kernels, expected(false), "IEEE products");
    assert_eq!(
        load(MatmulPrecision::High).identity().unwrap(),
        high.identity().unwrap()
    );
    // Vectors that differ never share a cache or index key.
    assert_eq!(high.identity().unwrap() == highest_model.identity().unwrap(), !split);
    let (out, goldens) = encode_golden(&high, &golden);
    let (highest, _) = encode_golden(&highest_model, &golden);
    let (mut worst, mut worst_to_highest, mut diff) = (1f64, 1f64, 0f32);
    for (i, e) in goldens.iter().enumerate() {
        for row in [out.row(i), highest.row(i)] {
            worst = worst.min(cosine(row, e));
            diff = diff.max(max_abs_diff(row, e));
        }
        worst_to_highest = worst_to_highest.min(cosine(out.row(i), highest.row(i)));
    }
    eprintln!(
        "worst cosine {worst} to the goldens (max diff {diff:e}); high {:e} from 1 to highest",
        1.0 - worst_to_highest
    );
    assert!(
        worst >= 0.99999 && diff < 1e-5,
        "worst cosine {worst}, max difference {diff}"
    );
    assert!(1.0 - worst_to_highest < 1e-8, "cosine to highest {worst_to_highest}");
}

/// bf16 weights on the CPU (with the default `mkl` feature, every linear
/// layer runs on MKL's bf16 GEMM: AMX or AVX512-BF16 where the CPU has them)
/// against the same f32 goldens, at bf16's tolerance.
#[test]
fn minilm_bf16_stays_close_to_sentence_transformers() {
    let golden = golden("minilm");
    let options = EmbedderOptions {
        dtype: Some(candle_core::DType::BF16),
        ..EmbedderOptions::default()
    };
    let embedder = Embedder::from_spec("minilm", options).expect("the built-in minilm must load");
    assert_eq!(embedder.info().dtype, "bf16");
    let (out, expected) = encode_golden(&embedder, &golden);
    let mut worst = 1.0f64;
    for (i, e) in expected.iter().enumerate() {
        let cos = cosine(out.row(i), e);
        assert!(cos >= 0.999, "text {i}: cosine {cos}");
        worst = worst.min(cos);
    }
    eprintln!(
        "bf16 against the f32 goldens: worst cosine {worst:.6} over {} texts",
        expected.len()
    );
}

/// The packed inference path (no padding, MKL GEMMs, fused passes) against
/// the candle ops that training differentiates, on the golden texts in mixed
/// batches (so sequences of very different lengths share a batch), with
/// either padding side, in f32 and bf16.
#[test]
fn packed_kernels_match_the_reference_path() {
    let golden = golden("minilm");
    let refs: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let embed = |dtype, kernels, padding_side| {
        let options = EmbedderOptions {
            dtype: Some(dtype),
            kernels,
            padding_side: Some(padding_side),
            ..EmbedderOptions::default()
        };
        let embedder = Embedder::from_spec("minilm", options).unwrap();
        let out = embedder
            .encode(&refs, &EncodeOptions::default().with_batch_size(7), |_, _| {})
            .unwrap();
        (embedder.info().kernels.clone(), out)
    };
    use candle_core::DType;
    for (dtype, bar) in [(DType::F32, 0.99999), (DType::BF16, 0.999)] {
        let (kernels, reference) = embed(dtype, Kernels::Reference, PaddingSide::Right);
        assert!(kernels.starts_with("candle"), "{kernels}");
        for side in [PaddingSide::Right, PaddingSide::Left] {
            let (kernels, fast) = embed(dtype, Kernels::Fast, side);
            let amx = reasonembed_models::device::amx();
            let expected = match (common::PACKED_BUILD, dtype) {
                (false, _) => "candle",
                (true, DType::BF16) if amx => "packed+mkl+amx",
                (true, DType::F32) if amx => "packed+mkl+amx-bf16x3",
                (true, _) => "packed+mkl",
            };
            assert_eq!(kernels, expected, "the default kernels of this build");
            for i in 0..refs.len() {
                let cos = cosine(fast.row(i), reference.row(i));
                assert!(cos >= bar, "{dtype:?} {side:?} text {i}: cosine {cos}");
            }
        }
    }
}

/// Similarities published for all-MiniLM-L6-v2 (its sentence-transformers model card).
#[test]
fn minilm_reproduces_published_similarities() {
    let embedder = minilm();
    let texts = [
        "Why do I only breathe out of one nostril?",
        "The nasal cycle alternates airflow between the left and right nostrils.",
        "Insects are attracted to artificial light at night.",
        "How do I reverse a linked list in Rust?",
    ];
    let out = embedder
        .encode(
            &texts,
            &reasonembed_models::EncodeOptions::default().with_batch_size(4),
            |_, _| {},
        )
        .unwrap();
    let s1_head = [
        0.070461, -0.004444, -0.018957, 0.013050, -0.007437, -0.079720, -0.050162, 0.006895,
    ];
    assert!(max_abs_diff(&out.row(0)[..8], &s1_head) < 1e-5);
    assert!((cosine(out.row(0), out.row(1)) - 0.5919).abs() < 1e-4);
    assert!((cosine(out.row(0), out.row(3)) - 0.0506).abs() < 1e-4);
}
