# SPDX-License-Identifier: Apache-2.0
# Sourced by the tests that kill jobs at random moments (test_crash_loop.sh,
# test_job_restore.sh, test_spill_job.sh), each keeping its logs as
# $dir/*.log.
#
# fail MESSAGE...: says FAIL with the message, shows the end of the four
# newest logs in $dir (the failing run's among them) and exits 1.
fail() {
    echo "FAIL: $*" >&2
    local f
    for f in $(ls -t "$dir"/*.log 2>/dev/null | head -4); do
        echo "--- $f" >&2
        tail -25 "$f" >&2
    done
    exit 1
}
#
# kill_after PID TENTHS: SIGKILLs PID once TENTHS tenths of a second have
# passed, unless it ended first. Returns 0 when it was killed (and reaped),
# 1 when it ended by itself: the caller's `wait PID` then gives its status.
kill_after() {
    local pid=$1 tenths=$2 waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$tenths" ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        return 0
    fi
    return 1
}
