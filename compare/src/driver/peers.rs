//! The allocators under comparison, each a `GlobalAlloc` value of this
//! binary, and [`with_allocator`], which hands the chosen one to generic
//! code by its name.
//!
//! | name | value | notes |
//! | --- | --- | --- |
//! | `arenalloc` | `arenalloc::Heap::new()` | default config: per-thread arenas (up to 128) |
//! | `arenalloc-1lock` | `Heap::with_config(Config::new().max_arenas(1))` | one arena, one global lock |
//! | `system` | `std::alloc::System` | glibc `malloc` |
//! | `mimalloc` | `mimalloc::MiMalloc` | `mi_`-prefixed, does not override `malloc` |
//! | `jemalloc` | `tikv_jemallocator::Jemalloc` | `_rjem_`-prefixed, does not override `malloc` |
//! | `talc` | `talc::TalcLock<parking_lot::RawMutex, Manual>` | claims an 8 GiB `MAP_NORESERVE` region |
//! | `linked_list` | `linked_list_allocator::LockedHeap` | its spin lock; the same kind of region |
//!
//! None of them is the binary's `#[global_allocator]` (that stays
//! `System`), so the harness's own allocations — thread spawns, channels,
//! result vectors — never land in the allocator being measured.
//!
//! Invariant: talc and linked_list_allocator get their region exactly once
//! per process (a child measures one allocator); nothing here frees it.

use std::alloc::{GlobalAlloc, System};
use std::sync::atomic::{AtomicBool, Ordering};

use arenalloc::{Config, Heap, DEFAULT_MAX_ARENAS};

/// Every allocator the driver knows, in table order: `(name, description)`.
pub(crate) const ALLOCATORS: [(&str, &str); 7] = [
    ("arenalloc", "arenalloc, default config (per-thread arenas)"),
    (
        "arenalloc-1lock",
        "arenalloc with max_arenas(1): one global lock",
    ),
    ("system", "std::alloc::System (glibc malloc)"),
    ("mimalloc", "mimalloc 0.1 (MiMalloc)"),
    ("jemalloc", "tikv-jemallocator 0.7 (Jemalloc)"),
    (
        "talc",
        "talc 5 TalcLock with a parking_lot mutex, 8 GiB claimed region",
    ),
    (
        "linked_list",
        "linked_list_allocator 0.10 LockedHeap (spin lock), 8 GiB region",
    ),
];

/// Bytes of address space handed to talc and linked_list_allocator. Only
/// the pages they touch are ever committed (`MAP_NORESERVE`).
const BACKING_REGION: usize = 8 << 30;

static ARENALLOC: Heap = Heap::new();
static ARENALLOC_1LOCK: Heap = Heap::with_config(Config::new().max_arenas(1));
/// talc leaves the lock to its user: parking_lot's, which spins briefly and
/// then parks (a spin lock, as in talc's README, collapses when 8 threads
/// share 2 cores). Its `RawMutex` implements the `lock_api` that talc
/// re-exports (one `lock_api` 0.4 in the build).
static TALC: talc::TalcLock<parking_lot::RawMutex, talc::source::Manual> =
    talc::TalcLock::new(talc::source::Manual);
static LINKED_LIST: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();
/// Whether a backing region was handed out (at most one per process).
static REGION_GIVEN: AtomicBool = AtomicBool::new(false);

/// Generic code to run with one allocator: [`with_allocator`] calls
/// `visit` with the allocator and, for arenalloc, the heap itself (for its
/// statistics, `check` and heap map).
pub(crate) trait Visit {
    /// What the visit returns.
    type Out;
    /// Runs with allocator `a`.
    fn visit<A: GlobalAlloc + Sync + 'static>(
        self,
        a: &'static A,
        heap: Option<&'static Heap>,
    ) -> Self::Out;
}

/// Runs `v` with the allocator called `name`; for `arenalloc`,
/// `max_arenas` picks a heap with that arena limit instead of the default
/// one (the lock-granularity sweep). `region_size`, if given, replaces
/// arenalloc's default region size (a heap built at run time then stands
/// in for the static one).
pub(crate) fn with_allocator<V: Visit>(
    name: &str,
    max_arenas: Option<usize>,
    region_size: Option<usize>,
    v: V,
) -> Result<V::Out, String> {
    let custom = |config: Config| -> &'static Heap {
        let config = match region_size {
            Some(bytes) => config.region_size(bytes),
            None => config,
        };
        Box::leak(Box::new(Heap::with_config(config)))
    };
    Ok(match (name, max_arenas, region_size) {
        ("arenalloc", None, None) => v.visit(&ARENALLOC, Some(&ARENALLOC)),
        ("arenalloc", n, _) => {
            let heap = custom(Config::new().max_arenas(n.unwrap_or(DEFAULT_MAX_ARENAS)));
            v.visit(heap, Some(heap))
        }
        ("arenalloc-1lock", _, None) => v.visit(&ARENALLOC_1LOCK, Some(&ARENALLOC_1LOCK)),
        ("arenalloc-1lock", _, Some(_)) => {
            let heap = custom(Config::new().max_arenas(1));
            v.visit(heap, Some(heap))
        }
        ("system", ..) => v.visit(&System, None),
        ("mimalloc", ..) => v.visit(&mimalloc::MiMalloc, None),
        ("jemalloc", ..) => v.visit(&tikv_jemallocator::Jemalloc, None),
        ("talc", ..) => {
            let base = backing_region()?;
            // SAFETY: the region is fresh, readable and writable, used by
            // nothing else, and never unmapped (it lives until exit).
            let claimed = unsafe { TALC.lock().claim(base, BACKING_REGION) };
            claimed.ok_or("talc refused the region")?;
            v.visit(&TALC, None)
        }
        ("linked_list", ..) => {
            let base = backing_region()?;
            // SAFETY: as for talc; `init` is called once on an empty heap.
            unsafe { LINKED_LIST.lock().init(base, BACKING_REGION) };
            v.visit(&LINKED_LIST, None)
        }
        _ => return Err(format!("unknown allocator {name:?}")),
    })
}

/// Maps the backing region for talc or linked_list_allocator: readable,
/// writable, committed page by page as it is touched.
fn backing_region() -> Result<*mut u8, String> {
    if REGION_GIVEN.swap(true, Ordering::SeqCst) {
        return Err("a backing region was already handed out".into());
    }
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            BACKING_REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {} GiB failed: {}",
            BACKING_REGION >> 30,
            std::io::Error::last_os_error()
        ));
    }
    Ok(p.cast())
}
