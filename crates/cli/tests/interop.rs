//! `adalbert export` / `import` on the committed PEFT and AdapterHub fixtures (made by the real
//! packages, tools/interop/): a round trip through the binary, and refusals that exit with
//! status 1 naming the file and field, writing nothing.

use std::path::{Path, PathBuf};

mod common;
use common::{adalbert, ok, root};

fn fixture(p: &str) -> PathBuf {
    root().join("crates/model/tests/fixtures").join(p)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `adalbert import --format F --model M --adapter A --out B`.
fn import<'a>(format: &'a str, model: &'a Path, adapter: &'a Path, out: &'a Path) -> [&'a str; 9] {
    [
        "import",
        "--format",
        format,
        "--model",
        s(model),
        "--adapter",
        s(adapter),
        "--out",
        s(out),
    ]
}

/// `adalbert export --bundle B --format F --model M --out D`.
fn export<'a>(bundle: &'a Path, format: &'a str, model: &'a Path, out: &'a Path) -> [&'a str; 9] {
    [
        "export",
        "--bundle",
        s(bundle),
        "--format",
        format,
        "--model",
        s(model),
        "--out",
        s(out),
    ]
}

/// A failed run: status 1 (an error, not a panic) and its stderr.
fn fails(args: &[&str]) -> String {
    let o = adalbert(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn peft_and_adapterhub_round_trip_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    for (format, adapter, model, files) in [
        (
            "peft",
            "interop/peft_bert",
            "bert",
            vec!["adapter_config.json", "adapter_model.safetensors"],
        ),
        (
            "adapterhub",
            "interop/ah_albert_par",
            "albert_shared",
            vec![
                "adapter_config.json",
                "adapter.safetensors",
                "head_config.json",
                "model_head.safetensors",
            ],
        ),
    ] {
        let bundle = tmp.path().join(format!("{format}.bundle.safetensors"));
        let model = fixture(model);
        let adapter = fixture(adapter);
        let out = ok(adalbert(
            &[&import(format, &model, &adapter, &bundle)[..], &["--json"]].concat(),
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["adapter"].as_str().is_some(), "{out}");
        let dir = tmp.path().join(format!("{format}-out"));
        let args = export(&bundle, format, &model, &dir);
        ok(adalbert(&args));
        for f in &files {
            assert!(dir.join(f).is_file(), "{format}: {f} not written");
        }
        // A second export replaces the previous export directory whole.
        ok(adalbert(&args));
    }
}

#[test]
fn refusals_exit_1_name_the_field_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = fixture("bert");
    // A PEFT adapter with LoRA on `key`, which adalbert has no site for.
    let bad = tmp.path().join("bad-peft");
    std::fs::create_dir(&bad).unwrap();
    let src = fixture("interop/peft_bert");
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        bad.join("adapter_model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["target_modules"] = serde_json::json!(["query", "key"]);
    std::fs::write(bad.join("adapter_config.json"), v.to_string()).unwrap();
    let out = tmp.path().join("b.safetensors");
    let e = fails(&import("peft", &bert, &bad, &out));
    assert!(
        e.contains("`target_modules`") && e.contains("adapter_config.json"),
        "{e}"
    );
    assert!(!out.exists());
    // AdapterHub's seq_bn (original_ln_before) is not adalbert's pfeiffer.
    let bad = tmp.path().join("bad-ah");
    std::fs::create_dir(&bad).unwrap();
    let src = fixture("interop/ah_bert_double");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bad.join(e.file_name())).unwrap();
    }
    let p = bad.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["config"]["original_ln_before"] = true.into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = fails(&import("adapterhub", &bert, &bad, &out));
    assert!(
        e.contains("`config.original_ln_before`") && e.contains("Pfeiffer"),
        "{e}"
    );
    assert!(!out.exists());
    // A LoRA bundle to AdapterHub: refused, naming the bundle's field; no directory appears.
    ok(adalbert(&import(
        "peft",
        &bert,
        &fixture("interop/peft_bert"),
        &out,
    )));
    let dir = tmp.path().join("ah");
    let e = fails(&export(&out, "adapterhub", &bert, &dir));
    assert!(
        e.contains("`layout.adapter`") && e.contains("--format peft"),
        "{e}"
    );
    assert!(!dir.exists());
    // --out an existing folder with other files: refused before any work, nothing deleted.
    let keep = tmp.path().join("keep");
    std::fs::create_dir(&keep).unwrap();
    std::fs::write(keep.join("notes.txt"), "mine").unwrap();
    let e = fails(&export(&out, "peft", &bert, &keep));
    assert!(e.contains("notes.txt"), "{e}");
    assert!(keep.join("notes.txt").is_file());
}

/// `adalbert train --no-layer-norms` makes a bottleneck bundle AdapterHub can hold: it
/// exports, comes back through `import` with the same predictions, and the default bundle
/// (with LayerNorm copies) is refused naming the field and the flag.
#[test]
fn an_adapter_trained_without_layer_norm_copies_goes_to_adapterhub_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    // The tiny BERT fixture (with its pooler) and a vocabulary, so text can be tokenized.
    let model = tmp.path().join("bert");
    let words = [
        "the", "a", "fine", "film", "dull", "good", "bad", "movie", "is", "not",
    ];
    adalbert_model::testing::write_tiny_bert(&model, &words).unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut a = vec!["--pooling", "pooler"];
        a.extend_from_slice(extra);
        common::train_tiny(&model, "movie-polarity", out, &a);
    };
    let frozen = tmp.path().join("frozen.bundle.safetensors");
    train(&frozen, &["--no-layer-norms"]);
    let dir = tmp.path().join("frozen-ah");
    ok(adalbert(&export(&frozen, "adapterhub", &model, &dir)));
    assert!(dir.join("adapter_config.json").is_file());
    let back = tmp.path().join("back.bundle.safetensors");
    ok(adalbert(&import("adapterhub", &model, &dir, &back)));
    let predict = |bundle: &Path| -> Vec<f64> {
        let out = ok(adalbert(&[
            "predict",
            "--model",
            s(&model),
            "--bundle",
            s(bundle),
            "--json",
            "a fine film",
            "dull",
        ]));
        // One object, bundle name -> its predictions (each with `scores`).
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (_, preds) = v.as_object().unwrap().iter().next().unwrap();
        preds
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["scores"].as_array().unwrap().clone())
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (want, got) = (predict(&frozen), predict(&back));
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        assert!((w - g).abs() < 1e-5, "{want:?} vs {got:?}");
    }
    // The default trains LayerNorm copies, which AdapterHub cannot hold.
    let copies = tmp.path().join("copies.bundle.safetensors");
    train(&copies, &[]);
    let refused = tmp.path().join("copies-ah");
    let err = fails(&export(&copies, "adapterhub", &model, &refused));
    assert!(
        err.contains("layout.layer_norms") && err.contains("--no-layer-norms"),
        "{err}"
    );
    assert!(!refused.exists());
}
