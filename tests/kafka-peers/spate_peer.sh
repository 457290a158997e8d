#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# spate_peer: `spate broker` behind mock_broker's interface, so that every
# client test written against librdkafka's mock cluster (through
# tests/net/client/mock_peer.h or a script) runs against spate's own Kafka
# endpoint as well. A test peer only.
#
# Usage (as mock_broker.c):
#   spate_peer.sh [--topic NAME:PARTITIONS]... [--brokers N]
# with the spate program in $SPATE_BIN (default: `spate` on the PATH).
#
# Starts one broker on 127.0.0.1 on a port the kernel chose, its data in a
# fresh temporary directory, creates each topic with `spate topic create`
# (a real CreateTopics), prints the bootstrap host:port on the first stdout
# line, then reads control lines from stdin, one reply line each ("ok" or
# "error <reason>"), until `quit`, EOF or SIGTERM/SIGINT; then it stops the
# broker with SIGTERM, waits for it and removes the directory.
#
# --brokers N is accepted and ignored: one node serves every partition and
# coordinates every group and transaction. Commands:
#   topic NAME PARTITIONS [REPLICATION]   CreateTopics (replication ignored)
#   quit                                  reply ok and stop
# and the mock's fault-injection commands (push-errors, broker-push-errors,
# broker-down, broker-up, leader, coordinator, rtt) answer
# "error unsupported ..." : a real single node cannot be steered so.
# The broker's log goes to stderr when it stops with a status other than 0,
# and that status is this script's.
set -uo pipefail

spate=${SPATE_BIN:-spate}
topics=()
while [ $# -gt 0 ]; do
    case $1 in
    --topic) topics+=("${2:?--topic NAME:PARTITIONS}"); shift 2 ;;
    --brokers) shift 2 ;;
    -h | --help) echo "usage: $0 [--topic NAME:PARTITIONS]... [--brokers N]" >&2; exit 0 ;;
    *) echo "spate_peer: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/spate_peer.XXXXXX") || exit 1
pid=
stopped=0
broker_rc=0
# stop: SIGTERM to the broker, which must exit 0 (its status is this
# script's: a broker that failed, or a sanitizer's report, fails the test);
# the directory goes.
stop() {
    trap '' TERM INT
    [ "$stopped" = 1 ] && return
    stopped=1
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid"
        broker_rc=$?
        if [ "$broker_rc" != 0 ]; then
            echo "spate_peer: the broker exited $broker_rc; its log:" >&2
            tail -n 50 "$dir/log" >&2
        fi
    fi
    rm -rf "$dir"
}
trap 'stop; exit $broker_rc' TERM INT

"$spate" --cores 2 broker --listen 127.0.0.1:0 --data "$dir/data" --port-file "$dir/port" \
    >"$dir/log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 400); do
    [ -s "$dir/port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.025
done
if ! [ -s "$dir/port" ]; then
    echo "spate_peer: the broker did not start; its log:" >&2
    cat "$dir/log" >&2
    stop
    exit 1
fi
bootstrap=127.0.0.1:$(cat "$dir/port")

# create NAME PARTITIONS: 0 or 1, with the reason in $reason.
create() {
    if reason=$(timeout 30 "$spate" --cores 1 topic create -b "$bootstrap" -t "$1" -p "$2" 2>&1); then
        return 0
    fi
    reason=$(printf '%s' "$reason" | grep '^spate: ' | head -n1)
    return 1
}

for t in "${topics[@]}"; do
    name=${t%:*} n=1
    [ "$name" != "$t" ] && n=${t##*:}
    if ! create "$name" "$n"; then
        echo "spate_peer: topic $name: $reason" >&2
        stop
        exit 1
    fi
done

echo "$bootstrap"
while true; do
    IFS= read -r line
    rc=$?
    # EOF with a last line without its newline still runs it (as mock_broker).
    [ $rc -ne 0 ] && [ -z "$line" ] && break
    read -r -a w <<<"$line"
    reply=ok
    case ${w[0]:-} in
    "") reply="error empty line" ;;
    topic)
        if [ ${#w[@]} -lt 3 ] || [ ${#w[@]} -gt 4 ]; then
            reply="error usage: topic NAME PARTITIONS [REPLICATION]"
        elif ! create "${w[1]}" "${w[2]}"; then
            reply="error $reason"
        fi
        ;;
    quit) echo ok; break ;;
    push-errors | broker-push-errors | broker-down | broker-up | leader | coordinator | rtt)
        reply="error unsupported by spate_peer: '${w[0]}' needs librdkafka's mock cluster" ;;
    *) reply="error unknown command '${w[0]}'" ;;
    esac
    echo "$reply"
    [ $rc -ne 0 ] && break
done
stop
exit $broker_rc
