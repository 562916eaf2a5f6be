//! Model-based tests: random operation sequences against a shadow map of
//! live blocks. Every block is filled with a pattern derived from its id;
//! contents are verified before every free and realloc, `check()` runs every
//! `CHECK_EVERY` operations, and the statistics must reconcile with the
//! shadow at the end. The same suite runs over several configurations.

use arenalloc::{Config, FreeError, Heap, CHUNK, LARGE_THRESHOLD};
use proptest::prelude::*;

const CHECK_EVERY: usize = 100;

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Aligned(usize, usize),
    Free(usize),
    FreeInterior(usize, usize),
    Realloc(usize, usize),
    DoubleFree(usize),
}

/// Sizes from 1 B to several MiB, mostly small, as a real program's are.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..256,
        4 => 256usize..8192,
        2 => 8192usize..(256 << 10),
        1 => (256usize << 10)..(3 * LARGE_THRESHOLD),
        1 => Just(0usize),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => size().prop_map(Op::Malloc),
        2 => (1usize..64, 1usize..512).prop_map(|(n, s)| Op::Calloc(n, s)),
        3 => (4u32..=16, size()).prop_map(|(a, s)| Op::Aligned(1 << a, s)),
        8 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(i, o)| Op::FreeInterior(i, o)),
        4 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => any::<usize>().prop_map(Op::DoubleFree),
    ]
}

struct Live {
    ptr: *mut u8,
    size: usize,
    seed: u8,
}

fn fill(l: &Live) {
    for i in 0..l.size {
        // SAFETY: the block holds at least `size` bytes.
        unsafe { *l.ptr.add(i) = l.seed.wrapping_add(i as u8) };
    }
}

fn verify(l: &Live, upto: usize) {
    for i in 0..upto.min(l.size) {
        // SAFETY: as in `fill`.
        let b = unsafe { *l.ptr.add(i) };
        assert_eq!(
            b,
            l.seed.wrapping_add(i as u8),
            "block {:p} byte {i} corrupted",
            l.ptr
        );
    }
}

