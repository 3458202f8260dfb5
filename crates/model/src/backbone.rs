//! The frozen, shareable backbone (Hugging Face's `AlbertModel`): embeddings, transformer and
//! optional pooler, with input checks and the choice of what runs its eval forward.
//!
//! Training and candle-path inference run the modules of [`crate::albert`]; an eval forward
//! runs on adalbert's kernels ([`crate::fast_encoder`]) where [`crate::exec::inference_path`]
//! chooses them for this backbone's [`Kernels`].

use std::path::Path;

use candle_core::{DType, Tensor};

use crate::adapters::TaskParams;
use crate::albert::{pool, AlbertEmbeddings, AlbertTransformer, Pooler};
use crate::checkpoint::Checkpoint;
use crate::config::EncoderConfig;
use crate::error::{ModelError, Result};
use crate::exec::{Isa, Kernels};
use crate::fast_encoder::{FastEncoder, FastPath};
use crate::nn::Ctx;
use crate::route::Route;
use crate::weights::Weights;

/// Outputs of one encoder pass.
pub struct EncoderOutput {
    /// [B, S, H]
    pub last_hidden_state: Tensor,
    /// [B, H]; `None` when the checkpoint has no pooler.
    pub pooler_output: Option<Tensor>,
}

/// The frozen, shareable backbone: embeddings, transformer and (optional) pooler.
pub struct Backbone {
    pub config: EncoderConfig,
    pub embeddings: AlbertEmbeddings,
    pub encoder: AlbertTransformer,
    pub pooler: Option<Pooler>,
    /// The eval forward's kernels, and the weights packed for them on first use.
    fast: FastPath,
}

impl Backbone {
    /// Builds the backbone from checkpoint tensors; a missing pooler is allowed (sentence
    /// encoders such as all-MiniLM-L6-v2 may ship without one).
    pub fn load(checkpoint: &Checkpoint, config: &EncoderConfig) -> Result<Self> {
        Self::from_weights(&Weights::new(checkpoint), config)
    }

    /// [`Backbone::load`] from the checkpoint's root `vb`.
    pub fn from_weights(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let pooler = vb.pp(config.shape.family.module_names().pooler);
        let pooler = if pooler.contains("weight") {
            Some(Pooler::load(pooler, config)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            embeddings: AlbertEmbeddings::load(vb.pp("embeddings"), config)?,
            encoder: AlbertTransformer::load(vb, config)?,
            pooler,
            fast: FastPath::new(Kernels::Auto),
        })
    }

    /// Loads `config.json` and the weights of a model directory.
    pub fn from_dir(dir: &Path) -> Result<(Self, Checkpoint)> {
        let config = EncoderConfig::from_path(dir)?;
        let checkpoint = Checkpoint::open(dir)?;
        Ok((Self::load(&checkpoint, &config)?, checkpoint))
    }

