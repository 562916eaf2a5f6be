#!/usr/bin/env bash
# The C programs of benches/c/ that time one call (churn.c: a free + malloc
# pair of 16-520 B; usable_size.c: malloc_usable_size of a block start)
# under glibc (no preload), arenalloc (target/release/libarenalloc.so) and
# Debian's peers when installed (libjemalloc2, libmimalloc2.0,
# libtcmalloc-minimal4; a missing one is skipped with a line saying so),
# alternated round by round in one session; prints each allocator's
# median ns and its ratio to arenalloc's (> 1: arenalloc is faster).
#   bash benches/c-peers.sh [ROUNDS]     # default 7 rounds
#   EXTRA="before=/path/libarenalloc.so" bash benches/c-peers.sh
#                                         # more columns: NAME=LIBRARY, space-separated
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
cargo build -q --release -p arenalloc-preload
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for prog in churn usable_size; do
    cc -O2 -fno-builtin -o "$work/$prog" "benches/c/$prog.c"
done
lib=/usr/lib/x86_64-linux-gnu
names=(glibc arenalloc)
preload=("" "$PWD/target/release/libarenalloc.so")
for peer in jemalloc:libjemalloc.so.2 mimalloc:libmimalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
    if [ -e "$lib/${peer#*:}" ]; then
        names+=("${peer%%:*}")
        preload+=("$lib/${peer#*:}")
    else
        echo "skipped ${peer%%:*}: $lib/${peer#*:} not installed"
    fi
done
for extra in ${EXTRA:-}; do
    names+=("${extra%%=*}")
    preload+=("${extra#*=}")
done
for prog in churn usable_size; do
    for r in $(seq "$rounds"); do
        for i in "${!names[@]}"; do
            ns=$(LD_PRELOAD="${preload[$i]}" "$work/$prog" | awk '{print $1}')
            echo "$prog ${names[$i]} $ns" >>"$work/raw"
        done
    done
done
python3 - "$work/raw" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    prog, name, ns = line.split()
    runs[prog, name].append(float(ns))
for prog in ("churn", "usable_size"):
    base = statistics.median(runs[prog, "arenalloc"])
    print(f"{prog} (ns per {'pair' if prog == 'churn' else 'call'}, median of {len(runs[prog, 'arenalloc'])})")
    for (p, name), v in runs.items():
        if p == prog:
            m = statistics.median(v)
            print(f"  {name:10} {m:6.2f}  ratio {m / base:4.2f}  [{', '.join(f'{x:.2f}' for x in v)}]")
PY
