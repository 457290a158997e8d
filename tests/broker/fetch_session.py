# SPDX-License-Identifier: Apache-2.0
# Fetch sessions (KIP-227) at the wire level, against a running `spate
# broker` whose topic TOPIC has 2 partitions, partition 0 holding records
# and partition 1 none: a full fetch with epoch 0 opens a session; an
# incremental fetch naming nothing answers nothing while nothing changed;
# new records on partition 1 come back alone; a partition forgotten is no
# longer answered; a wrong epoch is INVALID_FETCH_SESSION_EPOCH (71), an
# unknown session FETCH_SESSION_ID_NOT_FOUND (70); epoch -1 closes the
# session. Hand-built Fetch v7 frames (struct), so nothing of spate's own
# code builds or reads them.
# Usage: /usr/bin/python3 fetch_session.py PORT TOPIC
import socket
import struct
import subprocess
import sys
import time

PORT = int(sys.argv[1])
TOPIC = sys.argv[2].encode()
corr = 0


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            fail("connection closed")
        buf += chunk
    return buf


def fetch(s, session_id, epoch, parts, forgotten=(), max_wait=0):
    """parts: [(partition, offset)] of TOPIC; forgotten: [partition]. Returns
    (error, session_id, {partition: (error, hw, record bytes)})."""
    global corr
    corr += 1
    body = struct.pack(">iiiibii", -1, max_wait, 1, 1 << 20, 0, session_id, epoch)
    if parts:
        body += struct.pack(">ih", 1, len(TOPIC)) + TOPIC + struct.pack(">i", len(parts))
        for p, off in parts:
            body += struct.pack(">iqqi", p, off, -1, 1 << 20)
    else:
        body += struct.pack(">i", 0)
    if forgotten:
        body += struct.pack(">ih", 1, len(TOPIC)) + TOPIC + struct.pack(">i", len(forgotten))
        for p in forgotten:
            body += struct.pack(">i", p)
    else:
        body += struct.pack(">i", 0)
    cid = b"fetch-session-test"
    head = struct.pack(">hhih", 1, 7, corr, len(cid)) + cid
    s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    r = recv_exact(s, n)
    at = 4  # correlation id
    (got_corr,) = struct.unpack_from(">i", r, 0)
    if got_corr != corr:
        fail("correlation %d, want %d" % (got_corr, corr))
    _throttle, err, sid, ntopics = struct.unpack_from(">ihii", r, at)
    at += 14
    out = {}
    for _ in range(ntopics):
        (tl,) = struct.unpack_from(">h", r, at)
        at += 2 + tl
        (np,) = struct.unpack_from(">i", r, at)
        at += 4
        for _ in range(np):
            p, perr, hw, _lso, _ls, nab = struct.unpack_from(">ihqqqi", r, at)
            at += 34 + max(nab, 0) * 16
            (rl,) = struct.unpack_from(">i", r, at)
            at += 4
            out[p] = (perr, hw, r[at:at + max(rl, 0)])
            at += max(rl, 0)
    return err, sid, out


s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
err, sid, out = fetch(s, 0, 0, [(0, 0), (1, 0)])
if err != 0 or sid == 0 or sorted(out) != [0, 1] or not out[0][2]:
    fail("full fetch opening a session: error %d, session %d, partitions %s" % (err, sid, out))
hw0 = out[0][1]
print("session %d opened; partition 0 high watermark %d" % (sid, hw0))
# The consumer moves partition 0 to its end: only that changes.
err, sid2, out = fetch(s, sid, 1, [(0, hw0)])
if err != 0 or sid2 != sid or out:
    fail("incremental fetch with nothing new: error %d session %d partitions %s" %
         (err, sid2, sorted(out)))
err, _, out = fetch(s, sid, 2, [])
if err != 0 or out:
    fail("second incremental fetch with nothing new answered %s" % sorted(out))
print("incremental fetches with nothing new: no partitions")
subprocess.run(["kcat", "-P", "-b", "127.0.0.1:%d" % PORT, "-t", TOPIC.decode(), "-p", "1"],
               input=b"new-1\nnew-2\n", check=True)
err, _, out = fetch(s, sid, 3, [], max_wait=2000)
if err != 0 or sorted(out) != [1] or b"new-2" not in out[1][2]:
    fail("after records on partition 1: %s" % out)
print("new records on partition 1: only partition 1 answered")
# Forget partition 1, then write to it again: no longer answered.
err, _, out = fetch(s, sid, 4, [], forgotten=[1])
subprocess.run(["kcat", "-P", "-b", "127.0.0.1:%d" % PORT, "-t", TOPIC.decode(), "-p", "1"],
               input=b"new-3\n", check=True)
err, _, out = fetch(s, sid, 5, [], max_wait=300)
if err != 0 or out:
    fail("a forgotten partition was answered: %s" % sorted(out))
print("forgotten partition: not answered")
err, _, out = fetch(s, sid, 5, [])
if err != 71:
    fail("a repeated epoch answered error %d, want 71" % err)
err, _, out = fetch(s, sid + 1000, 1, [])
if err != 70:
    fail("an unknown session answered error %d, want 70" % err)
err, sid3, out = fetch(s, sid, -1, [(0, 0)])
if err != 0 or sid3 != 0 or sorted(out) != [0]:
    fail("closing the session: error %d session %d" % (err, sid3))
err, _, out = fetch(s, sid, 6, [])
if err != 70:
    fail("a closed session answered error %d, want 70" % err)
print("errors 71 and 70; the session closed with epoch -1")

# Clients that open a session and go away in the middle of a long poll
# (consumers closing) must not keep their sessions' slots: more of them
# than the two shards of the test hold (1000 each), then a new session
# still opens.
err, _, out = fetch(s, 0, -1, [(1, 0)])
end1 = out[1][1]  # partition 1's high watermark: a fetch from there waits
for i in range(2100):
    c = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s = c  # fetch() sends on the global s
    corr += 1
    body = struct.pack(">iiiibii", -1, 5000, 1 << 20, 1 << 20, 0, 0, 0)
    body += struct.pack(">ih", 1, len(TOPIC)) + TOPIC + struct.pack(">i", 1)
    body += struct.pack(">iqqi", 1, end1, -1, 1 << 20)
    body += struct.pack(">i", 0)
    cid = b"fetch-session-test"
    head = struct.pack(">hhih", 1, 7, corr, len(cid)) + cid
    c.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
    time.sleep(0.003)
    c.close()
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
err, sid, out = fetch(s, 0, 0, [(0, 0)])
if err != 0 or sid == 0:
    fail("after 2100 abandoned sessions a new one did not open: error %d, session %d" % (err, sid))
print("2100 sessions abandoned mid-poll: a new one still opens")
print("ok")
