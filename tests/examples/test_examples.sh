#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The examples build against the installed libspate through pkg-config and
# run: libspate, its headers and spate.pc are installed into a scratch
# prefix, each example is compiled with `pkg-config --cflags --libs --static
# spate` alone, run on the built-in generator, and its output checked; the
# same jobs run as `spate run NAME` give the same results.
# Usage: test_examples.sh BUILD_DIR SOURCE_DIR SPATE CC SANITIZE PREFIX
set -euo pipefail
build=$1 src=$2 spate=$3 compiler=$4 sanitize=$5 prefix=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >/dev/null
# A sanitized libspate needs the same compiler and runtime at link time.
san=()
[ "$sanitize" = none ] || san=(-fsanitize="$sanitize")
pc=$(find "$tmp/root" -name spate.pc)
[ -n "$pc" ] || { echo "spate.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
flags=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags --libs --static spate)

for ex in user_window_count order_count; do
    # Only the example's own source and what pkg-config says.
    $compiler "${san[@]}" -std=gnu11 -O2 -Wall -Werror -o "$tmp/$ex" "$src/examples/$ex/$ex.c" \
        $flags
done

# Clicks per user: every window once, counts add up to the events not late.
"$tmp/user_window_count" events=200000 users=50 ms-per-event=5 --cores 2 \
    >"$tmp/uwc.out" 2>"$tmp/uwc.err"
grep -q 'finished' "$tmp/uwc.err"
total=$(/usr/bin/python3 - "$tmp/uwc.out" "$tmp/uwc.err" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
seen = set()
for r in rows:
    k = (r["user"], r["window_start"])
    assert k not in seen, f"window {k} fired twice"
    assert r["window_end"] - r["window_start"] == 300000
    seen.add(k)
late = int(re.search(r"(\d+) late", open(sys.argv[2]).read()).group(1))
print(sum(r["clicks"] for r in rows) + late)
PY
)
[ "$total" = 200000 ] || { echo "user_window_count: windows and late add up to $total, not 200000"; exit 1; }

# spate run gives the same windows (on one core both, where which clicks
# are late does not depend on how two shards' watermarks interleave).
"$tmp/user_window_count" events=200000 users=50 ms-per-event=5 --cores 1 2>/dev/null |
    sort >"$tmp/uwc1.out"
"$spate" run user-window-count --param events=200000 --param users=50 --param ms-per-event=5 \
    --cores 1 2>/dev/null | sort >"$tmp/run.out"
cmp "$tmp/uwc1.out" "$tmp/run.out" ||
    { echo "spate run and the example differ"; exit 1; }
# The file sink writes the same JSON lines, and late clicks to their own file.
"$spate" run user-window-count --param events=200000 --param users=50 --param ms-per-event=5 \
    --param sink=file:"$tmp/windows.jsonl" --param late-sink=file:"$tmp/late.jsonl" \
    --cores 1 2>/dev/null
sort "$tmp/windows.jsonl" | cmp - "$tmp/run.out" ||
    { echo "the file sink's lines differ from stdout's"; exit 1; }
late_lines=$(wc -l <"$tmp/late.jsonl")
[ "$late_lines" -gt 0 ] && /usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert set(r) == {"user", "ts", "page"}, r' "$tmp/late.jsonl" ||
    { echo "late clicks: $late_lines lines, not click rows"; exit 1; }

# Order count: a changelog whose last value per customer is the count of
# completed orders, and a wrong parameter is refused with exit status 2.
"$tmp/order_count" events=100000 customers=20 --cores 2 >"$tmp/oc.out" 2>/dev/null
/usr/bin/python3 - "$tmp/oc.out" <<'PY'
import json, sys
last = {}
n = 0
for l in open(sys.argv[1]):
    r = json.loads(l)
    c = r["customer"]
    assert r["count"] == last.get(c, 0) + 1, f"{c}: {r['count']} after {last.get(c)}"
    last[c] = r["count"]
    n += 1
assert len(last) == 20 and sum(last.values()) == n, (len(last), n)
assert 0.2 < n / 100000 < 0.3, n  # a quarter of the orders complete
PY
set +e
"$tmp/order_count" nonsense=1 >/dev/null 2>"$tmp/bad.err"
rc=$?
set -e
[ $rc = 2 ] && grep -q "unknown parameter 'nonsense'" "$tmp/bad.err" ||
    { echo "a wrong parameter gave exit $rc: $(cat "$tmp/bad.err")"; exit 1; }
# spate run: what goes wrong is said, with the exit status.
expect() { # status, pattern, command...
    local want=$1 pattern=$2
    shift 2
    set +e
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    set -e
    if [ $rc != "$want" ] || ! grep -q -- "$pattern" "$tmp/err"; then
        echo "'$*': exit $rc (want $want), stderr: $(cat "$tmp/err")"
        exit 1
    fi
}
expect 2 "no job 'nope'" "$spate" run nope
expect 2 "built-in jobs" "$spate" run
expect 2 "--param needs key=value" "$spate" run order-count --param novalue
expect 2 "parameter events=lots: not an integer" "$spate" run order-count --param events=lots
expect 2 "ms-per-event >= 0" "$spate" run user-window-count --param events=-5
expect 1 "cannot open /nonexistent/orders.jsonl" \
    "$spate" run order-count --param source=file --param file=/nonexistent/orders.jsonl
printf '{"id":1,"customer":"a","status":"COMPLETED"}\n{"id":2,"customer":7}\n' >"$tmp/bad.jsonl"
expect 1 "line 2: field 'customer'" \
    "$spate" run order-count --param source=file --param file="$tmp/bad.jsonl"
echo "examples: built with pkg-config and ran"
