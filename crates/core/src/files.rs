//! How every output file is written: atomically, and CSV through the `csv` crate.
//!
//! An output is either absent or complete. [`write_atomic`] writes a temporary file in the
//! target's directory (so the final rename stays on one file system), flushes it to disk,
//! renames it over the target and removes the temporary if any step fails; a crash at any
//! point leaves the old file or the new one, never a mix. A process killed mid-write cannot
//! remove its temporary; [`remove_stale_temporaries`] does, at the next run in that folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{CoreError, Result};

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CoreError {
    let path = path.to_path_buf();
    move |source| CoreError::Io {
        action,
        path,
        source,
    }
}

/// Writes `bytes` to `path` atomically (see the module docs), creating missing parent
/// directories. A `path` that is an existing directory is an error, not a file written
/// beside it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], with the contents produced by `fill` writing into the temporary
/// file (for outputs too large to build in memory first).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    if path.is_dir() {
        return Err(CoreError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_error("cannot create directory", dir))?;
    // The temporary is deleted when dropped, so every early return below cleans up. Its name
    // carries this process's id, so a temporary left by a killed process can be told from one
    // in use (see [`remove_stale_temporaries`]).
    let prefix = format!("{TMP_PREFIX}{}-", std::process::id());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_error("cannot create a temporary file in", dir))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w).map_err(io_error("cannot write", path))?;
        w.flush().map_err(io_error("cannot write", path))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(io_error("cannot flush", path))?;
    tmp.persist(path)
        .map_err(|e| io_error("cannot rename a temporary file to", path)(e.error))?;
    // Make the rename itself durable; a failure here does not undo the complete file.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

const TMP_PREFIX: &str = ".adalbert-";

/// Writes a whole directory at once: `fill` writes every file into a fresh temporary sibling
/// directory (named like [`write_atomic`]'s temporaries, so [`remove_stale_temporaries`]
/// removes one a killed process left), which is then renamed to `dir`. An existing `dir` is
/// first renamed aside and removed after the swap. A crash at any point leaves the old
/// directory, the new one, or (between the two renames) none, but never a directory with only
/// some of its files: a reader that finds `dir` finds all of it.
pub fn write_dir_atomic<E: From<CoreError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let parent = match dir.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_error("cannot create directory", parent))?;
    let prefix = format!("{TMP_PREFIX}{}-", std::process::id());
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempdir_in(parent)
        .map_err(io_error("cannot create a temporary directory in", parent))?;
    fill(tmp.path())?;
    let old = if dir.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempdir_in(parent)
            .map_err(io_error("cannot create a temporary directory in", parent))?;
        let aside_path = aside.path().join("old");
        std::fs::rename(dir, &aside_path).map_err(io_error("cannot move aside", dir))?;
        Some(aside)
    } else {
        None
    };
    let staged = tmp.keep();
    std::fs::rename(&staged, dir)
        .map_err(io_error("cannot rename a temporary directory to", dir))?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    drop(old); // removes the previous directory
    Ok(())
}

/// Removes the temporaries that processes killed in the middle of [`write_atomic`] or
/// [`write_dir_atomic`] (SIGKILL, power loss) left in `dir`: files and directories named
/// `.adalbert-<pid>-*.tmp` whose process no longer runs
/// (on systems without `/proc`, none are judged stale). Commands that resume in a folder call
/// it first; returns how many were removed.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(TMP_PREFIX)
            .filter(|_| name.ends_with(".tmp"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || proc.join(pid.to_string()).exists() {
            continue;
        }
        let path = e.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path).is_ok()
        } else {
            std::fs::remove_file(&path).is_ok()
        };
        if gone {
            removed += 1;
        }
    }
    removed
}

/// Checks, before any work starts, that `out` can be written as a file without destroying an
/// input: it must not be an existing directory, its parent must not be a file, and it must not
/// be (the same file as, through links too) any of `inputs`. Inputs that do not exist are
/// skipped. Call it first, so a long run never ends in an unwritable or destructive output.
pub fn check_output(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    if out.as_os_str().is_empty() {
        return Err(CoreError::Output {
            path: out.to_path_buf(),
            reason: "is empty; expected a file path".into(),
        });
    }
    if out.is_dir() {
        return Err(CoreError::IsDirectory {
            path: out.to_path_buf(),
        });
    }
    // The nearest existing ancestor must be a directory (else the parent cannot be created).
    let mut ancestor = out.parent();
    while let Some(a) = ancestor {
        if a.as_os_str().is_empty() {
            break;
        }
        if a.exists() {
            if !a.is_dir() {
                return Err(CoreError::Output {
                    path: out.to_path_buf(),
                    reason: format!("cannot be created: {} is not a directory", a.display()),
                });
            }
            break;
        }
        ancestor = a.parent();
    }
    if !out.exists() {
        return Ok(());
    }
    for input in inputs {
        if same_file(out, input) {
            return Err(CoreError::Output {
                path: out.to_path_buf(),
                reason: format!(
                    "is an input of this command ({}); writing it would destroy that input: choose another output path",
                    input.display()
                ),
            });
        }
    }
    Ok(())
}

