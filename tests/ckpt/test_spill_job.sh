#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Keyed state larger than managed memory (state/sp_spill.h), through
# `spate run`: the keyed-state job (a running count per key, 400000 keys,
# 1.2M events, 2 shards) with 16 MiB of managed memory per shard, which
# holds about half its state, spills to a directory and gives output
# identical, line for line, to a run with memory to spare, and so does
# user-window-count (5-minute windows of a million users, on one shard);
# the same memory with --spill-dir none fails with a clear error, and a
# missing --spill-dir is refused; a spilling run with checkpoints, killed
# with SIGKILL at random moments and restored, publishes through the
# exactly-once part file sink exactly the output of the run that never
# stopped; and a checkpoint larger than memory restores (spilling as it
# goes).
#
# usage: test_spill_job.sh SPATE
set -eu
spate=$1
. "$(cd "$(dirname "$0")" && pwd)/kill_lib.sh"
dir=$(mktemp -d /tmp/spate-spill-XXXXXX)
cleanup() {
    pkill -9 -f "$dir" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/spill"
job=(run keyed-state --param keys=400000 --param events=1200000 --param partitions=4 --cores 2)

"$spate" "${job[@]}" --memory 256M --spill-dir none --param sink=files:"$dir/expected" \
    >"$dir/expected.log" 2>&1 || fail "the run in memory failed"
cat "$dir"/expected/part-* | sort >"$dir/expected.sorted"
[ "$(wc -l <"$dir/expected.sorted")" -eq 1200000 ] || fail "expected 1200000 counts"

# 1. Spilling gives the same output.
"$spate" "${job[@]}" --memory 16M --spill-dir "$dir/spill" --param sink=files:"$dir/spilled" \
    >"$dir/spilled.log" 2>&1 || fail "the spilling run failed"
grep -q "state spilled to disk" "$dir/spilled.log" || fail "the run did not spill"
cat "$dir"/spilled/part-* | sort | cmp -s - "$dir/expected.sorted" ||
    fail "the spilling run gave other output"
[ -z "$(ls -A "$dir/spill")" ] || fail "spill files were left behind: $(ls "$dir/spill")"

# 1b. Windows (namespace-ordered state, fired by watermarks) spilled: the
# same results as in memory. One shard: how much state is open when the
# watermark passes depends on the shards' timing; alone it does not, so
# the run spills the same every time (24 MiB holds all but about 6 MiB).
win=(run user-window-count --param users=1000000 --param events=3000000 --param late-every=0
     --cores 1)
"$spate" "${win[@]}" --memory 256M --spill-dir none --param sink=file:"$dir/win-expected" \
    >"$dir/win-expected.log" 2>&1 || fail "the window run in memory failed"
"$spate" "${win[@]}" --memory 24M --spill-dir "$dir/spill" --param sink=file:"$dir/win-spilled" \
    >"$dir/win-spilled.log" 2>&1 || fail "the spilling window run failed"
grep -q "state spilled to disk" "$dir/win-spilled.log" || fail "the window run did not spill"
sort "$dir/win-expected" >"$dir/win-expected.sorted"
sort "$dir/win-spilled" >"$dir/win-spilled.sorted"
cmp -s "$dir/win-expected.sorted" "$dir/win-spilled.sorted" ||
    fail "the spilling window run gave other results"

# 2. Without spilling, the same memory is too small, and says so.
if "$spate" "${job[@]}" --memory 16M --spill-dir none --param sink=blackhole \
    >"$dir/nospill.log" 2>&1; then
    fail "state twice the memory fitted without spilling"
fi
grep -q "keyed state does not fit" "$dir/nospill.log" || fail "no clear error without spilling"

# A spill directory that is not there is refused before the job starts.
rc=0
"$spate" "${job[@]}" --spill-dir "$dir/missing" >"$dir/missing.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--spill-dir $dir/missing: No such file" "$dir/missing.log" ||
    fail "a missing --spill-dir was not refused clearly (exit $rc)"

# 3. Checkpoints, kills and restores while spilling: exactly once.
ck="file://$dir/ck"
kills=0
for attempt in $(seq 1 40); do
    "$spate" "${job[@]}" --memory 16M --spill-dir "$dir/spill" --param rate=150000 \
        --param sink=files:"$dir/eo" --checkpoint-dir "$ck" --checkpoint-interval 300 --log-level info \
        >"$dir/eo.$attempt.log" 2>&1 &
    pid=$!
    delay=$((3 + RANDOM % 12)) # tenths of a second
    [ "$kills" -ge 5 ] && delay=100000 # then let it finish
    if kill_after "$pid" "$delay"; then
        kills=$((kills + 1))
        continue
    fi
    wait "$pid" || fail "run $attempt failed"
    break
done
[ "$kills" -ge 3 ] || fail "only $kills kills landed"
cat "$dir"/eo.*.log | grep -q "restored [0-9]* bytes of state" || fail "no run restored"
cat "$dir"/eo/part-* | sort | cmp -s - "$dir/expected.sorted" ||
    fail "after $kills kills the published output differs from the run that never stopped"
grep -q "state spilled to disk" "$dir/eo.$attempt.log" || fail "the last run did not spill"

# 4. A restore larger than memory: the final checkpoint of 3 holds every
# key (about 18 MB of stream, 30 MB in the tables); restored into 12 MiB a
# shard, it spills as it goes, and the run (its input already read) ends.
"$spate" "${job[@]}" --memory 12M --spill-dir "$dir/spill" --param sink=blackhole \
    --checkpoint-dir "$ck" --log-level info >"$dir/big-restore.log" 2>&1 ||
    fail "restoring state larger than memory failed"
restored=$(grep -o "restored [0-9]* bytes of state" "$dir/big-restore.log" |
    awk '{ s += $2 } END { print s + 0 }')
[ "$restored" -gt 15000000 ] || fail "the restore read only $restored bytes"
grep -q "state spilled to disk" "$dir/big-restore.log" || fail "the big restore did not spill"
echo "ok: spilled runs identical; no-spill run refused; $kills kills, exactly once;" \
    "$restored bytes restored into less memory"
