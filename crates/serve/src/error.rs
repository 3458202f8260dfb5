//! Errors: [`ApiError`] is what a client sees (an HTTP status and a JSON body with a machine
//! code and a human reason); [`ServeError`] is what stops the server itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the batching worker")]
    Worker(#[source] std::io::Error),
    #[error("bundle {path}")]
    Bundle {
        path: std::path::PathBuf,
        #[source]
        source: adalbert_model::ModelError,
    },
    #[error("bundle {path}: task name `{task}` is not allowed (use {rule})", rule = crate::names::TASK_NAME_RULE)]
    TaskName {
        task: String,
        path: std::path::PathBuf,
    },
    #[error(
        "two bundles for task `{task}`: {first} and {second}; serve each task from one bundle"
    )]
    DuplicateTask {
        task: String,
        first: std::path::PathBuf,
        second: std::path::PathBuf,
    },
    #[error("server failed")]
    Io(#[from] std::io::Error),
}

/// A request that could not be answered, as `{"error": code, "reason": text}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {reason}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `unknown_task`.
    pub code: &'static str,
    pub reason: String,
    /// Seconds for a `Retry-After` header (503 when the queue is full).
    pub retry_after: Option<u64>,
}

/// The error code of a response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, reason)
    }

    pub fn unknown_task(name: &str, loaded: &[String]) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_task",
            format!(
                "no task `{name}` is loaded; loaded tasks: [{}]",
                loaded.join(", ")
            ),
        )
    }

    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "reason": self.reason });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"adalbert-admin\""),
            );
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}
