//! Stage 2, candidate mining with the source document removed: each query
//! is embedded (in ReasonEmbed's instruction format by default) and searched
//! exactly over its domain's corpus; walking the top `depth` hits in score
//! order, texts equal to the query and documents named in `exclude_qrels`
//! (benchmark documents, unless `[mine] keep_excluded`) are skipped and the
//! first `candidates` kept, padded with random documents (never excluded
//! ones) when fewer survive; then the source
//! document (and any copy of its text) is removed, as the released script
//! does after the cut, so most lists hold `candidates − 1` documents.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use reasonembed_data::Document;
use reasonembed_data::Progress;
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_search::topk;
use serde::Serialize;
use serde_json::json;

use super::fields;
use crate::error::Result;
use crate::run::{QueryItem, Run, Stage, rng};

/// The candidate list of one query, how many of its entries are padding,
/// and how many excluded documents the walk down the ranking skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    pub docs: Vec<usize>,
    pub padded: usize,
    pub excluded: usize,
}

/// Applies the cut, the padding and the source removal to ranked `hits`;
/// no document whose id is in `excluded` is taken.
pub fn select(
    hits: &[usize],
    docs: &[Document],
    query: &str,
    source: usize,
    excluded: &HashSet<String>,
    keep: usize,
    pad: &mut impl rand::Rng,
) -> Candidates {
    let mut chosen = Vec::new();
    let mut skipped = 0;
    for &i in hits.iter().filter(|&&i| docs[i].text != query) {
        if chosen.len() == keep {
            break;
        }
        if excluded.contains(&docs[i].id) {
            skipped += 1;
        } else {
            chosen.push(i);
        }
    }
    let mut padding = HashSet::new();
    if chosen.len() < keep {
        let taken: HashSet<usize> = chosen.iter().copied().collect();
        let mut pool: Vec<usize> = (0..docs.len())
            .filter(|i| !taken.contains(i) && docs[*i].text != query && !excluded.contains(&docs[*i].id))
            .collect();
        pool.shuffle(pad);
        pool.truncate(keep - chosen.len());
        padding.extend(pool.iter().copied());
        chosen.extend(pool);
    }
    let source_text = &docs[source].text;
    chosen.retain(|&i| i != source && &docs[i].text != source_text);
    Candidates {
        padded: chosen.iter().filter(|i| padding.contains(*i)).count(),
        docs: chosen,
        excluded: skipped,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MineStats {
    pub queries: usize,
    pub candidates: usize,
    pub padded: usize,
    pub excluded: usize,
    pub seconds: f64,
}

pub fn run(run: &Run, embedder: &Embedder, cache: &EmbeddingCache, progress: &mut dyn Progress) -> Result<MineStats> {
    let started = std::time::Instant::now();
    let generated = run.open_stage(Stage::Generate)?;
    let mut store = run.open_stage(Stage::Mine)?;
    let mine = &run.config.mine;
    let mut stats = MineStats::default();
    let keep_all = HashSet::new();
    let queries = run.queries(&generated)?;
    for domain in &run.domains {
        let pending: Vec<&QueryItem> = queries
            .iter()
            .filter(|q| q.domain == domain.config.name && !store.is_done(&q.id))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let texts: Vec<&str> = domain.docs.iter().map(|d| d.text.as_str()).collect();
        progress.start(&format!("mine {}: corpus", domain.config.name), texts.len());
        let documents = EncodeOptions::document().with_batch_size(mine.batch_size);
        let corpus = cache.embed(embedder, &texts, &documents, |done, _| progress.update(done))?;
        progress.finish();
        let prompt = if mine.instruct {
            Prompt::Instruction(domain.prompts.instruction.clone())
        } else {
            Prompt::Auto
        };
        let refs: Vec<&str> = pending.iter().map(|q| q.query.as_str()).collect();
        progress.start(&format!("mine {}: queries", domain.config.name), refs.len());
        let queries = EncodeOptions::query(prompt).with_batch_size(mine.batch_size);
        let embedded = embedder.encode(&refs, &queries, |done, _| progress.update(done))?;
        progress.finish();
        let no_exclusions = vec![HashSet::new(); pending.len()];
        let hits = topk::search(&embedded.data, &corpus.data, corpus.dim, mine.depth, &no_exclusions);
        for (item, hits) in pending.iter().zip(hits) {
            let ranked: Vec<usize> = hits.iter().map(|h| h.index as usize).collect();
            let source = domain.by_id[&item.source];
            let excluded = if mine.keep_excluded {
                &keep_all
            } else {
                &domain.excluded
            };
            let chosen = select(
                &ranked,
                &domain.docs,
                &item.query,
                source,
                excluded,
                mine.candidates,
                &mut rng(run.config.seed, &["pad", &item.id]),
            );
            let ids: Vec<&str> = chosen.docs.iter().map(|&i| domain.docs[i].id.as_str()).collect();
            stats.queries += 1;
            stats.candidates += ids.len();
            stats.padded += chosen.padded;
            stats.excluded += chosen.excluded;
            store.append(fields([
                ("id", json!(item.id)),
                ("domain", json!(item.domain)),
                ("candidates", json!(ids)),
                ("padded", json!(chosen.padded)),
                ("excluded", json!(chosen.excluded)),
                ("embedder", json!(embedder.info().path)),
            ]))?;
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn docs(texts: &[&str]) -> Vec<Document> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Document {
                id: format!("d{i}"),
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn cuts_then_removes_the_source_and_query_copies() {
        let d = docs(&["src", "the query", "a", "b", "src", "c"]);
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // Ranked: source first, a copy of the query, a copy of the source text.
        let c = select(&[0, 1, 2, 4, 3, 5], &d, "the query", 0, &HashSet::new(), 3, &mut r);
        assert_eq!(
            c,
            Candidates {
                docs: vec![2],
                padded: 0,
                excluded: 0
            }
        );
    }

    #[test]
    fn pads_with_random_documents_when_the_search_returns_too_few() {
        let d = docs(&["src", "a", "b", "c", "d", "e"]);
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = select(&[1], &d, "q", 0, &HashSet::new(), 4, &mut r);
        assert_eq!(c.docs[0], 1);
        assert!(c.docs.len() >= 3 && c.docs.len() <= 4, "{c:?}");
        assert!(!c.docs.contains(&0));
        let unique: HashSet<_> = c.docs.iter().collect();
        assert_eq!(unique.len(), c.docs.len());
        assert_eq!(c.padded, c.docs.len() - 1);
    }

    #[test]
    fn excluded_documents_are_neither_ranked_in_nor_padded_in() {
        let d = docs(&["src", "a", "gold", "b", "judged", "c"]);
        let excluded: HashSet<String> = ["d2", "d4"].map(String::from).into();
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = select(&[2, 1, 4], &d, "q", 0, &excluded, 5, &mut r);
        assert_eq!(c.excluded, 2);
        let mut kept = c.docs.clone();
        kept.sort();
        assert_eq!(kept, [1, 3, 5], "the source and the excluded ones are out");
        assert_eq!(c.padded, 2);
    }
}
