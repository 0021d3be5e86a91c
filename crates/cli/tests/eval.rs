//! `reasonembed eval` through the binary: a drop-in for trec_eval, and the
//! BRIGHT protocol with its outputs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reasonembed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

#[test]
fn eval_trec_prints_what_trec_eval_prints() {
    let out = reasonembed(&[
        "eval",
        "trec",
        "--qrels",
        "fixtures/trec/qrels.txt",
        "--run",
        "fixtures/trec/run.txt",
        "-q",
        "-m",
        "ndcg_cut.10",
        "-m",
        "recall.100",
        "-m",
        "P.5",
        "-m",
        "recip_rank",
        "-m",
        "map",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = std::fs::read_to_string(repo_root().join("fixtures/trec/expected.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn eval_bright_writes_results_runs_and_comparisons() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = reasonembed(&[
        "eval",
        "bright",
        "--model",
        "bm25",
        "--data",
        "fixtures/bright-hub",
        "--tasks",
        "biology,leetcode",
        "--out",
        out_dir.to_str().unwrap(),
        "--compare",
        "BM25 (query-side",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| model | Bio | Leet | Avg |"), "{stdout}");
    assert!(
        stdout.contains("BM25 (query-side, gensim)") && stdout.contains("18.9"),
        "{stdout}"
    );

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["tasks"][0]["task"], "biology");
    assert_eq!(results["tasks"][0]["corpus"]["id_collisions"], 1);
    assert_eq!(results["settings"]["top_k"], 1000);
    let mean = (results["tasks"][0]["metrics"]["ndcg_cut_10"].as_f64().unwrap()
        + results["tasks"][1]["metrics"]["ndcg_cut_10"].as_f64().unwrap())
        / 2.0;
    assert!(
        (results["average"]["ndcg_cut_10"].as_f64().unwrap() - mean).abs() < 1e-12,
        "unweighted mean over tasks"
    );

    // The leetcode run holds none of each query's excluded ids.
    let data = reasonembed_data::bright::BrightData::open(&repo_root().join("fixtures/bright-hub")).unwrap();
    let excluded: std::collections::HashSet<(String, String)> = data
        .examples("examples", "leetcode")
        .unwrap()
        .into_iter()
        .flat_map(|e| e.excluded_ids.into_iter().map(move |d| (e.id.clone(), d)))
        .collect();
    let run = std::fs::read_to_string(out_dir.join("runs/leetcode.trec")).unwrap();
    let corpus: std::collections::HashSet<String> = data
        .documents("leetcode", false)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let retrievable = 8 * corpus.len() - excluded.iter().filter(|(_, d)| corpus.contains(d)).count();
    assert_eq!(
        run.lines().count(),
        retrievable,
        "every non-excluded document, for each query"
    );
    for line in run.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(
            !excluded.contains(&(fields[0].to_string(), fields[2].to_string())),
            "{line}"
        );
    }
    assert!(out_dir.join("results.md").exists());
}

#[test]
fn eval_bright_without_a_corpus_says_so() {
    let shared = repo_root().join("../shared/data/bright");
    assert!(
        shared.is_dir(),
        "this test needs the team's data folder at {}",
        shared.display()
    );
    let out = reasonembed(&[
        "eval",
        "bright",
        "--model",
        "bm25",
        "--data",
        shared.to_str().unwrap(),
        "--tasks",
        "pony",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no 'documents' folder") && stderr.contains("pony"),
        "{stderr}"
    );
}

/// Reads `runs/<task>.trec`: per query, the ranked (document, score) list.
fn read_trec_run(path: &std::path::Path) -> std::collections::HashMap<String, Vec<(String, f64)>> {
    let mut run: std::collections::HashMap<String, Vec<(String, f64)>> = std::collections::HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), f[4].parse().unwrap()));
    }
    run
}

/// The run and per-query nDCG@10 of `results.json` against a collection of
/// `fixtures/goldens/bm25-*.json` (BRIGHT's own BM25 code): the same top 100
/// rank by rank, scores and nDCG@10 within 1e-4.
fn assert_matches_bm25_golden(out_dir: &std::path::Path, task_index: usize, task: &str, expected: &serde_json::Value) {
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    let result = &results["tasks"][task_index];
    assert_eq!(result["task"], task);
    let run = read_trec_run(&out_dir.join("runs").join(format!("{task}.trec")));
    for (qid, q) in expected["queries"].as_object().unwrap() {
        let ids: Vec<&str> = q["ids"].as_str().unwrap().split(' ').collect();
        let ours = &run[qid];
        let ours_ids: Vec<&str> = ours.iter().take(ids.len()).map(|(d, _)| d.as_str()).collect();
        assert_eq!(ours_ids, ids, "{task}/{qid}");
        for ((_, s), theirs) in ours.iter().zip(q["scores"].as_array().unwrap()) {
            assert!(
                (s - theirs.as_f64().unwrap()).abs() <= 1e-4,
                "{task}/{qid}: {s} vs {theirs}"
            );
        }
        if let Some(theirs) = q.get("ndcg_cut_10") {
            let ours = result["per_query"][qid]["ndcg_cut_10"].as_f64().unwrap();
            assert!(
                (ours - theirs.as_f64().unwrap()).abs() <= 1e-4,
                "{task}/{qid}: nDCG@10 {ours} vs {theirs}"
            );
        }
    }
    let (ours, theirs) = (
        result["metrics"]["ndcg_cut_10"].as_f64().unwrap(),
        expected["mean"]["ndcg_cut_10"].as_f64().unwrap(),
    );
    assert!((ours - theirs).abs() <= 1e-4, "{task}: mean nDCG@10 {ours} vs {theirs}");
}

#[test]
fn eval_bm25_reproduces_brights_own_code() {
    let dir = tempfile::tempdir().unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("fixtures/goldens/bm25-bright.json")).unwrap())
            .unwrap();
    let bright_out = dir.path().join("bright");
    // No --instructions: BM25 runs without one, as in BRIGHT.
    let out = reasonembed(&[
        "eval",
        "bright",
        "--model",
        "bm25",
        "--data",
        "fixtures/bright-hub",
        "--tasks",
        "biology,leetcode,theoremqa_theorems",
        "--out",
        bright_out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (i, task) in ["biology", "leetcode", "theoremqa_theorems"].iter().enumerate() {
        assert_matches_bm25_golden(
            &bright_out,
            i,
            task,
            &golden["collections"][format!("bright/short/{task}")],
        );
    }

    let cranfield = repo_root().join("../shared/data/cranfield");
    assert!(
        cranfield.is_dir(),
        "this test needs the team's data folder at {}",
        cranfield.display()
    );
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("fixtures/goldens/bm25-cranfield.json")).unwrap(),
    )
    .unwrap();
    let beir_out = dir.path().join("beir");
    let out = reasonembed(&[
        "eval",
        "beir",
        "--model",
        "bm25",
        "--data",
        cranfield.to_str().unwrap(),
        "--out",
        beir_out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_matches_bm25_golden(&beir_out, 0, "cranfield", &golden["collections"]["cranfield"]);
}
