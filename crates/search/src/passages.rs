//! Splitting documents into passages for the search index: paragraphs
//! (separated by blank lines, and by Markdown headings) are packed into
//! passages of at most `max_words` words; a longer paragraph is cut into
//! windows of `max_words` words.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub text: String,
    /// 1-based line where the passage starts.
    pub line: usize,
}

pub fn split(text: &str, max_words: usize) -> Vec<Passage> {
    let max_words = max_words.max(1);
    let mut passages = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut start = 0;
    for (line, words) in paragraphs(text) {
        if words.len() > max_words {
            flush(&mut passages, &mut current, start);
            passages.extend(words.chunks(max_words).map(|w| Passage {
                text: w.join(" "),
                line,
            }));
            continue;
        }
        if current.len() + words.len() > max_words {
            flush(&mut passages, &mut current, start);
        }
        if current.is_empty() {
            start = line;
        }
        current.extend(words);
    }
    flush(&mut passages, &mut current, start);
    passages
}

fn flush(passages: &mut Vec<Passage>, words: &mut Vec<&str>, line: usize) {
    if !words.is_empty() {
        passages.push(Passage {
            text: words.join(" "),
            line,
        });
        words.clear();
    }
}

/// `(first line, words)` of every paragraph.
fn paragraphs(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut out: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut open = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        if !open || trimmed.starts_with('#') {
            out.push((i + 1, Vec::new()));
            open = true;
        }
        out.last_mut()
            .expect("a paragraph is open")
            .1
            .extend(trimmed.split_whitespace());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_paragraphs_and_keeps_their_first_line() {
        let text = "# Title\nintro words here\n\nsecond para\n\n\nthird para is here\n";
        let p = split(text, 6);
        assert_eq!(
            p[0],
            Passage {
                text: "# Title intro words here".into(),
                line: 1
            }
        );
        // Short paragraphs are packed together up to the word budget.
        assert_eq!(
            p[1],
            Passage {
                text: "second para third para is here".into(),
                line: 4
            }
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn headings_start_new_paragraphs_and_long_ones_are_windowed() {
        let p = split("one two\n## Heading\nthree four five six seven", 3);
        let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, vec!["one two", "## Heading three", "four five six", "seven"]);
    }
}
