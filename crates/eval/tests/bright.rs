//! BRIGHT: loading the published Hugging Face layout (the parquet fixture that
//! `scripts/make_bright_fixture.py` writes) and the team's JSONL copy of the
//! queries; and the whole protocol on the fixture with the real MiniLM against
//! the reference of `fixtures/goldens/bright-fixture-minilm.json` (sentence-
//! transformers + pytrec_eval following BRIGHT's `run.py`), exclusions, duplicate
//! ids and duplicate texts included.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use reasonembed_data::Silent;
use reasonembed_data::bright::{BrightData, TASKS};
use reasonembed_data::trec::read_qrels;
use reasonembed_eval::bright::{BrightOptions, evaluate_task, query_config};
use reasonembed_eval::instructions::InstructionSet;
use reasonembed_eval::retriever::{DenseRetriever, Retriever};
use reasonembed_models::{Embedder, EmbedderOptions};
use reasonembed_search::bm25::Bm25Params;
use reasonembed_search::cache::EmbeddingCache;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> BrightData {
    BrightData::open(&root().join("fixtures/bright-hub")).unwrap()
}

#[test]
fn reads_the_hub_layout() {
    let data = fixture();
    let bio = data.examples("examples", "biology").unwrap();
    assert_eq!(bio.len(), 8);
    assert_eq!(bio[0].excluded_ids, vec!["N/A"]);
    assert!(!bio[0].gold_ids_long.is_empty());
    let docs = data.documents("biology", false).unwrap();
    assert_eq!(docs.len(), 49, "rows as published, duplicates included");
    assert_eq!(data.documents("biology", true).unwrap().len(), 23);
    assert!(
        data.examples("examples", "theoremqa_theorems")
            .unwrap()
            .iter()
            .all(|e| e.excluded_ids.is_empty())
    );
    let reason = data.examples("gpt4_reason", "leetcode").unwrap();
    let plain = data.examples("examples", "leetcode").unwrap();
    assert_eq!(
        reason.iter().map(|e| &e.id).collect::<Vec<_>>(),
        plain.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    assert_ne!(reason[0].query, plain[0].query);
    let missing = data.documents("leetcode", true).unwrap_err().to_string();
    assert!(
        missing.contains("long_documents") && missing.contains("leetcode"),
        "{missing}"
    );
}

/// The team's copy of BRIGHT's queries and judgements: the published query,
/// gold and exclusion counts, and qrels equal to the shipped (Anserini) qrels files.
#[test]
fn reads_the_local_bright_copy_with_the_published_counts() {
    let dir = root().join("../shared/data/bright");
    assert!(
        dir.is_dir(),
        "this test needs the team's data folder at {}",
        dir.display()
    );
    let data = BrightData::open(&dir).unwrap();
    // (task, queries, gold pairs, long gold pairs, excluded pairs)
    let expected = [
        ("biology", 103, 372, 134, 0),
        ("earth_science", 116, 585, 187, 0),
        ("economics", 103, 800, 109, 0),
        ("psychology", 101, 692, 116, 0),
        ("robotics", 101, 520, 106, 0),
        ("stackoverflow", 117, 478, 129, 0),
        ("sustainable_living", 108, 576, 129, 0),
        ("leetcode", 142, 262, 0, 33_485),
        ("pony", 112, 2_219, 769, 0),
        ("aops", 111, 524, 0, 622_653),
        ("theoremqa_questions", 194, 439, 0, 606_523),
        ("theoremqa_theorems", 76, 151, 0, 0),
    ];
    let mut total = 0;
    for (task, queries, gold, long_gold, excluded) in expected {
        let examples = data.examples("examples", task).unwrap();
        let pairs = |f: fn(&reasonembed_data::bright::Example) -> &Vec<String>| -> BTreeSet<(String, String)> {
            examples
                .iter()
                .flat_map(|e| {
                    f(e).iter()
                        .filter(|d| d.as_str() != "N/A")
                        .map(|d| (e.id.clone(), d.clone()))
                })
                .collect()
        };
        assert_eq!(examples.len(), queries, "{task}: queries");
        assert_eq!(pairs(|e| &e.gold_ids).len(), gold, "{task}: gold pairs");
        assert_eq!(pairs(|e| &e.gold_ids_long).len(), long_gold, "{task}: long gold pairs");
        assert_eq!(pairs(|e| &e.excluded_ids).len(), excluded, "{task}: excluded pairs");
        let shipped = read_qrels(&dir.join("qrels").join(format!("{task}.tsv"))).unwrap();
        let ours: BTreeMap<String, BTreeMap<String, i64>> = examples
            .iter()
            .filter(|e| !e.gold_ids.is_empty())
            .map(|e| (e.id.clone(), e.gold_ids.iter().map(|g| (g.clone(), 1)).collect()))
            .collect();
        assert_eq!(ours, shipped, "{task}: qrels");
        total += queries;
    }
    assert_eq!(total, 1_384);
    assert_eq!(TASKS.len(), 12);
}

fn minilm(cache: EmbeddingCache) -> Retriever {
    let embedder = Embedder::from_spec("minilm", EmbedderOptions::default()).expect("the built-in minilm loads");
    Retriever::Dense(Box::new(DenseRetriever {
        embedder,
        cache,
        batch_size: 16,
        query_max_length: None,
        doc_max_length: None,
    }))
}

fn options(setting: &Value) -> BrightOptions {
    BrightOptions {
        tasks: Vec::new(),
        long: setting["documents_config"] == "long_documents",
        queries: query_config(setting["queries_config"].as_str().unwrap()),
        instructions: InstructionSet::None,
        top_k: 1000,
    }
}

#[test]
fn the_protocol_reproduces_the_reference_on_the_fixture() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/goldens/bright-fixture-minilm.json")).unwrap(),
    )
    .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let retriever = minilm(EmbeddingCache::new(cache_dir.path().to_path_buf()));
    let data = fixture();
    for (name, setting) in golden["settings"].as_object().unwrap() {
        let options = options(setting);
        for (task, expected) in setting["tasks"].as_object().unwrap() {
            let result = evaluate_task(&retriever, None, &data, task, &options, &mut Silent).unwrap();
            assert_eq!(
                result.evaluated_queries as u64,
                expected["evaluated_queries"].as_u64().unwrap(),
                "{name}/{task}"
            );
            for (qid, values) in expected["per_query"].as_object().unwrap() {
                for (measure, value) in values.as_object().unwrap() {
                    let ours = result.per_query[qid][measure];
                    assert!(
                        (ours - value.as_f64().unwrap()).abs() < 1e-6,
                        "{name}/{task}/{qid} {measure}: {ours} vs {value}"
                    );
                }
            }
            // Excluded documents never appear in the run.
            let examples = data.examples(&options.queries, task).unwrap();
            for ex in examples {
                let excluded: HashSet<&String> = ex.excluded_ids.iter().collect();
                assert!(
                    result.run[&ex.id].iter().all(|(doc, _)| !excluded.contains(doc)),
                    "{task}/{}: an excluded id was retrieved",
                    ex.id
                );
            }
        }
    }
    let counts = &golden["tasks"]["biology"];
    let bio = evaluate_task(
        &retriever,
        None,
        &data,
        "biology",
        &options(&golden["settings"]["short"]),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(
        (bio.corpus.rows, bio.corpus.distinct_ids, bio.corpus.id_collisions),
        (
            counts["document_rows"].as_u64().unwrap() as usize,
            counts["distinct_ids"].as_u64().unwrap() as usize,
            counts["id_collisions"].as_u64().unwrap() as usize
        )
    );
}

