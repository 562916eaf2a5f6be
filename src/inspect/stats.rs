//! Stats: what a heap can count about itself, per arena and in total.
//!
//! Invariant: nothing here holds a heap lock while it allocates (the heap
//! may be the global allocator): the vector is sized and allocated first,
//! filled under one arena lock at a time, and a vector that turns out too
//! small (the heap grew in between) drops the extra arenas rather than grow
//! under the lock.

use core::fmt;

use crate::arena::cache::CacheCounts;
use crate::arena::{Arena, Counters};
use crate::block::HEADER;
use crate::chunk::CHUNK;
use crate::heap::{Heap, HeapMeta};

/// Statistics of one arena (or owner slot), taken under its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaStats {
    /// The arena's index in its heap.
    pub id: u32,
    /// Usable bytes of live blocks (stress mode: the bytes requested).
    pub allocated_bytes: usize,
    /// Live blocks.
    pub live_blocks: usize,
    /// Bytes of free blocks (headers included).
    pub free_bytes: usize,
    /// Free blocks.
    pub free_blocks: usize,
    /// The largest free block, in bytes (header included).
    pub largest_free_block: usize,
    /// Chunks owned.
    pub chunks: usize,
    /// Bytes committed for those chunks.
    pub committed_bytes: usize,
    /// Of `committed_bytes`, the whole pages inside purged free blocks
    /// (`Config::purge_ms`): known not to be resident.
    pub purged_bytes: usize,
    /// `committed_bytes - purged_bytes`: an upper bound of the arena's
    /// resident memory (exact right after a `trim`; pages of a block
    /// written since it was purged count again).
    pub resident_bytes: usize,
    /// Times free pages were purged (`madvise` calls), ever.
    pub purges: u64,
    /// Allocations served, ever.
    pub allocations: u64,
    /// Frees performed, ever.
    pub frees: u64,
    /// Times the lock was taken.
    pub lock_acquisitions: u64,
    /// Times the lock was found held by another thread.
    pub lock_contended: u64,
    /// Token of the thread that owns the arena, if it is alive (`None`:
    /// orphaned, waiting for adoption, or only shared).
    pub owner: Option<u64>,
    /// Frees by other threads received through the remote queue.
    pub remote_frees: u64,
    /// Remote frees that found the queue full and freed under the lock.
    pub queue_full_fallbacks: u64,
    /// Times a new thread adopted the arena after its owner exited.
    pub adoptions: u64,
    /// Blocks parked in the arena's owner cache (not live, not free).
    pub cached_blocks: usize,
    /// Bytes of those blocks, headers included.
    pub cached_bytes: usize,
    /// Blocks of this arena that other threads freed and hold in unsent
    /// remote-free batches (freed for the user, not yet free here).
    pub pending_blocks: usize,
    /// Stress mode: blocks the user freed that wait in the arena's
    /// quarantine (not live, not free).
    pub quarantined_blocks: usize,
    /// Bytes of those blocks, headers included.
    pub quarantined_bytes: usize,
    /// `Some(id)` for an *owner slot*: a thread's owner cache in front of
    /// arena `id`'s lock and index (`Config::max_indexes`). A slot owns no
    /// chunks: its entry counts its owner, adoptions and cached blocks;
    /// the arena's entry counts everything its index holds, the blocks
    /// cached in its slots taken out of its live figures.
    pub shares: Option<u32>,
}

/// Statistics of a heap: per arena, large allocations, and totals.
///
/// `Display` writes the totals table the preload library prints at exit
/// (`ARENALLOC_STATS`), six lines; the alternate form (`{:#}`) adds a line
/// per arena.
///
/// ```
/// let heap = arenalloc::Heap::new();
/// let p = heap.malloc(100);
/// let table = heap.stats().to_string();
/// assert!(table.starts_with("allocations"));
/// assert!(table.contains("live blocks              1"));
/// # unsafe { heap.free(p) }.unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct HeapStats {
    arenas: Vec<ArenaStats>,
    large_live: usize,
    large_bytes: usize,
    large_allocations: u64,
    large_frees: u64,
    large_cached: usize,
    committed: usize,
    peak_committed: usize,
    reserved: usize,
    pool_used: usize,
    pool_live: usize,
    pool_capacity: usize,
    pool_allocations: u64,
    decay_threads: u64,
    decay_running: bool,
    stress_reports: u64,
}

impl HeapStats {
    /// Each arena's statistics, by id.
    pub fn arenas(&self) -> &[ArenaStats] {
        &self.arenas
    }

