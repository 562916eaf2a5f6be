//! Check: [`Heap::check`], the invariant walker tests call after every
//! batch of operations (talc's `scan_for_errors`, rlsf's shadow checks).
//!
//! It proves what `docs/DESIGN.md` lists: every arena's chunks tile
//! exactly, no two free blocks touch, every free block is in exactly one bin
//! of its size, headers, footers and start bitmaps agree, every remote-queue
//! entry is a pending block of its arena, every owner-cache entry is a
//! cached block of its class in exactly one list, counters equal what the
//! walk counts, and large runs agree with the chunk map and their counters.
//! Exact when no other thread is using the heap; each arena is checked
//! under its own lock (so the walk allocates nothing and can run inside a
//! global allocator).

use crate::error::{HeapError, HeapErrorKind};
use crate::heap::{Heap, HeapMeta};
use crate::large;

impl Heap {
    /// Proves the heap's invariants (module doc), returning the first
    /// violation found.
    pub fn check(&self) -> Result<(), HeapError> {
        let Some(meta) = self.meta_if_ready() else {
            return Ok(());
        };
        // No decay tick may move blocks while the walk counts them.
        let _paused = meta.pause_decay();
        for arena in meta.indexes() {
            let mut st = arena.lock();
            if let Err(bad) = arena.drain(&mut st, &meta.region, usize::MAX) {
                let kind = HeapErrorKind::BadRemoteEntry;
                return Err(HeapError {
                    arena: Some(arena.id),
                    addr: bad,
                    kind,
                });
            }
            // Every cache in front of this index: the arena's own and its
            // owner slots' (whose refills and flushes wait for this lock).
            let mut cached = 0;
            for owner in meta.owners_of(arena) {
                cached += owner
                    .check_cache(&meta.region)
                    .map_err(|addr| HeapError {
                        arena: Some(owner.id),
                        addr,
                        kind: HeapErrorKind::BadCache,
                    })?
                    .0;
            }
            let pending = meta.arenas().map(|a| a.batched_for(arena.id).0).sum();
            st.check(&meta.region, arena.id, cached, pending)?;
        }
        check_large(meta)
    }
}

/// Checks large runs against the chunk map and their counters.
fn check_large(meta: &HeapMeta) -> Result<(), HeapError> {
    let (mut live, mut bytes) = (0usize, 0usize);
    large::walk(&meta.region, |run| {
        live += 1;
        bytes += run.usable;
        true
    })?;
    use core::sync::atomic::Ordering::Relaxed;
    if live != meta.large.live.load(Relaxed) || bytes != meta.large.live_bytes.load(Relaxed) {
        return Err(HeapError {
            arena: None,
            addr: 0,
            kind: HeapErrorKind::CounterMismatch,
        });
    }
    Ok(())
}
