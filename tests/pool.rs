//! Issue 9, item 5: only the blocks the internal pool really handed out are
//! valid, and freeing one twice is a double free. Before the fix any
//! granule of the carved pool passed as a live block: `usable_size` read
//! the word before it (5982569173429684063, say) and `free` of it was
//! accepted silently, as often as asked.
//!
//! A `harness = false` binary whose global allocator routes to one of two
//! heaps: `MAIN`, and `SIDE` while a thread has switched to it
//! (`on_side`); frees go to whichever heap holds the address. A thread's
//! first allocation from `SIDE` binds it to a new arena, whose queue
//! buffer is allocated — through this global allocator, so from `SIDE`,
//! while the thread binds — from `SIDE`'s internal pool: real pool blocks,
//! at addresses the test does not know. It finds `SIDE`'s metadata chunk
//! (the region's first chunk) and checks every granule of it.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use arenalloc::{Config, FreeError, Heap, CHUNK, DEFAULT_REMOTE_QUEUE_CAPACITY};

static MAIN: Heap = Heap::new();
static SIDE: Heap = Heap::with_config(Config::new().max_arenas(8).region_size(64 << 20));

thread_local! {
    static ON_SIDE: Cell<bool> = const { Cell::new(false) };
}

struct Router;

// SAFETY: both heaps are allocators whose blocks satisfy the layout; a
// block is freed by the heap that holds it (`SIDE.free` says OutsideHeap
// for any other address and touches nothing then).
unsafe impl GlobalAlloc for Router {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let heap = if ON_SIDE.try_with(Cell::get).unwrap_or(false) {
            &SIDE
        } else {
            &MAIN
        };
        // SAFETY: forwarded.
        unsafe { heap.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of one of the two heaps.
        match unsafe { SIDE.free(ptr) } {
            Ok(()) => {}
            // SAFETY: as above: then it is MAIN's.
            Err(FreeError::OutsideHeap) => unsafe { MAIN.dealloc(ptr, layout) },
            Err(e) => e.abort(ptr),
        }
    }
}

#[global_allocator]
static ROUTER: Router = Router;

/// Allocates (and frees) a block from `SIDE` on this thread, binding it to
/// an arena of `SIDE`; returns the block's address, which is inside
/// `SIDE`'s region.
fn bind_to_side() -> usize {
    ON_SIDE.with(|c| c.set(true));
    let v = black_box(vec![7u8; 100]);
    let addr = v.as_ptr() as usize;
    drop(v);
    ON_SIDE.with(|c| c.set(false));
    addr
}

/// Runs `n` threads that bind to `SIDE`, all alive until each has bound,
/// then exit; returns an address inside `SIDE`'s region.
fn with_bound_threads(n: usize) -> usize {
    let barrier = Arc::new(Barrier::new(n + 1));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, tx) = (barrier.clone(), tx.clone());
            thread::spawn(move || {
                tx.send(bind_to_side()).unwrap();
                barrier.wait();
            })
        })
        .collect();
    let inside = (0..n).map(|_| rx.recv().unwrap()).next().unwrap();
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    inside
}

/// `free` through the checked API.
fn free(addr: usize) -> Result<(), FreeError> {
    // SAFETY: addresses given here are either not live blocks (the heap
    // detects that and touches nothing) or a pool block this test gives up.
    unsafe { SIDE.free(addr as *mut u8) }
}

/// The first chunk of the region containing `inside`: chunk-aligned
/// addresses are never a block's payload (a chunk starts with its header),
/// so `free` classifies them without changing anything, and says
/// `OutsideHeap` once below the region.
fn region_base(inside: usize) -> usize {
    let mut base = inside & !(CHUNK - 1);
    while base >= CHUNK && free(base - CHUNK) != Err(FreeError::OutsideHeap) {
        base -= CHUNK;
    }
    base
}

