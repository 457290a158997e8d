#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate's S3 client (ckpt/s3.c) against s3rver, a real S3-compatible server
# from the npm registry: the pinned version in tests/ckpt/s3rver/
# (package.json and package-lock.json) is installed with `npm ci` into
# WORKDIR/s3rver (the build directory under meson), only when the lock file
# changed. s3rver is started on 127.0.0.1 on a free port with a fresh data
# directory and the bucket made (its defaults: key and secret S3RVER), then
# TEST_S3 runs against it, stopping and restarting it through the two
# commands it is given (the same data directory and port). Skips (77)
# without node and npm (scripts/deps test installs them) or when the npm
# registry cannot be reached on a first install.
# Usage: test_s3.sh TEST_S3 WORKDIR [SPATE CKPT_WRITER]   (the last two: the store over S3)
set -euo pipefail
test_s3=$1
mkdir -p "$2"
work=$(cd "$2" && pwd)
spate=${3:-}
ckpt_writer=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/s3rver_lib.sh"

dir=$(mktemp -d)
cleanup() {
    [ -f "$dir/pid" ] && kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
s3rver_setup "$work" "$dir"
port=$s3_port
bucket=$s3_bucket

"$dir/start.sh"
echo "s3rver $(node -p "require('$js/node_modules/s3rver/package.json').version") on 127.0.0.1:$port, node $(node --version)"
rc=0
timeout 300 "$test_s3" "http://127.0.0.1:$port" "$bucket" "$dir/stop.sh" "$dir/start.sh" || rc=$?

# The checkpoint store over S3: checkpoints 1-4 written through the S3
# backend (4's own segment then damaged), listed and inspected by spate.
if [ "$rc" -eq 0 ] && [ -n "$spate" ]; then
    export SPATE_S3_ENDPOINT="http://127.0.0.1:$port" AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    url=s3://$bucket/store
    check() { # want_status what command...
        local want=$1 what=$2
        shift 2
        local got=0
        "$@" >"$dir/out" 2>&1 || got=$?
        cat "$dir/out"
        [ "$got" -eq "$want" ] || { echo "FAIL: $what exited $got, expected $want" >&2; rc=1; }
    }
    check 0 "the store writer over S3" "$ckpt_writer" "$url"
    check 0 "checkpoint list" "$spate" checkpoint list "$url"
    [ "$(grep -cE '^[1-4] +[0-9]{4}-' "$dir/out")" -eq 4 ] ||
        { echo "FAIL: list over S3 does not show four checkpoints" >&2; rc=1; }
    grep -q '^4 .*BAD' "$dir/out" || { echo "FAIL: checkpoint 4 not reported bad" >&2; rc=1; }
    check 0 "checkpoint inspect" "$spate" checkpoint inspect "$url"
    grep -qiE 'checkpoint 3|^id +3|: 3$' "$dir/out" ||
        { echo "FAIL: inspect over S3 does not choose checkpoint 3" >&2; rc=1; }
    check 1 "checkpoint inspect 4" "$spate" checkpoint inspect "$url" 4
    [ "$rc" -eq 0 ] && echo "checkpoint store over S3: 4 checkpoints, the damaged one found, 3 chosen"
fi
if [ "$rc" -ne 0 ]; then
    echo "--- s3rver log" >&2
    tail -30 "$dir/s3rver.log" >&2
fi
exit "$rc"
