//! The HTTP layer: OpenAI's `POST /v1/embeddings` and text-embeddings-
//! inference's `POST /embed` (also at `POST /`, TEI's root route, where its
//! official client posts), `GET /health` (also `GET /`) and `GET /info`,
//! `GET /metrics`, and `POST /search` over an index built by `reasonembed
//! search`, with bearer-token auth on every route but the health probes, a
//! deadline and a size limit on request bodies, a cap on inputs per request
//! and on concurrent requests (429 beyond it), and JSON errors with their
//! status codes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use reasonembed_data::Silent;
use reasonembed_models::pooling::l2_normalize_vec;
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use reasonembed_search::fusion::Fusion;
use reasonembed_search::index::Retrieval;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::Search;
use crate::core::{Infer, TokenizeError};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Padded tokens per inference batch (a request may span several).
    pub max_batch_tokens: usize,
    pub payload_bytes: usize,
    /// Inputs per request to TEI's `/embed` and `/`.
    pub max_client_batch_size: usize,
    /// Inputs per request to OpenAI's `/v1/embeddings`.
    pub max_openai_inputs: usize,
    pub max_concurrent: usize,
    /// Cut inputs longer than the model's max length (else 413).
    pub auto_truncate: bool,
    /// Time a client has to send a request's headers (from the connection
    /// opening or going idle), and then its body.
    pub read_timeout: Duration,
}

impl Default for Limits {
    /// text-embeddings-inference's defaults, OpenAI's 2,048 inputs per
    /// request, and nginx's keep-alive timeout (75 s: longer than a load
    /// balancer's usual 60 s idle timeout, so the balancer closes first).
    fn default() -> Self {
        Self {
            max_batch_tokens: 16_384,
            payload_bytes: 2_000_000,
            max_client_batch_size: 32,
            max_openai_inputs: 2048,
            max_concurrent: 512,
            auto_truncate: true,
            read_timeout: Duration::from_secs(75),
        }
    }
}

/// What the server answers to and enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name clients give as `model`.
    pub model_name: String,
    /// Whether `/embed` normalises when the request does not say.
    pub normalize_default: bool,
    pub api_key: Option<String>,
    pub limits: Limits,
}

/// A served model: the base, or the base with a LoRA adapter.
pub struct Served {
    pub infer: Infer,
    pub embedder: Arc<Embedder>,
}

struct AppState {
    /// By the name clients give as `model`; `settings.model_name` is the default.
    models: BTreeMap<String, Served>,
    metrics: Arc<Metrics>,
    settings: Settings,
    /// SHA-256 of the API key, when there is one (see [`bearer_matches`]).
    key_digest: Option<[u8; 32]>,
    permits: Semaphore,
    search: Option<Arc<Search>>,
}

pub fn router(
    models: BTreeMap<String, Served>,
    metrics: Arc<Metrics>,
    settings: Settings,
    searcher: Option<Search>,
) -> Router {
    let payload = settings.limits.payload_bytes;
    let permits = Semaphore::new(settings.limits.max_concurrent);
    let key_digest = settings.api_key.as_ref().map(|key| Sha256::digest(key).into());
    let state = Arc::new(AppState {
        models,
        metrics,
        settings,
        key_digest,
        permits,
        search: searcher.map(Arc::new),
    });
    // The key is checked before the body is read, so that a client without
    // it cannot make the server buffer a body.
    let api = Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embed", post(tei_embed))
        // TEI's root route for embedding models, where its official client posts.
        .route("/", post(tei_embed))
        .route("/search", post(search))
        .route("/info", get(info))
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move { state.metrics.render() }),
        )
        .route_layer(from_fn_with_state(state.clone(), read_body))
        .route_layer(from_fn_with_state(state.clone(), require_key));
    // Health probes answer without the key (load balancers and orchestrators
    // probe without credentials); `GET /` is TEI's.
    let probes = Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/", get(|| async { StatusCode::OK }));
    api.merge(probes)
        .layer(DefaultBodyLimit::max(payload))
        .layer(from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Answers 401 unless the request carries the API key (when there is one).
async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match &state.key_digest {
        Some(digest) if !bearer_matches(request.headers(), digest) => {
            ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response()
        }
        _ => next.run(request).await,
    }
}

/// Whether `Authorization` is `Bearer <key>`, the scheme in any case (RFC
/// 9110 §11.1). The token's SHA-256 is compared with the key's in constant
/// time, so that how long a wrong guess takes tells nothing of the key's
/// bytes or length.
fn bearer_matches(headers: &HeaderMap, key_digest: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) else {
        return false;
    };
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, token) = (&value[..space], value[space..].trim_ascii_start());
    scheme.eq_ignore_ascii_case(b"bearer") && bool::from(Sha256::digest(token).as_slice().ct_eq(key_digest))
}

