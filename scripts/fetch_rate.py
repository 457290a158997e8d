# SPDX-License-Identifier: Apache-2.0
# Large-batch consumption at the wire level: Fetch v4 requests of up to
# 50 MiB from offset 0 of one partition to its high watermark, repeated
# until 1 GB was read, bytes of records per second. No client library's per-record work in the way: what
# the broker serves. Used by scripts/bench_broker.
# Usage: /usr/bin/python3 scripts/fetch_rate.py HOST:PORT TOPIC
import socket
import struct
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
topic = sys.argv[2].encode()
s = socket.create_connection((host, int(port)))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
buf = bytearray(64 << 20)
view = memoryview(buf)


def recv_exact(n):
    got = 0
    while got < n:
        k = s.recv_into(view[got:n])
        if k == 0:
            raise SystemExit("connection closed")
        got += k
    return got


corr = 0


def fetch(offset, max_bytes):
    global corr
    corr += 1
    client = b"fetch_rate"
    body = struct.pack(">iiiib", -1, 10, 1, max_bytes, 0)  # replica, max wait, min bytes, max, isolation
    body += struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, max_bytes)
    req = struct.pack(">hhih", 1, 4, corr, len(client)) + client + body
    s.sendall(struct.pack(">i", len(req)) + req)
    recv_exact(4)
    size = struct.unpack(">i", buf[:4])[0]
    recv_exact(size)
    # corr, throttle, [topic name, [partition, error, hw, lso, aborted[], records]]
    off = 4 + 4 + 4
    nlen = struct.unpack(">h", buf[off:off + 2])[0]
    off += 2 + nlen + 4
    part, err, hw, lso = struct.unpack(">ihqq", buf[off:off + 22])
    off += 22
    aborted = struct.unpack(">i", buf[off:off + 4])[0]
    off += 4 + max(aborted, 0) * 16
    rlen = struct.unpack(">i", buf[off:off + 4])[0]
    off += 4
    assert err == 0, err
    # The last whole batch's end offset.
    last, pos, end = offset - 1, off, off + max(rlen, 0)
    while pos + 12 <= end:
        base, blen = struct.unpack(">qi", buf[pos:pos + 12])
        if pos + 12 + blen > end:
            break
        delta = struct.unpack(">i", buf[pos + 23:pos + 27])[0]
        last = base + delta
        pos += 12 + blen
    return hw, last + 1, max(rlen, 0)


# The partition from its start to its high watermark, again and again
# until at least 1 GB went by (one pass of a 100 MB topic is too short a
# sample on a shared machine).
offset, total, passes = 0, 0, 0
t0 = time.monotonic()
while total < 1_000_000_000:
    hw, nxt, n = fetch(offset, 50 << 20)
    total += n
    offset = nxt
    if n == 0 or nxt >= hw:
        offset = 0
        passes += 1
        if n == 0 and total == 0:
            raise SystemExit("the partition is empty")
dt = time.monotonic() - t0
print("%.0f MB/s (%d MB in %.2f s)" % (total / dt / 1e6, total // 1000000, dt))
