//! BRIGHT (Su et al., ICLR 2025) as published on the Hugging Face Hub
//! (`xlangai/BRIGHT`: one folder per config — `examples`, `documents`,
//! `long_documents`, `*_reason` — holding `<task>-NNNNN-of-NNNNN.parquet`
//! shards), or the same rows as `<config>/<task>.jsonl` (the layout of the
//! team's local copy, and a convenient one for user-supplied corpora).
//!
//! Rows are read as they are; the evaluation protocol (exclusions, duplicate
//! ids, qrels) is applied by the evaluator, not here.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Location};
use crate::jsonl::{for_each_object, id_field, string_field, string_list};
use crate::retrieval::Document;

/// The twelve tasks, in the column order of the BRIGHT and ReasonEmbed papers.
pub const TASKS: [&str; 12] = [
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "leetcode",
    "pony",
    "aops",
    "theoremqa_questions",
    "theoremqa_theorems",
];

/// Tasks with a `long_documents` corpus.
pub const LONG_TASKS: [&str; 8] = [
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "pony",
];

/// FlagEmbedding's (and ReasonEmbed's) instruction for a BRIGHT task, the
/// sentence that goes in `Instruct: {instruction}\nQuery: {query}`.
pub fn reasonembed_instruction(task: &str, long: bool) -> Result<String, String> {
    let (subject, what, target) = match task {
        "biology" => ("a Biology post", "passages", "post"),
        "earth_science" => ("an Earth Science post", "passages", "post"),
        "economics" => ("an Economics post", "passages", "post"),
        "psychology" => ("a Psychology post", "passages", "post"),
        "robotics" => ("a Robotics post", "passages", "post"),
        "stackoverflow" => ("a Stack Overflow post", "passages", "post"),
        "sustainable_living" => ("a Sustainable Living post", "passages", "post"),
        "pony" => ("a Pony question", "passages", "question"),
        "leetcode" => ("a Coding problem", "examples", "problem"),
        "aops" | "theoremqa_questions" => ("a Math problem", "examples", "problem"),
        "theoremqa_theorems" => ("a Math problem", "theorems", "problem"),
        _ => return Err(format!("no instruction for unknown task '{task}'")),
    };
    let what = if long && what == "passages" { "documents" } else { what };
    // The long pony instruction is published without its final period.
    let end = if long && task == "pony" { "" } else { "." };
    Ok(format!(
        "Given {subject}, retrieve relevant {what} that help answer the {target}{end}"
    ))
}

/// One row of `examples` (or of a `*_reason` config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub query: String,
    /// As published: may hold the literal `"N/A"`.
    pub excluded_ids: Vec<String>,
    pub gold_ids: Vec<String>,
    pub gold_ids_long: Vec<String>,
}

/// A BRIGHT folder.
#[derive(Debug, Clone)]
pub struct BrightData {
    root: PathBuf,
}

impl BrightData {
    pub fn open(root: &Path) -> Result<Self, DataError> {
        if !root.join("examples").is_dir() {
            return Err(DataError::File {
                path: root.into(),
                message:
                    "not a BRIGHT folder: expected an 'examples' folder (Hugging Face layout, or <config>/<task>.jsonl)"
                        .into(),
            });
        }
        Ok(Self { root: root.into() })
    }

    /// The files holding `task` in `config`: parquet shards, else a JSONL file.
    pub fn files(&self, config: &str, task: &str) -> Result<Vec<PathBuf>, DataError> {
        let dir = self.root.join(config);
        if !dir.is_dir() {
            let hint = if config.ends_with("documents") {
                "BRIGHT's corpora are distributed apart from its queries: add the Hub's documents/ (and long_documents/) folders"
            } else {
                "expected a folder per config, as in the Hub layout"
            };
            return Err(DataError::File {
                path: dir,
                message: format!("no '{config}' folder ({hint})"),
            });
        }
        let prefix = format!("{task}-");
        let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| DataError::Io {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with(&prefix)
                    && name.ends_with(".parquet")
                    && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
            .collect();
        shards.sort();
        if !shards.is_empty() {
            return Ok(shards);
        }
        let jsonl = dir.join(format!("{task}.jsonl"));
        if jsonl.exists() {
            return Ok(vec![jsonl]);
        }
        Err(DataError::File {
            path: dir,
            message: format!("no '{task}' split: expected {task}-00000-of-NNNNN.parquet or {task}.jsonl"),
        })
    }

    /// The queries of `task` from `config` (`examples`, or e.g. `gpt4_reason`).
    pub fn examples(&self, config: &str, task: &str) -> Result<Vec<Example>, DataError> {
        let mut out = Vec::new();
        for file in self.files(config, task)? {
            for_each_row(&file, |at, row| {
                out.push(Example {
                    id: id_field(&row, &["id"], at)?,
                    query: string_field(&row, &["query"], at)?.to_string(),
                    excluded_ids: string_list(&row, "excluded_ids", at)?,
                    gold_ids: string_list(&row, "gold_ids", at)?,
                    gold_ids_long: string_list(&row, "gold_ids_long", at)?,
                });
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The corpus of `task`: `documents`, or `long_documents` when `long`.
    pub fn documents(&self, task: &str, long: bool) -> Result<Vec<Document>, DataError> {
        let config = if long { "long_documents" } else { "documents" };
        let mut out = Vec::new();
        for file in self.files(config, task)? {
            for_each_row(&file, |at, row| {
                out.push(Document {
                    id: id_field(&row, &["id"], at)?,
                    text: string_field(&row, &["content"], at)?.to_string(),
                });
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// Calls `row` for every row of a parquet or JSONL file; a parquet row's
/// "line" in errors is its 1-based row number.
fn for_each_row(
    path: &Path,
    mut row: impl FnMut(&Location, Map<String, Value>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        return for_each_object(path, row);
    }
    let bad = |message: String| DataError::File {
        path: path.into(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let reader =
        parquet::file::reader::SerializedFileReader::new(file).map_err(|e| bad(format!("cannot read parquet: {e}")))?;
    for (i, record) in reader.into_iter().enumerate() {
        let at = Location {
            path: path.into(),
            line: i + 1,
        };
        let record = record.map_err(|e| DataError::Line {
            at: at.clone(),
            message: format!("cannot read parquet row: {e}"),
        })?;
        match record.to_json_value() {
            Value::Object(object) => row(&at, object)?,
            other => {
                return Err(DataError::Line {
                    at,
                    message: format!("expected a record, found {other}"),
                });
            }
        }
    }
    Ok(())
}
