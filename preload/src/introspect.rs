//! glibc's introspection and tuning entry points over the process heap:
//! `malloc_trim`, `mallinfo2`, `mallinfo`, `malloc_stats`, `malloc_info`
//! and `mallopt`, with glibc's signatures.
//!
//! ```text
//! malloc_trim  → Heap::trim                      (drain, flush, release, purge)
//! mallinfo2    → Heap::stats → mallinfo2_of      (the table below)
//! mallinfo     → mallinfo2, each field saturated at INT_MAX
//! malloc_stats → Heap::stats → Line … → stderr   (glibc's lines + arenalloc's)
//! malloc_info  → Heap::stats → Line … → fwrite   (glibc's XML + <arenalloc/>)
//! mallopt      → Heap::set_max_arenas | Heap::set_purge_min | 0
//! ```
//!
//! How glibc's figures map onto arenalloc's (`arenalloc::HeapStats` and
//! `arenalloc::ArenaStats`); glibc's "mmapped chunks" are arenalloc's large
//! runs (requests above `LARGE_THRESHOLD`, whole chunks of their own), its
//! "fastbins" are arenalloc's owner caches (freed blocks parked uncoalesced
//! for the owner's next allocations):
//!
//! | `mallinfo2` field | glibc | arenalloc |
//! | --- | --- | --- |
//! | `arena` | bytes of the arenas (not mmapped) | Σ arena `committed_bytes` (chunks × 4 MiB) |
//! | `ordblks` | free chunks, fastbins excluded | `free_blocks` (blocks in the free index) |
//! | `smblks` | free fastbin blocks | `cached_blocks` (owner caches) |
//! | `hblks` | mmapped chunks | `large_live` (live large runs) |
//! | `hblkhd` | bytes of mmapped chunks | `large_bytes` (usable bytes of live large runs) |
//! | `usmblks` | always 0 (since 2.24) | 0 (the peak is `malloc_info`'s total `system type="max"`) |
//! | `fsmblks` | bytes of free fastbin blocks | `cached_bytes` |
//! | `uordblks` | in-use bytes of the arenas (mmapped excluded) | Σ arena `allocated_bytes` |
//! | `fordblks` | free bytes, fastbins included | `free_bytes + cached_bytes` |
//! | `keepcost` | bytes `malloc_trim` could release from the top | `large_cached_bytes` (freed large runs kept for reuse: what `malloc_trim` certainly releases) |
//!
//! So, as with glibc, `uordblks + hblkhd` is all the program has in use,
//! and `uordblks + fordblks <= arena` (the rest of `arena` is block and
//! chunk headers, blocks freed by other threads and not yet sent home, and
//! the not-yet-carved ends of chunks). `uordblks` and `hblkhd` count
//! usable bytes (what `malloc_usable_size` says); `fordblks` counts whole
//! blocks, headers included. Every call's figures include the statistics
//! vector `Heap::stats` allocates for it (one `ArenaStats`, under 200
//! bytes, per arena), live while the figures are taken: deltas between two
//! calls cancel it.
//!
//! Deviations from glibc, each on purpose:
//! * `mallinfo`'s `int` fields saturate at `INT_MAX`; glibc truncates the
//!   `size_t` figure (a heap of 4 GiB + 1 reads as 1), which is never
//!   what a caller wants.
//! * `mallopt` returns 0 for a parameter it does not apply (glibc returns
//!   1 for every parameter it does not know: see `mallopt(3)`, BUGS), so
//!   a caller can tell that `M_MMAP_THRESHOLD`, `M_TOP_PAD`, `M_MXFAST`,
//!   … changed nothing. `M_MMAP_THRESHOLD` in particular cannot move:
//!   arenalloc's large threshold is a build-time constant, and lowering it
//!   would send every request above it to a 4 MiB chunk of its own.
//! * `malloc_stats`' `max mmap regions` / `max mmap bytes` are the current
//!   large runs and bytes (arenalloc keeps no peak of them); its per-heap
//!   `system type="max"` in `malloc_info` is the current size (no
//!   per-arena peak either), the total one is the heap's peak committed.
//! * `malloc_info`'s `<sizes>` are empty (the free index keeps no
//!   histogram); each heap and the totals carry an `<arenalloc …/>`
//!   element with arenalloc's own figures.
//!
//! Invariants:
//! * Nothing here runs inside the allocator: the program calls these, so
//!   this thread holds no heap lock. `Heap::stats` allocates its vector
//!   (through this library's `malloc`) before it takes any lock
//!   (`src/inspect/stats.rs`), and frees it when the figures are read;
//!   stdio may `malloc` a stream's buffer inside `fwrite`. Both are
//!   ordinary calls into the heap from outside it.
//! * Formatting allocates nothing and cannot panic: every line is built in
//!   a [`Line`] on the stack and written whole.
//! * Before the heap initialised there is nothing to report: the figures
//!   are zeros and `malloc_trim` returns 0. `mallopt` initialises the heap
//!   first, so that a setting made before the first `malloc` takes effect.

