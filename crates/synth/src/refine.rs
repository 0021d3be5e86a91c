//! `synth refine`: ReMixer's annotator applied to training data you already
//! have. Mined hard negatives are often false negatives (passages that do
//! answer the query); the annotator grades every negative (and optionally
//! every positive) of FlagEmbedding JSONL with its domain's 1–5 rubric, and
//! a negative scored at or above the threshold (3, as stage 4 splits labels)
//! is removed or moved to the positives.
//!
//! The run folder holds `refine.json` (the settings that decide a
//! judgement: a rerun with others is refused, so no judgement is reused
//! under another LLM, prompt or sampling), `judgements.jsonl` (one line per graded pair, appended as it
//! arrives: a killed run resumes; a failed call is retried by the next run),
//! `refined/<domain>.jsonl` (written whole and atomically), `report.json` and
//! `report.md` (counts per domain and examples), and `audit.jsonl` if asked.
//! Every other field of a record is kept as it is; `pos_scores` and
//! `neg_scores`, when present, follow their passages.
//!
//! The input is FlagEmbedding JSONL ([`Input::read`]) or a BEIR collection
//! ([`Input::from_beir`]: judged documents as positives); negatives can be
//! mined anew with an embedder ([`Input::mine_negatives`]), which a BEIR
//! input needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use reasonembed_data::{BeirDataset, Progress, atomic};
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::cache::EmbeddingCache;
use reasonembed_search::topk;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::audit::Audit;
use crate::error::{Error, Result, io};
use crate::llm::{AnswerFormat, Llm, Message, Sampling};
use crate::prompts::{Prompts, fill};
use crate::run::derive_seed;
use crate::runner::{Call, Job, Unfinished, call_all};
use crate::stages::annotate::{MAX_CHARS, parse_score};
use crate::stages::fields;
use crate::store::StageFile;

/// What becomes of a negative the annotator scores as relevant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FalseNegatives {
    Drop,
    ToPositive,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefineOptions {
    pub sampling: Sampling,
    pub false_negatives: FalseNegatives,
    /// Grade the positives too; with `drop_false_positives` those scored
    /// below the threshold are removed (else only reported).
    pub check_positives: bool,
    pub drop_false_positives: bool,
    /// Grade only the first N negatives of each record (mined lists are
    /// ranked, so the hardest); the rest are kept unjudged. None: all.
    pub negatives_per_query: Option<usize>,
    /// Scores at or above this are relevant.
    pub threshold: i64,
    pub seed: u64,
    /// Examples of false negatives shown per domain in the report.
    pub examples: usize,
}

/// One input file: its records by line, and the domain whose rubric grades them.
pub struct Input {
    pub path: PathBuf,
    pub domain: String,
    records: Vec<(usize, Map<String, Value>)>,
}

impl Input {
    /// Training records from a BEIR collection: each judged query (relevance
    /// ≥ `min_relevance`) with its judged documents as positives and no
    /// negatives yet ([`Input::mine_negatives`] finds them).
    pub fn from_beir(source: &Path, dataset: &BeirDataset, domain: &str, min_relevance: i64) -> Self {
        let texts: HashMap<&str, &str> = dataset
            .corpus
            .iter()
            .map(|d| (d.id.as_str(), d.text.as_str()))
            .collect();
        let records = dataset
            .queries
            .iter()
            .enumerate()
            .filter_map(|(n, q)| {
                let judged = dataset.qrels.get(&q.id)?;
                let pos: Vec<&str> = judged
                    .iter()
                    .filter(|&(_, &rel)| rel >= min_relevance)
                    .filter_map(|(doc, _)| texts.get(doc.as_str()).copied())
                    .collect();
                if pos.is_empty() {
                    return None;
                }
                let record = json!({"query": q.text, "pos": pos, "neg": []});
                Some((n + 1, record.as_object().expect("an object").clone()))
            })
            .collect();
        Self {
            path: source.into(),
            domain: domain.into(),
            records,
        }
    }

