//! Shards: the `--shard I/N` value and the partition of a plan's items into N shards.
//!
//! # The partition rule
//!
//! 1. Items joined by a dependency (a compress item and the training item whose bundle it
//!    evaluates), or that share an id, form one group: a group is never split, so a shard
//!    never waits for, or recomputes, another shard's work.
//! 2. Groups are taken by estimated cost, largest first, ties by the smallest item id in the
//!    group; each goes to the shard with the least estimated cost so far (ties: the lowest
//!    shard number). This is the "longest processing time first" rule: the most loaded
//!    shard carries at most 4/3 of the best possible maximum (Graham, 1969).
//!
//! Costs are whole milliseconds, so sums are exact, and groups are ordered by what they
//! contain rather than where, so the partition depends on the set of items and their costs
//! only: listing tasks or methods in another order moves no item to another shard. Every
//! shard computes the same partition on its own; nothing is exchanged but the cache.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::error::ExperimentError;

/// Shard `index` of `count` (`index` counts from 1, as `--shard 1/4` names the first of four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` (1-based) of `count`.
    pub fn new(index: usize, count: usize) -> Result<Self, ExperimentError> {
        let bad = |reason: String| ExperimentError::Shard {
            value: format!("{index}/{count}"),
            reason,
        };
        if count == 0 {
            return Err(bad(
                "N, the number of shards, must be at least 1 (e.g. --shard 1/4)".into(),
            ));
        }
        if index == 0 || index > count {
            return Err(bad(format!(
                "I must be in 1..={count}: shards are numbered from 1 to N (e.g. --shard 1/{count})"
            )));
        }
        Ok(Self { index, count })
    }

    /// The whole plan as one shard.
    pub fn all() -> Self {
        Self { index: 1, count: 1 }
    }

    /// 1-based.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        let Some((index, count)) = parsed else {
            return Err(ExperimentError::Shard {
                value: s.to_string(),
                reason: "expected I/N, two whole numbers: shard I of N, counted from 1 (e.g. --shard 2/8)".into(),
            });
        };
        Shard::new(index, count).map_err(|e| match e {
            ExperimentError::Shard { reason, .. } => ExperimentError::Shard {
                value: s.to_string(),
                reason,
            },
            other => other,
        })
    }
}

/// What the partition needs of an item.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    pub id: &'a str,
    /// Estimated cost (any unit; whole numbers so that sums are exact).
    pub cost: u64,
    /// Indices of the items it needs.
    pub deps: &'a [usize],
}

/// The shard (0-based) of every unit among `count` shards, by the rule in the module docs.
pub fn partition(units: &[Unit], count: usize) -> Vec<usize> {
    let count = count.max(1);
    let mut sets = DisjointSets::new(units.len());
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        for &d in u.deps {
            sets.union(i, d);
        }
        if let Some(&j) = by_id.get(u.id) {
            sets.union(i, j);
        } else {
            by_id.insert(u.id, i);
        }
    }
    // Group root -> (cost, smallest id, members).
    let mut groups: HashMap<usize, (u64, &str, Vec<usize>)> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        let g = groups.entry(sets.find(i)).or_insert((0, u.id, Vec::new()));
        // Items sharing an id are one computation: counted once.
        if !g.2.iter().any(|&j| units[j].id == u.id) {
            g.0 = g.0.saturating_add(u.cost);
        }
        g.1 = g.1.min(u.id);
        g.2.push(i);
    }
    let mut groups: Vec<(u64, &str, Vec<usize>)> = groups.into_values().collect();
    groups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut loads = vec![0u64; count];
    let mut shard_of = vec![0; units.len()];
    for (cost, _, members) in groups {
        let (least, _) = loads
            .iter()
            .enumerate()
            .min_by_key(|&(s, &load)| (load, s))
            .unwrap_or((0, &0));
        loads[least] = loads[least].saturating_add(cost);
        for m in members {
            shard_of[m] = least;
        }
    }
    shard_of
}

/// Estimated cost of each of `count` shards under `shard_of` (items sharing an id counted
/// once).
pub fn loads(units: &[Unit], shard_of: &[usize], count: usize) -> Vec<u64> {
    let mut loads = vec![0u64; count.max(1)];
    let mut seen = std::collections::HashSet::new();
    for (u, &s) in units.iter().zip(shard_of) {
        if seen.insert(u.id) {
            loads[s] = loads[s].saturating_add(u.cost);
        }
    }
    loads
}

