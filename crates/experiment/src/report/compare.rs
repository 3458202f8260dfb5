//! Comparing two report folders of one plan (a sharded run's and a single process's, say):
//! everything but the timing columns must be equal.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{ExperimentError, Result};

/// Columns of the report's tables that hold wall-clock measurements of the process that
/// computed an item: the only cells that differ between two runs of the same items.
pub const TIMING_COLUMNS: [&str; 2] = ["train s", "examples/s"];

/// What is masked in place of a timing cell.
const MASK: &str = "(timing)";

/// The differences between the report folders `a` and `b`, outside the timing columns:
/// every CSV cell, every line of `report.md` (its tables' timing cells masked), every SVG
/// figure byte by byte, and the files only one folder has. Empty when they agree.
pub fn differences(a: &Path, b: &Path) -> Result<Vec<String>> {
    let names = |dir: &Path| -> Result<BTreeSet<String>> {
        let entries = std::fs::read_dir(dir).map_err(|source| ExperimentError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect())
    };
    let (in_a, in_b) = (names(a)?, names(b)?);
    let mut diffs = Vec::new();
    for n in in_a.symmetric_difference(&in_b) {
        let (has, lacks) = if in_a.contains(n) { (a, b) } else { (b, a) };
        diffs.push(format!(
            "{n}: in {} but not in {}",
            has.display(),
            lacks.display()
        ));
    }
    for n in in_a.intersection(&in_b) {
        let (ta, tb) = (read(&a.join(n))?, read(&b.join(n))?);
        let (ma, mb) = if n.ends_with(".csv") {
            (mask_csv(&ta, n)?, mask_csv(&tb, n)?)
        } else if n.ends_with(".md") {
            (mask_markdown(&ta), mask_markdown(&tb))
        } else {
            (ta, tb)
        };
        let (la, lb): (Vec<&str>, Vec<&str>) = (ma.lines().collect(), mb.lines().collect());
        if la.len() != lb.len() {
            diffs.push(format!("{n}: {} lines vs {}", la.len(), lb.len()));
            continue;
        }
        if let Some((i, (x, y))) = la.iter().zip(&lb).enumerate().find(|(_, (x, y))| x != y) {
            diffs.push(format!("{n} line {}: `{x}` vs `{y}`", i + 1));
        }
    }
    Ok(diffs)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The CSV with its timing cells masked, one record per line.
fn mask_csv(text: &str, name: &str) -> Result<String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut timing: Vec<usize> = Vec::new();
    let mut out = String::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| ExperimentError::Config {
            origin: name.to_string(),
            key: format!("line {}", i + 1),
            reason: format!("is not CSV: {e}"),
        })?;
        let mut cells: Vec<String> = rec.iter().map(String::from).collect();
        if i == 0 {
            timing = timing_columns(&cells);
        }
        for &c in &timing {
            if i > 0 && c < cells.len() {
                cells[c] = MASK.into();
            }
        }
        out.push_str(&format!("{cells:?}\n"));
    }
    Ok(out)
}

/// Positions of the timing columns in a header.
fn timing_columns<S: AsRef<str>>(header: &[S]) -> Vec<usize> {
    header
        .iter()
        .enumerate()
        .filter(|(_, h)| TIMING_COLUMNS.contains(&h.as_ref().trim()))
        .map(|(i, _)| i)
        .collect()
}

/// The Markdown with the timing cells of its tables masked.
fn mask_markdown(text: &str) -> String {
    let mut out = String::new();
    let mut timing: Vec<usize> = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let is_row = line.starts_with('|') && line.ends_with('|');
        if !is_row {
            in_table = false;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let cells: Vec<&str> = line[1..line.len() - 1].split('|').collect();
        if !in_table {
            in_table = true;
            timing = timing_columns(&cells);
            out.push_str(line);
        } else {
            let masked: Vec<&str> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if timing.contains(&i) && !c.trim().starts_with("---") {
                        MASK
                    } else {
                        c
                    }
                })
                .collect();
            out.push_str(&masked.join("|"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timing_cells_may_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (d, secs, value) in [(&a, "1.50", "0.7500"), (&b, "9.25", "0.7500")] {
            std::fs::create_dir_all(d).unwrap();
            let csv = format!("task,value,train s,examples/s\nmp,{value},{secs},{secs}\n");
            std::fs::write(d.join("t.csv"), csv).unwrap();
            let md = format!(
                "# r\n\n| task | value | train s |\n|---|---|---|\n| mp | {value} | {secs} |\n"
            );
            std::fs::write(d.join("report.md"), md).unwrap();
            std::fs::write(d.join("f.svg"), "<svg/>").unwrap();
        }
        assert_eq!(differences(&a, &b).unwrap(), Vec::<String>::new());
        std::fs::write(
            b.join("t.csv"),
            "task,value,train s,examples/s\nmp,0.7501,1,1\n",
        )
        .unwrap();
        std::fs::write(b.join("f.svg"), "<svg />").unwrap();
        std::fs::write(b.join("extra.csv"), "x\n").unwrap();
        let d = differences(&a, &b).unwrap();
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("extra.csv: in "), "{d:?}");
        assert!(d.iter().any(|x| x.starts_with("t.csv line 2")), "{d:?}");
        assert!(d.iter().any(|x| x.starts_with("f.svg line 1")), "{d:?}");
    }
}
