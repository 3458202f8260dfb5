//! The inference forward pass of a [`Backbone`] on adalbert's kernels
//! ([`adalbert_kernels`]), chosen by [`crate::exec::inference_path`].
//!
//! Built once per backbone (on its first eval forward): every linear layer's weight is
//! packed for [`gemm`], the query/key/value projections are fused into one `[H, 3H]` matrix
//! with one bias, and LayerNorm parameters are copied to plain vectors. Task parameters are
//! applied per row range at the sites the candle path applies them ([`adalbert_core::site`]):
//! LoRA updates into the fused QKV output, everything else at each sublayer's end
//! ([`SublayerEnd`]). Their (small) weights are packed on first use and kept, except
//! trainable variables, which change in place between calls.
//!
//! Activations live in flat row-major `[tokens, width]` buffers; the candle tensor is built
//! only for the final hidden state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use adalbert_kernels::act::Act;
use adalbert_kernels::attention::{attention, attention_bf16, train_forward, AttentionShape};
use adalbert_kernels::bf16::{self, PackedBf16};
use adalbert_kernels::gemm::{gemm, gemm_norm, gemm_serial, Epilogue, PackedB, RowNorm};
use adalbert_kernels::int8::{self, Int8Isa, PackedI8};
use adalbert_kernels::norm::{add_layer_norm, add_layer_norm_serial, Norm};
use adalbert_kernels::{par_row_ranges, Isa};
use candle_core::{DType, Device, Storage, Tensor, TensorId};

use crate::adapters::{Bottleneck, Lora, Projection, Sublayer, SublayerEnd, TaskParams};
use crate::albert::AlbertLayer;
use crate::backbone::Backbone;
use crate::error::{ModelError, Result};
use crate::exec::{describe, inference_path, InferencePath, Kernels};
use crate::exec::{kernel_act, Bf16Isa, Precision};
use crate::nn::{Ctx, LayerNorm, Linear, Recorded};

/// Runs `f` on a tensor's f32 values without copying them when it is a contiguous f32 CPU
/// tensor (copying otherwise).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((lo, hi))) = (&*storage, layout.contiguous_offsets()) {
            let all = cpu.as_slice::<f32>()?;
            return Ok(f(&all[lo..hi]));
        }
    }
    let v = t
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_vec1::<f32>()?;
    Ok(f(&v))
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    with_f32(t, |s| s.to_vec())
}

fn norm(ln: &LayerNorm) -> Result<Norm> {
    Ok(Norm {
        gamma: to_vec(&ln.weight)?,
        beta: to_vec(&ln.bias)?,
        eps: ln.eps as f32,
    })
}

/// A sublayer's LayerNorm: the backbone's, or a task's from the cache.
enum NormRef<'a> {
    Backbone(&'a Norm),
    Task(Arc<Norm>),
}

impl std::ops::Deref for NormRef<'_> {
    type Target = Norm;
    fn deref(&self) -> &Norm {
        match self {
            NormRef::Backbone(n) => n,
            NormRef::Task(n) => n,
        }
    }
}

enum Weights {
    F32(PackedB),
    Bf16(PackedBf16),
    Int8(PackedI8, Int8Isa),
}

/// A linear layer packed for [`gemm`] (or [`bf16::gemm`], [`int8::gemm`]).
struct PackedLinear {
    w: Weights,
    bias: Option<Vec<f32>>,
}

impl PackedLinear {
    fn new(lin: &Linear, isa: Isa, precision: Precision) -> Result<Self> {
        let (n, k) = lin.weight.dims2()?;
        let w = with_f32(&lin.weight, |w| Self::pack(w, n, k, isa, precision))?;
        Ok(Self {
            w,
            bias: lin.bias.as_ref().map(to_vec).transpose()?,
        })
    }

