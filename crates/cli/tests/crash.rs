//! Crash tests: `train`, `run`, `compress` and `distill` killed with SIGKILL at seeded random
//! points.
//!
//! For each command an uninterrupted run gives the reference and its wall time T. Then the same
//! command is started with `--resume` into a fresh folder and killed after a seeded random delay
//! in [0, 1.2 T), ten times in a row; after every kill the folder must hold no temporary file
//! and every output present must read back whole. A last `--resume` runs to the end and must
//! give the reference's results. Tiny scale (the tiny random ALBERT, a few dozen examples), so
//! it runs with the rest of the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use adalbert_core::rng::SplitMix64;

const KILLS: usize = 10;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    root().join("crates/tasks/tests/fixtures/assets")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adalbert"));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn finished(args: &[String]) -> (Output, Duration) {
    let t0 = Instant::now();
    let o = bin().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "adalbert {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o, t0.elapsed())
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// What must hold after a kill: every output reads back whole. A kill in the middle of an
/// atomic write may leave its temporary (`.adalbert-<pid>-*.tmp`), never a partial output; the
/// next run in the folder removes it (checked at the end of each test).
fn check_no_partial_output(dir: &Path, at: &str) {
    for f in files(dir) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            assert!(name.starts_with(".adalbert-"), "{at}: {}", f.display());
            continue;
        }
        // Inside a directory staged by write_dir_atomic (never read as an output).
        let staged = f.ancestors().skip(1).any(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".adalbert-"))
        });
        if name.ends_with(".run-state.safetensors") || name.ends_with(".distill-state.safetensors")
        {
            adalbert_model::bundle::load_tensors(&f)
                .unwrap_or_else(|e| panic!("{at}: partial run state {}: {e}", f.display()));
        } else if name == "model.safetensors" && !staged {
            // A distilled student's directory appears whole: config, weights, distill.json.
            let dir = f.parent().unwrap();
            adalbert_model::Backbone::from_dir(dir)
                .unwrap_or_else(|e| panic!("{at}: partial model {}: {e}", dir.display()));
            assert!(
                dir.join("distill.json").is_file(),
                "{at}: {} has no distill.json",
                dir.display()
            );
        } else if name == "model.safetensors" {
            adalbert_model::bundle::load_tensors(&f)
                .unwrap_or_else(|e| panic!("{at}: partial staged weights {}: {e}", f.display()));
        } else if name.ends_with(".safetensors") {
            adalbert_model::TaskBundle::load(&f)
                .unwrap_or_else(|e| panic!("{at}: partial bundle {}: {e}", f.display()));
        } else if name.ends_with(".json") {
            let text = std::fs::read_to_string(&f).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{at}: partial record {}: {e}", f.display()));
        } else if name.ends_with(".svg") {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                text.trim_end().ends_with("</svg>"),
                "{at}: partial {}",
                f.display()
            );
        }
    }
}

/// No temporary is left once a run has finished in `dir`.
fn check_no_temporaries(dir: &Path) {
    let left: Vec<PathBuf> = files(dir)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        left.is_empty(),
        "temporaries left after a finished run: {left:?}"
    );
}

/// For each of ten seeded kill points: a fresh folder, one run killed (SIGKILL) after a random
/// delay in [0, `reference`), the folder checked, then `--resume` to the end, whose output and
/// folder `same` compares with the uninterrupted run. (A resumed run reads finished items back
/// at once, so each point gets its own folder.) Returns how many runs were killed before they
/// finished.
fn kill_then_resume(
    tmp: &Path,
    args: impl Fn(&Path) -> Vec<String>,
    reference: Duration,
    seed: u64,
    same: impl Fn(&Path, &Output),
) -> usize {
    let mut rng = SplitMix64::new(seed);
    let mut killed = 0;
    for i in 0..KILLS {
        let dir = tmp.join(format!("crash-{i}"));
        let delay = Duration::from_millis(rng.below(reference.as_millis().max(1) as u64));
        let mut child = bin().args(args(&dir)).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            killed += 1;
        }
        child.wait().unwrap();
        check_no_partial_output(&dir, &format!("after kill {i} at {delay:?}"));
        let (resumed, _) = finished(&args(&dir));
        check_no_temporaries(&dir);
        same(&dir, &resumed);
    }
    killed
}

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    let words = [
        "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great", "awful", "fun",
    ];
    adalbert_model::testing::write_tiny_albert(&model, &words).unwrap();
    model
}

