//! The OpenAPI 3.1 description served at `/openapi.json`.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// The document. Every route of [`crate::router`] is here (a test checks it).
pub fn document() -> Value {
    let task_param = json!({
        "name": "task", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "description": "No `..` anywhere." },
        "description": "Task name, as listed by GET /v1/tasks."
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "adalbert serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One frozen ALBERT/BERT backbone in memory, many task bundles (adapters, LayerNorms, heads). Requests arriving within a short window are batched; rows of different tasks share one backbone pass and go through their own task's adapters and head. Errors are JSON: {\"error\": code, \"reason\": text}."
        },
        "paths": {
            "/v1/tasks/{task}/predict": {
                "post": {
                    "summary": "Predict with one task",
                    "parameters": [task_param],
                    "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/TaskPredictRequest" },
                        "examples": {
                            "single": { "value": { "inputs": ["a gripping, beautifully shot film"] } },
                            "pairs": { "value": { "inputs": [["the first text", "the second text"]] } }
                        }
                    } } },
                    "responses": {
                        "200": json_response("One prediction per input, in order.", "TaskPredictResponse"),
                        "400": error_response("Malformed JSON, no inputs or an empty/ill-formed input."),
                        "404": error_response("Unknown task."),
                        "413": error_response("Body larger than --max-body-bytes or more inputs than --max-inputs."),
                        "503": error_response("Queue full (see Retry-After)."),
                        "504": error_response("Not answered within --timeout-ms.")
                    }
                }
            },
            "/v1/predict": {
                "post": {
                    "summary": "Predict with several tasks in one request",
                    "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/MixedPredictRequest" },
                        "example": { "requests": [
                            { "task": "movie-polarity", "input": "a dull, lifeless remake" },
                            { "task": "bbc-topic", "input": "Shares fell sharply at the close" }
                        ] }
                    } } },
                    "responses": {
                        "200": json_response("One prediction per request item, in order.", "MixedPredictResponse"),
                        "400": error_response("Malformed JSON, no items or an ill-formed input."),
                        "404": error_response("An item names an unknown task."),
                        "413": error_response("Body or item count over the limits."),
                        "503": error_response("Queue full (see Retry-After)."),
                        "504": error_response("Not answered within --timeout-ms.")
                    }
                }
            },
            "/v1/tasks": {
                "get": {
                    "summary": "The backbone and the loaded task bundles",
                    "responses": { "200": json_response("Backbone and tasks.", "TaskList") }
                }
            },
            "/v1/tasks/{task}": {
                "put": {
                    "summary": "Load or replace a task from bundle bytes (admin)",
                    "description": "The body is a task bundle file (safetensors with adalbert metadata). It is validated before anything changes: a corrupt bundle or one trained on another backbone is refused with 422 and the served version stays. Requests already admitted finish on the version they started with. The task is served under the name in the path.",
                    "security": [{ "bearer": [] }],
                    "parameters": [task_param],
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": {
                        "200": json_response("Replaced.", "TaskLoaded"),
                        "201": json_response("Loaded (new task).", "TaskLoaded"),
                        "400": error_response("Invalid task name."),
                        "401": error_response("Missing or wrong bearer token."),
                        "413": error_response("Bundle larger than --max-bundle-bytes."),
                        "422": error_response("Corrupt bundle, or trained on another backbone.")
                    }
                },
                "delete": {
                    "summary": "Unload a task (admin)",
                    "security": [{ "bearer": [] }],
                    "parameters": [task_param],
                    "responses": {
                        "200": { "description": "Removed.", "content": { "application/json": { "schema": {
                            "type": "object", "properties": { "task": { "type": "string" }, "removed": { "type": "boolean" } } } } } },
                        "401": error_response("Missing or wrong bearer token."),
                        "404": error_response("Unknown task.")
                    }
                }
            },
            "/v1/tasks/{task}/load": {
                "post": {
                    "summary": "Load or replace a task from a bundle file on the server (admin)",
                    "description": "The path must resolve (after symlinks and ..) to a file inside --bundle-dir or a --load-dir. The bundle is validated first (422 keeps the served version). A task loaded this way can be evicted and is reloaded from the same file on its next request.",
                    "security": [{ "bearer": [] }],
                    "parameters": [task_param],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["path"], "additionalProperties": false,
                        "properties": { "path": { "type": "string" } } } } } },
                    "responses": {
                        "200": { "description": "Replaced." },
                        "201": { "description": "Loaded (new task)." },
                        "400": error_response("Invalid task name or a path that does not exist."),
                        "401": error_response("Missing or wrong bearer token."),
                        "403": error_response("The path is outside the allowed directories."),
                        "422": error_response("Corrupt bundle, or trained on another backbone.")
                    }
                }
            },
            "/v1/embeddings": {
                "post": {
                    "summary": "OpenAI-compatible sentence embeddings",
                    "description": "As OpenAI's embeddings API: `model` is the backbone's name (see GET /info `model_id`) or a task (the backbone with that task's adapters); `input` a string or a list of strings; `encoding_format` float (default) or base64 (little-endian f32). Pooling and normalization follow the model's sentence-transformers files.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["input", "model"],
                        "properties": {
                            "input": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] },
                            "model": { "type": "string" },
                            "encoding_format": { "enum": ["float", "base64"] },
                            "dimensions": { "type": "integer", "description": "Must equal the hidden size if given." },
                            "user": { "type": "string" } } } } } },
                    "responses": {
                        "200": { "description": "{object: list, data: [{object: embedding, index, embedding}], model, usage: {prompt_tokens, total_tokens}}" },
                        "400": error_response("Malformed body, token-id input, unknown encoding_format or dimensions."),
                        "404": error_response("Unknown model."),
                        "413": error_response("Body or input count over the limits.")
                    }
                }
            },
            "/embed": {
                "post": {
                    "summary": "text-embeddings-inference: embed",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["inputs"], "additionalProperties": false,
                        "properties": {
                            "inputs": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] },
                            "normalize": { "type": "boolean", "default": true },
                            "truncate": { "type": "boolean", "default": false },
                            "truncation_direction": { "enum": ["Right"] } } } } } },
                    "responses": {
                        "200": { "description": "[[number]]: one vector per input." },
                        "413": error_response("An input longer than --max-len tokens without truncate, or limits exceeded.")
                    }
                }
            },
            "/predict": {
                "post": {
                    "summary": "text-embeddings-inference: classify",
                    "description": "The task is `task`, else the X-Task header, else the only task loaded. One input answers [{label, score}] (highest score first); a list answers one such list per input.",
                    "parameters": [{ "name": "X-Task", "in": "header", "required": false, "schema": { "type": "string" } }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["inputs"], "additionalProperties": false,
                        "properties": {
                            "inputs": {}, "task": { "type": "string" },
                            "raw_scores": { "const": false }, "truncate": { "type": "boolean", "default": false },
                            "truncation_direction": { "enum": ["Right"] } } } } } },
                    "responses": {
                        "200": { "description": "[{label, score}] or [[{label, score}]]." },
                        "400": error_response("No task named while several are served, or a bad input."),
                        "404": error_response("Unknown task."),
                        "413": error_response("An input longer than --max-len tokens without truncate.")
                    }
                }
            },
            "/tokenize": {
                "post": {
                    "summary": "The tokens the model sees",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["inputs"], "additionalProperties": false,
                        "properties": { "inputs": {}, "add_special_tokens": { "const": true } } } } } },
                    "responses": { "200": { "description": "[[{id, text, special, start, stop}]]: per input, its tokens with byte spans." } }
                }
            },
            "/info": {
                "get": {
                    "summary": "Model and limits (text-embeddings-inference's names)",
                    "responses": { "200": { "description": "model_id, model_sha, model_type, max_input_length, max_batch_tokens, max_client_batch_size, version, tasks, available_tasks, max_loaded_tasks, pinned." } }
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": { "200": { "description": "Serving.", "content": { "application/json": { "schema": {
                        "type": "object", "properties": {
                            "status": { "const": "ok" }, "tasks": { "type": "integer" },
                            "queue_depth": { "type": "integer" }, "uptime_seconds": { "type": "number" } } } } } } }
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": { "200": { "description": "Requests, errors, latency histograms, batch sizes, per-task counters.", "content": { "text/plain": { "schema": { "type": "string" } } } } }
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": { "200": { "description": "OpenAPI 3.1.", "content": { "application/json": {} } } }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "reason"],
                    "properties": {
                        "error": { "type": "string", "description": "Stable code: malformed_json, invalid_input, no_inputs, too_many_inputs, body_too_large, unknown_task, invalid_task_name, invalid_bundle, unauthorized, queue_full, timeout, not_found, method_not_allowed, unknown_model, input_too_long, task_required, path_not_allowed, invalid_path, internal." },
                        "reason": { "type": "string" }
                    }
                },
                "Input": {
                    "oneOf": [
                        { "type": "string", "minLength": 1 },
                        { "type": "array", "items": { "type": "string", "minLength": 1 }, "minItems": 2, "maxItems": 2 }
                    ],
                    "description": "A text, or a [first, second] pair for pair tasks."
                },
                "TaskPredictRequest": {
                    "type": "object", "required": ["inputs"], "additionalProperties": false,
                    "properties": { "inputs": { "type": "array", "items": { "$ref": "#/components/schemas/Input" }, "minItems": 1 } }
                },
                "MixedPredictRequest": {
                    "type": "object", "required": ["requests"], "additionalProperties": false,
                    "properties": { "requests": { "type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["task", "input"], "additionalProperties": false,
                        "properties": { "task": { "type": "string" }, "input": { "$ref": "#/components/schemas/Input" } } } } }
                },
                "Prediction": {
                    "type": "object", "required": ["label", "scores", "truncated"],
                    "properties": {
                        "task": { "type": "string", "description": "Only in /v1/predict answers." },
                        "label": { "type": ["string", "null"], "description": "Most probable label; null for regression." },
                        "scores": { "type": "array", "items": { "type": "number" }, "description": "Class probabilities in label order, or the single regression value." },
                        "truncated": { "type": "boolean", "description": "The input was cut to the server's --max-len tokens." }
                    }
                },
                "TaskPredictResponse": {
                    "type": "object",
                    "properties": {
                        "task": { "type": "string" },
                        "predictions": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } },
                        "warnings": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "MixedPredictResponse": {
                    "type": "object",
                    "properties": {
                        "predictions": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } },
                        "warnings": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "TaskInfo": {
                    "type": "object",
                    "properties": {
                        "task": { "type": "string" }, "mode": { "enum": ["adapter", "head", "full"] },
                        "labels": { "type": "array", "items": { "type": "string" } },
                        "regression": { "type": "boolean" },
                        "adapter": { "type": ["string", "null"] }, "sharing": { "type": "string" },
                        "pooling": { "type": "string" }, "layout": { "type": "object" },
                        "metrics": { "type": "object", "additionalProperties": { "type": "number" } },
                        "backbone_sha256": { "type": "string" },
                        "bytes": { "type": "integer", "description": "Bytes of the task's own tensors (fp32)." },
                        "trainable_params": { "type": "integer" },
                        "generation": { "type": "integer", "description": "Server-wide load counter: grows with each load or replacement." },
                        "loaded_at_unix": { "type": "integer" }, "source": { "type": "string" }
                    }
                },
                "TaskList": {
                    "type": "object",
                    "properties": {
                        "backbone": { "type": "object", "properties": {
                            "sha256": { "type": "string" }, "family": { "type": "string" },
                            "hidden_size": { "type": "integer" }, "layers": { "type": "integer" },
                            "params": { "type": "integer" }, "bytes": { "type": "integer" }, "max_len": { "type": "integer" } } },
                        "tasks": { "type": "array", "items": { "$ref": "#/components/schemas/TaskInfo" } },
                        "available": { "type": "array", "items": { "type": "string" }, "description": "Tasks in --bundle-dir not loaded now (loaded on their first request)." }
                    }
                },
                "TaskLoaded": {
                    "type": "object",
                    "properties": {
                        "task": { "$ref": "#/components/schemas/TaskInfo" },
                        "replaced": { "type": "boolean" },
                        "trained_as": { "type": "string", "description": "The task name in the bundle's metadata." }
                    }
                }
            }
        }
    })
}
