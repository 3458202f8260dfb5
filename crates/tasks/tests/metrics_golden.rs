//! Metrics against scikit-learn / SciPy values written by tools/metrics/make_fixtures.py.

use std::path::Path;

use adalbert_tasks::metrics::{accuracy, f1_positive, matthews_corrcoef, pearson, spearman};
use adalbert_tasks::{evaluate, metric_value, task_spec, Label, Metric};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics_golden.json");
    let text = std::fs::read_to_string(&path).expect("golden fixture present");
    serde_json::from_str(&text).expect("golden fixture is JSON")
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `expected` null stands for NaN.
fn assert_close(case: &str, metric: &str, got: f64, expected: &Value) {
    match expected.as_f64() {
        None => assert!(got.is_nan(), "{case} {metric}: got {got}, expected NaN"),
        Some(want) => assert!(
            (got - want).abs() <= TOLERANCE,
            "{case} {metric}: got {got}, expected {want}"
        ),
    }
}

#[test]
fn classification_metrics_match_sklearn() {
    let fixture = fixture();
    let cases = fixture["classification"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (p, g) = (ints(&case["preds"]), ints(&case["golds"]));
        assert_close(
            name,
            "accuracy",
            accuracy(&p, &g).unwrap(),
            &case["accuracy"],
        );
        assert_close(
            name,
            "mcc",
            matthews_corrcoef(&p, &g).unwrap(),
            &case["mcc"],
        );
        if let Some(f1) = case.get("f1") {
            assert_close(name, "f1", f1_positive(&p, &g).unwrap(), f1);
        }
    }
}

#[test]
fn correlation_metrics_match_scipy() {
    let fixture = fixture();
    let cases = fixture["regression"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (p, g) = (floats(&case["preds"]), floats(&case["golds"]));
        assert_close(name, "pearson", pearson(&p, &g).unwrap(), &case["pearson"]);
        assert_close(
            name,
            "spearmanr",
            spearman(&p, &g).unwrap(),
            &case["spearmanr"],
        );
    }
}

#[test]
fn evaluate_reports_official_names_and_combined_score() {
    let fixture = fixture();
    let case = &fixture["classification"][0];
    let labels = |v: &Value| ints(v).into_iter().map(Label::Class).collect::<Vec<_>>();
    let (p, g) = (labels(&case["preds"]), labels(&case["golds"]));

    let mrpc = evaluate(&task_spec("mrpc").unwrap(), &p, &g).unwrap();
    let names: Vec<&str> = mrpc.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["accuracy", "f1", "combined_score"]);
    let (acc, f1) = (
        case["accuracy"].as_f64().unwrap(),
        case["f1"].as_f64().unwrap(),
    );
    assert_close("mrpc", "accuracy", mrpc[0].1, &case["accuracy"]);
    assert!((metric_value(&mrpc, Metric::CombinedScore).unwrap() - (acc + f1) / 2.0).abs() < 1e-12);

    let cola = evaluate(&task_spec("cola").unwrap(), &p, &g).unwrap();
    assert_eq!(
        cola.len(),
        1,
        "single-metric tasks report no combined score"
    );
    assert_eq!(cola[0].0, "matthews_correlation");
    assert_close("cola", "mcc", cola[0].1, &case["mcc"]);

    // STS-B through f32 labels: the fixture values are f32-exact, so nothing changes.
    let case = &fixture["regression"][1];
    let scores = |v: &Value| {
        floats(v)
            .into_iter()
            .map(|x| Label::Score(x as f32))
            .collect::<Vec<_>>()
    };
    let stsb = evaluate(
        &task_spec("sts-b").unwrap(),
        &scores(&case["preds"]),
        &scores(&case["golds"]),
    )
    .unwrap();
    assert_eq!(stsb[0].0, "pearson");
    assert_eq!(stsb[1].0, "spearmanr");
    assert_close("stsb", "pearson", stsb[0].1, &case["pearson"]);
    assert_close("stsb", "spearmanr", stsb[1].1, &case["spearmanr"]);
    let mean = (case["pearson"].as_f64().unwrap() + case["spearmanr"].as_f64().unwrap()) / 2.0;
    assert!((stsb[2].1 - mean).abs() < 1e-9);
}

#[test]
fn evaluate_rejects_inputs_that_do_not_fit_the_task() {
    let sst2 = task_spec("sst2").unwrap();
    let gold = [Label::Class(0), Label::Class(1)];
    let err = evaluate(&sst2, &[Label::Class(0)], &gold)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sst2") && err.contains("1 predictions but 2 gold labels"),
        "{err}"
    );
    let err = evaluate(&sst2, &[Label::Class(2), Label::Class(0)], &gold)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("prediction #0") && err.contains("below 2"),
        "{err}"
    );
    let err = evaluate(
        &sst2,
        &[Label::Class(0), Label::Class(1)],
        &[Label::None, Label::None],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gold label #0 is None"), "{err}");
    let stsb = task_spec("stsb").unwrap();
    assert!(evaluate(&stsb, &gold, &gold).is_err());
    assert!(evaluate(&stsb, &[], &[]).is_err());
}
