#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker's administration APIs against real clients: kafka-python's
# KafkaAdminClient (CreateTopics, Metadata, DescribeConfigs for a topic and
# the broker, CreatePartitions, DeleteTopics, DescribeCluster), kcat -L
# agreeing after each step, a deleted topic's directories gone and not back
# after a restart; spate's own `topic create|list|delete`; DeleteRecords (a
# raw v0 frame) moving the low watermark that a consumer from the beginning
# then starts at, kept across a restart.
# Usage: test_admin.sh SPATE
set -euo pipefail
spate=$1
here=$(cd "$(dirname "$0")" && pwd)
client=$here/admin_client.py
py=/usr/bin/python3
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
"$py" -c 'import kafka.admin' 2>/dev/null || { echo "python3-kafka missing"; exit 1; }
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

adm() { timeout 60 "$py" "$client" "$broker" "$@"; }

# kcat -L: "<topic> <partitions>" per topic, sorted.
kmeta() {
    timeout 30 kcat -b "$broker" -L 2>&1 |
        sed -n 's/^ *topic "\([^"]*\)" with \([0-9]*\) partitions:/\1 \2/p' | sort
}

start --segment-bytes 1048576

# ---- kafka-python's admin client ----
[ "$(adm create orders 3)" = created ] || fail "create_topics"
adm list | grep -qx orders || fail "list_topics: $(adm list)"
[ "$(kmeta)" = "orders 3" ] || fail "kcat after create: $(kmeta)"
# Data in every partition, so that each has a directory.
seq 1 300 | sed 's/.*/key-&:value-&/' | kcat -b "$broker" -P -t orders -K: -X linger.ms=5 ||
    fail "produce to orders"
for p in 0 1 2; do
    [ -d "$dir/data/orders-$p" ] || fail "no directory for orders-$p"
done

adm describe-topic orders >"$dir/cfg"
grep -qx 'error 0' "$dir/cfg" || fail "describe_configs: $(cat "$dir/cfg")"
for kv in 'cleanup.policy delete' 'segment.bytes 1048576' 'retention.ms -1' \
    'message.timestamp.type CreateTime' 'flush.messages 9223372036854775807'; do
    grep -qx "$kv" "$dir/cfg" || fail "describe_configs: no '$kv' in $(cat "$dir/cfg")"
done
grep -q '^max.message.bytes [0-9]' "$dir/cfg" || fail "no max.message.bytes"
[ "$(adm describe-topic missing | head -1)" = "error 3" ] || fail "describe_configs of a missing topic"
adm describe-broker 0 >"$dir/bcfg"
grep -qx 'auto.create.topics.enable true' "$dir/bcfg" || fail "broker configs: $(cat "$dir/bcfg")"
grep -qx "log.dirs $dir/data" "$dir/bcfg" || fail "broker log.dirs: $(cat "$dir/bcfg")"
[ "$(adm cluster)" = "cluster spate controller 0 brokers 1" ] || fail "describe_cluster: $(adm cluster)"

[ "$(adm partitions orders 5 validate)" = ok ] || fail "create_partitions validate_only"
[ "$(kmeta)" = "orders 3" ] || fail "validate_only changed the topic: $(kmeta)"
[ "$(adm partitions orders 5)" = ok ] || fail "create_partitions to 5"
[ "$(kmeta)" = "orders 5" ] || fail "kcat after create_partitions: $(kmeta)"
[ "$(adm partitions orders 4)" = "error InvalidPartitionsError" ] || fail "shrinking not refused"
[ "$(adm partitions orders 5)" = "error InvalidPartitionsError" ] || fail "same count not refused"
[ "$(adm partitions missing 5)" = "error UnknownTopicOrPartitionError" ] ||
    fail "create_partitions of a missing topic"
# The new partitions take records.
echo "k:v" | kcat -b "$broker" -P -t orders -p 4 -K: || fail "produce to partition 4"
[ "$(timeout 30 kcat -b "$broker" -C -t orders -p 4 -o beginning -e -q | wc -l)" -eq 1 ] ||
    fail "partition 4 does not read back"

adm create keep 1 >/dev/null
[ "$(adm delete orders)" = deleted ] || fail "delete_topics"
[ "$(kmeta)" = "keep 1" ] || fail "kcat after delete: $(kmeta)"
adm list | grep -qx orders && fail "list_topics still has orders"
for p in 0 1 2 3 4; do
    [ ! -e "$dir/data/orders-$p" ] || fail "orders-$p is still on disk"
done
[ "$(adm delete orders)" = "error UnknownTopicOrPartitionError" ] || fail "deleting twice"

# A restart does not bring it back; a new topic of the same name starts empty.
stop
start --segment-bytes 1048576
[ "$(kmeta)" = "keep 1" ] || fail "after a restart: $(kmeta)"
[ "$(adm create orders 2)" = created ] || fail "create orders again"
[ "$(timeout 30 kcat -b "$broker" -C -t orders -o beginning -e -q | wc -l)" -eq 0 ] ||
    fail "the new orders has old records"
[ "$(adm delete orders keep)" = deleted ] || fail "delete two topics"
[ "$(kmeta)" = "" ] || fail "topics left: $(kmeta)"

# ---- spate's own client ----
"$spate" topic create -b "$broker" -t tool -p 2 >/dev/null || fail "spate topic create"
"$spate" topic list -b "$broker" | grep -q '^tool' || fail "spate topic list"
[ "$(kmeta)" = "tool 2" ] || fail "kcat after spate topic create: $(kmeta)"
"$spate" topic delete -b "$broker" -t tool >/dev/null || fail "spate topic delete"
"$spate" topic list -b "$broker" | grep -q '^tool' && fail "spate topic list after delete"
[ "$(kmeta)" = "" ] || fail "kcat after spate topic delete: $(kmeta)"

# ---- DeleteRecords ----
adm create dr 1 >/dev/null
seq 1 100 | kcat -b "$broker" -P -t dr -p 0 -X linger.ms=5 || fail "produce to dr"
[ "$(adm delete-records dr 0 40)" = "0 40" ] || fail "delete-records to 40"
[ "$(adm delete-records dr 0 30)" = "0 40" ] || fail "delete-records before the start"
[ "$(adm delete-records dr 0 101)" = "1 -1" ] || fail "delete-records past the end"
[ "$(adm delete-records dr 0 -5)" = "1 -1" ] || fail "delete-records at -5"
[ "$(adm delete-records dr 3 1)" = "3 -1" ] || fail "delete-records of a missing partition"
[ "$(adm delete-records nope 0 1)" = "3 -1" ] || fail "delete-records of a missing topic"
read_dr() {
    timeout 30 kcat -b "$broker" -C -t dr -o beginning -e -q -f '%o %s\n' >"$dir/dr"
    [ "$(head -1 "$dir/dr")" = "$1 $(($1 + 1))" ] || fail "from the beginning: $(head -1 "$dir/dr")"
    [ "$(wc -l <"$dir/dr")" -eq $((100 - $1)) ] || fail "read $(wc -l <"$dir/dr") records"
}
read_dr 40
stop
start --segment-bytes 1048576
read_dr 40
[ "$(adm delete-records dr 0 -1)" = "0 100" ] || fail "delete-records to the high watermark"
[ "$(timeout 30 kcat -b "$broker" -C -t dr -o beginning -e -q | wc -l)" -eq 0 ] ||
    fail "records left after deleting all"

stop
echo "ok"
