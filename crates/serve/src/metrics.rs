//! Counters and histograms rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Labels are only ever route templates, status codes, error codes and names of tasks that
//! were loaded, so a client cannot grow the number of series with made-up paths or tasks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Latency buckets, seconds.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch-size buckets, inputs per model pass.
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); one more than `bounds` for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (route, method, status) -> count
    requests: BTreeMap<(String, String, u16), u64>,
    /// (route, code) -> count
    errors: BTreeMap<(String, &'static str), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_size: Option<Histogram>,
    task_inputs: BTreeMap<String, u64>,
    task_errors: BTreeMap<String, u64>,
    task_latency: BTreeMap<String, Histogram>,
    /// (task, event) -> count; events: loaded, replaced, rejected, removed
    task_events: BTreeMap<(String, &'static str), u64>,
    /// Task lifecycle: loads from files, evictions, cache hits and misses, load latency.
    loads: u64,
    evictions: u64,
    hits: u64,
    misses: u64,
    load_latency: Option<Histogram>,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Point-in-time values rendered beside the counters.
pub struct Gauges {
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub tasks_loaded: usize,
    /// Bytes of the loaded tasks' own tensors.
    pub tasks_bytes: usize,
    pub uptime_seconds: f64,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // Metrics never hold the lock across anything that can panic midway.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        seconds: f64,
        error: Option<&'static str>,
    ) {
        self.with(|m| {
            *m.requests
                .entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
            m.latency
                .entry(route.to_string())
                .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
                .observe(seconds);
            if let Some(code) = error {
                *m.errors.entry((route.to_string(), code)).or_default() += 1;
            }
        });
    }

    pub fn batch(&self, rows: usize) {
        self.with(|m| {
            m.batch_size
                .get_or_insert_with(|| Histogram::new(BATCH_BOUNDS))
                .observe(rows as f64)
        });
    }

    /// One request's outcome for one (loaded) task: `inputs` answered or failed.
    pub fn task(&self, task: &str, inputs: usize, seconds: f64, ok: bool) {
        self.with(|m| {
            if ok {
                *m.task_inputs.entry(task.to_string()).or_default() += inputs as u64;
                m.task_latency
                    .entry(task.to_string())
                    .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
                    .observe(seconds);
            } else {
                *m.task_errors.entry(task.to_string()).or_default() += 1;
            }
        });
    }

    pub fn task_event(&self, task: &str, event: &'static str) {
        self.with(|m| *m.task_events.entry((task.to_string(), event)).or_default() += 1);
    }

    /// A task loaded from a file (first request, reload after eviction, or the load route).
    pub fn load(&self, seconds: f64) {
        self.with(|m| {
            m.loads += 1;
            m.load_latency
                .get_or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
                .observe(seconds);
        });
    }

    pub fn eviction(&self) {
        self.with(|m| m.evictions += 1);
    }

    /// A request found its task loaded (`true`) or had to wait for a load (`false`).
    pub fn lookup(&self, hit: bool) {
        self.with(|m| if hit { m.hits += 1 } else { m.misses += 1 });
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        self.with(|m| {
            let w = &mut out;
            header(w, "adalbert_http_requests_total", "counter", "HTTP requests answered, by route template, method and status.");
            for ((route, method, status), n) in &m.requests {
                let _ = writeln!(w, "adalbert_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}");
            }
            header(w, "adalbert_http_errors_total", "counter", "Requests answered with an error, by route template and error code.");
            for ((route, code), n) in &m.errors {
                let _ = writeln!(w, "adalbert_http_errors_total{{route=\"{route}\",code=\"{code}\"}} {n}");
            }
            header(w, "adalbert_http_request_duration_seconds", "histogram", "Time from request to response, by route template.");
            for (route, h) in &m.latency {
                h.render(w, "adalbert_http_request_duration_seconds", &format!("route=\"{route}\""));
            }
            header(w, "adalbert_batch_size", "histogram", "Inputs per model pass (dynamic batches, tasks mixed).");
            m.batch_size
                .clone()
                .unwrap_or_else(|| Histogram::new(BATCH_BOUNDS))
                .render(w, "adalbert_batch_size", "");
            header(w, "adalbert_task_inputs_total", "counter", "Inputs answered, by task.");
            for (task, n) in &m.task_inputs {
                let _ = writeln!(w, "adalbert_task_inputs_total{{task=\"{task}\"}} {n}");
            }
            header(w, "adalbert_task_errors_total", "counter", "Failed prediction requests, by task.");
            for (task, n) in &m.task_errors {
                let _ = writeln!(w, "adalbert_task_errors_total{{task=\"{task}\"}} {n}");
            }
            header(w, "adalbert_task_request_duration_seconds", "histogram", "Latency of answered prediction requests, by task.");
            for (task, h) in &m.task_latency {
                h.render(w, "adalbert_task_request_duration_seconds", &format!("task=\"{task}\""));
            }
            header(w, "adalbert_task_loads_total", "counter", "Tasks loaded from a bundle file (first request, reload after eviction, load route).");
            let _ = writeln!(w, "adalbert_task_loads_total {}", m.loads);
            header(w, "adalbert_task_evictions_total", "counter", "Tasks unloaded to stay within --max-loaded-tasks.");
            let _ = writeln!(w, "adalbert_task_evictions_total {}", m.evictions);
            header(w, "adalbert_task_cache_hits_total", "counter", "Task lookups that found the task loaded.");
            let _ = writeln!(w, "adalbert_task_cache_hits_total {}", m.hits);
            header(w, "adalbert_task_cache_misses_total", "counter", "Task lookups that waited for a load from a bundle file.");
            let _ = writeln!(w, "adalbert_task_cache_misses_total {}", m.misses);
            header(w, "adalbert_task_load_duration_seconds", "histogram", "Time to read, validate and insert a task bundle.");
            m.load_latency
                .clone()
                .unwrap_or_else(|| Histogram::new(LATENCY_BOUNDS))
                .render(w, "adalbert_task_load_duration_seconds", "");
            header(w, "adalbert_task_events_total", "counter", "Bundle loads, replacements, rejected uploads and removals, by task.");
            for ((task, event), n) in &m.task_events {
                let _ = writeln!(w, "adalbert_task_events_total{{task=\"{task}\",event=\"{event}\"}} {n}");
            }
        });
        let w = &mut out;
        header(
            w,
            "adalbert_queue_depth",
            "gauge",
            "Requests waiting for the batching worker.",
        );
        let _ = writeln!(w, "adalbert_queue_depth {}", g.queue_depth);
        header(
            w,
            "adalbert_queue_capacity",
            "gauge",
            "Most requests that may wait before 503.",
        );
        let _ = writeln!(w, "adalbert_queue_capacity {}", g.queue_capacity);
        header(
            w,
            "adalbert_tasks_loaded",
            "gauge",
            "Task bundles being served.",
        );
        let _ = writeln!(w, "adalbert_tasks_loaded {}", g.tasks_loaded);
        header(
            w,
            "adalbert_tasks_loaded_bytes",
            "gauge",
            "Bytes of the loaded tasks' own tensors (fp32), beside the backbone.",
        );
        let _ = writeln!(w, "adalbert_tasks_loaded_bytes {}", g.tasks_bytes);
        header(
            w,
            "adalbert_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        let _ = writeln!(w, "adalbert_uptime_seconds {:.3}", g.uptime_seconds);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let m = Metrics::default();
        for rows in [1, 3, 3, 300] {
            m.batch(rows);
        }
        let text = m.render(&Gauges {
            queue_depth: 2,
            queue_capacity: 8,
            tasks_loaded: 1,
            tasks_bytes: 0,
            uptime_seconds: 1.0,
        });
        assert!(
            text.contains("adalbert_batch_size_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("adalbert_batch_size_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("adalbert_batch_size_bucket{le=\"4\"} 3\n"));
        assert!(text.contains("adalbert_batch_size_bucket{le=\"256\"} 3\n"));
        assert!(text.contains("adalbert_batch_size_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("adalbert_batch_size_sum 307\n"));
        assert!(text.contains("adalbert_batch_size_count 4\n"));
        assert!(text.contains("adalbert_queue_depth 2\n"));
    }

    #[test]
    fn requests_and_errors_are_labelled() {
        let m = Metrics::default();
        m.request("/v1/predict", "POST", 200, 0.003, None);
        m.request("/v1/predict", "POST", 404, 0.0001, Some("unknown_task"));
        m.task("sst", 3, 0.003, true);
        m.task("sst", 1, 0.003, false);
        let text = m.render(&Gauges {
            queue_depth: 0,
            queue_capacity: 1,
            tasks_loaded: 1,
            tasks_bytes: 0,
            uptime_seconds: 0.0,
        });
        assert!(text.contains(
            "adalbert_http_requests_total{route=\"/v1/predict\",method=\"POST\",status=\"404\"} 1"
        ));
        assert!(text
            .contains("adalbert_http_errors_total{route=\"/v1/predict\",code=\"unknown_task\"} 1"));
        assert!(text.contains(
            "adalbert_http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.005\"} 2"
        ));
        assert!(text.contains("adalbert_task_inputs_total{task=\"sst\"} 3"));
        assert!(text.contains("adalbert_task_errors_total{task=\"sst\"} 1"));
    }
}
