//! The stages end to end with a scripted fake LLM (named as such: it answers
//! by looking at the prompt) and the tiny BERT fixture as the mining embedder.
//! Real-LLM tests: local_llm.rs (embedded GGUF) and llama_server.rs (HTTP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reasonembed_data::Silent;
use reasonembed_models::EmbedderOptions;
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_synth::llm::{AnswerFormat, Completion, Llm, LlmError, Request};
use reasonembed_synth::{Pipeline, Run, Stage, SynthConfig};
use serde_json::Value;

type Script = dyn Fn(&str) -> Result<String, LlmError> + Send + Sync;

/// A fake LLM that answers from a script.
struct FakeLlm {
    script: Box<Script>,
    calls: AtomicUsize,
}

impl FakeLlm {
    fn new(script: impl Fn(&str) -> Result<String, LlmError> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            calls: AtomicUsize::new(0),
        })
    }
}

impl Llm for FakeLlm {
    fn name(&self) -> &str {
        "fake"
    }
    fn concurrency(&self) -> usize {
        3
    }
    /// Counts words as tokens: an answer longer than `max_tokens` is cut
    /// there and flagged, as a real backend does. A score answer opening
    /// with "Analysis" passes for one whose verdict a backend forced, when
    /// the stage asked for the score format.
    fn chat(&self, request: &Request) -> Result<Completion, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = (self.script)(&request.messages[0].content)?;
        let max = request.sampling.max_tokens;
        let words: Vec<&str> = text.split_whitespace().collect();
        let truncated = words.len() > max;
        Ok(Completion {
            prompt_tokens: 10,
            completion_tokens: words.len().min(max),
            text: if truncated {
                words[..max].join(" ")
            } else {
                text.clone()
            },
            truncated,
            forced: request.answer == Some(AnswerFormat::Score1to5) && text.starts_with("Analysis"),
        })
    }
}

