//! The child side: one allocator, one workload, one thread count; prints
//! one JSON line on stdout and exits.
//!
//! Invariant: the line is printed only after the workload freed every
//! block and, for arenalloc, `check()` passed; a workload that measures
//! the global allocator (service) runs only when the global allocator is
//! the one asked for, with no `Overrides`; any panic (a null
//! allocation, a corrupt block tag) exits at once with status 3 and a
//! message on stderr, so that no thread is left waiting on a barrier.

use std::alloc::GlobalAlloc;
use std::io::Write;
use std::path::Path;

use arenalloc::Heap;
use serde_json::{json, Map, Value};

use super::global;
use super::peers::{self, Overrides, Visit};
use super::workloads::{rss_now, rss_peak, Params, Workload};
use crate::Args;

/// Runs the measurement `args` describes; returns the exit status.
pub(crate) fn main(args: &Args) -> i32 {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        // The parent reports the last line of stderr: make it this one.
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        eprintln!("panic at {at}: {msg}");
        std::process::exit(3);
    }));
    let (Some(alloc), Some(workload), Some(&threads)) = (
        args.alloc.first(),
        args.workload.first(),
        args.threads.first(),
    ) else {
        eprintln!("--child needs --alloc, --workload and --threads");
        return 2;
    };
    let Some(workload) = Workload::from_name(workload) else {
        eprintln!("unknown workload {workload:?}");
        return 2;
    };
    if workload.installs_global() {
        if let Some((_, why)) = global::UNSUPPORTED.iter().find(|(n, _)| n == alloc) {
            eprintln!(
                "the {} workload cannot install {alloc} as the global allocator: {why}",
                workload.name()
            );
            return 2;
        }
        let installed = global::installed();
        if installed != alloc.as_str() {
            eprintln!(
                "the {} workload measures the global allocator, which is {installed}, not {alloc} \
                 (the parent sets {}={alloc})",
                workload.name(),
                global::ENV
            );
            return 2;
        }
    }
    let params = Params {
        threads: threads.max(1),
        seconds: args.seconds.unwrap_or(0.5),
        scale: args.scale,
    };
    let base_rss = rss_now();
    let job = Job {
        workload,
        params: &params,
        svg: args.svg.as_deref(),
    };
    let tune = Overrides {
        max_arenas: args.max_arenas,
        max_indexes: args.max_indexes,
        owner_cache: args.owner_cache,
        region_size: args.region_size,
        hardened: args.hardened,
        purge_ms: args.purge_ms,
    };
    if workload.installs_global() && tune != Overrides::default() {
        eprintln!(
            "the {} workload measures the global allocator: no arenalloc settings can change it",
            workload.name()
        );
        return 2;
    }
    let mut row = match peers::with_allocator(alloc, tune, job) {
        Ok(Ok(row)) => row,
        Ok(Err(e)) | Err(e) => {
            eprintln!("{e}");
            return 4;
        }
    };
    row.insert("workload".into(), json!(workload.name()));
    row.insert("allocator".into(), json!(alloc));
    row.insert("threads".into(), json!(params.threads));
    if let Some(n) = args.max_arenas {
        row.insert("max_arenas".into(), json!(n));
    }
    if let Some(n) = args.max_indexes {
        row.insert("max_indexes".into(), json!(n));
    }
    if let Some(bytes) = args.owner_cache {
        row.insert("owner_cache".into(), json!(bytes));
    }
    row.insert("base_rss_bytes".into(), json!(base_rss));
    let seen = row
        .get("peak_rss_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    row.insert("peak_rss_bytes".into(), json!(rss_peak(seen)));
    row.insert("status".into(), json!("ok"));
    let line = Value::Object(row).to_string();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return 5;
    }
    0
}

/// One measurement, run by `peers::with_allocator` with the allocator.
struct Job<'a> {
    workload: Workload,
    params: &'a Params,
    svg: Option<&'a Path>,
}

