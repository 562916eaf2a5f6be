//! Quarantine: stress mode's side of an arena, under its lock — the
//! allocation that reserves redzone and record (`stress.rs` draws the
//! block), the free that verifies the redzone, poisons the block and
//! queues it, and the eviction that verifies the poison before the block
//! is really freed into the index (coalescing as usual).
//!
//! The FIFO is intrusive: each quarantined block's record holds the
//! address of the next younger one (`Record::next`), so the poison covers
//! the whole payload and the FIFO costs no memory of its own. It is
//! bounded in bytes (block sizes, headers included): after every free,
//! `bytes <= limit`; the oldest blocks leave first.
//!
//! Invariants (proven by `check`, `check_quarantine` below):
//! * the blocks reached from `head` through `next` links are exactly the
//!   arena's blocks whose header says `QUARANTINED`, each once, oldest
//!   first, the last one `tail`; `blocks` and `bytes` are their count and
//!   total size; `head` is null iff `tail` is iff `blocks == 0`;
//! * every quarantined block is still carved — counted live by the
//!   arena's counters, no neighbour coalesces with it — and is not live
//!   for the user: a second free is `DoubleFree` (`Word::is_live`);
//! * every quarantined block's `[0, cap)` holds the free fill and its
//!   record verifies; every live block's redzone holds `REDZONE_FILL`
//!   (`stress.rs`). A difference is reported, not corrected.
//!
//! Nothing here allocates; reports are one `write(2)` (then `abort` unless
//! `keep_going`), so they may run under the lock.

use super::ArenaState;
use crate::block::{self, Header, Word, QUARANTINED};
use crate::error::{abort_on_corruption, Corruption, HeapError, HeapErrorKind};
use crate::region::Region;
use crate::stress::{self, Body, Finding, Shared, Who};

/// An arena's quarantine (module doc).
pub(crate) struct Fifo {
    /// The oldest quarantined block (null: empty).
    head: *mut Header,
    /// The youngest (null: empty).
    tail: *mut Header,
    /// Quarantined blocks.
    pub(crate) blocks: usize,
    /// Their bytes, headers included.
    pub(crate) bytes: usize,
}

impl Fifo {
    pub(crate) const fn new() -> Fifo {
        Fifo {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            blocks: 0,
            bytes: 0,
        }
    }
}

/// The stress body of block `b` of `size` bytes.
///
/// # Safety
///
/// `b` is a carved block of an arena whose lock the caller holds.
unsafe fn body_of(b: *mut Header, size: usize) -> Option<Body> {
    // SAFETY: the block's payload is `size - HEADER` bytes of our chunk,
    // held under the lock (caller); block payloads are 16-aligned.
    unsafe { Body::new(block::block_to_payload(b), block::block_to_usable(size)) }
}

impl ArenaState {
    /// Whether this arena's heap runs in stress mode.
    #[inline(always)]
    pub(crate) fn stress_on(&self) -> bool {
        self.stress.is_on()
    }

    /// Quarantined blocks and bytes.
    pub(crate) fn quarantined(&self) -> (usize, usize) {
        (self.quarantine.blocks, self.quarantine.bytes)
    }

