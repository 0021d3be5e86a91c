//! The English analysis of pyserini's default Lucene analyzer (Anserini's
//! `DefaultEnglishAnalyzer`, Lucene 9), which BRIGHT's BM25 runs on documents
//! and queries alike:
//!
//! 1. **StandardTokenizer**: Unicode word boundaries (UAX #29) as Lucene's
//!    grammar implements them, with the character and emoji properties of
//!    Unicode 12.1 ([`super::tables`]) as Lucene 9.5's generated scanner has
//!    them (characters assigned later are not letters to it). A token is the
//!    longest match, at the current position, of one of: a word (letters,
//!    digits, katakana, connector punctuation, with `.`/`'`/`:`-like marks
//!    between two letters or `.`/`,`/`'`-like marks between two digits), an
//!    emoji sequence (with modifiers, ZWJ sequences, flags, keycaps, tag
//!    sequences), a run of South-East Asian letters (Thai, Lao, Myanmar,
//!    Khmer: no dictionary), one ideograph, or one hiragana; combining marks
//!    and format characters stay with the character before them. Everything
//!    else is skipped. A token is at most 255 UTF-16 units long: the scanner
//!    only sees the next 255 units, so a longer word is split (its first part
//!    is the longest match inside that window, the rest starts a new token).
//! 2. **EnglishPossessiveFilter**: a trailing `'s`, `’s` or `＇s` (either case
//!    of `s`) is removed.
//! 3. **LowerCaseFilter**: Java's `Character.toLowerCase` per code point
//!    (simple case mapping: `İ` → `i`, `Σ` → `σ` even at the end of a word).
//! 4. **StopFilter** with Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`.
//! 5. **PorterStemFilter** ([`super::porter`]).
//!
//! `scripts/make_bm25_goldens.py` records what pyserini itself produces; the
//! tests compare with it on hand-picked texts, the vocabularies of Cranfield
//! and the BRIGHT fixture, and every code point in several contexts.