/// The number in `Document N.` of the first document in a prompt.
fn doc_number(prompt: &str) -> usize {
    let start = prompt.find("Document ").expect("a document in the prompt") + "Document ".len();
    prompt[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A well-behaved scripted LLM: keeps even documents in cleaning, writes a
/// query naming the source (with a reasoning block to strip), and grades a
/// candidate by its number: multiples of 3 score 4, others 1 or 2, and
/// numbers ending in 7 get an answer without a score.
fn good_script(prompt: &str) -> Result<String, LlmError> {
    if prompt.starts_with("Does the following passage") {
        return Ok(if doc_number(prompt).is_multiple_of(2) {
            "Yes."
        } else {
            "No"
        }
        .into());
    }
    if prompt.contains("Your question:") {
        let n = doc_number(prompt);
        // Sources 8 and 9 get the same query: the md5 rule keeps one.
        let n = if n == 9 { 8 } else { n };
        return Ok(format!(
            "<think>plan</think>\nHow does effect {n} arise in wind tunnels?"
        ));
    }
    if prompt.contains("Instructions:\n1. Identify the essential problem.") {
        return Ok("The essential problem is flow separation.".into());
    }
    if prompt.contains("[Begin of Document]") {
        let doc = &prompt[prompt.find("[Begin of Document]").unwrap()..];
        let n = doc_number(doc);
        return Ok(match n {
            n if n % 10 == 7 => "I think it is relevant.".into(),
            n if n % 3 == 0 => "Analysis. <score>4</score>".into(),
            n if n % 2 == 0 => "<score>2</score>".into(),
            _ => "Irrelevant: <score> 1 </score>".into(),
        });
    }
    Err(LlmError::Permanent(format!("unexpected prompt: {prompt}")))
}

fn text(n: usize, words: usize) -> String {
    let mut t = format!("Document {n}. ");
    while t.split_whitespace().count() < words {
        t.push_str(&format!("pressure{n} boundary layer flow {} ", n * 7 % 13));
    }
    t
}

/// 37 documents: d0–d29 eligible except the excluded d1, d2; d30–d34 too
/// short; d35 too long; d36 repeats d4's text.
fn corpus(dir: &Path) -> PathBuf {
    let mut lines = String::new();
    for n in 0..37 {
        let body = match n {
            30..=34 => format!("Document {n}. short"),
            35 => text(n, 1200),
            36 => text(4, 40),
            _ => text(n, 40),
        };
        lines.push_str(&serde_json::json!({"_id": format!("d{n}"), "text": body}).to_string());
        lines.push('\n');
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines).unwrap();
    std::fs::write(
        dir.join("qrels.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n",
    )
    .unwrap();
    path
}

fn config(dir: &Path, extra: &str) -> SynthConfig {
    config_with(dir, "candidates = 6\ndepth = 20", extra)
}

/// A config with `mine` in the `[mine]` table and `extra` after the domain's keys.
fn config_with(dir: &Path, mine: &str, extra: &str) -> SynthConfig {
    corpus(dir);
    let tiny_bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert");
    let toml = format!(
        r#"output = "run"
seed = 7
audit = true
[mine]
model = "{}"
{mine}
[[domain]]
name = "aero"
corpus = "corpus.jsonl"
exclude_qrels = ["qrels.tsv"]
sources = 12
train_group_size = 4
batch_size = 2
{extra}"#,
        tiny_bert.display()
    );
    let path = dir.join("synth.toml");
    std::fs::write(&path, toml).unwrap();
    SynthConfig::read(&path).unwrap()
}

fn pipeline(config: SynthConfig, llm: Arc<dyn Llm>) -> Pipeline {
    Pipeline::new(
        Run::open(config).unwrap(),
        EmbeddingCache::disabled(),
        EmbedderOptions::default(),
    )
    .with_llm(llm)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn source_number(id: &str) -> usize {
    id.trim_start_matches("aero/d").parse().unwrap()
}

#[test]
fn the_pipeline_turns_a_corpus_into_training_rows() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlm::new(good_script);
    let p = pipeline(config(dir.path(), ""), llm.clone());
    let report = p.run_all(&mut Silent).unwrap();
    let run = dir.path().join("run");

    // Stage 1: sources are eligible documents only, each text once.
    let queries = lines(&run.join("queries.jsonl"));
    assert_eq!(queries.len(), 12);
    for q in &queries {
        let n = source_number(q["id"].as_str().unwrap());
        assert!(n < 30 && n != 1 && n != 2 && n != 36, "source d{n} is not eligible");
        assert!(
            !q["query"].as_str().unwrap().contains("think"),
            "the reasoning block is stripped"
        );
        assert!(q["length"].is_string() && q["level"].is_string());
        assert_eq!(
            q["prompt"],
            "Given a aero question, retrieve relevant passages that help answer the question."
        );
    }
    // The md5 rule: if both 8 and 9 were sampled, their shared query counts once.
    let both = queries
        .iter()
        .filter(|q| [8, 9].contains(&source_number(q["id"].as_str().unwrap())))
        .count();
    let d = &report.domains["aero"];
    assert_eq!(d.queries, 12 - both.saturating_sub(1));

    // Stage 2: never the source, at most `candidates`, no repeats.
    for c in lines(&run.join("candidates.jsonl")) {
        let source = c["id"].as_str().unwrap().trim_start_matches("aero/");
        let list: Vec<&str> = c["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!list.contains(&source), "{source} mined for its own query");
        assert!(list.len() >= 5 && list.len() <= 6, "{list:?}");
        let unique: std::collections::HashSet<_> = list.iter().collect();
        assert_eq!(unique.len(), list.len());
    }

    // Stage 3: scores and parse failures.
    let labels = lines(&run.join("labels.jsonl"));
    for l in &labels {
        let n: usize = l["doc_id"].as_str().unwrap()[1..].parse().unwrap();
        let expected = match n {
            n if n % 10 == 7 => -1,
            n if n % 3 == 0 => 4,
            n if n % 2 == 0 => 2,
            _ => 1,
        };
        assert_eq!(l["score"], expected, "{l}");
        assert_eq!(l.get("parse_error").is_some(), expected == -1);
    }
    let histogram: usize = report.labels.values().sum();
    assert_eq!(histogram, labels.len());
    assert_eq!(
        report.llm["annotate"].parse_failures,
        labels.iter().filter(|l| l["score"] == -1).count()
    );
    // The stage asks for its format; the verdicts the backend forced are counted.
    let forced = labels.iter().filter(|l| l["score"] == 4).count();
    assert!(forced > 0);
    assert_eq!(report.llm["annotate"].forced, forced);
    assert_eq!(labels.iter().filter(|l| l["forced"] == true).count(), forced);

    // Stage 4: thresholds, group settings, q′, and the trainer accepts it.
    let train = lines(&run.join("train/aero.jsonl"));
    assert_eq!(train.len(), d.training.kept);
    assert!(!train.is_empty());
    for row in &train {
        assert!(!row["pos"].as_array().unwrap().is_empty() && !row["neg"].as_array().unwrap().is_empty());
        for pos in row["pos"].as_array().unwrap() {
            assert_eq!(doc_number(pos.as_str().unwrap()) % 3, 0, "a positive scored 4");
        }
        for neg in row["neg"].as_array().unwrap() {
            let n = doc_number(neg.as_str().unwrap());
            assert!(!n.is_multiple_of(3) && n % 10 != 7, "negatives scored 1 or 2, d{n}");
        }
        assert_eq!(row["reasoning_query"], "The essential problem is flow separation.");
        assert_eq!(
            (row["train_group_size"].as_u64(), row["batch_size"].as_u64()),
            (Some(4), Some(2))
        );
    }
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
    assert_eq!(domains[0].records.len(), train.len());
    assert_eq!(skipped.total(), 0);

    // Everything done, once: a rerun makes no call.
    let calls = llm.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 12 + d.queries + labels.len());
    let again = pipeline(config(dir.path(), ""), llm.clone())
        .run_all(&mut Silent)
        .unwrap();
    assert_eq!(llm.calls.load(Ordering::SeqCst), calls);
    assert_eq!(again.domains["aero"].training.kept, d.training.kept);
    for s in &again.status {
        assert_eq!((s.done, s.failed), (s.total, 0), "{s:?}");
    }
    assert!(run.join("report.md").exists() && run.join("audit.jsonl").exists());
}

#[test]
fn cleaning_keeps_only_yes_documents_as_sources() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(config(dir.path(), "clean = true"), FakeLlm::new(good_script));
    p.stage(Stage::Clean, &mut Silent).unwrap();
    p.stage(Stage::Generate, &mut Silent).unwrap();
    let queries = lines(&dir.path().join("run/queries.jsonl"));
    assert_eq!(queries.len(), 12);
    assert!(
        queries
            .iter()
            .all(|q| source_number(q["id"].as_str().unwrap()).is_multiple_of(2))
    );
    let cleaned = lines(&dir.path().join("run/clean.jsonl"));
    assert_eq!(cleaned.len(), 28, "every eligible document judged once");
}

#[test]
fn clean_max_bounds_the_documents_judged() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        config(dir.path(), "clean = true\nclean_max = 10"),
        FakeLlm::new(good_script),
    );
    p.stage(Stage::Clean, &mut Silent).unwrap();
    let report = p.stage(Stage::Generate, &mut Silent).unwrap();
    let judged = lines(&dir.path().join("run/clean.jsonl"));
    assert_eq!(judged.len(), 10);
    let kept = judged.iter().filter(|r| r["keep"] == true).count();
    // Sources are the kept ones only: fewer than the 12 asked for.
    assert_eq!(lines(&dir.path().join("run/queries.jsonl")).len(), kept);
    let clean = report.status.iter().find(|s| s.stage == "clean").unwrap();
    assert_eq!((clean.done, clean.total), (10, 10));
}

