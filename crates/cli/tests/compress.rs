//! `adalbert compress` end to end through the real binary: tiny random ALBERT, a tiny
//! offline-suite fixture, one trained adapter bundle. Checks the CSV rows (seeds recorded,
//! one row per point), that `--resume` reads finished points back instead of recomputing them,
//! recovery training, and the error on an invalid plan.

use std::path::{Path, PathBuf};

mod common;
use common::{adalbert, ok, root};

fn data() -> PathBuf {
    root().join("crates/tasks/tests/fixtures/assets")
}

fn tiny_model(dir: &Path) {
    let fixture = root().join("crates/model/tests/fixtures/albert_shared");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    for w in [
        "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great",
    ] {
        vocab.push(w.into());
    }
    while vocab.len() < 99 {
        vocab.push(format!("w{}", vocab.len()));
    }
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n")).unwrap();
}

#[test]
fn compress_writes_rows_per_seed_resumes_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let bundle = tmp.path().join("mp.bundle.safetensors");
    let (m, d, b) = (
        model.to_str().unwrap(),
        data(),
        bundle.to_str().unwrap().to_string(),
    );
    let d = d.to_str().unwrap();
    ok(adalbert(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--task",
        "movie-polarity",
        "--adapter",
        "houlsby:4",
        "--pooling",
        "mean",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--max-len",
        "16",
        "--out",
        &b,
        "--json",
    ]));
    let out = tmp.path().join("cmp");
    let o = out.to_str().unwrap();
    let args = [
        "compress",
        "--model",
        m,
        "--data",
        d,
        "--bundle",
        &b,
        "--plan",
        "fp32",
        "--plan",
        "int4+prune=0.5+bitmask",
        "--faults",
        "none",
        "--faults",
        "mlc:bpc=3:sigma=2",
        "--seeds",
        "2",
        "--first-seed",
        "5",
        "--max-len",
        "16",
        "--out",
        o,
        "--json",
    ];
    let first = ok(adalbert(&args));
    let rows: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 plans x (none once + 2 fault seeds).
    assert_eq!(rows.len(), 6);
    let seeds: Vec<u64> = rows.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(
        seeds,
        [5, 5, 6, 5, 5, 6],
        "no-fault points run once, at the first seed"
    );
    assert!(rows[4]["value_flipped_cells"].as_u64().unwrap() > 0);
    assert!(rows[3]["payload_bits"].as_u64().unwrap() < rows[0]["payload_bits"].as_u64().unwrap());
    let csv = std::fs::read_to_string(out.join("compression.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(
        csv.contains("mlc:bpc=3:coding=binary:mask=slc:sigma=2,6,"),
        "{csv}"
    );
    let md = std::fs::read_to_string(out.join("compression.md")).unwrap();
    assert!(
        md.contains("| `int4:per-tensor:sym+prune=0.5:per-tensor+bitmask` |"),
        "{md}"
    );

    // --resume reads every point back: identical rows, timings included.
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let fields = |text: &str, key: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].clone())
            .collect()
    };
    let again = ok(adalbert(&resumed));
    for key in ["seconds", "weights_sha256", "value", "plan", "seed"] {
        assert_eq!(fields(&again, key), fields(&first, key), "{key}");
    }
    // Without --resume the points are recomputed (same weights, new timings).
    let fresh = ok(adalbert(&args));
    assert_eq!(
        fields(&fresh, "weights_sha256"),
        fields(&first, "weights_sha256")
    );
    assert_ne!(fields(&fresh, "seconds"), fields(&first, "seconds"));

    // Recovery writes a bundle tied to the compressed weights.
    let rec = ok(adalbert(&[
        "compress",
        "--model",
        m,
        "--data",
        d,
        "--bundle",
        &b,
        "--plan",
        "int4",
        "--max-len",
        "16",
        "--recover-epochs",
        "1",
        "--out",
        o,
        "--json",
    ]));
    let row: serde_json::Value = serde_json::from_str(rec.lines().next().unwrap()).unwrap();
    assert_eq!(row["recover_epochs"], 1);
    let recovered: Vec<PathBuf> = std::fs::read_dir(out.join("recovered"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bundle.safetensors"))
        .collect();
    assert_eq!(recovered.len(), 1);
    let rb = adalbert_model::TaskBundle::load(&recovered[0]).unwrap();
    assert_eq!(
        rb.meta.backbone_sha256,
        row["weights_sha256"].as_str().unwrap()
    );
    assert_eq!(rb.meta.training["backbone"]["seed"], 0);
    // ... so it is refused on the uncompressed backbone.
    let refused = adalbert(&[
        "eval",
        "--model",
        m,
        "--data",
        d,
        "--bundle",
        recovered[0].to_str().unwrap(),
        "--max-len",
        "16",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("retrain"));

    // An invalid plan is a clear error naming the plan.
    let bad = adalbert(&[
        "compress", "--model", m, "--data", d, "--bundle", &b, "--plan", "int12", "--out", o,
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("int12") && err.contains("2..=8"), "{err}");
}