use std::sync::OnceLock;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use super::porter;
use super::tables::{self, *};

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`.
pub const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

/// Lucene's default (and pyserini's) maximum token length, in UTF-16 units.
pub const MAX_TOKEN_LENGTH: usize = 255;

// Properties of single code points used by the emoji rules, next to the
// table bits (which use bits 0..=20).
const KEYCAP_BASE: u32 = 1 << 24; // [0-9#*]
const KEYCAP: u32 = 1 << 25; // U+20E3
const PRESENTATION_SELECTOR: u32 = 1 << 26; // U+FE0F
const TEXT_SELECTOR: u32 = 1 << 27; // U+FE0E
const TAG_SPEC: u32 = 1 << 28; // U+E0020..=U+E007E
const TAG_TERM: u32 = 1 << 29; // U+E007F
const ACCIDENTAL_EMOJI: u32 = 1 << 30; // © ® ™ 〰 〽

fn fixed_flags(cp: u32) -> u32 {
    match cp {
        0x23 | 0x2A | 0x30..=0x39 => KEYCAP_BASE,
        0x20E3 => KEYCAP,
        0xFE0F => PRESENTATION_SELECTOR,
        0xFE0E => TEXT_SELECTOR,
        0xE0020..=0xE007E => TAG_SPEC,
        0xE007F => TAG_TERM,
        0xA9 | 0xAE | 0x2122 | 0x3030 | 0x303D => ACCIDENTAL_EMOJI,
        _ => 0,
    }
}

fn table_flags(cp: u32) -> u32 {
    let i = tables::RANGES.partition_point(|&(_, last, _)| last < cp);
    match tables::RANGES.get(i) {
        Some(&(first, _, flags)) if first <= cp => flags,
        _ => 0,
    }
}

fn flags(cp: u32) -> u32 {
    table_flags(cp) | fixed_flags(cp)
}

/// The tokenizer's automaton: code points are first mapped to one byte per
/// distinct combination of properties, and the grammar is a DFA over those
/// bytes that reports the longest match.
struct Scanner {
    /// Distinct flag combinations; the symbol of a combination is its index.
    combos: Vec<u32>,
    /// Symbol of every table range, and of every ASCII code point.
    range_symbols: Vec<u8>,
    ascii: [u8; 128],
    dfa: dense::DFA<Vec<u32>>,
}

impl Scanner {
    fn new() -> Self {
        let mut combos = vec![0u32];
        let intern = |f: u32, combos: &mut Vec<u32>| -> u8 {
            let i = combos.iter().position(|&c| c == f).unwrap_or_else(|| {
                combos.push(f);
                combos.len() - 1
            });
            u8::try_from(i).expect("fewer than 256 property combinations")
        };
        let range_symbols = tables::RANGES.iter().map(|&(_, _, f)| intern(f, &mut combos)).collect();
        let fixed = (0x20u32..0x80).chain([0x20E3, 0xFE0E, 0xFE0F, 0x2122, 0x3030, 0x303D, 0xA9, 0xAE]);
        for cp in fixed.chain(0xE0020..=0xE007F) {
            intern(flags(cp), &mut combos);
        }
        let mut ascii = [0u8; 128];
        for (cp, s) in ascii.iter_mut().enumerate() {
            *s = intern(flags(cp as u32), &mut combos);
        }
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .build(&grammar(&combos))
            .expect("the tokenizer grammar compiles");
        Self {
            combos,
            range_symbols,
            ascii,
            dfa,
        }
    }

    fn symbol(&self, c: char) -> u8 {
        let cp = c as u32;
        if cp < 128 {
            return self.ascii[cp as usize];
        }
        let fixed = fixed_flags(cp);
        if fixed != 0 {
            let f = table_flags(cp) | fixed;
            return self.combos.iter().position(|&x| x == f).unwrap() as u8;
        }
        let i = tables::RANGES.partition_point(|&(_, last, _)| last < cp);
        match tables::RANGES.get(i) {
            Some(&(first, _, _)) if first <= cp => self.range_symbols[i],
            _ => 0,
        }
    }

    /// Length in code points of the longest token at the start of `symbols`,
    /// 0 if none; `units[i]` is the UTF-16 length of code point i, and the
    /// scanner sees at most [`MAX_TOKEN_LENGTH`] units.
    fn longest(&self, symbols: &[u8], units: &[u8]) -> usize {
        let input = Input::new(symbols).anchored(Anchored::Yes);
        let mut state = self.dfa.start_state_forward(&input).expect("anchored start state");
        let (mut best, mut seen) = (0, 0usize);
        for i in 0.. {
            // `state` has consumed `symbols[..i]`.
            if i == symbols.len() || seen + units[i] as usize > MAX_TOKEN_LENGTH {
                if self.dfa.is_match_state(self.dfa.next_eoi_state(state)) {
                    best = i;
                }
                break;
            }
            state = self.dfa.next_state(state, symbols[i]);
            seen += units[i] as usize;
            // Matches are reported one symbol late: this says whether
            // `symbols[..i]` matched.
            if self.dfa.is_match_state(state) {
                best = i;
            } else if self.dfa.is_dead_state(state) {
                break;
            }
        }
        best
    }
}

/// The grammar of Lucene's StandardTokenizer (without token types) as a
/// regular expression over property-combination symbols.
fn grammar(combos: &[u32]) -> String {
    let class = |pred: &dyn Fn(u32) -> bool| -> String {
        let members: Vec<String> = combos
            .iter()
            .enumerate()
            .filter(|&(_, &f)| pred(f))
            .map(|(i, _)| format!("\\x{i:02X}"))
            .collect();
        assert!(!members.is_empty(), "an empty character class");
        format!("[{}]", members.concat())
    };
    let has = |bits: u32| move |f: u32| f & bits != 0;
    // X (Extend | Format | ZWJ)* → X
    let ext = format!("{}*", class(&has(EXTEND)));
    // the same without the presentation selectors, for emoji sequences
    let ext_emoji = format!(
        "{}*",
        class(&|f| f & EXTEND != 0 && f & (PRESENTATION_SELECTOR | TEXT_SELECTOR) == 0)
    );
    let with_ext = |bits: u32| format!("(?:{}{ext})", class(&has(bits)));
    let letter = with_ext(A_LETTER | HEBREW_LETTER);
    let hebrew = with_ext(HEBREW_LETTER);
    let numeric = with_ext(NUMERIC | FULLWIDTH_DIGIT);
    let katakana = with_ext(KATAKANA);
    let mid_letter = with_ext(MID_LETTER | MID_NUM_LET | SINGLE_QUOTE);
    let mid_numeric = with_ext(MID_NUM | MID_NUM_LET | SINGLE_QUOTE);
    let connector = with_ext(EXTEND_NUM_LET);
    let single_quote = with_ext(SINGLE_QUOTE);
    let double_quote = with_ext(DOUBLE_QUOTE);

    // Words: katakana runs, or runs of letter / number segments (letters and
    // digits join directly; a mid mark joins two letters or two digits;
    // Hebrew letters may end with ' or join " to another Hebrew letter);
    // connector punctuation (`_`) joins anything.
    let katakana_run = format!("(?:{katakana}(?:{connector}*{katakana})*)");
    let segments = format!(
        "(?:{hebrew}(?:{single_quote}|{double_quote}{hebrew})|{numeric}(?:(?:{connector}*|{mid_numeric}){numeric})*|{letter}(?:(?:{connector}*|{mid_letter}){letter})*)+"
    );
    let group = format!("(?:{katakana_run}|{segments})");
    let word = format!("{connector}*{group}(?:{connector}+{group})*{connector}*");

    // Emoji sequences (Unicode TR #51).
    let emoji_char = format!(
        "(?:{}{ext_emoji})",
        class(&|f| {
            let rkam = REGIONAL_INDICATOR | KEYCAP_BASE | ACCIDENTAL_EMOJI | EMOJI_MODIFIER;
            f & EXTENDED_PICTOGRAPHIC != 0 || (f & EMOJI != 0 && f & rkam == 0)
        })
    );
    let modifier_base = format!("(?:{}{ext_emoji})", class(&has(EMOJI_MODIFIER_BASE)));
    let modifier = format!("(?:{}{ext_emoji})", class(&has(EMOJI_MODIFIER)));
    let zwj = class(&has(ZWJ));
    let presentation = class(&has(PRESENTATION_SELECTOR));
    let element = format!("(?:{zwj}*{emoji_char}{presentation}?|(?:{zwj}*{modifier_base})?{modifier})");
    let emoji = format!(
        "{element}(?:(?:{zwj}{element})*|{}+{})",
        class(&has(TAG_SPEC)),
        class(&has(TAG_TERM))
    );
    let keycap = format!(
        "{}{ext_emoji}{presentation}?{}{ext_emoji}",
        class(&has(KEYCAP_BASE)),
        class(&has(KEYCAP))
    );
    let flag = format!("{0}{0}", with_ext(REGIONAL_INDICATOR));

    let south_east_asian = format!("{}+", with_ext(COMPLEX_CONTEXT));
    let ideograph = with_ext(HAN);
    let hiragana = with_ext(HIRAGANA);
    format!("(?:{emoji}|{keycap}|{flag}|{word}|{south_east_asian}|{ideograph}|{hiragana})")
}

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::new)
}

/// Lucene's StandardTokenizer: the tokens of `text`, as slices of it.
pub fn tokenize(text: &str) -> Vec<&str> {
    let scanner = scanner();
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let symbols: Vec<u8> = text.chars().map(|c| scanner.symbol(c)).collect();
    let units: Vec<u8> = text.chars().map(|c| c.len_utf16() as u8).collect();
    let byte = |i: usize| starts.get(i).copied().unwrap_or(text.len());
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < symbols.len() {
        // No rule starts with a character that has none of the properties.
        if symbols[i] == 0 {
            i += 1;
            continue;
        }
        match scanner.longest(&symbols[i..], &units[i..]) {
            0 => i += 1,
            n => {
                tokens.push(&text[byte(i)..byte(i + n)]);
                i += n;
            }
        }
    }
    tokens
}

/// EnglishPossessiveFilter: `'s`, `’s` or `＇s` (either case) at the end is removed.
fn strip_possessive(token: &str) -> &str {
    let mut chars = token.chars().rev();
    match (chars.next(), chars.next()) {
        (Some('s' | 'S'), Some(q @ ('\'' | '\u{2019}' | '\u{FF07}'))) => &token[..token.len() - 1 - q.len_utf8()],
        _ => token,
    }
}

