//! One module per subcommand.
pub mod bench;
pub mod compress;
pub mod dse;
pub mod embed;
pub mod eval;
pub mod info;
pub mod predict;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod train;

/// The files a command reads from a model directory (its weights, config and tokenizer
/// files): an output must never be one of them.
pub fn model_inputs(model: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(model)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    if let Ok(w) = adalbert_model::checkpoint::weights_file(model) {
        files.push(w);
    }
    files
}
