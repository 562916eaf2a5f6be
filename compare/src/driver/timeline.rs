//! What the parent makes of the `server` workload (`server.rs`): a table
//! of RSS after each burst and the picture `rss-timeline.svg`
//! (`--rss-svg FILE`), RSS over time with one line per allocator.
//!
//! Invariants:
//! * the table and the picture read the same rows (one per allocator, at
//!   the one thread count the workload runs at); a failed row is a failed
//!   cell or legend entry, never a zero line;
//! * [`render_svg`] writes one well-formed SVG document (every element
//!   closed, every text escaped): a `<g id="rss-NAME">` per allocator
//!   holding exactly one `<polyline>` (its RSS, MiB over seconds) when its
//!   row has samples, and one `<g id="live">` holding one dashed
//!   `<polyline>`, the live bytes of a reference run (arenalloc's when it
//!   succeeded, else the first that did);
//! * both axes start at 0 and end on a round tick at or above the data.

use std::fmt::Write as _;

use serde_json::Value;

use super::plan::Plan;
use super::server::Shape;
use super::svg::{esc, nice_ceil, tick};
use super::table::{mib, ok, threads_label, Table};
use super::workloads::Workload;

/// The rows of the server workload, in the plan's allocator order.
fn server_rows<'a>(plan: &Plan, rows: &'a [Value]) -> Vec<(&'static str, Option<&'a Value>)> {
    plan.allocators
        .iter()
        .map(|&a| {
            let row = rows.iter().find(|r| {
                r["workload"] == Workload::Server.name()
                    && r["allocator"] == a
                    && r["max_arenas"].is_null()
            });
            (a, row)
        })
        .collect()
}

fn bytes(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A row's `bursts` list (empty when it has none).
fn bursts(row: &Value) -> &[Value] {
    row["bursts"].as_array().map_or(&[], Vec::as_slice)
}

/// "38.1 MiB (0.15)": RSS and its share of the burst's live bytes.
fn after_cell(burst: Option<&Value>, key: &str) -> String {
    let Some(b) = burst else {
        return "-".into();
    };
    let ratio = b[format!("{key}_per_live")].as_f64().unwrap_or(f64::NAN);
    format!("{} ({ratio:.2})", mib(bytes(&b[format!("{key}_bytes")])))
}

/// The server workload's table: peak RSS and RSS 100 ms and 1 s after
/// each burst's frees, with each one's share of the burst's live bytes.
pub(crate) fn print_table(plan: &Plan, rows: &[Value]) {
    let picked = server_rows(plan, rows);
    let n = picked
        .iter()
        .filter_map(|(_, r)| r.filter(|r| ok(r)))
        .map(|r| bursts(r).len())
        .max()
        .unwrap_or(0);
    let mut head = vec![
        "allocator".to_string(),
        "threads".into(),
        "peak live".into(),
        "peak RSS".into(),
    ];
    for k in 1..=n {
        head.push(format!("burst {k} +100 ms"));
        head.push(format!("burst {k} +1 s"));
    }
    let mut t = Table::new(head);
    for (a, row) in picked {
        let Some(r) = row else { continue };
        let mut cells = vec![a.to_string(), r["threads"].to_string()];
        if !ok(r) {
            cells.push(r["status"].as_str().unwrap_or("failed").to_string());
            t.rows.push(cells);
            continue;
        }
        cells.push(mib(bytes(&r["peak_live_bytes"])));
        cells.push(mib(bytes(&r["peak_rss_bytes"])));
        for k in 0..n {
            let b = bursts(r).get(k);
            cells.push(after_cell(b, "rss_100ms"));
            cells.push(after_cell(b, "rss_1s"));
        }
        t.rows.push(cells);
    }
    let mut notes = String::new();
    for (a, why) in Workload::Server.left_out() {
        if plan.allocators.contains(a) && !plan.allocators_of(Workload::Server).contains(a) {
            let _ = write!(notes, "\n\n{a}: not run ({why}); `--alloc {a}` runs it.");
        }
    }
    println!(
        "\nRSS after each burst's frees finished (+100 ms, +1 s), and in brackets that RSS \
         less the RSS before the first burst, over the burst's peak live bytes: the share of \
         the burst still resident (0 = all given back).\n\n{}{notes}",
        t.render()
    );
}

// ----- the picture ----------------------------------------------------------

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 540.0;
/// The plot area.
const LEFT: f64 = 76.0;
const TOP: f64 = 92.0;
const PLOT_W: f64 = 640.0;
const PLOT_H: f64 = 370.0;
/// Where the legend starts.
const LEGEND_X: f64 = LEFT + PLOT_W + 28.0;

/// An allocator's colour: Okabe-Ito (safe for colour-blind readers), the
/// arenalloc pair in blues, black for the seventh.
fn colour(alloc: &str) -> &'static str {
    match alloc {
        "arenalloc" => "#0072b2",
        "arenalloc-1lock" => "#56b4e9",
        "system" => "#d55e00",
        "mimalloc" => "#009e73",
        "jemalloc" => "#cc79a7",
        "talc" => "#e69f00",
        _ => "#000000",
    }
}