#[test]
fn failed_calls_are_marked_and_a_rerun_completes_them_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = FakeLlm::new(|prompt: &str| {
        if prompt.contains("[Begin of Document]")
            && doc_number(&prompt[prompt.find("[Begin of Document]").unwrap()..]).is_multiple_of(4)
        {
            return Err(LlmError::Transient("HTTP 500 (after 6 tries)".into()));
        }
        good_script(prompt)
    });
    let first = pipeline(config(dir.path(), ""), flaky).run_all(&mut Silent).unwrap();
    let annotate = first.status.iter().find(|s| s.stage == "annotate").unwrap().clone();
    assert!(
        annotate.failed > 0 && annotate.done + annotate.failed == annotate.total,
        "{annotate:?}"
    );
    assert_eq!(first.llm["annotate"].failed, annotate.failed);

    let second = pipeline(config(dir.path(), ""), FakeLlm::new(good_script))
        .run_all(&mut Silent)
        .unwrap();
    let annotate = second.status.iter().find(|s| s.stage == "annotate").unwrap();
    assert_eq!((annotate.done, annotate.failed), (annotate.total, 0));
    // One finished record per pair in the state; the file holds the failed tries too.
    let labels = lines(&dir.path().join("run/labels.jsonl"));
    let finished: Vec<&Value> = labels.iter().filter(|l| l.get("error").is_none()).collect();
    let unique: std::collections::HashSet<&str> = finished.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), finished.len());
    assert_eq!(finished.len(), annotate.total);
}

/// A reasoning model: it thinks aloud for 15 words before `good_script`'s answer.
fn thinking_script(prompt: &str) -> Result<String, LlmError> {
    let answer = good_script(prompt)?;
    Ok(format!(
        "<think>{}</think>{answer}",
        "let me consider the passage ".repeat(3)
    ))
}

