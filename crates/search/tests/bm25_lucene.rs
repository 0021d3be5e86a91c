//! Our BM25 analysis against pyserini's own (BRIGHT's analyzer), as recorded
//! by `scripts/make_bm25_goldens.py` in `fixtures/goldens/bm25-bright.json`
//! and `bm25-cranfield.json`: the analysed tokens of hand-picked texts, the
//! stem of every word of Cranfield and of the BRIGHT fixture, hashes of the
//! analysis of every document and query, and a sweep over every code point
//! of planes 0–3 and 14 in several contexts.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reasonembed_data::BeirDataset;
use reasonembed_data::bright::BrightData;
use reasonembed_search::bm25::analysis::{STOP_WORDS, surface_words, words};
use reasonembed_search::bm25::{Bm25Index, Bm25Params, analyze, porter};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden(name: &str) -> Value {
    let path = root().join("fixtures/goldens").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn sha256_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    let mut hasher = Sha256::new();
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(line.as_ref().as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn hand_picked_texts_analyse_as_pyserini_does() {
    let golden = golden("bm25-bright.json");
    let mut wrong = Vec::new();
    for case in golden["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (ours, theirs) = (analyze(text), strings(&case["tokens"]));
        if ours != theirs {
            wrong.push(format!("{text:?}\n  ours:     {ours:?}\n  pyserini: {theirs:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} texts differ:\n{}", wrong.len(), wrong.join("\n"));
}

/// The texts of each collection of the goldens (documents, then queries).
fn collection_texts() -> Vec<(String, Vec<String>, Vec<String>)> {
    let cranfield = root().join("../shared/data/cranfield");
    assert!(
        cranfield.is_dir(),
        "this test needs the team's data folder at {}",
        cranfield.display()
    );
    let beir = BeirDataset::open(&cranfield, "test").unwrap();
    let mut out = vec![(
        "cranfield".to_string(),
        beir.corpus.into_iter().map(|d| d.text).collect(),
        beir.queries.into_iter().map(|q| q.text).collect(),
    )];
    let data = BrightData::open(&root().join("fixtures/bright-hub")).unwrap();
    for (setting, queries, long, tasks) in [
        (
            "short",
            "examples",
            false,
            &["biology", "leetcode", "theoremqa_theorems"][..],
        ),
        ("long", "examples", true, &["biology"][..]),
        (
            "gpt4_reason",
            "gpt4_reason",
            false,
            &["biology", "leetcode", "theoremqa_theorems"][..],
        ),
    ] {
        for task in tasks {
            out.push((
                format!("bright/{setting}/{task}"),
                data.documents(task, long)
                    .unwrap()
                    .into_iter()
                    .map(|d| d.text)
                    .collect(),
                data.examples(queries, task)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.query)
                    .collect(),
            ));
        }
    }
    out
}

#[test]
fn every_document_and_query_analyses_as_pyserini_does() {
    let (bright, cranfield) = (golden("bm25-bright.json"), golden("bm25-cranfield.json"));
    for (name, docs, queries) in collection_texts() {
        let expected = bright["collections"]
            .get(&name)
            .or_else(|| cranfield["collections"].get(&name))
            .unwrap_or_else(|| panic!("{name} is in the goldens"));
        let analysed: Vec<Vec<String>> = docs.iter().map(|d| analyze(d)).collect();
        assert_eq!(
            sha256_lines(analysed.iter().map(|t| t.join(" "))),
            expected["analysis_sha256"]["documents"],
            "{name}: documents"
        );
        assert_eq!(
            sha256_lines(queries.iter().map(|q| analyze(q).join(" "))),
            expected["analysis_sha256"]["queries"],
            "{name}: queries"
        );
        let tokens: usize = analysed.iter().map(Vec::len).sum();
        assert_eq!(tokens as u64, expected["tokens"].as_u64().unwrap(), "{name}: tokens");
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let index = Bm25Index::build(&refs, Bm25Params::default());
        assert_eq!(
            index.num_terms() as u64,
            expected["terms"].as_u64().unwrap(),
            "{name}: terms"
        );
    }
}

#[test]
fn every_word_of_the_vocabularies_is_found_and_stemmed_as_lucene_does() {
    let (bright, cranfield) = (golden("bm25-bright.json"), golden("bm25-cranfield.json"));
    let texts = collection_texts();
    let fixture_texts: Vec<&String> = texts[1..].iter().flat_map(|(_, d, q)| d.iter().chain(q)).collect();
    let golden_texts: Vec<String> = bright["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect();
    let sources: [(&Value, Vec<&String>); 3] = [
        (
            &cranfield["vocabularies"]["cranfield"],
            texts[0].1.iter().chain(&texts[0].2).collect(),
        ),
        (&bright["vocabularies"]["bright-fixture"], fixture_texts),
        (&bright["vocabularies"]["texts"], golden_texts.iter().collect()),
    ];
    for (vocabulary, texts) in sources {
        let golden_words: Vec<&str> = vocabulary["words"].as_str().unwrap().split(' ').collect();
        let stems: Vec<&str> = vocabulary["stems"].as_str().unwrap().split(' ').collect();
        let ours: BTreeSet<String> = texts.iter().flat_map(|t| words(t)).collect();
        let theirs: BTreeSet<String> = golden_words.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            ours.difference(&theirs).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "words only we find"
        );
        assert_eq!(
            theirs.difference(&ours).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "words only Lucene finds"
        );
        let wrong: Vec<String> = golden_words
            .iter()
            .zip(&stems)
            .filter(|(w, s)| porter::stem(w) != **s)
            .map(|(w, s)| format!("{w}: ours {}, Lucene {s}", porter::stem(w)))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} of {} stems differ:\n{}",
            wrong.len(),
            stems.len(),
            wrong.join("\n")
        );
    }
    assert_eq!(STOP_WORDS.len(), 33);
}

/// `sweep_block` of `scripts/make_bm25_goldens.py`.
fn sweep_block(first: u32) -> String {
    let emoji_like = |cp: u32| {
        "#*0123456789\u{a9}\u{ae}".contains(char::from_u32(cp).unwrap())
            || [(0x2000, 0x2BFF), (0x3000, 0x303F), (0x1F000, 0x1FFFF)]
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&cp))
    };
    let mut lines = Vec::new();
    for cp in first..first + 4096 {
        if (0xD800..=0xDFFF).contains(&cp) || cp < 0x20 || (0x7F..=0x9F).contains(&cp) {
            continue;
        }
        let c = char::from_u32(cp).unwrap();
        let mut group = vec![
            c.to_string(),
            format!("a{c}a"),
            format!("1{c}1"),
            format!("{c}{c}"),
            format!("{c}a"),
            format!("a{c}"),
        ];
        if emoji_like(cp) {
            group.extend([
                format!("{c}\u{200d}{c}"),
                format!("{c}\u{1f3fb}"),
                format!("{c}\u{fe0f}"),
                format!("{c}\u{20e3}"),
                format!("{c}\u{e0067}\u{e007f}"),
            ]);
        }
        lines.push(group.join(" "));
    }
    lines.join("\n")
}

/// Tokenizer, possessive filter and lower-casing on every code point of
/// planes 0–3 and 14, alone and between letters, digits, itself, and in emoji
/// sequences.
#[test]
fn every_code_point_tokenizes_as_lucene_does() {
    let golden = golden("bm25-bright.json");
    let mut wrong = Vec::new();
    for block in golden["sweep"]["blocks"].as_array().unwrap() {
        let first = block[0].as_u64().unwrap() as u32;
        let tokens = surface_words(&sweep_block(first));
        if tokens.len() as u64 != block[1].as_u64().unwrap() || sha256_lines(&tokens) != block[2].as_str().unwrap() {
            wrong.push(format!(
                "U+{first:04X}..U+{:04X}: {} tokens, Lucene {}",
                first + 4095,
                tokens.len(),
                block[1]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} blocks differ (scripts/make_bm25_goldens.py --dump DIR writes Lucene's tokens):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
