//! Large: allocations bigger than an arena serves, each a run of whole
//! chunks taken from the region and given back (purged) on free.
//!
//! ```text
//!  head chunk                                    tail chunks
//!  +-------------+-----+------------------------+-----------+-----------+
//!  | LargeHeader | pad | payload ...............................usable |
//!  +-------------+-----+------------------------+-----------+-----------+
//!  ^ CHUNK-aligned     ^ head + offset           map: LargeTail(1), (2), ...
//! ```
//!
//! `offset` is `LARGE_HEADER` rounded up to the alignment; for alignments of
//! a chunk or more the payload starts at the second chunk (`offset = CHUNK`)
//! and the region picks a run whose second chunk is suitably aligned, so any
//! power-of-two alignment the region can hold is served.
//!
//! Invariants:
//! * `header.state == LIVE` iff the run is handed out for an allocation; a
//!   free swaps it to `DEAD` first, so two racing frees of the same pointer
//!   cannot both release the run (the loser reports `DoubleFree`);
//! * `payload + usable == head + chunks * CHUNK`;
//! * the region map marks the head `LargeHead` and chunk `head + d` as
//!   `LargeTail(d)` for `0 < d < chunks`;
//! * the counters in [`LargeStats`] equal what a walk of the map finds.
//!
//! **The run cache.** A freed run is not given back to the region at once:
//! up to `LARGE_CACHE_RUNS` runs and `LARGE_CACHE_BYTES` stay committed,
//! their header `DEAD` and their map entries kept (so a second free of the
//! pointer is still a `DoubleFree`, and queries still say "not allocated"),
//! and the next large request that fits takes one back with no system call
//! (the excess tail chunks of a bigger run go back to the region). A run
//! older than `LARGE_CACHE_AGE_MS` goes back to the region on the next
//! large operation, and every cached run does when the region has no run to
//! give. A cached run is not zero: `alloc(.., zeroed = true)` clears it.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::chunk::{CHUNK, CHUNK_SHIFT};
use crate::config::{LARGE_CACHE_AGE_MS, LARGE_CACHE_BYTES, LARGE_CACHE_RUNS};
use crate::error::{FreeError, HeapError, HeapErrorKind};
use crate::region::{ChunkUse, Region};
use crate::sync::Locked;

const LIVE: usize = 0x4c41_5247_455f_4c56; // "LARGE_LV"
const DEAD: usize = 0x4c41_5247_455f_4444; // "LARGE_DD"

/// Header at the start of a large run's head chunk.
#[repr(C)]
struct LargeHeader {
    state: AtomicUsize,
    payload: usize,
    usable: usize,
    chunks: usize,
}

/// Bytes reserved in front of the payload for the header.
const LARGE_HEADER: usize = 64;
const _: () = assert!(core::mem::size_of::<LargeHeader>() <= LARGE_HEADER);

/// Counters of the large path (`Relaxed`: statistics only; `check` walks the
/// map while no allocation runs, which is when they must agree), and its
/// run cache.
pub(crate) struct LargeStats {
    pub(crate) live: AtomicUsize,
    pub(crate) live_bytes: AtomicUsize,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    /// Freed runs kept committed for reuse (module doc).
    cache: Locked<RunCache>,
}

impl Default for LargeStats {
    fn default() -> LargeStats {
        LargeStats {
            live: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            cache: Locked::new(RunCache {
                runs: [CachedRun::EMPTY; LARGE_CACHE_RUNS],
                bytes: 0,
            }),
        }
    }
}

/// One cached run: its head slot, its length in chunks, when it was freed.
#[derive(Clone, Copy)]
struct CachedRun {
    head: usize,
    chunks: usize,
    freed_ns: u64,
}

impl CachedRun {
    const EMPTY: CachedRun = CachedRun {
        head: 0,
        chunks: 0,
        freed_ns: 0,
    };
}

/// The run cache, under its lock (taken with no arena lock held; it may
/// take the region lock).
struct RunCache {
    runs: [CachedRun; LARGE_CACHE_RUNS],
    /// Bytes of the cached runs.
    bytes: usize,
}

