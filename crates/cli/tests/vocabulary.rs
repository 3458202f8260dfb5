//! One CLI vocabulary (issue 17): `--bundle` repeats the same way everywhere, old flag
//! spellings still work, shell completions, `--json` where results are printed, and a closed
//! stdout pipe is a clean exit rather than a panic.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{adalbert, ok, root, train_tiny as train};

const WORDS: [&str; 10] = [
    "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great",
];

#[test]
fn predict_takes_bundle_repeated_and_texts_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    adalbert_model::testing::write_tiny_albert(&model, &WORDS).unwrap();
    let (a, b) = (
        tmp.path().join("a.safetensors"),
        tmp.path().join("b.safetensors"),
    );
    // The new spelling of adapter sharing, and the old one (a hidden alias) with the model
    // name given: both train.
    train(&model, "movie-polarity", &a, &["--sharing", "shared"]);
    train(
        &model,
        "bbc-topic",
        &b,
        &[
            "--adapter-sharing",
            "per-application",
            "--model-name",
            "tiny/albert",
        ],
    );
    let meta = |p: &Path| adalbert_model::TaskBundle::load(p).unwrap().meta;
    assert_eq!(
        serde_json::to_value(meta(&a).layout.sharing).unwrap(),
        "shared"
    );
    assert_eq!(meta(&b).model_name.as_deref(), Some("tiny/albert"));
    // The bundle records the content hash `info` reports for the backbone.
    let info: serde_json::Value = serde_json::from_str(&ok(adalbert(&[
        "info",
        "--model",
        model.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        info["backbone"]["sha256"],
        meta(&a).backbone_sha256.as_str()
    );

    let out = ok(adalbert(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--bundle",
        a.to_str().unwrap(),
        "--bundle",
        b.to_str().unwrap(),
        "--json",
        "a good film",
        "the movie was bad",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for task in ["movie-polarity", "bbc-topic"] {
        assert_eq!(v[task].as_array().map(Vec::len), Some(2), "{task}: {v}");
    }
    // `--bundle A B "text"` would read B as a text: refused, naming the fix.
    let o = adalbert(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--bundle",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "a good film",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--bundle A --bundle B"), "{err}");
    // `eval` takes the eval size as --max-eval, and its old spelling still works.
    let data = root().join("crates/tasks/tests/fixtures/assets");
    for flag in ["--max-eval", "--max-examples"] {
        let preds = tmp.path().join(format!("preds{flag}.tsv"));
        let out = ok(adalbert(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--bundle",
            a.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--max-len",
            "16",
            flag,
            "5",
            "--predictions",
            preds.to_str().unwrap(),
            "--json",
        ]));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["accuracy"].is_number(), "{flag}: {v}");
        // A header and the first 5 examples.
        let rows = std::fs::read_to_string(&preds).unwrap().lines().count();
        assert_eq!(rows, 6, "{flag}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    let bash = ok(adalbert(&["completions", "bash"]));
    assert!(
        bash.contains("complete") && bash.contains("adalbert"),
        "{bash}"
    );
    // Subcommands and their flags are in the script.
    assert!(bash.contains("predict") && bash.contains("--bundle"));
    for shell in ["zsh", "fish"] {
        assert!(
            !ok(adalbert(&["completions", shell])).trim().is_empty(),
            "{shell}"
        );
    }
    assert!(!adalbert(&["completions", "tcsh"]).status.success());
}

/// The reader of stdout leaves before the command writes: the write fails with EPIPE, and
/// the command must exit 0 without a panic message.
fn closed_pipe(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(status.success(), "{args:?}: {status:?} {stderr}");
}

#[test]
fn a_closed_stdout_pipe_is_a_clean_exit() {
    closed_pipe(&["simulate", "--json"]);
    closed_pipe(&["simulate", "--compare"]);
    closed_pipe(&["completions", "bash"]);
    // As a shell pipeline runs it.
    let bin = env!("CARGO_BIN_EXE_adalbert");
    let o = Command::new("bash")
        .args([
            "-c",
            &format!("set -o pipefail; '{bin}' simulate --json --tensors | head -c1 >/dev/null"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn run_check_and_dse_print_json() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = adalbert_experiment::testing::write_tiny_study(tmp.path()).unwrap();
    let out = ok(adalbert(&[
        "run",
        exp.to_str().unwrap(),
        "--check",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["training_items"], 5, "{v}");

    // A small design space: the example's keys with fewer values.
    let example = std::fs::read_to_string(root().join("configs/hw/dse-example.toml")).unwrap();
    let small: String = example
        .lines()
        .map(|l| match l.split(" = ").next() {
            Some("sram_mb") => "sram_mb = [\"auto\", 8]",
            Some("rram_mb") => "rram_mb = [\"auto\"]",
            Some("bits_per_cell") => "bits_per_cell = [1, 2]",
            Some("mac_array") => "mac_array = [16]",
            Some("adapter") => "adapter = [\"houlsby:64\"]",
            Some("sparsity") => "sparsity = [0.0, 0.5]",
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let space = tmp.path().join("space.toml");
    std::fs::write(&space, small).unwrap();
    let out = ok(adalbert(&[
        "dse",
        "--space",
        space.to_str().unwrap(),
        "--out",
        tmp.path().join("dse").to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let points = v["points"].as_u64().unwrap();
    let csv = std::fs::read_to_string(tmp.path().join("dse/dse.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, points + 1, "{v}");
}
