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

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::chunk::{CHUNK, CHUNK_SHIFT};
use crate::error::{FreeError, HeapError, HeapErrorKind};
use crate::region::{ChunkUse, Region};

pub(crate) use crate::config::LARGE_THRESHOLD;

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
/// map while no allocation runs, which is when they must agree).
#[derive(Default)]
pub(crate) struct LargeStats {
    pub(crate) live: AtomicUsize,
    pub(crate) live_bytes: AtomicUsize,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
}

/// Allocates `size` bytes aligned to `align` as a chunk run; null when the
/// region has no such run. The payload is zero-filled (fresh chunks).
pub(crate) fn alloc(region: &Region, stats: &LargeStats, size: usize, align: usize) -> *mut u8 {
    let (offset, align_chunks, skew) = if align >= CHUNK {
        (CHUNK, align >> CHUNK_SHIFT, 1)
    } else {
        (LARGE_HEADER.max(align), 1, 0)
    };
    let Some(total) = size.checked_add(offset) else {
        return core::ptr::null_mut();
    };
    let chunks = total.div_ceil(CHUNK).max(1);
    let Some(head) = region.acquire_large_run(chunks, align_chunks, skew) else {
        return core::ptr::null_mut();
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
    base.wrapping_add(offset)
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
    // SAFETY: we won the header, so the run is ours alone to give back.
    unsafe { region.release(head, chunks) };
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