/// Asserts that every record of a stage file is a failed call flagged as
/// truncated, with none of `fields` (the parsed result).
fn assert_all_truncated(path: &Path, fields: &[&str]) {
    let records = lines(path);
    assert!(!records.is_empty(), "{}", path.display());
    for r in &records {
        let error = r["error"].as_str().unwrap_or_else(|| panic!("not a failed call: {r}"));
        assert!(error.contains("truncated"), "{r}");
        assert_eq!(r["truncated"], true, "{r}");
        for field in fields {
            assert!(r.get(*field).is_none(), "a truncated answer gave '{field}': {r}");
        }
    }
}

#[test]
fn stage_0_records_a_truncated_answer_as_a_failed_call_not_a_dropped_document() {
    let dir = tempfile::tempdir().unwrap();
    let clean = "clean = true\nclean_max = 10";
    // The default 8 tokens cut every answer inside the reasoning block.
    let p = pipeline(config(dir.path(), clean), FakeLlm::new(thinking_script));
    let report = p.stage(Stage::Clean, &mut Silent).unwrap();
    let path = dir.path().join("run/clean.jsonl");
    assert_eq!(lines(&path).len(), 10);
    assert_all_truncated(&path, &["keep", "parse_error"]);
    assert!(
        lines(&path)[0]["error"]
            .as_str()
            .unwrap()
            .contains("[sampling.clean] max_tokens")
    );
    let status = report.status.iter().find(|s| s.stage == "clean").unwrap();
    assert_eq!((status.done, status.failed, status.truncated), (0, 10, 10));
    assert_eq!(
        (report.llm["clean"].truncated, report.llm["clean"].parse_failures),
        (10, 0)
    );
    let md = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(md.contains("| clean | 0 | 10 | 10 | 10 |"), "{md}");

    // With room for the reasoning, the next run judges every one of them.
    let roomy = format!("{clean}\n[sampling.clean]\ntemperature = 0.0\nmax_tokens = 64");
    let llm = FakeLlm::new(thinking_script);
    let p = pipeline(config(dir.path(), &roomy), llm.clone());
    p.stage(Stage::Clean, &mut Silent).unwrap();
    assert_eq!(llm.calls.load(Ordering::SeqCst), 10);
    let judged: Vec<Value> = lines(&path).into_iter().skip(10).collect();
    assert_eq!(judged.len(), 10);
    for r in &judged {
        let n = source_number(r["id"].as_str().unwrap());
        assert_eq!(r["keep"], n.is_multiple_of(2), "{r}");
    }
}

#[test]
fn answers_cut_off_at_max_tokens_give_no_query_q_prime_or_score_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Generation cut at 4 words: no query, so nothing downstream.
    let tight_generate = "[sampling.generate]\ntemperature = 1.0\nmax_tokens = 4";
    pipeline(config(dir.path(), tight_generate), FakeLlm::new(good_script))
        .run_all(&mut Silent)
        .unwrap();
    assert_all_truncated(&run.join("queries.jsonl"), &["query", "parse_error"]);
    assert!(lines(&run.join("candidates.jsonl")).is_empty());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["llm"]["generate"]["truncated"], 12);

    // Queries now; q′ cut at 3 words and annotations at 1: only one-word
    // answers (`<score>2</score>`) are labels.
    let tight =
        "[sampling.reason]\ntemperature = 0.8\nmax_tokens = 3\n[sampling.annotate]\ntemperature = 0.7\nmax_tokens = 1";
    pipeline(config(dir.path(), tight), FakeLlm::new(good_script))
        .run_all(&mut Silent)
        .unwrap();
    assert_all_truncated(&run.join("reasoning.jsonl"), &["reasoning_query", "parse_error"]);
    let labels = lines(&run.join("labels.jsonl"));
    for l in &labels {
        let n: usize = l["doc_id"].as_str().unwrap()[1..].parse().unwrap();
        let one_word = n.is_multiple_of(2) && !n.is_multiple_of(3) && n % 10 != 7;
        if one_word {
            assert_eq!(l["score"], 2, "{l}");
        } else {
            assert!(l.get("score").is_none() && l["truncated"] == true, "{l}");
        }
    }
    assert!(
        lines(&run.join("train/aero.jsonl")).is_empty(),
        "no q′, no training row"
    );

    // The next run with the default limits retries exactly the failed calls.
    let llm = FakeLlm::new(good_script);
    let report = pipeline(config(dir.path(), ""), llm.clone())
        .run_all(&mut Silent)
        .unwrap();
    let truncated_labels = labels.iter().filter(|l| l.get("error").is_some()).count();
    let queries = report.domains["aero"].queries;
    assert_eq!(llm.calls.load(Ordering::SeqCst), queries + truncated_labels);
    for s in &report.status {
        assert_eq!((s.done, s.failed), (s.total, 0), "{s:?}");
    }
    assert!(report.domains["aero"].training.kept > 0);
}