    fn pack(w: &[f32], n: usize, k: usize, isa: Isa, precision: Precision) -> Weights {
        match precision {
            Precision::F32 => Weights::F32(PackedB::from_weight(w, n, k)),
            Precision::Bf16(kernel) if isa == Isa::Avx512 => {
                Weights::Bf16(PackedBf16::for_kernel(kernel, w, n, k))
            }
            Precision::Bf16(_) => Weights::Bf16(PackedBf16::widened(w, n, k)),
            Precision::Int8(kernel) => Weights::Int8(PackedI8::from_weight(w, n, k), kernel),
        }
    }

    fn n(&self) -> usize {
        match &self.w {
            Weights::F32(p) => p.n(),
            Weights::Bf16(p) => p.n(),
            Weights::Int8(p, _) => p.n(),
        }
    }

    /// `out = act(x W^T + b)` for `m` rows.
    fn forward(&self, isa: Isa, m: usize, x: &[f32], out: &mut [f32], act: Option<Act>) {
        let ep = Epilogue {
            bias: self.bias.as_deref(),
            act,
            ..Epilogue::default()
        };
        match &self.w {
            Weights::F32(p) => gemm(isa, m, x, p.k(), p, out, p.n(), &ep),
            Weights::Bf16(p) => bf16::gemm(isa, m, x, p.k(), p, out, p.n(), &ep),
            Weights::Int8(p, kernel) => int8::gemm(*kernel, m, x, p.k(), p, out, p.n(), &ep),
        }
    }

    /// `out = LayerNorm(x W^T + b + residual)` (the LayerNorm fused into the product on
    /// fp32 and int8 weights).
    fn forward_norm(&self, isa: Isa, m: usize, x: &[f32], out: &mut [f32], post: RowNorm) {
        let ep = Epilogue {
            bias: self.bias.as_deref(),
            ..Epilogue::default()
        };
        match &self.w {
            Weights::F32(p) => gemm_norm(isa, m, x, p.k(), p, out, &ep, post),
            Weights::Int8(p, kernel) => int8::gemm_norm(*kernel, m, x, p.k(), p, out, &ep, post),
            Weights::Bf16(_) => {
                self.forward(isa, m, x, out, None);
                add_layer_norm(isa, out, Some(post.residual), post.norm);
            }
        }
    }
}

struct FastLayer {
    qkv: PackedLinear,
    dense: PackedLinear,
    ln_attention: Norm,
    ffn: PackedLinear,
    ffn_output: PackedLinear,
    ln_output: Norm,
    activation: Act,
    heads: usize,
    head_dim: usize,
}

impl FastLayer {
    fn new(layer: &AlbertLayer, isa: Isa, precision: Precision) -> Result<Self> {
        let at = &layer.attention;
        // Fused QKV: rows [q; k; v] of a [3H, H] weight.
        let (weight, bias) = at.stacked_qkv()?;
        let (n, k) = weight.dims2()?;
        Ok(Self {
            qkv: PackedLinear {
                w: with_f32(&weight, |w| PackedLinear::pack(w, n, k, isa, precision))?,
                bias: Some(to_vec(&bias)?),
            },
            dense: PackedLinear::new(&at.dense, isa, precision)?,
            ln_attention: norm(&at.layer_norm)?,
            ffn: PackedLinear::new(&layer.ffn, isa, precision)?,
            ffn_output: PackedLinear::new(&layer.ffn_output, isa, precision)?,
            ln_output: norm(&layer.full_layer_layer_norm)?,
            activation: kernel_act(layer.activation),
            heads: at.num_attention_heads,
            head_dim: at.attention_head_size,
        })
    }
}

/// The eval forward's path for one backbone: the kernels asked for, and the backbone packed
/// for them on first use (`None` where [`inference_path`] chose candle's ops or the packing
/// refused the backbone).
pub(crate) struct FastPath {
    kernels: Kernels,
    packed: OnceLock<Option<FastEncoder>>,
}

impl FastPath {
    pub(crate) fn new(kernels: Kernels) -> Self {
        Self {
            kernels,
            packed: OnceLock::new(),
        }
    }

    /// `backbone` packed for adalbert's kernels, or `None` where candle's ops run.
    pub(crate) fn get(&self, backbone: &Backbone) -> Option<&FastEncoder> {
        self.packed
            .get_or_init(|| match inference_path(self.kernels) {
                InferencePath::Candle => None,
                InferencePath::Kernels { isa, precision } => {
                    FastEncoder::new(backbone, isa, precision).ok()
                }
            })
            .as_ref()
    }
}

