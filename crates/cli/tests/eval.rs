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

/// The first line where `got` differs from `expected`, if any.
fn first_difference(expected: &str, got: &str) -> Option<String> {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    (0..e.len().max(g.len()))
        .find(|&i| e.get(i) != g.get(i))
        .map(|i| format!("line {}: trec_eval {:?}, ours {:?}", i + 1, e.get(i), g.get(i)))
}

/// Runs the quicktest commands of trec_eval's test suite in `dir` that read
/// formats `eval trec` reads, comparing every output line; returns the
/// expected files it checked.
fn run_quicktest(dir: &std::path::Path) -> Vec<String> {
    let quicktest = std::fs::read_to_string(dir.join("quicktest.txt")).unwrap();
    let mut checked = Vec::new();
    for line in quicktest.lines() {
        let Some((command, expected)) = line.trim().split_once(" | diff - test/") else {
            continue;
        };
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        if args.iter().any(|a| ["-R", "-Z"].contains(a)) {
            continue; // preference / judgement-group formats, z-scores: not implemented
        }
        let files: Vec<PathBuf> = args
            .iter()
            .filter_map(|a| a.strip_prefix("test/"))
            .map(|f| dir.join(f))
            .collect();
        if files.iter().any(|f| !f.exists()) {
            eprintln!("skipping `{command}`: {} lacks its files", dir.display());
            continue;
        }
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.strip_prefix("test/") {
                Some(f) => dir.join(f).to_string_lossy().into_owned(),
                None => a.to_string(),
            })
            .collect();
        let mut full = vec!["eval".to_string(), "trec".to_string()];
        full.extend(args);
        let out = reasonembed(&full.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "`{command}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read_to_string(dir.join(expected)).unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        if let Some(diff) = first_difference(&want, &got) {
            panic!("`{command}` differs from test/{expected} at {diff}");
        }
        checked.push(expected.to_string());
    }
    checked
}

#[test]
fn eval_trec_reproduces_trec_eval_10s_own_test_suite() {
    let expected = [
        "out.test",
        "out.test.a",
        "out.test.aq",
        "out.test.aqc",
        "out.test.aqcM",
        "out.test.aql",
        "out.test.meas_params",
    ];
    let checked = run_quicktest(&repo_root().join("fixtures/trec_eval-test"));
    assert_eq!(checked, expected, "the quicktest commands checked");
    let shared = repo_root().join("../shared/data/trec_eval-test");
    if shared.is_dir() {
        let checked = run_quicktest(&shared);
        assert!(expected.iter().all(|e| checked.iter().any(|c| c == e)), "{checked:?}");
    } else {
        eprintln!("{} is absent: checked the committed copy only", shared.display());
    }
}

#[test]
fn eval_trec_matches_trec_eval_on_generated_cases() {
    let dir = repo_root().join("fixtures/trec_eval-cases");
    let manifest = std::fs::read_to_string(dir.join("cases.tsv")).unwrap();
    let mut cases = 0;
    for line in manifest.lines() {
        let [name, qrels, run, args] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad cases.tsv line {line:?}");
        };
        let mut full = vec!["eval", "trec"];
        full.extend(args.split_whitespace());
        let (qrels, run) = (dir.join(qrels), dir.join(run));
        full.extend([qrels.to_str().unwrap(), run.to_str().unwrap()]);
        let out = reasonembed(&full);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let want = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
        if let Some(diff) = first_difference(&want, &String::from_utf8(out.stdout).unwrap()) {
            panic!("case {name} (`{args}`) differs at {diff}");
        }
        cases += 1;
    }
    assert!(cases >= 15, "{cases} cases");
}

