//! Training by hand (full fine-tuning of a BERT on the CPU,
//! `reasonembed_models::bert_train`) gives the gradients of candle's autograd
//! (`Kernels::Reference`): on the tiny BERT fixture and on MiniLM's real
//! weights, for every pooling, with InfoNCE and Redapter, dropout off (the
//! two paths draw different masks: one pads, the other does not). With
//! dropout on, a seed replays its step bit for bit, another seed draws other
//! masks, and GradCache gives the plain gradients (`training.rs`).

#![cfg(feature = "mkl")]

use std::path::{Path, PathBuf};

use reasonembed_models::{Embedder, EmbedderOptions, Kernels, Pooling, Trainable};
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

fn load(model: &Path, pooling: Pooling, kernels: Kernels) -> Embedder {
    let options = EmbedderOptions {
        trainable: Trainable::All,
        pooling: Some(pooling),
        kernels,
        ..Default::default()
    };
    Embedder::from_spec(model.to_str().unwrap(), options).unwrap()
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

fn step(embedder: &Embedder, loss: &Loss, seed: u64, grad_cache: bool) -> (Grads, f64) {
    let opts = StepOptions {
        chunk: 4,
        grad_cache,
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

fn assert_same_gradients(model: &Path, name: &str, tolerance: f32) {
    let model = without_dropout(model);
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::LastToken] {
        let fast = load(model.path(), pooling, Kernels::Fast);
        let reference = load(model.path(), pooling, Kernels::Reference);
        assert!(fast.trains_by_hand() && !reference.trains_by_hand());
        for loss in losses() {
            let (by_hand, loss_by_hand) = step(&fast, &loss, 1, false);
            let (autograd, loss_autograd) = step(&reference, &loss, 1, false);
            let what = format!("{name} {pooling:?} {:?}", loss.kind);
            assert!(
                (loss_by_hand - loss_autograd).abs() < 1e-4 * loss_autograd.abs().max(1.0),
                "{what}: loss {loss_by_hand} by hand, {loss_autograd} by autograd"
            );
            assert_eq!(by_hand.len(), fast.trainable_vars().len(), "{what}: every parameter");
            // A gradient that is zero in exact arithmetic (the keys' bias:
            // softmax ignores a constant added to a row of scores) is
            // rounding noise on both sides: it must stay negligible against
            // the model's largest gradient; every other one must agree.
            let diffs: Vec<(&String, f32, f32)> = autograd
                .iter()
                .map(|(param, g)| {
                    let (diff, scale) = max_diff(&by_hand[param], g);
                    (param, diff, scale)
                })
                .collect();
            let largest = diffs.iter().map(|d| d.2).fold(0f32, f32::max);
            for (param, diff, scale) in diffs {
                let negligible = largest * 1e-4;
                if param.contains("attention.self.key.bias") {
                    assert!(scale < negligible, "{what} {param}: {scale}, not zero");
                } else {
                    assert!(scale > negligible, "{what} {param}: zero gradient");
                    assert!(diff < tolerance * scale, "{what} {param}: differs by {diff} of {scale}");
                }
            }
        }
    }
}

#[test]
fn the_tiny_bert_gets_autograds_gradients() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert");
    assert_same_gradients(&model, "tiny-bert", 1e-4);
}

#[test]
fn minilm_gets_autograds_gradients() {
    let model = reasonembed_models::source::resolve("minilm").expect("the built-in minilm (fetched on first use)");
    assert_same_gradients(&model, "minilm", 1e-3);
}

#[test]
fn with_dropout_a_seed_replays_its_step() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert");
    let embedder = load(&model, Pooling::Mean, Kernels::Fast);
    let [loss, _] = losses();
    let (a, loss_a) = step(&embedder, &loss, 7, false);
    let (b, loss_b) = step(&embedder, &loss, 7, false);
    let (_, loss_c) = step(&embedder, &loss, 8, false);
    assert_eq!(loss_a, loss_b, "the same seed, the same masks");
    assert_ne!(loss_a, loss_c, "another seed, other masks");
    for (param, g) in &a {
        let (diff, _) = max_diff(g, &b[param]);
        assert_eq!(diff, 0.0, "{param}: a replayed step differs");
    }
}
