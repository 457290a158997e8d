#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Frames spate encodes, one request and one response for every generated API
# and version, are dissected by Wireshark's Kafka dissector (tshark) without
# any malformed-packet report. Exits 77 (skip) where tshark is not installed.
#
# What tshark 4.0 (Debian 12) cannot judge is left out, each case checked:
# - versions it says it does not support ("Unsupported X version. Supports
#   vA-B": Produce above v8, Fetch above v11, Metadata above v9, ...) and
#   API keys it does not know (DescribeCluster, 60);
# - its BYTES fields read with a 16-bit length where Kafka uses 32 bits
#   (fixed in later Wireshark), which breaks every JoinGroup (11), SyncGroup
#   (14), DescribeGroups (15) and SaslAuthenticate (36) frame, real clients'
#   included (see tests/fixtures/kafka/README.md);
# - dissectors that depart from Kafka's definitions: DeleteTopics (20)
#   responses read without ThrottleTimeMs, WriteTxnMarkers (27) responses
#   read with a ThrottleTimeMs they do not have, CreateTopics (19) and
#   CreatePartitions (37) replica assignments read as one flat array.
# test_kafka_python.py checks those APIs' frames with kafka-python instead,
# where it has them.
# Usage: test_tshark.sh KAFKA_WRITE_FRAMES KAFKA_CAPTURE_PY
set -euo pipefail
writer=$1 capture=$2
command -v tshark >/dev/null || { echo "tshark not installed: skipping"; exit 77; }
python=/usr/bin/python3
[ -x "$python" ] || python=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$writer" "$work/frames" 7
# Leave out the APIs whose tshark 4.0 dissectors are wrong (see above).
awk -F'\t' '$1 ~ /^#/ || $3 !~ /^(11|14|15|19|20|27|36|37|60)$/' \
    "$work/frames/manifest.txt" >"$work/m"
mv "$work/m" "$work/frames/manifest.txt"
frames=$(grep -vc '^#' "$work/frames/manifest.txt")
"$python" "$capture" pcap -w "$work/spate.pcap" --port 9092 "$work/frames"

dissected=$(tshark -r "$work/spate.pcap" -d tcp.port==9092,kafka -Y kafka -T fields \
    -e frame.number 2>/dev/null | wc -l)
malformed=$(tshark -r "$work/spate.pcap" -d tcp.port==9092,kafka \
    -Y '_ws.malformed && !(_ws.expert.message contains "Unsupported")' -T fields \
    -e frame.number -e kafka.correlation_id 2>/dev/null)
unsupported=$(tshark -r "$work/spate.pcap" -d tcp.port==9092,kafka \
    -Y '_ws.expert.message contains "Unsupported"' -T fields -e frame.number 2>/dev/null | wc -l)
echo "tshark dissected $dissected Kafka packets from $frames spate frames" \
    "($unsupported of versions it does not support)"
if [ -n "$malformed" ]; then
    echo "malformed per tshark (frame, api key, version):"
    echo "$malformed" | head -20
    exit 1
fi
[ "$dissected" -ge "$frames" ] || { echo "fewer Kafka packets than frames"; exit 1; }
