//! PEFT LoRA adapters made by the real `peft` package (fixtures:
//! tools/interop/make_peft_fixture.py) imported as bundles give PEFT's logits, export back to
//! the same tensors and settings, and what cannot be mapped exactly is refused by name.

mod interop_common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use adalbert_model::bundle::load_tensors;
use adalbert_model::interop::{peft, Imported};
use adalbert_model::{AdapterSpec, Backbone, BackboneId, Pooling, Sharing, TaskBundle, TaskLayout};
use candle_core::{Device, Tensor};
use interop_common::{backbone, fixtures, key_set, logits, max_diff, tensor_diff, theirs};
use serde_json::Value;

fn cases() -> serde_json::Map<String, Value> {
    interop_common::cases("peft.json")
}

fn import_case(name: &str, case: &Value) -> (Backbone, Imported) {
    let (bb, id) = backbone(case["backbone"].as_str().unwrap());
    let dir = fixtures().join("interop").join(name);
    let imported = peft::import(&dir, &bb, &id, name.into(), None).unwrap();
    (bb, imported)
}

#[test]
fn imported_peft_adapters_give_peft_logits() {
    for (name, case) in cases() {
        let (bb, imported) = import_case(&name, &case);
        let ours = logits(&bb, &imported, &case);
        let d = max_diff(&ours, &theirs(&case));
        eprintln!("{name}: max |logit diff| vs peft = {d:e}");
        assert!(d < 1e-4, "{name}: logits differ from PEFT's by {d}");
        // The adapter matters: without it the logits are not PEFT's.
        let layout = &imported.meta.layout;
        assert_eq!(layout.num_labels, 3);
        assert_eq!(layout.pooling, Pooling::Pooler);
    }
}

#[test]
fn import_maps_sharing_norms_and_rslora() {
    let cases = cases();
    let (_, bert) = import_case("peft_bert", &cases["peft_bert"]);
    let l = &bert.meta.layout;
    assert_eq!(l.sharing, Sharing::PerApplication);
    assert!(l.layer_norms && l.pooler);
    assert_eq!(l.adapter.unwrap().to_string(), "lora:r=4,alpha=8");
    assert_eq!(bert.meta.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    // ALBERT's one stored layer: PEFT wraps it once, which is adalbert's shared layout.
    let (_, albert) = import_case("peft_albert", &cases["peft_albert"]);
    let l = &albert.meta.layout;
    assert_eq!(l.sharing, Sharing::Shared);
    assert!(!l.layer_norms && !l.pooler);
    // use_rslora with r=2, alpha=6 scales by 6/sqrt(2), i.e. adalbert's alpha 6*sqrt(2).
    let spec = l.adapter.unwrap();
    assert!((spec.alpha / spec.size as f64 - 6.0 / 2f64.sqrt()).abs() < 1e-12);
}

/// Import, save, load, export: the same tensors under the same names, and the settings that
/// decide the math equal.
#[test]
fn export_of_an_imported_adapter_gives_the_fixture_back() {
    for (name, case) in cases() {
        let (bb, imported) = import_case(&name, &case);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.bundle.safetensors");
        imported.save(&path).unwrap();
        let bundle = TaskBundle::load(&path).unwrap();
        let files = peft::export(&bundle, &bb, "base").unwrap();
        let out = tmp.path().join("out");
        files.write(&out).unwrap();
        let fixture = fixtures().join("interop").join(&name);
        let (theirs, _) = load_tensors(&fixture.join(peft::WEIGHTS_FILE)).unwrap();
        let (ours, _) = load_tensors(&out.join(peft::WEIGHTS_FILE)).unwrap();
        assert_eq!(key_set(&ours), key_set(&theirs), "{name}: tensor names");
        for (k, t) in &theirs {
            assert_eq!(tensor_diff(t, &ours[k]), 0.0, "{name}: {k}");
        }
        let read = |p: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p.join(peft::CONFIG_FILE)).unwrap())
                .unwrap()
        };
        let (a, b) = (read(&out), read(&fixture));
        for field in ["peft_type", "task_type", "r", "bias"] {
            assert_eq!(a[field], b[field], "{name}: {field}");
        }
        let scale = |c: &Value| {
            let r = c["r"].as_f64().unwrap();
            let rs = c["use_rslora"].as_bool().unwrap_or(false);
            c["lora_alpha"].as_f64().unwrap() / if rs { r.sqrt() } else { r }
        };
        assert!((scale(&a) - scale(&b)).abs() < 1e-9, "{name}: LoRA scale");
        let set = |c: &Value, f: &str| -> BTreeSet<String> {
            c[f].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .filter(|s| s != "score") // PEFT adds it for SEQ_CLS; BERT has no `score`
                .collect()
        };
        assert_eq!(set(&a, "target_modules"), set(&b, "target_modules"));
        assert_eq!(set(&a, "modules_to_save"), set(&b, "modules_to_save"));
    }
}

fn import_err(dir: &Path, backbone_name: &str) -> String {
    let (bb, id) = backbone(backbone_name);
    peft::import(dir, &bb, &id, "t".into(), None)
        .unwrap_err()
        .to_string()
}

