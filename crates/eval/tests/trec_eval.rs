//! Our metrics against pytrec_eval (trec_eval 9.0.8) on seven hand-made
//! nDCG test vectors (ties, graded gains, query overlap) and seeded random cases with ties, graded and
//! zero judgements, negative scores and partial query overlap
//! (`fixtures/goldens/trec_eval.json`, from `scripts/make_trec_goldens.py`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use reasonembed_eval::metrics::{Measure, PerQuery, Qrels, Run, evaluate};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    measures: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    qrels: Qrels,
    run: BTreeMap<String, BTreeMap<String, f64>>,
    expected: PerQuery,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_measure_matches_pytrec_eval() {
    let golden: Golden =
        serde_json::from_str(&std::fs::read_to_string(root().join("fixtures/goldens/trec_eval.json")).unwrap())
            .unwrap();
    let measures: Vec<Measure> = golden
        .measures
        .iter()
        .flat_map(|m| Measure::parse(m).unwrap())
        .collect();
    assert!(golden.cases.len() >= 15);
    for case in golden.cases {
        let run: Run = case
            .run
            .into_iter()
            .map(|(q, docs)| (q, docs.into_iter().collect()))
            .collect();
        let ours = evaluate(&case.qrels, &run, &measures).unwrap();
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            case.expected.keys().collect::<Vec<_>>(),
            "{}: evaluated queries",
            case.name
        );
        for (qid, expected) in &case.expected {
            for (measure, value) in expected {
                let got = ours[qid][measure];
                assert!(
                    (got - value).abs() < 1e-9,
                    "{} {qid} {measure}: ours {got}, pytrec_eval {value}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn duplicate_documents_in_a_run_are_an_error() {
    let run: Run = BTreeMap::from([("q".to_string(), vec![("d".to_string(), 1.0), ("d".to_string(), 0.5)])]);
    let qrels: Qrels = BTreeMap::from([("q".to_string(), BTreeMap::from([("d".to_string(), 1)]))]);
    assert!(
        evaluate(&qrels, &run, &[Measure::Map])
            .unwrap_err()
            .contains("retrieved twice")
    );
}

#[test]
fn measure_specs_parse_like_trec_eval() {
    assert_eq!(
        Measure::parse("ndcg_cut.5,10").unwrap(),
        vec![Measure::NdcgCut(5), Measure::NdcgCut(10)]
    );
    assert_eq!(Measure::parse("P_5").unwrap(), vec![Measure::Precision(5)]);
    assert_eq!(Measure::parse("recall").unwrap().len(), 9);
    assert_eq!(Measure::parse("recip_rank").unwrap(), vec![Measure::RecipRank]);
    assert!(Measure::parse("bpref").is_err());
    assert!(Measure::parse("P.0").is_err());
}
