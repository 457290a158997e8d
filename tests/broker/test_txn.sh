#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Transactions on spate broker with real clients:
# - confluent-kafka-python (librdkafka 2.0 inside): committed records
#   visible and aborted ones invisible to read_committed consumers, an open
#   transaction holding them back (the last stable offset), offsets sent to
#   a transaction stored on commit only, fencing by a second producer of the
#   same transactional.id, a transaction timing out aborted by the broker;
# - kcat (librdkafka filters aborted records itself) in read_committed and
#   read_uncommitted mode over the same topic;
# - a broker restart: what the coordinator recorded (the transactional id's
#   producer id and epoch) stays, so the next producer of that id fences
#   the previous epoch.
# Usage: test_txn.sh SPATE
set -euo pipefail
spate=$1
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
$py -c 'import confluent_kafka' 2>/dev/null ||
    { echo "python3-confluent-kafka missing (scripts/deps test installs it)"; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -30 "$dir/log" >&2; }
    exit 1
}

. "$(dirname "$0")/broker_lib.sh"

start --partitions 3

for c in commit-abort offsets fence timeout; do
    echo "== $c"
    timeout 120 $py "$here/txn_client.py" "$broker" "$c" || fail "case $c"
done

# kcat sees the same as confluent-kafka: 159 committed (130 of two committed
# transactions, 20 of the one left open then committed, 9 plain), 50 aborted.
n=$(timeout 60 kcat -C -b "$broker" -t txn-ca -o beginning -e -q -X isolation.level=read_committed |
    wc -l)
[ "$n" -eq 159 ] || fail "kcat read_committed read $n records, want 159"
n=$(timeout 60 kcat -C -b "$broker" -t txn-ca -o beginning -e -q -X isolation.level=read_uncommitted |
    wc -l)
[ "$n" -eq 209 ] || fail "kcat read_uncommitted read $n records, want 209"
echo "kcat: read_committed 159, read_uncommitted 209"

# The coordinator's state survives a restart: the id keeps its producer id
# and the next producer of it gets the next epoch.
timeout 120 $py "$here/txn_client.py" "$broker" again || fail "case again"
hex=$(printf 'again-txn' | od -An -tx1 | tr -d ' \n')
line=$(grep "^txn $hex " "$dir/data/transactions") || fail "again-txn not recorded"
read -r _ _ pid0 epoch0 _ <<<"$line"
stop
start --partitions 1
timeout 120 $py "$here/txn_client.py" "$broker" again || fail "case again after a restart"
read -r _ _ pid1 epoch1 _ <<<"$(grep "^txn $hex " "$dir/data/transactions")"
[ "$pid1" = "$pid0" ] && [ "$epoch1" -eq $((epoch0 + 1)) ] ||
    fail "after a restart again-txn is producer $pid1 epoch $epoch1, was $pid0 epoch $epoch0"
echo "restart: again-txn kept producer $pid0, epoch $epoch0 -> $epoch1"

# A transaction open across a restart (clean, then SIGKILL) is aborted when
# it times out, and the partition still knows where it began: its records
# stay invisible to read_committed, the records after it become visible.
for how in TERM KILL; do
    timeout 60 $py "$here/txn_client.py" "$broker" leave-open "open-$how" || fail "leave-open"
    if [ $how = TERM ]; then
        stop
    else
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
    fi
    start --partitions 1
    timeout 120 $py "$here/txn_client.py" "$broker" check-open "open-$how" ||
        fail "check-open after SIG$how"
done
stop
echo "ok"
