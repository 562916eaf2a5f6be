//! Stress: the stress-testing mode's per-block record, its fill patterns
//! and its one-line reports (`Config::stress`; `docs/DESIGN.md`, "Stress
//! mode"). The arena side (quarantine FIFO, eviction, the walks) is
//! `arena/quarantine.rs`; the heap side (which path a call takes) is
//! `heap/stress.rs`.
//!
//! A block handed out in stress mode reserves `request + redzone +
//! RECORD` bytes of payload; the record sits at the end, where the block's
//! size (in its header) finds it:
//!
//! ```text
//!  header | payload ......................................................| next block
//!         | request bytes (user) | redzone: REDZONE_FILL ... | Record (64) |
//!         <------ request -------><-- redzone + slack --------><- RECORD -->
//!         <----------------------- cap --------------------->
//!
//!  Record: request | alloc thread, tid | free thread, tid | alloc seq | free seq | next | seal | 0
//! ```
//!
//! Invariants (what the verifications below test, and `check()` proves):
//! * `cap` is the block's payload minus `RECORD` (arena blocks: `size -
//!   HEADER - RECORD`; large runs: `usable - RECORD`), and the record at
//!   `payload + cap` is 16-aligned.
//! * A record is valid iff its `seal` is the hash of its other fields and
//!   its address, and `request <= cap`; anything else is a write past the
//!   redzone or after free that reached it ([`Kind::Record`]).
//! * While the block is live: `[request, redzone_end)` holds
//!   `REDZONE_FILL` ([`Body::redzone_end`]: all of it to `cap` for arena
//!   blocks; `redzone + 64` bytes of a large run), the user's bytes were
//!   filled with `alloc_fill` when handed out, `free_seq == 0`.
//! * While it is quarantined: `[0, cap)` holds `free_fill`; the free
//!   fields name the freeing thread; `next` links the arena's FIFO.
//! * Reports never allocate: one line in a stack buffer (`error::Line`),
//!   one `write(2)`; then `abort()` unless `keep_going`, and each report
//!   is counted (`HeapStats::stress_reports`).
//!
//! Bytes are compared while another thread of the program may be writing
//! them (the bug being hunted): the reads are plain loads of memory the
//! allocator owns, like a poison check in any allocator; a torn read can
//! only make a report name an earlier offset of the same write.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::GRANULE;
use crate::config::Stress;
use crate::error::Line;
use crate::thread::registry;

/// Bytes of the per-block record at the block's end.
pub(crate) const RECORD: usize = core::mem::size_of::<Record>();
/// What a live block's redzone holds.
pub(crate) const REDZONE_FILL: u8 = 0xfa;
/// Rounding slack after the configured redzone that is still verified:
/// more than an arena block's slack can be (16 + a split that was too
/// small, < 48), so an arena block's whole `[request, cap)` is.
const SLACK_VERIFIED: usize = 64;

const _: () = assert!(RECORD == 64 && RECORD % GRANULE == 0);

/// Who did something: the heap's small id for the thread (its registry
/// slot + 1; 0 for a thread without one) and its OS thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Who {
    pub(crate) thread: u32,
    pub(crate) tid: u32,
}

impl Who {
    /// The calling thread (no allocation, no claim: `registry`).
    pub(crate) fn current() -> Who {
        let (thread, tid) = registry::stress_identity();
        Who { thread, tid }
    }

    fn word(self) -> u64 {
        u64::from(self.thread) << 32 | u64::from(self.tid)
    }
}

/// The record at the end of a stress-mode block (module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Record {
    /// Bytes the program asked for.
    pub(crate) request: u64,
    /// The allocating thread.
    pub(crate) alloc: Who,
    /// The freeing thread (zero while live).
    pub(crate) free: Who,
    /// The allocation's global sequence number.
    pub(crate) alloc_seq: u64,
    /// The free's sequence number; 0 while live.
    pub(crate) free_seq: u64,
    /// Quarantined: the next younger quarantined block's header address
    /// (0: this is the tail).
    pub(crate) next: u64,
    /// Hash of the fields above and the record's address.
    seal: u64,
    _zero: u64,
}

impl Record {
    fn sealed_at(&self, at: usize) -> u64 {
        let mut h = at as u64 ^ 0x5354_5245_5353_2121;
        for w in [
            self.request,
            self.alloc.word(),
            self.free.word(),
            self.alloc_seq,
            self.free_seq,
            self.next,
        ] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        h
    }
}

/// The heap-wide part of stress mode: the sequence and the report count.
pub(crate) struct Shared {
    /// The last sequence number handed out (allocations and frees).
    seq: AtomicU64,
    /// Reports written so far.
    reports: AtomicU64,
}

