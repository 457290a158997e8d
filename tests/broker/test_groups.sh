#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker's group coordinator against real clients:
# - kcat balanced consumers: two members split 4 partitions and read every
#   record exactly once; stopped (they commit), a new member resumes from
#   the committed offsets; after a broker restart the offsets are still
#   there;
# - kafka-python (Debian's python3-kafka): two consumer processes with auto
#   commit; what is committed is what they consumed;
# - spate's own client: `consume -g` reads everything once, a second run
#   with the same group reads nothing old.
# Waits for conditions (with generous limits), never for fixed times.
# Usage: test_groups.sh SPATE
set -euo pipefail
spate=$1
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
dir=$(mktemp -d)
pid=
members=()
cleanup() {
    for m in "${members[@]}"; do kill -9 "$m" 2>/dev/null || true; done
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -20 "$dir/log" >&2; }
    for f in "$dir"/*.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
    done
    exit 1
}

. "$(dirname "$0")/broker_lib.sh"

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out waiting for $what"
        sleep 0.2
    done
}

lines() { cat "$@" 2>/dev/null | wc -l; }
at_least() { # N FILES...: together at least N lines
    local n=$1
    shift
    [ "$(lines "$@")" -ge "$n" ]
}

# Stops member processes with SIGINT/SIGTERM (they commit) and waits.
stop_members() { # signal pids...
    local sig=$1
    shift
    for m in "$@"; do kill "-$sig" "$m" 2>/dev/null || true; done
    for m in "$@"; do
        local end=$((SECONDS + 60))
        while kill -0 "$m" 2>/dev/null; do
            [ "$SECONDS" -lt "$end" ] || fail "member $m did not stop"
            sleep 0.1
        done
        wait "$m" 2>/dev/null || true
    done
    members=()
}

produce() { # topic from to: values topic-N, keyed by N
    seq "$2" "$3" | sed "s/.*/&:$1-&/" | kcat -b "$broker" -P -t "$1" -K: ||
        fail "produce to $1"
}

# The partitions of the latest assignment kcat reported on stderr.
kcat_assigned() { # stderr file
    grep 'rebalanced.*assigned:' "$1" 2>/dev/null | tail -1 | grep -o '\[[0-9]*\]' |
        tr -d '[]' | sort -n | tr '\n' ' ' || true
}

# Two members together hold all 4 partitions, disjointly, each some.
split_ok() { # assigned-a assigned-b
    [ -n "$1" ] && [ -n "$2" ] || return 1
    local all
    all=$(echo "$1 $2" | tr ' ' '\n' | grep . | sort -n | tr '\n' ' ')
    [ "$all" = "0 1 2 3 " ]
}

kcat_split() {
    split_ok "$(kcat_assigned "$dir/k1.err")" "$(kcat_assigned "$dir/k2.err")"
}

kcat_member() { # name: a balanced consumer of topic kt, group kg
    kcat -b "$broker" -G kg kt -X auto.offset.reset=earliest -X session.timeout.ms=10000 \
        -X heartbeat.interval.ms=500 -u -f '%p %o %s\n' >"$dir/$1.out" 2>"$dir/$1.err" &
    members+=($!)
}

start --partitions 4
kcat -b "$broker" -L >/dev/null 2>&1 || fail "kcat -L"

# ---- kcat: two members split the partitions, records exactly once ----
kcat -b "$broker" -L -t kt >/dev/null 2>&1 # auto-creates kt with 4 partitions
kcat_member k1
kcat_member k2
wait_for 120 "two kcat members splitting 4 partitions" kcat_split
produce kt 1 1000
wait_for 120 "the kcat members reading 1000 records" at_least 1000 "$dir/k1.out" "$dir/k2.out"
stop_members INT "${members[@]}"
[ "$(lines "$dir/k1.out")" -gt 0 ] && [ "$(lines "$dir/k2.out")" -gt 0 ] ||
    fail "one member read nothing: $(lines "$dir/k1.out") and $(lines "$dir/k2.out")"
cut -d' ' -f3 "$dir/k1.out" "$dir/k2.out" | sort >"$dir/got"
seq 1 1000 | sed 's/^/kt-/' | sort >"$dir/want"
cmp -s "$dir/got" "$dir/want" || fail "kcat members: records lost or repeated"

# A new member resumes from the committed offsets: only the new records.
produce kt 1001 1500
kcat_member k3
wait_for 120 "the resumed member reading 500 records" at_least 500 "$dir/k3.out"
stop_members INT "${members[@]}"
cut -d' ' -f3 "$dir/k3.out" | sort >"$dir/got"
seq 1001 1500 | sed 's/^/kt-/' | sort >"$dir/want"
cmp -s "$dir/got" "$dir/want" || fail "the resumed member did not read just the new records"

# After a broker restart the committed offsets are still there.
stop
start --partitions 4
produce kt 1501 1700
kcat_member k4
wait_for 120 "the member after a restart reading 200 records" at_least 200 "$dir/k4.out"
stop_members INT "${members[@]}"
cut -d' ' -f3 "$dir/k4.out" | sort >"$dir/got"
seq 1501 1700 | sed 's/^/kt-/' | sort >"$dir/want"
cmp -s "$dir/got" "$dir/want" || fail "after a restart: not just the new records"

