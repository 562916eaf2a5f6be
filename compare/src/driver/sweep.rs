//! The lock-granularity lesson (`--sweep-arenas`): larson and prodcons on
//! arenalloc at three levels of lock granularity, printed as tables and
//! drawn as `lock-granularity.svg` (`--lock-svg FILE`).
//!
//! | level | `level` in the JSON | configuration | what a small allocation takes |
//! | --- | --- | --- | --- |
//! | one lock | `one-lock` | `max_arenas(1)`, `owner_cache(0)` | the heap's one lock, shared by every thread |
//! | per-thread locked arenas | `locked-arenas` | `max_arenas` 2, 4, 8, `owner_cache(0)` | its own arena's lock, found held only where threads share an arena |
//! | owner caches | `owner-caches` | `max_arenas` 2, 4, 8, `owner_cache(DEFAULT_OWNER_CACHE)` | no lock while its owner cache has a block (lock-free); the arena's lock on a miss |
//!
//! The one-lock level turns the owner cache off too, so that it is exactly
//! what its name says: every call takes the one lock. Each level differs
//! from the one before it in one setting.
//!
//! Invariants:
//! * a sweep [`Point`] is a level and an arena limit; every row of a sweep
//!   carries `level`, `max_arenas` and `owner_cache` (failed rows too, set
//!   by the parent), and [`find`] identifies a row by workload, thread
//!   count, level and `max_arenas`;
//! * the tables and the picture read the same rows; a point whose child
//!   failed is shown as failed (a cell, a label on the axis), never as a
//!   zero;
//! * [`render_svg`] writes one well-formed SVG document (every element
//!   closed, every text escaped) with one `<g id="level-ID">` per level
//!   holding all of that level's bars, markers and labels, in every panel;
//!   a panel per workload, for one thread count.
//!
//! *Lock acquisitions per op* divides every lock acquisition the heap
//! counted (setup and teardown included) by the allocator calls the
//! workload timed: about 1 with one lock, below 1 where remote frees are
//! drained in batches or calls are served without the lock.

use std::fmt::Write as _;

use serde_json::Value;

use super::levels::{Level, Point};
use super::plan::Plan;
use super::svg::{esc, nice_ceil, tick};
use super::table::{mops, ok, rate, threads_label, Table};
use super::workloads::Workload;

/// The row of point `p` of workload `w` at `threads` (module doc).
fn find<'a>(rows: &'a [Value], w: Workload, threads: usize, p: &Point) -> Option<&'a Value> {
    rows.iter().find(|r| {
        r["workload"] == w.name()
            && r["allocator"] == "arenalloc"
            && r["threads"].as_u64() == Some(threads as u64)
            && r["level"] == p.level.id()
            && r["max_arenas"].as_u64() == Some(p.max_arenas as u64)
    })
}

/// The lock counts of one successful row (all its arenas summed, or one
/// arena's) and what is derived from them.
struct Locks {
    acquisitions: u64,
    contended: u64,
    remote_frees: u64,
    fallbacks: u64,
    /// Allocator calls the workload timed (0 for one arena's counts, which
    /// show no per-op figure).
    ops: u64,
}

impl Locks {
    /// `row`'s counters, summed over its arenas, and its op count.
    fn of(row: &Value) -> Locks {
        let arenas = row["arenas"].as_array().map_or(&[][..], Vec::as_slice);
        let sum = |k: &str| arenas.iter().map(|a| a[k].as_u64().unwrap_or(0)).sum();
        Locks {
            ops: row["ops"].as_u64().unwrap_or(0),
            ..Locks::count(sum)
        }
    }

    /// Reads each counter with `count` (one arena's, or a sum).
    fn count(count: impl Fn(&str) -> u64) -> Locks {
        Locks {
            acquisitions: count("lock_acquisitions"),
            contended: count("lock_contended"),
            remote_frees: count("remote_frees"),
            fallbacks: count("queue_full_fallbacks"),
            ops: 0,
        }
    }

    /// Percent of acquisitions that found the lock held.
    fn contended_pct(&self) -> f64 {
        100.0 * self.contended as f64 / self.acquisitions.max(1) as f64
    }

    /// Lock acquisitions per timed allocator call (module doc).
    fn per_op(&self) -> f64 {
        self.acquisitions as f64 / self.ops.max(1) as f64
    }

    /// The cells under [`LOCK_COLUMNS`].
    fn cells(&self) -> [String; 5] {
        [
            self.acquisitions.to_string(),
            self.contended.to_string(),
            format!("{:.2}", self.contended_pct()),
            self.remote_frees.to_string(),
            self.fallbacks.to_string(),
        ]
    }
}

