//! The sensitivity study rendered: which conclusions hold at every setting and which flip on
//! what (the findings' table), the headline ratios' ranges, crossovers over the study, the
//! flips with their thresholds, the per-setting CSV and the tornado panels.

use std::fmt::Write as _;

use adalbert_core::Sharing;

use super::{list, sig};
use crate::plot::{Tornado, TornadoBar};
use crate::sensitivity::{self, Base, Conclusion, Knob, Metric, Study, MAX_N};
use crate::spec::{Policy, TaskStore};

/// Which conclusions hold at every setting of the sensitivity study, which flip and on what.
pub(super) fn robustness(study: &Study) -> String {
    let mut s = String::new();
    let total = 1 + 2 * study.one_at_a_time.len() + study.joint.outcomes.len();
    let _ = writeln!(s, "\nOver the whole range ({total} settings: the defaults, each of {} assumptions alone at both ends of its sourced range, and {} joint samples drawn with seed {}; section \"Sensitivity\"):\n", study.one_at_a_time.len(), study.joint.outcomes.len(), study.joint.seed);
    let groups = group_conclusions(study);
    // Knobs that flip something alone, and those that never do.
    let mut counts: Vec<(Knob, usize)> = study
        .one_at_a_time
        .iter()
        .map(|o| {
            let k = o.range.knob;
            (k, study.flips.iter().filter(|f| f.knob == k).count())
        })
        .collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let movers: Vec<String> = counts
        .iter()
        .filter(|c| c.1 > 0)
        .map(|c| format!("{} ({})", c.0, c.1))
        .collect();
    let inert: Vec<&str> = counts
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0.name())
        .collect();
    if !movers.is_empty() {
        let _ = writeln!(s, "- Assumptions that alone flip a conclusion (how many of the {} statements checked): {}.", Conclusion::all().len(), movers.join(", "));
    }
    if !inert.is_empty() {
        let _ = writeln!(
            s,
            "- No conclusion flips when any one of these moves alone over its whole range: {}.",
            inert.join(", ")
        );
    }
    for baseline in [Policy::AlbertDram, Policy::AlbertSram] {
        for metric in [Metric::Energy, Metric::Area] {
            let mine: Vec<&ConclusionGroup> = groups
                .iter()
                .filter(|g| g.baseline == baseline && g.metric == metric)
                .collect();
            let everywhere: Vec<u64> = sensitivity::CONCLUSION_NS
                .into_iter()
                .filter(|n| mine.iter().all(|g| g.always.contains(n)))
                .collect();
            if !everywhere.is_empty() {
                let _ = writeln!(s, "- adapter-hetero uses less {} than {baseline} at N = {} with either sharing and every task store, at every setting.", metric.name(), list(&everywhere));
            }
        }
    }
    let latency: Vec<&ConclusionGroup> = groups
        .iter()
        .filter(|g| g.metric == Metric::Latency)
        .collect();
    let faster = latency
        .iter()
        .flat_map(|g| g.flips.iter().map(|f| f.2))
        .max()
        .unwrap_or(0);
    let never = latency
        .iter()
        .all(|g| g.always.is_empty() && g.flips.iter().all(|f| !f.1 && f.3.is_empty()));
    if never {
        let _ = writeln!(s, "- Latency: adapter-hetero is slower than both baselines at the defaults and at every one-at-a-time setting (its adapters add work); it is faster than albert-dram only in joint samples, at most {} for any sharing, store and N.", joint_text(faster, study));
    }
    s.push_str("\nEnergy and area, per sharing and task store (\"wins\": adapter-hetero uses less than the baseline; N = 1, 2, 4, 8, 16 checked; for a statement that depends on an assumption: whether it holds at the defaults, what alone flips it, and the share of joint samples where it holds):\n\n");
    s.push_str("| adapters | task store | claim | wins at every setting | loses at every setting | depends |\n|---|---|---|---|---|---|\n");
    for g in groups.iter().filter(|g| g.metric != Metric::Latency) {
        let depends: Vec<String> = g
            .flips
            .iter()
            .map(|(n, holds, share, movers)| {
                let what = if movers.is_empty() {
                    "flips only when several move together".to_string()
                } else {
                    format!("flips at {}", movers.join(" or "))
                };
                format!(
                    "N = {n}: {} at defaults, {what} (wins in {})",
                    if *holds { "wins" } else { "loses" },
                    joint_text(*share, study)
                )
            })
            .collect();
        let or_dash = |v: &[u64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                list(v)
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} vs {} | {} | {} | {} |",
            g.sharing,
            g.store,
            g.metric.name(),
            g.baseline,
            or_dash(&g.always),
            or_dash(&g.never),
            if depends.is_empty() {
                "-".into()
            } else {
                depends.join("; ")
            }
        );
    }
    s
}

