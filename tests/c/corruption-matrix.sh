#!/usr/bin/env bash
# Which of tests/c/corrupt.c's cases an allocator detects (an abort), side
# by side in one run: arenalloc in the default configuration, arenalloc
# hardened, and glibc's malloc.
#
#   bash tests/c/corruption-matrix.sh         (from the repository root)
#
# Builds the preload library (release) and corrupt.c, runs every case three
# ways with a 10 s limit, and prints per case what happened (DETECT: killed
# by SIGABRT, with the first line of the message; SEGV; HANG; ATTACKER:
# malloc returned the program's planted address; or the exit code) and the
# count detected per column.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p arenalloc-preload
lib="$PWD/target/release/libarenalloc.so"
bin=$(mktemp -d)/corrupt
cc -O2 -fno-builtin -pthread -Wall -Wno-alloc-size-larger-than tests/c/corrupt.c -o "$bin"
cases=("hang" "overflow-free-p 1" "overflow-free-p 8" "overflow-free-p 9" "overflow-free-p 16"
    "overflow-free-q 1" "overflow-free-q 8" "overflow-free-q 9" "overflow-free-q 16"
    "overflow-into-free 1" "overflow-into-free 8" "overflow-into-free 9" "overflow-into-free 16"
    "underflow 1" "underflow 8" "underflow 9" "underflow 16"
    "size-zero" "size-triple" "write-after-free" "poisoned-link")
verdict() {
    local out rc
    set +e
    out=$(timeout 10 env "$@" "$bin" $case 2>&1)
    rc=$?
    set -e
    case $rc in
    134) echo "DETECT" ;;
    139) echo "SEGV" ;;
    124) echo "HANG" ;;
    5) echo "ATTACKER" ;;
    *) echo "rc=$rc" ;;
    esac
}
declare -A found=([default]=0 [hardened]=0 [glibc]=0)
printf '%-22s %-10s %-10s %-10s\n' case default hardened glibc
for case in "${cases[@]}"; do
    d=$(verdict LD_PRELOAD="$lib" ARENALLOC_HARDENED=0)
    h=$(verdict LD_PRELOAD="$lib" ARENALLOC_HARDENED=1)
    g=$(verdict MALLOC_CHECK_=0)
    for col in default:$d hardened:$h glibc:$g; do
        [ "${col#*:}" = DETECT ] && found[${col%%:*}]=$((found[${col%%:*}] + 1))
    done
    printf '%-22s %-10s %-10s %-10s\n' "$case" "$d" "$h" "$g"
done
echo "detected of ${#cases[@]}: default ${found[default]}, hardened ${found[hardened]}, glibc ${found[glibc]}"