    /// A stress-mode allocation of `request` bytes that reserves
    /// `reserve` (`stress::reserve`), aligned to `align`, by `who`: the
    /// block is carved as usual and stamped (`Body::stamp_alloc`; `zeroed`
    /// skips the fill: `calloc` zeroes it). Null on exhaustion.
    ///
    /// # Safety
    ///
    /// As for `ArenaState::alloc` with `reserve` as the size.
    pub(crate) unsafe fn stress_alloc(
        &mut self,
        region: &Region,
        request: usize,
        reserve: usize,
        align: usize,
        who: Who,
        shared: &Shared,
    ) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.alloc(region, self.id, reserve, align) };
        if p.is_null() {
            return p;
        }
        let b = block::payload_to_block(p);
        let size = self.hdr(b).size;
        // SAFETY: `b` was just carved, under the lock.
        if let Some(body) = unsafe { body_of(b, size) } {
            let fill = Some(self.stress.get_alloc_fill());
            body.stamp_alloc(
                request,
                self.stress.get_redzone(),
                who,
                shared.next_seq(),
                fill,
            );
        }
        p
    }

    /// The request size of live block `b` (stress mode: its record; the
    /// block's usable size if the record does not verify).
    ///
    /// # Safety
    ///
    /// `b` is a live block of this arena; the lock is held.
    pub(crate) unsafe fn stress_request(&self, b: *mut Header) -> usize {
        let size = self.hdr(b).size;
        // SAFETY: forwarded.
        match unsafe { body_of(b, size) } {
            Some(body) => body.record().map_or(body.cap(), |r| r.request as usize),
            None => block::block_to_usable(size),
        }
    }

    /// A stress-mode free of live block `b` (header word `w`) by `who`:
    /// verifies record and redzone (reporting an overflow), records the
    /// free, poisons `[0, cap)`, marks the block `QUARANTINED` and queues
    /// it, then evicts the oldest blocks while the quarantine is over its
    /// limit. Chunks the evictions empty go back to the region at once
    /// (the lock order allows it, as in `Arena::drain`, `remote.rs`).
    ///
    /// # Safety
    ///
    /// `b` is a live block of this arena (`find_live_word`); the lock is
    /// held.
    pub(crate) unsafe fn stress_free(
        &mut self,
        region: &Region,
        b: *mut Header,
        w: Word,
        who: Who,
        shared: &Shared,
    ) {
        // SAFETY: `b` is live and ours; lock held.
        let Some(body) = (unsafe { body_of(b, w.size) }) else {
            // Cannot happen (every stress block holds a record); free it.
            // SAFETY: as above.
            unsafe { self.free_now(region, b, w.size) };
            return;
        };
        let mut rec = match body.record() {
            Some(rec) => rec,
            None => {
                stress::report(&body.record_finding(), &self.stress, shared);
                body.raw_record()
            }
        };
        rec.free = who;
        rec.free_seq = shared.next_seq();
        rec.next = 0;
        let request = (rec.request as usize).min(body.cap());
        let end = body.redzone_end(request, self.stress.get_redzone());
        if let Some(off) = body.first_not(request, end, stress::REDZONE_FILL) {
            stress::report(
                &body.finding(stress::Kind::Overflow, off, rec),
                &self.stress,
                shared,
            );
        }
        body.fill(0, body.cap(), self.stress.get_free_fill());
        body.set_record(rec);
        // SAFETY: `b` is ours and no other thread may name it (it was live
        // and its free is ours; remote claims fail on a quarantined block).
        unsafe { (*b).set(self.key, w.size, QUARANTINED) };
        let tail = self.quarantine.tail;
        if tail.is_null() {
            self.quarantine.head = b;
        } else {
            // SAFETY: `tail` is a quarantined block of ours (invariant).
            if let Some(t) = unsafe { body_of(tail, self.hdr(tail).size) } {
                let mut r = match t.record() {
                    Some(r) => r,
                    None => {
                        stress::report(&t.record_finding(), &self.stress, shared);
                        t.raw_record()
                    }
                };
                r.next = b as u64;
                t.set_record(r);
            }
        }
        self.quarantine.tail = b;
        self.quarantine.blocks += 1;
        self.quarantine.bytes += w.size;
        let limit = self.stress.get_quarantine();
        while self.quarantine.bytes > limit && !self.quarantine.head.is_null() {
            // SAFETY: lock held.
            unsafe { self.evict_oldest(region, shared) };
        }
    }

    /// Takes the oldest block out of the quarantine, verifies its poison
    /// and record (reporting a use after free) and frees it into the index.
    ///
    /// # Safety
    ///
    /// The lock is held; the quarantine is not empty.
    unsafe fn evict_oldest(&mut self, region: &Region, shared: &Shared) {
        let b = self.quarantine.head;
        let w = self.hdr(b);
        if !w.is_quarantined() {
            abort_on_corruption(b as usize, Corruption::Quarantine);
        }
        // SAFETY: `b` is a quarantined block of ours (just verified).
        let next = match unsafe { body_of(b, w.size) } {
            Some(body) => {
                if let Some(f) = body.inspect_quarantined(self.stress.get_free_fill()) {
                    stress::report(&f, &self.stress, shared);
                }
                body.raw_record().next as usize
            }
            None => 0,
        };
        let cx = self.cx(region);
        if next != 0 && !cx.is_our_block_where(next, |w| w.is_quarantined()) {
            abort_on_corruption(b as usize, Corruption::Quarantine);
        }
        self.quarantine.head = next as *mut Header;
        if next == 0 {
            self.quarantine.tail = core::ptr::null_mut();
        }
        self.quarantine.blocks -= 1;
        self.quarantine.bytes -= w.size;
        // SAFETY: `b` is ours, carved, now out of the quarantine.
        unsafe { self.free_now(region, b, w.size) };
    }

    /// Frees carved block `b` into the index, releasing a chunk it empties.
    ///
    /// # Safety
    ///
    /// `b` is a carved block of ours that nothing else names; lock held.
    unsafe fn free_now(&mut self, region: &Region, b: *mut Header, size: usize) {
        // SAFETY: `b` is ours (caller); `free` wants a block flagged live.
        unsafe {
            (*b).set(self.key, size, 0);
            // A chunk this empties goes back when the guard unlocks.
            self.free(region, b, size);
        }
    }

    /// What is wrong with carved block `b` (header word `w`) in stress
    /// mode, if anything: a quarantined block's poison or record, a live
    /// block's redzone or record. (`check`, the sweep.)
    ///
    /// # Safety
    ///
    /// `b` is a carved block of ours; the lock is held.
    pub(crate) unsafe fn stress_inspect(&self, b: *mut Header, w: Word) -> Option<Finding> {
        // SAFETY: forwarded.
        let body = unsafe { body_of(b, w.size) }?;
        if w.is_quarantined() {
            body.inspect_quarantined(self.stress.get_free_fill())
        } else if w.is_live() {
            body.inspect_live(self.stress.get_redzone())
        } else {
            None
        }
    }

    /// Reports every stress-mode finding in this arena's blocks (the
    /// sweep at exit, `Heap::stress_verify`); returns how many.
    pub(crate) fn stress_sweep(&self, shared: &Shared) -> usize {
        let mut found = 0;
        self.for_each_block(|_, b| {
            if let Some(w) = self.read_carved(b) {
                // SAFETY: `b` is a carved block of ours; lock held.
                if let Some(f) = unsafe { self.stress_inspect(b, w) } {
                    found += 1;
                    stress::report(&f, &self.stress, shared);
                }
            }
            true
        });
        found
    }

    /// `b`'s header word if it verifies and `b` is carved (not free).
    fn read_carved(&self, b: *mut Header) -> Option<Word> {
        // SAFETY: walks hand us block starts of our chunks (lock held).
        unsafe { (*b).read(self.key) }.filter(|w| !w.is_free() && w.size != 0)
    }

    /// The quarantine FIFO against the walk's findings (module doc):
    /// `blocks` quarantined headers of `bytes` bytes.
    pub(crate) fn check_quarantine(
        &self,
        region: &Region,
        blocks: usize,
        bytes: usize,
    ) -> Result<(), HeapError> {
        let bad = |addr: usize| {
            Err(HeapError {
                arena: Some(self.id),
                addr,
                kind: HeapErrorKind::BadQuarantine,
            })
        };
        let q = &self.quarantine;
        if q.blocks != blocks || q.bytes != bytes || q.head.is_null() != (blocks == 0) {
            return bad(q.head as usize);
        }
        let cx = self.cx(region);
        let (mut n, mut sum, mut b, mut last) = (0, 0, q.head, core::ptr::null_mut());
        while !b.is_null() {
            n += 1;
            if n > blocks || !cx.is_our_block_where(b as usize, |w| w.is_quarantined()) {
                return bad(b as usize);
            }
            let size = self.hdr(b).size;
            sum += size;
            // SAFETY: `b` is a quarantined block of ours (just proven).
            let Some(body) = (unsafe { body_of(b, size) }) else {
                return bad(b as usize);
            };
            last = b;
            b = body.raw_record().next as *mut Header;
        }
        if n != blocks || sum != bytes || last != q.tail {
            return bad(last as usize);
        }
        Ok(())
    }
}

impl ArenaState {
    /// Calls `f(request, who, seq)` for every block the user holds (live:
    /// not free, cached, pending or quarantined): in stress mode what its
    /// record says (a record that does not verify gives the block's usable
    /// size and nobody), else the usable size and nobody. For
    /// `Heap::leak_report`; allocates nothing.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(usize, Who, u64)) {
        self.for_each_block(|_, b| {
            let Some(w) = self.read_carved(b).filter(|w| w.is_live()) else {
                return true;
            };
            let usable = block::block_to_usable(w.size);
            let rec = if self.stress_on() {
                // SAFETY: `b` is a live block of ours; the lock is held.
                unsafe { body_of(b, w.size) }.and_then(|body| body.record())
            } else {
                None
            };
            match rec {
                Some(r) => f(r.request as usize, r.alloc, r.alloc_seq),
                None => f(usable, Who::default(), 0),
            }
            true
        });
    }
}