    /// Usable bytes of every live block and large allocation.
    pub fn allocated_bytes(&self) -> usize {
        self.arenas.iter().map(|a| a.allocated_bytes).sum::<usize>() + self.large_bytes
    }

    /// Bytes of free blocks in arena chunks.
    pub fn free_bytes(&self) -> usize {
        self.arenas.iter().map(|a| a.free_bytes).sum()
    }

    /// Free blocks in arena chunks.
    pub fn free_blocks(&self) -> usize {
        self.arenas.iter().map(|a| a.free_blocks).sum()
    }

    /// Blocks parked in owner caches.
    pub fn cached_blocks(&self) -> usize {
        self.arenas.iter().map(|a| a.cached_blocks).sum()
    }

    /// Bytes parked in owner caches, headers included.
    pub fn cached_bytes(&self) -> usize {
        self.arenas.iter().map(|a| a.cached_bytes).sum()
    }

    /// The largest free block of any arena (header included).
    pub fn largest_free_block(&self) -> usize {
        self.arenas
            .iter()
            .map(|a| a.largest_free_block)
            .max()
            .unwrap_or(0)
    }

    /// Live blocks, large allocations included.
    pub fn live_blocks(&self) -> usize {
        self.arenas.iter().map(|a| a.live_blocks).sum::<usize>() + self.large_live
    }

    /// Bytes committed: metadata, arena chunks and large runs.
    pub fn committed_bytes(&self) -> usize {
        self.committed
    }

    /// The most bytes ever committed at once (a cheap, exact stand-in for
    /// peak heap size: it changes only when chunks change hands).
    pub fn peak_committed_bytes(&self) -> usize {
        self.peak_committed
    }

    /// Bytes of address space reserved: the configured region size, or
    /// less if that is all the OS granted (an `RLIMIT_AS`, `ulimit -v`).
    pub fn reserved_bytes(&self) -> usize {
        self.reserved
    }

    /// Bytes of the internal pool (the memory that serves allocations made
    /// while a thread binds, such as each arena's queue buffer) carved into
    /// blocks so far, live or kept on a free list for reuse: the figure
    /// that must stay below [`pool_capacity_bytes`](Self::pool_capacity_bytes).
    /// It grows with the most pool blocks ever live at once, not with the
    /// number of threads a process ever ran.
    pub fn pool_used_bytes(&self) -> usize {
        self.pool_used
    }

    /// Bytes of live internal-pool blocks, headers included.
    pub fn pool_live_bytes(&self) -> usize {
        self.pool_live
    }

    /// Bytes the internal pool has (fixed when the heap initialises).
    pub fn pool_capacity_bytes(&self) -> usize {
        self.pool_capacity
    }

    /// Internal-pool blocks handed out, ever (reused ones included).
    pub fn pool_allocations(&self) -> u64 {
        self.pool_allocations
    }

    /// Allocations served, ever, large ones included.
    pub fn allocations(&self) -> u64 {
        self.arenas.iter().map(|a| a.allocations).sum::<u64>() + self.large_allocations
    }

    /// Frees performed, ever, large ones included.
    pub fn frees(&self) -> u64 {
        self.arenas.iter().map(|a| a.frees).sum::<u64>() + self.large_frees
    }

    /// Live large allocations.
    pub fn large_live(&self) -> usize {
        self.large_live
    }

    /// Bytes of freed large runs kept committed for reuse (the large-run
    /// cache; counted in `committed_bytes`).
    pub fn large_cached_bytes(&self) -> usize {
        self.large_cached
    }

    /// Usable bytes of live large allocations.
    pub fn large_bytes(&self) -> usize {
        self.large_bytes
    }

    /// Bytes of whole pages inside purged free blocks, over all arenas.
    pub fn purged_bytes(&self) -> usize {
        self.arenas.iter().map(|a| a.purged_bytes).sum()
    }

    /// `committed_bytes - purged_bytes`: an upper bound of the heap's
    /// resident memory (see [`ArenaStats::resident_bytes`]).
    pub fn resident_bytes(&self) -> usize {
        self.committed.saturating_sub(self.purged_bytes())
    }

    /// Decay threads the heap has started, ever (`heap/purge.rs`: one
    /// starts on an allocation once there is something to decay or the heap
    /// holds 16 MiB, and parks when idle; a `fork` child starts its own).
    pub fn decay_threads_started(&self) -> u64 {
        self.decay_threads
    }

