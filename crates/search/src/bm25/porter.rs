//! The Porter stemmer as Lucene's `PorterStemFilter` applies it: Martin
//! Porter's algorithm in the form of his reference C implementation, which
//! differs from the published paper in three ways that matter here:
//!
//! * words of one or two UTF-16 units are left alone (`is` stays `is`, `us`
//!   stays `us`; the paper's step 1a would give `i`, `u`);
//! * step 2 maps `-bli` to `-ble` instead of `-abli` to `-able`
//!   (`possibly` → `possibl`, the paper gives `possibli`);
//! * step 2 also maps `-logi` to `-log` (`analogy` → `analog`, the paper
//!   gives `analogi`).
//!
//! The word is handled as UTF-16 units, as Java does: only ASCII `a e i o u`
//! (and `y` after a consonant) are vowels, every other unit, including each
//! half of a surrogate pair, is a consonant.

/// The stem of a lower-cased word.
pub fn stem(word: &str) -> String {
    let units: Vec<u16> = word.encode_utf16().collect();
    if units.len() <= 2 {
        return word.to_string();
    }
    let mut s = Stemmer { b: units, j: 0 };
    s.step1ab();
    s.step1c();
    s.step2();
    s.step3();
    s.step4();
    s.step5();
    String::from_utf16_lossy(&s.b)
}

struct Stemmer {
    /// The word so far; its last unit is at `k()`.
    b: Vec<u16>,
    /// End of the stem before the suffix that `ends` last matched (inclusive,
    /// may be -1).
    j: isize,
}

impl Stemmer {
    fn k(&self) -> isize {
        self.b.len() as isize - 1
    }

    fn at(&self, i: isize) -> u16 {
        self.b[i as usize]
    }

    fn is(&self, i: isize, c: char) -> bool {
        self.at(i) == c as u16
    }

    /// Whether unit `i` is a consonant.
    fn cons(&self, i: isize) -> bool {
        match char::from_u32(self.at(i) as u32) {
            Some('a' | 'e' | 'i' | 'o' | 'u') => false,
            Some('y') => i == 0 || !self.cons(i - 1),
            _ => true,
        }
    }

    /// The number of vowel-consonant sequences in `b[..=j]`.
    fn m(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        loop {
            if i > self.j {
                return n;
            }
            if !self.cons(i) {
                break;
            }
            i += 1;
        }
        i += 1;
        loop {
            loop {
                if i > self.j {
                    return n;
                }
                if self.cons(i) {
                    break;
                }
                i += 1;
            }
            i += 1;
            n += 1;
            loop {
                if i > self.j {
                    return n;
                }
                if !self.cons(i) {
                    break;
                }
                i += 1;
            }
            i += 1;
        }
    }

    /// Whether `b[..=j]` contains a vowel.
    fn vowel_in_stem(&self) -> bool {
        (0..=self.j).any(|i| !self.cons(i))
    }

    /// Whether `b[i-1..=i]` is a double consonant.
    fn double_consonant(&self, i: isize) -> bool {
        i >= 1 && self.at(i) == self.at(i - 1) && self.cons(i)
    }

    /// Whether `b[i-2..=i]` is consonant-vowel-consonant with the last one
    /// not w, x or y (as in hop, not in snow, box, tray).
    fn cvc(&self, i: isize) -> bool {
        if i < 2 || !self.cons(i) || self.cons(i - 1) || !self.cons(i - 2) {
            return false;
        }
        !(self.is(i, 'w') || self.is(i, 'x') || self.is(i, 'y'))
    }

    /// Whether the word ends with `s`; if so `j` marks the end of the rest.
    fn ends(&mut self, s: &str) -> bool {
        let len = s.len();
        if len > self.b.len()
            || !self.b[self.b.len() - len..]
                .iter()
                .copied()
                .eq(s.bytes().map(u16::from))
        {
            return false;
        }
        self.j = (self.b.len() - len) as isize - 1;
        true
    }

    /// Replaces `b[j+1..]` with `s`.
    fn set_to(&mut self, s: &str) {
        self.b.truncate((self.j + 1) as usize);
        self.b.extend(s.bytes().map(u16::from));
    }

    /// [`Self::set_to`] when the stem has a vowel-consonant sequence.
    fn replace(&mut self, s: &str) {
        if self.m() > 0 {
            self.set_to(s);
        }
    }

    fn truncate_to_j(&mut self) {
        self.b.truncate((self.j + 1) as usize);
    }

    fn pop(&mut self) {
        self.b.pop();
    }

