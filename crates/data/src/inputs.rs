//! Texts to embed: `.txt` (one text per line) or `.jsonl` (one JSON object per
//! line, the text in a string field, `text` by default).

use std::path::Path;

use crate::error::DataError;
use crate::jsonl::{parse_object, string_field};
use crate::lines::for_each_line;

#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The JSONL field holding the text.
    pub field: String,
    /// Skip blank lines and empty texts instead of failing on them.
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

/// Reads every text of `path`, choosing the format by extension.
pub fn read_texts(path: &Path, options: &InputOptions) -> Result<Vec<String>, DataError> {
    let jsonl = match path.extension().and_then(|e| e.to_str()) {
        Some("txt" | "text") => false,
        Some("jsonl" | "ndjson") => true,
        _ => {
            return Err(DataError::File {
                path: path.into(),
                message: "unknown input format: expected .txt (one text per line) or .jsonl".into(),
            });
        }
    };
    let mut texts = Vec::new();
    for_each_line(path, |at, line| {
        let text = if jsonl && !line.trim().is_empty() {
            string_field(&parse_object(line, &at)?, &[options.field.as_str()], &at)?.to_string()
        } else {
            line.to_string()
        };
        if !text.trim().is_empty() {
            texts.push(text);
            return Ok(());
        }
        if options.skip_empty {
            return Ok(());
        }
        let what = if jsonl && !line.trim().is_empty() {
            format!("field '{}' is empty", options.field)
        } else {
            "empty line".into()
        };
        Err(DataError::Line {
            at,
            message: format!("{what} (use --skip-empty to skip blank texts)"),
        })
    })?;
    Ok(texts)
}
