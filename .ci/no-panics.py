#!/usr/bin/env python3
"""Audit: no allocator function of libarenalloc.so can reach a panic.

Disassembles the release preload library and lists every call to a Rust
panic entry point (`core::panicking::*`, bounds-check and unwrap failures)
made from the C allocation API or from any `arenalloc::` function outside
the introspection layer (`inspect`: stats, dump, svg, which allocate and
format by design and never run inside malloc). Inlining puts most of the
allocator inside the exported C functions, so those are audited too.

Usage: python3 .ci/no-panics.py target/release/libarenalloc.so
Exit status 1 (with the offending calls listed) if any is found.
"""
import re
import subprocess
import sys

lib = sys.argv[1] if len(sys.argv) > 1 else "target/release/libarenalloc.so"
asm = subprocess.run(
    ["objdump", "-d", "--no-show-raw-insn", "-C", lib],
    check=True, capture_output=True, text=True,
).stdout

EXPORTS = {"malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
           "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
           "malloc_trim", "mallopt", "mallinfo", "mallinfo2", "malloc_stats", "malloc_info",
           # glibc's internal names and C23's sized frees (libc_names.rs, sized.rs)
           "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
           "__libc_memalign", "__libc_valloc", "__libc_pvalloc", "__libc_mallinfo",
           "__libc_mallopt", "free_sized", "free_aligned_sized",
           # C++'s operator new and delete (cxx.rs), as objdump -C names them
           "operator new(unsigned long)", "operator new[](unsigned long)",
           "operator new(unsigned long, std::nothrow_t const&)",
           "operator new[](unsigned long, std::nothrow_t const&)",
           "operator new(unsigned long, std::align_val_t)",
           "operator new[](unsigned long, std::align_val_t)",
           "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
           "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
           "operator delete(void*)", "operator delete[](void*)",
           "operator delete(void*, unsigned long)", "operator delete[](void*, unsigned long)",
           "operator delete(void*, std::nothrow_t const&)",
           "operator delete[](void*, std::nothrow_t const&)",
           "operator delete(void*, std::align_val_t)", "operator delete[](void*, std::align_val_t)",
           "operator delete(void*, unsigned long, std::align_val_t)",
           "operator delete[](void*, unsigned long, std::align_val_t)",
           "operator delete(void*, std::align_val_t, std::nothrow_t const&)",
           "operator delete[](void*, std::align_val_t, std::nothrow_t const&)"}
PANIC = re.compile(r"^(core::panicking::|core::option::unwrap_failed|"
                   r"core::result::unwrap_failed|core::option::expect_failed|"
                   r"core::slice::index::|std::panicking::|core::cell::panic_already|"
                   r"std::rt::panic|core::panic)")

# Calls through the GOT (`call *off(%rip)  # <slot>`): resolve the slot to
# the function its relocation names, so that indirect calls are audited too.
relocs = subprocess.run(["objdump", "-R", "-C", lib], check=True,
                        capture_output=True, text=True).stdout
starts = {int(m.group(1), 16): m.group(2)
          for m in re.finditer(r"^([0-9a-f]+) <(.*)>:$", asm, re.M)}
slots = {}
for line in relocs.splitlines():
    parts = line.split(None, 2)
    if len(parts) == 3 and re.fullmatch(r"[0-9a-f]+", parts[0]):
        m = re.match(r"\*ABS\*\+0x([0-9a-f]+)", parts[2])
        slots[int(parts[0], 16)] = starts.get(int(m.group(1), 16), "?") if m else parts[2]

def callee(line):
    m = re.search(r"call\s+\*0x[0-9a-f]+\(%rip\)\s+# ([0-9a-f]+)", line)
    if m:
        return slots.get(int(m.group(1), 16), "?")
    m = re.search(r"call\s+[0-9a-f]+ <(.*)>", line)
    return m.group(1) if m else ""

# Functions that allocate and format by design and never run inside an
# allocation: the introspection layer and the preload library's exit report.
INTROSPECTION = ("arenalloc::inspect", "arenalloc::print_stats")
# The abort-on-unwind guards rustc puts in every `extern "C"` function are
# not panics: they abort if one ever unwound that far.
GUARDS = re.compile(r"^core::panicking::(panic_cannot_unwind|panic_in_cleanup)")
# Known, argued exceptions: crossbeam's `ArrayQueue::new` asserts that the
# capacity is non-zero and that the buffer's layout fits; `Config::resolved`
# clamps the capacity to 1..=MAX_REMOTE_QUEUE_CAPACITY, so neither fires.
# It is inlined into the arena constructor, the fork child's queue reset
# (both pass the clamped configured capacity) and the binding that calls
# the constructor; which of them the compiler inlines it into varies.
ALLOWED = {
    ("arenalloc::arena::Arena::new", "core::option::expect_failed"),
    ("arenalloc::arena::Arena::new", "core::panicking::panic_fmt"),
    ("arenalloc::arena::Arena::reset_after_fork", "core::option::expect_failed"),
    ("arenalloc::arena::Arena::reset_after_fork", "core::panicking::panic_fmt"),
    ("arenalloc::arena::fork::<impl arenalloc::arena::Arena>::replace_stale_queue",
     "core::option::expect_failed"),
    ("arenalloc::arena::fork::<impl arenalloc::arena::Arena>::replace_stale_queue",
     "core::panicking::panic_fmt"),
    ("arenalloc::sync::MpmcQueue::new", "core::option::expect_failed"),
    ("arenalloc::sync::MpmcQueue::new", "core::panicking::panic_fmt"),
    ("arenalloc::heap::bind::<impl arenalloc::heap::meta::HeapMeta>::choose_arena",
     "core::option::expect_failed"),
    ("arenalloc::heap::bind::<impl arenalloc::heap::meta::HeapMeta>::choose_arena",
     "core::panicking::panic_fmt"),
}

func = None
audited = 0
bad = []
for line in asm.splitlines():
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        name = m.group(1)
        ours = name in EXPORTS or (name.startswith("arenalloc::")
                                   and not name.startswith(INTROSPECTION))
        func = name if ours else None
        audited += bool(ours)
        continue
    target = callee(line) if func and "call" in line else ""
    if target and PANIC.search(target) and not GUARDS.search(target) \
            and (func, target) not in ALLOWED:
        bad.append(f"{func}: {line.strip()} -> {callee(line)}")

print(f"audited {audited} allocator functions in {lib}")
if bad:
    print("calls to panic entry points:")
    print("\n".join(bad))
    sys.exit(1)
print("no allocator function calls a panic entry point")
