#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate vs kcat (librdkafka) against the same librdkafka mock cluster, side
# by side in one run: N messages of 100 bytes over 64 partitions (few enough
# that the mock keeps them all), produced from the same file and consumed
# back, each timed with the wall clock. Prints msgs/s and spate/kcat ratios.
# Usage: bench/kafka/vs_kcat.sh [SPATE] [MOCK_BROKER] [N]
set -euo pipefail
spate=${1:-build-release/spate/spate}
mock=${2:-build-release/tests/kafka-peers/mock_broker}
n=${3:-1000000}
work=$(mktemp -d)
mkfifo "$work/ctl"
"$mock" --topic kcat.bench:64 --topic spate.bench:64 <"$work/ctl" >"$work/bootstrap" \
    2>"$work/mock.log" &
mock_pid=$!
exec 3>"$work/ctl"
trap 'exec 3>&-; kill $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
bs=$(head -n1 "$work/bootstrap")
# N lines of exactly 100 bytes (the newline is not part of the message).
awk -v n="$n" 'BEGIN { pad = sprintf("%090d", 0); for (i = 0; i < n; i++) printf "%09d-%s\n", i, pad }' \
    >"$work/msgs"

now() { date +%s.%N; }
rate() { awk -v n="$n" -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", n / (b - a) }'; }
# Consumers read to the end of every partition (-e): the mock may have
# dropped old data, and both read whatever it kept.

t0=$(now); kcat -P -b "$bs" -t kcat.bench -l "$work/msgs" -X linger.ms=5; t1=$(now)
"$spate" produce -b "$bs" -t spate.bench <"$work/msgs" 2>/dev/null; t2=$(now)
kc_n=$(kcat -C -b "$bs" -t kcat.bench -o beginning -e -q | wc -l); t3=$(now)
sc_n=$("$spate" consume -b "$bs" -t kcat.bench --from-beginning -e | wc -l); t4=$(now)
[ "$kc_n" = "$sc_n" ] || echo "warning: kcat read $kc_n records, spate $sc_n" >&2

kp=$(rate "$t0" "$t1"); sp=$(rate "$t1" "$t2")
kc=$(n=$kc_n rate "$t2" "$t3"); sc=$(n=$sc_n rate "$t3" "$t4")
printf '%-8s %14s %14s %8s\n' "" "kcat msgs/s" "spate msgs/s" "ratio"
printf '%-8s %14s %14s %8.2f\n' produce "$kp" "$sp" "$(awk -v a="$sp" -v b="$kp" 'BEGIN{print a/b}')"
printf '%-8s %14s %14s %8.2f\n' consume "$kc" "$sc" "$(awk -v a="$sc" -v b="$kc" 'BEGIN{print a/b}')"
