//! Every op against the candle composite it replaces, forward and backward, on every
//! instruction set this CPU runs.

use std::sync::Arc;

use candle_core::{Device, Tensor, Var, D};

use super::*;
use crate::config::Activation;
use crate::exec::Isa;

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
        let lin = Arc::new(pack_frozen(&w, Some(&b)).unwrap());
        let got = frozen_linear(x.as_tensor(), &lin, isa).unwrap();
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
fn attention_reference(qkv: &Tensor, mask: &Tensor, heads: usize, drop: Option<&Tensor>) -> Tensor {
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
                let a = crate::nn::activate(&down, act, &crate::Ctx::eval()).unwrap();
                let up = a
                    .broadcast_matmul(&wu.as_tensor().t().unwrap())
                    .unwrap()
                    .broadcast_add(bu.as_tensor())
                    .unwrap();
                z = (z + up).unwrap();
            }
            let sum = (x.as_tensor() + z).unwrap();
            let want =
                candle_nn::ops::layer_norm_slow(&sum, gamma.as_tensor(), beta.as_tensor(), 1e-12)
                    .unwrap();
            let adapter = with_adapter.then(|| ResidualNormAdapter {
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
                let what = format!("{name} (adapter {with_adapter}, {act:?}, drop {with_drop})");
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
            let want = crate::nn::activate(&pre, act, &crate::Ctx::eval()).unwrap();
            let lin = Arc::new(pack_frozen(&w, Some(&b)).unwrap());
            let got = frozen_linear_act(x.as_tensor(), &lin, act, isa).unwrap();
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
            let hidden =
                crate::nn::activate(&lin(x.as_tensor(), &w1, &b1), act, &crate::Ctx::eval())
                    .unwrap();
            let want = lin(&hidden, &w2, &b2);
            let first = Arc::new(pack_frozen(&w1, Some(&b1)).unwrap());
            let second = Arc::new(pack_frozen(&w2, Some(&b2)).unwrap());
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
            let pq = Arc::new(pack_frozen(&wq, Some(&bq)).unwrap());
            let pd = Arc::new(pack_frozen(&wd, Some(&bd)).unwrap());
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

#[test]
fn attention_kl_matches_candle_log_softmax_and_its_gradient() {
    let (b, s, heads, d) = (2, 13, 3, 7);
    let mask = mask_bias(b, s);
    // A target that is a distribution over the real keys of each row.
    let target = candle_nn::ops::softmax(
        &random(&[b, heads, s, s], 21, 3.0)
            .broadcast_add(&mask)
            .unwrap(),
        D::Minus1,
    )
    .unwrap();
    // Padding queries (the last 3 of the second sequence) do not count; the rest weigh 1/10.
    let weights: Vec<f32> = (0..b * s)
        .map(|i| {
            if i / s == 1 && i % s >= s - 3 {
                0.0
            } else {
                0.1
            }
        })
        .collect();
    let w = Tensor::from_vec(weights.clone(), (b, 1, s, 1), &Device::Cpu).unwrap();
    for isa in isas() {
        let qkv = Var::from_tensor(&random(&[b, s, 3 * heads * d], 22, 1.5)).unwrap();
        let split = |i: usize| {
            let h = heads * d;
            let t = qkv.as_tensor().narrow(2, i * h, h).unwrap();
            t.reshape((b, s, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let scale = 1.0 / (d as f32).sqrt();
        let scores = (split(0).matmul(&split(1).t().unwrap()).unwrap() * scale as f64)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let log_p = candle_nn::ops::log_softmax(&scores, D::Minus1).unwrap();
        let t_log_t = (&target * target.clamp(1e-30, 1.0).unwrap().log().unwrap()).unwrap();
        let per_row = (t_log_t - (&target * log_p).unwrap())
            .unwrap()
            .sum_keepdim(D::Minus1)
            .unwrap();
        let want = per_row.broadcast_mul(&w).unwrap().sum_all().unwrap();
        let got = attention_kl(
            qkv.as_tensor(),
            &mask,
            &target,
            weights.clone(),
            heads,
            scale,
            isa,
        )
        .unwrap();
        assert_close(&got, &want, 1e-4, 1e-5, "attention KL");
        let gw = (&want * 3.0).unwrap().backward().unwrap();
        let gg = (&got * 3.0).unwrap().backward().unwrap();
        assert_close(
            gg.get(qkv.as_tensor()).unwrap(),
            gw.get(qkv.as_tensor()).unwrap(),
            1e-3,
            1e-5,
            "dqkv",
        );
    }
}
