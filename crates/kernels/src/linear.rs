//! Linear layers for training: frozen weights packed once (forward product and input
//! gradient, no weight gradient), the frozen feed-forward and attention blocks built from
//! them, and trainable layers with their weight and bias gradients.
//!
//! Activations are `m x width` row-major slices.

use std::fmt;

use super::act::{self, Act};
use super::attention::{self, AttentionShape};
use super::elementwise::transpose;
use super::gemm::{gemm, gemm_new, Epilogue, PackedB};
use super::scratch::{output_buffer, Scratch};
use super::Isa;

/// A frozen linear layer `y = x W^T + b`, packed once for [`gemm`].
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
    /// Packs `weight [out_dim, in_dim]` (row-major) and `bias [out_dim]`.
    ///
    /// # Panics
    /// If `weight` does not hold `out_dim * in_dim` values or the bias `out_dim`.
    pub fn new(weight: &[f32], out_dim: usize, in_dim: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(
            weight.len(),
            out_dim * in_dim,
            "frozen linear: weight shape"
        );
        assert!(
            bias.as_ref().is_none_or(|b| b.len() == out_dim),
            "frozen linear: bias shape"
        );
        let fwd = PackedB::from_weight(weight, out_dim, in_dim);
        let mut bwd = PackedB::default();
        bwd.pack_kn(weight, in_dim, out_dim, in_dim);
        Self {
            in_dim,
            out_dim,
            fwd,
            bwd,
            bias,
        }
    }

    /// The input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// The output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `input W^T + b` for the first `rows` rows of `input`, as a new buffer.
    ///
    /// # Panics
    /// If `input` holds fewer than `rows` rows of `in_dim`.
    pub fn product(&self, isa: Isa, rows: usize, input: &[f32]) -> Vec<f32> {
        let ep = Epilogue {
            bias: self.bias.as_deref(),
            ..Epilogue::default()
        };
        gemm_new(isa, rows, input, self.in_dim, &self.fwd, &ep)
    }

    /// The input gradient `dy W` for the first `rows` rows of `dy`, as a new buffer.
    ///
    /// # Panics
    /// If `dy` holds fewer than `rows` rows of `out_dim`.
    pub fn grad_x(&self, isa: Isa, rows: usize, dy: &[f32]) -> Vec<f32> {
        gemm_new(isa, rows, dy, self.out_dim, &self.bwd, &Epilogue::default())
    }

    /// [`Self::grad_x`] into `dx` (`rows x in_dim`), e.g. a pooled temporary.
    ///
    /// # Panics
    /// If `dy` or `dx` is too short for `rows` rows.
    pub fn grad_x_into(&self, isa: Isa, rows: usize, dy: &[f32], dx: &mut [f32]) {
        let ep = Epilogue::default();
        gemm(isa, rows, dy, self.out_dim, &self.bwd, dx, self.in_dim, &ep);
    }

    /// `act(input W^T + b)` for the rows of `input`: returns the output and the
    /// pre-activation, which [`Self::grad_x_act`] needs.
    ///
    /// # Panics
    /// If `input` is not whole rows of `in_dim`.
    pub fn forward_act(&self, isa: Isa, act: Act, input: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let m = self.rows(input, self.in_dim);
        let pre = self.product(isa, m, input);
        (act::apply_copy(isa, act, &pre), pre)
    }

    /// The input gradient after an activation: `dx = (dy * act'(pre)) W`.
    ///
    /// # Panics
    /// If `dy` is not whole rows of `out_dim` or `pre` differs from it in length.
    pub fn grad_x_act(&self, isa: Isa, act: Act, pre: &[f32], dy: &[f32]) -> Vec<f32> {
        let m = self.rows(dy, self.out_dim);
        assert_eq!(pre.len(), dy.len(), "frozen linear: pre-activation shape");
        let mut dpre = Scratch::take(dy.len());
        act::act_grad_par(isa, act, pre, dy, &mut dpre);
        self.grad_x(isa, m, &dpre)
    }

    fn rows(&self, x: &[f32], width: usize) -> usize {
        assert!(
            width > 0 && x.len().is_multiple_of(width),
            "{self:?}: {} values are not rows of {width}",
            x.len()
        );
        x.len() / width
    }
}

/// The frozen feed-forward block `y = act(input W1^T + b1) W2^T + b2`: returns `y` and the
/// pre-activation `input W1^T + b1`, which [`ffn_backward`] needs.
///
/// # Panics
/// If `first` does not feed `second` or `input` is not whole rows of `first.in_dim()`.
pub fn ffn_forward(
    isa: Isa,
    first: &FrozenLinear,
    act: Act,
    second: &FrozenLinear,
    input: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        first.out_dim, second.in_dim,
        "ffn: {first:?} does not feed {second:?}"
    );
    let m = first.rows(input, first.in_dim);
    let pre = first.product(isa, m, input);
    // The activation is only the second product's input: a pooled temporary.
    let mut g = Scratch::take(pre.len());
    super::par_rows(&mut g, 1, act::CHUNK, |i0, gc| {
        gc.copy_from_slice(&pre[i0..i0 + gc.len()]);
        act::apply(isa, act, gc);
    });
    let y = second.product(isa, m, &g);
    (y, pre)
}

