#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker against a real client (kcat, librdkafka): metadata, produce
# with every codec to a 4-partition topic spread over 2 shards, consume it
# all back; restart and read it again from disk; acks=all with --flush every
# survives SIGKILL; and bad input (garbage, a frame claiming 2 GiB, a
# truncated frame, an unknown API, a silent connection) closes only the
# offending connection while a kcat consumer keeps being served;
# idempotent producers (hand-built frames, kcat, spate's own client); the
# demo's pipeline of jobs over the endpoint.
# Usage: test_broker_kcat.sh SPATE
set -euo pipefail
spate=$1
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
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
    exit 1
}

. "$(dirname "$0")/broker_lib.sh"

count() { # topic -> records read from the beginning to the end
    timeout 30 kcat -b "$broker" -C -t "$1" -o beginning -e -q -f '%p %k %s\n' 2>/dev/null |
        tee "$dir/read" | wc -l
}

start --partitions 4
kcat -b "$broker" -L >"$dir/meta" 2>&1 || fail "kcat -L: $(cat "$dir/meta")"
grep -q "broker 0 at 127.0.0.1:$port" "$dir/meta" || fail "metadata: $(cat "$dir/meta")"

# Every codec, keyed records over 4 partitions (two shards own them).
for codec in none gzip snappy lz4 zstd; do
    seq 1 2000 | sed "s/.*/$codec-&:value-&/" |
        kcat -b "$broker" -P -t events -K: -z "$codec" -X linger.ms=5 ||
        fail "produce with $codec"
done
n=$(count events)
[ "$n" -eq 10000 ] || fail "read $n records, wanted 10000"
[ "$(cut -d' ' -f2 "$dir/read" | sort -u | wc -l)" -eq 10000 ] || fail "keys lost or repeated"
[ "$(cut -d' ' -f1 "$dir/read" | sort -u | wc -l)" -eq 4 ] || fail "not every partition used"
kcat -b "$broker" -L -t events | grep -q 'topic "events" with 4 partitions' ||
    fail "events should have 4 partitions"
# Within a partition, a key's records keep their order (one per key here):
# offsets consecutive from 0 in each partition.
for p in 0 1 2 3; do
    timeout 30 kcat -b "$broker" -C -t events -p "$p" -o beginning -e -q -f '%o\n' >"$dir/offs"
    awk 'NR - 1 != $1 { exit 1 }' "$dir/offs" || fail "partition $p offsets not consecutive"
done

# A restart reads the same from disk.
stop
start --partitions 4
n=$(count events)
[ "$n" -eq 10000 ] || fail "after a restart: $n records"

# Bad input, with a consumer waiting on a topic meanwhile.
seq 1 100 | kcat -b "$broker" -P -t live || fail "produce to live"
timeout 60 kcat -b "$broker" -C -t live -o beginning -c 200 -q >"$dir/live" 2>"$dir/live.err" &
consumer=$!
sleep 0.5
/usr/bin/python3 - "$port" <<'PY' || fail "bad input"
import socket, struct, sys, time
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s
def closed(s):
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
silent = conn()                                    # connects, sends nothing
s = conn(); s.sendall(b"\xde\xad\xbe\xef" * 64); assert closed(s), "garbage"
s = conn(); s.sendall(struct.pack(">i", 2**31 - 1)); assert closed(s), "2 GiB frame"
s = conn(); s.sendall(struct.pack(">i", -5)); assert closed(s), "negative size"
# A truncated request: a Metadata v4 frame cut short, then the socket closed.
s = conn(); s.sendall(struct.pack(">ihhi", 40, 3, 4, 1)); s.close()
# A frame whose body does not parse as its API.
s = conn(); body = struct.pack(">hhih", 3, 4, 7, -1) + b"\xff\xff\xff\x7f"
s.sendall(struct.pack(">i", len(body)) + body); assert closed(s), "malformed metadata"
# An unknown API key.
s = conn(); body = struct.pack(">hhih", 999, 0, 8, -1)
s.sendall(struct.pack(">i", len(body)) + body); assert closed(s), "unknown API"
# ApiVersions at a version from the future (a flexible header: tagged
# fields after the client id): answered in v0 with error 35.
s = conn(); body = struct.pack(">hhih", 18, 99, 9, -1) + b"\x00"
s.sendall(struct.pack(">i", len(body)) + body)
size = struct.unpack(">i", s.recv(4))[0]
data = b""
while len(data) < size:
    data += s.recv(size - len(data))
