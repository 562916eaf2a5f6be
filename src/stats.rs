//! Stats, check and dump: what a heap can tell about itself.
//!
//! Invariants: nothing here holds a heap lock while it allocates or writes
//! to the caller's writer (either could re-enter the heap when it is the
//! global allocator). Buffers are sized and allocated first, filled under
//! the lock, and printed after it is released; a buffer that turns out too
//! small (the heap grew in between) is reported as truncated, never grown
//! under the lock.

use std::io::{self, Write};

use crate::arena::{Arena, Counters};
use crate::block::{self, HEADER};
use crate::chunk::CHUNK;
use crate::error::{HeapError, HeapErrorKind};
use crate::heap::HeapMeta;
use crate::large;

/// Statistics of one arena, taken under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaStats {
    /// The arena's index in its heap.
    pub id: u32,
    /// Usable bytes of live blocks.
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
}

/// Statistics of a heap: per arena, large allocations, and totals.
#[derive(Debug, Clone, Default)]
pub struct HeapStats {
    arenas: Vec<ArenaStats>,
    large_live: usize,
    large_bytes: usize,
    large_allocations: u64,
    large_frees: u64,
    committed: usize,
    peak_committed: usize,
    reserved: usize,
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

    /// Bytes of address space reserved.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved
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

    /// Usable bytes of live large allocations.
    pub fn large_bytes(&self) -> usize {
        self.large_bytes
    }
}

fn arena_stats(arena: &Arena, c: &Counters, largest: usize) -> ArenaStats {
    ArenaStats {
        id: arena.id,
        owner: arena.live_owner(),
        remote_frees: c.remote_frees,
        queue_full_fallbacks: c.queue_full,
        adoptions: arena.adoption_count(),
        allocated_bytes: c.live_bytes,
        live_blocks: c.live_blocks,
        free_bytes: c.free_bytes,
        free_blocks: c.free_blocks,
        largest_free_block: largest,
        chunks: c.chunk_count,
        committed_bytes: c.chunk_count * CHUNK,
        allocations: c.allocs,
        frees: c.frees,
        lock_acquisitions: c.lock_acquisitions,
        lock_contended: c.lock_contended,
    }
}

/// Gathers statistics; the vector is allocated before any lock is taken.
pub(crate) fn collect(meta: Option<&HeapMeta>) -> HeapStats {
    let Some(meta) = meta else {
        return HeapStats::default();
    };
    let n = meta.arena_count();
    let mut arenas = Vec::with_capacity(n);
    for id in 0..n as u32 {
        let Some(arena) = meta.arena(id) else {
            continue;
        };
        let st = arena.lock_drained(&meta.region);
        let (counters, largest) = (st.counters, st.largest_free());
        drop(st);
        if arenas.len() < arenas.capacity() {
            arenas.push(arena_stats(arena, &counters, largest));
        }
    }
    let large = &meta.large;
    use core::sync::atomic::Ordering::Relaxed;
    HeapStats {
        arenas,
        large_live: large.live.load(Relaxed),
        large_bytes: large.live_bytes.load(Relaxed),
        large_allocations: large.allocs.load(Relaxed),
        large_frees: large.frees.load(Relaxed),
        committed: meta.region.committed_bytes(),
        peak_committed: meta.region.peak_committed_bytes(),
        reserved: meta.region.reserved_bytes(),
    }
}