impl RunCache {
    /// Moves the runs older than `LARGE_CACHE_AGE_MS` at `now` out into
    /// `expired` (same slots), for the caller to release after unlocking.
    fn take_expired(&mut self, now: u64, expired: &mut [CachedRun; LARGE_CACHE_RUNS]) {
        for (run, out) in self.runs.iter_mut().zip(expired.iter_mut()) {
            if run.chunks != 0 && now.saturating_sub(run.freed_ns) > LARGE_CACHE_AGE_MS * 1_000_000
            {
                *out = *run;
                *run = CachedRun::EMPTY;
            }
        }
        self.bytes -= expired
            .iter()
            .map(|r| r.chunks << CHUNK_SHIFT)
            .sum::<usize>();
    }
}

impl LargeStats {
    /// Bytes of runs in the cache (statistics).
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cache.lock().0.bytes
    }

    /// The raw lock of the run cache, for `fork` handlers.
    pub(crate) fn raw_lock(&self) -> &crate::sync::RawLock {
        self.cache.raw()
    }

    /// Takes a cached run of at least `chunks` chunks (best fit); a run
    /// more than twice that long gives its excess back to the region, a
    /// shorter one is used whole (its usable size is larger: no system
    /// call). Returns the head and the run's length; `None` if none fits.
    fn take(&self, region: &Region, chunks: usize) -> Option<(usize, usize)> {
        let (mut cache, _) = self.cache.lock();
        let best = (0..LARGE_CACHE_RUNS)
            .filter(|&i| cache.runs[i].chunks >= chunks)
            .min_by_key(|&i| cache.runs[i].chunks)?;
        let run = cache.runs[best];
        cache.runs[best] = CachedRun::EMPTY;
        cache.bytes -= run.chunks << CHUNK_SHIFT;
        drop(cache);
        if run.chunks > 2 * chunks {
            // SAFETY: the tail chunks were part of the cached run we now
            // hold alone; nothing refers to them.
            unsafe { region.release(run.head + chunks, run.chunks - chunks) };
            return Some((run.head, chunks));
        }
        Some((run.head, run.chunks))
    }

    /// Keeps the freed run `head..head+chunks` if it fits; returns whether
    /// it did. Expires old runs on the way.
    fn put(&self, region: &Region, head: usize, chunks: usize) -> bool {
        let now = crate::sys::monotonic_ns();
        let bytes = chunks << CHUNK_SHIFT;
        let mut expired = [CachedRun::EMPTY; LARGE_CACHE_RUNS];
        let kept = {
            let (mut cache, _) = self.cache.lock();
            cache.take_expired(now, &mut expired);
            let slot = cache.runs.iter().position(|r| r.chunks == 0);
            match slot {
                Some(i) if cache.bytes + bytes <= LARGE_CACHE_BYTES => {
                    cache.runs[i] = CachedRun {
                        head,
                        chunks,
                        freed_ns: now,
                    };
                    cache.bytes += bytes;
                    // The decay thread expires it if nobody reuses it.
                    region.decay.want();
                    true
                }
                _ => false,
            }
        };
        for run in expired.iter().filter(|r| r.chunks != 0) {
            // SAFETY: an expired run was ours alone in the cache.
            unsafe { region.release(run.head, run.chunks) };
        }
        kept
    }

    /// Gives back the runs older than `LARGE_CACHE_AGE_MS` (a decay
    /// tick); returns whether runs are still cached.
    pub(crate) fn expire(&self, region: &Region) -> bool {
        let now = crate::sys::monotonic_ns();
        let mut expired = [CachedRun::EMPTY; LARGE_CACHE_RUNS];
        let left = {
            let Some(mut cache) = self.cache.try_lock() else {
                return true;
            };
            cache.take_expired(now, &mut expired);
            cache.bytes != 0
        };
        for run in expired.iter().filter(|r| r.chunks != 0) {
            // SAFETY: an expired run was ours alone in the cache.
            unsafe { region.release(run.head, run.chunks) };
        }
        left
    }

    /// Gives every cached run back to the region (it has nothing else to
    /// give); returns whether there was one.
    pub(crate) fn release_all(&self, region: &Region) -> bool {
        let runs = {
            let (mut cache, _) = self.cache.lock();
            cache.bytes = 0;
            core::mem::replace(&mut cache.runs, [CachedRun::EMPTY; LARGE_CACHE_RUNS])
        };
        let mut any = false;
        for run in runs.iter().filter(|r| r.chunks != 0) {
            // SAFETY: the run was ours alone in the cache.
            unsafe { region.release(run.head, run.chunks) };
            any = true;
        }
        any
    }
}

