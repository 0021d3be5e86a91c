//! Trainable by construction: after one backward pass every trainable
//! parameter of every architecture has a non-zero gradient, for full
//! fine-tuning and for LoRA. This catches candle's gradient traps (fused
//! norms and softmax, detached attention) wherever they might creep in.

mod common;

use candle_core::{Device, Tensor, Var};
use common::fixture;
use reasonembed_models::{Embedder, EmbedderOptions, LoraConfig, Mode, Trainable};

const ARCHITECTURES: [&str; 4] = ["bert", "qwen3", "llama", "qwen2"];
const TEXTS: [&str; 3] = [
    "a short one",
    "Why do I only breathe out of one nostril?",
    "Insects are attracted to light.",
];

fn load(name: &str, trainable: Trainable) -> Embedder {
    let options = EmbedderOptions {
        trainable,
        ..Default::default()
    };
    Embedder::from_spec(fixture(&format!("tiny-{name}")).to_str().unwrap(), options).unwrap()
}

/// One forward pass in training mode and a loss touching every output.
fn backward(embedder: &Embedder) -> candle_core::backprop::GradStore {
    let ids = embedder.tokenize(&TEXTS).unwrap();
    let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let batch = embedder.batch(&seqs).unwrap();
    let emb = embedder.embed_batch(&batch, Mode::Train).unwrap();
    let weights = Tensor::randn(0f32, 1.0, emb.shape(), &Device::Cpu).unwrap();
    (emb * weights).unwrap().sum_all().unwrap().backward().unwrap()
}

fn assert_all_have_gradients(name: &str, vars: &[(String, Var)], grads: &candle_core::backprop::GradStore) {
    assert!(!vars.is_empty(), "{name}: no trainable parameters");
    let missing: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| {
            grads
                .get(v.as_tensor())
                .is_none_or(|g| g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: {} of {} parameters got no gradient: {missing:?}",
        missing.len(),
        vars.len()
    );
}

#[test]
fn full_fine_tuning_reaches_every_weight() {
    for name in ARCHITECTURES {
        let embedder = load(name, Trainable::All);
        let vars = embedder.trainable_vars();
        let grads = backward(&embedder);
        assert_all_have_gradients(name, &vars, &grads);
        // Every tensor the backbone uses is trainable (the BERT pooler and
        // decoder LM heads are not part of an embedder).
        let layer_norms = vars
            .iter()
            .filter(|(n, _)| n.contains("norm") || n.contains("LayerNorm"))
            .count();
        assert!(layer_norms > 0, "{name}: norms must be trainable");
    }
}

fn lora_config() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        target_modules: vec!["all-linear".into()],
    }
}

/// PEFT starts B at zero, which leaves A without gradient on the first step;
/// give B values so that both factors are checked.
fn randomise_lora_b(embedder: &Embedder) {
    for (name, var) in embedder.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            var.set(&Tensor::randn(0f32, 0.1, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn lora_reaches_every_adapter_and_only_adapters() {
    for name in ARCHITECTURES {
        let embedder = load(name, Trainable::Lora(lora_config()));
        let vars = embedder.trainable_vars();
        assert!(
            vars.iter()
                .all(|(n, _)| n.ends_with("lora_A.weight") || n.ends_with("lora_B.weight")),
            "{name}: base weights must stay frozen"
        );
        let linears_per_layer = if name == "bert" { 6 } else { 7 };
        assert_eq!(
            vars.len(),
            2 * 2 * linears_per_layer,
            "{name}: two layers, A and B for each linear"
        );
        randomise_lora_b(&embedder);
        assert_all_have_gradients(name, &vars, &backward(&embedder));
    }
}

#[test]
fn lora_targets_only_the_named_modules() {
    let config = LoraConfig {
        target_modules: vec!["q_proj".into(), "v_proj".into()],
        ..lora_config()
    };
    let embedder = load("qwen3", Trainable::Lora(config));
    let names: Vec<String> = embedder.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 8);
    assert!(
        names.iter().all(|n| n.contains("q_proj") || n.contains("v_proj")),
        "{names:?}"
    );
    assert!(
        names.contains(&"layers.0.self_attn.q_proj.lora_A.weight".to_string()),
        "PEFT-style names: {names:?}"
    );
}

#[test]
fn merged_lora_gives_the_same_embeddings() {
    for name in ["bert", "llama"] {
        let mut embedder = load(name, Trainable::Lora(lora_config()));
        randomise_lora_b(&embedder);
        let before = embedder
            .encode(
                &TEXTS,
                &reasonembed_models::EncodeOptions::default().with_batch_size(8),
                |_, _| {},
            )
            .unwrap();
        let base = load(name, Trainable::Nothing)
            .encode(
                &TEXTS,
                &reasonembed_models::EncodeOptions::default().with_batch_size(8),
                |_, _| {},
            )
            .unwrap();
        assert!(
            common::max_abs_diff(&before.data, &base.data) > 1e-3,
            "{name}: the adapters must change the output"
        );
        embedder.merge_lora().unwrap();
        let after = embedder
            .encode(
                &TEXTS,
                &reasonembed_models::EncodeOptions::default().with_batch_size(8),
                |_, _| {},
            )
            .unwrap();
        assert!(
            common::max_abs_diff(&before.data, &after.data) < 1e-5,
            "{name}: merge changed the embeddings"
        );
    }
}
