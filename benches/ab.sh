#!/usr/bin/env bash
# A/B against an earlier version, alternated in one session (the machine is
# shared and noisy: only ratios measured side by side mean anything).
#
#   benches/ab.sh REV driver [RUNS]   driver children (larson, prodcons,
#                                     random at 1, 2, 8 threads, 1 s each),
#                                     REV and the working tree alternated,
#                                     RUNS each (default 5); prints medians
#                                     and REV ÷ working tree throughput
#   benches/ab.sh REV pairs [ROUNDS]  the `pairs/arenalloc/` criterion group,
#                                     ROUNDS each (default 3), alternated;
#                                     prints median ns and tree ÷ REV
#                                     (PAIRS=arenalloc_global, _locked,
#                                     _hardened, …: another variant)
#
# REV is built in a temporary git worktree into target/ab-REV; the working
# tree into target/release. WORKLOADS and THREADS override the driver cells.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: benches/ab.sh REV driver|pairs [N]}
mode=${2:?usage: benches/ab.sh REV driver|pairs [N]}
n=${3:-}
base_target="$PWD/target/ab-$rev"
wt=$(mktemp -d)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$wt" "$rev"

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

case "$mode" in
driver)
    (cd "$wt" && CARGO_TARGET_DIR="$base_target" cargo build -q --release -p arenalloc-compare)
    cargo build -q --release -p arenalloc-compare
    a="$base_target/release/arenalloc-compare"
    b="target/release/arenalloc-compare"
    ops() {
        "$1" --child --alloc arenalloc --workload "$2" --threads "$3" \
            --region-size 4294967296 --seconds 1 2>/dev/null |
            python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["ops_per_sec"])'
    }
    for w in ${WORKLOADS:-larson prodcons random}; do
        for t in ${THREADS:-1 2 8}; do
            ra=() rb=()
            for _ in $(seq "${n:-5}"); do
                ra+=("$(ops "$a" "$w" "$t")")
                rb+=("$(ops "$b" "$w" "$t")")
            done
            ma=$(median "${ra[@]}") mb=$(median "${rb[@]}")
            python3 -c "print(f'$w threads=$t  $rev {$ma/1e6:8.2f} Mops/s  tree {$mb/1e6:8.2f} Mops/s  $rev/tree {$ma/$mb:.3f}')"
        done
    done
    ;;
pairs)
    (cd "$wt" && CARGO_TARGET_DIR="$base_target" cargo bench -q --bench fragments --no-run)
    cargo bench -q --bench fragments --no-run
    bin() { ls -t "$1"/release/deps/fragments-* | grep -v '\.d$' | head -1; }
    a=$(bin "$base_target") b=$(bin target)
    out=$(mktemp)
    pairs=${PAIRS:-arenalloc}
    for _ in $(seq "${n:-3}"); do
        for v in a b; do
            exe=${!v}
            "$exe" --bench "pairs/$pairs/" 2>/dev/null | tr '\n' ' ' |
                grep -oE "pairs/$pairs/[0-9]+ +time: +\[[0-9.]+ [a-z]+ [0-9.]+ ns" |
                awk -v v="$v" '{print v, $1, $5}' >>"$out"
        done
    done
    python3 - "$out" "$rev" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    v, name, t = line.split()
    d[(name, v)].append(float(t))
for name in sorted({k[0] for k in d}, key=lambda x: int(x.rsplit("/", 1)[1])):
    a, b = statistics.median(d[(name, "a")]), statistics.median(d[(name, "b")])
    print(f"{name:22s} {sys.argv[2]} {a:7.2f} ns  tree {b:7.2f} ns  tree/{sys.argv[2]} {b / a:.3f}")
PY
    ;;
*) echo "mode is driver or pairs" >&2; exit 2 ;;
esac