    /// Replaces every record's negatives by the embedder's best `n`
    /// passages of `corpus` that are neither among its positives nor the
    /// query itself (exact search; corpus vectors through `cache`).
    pub fn mine_negatives(
        &mut self,
        corpus: &[&str],
        embedder: &Embedder,
        cache: &EmbeddingCache,
        n: usize,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        progress.start("refine: corpus", corpus.len());
        let docs = cache.embed(embedder, corpus, &EncodeOptions::document(), |done, _| {
            progress.update(done)
        })?;
        progress.finish();
        let queries: Vec<&str> = self
            .records
            .iter()
            .map(|(_, r)| r["query"].as_str().expect("checked"))
            .collect();
        progress.start("refine: queries", queries.len());
        let embedded = embedder.encode(&queries, &EncodeOptions::query(Prompt::Auto), |done, _| {
            progress.update(done)
        })?;
        progress.finish();
        // Deep enough that n survive dropping the positives and the query
        // (copies of a text anywhere in the corpus included).
        let mut copies: HashMap<&str, usize> = HashMap::new();
        corpus.iter().for_each(|t| *copies.entry(*t).or_default() += 1);
        let mut depth = n;
        let mut skip: Vec<HashSet<&str>> = Vec::with_capacity(self.records.len());
        for (_, r) in &self.records {
            let set: HashSet<&str> = strings(r, "pos")
                .chain([r["query"].as_str().expect("checked")])
                .collect();
            let skipped: usize = set.iter().map(|t| copies.get(t).copied().unwrap_or(0)).sum();
            depth = depth.max(n + skipped);
            skip.push(set);
        }
        let none = vec![HashSet::new(); queries.len()];
        let hits = topk::search(&embedded.data, &docs.data, docs.dim, depth, &none);
        let mined: Vec<Vec<Value>> = hits
            .iter()
            .zip(&skip)
            .map(|(hits, skip)| {
                hits.iter()
                    .map(|h| corpus[h.index as usize])
                    .filter(|t| !skip.contains(t))
                    .take(n)
                    .map(|t| json!(t))
                    .collect()
            })
            .collect();
        for ((_, record), neg) in self.records.iter_mut().zip(mined) {
            record.insert("neg".into(), Value::Array(neg));
            record.remove("neg_scores");
        }
        Ok(())
    }

    /// Every distinct passage of the records, in order of appearance: the
    /// corpus to mine from when none is given.
    pub fn passages(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.records
            .iter()
            .flat_map(|(_, r)| strings(r, "pos").chain(strings(r, "neg")))
            .filter(|p| seen.insert(*p))
            .collect()
    }

    /// The annotation prompt its domain grades with (stage 3's).
    fn rubric(&self) -> String {
        Prompts::for_domain(&self.domain, &self.domain, None).annotate
    }

    /// Reads FlagEmbedding JSONL: every line an object with a string `query`
    /// and string lists `pos` and `neg`; errors name the file, line and field.
    pub fn read(path: &Path, domain: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |message: String| Error::Line {
                path: path.into(),
                line: n + 1,
                message,
            };
            let record: Map<String, Value> =
                serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
            if !record.get("query").is_some_and(Value::is_string) {
                return Err(bad("field 'query': a string is required".into()));
            }
            for field in ["pos", "neg"] {
                let ok = record
                    .get(field)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().all(Value::is_string));
                if !ok {
                    return Err(bad(format!("field '{field}': a list of strings is required")));
                }
                let scores = format!("{field}_scores");
                if let Some(s) = record.get(&scores) {
                    let same = s.as_array().map(Vec::len) == record[field].as_array().map(Vec::len);
                    if !same {
                        return Err(bad(format!(
                            "field '{scores}': one score per '{field}' passage is required"
                        )));
                    }
                }
            }
            records.push((n + 1, record));
        }
        Ok(Self {
            path: path.into(),
            domain: domain.into(),
            records,
        })
    }
}

/// Counts of one domain.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainRefine {
    pub records: usize,
    pub negatives: usize,
    pub false_negatives: usize,
    pub positives_checked: usize,
    pub false_positives: usize,
    /// Pairs without a usable score (a failed call, or no score in the answer): kept as they were.
    pub unjudged: usize,
    /// Scores the embedded annotator had to force (the model gave none in time).
    pub forced: usize,
    /// Records written; the others lost every positive or every negative.
    pub written: usize,
    pub no_positive: usize,
    pub no_negative: usize,
    pub examples: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefineReport {
    pub llm: String,
    pub options: RefineOptions,
    pub domains: BTreeMap<String, DomainRefine>,
    pub calls: usize,
    pub failed_calls: usize,
}

