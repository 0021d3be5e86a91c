//! The answer formats a stage's parser reads, as constraints a backend can
//! enforce: the embedded model masks its logits ([`super::decode`]), a server
//! gets a grammar or a regex ([`super::openai`]). A small model that cannot
//! follow the rubric by itself still ends every answer in a parseable verdict.

use serde::{Deserialize, Serialize};

/// Tokens kept for the score tag when a grammar bounds the reasoning before
/// it: `<score>N</score>` takes about 7 tokens in BPE vocabularies.
const TAIL_TOKENS: usize = 16;

/// Characters of reasoning per token a grammar allows: English text runs
/// at about 4 characters a BPE token, so 3 leaves a margin. Text denser in
/// tokens (code, digits) may still reach `max_tokens` first; such an answer
/// is cut off and counted, as without a grammar.
const CHARS_PER_TOKEN: usize = 3;

/// What an answer must end in (or open with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerFormat {
    /// Free reasoning, then `<score>N</score>` with N in 1–5 (stage 3).
    Score1to5,
    /// `Yes` or `No` as the answer's first word (stage 0): the prompt asks
    /// for nothing else, and the parser reads only the first word.
    YesNo,
}

impl AnswerFormat {
    /// Whether the model writes freely before the verdict (it is then forced
    /// only when the model ends or runs out of room without one), or the
    /// verdict opens the answer.
    pub fn reasons_first(self) -> bool {
        matches!(self, Self::Score1to5)
    }

    /// The literal before the verdict word.
    pub fn opening(self) -> &'static str {
        match self {
            Self::Score1to5 => "<score>",
            Self::YesNo => "",
        }
    }

    /// The verdict words; none is a prefix of another, so a word is known
    /// to be complete as soon as it is written.
    pub fn choices(self) -> &'static [&'static str] {
        match self {
            Self::Score1to5 => &["1", "2", "3", "4", "5"],
            Self::YesNo => &["Yes", "No"],
        }
    }

    /// The literal after the verdict word.
    pub fn closing(self) -> &'static str {
        match self {
            Self::Score1to5 => "</score>",
            Self::YesNo => "",
        }
    }

    /// Whether `answer` already ends in a verdict of this format written by
    /// the model, outside any reasoning block (a verdict quoted while
    /// thinking does not count).
    pub fn is_closed_by(self, answer: &str) -> bool {
        if super::open_reasoning(answer) {
            return false;
        }
        let Some(rest) = answer.trim_end().strip_suffix(self.closing()) else {
            return false;
        };
        // A format without an opening literal is its verdict word alone.
        let start = match self.opening() {
            "" => 0,
            opening => match rest.rfind(opening) {
                Some(at) => at + opening.len(),
                None => return false,
            },
        };
        self.choices().contains(&rest[start..].trim())
    }

    /// llama.cpp's GBNF grammar (llama-server's `grammar` field) for an
    /// answer of at most `max_tokens`. The score grammar lets the model
    /// reason in any text (`.` matches any character, newlines included)
    /// before the tag, and ends the answer at the closed tag. A server
    /// cannot reserve room for the tag as the embedded backend does, so the
    /// reasoning is bounded in characters instead: a model still writing at
    /// the bound must open the tag (SmolLM2 otherwise rambles to the limit).
    pub fn gbnf(self, max_tokens: usize) -> String {
        match self {
            Self::Score1to5 => {
                let chars = max_tokens.saturating_sub(TAIL_TOKENS) * CHARS_PER_TOKEN;
                format!("root ::= .{{0,{chars}}} \"<score>\" [1-5] \"</score>\"")
            }
            Self::YesNo => "root ::= \"Yes\" | \"No\"".into(),
        }
    }

    /// The same constraint as a regular expression (vLLM's and SGLang's
    /// guided decoding), matched against the whole answer. Unbounded: a
    /// repetition bound of thousands compiles to as many automaton states
    /// there, and the capable models those servers run end by themselves;
    /// the server forbids them to end before the tag.
    pub fn regex(self) -> &'static str {
        match self {
            Self::Score1to5 => r"[\s\S]*<score>[1-5]</score>",
            Self::YesNo => "(Yes|No)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::annotate::parse_score;
    use crate::stages::clean::parse_yes_no;

    #[test]
    fn a_closed_verdict_is_recognised_only_outside_reasoning() {
        let score = AnswerFormat::Score1to5;
        assert!(score.is_closed_by("analysis...\n<score>4</score>"));
        assert!(score.is_closed_by("<score> 2 </score>\n"));
        assert!(!score.is_closed_by("<score>6</score>"));
        assert!(!score.is_closed_by("<score>4</score> and more"));
        assert!(!score.is_closed_by("<think>say <score>4</score>"));
        assert!(score.is_closed_by("<think>a</think><score>1</score>"));
        assert!(AnswerFormat::YesNo.is_closed_by("No"));
        assert!(!AnswerFormat::YesNo.is_closed_by("Not sure"));
    }

    /// Every answer a constraint admits is read by the stage's parser.
    #[test]
    fn the_constrained_answers_parse() {
        let regex = |f: AnswerFormat| regex::Regex::new(&format!("^(?:{})$", f.regex())).unwrap();
        let score = regex(AnswerFormat::Score1to5);
        for answer in ["<score>3</score>", "The document...\nso\n<score>5</score>"] {
            assert!(score.is_match(answer), "{answer}");
            assert!(parse_score(answer) > 0, "{answer}");
        }
        assert!(!score.is_match("<score>3</score> trailing"));
        let yes_no = regex(AnswerFormat::YesNo);
        for (answer, verdict) in [("Yes", true), ("No", false)] {
            assert!(yes_no.is_match(answer));
            assert_eq!(parse_yes_no(answer), Some(verdict));
        }
    }

    #[test]
    fn the_score_grammar_bounds_the_reasoning_by_the_token_budget() {
        let grammar = AnswerFormat::Score1to5.gbnf(116);
        assert_eq!(grammar, "root ::= .{0,300} \"<score>\" [1-5] \"</score>\"");
        // No room for reasoning: the verdict at once.
        assert!(AnswerFormat::Score1to5.gbnf(8).starts_with("root ::= .{0,0} "));
        assert_eq!(AnswerFormat::YesNo.gbnf(8), "root ::= \"Yes\" | \"No\"");
    }
}
