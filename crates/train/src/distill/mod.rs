//! Distillation of a BERT (or ALBERT) teacher into a true ALBERT: factorized embedding
//! (E < H) with `embedding_hidden_mapping_in`, and shared layer group(s) applied N times.
//!
//! [`distill`] checks every setting before any work ([`DistillJob::check`]), starts the
//! student close to the teacher ([`init`]), then trains every student weight against the
//! teacher's hidden states, attention distributions and sentence embeddings ([`loss`]) with
//! AdamW (linear warm-up, then linear decay), global-norm clipping and seeded batches. The
//! student runs on adalbert's fused training ops (trainable linear layers with weight
//! gradients, attention, LayerNorm and GELU with hand-written backward passes, the attention
//! KL); the teacher runs the eval kernels and records its per-layer hidden states and
//! attention probabilities. Batch `k` is a pure function of `(seed, k)` and every other
//! piece of state is saved in the run state (written atomically every few minutes and on
//! interruption), so `resume` ends with the student an uninterrupted run writes. The output
//! is a Hugging Face ALBERT directory ([`adalbert_model::export`]) with `distill.json`.

pub mod init;
pub mod loss;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_core::rng::{permutation, salted};
use adalbert_model::bundle::load_tensors;
use adalbert_model::checkpoint::sha256_file;
use adalbert_model::tokenizer::{TextInput, Tokenizer};
use adalbert_model::{Backbone, Checkpoint, Ctx, EncoderConfig, Family};
use candle_core::{Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};
use crate::optim::{clip_scale, AdamW};
use crate::trainer::save_state;
use init::EmbeddingReport;
use loss::{cosine_rows, layer_map, losses, LossValues, LossWeights};

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this many optimizer steps (deterministic for a seed).
    Steps(usize),
    /// After this many minutes of training (the learning rate decays with elapsed time; the
    /// step count, and so the result, depends on the machine's speed).
    Minutes(f64),
}

/// How the shared layer(s) start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharedInit {
    /// The element-wise mean of the teacher layers each group replaces.
    Mean,
    /// For each group, the one teacher layer of its range that scores best.
    BestLayer,
    /// Whichever of the two scores better on the probe batch.
    Auto,
}

impl SharedInit {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mean" => Some(Self::Mean),
            "best-layer" => Some(Self::BestLayer),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// The recipe: everything that decides the student (recorded in `distill.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    pub embedding_size: usize,
    pub groups: usize,
    /// Layer applications; `None`: as many as the teacher has layers.
    pub applications: Option<usize>,
    pub stop: Stop,
    pub batch_size: usize,
    pub max_len: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub dropout: f64,
    pub seed: u64,
    pub weights: LossWeights,
    pub init: SharedInit,
    /// Train nothing: write the initialized student (the SVD-only ablation).
    pub init_only: bool,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            embedding_size: 128,
            groups: 1,
            applications: None,
            stop: Stop::Steps(2000),
            batch_size: 32,
            max_len: 64,
            lr: 5e-4,
            warmup_steps: 100,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            dropout: 0.0,
            seed: 42,
            weights: LossWeights::default(),
            init: SharedInit::Auto,
            init_only: false,
        }
    }
}

/// One distillation run.
pub struct DistillJob<'a> {
    pub teacher_dir: &'a Path,
    pub out: PathBuf,
    pub config: DistillConfig,
    /// Training sentences.
    pub corpus: &'a [String],
    /// How the corpus was made (recorded with its sha256).
    pub corpus_source: serde_json::Value,
    /// Held-out sentences the result is measured on (never trained on).
    pub held_out: &'a [String],
    pub resume: bool,
    /// Replace an output directory that holds another model.
    pub force: bool,
    pub progress: bool,
    /// Seconds between run-state checkpoints.
    pub checkpoint_seconds: f64,
    /// Stop after this many steps of this invocation, keeping the run state (tests of
    /// `resume`).
    pub stop_after_steps: Option<usize>,
}

/// One row of the loss history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRow {
    pub step: usize,
    pub seconds: f64,
    pub lr: f64,
    pub tokens: usize,
    #[serde(flatten)]
    pub loss: LossValues,
}

/// How close a student is to the teacher on held-out sentences.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub sentences: usize,
    /// Mean cosine similarity of the mean-pooled sentence embeddings.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Per hidden state (embedding output, then each application): relative error
    /// `|s - t| / |t|` over real tokens.
    pub hidden_relative_error: Vec<f64>,
    /// The distillation losses on these sentences.
    pub loss: LossValues,
}

