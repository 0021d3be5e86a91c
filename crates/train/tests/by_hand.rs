//! Training by hand (on the CPU in f32, `reasonembed_models::hand`) gives the
//! gradients of candle's autograd (`Kernels::Reference`): full fine-tuning
//! and LoRA, on every tiny fixture (BERT, Qwen3, Llama, Qwen2) for every
//! pooling, and on MiniLM's real weights; with InfoNCE and Redapter; dropout
//! off (the two paths draw different masks: one pads, the other does not).
//! With dropout on, a seed replays its step bit for bit, another seed draws
//! other masks, and GradCache gives the plain gradients (`training.rs`).

#![cfg(feature = "mkl")]

use std::path::{Path, PathBuf};

use reasonembed_models::{Embedder, EmbedderOptions, Kernels, LoraConfig, Pooling, Trainable};
use reasonembed_train::loss::{Loss, LossKind, RedapterConfig};
use reasonembed_train::step::{Grads, StepBatch, StepOptions, gradients};

const TOPICS: [&str; 5] = [
    "insects and light",
    "the nasal cycle of the human nose, which alternates between nostrils",
    "linked lists",
    "bird migration across continents in autumn",
    "tides",
];

/// A copy of a model folder (links to its files) whose config turns dropout off.
fn without_dropout(model: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "config.json" {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn load(model: &Path, trainable: &Trainable, pooling: Pooling, kernels: Kernels) -> Embedder {
    let options = EmbedderOptions {
        trainable: trainable.clone(),
        pooling: Some(pooling),
        kernels,
        ..Default::default()
    };
    let embedder = Embedder::from_spec(model.to_str().unwrap(), options).unwrap();
    // The adapters start random (A) and zero (B, as PEFT): give both the
    // same values on both sides, B non-zero so that A's gradients are not.
    for (name, var) in embedder.trainable_vars() {
        if name.contains("lora_") {
            let values: Vec<f32> = (0..var.elem_count())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 2e-3)
                .collect();
            var.set(&candle_core::Tensor::from_vec(values, var.shape(), var.device()).unwrap())
                .unwrap();
        }
    }
    embedder
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn lora() -> Trainable {
    Trainable::Lora(LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
    })
}

fn batch(embedder: &Embedder) -> StepBatch {
    let ids = |v: Vec<String>| {
        embedder
            .tokenize(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap()
    };
    StepBatch {
        queries: ids(TOPICS.iter().map(|t| format!("what about {t}?")).collect()),
        passages: ids(TOPICS
            .iter()
            .flat_map(|t| [format!("a passage about {t}"), format!("not {t}, but something else")])
            .collect()),
        reasoning: Some(ids(TOPICS.iter().map(|t| format!("reasoning on {t}")).collect())),
        group: 2,
        exclude: None,
    }
}

fn losses() -> [Loss; 2] {
    [
        Loss {
            temperature: 0.05,
            kind: LossKind::InfoNce,
        },
        Loss {
            temperature: 0.05,
            kind: LossKind::Redapter(RedapterConfig {
                start_step: 0,
                ..Default::default()
            }),
        },
    ]
}

/// One plain step's gradients and summed per-query loss (GradCache against
/// plain is `training.rs`'s test).
fn step(embedder: &Embedder, loss: &Loss, seed: u64) -> (Grads, f64) {
    let opts = StepOptions {
        chunk: 4,
        grad_cache: false,
        seed,
    };
    let (grads, out) = gradients(embedder, &batch(embedder), loss, 3, &opts).unwrap();
    (grads, out.per_query.iter().sum())
}

/// The largest difference between two gradients and the larger one's largest value.
fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> (f32, f32) {
    let max = |t: candle_core::Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    (max((a - b).unwrap()), max(a.clone()).max(max(b.clone())))
}

/// Poolings whose gradients mean something: a causal model's first token is
/// the same BOS in every text of Llama's tokenizer, so CLS pooling would
/// give every text the same vector and a zero gradient.
fn poolings(name: &str) -> &'static [Pooling] {
    match name {
        "llama" => &[Pooling::Mean, Pooling::LastToken],
        _ => &[Pooling::Mean, Pooling::Cls, Pooling::LastToken],
    }
}

/// Every gradient agrees within `tolerance` of its largest value. One that
/// is zero in exact arithmetic (the keys' bias in BERT: softmax ignores a
/// constant added to a row of scores; K for the first token of a causal
/// model, which attends to itself only) is rounding noise on both sides: it
/// must stay negligible against the model's largest gradient.
fn assert_close(what: &str, by_hand: &Grads, autograd: &Grads, tolerance: f32) {
    assert_eq!(by_hand.len(), autograd.len(), "{what}: every parameter");
    let diffs: Vec<(&String, f32, f32)> = autograd
        .iter()
        .map(|(param, g)| {
            let (diff, scale) = max_diff(&by_hand[param], g);
            (param, diff, scale)
        })
        .collect();
    let largest = diffs.iter().map(|d| d.2).fold(0f32, f32::max);
    assert!(largest > 0.0, "{what}: no gradient at all");
    for (param, diff, scale) in diffs {
        assert!(
            diff < tolerance * scale || scale < 1e-6 * largest,
            "{what} {param}: differs by {diff} of {scale} (largest gradient {largest})"
        );
    }
}

fn assert_same_gradients(model: &Path, name: &str, trainable: Trainable, tolerance: f32) {
    let model = without_dropout(model);
    for &pooling in poolings(name) {
        let fast = load(model.path(), &trainable, pooling, Kernels::Fast);
        let reference = load(model.path(), &trainable, pooling, Kernels::Reference);
        assert!(fast.trains_by_hand() && !reference.trains_by_hand());
        for loss in losses() {
            let (by_hand, loss_by_hand) = step(&fast, &loss, 1);
            let (autograd, loss_autograd) = step(&reference, &loss, 1);
            let what = format!("{name} {trainable:?} {pooling:?} {:?}", loss.kind);
            assert!(
                (loss_by_hand - loss_autograd).abs() < 1e-4 * loss_autograd.abs().max(1.0),
                "{what}: loss {loss_by_hand} by hand, {loss_autograd} by autograd"
            );
            assert_eq!(by_hand.len(), fast.trainable_vars().len(), "{what}: every parameter");
            assert_close(&what, &by_hand, &autograd, tolerance);
        }
    }
}

#[test]
fn every_tiny_fixture_gets_autograds_gradients() {
    for name in ["bert", "qwen3", "llama", "qwen2"] {
        for trainable in [Trainable::All, lora()] {
            assert_same_gradients(&fixture(&format!("tiny-{name}")), name, trainable, 1e-4);
        }
    }
}

#[test]
fn minilm_gets_autograds_gradients() {
    let model = reasonembed_models::source::resolve("minilm").expect("the built-in minilm (fetched on first use)");
    assert_same_gradients(&model, "minilm", Trainable::All, 1e-3);
}

#[test]
fn with_dropout_a_seed_replays_its_step() {
    let lora = Trainable::Lora(LoraConfig {
        dropout: 0.1,
        ..LoraConfig::default()
    });
    for (name, trainable) in [("bert", Trainable::All), ("qwen3", lora)] {
        let embedder = load(
            &fixture(&format!("tiny-{name}")),
            &trainable,
            Pooling::Mean,
            Kernels::Fast,
        );
        let [loss, _] = losses();
        let (a, loss_a) = step(&embedder, &loss, 7);
        let (b, loss_b) = step(&embedder, &loss, 7);
        let (_, loss_c) = step(&embedder, &loss, 8);
        assert_eq!(loss_a, loss_b, "{name}: the same seed, the same masks");
        assert_ne!(loss_a, loss_c, "{name}: another seed, other masks");
        for (param, g) in &a {
            let (diff, _) = max_diff(g, &b[param]);
            assert_eq!(diff, 0.0, "{name} {param}: a replayed step differs");
        }
    }
}

/// With every text of one length there is no padding, so both paths draw
/// the very same dropout masks (a multiple of 16 tokens lays the attention
/// probabilities out alike too): dropout on, the gradients still agree.
#[test]
fn without_padding_dropout_gives_autograds_gradients() {
    let lora = Trainable::Lora(LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        target_modules: vec!["all-linear".into()],
    });
    for (name, trainable) in [("bert", Trainable::All), ("bert", lora.clone()), ("qwen3", lora)] {
        let model = fixture(&format!("tiny-{name}"));
        let fast = load(&model, &trainable, Pooling::Mean, Kernels::Fast);
        let reference = load(&model, &trainable, Pooling::Mean, Kernels::Reference);
        let text = TOPICS.join(" and then ").repeat(3);
        let ids = fast.tokenize(&[text.as_str()]).unwrap().remove(0);
        let windows = |n: usize, from: usize| {
            (0..n)
                .map(|i| ids.iter().cycle().skip(from + 5 * i).take(16).copied().collect())
                .collect()
        };
        let batch = StepBatch {
            queries: windows(3, 0),
            passages: windows(6, 20),
            reasoning: None,
            group: 2,
            exclude: None,
        };
        let [loss, _] = losses();
        let opts = StepOptions {
            chunk: 4,
            grad_cache: false,
            seed: 11,
        };
        let (by_hand, a) = gradients(&fast, &batch, &loss, 3, &opts).unwrap();
        let (autograd, b) = gradients(&reference, &batch, &loss, 3, &opts).unwrap();
        let (a, b): (f64, f64) = (a.per_query.iter().sum(), b.per_query.iter().sum());
        assert!(
            (a - b).abs() < 1e-4 * b.abs().max(1.0),
            "{name}: loss {a} by hand, {b} by autograd"
        );
        assert_close(&format!("{name} {trainable:?}"), &by_hand, &autograd, 1e-4);
    }
}
