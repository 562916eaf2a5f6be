//! What the parent prints: a header naming the machine and the mode, a
//! table per workload (ops/s per thread count and peak RSS, each peer's
//! ratio to arenalloc), the fragmentation numbers, a summary of the
//! ratios. The lock-granularity sweep's tables are `sweep.rs`'s, the
//! server workload's `timeline.rs`'s, the service workload's (requests/s)
//! `service.rs`'s, built with this file's [`Table`].
//! The summary leaves the server workload out: it measures memory over
//! time, and its bursts' throughput is mostly page faults; and the
//! latency workload, whose figures are latency percentiles (its own
//! table: p50, p99, p99.9 and max of malloc and of free, the worst
//! thread's) and whose ops/s is mostly its pauses.
//!
//! Every table is GitHub markdown with padded columns, readable in a
//! terminal and pasteable into the README as is. A ratio is always
//! *peer ÷ arenalloc*: above 1 the peer has more throughput (or uses more
//! memory), below 1 less.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::latency;
use super::levels;
use super::plan::Plan;
use super::table::{mib, mops, ok, rate, threads_label, Table};
use super::timeline;
use super::workloads::Workload;

fn bytes(row: &Value, key: &str) -> u64 {
    row[key].as_u64().unwrap_or(0)
}

/// The row of `alloc` at `threads` in a comparison (not sweep) run.
fn find<'a>(rows: &'a [Value], alloc: &str, threads: usize) -> Option<&'a Value> {
    rows.iter().find(|r| {
        r["allocator"] == alloc
            && r["threads"].as_u64() == Some(threads as u64)
            && r["max_arenas"].is_null()
    })
}

/// "12.3", "12.3 ×0.52", or why there is no number.
fn rate_cell(row: Option<&Value>, base: Option<&Value>) -> String {
    let Some(row) = row else {
        return "-".into();
    };
    if !ok(row) {
        return row["status"].as_str().unwrap_or("failed").to_string();
    }
    match base.filter(|b| ok(b) && !std::ptr::eq(*b, row)) {
        Some(b) if rate(b) > 0.0 => format!("{} ×{:.2}", mops(rate(row)), rate(row) / rate(b)),
        _ => mops(rate(row)),
    }
}

fn rss_cell(row: Option<&Value>, base: Option<&Value>, key: &str) -> String {
    let Some(row) = row.filter(|r| ok(r)) else {
        return "-".into();
    };
    let b = base
        .filter(|b| ok(b) && !std::ptr::eq(*b, row))
        .map(|b| bytes(b, key))
        .filter(|&b| b > 0);
    match b {
        Some(b) => format!(
            "{} ×{:.2}",
            mib(bytes(row, key)),
            bytes(row, key) as f64 / b as f64
        ),
        None => mib(bytes(row, key)),
    }
}

/// The first lines of the report: mode, machine, date.
pub(crate) fn header(plan: &Plan) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let threads: Vec<String> = plan.threads.iter().map(|t| t.to_string()).collect();
    let what = if let Some(points) = &plan.sweep {
        format!(
            "lock-granularity sweep (arenalloc: {})",
            levels::describe(points)
        )
    } else {
        format!("{} allocator(s)", plan.allocators.len())
    };
    format!(
        "## arenalloc comparison driver ({} run, {})\n\n\
         {} workload(s) × threads {} × {what}; {} s per throughput measurement, \
         {} run(s) per combination (median), each in a fresh process.\n\
         Machine: {cores} cores, {cpu}; load average {load}; {} UTC.\n\
         Cells: Mops/s (millions of allocator calls per second) and, for peers, \
         ×(peer ÷ arenalloc): above 1 the peer is faster.\n",
        plan.mode(),
        today(),
        plan.workloads.len(),
        threads.join(", "),
        plan.seconds,
        plan.repeat,
        now(),
    )
}

/// Today's date, `YYYY-MM-DD` (UTC).
fn today() -> String {
    now()[..10].to_string()
}

