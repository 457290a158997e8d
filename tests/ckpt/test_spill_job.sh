#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Keyed state larger than managed memory (state/sp_spill.h), through
# `spate run`: the keyed-state job (a running count per key, 400000 keys,
# 1.2M events, 2 shards) with 16 MiB of managed memory per shard, which
# holds about half its state, spills to a directory and gives output
# identical, line for line, to a run with memory to spare; the same memory
# with --spill-dir none fails with a clear error; a spilling run with
# checkpoints, killed with SIGKILL at random moments and restored (restores
# larger than memory spill too), publishes through the exactly-once part
# file sink exactly the output of the run that never stopped; and the spill
# files leave nothing behind.
#
# usage: test_spill_job.sh SPATE
set -eu
spate=$1
dir=$(mktemp -d /tmp/spate-spill-XXXXXX)
cleanup() {
    pkill -9 -f "$dir" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$dir"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
    done
    exit 1
}

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
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$delay" ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
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
[ -z "$(ls -A "$dir/spill")" ] || fail "spill files were left behind after kills"
echo "ok: spilled run identical; no-spill run refused; $kills kills, exactly once"
