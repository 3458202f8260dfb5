//! Routes, request parsing and responses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use adalbert_model::tokenizer::TextInput;
use adalbert_model::{LoadedTask, MultiTask, Prediction, TaskBundle};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::batcher::{Answer, BatchSettings, Batcher, Job, JobError, Row, Work};
use crate::config::ServeConfig;
use crate::error::{ApiError, ErrorCode, ServeError};
use crate::lifecycle::{allowed_dirs, Inflight, Source};
use crate::metrics::{Gauges, Metrics};

/// Where a served version of a task came from.
#[derive(Debug, Clone)]
struct Origin {
    /// Increases by one with every load or replacement, server-wide.
    generation: u64,
    loaded_at_unix: u64,
    source: String,
}

/// State shared by every handler.
pub struct AppState {
    pub(crate) mt: Arc<MultiTask>,
    pub(crate) cfg: ServeConfig,
    batcher: Batcher,
    pub(crate) metrics: Arc<Metrics>,
    origins: Mutex<(u64, HashMap<String, Origin>)>,
    started: Instant,
    pub(crate) backbone_info: Value,
    /// Where each task can be reloaded from (see [`crate::lifecycle`]).
    pub(crate) sources: Mutex<HashMap<String, Source>>,
    pub(crate) last_used: Mutex<HashMap<String, u64>>,
    pub(crate) tick: AtomicU64,
    pub(crate) inflight: Inflight,
    pub(crate) allowed_dirs: Vec<std::path::PathBuf>,
    /// Requests being answered (for draining on shutdown and the access log's ids).
    pub(crate) next_request_id: AtomicU64,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Starts the batching worker for the tasks already loaded into `mt`.
    pub fn new(mt: MultiTask, cfg: ServeConfig) -> Result<Shared, ServeError> {
        cfg.validate()?;
        let positions = mt.backbone.config.shape.max_position_embeddings;
        if mt.tokenizer.max_len() > positions {
            return Err(ServeError::Config(format!(
                "--max-len {} is above the model's {positions} positions; use at most {positions}",
                mt.tokenizer.max_len()
            )));
        }
        for (name, _) in mt.tasks() {
            if !crate::names::valid_task_name(&name) {
                return Err(ServeError::Config(format!(
                    "task name `{name}` is not allowed (use {})",
                    crate::names::TASK_NAME_RULE
                )));
            }
        }
        let mt = Arc::new(mt);
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(
            Arc::clone(&mt),
            BatchSettings {
                window: cfg.batch_window,
                max_batch: cfg.max_batch,
                queue_depth: cfg.queue_depth,
                embedding: cfg.embedding.clone(),
            },
            Arc::clone(&metrics),
        )
        .map_err(ServeError::Worker)?;
        let c = &mt.backbone.config;
        let params = mt.backbone.param_counts().total();
        let backbone_info = json!({
            "sha256": mt.backbone_sha256,
            "family": c.shape.family,
            "hidden_size": c.shape.hidden_size,
            "layers": c.shape.num_hidden_layers,
            "params": params,
            "bytes": params * 4,
            "max_len": mt.tokenizer.max_len(),
        });
        let allowed_dirs = allowed_dirs(&cfg)?;
        let state = Arc::new(Self {
            mt,
            cfg,
            sources: Mutex::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(1),
            inflight: Mutex::new(HashMap::new()),
            allowed_dirs,
            next_request_id: AtomicU64::new(1),
            batcher,
            metrics,
            origins: Mutex::new((0, HashMap::new())),
            started: Instant::now(),
            backbone_info,
        });
        for (name, _) in state.mt.tasks() {
            state.record_origin(&name, "preloaded".into());
            state.metrics.task_event(&name, "loaded");
            state.touch(&name);
        }
        state.start_lifecycle()?;
        Ok(state)
    }

    pub(crate) fn record_origin(&self, name: &str, source: String) -> u64 {
        let mut g = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let generation = g.0;
        let loaded_at_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        g.1.insert(
            name.to_string(),
            Origin {
                generation,
                loaded_at_unix,
                source,
            },
        );
        generation
    }