/// The whole corpus is ranked and kept: every document reaches a candidate
/// list unless something keeps it out.
const WIDE: &str = "candidates = 37\ndepth = 37";

fn candidate_lists(run: &Path) -> Vec<Vec<String>> {
    lines(&run.join("candidates.jsonl"))
        .iter()
        .map(|c| serde_json::from_value(c["candidates"].clone()).unwrap())
        .collect()
}

/// The passages of a training row: its positives and negatives.
fn passages(row: &Value) -> Vec<&str> {
    ["pos", "neg"]
        .iter()
        .flat_map(|k| row[*k].as_array().unwrap())
        .map(|p| p.as_str().unwrap())
        .collect()
}

#[test]
fn documents_named_in_exclude_qrels_are_never_mined_unless_the_user_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(config_with(dir.path(), WIDE, ""), FakeLlm::new(good_script));
    p.stage(Stage::Generate, &mut Silent).unwrap();
    p.stage(Stage::Mine, &mut Silent).unwrap();
    let lists = candidate_lists(&dir.path().join("run"));
    assert!(!lists.is_empty());
    for list in &lists {
        // Neither ranked nor padded in: d1 and d2 are the benchmark's.
        assert!(!list.iter().any(|d| d == "d1" || d == "d2"), "{list:?}");
        assert!(list.len() >= 33, "{list:?}");
    }
    for c in lines(&dir.path().join("run/candidates.jsonl")) {
        assert_eq!(c["excluded"], 2, "{c}");
    }
    let report = p.stage(Stage::Format, &mut Silent).unwrap();
    assert_eq!(report.domains["aero"].excluded, 2 * lists.len());

    let dir = tempfile::tempdir().unwrap();
    let opt_out = format!("{WIDE}\nkeep_excluded = true");
    let p = pipeline(config_with(dir.path(), &opt_out, ""), FakeLlm::new(good_script));
    p.stage(Stage::Generate, &mut Silent).unwrap();
    p.stage(Stage::Mine, &mut Silent).unwrap();
    for list in candidate_lists(&dir.path().join("run")) {
        assert!(
            list.iter().any(|d| d == "d1") && list.iter().any(|d| d == "d2"),
            "{list:?}"
        );
    }
}

#[test]
fn formatting_keeps_excluded_documents_out_of_candidates_mined_before_the_exclusion() {
    let dir = tempfile::tempdir().unwrap();
    let opt_out = format!("{WIDE}\nkeep_excluded = true");
    pipeline(config_with(dir.path(), &opt_out, ""), FakeLlm::new(good_script))
        .run_all(&mut Silent)
        .unwrap();
    let train = dir.path().join("run/train/aero.jsonl");
    let benchmark = |row: &Value| passages(row).iter().any(|p| [1, 2].contains(&doc_number(p)));
    assert!(lines(&train).iter().all(benchmark), "the opt-out keeps them");

    // The user drops the opt-out: the mined lists stay, the training rows change.
    let p = pipeline(config_with(dir.path(), WIDE, ""), FakeLlm::new(good_script));
    let training = p.stage(Stage::Format, &mut Silent).unwrap().domains["aero"]
        .training
        .clone();
    let rows = lines(&train);
    assert!(!rows.is_empty());
    assert!(!rows.iter().any(benchmark));
    assert_eq!(training.excluded, 2 * training.queries);
}

#[test]
fn formatting_never_writes_an_empty_passage() {
    let dir = tempfile::tempdir().unwrap();
    pipeline(config_with(dir.path(), WIDE, ""), FakeLlm::new(good_script))
        .run_all(&mut Silent)
        .unwrap();
    // d30 and d33 (positives, never sources) lose their text after mining.
    let config = config_with(dir.path(), WIDE, "");
    let corpus = dir.path().join("corpus.jsonl");
    let edited: String = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(r#""_id":"d33""#))
        .map(|l| match l.contains(r#""_id":"d30""#) {
            true => "{\"_id\":\"d30\",\"text\":\"  \"}\n".to_string(),
            false => format!("{l}\n"),
        })
        .collect();
    assert_eq!(edited.lines().count(), 36);
    std::fs::write(&corpus, edited).unwrap();
    let p = pipeline(config, FakeLlm::new(good_script));
    let training = p.stage(Stage::Format, &mut Silent).unwrap().domains["aero"]
        .training
        .clone();
    let rows = lines(&dir.path().join("run/train/aero.jsonl"));
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(passages(row).iter().all(|p| !p.trim().is_empty()), "{row}");
    }
    assert_eq!(training.empty_passages, 2 * training.queries);
}