/// How each shared-layer start scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitReport {
    pub embedding: EmbeddingReport,
    /// `(candidate, total loss on the probe batch)`: `mean`, and `layer L` per group.
    pub candidates: Vec<(String, f64)>,
    /// The start taken, per group (`mean` or `layer L`).
    pub chosen: Vec<String>,
    /// Held-out agreement of the mean start and of the best-layer start.
    pub mean: Agreement,
    pub best_layer: Agreement,
}

/// What `distill.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistillRecord {
    pub format: String,
    pub teacher: String,
    pub teacher_sha256: String,
    pub recipe: DistillConfig,
    pub seed: u64,
    pub corpus: serde_json::Value,
    pub corpus_sha256: String,
    pub corpus_sentences: usize,
    /// Tokens of the corpus as the student sees them (special tokens included, each
    /// sentence cut at `max_len`).
    pub corpus_tokens: usize,
    pub steps: usize,
    pub tokens_seen: usize,
    pub train_seconds: f64,
    pub final_loss: Option<LossValues>,
    pub init: InitReport,
    pub held_out: Agreement,
    pub parameters: ParamReport,
    pub history: Vec<HistoryRow>,
    pub tool_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamReport {
    /// Backbone parameters (embeddings, projection, encoder; no pooler).
    pub teacher: usize,
    pub student: usize,
    pub ratio: f64,
}

/// Where a finished run went.
#[derive(Debug)]
pub struct DistillOutcome {
    pub out: PathBuf,
    pub record: DistillRecord,
    /// The student's tensors as written (checkpoint names).
    pub tensors: HashMap<String, Tensor>,
    /// Wall seconds of each optimizer step this invocation ran (batch encoding, teacher
    /// forward, student forward and backward, clipping, AdamW), for `distill --bench-steps`.
    pub step_seconds: Vec<f64>,
}

pub const DISTILL_FORMAT: &str = "adalbert-distill/1";

impl DistillRecord {
    /// Everything but the loss history.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("history");
        }
        v
    }
}

/// At most `max` of `sentences`, a seeded sample kept in the original order (all of them
/// when there are no more than `max`).
pub fn sample(sentences: &[String], max: usize, seed: u64) -> Vec<String> {
    if sentences.len() <= max {
        return sentences.to_vec();
    }
    let mut picked: Vec<usize> = permutation(sentences.len(), salted(seed, 0x4E1D))
        .into_iter()
        .take(max)
        .collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| sentences[i].clone()).collect()
}

/// Tokens of `sentences` under `tokenizer` (special tokens included, cut at its max length).
fn count_tokens(tokenizer: &Tokenizer, sentences: &[String]) -> Result<usize> {
    let mut n = 0usize;
    for chunk in sentences.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let batch = encode(tokenizer, &refs)?;
        n += batch
            .attention_mask
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()? as usize;
    }
    Ok(n)
}

/// The run state file of an output directory.
pub fn state_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "student".into());
    out.with_file_name(format!("{name}.distill-state.safetensors"))
}

/// Everything of a run that is not a tensor, saved with the run state.
#[derive(Serialize, Deserialize)]
struct RunState {
    fingerprint: String,
    step: usize,
    seconds: f64,
    tokens: usize,
    history: Vec<HistoryRow>,
    init: InitReport,
    /// The losses of the last step taken, so a run resumed after its last step (killed
    /// before its output was written) records the same final loss and history.
    #[serde(default)]
    last_loss: Option<LossValues>,
}

fn config_err(field: &'static str, reason: impl Into<String>) -> TrainError {
    TrainError::Config {
        field,
        reason: reason.into(),
    }
}

