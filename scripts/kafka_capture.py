#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Record the Kafka frames real clients exchange with a broker.

Standard library only; runs under any Python 3.7+ (/usr/bin/python3 or the
python3 first on PATH).

  kafka_capture.py proxy --upstream 127.0.0.1:PORT --listen-port 39092 \
      --out DIR --client kcat --doing "what the client does" [--label-file F]

    A TCP proxy on 127.0.0.1. Every connection a client opens to it gets its
    own upstream connection to the broker; each Kafka frame (4-byte size
    prefix plus body) in either direction is forwarded and written to
    DIR/NNNN-<req|resp>-<ApiName>-v<version>.bin, with one line per frame in
    DIR/manifest.txt (tab separated, header line starts with '#').
    Responses are paired with requests by correlation id, per connection.

    Clients connect to the brokers the cluster advertises, not to the address
    they were given, so the proxy rewrites the broker's host/port to its own
    listen address in Metadata (brokers array, v0-v12) and FindCoordinator
    (v0-v3 single coordinator, v4+ coordinators array) responses. The frame
    stored is the one delivered to the client (manifest column 'note' says
    what was rewritten). Any other advertised address is left alone and a
    warning is printed: clients would bypass the proxy for that broker.

    The first stdout line is "listening 127.0.0.1:PORT". SIGTERM/SIGINT stop
    it after open connections have drained (at most --drain seconds).
    With --label-file, the 'doing' column is the file's current content when
    the frame is seen (a client script can name its steps); else --doing.

  kafka_capture.py pcap DIR... -w out.pcap [--port 9092]

    Synthesizes a pcap (Ethernet/IPv4/TCP over 127.0.0.1) from the frames
    and manifests in the given capture directories: one TCP stream per
    recorded connection, server side on --port, each frame one or more
    segments. Lets tshark's Kafka dissector check stored (or any other
    program's) frames without a live capture:
      tshark -r out.pcap -d tcp.port==9092,kafka -Y _ws.malformed

  kafka_capture.py summary ROOT

    Prints Markdown tables over ROOT/*/manifest.txt: per scenario (client,
    connections, frames, bytes, APIs) and per API the versions each client
    used.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata",
    4: "LeaderAndIsr", 5: "StopReplica", 6: "UpdateMetadata",
    7: "ControlledShutdown", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup",
    14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics",
    20: "DeleteTopics", 21: "DeleteRecords", 22: "InitProducerId",
    23: "OffsetForLeaderEpoch", 24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers",
    28: "TxnOffsetCommit", 29: "DescribeAcls", 30: "CreateAcls",
    31: "DeleteAcls", 32: "DescribeConfigs", 33: "AlterConfigs",
    34: "AlterReplicaLogDirs", 35: "DescribeLogDirs", 36: "SaslAuthenticate",
    37: "CreatePartitions", 38: "CreateDelegationToken",
    39: "RenewDelegationToken", 40: "ExpireDelegationToken",
    41: "DescribeDelegationToken", 42: "DeleteGroups", 43: "ElectLeaders",
    44: "IncrementalAlterConfigs", 45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments", 47: "OffsetDelete",
    48: "DescribeClientQuotas", 49: "AlterClientQuotas",
    50: "DescribeUserScramCredentials", 51: "AlterUserScramCredentials",
    55: "DescribeQuorum", 56: "AlterPartition", 57: "UpdateFeatures",
    58: "Envelope", 60: "DescribeCluster", 61: "DescribeProducers",
    64: "UnregisterBroker", 65: "DescribeTransactions",
    66: "ListTransactions", 67: "AllocateProducerIds",
    68: "ConsumerGroupHeartbeat",
}

# First flexible (KIP-482: compact encodings, tagged fields, response header
# v1) version of each API, for the APIs whose responses the proxy rewrites.
FIRST_FLEXIBLE = {3: 9, 10: 3}
API_METADATA = 3
API_FIND_COORDINATOR = 10
API_APIVERSIONS = 18

MAX_FRAME = 256 * 1024 * 1024


def api_name(key):
    return API_NAMES.get(key, "Api%d" % key) if key >= 0 else "Unknown"


# ---------------------------------------------------------------------------
# Minimal Kafka primitive decoding (only what the rewriting needs)

class Reader:
    def __init__(self, buf, pos=0):
        self.buf = buf
        self.pos = pos

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated at %d (+%d of %d)" % (self.pos, n, len(self.buf)))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ValueError("uvarint too long")

    def string(self, flexible):
        """Nullable or not, classic (int16 len) or compact (uvarint len+1)."""
        if flexible:
            n = self.uvarint() - 1
        else:
            n = self.i16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def array_len(self, flexible):
        return self.uvarint() - 1 if flexible else self.i32()


def enc_uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def enc_string(s, flexible):
    b = s.encode("utf-8")
    return (enc_uvarint(len(b) + 1) if flexible else struct.pack(">h", len(b))) + b


class Rewriter:
    """Replaces advertised upstream addresses with the proxy's own."""

    def __init__(self, upstream, listen, log):
        self.upstream = upstream  # (host, port)
        self.listen = listen
        self.log = log
        self.warned = set()

    def _endpoint(self, r, flexible, edits, what):
        """Reads host, port at r.pos; queues an edit if it is the upstream."""
        start = r.pos
        host = r.string(flexible)
        port = r.i32()
        if (host, port) == self.upstream:
            edits.append((start, r.pos,
                          enc_string(self.listen[0], flexible) + struct.pack(">i", self.listen[1]),
                          "%s %s:%d->%s:%d" % (what, host, port, self.listen[0], self.listen[1])))
        elif host is not None and port >= 0 and (host, port) not in self.warned:
            self.warned.add((host, port))
            self.log("warning: %s advertises %s:%d, not the upstream; clients will bypass "
                     "the proxy for it" % (what, host, port))

    def rewrite(self, frame, key, version):
        """frame: whole frame incl. size prefix. Returns (frame, note)."""
        if key not in (API_METADATA, API_FIND_COORDINATOR):
            return frame, ""
        flexible = version >= FIRST_FLEXIBLE[key]
        r = Reader(frame, 8)  # size + correlation id
        if flexible:
            r.tagged_fields()  # response header v1
        edits = []
        if key == API_METADATA:
            if version >= 3:
                r.i32()  # throttle_time_ms
            for _ in range(r.array_len(flexible)):
                r.i32()  # node_id
                self._endpoint(r, flexible, edits, "Metadata broker")
                if version >= 1:
                    r.string(flexible)  # rack
                if flexible:
                    r.tagged_fields()
        else:
            if version >= 1:
                r.i32()  # throttle_time_ms
            if version < 4:
                r.i16()  # error_code
                if version >= 1:
                    r.string(flexible)  # error_message
                r.i32()  # node_id
                self._endpoint(r, flexible, edits, "FindCoordinator")
            else:
                for _ in range(r.array_len(True)):
                    r.string(True)  # key
                    r.i32()  # node_id
                    self._endpoint(r, True, edits, "FindCoordinator")
                    r.i16()  # error_code
                    r.string(True)  # error_message
                    r.tagged_fields()
        if not edits:
            return frame, ""
        out = bytearray()
        last = 4
        for start, end, repl, _ in edits:
            out += frame[last:start]
            out += repl
            last = end
        out += frame[last:]
        return struct.pack(">i", len(out)) + bytes(out), "rewrote " + "; ".join(e[3] for e in edits)


# ---------------------------------------------------------------------------
# Recorder: numbered frame files plus manifest.txt

MANIFEST_HEADER = ("#file\tdir\tapi_key\tapi_version\tcorrelation_id\tclient\tconn\t"
                   "client_id\tnote\tdoing\n")


class Recorder:
    def __init__(self, out_dir, client, doing, label_file):
        self.out_dir = out_dir
        self.client = client
        self.doing = doing
        self.label_file = label_file
        self.lock = threading.Lock()
        self.count = 0
        os.makedirs(out_dir, exist_ok=True)
        self.manifest = open(os.path.join(out_dir, "manifest.txt"), "w")
        self.manifest.write(MANIFEST_HEADER)
        self.manifest.flush()

    def current_doing(self):
        if self.label_file:
            try:
                with open(self.label_file) as f:
                    text = f.read().strip()
                if text:
                    return text
            except OSError:
                pass
        return self.doing

    def record(self, direction, key, version, corr, conn, client_id, note, frame):
        clean = lambda s: (s or "-").replace("\t", " ").replace("\n", " ")
        with self.lock:
            self.count += 1
            name = "%04d-%s-%s-v%d.bin" % (self.count, direction, api_name(key), version)
            with open(os.path.join(self.out_dir, name), "wb") as f:
                f.write(frame)
            self.manifest.write("\t".join([
                name, direction, str(key), str(version), str(corr), clean(self.client),
                str(conn), clean(client_id), clean(note), clean(self.current_doing())]) + "\n")
            self.manifest.flush()

    def close(self):
        with self.lock:
            self.manifest.close()


# ---------------------------------------------------------------------------
# Proxy

def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    """Returns a whole frame, b'' at a clean EOF, or raises on a partial one."""
    head = recv_exact(sock, 4)
    if not head:
        return b""
    if len(head) < 4:
        raise EOFError("partial size prefix")
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > MAX_FRAME:
        raise ValueError("bad frame size %d" % size)
    body = recv_exact(sock, size)
    if len(body) < size:
        raise EOFError("partial frame (%d of %d bytes)" % (len(body), size))
    return head + body


class Connection:
    def __init__(self, proxy, conn_id, client_sock, peer):
        self.proxy = proxy
        self.id = conn_id
        self.client = client_sock
        self.peer = peer
        self.upstream = None
        self.pending = {}  # correlation id -> (api key, version)
        self.lock = threading.Lock()

    def log(self, msg):
        self.proxy.log("conn %d (%s:%d): %s" % (self.id, self.peer[0], self.peer[1], msg))

    def run(self):
        try:
            self.upstream = socket.create_connection(self.proxy.upstream, timeout=10)
            self.upstream.settimeout(None)
        except OSError as e:
            self.log("upstream connect failed: %s" % e)
            self.client.close()
            return
        for s in (self.client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = threading.Thread(target=self.pump, args=("resp",), daemon=True)
        t.start()
        self.pump("req")
        t.join()
        for s in (self.client, self.upstream):
            try:
                s.close()
            except OSError:
                pass
        self.log("closed")

    def pump(self, direction):
        src, dst = (self.client, self.upstream) if direction == "req" else (self.upstream, self.client)
        try:
            while True:
                frame = read_frame(src)
                if not frame:
                    break
                if direction == "req":
                    frame = self.on_request(frame)
                else:
                    frame = self.on_response(frame)
                dst.sendall(frame)
        except (OSError, EOFError, ValueError) as e:
            self.log("%s: %s" % (direction, e))
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def on_request(self, frame):
        key = version = corr = -1
        client_id = None
        try:
            r = Reader(frame, 4)
            key, version, corr = r.i16(), r.i16(), r.i32()
            client_id = r.string(False)  # request header v1/v2: classic nullable string
        except ValueError as e:
            self.log("request header: %s" % e)
        with self.lock:
            self.pending[corr] = (key, version)
        self.proxy.recorder.record("req", key, version, corr, self.id, client_id, "", frame)
        return frame

    def on_response(self, frame):
        corr = struct.unpack(">i", frame[4:8])[0] if len(frame) >= 8 else -1
        with self.lock:
            key, version = self.pending.pop(corr, (-1, -1))
        if key < 0:
            self.log("response with unknown correlation id %d" % corr)
        note = ""
        try:
            frame, note = self.proxy.rewriter.rewrite(frame, key, version)
        except ValueError as e:
            note = "rewrite failed: %s" % e
            self.log("%s v%d response: %s" % (api_name(key), version, note))
        self.proxy.recorder.record("resp", key, version, corr, self.id, None, note, frame)
        return frame


class Proxy:
    def __init__(self, args):
        host, port = args.upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listen_host = args.listen_host
        self.recorder = Recorder(args.out, args.client, args.doing, args.label_file)
        self.quiet = args.quiet
        self.drain = args.drain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((args.listen_host, args.listen_port))
        self.sock.listen(64)
        self.listen = self.sock.getsockname()[:2]
        self.rewriter = Rewriter(self.upstream, self.listen, self.log)
        self.threads = []
        self.stopping = threading.Event()

    def log(self, msg):
        if not self.quiet or msg.startswith("warning"):
            sys.stderr.write("kafka_capture: %s\n" % msg)
            sys.stderr.flush()

    def serve(self):
        sys.stdout.write("listening %s:%d\n" % self.listen)
        sys.stdout.flush()
        conn_id = 0
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                client, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            client.settimeout(None)
            conn_id += 1
            c = Connection(self, conn_id, client, peer)
            c.log("accepted")
            t = threading.Thread(target=c.run, daemon=True)
            t.start()
            self.threads.append(t)
        self.sock.close()
        deadline = time.monotonic() + self.drain
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.recorder.close()
        self.log("%d frames over %d connections" % (self.recorder.count, conn_id))


def cmd_proxy(args):
    proxy = Proxy(args)
    stop = lambda signum, frame: proxy.stopping.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy.serve()
    return 0


# ---------------------------------------------------------------------------
# pcap synthesis

def read_manifest(path):
    rows = []
    with open(path) as f:
        cols = None
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                cols = line[1:].split("\t")
                continue
            if line:
                rows.append(dict(zip(cols, line.split("\t"))))
    return rows


def ip_checksum(hdr):
    s = sum(struct.unpack(">%dH" % (len(hdr) // 2), hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class PcapWriter:
    """Ethernet/IPv4/TCP packets between 127.0.0.1 ports (no TCP checksum;
    tshark does not verify it by default)."""

    MSS = 65000

    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.t = 1700000000.0
        self.ip_id = 0

    def packet(self, sport, dport, seq, ack, flags, payload=b""):
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          5 << 4, flags, 65535, 0, 0)
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), self.ip_id,
                         0x4000, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
        ip = ip[:10] + struct.pack(">H", ip_checksum(ip)) + ip[12:]
        eth = b"\0" * 12 + b"\x08\x00"
        data = eth + ip + tcp + payload
        self.t += 0.001
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(data), len(data)))
        self.f.write(data)

    def close(self):
        self.f.close()


class Stream:
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01

    def __init__(self, w, cport, sport):
        self.w, self.cport, self.sport = w, cport, sport
        self.cseq, self.sseq = 1000, 5000
        w.packet(cport, sport, self.cseq, 0, self.SYN)
        w.packet(sport, cport, self.sseq, self.cseq + 1, self.SYN | self.ACK)
        self.cseq += 1
        self.sseq += 1
        w.packet(cport, sport, self.cseq, self.sseq, self.ACK)

    def send(self, from_client, data):
        for off in range(0, len(data), PcapWriter.MSS):
            chunk = data[off:off + PcapWriter.MSS]
            if from_client:
                self.w.packet(self.cport, self.sport, self.cseq, self.sseq, self.ACK | self.PSH, chunk)
                self.cseq += len(chunk)
            else:
                self.w.packet(self.sport, self.cport, self.sseq, self.cseq, self.ACK | self.PSH, chunk)
                self.sseq += len(chunk)

    def close(self):
        self.w.packet(self.cport, self.sport, self.cseq, self.sseq, self.FIN | self.ACK)
        self.w.packet(self.sport, self.cport, self.sseq, self.cseq + 1, self.FIN | self.ACK)
        self.w.packet(self.cport, self.sport, self.cseq + 1, self.sseq + 1, self.ACK)


def cmd_pcap(args):
    w = PcapWriter(args.write)
    next_port = 40000
    nframes = 0
    for d in args.dirs:
        streams = {}
        for row in read_manifest(os.path.join(d, "manifest.txt")):
            conn = row.get("conn", "1")
            if conn not in streams:
                streams[conn] = Stream(w, next_port, args.port)
                next_port += 1
            with open(os.path.join(d, row["file"]), "rb") as f:
                streams[conn].send(row["dir"] == "req", f.read())
            nframes += 1
        for s in streams.values():
            s.close()
    w.close()
    sys.stderr.write("kafka_capture: wrote %d frames, %d streams to %s\n"
                     % (nframes, next_port - 40000, args.write))
    return 0


def cmd_summary(args):
    scenarios = []
    for name in sorted(os.listdir(args.root)):
        path = os.path.join(args.root, name, "manifest.txt")
        if os.path.isfile(path):
            scenarios.append((name, read_manifest(path)))
    clients = sorted({r["client"] for _, rows in scenarios for r in rows})
    used = {}  # api key -> client -> set of versions
    out = ["| scenario | client | conns | frames | bytes | APIs (versions) |",
           "|---|---|---|---|---|---|"]
    total = 0
    for name, rows in scenarios:
        size = sum(os.path.getsize(os.path.join(args.root, name, r["file"])) for r in rows)
        total += size
        apis = {}
        for r in rows:
            if r["dir"] != "req":
                continue
            key, ver = int(r["api_key"]), int(r["api_version"])
            apis.setdefault(key, set()).add(ver)
            used.setdefault(key, {}).setdefault(r["client"], set()).add(ver)
        client = ",".join(sorted({r["client"] for r in rows})) or "-"
        desc = ", ".join("%s v%s" % (api_name(k), "/".join(map(str, sorted(v))))
                         for k, v in sorted(apis.items()))
        out.append("| %s | %s | %d | %d | %d | %s |" % (
            name, client, len({r["conn"] for r in rows}), len(rows), size, desc))
    out.append("")
    out.append("Total: %d frames, %d bytes of frames." % (
        sum(len(rows) for _, rows in scenarios), total))
    out.append("")
    out.append("| api (key) | " + " | ".join(clients) + " |")
    out.append("|---|" + "---|" * len(clients))
    for key in sorted(used):
        cells = [", ".join("v%d" % v for v in sorted(used[key].get(c, ()))) or "-"
                 for c in clients]
        out.append("| %s (%d) | %s |" % (api_name(key), key, " | ".join(cells)))
    print("\n".join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    sub.required = True

    p = sub.add_parser("proxy", help="record frames between clients and a broker")
    p.add_argument("--upstream", required=True, help="broker host:port (the mock's bootstrap)")
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=0, help="0: any free port")
    p.add_argument("--out", required=True, help="directory for frames and manifest.txt")
    p.add_argument("--client", default="-", help="client name for the manifest")
    p.add_argument("--doing", default="-", help="what the client is doing, for the manifest")
    p.add_argument("--label-file", help="file whose content overrides --doing per frame")
    p.add_argument("--drain", type=float, default=2.0, help="seconds to wait for open "
                   "connections after SIGTERM")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.set_defaults(func=cmd_proxy)

    p = sub.add_parser("pcap", help="synthesize a pcap from capture directories")
    p.add_argument("dirs", nargs="+")
    p.add_argument("-w", "--write", required=True)
    p.add_argument("--port", type=int, default=9092, help="server port in the pcap")
    p.set_defaults(func=cmd_pcap)

    p = sub.add_parser("summary", help="Markdown tables over capture directories")
    p.add_argument("root")
    p.set_defaults(func=cmd_summary)

    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
