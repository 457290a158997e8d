#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate broker's security against real clients, one listener mode at a
# time, each with a kcat consumer that runs throughout and must still be
# served at the end (nothing done to other connections harms it):
# - SSL (own CA and server certificate, made here with `openssl req`):
#   kcat produces and consumes; a plaintext client against the TLS port is
#   closed, the broker unharmed; --idle-timeout-ms closes a connection that
#   only did its handshake, not the busy consumer;
# - SASL_PLAINTEXT with PLAIN: kcat and kafka-python (its SaslHandshake v0
#   flow with raw tokens) produce and consume; a wrong password is refused
#   (the client reports an authentication failure); a Produce before
#   authentication closes the connection (ApiVersions is still answered);
# - SASL_SSL with SCRAM-SHA-256: kcat and kafka-python produce and consume;
#   a wrong password and an unknown user are refused;
# - accept out of descriptors (ulimit -n 40) backs off instead of spinning
#   and serves again once connections closed.
# Waits for conditions (with generous limits), never for fixed times.
# Usage: test_security.sh SPATE
set -euo pipefail
spate=$1
py=/usr/bin/python3
command -v kcat >/dev/null || { echo "kcat missing (scripts/deps test installs it)"; exit 1; }
command -v openssl >/dev/null || { echo "openssl missing (scripts/deps test installs it)"; exit 1; }
dir=$(mktemp -d)
pid=
bg=
cleanup() {
    [ -n "$bg" ] && kill -9 "$bg" 2>/dev/null || true
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/log" ] && { echo "--- broker log" >&2; tail -30 "$dir/log" >&2; }
    for f in "$dir"/*.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -8 "$f" >&2; }
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
has_line() { grep -qx -- "$2" "$1" 2>/dev/null; }
alive() { kill -0 "$pid" 2>/dev/null || fail "the broker died"; }

# A CA and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=spate-test-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>"$dir/openssl.err" || fail "openssl (CA)"
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>>"$dir/openssl.err" || fail "openssl (key)"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san"
openssl x509 -req -days 2 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$dir/san" -out "$dir/server.pem" 2>>"$dir/openssl.err" ||
    fail "openssl (certificate)"
printf '# test users\nalice:alice-secret\nbob:b0b:with:colons\n' >"$dir/users"
tls=(--tls-cert "$dir/server.pem" --tls-key "$dir/server.key")

# The consumer that runs throughout a mode: bg_start KCAT_FLAGS... (after
# the broker started); bg_check TAG: TAG produced now reaches it.
bg_start() {
    bgx=("$@")
    echo bg-start | kcat -P -b "$broker" -t sec-bg "${bgx[@]}" 2>"$dir/bgp.err" ||
        fail "producing to sec-bg"
    : >"$dir/bg.out"
    kcat -C -b "$broker" -t sec-bg -o beginning -u -q "${bgx[@]}" >"$dir/bg.out" 2>"$dir/bg.err" &
    bg=$!
    wait_for 60 "the background consumer" has_line "$dir/bg.out" bg-start
}
bg_check() {
    alive
    echo "$1" | kcat -P -b "$broker" -t sec-bg "${bgx[@]}" 2>"$dir/bgp.err" ||
        fail "producing $1 to sec-bg"
    wait_for 60 "the background consumer to get $1" has_line "$dir/bg.out" "$1"
    kill -0 "$bg" 2>/dev/null || fail "the background consumer exited"
}
bg_stop() {
    kill -TERM "$bg" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
    bg=
}

# roundtrip TOPIC N PAD KCAT_FLAGS...: N records of PAD bytes and more
# produced, then all consumed.
roundtrip() {
    local topic=$1 n=$2 pad=$3
    shift 3
    seq "$n" | awk -v t="$topic" -v p="$pad" '{ printf "%s-%d-%0" p "d\n", t, $1, 0 }' >"$dir/want"
    kcat -P -b "$broker" -t "$topic" "$@" <"$dir/want" 2>"$dir/produce.err" ||
        fail "kcat could not produce to $topic"
    timeout 60 kcat -C -b "$broker" -t "$topic" -o beginning -e -q "$@" >"$dir/got" \
        2>"$dir/consume.err" || fail "kcat could not consume $topic"
    cmp -s "$dir/want" "$dir/got" || fail "$topic: consumed $(wc -l <"$dir/got") of $n records"
}

# refused KCAT_FLAGS...: metadata fails with an authentication error.
refused() {
    if timeout 60 kcat -L -b "$broker" -m 5 "$@" >"$dir/refused.out" 2>"$dir/refused.err"; then
        fail "kcat with wrong credentials got metadata"
    fi
    grep -qi "authentication" "$dir/refused.err" ||
        fail "kcat with wrong credentials did not report an authentication failure"
}

# kafka-python PROTOCOL MECHANISM USER PASSWORD TOPIC: produces 20 records and reads them
# back; prints "refused" when the connection is refused, "ok" when done.
kafka_python() {
    timeout 120 "$py" - "$port" "$dir/ca.pem" "$@" <<'EOF'
import sys
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
port, ca, proto, mech, user, password, topic = sys.argv[1:8]
opts = dict(bootstrap_servers='127.0.0.1:' + port, security_protocol=proto,
            sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password,
            request_timeout_ms=20000, api_version_auto_timeout_ms=10000)
if proto.endswith('SSL'):
    opts.update(ssl_cafile=ca, ssl_check_hostname=False)
try:
    p = KafkaProducer(**opts)
except KafkaError as e:
    print('refused', type(e).__name__)
    sys.exit(0)
for i in range(20):
    p.send(topic, b'kp-%d' % i)
p.flush()
p.close()
c = KafkaConsumer(topic, auto_offset_reset='earliest', consumer_timeout_ms=10000, **opts)
got = [m.value for m in c]
c.close()
want = [b'kp-%d' % i for i in range(20)]
print('ok' if got == want else 'wrong: %r' % got)
EOF
}

# probe KIND: raw connections (tests/broker has no client for these).
#   tls-idle PORT CA: a TLS handshake, then silence: seconds until closed.
#   plain-on-tls PORT: an ApiVersions frame in clear: "closed" when it was.
#   produce-unauth PORT: ApiVersions answered, then a Produce: "closed".
probe() {
    timeout 90 "$py" - "$@" <<'EOF'
import socket, ssl, struct, sys, time
kind, port = sys.argv[1], int(sys.argv[2])

def frame(key, version, corr, body=b''):
    cid = b'probe'
    msg = struct.pack('>hhih', key, version, corr, len(cid)) + cid + body
    return struct.pack('>i', len(msg)) + msg

def read_all(s, limit):
    """Bytes until EOF (None if still open after `limit` seconds)."""
    s.settimeout(limit)
    data = b''
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return data
    except socket.timeout:
        return None

s = socket.create_connection(('127.0.0.1', port))
if kind == 'tls-idle':
    ctx = ssl.create_default_context(cafile=sys.argv[3])
    t = ctx.wrap_socket(s, server_hostname='127.0.0.1')
    start = time.monotonic()
    got = read_all(t, 60)
    print('open' if got is None else '%.1f' % (time.monotonic() - start))
elif kind == 'plain-on-tls':
    s.sendall(frame(18, 0, 1))
    got = read_all(s, 30)
    print('closed' if got is not None and not got.startswith(b'\0\0\0') else 'answered')
elif kind == 'produce-unauth':
    s.sendall(frame(18, 0, 1))
    s.settimeout(30)
    head = s.recv(4)
    size = struct.unpack('>i', head)[0]
    body = b''
    while len(body) < size:
        body += s.recv(size - len(body))
    corr, err = struct.unpack('>ih', body[:6])
    if corr != 1 or err != 0:
        print('ApiVersions refused')
        sys.exit(0)
    topic = b'sec-unauth'
    produce = (struct.pack('>hhi', -1, 1, 1000) + struct.pack('>i', 1) +
               struct.pack('>h', len(topic)) + topic + struct.pack('>i', 1) +
               struct.pack('>ii', 0, -1))
    s.sendall(frame(0, 3, 2, produce))
    got = read_all(s, 30)
    print('closed' if got == b'' else 'answered' if got else 'open')
EOF
}

# ---- SSL ----
start "${tls[@]}" --idle-timeout-ms 1500
ssl=(-X security.protocol=ssl -X ssl.ca.location="$dir/ca.pem")
bg_start "${ssl[@]}"
roundtrip sec-ssl 200 1 "${ssl[@]}"
roundtrip sec-ssl-big 4000 1000 "${ssl[@]}" # 4 MB: answers of many TLS records
out=$(probe plain-on-tls "$port")
[ "$out" = closed ] || fail "a plaintext client on the TLS port: $out"
grep -q "TLS handshake" "$dir/log" || fail "no log line for the plaintext client"
if timeout 30 kcat -L -b "$broker" -m 3 >/dev/null 2>"$dir/plainkcat.err"; then
    fail "kcat in plaintext got metadata from the TLS port"
fi
bg_check bg-after-plaintext
out=$(probe tls-idle "$port" "$dir/ca.pem")
[ "$out" != open ] || fail "an idle TLS connection stayed open for 60 s (idle timeout 1.5 s)"
awk -v t="$out" 'BEGIN { exit !(t >= 1.0) }' || fail "an idle connection was closed after ${out}s"
grep -q "idle for 1500 ms" "$dir/log" || fail "no log line for the idle connection"
bg_check bg-after-idle # active for longer than the idle timeout, still served
bg_stop
stop

# ---- SASL_PLAINTEXT, PLAIN ----
start --sasl plain --users "$dir/users"
plain=(-X security.protocol=sasl_plaintext -X sasl.mechanisms=PLAIN)
bg_start "${plain[@]}" -X sasl.username=bob -X sasl.password=b0b:with:colons
roundtrip sec-plain 200 1 "${plain[@]}" -X sasl.username=alice -X sasl.password=alice-secret
out=$(kafka_python SASL_PLAINTEXT PLAIN alice alice-secret sec-kp-plain)
[ "$out" = ok ] || fail "kafka-python over SASL_PLAINTEXT with PLAIN: $out"
refused "${plain[@]}" -X sasl.username=alice -X sasl.password=wrong
refused "${plain[@]}" -X sasl.username=mallory -X sasl.password=alice-secret
out=$(kafka_python SASL_PLAINTEXT PLAIN alice wrong sec-kp-plain)
[ "${out%% *}" = refused ] || fail "kafka-python with a wrong PLAIN password: $out"
bg_check bg-after-refused
out=$(probe produce-unauth "$port")
[ "$out" = closed ] || fail "a Produce before authentication: $out"
grep -q "Produce (API 0) before SASL authentication" "$dir/log" ||
    fail "no log line for the unauthenticated Produce"
if timeout 30 kcat -L -b "$broker" -m 3 >/dev/null 2>"$dir/plainkcat.err"; then
    fail "kcat without SASL got metadata"
fi
bg_check bg-after-unauth
bg_stop
stop

# ---- SASL_SSL, SCRAM-SHA-256 ----
start "${tls[@]}" --sasl scram-sha-256 --users "$dir/users"
scram=(-X security.protocol=sasl_ssl -X ssl.ca.location="$dir/ca.pem"
    -X sasl.mechanisms=SCRAM-SHA-256)
bg_start "${scram[@]}" -X sasl.username=bob -X sasl.password=b0b:with:colons
roundtrip sec-scram 2000 100 "${scram[@]}" -X sasl.username=alice -X sasl.password=alice-secret
out=$(kafka_python SASL_SSL SCRAM-SHA-256 alice alice-secret sec-kp-scram)
[ "$out" = ok ] || fail "kafka-python over SASL_SSL with SCRAM-SHA-256: $out"
refused "${scram[@]}" -X sasl.username=alice -X sasl.password=wrong
refused "${scram[@]}" -X sasl.username=mallory -X sasl.password=alice-secret
out=$(kafka_python SASL_SSL SCRAM-SHA-256 bob wrong sec-kp-scram)
[ "${out%% *}" = refused ] || fail "kafka-python with a wrong SCRAM password: $out"
grep -q "authenticated as 'alice' with SCRAM-SHA-256" "$dir/log" ||
    fail "no log line for a SCRAM authentication"
bg_check bg-after-scram
bg_stop
stop

# ---- accept out of descriptors: backs off, serves again once there are ----
rm -f "$dir/port"
(ulimit -n 40 && exec "$spate" --cores 1 broker --listen 127.0.0.1:0 --data "$dir/data-fd" \
    --port-file "$dir/port" >>"$dir/log" 2>&1) &
pid=$!
wait_for 10 "the broker with 40 descriptors" test -s "$dir/port"
port=$(cat "$dir/port")
broker=127.0.0.1:$port
# 60 connections held for 2 s: accept meets EMFILE; the CPU time the broker
# uses meanwhile (clock ticks) shows whether it spins (it would use ~all).
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
before=$(cpu)
timeout 60 "$py" - "$port" <<'EOF2' || fail "could not hold connections"
import socket, sys, time
held = [socket.create_connection(('127.0.0.1', int(sys.argv[1]))) for _ in range(60)]
time.sleep(2)
for s in held:
    s.close()
EOF2
used=$(($(cpu) - before))
tick=$(getconf CLK_TCK)
[ "$used" -lt "$tick" ] || fail "the broker used $used ticks in 2 s out of descriptors (spinning?)"
grep -q "Too many open files; trying again every 100 ms" "$dir/log" ||
    fail "no log line for accept out of descriptors"
wait_for 30 "metadata once descriptors are free" \
    timeout 10 kcat -L -b "$broker" -m 5 >/dev/null 2>&1
stop

# Wrong configurations are refused at start (exit 1 or 2, with a reason).
for flags in "--tls-cert $dir/server.pem" "--sasl plain" "--sasl md5 --users $dir/users" \
    "--tls-cert $dir/ca.pem --tls-key $dir/server.key" "--sasl plain --users $dir/missing"; do
    # shellcheck disable=SC2086
    if "$spate" broker --listen 127.0.0.1:0 --data "$dir/data" $flags >"$dir/bad.out" 2>&1; then
        fail "spate broker $flags started"
    fi
    grep -q "broker:" "$dir/bad.out" || fail "spate broker $flags: no reason given"
done
echo "security: all passed"
