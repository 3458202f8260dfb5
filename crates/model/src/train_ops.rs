//! Differentiable fused ops for the training forward pass, on adalbert's kernels.
//!
//! Why they exist: in adapter and head-only training the backbone's linear weights are
//! frozen, yet candle's `matmul` backward always computes the weight gradient as well (half
//! of the backward FLOPs, thrown away), on its AVX2 kernel over transposed weight views; and
//! the composed LayerNorm, softmax and GELU are each a dozen elementwise passes (plus as many
//! in their backward graphs), every one a separate trip through memory, candle's thread pool
//! and a zero-initialized gradient buffer. The ops here do the same math in one pass each,
//! with hand-written backward passes, as candle custom ops, so candle's autograd still
//! drives training and gradients reach every trainable tensor:
//!
//! - [`FrozenLinear`]: `y = x W^T + b` for a frozen `W` packed once for
//!   [`crate::kernels::gemm`] (twice: `W^T` for the forward, `W` for `dx = dy W`); no weight
//!   gradient.
//! - [`layer_norm`]: LayerNorm over the last dimension with gradients for the input, gamma
//!   and beta (the adapter recipe trains every LayerNorm).
//! - [`masked_softmax`]: `softmax(scale * s + mask)` over the last dimension, the attention
//!   probabilities, with `ds = scale * y * (dy - sum(dy * y))`.
//! - [`gelu`]: GELU in the erf form and the tanh form (`gelu_new`) with exact derivatives.
//! - [`frozen_attention_block`] and [`frozen_ffn`]: a frozen sublayer's projections around
//!   its attention or activation as one node; [`residual_layer_norm`]: the sublayer's end
//!   (dropout, bottleneck adapter, residual, LayerNorm) as one node. candle's backward pays a
//!   zero-filled buffer and an add for every graph edge, so fewer, wider nodes are faster.
//!
//! Results match candle's composed ops up to float rounding (tested in both directions).
//! [`TrainKernels::detect`] decides whether training uses them; `ADALBERT_KERNELS=candle`
//! keeps candle's ops everywhere.

use std::fmt;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use crate::config::Activation;
use crate::error::{ModelError, Result};
use crate::kernels::gemm::{gemm, gemm_new, gemm_serial, Epilogue, PackedB};
use crate::kernels::{
    act, fast_path_disabled, multiversion, par_for, portable_requested, Isa, SendPtr,
};

/// Which fused ops the training forward uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainKernels {
    /// Instruction set of the elementwise kernels and the matrix multiply.
    pub isa: Isa,
    /// Whether frozen linear layers run on [`FrozenLinear`] (adalbert's GEMM) rather than
    /// candle's differentiable matmul.
    pub frozen_gemm: bool,
}

impl TrainKernels {
    /// The default for this machine: `None` under `ADALBERT_KERNELS=candle`; otherwise the
    /// fused elementwise ops on the best instruction set, and the frozen-weight GEMM where
    /// the CPU has AVX-512 (or `ADALBERT_KERNELS=portable` asks for it). Without AVX-512
    /// candle's AVX2/NEON matrix multiply outruns our plain-Rust tile, even though candle
    /// also computes the unused weight gradient.
    pub fn detect() -> Option<Self> {
        if fast_path_disabled() {
            return None;
        }
        let isa = Isa::detect();
        Some(Self {
            isa,
            frozen_gemm: isa == Isa::Avx512 || portable_requested(),
        })
    }

    /// Every fused op on `isa` (tests compare these against candle's composites).
    pub fn all(isa: Isa) -> Self {
        Self {
            isa: if isa.available() { isa } else { Isa::Portable },
            frozen_gemm: true,
        }
    }
}

/// Tells glibc's allocator to keep freed memory for reuse instead of handing it back to the
/// kernel. A training step allocates and frees the same few hundred megabytes of activations
/// and gradients (buffers of 1 to 30 MB); with glibc's defaults many of them come from fresh
/// `mmap`s or a re-grown heap, so every step pays a page fault and a page clear per 4 KiB
/// (measured on MiniLM 16x64 adapter training: 980K page faults over 8 steps, 170K with this,
/// and about 15% of the step time). Allocations up to 32 MiB (glibc's largest mmap threshold)
/// come from the heap, which is trimmed only past 1 GiB of free space at its top.
/// Process-wide; call once before training. A no-op off glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tunables; glibc rejects values out of range.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// The input gradient of a frozen op: `grad_op(dy)` as a graph leaf, or none when the input
/// carries no gradient (frozen all the way down, e.g. the embeddings in head-only training).
fn input_grad(
    arg: &Tensor,
    grad: &Tensor,
    grad_op: &impl CustomOp1,
) -> candle_core::Result<Option<Tensor>> {
    if !arg.track_op() {
        return Ok(None);
    }
    Ok(Some(grad.contiguous()?.apply_op1_no_bwd(grad_op)?))
}

fn op_error(op: &str, reason: impl fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: {reason}"))
}

/// The f32 elements of a contiguous tensor (the wrappers below make inputs contiguous).
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(op_error(op, "expects a contiguous input")),
    }
}

/// Width of the last dimension, refusing empty shapes (the kernels divide by it).
fn last_dim(l: &Layout, op: &str) -> candle_core::Result<usize> {
    match l.shape().dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => Err(op_error(op, format!("bad shape {:?}", l.shape().dims()))),
    }
}

/// Runs `f(first_row, rows_of_out)` over `out` split into blocks of `rows_per_task` rows of
/// width `width`, on the rayon pool. The split depends on the shape only, so results do not
/// depend on the thread count.
pub(crate) fn par_rows(
    out: &mut [f32],
    width: usize,
    rows_per_task: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let rows = out.len() / width;
    let tasks = rows.div_ceil(rows_per_task.max(1));
    let (ptr, len) = (SendPtr(out.as_mut_ptr()), out.len());
    par_for(tasks, |t| {
        let p = ptr;
        let lo = t * rows_per_task * width;
        let hi = ((t + 1) * rows_per_task * width).min(len);
        // SAFETY: tasks cover disjoint row ranges of `out`, which outlives `par_for`.
        let chunk = unsafe { std::slice::from_raw_parts_mut(p.0.add(lo), hi - lo) };
        f(lo / width, chunk);
    });
}

/// An op's output: `y` shaped like the input layout `l` with the last dimension `last`.
fn with_last_dim(y: Vec<f32>, l: &Layout, last: usize) -> (CpuStorage, Shape) {
    let mut dims = l.dims().to_vec();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    (CpuStorage::F32(y), Shape::from(dims))
}

/// A buffer of `n` floats for a kernel that writes every element (a GEMM without
/// accumulation, a row-wise pass over all rows). Zero-filled: handing uninitialized `f32`s to
/// safe code is undefined behaviour in Rust's rules even when each is written before it is
/// read, and the fill measured at about 1% of a training step.
pub(crate) fn output_buffer(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

thread_local! {
    /// Temporaries of the backward passes, kept between steps (see [`Scratch`]).
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A temporary of `n` floats that never leaves its op (a gradient that is consumed by the
/// next product in the same backward pass), taken from a per-thread pool and returned on
/// drop. Its contents are whatever the last user left (initialized, stale): every user
/// overwrites all `n` before reading, so unlike [`output_buffer`] nothing is filled, and
/// after the first step no memory is allocated or zeroed for these at all.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    n: usize,
}

impl Scratch {
    pub(crate) fn take(n: usize) -> Self {
        let mut buf = SCRATCH_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_default();
        if buf.len() < n {
            buf.resize(n, 0.0);
        }
        Self { buf, n }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.n]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.n]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // The pool holds at most a few buffers (the most any backward pass keeps at once).
        let _ = SCRATCH_POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 8 {
                p.push(buf);
            }
        });
    }
}

/// Rows per parallel task such that one task holds roughly 16K elements.
fn rows_per_task(width: usize) -> usize {
    (16384 / width).max(1)
}

// ---------------------------------------------------------------------------------------
// Frozen linear layer.

/// A frozen linear layer `y = x W^T + b`, packed once for adalbert's GEMM.
pub struct FrozenLinear {
    in_dim: usize,
    out_dim: usize,
    /// `B = W^T` (k = in, n = out): the forward product.
    fwd: PackedB,
    /// `B = W` (k = out, n = in): the input gradient `dx = dy W`.
    bwd: PackedB,
    bias: Option<Vec<f32>>,
}

impl fmt::Debug for FrozenLinear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrozenLinear({} -> {})", self.in_dim, self.out_dim)
    }
}

impl FrozenLinear {
    /// Packs `weight [out, in]` and `bias [out]`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let fwd = PackedB::from_weight(&w, out_dim, in_dim);
        let mut bwd = PackedB::default();
        bwd.pack_kn(&w, in_dim, out_dim, in_dim);
        let bias = match bias {
            Some(b) => {
                let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
                if b.len() != out_dim {
                    return Err(ModelError::Input(format!(
                        "linear bias has {} elements, the weight {out_dim} rows",
                        b.len()
                    )));
                }
                Some(b)
            }
            None => None,
        };
        Ok(Self {
            in_dim,
            out_dim,
            fwd,
            bwd,
            bias,
        })
    }

    /// `x W^T + b` for the `m` rows of `x`, as a new buffer.
    fn product(&self, isa: Isa, m: usize, x: &[f32]) -> Vec<f32> {
        let ep = Epilogue {
            bias: self.bias.as_deref(),
            ..Epilogue::default()
        };
        gemm_new(isa, m, x, self.in_dim, &self.fwd, &ep)
    }

    /// The input gradient `dy W` for the `m` rows of `dy`, as a new buffer.
    fn grad_x(&self, isa: Isa, m: usize, dy: &[f32]) -> Vec<f32> {
        gemm_new(isa, m, dy, self.out_dim, &self.bwd, &Epilogue::default())
    }

    /// [`Self::grad_x`] into `dx` (`m x in_dim`), e.g. a pooled temporary.
    fn grad_x_into(&self, isa: Isa, m: usize, dy: &[f32], dx: &mut [f32]) {
        let ep = Epilogue::default();
        gemm(isa, m, dy, self.out_dim, &self.bwd, dx, self.in_dim, &ep);
    }

    /// `x W^T + b` over the last dimension of `x`; the gradient flows to `x` only.
    pub fn forward(self: &Arc<Self>, x: &Tensor, isa: Isa) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1(FrozenLinearOp {
            w: self.clone(),
            isa,
            act: None,
        })?)
    }

    /// `act(x W^T + b)` as one graph node (the FFN's first projection): the op keeps the
    /// pre-activation for its backward pass, `dx = (dy * act'(pre)) W`, so candle stores and
    /// accumulates no separate `[tokens, intermediate]` gradient for the activation.
    pub fn forward_act(self: &Arc<Self>, x: &Tensor, act: Activation, isa: Isa) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1(FrozenLinearOp {
            w: self.clone(),
            isa,
            act: Some((act, std::sync::Mutex::new(Vec::new()))),
        })?)
    }
}