corr, err = struct.unpack(">ih", data[:6])
assert corr == 9 and err == 35, (corr, err)
s.close()
# 2000 requests sent ahead in one go: read ahead only up to the in-flight
# limit, the rest waits; every one is answered, in order.
s = conn()
frames = b""
for i in range(2000):
    body = struct.pack(">hhih", 18, 0, 1000 + i, -1)
    frames += struct.pack(">i", len(body)) + body
s.sendall(frames)
def recv_exact(n):  # MSG_WAITALL may stop short on a socket with a timeout
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "closed"
        out += chunk
    return out
for i in range(2000):
    size = struct.unpack(">i", recv_exact(4))[0]
    data = recv_exact(size)
    assert struct.unpack(">i", data[:4])[0] == 1000 + i, i
s.close()
silent.close()
PY
seq 101 200 | kcat -b "$broker" -P -t live || fail "produce after the bad input"
wait "$consumer" || fail "the consumer failed: $(cat "$dir/live.err")"
[ "$(wc -l <"$dir/live")" -eq 200 ] || fail "the consumer got $(wc -l <"$dir/live") of 200"
kill -0 "$pid" || fail "the broker died on bad input"

# Idempotent producers at the wire level (hand-built frames): a retried
# batch is written once; gaps and old epochs are refused.
/usr/bin/python3 "$(dirname "$0")/idempotence.py" "$port" || fail "idempotence"
# Fetch sessions at the wire level (hand-built Fetch v7 frames).
"$spate" topic create -b "$broker" -t fetch-session -p 2 >/dev/null || fail "create fetch-session"
seq 1 100 | kcat -b "$broker" -P -t fetch-session -p 0 || fail "produce fetch-session"
/usr/bin/python3 "$(dirname "$0")/fetch_session.py" "$port" fetch-session || fail "fetch sessions"
# ... and through real clients: librdkafka's and spate's own (idempotent by default).
seq 1 5000 | kcat -b "$broker" -P -t idem-kcat -X enable.idempotence=true || fail "kcat idempotent"
[ "$(count idem-kcat)" -eq 5000 ] || fail "idempotent kcat records"
seq 1 5000 | "$spate" produce -b "$broker" -t idem-spate >/dev/null 2>&1 || fail "spate produce"
[ "$(count idem-spate)" -eq 5000 ] || fail "spate producer records"

# acks=all with flush on every batch: SIGKILL loses nothing acknowledged.
stop
start --partitions 2 --flush every
seq 1 3000 | kcat -b "$broker" -P -t durable -X acks=all -X linger.ms=1 ||
    fail "produce acks=all"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
start --partitions 2 --flush every
n=$(count durable)
[ "$n" -eq 3000 ] || fail "after SIGKILL: $n of 3000 acknowledged records"
[ "$(cut -d' ' -f3 "$dir/read" | sort -n | uniq | wc -l)" -eq 3000 ] || fail "records repeated"

# The demo's pipeline: a job produces clicks into a topic over the Kafka
# protocol, a windowed job reads it to its end and writes counts to another
# topic; every click is counted once or reported late.
"$spate" topic create -b "$broker" -t clicks -p 2 >/dev/null 2>&1 || fail "topic clicks"
"$spate" topic create -b "$broker" -t clicks-per-user -p 2 >/dev/null 2>&1 || fail "topic out"
"$spate" --cores 1 run user-window-count --param mode=produce --param events=50K \
    --param brokers="$broker" >/dev/null 2>"$dir/job" || fail "produce job: $(cat "$dir/job")"
"$spate" --cores 2 run user-window-count --param source=kafka --param to-end=true \
    --param brokers="$broker" --param sink=kafka 2>"$dir/job" || fail "window job: $(cat "$dir/job")"
late=$(sed -n 's/.* \([0-9]*\) late;.*/\1/p' "$dir/job")
[ -n "$late" ] || fail "no summary: $(cat "$dir/job")"
counted=$(timeout 30 kcat -b "$broker" -C -t clicks-per-user -o beginning -e -q |
    /usr/bin/python3 -c 'import sys, json; print(sum(json.loads(l)["clicks"] for l in sys.stdin))')
[ $((counted + late)) -eq 50000 ] || fail "windows counted $counted clicks and $late late of 50000"
stop
echo "broker with kcat: ok"