/// Grades every pair not yet graded, then writes the refined files and the report.
pub fn refine(
    inputs: &[Input],
    llm: &dyn Llm,
    llm_identity: &str,
    options: &RefineOptions,
    out: &Path,
    audit: bool,
    progress: &mut dyn Progress,
) -> Result<RefineReport> {
    claim_folder(out, llm_identity, options)?;
    let mut store = StageFile::open(&out.join("judgements.jsonl"))?;
    let audit = audit.then(|| Audit::open(&out.join("audit.jsonl"))).transpose()?;
    let mut jobs: Vec<Job> = Vec::new();
    let mut planned = std::collections::HashSet::new();
    for input in inputs {
        let rubric = input.rubric();
        for (_, record) in &input.records {
            let query = record["query"].as_str().expect("checked at read");
            let sides: &[&str] = if options.check_positives {
                &["neg", "pos"]
            } else {
                &["neg"]
            };
            for side in sides {
                for doc in graded(record, side, options) {
                    let id = pair_key(&rubric, query, doc);
                    let too_long = query.chars().count() > MAX_CHARS || doc.chars().count() > MAX_CHARS;
                    if too_long || store.is_done(&id) || !planned.insert(id.clone()) {
                        continue;
                    }
                    let prompt = fill(&rubric, &[("query", query), ("document", doc)]);
                    jobs.push(Job {
                        seed: derive_seed(options.seed, &["refine", &id]),
                        id,
                        messages: vec![Message::user(prompt)],
                        fields: fields([("domain", json!(input.domain))]),
                    });
                }
            }
        }
    }
    let parse = |_: &Job, answer: &str| {
        let score = parse_score(answer);
        match score {
            -1 => fields([
                ("score", json!(-1)),
                ("parse_error", json!("no score in range 1-5 between <score> tags")),
            ]),
            s => fields([("score", json!(s))]),
        }
    };
    let call = Call {
        stage: "refine",
        sampling: &options.sampling,
        answer: Some(AnswerFormat::Score1to5).filter(|_| options.sampling.constrain),
        unfinished: Unfinished::Fail,
    };
    let stats = call_all(&call, llm, jobs, &mut store, audit.as_ref(), progress, &parse)?;
    let mut domains: BTreeMap<String, DomainRefine> = BTreeMap::new();
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for input in inputs {
        let counts = domains.entry(input.domain.clone()).or_default();
        let lines = files.entry(input.domain.clone()).or_default();
        let rubric = input.rubric();
        for (_, record) in &input.records {
            if let Some(refined) = refine_record(record, &rubric, &store, options, counts) {
                lines.push(serde_json::to_string(&refined).expect("JSON values serialise"));
            }
        }
    }
    let refined_dir = out.join("refined");
    std::fs::create_dir_all(&refined_dir).map_err(io(&refined_dir))?;
    for (domain, lines) in &files {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        atomic::write(&refined_dir.join(format!("{domain}.jsonl")), text.as_bytes())?;
    }
    let report = RefineReport {
        llm: llm.name().into(),
        options: options.clone(),
        domains,
        calls: stats.calls,
        failed_calls: stats.failed,
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
    atomic::write(&out.join("report.json"), &json)?;
    atomic::write(&out.join("report.md"), markdown(&report).as_bytes())?;
    Ok(report)
}

/// A judgement's id: the rubric template (so another domain or another
/// wording of the prompt is another judgement), the query and the passage.
fn pair_key(rubric: &str, query: &str, doc: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [rubric, query, doc] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The passages of `field` that are graded.
fn graded<'a>(record: &'a Map<String, Value>, field: &str, options: &RefineOptions) -> impl Iterator<Item = &'a str> {
    let limit = match field {
        "neg" => options.negatives_per_query.unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    strings(record, field).take(limit)
}

fn strings<'a>(record: &'a Map<String, Value>, field: &str) -> impl Iterator<Item = &'a str> {
    record[field].as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// A passage with its score (if the record has scores for its side).
type Passage = (String, Option<Value>);

fn passages(record: &Map<String, Value>, field: &str) -> Vec<Passage> {
    let scores = record.get(&format!("{field}_scores")).and_then(Value::as_array);
    strings(record, field)
        .enumerate()
        .map(|(i, p)| (p.to_string(), scores.map(|s| s[i].clone())))
        .collect()
}