/// The lock-count columns that end both sweep tables (all arenas summed,
/// and each arena).
const LOCK_COLUMNS: [&str; 5] = [
    "lock acquisitions",
    "contended",
    "contended %",
    "remote frees",
    "queue-full fallbacks",
];

/// The sweep of one workload, per thread count: throughput, lock
/// acquisitions per op and the lock counts at every point, then each
/// arena's counts.
pub(crate) fn print_sweep(w: Workload, plan: &Plan, rows: &[Value]) {
    let points = plan.sweep.clone().unwrap_or_default();
    for &n in &plan.threads {
        let mut t = Table::new(
            [
                "level",
                "max_arenas",
                "Mops/s",
                "÷ one lock",
                "curve",
                "locks/op",
            ]
            .into_iter()
            .chain(LOCK_COLUMNS),
        );
        let mut per_arena = Table::new(
            ["level", "max_arenas", "arena"]
                .into_iter()
                .chain(LOCK_COLUMNS),
        );
        let found = |p: &Point| find(rows, w, n, p).filter(|r| ok(r));
        let best = points
            .iter()
            .filter_map(found)
            .map(rate)
            .fold(0.0, f64::max);
        let one = points
            .iter()
            .find(|p| p.level == Level::OneLock)
            .and_then(found)
            .map(rate);
        for p in &points {
            let head = [p.level.title().to_string(), p.max_arenas.to_string()];
            let Some(r) = find(rows, w, n, p) else {
                continue;
            };
            if !ok(r) {
                let status = r["status"].as_str().unwrap_or("failed").to_string();
                t.rows.push(head.into_iter().chain([status]).collect());
                continue;
            }
            let locks = Locks::of(r);
            let bar = ((rate(r) / best.max(1.0)) * 30.0).round() as usize;
            let cells = [
                mops(rate(r)),
                one.map_or("-".into(), |o| format!("{:.2}", rate(r) / o)),
                "#".repeat(bar),
                format!("{:.3}", locks.per_op()),
            ];
            t.rows.push(
                head.clone()
                    .into_iter()
                    .chain(cells)
                    .chain(locks.cells())
                    .collect(),
            );
            for a in r["arenas"].as_array().into_iter().flatten() {
                let arena = Locks::count(|k| a[k].as_u64().unwrap_or(0));
                per_arena.rows.push(
                    head.clone()
                        .into_iter()
                        .chain([a["id"].to_string()])
                        .chain(arena.cells())
                        .collect(),
                );
            }
        }
        println!(
            "\n### lock granularity: {}, {}\n\n{}\n\n{}\n\nEach arena:\n\n{}",
            w.name(),
            threads_label(n),
            w.describe(),
            t.render(),
            per_arena.render()
        );
    }
}

/// The lesson in one table per thread count: every point, and for each
/// workload its throughput, contended % and lock acquisitions per op, side
/// by side.
pub(crate) fn print_lesson(plan: &Plan, rows: &[Value]) {
    let points = plan.sweep.clone().unwrap_or_default();
    let mut head = vec!["level".to_string(), "max_arenas".into()];
    for w in &plan.workloads {
        let w = w.name();
        head.extend([
            format!("{w} Mops/s"),
            format!("{w} contended %"),
            format!("{w} locks/op"),
        ]);
    }
    for &n in &plan.threads {
        let mut t = Table::new(head.clone());
        for p in &points {
            let mut cells = vec![p.level.title().to_string(), p.max_arenas.to_string()];
            for &w in &plan.workloads {
                match find(rows, w, n, p) {
                    Some(r) if ok(r) => {
                        let locks = Locks::of(r);
                        cells.extend([
                            mops(rate(r)),
                            format!("{:.2}", locks.contended_pct()),
                            format!("{:.3}", locks.per_op()),
                        ]);
                    }
                    Some(r) => {
                        let status = r["status"].as_str().unwrap_or("failed");
                        cells.extend([status.to_string(), "-".into(), "-".into()]);
                    }
                    None => cells.extend(["-".to_string(), "-".into(), "-".into()]),
                }
            }
            t.rows.push(cells);
        }
        println!(
            "\n### lock granularity, the three levels side by side: {}\n\n\
             One lock ({}), per-thread locked arenas ({}), owner caches ({}).\n\n{}",
            threads_label(n),
            Level::OneLock.config(),
            Level::LockedArenas.config(),
            Level::OwnerCaches.config(),
            t.render()
        );
    }
}

// ----- the picture ---------------------------------------------------------
//
//   title, subtitle, legend
//   +- panel per workload ----------------------------+
//   | Mops/s |  bars (level colours) + diamonds  | %  |
//   |        |  1  |  2  4  8  |  2  4  8         |    |
//   |        | one | locked    | owner caches     |    |
//   +-------------------------------------------------+
//   footer: how to reproduce

