//! `make bench-scale` and `make soak`: many tasks served from a bundle directory with a cap on
//! loaded tasks, measured under skewed (Zipf) task popularity.
//!
//! - `scale`: one replica alone, then R replicas behind nginx (the committed
//!   `deploy/nginx.conf`, consistent hashing on the task), each replica with the same
//!   `--max-loaded-tasks`. Reports throughput, p50/p99, the task-cache hit rate and RSS per
//!   replica. Hashing gives each replica about 1/R of the tasks, so R small caches together
//!   hold R times as many tasks as one.
//! - `soak`: one replica for a fixed time under mixed load plus uploads, replacements and
//!   deletions over HTTP (so tasks are loaded, evicted and reloaded all along), sampling RSS;
//!   fails when RSS still grows in the second half.
//!
//! Every run is bounded (requests or seconds), seeded (the task and batch-size sequence), and
//! contacts only 127.0.0.1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adalbert_core::rng::SplitMix64;
use adalbert_model::TaskBundle;
use anyhow::{bail, ensure, Context};
use clap::{Args as ClapArgs, Parser, Subcommand};
use serde_json::json;

mod common;
use common::{
    free_port, metric_value, percentile, rss_mib, scrape, start_server, wait_ready, write_report,
    Guard, TEXTS,
};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One replica vs R replicas behind nginx.
    Scale(ScaleArgs),
    /// Mixed load with uploads and deletions for a fixed time; RSS over time.
    Soak(SoakArgs),
}

/// What both modes share: the server, the task population and the request mix.
#[derive(ClapArgs)]
struct Common {
    /// The `adalbert` binary.
    #[arg(long, default_value = "target/release/adalbert")]
    bin: PathBuf,
    #[arg(long, default_value = "assets/minilm")]
    model: PathBuf,
    /// Trained adapter bundles, copied under new task names up to --tasks.
    #[arg(long, num_args = 1.., required = true)]
    adapters: Vec<PathBuf>,
    /// Tasks in the bundle directory.
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// `--max-loaded-tasks` of every replica.
    #[arg(long, default_value_t = 8)]
    max_loaded: usize,
    /// Zipf exponent of task popularity (task k is asked with weight 1/k^s).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Share of requests that carry a batch of --batch-inputs texts (the rest carry one).
    #[arg(long, default_value_t = 0.25)]
    batched_share: f64,
    #[arg(long, default_value_t = 8)]
    batch_inputs: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Seed of the request sequence (tasks and batch sizes).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Working directory: the bundle directory, server and nginx logs.
    #[arg(long, default_value = "target/bench-scale")]
    work: PathBuf,
}

#[derive(ClapArgs)]
struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    /// Replicas behind nginx (deploy/nginx.conf lists ports 8081..8083).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// The nginx configuration (its upstream ports and listen port are used as written).
    #[arg(long, default_value = "deploy/nginx.conf")]
    nginx_conf: PathBuf,
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// Unmeasured requests first (fills the caches), then measured ones.
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// Upper bound on one configuration's measurement, seconds.
    #[arg(long, default_value_t = 180)]
    max_seconds: u64,
    #[arg(long, default_value = "results/serving-scale.md")]
    out: PathBuf,
}

#[derive(ClapArgs)]
struct SoakArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Seconds between admin actions (an upload, a replacement or a deletion).
    #[arg(long, default_value_t = 2)]
    admin_every: u64,
    /// Allowed RSS growth from the first to the second half's peak: MiB and share of RSS,
    /// whichever is larger.
    #[arg(long, default_value_t = 16.0)]
    tolerance_mib: f64,
    #[arg(long, default_value_t = 0.05)]
    tolerance_share: f64,
    #[arg(long, default_value = "results/serving-soak.md")]
    out: PathBuf,
}

/// One request of the seeded sequence: which task, how many texts.
#[derive(Clone, Copy)]
struct Req {
    task: usize,
    inputs: usize,
}

