//! Append-only stage files: one JSON object per line, keyed by a stable `id`.
//!
//! Each finished item is appended as one line ending in a newline, so a kill
//! at any moment leaves at most a torn last line, which opening the file cuts
//! off. A record with an `error` field marks a failed item: it is retried on
//! the next run, and its successful record (a later line) supersedes it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result, io};

pub type Record = Map<String, Value>;

pub struct StageFile {
    path: PathBuf,
    file: File,
    /// The latest record of each id.
    latest: HashMap<String, Record>,
    /// Ids in the order they first appeared.
    order: Vec<String>,
}

impl StageFile {
    /// Opens (creating) `path` and reads what earlier runs wrote.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(
                "{}: dropping a torn last line ({} bytes) left by an interrupted run",
                path.display(),
                bytes.len() - complete
            );
            file.set_len(complete as u64).map_err(io(path))?;
        }
        let mut store = Self {
            path: path.into(),
            file,
            latest: HashMap::new(),
            order: Vec::new(),
        };
        let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| Error::Line {
            path: path.into(),
            line: 0,
            message: format!("not UTF-8: {e}"),
        })?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::Line {
                path: path.into(),
                line: i + 1,
                message,
            };
            let record: Record = serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no string field 'id'".into()))?
                .to_string();
            store.remember(id, record);
        }
        Ok(store)
    }

    fn remember(&mut self, id: String, record: Record) {
        if !self.latest.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.latest.insert(id, record);
    }

    /// Appends `record` (it must carry `id`) as one line.
    pub fn append(&mut self, record: Record) -> Result<()> {
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .expect("stage records carry an id")
            .to_string();
        let mut line = serde_json::to_string(&record).expect("JSON values serialise");
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io(&self.path))?;
        self.remember(id, record);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.latest.get(id)
    }

    /// Finished: a record without `error`.
    pub fn is_done(&self, id: &str) -> bool {
        self.get(id).is_some_and(|r| !r.contains_key("error"))
    }

    /// Every id's latest record, in first-seen order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.order.iter().map(|id| &self.latest[id])
    }

    /// Records of finished items.
    pub fn done(&self) -> impl Iterator<Item = &Record> {
        self.records().filter(|r| !r.contains_key("error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Record {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn resumes_after_a_torn_line_and_keeps_the_latest_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queries.jsonl");
        let mut s = StageFile::open(&path).unwrap();
        s.append(record(json!({"id": "a", "error": "timeout"}))).unwrap();
        s.append(record(json!({"id": "b", "query": "q"}))).unwrap();
        drop(s);
        // A kill in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id": "c", "que"#).unwrap();
        drop(f);
        let mut s = StageFile::open(&path).unwrap();
        assert!(!s.is_done("a") && s.is_done("b") && s.get("c").is_none());
        assert_eq!(s.records().count() - s.done().count(), 1);
        s.append(record(json!({"id": "a", "query": "retried"}))).unwrap();
        drop(s);
        let s = StageFile::open(&path).unwrap();
        let ids: Vec<&str> = s.done().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(s.get("a").unwrap()["query"], "retried");
        assert_eq!(s.records().count(), s.done().count());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("\"que\n"));
    }

    #[test]
    fn a_corrupt_line_inside_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        std::fs::write(&path, "{\"id\": \"a\"}\nnot json\n{\"id\": \"b\"}\n").unwrap();
        let e = StageFile::open(&path).err().unwrap().to_string();
        assert!(e.contains("labels.jsonl:2"), "{e}");
    }
}
