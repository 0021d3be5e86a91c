//! The passage index behind `reasonembed search`: a corpus (a folder of text
//! and Markdown files, or a JSONL file of documents) split into passages and
//! embedded, stored in a directory and updated incrementally — a source whose
//! content is unchanged keeps its vectors; new and changed sources are
//! embedded; deleted ones are dropped.
//!
//! The directory holds `manifest.json` and `embeddings-<generation>.npy`. A
//! new generation's vectors are written first and the manifest that points
//! at them is renamed into place last, so an interrupted update leaves the
//! previous index intact. Passages are embedded through an embedding cache
//! in `pending/` (chunks of 1,024, each written atomically), so a killed
//! build resumes where it stopped; the cache is dropped once the manifest is
//! in place. Damaged vectors (a truncated file, a row count that does not
//! match the manifest, a non-finite value) are detected and rebuilt.
//! The corpus is read by `reasonembed_data::sources`.
//!
//! Beside the vectors the manifest keeps each passage's BM25 terms (the
//! analysed text), so hybrid search needs no second pass over the corpus and
//! an update analyses only new and changed sources; the BM25 statistics are
//! gathered from the stored terms when the index is first searched with BM25.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reasonembed_data::atomic;
use reasonembed_models::{Embedder, EncodeOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bm25::{Bm25Index, Bm25Params, analyze};
use crate::cache::EmbeddingCache;
use crate::error::{Error, Result, io};
use crate::fusion::Fusion;
use crate::passages::split;
use crate::topk::{Hit, search, top_k_of};
use reasonembed_data::Progress;

const MANIFEST: &str = "manifest.json";
/// The resumable embedding cache of a build in progress.
const PENDING: &str = "pending";
const VERSION: u32 = 2;

/// One passage as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredPassage {
    pub line: usize,
    pub text: String,
    /// The passage as BM25 analyses it (absent in indexes of older versions:
    /// filled in by the next update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<Vec<String>>,
}

/// A file of a folder corpus, or a document of a JSONL corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Source {
    /// The file path relative to the corpus folder, or the document id.
    name: String,
    sha256: String,
    passages: Vec<StoredPassage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    corpus: String,
    /// Hash of the model identity and settings; another model means a rebuild.
    model_key: String,
    model: serde_json::Value,
    dim: usize,
    passage_words: usize,
    generation: u64,
    sources: Vec<Source>,
}

/// Passages and vectors of the previous index, by (source name, content hash).
type Reusable<'a> = HashMap<(String, String), (Vec<StoredPassage>, &'a [f32])>;

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateStats {
    pub sources: usize,
    pub passages: usize,
    pub added_or_changed: usize,
    pub removed: usize,
    /// Passages embedded by this update.
    pub embedded_passages: usize,
    /// Passages of an interrupted earlier update, taken from its pending chunks.
    pub resumed_passages: usize,
}

/// A search result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub score: f32,
    pub source: String,
    pub line: usize,
    pub text: String,
}

pub struct PassageIndex {
    manifest: Manifest,
    embeddings: Vec<f32>,
    /// (source, passage) of each embedding row.
    rows: Vec<(usize, usize)>,
    /// Built from the stored terms on the first BM25 search (boxed: most
    /// indexes never build it).
    bm25: std::sync::OnceLock<Box<Bm25Index>>,
}

/// How a query is matched against the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retrieval {
    /// Inner product with the passage vectors.
    Dense,
    /// Dense and BM25 lists, each [`FUSION_DEPTH`] deep (or k if more), fused.
    Hybrid(Fusion),
}

/// How deep each list of a hybrid search goes before fusion.
pub const FUSION_DEPTH: usize = 100;