fn run(heap: &Heap, ops: &[Op]) {
    let mut live: Vec<Live> = Vec::new();
    let mut freed: Vec<*mut u8> = Vec::new();
    let mut seed = 0u8;
    for (n, op) in ops.iter().enumerate() {
        seed = seed.wrapping_add(37);
        match *op {
            Op::Malloc(size) | Op::Aligned(_, size) | Op::Calloc(_, size) => {
                let (p, size) = match *op {
                    Op::Malloc(_) => (heap.malloc(size), size),
                    Op::Aligned(align, _) => {
                        let p = heap.aligned_alloc(align, size);
                        assert_eq!(p as usize % align, 0);
                        (p, size)
                    }
                    Op::Calloc(count, _) => {
                        let p = heap.calloc(count, size);
                        if !p.is_null() {
                            // SAFETY: calloc returned count * size bytes.
                            let bytes = unsafe { std::slice::from_raw_parts(p, count * size) };
                            assert!(bytes.iter().all(|&b| b == 0), "calloc memory not zeroed");
                        }
                        (p, count * size)
                    }
                    _ => unreachable!(),
                };
                if p.is_null() {
                    continue; // a tiny region may be exhausted: allowed, must stay consistent
                }
                assert_eq!(p as usize % 16, 0);
                assert!(heap.usable_size(p).unwrap() >= size);
                assert!(!live.iter().any(|l| l.ptr == p), "block handed out twice");
                let l = Live { ptr: p, size, seed };
                fill(&l);
                freed.retain(|&f| f != p);
                live.push(l);
            }
            Op::Free(i) | Op::FreeInterior(i, _) if !live.is_empty() => {
                let l = live.swap_remove(i % live.len());
                verify(&l, l.size);
                let r = match *op {
                    Op::FreeInterior(_, off) => {
                        let usable = heap.usable_size(l.ptr).unwrap();
                        // SAFETY: the interior pointer stays inside the block.
                        unsafe { heap.free_containing(l.ptr.add(off % usable)) }
                    }
                    // SAFETY: `l.ptr` is live and forgotten by the model.
                    _ => unsafe { heap.free(l.ptr) },
                };
                assert_eq!(r, Ok(()));
                assert!(!heap.is_allocated(l.ptr));
                freed.push(l.ptr);
            }
            Op::Realloc(i, size) if !live.is_empty() => {
                let idx = i % live.len();
                verify(&live[idx], live[idx].size);
                // SAFETY: the block is live; on success the model forgets it.
                let p = unsafe { heap.realloc(live[idx].ptr, size) };
                if size == 0 {
                    assert!(p.is_null());
                    let l = live.swap_remove(idx);
                    freed.push(l.ptr);
                    continue;
                }
                if p.is_null() {
                    verify(&live[idx], live[idx].size); // the old block is intact
                    continue;
                }
                let old = std::mem::replace(
                    &mut live[idx],
                    Live {
                        ptr: p,
                        size,
                        seed: 0,
                    },
                );
                // Kept bytes carry the old pattern; re-seed the whole block.
                let kept = Live {
                    ptr: p,
                    size: old.size.min(size),
                    seed: old.seed,
                };
                verify(&kept, kept.size);
                live[idx].seed = old.seed;
                fill(&live[idx]);
                if old.ptr != p {
                    freed.push(old.ptr);
                }
                freed.retain(|&f| f != p);
            }
            Op::DoubleFree(i) if !freed.is_empty() => {
                let p = freed[i % freed.len()];
                if heap.is_allocated(p) {
                    continue; // reused by a later allocation (not at the same start)
                }
                // SAFETY: `p` is not live: the heap must report, not corrupt.
                let r = unsafe { heap.free(p) };
                assert!(
                    matches!(r, Err(FreeError::DoubleFree) | Err(FreeError::NotAllocated)),
                    "{r:?}"
                );
            }
            _ => {}
        }
        if n % CHECK_EVERY == CHECK_EVERY - 1 {
            heap.check().unwrap();
        }
    }
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.live_blocks(), live.len());
    let usable: usize = live.iter().map(|l| heap.usable_size(l.ptr).unwrap()).sum();
    assert_eq!(stats.allocated_bytes(), usable);
    for l in live.drain(..) {
        verify(&l, l.size);
        // SAFETY: live and forgotten.
        unsafe { heap.free(l.ptr) }.unwrap();
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
    assert_eq!(heap.stats().allocated_bytes(), 0);
}

/// The configurations every sequence runs on.
/// Hardened (as the test suites run), one arena, the defaults (checks
/// off): the model must hold in both modes; and purging every free page at
/// once (`purge_ms(0)`, smallest block one page), so that `PURGED` blocks
/// are split, merged and reused all the time and `check()` proves the
/// purge accounting after every operation.
fn configs() -> [Config; 4] {
    [
        Config::new().region_size(2 << 30).hardened(true),
        Config::new()
            .region_size(2 << 30)
            .hardened(true)
            .purge_ms(0)
            .purge_min(4096),
        Config::new()
            .region_size(4 * CHUNK)
            .max_arenas(1)
            .hardened(true),
        Config::new(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_the_heap_consistent(ops in prop::collection::vec(op(), 1..600)) {
        for config in configs() {
            let heap = Heap::with_config(config);
            run(&heap, &ops);
        }
    }
}

/// A long fixed-seed run with many live blocks: fragmentation, splitting
/// and coalescing at scale.
#[test]
fn long_churn_with_many_live_blocks() {
    let heap = Heap::with_config(Config::new().region_size(4 << 30).hardened(true));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut ops = Vec::new();
    for _ in 0..20_000 {
        let r = next();
        ops.push(match r % 10 {
            0..=4 => Op::Malloc((next() % 2048) as usize + 1),
            5..=7 => Op::Free(next() as usize),
            8 => Op::Realloc(next() as usize, (next() % 8192) as usize + 1),
            _ => Op::Aligned(1 << (4 + next() % 9), (next() % 512) as usize + 1),
        });
    }
    run(&heap, &ops);
}
