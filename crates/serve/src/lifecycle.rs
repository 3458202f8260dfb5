//! The task lifecycle: tasks served from a bundle directory by name and loaded on their first
//! request, loads from server-side paths, a limit on loaded tasks with least-recently-used
//! eviction, and pinned tasks.
//!
//! - **One load per task, however many requests race.** The first request for a task that is
//!   not loaded puts a cell in `inflight`; every request for that task awaits the same cell
//!   and the load runs once, off the async runtime. The lock on `inflight` is held only to
//!   find or add a cell, so requests for other tasks never wait on a load.
//! - **Eviction.** After each load, while more than `--max-loaded-tasks` tasks are loaded, the
//!   least recently used one that is not pinned and can be read again from its file is
//!   unloaded. Requests already holding it finish on it; the next request loads it again from
//!   the same file, so it answers identically. Uploaded tasks (`PUT`) have no file and are
//!   never evicted.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use adalbert_model::{LoadedTask, TaskBundle};
use axum::http::StatusCode;

use crate::api::AppState;
use crate::error::{ApiError, ServeError};
use crate::names::valid_task_name;

/// Where a task can be (re)loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A bundle file on the server.
    File(PathBuf),
    /// Uploaded over HTTP: cannot be reloaded, so never evicted.
    Upload,
}

pub(crate) type LoadCell = Arc<tokio::sync::OnceCell<Result<Arc<LoadedTask>, ApiError>>>;

/// File name suffixes of bundles in a bundle directory, most specific first.
const SUFFIXES: [&str; 2] = [".bundle.safetensors", ".safetensors"];

/// The task names a bundle directory offers, each with its file. Refuses a file whose name
/// breaks the task name rule and two files for one task.
pub fn scan_bundle_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, ServeError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ServeError::Config(format!(
            "cannot read bundle directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(name) = SUFFIXES.iter().find_map(|s| file.strip_suffix(s)) else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        if !valid_task_name(name) {
            return Err(ServeError::TaskName {
                task: name.to_string(),
                path,
            });
        }
        if let Some((_, first)) = found.iter().find(|(n, _)| n == name) {
            return Err(ServeError::DuplicateTask {
                task: name.to_string(),
                first: first.clone(),
                second: path,
            });
        }
        found.push((name.to_string(), path));
    }
    found.sort();
    Ok(found)
}

/// The file for `name` in `dir`, if there is one (`name` must follow the rule, so it cannot
/// leave the directory).
fn file_in(dir: &Path, name: &str) -> Option<PathBuf> {
    if !valid_task_name(name) {
        return None;
    }
    SUFFIXES
        .iter()
        .map(|s| dir.join(format!("{name}{s}")))
        .find(|p| p.is_file())
}

/// Reads and validates a bundle file as task `name` (blocking).
fn read_task(state: &AppState, name: &str, path: &Path) -> Result<LoadedTask, ApiError> {
    let refuse = |e: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_bundle",
            format!("{e}; the served version (if any) is unchanged"),
        )
    };
    let mut bundle = TaskBundle::load(path).map_err(|e| refuse(e.to_string()))?;
    bundle.meta.task = name.to_string();
    state.mt.prepare(bundle).map_err(|e| refuse(e.to_string()))
}

impl AppState {
    /// Start-up checks and loads: the bundle directory's names, pinned tasks (loaded now).
    pub(crate) fn start_lifecycle(&self) -> Result<(), ServeError> {
        let offered = match &self.cfg.bundle_dir {
            Some(dir) => scan_bundle_dir(dir)?,
            None => Vec::new(),
        };
        for (name, path) in &offered {
            if self.mt.contains(name) {
                return Err(ServeError::Config(format!(
                    "task `{name}` is both in --bundle and in the bundle directory ({}); serve it from one",
                    path.display()
                )));
            }
        }
        let pinned: BTreeSet<&String> = self.cfg.pinned.iter().collect();
        for name in pinned {
            if self.mt.contains(name) {
                continue;
            }
            let Some((_, path)) = offered.iter().find(|(n, _)| n == name) else {
                return Err(ServeError::Config(format!(
                    "--pin {name}: no such task in --bundle or the bundle directory"
                )));
            };
            let started = Instant::now();
            let task = read_task(self, name, path).map_err(|e| ServeError::Config(e.reason))?;
            self.mt.insert(task);
            self.after_load(name, Source::File(path.clone()), started);
        }
        if let Some(n) = self.cfg.max_loaded_tasks {
            if self.mt.len() > n {
                return Err(ServeError::Config(format!(
                    "{} tasks are loaded at start-up (--bundle and --pin), above --max-loaded-tasks {n}",
                    self.mt.len()
                )));
            }
        }
        Ok(())
    }

    /// Marks a task used now (for least-recently-used eviction).
    pub(crate) fn touch(&self, name: &str) {
        let t = self.tick.fetch_add(1, Ordering::Relaxed);
        lock(&self.last_used).insert(name.to_string(), t);
    }

    /// Records where a task can be reloaded from.
    pub(crate) fn set_reload_source(&self, name: &str, source: Source) {
        lock(&self.sources).insert(name.to_string(), source);
    }

    /// Forgets a task's source (after `DELETE`).
    pub(crate) fn forget(&self, name: &str) {
        lock(&self.sources).remove(name);
        lock(&self.last_used).remove(name);
    }

    /// The file a task that is not loaded can be loaded from.
    fn file_of(&self, name: &str) -> Option<PathBuf> {
        match lock(&self.sources).get(name) {
            Some(Source::File(p)) => return Some(p.clone()),
            Some(Source::Upload) => return None,
            None => {}
        }
        self.cfg
            .bundle_dir
            .as_deref()
            .and_then(|d| file_in(d, name))
    }

