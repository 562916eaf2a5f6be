//! Pool: the internal allocator for allocations made while a thread binds
//! to this very heap (module doc of `heap`, Reentrancy) — a bump pointer
//! over a fixed stretch of the metadata chunk(s).
//!
//! Invariants: `pool_start <= pool_next <= pool_end`; every block handed
//! out is preceded by a `GRANULE`-byte header holding its usable size, so
//! that `usable_size` and `realloc` work on it; freeing one is a no-op
//! (the pool is never reclaimed: it serves a queue buffer per arena and the
//! odd runtime allocation made during binding).

use core::ptr;
use core::sync::atomic::Ordering;

use crate::block::GRANULE;
use crate::config::{Config, LARGE_THRESHOLD, POOL_SLACK};
use crate::sync::MpmcQueue;

use super::HeapMeta;

/// Bytes of internal pool a heap of `config` sets aside.
pub(super) fn pool_bytes(config: &Config) -> usize {
    let per_arena =
        MpmcQueue::buffer_bytes(config.get_remote_queue_capacity()).min(LARGE_THRESHOLD) + 256;
    config.get_max_arenas() * per_arena + POOL_SLACK
}

impl HeapMeta {
    /// Serves an allocation made while this thread binds to this heap
    /// (module doc, Reentrancy) from the internal pool. Each block is
    /// preceded by a `GRANULE`-byte header holding its usable size, so that
    /// `usable_size` and `realloc` work; freeing one is a no-op (the pool is
    /// never reclaimed: it serves only a queue buffer per arena and the odd
    /// runtime allocation made during binding).
    pub(super) fn internal_alloc(&self, size: usize, align: usize) -> *mut u8 {
        let mut cur = self.pool_next.load(Ordering::Relaxed);
        loop {
            let Some(start) = cur
                .checked_add(GRANULE + align - 1)
                .map(|v| v & !(align - 1))
            else {
                return ptr::null_mut();
            };
            let Some(end) = start
                .checked_add(size.max(1))
                .map(|e| e.next_multiple_of(GRANULE))
            else {
                return ptr::null_mut();
            };
            if end > self.pool_end {
                return ptr::null_mut();
            }
            match self.pool_next.compare_exchange_weak(
                cur,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // SAFETY: `start - GRANULE .. end` lies in the committed
                    // pool and was just reserved by this thread alone.
                    unsafe { ((start - GRANULE) as *mut usize).write(end - start) };
                    return start as *mut u8;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// `(payload, usable)` of the pool block whose payload contains `addr`
    /// exactly at its start, if `addr` is one.
    pub(super) fn pool_block(&self, addr: usize) -> Option<(usize, usize)> {
        let inside =
            addr >= self.pool_start + GRANULE && addr < self.pool_next.load(Ordering::Relaxed);
        if !inside || addr % GRANULE != 0 {
            return None;
        }
        // SAFETY: the header before a pool payload is in the committed pool.
        let usable = unsafe { *((addr - GRANULE) as *const usize) };
        Some((addr, usable))
    }
}