#[test]
fn a_second_run_reuses_the_cached_corpus_embeddings() {
    let cache_dir = tempfile::tempdir().unwrap();
    let data = fixture();
    let options = BrightOptions {
        tasks: Vec::new(),
        long: false,
        queries: "examples".into(),
        instructions: InstructionSet::ReasonEmbed,
        top_k: 100,
    };
    let first = evaluate_task(
        &minilm(EmbeddingCache::new(cache_dir.path().into())),
        None,
        &data,
        "leetcode",
        &options,
        &mut Silent,
    )
    .unwrap();
    let files = |dir: &std::path::Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap().path();
            for chunk in std::fs::read_dir(&entry).unwrap() {
                let chunk = chunk.unwrap().path();
                out.push((chunk.clone(), std::fs::metadata(&chunk).unwrap().modified().unwrap()));
            }
        }
        out.sort();
        out
    };
    let before = files(cache_dir.path());
    assert_eq!(before.len(), 2, "one entry for the documents, one for the queries");
    let second = evaluate_task(
        &minilm(EmbeddingCache::new(cache_dir.path().into())),
        None,
        &data,
        "leetcode",
        &options,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(files(cache_dir.path()), before, "nothing was embedded again");
    assert_eq!(first.per_query, second.per_query);
}

#[test]
fn bm25_runs_the_same_protocol() {
    let data = fixture();
    let options = BrightOptions {
        tasks: Vec::new(),
        long: false,
        queries: "examples".into(),
        instructions: InstructionSet::None,
        top_k: 1000,
    };
    let result = evaluate_task(
        &Retriever::Bm25(Bm25Params::default()),
        None,
        &data,
        "leetcode",
        &options,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(result.evaluated_queries, 8);
    let ndcg = result.metrics["ndcg_cut_10"];
    assert!(
        ndcg > 0.2 && ndcg <= 1.0,
        "BM25 finds the lexically close examples: {ndcg}"
    );
    for ex in data.examples("examples", "leetcode").unwrap() {
        assert!(result.run[&ex.id].iter().all(|(doc, _)| !ex.excluded_ids.contains(doc)));
    }
}
