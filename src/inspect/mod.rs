//! Inspect: what a heap can tell about itself, as `impl Heap` blocks above
//! the allocation layers — [`stats`](crate::HeapStats) (counters per arena
//! and in total), `check` (the invariant walk), `dump` (a text map),
//! `svg` (the heap-map picture) and `leaks` (the leak report). Nothing below the heap imports this.
//!
//! Invariant shared by all five: no heap lock is held while anything here
//! allocates or writes to the caller's writer.

mod check;
mod dump;
mod leaks;
pub(crate) mod stats;
mod svg;
