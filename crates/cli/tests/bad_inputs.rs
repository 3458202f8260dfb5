//! The bad-input matrix: every subcommand that reads a file, against every kind of bad file
//! (truncated, wrong type, wrong shape, wrong dtype, non-finite, wrong backbone, inconsistent
//! metadata, a directory instead of a file, missing) and every output that would overwrite an
//! input. Each case must exit with code 1 (an error, not a panic's 101), name the bad path in
//! its message, and leave the working folder exactly as it was (no file written, none changed).
//!
//! Runs the real binary on the tiny random ALBERT, so the whole matrix takes seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use candle_core::{DType, Device, Tensor};

mod common;

const WORDS: [&str; 10] = [
    "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great",
];

/// The tensor the bad-backbone variants damage (as stored in the fixture).
const DAMAGED: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    root().join("crates/tasks/tests/fixtures/assets")
}

/// Runs the binary with a time limit (a bad input must fail fast, never hang or serve).
fn adalbert(args: &[String]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("adalbert {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn args(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (m.len(), m.modified().unwrap()));
        }
    }
    out
}

/// A model directory: the tiny ALBERT's config and vocabulary, with `weights` as its
/// model.safetensors (`None`: the good fixture).
fn model_dir(dir: &Path, weights: Option<&dyn Fn(&Path)>) -> PathBuf {
    adalbert_model::testing::write_tiny_albert(dir, &WORDS).unwrap();
    if let Some(write) = weights {
        let w = dir.join("model.safetensors");
        std::fs::remove_file(&w).unwrap();
        write(&w);
    }
    dir.to_path_buf()
}

fn fixture_tensors() -> std::collections::HashMap<String, Tensor> {
    let f = root().join("crates/model/tests/fixtures/albert_shared/model.safetensors");
    candle_core::safetensors::load(f, &Device::Cpu).unwrap()
}

/// The fixture's weights with `DAMAGED` replaced by `f(original)`.
fn damaged_weights(f: impl Fn(&Tensor) -> Tensor) -> impl Fn(&Path) {
    move |path: &Path| {
        let mut t = fixture_tensors();
        let new = f(&t[DAMAGED]);
        t.insert(DAMAGED.to_string(), new);
        candle_core::safetensors::save(&t, path).unwrap();
    }
}

/// `t` with element `i` set to `v`.
fn with_value(t: &Tensor, i: usize, v: f32) -> Tensor {
    let mut data: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    data[i] = v;
    Tensor::from_vec(data, t.dims(), &Device::Cpu).unwrap()
}

