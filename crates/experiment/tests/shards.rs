//! Shards of the tiny study (`adalbert_experiment::testing`): the plan they split, a sharded
//! run whose report equals one process's, results that do not depend on the thread count,
//! the merge that names what is missing, a re-run shard, and the output folders refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use adalbert_experiment::error::chain;
use adalbert_experiment::report::compare::differences;
use adalbert_experiment::{list_items, run, testing, Mode, RunOptions, RunOutcome, Shard};
use serde_json::Value;

fn opts(exp: &Path, out: &Path, mode: Mode) -> RunOptions {
    RunOptions {
        experiment: exp.to_path_buf(),
        out: Some(out.to_path_buf()),
        resume: false,
        mode,
    }
}

fn shard(s: &str) -> Mode {
    Mode::Shard(s.parse::<Shard>().unwrap())
}

/// Runs `mode` on a rayon pool of `threads` threads (what `RAYON_NUM_THREADS` sets for a
/// process); the kernels split their work by `rayon::current_num_threads()`.
fn run_on(threads: usize, o: &RunOptions) -> adalbert_experiment::Result<RunOutcome> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| run(o))
}

fn report_dir(outcome: RunOutcome) -> PathBuf {
    match outcome {
        RunOutcome::Report { report, .. } => report.parent().unwrap().to_path_buf(),
        other => panic!("expected a report: {other:?}"),
    }
}

/// Fields that hold wall-clock measurements or paths of the run folder.
const NOT_RESULTS: [&str; 5] = [
    "train_seconds",
    "examples_per_second",
    "seconds",
    "bundle",
    "shared_eval",
];

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in NOT_RESULTS {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// The results in a cache folder: records of training and simulation by file name (their
/// keys are their inputs), compress rows and evaluations as sorted lists (their keys include
/// the bundle file's sha256, and a bundle's metadata records its training time).
fn results(cache: &Path) -> (BTreeMap<String, Value>, Vec<String>) {
    let mut by_name = BTreeMap::new();
    let mut rows = Vec::new();
    for e in std::fs::read_dir(cache).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut value = v["value"].take();
        strip(&mut value);
        if name.starts_with("compress-") || name.starts_with("eval-") {
            rows.push(format!("{}: {value}", &name[..4]));
        } else {
            by_name.insert(name, value);
        }
    }
    rows.sort();
    (by_name, rows)
}

/// A bundle's tensors (header entries and data bytes) and its metadata without timings.
fn bundle_contents(path: &Path) -> (Value, Vec<u8>, Value) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header
        .as_object_mut()
        .unwrap()
        .remove("__metadata__")
        .unwrap();
    let mut meta: Value = serde_json::from_str(meta["adalbert"].as_str().unwrap()).unwrap();
    strip(&mut meta);
    (header, bytes[8 + n..].to_vec(), meta)
}

fn bundles(out: &Path) -> BTreeMap<String, (Value, Vec<u8>, Value)> {
    std::fs::read_dir(out.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, bundle_contents(&p))
        })
        .collect()
}

/// The tiny study in a new folder, run in one process into `<folder>/single`: the folder, the
/// experiment file and the report folder.
fn single_run() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exp = testing::write_tiny_study(dir.path()).unwrap();
    let single = dir.path().join("single");
    let report = report_dir(run(&opts(&exp, &single, Mode::All)).unwrap());
    (dir, exp, report)
}

