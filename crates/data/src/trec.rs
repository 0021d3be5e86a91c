//! TREC files: qrels (`qid iter docid rel`) and runs
//! (`qid Q0 docid rank score tag`), the formats trec_eval reads.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::error::{DataError, Location};
use crate::lines::for_each_line;

/// `qid → docid → relevance`.
pub type Qrels = BTreeMap<String, BTreeMap<String, i64>>;
/// `qid → [(docid, score)]`.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// Calls `row(location, fields)` for every non-blank line of `path`.
pub(crate) fn for_each_fields(
    path: &Path,
    mut row: impl FnMut(Location, Vec<&str>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for_each_line(path, |at, line| {
        if line.trim().is_empty() {
            Ok(())
        } else {
            row(at, line.split_whitespace().collect())
        }
    })
}

fn field<T: std::str::FromStr>(at: &Location, value: &str, name: &str) -> Result<T, DataError> {
    value.parse().map_err(|_| DataError::Line {
        at: at.clone(),
        message: format!("{name} '{value}' is not a number"),
    })
}

/// Reads TREC qrels; a repeated (qid, docid) keeps the last judgement, as trec_eval does.
pub fn read_qrels(path: &Path) -> Result<Qrels, DataError> {
    let mut qrels = Qrels::new();
    for_each_fields(path, |at, fields| {
        let [qid, _, doc, rel] = fields[..] else {
            return Err(DataError::Line {
                at,
                message: format!("expected 4 fields (qid iter docid rel), found {}", fields.len()),
            });
        };
        qrels
            .entry(qid.into())
            .or_default()
            .insert(doc.into(), field(&at, rel, "relevance")?);
        Ok(())
    })?;
    Ok(qrels)
}

/// Reads a TREC run; the rank column is ignored, as by trec_eval.
pub fn read_run(path: &Path) -> Result<Run, DataError> {
    let mut run = Run::new();
    for_each_fields(path, |at, fields| {
        let [qid, _, doc, _rank, score, ..] = fields[..] else {
            return Err(DataError::Line {
                at,
                message: format!(
                    "expected 6 fields (qid Q0 docid rank score tag), found {}",
                    fields.len()
                ),
            });
        };
        run.entry(qid.into())
            .or_default()
            .push((doc.into(), field(&at, score, "score")?));
        Ok(())
    })?;
    Ok(run)
}

/// Writes `run` (each query's list already best first) atomically.
pub fn write_run(path: &Path, run: &Run, tag: &str) -> Result<(), DataError> {
    let file = AtomicFile::create(path)?;
    let io = |source| DataError::Io {
        path: path.into(),
        source,
    };
    {
        let mut out = BufWriter::new(file.as_file());
        for (qid, docs) in run {
            for (rank, (doc, score)) in docs.iter().enumerate() {
                writeln!(out, "{qid} Q0 {doc} {} {score} {tag}", rank + 1).map_err(io)?;
            }
        }
        out.flush().map_err(io)?;
    }
    file.commit()
}
