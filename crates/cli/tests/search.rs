//! `reasonembed search` through the binary: the index is built once and then
//! updated incrementally as files change, appear and disappear.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn search(corpus: &Path, index: &Path, query: &str) -> Output {
    let model = repo_root().join("fixtures/models/tiny-bert");
    Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["search", "--json", "-k", "2", "--passage-words", "20", "--model"])
        .arg(model)
        .arg("--corpus")
        .arg(corpus)
        .arg("--index")
        .arg(index)
        .arg(query)
        .output()
        .unwrap()
}

fn summary(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .find(|l| l.starts_with("index "))
        .unwrap_or_default()
        .to_string()
}

fn hits(out: &Output) -> Vec<serde_json::Value> {
    let line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap().to_string();
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    parsed["hits"].as_array().unwrap().clone()
}

#[test]
fn the_index_follows_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("notes"), dir.path().join("index"));
    std::fs::create_dir_all(corpus.join("sub")).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "# Nostrils\nthe nasal cycle alternates airflow between nostrils\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("sub/b.txt"),
        "insects are attracted to artificial light at night\n",
    )
    .unwrap();
    std::fs::write(corpus.join("ignored.bin"), "not text").unwrap();

    let first = search(&corpus, &index, "the nasal cycle alternates airflow between nostrils");
    assert!(
        summary(&first).contains("2 sources, 2 passages (2 new or changed, 0 removed, 2 passages embedded)"),
        "{}",
        summary(&first)
    );
    let top = &hits(&first)[0];
    assert_eq!(top["source"], "a.md");
    assert_eq!(top["line"], 1);

    let again = search(&corpus, &index, "light");
    assert!(
        summary(&again).contains("(0 new or changed, 0 removed, 0 passages embedded)"),
        "{}",
        summary(&again)
    );

    std::fs::write(corpus.join("sub/b.txt"), "moths circle lamps\n\nbirds read the stars\n").unwrap();
    std::fs::write(corpus.join("c.md"), "linked lists in rust").unwrap();
    let changed = search(&corpus, &index, "moths circle lamps");
    assert!(
        summary(&changed).contains("3 sources, 3 passages (2 new or changed, 0 removed, 2 passages embedded)"),
        "{}",
        summary(&changed)
    );
    assert_eq!(
        hits(&changed)[0]["source"],
        format!("sub{}b.txt", std::path::MAIN_SEPARATOR)
    );

    std::fs::remove_file(corpus.join("a.md")).unwrap();
    let removed = search(&corpus, &index, "nostrils");
    assert!(
        summary(&removed).contains("2 sources, 2 passages (0 new or changed, 1 removed, 0 passages embedded)"),
        "{}",
        summary(&removed)
    );
    assert!(hits(&removed).iter().all(|h| h["source"] != "a.md"));
    // Exactly one generation of vectors is kept.
    let vectors = std::fs::read_dir(&index)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("embeddings-")
        })
        .count();
    assert_eq!(vectors, 1);
}

#[test]
fn jsonl_corpora_and_missing_corpora() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("docs.jsonl");
    std::fs::write(&corpus, "{\"_id\": \"d1\", \"title\": \"Birds\", \"text\": \"birds migrate by the stars\"}\n{\"_id\": 2, \"text\": \"rust ownership rules\"}\n").unwrap();
    let out = search(&corpus, &dir.path().join("index"), "rust ownership rules");
    assert_eq!(hits(&out)[0]["source"], "2");

    let missing = search(&dir.path().join("nope"), &dir.path().join("index2"), "x");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("corpus not found"));
}
