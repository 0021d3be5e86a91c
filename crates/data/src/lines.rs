//! Reading text files line by line, each line checked for UTF-8 and located
//! (file and line number) for error messages.

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{DataError, Location};

/// Calls `line(location, text)` for every line of `path`, checked for UTF-8
/// and without its terminator.
pub(crate) fn for_each_line(
    path: &Path,
    mut line: impl FnMut(Location, &str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.into(),
        source,
    };
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut raw = Vec::new();
    for number in 1.. {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).map_err(io)? == 0 {
            break;
        }
        let at = Location {
            path: path.into(),
            line: number,
        };
        let text = utf8_line(&raw, &at)?;
        line(at, text)?;
    }
    Ok(())
}

/// The line without its terminator, checked for UTF-8.
pub(crate) fn utf8_line<'a>(raw: &'a [u8], at: &Location) -> Result<&'a str, DataError> {
    let text = std::str::from_utf8(raw).map_err(|e| DataError::Line {
        at: at.clone(),
        message: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
    })?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text))
}
