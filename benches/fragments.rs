//! Criterion benchmarks: allocation cost against heap fragmentation, and
//! alloc/free pairs against the system allocator.
//!
//! * `fragments`: one `malloc` + `free` in a heap that holds N free
//!   fragments that cannot coalesce (N = 10 … 1,000,000), for a request that
//!   no fragment fits (`miss_200B`: a first-fit list would walk past all N)
//!   and for one that a fragment fits exactly (`fit_64B`), with the owner
//!   cache off so that the index itself is measured. DESIGN.md asks for
//!   this curve to be flat.
//! * `pairs`: `malloc` + `free` of 16 … 4096 bytes through
//!   [`Heap::malloc`]/[`Heap::free`] (`arenalloc`: the owner cache's fast
//!   path up to 1 KiB), through the heap's `GlobalAlloc` impl
//!   (`arenalloc_global`), with the heap-corruption checks on
//!   (`arenalloc_hardened`), without the owner cache (`arenalloc_locked`:
//!   the locked index on every call) and both (`arenalloc_locked_hardened`),
//!   and through [`std::alloc::System`] (`system`), side by side in one
//!   group.
//!
//! Reproduce (numbers and the machine they came from: `benches/README.md`):
//!
//! ```text
//! cargo bench --bench fragments                        # full run, a few minutes
//! cargo bench --bench fragments -- fragments/          # one group
//! ARENALLOC_BENCH_QUICK=1 cargo bench --bench fragments   # smoke run, no 1M point
//! cargo bench --bench fragments -- --test              # run each benchmark once
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

mod common;
use common::{config, quick};

use arenalloc::{Config, Heap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Free-fragment counts of the `fragments` group.
const FRAGMENT_COUNTS: [usize; 6] = [10, 100, 1_000, 10_000, 100_000, 1_000_000];
/// The largest count, skipped in quick mode (building it takes a while).
const LARGEST_COUNT: usize = 1_000_000;

/// Payload of every block that builds the fragmented heap; freeing every
/// other one leaves fragments of exactly this payload.
const FRAGMENT_PAYLOAD: usize = 64;
/// A request no fragment can serve: a single first-fit list would have to
/// walk past every fragment before reaching the free tail of a chunk.
const MISS_SIZE: usize = 200;
/// A request a fragment serves exactly.
const FIT_SIZE: usize = FRAGMENT_PAYLOAD;

/// Address space for the fragmented heap: 2M blocks of 80 bytes need about
/// 160 MiB; the rest is headroom (reserved, never committed).
const FRAGMENT_REGION: usize = 4 << 30;
/// Address space for the `pairs` heap.
const PAIRS_REGION: usize = 256 << 20;

/// Request sizes of the `pairs` group.
const PAIR_SIZES: [usize; 5] = [16, 64, 256, 1024, 4096];

/// A heap holding `n` free fragments between live blocks.
struct Fragmented {
    heap: Heap,
    /// Free blocks right after building (fragments plus chunk tails).
    free_blocks: usize,
    /// Chunks the arenas own right after building.
    chunks: usize,
}

/// Chunks owned by all arenas of `heap`.
fn chunk_count(heap: &Heap) -> usize {
    heap.stats().arenas().iter().map(|a| a.chunks).sum()
}

/// Allocates `2 * n` blocks of `FRAGMENT_PAYLOAD` bytes, then frees every
/// other one, first included, so that `n` free fragments remain, each
/// between two live blocks (or a live block and the chunk start), none able
/// to coalesce. Checks the count and the heap's invariants.
fn fragmented(n: usize) -> Fragmented {
    // The index itself is measured: no owner cache in front of it.
    let heap = Heap::with_config(Config::new().region_size(FRAGMENT_REGION).owner_cache(0));
    let blocks: Vec<*mut u8> = (0..2 * n).map(|_| heap.malloc(FRAGMENT_PAYLOAD)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()), "heap exhausted");
    for &p in blocks.iter().step_by(2) {
        // SAFETY: `p` is a live block of `heap`, freed once and never used
        // again.
        unsafe { heap.free(p) }.expect("free of a live block");
    }
    heap.check().expect("heap invariants after fragmenting");
    let free_blocks = heap.stats().free_blocks();
    let chunks = chunk_count(&heap);
    // Each chunk may add its free tail, or lose a fragment that coalesced
    // with that tail: at most one block either way per chunk.
    assert!(
        free_blocks.abs_diff(n) <= chunks,
        "{free_blocks} free blocks for {n} fragments in {chunks} chunk(s)"
    );
    Fragmented {
        heap,
        free_blocks,
        chunks,
    }
}

