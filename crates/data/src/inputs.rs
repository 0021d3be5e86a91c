//! Texts to embed: `.txt` (one text per line) or `.jsonl` (one JSON object per
//! line, the text in a string field, `text` by default).

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Location};

#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The JSONL field holding the text.
    pub field: String,
    /// Skip blank lines instead of failing on them.
    pub skip_empty: bool,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            field: "text".into(),
            skip_empty: false,
        }
    }
}

enum Kind {
    Text,
    Jsonl,
}

/// Reads every text of `path`, choosing the format by extension.
pub fn read_texts(path: &Path, options: &InputOptions) -> Result<Vec<String>, DataError> {
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("txt") | Some("text") => Kind::Text,
        Some("jsonl") | Some("ndjson") => Kind::Jsonl,
        _ => {
            return Err(DataError::File {
                path: path.into(),
                message: "unknown input format: expected .txt (one text per line) or .jsonl".into(),
            });
        }
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut texts = Vec::new();
    let mut raw = Vec::new();
    for line in 1.. {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(|source| DataError::Io {
            path: path.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        let at = || Location {
            path: path.into(),
            line,
        };
        let text = std::str::from_utf8(&raw).map_err(|e| DataError::Line {
            at: at(),
            message: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
        })?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        if text.trim().is_empty() {
            if options.skip_empty {
                continue;
            }
            return Err(DataError::Line {
                at: at(),
                message: "empty line (use --skip-empty to skip blank lines)".into(),
            });
        }
        let text = match kind {
            Kind::Text => Some(text.to_string()),
            Kind::Jsonl => json_text(text, &options.field, at, options.skip_empty)?,
        };
        texts.extend(text);
    }
    Ok(texts)
}

/// The text in `field` of one JSONL line; `None` when it is empty and empty
/// texts are skipped.
fn json_text(
    line: &str,
    field: &str,
    at: impl Fn() -> Location,
    skip_empty: bool,
) -> Result<Option<String>, DataError> {
    let value: Value = serde_json::from_str(line).map_err(|e| DataError::Line {
        at: at(),
        message: format!("invalid JSON: {e}"),
    })?;
    let object = value.as_object().ok_or_else(|| DataError::Line {
        at: at(),
        message: format!("expected a JSON object, found {}", kind_of(&value)),
    })?;
    let text = match object.get(field) {
        None => {
            return Err(DataError::Line {
                at: at(),
                message: format!("field '{field}' is missing"),
            });
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(DataError::Line {
                at: at(),
                message: format!("field '{field}' is {}, expected a string", kind_of(other)),
            });
        }
    };
    if text.trim().is_empty() {
        if skip_empty {
            return Ok(None);
        }
        return Err(DataError::Line {
            at: at(),
            message: format!("field '{field}' is empty (use --skip-empty to skip it)"),
        });
    }
    Ok(Some(text.clone()))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
