//! The optional audit log (`audit.jsonl`): every prompt and answer of every
//! call, with its stage, item id and timing, for inspecting what the LLMs saw.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::error::{Result, io};
use crate::llm::{Completion, LlmError, Message};

pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        Ok(Self {
            path: path.into(),
            file: Mutex::new(file),
        })
    }

    pub fn write(
        &self,
        stage: &str,
        id: &str,
        messages: &[Message],
        answer: &std::result::Result<Completion, LlmError>,
        seconds: f64,
    ) -> Result<()> {
        let (answer, unfinished, error) = match answer {
            Ok(c) => (Some(c.text.as_str()), c.unfinished(), None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let mut line = serde_json::to_string(&json!({
            "stage": stage,
            "id": id,
            "messages": messages,
            "answer": answer,
            "unfinished": unfinished,
            "error": error,
            "seconds": seconds,
        }))
        .expect("JSON values serialise");
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes()).map_err(io(&self.path))
    }
}
