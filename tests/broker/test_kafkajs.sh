#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker against kafkajs, the Node.js client (tests/broker/kafkajs/:
# the pinned version in package.json and package-lock.json, the scenario in
# test.js): a topic created, keyed records produced over 4 partitions (plain
# and gzip), a consumer group of two members splitting the partitions and
# reading every record exactly once, the committed offsets resumed by a new
# member. kafkajs is installed with `npm ci` into WORKDIR/kafkajs (the
# build directory under meson), once: a later run with the same lock file
# installs nothing. Skips (77) without node and npm (scripts/deps test
# installs them) or when the npm registry cannot be reached on a first run.
# Usage: test_kafkajs.sh SPATE [WORKDIR]   (WORKDIR: SPATE's build directory)
set -euo pipefail
spate=$1
# WORKDIR defaults to the build directory spate was built in.
workdir=${2:-$(dirname "$spate")/..}
mkdir -p "$workdir"
work=$(cd "$workdir" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../npm_pinned.sh"
npm_pinned kafkajs "$here/kafkajs" "$work"
cp "$here/kafkajs/test.js" "$js/test.js"

dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -20 "$dir/log" >&2; }
    [ -f "$dir/js.err" ] && { echo "--- kafkajs" >&2; tail -20 "$dir/js.err" >&2; }
    exit 1
}

. "$here/broker_lib.sh"

start
echo "kafkajs $(node -p "require('$js/node_modules/kafkajs/package.json').version"), node $(node --version)"
timeout 300 node "$js/test.js" "$broker" >"$dir/js.out" 2>"$dir/js.err" ||
    fail "kafkajs: $(tail -1 "$dir/js.err")"
[ "$(cat "$dir/js.out")" = ok ] || fail "kafkajs said: $(cat "$dir/js.out")"
stop
grep -q "cannot encode" "$dir/log" && fail "the broker could not encode a response"
echo "ok"
