//! Hybrid retrieval: one ranked list from a dense and a BM25 list.
//!
//! * `rrf:K` — reciprocal-rank fusion (Cormack et al., 2009): a document's
//!   score is `1/(K + rank_dense) + 1/(K + rank_bm25)`, ranks from 1, a list
//!   that misses the document adding nothing. K = 60 by default.
//! * `minmax:W` — each list's scores mapped to [0, 1] by `(s − min)/(max − min)`
//!   (a list of equal scores maps to 1), then `W·dense + (1 − W)·bm25`.
//! * `zscore:W` — each list's scores standardised by `(s − mean)/std`
//!   (population deviation; equal scores map to 0), then interpolated alike.
//!
//! For the interpolations a document missing from one list takes that list's
//! lowest normalised score: it ranked below everything the list kept. Each
//! input list is what its retriever returned (the fusion depth), best first;
//! the fused list is best first with ties broken by the lower document index.
//! Arithmetic is in f64 in the order written above, so
//! `scripts/fusion_reference.py` reproduces every score bit for bit.

use std::collections::HashMap;
use std::fmt;

use crate::topk::Hit;

/// How two ranked lists are fused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    Rrf { k: f64 },
    MinMax { weight: f64 },
    ZScore { weight: f64 },
}

pub const DEFAULT_RRF_K: f64 = 60.0;
pub const DEFAULT_WEIGHT: f64 = 0.5;

impl Fusion {
    /// Parses `rrf`, `rrf:K`, `minmax`, `minmax:W`, `zscore` or `zscore:W`
    /// (W is the dense list's weight, in [0, 1]; K is positive).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, value) = match spec.split_once(':') {
            Some((n, v)) => {
                let v: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("fusion '{spec}': '{v}' is not a number"))?;
                (n.trim(), Some(v))
            }
            None => (spec.trim(), None),
        };
        let fusion = match name {
            "rrf" => Self::Rrf {
                k: value.unwrap_or(DEFAULT_RRF_K),
            },
            "minmax" => Self::MinMax {
                weight: value.unwrap_or(DEFAULT_WEIGHT),
            },
            "zscore" => Self::ZScore {
                weight: value.unwrap_or(DEFAULT_WEIGHT),
            },
            _ => return Err(format!("fusion '{spec}': expected rrf[:K], minmax[:W] or zscore[:W]")),
        };
        match fusion {
            Self::Rrf { k } if !(k.is_finite() && k > 0.0) => Err(format!("fusion '{spec}': K must be > 0")),
            Self::MinMax { weight } | Self::ZScore { weight } if !(0.0..=1.0).contains(&weight) => {
                Err(format!("fusion '{spec}': the dense weight must be in [0, 1]"))
            }
            f => Ok(f),
        }
    }

    /// The fused best `k` of two ranked lists of one query.
    pub fn fuse(&self, dense: &[Hit], bm25: &[Hit], k: usize) -> Vec<(u32, f64)> {
        let mut fused: HashMap<u32, f64> = HashMap::new();
        match *self {
            Self::Rrf { k: rrf_k } => {
                for list in [dense, bm25] {
                    for (rank, hit) in list.iter().enumerate() {
                        *fused.entry(hit.index).or_insert(0.0) += 1.0 / (rrf_k + (rank + 1) as f64);
                    }
                }
            }
            Self::MinMax { weight } | Self::ZScore { weight } => {
                let normalise = if matches!(self, Self::MinMax { .. }) {
                    min_max
                } else {
                    z_score
                };
                let (d, s) = (normalise(dense), normalise(bm25));
                let (d_floor, s_floor) = (lowest(&d), lowest(&s));
                let ids = dense.iter().chain(bm25).map(|h| h.index);
                for id in ids {
                    fused.entry(id).or_insert_with(|| {
                        let dv = d.get(&id).copied().unwrap_or(d_floor);
                        let sv = s.get(&id).copied().unwrap_or(s_floor);
                        weight * dv + (1.0 - weight) * sv
                    });
                }
            }
        }
        let mut ranked: Vec<(u32, f64)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

impl fmt::Display for Fusion {
    /// The spec [`Fusion::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rrf { k } => write!(f, "rrf:{k}"),
            Self::MinMax { weight } => write!(f, "minmax:{weight}"),
            Self::ZScore { weight } => write!(f, "zscore:{weight}"),
        }
    }
}

