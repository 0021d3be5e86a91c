//! JSON Lines reading with errors that name the file, line and field.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{DataError, Location};
use crate::lines::for_each_line;

/// Calls `row(location, object)` for every line of `path`; a blank line, a
/// line that is not UTF-8 or not a JSON object is an error.
pub fn for_each_object(
    path: &Path,
    mut row: impl FnMut(&Location, Map<String, Value>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for_each_line(path, |at, text| {
        if text.trim().is_empty() {
            return Err(DataError::Line {
                at,
                message: "empty line".into(),
            });
        }
        row(&at, parse_object(text, &at)?)
    })
}

pub(crate) fn parse_object(line: &str, at: &Location) -> Result<Map<String, Value>, DataError> {
    match serde_json::from_str(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(DataError::Line {
            at: at.clone(),
            message: format!("expected a JSON object, found {}", kind_of(&other)),
        }),
        Err(e) => Err(DataError::Line {
            at: at.clone(),
            message: format!("invalid JSON: {e}"),
        }),
    }
}

/// The string in the first of `names` present in `object`.
pub fn string_field<'a>(object: &'a Map<String, Value>, names: &[&str], at: &Location) -> Result<&'a str, DataError> {
    let Some((name, value)) = names.iter().find_map(|n| object.get(*n).map(|v| (n, v))) else {
        return Err(DataError::Line {
            at: at.clone(),
            message: format!("field '{}' is missing", names.join("' or '")),
        });
    };
    match value {
        Value::String(s) => Ok(s),
        other => Err(DataError::Line {
            at: at.clone(),
            message: format!("field '{name}' is {}, expected a string", kind_of(other)),
        }),
    }
}

/// An id field, which may be written as a string or an integer.
pub fn id_field(object: &Map<String, Value>, names: &[&str], at: &Location) -> Result<String, DataError> {
    match names.iter().find_map(|n| object.get(*n)) {
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        _ => string_field(object, names, at).map(str::to_string),
    }
}

/// A list of strings; absent means empty.
pub fn string_list(object: &Map<String, Value>, name: &str, at: &Location) -> Result<Vec<String>, DataError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| DataError::Line {
                    at: at.clone(),
                    message: format!("field '{name}' must hold strings, found {}", kind_of(v)),
                })
            })
            .collect(),
        Some(other) => Err(DataError::Line {
            at: at.clone(),
            message: format!("field '{name}' is {}, expected a list of strings", kind_of(other)),
        }),
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
