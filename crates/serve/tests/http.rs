//! The service over real HTTP on loopback (127.0.0.1, ephemeral ports) with the tiny ALBERT
//! fixture: every route, every error the issue names, batched results equal to single-request
//! results, concurrent mixed-task traffic, and hot reload under load without a failed request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adalbert_model::bundle::BUNDLE_FORMAT;
use adalbert_model::{
    AdapterSpec, Backbone, BundleMeta, Checkpoint, MultiTask, Pooling, Sharing, TaskBundle,
    TaskLayout, TrainMode,
};
use adalbert_serve::{AppState, ServeConfig};
use candle_core::{Device, Tensor};
use serde_json::{json, Value};

const WORDS: [&str; 12] = [
    "good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "was", "plot",
];

/// The albert_shared fixture plus a WordPiece vocabulary of its 99 ids, and task bundles.
struct Fixture {
    dir: tempfile::TempDir,
    sha: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        adalbert_model::testing::write_tiny_albert(dir.path(), &WORDS).unwrap();
        // What bundles record: the backbone's content hash.
        let ck = adalbert_model::Checkpoint::open(dir.path()).unwrap();
        let sha = ck.content_sha256().unwrap();
        Self { dir, sha }
    }

    fn model(&self) -> &Path {
        self.dir.path()
    }

    fn meta(&self, task: &str, labels: &[&str], mode: TrainMode, layout: TaskLayout) -> BundleMeta {
        BundleMeta {
            format: BUNDLE_FORMAT,
            task: task.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            mode,
            layout,
            metrics: BTreeMap::from([("accuracy".into(), 0.5)]),
            training: json!({}),
            seed: 1,
            backbone_sha256: self.sha.clone(),
            model_name: None,
            revision: None,
            trainable_params: 0,
            tool_version: "test".into(),
        }
    }

    /// An adapter bundle whose up-projections are random, so tasks really differ.
    fn adapter(&self, task: &str, labels: &[&str], seed: u64) -> PathBuf {
        let (backbone, _) = Backbone::from_dir(self.model()).unwrap();
        let layout = TaskLayout {
            adapter: Some(AdapterSpec::parse("houlsby:4").unwrap()),
            sharing: Sharing::PerApplication,
            layer_norms: true,
            pooler: false,
            num_labels: labels.len().max(1),
            pooling: Pooling::Mean,
        };
        let mut tensors = layout.init_tensors(&backbone, seed).unwrap();
        let mut k = 0.0;
        for (name, t) in tensors.iter_mut() {
            if name.contains(".up.weight") || name.starts_with("classifier.weight") {
                k += 1.0;
                let n = t.elem_count();
                let v: Vec<f32> = (0..n)
                    .map(|i| {
                        (((i as f64 + 1.0) * (seed as f64 + 1.3) * (k + 0.7)).sin() * 0.5) as f32
                    })
                    .collect();
                *t = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
            }
        }
        let path = self.dir.path().join(format!("{task}-{seed}.safetensors"));
        let meta = self.meta(task, labels, TrainMode::Adapter, layout);
        TaskBundle::save(&meta, &tensors, &path).unwrap();
        path
    }

    /// A full fine-tuning bundle: its own copy of every backbone weight plus a head.
    fn full(&self, task: &str, labels: &[&str], seed: u64) -> PathBuf {
        let (backbone, _) = Backbone::from_dir(self.model()).unwrap();
        let layout = TaskLayout {
            adapter: None,
            sharing: Sharing::PerApplication,
            layer_norms: false,
            pooler: false,
            num_labels: labels.len(),
            pooling: Pooling::Cls,
        };
        let mut tensors = layout.init_tensors(&backbone, seed).unwrap();
        let ck = Checkpoint::open(self.model()).unwrap();
        for (name, t) in ck.tensors() {
            // A different backbone than the shared one: scaled weights.
            tensors.insert(format!("backbone.{name}"), (t * 0.9).unwrap());
        }
        let path = self
            .dir
            .path()
            .join(format!("{task}-full-{seed}.safetensors"));
        let meta = self.meta(task, labels, TrainMode::Full, layout);
        TaskBundle::save(&meta, &tensors, &path).unwrap();
        path
    }

    /// A bundle with the metadata of an adapter bundle trained on another backbone.
    fn foreign(&self, task: &str) -> Vec<u8> {
        let path = self.adapter(task, &["a", "b"], 99);
        let mut b = TaskBundle::load(&path).unwrap();
        b.meta.backbone_sha256 = "f".repeat(64);
        let out = self.dir.path().join("foreign.safetensors");
        TaskBundle::save(&b.meta, &b.tensors, &out).unwrap();
        std::fs::read(out).unwrap()
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(fx: &Fixture, bundles: &[PathBuf], cfg: ServeConfig) -> Self {
        let mut mt = MultiTask::open(fx.model(), 16).unwrap();
        for b in bundles {
            mt.load_bundle(b).unwrap();
        }
        let state = AppState::new(mt, cfg).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            adalbert_serve::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
            done: Some(done),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn put(&self, task: &str, bytes: Vec<u8>, token: Option<&str>) -> (u16, Value) {
        let mut r = self
            .http
            .put(self.url(&format!("/v1/tasks/{task}")))
            .body(bytes);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn delete(&self, task: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.delete(self.url(&format!("/v1/tasks/{task}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        r.text().await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .expect("graceful shutdown")
                .unwrap();
        }
    }
}

fn scores(v: &Value) -> Vec<f32> {
    v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// The value of a metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no metric `{prefix}` in\n{text}"))
}

fn sentence(i: usize) -> String {
    (0..3 + i % 5)
        .map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

type Case<'a> = (&'a str, (u16, Value), u16, &'a str, &'a str);

fn quick() -> ServeConfig {
    ServeConfig {
        batch_window: Duration::from_millis(2),
        ..ServeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers() {
    let fx = Fixture::new();
    let sent = fx.adapter("sentiment", &["negative", "positive"], 1);
    let topic = fx.adapter("topic", &["business", "sport", "tech"], 2);
    let rating = fx.adapter("rating", &[], 3);
    let srv = Server::start(&fx, &[sent, topic, rating], quick()).await;

    let (s, h) = srv.get("/healthz").await;
    assert_eq!(
        (s, h["status"].as_str(), h["tasks"].as_u64()),
        (200, Some("ok"), Some(3))
    );

    let (s, list) = srv.get("/v1/tasks").await;
    assert_eq!(s, 200);
    assert_eq!(list["backbone"]["sha256"], json!(fx.sha));
    assert_eq!(list["backbone"]["max_len"], json!(16));
    let tasks = list["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(names, ["rating", "sentiment", "topic"]);
    let topic_info = &tasks[2];
    assert_eq!(topic_info["labels"], json!(["business", "sport", "tech"]));
    assert_eq!(topic_info["mode"], "adapter");
    assert_eq!(topic_info["adapter"], "houlsby:4,act=relu");
    assert_eq!(topic_info["backbone_sha256"], json!(fx.sha));
    assert_eq!(topic_info["metrics"]["accuracy"], json!(0.5));
    assert_eq!(topic_info["source"], "preloaded");
    let task_bytes = topic_info["bytes"].as_u64().unwrap();
    let backbone_bytes = list["backbone"]["bytes"].as_u64().unwrap();
    assert!(
        task_bytes > 0 && task_bytes < backbone_bytes,
        "{task_bytes} vs {backbone_bytes}"
    );
    assert_eq!(tasks[0]["regression"], json!(true));

    // One task: single texts and pairs.
    let (s, r) = srv
        .post(
            "/v1/tasks/topic/predict",
            &json!({"inputs": ["the movie was good", ["great plot", "sad movie"]]}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["task"], "topic");
    let preds = r["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    for p in preds {
        let sc = scores(p);
        assert_eq!(sc.len(), 3);
        assert!((sc.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{sc:?}");
        let best = sc
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(p["label"], json!(["business", "sport", "tech"][best]));
        assert_eq!(p["truncated"], json!(false));
    }
    assert_eq!(r["warnings"], json!([]));
    assert_ne!(scores(&preds[0]), scores(&preds[1]));

    // Regression: no label, one value.
    let (s, r) = srv
        .post(
            "/v1/tasks/rating/predict",
            &json!({"inputs": ["nice movie"]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["predictions"][0]["label"], Value::Null);
    assert_eq!(scores(&r["predictions"][0]).len(), 1);

    // Mixed tasks in one request, answered in order and equal to the one-task answers.
    let (s, mixed) = srv
        .post(
            "/v1/predict",
            &json!({"requests": [
                {"task": "sentiment", "input": "the movie was good"},
                {"task": "topic", "input": ["great plot", "sad movie"]},
                {"task": "rating", "input": "nice movie"},
                {"task": "topic", "input": "the movie was good"},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{mixed}");
    let m = mixed["predictions"].as_array().unwrap();
    let tasks_in_order: Vec<&str> = m.iter().map(|p| p["task"].as_str().unwrap()).collect();
    assert_eq!(tasks_in_order, ["sentiment", "topic", "rating", "topic"]);
    assert_eq!(scores(&m[0]).len(), 2);
    assert!(close(&scores(&m[1]), &scores(&preds[1]), 1e-5));
    assert!(close(&scores(&m[3]), &scores(&preds[0]), 1e-5));
    assert!(close(&scores(&m[2]), &scores(&r["predictions"][0]), 1e-5));

    // Truncation is applied and reported.
    let long = vec!["good"; 40].join(" ");
    let (s, r) = srv
        .post(
            "/v1/tasks/sentiment/predict",
            &json!({"inputs": ["fine", long]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["predictions"][0]["truncated"], json!(false));
    assert_eq!(r["predictions"][1]["truncated"], json!(true));
    assert_eq!(r["warnings"], json!(["input 1 was truncated to 16 tokens"]));

    // OpenAPI lists every route.
    let (s, doc) = srv.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/tasks/{task}/predict", "post"),
        ("/v1/predict", "post"),
        ("/v1/tasks", "get"),
        ("/v1/tasks/{task}", "put"),
        ("/v1/tasks/{task}", "delete"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/tasks/{task}/load", "post"),
        ("/v1/embeddings", "post"),
        ("/embed", "post"),
        ("/predict", "post"),
        ("/tokenize", "post"),
        ("/info", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }

    // Metrics saw the traffic, per route, per status and per task.
    let text = srv.metrics().await;
    assert_eq!(
        metric(&text, "adalbert_http_requests_total{route=\"/v1/tasks/{task}/predict\",method=\"POST\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        metric(&text, "adalbert_task_inputs_total{task=\"topic\"}"),
        4.0
    );
    assert_eq!(
        metric(&text, "adalbert_task_inputs_total{task=\"sentiment\"}"),
        3.0
    );
    assert_eq!(metric(&text, "adalbert_tasks_loaded"), 3.0);
    assert!(metric(&text, "adalbert_batch_size_count") >= 4.0);
    assert!(text.contains(
        "adalbert_http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 1"
    ));
    assert!(text.contains("# TYPE adalbert_task_request_duration_seconds histogram"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_a_reason() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let a2 = fx.adapter("a", &["x", "y"], 2);
    let cfg = ServeConfig {
        token: Some("s3cret".into()),
        max_body_bytes: 512,
        max_inputs: 4,
        ..quick()
    };
    let srv = Server::start(&fx, &[a], cfg).await;
    let predict = "/v1/tasks/a/predict";
    let (_, before) = srv.post(predict, &json!({"inputs": ["good movie"]})).await;

    // (what, (status, body) answered, expected status, code, words of the reason)
    let cases: Vec<Case> = vec![
        (
            "syntax",
            srv.post_raw(predict, "{\"inputs\": [").await,
            400,
            "malformed_json",
            "malformed JSON",
        ),
        (
            "field",
            srv.post(predict, &json!({"input": ["x"]})).await,
            400,
            "malformed_json",
            "unknown field `input`",
        ),
        (
            "type",
            srv.post(predict, &json!({"inputs": "x"})).await,
            400,
            "malformed_json",
            "expected a sequence",
        ),
        (
            "mixed syntax",
            srv.post_raw("/v1/predict", "nope").await,
            400,
            "malformed_json",
            "malformed JSON",
        ),
        (
            "no inputs",
            srv.post(predict, &json!({"inputs": []})).await,
            400,
            "no_inputs",
            "no inputs",
        ),
        (
            "empty text",
            srv.post(predict, &json!({"inputs": ["  "]})).await,
            400,
            "invalid_input",
            "inputs[0]: empty text",
        ),
        (
            "bad pair",
            srv.post(predict, &json!({"inputs": [["a", "b", "c"]]}))
                .await,
            400,
            "invalid_input",
            "exactly two strings",
        ),
        (
            "number",
            srv.post(
                "/v1/predict",
                &json!({"requests": [{"task": "a", "input": 3}]}),
            )
            .await,
            400,
            "invalid_input",
            "requests[0].input",
        ),
        (
            "unknown task",
            srv.post("/v1/tasks/zzz/predict", &json!({"inputs": ["x"]}))
                .await,
            404,
            "unknown_task",
            "loaded tasks: [a]",
        ),
        (
            "unknown mixed",
            srv.post(
                "/v1/predict",
                &json!({"requests": [{"task": "a", "input": "x"}, {"task": "q", "input": "x"}]}),
            )
            .await,
            404,
            "unknown_task",
            "`q`",
        ),
        (
            "no route",
            srv.get("/v2/nothing").await,
            404,
            "not_found",
            "/v2/nothing",
        ),
        (
            "too many",
            srv.post(predict, &json!({"inputs": ["a", "b", "c", "d", "e"]}))
                .await,
            413,
            "too_many_inputs",
            "limit is 4",
        ),
        (
            "too big",
            srv.post(predict, &json!({"inputs": ["x".repeat(600)]}))
                .await,
            413,
            "body_too_large",
            "length limit",
        ),
        (
            "no token",
            srv.put("b", std::fs::read(&a2).unwrap(), None).await,
            401,
            "unauthorized",
            "Bearer",
        ),
        (
            "wrong token",
            srv.put("b", std::fs::read(&a2).unwrap(), Some("nope"))
                .await,
            401,
            "unauthorized",
            "wrong bearer token",
        ),
        (
            "delete no token",
            srv.delete("a", None).await,
            401,
            "unauthorized",
            "Bearer",
        ),
        (
            "bad name",
            srv.put("bad%20name", std::fs::read(&a2).unwrap(), Some("s3cret"))
                .await,
            400,
            "invalid_task_name",
            "bad name",
        ),
        (
            "corrupt",
            srv.put("a", b"not a bundle at all".to_vec(), Some("s3cret"))
                .await,
            422,
            "invalid_bundle",
            "not a valid safetensors file",
        ),
        (
            "foreign",
            srv.put("a", fx.foreign("a"), Some("s3cret")).await,
            422,
            "invalid_bundle",
            "retrain the task on this backbone",
        ),
        (
            "delete unknown",
            srv.delete("zzz", Some("s3cret")).await,
            404,
            "unknown_task",
            "zzz",
        ),
    ];
    for (what, (status, body), want_status, want_code, want_reason) in &cases {
        assert_eq!(status, want_status, "{what}: {body}");
        assert_eq!(body["error"], json!(want_code), "{what}: {body}");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            reason.contains(want_reason),
            "{what}: `{reason}` lacks `{want_reason}`"
        );
    }
    // The 401 carries the challenge.
    let r = srv
        .http
        .delete(srv.url("/v1/tasks/a"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // After the refused uploads the old version still serves, unchanged.
    let (s, after) = srv.post(predict, &json!({"inputs": ["good movie"]})).await;
    assert_eq!(s, 200);
    assert_eq!(before["predictions"], after["predictions"]);

    // With the token: load a new task (201), replace it (200), delete it, and it is gone.
    let (s, r) = srv
        .put("b", std::fs::read(&a2).unwrap(), Some("s3cret"))
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (r["replaced"].as_bool(), r["trained_as"].as_str()),
        (Some(false), Some("a"))
    );
    assert_eq!(r["task"]["task"], "b");
    assert_eq!(r["task"]["source"], "upload");
    let (s, r) = srv
        .put("b", std::fs::read(&a2).unwrap(), Some("s3cret"))
        .await;
    assert_eq!((s, r["replaced"].as_bool()), (200, Some(true)));
    let (s, r) = srv.delete("b", Some("s3cret")).await;
    assert_eq!((s, &r), (200, &json!({"task": "b", "removed": true})));
    let (s, _) = srv
        .post("/v1/tasks/b/predict", &json!({"inputs": ["x"]}))
        .await;
    assert_eq!(s, 404);

    let text = srv.metrics().await;
    assert_eq!(metric(&text, "adalbert_http_errors_total{route=\"/v1/tasks/{task}/predict\",code=\"malformed_json\"}"), 3.0);
    assert_eq!(
        metric(
            &text,
            "adalbert_http_errors_total{route=\"/v1/tasks/{task}\",code=\"invalid_bundle\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "adalbert_task_events_total{task=\"a\",event=\"rejected\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "adalbert_task_events_total{task=\"b\",event=\"removed\"}"
        ),
        1.0
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_503_with_retry_after_and_slow_requests_time_out() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    // One pass per input and room for one waiting request: a burst must overflow.
    let cfg = ServeConfig {
        batch_window: Duration::ZERO,
        max_batch: 1,
        queue_depth: 1,
        max_inputs: 64,
        ..ServeConfig::default()
    };
    let srv = Arc::new(Server::start(&fx, std::slice::from_ref(&a), cfg).await);
    let inputs: Vec<String> = (0..32).map(sentence).collect();
    let mut handles = Vec::new();
    for _ in 0..24 {
        let srv = Arc::clone(&srv);
        let inputs = inputs.clone();
        handles.push(tokio::spawn(async move {
            let r = srv
                .http
                .post(srv.url("/v1/tasks/a/predict"))
                .json(&json!({ "inputs": inputs }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (status, retry, body)
        }));
    }
    let mut full = 0;
    let mut ok = 0;
    for h in handles {
        let (status, retry, body) = h.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                full += 1;
                assert_eq!(retry.as_deref(), Some("1"));
                assert_eq!(body["error"], "queue_full");
                assert!(body["reason"].as_str().unwrap().contains("queue depth 1"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(full > 0 && ok > 0, "ok {ok}, queue full {full}");
    Arc::try_unwrap(srv).ok().unwrap().stop().await;

    // A timeout shorter than the work: 504.
    let cfg = ServeConfig {
        batch_window: Duration::ZERO,
        max_batch: 1,
        max_inputs: 64,
        timeout: Duration::from_millis(1),
        ..ServeConfig::default()
    };
    let srv = Server::start(&fx, &[a], cfg).await;
    let inputs: Vec<String> = (0..64).map(sentence).collect();
    let (s, r) = srv
        .post("/v1/tasks/a/predict", &json!({ "inputs": inputs }))
        .await;
    assert_eq!(s, 504, "{r}");
    assert_eq!(r["error"], "timeout");
    assert!(r["reason"].as_str().unwrap().contains("1 ms"));
    let text = srv.metrics().await;
    assert_eq!(metric(&text, "adalbert_task_errors_total{task=\"a\"}"), 1.0);
    srv.stop().await;
}

/// Sends `requests` (task, text) concurrently, each as its own HTTP request, half of them
/// through the one-task route and half through the mixed route.
async fn concurrent(srv: &Arc<Server>, requests: &[(String, String)]) -> Vec<(u16, Value)> {
    let handles: Vec<_> = requests
        .iter()
        .enumerate()
        .map(|(i, (task, text))| {
            let srv = Arc::clone(srv);
            let (task, text) = (task.clone(), text.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let (s, r) = srv
                        .post(
                            &format!("/v1/tasks/{task}/predict"),
                            &json!({"inputs": [text]}),
                        )
                        .await;
                    (s, r["predictions"][0].clone())
                } else {
                    let (s, r) = srv
                        .post(
                            "/v1/predict",
                            &json!({"requests": [{"task": task, "input": text}]}),
                        )
                        .await;
                    (s, r["predictions"][0].clone())
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_mixed_traffic_equals_single_requests() {
    let fx = Fixture::new();
    let bundles = vec![
        fx.adapter("a", &["x", "y"], 1),
        fx.adapter("b", &["p", "q", "r"], 2),
        fx.adapter("c", &[], 3),
        fx.full("f", &["m", "n"], 4),
    ];
    let requests: Vec<(String, String)> = (0..48)
        .map(|i| (["a", "b", "c", "f"][i % 4].to_string(), sentence(i)))
        .collect();

    // Reference: every request alone (no window, one input per pass).
    let single = ServeConfig {
        batch_window: Duration::ZERO,
        max_batch: 1,
        ..ServeConfig::default()
    };
    let srv = Server::start(&fx, &bundles, single).await;
    let mut expected = Vec::new();
    for (task, text) in &requests {
        let (s, r) = srv
            .post(
                &format!("/v1/tasks/{task}/predict"),
                &json!({"inputs": [text]}),
            )
            .await;
        assert_eq!(s, 200);
        expected.push(r["predictions"][0].clone());
    }
    let text = srv.metrics().await;
    assert_eq!(metric(&text, "adalbert_batch_size_sum"), 48.0);
    assert_eq!(metric(&text, "adalbert_batch_size_count"), 48.0);
    srv.stop().await;

    // Batched: a long window gathers the concurrent requests into mixed batches.
    let batched = ServeConfig {
        batch_window: Duration::from_millis(40),
        max_batch: 64,
        ..ServeConfig::default()
    };
    let srv = Arc::new(Server::start(&fx, &bundles, batched).await);
    let got = concurrent(&srv, &requests).await;
    for (i, ((status, p), want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(*status, 200, "request {i}: {p}");
        assert_eq!(p["label"], want["label"], "request {i}");
        assert!(
            close(&scores(p), &scores(want), 1e-5),
            "request {i} ({}): batched {:?} vs single {:?}",
            requests[i].0,
            scores(p),
            scores(want)
        );
    }
    let text = srv.metrics().await;
    let (sum, count) = (
        metric(&text, "adalbert_batch_size_sum"),
        metric(&text, "adalbert_batch_size_count"),
    );
    assert_eq!(sum, 48.0);
    assert!(
        count < 48.0 / 2.0,
        "requests were not batched: {count} passes for 48 inputs"
    );
    assert!(metric(&text, "adalbert_batch_size_bucket{le=\"1\"}") < count);
    for t in ["a", "b", "c", "f"] {
        assert_eq!(
            metric(
                &text,
                &format!("adalbert_task_inputs_total{{task=\"{t}\"}}")
            ),
            12.0
        );
    }
    Arc::try_unwrap(srv).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_fails_no_request() {
    let fx = Fixture::new();
    let v1 = fx.adapter("a", &["x", "y"], 1);
    let v2 = fx.adapter("a", &["x", "y"], 2);
    let b = fx.adapter("b", &["p", "q", "r"], 3);
    let c = fx.adapter("c", &["u", "v"], 4);
    let cfg = ServeConfig {
        token: Some("t".into()),
        batch_window: Duration::from_millis(2),
        ..ServeConfig::default()
    };
    let srv = Arc::new(Server::start(&fx, &[v1.clone(), b], cfg).await);
    let probe = json!({"inputs": ["the movie was good"]});
    let version_scores = |r: &Value| scores(&r["predictions"][0]);
    let (_, r) = srv.post("/v1/tasks/a/predict", &probe).await;
    let s1 = version_scores(&r);

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut clients = Vec::new();
    for k in 0..6 {
        let srv = Arc::clone(&srv);
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, Value)> = Vec::new();
            let mut i = 0;
            while Instant::now() < stop_at && seen.len() < 2000 {
                let r = if k % 2 == 0 {
                    srv.post(
                        "/v1/tasks/a/predict",
                        &json!({"inputs": ["the movie was good", sentence(i)]}),
                    )
                    .await
                } else {
                    srv.post(
                        "/v1/predict",
                        &json!({"requests": [
                            {"task": "b", "input": sentence(i)},
                            {"task": "a", "input": "the movie was good"},
                        ]}),
                    )
                    .await
                };
                seen.push(r);
                i += 1;
            }
            (k, seen)
        }));
    }
    // Meanwhile: replace `a` back and forth, refuse a corrupt upload, add and drop `c`.
    let (bytes1, bytes2, bytes_c) = (
        std::fs::read(&v1).unwrap(),
        std::fs::read(&v2).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    let mut reloads = 0;
    while Instant::now() < stop_at - Duration::from_millis(200) {
        let bytes = if reloads % 2 == 0 { &bytes2 } else { &bytes1 };
        let (s, r) = srv.put("a", bytes.clone(), Some("t")).await;
        assert_eq!(s, 200, "{r}");
        let (s, _) = srv.put("a", b"garbage".to_vec(), Some("t")).await;
        assert_eq!(s, 422);
        let (s, _) = srv.put("c", bytes_c.clone(), Some("t")).await;
        assert_eq!(s, 201);
        let (s, _) = srv.delete("c", Some("t")).await;
        assert_eq!(s, 200);
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // End on v2.
    if reloads % 2 == 0 {
        srv.put("a", bytes2.clone(), Some("t")).await;
    }
    let (_, r) = srv.post("/v1/tasks/a/predict", &probe).await;
    let s2 = version_scores(&r);
    assert!(
        !close(&s1, &s2, 1e-4),
        "the two versions answer alike: {s1:?}"
    );
    assert!(reloads >= 3, "only {reloads} reloads");

    let mut total = 0;
    let mut saw = [false, false];
    for h in clients {
        let (k, seen) = h.await.unwrap();
        assert!(!seen.is_empty());
        for (status, body) in seen {
            assert_eq!(status, 200, "client {k}: {body}");
            let a_pred = if k % 2 == 0 {
                &body["predictions"][0]
            } else {
                &body["predictions"][1]
            };
            // Every answer for `a` is exactly one of its two versions, never a mix.
            let got = scores(a_pred);
            let is1 = close(&got, &s1, 1e-5);
            let is2 = close(&got, &s2, 1e-5);
            assert!(is1 ^ is2, "client {k}: {got:?} is neither version");
            saw[usize::from(is2)] = true;
            total += 1;
        }
    }
    assert!(saw[0] && saw[1], "load never saw both versions");
    assert!(total > 30, "only {total} requests under load");
    let text = srv.metrics().await;
    assert!(
        metric(
            &text,
            "adalbert_task_events_total{task=\"a\",event=\"replaced\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(
            &text,
            "adalbert_http_errors_total{route=\"/v1/tasks/{task}\",code=\"invalid_bundle\"}"
        ),
        reloads as f64
    );
    Arc::try_unwrap(srv).ok().unwrap().stop().await;
}

/// A copy of the bundle at `path` that says it was trained as `task`.
fn renamed(fx: &Fixture, path: &Path, task: &str, file: &str) -> PathBuf {
    let mut b = TaskBundle::load(path).unwrap();
    b.meta.task = task.into();
    let out = fx.dir.path().join(file);
    TaskBundle::save(&b.meta, &b.tensors, &out).unwrap();
    out
}

#[test]
fn start_up_refuses_bad_names_duplicates_and_a_max_len_past_the_positions() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let a2 = fx.adapter("a", &["x", "y"], 2);
    let evil = renamed(&fx, &a, "../../etc/passwd", "evil.safetensors");
    let mt = MultiTask::open(fx.model(), 16).unwrap();

    let e = adalbert_serve::names::preload(&mt, &[evil])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`../../etc/passwd` is not allowed"), "{e}");
    let e = adalbert_serve::names::preload(&mt, &[a.clone(), a2.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("two bundles for task `a`"), "{e}");
    assert!(
        e.contains(&a.display().to_string()) && e.contains(&a2.display().to_string()),
        "{e}"
    );
    assert!(mt.is_empty(), "a refused start-up set adds nothing");
    let loaded = adalbert_serve::names::preload(&mt, &[a]).unwrap();
    assert_eq!(loaded[0].0, "a");

    let positions = mt.backbone.config.shape.max_position_embeddings;
    let too_long = MultiTask::open(fx.model(), positions + 1).unwrap();
    let e = AppState::new(too_long, quick()).err().unwrap().to_string();
    assert!(e.contains("above the model's"), "{e}");
    let exact = MultiTask::open(fx.model(), positions).unwrap();
    assert!(AppState::new(exact, quick()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_input_is_cut_before_tokenizing_and_others_are_not_stalled() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let cfg = ServeConfig {
        max_body_bytes: 4 << 20,
        ..quick()
    };
    let srv = Server::start(&fx, &[a], cfg).await;
    let huge = "good movie ".repeat(100_000); // 1.1 MB
    let short = srv.post("/v1/tasks/a/predict", &json!({"inputs": ["good movie good movie good movie good movie good movie good movie good movie good movie"]})).await;
    let started = Instant::now();
    let (s, big) = srv
        .post("/v1/tasks/a/predict", &json!({"inputs": [huge]}))
        .await;
    let took = started.elapsed();
    assert_eq!(s, 200, "{big}");
    assert_eq!(big["predictions"][0]["truncated"], true);
    // The first 16 tokens of both texts are the same, so are the answers.
    assert!(close(
        &scores(&big["predictions"][0]),
        &scores(&short.1["predictions"][0]),
        1e-5
    ));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_axum_makes_have_json_bodies_too() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let srv = Server::start(&fx, &[a], quick()).await;
    let r = srv
        .http
        .get(srv.url("/v1/tasks/a/predict"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().contains_key("allow"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("does not take GET"),
        "{body}"
    );
    let (s, body) = srv.get("/nowhere").await;
    assert_eq!((s, body["error"].as_str()), (404, Some("not_found")));
    let text = srv.metrics().await;
    assert!(text.contains("code=\"method_not_allowed\""), "{text}");
    srv.stop().await;
}

fn b64_decode_f32(s: &str) -> Vec<f32> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut bytes = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |acc, v| (acc << 6) | v);
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        bytes.extend_from_slice(&three[..3 - pad]);
    }
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// What the official `openai` Python client sends for `client.embeddings.create(model=...,
/// input=[...])` (it asks for base64 unless told otherwise) and what it reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_embeddings_speak_the_openai_client_shapes() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let srv = Server::start(&fx, &[a], quick()).await;
    let hidden = {
        let (_, tasks) = srv.get("/v1/tasks").await;
        tasks["backbone"]["hidden_size"].as_u64().unwrap() as usize
    };
    // Exactly the client's body for a list input with the default encoding.
    let (s, b64) = srv
        .post_raw(
            "/v1/embeddings",
            r#"{"input": ["good movie", "bad plot"], "model": "adalbert", "encoding_format": "base64"}"#,
        )
        .await;
    assert_eq!(s, 200, "{b64}");
    assert_eq!(b64["object"], "list");
    assert_eq!(b64["model"], "adalbert");
    let data = b64["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert!(d["embedding"].is_string());
    }
    let usage = &b64["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 6, "{usage}"); // [CLS] w w [SEP] x2
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);
    // `encoding_format: "float"` and a single string.
    let (s, float) = srv
        .post_raw(
            "/v1/embeddings",
            r#"{"input": "good movie", "model": "adalbert", "encoding_format": "float"}"#,
        )
        .await;
    assert_eq!(s, 200, "{float}");
    let v: Vec<f32> = float["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(v.len(), hidden);
    let decoded = b64_decode_f32(b64["data"][0]["embedding"].as_str().unwrap());
    assert!(close(&decoded, &v, 1e-6), "base64 and float disagree");
    // No encoding_format at all means float.
    let (s, plain) = srv
        .post(
            "/v1/embeddings",
            &json!({"input": ["good movie"], "model": "adalbert"}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(plain["data"][0]["embedding"].is_array());
    // A task as the model: the backbone with its adapters, a different vector.
    let (s, task) = srv
        .post(
            "/v1/embeddings",
            &json!({"input": "good movie", "model": "a"}),
        )
        .await;
    assert_eq!(s, 200, "{task}");
    assert_ne!(task["data"][0]["embedding"], float["data"][0]["embedding"]);
    // Errors are JSON with a reason.
    for (body, status, code) in [
        (json!({"input": "x", "model": "nope"}), 404, "unknown_model"),
        (
            json!({"input": [[1, 2, 3]], "model": "adalbert"}),
            400,
            "invalid_input",
        ),
        (
            json!({"input": "x", "model": "adalbert", "encoding_format": "int8"}),
            400,
            "invalid_input",
        ),
        (
            json!({"input": "x", "model": "adalbert", "dimensions": 3}),
            400,
            "invalid_input",
        ),
        (json!({"input": [], "model": "adalbert"}), 400, "no_inputs"),
    ] {
        let (s, r) = srv.post("/v1/embeddings", &body).await;
        assert_eq!(
            (s, r["error"].as_str()),
            (status, Some(code)),
            "{body}: {r}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_routes_embed_predict_tokenize_and_info() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let srv = Server::start(&fx, &[a], quick()).await;
    let norm = |v: &Value| -> f32 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| (x.as_f64().unwrap() as f32).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let (s, e) = srv
        .post("/embed", &json!({"inputs": ["good movie", "bad plot"]}))
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e.as_array().unwrap().len(), 2);
    assert!((norm(&e[0]) - 1.0).abs() < 1e-4);
    let (_, raw) = srv
        .post(
            "/embed",
            &json!({"inputs": "good movie", "normalize": false}),
        )
        .await;
    assert!((norm(&raw[0]) - 1.0).abs() > 1e-3);
    let long = vec!["good"; 40].join(" ");
    let (s, r) = srv.post("/embed", &json!({"inputs": long})).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (413, Some("input_too_long")),
        "{r}"
    );
    let (s, _) = srv
        .post("/embed", &json!({"inputs": long, "truncate": true}))
        .await;
    assert_eq!(s, 200);

    // /predict: labels by score, highest first; the only task is the default.
    let (s, p) = srv.post("/predict", &json!({"inputs": "good movie"})).await;
    assert_eq!(s, 200, "{p}");
    let p = p.as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert!(p[0]["score"].as_f64().unwrap() >= p[1]["score"].as_f64().unwrap());
    let (_, native) = srv
        .post("/v1/tasks/a/predict", &json!({"inputs": ["good movie"]}))
        .await;
    assert_eq!(p[0]["label"], native["predictions"][0]["label"]);
    let (s, batch) = srv
        .post(
            "/predict",
            &json!({"inputs": ["good movie", "bad plot", "the plot"]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(batch.as_array().unwrap().len(), 3);
    let r = srv
        .http
        .post(srv.url("/predict"))
        .header("x-task", "nope")
        .json(&json!({"inputs": "good"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let (s, t) = srv
        .post("/tokenize", &json!({"inputs": "good movie"}))
        .await;
    assert_eq!(s, 200, "{t}");
    let toks = t[0].as_array().unwrap();
    assert_eq!(toks.len(), 4, "{t}");
    assert_eq!(toks[0]["special"], true);
    assert_eq!(toks[1]["text"], "good");
    assert_eq!(
        (toks[1]["start"].as_u64(), toks[1]["stop"].as_u64()),
        (Some(0), Some(4))
    );

    let (s, info) = srv.get("/info").await;
    assert_eq!(s, 200);
    assert_eq!(info["model_id"], "adalbert");
    assert_eq!(info["max_input_length"], 16);
    assert_eq!(info["tasks"], json!(["a"]));
    srv.stop().await;
}

/// A bundle directory with `n` adapter tasks `t0..`.
fn bundle_dir(fx: &Fixture, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let src = fx.adapter(&format!("t{i}"), &["x", "y"], 10 + i as u64);
        std::fs::copy(&src, dir.path().join(format!("t{i}.bundle.safetensors"))).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_racing_first_requests_load_a_task_once() {
    let fx = Fixture::new();
    let dir = bundle_dir(&fx, 2);
    let cfg = ServeConfig {
        bundle_dir: Some(dir.path().to_path_buf()),
        ..quick()
    };
    let srv = Arc::new(Server::start(&fx, &[], cfg).await);
    let (_, tasks) = srv.get("/v1/tasks").await;
    assert_eq!(tasks["tasks"], json!([]));
    assert_eq!(tasks["available"], json!(["t0", "t1"]));
    let mut handles = Vec::new();
    for i in 0..100 {
        let srv = Arc::clone(&srv);
        handles.push(tokio::spawn(async move {
            srv.post("/v1/tasks/t0/predict", &json!({"inputs": [sentence(i)]}))
                .await
        }));
    }
    for h in handles {
        let (s, r) = h.await.unwrap();
        assert_eq!(s, 200, "{r}");
    }
    let text = srv.metrics().await;
    assert_eq!(metric(&text, "adalbert_task_loads_total"), 1.0);
    assert_eq!(
        metric(&text, "adalbert_task_load_duration_seconds_count"),
        1.0
    );
    let misses = metric(&text, "adalbert_task_cache_misses_total");
    let hits = metric(&text, "adalbert_task_cache_hits_total");
    assert_eq!(misses + hits, 100.0);
    assert!(metric(&text, "adalbert_tasks_loaded_bytes") > 0.0);
    // Unknown names (and names that would leave the directory) stay 404.
    let (s, _) = srv
        .post("/v1/tasks/t9/predict", &json!({"inputs": ["x"]}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = srv
        .post("/v1/tasks/..%2Ft0/predict", &json!({"inputs": ["x"]}))
        .await;
    assert_eq!(s, 404);
    if let Ok(srv) = Arc::try_unwrap(srv) {
        srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_tasks_reload_with_identical_answers_and_pins_stay() {
    let fx = Fixture::new();
    let dir = bundle_dir(&fx, 4);
    let cfg = ServeConfig {
        bundle_dir: Some(dir.path().to_path_buf()),
        max_loaded_tasks: Some(2),
        pinned: vec!["t3".into()],
        ..quick()
    };
    let srv = Server::start(&fx, &[], cfg).await;
    let ask = |t: &str| format!("/v1/tasks/{t}/predict");
    let body = json!({"inputs": ["good movie", "the plot was awful", "nice"]});
    let (s, first) = srv.post(&ask("t0"), &body).await;
    assert_eq!(s, 200, "{first}");
    for t in ["t1", "t2"] {
        let (s, r) = srv.post(&ask(t), &body).await;
        assert_eq!(s, 200, "{r}");
    }
    let (_, tasks) = srv.get("/v1/tasks").await;
    let loaded: Vec<&str> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(loaded.len(), 2, "{tasks}");
    assert!(loaded.contains(&"t3"), "the pinned task stays: {tasks}");
    let (s, again) = srv.post(&ask("t0"), &body).await;
    assert_eq!(s, 200);
    assert_eq!(
        first["predictions"], again["predictions"],
        "reload changed answers"
    );
    let text = srv.metrics().await;
    // t1 evicts t0, t2 evicts t1, t0 evicts t2; the pinned t3 stays throughout.
    assert_eq!(metric(&text, "adalbert_task_evictions_total"), 3.0);
    assert_eq!(metric(&text, "adalbert_task_loads_total"), 5.0); // t3 pinned + t0 t1 t2 t0
    assert_eq!(metric(&text, "adalbert_tasks_loaded"), 2.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_route_reads_only_inside_allowed_directories_and_bad_bundles_are_422() {
    let fx = Fixture::new();
    let dir = bundle_dir(&fx, 1);
    let outside = fx.adapter("o", &["x", "y"], 5);
    std::fs::write(dir.path().join("broken.safetensors"), b"not a bundle").unwrap();
    std::fs::write(dir.path().join("foreign.safetensors"), fx.foreign("f")).unwrap();
    let cfg = ServeConfig {
        token: Some("s3cret".into()),
        bundle_dir: Some(dir.path().to_path_buf()),
        ..quick()
    };
    let srv = Server::start(&fx, &[], cfg).await;
    let load = |task: &str, path: String, token: Option<&'static str>| {
        let mut r = srv
            .http
            .post(srv.url(&format!("/v1/tasks/{task}/load")))
            .json(&json!({ "path": path }));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let inside = dir.path().join("t0.bundle.safetensors");
    let (s, _) = load("x", inside.display().to_string(), None).await;
    assert_eq!(s, 401);
    let (s, r) = load("x", outside.display().to_string(), Some("s3cret")).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (403, Some("path_not_allowed")),
        "{r}"
    );
    // `..` out of the allowed directory to a file that exists: refused after resolving.
    let sneaky = dir
        .path()
        .join("..")
        .join(fx.dir.path().file_name().unwrap())
        .join(outside.file_name().unwrap());
    assert!(sneaky.is_file());
    let (s, r) = load("x", sneaky.display().to_string(), Some("s3cret")).await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = load("x", inside.display().to_string(), Some("s3cret")).await;
    assert_eq!(s, 201, "{r}");
    let (s, r) = srv
        .post("/v1/tasks/x/predict", &json!({"inputs": ["good"]}))
        .await;
    assert_eq!(s, 200, "{r}");
    let before = r;
    // Broken and foreign bundles in the directory: 422 naming the problem; other tasks serve.
    for t in ["broken", "foreign"] {
        let (s, r) = srv
            .post(
                &format!("/v1/tasks/{t}/predict"),
                &json!({"inputs": ["good"]}),
            )
            .await;
        assert_eq!(
            (s, r["error"].as_str()),
            (422, Some("invalid_bundle")),
            "{t}: {r}"
        );
    }
    let (s, r) = load(
        "x",
        dir.path().join("foreign.safetensors").display().to_string(),
        Some("s3cret"),
    )
    .await;
    assert_eq!(s, 422, "{r}");
    let (s, after) = srv
        .post("/v1/tasks/x/predict", &json!({"inputs": ["good"]}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        after["predictions"], before["predictions"],
        "the served version changed"
    );
    srv.stop().await;
}

#[test]
fn a_bundle_directory_with_bad_names_or_duplicates_is_refused_at_start_up() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    for files in [
        &["-bad.safetensors"][..],
        &["a.safetensors", "a.bundle.safetensors"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::copy(&a, dir.path().join(f)).unwrap();
        }
        let mt = MultiTask::open(fx.model(), 16).unwrap();
        let cfg = ServeConfig {
            bundle_dir: Some(dir.path().to_path_buf()),
            ..quick()
        };
        let e = AppState::new(mt, cfg).err().unwrap().to_string();
        assert!(
            e.contains("is not allowed") || e.contains("two bundles for task `a`"),
            "{files:?}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let fx = Fixture::new();
    let a = fx.adapter("a", &["x", "y"], 1);
    let cfg = ServeConfig {
        batch_window: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let srv = Server::start(&fx, &[a], cfg).await;
    let http = srv.http.clone();
    let url = srv.url("/v1/tasks/a/predict");
    let inflight = tokio::spawn(async move {
        let r = http
            .post(url)
            .json(&json!({"inputs": ["good movie"]}))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop().await;
    assert_eq!(inflight.await.unwrap(), 200);
}
