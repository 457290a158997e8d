# SPDX-License-Identifier: Apache-2.0
# Idempotent produce at the wire level, against a running `spate broker`:
# InitProducerId gives ids; the same batch sent twice is written once and
# both answers carry its offset; a gap in the sequence is
# OUT_OF_ORDER_SEQUENCE_NUMBER (45); an older epoch is INVALID_PRODUCER_EPOCH
# (47); a bumped epoch starts its sequence again. Hand-built frames (struct,
# CRC-32C here), so nothing of spate's own code builds them.
# Usage: /usr/bin/python3 idempotence.py PORT
import socket
import struct
import sys

PORT = int(sys.argv[1])


def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    v = (v << 1) ^ (v >> 63)
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def batch(pid, epoch, seq, values):
    recs = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, 1000, 1000, pid, epoch, seq,
                            len(values)) + recs
    crc = crc32c(after_crc)
    head = struct.pack(">ibI", 0, 2, crc)  # partition leader epoch, magic, crc
    length = len(head) + len(after_crc)
    return struct.pack(">qi", 0, length) + head + after_crc


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        self.corr = 0

    def call(self, key, version, body):
        self.corr += 1
        client = b"test"
        req = struct.pack(">hhih", key, version, self.corr, len(client)) + client + body
        self.s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", self.recv(4))[0]
        data = self.recv(size)
        assert struct.unpack(">i", data[:4])[0] == self.corr
        return data[4:]

    def recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            assert chunk, "connection closed"
            out += chunk
        return out


def kstr(s):
    return struct.pack(">h", len(s)) + s


c = Conn()
# Metadata v1 for topic "idem" creates it (auto-creation).
c.call(3, 1, struct.pack(">i", 1) + kstr(b"idem"))

# InitProducerId v1: null transactional id, timeout.
r = c.call(22, 1, struct.pack(">hi", -1, 60000))
throttle, err, pid, epoch = struct.unpack(">ihqh", r[:16])
assert err == 0 and pid >= 0 and epoch == 0, (err, pid, epoch)
r = c.call(22, 1, struct.pack(">hi", -1, 60000))
assert struct.unpack(">ihqh", r[:16])[2] != pid, "producer ids must differ"


def produce(b):
    # Produce v3: transactional id null, acks -1, timeout, one topic, one partition.
    body = struct.pack(">hhi", -1, -1, 30000) + struct.pack(">i", 1) + kstr(b"idem")
    body += struct.pack(">i", 1) + struct.pack(">ii", 0, len(b)) + b
    r = c.call(0, 3, body)
    # responses: [topic: name, [partition: index int32, error int16, base_offset int64, ...]]
    off = 4
    nlen = struct.unpack(">h", r[off:off + 2])[0]
    off += 2 + nlen + 4
    index, error, base = struct.unpack(">ihq", r[off:off + 14])
    return error, base


def end_offset():
    # ListOffsets v1: replica -1, one topic, one partition, latest (-1).
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + kstr(b"idem")
    body += struct.pack(">i", 1) + struct.pack(">iq", 0, -1)
    r = c.call(2, 1, body)
    off = 4
    nlen = struct.unpack(">h", r[off:off + 2])[0]
    off += 2 + nlen + 4
    index, error, ts, offset = struct.unpack(">ihqq", r[off:off + 22])
    assert error == 0, error
    return offset


b0 = batch(pid, 0, 0, [b"a", b"b", b"c"])
r0 = produce(b0)
assert r0 == (0, 0), r0
assert produce(b0) == (0, 0), "a retried batch is answered with its offset"
assert end_offset() == 3, "and written once"
b1 = batch(pid, 0, 3, [b"d"])
assert produce(b1) == (0, 3)
assert produce(batch(pid, 0, 7, [b"x"]))[0] == 45, "a gap in the sequence"
assert end_offset() == 4
assert produce(batch(pid, 1, 0, [b"e"])) == (0, 4), "a new epoch starts at 0"
assert produce(batch(pid, 0, 4, [b"f"]))[0] == 47, "the old epoch is fenced"
assert produce(b1)[0] == 47
# A batch of a plain producer (id -1) is never de-duplicated.
plain = batch(-1, -1, -1, [b"p"])
assert produce(plain) == (0, 5)
assert produce(plain) == (0, 6)
assert end_offset() == 7
print("idempotence: ok")
