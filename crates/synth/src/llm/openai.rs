//! An OpenAI-compatible chat-completions client (`POST {base}/chat/completions`):
//! vLLM, SGLang, llama.cpp's llama-server, Ollama and OpenAI itself.
//!
//! Load is spread over several base URLs (each call goes to the one with the
//! fewest calls in flight); 429, 5xx, timeouts, dropped connections and
//! unreadable answers are retried with exponential back-off (honouring
//! `Retry-After`), other errors fail the call at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AnswerFormat, Completion, Llm, LlmError, Request};

/// How the server is told a stage's answer format. Servers ignore or refuse
/// each other's fields, so the kind is named rather than guessed; with
/// `None` the answer is only parsed, as a model free to ignore the rubric
/// wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Structured {
    /// No structured-output field (OpenAI, Ollama, unknown servers).
    #[default]
    None,
    /// llama.cpp's llama-server: a GBNF `grammar`.
    LlamaServer,
    /// vLLM 0.11 and later: `structured_outputs.regex`.
    Vllm,
    /// vLLM before 0.12 (the field was removed there): `guided_regex`.
    VllmLegacy,
    /// SGLang: `regex`.
    Sglang,
}

impl Structured {
    /// Adds the server's constraint for `format` to a request body.
    fn constrain(self, body: &mut Value, format: AnswerFormat, max_tokens: usize) {
        match self {
            Self::None => {}
            Self::LlamaServer => body["grammar"] = json!(format.gbnf(max_tokens)),
            Self::Vllm => body["structured_outputs"] = json!({ "regex": format.regex() }),
            Self::VllmLegacy => body["guided_regex"] = json!(format.regex()),
            Self::Sglang => body["regex"] = json!(format.regex()),
        }
    }
}

/// Where and how to call.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URLs ending before `/chat/completions`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_urls: Vec<String>,
    pub model: String,
    pub api_key: Option<String>,
    /// Calls in flight at once, over all base URLs.
    pub concurrency: usize,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Extra tries after the first, for transient failures.
    pub max_retries: u32,
    /// The first back-off; it doubles with each retry, up to a minute.
    pub backoff: Duration,
    /// The server's structured-output option, for stages that ask for a format.
    pub structured: Structured,
}

pub struct OpenAi {
    config: OpenAiConfig,
    client: reqwest::blocking::Client,
    in_flight: Vec<AtomicUsize>,
    next: Mutex<usize>,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    /// `"length"` when the answer hit `max_tokens`.
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        if config.base_urls.is_empty() {
            return Err(LlmError::Permanent(
                "no base URL given for the OpenAI-compatible backend".into(),
            ));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| LlmError::Permanent(format!("cannot build the HTTP client: {e}")))?;
        let in_flight = config.base_urls.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Self {
            config,
            client,
            in_flight,
            next: Mutex::new(0),
        })
    }

    /// The least-loaded base URL, ties broken round-robin.
    fn pick(&self) -> usize {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.in_flight.len();
        let start = *next % n;
        *next = next.wrapping_add(1);
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| self.in_flight[i].load(Ordering::Relaxed))
            .expect("at least one base URL")
    }

    fn body(&self, request: &Request) -> Value {
        let s = request.sampling;
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "seed": request.seed,
            "stream": false,
        });
        if let Some(top_p) = s.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(top_k) = s.top_k {
            body["top_k"] = json!(top_k);
        }
        if let Some(prefill) = &s.prefill {
            // A final assistant message is continued: llama-server does so by
            // itself, vLLM and SGLang when told with these two fields.
            let mut messages = request.messages.to_vec();
            messages.push(super::Message {
                role: "assistant".into(),
                content: prefill.clone(),
            });
            body["messages"] = json!(messages);
            body["continue_final_message"] = json!(true);
            body["add_generation_prompt"] = json!(false);
        }
        if let Some(format) = request.answer {
            self.config.structured.constrain(&mut body, format, s.max_tokens);
        }
        body
    }

    /// One try against one base URL; `Err((error, retry_after))`.
    fn try_once(
        &self,
        base: usize,
        body: &Value,
        prefill: Option<&str>,
    ) -> Result<Completion, (LlmError, Option<Duration>)> {
        let url = format!("{}/chat/completions", self.config.base_urls[base].trim_end_matches('/'));
        let mut call = self.client.post(&url).json(body);
        if let Some(key) = &self.config.api_key {
            call = call.bearer_auth(key);
        }
        let response = call
            .send()
            .map_err(|e| (LlmError::Transient(format!("{url}: {}", error_chain(&e))), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().map_err(|e| {
            (
                LlmError::Transient(format!("{url}: reading the answer: {}", error_chain(&e))),
                None,
            )
        })?;
        if !status.is_success() {
            let message = format!("{url}: HTTP {status}: {}", snippet(&text));
            let transient = status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408;
            let error = if transient {
                LlmError::Transient(message)
            } else {
                LlmError::Permanent(message)
            };
            return Err((error, retry_after));
        }
        let parsed: Response = serde_json::from_str(&text).map_err(|e| {
            let message = format!("{url}: not a chat completion ({e}): {}", snippet(&text));
            (LlmError::Transient(message), None)
        })?;
        let choice = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| (LlmError::Transient(format!("{url}: the answer has no choices")), None))?;
        let usage = parsed.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Ok(Completion {
            text: super::with_prefill(prefill, choice.message.content.unwrap_or_default()),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            truncated: choice.finish_reason.as_deref() == Some("length"),
            forced: false,
        })
    }
}

impl Llm for OpenAi {
    fn name(&self) -> &str {
        &self.config.model
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    fn chat(&self, request: &Request) -> Result<Completion, LlmError> {
        let body = self.body(request);
        let mut attempt = 0;
        loop {
            let base = self.pick();
            self.in_flight[base].fetch_add(1, Ordering::Relaxed);
            let result = self.try_once(base, &body, request.sampling.prefill.as_deref());
            self.in_flight[base].fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(completion) => return Ok(completion),
                Err((error, retry_after)) if error.is_transient() && attempt < self.config.max_retries => {
                    let backoff = self.config.backoff.saturating_mul(1 << attempt.min(16));
                    let wait = retry_after.unwrap_or(backoff).min(Duration::from_secs(60));
                    tracing::debug!("retrying in {wait:?} after: {error}");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err((error, _)) if attempt > 0 => {
                    return Err(match error {
                        LlmError::Transient(m) => LlmError::Transient(format!("{m} (after {} tries)", attempt + 1)),
                        permanent => permanent,
                    });
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// An error with its causes, which name timeouts and refused connections.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into(),
    }
}
