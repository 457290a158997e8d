# SPDX-License-Identifier: Apache-2.0
# Sourced by the broker tests: starting and stopping `spate broker` on a
# free port with its data and log in $dir. The test defines $spate, $dir
# and fail(), and sets pid= before its EXIT trap.

# start [broker flags...]: sets $pid, $port and $broker (127.0.0.1:PORT).
start() {
    rm -f "$dir/port"
    "$spate" --cores 2 broker --listen 127.0.0.1:0 --data "$dir/data" --port-file "$dir/port" \
        "$@" >>"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        [ -s "$dir/port" ] && break
        sleep 0.05
    done
    [ -s "$dir/port" ] || fail "the broker did not start"
    port=$(cat "$dir/port")
    broker=127.0.0.1:$port
}

# stop: SIGTERM, and the broker must exit 0.
stop() {
    kill -TERM "$pid"
    wait "$pid" || fail "the broker exited $? on SIGTERM"
    pid=
}