/// Reusable activation buffers (taken for one forward, then returned).
#[derive(Default)]
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attn: Vec<f32>,
    inter: Vec<f32>,
    small: Vec<f32>,
    /// The feed-forward intermediate in bf16 tiles (compressed path on AMX).
    mid: bf16::Tiles16,
}

fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// The backbone, packed for the eval kernels.
pub(crate) struct FastEncoder {
    isa: Isa,
    precision: Precision,
    embedding_ln: Norm,
    projection: Option<PackedLinear>,
    groups: Vec<Vec<FastLayer>>,
    buffers: Mutex<Option<Buffers>>,
    /// Task weights (adapters, LoRA) packed on first use (see [`cached`]).
    task_packs: Mutex<HashMap<TensorId, Arc<TaskPack>>>,
    /// Task LayerNorms as plain vectors (see [`cached`]).
    task_norms: Mutex<HashMap<TensorId, Arc<Norm>>>,
}

thread_local! {
    /// Per-thread bottleneck activations (`rows x width`) for [`FastEncoder::bottleneck`].
    static BOTTLENECK_TMP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `make()` for task tensors, kept by the first tensor's id so a bundle's weights are
/// converted once. Never cached when any tensor is a training `Var`: those change in place
/// under the same id. The cache is cleared when full, so hot-reloaded bundles cannot grow it
/// forever.
fn cached<T>(
    cache: &Mutex<HashMap<TensorId, Arc<T>>>,
    tensors: &[&Tensor],
    make: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if tensors.iter().any(|t| t.is_variable()) {
        return Ok(Arc::new(make()?));
    }
    let key = tensors[0].id();
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(make()?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= TASK_PACK_CAP {
            c.clear();
        }
        c.insert(key, v.clone());
    }
    Ok(v)
}

/// A task matrix packed for [`gemm`], with its bias.
struct TaskPack {
    w: PackedB,
    bias: Option<Vec<f32>>,
}

/// Most task matrices kept packed (a houlsby adapter uses 4 per layer application).
const TASK_PACK_CAP: usize = 4096;

/// One task's rows: `(first token row, token rows, task)`.
type Part<'a> = (usize, usize, Option<&'a TaskParams>);

/// Where one layer application runs: the batch's shape, its tasks and which application.
#[derive(Clone, Copy)]
struct LayerStep<'a> {
    batch: usize,
    seq: usize,
    parts: &'a [Part<'a>],
    application: usize,
}