struct FrozenLinearOp {
    w: Arc<FrozenLinear>,
    isa: Isa,
    /// The activation applied after the bias, and the pre-activation the forward saves.
    act: Option<(Activation, std::sync::Mutex<Vec<f32>>)>,
}

impl CustomOp1 for FrozenLinearOp {
    fn name(&self) -> &'static str {
        "adalbert-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.w;
        let x = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != p.in_dim {
            return Err(op_error(
                self.name(),
                format!("input {:?}, weight in_dim {}", l.dims(), p.in_dim),
            ));
        }
        let m = x.len() / p.in_dim;
        let mut y = p.product(self.isa, m, x);
        if let Some((act, saved)) = &self.act {
            let pre = y;
            y = act_copy(self.isa, *act, &pre);
            if let Ok(mut saved) = saved.lock() {
                *saved = pre;
            }
        }
        Ok(with_last_dim(y, l, p.out_dim))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = FrozenLinearGrad {
            w: self.w.clone(),
            isa: self.isa,
            act: self.act.as_ref().map(|(a, saved)| (*a, saved)),
        };
        input_grad(arg, grad, &op)
    }
}

/// `dx = dy W`, or `dx = (dy * act'(pre)) W` after an activation.
struct FrozenLinearGrad<'a> {
    w: Arc<FrozenLinear>,
    isa: Isa,
    act: Option<(Activation, &'a std::sync::Mutex<Vec<f32>>)>,
}

impl CustomOp1 for FrozenLinearGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-frozen-linear-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.w;
        let dy = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != p.out_dim {
            return Err(op_error(
                self.name(),
                format!("gradient {:?}, weight out_dim {}", l.dims(), p.out_dim),
            ));
        }
        let m = dy.len() / p.out_dim;
        let dpre;
        let dy = match self.act {
            Some((act, saved)) => {
                let pre = saved
                    .lock()
                    .map_err(|_| op_error(self.name(), "saved pre-activation is poisoned"))?;
                if pre.len() != dy.len() {
                    return Err(op_error(self.name(), "shape differs from the forward pass"));
                }
                let mut buf = Scratch::take(dy.len());
                let isa = self.isa;
                par_rows(&mut buf, 1, GELU_CHUNK, |i0, dc| {
                    let span = i0..i0 + dc.len();
                    act_grad(isa, act, &pre[span.clone()], &dy[span], dc);
                });
                dpre = buf;
                &dpre[..]
            }
            None => dy,
        };
        let dx = p.grad_x(self.isa, m, dy);
        Ok(with_last_dim(dx, l, p.in_dim))
    }
}

// ---------------------------------------------------------------------------------------
/// The frozen feed-forward block `act(x W1^T + b1) W2^T + b2` as one graph node; the
/// gradient flows to `x` only. Besides the two input-gradient products, its backward pass
/// needs only the pre-activation, which the op keeps, so candle neither holds the
/// `[tokens, intermediate]` activation nor accumulates a gradient for it.
pub fn frozen_ffn(
    x: &Tensor,
    first: &Arc<FrozenLinear>,
    act: Activation,
    second: &Arc<FrozenLinear>,
    isa: Isa,
) -> Result<Tensor> {
    if first.out_dim != second.in_dim {
        return Err(ModelError::Input(format!(
            "ffn: {first:?} does not feed {second:?}"
        )));
    }
    Ok(x.contiguous()?.apply_op1(FrozenFfnOp {
        first: first.clone(),
        second: second.clone(),
        act,
        isa,
        pre: std::sync::Mutex::new(Vec::new()),
    })?)
}

struct FrozenFfnOp {
    first: Arc<FrozenLinear>,
    second: Arc<FrozenLinear>,
    act: Activation,
    isa: Isa,
    /// `x W1^T + b1`, saved by the forward pass.
    pre: std::sync::Mutex<Vec<f32>>,
}

impl CustomOp1 for FrozenFfnOp {
    fn name(&self) -> &'static str {
        "adalbert-frozen-ffn"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (w1, w2, isa) = (&self.first, &self.second, self.isa);
        let x = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != w1.in_dim {
            return Err(op_error(self.name(), format!("input {:?}", l.dims())));
        }
        let m = x.len() / w1.in_dim;
        let pre = w1.product(isa, m, x);
        // The activation is only the second product's input: a pooled temporary.
        let mut g = Scratch::take(pre.len());
        par_rows(&mut g, 1, GELU_CHUNK, |i0, gc| {
            gc.copy_from_slice(&pre[i0..i0 + gc.len()]);
            act::apply(isa, self.act, gc);
        });
        let y = w2.product(isa, m, &g);
        if let Ok(mut saved) = self.pre.lock() {
            *saved = pre;
        }
        Ok(with_last_dim(y, l, w2.out_dim))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        input_grad(arg, grad, &FrozenFfnGrad(self))
    }
}

/// `dy` -> `dx = ((dy W2) * act'(pre)) W1`.
struct FrozenFfnGrad<'a>(&'a FrozenFfnOp);

impl CustomOp1 for FrozenFfnGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-frozen-ffn-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.0;
        let (w1, w2, isa, act) = (&op.first, &op.second, op.isa, op.act);
        let dy = f32_slice(s, l, self.name())?;
        let pre = op
            .pre
            .lock()
            .map_err(|_| op_error(self.name(), "saved pre-activation is poisoned"))?;
        let m = dy.len() / w2.out_dim;
        if last_dim(l, self.name())? != w2.out_dim || pre.len() != m * w1.out_dim {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let mut dg = Scratch::take(pre.len());
        w2.grad_x_into(isa, m, dy, &mut dg);
        let mut dpre = Scratch::take(pre.len());
        par_rows(&mut dpre, 1, GELU_CHUNK, |i0, dc| {
            let span = i0..i0 + dc.len();
            act_grad(isa, act, &pre[span.clone()], &dg[span], dc);
        });
        drop(dg);
        let dx = w1.grad_x(isa, m, &dpre);
        Ok(with_last_dim(dx, l, w1.in_dim))
    }
}

// ---------------------------------------------------------------------------------------
// Trainable linear layer.

/// `y = x W^T + b` with gradients for `x`, `W [out, in]` and `b [out]` (adapters, heads and
/// full fine-tuning). One graph node instead of candle's transpose, broadcast, matmul and
/// bias add, each of whose gradients candle accumulates into a fresh zero tensor; `W` is
/// small or changes every step, so it is packed per call.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, isa: Isa) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp { isa })?)
}

struct LinearOp {
    isa: Isa,
}

