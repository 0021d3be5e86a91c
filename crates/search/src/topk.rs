//! Exact top-k inner-product search: the corpus is scored in blocks by a
//! matrix product (queries × block) and each query keeps its best k with a
//! threshold-pruned candidate buffer, so memory stays bounded (one score block
//! per thread) whatever the corpus size, and nearly every score is rejected
//! by a single comparison.
//!
//! Ties are broken by the lower document index, so results are deterministic
//! and independent of the number of threads. Per-query exclusions are applied
//! before the cut: an excluded document never takes a slot.

use std::collections::HashSet;

use rayon::prelude::*;

/// A retrieved document: its row in the corpus and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: u32,
    pub score: f32,
}

/// Documents per block: a 150-query block of scores is then about 5 MB.
const BLOCK: usize = 8192;

/// Better first: higher score, then lower index.
fn better(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.index.cmp(&b.index))
}

/// The best `k` hits seen so far for one query.
#[derive(Debug, Clone)]
struct TopK {
    k: usize,
    buffer: Vec<Hit>,
    /// No hit below this score can enter any more.
    threshold: f32,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            buffer: Vec::with_capacity(2 * k),
            threshold: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, hit: Hit) {
        if hit.score < self.threshold {
            return;
        }
        self.buffer.push(hit);
        if self.buffer.len() >= 2 * self.k.max(1) {
            self.compact();
        }
    }

    /// Keeps the best k and raises the threshold to the k-th score.
    fn compact(&mut self) {
        if self.buffer.len() > self.k {
            self.buffer.select_nth_unstable_by(self.k, better);
            self.buffer.truncate(self.k);
        }
        if self.buffer.len() == self.k && self.k > 0 {
            self.threshold = self.buffer.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for hit in other.buffer {
            self.offer(hit);
        }
        self
    }

    fn finish(mut self) -> Vec<Hit> {
        self.buffer.sort_unstable_by(better);
        self.buffer.truncate(self.k);
        self.buffer
    }
}

/// `out[q·n + j] = queries[q] · docs[j]` for row-major `queries: [m, dim]`
/// and `docs: [n, dim]`.
fn score_block(queries: &[f32], docs: &[f32], dim: usize, out: &mut [f32]) {
    let (m, n) = (queries.len() / dim, docs.len() / dim);
    assert!(
        queries.len() == m * dim && docs.len() == n * dim && out.len() == m * n,
        "score_block: inconsistent shapes"
    );
    // SAFETY: the asserts above bound every access: dst is m×n row-major
    // (column stride 1, row stride n), lhs m×dim row-major, rhs dim×n read
    // from the row-major docs (row stride 1, column stride dim).
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            queries.as_ptr(),
            1,
            dim as isize,
            docs.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The best `k` documents of `docs` (row-major `[n, dim]`) for every query
/// (row-major `[m, dim]`), by inner product, best first. `exclusions` is
/// empty or holds one set of document rows per query.
pub fn search(queries: &[f32], docs: &[f32], dim: usize, k: usize, exclusions: &[HashSet<u32>]) -> Vec<Vec<Hit>> {
    assert!(
        dim > 0 && queries.len().is_multiple_of(dim) && docs.len().is_multiple_of(dim),
        "search: vectors must have {dim} dimensions"
    );
    let (m, n) = (queries.len() / dim, docs.len() / dim);
    assert!(
        exclusions.is_empty() || exclusions.len() == m,
        "search: one exclusion set per query"
    );
    assert!(n <= u32::MAX as usize, "search: at most 2³² documents");
    let empty = HashSet::new();
    let excluded = |q: usize| if exclusions.is_empty() { &empty } else { &exclusions[q] };

    let blocks: Vec<(usize, &[f32])> = docs
        .chunks(BLOCK * dim)
        .enumerate()
        .map(|(b, c)| (b * BLOCK, c))
        .collect();
    let fresh = || (vec![TopK::new(k); m], Vec::new());
    let (tops, _) = blocks
        .par_iter()
        .fold(fresh, |(mut tops, mut scores), &(start, block)| {
            let len = block.len() / dim;
            scores.resize(m * len, 0.0);
            score_block(queries, block, dim, &mut scores);
            for (q, top) in tops.iter_mut().enumerate() {
                let skip = excluded(q);
                for (j, &score) in scores[q * len..(q + 1) * len].iter().enumerate() {
                    let index = (start + j) as u32;
                    if score >= top.threshold && !skip.contains(&index) {
                        top.offer(Hit { index, score });
                    }
                }
            }
            (tops, scores)
        })
        .reduce(fresh, |(a, s), (b, _)| {
            (a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect(), s)
        });
    tops.into_iter().map(TopK::finish).collect()
}

/// The best `k` of one query's dense `scores` (e.g. BM25 over a corpus).
pub fn top_k_of(scores: &[f32], k: usize, excluded: &HashSet<u32>) -> Vec<Hit> {
    let mut top = TopK::new(k);
    for (i, &score) in scores.iter().enumerate() {
        if score >= top.threshold && !excluded.contains(&(i as u32)) {
            top.offer(Hit { index: i as u32, score });
        }
    }
    top.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: score everything, sort, cut.
    fn brute(queries: &[f32], docs: &[f32], dim: usize, k: usize, exclusions: &[HashSet<u32>]) -> Vec<Vec<Hit>> {
        queries
            .chunks(dim)
            .enumerate()
            .map(|(q, qv)| {
                let mut hits: Vec<Hit> = docs
                    .chunks(dim)
                    .enumerate()
                    .filter(|(j, _)| exclusions.is_empty() || !exclusions[q].contains(&(*j as u32)))
                    .map(|(j, d)| Hit {
                        index: j as u32,
                        score: qv.iter().zip(d).map(|(a, b)| a * b).sum(),
                    })
                    .collect();
                hits.sort_by(better);
                hits.truncate(k);
                hits
            })
            .collect()
    }

    /// Deterministic pseudo-random values in [-1, 1) (a 64-bit LCG).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_across_blocks_with_exclusions() {
        let dim = 16;
        let (queries, docs) = (values(5 * dim, 1), values((2 * BLOCK + 123) * dim, 2));
        let exclusions: Vec<HashSet<u32>> = (0..5)
            .map(|q| (0..50).map(|i| (i * 97 + q * 13) as u32).collect())
            .collect();
        for k in [1, 10, 1000] {
            let ours = search(&queries, &docs, dim, k, &exclusions);
            let reference = brute(&queries, &docs, dim, k, &exclusions);
            for (a, b) in ours.iter().zip(&reference) {
                assert_eq!(
                    a.iter().map(|h| h.index).collect::<Vec<_>>(),
                    b.iter().map(|h| h.index).collect::<Vec<_>>()
                );
                for (x, y) in a.iter().zip(b) {
                    assert!((x.score - y.score).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_lower_index_and_excluded_never_take_a_slot() {
        // Four identical documents: the tie is broken by index.
        let docs = vec![1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let hits = search(&[1.0, 0.0], &docs, 2, 2, &[HashSet::from([0])]);
        assert_eq!(hits[0].iter().map(|h| h.index).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn returns_fewer_hits_than_k_on_small_corpora() {
        let hits = search(&[1.0], &[0.5, 0.25, 2.0], 1, 10, &[]);
        assert_eq!(hits[0].iter().map(|h| h.index).collect::<Vec<_>>(), vec![2, 0, 1]);
        assert_eq!(
            top_k_of(&[0.5, 0.25, 2.0], 2, &HashSet::from([2]))
                .iter()
                .map(|h| h.index)
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
    }
}
