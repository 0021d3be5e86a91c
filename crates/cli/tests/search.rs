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

fn vectors_file(index: &Path) -> PathBuf {
    std::fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("embeddings-"))
        .unwrap()
}

/// Links are followed, a cycle (`a/b -> ../..`) ends instead of hanging, and a
/// file reachable by two paths is indexed once.
#[test]
fn link_cycles_end_and_files_are_indexed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("notes"), dir.path().join("index"));
    std::fs::create_dir_all(corpus.join("a")).unwrap();
    std::fs::write(corpus.join("a/one.md"), "the nasal cycle alternates airflow\n").unwrap();
    std::fs::write(corpus.join("two.md"), "moths circle lamps at night\n").unwrap();
    std::os::unix::fs::symlink("../..", corpus.join("a/b")).unwrap();
    std::os::unix::fs::symlink("two.md", corpus.join("again.md")).unwrap();
    std::os::unix::fs::symlink("missing.md", corpus.join("broken.md")).unwrap();
    let out = search(&corpus, &index, "moths");
    assert!(summary(&out).contains("2 sources, 2 passages"), "{}", summary(&out));
}

/// A vectors file cut short (a full disk, a copy interrupted) is detected and
/// rebuilt, not served.
#[test]
fn a_truncated_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("notes"), dir.path().join("index"));
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("a.md"), "the nasal cycle alternates airflow\n").unwrap();
    std::fs::write(corpus.join("b.md"), "moths circle lamps\n").unwrap();
    let first = search(&corpus, &index, "moths");
    assert!(summary(&first).contains("2 passages embedded"), "{}", summary(&first));
    let vectors = vectors_file(&index);
    let bytes = std::fs::read(&vectors).unwrap();
    std::fs::write(&vectors, &bytes[..bytes.len() - 40]).unwrap();
    // A temporary file of a killed writer (a pid that does not run) is cleaned up too.
    let stale = index.join(".embeddings-9.npy.999999999.AbCdEf.tmp");
    std::fs::write(&stale, "half").unwrap();
    let again = search(&corpus, &index, "moths circle lamps");
    assert!(summary(&again).contains("2 passages embedded"), "{}", summary(&again));
    assert_eq!(hits(&again)[0]["text"], "moths circle lamps");
    assert!(!stale.exists(), "the leftover temporary file is removed");
}

/// A first build killed half-way resumes from its finished chunks.
#[test]
fn a_killed_first_build_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("docs.jsonl"), dir.path().join("index"));
    let docs: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                "{{\"_id\": \"d{i}\", \"text\": \"document number {i} about topic {}\"}}",
                i % 97
            )
        })
        .collect();
    std::fs::write(&corpus, docs.join("\n")).unwrap();
    let model = repo_root().join("fixtures/models/tiny-bert");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["search", "--quiet", "--batch-size", "1", "--model"])
        .arg(&model)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--index")
        .arg(&index)
        .arg("topic")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_chunk = || {
        std::fs::read_dir(index.join("pending")).ok().and_then(|entries| {
            entries
                .flatten()
                .find_map(|e| e.path().join("chunk-000000.npy").exists().then_some(()))
        })
    };
    let started = std::time::Instant::now();
    while first_chunk().is_none() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build finished before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 300, "no chunk written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!index.join("manifest.json").exists(), "the killed build left no index");
    let resumed = search(&corpus, &index, "topic 5");
    let line = summary(&resumed);
    let taken: usize = line
        .split_once(" taken from an interrupted run")
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("nothing resumed: {line}"));
    assert!(taken >= 1024 && taken.is_multiple_of(1024), "{line}");
    assert!(
        line.contains(&format!("{} passages embedded", 20_000 - taken)),
        "{line}"
    );
    assert!(
        !index.join("pending").exists(),
        "the resumable cache is dropped once the index is in place"
    );
}

/// `search --json` with extra flags: the hits of the one query.
fn search_with(corpus: &Path, index: &Path, query: &str, extra: &[&str]) -> (String, Vec<serde_json::Value>) {
    let model = repo_root().join("fixtures/models/tiny-bert");
    let out = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["search", "--json", "-k", "4", "--passage-words", "30", "--model"])
        .arg(model)
        .arg("--corpus")
        .arg(corpus)
        .arg("--index")
        .arg(index)
        .args(extra)
        .arg(query)
        .output()
        .unwrap();
    (summary(&out), hits(&out))
}

fn texts(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter().map(|h| h["text"].as_str().unwrap().to_string()).collect()
}

/// Hybrid search over the folder index: at weight 0 it is BM25 over the
/// passages (the library's BM25 on the same texts), at weight 1 the dense
/// search; BM25 terms are stored with the passages, so an index of an older
/// version gains them without embedding anything again.
#[test]
fn hybrid_search_fuses_bm25_kept_beside_the_vectors() {
    use reasonembed_search::bm25::{Bm25Index, Bm25Params};
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("notes"), dir.path().join("index"));
    std::fs::create_dir_all(&corpus).unwrap();
    let files = [
        (
            "a.md",
            "the nasal cycle alternates airflow between the nostrils every few hours",
        ),
        (
            "b.txt",
            "insects are attracted to artificial light at night, a phototaxis puzzle",
        ),
        (
            "c.txt",
            "gradient descent with momentum converges faster on ill-conditioned problems",
        ),
        (
            "d.txt",
            "moths circle street lamps because they keep the light at a fixed angle",
        ),
        (
            "e.txt",
            "airflow over a wing creates lift; the nasal passage warms the air",
        ),
    ];
    for (name, text) in files {
        std::fs::write(corpus.join(name), text).unwrap();
    }
    let query = "why do moths fly around light";
    let (built, dense) = search_with(&corpus, &index, query, &[]);
    assert!(built.contains("5 passages embedded"), "{built}");
    let (_, dense_only) = search_with(&corpus, &index, query, &["--hybrid", "minmax:1"]);
    assert_eq!(texts(&dense_only), texts(&dense));

    let (summary, bm25_only) = search_with(&corpus, &index, query, &["--hybrid", "minmax:0"]);
    assert!(summary.contains("0 passages embedded"), "{summary}");
    let docs: Vec<&str> = files.iter().map(|f| f.1).collect();
    let scores = Bm25Index::build(&docs, Bm25Params::default()).scores(query);
    let mut expected: Vec<(f32, &str)> = scores.into_iter().zip(docs).collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(texts(&bm25_only)[..2], [expected[0].1, expected[1].1]);

    // An index written before passages kept terms: upgraded in place, nothing re-embedded.
    let manifest = index.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for source in m["sources"].as_array_mut().unwrap() {
        for p in source["passages"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("terms");
        }
    }
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (summary, again) = search_with(&corpus, &index, query, &["--hybrid", "rrf"]);
    assert!(summary.contains("0 passages embedded"), "{summary}");
    let upgraded = std::fs::read_to_string(&manifest).unwrap();
    assert!(upgraded.contains("\"terms\""));
    let (_, rrf) = search_with(&corpus, &index, query, &["--hybrid", "rrf"]);
    assert_eq!(texts(&again), texts(&rrf));
    assert!(texts(&rrf).iter().any(|t| t.contains("moths")));
}
