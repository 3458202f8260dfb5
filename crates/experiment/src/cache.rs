//! The one result cache of every stage and of `adalbert compress`: content-addressed,
//! written atomically, read back with `--resume`.
//!
//! A key is the sha256 of a JSON description of everything an item's result depends on, with
//! the stage name and [`CACHE_FORMAT`]; a changed input gives a new key, so a stale result is
//! never found. Each record is written atomically to `<dir>/<stage>-<key>.json`, so an
//! interrupted run loses no finished item. A record is trusted only when it parses and names
//! the same format, stage and key as the file it was found under; anything else (a file cut
//! short, edited, or copied from another key) counts as missing and is recomputed.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ExperimentError, Result};

/// Bumped whenever a change of code changes what a cached record means (its fields, or the
/// computation behind them), so old records are no longer found.
pub const CACHE_FORMAT: u32 = 2;

/// Hex digits of a key: 64 bits, ample for the items of any study, short enough for the file
/// names that carry it (trained bundles, recovered bundles).
const KEY_HEX_DIGITS: usize = 16;

pub struct Cache {
    dir: PathBuf,
    resume: bool,
}

/// The address of one cached item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    stage: String,
    hex: String,
}

impl Key {
    /// The hash in hex (also used in names of files an item writes).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }
}

#[derive(Serialize)]
struct Described<'a, T> {
    format: u32,
    stage: &'a str,
    inputs: &'a T,
}

#[derive(Serialize, Deserialize)]
struct Record<T> {
    format: u32,
    stage: String,
    key: String,
    value: T,
}

impl Cache {
    /// A cache in `dir`; `resume` decides whether [`Cache::get`] reads. The folder is created
    /// by the first [`Cache::put`], so a run refused on a bad input leaves nothing behind; an
    /// existing `dir` that is not a folder is refused here, before any work.
    pub fn new(dir: PathBuf, resume: bool) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(ExperimentError::Core(adalbert_core::CoreError::Output {
                path: dir,
                reason: "exists and is not a folder; the cache needs a folder here".into(),
            }));
        }
        // A run killed while writing a record may have left a temporary.
        adalbert_core::files::remove_stale_temporaries(&dir);
        Ok(Self { dir, resume })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether finished items are read back.
    pub fn resume(&self) -> bool {
        self.resume
    }

    /// The key of an item of `stage` whose result depends on exactly `inputs`.
    pub fn key(stage: &str, inputs: &impl Serialize) -> Result<Key> {
        let json = serde_json::to_string(&Described {
            format: CACHE_FORMAT,
            stage,
            inputs,
        })?;
        let digest = Sha256::digest(json.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Key {
            stage: stage.to_string(),
            hex: hex[..KEY_HEX_DIGITS].to_string(),
        })
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}-{}.json", key.stage, key.hex))
    }

    /// The finished result of `key` when resuming and a trustworthy record exists.
    pub fn get<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        if !self.resume {
            return None;
        }
        self.read(key)
    }

    /// The finished result of `key` if a trustworthy record exists, resuming or not (what
    /// the report and `--merge` read back).
    pub fn read<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        let record: Record<T> = serde_json::from_str(&text).ok()?;
        (record.format == CACHE_FORMAT && record.stage == key.stage && record.key == key.hex)
            .then_some(record.value)
    }

    /// Stores the result of `key`, atomically.
    pub fn put<T: Serialize>(&self, key: &Key, value: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(&Record {
            format: CACHE_FORMAT,
            stage: key.stage.clone(),
            key: key.hex.clone(),
            value,
        })?;
        adalbert_core::files::write_atomic(&self.path(key), &json)?;
        Ok(())
    }
}

