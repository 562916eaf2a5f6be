//! Fuzz target: arbitrary operation sequences with arbitrary pointers.
//!
//! Where `model.rs` drives well-behaved programs (every free names a live
//! block), this one hands the checked API everything a buggy program
//! could: block starts, interior pointers, headers, one-past-the-end,
//! blocks freed before (reused since or not), addresses near blocks, and
//! addresses outside the heap — to `free`, `free_containing` and the
//! queries. A shadow map of live blocks (and of freed blocks whose memory
//! no allocation has touched since) says what each call must answer:
//!
//! | the address is | `free` | `free_containing` | queries |
//! | --- | --- | --- | --- |
//! | a live block's start | `Ok` | `Ok` | that block |
//! | inside a live block's payload | `NotAllocated` | `Ok` (frees it) | that block |
//! | a freed block's start, not reused | `DoubleFree` | `DoubleFree` | none |
//! | inside a live block's header | `DoubleFree` or `NotAllocated` | an error, not `OutsideHeap` | none |
//! | outside the heap | `OutsideHeap` | `OutsideHeap` | none |
//! | anything else | an error | an error | none |
//!
//! so no call ever frees what is not a live block. Payloads carry a
//! pattern (sampled: both ends and every 4 KiB, so multi-MiB blocks stay
//! cheap) verified before every free and realloc, `calloc` memory must be
//! zero, and `check()` runs after every batch of `BATCH` operations.
//!
//! Cases: `ARENALLOC_FUZZ_CASES` (default `DEFAULT_CASES`), each sequence
//! run on a two-arena heap of a 64 MiB region and a one-arena heap of
//! 24 MiB, small enough that multi-MiB requests exhaust it (null is
//! allowed, and the heap must stay consistent) and chunks go back and forth
//! between the arena, large runs and the region.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use arenalloc::{Config, FreeError, Heap, CHUNK, LARGE_THRESHOLD};
use proptest::prelude::*;

/// Proptest cases when `ARENALLOC_FUZZ_CASES` is not set: about 5 s in
/// release on two cores, mostly `mmap`/`mprotect` time.
const DEFAULT_CASES: u32 = 256;
/// Operations per sequence, at most.
const MAX_OPS: usize = 400;
/// `check()` after every this many operations.
const BATCH: usize = 25;
/// Bytes a block carries its pattern in at each end.
const EDGE: usize = 64;
/// Stride of the pattern between the ends.
const STRIDE: usize = 4096;
/// Block header bytes in front of every arena payload.
const HEADER: usize = 16;

fn cases() -> u32 {
    match std::env::var("ARENALLOC_FUZZ_CASES") {
        Err(_) => DEFAULT_CASES,
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ARENALLOC_FUZZ_CASES must be a whole number, not {s:?}")),
    }
}

/// Two arenas in 64 MiB; one arena in 24 MiB, which multi-MiB requests
/// exhaust often (metadata takes one of its six chunks); two arenas that
/// purge every free page at once (so exhaustion, reclaim and `PURGED`
/// blocks meet).
fn configs() -> [Config; 3] {
    [
        Config::new()
            .region_size(64 << 20)
            .max_arenas(2)
            .hardened(true),
        Config::new()
            .region_size(24 << 20)
            .max_arenas(1)
            .hardened(true),
        Config::new()
            .region_size(64 << 20)
            .max_arenas(2)
            .purge_ms(0)
            .purge_min(4096),
    ]
}

/// Which element of a list an operation means (taken modulo its length).
type Pick = usize;

