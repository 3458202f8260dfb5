//! Sequence classification / regression head on the pooled output, as in
//! `AlbertForSequenceClassification` and `BertForSequenceClassification`.

use candle_core::Tensor;

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::nn::{Ctx, Linear};
use crate::weights::Weights;

pub struct SequenceClassifier {
    pub classifier: Linear,
}

impl SequenceClassifier {
    pub fn load(ck: &Checkpoint, hidden_size: usize, num_labels: usize) -> Result<Self> {
        Ok(Self {
            classifier: Linear::load(Weights::new(ck).pp("classifier"), hidden_size, num_labels)?,
        })
    }

    /// Logits [B, num_labels] (a regression head has one output).
    pub fn forward(&self, pooled: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        self.classifier.forward_candle(&ctx.dropout(pooled)?)
    }
}
