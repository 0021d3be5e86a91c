//! Training end to end on the tiny fixture models: GradCache gives the
//! uncached gradients, every trainable parameter learns, a killed and resumed
//! run ends with the same weights bit for bit, and the written model loads
//! and embeds as the trained one did.

use std::path::{Path, PathBuf};

use candle_core::Device;
use reasonembed_data::Silent;
use reasonembed_models::{Embedder, EmbedderOptions, EncodeOptions, LoraConfig, Prompt, Trainable};
use reasonembed_train::config::{Finetune, LossName};
use reasonembed_train::loss::{Loss, LossKind, RedapterConfig};
use reasonembed_train::step::{StepBatch, StepOptions, gradients};
use reasonembed_train::trainer::Start;
use reasonembed_train::{TrainConfig, train};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
        .display()
        .to_string()
}

const TOPICS: [&str; 8] = [
    "insects and light",
    "the nasal cycle",
    "linked lists",
    "bird migration",
    "photosynthesis",
    "tides and the moon",
    "volcanoes",
    "honey bees",
];

/// A small domain file: each topic a query with positives and negatives.
fn write_data(dir: &Path) -> PathBuf {
    let lines: Vec<String> = TOPICS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let other = TOPICS[(i + 1) % TOPICS.len()];
            serde_json::json!({
                "query": format!("what about {t}?"),
                "reasoning_query": format!("the question asks about {t}; passages explaining {t} help"),
                "pos": [format!("a passage about {t}"), format!("{t} explained in detail")],
                "neg": [format!("a passage about {other}"), "an unrelated note", format!("notes on {other}")],
            })
            .to_string()
        })
        .collect();
    let path = dir.join("science.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn load(name: &str, trainable: Trainable) -> Embedder {
    Embedder::from_spec(
        &fixture(name),
        EmbedderOptions {
            trainable,
            ..Default::default()
        },
    )
    .unwrap()
}

fn batch(embedder: &Embedder) -> StepBatch {
    let queries: Vec<String> = TOPICS.iter().map(|t| format!("what about {t}?")).collect();
    let reasoning: Vec<String> = TOPICS.iter().map(|t| format!("reasoning on {t}")).collect();
    let passages: Vec<String> = TOPICS
        .iter()
        .flat_map(|t| [format!("about {t}"), format!("not {t}")])
        .collect();
    let ids = |v: &[String]| {
        embedder
            .tokenize(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap()
    };
    StepBatch {
        queries: ids(&queries),
        passages: ids(&passages),
        reasoning: Some(ids(&reasoning)),
        group: 2,
        exclude: None,
    }
}

#[test]
fn grad_cache_gives_the_uncached_gradients() {
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        target_modules: vec!["all-linear".into()],
    };
    let loss = Loss {
        temperature: 0.05,
        kind: LossKind::Redapter(RedapterConfig {
            start_step: 0,
            ..Default::default()
        }),
    };
    for (name, trainable) in [
        ("bert", Trainable::All),
        ("qwen3", Trainable::All),
        ("bert", Trainable::Lora(lora.clone())),
        ("llama", Trainable::Lora(lora.clone())),
    ] {
        let embedder = load(&format!("tiny-{name}"), trainable);
        // PEFT starts B at zero; give it values so A's gradients are not all zero.
        for (n, v) in embedder.trainable_vars() {
            if n.ends_with("lora_B.weight") {
                v.set(&candle_core::Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let batch = batch(&embedder);
        let opts = |grad_cache| StepOptions {
            chunk: 3,
            grad_cache,
            seed: 7,
        };
        let (plain, plain_out) = gradients(&embedder, &batch, &loss, 5, &opts(false)).unwrap();
        let (cached, cached_out) = gradients(&embedder, &batch, &loss, 5, &opts(true)).unwrap();
        assert_eq!(plain_out.per_query.len(), 8);
        assert!((plain_out.per_query[0] - cached_out.per_query[0]).abs() < 1e-6);
        let params = embedder.trainable_vars();
        assert_eq!(plain.len(), params.len(), "{name}: every parameter has a gradient");
        for (n, g) in &plain {
            let c = &cached[n];
            let scale = g
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1e-8);
            let diff = (g - c)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff / scale < 1e-5,
                "{name} {n}: GradCache differs by {diff} (scale {scale})"
            );
            assert!(scale > 0.0, "{name} {n}: zero gradient");
        }
    }
}

fn config(dir: &Path, data: PathBuf, finetune: Finetune) -> TrainConfig {
    TrainConfig {
        model: fixture("tiny-bert"),
        data: vec![data],
        output: dir.join("run"),
        loss: LossName::Redapter,
        redapter_start_step: 2,
        epochs: 3,
        batch_size: 4,
        group_size: 3,
        chunk_size: 3,
        learning_rate: 1e-3,
        query_max_length: 24,
        passage_max_length: 24,
        finetune,
        lora_rank: 4,
        lora_alpha: 8.0,
        checkpoint_every: 2,
        ..TrainConfig::default()
    }
}

fn params_of(run: &Path) -> Vec<u8> {
    let latest = reasonembed_train::checkpoint::latest(run).unwrap();
    std::fs::read(latest.join("params.safetensors")).unwrap()
}

#[test]
fn a_killed_and_resumed_run_ends_with_the_same_weights() {
    for finetune in [Finetune::Full, Finetune::Lora] {
        let dir = tempfile::tempdir().unwrap();
        let data = write_data(dir.path());
        let straight = config(dir.path(), data.clone(), finetune);
        let summary = train(&straight, Start::Fresh, None, &mut Silent).unwrap();
        assert_eq!(summary.steps, 6, "2 batches of 4 per epoch, 3 epochs");

        let interrupted = TrainConfig {
            output: dir.path().join("interrupted"),
            ..straight.clone()
        };
        // "Killed" after 3 steps: the checkpoint of step 2 survives.
        train(&interrupted, Start::Fresh, Some(3), &mut Silent).unwrap();
        let resumed = train(&interrupted, Start::Resume, None, &mut Silent).unwrap();
        assert_eq!(resumed.resumed_from, Some(2));
        assert_eq!(
            params_of(&straight.output),
            params_of(&interrupted.output),
            "{finetune:?}: weights differ after resuming"
        );
        let metrics = std::fs::read_to_string(interrupted.output.join("metrics.jsonl")).unwrap();
        let steps: Vec<u64> = metrics
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![0, 1, 2, 3, 4, 5], "each step logged once");
        assert!(straight.output.join("loss.svg").exists() && straight.output.join("reasoning-intensity.svg").exists());
    }
}