    /// Stress mode: reports written so far (use-after-free writes,
    /// overflows, overwritten records); with `Stress::keep_going(false)`
    /// the first one aborts, so a running program sees 0.
    pub fn stress_reports(&self) -> u64 {
        self.stress_reports
    }

    /// Stress mode: bytes of freed blocks waiting in quarantines.
    pub fn quarantined_bytes(&self) -> usize {
        self.arenas.iter().map(|a| a.quarantined_bytes).sum()
    }

    /// Whether the heap had its decay thread (ticking or parked) when the
    /// statistics were taken.
    pub fn decay_thread_exists(&self) -> bool {
        self.decay_running
    }
}

impl HeapStats {
    /// Remote frees over all arenas: through the queue, and under the
    /// lock when the queue was full.
    fn remote_frees(&self) -> u64 {
        self.arenas
            .iter()
            .map(|a| a.remote_frees + a.queue_full_fallbacks)
            .sum()
    }
}

impl fmt::Display for HeapStats {
    /// The totals table (six lines, each ending in a newline); `{:#}`
    /// adds one line per arena.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let contended: u64 = self.arenas.iter().map(|a| a.lock_contended).sum();
        let adoptions: u64 = self.arenas.iter().map(|a| a.adoptions).sum();
        writeln!(
            f,
            "allocations {:>14}   frees {:>14}   remote frees {:>12}",
            self.allocations(),
            self.frees(),
            self.remote_frees(),
        )?;
        writeln!(
            f,
            "live blocks {:>14}   live bytes {:>9}   peak committed {:>10}",
            self.live_blocks(),
            self.allocated_bytes(),
            self.peak_committed_bytes(),
        )?;
        writeln!(
            f,
            "arenas used {:>14}   adoptions {:>10}   contended locks {:>9}",
            self.arenas.len(),
            adoptions,
            contended,
        )?;
        writeln!(
            f,
            "pool used {:>16}   pool size {:>10}   reserved bytes {:>10}",
            self.pool_used_bytes(),
            self.pool_capacity_bytes(),
            self.reserved_bytes(),
        )?;
        writeln!(
            f,
            "cached blocks {:>12}   cached bytes {:>7}   large cached {:>12}",
            self.cached_blocks(),
            self.cached_bytes(),
            self.large_cached_bytes(),
        )?;
        writeln!(
            f,
            "stress reports {:>11}   quarantined {:>8}",
            self.stress_reports(),
            self.quarantined_bytes(),
        )?;
        if f.alternate() {
            for a in &self.arenas {
                if let Some(home) = a.shares {
                    writeln!(
                        f,
                        "arena {:>4}: owner slot of arena {home}   cached {:>9} blocks {:>12} bytes",
                        a.id, a.cached_blocks, a.cached_bytes,
                    )?;
                    continue;
                }
                writeln!(
                    f,
                    "arena {:>4}: live {:>9} blocks {:>12} bytes   free {:>9} blocks {:>12} bytes   \
                     chunks {:>5}   locks {:>10} ({} contended)   remote frees {:>9}",
                    a.id,
                    a.live_blocks,
                    a.allocated_bytes,
                    a.free_blocks,
                    a.free_bytes,
                    a.chunks,
                    a.lock_acquisitions,
                    a.lock_contended,
                    a.remote_frees + a.queue_full_fallbacks,
                )?;
            }
        }
        Ok(())
    }
}

