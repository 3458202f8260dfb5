//! Routes existing clients speak: OpenAI's `POST /v1/embeddings`, and Hugging Face
//! text-embeddings-inference's `POST /embed`, `POST /predict`, `POST /tokenize` and
//! `GET /info`; plus the admin route `POST /v1/tasks/{task}/load`.

use std::sync::Arc;
use std::time::Instant;

use adalbert_model::tokenizer::TextInput;
use adalbert_model::LoadedTask;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{
    body_error, check_count, check_task_name, mark_cut, parse_input, parse_json, AccessNote, Shared,
};
use crate::batcher::Row;
use crate::error::ApiError;

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A vector as OpenAI's `encoding_format: "base64"` sends it: little-endian f32 bytes.
pub fn f32_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// Texts from a string or a list of strings (`field` names it in errors), each bounded as
/// [`parse_input`] does, and whether each was cut.
pub fn parse_texts(
    v: Value,
    field: &str,
    max_len: usize,
) -> Result<(Vec<TextInput>, Vec<bool>), ApiError> {
    let items = match v {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("`{field}` must be a string or a list of strings"),
            ))
        }
    };
    let mut inputs = Vec::with_capacity(items.len());
    let mut cut = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if !item.is_string() {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!(
                    "{field}[{i}]: expected a string (token-id inputs are not accepted; send text)"
                ),
            ));
        }
        let (input, c) = parse_input(item, &format!("{field}[{i}]"), max_len)?;
        inputs.push(input);
        cut.push(c);
    }
    Ok((inputs, cut))
}

