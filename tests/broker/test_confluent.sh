#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker against confluent-kafka-python (Debian's
# python3-confluent-kafka, on librdkafka; scripts/deps test installs it):
# an idempotent producer's records all delivered with gapless offsets, read
# once and in order per partition; a consumer group of two splitting the
# partitions, reading exactly once, committing, resumed by a new member
# (the scenario in test_confluent.py). Skips (77) without the package.
# Usage: test_confluent.sh SPATE
set -euo pipefail
spate=$1
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3 # Debian's packages import only here
if ! "$py" -c 'import confluent_kafka' 2>/dev/null; then
    echo "confluent-kafka missing (python3-confluent-kafka; scripts/deps test): skipping"
    exit 77
fi
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -20 "$dir/log" >&2; }
    [ -f "$dir/py.err" ] && { echo "--- confluent-kafka" >&2; tail -20 "$dir/py.err" >&2; }
    exit 1
}

. "$here/broker_lib.sh"

start
"$py" -c 'import confluent_kafka as c; print("confluent-kafka", c.version()[0], "librdkafka", c.libversion()[0])'
timeout 300 "$py" "$here/test_confluent.py" "$broker" >"$dir/py.out" 2>"$dir/py.err" ||
    fail "confluent-kafka: $(tail -1 "$dir/py.err")"
[ "$(cat "$dir/py.out")" = ok ] || fail "confluent-kafka said: $(cat "$dir/py.out")"
stop
grep -q "cannot encode" "$dir/log" && fail "the broker could not encode a response"
echo "ok"