impl FastEncoder {
    /// Packs the backbone's weights. Refuses a backbone whose weights are trainable variables (full
    /// fine-tuning): a packed copy would go stale at the next optimizer step.
    pub(crate) fn new(backbone: &Backbone, isa: Isa, precision: Precision) -> Result<Self> {
        let mut variable = backbone.embeddings.word_embeddings.is_variable();
        for g in &backbone.encoder.albert_layer_groups {
            for l in &g.albert_layers {
                let a = &l.attention;
                for lin in [&a.query, &a.key, &a.value, &a.dense, &l.ffn, &l.ffn_output] {
                    variable |= lin.weight.is_variable();
                }
                variable |= a.layer_norm.weight.is_variable();
            }
        }
        if variable {
            return Err(ModelError::Input(
                "backbone weights are trainable variables: not packing them".into(),
            ));
        }
        let projection = backbone
            .encoder
            .embedding_hidden_mapping_in
            .as_ref()
            .map(|p| PackedLinear::new(p, isa, precision))
            .transpose()?;
        let groups = backbone
            .encoder
            .albert_layer_groups
            .iter()
            .map(|g| {
                g.albert_layers
                    .iter()
                    .map(|l| FastLayer::new(l, isa, precision))
                    .collect()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            isa,
            precision,
            embedding_ln: norm(&backbone.embeddings.layer_norm)?,
            projection,
            groups,
            buffers: Mutex::new(None),
            task_packs: Mutex::new(HashMap::new()),
            task_norms: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// What runs the matrix multiplies ([`describe`]), e.g. `avx512`, `amx-bf16`,
    /// `avx512-vnni` or `bf16 weights on avx512`.
    pub(crate) fn describe(&self) -> String {
        describe(InferencePath::Kernels {
            isa: self.isa,
            precision: self.precision,
        })
    }

    /// The last hidden state `[B, S, H]` (the caller has validated the inputs); records
    /// hidden states and attention probabilities where `ctx` asks ([`Ctx::recording`]).
    pub(crate) fn forward(
        &self,
        backbone: &Backbone,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        parts: &[Part],
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let mut bufs = self
            .buffers
            .lock()
            .ok()
            .and_then(|mut b| b.take())
            .unwrap_or_default();
        // Recorded here and handed to `ctx` after: the context is not `Sync`.
        let mut record = ctx.is_recording().then(Recorded::default);
        // Run on the rayon pool so the parallel kernels split work with a warm worker.
        let out = rayon::scope(|_| {
            self.forward_inner(
                backbone,
                input_ids,
                token_type_ids,
                attention_mask,
                parts,
                &mut bufs,
                record.as_mut(),
            )
        });
        if let Some(mut rec) = record {
            ctx.record(|r| {
                r.hidden_states.append(&mut rec.hidden_states);
                r.attentions.append(&mut rec.attentions);
            });
        }
        if let Ok(mut b) = self.buffers.lock() {
            *b = Some(bufs);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_inner(
        &self,
        backbone: &Backbone,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        parts: &[Part],
        bufs: &mut Buffers,
        mut record: Option<&mut Recorded>,
    ) -> Result<Tensor> {
        let isa = self.isa;
        let c = &backbone.config;
        let (batch, seq) = input_ids.dims2()?;
        let tokens = batch * seq;
        let (e, h) = (c.shape.embedding_size, c.shape.hidden_size);
        let ids = input_ids
            .to_dtype(DType::I64)?
            .flatten_all()?
            .to_vec1::<i64>()?;
        let types = token_type_ids
            .to_dtype(DType::I64)?
            .flatten_all()?
            .to_vec1::<i64>()?;
        let mask: Vec<f32> = attention_mask
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|m| (1.0 - m) * f32::MIN)
            .collect();

        // Embeddings: word + token type + position, then LayerNorm (per task).
        let mut emb = vec![0.0f32; tokens * e];
        let emb_ref = &backbone.embeddings;
        with_f32(&emb_ref.word_embeddings, |word| {
            with_f32(&emb_ref.token_type_embeddings, |tt| {
                with_f32(&emb_ref.position_embeddings, |pos| {
                    for (t, row) in emb.chunks_exact_mut(e).enumerate() {
                        let (w0, t0, p0) =
                            (ids[t] as usize * e, types[t] as usize * e, (t % seq) * e);
                        for (j, o) in row.iter_mut().enumerate() {
                            *o = word[w0 + j] + tt[t0 + j] + pos[p0 + j];
                        }
                    }
                })
            })
        })???;
        for &(r0, n, task) in parts {
            let ln = match task.and_then(|t| t.embeddings_layer_norm.as_ref()) {
                Some(l) => &*self.task_norm(l)?,
                None => &self.embedding_ln,
            };
            add_layer_norm(isa, &mut emb[r0 * e..(r0 + n) * e], None, ln);
        }
        let mut x = match &self.projection {
            Some(p) => {
                let mut out = vec![0.0f32; tokens * h];
                p.forward(isa, tokens, &emb, &mut out, None);
                out
            }
            None => emb,
        };

        let hidden = |x: &[f32]| Tensor::from_vec(x.to_vec(), (batch, seq, h), &Device::Cpu);
        if let Some(r) = record.as_deref_mut() {
            r.hidden_states.push(hidden(&x)?);
        }
        for application in 0..c.shape.applications() {
            let (group, j) = c.shape.stored_layer(application);
            let layer = &self.groups[group][j];
            let step = LayerStep {
                batch,
                seq,
                parts,
                application,
            };
            self.layer(layer, &mut x, &mask, step, bufs, record.as_deref_mut())?;
            if let Some(r) = record.as_deref_mut() {
                r.hidden_states.push(hidden(&x)?);
            }
        }
        Ok(Tensor::from_vec(x, (batch, seq, h), &Device::Cpu)?)
    }

    fn layer(
        &self,
        l: &FastLayer,
        x: &mut [f32],
        mask: &[f32],
        step: LayerStep,
        bufs: &mut Buffers,
        record: Option<&mut Recorded>,
    ) -> Result<()> {
        let LayerStep {
            batch,
            seq,
            parts,
            application,
        } = step;
        let isa = self.isa;
        let tokens = batch * seq;
        let h = l.heads * l.head_dim;
        let f = l.ffn.n();

        // Attention.
        let qkv = sized(&mut bufs.qkv, tokens * 3 * h);
        l.qkv.forward(isa, tokens, x, qkv, None);
        for &(r0, n, task) in parts {
            for projection in Projection::ALL {
                if let Some(lora) = task.and_then(|t| t.lora(application, projection)) {
                    let qkv_rows = &mut qkv[r0 * 3 * h..(r0 + n) * 3 * h];
                    let x_rows = &x[r0 * h..(r0 + n) * h];
                    let col0 = projection.index() * h;
                    self.lora(lora, n, x_rows, h, qkv_rows, col0, 3 * h, &mut bufs.small)?;
                }
            }
        }
        let context = sized(&mut bufs.context, tokens * h);
        let shape = AttentionShape {
            batch,
            seq,
            heads: l.heads,
            head_dim: l.head_dim,
        };
        // Attention's two products stay fp32 except on AMX-BF16: per layer they are a small
        // share of the work (S / (6 H) of the linear layers' at S tokens), and their
        // operands change per head, so quantizing them would cost a pass per head.
        match self.precision {
            // The probabilities exist only inside the inference kernel: a recording pass
            // takes the training forward, which returns them.
            _ if record.is_some() => {
                let scale = 1.0 / (l.head_dim as f32).sqrt();
                let (out, probs) = train_forward(isa, qkv, mask, shape, scale, None);
                context.copy_from_slice(&out);
                let probs = Tensor::from_vec(probs, (batch, l.heads, seq, seq), &Device::Cpu)?;
                if let Some(r) = record {
                    r.attentions.push(probs);
                }
            }
            Precision::Bf16(Bf16Isa::Amx) => attention_bf16(isa, qkv, mask, shape, context),
            _ => attention(isa, qkv, mask, shape, context),
        }
        // a = LayerNorm(dense(context) [+ adapters] + x). The LayerNorm runs inside the last
        // product before it: the dense projection when one task without attention adapters
        // covers the batch, else each task's adapter (or a separate pass).
        let a = sized(&mut bufs.attn, tokens * h);
        let attention_end = Sublayer::Attention;
        match self.fusable_norm(parts, application, attention_end, &l.ln_attention)? {
            Some(ln) => {
                let post = RowNorm {
                    norm: &ln,
                    residual: x,
                };
                l.dense.forward_norm(isa, tokens, context, a, post);
            }
            None => {
                l.dense.forward(isa, tokens, context, a, None);
                self.end_sublayer(parts, application, attention_end, &l.ln_attention, x, a)?;
            }
        }

        // Feed-forward: the output overwrites x (no longer needed), then x = LN(x + a),
        // fused like the attention's LayerNorm.
        let ffn_end = Sublayer::FeedForward;
        let fused = self.fusable_norm(parts, application, ffn_end, &l.ln_output)?;
        match (&l.ffn.w, &l.ffn_output.w) {
            // Compressed path on AMX: the intermediate stays in bf16 tiles.
            (Weights::Bf16(w1), Weights::Bf16(w2)) if w1.is_amx() && w2.is_amx() => {
                let ep1 = Epilogue {
                    bias: l.ffn.bias.as_deref(),
                    act: Some(l.activation),
                    ..Epilogue::default()
                };
                let ep2 = Epilogue {
                    bias: l.ffn_output.bias.as_deref(),
                    ..Epilogue::default()
                };
                bf16::ffn(isa, tokens, a, w1, &ep1, w2, x, &ep2, &mut bufs.mid);
                if let Some(ln) = &fused {
                    add_layer_norm(isa, x, Some(a), ln);
                }
            }
            _ => {
                let inter = sized(&mut bufs.inter, tokens * f);
                l.ffn.forward(isa, tokens, a, inter, Some(l.activation));
                match &fused {
                    Some(ln) => {
                        let post = RowNorm {
                            norm: ln,
                            residual: a,
                        };
                        l.ffn_output.forward_norm(isa, tokens, inter, x, post);
                    }
                    None => l.ffn_output.forward(isa, tokens, inter, x, None),
                }
            }
        }
        if fused.is_none() {
            self.end_sublayer(parts, application, ffn_end, &l.ln_output, a, x)?;
        }
        Ok(())
    }

    /// The LayerNorm ending `sublayer`, when one task without adapters there covers the
    /// batch: it can then run inside the sublayer's last product.
    fn fusable_norm<'n>(
        &self,
        parts: &[Part],
        application: usize,
        sublayer: Sublayer,
        backbone: &'n Norm,
    ) -> Result<Option<NormRef<'n>>> {
        let [(_, _, task)] = parts else {
            return Ok(None);
        };
        let end = SublayerEnd::of(*task, application, sublayer);
        if end.has_adapter() {
            return Ok(None);
        }
        self.sublayer_norm(end.layer_norm, backbone).map(Some)
    }

    /// `out = LayerNorm'(residual + s(out + p(residual)))` for each task's rows: the end of
    /// `sublayer` with each task's adapters ([`SublayerEnd`]), the LayerNorm inside the last
    /// adapter's product.
    fn end_sublayer(
        &self,
        parts: &[Part],
        application: usize,
        sublayer: Sublayer,
        backbone_norm: &Norm,
        residual: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let h = backbone_norm.gamma.len();
        for &(r0, n, task) in parts {
            let end = SublayerEnd::of(task, application, sublayer);
            let rows = r0 * h..(r0 + n) * h;
            let ln = self.sublayer_norm(end.layer_norm, backbone_norm)?;
            let post = RowNorm {
                norm: &ln,
                residual: &residual[rows.clone()],
            };
            let out = &mut out[rows];
            if let Some(ad) = end.parallel {
                let last = end.sequential.is_none().then_some(post);
                self.bottleneck(ad, n, Some(post.residual), out, last)?;
            }
            if let Some(ad) = end.sequential {
                self.bottleneck(ad, n, None, out, Some(post))?;
            }
            if !end.has_adapter() {
                add_layer_norm(self.isa, out, Some(post.residual), &ln);
            }
        }
        Ok(())
    }

    /// A sublayer's LayerNorm: the task's own, else the backbone's.
    fn sublayer_norm<'n>(
        &self,
        task: Option<&LayerNorm>,
        backbone: &'n Norm,
    ) -> Result<NormRef<'n>> {
        Ok(match task {
            Some(ln) => NormRef::Task(self.task_norm(ln)?),
            None => NormRef::Backbone(backbone),
        })
    }