struct ConclusionGroup {
    sharing: Sharing,
    store: TaskStore,
    baseline: Policy,
    metric: Metric,
    always: Vec<u64>,
    never: Vec<u64>,
    /// (N, holds at default, joint samples where it holds, "knob <= threshold")
    flips: Vec<(u64, bool, usize, Vec<String>)>,
}

fn group_conclusions(study: &Study) -> Vec<ConclusionGroup> {
    let mut groups: Vec<ConclusionGroup> = Vec::new();
    for c in Conclusion::all() {
        let holds = c.ratio(&study.default) < 1.0;
        let oat = study
            .one_at_a_time
            .iter()
            .flat_map(|o| [&o.low, &o.high])
            .all(|o| (c.ratio(o) < 1.0) == holds);
        let joint: Vec<bool> = study
            .joint
            .outcomes
            .iter()
            .map(|o| c.ratio(o) < 1.0)
            .collect();
        let share = joint.iter().filter(|&&w| w).count();
        let idx = groups.iter().position(|g| {
            (g.sharing, g.store, g.baseline, g.metric) == (c.sharing, c.store, c.baseline, c.metric)
        });
        let g = match idx {
            Some(i) => &mut groups[i],
            None => {
                groups.push(ConclusionGroup {
                    sharing: c.sharing,
                    store: c.store,
                    baseline: c.baseline,
                    metric: c.metric,
                    always: vec![],
                    never: vec![],
                    flips: vec![],
                });
                groups.last_mut().expect("just pushed")
            }
        };
        if oat && joint.iter().all(|&w| w == holds) {
            if holds {
                g.always.push(c.n);
            } else {
                g.never.push(c.n);
            }
            continue;
        }
        let movers = study
            .flips
            .iter()
            .filter(|f| f.conclusion == c)
            .map(flip_text)
            .collect();
        g.flips.push((c.n, holds, share, movers));
    }
    groups
}

/// "sram_leakage_scale <= 0.62": the knob alone at that side of the value flips it.
fn flip_text(f: &sensitivity::Flip) -> String {
    let op = if f.low_end { "<=" } else { ">=" };
    let value = if f.knob.integer() {
        format!("{}", f.threshold.round())
    } else {
        sig(f.threshold)
    };
    format!("{} {op} {value}", f.knob)
}

/// "250 of 256 joint samples".
fn joint_text(count: usize, study: &Study) -> String {
    format!("{count} of {} joint samples", study.joint.outcomes.len())
}

/// The sensitivity section's Markdown, CSV and tornado panels.
pub(super) struct SensitivityOut {
    pub md: String,
    pub csv: String,
    pub tornado: Vec<Tornado>,
}

fn baseline_of(i: usize) -> Policy {
    if i == 0 {
        Policy::AlbertDram
    } else {
        Policy::AlbertSram
    }
}

