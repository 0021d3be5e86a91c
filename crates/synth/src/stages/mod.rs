//! ReMixer's stages, each runnable alone and resumable: every one plans its
//! items from the config and the earlier stages' files, skips what its own
//! file already holds, and appends the rest.

pub mod annotate;
pub mod clean;
pub mod format;
pub mod generate;
pub mod mine;
pub mod reason;

use serde_json::{Value, json};

use crate::llm::strip_reasoning;
use crate::store::Record;

/// Record fields from `(key, value)` pairs.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Record {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A free-text answer (reasoning block stripped) as field `name`; an empty
/// answer is recorded as a parse failure.
pub(crate) fn text_answer(name: &str, answer: &str) -> Record {
    let text = strip_reasoning(answer);
    let mut record = fields([(name, json!(text))]);
    if text.is_empty() {
        record.insert("parse_error".into(), json!("empty answer"));
    }
    record
}
