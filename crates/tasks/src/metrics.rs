//! The official GLUE metrics, computed the way scikit-learn and SciPy compute them (the
//! implementations behind HF `evaluate`'s `glue` metric), so numbers compare one to one with
//! published results (which task uses which metric: docs/sources.md#glue-metrics). Golden tests
//! check them against values produced by those libraries (`tools/metrics/make_fixtures.py`).
//!
//! Degenerate inputs follow the reference libraries, not intuition:
//! - MCC is 0 when either the predictions or the golds hold a single class
//!   (scikit-learn's convention);
//! - F1 is 0 when there are no positive predictions and no positive golds;
//! - Pearson and Spearman are NaN when either side is constant (SciPy returns NaN there);
//!   a NaN metric makes `combined_score` NaN too, which a model-selection loop should treat
//!   as "not better".

use crate::error::{Error, Result};
use crate::example::Label;
use crate::task::{Metric, TaskKind, TaskSpec};

fn check_lengths(n_pred: usize, n_gold: usize) -> Result<()> {
    if n_pred != n_gold {
        return Err(Error::Metric {
            task: String::new(),
            message: format!("{n_pred} predictions but {n_gold} gold labels"),
        });
    }
    if n_pred == 0 {
        return Err(Error::Metric {
            task: String::new(),
            message: "no examples to score".to_string(),
        });
    }
    Ok(())
}

/// Fraction of positions where `preds` equals `golds`.
pub fn accuracy(preds: &[usize], golds: &[usize]) -> Result<f64> {
    check_lengths(preds.len(), golds.len())?;
    let hits = preds.iter().zip(golds).filter(|(p, g)| p == g).count();
    Ok(hits as f64 / preds.len() as f64)
}

/// F1 of the positive class (index 1), as scikit-learn's `f1_score` with `pos_label=1`:
/// `2 tp / (2 tp + fp + fn)`, and 0 when that is 0/0.
pub fn f1_positive(preds: &[usize], golds: &[usize]) -> Result<f64> {
    check_lengths(preds.len(), golds.len())?;
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &g) in preds.iter().zip(golds) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    Ok(if denominator == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denominator as f64
    })
}

/// Matthews correlation coefficient, multi-class form (Gorodkin's R_K, as scikit-learn):
/// `(c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))`, 0 when the
/// denominator is 0.
pub fn matthews_corrcoef(preds: &[usize], golds: &[usize]) -> Result<f64> {
    check_lengths(preds.len(), golds.len())?;
    let classes = preds.iter().chain(golds).max().map_or(0, |m| m + 1);
    let mut pred_counts = vec![0f64; classes];
    let mut gold_counts = vec![0f64; classes];
    let mut correct = 0f64;
    for (&p, &g) in preds.iter().zip(golds) {
        pred_counts[p] += 1.0;
        gold_counts[g] += 1.0;
        if p == g {
            correct += 1.0;
        }
    }
    let s = preds.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_pg = correct * s - dot(&pred_counts, &gold_counts);
    let cov_pp = s * s - dot(&pred_counts, &pred_counts);
    let cov_gg = s * s - dot(&gold_counts, &gold_counts);
    Ok(if cov_pp * cov_gg == 0.0 {
        0.0
    } else {
        cov_pg / (cov_gg * cov_pp).sqrt()
    })
}

