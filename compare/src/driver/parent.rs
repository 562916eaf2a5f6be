//! The parent side: plans the jobs, runs each in a fresh child process
//! (one at a time, each with a timeout), shows progress on stderr, and
//! hands the results to `report.rs` (to `sweep.rs` for `--sweep-arenas`,
//! which also writes the lesson's picture, `--lock-svg`; to `timeline.rs`
//! for the server workload's picture, `--rss-svg`).
//!
//! The server workload runs at the plan's largest thread count only (its
//! result is one RSS timeline per allocator); every other workload runs at
//! every thread count. A workload may leave an allocator out unless
//! `--alloc` names it ([`Workload::left_out`]: the server workload and
//! linked_list, whose frees are quadratic there; the service workload and
//! talc, which cannot be a global allocator and whose child refuses it).
//! A service child is
//! told its allocator twice: `--alloc` and the environment variable that
//! makes it the child's global allocator (`global.rs`); every other child
//! runs with that variable removed.
//!
//! Invariant: every planned job yields exactly one row — the child's JSON
//! line, or a failed row saying why (exit status and the end of its
//! stderr, or "timeout" after `--timeout` seconds, when it is killed).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::global;
use super::levels::Point;
use super::plan::Plan;
use super::report;
use super::svg::write_svg;
use super::sweep;
use super::table::threads_label;
use super::timeline;
use super::workloads::{Scale, Workload};
use crate::Args;

/// One child to run.
struct Spec {
    workload: Workload,
    alloc: &'static str,
    threads: usize,
    /// The sweep's point, if this is a sweep.
    point: Option<Point>,
    svg: Option<PathBuf>,
}

/// Runs the plan; returns the exit status (1 if any job failed).
pub(crate) fn main(args: &Args) -> i32 {
    let plan = match Plan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("arenalloc: {e}");
            return 2;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("arenalloc: cannot find my own executable: {e}");
            return 2;
        }
    };
    let heap_map = absolute(&plan.heap_map);
    let variants: Vec<Option<Point>> = match &plan.sweep {
        Some(points) => points.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    let per_thread_count = plan.repeat * variants.len();
    let total: usize = plan
        .workloads
        .iter()
        .map(|&w| plan.threads_of(w).len() * plan.allocators_of(w).len() * per_thread_count)
        .sum();

    println!("{}", report::header(&plan));
    let pb = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} (eta {eta}) {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut all = Vec::new();
    let mut map_written = false;
    let svg_threads = plan.threads.iter().copied().max().unwrap_or(1);
    for &workload in &plan.workloads {
        let mut runs: Vec<Value> = Vec::new();
        for threads in plan.threads_of(workload) {
            for rep in 0..plan.repeat {
                for alloc in plan.allocators_of(workload) {
                    for &v in &variants {
                        let svg = (plan.sweep.is_none()
                            && workload == Workload::Fragmentation
                            && alloc == "arenalloc"
                            && threads == svg_threads
                            && rep == 0)
                            .then(|| heap_map.clone());
                        map_written |= svg.is_some();
                        let spec = Spec {
                            workload,
                            alloc,
                            threads,
                            point: v,
                            svg,
                        };
                        let arenas = v
                            .map(|p| {
                                format!(
                                    " {} max_arenas={} owner_cache={}",
                                    p.level.id(),
                                    p.max_arenas,
                                    p.owner_cache
                                )
                            })
                            .unwrap_or_default();
                        pb.set_message(format!("{} {alloc}{arenas} x{threads}", workload.name()));
                        let row = run_child(&exe, &spec, &plan);
                        if row["status"] != "ok" {
                            pb.suspend(|| {
                                eprintln!(
                                    "arenalloc: {} {alloc}{arenas} x{threads}: {} ({})",
                                    workload.name(),
                                    row["status"].as_str().unwrap_or("?"),
                                    row["error"].as_str().unwrap_or("")
                                );
                            });
                        }
                        runs.push(row);
                        pb.inc(1);
                    }
                }
            }
        }
        let rows = report::medians(runs);
        pb.suspend(|| {
            if plan.sweep.is_some() {
                sweep::print_sweep(workload, &plan, &rows);
            } else {
                report::print_workload(workload, &plan, &rows);
            }
        });
        all.extend(rows);
    }
    pb.finish_and_clear();
    let mut lesson_drawn = false;
    if plan.sweep.is_some() {
        sweep::print_lesson(&plan, &all);
        let svg = sweep::render_svg(&plan, &all, svg_threads);
        if let Err(e) = write_svg(&plan.lock_svg, &svg) {
            eprintln!("arenalloc: cannot write {}: {e}", plan.lock_svg.display());
            return 2;
        }
        lesson_drawn = true;
    } else {
        let summary = report::summary(&plan, &all);
        if !summary.is_empty() {
            println!("{summary}");
        }
    }
    let timeline_drawn = plan.sweep.is_none() && plan.workloads.contains(&Workload::Server);
    if timeline_drawn {
        let svg = timeline::render_svg(&plan, &all, svg_threads);
        if let Err(e) = write_svg(&plan.rss_svg, &svg) {
            eprintln!("arenalloc: cannot write {}: {e}", plan.rss_svg.display());
            return 2;
        }
    }
    let failed = all.iter().filter(|r| r["status"] != "ok").count();
    println!(
        "{} result(s), {failed} failed, in {:.0?}.",
        all.len(),
        started.elapsed()
    );
    if map_written && heap_map.exists() {
        println!(
            "Heap map of arenalloc after the fragmentation workload's free phase ({} threads): {}",
            svg_threads,
            plan.heap_map.display()
        );
    }
    if lesson_drawn {
        println!(
            "Lock granularity, the three levels drawn ({}): {}",
            threads_label(svg_threads),
            plan.lock_svg.display()
        );
    }
    if timeline_drawn {
        println!(
            "RSS over time, the server workload ({}): {}",
            threads_label(svg_threads),
            plan.rss_svg.display()
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&Value::Array(all)).expect("json");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("arenalloc: cannot write {}: {e}", path.display());
            return 2;
        }
        println!("JSON: {}", path.display());
    }
    i32::from(failed > 0)
}

