#!/usr/bin/env bash
# Instructions per call on the default configuration's fast paths, counted
# by callgrind under LD_PRELOAD=target/release/libarenalloc.so; each
# exported function's inclusive instructions (Ir) divided by its calls:
# * malloc and free: benches/c/fastpath.c (one thread, a ring of 64 blocks
#   of 16-512 bytes: owner-cache hits);
# * malloc_usable_size: benches/c/usable_size.c with 1,000,000 calls
#   (block starts of 1,024 live blocks of 16 B-2 KiB: the lock-free path).
# * alloc_tagged and free_tagged: the comparison driver's 1-thread
#   `prodcons` child (`arenalloc-compare --child`, 2 s), the Rust side's
#   malloc and free through `#[global_allocator]`; each includes the
#   driver's own 9-instruction tag check (issue 18's "at most 60").
# Deterministic: the same build gives the same figures on any machine of
# the same architecture.
#   bash benches/callgrind-fastpath.sh            # prints the five figures
# Needs valgrind (callgrind_annotate) and cc.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p arenalloc-preload >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# per_call OUT FUNCTION: FUNCTION's inclusive Ir per call in the callgrind
# output OUT.
per_call() {
    local out=$1 fn=$2 ir calls
    callgrind_annotate --inclusive=yes --threshold=100 "$out" >"$out.annotated"
    # Inclusive Ir of the exported function: callgrind lists one entry per
    # source file its inlined code comes from; the entry that holds the
    # whole call (the largest) is the one to read.
    ir=$(awk -v f="$fn" '$0 ~ (":" f "( \\[.*\\])?$") {
            gsub(",", "", $1); if ($1 + 0 > max) max = $1 + 0 }
        END { print max }' "$out.annotated")
    # ...and its calls, summed over every caller (callgrind's compressed
    # names: "(id) name" the first time, "(id)" after).
    calls=$(awk -v f="$fn" '
        /^c?fn=\(/ {
            match($0, /\([0-9]+\)/); id = substr($0, RSTART, RLENGTH)
            rest = substr($0, RSTART + RLENGTH + 1)
            if (rest != "") name[id] = rest
            if ($0 ~ /^cfn=/) callee = name[id]
        }
        /^calls=/ { if (callee == f) { split($1, a, "="); n += a[2] } }
        END { print n }' "$out")
    awk -v f="$fn" -v i="$ir" -v c="$calls" \
        'BEGIN { printf "%s: %d Ir inclusive / %d calls = %.1f per call\n", f, i, c, i / c }'
}

# run PROGRAM ARGS...: PROGRAM (benches/c/PROGRAM.c) under the library and
# callgrind; the output file is $work/PROGRAM.cg.
run() {
    local prog=$1
    shift
    cc -O2 -fno-builtin -o "$work/$prog" "benches/c/$prog.c"
    LD_PRELOAD=$PWD/target/release/libarenalloc.so valgrind --tool=callgrind \
        --callgrind-out-file="$work/$prog.cg" "$work/$prog" "$@" >/dev/null 2>"$work/$prog.log"
}

run fastpath
per_call "$work/fastpath.cg" malloc
per_call "$work/fastpath.cg" free
run usable_size 1000000
per_call "$work/usable_size.cg" malloc_usable_size

cargo build --release -p arenalloc-compare >&2
ARENALLOC_COMPARE_GLOBAL=arenalloc valgrind --tool=callgrind \
    --callgrind-out-file="$work/prodcons.cg" target/release/arenalloc-compare \
    --child --alloc arenalloc --workload prodcons --threads 1 --seconds 2 \
    >/dev/null 2>"$work/prodcons.log"
per_call "$work/prodcons.cg" arenalloc_compare::driver::workloads::alloc_tagged
per_call "$work/prodcons.cg" arenalloc_compare::driver::workloads::free_tagged
