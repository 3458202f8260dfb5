//! From task examples to model inputs and label tensors, with the checks that keep bad data
//! from reaching the loss as silent garbage.

use adalbert_model::tokenizer::TextInput;
use adalbert_tasks::{Example, Label, TaskKind, TaskSpec};
use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};

pub fn text_inputs(examples: &[&Example]) -> Vec<TextInput> {
    examples
        .iter()
        .map(|e| match &e.text_b {
            Some(b) => TextInput::Pair(e.text_a.clone(), b.clone()),
            None => TextInput::Single(e.text_a.clone()),
        })
        .collect()
}

/// Refuses empty data and labels that do not fit the task.
pub fn check_examples(spec: &TaskSpec, examples: &[Example], what: &str) -> Result<()> {
    if examples.is_empty() {
        return Err(TrainError::Data(format!(
            "{what} set of task `{}` is empty",
            spec.name
        )));
    }
    for e in examples {
        let ok = match (&spec.kind, e.label) {
            (TaskKind::Classification { labels }, Label::Class(c)) => c < labels.len(),
            (TaskKind::Regression, Label::Score(s)) => s.is_finite(),
            _ => false,
        };
        if !ok {
            return Err(TrainError::Data(format!(
                "{what} example `{}` of task `{}` has label {:?}, which is outside the task's label set",
                e.id, spec.name, e.label
            )));
        }
    }
    Ok(())
}

/// Class indices (u32) or scores (f32) of a batch, shape [B].
pub fn label_tensor(spec: &TaskSpec, examples: &[&Example]) -> Result<Tensor> {
    let dev = Device::Cpu;
    Ok(match spec.kind {
        TaskKind::Classification { .. } => {
            let v: Vec<u32> = examples
                .iter()
                .map(|e| e.label.class().map_or(0, |c| c as u32))
                .collect();
            Tensor::from_vec(v, examples.len(), &dev)?
        }
        TaskKind::Regression => {
            let v: Vec<f32> = examples
                .iter()
                .map(|e| e.label.score().unwrap_or(0.0))
                .collect();
            Tensor::from_vec(v, examples.len(), &dev)?
        }
    })
}
