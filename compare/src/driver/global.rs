//! The binary's `#[global_allocator]`: [`Global`], which forwards every
//! call to one allocator chosen once per process. In the parent and in
//! every child but the service workload's it is `System`, so that the
//! harness's allocations stay out of the allocator being measured (the
//! workloads call that one through its `GlobalAlloc` value). A child of
//! the service workload measures a whole program — a tokio runtime,
//! serde_json, channels — whose allocations all go through the global
//! allocator: the parent names the allocator under test in the child's
//! environment ([`ENV`]), and every allocation of that process goes to it.
//!
//! Invariants:
//! * The choice is made at the process's first allocation, before `main`,
//!   while it has one thread, and never changes: every block is freed,
//!   reallocated and sized by the allocator that made it.
//! * Choosing allocates nothing (libc's `getenv`, a byte comparison, and
//!   for linked_list_allocator `peers::claim_region`), so it never
//!   re-enters itself.
//! * A name that is unknown, in [`UNSUPPORTED`], or whose allocator
//!   cannot be set up (no backing region) leaves `System` in place;
//!   [`installed`] says which allocator it is, and the service child
//!   refuses to measure when that is not the one it was asked for.
//!
//! Every call pays one relaxed load and a branch over the allocators,
//! whichever is chosen.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use super::peers::{self, Backed};

/// The environment variable that names the global allocator (a name of
/// `peers::ALLOCATORS`); unset: `System`.
pub(crate) const ENV: &str = "ARENALLOC_COMPARE_GLOBAL";
/// [`ENV`] for `getenv`.
const ENV_C: &CStr = c"ARENALLOC_COMPARE_GLOBAL";
const _: () = assert!(ENV_C.to_bytes().len() == ENV.len());

/// The allocators of `peers::ALLOCATORS` that cannot be the global
/// allocator, and why.
pub(crate) const UNSUPPORTED: [(&str, &str); 1] = [(
    "talc",
    "its lock (parking_lot's) allocates when it first parks a thread, and as the global allocator that allocation re-enters talc under its own lock: the process overflows its stack",
)];

/// The allocators [`Global`] can forward to, by index; each name is one
/// of `peers::ALLOCATORS`, none of [`UNSUPPORTED`].
const NAMES: [&str; 6] = [
    "system",
    "arenalloc",
    "arenalloc-1lock",
    "mimalloc",
    "jemalloc",
    "linked_list",
];
const SYSTEM: u8 = 0;
const ARENALLOC: u8 = 1;
const ARENALLOC_1LOCK: u8 = 2;
const MIMALLOC: u8 = 3;
const JEMALLOC: u8 = 4;
const LINKED_LIST: u8 = 5;
/// Not chosen yet (the process has not allocated).
const UNCHOSEN: u8 = u8::MAX;

/// The chosen allocator's index in [`NAMES`], or [`UNCHOSEN`].
static CHOSEN: AtomicU8 = AtomicU8::new(UNCHOSEN);

/// The global allocator of this binary (module doc).
pub(crate) struct Global;

/// The chosen allocator, choosing it on the first call. Relaxed is enough:
/// the value is a function of the environment, which nobody changes, so
/// a thread that reads `UNCHOSEN` and chooses again chooses the same.
#[inline]
fn chosen() -> u8 {
    match CHOSEN.load(Ordering::Relaxed) {
        UNCHOSEN => choose(),
        c => c,
    }
}

#[cold]
#[inline(never)]
fn choose() -> u8 {
    // SAFETY: `ENV_C` is NUL-terminated; nothing in this binary sets or
    // unsets environment variables, so the returned string stays valid
    // while it is read.
    let value = unsafe { libc::getenv(ENV_C.as_ptr()) };
    let c = if value.is_null() {
        SYSTEM
    } else {
        // SAFETY: a non-null `getenv` result is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(value) }.to_bytes();
        let index = NAMES.iter().position(|n| n.as_bytes() == name);
        match index.and_then(|i| u8::try_from(i).ok()) {
            Some(LINKED_LIST) if !peers::claim_region(Backed::LinkedList) => SYSTEM,
            Some(i) => i,
            None => SYSTEM,
        }
    };
    CHOSEN.store(c, Ordering::Relaxed);
    c
}

/// The name of the allocator every allocation of this process goes to.
pub(crate) fn installed() -> &'static str {
    NAMES
        .get(usize::from(chosen()))
        .copied()
        .unwrap_or("system")
}

/// Runs `$body` with `$a` bound to the chosen allocator (each arm is
/// monomorphised for its allocator's type). Calls in `$body` name
/// `GlobalAlloc` explicitly: `Heap` has inherent `alloc`/`realloc` methods
/// of other signatures.
macro_rules! with_chosen {
    ($a:ident => $body:expr) => {
        match chosen() {
            ARENALLOC => {
                let $a = &peers::ARENALLOC;
                $body
            }
            ARENALLOC_1LOCK => {
                let $a = &peers::ARENALLOC_1LOCK;
                $body
            }
            MIMALLOC => {
                let $a = &mimalloc::MiMalloc;
                $body
            }
            JEMALLOC => {
                let $a = &tikv_jemallocator::Jemalloc;
                $body
            }
            LINKED_LIST => {
                let $a = &peers::LINKED_LIST;
                $body
            }
            _ => {
                let $a = &System;
                $body
            }
        }
    };
}

// SAFETY: every call is forwarded to the same allocator for the whole
// life of the process (module invariants), which upholds `GlobalAlloc`'s
// contract itself; a block is therefore always freed, reallocated or
// sized by the allocator that made it, with the caller's own layout.
unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        with_chosen!(a => unsafe { GlobalAlloc::alloc(a, layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        with_chosen!(a => unsafe { GlobalAlloc::alloc_zeroed(a, layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded to the allocator that
        // made `ptr` (the choice never changes).
        with_chosen!(a => unsafe { GlobalAlloc::dealloc(a, ptr, layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        with_chosen!(a => unsafe { GlobalAlloc::realloc(a, ptr, layout, new_size) })
    }
}
