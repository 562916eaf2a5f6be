#!/usr/bin/env bash
# Mutation check of the loom models (issue 17, item 4): every model must
# fail on a deliberately broken variant of the real code, and each model's
# doc comment in loom_tests/models.rs names the one it catches ("Mutation
# caught (`NAME`)"). This script makes that claim reproducible: for each
# mutation in the table below it applies loom_tests/mutations/NAME.patch to
# src/, builds the loom test binary, runs each model the row names and
# checks that the model FAILS with the failure its doc names (a pattern in
# its output: an assertion message, the allocator's abort line, loom's
# causality report, SIGSEGV), then reverts the patch. Before any mutation
# it runs the same models on the code as it is, which must pass.
#
# CI runs it after the models (.ci/run). Run it from anywhere, with a
# clean src/ (it edits src/ in place and restores it, also on Ctrl-C):
#   bash loom_tests/mutations.sh            # every mutation (~4 minutes)
#   bash loom_tests/mutations.sh NAME...    # only these (patch names)
# It builds in CI's loom directory (target/loom), so a CI run leaves the
# dependencies built; each mutation then costs a rebuild of the library
# and the test binary (~10 s on 2 cores) and a few seconds of loom.
#
# A patch that no longer applies (src/ moved on) or no longer builds is
# reported as STALE and fails the script: update the patch, not the model.
set -uo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg arenalloc_loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom
export CARGO_TERM_COLOR=never

# mutation | models that must fail (space-separated) | what their output must contain (grep -E)
MUTATIONS=(
    "push-before-claim|foreign_free_races_owner_alloc_and_drain two_threads_free_into_the_same_foreign_arena|arenalloc: double free of 0x"
    "fallback-forgets-claim|queue_full_fallback_races_owner|on an .Err. value: DoubleFree"
    "lock-acquire-relaxed|queue_full_fallback_races_owner|Causality violation: Concurrent write accesses to .UnsafeCell."
    "create-before-adopt|owner_exits_with_frees_in_flight_and_arena_is_adopted|the orphaned arena is adopted, not a new one made"
    "claim-takes-cached|foreign_free_of_a_cached_block_is_a_double_free|left: Ok\\(\\(\\)\\)"
    "adopt-only-unowned|owner_exits_with_a_full_cache_and_the_adopter_inherits_it|the orphan's cache, adopted"
    "cache-pending-uncounted|remote_frees_race_the_owners_cache_refill|each remote free counted once"
    "flush-via-live|foreign_free_of_a_cached_block_races_the_owners_flush|left: Ok\\(\\(\\)\\)"
    "reclaim-plain-store|trim_reclaims_an_orphans_cache_while_a_thread_binds|kind: BadCache"
    "adopt-during-reclaim|trim_reclaims_an_orphans_cache_while_a_thread_binds|kind: BadCache"
    "reclaim-keeps-cache|trim_reclaims_an_orphans_cache_while_a_thread_binds|s.cached_blocks\\(\\) <= 2"
    "miss-keeps-batches|batched_remote_frees_race_the_owners_refill|each batched free once"
    "batch-link-after-free|batched_remote_frees_race_the_owners_refill trim_and_adoption_race_to_send_an_orphans_batch|arenalloc: double free of 0x"
    "adopter-keeps-batches|trim_and_adoption_race_to_send_an_orphans_batch|p sent and drained once"
    "cache-push-plain-store|owners_cache_push_races_a_foreign_free_of_the_same_block|exactly one free of p wins"
    "claim-plain-store|owners_cache_push_races_a_foreign_free_of_the_same_block|exactly one free of p wins"
    "lost-push-keeps-counts|owners_cache_push_races_a_foreign_free_of_the_same_block|kind: BadCache"
    "free-locked-no-recheck|double_free_races_the_release_of_its_chunk|exactly one free of p wins"
    "release-protects|remote_double_free_races_the_release_of_its_chunk|SIGSEGV"
    "slot-locks-its-own|two_owners_of_one_index_free_one_live_block|failed: live blocks"
    "check-own-cache-only|two_owners_of_one_index_free_one_live_block|kind: BadCache"
    "free-live-plain|owners_locked_free_races_a_foreign_free_of_the_same_block remote_double_free_races_the_release_of_its_chunk|exactly one free of p wins|double free of 0x"
)

applied=""
restore() {
    if [ -n "$applied" ]; then
        git apply -R "loom_tests/mutations/$applied.patch" || {
            echo "!!! could not revert $applied: restore src/ by hand (git checkout src)" >&2
            exit 2
        }
        applied=""
    fi
}
trap 'restore' EXIT
trap 'exit 130' INT TERM

if ! git diff --quiet HEAD -- src || [ -n "$(git ls-files --others --exclude-standard src)" ]; then
    echo "src/ has local changes: commit or stash them first (this script edits src/)" >&2
    exit 2
fi

rows=()
if [ "$#" -gt 0 ]; then
    for name in "$@"; do
        row=$(printf '%s\n' "${MUTATIONS[@]}" | grep "^$name|") || { echo "no mutation $name" >&2; exit 2; }
        rows+=("$row")
    done
else
    rows=("${MUTATIONS[@]}")
fi

build() {
    cargo test --release --test loom --no-run >"$log" 2>&1
}
run_model() { # model -> exit status; output in $log
    timeout 300 cargo test --release --test loom -- --exact "$1" >"$log" 2>&1
}

log=$(mktemp)
summary=()
failed=0

models=$(printf '%s\n' "${rows[@]}" | cut -d'|' -f2 | tr ' ' '\n' | sort -u)
echo "=== the models as they are (must pass)"
if ! build; then
    tail -30 "$log"
    echo "the loom tests do not build" >&2
    exit 1
fi
for m in $models; do
    if ! run_model "$m"; then
        tail -30 "$log"
        echo "model $m fails on the unmutated code" >&2
        exit 1
    fi
done
echo "ok: $(echo "$models" | wc -l) models pass"

for row in "${rows[@]}"; do
    IFS='|' read -r name models pattern <<<"$row"
    echo "=== $name"
    start=$(date +%s)
    if ! git apply "loom_tests/mutations/$name.patch"; then
        summary+=("$(printf '%-24s %-58s %s' "$name" "-" "STALE: the patch does not apply")")
        failed=1
        continue
    fi
    applied=$name
    if ! build; then
        grep -m5 -A5 '^error' "$log"
        summary+=("$(printf '%-24s %-58s %s' "$name" "-" "STALE: does not build")")
        failed=1
        restore
        continue
    fi
    for m in $models; do
        t0=$(date +%s%N)
        run_model "$m"
        rc=$?
        secs=$(((($(date +%s%N) - t0) / 100000000)))
        secs="$((secs / 10)).$((secs % 10))"
        if [ "$rc" -eq 0 ]; then
            verdict="NOT CAUGHT (the model passed)"
            failed=1
        elif [ "$rc" -eq 124 ]; then
            verdict="NOT CAUGHT (timed out)"
            failed=1
        elif grep -qE "$pattern" "$log"; then
            verdict="caught in ${secs}s: $(grep -m1 -oE "$pattern" "$log")"
        else
            verdict="FAILED OTHERWISE (no '$pattern'):"
            verdict+=" $(grep -m1 -A1 -E 'panicked at|^arenalloc:|signal:' "$log" | tr '\n' ' ' | cut -c1-160)"
            failed=1
        fi
        summary+=("$(printf '%-24s %-58s %s' "$name" "$m" "$verdict")")
        echo "  $m: $verdict"
    done
    restore
    echo "  ($(($(date +%s) - start))s with the rebuild)"
done
rm -f "$log"

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
