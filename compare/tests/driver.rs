//! The comparison driver (`cargo run --release`, the `arenalloc-compare`
//! binary), run as a user would: `--quick --json` on the fragmentation
//! workload must give a row for every allocator with positive throughput
//! and RSS, and write a heap map that parses as SVG with one
//! `<g id="arena-N">` group per arena arenalloc reports; a child that
//! outlives its timeout must become a failed row, not a hung driver; the
//! default run must include every workload (`large` too) and keep the keys
//! its rows always had; `--sweep-arenas` must measure and name its three
//! levels and draw them as an SVG with a group of bars per level; the
//! server workload's rows must carry RSS samples in time order and each
//! burst's figures, and its timeline must be an SVG with one line per
//! allocator measured; the latency workload (by name only) must give, per
//! thread and for the worst thread, positive malloc and free percentiles
//! in order (p50 <= p99 <= p99.9 <= max), and a table of them; the
//! service workload must answer requests on arenalloc and a peer, each
//! installed as the child's global allocator, with a peak RSS and, for
//! arenalloc, a finite count of lock acquisitions per 1,000 allocations,
//! and a service child must refuse an allocator it cannot install or
//! that is not the one installed; the bulk workloads (by name only) must
//! give whole rounds of allocator calls on arenalloc and a peer, and for
//! arenalloc the allocations its heap counted and its lock acquisitions
//! per 1,000 of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ALLOCATORS: [&str; 7] = [
    "arenalloc",
    "arenalloc-1lock",
    "system",
    "mimalloc",
    "jemalloc",
    "talc",
    "linked_list",
];

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("driver-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn driver(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arenalloc-compare"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the driver")
}