/// Task names `t00`, `t01`, … in popularity order (t00 is asked most).
fn task_name(k: usize) -> String {
    format!("t{k:02}")
}

/// The seeded request sequence: tasks by Zipf popularity, batch sizes by `batched_share`.
fn requests(c: &Common, n: usize, stream: u64) -> Vec<Req> {
    let weights: Vec<f64> = (1..=c.tasks).map(|k| (k as f64).powf(-c.zipf)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut rng = SplitMix64::new(adalbert_core::rng::salted(c.seed, stream));
    (0..n)
        .map(|_| {
            let u = rng.next_open01();
            let task = cdf.partition_point(|&p| p < u).min(c.tasks - 1);
            let batched = rng.next_open01() < c.batched_share;
            Req {
                task,
                inputs: if batched { c.batch_inputs } else { 1 },
            }
        })
        .collect()
}

/// Fills `dir` with `tasks` bundles named `t00.bundle.safetensors`, … (copies of the trained
/// adapters with the task renamed). Kept between runs when complete.
fn bundle_dir(c: &Common) -> anyhow::Result<PathBuf> {
    let dir = c.work.join("bundles");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for k in 0..c.tasks {
        let dst = dir.join(format!("{}.bundle.safetensors", task_name(k)));
        if dst.is_file() {
            continue;
        }
        let src = &c.adapters[k % c.adapters.len()];
        let mut b = TaskBundle::load(src).with_context(|| format!("loading {}", src.display()))?;
        b.meta.task = task_name(k);
        TaskBundle::save(&b.meta, &b.tensors, &dst)
            .with_context(|| format!("writing {}", dst.display()))?;
    }
    Ok(dir)
}

fn serve_args(c: &Common, dir: &Path) -> Vec<String> {
    vec![
        "--model".into(),
        c.model.display().to_string(),
        "--bundle-dir".into(),
        dir.display().to_string(),
        "--max-loaded-tasks".into(),
        c.max_loaded.to_string(),
        "--max-len".into(),
        c.max_len.to_string(),
    ]
}

/// Sends one request of the sequence; `(answered ok, milliseconds)`.
async fn send(http: &reqwest::Client, base: &str, r: Req, i: usize) -> (bool, f64) {
    let texts: Vec<&str> = (0..r.inputs)
        .map(|j| TEXTS[(i + j) % TEXTS.len()])
        .collect();
    let t = Instant::now();
    let ok = match http
        .post(format!("{base}/v1/tasks/{}/predict", task_name(r.task)))
        .json(&json!({ "inputs": texts }))
        .send()
        .await
    {
        Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
        Err(_) => false,
    };
    (ok, t.elapsed().as_secs_f64() * 1e3)
}

/// Outcome of a bounded run of the sequence.
struct Load {
    latencies_ms: Vec<f64>,
    errors: usize,
    inputs: usize,
    seconds: f64,
}

/// Runs `seq` from `concurrency` clients until done, `deadline`, or `stop`.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    seq: Arc<Vec<Req>>,
    concurrency: usize,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    cycle: bool,
) -> anyhow::Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (next, seq, stop) = (Arc::clone(&next), Arc::clone(&seq), Arc::clone(&stop));
        let (http, base) = (http.clone(), base.to_string());
        clients.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut inputs) = (Vec::new(), 0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                // A soak cycles through its sequence; a measured run stops at its end.
                let r = if cycle {
                    seq[i % seq.len()]
                } else if i < seq.len() {
                    seq[i]
                } else {
                    break;
                };
                let (ok, ms) = send(&http, &base, r, i).await;
                if ok {
                    lat.push(ms);
                    inputs += r.inputs;
                } else {
                    errors += 1;
                }
            }
            (lat, errors, inputs)
        }));
    }
    let mut load = Load {
        latencies_ms: Vec::new(),
        errors: 0,
        inputs: 0,
        seconds: 0.0,
    };
    for c in clients {
        let (l, e, n) = c.await?;
        load.latencies_ms.extend(l);
        load.errors += e;
        load.inputs += n;
    }
    load.seconds = started.elapsed().as_secs_f64();
    load.latencies_ms.sort_by(f64::total_cmp);
    Ok(load)
}