impl PassageIndex {
    /// Opens the index in `dir` and brings it up to date with `corpus`.
    pub fn update(
        dir: &Path,
        corpus: &Path,
        embedder: &Embedder,
        passage_words: usize,
        batch_size: usize,
        progress: &mut dyn Progress,
    ) -> Result<(Self, UpdateStats)> {
        if passage_words == 0 {
            return Err(Error::Invalid {
                path: corpus.into(),
                message: "passage words must be at least 1".into(),
            });
        }
        let options = EncodeOptions::document().with_batch_size(batch_size);
        let settings = embedder.resolve(&options)?;
        let model = model_settings(embedder)?;
        let model_key = hex::encode(Sha256::digest(format!(
            "{}{}",
            embedder.identity()?,
            serde_json::to_string(&settings).expect("settings serialise")
        )));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        atomic::remove_stale_temps(dir);
        let previous = load(dir);
        let previous_generation = previous.as_ref().map(|(m, _)| m.generation);
        // Another model or passage size makes the old vectors useless.
        let old = previous.filter(|(m, _)| {
            m.model_key == model_key && m.passage_words == passage_words && m.dim == embedder.dimensions()
        });
        let (old_manifest, old_vectors) = match old {
            Some((m, v)) => (Some(m), v),
            None => (None, Vec::new()),
        };
        let dim = embedder.dimensions();
        // Old vectors by source content, to reuse whatever did not change.
        let mut reusable: Reusable = HashMap::new();
        if let Some(m) = &old_manifest {
            let mut offset = 0;
            for s in &m.sources {
                let len = s.passages.len() * dim;
                reusable.insert(
                    (s.name.clone(), s.sha256.clone()),
                    (s.passages.clone(), &old_vectors[offset..offset + len]),
                );
                offset += len;
            }
        }
        let current = reasonembed_data::sources::read(corpus)?;
        let mut stats = UpdateStats {
            sources: current.len(),
            ..Default::default()
        };
        let mut sources = Vec::with_capacity(current.len());
        let mut pending: Vec<(usize, usize)> = Vec::new(); // (source, passage) to embed
        let mut vectors: Vec<Option<Vec<f32>>> = Vec::with_capacity(current.len());
        // An index written before passages kept their BM25 terms.
        let mut upgraded = false;
        for (name, text) in current {
            let sha = hex::encode(Sha256::digest(text.as_bytes()));
            match reusable.remove(&(name.clone(), sha.clone())) {
                Some((mut passages, v)) => {
                    upgraded |= fill_terms(&mut passages);
                    vectors.push(Some(v.to_vec()));
                    sources.push(Source {
                        name,
                        sha256: sha,
                        passages,
                    });
                }
                None => {
                    let passages: Vec<StoredPassage> = split(&text, passage_words)
                        .into_iter()
                        .map(|p| StoredPassage {
                            line: p.line,
                            terms: Some(analyze(&p.text)),
                            text: p.text,
                        })
                        .collect();
                    pending.extend((0..passages.len()).map(|p| (sources.len(), p)));
                    stats.added_or_changed += 1;
                    vectors.push(None);
                    sources.push(Source {
                        name,
                        sha256: sha,
                        passages,
                    });
                }
            }
        }
        // Sources gone from the corpus (a changed source is not "removed").
        let current_names: std::collections::HashSet<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        stats.removed = reusable
            .keys()
            .filter(|(name, _)| !current_names.contains(name.as_str()))
            .count();
        stats.passages = sources.iter().map(|s| s.passages.len()).sum();

        let changed = stats.added_or_changed > 0 || stats.removed > 0 || old_manifest.is_none() || upgraded;
        let texts: Vec<&str> = pending
            .iter()
            .map(|&(s, p)| sources[s].passages[p].text.as_str())
            .collect();
        progress.start("passages", texts.len());
        let pending_dir = dir.join(PENDING);
        let fresh = if texts.is_empty() {
            Vec::new()
        } else {
            let out = EmbeddingCache::new(pending_dir.clone())
                .embed(embedder, &texts, &options, |done, _| progress.update(done))?;
            stats.resumed_passages = out.reused;
            stats.embedded_passages = texts.len() - out.reused;
            out.data
        };
        progress.finish();

        // Assemble rows in source order.
        let mut fresh_rows = fresh.chunks(dim.max(1));
        let mut embeddings = Vec::with_capacity(stats.passages * dim);
        for (source, v) in sources.iter().zip(vectors) {
            match v {
                Some(v) => embeddings.extend_from_slice(&v),
                None => (0..source.passages.len()).for_each(|_| {
                    embeddings.extend_from_slice(fresh_rows.next().expect("one row per pending passage"))
                }),
            }
        }
        let generation = previous_generation.map_or(0, |g| g + u64::from(changed));
        let manifest = Manifest {
            version: VERSION,
            corpus: corpus.display().to_string(),
            model_key,
            model,
            dim,
            passage_words,
            generation,
            sources,
        };
        if changed {
            save(dir, &manifest, &embeddings)?;
        }
        // The vectors are in place: the resumable cache of this build is spent.
        if pending_dir.exists() {
            std::fs::remove_dir_all(&pending_dir).map_err(io(&pending_dir))?;
        }
        Ok((Self::new(manifest, embeddings), stats))
    }