/// Checks large runs against the chunk map and their counters.
pub(crate) fn check_large(meta: &HeapMeta) -> Result<(), HeapError> {
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

/// One line of a dump.
#[derive(Clone, Copy)]
enum Entry {
    Chunk(usize),
    Block {
        payload: usize,
        size: usize,
        free: bool,
    },
}

/// Writes the heap map described at `Heap::dump`.
pub(crate) fn dump(meta: Option<&HeapMeta>, out: &mut dyn Write) -> io::Result<()> {
    let Some(meta) = meta else {
        return writeln!(
            out,
            "arenalloc heap: not initialised (nothing allocated yet)"
        );
    };
    let s = collect(Some(meta));
    writeln!(
        out,
        "arenalloc heap: {} reserved, {} committed, {} arena(s), {} live in {} block(s), {} large",
        Bytes(s.reserved_bytes()),
        Bytes(s.committed_bytes()),
        s.arenas().len(),
        Bytes(s.allocated_bytes()),
        s.live_blocks(),
        s.large_live(),
    )?;
    for id in 0..meta.arena_count() as u32 {
        let Some(arena) = meta.arena(id) else {
            continue;
        };
        // Size the buffer without holding the lock across the allocation.
        let count = {
            let st = arena.lock_drained(&meta.region);
            st.counters.live_blocks + st.counters.free_blocks + st.counters.chunk_count
        };
        let mut entries = Vec::with_capacity(count + 64);
        let mut truncated = false;
        let st = arena.lock_drained(&meta.region);
        let (counters, largest) = (st.counters, st.largest_free());
        let mut last_chunk = core::ptr::null_mut();
        st.for_each_block(|c, b| {
            if entries.len() + 2 > entries.capacity() {
                truncated = true;
                return false;
            }
            if c != last_chunk {
                entries.push(Entry::Chunk(c as usize));
                last_chunk = c;
            }
            // SAFETY: `for_each_block` hands out headers of our chunks
            // while the lock is held.
            let (size, free) = unsafe { ((*b).size(), (*b).is_free()) };
            entries.push(Entry::Block {
                payload: block::block_to_payload(b) as usize,
                size,
                free,
            });
            true
        });
        drop(st);
        let (locks, contended) = (counters.lock_acquisitions, counters.lock_contended);
        let owner = match arena.live_owner() {
            Some(t) => format!("owned by thread token {t:#x}"),
            None => "no live owner".to_string(),
        };
        writeln!(
            out,
            "arena {id} ({owner}): {} chunk(s); {} live in {} block(s); {} free in {} block(s), largest {}; lock taken {locks} times ({contended} contended); {} remote frees, {} queue-full fallbacks, {} adoptions",
            counters.chunk_count,
            Bytes(counters.live_bytes),
            counters.live_blocks,
            Bytes(counters.free_bytes),
            counters.free_blocks,
            Bytes(largest),
            counters.remote_frees,
            counters.queue_full,
            arena.adoption_count(),
        )?;
        write_entries(out, &entries)?;
        if truncated {
            writeln!(
                out,
                "  ... (truncated: the arena grew while it was being dumped)"
            )?;
        }
    }
    let mut runs = Vec::with_capacity(s.large_live() + 16);
    let walked = large::walk(&meta.region, |run| {
        if runs.len() < runs.capacity() {
            runs.push(run);
            true
        } else {
            false
        }
    });
    if !runs.is_empty() {
        writeln!(out, "large: {} run(s)", runs.len())?;
    }
    for run in &runs {
        writeln!(
            out,
            "  {:#x}  live  {:>10}  ({} chunk(s))",
            run.payload,
            Bytes(run.usable),
            run.chunks
        )?;
    }
    if let Err(e) = walked {
        writeln!(out, "large: {e}")?;
    }
    Ok(())
}

/// Writes block lines, folding runs of three or more equal blocks.
fn write_entries(out: &mut dyn Write, entries: &[Entry]) -> io::Result<()> {
    let mut i = 0;
    while i < entries.len() {
        match entries[i] {
            Entry::Chunk(c) => writeln!(out, "  chunk {c:#x} ({})", Bytes(CHUNK))?,
            Entry::Block {
                payload,
                size,
                free,
            } => {
                let same = entries[i + 1..]
                    .iter()
                    .take_while(|e| matches!(e, Entry::Block { size: s, free: f, .. } if *s == size && *f == free))
                    .count();
                let state = if free { "free" } else { "live" };
                let usable = if free { size } else { size - HEADER };
                writeln!(out, "    {payload:#x}  {state}  {:>10}", Bytes(usable))?;
                if same >= 2 {
                    writeln!(
                        out,
                        "    ... {same} more {state} block(s) of {}",
                        Bytes(usable)
                    )?;
                    i += same;
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// A byte count printed the way people read them: `48 B`, `1.5 KiB`, `4.0 MiB`.
pub(crate) struct Bytes(pub(crate) usize);

impl core::fmt::Display for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return f.pad(&format!("{} B", self.0));
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        f.pad(&format!("{v:.1} {}", UNITS[unit]))
    }
}
