//! A table formatted once and written both as Markdown and CSV, so the report's numbers are
//! by construction the CSV's numbers.

use std::path::Path;

use crate::error::Result;

pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.headers.join(" | "));
        s.push_str(&format!("|{}\n", "---|".repeat(self.headers.len())));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }

    pub fn csv(&self) -> String {
        let headers: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        adalbert_core::files::csv_string(&headers, &self.rows)
    }

    pub fn write_csv(&self, path: &Path) -> Result<()> {
        adalbert_core::files::write_atomic(path, self.csv().as_bytes())?;
        Ok(())
    }
}

/// Fixed formatting of numbers shared by every table (`nan` for NaN).
pub fn fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "nan".into()
    } else {
        format!("{x:.decimals$}")
    }
}

pub fn f2(x: f64) -> String {
    fixed(x, 2)
}

pub fn f3(x: f64) -> String {
    fixed(x, 3)
}

pub fn f4(x: f64) -> String {
    fixed(x, 4)
}