impl Shared {
    pub(crate) const fn new() -> Shared {
        Shared {
            seq: AtomicU64::new(0),
            reports: AtomicU64::new(0),
        }
    }

    /// The next sequence number (from 1). `Relaxed`: a number, not an
    /// ordering; allocations and frees of one block are ordered by the
    /// arena lock, so its alloc number is below its free number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reports written so far.
    pub(crate) fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
}

/// Payload bytes a stress-mode request of `size` reserves.
#[inline]
pub(crate) fn reserve(size: usize, redzone: usize) -> Option<usize> {
    size.checked_add(redzone)?.checked_add(RECORD)
}

/// The payload of one stress-mode block and where its record starts.
#[derive(Clone, Copy)]
pub(crate) struct Body {
    payload: *mut u8,
    cap: usize,
}

impl Body {
    /// The block whose payload is `payload`, with `avail` payload bytes
    /// (record included); `None` if that cannot hold a record.
    ///
    /// # Safety
    ///
    /// `payload..payload + avail` is committed memory of one block that
    /// the caller holds for as long as it uses the value (the block's arena
    /// lock, or the block is live and the caller's), and `payload` is
    /// 16-aligned.
    pub(crate) unsafe fn new(payload: *mut u8, avail: usize) -> Option<Body> {
        let cap = avail.checked_sub(RECORD)?;
        Some(Body {
            payload,
            cap: cap & !(GRANULE - 1),
        })
    }

    /// Payload bytes before the record.
    pub(crate) fn cap(self) -> usize {
        self.cap
    }

    fn record_ptr(self) -> *mut Record {
        self.payload.wrapping_add(self.cap).cast()
    }

    /// The record as stored, verified or not.
    pub(crate) fn raw_record(self) -> Record {
        // SAFETY: the record lies inside the block (`new`), 16-aligned.
        unsafe { self.record_ptr().read() }
    }

    /// The record, if it is valid (module doc).
    pub(crate) fn record(self) -> Option<Record> {
        let r = self.raw_record();
        let ok = r.seal == r.sealed_at(self.record_ptr() as usize) && r.request <= self.cap as u64;
        ok.then_some(r)
    }

    /// Seals and stores `r`.
    pub(crate) fn set_record(self, mut r: Record) {
        r.seal = r.sealed_at(self.record_ptr() as usize);
        r._zero = 0;
        // SAFETY: as in `raw_record`.
        unsafe { self.record_ptr().write(r) };
    }

    /// Where the verified redzone of a `request`-byte block ends.
    pub(crate) fn redzone_end(self, request: usize, redzone: usize) -> usize {
        self.cap.min(
            request
                .saturating_add(redzone)
                .saturating_add(SLACK_VERIFIED),
        )
    }

    /// Fills `[from, to)` (clamped to `cap`) with `byte`.
    pub(crate) fn fill(self, from: usize, to: usize, byte: u8) {
        let to = to.min(self.cap);
        if from < to {
            // SAFETY: `[from, to)` lies inside the block's payload (`new`).
            unsafe { core::ptr::write_bytes(self.payload.wrapping_add(from), byte, to - from) };
        }
    }

    /// The first offset in `[from, to)` (clamped to `cap`) whose byte is
    /// not `byte`.
    pub(crate) fn first_not(self, from: usize, to: usize, byte: u8) -> Option<usize> {
        let to = to.min(self.cap);
        if from >= to {
            return None;
        }
        // SAFETY: as in `fill`; read only.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.payload.wrapping_add(from), to - from) };
        let word = u64::from_ne_bytes([byte; 8]);
        let mut words = bytes.chunks_exact(8);
        let mut at = 0;
        for w in words.by_ref() {
            if <[u8; 8]>::try_from(w).map_or(true, |w| u64::from_ne_bytes(w) != word) {
                break;
            }
            at += 8;
        }
        bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b != byte)
            .map(|i| from + at + i)
    }

    /// Makes this the block of a new allocation of `request` bytes by
    /// `who` at `seq`: the user's bytes filled with `fill` (unless
    /// `None`: `calloc`), the redzone with `REDZONE_FILL`, the record.
    pub(crate) fn stamp_alloc(
        self,
        request: usize,
        redzone: usize,
        who: Who,
        seq: u64,
        fill: Option<u8>,
    ) {
        if let Some(byte) = fill {
            self.fill(0, request, byte);
        }
        self.fill(request, self.redzone_end(request, redzone), REDZONE_FILL);
        self.set_record(Record {
            request: request as u64,
            alloc: who,
            alloc_seq: seq,
            ..Record::default()
        });
    }

    /// What is wrong with this live block, if anything: its record, or
    /// the first redzone byte overwritten.
    pub(crate) fn inspect_live(self, redzone: usize) -> Option<Finding> {
        let Some(rec) = self.record() else {
            return Some(self.record_finding());
        };
        let request = rec.request as usize;
        self.first_not(request, self.redzone_end(request, redzone), REDZONE_FILL)
            .map(|off| self.finding(Kind::Overflow, off, rec))
    }

    /// What is wrong with this quarantined block, if anything: its
    /// record, or the first poisoned byte overwritten.
    pub(crate) fn inspect_quarantined(self, free_fill: u8) -> Option<Finding> {
        let Some(rec) = self.record() else {
            return Some(self.record_finding());
        };
        self.first_not(0, self.cap, free_fill)
            .map(|off| self.finding(Kind::UseAfterFree, off, rec))
    }

    /// A finding at offset `off` of this block.
    pub(crate) fn finding(self, kind: Kind, off: usize, rec: Record) -> Finding {
        Finding {
            kind,
            addr: self.payload as usize + off,
            payload: self.payload as usize,
            rec,
        }
    }

    /// The finding of an invalid record.
    pub(crate) fn record_finding(self) -> Finding {
        Finding {
            kind: Kind::Record,
            addr: self.record_ptr() as usize,
            payload: self.payload as usize,
            rec: Record::default(),
        }
    }
}

