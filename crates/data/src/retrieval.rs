//! Retrieval collections in the formats people have them in: corpus and query
//! JSONL files (BEIR's `_id`/`title`/`text`, or `id`/`content`), and qrels as
//! TREC files or BEIR TSV (`query-id corpus-id score` with a header).

use std::path::Path;

use crate::error::DataError;
use crate::jsonl::{for_each_object, id_field, string_field};
use crate::trec::{Qrels, for_each_fields, read_qrels, read_qrels_strict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: String,
    pub text: String,
}

const ID_FIELDS: &[&str] = &["_id", "id", "docid", "doc_id"];
const TEXT_FIELDS: &[&str] = &["text", "content", "contents"];

/// A corpus JSONL file; a document's text is `title + " " + text` when it has
/// a non-empty title, as BEIR and MTEB build it.
pub fn read_corpus(path: &Path) -> Result<Vec<Document>, DataError> {
    let mut docs = Vec::new();
    for_each_object(path, |at, obj| {
        let id = id_field(&obj, ID_FIELDS, at)?;
        let body = string_field(&obj, TEXT_FIELDS, at)?;
        let title = obj.get("title").and_then(|t| t.as_str()).unwrap_or("");
        let text = format!("{title} {body}").trim().to_string();
        docs.push(Document { id, text });
        Ok(())
    })?;
    Ok(docs)
}

/// A queries JSONL file (`_id`/`id` and `text`/`query`).
pub fn read_queries(path: &Path) -> Result<Vec<Query>, DataError> {
    let mut queries = Vec::new();
    for_each_object(path, |at, obj| {
        let id = id_field(&obj, &["_id", "id", "qid", "query_id"], at)?;
        let text = string_field(&obj, &["text", "query"], at)?.to_string();
        queries.push(Query { id, text });
        Ok(())
    })?;
    Ok(queries)
}

/// Qrels as BEIR TSV (three columns, header `query-id corpus-id score`) or as
/// a TREC qrels file (four columns), told apart by their first line.
pub fn read_any_qrels(path: &Path) -> Result<Qrels, DataError> {
    read_qrels_in_any_format(path, false)
}

/// As [`read_any_qrels`], but a repeated (query, document) judgement is an
/// error naming its line, and TREC relevances must be integers.
pub fn read_any_qrels_strict(path: &Path) -> Result<Qrels, DataError> {
    read_qrels_in_any_format(path, true)
}

fn read_qrels_in_any_format(path: &Path, strict: bool) -> Result<Qrels, DataError> {
    let mut columns = None;
    for_each_fields(path, |_, fields| {
        // A TREC comment line (`# ...`) says nothing about the format.
        if !fields[0].starts_with('#') {
            columns.get_or_insert(fields.len());
        }
        Ok(())
    })?;
    if columns != Some(3) {
        return if strict {
            read_qrels_strict(path)
        } else {
            read_qrels(path)
        };
    }
    let mut qrels = Qrels::new();
    for_each_fields(path, |at, fields| {
        let [qid, doc, rel] = fields[..] else {
            return Err(DataError::Line {
                at,
                message: format!("expected 3 fields (query-id corpus-id score), found {}", fields.len()),
            });
        };
        if at.line == 1 && rel.parse::<i64>().is_err() {
            return Ok(()); // the header
        }
        let rel = rel.parse().map_err(|_| DataError::Line {
            at: at.clone(),
            message: format!("score '{rel}' is not an integer"),
        })?;
        if qrels.entry(qid.into()).or_default().insert(doc.into(), rel).is_some() && strict {
            return Err(DataError::Line {
                at,
                message: format!("query {qid} judges document {doc} again"),
            });
        }
        Ok(())
    })?;
    Ok(qrels)
}

/// A BEIR folder: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`.
#[derive(Debug, Clone)]
pub struct BeirDataset {
    pub corpus: Vec<Document>,
    pub queries: Vec<Query>,
    pub qrels: Qrels,
}

impl BeirDataset {
    /// `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/<split>.tsv`.
    pub fn open(dir: &Path, split: &str) -> Result<Self, DataError> {
        let qrels = dir.join("qrels").join(format!("{split}.tsv"));
        Self::from_files(&dir.join("corpus.jsonl"), &dir.join("queries.jsonl"), &qrels)
    }

    /// A user's own corpus, queries and qrels files.
    pub fn from_files(corpus: &Path, queries: &Path, qrels: &Path) -> Result<Self, DataError> {
        for path in [corpus, queries, qrels] {
            if !path.exists() {
                return Err(DataError::File {
                    path: path.into(),
                    message: "file not found".into(),
                });
            }
        }
        Ok(Self {
            corpus: read_corpus(corpus)?,
            queries: read_queries(queries)?,
            qrels: read_any_qrels(qrels)?,
        })
    }
}