fn train_args(model: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--model",
        &s(model),
        "--data",
        &s(&data()),
        "--task",
        "movie-polarity",
        "--adapter",
        "houlsby:4",
        "--pooling",
        "mean",
        "--epochs",
        "4",
        "--batch",
        "8",
        "--max-len",
        "16",
        "--max-train",
        "48",
        "--max-eval",
        "24",
        "--seed",
        "5",
        "--out",
        &s(out),
        "--json",
        "--resume",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

#[test]
fn train_killed_anywhere_resumes_to_the_same_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let reference = tmp.path().join("ref/b.safetensors");
    let (_, t) = finished(&train_args(&model, &reference));
    let a = adalbert_model::TaskBundle::load(&reference).unwrap();
    let losses = |m: &adalbert_model::BundleMeta| -> Vec<serde_json::Value> {
        m.training["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["train_loss"].clone())
            .collect()
    };
    let killed = kill_then_resume(
        tmp.path(),
        |dir| train_args(&model, &dir.join("b.safetensors")),
        t,
        19,
        |dir, _| {
            let b = adalbert_model::TaskBundle::load(&dir.join("b.safetensors")).unwrap();
            assert_eq!(a.meta.metrics, b.meta.metrics);
            assert_eq!(a.tensors.len(), b.tensors.len());
            for (name, t) in &a.tensors {
                let x: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                let y: Vec<f32> = b.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
                let d = x
                    .iter()
                    .zip(&y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                assert!(d < 1e-6, "{name} differs after a crash by {d}");
            }
            assert_eq!(losses(&a.meta), losses(&b.meta));
            assert!(!dir.join("b.safetensors.run-state.safetensors").exists());
        },
    );
    assert!(killed >= 3, "only {killed} of {KILLS} runs were killed");
}

#[test]
fn compress_killed_anywhere_resumes_to_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let bundle = tmp.path().join("b.safetensors");
    let mut train = train_args(&model, &bundle);
    train[12] = "1".into(); // one epoch is enough for a bundle to compress with
    finished(&train);
    let args = |out: &Path| -> Vec<String> {
        [
            "compress",
            "--model",
            &s(&model),
            "--data",
            &s(&data()),
            "--bundle",
            &s(&bundle),
            "--plan",
            "fp32",
            "--plan",
            "int4+prune=0.5+bitmask",
            "--plan",
            "af6e3",
            "--faults",
            "none",
            "--faults",
            "mlc:bpc=3",
            "--seeds",
            "3",
            "--max-len",
            "16",
            "--out",
            &s(out),
            "--json",
            "--resume",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let (reference, t) = finished(&args(&tmp.path().join("ref")));
    let fields = |o: &Output| -> Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["plan"].clone(), v["seed"].clone(), v["value"].clone())
            })
            .collect()
    };
    assert_eq!(fields(&reference).len(), 3 * 4);
    let killed = kill_then_resume(tmp.path(), args, t, 23, |_, resumed| {
        assert_eq!(fields(resumed), fields(&reference));
    });
    assert!(killed >= 3, "only {killed} of {KILLS} runs were killed");
}

#[test]
fn run_killed_anywhere_resumes_to_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    // The tiny study every experiment test runs (one writer of it: the experiment crate's).
    let exp = adalbert_experiment::testing::write_tiny_study(tmp.path()).unwrap();
    let args = |out: &Path| -> Vec<String> {
        vec![
            "run".into(),
            s(&exp),
            "--out".into(),
            s(out),
            "--resume".into(),
        ]
    };
    let (reference, t) = finished(&args(&tmp.path().join("ref")));
    // The headline rows (metrics of Tables 1-3) and the compression and hardware tables are
    // the same; the report path differs.
    let rows = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("Table"))
            .map(String::from)
            .collect()
    };
    assert!(!rows(&reference).is_empty());
    let ref_dir = tmp.path().join("ref");
    let killed = kill_then_resume(tmp.path(), args, t, 29, |dir, resumed| {
        assert_eq!(rows(resumed), rows(&reference));
        for table in ["table2_compression.csv", "table3_hardware.csv"] {
            let read = |d: &Path| std::fs::read_to_string(d.join("report").join(table)).unwrap();
            assert_eq!(read(dir), read(&ref_dir), "{table}");
        }
    });
    assert!(killed >= 3, "only {killed} of {KILLS} runs were killed");
}