/// Reads the whole body within the read timeout (408 after it), so that a
/// client trickling its body in cannot hold a connection indefinitely; the
/// handlers then parse it from memory. Over the payload limit: 413.
async fn read_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let deadline = state.settings.limits.read_timeout;
    let read = Bytes::from_request(Request::from_parts(parts.clone(), body), &());
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(rejection)) => ApiError(rejection.status(), rejection.body_text()).into_response(),
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", deadline.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Counts every answer, and the errors among them, for `/metrics`.
async fn count(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.request(response.status().is_success());
    response
}

/// An error as a JSON body with its status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "overloaded",
            StatusCode::PAYLOAD_TOO_LARGE => "input_too_long",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        (self.0, Json(json!({ "error": { "message": self.1, "type": kind } }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, message.into())
}

/// A string or a list of at most `max` strings.
fn inputs(value: &Value, field: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let texts = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(format!("'{field}' must be a string or a list of strings")))?,
        _ => return Err(bad(format!("'{field}' must be a string or a list of strings"))),
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(bad(format!("'{field}' must hold non-empty texts")));
    }
    if texts.len() > max {
        return Err(bad(format!(
            "'{field}' has {} texts; at most {max} per request",
            texts.len()
        )));
    }
    Ok(texts)
}

/// The length vectors are cut to: `dimensions` (Matryoshka) when asked, checked
/// against the model's `dims` before any inference.
fn output_dimensions(dimensions: Option<usize>, dims: usize) -> Result<usize, ApiError> {
    match dimensions {
        Some(d) if d == 0 || d > dims => Err(bad(format!("dimensions must be between 1 and {dims}"))),
        Some(d) => Ok(d),
        None => Ok(dims),
    }
}

/// `vectors` cut to `dims`, then L2-normalised when `normalize` (so a cut
/// vector is a unit vector again), in text-embeddings-inference's order.
fn finish(vectors: &mut [Vec<f32>], dims: usize, normalize: bool) {
    for v in vectors {
        v.truncate(dims);
        if normalize {
            l2_normalize_vec(v);
        }
    }
}

impl AppState {
    /// The model a request names (the default when it names none).
    fn model(&self, name: Option<&str>) -> Result<&Served, ApiError> {
        let name = name.unwrap_or(&self.settings.model_name);
        self.models.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown model '{name}' (this server serves: {})", known.join(", ")),
            )
        })
    }

    /// Raw vectors and token count of `texts` under `options` (the encode
    /// contract: prompt and max length), through the model's batching queue.
    async fn embed(
        &self,
        model: &Served,
        texts: &[String],
        options: &EncodeOptions,
        truncate: bool,
    ) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| ApiError(StatusCode::TOO_MANY_REQUESTS, "too many concurrent requests".into()))?;
        let settings = model.embedder.resolve(options).map_err(|e| bad(e.to_string()))?;
        let seqs = model
            .infer
            .tokenize(texts.to_vec(), settings, truncate)
            .await
            .map_err(|e| match e {
                TokenizeError::TooLong { index, tokens, max } => ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("input {index} has {tokens} tokens; the model takes {max}"),
                ),
                TokenizeError::Failed(message) => bad(message),
            })?;
        let out = model
            .infer
            .embed(seqs)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok((out.vectors, out.tokens))
    }
}

#[derive(Deserialize)]
struct OpenAiRequest {
    input: Value,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Json<OpenAiRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let model = state.model(request.model.as_deref())?;
    let texts = inputs(&request.input, "input", state.settings.limits.max_openai_inputs)?;
    let dims = output_dimensions(request.dimensions, model.embedder.dimensions())?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(bad(format!("encoding_format '{other}' (float, base64)"))),
    };
    let (mut vectors, tokens) = state
        .embed(
            model,
            &texts,
            &EncodeOptions::default(),
            state.settings.limits.auto_truncate,
        )
        .await?;
    // OpenAI's embeddings are unit vectors.
    finish(&mut vectors, dims, true);
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "embedding": embedding, "index": index })
        })
        .collect();
    Ok(Json(
        json!({ "object": "list", "data": data, "model": request.model.as_deref().unwrap_or(&state.settings.model_name), "usage": { "prompt_tokens": tokens, "total_tokens": tokens } }),
    ))
}

#[derive(Deserialize)]
struct TeiRequest {
    inputs: Value,
    normalize: Option<bool>,
    truncate: Option<bool>,
    /// TEI's `left` or `right`; only `right` (the default) is served.
    truncation_direction: Option<String>,
    prompt_name: Option<String>,
    /// Matryoshka truncation, as in TEI.
    dimensions: Option<usize>,
    /// Which model or adapter (an extension of TEI's shape); the default when absent.
    model: Option<String>,
}

