//! Sys: every call the allocator makes to the operating system, behind one
//! small interface (mimalloc's `prim/`, snmalloc's `pal/`).
//!
//! | call | used by | for |
//! | --- | --- | --- |
//! | [`reserve_aligned`] | `region` | the heap's one `PROT_NONE` + `MAP_NORESERVE` reservation |
//! | [`commit`] | `region` | a slot's pages, readable and writable from its first hand-out on |
//! | [`purge`] | `arena::purge`, `region` | free pages inside a chunk, and a slot that comes back: not resident, still readable |
//! | [`resident_pages`] | `inspect::stats` | measured residency (`Heap::measured_resident_bytes`) |
//! | [`unreserve`] | `region` | dropping a heap |
//! | [`futex_wait`] / [`futex_wake`] | `sync`, `decay` | the arena lock's slow path; a request waking the parked decay thread |
//! | [`futex_wait_for`] / [`futex_wake_n`] | `heap::purge`, `decay` | the decay thread's clock, its parking, its wake-up and its shutdown |
//! | [`spawn_detached`] / [`name_this_thread`] | `heap::purge` | the decay thread (glibc's `pthread_create` allocates: called with no heap lock held) |
//! | [`write_stderr`] / [`abort`] | `error`, `line`, `stress`, `config` | the one-line abort message, stress reports, a malformed variable's warning |
//! | [`monotonic_ns`] | `large`, `heap::purge` | the age of cached large runs; the decay clock without its thread |
//! | [`gettid`] | `thread::registry` | the OS thread id a stress-mode report names (cached per thread) |
//! | [`random_u64`] | `heap::meta` | the per-heap secret of header checks |
//! | [`thread_key_create`] / [`thread_key_set`] | `sync` | the thread-exit hook that releases a registry slot, without a TLS destructor (which would allocate) |
//! | [`register_atfork`] | `heap::fork` | the process's `fork` handlers, once (glibc's `pthread_atfork` allocates: called with no heap lock held) |
//! | [`getenv`] | `config` | the `ARENALLOC_*` variables (`Config::from_env`) |
//! | [`address_space_limit`] / [`address_space_used`] | `region` | sizing the reservation under `RLIMIT_AS` (`ulimit -v`) |
//!
//! Invariant: nothing here allocates, panics or touches memory the caller
//! did not name; every function is safe to call from inside `malloc`.
//! (One exception, in glibc: [`thread_key_set`] on a key past the first 32
//! `calloc`s a block, which glibc frees at thread exit.)
//! Only Linux is implemented (`linux.rs`); other targets fail to compile
//! with a message rather than with a missing symbol.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "arenalloc runs on Linux only: src/sys/linux.rs is the one port (mmap, mprotect, \
     madvise, futex, write, abort); a port to another OS implements the same functions \
     in a sibling file and selects it here"
);
