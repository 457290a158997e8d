#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# A job's state through checkpoints and restores, on the local file store:
# user-window-count (generator, no late clicks, 5-minute windows per user)
# is killed with SIGKILL at random moments and restored each time; then
# restored onto another shard count (2 -> 1 and 1 -> 2); then its newest
# checkpoint is damaged and the one before is used; a savepoint of it
# starts another run; --restore ID and --restore none; a checkpoint directory on a full tmpfs fails checkpoints
# cleanly while the job finishes (root only, else that part is skipped).
#
# The file sink here is at-least-once (what it wrote after the checkpoint a
# restore goes back to is written again), so each run's output is compared
# as a set with the output of one run without any checkpoint: every window
# result is there, none is missing, none has a different count (a window
# restored wrong would show up as a second, different line). Exactly-once
# output is test_crash_loop.sh's.
#
# usage: test_job_restore.sh SPATE
set -eu
spate=$1
. "$(cd "$(dirname "$0")" && pwd)/kill_lib.sh"
dir=$(mktemp -d /tmp/spate-restore-XXXXXX)
mnt=""
cleanup() {
    pkill -9 -f "$dir" 2>/dev/null || true
    if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

# The job: 2M clicks, no stragglers, 4 generator partitions (so it restores
# onto any core count), 1000 users; `rate` slows it so a kill lands mid-way.
job=(run user-window-count --param events=2000000 --param late-every=0 --param partitions=4
     --log-level info)

"$spate" "${job[@]}" --param sink=file:"$dir/expected" >"$dir/expected.log" 2>&1 ||
    fail "the run without checkpoints failed"
sort -u "$dir/expected" >"$dir/expected.sorted"
[ "$(wc -l <"$dir/expected.sorted")" -eq 8000 ] || fail "expected 8000 window results"

# run_until_killed NAME CORES DELAY ARGS...: starts the job in the
# background and kills it with SIGKILL after DELAY seconds (if it is still
# running). Returns 0 when it finished by itself.
run_until_killed() {
    local name=$1 cores=$2 delay=$3
    shift 3
    "$spate" "${job[@]}" --cores "$cores" --param sink=file:"$dir/$name.out" "$@" \
        >"$dir/$name.log" 2>&1 &
    local pid=$!
    kill_after "$pid" "$delay" && return 1
    wait "$pid" || fail "$name: the job failed"
    return 0
}

# same_as_expected NAME...: the union of those runs' outputs is the expected set.
same_as_expected() {
    local files=()
    for n in "$@"; do
        [ -f "$dir/$n.out" ] && files+=("$dir/$n.out")
    done
    sort -u "${files[@]}" >"$dir/got.sorted"
    diff -q "$dir/got.sorted" "$dir/expected.sorted" >/dev/null ||
        fail "runs $* gave other results: $(diff "$dir/got.sorted" "$dir/expected.sorted" | head -5)"
}

echo "# killed at random moments, restored each time"
ck="file://$dir/ck1"
runs=()
for i in $(seq 1 8); do
    runs+=("k$i")
    # 0.3 to 1.5 s of a job that takes several seconds at this rate
    if run_until_killed "k$i" 2 $((3 + RANDOM % 13)) --param rate=400000 \
        --checkpoint-dir "$ck" --checkpoint-interval 100; then
        break
    fi
    if [ "$i" -gt 1 ] && grep -q "checkpoint [0-9]* complete" "$dir/k$((i - 1)).log"; then
        grep -q "restoring checkpoint" "$dir/k$i.log" || fail "run k$i did not restore"
    fi
done
if [ "${runs[-1]}" != "k8" ] || ! grep -q "finished after" "$dir/k8.log" 2>/dev/null; then
    runs+=("kend")
    "$spate" "${job[@]}" --cores 2 --param sink=file:"$dir/kend.out" --checkpoint-dir "$ck" \
        >"$dir/kend.log" 2>&1 || fail "the last run failed"
fi
same_as_expected "${runs[@]}"
"$spate" checkpoint list "$ck" >"$dir/list.out" || fail "checkpoint list"
[ "$(grep -cE '^[0-9]+ +[0-9]{4}-.* ok$' "$dir/list.out")" -le 3 ] ||
    fail "more than 3 checkpoints retained: $(cat "$dir/list.out")"

echo "# restored onto another shard count"
for shape in "2 1" "1 2"; do
    set -- $shape
    ck="file://$dir/ck-$1-$2"
    run_until_killed "r$1$2a" "$1" 15 --param rate=400000 --checkpoint-dir "$ck" \
        --checkpoint-interval 100 && fail "the job ended before it was killed"
    grep -q "checkpoint [0-9]* complete" "$dir/r$1$2a.log" || fail "no checkpoint before the kill"
    "$spate" "${job[@]}" --cores "$2" --param sink=file:"$dir/r$1$2b.out" --checkpoint-dir "$ck" \
        >"$dir/r$1$2b.log" 2>&1 || fail "restore $1 -> $2 shards failed"
    grep -q "restoring checkpoint .* ($1 shards then, $2 now)" "$dir/r$1$2b.log" ||
        fail "restore $1 -> $2: no restore"
    same_as_expected "r$1$2a" "r$1$2b"
done

echo "# the newest checkpoint damaged: the one before is used"
ck="file://$dir/ck-bad"
run_until_killed bad1 2 15 --param rate=400000 --checkpoint-dir "$ck" --checkpoint-interval 100 &&
    fail "the job ended before it was killed"
newest=$(ls "$dir/ck-bad/manifests" | sort | tail -1)
newest_id=$((16#${newest%.manifest}))
seg=$(ls "$dir/ck-bad/segments" | grep "^${newest%.manifest}-" | head -1)
[ -n "$seg" ] || fail "checkpoint $newest_id wrote no segment"
printf 'XXXX' | dd of="$dir/ck-bad/segments/$seg" bs=1 seek=20 conv=notrunc 2>/dev/null
# A savepoint now (the next run's final checkpoint would be the newest after).
"$spate" savepoint "$ck" "file://$dir/sp" >"$dir/sp.out" 2>&1 || fail "spate savepoint: $(cat "$dir/sp.out")"
"$spate" "${job[@]}" --cores 2 --param sink=file:"$dir/bad2.out" --checkpoint-dir "$ck" \
    >"$dir/bad2.log" 2>&1 || fail "restore after damage failed"
grep -q "checkpoint $newest_id does not verify" "$dir/bad2.log" || fail "damage not detected"
grep -q "restoring checkpoint" "$dir/bad2.log" || fail "no earlier checkpoint restored"
same_as_expected bad1 bad2

echo "# a savepoint (taken above, of the damaged store): a job started from it"
grep -q "^savepoint of checkpoint" "$dir/sp.out" || fail "savepoint: $(cat "$dir/sp.out")"
"$spate" checkpoint list "file://$dir/sp" >"$dir/sp.list" 2>&1 || fail "list the savepoint"
[ "$(grep -cE '^[0-9]+ +[0-9]{4}-.* 0 +[0-9]+ +[0-9]+ +ok$' "$dir/sp.list")" -eq 1 ] ||
    fail "the savepoint is not one self-contained checkpoint: $(cat "$dir/sp.list")"
"$spate" "${job[@]}" --param sink=file:"$dir/sp1.out" --checkpoint-dir "file://$dir/ck-from-sp" \
    --from-savepoint "file://$dir/sp" >"$dir/sp1.log" 2>&1 || fail "a run from the savepoint failed"
grep -q "restoring checkpoint .* from file://$dir/sp " "$dir/sp1.log" || fail "the savepoint was not used"
same_as_expected bad1 sp1
set +e
"$spate" savepoint "file://$dir/nothing-here" "file://$dir/sp2" >"$dir/sp2.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a savepoint of an empty store: exit $rc"

echo "# --restore ID, --restore none, a wrong one"
# the oldest checkpoint that verifies (the damaged one may still be kept)
"$spate" checkpoint list "$ck" >"$dir/bad.list" 2>&1 || true
first_id=$(awk '/^[0-9]+ +[0-9][0-9][0-9][0-9]-.* ok$/ {print $1; exit}' "$dir/bad.list")
[ -n "$first_id" ] || fail "no checkpoint verifies: $(cat "$dir/bad.list")"
"$spate" "${job[@]}" --param sink=file:"$dir/id.out" --checkpoint-dir "$ck" \
    --restore "$first_id" >"$dir/id.log" 2>&1 || fail "--restore $first_id failed"
grep -q "restoring checkpoint $first_id " "$dir/id.log" || fail "--restore $first_id not used"
"$spate" "${job[@]}" --param sink=file:"$dir/none.out" --checkpoint-dir "$ck" \
    --restore none >"$dir/none.log" 2>&1 || fail "--restore none failed"
! grep -q "restoring" "$dir/none.log" || fail "--restore none restored"
same_as_expected none
set +e
"$spate" "${job[@]}" --param sink=file:"$dir/x.out" --checkpoint-dir "$ck" --restore 999999 \
    >"$dir/x.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "no checkpoint 999999" "$dir/x.log" ||
    fail "--restore of a missing checkpoint: exit $rc"
set +e
"$spate" run user-window-count --restore latest >"$dir/y.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--restore without --checkpoint-dir: exit $rc"

echo "# a full disk fails checkpoints, not the job"
if [ "$(id -u)" -eq 0 ] && mkdir -p "$dir/tmpfs" && mount -t tmpfs -o size=64k tmpfs "$dir/tmpfs"; then
    mnt="$dir/tmpfs"
    "$spate" "${job[@]}" --param rate=2000000 --param sink=file:"$dir/full.out" \
        --checkpoint-dir "file://$mnt/ck" --checkpoint-interval 100 >"$dir/full.log" 2>&1 ||
        fail "the job failed on a full checkpoint disk"
    grep -q "checkpoint [0-9]* failed: No space left on device" "$dir/full.log" ||
        fail "no checkpoint failed for lack of space"
    same_as_expected full
else
    echo "not root or no tmpfs: the full-disk case is skipped"
fi
echo "PASS"