#[test]
fn the_trained_model_is_written_in_the_formats_people_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let cfg = TrainConfig {
        merge_lora: true,
        epochs: 1,
        instruction: "Find passages.".into(),
        ..config(dir.path(), data, Finetune::Lora)
    };
    let summary = train(&cfg, Start::Fresh, None, &mut Silent).unwrap();
    let adapter = summary.adapter_dir.unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["peft_type"].as_str(), config["r"].as_u64()),
        (Some("LORA"), Some(4))
    );
    let tensors = candle_core::safetensors::load(adapter.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert!(
        tensors.contains_key("base_model.model.encoder.layer.0.attention.self.query.lora_A.weight"),
        "{:?}",
        tensors.keys().take(3).collect::<Vec<_>>()
    );

    // The merged model embeds like the base with the trained adapter, and not like the base.
    let model = summary.model_dir.unwrap();
    let merged = Embedder::from_spec(model.to_str().unwrap(), EmbedderOptions::default()).unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config_sentence_transformers.json")).unwrap()).unwrap();
    assert_eq!(st["prompts"]["query"], "Instruct: Find passages.\nQuery: ");
    let load = |adapter: Option<std::path::PathBuf>| {
        let options = EmbedderOptions {
            adapter,
            ..Default::default()
        };
        Embedder::from_spec(&fixture("tiny-bert"), options).unwrap()
    };
    let (base, adapted) = (load(None), load(Some(adapter)));
    let texts = ["a passage about volcanoes", "what about tides?"];
    let options = EncodeOptions {
        prompt: Prompt::None,
        max_length: Some(24),
        ..Default::default()
    };
    let vectors = |e: &Embedder| e.encode(&texts, &options, |_, _| {}).unwrap().data;
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let (a, b, c) = (vectors(&merged), vectors(&base), vectors(&adapted));
    assert_eq!((a.len(), b.len(), c.len()), (2 * 32, 2 * 32, 2 * 32));
    assert!(
        max_diff(&a, &c) < 1e-5,
        "merged vs base + adapter: {}",
        max_diff(&a, &c)
    );
    assert!(max_diff(&a, &b) > 1e-4, "training changed the model");
    assert_eq!(merged.info().max_length, 24);
}