/// Whether two existing paths name the same file (device and inode on Unix, so hard and
/// symbolic links count; canonical paths elsewhere).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// CSV text of `header` and `rows` (fields quoted by the `csv` crate where needed).
pub fn csv_string<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    // Writing into a Vec cannot fail, and the rows are strings, so these calls cannot fail.
    let _ = w.write_record(header);
    for row in rows {
        let _ = w.write_record(row.iter().map(AsRef::as_ref));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Writes serializable records as CSV (header from the field names), atomically.
pub fn write_csv<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    for r in records {
        w.serialize(r).map_err(|source| CoreError::Csv {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let bytes = w.into_inner().map_err(|e| CoreError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    write_atomic(path, &bytes)
}

/// A NumPy `.npy` file (format version 1.0) of little-endian float32 rows, shape
/// `[rows.len(), dim]`: the header dict is padded with spaces so the data starts at a multiple
/// of 64 bytes, as NumPy writes it. Rows shorter or longer than `dim` are an error.
pub fn npy_f32(rows: &[Vec<f32>], dim: usize) -> std::result::Result<Vec<u8>, String> {
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != dim) {
        return Err(format!("row {i} has {} values, expected {dim}", r.len()));
    }
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    // magic (6) + version (2) + header length (2) + dict + padding + '\n'
    let unpadded = 10 + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let mut out = Vec::with_capacity(10 + header_len + rows.len() * dim * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + header_len - 1, b' ');
    out.push(b'\n');
    for r in rows {
        for x in r {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.txt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        assert!(dir.path().is_dir());
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // pid 0 is never a running process's id; our own id is running.
        let dead = dir.path().join(".adalbert-0-abc.tmp");
        let alive = dir
            .path()
            .join(format!(".adalbert-{}-abc.tmp", std::process::id()));
        let other = dir.path().join("out.bin");
        for p in [&dead, &alive, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert!(!dead.exists() && alive.exists() && other.exists());
        // A directory a killed write_dir_atomic left goes too.
        let dead_dir = dir.path().join(".adalbert-0-dir.tmp");
        std::fs::create_dir_all(dead_dir.join("sub")).unwrap();
        std::fs::write(dead_dir.join("sub/f"), b"x").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert!(!dead_dir.exists() && alive.exists());
    }

    #[test]
    fn a_directory_is_replaced_whole_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("model");
        write_dir_atomic::<CoreError>(&out, |d| {
            std::fs::write(d.join("a"), b"1").unwrap();
            std::fs::write(d.join("stale"), b"x").unwrap();
            Ok(())
        })
        .unwrap();
        // A failing fill leaves the old directory as it was and no temporary.
        let err = write_dir_atomic::<CoreError>(&out, |d| {
            std::fs::write(d.join("a"), b"half").unwrap();
            Err(CoreError::IsDirectory { path: d.into() })
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(out.join("a")).unwrap(), b"1");
        // A new directory replaces the old one entirely (no file of the old one survives).
        write_dir_atomic::<CoreError>(&out, |d| {
            std::fs::write(d.join("a"), b"2").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(out.join("a")).unwrap(), b"2");
        assert!(!out.join("stale").exists());
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["model"]);
    }

    #[test]
    fn outputs_are_checked_before_work() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model.safetensors");
        std::fs::write(&input, b"weights").unwrap();
        let inputs = [input.clone(), dir.path().join("absent.txt")];
        // A new file, even in a directory still to be created, is fine.
        check_output(&dir.path().join("a/b/out.bin"), &inputs).unwrap();
        // An existing file that is no input may be replaced.
        let other = dir.path().join("old.bin");
        std::fs::write(&other, b"old").unwrap();
        check_output(&other, &inputs).unwrap();
        // A directory.
        let e = check_output(dir.path(), &inputs).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        // An input, by its own path and through another spelling of it.
        let e = check_output(&input, &inputs).unwrap_err().to_string();
        assert!(
            e.contains("destroy") && e.contains("model.safetensors"),
            "{e}"
        );
        let dotted = dir.path().join(".").join("model.safetensors");
        assert!(check_output(&dotted, &inputs).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.safetensors");
            std::os::unix::fs::symlink(&input, &link).unwrap();
            assert!(check_output(&link, &inputs).is_err());
        }
        // A parent that is a file.
        let e = check_output(&other.join("out.bin"), &inputs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a directory"), "{e}");
        assert_eq!(std::fs::read(&input).unwrap(), b"weights");
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let text = csv_string(&["a", "b"], &[vec!["x,y", "say \"hi\""], vec!["1", "2"]]);
        assert_eq!(text, "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n1,2\n");
        #[derive(Serialize)]
        struct Row {
            task: &'static str,
            value: f64,
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        write_csv(
            &p,
            &[Row {
                task: "t,1",
                value: 0.5,
            }],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            "task,value\n\"t,1\",0.5\n"
        );
    }

    /// The header NumPy 2 writes for `np.save(f, np.zeros((2, 3), np.float32))` (118 bytes of
    /// dict and padding after the 10-byte preamble), then the values.
    #[test]
    fn npy_matches_numpy_layout() {
        let bytes = npy_f32(&[vec![1.0, -2.0, 0.5], vec![0.0, 3.0, 4.0]], 3).unwrap();
        let dict = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 118);
        assert_eq!(&bytes[10..10 + dict.len()], dict);
        assert!(bytes[10 + dict.len()..127].iter().all(|&b| b == b' '));
        assert_eq!(bytes[127], b'\n');
        assert_eq!(bytes.len(), 128 + 6 * 4);
        assert_eq!(&bytes[128..132], &1f32.to_le_bytes());
        assert_eq!(&bytes[148..152], &4f32.to_le_bytes());
        assert!(npy_f32(&[vec![1.0]], 2).unwrap_err().contains("row 0"));
    }
}
