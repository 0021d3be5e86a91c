//! The OpenAI-compatible client against a fake HTTP server (named as such: a
//! scripted loopback server) for the faults a real one rarely shows on cue:
//! 500s, 429 with Retry-After, garbage, timeouts, a refused connection, and
//! load spread over several base URLs. The real server: llama_server.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reasonembed_synth::llm::openai::{OpenAi, OpenAiConfig, Structured};
use reasonembed_synth::llm::{AnswerFormat, Completion, Llm, Message, Request, Sampling};
use serde_json::Value;

/// What the fake server does with one request.
#[derive(Clone)]
enum Reply {
    Ok(&'static str),
    /// An answer that hit `max_tokens` (`finish_reason: "length"`).
    Cut(&'static str),
    Status(u16, &'static str),
    Garbage,
    Sleep(Duration),
}

/// A fake chat-completions server answering from a script (the last reply
/// repeats), recording every request body.
struct FakeServer {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

fn completion(text: &str, finish_reason: &str) -> String {
    serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3},
    })
    .to_string()
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Value> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl FakeServer {
    fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bodies.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, h, script) = (b.clone(), h.clone(), script.clone());
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    while let Some(body) = read_request(&mut reader) {
                        b.lock().unwrap().push(body);
                        let n = h.fetch_add(1, Ordering::SeqCst);
                        let reply = script[n.min(script.len() - 1)].clone();
                        let (status, extra, text) = match reply {
                            Reply::Ok(text) => (200, "", completion(text, "stop")),
                            Reply::Cut(text) => (200, "", completion(text, "length")),
                            Reply::Status(429, _) => (429, "Retry-After: 0\r\n", "slow down".to_string()),
                            Reply::Status(code, text) => (code, "", text.to_string()),
                            Reply::Garbage => (200, "", "<html>proxy error</html>".to_string()),
                            Reply::Sleep(d) => {
                                std::thread::sleep(d);
                                (200, "", completion("late", "stop"))
                            }
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if writer.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, bodies, hits }
    }
}

fn client(urls: Vec<String>, timeout_ms: u64, max_retries: u32) -> OpenAi {
    OpenAi::new(config(urls, timeout_ms, max_retries)).unwrap()
}

fn config(urls: Vec<String>, timeout_ms: u64, max_retries: u32) -> OpenAiConfig {
    OpenAiConfig {
        base_urls: urls,
        model: "served-model".into(),
        api_key: Some("sk-test".into()),
        concurrency: 4,
        timeout: Duration::from_millis(timeout_ms),
        max_retries,
        backoff: Duration::from_millis(10),
        structured: Structured::None,
    }
}

fn ask(llm: &OpenAi) -> Result<String, reasonembed_synth::llm::LlmError> {
    complete(llm).map(|c| c.text)
}

fn complete(llm: &OpenAi) -> Result<Completion, reasonembed_synth::llm::LlmError> {
    let messages = [Message::user("Hi")];
    let sampling = Sampling {
        temperature: 0.7,
        top_p: Some(0.95),
        top_k: Some(40),
        max_tokens: 32,
        prefill: None,
        constrain: true,
    };
    llm.chat(&Request {
        messages: &messages,
        sampling: &sampling,
        seed: 9,
        answer: None,
    })
}

#[test]
fn finish_reason_length_marks_the_answer_truncated() {
    let server = FakeServer::start(vec![Reply::Ok("Yes"), Reply::Cut("<score>")]);
    let llm = client(vec![server.url.clone()], 5000, 0);
    assert!(!complete(&llm).unwrap().truncated);
    let cut = complete(&llm).unwrap();
    assert!(cut.truncated && cut.unfinished().is_some(), "{cut:?}");
}

#[test]
fn sends_the_openai_request_and_reads_text_and_usage() {
    // llama-server echoes the prefill, vLLM answers with the continuation only.
    let server = FakeServer::start(vec![Reply::Ok("<score>4</score>"), Reply::Ok("5</score>")]);
    let llm = client(vec![server.url.clone()], 5000, 0);
    let messages = [Message::user("Rate it")];
    let sampling = Sampling {
        temperature: 0.0,
        top_p: None,
        top_k: None,
        max_tokens: 8,
        prefill: Some("<score>".into()),
        constrain: true,
    };
    let request = Request {
        messages: &messages,
        sampling: &sampling,
        seed: 3,
        answer: None,
    };
    let answer = llm.chat(&request).unwrap();
    assert_eq!(
        (answer.text.as_str(), answer.prompt_tokens, answer.completion_tokens),
        ("<score>4</score>", 11, 3)
    );
    assert_eq!(llm.chat(&request).unwrap().text, "<score>5</score>");
    let body = server.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "served-model");
    assert_eq!(body["max_tokens"], 8);
    assert_eq!(body["seed"], 3);
    assert_eq!(
        body["messages"][1],
        serde_json::json!({"role": "assistant", "content": "<score>"})
    );
    assert_eq!(body["continue_final_message"], true);
    assert!(body.get("top_p").is_none());
}