/// sha256 of the corpus: its sentences, newline-terminated.
pub fn corpus_sha256(sentences: &[String]) -> String {
    let mut h = Sha256::new();
    for s in sentences {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The student's shape: the teacher's widths, `config`'s E, groups and applications.
pub fn student_config(teacher: &EncoderConfig, config: &DistillConfig) -> EncoderConfig {
    let mut s = teacher.clone();
    let n = config.applications.unwrap_or(teacher.shape.applications());
    s.shape.family = Family::Albert;
    s.shape.embedding_size = config.embedding_size;
    s.shape.num_hidden_layers = n;
    s.shape.num_hidden_groups = config.groups;
    s.shape.inner_group_num = 1;
    s.labels = vec![];
    s
}

impl DistillJob<'_> {
    /// Every setting checked before any work, each error naming its flag or file.
    /// Returns the teacher's configuration and the sha256 of its weights.
    pub fn check(&self) -> Result<(EncoderConfig, String)> {
        let c = &self.config;
        let teacher = EncoderConfig::from_path(self.teacher_dir).map_err(|e| {
            config_err(
                "--teacher",
                format!(
                    "{} is not a BERT or ALBERT model directory: {e}",
                    self.teacher_dir.display()
                ),
            )
        })?;
        let h = teacher.shape.hidden_size;
        if c.embedding_size == 0 || c.embedding_size >= h {
            return Err(config_err(
                "--embedding-size",
                format!(
                    "{} must be in 1..{h} (below the teacher's hidden size)",
                    c.embedding_size
                ),
            ));
        }
        let n = c.applications.unwrap_or(teacher.shape.applications());
        if n == 0 {
            return Err(config_err("--applications", "must be at least 1"));
        }
        if c.groups == 0 || !n.is_multiple_of(c.groups) {
            return Err(config_err(
                "--groups",
                format!("{} must divide the {n} layer applications", c.groups),
            ));
        }
        match c.stop {
            Stop::Steps(0) => return Err(config_err("--steps", "must be at least 1")),
            Stop::Minutes(m) if !(m.is_finite() && m > 0.0) => {
                return Err(config_err(
                    "--time-budget",
                    "must be a positive number of minutes",
                ))
            }
            _ => {}
        }
        if c.batch_size == 0 {
            return Err(config_err("--batch", "must be at least 1"));
        }
        if c.max_len < 4 || c.max_len > teacher.shape.max_position_embeddings {
            return Err(config_err(
                "--max-len",
                format!("must be in 4..={}", teacher.shape.max_position_embeddings),
            ));
        }
        if !(c.lr.is_finite() && c.lr > 0.0 && c.lr < 1.0) {
            return Err(config_err("--lr", format!("{} is not in (0, 1)", c.lr)));
        }
        if !(0.0..1.0).contains(&c.dropout) {
            return Err(config_err("--dropout", "must be in [0, 1)"));
        }
        if self.corpus.iter().all(|s| s.trim().is_empty()) {
            return Err(config_err("--corpus", "the corpus has no text"));
        }
        if self.held_out.is_empty() {
            return Err(config_err(
                "--corpus",
                "no held-out sentences to measure on",
            ));
        }
        let out_config = self.out.join("config.json");
        if self.out.exists() && !self.out.is_dir() {
            return Err(config_err(
                "--out",
                format!("{} is a file, not a directory", self.out.display()),
            ));
        }
        // The student replaces the whole directory (written atomically as one), so a folder
        // of other files is never taken.
        let other_files = !out_config.is_file()
            && std::fs::read_dir(&self.out).is_ok_and(|mut d| d.next().is_some());
        if other_files {
            return Err(config_err(
                "--out",
                format!(
                    "{} holds files but no model; choose a new or empty directory",
                    self.out.display()
                ),
            ));
        }
        if out_config.is_file() && !self.force {
            let same = std::fs::read_to_string(self.out.join("distill.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v.get("recipe") == serde_json::to_value(c).ok().as_ref());
            if !same {
                return Err(config_err(
                    "--out",
                    format!(
                        "{} already holds a different model; choose another directory or pass --force",
                        self.out.display()
                    ),
                ));
            }
        }
        let weights = adalbert_model::checkpoint::weights_file(self.teacher_dir)
            .map_err(|e| config_err("--teacher", e.to_string()))?;
        let teacher_sha = sha256_file(&weights)?;
        let state = state_path(&self.out);
        if self.resume && state.is_file() {
            let (_, md) = load_tensors(&state)?;
            let fp = md
                .get("run_state")
                .and_then(|j| serde_json::from_str::<RunState>(j).ok())
                .map(|s| s.fingerprint);
            if fp.as_deref() != Some(self.fingerprint(&teacher_sha).as_str()) {
                return Err(config_err(
                    "--resume",
                    format!(
                        "{} was written by a run with other settings (recipe, teacher or corpus); delete it or run without --resume",
                        state.display()
                    ),
                ));
            }
        }
        Ok((teacher, teacher_sha))
    }

    fn fingerprint(&self, teacher_sha: &str) -> String {
        serde_json::json!({
            "recipe": self.config,
            "teacher": teacher_sha,
            "corpus": corpus_sha256(self.corpus),
            "held_out": corpus_sha256(self.held_out),
        })
        .to_string()
    }
}

/// Batches of a run: batch `k` is a pure function of `(seed, k)` (epochs are seeded
/// permutations of the corpus).
struct Batches<'a> {
    corpus: &'a [String],
    seed: u64,
    size: usize,
    epochs: HashMap<usize, Vec<usize>>,
}

impl<'a> Batches<'a> {
    fn sentences(&mut self, step: usize) -> Vec<&'a str> {
        let n = self.corpus.len();
        (step * self.size..(step + 1) * self.size)
            .map(|p| {
                let (epoch, i) = (p / n, p % n);
                let seed = salted(self.seed, 0xE90C + epoch as u64);
                let order = self
                    .epochs
                    .entry(epoch)
                    .or_insert_with(|| permutation(n, seed));
                self.corpus[order[i]].as_str()
            })
            .collect()
    }
}

/// Token ids, types and mask of `sentences`.
fn encode(tokenizer: &Tokenizer, sentences: &[&str]) -> Result<adalbert_model::tokenizer::Batch> {
    let inputs: Vec<TextInput> = sentences
        .iter()
        .map(|s| TextInput::Single(s.to_string()))
        .collect();
    Ok(tokenizer.encode(&inputs)?)
}

/// What `backbone` records on `batch` in eval (no gradients).
fn record_eval(
    backbone: &Backbone,
    batch: &adalbert_model::tokenizer::Batch,
) -> Result<adalbert_model::Recorded> {
    let ctx = Ctx::eval().recording();
    backbone.forward(
        &batch.input_ids,
        &batch.token_type_ids,
        &batch.attention_mask,
        None,
        &ctx,
    )?;
    Ok(ctx.take_recorded())
}

/// The pooler the student keeps (not trained: sentence embeddings are mean-pooled): the
/// teacher's, so the checkpoint has every `AlbertModel` key.
fn pooler_tensors(teacher: &Backbone) -> Result<Vec<(String, Tensor)>> {
    let h = teacher.config.shape.hidden_size;
    let (w, b) = match &teacher.pooler {
        Some(p) => (
            p.dense.weight.clone(),
            match &p.dense.bias {
                Some(b) => b.clone(),
                None => Tensor::zeros(h, candle_core::DType::F32, &candle_core::Device::Cpu)?,
            },
        ),
        None => (
            Tensor::eye(h, candle_core::DType::F32, &candle_core::Device::Cpu)?,
            Tensor::zeros(h, candle_core::DType::F32, &candle_core::Device::Cpu)?,
        ),
    };
    Ok(vec![("pooler.weight".into(), w), ("pooler.bias".into(), b)])
}

/// A student backbone over `tensors` (plain tensors: eval on the fast path).
fn student_backbone(tensors: &HashMap<String, Tensor>, config: &EncoderConfig) -> Result<Backbone> {
    let ck = Checkpoint::from_tensors(tensors.clone(), PathBuf::from("student"));
    Ok(Backbone::load(&ck, config)?)
}

/// The teacher's recordings of fixed sentence batches, kept so every candidate and every
/// evaluation compares against the same teacher outputs.
struct Reference {
    batches: Vec<(adalbert_model::tokenizer::Batch, adalbert_model::Recorded)>,
}

impl Reference {
    fn new(
        teacher: &Backbone,
        tokenizer: &Tokenizer,
        sentences: &[&str],
        size: usize,
    ) -> Result<Self> {
        let batches = sentences
            .chunks(size)
            .map(|chunk| {
                let batch = encode(tokenizer, chunk)?;
                let rec = record_eval(teacher, &batch)?;
                Ok((batch, rec))
            })
            .collect::<Result<_>>()?;
        Ok(Self { batches })
    }

    /// The student's agreement with the teacher on these batches.
    fn agreement(
        &self,
        student: &Backbone,
        map: &[usize],
        heads: usize,
        weights: LossWeights,
    ) -> Result<Agreement> {
        let mut cosines = Vec::new();
        let mut num = vec![0f64; map.len() + 1];
        let mut den = vec![0f64; map.len() + 1];
        let mut loss = LossValues::default();
        let mut rows = 0usize;
        for (batch, teacher) in &self.batches {
            let rec = record_eval(student, batch)?;
            let m = batch.attention_mask.to_dtype(candle_core::DType::F32)?;
            let l = losses(&rec, teacher, &m, map, heads, weights, None)?.values()?;
            let b = batch.attention_mask.dims2()?.0;
            for (acc, v) in [
                (&mut loss.total, l.total),
                (&mut loss.hidden, l.hidden),
                (&mut loss.attention, l.attention),
                (&mut loss.cosine, l.cosine),
            ] {
                *acc += v * b as f64;
            }
            rows += b;
            let n = map.len();
            let t_last = teacher.hidden_states.len() - 1;
            let s_emb = adalbert_model::backbone::mean_pool(&rec.hidden_states[n], &m)?;
            let t_emb = adalbert_model::backbone::mean_pool(&teacher.hidden_states[t_last], &m)?;
            cosines.extend(cosine_rows(&s_emb, &t_emb)?.to_vec1::<f32>()?);
            let m3 = m.unsqueeze(2)?;
            let pairs =
                std::iter::once((0, 0)).chain(map.iter().enumerate().map(|(a, &t)| (a + 1, t + 1)));
            for (k, (si, ti)) in pairs.enumerate() {
                let t = &teacher.hidden_states[ti];
                let d = (&rec.hidden_states[si] - t)?;
                let sum = |x: &Tensor| -> Result<f64> {
                    Ok(x.sqr()?.broadcast_mul(&m3)?.sum_all()?.to_scalar::<f32>()? as f64)
                };
                num[k] += sum(&d)?;
                den[k] += sum(t)?;
            }
        }
        let r = rows.max(1) as f64;
        Ok(Agreement {
            sentences: rows,
            mean_cosine: cosines.iter().map(|&c| c as f64).sum::<f64>() / r,
            min_cosine: cosines.iter().fold(f64::INFINITY, |a, &c| a.min(c as f64)),
            hidden_relative_error: num
                .iter()
                .zip(&den)
                .map(|(n, d)| (n / d.max(1e-30)).sqrt())
                .collect(),
            loss: LossValues {
                total: loss.total / r,
                hidden: loss.hidden / r,
                attention: loss.attention / r,
                cosine: loss.cosine / r,
            },
        })
    }
}

/// The student's tensors for the shared-layer choice `layers[g]` of each group (`None`:
/// the mean of the group's teacher layers).
fn assemble(
    teacher: &Backbone,
    config: &EncoderConfig,
    base: &HashMap<String, Tensor>,
    group_layers: &[Vec<usize>],
    choice: &[Option<usize>],
) -> Result<HashMap<String, Tensor>> {
    let mut out = base.clone();
    for (g, layers) in group_layers.iter().enumerate() {
        let tensors = match choice[g] {
            Some(l) => init::layer_tensors(teacher.encoder.layer(l)),
            None => init::mean_layer(teacher, layers)?,
        };
        let prefix = config.shape.layer_prefix(g, 0);
        for (name, t) in tensors {
            out.insert(format!("{prefix}.{name}"), t.copy()?);
        }
    }
    Ok(out)
}

fn describe(choice: Option<usize>) -> String {
    choice.map_or_else(|| "mean".to_string(), |l| format!("layer {l}"))
}

/// The initial student tensors and how each start scored.
fn initialize(
    job: &DistillJob,
    teacher: &Backbone,
    tokenizer: &Tokenizer,
    config: &EncoderConfig,
    map: &[usize],
    held_out: &Reference,
) -> Result<(HashMap<String, Tensor>, InitReport)> {
    let cfg = &job.config;
    let heads = config.shape.num_attention_heads;
    // Fit and probe sentences: a seeded sample of the corpus (training text, not held out).
    let order = permutation(job.corpus.len(), salted(cfg.seed, 0x1417));
    let sample: Vec<&str> = order
        .iter()
        .take(320)
        .map(|&i| job.corpus[i].as_str())
        .collect();
    let (fit, probe) = sample.split_at(sample.len().min(256));
    let fit = Reference::new(teacher, tokenizer, fit, 32)?;
    let samples: Vec<_> = fit
        .batches
        .iter()
        .map(|(b, r)| {
            (
                b.input_ids.clone(),
                b.token_type_ids.clone(),
                b.attention_mask.clone(),
                r.hidden_states[0].clone(),
            )
        })
        .collect();
    let (mut base, embedding) =
        init::factorized_embeddings(teacher, cfg.embedding_size, &samples, &[64, 128, 256])?;
    base.extend(pooler_tensors(teacher)?);
    let probe = if probe.is_empty() {
        fit
    } else {
        Reference::new(teacher, tokenizer, probe, 32)?
    };
    let groups = config.shape.num_hidden_groups;
    let group_layers: Vec<Vec<usize>> = (0..groups)
        .map(|g| {
            let mut ls: Vec<usize> = (0..map.len())
                .filter(|&a| config.shape.stored_layer(a).0 == g)
                .map(|a| map[a])
                .collect();
            ls.dedup();
            ls
        })
        .collect();
    let score = |choice: &[Option<usize>]| -> Result<f64> {
        let t = assemble(teacher, config, &base, &group_layers, choice)?;
        Ok(probe
            .agreement(&student_backbone(&t, config)?, map, heads, cfg.weights)?
            .loss
            .total)
    };
    let mean_choice = vec![None; groups];
    let mean_score = score(&mean_choice)?;
    let mut candidates = vec![("mean".to_string(), mean_score)];
    // Best single layer, group by group (the other groups at their current choice).
    let mut best = mean_choice.clone();
    for g in 0..groups {
        let mut best_g: Option<(usize, f64)> = None;
        for &l in &group_layers[g] {
            let mut c = best.clone();
            c[g] = Some(l);
            let s = score(&c)?;
            let name = if groups == 1 {
                format!("layer {l}")
            } else {
                format!("group {g}: layer {l}")
            };
            candidates.push((name, s));
            if best_g.is_none_or(|(_, b)| s < b) {
                best_g = Some((l, s));
            }
        }
        best[g] = best_g.map(|(l, _)| l);
    }
    let best_score = score(&best)?;
    let chosen = match cfg.init {
        SharedInit::Mean => mean_choice.clone(),
        SharedInit::BestLayer => best.clone(),
        SharedInit::Auto if best_score < mean_score => best.clone(),
        SharedInit::Auto => mean_choice.clone(),
    };
    let agree = |choice: &[Option<usize>]| -> Result<Agreement> {
        let t = assemble(teacher, config, &base, &group_layers, choice)?;
        held_out.agreement(&student_backbone(&t, config)?, map, heads, cfg.weights)
    };
    let report = InitReport {
        embedding,
        candidates,
        chosen: chosen.iter().map(|c| describe(*c)).collect(),
        mean: agree(&mean_choice)?,
        best_layer: agree(&best)?,
    };
    let tensors = assemble(teacher, config, &base, &group_layers, &chosen)?;
    Ok((tensors, report))
}

/// The learning rate of `step`: linear warm-up, then linear decay to 0 over the run
/// (steps, or elapsed minutes for a time budget).
fn lr_at(cfg: &DistillConfig, step: usize, seconds: f64) -> f64 {
    let warm = if step < cfg.warmup_steps {
        (step + 1) as f64 / cfg.warmup_steps as f64
    } else {
        1.0
    };
    let progress = match cfg.stop {
        Stop::Steps(n) => step as f64 / n as f64,
        Stop::Minutes(m) => seconds / (m * 60.0),
    };
    cfg.lr * warm * (1.0 - progress).clamp(0.0, 1.0)
}

fn progress_bar(show: bool, stop: Stop, step: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (len, template) = match stop {
        Stop::Steps(n) => (
            n as u64,
            "{bar:30} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ),
        Stop::Minutes(m) => (
            (m * 60.0) as u64,
            "{bar:30} {pos}/{len} s [{elapsed_precise}] {msg}",
        ),
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if matches!(stop, Stop::Steps(_)) {
        bar.set_position(step as u64);
    }
    bar
}

/// Runs a distillation job to its end (or to `stop_after_steps`).
pub fn distill(job: DistillJob) -> Result<DistillOutcome> {
    let (teacher_config, teacher_sha) = job.check()?;
    // Temporaries a killed run left beside the output (the run state, the staged student).
    if let Some(parent) = job.out.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        adalbert_core::files::remove_stale_temporaries(parent);
    }
    let cfg = job.config.clone();
    let (teacher, _) = Backbone::from_dir(job.teacher_dir)?;
    let tokenizer = Tokenizer::from_dir(job.teacher_dir, cfg.max_len)?;
    let config = student_config(&teacher_config, &cfg);
    let map = layer_map(
        config.shape.applications(),
        teacher_config.shape.applications(),
    );
    let heads = config.shape.num_attention_heads;
    let fingerprint = job.fingerprint(&teacher_sha);
    let held_out_sentences: Vec<&str> = job.held_out.iter().map(String::as_str).collect();
    let held_out = Reference::new(&teacher, &tokenizer, &held_out_sentences, 64)?;
    let state_file = state_path(&job.out);
    let resumed = if job.resume && state_file.is_file() {
        let (tensors, md) = load_tensors(&state_file)?;
        let bad = |reason: String| TrainError::Resume {
            path: state_file.display().to_string(),
            reason,
        };
        let json = md
            .get("run_state")
            .ok_or_else(|| bad("no run state metadata".into()))?;
        let state: RunState =
            serde_json::from_str(json).map_err(|e| bad(format!("malformed run state: {e}")))?;
        Some((tensors, state))
    } else {
        None
    };
    let (mut tensors, mut state, saved) = match resumed {
        Some((saved, state)) => {
            let mut t: HashMap<String, Tensor> = HashMap::new();
            for (name, v) in &saved {
                if let Some(n) = name.strip_prefix("param.") {
                    t.insert(n.to_string(), v.clone());
                }
            }
            t.extend(pooler_tensors(&teacher)?);
            (t, state, Some(saved))
        }
        None => {
            let (t, init) = initialize(&job, &teacher, &tokenizer, &config, &map, &held_out)?;
            let state = RunState {
                fingerprint: fingerprint.clone(),
                step: 0,
                seconds: 0.0,
                tokens: 0,
                history: vec![],
                init,
                last_loss: None,
            };
            (t, state, None)
        }
    };
    // Every student tensor but the pooler is trained.
    let mut names: Vec<String> = tensors
        .keys()
        .filter(|n| !n.starts_with("pooler."))
        .cloned()
        .collect();
    names.sort();
    let mut vars = Vec::with_capacity(names.len());
    for name in &names {
        let var = Var::from_tensor(&tensors[name].copy()?)?;
        tensors.insert(name.clone(), var.as_tensor().clone());
        vars.push((name.clone(), var));
    }
    let mut opt = AdamW::new(vars, cfg.weight_decay)?;
    if let Some(saved) = &saved {
        opt.restore(saved, state.step)?;
    }
    let student = student_backbone(&tensors, &config)?;
    let mut batches = Batches {
        corpus: job.corpus,
        seed: cfg.seed,
        size: cfg.batch_size,
        epochs: HashMap::new(),
    };
    let bar = progress_bar(job.progress && !cfg.init_only, cfg.stop, state.step);
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut last_checkpoint = Instant::now();
    let first_step = state.step;
    let mut last_loss = state.last_loss;
    let (mut window_tokens, mut window_start) = (0usize, Instant::now());
    let mut step_seconds = Vec::new();
    loop {
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        let done = cfg.init_only
            || match cfg.stop {
                Stop::Steps(n) => state.step >= n,
                Stop::Minutes(m) => seconds >= m * 60.0,
            };
        if done {
            break;
        }
        if job
            .stop_after_steps
            .is_some_and(|k| state.step - first_step >= k)
        {
            state.seconds = seconds;
            save_state(&state_file, &state, &opt, &HashMap::new())?;
            bar.finish_and_clear();
            return Err(TrainError::DistillInterrupted {
                steps_done: state.step,
                state: state_file.display().to_string(),
            });
        }
        let step_start = Instant::now();
        let sentences = batches.sentences(state.step);
        let batch = encode(&tokenizer, &sentences)?;
        let teacher_rec = record_eval(&teacher, &batch)?;
        let ctx = Ctx::train(
            cfg.dropout as f32,
            salted(cfg.seed ^ 0xD157, state.step as u64),
        )
        .recording();
        student.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            None,
            &ctx,
        )?;
        let rec = ctx.take_recorded();
        let mask = batch.attention_mask.to_dtype(candle_core::DType::F32)?;
        let l = losses(
            &rec,
            &teacher_rec,
            &mask,
            &map,
            heads,
            cfg.weights,
            ctx.train_kernels(),
        )?;
        let grads = l.total.backward()?;
        let scale = clip_scale(opt.grad_norm(&grads)?, cfg.max_grad_norm);
        let lr = lr_at(&cfg, state.step, seconds);
        opt.step(&grads, lr, scale)?;
        let values = l.values()?;
        step_seconds.push(step_start.elapsed().as_secs_f64());
        if !values.total.is_finite() {
            return Err(TrainError::Data(format!(
                "the distillation loss is not finite at step {}; lower --lr",
                state.step
            )));
        }
        let tokens = mask.sum_all()?.to_scalar::<f32>()? as usize;
        state.tokens += tokens;
        window_tokens += tokens;
        state.step += 1;
        last_loss = Some(values);
        state.last_loss = last_loss;
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        if state.step % 10 == 0 || state.step == 1 {
            state.history.push(HistoryRow {
                step: state.step,
                seconds,
                lr,
                tokens: state.tokens,
                loss: values,
            });
        }
        let rate = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
        if window_start.elapsed().as_secs_f64() > 30.0 {
            (window_tokens, window_start) = (0, Instant::now());
        }
        match cfg.stop {
            Stop::Steps(_) => bar.set_position(state.step as u64),
            Stop::Minutes(_) => bar.set_position(seconds as u64),
        }
        bar.set_message(format!(
            "loss {:.4} (hidden {:.4} attn {:.4} cos {:.4}) {:.0} tok/s",
            values.total, values.hidden, values.attention, values.cosine, rate
        ));
        if last_checkpoint.elapsed().as_secs_f64() >= job.checkpoint_seconds {
            state.seconds = seconds;
            save_state(&state_file, &state, &opt, &HashMap::new())?;
            last_checkpoint = Instant::now();
        }
    }
    bar.finish_and_clear();
    state.seconds = seconds_before + started.elapsed().as_secs_f64();
    if let (Some(l), Some(last)) = (last_loss, state.history.last()) {
        if last.step != state.step {
            state.history.push(HistoryRow {
                step: state.step,
                seconds: state.seconds,
                lr: lr_at(&cfg, state.step.saturating_sub(1), state.seconds),
                tokens: state.tokens,
                loss: l,
            });
        }
    }
    // The final student as plain tensors (eval on the fast path).
    let mut final_tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in &opt.vars {
        final_tensors.insert(name.clone(), var.as_tensor().detach().copy()?);
    }
    final_tensors.extend(pooler_tensors(&teacher)?);
    let final_student = student_backbone(&final_tensors, &config)?;
    let agreement = held_out.agreement(&final_student, &map, heads, cfg.weights)?;
    let teacher_params = teacher.config.shape.param_counts().backbone();
    let student_params = config.shape.param_counts().backbone();
    let record = DistillRecord {
        format: DISTILL_FORMAT.to_string(),
        teacher: job.teacher_dir.display().to_string(),
        teacher_sha256: teacher_sha,
        recipe: cfg.clone(),
        seed: cfg.seed,
        corpus: job.corpus_source.clone(),
        corpus_sha256: corpus_sha256(job.corpus),
        corpus_sentences: job.corpus.len(),
        corpus_tokens: count_tokens(&tokenizer, job.corpus)?,
        steps: state.step,
        tokens_seen: state.tokens,
        train_seconds: state.seconds,
        final_loss: last_loss.or_else(|| state.history.last().map(|h| h.loss)),
        init: state.init,
        held_out: agreement,
        parameters: ParamReport {
            teacher: teacher_params,
            student: student_params,
            ratio: student_params as f64 / teacher_params as f64,
        },
        history: state.history,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json =
        serde_json::to_string_pretty(&record).map_err(|e| TrainError::Data(e.to_string()))?;
    let mut written = config.clone();
    written.hidden_dropout_prob = teacher_config.hidden_dropout_prob;
    written.attention_probs_dropout_prob = teacher_config.attention_probs_dropout_prob;
    adalbert_model::export::write_albert_dir(
        &job.out,
        &written,
        &final_tensors,
        job.teacher_dir,
        &[("distill.json", json)],
    )?;
    std::fs::remove_file(&state_file).ok();
    Ok(DistillOutcome {
        out: job.out.clone(),
        record,
        tensors: final_tensors,
        step_seconds,
    })
}