    /// A task's LayerNorm as vectors (see [`cached`]).
    fn task_norm(&self, ln: &LayerNorm) -> Result<Arc<Norm>> {
        let tensors = [&ln.weight, &ln.bias];
        cached(&self.task_norms, &tensors, || norm(ln))
    }

    /// A task matrix packed for [`gemm`] (see [`cached`]).
    fn task_pack(&self, w: &Tensor, bias: Option<&Tensor>) -> Result<Arc<TaskPack>> {
        let tensors: Vec<&Tensor> = std::iter::once(w).chain(bias).collect();
        cached(&self.task_packs, &tensors, || {
            let (n, k) = w.dims2()?;
            Ok(TaskPack {
                w: with_f32(w, |ws| PackedB::from_weight(ws, n, k))?,
                bias: bias.map(to_vec).transpose()?,
            })
        })
    }

    /// `out (+)= alpha * act(x W^T + b)` for a task matrix.
    #[allow(clippy::too_many_arguments)]
    fn task_matmul(
        &self,
        w: &Tensor,
        bias: Option<&Tensor>,
        m: usize,
        x: &[f32],
        lda: usize,
        out: &mut [f32],
        ldc: usize,
        ep: Epilogue,
    ) -> Result<()> {
        let packed = self.task_pack(w, bias)?;
        let ep = Epilogue {
            bias: packed.bias.as_deref(),
            ..ep
        };
        gemm(self.isa, m, x, lda, &packed.w, out, ldc, &ep);
        Ok(())
    }

