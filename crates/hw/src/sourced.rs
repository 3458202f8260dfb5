//! Numbers that carry their provenance: every figure the simulator uses is read from a data file
//! as `{ value = .., source = ".." }`, so reports can list each assumption next to its value.

use serde::{Deserialize, Serialize};

use crate::error::{field_err, Result};

/// A number with the paper, table or assumption it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Num {
    pub value: f64,
    pub source: String,
}

impl Num {
    /// The value, after checking it is finite, strictly positive and sourced.
    pub fn positive(&self, origin: &str, field: &str) -> Result<f64> {
        self.checked(origin, field)?;
        if self.value <= 0.0 {
            return Err(field_err(
                origin,
                field,
                format!("a value > 0, found {}", self.value),
            ));
        }
        Ok(self.value)
    }

    /// The value, after checking it is finite, not negative and sourced.
    pub fn non_negative(&self, origin: &str, field: &str) -> Result<f64> {
        self.checked(origin, field)?;
        if self.value < 0.0 {
            return Err(field_err(
                origin,
                field,
                format!("a value >= 0, found {}", self.value),
            ));
        }
        Ok(self.value)
    }

    /// The value as a positive integer (counts such as MAC rows).
    pub fn count(&self, origin: &str, field: &str) -> Result<u64> {
        let v = self.positive(origin, field)?;
        if v.fract() != 0.0 {
            return Err(field_err(
                origin,
                field,
                format!("a whole number, found {v}"),
            ));
        }
        if v > u32::MAX as f64 {
            return Err(field_err(
                origin,
                field,
                format!("a count of at most {} (2^32 - 1), found {v}", u32::MAX),
            ));
        }
        Ok(v as u64)
    }

    fn checked(&self, origin: &str, field: &str) -> Result<()> {
        if !self.value.is_finite() {
            return Err(field_err(origin, field, "a finite number"));
        }
        if self.source.trim().is_empty() {
            return Err(field_err(
                origin,
                field,
                "a non-empty `source` (paper/table, or \"assumed: reason\")",
            ));
        }
        Ok(())
    }
}

/// One line of an assumptions list: where a number sits, its value and its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    pub key: String,
    pub value: f64,
    pub source: String,
}

impl Provenance {
    pub(crate) fn of(key: impl Into<String>, num: &Num) -> Self {
        Provenance {
            key: key.into(),
            value: num.value,
            source: num.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(value: f64) -> Num {
        Num {
            value,
            source: "assumed: test".into(),
        }
    }

    #[test]
    fn counts_name_the_limit_they_break() {
        assert_eq!(num(16.0).count("a.toml", "mac_rows").unwrap(), 16);
        assert_eq!(
            num(u32::MAX as f64).count("a.toml", "mac_rows").unwrap(),
            u64::from(u32::MAX)
        );
        // 2^32 is a whole number: the error must say the real limit, not "whole number".
        let e = num(4294967296.0)
            .count("a.toml", "mac_rows")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most 4294967295") && e.contains("mac_rows"),
            "{e}"
        );
        assert!(!e.contains("whole number"), "{e}");
        let e = num(2.5)
            .count("a.toml", "mac_rows")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a whole number, found 2.5"), "{e}");
    }
}
