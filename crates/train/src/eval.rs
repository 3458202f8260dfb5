//! Prediction and official-metric evaluation of a task model.

use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Ctx, TaskModel};
use adalbert_tasks::{evaluate, Example, Label, TaskKind, TaskSpec};
use candle_core::D;

use crate::data::text_inputs;
use crate::error::Result;

/// Predicted labels for `examples`, in order: class indices or regression values.
pub fn predict(
    model: &TaskModel,
    tokenizer: &Tokenizer,
    spec: &TaskSpec,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<Label>> {
    let mut out = Vec::with_capacity(examples.len());
    let ctx = Ctx::eval();
    let refs: Vec<&Example> = examples.iter().collect();
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = tokenizer.encode(&text_inputs(chunk))?;
        let logits = model.logits(&batch, &ctx)?;
        match spec.kind {
            TaskKind::Classification { .. } => {
                let idx: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
                out.extend(idx.into_iter().map(|c| Label::Class(c as usize)));
            }
            TaskKind::Regression => {
                let v: Vec<f32> = logits.squeeze(1)?.to_vec1()?;
                out.extend(v.into_iter().map(Label::Score));
            }
        }
    }
    Ok(out)
}

/// Official metrics of `model` on labelled `examples`, by name.
pub fn evaluate_model(
    model: &TaskModel,
    tokenizer: &Tokenizer,
    spec: &TaskSpec,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<(&'static str, f64)>> {
    let preds = predict(model, tokenizer, spec, examples, batch_size)?;
    let golds: Vec<Label> = examples.iter().map(|e| e.label).collect();
    Ok(evaluate(spec, &preds, &golds)?)
}
