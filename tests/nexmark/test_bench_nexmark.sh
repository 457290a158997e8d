#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# spate bench nexmark: q1 over 200k events writes one JSON object with the
# documented keys and sane values and prints its figures; an unknown query,
# a bad number and a missing --query exit 2 with one line saying why.
# Usage: test_bench_nexmark.sh SPATE
set -eu
spate=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

"$spate" bench nexmark --query q1 --events 200000 --cores 1 --memory 16M --json "$dir/q1.json" \
    >"$dir/out" 2>"$dir/err" || fail "q1 run exited $?: $(cat "$dir/err")"
grep -q "events/s" "$dir/out" || fail "no events/s line: $(cat "$dir/out")"
grep -q "output rows *184000" "$dir/out" || fail "output rows: $(cat "$dir/out")"
grep -q "peak RSS" "$dir/out" || fail "no peak RSS line: $(cat "$dir/out")"

/usr/bin/python3 - "$dir/q1.json" <<'PY' || fail "JSON: $(cat "$dir/q1.json")"
import json, sys
j = json.load(open(sys.argv[1]))
keys = ["query", "events", "cores", "seconds", "events_per_sec", "events_per_sec_per_core",
        "output_rows", "latency_p50_ms", "latency_p99_ms", "peak_rss_bytes"]
missing = [k for k in keys if k not in j]
assert not missing, missing
assert j["query"] == "q1", j
assert j["events"] == 200000, j
assert j["cores"] == 1, j
assert 0 < j["seconds"] < 60, j
assert abs(j["events_per_sec"] * j["seconds"] - 200000) < 200000 * 0.01, j
assert abs(j["events_per_sec_per_core"] * j["cores"] - j["events_per_sec"]) < 1, j
assert j["output_rows"] == 184000, j  # 46 bids in every 50 events
assert j["latency_p50_ms"] is None and j["latency_p99_ms"] is None, j
assert 1 << 20 < j["peak_rss_bytes"] < 64 << 30, j
PY

# Global flags before the command and --flag=value forms; two cores.
"$spate" --cores 2 --memory 16M bench nexmark --query=q2 --events=100000 --json="$dir/q2.json" \
    >"$dir/out" 2>"$dir/err" || fail "q2 run exited $?: $(cat "$dir/err")"
/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["query"] == "q2" and j["events"] == 100000 and 0 < j["output_rows"] < 92000, j
assert j["cores"] == 2, j
' "$dir/q2.json" || fail "q2 JSON: $(cat "$dir/q2.json")"

# Wrong input: status 2, one line on stderr, nothing on stdout.
expect_2() {
    why=$1
    shift
    status=0
    "$spate" "$@" >"$dir/out" 2>"$dir/err" || status=$?
    [ "$status" -eq 2 ] || fail "'$*' exited $status, wanted 2"
    [ "$(wc -l <"$dir/err")" -eq 1 ] || fail "'$*': stderr not one line: $(cat "$dir/err")"
    grep -qF -- "$why" "$dir/err" || fail "'$*': stderr does not say '$why': $(cat "$dir/err")"
    [ ! -s "$dir/out" ] || fail "'$*' wrote to stdout"
}
expect_2 "unknown query 'q99'" bench nexmark --query q99 --events 1000
expect_2 "--events 'lots'" bench nexmark --query q0 --events lots
expect_2 "--events '0'" bench nexmark --query q0 --events 0
expect_2 "--events '10X'" bench nexmark --query q0 --events 10X
expect_2 "--rate '-1'" bench nexmark --query q0 --events 10 --rate -1
expect_2 "--seed 'x'" bench nexmark --query q0 --events 10 --seed x
expect_2 "or --all is missing" bench nexmark --events 1000
expect_2 "exclude each other" bench nexmark --all --query q1 --events 1000
expect_2 "--dump takes one --query" bench nexmark --all --dump "$dir/d" --events 1000
expect_2 "--out goes with --all" bench nexmark --query q1 --out "$dir" --events 1000
expect_2 "not a directory this user can write" bench nexmark --all --out "$dir/none" --events 1K
expect_2 "cannot create '/proc/spate-none'" bench nexmark --query q1 --dump /proc/spate-none --events 1K
expect_2 "--events is missing" bench nexmark --query q0
expect_2 "unknown flag '--bogus'" bench nexmark --query q0 --events 10 --bogus
expect_2 "--cores 0" bench nexmark --query q0 --events 10 --cores 0
expect_2 "unknown benchmark 'nope'" bench nope
# A windowed query measures its latency from the watermark passing the
# window's end; its dump holds the events and the output with headers.
"$spate" --cores 2 --memory 16M bench nexmark --query q5 --events 200000 --json "$dir/q5.json" \
    --dump "$dir/dump" >"$dir/out" 2>"$dir/err" || fail "q5 run exited $?: $(cat "$dir/err")"
grep -q "latency p50/p99 *[0-9.]* / [0-9.]* ms" "$dir/out" || fail "q5 latency: $(cat "$dir/out")"
/usr/bin/python3 - "$dir/q5.json" "$dir/dump" <<'PY' || fail "q5 JSON or dump"
import json, os, sys
j = json.load(open(sys.argv[1]))
assert j["latency_p50_ms"] is not None and 0 <= j["latency_p50_ms"] <= j["latency_p99_ms"], j
assert j["latency_samples"] == j["output_rows"] > 0, j
d = sys.argv[2]
assert sorted(f for f in os.listdir(d)) == ["auction.csv", "bid.csv", "person.csv", "q5.csv"]
rows = open(os.path.join(d, "q5.csv")).read().splitlines()
assert rows[0] == "auction,num,starttime,endtime" and len(rows) == j["output_rows"] + 1, rows[:3]
events = sum(len(open(os.path.join(d, t + ".csv")).read().splitlines()) - 1
             for t in ("person", "auction", "bid"))
assert events == 200000, events
PY

# --all: every query in a process of its own, a table and a chart in --out.
"$spate" --cores 1 --memory 64M bench nexmark --all --events 20K --out "$dir" \
    --json "$dir/all.json" >"$dir/out" 2>"$dir/err" || fail "--all exited $?: $(cat "$dir/err")"
for q in q0 q1 q2 q3 q4 q5 q6 q7 q8 q11 q12; do
    grep -q "^| $q | " "$dir/nexmark-results.md" || fail "--all: no row for $q"
done
grep -q "memory limit" "$dir/nexmark-results.md" || fail "--all: no memory limit"
grep -q "<svg" "$dir/nexmark-results.svg" || fail "--all: no chart"
/usr/bin/python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))
assert [j["query"] for j in a] == ["q0","q1","q2","q3","q4","q5","q6","q7","q8","q11","q12"], a
assert all(j["events"] == 20000 for j in a), a
' "$dir/all.json" || fail "--all JSON: $(cat "$dir/all.json")"
echo "bench nexmark: ok"