/// Plot area of one panel, in pixels.
const PLOT_W: f64 = 460.0;
const PLOT_H: f64 = 260.0;
/// Room left of a plot (left axis), right of it (right axis), above the
/// plots (title, legend, panel titles) and below (labels, axis title,
/// footer).
const LEFT: f64 = 70.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 130.0;
const BOTTOM: f64 = 110.0;
/// Space around the panels.
const MARGIN: f64 = 10.0;
/// One panel, axes included.
const PANEL_W: f64 = LEFT + PLOT_W + RIGHT;
/// Extra space between two levels' bars, in bar slots.
const LEVEL_GAP: f64 = 0.7;
/// A bar's share of its slot.
const BAR_SHARE: f64 = 0.62;

/// A contended share, short: "57%", "7.3%", "0.01%".
fn pct(p: f64) -> String {
    if p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// The lesson for `threads` threads as one SVG document (module doc): a
/// panel per workload of the plan, a bar per point.
pub(crate) fn render_svg(plan: &Plan, rows: &[Value], threads: usize) -> String {
    let points = plan.sweep.clone().unwrap_or_default();
    let workloads = &plan.workloads;
    let panels = workloads.len().max(1) as f64;
    let width = 2.0 * MARGIN + panels * PANEL_W;
    let height = TOP + PLOT_H + BOTTOM;
    // Bar centres, the same in every panel (relative to the plot's left).
    let mut units = 0.0;
    let mut slots = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        if i > 0 && points[i - 1].level != p.level {
            units += LEVEL_GAP;
        }
        slots.push(units + 0.5);
        units += 1.0;
    }
    let slot = PLOT_W / f64::max(units, 1.0);
    let centre = |i: usize| slots[i] * slot;
    let plot_x = |panel: usize| MARGIN + panel as f64 * PANEL_W + LEFT;
    let bottom = TOP + PLOT_H;
    let y_pct = |p: f64| bottom - p.clamp(0.0, 100.0) / 100.0 * PLOT_H;
    // Each panel's throughput axis.
    let tops: Vec<f64> = workloads
        .iter()
        .map(|&w| {
            let best = points
                .iter()
                .filter_map(|p| find(rows, w, threads, p).filter(|r| ok(r)))
                .map(|r| rate(r) / 1e6)
                .fold(0.0, f64::max);
            nice_ceil(best)
        })
        .collect();
    let names: Vec<&str> = workloads.iter().map(|w| w.name()).collect();
    let title = format!(
        "arenalloc lock granularity: {}, {}",
        names.join(" and "),
        threads_label(threads)
    );

    let mut s = String::with_capacity(24 << 10);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", esc(&title));
    let _ = writeln!(
        s,
        r##"<rect width="{width:.0}" height="{height:.0}" fill="#ffffff"/>"##
    );

    // Title, subtitle and legend.
    let _ = writeln!(s, r#"<g id="title">"#);
    let _ = writeln!(
        s,
        r#"<text x="{MARGIN}" y="26" font-size="18" font-weight="bold">{}</text>"#,
        esc(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="46" fill="#444">Bars: throughput (left axis, millions of allocator calls per second). Diamonds: share of lock acquisitions that found the lock held (right axis).</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="62" fill="#444">From one lock for every thread, to a locked arena per thread, to a lock-free owner cache in front of each arena.</text>"##
    );
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, r#"<g id="legend">"#);
    let mut x = MARGIN;
    for level in Level::ALL {
        let label = format!("{}: {}", level.title(), level.config());
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="76" width="14" height="14" fill="{}"/><text x="{:.1}" y="88">{}</text>"#,
            level.colour(),
            x + 19.0,
            esc(&label)
        );
        x += 19.0 + 6.6 * label.chars().count() as f64 + 18.0;
    }
    let _ = writeln!(
        s,
        r##"<path d="{}" fill="#ffffff" stroke="#222222" stroke-width="1.5"/><text x="{:.1}" y="88">contended %</text>"##,
        diamond(x + 7.0, 83.0),
        x + 19.0
    );
    let _ = writeln!(s, "</g>");

    // Axes, grid and titles of each panel.
    for (i, w) in workloads.iter().enumerate() {
        let x0 = plot_x(i);
        let x1 = x0 + PLOT_W;
        let top = tops[i];
        let step = top / 5.0;
        let _ = writeln!(s, r#"<g id="panel-{}">"#, w.name());
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold" text-anchor="middle">{}, {}</text>"#,
            x0 + PLOT_W / 2.0,
            TOP - 14.0,
            w.name(),
            threads_label(threads)
        );
        for k in 0..=5 {
            let y = bottom - PLOT_H * k as f64 / 5.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><text x="{:.1}" y="{:.1}" fill="#444">{}%</text>"##,
                x0 - 6.0,
                y + 4.0,
                tick(step * k as f64, step),
                x1 + 16.0,
                y + 4.0,
                20 * k
            );
        }
        let _ = writeln!(
            s,
            r##"<path d="M{x0:.1},{TOP:.1} V{bottom:.1} H{x1:.1} V{TOP:.1}" fill="none" stroke="#222222"/>"##
        );
        let mid = TOP + PLOT_H / 2.0;
        let _ = writeln!(
            s,
            r#"<text transform="translate({:.1},{mid:.1}) rotate(-90)" text-anchor="middle">throughput, Mops/s (bars)</text>"#,
            x0 - 48.0
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({:.1},{mid:.1}) rotate(90)" text-anchor="middle" fill="#444">lock contended, % of acquisitions (diamonds)</text>"##,
            x1 + 64.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">max_arenas, grouped by level</text>"#,
            x0 + PLOT_W / 2.0,
            bottom + 60.0
        );
        let _ = writeln!(s, "</g>");
    }

    // One group per level: its bars, markers and labels in every panel.
    for level in Level::ALL {
        let colour = level.colour();
        let _ = writeln!(s, r#"<g id="level-{}">"#, level.id());
        for (i, &w) in workloads.iter().enumerate() {
            let x0 = plot_x(i);
            let mine: Vec<usize> = (0..points.len())
                .filter(|&k| points[k].level == level)
                .collect();
            if let (Some(&first), Some(&last)) = (mine.first(), mine.last()) {
                let (l, r) = (
                    x0 + centre(first) - slot / 2.0,
                    x0 + centre(last) + slot / 2.0,
                );
                let _ = writeln!(
                    s,
                    r#"<path d="M{:.1},{:.1} V{:.1} H{:.1} V{:.1}" fill="none" stroke="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold" fill="{colour}">{}</text>"#,
                    l + 4.0,
                    bottom + 21.0,
                    bottom + 25.0,
                    r - 4.0,
                    bottom + 21.0,
                    (l + r) / 2.0,
                    bottom + 40.0,
                    level.title()
                );
            }
            for &k in &mine {
                let p = &points[k];
                let cx = x0 + centre(k);
                let _ = writeln!(
                    s,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    bottom + 15.0,
                    p.max_arenas
                );
                let what = format!(
                    "{}, {}, max_arenas {}",
                    w.name(),
                    level.title(),
                    p.max_arenas
                );
                match find(rows, w, threads, p) {
                    Some(r) if ok(r) => {
                        let locks = Locks::of(r);
                        let m = rate(r) / 1e6;
                        let h = (m / tops[i]).min(1.0) * PLOT_H;
                        let bw = slot * BAR_SHARE;
                        let _ = writeln!(
                            s,
                            r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}" fill="{colour}"><title>{}: {} Mops/s, {:.2} % of {} lock acquisitions contended, {:.3} locks/op</title></rect>"#,
                            cx - bw / 2.0,
                            bottom - h,
                            esc(&what),
                            mops(rate(r)),
                            locks.contended_pct(),
                            locks.acquisitions,
                            locks.per_op()
                        );
                        let _ = writeln!(
                            s,
                            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                            bottom - h - 4.0,
                            mops(rate(r))
                        );
                        let y = y_pct(locks.contended_pct());
                        let _ = writeln!(
                            s,
                            r##"<path d="{}" fill="#ffffff" stroke="#222222" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="9" fill="#222222">{}</text>"##,
                            diamond(cx, y),
                            cx + 13.0,
                            y - 4.0,
                            pct(locks.contended_pct())
                        );
                    }
                    Some(r) => {
                        let status = r["status"].as_str().unwrap_or("failed");
                        let _ = writeln!(
                            s,
                            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{colour}">{}<title>{}: {}</title></text>"#,
                            bottom - 6.0,
                            esc(status),
                            esc(&what),
                            esc(r["error"].as_str().unwrap_or(""))
                        );
                    }
                    None => {}
                }
            }
        }
        let _ = writeln!(s, "</g>");
    }

    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="{:.1}" font-size="11" fill="#666666">cargo run --release -- --sweep-arenas ({} run, {} s per point, {}); {} cores. Hover a bar for its numbers.</text>"##,
        height - 12.0,
        plan.mode(),
        plan.seconds,
        match plan.repeat {
            1 => "one run each".to_string(),
            n => format!("median of {n} runs"),
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    s.push_str("</svg>\n");
    s
}

/// A diamond marker's path, centred on (`x`, `y`).
fn diamond(x: f64, y: f64) -> String {
    format!("M{x:.1},{:.1} l5,5 l-5,5 l-5,-5 z", y - 5.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contended_shares_are_short() {
        assert_eq!(pct(57.24), "57%");
        assert_eq!(pct(7.34), "7.3%");
        assert_eq!(pct(0.013), "0.01%");
    }
}