/// One arena's statistics from its counters (taken under its lock) and its
/// owner cache: cached blocks are carved (live to the index) but not the
/// user's, so they move from the live figures to their own, and the cache's
/// refills and flushes are not counted as the user's allocations and frees.
/// Quarantined blocks (stress mode), likewise, are the user's frees.
/// `cache` is what every cache in front of the arena's index holds (its
/// own and its owner slots'): all of it is carved and not the user's.
fn arena_stats(
    arena: &Arena,
    c: &Counters,
    largest: usize,
    pending: (usize, usize),
    quarantined: (usize, usize),
    cache: CacheCounts,
) -> ArenaStats {
    let own = arena.cache_counts();
    let (pending_blocks, pending_bytes) = pending;
    let (q_blocks, q_bytes) = quarantined;
    ArenaStats {
        id: arena.id,
        owner: arena.live_owner(),
        remote_frees: c.remote_frees,
        queue_full_fallbacks: c.queue_full,
        adoptions: arena.adoption_count(),
        allocated_bytes: c
            .live_bytes
            .saturating_sub(cache.bytes.saturating_sub(cache.blocks * HEADER))
            .saturating_sub(pending_bytes.saturating_sub(pending_blocks * HEADER))
            .saturating_sub(q_bytes.saturating_sub(q_blocks * HEADER)),
        live_blocks: c
            .live_blocks
            .saturating_sub(cache.blocks)
            .saturating_sub(pending_blocks)
            .saturating_sub(q_blocks),
        free_bytes: c.free_bytes,
        free_blocks: c.free_blocks,
        largest_free_block: largest,
        chunks: c.chunk_count,
        committed_bytes: c.chunk_count * CHUNK,
        purged_bytes: c.purged_bytes,
        resident_bytes: (c.chunk_count * CHUNK).saturating_sub(c.purged_bytes),
        purges: c.purges,
        allocations: (c.allocs - c.to_cache) + cache.pops,
        // The user's frees into the cache are not counted on the push
        // path: every block that entered it is still there, was popped or
        // was flushed, and those the refills put there are `to_cache`.
        frees: (c.frees - c.from_cache)
            + (cache.blocks as u64 + cache.pops + c.from_cache).saturating_sub(c.to_cache)
            + pending_blocks as u64
            + q_blocks as u64,
        lock_acquisitions: c.lock_acquisitions,
        lock_contended: c.lock_contended,
        cached_blocks: own.blocks,
        cached_bytes: own.bytes,
        pending_blocks,
        quarantined_blocks: q_blocks,
        quarantined_bytes: q_bytes,
        shares: None,
    }
}

/// An owner slot's entry (`ArenaStats::shares`): its owner, adoptions and
/// cache; its arena's entry has the rest.
fn slot_stats(slot: &Arena) -> ArenaStats {
    let own = slot.cache_counts();
    ArenaStats {
        id: slot.id,
        owner: slot.live_owner(),
        adoptions: slot.adoption_count(),
        cached_blocks: own.blocks,
        cached_bytes: own.bytes,
        shares: Some(slot.home().id),
        ..ArenaStats::default()
    }
}

/// What every owner cache in front of `home`'s index holds, together.
fn group_cache(meta: &HeapMeta, home: &Arena) -> CacheCounts {
    meta.owners_of(home)
        .map(|a| a.cache_counts())
        .fold(CacheCounts::default(), |t, c| CacheCounts {
            blocks: t.blocks + c.blocks,
            bytes: t.bytes + c.bytes,
            pops: t.pops + c.pops,
        })
}

/// Stress mode: the bytes requested by live large allocations (records).
fn large_requested(meta: &HeapMeta) -> usize {
    let mut n = 0;
    let _ = crate::large::walk(&meta.region, |run| {
        // SAFETY: a live run's usable bytes are committed; read only, under
        // the region lock.
        let rec = unsafe { crate::stress::Body::new(run.payload as *mut u8, run.usable) }
            .and_then(|b| b.record());
        n += rec.map_or(run.usable, |r| r.request as usize);
        true
    });
    n
}

/// Blocks and bytes of arena `id` held in any owner's unsent batches.
fn pending_for(meta: &HeapMeta, id: u32) -> (usize, usize) {
    meta.arenas()
        .map(|a| a.batched_for(id))
        .fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2))
}

/// Gathers statistics; the vector is allocated before any lock is taken.
impl Heap {
    /// Usable bytes of the live blocks and large allocations, read without
    /// taking any lock: each arena's live bytes as its last lock holder
    /// left them, less what its owner cache holds, plus the large
    /// allocations' — relaxed loads of a few counters per arena (the owner
    /// cache's classes among them), no lock, no system call, no
    /// allocation. What a monitor polls; [`Heap::stats`] is exact but
    /// takes every arena's lock.
    ///
    /// Not a snapshot: an operation in flight on another thread may be
    /// counted half. It differs from `stats().allocated_bytes()` by the
    /// blocks freed by other threads and not yet handed back (counted here
    /// as allocated; `stats` drains them first) and, in stress mode, by
    /// counting each block's usable bytes (its redzone and record
    /// included) and quarantined blocks, where `stats` counts requests.
    ///
    /// ```
    /// let heap = arenalloc::Heap::new();
    /// let p = heap.malloc(1000);
    /// assert_eq!(heap.allocated_bytes(), heap.stats().allocated_bytes());
    /// # unsafe { heap.free(p) }.unwrap();
    /// ```
    pub fn allocated_bytes(&self) -> usize {
        let Some(meta) = self.meta_if_ready() else {
            return 0;
        };
        // An owner slot publishes nothing (its arena does) but caches: the
        // two sums are taken apart.
        let (live, cached) = meta.arenas().fold((0usize, 0usize), |(live, cached), a| {
            let cache = a.cache_counts();
            (
                live + a.published().0,
                cached + cache.bytes.saturating_sub(cache.blocks * HEADER),
            )
        });
        live.saturating_sub(cached)
            + meta
                .large
                .live_bytes
                .load(core::sync::atomic::Ordering::Relaxed)
    }

