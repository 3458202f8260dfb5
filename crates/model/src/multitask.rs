//! One backbone in memory, many task bundles: the reason adapter-ALBERT exists.
//!
//! Adding a task loads only its own tensors; switching task is choosing another
//! [`TaskParams`]. A batch may mix tasks: the backbone runs once over all rows
//! ([`Route::Rows`]) and each row passes through its own task's adapters and head.
//! Full fine-tuning bundles carry their own backbone and are kept beside, for comparison.
//!
//! Built for concurrent serving: the backbone and tokenizer sit behind [`Arc`]s, and the task
//! set is a map of `Arc<LoadedTask>` behind a lock that is held only to look up or swap an
//! entry, never while a model runs. A prediction takes a snapshot of the tasks it needs, so
//! [`MultiTask::insert`] and [`MultiTask::remove`] (from any thread, through `&self`) neither
//! wait for nor disturb requests in flight: those finish on the version they started with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use candle_core::{Tensor, D};

use crate::adapters::{Pooling, TaskParams};
use crate::backbone::{cls_pool, mean_pool, Backbone};
use crate::bundle::{BackboneId, BundleMeta, TaskBundle, TrainMode};
use crate::error::{ModelError, Result};
use crate::exec::Kernels;
use crate::nn::Ctx;
use crate::route::Route;
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
    /// Whether the input was cut to the tokenizer's maximum length before the model saw it.
    pub truncated: bool,
}

type TaskMap = BTreeMap<String, Arc<LoadedTask>>;
/// Rows (indices into a request) of one task version.
type Group<'a> = (&'a LoadedTask, Vec<usize>);

pub struct MultiTask {
    pub backbone: Arc<Backbone>,
    /// The backbone's content hash (`backbone_id.sha256`), as bundles record it.
    pub backbone_sha256: String,
    /// What bundles are checked against.
    pub backbone_id: BackboneId,
    pub tokenizer: Arc<Tokenizer>,
    tasks: RwLock<TaskMap>,
    /// The inference kernels of the backbone and of full fine-tuning bundles' own backbones.
    kernels: Kernels,
}

impl MultiTask {
    pub fn open(model_dir: &Path, max_len: usize) -> Result<Self> {
        let (backbone, ck) = Backbone::from_dir(model_dir)?;
        let backbone_id = BackboneId::of_checkpoint(&ck, model_dir)?;
        Ok(Self {
            backbone_sha256: backbone_id.sha256.clone(),
            backbone_id,
            backbone: Arc::new(backbone),
            tokenizer: Arc::new(Tokenizer::from_dir(model_dir, max_len)?),
            tasks: RwLock::new(BTreeMap::new()),
            kernels: Kernels::Auto,
        })
    }

    /// Chooses the inference kernels (e.g. [`Kernels::Int8`]) of the shared backbone and of
    /// the full fine-tuning bundles loaded after this call. Fails once the backbone is shared
    /// (after the first clone of [`MultiTask::backbone`]).
    pub fn set_kernels(&mut self, kernels: Kernels) -> Result<()> {
        Arc::get_mut(&mut self.backbone)
            .ok_or_else(|| ModelError::Input("the backbone is already shared".into()))?
            .set_kernels(kernels);
        self.kernels = kernels;
        Ok(())
    }

    /// Lowercases every text before tokenizing (a sentence-transformers model's
    /// `do_lower_case`). Fails once the tokenizer is shared.
    pub fn lowercase_inputs(&mut self) -> Result<()> {
        Arc::get_mut(&mut self.tokenizer)
            .ok_or_else(|| ModelError::Input("the tokenizer is already shared".into()))?
            .lowercase_inputs();
        Ok(())
    }

    /// Validates a bundle against this backbone and turns it into a servable task, without
    /// touching the loaded set (so a bad upload never disturbs what is being served).
    pub fn prepare(&self, bundle: TaskBundle) -> Result<LoadedTask> {
        bundle.check_backbone(&self.backbone_id)?;
        let config = &self.backbone.config;
        let params = bundle.task_params(config)?;
        let own_backbone = match bundle.meta.mode {
            TrainMode::Full => {
                let mut own = bundle.full_backbone(config)?;
                own.set_kernels(self.kernels);
                Some(own)
            }
            _ => None,
        };
        Ok(LoadedTask {
            bytes: bundle.bytes(),
            meta: bundle.meta,
            params,
            own_backbone,
        })
    }