/// Task-cache counters of one replica.
#[derive(Clone, Copy, Default)]
struct Cache {
    hits: f64,
    misses: f64,
    loads: f64,
    evictions: f64,
    loaded: f64,
}

impl Cache {
    fn read(text: &str) -> Self {
        Self {
            hits: metric_value(text, "adalbert_task_cache_hits_total"),
            misses: metric_value(text, "adalbert_task_cache_misses_total"),
            loads: metric_value(text, "adalbert_task_loads_total"),
            evictions: metric_value(text, "adalbert_task_evictions_total"),
            loaded: metric_value(text, "adalbert_tasks_loaded"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            hits: self.hits - before.hits,
            misses: self.misses - before.misses,
            loads: self.loads - before.loads,
            evictions: self.evictions - before.evictions,
            loaded: self.loaded,
        }
    }

    fn hit_rate(self) -> f64 {
        self.hits / (self.hits + self.misses).max(1.0)
    }
}

/// One measured configuration of `scale`.
struct ScaleRow {
    label: String,
    load: Load,
    caches: Vec<Cache>,
    rss_mib: Vec<f64>,
}

/// nginx on loopback with the committed configuration, in the foreground of a child.
fn start_nginx(a: &ScaleArgs) -> anyhow::Result<Guard> {
    let prefix = a.common.work.join("nginx");
    std::fs::create_dir_all(&prefix)?;
    let conf = std::fs::canonicalize(&a.nginx_conf)
        .with_context(|| format!("nginx configuration {}", a.nginx_conf.display()))?;
    let log = prefix.join("nginx.log");
    let file = std::fs::File::create(&log)?;
    let child = std::process::Command::new(&a.nginx)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(std::fs::canonicalize(&prefix)?)
        .args(["-g", "daemon off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(file))
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install it: apt-get install nginx)",
                a.nginx.display()
            )
        })?;
    Ok(Guard(child))
}

/// The ports `deploy/nginx.conf` listens on and forwards to: `(listen, upstreams)`.
fn nginx_ports(conf: &Path) -> anyhow::Result<(u16, Vec<u16>)> {
    let text =
        std::fs::read_to_string(conf).with_context(|| format!("reading {}", conf.display()))?;
    let port_of = |line: &str, key: &str| -> Option<u16> {
        let rest = line.trim().strip_prefix(key)?;
        let addr = rest.split_whitespace().next()?.trim_end_matches(';');
        addr.rsplit(':').next()?.parse().ok()
    };
    let listen = text
        .lines()
        .find_map(|l| port_of(l, "listen "))
        .with_context(|| format!("{}: no `listen` line", conf.display()))?;
    let upstreams: Vec<u16> = text.lines().filter_map(|l| port_of(l, "server ")).collect();
    ensure!(
        !upstreams.is_empty(),
        "{}: no upstream `server` lines",
        conf.display()
    );
    Ok((listen, upstreams))
}

