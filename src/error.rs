//! Errors: what a bad free is ([`FreeError`]), what `check` finds
//! ([`HeapError`]), and the one-line abort the unchecked APIs use.
//!
//! Invariant: reporting never allocates and never panics. The abort message
//! is formatted into a stack buffer (`line.rs`: no index can fail) and
//! written with one `write(2)` call, so it is safe with any heap lock held.

use core::fmt;

use crate::line::Line;

/// Why a pointer could not be freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer was already freed: it is the start of a free block, or
    /// points into free heap memory (a freed block that was merged with its
    /// neighbour, or a freed large allocation).
    DoubleFree,
    /// The pointer is inside the heap but is not the start of a live block
    /// (an interior pointer, a misaligned pointer, heap metadata).
    NotAllocated,
    /// The pointer is outside every region of this heap.
    OutsideHeap,
    /// A sized free ([`Heap::free_sized`](crate::Heap::free_sized),
    /// `GlobalAlloc::dealloc`, the `Allocator` trait's `deallocate`, C's
    /// `free_sized`, C++'s sized `delete`) gave a size the live block does
    /// not match: more than its usable bytes (hardened heaps), or other
    /// than its request (stress mode, which records requests). Checked
    /// only in those two modes; the block is not freed, and
    /// [`Heap::usable_size`](crate::Heap::usable_size) says what it holds
    /// (the request, in stress mode). The aborting APIs name both sizes:
    /// `arenalloc: free of 0x… with size 48, block holds 32`.
    ///
    /// (No fields: every internal free path returns a `FreeError`, and one
    /// byte of it travels in a register where two sizes would not.)
    SizeMismatch,
}

// Every free path returns `Result<(), FreeError>`: kept to one byte, it is
// returned in a register, not through memory (see `SizeMismatch`).
const _: () = assert!(core::mem::size_of::<Result<(), FreeError>>() == 1);

impl FreeError {
    /// Appends what the unchecked APIs print before aborting, after
    /// `arenalloc: ` and before the newline, for `ptr` to `line`.
    fn write_message(self, line: &mut Line, ptr: usize) {
        let (what, why) = match self {
            FreeError::DoubleFree => ("double free of ", ""),
            FreeError::NotAllocated => {
                ("free of ", ", which is not the start of an allocated block")
            }
            FreeError::OutsideHeap => ("free of ", ", which is outside every arenalloc heap"),
            FreeError::SizeMismatch => ("free of ", " with a size its block does not match"),
        };
        line.push(what.as_bytes());
        line.hex(ptr);
        line.push(why.as_bytes());
    }
}

impl FreeError {
    /// Prints this error's one-line message for `ptr` on stderr (for
    /// example `arenalloc: double free of 0x7f3a1c008030`) and aborts the
    /// process, as `GlobalAlloc::dealloc` and the C API do. Allocates
    /// nothing.
    pub fn abort(self, ptr: *const u8) -> ! {
        abort_on_free_error(self, ptr)
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::DoubleFree => f.write_str("double free"),
            FreeError::NotAllocated => {
                f.write_str("pointer is not the start of an allocated block")
            }
            FreeError::OutsideHeap => f.write_str("pointer is outside the heap"),
            FreeError::SizeMismatch => f.write_str("size does not match the block"),
        }
    }
}

impl std::error::Error for FreeError {}

/// Which invariant `Heap::check` found broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapErrorKind {
    /// Blocks do not tile their chunk exactly.
    BadTiling,
    /// Two free blocks are adjacent (a missed coalesce).
    AdjacentFree,
    /// A footer (`prev_size`) disagrees with its neighbour.
    FooterMismatch,
    /// A bin holds something other than free blocks of its size range, or
    /// misses some, or its links are broken.
    BinMismatch,
    /// The allocation-start bitmap disagrees with the blocks.
    BitmapMismatch,
    /// An arena's counters disagree with what the walk counted.
    CounterMismatch,
    /// A chunk in an arena's list is not marked as that arena's.
    ChunkNotOwned,
    /// A large allocation's header or chunk map entries are inconsistent.
    BadLarge,
    /// A remote-free queue entry is not a live block of its arena.
    BadRemoteEntry,
    /// A block header's check value, size or flags do not verify
    /// (overwritten by the program: an overflow or underflow).
    BadHeader,
    /// A free-list link fails its safe-linking check or its back link.
    BadLink,
    /// An owner-cache list holds something other than cached blocks of its
    /// class of this arena, or its counts disagree with the blocks marked
    /// cached.
    BadCache,
    /// Stress mode: a quarantined block's poison was overwritten (a write
    /// after free); `addr` is the first byte found changed.
    UseAfterFree,
    /// Stress mode: a live block's redzone (or its record) was overwritten
    /// (a heap overflow); `addr` is the first byte found changed.
    Overflow,
    /// Stress mode: an arena's quarantine FIFO disagrees with the blocks
    /// marked quarantined, or with its counts.
    BadQuarantine,
}

