//! Published BRIGHT results (nDCG@10 ×100, original queries, short
//! documents), shipped as data so that `--compare` needs no network:
//! the BRIGHT paper's baselines, reasoning-oriented embedders, and the
//! ReasonEmbed paper's Table 2 (`data/published-bright.json`).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct PublishedRow {
    pub name: String,
    pub source: String,
    pub scores: BTreeMap<String, f64>,
    pub average: f64,
}

#[derive(Deserialize)]
struct Table {
    rows: Vec<PublishedRow>,
}

pub fn rows() -> Vec<PublishedRow> {
    let table: Table =
        serde_json::from_str(include_str!("../data/published-bright.json")).expect("the shipped table is valid JSON");
    table.rows
}

/// Rows whose name contains `query`, ignoring case.
pub fn find(query: &str) -> Vec<PublishedRow> {
    let q = query.to_lowercase();
    rows()
        .into_iter()
        .filter(|r| r.name.to_lowercase().contains(&q))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_tables_are_complete_and_consistent() {
        let rows = rows();
        assert!(rows.len() > 30);
        for row in &rows {
            assert_eq!(row.scores.len(), 12, "{}", row.name);
            let mean = row.scores.values().sum::<f64>() / 12.0;
            assert!(
                (mean - row.average).abs() < 0.11,
                "{}: mean {mean:.2} vs published {}",
                row.name,
                row.average
            );
        }
        let bm25 = &find("BM25 (query-side")[0];
        assert_eq!((bm25.scores["biology"], bm25.average), (18.9, 14.5));
    }
}
