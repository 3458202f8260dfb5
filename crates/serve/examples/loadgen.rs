//! Load generator for `make bench-serve`: starts `adalbert serve` as a child process on
//! loopback, sends a bounded number of prediction requests from concurrent clients, and
//! reports throughput, p50/p99 latency and the server's resident memory (VmRSS, VmHWM),
//! for N tasks served as adapter bundles on one backbone and as N full fine-tuned models.
//!
//! Only 127.0.0.1 is ever contacted; every run is bounded in requests and seconds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adalbert_model::TaskBundle;
use anyhow::Context;
use clap::Parser;
use serde_json::json;

mod common;
use common::{
    free_port, metric_value, percentile, rss_mib, scrape, start_server, status_kib, wait_ready,
    write_report, TEXTS,
};

#[derive(Parser)]
struct Args {
    /// The `adalbert` binary.
    #[arg(long, default_value = "target/release/adalbert")]
    bin: PathBuf,
    #[arg(long, default_value = "assets/minilm")]
    model: PathBuf,
    /// Trained adapter bundles; reused under new task names when fewer than the task count.
    #[arg(long, num_args = 1.., required = true)]
    adapters: Vec<PathBuf>,
    /// A trained full fine-tuning bundle, copied under N task names for the baseline.
    #[arg(long)]
    full: PathBuf,
    /// Task counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    tasks: Vec<usize>,
    /// Measured requests per configuration (after a warm-up).
    #[arg(long, default_value_t = 240)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Upper bound on one configuration's measurement, seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Working directory for renamed bundles and server logs.
    #[arg(long, default_value = "target/bench-serve/run")]
    work: PathBuf,
    /// Markdown report.
    #[arg(long, default_value = "results/serving.md")]
    out: PathBuf,
}

struct Row {
    kind: &'static str,
    tasks: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_idle_mib: f64,
    rss_mib: f64,
    hwm_mib: f64,
    bundle_mib: f64,
    batch_mean: f64,
}

/// Writes `n` bundles named `{kind}-{i}-{original task}`; returns paths and task names.
fn bundles(
    src: &[PathBuf],
    n: usize,
    kind: &str,
    dir: &Path,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for i in 0..n {
        let path = &src[i % src.len()];
        let mut b =
            TaskBundle::load(path).with_context(|| format!("loading {}", path.display()))?;
        let name = format!("{kind}{i}-{}", b.meta.task);
        b.meta.task = name.clone();
        let dst = dir.join(format!("{name}.safetensors"));
        TaskBundle::save(&b.meta, &b.tensors, &dst)?;
        out.push((dst, name));
    }
    Ok(out)
}