use core::ffi::c_int;

use crate::heap;
use ::heap::line::Line;
use ::heap::HeapStats;

extern "C" {
    /// glibc's standard error stream.
    static mut stderr: *mut libc::FILE;
}

// ----- malloc_trim ---------------------------------------------------------

/// glibc `malloc_trim`: gives free memory back to the OS (`Heap::trim`:
/// queued remote frees applied, this thread's owner cache and exited
/// owners' caches emptied, empty chunks and cached large runs released,
/// free pages of blocks of at least `purge_min` bytes purged). 1 if memory
/// was released, else 0.
///
/// `pad` (the bytes glibc leaves at the top of the main heap) is accepted
/// and ignored: arenalloc has no heap top that grows and shrinks with
/// `brk`; chunks are released whole and free pages purged in place, so
/// there is nothing to leave a pad at.
#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    let _ = pad;
    c_int::from(heap().trim())
}

// ----- mallinfo2, mallinfo -------------------------------------------------

/// glibc's `mallinfo2` fields from `s` (the module doc's table).
fn mallinfo2_of(s: &HeapStats) -> libc::mallinfo2 {
    let arena: usize = s.arenas().iter().map(|a| a.committed_bytes).sum();
    let in_use: usize = s.arenas().iter().map(|a| a.allocated_bytes).sum();
    libc::mallinfo2 {
        arena,
        ordblks: s.free_blocks(),
        smblks: s.cached_blocks(),
        hblks: s.large_live(),
        hblkhd: s.large_bytes(),
        usmblks: 0,
        fsmblks: s.cached_bytes(),
        uordblks: in_use,
        fordblks: s.free_bytes().saturating_add(s.cached_bytes()),
        keepcost: s.large_cached_bytes(),
    }
}

/// glibc 2.33's `mallinfo2`: the heap's figures in `size_t` fields (the
/// module doc maps each).
#[no_mangle]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    mallinfo2_of(&heap().stats())
}

/// `n` as a C `int`, `INT_MAX` if it does not fit (glibc truncates).
fn saturating_int(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// glibc's `mallinfo`: `mallinfo2` in `int` fields, each saturating at
/// `INT_MAX` (glibc truncates).
#[no_mangle]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    let m = mallinfo2();
    libc::mallinfo {
        arena: saturating_int(m.arena),
        ordblks: saturating_int(m.ordblks),
        smblks: saturating_int(m.smblks),
        hblks: saturating_int(m.hblks),
        hblkhd: saturating_int(m.hblkhd),
        usmblks: saturating_int(m.usmblks),
        fsmblks: saturating_int(m.fsmblks),
        uordblks: saturating_int(m.uordblks),
        fordblks: saturating_int(m.fordblks),
        keepcost: saturating_int(m.keepcost),
    }
}

// ----- malloc_stats --------------------------------------------------------

/// Where `malloc_stats` writes: stdio's `stderr`, as glibc does, so that
/// its lines stay in order with the program's own `fprintf(stderr, …)`.
struct Stderr(*mut libc::FILE);

impl Stderr {
    fn get() -> Stderr {
        // SAFETY: `stderr` is glibc's stream pointer, set before any user
        // code runs; reading it (a copy) does not race with anything but a
        // program assigning `stderr`, which C forbids while it is in use.
        Stderr(unsafe { stderr })
    }

