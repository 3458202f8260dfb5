//! GLUE readers against small fixture files in the GLUE layouts (tests/fixtures/glue), written
//! for these tests: our own sentences in the real columns, ids and labels, no dataset rows.

use std::path::{Path, PathBuf};

use adalbert_tasks::{load_dataset, read_glue, read_glue_skipping, Error, GlueTask, Label, Split};

fn glue(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue")
        .join(folder)
}

fn bad(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue-bad")
        .join(folder)
}

fn labels(examples: &[adalbert_tasks::Example]) -> Vec<Label> {
    examples.iter().map(|e| e.label).collect()
}

#[test]
fn cola_has_no_header_and_keeps_quotes() {
    let train = read_glue(GlueTask::Cola, &glue("CoLA"), Split::Train).unwrap();
    assert_eq!(train.len(), 3);
    assert_eq!(
        labels(&train),
        [Label::Class(1), Label::Class(0), Label::Class(1)]
    );
    // An unbalanced quote must not swallow the following lines.
    assert_eq!(train[1].text_a, "He said \"that was a nice idea.");
    assert_eq!(
        train[2].text_a,
        "The more you read, the \"smarter\" you get."
    );
    assert_eq!(train[0].id, "0");
    assert_eq!(train[0].text_b, None);
    let test = read_glue(GlueTask::Cola, &glue("CoLA"), Split::Test).unwrap();
    assert_eq!(test[0].id, "0");
    assert_eq!(test[0].text_a, "Ann walked past the \"garden\".");
    assert_eq!(test[0].label, Label::None);
}

#[test]
fn single_sentence_and_pair_layouts() {
    let sst = read_glue(GlueTask::Sst2, &glue("SST-2"), Split::Train).unwrap();
    assert_eq!(
        labels(&sst),
        [Label::Class(0), Label::Class(0), Label::Class(1)]
    );
    assert_eq!(sst[2].text_a, "the \"finest\" singers ");
    let sst_test = read_glue(GlueTask::Sst2, &glue("SST-2"), Split::Test).unwrap();
    assert_eq!(sst_test.len(), 3);
    assert_eq!(sst_test[2].id, "2");

    let mrpc = read_glue(GlueTask::Mrpc, &glue("MRPC"), Split::Train).unwrap();
    assert_eq!(labels(&mrpc), [Label::Class(1), Label::Class(0)]);
    assert!(mrpc[0]
        .text_a
        .starts_with("Tomas told his sister , whom he called \" the"));
    assert!(mrpc[0]
        .text_b
        .as_deref()
        .unwrap()
        .starts_with("Calling her only"));
    let mrpc_test = read_glue(GlueTask::Mrpc, &glue("MRPC"), Split::Test).unwrap();
    assert_eq!(mrpc_test[0].id, "0");
    assert!(mrpc_test[0]
        .text_b
        .as_deref()
        .unwrap()
        .starts_with("Current head"));

    let qqp = read_glue(GlueTask::Qqp, &glue("QQP"), Split::Train).unwrap();
    assert_eq!(qqp[1].id, "402555");
    assert_eq!(qqp[1].label, Label::Class(1));
    assert_eq!(
        read_glue(GlueTask::Qqp, &glue("QQP"), Split::Test).unwrap()[1]
            .text_b
            .as_deref(),
        Some("How much does a new bicycle cost?")
    );

    let qnli = read_glue(GlueTask::Qnli, &glue("QNLI"), Split::Train).unwrap();
    assert_eq!(labels(&qnli), [Label::Class(1), Label::Class(0)]);
    assert_eq!(qnli[0].text_a, "When did the town library first open?");

    let rte = read_glue(GlueTask::Rte, &glue("RTE"), Split::Train).unwrap();
    assert_eq!(labels(&rte), [Label::Class(1), Label::Class(0)]);
    let rte_test = read_glue(GlueTask::Rte, &glue("RTE"), Split::Test).unwrap();
    assert_eq!(
        rte_test[1].text_b.as_deref(),
        Some("Local police say \"visitors\" are waiting.")
    );

    // WNLI's file label 1 means entailment, which is class 1 in the HF order.
    let wnli = read_glue(GlueTask::Wnli, &glue("WNLI"), Split::Train).unwrap();
    assert_eq!(
        labels(&wnli),
        [
            Label::Class(1),
            Label::Class(1),
            Label::Class(1),
            Label::Class(0)
        ]
    );
}

#[test]
fn stsb_scores_are_floats() {
    let train = read_glue(GlueTask::Stsb, &glue("STS-B"), Split::Train).unwrap();
    assert_eq!(
        labels(&train),
        [Label::Score(5.0), Label::Score(3.8), Label::Score(0.0)]
    );
    assert_eq!(
        train[1].text_b.as_deref(),
        Some("A woman is playing a \"violin\".")
    );
    let test = read_glue(GlueTask::Stsb, &glue("STS-B"), Split::Test).unwrap();
    assert_eq!(test.len(), 2);
    assert_eq!(test[1].id, "1");
    assert_eq!(test[1].label, Label::None);
}

