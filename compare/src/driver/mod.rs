//! The comparison driver behind `cargo run --release` (the
//! `arenalloc-compare` binary of the `compare/` workspace member).
//!
//! ```text
//!  parent (parent.rs)                         child (child.rs), one per job
//!  plan jobs: workload x threads x allocator  --child --alloc A --workload W --threads N ...
//!  spawn current_exe() --child ...  ───────▶  set up allocator A (peers.rs)
//!  wait, kill after --timeout                 run workload W on N threads (workloads.rs)
//!  parse the one JSON line  ◀──────────────── print {ops_per_sec, peak_rss_bytes, ...}
//!  tables, ratios, --json (report.rs)         and exit at once
//!  --sweep-arenas: lesson tables, SVG (sweep.rs)
//!  server: RSS table, timeline SVG (timeline.rs)  server: bursts, RSS sampler (server.rs)
//!  latency: percentile table (report.rs)         latency: timed calls, histograms (latency.rs)
//!  service: requests/s table (service.rs)       service: tokio + serde_json through the
//!  sets ARENALLOC_COMPARE_GLOBAL=A   ───────▶   global allocator, set to A (global.rs)
//! ```
//!
//! The parent's side imports down: `parent` → `report`, `sweep`,
//! `timeline` (`report` prints the server workload through `timeline`,
//! the service workload through `service`) → the leaves they share: `plan.rs` (the resolved command
//! line), `levels.rs` (the sweep's levels and points), `table.rs`
//! (markdown tables and cell formats), `svg.rs` (escaping, axes, the
//! write). No report module imports another report module or the parent.
//!
//! Invariants: a child measures exactly one allocator on one workload, so
//! its peak RSS (`VmHWM`) and the allocator's state are its own; a child
//! that crashes, corrupts a block, fails `check()` or outlives its timeout
//! becomes a failed row, never a hung or aborted parent; children run one
//! at a time (the machine's cores are the thing being measured).

pub(crate) mod bulk;
pub(crate) mod child;
pub(crate) mod global;
pub(crate) mod latency;
pub(crate) mod levels;
pub(crate) mod parent;
pub(crate) mod peers;
pub(crate) mod plan;
pub(crate) mod report;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod svg;
pub(crate) mod sweep;
pub(crate) mod table;
pub(crate) mod timeline;
pub(crate) mod workloads;
