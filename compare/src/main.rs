//! `cargo run --release`: the comparison driver. arenalloc against the
//! allocators users pick instead — glibc's, mimalloc, jemalloc, talc,
//! linked_list_allocator, and arenalloc with one global lock — on the same
//! workloads, side by side, in one run.
//!
//! It lives in `compare/`, a workspace member of its own (package and
//! binary `arenalloc-compare`), and not in the library package, so that
//! the library's dependencies are only the allocator's own (`libc`,
//! `crossbeam-queue`): the peers it measures (mimalloc's and jemalloc's C
//! code, talc, linked_list_allocator, parking_lot) and its command-line,
//! progress-bar and JSON crates are not compiled into every program that
//! depends on `arenalloc`, as they were behind the library's old default
//! `driver` feature. It is the only binary among the workspace's default
//! members, so `cargo run --release` at the repository root still runs it
//! (as does `cargo run --release -p arenalloc-compare`).
//!
//! Each allocator × workload × thread count runs in a fresh child process
//! (this executable again, with the hidden `--child` flag), so that peak
//! RSS and allocator state start clean; the parent gathers one JSON line
//! from each child and prints a table per workload, each peer's ratio to
//! arenalloc, and after the fragmentation workload writes arenalloc's heap
//! map (`heap-map.svg`); `--sweep-arenas` runs the lock-granularity lesson
//! instead (one lock, per-thread locked arenas, owner caches) and draws it
//! (`lock-granularity.svg`); the server workload (bursts freed on other
//! threads, then idle) draws RSS over time (`rss-timeline.svg`). See
//! `compare/src/driver/` and `benches/RESULTS.md`, "Comparison driver". The
//! library demo that used to live here is `cargo run --release --example
//! demo`.
//!
//! The binary's own global allocator is `System`, behind a dispatcher
//! (`driver/global.rs`): the allocators under test are called through
//! their `GlobalAlloc` values, except by the service workload, whose
//! child installs the one under test as its global allocator (a tokio
//! runtime and serde_json allocate through nothing else).

mod driver;

#[global_allocator]
static GLOBAL: driver::global::Global = driver::global::Global;

use std::path::PathBuf;

use clap::Parser;

use driver::workloads::Scale;

/// arenalloc's comparison driver: the same workloads on arenalloc and on
/// the allocators people use instead, each run in a fresh child process.
///
/// Allocators: arenalloc, arenalloc-1lock, system, mimalloc, jemalloc,
/// talc, linked_list. Workloads: larson, prodcons, cache-scratch,
/// cache-thrash, random, realloc, fragmentation, thread-churn, large,
/// server (at the largest thread count only), service (requests/s of a
/// tokio + serde_json service); and, by name only: bulk-fifo-lifo and
/// bulk-varied (batches allocated, written and freed whole in varied
/// orders), and latency (`--workload latency`, best with `--seconds 2`):
/// per-call p50/p99/p99.9/max of malloc and free under bursts and decay.
#[derive(Parser, Debug)]
#[command(name = "arenalloc-compare", version)]
pub(crate) struct Args {
    /// Short CI run (under 2 minutes on 2 cores): threads 1 and 4, 0.15 s
    /// per measurement, a 16 MiB fragmentation live set, two 32 MiB server
    /// bursts.
    #[arg(long, conflicts_with = "full")]
    pub(crate) quick: bool,

    /// Every combination: threads 1, 2, 4 and 8, 1 s per measurement,
    /// each repeated 3 times (median), a 128 MiB fragmentation live set,
    /// three 512 MiB server bursts (the default: two of 256 MiB).
    #[arg(long)]
    pub(crate) full: bool,

    /// Only these workloads (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub(crate) workload: Vec<String>,

    /// Only these allocators (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub(crate) alloc: Vec<String>,

    /// Only these thread counts (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub(crate) threads: Vec<usize>,

    /// Also write every result as a JSON list to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,

    /// Where the fragmentation workload writes arenalloc's heap map.
    #[arg(long, value_name = "FILE", default_value = "heap-map.svg")]
    pub(crate) heap_map: PathBuf,

    /// The lock-granularity lesson instead of the comparison: larson and
    /// prodcons on arenalloc at three levels — one lock (max_arenas 1),
    /// per-thread locked arenas (owner_cache 0, max_arenas 2, 4, 8) and
    /// owner caches (the default owner_cache, max_arenas 2, 4, 8) — on 8
    /// threads unless --threads says otherwise: throughput, contention and
    /// lock acquisitions per op in tables, and a picture (--lock-svg).
    #[arg(long)]
    pub(crate) sweep_arenas: bool,

    /// Where --sweep-arenas draws its lesson: throughput bars and
    /// contended-% markers per level and arena count.
    #[arg(long, value_name = "FILE", default_value = "lock-granularity.svg")]
    pub(crate) lock_svg: PathBuf,

    /// Where the server workload draws RSS over time: a line per
    /// allocator, the live bytes dashed.
    #[arg(long, value_name = "FILE", default_value = "rss-timeline.svg")]
    pub(crate) rss_svg: PathBuf,

    /// Seconds per throughput measurement (overrides the mode's).
    #[arg(long, value_name = "S")]
    pub(crate) seconds: Option<f64>,

    /// Runs per combination; the median by ops/s is reported.
    #[arg(long, value_name = "N")]
    pub(crate) repeat: Option<usize>,

    /// Seconds before a child is killed and reported as timed out.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub(crate) timeout: f64,

    /// Run one measurement in this process and print it as one JSON line
    /// (how the driver invokes itself).
    #[arg(long, hide = true)]
    pub(crate) child: bool,

    /// Child: the size of fixed-work workloads.
    #[arg(long, hide = true, value_enum, default_value = "default")]
    pub(crate) scale: Scale,

    /// Child: arenalloc's arena limit (the sweep).
    #[arg(long, hide = true)]
    pub(crate) max_arenas: Option<usize>,

    /// Child: arenalloc's limit of arenas with an index of their own
    /// (`Config::max_indexes`; 0: no limit).
    #[arg(long, hide = true)]
    pub(crate) max_indexes: Option<usize>,

    /// Child: bytes of each arenalloc arena's owner cache, 0 = off (the
    /// sweep's levels).
    #[arg(long, hide = true, value_name = "BYTES")]
    pub(crate) owner_cache: Option<usize>,

    /// Child: arenalloc's region size in bytes (for valgrind, which
    /// cannot map the default 64 GiB reservation).
    #[arg(long, hide = true)]
    pub(crate) region_size: Option<usize>,

    /// Child: arenalloc with its heap-corruption checks on
    /// (`Config::hardened`), to measure what they cost.
    #[arg(long, hide = true)]
    pub(crate) hardened: bool,

    /// Child: arenalloc's decay in milliseconds (`Config::purge_ms`: 0 at
    /// once, -1 never), to measure what purging costs.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub(crate) purge_ms: Option<i64>,

    /// Child: render the heap map to this file after the free phase.
    #[arg(long, hide = true)]
    pub(crate) svg: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let code = if args.child {
        driver::child::main(&args)
    } else {
        driver::parent::main(&args)
    };
    std::process::exit(code);
}