    /// Names the file a task loaded before the server started came from; the task can then
    /// be evicted and reloaded from it.
    pub fn set_source(&self, name: &str, source: String) {
        {
            let mut g = self.origins.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = g.1.get_mut(name) {
                o.source = source.clone();
            }
        }
        self.set_reload_source(name, Source::File(source.into()));
    }

    /// The sha256 of the shared backbone's weights.
    pub fn backbone_sha256(&self) -> &str {
        &self.mt.backbone_sha256
    }

    fn origin(&self, name: &str) -> Option<Origin> {
        let g = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(name).cloned()
    }

    pub(crate) fn unknown(&self, name: &str) -> ApiError {
        let mut known: Vec<String> = self.mt.tasks().into_iter().map(|(n, _)| n).collect();
        known.extend(self.available());
        known.sort();
        ApiError::unknown_task(name, &known)
    }

    fn task_info(&self, name: &str, t: &LoadedTask) -> Value {
        let m = &t.meta;
        let origin = self.origin(name);
        json!({
            "task": name,
            "mode": m.mode.as_str(),
            "labels": m.labels,
            "regression": m.labels.is_empty(),
            "adapter": m.layout.adapter.as_ref().map(|a| a.to_string()),
            "sharing": m.layout.sharing.as_str(),
            "pooling": m.layout.pooling,
            "layout": m.layout,
            "metrics": m.metrics,
            "backbone_sha256": m.backbone_sha256,
            "bytes": t.bytes,
            "trainable_params": m.trainable_params,
            "seed": m.seed,
            "tool_version": m.tool_version,
            "generation": origin.as_ref().map(|o| o.generation),
            "loaded_at_unix": origin.as_ref().map(|o| o.loaded_at_unix),
            "source": origin.map(|o| o.source),
        })
    }

    /// Queues rows for the batching worker and waits for their predictions.
    pub(crate) async fn infer(
        &self,
        rows: Vec<Row>,
        arrived: Instant,
    ) -> Result<Vec<Prediction>, ApiError> {
        match self.work(Work::Predict(rows), arrived).await? {
            Answer::Predictions(p) => Ok(p),
            Answer::Embeddings(_) => Err(ApiError::internal("the worker answered the wrong kind")),
        }
    }

    /// Queues inputs for embedding and waits for the vectors.
    pub(crate) async fn embeddings(
        &self,
        task: Option<Arc<LoadedTask>>,
        inputs: Vec<TextInput>,
        normalize: Option<bool>,
        arrived: Instant,
    ) -> Result<crate::embed::Embedded, ApiError> {
        let work = Work::Embed {
            task,
            inputs,
            normalize,
        };
        match self.work(work, arrived).await? {
            Answer::Embeddings(e) => Ok(e),
            Answer::Predictions(_) => Err(ApiError::internal("the worker answered the wrong kind")),
        }
    }

    /// Queues work for the batching worker and waits for its answer.
    async fn work(&self, work: Work, arrived: Instant) -> Result<Answer, ApiError> {
        let deadline = arrived + self.cfg.timeout;
        let (tx, rx) = oneshot::channel();
        let job = Job {
            work,
            deadline,
            reply: tx,
        };
        if self.batcher.submit(job).is_err() {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                format!(
                    "{} requests are already waiting (queue depth {}); retry shortly",
                    self.batcher.queued(),
                    self.batcher.capacity()
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        let timed_out = || {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no answer within the request timeout of {} ms",
                    self.cfg.timeout.as_millis()
                ),
            )
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx).await {
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(ApiError::internal("the batching worker stopped")),
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(JobError::Expired))) => Err(timed_out()),
            Ok(Ok(Err(JobError::Input(m)))) => Err(ApiError::bad_request("invalid_input", m)),
            Ok(Ok(Err(JobError::Model(m)))) => {
                Err(ApiError::internal(format!("inference failed: {m}")))
            }
        }
    }
}