/// Floats that may be NaN or infinite in cache records (an undefined correlation, an
/// infeasible design point). JSON has no such numbers and serde_json writes them as `null`,
/// which would not read back as a float: these write them as the strings `"NaN"`, `"inf"` and
/// `"-inf"` instead (finite values stay JSON numbers), and read numbers, those strings, and
/// `null` (as NaN, what older records hold). Use with `#[serde(with = "real")]` on an `f64`,
/// or the submodules for containers of them.
pub mod real {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Clone, Copy)]
    struct Real(f64);

    impl Serialize for Real {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let x = self.0;
            if x.is_nan() {
                s.serialize_str("NaN")
            } else if x.is_infinite() {
                s.serialize_str(if x > 0.0 { "inf" } else { "-inf" })
            } else {
                s.serialize_f64(x)
            }
        }
    }

    impl<'de> Deserialize<'de> for Real {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Repr {
                Number(f64),
                Text(String),
                Null(()),
            }
            match Repr::deserialize(d)? {
                Repr::Number(x) => Ok(Real(x)),
                Repr::Null(()) => Ok(Real(f64::NAN)),
                Repr::Text(t) => match t.as_str() {
                    "NaN" => Ok(Real(f64::NAN)),
                    "inf" => Ok(Real(f64::INFINITY)),
                    "-inf" => Ok(Real(f64::NEG_INFINITY)),
                    other => Err(serde::de::Error::custom(format!(
                        "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{other}\""
                    ))),
                },
            }
        }
    }

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        Real(*x).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Real::deserialize(d)?.0)
    }

    /// `Option<f64>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            x.map(Real).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Ok(Option::<Real>::deserialize(d)?.map(|r| r.0))
        }
    }

    /// `Option<[f64; 3]>`.
    pub mod option3 {
        use super::*;

        pub fn serialize<S: Serializer>(x: &Option<[f64; 3]>, s: S) -> Result<S::Ok, S::Error> {
            x.map(|a| a.map(Real)).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[f64; 3]>, D::Error> {
            Ok(Option::<[Real; 3]>::deserialize(d)?.map(|a| a.map(|r| r.0)))
        }
    }

    /// `BTreeMap<String, f64>` (metrics by name).
    pub mod map {
        use super::*;

        pub fn serialize<S: Serializer>(
            m: &BTreeMap<String, f64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_map(m.iter().map(|(k, v)| (k, Real(*v))))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<String, f64>, D::Error> {
            Ok(BTreeMap::<String, Real>::deserialize(d)?
                .into_iter()
                .map(|(k, r)| (k, r.0))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinities_read_back_as_written() {
        use std::collections::BTreeMap;
        #[derive(Debug, Serialize, Deserialize)]
        struct R {
            #[serde(with = "real")]
            x: f64,
            #[serde(with = "real::option")]
            o: Option<f64>,
            #[serde(with = "real::option3")]
            a: Option<[f64; 3]>,
            #[serde(with = "real::map")]
            m: BTreeMap<String, f64>,
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf(), true).unwrap();
        let key = Cache::key("t", &0).unwrap();
        let r = R {
            x: f64::NAN,
            o: Some(f64::NEG_INFINITY),
            a: Some([1.5, f64::INFINITY, f64::NAN]),
            m: BTreeMap::from([("p".to_string(), f64::NAN), ("q".to_string(), 0.25)]),
        };
        cache.put(&key, &r).unwrap();
        let back: R = cache.get(&key).expect("read back");
        assert!(back.x.is_nan());
        assert_eq!(back.o, Some(f64::NEG_INFINITY));
        let a = back.a.unwrap();
        assert_eq!((a[0], a[1]), (1.5, f64::INFINITY));
        assert!(a[2].is_nan() && back.m["p"].is_nan());
        assert_eq!(back.m["q"], 0.25);
        // What serde_json alone writes for NaN (older records) reads as NaN.
        let old: R =
            serde_json::from_str(r#"{"x": null, "o": null, "a": null, "m": {"p": null}}"#).unwrap();
        assert!(old.x.is_nan() && old.o.is_none() && old.m["p"].is_nan());
    }

    #[derive(Serialize)]
    struct Inputs<'a> {
        plan: &'a str,
        seed: u64,
    }

    #[test]
    fn a_changed_input_or_stage_gives_a_new_key() {
        let k = |plan, seed| Cache::key("compress", &Inputs { plan, seed }).unwrap();
        assert_eq!(k("int8", 0), k("int8", 0));
        assert_ne!(k("int8", 0), k("int8", 1));
        assert_ne!(k("int8", 0), k("int4", 0));
        let other = Cache::key(
            "train",
            &Inputs {
                plan: "int8",
                seed: 0,
            },
        )
        .unwrap();
        assert_ne!(other.hex(), k("int8", 0).hex());
        assert_eq!(k("int8", 0).hex().len(), KEY_HEX_DIGITS);
    }

    #[test]
    fn resume_reads_back_and_a_fresh_run_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = Cache::key(
            "eval",
            &Inputs {
                plan: "fp32",
                seed: 3,
            },
        )
        .unwrap();
        let fresh = Cache::new(dir.path().join("cache"), false).unwrap();
        fresh.put(&key, &vec![0.5, 0.25]).unwrap();
        assert_eq!(
            fresh.get::<Vec<f64>>(&key),
            None,
            "without resume nothing is read"
        );
        let resumed = Cache::new(dir.path().join("cache"), true).unwrap();
        assert_eq!(resumed.get::<Vec<f64>>(&key), Some(vec![0.5, 0.25]));
        let missing = Cache::key(
            "eval",
            &Inputs {
                plan: "fp32",
                seed: 4,
            },
        )
        .unwrap();
        assert_eq!(resumed.get::<Vec<f64>>(&missing), None);
        // Only the record itself is left in the folder: no temporary files.
        assert_eq!(std::fs::read_dir(resumed.dir()).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupt_or_foreign_record_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf(), true).unwrap();
        let a = Cache::key("eval", &Inputs { plan: "a", seed: 0 }).unwrap();
        let b = Cache::key("eval", &Inputs { plan: "b", seed: 0 }).unwrap();
        cache.put(&a, &1.0f64).unwrap();
        let path = cache.path(&a);
        let text = std::fs::read_to_string(&path).unwrap();
        // Cut short: not JSON any more.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(cache.get::<f64>(&a), None);
        // Another key's record under this key's name.
        cache.put(&b, &2.0f64).unwrap();
        std::fs::copy(cache.path(&b), &path).unwrap();
        assert_eq!(cache.get::<f64>(&a), None);
        // The wrong shape of value.
        cache.put(&a, &"text").unwrap();
        assert_eq!(cache.get::<f64>(&a), None);
        // Recomputed and stored again, it is read back.
        cache.put(&a, &1.0f64).unwrap();
        assert_eq!(cache.get::<f64>(&a), Some(1.0));
    }
}
