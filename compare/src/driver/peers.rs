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
//! None of them is the binary's `#[global_allocator]` (that is `System`
//! behind `global.rs`'s dispatcher), so the harness's own allocations —
//! thread spawns, channels, result vectors — never land in the allocator
//! being measured; except in a child of the service workload, where the
//! dispatcher forwards every allocation of the process to the allocator
//! under test (the statics below, shared with `global.rs`).
//!
//! The hidden child flags `--max-arenas`, `--owner-cache`,
//! `--region-size`, `--hardened` and `--purge-ms` ([`Overrides`]) make the two arenalloc entries build
//! their heap at run time with those settings instead (the
//! lock-granularity sweep's points, valgrind's small region).
//!
//! Invariant: at most one of talc and linked_list_allocator gets the
//! backing region, exactly once per process (a child measures one
//! allocator), through [`claim_region`], which the global allocator may
//! have called first; nothing here frees it.

use std::alloc::{GlobalAlloc, System};
use std::sync::atomic::{AtomicU8, Ordering};

use arenalloc::{Config, Heap};

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

pub(super) static ARENALLOC: Heap = Heap::new();
pub(super) static ARENALLOC_1LOCK: Heap = Heap::with_config(Config::new().max_arenas(1));
/// talc leaves the lock to its user: parking_lot's, which spins briefly and
/// then parks (a spin lock, as in talc's README, collapses when 8 threads
/// share 2 cores). Its `RawMutex` implements the `lock_api` that talc
/// re-exports (one `lock_api` 0.4 in the build).
static TALC: talc::TalcLock<parking_lot::RawMutex, talc::source::Manual> =
    talc::TalcLock::new(talc::source::Manual);
pub(super) static LINKED_LIST: linked_list_allocator::LockedHeap =
    linked_list_allocator::LockedHeap::empty();
/// Who has the backing region: [`REGION_FREE`], [`REGION_CLAIMING`],
/// [`REGION_FAILED`] (the mapping or the claim failed; final), or the
/// [`Backed`] allocator that holds it (final).
static REGION: AtomicU8 = AtomicU8::new(REGION_FREE);
const REGION_FREE: u8 = 0;
const REGION_CLAIMING: u8 = 1;
const REGION_FAILED: u8 = 2;

/// The two allocators that need the backing region before their first
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Backed {
    Talc = 3,
    LinkedList = 4,
}

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

/// The hidden child flags that change arenalloc's configuration
/// (`--max-arenas`, `--max-indexes`, `--owner-cache`, `--region-size`): each `None` keeps
/// the allocator's own setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    /// Arena limit (the lock-granularity sweep); ignored by
    /// `arenalloc-1lock`, whose limit is its point.
    pub(crate) max_arenas: Option<usize>,
    /// Limit of arenas with an index of their own (`Config::max_indexes`).
    pub(crate) max_indexes: Option<usize>,
    /// Bytes of each arena's owner cache, 0 = off (the sweep's levels).
    pub(crate) owner_cache: Option<usize>,
    /// Region size in bytes (for valgrind, which cannot map the default
    /// 64 GiB reservation).
    pub(crate) region_size: Option<usize>,
    /// Heap-corruption checks on (their cost on the driver's workloads).
    pub(crate) hardened: bool,
    /// Decay in milliseconds (what purging costs on the workloads).
    pub(crate) purge_ms: Option<i64>,
}

impl Overrides {
    /// `base` with every override that is set applied.
    fn apply(self, base: Config) -> Config {
        let mut c = base;
        if let Some(n) = self.max_arenas {
            c = c.max_arenas(n);
        }
        if let Some(n) = self.max_indexes {
            c = c.max_indexes(n);
        }
        if let Some(bytes) = self.owner_cache {
            c = c.owner_cache(bytes);
        }
        if let Some(bytes) = self.region_size {
            c = c.region_size(bytes);
        }
        if self.hardened {
            c = c.hardened(true);
        }
        if let Some(ms) = self.purge_ms {
            c = c.purge_ms(ms);
        }
        c
    }
}

/// Runs `v` with the allocator called `name`. For the two arenalloc
/// entries, `tune` (when anything is set) builds a heap at run time with
/// those settings over the entry's own configuration, standing in for the
/// static heap; the other allocators ignore it.
pub(crate) fn with_allocator<V: Visit>(
    name: &str,
    tune: Overrides,
    v: V,
) -> Result<V::Out, String> {
    let custom = |tune: Overrides, base: Config| -> &'static Heap {
        Box::leak(Box::new(Heap::with_config(tune.apply(base))))
    };
    // arenalloc-1lock keeps its one lock whatever the limit asked.
    let one_lock = Overrides {
        max_arenas: None,
        ..tune
    };
    Ok(match name {
        "arenalloc" if tune == Overrides::default() => v.visit(&ARENALLOC, Some(&ARENALLOC)),
        "arenalloc" => {
            let heap = custom(tune, Config::new());
            v.visit(heap, Some(heap))
        }
        "arenalloc-1lock" if one_lock == Overrides::default() => {
            v.visit(&ARENALLOC_1LOCK, Some(&ARENALLOC_1LOCK))
        }
        "arenalloc-1lock" => {
            let heap = custom(one_lock, Config::new().max_arenas(1));
            v.visit(heap, Some(heap))
        }
        "system" => v.visit(&System, None),
        "mimalloc" => v.visit(&mimalloc::MiMalloc, None),
        "jemalloc" => v.visit(&tikv_jemallocator::Jemalloc, None),
        "talc" => {
            region_for(Backed::Talc)?;
            v.visit(&TALC, None)
        }
        "linked_list" => {
            region_for(Backed::LinkedList)?;
            v.visit(&LINKED_LIST, None)
        }
        _ => return Err(format!("unknown allocator {name:?}")),
    })
}

/// [`claim_region`] for `who`, or why it failed.
fn region_for(who: Backed) -> Result<(), String> {
    if claim_region(who) {
        return Ok(());
    }
    Err(format!(
        "no {} GiB backing region for {who:?}: mmap or the claim failed, or another allocator has it ({})",
        BACKING_REGION >> 30,
        std::io::Error::last_os_error()
    ))
}

/// Maps the backing region (readable, writable, committed page by page
/// as it is touched) and gives it to `who`, once per process; returns
/// whether `who` holds it, now or from an earlier call. Allocates nothing,
/// so that the global allocator may call it on a process's first
/// allocation (`global.rs`). A call made while another thread is claiming
/// returns false; the two callers (`with_allocator` and the global
/// allocator's first allocation) both run before the process has a
/// second thread.
pub(super) fn claim_region(who: Backed) -> bool {
    if let Err(now) = REGION.compare_exchange(
        REGION_FREE,
        REGION_CLAIMING,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        return now == who as u8;
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
    let claimed = p != libc::MAP_FAILED
        && match who {
            // SAFETY: the region is fresh, readable and writable, used by
            // nothing else, and never unmapped (it lives until exit); the
            // state word makes this the only claim.
            Backed::Talc => unsafe { TALC.lock().claim(p.cast(), BACKING_REGION) }.is_some(),
            Backed::LinkedList => {
                // SAFETY: as for talc; `init` is called once, on an empty
                // heap.
                unsafe { LINKED_LIST.lock().init(p.cast(), BACKING_REGION) };
                true
            }
        };
    let state = if claimed { who as u8 } else { REGION_FAILED };
    REGION.store(state, Ordering::Release);
    claimed
}