async fn measure_scale(a: &ScaleArgs, dir: &Path, replicas: usize) -> anyhow::Result<ScaleRow> {
    let c = &a.common;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c.concurrency)
        .build()?;
    let (ports, nginx, base) = if replicas == 1 {
        let p = free_port()?;
        (vec![p], None, format!("http://127.0.0.1:{p}"))
    } else {
        let (listen, ups) = nginx_ports(&a.nginx_conf)?;
        ensure!(
            ups.len() == replicas,
            "{} lists {} upstream servers, --replicas is {replicas}",
            a.nginx_conf.display(),
            ups.len()
        );
        (ups, Some(()), format!("http://127.0.0.1:{listen}"))
    };
    let mut servers = Vec::new();
    for (r, port) in ports.iter().enumerate() {
        let log = c.work.join(format!("replica{r}-of-{replicas}.log"));
        let addr = format!("127.0.0.1:{port}");
        servers.push(start_server(&c.bin, &addr, &serve_args(c, dir), &log)?);
        wait_ready(&http, &format!("http://{addr}"), 180, &log).await?;
    }
    let _nginx = match nginx {
        Some(()) => {
            let g = start_nginx(a)?;
            wait_ready(&http, &base, 30, &c.work.join("nginx/nginx.log")).await?;
            Some(g)
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let far = Instant::now() + Duration::from_secs(a.max_seconds);
    let warm = Arc::new(requests(c, a.warmup, 1));
    drive(
        &http,
        &base,
        warm,
        c.concurrency,
        far,
        Arc::clone(&stop),
        false,
    )
    .await?;
    let mut before = Vec::new();
    for p in &ports {
        before.push(Cache::read(
            &scrape(&http, &format!("http://127.0.0.1:{p}")).await?,
        ));
    }
    let seq = Arc::new(requests(c, a.requests, 2));
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let load = drive(&http, &base, seq, c.concurrency, deadline, stop, false).await?;
    let mut caches = Vec::new();
    let mut rss = Vec::new();
    for (p, (b, s)) in ports.iter().zip(before.iter().zip(&servers)) {
        let now = Cache::read(&scrape(&http, &format!("http://127.0.0.1:{p}")).await?);
        caches.push(now.since(*b));
        rss.push(rss_mib(s.pid())?);
    }
    let label = if replicas == 1 {
        "1 replica".to_string()
    } else {
        format!("{replicas} replicas + nginx")
    };
    Ok(ScaleRow {
        label,
        load,
        caches,
        rss_mib: rss,
    })
}

fn scale_report(a: &ScaleArgs, rows: &[ScaleRow]) -> String {
    let c = &a.common;
    let mut s = String::new();
    let _ = writeln!(s, "# Serving past one process: replicas behind nginx\n");
    let _ = writeln!(
        s,
        "Generated by `make bench-scale` on {}; do not edit by hand.\n",
        common::cpu_note()
    );
    let _ = writeln!(
        s,
        "{} tasks in one bundle directory (copies of {} trained houlsby:64 bundles under new \
         names), every replica `adalbert serve --bundle-dir … --max-loaded-tasks {} --max-len {}` \
         on `{}`. Task popularity Zipf (s = {}), {:.0}% of requests carry {} texts, the rest one; \
         {} concurrent clients; {} unmeasured warm-up requests fill the caches, then {} measured \
         (seed {}). The replicated setup is the committed `{}` (consistent hashing on the task from \
         the path).\n",
        c.tasks,
        c.adapters.len(),
        c.max_loaded,
        c.max_len,
        c.model.display(),
        c.zipf,
        c.batched_share * 100.0,
        c.batch_inputs,
        c.concurrency,
        a.warmup,
        a.requests,
        c.seed,
        a.nginx_conf.display()
    );
    let _ = writeln!(
        s,
        "| setup | requests ok | errors | req/s | texts/s | p50 (ms) | p99 (ms) | cache hit rate | loads | evictions | RSS per replica (MiB) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let total = r.caches.iter().fold(Cache::default(), |acc, x| Cache {
            hits: acc.hits + x.hits,
            misses: acc.misses + x.misses,
            loads: acc.loads + x.loads,
            evictions: acc.evictions + x.evictions,
            loaded: acc.loaded + x.loaded,
        });
        let rss: Vec<String> = r.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} | {:.0} | {} |",
            r.label,
            r.load.latencies_ms.len(),
            r.load.errors,
            r.load.latencies_ms.len() as f64 / r.load.seconds,
            r.load.inputs as f64 / r.load.seconds,
            percentile(&r.load.latencies_ms, 0.5),
            percentile(&r.load.latencies_ms, 0.99),
            total.hit_rate(),
            total.loads,
            total.evictions,
            rss.join(" / ")
        );
    }
    let _ = writeln!(s, "\nPer replica (measured requests only):\n");
    let _ = writeln!(
        s,
        "| setup | replica | task lookups | hit rate | loads | evictions | tasks loaded at end |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        for (i, x) in r.caches.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {i} | {:.0} | {:.3} | {:.0} | {:.0} | {:.0} |",
                r.label,
                x.hits + x.misses,
                x.hit_rate(),
                x.loads,
                x.evictions,
                x.loaded
            );
        }
    }
    let _ = writeln!(
        s,
        "\n**What this does not show.** All replicas and nginx share the same CPU cores, so \
         throughput cannot grow with replicas here; what replication buys on one machine is the \
         cache: each replica sees about 1/R of the tasks, so R caches of {} tasks hold up to {} of \
         the {} tasks and fewer requests wait for a load. On separate machines the throughput \
         would add up as well; that is not measured. One seed of the request sequence, one run.",
        c.max_loaded,
        c.max_loaded * rows.last().map_or(1, |r| r.caches.len()),
        c.tasks
    );
    s
}

