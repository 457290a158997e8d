#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates tests/fixtures/kafka/ from scratch: the Kafka frames real
# clients (kcat / librdkafka, kafka-python) exchange with librdkafka's mock
# cluster, recorded by scripts/kafka_capture.py, then checked with tshark's
# Kafka dissector.
#
#   scripts/kafka_capture_fixtures.sh
#
# Steps: build tests/kafka-peers/mock_broker with cc; start it (1 broker,
# topics below); start a live `tshark -i lo` capture of the proxy and broker
# ports; for each scenario start the recording proxy on 127.0.0.1:$PORT
# (writing tests/fixtures/kafka/<scenario>/), run the client through it, stop
# the proxy; then write tests/fixtures/kafka/README.md, synthesize a pcap from
# the stored frames and check both pcaps for malformed packets.
# Everything stays on 127.0.0.1. Work files (binary, logs, pcaps) go to
# build/kafka-capture/.
#
# Environment: KAFKA_CAPTURE_PORT (proxy port, default 39092; it appears in
# the rewritten Metadata/FindCoordinator responses, so keep it fixed),
# KAFKA_CAPTURE_LIVE=0 to skip the live tshark capture, KAFKA_CAPTURE_PYTHON
# (interpreter with kafka-python, default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${KAFKA_CAPTURE_PORT:-39092}
LIVE=${KAFKA_CAPTURE_LIVE:-1}
KPY=${KAFKA_CAPTURE_PYTHON:-/usr/bin/python3}
WORK=build/kafka-capture
FIX=tests/fixtures/kafka
BOOT=127.0.0.1:$PORT
CLIENT_TIMEOUT=60
CODECS="none gzip snappy lz4 zstd"