#[test]
fn a_sharded_run_gives_the_report_of_one_process_whatever_the_thread_count() {
    let (dir, exp, single_report) = single_run();
    let (single, sharded) = (dir.path().join("single"), dir.path().join("sharded"));

    // Three shards, each on another thread count (one of them more threads than cores).
    for (s, threads) in [("1/3", 1), ("2/3", 2)] {
        match run_on(threads, &opts(&exp, &sharded, shard(s))).unwrap() {
            RunOutcome::Shard {
                items, computed, ..
            } => assert_eq!(items, computed),
            other => panic!("{other:?}"),
        }
    }
    // Before the last shard, the merge names what is missing and where.
    let e = chain(&run(&opts(&exp, &sharded, Mode::Merge)).unwrap_err());
    assert!(e.contains("have no result in"), "{e}");
    assert!(
        e.contains("shard 3/3: ") && !e.contains("shard 1/3: "),
        "{e}"
    );
    assert!(e.contains("--shard I/3"), "{e}");
    assert!(!sharded.join("report").exists());
    run_on(4, &opts(&exp, &sharded, shard("3/3"))).unwrap();
    let sharded_report = report_dir(run(&opts(&exp, &sharded, Mode::Merge)).unwrap());

    // The reports agree outside the timing columns: every CSV cell, report.md, every figure.
    assert_eq!(
        differences(&single_report, &sharded_report).unwrap(),
        Vec::<String>::new()
    );
    // So does every result: the cache records (timings and paths aside) and the bundles'
    // tensors, bit for bit.
    let (a, b) = (
        results(&single.join("cache")),
        results(&sharded.join("cache")),
    );
    assert_eq!(
        a.0.len(),
        5 + 2,
        "5 training items, 1 simulation, 1 design space"
    );
    assert_eq!(a.1.len(), 2 * 12, "12 compress rows and their evaluations");
    assert_eq!(a, b);
    let (ba, bb) = (bundles(&single), bundles(&sharded));
    assert_eq!(ba.len(), 5);
    assert_eq!(ba.keys().collect::<Vec<_>>(), bb.keys().collect::<Vec<_>>());
    for (name, (header, data, meta)) in &ba {
        let (h, d, m) = &bb[name];
        assert_eq!(header, h, "{name}");
        assert!(data == d, "{name}: tensor bytes differ");
        assert_eq!(meta, m, "{name}");
    }
    // A plain resumed run finds everything and writes the same report again.
    let again = report_dir(
        run(&RunOptions {
            resume: true,
            ..opts(&exp, &sharded, Mode::All)
        })
        .unwrap(),
    );
    assert_eq!(
        differences(&again, &single_report).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_rerun_shard_computes_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let exp = testing::write_tiny_study(dir.path()).unwrap();
    let out = dir.path().join("out");
    for s in ["1/2", "2/2"] {
        run(&opts(&exp, &out, shard(s))).unwrap();
    }
    // Lose one compress record (a shard killed before writing it).
    let victim = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("compress-")
        })
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let e = chain(&run(&opts(&exp, &out, Mode::Merge)).unwrap_err());
    assert!(e.contains("1 of 19 items of experiment `tiny`"), "{e}");
    let which = if e.contains("shard 1/2: 1 item(s) missing") {
        "1/2"
    } else {
        assert!(e.contains("shard 2/2: 1 item(s) missing"), "{e}");
        "2/2"
    };
    assert!(e.contains("compress model / movie-"), "{e}");
    match run(&opts(&exp, &out, shard(which))).unwrap() {
        RunOutcome::Shard {
            items, computed, ..
        } => {
            assert_eq!(computed, 1, "only the lost item is computed again");
            assert!(items > 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(victim.is_file());
    run(&opts(&exp, &out, Mode::Merge)).unwrap();
}

#[test]
fn shards_list_the_whole_plan_once_whatever_the_order_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let exp = testing::write_tiny_study(dir.path()).unwrap();
    let out = dir.path().join("out");
    let all = list_items(&exp, Some(&out), None).unwrap();
    assert_eq!(all.total_items, 19);
    assert_eq!(all.items.len(), 19);
    assert!(all.items.iter().all(|i| !i.done && i.shards.is_empty()));
    let kinds: BTreeSet<&str> = all.items.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["compress", "dse", "simulate", "train:adapter", "train:head"])
    );
    assert!(!out.exists(), "listing writes nothing");

    // Each item with the shards that list it (and say they compute it).
    let shard_of = |exp: &Path| -> BTreeMap<String, Vec<usize>> {
        let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for s in 1..=3 {
            for i in list_items(exp, Some(&out), Some(Shard::new(s, 3).unwrap()))
                .unwrap()
                .items
            {
                assert!(i.shards.contains(&s), "{}", i.label);
                m.entry(i.id).or_default().push(s);
            }
        }
        m
    };
    let split = shard_of(&exp);
    let ids: BTreeSet<String> = all.items.iter().map(|i| i.id.clone()).collect();
    assert_eq!(split.keys().cloned().collect::<BTreeSet<_>>(), ids);
    for i in &all.items {
        // Only a training item that compress items need may be computed by several shards
        // (a copy per part of a group too large for one shard); everything else by one.
        let needed = all.items.iter().any(|j| j.depends_on.contains(&i.id));
        assert!(
            split[&i.id].len() == 1 || needed,
            "{}: {:?}",
            i.label,
            split[&i.id]
        );
        // A compress item is in a shard with the training item whose bundle it evaluates.
        for d in &i.depends_on {
            assert!(split[d].contains(&split[&i.id][0]), "{}", i.label);
        }
    }

    // The same study written in another order: same items, same shards.
    let text = std::fs::read_to_string(&exp).unwrap();
    let reordered = text
        .replace(
            r#"names = ["movie-polarity", "movie-rating"]"#,
            r#"names = ["movie-rating", "movie-polarity"]"#,
        )
        .replace(
            r#"methods = ["houlsby:4", "head"]"#,
            r#"methods = ["head", "houlsby:4"]"#,
        )
        .replace(
            r#"faults = ["none", "mlc:bpc=3"]"#,
            r#"faults = ["mlc:bpc=3", "none"]"#,
        );
    assert_ne!(reordered, text);
    let other = dir.path().join("reordered.toml");
    std::fs::write(&other, reordered).unwrap();
    assert_eq!(shard_of(&other), split);

    // After a run, the listing says what is done.
    run(&opts(&exp, &out, shard("2/3"))).unwrap();
    let listed = list_items(&exp, Some(&out), None).unwrap();
    for i in &listed.items {
        assert_eq!(i.done, split[&i.id].contains(&2), "{}", i.label);
    }
}