async fn tei_embed(
    State(state): State<Arc<AppState>>,
    body: Result<Json<TeiRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let model = state.model(request.model.as_deref())?;
    let texts = inputs(&request.inputs, "inputs", state.settings.limits.max_client_batch_size)?;
    let dims = output_dimensions(request.dimensions, model.embedder.dimensions())?;
    match request.truncation_direction.as_deref() {
        None | Some("right" | "Right") => {}
        // Refused rather than ignored: the encode contract keeps the start of a text.
        Some(other) => return Err(bad(format!("truncation_direction '{other}': only 'right' is served"))),
    }
    let options = EncodeOptions {
        prompt: Prompt::from_flags(None, request.prompt_name.as_deref()),
        ..Default::default()
    };
    let (mut vectors, _) = state
        .embed(
            model,
            &texts,
            &options,
            request.truncate.unwrap_or(state.settings.limits.auto_truncate),
        )
        .await?;
    let normalize = request.normalize.unwrap_or(state.settings.normalize_default);
    finish(&mut vectors, dims, normalize);
    Ok(Json(json!(vectors)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    k: Option<usize>,
    /// A task instruction, in the ReasonEmbed format.
    instruction: Option<String>,
    /// Let the server's LLM reason about the query first (`serve --reason`).
    #[serde(default)]
    reason: bool,
    /// Dense and BM25 fused: `rrf[:K]`, `minmax[:W]` or `zscore[:W]`.
    hybrid: Option<String>,
}

/// The `k` passages of the index (`--index`) closest to the query: dense, or
/// fused with BM25, and after the LLM's reasoning about it if asked.
async fn search(
    State(state): State<Arc<AppState>>,
    body: Result<Json<SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let search = state.search.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this server has no index (start it with --index DIR or --pgvector URL)".into(),
        )
    })?;
    if request.query.trim().is_empty() {
        return Err(bad("'query' is empty"));
    }
    let k = request.k.unwrap_or(10);
    if k == 0 || k > 1000 {
        return Err(bad("'k' must be between 1 and 1000"));
    }
    let retrieval = match &request.hybrid {
        None => Retrieval::Dense,
        Some(spec) => Retrieval::Hybrid(Fusion::parse(spec).map_err(|e| bad(format!("'hybrid': {e}")))?),
    };
    if matches!(retrieval, Retrieval::Hybrid(_)) && !search.index.has_bm25() {
        return Err(bad(
            "'hybrid' needs a local index (--index): a pgvector table holds no BM25 terms",
        ));
    }
    if request.reason && search.reasoner.is_none() {
        return Err(bad(
            "'reason': this server has no reasoning LLM (start it with --reason)",
        ));
    }
    let text = if request.reason {
        let (search, query) = (search.clone(), request.query.clone());
        blocking("reasoning", move || {
            let reasoner = search.reasoner.as_ref().expect("checked above");
            reasoner.reason(&[query], &mut Silent).map(|mut t| t.remove(0))
        })
        .await?
    } else {
        request.query.clone()
    };
    let model = state.model(None)?;
    let options = EncodeOptions::query(Prompt::from_flags(request.instruction.as_deref(), None));
    let (mut vectors, _) = state.embed(model, std::slice::from_ref(&text), &options, true).await?;
    let mut vector = vectors.remove(0);
    if search.index.model()["normalize"] == true {
        l2_normalize_vec(&mut vector);
    }
    let searched = text.clone();
    let hits = blocking("search", move || search.index.search(&vector, &searched, k, retrieval)).await?;
    let reasoned = request.reason.then_some(text);
    Ok(Json(json!({ "hits": hits, "reasoned_query": reasoned })))
}

/// Runs blocking work (an LLM call, a database round trip) off the async
/// threads; its failure is a 503.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed: {e}")))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{what} failed: {e}")))
}

async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let info = state.models[&state.settings.model_name].embedder.info();
    Json(json!({
        "model_id": state.settings.model_name,
        "models": state.models.keys().collect::<Vec<_>>(),
        "dimensions": info.dimensions,
        "max_input_length": info.max_length,
        "pooling": info.pooling,
        "normalize": state.settings.normalize_default,
        "max_client_batch_size": state.settings.limits.max_client_batch_size,
        "max_concurrent_requests": state.settings.limits.max_concurrent,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, header::HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let key: [u8; 32] = Sha256::digest("secret").into();
        for good in [
            &b"Bearer secret"[..],
            b"bearer secret",
            b"BEARER secret",
            b"Bearer   secret",
        ] {
            assert!(
                bearer_matches(&authorization(good), &key),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for wrong in [
            &b"Bearer secre"[..],
            b"Bearer secrett",
            b"Bearer Secret",
            b"Basic secret",
            b"Bearersecret",
            b"secret",
            b"Bearer ",
        ] {
            assert!(
                !bearer_matches(&authorization(wrong), &key),
                "{}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!bearer_matches(&HeaderMap::new(), &key));
    }
}
