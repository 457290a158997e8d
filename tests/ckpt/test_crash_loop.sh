#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Exactly once through crashes: a job is killed with SIGKILL at random
# moments, at least 20 times, and started again each time (it restores the
# newest checkpoint); then its committed output must be, line for line,
# the output of one run that never crashed: nothing lost, nothing twice.
#
# MODE kafka: spate broker runs beside (never killed); the input topic is
#   filled once; user-window-count reads it (source=kafka, to its end) and
#   writes its window counts transactionally back (sink=kafka, exactly
#   once); kcat in read_committed mode (librdkafka filters aborted records
#   itself, independently of spate's client) reads what was committed.
#   Checkpoints on the local disk. The source's group gets its offsets
#   committed (for monitoring) when checkpoints complete (read with
#   kafka-python).
# MODE kafka-s3: the same, checkpoints in s3rver (s3://...).
# MODE files: the generator, and the part-file sink (sp_sink_files): the
#   part-* files, read with cat.
# MODE s3-outage: not a crash loop: s3rver is stopped in the middle of a
#   run; its checkpoints fail, the job goes on, and once s3rver is back the
#   next checkpoint completes; the output is still exact.
#
# A job that finishes before its kill ends a cycle: its output is checked,
# and a new cycle (new output, new checkpoints) starts until 20 kills.
#
# usage: test_crash_loop.sh SPATE WORKDIR MODE
set -euo pipefail
spate=$1
mkdir -p "$2"
work=$(cd "$2" && pwd)
mode=$3
here=$(cd "$(dirname "$0")" && pwd)
. "$here/kill_lib.sh"
dir=$(mktemp -d /tmp/spate-crash-XXXXXX)
broker_pid=""
pid=""
cleanup() {
    # the job running now (its command line names $dir unless it is on s3)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    pkill -9 -f -- "$dir/" 2>/dev/null || true
    if [ -n "$broker_pid" ]; then
        kill -9 "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    [ -f "$dir/stop.sh" ] && "$dir/stop.sh" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

kills_wanted=20
ckpt_base="file://$dir/ck"

case "$mode" in
kafka | kafka-s3 | s3-outage) ;;
files) ;;
*)
    echo "usage: $0 SPATE WORKDIR kafka|kafka-s3|files|s3-outage" >&2
    exit 2
    ;;
esac

if [ "$mode" = kafka-s3 ] || [ "$mode" = s3-outage ]; then
    . "$here/s3rver_lib.sh"
    s3rver_setup "$work" "$dir"
    "$dir/start.sh"
    export SPATE_S3_ENDPOINT="http://127.0.0.1:$s3_port" AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    ckpt_base="s3://$s3_bucket/crash"
fi

# ---- The job and its expected output ----

if [ "$mode" = kafka ] || [ "$mode" = kafka-s3 ]; then
    command -v kcat >/dev/null || fail "kcat missing (scripts/deps test installs it)"
    "$spate" --cores 2 broker --listen 127.0.0.1:0 --data "$dir/broker" \
        --port-file "$dir/port" >"$dir/broker.log" 2>&1 </dev/null &
    broker_pid=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
    [ -s "$dir/port" ] || fail "the broker did not start"
    brokers=127.0.0.1:$(cat "$dir/port")
    # The input: 1.5M clicks with bounded disorder (one core keeps every
    # partition's order: no click is late, whatever the consumer's pace).
    for t in clicks expected $(seq -f out%g 1 60); do
        "$spate" topic create -b "$brokers" -t "$t" -p 2 >"$dir/topics.log" 2>&1 ||
            fail "creating topic $t: $(cat "$dir/topics.log")"
    done
    "$spate" --cores 1 run user-window-count --param mode=produce --param events=1500000 \
        --param late-every=0 --param brokers="$brokers" --param topic=clicks \
        >"$dir/produce.log" 2>&1 || fail "filling the input topic"
    job=(run user-window-count --param source=kafka --param to-end=true --param sink=kafka
         --param brokers="$brokers" --param group=crash --log-level info)
    # expected: one run, no checkpoints, no crash (at-least-once never
    # repeats anything without a failure)
    "$spate" --cores 2 "${job[@]}" --param out-topic=expected >"$dir/expected.log" 2>&1 ||
        fail "the run without crashes failed"
    read_out() { # topic: its committed records, sorted
        kcat -b "$brokers" -C -t "$1" -e -q -f '%s\n' -X isolation.level=read_committed |
            sort
    }
    read_out expected >"$dir/expected"
    out_args() { echo "--param out-topic=out$1"; }
    got_of() { read_out "out$1"; }
else
    job=(run user-window-count --param events=1200000 --param late-every=0 --param partitions=4
         --param rate=600000 --log-level info)
    "$spate" --cores 2 "${job[@]}" --param rate=0 --param sink=files:"$dir/expected.d" \
        >"$dir/expected.log" 2>&1 || fail "the run without crashes failed"
    cat "$dir/expected.d"/part-* | sort >"$dir/expected"
    out_args() { echo "--param sink=files:$dir/out$1"; }
    got_of() { cat "$dir/out$1"/part-* 2>/dev/null | sort; }
