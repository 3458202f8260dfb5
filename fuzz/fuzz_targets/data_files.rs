//! Users' data files (`--train-file` and friends) on arbitrary bytes. The first byte picks the
//! format (CSV, TSV, JSON Lines), whether the task is a pair task, and where the label set
//! comes from (the file, `--labels neg,pos`, or `--task-type regression`); the rest is the
//! file. Beyond "no panic": a training file that fixed the task without `--labels` must then
//! load under it (every label it holds is in the set it produced), every example has
//! non-blank texts and a label the task can use, and every error names the file.

#![no_main]

use std::path::PathBuf;

use adalbert_tasks::{DataFiles, Label, Split, TaskKind, TaskType};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 3] = ["fuzz-input.csv", "fuzz-input.tsv", "fuzz-input.jsonl"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let path = PathBuf::from(FILES[usize::from(selector % 3)]);
    let pair = (selector / 3) % 2 == 1;
    let source = (selector / 6) % 3;
    let options = DataFiles {
        name: Some("fuzz".into()),
        train_file: Some(path),
        text_pair_column: pair.then(|| "text_b".to_string()),
        labels: (source == 1).then(|| vec!["neg".to_string(), "pos".to_string()]),
        task_type: (source == 2).then_some(TaskType::Regression),
        ..DataFiles::default()
    };
    let named = |e: &adalbert_tasks::Error| {
        let msg = e.to_string();
        assert!(msg.contains("fuzz-input"), "error without the path: {msg}");
    };
    let task = match options.resolve_from_bytes(file) {
        Ok(task) => task,
        Err(e) => return named(&e),
    };
    match task.parse(Split::Train, file) {
        Ok(dataset) => {
            assert!(!dataset.examples.is_empty(), "an empty dataset was accepted");
            for e in &dataset.examples {
                assert!(!e.text_a.trim().is_empty(), "blank text in {e:?}");
                assert_eq!(e.text_b.is_some(), pair, "pair-ness of {e:?}");
                assert!(e.text_b.as_ref().is_none_or(|t| !t.trim().is_empty()));
                match (&task.spec.kind, &e.label) {
                    (TaskKind::Classification { labels }, Label::Class(c)) => {
                        assert!(*c < labels.len(), "class {c} of {}", labels.len())
                    }
                    (TaskKind::Regression, Label::Score(s)) => assert!(s.is_finite()),
                    (kind, label) => panic!("label {label:?} under {kind:?}"),
                }
            }
        }
        Err(e) => {
            named(&e);
            // Only a given label set (or a forced kind) may refuse what the file itself fixed.
            assert!(source != 0, "the training file fixed the task, then failed to load: {e}");
        }
    }
});
