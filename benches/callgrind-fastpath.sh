#!/usr/bin/env bash
# Instructions per malloc and per free on the default configuration's fast
# path: benches/c/fastpath.c (one thread, a ring of 64 blocks of 16-512
# bytes: owner-cache hits) under LD_PRELOAD=target/release/libarenalloc.so,
# counted by callgrind; each exported function's inclusive instructions
# (Ir) divided by its calls. Deterministic: the same build gives the same
# figures on any machine of the same architecture.
#   bash benches/callgrind-fastpath.sh            # prints the two figures
# Needs valgrind (callgrind_annotate) and cc.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p arenalloc-preload >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -fno-builtin -o "$work/fastpath" benches/c/fastpath.c
LD_PRELOAD=$PWD/target/release/libarenalloc.so valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg.out" "$work/fastpath" >/dev/null 2>"$work/log"
callgrind_annotate --inclusive=yes --threshold=100 "$work/cg.out" >"$work/annotated"
for fn in malloc free; do
    # Inclusive Ir of the exported function: callgrind lists one entry per
    # source file its inlined code comes from; the entry that holds the
    # whole call (the largest) is the one to read.
    ir=$(awk -v f="$fn" '$0 ~ (":" f "( \\[.*libarenalloc.*)?$") {
            gsub(",", "", $1); if ($1 + 0 > max) max = $1 + 0 }
        END { print max }' "$work/annotated")
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
        END { print n }' "$work/cg.out")
    awk -v f="$fn" -v i="$ir" -v c="$calls" \
        'BEGIN { printf "%s: %d Ir inclusive / %d calls = %.1f per call\n", f, i, c, i / c }'
done
