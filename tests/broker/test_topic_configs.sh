#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker's topic configs and log compaction with real clients:
# kafka-python creates topics with configs (bad ones refused with
# INVALID_CONFIG), DescribeConfigs shows a topic's own values as
# DYNAMIC_TOPIC_CONFIG and keeps them over a restart; AlterConfigs and
# IncrementalAlterConfigs change them and open logs follow (segment size,
# cleanup policy). A compacted topic with small segments: kcat produces
# keyed records several times, the cleaner runs, and a consumer from the
# beginning sees only the latest record per key at its original offset; a
# record without a key is refused. Also the review's Metadata fixes (a name
# asked twice answered once, a bounded answer, auto-creation capped) and
# ListOffsets by time (the record's offset and timestamp, -1/-1 past the
# end, -3 for the largest timestamp).
# Usage: test_topic_configs.sh SPATE
set -euo pipefail
spate=$1
here=$(cd "$(dirname "$0")" && pwd)
client=$here/topic_client.py
py=/usr/bin/python3
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
"$py" -c 'import kafka.admin, confluent_kafka' 2>/dev/null ||
    { echo "python3-kafka or python3-confluent-kafka missing"; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -20 "$dir/log" >&2; }
    exit 1
}

. "$(dirname "$0")/broker_lib.sh"

tc() { timeout 60 "$py" "$client" "$broker" "$@"; }

# Waits (up to 60 s, polling) until the command's output is the expected text.
wait_for() {
    local want=$1
    shift
    for _ in $(seq 300); do
        [ "$("$@" 2>/dev/null)" = "$want" ] && return 0
        sleep 0.2
    done
    return 1
}

start --log-cleaner-interval-ms 100 --max-topics 40 --metadata-partitions-max 20

# ---- CreateTopics with configs ----
[ "$(tc create cfg 1 cleanup.policy=compact retention.ms=3600000 segment.bytes=2048)" = created ] ||
    fail "create with configs"
[ "$(tc create bad1 1 cleanup.policy=shred)" = "error InvalidConfigurationError" ] ||
    fail "a bad cleanup.policy was not refused"
[ "$(tc create bad2 1 no.such.config=1)" = "error InvalidConfigurationError" ] ||
    fail "an unknown config was not refused"
[ "$(tc create bad3 1 message.timestamp.type=LogAppendTime)" = "error InvalidConfigurationError" ] ||
    fail "LogAppendTime was not refused"
tc describe cfg >"$dir/cfg"
for kv in 'cleanup.policy compact 1' 'retention.ms 3600000 1' 'segment.bytes 2048 1' \
    'retention.bytes -1 5' 'min.cleanable.dirty.ratio 0.5 5' 'delete.retention.ms 86400000 5'; do
    grep -qx "$kv" "$dir/cfg" || fail "describe_configs: no '$kv' in $(cat "$dir/cfg")"
done

# ---- AlterConfigs (replaces the set) and IncrementalAlterConfigs (changes it) ----
[ "$(tc alter cfg retention.ms=7200000 | cut -d' ' -f1)" = 0 ] || fail "alter_configs"
tc describe cfg >"$dir/cfg"
grep -qx 'retention.ms 7200000 1' "$dir/cfg" || fail "after alter: $(cat "$dir/cfg")"
grep -qx 'cleanup.policy delete 5' "$dir/cfg" || fail "alter did not replace: $(cat "$dir/cfg")"
[ "$(tc ialter cfg set:cleanup.policy=compact,delete delete:retention.ms)" = "0 " ] ||
    fail "incremental_alter_configs"
tc describe cfg >"$dir/cfg"
grep -qx 'cleanup.policy compact,delete 1' "$dir/cfg" || fail "after ialter: $(cat "$dir/cfg")"
grep -qx 'retention.ms -1 5' "$dir/cfg" || fail "ialter delete: $(cat "$dir/cfg")"
tc ialter cfg set:segment.bytes=12 | grep -q '^40 segment.bytes' || fail "a bad value not refused"
tc ialter cfg set:nope=1 | grep -q '^40 ' || fail "an unknown name not refused"
[ "$(tc ialter missing set:retention.ms=1 | cut -d' ' -f1)" = 3 ] || fail "ialter of a missing topic"
# Kept over a restart (and the older lines of the topics file still load).
stop
start --log-cleaner-interval-ms 100 --max-topics 40 --metadata-partitions-max 20
tc describe cfg >"$dir/cfg"
grep -qx 'cleanup.policy compact,delete 1' "$dir/cfg" || fail "after a restart: $(cat "$dir/cfg")"
# (AlterConfigs replaced the whole set: segment.bytes is the broker's again.)
grep -qx 'segment.bytes 1073741824 5' "$dir/cfg" || fail "after a restart: $(cat "$dir/cfg")"

# ---- Compaction ----
[ "$(tc create changelog 1 cleanup.policy=compact segment.bytes=1024 \
    min.cleanable.dirty.ratio=0.01)" = created ] || fail "create the compacted topic"