    /// Chooses the inference kernels (and drops any packed weights, so this is also the way
    /// to make the fast path see weights changed after a forward pass).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.fast = FastPath::new(kernels);
    }

    /// The instruction set the eval forward runs on, or `None` for candle's ops.
    pub fn inference_isa(&self) -> Option<Isa> {
        self.fast.get(self).map(FastEncoder::isa)
    }

    /// What runs the eval forward's matrix multiplies (`candle`, `avx512`, `portable`,
    /// `amx-bf16`, ...).
    pub fn inference_kernels(&self) -> String {
        self.fast
            .get(self)
            .map_or_else(|| "candle".to_string(), FastEncoder::describe)
    }

    /// Checks ids against the vocabulary and lengths against the position table, so bad input
    /// is a clear error rather than an index panic inside a kernel.
    pub fn check_inputs(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<()> {
        let shape = &self.config.shape;
        let (_, seq_len) = input_ids.dims2()?;
        if seq_len == 0 {
            return Err(ModelError::Input("empty sequence".into()));
        }
        if seq_len > shape.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence length {seq_len} exceeds max_position_embeddings {}",
                shape.max_position_embeddings
            )));
        }
        if token_type_ids.dims() != input_ids.dims() {
            return Err(ModelError::Input(format!(
                "token_type_ids shape {:?} differs from input_ids shape {:?}",
                token_type_ids.dims(),
                input_ids.dims()
            )));
        }
        let (min_id, max_id) = id_range(input_ids)?;
        if min_id < 0 || max_id as usize >= shape.vocab_size {
            return Err(ModelError::Input(format!(
                "token id out of range [0, {}): found {min_id}..={max_id}",
                shape.vocab_size
            )));
        }
        let (min_type, max_type) = id_range(token_type_ids)?;
        if min_type < 0 || max_type as usize >= shape.type_vocab_size {
            return Err(ModelError::Input(format!(
                "token type id out of range [0, {})",
                shape.type_vocab_size
            )));
        }
        Ok(())
    }

    /// Runs the encoder. `attention_mask` is 1 for real tokens and 0 for padding, [B, S].
    /// `task` adds one task's parameters to every row; `None` runs the bare backbone.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        task: Option<&TaskParams>,
        ctx: &Ctx,
    ) -> Result<EncoderOutput> {
        let route = match task {
            Some(t) => Route::Task(t),
            None => Route::Backbone,
        };
        self.forward_routed(input_ids, token_type_ids, attention_mask, &route, ctx)
    }

    /// Runs the encoder with task parameters chosen per row ([`Route::Rows`]): one batch can
    /// mix tasks while the backbone's matrices are applied to the whole batch at once.
    pub fn forward_routed(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        route: &Route,
        ctx: &Ctx,
    ) -> Result<EncoderOutput> {
        self.check_inputs(input_ids, token_type_ids)?;
        let (batch, seq_len) = input_ids.dims2()?;
        route.check(batch)?;
        if attention_mask.dims() != input_ids.dims() {
            return Err(ModelError::Input(format!(
                "attention_mask shape {:?} differs from input_ids shape {:?}",
                attention_mask.dims(),
                input_ids.dims()
            )));
        }
        let fast = if ctx.train { None } else { self.fast.get(self) };
        let hidden = match fast {
            Some(fast) => {
                let parts = route.token_parts(batch, seq_len);
                fast.forward(self, input_ids, token_type_ids, attention_mask, &parts, ctx)?
            }
            None => {
                let embeddings = self
                    .embeddings
                    .forward(input_ids, token_type_ids, route, ctx)?;
                let mask_bias = mask_bias(attention_mask)?;
                self.encoder.forward(&embeddings, &mask_bias, route, ctx)?
            }
        };
        self.pool(hidden, route)
    }

    /// Pooler outputs (each row with its task's pooler, else the backbone's) next to the
    /// last hidden state.
    fn pool(&self, last_hidden_state: Tensor, route: &Route) -> Result<EncoderOutput> {
        let has_pooler = self.pooler.is_some() || route.any_task(|t| t.pooler.is_some());
        let pooler_output = if has_pooler {
            let cls = cls_pool(&last_hidden_state)?;
            let pooled = route.per_task(&[&cls], |task, rows| {
                match (task.and_then(|t| t.pooler.as_ref()), &self.pooler) {
                    (Some(dense), _) => pool(dense, &rows[0]),
                    (None, Some(pooler)) => pooler.forward(&rows[0]),
                    (None, None) => Err(ModelError::Input(
                        "some rows need a pooler the backbone does not have".into(),
                    )),
                }
            })?;
            Some(pooled)
        } else {
            None
        };
        Ok(EncoderOutput {
            last_hidden_state,
            pooler_output,
        })
    }

    /// Parameter counts of this backbone by part; the pooler counts only when the checkpoint
    /// has one (sentence encoders may ship without).
    pub fn param_counts(&self) -> adalbert_core::ParamCounts {
        let mut counts = self.config.shape.param_counts();
        if self.pooler.is_none() {
            counts.pooler = 0;
        }
        counts
    }

    /// Number of layer applications (where per-application adapters attach).
    pub fn num_applications(&self) -> usize {
        self.config.shape.applications()
    }
}

/// Smallest and largest value of an integer id tensor (one conversion, two reductions).
fn id_range(ids: &Tensor) -> Result<(i64, i64)> {
    let flat = ids.to_dtype(DType::I64)?.flatten_all()?;
    Ok((
        flat.min(0)?.to_scalar::<i64>()?,
        flat.max(0)?.to_scalar::<i64>()?,
    ))
}

/// Additive attention bias [B, 1, 1, S]: 0 for real tokens and the most negative f32 for
/// padding, as Hugging Face does (`torch.finfo(dtype).min`).
fn mask_bias(attention_mask: &Tensor) -> Result<Tensor> {
    let (b, s) = attention_mask.dims2()?;
    let m = attention_mask.to_dtype(DType::F32)?;
    let bias = ((m.ones_like()? - m)? * f32::MIN as f64)?;
    Ok(bias.reshape((b, 1, 1, s))?)
}

