#!/usr/bin/env bash
# Runs to first detection of tests/c/race_window.c's use-after-free race
# (its window contains a malloc) under stress mode, without and with
# schedule jitter: for each of SEEDS seeds S, the program runs again and
# again — run k with ARENALLOC_STRESS=leaks=0,seed=<S*1000+k>[,jitter=1] —
# until stress mode reports the use-after-free write, or MAX runs passed;
# the table gives the median over the seeds (a seed that never detected
# counts as MAX+1 and shows as ">MAX"). Without jitter the seed changes
# nothing in the allocator: those are SEEDS plain repetitions.
#
#   bash tests/c/jitter-table.sh                 # 20 seeds, at most 200 runs each, SWAPS=4
#   SEEDS=5 MAX=50 bash tests/c/jitter-table.sh  # a quick look
#
# Prints a Markdown table (README "Safety and stress mode", benches/RESULTS.md).
# Needs cc; builds the preload library.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-20}
MAX=${MAX:-200}
SWAPS=${SWAPS:-4}
cargo build --release -p arenalloc-preload >&2
lib=$PWD/target/release/libarenalloc.so
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -fno-builtin -pthread -Wall -o "$work/race_window" tests/c/race_window.c

# Runs to first detection for seed $1 with extra knobs $2 (MAX+1: none).
first_detection() {
    local seed=$1 knobs=$2 k
    for ((k = 1; k <= MAX; k++)); do
        if ! LD_PRELOAD=$lib ARENALLOC_STRESS="leaks=0,seed=$((seed * 1000 + k))$knobs" \
            "$work/race_window" "$SWAPS" >/dev/null 2>"$work/err"; then
            if grep -q "use-after-free write" "$work/err"; then
                echo "$k"
                return
            fi
            echo "unexpected failure (seed $seed run $k):" >&2
            cat "$work/err" >&2
            exit 1
        fi
    done
    echo $((MAX + 1))
}

# "median mean min max detected" of the numbers on stdin.
summary() {
    sort -n | awk -v max="$MAX" '
        { v[NR] = $1; sum += $1; if ($1 <= max) found++ }
        END {
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%s %.1f %s %s %d\n", (med > max ? ">" max : med), sum / NR,
                v[1], (v[NR] > max ? ">" max : v[NR]), found + 0
        }'
}

echo "| stress mode | median runs to detection | mean (a miss counts $((MAX + 1))) | min–max | seeds that detected within $MAX runs |"
echo "| --- | ---: | ---: | ---: | ---: |"
for mode in plain jitter; do
    knobs=""
    label="\`ARENALLOC_STRESS=1\`"
    if [ "$mode" = jitter ]; then
        knobs=",jitter=1"
        label="\`ARENALLOC_STRESS=jitter=1\`"
    fi
    for ((s = 1; s <= SEEDS; s++)); do
        first_detection "$s" "$knobs"
    done >"$work/$mode"
    read -r med mean lo hi found < <(summary <"$work/$mode")
    echo "| $label | $med | $mean | $lo–$hi | $found of $SEEDS |"
done
echo
echo "($(uname -m), $(nproc) CPUs, load average $(cut -d" " -f1 /proc/loadavg), race_window $SWAPS swaps per run, $(date -u +%Y-%m-%d))"