impl Visit for Job<'_> {
    type Out = Result<Map<String, Value>, String>;

    fn visit<A: GlobalAlloc + Sync + 'static>(
        self,
        a: &'static A,
        heap: Option<&'static Heap>,
    ) -> Self::Out {
        let svg_error = std::sync::Mutex::new(None);
        let render = || {
            if let (Some(heap), Some(path)) = (heap, self.svg) {
                if let Err(e) = write_heap_map(heap, path) {
                    *svg_error.lock().unwrap() = Some(format!("{}: {e}", path.display()));
                }
            }
        };
        let hook: Option<&(dyn Fn() + Sync)> = self.svg.map(|_| &render as _);
        let before = heap.map(LockCounts::of);
        let outcome = self.workload.run(a, self.params, hook);
        let after = heap.map(LockCounts::of);
        let mut row = Map::new();
        row.insert("ops".into(), json!(outcome.ops));
        row.insert("seconds".into(), json!(outcome.seconds));
        let rate = outcome.ops as f64 / outcome.seconds.max(1e-9);
        row.insert("ops_per_sec".into(), json!(rate));
        for (k, v) in outcome.extra {
            row.insert(k.into(), json!(v));
        }
        for (k, v) in outcome.json {
            row.insert(k.into(), v);
        }
        if let Some(e) = svg_error.into_inner().unwrap() {
            return Err(format!("heap map: {e}"));
        }
        if let Some(heap) = heap {
            heap.check()
                .map_err(|e| format!("check() failed after the workload: {e}"))?;
            let s = heap.stats();
            let arenas: Vec<Value> = s
                .arenas()
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id,
                        "chunks": a.chunks,
                        "allocations": a.allocations,
                        "frees": a.frees,
                        "lock_acquisitions": a.lock_acquisitions,
                        "lock_contended": a.lock_contended,
                        "remote_frees": a.remote_frees,
                        "queue_full_fallbacks": a.queue_full_fallbacks,
                        "adoptions": a.adoptions,
                        "cached_bytes": a.cached_bytes,
                        "free_bytes": a.free_bytes,
                        "shares": a.shares,
                    })
                })
                .collect();
            row.insert("arenas".into(), Value::Array(arenas));
            if let (Some(b), Some(a)) = (before, after) {
                let locks = a.lock_acquisitions.saturating_sub(b.lock_acquisitions);
                let allocs = a.allocations.saturating_sub(b.allocations);
                row.insert("lock_acquisitions_during_run".into(), json!(locks));
                row.insert("allocations_during_run".into(), json!(allocs));
                // null when nothing was allocated (no ratio).
                let per_1k = (allocs > 0).then(|| 1000.0 * locks as f64 / allocs as f64);
                row.insert("lock_acquisitions_per_1k_allocations".into(), json!(per_1k));
            }
            // Whether the decay returned memory to the OS during the run
            // (madvise calls, ever; decay threads started).
            let purges: u64 = s.arenas().iter().map(|a| a.purges).sum();
            row.insert("purges".into(), json!(purges));
            row.insert(
                "decay_threads_started".into(),
                json!(s.decay_threads_started()),
            );
            row.insert("check".into(), json!("ok"));
        }
        Ok(row)
    }
}

/// A heap's lock acquisitions (every arena's) and allocations (every
/// one it served, large ones included), ever: read before and after a
/// workload, their differences are its own.
#[derive(Clone, Copy)]
struct LockCounts {
    lock_acquisitions: u64,
    allocations: u64,
}

impl LockCounts {
    fn of(heap: &Heap) -> LockCounts {
        let s = heap.stats();
        LockCounts {
            lock_acquisitions: s.arenas().iter().map(|a| a.lock_acquisitions).sum(),
            allocations: s.allocations(),
        }
    }
}

/// Renders `heap`'s map to `path` through a temporary file, so that a
/// reader never sees half a picture.
fn write_heap_map(heap: &Heap, path: &Path) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    heap.render_svg(&mut file)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}