    // A poisoned lock only means another thread panicked between two map operations, each of
    // which leaves the map consistent: keep serving.
    fn read(&self) -> RwLockReadGuard<'_, TaskMap> {
        self.tasks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, TaskMap> {
        self.tasks.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces the task named in the bundle's metadata; returns the version it
    /// replaced, if any. Safe while predictions run: they keep the version they started with.
    pub fn insert(&self, task: LoadedTask) -> Option<Arc<LoadedTask>> {
        self.insert_shared(task).1
    }

    /// [`MultiTask::insert`] that also hands back the version it inserted: a caller that loaded
    /// a task answers with it even when a concurrent eviction removes it at once (looking it up
    /// again could find it gone).
    pub fn insert_shared(&self, task: LoadedTask) -> (Arc<LoadedTask>, Option<Arc<LoadedTask>>) {
        let name = task.meta.task.clone();
        let task = Arc::new(task);
        let replaced = self.write().insert(name, Arc::clone(&task));
        (task, replaced)
    }

    /// Loads, validates and adds a bundle file; returns the task's name.
    pub fn load_bundle(&mut self, path: &Path) -> Result<String> {
        let task = self.prepare(TaskBundle::load(path)?)?;
        let name = task.meta.task.clone();
        self.tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), Arc::new(task));
        Ok(name)
    }

    /// Unloads a task; requests already holding it finish on it.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedTask>> {
        self.write().remove(name)
    }

    pub fn task(&self, name: &str) -> Result<Arc<LoadedTask>> {
        let tasks = self.read();
        tasks
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name, &tasks))
    }

    /// A snapshot of the loaded tasks, by name.
    pub fn tasks(&self) -> Vec<(String, Arc<LoadedTask>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Predictions for inputs of one task.
    pub fn predict(&self, task: &str, inputs: &[TextInput]) -> Result<Vec<Prediction>> {
        let refs: Vec<(&str, TextInput)> = inputs.iter().map(|i| (task, i.clone())).collect();
        self.predict_mixed(&refs)
    }

    /// Predictions for a batch mixing tasks, in input order. Task names are resolved once,
    /// from one snapshot, so a concurrent reload cannot split the batch across two versions.
    pub fn predict_mixed(&self, requests: &[(&str, TextInput)]) -> Result<Vec<Prediction>> {
        let snapshot: BTreeMap<&str, Arc<LoadedTask>> = {
            let tasks = self.read();
            let mut snap = BTreeMap::new();
            for (name, _) in requests {
                if !snap.contains_key(name) {
                    let t = tasks.get(*name).ok_or_else(|| unknown(name, &tasks))?;
                    snap.insert(*name, Arc::clone(t));
                }
            }
            snap
        };
        let rows: Vec<(&LoadedTask, TextInput)> = requests
            .iter()
            .map(|(name, input)| (&*snapshot[name], input.clone()))
            .collect();
        self.predict_loaded(&rows)
    }

    /// Predictions for rows that already hold their task (e.g. resolved when a request was
    /// admitted, so a task replaced or removed meanwhile still answers on the version the
    /// request saw). Rows are grouped by task version; the shared backbone runs once over all
    /// adapter/head rows, each group gets its task's adapters and head, and each full
    /// fine-tuning task runs its rows, batched, on its own model. Output is in input order.
    pub fn predict_loaded(&self, rows: &[(&LoadedTask, TextInput)]) -> Result<Vec<Prediction>> {
        if rows.is_empty() {
            return Err(ModelError::Input("no inputs".into()));
        }
        let key = |i: usize| {
            let t = rows[i].0;
            (t.meta.task.as_str(), t as *const LoadedTask as usize)
        };
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| key(i));
        // Rows of one task version are now consecutive: one group each.
        let mut groups: Vec<Group> = Vec::new();
        for i in order {
            let t = rows[i].0;
            match groups.last_mut() {
                Some((g, members)) if std::ptr::eq(*g, t) => members.push(i),
                _ => groups.push((t, vec![i])),
            }
        }
        let mut out: Vec<Option<Prediction>> = vec![None; rows.len()];
        let (shared, own): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(t, _)| t.own_backbone.is_none());
        let mut jobs: Vec<(&Backbone, Vec<Group>)> = own
            .into_iter()
            .map(|(t, m)| {
                (
                    t.own_backbone.as_ref().unwrap_or(&self.backbone),
                    vec![(t, m)],
                )
            })
            .collect();
        if !shared.is_empty() {
            jobs.push((&self.backbone, shared));
        }
        for (backbone, groups) in jobs {
            let members: Vec<usize> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
            let inputs: Vec<TextInput> = members.iter().map(|&i| rows[i].1.clone()).collect();
            let batch = self.tokenizer.encode(&inputs)?;
            let mut parts: Vec<(usize, usize, &LoadedTask)> = Vec::with_capacity(groups.len());
            let mut start = 0;
            for (task, m) in &groups {
                parts.push((start, m.len(), *task));
                start += m.len();
            }
            let preds = run(backbone, &parts, &batch)?;
            for (p, i) in preds.into_iter().zip(members) {
                out[i] = Some(p);
            }
        }
        out.into_iter()
            .map(|p| p.ok_or_else(|| ModelError::Input("a request produced no prediction".into())))
            .collect()
    }
}

fn unknown(name: &str, tasks: &TaskMap) -> ModelError {
    ModelError::Input(format!(
        "unknown task `{name}`; loaded: {}",
        tasks.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// One encoder pass over `batch`, rows routed to `parts` (consecutive `(start, len, task)`).
fn run(
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
        let logits = task.params.classifier.forward(&pooled, &ctx)?;
        let truncated = &batch.truncated[*start..*start + *len];
        preds.extend(to_predictions(&logits, &task.meta.labels, truncated)?);
    }
    Ok(preds)
}

fn to_predictions(
    logits: &Tensor,
    labels: &[String],
    truncated: &[bool],
) -> Result<Vec<Prediction>> {
    if labels.is_empty() {
        let v: Vec<f32> = logits.squeeze(1)?.to_vec1()?;
        return Ok(v
            .into_iter()
            .zip(truncated)
            .map(|(x, &truncated)| Prediction {
                label: None,
                scores: vec![x],
                truncated,
            })
            .collect());
    }
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(logits, D::Minus1)?.to_vec2()?;
    Ok(probs
        .into_iter()
        .zip(truncated)
        .map(|(p, &truncated)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            Prediction {
                label: labels.get(best).cloned(),
                scores: p,
                truncated,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multitask_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MultiTask>();
        assert_send_sync::<LoadedTask>();
    }
}