/// `distill` on the tiny BERT teacher, killed anywhere (the run state is written after nearly
/// every step, so kills land before, between and after checkpoints, and in the final write),
/// then `--resume`: the student is the uninterrupted run's, bit for bit, with the same losses.
#[test]
fn distill_killed_anywhere_resumes_to_the_same_student() {
    let tmp = tempfile::tempdir().unwrap();
    let words = [
        "the", "movie", "was", "good", "bad", "plot", "a", "fine", "film", "news", "today", "is",
    ];
    let teacher = tmp.path().join("teacher");
    adalbert_model::testing::write_tiny_bert(&teacher, &words).unwrap();
    let sentence = |k: usize| -> String {
        (0..3 + k % 6)
            .map(|j| words[(k + j * 5 + j * j) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let corpus = tmp.path().join("corpus.txt");
    let held = tmp.path().join("held.txt");
    let lines = |ks: std::ops::Range<usize>| ks.map(sentence).collect::<Vec<_>>().join("\n");
    std::fs::write(&corpus, lines(0..40)).unwrap();
    std::fs::write(&held, lines(100..108)).unwrap();
    let args = |dir: &Path| -> Vec<String> {
        [
            "distill",
            "--teacher",
            &s(&teacher),
            "--out",
            &s(&dir.join("student")),
            "--embedding-size",
            "8",
            "--steps",
            "12",
            "--warmup-steps",
            "2",
            "--batch-size",
            "4",
            "--max-len",
            "16",
            "--lr",
            "1e-3",
            "--seed",
            "7",
            "--corpus",
            &format!("file:{}", s(&corpus)),
            "--held-out",
            &s(&held),
            "--checkpoint-minutes",
            "0.00001",
            "--json",
            "--resume",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let ref_dir = tmp.path().join("ref");
    let (_, t) = finished(&args(&ref_dir));
    let student = |dir: &Path| -> (Vec<(String, Vec<u32>)>, serde_json::Value) {
        let out = dir.join("student");
        let (tensors, _) = adalbert_model::bundle::load_tensors(&out.join("model.safetensors"))
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let mut bits: Vec<(String, Vec<u32>)> = tensors
            .iter()
            .map(|(name, t)| {
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                (name.clone(), v.iter().map(|x| x.to_bits()).collect())
            })
            .collect();
        bits.sort();
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("distill.json")).unwrap())
                .unwrap();
        // Everything the run computed; wall times and rates differ between runs.
        let losses = serde_json::json!({
            "steps": record["steps"],
            "tokens_seen": record["tokens_seen"],
            "final_loss": record["final_loss"],
            "held_out": record["held_out"],
            "init": record["init"],
            "history": record["history"].as_array().unwrap().iter().map(|r| {
                serde_json::json!([r["step"], r["lr"], r["tokens"], r["total"], r["hidden"],
                    r["attention"], r["cosine"]])
            }).collect::<Vec<_>>(),
        });
        (bits, losses)
    };
    let (want_bits, want_losses) = student(&ref_dir);
    assert_eq!(want_losses["steps"], 12);
    assert!(want_losses["final_loss"]["total"].as_f64().unwrap() > 0.0);
    let killed = kill_then_resume(tmp.path(), args, t, 31, |dir, _| {
        let (bits, losses) = student(dir);
        assert!(bits == want_bits, "the resumed student's weights differ");
        assert_eq!(losses, want_losses);
        assert!(!dir.join("student.distill-state.safetensors").exists());
    });
    assert!(killed >= 3, "only {killed} of {KILLS} runs were killed");
}