fn explain(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn quick_json_has_every_allocator_and_the_heap_map_one_group_per_arena() {
    let dir = scratch("quick");
    let out = driver(
        &dir,
        &[
            "--quick",
            "--workload",
            "fragmentation",
            "--threads",
            "2",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("### fragmentation"), "{}", explain(&out));
    assert!(stdout.contains("RSS 1 s after free"), "{}", explain(&out));

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).expect("out.json"))
            .expect("out.json is JSON");
    let rows = json.as_array().expect("a JSON list");
    assert_eq!(rows.len(), ALLOCATORS.len(), "{json:#}");
    for name in ALLOCATORS {
        let row = rows
            .iter()
            .find(|r| r["allocator"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {json:#}"));
        assert_eq!(row["status"], "ok", "{row:#}");
        assert_eq!(row["workload"], "fragmentation", "{row:#}");
        assert_eq!(row["threads"], 2, "{row:#}");
        let rate = row["ops_per_sec"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "{name}: ops_per_sec {rate}");
        for key in [
            "peak_rss_bytes",
            "peak_live_bytes",
            "rss_after_free_bytes",
            "rss_1s_after_free_bytes",
        ] {
            let v = row[key].as_u64().unwrap_or(0);
            assert!(v > 0, "{name}: {key} = {v}");
        }
        let later = row["rss_1s_after_free_bytes"].as_u64().unwrap();
        assert!(later <= row["peak_rss_bytes"].as_u64().unwrap(), "{row:#}");
        // The live set is 16 MiB in quick mode; every byte is written.
        assert!(
            row["peak_rss_bytes"].as_u64().unwrap() >= 16 << 20,
            "{row:#}"
        );
    }

    let arenalloc = rows.iter().find(|r| r["allocator"] == "arenalloc").unwrap();
    assert_eq!(arenalloc["check"], "ok");
    let arenas = arenalloc["arenas"].as_array().expect("arenalloc's arenas");
    assert!(
        arenas.len() >= 2,
        "2 threads, per-thread arenas: {arenalloc:#}"
    );

    let svg = std::fs::read_to_string(dir.join("heap-map.svg")).expect("heap-map.svg");
    let groups = svg_arena_groups(&svg).unwrap_or_else(|e| panic!("heap-map.svg: {e}"));
    let ids: Vec<u64> = arenas.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(groups, ids, "one <g id=\"arena-N\"> per arena");
}

/// Every workload of a default run, in report order.
const WORKLOADS: [&str; 11] = [
    "larson",
    "prodcons",
    "cache-scratch",
    "cache-thrash",
    "random",
    "realloc",
    "fragmentation",
    "thread-churn",
    "large",
    "server",
    "service",
];

/// The keys every successful row had before `large` and the three-level
/// sweep were added; rows may gain keys, never lose these.
const ROW_KEYS: [&str; 9] = [
    "allocator",
    "base_rss_bytes",
    "ops",
    "ops_per_sec",
    "peak_rss_bytes",
    "seconds",
    "status",
    "threads",
    "workload",
];
/// And arenalloc's rows: the per-arena counts and the `check()` verdict.
const ARENALLOC_KEYS: [&str; 2] = ["arenas", "check"];
const ARENA_KEYS: [&str; 9] = [
    "adoptions",
    "allocations",
    "chunks",
    "frees",
    "id",
    "lock_acquisitions",
    "lock_contended",
    "queue_full_fallbacks",
    "remote_frees",
];
const FRAGMENTATION_KEYS: [&str; 6] = [
    "final_rss_bytes",
    "live_after_free_bytes",
    "peak_live_bytes",
    "rss_1s_after_free_bytes",
    "rss_after_alloc_bytes",
    "rss_after_free_bytes",
];
/// A server row's summary figures and samples.
const SERVER_KEYS: [&str; 7] = [
    "bursts",
    "peak_live_bytes",
    "peak_rss_bytes",
    "rss_before_bytes",
    "sample_every_ms",
    "sample_fields",
    "samples",
];
/// Each burst's figures in a server row.
const BURST_KEYS: [&str; 10] = [
    "allocated_s",
    "freed_s",
    "peak_live_bytes",
    "rss_100ms_at_s",
    "rss_100ms_bytes",
    "rss_100ms_per_live",
    "rss_1s_at_s",
    "rss_1s_bytes",
    "rss_1s_per_live",
    "start_s",
];

/// Reads the `--json` list a run wrote into `dir`.
fn json_rows(dir: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(name)).expect("the --json file");
    let json: Value = serde_json::from_str(&text).expect("the --json file is JSON");
    json.as_array().expect("a JSON list").clone()
}

fn missing_keys(row: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|k| row.get(**k).is_none())
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn the_default_run_has_every_workload_and_its_rows_keep_their_keys() {
    let dir = scratch("default");
    let out = driver(
        &dir,
        &[
            "--quick",
            "--alloc",
            "arenalloc,system",
            "--threads",
            "1",
            "--seconds",
            "0.02",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = json_rows(&dir, "out.json");
    let ran: Vec<&str> = rows
        .iter()
        .filter(|r| r["allocator"] == "system")
        .map(|r| r["workload"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ran, WORKLOADS, "one row per workload, in report order");
    assert_eq!(rows.len(), 2 * WORKLOADS.len());
    for w in WORKLOADS {
        assert!(stdout.contains(&format!("\n### {w}\n")), "no table for {w}");
    }
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:#}");
        let mut keys = ROW_KEYS.to_vec();
        if row["allocator"] == "arenalloc" {
            keys.extend(ARENALLOC_KEYS);
        }
        if row["workload"] == "fragmentation" {
            keys.extend(FRAGMENTATION_KEYS);
        }
        if row["workload"] == "server" {
            keys.extend(SERVER_KEYS);
        }
        if row["workload"] == "server" {
            check_server_row(row);
        }
        assert_eq!(missing_keys(row, &keys), Vec::<String>::new(), "{row:#}");
        for arena in row["arenas"].as_array().into_iter().flatten() {
            assert_eq!(missing_keys(arena, &ARENA_KEYS), Vec::<String>::new());
        }
        // Only the sweep names a level or an arena limit.
        for k in ["level", "max_arenas", "owner_cache"] {
            assert!(row.get(k).is_none(), "{k} in a comparison row: {row:#}");
        }
    }
}

#[test]
fn the_large_workload_reports_throughput_and_peak_rss_for_every_allocator() {
    let dir = scratch("large");
    let out = driver(
        &dir,
        &[
            "--quick",
            "--workload",
            "large",
            "--threads",
            "2",
            "--seconds",
            "0.05",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\n### large\n"), "{}", explain(&out));
    assert!(
        stdout.contains("2-8 MiB"),
        "the table says what it measures"
    );
    let rows = json_rows(&dir, "out.json");
    assert_eq!(rows.len(), ALLOCATORS.len(), "{rows:#?}");
    for name in ALLOCATORS {
        let row = rows
            .iter()
            .find(|r| r["allocator"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {rows:#?}"));
        assert_eq!(row["status"], "ok", "{row:#}");
        assert_eq!(row["workload"], "large");
        assert_eq!(row["threads"], 2);
        // Each op is one alloc or free of 2-8 MiB: at least one of each.
        assert!(row["ops"].as_u64().unwrap_or(0) >= 2, "{row:#}");
        assert!(row["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{row:#}");
        let (peak, base) = (
            row["peak_rss_bytes"].as_u64().unwrap_or(0),
            row["base_rss_bytes"].as_u64().unwrap_or(0),
        );
        assert!(peak > 0 && peak >= base, "{name}: peak {peak}, base {base}");
    }
    let arenalloc = rows.iter().find(|r| r["allocator"] == "arenalloc").unwrap();
    assert_eq!(arenalloc["check"], "ok", "{arenalloc:#}");
}

#[test]
fn the_sweep_names_its_three_levels_and_draws_a_group_of_bars_per_level() {
    let dir = scratch("sweep");
    let out = driver(
        &dir,
        &[
            "--sweep-arenas",
            "--quick",
            "--threads",
            "2",
            "--seconds",
            "0.05",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("three levels side by side"),
        "{}",
        explain(&out)
    );

    // (level, arena limits, owner cache on) of every sweep point.
    let levels: [(&str, &[u64], bool); 3] = [
        ("one-lock", &[1], false),
        ("locked-arenas", &[2, 4, 8], false),
        ("owner-caches", &[2, 4, 8], true),
    ];
    let rows = json_rows(&dir, "out.json");
    assert_eq!(rows.len(), 2 * 7, "larson and prodcons x 7 points");
    for w in ["larson", "prodcons"] {
        for (level, limits, cached) in levels {
            let mine: Vec<&Value> = rows
                .iter()
                .filter(|r| r["workload"] == w && r["level"] == level)
                .collect();
            let got: Vec<u64> = mine
                .iter()
                .map(|r| r["max_arenas"].as_u64().unwrap())
                .collect();
            assert_eq!(got, limits, "{w} {level}: {rows:#?}");
            for r in mine {
                assert_eq!(r["status"], "ok", "{r:#}");
                assert_eq!(r["check"], "ok", "{r:#}");
                assert_eq!(r["allocator"], "arenalloc");
                let cache = r["owner_cache"].as_u64().expect("owner_cache");
                assert_eq!(cache > 0, cached, "{r:#}");
                let arenas = r["arenas"].as_array().expect("arenas");
                assert!(!arenas.is_empty() && arenas.len() <= limits[limits.len() - 1] as usize);
                if level == "one-lock" {
                    // One arena, no cache: every timed call took the lock.
                    assert_eq!(arenas.len(), 1, "{r:#}");
                    let locks = arenas[0]["lock_acquisitions"].as_u64().unwrap();
                    assert!(locks >= r["ops"].as_u64().unwrap(), "{r:#}");
                }
            }
        }
    }

    let path = dir.join("lock-granularity.svg");
    let svg = std::fs::read_to_string(&path).expect("lock-granularity.svg");
    assert!(svg.len() < 50 << 10, "{} bytes", svg.len());
    let groups = svg_groups(&svg).unwrap_or_else(|e| panic!("lock-granularity.svg: {e}"));
    for (level, limits, _) in levels {
        let id = format!("level-{level}");
        let g: Vec<&Group> = groups.iter().filter(|g| g.id == id).collect();
        assert_eq!(g.len(), 1, "one <g id=\"{id}\">: {groups:?}");
        // A throughput bar per arena limit in each workload's panel.
        assert_eq!(g[0].rects, 2 * limits.len(), "{id}: {groups:?}");
    }
    for text in ["larson", "prodcons", "Mops/s", "contended", "one lock"] {
        assert!(svg.contains(text), "the picture lacks {text:?}");
    }

    // --lock-svg moves the picture.
    let out = driver(
        &dir,
        &[
            "--sweep-arenas",
            "--quick",
            "--workload",
            "larson",
            "--threads",
            "1",
            "--seconds",
            "0.02",
            "--lock-svg",
            "moved.svg",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let moved = std::fs::read_to_string(dir.join("moved.svg")).expect("moved.svg");
    let groups = svg_groups(&moved).unwrap_or_else(|e| panic!("moved.svg: {e}"));
    let bars: usize = groups
        .iter()
        .filter(|g| g.id.starts_with("level-"))
        .map(|g| g.rects)
        .sum();
    assert_eq!(bars, 7, "one panel (larson), 7 points: {groups:?}");
}

/// The allocators a server run measures unless `--alloc` names others:
/// every one but linked_list, whose frees are quadratic there.
const SERVER_ALLOCATORS: [&str; 6] = [
    "arenalloc",
    "arenalloc-1lock",
    "system",
    "mimalloc",
    "jemalloc",
    "talc",
];

/// Checks one server row (`--quick`: 2 bursts of 32 MiB): the samples are
/// (seconds, RSS, live) triples strictly increasing in time, live never
/// above a burst's peak and 0 once the last burst's frees finished; every
/// burst is all written at once (peak RSS at least its live bytes) and
/// RSS is read 100 ms and 1 s after its frees finished.
fn check_server_row(row: &Value) {
    let name = row["allocator"].as_str().unwrap_or("?");
    assert_eq!(row["status"], "ok", "{row:#}");
    assert_eq!(
        missing_keys(row, &SERVER_KEYS),
        Vec::<String>::new(),
        "{row:#}"
    );
    assert_eq!(
        row["sample_fields"],
        serde_json::json!(["seconds", "rss_bytes", "live_bytes"])
    );
    let bursts = row["bursts"].as_array().expect("bursts");
    assert_eq!(bursts.len(), 2, "{name}: two bursts at --quick");
    let peak_live = row["peak_live_bytes"].as_u64().unwrap();
    assert!(peak_live >= 32 << 20, "{name}: peak live {peak_live}");
    let peak_rss = row["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak_rss >= peak_live,
        "{name}: peak RSS {peak_rss} < live {peak_live}"
    );
    let secs = |b: &Value, k: &str| b[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}"));
    let mut previous_end = 0.0;
    for b in bursts {
        assert_eq!(missing_keys(b, &BURST_KEYS), Vec::<String>::new(), "{b:#}");
        let (start, allocated, freed) = (
            secs(b, "start_s"),
            secs(b, "allocated_s"),
            secs(b, "freed_s"),
        );
        assert!(
            previous_end < start && start < allocated && allocated <= freed,
            "{b:#}"
        );
        assert!(secs(b, "rss_100ms_at_s") - freed >= 0.1, "{b:#}");
        assert!(secs(b, "rss_1s_at_s") - freed >= 1.0, "{b:#}");
        assert!(b["peak_live_bytes"].as_u64().unwrap() <= peak_live, "{b:#}");
        for k in ["rss_100ms_bytes", "rss_1s_bytes"] {
            assert!(b[k].as_u64().unwrap_or(0) > 0, "{name}: {k}: {b:#}");
        }
        for k in ["rss_100ms_per_live", "rss_1s_per_live"] {
            let r = b[k].as_f64().unwrap_or(-1.0);
            assert!((0.0..10.0).contains(&r), "{name}: {k} = {r}");
        }
        previous_end = secs(b, "rss_1s_at_s");
    }
    let samples = row["samples"].as_array().expect("samples");
    // The run is over 2 s long; sampled every 5 ms, at most 400 kept.
    assert!(
        (100..=400).contains(&samples.len()),
        "{name}: {} samples",
        samples.len()
    );
    let last_freed = secs(&bursts[1], "freed_s");
    let mut previous = -1.0;
    for s in samples {
        let (t, rss, live) = match s.as_array().map(Vec::as_slice) {
            Some([t, rss, live]) => (
                t.as_f64().unwrap(),
                rss.as_u64().unwrap(),
                live.as_u64().unwrap(),
            ),
            _ => panic!("{name}: sample {s}"),
        };
        assert!(
            t > previous,
            "{name}: sample at {t} s after one at {previous} s"
        );
        previous = t;
        assert!(rss > 0, "{name}: sample {s}");
        assert!(
            live <= peak_live,
            "{name}: sample {s}, peak live {peak_live}"
        );
        if t > last_freed {
            assert_eq!(live, 0, "{name}: sample {s} after the last frees");
        }
    }
    assert!(
        previous >= previous_end,
        "{name}: sampling stops at the end"
    );
}

#[test]
fn the_server_workload_samples_rss_over_time_and_draws_a_line_per_allocator() {
    let dir = scratch("server");
    let out = driver(
        &dir,
        &[
            "--quick",
            "--workload",
            "server",
            "--threads",
            "2",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\n### server\n"), "{}", explain(&out));
    assert!(stdout.contains("burst 2 +1 s"), "{}", explain(&out));
    assert!(
        stdout.contains("linked_list: not run"),
        "the table says who was left out: {}",
        explain(&out)
    );
    let rows = json_rows(&dir, "out.json");
    let ran: Vec<&str> = rows
        .iter()
        .map(|r| r["allocator"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ran, SERVER_ALLOCATORS, "{rows:#?}");
    for row in &rows {
        assert_eq!(row["workload"], "server");
        assert_eq!(row["threads"], 2);
        check_server_row(row);
    }
    let arenalloc = rows.iter().find(|r| r["allocator"] == "arenalloc").unwrap();
    assert_eq!(arenalloc["check"], "ok", "{arenalloc:#}");

    let svg = std::fs::read_to_string(dir.join("rss-timeline.svg")).expect("rss-timeline.svg");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.len() < 100 << 10, "{} bytes", svg.len());
    let groups = svg_groups(&svg).unwrap_or_else(|e| panic!("rss-timeline.svg: {e}"));
    let lines: Vec<(&str, usize)> = groups
        .iter()
        .filter_map(|g| Some((g.id.strip_prefix("rss-")?, g.polylines)))
        .collect();
    let want: Vec<(&str, usize)> = SERVER_ALLOCATORS.iter().map(|&a| (a, 1)).collect();
    assert_eq!(lines, want, "one line per allocator: {groups:?}");
    let live: Vec<&Group> = groups.iter().filter(|g| g.id == "live").collect();
    assert_eq!(live.len(), 1, "{groups:?}");
    assert_eq!(live[0].polylines, 1, "one dashed live line");
    assert_eq!(
        svg.matches("<polyline").count(),
        SERVER_ALLOCATORS.len() + 1
    );
    for text in ["RSS, MiB", "seconds", "live bytes", "burst 2"] {
        assert!(svg.contains(text), "the picture lacks {text:?}");
    }

    // --alloc names linked_list: it runs; --rss-svg moves the picture.
    let out = driver(
        &dir,
        &[
            "--quick",
            "--workload",
            "server",
            "--alloc",
            "linked_list",
            "--threads",
            "1",
            "--rss-svg",
            "moved.svg",
            "--json",
            "moved.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let rows = json_rows(&dir, "moved.json");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["allocator"], "linked_list");
    check_server_row(&rows[0]);
    let moved = std::fs::read_to_string(dir.join("moved.svg")).expect("moved.svg");
    let groups = svg_groups(&moved).unwrap_or_else(|e| panic!("moved.svg: {e}"));
    let ids: Vec<&str> = groups
        .iter()
        .filter(|g| g.polylines > 0)
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(ids, ["live", "rss-linked_list"], "{groups:?}");
}

/// The statistics of a latency summary, in the order they must be.
const LATENCY_STATS: [&str; 4] = ["p50", "p99", "p999", "max"];

/// Checks one latency summary (`{calls, p50, p99, p999, max}`): some
/// calls, every statistic positive, in order.
fn check_latency(what: &str, s: &Value) {
    assert!(
        s["calls"].as_u64().unwrap_or(0) > 0,
        "{what}: no calls: {s}"
    );
    let v: Vec<f64> = LATENCY_STATS
        .iter()
        .map(|k| s[*k].as_f64().unwrap_or(-1.0))
        .collect();
    assert!(v[0] > 0.0, "{what}: p50 not positive: {s}");
    assert!(
        v.windows(2).all(|w| w[0] <= w[1]),
        "{what}: p50 <= p99 <= p999 <= max fails: {s}"
    );
}

/// Checks a latency row: status, the worst thread's summaries and one
/// per thread, each ordered and positive; the worst at least each
/// thread's.
fn check_latency_row(row: &Value, threads: usize) {
    assert_eq!(row["status"], "ok", "{row:#}");
    assert_eq!(row["workload"], "latency", "{row:#}");
    assert!(
        ["rdtsc", "instant"].contains(&row["clock"].as_str().unwrap_or("")),
        "{row:#}"
    );
    assert!(row["ns_per_tick"].as_f64().unwrap_or(0.0) > 0.0, "{row:#}");
    for key in ["malloc_ns", "free_ns"] {
        check_latency(key, &row[key]);
        let per = row[format!("{key}_threads")]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}_threads: {row:#}"));
        assert_eq!(per.len(), threads, "{row:#}");
        for (i, s) in per.iter().enumerate() {
            check_latency(&format!("{key} thread {i}"), s);
            for k in LATENCY_STATS {
                assert!(s[k].as_f64() <= row[key][k].as_f64(), "{key} {k}: {row:#}");
            }
        }
    }
    // Every block allocated was freed: timed, or untimed after the stop
    // when it was still in an inbox (at most the last bursts' quarters).
    let (m, f) = (
        row["mallocs"].as_u64().unwrap_or(0),
        row["frees"].as_u64().unwrap_or(0),
    );
    assert!(m >= 2048 && f <= m && f >= m / 2, "{row:#}");
}

#[test]
fn the_latency_child_prints_ordered_positive_percentiles() {
    for alloc in ["arenalloc", "system"] {
        for threads in [1, 2] {
            let out = Command::new(env!("CARGO_BIN_EXE_arenalloc-compare"))
                .args(["--child", "--alloc", alloc, "--workload", "latency"])
                .args(["--threads", &threads.to_string(), "--seconds", "0.25"])
                .output()
                .expect("run the child");
            assert!(out.status.success(), "{}", explain(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let row: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
                panic!("{alloc} x{threads}: not one JSON line ({e}): {stdout}")
            });
            assert_eq!(row["allocator"], alloc);
            assert_eq!(row["threads"], threads);
            check_latency_row(&row, threads);
            if alloc == "arenalloc" {
                assert_eq!(row["check"], "ok", "{row:#}");
            }
        }
    }
}

#[test]
fn the_latency_workload_runs_by_name_and_prints_its_table() {
    let dir = scratch("latency");
    let out = driver(
        &dir,
        &[
            "--workload",
            "latency",
            "--alloc",
            "arenalloc,system",
            "--threads",
            "2",
            "--seconds",
            "0.15",
            "--repeat",
            "2",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\n### latency\n"), "{}", explain(&out));
    for head in ["malloc p50", "malloc p99.9", "free p99", "free max"] {
        assert!(stdout.contains(head), "no {head} column: {}", explain(&out));
    }
    assert!(!stdout.contains("### summary"), "{}", explain(&out));
    let rows = json_rows(&dir, "out.json");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in &rows {
        check_latency_row(row, 2);
        // Two runs: each statistic the median of the two (the upper one).
        assert_eq!(row["runs"], 2, "{row:#}");
        for key in ["malloc_ns", "free_ns"] {
            let runs = row[format!("{key}_runs")].as_array().expect("runs");
            assert_eq!(runs.len(), 2, "{row:#}");
            for k in LATENCY_STATS {
                let top = runs
                    .iter()
                    .filter_map(|r| r[k].as_f64())
                    .fold(0.0, f64::max);
                assert_eq!(row[key][k].as_f64(), Some(top), "{key} {k}: {row:#}");
            }
        }
    }
}

#[test]
fn the_service_workload_answers_requests_on_each_global_allocator() {
    let dir = scratch("service");
    let out = driver(
        &dir,
        &[
            "--workload",
            "service",
            "--alloc",
            "arenalloc,jemalloc",
            "--threads",
            "2",
            "--seconds",
            "0.1",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in [
        "\n### service\n",
        "req/s, 2 workers",
        "per 1,000 allocations",
    ] {
        assert!(stdout.contains(text), "no {text:?}: {}", explain(&out));
    }
    let rows = json_rows(&dir, "out.json");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for (row, alloc) in rows.iter().zip(["arenalloc", "jemalloc"]) {
        assert_eq!(row["status"], "ok", "{row:#}");
        assert_eq!(
            (&row["workload"], &row["allocator"]),
            (&"service".into(), &alloc.into())
        );
        let requests = row["requests"].as_u64().unwrap_or(0);
        assert!(requests > 0, "{row:#}");
        assert_eq!(
            row["ops"].as_u64(),
            Some(requests),
            "an op is a request: {row:#}"
        );
        assert!(row["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{row:#}");
        // A tokio runtime and its documents take more than a megabyte.
        assert!(
            row["peak_rss_bytes"].as_u64().unwrap_or(0) > 1 << 20,
            "{row:#}"
        );
        // Each document has 8-64 items, each with a note of at least 16 B.
        assert!(
            row["mean_request_bytes"].as_u64().unwrap_or(0) > 8 * 16,
            "{row:#}"
        );
    }
    let arenalloc = &rows[0];
    assert_eq!(arenalloc["check"], "ok", "{arenalloc:#}");
    // The runtime, the documents and the channels allocated in arenalloc:
    // far more than one allocation per request, and the heap counted them.
    let allocs = arenalloc["allocations_during_run"].as_u64().unwrap_or(0);
    let requests = arenalloc["requests"].as_u64().unwrap_or(0);
    assert!(allocs > 8 * requests, "{arenalloc:#}");
    assert_lock_rate(arenalloc, allocs);
    // Only arenalloc's rows count its locks.
    assert!(rows[1]
        .get("lock_acquisitions_per_1k_allocations")
        .is_none());
}

#[test]
fn the_bulk_workloads_run_whole_rounds_and_report_arenallocs_locks() {
    let dir = scratch("bulk");
    let out = driver(
        &dir,
        &[
            "--workload",
            "bulk-fifo-lifo,bulk-varied",
            "--alloc",
            "arenalloc,mimalloc",
            "--threads",
            "2",
            "--seconds",
            "0.05",
            "--json",
            "out.json",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in [
        "\n### bulk-fifo-lifo\n",
        "\n### bulk-varied\n",
        "per 1,000 allocations",
    ] {
        assert!(stdout.contains(text), "no {text:?}: {}", explain(&out));
    }
    let rows = json_rows(&dir, "out.json");
    let ran: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap_or("?"),
                r["allocator"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        ran,
        [
            ("bulk-fifo-lifo", "arenalloc"),
            ("bulk-fifo-lifo", "mimalloc"),
            ("bulk-varied", "arenalloc"),
            ("bulk-varied", "mimalloc"),
        ],
        "{rows:#?}"
    );
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:#}");
        assert_eq!(row["threads"], 2, "{row:#}");
        assert_eq!(missing_keys(row, &ROW_KEYS), Vec::<String>::new());
        let ops = row["ops"].as_u64().unwrap_or(0);
        // At least one whole round: 100 blocks allocated and freed, or
        // 2,000 allocated (some of them kept, not freed, in bulk-varied).
        if row["workload"] == "bulk-fifo-lifo" {
            assert!(ops >= 2 * 100 && ops % 2 == 0, "{row:#}");
        } else {
            assert!(ops >= 2000, "{row:#}");
        }
        assert!(row["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{row:#}");
        let (peak, base) = (
            row["peak_rss_bytes"].as_u64().unwrap_or(0),
            row["base_rss_bytes"].as_u64().unwrap_or(0),
        );
        assert!(peak > 0 && peak >= base, "{row:#}");
        if row["allocator"] != "arenalloc" {
            assert!(row.get("lock_acquisitions_per_1k_allocations").is_none());
            continue;
        }
        assert_eq!(row["check"], "ok", "{row:#}");
        // Only the workers allocate in the heap, and only in counted
        // rounds: bulk-fifo-lifo frees every block it allocates within its
        // round; bulk-varied frees all but the kept ones.
        let allocs = row["allocations_during_run"].as_u64().expect("allocations");
        if row["workload"] == "bulk-fifo-lifo" {
            assert_eq!(2 * allocs, ops, "{row:#}");
        } else {
            assert!(allocs <= ops && ops <= 2 * allocs, "{row:#}");
        }
        assert_lock_rate(row, allocs);
    }
}

/// Asserts that an arenalloc row's lock acquisitions per 1,000
/// allocations is finite and is its lock count over `allocs`, the
/// allocations its heap counted.
fn assert_lock_rate(row: &Value, allocs: u64) {
    let locks = row["lock_acquisitions_during_run"].as_u64().expect("locks");
    let per_1k = row["lock_acquisitions_per_1k_allocations"]
        .as_f64()
        .expect("lock acquisitions per 1,000 allocations");
    assert!(per_1k.is_finite() && per_1k >= 0.0, "{row:#}");
    let expected = 1000.0 * locks as f64 / allocs as f64;
    assert!(
        (per_1k - expected).abs() <= 1e-9 * expected.max(1.0),
        "{row:#}"
    );
}

#[test]
fn a_service_child_refuses_an_allocator_it_cannot_install_or_did_not() {
    let child = |alloc: &str, global: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arenalloc-compare"));
        cmd.args(["--child", "--alloc", alloc, "--workload", "service"])
            .args(["--threads", "1", "--seconds", "0.01"])
            .env_remove("ARENALLOC_COMPARE_GLOBAL");
        if let Some(g) = global {
            cmd.env("ARENALLOC_COMPARE_GLOBAL", g);
        }
        cmd.output().expect("run the child")
    };
    // talc's lock allocates as it parks: it cannot be the global allocator.
    let out = child("talc", Some("talc"));
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot install talc"));
    // Without the variable the global allocator is System, not arenalloc.
    let out = child("arenalloc", None);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("which is system, not arenalloc"),
        "{}",
        explain(&out)
    );
    // An unknown name leaves System in place too.
    let out = child("mimalloc", Some("nope"));
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    // With it, the child measures.
    let out = child("system", Some("system"));
    assert!(out.status.success(), "{}", explain(&out));
}

#[test]
fn a_child_past_its_timeout_is_a_failed_row() {
    let dir = scratch("timeout");
    let out = driver(
        &dir,
        &[
            "--alloc",
            "system",
            "--workload",
            "larson",
            "--threads",
            "1",
            "--seconds",
            "30",
            "--timeout",
            "1",
            "--json",
            "out.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).expect("out.json"))
            .expect("JSON");
    assert_eq!(json[0]["status"], "timeout", "{json:#}");
    assert_eq!(json[0]["allocator"], "system");
}

#[test]
fn unknown_names_are_refused() {
    let dir = scratch("names");
    for args in [["--workload", "nope"], ["--alloc", "nope"]] {
        let out = driver(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("one of"));
    }
}

/// Checks that `svg` is well-formed XML whose root is an `<svg>` in the SVG
/// namespace, and returns the N of every `<g id="arena-N">`, in order.
fn svg_arena_groups(svg: &str) -> Result<Vec<u64>, String> {
    svg_groups(svg)?
        .into_iter()
        .filter_map(|g| g.id.strip_prefix("arena-").map(str::to_string))
        .map(|n| n.parse::<u64>().map_err(|e| format!("id arena-{n}: {e}")))
        .collect()
}

/// A `<g id="...">` of an SVG: its id and how many `<rect>` and
/// `<polyline>` elements it holds (at any depth).
#[derive(Debug, PartialEq)]
struct Group {
    id: String,
    rects: usize,
    polylines: usize,
}

/// Checks that `svg` is well-formed XML whose root is an `<svg>` in the SVG
/// namespace, and returns every `<g>` with an id, in document order.
fn svg_groups(svg: &str) -> Result<Vec<Group>, String> {
    let mut stack: Vec<String> = Vec::new();
    // For each open element: the index in `groups` of the group it opens.
    let mut open_groups: Vec<Option<usize>> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut roots = 0;
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt])?;
        if stack.is_empty() && !rest[..lt].trim().is_empty() {
            return Err("text outside the root element".into());
        }
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").ok_or("unterminated comment")?;
            rest = &body[end + 3..];
            continue;
        }
        if let Some(body) = rest.strip_prefix("<?") {
            let end = body.find("?>").ok_or("unterminated declaration")?;
            rest = &body[end + 2..];
            continue;
        }
        let gt = tag_end(rest).ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            open_groups.pop();
            match stack.pop() {
                Some(open) if open == name.trim() => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let (name, attrs) = tag.split_at(name_end);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
        {
            return Err(format!("bad element name {name:?}"));
        }
        let attrs = parse_attrs(attrs)?;
        if stack.is_empty() {
            roots += 1;
            if name != "svg" {
                return Err(format!("root element is <{name}>"));
            }
            let ns = attrs
                .iter()
                .find(|(k, _)| k == "xmlns")
                .map(|(_, v)| v.as_str());
            if ns != Some("http://www.w3.org/2000/svg") {
                return Err(format!("root xmlns is {ns:?}"));
            }
        }
        for g in open_groups.iter().flatten() {
            match name {
                "rect" => groups[*g].rects += 1,
                "polyline" => groups[*g].polylines += 1,
                _ => {}
            }
        }
        let mut opens = None;
        if name == "g" {
            if let Some((_, id)) = attrs.iter().find(|(k, _)| k == "id") {
                opens = Some(groups.len());
                groups.push(Group {
                    id: id.clone(),
                    rects: 0,
                    polylines: 0,
                });
            }
        }
        if !self_closing {
            stack.push(name.to_string());
            open_groups.push(opens);
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(groups)
}

/// The index of the `>` that ends the tag starting at `s[0] == '<'`,
/// skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// `name="value"` pairs; duplicates and unquoted values are errors.
fn parse_attrs(mut s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value: {s:?}"))?;
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let q = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let q = q.ok_or_else(|| format!("unquoted value of {name}"))?;
        let end = after[1..].find(q).ok_or("unterminated value")? + 1;
        let value = &after[1..end];
        check_text(value)?;
        if out.iter().any(|(k, _)| k == name) {
            return Err(format!("duplicate attribute {name}"));
        }
        out.push((name.to_string(), value.to_string()));
        s = &after[end + 1..];
    }
}

/// Character data: no `<`, and every `&` starts a known or numeric entity.
fn check_text(s: &str) -> Result<(), String> {
    if s.contains('<') {
        return Err(format!("raw '<' in {s:?}"));
    }
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let semi = rest[amp..].find(';').ok_or("unterminated entity")? + amp;
        let entity = &rest[amp + 1..semi];
        let known = ["lt", "gt", "amp", "quot", "apos"].contains(&entity)
            || entity.strip_prefix('#').is_some_and(|n| {
                n.strip_prefix('x').map_or(n.parse::<u32>().is_ok(), |h| {
                    u32::from_str_radix(h, 16).is_ok()
                })
            });
        if !known {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &rest[semi + 1..];
    }
    Ok(())
}

#[test]
fn the_checker_rejects_broken_svg() {
    let good = r#"<svg xmlns="http://www.w3.org/2000/svg"><g id="arena-0"><text>a &lt; b</text></g><g id="arena-1"/></svg>"#;
    assert_eq!(svg_arena_groups(good), Ok(vec![0, 1]));
    let nested = r#"<svg xmlns="http://www.w3.org/2000/svg"><rect/><g id="a"><rect/><g id="b"><rect/><polyline points="0,0"/></g></g><g><rect/></g></svg>"#;
    let ids = |id: &str, rects, polylines| Group {
        id: id.into(),
        rects,
        polylines,
    };
    assert_eq!(svg_groups(nested), Ok(vec![ids("a", 2, 1), ids("b", 1, 1)]));
    for bad in [
        r#"<svg xmlns="http://www.w3.org/2000/svg"><text>a < b</text></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g></svg>"#,
        r#"<svg><g id="arena-0"/></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"><g id=arena-0/></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg"></svg><svg xmlns="http://www.w3.org/2000/svg"></svg>"#,
        r#"<svg xmlns="http://www.w3.org/2000/svg">&nbsp;</svg>"#,
    ] {
        assert!(svg_arena_groups(bad).is_err(), "accepted {bad}");
    }
}