/// The current time, `YYYY-MM-DD HH:MM` (UTC).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// Folds repeated runs of a combination into one row: the run with the
/// median ops/s among those that succeeded (all of them listed in
/// `ops_per_sec_runs`), or the first failure if none did. A latency row's
/// `malloc_ns` and `free_ns` become the median of each statistic over the
/// runs that succeeded (each run's in `malloc_ns_runs`, `free_ns_runs`).
pub(crate) fn medians(runs: Vec<Value>) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
    for r in runs {
        let key = format!(
            "{}/{}/{}/{}/{}/{}",
            r["workload"],
            r["allocator"],
            r["threads"],
            r["level"],
            r["max_arenas"],
            r["owner_cache"]
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|mut g| {
            let n = g.len();
            let (mut good, bad): (Vec<Value>, Vec<Value>) = g.drain(..).partition(ok);
            if good.is_empty() {
                return bad.into_iter().next().unwrap_or(Value::Null);
            }
            good.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let all: Vec<f64> = good.iter().map(rate).collect();
            let latencies = (good[0]["workload"] == Workload::Latency.name())
                .then(|| ["malloc_ns", "free_ns"].map(|k| (k, median_stats(&good, k))));
            let mut row = good.swap_remove(good.len() / 2);
            for (k, (median, runs)) in latencies.into_iter().flatten() {
                if n > 1 {
                    row[k] = median;
                    row[format!("{k}_runs")] = runs;
                }
            }
            if n > 1 {
                row["runs"] = json!(n);
                row["ops_per_sec_runs"] = json!(all);
            }
            row
        })
        .collect()
}

/// The median of each latency statistic (`latency::STATS`) of `key`
/// over `runs` (the upper median of an even count, as for ops/s: ordered
/// statistics stay ordered), and the runs' own values.
fn median_stats(runs: &[Value], key: &str) -> (Value, Value) {
    let mut out = serde_json::Map::new();
    for stat in latency::STATS {
        let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key][stat].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        out.insert(
            stat.into(),
            json!(v.get(v.len() / 2).copied().unwrap_or(0.0)),
        );
    }
    let calls: Vec<u64> = runs
        .iter()
        .filter_map(|r| r[key]["calls"].as_u64())
        .collect();
    let mut sorted = calls.clone();
    sorted.sort_unstable();
    out.insert(
        "calls".into(),
        json!(sorted.get(sorted.len() / 2).copied().unwrap_or(0)),
    );
    let each: Vec<Value> = runs.iter().map(|r| r[key].clone()).collect();
    (Value::Object(out), Value::Array(each))
}