fi
lines=$(wc -l <"$dir/expected")
[ "$lines" -gt 1000 ] || fail "the expected output has $lines lines"
echo "expected: $lines lines"

# ---- s3 outage: no crash, s3rver away for a while ----

if [ "$mode" = s3-outage ]; then
    # shellcheck disable=SC2046
    # ~12 s of input at this rate: s3rver goes away and comes back well
    # within it (each step waits for what it needs, not for a fixed time)
    "$spate" --cores 2 "${job[@]}" --param rate=100000 $(out_args 0) \
        --checkpoint-dir "$ckpt_base/outage" --checkpoint-interval 200 \
        --checkpoint-timeout 1500 >"$dir/outage.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "checkpoint [0-9]* complete" "$dir/outage.log" && break; sleep 0.1; done
    grep -q "checkpoint [0-9]* complete" "$dir/outage.log" || fail "no checkpoint before the outage"
    "$dir/stop.sh"
    for _ in $(seq 100); do grep -q "checkpoint [0-9]* failed" "$dir/outage.log" && break; sleep 0.1; done
    grep -q "checkpoint [0-9]* failed" "$dir/outage.log" || fail "no checkpoint failed in the outage"
    kill -0 "$pid" 2>/dev/null || fail "the job ended before s3rver came back: its input is too short"
    "$dir/start.sh"
    wait "$pid" || fail "the job failed during the outage"
    grep -q "checkpoint [0-9]* failed" "$dir/outage.log" || fail "no checkpoint failed in the outage"
    last_fail=$(grep -n "checkpoint [0-9]* failed" "$dir/outage.log" | tail -1 | cut -d: -f1)
    tail -n +"$last_fail" "$dir/outage.log" | grep -q "checkpoint [0-9]* complete" ||
        fail "no checkpoint completed after s3rver came back"
    got_of 0 >"$dir/got"
    diff -q "$dir/got" "$dir/expected" >/dev/null || fail "output differs after the outage"
    echo "PASS: checkpoints failed while s3rver was away, the job went on, the next one completed"
    exit 0
fi

# ---- The crash loop ----

kills=0
cycle=0
while [ "$kills" -lt "$kills_wanted" ]; do
    cycle=$((cycle + 1))
    [ "$cycle" -le 60 ] || fail "60 cycles and only $kills kills: the job ends too fast to be killed"
    runs=0
    while :; do
        runs=$((runs + 1))
        [ "$runs" -le 200 ] || fail "cycle $cycle: 200 runs and the job never finished"
        log="$dir/c$cycle-r$runs.log"
        # shellcheck disable=SC2046
        "$spate" --cores 2 "${job[@]}" $(out_args "$cycle") \
            --checkpoint-dir "$ckpt_base/c$cycle" --checkpoint-interval 100 \
            >"$log" 2>&1 &
        pid=$!
        # kill somewhere in 0.1 - 0.8 s (startup and restore included)
        if kill_after "$pid" $((1 + RANDOM % 8)); then
            kills=$((kills + 1))
            continue
        fi
        wait "$pid" || fail "cycle $cycle run $runs: the job failed"
        break
    done
    got_of "$cycle" >"$dir/got"
    if ! diff -q "$dir/got" "$dir/expected" >/dev/null; then
        echo "missing (<) and extra (>):" >&2
        diff "$dir/got" "$dir/expected" | head -10 >&2
        fail "cycle $cycle ($runs runs): the output is not exactly the expected one"
    fi
    restored=$(cat "$dir"/c$cycle-r*.log | grep -c "restoring checkpoint" || true)
    echo "cycle $cycle: $runs runs, $restored restored from a checkpoint, $kills kills so far: exact"
done
if [ "$mode" = kafka ] || [ "$mode" = kafka-s3 ]; then
    # The group's offsets, committed for monitoring when checkpoints
    # complete (best effort: the last ones may not go out before the
    # process ends): set on every partition, within the input.
    /usr/bin/python3 - "$brokers" >"$dir/committed" 2>&1 <<'EOF' || fail "group offsets: $(cat "$dir/committed")"
import sys
from kafka import KafkaConsumer, TopicPartition
c = KafkaConsumer(bootstrap_servers=sys.argv[1], group_id="crash", enable_auto_commit=False)
tps = [TopicPartition("clicks", p) for p in (0, 1)]
ends = c.end_offsets(tps)
got = [c.committed(tp) for tp in tps]
want = [ends[tp] for tp in tps]
print("committed", got, "end", want)
sys.exit(0 if all(g is not None and 0 < g <= w for g, w in zip(got, want)) else 1)
EOF
    echo "group offsets for monitoring: $(cat "$dir/committed")"
fi
echo "PASS: $kills kills, every cycle's output exactly once"