    /// Plurals and -ed / -ing: caresses → caress, ponies → poni, cats → cat,
    /// feed → feed, agreed → agree, plastered → plaster, motoring → motor,
    /// hopping → hop, filing → file.
    fn step1ab(&mut self) {
        if self.is(self.k(), 's') {
            if self.ends("sses") {
                self.b.truncate(self.b.len() - 2);
            } else if self.ends("ies") {
                self.set_to("i");
            } else if !self.is(self.k() - 1, 's') {
                self.pop();
            }
        }
        if self.ends("eed") {
            if self.m() > 0 {
                self.pop();
            }
        } else if (self.ends("ed") || self.ends("ing")) && self.vowel_in_stem() {
            self.truncate_to_j();
            if self.ends("at") {
                self.set_to("ate");
            } else if self.ends("bl") {
                self.set_to("ble");
            } else if self.ends("iz") {
                self.set_to("ize");
            } else if self.double_consonant(self.k()) {
                let k = self.k();
                if !(self.is(k, 'l') || self.is(k, 's') || self.is(k, 'z')) {
                    self.pop();
                }
            } else if self.m() == 1 && self.cvc(self.k()) {
                self.set_to("e");
            }
        }
    }

    /// A final y becomes i when the stem has a vowel.
    fn step1c(&mut self) {
        if self.ends("y") && self.vowel_in_stem() {
            let k = self.k() as usize;
            self.b[k] = 'i' as u16;
        }
    }

    /// Double suffixes to single ones (-ization → -ize, …), when m > 0.
    fn step2(&mut self) {
        if self.k() < 1 {
            return;
        }
        const RULES: &[(char, &[(&str, &str)])] = &[
            ('a', &[("ational", "ate"), ("tional", "tion")]),
            ('c', &[("enci", "ence"), ("anci", "ance")]),
            ('e', &[("izer", "ize")]),
            (
                'l',
                &[
                    ("bli", "ble"),
                    ("alli", "al"),
                    ("entli", "ent"),
                    ("eli", "e"),
                    ("ousli", "ous"),
                ],
            ),
            ('o', &[("ization", "ize"), ("ation", "ate"), ("ator", "ate")]),
            (
                's',
                &[
                    ("alism", "al"),
                    ("iveness", "ive"),
                    ("fulness", "ful"),
                    ("ousness", "ous"),
                ],
            ),
            ('t', &[("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")]),
            ('g', &[("logi", "log")]),
        ];
        self.apply(self.k() - 1, RULES);
    }

    /// -ic-, -full, -ness etc.
    fn step3(&mut self) {
        const RULES: &[(char, &[(&str, &str)])] = &[
            ('e', &[("icate", "ic"), ("ative", ""), ("alize", "al")]),
            ('i', &[("iciti", "ic")]),
            ('l', &[("ical", "ic"), ("ful", "")]),
            ('s', &[("ness", "")]),
        ];
        self.apply(self.k(), RULES);
    }

    /// The first rule of the group chosen by unit `at` whose suffix the word
    /// has: its replacement applies if m > 0, and no other rule is tried.
    fn apply(&mut self, at: isize, rules: &[(char, &[(&str, &str)])]) {
        if let Some((_, group)) = rules.iter().find(|(c, _)| self.is(at, *c)) {
            for (suffix, replacement) in group.iter() {
                if self.ends(suffix) {
                    self.replace(replacement);
                    return;
                }
            }
        }
    }

    /// -ant, -ence etc. removed when m > 1.
    fn step4(&mut self) {
        if self.k() < 1 {
            return;
        }
        let found = match char::from_u32(self.at(self.k() - 1) as u32) {
            Some('a') => self.ends("al"),
            Some('c') => self.ends("ance") || self.ends("ence"),
            Some('e') => self.ends("er"),
            Some('i') => self.ends("ic"),
            Some('l') => self.ends("able") || self.ends("ible"),
            Some('n') => self.ends("ant") || self.ends("ement") || self.ends("ment") || self.ends("ent"),
            Some('o') => {
                (self.ends("ion") && self.j >= 0 && (self.is(self.j, 's') || self.is(self.j, 't'))) || self.ends("ou")
            }
            Some('s') => self.ends("ism"),
            Some('t') => self.ends("ate") || self.ends("iti"),
            Some('u') => self.ends("ous"),
            Some('v') => self.ends("ive"),
            Some('z') => self.ends("ize"),
            _ => false,
        };
        if found && self.m() > 1 {
            self.truncate_to_j();
        }
    }

    /// A final -e removed when m > 1 (or m = 1 and not cvc), and -ll → -l
    /// when m > 1.
    fn step5(&mut self) {
        // m() keeps looking at the whole word, a removed -e included.
        self.j = self.k();
        let mut k = self.k();
        if self.is(k, 'e') {
            let m = self.m();
            if m > 1 || (m == 1 && !self.cvc(k - 1)) {
                k -= 1;
            }
        }
        if self.is(k, 'l') && self.double_consonant(k) && self.m() > 1 {
            k -= 1;
        }
        self.b.truncate((k + 1) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn porters_examples() {
        for (word, expected) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("generalizations", "gener"),
            ("oscillators", "oscil"),
        ] {
            assert_eq!(stem(word), expected, "{word}");
        }
    }

    #[test]
    fn the_reference_implementations_departures() {
        assert_eq!(stem("is"), "is");
        assert_eq!(stem("us"), "us");
        assert_eq!(stem("possibly"), "possibl");
        assert_eq!(stem("analogy"), "analog");
        assert_eq!(stem("biology"), "biologi");
    }
}