/// Nanoseconds, to 2-3 significant digits: "35 ns", "1.2 µs", "3.40 ms".
pub(crate) fn nanos(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// The latency workload's table: per allocator and thread count, the
/// worst thread's p50, p99, p99.9 and max of malloc and of free.
fn print_latency(plan: &Plan, rows: &[Value]) {
    let mut head = vec!["allocator".to_string(), "threads".to_string()];
    for call in ["malloc", "free"] {
        for stat in ["p50", "p99", "p99.9", "max"] {
            head.push(format!("{call} {stat}"));
        }
    }
    let mut t = Table::new(head);
    for &n in &plan.threads {
        for &a in &plan.allocators {
            let Some(r) = find(rows, a, n) else {
                continue;
            };
            let mut cells = vec![a.to_string(), n.to_string()];
            if !ok(r) {
                cells.push(r["status"].as_str().unwrap_or("failed").to_string());
            } else {
                for key in ["malloc_ns", "free_ns"] {
                    for stat in latency::STATS {
                        cells.push(r[key][stat].as_f64().map_or("-".into(), nanos));
                    }
                }
            }
            t.rows.push(cells);
        }
    }
    let runs = if plan.repeat > 1 {
        format!(", each the median of {} runs", plan.repeat)
    } else {
        String::new()
    };
    println!(
        "\nLatency per call (the worst thread's, statistic by statistic{runs}; \
         percentiles to within 1/16; max is one call):\n\n{}",
        t.render()
    );
}

/// The table of one workload (and, for fragmentation, its memory table).
pub(crate) fn print_workload(w: Workload, plan: &Plan, rows: &[Value]) {
    if w == Workload::Server {
        println!("\n### {}\n\n{}", w.name(), w.describe());
        timeline::print_table(plan, rows);
        return;
    }
    if w == Workload::Latency {
        println!("\n### {}\n\n{}", w.name(), w.describe());
        print_latency(plan, rows);
        return;
    }
    if w == Workload::Service {
        println!("\n### {}\n\n{}", w.name(), w.describe());
        super::service::print_table(plan, rows);
        return;
    }
    let max_t = plan.threads.iter().copied().max().unwrap_or(1);
    let mut head = vec!["allocator".to_string()];
    head.extend(plan.threads.iter().map(|&t| threads_label(t)));
    head.push(format!("peak RSS, {}", threads_label(max_t)));
    let mut t = Table::new(head);
    for &a in &plan.allocators {
        let mut cells = vec![a.to_string()];
        for &n in &plan.threads {
            let base = find(rows, "arenalloc", n);
            cells.push(rate_cell(find(rows, a, n), base));
        }
        cells.push(rss_cell(
            find(rows, a, max_t),
            find(rows, "arenalloc", max_t),
            "peak_rss_bytes",
        ));
        t.rows.push(cells);
    }
    println!("\n### {}\n\n{}\n\n{}", w.name(), w.describe(), t.render());
    if w.prints_locks() {
        let locks = super::service::lock_acquisitions(w, &plan.threads, rows, threads_label);
        println!("\n{}", locks.trim_start());
    }
    if w == Workload::Fragmentation {
        print_fragmentation(plan, rows);
    }
}

/// Memory after each fragmentation phase, per allocator and thread count.
fn print_fragmentation(plan: &Plan, rows: &[Value]) {
    let mut t = Table::new([
        "allocator",
        "threads",
        "peak live",
        "peak RSS",
        "RSS ÷ live",
        "RSS after free",
        "live after free",
        "final RSS",
        "RSS 1 s after free",
        "1 s ÷ live",
    ]);
    for &n in &plan.threads {
        for &a in &plan.allocators {
            let Some(r) = find(rows, a, n).filter(|r| ok(r)) else {
                continue;
            };
            let live = bytes(r, "peak_live_bytes").max(1);
            let base = bytes(r, "base_rss_bytes");
            let peak = bytes(r, "peak_rss_bytes");
            let later = bytes(r, "rss_1s_after_free_bytes");
            t.rows.push(vec![
                a.to_string(),
                n.to_string(),
                mib(live),
                mib(peak),
                format!("{:.2}", peak.saturating_sub(base) as f64 / live as f64),
                mib(bytes(r, "rss_after_free_bytes")),
                mib(bytes(r, "live_after_free_bytes")),
                mib(bytes(r, "final_rss_bytes")),
                mib(later),
                format!("{:.2}", later.saturating_sub(base) as f64 / live as f64),
            ]);
        }
    }
    println!(
        "\nFragmentation memory (RSS ÷ live: peak RSS above the process's RSS at start, over peak live bytes; \
         RSS after free: after the free phase; final RSS: after allocating again; \
         RSS 1 s after free: 1 s after every block was freed, and its ÷ live likewise):\n\n{}",
        t.render()
    );
}

/// Each peer against arenalloc over every workload × thread count (but
/// the server and latency workloads': module doc); empty when no peer has
/// a pair.
pub(crate) fn summary(plan: &Plan, rows: &[Value]) -> String {
    let mut t = Table::new([
        "allocator",
        "throughput ÷ arenalloc (geo-mean)",
        "faster in",
        "slower in",
        "peak RSS ÷ arenalloc (geo-mean)",
    ]);
    for &a in plan.allocators.iter().filter(|&&a| a != "arenalloc") {
        let (mut log_rate, mut log_rss, mut n, mut faster) = (0.0, 0.0, 0, 0);
        let throughput = |w: &&Workload| !matches!(w, Workload::Server | Workload::Latency);
        for &w in plan.workloads.iter().filter(throughput) {
            for &th in &plan.threads {
                let pick = |name: &str| {
                    rows.iter().find(|r| {
                        r["workload"] == w.name()
                            && r["allocator"] == name
                            && r["threads"].as_u64() == Some(th as u64)
                    })
                };
                let (Some(p), Some(b)) = (pick(a), pick("arenalloc")) else {
                    continue;
                };
                if !ok(p) || !ok(b) || rate(b) <= 0.0 || rate(p) <= 0.0 {
                    continue;
                }
                let ratio = rate(p) / rate(b);
                log_rate += ratio.ln();
                let (rp, rb) = (bytes(p, "peak_rss_bytes"), bytes(b, "peak_rss_bytes"));
                log_rss += (rp.max(1) as f64 / rb.max(1) as f64).ln();
                n += 1;
                faster += usize::from(ratio > 1.0);
            }
        }
        if n == 0 {
            continue;
        }
        t.rows.push(vec![
            a.to_string(),
            format!("{:.2}", (log_rate / n as f64).exp()),
            format!("{faster} of {n}"),
            format!("{} of {n}", n - faster),
            format!("{:.2}", (log_rss / n as f64).exp()),
        ]);
    }
    if t.rows.is_empty() {
        return String::new();
    }
    format!(
        "\n### summary: each peer against arenalloc over every workload × thread count\n\n{}\n",
        t.render()
    )
}
