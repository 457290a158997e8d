#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Batches spate encodes, with each codec, are read back by kcat unchanged:
# for none, gzip, snappy, lz4 and zstd, kafka_produce (spate's codec alone)
# produces 5 records with keys, values and headers to a topic of a live
# librdkafka mock cluster, and kcat consumes them; keys, values and headers
# must be exactly what was written. Exits 77 (skip) without kcat.
# Usage: test_kcat_interop.sh MOCK_BROKER KAFKA_PRODUCE
set -euo pipefail
mock=$1 produce=$2
command -v kcat >/dev/null || { echo "kcat not installed: skipping"; exit 77; }
work=$(mktemp -d)
codecs=(none gzip snappy lz4 zstd)
topics=()
for c in "${codecs[@]}"; do topics+=(--topic "interop.$c:1"); done

# The mock runs until its stdin closes: a FIFO we hold open, closed at exit.
mkfifo "$work/stdin"
"$mock" "${topics[@]}" <"$work/stdin" >"$work/bootstrap" 2>"$work/mock.log" &
mock_pid=$!
exec 3>"$work/stdin"
trap 'exec 3>&-; kill $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
bootstrap=$(head -n1 "$work/bootstrap")
[ -n "$bootstrap" ] || { echo "mock broker did not start"; cat "$work/mock.log"; exit 1; }

for c in "${codecs[@]}"; do
    "$produce" "$bootstrap" "interop.$c" "$c" 5
    kcat -C -b "$bootstrap" -t "interop.$c" -o beginning -e -q \
        -f 'key=%k value=%s headers=%h\n' >"$work/got.$c"
    : >"$work/want.$c"
    for i in 0 1 2 3 4; do
        printf 'key=key-%d value=value %d from spate, codec %s; a repetitive payload payload payload payload headers=trace=t-%d,origin=spate\n' \
            "$i" "$i" "$c" "$i" >>"$work/want.$c"
    done
    if ! diff -u "$work/want.$c" "$work/got.$c"; then
        echo "kcat read back something else for codec $c"
        exit 1
    fi
    echo "codec $c: kcat read back all 5 records unchanged"
done
