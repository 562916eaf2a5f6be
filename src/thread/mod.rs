//! Thread: who a thread is (`registry`) and which arena it is bound to in
//! each heap (`cache`).
//!
//! `registry` depends on nothing in the crate but the `sync` shim and the
//! tunables: arenas ask it whether their owner is alive. `cache` stores
//! arena pointers for the heap layer, so it sits above `arena`; nothing
//! below the heap imports it. `fast_slot` is where the thread's fast
//! binding lives, a leaf the registry holds: `fast_ie.rs` (a thread-local
//! block read at `%fs:offset`, no `__tls_get_addr` even in a shared
//! object) with the `initial-exec-tls` feature on x86-64 Linux, else
//! `fast_cell.rs` (two cells of the registry's thread local).

pub(crate) mod cache;
#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(arenalloc_loom)
))]
#[path = "fast_ie.rs"]
mod fast_slot;
#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(arenalloc_loom)
)))]
#[path = "fast_cell.rs"]
mod fast_slot;
pub(crate) mod registry;
