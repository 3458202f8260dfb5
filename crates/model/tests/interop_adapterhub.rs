//! AdapterHub bottleneck adapters and heads made by the real `adapters` package (fixtures:
//! tools/interop/make_adapterhub_fixture.py) imported as bundles give its logits, export back
//! to the same tensors and settings, and what cannot be mapped exactly is refused by name.

mod interop_common;

use std::path::Path;

use adalbert_model::bundle::load_tensors;
use adalbert_model::interop::{adapterhub as ah, Imported};
use adalbert_model::{AdapterSpec, Backbone, BackboneId, Pooling, Sharing, TaskBundle, TaskLayout};
use interop_common::{backbone, fixtures, key_set, logits, max_diff, tensor_diff, theirs};
use serde_json::Value;

fn cases() -> serde_json::Map<String, Value> {
    interop_common::cases("adapterhub.json")
}

fn import_case(name: &str, case: &Value) -> (Backbone, Imported) {
    let (bb, id) = backbone(case["backbone"].as_str().unwrap());
    let dir = fixtures().join("interop").join(name);
    let imported = ah::import(&dir, &bb, &id, None, "folder".into(), None).unwrap();
    (bb, imported)
}

#[test]
fn imported_adapterhub_adapters_give_its_logits() {
    for (name, case) in cases() {
        let (bb, imported) = import_case(&name, &case);
        let d = max_diff(&logits(&bb, &imported, &case), &theirs(&case));
        eprintln!("{name}: max |logit diff| vs adapters = {d:e}");
        assert!(d < 1e-4, "{name}: logits differ from AdapterHub's by {d}");
    }
}

#[test]
fn import_maps_kinds_heads_sharing_and_scaling() {
    let cases = cases();
    let (_, bert) = import_case("ah_bert_double", &cases["ah_bert_double"]);
    let l = &bert.meta.layout;
    assert_eq!(l.adapter.unwrap().to_string(), "houlsby:8,act=relu");
    assert_eq!(l.sharing, Sharing::PerApplication);
    assert_eq!(
        (l.pooling, l.pooler, l.layer_norms),
        (Pooling::Pooler, false, false)
    );
    assert_eq!(bert.meta.task, "ah_bert_double");
    assert_eq!(bert.meta.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    let (_, albert) = import_case("ah_albert_par", &cases["ah_albert_par"]);
    let l = &albert.meta.layout;
    assert_eq!(l.adapter.unwrap().to_string(), "parallel:4,act=gelu");
    // ALBERT's one stored layer carries one adapter: adalbert's shared layout.
    assert_eq!(l.sharing, Sharing::Shared);
    // The 2-layer tanh head on [CLS] is a pooler copy + classifier; 1 output is regression.
    assert_eq!(
        (l.pooling, l.pooler, l.num_labels),
        (Pooling::Pooler, true, 1)
    );
    assert!(albert.meta.labels.is_empty());
    // scaling 2.0 is folded into the up-projection.
    let (t, _) = load_tensors(
        &fixtures()
            .join("interop/ah_albert_par")
            .join(ah::WEIGHTS_FILE),
    )
    .unwrap();
    let key = "albert.encoder.albert_layer_groups.0.albert_layers.0.output_adapters.adapters.\
               ah_albert_par.adapter_up.weight";
    let ours = &albert.tensors["task.layers.0.parallel_adapter.up.weight"];
    assert!(tensor_diff(&(&t[key] * 2.0).unwrap(), ours) < 1e-7);
}

/// Import, save, load, export: the same tensors (the up-projection with scaling folded in),
/// names and settings.
#[test]
fn export_of_an_imported_adapter_gives_the_fixture_back() {
    for (name, case) in cases() {
        let (bb, imported) = import_case(&name, &case);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.bundle.safetensors");
        imported.save(&path).unwrap();
        let bundle = TaskBundle::load(&path).unwrap();
        let out = tmp.path().join("out");
        ah::export(&bundle, &bb, "base")
            .unwrap()
            .write(&out)
            .unwrap();
        let fixture = fixtures().join("interop").join(&name);
        let read = |p: &Path, f: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p.join(f)).unwrap()).unwrap()
        };
        let (ca, cb) = (read(&out, ah::CONFIG_FILE), read(&fixture, ah::CONFIG_FILE));
        let scaling = cb["config"]["scaling"].as_f64().unwrap();
        assert_eq!(ca["config"]["scaling"], 1.0);
        for f in ["name", "model_type", "hidden_size"] {
            assert_eq!(ca[f], cb[f], "{name}: {f}");
        }
        for f in [
            "mh_adapter",
            "output_adapter",
            "is_parallel",
            "reduction_factor",
            "non_linearity",
            "original_ln_before",
            "original_ln_after",
            "ln_before",
            "ln_after",
            "use_gating",
            "residual_before_ln",
        ] {
            assert_eq!(ca["config"][f], cb["config"][f], "{name}: config.{f}");
        }
        let (ha, hb) = (
            read(&out, ah::HEAD_CONFIG_FILE),
            read(&fixture, ah::HEAD_CONFIG_FILE),
        );
        for f in [
            "head_type",
            "num_labels",
            "layers",
            "use_pooler",
            "activation_function",
        ] {
            assert_eq!(ha["config"][f], hb["config"][f], "{name}: head config.{f}");
        }
        for (file, scaled) in [(ah::WEIGHTS_FILE, true), (ah::HEAD_WEIGHTS_FILE, false)] {
            let (ours, _) = load_tensors(&out.join(file)).unwrap();
            let (theirs, _) = load_tensors(&fixture.join(file)).unwrap();
            assert_eq!(key_set(&ours), key_set(&theirs), "{name}: {file}");
            for (k, t) in &theirs {
                let s = if scaled && k.contains("adapter_up") {
                    scaling
                } else {
                    1.0
                };
                let d = tensor_diff(&(t * s).unwrap(), &ours[k]);
                assert!(d < 1e-7, "{name}: {k} differs by {d}");
            }
        }
    }
}

