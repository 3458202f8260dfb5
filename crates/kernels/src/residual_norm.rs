//! The end of a sublayer as one training op: `y = LayerNorm(x + A(p * drop))` for the
//! residual `x` and the sublayer's output `p`, where `A` is a bottleneck adapter
//! `z + up(act(down(z)))` or the identity, with the gradients of `x`, `p`, the adapter's
//! weights and biases, gamma and beta.
//!
//! The adapter's and the LayerNorm's parameters travel as one vector (see
//! [`ResidualNorm::offsets`]): down weight `[r, h]`, down bias `[r]`, up weight `[h, r]`, up
//! bias `[h]` (all absent without an adapter), gamma `[h]`, beta `[h]`.

use super::act::{self, Act};
use super::elementwise::{col_sums, par_add, par_mul, par_scale, transpose};
use super::gemm::{gemm, gemm_serial, Epilogue, PackedB};
use super::norm::{layer_norm, layer_norm_backward};
use super::scratch::{output_buffer, with_task_scratch, Scratch};
use super::{par_for, par_rows, Isa, SendPtr};

/// Rows per parallel block of the adapter's weight gradients.
const GRAD_ROWS: usize = 256;

/// The shape of one residual + adapter + LayerNorm op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualNorm {
    /// The hidden width `h`.
    pub width: usize,
    /// The adapter's bottleneck width `r` and activation; `None` without an adapter.
    pub adapter: Option<(usize, Act)>,
    /// The LayerNorm's epsilon.
    pub eps: f32,
}

/// Where each parameter starts in the parameter vector (beta follows gamma).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub down_b: usize,
    pub up_w: usize,
    pub up_b: usize,
    pub gamma: usize,
}

/// What the forward pass leaves for the backward pass.
#[derive(Default)]
pub struct ResidualNormSaved {
    /// The LayerNorm input `x + A(z)`.
    sum: Vec<f32>,
    /// `z = p * drop`.
    z: Vec<f32>,
    /// The adapter's pre-activation `down(z)`.
    down: Vec<f32>,
    /// The adapter's activation `act(down(z))`.
    hidden: Vec<f32>,
}

impl ResidualNormSaved {
    /// The number of values the forward pass ran on (the shape of `x`).
    pub fn len(&self) -> usize {
        self.sum.len()
    }

    /// Whether nothing was saved (no forward pass yet).
    pub fn is_empty(&self) -> bool {
        self.sum.is_empty()
    }
}

impl ResidualNorm {
    fn bottleneck(&self) -> usize {
        self.adapter.map_or(0, |(r, _)| r)
    }

    /// Offsets of the parameters in the parameter vector.
    pub fn offsets(&self) -> Offsets {
        let (h, r) = (self.width, self.bottleneck());
        let has = usize::from(self.adapter.is_some());
        Offsets {
            down_b: r * h,
            up_w: r * h + r,
            up_b: 2 * r * h + r,
            gamma: has * (2 * r * h + r + h),
        }
    }

    /// The length of the parameter vector.
    pub fn param_len(&self) -> usize {
        self.offsets().gamma + 2 * self.width
    }

    fn check(&self, x_len: usize, params: &[f32]) -> usize {
        let h = self.width;
        assert!(
            h > 0 && x_len.is_multiple_of(h) && params.len() == self.param_len(),
            "residual layer norm: shapes differ from the op's"
        );
        x_len / h
    }

