//! Cache: each thread's bindings (heap id -> arena), the first thing every
//! allocation reads.
//!
//! A small `BINDING_WAYS`-entry cache in a const-initialised,
//! destructor-free thread local, so it stays readable after the thread's
//! other TLS is gone. The fast path is one TLS access and one compare:
//! entry 0 holds the most recent heap. A heap id is unique for the life of
//! the process (never reused), so a stale entry of a dropped heap is never
//! matched, and its arena pointer is never followed.
//!
//! **Reentrancy.** `binding` names the heap this thread is binding to right
//! now; an allocation from that heap while it is set (the arena's queue
//! buffer, when the heap is the global allocator) is served from the heap's
//! internal pool instead of recursing.

use core::cell::Cell;

use crate::arena::Arena;
use crate::config::BINDING_WAYS as WAYS;

/// The per-thread cache (module doc).
struct Bindings {
    heaps: [Cell<u64>; WAYS],
    arenas: [Cell<*const Arena>; WAYS],
    binding: Cell<u64>,
}

impl Bindings {
    const fn new() -> Bindings {
        Bindings {
            heaps: [const { Cell::new(0) }; WAYS],
            arenas: [const { Cell::new(core::ptr::null()) }; WAYS],
            binding: Cell::new(0),
        }
    }
}

crate::sync::shim_thread_local! {
    static CACHE: Bindings = Bindings::new();
}

/// The arena this thread is bound to in heap `heap`, if cached.
#[inline]
pub(crate) fn cached_arena(heap: u64) -> Option<*const Arena> {
    CACHE
        .try_with(|c| {
            if c.heaps[0].get() == heap {
                return Some(c.arenas[0].get());
            }
            (1..WAYS).find(|&i| c.heaps[i].get() == heap).map(|i| {
                // Move the hit to the front.
                c.heaps[0].swap(&c.heaps[i]);
                c.arenas[0].swap(&c.arenas[i]);
                c.arenas[0].get()
            })
        })
        .ok()
        .flatten()
}

/// Records a binding at the front of the cache (evicting the oldest).
pub(crate) fn cache_arena(heap: u64, arena: *const Arena) {
    let _ = CACHE.try_with(|c| {
        for i in (1..WAYS).rev() {
            c.heaps[i].set(c.heaps[i - 1].get());
            c.arenas[i].set(c.arenas[i - 1].get());
        }
        c.heaps[0].set(heap);
        c.arenas[0].set(arena);
    });
}

/// Marks this thread as binding to heap `heap` (0: done). Returns the
/// previous mark, or `None` if the thread's TLS is gone.
pub(crate) fn set_binding(heap: u64) -> Option<u64> {
    CACHE.try_with(|c| c.binding.replace(heap)).ok()
}

/// Whether this thread is in the middle of binding to heap `heap`.
pub(crate) fn is_binding(heap: u64) -> bool {
    CACHE.try_with(|c| c.binding.get() == heap).unwrap_or(false)
}
