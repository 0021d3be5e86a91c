//! TREC files: qrels (`qid iter docid rel`) and runs
//! (`qid Q0 docid rank score tag`), the formats trec_eval reads.
//!
//! As in trec_eval 10.0, fields are separated by C whitespace, a qrels line
//! starting with `#` and a run line whose first non-blank character is `#`
//! are comments, and blank lines are skipped. Runs are read strictly: six
//! fields (trec_eval's format allows, and its own test suite has, more after
//! the run tag: they are ignored, and the first such line is reported), a
//! finite score, and no document twice for a query.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::error::{DataError, Location};
use crate::lines::for_each_line;

/// `qid → docid → relevance`.
pub type Qrels = BTreeMap<String, BTreeMap<String, i64>>;
/// `qid → [(docid, score)]`.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// A run file with its tag, as trec_eval reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunFile {
    /// Each query's documents in file order.
    pub run: Run,
    /// The tag (sixth field) of the file's last line: trec_eval's `runid`.
    pub tag: String,
    /// The first line with fields after the tag (ignored), and how many fields it has.
    pub extra_fields: Option<(usize, usize)>,
}

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

/// C's `isspace` in the "C" locale, trec_eval's field separator.
fn c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Calls `row(location, fields)` for every line of a TREC file that is
/// neither blank nor a comment (`comment(line)`).
fn for_each_record(
    path: &Path,
    comment: fn(&str) -> bool,
    mut row: impl FnMut(Location, Vec<&str>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for_each_line(path, |at, line| {
        let fields: Vec<&str> = line.split(c_space).filter(|f| !f.is_empty()).collect();
        if fields.is_empty() || comment(line) {
            Ok(())
        } else {
            row(at, fields)
        }
    })
}

fn field<T: std::str::FromStr>(at: &Location, value: &str, name: &str) -> Result<T, DataError> {
    value.parse().map_err(|_| DataError::Line {
        at: at.clone(),
        message: format!("{name} '{value}' is not a number"),
    })
}

/// Reads TREC qrels; a repeated (qid, docid) keeps the last judgement.
pub fn read_qrels(path: &Path) -> Result<Qrels, DataError> {
    let mut qrels = Qrels::new();
    read_qrels_lines(path, |at, qid, doc, rel| {
        qrels
            .entry(qid.into())
            .or_default()
            .insert(doc.into(), field(&at, rel, "relevance")?);
        Ok(())
    })?;
    Ok(qrels)
}

/// Reads TREC qrels as `eval trec` does: the relevance must be an integer and
/// a repeated (qid, docid) is an error naming both lines (trec_eval stops on
/// it too, with "duplicate docs").
pub fn read_qrels_strict(path: &Path) -> Result<Qrels, DataError> {
    let mut qrels = Qrels::new();
    let mut lines: BTreeMap<(String, String), usize> = BTreeMap::new();
    read_qrels_lines(path, |at, qid, doc, rel| {
        let rel: i64 = rel.parse().map_err(|_| DataError::Line {
            at: at.clone(),
            message: format!("relevance '{rel}' is not an integer"),
        })?;
        if let Some(first) = lines.insert((qid.into(), doc.into()), at.line) {
            return Err(DataError::Line {
                at,
                message: format!("query {qid} judges document {doc} again (first at line {first})"),
            });
        }
        qrels.entry(qid.into()).or_default().insert(doc.into(), rel);
        Ok(())
    })?;
    Ok(qrels)
}

/// Calls `row(at, qid, docid, rel)` for each qrels line, checking it has four fields.
fn read_qrels_lines(
    path: &Path,
    mut row: impl FnMut(Location, &str, &str, &str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for_each_record(
        path,
        |line| line.starts_with('#'),
        |at, fields| {
            let [qid, _, doc, rel] = fields[..] else {
                return Err(DataError::Line {
                    at,
                    message: format!("expected 4 fields (qid iter docid rel), found {}", fields.len()),
                });
            };
            row(at, qid, doc, rel)
        },
    )
}

/// Reads a TREC run; the rank column is ignored, as by trec_eval.
pub fn read_run(path: &Path) -> Result<Run, DataError> {
    Ok(read_run_file(path)?.run)
}

/// Reads a TREC run with its tag. Each line has six fields (any after the
/// tag are ignored, as by trec_eval, and the first such line noted in
/// [`RunFile::extra_fields`]), its score is a finite number, and a document
/// appears once per query; errors name the line.
pub fn read_run_file(path: &Path) -> Result<RunFile, DataError> {
    let mut file = RunFile::default();
    let mut lines: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for_each_record(
        path,
        |line| line.trim_start_matches(c_space).starts_with('#'),
        |at, fields| {
            let [qid, _, doc, _rank, score, tag, ..] = fields[..] else {
                return Err(DataError::Line {
                    at,
                    message: format!(
                        "expected 6 fields (qid Q0 docid rank score tag), found {}",
                        fields.len()
                    ),
                });
            };
            if fields.len() > 6 && file.extra_fields.is_none() {
                file.extra_fields = Some((at.line, fields.len()));
            }
            let score: f64 = field(&at, score, "score")?;
            if !score.is_finite() {
                return Err(DataError::Line {
                    at,
                    message: format!("score '{score}' is not a finite number"),
                });
            }
            match lines.entry(qid.into()).or_default().entry(doc.into()) {
                Entry::Occupied(first) => {
                    return Err(DataError::Line {
                        message: format!(
                            "query {qid} retrieves document {doc} again (first at line {})",
                            first.get()
                        ),
                        at,
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert(at.line);
                }
            }
            file.run.entry(qid.into()).or_default().push((doc.into(), score));
            tag.clone_into(&mut file.tag);
            Ok(())
        },
    )?;
    Ok(file)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn run_error(text: &str) -> String {
        let f = file(text);
        let err = read_run_file(f.path()).unwrap_err().to_string();
        assert!(err.starts_with(&f.path().display().to_string()), "{err}");
        err
    }

    #[test]
    fn a_run_line_has_six_fields_and_what_follows_the_tag_is_noted() {
        let err = run_error("1 Q0 a 1 0.5 tag\n1 Q0 b 2 0.4\n");
        assert!(
            err.contains(":2: expected 6 fields") && err.contains("found 5"),
            "{err}"
        );
        let f = file("1 Q0 a 1 0.5 tag\n1 Q0 b 2 0.4 tag more junk\n1 Q0 c 3 0.3 tag x\n");
        let run = read_run_file(f.path()).unwrap();
        assert_eq!(run.extra_fields, Some((2, 8)));
        assert_eq!((run.tag.as_str(), run.run["1"].len()), ("tag", 3));
    }

    #[test]
    fn a_run_score_is_a_finite_number() {
        for score in ["nan", "inf", "-inf", "NaN", "1e999"] {
            let err = run_error(&format!("1 Q0 a 1 0.5 t\n1 Q0 b 2 {score} t\n"));
            assert!(err.contains(":2: score") && err.contains("finite"), "{score}: {err}");
        }
        let err = run_error("1 Q0 a 1 high t\n");
        assert!(err.contains(":1: score 'high' is not a number"), "{err}");
    }

    #[test]
    fn a_duplicate_document_names_both_lines() {
        let err = run_error("1 Q0 a 1 0.5 t\n2 Q0 a 1 0.5 t\n\n1 Q0 a 3 0.1 t\n");
        assert!(
            err.contains(":4: query 1 retrieves document a again (first at line 1)"),
            "{err}"
        );
    }

    #[test]
    fn runs_keep_the_last_tag_and_skip_comments_and_blank_lines() {
        let f = file("# a comment\n1 Q0 a 1 0.5 first\n\n  # indented comment\r\n1\tQ0 b#1 2 -0.25 last\r\n");
        let run = read_run_file(f.path()).unwrap();
        assert_eq!(run.tag, "last");
        assert_eq!(run.run["1"], vec![("a".into(), 0.5), ("b#1".into(), -0.25)]);
    }

    #[test]
    fn strict_qrels_reject_repeats_and_non_integers() {
        let f = file("# comment\n1 0 a 1\n1 0 b 0\n1 0 a 2\n");
        let err = read_qrels_strict(f.path()).unwrap_err().to_string();
        assert!(
            err.contains(":4: query 1 judges document a again (first at line 2)"),
            "{err}"
        );
        let f = file("1 0 a 1.5\n");
        let err = read_qrels_strict(f.path()).unwrap_err().to_string();
        assert!(err.contains(":1: relevance '1.5' is not an integer"), "{err}");
        let f = file("1 0 a\n");
        let err = read_qrels_strict(f.path()).unwrap_err().to_string();
        assert!(err.contains(":1: expected 4 fields"), "{err}");
        let f = file("1 0 a 1\n1 0 a 2\n# c\n2 0 b -1\n");
        assert_eq!(
            read_qrels(f.path()).unwrap()["1"]["a"],
            2,
            "the lenient reader keeps the last"
        );
        assert_eq!(read_qrels(f.path()).unwrap()["2"]["b"], -1);
    }
}
