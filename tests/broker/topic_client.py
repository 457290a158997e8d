#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# test_topic_configs.sh's client: topic configs, compaction, Metadata and
# ListOffsets checks against spate broker. kafka-python (Debian's
# python3-kafka) for CreateTopics with configs, DescribeConfigs,
# AlterConfigs and producing with timestamps; raw frames for what
# kafka-python 2.0 cannot send: IncrementalAlterConfigs v0, Metadata with a
# name repeated, ListOffsets v7 (MAX_TIMESTAMP, -3). Prints what the broker
# answered.
# Usage: topic_client.py HOST:PORT COMMAND [ARGS...]
import socket
import struct
import sys


def recv_all(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("the broker closed the connection")
        out += chunk
    return out


def raw(bootstrap, key, version, body, flexible=False):
    """One request; the response body (after the correlation id and, for a
    flexible version, the header's empty tagged fields)."""
    host, port = bootstrap.rsplit(":", 1)
    client = b"spate-test"
    header = struct.pack(">hhih", key, version, 11, len(client)) + client
    if flexible:
        header += b"\x00"
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_all(s, 4))[0]
        resp = recv_all(s, size)
    assert struct.unpack_from(">i", resp, 0)[0] == 11
    return resp[5:] if flexible else resp[4:]


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def nstring(s):
    return struct.pack(">h", -1) if s is None else string(s)


class Reader:
    def __init__(self, data):
        self.d, self.at = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.at)
        self.at += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.at:self.at + n].decode()
        self.at += n
        return s

    def uvarint(self):
        v, shift = 0, 0
        while True:
            b = self.d[self.at]
            self.at += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7

    def cstring(self):
        n = self.uvarint() - 1
        s = self.d[self.at:self.at + n].decode() if n >= 0 else None
        self.at += max(n, 0)
        return s


def metadata(bootstrap, names, version=1, create=False):
    """Metadata v1 (or v4 with allow_auto_topic_creation): 'count N', then
    'name error partitions' per topic."""
    body = struct.pack(">i", len(names)) + b"".join(string(n) for n in names)
    if version >= 4:
        body += struct.pack(">?", create)
    r = Reader(raw(bootstrap, 3, version, body))
    if version >= 3:
        r.take(">i")  # throttle
    for _ in range(r.take(">i")):  # brokers
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    if version >= 2:
        r.string()  # cluster id
    r.take(">i")  # controller
    n = r.take(">i")
    print("count", n)
    for _ in range(n):
        err = r.take(">h")
        name = r.string()
        r.take(">?")
        parts = r.take(">i")
        for _ in range(parts):
            r.take(">hii")  # error, index, leader
            for _ in range(2):  # replicas, isr
                count = r.take(">i")
                r.at += 4 * count
        print(name, err, parts)


def list_offsets(bootstrap, topic, ts, version):
    """ListOffsets for partition 0: 'error offset timestamp'."""
    name = topic.encode()
    if version >= 6:  # flexible: compact strings and arrays, tagged fields
        body = struct.pack(">ib", -1, 0) + b"\x02" + bytes([len(name) + 1]) + name
        body += b"\x02" + struct.pack(">iiq", 0, -1, ts) + b"\x00" + b"\x00" + b"\x00"
        r = Reader(raw(bootstrap, 2, version, body, flexible=True))
        r.take(">i")
        assert r.uvarint() == 2
        assert r.cstring() == topic
        assert r.uvarint() == 2
        _index, err, timestamp, offset, _epoch = r.take(">ihqqi")
    else:
        body = struct.pack(">i", -1) + (struct.pack(">b", 0) if version >= 2 else b"")
        body += struct.pack(">i", 1) + string(topic) + struct.pack(">ii", 1, 0)
        body += (struct.pack(">i", -1) if version >= 4 else b"") + struct.pack(">q", ts)
        r = Reader(raw(bootstrap, 2, version, body))
        if version >= 2:
            r.take(">i")
        assert r.take(">i") == 1
        assert r.string() == topic
        assert r.take(">i") == 1
        _index, err, timestamp, offset = r.take(">ihqq")
    print(err, offset, timestamp)


def incremental_alter(bootstrap, topic, ops, validate=False):
    """IncrementalAlterConfigs v0 on a topic; ops 'set:name=value' or
    'delete:name'. Prints 'error message'."""
    body = struct.pack(">i", 1) + struct.pack(">b", 2) + string(topic)
    body += struct.pack(">i", len(ops))
    for op in ops:
        kind, kv = op.split(":", 1)
        name, _, value = kv.partition("=")
        code = {"set": 0, "delete": 1, "append": 2, "subtract": 3}[kind]
        body += string(name) + struct.pack(">b", code) + nstring(value if kind != "delete" else None)
    body += struct.pack(">?", validate)
    r = Reader(raw(bootstrap, 44, 0, body))
    r.take(">i")
    assert r.take(">i") == 1
    err = r.take(">h")
    msg = r.string()
    print(err, msg or "")


def main():
    bootstrap, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if cmd == "metadata":
        metadata(bootstrap, args)
        return
    if cmd == "metadata-create":
        metadata(bootstrap, args, version=4, create=True)
        return
    if cmd == "offsets":
        list_offsets(bootstrap, args[0], int(args[1]), int(args[2]) if len(args) > 2 else 7)
        return
    if cmd == "ialter":
        incremental_alter(bootstrap, args[0], args[1:])
        return
    if cmd == "produce-ts":
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
        futures = [p.send(args[0], key=b"k%d" % i, value=b"v%d" % i, partition=0,
                          timestamp_ms=int(ts)) for i, ts in enumerate(args[1:])]
        p.flush()
        print(" ".join(str(f.get(timeout=30).offset) for f in futures))
        p.close()
        return
    if cmd == "produce-nullkey":
        from confluent_kafka import Producer
        got = []
        p = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": 0})
        p.produce(args[0], value=b"no key", partition=0,
                  on_delivery=lambda err, _msg: got.append(err))
        p.flush(30)
        print("delivered" if got and got[0] is None else "error %s" % (got[0].name() if got else "none"))
        return
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="spate-test",
                         request_timeout_ms=30000)
    try:
        if cmd == "create":
            configs = dict(kv.split("=", 1) for kv in args[2:])
            try:
                a.create_topics([NewTopic(args[0], int(args[1]), 1, topic_configs=configs)])
                print("created")
            except KafkaError as e:
                print("error", type(e).__name__)
        elif cmd == "describe":
            for r in a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args[0])]):
                for res in r.resources:
                    print("error", res[0])
                    for c in res[4]:
                        print(c[0], c[1], c[3])  # name, value, config source (v1+)
        elif cmd == "alter":
            configs = dict(kv.split("=", 1) for kv in args[1:])
            r = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, args[0],
                                                configs=configs)])
            for res in r.resources:
                print(res[0], res[1] or "")
        else:
            sys.exit("unknown command " + cmd)
    finally:
        a.close()


if __name__ == "__main__":
    main()
