//! `reasonembed embed` end to end, through the real binary: formats, order,
//! instructions and prompts, and bad input (clear error naming file and line,
//! non-zero exit, no output file left behind).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_bert() -> String {
    repo_root().join("fixtures/models/tiny-bert").display().to_string()
}

fn reasonembed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(args)
        .output()
        .unwrap()
}

fn embed(model: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "embed",
        "--quiet",
        "--model",
        model,
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    reasonembed(&args)
}

fn read_npy(path: &Path) -> Vec<Vec<f32>> {
    Tensor::read_npy(path).unwrap().to_vec2::<f32>().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Entries of `dir`, to show that a failed run leaves nothing behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

const TEXTS: &str = "Why do I only breathe out of one nostril?\nInsects are attracted to artificial light.\nA\nHow do I reverse a linked list in Rust?\n";

#[test]
fn writes_every_format_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, TEXTS).unwrap();

    let out = embed(&tiny_bert(), &input, &dir.path().join("e.npy"), &["--batch-size", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let npy = read_npy(&dir.path().join("e.npy"));
    assert_eq!((npy.len(), npy[0].len()), (4, 32));

    // Each text alone gives the same row: order is input order, batching is invisible.
    for (i, text) in TEXTS.lines().enumerate() {
        let single = dir.path().join(format!("single{i}.txt"));
        std::fs::write(&single, text).unwrap();
        let one = dir.path().join(format!("single{i}.npy"));
        assert!(embed(&tiny_bert(), &single, &one, &[]).status.success());
        let row = &read_npy(&one)[0];
        assert!(row.iter().zip(&npy[i]).all(|(a, b)| (a - b).abs() < 1e-5), "row {i}");
    }

    let jsonl_out = dir.path().join("e.jsonl");
    assert!(
        embed(&tiny_bert(), &input, &jsonl_out, &["--batch-size", "3"])
            .status
            .success()
    );
    let rows: Vec<Vec<f32>> = std::fs::read_to_string(&jsonl_out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(rows, npy);

    let st_out = dir.path().join("e.safetensors");
    assert!(
        embed(&tiny_bert(), &input, &st_out, &["--batch-size", "3"])
            .status
            .success()
    );
    let tensors = candle_core::safetensors::load(&st_out, &Device::Cpu).unwrap();
    assert_eq!(tensors["embeddings"].to_vec2::<f32>().unwrap(), npy);
}

#[test]
fn reads_jsonl_fields_and_applies_instructions_and_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("q.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": 1, \"body\": \"Why is the sky blue?\"}\n{\"id\": 2, \"body\": \"What is a linked list?\"}\n",
    )
    .unwrap();
    let plain = dir.path().join("plain.npy");
    assert!(
        embed(&tiny_bert(), &jsonl, &plain, &["--field", "body"])
            .status
            .success()
    );

    let txt = dir.path().join("q.txt");
    std::fs::write(&txt, "query: Why is the sky blue?\nquery: What is a linked list?\n").unwrap();
    let prefixed = dir.path().join("prefixed.npy");
    assert!(embed(&tiny_bert(), &txt, &prefixed, &[]).status.success());
    let prompted = dir.path().join("prompted.npy");
    assert!(
        embed(
            &tiny_bert(),
            &jsonl,
            &prompted,
            &["--field", "body", "--prompt-name", "query"]
        )
        .status
        .success()
    );
    assert_eq!(
        read_npy(&prompted),
        read_npy(&prefixed),
        "--prompt-name applies the folder's prompt"
    );
    assert_ne!(read_npy(&prompted), read_npy(&plain));

    let instructed = dir.path().join("instructed.npy");
    std::fs::write(&txt, "Instruct: Find answers\nQuery: Why is the sky blue?\n").unwrap();
    let out = embed(
        &tiny_bert(),
        &jsonl,
        &instructed,
        &["--field", "body", "--instruction", "Find answers"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let jsonl_one = dir.path().join("one.jsonl");
    std::fs::write(
        &jsonl_one,
        "{\"text\": \"Instruct: Find answers\\nQuery: Why is the sky blue?\"}\n",
    )
    .unwrap();
    let manual = dir.path().join("manual.npy");
    assert!(embed(&tiny_bert(), &jsonl_one, &manual, &[]).status.success());
    assert_eq!(
        read_npy(&instructed)[0],
        read_npy(&manual)[0],
        "ReasonEmbed instruction format"
    );

    let out = embed(
        &tiny_bert(),
        &jsonl,
        &prompted,
        &["--field", "body", "--prompt-name", "nope"],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("no prompt named 'nope'"),
        "{}",
        stderr(&out)
    );
}

/// Runs `embed` on `content` and checks it fails with `expected` in its
/// message and leaves no output (nor temporary file) behind.
fn assert_rejected(file_name: &str, content: &[u8], extra: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(file_name);
    std::fs::write(&input, content).unwrap();
    let out = embed(&tiny_bert(), &input, &dir.path().join("out.npy"), extra);
    let message = stderr(&out);
    assert!(!out.status.success(), "{file_name}: should fail");
    assert!(
        message.contains(expected),
        "{file_name}: expected '{expected}' in: {message}"
    );
    assert_eq!(
        entries(dir.path()),
        vec![file_name.to_string()],
        "no output may be left behind"
    );
}

#[test]
fn bad_input_is_named_by_file_and_line() {
    assert_rejected(
        "empty-line.txt",
        b"first\n\nthird\n",
        &[],
        "empty-line.txt:2: empty line",
    );
    assert_rejected(
        "bad-utf8.txt",
        b"fine\nbad \xff byte\n",
        &[],
        "bad-utf8.txt:2: invalid UTF-8",
    );
    assert_rejected(
        "missing.jsonl",
        b"{\"text\": \"ok\"}\n{\"title\": \"no text\"}\n",
        &[],
        "missing.jsonl:2: field 'text' is missing",
    );
    assert_rejected(
        "wrong-type.jsonl",
        b"{\"text\": 42}\n",
        &[],
        "wrong-type.jsonl:1: field 'text' is a number",
    );
    assert_rejected(
        "malformed.jsonl",
        b"{\"text\": \"ok\"}\n{\"text\": \n",
        &[],
        "malformed.jsonl:2: invalid JSON",
    );
    assert_rejected("notes.csv", b"a,b\n", &[], "unknown input format");
}

#[test]
fn blank_lines_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gaps.txt");
    std::fs::write(&input, "first\n\n  \nsecond").unwrap();
    let output = dir.path().join("out.npy");
    let out = embed(&tiny_bert(), &input, &output, &["--skip-empty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_npy(&output).len(), 2);
}

#[test]
fn bad_models_and_destinations_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.txt");
    std::fs::write(&input, "hello\n").unwrap();

    let out = embed("no-such-model", &input, &dir.path().join("o.npy"), &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown model 'no-such-model'"),
        "{}",
        stderr(&out)
    );

    let out = embed(&tiny_bert(), &input, &dir.path().join("missing-dir/o.npy"), &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("missing-dir/o.npy"),
        "{}",
        stderr(&out)
    );

    let out = embed(&tiny_bert(), &input, &dir.path().join("o.parquet"), &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown output format"),
        "{}",
        stderr(&out)
    );

    // A folder without weights names the file it needed.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(repo_root().join("fixtures/models/tiny-bert").join(f), broken.join(f)).unwrap();
    }
    let out = embed(broken.to_str().unwrap(), &input, &dir.path().join("o.npy"), &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("model.safetensors: file not found"),
        "{}",
        stderr(&out)
    );

    // A corrupt weights file is named too.
    std::fs::write(broken.join("model.safetensors"), b"not a safetensors file").unwrap();
    let out = embed(broken.to_str().unwrap(), &input, &dir.path().join("o.npy"), &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("model.safetensors: cannot read weights"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(dir.path()), vec!["broken".to_string(), "t.txt".to_string()]);
}

#[test]
fn the_default_model_matches_sentence_transformers() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("fixtures/goldens/minilm.json")).unwrap())
            .unwrap();
    let texts: Vec<&str> = golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = dir.path().join("out.npy");
    // No --model: the built-in minilm, fetched on first use.
    let out = reasonembed(&["embed", input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("embedded {} texts", texts.len())),
        "summary line: {}",
        stderr(&out)
    );
    let expected = golden["cases"][0]["embeddings"].as_array().unwrap();
    for (row, e) in read_npy(&output).iter().zip(expected) {
        let e: Vec<f32> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert!(row.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}

#[test]
fn help_explains_the_command() {
    let out = reasonembed(&["embed", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model",
        "--instruction",
        "--prompt-name",
        "--max-length",
        "--batch-size",
        "--no-normalize",
        "--field",
        "--quiet",
    ] {
        assert!(help.contains(flag), "missing {flag} in help");
    }
}

/// `reasonembed` with its cache (models, embeddings, indexes) in `cache`.
fn reasonembed_cached(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .env("REASONEMBED_CACHE", cache)
        .args(args)
        .output()
        .unwrap()
}

/// Trains a LoRA adapter on tiny BERT for a few steps; returns its folder.
fn train_adapter(dir: &Path, cache: &Path) -> PathBuf {
    let data = dir.join("train.jsonl");
    let rows: Vec<String> = (0..4)
        .map(|i| {
            serde_json::json!({"query": format!("question {i}"), "pos": [format!("answer {i}")], "neg": ["noise"]})
                .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let output = dir.join("run");
    let out = reasonembed_cached(
        cache,
        &[
            "train",
            "--quiet",
            "--model",
            &tiny_bert(),
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
            "--learning-rate",
            "0.05",
            "--batch-size",
            "2",
            "--group-size",
            "2",
            "--query-max-length",
            "16",
            "--passage-max-length",
            "16",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    output.join("adapter")
}

/// A LoRA adapter is part of the model's identity: vectors cached for the base
/// model are never served for the adapted one (nor the other way round) by
/// `embed`, `search` or `eval`, and a retrained adapter in the same folder is
/// not served its predecessor's vectors.
#[test]
fn every_cache_and_index_follows_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let adapter = train_adapter(dir.path(), &cache);
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, TEXTS).unwrap();
    let model = tiny_bert();
    let run = |name: &str, extra: &[&str]| -> Vec<Vec<f32>> {
        let output = dir.path().join(name);
        let mut args = vec!["embed", "--quiet", "--model", &model, input.to_str().unwrap(), "-o"];
        args.push(output.to_str().unwrap());
        args.extend_from_slice(extra);
        let out = reasonembed_cached(&cache, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        read_npy(&output)
    };
    let base = run("base.npy", &[]);
    let adapted = run("adapted.npy", &["--adapter", adapter.to_str().unwrap()]);
    let fresh = run("fresh.npy", &["--adapter", adapter.to_str().unwrap(), "--no-cache"]);
    let max_diff = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(
        max_diff(&base, &adapted) > 1e-4,
        "the adapter's vectors came from the base's cache"
    );
    assert!(
        max_diff(&adapted, &fresh) < 1e-6,
        "cached adapter vectors equal fresh ones"
    );
    assert!(max_diff(&run("base-again.npy", &[]), &base) < 1e-6);

    // Retrain into the same adapter folder: new weights, new vectors.
    let weights = adapter.join("adapter_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    for t in tensors.values_mut() {
        *t = (t.clone() * 3.0).unwrap();
    }
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let retrained = run("retrained.npy", &["--adapter", adapter.to_str().unwrap()]);
    assert!(
        max_diff(&retrained, &adapted) > 1e-4,
        "stale vectors of the old adapter were served"
    );

    // `search` (its default index in the cache) and `eval beir` (the embedding cache) too.
    let corpus = dir.path().join("corpus.jsonl");
    let lines: Vec<String> = TEXTS
        .lines()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"_id": format!("d{i}"), "text": t}).to_string())
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let search = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["search", "--quiet", "--json", "-k", "4", "--model", &model, "--corpus"];
        args.push(corpus.to_str().unwrap());
        args.extend_from_slice(extra);
        args.push("insects and light");
        let out = reasonembed_cached(&cache, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let scores = |v: &serde_json::Value| -> Vec<f64> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect()
    };
    let base_hits = scores(&search(&[]));
    let adapted_hits = scores(&search(&["--adapter", adapter.to_str().unwrap()]));
    assert_ne!(base_hits, adapted_hits, "search reused the base model's index");
    assert_eq!(scores(&search(&[])), base_hits);

    let queries = dir.path().join("queries.jsonl");
    std::fs::write(&queries, "{\"_id\": \"q1\", \"text\": \"insects and light\"}\n").unwrap();
    let qrels = dir.path().join("qrels.tsv");
    std::fs::write(&qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\n").unwrap();
    let eval = |extra: &[&str], out: &str| -> String {
        let folder = dir.path().join(out);
        let mut args = vec![
            "eval",
            "beir",
            "--quiet",
            "--model",
            &model,
            "--corpus",
            corpus.to_str().unwrap(),
        ];
        args.extend([
            "--queries",
            queries.to_str().unwrap(),
            "--qrels",
            qrels.to_str().unwrap(),
        ]);
        args.extend(["--out", folder.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let out = reasonembed_cached(&cache, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        // The run file holds the scores, which follow the vectors.
        std::fs::read_to_string(folder.join("runs/corpus.trec")).unwrap()
    };
    let base_eval = eval(&[], "eval-base");
    let adapted_eval = eval(&["--adapter", adapter.to_str().unwrap()], "eval-adapted");
    assert_ne!(base_eval, adapted_eval, "eval reused the base model's vectors");
}

/// `embed X -o X` would replace its own input with vectors: refused, input intact.
#[test]
fn the_output_may_not_overwrite_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.jsonl");
    std::fs::write(&input, "{\"text\": \"hello\"}\n").unwrap();
    let out = embed(&tiny_bert(), &input, &input, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("overwrite the input"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "{\"text\": \"hello\"}\n");
    // Also through a link to it.
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    assert!(!embed(&tiny_bert(), &input, &link, &[]).status.success());
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "{\"text\": \"hello\"}\n");
}

/// A model whose weights hold a NaN embeds to NaN: the command fails and
/// writes nothing, instead of writing nulls with exit 0.
#[test]
fn non_finite_vectors_are_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken-bert");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(tiny_bert())
        .arg(&model)
        .status()
        .unwrap();
    assert!(copied.success());
    let weights = model.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let name = tensors
        .keys()
        .find(|k| k.ends_with("embeddings.LayerNorm.weight"))
        .unwrap()
        .clone();
    let shape = tensors[&name].shape().clone();
    tensors.insert(name, Tensor::full(f32::NAN, shape, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, TEXTS).unwrap();
    for output in ["out.npy", "out.jsonl"] {
        let out = embed(
            model.to_str().unwrap(),
            &input,
            &dir.path().join(output),
            &["--no-cache"],
        );
        assert!(!out.status.success(), "{output}: must fail");
        assert!(stderr(&out).contains("non-finite"), "{}", stderr(&out));
        assert!(!dir.path().join(output).exists());
    }
}