#[test]
fn unsupported_peft_settings_are_refused_by_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("peft_type", "IA3".into(), "LoRA adapters only"),
        ("task_type", "CAUSAL_LM".into(), "SEQ_CLS"),
        (
            "target_modules",
            serde_json::json!(["query", "key"]),
            "\"key\"",
        ),
        (
            "target_modules",
            serde_json::json!(["query", "dense"]),
            "\"dense\"",
        ),
        ("target_modules", ".*query".into(), "regular expression"),
        ("use_dora", true.into(), "DoRA"),
        ("lora_bias", true.into(), "bias"),
        ("bias", "all".into(), "frozen"),
        ("rank_pattern", serde_json::json!({"query": 8}), "one rank"),
        (
            "alpha_pattern",
            serde_json::json!({"value": 3}),
            "one rank and alpha",
        ),
        ("layers_to_transform", serde_json::json!([0]), "some layers"),
        (
            "modules_to_save",
            serde_json::json!(["classifier", "intermediate"]),
            "intermediate",
        ),
    ];
    for (field, value, why) in cases {
        let dir =
            interop_common::edited("peft_bert", peft::CONFIG_FILE, |v| v[field] = value.clone());
        let e = import_err(dir.path(), "bert");
        assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        assert!(e.contains(why), "{field}: {e}");
        assert!(e.contains("adapter_config.json"), "{field}: {e}");
    }
}

#[test]
fn an_adapter_for_another_base_model_is_refused() {
    let dir = fixtures().join("interop/peft_bert");
    // ALBERT backbone: the BERT module paths are not its modules.
    let e = import_err(&dir, "albert_shared");
    assert!(
        e.contains("another architecture") && e.contains("ALBERT"),
        "{e}"
    );
    assert!(e.contains("adapter_model.safetensors"), "{e}");
    // A 2-layer BERT: the adapter's third layer does not exist there.
    let e = import_err(&dir, "bert_noprefix_relu");
    assert!(e.contains("bert.encoder.layer.2"), "{e}");
    // Another width: the LoRA shapes name the difference.
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("interop/peft_bert");
    std::fs::copy(
        src.join(peft::CONFIG_FILE),
        tmp.path().join(peft::CONFIG_FILE),
    )
    .unwrap();
    let (mut t, _) = load_tensors(&src.join(peft::WEIGHTS_FILE)).unwrap();
    let key = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight";
    t.insert(
        key.into(),
        Tensor::zeros((4, 48), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    adalbert_model::bundle::save_tensors(&tmp.path().join(peft::WEIGHTS_FILE), &t, HashMap::new())
        .unwrap();
    let e = import_err(tmp.path(), "bert");
    assert!(e.contains(key) && e.contains("another base model"), "{e}");
}

/// A bundle of `layout` on `bb`, saved and loaded (initial tensors: the export only maps).
fn bundle_of(bb: &Backbone, id: &BackboneId, layout: TaskLayout, dir: &Path) -> TaskBundle {
    let tensors = layout.init_tensors(bb, 7).unwrap();
    let mut meta = import_case("peft_bert", &cases()["peft_bert"]).1.meta;
    meta.layout = layout;
    meta.backbone_sha256 = id.sha256.clone();
    let path = dir.join("x.bundle.safetensors");
    TaskBundle::save(&meta, &tensors, &path).unwrap();
    TaskBundle::load(&path).unwrap()
}

#[test]
fn bundles_peft_cannot_express_are_refused_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = |spec: &str, sharing, pooling| TaskLayout {
        adapter: Some(AdapterSpec::parse(spec).unwrap()),
        sharing,
        layer_norms: true,
        pooler: false,
        num_labels: 3,
        pooling,
    };
    let (bert, bert_id) = backbone("bert");
    let (albert, albert_id) = backbone("albert_shared");
    let cases = [
        (
            &bert,
            &bert_id,
            layout("lora:r=2", Sharing::PerApplication, Pooling::Mean),
            "layout.pooling",
            "pooler",
        ),
        (
            &bert,
            &bert_id,
            layout("houlsby:4", Sharing::PerApplication, Pooling::Pooler),
            "layout.adapter",
            "--format adapterhub",
        ),
        (
            &albert,
            &albert_id,
            layout("lora:r=2", Sharing::PerApplication, Pooling::Pooler),
            "layout.sharing",
            "--sharing shared",
        ),
    ];
    for (bb, id, l, field, why) in cases {
        let b = bundle_of(bb, id, l, tmp.path());
        let e = peft::export(&b, bb, "base").unwrap_err().to_string();
        assert!(e.contains(&format!("`{field}`")) && e.contains(why), "{e}");
    }
    // A shared LoRA on BERT maps exactly: the one set goes to every layer.
    let b = bundle_of(
        &bert,
        &bert_id,
        layout("lora:r=2", Sharing::Shared, Pooling::Pooler),
        tmp.path(),
    );
    let files = peft::export(&b, &bert, "base").unwrap();
    let w = &files.tensors[0].1;
    let a0 = &w["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"];
    let a2 = &w["base_model.model.bert.encoder.layer.2.attention.self.query.lora_A.weight"];
    assert_eq!(tensor_diff(a0, a2), 0.0);
}
