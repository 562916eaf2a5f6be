//! loom models of the cross-thread protocol (`src/remote.rs`).
//!
//! Why a folder of its own rather than `tests/loom.rs`: the models build the
//! library with a different cfg (`arenalloc_loom`), under which nothing in
//! `tests/` compiles as intended and these compile to nothing otherwise;
//! keeping them apart says so in the tree, and the design card asks for
//! `loom_tests/` as their home. Cargo runs this file as the test target
//! `loom` (see `Cargo.toml`).
//!
//! Run with
//! `RUSTFLAGS="--cfg arenalloc_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom`
//! (CI does, in its own target directory). Under `cfg(arenalloc_loom)` the
//! `sync` shim — the only file that names the cfg — swaps the arena lock,
//! the arena's owner and counters atomics, the thread-local binding cache
//! and the remote queue (a loom `Mutex<VecDeque>` with the `ArrayQueue`
//! interface) for loom's, so loom explores every interleaving of those
//! operations up to the bound.
//!
//! Each model ends with every thread joined and asserts that every block
//! ended exactly once free (a second free is a `DoubleFree`, the statistics
//! count each once, nothing stays live that should not), and that
//! `check()` — which drains every queue and walks every arena — passes.

#![cfg(arenalloc_loom)]

use arenalloc::{Config, FreeError, Heap, CHUNK};
use loom::sync::mpsc;
use loom::sync::Arc;
use loom::thread;

/// A block address that may cross threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Block(*mut u8);
// SAFETY: a block is plain heap memory; the models hand each to one thread.
unsafe impl Send for Block {}

/// A small heap: the metadata chunk plus a few arena chunks.
fn heap(queue_capacity: usize) -> Arc<Heap> {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(4)
        .remote_queue_capacity(queue_capacity);
    Arc::new(Heap::with_config(config))
}

fn free(heap: &Heap, b: Block) -> Result<(), FreeError> {
    // SAFETY: the models free each block they own once; a second free is
    // exactly the error the checked API must report.
    unsafe { heap.free(b.0) }
}

/// After the threads joined: queues drain, invariants hold, and `freed`
/// blocks are gone exactly once (unless `live` reuses their memory).
fn settle(heap: &Heap, freed: &[Block], live: &[Block]) {
    heap.check().expect("heap invariants");
    let s = heap.stats();
    assert_eq!(s.live_blocks(), live.len(), "live blocks");
    assert_eq!(
        s.allocations() - s.frees(),
        live.len() as u64,
        "every allocation freed once or live"
    );
    for &b in freed {
        if !live.contains(&b) {
            assert!(!heap.is_allocated(b.0));
            assert_eq!(free(heap, b), Err(FreeError::DoubleFree));
        }
    }
}

fn remote_frees(heap: &Heap) -> u64 {
    heap.stats()
        .arenas()
        .iter()
        .map(|a| a.remote_frees + a.queue_full_fallbacks)
        .sum()
}

/// (1) A foreign free races the owner's allocations and its drain.
#[test]
fn foreign_free_races_owner_alloc_and_drain() {
    loom::model(|| {
        let heap = heap(4);
        let p = Block(heap.malloc(64));
        let q = Block(heap.malloc(64));
        let h = heap.clone();
        let t = thread::spawn(move || free(&h, p).unwrap());
        let r = Block(heap.malloc(200));
        free(&heap, q).unwrap();
        t.join().unwrap();
        settle(&heap, &[p, q], &[r]);
        assert_eq!(remote_frees(&heap), 1);
        free(&heap, r).unwrap();
        settle(&heap, &[p, q, r], &[]);
    });
}

/// (2) With a one-slot queue, the second foreign free finds it full and
/// takes the owner's lock, racing the owner's own alloc/free.
#[test]
fn queue_full_fallback_races_owner() {
    loom::model(|| {
        let heap = heap(1);
        let a = Block(heap.malloc(48));
        let b = Block(heap.malloc(48));
        let h = heap.clone();
        let t = thread::spawn(move || {
            free(&h, a).unwrap();
            free(&h, b).unwrap();
        });
        let c = Block(heap.malloc(500));
        free(&heap, c).unwrap();
        t.join().unwrap();
        settle(&heap, &[a, b, c], &[]);
        assert_eq!(
            remote_frees(&heap),
            2,
            "each foreign free counted once: queued or fallen back"
        );
    });
}

/// (3) The owner exits while frees of its blocks are in flight; a new
/// thread adopts its arena (draining the queue) while another free lands.
#[test]
fn owner_exits_with_frees_in_flight_and_arena_is_adopted() {
    loom::model(|| {
        let heap = heap(4);
        let keep = Block(heap.malloc(16)); // the main thread owns arena 0
        let (tx, rx) = mpsc::channel();
        let h = heap.clone();
        let owner = thread::spawn(move || {
            let a = Block(h.malloc(64));
            let b = Block(h.malloc(64));
            tx.send((a, b)).unwrap();
        });
        let (a, b) = rx.recv().unwrap();
        free(&heap, a).unwrap(); // races the owner's exit
        owner.join().unwrap();
        let h = heap.clone();
        let adopter = thread::spawn(move || {
            let c = Block(h.malloc(64));
            free(&h, c).unwrap();
        });
        free(&heap, b).unwrap(); // races the adoption
        adopter.join().unwrap();
        settle(&heap, &[a, b], &[keep]);
        let adopted: u64 = heap.stats().arenas().iter().map(|s| s.adoptions).sum();
        assert_eq!(
            adopted, 1,
            "the orphaned arena is adopted, not a new one made"
        );
        assert_eq!(heap.stats().arenas().len(), 2);
    });
}

/// (4) Two threads free blocks of the same foreign arena at once while its
/// owner allocates.
#[test]
fn two_threads_free_into_the_same_foreign_arena() {
    loom::model(|| {
        let heap = heap(2);
        let a = Block(heap.malloc(32));
        let b = Block(heap.malloc(32));
        let (h1, h2) = (heap.clone(), heap.clone());
        let t1 = thread::spawn(move || free(&h1, a).unwrap());
        let t2 = thread::spawn(move || free(&h2, b).unwrap());
        let c = Block(heap.malloc(32));
        t1.join().unwrap();
        t2.join().unwrap();
        settle(&heap, &[a, b], &[c]);
        assert_eq!(remote_frees(&heap), 2);
        free(&heap, c).unwrap();
        settle(&heap, &[a, b, c], &[]);
    });
}