    /// `label = value` with glibc's columns (`%-16s = %10lu`).
    fn field(&self, label: &[u8], value: u64) {
        let mut line = Line::new();
        line.push(label);
        for _ in label.len()..16 {
            line.push(b" ");
        }
        line.push(b" = ").num_width(value, 10).push(b"\n");
        self.line(&line);
    }

    fn line(&self, line: &Line) {
        if self.0.is_null() {
            line.write_stderr();
            return;
        }
        // SAFETY: glibc's `stderr` is a valid stream for the whole process
        // (a program that closes it gets what glibc's `malloc_stats` gives).
        unsafe { write_file(line, self.0) };
    }
}

/// glibc's `malloc_stats`: on stderr, per arena glibc's two lines
/// (`system bytes` = committed, `in use bytes` = allocated) then
/// arenalloc's own in the same `label = value` columns; then glibc's
/// `Total (incl. mmap)` block (system bytes = everything committed:
/// metadata, chunks, large runs; `max mmap *` = the current large runs,
/// module doc) and the heap-wide figures.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    let s = heap().stats();
    let out = Stderr::get();
    for a in s.arenas() {
        let mut line = Line::new();
        line.push(b"Arena ").num(u64::from(a.id)).push(b":\n");
        out.line(&line);
        out.field(b"system bytes", a.committed_bytes as u64);
        out.field(b"in use bytes", a.allocated_bytes as u64);
        match a.owner {
            Some(token) => out.field(b"owner thread", token),
            None => {
                let mut line = Line::new();
                line.push(b"owner thread     =       none\n");
                out.line(&line);
            }
        }
        // An owner slot: a thread's cache in front of another arena's
        // index (its figures are that arena's).
        if let Some(home) = a.shares {
            out.field(b"shares arena", u64::from(home));
        }
        out.field(b"live blocks", a.live_blocks as u64);
        out.field(b"chunks", a.chunks as u64);
        out.field(b"free bytes", a.free_bytes as u64);
        out.field(b"free blocks", a.free_blocks as u64);
        out.field(b"largest free", a.largest_free_block as u64);
        out.field(b"cached bytes", a.cached_bytes as u64);
        out.field(b"cached blocks", a.cached_blocks as u64);
        out.field(b"pending blocks", a.pending_blocks as u64);
        out.field(b"resident bytes", a.resident_bytes as u64);
        out.field(b"purged bytes", a.purged_bytes as u64);
        out.field(b"purges", a.purges);
        out.field(b"allocations", a.allocations);
        out.field(b"frees", a.frees);
        out.field(b"remote frees", a.remote_frees);
        out.field(b"queue full", a.queue_full_fallbacks);
        out.field(b"adoptions", a.adoptions);
        out.field(b"lock acquired", a.lock_acquisitions);
        out.field(b"lock contended", a.lock_contended);
    }
    let mut line = Line::new();
    line.push(b"Total (incl. mmap):\n");
    out.line(&line);
    out.field(b"system bytes", s.committed_bytes() as u64);
    out.field(b"in use bytes", s.allocated_bytes() as u64);
    out.field(b"max mmap regions", s.large_live() as u64);
    out.field(b"max mmap bytes", s.large_bytes() as u64);
    out.field(b"large cached", s.large_cached_bytes() as u64);
    out.field(b"peak committed", s.peak_committed_bytes() as u64);
    out.field(b"reserved bytes", s.reserved_bytes() as u64);
    out.field(b"resident bytes", s.resident_bytes() as u64);
    out.field(b"purged bytes", s.purged_bytes() as u64);
    out.field(b"pool used", s.pool_used_bytes() as u64);
    out.field(b"pool capacity", s.pool_capacity_bytes() as u64);
    out.field(b"decay threads", s.decay_threads_started());
}

// ----- malloc_info ---------------------------------------------------------

/// `malloc_info`'s writer: XML lines to a caller's stream.
struct Xml {
    fp: *mut libc::FILE,
    line: Line,
}

impl Xml {
    /// Starts an element line: `<name`.
    fn open(&mut self, name: &[u8]) -> &mut Xml {
        self.line.clear();
        self.line.push(b"<").push(name);
        self
    }