/// Allocates `size` bytes aligned to `align` as a chunk run — a cached one
/// when one fits — null when the region has no such run. With `zeroed` the
/// payload reads as zero (fresh chunks are; a cached run is cleared).
pub(crate) fn alloc(
    region: &Region,
    stats: &LargeStats,
    size: usize,
    align: usize,
    zeroed: bool,
) -> *mut u8 {
    let (offset, align_chunks, skew) = if align >= CHUNK {
        (CHUNK, align >> CHUNK_SHIFT, 1)
    } else {
        (LARGE_HEADER.max(align), 1, 0)
    };
    let Some(total) = size.checked_add(offset) else {
        return core::ptr::null_mut();
    };
    let mut chunks = total.div_ceil(CHUNK).max(1);
    // Cached runs start at any chunk: only chunk-or-less alignment reuses.
    let cached = if align_chunks == 1 {
        stats.take(region, chunks)
    } else {
        None
    };
    let fresh = cached.is_none();
    let head = match cached {
        Some((head, len)) => {
            chunks = len;
            head
        }
        None => match region.acquire_large_run(chunks, align_chunks, skew) {
            Some(head) => head,
            // The region has no such run: the cached ones go back first.
            None if stats.release_all(region) => {
                match region.acquire_large_run(chunks, align_chunks, skew) {
                    Some(head) => head,
                    None => return core::ptr::null_mut(),
                }
            }
            None => return core::ptr::null_mut(),
        },
    };
    let base = region.chunk_addr(head);
    let header = base.cast::<LargeHeader>();
    let usable = (chunks << CHUNK_SHIFT) - offset;
    // SAFETY: the region handed us this committed run; its first bytes are
    // ours to write the header into.
    unsafe {
        header.write(LargeHeader {
            state: AtomicUsize::new(LIVE),
            payload: base as usize + offset,
            usable,
            chunks,
        });
    }
    stats.live.fetch_add(1, Ordering::Relaxed);
    stats.live_bytes.fetch_add(usable, Ordering::Relaxed);
    stats.allocs.fetch_add(1, Ordering::Relaxed);
    let payload = base.wrapping_add(offset);
    if zeroed && !fresh {
        // SAFETY: the run is ours and committed; `usable` bytes follow the
        // payload inside it.
        unsafe { core::ptr::write_bytes(payload, 0, usable) };
    }
    payload
}

/// The head slot of the large run containing slot `idx`, if it is one.
fn head_of(region: &Region, idx: usize) -> Option<usize> {
    match region.chunk_use(idx) {
        ChunkUse::LargeHead => Some(idx),
        ChunkUse::LargeTail(d) => idx.checked_sub(d as usize),
        _ => None,
    }
}

/// The header of the live run whose payload starts exactly at `ptr`.
fn live_header(region: &Region, ptr: *mut u8) -> Result<(usize, *mut LargeHeader), FreeError> {
    let head = head_of(region, region.chunk_index(ptr as usize)).ok_or(FreeError::NotAllocated)?;
    let header = region.chunk_addr(head).cast::<LargeHeader>();
    // SAFETY: the map says `head` is a handed-out large head chunk, so it is
    // committed and starts with a header.
    let (state, payload) = unsafe { ((*header).state.load(Ordering::Acquire), (*header).payload) };
    match state {
        LIVE if payload == ptr as usize => Ok((head, header)),
        DEAD => Err(FreeError::DoubleFree),
        _ => Err(FreeError::NotAllocated),
    }
}