die() { echo "kafka_capture_fixtures: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for tool in cc kcat tshark "$KPY"; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
"$KPY" -c 'import kafka' 2>/dev/null || die "$KPY cannot import kafka (python3-kafka)"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "127.0.0.1:$PORT is in use; set KAFKA_CAPTURE_PORT"
fi

rm -rf "$WORK" "$FIX"
mkdir -p "$WORK" "$FIX"

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---- mock broker -----------------------------------------------------------
log "building mock_broker"
cc -std=c11 -O1 -Wall -Wextra -Werror -o "$WORK/mock_broker" tests/kafka-peers/mock_broker.c -lrdkafka

topics=(--topic events:3 --topic other:1)
for c in $CODECS; do topics+=(--topic "kcat.$c:2"); done
for c in $CODECS; do topics+=(--topic "kp.$c:2"); done

# The broker's stdin is a FIFO this script holds open: if the script dies the
# broker sees EOF and exits.
mkfifo "$WORK/broker.stdin"
"$WORK/mock_broker" "${topics[@]}" <"$WORK/broker.stdin" >"$WORK/broker.out" 2>"$WORK/broker.log" &
pids+=($!)
exec 7>"$WORK/broker.stdin"
for _ in $(seq 100); do
    [ -s "$WORK/broker.out" ] && break
    sleep 0.1
done
BROKER=$(head -n1 "$WORK/broker.out")
[[ "$BROKER" =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "mock_broker did not print host:port (got '$BROKER')"
BROKER_PORT=${BROKER##*:}
log "mock broker at $BROKER, proxy at $BOOT"

# ---- live capture ----------------------------------------------------------
if [ "$LIVE" = 1 ]; then
    tshark -i lo -f "tcp port $PORT or tcp port $BROKER_PORT" -w "$WORK/live.pcap" \
        >"$WORK/tshark-live.log" 2>&1 &
    tshark_pid=$!
    pids+=($tshark_pid)
    for _ in $(seq 100); do
        grep -q "Capturing on" "$WORK/tshark-live.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q "Capturing on" "$WORK/tshark-live.log" || die "tshark live capture did not start"
    sleep 0.5
fi

# ---- one scenario: proxy + client ------------------------------------------
LABEL="$WORK/label"
capture() { # scenario client doing -- command...
    local scenario=$1 client=$2 doing=$3
    shift 4
    local dir="$FIX/$scenario"
    log "$scenario: $doing"
    : >"$LABEL"
    rm -f "$WORK/proxy.out"
    python3 scripts/kafka_capture.py proxy --upstream "$BROKER" --listen-port "$PORT" \
        --out "$dir" --client "$client" --doing "$doing" --label-file "$LABEL" --quiet \
        >"$WORK/proxy.out" 2>>"$WORK/proxy.log" &
    local proxy=$!
    for _ in $(seq 100); do
        grep -q '^listening' "$WORK/proxy.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^listening' "$WORK/proxy.out" || die "proxy did not start (see $WORK/proxy.log)"
    local rc=0
    timeout "$CLIENT_TIMEOUT" "$@" </dev/null >"$WORK/$scenario.stdout" 2>"$WORK/$scenario.stderr" || rc=$?
    kill -TERM "$proxy"
    wait "$proxy" || die "proxy for $scenario failed (see $WORK/proxy.log)"
    [ "$rc" = 0 ] || die "$scenario: client exited $rc (see $WORK/$scenario.stderr)"
}

# ---- kcat (librdkafka) -----------------------------------------------------
KCAT=(kcat -b "$BOOT" -X client.id=spate-fixtures-kcat)
FMT='topic=%t partition=%p offset=%o key=%k value=%s headers=%h\n'

capture kcat-metadata kcat "kcat -L: list brokers and topics" -- "${KCAT[@]}" -L

for c in $CODECS; do
    printf 'key-%d:value %d from kcat, codec %s; a repetitive payload payload payload payload\n' \
        1 1 "$c" 2 2 "$c" 3 3 "$c" 4 4 "$c" >"$WORK/kcat-$c.in"
    capture "kcat-produce-$c" kcat "kcat -P -z $c: 4 keyed messages with 2 headers to kcat.$c" -- \
        "${KCAT[@]}" -P -t "kcat.$c" -K: -z "$c" -H trace=t-1 -H origin=kcat \
        -X linger.ms=100 -l "$WORK/kcat-$c.in"
done

for c in $CODECS; do
    capture "kcat-consume-$c" kcat "kcat -C -o beginning -e: read kcat.$c back" -- \
        "${KCAT[@]}" -C -t "kcat.$c" -o beginning -e -q -f "$FMT"
    sort "$WORK/kcat-consume-$c.stdout" >"$FIX/kcat-consume-$c/consumed.txt"
done

capture kcat-group kcat "kcat -G kcat-group kcat.none kcat.gzip -e: balanced consumer group" -- \
    "${KCAT[@]}" -G kcat-group kcat.none kcat.gzip -e -q -f "$FMT" \
    -X auto.offset.reset=earliest -X heartbeat.interval.ms=500 -X auto.commit.interval.ms=500
sort "$WORK/kcat-group.stdout" >"$FIX/kcat-group/consumed.txt"

# ---- kafka-python ----------------------------------------------------------
cat >"$WORK/kp_client.py" <<'PY'
# kafka-python scenarios; argv: scenario bootstrap label-file out-dir
import sys, time
import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

scenario, boot, label_file, out_dir = sys.argv[1:5]

def label(text):
    with open(label_file, "w") as f:
        f.write(text)

def produce(codec):
    topic = "kp." + codec
    label("KafkaProducer(compression_type=%s): bootstrap, version probe" % codec)
    p = KafkaProducer(bootstrap_servers=boot, client_id="spate-fixtures-kp",
                      compression_type=None if codec == "none" else codec, linger_ms=100)
    label("KafkaProducer.send x4 (keyed, 2 headers) to %s, flush" % topic)
    for i in range(1, 5):
        p.send(topic, key=b"key-%d" % i,
               value=b"value %d from kafka-python, codec %s; a repetitive payload payload payload payload" % (i, codec.encode()),
               headers=[("trace", b"t-1"), ("origin", b"kafka-python")])
    p.flush()
    label("KafkaProducer.close")
    p.close()

def consume_group():
    topics = ["kp.none", "kp.gzip"]
    label("KafkaConsumer(group_id=kp-group).subscribe(%s)" % ",".join(topics))
    c = KafkaConsumer(*topics, bootstrap_servers=boot, client_id="spate-fixtures-kp",
                      group_id="kp-group", auto_offset_reset="earliest",
                      enable_auto_commit=False, heartbeat_interval_ms=500,
                      consumer_timeout_ms=2000)
    got = []
    deadline = time.time() + 30
    while len(got) < 8 and time.time() < deadline:
        label("KafkaConsumer.poll: join group, fetch")
        for tp, msgs in c.poll(timeout_ms=500).items():
            got.extend(msgs)
    label("KafkaConsumer: idle 1.2 s in the group (heartbeats)")
    end = time.time() + 1.2
    while time.time() < end:
        c.poll(timeout_ms=200)
    label("KafkaConsumer.commit")
    c.commit()
    label("KafkaConsumer.close (leave group)")
    c.close()
    with open(out_dir + "/consumed.txt", "w") as f:
        for m in sorted(got, key=lambda m: (m.topic, m.partition, m.offset)):
            f.write("topic=%s partition=%d offset=%d key=%s value=%s headers=%s\n" % (
                m.topic, m.partition, m.offset, m.key.decode(), m.value.decode(),
                ",".join("%s=%s" % (k, v.decode()) for k, v in m.headers)))
    if len(got) != 8:
        sys.exit("consumed %d messages, expected 8" % len(got))

def admin():
    from kafka.admin import NewPartitions, NewTopic, ConfigResource, ConfigResourceType
    from kafka.protocol.admin import (CreateTopicsRequest, DescribeConfigsRequest,
                                      ListGroupsRequest)
    outcome = []

    def step(name, fn):
        label("KafkaAdminClient." + name)
        try:
            r = fn()
            res = "ok: %r" % (r,)
        except Exception as e:
            msg = str(e)
            res = msg if msg.startswith(type(e).__name__) else "%s: %s" % (type(e).__name__, msg)
        outcome.append("%s\t%s" % (name, res.replace("\n", " ")))

    label("KafkaAdminClient(): bootstrap, version probe")
    a = KafkaAdminClient(bootstrap_servers=boot, client_id="spate-fixtures-kp")
    step("list_topics()", a.list_topics)
    step("describe_cluster()", a.describe_cluster)
    step("list_consumer_group_offsets('kp-group')", lambda: a.list_consumer_group_offsets("kp-group"))
    # Refused by kafka-python itself (IncompatibleBrokerVersion, nothing sent):
    # the mock's ApiVersions response does not list these APIs.
    step("create_topics([kp.new])", lambda: a.create_topics([NewTopic("kp.new", 1, 1)]))
    step("delete_topics([kp.none])", lambda: a.delete_topics(["kp.none"]))
    step("create_partitions({kp.none: 3})", lambda: a.create_partitions({"kp.none": NewPartitions(3)}))
    step("list_consumer_groups()", a.list_consumer_groups)
    step("describe_consumer_groups([kp-group])", lambda: a.describe_consumer_groups(["kp-group"]))
    step("describe_configs(topic kp.none)", lambda: a.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "kp.none")]))

    # Send a few unsupported requests anyway, each on its own connection (as
    # kafka-python encodes them) to record what the mock answers.
    def raw(req, corr):
        def go():
            import socket, struct
            from kafka.protocol.api import RequestHeader
            host, port = boot.rsplit(":", 1)
            # keep the header object alive: Struct.encode is a WeakMethod
            header = RequestHeader(req, corr, "spate-fixtures-kp")
            body = header.encode() + req.encode()
            s = socket.create_connection((host, int(port)), timeout=5)
            try:
                s.sendall(struct.pack(">i", len(body)) + body)
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        return "no answer in 5 s (%d bytes)" % len(data)
                    if not chunk:
                        return ("connection closed by broker, no response" if not data
                                else "response of %d bytes, then closed" % len(data))
                    data += chunk
                    if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
                        return "response of %d bytes" % len(data)
            finally:
                s.close()
        return go
    step("raw CreateTopics v0", raw(CreateTopicsRequest[0](
        create_topic_requests=[("kp.new", 1, 1, [], [])], timeout=1000), 101))
    step("raw DescribeConfigs v0", raw(DescribeConfigsRequest[0](
        resources=[(2, "kp.none", None)]), 102))
    step("raw ListGroups v0", raw(ListGroupsRequest[0](), 103))
    label("KafkaAdminClient.close")
    a.close()
    with open(out_dir + "/outcome.txt", "w") as f:
        f.write("# step\tresult (kafka-python %s against the librdkafka mock)\n" % kafka.__version__)
        f.write("\n".join(outcome) + "\n")

if scenario.startswith("kp-produce-"):
    produce(scenario[len("kp-produce-"):])
elif scenario == "kp-group":
    consume_group()
elif scenario == "kp-admin":
    admin()
else:
    sys.exit("unknown scenario " + scenario)
PY

# Codecs kafka-python can use here (gzip is built in; the others need
# python3-snappy / python3-lz4 / python3-zstandard).
KP_CODECS=$("$KPY" -c '
import kafka.codec as c
print(" ".join(n for n, ok in [("none", True), ("gzip", c.has_gzip()), ("snappy", c.has_snappy()),
      ("lz4", c.has_lz4()), ("zstd", c.has_zstd())] if ok))')
log "kafka-python codecs available: $KP_CODECS"

kp() { # scenario doing
    mkdir -p "$FIX/$1"
    capture "$1" kafka-python "$2" -- "$KPY" "$WORK/kp_client.py" "$1" "$BOOT" "$LABEL" "$FIX/$1"
}
for c in $KP_CODECS; do
    kp "kp-produce-$c" "KafkaProducer compression_type=$c: 4 keyed messages with 2 headers to kp.$c"
done
kp kp-group "KafkaConsumer group_id=kp-group on kp.none, kp.gzip: consume 8, commit, close"
kp kp-admin "KafkaAdminClient: supported and unsupported admin calls"

# ---- stop, check -----------------------------------------------------------
exec 7>&- # broker stdin EOF
if [ "$LIVE" = 1 ]; then
    sleep 0.5
    kill -TERM "$tshark_pid"
    wait "$tshark_pid" 2>/dev/null || true
fi

log "synthesizing pcap from stored frames"
python3 scripts/kafka_capture.py pcap "$FIX"/*/ -w "$WORK/fixtures.pcap" --port 9092

check_pcap() { # pcap decode-args... -> "pdus malformed unsupported"
    local pcap=$1
    shift
    local frames malformed unsupported
    frames=$(tshark -r "$pcap" "$@" -Y kafka -T fields -e kafka.correlation_id 2>/dev/null |
        tr ',' '\n' | grep -c . || true)
    malformed=$(tshark -r "$pcap" "$@" -Y _ws.malformed 2>/dev/null | grep -c . || true)
    unsupported=$(tshark -r "$pcap" "$@" -Y 'kafka.unsupported_api_version or kafka.unknown_api_key' \
        2>/dev/null | grep -c . || true)
    echo "$frames $malformed $unsupported"
}
# Malformed PDUs explained by known tshark 4.0 / mock issues, not by the
# clients: tshark 4.0's Kafka dissector reads classic BYTES fields with an
# int16 length (Kafka: int32), so it misreads the protocol metadata of
# JoinGroup v0-5 and the assignments of SyncGroup v0-3 (requests and
# responses); and the mock's ApiVersions v3 UNSUPPORTED_VERSION response body
# fits neither the v3 nor the v0 (KIP-511) layout.
KNOWN_MALFORMED='^Kafka (JoinGroup v[0-5]|SyncGroup v[0-3]) (Request|Response)$|^Kafka ApiVersions v3 Response$'
malformed_kinds() { # pcap (one PDU per packet) -> "count<TAB>Kafka Api vN Request|Response"
    tshark -r "$1" -d tcp.port==9092,kafka -Y _ws.malformed -T fields -e _ws.col.Info 2>/dev/null |
        sed -E 's/ +$//; s/ *\[[^]]*\]$//; s/ \(.*\)$//' | sort | uniq -c |
        awk '{n=$1; $1=""; sub(/^ /, ""); print n "\t" $0}'
}
stored=$(cat "$FIX"/*/manifest.txt | grep -vc '^#')
read -r syn_frames syn_malformed syn_unsup < <(check_pcap "$WORK/fixtures.pcap" -d tcp.port==9092,kafka)
log "fixtures.pcap: $stored stored frames, tshark decoded $syn_frames kafka PDUs, malformed: $syn_malformed, unsupported-version: $syn_unsup"
[ "$syn_frames" = "$stored" ] || die "tshark decoded $syn_frames Kafka PDUs, expected $stored"
kinds=$(malformed_kinds "$WORK/fixtures.pcap")
[ -z "$kinds" ] || printf '%s\n' "$kinds" | sed 's/^/   malformed: /' >&2
unexplained=$(printf '%s\n' "$kinds" | cut -f2 | grep -Ev "$KNOWN_MALFORMED" | grep . || true)
[ -z "$unexplained" ] || die "tshark finds malformed frames not explained by known issues: $unexplained"
malformed_table=$(printf '%s\n' "$kinds" | awk -F'\t' 'NF == 2 {print "| " $2 " | " $1 " |"}')
if [ "$LIVE" = 1 ]; then
    read -r live_frames live_malformed live_unsup < <(check_pcap "$WORK/live.pcap" \
        -d "tcp.port==$PORT,kafka" -d "tcp.port==$BROKER_PORT,kafka")
    conns_proxy=$(tshark -r "$WORK/live.pcap" -Y "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==$PORT" 2>/dev/null | grep -c . || true)
    conns_broker=$(tshark -r "$WORK/live.pcap" -Y "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==$BROKER_PORT" 2>/dev/null | grep -c . || true)
    log "live.pcap: tshark decoded $live_frames kafka PDUs (both legs), malformed: $live_malformed, unsupported-version: $live_unsup; connections to proxy: $conns_proxy, to broker: $conns_broker"
    [ "$conns_proxy" = "$conns_broker" ] ||
        die "clients bypassed the proxy: $conns_proxy connections to it, $conns_broker to the broker"
fi

# ---- README -----------------------------------------------------------------
versions=$(dpkg-query -W kcat librdkafka1 python3-kafka tshark | sed 's/^/    /')
summary=$(python3 scripts/kafka_capture.py summary "$FIX")
admin_outcome=$(sed -e '/^#/d' -e 's/^/    /' "$FIX/kp-admin/outcome.txt" | cut -c1-220)
fix_size=$(find "$FIX" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
live_line="(live capture skipped: KAFKA_CAPTURE_LIVE=0)"
if [ "$LIVE" = 1 ]; then
    live_line="live capture of both legs (client<->proxy :$PORT, proxy<->broker): $live_frames Kafka PDUs, $live_malformed malformed, $live_unsup unsupported-version; $conns_proxy client connections to the proxy and as many proxy connections to the broker, none bypassing the proxy."
fi

cat >"$FIX/README.md" <<EOF
# Kafka wire fixtures

Real Kafka frames exchanged by real clients with librdkafka's mock cluster
(one broker). Generated — do not edit; regenerate with

    scripts/kafka_capture_fixtures.sh

on Debian 12 with (\`dpkg-query -W kcat librdkafka1 python3-kafka tshark\`):

$versions

## How

1. \`tests/kafka-peers/mock_broker.c\` (built with \`cc ... -lrdkafka\`) runs
   \`rd_kafka_mock_cluster_new(rk, 1)\` with topics \`events\` (3 partitions),
   \`other\` (1), \`kcat.<codec>\` and \`kp.<codec>\` (2 each, codec in
   none gzip snappy lz4 zstd) and prints its bootstrap \`127.0.0.1:<port>\`.
2. For each scenario, \`scripts/kafka_capture.py proxy\` listens on
   127.0.0.1:$PORT, opens one broker connection per client connection and
   stores every frame (4-byte size prefix included) as
   \`<scenario>/NNNN-<req|resp>-<Api>-v<version>.bin\`; responses are paired
   with requests by correlation id, per connection.
3. Clients connect to the brokers advertised in Metadata, not to the
   bootstrap address, so the proxy rewrites the broker's port to $PORT in
   Metadata and FindCoordinator responses (host stays 127.0.0.1, so frame
   sizes do not change). Stored responses are the rewritten frames the client
   received; the manifest's \`note\` column says which were rewritten.
4. \`manifest.txt\` (tab separated, header line \`#file dir api_key
   api_version correlation_id client conn client_id note doing\`): one line
   per frame in capture order; \`conn\` numbers the client's TCP connections,
   \`doing\` is the scenario or, for kafka-python, the call in progress.

Extra files: \`consumed.txt\` (what the consumer decoded, sorted),
\`kp-admin/outcome.txt\` (what each admin call returned).

## Scenarios

kcat: \`kcat-metadata\` (\`-L\`); \`kcat-produce-<codec>\` (\`-P -z <codec> -K:
-H trace=t-1 -H origin=kcat -X linger.ms=100\`, 4 keyed messages, one
ProduceRequest); \`kcat-consume-<codec>\` (\`-C -o beginning -e\`);
\`kcat-group\` (\`-G kcat-group kcat.none kcat.gzip -e\`,
auto.offset.reset=earliest, heartbeat and auto-commit every 500 ms).
kafka-python (/usr/bin/python3): \`kp-produce-<codec>\` for the codecs it can
use here ($KP_CODECS; snappy/lz4/zstd need python3-snappy/-lz4/-zstandard,
not installed); \`kp-group\` (group kp-group on kp.none and kp.gzip: consume
8, idle 1.2 s, commit, close); \`kp-admin\` (KafkaAdminClient calls, then
CreateTopics v0, DescribeConfigs v0 and ListGroups v0 sent raw on their own
connections, encoded by kafka-python, to record the mock's reaction).

$summary

## What the mock refused (librdkafka 2.0.2 mock)

- ApiVersions v3 (librdkafka's first try) is answered with
  UNSUPPORTED_VERSION; librdkafka retries with v0.
- The mock's ApiVersions lists no admin APIs (CreateTopics, DeleteTopics,
  CreatePartitions, ListGroups, DescribeGroups, DescribeConfigs, ...):
  kafka-python refuses those calls itself without sending anything. Sent
  anyway (raw requests in kp-admin), the mock closes the connection without
  a response (CreateTopics, DescribeConfigs: "unsupported"; ListGroups v0:
  it even fails to parse the header).
- OffsetFetch v3 with topics=null ("all committed offsets") is answered with
  a null topics array, which kafka-python 2.0.2 cannot iterate (TypeError in
  list_consumer_group_offsets).

kp-admin outcome:

$admin_outcome

## Checking with tshark

\`scripts/kafka_capture.py pcap DIR... -w out.pcap\` synthesizes a pcap (one
TCP stream per recorded connection, server port 9092) from stored frames,
so frames written by any program — spate's codec included — can be checked:

    python3 scripts/kafka_capture.py pcap tests/fixtures/kafka/*/ -w /tmp/fixtures.pcap
    tshark -r /tmp/fixtures.pcap -d tcp.port==9092,kafka -Y _ws.malformed
    # prints nothing when tshark finds no malformed frame; to see it decode:
    tshark -r /tmp/fixtures.pcap -d tcp.port==9092,kafka -Y kafka -V

Last run: $stored stored frames; tshark decoded $syn_frames Kafka PDUs from
the synthesized pcap, $syn_malformed flagged malformed, $syn_unsup flagged
unsupported-version/unknown-api (the latter only because tshark 4.0's tables
stop below the versions the mock lists in ApiVersions, e.g. InitProducerId
v4); $live_line

Every malformed flag is one of two known issues, not a client fault (the
driver fails on any other):

- tshark 4.0's Kafka dissector reads classic (non-flexible) BYTES fields with
  an int16 length, where Kafka uses int32 (newer Wireshark reads int32). It
  therefore misreads JoinGroup v0-5 protocol metadata and SyncGroup v0-3
  assignments, in requests and responses, from both clients. Decoded by
  hand, those frames are well formed (e.g. kcat's JoinGroup v5: metadata
  length 0x00000024 = 36 bytes of ConsumerProtocol subscription v1).
- The mock's ApiVersions v3 error response (UNSUPPORTED_VERSION) has a body
  that fits neither the v3 layout nor the v0 layout KIP-511 prescribes;
  librdkafka only reads its error code and retries with v0.

| tshark: malformed PDU | count |
|---|---|
$malformed_table

## Determinism

Between runs (checked by running the driver twice) the scenarios, the set
of (direction, API, version) per scenario and, for the single-connection
scenarios (kcat produce/consume/metadata, kp-produce), the frame sequence
are the same. What varies by design: correlation ids where connections
interleave, record timestamps (so Produce/Fetch sizes can move by a byte),
the mock's random cluster id (Metadata responses), group member ids, the
number of Fetch long-polls and heartbeats, whether a consumer's last Fetch is
answered before it disconnects, and in the group scenarios the number of
connections (kafka-python opens 3 or 4) and their interleaving in the
NNNN numbering (kp-group: 40-42 frames).
Fixture files total $fix_size bytes (before this README).
EOF

log "done: $(find "$FIX" -name '*.bin' | wc -l) frames in $FIX ($fix_size bytes, README included)"