/// A round step (1, 2, 2.5 or 5 times a power of ten) giving at most
/// eight steps up to `max`, and the axis top: the first multiple of it at
/// or above `max`.
fn axis(max: f64) -> (f64, f64) {
    let step = nice_ceil(max / 8.0);
    let top = ((max / step) - 1e-9).ceil().max(1.0) * step;
    (top, step)
}

/// One of a row's samples.
struct Sampled {
    secs: f64,
    rss: u64,
    live: u64,
}

/// A row's samples, in order.
fn samples(row: &Value) -> Vec<Sampled> {
    row["samples"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| {
                    Some(Sampled {
                        secs: x[0].as_f64()?,
                        rss: x[1].as_u64()?,
                        live: x[2].as_u64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

const MIB: f64 = (1 << 20) as f64;

/// The picture (module doc) for the server rows of `rows`, run at
/// `threads` threads.
pub(crate) fn render_svg(plan: &Plan, rows: &[Value], threads: usize) -> String {
    let picked = server_rows(plan, rows);
    let good: Vec<(&str, &Value, Vec<Sampled>)> = picked
        .iter()
        .filter_map(|&(a, r)| r.filter(|r| ok(r)).map(|r| (a, r, samples(r))))
        .filter(|(_, _, s)| !s.is_empty())
        .collect();
    let reference = good
        .iter()
        .find(|(a, _, _)| *a == "arenalloc")
        .or_else(|| good.first());
    let t_max = good
        .iter()
        .filter_map(|(_, _, s)| s.last().map(|x| x.secs))
        .fold(0.0, f64::max);
    let y_max = good
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|x| x.rss.max(x.live) as f64 / MIB))
        .fold(0.0, f64::max);
    let (x_top, x_step) = axis(t_max);
    let (y_top, y_step) = axis(y_max);
    let x_of = |secs: f64| LEFT + secs / x_top * PLOT_W;
    let y_of = |mib: f64| TOP + PLOT_H - mib / y_top * PLOT_H;
    let bottom = TOP + PLOT_H;
    let shape = Shape::of(plan.scale);
    let title = format!(
        "RSS over time: bursts freed on other threads, then idle ({})",
        threads_label(threads)
    );

    let mut s = String::with_capacity(64 << 10);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{HEIGHT:.0}" viewBox="0 0 {WIDTH:.0} {HEIGHT:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", esc(&title));
    let _ = writeln!(
        s,
        r##"<rect width="{WIDTH:.0}" height="{HEIGHT:.0}" fill="#ffffff"/>"##
    );
    let _ = writeln!(s, r#"<g id="title">"#);
    let _ = writeln!(
        s,
        r#"<text x="16" y="28" font-size="18" font-weight="bold">{}</text>"#,
        esc(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="48" fill="#444">Each burst: {} live on {}, every block freed by another thread (dashed: live bytes). Then nothing allocates.</text>"##,
        esc(&mib(shape.live as u64)),
        esc(&threads_label(threads))
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="64" fill="#444">A line that falls back to the dashed one after a burst has given the memory back to the kernel; one that stays up keeps it.</text>"##
    );
    let _ = writeln!(s, "</g>");

    // Bursts of the reference run: shaded, with the +1 s measurement point.
    let _ = writeln!(s, r#"<g id="bursts">"#);
    if let Some((a, r, _)) = reference {
        for (k, b) in bursts(r).iter().enumerate() {
            let (Some(start), Some(freed)) = (b["start_s"].as_f64(), b["freed_s"].as_f64()) else {
                continue;
            };
            let (x0, x1) = (x_of(start), x_of(freed));
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{TOP:.1}" width="{:.1}" height="{PLOT_H:.1}" fill="#eeeeee"><title>burst {} of {}'s run: {start:.2} s to {freed:.2} s</title></rect><text x="{:.1}" y="{:.1}" fill="#666">burst {}</text>"##,
                (x1 - x0).max(1.0),
                k + 1,
                esc(a),
                x0 + 3.0,
                TOP + 14.0,
                k + 1
            );
            if let Some(later) = b["rss_1s_at_s"].as_f64() {
                let x = x_of(later);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{TOP:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#999" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#666" text-anchor="middle">+1 s</text>"##,
                    x,
                    TOP - 4.0
                );
            }
        }
    }
    let _ = writeln!(s, "</g>");

    // Axes and grid.
    let _ = writeln!(s, r#"<g id="axes">"#);
    let steps = |top: f64, step: f64| {
        (0..)
            .map(move |k| k as f64 * step)
            .take_while(move |&v| v <= top * (1.0 + 1e-9))
    };
    for v in steps(y_top, y_step) {
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            tick(v, y_step)
        );
    }
    for v in steps(x_top, x_step) {
        let x = x_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#222222"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 5.0,
            bottom + 19.0,
            tick(v, x_step)
        );
    }
    let _ = writeln!(
        s,
        r##"<path d="M{LEFT:.1},{TOP:.1} V{bottom:.1} H{:.1}" fill="none" stroke="#222222"/>"##,
        LEFT + PLOT_W
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">RSS, MiB</text>"#,
        LEFT - 50.0,
        TOP + PLOT_H / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the workload started</text>"#,
        LEFT + PLOT_W / 2.0,
        bottom + 40.0
    );
    let _ = writeln!(s, "</g>");

    let points = |s: &[Sampled], value: fn(&Sampled) -> u64| {
        let mut out = String::with_capacity(s.len() * 13);
        for x in s {
            let _ = write!(
                out,
                "{:.1},{:.1} ",
                x_of(x.secs),
                y_of(value(x) as f64 / MIB)
            );
        }
        out.trim_end().to_string()
    };

    // The reference live line, then one line per allocator.
    let _ = writeln!(s, r#"<g id="live">"#);
    if let Some((a, _, samples)) = reference {
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#555555" stroke-width="1.5" stroke-dasharray="6 4"><title>live bytes ({}'s run)</title></polyline>"##,
            points(samples, |x| x.live),
            esc(a)
        );
    }
    let _ = writeln!(s, "</g>");
    for &(a, r, ref samples) in &good {
        let summary = legend_numbers(r);
        let _ = writeln!(
            s,
            r#"<g id="rss-{}"><polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"><title>{}: {}</title></polyline></g>"#,
            esc(a),
            points(samples, |x| x.rss),
            colour(a),
            esc(a),
            esc(&summary)
        );
    }

    // Legend: every allocator of the plan, failed ones said so.
    let _ = writeln!(s, r#"<g id="legend">"#);
    let mut y = TOP + 6.0;
    for &(a, r) in &picked {
        let Some(r) = r else { continue };
        let note = if ok(r) {
            legend_numbers(r)
        } else {
            r["status"].as_str().unwrap_or("failed").to_string()
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEGEND_X:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#444">{}</text>"##,
            LEGEND_X + 22.0,
            colour(a),
            LEGEND_X + 28.0,
            y + 4.0,
            esc(a),
            LEGEND_X + 28.0,
            y + 18.0,
            esc(&note)
        );
        y += 38.0;
    }
    if let Some((a, _, _)) = reference {
        let _ = writeln!(
            s,
            r##"<line x1="{LEGEND_X:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555555" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}">live bytes</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#444">({}'s run)</text>"##,
            LEGEND_X + 22.0,
            LEGEND_X + 28.0,
            y + 4.0,
            LEGEND_X + 28.0,
            y + 18.0,
            esc(a)
        );
        y += 38.0;
    }
    for line in [
        "peak: the most RSS seen;",
        "+1 s: RSS 1 s after the last",
        "burst's frees, and in brackets",
        "(that − RSS before) ÷ live:",
        "the share still resident.",
    ] {
        let _ = writeln!(
            s,
            r##"<text x="{LEGEND_X:.1}" y="{y:.1}" font-size="11" fill="#666">{}</text>"##,
            esc(line)
        );
        y += 14.0;
    }
    let _ = writeln!(s, "</g>");

    let _ = writeln!(
        s,
        r##"<text x="16" y="{:.1}" font-size="11" fill="#666666">cargo run --release -- --workload server ({} run); RSS from /proc/self/statm every 5 ms; {} cores. Hover a line for its numbers.</text>"##,
        HEIGHT - 12.0,
        plan.mode(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    s.push_str("</svg>\n");
    s
}

/// "peak 290 MiB, +1 s 12.0 MiB (0.02)": a row's peak RSS and its RSS 1 s
/// after the last burst.
fn legend_numbers(row: &Value) -> String {
    let peak = mib(bytes(&row["peak_rss_bytes"]));
    match bursts(row).last() {
        Some(b) => format!("peak {peak}, +1 s {}", after_cell(Some(b), "rss_1s")),
        None => format!("peak {peak}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_a_round_tick_at_or_above_the_data() {
        for (max, top, step) in [
            (3.15, 3.5, 0.5),
            (2.4, 2.5, 0.5),
            (321.0, 350.0, 50.0),
            (41.0, 50.0, 10.0),
            (0.0, 0.001, 0.001),
        ] {
            let (t, s) = axis(max);
            assert!(
                (t - top).abs() < 1e-9 && (s - step).abs() < 1e-9,
                "axis({max}) = ({t}, {s}), not ({top}, {step})"
            );
        }
    }
}
