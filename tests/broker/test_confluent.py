# SPDX-License-Identifier: Apache-2.0
"""spate broker against confluent-kafka-python (Debian's
python3-confluent-kafka, on librdkafka), run by test_confluent.sh:
/usr/bin/python3 test_confluent.py HOST:PORT.

- An idempotent producer (enable.idempotence=true) writes N keyed records
  over 4 partitions in many small batches (lz4): every one is delivered,
  and each partition's offsets are 0, 1, 2, ... with no gap or repeat.
- A consumer (no group commits) reads each record once, and within a
  partition in the order produced.
- A consumer group of two members splits the partitions of another topic,
  reads what is produced there exactly once, commits synchronously; the
  committed offsets are the partitions' ends; a new member of the group
  resumes from them and reads just the records produced after.

Waits for conditions with generous limits, never for fixed times. Prints
"ok", or raises (exit 1) with the reason.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BROKER = sys.argv[1]
PARTITIONS = 4
N = 5000


def fail(why):
    raise SystemExit("FAIL: " + why)


def wait_for(seconds, what, check, poll):
    """Calls poll() until check() is true; fails after `seconds`."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        poll()


def create_topics(*names):
    admin = AdminClient({"bootstrap.servers": BROKER})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in names])
    for name, f in futures.items():
        f.result(timeout=60)
    md = admin.list_topics(timeout=30)
    for name in names:
        if len(md.topics[name].partitions) != PARTITIONS:
            fail(f"{name}: {len(md.topics[name].partitions)} partitions")


def produce(topic, first, last):
    """Records first..last (key k<i>, value v<i>), idempotently; returns
    {partition: [(offset, i)]} from the delivery reports."""
    p = Producer({
        "bootstrap.servers": BROKER,
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 2,
        "batch.num.messages": 50,
    })
    delivered = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.setdefault(msg.partition(), []).append(
                (msg.offset(), int(msg.value()[1:])))

    for i in range(first, last + 1):
        while True:
            try:
                p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    if left != 0:
        fail(f"{left} records not delivered after 60 s")
    if errors:
        fail(f"delivery errors: {errors[:3]}")
    count = sum(len(v) for v in delivered.values())
    if count != last - first + 1:
        fail(f"{count} delivery reports, wanted {last - first + 1}")
    return delivered


def consumer(group, **extra):
    conf = {
        "bootstrap.servers": BROKER,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def take(c, into, timeout=0.1):
    """One poll of consumer c; a record goes into `into` as
    (partition, offset, key, value)."""
    m = c.poll(timeout)
    if m is None:
        return
    if m.error():
        if m.error().code() == -191:  # _PARTITION_EOF
            return
        fail(f"consumer error: {m.error()}")
    into.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))


def check_once(what, records, first, last):
    seen = {}
    for p, o, k, v in records:
        if k != "k" + v[1:]:
            fail(f"{what}: key {k} with value {v}")
        seen[v] = seen.get(v, 0) + 1
    for i in range(first, last + 1):
        if seen.get(f"v{i}", 0) != 1:
            fail(f"{what}: record v{i} read {seen.get(f'v{i}', 0)} times")
    if len(seen) != last - first + 1:
        fail(f"{what}: {len(seen)} distinct records, wanted {last - first + 1}")


def main():
    create_topics("ct", "cg")

    # ---- idempotent producer: all delivered, offsets without gaps ----
    delivered = produce("ct", 1, N)
    if len(delivered) != PARTITIONS:
        fail(f"the keys went to {len(delivered)} partitions, wanted {PARTITIONS}")
    for part, reports in delivered.items():
        offsets = sorted(o for o, _ in reports)
        if offsets != list(range(len(offsets))):
            fail(f"partition {part}: offsets not 0..{len(offsets) - 1} (repeats or gaps)")
        # produced in order, so in order within the partition
        by_offset = [i for _, i in sorted(reports)]
        if by_offset != sorted(by_offset):
            fail(f"partition {part}: records out of the order produced")

    # ---- one consumer: each record once, in order per partition ----
    c = consumer("ct-reader", **{"enable.partition.eof": False})
    c.subscribe(["ct"])
    got = []
    wait_for(120, f"one consumer reading {N} records", lambda: len(got) >= N,
             lambda: take(c, got))
    c.close()
    check_once("one consumer", got, 1, N)
    last = {}
    for p, o, k, v in got:
        if p in last and (o != last[p][0] + 1 or int(v[1:]) <= last[p][1]):
            fail(f"partition {p}: offset {o} (v{v[1:]}) after {last[p]}")
        last[p] = (o, int(v[1:]))
    for part, reports in delivered.items():
        want = [(o, i) for o, i in sorted(reports)]
        have = [(o, int(v[1:])) for p, o, k, v in got if p == part]
        if have != want:
            fail(f"partition {part}: read other offsets than were delivered")

    # ---- a group of two: split, exactly once, commits, resumed ----
    assigned = {"a": [], "b": []}
    members = {}
    for name in ("a", "b"):
        m = consumer("cgroup")

        def on_assign(consumer_, parts, name=name):
            assigned[name] = sorted(tp.partition for tp in parts)

        def on_revoke(consumer_, parts, name=name):
            assigned[name] = []

        m.subscribe(["cg"], on_assign=on_assign, on_revoke=on_revoke)
        members[name] = m
    records = {"a": [], "b": []}

    def poll_both():
        for name, m in members.items():
            take(m, records[name], 0.05)

    def split():
        a, b = assigned["a"], assigned["b"]
        return a and b and sorted(a + b) == list(range(PARTITIONS))

    wait_for(120, "two members splitting 4 partitions", split, poll_both)
    produce("cg", 1, 2000)
    wait_for(120, "the two members reading 2000 records",
             lambda: len(records["a"]) + len(records["b"]) >= 2000, poll_both)
    for m in members.values():
        m.commit(asynchronous=False)
    if not records["a"] or not records["b"]:
        fail(f"a member read nothing: {len(records['a'])} and {len(records['b'])}")
    if {r[0] for r in records["a"]} & {r[0] for r in records["b"]}:
        fail("a partition was read by both members")
    check_once("two members", records["a"] + records["b"], 1, 2000)
    tps = [TopicPartition("cg", p) for p in range(PARTITIONS)]
    committed = members["a"].committed(tps, timeout=30)
    total = 0
    for tp in committed:
        low, high = members["a"].get_watermark_offsets(tp, timeout=30)
        if tp.error is not None or tp.offset != high:
            fail(f"partition {tp.partition}: committed {tp.offset} ({tp.error}), end {high}")
        total += tp.offset
    if total != 2000:
        fail(f"committed offsets add up to {total}, wanted 2000")
    for m in members.values():
        m.close()

    produce("cg", 2001, 2500)
    c = consumer("cgroup")
    c.subscribe(["cg"])
    resumed = []
    wait_for(120, "the new member reading 500 records", lambda: len(resumed) >= 500,
             lambda: take(c, resumed))
    c.close()
    check_once("the resumed member", resumed, 2001, 2500)
    print("ok")


try:
    main()
except KafkaException as e:
    fail(f"confluent-kafka: {e}")
