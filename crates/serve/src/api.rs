//! Routes, request parsing and responses.

use std::collections::HashMap;
use std::path::Path;
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
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::batcher::{BatchSettings, Batcher, Job, JobError, Row};
use crate::config::ServeConfig;
use crate::error::{ApiError, ErrorCode, ServeError};
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
    mt: Arc<MultiTask>,
    cfg: ServeConfig,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    origins: Mutex<(u64, HashMap<String, Origin>)>,
    started: Instant,
    backbone_info: Value,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Starts the batching worker for the tasks already loaded into `mt`.
    pub fn new(mt: MultiTask, cfg: ServeConfig) -> Result<Shared, ServeError> {
        cfg.validate()?;
        let mt = Arc::new(mt);
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(
            Arc::clone(&mt),
            BatchSettings {
                window: cfg.batch_window,
                max_batch: cfg.max_batch,
                queue_depth: cfg.queue_depth,
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
        let state = Arc::new(Self {
            mt,
            cfg,
            batcher,
            metrics,
            origins: Mutex::new((0, HashMap::new())),
            started: Instant::now(),
            backbone_info,
        });
        for (name, _) in state.mt.tasks() {
            state.record_origin(&name, "preloaded".into());
            state.metrics.task_event(&name, "loaded");
        }
        Ok(state)
    }

    fn record_origin(&self, name: &str, source: String) -> u64 {
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

    /// Names the source of a task loaded before the server started (e.g. its file path).
    pub fn set_source(&self, name: &str, source: String) {
        let mut g = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = g.1.get_mut(name) {
            o.source = source;
        }
    }

    /// The sha256 of the shared backbone's weights.
    pub fn backbone_sha256(&self) -> &str {
        &self.mt.backbone_sha256
    }

    fn origin(&self, name: &str) -> Option<Origin> {
        let g = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(name).cloned()
    }

    fn resolve(&self, name: &str) -> Result<Arc<LoadedTask>, ApiError> {
        self.mt.task(name).map_err(|_| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> ApiError {
        let loaded: Vec<String> = self.mt.tasks().into_iter().map(|(n, _)| n).collect();
        ApiError::unknown_task(name, &loaded)
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
    async fn infer(&self, rows: Vec<Row>, arrived: Instant) -> Result<Vec<Prediction>, ApiError> {
        let deadline = arrived + self.cfg.timeout;
        let (tx, rx) = oneshot::channel();
        let job = Job {
            rows,
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
            Ok(Ok(Ok(preds))) => Ok(preds),
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
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(admin)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_metrics,
        ))
        .with_state(state)
}

async fn record_metrics(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
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

fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, rejection.body_text())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON body: {e}")))
}

/// A single text or a `[first, second]` pair.
fn parse_input(v: Value, at: &str) -> Result<TextInput, ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_input", format!("{at}: {why}"));
    let input = match v {
        Value::String(s) => TextInput::Single(s),
        Value::Array(items) => match <[Value; 2]>::try_from(items) {
            Ok([Value::String(a), Value::String(b)]) => TextInput::Pair(a, b),
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
    Ok(input)
}

fn check_count(n: usize, cfg: &ServeConfig) -> Result<(), ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskPredictRequest {
    inputs: Vec<Value>,
}

async fn predict_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: TaskPredictRequest = parse_json(&body)?;
    let loaded = s.resolve(&task)?;
    check_count(req.inputs.len(), &s.cfg)?;
    let rows = req
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(Row {
                task: Arc::clone(&loaded),
                input: parse_input(v, &format!("inputs[{i}]"))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let n = rows.len();
    let result = s.infer(rows, started).await;
    record_tasks(&s, &[(&task, n)], started, result.is_ok());
    let preds = result?;
    let warnings = truncation_warnings(&preds, s.mt.tokenizer.max_len());
    Ok(Json(json!({
        "task": task,
        "predictions": preds.into_iter().map(|p| prediction_json(p, None)).collect::<Vec<_>>(),
        "warnings": warnings,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixedRequest {
    requests: Vec<MixedItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixedItem {
    task: String,
    input: Value,
}

async fn predict_mixed(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: MixedRequest = parse_json(&body)?;
    check_count(req.requests.len(), &s.cfg)?;
    let mut resolved: HashMap<String, Arc<LoadedTask>> = HashMap::new();
    let mut rows = Vec::with_capacity(req.requests.len());
    let mut names = Vec::with_capacity(req.requests.len());
    for (i, item) in req.requests.into_iter().enumerate() {
        let task = match resolved.get(&item.task) {
            Some(t) => Arc::clone(t),
            None => {
                let t = s.resolve(&item.task)?;
                resolved.insert(item.task.clone(), Arc::clone(&t));
                t
            }
        };
        rows.push(Row {
            task,
            input: parse_input(item.input, &format!("requests[{i}].input"))?,
        });
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
    let preds = result?;
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
    Json(json!({ "backbone": s.backbone_info, "tasks": tasks }))
}

/// Task names usable in URLs, metric labels and file names.
fn valid_task_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn put_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !valid_task_name(&task) {
        return Err(ApiError::bad_request(
            "invalid_task_name",
            format!("task name `{task}`: use 1 to 64 of A-Z a-z 0-9 - _ ."),
        ));
    }
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
        Some(_) => {
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
