//! The trec_eval engine against trec_eval 10.0's own outputs, through the
//! library: the quicktest commands of its test suite
//! (`fixtures/trec_eval-test/`) and the generated cases of
//! `scripts/make_trec_eval_cases.py` (`fixtures/trec_eval-cases/`). The same
//! comparisons run through the binary in `crates/cli/tests/eval.rs`.

use std::path::{Path, PathBuf};

use reasonembed_data::retrieval::read_any_qrels_strict;
use reasonembed_data::trec::read_run_file;
use reasonembed_eval::trec_eval::{Measures, Options, evaluate};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// trec_eval's options as its `getopt` reads them (`-mX` or `-m X`, ...),
/// with the two file names last; returns the output it prints.
fn trec_eval(args: &[&str], dir: &Path) -> String {
    let mut options = Options::default();
    let (mut specs, mut per_query, mut summary) = (Vec::new(), false, true);
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        let mut value = |attached: &str| -> String {
            if attached.is_empty() {
                i += 1;
                args[i].to_string()
            } else {
                attached.to_string()
            }
        };
        match arg.get(..2) {
            Some("-q") => per_query = true,
            Some("-c") => options.complete = true,
            Some("-J") => options.judged_only = true,
            Some("-n") => summary = false,
            Some("-m") => specs.push(value(&arg[2..])),
            Some("-M") => options.max_retrieved = Some(value(&arg[2..]).parse().unwrap()),
            Some("-l") => options.relevance_level = value(&arg[2..]).parse().unwrap(),
            Some("-N") => options.num_docs_in_coll = value(&arg[2..]).parse().unwrap(),
            _ => files.push(dir.join(arg.strip_prefix("test/").unwrap_or(arg))),
        }
        i += 1;
    }
    let measures = if specs.is_empty() {
        Measures::official()
    } else {
        Measures::parse(&specs).unwrap()
    };
    let qrels = read_any_qrels_strict(&files[0]).unwrap();
    let run = read_run_file(&files[1]).unwrap();
    evaluate(&qrels, &run.run, &run.tag, &measures, &options)
        .unwrap()
        .format(per_query, summary)
}

fn assert_same(expected: &str, got: &str, what: &str) {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    if let Some(i) = (0..e.len().max(g.len())).find(|&i| e.get(i) != g.get(i)) {
        panic!("{what}: line {}: trec_eval {:?}, ours {:?}", i + 1, e.get(i), g.get(i));
    }
}

#[test]
fn the_quicktest_outputs_of_trec_eval_10() {
    let dir = root().join("fixtures/trec_eval-test");
    let quicktest = std::fs::read_to_string(dir.join("quicktest.txt")).unwrap();
    let mut checked = Vec::new();
    for line in quicktest.lines() {
        let Some((command, expected)) = line.trim().split_once(" | diff - test/") else {
            continue;
        };
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let present = args
            .iter()
            .filter_map(|a| a.strip_prefix("test/"))
            .all(|f| dir.join(f).exists());
        if args.contains(&"-R") || args.contains(&"-Z") || !present {
            continue;
        }
        let want = std::fs::read_to_string(dir.join(expected)).unwrap();
        assert_same(&want, &trec_eval(&args, &dir), command);
        checked.push(expected);
    }
    assert_eq!(
        checked,
        [
            "out.test",
            "out.test.a",
            "out.test.aq",
            "out.test.aqc",
            "out.test.aqcM",
            "out.test.aql",
            "out.test.meas_params"
        ]
    );
}

#[test]
fn the_generated_cases() {
    let dir = root().join("fixtures/trec_eval-cases");
    let manifest = std::fs::read_to_string(dir.join("cases.tsv")).unwrap();
    for line in manifest.lines() {
        let [name, qrels, run, args] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad cases.tsv line {line:?}");
        };
        let mut all: Vec<&str> = args.split_whitespace().collect();
        all.extend([qrels, run]);
        let want = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
        assert_same(&want, &trec_eval(&all, &dir), name);
    }
}
