//! Model selection: which learning rate a cell (backbone, task, method, sharing, compressed
//! backbone) reports. The choice reads the dev metric alone (mean over training seeds, the
//! epoch already chosen on dev by each run); the test metric of the chosen runs is what the
//! tables print. No function here reads a test value before the choice is made, and the unit
//! tests check that changing every test value never changes a choice.

use crate::stages::train::{OnCompressed, TrainRecord};
use crate::stats::Summary;

/// What identifies a cell of the tables (everything but the learning rate and the seed).
#[derive(Debug, Clone, PartialEq)]
pub struct CellKey {
    pub backbone: String,
    pub task: String,
    pub method: String,
    pub sharing: String,
    pub compressed: Option<OnCompressed>,
}

impl CellKey {
    pub fn of(r: &TrainRecord) -> Self {
        Self {
            backbone: r.backbone.clone(),
            task: r.task.clone(),
            method: r.method.clone(),
            sharing: r.sharing.clone(),
            compressed: r.compressed.clone(),
        }
    }
}

/// One learning rate of a cell: its runs (one per seed) and their dev metric.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub lr: f64,
    pub runs: Vec<&'a TrainRecord>,
    pub dev: Summary,
}

/// The choice of one cell.
#[derive(Debug, Clone)]
pub struct Selected<'a> {
    pub key: CellKey,
    /// Every learning rate tried, in the order first seen.
    pub candidates: Vec<Candidate<'a>>,
    /// Index of the chosen candidate.
    pub chosen: usize,
}

impl<'a> Selected<'a> {
    pub fn lr(&self) -> f64 {
        self.candidates[self.chosen].lr
    }

    /// The chosen runs, one per seed.
    pub fn runs(&self) -> &[&'a TrainRecord] {
        &self.candidates[self.chosen].runs
    }

    pub fn dev(&self) -> Summary {
        self.candidates[self.chosen].dev
    }

    /// The reported figure: the test metric of the chosen runs over seeds.
    pub fn test(&self) -> Summary {
        Summary::of(&self.runs().iter().map(|r| r.test_value).collect::<Vec<_>>())
    }

    pub fn first(&self) -> &'a TrainRecord {
        self.runs()[0]
    }
}

/// The index of the candidate with the best mean dev metric; NaN means lose, ties go to the
/// first listed.
pub fn best_on_dev(dev_means: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &m) in dev_means.iter().enumerate() {
        let m = if m.is_nan() { f64::NEG_INFINITY } else { m };
        if best.is_none_or(|(_, b)| m > b) {
            best = Some((i, m));
        }
    }
    best.map(|(i, _)| i)
}

/// Groups `records` into cells (first-seen order) and chooses each cell's learning rate on dev.
pub fn select_all<'a>(records: &[&'a TrainRecord]) -> Vec<Selected<'a>> {
    let mut cells: Vec<(CellKey, Vec<&'a TrainRecord>)> = Vec::new();
    for &r in records {
        let k = CellKey::of(r);
        match cells.iter_mut().find(|(c, _)| *c == k) {
            Some((_, v)) => v.push(r),
            None => cells.push((k, vec![r])),
        }
    }
    cells
        .into_iter()
        .filter_map(|(key, rs)| {
            let mut candidates: Vec<Candidate> = Vec::new();
            for r in rs {
                match candidates.iter_mut().find(|c| c.lr == r.lr) {
                    Some(c) => c.runs.push(r),
                    None => candidates.push(Candidate {
                        lr: r.lr,
                        runs: vec![r],
                        dev: Summary::of(&[]),
                    }),
                }
            }
            for c in &mut candidates {
                c.runs.sort_by_key(|r| r.seed);
                c.dev = Summary::of(&c.runs.iter().map(|r| r.dev_value).collect::<Vec<_>>());
            }
            let means: Vec<f64> = candidates.iter().map(|c| c.dev.mean).collect();
            let chosen = best_on_dev(&means)?;
            Some(Selected {
                key,
                candidates,
                chosen,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lr: f64, seed: u64, dev: f64, test: f64) -> TrainRecord {
        serde_json::from_value(serde_json::json!({
            "backbone": "b", "task": "t", "method": "houlsby:4", "sharing": "per-application",
            "lr": lr, "seed": seed, "compressed": null, "primary": "accuracy",
            "dev_value": dev, "test_value": test, "metrics": {}, "test_metrics": {},
            "best_epoch": 1, "epochs_run": 1, "dev_curve": [dev], "trainable_params": 1,
            "task_bytes": 4, "train_seconds": 0.0, "examples_per_second": 0.0,
            "train_examples": 1, "dev_examples": 1, "test_examples": 1, "bundle": "x"
        }))
        .unwrap()
    }

    #[test]
    fn the_choice_follows_dev_even_when_test_disagrees() {
        // lr 1e-3 is better on dev (0.8, 0.7 -> 0.75) and worse on test (0.5, 0.6 -> 0.55);
        // lr 1e-4 is worse on dev (0.6, 0.7 -> 0.65) and better on test (0.9, 0.95).
        let rs = [
            rec(1e-4, 1, 0.6, 0.9),
            rec(1e-3, 1, 0.8, 0.5),
            rec(1e-4, 2, 0.7, 0.95),
            rec(1e-3, 2, 0.7, 0.6),
        ];
        let refs: Vec<&TrainRecord> = rs.iter().collect();
        let s = select_all(&refs);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].lr(), 1e-3);
        assert!((s[0].dev().mean - 0.75).abs() < 1e-12);
        let t = s[0].test();
        assert_eq!(t.n, 2);
        assert!((t.mean - 0.55).abs() < 1e-12);
        assert!((t.sd.unwrap() - 0.1 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(s[0].candidates.len(), 2);
        assert_eq!(
            s[0].runs().iter().map(|r| r.seed).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn test_values_never_change_a_choice() {
        let devs = [(1e-4, 0.61), (3e-4, 0.74), (1e-3, 0.74), (3e-3, 0.2)];
        for flip in [0.0, 1.0, f64::NAN] {
            let rs: Vec<TrainRecord> = devs
                .iter()
                .enumerate()
                .map(|(i, &(lr, d))| {
                    let test = if flip.is_nan() {
                        f64::NAN
                    } else {
                        (flip - d).abs() + i as f64
                    };
                    rec(lr, 7, d, test)
                })
                .collect();
            let refs: Vec<&TrainRecord> = rs.iter().collect();
            // Ties on dev go to the first listed learning rate.
            assert_eq!(select_all(&refs)[0].lr(), 3e-4, "flip {flip}");
        }
    }

    #[test]
    fn nan_dev_loses_and_cells_are_kept_apart() {
        assert_eq!(best_on_dev(&[f64::NAN, 0.1]), Some(1));
        assert_eq!(best_on_dev(&[]), None);
        let mut other = rec(1e-3, 1, 0.9, 0.9);
        other.backbone = "albert".into();
        let rs = [rec(1e-3, 1, 0.5, 0.5), other];
        let refs: Vec<&TrainRecord> = rs.iter().collect();
        let s = select_all(&refs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].key.backbone, "albert");
    }
}
