#!/usr/bin/env bash
# Owner slots against an index per thread, alternated in one session:
#
#   bash benches/owner-slots-ab.sh N WORKLOAD THREADS IDX_A IDX_B
#
# runs the driver's child (1 s) N times with `--max-indexes IDX_A` and
# `--max-indexes IDX_B` in turn (1024, the table's size, is an index per
# thread) and prints, for each, the median millions of operations per
# CPU-second (operations ÷ (user + system time): steadier than wall time
# on a shared VM whose other tenants take whole cores away) with every
# run sorted, and the median peak RSS. Build first:
# `cargo build --release -p arenalloc-compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: benches/owner-slots-ab.sh N WORKLOAD THREADS IDX_A IDX_B}
w=$2; t=$3; a=$4; b=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq $n); do for x in $a $b; do
  /usr/bin/time -f "%U %S %M" -o "$tmp/t" target/release/arenalloc-compare --child --alloc arenalloc --workload $w --threads $t --seconds 1 --max-indexes $x 2>/dev/null > "$tmp/j"
  python3 -c "
import json; d=json.loads(open('$tmp/j').readline()); u,s,m=open('$tmp/t').read().split()[-3:]
print('$x', d['ops']/(float(u)+float(s))/1e6, int(m)/1024)"
done; done | python3 -c '
import sys,statistics as st
r={}
for l in sys.stdin:
    k,c,m=l.split(); r.setdefault(k,[]).append((float(c),float(m)))
for k,v in r.items():
    c=sorted(x[0] for x in v); print(k, "cpu-Mops median %.1f  (%s)  RSS median %.0f MiB" % (st.median(c), " ".join("%.1f"%x for x in c), st.median(x[1] for x in v)))'