/// The input gradient of [`ffn_forward`]: `dx = ((dy W2) * act'(pre)) W1`.
///
/// # Panics
/// If `first` does not feed `second`, or `dy` and `pre` are not the same rows.
pub fn ffn_backward(
    isa: Isa,
    first: &FrozenLinear,
    act: Act,
    second: &FrozenLinear,
    pre: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    assert_eq!(
        first.out_dim, second.in_dim,
        "ffn: {first:?} does not feed {second:?}"
    );
    let m = second.rows(dy, second.out_dim);
    assert_eq!(pre.len(), m * first.out_dim, "ffn: pre-activation shape");
    let mut dg = Scratch::take(pre.len());
    second.grad_x_into(isa, m, dy, &mut dg);
    let mut dpre = Scratch::take(pre.len());
    act::act_grad_par(isa, act, pre, &dg, &mut dpre);
    drop(dg);
    first.grad_x(isa, m, &dpre)
}

/// What [`attention_block_forward`] leaves for [`attention_block_backward`].
#[derive(Default)]
pub struct AttentionBlockSaved {
    /// The fused projection `x Wqkv^T + bqkv`, `[tokens, 3H]`.
    pub qkv: Vec<f32>,
    /// The softmax probabilities before dropout, `[B, heads, S, S]`.
    pub probs: Vec<f32>,
}

/// A frozen attention sublayer's products around its attention:
/// `dense(attention(input Wqkv^T + bqkv))` for `input [B*S, in]` (see
/// [`attention::train_forward`] for `mask_bias`, `scale` and `drop`).
///
/// # Panics
/// If `input`, the projections and `shape` disagree, or a buffer has the wrong size.
#[allow(clippy::too_many_arguments)]
pub fn attention_block_forward(
    isa: Isa,
    qkv: &FrozenLinear,
    dense: &FrozenLinear,
    input: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    scale: f32,
    drop: Option<&[f32]>,
) -> (Vec<f32>, AttentionBlockSaved) {
    let m = shape.batch * shape.seq;
    assert!(
        input.len() == m * qkv.in_dim
            && qkv.out_dim == 3 * shape.hidden()
            && dense.in_dim == shape.hidden(),
        "attention block: input, {qkv:?}, {dense:?} and {shape:?} disagree"
    );
    let projected = qkv.product(isa, m, input);
    let (context, probs) = attention::train_forward(isa, &projected, mask_bias, shape, scale, drop);
    let y = dense.product(isa, m, &context);
    let saved = AttentionBlockSaved {
        qkv: projected,
        probs,
    };
    (y, saved)
}

/// The input gradient of [`attention_block_forward`]: through the dense projection, the
/// attention and the QKV projection.
///
/// # Panics
/// If `dy` or the saved buffers differ in shape from the forward pass.
#[allow(clippy::too_many_arguments)]
pub fn attention_block_backward(
    isa: Isa,
    qkv: &FrozenLinear,
    dense: &FrozenLinear,
    saved: &AttentionBlockSaved,
    shape: AttentionShape,
    scale: f32,
    drop: Option<&[f32]>,
    dy: &[f32],
) -> Vec<f32> {
    let m = shape.batch * shape.seq;
    assert!(
        dy.len() == m * dense.out_dim && saved.qkv.len() == m * qkv.out_dim,
        "attention block backward: shapes differ from the forward pass"
    );
    let mut dcontext = Scratch::take(m * dense.in_dim);
    dense.grad_x_into(isa, m, dy, &mut dcontext);
    let dqkv =
        attention::train_backward(isa, &saved.qkv, shape, scale, drop, &saved.probs, &dcontext);
    std::mem::drop(dcontext);
    qkv.grad_x(isa, m, &dqkv)
}

/// `y = input W^T + b` for a trainable `weight` `W [out_dim, in_dim]` (packed per call: it is
/// small or changes every step), `bias` `b [out_dim]` and rows of `in_dim` in `input`.
///
/// # Panics
/// If `in_dim` is 0, `input` is not whole rows of it, or `weight` and `bias` do not have
/// those shapes.
pub fn linear_forward(
    isa: Isa,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    out_dim: usize,
    in_dim: usize,
) -> Vec<f32> {
    assert!(
        in_dim > 0
            && input.len().is_multiple_of(in_dim)
            && weight.len() == out_dim * in_dim
            && bias.len() == out_dim,
        "linear: shapes of input, weight and bias disagree"
    );
    let m = input.len() / in_dim;
    let packed = PackedB::from_weight(weight, out_dim, in_dim);
    gemm_new(isa, m, input, in_dim, &packed, &Epilogue::bias(bias))
}

/// The gradients of [`linear_forward`] from `dy` as one buffer: `dx` (input's size), then
/// `dW` (weight's size), then `db` (`out_dim`).
///
/// # Panics
/// If `in_dim` is 0, `input` is not whole rows of it, `weight` is not `out_dim x in_dim`, or
/// `dy` does not hold input's rows of `out_dim`.
pub fn linear_backward(
    isa: Isa,
    input: &[f32],
    weight: &[f32],
    dy: &[f32],
    out_dim: usize,
    in_dim: usize,
) -> Vec<f32> {
    assert!(
        in_dim > 0 && input.len().is_multiple_of(in_dim) && weight.len() == out_dim * in_dim,
        "linear backward: shapes of input and weight disagree"
    );
    let (x, w) = (input, weight);
    let (out, inp) = (out_dim, in_dim);
    let m = x.len() / inp;
    assert_eq!(dy.len(), m * out, "linear backward: gradient shape");
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
    all
}