fn import_err(dir: &Path, backbone_name: &str) -> String {
    let (bb, id) = backbone(backbone_name);
    ah::import(dir, &bb, &id, None, "f".into(), None)
        .unwrap_err()
        .to_string()
}

#[test]
fn unsupported_adapterhub_settings_are_refused_by_field() {
    let adapter: Vec<(&str, Value, &str)> = vec![
        ("original_ln_before", true.into(), "seq_bn / Pfeiffer"),
        ("original_ln_after", false.into(), "LayerNorm after"),
        ("ln_after", true.into(), "new LayerNorm"),
        ("ln_before", true.into(), "new LayerNorm"),
        ("use_gating", true.into(), "sigmoid"),
        ("phm_layer", true.into(), "hypercomplex"),
        ("non_linearity", "swish".into(), "relu, gelu or gelu_new"),
        ("leave_out", serde_json::json!([0]), "some layers"),
        (
            "output_adapter",
            false.into(),
            "mh_adapter true, output_adapter false",
        ),
        ("scaling", "learned".into(), "learned scaling"),
        (
            "architecture",
            "prefix_tuning".into(),
            "bottleneck adapters only",
        ),
        ("inv_adapter", "nice".into(), "invertible"),
    ];
    for (field, value, why) in adapter {
        let dir = interop_common::edited("ah_bert_double", ah::CONFIG_FILE, |v| {
            v["config"][field] = value.clone()
        });
        let e = import_err(dir.path(), "bert");
        assert!(e.contains(&format!("`config.{field}`")), "{field}: {e}");
        assert!(e.contains(why), "{field}: {e}");
        assert!(e.contains("adapter_config.json"), "{field}: {e}");
    }
    let head: Vec<(&str, Value, &str)> = vec![
        ("head_type", "tagging".into(), "classification"),
        ("layers", 3.into(), "one linear layer"),
        ("activation_function", "relu".into(), "tanh"),
    ];
    for (field, value, why) in head {
        let dir = interop_common::edited("ah_albert_par", ah::HEAD_CONFIG_FILE, |v| {
            v["config"][field] = value.clone()
        });
        let e = import_err(dir.path(), "albert_shared");
        assert!(
            e.contains(&format!("`config.{field}`")) && e.contains(why),
            "{field}: {e}"
        );
        assert!(e.contains("head_config.json"), "{field}: {e}");
    }
}

