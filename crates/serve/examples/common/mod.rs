//! What the serving benchmarks (`loadgen` for `make bench-serve`, `scale` for `make bench-scale`
//! and `make soak`) share: starting `adalbert serve` children that die with the benchmark,
//! reading their memory from `/proc`, scraping `/metrics`, and latency percentiles.
//!
//! Only 127.0.0.1 is ever contacted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What the benchmark clients send: short review, news and product sentences.
pub const TEXTS: [&str; 8] = [
    "a gripping, beautifully shot film with a superb cast",
    "the plot was thin and the acting wooden; I left early",
    "shares fell sharply after the company cut its forecast",
    "the striker scored twice in the second half to win the cup",
    "a new phone with a faster chip and a better camera",
    "customer service never answered and the parcel arrived broken",
    "an uneven but often moving portrait of a small town",
    "parliament passed the budget after a long night of debate",
];

/// A child process killed (and reaped) when dropped, so a failed benchmark leaves no server.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A `/proc/{pid}/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?;
    Ok(kib)
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    Ok(status_kib(pid, "VmRSS:")? / 1024.0)
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The value at quantile `p` of an ascending slice (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// An unlabelled sample of a Prometheus text exposition (`name value`); NaN when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|r| r.starts_with(' '))
                .and_then(|r| r.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Starts `bin serve` with `args` on `addr`, its stderr in `log`.
pub fn start_server(bin: &Path, addr: &str, args: &[String], log: &Path) -> anyhow::Result<Guard> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(bin)
        .arg("serve")
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Guard(child))
}

/// Waits until `GET {base}/healthz` answers 2xx (at most `seconds`); names `log` if not.
pub async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    seconds: u64,
    log: &Path,
) -> anyhow::Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > ready_by {
            bail!("{base} did not become ready; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET {base}/metrics` as text.
pub async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// "Intel(R) Xeon(R) ... (2 cores; avx2, avx512f, ...)": the CPU beside every speed figure.
pub fn cpu_note() -> String {
    let (model, flags) = adalbert_model::exec::Cpu::describe();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores; {}", flags.join(", "))
}

/// Writes a report atomically and says where it went.
pub fn write_report(path: &Path, text: &str) -> anyhow::Result<()> {
    adalbert_core::files::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
