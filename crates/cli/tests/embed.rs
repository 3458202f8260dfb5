//! `adalbert embed` end to end on the real all-MiniLM-L6-v2: texts from standard input, vectors
//! to .npy and .jsonl, equal to sentence-transformers' (the `published` variant of
//! crates/model/tests/fixtures/st_reference.json) within 1e-5; bad --input and --output are
//! errors naming the file and line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn reference() -> (Vec<String>, Vec<Vec<f32>>) {
    let path = root().join("crates/model/tests/fixtures/st_reference.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let published = &v["variants"][0];
    assert_eq!(published["name"], "published");
    let rows = published["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    (texts, rows)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn stdin_to_npy_and_jsonl_equals_sentence_transformers() {
    let model = root().join("assets/minilm");
    assert!(
        model.join("1_Pooling/config.json").is_file(),
        "run scripts/fetch-assets (make test does this)"
    );
    let (texts, want) = reference();
    // The 137-token text (beyond the old 128 limit) and the 315-token one (cut at 256).
    let picked = [0usize, 3, 4];
    let stdin: String = picked.iter().map(|&i| format!("{}\n", texts[i])).collect();
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("v.npy");
    let jsonl = dir.path().join("v.jsonl");
    let m = model.to_str().unwrap();
    for out in [&npy, &jsonl] {
        let o = run(
            &[
                "embed",
                "--model",
                m,
                "--input",
                "-",
                "--output",
                out.to_str().unwrap(),
            ],
            stdin.as_bytes(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("text 2 was truncated to 256 tokens"), "{err}");
        assert!(!err.contains("text 1 was truncated"), "{err}");
    }
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (3, 384)"), "{header}");
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (k, &i) in picked.iter().enumerate() {
        let row = &values[k * 384..(k + 1) * 384];
        let d = max_diff(row, &want[i]);
        assert!(d < 1e-5, "npy row {k} (text {i}): {d:e}");
        assert_eq!(lines[k]["text"], texts[i].as_str());
        let j: Vec<f32> = lines[k]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(j, row, "jsonl and npy hold the same vector");
    }
}

#[test]
fn bad_input_and_output_name_the_file() {
    let model = root().join("assets/minilm");
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "fine\n\nalso fine\n").unwrap();
    let o = run(
        &["embed", "--model", m, "--input", texts.to_str().unwrap()],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("texts.txt, line 2: empty text"), "{err}");
    let o = run(&["embed", "--model", m, "--input", "-"], b"ok\n\xff\xfe\n");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("standard input, line 2: not valid UTF-8"),
        "{err}"
    );
    let out = dir.path().join("v.csv");
    let o = run(
        &[
            "embed",
            "--model",
            m,
            "--output",
            out.to_str().unwrap(),
            "hi",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("v.csv") && err.contains(".npy"), "{err}");
    assert!(!out.exists());
}
