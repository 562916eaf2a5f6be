//! Dump: [`Heap::dump`], a readable text map of the heap — each arena's
//! chunks and blocks (runs of equal blocks folded), then the large runs.
//!
//! A block is printed in one of three states, read from its header's flags
//! as stored (unverified: a dump reports what it finds, it never aborts):
//! `live` (the user's), `free` (in the index) or `cached` (parked in its
//! arena's owner cache, `arena/cache.rs`: carved, so not free, but not the
//! user's either). Live and cached blocks show their usable size, free
//! blocks their whole size. The arena line's live and cached figures are
//! [`Heap::stats`]'s, taken just before the walk.
//!
//! Invariant: no heap lock is held while this allocates or writes to the
//! caller's writer (either could re-enter the heap when it is the global
//! allocator). Each arena's entry buffer is sized under its lock, allocated
//! with none held, filled under the lock without growing, and printed after
//! it is released; a buffer that turns out too small (the heap grew in
//! between) is reported as truncated.

use std::io::{self, Write};

use crate::block::{self, Header, HEADER};
use crate::chunk::CHUNK;
use crate::heap::Heap;
use crate::large;

/// The state a block is printed (and, in `svg.rs`, drawn) in (module doc).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Live,
    Free,
    Cached,
}

impl State {
    /// The state of the block at `b`, from its flags as stored.
    ///
    /// # Safety
    ///
    /// `b` is a block header of a chunk of an arena whose lock the caller
    /// holds (what `for_each_block` hands out).
    pub(super) unsafe fn of(b: *const Header) -> State {
        // SAFETY: forwarded; the raw accessors only load the atomic word.
        let (free, cached) = unsafe { ((*b).is_free(), (*b).is_cached()) };
        match (free, cached) {
            (true, _) => State::Free,
            (false, true) => State::Cached,
            (false, false) => State::Live,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Live => "live",
            State::Free => "free",
            State::Cached => "cached",
        }
    }

    /// What a block of `size` bytes in this state is printed as: the usable
    /// size of a block that is (or, cached, will be) handed out, the whole
    /// size of a free one.
    fn shown_size(self, size: usize) -> usize {
        match self {
            State::Free => size,
            State::Live | State::Cached => size.saturating_sub(HEADER),
        }
    }
}

/// One line of a dump.
#[derive(Clone, Copy)]
enum Entry {
    Chunk(usize),
    Block {
        payload: usize,
        size: usize,
        state: State,
    },
}

/// Writes the heap map described at `Heap::dump`.
impl Heap {
    /// Writes a readable map of the heap: each arena's chunks and blocks
    /// (payload address, state, size; runs of equal blocks folded), then
    /// the large allocations.
    pub fn dump(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(meta) = self.meta_if_ready() else {
            return writeln!(
                out,
                "arenalloc heap: not initialised (nothing allocated yet)"
            );
        };
        let s = self.stats();
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
            // The index counts cached blocks as live (they are carved); the
            // user's live figures and the cache's are what `stats` says.
            let figures = s.arenas().iter().find(|a| a.id == id);
            let owner = match arena.live_owner() {
                Some(t) => format!("owned by thread token {t:#x}"),
                None => "no live owner".to_string(),
            };
            if !arena.has_index() {
                writeln!(
                    out,
                    "arena {id} ({owner}): owner slot of arena {}; {} cached in {} block(s); {} adoptions",
                    arena.home().id,
                    Bytes(figures.map_or(0, |a| a.cached_bytes)),
                    figures.map_or(0, |a| a.cached_blocks),
                    arena.adoption_count(),
                )?;
                continue;
            }
            // Size the buffer without holding the lock across the allocation.
            let count = {
                let st = arena.lock_drained(&meta.region);
                st.counters.live_blocks + st.counters.free_blocks + st.counters.chunk_count
            };
            let mut entries = Vec::with_capacity(count + 64);
            let mut truncated = false;
            let st = arena.lock_drained(&meta.region);
            let (counters, largest) = (st.counters, st.largest_free(&meta.region));
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
                let (size, state) = unsafe { ((*b).size(), State::of(b)) };
                entries.push(Entry::Block {
                    payload: block::block_to_payload(b) as usize,
                    size,
                    state,
                });
                true
            });
            drop(st);
            let live_blocks = figures.map_or(counters.live_blocks, |a| a.live_blocks);
            let live_bytes = figures.map_or(counters.live_bytes, |a| a.allocated_bytes);
            let (cached_blocks, cached_bytes) =
                figures.map_or((0, 0), |a| (a.cached_blocks, a.cached_bytes));
            let (locks, contended) = (counters.lock_acquisitions, counters.lock_contended);
            writeln!(
            out,
            "arena {id} ({owner}): {} chunk(s); {} live in {} block(s); {} free in {} block(s), largest {}; {} cached in {} block(s); lock taken {locks} times ({contended} contended); {} remote frees, {} queue-full fallbacks, {} adoptions",
            counters.chunk_count,
            Bytes(live_bytes),
            live_blocks,
            Bytes(counters.free_bytes),
            counters.free_blocks,
            Bytes(largest),
            Bytes(cached_bytes),
            cached_blocks,
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
                state,
            } => {
                let same = entries[i + 1..]
                    .iter()
                    .take_while(|e| matches!(e, Entry::Block { size: s, state: t, .. } if *s == size && *t == state))
                    .count();
                let (name, shown) = (state.name(), Bytes(state.shown_size(size)));
                writeln!(out, "    {payload:#x}  {name:<6}  {shown:>10}")?;
                if same >= 2 {
                    writeln!(out, "    ... {same} more {name} block(s) of {shown}")?;
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