fn main() {
    const THREADS: usize = 3;
    // The queue buffer of an arena: a slot is a stamp and a value.
    let queue_buffer = DEFAULT_REMOTE_QUEUE_CAPACITY * 2 * std::mem::size_of::<usize>();

    // 1. Three threads bound to SIDE at once: three arenas, three queue
    //    buffers in SIDE's pool, and nothing else there.
    let inside = with_bound_threads(THREADS);
    let base = region_base(inside);
    assert_eq!(SIDE.stats().arenas().len(), THREADS);
    assert!(inside - base < SIDE.stats().reserved_bytes());
    assert_eq!(free(base), Err(FreeError::NotAllocated), "HeapMeta itself");

    // 2. Every granule of the metadata chunk: only the queue buffers are
    //    live blocks, with their real size.
    let mut hits = Vec::new();
    for addr in (base..base + CHUNK).step_by(16) {
        let usable = SIDE.usable_size(addr as *const u8);
        assert_eq!(SIDE.is_allocated(addr as *const u8), usable.is_some());
        // A pool block is answered at its start too (past the inline
        // path, which the metadata's map word turns away).
        assert_eq!(SIDE.usable_size_at_start(addr as *const u8), usable);
        assert_eq!(
            SIDE.malloc_usable_size(addr as *const u8),
            usable.unwrap_or(0)
        );
        if let Some(u) = usable {
            hits.push((addr, u));
        }
    }
    let shown: Vec<_> = hits.iter().take(8).collect();
    assert_eq!(
        hits.len(),
        THREADS,
        "only the queue buffers are pool blocks, not {} addresses such as {shown:x?}",
        hits.len()
    );
    for &(addr, usable) in &hits {
        assert!(
            usable >= queue_buffer && usable.is_power_of_two() && usable < 2 * queue_buffer,
            "{addr:#x}: usable {usable}"
        );
        assert!(!SIDE.is_allocated((addr + 16) as *const u8), "interior");
        assert_eq!(SIDE.usable_size((addr + usable - 16) as *const u8), None);
        assert_eq!(free(addr + 8), Err(FreeError::NotAllocated), "misaligned");
    }
    assert!(SIDE.stats().pool_live_bytes() >= THREADS * queue_buffer);

    // 3. Freeing any other address of the metadata is refused, every time.
    let mut refused = 0;
    for addr in (base..base + CHUNK).step_by(16) {
        if hits.iter().any(|&(a, _)| a == addr) {
            continue;
        }
        assert_eq!(free(addr), Err(FreeError::NotAllocated), "{addr:#x}");
        refused += 1;
    }
    assert_eq!(refused, CHUNK / 16 - THREADS);
    assert_eq!(free(hits[1].0 + 32), Err(FreeError::NotAllocated));
    SIDE.check().unwrap();

    // 4. A real pool block (the queue buffer of an arena whose thread has
    //    exited: a program bug, made here on purpose) is freed once, then
    //    is a double free, and is no longer a live block.
    let (q, usable) = hits[0];
    let before = SIDE.stats();
    assert_eq!(free(q), Ok(()));
    assert_eq!(free(q), Err(FreeError::DoubleFree));
    assert_eq!(free(q), Err(FreeError::DoubleFree));
    assert_eq!(SIDE.usable_size(q as *const u8), None);
    assert_eq!(SIDE.usable_size_at_start(q as *const u8), None);
    assert!(!SIDE.is_allocated(q as *const u8));
    let freed = SIDE.stats();
    let released = before.pool_live_bytes() - freed.pool_live_bytes();
    assert!(released >= usable && released <= usable + 64, "{released}");
    assert_eq!(freed.pool_used_bytes(), before.pool_used_bytes());

    // 5. The freed block is handed out again: four threads bound at once
    //    adopt the three orphaned arenas and create one more, whose queue
    //    buffer is `q` again — the pool does not grow.
    with_bound_threads(THREADS + 1);
    let reused = SIDE.stats();
    assert_eq!(reused.arenas().len(), THREADS + 1);
    assert_eq!(reused.pool_allocations(), before.pool_allocations() + 1);
    assert_eq!(reused.pool_used_bytes(), before.pool_used_bytes());
    assert_eq!(reused.pool_live_bytes(), before.pool_live_bytes());
    assert_eq!(SIDE.usable_size(q as *const u8), Some(usable));
    assert!(reused.pool_used_bytes() <= reused.pool_capacity_bytes());

    MAIN.check().unwrap();
    println!(
        "pool: ok ({} metadata granules refused; pool used {} of {} bytes)",
        refused,
        reused.pool_used_bytes(),
        reused.pool_capacity_bytes()
    );
}
