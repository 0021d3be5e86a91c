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
