#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The independent check: spate runs q1-q8 and q11 over 1M generated events
# on 2 cores with --dump, and scripts/nexmark_check computes each query in
# SQLite from the dumped events and compares.
# Usage: test_nexmark_sqlite.sh SPATE CHECKER
set -eu
spate=$1
check=$2
command -v sqlite3 >/dev/null || { echo "sqlite3 missing (scripts/deps test installs it)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for q in q1 q2 q3 q4 q5 q6 q7 q8 q11; do
    "$spate" bench nexmark --query "$q" --events 1000000 --cores 2 --memory 64M --dump "$dir" \
        >"$dir/$q.out" 2>&1 || { cat "$dir/$q.out"; echo "FAIL: $q exited non-zero"; exit 1; }
done
"$check" "$dir" q1 q2 q3 q4 q5 q6 q7 q8 q11