    /// `out += up(act(down(src or out)))`, then `out = LayerNorm(out + residual)` when `post`
    /// is given. Both products (and the LayerNorm) of a row chunk run in one task: at small
    /// batches the synchronisation around separate parallel steps would cost more than their
    /// arithmetic.
    fn bottleneck(
        &self,
        ad: &Bottleneck,
        m: usize,
        src: Option<&[f32]>,
        out: &mut [f32],
        post: Option<RowNorm>,
    ) -> Result<()> {
        let (width, h) = ad.down.weight.dims2()?;
        let fits = |x: &[f32]| x.len() == m * h;
        if !fits(out)
            || !src.is_none_or(fits)
            || !post.is_none_or(|p| fits(p.residual) && p.norm.gamma.len() == h)
            || ad.up.weight.dims2()? != (h, width)
        {
            return Err(ModelError::Input("adapter width mismatch".into()));
        }
        let down = self.task_pack(&ad.down.weight, ad.down.bias.as_ref())?;
        let up = self.task_pack(&ad.up.weight, ad.up.bias.as_ref())?;
        let (isa, act_fn) = (self.isa, kernel_act(ad.activation));
        // One chunk per thread at small batches, about 48 rows per chunk at large ones.
        let threads = rayon::current_num_threads().max(1);
        let chunks = (threads * (m / (threads * 48)).max(1)).clamp(1, m.max(1));
        par_row_ranges(out, h, chunks, |rows_range, o| {
            let rows = rows_range.len();
            if rows == 0 {
                return;
            }
            let span = rows_range.start * h..rows_range.end * h;
            BOTTLENECK_TMP.with(|t| {
                let mut t = t.borrow_mut();
                let t = sized(&mut t, rows * width);
                // The input: these rows of `src`, or of `out` itself (read before the second
                // product writes them).
                let input = src.map_or(&*o, |x| &x[span.clone()]);
                let ep = Epilogue {
                    bias: down.bias.as_deref(),
                    act: Some(act_fn),
                    ..Epilogue::default()
                };
                gemm_serial(isa, rows, input, h, &down.w, t, width, &ep);
                let ep = Epilogue {
                    bias: up.bias.as_deref(),
                    accumulate: true,
                    ..Epilogue::default()
                };
                gemm_serial(isa, rows, t, width, &up.w, o, h, &ep);
                if let Some(p) = post {
                    add_layer_norm_serial(isa, o, Some(&p.residual[span]), p.norm);
                }
            });
        });
        Ok(())
    }

    /// `qkv[:, col0..col0+H] += scale * (x A^T) B^T`.
    #[allow(clippy::too_many_arguments)]
    fn lora(
        &self,
        lora: &Lora,
        m: usize,
        x: &[f32],
        h: usize,
        qkv: &mut [f32],
        col0: usize,
        ldc: usize,
        tmp: &mut Vec<f32>,
    ) -> Result<()> {
        let (r, _) = lora.a.dims2()?;
        let t = sized(tmp, m * r);
        self.task_matmul(&lora.a, None, m, x, h, t, r, Epilogue::default())?;
        let ep = Epilogue {
            alpha: lora.scale as f32,
            accumulate: true,
            ..Epilogue::default()
        };
        self.task_matmul(&lora.b, None, m, t, r, &mut qkv[col0..], ldc, ep)
    }
}
