//! GLUE submission files: names, header, label spellings, clipping, atomic writes.

use std::path::Path;

use adalbert_tasks::{read_glue, task_spec, write_submission, Example, GlueTask, Label, Split};

fn glue(folder: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue")
        .join(folder)
}

#[test]
fn files_are_named_and_spelled_as_glue_expects() {
    let out = tempfile::tempdir().unwrap();

    let rte_test = read_glue(GlueTask::Rte, &glue("RTE"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("rte").unwrap(),
        &rte_test,
        &[Label::Class(1), Label::Class(0)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "RTE.tsv");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "index\tprediction\n0\tnot_entailment\n1\tentailment\n"
    );

    let mnli_test = read_glue(GlueTask::Mnli, &glue("MNLI"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("mnli").unwrap(),
        &mnli_test,
        &[Label::Class(2), Label::Class(1)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "MNLI-m.tsv");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "index\tprediction\n0\tcontradiction\n1\tneutral\n"
    );

    let mm_test = read_glue(GlueTask::MnliMismatched, &glue("MNLI"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("mnli-mm").unwrap(),
        &mm_test,
        &[Label::Class(0)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "MNLI-mm.tsv");

    let sst_test = read_glue(GlueTask::Sst2, &glue("SST-2"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("SST-2").unwrap(),
        &sst_test,
        &[Label::Class(1), Label::Class(0), Label::Class(1)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "SST-2.tsv");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "index\tprediction\n0\t1\n1\t0\n2\t1\n"
    );

    let ax_test = read_glue(GlueTask::Ax, &glue("diagnostic"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("ax").unwrap(),
        &ax_test,
        &[Label::Class(0), Label::Class(2)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "AX.tsv");

    // No temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "AX.tsv",
            "MNLI-m.tsv",
            "MNLI-mm.tsv",
            "RTE.tsv",
            "SST-2.tsv"
        ]
    );
}

#[test]
fn stsb_scores_are_clipped_to_0_5() {
    let out = tempfile::tempdir().unwrap();
    let test = read_glue(GlueTask::Stsb, &glue("STS-B"), Split::Test).unwrap();
    let path = write_submission(
        out.path(),
        &task_spec("stsb").unwrap(),
        &test,
        &[Label::Score(5.7), Label::Score(-0.25)],
    )
    .unwrap();
    assert_eq!(path.file_name().unwrap(), "STS-B.tsv");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "index\tprediction\n0\t5.000\n1\t0.000\n"
    );
}

#[test]
fn bad_predictions_are_refused_without_touching_the_file() {
    let out = tempfile::tempdir().unwrap();
    let spec = task_spec("qnli").unwrap();
    let examples = vec![Example {
        id: "0".into(),
        text_a: "q".into(),
        text_b: Some("s".into()),
        label: Label::None,
    }];
    let err = write_submission(out.path(), &spec, &examples, &[Label::Class(2)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("qnli") && err.contains("class 2"), "{err}");
    let err = write_submission(out.path(), &spec, &examples, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 examples but 0 predictions"), "{err}");
    let err = write_submission(
        out.path(),
        &task_spec("movie-polarity").unwrap(),
        &examples,
        &[Label::Class(0)],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("only GLUE tasks"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
