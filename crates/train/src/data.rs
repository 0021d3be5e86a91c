//! Training data in FlagEmbedding's JSONL format, one file per domain:
//! `{"query", "pos": [...], "neg": [...]}` plus the optional `prompt`,
//! `reasoning_query` (Redapter's q′), `train_group_size`, `batch_size`,
//! `pos_scores` and `neg_scores`. The ReasonEmbed release layout
//! (`<task>-formatted.jsonl`, twelve files) loads as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reasonembed_data::jsonl::{for_each_object, string_field, string_list};
use reasonembed_data::{DataError, Location};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub query: String,
    pub pos: Vec<String>,
    pub neg: Vec<String>,
    /// The query instruction of this record (FlagEmbedding's `prompt`).
    pub prompt: Option<String>,
    pub reasoning_query: Option<String>,
    pub train_group_size: Option<usize>,
    pub batch_size: Option<usize>,
    pub pos_scores: Option<Vec<f64>>,
    pub neg_scores: Option<Vec<f64>>,
    /// Where the record came from, for messages.
    pub at: Location,
}

/// The records of one domain (one file), with its batch and group sizes.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    pub records: Vec<Record>,
    /// Queries per batch: the records' `batch_size`, else the run's.
    pub batch_size: usize,
    /// Passages per query: the records' `train_group_size`, else the run's.
    pub group_size: usize,
}

/// What makes a record valid, and what to do with an invalid one.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Redapter needs every record's `reasoning_query`.
    pub need_reasoning: bool,
    /// Skip (and count) invalid records instead of failing.
    pub skip_invalid: bool,
    /// The run's batch and group sizes, for domains whose records set none.
    pub batch_size: usize,
    pub group_size: usize,
}

/// What loading skipped under `--skip-invalid`, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub reasons: BTreeMap<String, usize>,
}

impl Skipped {
    pub fn total(&self) -> usize {
        self.reasons.values().sum()
    }
}

/// The domain of a file: its stem, without ReasonEmbed's `-formatted` suffix.
fn domain_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.strip_suffix("-formatted").map(str::to_string).unwrap_or(stem)
}

/// Every `.jsonl` file named or found (not recursively) in `paths`.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| DataError::Io {
                    path: path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect();
            found.sort();
            out.extend(found);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(DataError::File {
                path: path.clone(),
                message: "training data not found".into(),
            });
        }
    }
    if out.is_empty() {
        return Err(DataError::File {
            path: paths.first().cloned().unwrap_or_default(),
            message: "no .jsonl training files".into(),
        });
    }
    Ok(out)
}

/// Loads every domain and checks every record now, so that whether a run
/// fails never depends on the order in which it meets its records. An
/// invalid record is an error naming its file and line, unless
/// `rules.skip_invalid`, in which case it is counted in [`Skipped`]. Records
/// of one domain that disagree on `batch_size` or `train_group_size` are an
/// error naming both places.
pub fn load(paths: &[PathBuf], rules: &Rules) -> Result<(Vec<Domain>, Skipped), DataError> {
    let mut by_domain: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut skipped = Skipped::default();
    let reject = |error: DataError, skipped: &mut Skipped| match error {
        DataError::Line { message, .. } if rules.skip_invalid => {
            *skipped.reasons.entry(message).or_default() += 1;
            Ok(())
        }
        e => Err(e),
    };
    for file in files(paths)? {
        let records = by_domain.entry(domain_name(&file)).or_default();
        for_each_object(&file, |at, obj| match parse(&obj, at, rules.need_reasoning) {
            Ok(record) => {
                records.push(record);
                Ok(())
            }
            Err(e) => reject(e, &mut skipped),
        })?;
    }
    let mut domains = Vec::new();
    for (name, records) in by_domain {
        let batch_size = agreed(&name, &records, "batch_size", |r| r.batch_size)?.unwrap_or(rules.batch_size);
        let group_size =
            agreed(&name, &records, "train_group_size", |r| r.train_group_size)?.unwrap_or(rules.group_size);
        let mut kept = Vec::with_capacity(records.len());
        for record in records {
            if record.neg.is_empty() && group_size > 1 {
                let error = DataError::Line {
                    at: record.at.clone(),
                    message: format!("field 'neg' is empty but the group size is {group_size}"),
                };
                reject(error, &mut skipped)?;
            } else {
                kept.push(record);
            }
        }
        if !kept.is_empty() {
            domains.push(Domain {
                name,
                records: kept,
                batch_size,
                group_size,
            });
        }
    }
    Ok((domains, skipped))
}