/// Mask-aware mean over the sequence (sentence-transformers' pooling), [B, S, H] -> [B, H].
pub fn mean_pool(last_hidden_state: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let m = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = last_hidden_state.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// The `[CLS]` vector, [B, S, H] -> [B, H].
pub fn cls_pool(last_hidden_state: &Tensor) -> Result<Tensor> {
    Ok(last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use adalbert_core::{Activation, Projection, Site, Sublayer};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::adapters::{Bottleneck, Lora, SiteParams, TaskLayer};
    use crate::exec::TrainKernels;
    use crate::nn::{LayerNorm, Linear};

    /// Small deterministic values.
    fn values(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 7919 + seed * 104_729) % 201) as f32 / 1000.0 - 0.1)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// A task with something at every site, including sites no adapter kind fills yet.
    fn every_site(backbone: &Backbone) -> TaskParams {
        let h = backbone.config.shape.hidden_size;
        let (m, mut seed) = (3, 0);
        let mut next = |shape: &[usize]| {
            seed += 1;
            values(shape, seed)
        };
        let mut sites = Projection::ALL.map(Site::Lora).to_vec();
        for s in [Sublayer::Attention, Sublayer::FeedForward] {
            sites.extend([Site::Parallel(s), Site::Sequential(s), Site::LayerNorm(s)]);
        }
        let layers = (0..backbone.num_applications())
            .map(|_| {
                let mut layer = TaskLayer::default();
                for &site in &sites {
                    let params = match site {
                        Site::Lora(_) => SiteParams::Lora(Lora {
                            a: next(&[m, h]),
                            b: next(&[h, m]),
                            scale: 0.5,
                        }),
                        Site::LayerNorm(_) => SiteParams::LayerNorm(LayerNorm {
                            weight: (next(&[h]) + 1.0).unwrap(),
                            bias: next(&[h]),
                            eps: 1e-12,
                        }),
                        _ => SiteParams::Bottleneck(Bottleneck {
                            down: Linear::new(next(&[m, h]), Some(next(&[m]))),
                            up: Linear::new(next(&[h, m]), Some(next(&[h]))),
                            activation: Activation::GeluNew,
                        }),
                    };
                    layer.insert(site, params);
                }
                layer
            })
            .collect();
        TaskParams {
            layers,
            sharing: crate::Sharing::PerApplication,
            embeddings_layer_norm: None,
            pooler: None,
            classifier: Linear::new(next(&[2, h]), Some(next(&[2]))),
        }
    }

    /// Every site is read by every path: candle's ops, the eval kernels and the fused
    /// training ops give the same hidden states for a task with parameters at all of them.
    #[test]
    fn every_site_runs_alike_on_every_path() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/albert_groups");
        let (mut backbone, _) = Backbone::from_dir(&dir).unwrap();
        let task = every_site(&backbone);
        let ids = Tensor::new(&[[2u32, 17, 33, 3, 0], [2, 5, 8, 9, 3]], &Device::Cpu).unwrap();
        let types = ids.zeros_like().unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 0], [1, 1, 1, 1, 1]], &Device::Cpu).unwrap();
        let run = |backbone: &Backbone, ctx: &Ctx| {
            let out = backbone.forward(&ids, &types, &mask, Some(&task), ctx);
            out.unwrap().last_hidden_state
        };
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
            d.max(0).unwrap().to_scalar().unwrap()
        };
        backbone.set_kernels(Kernels::Candle);
        let want = run(&backbone, &Ctx::eval());
        let bare = backbone.forward(&ids, &types, &mask, None, &Ctx::eval());
        assert!(diff(&want, &bare.unwrap().last_hidden_state) > 1e-3);
        let train = |kernels| Ctx::train(0.1, 3).with_train_kernels(kernels);
        let want_train = run(&backbone, &train(None));
        for isa in [Isa::Portable, Isa::Avx512] {
            if !isa.available() {
                continue;
            }
            backbone.set_kernels(Kernels::Isa(isa));
            assert_eq!(backbone.inference_isa(), Some(isa));
            let d = diff(&run(&backbone, &Ctx::eval()), &want);
            assert!(d < 2e-5, "eval kernels on {isa:?}: {d}");
            let d = diff(
                &run(&backbone, &train(Some(TrainKernels::all(isa)))),
                &want_train,
            );
            assert!(d < 1e-4, "fused training ops on {isa:?}: {d}");
        }
    }
}