fn min_max(list: &[Hit]) -> HashMap<u32, f64> {
    let scores = list.iter().map(|h| h.score as f64);
    let min = scores.clone().fold(f64::INFINITY, f64::min);
    let max = scores.fold(f64::NEG_INFINITY, f64::max);
    list.iter()
        .map(|h| {
            let v = if max > min {
                (h.score as f64 - min) / (max - min)
            } else {
                1.0
            };
            (h.index, v)
        })
        .collect()
}

fn z_score(list: &[Hit]) -> HashMap<u32, f64> {
    let n = list.len() as f64;
    let mean = list.iter().map(|h| h.score as f64).sum::<f64>() / n;
    let var = list
        .iter()
        .map(|h| {
            let d = h.score as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    list.iter()
        .map(|h| {
            let v = if std > 0.0 { (h.score as f64 - mean) / std } else { 0.0 };
            (h.index, v)
        })
        .collect()
}

/// The score a list gives what it does not hold (0 for an empty list).
fn lowest(normalised: &HashMap<u32, f64>) -> f64 {
    normalised.values().copied().reduce(f64::min).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(v: &[(u32, f32)]) -> Vec<Hit> {
        v.iter().map(|&(index, score)| Hit { index, score }).collect()
    }

    #[test]
    fn specs_parse_with_defaults_and_bad_ones_are_refused() {
        assert_eq!(Fusion::parse("rrf").unwrap(), Fusion::Rrf { k: 60.0 });
        assert_eq!(Fusion::parse("rrf:10").unwrap(), Fusion::Rrf { k: 10.0 });
        assert_eq!(Fusion::parse("zscore:0.7").unwrap(), Fusion::ZScore { weight: 0.7 });
        assert_eq!(Fusion::parse("minmax").unwrap().to_string(), "minmax:0.5");
        for bad in [
            "rrf:0",
            "rrf:-1",
            "rrf:NaN",
            "minmax:1.5",
            "zscore:NaN",
            "zscore:x",
            "sum",
            "rrf:inf",
        ] {
            assert!(Fusion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rrf_sums_reciprocal_ranks_and_missing_adds_nothing() {
        let dense = hits(&[(1, 0.9), (2, 0.8)]);
        let bm25 = hits(&[(2, 12.0), (3, 5.0)]);
        let fused = Fusion::Rrf { k: 60.0 }.fuse(&dense, &bm25, 10);
        let expect = [(2, 1.0 / 62.0 + 1.0 / 61.0), (1, 1.0 / 61.0), (3, 1.0 / 62.0)];
        assert_eq!(fused, expect);
    }

    #[test]
    fn interpolation_gives_a_missing_document_the_list_floor() {
        let dense = hits(&[(1, 0.9), (2, 0.5), (4, 0.1)]);
        let bm25 = hits(&[(3, 10.0), (2, 0.0)]);
        let fused = Fusion::MinMax { weight: 0.25 }.fuse(&dense, &bm25, 2);
        // 3: dense floor 0, bm25 1 → 0.75; 2: 0.5 and 0 → 0.125; 1: 1 and floor 0 → 0.25.
        assert_eq!(fused, [(3, 0.75), (1, 0.25)]);
        let z = Fusion::ZScore { weight: 1.0 }.fuse(&dense, &[], 3);
        assert_eq!(z.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2, 4]);
        // Equal scores never divide by zero.
        let flat = Fusion::ZScore { weight: 0.5 }.fuse(&hits(&[(7, 1.0), (8, 1.0)]), &[], 5);
        assert_eq!(flat, [(7, 0.0), (8, 0.0)]);
    }
}