/// Each server kind gets the answer format in its own field, and only on
/// calls that ask for one.
#[test]
fn an_answer_format_is_sent_in_the_servers_structured_output_field() {
    let kinds = [
        (Structured::LlamaServer, "/grammar"),
        (Structured::Vllm, "/structured_outputs/regex"),
        (Structured::VllmLegacy, "/guided_regex"),
        (Structured::Sglang, "/regex"),
    ];
    let server = FakeServer::start(vec![Reply::Ok("<score>4</score>")]);
    let messages = [Message::user("Rate it")];
    let sampling = Sampling {
        temperature: 0.0,
        top_p: None,
        top_k: None,
        max_tokens: 8,
        prefill: None,
        constrain: true,
    };
    for (structured, field) in kinds {
        let llm = OpenAi::new(OpenAiConfig {
            structured,
            ..config(vec![server.url.clone()], 5000, 0)
        })
        .unwrap();
        for answer in [Some(AnswerFormat::Score1to5), Some(AnswerFormat::YesNo), None] {
            let request = Request {
                messages: &messages,
                sampling: &sampling,
                seed: 3,
                answer,
            };
            llm.chat(&request).unwrap();
            let body = server.bodies.lock().unwrap().last().unwrap().clone();
            let expected = answer.map(|a| match structured {
                Structured::LlamaServer => a.gbnf(sampling.max_tokens),
                _ => a.regex().to_string(),
            });
            assert_eq!(
                body.pointer(field).and_then(Value::as_str),
                expected.as_deref(),
                "{structured:?} {answer:?}"
            );
        }
    }
    // Unknown servers get no extra field.
    let llm = client(vec![server.url.clone()], 5000, 0);
    llm.chat(&Request {
        messages: &messages,
        sampling: &sampling,
        seed: 3,
        answer: Some(AnswerFormat::Score1to5),
    })
    .unwrap();
    let body = server.bodies.lock().unwrap().last().unwrap().clone();
    for (_, field) in kinds {
        assert!(body.pointer(field).is_none(), "{body}");
    }
}

#[test]
fn retries_5xx_429_garbage_and_timeouts_then_succeeds() {
    let server = FakeServer::start(vec![
        Reply::Status(500, "boom"),
        Reply::Status(429, ""),
        Reply::Garbage,
        Reply::Sleep(Duration::from_millis(1500)),
        Reply::Status(503, "busy"),
        Reply::Ok("fine"),
    ]);
    let llm = client(vec![server.url.clone()], 500, 6);
    assert_eq!(ask(&llm).unwrap(), "fine");
    assert_eq!(server.hits.load(Ordering::SeqCst), 6);
}

#[test]
fn gives_up_after_the_retries_with_a_clear_error() {
    let server = FakeServer::start(vec![Reply::Status(500, "model crashed")]);
    let llm = client(vec![server.url.clone()], 2000, 2);
    let error = ask(&llm).unwrap_err();
    assert!(error.is_transient());
    let message = error.to_string();
    assert!(
        message.contains("500") && message.contains("model crashed") && message.contains("3 tries"),
        "{message}"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let server = FakeServer::start(vec![Reply::Status(400, "bad max_tokens")]);
    let llm = client(vec![server.url.clone()], 2000, 5);
    let error = ask(&llm).unwrap_err();
    assert!(
        !error.is_transient() && error.to_string().contains("bad max_tokens"),
        "{error}"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refused_connection_is_retried_on_the_other_base_url() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    }; // closed when dropped: connections are refused
    let server = FakeServer::start(vec![Reply::Ok("ok")]);
    let llm = client(vec![dead, server.url.clone()], 2000, 3);
    for _ in 0..4 {
        assert_eq!(ask(&llm).unwrap(), "ok");
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
}

#[test]
fn load_is_spread_over_base_urls() {
    let a = FakeServer::start(vec![Reply::Sleep(Duration::from_millis(200))]);
    let b = FakeServer::start(vec![Reply::Sleep(Duration::from_millis(200))]);
    let llm = client(vec![a.url.clone(), b.url.clone()], 5000, 0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| ask(&llm).unwrap());
        }
    });
    let (x, y) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
    assert_eq!(x + y, 8);
    assert!((3..=5).contains(&x), "{x} vs {y}");
}
