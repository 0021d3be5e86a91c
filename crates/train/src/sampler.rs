//! Batches as ReasonEmbed forms them: one domain per batch; each domain
//! shuffled and cut into batches of its batch size (an incomplete last batch
//! dropped); the batches of all domains shuffled together; and, each time a
//! record is used, one random positive and G − 1 negatives drawn without
//! replacement (the list repeated when it is shorter).
//!
//! Every random choice is a pure function of (seed, epoch, batch, record), so
//! a run resumed at any batch continues exactly as an uninterrupted one.

use reasonembed_models::ops::splitmix64;

use crate::data::Domain;

/// A batch of the epoch's plan: which records of which domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub domain: usize,
    pub records: Vec<usize>,
    pub group: usize,
}

/// A deterministic stream from the parts of a key.
fn stream(parts: &[u64]) -> u64 {
    let mut state = 0x5EED_u64;
    for &p in parts {
        state ^= p;
        splitmix64(&mut state);
    }
    state
}

fn shuffle<T>(items: &mut [T], mut state: u64) {
    for i in (1..items.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The batches of `epoch`, in training order.
pub fn plan_epoch(domains: &[Domain], seed: u64, epoch: u64) -> Vec<PlannedBatch> {
    let mut batches = Vec::new();
    for (d, domain) in domains.iter().enumerate() {
        let (size, group) = (domain.batch_size, domain.group_size);
        let mut order: Vec<usize> = (0..domain.records.len()).collect();
        shuffle(&mut order, stream(&[seed, epoch, d as u64]));
        batches.extend(order.chunks_exact(size.max(1)).map(|c| PlannedBatch {
            domain: d,
            records: c.to_vec(),
            group,
        }));
    }
    shuffle(&mut batches, stream(&[seed, epoch, u64::MAX]));
    batches
}

/// One positive and `group − 1` negatives of a record, for batch `batch` of
/// `epoch`: indices into its `pos` and `neg` lists.
pub fn sample_group(pos: usize, neg: usize, group: usize, key: [u64; 4]) -> (usize, Vec<usize>) {
    let mut state = stream(&key);
    let positive = (splitmix64(&mut state) % pos.max(1) as u64) as usize;
    let wanted = group.saturating_sub(1);
    if wanted == 0 || neg == 0 {
        return (positive, Vec::new());
    }
    // Repeat the list until it is long enough, then draw without replacement.
    let copies = wanted.div_ceil(neg);
    let mut pool: Vec<usize> = (0..copies * neg).map(|i| i % neg).collect();
    shuffle(&mut pool, splitmix64(&mut state));
    pool.truncate(wanted);
    (positive, pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Record;
    use reasonembed_data::Location;

    fn domain(name: &str, n: usize, batch: Option<usize>) -> Domain {
        let record = |i: usize| Record {
            query: format!("{name}{i}"),
            pos: vec!["p".into()],
            neg: vec!["n".into()],
            prompt: None,
            reasoning_query: None,
            train_group_size: Some(2),
            batch_size: batch,
            pos_scores: None,
            neg_scores: None,
            at: Location {
                path: "x".into(),
                line: i + 1,
            },
        };
        Domain {
            name: name.into(),
            records: (0..n).map(record).collect(),
            batch_size: batch.unwrap_or(8),
            group_size: 2,
        }
    }

    #[test]
    fn one_domain_per_batch_incomplete_batches_dropped_and_reshuffled_per_epoch() {
        let domains = vec![domain("a", 10, Some(4)), domain("b", 7, Some(3))];
        let plan = plan_epoch(&domains, 1, 0);
        assert_eq!(plan.len(), 2 + 2);
        for batch in &plan {
            let size = if batch.domain == 0 { 4 } else { 3 };
            assert_eq!((batch.records.len(), batch.group), (size, 2));
        }
        assert_eq!(plan, plan_epoch(&domains, 1, 0), "deterministic");
        assert_ne!(plan, plan_epoch(&domains, 1, 1), "reshuffled each epoch");
    }

    #[test]
    fn negatives_are_drawn_without_replacement_and_repeated_when_short() {
        let (_, negs) = sample_group(3, 10, 8, [1, 2, 3, 4]);
        let mut unique = negs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((negs.len(), unique.len()), (7, 7));
        let (_, short) = sample_group(1, 3, 8, [1, 2, 3, 4]);
        assert_eq!(short.len(), 7);
        for n in 0..3 {
            let count = short.iter().filter(|&&x| x == n).count();
            assert!((2..=3).contains(&count), "each negative used about equally: {short:?}");
        }
        let positives: std::collections::HashSet<usize> =
            (0..50).map(|b| sample_group(5, 0, 1, [9, 0, b, 0]).0).collect();
        assert!(positives.len() > 1, "a random positive each time");
    }
}