async fn measure(args: &Args, kind: &'static str, n: usize) -> anyhow::Result<Row> {
    let src: Vec<PathBuf> = if kind == "adapter" {
        args.adapters.clone()
    } else {
        vec![args.full.clone()]
    };
    let dir = args.work.join(format!("{kind}-{n}"));
    let made = bundles(&src, n, kind, &dir)?;
    let bundle_bytes: u64 = made
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("server.log");
    let mut serve_args: Vec<String> = vec![
        "--model".into(),
        args.model.display().to_string(),
        "--max-len".into(),
        args.max_len.to_string(),
        "--batch-window-ms".into(),
        args.batch_window_ms.to_string(),
    ];
    for (p, _) in &made {
        serve_args.extend(["--bundle".into(), p.display().to_string()]);
    }
    let server = start_server(&args.bin, &addr, &serve_args, &log)?;
    let pid = server.pid();
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    wait_ready(&http, &base, 180, &log).await?;
    let rss_idle = rss_mib(pid)?;
    let made_paths: Vec<PathBuf> = made.iter().map(|(p, _)| p.clone()).collect();
    let names: Arc<Vec<String>> = Arc::new(made.into_iter().map(|(_, n)| n).collect());
    let send = {
        let (http, base, names) = (http.clone(), base.clone(), Arc::clone(&names));
        move |i: usize| {
            let http = http.clone();
            let url = format!("{base}/v1/tasks/{}/predict", names[i % names.len()]);
            async move {
                let t = Instant::now();
                let ok = match http
                    .post(url)
                    .json(&json!({"inputs": [TEXTS[i % TEXTS.len()]]}))
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (ok, t.elapsed().as_secs_f64() * 1e3)
            }
        }
    };
    for i in 0..names.len().max(4) {
        send(i).await; // warm-up: every task once
    }
    let batches_before = metric_value(&scrape(&http, &base).await?, "adalbert_batch_size_count");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let next = Arc::clone(&next);
        let send = send.clone();
        let total = args.requests;
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total || Instant::now() > deadline {
                    break;
                }
                let (ok, ms) = send(i).await;
                if ok {
                    lat.push(ms);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await?;
        lat.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = scrape(&http, &base).await?;
    let batches = metric_value(&metrics, "adalbert_batch_size_count") - batches_before;
    let rss = rss_mib(pid)?;
    let hwm = status_kib(pid, "VmHWM:")?;
    drop(server);
    // The renamed copies are large (a full model each); keep only the server log.
    for p in made_paths {
        let _ = std::fs::remove_file(p);
    }
    lat.sort_by(f64::total_cmp);
    Ok(Row {
        kind,
        tasks: n,
        requests: lat.len(),
        errors,
        seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        rss_idle_mib: rss_idle,
        rss_mib: rss,
        hwm_mib: hwm / 1024.0,
        bundle_mib: bundle_bytes as f64 / (1 << 20) as f64,
        batch_mean: lat.len() as f64 / batches.max(1.0),
    })
}

fn report(args: &Args, rows: &[Row], trained: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Serving: one backbone + N adapter bundles vs N full fine-tuned models\n"
    );
    let _ = writeln!(
        s,
        "Measured by `make bench-serve` ({}): `adalbert serve` started as its own process on \
         127.0.0.1 with N tasks, then {} single-input requests (`POST /v1/tasks/{{task}}/predict`, \
         tasks round-robin) from {} concurrent HTTP clients, after one warm-up request per task. \
         Backbone `{}` (all-MiniLM-L6-v2, 22.7 M parameters), `--max-len {}`, \
         `--batch-window-ms {}`, default `--max-batch`. Memory is the server process's \
         `VmRSS` (idle after loading, and after the load) and `VmHWM` (peak) from `/proc`.\n",
        common::cpu_note(),
        args.requests,
        args.concurrency,
        args.model.display(),
        args.max_len,
        args.batch_window_ms
    );
    let _ = writeln!(
        s,
        "| mode | tasks | requests ok | errors | throughput (req/s) | p50 (ms) | p99 (ms) | mean inputs/batch | RSS idle (MiB) | RSS after load (MiB) | peak RSS (MiB) | bundle files (MiB) |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let mode = if r.kind == "adapter" {
            "adapters, one backbone"
        } else {
            "full models"
        };
        let _ = writeln!(
            s,
            "| {mode} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} | {:.1} |",
            r.tasks,
            r.requests,
            r.errors,
            r.requests as f64 / r.seconds,
            r.p50_ms,
            r.p99_ms,
            r.batch_mean,
            r.rss_idle_mib,
            r.rss_mib,
            r.hwm_mib,
            r.bundle_mib
        );
    }
    let _ = writeln!(s);
    let mem = |kind: &str, n: usize| {
        rows.iter()
            .find(|r| r.kind == kind && r.tasks == n)
            .map(|r| r.rss_mib)
    };
    for n in &args.tasks {
        if let (Some(a), Some(f)) = (mem("adapter", *n), mem("full", *n)) {
            let _ = writeln!(
                s,
                "- {n} task(s): adapters {a:.0} MiB vs full models {f:.0} MiB resident ({:.1}x).",
                f / a
            );
        }
    }
    let _ = writeln!(
        s,
        "\nBundles: {}. Tasks beyond the trained ones reuse a trained bundle under a new task \
         name (its metadata `task` rewritten), and the N full models are one trained full \
         fine-tuning bundle loaded N times under N names: each is a separate copy in memory, \
         which is what the memory comparison measures; accuracy is not the point here \
         (1 epoch on 300 examples).",
        trained.join(", ")
    );
    let _ = writeln!(
        s,
        "\nCaveats: a shared 2-core machine with other jobs running, so absolute throughput \
         and latency are noisy; full models are batched per task (each has its own weights), \
         adapters share one backbone pass across tasks. The full-model server \
         also holds the shared backbone it was started with (`--model`, unused by full \
         bundles, about 86 MiB), as `adalbert serve` always does."
    );
    let _ = writeln!(
        s,
        "\nThe rest of the serving evidence has its own commands and files: the adapter \
         lifecycle (tasks loaded on first request from `--bundle-dir`, least-recently-used \
         eviction under `--max-loaded-tasks`) and scale-out over replicas behind nginx by \
         `make bench-scale` (results/serving-scale.md); RSS over a 10-minute soak with uploads, \
         deletions and evictions by `make soak` (results/serving-soak.md)."
    );
    s
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for kind in ["adapter", "full"] {
        for &n in &args.tasks {
            let row = rt.block_on(measure(&args, kind, n))?;
            eprintln!(
                "{kind} x{n}: {} ok, {} errors, {:.1} req/s, p50 {:.1} ms, p99 {:.1} ms, RSS {:.0} MiB (peak {:.0})",
                row.requests,
                row.errors,
                row.requests as f64 / row.seconds,
                row.p50_ms,
                row.p99_ms,
                row.rss_mib,
                row.hwm_mib
            );
            rows.push(row);
        }
    }
    let trained: Vec<String> = args
        .adapters
        .iter()
        .chain(std::iter::once(&args.full))
        .map(|p| {
            TaskBundle::load(p)
                .map(|b| format!("{} ({})", b.meta.task, b.meta.mode.as_str()))
                .unwrap_or_else(|_| p.display().to_string())
        })
        .collect();
    let md = report(&args, &rows, &trained);
    write_report(&args.out, &md)?;
    print!("{md}");
    Ok(())
}
