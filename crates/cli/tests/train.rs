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
    let out = reasonembed(&["train", "--print-config", "--gradients", "autograd"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("gradients = \"autograd\""));
    let out = reasonembed(&["train", "--print-config", "--gradients", "fast"]);
    assert!(
        !out.status.success() && stderr(&out).contains("gradients"),
        "{}",
        stderr(&out)
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
    let output = dir.path().join("run");
    let out = tiny_command(dir.path(), &output, &[])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The binary with MKL trains by hand (a feature the train crate must get).
    let path = if cfg!(feature = "mkl") {
        "by hand"
    } else {
        "candle's autograd"
    };
    assert!(stderr(&out).contains(&format!("gradients: {path}")), "{}", stderr(&out));
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

/// A tiny full fine-tuning run on tiny BERT: `extra` flags added; returns
/// the process output. `data` holds four records with one negative each.
fn tiny_run(dir: &std::path::Path, output: &std::path::Path, extra: &[&str]) -> Output {
    tiny_command(dir, output, extra).output().unwrap()
}

/// `train` of the tiny BERT on `dir/d.jsonl` (written unless it exists) into `output`.
fn tiny_command(dir: &std::path::Path, output: &std::path::Path, extra: &[&str]) -> Command {
    let data = dir.join("d.jsonl");
    if !data.exists() {
        let rows: Vec<String> = (0..4)
            .map(|i| {
                serde_json::json!({"query": format!("question {i}"), "pos": [format!("answer {i}")], "neg": ["noise"]})
                    .to_string()
            })
            .collect();
        std::fs::write(&data, rows.join("\n")).unwrap();
    }
    let model = repo_root().join("fixtures/models/tiny-bert");
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_reasonembed"));
    command.args(&args);
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Hyper-parameters that would end in NaN (or be silently replaced by the
/// default) are refused before any work, naming the setting.
#[test]
fn settings_that_end_in_nan_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    for (flag, value) in [
        ("--temperature", "0"),
        ("--temperature", "nan"),
        ("--learning-rate", "inf"),
        ("--warmup-ratio", "2"),
        ("--chunk-size", "0"),
        ("--group-size", "0"),
    ] {
        let out = tiny_run(dir.path(), &output, &[flag, value]);
        assert!(!out.status.success(), "{flag} {value} must be refused");
        let name = flag.trim_start_matches("--").replace('-', "_");
        let message = stderr(&out);
        assert!(
            message.contains(&name) || message.contains(flag),
            "{flag} {value}: {message}"
        );
        assert!(
            !output.join("metrics.jsonl").exists(),
            "{flag} {value}: no work may start"
        );
    }
    let toml = dir.path().join("train.toml");
    std::fs::write(&toml, "temperature = nan\n").unwrap();
    let out = tiny_run(dir.path(), &output, &["--config", toml.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("temperature"),
        "{}",
        stderr(&out)
    );
}

/// A wrong --eval-data fails before step 1, not after the last one.
#[test]
fn evaluation_data_is_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let missing = dir.path().join("no-such-beir");
    let out = tiny_run(dir.path(), &output, &["--eval-data", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-beir"), "{}", stderr(&out));
    assert!(!output.join("metrics.jsonl").exists() && !output.join("checkpoints").exists());
}

/// The model is written before the final evaluation, the evaluation names its
/// split, and a test split is evaluated with a warning.
#[test]
fn the_model_is_saved_before_the_final_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let beir = dir.path().join("beir");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    std::fs::write(
        beir.join("corpus.jsonl"),
        "{\"_id\": \"d1\", \"text\": \"answer 1\"}\n{\"_id\": \"d2\", \"text\": \"noise\"}\n",
    )
    .unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"question 1\"}\n",
    )
    .unwrap();
    std::fs::write(beir.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n").unwrap();
    let out = tiny_run(
        dir.path(),
        &output,
        &["--eval-data", beir.to_str().unwrap(), "--eval-split", "test"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("test split"),
        "a warning about the test split: {}",
        stderr(&out)
    );
    let eval = std::fs::read_to_string(output.join("eval.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(eval.lines().last().unwrap()).unwrap();
    assert_eq!(line["split"], "test");
    // The evaluation ran after the export: the model is older than the log line.
    let modified = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert!(modified(&output.join("model/model.safetensors")) <= modified(&output.join("eval.jsonl")));
}

/// A fresh run never mixes with an earlier run's outputs: refused without
/// --resume or --overwrite; --overwrite starts clean; --resume continues.
#[test]
fn a_fresh_run_refuses_an_old_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    assert!(
        tiny_run(dir.path(), &output, &["--checkpoint-every", "1"])
            .status
            .success()
    );
    assert!(output.join("checkpoints/step-00000001").exists());
    let again = tiny_run(dir.path(), &output, &[]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("--resume") && stderr(&again).contains("--overwrite"),
        "{}",
        stderr(&again)
    );
    let metrics = std::fs::read_to_string(output.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "the refused run touched nothing");

    // --overwrite with fewer steps: no checkpoint of the old run survives.
    let out = tiny_run(dir.path(), &output, &["--overwrite", "--max-steps", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let steps: Vec<String> = std::fs::read_dir(output.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(steps, vec!["step-00000001".to_string()], "old checkpoints removed");
    assert_eq!(
        std::fs::read_to_string(output.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

/// A loss that turns non-finite stops the run with a clear error and keeps
/// the weights from before the failing step.
#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_weights() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    // An absurd (but finite) learning rate blows the weights up after one update.
    let out = tiny_run(
        dir.path(),
        &output,
        &["--learning-rate", "1e30", "--warmup-ratio", "0", "--epochs", "4"],
    );
    assert!(!out.status.success(), "a NaN run must not exit 0");
    let message = stderr(&out);
    assert!(message.contains("not finite"), "{message}");
    assert!(!output.join("model").exists(), "no model exported from NaN weights");
    let metrics = std::fs::read_to_string(output.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(m["loss"].as_f64().is_some_and(f64::is_finite), "{line}");
    }
    let saved: Vec<_> = std::fs::read_dir(output.join("checkpoints")).unwrap().collect();
    assert_eq!(saved.len(), 1, "the last good weights are kept");
}
