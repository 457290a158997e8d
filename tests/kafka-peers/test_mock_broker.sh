#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The mock broker's control protocol, checked from the outside with a real
# Kafka client (kcat, librdkafka): a 3-broker mock is started, every command
# is sent on its stdin, its one reply line read back, and the effect looked
# at with kcat -- topics and leaders in Metadata, pushed errors failing or
# retrying a produce, per-broker errors and delays hitting only that
# broker's partitions, a broker that is down refusing connections, the
# coordinators that FindCoordinator reports, RTTs in produce latency. Then
# the ways it ends: quit, EOF on stdin (a last line without a newline still
# runs), SIGTERM. Every wait is bounded (replies 10 s, kcat 20 s, log
# polls 10 s); the delays it injects are 800 ms.
#
# Usage: test_mock_broker.sh PATH/TO/mock_broker   (exit 77: no kcat)
set -uo pipefail

mock=${1:?usage: $0 PATH/TO/mock_broker}
command -v kcat >/dev/null 2>&1 || { echo "SKIP: kcat not installed"; exit 77; }
[ -x "$mock" ] || { echo "FAIL: $mock is not an executable"; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "${in_fd:-}" ] && exec {in_fd}>&-
    [ -n "${out_fd:-}" ] && exec {out_fd}<&-
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

