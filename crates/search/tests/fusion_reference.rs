//! Fusion against the reference implementation: every case of
//! `fixtures/goldens/fusion.json` (written by `scripts/fusion_reference.py`)
//! must come out with the same documents, order and f64 scores, bit for bit.

use reasonembed_search::fusion::Fusion;
use reasonembed_search::topk::Hit;

#[derive(serde::Deserialize)]
struct Case {
    fusion: String,
    k: usize,
    dense: Vec<(u32, f32)>,
    bm25: Vec<(u32, f32)>,
    fused: Vec<(u32, u64)>,
}

#[derive(serde::Deserialize)]
struct Goldens {
    cases: Vec<Case>,
}

fn hits(list: &[(u32, f32)]) -> Vec<Hit> {
    list.iter().map(|&(index, score)| Hit { index, score }).collect()
}

#[test]
fn fusion_matches_the_reference_script_bit_for_bit() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens/fusion.json");
    let goldens: Goldens = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(goldens.cases.len() >= 20);
    for (n, case) in goldens.cases.iter().enumerate() {
        let fusion = Fusion::parse(&case.fusion).unwrap();
        let got: Vec<(u32, u64)> = fusion
            .fuse(&hits(&case.dense), &hits(&case.bm25), case.k)
            .into_iter()
            .map(|(i, s)| (i, s.to_bits()))
            .collect();
        assert_eq!(got, case.fused, "case {n} ({})", case.fusion);
    }
}
