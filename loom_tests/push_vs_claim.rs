//! loom model of a KNOWN BUG, issue 17 item 3: the owner's cache push of
//! one of its own live blocks races a foreign thread's free of the same
//! block (a double free by two threads), and both frees succeed.
//!
//! Not a test target yet: this file is deliberately not in `Cargo.toml`,
//! so CI does not run it until the bug is fixed (then add it to the `loom`
//! target's models, or as a `[[test]]` of its own). To run it meanwhile,
//! add
//!
//! ```toml
//! [[test]]
//! name = "push_vs_claim"
//! path = "loom_tests/push_vs_claim.rs"
//! ```
//!
//! and run
//! `RUSTFLAGS="--cfg arenalloc_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test push_vs_claim`.
//!
//! The race: the owner's push (`Arena::push_with`, on the fast path
//! `cache_push_fast`) reads the block's header, finds it live, and later
//! stores `CACHED` over it with a plain store (`link_cached`). A foreign
//! free's `claim_mt` compare-exchange (live -> `REMOTE_PENDING`) that lands
//! between the read and the store also succeeds: both frees return
//! `Ok(())`, the block is on the owner's cache list and in the arena's
//! remote queue at once, and its header says `CACHED`, so the drain that
//! later pops the queue entry finds no pending block there (a process
//! abort: "double free"). The correct outcome is exactly one `Ok(())` and
//! one `Err(FreeError::DoubleFree)`, with the block in one list only.

#![cfg(arenalloc_loom)]

use arenalloc::{Config, FreeError, Heap, CHUNK};
use loom::sync::Arc;
use loom::thread;

/// A block address that may cross threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Block(*mut u8);
// SAFETY: a block is plain heap memory; the model hands it to both threads
// on purpose (the double free under test) and nobody reads its payload.
unsafe impl Send for Block {}

/// A request the owner cache serves: a 1040-byte block, the largest class.
const SMALL: usize = 1024;

/// As `cached_heap` in `models.rs`: an owner cache of two `SMALL` blocks,
/// so a refill carves three (one for the caller, two parked).
fn cached_heap() -> Arc<Heap> {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(4)
        .remote_queue_capacity(4)
        .owner_cache(2 * (SMALL + 16));
    Arc::new(Heap::with_config(config))
}

fn free(heap: &Heap, b: Block) -> Result<(), FreeError> {
    // SAFETY: the model frees `p` from two threads on purpose: the checked
    // API must report the loser as a `DoubleFree`; nobody uses the block.
    unsafe { heap.free(b.0) }
}

/// (c) The owner frees its own live block `p` into its cache (room for
/// one: the push path, no lock) while a thread that never allocated frees
/// the same `p` (`claim_mt`, then the remote queue). Exactly one must win.
///
/// What loom finds today (its second iteration, one preemption): the owner
/// (`free_fast` -> `cache_push_fast` -> `push_with`) tests `p`'s start bit
/// and reads its header: live; it is preempted in `link_cached` before its
/// `Header::set(.., CACHED)`. The foreign thread tests the start bit, reads
/// the header (live), wins the compare-exchange live -> `REMOTE_PENDING`,
/// pushes `p` on arena 0's queue and returns `Ok(())`. The owner resumes,
/// stores `CACHED` over `REMOTE_PENDING`, links `p` at the head of its class
/// list and returns `Ok(())`: the assertion below fails with both `Ok(())`.
#[test]
fn owners_cache_push_races_a_foreign_free_of_the_same_block() {
    loom::model(|| {
        let heap = cached_heap();
        let p = Block(heap.malloc(SMALL)); // refill: p, two parked
        let q = Block(heap.malloc(SMALL)); // popped: room for one
        let h = heap.clone();
        let foreign = thread::spawn(move || free(&h, p));
        let mine = free(&heap, p); // the cache push
        let theirs = foreign.join().unwrap();
        // Checked before anything drains the queue (which would abort on
        // the losing interleaving).
        assert!(
            matches!(
                (mine, theirs),
                (Ok(()), Err(FreeError::DoubleFree)) | (Err(FreeError::DoubleFree), Ok(()))
            ),
            "exactly one free of p wins: the owner's returned {mine:?}, the foreign one {theirs:?}"
        );
        heap.check().expect("heap invariants");
        let s = heap.stats();
        assert_eq!(s.live_blocks(), 1, "q only");
        assert!(!heap.is_allocated(p.0));
        assert!(heap.is_allocated(q.0));
    });
}
