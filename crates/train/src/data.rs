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

/// A seeded permutation of `0..n` (Fisher-Yates over SplitMix64).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = shuffled(100, 3);
        assert_eq!(a, shuffled(100, 3));
        assert_ne!(a, shuffled(100, 4));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }
}