/// The body of `POST /v1/embeddings`.
#[derive(Deserialize)]
pub struct OpenAiEmbeddingRequest {
    /// A text or a list of texts ([`parse_texts`]).
    pub input: Value,
    pub model: String,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /v1/embeddings`, as OpenAI's API: `model` is the backbone's name (its sentence
/// embedding) or a task (the backbone with that task's adapters).
pub async fn openai_embeddings(
    State(s): State<Shared>,
    Extension(note): Extension<AccessNote>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: OpenAiEmbeddingRequest = parse_json(&body)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("encoding_format `{other}`: use float or base64"),
            ))
        }
    };
    let hidden = s.mt.backbone.config.shape.hidden_size;
    if let Some(d) = req.dimensions {
        if d != hidden {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("dimensions {d}: this model's embeddings have {hidden}"),
            ));
        }
    }
    let task = model_task(&s, &req.model).await?;
    let (inputs, _) = parse_texts(req.input, "input", s.mt.tokenizer.max_len())?;
    note.set(&req.model, inputs.len());
    check_count(inputs.len(), &s.cfg)?;
    let out = s.embeddings(task, inputs, None, started).await?;
    let total: usize = out.tokens.iter().sum();
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                json!(f32_base64(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    })))
}

/// `None` for the backbone's own name, else the task named `model`.
async fn model_task(s: &Shared, model: &str) -> Result<Option<Arc<LoadedTask>>, ApiError> {
    if model == s.cfg.model_name {
        return Ok(None);
    }
    match s.resolve(model).await {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.code == "unknown_task" => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!(
                "model `{model}`: use the backbone `{}` or a task ({})",
                s.cfg.model_name, e.reason
            ),
        )),
        Err(e) => Err(e),
    }
}

/// The body of `POST /embed`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeiEmbedRequest {
    /// A text or a list of texts ([`parse_texts`]).
    pub inputs: Value,
    #[serde(default)]
    pub normalize: Option<bool>,
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Only `Right` (the default) is supported.
    #[serde(default)]
    pub truncation_direction: Option<String>,
}

/// Whether a text-embeddings-inference request allows cutting long inputs; only cutting on
/// the right is supported.
pub fn truncation_allowed(
    truncate: Option<bool>,
    direction: Option<&str>,
) -> Result<bool, ApiError> {
    match direction {
        None | Some("Right") | Some("right") => Ok(truncate.unwrap_or(false)),
        Some(d) => Err(ApiError::bad_request(
            "invalid_input",
            format!("truncation_direction `{d}`: only Right is supported"),
        )),
    }
}

fn too_long(i: usize, max_len: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "input_too_long",
        format!("inputs[{i}] is longer than {max_len} tokens; pass \"truncate\": true to cut it"),
    )
}

/// `POST /embed`, as text-embeddings-inference: `[[f32]]`, normalized unless
/// `"normalize": false`; an input longer than `--max-len` is 413 unless `"truncate": true`.
pub async fn tei_embed(
    State(s): State<Shared>,
    Extension(note): Extension<AccessNote>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: TeiEmbedRequest = parse_json(&body)?;
    let truncate = truncation_allowed(req.truncate, req.truncation_direction.as_deref())?;
    let max_len = s.mt.tokenizer.max_len();
    let (inputs, cut) = parse_texts(req.inputs, "inputs", max_len)?;
    note.set(&s.cfg.model_name, inputs.len());
    check_count(inputs.len(), &s.cfg)?;
    if !truncate {
        if let Some(i) = cut.iter().position(|&c| c) {
            return Err(too_long(i, max_len));
        }
    }
    let out = s
        .embeddings(None, inputs, Some(req.normalize.unwrap_or(true)), started)
        .await?;
    if !truncate {
        if let Some(i) = out.truncated.iter().position(|&t| t) {
            return Err(too_long(i, max_len));
        }
    }
    Ok(Json(json!(out.vectors)))
}

/// The body of `POST /predict`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeiPredictRequest {
    /// One input or a list of them ([`tei_predict_items`]).
    pub inputs: Value,
    /// The task; else the `X-Task` header; else the only task loaded.
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub raw_scores: Option<bool>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: Option<String>,
}

/// The inputs of a [`TeiPredictRequest`], each for [`parse_input`], and whether the request
/// is a single input (answered with one ranking rather than a list): one input is a string or
/// a `[first, second]` pair of strings; several are a list of those.
pub fn tei_predict_items(inputs: Value) -> Result<(Vec<Value>, bool), ApiError> {
    let single = match &inputs {
        Value::String(_) => true,
        Value::Array(items) => items.len() == 2 && items.iter().all(Value::is_string),
        _ => false,
    };
    if single {
        return Ok((vec![inputs], true));
    }
    match inputs {
        Value::Array(items) => Ok((items, false)),
        _ => Err(ApiError::bad_request(
            "invalid_input",
            "`inputs` must be a string, a [first, second] pair, or a list of those",
        )),
    }
}

/// `POST /predict`, as text-embeddings-inference: `[{label, score}]` for one input (labels
/// by score, highest first), `[[{label, score}]]` for a list. The task comes from `"task"`,
/// the `X-Task` header, or is the only one loaded.
pub async fn tei_predict(
    State(s): State<Shared>,
    Extension(note): Extension<AccessNote>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let body = body.map_err(body_error)?;
    let req: TeiPredictRequest = parse_json(&body)?;
    let truncate = truncation_allowed(req.truncate, req.truncation_direction.as_deref())?;
    if req.raw_scores == Some(true) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "raw_scores is not supported: scores are probabilities",
        ));
    }
    let header_task = headers
        .get("x-task")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let name = match req.task.or(header_task) {
        Some(t) => t,
        None => {
            let loaded = s.mt.tasks();
            match loaded.as_slice() {
                [(only, _)] => only.clone(),
                _ => {
                    return Err(ApiError::bad_request(
                        "task_required",
                        "name the task with \"task\" or an X-Task header (several are served)",
                    ))
                }
            }
        }
    };
    let task = s.resolve(&name).await?;
    let (items, single) = tei_predict_items(req.inputs)?;
    note.set(&name, items.len());
    check_count(items.len(), &s.cfg)?;
    let max_len = s.mt.tokenizer.max_len();
    let mut rows = Vec::with_capacity(items.len());
    let mut cut = Vec::with_capacity(items.len());
    for (i, v) in items.into_iter().enumerate() {
        let (input, c) = parse_input(v, &format!("inputs[{i}]"), max_len)?;
        rows.push(Row {
            task: Arc::clone(&task),
            input,
        });
        cut.push(c);
    }
    let mut preds = s.infer(rows, started).await?;
    mark_cut(&mut preds, &cut);
    if !truncate {
        if let Some(i) = preds.iter().position(|p| p.truncated) {
            return Err(too_long(i, max_len));
        }
    }
    let labels = &task.meta.labels;
    let ranked: Vec<Value> = preds
        .into_iter()
        .map(|p| {
            let mut pairs: Vec<(String, f32)> = if labels.is_empty() {
                vec![(
                    "value".to_string(),
                    p.scores.first().copied().unwrap_or(0.0),
                )]
            } else {
                labels.iter().cloned().zip(p.scores).collect()
            };
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
            json!(pairs
                .into_iter()
                .map(|(label, score)| json!({"label": label, "score": score}))
                .collect::<Vec<_>>())
        })
        .collect();
    Ok(Json(if single {
        ranked.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!(ranked)
    }))
}

/// The body of `POST /tokenize`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    /// A text or a list of texts ([`parse_texts`]).
    pub inputs: Value,
    /// Only `true` (the default) is supported: the model always sees its special tokens.
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
}

/// `POST /tokenize`: `[[{id, text, special, start, stop}]]`, the tokens the model would see.
pub async fn tokenize(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: TokenizeRequest = parse_json(&body)?;
    if req.add_special_tokens == Some(false) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "add_special_tokens false is not supported",
        ));
    }
    let (inputs, _) = parse_texts(req.inputs, "inputs", s.mt.tokenizer.max_len())?;
    check_count(inputs.len(), &s.cfg)?;
    let tok = Arc::clone(&s.mt.tokenizer);
    // Bounded texts, but still CPU work: off the async runtime.
    let tokens = tokio::task::spawn_blocking(move || {
        inputs
            .iter()
            .map(|i| tok.tokens(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizing stopped: {e}")))?
    .map_err(|e| ApiError::bad_request("invalid_input", e.to_string()))?;
    Ok(Json(json!(tokens)))
}

/// `GET /info`: the model and the server's limits, as text-embeddings-inference names them.
pub async fn info(State(s): State<Shared>) -> Json<Value> {
    let pooling = s.cfg.embedding.pooling_name();
    let max_len = s.mt.tokenizer.max_len();
    let tasks: Vec<String> = s.mt.tasks().into_iter().map(|(n, _)| n).collect();
    Json(json!({
        "model_id": s.cfg.model_name,
        "model_sha": s.backbone_sha256(),
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": pooling, "normalize": s.cfg.embedding.normalize}},
        "max_concurrent_requests": s.cfg.queue_depth,
        "max_input_length": max_len,
        "max_batch_tokens": s.cfg.max_batch * max_len,
        "max_client_batch_size": s.cfg.max_inputs,
        "version": env!("CARGO_PKG_VERSION"),
        "tasks": tasks,
        "available_tasks": s.available(),
        "max_loaded_tasks": s.cfg.max_loaded_tasks,
        "pinned": s.cfg.pinned,
    }))
}

/// The body of `POST /v1/tasks/{task}/load`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// A bundle file inside the server's allowed directories.
    pub path: String,
}

/// `POST /v1/tasks/{task}/load` (admin): loads a bundle from a server-side path inside the
/// allowed directories and serves it as `task`; it can be evicted and reloaded from there.
pub async fn load_task(
    State(s): State<Shared>,
    UrlPath(task): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_task_name(&task)?;
    let body = body.map_err(body_error)?;
    let req: LoadRequest = parse_json(&body)?;
    let path = s.allowed_path(&req.path)?;
    let existed = s.mt.contains(&task);
    s.load_file(task.clone(), path.clone()).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({"task": task, "path": path.display().to_string(), "replaced": existed})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        // 1.0f32 little-endian is 00 00 80 3f.
        assert_eq!(f32_base64(&[1.0]), "AACAPw==");
    }
}
