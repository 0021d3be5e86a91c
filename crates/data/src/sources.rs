//! A corpus of your own, as `reasonembed search` reads it: a folder of text
//! and Markdown files (walked through symbolic links with cycle detection,
//! hidden entries skipped, each file once under its first path in sorted
//! order), a `.jsonl` file of documents, or a single text file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Extensions read from a folder.
pub const TEXT_EXTENSIONS: [&str; 5] = ["txt", "md", "markdown", "rst", "text"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.into(),
        source,
    }
}

/// `(name, text)` of every source: the text files of a folder (sorted by
/// path) or the documents of a JSONL file.
pub fn read(corpus: &Path) -> Result<Vec<(String, String)>, DataError> {
    if corpus.is_file() {
        if corpus.extension().is_some_and(|e| e == "jsonl") {
            let docs = crate::retrieval::read_corpus(corpus)?;
            return Ok(docs.into_iter().map(|d| (d.id, d.text)).collect());
        }
        let text = std::fs::read_to_string(corpus).map_err(io(corpus))?;
        return Ok(vec![(
            corpus
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            text,
        )]);
    }
    if !corpus.is_dir() {
        return Err(DataError::File {
            path: corpus.into(),
            message: "corpus not found: expected a folder of text/Markdown files or a .jsonl file".into(),
        });
    }
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    collect_files(corpus, &mut visited, &mut files)?;
    files.sort();
    // One file reachable by several paths (links) is indexed once.
    let mut seen = HashSet::new();
    files.retain(|(_, real)| seen.insert(real.clone()));
    files
        .into_iter()
        .map(|(path, _)| {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let text = String::from_utf8(bytes).map_err(|e| DataError::File {
                path: path.clone(),
                message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            })?;
            let name = path.strip_prefix(corpus).unwrap_or(&path).display().to_string();
            Ok((name, text))
        })
        .collect()
}

/// Text files under `dir` with their real paths, skipping hidden entries (and
/// so our own index) and broken links. Links are followed; a folder already
/// visited (a link cycle, or a second link to it) is not walked again.
fn collect_files(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), DataError> {
    let real_dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    if !visited.insert(real_dir) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(&path) else {
            tracing::warn!("{}: broken link; skipped", path.display());
            continue;
        };
        if real.is_dir() {
            collect_files(&path, visited, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TEXT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push((path, real));
        }
    }
    Ok(())
}