#[test]
fn an_output_folder_of_another_experiment_or_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exp = testing::write_tiny_study(dir.path()).unwrap();
    let out = dir.path().join("out");
    run(&opts(&exp, &out, shard("1/2"))).unwrap();
    let text = std::fs::read_to_string(&exp).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        let path = dir.path().join(name);
        assert!(text.contains(from));
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    };

    let other = variant("other.toml", "name = \"tiny\"", "name = \"other\"");
    for mode in [shard("2/2"), Mode::Merge, Mode::All] {
        let e = chain(&run(&opts(&other, &out, mode)).unwrap_err());
        assert!(
            e.contains("plan.json") && e.contains("--out") && e.contains("experiment `tiny`"),
            "{mode:?}: {e}"
        );
    }
    let e = chain(&list_items(&other, Some(&out), None).unwrap_err());
    assert!(e.contains("plan.json"), "{e}");

    // The same experiment, edited: shards and merges are refused, a whole run re-plans.
    let edited = variant("edited.toml", "epochs = 1", "epochs = 2");
    for mode in [shard("2/2"), Mode::Merge] {
        let e = chain(&run(&opts(&edited, &out, mode)).unwrap_err());
        assert!(
            e.contains("planned from another version") && e.contains("plan.json"),
            "{mode:?}: {e}"
        );
    }
    // Only the note changed: the same items, so the shards may go on.
    let noted = variant("noted.toml", "tiny end-to-end test", "another note");
    run(&opts(&noted, &out, shard("2/2"))).unwrap();
    run(&opts(&noted, &out, Mode::Merge)).unwrap();
    run(&opts(&edited, &out, Mode::All)).unwrap();
}

#[test]
fn concurrent_shards_copy_what_a_cut_group_needs_and_merge_into_the_same_report() {
    let (dir, exp, single_report) = single_run();
    let (single, sharded) = (dir.path().join("single"), dir.path().join("sharded"));
    // With 8 shards the fair share is smaller than a compress group (a bundle's training and
    // the 6 points evaluated on it): the groups are cut, each part trains its own copy.
    let copied: Vec<String> = list_items(&exp, None, Some(Shard::new(1, 8).unwrap()))
        .unwrap()
        .items
        .into_iter()
        .chain((2..=8).flat_map(|s| {
            list_items(&exp, None, Some(Shard::new(s, 8).unwrap()))
                .unwrap()
                .items
        }))
        .filter(|i| i.shards.len() > 1)
        .map(|i| i.label)
        .collect();
    assert!(!copied.is_empty(), "no training item is copied");
    // All 8 shards at once, 4 threads at a time, each on its own 1-thread pool.
    std::thread::scope(|scope| {
        for batch in [[1, 2, 3, 4], [5, 6, 7, 8]] {
            let handles: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let o = opts(&exp, &sharded, shard(&format!("{i}/8")));
                    scope.spawn(move || run_on(1, &o).map(|_| ()))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        }
    });
    let merged = report_dir(run(&opts(&exp, &sharded, Mode::Merge)).unwrap());
    assert_eq!(
        differences(&single_report, &merged).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        results(&single.join("cache")),
        results(&sharded.join("cache"))
    );
}
