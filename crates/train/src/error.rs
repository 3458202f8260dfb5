//! Typed errors of the training crate.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] adalbert_model::ModelError),
    #[error(transparent)]
    Task(#[from] adalbert_tasks::Error),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid training setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("data: {0}")]
    Data(String),
    #[error(
        "stopped after {epochs_done} epoch(s); run state kept in {state}: continue with --resume"
    )]
    Interrupted { epochs_done: usize, state: String },
    #[error(
        "run state {path} cannot be read (a damaged or foreign file): delete it to start the run over, or run without --resume"
    )]
    RunState {
        path: String,
        #[source]
        source: Box<adalbert_model::ModelError>,
    },
    #[error(
        "stopped after {steps_done} distillation step(s); run state kept in {state}: continue with --resume"
    )]
    DistillInterrupted { steps_done: usize, state: String },
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: String, reason: String },
}

pub type Result<T> = std::result::Result<T, TrainError>;