#[test]
fn an_adapter_for_another_base_model_is_refused() {
    let dir = fixtures().join("interop/ah_bert_double");
    let e = import_err(&dir, "albert_shared");
    assert!(
        e.contains("`model_type`") && e.contains("another architecture"),
        "{e}"
    );
    // A 2-layer BERT: the adapter's third layer is not a module there.
    let e = import_err(&dir, "bert_noprefix_relu");
    assert!(e.contains("bert.encoder.layer.2"), "{e}");
    let d = interop_common::edited("ah_bert_double", ah::CONFIG_FILE, |v| {
        v["hidden_size"] = 64.into()
    });
    let e = import_err(d.path(), "bert");
    assert!(
        e.contains("`hidden_size`") && e.contains("another base model"),
        "{e}"
    );
}

/// A bundle of `layout` on `bb`, saved and loaded (initial tensors: the export only maps).
fn bundle_of(bb: &Backbone, id: &BackboneId, layout: TaskLayout, dir: &Path) -> TaskBundle {
    let tensors = layout.init_tensors(bb, 7).unwrap();
    let mut meta = import_case("ah_bert_double", &cases()["ah_bert_double"])
        .1
        .meta;
    meta.layout = layout;
    meta.backbone_sha256 = id.sha256.clone();
    let path = dir.join("x.bundle.safetensors");
    TaskBundle::save(&meta, &tensors, &path).unwrap();
    TaskBundle::load(&path).unwrap()
}

#[test]
fn bundles_adapterhub_cannot_express_are_refused_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = |spec: &str, sharing, layer_norms, pooling| TaskLayout {
        adapter: Some(AdapterSpec::parse(spec).unwrap()),
        sharing,
        layer_norms,
        pooler: false,
        num_labels: 3,
        pooling,
    };
    let (bert, bert_id) = backbone("bert");
    let (albert, albert_id) = backbone("albert_shared");
    use Sharing::{PerApplication as Per, Shared};
    let cases = [
        (
            &bert,
            &bert_id,
            layout("houlsby:8", Per, true, Pooling::Pooler),
            "layout.layer_norms",
            "frozen",
        ),
        (
            &bert,
            &bert_id,
            layout("houlsby:8", Per, false, Pooling::Mean),
            "layout.pooling",
            "mean",
        ),
        (
            &bert,
            &bert_id,
            layout("lora:r=2", Per, false, Pooling::Pooler),
            "layout.adapter",
            "--format peft",
        ),
        (
            &bert,
            &bert_id,
            layout("pfeiffer:5", Per, false, Pooling::Pooler),
            "layout.adapter",
            "reduction factor",
        ),
        (
            &albert,
            &albert_id,
            layout("parallel:4", Per, false, Pooling::Cls),
            "layout.sharing",
            "--sharing shared",
        ),
    ];
    for (bb, id, l, field, why) in cases {
        let b = bundle_of(bb, id, l, tmp.path());
        let e = ah::export(&b, bb, "base").unwrap_err().to_string();
        assert!(e.contains(&format!("`{field}`")) && e.contains(why), "{e}");
    }
    // A pfeiffer bundle on the [CLS] state exports as an explicit BnConfig, not seq_bn.
    let b = bundle_of(
        &albert,
        &albert_id,
        layout("pfeiffer:4", Shared, false, Pooling::Cls),
        tmp.path(),
    );
    let files = ah::export(&b, &albert, "base").unwrap();
    let cfg = &files.json[0].1["config"];
    assert_eq!(cfg["original_ln_before"], false);
    assert_eq!(
        (cfg["mh_adapter"].clone(), cfg["output_adapter"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(cfg["reduction_factor"], 8);
    assert_eq!(files.json[1].1["config"]["use_pooler"], false);
}
