//! Shards: the `--shard I/N` value and the partition of a plan's items into N shards.
//!
//! # The partition rule
//!
//! 1. Items joined by a dependency (a compress item and the training item whose bundle it
//!    evaluates), or that share an id, form one group: a shard never waits for another.
//! 2. A group that costs more than a shard's fair share (the total over N) is cut into parts:
//!    its final items (those that need others and that nothing needs) are dealt, largest
//!    first, into as many parts as its cost needs, and each part takes a copy of the items
//!    they need. A shard holding such a copy computes it too (or reads it, if another shard
//!    finished it first); results are deterministic and written atomically, so the copies
//!    agree. A final item is in exactly one part.
//! 3. Groups and parts are taken by estimated cost, largest first, ties by the smallest id of
//!    what they must compute; each goes to the shard with the least estimated cost so far
//!    (ties: the lowest shard number). This is the "longest processing time first" rule: the
//!    fullest shard carries at most 4/3 of the best possible maximum (Graham, 1969).
//!
//! Costs are whole milliseconds, so sums are exact, and groups and parts are ordered by what
//! they contain rather than where, so the partition depends on the set of items and their
//! costs only: listing tasks or methods in another order moves no item to another shard.
//! Every shard computes the same partition on its own; nothing is exchanged but the cache.

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

/// The shards (0-based, ascending) that compute each unit, among `count` shards, by the rule
/// in the module docs: one shard for most units, several for the copies of a dependency.
pub fn partition(units: &[Unit], count: usize) -> Vec<Vec<usize>> {
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
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..units.len() {
        groups.entry(sets.find(i)).or_default().push(i);
    }
    let total = distinct_cost(units, 0..units.len());
    let fair = total.div_ceil(count as u64).max(1);
    let mut bins: Vec<Bin> = Vec::new();
    for members in groups.into_values() {
        bins.extend(split(units, members, fair, count));
    }
    bins.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(b.key)));
    let mut loads = vec![0u64; count];
    let mut shards_of = vec![Vec::new(); units.len()];
    for bin in bins {
        let (least, _) = loads
            .iter()
            .enumerate()
            .min_by_key(|&(s, &load)| (load, s))
            .unwrap_or((0, &0));
        loads[least] = loads[least].saturating_add(bin.cost);
        for m in bin.members {
            shards_of[m].push(least);
        }
    }
    for s in &mut shards_of {
        s.sort_unstable();
        s.dedup();
    }
    shards_of
}

/// What one shard gets at once: a whole group, or a part of one with copies of its
/// dependencies.
struct Bin<'a> {
    members: Vec<usize>,
    cost: u64,
    /// The smallest id among what the bin alone computes (its ordering tie-break).
    key: &'a str,
}

/// The cost of `members`, each id once.
fn distinct_cost(units: &[Unit], members: impl IntoIterator<Item = usize>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    members
        .into_iter()
        .filter(|&m| seen.insert(units[m].id))
        .map(|m| units[m].cost)
        .fold(0u64, u64::saturating_add)
}

/// A group as one bin, or cut into parts when it costs more than `fair` (rule 2).
fn split<'a>(units: &[Unit<'a>], mut members: Vec<usize>, fair: u64, count: usize) -> Vec<Bin<'a>> {
    members.sort_by(|&a, &b| units[a].id.cmp(units[b].id).then(a.cmp(&b)));
    let cost = distinct_cost(units, members.iter().copied());
    let smallest = |ms: &[usize]| ms.iter().map(|&m| units[m].id).min().unwrap_or("");
    // The items dealt into parts: those that need others and that nothing needs; the rest are
    // copied into every part that needs them.
    let needed: std::collections::HashSet<usize> = members
        .iter()
        .flat_map(|&m| units[m].deps.iter().copied())
        .collect();
    let dependents: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&m| !units[m].deps.is_empty() && !needed.contains(&m))
        .collect();
    let parts = (cost.div_ceil(fair) as usize)
        .min(dependents.len())
        .min(count);
    if parts < 2 {
        let key = smallest(&members);
        return vec![Bin { members, cost, key }];
    }
    // Deal the dependents into parts, largest first (ties by id), each to the lightest part.
    let mut order = dependents;
    order.sort_by(|&a, &b| {
        units[b]
            .cost
            .cmp(&units[a].cost)
            .then_with(|| units[a].id.cmp(units[b].id))
    });
    let mut dealt: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); parts];
    for m in order {
        let (lightest, _) = dealt
            .iter()
            .enumerate()
            .min_by_key(|&(p, (load, _))| (*load, p))
            .unwrap_or((0, &(0, Vec::new())));
        dealt[lightest].0 += units[m].cost;
        dealt[lightest].1.push(m);
    }
    let mut parts: Vec<(Vec<usize>, &str)> = dealt
        .into_iter()
        .map(|(_, own)| own)
        .filter(|own| !own.is_empty())
        .map(|own| {
            let key = smallest(&own);
            // The part's own items and, transitively, everything they need.
            let mut all = own;
            let mut i = 0;
            while i < all.len() {
                for &d in units[all[i]].deps {
                    if !all.contains(&d) {
                        all.push(d);
                    }
                }
                i += 1;
            }
            (all, key)
        })
        .collect();
    // A member no part needs (one joined by a shared id only) goes with the first part.
    for &m in &members {
        if !parts.iter().any(|(all, _)| all.contains(&m)) {
            parts[0].0.push(m);
        }
    }
    parts
        .into_iter()
        .map(|(all, key)| Bin {
            cost: distinct_cost(units, all.iter().copied()),
            members: all,
            key,
        })
        .collect()
}