/// Frees the large allocation at `ptr`.
///
/// # Safety
///
/// `ptr` lies in `region`, in a slot the map marks large; nobody uses the
/// allocation after this call.
pub(crate) unsafe fn free(
    region: &Region,
    stats: &LargeStats,
    ptr: *mut u8,
) -> Result<(), FreeError> {
    let (head, header) = live_header(region, ptr)?;
    // SAFETY: `header` is valid (live_header); the swap makes us the only
    // thread that goes on to release this run.
    let (won, chunks, usable) = unsafe {
        let won = (*header)
            .state
            .compare_exchange(LIVE, DEAD, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        (won, (*header).chunks, (*header).usable)
    };
    if !won {
        return Err(FreeError::DoubleFree);
    }
    stats.live.fetch_sub(1, Ordering::Relaxed);
    stats.live_bytes.fetch_sub(usable, Ordering::Relaxed);
    stats.frees.fetch_add(1, Ordering::Relaxed);
    if !stats.put(region, head, chunks) {
        // SAFETY: we won the header, so the run is ours alone to give back.
        unsafe { region.release(head, chunks) };
    }
    Ok(())
}

/// Resizes the large allocation at `ptr` in place to `size` bytes: gives
/// back whole tail chunks on shrink, takes the following free chunks on
/// growth. Returns whether `ptr` now holds `size` bytes.
///
/// # Safety
///
/// `ptr` is a live large allocation of `region` that the caller owns.
pub(crate) unsafe fn resize_in_place(
    region: &Region,
    stats: &LargeStats,
    ptr: *mut u8,
    size: usize,
) -> bool {
    let Ok((head, header)) = live_header(region, ptr) else {
        return false;
    };
    // SAFETY: the caller owns the live allocation, so nobody else writes its
    // header while we do.
    unsafe {
        let offset = ptr as usize - region.chunk_addr(head) as usize;
        let Some(total) = size.checked_add(offset) else {
            return false;
        };
        let want = total.div_ceil(CHUNK);
        let have = (*header).chunks;
        if want < have {
            region.release(head + want, have - want);
        } else if want > have && !region.try_extend_large_run(head, have, want) {
            return false;
        }
        let usable = (want << CHUNK_SHIFT) - offset;
        let old = (*header).usable;
        (*header).chunks = want;
        (*header).usable = usable;
        stats.live_bytes.fetch_add(usable, Ordering::Relaxed);
        stats.live_bytes.fetch_sub(old, Ordering::Relaxed);
    }
    true
}

/// `(payload, usable)` of the live large allocation containing `addr`.
/// Holds the region lock so a concurrent free cannot unmap the header.
pub(crate) fn containing(region: &Region, addr: usize) -> Option<(usize, usize)> {
    region.with_map_stable(|| containing_locked(region, addr))
}

fn containing_locked(region: &Region, addr: usize) -> Option<(usize, usize)> {
    let head = head_of(region, region.chunk_index(addr))?;
    let header = region.chunk_addr(head).cast::<LargeHeader>();
    // SAFETY: the map marks `head` as a handed-out large head: committed.
    let (state, payload, usable) = unsafe {
        (
            (*header).state.load(Ordering::Acquire),
            (*header).payload,
            (*header).usable,
        )
    };
    (state == LIVE && addr >= payload && addr < payload + usable).then_some((payload, usable))
}

/// One live large allocation, for `dump` and `check`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LargeRun {
    pub(crate) payload: usize,
    pub(crate) usable: usize,
    pub(crate) chunks: usize,
}

/// Calls `f` for every live large run in the region, in address order;
/// stops when `f` returns `false`. Validates each run's map entries and
/// header. Runs being set up or torn down by other threads (header not
/// `LIVE`) are skipped. `f` runs under the region lock: it must not allocate.
pub(crate) fn walk(region: &Region, f: impl FnMut(LargeRun) -> bool) -> Result<(), HeapError> {
    region.with_map_stable(|| walk_locked(region, f))
}

fn walk_locked(region: &Region, mut f: impl FnMut(LargeRun) -> bool) -> Result<(), HeapError> {
    let bad = |idx: usize| HeapError {
        arena: None,
        addr: region.chunk_addr(idx) as usize,
        kind: HeapErrorKind::BadLarge,
    };
    let mut idx = 0;
    while idx < region.chunk_count() {
        match region.chunk_use(idx) {
            ChunkUse::LargeHead => {
                let header = region.chunk_addr(idx).cast::<LargeHeader>();
                // SAFETY: a head slot is committed and starts with a header,
                // and the region lock keeps it from being released meanwhile.
                let (state, payload, usable, chunks) = unsafe {
                    (
                        (*header).state.load(Ordering::Acquire),
                        (*header).payload,
                        (*header).usable,
                        (*header).chunks,
                    )
                };
                if state != LIVE {
                    idx += 1;
                    continue;
                }
                let end = region.chunk_addr(idx) as usize + (chunks << CHUNK_SHIFT);
                if chunks == 0 || idx + chunks > region.chunk_count() || payload + usable != end {
                    return Err(bad(idx));
                }
                for d in 1..chunks {
                    if region.chunk_use(idx + d) != ChunkUse::LargeTail(d as u32) {
                        return Err(bad(idx + d));
                    }
                }
                if !f(LargeRun {
                    payload,
                    usable,
                    chunks,
                }) {
                    return Ok(());
                }
                idx += chunks;
            }
            ChunkUse::LargeTail(_) => idx += 1, // of a run in transition
            _ => idx += 1,
        }
    }
    Ok(())
}