/// An address computed from the shadow at the time the operation runs.
#[derive(Debug, Clone)]
enum Target {
    LiveStart(Pick),
    /// `start + 1 + off % (usable - 1)`: any byte of the payload but the first.
    Interior(Pick, usize),
    /// `start - k`, `k` in `1..=16`: the header.
    Header(Pick, usize),
    /// `start + usable`: one past the end.
    PastEnd(Pick),
    Freed(Pick),
    /// A byte of a freed block's old payload.
    FreedInterior(Pick, usize),
    /// `start + delta`: near a live block, anywhere within a few MiB.
    Near(Pick, i64),
    /// Outside any heap: the stack, the system allocator, low or high
    /// addresses.
    Outside(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    /// `aligned_alloc(1 << log2, size)`.
    Aligned(u32, usize),
    /// An alignment that is not a power of two: must be null.
    BadAlign(usize, usize),
    Realloc(Pick, usize),
    Free(Target),
    FreeContaining(Target),
    Query(Target),
}

/// Sizes from 0 to a few MiB, odd ones included, mostly small.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        8 => 1usize..128,
        4 => 128usize..8192,
        2 => 8192usize..(512 << 10),
        1 => (512usize << 10)..(3 * LARGE_THRESHOLD),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => any::<Pick>().prop_map(Target::LiveStart),
        3 => (any::<Pick>(), any::<usize>()).prop_map(|(p, o)| Target::Interior(p, o)),
        2 => (any::<Pick>(), 1usize..=HEADER).prop_map(|(p, k)| Target::Header(p, k)),
        1 => any::<Pick>().prop_map(Target::PastEnd),
        3 => any::<Pick>().prop_map(Target::Freed),
        1 => (any::<Pick>(), any::<usize>()).prop_map(|(p, o)| Target::FreedInterior(p, o)),
        2 => (any::<Pick>(), -(8i64 << 20)..(8i64 << 20)).prop_map(|(p, d)| Target::Near(p, d)),
        1 => any::<u8>().prop_map(Target::Outside),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => size().prop_map(Op::Malloc),
        2 => (0usize..64, size()).prop_map(|(n, s)| Op::Calloc(n, s / 64)),
        1 => Just(Op::Calloc(usize::MAX / 2, 3)),
        3 => (0u32..=20, size()).prop_map(|(a, s)| Op::Aligned(a, s)),
        1 => (any::<usize>(), 0usize..64).prop_map(|(a, s)| Op::BadAlign(a, s)),
        4 => (any::<Pick>(), size()).prop_map(|(p, s)| Op::Realloc(p, s)),
        8 => target().prop_map(Op::Free),
        3 => target().prop_map(Op::FreeContaining),
        4 => target().prop_map(Op::Query),
    ]
}

/// The pattern byte at offset `i` of a block filled with `seed`.
fn mark(seed: u64, i: usize) -> u8 {
    common::mix(seed ^ i as u64) as u8
}

/// The offsets of a `len`-byte block that carry the pattern.
fn marked(len: usize) -> impl Iterator<Item = usize> {
    let head = 0..len.min(EDGE);
    let middle = (EDGE..len.saturating_sub(EDGE)).step_by(STRIDE);
    let tail = len.saturating_sub(EDGE).max(EDGE.min(len))..len;
    head.chain(middle).chain(tail)
}

/// A live block as the shadow knows it.
#[derive(Debug)]
struct Block {
    /// What `usable_size` answered when it was made (or last resized).
    usable: usize,
    /// Bytes that carry the pattern: what was asked for.
    len: usize,
    seed: u64,
    /// Served as a large run (a request above `LARGE_THRESHOLD`).
    large: bool,
}

impl Block {
    fn fill(&self, start: usize) {
        for i in marked(self.len) {
            // SAFETY: `i < len <= usable`: inside the live block.
            unsafe { *((start + i) as *mut u8) = mark(self.seed, i) };
        }
    }

    /// Asserts the pattern is intact at offsets below `upto`.
    fn verify(&self, start: usize, upto: usize) {
        for i in marked(self.len).filter(|&i| i < upto) {
            // SAFETY: as in `fill`.
            let got = unsafe { *((start + i) as *const u8) };
            assert_eq!(got, mark(self.seed, i), "block {start:#x} byte {i} changed");
        }
    }