/// `path` made absolute against the current directory (children are
/// started in the same directory, but a message should name the file).
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Runs one child and returns its row (module doc); a sweep's row also
/// names its level (`level`).
fn run_child(exe: &Path, spec: &Spec, plan: &Plan) -> Value {
    let mut row = child_row(exe, spec, plan);
    if let (Some(p), Some(obj)) = (spec.point, row.as_object_mut()) {
        obj.insert("level".into(), json!(p.level.id()));
    }
    row
}

/// The child's JSON line, or a failed row saying why.
fn child_row(exe: &Path, spec: &Spec, plan: &Plan) -> Value {
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .args(["--alloc", spec.alloc])
        .args(["--workload", spec.workload.name()])
        .args(["--threads", &spec.threads.to_string()])
        .args(["--seconds", &plan.seconds.to_string()])
        .args([
            "--scale",
            match plan.scale {
                Scale::Quick => "quick",
                Scale::Default => "default",
                Scale::Full => "full",
            },
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = spec.point {
        cmd.args(["--max-arenas", &p.max_arenas.to_string()])
            .args(["--owner-cache", &p.owner_cache.to_string()]);
    }
    if let Some(svg) = &spec.svg {
        cmd.arg("--svg").arg(svg);
    }
    if spec.workload.installs_global() {
        cmd.env(global::ENV, spec.alloc);
    } else {
        cmd.env_remove(global::ENV);
    }
    let failed = |status: &str, error: String| {
        let mut row = json!({
            "workload": spec.workload.name(),
            "allocator": spec.alloc,
            "threads": spec.threads,
            "ops_per_sec": 0.0,
            "peak_rss_bytes": 0,
            "status": status,
            "error": error,
        });
        if let Some(p) = spec.point {
            row["max_arenas"] = json!(p.max_arenas);
            row["owner_cache"] = json!(p.owner_cache);
        }
        row
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed("failed", format!("spawn: {e}")),
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + plan.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let tail = stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    match status {
        None => failed(
            "timeout",
            format!("killed after {:.0} s", plan.timeout.as_secs_f64()),
        ),
        Some(s) if s.success() => stdout
            .lines()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
            .unwrap_or_else(|| failed("failed", "no JSON line from the child".into())),
        Some(s) => failed("failed", format!("{s}: {tail}")),
    }
}
