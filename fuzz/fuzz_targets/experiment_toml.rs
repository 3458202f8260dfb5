//! The experiment file loader (`adalbert run FILE`, `run --check`) on arbitrary text. It runs
//! in a scratch working directory holding what the repository's configs name (a model
//! `config.json` at `assets/minilm`, `models/albert-base-v2` and `MODEL`, a `glue/` folder,
//! the design spaces at `configs/demo-dse.toml`, `configs/hw/dse-example.toml` and `DSE`), so
//! the seeds get past the file checks into value validation. Beyond "no panic": an accepted
//! experiment holds every value a run will use, as the trainer checks them.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use adalbert_experiment::config::method_of;
use adalbert_experiment::Experiment;
use libfuzzer_sys::fuzz_target;

/// The model config the scratch directory serves: the repository's tiny BERT fixture, with
/// 512 positions as all-MiniLM-L6-v2 has.
const POSITIONS: usize = 512;

fn scratch_dir() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("adalbert-fuzz-exp-{}", std::process::id()));
        let mut config: serde_json::Value = serde_json::from_str(include_str!(
            "../../crates/model/tests/fixtures/bert/config.json"
        ))
        .expect("fixture config");
        config["max_position_embeddings"] = POSITIONS.into();
        for model in ["assets/minilm", "models/albert-base-v2", "MODEL"] {
            std::fs::create_dir_all(dir.join(model)).expect("scratch dir");
            std::fs::write(dir.join(model).join("config.json"), config.to_string())
                .expect("scratch config");
        }
        std::fs::create_dir_all(dir.join("glue")).expect("scratch dir");
        std::fs::create_dir_all(dir.join("configs/hw")).expect("scratch dir");
        let demo_dse = include_str!("../../configs/demo-dse.toml");
        for (name, text) in [
            ("configs/demo-dse.toml", demo_dse),
            (
                "configs/hw/dse-example.toml",
                include_str!("../../configs/hw/dse-example.toml"),
            ),
            ("DSE", demo_dse),
        ] {
            std::fs::write(dir.join(name), text).expect("scratch file");
        }
        std::env::set_current_dir(&dir).expect("scratch dir");
    });
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    scratch_dir();
    let exp = match Experiment::from_toml_str(text, Path::new("fuzz.toml")) {
        Ok(exp) => exp,
        Err(e) => {
            let msg = adalbert_experiment::error::chain(&e);
            assert!(msg.contains("fuzz.toml"), "error without the file: {msg}");
            return;
        }
    };
    assert!(!exp.seeds.is_empty());
    assert!(!exp.tasks.names.is_empty() && !exp.tasks.methods.is_empty());
    assert!(
        exp.train.max_len <= POSITIONS,
        "max_len {}",
        exp.train.max_len
    );
    for name in exp.all_tasks() {
        assert!(
            adalbert_tasks::task_spec(&name).is_ok(),
            "unknown task `{name}` accepted"
        );
    }
    for m in &exp.tasks.methods {
        let method = method_of(m).expect("an accepted method parses");
        let cfg = exp.train.config(exp.train.lr_for(&method), 0);
        assert!(
            cfg.validate().is_ok(),
            "accepted a training value the trainer refuses"
        );
    }
});