async fn scale(a: &ScaleArgs) -> anyhow::Result<()> {
    let dir = bundle_dir(&a.common)?;
    let mut rows = Vec::new();
    for replicas in [1, a.replicas] {
        eprintln!("measuring {replicas} replica(s)…");
        let row = measure_scale(a, &dir, replicas).await?;
        eprintln!(
            "{}: {} ok, {} errors in {:.1} s",
            row.label,
            row.load.latencies_ms.len(),
            row.load.errors,
            row.load.seconds
        );
        rows.push(row);
    }
    let md = scale_report(a, &rows);
    write_report(&a.out, &md)?;
    print!("{md}");
    Ok(())
}

/// One RSS sample of the soak.
struct Sample {
    seconds: f64,
    rss_mib: f64,
    cache: Cache,
    ok: usize,
}

/// Uploads, replaces and deletes tasks `u0..u3` in turn until `stop` (exercising load,
/// replacement, eviction by upload and removal); counts `(actions, failures)`.
async fn admin_loop(
    http: reqwest::Client,
    base: String,
    bundle: Vec<u8>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let (mut actions, mut failures) = (0, 0);
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let task = format!("u{}", k % 4);
        let resp = if k % 3 == 2 {
            http.delete(format!("{base}/v1/tasks/{task}")).send().await
        } else {
            http.put(format!("{base}/v1/tasks/{task}"))
                .body(bundle.clone())
                .send()
                .await
        };
        actions += 1;
        // A deletion of a task evicted meanwhile answers 404; that is not a failure.
        match resp {
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {}
            _ => failures += 1,
        }
        k += 1;
        let until = Instant::now() + every;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (actions, failures)
}

