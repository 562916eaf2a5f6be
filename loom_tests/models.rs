//! loom models of the cross-thread protocol (`src/arena/remote.rs`).
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
//!
//! **Each model fails on a broken variant of the real code** (issue 17,
//! item 4): its doc names the mutation it catches ("Mutation caught
//! (`NAME`)") and how loom reports it. The mutations are patches of
//! `src/` in `loom_tests/mutations/NAME.patch`; `loom_tests/mutations.sh`
//! applies each in turn, runs the models it names, checks that they fail
//! with the failure named here, and reverts it (CI runs it after the
//! models: a rebuild of the library per mutation, about 3 minutes in all):
//! `bash loom_tests/mutations.sh [NAME...]`.
//!
//! Model (16) is of owner slots (`Config::max_indexes`).
//!
//! Models (14) and (15) are ignored: they fail on the code as it is, on
//! two races item 3 of issue 17 left open (their docs say how). Run them
//! with `-- --ignored`.
//!

#![cfg(arenalloc_loom)]

use arenalloc::{Config, FreeError, Heap, CHUNK, LARGE_THRESHOLD};
use loom::sync::mpsc;
use loom::sync::Arc;
use loom::thread;

/// A block address that may cross threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Block(*mut u8);
// SAFETY: a block is plain heap memory; the models hand each to one thread.
unsafe impl Send for Block {}