checks=0
fail() {
    echo "FAIL: $*"
    echo "--- mock log (tail)"
    tail -n 30 "$work/mock.log" 2>/dev/null
    exit 1
}
pass() {
    checks=$((checks + 1))
    echo "ok $checks - $*"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- Start: 3 brokers, one topic from the command line -----------------------

mkfifo "$work/in" "$work/out"
"$mock" --brokers 3 --topic base:2 <"$work/in" >"$work/out" 2>"$work/mock.log" &
pid=$!
exec {in_fd}>"$work/in"
exec {out_fd}<"$work/out"
read -r -t 10 -u "$out_fd" boot || fail "no bootstrap line"
[[ "$boot" =~ ^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]] ||
    fail "bootstrap line '$boot' is not three host:port"
pass "bootstrap list of 3 brokers: $boot"

# send CMD: writes one command, reads its one reply into $reply.
send() {
    printf '%s\n' "$1" >&"$in_fd" || fail "cannot write '$1'"
    read -r -t 10 -u "$out_fd" reply || fail "no reply to '$1'"
}
expect_ok() {
    send "$1"
    [ "$reply" = ok ] || fail "'$1' -> '$reply', expected ok"
}
# expect_error CMD REGEX: the reply is "error ..." matching REGEX.
expect_error() {
    send "$1"
    [[ "$reply" =~ ^error\ .+ ]] || fail "'$1' -> '$reply', expected an error"
    [[ "$reply" =~ $2 ]] || fail "'$1' -> '$reply', expected /$2/"
}

kc() { timeout 20 kcat -b "$boot" "$@"; }
meta() { kc -L -t "$1" 2>&1; }
# produce TOPIC PARTITION VALUE [kcat args...]: stderr goes to $work/produce.err.
produce() {
    local topic=$1 part=$2 value=$3
    shift 3
    printf '%s\n' "$value" | kc -P -t "$topic" -p "$part" "$@" 2>"$work/produce.err"
}
values() { kc -C -t "$1" -p "$2" -o beginning -e -q -f '%s\n' 2>/dev/null; }

meta base | grep -q 'topic "base" with 2 partitions' || fail "--topic base:2 not in metadata"
pass "--topic NAME:PARTITIONS still works"

# ---- topic ------------------------------------------------------------------

expect_ok "topic ctl 3 3"
m=$(meta ctl)
grep -q 'topic "ctl" with 3 partitions' <<<"$m" || fail "ctl not in metadata: $m"
[ "$(grep -cE 'partition [0-9]+, leader [1-3], replicas: [1-3],[1-3],[1-3],' <<<"$m")" = 3 ] ||
    fail "ctl partitions do not have 3 replicas: $m"
pass "topic ctl 3 3: 3 partitions of 3 replicas each in metadata"
# librdkafka 2.0.2's mock ignores the replication factor (every partition
# gets min(3, brokers) replicas): only the topic itself is checked here.
expect_ok "topic single 2 1"
meta single | grep -q 'topic "single" with 2 partitions' || fail "topic single not in metadata"
pass "topic single 2 1: in metadata"
expect_error "topic ctl 3 3" "TOPIC_ALREADY_EXISTS"
expect_error "topic x 0" "partition count"
expect_error "topic x 2 4" "replication factor"
expect_error "topic x" "usage"
pass "topic: existing topic, bad counts and usage rejected"

# ---- leader -------------------------------------------------------------------

expect_ok "leader ctl 2 3"
meta ctl | grep -q 'partition 2, leader 3,' || fail "partition 2's leader is not 3"
expect_ok "leader ctl 2 1"
meta ctl | grep -q 'partition 2, leader 1,' || fail "partition 2's leader is not 1"
pass "leader: metadata follows (3, then 1)"
expect_error "leader ctl 9 1" "UNKNOWN_TOPIC_OR_PART"
expect_error "leader ctl 0 4" "broker id"
pass "leader: bad partition and broker rejected"

# The layout the rest relies on: partition N is led by broker N+1.
expect_ok "leader ctl 0 1"
expect_ok "leader ctl 1 2"
expect_ok "leader ctl 2 3"
meta ctl | grep -q 'partition 1, leader 2,' || fail "layout not in metadata"

# ---- push-errors --------------------------------------------------------------

expect_ok "push-errors Produce TOPIC_AUTHORIZATION_FAILED"
produce ctl 0 denied && fail "produce succeeded through a pushed TOPIC_AUTHORIZATION_FAILED"
grep -q "Topic authorization failed" "$work/produce.err" ||
    fail "kcat did not report the pushed error: $(cat "$work/produce.err")"
produce ctl 0 first || fail "produce after the pushed error was used up: $(cat "$work/produce.err")"
pass "push-errors: one produce fails visibly, the next succeeds"

expect_ok "push-errors 0 NOT_LEADER_FOR_PARTITION,6"
produce ctl 0 retried -d msg || fail "produce did not survive two retriable errors"
[ "$(grep -c 'Not leader for partition' "$work/produce.err")" -ge 2 ] ||
    fail "kcat did not retry twice: $(grep -i leader "$work/produce.err")"
[ "$(values ctl 0 | tr '\n' ' ')" = "first retried " ] ||
    fail "partition 0 holds '$(values ctl 0 | tr '\n' ' ')'"
pass "push-errors: retriable errors retried, each message stored once"
expect_error "push-errors 0 NO_SUCH_ERROR" "unknown error"
expect_error "push-errors Bogus 6" "api key"
expect_error "push-errors 0 6:100" "no RTT"

# ---- broker-push-errors ---------------------------------------------------------

expect_ok "broker-push-errors 2 Produce TOPIC_AUTHORIZATION_FAILED"
produce ctl 0 other-broker || fail "broker 1's partition hit broker 2's error"
produce ctl 1 denied && fail "broker 2's partition did not get its pushed error"
grep -q "Topic authorization failed" "$work/produce.err" || fail "not the pushed error"
produce ctl 1 after || fail "broker 2's error stack not used up"
pass "broker-push-errors: only broker 2's partition fails, once"

expect_ok "broker-push-errors 2 0 0:800,RD_KAFKA_RESP_ERR_NO_ERROR:0"
t0=$(now_ms)
produce ctl 1 slow || fail "produce with a pushed 800 ms delay failed"
took=$(($(now_ms) - t0))
[ "$took" -ge 800 ] || fail "produce with a pushed 800 ms delay took $took ms"
pass "broker-push-errors: ERR:RTT_MS delays the answer ($took ms)"
expect_error "broker-push-errors 7 0 1" "broker id"
expect_error "broker-push-errors 1 0 6:x" "bad rtt"

# ---- rtt ------------------------------------------------------------------------

expect_ok "rtt 3 800"
t0=$(now_ms)
produce ctl 2 slow || fail "produce to a slow broker failed"
took=$(($(now_ms) - t0))
[ "$took" -ge 800 ] || fail "produce to broker 3 with rtt 800 took $took ms"
expect_ok "rtt 3 0"
t0=$(now_ms)
produce ctl 2 fast || fail "produce after rtt 0 failed"
took_fast=$(($(now_ms) - t0))
[ "$took_fast" -lt 800 ] || fail "produce after rtt 0 still took $took_fast ms"
pass "rtt: 800 ms on broker 3 ($took ms), then 0 ($took_fast ms)"
expect_error "rtt 3 -5" "bad rtt"

# ---- broker-down / broker-up ------------------------------------------------------

b2=$(meta ctl | sed -n 's/^ *broker 2 at \([0-9.:]*\).*/\1/p')
[ -n "$b2" ] || fail "no address for broker 2 in metadata"
expect_ok "broker-down 2"
timeout 20 kcat -L -b "$b2" -m 2 >/dev/null 2>&1 && fail "broker 2 answered metadata while down"
produce ctl 1 lost -X message.timeout.ms=1500 && fail "produce to a down broker's partition succeeded"
grep -q "Message timed out" "$work/produce.err" || fail "no timeout: $(cat "$work/produce.err")"
pass "broker-down 2: no connection, its partition's produce times out"
expect_ok "broker-up 2"
timeout 20 kcat -L -b "$b2" -m 5 >/dev/null 2>&1 || fail "broker 2 still down after broker-up"
produce ctl 1 back || fail "produce after broker-up failed: $(cat "$work/produce.err")"
pass "broker-up 2: metadata and produce through broker 2 again"
expect_error "broker-down 0" "broker id"

# ---- coordinator ------------------------------------------------------------------

# watch_for REGEX FILE CMD...: runs CMD (output to FILE) until REGEX shows in FILE, 10 s at most.
watch_for() {
    local regex=$1 file=$2
    shift 2
    "$@" >"$file" 2>&1 &
    local cpid=$! found=1
    for _ in $(seq 100); do
        if grep -qE "$regex" "$file"; then
            found=0
            break
        fi
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    grep -qE "$regex" "$file" && found=0
    kill "$cpid" 2>/dev/null
    wait "$cpid" 2>/dev/null
    return $found
}

for b in 3 2; do
    expect_ok "coordinator group g1 $b"
    watch_for "Group \"g1\" coordinator is [0-9.:]+ id $b" "$work/group.log" \
        timeout 20 kcat -b "$boot" -G g1 ctl -q -e -d cgrp ||
        fail "FindCoordinator did not name broker $b for g1: $(grep -i coordinator "$work/group.log" | tail -3)"
done
pass "coordinator group: kcat's consumer finds broker 3, then broker 2"
expect_ok "coordinator txn tx1 2"
echo x | watch_for "Transaction coordinator is broker 2 " "$work/txn.log" \
    timeout 20 kcat -b "$boot" -P -t ctl -X transactional.id=tx1 -d eos ||
    fail "FindCoordinator did not name broker 2 for tx1: $(grep -i coordinator "$work/txn.log" | tail -3)"
pass "coordinator txn: kcat's transactional producer finds broker 2"
expect_error "coordinator fleet k 1" "group or txn"
expect_error "coordinator group g1 4" "broker id"

# ---- The protocol itself ----------------------------------------------------------

expect_error "" "empty line"
expect_error "frobnicate now" "unknown command"
expect_error "rtt 1" "usage"
expect_error "rtt 1 0 9" "usage"
send "$(printf 'rtt %02000d' 1)"
[[ "$reply" =~ ^error\ line\ longer ]] || fail "overlong line -> '$reply'"
expect_ok "rtt 1 0" # one reply for the long line: still in step
pass "one reply per line: empty, unknown, usage, overlong"

# ---- Ending ------------------------------------------------------------------------

# wait_exit PID: it exits within 5 s, with status 0.
wait_exit() {
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$1" 2>/dev/null && fail "mock_broker $1 still running"
    wait "$1"
    local rc=$?
    [ "$rc" = 0 ] || fail "mock_broker exited with $rc"
}

expect_ok "quit"
wait_exit "$pid"
pid=
pass "quit: ok, then exit 0"
exec {in_fd}>&- {out_fd}<&-
in_fd= out_fd=

# EOF: the commands from a pipe, the last without its newline, then exit.
out=$(printf 'topic eof 1\nrtt 1 0' | timeout 20 "$mock" --brokers 2 2>>"$work/mock.log")
[ "$?" = 0 ] || fail "mock_broker fed by a pipe did not exit 0"
[ "$(sed 1d <<<"$out" | tr '\n' ' ')" = "ok ok " ] || fail "EOF run printed '$out'"
pass "EOF on stdin: both commands answered (the last unended), exit 0"

# SIGTERM while stdin stays open.
"$mock" <"$work/in" >"$work/out2" 2>>"$work/mock.log" &
pid=$!
exec {in_fd}>"$work/in"
for _ in $(seq 100); do
    [ -s "$work/out2" ] && break
    sleep 0.1
done
[ -s "$work/out2" ] || fail "second mock did not start"
kill -TERM "$pid"
wait_exit "$pid"
pid=
pass "SIGTERM: exit 0"

echo "PASS: $checks checks"