    /// Memory the block occupies, for "has an allocation reused this":
    /// its header and payload, or a large run's whole chunks (a large
    /// header and arena chunk headers sit in them too).
    fn footprint(&self, start: usize) -> Range<usize> {
        let end = start + self.usable;
        if self.large {
            start & !(CHUNK - 1)..end.next_multiple_of(CHUNK)
        } else {
            start - HEADER..end
        }
    }
}

/// A freed block whose memory no allocation made since has touched.
#[derive(Debug)]
struct Freed {
    start: usize,
    footprint: Range<usize>,
}

/// What the shadow says an address is.
#[derive(Debug, PartialEq)]
enum Class {
    LiveStart,
    /// Inside the payload of the live block starting at this address.
    Interior(usize),
    Freed,
    Header,
    Outside,
    Other,
}

#[derive(Default)]
struct Shadow {
    live: BTreeMap<usize, Block>,
    freed: Vec<Freed>,
    next_seed: u64,
}

impl Shadow {
    fn pick_live(&self, pick: Pick) -> Option<(usize, &Block)> {
        let n = self.live.len();
        (n > 0).then(|| self.live.iter().nth(pick % n).map(|(&s, b)| (s, b)))?
    }

    /// The live block whose payload holds `addr`.
    fn containing(&self, addr: usize) -> Option<(usize, &Block)> {
        let (&start, b) = self.live.range(..=addr).next_back()?;
        (addr < start + b.usable).then_some((start, b))
    }

    fn classify(&self, addr: usize, outside: bool) -> Class {
        if outside {
            return Class::Outside;
        }
        if let Some((start, _)) = self.containing(addr) {
            return if start == addr {
                Class::LiveStart
            } else {
                Class::Interior(start)
            };
        }
        if self.freed.iter().any(|f| f.start == addr) {
            return Class::Freed;
        }
        let header = self.live.range(addr..).next().map(|(&s, _)| s - addr);
        if matches!(header, Some(d) if d <= HEADER) {
            return Class::Header;
        }
        Class::Other
    }

    /// Records a block the heap just handed out (or resized) at `start`.
    fn allocated(&mut self, heap: &Heap, start: usize, len: usize) -> &Block {
        assert_eq!(start % 16, 0, "{start:#x} is not 16-aligned");
        let usable = heap
            .usable_size(start as *const u8)
            .expect("a new block is live");
        assert!(usable >= len, "usable {usable} < {len}");
        self.next_seed += 1;
        let b = Block {
            usable,
            len,
            seed: common::mix(self.next_seed),
            large: len > LARGE_THRESHOLD,
        };
        let fp = b.footprint(start);
        let overlaps = |f: &Freed| f.footprint.start < fp.end && fp.start < f.footprint.end;
        self.freed.retain(|f| !overlaps(f));
        if let Some((&s, before)) = self.live.range(..start).next_back() {
            assert!(
                s + before.usable <= start,
                "{start:#x} is inside the live {s:#x}"
            );
        }
        if let Some((&s, _)) = self.live.range(start + 1..).next() {
            assert!(
                start + usable <= s,
                "{start:#x}+{usable} overlaps the live {s:#x}"
            );
        }
        self.live.insert(start, b);
        self.live.get(&start).unwrap()
    }

    /// Forgets the live block at `start` after the heap freed it.
    fn freed(&mut self, start: usize) {
        let b = self.live.remove(&start).expect("freed a shadow block");
        self.freed.push(Freed {
            start,
            footprint: b.footprint(start),
        });
    }