/// An invariant violation found by `Heap::check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapError {
    /// The arena it was found in (`None`: large allocations or the region).
    pub arena: Option<u32>,
    /// The address of the offending block or chunk (0 when none applies).
    pub addr: usize,
    /// Which invariant.
    pub kind: HeapErrorKind,
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arena {
            Some(a) => write!(
                f,
                "heap corrupt in arena {a} at {:#x}: {:?}",
                self.addr, self.kind
            ),
            None => write!(f, "heap corrupt at {:#x}: {:?}", self.addr, self.kind),
        }
    }
}

impl std::error::Error for HeapError {}

/// What kind of heap corruption the allocator met (the part of the abort
/// message in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// A block header's check value, size or flags do not verify.
    Header,
    /// A `prev_size` boundary tag does not match the block before it.
    PrevSize,
    /// A free-list link fails its safe-linking check or its back link.
    Link,
    /// A stress-mode quarantine link names no quarantined block.
    Quarantine,
}

impl Corruption {
    fn what(self) -> &'static str {
        match self {
            Corruption::Header => "header check failed",
            Corruption::PrevSize => "prev_size corrupt",
            Corruption::Link => "free-list link corrupt",
            Corruption::Quarantine => "quarantine link corrupt",
        }
    }
}

/// Prints `arenalloc: heap corruption at 0x<addr> (<what>)` on stderr and
/// aborts the process: what every inconsistency the allocator meets on its
/// own paths ends in, the checked API included (a corrupt heap is not an
/// input error a caller could handle). Allocates nothing, takes no lock,
/// so it may run with any heap lock held.
#[cold]
#[inline(never)]
pub(crate) fn abort_on_corruption(addr: usize, what: Corruption) -> ! {
    let mut line = Line::new();
    line.push(b"arenalloc: heap corruption at ");
    line.hex(addr);
    line.push(b" (");
    line.push(what.what().as_bytes());
    line.push(b")\n");
    crate::sys::write_stderr(line.bytes());
    crate::sys::abort()
}

/// Prints `arenalloc: <what> 0x<ptr><why>` on stderr (for a size mismatch
/// `arenalloc: free of 0x<ptr> with size <n>, block holds <m>`) and aborts
/// the process. Used by the APIs that cannot return an error
/// (`GlobalAlloc`, `realloc`, the C API).
#[cold]
#[inline(never)]
pub(crate) fn abort_on_free_error(err: FreeError, ptr: *const u8) -> ! {
    let mut line = Line::new();
    line.push(b"arenalloc: ");
    err.write_message(&mut line, ptr as usize);
    // Stress mode: a bad free that follows an injected allocation failure
    // says so (its cleanup path is the usual suspect).
    crate::stress::push_last_injected_anywhere(&mut line);
    line.push(b"\n");
    crate::sys::write_stderr(line.bytes());
    crate::sys::abort()
}

/// Prints `arenalloc: free of 0x<ptr> with size <size>, block holds
/// <holds>` on stderr and aborts: a sized free's mismatch
/// ([`FreeError::SizeMismatch`]) where the sizes are known.
#[cold]
#[inline(never)]
pub(crate) fn abort_on_size_mismatch(ptr: *const u8, size: usize, holds: usize) -> ! {
    let mut line = Line::new();
    line.push(b"arenalloc: ");
    size_mismatch_message(&mut line, ptr as usize, size, holds);
    crate::stress::push_last_injected_anywhere(&mut line);
    line.push(b"\n");
    crate::sys::write_stderr(line.bytes());
    crate::sys::abort()
}

/// `free of 0x<ptr> with size <size>, block holds <holds>`.
fn size_mismatch_message(line: &mut Line, ptr: usize, size: usize, holds: usize) {
    line.push(b"free of ");
    line.hex(ptr);
    line.push(b" with size ");
    line.num(size as u64);
    line.push(b", block holds ");
    line.num(holds as u64);
}

#[cfg(test)]
mod tests {
    use crate::line::Line;

    #[test]
    fn free_error_lines_name_the_address_and_sizes() {
        use super::FreeError;
        let line = |e: FreeError| {
            let mut l = Line::new();
            e.write_message(&mut l, 0x7f00_1230);
            String::from_utf8(l.bytes().to_vec()).unwrap()
        };
        assert_eq!(line(FreeError::DoubleFree), "double free of 0x7f001230");
        assert_eq!(
            line(FreeError::SizeMismatch),
            "free of 0x7f001230 with a size its block does not match"
        );
        let mut l = Line::new();
        super::size_mismatch_message(&mut l, 0x7f00_1230, 48, 32);
        assert_eq!(
            l.bytes(),
            b"free of 0x7f001230 with size 48, block holds 32"
        );
        assert_eq!(
            line(FreeError::OutsideHeap),
            "free of 0x7f001230, which is outside every arenalloc heap"
        );
    }
}