    /// ` key="n"`.
    fn attr(&mut self, key: &[u8], n: u64) -> &mut Xml {
        self.line
            .push(b" ")
            .push(key)
            .push(b"=\"")
            .num(n)
            .push(b"\"");
        self
    }

    /// ` key="text"` (`text` is one of this module's constants: nothing to
    /// escape).
    fn attr_text(&mut self, key: &[u8], text: &[u8]) -> &mut Xml {
        self.line
            .push(b" ")
            .push(key)
            .push(b"=\"")
            .push(text)
            .push(b"\"");
        self
    }

    /// Ends the line with `/>` and writes it.
    fn close(&mut self) {
        self.line.push(b"/>\n");
        self.flush();
    }

    /// Writes `text` (a whole line, tags of this module's) as it is.
    fn raw(&mut self, text: &[u8]) {
        self.line.clear();
        self.line.push(text);
        self.flush();
    }

    /// `<total type=".." count=".." size=".."/>`.
    fn total(&mut self, kind: &[u8], count: usize, size: usize) {
        self.open(b"total")
            .attr_text(b"type", kind)
            .attr(b"count", count as u64)
            .attr(b"size", size as u64)
            .close();
    }

    /// `<element type=".." size=".."/>` (`system`, `aspace`).
    fn sized(&mut self, element: &[u8], kind: &[u8], size: usize) {
        self.open(element)
            .attr_text(b"type", kind)
            .attr(b"size", size as u64)
            .close();
    }

    fn flush(&mut self) {
        // SAFETY: `fp` is the caller's open stream (malloc_info's contract).
        unsafe { write_file(&self.line, self.fp) };
    }
}

/// glibc `malloc_info`: the heap as XML on `fp`, in glibc's elements (one
/// `<heap nr="N">` per arena, then the totals) plus an `<arenalloc …/>`
/// element in each heap and in the totals with arenalloc's own figures.
/// 0 on success; `EINVAL` for `options != 0` or a NULL `fp`, returned as
/// glibc's code does (its manual says -1) and stored in `errno` too.
///
/// # Safety
///
/// `fp` is NULL or an open stream that no other thread closes meanwhile.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    if options != 0 || fp.is_null() {
        crate::set_errno(libc::EINVAL);
        return libc::EINVAL;
    }
    let s = heap().stats();
    let mut x = Xml {
        fp,
        line: Line::new(),
    };
    x.raw(b"<malloc version=\"1\">\n");
    let mut arena_bytes = 0usize;
    for a in s.arenas() {
        arena_bytes = arena_bytes.saturating_add(a.committed_bytes);
        x.open(b"heap").attr(b"nr", u64::from(a.id));
        x.line.push(b">\n");
        x.flush();
        x.raw(b"<sizes>\n");
        x.raw(b"</sizes>\n");
        x.total(b"fast", a.cached_blocks, a.cached_bytes);
        x.total(b"rest", a.free_blocks, a.free_bytes);
        x.sized(b"system", b"current", a.committed_bytes);
        x.sized(b"system", b"max", a.committed_bytes);
        x.sized(b"aspace", b"total", a.committed_bytes);
        x.sized(b"aspace", b"mprotect", a.committed_bytes);
        x.open(b"arenalloc");
        match a.owner {
            Some(token) => x.attr(b"owner", token),
            None => x.attr_text(b"owner", b"none"),
        };
        if let Some(home) = a.shares {
            x.attr(b"shares", u64::from(home));
        }
        x.attr(b"in_use", a.allocated_bytes as u64)
            .attr(b"live_blocks", a.live_blocks as u64)
            .attr(b"chunks", a.chunks as u64)
            .attr(b"largest_free", a.largest_free_block as u64)
            .attr(b"pending_blocks", a.pending_blocks as u64)
            .attr(b"resident", a.resident_bytes as u64)
            .attr(b"purged", a.purged_bytes as u64)
            .attr(b"purges", a.purges)
            .attr(b"allocations", a.allocations)
            .attr(b"frees", a.frees)
            .attr(b"remote_frees", a.remote_frees)
            .attr(b"queue_full", a.queue_full_fallbacks)
            .attr(b"adoptions", a.adoptions)
            .attr(b"lock_acquisitions", a.lock_acquisitions)
            .attr(b"lock_contended", a.lock_contended)
            .close();
        x.raw(b"</heap>\n");
    }
    x.total(b"fast", s.cached_blocks(), s.cached_bytes());
    x.total(b"rest", s.free_blocks(), s.free_bytes());
    x.total(b"mmap", s.large_live(), s.large_bytes());
    x.sized(b"system", b"current", arena_bytes);
    x.sized(b"system", b"max", s.peak_committed_bytes());
    x.sized(b"aspace", b"total", s.reserved_bytes());
    x.sized(b"aspace", b"mprotect", s.committed_bytes());
    x.open(b"arenalloc")
        .attr(b"committed", s.committed_bytes() as u64)
        .attr(b"resident", s.resident_bytes() as u64)
        .attr(b"purged", s.purged_bytes() as u64)
        .attr(b"in_use", s.allocated_bytes() as u64)
        .attr(b"live_blocks", s.live_blocks() as u64)
        .attr(b"large_cached", s.large_cached_bytes() as u64)
        .attr(b"pool_used", s.pool_used_bytes() as u64)
        .attr(b"pool_capacity", s.pool_capacity_bytes() as u64)
        .attr(b"decay_threads", s.decay_threads_started())
        .attr(b"decay_thread", u64::from(s.decay_thread_exists()))
        .close();
    x.raw(b"</malloc>\n");
    0
}

