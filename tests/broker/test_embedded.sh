#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate run --embedded-broker: the Kafka endpoint inside the job's process.
# - a run produces generated clicks into a topic it creates
#   (--broker-topic), on its own endpoint, and ends;
# - a second run on the same data directory reads them to the end, writes
#   5-minute windows into another topic and, with --keep-serving, serves on
#   after it finished: kcat reads the windows from it, and they are the
#   windows the same job computes from the generator straight to stdout;
#   SIGINT ends it with status 0 and a "finished" summary;
# - `spate broker` on that data directory serves the same records;
# - wrong flags exit 2.
# Waits for conditions (with generous limits), never for fixed times.
# Usage: test_embedded.sh SPATE
set -euo pipefail
spate=$1
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$dir"/*.err "$dir/log"; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -10 "$f" >&2; }
    done
    exit 1
}

. "$(dirname "$0")/broker_lib.sh"

job=(user-window-count --param users=100 --param late-every=0 --param ms-per-event=60)
emb=(--embedded-broker 127.0.0.1:0 --broker-data "$dir/data" --broker-port-file "$dir/port")

# The windows computed straight from the generator: the reference. One core
# producing keeps each partition in generator order, so no click is late.
"$spate" --cores 1 run "${job[@]}" --param events=20K >"$dir/want.json" 2>"$dir/ref.err" ||
    fail "the reference run"
sort "$dir/want.json" -o "$dir/want.json"
echo "reference: $(wc -l <"$dir/want.json") windows"
[ -s "$dir/want.json" ] || fail "the reference run wrote nothing"

# Run 1: the clicks into 'clicks' on the run's own endpoint.
timeout 120 "$spate" --cores 1 run "${job[@]}" --param events=20K --param mode=produce \
    "${emb[@]}" --broker-topic clicks:2 --broker-topic clicks-per-user:3 2>"$dir/r1.err" ||
    fail "run 1 (mode=produce) exited $?"
grep -q "finished.*20000 records in.*20000 out" "$dir/r1.err" || fail "run 1: $(tail -1 "$dir/r1.err")"

# Run 2: windows into 'clicks-per-user', then serving on until SIGINT.
"$spate" --cores 2 run "${job[@]}" --param source=kafka --param to-end=true --param sink=kafka \
    "${emb[@]}" --keep-serving 2>"$dir/r2.err" &
pid=$!
end=$((SECONDS + 120))
until grep -q "keeps serving" "$dir/r2.err"; do
    kill -0 "$pid" 2>/dev/null || fail "run 2 exited before serving on"
    [ "$SECONDS" -lt "$end" ] || fail "run 2 did not finish"
    sleep 0.1
done
b=127.0.0.1:$(cat "$dir/port")
kcat -b "$b" -L -t clicks-per-user 2>/dev/null | grep -q "with 3 partitions" ||
    fail "clicks-per-user: not 3 partitions"
timeout 60 kcat -b "$b" -C -t clicks-per-user -e -q 2>"$dir/kcat.err" | sort >"$dir/got.json" ||
    fail "kcat -C"
cmp -s "$dir/got.json" "$dir/want.json" ||
    fail "the windows over Kafka ($(wc -l <"$dir/got.json")) differ from the reference ($(wc -l <"$dir/want.json"))"
kill -INT "$pid"
wait "$pid" || fail "run 2 exited $? on SIGINT"
pid=
grep -q "job user-window-count finished.*20000 records in" "$dir/r2.err" ||
    fail "run 2's summary: $(tail -1 "$dir/r2.err")"

# The data directory outlives the runs: spate broker serves the same.
start
[ "$(kcat -b "$broker" -C -t clicks -e -q 2>/dev/null | wc -l)" -eq 20000 ] ||
    fail "spate broker on the data directory: not 20000 clicks"
stop

# Wrong input: exit 2.
for bad in "--embedded-broker=nohost" "--embedded-broker=127.0.0.1:99999" "--embedded-broker 127.0.0.1:0 --broker-topic c:0" \
    "--keep-serving" "--broker-data $dir/x"; do
    set +e
    # shellcheck disable=SC2086
    "$spate" run user-window-count $bad >/dev/null 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "'$bad' exited $rc, wanted 2"
done
echo "ok"