/// Estimated cost of each of `count` shards under `shards_of` (what each shard computes,
/// copies included; items sharing an id counted once per shard).
pub fn loads(units: &[Unit], shards_of: &[Vec<usize>], count: usize) -> Vec<u64> {
    let mut loads = vec![0u64; count.max(1)];
    let mut seen = std::collections::HashSet::new();
    for (u, shards) in units.iter().zip(shards_of) {
        for &s in shards {
            if seen.insert((s, u.id)) {
                loads[s] = loads[s].saturating_add(u.cost);
            }
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
    fn every_item_lands_in_a_shard_with_what_it_needs() {
        let items = study(200, 7);
        let u = units(&items);
        let needed: std::collections::HashSet<usize> =
            u.iter().flat_map(|x| x.deps.iter().copied()).collect();
        for count in [1, 2, 3, 7, 64, 500] {
            let shards_of = partition(&u, count);
            assert_eq!(shards_of.len(), u.len());
            for (i, item) in u.iter().enumerate() {
                let mine = &shards_of[i];
                assert!(
                    !mine.is_empty() && mine.iter().all(|&s| s < count),
                    "{i}: {mine:?}"
                );
                if !needed.contains(&i) {
                    assert_eq!(mine.len(), 1, "an item nothing needs is computed once: {i}");
                }
                for &d in item.deps {
                    assert!(
                        mine.iter().all(|s| shards_of[d].contains(s)),
                        "item {i} in {mine:?}, its dependency {d} in {:?}",
                        shards_of[d]
                    );
                }
            }
        }
    }

    #[test]
    fn the_partition_does_not_depend_on_item_order() {
        let items = study(120, 11);
        let by_id = |items: &[(String, u64, Vec<usize>)]| -> HashMap<String, Vec<usize>> {
            let u = units(items);
            items
                .iter()
                .map(|i| i.0.clone())
                .zip(partition(&u, 5))
                .collect()
        };
        let before = by_id(&items);
        // Reverse the list (remapping dependencies to the new positions).
        let n = items.len();
        let reversed: Vec<(String, u64, Vec<usize>)> = items
            .iter()
            .rev()
            .map(|(id, c, deps)| (id.clone(), *c, deps.iter().map(|d| n - 1 - d).collect()))
            .collect();
        assert_eq!(by_id(&reversed), before);
    }

    #[test]
    fn shards_are_balanced() {
        for seed in 1..20 {
            let items = study(150, seed);
            let u = units(&items);
            for count in [2, 3, 8] {
                let shards_of = partition(&u, count);
                let l = loads(&u, &shards_of, count);
                let total: u64 = u.iter().map(|x| x.cost).sum();
                assert!(l.iter().sum::<u64>() >= total);
                let max = *l.iter().max().unwrap() as f64;
                let mean = total as f64 / count as f64;
                assert!(max <= 1.15 * mean, "seed {seed}, {count} shards: {l:?}");
            }
        }
    }

    #[test]
    fn a_group_too_large_for_one_shard_is_cut_with_copies_of_what_it_needs() {
        // One training item (cost 50) that 100 compress items (10 each) need, and 20
        // independent items (40 each): 1,850 in all, 231 per shard of 8 at best.
        let mut items = vec![("train".to_string(), 50, vec![])];
        items.extend((0..100).map(|i| (format!("c{i:03}"), 10, vec![0])));
        items.extend((0..20).map(|i| (format!("t{i:03}"), 40, vec![])));
        let u = units(&items);
        let shards_of = partition(&u, 8);
        let copies = shards_of[0].len();
        assert!(
            copies > 1,
            "the training item is copied: {:?}",
            shards_of[0]
        );
        let l = loads(&u, &shards_of, 8);
        assert_eq!(l.iter().sum::<u64>(), 1850 + 50 * (copies as u64 - 1));
        assert!(*l.iter().max().unwrap() <= 280, "{l:?}");
        // Without the cut, one shard would carry the whole group (1,050).
        for s in &shards_of[1..101] {
            assert_eq!(s.len(), 1);
            assert!(shards_of[0].contains(&s[0]));
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
        let shards_of = partition(&u, 2);
        assert_eq!(shards_of[0], shards_of[2]);
        assert_ne!(shards_of[0], shards_of[1]);
        assert_eq!(loads(&u, &shards_of, 2), vec![10, 10]);
    }
}
