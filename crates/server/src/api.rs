//! The HTTP layer: OpenAI's `POST /v1/embeddings` and text-embeddings-
//! inference's `POST /embed`, `GET /health` and `GET /info`, and `POST /search`
//! over an index built by `reasonembed search`, with bearer-token
//! auth, a payload limit, a cap on inputs per request and on concurrent
//! requests (429 beyond it), and JSON errors with their status codes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use reasonembed_models::pooling::l2_normalize_vec;
use reasonembed_models::{Embedder, EncodeOptions, Prompt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::SearchIndex;
use crate::core::{Infer, TokenizeError};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Padded tokens per inference batch.
    pub max_batch_tokens: usize,
    pub payload_bytes: usize,
    pub max_inputs: usize,
    pub max_concurrent: usize,
    /// Cut inputs longer than the model's max length (else 413).
    pub auto_truncate: bool,
}

impl Default for Limits {
    /// text-embeddings-inference's defaults.
    fn default() -> Self {
        Self {
            max_batch_tokens: 16_384,
            payload_bytes: 2_000_000,
            max_inputs: 32,
            max_concurrent: 512,
            auto_truncate: true,
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
    permits: Semaphore,
    index: Option<Arc<SearchIndex>>,
}

pub fn router(
    models: BTreeMap<String, Served>,
    metrics: Arc<Metrics>,
    settings: Settings,
    index: Option<SearchIndex>,
) -> Router {
    let payload = settings.limits.payload_bytes;
    let permits = Semaphore::new(settings.limits.max_concurrent);
    let state = Arc::new(AppState {
        models,
        metrics,
        settings,
        permits,
        index: index.map(Arc::new),
    });
    Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embed", post(tei_embed))
        .route("/search", post(search))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/info", get(info))
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move { state.metrics.render() }),
        )
        .layer(DefaultBodyLimit::max(payload))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
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

/// A string or a list of strings.
fn inputs(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
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
    Ok(texts)
}

impl AppState {
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.settings.api_key else {
            return Ok(());
        };
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            ))
        }
    }

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
        if texts.len() > self.settings.limits.max_inputs {
            return Err(bad(format!(
                "{} inputs; at most {} per request",
                texts.len(),
                self.settings.limits.max_inputs
            )));
        }
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
    headers: HeaderMap,
    body: Result<Json<OpenAiRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers)?;
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let model = state.model(request.model.as_deref())?;
    let texts = inputs(&request.input, "input")?;
    let (vectors, tokens) = state
        .embed(
            model,
            &texts,
            &EncodeOptions::default(),
            state.settings.limits.auto_truncate,
        )
        .await?;
    let dims = model.embedder.dimensions();
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(bad(format!("encoding_format '{other}' (float, base64)"))),
    };
    if request.dimensions.is_some_and(|d| d == 0 || d > dims) {
        return Err(bad(format!("dimensions must be between 1 and {dims}")));
    }
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut v)| {
            v.truncate(request.dimensions.unwrap_or(dims));
            l2_normalize_vec(&mut v);
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
    prompt_name: Option<String>,
    /// Which model or adapter (an extension of TEI's shape); the default when absent.
    model: Option<String>,
}

async fn tei_embed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<TeiRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers)?;
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let model = state.model(request.model.as_deref())?;
    let texts = inputs(&request.inputs, "inputs")?;
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
    if request.normalize.unwrap_or(state.settings.normalize_default) {
        vectors.iter_mut().for_each(|v| l2_normalize_vec(v));
    }
    Ok(Json(json!(vectors)))
}

#[derive(Deserialize)]
struct SearchRequest {
    query: String,
    k: Option<usize>,
    /// A task instruction, in the ReasonEmbed format.
    instruction: Option<String>,
}

/// The `k` passages of the index (`--index`) closest to the query.
async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers)?;
    let Json(request) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let index = state.index.clone().ok_or_else(|| {
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
    let model = state.model(None)?;
    let options = EncodeOptions::query(Prompt::from_flags(request.instruction.as_deref(), None));
    let (mut vectors, _) = state.embed(model, &[request.query], &options, true).await?;
    let mut query = vectors.remove(0);
    if index.model()["normalize"] == true {
        l2_normalize_vec(&mut query);
    }
    let hits = tokio::task::spawn_blocking(move || index.search(&query, k))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {e}")))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("search failed: {e}")))?;
    Ok(Json(json!({ "hits": hits })))
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
        "max_client_batch_size": state.settings.limits.max_inputs,
        "max_concurrent_requests": state.settings.limits.max_concurrent,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