async fn soak(a: &SoakArgs) -> anyhow::Result<()> {
    let c = &a.common;
    ensure!(
        a.seconds >= 4 * a.sample_every,
        "--seconds must allow at least four samples"
    );
    let dir = bundle_dir(c)?;
    let http = reqwest::Client::new();
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let log = c.work.join("soak-server.log");
    let server = start_server(
        &c.bin,
        &format!("127.0.0.1:{port}"),
        &serve_args(c, &dir),
        &log,
    )?;
    wait_ready(&http, &base, 180, &log).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(requests(c, 100_000, 3));
    let end = Instant::now() + Duration::from_secs(a.seconds + 5);
    let load = tokio::spawn({
        let (http, base, stop) = (http.clone(), base.clone(), Arc::clone(&stop));
        let concurrency = c.concurrency;
        async move { drive(&http, &base, seq, concurrency, end, stop, true).await }
    });
    let bundle = std::fs::read(&c.adapters[0])
        .with_context(|| format!("reading {}", c.adapters[0].display()))?;
    let admin = tokio::spawn(admin_loop(
        http.clone(),
        base.clone(),
        bundle,
        Duration::from_secs(a.admin_every),
        Arc::clone(&stop),
    ));
    let started = Instant::now();
    let mut samples = Vec::new();
    let bar = indicatif::ProgressBar::new(a.seconds);
    while started.elapsed() < Duration::from_secs(a.seconds) {
        tokio::time::sleep(Duration::from_secs(a.sample_every)).await;
        let text = scrape(&http, &base).await?;
        samples.push(Sample {
            seconds: started.elapsed().as_secs_f64(),
            rss_mib: rss_mib(server.pid())?,
            cache: Cache::read(&text),
            ok: metric_sum(&text, "adalbert_http_requests_total", "status=\"200\""),
        });
        bar.set_position(started.elapsed().as_secs().min(a.seconds));
    }
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    let load = load.await??;
    let (actions, failures) = admin.await?;
    drop(server);
    let verdict = plateau(&samples, a.tolerance_mib, a.tolerance_share);
    let md = soak_report(a, &samples, &load, actions, failures, &verdict);
    write_report(&a.out, &md)?;
    print!("{md}");
    if let Err(e) = verdict {
        bail!("RSS did not plateau: {e}");
    }
    ensure!(
        load.errors == 0 && failures == 0,
        "{} failed requests and {failures} failed admin actions during the soak (see {})",
        load.errors,
        log.display()
    );
    Ok(())
}

