//! A backbone is identified by its content: the same tensors saved by PyTorch (`.bin`) and by
//! safetensors hash the same (fixture: tools/parity/make_hash_fixture.py), and bundles written
//! by the previous version (format 1, which recorded the weights *file*'s sha256) still load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adalbert_model::bundle::{save_tensors, BUNDLE_FORMAT};
use adalbert_model::checkpoint::{content_sha256, sha256_file};
use adalbert_model::{BackboneId, Checkpoint, TaskBundle};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/content_hash")
        .join(file)
}

fn hash_of(file: &Path) -> String {
    Checkpoint::open(file).unwrap().content_sha256().unwrap()
}

/// The documented layout (`checkpoint::content_sha256`), computed straight from the
/// safetensors bytes with the header parsed by hand: an independent check of the loader path.
fn hash_by_hand(bytes: &[u8]) -> String {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut entries: Vec<(String, &serde_json::Value)> = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| (k.strip_prefix("albert.").unwrap_or(k).to_string(), v))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    h.update(b"adalbert-backbone-v1\n");
    for (name, info) in entries {
        let dtype = info["dtype"].as_str().unwrap().to_lowercase();
        let shape: Vec<u64> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let (s, e) = (
            info["data_offsets"][0].as_u64().unwrap() as usize,
            info["data_offsets"][1].as_u64().unwrap() as usize,
        );
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((dtype.len() as u64).to_le_bytes());
        h.update(dtype.as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            h.update(d.to_le_bytes());
        }
        h.update(&data[s..e]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_same_weights_as_bin_and_safetensors_are_one_backbone() {
    let st = fixture("model.safetensors");
    let bin = fixture("pytorch_model.bin");
    // Different files (pickle vs safetensors) ...
    assert_ne!(sha256_file(&st).unwrap(), sha256_file(&bin).unwrap());
    // ... same content: f32, f16 and i64 tensors alike.
    let h = hash_of(&st);
    assert_eq!(h, hash_of(&bin));
    assert_eq!(h, hash_by_hand(&std::fs::read(&st).unwrap()));
}

#[test]
fn any_changed_byte_dtype_or_name_changes_the_hash() {
    let st = std::fs::read(fixture("model.safetensors")).unwrap();
    let base = hash_of(&fixture("model.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("model.safetensors");
    // The last data byte belongs to the f16 tensor (the highest offsets).
    let mut changed = st.clone();
    *changed.last_mut().unwrap() ^= 0x01;
    std::fs::write(&f, &changed).unwrap();
    let flipped = hash_of(&f);
    assert_ne!(flipped, base);
    assert_eq!(flipped, hash_by_hand(&changed));

    // Same values in another dtype, or under another name, are another backbone.
    let ck = Checkpoint::open(&fixture("model.safetensors")).unwrap();
    let mut tensors = ck.tensors().clone();
    let w = tensors["encoder.dense.weight"].clone();
    tensors.insert(
        "encoder.dense.weight".into(),
        w.to_dtype(candle_core::DType::F32).unwrap(),
    );
    assert_ne!(content_sha256(&tensors).unwrap(), base);
    let mut renamed = ck.tensors().clone();
    let t = renamed.remove("encoder.dense.weight").unwrap();
    renamed.insert("encoder.dense2.weight".into(), t);
    assert_ne!(content_sha256(&renamed).unwrap(), base);
    // Insertion order does not matter.
    assert_eq!(content_sha256(ck.tensors()).unwrap(), base);
}

/// A bundle with `meta` (JSON, as a given version wrote it) and a 2-output head.
fn write_bundle(path: &Path, meta: serde_json::Value) {
    let head = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    save_tensors(
        path,
        &HashMap::from([("classifier.weight".to_string(), head)]),
        HashMap::from([("adalbert".to_string(), meta.to_string())]),
    )
    .unwrap();
}

fn meta(format: u32, backbone_sha256: &str) -> serde_json::Value {
    // Exactly the fields the previous version (format 1) wrote: no model_name or revision.
    serde_json::json!({
        "format": format, "task": "t", "labels": ["a", "b"], "mode": "head",
        "layout": {"adapter": null, "sharing": "per-application", "layer_norms": false,
                   "pooler": false, "num_labels": 2, "pooling": "mean"},
        "metrics": {"accuracy": 0.5, "mcc": 0.25}, "training": null, "seed": 1,
        "backbone_sha256": backbone_sha256, "trainable_params": 4, "tool_version": "0.1.0"
    })
}

#[test]
fn old_bundles_match_by_file_hash_new_ones_by_content() {
    let st = fixture("model.safetensors");
    let bin = fixture("pytorch_model.bin");
    let id_st = BackboneId::of_checkpoint(&Checkpoint::open(&st).unwrap(), &st).unwrap();
    let id_bin = BackboneId::of_checkpoint(&Checkpoint::open(&bin).unwrap(), &bin).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Format 1, trained on the safetensors file: loads, and is checked by the file's hash.
    let old = dir.path().join("old.bundle.safetensors");
    write_bundle(&old, meta(1, &sha256_file(&st).unwrap()));
    let b = TaskBundle::load(&old).unwrap();
    assert_eq!((b.meta.format, b.meta.model_name.clone()), (1, None));
    // Metrics under their old names are read under the current ones.
    assert_eq!(
        b.meta.metrics.keys().collect::<Vec<_>>(),
        ["accuracy", "matthews_correlation"]
    );
    b.check_backbone(&id_st).unwrap();
    // The .bin is another file: a format 1 bundle cannot tell it holds the same weights.
    assert!(b.check_backbone(&id_bin).is_err());
    // A format 1 bundle of another backbone is still refused.
    write_bundle(&old, meta(1, &"0".repeat(64)));
    let e = TaskBundle::load(&old)
        .unwrap()
        .check_backbone(&id_st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("retrain"), "{e}");

    // Format 2 records the content hash: either file of the same weights is accepted.
    let new = dir.path().join("new.bundle.safetensors");
    write_bundle(&new, meta(BUNDLE_FORMAT, &id_st.sha256));
    let b = TaskBundle::load(&new).unwrap();
    b.check_backbone(&id_st).unwrap();
    b.check_backbone(&id_bin).unwrap();
    // A format 2 bundle whose hash happens to be a file hash is not matched by file.
    write_bundle(&new, meta(BUNDLE_FORMAT, &sha256_file(&st).unwrap()));
    assert!(TaskBundle::load(&new)
        .unwrap()
        .check_backbone(&id_st)
        .is_err());
}

#[test]
fn the_name_comes_from_config_or_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("model.safetensors"), d.join("model.safetensors")).unwrap();
    let id = |d: &Path| BackboneId::of_checkpoint(&Checkpoint::open(d).unwrap(), d).unwrap();
    assert_eq!(id(d).model_name, None);
    std::fs::write(
        d.join("README.md"),
        "---\nbase_model: albert/albert-base-v2\n---\n",
    )
    .unwrap();
    assert_eq!(id(d).model_name.as_deref(), Some("albert/albert-base-v2"));
    // config.json's `_name_or_path` wins when it is a hub id; a local path is not a name.
    std::fs::write(d.join("config.json"), r#"{"_name_or_path": "/tmp/x"}"#).unwrap();
    assert_eq!(id(d).model_name.as_deref(), Some("albert/albert-base-v2"));
    std::fs::write(
        d.join("config.json"),
        r#"{"_name_or_path": "albert-base-v2"}"#,
    )
    .unwrap();
    assert_eq!(id(d).model_name.as_deref(), Some("albert-base-v2"));
}
