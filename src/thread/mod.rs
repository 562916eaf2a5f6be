//! Thread: who a thread is (`registry`) and which arena it is bound to in
//! each heap (`cache`).
//!
//! `registry` depends on nothing in the crate but the `sync` shim and the
//! tunables: arenas ask it whether their owner is alive. `cache` stores
//! arena pointers for the heap layer, so it sits above `arena`; nothing
//! below the heap imports it.

pub(crate) mod cache;
pub(crate) mod registry;
