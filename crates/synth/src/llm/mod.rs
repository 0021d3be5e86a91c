//! The LLMs ReMixer talks to, behind one trait: an OpenAI-compatible HTTP
//! client ([`openai`]) and an embedded GGUF model ([`local`]). Stages only see
//! [`Llm`], so any endpoint (vLLM, SGLang, llama-server, Ollama, OpenAI) or a
//! local file plugs in alike.

pub mod answer;
mod decode;
pub mod local;
pub mod openai;
pub mod template;

use serde::{Deserialize, Serialize};

pub use answer::AnswerFormat;

/// One chat message in the OpenAI shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// Sampling parameters of a call; `None` leaves the backend's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub temperature: f64,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<usize>,
    pub max_tokens: usize,
    /// Assistant prefill: the answer begins with this text and the model
    /// continues it (e.g. `<score>` to ask for the verdict at once). The
    /// returned text includes it.
    #[serde(default)]
    pub prefill: Option<String>,
    /// Enforce the stage's answer format (a score or yes/no stage), so any
    /// model ends in a parseable verdict; `false` leaves the model free.
    #[serde(default = "enforced")]
    pub constrain: bool,
}

fn enforced() -> bool {
    true
}

/// A chat request: the messages, how to sample, and a seed that makes a
/// local model's answer reproducible for the same item.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub messages: &'a [Message],
    pub sampling: &'a Sampling,
    pub seed: u64,
    /// The format the answer must follow, if the backend can enforce it.
    pub answer: Option<AnswerFormat>,
}

/// An answer with its token usage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The answer stopped at `max_tokens` (or the end of the context)
    /// before the model ended it: OpenAI's `finish_reason: "length"`.
    pub truncated: bool,
    /// The backend forced the verdict: the model ended, or ran out of
    /// room, without one, or preferred another word where it was due.
    /// Only the embedded backend knows; servers' grammars never say.
    pub forced: bool,
}

impl Completion {
    /// Why the answer is unfinished, if it is: cut off at the token limit,
    /// or inside a `<think>` block it never closes (a reasoning model cut
    /// off before its verdict, whatever the server reports). Such an answer
    /// is a failed call, never parsed.
    pub fn unfinished(&self) -> Option<&'static str> {
        if self.truncated {
            Some("truncated at max_tokens")
        } else if open_reasoning(&self.text) {
            Some("truncated: the <think> block never ends")
        } else {
            None
        }
    }
}

/// Whether the last `<think>` of an answer has no `</think>` after it.
pub(crate) fn open_reasoning(answer: &str) -> bool {
    match (answer.rfind("<think>"), answer.rfind("</think>")) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Worth another try: 429, 5xx, a timeout, a dropped connection.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: a bad request, bad auth, an unusable answer.
    #[error("{0}")]
    Permanent(String),
}

impl LlmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A chat model. Implementations are shared by the worker threads of a stage.
pub trait Llm: Send + Sync {
    /// The model's name, recorded with every synthesised item.
    fn name(&self) -> &str;
    /// How many calls may be in flight at once.
    fn concurrency(&self) -> usize;
    fn chat(&self, request: &Request) -> Result<Completion, LlmError>;
}

/// `answer` as a continuation of `prefill`: servers differ in whether they
/// echo the prefill (llama-server does, vLLM does not).
pub fn with_prefill(prefill: Option<&str>, answer: String) -> String {
    match prefill {
        Some(p) if !answer.starts_with(p) => format!("{p}{answer}"),
        _ => answer,
    }
}

/// Drops a leading reasoning block: everything up to the first `</think>`
/// (the released generator strips the marker the same way).
pub fn strip_reasoning(answer: &str) -> &str {
    match answer.find("</think>") {
        Some(end) => answer[end + "</think>".len()..].trim(),
        None => answer.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str, truncated: bool) -> Completion {
        Completion {
            text: text.into(),
            truncated,
            ..Default::default()
        }
    }

    #[test]
    fn cut_off_answers_and_open_reasoning_blocks_are_unfinished() {
        assert_eq!(answer("Yes", true).unfinished(), Some("truncated at max_tokens"));
        assert_eq!(answer("Yes", false).unfinished(), None);
        let open = Some("truncated: the <think> block never ends");
        assert_eq!(answer("<think>the passage is about", false).unfinished(), open);
        assert_eq!(answer("<think>a</think>No <think>b", false).unfinished(), open);
        assert_eq!(answer("<think>a</think>No", false).unfinished(), None);
        // A chat template may open the block in the prompt: only its end shows.
        assert_eq!(answer("plan</think>Yes", false).unfinished(), None);
    }

    #[test]
    fn strips_a_leading_reasoning_block() {
        assert_eq!(strip_reasoning("<think>hmm</think>\n\n What is X? "), "What is X?");
        assert_eq!(strip_reasoning("hmm</think>Q"), "Q");
        assert_eq!(strip_reasoning("  plain "), "plain");
    }
}
