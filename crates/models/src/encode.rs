//! The encode contract: how a text becomes tokens and a vector, decided in
//! one place for every caller (embed, search, eval, serve, train, synth).
//!
//! It follows sentence-transformers' `encode(prompt_name=…, prompt=…)` and
//! its `encode_query` / `encode_document`: an explicit prompt wins over a
//! prompt name; with neither, the side's own prompt (`query`; `document`,
//! `passage` or `corpus`) and then the folder's `default_prompt_name` apply.
//! [`Prompt::Instruction`] is the ReasonEmbed query format. The options
//! resolve against a model into [`EncodeSettings`]: exactly the per-call
//! inputs that change a vector, which caches put in their keys.

use serde::Serialize;

/// Very long texts are cut to this many characters per token of the max
/// length before tokenisation, as text-embeddings-inference does, so that a
/// 2 MB text is not tokenised in full only to be truncated.
pub const MAX_CHARS_PER_TOKEN: usize = 250;

/// Which side of retrieval the texts are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// sentence-transformers' plain `encode`.
    #[default]
    Plain,
    /// `encode_query`: the folder's `query` prompt by default.
    Query,
    /// `encode_document`: the folder's `document`, `passage` or `corpus` prompt by default.
    Document,
}

/// The text put in front of every input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Prompt {
    /// The side's prompt, else the folder's `default_prompt_name`, else none.
    #[default]
    Auto,
    /// No prompt, whatever the folder says.
    None,
    /// A prompt of the folder by name (an unknown name is an error).
    Name(String),
    /// This exact prefix.
    Text(String),
    /// A task instruction, in the ReasonEmbed format `Instruct: {instruction}\nQuery: `.
    Instruction(String),
}

impl Prompt {
    /// `--instruction` or `--prompt-name` as given on a command line.
    pub fn from_flags(instruction: Option<&str>, prompt_name: Option<&str>) -> Self {
        match (instruction, prompt_name) {
            (Some(i), _) => Self::Instruction(i.to_string()),
            (None, Some(name)) => Self::Name(name.to_string()),
            (None, None) => Self::Auto,
        }
    }
}

/// How to encode a list of texts.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub side: Side,
    pub prompt: Prompt,
    /// Tokens per text, special tokens included; `None`: the model's.
    pub max_length: Option<usize>,
    /// L2-normalise; `None`: as the model folder says.
    pub normalize: Option<bool>,
    /// Texts per forward pass (texts are grouped by length first).
    pub batch_size: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            side: Side::Plain,
            prompt: Prompt::Auto,
            max_length: None,
            normalize: None,
            batch_size: 32,
        }
    }
}

impl EncodeOptions {
    pub fn query(prompt: Prompt) -> Self {
        Self {
            side: Side::Query,
            prompt,
            ..Default::default()
        }
    }

    pub fn document() -> Self {
        Self {
            side: Side::Document,
            ..Default::default()
        }
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_max_length(mut self, max_length: Option<usize>) -> Self {
        self.max_length = max_length;
        self
    }
}

/// What [`EncodeOptions`] resolve to for one model: every per-call input
/// that changes a vector. Together with the model's identity and the texts,
/// it keys cached vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodeSettings {
    pub prompt: String,
    pub max_length: usize,
    pub normalize: bool,
}

/// The ReasonEmbed query format: `Instruct: {instruction}\nQuery: {text}`.
pub fn with_instruction(instruction: &str, text: &str) -> String {
    format!("Instruct: {instruction}\nQuery: {text}")
}

/// The prompt name sentence-transformers picks when the caller names none.
pub(crate) fn default_prompt_name<'a>(
    side: Side,
    prompts: &'a std::collections::BTreeMap<String, String>,
    default: Option<&'a str>,
) -> Option<&'a str> {
    let own: &[&str] = match side {
        Side::Plain => &[],
        Side::Query => &["query"],
        Side::Document => &["document", "passage", "corpus"],
    };
    own.iter()
        .find_map(|name| prompts.get_key_value(*name).map(|(k, _)| k.as_str()))
        .or(default)
}

/// `text` cut to at most `max_chars` characters, on a character boundary.
pub(crate) fn cut_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn sides_pick_their_prompt_before_the_default_one() {
        let prompts: BTreeMap<String, String> = [("query", "q: "), ("passage", "p: "), ("corpus", "c: ")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(default_prompt_name(Side::Query, &prompts, Some("x")), Some("query"));
        assert_eq!(default_prompt_name(Side::Document, &prompts, None), Some("passage"));
        assert_eq!(default_prompt_name(Side::Plain, &prompts, Some("x")), Some("x"));
        assert_eq!(default_prompt_name(Side::Plain, &prompts, None), None);
        assert_eq!(
            default_prompt_name(Side::Document, &BTreeMap::new(), Some("x")),
            Some("x")
        );
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut_chars("héllo", 2), "hé");
        assert_eq!(cut_chars("hé", 5), "hé");
        assert_eq!(cut_chars("", 0), "");
    }
}