/// Pearson correlation; NaN when either input is constant. Clamped to [-1, 1] against
/// rounding, as SciPy does.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths(x.len(), y.len())?;
    let n = x.len() as f64;
    let mean_x = x.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(f64::NAN);
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based ranks with ties given the average of the ranks they span (SciPy's
/// `rankdata(method="average")`). NaN inputs sort last.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman rank correlation: Pearson of the average ranks; NaN when either side is
/// constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths(x.len(), y.len())?;
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Score predictions against gold labels with the task's official metrics.
///
/// Returns `(name, value)` pairs in the task's metric order, followed by
/// `("combined_score", mean)` when the task has more than one metric (as HF `run_glue`).
/// Classification tasks take [`Label::Class`] on both sides (indices inside the label set);
/// regression tasks take [`Label::Score`]. Anything else (e.g. unlabeled test golds) is an
/// error.
pub fn evaluate(
    spec: &TaskSpec,
    preds: &[Label],
    golds: &[Label],
) -> Result<Vec<(&'static str, f64)>> {
    let with_task = |e: Error| match e {
        Error::Metric { message, .. } => Error::Metric {
            task: spec.name.clone(),
            message,
        },
        other => other,
    };
    let bad = |message: String| Error::Metric {
        task: spec.name.clone(),
        message,
    };
    check_lengths(preds.len(), golds.len()).map_err(with_task)?;

    let mut values = Vec::with_capacity(spec.metrics.len() + 1);
    match &spec.kind {
        TaskKind::Classification { labels } => {
            let classes = |side: &str, xs: &[Label]| -> Result<Vec<usize>> {
                xs.iter()
                    .enumerate()
                    .map(|(i, l)| match l {
                        Label::Class(c) if *c < labels.len() => Ok(*c),
                        other => Err(bad(format!(
                            "{side} #{i} is {other:?}, expected a class index below {}",
                            labels.len()
                        ))),
                    })
                    .collect()
            };
            let p = classes("prediction", preds)?;
            let g = classes("gold label", golds)?;
            for &metric in &spec.metrics {
                let value = match metric {
                    Metric::Accuracy => accuracy(&p, &g),
                    Metric::F1 => f1_positive(&p, &g),
                    Metric::Mcc => matthews_corrcoef(&p, &g),
                    other => return Err(bad(format!("{other} needs a regression task"))),
                }
                .map_err(with_task)?;
                values.push((metric.name(), value));
            }
        }
        TaskKind::Regression => {
            let scores = |side: &str, xs: &[Label]| -> Result<Vec<f64>> {
                xs.iter()
                    .enumerate()
                    .map(|(i, l)| match l {
                        Label::Score(s) => Ok(f64::from(*s)),
                        other => Err(bad(format!("{side} #{i} is {other:?}, expected a score"))),
                    })
                    .collect()
            };
            let p = scores("prediction", preds)?;
            let g = scores("gold label", golds)?;
            for &metric in &spec.metrics {
                let value = match metric {
                    Metric::Pearson => pearson(&p, &g),
                    Metric::Spearman => spearman(&p, &g),
                    other => return Err(bad(format!("{other} needs a classification task"))),
                }
                .map_err(with_task)?;
                values.push((metric.name(), value));
            }
        }
    }
    if values.len() > 1 {
        let mean = values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64;
        values.push((Metric::CombinedScore.name(), mean));
    }
    Ok(values)
}

/// Look up one metric in the output of [`evaluate`].
pub fn metric_value(values: &[(&'static str, f64)], metric: Metric) -> Option<f64> {
    values
        .iter()
        .find(|(name, _)| *name == metric.name())
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0, 20.0, 10.0]),
            vec![2.0, 4.5, 2.0, 6.0, 4.5, 2.0]
        );
    }

    #[test]
    fn hand_computed_values() {
        // tp=2, fp=1, fn=1 -> F1 = 4/6; accuracy 4/6.
        let p = [1, 1, 1, 0, 0, 0];
        let g = [1, 1, 0, 1, 0, 0];
        assert!((f1_positive(&p, &g).unwrap() - 4.0 / 6.0).abs() < 1e-15);
        assert!((accuracy(&p, &g).unwrap() - 4.0 / 6.0).abs() < 1e-15);
        // Binary MCC = (tp tn - fp fn) / sqrt(...) = (4 - 1) / sqrt(3*3*3*3) = 1/3.
        assert!((matthews_corrcoef(&p, &g).unwrap() - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[0, 1, 0]).unwrap(), 0.0);
        assert!(
            (pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).unwrap() - 0.9933992677987828).abs()
                < 1e-12
        );
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).unwrap().is_nan());
    }

    #[test]
    fn length_mismatch_and_empty_are_errors() {
        assert!(accuracy(&[1], &[1, 0]).is_err());
        assert!(spearman(&[], &[]).is_err());
    }
}