/// Union-find over item indices.
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_values_parse_and_bad_ones_name_the_flag() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!((s.index(), s.count(), s.to_string()), (2, 3, "2/3".into()));
        assert_eq!(" 1 / 1 ".trim().parse::<Shard>().unwrap(), Shard::all());
        for (bad, says) in [
            ("0/3", "numbered from 1"),
            ("4/3", "1..=3"),
            ("1/0", "at least 1"),
            ("a/b", "expected I/N"),
            ("3", "expected I/N"),
            ("-1/3", "expected I/N"),
            ("1/3/4", "expected I/N"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--shard {bad}: ")) && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    fn units<'a>(items: &'a [(String, u64, Vec<usize>)]) -> Vec<Unit<'a>> {
        items
            .iter()
            .map(|(id, cost, deps)| Unit {
                id,
                cost: *cost,
                deps,
            })
            .collect()
    }

    /// A pseudo-random study: `n` items, some depending on an earlier one.
    fn study(n: usize, seed: u64) -> Vec<(String, u64, Vec<usize>)> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let cost = 1 + next() % 10_000;
                let deps = if i > 3 && next() % 3 == 0 {
                    vec![(next() % i as u64) as usize]
                } else {
                    vec![]
                };
                (format!("{:016x}", next()), cost, deps)
            })
            .collect()
    }

    #[test]
    fn every_item_lands_in_one_shard_with_its_dependencies() {
        let items = study(200, 7);
        let u = units(&items);
        for count in [1, 2, 3, 7, 64, 500] {
            let shard_of = partition(&u, count);
            assert_eq!(shard_of.len(), u.len());
            assert!(shard_of.iter().all(|&s| s < count));
            for (i, item) in u.iter().enumerate() {
                for &d in item.deps {
                    assert_eq!(shard_of[i], shard_of[d], "item {i} and its dependency {d}");
                }
            }
        }
    }

    #[test]
    fn the_partition_does_not_depend_on_item_order() {
        let items = study(120, 11);
        let before: HashMap<String, usize> = {
            let u = units(&items);
            items
                .iter()
                .map(|i| i.0.clone())
                .zip(partition(&u, 5))
                .collect()
        };
        // Reverse the list (remapping dependencies to the new positions).
        let n = items.len();
        let reversed: Vec<(String, u64, Vec<usize>)> = items
            .iter()
            .rev()
            .map(|(id, c, deps)| (id.clone(), *c, deps.iter().map(|d| n - 1 - d).collect()))
            .collect();
        let u = units(&reversed);
        let after: HashMap<String, usize> = reversed
            .iter()
            .map(|i| i.0.clone())
            .zip(partition(&u, 5))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn shards_are_balanced_within_the_lpt_bound() {
        for seed in 1..20 {
            let items = study(150, seed);
            let u = units(&items);
            for count in [2, 3, 8] {
                let shard_of = partition(&u, count);
                let l = loads(&u, &shard_of, count);
                let total: u64 = l.iter().sum();
                assert_eq!(total, u.iter().map(|x| x.cost).sum::<u64>());
                // List scheduling's guarantee: the fullest shard was the emptiest before
                // its last group, so it carries at most the mean plus the largest group.
                let mut groups: HashMap<usize, u64> = HashMap::new();
                for (i, x) in u.iter().enumerate() {
                    let mut root = i;
                    while let Some(&d) = u[root].deps.first() {
                        root = d;
                    }
                    *groups.entry(root).or_default() += x.cost;
                }
                let largest = groups.values().copied().max().unwrap_or(0);
                let max = *l.iter().max().unwrap();
                assert!(
                    max <= total / count as u64 + largest,
                    "seed {seed}, {count} shards: {l:?}, largest group {largest}"
                );
                // In practice close to the best possible: the mean, or the largest group.
                let mean = total as f64 / count as f64;
                assert!(
                    max as f64 <= (1.1 * mean).max(largest as f64),
                    "seed {seed}, {count} shards: {l:?}, largest group {largest}"
                );
            }
        }
    }

    #[test]
    fn equal_ids_share_a_shard_and_count_once() {
        let items = vec![
            ("a".to_string(), 10, vec![]),
            ("b".to_string(), 10, vec![]),
            ("a".to_string(), 10, vec![]),
        ];
        let u = units(&items);
        let shard_of = partition(&u, 2);
        assert_eq!(shard_of[0], shard_of[2]);
        assert_ne!(shard_of[0], shard_of[1]);
        assert_eq!(loads(&u, &shard_of, 2), vec![10, 10]);
    }
}