    /// `y = LayerNorm(residual + A(sublayer * drop))` for `residual` and `sublayer` of the
    /// same rows of `width`, and what the backward pass needs.
    ///
    /// # Panics
    /// If `residual`, `sublayer`, `drop` (when given) and `params` do not fit this op's shape.
    pub fn forward(
        &self,
        isa: Isa,
        residual: &[f32],
        sublayer: &[f32],
        drop: Option<&[f32]>,
        params: &[f32],
    ) -> (Vec<f32>, ResidualNormSaved) {
        let (x, p) = (residual, sublayer);
        let m = self.check(x.len(), params);
        assert!(
            p.len() == x.len() && drop.is_none_or(|d| d.len() == x.len()),
            "residual layer norm: residual, sublayer and dropout mask differ in shape"
        );
        let (h, r) = (self.width, self.bottleneck());
        let o = self.offsets();
        let z = match drop {
            Some(mask) => par_mul(isa, p, mask),
            None => p.to_vec(),
        };
        let mut s = output_buffer(x.len());
        let (mut d, mut g) = (Vec::new(), Vec::new());
        match self.adapter {
            Some((_, act)) => {
                d = output_buffer(m * r);
                let down = PackedB::from_weight(&params[..o.down_b], r, h);
                let ep = Epilogue::bias(&params[o.down_b..o.up_w]);
                gemm(isa, m, &z, h, &down, &mut d, r, &ep);
                g = act::apply_copy(isa, act, &d);
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
        let (gamma, beta) = params[o.gamma..].split_at(h);
        let y = layer_norm(isa, &s, gamma, beta, self.eps);
        let saved = ResidualNormSaved {
            sum: s,
            z,
            down: d,
            hidden: g,
        };
        (y, saved)
    }

    /// The gradients of [`Self::forward`] from `dy`, as one buffer: those of `residual` and
    /// `sublayer` (each of their size), then the parameter vector's gradient.
    ///
    /// # Panics
    /// If `dy`, `params`, `drop` or `saved` differ in shape from the forward pass.
    pub fn backward(
        &self,
        isa: Isa,
        params: &[f32],
        drop: Option<&[f32]>,
        saved: &ResidualNormSaved,
        dy: &[f32],
    ) -> Vec<f32> {
        let n = dy.len();
        let m = self.check(n, params);
        assert!(
            saved.sum.len() == n && drop.is_none_or(|d| d.len() == n),
            "residual layer norm backward: shapes differ from the forward pass"
        );
        let (h, r) = (self.width, self.bottleneck());
        let o = self.offsets();
        let mut out = output_buffer(2 * n + params.len());
        let (ds, rest) = out.split_at_mut(n);
        let (dp, dparams) = rest.split_at_mut(n);
        dparams.fill(0.0);
        let gamma = &params[o.gamma..o.gamma + h];
        layer_norm_backward(
            isa,
            self.eps,
            &saved.sum,
            gamma,
            dy,
            ds,
            &mut dparams[o.gamma..],
        );
        dp.copy_from_slice(ds);
        if let Some((_, act)) = self.adapter {
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
            let blocks = m.div_ceil(GRAD_ROWS);
            let part_len = 2 * r * h + h + r;
            let mut parts = Scratch::take(blocks * part_len);
            let mut dd = Scratch::take(m * r);
            {
                let (pp, dp_) = (SendPtr(parts.as_mut_ptr()), SendPtr(dd.as_mut_ptr()));
                let ds = &*ds;
                par_for(blocks, |c| {
                    let rows = c * GRAD_ROWS..((c + 1) * GRAD_ROWS).min(m);
                    let mc = rows.len();
                    // SAFETY: block c owns rows `rows` of `dd` (m x r) and slot c of `parts`
                    // (blocks x part_len); both outlive `par_for`.
                    let (ddc, part) = unsafe {
                        (
                            dp_.slice_mut(rows.start * r, mc * r),
                            pp.slice_mut(c * part_len, part_len),
                        )
                    };
                    let (hr, wr) = (rows.start * h..rows.end * h, rows.start * r..rows.end * r);
                    act::act_grad(isa, act, &saved.down[wr.clone()], &dg[wr.clone()], ddc);
                    let (dwu_t, rest) = part.split_at_mut(r * h);
                    let (dwd_c, rest) = rest.split_at_mut(r * h);
                    let (dbu_c, dbd_c) = rest.split_at_mut(h);
                    with_task_scratch(|sc| {
                        let ep = Epilogue::default();
                        transpose(&saved.hidden[wr], mc, r, &mut sc.a);
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
        if let Some(mask) = drop {
            par_scale(dp, mask);
        }
        out
    }
}