// ----- mallopt -------------------------------------------------------------

/// Builds the heap if nothing has allocated yet, so that a setting made
/// before the first `malloc` reaches it (the setters change a live heap's
/// metadata and refuse a heap that does not exist). Whether it exists.
fn ensure_heap() -> bool {
    let p = heap().malloc(1);
    if p.is_null() {
        return false;
    }
    crate::free_or_abort(p);
    true
}

/// glibc `mallopt`: 1 if the setting was applied, else 0.
///
/// | `param` | effect |
/// | --- | --- |
/// | `M_ARENA_MAX` (-8), `value >= 1` | `Heap::set_max_arenas(value)`: caps the arenas created from now on (clamped to `ARENALLOC_MAX_ARENAS`, which sized the table); threads that bind later share |
/// | `M_TRIM_THRESHOLD` (-1), `value >= 0` | `Heap::set_purge_min(value)`: the smallest free block whose pages decay and `malloc_trim` purge (clamped to one page … one chunk) |
/// | `M_MMAP_THRESHOLD` (-3) | 0: the large threshold is a build-time constant (module doc) |
/// | anything else, or a value out of range | 0, nothing changed |
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    let applied = match (param, usize::try_from(value)) {
        (libc::M_ARENA_MAX, Ok(n)) if n >= 1 => ensure_heap() && heap().set_max_arenas(n),
        (libc::M_TRIM_THRESHOLD, Ok(bytes)) => ensure_heap() && heap().set_purge_min(bytes),
        _ => false,
    };
    c_int::from(applied)
}

/// Writes `line` to the stdio stream `fp`; whether every byte went.
/// (stdio may `malloc` the stream's buffer: the caller holds no heap
/// lock.)
///
/// # Safety
///
/// `fp` is a valid, open `FILE *` that no other thread closes meanwhile.
unsafe fn write_file(line: &Line, fp: *mut libc::FILE) -> bool {
    let text = line.bytes();
    if text.is_empty() {
        return true;
    }
    // SAFETY: 1. `fp` is valid and open (the caller's contract);
    // 2. `text` is initialised memory of `text.len()` bytes that fwrite
    // only reads.
    unsafe { libc::fwrite(text.as_ptr().cast::<libc::c_void>(), 1, text.len(), fp) == text.len() }
}

#[cfg(test)]
mod tests {
    use super::saturating_int;

    #[test]
    fn int_fields_saturate() {
        assert_eq!(saturating_int(0), 0);
        assert_eq!(saturating_int(135_168), 135_168);
        assert_eq!(saturating_int(i32::MAX as usize), i32::MAX);
        assert_eq!(saturating_int((4usize << 30) + 1), i32::MAX);
    }
}