pub(super) fn sensitivity_section(study: &Study, base: &Base, svg: &str) -> SensitivityOut {
    let sp = &study.space;
    let n = sp.tasks;
    let mut md = String::from("## Sensitivity\n\n");
    let _ = writeln!(md, "Model {}; every assumption below varied over its range (knobs at their data-file defaults otherwise), one at a time and jointly: {} joint samples, each knob drawn uniformly (log-uniformly where marked) with SplitMix64 from seed **{}**. The conclusions are evaluated for both sharings and all three task stores at every setting; the ratio table and the tornado are for {} adapters at N = {n}. Regenerate with `adalbert simulate --sensitivity [--space FILE]` (the built-in space is `crates/hw/data/sensitivity.toml`).\n", sp.model, sp.samples, sp.seed, sp.sharing);
    md.push_str("| assumption | default | min | max | scale | source of the range |\n|---|---|---|---|---|---|\n");
    for r in &sp.ranges {
        let d = base.default_of(r.knob).map_or("back to back".into(), sig);
        let _ = writeln!(
            md,
            "| {} | {d} | {} | {} | {} | {} |",
            r.knob,
            sig(r.min),
            sig(r.max),
            if r.log { "log" } else { "linear" },
            r.source.replace('|', "/")
        );
    }
    let _ = writeln!(
        md,
        "\n### Headline ratios at N = {n} ({} adapters)\n",
        sp.sharing
    );
    md.push_str("Range of each ratio one at a time (the two knobs that move it most, with the ratio at their low / high end) and over the joint sample (5th, 50th, 95th percentile; the two knobs with the largest rank correlation):\n\n");
    md.push_str("| task store | ratio | default | one at a time: min - max | moved most by | joint p5 / p50 / p95 | joint: rank correlation |\n|---|---|---|---|---|---|---|\n");
    let mut tornado = Vec::new();
    for store in TaskStore::ALL {
        for (bi, baseline) in [Policy::AlbertDram, Policy::AlbertSram]
            .into_iter()
            .enumerate()
        {
            for metric in Metric::ALL {
                let at = |o: &sensitivity::Outcome| {
                    o.series(sp.sharing, store, baseline, metric)
                        .get(n as usize - 1)
                        .copied()
                        .unwrap_or(f64::NAN)
                };
                let default = at(&study.default);
                let mut bars: Vec<TornadoBar> = study
                    .one_at_a_time
                    .iter()
                    .map(|o| TornadoBar {
                        label: o.range.knob.name().to_string(),
                        low: at(&o.low),
                        high: at(&o.high),
                    })
                    .collect();
                bars.sort_by(|a, b| swing(b, default).total_cmp(&swing(a, default)));
                let all: Vec<f64> = bars
                    .iter()
                    .flat_map(|b| [b.low, b.high])
                    .chain([default])
                    .collect();
                let (lo, hi) = (
                    all.iter().copied().fold(f64::INFINITY, f64::min),
                    all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                let movers = bars
                    .iter()
                    .take(2)
                    .filter(|b| swing(b, default) > 1e-3 * default.abs())
                    .map(|b| format!("{} ({:.3} / {:.3})", b.label, b.low, b.high))
                    .collect::<Vec<_>>()
                    .join(", ");
                let joint: Vec<f64> = study.joint.outcomes.iter().map(at).collect();
                let mut corr: Vec<(f64, &str)> = sp
                    .ranges
                    .iter()
                    .enumerate()
                    .map(|(k, r)| {
                        let x: Vec<f64> = study.joint.values.iter().map(|v| v[k]).collect();
                        (sensitivity::rank_correlation(&x, &joint), r.knob.name())
                    })
                    .collect();
                corr.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
                let corr = corr
                    .iter()
                    .take(2)
                    .map(|(c, k)| format!("{k} {c:+.2}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    md,
                    "| {store} | {} vs {baseline} | {default:.3} | {lo:.3} - {hi:.3} | {} | {:.3} / {:.3} / {:.3} | {corr} |",
                    metric.name(),
                    if movers.is_empty() { "-".into() } else { movers },
                    sensitivity::quantile(&joint, 0.05),
                    sensitivity::quantile(&joint, 0.5),
                    sensitivity::quantile(&joint, 0.95),
                );
                if metric == Metric::Energy {
                    tornado.push(Tornado {
                        title: format!("E vs {} (store {store}, N = {n})", baseline_of(bi)),
                        x_label: "adapter-hetero / baseline (blue: knob at min, orange: at max)"
                            .into(),
                        default,
                        bars,
                    });
                }
            }
        }
    }
    let _ = writeln!(
        md,
        "\n![tornado: energy ratios, each assumption at both ends]({svg})\n"
    );
    md.push_str(&crossover_ranges(study));
    md.push_str(&flips_table(study));
    if study.joint.outcomes.iter().any(|o| o.saturated)
        || study
            .one_at_a_time
            .iter()
            .any(|o| o.low.saturated || o.high.saturated)
    {
        md.push_str("Some settings give a request rate faster than a policy serves; such a policy then runs back to back (no idle time) and its energy per request is that of back-to-back operation.\n\n");
    }
    SensitivityOut {
        md,
        csv: sensitivity_csv(study),
        tornado,
    }
}

fn swing(b: &TornadoBar, default: f64) -> f64 {
    (b.low - default).abs().max((b.high - default).abs())
}

/// The last winning N of each cell, baseline and metric over the study.
fn crossover_ranges(study: &Study) -> String {
    let mut s = format!("### Where adapter-hetero stops winning, over the study\n\nThe last N at which adapter-hetero beats the baseline (0: never; {MAX_N}: at every N searched): at the defaults, its range one at a time (and the knob ends that give the extremes), and its 5th / 50th / 95th percentile over the joint sample.\n\n");
    s.push_str("| adapters | task store | ratio | default | one at a time | extremes from | joint p5 / p50 / p95 |\n|---|---|---|---|---|---|---|\n");
    for sharing in sensitivity::SHARINGS {
        for store in TaskStore::ALL {
            for baseline in [Policy::AlbertDram, Policy::AlbertSram] {
                for metric in [Metric::Energy, Metric::Area] {
                    let last = |o: &sensitivity::Outcome| {
                        o.crossover(sharing, store, baseline, metric)
                            .last_win(MAX_N)
                    };
                    let d = last(&study.default);
                    let ends: Vec<(u64, String)> = study
                        .one_at_a_time
                        .iter()
                        .flat_map(|o| {
                            [
                                (last(&o.low), format!("{} min", o.range.knob)),
                                (last(&o.high), format!("{} max", o.range.knob)),
                            ]
                        })
                        .collect();
                    let lo = ends.iter().map(|e| e.0).min().unwrap_or(d).min(d);
                    let hi = ends.iter().map(|e| e.0).max().unwrap_or(d).max(d);
                    let extremes: Vec<String> = ends
                        .iter()
                        .filter(|e| (e.0 == lo || e.0 == hi) && e.0 != d)
                        .map(|e| format!("{} ({})", e.1, e.0))
                        .take(4)
                        .collect();
                    let joint: Vec<f64> = study
                        .joint
                        .outcomes
                        .iter()
                        .map(|o| last(o) as f64)
                        .collect();
                    let _ = writeln!(
                        s,
                        "| {sharing} | {store} | {} vs {baseline} | {d} | {lo} - {hi} | {} | {:.0} / {:.0} / {:.0} |",
                        metric.name(),
                        if extremes.is_empty() { "-".into() } else { extremes.join(", ") },
                        sensitivity::quantile(&joint, 0.05),
                        sensitivity::quantile(&joint, 0.5),
                        sensitivity::quantile(&joint, 0.95),
                    );
                }
            }
        }
    }
    s.push('\n');
    s
}

/// Every conclusion that one assumption alone flips, with the value where it flips.
fn flips_table(study: &Study) -> String {
    let mut s = String::from("### Conclusions one assumption flips\n\nEach row: a statement true (or false) at the defaults that one knob alone reverses, and the value (found by bisection between the default and the end of the range) from which it does. Statements not listed keep their default truth at every one-at-a-time setting; the findings above say which also hold at every joint sample.\n\n");
    s.push_str(
        "| statement | at the defaults | flips when | joint: true in |\n|---|---|---|---|\n",
    );
    let mut done: Vec<Conclusion> = Vec::new();
    for f in &study.flips {
        if done.contains(&f.conclusion) {
            continue;
        }
        done.push(f.conclusion);
        let c = f.conclusion;
        let when: Vec<String> = study
            .flips
            .iter()
            .filter(|g| g.conclusion == c)
            .map(flip_text)
            .collect();
        let joint = study
            .joint
            .outcomes
            .iter()
            .filter(|o| c.ratio(o) < 1.0)
            .count();
        let _ = writeln!(
            s,
            "| {} | {} ({:.3}) | {} | {} |",
            c.statement(),
            if f.holds_at_default { "true" } else { "false" },
            c.ratio(&study.default),
            when.join("; "),
            joint_text(joint, study)
        );
    }
    s.push('\n');
    s
}

/// One row per setting: the knob values and the tornado configuration's ratios.
fn sensitivity_csv(study: &Study) -> String {
    let sp = &study.space;
    let n = sp.tasks as usize;
    let mut header: Vec<String> = vec!["seed".into(), "setting".into(), "knob".into()];
    header.extend(sp.ranges.iter().map(|r| r.knob.name().to_string()));
    let mut cols = Vec::new();
    for store in TaskStore::ALL {
        for baseline in [Policy::AlbertDram, Policy::AlbertSram] {
            for metric in Metric::ALL {
                header.push(format!(
                    "{}_{}_vs_{}_n{}",
                    store,
                    metric.name(),
                    baseline,
                    n
                ));
                cols.push((store, baseline, metric));
            }
        }
    }
    let ratios = |o: &sensitivity::Outcome| -> Vec<String> {
        cols.iter()
            .map(|&(st, b, m)| {
                o.series(sp.sharing, st, b, m)
                    .get(n - 1)
                    .map_or(String::new(), |v| format!("{v:.6}"))
            })
            .collect()
    };
    let defaults: Vec<String> = sp.ranges.iter().map(|_| "default".to_string()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut push =
        |setting: String, knob: String, values: Vec<String>, o: &sensitivity::Outcome| {
            let mut row = vec![sp.seed.to_string(), setting, knob];
            row.extend(values);
            row.extend(ratios(o));
            rows.push(row);
        };
    push(
        "default".into(),
        String::new(),
        defaults.clone(),
        &study.default,
    );
    for o in &study.one_at_a_time {
        for (end, v, out) in [("min", o.range.min, &o.low), ("max", o.range.max, &o.high)] {
            let values = sp
                .ranges
                .iter()
                .map(|r| {
                    if r.knob == o.range.knob {
                        format!("{v}")
                    } else {
                        "default".into()
                    }
                })
                .collect();
            push(
                format!("one-at-a-time {end}"),
                o.range.knob.to_string(),
                values,
                out,
            );
        }
    }
    for (i, (v, o)) in study
        .joint
        .values
        .iter()
        .zip(&study.joint.outcomes)
        .enumerate()
    {
        push(
            format!("joint {i}"),
            String::new(),
            v.iter().map(|x| format!("{x}")).collect(),
            o,
        );
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    adalbert_core::files::csv_string(&header, &rows)
}