    /// Names the bundle directory offers that are not loaded.
    pub(crate) fn available(&self) -> Vec<String> {
        let Some(dir) = &self.cfg.bundle_dir else {
            return Vec::new();
        };
        scan_bundle_dir(dir)
            .map(|v| {
                v.into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| !self.mt.contains(n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The task to answer with: loaded (a hit), or loaded now from its file (a miss; one load
    /// however many requests race for it), or 404.
    pub(crate) async fn resolve(self: &Arc<Self>, name: &str) -> Result<Arc<LoadedTask>, ApiError> {
        if let Ok(t) = self.mt.task(name) {
            self.touch(name);
            self.metrics.lookup(true);
            return Ok(t);
        }
        let Some(path) = self.file_of(name) else {
            return Err(self.unknown(name));
        };
        self.metrics.lookup(false);
        let cell: LoadCell = {
            let mut inflight = lock(&self.inflight);
            // Loaded between the first look and taking the lock: no second load.
            if let Ok(t) = self.mt.task(name) {
                self.touch(name);
                return Ok(t);
            }
            Arc::clone(inflight.entry(name.to_string()).or_default())
        };
        let result = cell
            .get_or_init(|| self.load_file(name.to_string(), path))
            .await
            .clone();
        let mut inflight = lock(&self.inflight);
        if inflight.get(name).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(name);
        }
        result
    }

    /// Loads `path` as task `name` off the runtime, inserts it, and evicts beyond the limit.
    pub(crate) async fn load_file(
        self: &Arc<Self>,
        name: String,
        path: PathBuf,
    ) -> Result<Arc<LoadedTask>, ApiError> {
        let started = Instant::now();
        let state = Arc::clone(self);
        let (n, p) = (name.clone(), path.clone());
        let task = tokio::task::spawn_blocking(move || read_task(&state, &n, &p))
            .await
            .map_err(|e| ApiError::internal(format!("loading stopped: {e}")))?;
        let task = match task {
            Ok(t) => t,
            Err(e) => {
                self.metrics.task_event(&name, "rejected");
                return Err(e);
            }
        };
        // Answer with the version inserted here: another request's load may evict it before
        // this one could look it up again (the soak saw 21 such 503s in 76,246 requests).
        let (task, replaced) = self.mt.insert_shared(task);
        let replaced = replaced.is_some();
        self.metrics
            .task_event(&name, if replaced { "replaced" } else { "loaded" });
        self.after_load(&name, Source::File(path.clone()), started);
        tracing::info!(
            task = %name,
            path = %path.display(),
            ms = started.elapsed().as_millis() as u64,
            "task loaded from file"
        );
        Ok(task)
    }

    fn after_load(&self, name: &str, source: Source, started: Instant) {
        if let Source::File(p) = &source {
            self.record_origin(name, p.display().to_string());
        }
        self.set_reload_source(name, source);
        self.metrics.load(started.elapsed().as_secs_f64());
        self.touch(name);
        self.evict_beyond_limit(name);
    }

    /// Unloads least recently used tasks while more than the limit are loaded, never `keep`,
    /// a pinned task, or a task that cannot be read again.
    pub(crate) fn evict_beyond_limit(&self, keep: &str) {
        let Some(limit) = self.cfg.max_loaded_tasks else {
            return;
        };
        let mut evicted = false;
        while self.mt.len() > limit {
            let candidates: Vec<String> = self
                .mt
                .tasks()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n != keep && !self.cfg.pinned.contains(n) && self.file_of(n).is_some())
                .collect();
            let victim = {
                let used = lock(&self.last_used);
                candidates
                    .into_iter()
                    .min_by_key(|n| used.get(n).copied().unwrap_or(0))
            };
            let Some(victim) = victim else {
                break; // only pinned, uploaded or in-use tasks left
            };
            self.mt.remove(&victim);
            lock(&self.last_used).remove(&victim);
            self.metrics.eviction();
            self.metrics.task_event(&victim, "evicted");
            tracing::info!(task = %victim, limit, "task evicted (least recently used)");
            evicted = true;
        }
        if evicted {
            // Without this glibc keeps the freed weights: RSS grew ~3x under churn.
            adalbert_model::exec::release_unused_memory();
        }
    }

    /// `POST /v1/tasks/{task}/load`: the path must resolve inside an allowed directory.
    pub(crate) fn allowed_path(&self, requested: &str) -> Result<PathBuf, ApiError> {
        if self.allowed_dirs.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "path_not_allowed",
                "this server loads from no directory: start it with --bundle-dir or --load-dir",
            ));
        }
        let path = Path::new(requested).canonicalize().map_err(|e| {
            ApiError::bad_request("invalid_path", format!("cannot open `{requested}`: {e}"))
        })?;
        if !self.allowed_dirs.iter().any(|d| path.starts_with(d)) || !path.is_file() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "path_not_allowed",
                format!(
                    "`{requested}` is not a file inside the allowed directories ({})",
                    self.allowed_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(path)
    }

    /// Loaded tasks' bytes.
    pub(crate) fn loaded_bytes(&self) -> usize {
        self.mt.tasks().iter().map(|(_, t)| t.bytes).sum()
    }
}

/// Canonical forms of the directories loads may read from.
pub(crate) fn allowed_dirs(cfg: &crate::ServeConfig) -> Result<Vec<PathBuf>, ServeError> {
    cfg.bundle_dir
        .iter()
        .chain(&cfg.load_dirs)
        .map(|d| {
            d.canonicalize()
                .map_err(|e| ServeError::Config(format!("{}: {e}", d.display())))
        })
        .collect()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) type Inflight = std::sync::Mutex<HashMap<String, LoadCell>>;
