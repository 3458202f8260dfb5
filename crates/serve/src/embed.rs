//! Sentence embeddings the way the model was published: its sentence-transformers pooling,
//! normalization and length limit, read and applied by [`adalbert_model::sentence`] (the one
//! place `adalbert embed` uses too), over the bare backbone or with one task's adapters.

use adalbert_model::tokenizer::TextInput;
use adalbert_model::{LoadedTask, ModelError, MultiTask};

pub use adalbert_model::sentence::{Embedded, SentenceConfig};

/// One encoder pass over `inputs` (the bare backbone, or `task`'s adapters on it), pooled
/// and normalized as `cfg` says (`normalize` overrides the model's normalization).
pub fn embed(
    mt: &MultiTask,
    task: Option<&LoadedTask>,
    inputs: &[TextInput],
    cfg: &SentenceConfig,
    normalize: Option<bool>,
) -> Result<Embedded, ModelError> {
    let backbone = task
        .and_then(|t| t.own_backbone.as_ref())
        .unwrap_or(&mt.backbone);
    let params = task.filter(|t| t.own_backbone.is_none()).map(|t| &t.params);
    adalbert_model::sentence::embed(backbone, params, &mt.tokenizer, inputs, cfg, normalize)
}