    /// `committed − purged` bytes, as [`HeapStats::resident_bytes`], read
    /// without taking any lock (as [`Heap::allocated_bytes`]: one relaxed
    /// load per arena and the region's committed-bytes counter): an upper
    /// bound of the heap's resident memory. [`Heap::measured_resident_bytes`]
    /// asks the kernel instead.
    pub fn resident_bytes(&self) -> usize {
        let Some(meta) = self.meta_if_ready() else {
            return 0;
        };
        let purged: usize = meta.arenas().map(|a| a.published().1).sum();
        meta.region.committed_bytes().saturating_sub(purged)
    }

    /// Bytes committed (metadata, arena chunks, large runs), as
    /// [`HeapStats::committed_bytes`], read without taking any lock (one
    /// relaxed load).
    pub fn committed_bytes(&self) -> usize {
        self.meta_if_ready()
            .map_or(0, |m| m.region.committed_bytes())
    }

    /// Bytes of the heap's memory the kernel reports resident right now,
    /// measured page by page (`mincore(2)`) over every chunk in use and
    /// the metadata. Takes no heap lock and changes nothing (unlike
    /// [`Heap::stats`], which drains the remote queues): what a test or a
    /// monitor uses to watch decay work. Costs one system call per 4 MiB
    /// in use.
    pub fn measured_resident_bytes(&self) -> usize {
        match self.meta_if_ready() {
            Some(meta) => meta.region.measured_resident_bytes(),
            None => 0,
        }
    }

    /// Statistics per arena and in total. Drains every remote queue first
    /// (each under its arena lock), so pending frees are counted as free.
    pub fn stats(&self) -> HeapStats {
        let Some(meta) = self.meta_if_ready() else {
            return HeapStats::default();
        };
        let n = meta.arena_count();
        let mut arenas = Vec::with_capacity(n);
        // Allocated first: no lock is held while allocating (the heap may
        // be the global allocator). Then no decay tick may move blocks
        // while the walk counts them.
        let _paused = meta.pause_decay();
        for id in 0..n as u32 {
            let Some(arena) = meta.arena(id) else {
                continue;
            };
            if !arena.has_index() {
                if arenas.len() < arenas.capacity() {
                    arenas.push(slot_stats(arena));
                }
                continue;
            }
            let st = arena.lock_drained(&meta.region);
            let (counters, largest) = (st.counters, st.largest_free(&meta.region));
            let quarantined = st.quarantined();
            // Under the lock: no owner slot's cache refills or flushes.
            let group = group_cache(meta, arena);
            // Stress mode: the user's bytes are the requests (records).
            let requested = st.stress_on().then(|| {
                let mut n = 0;
                st.for_each_live(|size, _, _| n += size);
                n
            });
            drop(st);
            if arenas.len() < arenas.capacity() {
                arenas.push(arena_stats(
                    arena,
                    &counters,
                    largest,
                    pending_for(meta, arena.id),
                    quarantined,
                    group,
                ));
                if let (Some(n), Some(a)) = (requested, arenas.last_mut()) {
                    a.allocated_bytes = n;
                }
            }
        }
        let large = &meta.large;
        let pool = meta.pool_stats();
        use core::sync::atomic::Ordering::Relaxed;
        HeapStats {
            arenas,
            large_live: large.live.load(Relaxed),
            large_bytes: if meta.stress_on() {
                large_requested(meta)
            } else {
                large.live_bytes.load(Relaxed)
            },
            large_allocations: large.allocs.load(Relaxed),
            large_frees: large.frees.load(Relaxed),
            large_cached: large.cached_bytes(),
            committed: meta.region.committed_bytes(),
            peak_committed: meta.region.peak_committed_bytes(),
            reserved: meta.region.reserved_bytes(),
            pool_used: pool.used,
            pool_live: pool.live,
            pool_capacity: pool.capacity,
            pool_allocations: pool.allocations,
            decay_threads: meta.decay.threads_started(),
            decay_running: meta.decay.thread_exists(),
            stress_reports: meta.stress.reports(),
        }
    }
}