/// What a stress-mode verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A quarantined block's poison was overwritten.
    UseAfterFree,
    /// A live block's redzone was overwritten.
    Overflow,
    /// A record does not verify (an overflow past the redzone, or a late
    /// write that reached it).
    Record,
}

/// One stress-mode finding: the first bad byte and the block's record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finding {
    pub(crate) kind: Kind,
    /// The first byte found wrong.
    pub(crate) addr: usize,
    /// The block's payload.
    pub(crate) payload: usize,
    /// The block's record (zeros for `Kind::Record`).
    pub(crate) rec: Record,
}

impl Finding {
    /// The finding as `check()`'s error kind.
    pub(crate) fn error_kind(&self) -> crate::error::HeapErrorKind {
        match self.kind {
            Kind::UseAfterFree => crate::error::HeapErrorKind::UseAfterFree,
            Kind::Overflow | Kind::Record => crate::error::HeapErrorKind::Overflow,
        }
    }
}

/// Writes `f` as one line on stderr and counts it; aborts unless
/// `stress.keep_going`. Allocates nothing and takes no lock: callable with
/// any heap lock held.
///
/// ```text
/// arenalloc: use-after-free write at 0x… (+24 of a 64-byte block allocated by thread 3 [tid 4711] at #1022, freed by thread 5 [tid 4713] at #1090)
/// arenalloc: heap overflow at 0x… (+64 of a 64-byte block allocated by thread 1 [tid 4711] at #7, freed by thread 1 [tid 4711] at #9)
/// arenalloc: heap overflow at 0x… (+64 of a 64-byte block allocated by thread 1 [tid 4711] at #7, still live)
/// arenalloc: stress record overwritten at 0x… (block 0x…: a write past its redzone or after free)
/// ```
#[cold]
#[inline(never)]
pub(crate) fn report(f: &Finding, stress: &Stress, shared: &Shared) {
    shared.reports.fetch_add(1, Ordering::Relaxed);
    let mut line = Line::new();
    line.push(b"arenalloc: ");
    if f.kind == Kind::Record {
        line.push(b"stress record overwritten at ");
        line.push_hex(f.addr);
        line.push(b" (block ");
        line.push_hex(f.payload);
        line.push(b": a write past its redzone or after free)\n");
    } else {
        line.push(match f.kind {
            Kind::UseAfterFree => b"use-after-free write at ",
            _ => b"heap overflow at ",
        });
        line.push_hex(f.addr);
        line.push(b" (+");
        line.push_dec((f.addr - f.payload) as u64);
        line.push(b" of a ");
        line.push_dec(f.rec.request);
        line.push(b"-byte block allocated by ");
        push_who(&mut line, f.rec.alloc, f.rec.alloc_seq);
        if f.rec.free_seq == 0 {
            line.push(b", still live)\n");
        } else {
            line.push(b", freed by ");
            push_who(&mut line, f.rec.free, f.rec.free_seq);
            line.push(b")\n");
        }
    }
    crate::sys::write_stderr(line.bytes());
    if !stress.get_keep_going() {
        crate::sys::abort();
    }
}

/// `thread 3 [tid 4711] at #1022`.
fn push_who(line: &mut Line, who: Who, seq: u64) {
    line.push(b"thread ");
    line.push_dec(u64::from(who.thread));
    line.push(b" [tid ");
    line.push_dec(u64::from(who.tid));
    line.push(b"] at #");
    line.push_dec(seq);
}
