//! Every `docs/sources.md#<anchor>` cited anywhere in the repository names a heading of
//! docs/sources.md, and no citation points at a file outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SOURCES: &str = "docs/sources.md";
/// Larger files are data (checkpoints, fixtures), not text that cites anything.
const MAX_TEXT_BYTES: u64 = 4 << 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// GitHub's heading anchor: lower case, spaces as hyphens, punctuation other than `-` and
/// `_` dropped.
fn slug(heading: &str) -> String {
    let mut s = String::new();
    for c in heading.trim().chars() {
        if c == ' ' {
            s.push('-');
        } else if c.is_alphanumeric() || c == '-' || c == '_' {
            s.extend(c.to_lowercase());
        }
    }
    s
}

/// The anchors of docs/sources.md's headings (outside code fences), each once.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let anchor = slug(&line[hashes..]);
        if let Some(first) = seen.insert(anchor.clone(), i + 1) {
            panic!(
                "{SOURCES}: headings on lines {first} and {} share the anchor #{anchor}; \
                 GitHub would renumber the second, so anchors must be unique",
                i + 1
            );
        }
    }
    seen.into_keys().collect()
}

/// Text files under the given repository paths (directories are walked; build output,
/// virtual environments and binary files are skipped).
fn text_files(root: &Path, paths: &[&str]) -> Vec<(PathBuf, String)> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) {
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if matches!(
                name,
                "target" | ".git" | ".venv" | "node_modules" | "__pycache__"
            ) {
                return;
            }
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .map(|e| e.expect("directory entry").path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, out);
            }
        } else if path.is_file() {
            out.push(path.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for p in paths {
        let path = root.join(p);
        assert!(path.exists(), "{} is missing", path.display());
        walk(&path, &mut files);
    }
    files
        .into_iter()
        .filter_map(|f| {
            if fs::metadata(&f).ok()?.len() > MAX_TEXT_BYTES {
                return None;
            }
            let bytes = fs::read(&f).ok()?;
            let text = String::from_utf8(bytes).ok()?;
            Some((f.strip_prefix(root).unwrap_or(&f).to_path_buf(), text))
        })
        .collect()
}

/// Every cited anchor of docs/sources.md in `text`, with its line number; the placeholder
/// `docs/sources.md#<anchor>` is skipped.
fn cited_anchors(text: &str) -> Vec<(usize, String)> {
    let needle = format!("{SOURCES}#");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            if rest.starts_with('<') {
                continue;
            }
            let anchor: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            out.push((i + 1, anchor));
        }
    }
    out
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug(" MLC RRAM read faults"), "mlc-rram-read-faults");
    assert_eq!(slug("Adapter-ALBERT"), "adapter-albert");
    assert_eq!(slug("`edgebert8` (8-bit)"), "edgebert8-8-bit");
}

#[test]
fn every_cited_anchor_is_a_heading_of_sources_md() {
    let root = repo_root();
    let sources = fs::read_to_string(root.join(SOURCES)).expect("docs/sources.md exists");
    let known = anchors(&sources);

    let mut missing = Vec::new();
    let mut cited = 0;
    let scanned = [
        "crates",
        "configs",
        "tools",
        "scripts",
        "docs",
        "results",
        "README.md",
        "Makefile",
    ];
    for (file, text) in text_files(&root, &scanned) {
        for (line, anchor) in cited_anchors(&text) {
            cited += 1;
            if !known.contains(&anchor) {
                missing.push(format!("{}:{line}: #{anchor}", file.display()));
            }
        }
    }
    // Links inside docs/sources.md itself: `](#anchor)`.
    for (i, line) in sources.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](#") {
            rest = &rest[at + 3..];
            let anchor: String = rest.chars().take_while(|&c| c != ')').collect();
            if !known.contains(&anchor) {
                missing.push(format!("{SOURCES}:{}: #{anchor}", i + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "anchors cited but not headings of {SOURCES}:\n{}",
        missing.join("\n")
    );
    // The walk found the citations (guards against scanning the wrong directory).
    assert!(cited >= 50, "only {cited} citations of {SOURCES} found");
}

#[test]
fn nothing_cites_a_file_outside_the_repository() {
    let root = repo_root();
    // Built from pieces so that this file does not match itself.
    let needles = [
        format!("{}{}", "REFERENCE", " §"),
        format!("{}{}", "REFERENCE", ".md"),
    ];
    let mut hits = Vec::new();
    let scanned = [
        "crates",
        "configs",
        "tools",
        "scripts",
        "docs",
        "README.md",
        "Makefile",
    ];
    for (file, text) in text_files(&root, &scanned) {
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                hits.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "cite docs/sources.md#<anchor> instead:\n{}",
        hits.join("\n")
    );
}