    /// The address `t` names now, and whether it is outside the heap.
    fn resolve(&self, t: &Target, outside: &Outside) -> Option<(usize, bool)> {
        let freed = |p: Pick| (!self.freed.is_empty()).then(|| &self.freed[p % self.freed.len()]);
        Some(match *t {
            Target::LiveStart(p) => (self.pick_live(p)?.0, false),
            Target::Interior(p, off) => {
                let (s, b) = self.pick_live(p)?;
                (s + 1 + off % b.usable.saturating_sub(1).max(1), false)
            }
            Target::Header(p, k) => (self.pick_live(p)?.0 - k, false),
            Target::PastEnd(p) => {
                let (s, b) = self.pick_live(p)?;
                (s + b.usable, false)
            }
            Target::Freed(p) => (freed(p)?.start, false),
            Target::FreedInterior(p, off) => {
                let f = freed(p)?;
                (f.start + off % (f.footprint.end - f.start), false)
            }
            Target::Near(p, delta) => (
                self.pick_live(p)?.0.wrapping_add_signed(delta as isize),
                false,
            ),
            Target::Outside(k) => (outside.addrs[k as usize % outside.addrs.len()], true),
        })
    }
}

/// Memory of the program image, for an outside address.
static STATIC: [u8; 32] = [0; 32];

/// Addresses that no heap of this test owns.
struct Outside {
    addrs: [usize; 5],
    _boxed: Box<[u8; 64]>,
}

impl Outside {
    fn new(stack: &u8) -> Outside {
        let boxed = Box::new([0u8; 64]);
        Outside {
            addrs: [
                stack as *const u8 as usize,
                boxed.as_ptr() as usize,
                16,
                usize::MAX & !15,
                STATIC.as_ptr() as usize,
            ],
            _boxed: boxed,
        }
    }
}

/// Checks every query's answer for `addr` against the shadow.
fn assert_queries(heap: &Heap, shadow: &Shadow, addr: usize) {
    let ptr = addr as *const u8;
    let expect = shadow.containing(addr).map(|(s, b)| (s, b.usable));
    assert_eq!(
        heap.is_allocated(ptr),
        expect.is_some(),
        "is_allocated({ptr:p})"
    );
    assert_eq!(
        heap.usable_size(ptr),
        expect.map(|e| e.1),
        "usable_size({ptr:p})"
    );
    let got = heap
        .allocation_containing(ptr)
        .map(|(s, u)| (s as usize, u));
    assert_eq!(got, expect, "allocation_containing({ptr:p})");
}

fn run(heap: &Heap, ops: &[Op]) {
    let stack_byte = 0u8;
    let outside = Outside::new(&stack_byte);
    let mut sh = Shadow::default();
    for batch in ops.chunks(BATCH) {
        for op in batch {
            step(heap, &mut sh, &outside, op);
        }
        heap.check().unwrap();
    }
    let stats = heap.stats();
    assert_eq!(stats.live_blocks(), sh.live.len());
    let usable: usize = sh.live.values().map(|b| b.usable).sum();
    assert_eq!(stats.allocated_bytes(), usable);
    for start in sh.live.keys().copied().collect::<Vec<_>>() {
        sh.live[&start].verify(start, usize::MAX);
        // SAFETY: live, and forgotten by the shadow below.
        unsafe { heap.free(start as *mut u8) }.unwrap();
        sh.freed(start);
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().live_blocks(), 0);
}