/// Sum of a labelled counter's samples whose labels contain `label`.
fn metric_sum(text: &str, name: &str, label: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// RSS plateaus when the second half's mean exceeds the first half's by no more than the
/// tolerance (MiB or share of RSS, whichever is larger). Means, not peaks: RSS is a sawtooth
/// (freed weights are handed back at the next eviction), so peaks are noisy while a leak
/// raises the mean. `Ok((first, second))` means.
fn plateau(samples: &[Sample], mib: f64, share: f64) -> Result<(f64, f64), String> {
    let half = samples.len() / 2;
    let mean = |s: &[Sample]| s.iter().map(|x| x.rss_mib).sum::<f64>() / s.len().max(1) as f64;
    let (first, second) = (mean(&samples[..half]), mean(&samples[half..]));
    let allowed = mib.max(first * share);
    if second - first > allowed {
        Err(format!(
            "mean RSS {first:.0} MiB in the first half, {second:.0} MiB in the second (allowed growth {allowed:.0} MiB)"
        ))
    } else {
        Ok((first, second))
    }
}

fn soak_report(
    a: &SoakArgs,
    samples: &[Sample],
    load: &Load,
    actions: usize,
    failures: usize,
    verdict: &Result<(f64, f64), String>,
) -> String {
    let c = &a.common;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Serving soak: RSS under load, uploads, deletions and evictions\n"
    );
    let _ = writeln!(
        s,
        "Generated by `make soak` on {}; do not edit by hand.\n",
        common::cpu_note()
    );
    let _ = writeln!(
        s,
        "One `adalbert serve --bundle-dir … --max-loaded-tasks {}` on `{}` for {} s: {} clients \
         send Zipf(s = {}) requests over {} tasks ({:.0}% batches of {}), while an admin client \
         every {} s uploads, replaces or deletes one of four extra tasks (each upload beyond the cap \
         evicts the least recently used task). Seed {}.\n",
        c.max_loaded,
        c.model.display(),
        a.seconds,
        c.concurrency,
        c.zipf,
        c.tasks,
        c.batched_share * 100.0,
        c.batch_inputs,
        a.admin_every,
        c.seed
    );
    let verdict_line = match verdict {
        Ok((f, l)) => format!(
            "**RSS plateaus**: mean {f:.0} MiB in the first half, {l:.0} MiB in the second."
        ),
        Err(e) => format!("**RSS did not plateau**: {e}."),
    };
    let _ = writeln!(
        s,
        "{verdict_line} Requests answered: {}, failed: {}; p50 {:.1} ms, p99 {:.1} ms; admin \
         actions {actions}, failed {failures}.\n",
        load.latencies_ms.len(),
        load.errors,
        percentile(&load.latencies_ms, 0.5),
        percentile(&load.latencies_ms, 0.99)
    );
    let _ = writeln!(
        s,
        "| seconds | RSS (MiB) | requests answered (200) | tasks loaded | loads | evictions | cache hit rate |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for x in samples {
        let _ = writeln!(
            s,
            "| {:.0} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.3} |",
            x.seconds,
            x.rss_mib,
            x.ok,
            x.cache.loaded,
            x.cache.loads,
            x.cache.evictions,
            x.cache.hit_rate()
        );
    }
    let _ = writeln!(
        s,
        "\n**What this does not show.** One process, one run of {} s on a shared machine; a leak \
         slower than the tolerance ({} MiB or {:.0}% of RSS per half) would pass.",
        a.seconds,
        a.tolerance_mib,
        a.tolerance_share * 100.0
    );
    s
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match &cli.cmd {
        Cmd::Scale(a) => rt.block_on(scale(a)),
        Cmd::Soak(a) => rt.block_on(soak(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(tasks: usize) -> Common {
        Common {
            bin: "x".into(),
            model: "x".into(),
            adapters: vec!["x".into()],
            tasks,
            max_loaded: 8,
            zipf: 1.0,
            batched_share: 0.25,
            batch_inputs: 8,
            concurrency: 1,
            max_len: 64,
            seed: 7,
            work: "x".into(),
        }
    }

    #[test]
    fn zipf_sequence_follows_the_weights_and_the_seed() {
        let c = common(4);
        let seq = requests(&c, 20_000, 1);
        let mut counts = [0usize; 4];
        for r in &seq {
            counts[r.task] += 1;
        }
        // Weights 1, 1/2, 1/3, 1/4 over 25/12: shares 0.48, 0.24, 0.16, 0.12.
        for (k, want) in [0.48, 0.24, 0.16, 0.12].iter().enumerate() {
            let got = counts[k] as f64 / seq.len() as f64;
            assert!((got - want).abs() < 0.015, "task {k}: {got} vs {want}");
        }
        let batched = seq.iter().filter(|r| r.inputs == 8).count() as f64 / seq.len() as f64;
        assert!((batched - 0.25).abs() < 0.015, "batched share {batched}");
        let again = requests(&c, 100, 1);
        assert!(again.iter().zip(&seq).all(|(a, b)| a.task == b.task));
    }

    #[test]
    fn nginx_ports_read_from_the_committed_config() {
        let (listen, ups) = nginx_ports(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/nginx.conf"
        )))
        .unwrap();
        assert_eq!(listen, 8080);
        assert_eq!(ups, vec![8081, 8082, 8083]);
    }

    #[test]
    fn plateau_tolerates_noise_and_catches_growth() {
        let sample = |rss: f64| Sample {
            seconds: 0.0,
            rss_mib: rss,
            cache: Cache::default(),
            ok: 0,
        };
        let flat: Vec<Sample> = [200.0, 210.0, 205.0, 212.0].map(sample).into();
        assert!(plateau(&flat, 16.0, 0.05).is_ok());
        let growing: Vec<Sample> = [200.0, 220.0, 260.0, 300.0].map(sample).into();
        // A sawtooth whose peaks differ but whose level does not.
        let saw: Vec<Sample> = [300.0, 500.0, 400.0, 300.0, 520.0, 390.0]
            .map(sample)
            .into();
        assert!(plateau(&saw, 16.0, 0.05).is_ok());
        assert!(plateau(&growing, 16.0, 0.05).is_err());
    }
}