/// The record with false negatives dropped or moved (and false positives
/// dropped if asked), or None when it is left without a positive or a negative.
fn refine_record(
    record: &Map<String, Value>,
    rubric: &str,
    store: &StageFile,
    options: &RefineOptions,
    counts: &mut DomainRefine,
) -> Option<Map<String, Value>> {
    counts.records += 1;
    let query = record["query"].as_str().expect("checked at read");
    let mut score = |doc: &str| -> Option<i64> {
        let judgement = store
            .get(&pair_key(rubric, query, doc))
            .filter(|r| !r.contains_key("error"));
        counts.forced += usize::from(judgement.is_some_and(|r| r.get("forced") == Some(&Value::Bool(true))));
        let s = judgement.and_then(|r| r["score"].as_i64()).filter(|&s| s > 0);
        counts.unjudged += usize::from(s.is_none());
        s
    };
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let mut found = Vec::new();
    for (doc, s) in passages(record, "pos") {
        let graded = if options.check_positives { score(&doc) } else { None };
        match graded {
            Some(g) if g < options.threshold => {
                found.push(("false_positive", doc.clone(), g));
                if !options.drop_false_positives {
                    pos.push((doc, s));
                }
            }
            _ => pos.push((doc, s)),
        }
    }
    let limit = options.negatives_per_query.unwrap_or(usize::MAX);
    for (i, (doc, s)) in passages(record, "neg").into_iter().enumerate() {
        let graded = if i < limit { score(&doc) } else { None };
        match graded {
            Some(g) if g >= options.threshold => {
                found.push(("false_negative", doc.clone(), g));
                if options.false_negatives == FalseNegatives::ToPositive {
                    pos.push((doc, s));
                }
            }
            _ => neg.push((doc, s)),
        }
    }
    counts.negatives += graded(record, "neg", options).count();
    if options.check_positives {
        counts.positives_checked += strings(record, "pos").count();
    }
    for (kind, doc, g) in found {
        if kind == "false_negative" {
            counts.false_negatives += 1;
            if counts.examples.len() < options.examples {
                counts
                    .examples
                    .push(json!({"query": query, "negative": doc, "score": g}));
            }
        } else {
            counts.false_positives += 1;
        }
    }
    if pos.is_empty() {
        counts.no_positive += 1;
        return None;
    }
    if neg.is_empty() {
        counts.no_negative += 1;
        return None;
    }
    counts.written += 1;
    let mut out = record.clone();
    for (field, list) in [("pos", pos), ("neg", neg)] {
        let scores = format!("{field}_scores");
        if out.contains_key(&scores) {
            out.insert(
                scores,
                Value::Array(list.iter().map(|p| p.1.clone().unwrap_or(Value::Null)).collect()),
            );
        }
        out.insert(
            field.into(),
            Value::Array(list.into_iter().map(|p| Value::String(p.0)).collect()),
        );
    }
    Some(out)
}

/// Records the settings that decide a judgement (the annotator, its
/// sampling, the seed) in `refine.json`, or refuses a folder whose judgements
/// were made under others. The threshold only splits the scores: a rerun
/// with another one asks nothing again.
fn claim_folder(out: &Path, llm_identity: &str, options: &RefineOptions) -> Result<()> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let settings = json!({
        "llm": llm_identity,
        "sampling": options.sampling,
        "seed": options.seed,
    });
    let path = out.join("refine.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let old: Value =
                serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            if old != settings {
                return Err(Error::Config(format!(
                    "{}: this folder holds judgements made with other settings ({old}); refine into a new folder",
                    out.display()
                )));
            }
            Ok(())
        }
        Err(_) => Ok(atomic::write(
            &path,
            &serde_json::to_vec_pretty(&settings).expect("serialises"),
        )?),
    }
}