fn step(heap: &Heap, sh: &mut Shadow, outside: &Outside, op: &Op) {
    match *op {
        Op::Malloc(size) => {
            let p = heap.malloc(size);
            if !p.is_null() {
                sh.allocated(heap, p as usize, size).fill(p as usize);
            }
        }
        Op::Calloc(n, size) => {
            let p = heap.calloc(n, size);
            let Some(total) = n.checked_mul(size) else {
                assert!(p.is_null(), "calloc({n}, {size}) overflows");
                return;
            };
            if !p.is_null() {
                // SAFETY: calloc returned `total` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p, total) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "calloc({n}, {size}) not zeroed"
                );
                sh.allocated(heap, p as usize, total).fill(p as usize);
            }
        }
        Op::Aligned(log2, size) => {
            let align = 1usize << log2;
            let p = heap.aligned_alloc(align, size);
            if !p.is_null() {
                assert_eq!(p as usize % align, 0, "aligned_alloc({align}, {size})");
                sh.allocated(heap, p as usize, size).fill(p as usize);
            }
        }
        Op::BadAlign(align, size) => {
            if !align.is_power_of_two() {
                assert!(
                    heap.aligned_alloc(align, size).is_null(),
                    "aligned_alloc({align})"
                );
            }
        }
        Op::Realloc(pick, size) => {
            let Some((start, b)) = sh.pick_live(pick) else {
                return;
            };
            b.verify(start, usize::MAX);
            // SAFETY: `start` is live; the shadow follows what realloc did.
            let p = unsafe { heap.realloc(start as *mut u8, size) } as usize;
            if size == 0 {
                assert_eq!(p, 0, "realloc to 0 frees");
                sh.freed(start);
                return;
            }
            if p == 0 {
                sh.live[&start].verify(start, usize::MAX); // exhausted: intact
                return;
            }
            let old = sh.live.remove(&start).unwrap();
            if p != start {
                sh.freed.push(Freed {
                    start,
                    footprint: old.footprint(start),
                });
            }
            let new = sh.allocated(heap, p, size);
            old.verify(p, size);
            new.fill(p);
        }
        Op::Free(ref t) => {
            let Some((addr, out)) = sh.resolve(t, outside) else {
                return;
            };
            let class = sh.classify(addr, out);
            if class == Class::LiveStart {
                sh.live[&addr].verify(addr, usize::MAX);
            }
            // SAFETY: the checked API; only a live start is given up, and
            // the shadow forgets it.
            let r = unsafe { heap.free(addr as *mut u8) };
            match class {
                Class::LiveStart => {
                    assert_eq!(r, Ok(()), "free({addr:#x})");
                    sh.freed(addr);
                }
                Class::Interior(_) => {
                    assert_eq!(r, Err(FreeError::NotAllocated), "free({addr:#x})")
                }
                Class::Freed => assert_eq!(r, Err(FreeError::DoubleFree), "free({addr:#x})"),
                Class::Header => assert!(
                    matches!(r, Err(FreeError::DoubleFree | FreeError::NotAllocated)),
                    "free({addr:#x}) of a header: {r:?}"
                ),
                Class::Outside => assert_eq!(r, Err(FreeError::OutsideHeap), "free({addr:#x})"),
                Class::Other => assert!(r.is_err(), "free({addr:#x}) of no block: {r:?}"),
            }
        }
        Op::FreeContaining(ref t) => {
            let Some((addr, out)) = sh.resolve(t, outside) else {
                return;
            };
            let class = sh.classify(addr, out);
            let owner = match class {
                Class::LiveStart => Some(addr),
                Class::Interior(start) => Some(start),
                _ => None,
            };
            if let Some(start) = owner {
                sh.live[&start].verify(start, usize::MAX);
            }
            // SAFETY: as for `Op::Free`, for the block containing `addr`.
            let r = unsafe { heap.free_containing(addr as *mut u8) };
            match (class, owner) {
                (_, Some(start)) => {
                    assert_eq!(r, Ok(()), "free_containing({addr:#x})");
                    sh.freed(start);
                }
                (Class::Freed, _) => {
                    assert_eq!(r, Err(FreeError::DoubleFree), "free_containing({addr:#x})")
                }
                (Class::Outside, _) => {
                    assert_eq!(r, Err(FreeError::OutsideHeap), "free_containing({addr:#x})")
                }
                (Class::Header, _) => assert!(
                    matches!(r, Err(FreeError::DoubleFree | FreeError::NotAllocated)),
                    "free_containing({addr:#x}) of a header: {r:?}"
                ),
                _ => assert!(r.is_err(), "free_containing({addr:#x}) of no block: {r:?}"),
            }
        }
        Op::Query(ref t) => {
            if let Some((addr, _)) = sh.resolve(t, outside) {
                assert_queries(heap, sh, addr);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_operations_and_pointers_never_free_what_is_not_live(
        ops in prop::collection::vec(op(), 1..MAX_OPS)
    ) {
        for config in configs() {
            run(&Heap::with_config(config), &ops);
        }
    }
}
