//! A backbone plus one task's parameters: text in, logits out.

use candle_core::Tensor;

use crate::adapters::{Pooling, TaskLayout, TaskParams};
use crate::backbone::{cls_pool, mean_pool, Backbone};
use crate::error::{ModelError, Result};
use crate::nn::Ctx;
use crate::tokenizer::Batch;

/// Borrowed view of a backbone and a task: cheap to build, so switching task is free.
pub struct TaskModel<'a> {
    pub backbone: &'a Backbone,
    pub task: &'a TaskParams,
    pub layout: &'a TaskLayout,
}

impl TaskModel<'_> {
    /// Logits [B, num_labels] (one column for regression).
    pub fn logits(&self, batch: &Batch, ctx: &Ctx) -> Result<Tensor> {
        self.logits_from_ids(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            ctx,
        )
    }

    pub fn logits_from_ids(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let out = self.backbone.forward(
            input_ids,
            token_type_ids,
            attention_mask,
            Some(self.task),
            ctx,
        )?;
        let pooled = match self.layout.pooling {
            Pooling::Pooler => out.pooler_output.ok_or_else(|| {
                ModelError::Input(
                    "the backbone has no pooler: train with pooling `mean` or `cls`".into(),
                )
            })?,
            Pooling::Mean => mean_pool(&out.last_hidden_state, attention_mask)?,
            Pooling::Cls => cls_pool(&out.last_hidden_state)?,
        };
        self.task.classifier.forward(&ctx.dropout(&pooled)?, ctx)
    }
}