# Five rounds of the keys k1..k20, one kcat run each; round 0 also has k21
# and is gzip'd: the cleaner keeps k21 alone of it, recompressed. Offsets:
# round 0 at 0..20, round r at 21 + (r-1)*20 + key-1.
for r in 0 1 2 3 4; do
    codec=none last=20
    [ $r = 0 ] && codec=gzip last=21
    seq 1 $last | sed "s/.*/k&:v-$r-&/" | kcat -b "$broker" -P -t changelog -p 0 -K: -z $codec ||
        fail "produce round $r"
done
# A last record of another key, large enough to roll: the rounds are then in closed segments.
printf 'end:%01100d\n' 0 | kcat -b "$broker" -P -t changelog -p 0 -K: || fail "produce the roll"
# Refused with CORRUPT_MESSAGE (librdkafka names it INVALID_MSG).
[ "$(tc produce-nullkey changelog)" = "error INVALID_MSG" ] || fail "a null key was not refused"
read_changelog() {
    timeout 30 kcat -b "$broker" -C -t changelog -p 0 -o beginning -e -q -f '%o %k %s\n' |
        cut -c1-40
}
want=$(echo "20 k21 v-0-21"
    for k in $(seq 1 20); do echo "$((81 + k - 1)) k$k v-4-$k"; done
    printf '101 end %s\n' "$(printf '%01100d' 0 | cut -c1-$((40 - 8)))")
wait_for "$want" read_changelog ||
    fail "not compacted to the latest per key: $(read_changelog | head -30)"
[ "$(ls "$dir"/data/changelog-0/*.log | wc -l)" -ge 2 ] || fail "expected several segments"
# A restart keeps the compacted log as it is.
stop
start --log-cleaner-interval-ms 100 --max-topics 40 --metadata-partitions-max 20
[ "$(read_changelog)" = "$want" ] || fail "after a restart: $(read_changelog | head)"

# ---- A change applies to the open log: a delete topic becomes compacted ----
[ "$(tc create later 1)" = created ] || fail "create later"
for r in 0 1 2; do
    seq 1 5 | sed "s/.*/k&:w-$r-&/" | kcat -b "$broker" -P -t later -p 0 -K: || fail "later $r"
done
[ "$(tc ialter later set:segment.bytes=100 set:cleanup.policy=compact \
    set:min.cleanable.dirty.ratio=0)" = "0 " ] || fail "ialter later"
# The new segment size: the next append rolls.
printf 'end:x\n' | kcat -b "$broker" -P -t later -p 0 -K: || fail "later roll"
read_later() {
    timeout 30 kcat -b "$broker" -C -t later -p 0 -o beginning -e -q -f '%o %k %s\n'
}
want=$(for k in $(seq 1 5); do echo "$((10 + k - 1)) k$k w-2-$k"; done; echo "15 end x")
wait_for "$want" read_later || fail "later was not compacted: $(read_later)"

# ---- ListOffsets by time ----
tc create times 1 >/dev/null
[ "$(tc produce-ts times 1000 3000 2000 5000 4000)" = "0 1 2 3 4" ] || fail "produce with timestamps"
[ "$(tc offsets times 500 1)" = "0 0 1000" ] || fail "v1 at 500: $(tc offsets times 500 1)"
[ "$(tc offsets times 2500 1)" = "0 1 3000" ] || fail "v1 at 2500: $(tc offsets times 2500 1)"
[ "$(tc offsets times 4500 5)" = "0 3 5000" ] || fail "v5 at 4500: $(tc offsets times 4500 5)"
[ "$(tc offsets times 6000 7)" = "0 -1 -1" ] || fail "v7 past the end: $(tc offsets times 6000 7)"
[ "$(tc offsets times -3 7)" = "0 3 5000" ] || fail "v7 max timestamp: $(tc offsets times -3 7)"
[ "$(tc offsets times -1 7)" = "0 5 -1" ] || fail "v7 latest: $(tc offsets times -1 7)"
[ "$(tc offsets times -2 7)" = "0 0 -1" ] || fail "v7 earliest: $(tc offsets times -2 7)"

# ---- Metadata: a name asked twice is answered once; the answer is bounded ----
tc create big 15 >/dev/null
out=$(tc metadata big cfg big big)
[ "$(echo "$out" | head -1)" = "count 2" ] || fail "duplicates not merged: $out"
echo "$out" | grep -qx 'big 0 15' || fail "metadata big: $out"
# 15 + 1 partitions fit the limit of 20; a third topic of 15 would not.
tc create big2 15 >/dev/null
out=$(tc metadata big cfg big2)
echo "$out" | grep -qx 'big2 44 0' || fail "the answer was not bounded: $out"
# Auto-creation by one request, capped at 40 topics in all.
names=$(seq 1 60 | sed 's/^/auto-/')
out=$(tc metadata-create $names)
[ "$(echo "$out" | head -1)" = "count 60" ] || fail "metadata-create: $(echo "$out" | head -3)"
echo "$out" | grep -q ' 3 0$' && fail "a topic neither created nor refused: $out"
[ "$(grep -c . "$dir/data/topics")" -eq 40 ] ||
    fail "not capped at 40 topics: $(grep -c . "$dir/data/topics")"
[ "$(tc metadata auto-1 auto-60 | tr '\n' ' ')" = "count 2 auto-1 0 1 auto-60 44 0 " ] ||
    fail "after auto-creation: $(tc metadata auto-1 auto-60)"

stop
echo "ok"
