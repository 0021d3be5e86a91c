//! BM25 against BRIGHT's own code: `scripts/make_bm25_goldens.py` ran
//! `retrievers.py`'s `retrieval_bm25` (pyserini + gensim) and pytrec_eval on
//! Cranfield and on the BRIGHT-shaped fixture. Our protocol must give the same
//! top 100 per query, rank by rank (ties included: both sides hold the same
//! float32 scores and put tied documents in corpus order, BRIGHT through
//! Python's stable sort of its score dict), scores within 1e-4 and nDCG@10
//! within 1e-4 per query and on average.

use std::path::PathBuf;

use reasonembed_data::BeirDataset;
use reasonembed_data::Silent;
use reasonembed_data::bright::BrightData;
use reasonembed_eval::beir;
use reasonembed_eval::bright::{BrightOptions, evaluate_task, query_config};
use reasonembed_eval::instructions::InstructionSet;
use reasonembed_eval::report::TaskResult;
use reasonembed_eval::retriever::Retriever;
use reasonembed_search::bm25::Bm25Params;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("fixtures/goldens").join(name)).unwrap()).unwrap()
}

/// Largest |score difference| and |nDCG@10 difference| seen.
#[derive(Default, Debug)]
struct Agreement {
    score: f64,
    ndcg: f64,
    bitwise_equal_scores: usize,
    scores: usize,
}

fn compare(name: &str, result: &TaskResult, expected: &Value, agreement: &mut Agreement) {
    assert_eq!(
        result.evaluated_queries as u64,
        expected["evaluated_queries"].as_u64().unwrap(),
        "{name}: evaluated queries"
    );
    let queries = expected["queries"].as_object().unwrap();
    assert_eq!(result.run.len(), queries.len(), "{name}: queries in the run");
    for (qid, q) in queries {
        let ids: Vec<&str> = q["ids"].as_str().unwrap().split(' ').collect();
        let scores: Vec<f64> = q["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        let run = &result.run[qid];
        assert!(run.len() >= ids.len(), "{name}/{qid}: {} results", run.len());
        if ids.len() < 100 {
            assert_eq!(run.len(), ids.len(), "{name}/{qid}: the whole (non-excluded) corpus");
        }
        let ours: Vec<&str> = run.iter().take(ids.len()).map(|(d, _)| d.as_str()).collect();
        assert_eq!(ours, ids, "{name}/{qid}: top {}", ids.len());
        for (rank, ((_, ours), theirs)) in run.iter().zip(&scores).enumerate() {
            let diff = (ours - theirs).abs();
            assert!(diff <= 1e-4, "{name}/{qid} rank {rank}: score {ours} vs {theirs}");
            agreement.score = agreement.score.max(diff);
            agreement.scores += 1;
            if *ours as f32 == *theirs as f32 {
                agreement.bitwise_equal_scores += 1;
            }
        }
        if let Some(theirs) = q.get("ndcg_cut_10") {
            let ours = result.per_query[qid]["ndcg_cut_10"];
            let diff = (ours - theirs.as_f64().unwrap()).abs();
            assert!(diff <= 1e-4, "{name}/{qid}: nDCG@10 {ours} vs {theirs}");
            agreement.ndcg = agreement.ndcg.max(diff);
        }
    }
    let (ours, theirs) = (
        result.metrics["ndcg_cut_10"],
        expected["mean"]["ndcg_cut_10"].as_f64().unwrap(),
    );
    assert!((ours - theirs).abs() <= 1e-4, "{name}: mean nDCG@10 {ours} vs {theirs}");
    eprintln!("{name}: mean nDCG@10 {ours:.6} (BRIGHT's code {theirs:.6})");
}

#[test]
fn cranfield_ranks_and_scores_as_brights_code() {
    let data = root().join("../shared/data/cranfield");
    assert!(
        data.is_dir(),
        "this test needs the team's data folder at {}",
        data.display()
    );
    let golden = golden("bm25-cranfield.json");
    let result = beir::evaluate(
        &Retriever::Bm25(Bm25Params::default()),
        None,
        "cranfield",
        BeirDataset::open(&data, "test").unwrap(),
        &reasonembed_models::Prompt::None,
        1000,
        &mut Silent,
    )
    .unwrap();
    let mut agreement = Agreement::default();
    compare(
        "cranfield",
        &result,
        &golden["collections"]["cranfield"],
        &mut agreement,
    );
    eprintln!("{agreement:?}");
    assert_eq!(
        agreement.bitwise_equal_scores, agreement.scores,
        "float32 scores identical to gensim's"
    );
}

#[test]
fn the_bright_fixture_ranks_and_scores_as_brights_code() {
    let golden = golden("bm25-bright.json");
    let data = BrightData::open(&root().join("fixtures/bright-hub")).unwrap();
    let mut agreement = Agreement::default();
    let retriever = Retriever::Bm25(Bm25Params::default());
    for (name, expected) in golden["collections"].as_object().unwrap() {
        let parts: Vec<&str> = name.split('/').collect();
        let (setting, task) = (parts[1], parts[2]);
        let options = BrightOptions {
            tasks: Vec::new(),
            long: setting == "long",
            queries: query_config(if setting == "gpt4_reason" {
                "gpt4_reason"
            } else {
                "original"
            }),
            // BRIGHT's BM25 takes no instruction.
            instructions: InstructionSet::None,
            top_k: 1000,
        };
        let result = evaluate_task(&retriever, None, &data, task, &options, &mut Silent).unwrap();
        compare(name, &result, expected, &mut agreement);
    }
    eprintln!("{agreement:?}");
    assert_eq!(agreement.bitwise_equal_scores, agreement.scores);
}
