//! The tiny study of the tests ([`adalbert_experiment::testing`]), for trying `adalbert run`
//! by hand and for `make test-slurm`:
//!
//! ```sh
//! cargo run --release -p adalbert-experiment --example tiny_study -- write DIR
//! #   -> DIR/model/ (tiny ALBERT) and DIR/tiny.toml (absolute paths); prints the file's path
//! cargo run --release -p adalbert-experiment --example tiny_study -- compare REPORT_A REPORT_B
//! #   -> exit 0 when the two report folders agree outside the timing columns
//! ```

use std::path::Path;
use std::process::ExitCode;

use adalbert_experiment::report::compare::differences;
use adalbert_experiment::testing::write_tiny_study;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", dir] => {
            let dir = Path::new(dir);
            std::fs::create_dir_all(dir)
                .and_then(|()| write_tiny_study(&dir.canonicalize()?))
                .map(|p| println!("{}", p.display()))
                .map_err(|e| format!("writing the tiny study into {}: {e}", dir.display()))
        }
        ["compare", a, b] => match differences(Path::new(a), Path::new(b)) {
            Ok(d) if d.is_empty() => {
                println!("{a} and {b} agree (timing columns excepted)");
                Ok(())
            }
            Ok(d) => Err(format!("the reports differ:\n{}", d.join("\n"))),
            Err(e) => Err(adalbert_experiment::error::chain(&e)),
        },
        _ => Err("usage: tiny_study write DIR | tiny_study compare REPORT_A REPORT_B".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