fn markdown(report: &RefineReport) -> String {
    let mut md = format!(
        "# synth refine\n\nAnnotator: {} · threshold {} · false negatives: {:?} · {} calls ({} failed: run again to retry)\n\n",
        report.llm, report.options.threshold, report.options.false_negatives, report.calls, report.failed_calls
    );
    md.push_str("| domain | records | negatives | false negatives | % | positives checked | false positives | unjudged | forced scores | written |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (name, d) in &report.domains {
        let share = 100.0 * d.false_negatives as f64 / d.negatives.max(1) as f64;
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {share:.1} | {} | {} | {} | {} | {} |\n",
            d.records,
            d.negatives,
            d.false_negatives,
            d.positives_checked,
            d.false_positives,
            d.unjudged,
            d.forced,
            d.written
        ));
    }
    for (name, d) in &report.domains {
        for e in &d.examples {
            let cut = |v: &Value| v.as_str().unwrap_or("").chars().take(200).collect::<String>();
            md.push_str(&format!(
                "\n**{name}**, score {}: query “{}” — negative “{}”\n",
                e["score"],
                cut(&e["query"]),
                cut(&e["negative"])
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use reasonembed_data::Silent;

    use super::*;
    use crate::llm::{Completion, LlmError, Request};

    /// A fake annotator (unit tests only): scores 5 a passage saying
    /// "answer", 1 one saying "junk", fails on "fail", rambles without a
    /// score on "mumble"; counts its calls.
    struct FakeAnnotator {
        calls: AtomicUsize,
    }

    impl Llm for FakeAnnotator {
        fn name(&self) -> &str {
            "fake-annotator"
        }

        fn concurrency(&self) -> usize {
            1
        }

        fn chat(&self, request: &Request) -> std::result::Result<Completion, LlmError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let prompt = &request.messages[0].content;
            let doc = prompt.split("[Begin of Document]").nth(1).unwrap_or(prompt);
            let text = match doc {
                d if d.contains("fail") => return Err(LlmError::Permanent("the fake refuses".into())),
                d if d.contains("answer") => "it answers it <score>5</score>",
                d if d.contains("mumble") => "hmm",
                _ => "unrelated <score>1</score>",
            };
            Ok(Completion {
                text: text.into(),
                ..Default::default()
            })
        }
    }

    /// One `refine` of `input` into `out`, silently.
    fn run(
        input: &Input,
        llm: &FakeAnnotator,
        identity: &str,
        options: &RefineOptions,
        out: &Path,
        audit: bool,
    ) -> Result<RefineReport> {
        refine(
            std::slice::from_ref(input),
            llm,
            identity,
            options,
            out,
            audit,
            &mut Silent,
        )
    }

    fn options(false_negatives: FalseNegatives) -> RefineOptions {
        RefineOptions {
            sampling: Sampling {
                temperature: 0.0,
                top_p: None,
                top_k: None,
                max_tokens: 64,
                prefill: None,
                constrain: true,
            },
            false_negatives,
            negatives_per_query: None,
            check_positives: false,
            drop_false_positives: false,
            threshold: 3,
            seed: 1,
            examples: 2,
        }
    }

    fn write_input(dir: &Path) -> PathBuf {
        let path = dir.join("bio.jsonl");
        let lines = [
            json!({"query": "q1", "pos": ["p answer"], "neg": ["junk a", "an answer too", "mumble"], "neg_scores": [0.1, 0.9, 0.5], "prompt": "Given…"}),
            json!({"query": "q2", "pos": ["junk positive"], "neg": ["the answer"]}),
        ];
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        path
    }

    fn refined(out: &Path) -> Vec<Value> {
        std::fs::read_to_string(out.join("refined/biology.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn false_negatives_are_dropped_or_moved_with_their_scores() {
        let dir = tempfile::tempdir().unwrap();
        let input = Input::read(&write_input(dir.path()), "biology").unwrap();
        let llm = FakeAnnotator {
            calls: AtomicUsize::new(0),
        };
        let out = dir.path().join("drop");
        let report = run(&input, &llm, "fake", &options(FalseNegatives::Drop), &out, false).unwrap();
        let d = &report.domains["biology"];
        assert_eq!((d.negatives, d.false_negatives, d.unjudged), (4, 2, 1));
        // q2 lost its only negative: not written.
        assert_eq!((d.written, d.no_negative), (1, 1));
        let r = refined(&out);
        assert_eq!(r[0]["neg"], json!(["junk a", "mumble"]));
        assert_eq!(r[0]["neg_scores"], json!([0.1, 0.5]));
        assert_eq!(r[0]["prompt"], "Given…", "other fields are kept");
        assert_eq!(d.examples[0]["negative"], "an answer too");
        assert_eq!(llm.calls.load(Ordering::SeqCst), 4);

        let out = dir.path().join("move");
        let mut opts = options(FalseNegatives::ToPositive);
        opts.check_positives = true;
        opts.drop_false_positives = true;
        let report = run(&input, &llm, "fake", &opts, &out, false).unwrap();
        let r = refined(&out);
        assert_eq!(r[0]["pos"], json!(["p answer", "an answer too"]));
        assert_eq!(r[0]["neg_scores"], json!([0.1, 0.5]));
        // q2: its positive is junk (dropped) but its negative answers: moved, then no negative left.
        let d = &report.domains["biology"];
        assert_eq!((d.false_positives, d.no_negative, d.written), (1, 1, 1));
    }

    #[test]
    fn a_rerun_resumes_retries_failures_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(
            &path,
            "{\"query\": \"q\", \"pos\": [\"p\"], \"neg\": [\"fail\", \"junk\"]}\n",
        )
        .unwrap();
        let input = Input::read(&path, "x").unwrap();
        let llm = FakeAnnotator {
            calls: AtomicUsize::new(0),
        };
        let out = dir.path().join("out");
        let opts = options(FalseNegatives::Drop);
        let report = run(&input, &llm, "fake", &opts, &out, true).unwrap();
        assert_eq!((report.calls, report.failed_calls), (2, 1));
        let again = run(&input, &llm, "fake", &opts, &out, true).unwrap();
        assert_eq!(again.calls, 1, "only the failed call is retried");
        assert_eq!(
            std::fs::read_to_string(out.join("audit.jsonl"))
                .unwrap()
                .lines()
                .count(),
            3
        );
        let mut first = options(FalseNegatives::Drop);
        first.negatives_per_query = Some(1);
        let one = run(&input, &llm, "fake", &first, &dir.path().join("one"), false).unwrap();
        assert_eq!(
            (one.calls, one.domains["x"].negatives),
            (1, 1),
            "only the first negative is graded"
        );
        let mut strict = options(FalseNegatives::Drop);
        strict.threshold = 5;
        let resplit = run(&input, &llm, "fake", &strict, &out, false).unwrap();
        assert_eq!(
            resplit.calls, 1,
            "another threshold re-asks only the pair that keeps failing"
        );
        let err = run(&input, &llm, "another-llm", &opts, &out, false).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
    }

    #[test]
    fn bad_records_name_their_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        for (line, field) in [
            ("{\"query\": 1, \"pos\": [], \"neg\": []}", "'query'"),
            ("{\"query\": \"q\", \"pos\": [\"a\", 2], \"neg\": []}", "'pos'"),
            (
                "{\"query\": \"q\", \"pos\": [\"a\"], \"neg\": [\"b\"], \"neg_scores\": []}",
                "'neg_scores'",
            ),
        ] {
            std::fs::write(&path, format!("\n{line}\n")).unwrap();
            let err = Input::read(&path, "d").err().unwrap().to_string();
            assert!(err.contains("bad.jsonl:2") && err.contains(field), "{err}");
        }
    }

    #[test]
    fn beir_judgements_become_positives_and_mined_negatives_skip_them() {
        use reasonembed_data::{Document, Query};
        let doc = |id: &str, text: &str| Document {
            id: id.into(),
            text: text.into(),
        };
        let dataset = BeirDataset {
            corpus: vec![
                doc("d1", "flutter of swept wings"),
                doc("d2", "wing flutter at transonic speed"),
                doc("d3", "heat transfer in pipes"),
                doc("d4", "buckling of shells"),
                doc("d5", "wing flutter at transonic speed"),
            ],
            queries: vec![
                Query {
                    id: "q1".into(),
                    text: "wing flutter at transonic speed".into(),
                },
                Query {
                    id: "q2".into(),
                    text: "unjudged".into(),
                },
            ],
            qrels: [("q1".to_string(), [("d1".to_string(), 2), ("d3".to_string(), 0)].into())].into(),
        };
        let mut input = Input::from_beir(Path::new("cran"), &dataset, "aero", 1);
        assert_eq!(input.records.len(), 1, "only judged queries with a positive");
        assert_eq!(input.records[0].1["pos"], json!(["flutter of swept wings"]));
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert");
        let embedder = Embedder::from_spec(model.to_str().unwrap(), Default::default()).unwrap();
        let corpus: Vec<&str> = dataset.corpus.iter().map(|d| d.text.as_str()).collect();
        input
            .mine_negatives(&corpus, &embedder, &EmbeddingCache::disabled(), 2, &mut Silent)
            .unwrap();
        let neg = input.records[0].1["neg"].as_array().unwrap().clone();
        // Neither the positive nor either copy of the query's own text.
        assert_eq!(neg.len(), 2);
        let mut neg: Vec<&str> = neg.iter().map(|v| v.as_str().unwrap()).collect();
        neg.sort();
        assert_eq!(neg, ["buckling of shells", "heat transfer in pipes"]);
    }
}
