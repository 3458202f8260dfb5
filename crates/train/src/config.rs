//! Training settings, validated before any work starts.

use crate::error::{Result, TrainError};

/// Hyper-parameters of one training run. Serialized into the bundle so a result can be
/// reproduced from the bundle alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_len: usize,
    pub weight_decay: f64,
    /// Fraction of all steps spent warming the learning rate up linearly from 0.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub max_grad_norm: f64,
    pub dropout: f64,
    pub seed: u64,
    /// Stop after this many epochs without a better dev metric.
    pub patience: Option<usize>,
    /// Use at most this many training examples (a seeded subset).
    pub max_train_examples: Option<usize>,
    /// Evaluate on at most this many dev examples (the first ones of the split).
    pub max_eval_examples: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 1e-3,
            batch_size: 32,
            max_len: 128,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            dropout: 0.1,
            seed: 42,
            patience: None,
            max_train_examples: None,
            max_eval_examples: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TrainError::Config { field, reason });
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 1.0) {
            return bad("lr", format!("{} is not in (0, 1)", self.lr));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad(
                "batch_size",
                format!("{} is not in 1..=4096", self.batch_size),
            );
        }
        if self.max_len < 4 || self.max_len > 4096 {
            return bad("max_len", format!("{} is not in 4..=4096", self.max_len));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad(
                "warmup_ratio",
                format!("{} is not in [0, 1]", self.warmup_ratio),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", "must be a non-negative number".into());
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad("max_grad_norm", "must be a non-negative number".into());
        }
        if self.max_train_examples == Some(0) {
            return bad(
                "max_train_examples",
                "a limit of 0 examples leaves nothing to train on".into(),
            );
        }
        if self.max_eval_examples == Some(0) {
            return bad(
                "max_eval_examples",
                "a limit of 0 examples leaves nothing to evaluate".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_name_the_field() {
        let c = TrainConfig {
            lr: 0.0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`lr`"));
        let c = TrainConfig {
            dropout: 1.0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`dropout`"));
        assert!(TrainConfig::default().validate().is_ok());
        let c = TrainConfig {
            max_eval_examples: Some(0),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`max_eval_examples`"), "{e}");
        let c = TrainConfig {
            max_train_examples: Some(0),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`max_train_examples`"), "{e}");
    }
}
