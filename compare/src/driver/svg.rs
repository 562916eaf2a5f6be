//! The helpers both pictures share (the lesson's, `sweep.rs`; the RSS
//! timeline's, `timeline.rs`): text escaping, axis steps, the write. A
//! leaf, so that neither picture imports the other.
//!
//! Invariants: `esc` output is safe in SVG text and attribute values;
//! `nice_ceil(v) >= v`; `write_svg` never leaves half a picture at `path`.

use std::path::Path;

/// `s` escaped for SVG text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The smallest 1, 2, 2.5 or 5 times a power of ten at or above `v`: the
/// top of an axis with five even steps.
pub(crate) fn nice_ceil(v: f64) -> f64 {
    let v = v.max(1e-3);
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// A tick label: as many decimals as a step of `step` needs.
pub(crate) fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Writes `svg` to `path` through a temporary file, so that a reader never
/// sees half a picture.
pub(crate) fn write_svg(path: &Path, svg: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, svg)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers_at_or_above_the_data() {
        for (v, top) in [
            (0.0, 0.001),
            (0.7, 1.0),
            (1.0, 1.0),
            (1.3, 2.0),
            (2.2, 2.5),
            (3.1, 5.0),
            (9.25, 10.0),
            (13.8, 20.0),
            (45.1, 50.0),
            (72.8, 100.0),
        ] {
            let got = nice_ceil(v);
            assert!(
                (got - top).abs() < 1e-9,
                "nice_ceil({v}) = {got}, not {top}"
            );
        }
        assert_eq!(tick(40.0, 10.0), "40");
        assert_eq!(tick(1.5, 0.5), "1.5");
        assert_eq!(tick(0.15, 0.05), "0.15");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
