//! Fast slot, initial-exec: the thread's fast binding (`thread::cache::fast`)
//! in a 16-byte thread-local block of its own, defined in assembly in
//! `.tbss` and read at a fixed offset from the thread pointer (`%fs`), so
//! that reaching it is three loads and no call — also in a shared object,
//! where every Rust `thread_local!` is general-dynamic (a call to
//! `__tls_get_addr`) and stable Rust cannot ask for another TLS model.
//! Chosen by the `initial-exec-tls` feature on x86-64 Linux (the
//! `LD_PRELOAD` library turns it on); `fast_cell.rs` is the portable one.
//!
//! ```text
//! %fs:0 ─▶ thread pointer; __arenalloc_fast_binding@gottpoff = offset (one GOT word,
//!          fixed at load time: R_X86_64_TPOFF64, or an immediate in an executable)
//!   +0  u64    heap   the fast binding's heap id (0: none)
//!   +8  usize  arena  its arena's address
//! ```
//!
//! Invariants (the reasons the fast paths may trust these two words):
//! 1. **Per thread, zero at birth.** `.tbss` is the thread's initial TLS
//!    image, all zero: a new thread has no fast binding (0 is no heap's
//!    id). glibc and musl place a module with initial-exec accesses in
//!    the static TLS block of every thread, existing ones included (a
//!    `dlopen` takes it from the static TLS surplus, which glibc keeps for
//!    such modules; if that ran out, `dlopen` fails — it never misreads).
//! 2. **Readable for the thread's whole life**, its exit hooks included:
//!    the static block lives in the thread's stack mapping until the
//!    thread is gone, with no destructor and no lazy allocation. So the
//!    exit hook (`registry::release_at_exit`) clears the heap word as the
//!    token dies, exactly as with the portable slot, and allocations made
//!    by later exit hooks read 0 and take the slow path.
//! 3. **fork**: the child's one thread is a copy of the caller, TLS
//!    included: it keeps the binding, and the registry keeps its token
//!    (`registry::reset_after_fork`), so the binding stays true there.
//! 4. **Reentrancy**: every access is plain loads or stores at
//!    `%fs:offset` — no call, no allocation (a general-dynamic access may
//!    allocate the module's block on a thread's first touch, through
//!    `malloc`), no signal-unsafe state. Only the owning thread writes it.
//! 5. **One definition per linked object.** The symbol is hidden (never
//!    exported from the `.so`, never interposed) and global within the
//!    link, so inlined accessors in other crates of the same output name
//!    it; two copies of this crate with the feature on in one binary would
//!    collide at link time (an error, not a silent share).
//!
//! The words are written only by `registry` (`set`, `clear`) on the
//! owning thread; Rust sees them only through these asm blocks, so there
//! is no Rust reference to alias.

use core::arch::{asm, global_asm};

// The block: 16 zero bytes of thread-local storage, aligned to 16, typed
// as a TLS object so the linker lays it in PT_TLS and resolves
// `@gottpoff` against it.
global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 4",
    ".globl __arenalloc_fast_binding",
    ".hidden __arenalloc_fast_binding",
    ".type __arenalloc_fast_binding,@tls_object",
    ".size __arenalloc_fast_binding,16",
    "__arenalloc_fast_binding:",
    ".zero 16",
    ".popsection",
    options(att_syntax)
);

/// Where the fast binding lives: nothing in the thread's `ThreadState`
/// (the block above holds it).
pub(crate) struct FastSlot;

impl FastSlot {
    pub(crate) const fn new() -> FastSlot {
        FastSlot
    }

    /// `(heap, arena)` of the calling thread.
    #[inline(always)]
    pub(crate) fn get(&self) -> (u64, usize) {
        read()
    }

    /// Makes `(heap, arena)` the calling thread's fast binding.
    #[inline(always)]
    pub(crate) fn set(&self, heap: u64, arena: usize) {
        // SAFETY: (1) the GOT word holds the block's offset from the
        // thread pointer (the loader's TPOFF64 relocation), so
        // `%fs:(off)` and `%fs:8(off)` are the calling thread's own two
        // words (invariants 1, 2); (2) only this thread touches them and
        // no Rust reference to them exists; (3) no stack, no flags.
        unsafe {
            asm!(
                "movq __arenalloc_fast_binding@gottpoff(%rip), {off}",
                "movq {heap}, %fs:({off})",
                "movq {arena}, %fs:8({off})",
                off = out(reg) _,
                heap = in(reg) heap,
                arena = in(reg) arena,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }

    /// Clears the heap word: the thread has no fast binding from now on.
    #[inline(always)]
    pub(crate) fn clear(&self) {
        // SAFETY: as in `set`.
        unsafe {
            asm!(
                "movq __arenalloc_fast_binding@gottpoff(%rip), {off}",
                "movq $0, %fs:({off})",
                off = out(reg) _,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }
}

/// The fast paths' read, with no access to the `ThreadState` at all:
/// `Some` says the slot is read directly (`registry::fast_binding`).
#[inline(always)]
pub(crate) fn read_direct() -> Option<(u64, usize)> {
    Some(read())
}

#[inline(always)]
fn read() -> (u64, usize) {
    let heap: u64;
    let arena: usize;
    // SAFETY: as in `FastSlot::set`, reading: the calling thread's own two
    // words, always mapped (invariant 2); `pure, readonly`: the result
    // depends only on that memory, which only the `set`/`clear` asm blocks
    // (which the compiler treats as writing memory) change.
    unsafe {
        asm!(
            "movq __arenalloc_fast_binding@gottpoff(%rip), {off}",
            "movq %fs:({off}), {heap}",
            "movq %fs:8({off}), {arena}",
            off = out(reg) _,
            heap = out(reg) heap,
            arena = out(reg) arena,
            options(att_syntax, pure, readonly, nostack, preserves_flags)
        );
    }
    (heap, arena)
}