/// `(out, in)` of a weight layout, checked against `x` and `b`.
fn linear_dims(
    op: &str,
    lx: &Layout,
    lw: &Layout,
    b_len: usize,
) -> candle_core::Result<(usize, usize)> {
    let (out, inp) = lw.shape().dims2()?;
    if last_dim(lx, op)? != inp || b_len != out {
        return Err(op_error(
            op,
            format!("x {:?}, weight {:?}, bias {b_len}", lx.dims(), lw.dims()),
        ));
    }
    Ok((out, inp))
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "adalbert-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let (out, inp) = linear_dims(self.name(), l1, l2, b.len())?;
        let m = x.len() / inp;
        let packed = PackedB::from_weight(w, out, inp);
        let y = gemm_new(self.isa, m, x, inp, &packed, &Epilogue::bias(b));
        Ok(with_last_dim(y, l1, out))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (nx, nw, nb) = (x.elem_count(), w.elem_count(), b.elem_count());
        // One buffer: dx, then dW, then db.
        let all = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearGrad { isa: self.isa })?;
        let dx = all.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = all.narrow(0, nx, nw)?.reshape(w.shape())?;
        let db = all.narrow(0, nx + nw, nb)?.reshape(b.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(x, W, dy)` -> `[dx (x's size), dW (W's size), db (out)]`, flat.
struct LinearGrad {
    isa: Isa,
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "adalbert-linear-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let (out, inp) = l2.shape().dims2()?;
        let m = x.len() / inp.max(1);
        if last_dim(l1, self.name())? != inp || dy.len() != m * out {
            return Err(op_error(self.name(), "shapes of x, W and dy disagree"));
        }
        let isa = self.isa;
        let mut all = output_buffer(m * inp + out * inp + out);
        let (dx, rest) = all.split_at_mut(m * inp);
        let (dw, db) = rest.split_at_mut(out * inp);
        // dx = dy W.
        let mut packed = PackedB::default();
        packed.pack_kn(w, inp, out, inp);
        gemm(isa, m, dy, out, &packed, dx, inp, &Epilogue::default());
        // dW = dy^T x.
        let mut dy_t = Vec::new();
        transpose(dy, m, out, &mut dy_t);
        packed.pack_kn(x, inp, m, inp);
        gemm(isa, out, &dy_t, m, &packed, dw, inp, &Epilogue::default());
        // db = column sums of dy (fixed order).
        for (j, o) in db.iter_mut().enumerate() {
            *o = dy_t[j * m..(j + 1) * m].iter().sum();
        }
        Ok((CpuStorage::F32(all), Shape::from(m * inp + out * inp + out)))
    }
}

// ---------------------------------------------------------------------------------------
// LayerNorm.

/// LayerNorm of `x` over its last dimension with gamma and beta of that width; gradients
/// flow to all three.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32, isa: Isa) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        LayerNormOp { isa, eps },
    )?)
}

struct LayerNormOp {
    isa: Isa,
    eps: f32,
}

/// Mean and 1/std of a row (two passes, as candle's composite computes them).
#[inline(always)]
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let h = row.len() as f32;
    let mean = sum16(row, |v| v) / h;
    let var = sum16(row, |v| (v - mean) * (v - mean)) / h;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Sum with 16 independent partial sums (vectorizes).
#[inline(always)]
fn sum16(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// `sum_i f(a_i, b_i)` with 16 partial sums.
#[inline(always)]
fn dot16(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += f(x, y);
        }
    }
    rest + acc.iter().sum::<f32>()
}

fn ln_forward_rows(isa: Isa, x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
    multiversion!(isa, ln_forward_avx512, (x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let h = g.len();
        for (xr, yr) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let (mean, rstd) = row_stats(xr, eps);
            for (((o, &v), &gg), &bb) in yr.iter_mut().zip(xr).zip(g).zip(b) {
                *o = (v - mean) * rstd * gg + bb;
            }
        }
    })
}

/// One block of rows of the LayerNorm backward: `dx` for each row, and this block's
/// partial sums of `dgamma = sum dy * xhat` and `dbeta = sum dy` (in `part`, `2 * h`).
fn ln_backward_rows(
    isa: Isa,
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    eps: f32,
    dx: &mut [f32],
    part: &mut [f32],
) {
    multiversion!(isa, ln_backward_avx512, (x: &[f32], g: &[f32], dy: &[f32], eps: f32, dx: &mut [f32], part: &mut [f32]) {
        let h = g.len();
        let inv_h = 1.0 / h as f32;
        let (dgamma, dbeta) = part.split_at_mut(h);
        for ((xr, dyr), dxr) in x.chunks_exact(h).zip(dy.chunks_exact(h)).zip(dx.chunks_exact_mut(h)) {
            let (mean, rstd) = row_stats(xr, eps);
            // xhat = (x - mean) * rstd, dxhat = dy * gamma.
            let sum_dxhat = dot16(dyr, g, |d, gg| d * gg);
            let sum_dxhat_xhat = {
                let mut acc = [0.0f32; 16];
                let mut rest = 0.0f32;
                let n16 = h / 16 * 16;
                for i in (0..n16).step_by(16) {
                    for j in 0..16 {
                        acc[j] += dyr[i + j] * g[i + j] * (xr[i + j] - mean);
                    }
                }
                for i in n16..h {
                    rest += dyr[i] * g[i] * (xr[i] - mean);
                }
                (rest + acc.iter().sum::<f32>()) * rstd
            };
            let (m1, m2) = (sum_dxhat * inv_h, sum_dxhat_xhat * inv_h);
            for i in 0..h {
                let xhat = (xr[i] - mean) * rstd;
                dxr[i] = rstd * (dyr[i] * g[i] - m1 - xhat * m2);
                dgamma[i] += dyr[i] * xhat;
                dbeta[i] += dyr[i];
            }
        }
    })
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "adalbert-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let h = last_dim(l1, self.name())?;
        if g.len() != h || b.len() != h {
            return Err(op_error(self.name(), "gamma/beta width differs from x"));
        }
        let mut y = output_buffer(x.len());
        let (isa, eps) = (self.isa, self.eps);
        par_rows(&mut y, h, rows_per_task(h), |r0, yc| {
            let xc = &x[r0 * h..r0 * h + yc.len()];
            ln_forward_rows(isa, xc, g, b, eps, yc);
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let rows = x.elem_count() / h.max(1);
        let op = LayerNormGrad {
            isa: self.isa,
            eps: self.eps,
        };
        // One buffer: rows of dx, then dgamma, then dbeta.
        let all = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = all.get(rows)?.reshape(gamma.shape())?;
        let dbeta = all.get(rows + 1)?.reshape(gamma.shape())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// `(x, gamma, dy)` -> `[rows + 2, h]`: dx, then dgamma and dbeta.
struct LayerNormGrad {
    isa: Isa,
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "adalbert-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let h = last_dim(l1, self.name())?;
        if g.len() != h || dy.len() != x.len() {
            return Err(op_error(self.name(), "shapes of x, gamma and dy disagree"));
        }
        let rows = x.len() / h;
        let mut out = output_buffer((rows + 2) * h);
        let (dx, dgb) = out.split_at_mut(rows * h);
        dgb.fill(0.0);
        ln_backward(self.isa, self.eps, x, g, dy, dx, dgb);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, h))))
    }
}

/// The LayerNorm backward over all rows of `x` (width `g.len()`), on the rayon pool: `dx`,
/// and `dgamma` then `dbeta` added into `dgb` (`2 * h`), reduced in a fixed order.
fn ln_backward(
    isa: Isa,
    eps: f32,
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgb: &mut [f32],
) {
    let h = g.len();
    let rows = x.len() / h;
    let block = rows_per_task(h);
    let tasks = rows.div_ceil(block);
    let mut parts = vec![0.0f32; tasks * 2 * h];
    let pp = SendPtr(parts.as_mut_ptr());
    par_rows(dx, h, block, |r0, dxc| {
        let p = pp;
        let t = r0 / block;
        // SAFETY: task t owns partial-sum slot t of `parts`.
        let part = unsafe { std::slice::from_raw_parts_mut(p.0.add(t * 2 * h), 2 * h) };
        let span = r0 * h..r0 * h + dxc.len();
        ln_backward_rows(isa, &x[span.clone()], g, &dy[span], eps, dxc, part);
    });
    // Fixed-order reduction of the per-block partial sums (deterministic).
    for part in parts.chunks_exact(2 * h) {
        for (o, &v) in dgb.iter_mut().zip(part) {
            *o += v;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Masked softmax (attention probabilities).

/// `softmax(scale * scores + mask)` over the last dimension of `scores [B, heads, S, T]`,
/// with the additive `mask` of `B * T` elements (`[B, 1, 1, T]`) broadcast over heads and
/// query rows. The gradient flows to `scores` only.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f32, isa: Isa) -> Result<Tensor> {
    let (b, _, _, t) = scores.dims4()?;
    if mask.elem_count() != b * t {
        return Err(ModelError::Input(format!(
            "attention mask has {} elements, scores {:?} need {}",
            mask.elem_count(),
            scores.dims(),
            b * t
        )));
    }
    Ok(scores
        .contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax { isa, scale })?)
}

struct MaskedSoftmax {
    isa: Isa,
    scale: f32,
}

fn softmax_rows(isa: Isa, s: &[f32], mask: &[f32], scale: f32, y: &mut [f32]) {
    multiversion!(isa, softmax_avx512, (s: &[f32], mask: &[f32], scale: f32, y: &mut [f32]) {
        let t = mask.len();
        for (sr, yr) in s.chunks_exact(t).zip(y.chunks_exact_mut(t)) {
            let mut max = f32::NEG_INFINITY;
            for ((o, &v), &m) in yr.iter_mut().zip(sr).zip(mask) {
                *o = v * scale + m;
                max = max.max(*o);
            }
            let mut acc = [0.0f32; 16];
            let mut rest = 0.0f32;
            let n16 = t / 16 * 16;
            for i in (0..n16).step_by(16) {
                for j in 0..16 {
                    let e = act::exp(yr[i + j] - max);
                    yr[i + j] = e;
                    acc[j] += e;
                }
            }
            for v in &mut yr[n16..] {
                *v = act::exp(*v - max);
                rest += *v;
            }
            let inv = 1.0 / (rest + acc.iter().sum::<f32>());
            for v in yr.iter_mut() {
                *v *= inv;
            }
        }
    })
}

fn softmax_grad_rows(isa: Isa, y: &[f32], dy: &[f32], t: usize, scale: f32, dx: &mut [f32]) {
    multiversion!(isa, softmax_grad_avx512, (y: &[f32], dy: &[f32], t: usize, scale: f32, dx: &mut [f32]) {
        for ((yr, dyr), dxr) in y.chunks_exact(t).zip(dy.chunks_exact(t)).zip(dx.chunks_exact_mut(t)) {
            let dot = dot16(yr, dyr, |a, b| a * b);
            for ((o, &yv), &d) in dxr.iter_mut().zip(yr).zip(dyr) {
                *o = scale * yv * (d - dot);
            }
        }
    })
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "adalbert-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = f32_slice(s1, l1, self.name())?;
        let mask = f32_slice(s2, l2, self.name())?;
        let (b, _, _, t) = l1.shape().dims4()?;
        if mask.len() != b * t || t == 0 {
            return Err(op_error(self.name(), "mask does not match the scores"));
        }
        let rows_per_batch = s.len() / (b * t);
        let mut y = output_buffer(s.len());
        let (isa, scale) = (self.isa, self.scale);
        // Tasks never straddle two batch rows, so each sees one mask row.
        let block = rows_per_task(t).min(rows_per_batch).max(1);
        let block = (1..=block)
            .rev()
            .find(|d| rows_per_batch.is_multiple_of(*d))
            .unwrap_or(1);
        par_rows(&mut y, t, block, |r0, yc| {
            let batch = r0 / rows_per_batch;
            let span = r0 * t..r0 * t + yc.len();
            softmax_rows(isa, &s[span], &mask[batch * t..(batch + 1) * t], scale, yc);
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxGrad {
            isa: self.isa,
            scale: self.scale,
        };
        Ok((Some(res.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None))
    }
}

/// `(y, dy)` -> `scale * y * (dy - sum(dy * y))` per row.
struct SoftmaxGrad {
    isa: Isa,
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "adalbert-masked-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let t = last_dim(l1, self.name())?;
        if dy.len() != y.len() {
            return Err(op_error(self.name(), "gradient shape differs"));
        }
        let mut dx = output_buffer(y.len());
        let (isa, scale) = (self.isa, self.scale);
        par_rows(&mut dx, t, rows_per_task(t), |r0, dxc| {
            let span = r0 * t..r0 * t + dxc.len();
            softmax_grad_rows(isa, &y[span.clone()], &dy[span], t, scale, dxc);
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------
// GELU.

/// GELU (`Activation::Gelu`, erf form, or `Activation::GeluNew`, tanh form) with its exact
/// derivative in the backward pass. ReLU is left to candle (one cheap op already).
pub fn gelu(x: &Tensor, act: Activation, isa: Isa) -> Result<Tensor> {
    if act == Activation::Relu {
        return Err(ModelError::Input("fused gelu called with relu".into()));
    }
    Ok(x.contiguous()?.apply_op1(GeluOp { isa, act })?)
}

struct GeluOp {
    isa: Isa,
    act: Activation,
}

const GELU_CHUNK: usize = 16384;

/// `act(x)` into a new buffer, on the rayon pool (each chunk copied while in cache).
fn act_copy(isa: Isa, act: Activation, x: &[f32]) -> Vec<f32> {
    let mut y = output_buffer(x.len());
    par_rows(&mut y, 1, GELU_CHUNK, |i0, yc| {
        let len = yc.len();
        yc.copy_from_slice(&x[i0..i0 + len]);
        act::apply(isa, act, yc);
    });
    y
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "adalbert-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let y = act_copy(self.isa, self.act, x);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = GeluGrad {
            isa: self.isa,
            act: self.act,
        };
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// d/dx of GELU's erf form: `Phi(x) + x phi(x)`.
#[inline(always)]
fn gelu_erf_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + act::erf(x * std::f32::consts::FRAC_1_SQRT_2))
        + x * INV_SQRT_2PI * act::exp(-0.5 * x * x)
}

/// d/dx of GELU's tanh form `0.5 x (1 + tanh(u))`, `u = c (x + 0.044715 x^3)`.
#[inline(always)]
fn gelu_tanh_grad(x: f32) -> f32 {
    const C: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    let t = act::tanh(C * (x + A * x * x * x));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x)
}

fn gelu_grad_chunk(isa: Isa, erf_form: bool, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    if erf_form {
        multiversion!(isa, gelu_erf_grad_avx512, (x: &[f32], dy: &[f32], dx: &mut [f32]) {
            for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                *o = d * gelu_erf_grad(v);
            }
        })
    } else {
        multiversion!(isa, gelu_tanh_grad_avx512, (x: &[f32], dy: &[f32], dx: &mut [f32]) {
            for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                *o = d * gelu_tanh_grad(v);
            }
        })
    }
}

/// `(x, dy)` -> `dy * gelu'(x)`.
struct GeluGrad {
    isa: Isa,
    act: Activation,
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "adalbert-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        if dy.len() != x.len() {
            return Err(op_error(self.name(), "gradient shape differs"));
        }
        let mut dx = output_buffer(x.len());
        let (isa, erf_form) = (self.isa, self.act == Activation::Gelu);
        par_rows(&mut dx, 1, GELU_CHUNK, |i0, dxc| {
            let span = i0..i0 + dxc.len();
            gelu_grad_chunk(isa, erf_form, &x[span.clone()], &dy[span], dxc);
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------
// Dropout with a given mask.

/// `x * mask` where `mask` (0 or 1/(1-p) per element, drawn by [`crate::nn::Ctx`]) is held
/// by the op rather than being a graph input, so the backward pass computes only `dy * mask`
/// (candle's `mul` would also compute and accumulate the unused gradient of the mask).
pub fn dropout(x: &Tensor, mask: Vec<f32>, isa: Isa) -> Result<Tensor> {
    if mask.len() != x.elem_count() {
        return Err(ModelError::Input(format!(
            "dropout mask has {} elements, the input {}",
            mask.len(),
            x.elem_count()
        )));
    }
    Ok(x.contiguous()?.apply_op1(DropoutOp {
        isa,
        mask: Arc::new(mask),
    })?)
}

struct DropoutOp {
    isa: Isa,
    mask: Arc<Vec<f32>>,
}

fn mul_into(isa: Isa, a: &[f32], b: &[f32], out: &mut [f32]) {
    multiversion!(isa, mul_into_avx512, (a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x * y;
        }
    })
}

/// `a * b` elementwise on the rayon pool.
fn par_mul(isa: Isa, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = output_buffer(a.len());
    par_rows(&mut out, 1, 1 << 16, |i0, oc| {
        let span = i0..i0 + oc.len();
        mul_into(isa, &a[span.clone()], &b[span], oc);
    });
    out
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "adalbert-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        if x.len() != self.mask.len() {
            return Err(op_error(self.name(), "mask size differs from the input"));
        }
        Ok((
            CpuStorage::F32(par_mul(self.isa, x, &self.mask)),
            l.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = DropoutOp {
            isa: self.isa,
            mask: self.mask.clone(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

// ---------------------------------------------------------------------------------------
// Multi-head self-attention.

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
struct AttnShape {
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
}

impl AttnShape {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// What the forward pass leaves for the backward pass.
struct AttnState {
    shape: AttnShape,
    isa: Isa,
    scale: f32,
    /// Additive mask, `[B, S]`.
    mask: Vec<f32>,
    /// Dropout multipliers on the probabilities, `[B, heads, S, S]`.
    drop: Option<Vec<f32>>,
    /// Softmax probabilities before dropout, `[B, heads, S, S]`, filled by the forward.
    probs: std::sync::Mutex<Vec<f32>>,
}

/// Multi-head self-attention on the fused projection `qkv [B, S, 3H]` (query, key and
/// value blocks of H columns): per head `dropout(softmax(scale * Q K^T + mask)) V`, written
/// as `[B, S, H]` (heads side by side), as one graph node. `mask_bias` is additive, `B * S`
/// elements; `drop` holds the dropout multipliers of the probabilities (`[B, heads, S, S]`,
/// drawn by the caller so the composite path sees the same masks). The gradient flows to
/// `qkv`.
pub fn attention(
    qkv: &Tensor,
    mask_bias: &Tensor,
    heads: usize,
    scale: f32,
    drop: Option<Vec<f32>>,
    isa: Isa,
) -> Result<Tensor> {
    let (batch, seq, h3) = qkv.dims3()?;
    let state = attn_state(batch, seq, h3, mask_bias, heads, scale, drop, isa)?;
    Ok(qkv.contiguous()?.apply_op1(AttentionOp(Arc::new(state)))?)
}

/// The attention state for `[batch, seq, h3]` fused projections, checked.
#[allow(clippy::too_many_arguments)]
fn attn_state(
    batch: usize,
    seq: usize,
    h3: usize,
    mask_bias: &Tensor,
    heads: usize,
    scale: f32,
    drop: Option<Vec<f32>>,
    isa: Isa,
) -> Result<AttnState> {
    if heads == 0 || !h3.is_multiple_of(3 * heads) {
        return Err(ModelError::Input(format!(
            "qkv width {h3} is not 3 x {heads} heads"
        )));
    }
    let shape = AttnShape {
        batch,
        seq,
        heads,
        head_dim: h3 / (3 * heads),
    };
    let mask: Vec<f32> = mask_bias.flatten_all()?.to_vec1()?;
    if mask.len() != batch * seq {
        return Err(ModelError::Input(format!(
            "attention mask has {} elements, expected {}",
            mask.len(),
            batch * seq
        )));
    }
    if drop
        .as_ref()
        .is_some_and(|d| d.len() != batch * heads * seq * seq)
    {
        return Err(ModelError::Input("attention dropout mask size".into()));
    }
    Ok(AttnState {
        shape,
        isa,
        scale,
        mask,
        drop,
        probs: std::sync::Mutex::new(Vec::new()),
    })
}

/// [`attention`] with its frozen projections: `dense(attention(x Wqkv^T + bqkv))` as one
/// graph node, the gradient flowing to `x` (`[B, S, in]`). The op keeps the projections
/// `qkv` for its backward pass, so candle accumulates gradients for neither `qkv` nor the
/// context.
#[allow(clippy::too_many_arguments)]
pub fn frozen_attention_block(
    x: &Tensor,
    qkv: &Arc<FrozenLinear>,
    dense: &Arc<FrozenLinear>,
    mask_bias: &Tensor,
    heads: usize,
    scale: f32,
    drop: Option<Vec<f32>>,
    isa: Isa,
) -> Result<Tensor> {
    let (batch, seq, inp) = x.dims3()?;
    let h3 = qkv.out_dim;
    if inp != qkv.in_dim || dense.in_dim * 3 != h3 {
        return Err(ModelError::Input(format!(
            "attention block: x {:?}, {qkv:?}, {dense:?}",
            x.dims()
        )));
    }
    let st = attn_state(batch, seq, h3, mask_bias, heads, scale, drop, isa)?;
    Ok(x.contiguous()?.apply_op1(AttnBlockOp {
        st,
        qkv: qkv.clone(),
        dense: dense.clone(),
        saved_qkv: std::sync::Mutex::new(Vec::new()),
    })?)
}

struct AttnBlockOp {
    st: AttnState,
    qkv: Arc<FrozenLinear>,
    dense: Arc<FrozenLinear>,
    saved_qkv: std::sync::Mutex<Vec<f32>>,
}

impl CustomOp1 for AttnBlockOp {
    fn name(&self) -> &'static str {
        "adalbert-attention-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (st, wq, wd) = (&self.st, &self.qkv, &self.dense);
        let x = f32_slice(s, l, self.name())?;
        let m = st.shape.batch * st.shape.seq;
        if x.len() != m * wq.in_dim {
            return Err(op_error(self.name(), "input shape changed"));
        }
        let qkv = wq.product(st.isa, m, x);
        let context = attention_fwd(st, &qkv);
        let y = wd.product(st.isa, m, &context);
        if let Ok(mut saved) = self.saved_qkv.lock() {
            *saved = qkv;
        }
        let shape = Shape::from((st.shape.batch, st.shape.seq, wd.out_dim));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        input_grad(arg, grad, &AttnBlockGrad(self))
    }
}

/// `dy` -> `dx`: through the dense projection, the attention and the QKV projection.
struct AttnBlockGrad<'a>(&'a AttnBlockOp);

impl CustomOp1 for AttnBlockGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-attention-block-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.0;
        let (st, wq, wd) = (&op.st, &op.qkv, &op.dense);
        let dy = f32_slice(s, l, self.name())?;
        let qkv = op
            .saved_qkv
            .lock()
            .map_err(|_| op_error(self.name(), "saved projections are poisoned"))?;
        let probs = st
            .probs
            .lock()
            .map_err(|_| op_error(self.name(), "saved probabilities are poisoned"))?;
        let AttnShape {
            batch, seq, heads, ..
        } = st.shape;
        let m = batch * seq;
        if dy.len() != m * wd.out_dim
            || qkv.len() != m * wq.out_dim
            || probs.len() != batch * heads * seq * seq
        {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let mut dcontext = Scratch::take(m * wd.in_dim);
        wd.grad_x_into(st.isa, m, dy, &mut dcontext);
        let dqkv = attention_bwd(st, &qkv, &probs, &dcontext);
        drop(dcontext);
        let dx = wq.grad_x(st.isa, m, &dqkv);
        Ok((CpuStorage::F32(dx), Shape::from((batch, seq, wq.in_dim))))
    }
}

struct AttentionOp(Arc<AttnState>);

/// Per-thread buffers of the attention kernels (a forward pass allocates nothing here after
/// the first call).
#[derive(Default)]
struct AttnScratch {
    packed: PackedB,
    a: Vec<f32>,
    b: Vec<f32>,
}

thread_local! {
    static ATTN_SCRATCH: std::cell::RefCell<AttnScratch> = std::cell::RefCell::new(AttnScratch::default());
}

fn softmax_inplace(isa: Isa, rows: &mut [f32], t: usize) {
    multiversion!(isa, softmax_inplace_avx512, (rows: &mut [f32], t: usize) {
        let n16 = t / 16 * 16;
        for r in rows.chunks_exact_mut(t) {
            // 16 partial maxima and sums, so both reductions vectorize.
            let mut mx = [f32::NEG_INFINITY; 16];
            for ch in r[..n16].chunks_exact(16) {
                for (m, &v) in mx.iter_mut().zip(ch) {
                    *m = m.max(v);
                }
            }
            let max = r[n16..].iter().chain(&mx).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut acc = [0.0f32; 16];
            for ch in r[..n16].chunks_exact_mut(16) {
                for (a, v) in acc.iter_mut().zip(ch.iter_mut()) {
                    *v = act::exp(*v - max);
                    *a += *v;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for v in r[n16..].iter_mut() {
                *v = act::exp(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in r.iter_mut() {
                *v *= inv;
            }
        }
    })
}

/// `dst[j][i] = src[i][j]` for a `rows x cols` matrix.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    dst.clear();
    dst.resize(rows * cols, 0.0);
    for (i, r) in src.chunks_exact(cols).enumerate().take(rows) {
        for (j, &v) in r.iter().enumerate() {
            dst[j * rows + i] = v;
        }
    }
}

/// The attention forward on `qkv` (checked by the caller): returns the context and leaves
/// the probabilities in `st.probs`.
fn attention_fwd(st: &AttnState, qkv: &[f32]) -> Vec<f32> {
    let AttnShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = st.shape;
    let h = st.shape.hidden();
    let mut out = output_buffer(batch * seq * h);
    let mut probs = output_buffer(batch * heads * seq * seq);
    let (op, olen) = (SendPtr(out.as_mut_ptr()), out.len());
    let pp = SendPtr(probs.as_mut_ptr());
    let ss = seq * seq;
    par_for(batch * heads, |t| {
        let (b, head) = (t / heads, t % heads);
        let base = b * seq * 3 * h + head * d;
        let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
        let mask = &st.mask[b * seq..(b + 1) * seq];
        let (o0, p) = (b * seq * h + head * d, (op, pp));
        // SAFETY: each (b, head) task writes only its own d columns of its own S rows of
        // `out`, and its own S x S block of `probs`.
        let (o, pr) = unsafe {
            (
                std::slice::from_raw_parts_mut(p.0 .0.add(o0), olen - o0),
                std::slice::from_raw_parts_mut(p.1 .0.add(t * ss), ss),
            )
        };
        ATTN_SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            sc.packed.pack_nk(k, 3 * h, seq, d);
            let ep = Epilogue {
                alpha: st.scale,
                bias: Some(mask),
                ..Epilogue::default()
            };
            gemm_serial(st.isa, seq, q, 3 * h, &sc.packed, pr, seq, &ep);
            softmax_inplace(st.isa, pr, seq);
            let pd: &[f32] = match &st.drop {
                Some(drop) => {
                    sc.a.clear();
                    sc.a.resize(ss, 0.0);
                    mul_into(st.isa, pr, &drop[t * ss..(t + 1) * ss], &mut sc.a);
                    &sc.a
                }
                None => pr,
            };
            sc.packed.pack_kn(v, 3 * h, seq, d);
            gemm_serial(st.isa, seq, pd, seq, &sc.packed, o, h, &Epilogue::default());
        });
    });
    if let Ok(mut saved) = st.probs.lock() {
        *saved = probs;
    }
    out
}

/// The attention backward: `d_qkv` from the context gradient `dy` (shapes checked by the
/// caller against `probs`, the forward's probabilities).
fn attention_bwd(st: &AttnState, qkv: &[f32], probs: &[f32], dy: &[f32]) -> Vec<f32> {
    let AttnShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = st.shape;
    let h = st.shape.hidden();
    let ss = seq * seq;
    let mut dqkv = output_buffer(qkv.len());
    let (gp, glen) = (SendPtr(dqkv.as_mut_ptr()), dqkv.len());
    let isa = st.isa;
    par_for(batch * heads, |t| {
        let (b, head) = (t / heads, t % heads);
        let base = b * seq * 3 * h + head * d;
        let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
        let dy_bh = &dy[b * seq * h + head * d..];
        let p = &probs[t * ss..(t + 1) * ss];
        let drop = st.drop.as_ref().map(|m| &m[t * ss..(t + 1) * ss]);
        let g = gp;
        // SAFETY: each (b, head) task writes only its own d columns of the query, key
        // and value blocks of its own S rows.
        let (dq, dk, dv) = unsafe {
            let at = |off: usize| std::slice::from_raw_parts_mut(g.0.add(off), glen - off);
            (at(base), at(base + h), at(base + 2 * h))
        };
        ATTN_SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            let AttnScratch { packed, a, b: buf } = sc;
            // dV = Pd^T dY, with Pd the probabilities after dropout.
            buf.clear();
            buf.resize(ss, 0.0);
            match drop {
                Some(m) => mul_into(isa, p, m, buf),
                None => buf.copy_from_slice(p),
            }
            transpose(buf, seq, seq, a);
            packed.pack_kn(dy_bh, h, seq, d);
            gemm_serial(isa, seq, a, seq, packed, dv, 3 * h, &Epilogue::default());
            // dPd = dY V^T, then through dropout and softmax (scale folded in).
            packed.pack_nk(v, 3 * h, seq, d);
            gemm_serial(isa, seq, dy_bh, h, packed, buf, seq, &Epilogue::default());
            if let Some(m) = drop {
                a.clear();
                a.resize(ss, 0.0);
                mul_into(isa, buf, m, a);
                std::mem::swap(a, buf);
            }
            a.clear();
            a.resize(ss, 0.0);
            softmax_grad_rows(isa, p, buf, seq, st.scale, a);
            // dQ = dS K, dK = dS^T Q.
            packed.pack_kn(k, 3 * h, seq, d);
            gemm_serial(isa, seq, a, seq, packed, dq, 3 * h, &Epilogue::default());
            transpose(a, seq, seq, buf);
            packed.pack_kn(q, 3 * h, seq, d);
            gemm_serial(isa, seq, buf, seq, packed, dk, 3 * h, &Epilogue::default());
        });
    });
    dqkv
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "adalbert-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let AttnShape { batch, seq, .. } = st.shape;
        let h = st.shape.hidden();
        let qkv = f32_slice(s, l, self.name())?;
        if qkv.len() != batch * seq * 3 * h {
            return Err(op_error(self.name(), "qkv shape changed"));
        }
        let out = attention_fwd(st, qkv);
        Ok((CpuStorage::F32(out), Shape::from((batch, seq, h))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = AttentionGrad(self.0.clone());
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `(qkv, d_out)` -> `d_qkv`.
struct AttentionGrad(Arc<AttnState>);

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "adalbert-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let AttnShape {
            batch, seq, heads, ..
        } = st.shape;
        let h = st.shape.hidden();
        let qkv = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let probs = st
            .probs
            .lock()
            .map_err(|_| op_error(self.name(), "saved probabilities are poisoned"))?;
        let ss = seq * seq;
        if qkv.len() != batch * seq * 3 * h
            || dy.len() != batch * seq * h
            || probs.len() != batch * heads * ss
        {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let dqkv = attention_bwd(st, qkv, &probs, dy);
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------
// Sublayer tail: dropout, bottleneck adapter, residual and LayerNorm as one node.

/// The bottleneck adapter `z + up(act(down(z)))` inside a [`residual_layer_norm`].
pub struct TailAdapter<'a> {
    /// `[r, h]`
    pub down_w: &'a Tensor,
    /// `[r]`
    pub down_b: &'a Tensor,
    /// `[h, r]`
    pub up_w: &'a Tensor,
    /// `[h]`
    pub up_b: &'a Tensor,
    pub act: Activation,
}

/// `LayerNorm(x + A(p * drop))` over the last dimension, where `A` is the adapter's
/// `z + up(act(down(z)))` or the identity, as one graph node with gradients for `x`, `p`,
/// the adapter's weights and biases, gamma and beta. It stands for the dropout, the two
/// adapter linears and their activation, two residual adds and the LayerNorm that end every
/// attention and FFN sublayer: each of those nodes costs candle's backward a zero-filled
/// gradient buffer and an add per input, several of them `[tokens, hidden]` wide.
/// The small trainable tensors enter as one concatenated vector (one cheap graph edge each).
#[allow(clippy::too_many_arguments)]
pub fn residual_layer_norm(
    x: &Tensor,
    p: &Tensor,
    drop: Option<Vec<f32>>,
    adapter: Option<TailAdapter>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    isa: Isa,
) -> Result<Tensor> {
    let h = gamma.elem_count();
    if x.dims() != p.dims() || x.dims().last() != Some(&h) || beta.elem_count() != h {
        return Err(ModelError::Input(format!(
            "residual layer norm: x {:?}, p {:?}, gamma {h}, beta {}",
            x.dims(),
            p.dims(),
            beta.elem_count()
        )));
    }
    if drop.as_ref().is_some_and(|d| d.len() != x.elem_count()) {
        return Err(ModelError::Input(
            "residual layer norm: dropout mask size".into(),
        ));
    }
    let mut parts = Vec::with_capacity(6);
    let (r, act) = match &adapter {
        Some(a) => {
            let (r, hd) = a.down_w.dims2()?;
            if hd != h
                || a.up_w.dims2()? != (h, r)
                || a.down_b.elem_count() != r
                || a.up_b.elem_count() != h
            {
                return Err(ModelError::Input(format!(
                    "residual layer norm: adapter down {:?}, up {:?} for width {h}",
                    a.down_w.dims(),
                    a.up_w.dims()
                )));
            }
            for t in [a.down_w, a.down_b, a.up_w, a.up_b] {
                parts.push(t.flatten_all()?);
            }
            (r, Some(a.act))
        }
        None => (0, None),
    };
    parts.push(gamma.flatten_all()?);
    parts.push(beta.flatten_all()?);
    let params = Tensor::cat(&parts, 0)?;
    let state = Arc::new(TailState {
        isa,
        eps,
        h,
        r,
        act,
        drop,
        saved: std::sync::Mutex::new(TailSaved::default()),
    });
    Ok(x.contiguous()?
        .apply_op3(&p.contiguous()?, &params, TailOp(state))?)
}

struct TailState {
    isa: Isa,
    eps: f32,
    h: usize,
    /// Adapter bottleneck width, 0 without an adapter.
    r: usize,
    act: Option<Activation>,
    drop: Option<Vec<f32>>,
    saved: std::sync::Mutex<TailSaved>,
}

/// What the forward pass leaves for the backward pass.
#[derive(Default)]
struct TailSaved {
    /// The LayerNorm input `x + A(z)`.
    s: Vec<f32>,
    /// `z = p * drop`.
    z: Vec<f32>,
    /// The adapter's pre-activation `down(z)` and activation.
    d: Vec<f32>,
    g: Vec<f32>,
}

/// Offsets in the parameter vector: down_w, down_b, up_w, up_b, gamma (beta follows).
struct TailOffsets {
    down_b: usize,
    up_w: usize,
    up_b: usize,
    gamma: usize,
}

impl TailState {
    fn offsets(&self) -> TailOffsets {
        let (h, r) = (self.h, self.r);
        let has = usize::from(self.act.is_some());
        TailOffsets {
            down_b: r * h,
            up_w: r * h + r,
            up_b: 2 * r * h + r,
            gamma: has * (2 * r * h + r + h),
        }
    }

    fn param_len(&self) -> usize {
        self.offsets().gamma + 2 * self.h
    }
}

struct TailOp(Arc<TailState>);

/// `out[i] = a[i] + b[i]` (or `+=` when `a` is `None`) on the rayon pool.
fn par_add(a: Option<&[f32]>, b: &[f32], out: &mut [f32]) {
    par_rows(out, 1, 1 << 16, |i0, oc| {
        let span = i0..i0 + oc.len();
        match a {
            Some(a) => {
                for ((o, &x), &y) in oc.iter_mut().zip(&a[span.clone()]).zip(&b[span]) {
                    *o = x + y;
                }
            }
            None => {
                for (o, &y) in oc.iter_mut().zip(&b[span]) {
                    *o += y;
                }
            }
        }
    });
}

/// Column sums of a `rows x cols` matrix, in row order.
fn col_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// `dx = dy * act'(x)`.
fn act_grad(isa: Isa, act: Activation, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    match act {
        Activation::Relu => {
            for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                *o = if v > 0.0 { d } else { 0.0 };
            }
        }
        _ => gelu_grad_chunk(isa, act == Activation::Gelu, x, dy, dx),
    }
}

impl CustomOp3 for TailOp {
    fn name(&self) -> &'static str {
        "adalbert-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let x = f32_slice(s1, l1, self.name())?;
        let p = f32_slice(s2, l2, self.name())?;
        let params = f32_slice(s3, l3, self.name())?;
        let (h, r, isa) = (st.h, st.r, st.isa);
        if last_dim(l1, self.name())? != h || p.len() != x.len() || params.len() != st.param_len() {
            return Err(op_error(self.name(), "shapes differ from the call"));
        }
        let m = x.len() / h;
        let o = st.offsets();
        let z = match &st.drop {
            Some(mask) => par_mul(isa, p, mask),
            None => p.to_vec(),
        };
        let mut s = output_buffer(x.len());
        let (mut d, mut g) = (Vec::new(), Vec::new());
        match st.act {
            Some(act) => {
                d = output_buffer(m * r);
                let down = PackedB::from_weight(&params[..o.down_b], r, h);
                let ep = Epilogue::bias(&params[o.down_b..o.up_w]);
                gemm(isa, m, &z, h, &down, &mut d, r, &ep);
                g = act_copy(isa, act, &d);
                let up = PackedB::from_weight(&params[o.up_w..o.up_b], h, r);
                let ep = Epilogue::bias(&params[o.up_b..o.gamma]);
                gemm(isa, m, &g, r, &up, &mut s, h, &ep);
                // s = x + (z + u), the order of the composite.
                par_rows(&mut s, 1, 1 << 16, |i0, sc| {
                    let span = i0..i0 + sc.len();
                    for ((o, &xv), &zv) in sc.iter_mut().zip(&x[span.clone()]).zip(&z[span]) {
                        *o = xv + (zv + *o);
                    }
                });
            }
            None => par_add(Some(x), &z, &mut s),
        }
        let mut y = output_buffer(x.len());
        let (gamma, beta) = params[o.gamma..].split_at(h);
        let (eps, sr) = (st.eps, &s);
        par_rows(&mut y, h, rows_per_task(h), |r0, yc| {
            let xc = &sr[r0 * h..r0 * h + yc.len()];
            ln_forward_rows(isa, xc, gamma, beta, eps, yc);
        });
        if let Ok(mut saved) = st.saved.lock() {
            *saved = TailSaved { s, z, d, g };
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let all = params.apply_op2_no_bwd(&grad.contiguous()?, &TailGrad(self.0.clone()))?;
        let dx = x
            .track_op()
            .then(|| all.narrow(0, 0, n)?.reshape(x.shape()))
            .transpose()?;
        let dp = p
            .track_op()
            .then(|| all.narrow(0, n, n)?.reshape(p.shape()))
            .transpose()?;
        let dparams = params
            .track_op()
            .then(|| all.narrow(0, 2 * n, params.elem_count()))
            .transpose()?;
        Ok((dx, dp, dparams))
    }
}

/// Rows per parallel block of the adapter's weight gradients in [`TailGrad`].
const TAIL_GRAD_ROWS: usize = 256;

/// `(params, dy)` -> `[dx, dp, dparams]`, flat.
struct TailGrad(Arc<TailState>);

impl CustomOp2 for TailGrad {
    fn name(&self) -> &'static str {
        "adalbert-residual-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let params = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let saved = st
            .saved
            .lock()
            .map_err(|_| op_error(self.name(), "saved activations are poisoned"))?;
        let (h, r, isa) = (st.h, st.r, st.isa);
        let n = dy.len();
        if saved.s.len() != n || params.len() != st.param_len() {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let m = n / h;
        let o = st.offsets();
        let mut out = output_buffer(2 * n + params.len());
        let (ds, rest) = out.split_at_mut(n);
        let (dp, dparams) = rest.split_at_mut(n);
        dparams.fill(0.0);
        let gamma = &params[o.gamma..o.gamma + h];
        ln_backward(
            isa,
            st.eps,
            &saved.s,
            gamma,
            dy,
            ds,
            &mut dparams[o.gamma..],
        );
        dp.copy_from_slice(ds);
        if let Some(act) = st.act {
            let (dwd, rest) = dparams.split_at_mut(o.down_b);
            let (dbd, rest) = rest.split_at_mut(r);
            let (dwu, rest) = rest.split_at_mut(h * r);
            let dbu = &mut rest[..h];
            let mut packed = PackedB::default();
            // dg = ds Wu (up: du = ds).
            packed.pack_kn(&params[o.up_w..o.up_b], r, h, r);
            let mut dg = Scratch::take(m * r);
            gemm(isa, m, ds, h, &packed, &mut dg, r, &Epilogue::default());
            // Per block of rows, in parallel: dd = dg * act'(d), and the block's partial
            // dWu^T = g^T ds, dWd = dd^T z, dbu = column sums of ds, dbd = those of dd. The
            // blocks depend on the shape only and are reduced in order (deterministic).
            let blocks = m.div_ceil(TAIL_GRAD_ROWS);
            let part_len = 2 * r * h + h + r;
            let mut parts = Scratch::take(blocks * part_len);
            let mut dd = Scratch::take(m * r);
            {
                let (pp, dp_) = (SendPtr(parts.as_mut_ptr()), SendPtr(dd.as_mut_ptr()));
                let (ds, saved) = (&*ds, &*saved);
                par_for(blocks, |c| {
                    let (pp, dp_) = (pp, dp_);
                    let rows = c * TAIL_GRAD_ROWS..((c + 1) * TAIL_GRAD_ROWS).min(m);
                    let mc = rows.len();
                    // SAFETY: block c owns its rows of `dd` and its slot of `parts`.
                    let (ddc, part) = unsafe {
                        (
                            std::slice::from_raw_parts_mut(dp_.0.add(rows.start * r), mc * r),
                            std::slice::from_raw_parts_mut(pp.0.add(c * part_len), part_len),
                        )
                    };
                    let (hr, wr) = (rows.start * h..rows.end * h, rows.start * r..rows.end * r);
                    act_grad(isa, act, &saved.d[wr.clone()], &dg[wr.clone()], ddc);
                    let (dwu_t, rest) = part.split_at_mut(r * h);
                    let (dwd_c, rest) = rest.split_at_mut(r * h);
                    let (dbu_c, dbd_c) = rest.split_at_mut(h);
                    ATTN_SCRATCH.with(|sc| {
                        let sc = &mut *sc.borrow_mut();
                        let ep = Epilogue::default();
                        transpose(&saved.g[wr], mc, r, &mut sc.a);
                        sc.packed.pack_kn(&ds[hr.clone()], h, mc, h);
                        gemm_serial(isa, r, &sc.a, mc, &sc.packed, dwu_t, h, &ep);
                        transpose(ddc, mc, r, &mut sc.a);
                        sc.packed.pack_kn(&saved.z[hr.clone()], h, mc, h);
                        gemm_serial(isa, r, &sc.a, mc, &sc.packed, dwd_c, h, &ep);
                    });
                    col_sums(&ds[hr], h, dbu_c);
                    col_sums(ddc, r, dbd_c);
                });
            }
            let mut dwu_t = vec![0.0f32; r * h];
            for part in parts.chunks_exact(part_len) {
                let (pu, rest) = part.split_at(r * h);
                let (pd, rest) = rest.split_at(r * h);
                let (pbu, pbd) = rest.split_at(h);
                for (acc, src) in [
                    (&mut dwu_t[..], pu),
                    (&mut *dwd, pd),
                    (&mut *dbu, pbu),
                    (&mut *dbd, pbd),
                ] {
                    for (o, &v) in acc.iter_mut().zip(src) {
                        *o += v;
                    }
                }
            }
            let mut t = Vec::new();
            transpose(&dwu_t, r, h, &mut t);
            dwu.copy_from_slice(&t);
            // down: dz = ds + dd Wd.
            packed.pack_kn(&params[..o.down_b], h, r, h);
            let ep = Epilogue {
                accumulate: true,
                ..Epilogue::default()
            };
            gemm(isa, m, &dd, r, &packed, dp, h, &ep);
        }
        if let Some(mask) = &st.drop {
            par_rows(dp, 1, 1 << 16, |i0, dc| {
                let len = dc.len();
                for (v, &k) in dc.iter_mut().zip(&mask[i0..i0 + len]) {
                    *v *= k;
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * n + params.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// Deterministic values in [-scale, scale).
    fn random(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn isas() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx512]
            .into_iter()
            .filter(|i| i.available())
            .collect()
    }

    #[track_caller]
    fn assert_close(got: &Tensor, want: &Tensor, rtol: f32, atol: f32, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}: shape");
        let g: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let w: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!(
                (a - b).abs() <= atol + rtol * b.abs(),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// `sum(y * r)` for a fixed random `r`: a scalar loss whose gradient wrt `y` is `r`.
    fn loss(y: &Tensor, seed: u64) -> Tensor {
        let r = random(y.dims(), seed, 1.0);
        (y * r).unwrap().sum_all().unwrap()
    }

    #[test]
    fn frozen_linear_matches_matmul_and_its_input_gradient() {
        for isa in isas() {
            let x = Var::from_tensor(&random(&[2, 13, 37], 1, 1.0)).unwrap();
            let w = random(&[29, 37], 2, 0.5);
            let b = random(&[29], 3, 0.5);
            let want = x
                .as_tensor()
                .broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let lin = Arc::new(FrozenLinear::new(&w, Some(&b)).unwrap());
            let got = lin.forward(x.as_tensor(), isa).unwrap();
            assert_close(&got, &want, 1e-5, 1e-6, "frozen linear");
            let gw = loss(&want, 4).backward().unwrap();
            let gg = loss(&got, 4).backward().unwrap();
            assert_close(
                gg.get(x.as_tensor()).unwrap(),
                gw.get(x.as_tensor()).unwrap(),
                1e-4,
                1e-5,
                "dx",
            );
        }
    }

    #[test]
    fn linear_matches_matmul_with_all_three_gradients() {
        for isa in isas() {
            let x = Var::from_tensor(&random(&[2, 13, 37], 21, 1.0)).unwrap();
            let w = Var::from_tensor(&random(&[29, 37], 22, 0.5)).unwrap();
            let b = Var::from_tensor(&random(&[29], 23, 0.5)).unwrap();
            let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
            let want = xt
                .broadcast_matmul(&wt.t().unwrap())
                .unwrap()
                .broadcast_add(bt)
                .unwrap();
            let got = linear(xt, wt, bt, isa).unwrap();
            assert_close(&got, &want, 1e-5, 1e-6, "linear");
            let gw = loss(&want, 24).backward().unwrap();
            let gg = loss(&got, 24).backward().unwrap();
            for (t, name) in [(xt, "dx"), (wt, "dW"), (bt, "db")] {
                assert_close(gg.get(t).unwrap(), gw.get(t).unwrap(), 1e-4, 1e-5, name);
            }
        }
    }

    #[test]
    fn layer_norm_matches_candle_with_all_three_gradients() {
        for isa in isas() {
            for h in [37, 64] {
                let x = Var::from_tensor(&(random(&[13, h], 5, 2.0) + 0.3).unwrap()).unwrap();
                let g = Var::from_tensor(&(random(&[h], 6, 0.5) + 1.0).unwrap()).unwrap();
                let b = Var::from_tensor(&random(&[h], 7, 0.5)).unwrap();
                let (xt, gt, bt) = (x.as_tensor(), g.as_tensor(), b.as_tensor());
                let want = candle_nn::ops::layer_norm_slow(xt, gt, bt, 1e-12).unwrap();
                let got = layer_norm(xt, gt, bt, 1e-12, isa).unwrap();
                assert_close(&got, &want, 1e-5, 1e-6, "layer norm");
                let gw = loss(&want, 8).backward().unwrap();
                let gg = loss(&got, 8).backward().unwrap();
                for (t, name) in [(xt, "dx"), (gt, "dgamma"), (bt, "dbeta")] {
                    assert_close(gg.get(t).unwrap(), gw.get(t).unwrap(), 1e-4, 1e-5, name);
                }
            }
        }
    }

    fn mask_bias(batch: usize, t: usize) -> Tensor {
        // The last 3 keys of the second sequence are padding.
        let v: Vec<f32> = (0..batch * t)
            .map(|i| {
                if i / t == 1 && i % t >= t - 3 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(v, (batch, 1, 1, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn masked_softmax_matches_candle_softmax() {
        for isa in isas() {
            let s = Var::from_tensor(&random(&[2, 3, 13, 13], 9, 4.0)).unwrap();
            let mask = mask_bias(2, 13);
            let scale = 0.37f64;
            let want = candle_nn::ops::softmax(
                &(s.as_tensor() * scale)
                    .unwrap()
                    .broadcast_add(&mask)
                    .unwrap(),
                D::Minus1,
            )
            .unwrap();
            let got = masked_softmax(s.as_tensor(), &mask, scale as f32, isa).unwrap();
            assert_close(&got, &want, 1e-5, 1e-7, "softmax");
            let gw = loss(&want, 10).backward().unwrap();
            let gg = loss(&got, 10).backward().unwrap();
            assert_close(
                gg.get(s.as_tensor()).unwrap(),
                gw.get(s.as_tensor()).unwrap(),
                1e-4,
                1e-6,
                "dscores",
            );
        }
    }

    #[test]
    fn gelu_both_forms_match_candle_with_exact_derivatives() {
        for isa in isas() {
            for act in [Activation::Gelu, Activation::GeluNew] {
                let x = Var::from_tensor(&random(&[13, 64], 11, 6.0)).unwrap();
                let xt = x.as_tensor();
                let want = match act {
                    Activation::Gelu => xt.gelu_erf().unwrap(),
                    _ => xt.gelu().unwrap(),
                };
                let got = gelu(xt, act, isa).unwrap();
                // The polynomial erf/exp differ from libm by < 1e-6 absolute.
                assert_close(&got, &want, 1e-5, 2e-6, "gelu");
                let gw = loss(&want, 12).backward().unwrap();
                let gg = loss(&got, 12).backward().unwrap();
                assert_close(
                    gg.get(xt).unwrap(),
                    gw.get(xt).unwrap(),
                    1e-4,
                    1e-5,
                    "dgelu",
                );
            }
        }
        assert!(gelu(&random(&[3], 1, 1.0), Activation::Relu, Isa::Portable).is_err());
    }

    #[test]
    fn dropout_matches_multiplying_by_the_mask() {
        let x = Var::from_tensor(&random(&[13, 37], 13, 1.0)).unwrap();
        let mask: Vec<f32> = (0..13 * 37)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.5 })
            .collect();
        let m = Tensor::from_vec(mask.clone(), (13, 37), &Device::Cpu).unwrap();
        let want = x.as_tensor().mul(&m).unwrap();
        let got = dropout(x.as_tensor(), mask, Isa::detect()).unwrap();
        assert_close(&got, &want, 0.0, 0.0, "dropout");
        let gw = loss(&want, 14).backward().unwrap();
        let gg = loss(&got, 14).backward().unwrap();
        assert_close(
            gg.get(x.as_tensor()).unwrap(),
            gw.get(x.as_tensor()).unwrap(),
            0.0,
            0.0,
            "ddropout",
        );
        assert!(dropout(x.as_tensor(), vec![1.0; 3], Isa::detect()).is_err());
    }

    /// The attention of `crate::albert` in candle ops: split heads, scores, softmax,
    /// dropout, context, merge heads.
    fn attention_reference(
        qkv: &Tensor,
        mask: &Tensor,
        heads: usize,
        drop: Option<&Tensor>,
    ) -> Tensor {
        let (b, s, h3) = qkv.dims3().unwrap();
        let h = h3 / 3;
        let d = h / heads;
        let split = |i: usize| {
            qkv.narrow(2, i * h, h)
                .unwrap()
                .reshape((b, s, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(mask)
            .unwrap();
        let mut probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        if let Some(m) = drop {
            probs = probs.mul(m).unwrap();
        }
        probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, s, h))
            .unwrap()
    }

    #[test]
    fn attention_matches_candle_ops_with_and_without_dropout() {
        let (b, s, heads, d) = (2, 13, 3, 7);
        for isa in isas() {
            for with_drop in [false, true] {
                let qkv = Var::from_tensor(&random(&[b, s, 3 * heads * d], 15, 1.5)).unwrap();
                let mask = mask_bias(b, s);
                let drop: Option<Vec<f32>> = with_drop.then(|| {
                    (0..b * heads * s * s)
                        .map(|i| if i % 7 == 2 { 0.0 } else { 1.25 })
                        .collect()
                });
                let drop_t = drop
                    .as_ref()
                    .map(|m| Tensor::from_vec(m.clone(), (b, heads, s, s), &Device::Cpu).unwrap());
                let want = attention_reference(qkv.as_tensor(), &mask, heads, drop_t.as_ref());
                let scale = 1.0 / (d as f32).sqrt();
                let got = attention(qkv.as_tensor(), &mask, heads, scale, drop, isa).unwrap();
                assert_close(&got, &want, 1e-5, 1e-6, "attention");
                let gw = loss(&want, 16).backward().unwrap();
                let gg = loss(&got, 16).backward().unwrap();
                assert_close(
                    gg.get(qkv.as_tensor()).unwrap(),
                    gw.get(qkv.as_tensor()).unwrap(),
                    1e-4,
                    1e-5,
                    "dqkv",
                );
            }
        }
    }

    #[test]
    fn residual_layer_norm_matches_the_composite_with_every_gradient() {
        // 300 rows: two row blocks in the backward pass.
        let (m, h, r) = (3 * 100, 37, 5);
        for isa in isas() {
            for (with_adapter, act, with_drop) in [
                (false, Activation::Gelu, false),
                (false, Activation::Gelu, true),
                (true, Activation::Gelu, true),
                (true, Activation::GeluNew, false),
                (true, Activation::Relu, true),
            ] {
                let var = |shape: &[usize], seed: u64, scale: f32| {
                    Var::from_tensor(&random(shape, seed, scale)).unwrap()
                };
                let x = var(&[3, 100, h], 31, 1.0);
                let p = var(&[3, 100, h], 32, 1.0);
                let wd = var(&[r, h], 33, 0.5);
                let bd = var(&[r], 34, 0.5);
                let wu = var(&[h, r], 35, 0.5);
                let bu = var(&[h], 36, 0.5);
                let gamma = Var::from_tensor(&(random(&[h], 37, 0.5) + 1.0).unwrap()).unwrap();
                let beta = var(&[h], 38, 0.5);
                let mask: Option<Vec<f32>> = with_drop.then(|| {
                    (0..m * h)
                        .map(|i| if i % 5 == 1 { 0.0 } else { 1.25 })
                        .collect()
                });
                // The composite, as `crate::albert` builds it from candle ops.
                let mut z = p.as_tensor().clone();
                if let Some(mk) = &mask {
                    let mt = Tensor::from_vec(mk.clone(), (3, 100, h), &Device::Cpu).unwrap();
                    z = z.mul(&mt).unwrap();
                }
                if with_adapter {
                    let down = z
                        .broadcast_matmul(&wd.as_tensor().t().unwrap())
                        .unwrap()
                        .broadcast_add(bd.as_tensor())
                        .unwrap();
                    let a = crate::albert::activate(&down, act).unwrap();
                    let up = a
                        .broadcast_matmul(&wu.as_tensor().t().unwrap())
                        .unwrap()
                        .broadcast_add(bu.as_tensor())
                        .unwrap();
                    z = (z + up).unwrap();
                }
                let sum = (x.as_tensor() + z).unwrap();
                let want = candle_nn::ops::layer_norm_slow(
                    &sum,
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-12,
                )
                .unwrap();
                let adapter = with_adapter.then(|| TailAdapter {
                    down_w: wd.as_tensor(),
                    down_b: bd.as_tensor(),
                    up_w: wu.as_tensor(),
                    up_b: bu.as_tensor(),
                    act,
                });
                let got = residual_layer_norm(
                    x.as_tensor(),
                    p.as_tensor(),
                    mask,
                    adapter,
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-12,
                    isa,
                )
                .unwrap();
                assert_close(&got, &want, 1e-5, 1e-5, "residual layer norm");
                let gw = loss(&want, 39).backward().unwrap();
                let gg = loss(&got, 39).backward().unwrap();
                let mut checks = vec![
                    (x.as_tensor(), "dx"),
                    (p.as_tensor(), "dp"),
                    (gamma.as_tensor(), "dgamma"),
                    (beta.as_tensor(), "dbeta"),
                ];
                if with_adapter {
                    checks.extend([
                        (wd.as_tensor(), "d down_w"),
                        (bd.as_tensor(), "d down_b"),
                        (wu.as_tensor(), "d up_w"),
                        (bu.as_tensor(), "d up_b"),
                    ]);
                }
                for (t, name) in checks {
                    let what =
                        format!("{name} (adapter {with_adapter}, {act:?}, drop {with_drop})");
                    assert_close(gg.get(t).unwrap(), gw.get(t).unwrap(), 1e-4, 1e-4, &what);
                }
            }
        }
        let t = random(&[3, 4], 1, 1.0);
        let g = random(&[5], 2, 1.0);
        assert!(residual_layer_norm(&t, &t, None, None, &g, &g, 1e-5, Isa::Portable).is_err());
    }

    #[test]
    fn frozen_linear_with_activation_matches_the_composite_and_its_gradient() {
        for isa in isas() {
            for act in [Activation::Gelu, Activation::GeluNew, Activation::Relu] {
                let x = Var::from_tensor(&random(&[2, 13, 37], 41, 1.0)).unwrap();
                let w = random(&[29, 37], 42, 0.5);
                let b = random(&[29], 43, 0.5);
                let pre = x
                    .as_tensor()
                    .broadcast_matmul(&w.t().unwrap())
                    .unwrap()
                    .broadcast_add(&b)
                    .unwrap();
                let want = crate::albert::activate(&pre, act).unwrap();
                let lin = Arc::new(FrozenLinear::new(&w, Some(&b)).unwrap());
                let got = lin.forward_act(x.as_tensor(), act, isa).unwrap();
                assert_close(&got, &want, 1e-5, 2e-6, "frozen linear + act");
                let gw = loss(&want, 44).backward().unwrap();
                let gg = loss(&got, 44).backward().unwrap();
                assert_close(
                    gg.get(x.as_tensor()).unwrap(),
                    gw.get(x.as_tensor()).unwrap(),
                    1e-4,
                    1e-5,
                    &format!("dx ({act:?})"),
                );
            }
        }
    }

    #[test]
    fn frozen_ffn_matches_the_composite_and_its_gradient() {
        for isa in isas() {
            for act in [Activation::Gelu, Activation::Relu] {
                let x = Var::from_tensor(&random(&[2, 13, 37], 51, 1.0)).unwrap();
                let (w1, b1) = (random(&[53, 37], 52, 0.5), random(&[53], 53, 0.5));
                let (w2, b2) = (random(&[37, 53], 54, 0.5), random(&[37], 55, 0.5));
                let lin = |x: &Tensor, w: &Tensor, b: &Tensor| {
                    x.broadcast_matmul(&w.t().unwrap())
                        .unwrap()
                        .broadcast_add(b)
                        .unwrap()
                };
                let hidden = crate::albert::activate(&lin(x.as_tensor(), &w1, &b1), act).unwrap();
                let want = lin(&hidden, &w2, &b2);
                let first = Arc::new(FrozenLinear::new(&w1, Some(&b1)).unwrap());
                let second = Arc::new(FrozenLinear::new(&w2, Some(&b2)).unwrap());
                let got = frozen_ffn(x.as_tensor(), &first, act, &second, isa).unwrap();
                assert_close(&got, &want, 1e-5, 1e-5, "ffn");
                let gw = loss(&want, 56).backward().unwrap();
                let gg = loss(&got, 56).backward().unwrap();
                assert_close(
                    gg.get(x.as_tensor()).unwrap(),
                    gw.get(x.as_tensor()).unwrap(),
                    1e-4,
                    1e-5,
                    &format!("dx ({act:?})"),
                );
                assert!(frozen_ffn(x.as_tensor(), &first, act, &first, isa).is_err());
            }
        }
    }

    #[test]
    fn frozen_attention_block_matches_projections_around_attention() {
        let (b, s, heads, d, inp) = (2, 13, 3, 7, 17);
        let h = heads * d;
        for isa in isas() {
            for with_drop in [false, true] {
                let x = Var::from_tensor(&random(&[b, s, inp], 61, 1.0)).unwrap();
                let (wq, bq) = (random(&[3 * h, inp], 62, 0.5), random(&[3 * h], 63, 0.5));
                let (wd, bd) = (random(&[19, h], 64, 0.5), random(&[19], 65, 0.5));
                let mask = mask_bias(b, s);
                let drop: Option<Vec<f32>> = with_drop.then(|| {
                    (0..b * heads * s * s)
                        .map(|i| if i % 7 == 3 { 0.0 } else { 1.25 })
                        .collect()
                });
                let drop_t = drop
                    .as_ref()
                    .map(|m| Tensor::from_vec(m.clone(), (b, heads, s, s), &Device::Cpu).unwrap());
                let lin = |x: &Tensor, w: &Tensor, bias: &Tensor| {
                    x.broadcast_matmul(&w.t().unwrap())
                        .unwrap()
                        .broadcast_add(bias)
                        .unwrap()
                };
                let qkv = lin(x.as_tensor(), &wq, &bq);
                let context = attention_reference(&qkv, &mask, heads, drop_t.as_ref());
                let want = lin(&context, &wd, &bd);
                let pq = Arc::new(FrozenLinear::new(&wq, Some(&bq)).unwrap());
                let pd = Arc::new(FrozenLinear::new(&wd, Some(&bd)).unwrap());
                let scale = 1.0 / (d as f32).sqrt();
                let got =
                    frozen_attention_block(x.as_tensor(), &pq, &pd, &mask, heads, scale, drop, isa)
                        .unwrap();
                assert_close(&got, &want, 1e-5, 1e-5, "attention block");
                let gw = loss(&want, 66).backward().unwrap();
                let gg = loss(&got, 66).backward().unwrap();
                assert_close(
                    gg.get(x.as_tensor()).unwrap(),
                    gw.get(x.as_tensor()).unwrap(),
                    1e-4,
                    1e-5,
                    "dx",
                );
                assert!(frozen_attention_block(
                    x.as_tensor(),
                    &pd,
                    &pq,
                    &mask,
                    heads,
                    scale,
                    None,
                    isa
                )
                .is_err());
            }
        }
    }
}
