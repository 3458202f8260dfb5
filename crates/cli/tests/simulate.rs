//! `adalbert simulate` through the real binary: the built-in models and a model directory as
//! `--model`, the task stores (with the `on-chip` alias), a seeded sensitivity study with its
//! tornado SVG, and bad input that must be refused naming the field.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{adalbert, ok, root};

/// The stderr of a run that must fail.
fn refused(o: Output) -> String {
    assert!(
        !o.status.success(),
        "expected an error, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(adalbert(args))).unwrap()
}

/// A distilled ALBERT student as `adalbert distill` writes it: a Hugging Face ALBERT directory
/// (H 384, 6 applications of one shared layer).
fn student(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "albert", "vocab_size": 30522, "embedding_size": 128,
            "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
            "intermediate_size": 1536, "num_hidden_groups": 1, "inner_group_num": 1,
            "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu_new"}"#,
    )
    .unwrap();
}

#[test]
fn every_builtin_model_and_a_model_directory_switch_their_task_tensors() {
    // houlsby:64 per application, 2 labels, 8-bit task tensors. Per application two adapters
    // 2 * (H*64 + 64 + 64*H + H) and two LayerNorms 2 * 2H; classifier 2H + 2.
    // H = 768, 12 applications (albert-base, bert-base): 12 * (198,272 + 3,072) + 1,538.
    // H = 384, 6 applications (minilm, the student): 6 * (99,200 + 1,536) + 770.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("student");
    student(&dir);
    let dir = dir.to_str().unwrap();
    for (model, family, task_params) in [
        ("albert-base", "albert", 2_417_666.0),
        ("bert-base", "bert", 2_417_666.0),
        ("minilm", "bert", 605_186.0),
        (dir, "albert", 605_186.0),
    ] {
        let v = json(&[
            "simulate",
            "--model",
            model,
            "--adapter",
            "houlsby:64",
            "--sharing",
            "per-application",
            "--tasks",
            "4",
            "--task-store",
            "rram",
            "--json",
        ]);
        assert_eq!(v["model"]["family"], family, "{model}");
        assert_eq!(v["task_store"], "rram", "{model}");
        let report = &v["report"];
        assert_eq!(report["switch"]["bits"], task_params * 8.0, "{model}");
        assert_eq!(report["switch"]["source"], "rram", "{model}");
        // the RRAM task array holds the four tasks' tensors
        assert_eq!(
            report["occupancy"]["rram_task_bytes"],
            4.0 * task_params,
            "{model}"
        );
        assert!(v["request"]["energy_pj"].as_f64().unwrap() > 0.0, "{model}");
    }
}

#[test]
fn on_chip_is_an_alias_of_the_sram_task_store() {
    let args = |store: &'static str| ["simulate", "--tasks", "3", "--task-store", store, "--json"];
    let sram = json(&args("sram"));
    assert_eq!(json(&args("on-chip")), sram);
    assert_eq!(sram["task_store"], "sram");
    assert_eq!(sram["report"]["switch"]["bits"], 0.0);
    let dram = json(&args("dram"));
    assert_eq!(dram["report"]["switch"]["source"], "dram");
    assert_eq!(dram["report"]["switch"]["bits"], 2_417_666.0 * 8.0);
    let err = refused(adalbert(&args("flash")));
    assert!(err.contains("sram (alias on-chip), rram or dram"), "{err}");
}

#[test]
fn a_rate_adds_idle_time_to_the_energy_per_request() {
    let base = ["simulate", "--tasks", "4", "--task-store", "rram", "--json"];
    let back = json(&base);
    let mut slow = base.to_vec();
    slow.extend(["--rate", "2"]);
    let slow = json(&slow);
    assert_eq!(back["request"]["idle_ns"], 0.0);
    let period = slow["request"]["period_ns"].as_f64().unwrap();
    assert_eq!(period, 5e8);
    let idle = slow["request"]["idle_ns"].as_f64().unwrap();
    let busy = slow["request"]["latency_ns"].as_f64().unwrap();
    assert!(
        (idle + busy - period).abs() < 1e-6 * period,
        "{idle} + {busy}"
    );
    let e = |v: &Value| v["request"]["energy_pj"].as_f64().unwrap();
    assert!(e(&slow) > e(&back));
}

#[test]
fn sensitivity_writes_a_seeded_study_and_its_tornado() {
    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("space.toml");
    std::fs::write(
        &space,
        r#"model = "albert-base"
sharing = "per-application"
tasks = 8
seed = 7
samples = 4

[ranges.clock_ghz]
min = 0.5
max = 1.5
source = "test range"

[ranges.adapter_size]
min = 8
max = 256
log = true
source = "test range"
"#,
    )
    .unwrap();
    let run = |out: &Path| {
        ok(adalbert(&[
            "simulate",
            "--sensitivity",
            "--space",
            space.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let said = run(&a);
    assert!(
        said.contains("9 settings") && said.contains("seed 7"),
        "{said}"
    );
    run(&b);
    let csv = std::fs::read_to_string(a.join("sensitivity.csv")).unwrap();
    // header, defaults, 2 knobs at both ends, 4 joint samples
    assert_eq!(csv.lines().count(), 1 + 1 + 4 + 4, "{csv}");
    assert_eq!(
        csv,
        std::fs::read_to_string(b.join("sensitivity.csv")).unwrap()
    );
    let md = std::fs::read_to_string(a.join("sensitivity.md")).unwrap();
    assert!(md.contains("seed **7**"), "{md}");
    let svg = std::fs::read_to_string(a.join("sensitivity.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    for label in ["clock_ghz", "adapter_size", "E vs albert-dram"] {
        assert!(svg.contains(label), "tornado lacks {label}");
    }
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    for rate in ["0", "-2"] {
        let err = refused(adalbert(&["simulate", "--rate", rate]));
        assert!(
            err.contains("--rate") && err.contains(&format!("`{rate}`")),
            "{err}"
        );
    }
    let err = refused(adalbert(&["simulate", "--requests-per-switch", "0"]));
    assert!(err.contains("--requests-per-switch"), "{err}");
    for (model, seq) in [("albert-base", "513"), ("minilm", "600")] {
        let err = refused(adalbert(&["simulate", "--model", model, "--seq-len", seq]));
        assert!(
            err.contains("seq_len") && err.contains("1..=512") && err.contains(seq),
            "{err}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("inverted.toml");
    std::fs::write(
        &space,
        "model = \"albert-base\"\nsharing = \"per-application\"\ntasks = 8\nseed = 1\nsamples = 2\n\n[ranges.sram_leakage_scale]\nmin = 2.0\nmax = 0.5\nsource = \"test\"\n",
    )
    .unwrap();
    let err = refused(adalbert(&[
        "simulate",
        "--sensitivity",
        "--space",
        space.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]));
    assert!(
        err.contains("ranges.sram_leakage_scale") && err.contains("min 2 > max 0.5"),
        "{err}"
    );

    // the built-in memory table with the wake-up figure's source removed
    let memory = std::fs::read_to_string(root().join("crates/hw/data/memory.toml")).unwrap();
    let line = memory
        .lines()
        .find(|l| l.starts_with("rram_wake_ns"))
        .unwrap();
    let unsourced = memory.replace(line, "rram_wake_ns = { value = 1000, source = \"\" }");
    let path = tmp.path().join("memory.toml");
    std::fs::write(&path, unsourced).unwrap();
    let err = refused(adalbert(&["simulate", "--memory", path.to_str().unwrap()]));
    assert!(
        err.contains("power.rram_wake_ns") && err.contains("source"),
        "{err}"
    );
}
