//! Fast slot, portable: the thread's fast binding (`thread::cache::fast`)
//! as two cells of the registry's one thread local (`ThreadState`), read
//! with the rest of the thread's state in one TLS access. In an
//! executable (a Rust program linking arenalloc) that access is
//! local-exec, a load at a constant offset from the thread pointer; in a
//! shared object it is a call to `__tls_get_addr`, which the
//! `initial-exec-tls` feature avoids on x86-64 Linux (`fast_ie.rs`).
//!
//! Invariants: the cells start at `(0, 0)` (no binding: 0 is no heap's
//! id); only the owning thread reads or writes them; they stay readable
//! for the thread's whole life, exit hooks included (the thread local is
//! const-initialised and has no destructor), and a `fork` child's thread
//! keeps them with its token.

use core::cell::Cell;

/// The fast binding: a heap id (0: none) and the address of its arena.
pub(crate) struct FastSlot {
    heap: Cell<u64>,
    arena: Cell<usize>,
}

impl FastSlot {
    pub(crate) const fn new() -> FastSlot {
        FastSlot {
            heap: Cell::new(0),
            arena: Cell::new(0),
        }
    }

    /// `(heap, arena)`.
    #[inline(always)]
    pub(crate) fn get(&self) -> (u64, usize) {
        (self.heap.get(), self.arena.get())
    }

    /// Makes `(heap, arena)` the fast binding.
    #[inline(always)]
    pub(crate) fn set(&self, heap: u64, arena: usize) {
        self.heap.set(heap);
        self.arena.set(arena);
    }

    /// Clears the heap word: no fast binding from now on.
    #[inline(always)]
    pub(crate) fn clear(&self) {
        self.heap.set(0);
    }
}

/// `None`: the fast paths read this slot through the thread's state
/// (`registry::fast_binding`).
#[inline(always)]
pub(crate) fn read_direct() -> Option<(u64, usize)> {
    None
}