    /// Opens an index as it is, to serve searches (`reasonembed serve --index`).
    pub fn open(dir: &Path) -> Result<Self> {
        let (manifest, embeddings) = load(dir).ok_or_else(|| Error::Invalid {
            path: dir.join(MANIFEST),
            message:
                "no usable index here (missing or damaged): build one with `reasonembed search --corpus … --index DIR`"
                    .into(),
        })?;
        Ok(Self::new(manifest, embeddings))
    }

    fn new(manifest: Manifest, embeddings: Vec<f32>) -> Self {
        let rows = manifest
            .sources
            .iter()
            .enumerate()
            .flat_map(|(s, src)| (0..src.passages.len()).map(move |p| (s, p)))
            .collect();
        Self {
            manifest,
            embeddings,
            rows,
            bm25: std::sync::OnceLock::new(),
        }
    }

    /// The embedder settings the index was built with (`ModelInfo` without its path).
    pub fn model(&self) -> &serde_json::Value {
        &self.manifest.model
    }

    pub fn dimensions(&self) -> usize {
        self.manifest.dim
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every passage with its vector, in index order.
    pub fn passages(&self) -> impl Iterator<Item = (SearchHit, &[f32])> {
        let dim = self.manifest.dim;
        (0..self.rows.len()).map(move |i| {
            let hit = self.hit(Hit {
                index: i as u32,
                score: 0.0,
            });
            (hit, &self.embeddings[i * dim..(i + 1) * dim])
        })
    }

    /// The `k` passages closest to each query vector.
    pub fn search(&self, queries: &[f32], k: usize) -> Vec<Vec<SearchHit>> {
        self.search_with(queries, &[], k, Retrieval::Dense)
    }

    /// The best `k` passages for each query: its vector (one per row of
    /// `vectors`) and, for a hybrid search, its text for BM25.
    pub fn search_with(
        &self,
        vectors: &[f32],
        texts: &[String],
        k: usize,
        retrieval: Retrieval,
    ) -> Vec<Vec<SearchHit>> {
        let dim = self.manifest.dim;
        match retrieval {
            Retrieval::Dense => search(vectors, &self.embeddings, dim, k, &[])
                .into_iter()
                .map(|hits| hits.into_iter().map(|h| self.hit(h)).collect())
                .collect(),
            Retrieval::Hybrid(fusion) => {
                let depth = k.max(FUSION_DEPTH);
                let dense = search(vectors, &self.embeddings, dim, depth, &[]);
                let bm25 = self.bm25();
                let none = std::collections::HashSet::new();
                dense
                    .iter()
                    .zip(texts)
                    .map(|(dense, text)| {
                        let sparse = top_k_of(&bm25.scores(text), depth, &none);
                        fusion
                            .fuse(dense, &sparse, k)
                            .into_iter()
                            .map(|(index, score)| {
                                self.hit(Hit {
                                    index,
                                    score: score as f32,
                                })
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    fn bm25(&self) -> &Bm25Index {
        self.bm25.get_or_init(|| {
            let docs: Vec<std::borrow::Cow<[String]>> = self
                .rows
                .iter()
                .map(|&(s, p)| {
                    let passage = &self.manifest.sources[s].passages[p];
                    match &passage.terms {
                        Some(terms) => std::borrow::Cow::Borrowed(terms.as_slice()),
                        None => std::borrow::Cow::Owned(analyze(&passage.text)),
                    }
                })
                .collect();
            Box::new(Bm25Index::from_analysed(&docs, Bm25Params::default()))
        })
    }

    fn hit(&self, hit: Hit) -> SearchHit {
        let (s, p) = self.rows[hit.index as usize];
        let source = &self.manifest.sources[s];
        SearchHit {
            score: hit.score,
            source: source.name.clone(),
            line: source.passages[p].line,
            text: source.passages[p].text.clone(),
        }
    }
}

/// Analyses the passages that have no BM25 terms yet; whether there were any.
fn fill_terms(passages: &mut [StoredPassage]) -> bool {
    let mut filled = false;
    for p in passages.iter_mut().filter(|p| p.terms.is_none()) {
        p.terms = Some(analyze(&p.text));
        filled = true;
    }
    filled
}

/// The embedder's settings (for people) and its identity key (for checks:
/// a server searching this index must embed queries with the same model).
fn model_settings(embedder: &Embedder) -> Result<serde_json::Value> {
    let mut info = serde_json::to_value(embedder.info()).expect("model info serialises");
    if let Some(o) = info.as_object_mut() {
        o.remove("path");
        o.insert("identity".into(), embedder.identity()?.into());
    }
    Ok(info)
}

fn embeddings_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("embeddings-{generation}.npy"))
}

/// The index in `dir`, or `None` when there is none or it cannot be trusted
/// (unreadable manifest, another format version, vectors that are missing,
/// truncated, of the wrong shape or not finite): the caller rebuilds it.
fn load(dir: &Path) -> Option<(Manifest, Vec<f32>)> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).ok()?;
    let manifest: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{}: unreadable index manifest ({e}); rebuilding", path.display());
            return None;
        }
    };
    if manifest.version != VERSION {
        return None;
    }
    let vectors_path = embeddings_path(dir, manifest.generation);
    let rows: usize = manifest.sources.iter().map(|s| s.passages.len()).sum();
    let vectors = Tensor::read_npy(&vectors_path)
        .ok()
        .filter(|t| t.dims() == [rows, manifest.dim])
        .and_then(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok())
        .filter(|v| v.iter().all(|x| x.is_finite()));
    if vectors.is_none() {
        tracing::warn!(
            "{}: index vectors missing or damaged (expected {rows} × {}); rebuilding",
            vectors_path.display(),
            manifest.dim
        );
    }
    Some((manifest, vectors?))
}

fn save(dir: &Path, manifest: &Manifest, embeddings: &[f32]) -> Result<()> {
    let vectors_path = embeddings_path(dir, manifest.generation);
    let file = atomic::AtomicFile::create(&vectors_path)?;
    let rows = embeddings.len() / manifest.dim.max(1);
    let tensor = Tensor::from_slice(embeddings, (rows, manifest.dim), &Device::Cpu).map_err(|e| Error::Invalid {
        path: vectors_path.clone(),
        message: e.to_string(),
    })?;
    tensor.write_npy(file.temp_path()).map_err(|e| Error::Invalid {
        path: vectors_path.clone(),
        message: e.to_string(),
    })?;
    file.commit()?;
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
    atomic::write(&dir.join(MANIFEST), &json)?;
    // Vectors of earlier generations (or of a damaged index) are no longer referenced.
    let current = embeddings_path(dir, manifest.generation);
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("embeddings-") && name.ends_with(".npy") && entry.path() != current {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