/// Checks, outside the timed loop, that a `malloc(size)` + `free` does what
/// the benchmark claims: `from_fragment` says whether the block must come
/// out of a fragment (one fewer free block while it lives) or from a chunk
/// tail (the tail is split, so the free-block count stays), and the heap is
/// back where it started afterwards, without growing.
fn check_pair(f: &Fragmented, size: usize, from_fragment: bool) {
    let p = f.heap.malloc(size);
    assert!(!p.is_null(), "malloc({size})");
    let during = f.heap.stats().free_blocks();
    let expect = f.free_blocks - usize::from(from_fragment);
    assert_eq!(during, expect, "free blocks while malloc({size}) lives");
    assert_eq!(
        chunk_count(&f.heap),
        f.chunks,
        "malloc({size}) grew the heap"
    );
    // SAFETY: `p` is the live block just allocated, not used again.
    unsafe { f.heap.free(p) }.expect("free of a live block");
    assert_eq!(f.heap.stats().free_blocks(), f.free_blocks);
}

/// One `malloc(size)` + `free` per iteration on `heap`.
fn heap_pair(heap: &Heap, size: usize) {
    let p = heap.malloc(black_box(size));
    assert!(!p.is_null(), "malloc({size})");
    // SAFETY: `p` is the live block just allocated, not used again.
    let r = unsafe { heap.free(black_box(p)) };
    r.expect("free of a live block");
}

fn bench_fragments(c: &mut Criterion) {
    let mut group = c.benchmark_group("fragments");
    let quick = quick();
    for n in FRAGMENT_COUNTS {
        if quick && n == LARGEST_COUNT {
            continue;
        }
        let f = fragmented(n);
        check_pair(&f, MISS_SIZE, false);
        check_pair(&f, FIT_SIZE, true);
        group.bench_with_input(BenchmarkId::new("miss_200B", n), &f, |b, f| {
            b.iter(|| heap_pair(&f.heap, MISS_SIZE));
        });
        group.bench_with_input(BenchmarkId::new("fit_64B", n), &f, |b, f| {
            b.iter(|| heap_pair(&f.heap, FIT_SIZE));
        });
        // The benchmarks left the heap as they found it.
        assert_eq!(f.heap.stats().free_blocks(), f.free_blocks);
        assert_eq!(f.heap.stats().live_blocks(), n);
        f.heap
            .check()
            .expect("heap invariants after the benchmarks");
    }
    group.finish();
}

fn bench_pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pairs");
    let heap = Heap::with_config(Config::new().region_size(PAIRS_REGION));
    // The same heap with the heap-corruption checks on (their cost,
    // benches/RESULTS.md "Hardened checks"), and without the owner cache (the locked index alone: the
    // fast path's gain), side by side.
    let hardened = Heap::with_config(Config::new().region_size(PAIRS_REGION).hardened(true));
    let locked = Heap::with_config(Config::new().region_size(PAIRS_REGION).owner_cache(0));
    let locked_hardened = Heap::with_config(
        Config::new()
            .region_size(PAIRS_REGION)
            .owner_cache(0)
            .hardened(true),
    );
    for size in PAIR_SIZES {
        let layout = Layout::from_size_align(size, 16).expect("valid layout");
        group.bench_with_input(BenchmarkId::new("arenalloc", size), &size, |b, &size| {
            b.iter(|| heap_pair(&heap, size));
        });
        for (name, h) in [
            ("arenalloc_hardened", &hardened),
            ("arenalloc_locked", &locked),
            ("arenalloc_locked_hardened", &locked_hardened),
        ] {
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter(|| heap_pair(h, size));
            });
        }
        group.bench_with_input(
            BenchmarkId::new("arenalloc_global", size),
            &layout,
            |b, &layout| {
                b.iter(|| {
                    // SAFETY: `layout` has a non-zero size.
                    let p = unsafe { heap.alloc(black_box(layout)) };
                    assert!(!p.is_null(), "alloc({size})");
                    // SAFETY: `p` was just allocated by `heap` with `layout`
                    // and is not used again.
                    unsafe { heap.dealloc(black_box(p), layout) };
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("system", size), &layout, |b, &layout| {
            b.iter(|| {
                // SAFETY: `layout` has a non-zero size.
                let p = unsafe { System.alloc(black_box(layout)) };
                assert!(!p.is_null(), "alloc({size})");
                // SAFETY: `p` was just allocated by `System` with `layout`
                // and is not used again.
                unsafe { System.dealloc(black_box(p), layout) };
            });
        });
    }
    group.finish();
    // Every pair was freed: nothing is live, and the heap is consistent.
    for h in [&heap, &hardened, &locked, &locked_hardened] {
        assert_eq!(h.stats().live_blocks(), 0);
        h.check().expect("heap invariants after the pairs");
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_fragments, bench_pairs
}
criterion_main!(benches);
