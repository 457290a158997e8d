#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one libFuzzer target for a bounded time over its committed seed corpus.
# New inputs go to a scratch folder, never into the committed corpus; a crash
# leaves its reproducer in the build folder and fails the test.
# Usage: run_fuzz.sh FUZZER SEED_DIR SECONDS
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
exec "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$(pwd)/$(basename "$fuzzer")-" \
    "$scratch" "$seeds"
