//! Helpers of the interop tests: fixture paths, the fixtures' cases, our logits for a case.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adalbert_model::interop::Imported;
use adalbert_model::{Backbone, BackboneId, Ctx, TaskModel};
use candle_core::{Device, Tensor};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The cases of `interop/<file>`: fixture name -> backbone, inputs and the library's logits.
pub fn cases(file: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("interop").join(file)).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

pub fn backbone(name: &str) -> (Backbone, BackboneId) {
    let dir = fixtures().join(name);
    let (bb, ck) = Backbone::from_dir(&dir).unwrap();
    let id = BackboneId::of_checkpoint(&ck, &dir).unwrap();
    (bb, id)
}

fn ids(case: &Value, key: &str) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(case[key].clone()).unwrap();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

/// Our logits for the case's inputs with `imported` on `bb`.
pub fn logits(bb: &Backbone, imported: &Imported, case: &Value) -> Vec<Vec<f32>> {
    let layout = &imported.meta.layout;
    let params =
        adalbert_model::TaskParams::from_tensors(&bb.config, layout, &imported.tensors).unwrap();
    let model = TaskModel {
        backbone: bb,
        task: &params,
        layout,
    };
    model
        .logits_from_ids(
            &ids(case, "input_ids"),
            &ids(case, "token_type_ids"),
            &ids(case, "attention_mask"),
            &Ctx::eval(),
        )
        .unwrap()
        .to_vec2()
        .unwrap()
}

pub fn theirs(case: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(case["logits"].clone()).unwrap()
}

pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

pub fn tensor_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A copy of the fixture adapter directory `name` with `edit` applied to its JSON file `file`.
pub fn edited(name: &str, file: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("interop").join(name);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    let p = tmp.path().join(file);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
    tmp
}

pub fn key_set(m: &HashMap<String, Tensor>) -> std::collections::BTreeSet<String> {
    m.keys().cloned().collect()
}
