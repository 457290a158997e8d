#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# `spate checkpoint list|inspect` over a real store: test_ckpt_store DIR
# leaves checkpoints 1-4 (incremental, three shards) with checkpoint 4's own
# segment corrupted. list shows all four, 4 as BAD, and names 3 as the one
# a restore uses; inspect without an ID shows 3 and exits 0; inspect 4
# names the bad segment and exits 1; a missing ID or store exits 1; wrong
# usage exits 2.
#
# usage: test_checkpoint_cli.sh SPATE TEST_CKPT_STORE
set -eu
spate=$1
writer=$2
dir=$(mktemp -d /tmp/spate-ckpt-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect STATUS COMMAND...: runs it, output in $dir/out, checks the exit status.
expect() {
    want=$1
    shift
    set +e
    "$@" >"$dir/out" 2>&1
    got=$?
    set -e
    cat "$dir/out"
    [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}

url=$("$writer" "$dir")

expect 0 "$spate" checkpoint list "$url"
[ "$(grep -cE '^[1-4] +[0-9]{4}-' "$dir/out")" -eq 4 ] || fail "list does not show four checkpoints"
grep -q '^3 .* ok$' "$dir/out" || fail "checkpoint 3 is not ok"
grep -q '^4 .*BAD.*corrupt' "$dir/out" || fail "checkpoint 4 is not reported corrupt"
grep -q '^1 .* 3 *0 .* ok$' "$dir/out" || fail "checkpoint 1 shares no segment"
grep -q '^2 .* 3 *2 ' "$dir/out" || fail "checkpoint 2 shares two segments"
grep -q 'restore would use checkpoint 3' "$dir/out" || fail "restore choice"

expect 0 "$spate" checkpoint inspect "$url"
grep -q '^checkpoint 3$' "$dir/out" || fail "inspect without ID is not checkpoint 3"
grep -q 'orders/0 = 3000' "$dir/out" || fail "position missing"
grep -q '(ref)' "$dir/out" || fail "no referenced segment shown"
grep -q 'status *ok' "$dir/out" || fail "status"

expect 1 "$spate" checkpoint inspect "$url" 4
grep -q 'BAD (size or checksum)' "$dir/out" || fail "inspect 4 does not name the bad segment"

expect 1 "$spate" checkpoint inspect "$url" 9
expect 1 "$spate" checkpoint list "file://$dir/missing"
expect 2 "$spate" checkpoint inspect "$url" x
expect 2 "$spate" checkpoint
expect 2 "$spate" checkpoint frobnicate "$url"
echo "ok"