#[test]
fn eval_trec_never_prints_negative_zero() {
    // Query 10 has relevant documents, none in its first five: map_cut_5 is +0,
    // which trec_eval prints as 0.0000.
    let out = reasonembed(&[
        "eval",
        "trec",
        "--qrels",
        "fixtures/trec/qrels.txt",
        "--run",
        "fixtures/trec/run.txt",
        "-q",
        "-m",
        "map_cut.5",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("map_cut_5             \t10\t0.0000\n"), "{stdout}");
    assert!(!stdout.contains("-0.0000"), "{stdout}");
}

/// `eval trec` on the given qrels and run texts: (success, stderr).
fn eval_trec_files(qrels: &str, run: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (q, r) = (dir.path().join("qrels.txt"), dir.path().join("run.txt"));
    std::fs::write(&q, qrels).unwrap();
    std::fs::write(&r, run).unwrap();
    let mut full = vec!["eval", "trec"];
    full.extend(args);
    full.extend([q.to_str().unwrap(), r.to_str().unwrap()]);
    let out = reasonembed(&full);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn eval_trec_reads_its_input_strictly() {
    let qrels = "1 0 a 1\n1 0 b 0\n2 0 c 1\n";
    let bad_runs = [
        ("1 Q0 a 1 0.5 t\n1 Q0 b 2 0.4\n", "run.txt:2: expected 6 fields"),
        ("1 Q0 a\n", "run.txt:1: expected 6 fields"),
        ("1 Q0 a 1 0.5 t\n1 Q0 b 2 nan t\n", "run.txt:2: score"),
        ("1 Q0 a 1 inf t\n", "run.txt:1: score"),
        (
            "1 Q0 a 1 0.5 t\n1 Q0 b 2 0.4 t\n1 Q0 a 3 0.3 t\n",
            "run.txt:3: query 1 retrieves document a again (first at line 1)",
        ),
        ("7 Q0 a 1 0.5 t\n", "no query of the run has judgements in the qrels"),
    ];
    for (run, message) in bad_runs {
        for extra in [&[][..], &["-c"][..]] {
            let (ok, stderr) = eval_trec_files(qrels, run, extra);
            assert!(!ok && stderr.contains(message), "{run:?} {extra:?}: {stderr}");
        }
    }
    let (ok, stderr) = eval_trec_files("1 0 a 1\n1 0 b\n", "1 Q0 a 1 0.5 t\n", &[]);
    assert!(!ok && stderr.contains("qrels.txt:2: expected 4 fields"), "{stderr}");
    let (ok, stderr) = eval_trec_files("1 0 a 1\n1 0 a 0\n", "1 Q0 a 1 0.5 t\n", &[]);
    assert!(
        !ok && stderr.contains("qrels.txt:2: query 1 judges document a again"),
        "{stderr}"
    );
    let (ok, stderr) = eval_trec_files(qrels, "1 Q0 a 1 0.5 t\n", &["-m", "P_5"]);
    assert!(!ok && stderr.contains("did you mean 'P.5'"), "{stderr}");
    let (ok, stderr) = eval_trec_files(qrels, "1 Q0 a 1 0.5 t\n", &["-m", "prefs_simp"]);
    assert!(!ok && stderr.contains("does not implement"), "{stderr}");
    let (ok, _) = eval_trec_files(qrels, "1 Q0 a 1 0.5 t\n", &["-M", "0"]);
    assert!(!ok, "-M 0");
    let (ok, stderr) = eval_trec_files(qrels, "1 Q0 a 1 0.5 t\n# a comment\n", &["-c", "-m", "num_q"]);
    assert!(ok, "{stderr}");
    // trec_eval's format ignores fields after the run tag (its test suite has them): noted.
    let (ok, stderr) = eval_trec_files(qrels, "1 Q0 a 1 0.5 t\n1 Q0 b 2 0.4 t junk here\n", &[]);
    assert!(
        ok && stderr.contains("run.txt:2: 8 fields; those after the sixth"),
        "{stderr}"
    );
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

/// `eval bright` into `dir/<name>` with `extra` flags on the fixture's two tasks.
fn bright_fixture_run(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out_dir = dir.join(name);
    let mut args = vec![
        "eval",
        "bright",
        "--data",
        "fixtures/bright-hub",
        "--tasks",
        "biology,leetcode",
        "--top-k",
        "15",
        "--no-cache",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = reasonembed(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out_dir
}

/// The hybrid run is the fusion of the dense run (with the instruction set)
/// and BM25's (raw queries), both after exclusions: every fused score is what
/// the fusion gives the two runs, best first, the best 15 kept.
#[test]
fn eval_hybrid_fuses_the_dense_and_bm25_runs() {
    use reasonembed_search::fusion::Fusion;
    use reasonembed_search::topk::Hit;
    let dir = tempfile::tempdir().unwrap();
    let dense = bright_fixture_run(dir.path(), "dense", &[]);
    let bm25 = bright_fixture_run(dir.path(), "bm25", &["--model", "bm25"]);
    for spec in ["rrf:60", "zscore:0.7"] {
        let hybrid = bright_fixture_run(dir.path(), spec, &["--hybrid", spec]);
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hybrid.join("results.json")).unwrap()).unwrap();
        assert_eq!(results["model"]["fusion"], spec);
        let fusion = Fusion::parse(spec).unwrap();
        for task in ["biology", "leetcode"] {
            let file = format!("runs/{task}.trec");
            let (d, s, h) = (
                read_trec_run(&dense.join(&file)),
                read_trec_run(&bm25.join(&file)),
                read_trec_run(&hybrid.join(&file)),
            );
            assert!(!h.is_empty());
            for (qid, fused) in &h {
                // Documents numbered in order of appearance; the fusion only needs them distinct.
                let mut ids: Vec<String> = Vec::new();
                let mut hits = |list: &[(String, f64)]| -> Vec<Hit> {
                    list.iter()
                        .map(|(doc, score)| {
                            let index = ids.iter().position(|d| d == doc).unwrap_or_else(|| {
                                ids.push(doc.clone());
                                ids.len() - 1
                            });
                            Hit {
                                index: index as u32,
                                score: *score as f32,
                            }
                        })
                        .collect()
                };
                let (dh, sh) = (hits(&d[qid]), hits(&s[qid]));
                let expected: std::collections::HashMap<&str, f64> = fusion
                    .fuse(&dh, &sh, usize::MAX)
                    .into_iter()
                    .map(|(i, score)| (ids[i as usize].as_str(), score))
                    .collect();
                assert_eq!(fused.len(), 15.min(expected.len()), "{spec} {task} {qid}");
                let mut all: Vec<f64> = expected.values().copied().collect();
                all.sort_by(|a, b| b.total_cmp(a));
                for (rank, (doc, score)) in fused.iter().enumerate() {
                    assert_eq!(expected[doc.as_str()], *score, "{spec} {task} {qid} {doc}");
                    assert_eq!(all[rank], *score, "{spec} {task} {qid}: rank {rank}");
                }
            }
        }
    }
    let bad = reasonembed(&["eval", "beir", "--model", "bm25", "--hybrid", "rrf", "--data", "x"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--hybrid fuses a dense model with BM25"));
    let nan = reasonembed(&["eval", "beir", "--hybrid", "minmax:NaN", "--data", "x"]);
    assert!(String::from_utf8_lossy(&nan.stderr).contains("the dense weight must be in [0, 1]"));
}

/// Cranfield's first `n` judged queries as files in `dir`: (queries, qrels).
fn cranfield_slice(dir: &std::path::Path, n: usize) -> (PathBuf, PathBuf) {
    let data = repo_root().join("../shared/data/cranfield");
    let qrels = std::fs::read_to_string(data.join("qrels/test.tsv")).unwrap();
    let mut lines = qrels.lines();
    let header = lines.next().unwrap();
    let mut ids: Vec<&str> = Vec::new();
    let mut kept = vec![header];
    for line in lines {
        let qid = line.split('\t').next().unwrap();
        if !ids.contains(&qid) {
            ids.push(qid);
        }
        if ids.len() <= n && ids.contains(&qid) {
            kept.push(line);
        }
    }
    ids.truncate(n);
    let queries: Vec<String> = std::fs::read_to_string(data.join("queries.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| {
            let q: serde_json::Value = serde_json::from_str(l).unwrap();
            ids.contains(&q["_id"].as_str().unwrap())
        })
        .map(str::to_string)
        .collect();
    let (q, r) = (dir.join("queries.jsonl"), dir.join("qrels.tsv"));
    std::fs::write(&q, queries.join("\n") + "\n").unwrap();
    std::fs::write(&r, kept.join("\n") + "\n").unwrap();
    (q, r)
}

fn reason_args<'a>(
    queries: &'a std::path::Path,
    qrels: &'a std::path::Path,
    cache: &'a std::path::Path,
    out: &'a std::path::Path,
) -> Vec<&'a str> {
    vec![
        "eval",
        "beir",
        "--corpus",
        "../shared/data/cranfield/corpus.jsonl",
        "--queries",
        queries.to_str().unwrap(),
        "--qrels",
        qrels.to_str().unwrap(),
        "--model",
        "fixtures/models/tiny-bert",
        "--hybrid",
        "rrf",
        "--reason",
        "--reason-max-tokens",
        "24",
        "--reason-cache",
        cache.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]
}

/// Successful answers in a reasoning cache: (query id, record) per line.
fn cached_answers(cache: &std::path::Path) -> Vec<String> {
    let Some(file) = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
    else {
        return Vec::new();
    };
    std::fs::read_to_string(file.path())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r.get("error").is_none())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Query-time reasoning with the embedded LLM (SmolLM2), killed mid-way:
/// the rerun asks only what the first run had not answered, no answer is
/// lost or asked twice, and the result is the uninterrupted run's.
#[test]
fn eval_reason_resumes_after_a_kill_and_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (queries, qrels) = cranfield_slice(dir.path(), 6);
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(reason_args(&queries, &qrels, &cache, &out))
        .current_dir(repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while cached_answers(&cache).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no answers cached");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the kill");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = cached_answers(&cache).len();
    assert!(before < 6, "killed mid-way");

    let resumed = reasonembed(&reason_args(&queries, &qrels, &cache, &out));
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let reasoning = &results["settings"]["reasoning"];
    assert_eq!(reasoning["counts"]["cached"], before as u64, "{reasoning}");
    assert_eq!(reasoning["counts"]["generated"], 6 - before as u64, "{reasoning}");
    assert!(reasoning["llm"].as_str().unwrap().contains("SmolLM2"), "{reasoning}");
    assert!(
        reasoning["prompt"]
            .as_str()
            .unwrap()
            .contains("Identify the essential problem")
    );
    let mut answers = cached_answers(&cache);
    answers.sort();
    answers.dedup();
    assert_eq!(answers.len(), 6);
    assert_eq!(cached_answers(&cache).len(), 6, "no query answered twice");

    let (fresh_cache, fresh_out) = (dir.path().join("fresh-cache"), dir.path().join("fresh-out"));
    let fresh = reasonembed(&reason_args(&queries, &qrels, &fresh_cache, &fresh_out));
    assert!(fresh.status.success(), "{}", String::from_utf8_lossy(&fresh.stderr));
    let a = std::fs::read_to_string(out.join("runs/corpus.trec")).unwrap();
    let b = std::fs::read_to_string(fresh_out.join("runs/corpus.trec")).unwrap();
    assert_eq!(a, b, "the resumed run is the uninterrupted one");
}
