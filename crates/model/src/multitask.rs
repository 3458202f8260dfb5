//! One backbone in memory, many task bundles: the reason adapter-ALBERT exists.
//!
//! Adding a task loads only its own tensors; switching task is choosing another
//! [`TaskParams`]. A batch may mix tasks: the backbone runs once over all rows
//! ([`Route::Rows`]) and each row passes through its own task's adapters and head.
//! Full fine-tuning bundles carry their own backbone and are kept beside, for comparison.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Tensor, D};

use crate::adapters::{Pooling, TaskParams};
use crate::albert::{cls_pool, mean_pool, Backbone, Route};
use crate::bundle::{BundleMeta, TaskBundle, TrainMode};
use crate::checkpoint::sha256_file;
use crate::error::{ModelError, Result};
use crate::nn::Ctx;
use crate::tokenizer::{Batch, TextInput, Tokenizer};

/// A task ready to serve.
pub struct LoadedTask {
    pub meta: BundleMeta,
    pub params: TaskParams,
    /// Only for full fine-tuning bundles: their own whole model.
    pub own_backbone: Option<Backbone>,
    /// Bytes of the task's own tensors (fp32).
    pub bytes: usize,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Label name (classification) or `None` (regression).
    pub label: Option<String>,
    /// Class probabilities, or the single regression value.
    pub scores: Vec<f32>,
}

pub struct MultiTask {
    pub backbone: Backbone,
    pub backbone_sha256: String,
    pub tokenizer: Tokenizer,
    tasks: BTreeMap<String, LoadedTask>,
}

impl MultiTask {
    pub fn open(model_dir: &Path, max_len: usize) -> Result<Self> {
        let (backbone, ck) = Backbone::from_dir(model_dir)?;
        Ok(Self {
            backbone_sha256: sha256_file(ck.path())?,
            backbone,
            tokenizer: Tokenizer::from_dir(model_dir, max_len)?,
            tasks: BTreeMap::new(),
        })
    }

    /// Validates a bundle against this backbone and turns it into a servable task, without
    /// touching the loaded set (so a bad upload never disturbs what is being served).
    pub fn prepare(&self, bundle: TaskBundle) -> Result<LoadedTask> {
        bundle.check_backbone(&self.backbone_sha256)?;
        let config = &self.backbone.config;
        let params = bundle.task_params(config)?;
        let own_backbone = match bundle.meta.mode {
            TrainMode::Full => Some(bundle.full_backbone(config)?),
            _ => None,
        };
        Ok(LoadedTask {
            bytes: bundle.bytes(),
            meta: bundle.meta,
            params,
            own_backbone,
        })
    }

    /// Adds or replaces the task named in the bundle; returns its name.
    pub fn insert(&mut self, task: LoadedTask) -> String {
        let name = task.meta.task.clone();
        self.tasks.insert(name.clone(), task);
        name
    }

    pub fn load_bundle(&mut self, path: &Path) -> Result<String> {
        let task = self.prepare(TaskBundle::load(path)?)?;
        Ok(self.insert(task))
    }

    pub fn remove(&mut self, name: &str) -> Option<LoadedTask> {
        self.tasks.remove(name)
    }

    pub fn task(&self, name: &str) -> Result<&LoadedTask> {
        self.tasks.get(name).ok_or_else(|| {
            ModelError::Input(format!(
                "unknown task `{name}`; loaded: {}",
                self.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub fn tasks(&self) -> impl Iterator<Item = (&String, &LoadedTask)> {
        self.tasks.iter()
    }

    /// Predictions for inputs of one task.
    pub fn predict(&self, task: &str, inputs: &[TextInput]) -> Result<Vec<Prediction>> {
        let refs: Vec<(&str, TextInput)> = inputs.iter().map(|i| (task, i.clone())).collect();
        self.predict_mixed(&refs)
    }

    /// Predictions for a batch mixing tasks, in input order. Rows are grouped by task, the
    /// shared backbone runs once, and each group gets its task's adapters and head.
    pub fn predict_mixed(&self, requests: &[(&str, TextInput)]) -> Result<Vec<Prediction>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| requests[a].0.cmp(requests[b].0));
        let mut out: Vec<Option<Prediction>> = vec![None; requests.len()];
        // Adapter/head tasks share one backbone pass; full bundles run on their own model.
        let (shared, own): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| {
            self.task(requests[i].0)
                .is_ok_and(|t| t.own_backbone.is_none())
        });
        for &i in &own {
            let t = self.task(requests[i].0)?;
            let batch = self
                .tokenizer
                .encode(std::slice::from_ref(&requests[i].1))?;
            let bb = t.own_backbone.as_ref().unwrap_or(&self.backbone);
            let preds = self.run(bb, &[(0, 1, t)], &batch)?;
            out[i] = preds.into_iter().next();
        }
        if !shared.is_empty() {
            let inputs: Vec<TextInput> = shared.iter().map(|&i| requests[i].1.clone()).collect();
            let batch = self.tokenizer.encode(&inputs)?;
            let mut parts: Vec<(usize, usize, &LoadedTask)> = Vec::new();
            for (row, &i) in shared.iter().enumerate() {
                let t = self.task(requests[i].0)?;
                match parts.last_mut() {
                    Some(p) if std::ptr::eq(p.2, t) => p.1 += 1,
                    _ => parts.push((row, 1, t)),
                }
            }
            let preds = self.run(&self.backbone, &parts, &batch)?;
            for (p, &i) in preds.into_iter().zip(&shared) {
                out[i] = Some(p);
            }
        }
        out.into_iter()
            .map(|p| p.ok_or_else(|| ModelError::Input("a request produced no prediction".into())))
            .collect()
    }

    fn run(
        &self,
        backbone: &Backbone,
        parts: &[(usize, usize, &LoadedTask)],
        batch: &Batch,
    ) -> Result<Vec<Prediction>> {
        let route = Route::Rows(parts.iter().map(|(s, l, t)| (*s, *l, &t.params)).collect());
        let ctx = Ctx::eval();
        let enc = backbone.forward_routed(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            &route,
            &ctx,
        )?;
        let mut preds = Vec::new();
        for (start, len, task) in parts {
            let mask = batch.attention_mask.narrow(0, *start, *len)?;
            let hidden = enc.last_hidden_state.narrow(0, *start, *len)?;
            let pooled = match task.meta.layout.pooling {
                Pooling::Mean => mean_pool(&hidden, &mask)?,
                Pooling::Cls => cls_pool(&hidden)?,
                Pooling::Pooler => enc
                    .pooler_output
                    .as_ref()
                    .ok_or_else(|| ModelError::Input("no pooler output".into()))?
                    .narrow(0, *start, *len)?,
            };
            let logits = task.params.classifier.forward(&pooled)?;
            preds.extend(to_predictions(&logits, &task.meta.labels)?);
        }
        Ok(preds)
    }
}

fn to_predictions(logits: &Tensor, labels: &[String]) -> Result<Vec<Prediction>> {
    if labels.is_empty() {
        let v: Vec<f32> = logits.squeeze(1)?.to_vec1()?;
        return Ok(v
            .into_iter()
            .map(|x| Prediction {
                label: None,
                scores: vec![x],
            })
            .collect());
    }
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(logits, D::Minus1)?.to_vec2()?;
    Ok(probs
        .into_iter()
        .map(|p| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            Prediction {
                label: labels.get(best).cloned(),
                scores: p,
            }
        })
        .collect())
}
