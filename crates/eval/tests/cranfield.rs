//! Cranfield with the real MiniLM: `reasonembed eval beir` agrees with the
//! committed reference (sentence-transformers + pytrec_eval,
//! `fixtures/goldens/cranfield-minilm.json`, from `scripts/cranfield_reference.py`).
//! Embeds 1,400 documents on first run (a minute or two on 2 cores); later
//! runs reuse the embedding cache.

use std::path::PathBuf;

use reasonembed_data::BeirDataset;
use reasonembed_data::Silent;
use reasonembed_eval::beir;
use reasonembed_eval::retriever::{DenseRetriever, Retriever};
use reasonembed_models::{Embedder, EmbedderOptions};
use reasonembed_search::cache::EmbeddingCache;
use serde_json::Value;

#[test]
fn cranfield_ndcg_matches_the_python_reference() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = root.join("../shared/data/cranfield");
    assert!(
        data.is_dir(),
        "this test needs the team's data folder at {}",
        data.display()
    );
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("fixtures/goldens/cranfield-minilm.json")).unwrap())
            .unwrap();

    let embedder = Embedder::from_spec("minilm", EmbedderOptions::default()).unwrap();
    let cache = EmbeddingCache::new(reasonembed_models::source::cache_dir().join("embeddings"));
    let retriever = Retriever::Dense(Box::new(DenseRetriever {
        embedder,
        cache,
        batch_size: 32,
        query_max_length: None,
        doc_max_length: None,
    }));
    let result = beir::evaluate(
        &retriever,
        None,
        "cranfield",
        BeirDataset::open(&data, "test").unwrap(),
        &reasonembed_models::Prompt::None,
        1000,
        &mut Silent,
    )
    .unwrap();

    assert_eq!(result.evaluated_queries, 225);
    let ours = result.metrics["ndcg_cut_10"];
    let reference = golden["mean"]["ndcg_cut_10"].as_f64().unwrap();
    assert!(
        (ours - reference).abs() < 0.001,
        "nDCG@10 {ours} vs reference {reference}"
    );
    for measure in ["map", "recall_100", "recip_rank"] {
        let (a, b) = (result.metrics[measure], golden["mean"][measure].as_f64().unwrap());
        assert!((a - b).abs() < 0.001, "{measure}: {a} vs {b}");
    }
}