/// A safetensors file whose header claims a shape its byte range cannot hold.
fn lying_header(path: &Path) {
    let good =
        std::fs::read(root().join("crates/model/tests/fixtures/albert_shared/model.safetensors"))
            .unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&good[8..8 + n]).unwrap();
    header[DAMAGED]["shape"] = serde_json::json!([32, 33]);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(&good[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// A bad backbone: its kind, how its weights file is written, what the error must say, and
/// whether the error names the weights file (else the model directory).
type BadBackbone<'a> = (&'a str, &'a dyn Fn(&Path), Vec<&'static str>, bool);

/// One row of the matrix.
struct Case {
    what: String,
    args: Vec<String>,
    /// The path the error must name.
    names: PathBuf,
    /// More text the error must contain.
    says: Vec<&'static str>,
}

struct Matrix {
    work: PathBuf,
    cases: Vec<Case>,
}

impl Matrix {
    fn case(
        &mut self,
        what: impl Into<String>,
        args: Vec<String>,
        names: &Path,
        says: &[&'static str],
    ) {
        self.cases.push(Case {
            what: what.into(),
            args,
            names: names.to_path_buf(),
            says: says.to_vec(),
        });
    }

    fn run(&self) -> usize {
        let mut failures = Vec::new();
        for c in &self.cases {
            let before = snapshot(&self.work);
            let o = adalbert(&c.args);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let after = snapshot(&self.work);
            let mut problems = Vec::new();
            if o.status.code() != Some(1) {
                problems.push(format!("exit code {:?}, expected 1", o.status.code()));
            }
            if !err.contains(&s(&c.names)) {
                problems.push(format!("error does not name {}", c.names.display()));
            }
            for want in &c.says {
                if !err.contains(want) {
                    problems.push(format!("error does not say `{want}`"));
                }
            }
            if err.contains("panicked") {
                problems.push("panicked".into());
            }
            if before != after {
                let changed: Vec<_> = after
                    .iter()
                    .filter(|(k, v)| before.get(*k) != Some(v))
                    .map(|(k, _)| k.display().to_string())
                    .chain(
                        before
                            .keys()
                            .filter(|k| !after.contains_key(*k))
                            .map(|k| format!("removed {}", k.display())),
                    )
                    .collect();
                problems.push(format!("files written or changed: {changed:?}"));
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({}): {}\n  stderr: {err}",
                    c.what,
                    c.args.join(" "),
                    problems.join("; ")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            self.cases.len(),
            failures.join("\n")
        );
        self.cases.len()
    }
}

/// Trains the good bundle every bundle variant starts from.
fn train_bundle(model: &Path, out: &Path) {
    common::train_tiny(model, "movie-polarity", out, &[]);
}

#[test]
fn every_bad_input_is_refused_by_name_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().to_path_buf();
    let d = s(&data());
    let good_model = model_dir(&work.join("good-model"), None);
    let gm = s(&good_model);
    let good_bundle = work.join("good.bundle.safetensors");
    train_bundle(&good_model, &good_bundle);
    let gb = s(&good_bundle);
    let out_dir = work.join("outputs");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut m = Matrix {
        work: work.clone(),
        cases: Vec::new(),
    };

    // Backbones: every command that loads one.
    let half = |p: &Path| {
        let good = std::fs::read(
            root().join("crates/model/tests/fixtures/albert_shared/model.safetensors"),
        )
        .unwrap();
        std::fs::write(p, &good[..good.len() / 2]).unwrap();
    };
    let text = |p: &Path| std::fs::write(p, "{\"model_type\": \"albert\"}\n").unwrap();
    let as_dir = |p: &Path| std::fs::create_dir_all(p).unwrap();
    let nan = damaged_weights(|t| with_value(t, 5, f32::NAN));
    let inf = damaged_weights(|t| with_value(t, 0, f32::INFINITY));
    let shape = damaged_weights(|t| Tensor::zeros((32, 31), DType::F32, t.device()).unwrap());
    let int = damaged_weights(|t| t.to_dtype(DType::U32).unwrap());
    // (kind, how the weights file is written, what the error says, whether it names the file)
    let backbones: Vec<BadBackbone> = vec![
        ("truncated", &half, vec!["not a valid safetensors"], true),
        ("wrong type", &text, vec!["not a valid safetensors"], true),
        (
            "byte count",
            &lying_header,
            vec!["attention.query.weight", "needs"],
            true,
        ),
        (
            "wrong shape",
            &shape,
            vec!["attention.query.weight", "[32, 31]"],
            true,
        ),
        (
            "integer dtype",
            &int,
            vec!["attention.query.weight", "U32"],
            true,
        ),
        ("NaN", &nan, vec!["attention.query.weight", "NaN"], true),
        (
            "infinity",
            &inf,
            vec!["attention.query.weight", "inf"],
            true,
        ),
        ("directory", &as_dir, vec!["no weights"], false),
    ];
    for (i, (kind, write, says, names_file)) in backbones.into_iter().enumerate() {
        let dir = model_dir(&work.join(format!("bad-model-{i}")), Some(write));
        let named = if names_file {
            dir.join("model.safetensors")
        } else {
            dir.clone()
        };
        let md = s(&dir);
        let fresh = s(&out_dir.join(format!("never-{i}.bundle.safetensors")));
        let commands: Vec<(&str, Vec<&str>)> = vec![
            ("info", vec!["info", "--model", &md]),
            ("embed", vec!["embed", "--model", &md, "a good film"]),
            (
                "train",
                vec![
                    "train",
                    "--model",
                    &md,
                    "--data",
                    &d,
                    "--task",
                    "movie-polarity",
                    "--adapter",
                    "houlsby:2",
                    "--max-len",
                    "16",
                    "--out",
                    &fresh,
                ],
            ),
            (
                "eval",
                vec![
                    "eval",
                    "--model",
                    &md,
                    "--data",
                    &d,
                    "--bundle",
                    &gb,
                    "--max-len",
                    "16",
                ],
            ),
            (
                "predict",
                vec!["predict", "--model", &md, "--bundle", &gb, "a good film"],
            ),
            (
                "compress",
                vec![
                    "compress",
                    "--model",
                    &md,
                    "--data",
                    &d,
                    "--bundle",
                    &gb,
                    "--plan",
                    "int8",
                    "--max-len",
                    "16",
                    "--out",
                    &fresh,
                ],
            ),
            (
                "serve",
                vec![
                    "serve",
                    "--model",
                    &md,
                    "--bundles",
                    &gb,
                    "--addr",
                    "127.0.0.1:0",
                ],
            ),
        ];
        for (cmd, a) in commands {
            m.case(format!("{cmd}: backbone {kind}"), args(&a), &named, &says);
        }
    }
    let missing_model = work.join("no-such-model");
    m.case(
        "info: missing model",
        args(&["info", "--model", &s(&missing_model)]),
        &missing_model,
        &[],
    );

    // Bundles: every command that loads one.
    let good = adalbert_model::TaskBundle::load(&good_bundle).unwrap();
    let save = |name: &str,
                edit: &dyn Fn(
        &mut adalbert_model::BundleMeta,
        &mut std::collections::HashMap<String, Tensor>,
    )| {
        let (mut meta, mut tensors) = (good.meta.clone(), good.tensors.clone());
        edit(&mut meta, &mut tensors);
        let p = work.join(name);
        adalbert_model::TaskBundle::save(&meta, &tensors, &p).unwrap();
        p
    };
    let bytes = std::fs::read(&good_bundle).unwrap();
    let truncated = work.join("truncated.bundle.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let wrong_type = work.join("notes.bundle.safetensors");
    std::fs::write(&wrong_type, "id\tlabel\n1\tpositive\n").unwrap();
    let dir_bundle = work.join("dir.bundle.safetensors");
    std::fs::create_dir_all(&dir_bundle).unwrap();
    let missing = work.join("missing.bundle.safetensors");
    let wrong_shape = save("shape.bundle.safetensors", &|_, t| {
        t.insert(
            "classifier.weight".into(),
            Tensor::zeros((2, 31), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let non_finite = save("nan.bundle.safetensors", &|_, t| {
        let w = with_value(&t["classifier.weight"], 3, f32::NAN);
        t.insert("classifier.weight".into(), w);
    });
    let other_backbone = save("other.bundle.safetensors", &|m, _| {
        m.backbone_sha256 = "0".repeat(64);
    });
    let no_labels = save("nolabels.bundle.safetensors", &|m, _| m.labels.clear());
    let three_labels = save("three.bundle.safetensors", &|m, _| {
        m.labels.push("neutral".into());
    });
    let bundles: Vec<(&str, &Path, Vec<&'static str>)> = vec![
        ("truncated", &truncated, vec!["not a valid safetensors"]),
        ("wrong type", &wrong_type, vec!["not a valid safetensors"]),
        ("directory", &dir_bundle, vec![]),
        ("missing", &missing, vec![]),
        (
            "wrong shape",
            &wrong_shape,
            vec!["classifier.weight", "[2, 31]"],
        ),
        ("NaN", &non_finite, vec!["classifier.weight", "NaN"]),
        ("wrong backbone", &other_backbone, vec!["retrain"]),
        ("labels []", &no_labels, vec!["labels", "2 outputs"]),
        ("3 labels", &three_labels, vec!["labels", "3 names"]),
    ];
    for (kind, b, says) in bundles {
        let bs = s(b);
        let fresh = s(&out_dir.join("never-cmp"));
        let commands: Vec<(&str, Vec<&str>)> = vec![
            (
                "eval",
                vec![
                    "eval",
                    "--model",
                    &gm,
                    "--data",
                    &d,
                    "--bundle",
                    &bs,
                    "--max-len",
                    "16",
                ],
            ),
            (
                "predict",
                vec!["predict", "--model", &gm, "--bundle", &bs, "a good film"],
            ),
            (
                "compress",
                vec![
                    "compress",
                    "--model",
                    &gm,
                    "--data",
                    &d,
                    "--bundle",
                    &bs,
                    "--plan",
                    "int8",
                    "--max-len",
                    "16",
                    "--out",
                    &fresh,
                ],
            ),
            (
                "serve",
                vec![
                    "serve",
                    "--model",
                    &gm,
                    "--bundles",
                    &bs,
                    "--addr",
                    "127.0.0.1:0",
                ],
            ),
        ];
        for (cmd, a) in commands {
            m.case(format!("{cmd}: bundle {kind}"), args(&a), b, &says);
        }
    }

    // Outputs that cannot be written or would destroy an input: refused before training.
    let weights = good_model.join("model.safetensors");
    let a_file = work.join("a-file.txt");
    std::fs::write(&a_file, "x").unwrap();
    let under_file = a_file.join("out.bundle.safetensors");
    let train_to = |out: &Path| {
        args(&[
            "train",
            "--model",
            &gm,
            "--data",
            &d,
            "--task",
            "movie-polarity",
            "--adapter",
            "houlsby:2",
            "--max-len",
            "16",
            "--epochs",
            "1",
            "--out",
            &s(out),
        ])
    };
    m.case(
        "train: --out is the backbone",
        train_to(&weights),
        &weights,
        &["destroy"],
    );
    m.case(
        "train: --out is the vocabulary",
        train_to(&good_model.join("vocab.txt")),
        &good_model.join("vocab.txt"),
        &["destroy"],
    );
    m.case(
        "train: --out is a directory",
        train_to(&out_dir),
        &out_dir,
        &["is a directory"],
    );
    m.case(
        "train: --out under a file",
        train_to(&under_file),
        &under_file,
        &["not a directory"],
    );
    let eval_to = |out: &Path| {
        args(&[
            "eval",
            "--model",
            &gm,
            "--data",
            &d,
            "--bundle",
            &gb,
            "--max-len",
            "16",
            "--predictions",
            &s(out),
        ])
    };
    m.case(
        "eval: --predictions is the bundle",
        eval_to(&good_bundle),
        &good_bundle,
        &["destroy"],
    );
    m.case(
        "eval: --predictions is a directory",
        eval_to(&out_dir),
        &out_dir,
        &["is a directory"],
    );

    // A damaged run state is named as run state, with what to do.
    let resumed = out_dir.join("resumed.bundle.safetensors");
    let state = out_dir.join("resumed.bundle.safetensors.run-state.safetensors");
    std::fs::write(&state, &bytes[..100]).unwrap();
    let mut resume = train_to(&resumed);
    resume.push("--resume".into());
    m.case(
        "train: truncated run state",
        resume,
        &state,
        &["run state", "delete it"],
    );

    // Experiment, sweep, design-space and architecture files.
    let exp_dir = work.join("exp-dir.toml");
    std::fs::create_dir_all(&exp_dir).unwrap();
    let exp_trunc = work.join("exp.toml");
    std::fs::write(&exp_trunc, "name = \"x\"\nmodel = \"").unwrap();
    let exp_binary = work.join("exp-binary.toml");
    std::fs::write(&exp_binary, &bytes[..64]).unwrap();
    for (kind, p) in [
        ("directory", &exp_dir),
        ("truncated", &exp_trunc),
        ("wrong type", &exp_binary),
    ] {
        m.case(
            format!("run: experiment {kind}"),
            args(&["run", &s(p), "--out", &s(&out_dir.join("never-run"))]),
            p,
            &[],
        );
        m.case(
            format!("run --check: experiment {kind}"),
            args(&["run", &s(p), "--check"]),
            p,
            &[],
        );
        m.case(
            format!("compress --sweep: {kind}"),
            args(&["compress", "--sweep", &s(p)]),
            p,
            &[],
        );
        m.case(
            format!("dse --space: {kind}"),
            args(&[
                "dse",
                "--space",
                &s(p),
                "--out",
                &s(&out_dir.join("never-dse")),
            ]),
            p,
            &[],
        );
        m.case(
            format!("simulate --arch: {kind}"),
            args(&["simulate", "--arch", &s(p)]),
            p,
            &[],
        );
    }
    let arch = work.join("arch.toml");
    let edgebert = std::fs::read_to_string(root().join("crates/hw/data/edgebert.toml")).unwrap();
    std::fs::write(
        &arch,
        edgebert.replacen(
            "mac_rows = { value = 16,",
            "mac_rows = { value = 4294967296,",
            1,
        ),
    )
    .unwrap();
    m.case(
        "simulate --arch: mac_rows 2^32",
        args(&["simulate", "--arch", &s(&arch)]),
        &arch,
        &["mac_rows", "at most 4294967295"],
    );

    let n = m.run();
    assert!(n >= 100, "the matrix has {n} cases");
}

/// Values that are not files: each refused with the flag or field it belongs to.
#[test]
fn bad_values_are_refused_with_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir(&tmp.path().join("model"), None);
    let (gm, d) = (s(&model), s(&data()));
    let out = tmp.path().join("out.bundle.safetensors");
    let refused = |a: Vec<String>, says: &[&str]| {
        let o = adalbert(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{a:?}: {err}");
        for want in says {
            assert!(err.contains(want), "{a:?} should say `{want}`: {err}");
        }
        err.into_owned()
    };
    let train = |extra: &[&str]| {
        let mut a = args(&[
            "train",
            "--model",
            &gm,
            "--data",
            &d,
            "--task",
            "movie-polarity",
            "--adapter",
            "houlsby:2",
            "--out",
            &s(&out),
        ]);
        a.extend(args(extra));
        a
    };
    let err = refused(train(&["--max-eval", "0"]), &["max_eval_examples"]);
    assert!(!err.contains("max_train_examples"), "{err}");
    refused(train(&["--max-len", "65"]), &["max_len", "64 positions"]);
    refused(
        args(&["simulate", "--model", "albert-base", "--seq-len", "100000"]),
        &["--seq-len", "100000", "1..=512"],
    );
    refused(
        args(&[
            "compress",
            "--model",
            &gm,
            "--data",
            &d,
            "--bundle",
            "x",
            "--plan",
            "int8",
            "--faults",
            "mlc:bpc=2:bpc=3",
            "--out",
            &s(&tmp.path().join("cmp")),
        ]),
        &["mlc:bpc=2:bpc=3", "repeats"],
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the model folder"
    );

    // A missing file's OS cause is printed once.
    let missing = tmp.path().join("missing.bundle.safetensors");
    let err = refused(
        args(&[
            "predict",
            "--model",
            &gm,
            "--bundle",
            &s(&missing),
            "a film",
        ]),
        &["missing.bundle.safetensors"],
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// `predict` says when it cut an input to --max-len tokens.
#[test]
fn predict_reports_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir(&tmp.path().join("model"), None);
    let bundle = tmp.path().join("b.bundle.safetensors");
    train_bundle(&model, &bundle);
    let long = "the good film was great ".repeat(10);
    let run = |extra: &[&str]| {
        let mut a = args(&[
            "predict",
            "--model",
            &s(&model),
            "--bundle",
            &s(&bundle),
            "--max-len",
            "8",
        ]);
        a.extend(args(extra));
        let o = adalbert(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (text, warn) = run(&["a film", &long]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines[1].contains("truncated"), "{text}");
    assert!(lines[2].contains("[truncated to 8 tokens]"), "{text}");
    assert!(warn.contains("input(s) 2 were truncated"), "{warn}");
    let (json, _) = run(&["--json", "a film", &long]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let preds = v["movie-polarity"].as_array().unwrap();
    assert_eq!(preds[0]["truncated"], false);
    assert_eq!(preds[1]["truncated"], true);
}