/// The service's routes, with their limits and the metrics layer.
pub fn router(state: Shared) -> Router {
    let predict_limit = DefaultBodyLimit::max(state.cfg.max_body_bytes);
    let admin = Router::new()
        .route("/v1/tasks/{task}", put(put_task).delete(delete_task))
        .route("/v1/tasks/{task}/load", post(crate::compat::load_task))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(state.cfg.max_bundle_bytes));
    Router::new()
        .route(
            "/v1/tasks/{task}/predict",
            post(predict_task).layer(predict_limit),
        )
        .route("/v1/predict", post(predict_mixed).layer(predict_limit))
        .route("/v1/tasks", get(list_tasks))
        .route(
            "/v1/embeddings",
            post(crate::compat::openai_embeddings).layer(predict_limit),
        )
        .route(
            "/embed",
            post(crate::compat::tei_embed).layer(predict_limit),
        )
        .route(
            "/predict",
            post(crate::compat::tei_predict).layer(predict_limit),
        )
        .route(
            "/tokenize",
            post(crate::compat::tokenize).layer(predict_limit),
        )
        .route("/info", get(crate::compat::info))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(admin)
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_metrics,
        ))
        .with_state(state)
}

/// What a handler tells the access log about its request: the task(s) and the inputs.
#[derive(Clone, Default)]
pub struct AccessNote(Arc<Mutex<(String, usize)>>);

impl AccessNote {
    pub fn set(&self, task: &str, inputs: usize) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = (task.to_string(), inputs);
    }

    fn get(&self) -> (String, usize) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A client's `X-Request-Id` if it is short and printable, else a fresh one.
fn request_id(s: &AppState, headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{}",
                s.started.elapsed().as_nanos() as u64 & 0xffff_ffff,
                s.next_request_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        })
}

/// Metrics and one access log line (target `adalbert_serve::access`) per request; the
/// request id is echoed in `X-Request-Id`.
async fn record_metrics(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let id = request_id(&s, req.headers());
    let note = AccessNote::default();
    req.extensions_mut().insert(note.clone());
    let mut resp = next.run(req).await;
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status();
    let (task, inputs) = note.get();
    tracing::info!(
        target: "adalbert_serve::access",
        request_id = %id,
        method = %method,
        route = %route,
        task = %task,
        inputs,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0).or(
        // Errors produced by axum itself (e.g. 405) carry no code of ours.
        (status.is_client_error() || status.is_server_error()).then_some("other"),
    );
    s.metrics.request(
        &route,
        &method,
        status.as_u16(),
        started.elapsed().as_secs_f64(),
        code,
    );
    resp
}

/// Gives every error response a JSON body: those produced by axum itself (405 for a wrong
/// method, 415, 400 for a bad path) carry none of ours, and get one with a code from the status.
async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<ErrorCode>().is_some()
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let reason = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => format!(
            "{path} does not take {method}; the Allow header lists the methods it takes (see /openapi.json)"
        ),
        (_, false) => text,
        (_, true) => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut fresh = ApiError::new(status, code, reason).into_response();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in fresh.headers() {
        parts.headers.insert(k.clone(), v.clone());
    }
    parts.extensions.insert(ErrorCode(code));
    let body = std::mem::take(fresh.body_mut());
    Response::from_parts(parts, body)
}

async fn require_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    match authorize(&s.cfg, &headers) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn authorize(cfg: &ServeConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = cfg.token.as_deref() else {
        return Ok(());
    };
    let unauthorized =
        |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason.to_string());
    let given = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("admin routes need `Authorization: Bearer <token>`"))?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
    if !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        return Err(unauthorized("wrong bearer token"));
    }
    Ok(())
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn check_task_name(task: &str) -> Result<(), ApiError> {
    if crate::names::valid_task_name(task) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_task_name",
            format!("task name `{task}`: use {}", crate::names::TASK_NAME_RULE),
        ))
    }
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, rejection.body_text())
}

/// A request body parsed as `T` (one of the request types of this module or [`crate::compat`]);
/// malformed JSON or an unknown field is a 400 `malformed_json`. Public, with [`parse_input`]
/// and the request types, so the fuzz targets (`fuzz/`) parse bodies with the server's code.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON body: {e}")))
}