#[test]
fn mnli_matched_and_mismatched() {
    let train = read_glue(GlueTask::Mnli, &glue("MNLI"), Split::Train).unwrap();
    // HF order: entailment 0, neutral 1, contradiction 2.
    assert_eq!(
        labels(&train),
        [
            Label::Class(1),
            Label::Class(0),
            Label::Class(0),
            Label::Class(2)
        ]
    );
    assert_eq!(
        train[0].text_b.as_deref(),
        Some("Price and place are what make the small shop work. ")
    );
    // Dev files carry five annotator labels; gold_label (the last column) is the label.
    let dev_m = read_glue(GlueTask::Mnli, &glue("MNLI"), Split::Dev).unwrap();
    assert_eq!(labels(&dev_m), [Label::Class(1), Label::Class(2)]);
    let dev_mm = read_glue(GlueTask::MnliMismatched, &glue("MNLI"), Split::Dev).unwrap();
    assert_eq!(dev_mm.len(), 1);
    assert!(dev_mm[0].text_a.starts_with("Your gift"));
    let test_m = read_glue(GlueTask::Mnli, &glue("MNLI"), Split::Test).unwrap();
    assert_eq!(test_m.len(), 2);
    assert_eq!(
        test_m[1].text_b.as_deref(),
        Some("Sales of \"$2.1 million\" are expected.")
    );
    let test_mm = read_glue(GlueTask::MnliMismatched, &glue("MNLI"), Split::Test).unwrap();
    assert_eq!(test_mm[0].text_b.as_deref(), Some("So what is your plan?"));
    // Same training data for both names.
    assert_eq!(
        read_glue(GlueTask::MnliMismatched, &glue("MNLI"), Split::Train).unwrap(),
        train
    );
}

#[test]
fn load_dataset_by_name_accepts_task_folder_or_glue_root() {
    let by_folder = load_dataset("SST-2", Some(&glue("SST-2")), Split::Dev, 0).unwrap();
    let root = glue("");
    let by_root = load_dataset("sst-2", Some(&root), Split::Dev, 0).unwrap();
    assert_eq!(by_folder.examples, by_root.examples);
    assert_eq!(by_folder.examples.len(), 2);
    assert_eq!(by_folder.seed, None);
    assert!(by_root.sources[0].ends_with("SST-2/dev.tsv"));
    let ax = load_dataset("ax", Some(&root), Split::Test, 0).unwrap();
    assert_eq!(ax.examples.len(), 2);
    assert!(matches!(
        load_dataset("ax", Some(&root), Split::Train, 0),
        Err(Error::MissingGlueFile { .. })
    ));
}

fn message(result: Result<Vec<adalbert_tasks::Example>, Error>) -> String {
    result.expect_err("expected an error").to_string()
}

#[test]
fn malformed_rows_name_file_and_line() {
    let m = message(read_glue(GlueTask::Sst2, &bad("SST-2"), Split::Train));
    assert!(m.contains("SST-2/train.tsv:3:"), "{m}");
    assert!(
        m.contains("found 3 tab-separated fields, expected 2"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Rte, &bad("RTE"), Split::Train));
    assert!(m.contains("RTE/train.tsv:2:"), "{m}");
    assert!(
        m.contains("label `maybe` is not one of entailment, not_entailment"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Stsb, &bad("STS-B"), Split::Train));
    assert!(
        m.contains("STS-B/train.tsv:2:") && m.contains("`6.5`"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Cola, &bad("CoLA"), Split::Train));
    assert!(
        m.contains("CoLA/train.tsv:2:") && m.contains("not valid UTF-8"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Mnli, &bad("MNLI"), Split::Dev));
    assert!(
        m.contains("dev_matched.tsv:2:") && m.contains("label `-`"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Qnli, &bad("QNLI"), Split::Train));
    assert!(
        m.contains("QNLI/train.tsv:1:") && m.contains("no `sentence` column"),
        "{m}"
    );

    let m = message(read_glue(GlueTask::Sst2, &bad("nowhere"), Split::Dev));
    assert!(m.contains("nowhere/dev.tsv: not found"), "{m}");
}

#[test]
fn skipping_reader_reports_bad_rows_and_keeps_good_ones() {
    assert!(read_glue(GlueTask::Qqp, &bad("QQP"), Split::Train).is_err());
    let (examples, skipped) = read_glue_skipping(GlueTask::Qqp, &bad("QQP"), Split::Train).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[1].id, "3");
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].to_string().contains("QQP/train.tsv:3:"));
}