/// A small heap: the metadata chunk plus a few arena chunks, and no owner
/// cache: models (1)-(4) are of the remote-free protocol on the locked
/// path, as they were written (a cache refill carving 32 blocks through
/// loom's scheduling points would exceed its branch limit); the cache has
/// its own models on `cached_heap`.
fn heap(queue_capacity: usize) -> Arc<Heap> {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(4)
        .remote_queue_capacity(queue_capacity)
        .owner_cache(0);
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
///
/// Mutation caught (`push-before-claim`): `Arena::free_remote_mt` pushing
/// the block on the queue before claiming it (the two steps swapped): loom
/// runs the owner's drain between the push and the claim, the drain finds
/// an entry that is not a pending block, and the process aborts with
/// `arenalloc: double free of 0x…`.
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
///
/// Mutations caught: (`lock-acquire-relaxed`) `RawLock::try_lock`
/// acquiring with a `Relaxed` compare-exchange instead of `Acquire`: loom
/// reports `Causality violation: Concurrent write accesses to
/// UnsafeCell` — the fallback's writes to the arena state race the
/// owner's; (`fallback-forgets-claim`) the queue-full fallback of
/// `free_remote_mt` calling `free_locked(.., false)`, forgetting that it
/// holds the claim: under the lock the block reads as pending, not live,
/// and the free returns `Err(DoubleFree)` (the model's `unwrap` panics).
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
///
/// Mutation caught (`create-before-adopt`): `HeapMeta::choose_arena`
/// trying a new arena before an orphan (two steps in the wrong order): the
/// adopter makes a third arena and the model's `the orphaned arena is
/// adopted, not a new one made` fails (as it does for `adopt-only-unowned`,
/// model (6)'s). The in-flight frees themselves add nothing here that
/// models (1) and (4) do not catch: `check()` drains whatever an adoption
/// would have left queued, so a missing adoption drain goes unseen.
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
///
/// Mutation caught: `push-before-claim`, as (1) (`arenalloc: double free
/// of 0x…`). No mutation found that this model catches and (1) does not:
/// what it adds — two producers on one queue — is crossbeam's `ArrayQueue`,
/// which loom runs as a `Mutex<VecDeque>` stand-in (`sync::MpmcQueue`), not
/// the real code; and the two claims touch different headers.
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

// ----- the owner cache (`src/arena/cache.rs`) ---------------------------------

/// A request the owner cache serves: a 1040-byte block, the largest class.
const SMALL: usize = 1024;
/// A request it does not park (the locked path): a big class of the
/// cache's, but above the big classes' share of `cached_heap`'s byte limit.
const BIG: usize = 2000;
/// A request the cache never serves (above `CACHE_BIG_MAX_REQUEST`, 64
/// KiB), so neither its malloc nor its free is a cache slow path that
/// sends the caller's batches (a free of `BIG` into the full class does).
/// A block this size is never batched either: it is past
/// `REMOTE_BATCH_BYTES` alone.
const UNCACHED: usize = 80 << 10;

/// `heap`, with an owner cache of two `SMALL` blocks: a refill then carves
/// three (one for the caller, two parked), which keeps each model within
/// loom's branch limit while a cache exists, fills and flushes.
fn cached_heap(queue_capacity: usize) -> Arc<Heap> {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(4)
        .remote_queue_capacity(queue_capacity)
        .owner_cache(2 * (SMALL + 16));
    Arc::new(Heap::with_config(config))
}

fn cached_blocks(heap: &Heap) -> usize {
    heap.stats().cached_blocks()
}

/// (5) A foreign free of a block parked in its owner's cache is a double
/// free — refused under the lock, whatever the owner does meanwhile with
/// its lock (here: a locked-path allocation) — and leaves the block parked.
///
/// Mutation caught (`claim-takes-cached`): `Header::claim_remote_mt`
/// refusing only free and already-pending blocks (forgetting `CACHED`):
/// the foreign thread claims the parked block and queues it, and its free
/// returns `Ok(())` (the `assert_eq!` with `Err(DoubleFree)` fails).
#[test]
fn foreign_free_of_a_cached_block_is_a_double_free() {
    loom::model(|| {
        let heap = cached_heap(4);
        let p = Block(heap.malloc(SMALL)); // refill: p, two parked
        let q = Block(heap.malloc(SMALL)); // popped
        free(&heap, p).unwrap(); // parked: the cache is full again
        let h = heap.clone();
        let t = thread::spawn(move || free(&h, p));
        let r = Block(heap.malloc(BIG)); // races the foreign free's lock
        assert_eq!(t.join().unwrap(), Err(FreeError::DoubleFree));
        assert_eq!(cached_blocks(&heap), 2, "p still parked");
        assert_eq!(remote_frees(&heap), 0, "refused, not queued");
        settle(&heap, &[p], &[q, r]);
        // The list is intact: p comes back first.
        assert_eq!(Block(heap.malloc(SMALL)), p);
        for b in [p, q, r] {
            free(&heap, b).unwrap();
        }
        settle(&heap, &[p, q, r], &[]);
    });
}

/// (6) The owner exits with a full cache while a foreign free of one of
/// its live blocks is in flight; the next thread to bind adopts the arena,
/// cache included, and allocates from it while another foreign free lands.
/// The freeing threads never allocate (no arena of their own), so their
/// frees go straight to the arena's queue.
///
/// Mutation caught (`adopt-only-unowned`): `Arena::try_adopt` taking only
/// an arena whose owner word is 0 (forgetting that an exited owner leaves
/// its dead token there): the next thread makes an arena of its own, with
/// a cache of its own, and `the orphan's cache, adopted, less c` fails.
/// Not caught: `try_adopt` leaving `fast_owner` as it was — harmless, the
/// adopter then takes the checked paths of the same cache.
#[test]
fn owner_exits_with_a_full_cache_and_the_adopter_inherits_it() {
    loom::model(|| {
        let heap = cached_heap(4);
        let (tx, rx) = mpsc::channel();
        let h = heap.clone();
        let owner = thread::spawn(move || {
            let a = Block(h.malloc(SMALL)); // refill: a, two parked (full)
            let b = Block(h.malloc(BIG)); // the locked path: not cached
            tx.send((a, b)).unwrap();
        });
        let h = heap.clone();
        let freer = thread::spawn(move || {
            let (a, b) = rx.recv().unwrap();
            free(&h, a).unwrap(); // races the owner's exit
            (a, b)
        });
        owner.join().unwrap();
        let (a, b) = freer.join().unwrap();
        assert_eq!(cached_blocks(&heap), 2, "the orphan keeps its cache");
        let h = heap.clone();
        let adopter = thread::spawn(move || {
            let c = Block(h.malloc(SMALL)); // adopts, pops an inherited block
            assert_eq!(cached_blocks(&h), 1, "the orphan's cache, adopted, less c");
            free(&h, c).unwrap(); // back into the cache it now owns
            c
        });
        free(&heap, b).unwrap(); // races the adoption
        let c = adopter.join().unwrap();
        assert_ne!(c, a, "served from the cache, not from a's freed memory");
        settle(&heap, &[a, b, c], &[]);
        assert_eq!(cached_blocks(&heap), 2);
        assert_eq!(remote_frees(&heap), 2, "each foreign free counted once");
        let s = heap.stats();
        assert_eq!(s.arenas().len(), 1, "adopted, not a new arena made");
        assert_eq!(s.arenas()[0].adoptions, 1);
    });
}

/// (7) Two threads free blocks of one arena (remote frees) while its owner
/// empties its cache and refills it from the index (taking the lock and
/// draining the queue).
///
/// Mutation caught (`cache-pending-uncounted`): `Arena::cache_pending` —
/// the refill's drain putting a remotely freed block on the owner cache —
/// not counting the remote free: in the interleavings where the frees land
/// before the refill, `each remote free counted once` fails (1 or 0 of 2).
#[test]
fn remote_frees_race_the_owners_cache_refill() {
    loom::model(|| {
        let heap = cached_heap(2);
        let a = Block(heap.malloc(SMALL)); // refill: a, two parked
        let b = Block(heap.malloc(SMALL)); // popped: one parked
        let (h1, h2) = (heap.clone(), heap.clone());
        let t1 = thread::spawn(move || free(&h1, a).unwrap());
        let t2 = thread::spawn(move || free(&h2, b).unwrap());
        let c = Block(heap.malloc(SMALL)); // the last parked block
        let d = Block(heap.malloc(SMALL)); // miss: refill under the lock
        t1.join().unwrap();
        t2.join().unwrap();
        settle(&heap, &[a, b], &[c, d]);
        assert_eq!(remote_frees(&heap), 2, "each remote free counted once");
        free(&heap, c).unwrap();
        free(&heap, d).unwrap();
        settle(&heap, &[a, b, c, d], &[]);
    });
}

/// (5b) As (5), but the owner's concurrent free finds its cache full and
/// flushes — giving back the very block the foreign thread is re-freeing.
/// A free into a full class evicts the class's newest block
/// (`Arena::evict_newest`), so `r` is parked first and `p` on top of it:
/// the eviction then frees `p`.
///
/// A bug this model found: the flush used to make a popped block live
/// before freeing it under the lock, so a foreign `claim_mt` in that window
/// succeeded and the double free returned `Ok(())`. Cached blocks are now
/// freed straight from `CACHED` (`Arena::evict_newest`, and the sweep's
/// `Arena::flush_class`).
///
/// Mutation caught (`flush-via-live`): that bug put back — `evict_newest`
/// setting the header live (`Header::set(.., 0)`) before `st.free` — makes
/// loom find the foreign claim between the two and the foreign free
/// returning `Ok(())` (the `assert_eq!` on its result fails).
#[test]
fn foreign_free_of_a_cached_block_races_the_owners_flush() {
    loom::model(|| {
        let heap = cached_heap(4);
        let p = Block(heap.malloc(SMALL)); // refill: p, two parked
        let q = Block(heap.malloc(SMALL)); // popped: one parked
        let r = Block(heap.malloc(SMALL)); // popped: the cache is empty
        free(&heap, r).unwrap(); // parked first (the older)
        free(&heap, p).unwrap(); // parked on top: the cache is full
        let h = heap.clone();
        let t = thread::spawn(move || free(&h, p));
        free(&heap, q).unwrap(); // no room: the eviction frees p, then parks q
        assert_eq!(t.join().unwrap(), Err(FreeError::DoubleFree));
        settle(&heap, &[p, q, r], &[]);
    });
}

/// (9) An owner exits with a full cache; `trim` on another thread — the
/// reclaim decay runs (`src/heap/purge.rs`): owner word dead ->
/// `RECLAIMING` -> 0, the cache freed into the index — races a new thread
/// binding to the heap, which adopts the arena (and its cache) or, finding
/// it under reclaim, makes its own. Either way every cached block ends up
/// exactly once in the cache or the index, and nothing is lost or doubled.
///
/// Mutations caught: (`reclaim-plain-store`) `Arena::begin_reclaim` storing
/// `RECLAIMING` after its check instead of compare-exchanging it: loom
/// runs the binder's adoption between the check and the store, reclaimer
/// and adopter both use the cache, and `check()` reports `BadCache`;
/// (`reclaim-keeps-cache`) `decay_step` not emptying the orphan's cache
/// when it reclaims: when the binder then makes its own arena the heap
/// holds both caches (the orphan's 2, the binder's 1: its free into its
/// full class evicts the 2 newest, `CACHE_FLUSH_BATCH`, and parks `c`) and
/// `s.cached_blocks() <= 2` fails;
/// (`adopt-during-reclaim`) `Arena::try_adopt` forgetting that
/// `RECLAIMING` is no dead token: the binder adopts the arena in the middle
/// of the reclaim, and `check()` reports `BadCache`.
#[test]
fn trim_reclaims_an_orphans_cache_while_a_thread_binds() {
    loom::model(|| {
        let heap = cached_heap(4);
        let h = heap.clone();
        let owner = thread::spawn(move || Block(h.malloc(SMALL))); // refill: two parked
        let a = owner.join().unwrap();
        assert_eq!(cached_blocks(&heap), 2, "the orphan keeps its cache");
        let h = heap.clone();
        let binder = thread::spawn(move || {
            let c = Block(h.malloc(SMALL));
            free(&h, c).unwrap();
            c
        });
        heap.trim(); // races the binding
        let c = binder.join().unwrap();
        free(&heap, a).unwrap();
        settle(&heap, &[a, c], &[]);
        let s = heap.stats();
        let adopted = s.arenas()[0].adoptions == 1;
        assert!(adopted || s.arenas().len() == 2, "adopted, or a new arena");
        assert!(s.cached_blocks() <= 2);
    });
}

// ----- remote-free batches (`Arena::batch_remote_mt`) -------------------------
//
// A thread that owns an arena with its cache on does not push its frees of
// other arenas' blocks one by one: it claims each at once and keeps it in
// its arena's batch for the target, sent as one queue entry by its next
// slow path (`flush_batches`: a cache miss or a full class, adoption, trim,
// the reclaim of an exited owner). `REMOTE_BATCH` is 32, so in these models
// a batch is always sent by a slow path, never by filling up.

/// Unsent batches: every arena's `pending_blocks`, summed.
fn pending_blocks(heap: &Heap) -> usize {
    heap.stats().arenas().iter().map(|a| a.pending_blocks).sum()
}

/// (10) A thread that owns an arena (its cache on) frees two of the main
/// thread's blocks: both are claimed and batched (`batch_remote_mt`), and
/// its next allocation, a cache miss of a new size, sends the batch as one
/// queue entry (`flush_batches`) — racing the main thread's own cache miss,
/// whose refill drains the queue onto its cache (`drain_into` with
/// `to_cache`), the whole batch, link by link. If the batch landed first,
/// the owner's next two allocations are the two freed blocks, off its
/// cache; if not, the refill carved new blocks and the batch is drained
/// later (`stats`). Either way each block comes back exactly once and each
/// remote free is counted once.
///
/// Mutations caught: (`miss-keeps-batches`) the cache-miss path of
/// `Heap::alloc_with` not sending the batches before its refill (a slow
/// path that skips `flush_batches`): the batch is never sent and `each
/// batched free once` fails (0 of 2); (`batch-link-after-free`)
/// `Arena::drain_into` reading a batch block's link after freeing or
/// caching the block (two steps in the wrong order), when the word holds a
/// bin or cache link: the next "entry" is no pending block and the process
/// aborts with `arenalloc: double free of 0x…` (model (11) catches it too).
#[test]
fn batched_remote_frees_race_the_owners_refill() {
    loom::model(|| {
        let heap = cached_heap(4);
        let p = Block(heap.malloc(SMALL)); // refill: p, two parked
        let q = Block(heap.malloc(SMALL)); // popped: one parked
        let h = heap.clone();
        let freer = thread::spawn(move || {
            let x = Block(h.malloc(SMALL)); // binds: arena 1, its cache full
            free(&h, p).unwrap(); // claimed, batched for arena 0
            free(&h, q).unwrap(); // the batch: q -> p

            // A miss of a new class: the batch goes out, then a refill
            // with no room left carves y alone.
            let y = Block(h.malloc(16));
            (x, y)
        });
        let c = Block(heap.malloc(SMALL)); // the last parked block
        let d = Block(heap.malloc(SMALL)); // miss: refill, draining onto the cache
        let (x, y) = freer.join().unwrap();
        let drained = d == p || d == q;
        let e = Block(heap.malloc(SMALL));
        if drained {
            // The batch reached the cache, both blocks: q then p pushed,
            // so p on top.
            assert_eq!((d, e), (p, q), "the whole batch, off the cache");
            assert_eq!(heap.stats().arenas()[0].cached_blocks, 0);
        } else {
            // Carved after the refill found no batch: two parked, one popped.
            assert!(e != p && e != q, "a pending block was handed out");
            assert_eq!(heap.stats().arenas()[0].cached_blocks, 1);
        }
        let s = heap.stats();
        assert_eq!(s.arenas().len(), 2);
        assert_eq!(s.arenas()[0].remote_frees, 2, "each batched free once");
        assert_eq!(s.arenas()[0].queue_full_fallbacks, 0);
        assert_eq!(pending_blocks(&heap), 0, "the batch was sent");
        settle(&heap, &[p, q], &[c, d, e, x, y]);
        // Nothing is listed twice: the next allocations are new blocks.
        let f = Block(heap.malloc(SMALL));
        let g = Block(heap.malloc(SMALL));
        for b in [f, g] {
            assert!(![c, d, e, x, y].contains(&b));
        }
        assert_ne!(f, g);
        settle(&heap, &[p, q], &[c, d, e, f, g, x, y]);
    });
}

/// (11) An owner (its cache on) frees a block of the main thread's arena
/// — claimed and batched — and exits with the batch unsent (its last call,
/// a locked free of its own, sends nothing). `trim` on the main thread
/// reclaims the orphan (owner word dead -> `RECLAIMING`: the batch goes
/// out, the cache is emptied, owner 0) while a new thread binds, which
/// adopts the arena — and sends the batch itself — or, finding it under
/// reclaim, makes its own. The owner's own block and the binder's are of a
/// size the cache does not serve (`UNCACHED`), so no cache slow path of
/// theirs sends the batch; `p` is `BIG`, small enough to stay batched.
/// Either way the block is sent once and freed once, and no batch is left
/// behind.
///
/// Mutation caught (`adopter-keeps-batches`): `HeapMeta::choose_arena` not
/// sending the dead owner's batches when it adopts the arena: in the
/// interleavings where the binder adopts before `trim` can reclaim, nobody
/// sends the batch and `p sent and drained once` fails (0). Not caught:
/// `try_adopt` forgetting that `RECLAIMING` is not a dead token — the
/// batch is sent either way; model (9) catches that one.
#[test]
fn trim_and_adoption_race_to_send_an_orphans_batch() {
    loom::model(|| {
        let heap = cached_heap(4);
        let p = Block(heap.malloc(BIG)); // arena 0, the main thread's
        let h = heap.clone();
        let owner = thread::spawn(move || {
            let x = Block(h.malloc(UNCACHED)); // binds: arena 1, cache on
            free(&h, p).unwrap(); // claimed, batched for arena 0
            free(&h, x).unwrap(); // a locked free of its own: no flush
        });
        owner.join().unwrap();
        assert_eq!(pending_blocks(&heap), 1, "the owner left its batch");
        let h = heap.clone();
        let binder = thread::spawn(move || Block(h.malloc(UNCACHED)));
        heap.trim(); // races the binding
        let c = binder.join().unwrap();
        let s = heap.stats();
        assert_eq!(s.arenas()[0].remote_frees, 1, "p sent and drained once");
        assert_eq!(s.arenas()[0].queue_full_fallbacks, 0);
        assert_eq!(pending_blocks(&heap), 0, "no batch left unsent");
        let adopted = s.arenas()[1].adoptions == 1;
        assert!(
            adopted != (s.arenas().len() == 3),
            "adopted, or a new arena beside the one under reclaim"
        );
        settle(&heap, &[p], &[c]);
    });
}

/// (12) The owner frees its own live block `p` into its cache (room for
/// one: the push path, no lock) while a thread that never allocated frees
/// the same `p` (`claim_mt`, then the remote queue): a double free by two
/// threads. Exactly one must win and the other get `DoubleFree`, at once,
/// with `p` in one list only — so the owner's push turns the header from
/// live to `CACHED` with one compare-exchange (`Header::live_to_cached`),
/// as the claim turns it from live to `REMOTE_PENDING`.
///
/// Mutation caught (`cache-push-plain-store`): with the push's
/// compare-exchange replaced by the plain store it was before
/// (`Header::set(.., CACHED)` after the read), loom finds in its second
/// iteration the owner preempted between its read and its store, the
/// foreign claim winning in between, and both frees returning `Ok(())`.
/// The claim's side too (`claim-plain-store`): `Header::claim_remote_mt`
/// storing `REMOTE_PENDING` over the word it read instead of
/// compare-exchanging it fails the same assertion. And the push's counts
/// (`lost-push-keeps-counts`): it takes its class's room and the byte
/// count before the compare-exchange; a push that loses and does not give
/// them back leaves `check()` a cache whose bytes disagree with its lists
/// (`BadCache`).
#[test]
fn owners_cache_push_races_a_foreign_free_of_the_same_block() {
    loom::model(|| {
        let heap = cached_heap(4);
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
        settle(&heap, &[p], &[q]);
        free(&heap, q).unwrap();
        settle(&heap, &[p, q], &[]);
    });
}

// ----- a double free racing the release of its chunk ---------------------------

/// A heap as `heap(4)` with `max_arenas` arenas, and in its arena 0 a block
/// `p` that is the last live block of its chunk while the arena already
/// keeps one empty chunk: the free of `p` unlinks that chunk
/// (`release_block`; its map entry marked `Free` under the arena lock,
/// `Region::mark_leaving`) and hands it back to the region, which
/// decommits it (`PROT_NONE`).
fn heap_with_a_chunk_to_release(max_arenas: usize) -> (Arc<Heap>, Block) {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(max_arenas)
        .remote_queue_capacity(4)
        .owner_cache(0);
    let heap = Arc::new(Heap::with_config(config));
    // Three of the largest blocks an arena serves fill its first chunk; a
    // fourth takes a chunk of its own.
    let fill = [(); 3].map(|_| Block(heap.malloc(LARGE_THRESHOLD)));
    let p = Block(heap.malloc(LARGE_THRESHOLD));
    for b in fill {
        free(&heap, b).unwrap(); // the first chunk empties: kept
    }
    let s = heap.stats();
    assert_eq!((s.arenas()[0].chunks, s.arenas()[0].live_blocks), (2, 1));
    (heap, p)
}

/// Both frees of `p` returned: exactly one won, one of the two empty
/// chunks went back, and the heap is intact.
fn one_free_won_and_the_chunk_went_back(
    heap: &Heap,
    p: Block,
    results: [Result<(), FreeError>; 2],
) {
    let [a, b] = results;
    assert!(
        matches!(
            (a, b),
            (Ok(()), Err(FreeError::DoubleFree)) | (Err(FreeError::DoubleFree), Ok(()))
        ),
        "exactly one free of p wins: they returned {a:?} and {b:?}"
    );
    settle(heap, &[p], &[]);
    assert_eq!(
        heap.stats().arenas()[0].chunks,
        1,
        "an empty chunk went back"
    );
}

/// (13) A double free racing the release of its chunk, on the locked
/// path: with one arena every free takes its lock (`free_locked`), so two
/// threads freeing `p` at once both read the map (`locate`) without the
/// lock, then queue on it. The first unlinks and releases `p`'s chunk; the
/// second, if it read the map before that, must not read anything in the
/// chunk: under the lock it re-checks that the map still gives the arena
/// the chunk (`is_our_chunk`) and reports `DoubleFree`.
///
/// The map is not a loom object, so loom cannot see a thread read it, and
/// a thread that reads `Free` there returns without a loom operation. The
/// other thread therefore first allocates and frees a block `x` of its
/// own (locked calls on the same arena, which loom sees): loom then runs
/// them before, during and after the main thread's free, and so either
/// free's map read ahead of the other free. (`x` comes from `p`'s chunk
/// while `p` is live — a free of `p` then leaves the chunk in use, and the
/// free of `x` releases it — or from the kept empty chunk once `p`'s went
/// back: one chunk goes back either way.)
///
/// Mutation caught (`free-locked-no-recheck`): without the re-check
/// `free_locked` goes on to `find_live_word` in the released chunk, which
/// reads as zeros there (a released chunk is purged, not protected, since
/// model 14), and answers `NotAllocated` instead of `DoubleFree`: `exactly
/// one free of p wins: they returned Err(NotAllocated) …`. (While released
/// chunks were `PROT_NONE` the same mutation died of SIGSEGV.)
#[test]
fn double_free_races_the_release_of_its_chunk() {
    loom::model(|| {
        let (heap, p) = heap_with_a_chunk_to_release(1);
        let h = heap.clone();
        let other = thread::spawn(move || {
            let x = Block(h.malloc(16));
            free(&h, x).unwrap();
            free(&h, p)
        });
        let mine = free(&heap, p);
        let theirs = other.join().unwrap();
        one_free_won_and_the_chunk_went_back(&heap, p, [mine, theirs]);
    });
}

/// (14) As (13), but the other free is a remote one: with four arenas the
/// other thread binds to an arena of its own (its block `x` comes from a
/// chunk of that arena), so its free of `p` claims the block without the
/// lock (`claim_mt`: the chunk's start bitmap and `p`'s header, read and
/// compare-exchanged in place) and queues it.
///
/// Two things make it pass: the owner's locked free takes `p` from any
/// claim with a compare-exchange (`ArenaState::free_live`, model 15), and
/// an arena chunk that leaves stays readable (`Region::release_arena_chunk`
/// purges it without `PROT_NONE`), so the claim, whose map read (`locate`)
/// preceded the owner's free, reads zeros (or the coalesced free block)
/// there and goes to the locked path, which re-checks the map under the
/// lock and answers `DoubleFree`; a claim that did win something after
/// the chunk left aborts at once (`claim_mt`'s re-check).
///
/// Mutations caught (`release-protects`): `release_arena_chunk`
/// protecting the chunk again (`PROT_NONE` after the purge): SIGSEGV in
/// `Header::claim_remote_mt` under `Arena::claim_mt`; (`free-live-plain`)
/// dropping `free_live`'s compare-exchange: both frees return `Ok(())`.
#[test]
fn remote_double_free_races_the_release_of_its_chunk() {
    loom::model(|| {
        let (heap, p) = heap_with_a_chunk_to_release(4);
        let h = heap.clone();
        let other = thread::spawn(move || {
            let x = Block(h.malloc(16));
            free(&h, x).unwrap();
            free(&h, p)
        });
        let mine = free(&heap, p);
        let theirs = other.join().unwrap();
        one_free_won_and_the_chunk_went_back(&heap, p, [mine, theirs]);
    });
}

/// (15) The owner frees its live block `p` on the locked path (no owner
/// cache, or a block above `CACHE_MAX_REQUEST`) while a thread that never
/// allocated frees the same `p` (a claim, then the queue): model (12)
/// without the cache. Exactly one must win.
///
/// `free_locked` reads `p` live (`find_live_word`) and then frees it, so
/// it first takes the block from any claim with the claim's own
/// compare-exchange (`ArenaState::free_live`).
///
/// Mutation caught (`free-live-plain`): with `free_live`'s compare-exchange dropped (the plain
/// store of `FREE` in `release_block` after the read, as it was), a claim
/// between the two also succeeds — loom's fifth iteration: `exactly one
/// free of p wins: the owner's returned Ok(()), the foreign one Ok(())`;
/// `p` is then in the index and in the queue, and the drain aborts with
/// `arenalloc: double free of 0x…`.
#[test]
fn owners_locked_free_races_a_foreign_free_of_the_same_block() {
    loom::model(|| {
        let heap = heap(4);
        let p = Block(heap.malloc(64));
        let q = Block(heap.malloc(64));
        let h = heap.clone();
        let foreign = thread::spawn(move || free(&h, p));
        let mine = free(&heap, p);
        let theirs = foreign.join().unwrap();
        assert!(
            matches!(
                (mine, theirs),
                (Ok(()), Err(FreeError::DoubleFree)) | (Err(FreeError::DoubleFree), Ok(()))
            ),
            "exactly one free of p wins: the owner's returned {mine:?}, the foreign one {theirs:?}"
        );
        settle(&heap, &[p], &[q]);
    });
}

// ----- owner slots: two owner caches in front of one index ---------------------

/// `cached_heap` with one arena that has an index of its own: the second
/// thread to allocate gets an owner slot in front of it (`max_indexes`).
fn shared_heap(queue_capacity: usize) -> Arc<Heap> {
    let config = Config::new()
        .region_size(8 * CHUNK)
        .max_arenas(4)
        .max_indexes(1)
        .remote_queue_capacity(queue_capacity)
        .owner_cache(2 * (SMALL + 16));
    Arc::new(Heap::with_config(config))
}

/// (16) Two owners of one index — the arena's owner and a thread bound to
/// an owner slot in front of it — free one live block of the index at
/// once, while the slot's refill carves under the shared lock: exactly one
/// push wins (both are the compare-exchange live to `CACHED`), the other
/// is `DoubleFree` at once; `check()` then finds every parked block in
/// one of the two caches, and a block the slot carved is freed by the
/// arena's owner as a local free.
///
/// Mutation caught (`check-own-cache-only`): `Heap::check` counting only
/// the arena's own cache, not its slots' (`HeapMeta::owners_of`): the
/// chunk walk meets more `CACHED` headers than the cache walk counted,
/// and `check()` fails with `BadCache`. And (`slot-locks-its-own`):
/// `Arena::lock` taking the slot's own lock and state, not its arena's:
/// the slot's refill carves from an index nothing walks, and `settle`
/// fails with `live blocks`.
#[test]
fn two_owners_of_one_index_free_one_live_block() {
    loom::model(|| {
        let heap = shared_heap(4);
        let p = Block(heap.malloc(SMALL)); // refill: p, two parked
        let h = heap.clone();
        let slot = thread::spawn(move || {
            // Binds an owner slot; its refill carves from arena 0's index.
            let r = Block(h.malloc(BIG));
            (r, free(&h, p))
        });
        let mine = free(&heap, p);
        let (r, theirs) = slot.join().unwrap();
        assert!(
            matches!(
                (mine, theirs),
                (Ok(()), Err(FreeError::DoubleFree)) | (Err(FreeError::DoubleFree), Ok(()))
            ),
            "exactly one free of p wins: the owner's returned {mine:?}, the slot's {theirs:?}"
        );
        let s = heap.stats();
        assert_eq!(
            s.arenas()[1].shares,
            Some(0),
            "the second thread has a slot"
        );
        assert_eq!(s.arenas()[0].remote_frees, 0, "both frees were local");
        settle(&heap, &[p], &[r]);
        free(&heap, r).unwrap();
        settle(&heap, &[p, r], &[]);
    });
}