/// A single text or a `[first, second]` pair, each text cut to the bound for `max_len` tokens
/// (see [`crate::text`]); the flag says whether anything was cut.
pub fn parse_input(v: Value, at: &str, max_len: usize) -> Result<(TextInput, bool), ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_input", format!("{at}: {why}"));
    let mut cut = false;
    let mut bounded = |s: String| {
        let (kept, was) = crate::text::bound(&s, max_len);
        if was {
            cut = true;
            kept.to_string()
        } else {
            s
        }
    };
    let input = match v {
        Value::String(s) => TextInput::Single(bounded(s)),
        Value::Array(items) => match <[Value; 2]>::try_from(items) {
            Ok([Value::String(a), Value::String(b)]) => TextInput::Pair(bounded(a), bounded(b)),
            _ => return Err(bad("a pair must be an array of exactly two strings")),
        },
        _ => {
            return Err(bad(
                "expected a string or a [first, second] pair of strings",
            ))
        }
    };
    let empty = match &input {
        TextInput::Single(a) => a.trim().is_empty(),
        TextInput::Pair(a, b) => a.trim().is_empty() || b.trim().is_empty(),
    };
    if empty {
        return Err(bad("empty text"));
    }
    Ok((input, cut))
}

/// Marks as truncated the predictions whose input was cut before tokenizing.
pub(crate) fn mark_cut(preds: &mut [Prediction], cut: &[bool]) {
    for (p, &c) in preds.iter_mut().zip(cut) {
        p.truncated |= c;
    }
}

pub(crate) fn check_count(n: usize, cfg: &ServeConfig) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::bad_request(
            "no_inputs",
            "the request has no inputs",
        ));
    }
    if n > cfg.max_inputs {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_inputs",
            format!(
                "{n} inputs in one request; the limit is {} (split the request)",
                cfg.max_inputs
            ),
        ));
    }
    Ok(())
}

fn prediction_json(p: Prediction, task: Option<&str>) -> Value {
    let mut v = json!({ "label": p.label, "scores": p.scores, "truncated": p.truncated });
    if let (Some(t), Some(obj)) = (task, v.as_object_mut()) {
        obj.insert("task".into(), json!(t));
    }
    v
}

fn truncation_warnings(preds: &[Prediction], max_len: usize) -> Vec<String> {
    preds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.truncated)
        .map(|(i, _)| format!("input {i} was truncated to {max_len} tokens"))
        .collect()
}

/// Per-task metrics for one request.
fn record_tasks(s: &AppState, counts: &[(&str, usize)], started: Instant, ok: bool) {
    let secs = started.elapsed().as_secs_f64();
    for (task, n) in counts {
        s.metrics.task(task, *n, secs, ok);
    }
}

/// The body of `POST /v1/tasks/{task}/predict`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPredictRequest {
    /// Each a text or a `[first, second]` pair ([`parse_input`]).
    pub inputs: Vec<Value>,
}

async fn predict_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
    Extension(note): Extension<AccessNote>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: TaskPredictRequest = parse_json(&body)?;
    note.set(&task, req.inputs.len());
    let loaded = s.resolve(&task).await?;
    check_count(req.inputs.len(), &s.cfg)?;
    let max_len = s.mt.tokenizer.max_len();
    let mut cut = Vec::with_capacity(req.inputs.len());
    let mut rows = Vec::with_capacity(req.inputs.len());
    for (i, v) in req.inputs.into_iter().enumerate() {
        let (input, c) = parse_input(v, &format!("inputs[{i}]"), max_len)?;
        cut.push(c);
        rows.push(Row {
            task: Arc::clone(&loaded),
            input,
        });
    }
    let n = rows.len();
    let result = s.infer(rows, started).await;
    record_tasks(&s, &[(&task, n)], started, result.is_ok());
    let mut preds = result?;
    mark_cut(&mut preds, &cut);
    let warnings = truncation_warnings(&preds, s.mt.tokenizer.max_len());
    Ok(Json(json!({
        "task": task,
        "predictions": preds.into_iter().map(|p| prediction_json(p, None)).collect::<Vec<_>>(),
        "warnings": warnings,
    })))
}

/// The body of `POST /v1/predict`: inputs for several tasks in one request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixedRequest {
    pub requests: Vec<MixedItem>,
}

/// One input of a [`MixedRequest`] and the task it is for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixedItem {
    pub task: String,
    /// A text or a `[first, second]` pair ([`parse_input`]).
    pub input: Value,
}

