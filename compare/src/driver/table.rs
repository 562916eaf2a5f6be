//! Markdown tables and the cell formats every report shares (`report.rs`,
//! `sweep.rs`, `timeline.rs`): a leaf, so that those modules import it and
//! not each other.
//!
//! Invariant: a rendered table has one line per row plus the heading and
//! the alignment line, every line with the same number of cells; a cell is
//! never wider than its column.

use serde_json::Value;

/// A markdown table; the first column is left-aligned, the others right.
pub(crate) struct Table {
    pub(crate) head: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings and no rows yet: every table's
    /// header is built here.
    pub(crate) fn new<S: Into<String>>(head: impl IntoIterator<Item = S>) -> Table {
        Table {
            head: head.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn render(&self) -> String {
        let n = self.head.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([self.head[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        };
        let widths: Vec<usize> = (0..n).map(width).collect();
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                if i == 0 {
                    s += &format!(" {c:<w$} |");
                } else {
                    s += &format!(" {c:>w$} |");
                }
            }
            s
        };
        let mut out = line(&self.head);
        out.push('\n');
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            if i == 0 {
                out += &format!(" :{} |", "-".repeat(w - 1));
            } else {
                out += &format!(" {}: |", "-".repeat(w - 1));
            }
        }
        for r in &self.rows {
            out.push('\n');
            out += &line(r);
        }
        out
    }
}

/// Operations per second, in millions, to three significant digits.
pub(crate) fn mops(rate: f64) -> String {
    let m = rate / 1e6;
    if m >= 100.0 {
        format!("{m:.0}")
    } else if m >= 10.0 {
        format!("{m:.1}")
    } else if m >= 1.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.3}")
    }
}

/// Bytes in MiB.
pub(crate) fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1 << 20) as f64;
    if m >= 100.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// "1 thread", "8 threads".
pub(crate) fn threads_label(t: usize) -> String {
    if t == 1 {
        "1 thread".into()
    } else {
        format!("{t} threads")
    }
}

/// Whether a result row is a measurement (not a failed child).
pub(crate) fn ok(row: &Value) -> bool {
    row["status"] == "ok"
}

/// A row's throughput, operations per second (0 for a failed row).
pub(crate) fn rate(row: &Value) -> f64 {
    row["ops_per_sec"].as_f64().unwrap_or(0.0)
}