# ---- kafka-python: two members with auto commit; committed = consumed ----
if "$py" -c 'import kafka' 2>/dev/null; then
    kcat -b "$broker" -L -t pt >/dev/null 2>&1
    for m in p1 p2; do
        "$py" "$here/test_groups.py" consume "$broker" pt pg "$dir/$m.out" "$dir/$m.assigned" \
            2>"$dir/$m.err" &
        members+=($!)
    done
    py_split() {
        split_ok "$(cat "$dir/p1.assigned" 2>/dev/null)" "$(cat "$dir/p2.assigned" 2>/dev/null)"
    }
    wait_for 120 "two kafka-python members splitting 4 partitions" py_split
    produce pt 1 800
    wait_for 120 "the kafka-python members reading 800 records" \
        at_least 800 "$dir/p1.out" "$dir/p2.out"
    stop_members TERM "${members[@]}"
    cut -d' ' -f3 "$dir/p1.out" "$dir/p2.out" | sort -u >"$dir/got"
    seq 1 800 | sed 's/^/pt-/' | sort >"$dir/want"
    cmp -s "$dir/got" "$dir/want" || fail "kafka-python members: records lost"
    # per partition: the next offset after the last consumed
    cat "$dir/p1.out" "$dir/p2.out" |
        awk '{ if (!($1 in m) || $2 > m[$1]) m[$1] = $2 } END { for (p in m) print p, m[p] + 1 }' |
        sort -n >"$dir/want"
    "$py" "$here/test_groups.py" committed "$broker" pt pg 2>"$dir/pc.err" | sort -n >"$dir/got" ||
        fail "kafka-python committed()"
    cmp -s "$dir/got" "$dir/want" ||
        fail "committed $(tr '\n' ',' <"$dir/got") but consumed $(tr '\n' ',' <"$dir/want")"
    # ListGroups, DescribeGroups, OffsetFetch through the admin client.
    "$py" "$here/test_groups.py" admin "$broker" pg >"$dir/admin" 2>"$dir/admin.err" ||
        fail "kafka-python admin: $(tail -3 "$dir/admin.err")"
    [ "$(tr '\n' ' ' <"$dir/admin")" = "listed state Empty offsets 4 " ] ||
        fail "kafka-python admin: $(tr '\n' ' ' <"$dir/admin")"
    # Kafka's error codes for bad or stale requests, then the happy path.
    kcat -b "$broker" -L -t t1 >/dev/null 2>&1
    "$py" "$here/test_groups.py" errors "$broker" >"$dir/errors" 2>"$dir/errors.err" ||
        fail "kafka-python raw requests: $(tail -3 "$dir/errors.err")"
    [ "$(cat "$dir/errors")" = ok ] || fail "error codes: $(cat "$dir/errors")"
else
    echo "kafka-python missing (python3-kafka): skipping its part" >&2
fi

# ---- spate's own client ----
produce st 1 300
timeout 120 "$spate" consume -b "$broker" -t st -g sg --from-beginning -e >"$dir/s1.out" \
    2>"$dir/s1.err" || fail "spate consume -g"
[ "$(sort -u "$dir/s1.out" | wc -l)" -eq 300 ] && [ "$(lines "$dir/s1.out")" -eq 300 ] ||
    fail "spate consume -g read $(lines "$dir/s1.out") records, wanted 300 once"
timeout 120 "$spate" consume -b "$broker" -t st -g sg --from-beginning -e >"$dir/s2.out" \
    2>"$dir/s2.err" || fail "spate consume -g (again)"
[ "$(lines "$dir/s2.out")" -eq 0 ] || fail "a second run read $(lines "$dir/s2.out") old records"
produce st 301 320
timeout 120 "$spate" consume -b "$broker" -t st -g sg --from-beginning -e >"$dir/s3.out" \
    2>"$dir/s3.err" || fail "spate consume -g (third)"
[ "$(lines "$dir/s3.out")" -eq 20 ] || fail "a third run read $(lines "$dir/s3.out"), wanted 20"

# The broker stops cleanly while a JoinGroup waits for a rebalance: one
# member frozen (SIGSTOP), a second one's join waits for it.
kcat_member k5
wait_for 120 "a member of group kg" grep -q 'rebalanced.*assigned:' "$dir/k5.err"
kill -STOP "${members[0]}"
kcat_member k6
wait_for 60 "the second member to ask" grep -q 'Waiting for group rebalance' "$dir/k6.err"
if "$py" -c 'import kafka' 2>/dev/null; then
    preparing() {
        local out
        out=$("$py" "$here/test_groups.py" admin "$broker" kg 2>/dev/null) || true
        [[ $out == *PreparingRebalance* ]]
    }
    wait_for 60 "the group to rebalance" preparing
fi
stop
for m in "${members[@]}"; do kill -9 "$m" 2>/dev/null || true; done
members=()

grep -q "cannot encode" "$dir/log" && fail "the broker could not encode a response"
echo "ok"