async fn predict_mixed(
    State(s): State<Shared>,
    Extension(note): Extension<AccessNote>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: MixedRequest = parse_json(&body)?;
    let mut tasks: Vec<&str> = req.requests.iter().map(|r| r.task.as_str()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    note.set(&tasks.join(","), req.requests.len());
    check_count(req.requests.len(), &s.cfg)?;
    let mut resolved: HashMap<String, Arc<LoadedTask>> = HashMap::new();
    let mut rows = Vec::with_capacity(req.requests.len());
    let mut names = Vec::with_capacity(req.requests.len());
    let mut cut = Vec::with_capacity(req.requests.len());
    let max_len = s.mt.tokenizer.max_len();
    for (i, item) in req.requests.into_iter().enumerate() {
        let task = match resolved.get(&item.task) {
            Some(t) => Arc::clone(t),
            None => {
                let t = s.resolve(&item.task).await?;
                resolved.insert(item.task.clone(), Arc::clone(&t));
                t
            }
        };
        let (input, c) = parse_input(item.input, &format!("requests[{i}].input"), max_len)?;
        cut.push(c);
        rows.push(Row { task, input });
        names.push(item.task);
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in &names {
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some(c) => c.1 += 1,
            None => counts.push((name, 1)),
        }
    }
    let result = s.infer(rows, started).await;
    record_tasks(&s, &counts, started, result.is_ok());
    let mut preds = result?;
    mark_cut(&mut preds, &cut);
    let warnings = truncation_warnings(&preds, s.mt.tokenizer.max_len());
    Ok(Json(json!({
        "predictions": preds
            .into_iter()
            .zip(&names)
            .map(|(p, t)| prediction_json(p, Some(t)))
            .collect::<Vec<_>>(),
        "warnings": warnings,
    })))
}

async fn list_tasks(State(s): State<Shared>) -> Json<Value> {
    let tasks: Vec<Value> =
        s.mt.tasks()
            .iter()
            .map(|(name, t)| s.task_info(name, t))
            .collect();
    Json(json!({ "backbone": s.backbone_info, "tasks": tasks, "available": s.available() }))
}

async fn put_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_task_name(&task)?;
    let body = body.map_err(body_error)?;
    // Parsing and validating a bundle is CPU work (a full model is ~100 MB): off the runtime.
    let mt = Arc::clone(&s.mt);
    let name = task.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let source = format!("upload:{name}");
        let mut bundle = TaskBundle::from_bytes(&body, Path::new(&source))?;
        let trained_as = std::mem::replace(&mut bundle.meta.task, name);
        mt.prepare(bundle).map(|t| (t, trained_as))
    })
    .await
    .map_err(|e| ApiError::internal(format!("bundle validation stopped: {e}")))?;
    let (loaded, trained_as) = match prepared {
        Ok(p) => p,
        Err(e) => {
            s.metrics.task_event(&task, "rejected");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_bundle",
                format!("{e}; the served version (if any) is unchanged"),
            ));
        }
    };
    let replaced = s.mt.insert(loaded).is_some();
    s.record_origin(&task, "upload".into());
    s.set_reload_source(&task, Source::Upload);
    s.touch(&task);
    s.evict_beyond_limit(&task);
    s.metrics
        .task_event(&task, if replaced { "replaced" } else { "loaded" });
    tracing::info!(task, replaced, "task bundle loaded over HTTP");
    let info = match s.mt.task(&task) {
        Ok(t) => s.task_info(&task, &t),
        Err(_) => Value::Null, // removed again in between
    };
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "task": info, "replaced": replaced, "trained_as": trained_as })),
    )
        .into_response())
}

async fn delete_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    match s.mt.remove(&task) {
        Some(removed) => {
            drop(removed);
            adalbert_model::exec::release_unused_memory();
            s.forget(&task);
            s.metrics.task_event(&task, "removed");
            tracing::info!(task, "task unloaded");
            Ok(Json(json!({ "task": task, "removed": true })))
        }
        None => Err(s.unknown(&task)),
    }
}

async fn healthz(State(s): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "tasks": s.mt.len(),
        "queue_depth": s.batcher.queued(),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
    }))
}

async fn metrics(State(s): State<Shared>) -> Response {
    let text = s.metrics.render(&Gauges {
        queue_depth: s.batcher.queued(),
        queue_capacity: s.batcher.capacity(),
        tasks_loaded: s.mt.len(),
        tasks_bytes: s.loaded_bytes(),
        uptime_seconds: s.started.elapsed().as_secs_f64(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}; see /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}
