//! `reasonembed train` through the binary: configuration, errors, outputs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reasonembed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn print_config_shows_the_paper_recipe_and_flags_override_it() {
    let out = reasonembed(&["train", "--print-config"]);
    let toml = String::from_utf8_lossy(&out.stdout);
    for line in [
        "temperature = 0.02",
        "learning_rate = 0.0001",
        "lora_rank = 32",
        "lora_alpha = 64.0",
        "redapter_start_step = 100",
        "redapter_clamp_max = 5.0",
        "warmup_ratio = 0.1",
    ] {
        assert!(toml.contains(line), "missing {line} in:\n{toml}");
    }
    let out = reasonembed(&["train", "--print-config", "--temperature", "0.05", "--finetune", "full"]);
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(
        toml.contains("temperature = 0.05") && toml.contains("finetune = \"full\""),
        "{toml}"
    );
}

#[test]
fn bad_training_data_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"query\": \"q\", \"pos\": [\"p\"], \"neg\": [\"n\"]}\n").unwrap();
    let model = repo_root().join("fixtures/models/tiny-bert");
    let out = reasonembed(&[
        "train",
        "--quiet",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("d.jsonl:1") && stderr.contains("reasoning_query"),
        "{stderr}"
    );
}

#[test]
fn a_small_run_writes_model_metrics_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    let rows: Vec<String> = (0..4).map(|i| serde_json::json!({"query": format!("question {i}"), "pos": [format!("answer {i}")], "neg": ["noise", "other"]}).to_string()).collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let model = repo_root().join("fixtures/models/tiny-bert");
    let output = dir.path().join("run");
    let out = reasonembed(&[
        "train",
        "--quiet",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--loss",
        "infonce",
        "--finetune",
        "full",
        "--batch-size",
        "2",
        "--group-size",
        "2",
        "--query-max-length",
        "16",
        "--passage-max-length",
        "16",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        output.join("model").display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(output.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    for f in [
        "model/model.safetensors",
        "model/modules.json",
        "model/1_Pooling/config.json",
        "loss.svg",
    ] {
        assert!(output.join(f).exists(), "{f}");
    }
    // The trained model is a model like any other.
    let texts = dir.path().join("t.txt");
    std::fs::write(&texts, "question 1\n").unwrap();
    let embedded = reasonembed(&[
        "embed",
        "--quiet",
        "--model",
        output.join("model").to_str().unwrap(),
        texts.to_str().unwrap(),
        "-o",
        dir.path().join("e.npy").to_str().unwrap(),
    ]);
    assert!(
        embedded.status.success(),
        "{}",
        String::from_utf8_lossy(&embedded.stderr)
    );
}

/// A LoRA adapter applied at load time embeds like the model with it merged.
#[test]
fn a_trained_adapter_loads_like_its_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    let rows: Vec<String> = (0..4)
        .map(|i| {
            serde_json::json!({"query": format!("question {i}"), "pos": [format!("answer {i}")], "neg": ["noise"]})
                .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let model = repo_root().join("fixtures/models/tiny-bert");
    let output = dir.path().join("run");
    let out = reasonembed(&[
        "train",
        "--quiet",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--loss",
        "infonce",
        "--finetune",
        "lora",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--merge-lora",
        "true",
        "--learning-rate",
        "0.01",
        "--batch-size",
        "2",
        "--group-size",
        "2",
        "--query-max-length",
        "16",
        "--passage-max-length",
        "16",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts = dir.path().join("t.txt");
    std::fs::write(&texts, "question 1\nanswer 3\n").unwrap();
    let embed = |extra: &[&str], name: &str| -> Vec<Vec<f32>> {
        let path = dir.path().join(name);
        let mut args = vec![
            "embed",
            "--quiet",
            "--no-cache",
            texts.to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = reasonembed(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        candle_core::Tensor::read_npy(&path).unwrap().to_vec2::<f32>().unwrap()
    };
    let merged = embed(&["--model", output.join("model").to_str().unwrap()], "merged.npy");
    let adapted = embed(
        &[
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            output.join("adapter").to_str().unwrap(),
        ],
        "adapted.npy",
    );
    let base = embed(&["--model", model.to_str().unwrap()], "base.npy");
    let diff = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(
        diff(&merged, &adapted) < 1e-5,
        "adapter vs merged: {}",
        diff(&merged, &adapted)
    );
    assert!(diff(&base, &adapted) > 1e-4, "the adapter changes the model");
}