/// The one value that the records of a domain give for a setting, if any.
fn agreed(
    domain: &str,
    records: &[Record],
    field: &str,
    value: impl Fn(&Record) -> Option<usize>,
) -> Result<Option<usize>, DataError> {
    let mut found: Option<(usize, &Location)> = None;
    for record in records {
        match (value(record), found) {
            (Some(v), None) => found = Some((v, &record.at)),
            (Some(v), Some((first, at))) if v != first => {
                return Err(DataError::Line {
                    at: record.at.clone(),
                    message: format!(
                        "field '{field}' is {v}, but {at} gives {first} for the same domain '{domain}'; \
                         one domain trains with one {field}"
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(found.map(|(v, _)| v))
}

fn parse(obj: &Map<String, Value>, at: &Location, need_reasoning: bool) -> Result<Record, DataError> {
    let invalid = |message: String| DataError::Line {
        at: at.clone(),
        message,
    };
    let query = string_field(obj, &["query"], at)?.to_string();
    if query.trim().is_empty() {
        return Err(invalid("field 'query' is empty".into()));
    }
    let pos = string_list(obj, "pos", at)?;
    let neg = string_list(obj, "neg", at)?;
    if pos.is_empty() {
        return Err(invalid("field 'pos' has no positive".into()));
    }
    let optional_string = |name: &str| -> Result<Option<String>, DataError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("field '{name}' must be a string"))),
        }
    };
    let optional_count = |name: &str| -> Result<Option<usize>, DataError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| invalid(format!("field '{name}' must be a positive integer"))),
        }
    };
    let scores = |name: &str, len: usize| -> Result<Option<Vec<f64>>, DataError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                let values: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
                match values {
                    Some(v) if v.len() == len => Ok(Some(v)),
                    Some(v) => Err(invalid(format!(
                        "field '{name}' has {} scores for {len} texts",
                        v.len()
                    ))),
                    None => Err(invalid(format!("field '{name}' must hold numbers"))),
                }
            }
            Some(_) => Err(invalid(format!("field '{name}' must be a list of numbers"))),
        }
    };
    let reasoning_query = optional_string("reasoning_query")?;
    if need_reasoning && reasoning_query.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(invalid(
            "field 'reasoning_query' is missing (the redapter loss needs it; use --loss infonce to train without)"
                .into(),
        ));
    }
    Ok(Record {
        pos_scores: scores("pos_scores", pos.len())?,
        neg_scores: scores("neg_scores", neg.len())?,
        query,
        pos,
        neg,
        prompt: optional_string("prompt")?,
        reasoning_query,
        train_group_size: optional_count("train_group_size")?,
        batch_size: optional_count("batch_size")?,
        at: at.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(need_reasoning: bool, skip_invalid: bool) -> Rules {
        Rules {
            need_reasoning,
            skip_invalid,
            batch_size: 2,
            group_size: 2,
        }
    }

    fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    }

    #[test]
    fn loads_the_release_layout_by_domain() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "biology-formatted.jsonl",
            &[
                r#"{"prompt": "Given a Biology post, retrieve relevant passages that help answer the post.", "query": "q1", "reasoning_query": "r1", "pos": ["p"], "neg": ["n1", "n2"], "train_group_size": 16, "batch_size": 8}"#,
            ],
        );
        write(
            dir.path(),
            "pony-formatted.jsonl",
            &[
                r#"{"query": "q2", "pos": ["p"], "neg": [], "pos_scores": [1.0], "neg_scores": [], "train_group_size": 1}"#,
            ],
        );
        let (domains, skipped) = load(&[dir.path().to_path_buf()], &rules(false, false)).unwrap();
        assert_eq!(
            domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            vec!["biology", "pony"]
        );
        assert_eq!(domains[0].records[0].train_group_size, Some(16));
        assert_eq!(skipped.total(), 0);
    }

    #[test]
    fn invalid_records_name_file_and_line_or_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"query": "ok", "pos": ["p"], "neg": ["n"], "reasoning_query": "r"}"#,
                r#"{"query": "no positive", "pos": [], "neg": ["n"], "reasoning_query": "r"}"#,
                r#"{"query": "no reasoning", "pos": ["p"], "neg": ["n"]}"#,
                r#"{"query": "bad size", "pos": ["p"], "neg": ["n"], "reasoning_query": "r", "batch_size": 0}"#,
            ],
        );
        let err = load(std::slice::from_ref(&file), &rules(true, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.jsonl:2") && err.contains("'pos'"), "{err}");
        let (domains, skipped) = load(&[file], &rules(true, true)).unwrap();
        assert_eq!(domains[0].records.len(), 1);
        assert_eq!(skipped.total(), 3);
        assert!(skipped.reasons.keys().any(|r| r.contains("reasoning_query")));
    }

    /// A record without negatives fails at load time, whatever the seed,
    /// and `skip_invalid` skips it.
    #[test]
    fn records_without_negatives_fail_at_load_unless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"query": "a", "pos": ["p"], "neg": ["n"]}"#,
                r#"{"query": "b", "pos": ["p"], "neg": []}"#,
            ],
        );
        let err = load(std::slice::from_ref(&file), &rules(false, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.jsonl:2") && err.contains("'neg' is empty"), "{err}");
        let (domains, skipped) = load(std::slice::from_ref(&file), &rules(false, true)).unwrap();
        assert_eq!((domains[0].records.len(), skipped.total()), (1, 1));
        // With a group of one, no negative is needed.
        let single = Rules {
            group_size: 1,
            ..rules(false, false)
        };
        assert_eq!(load(&[file], &single).unwrap().0[0].records.len(), 2);
    }

    #[test]
    fn conflicting_domain_sizes_are_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"query": "a", "pos": ["p"], "neg": ["n"], "batch_size": 8}"#,
                r#"{"query": "b", "pos": ["p"], "neg": ["n"]}"#,
                r#"{"query": "c", "pos": ["p"], "neg": ["n"], "batch_size": 4}"#,
            ],
        );
        let err = load(&[file], &rules(false, true)).unwrap_err().to_string();
        assert!(
            err.contains("d.jsonl:3") && err.contains("d.jsonl:1") && err.contains("batch_size"),
            "{err}"
        );
    }
}