/// LowerCaseFilter: Java's `Character.toLowerCase` on every code point.
fn lowercase(token: &str) -> String {
    token
        .chars()
        .map(|c| {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                // Only U+0130 has a multi-character lower case (i + U+0307);
                // its simple mapping is i.
                _ if c == '\u{130}' => 'i',
                _ => c,
            }
        })
        .collect()
}

/// Tokenizer, possessive filter and lower-casing: pyserini's analyzer with
/// `stemming=False, stopwords=False`.
pub fn surface_words(text: &str) -> Vec<String> {
    tokenize(text)
        .into_iter()
        .map(|t| lowercase(strip_possessive(t)))
        .filter(|w| !w.is_empty())
        .collect()
}

/// [`surface_words`] without stop words: pyserini's analyzer with `stemming=False`.
pub fn words(text: &str) -> Vec<String> {
    let mut words = surface_words(text);
    words.retain(|w| !STOP_WORDS.contains(&w.as_str()));
    words
}

/// The analysed terms of `text`: pyserini's `Analyzer(get_lucene_analyzer())`.
pub fn analyze(text: &str) -> Vec<String> {
    words(text).iter().map(|w| porter::stem(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_builds_and_splits_simple_text() {
        assert_eq!(
            tokenize("U.S.A. 3.14 1,000 don't e-mail x@y.com 北京 カタカナ 😀👍🏽"),
            vec![
                "U.S.A",
                "3.14",
                "1,000",
                "don't",
                "e",
                "mail",
                "x",
                "y.com",
                "北",
                "京",
                "カタカナ",
                "😀",
                "👍🏽"
            ]
        );
    }

    #[test]
    fn long_tokens_are_split_at_255_utf16_units() {
        let text = "a".repeat(300);
        let tokens = tokenize(&text);
        assert_eq!(tokens.iter().map(|t| t.len()).collect::<Vec<_>>(), vec![255, 45]);
    }

    #[test]
    fn possessives_and_lowercase_follow_lucene() {
        assert_eq!(
            surface_words("JOHN'S O’Neil’s İstanbul ΣΟΦΟΣ"),
            vec!["john", "o’neil", "istanbul", "σοφοσ"]
        );
    }
}
