# SPDX-License-Identifier: Apache-2.0
"""Transactions against spate's Kafka endpoint with confluent-kafka-python
(Debian's python3-confluent-kafka, librdkafka underneath). Run with
/usr/bin/python3: txn_client.py BOOTSTRAP CASE. Prints what it checked and
exits non-zero on the first mismatch.

Cases:
  commit-abort  committed records are visible to a read_committed consumer,
                aborted ones are not (a read_uncommitted one sees both);
                an open transaction holds read_committed readers back until
                it commits
  offsets       send_offsets_to_transaction: the group's offsets are stored
                when the transaction commits, not when it aborts
  fence         a second producer with the same transactional.id fences the
                first, whose commit then fails
  timeout       a transaction left open past transaction.timeout.ms is
                aborted by the broker: its records never become visible,
                and records after it do
  again         the transactional id "again-txn" commits 10 more records
                (run before and after a broker restart)
  leave-open T  leaves a transaction open on topic T (its producer exits)
  check-open T  that transaction gets aborted (after a broker restart):
                never visible, later records visible
"""
import sys
import time
import uuid

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer, TopicPartition)

boot = sys.argv[1]
case = sys.argv[2]


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def producer(txid, **extra):
    conf = {"bootstrap.servers": boot, "transactional.id": txid, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read_all(topic, partitions, isolation, expect=None, timeout=20.0, group=None):
    """Every record of topic (values as str) up to the end (the last stable
    offset for read_committed) of each partition."""
    c = Consumer({"bootstrap.servers": boot,
                  "group.id": group or "reader-" + uuid.uuid4().hex,
                  "enable.auto.commit": False,
                  "auto.offset.reset": "earliest",
                  "isolation.level": isolation,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            if expect is None and len(eof) == partitions:
                break
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                if len(eof) == partitions and (expect is None or len(got) >= expect):
                    break
                continue
            fail("consumer error %s" % m.error())
        eof.discard(m.partition())
        got.append(m.value().decode())
        if expect is not None and len(got) >= expect and len(eof) == partitions:
            break
    c.close()
    return got


def produce(p, topic, values, partitions):
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), key=str(i).encode(), partition=i % partitions)
    p.flush(30)


def commit_abort():
    topic = "txn-ca"
    p = producer("ca-" + uuid.uuid4().hex)
    p.begin_transaction()
    produce(p, topic, ["c1-%d" % i for i in range(100)], 3)
    p.commit_transaction(30)
    p.begin_transaction()
    produce(p, topic, ["a-%d" % i for i in range(50)], 3)
    p.abort_transaction(30)
    p.begin_transaction()
    produce(p, topic, ["c2-%d" % i for i in range(30)], 3)
    p.commit_transaction(30)
    committed = read_all(topic, 3, "read_committed")
    want = sorted(["c1-%d" % i for i in range(100)] + ["c2-%d" % i for i in range(30)])
    if sorted(committed) != want:
        fail("read_committed saw %d records (%d aborted ones), want %d" %
             (len(committed), sum(v.startswith("a-") for v in committed), len(want)))
    print("read_committed: %d committed records, no aborted one" % len(committed))
    everything = read_all(topic, 3, "read_uncommitted")
    if len(everything) != 180:
        fail("read_uncommitted saw %d records, want 180" % len(everything))
    print("read_uncommitted: all 180 records")

    # An open transaction holds read_committed readers back.
    p.begin_transaction()
    produce(p, topic, ["o-%d" % i for i in range(20)], 3)
    p2 = Producer({"bootstrap.servers": boot})
    for i in range(9):
        p2.produce(topic, value=("plain-%d" % i).encode(), partition=i % 3)
    p2.flush(30)
    seen = read_all(topic, 3, "read_committed")
    if len(seen) != 130 or any(v.startswith(("o-", "plain-")) for v in seen):
        fail("with a transaction open, read_committed saw %d records" % len(seen))
    print("open transaction: read_committed stops at the last stable offset")
    # ListOffsets "latest" answers the last stable offset to read_committed.
    highs = {}
    for iso in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": boot, "group.id": "wm-" + iso,
                      "isolation.level": iso})
        highs[iso] = c.get_watermark_offsets(TopicPartition(topic, 0), 10)[1]
        c.close()
    if not highs["read_committed"] < highs["read_uncommitted"]:
        fail("latest offsets with a transaction open: %s" % highs)
    print("latest offset: %d for read_committed, %d for read_uncommitted" %
          (highs["read_committed"], highs["read_uncommitted"]))
    p.commit_transaction(30)
    seen = read_all(topic, 3, "read_committed")
    if len(seen) != 159:
        fail("after the commit, read_committed saw %d records, want 159" % len(seen))
    print("after its commit: the transaction's and the later plain records visible")


def offsets():
    src, dst, group = "txn-src", "txn-dst", "txn-group"
    plain = Producer({"bootstrap.servers": boot})
    for i in range(40):
        plain.produce(src, value=("in-%d" % i).encode(), partition=i % 2)
    plain.flush(30)
    c = Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.assign([TopicPartition(src, 0, 0), TopicPartition(src, 1, 0)])
    got = 0
    deadline = time.time() + 20
    while got < 40 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    if got != 40:
        fail("read %d of 40 input records" % got)
    p = producer("offs-" + uuid.uuid4().hex)
    # An aborted transaction's offsets are not stored.
    p.begin_transaction()
    produce(p, dst, ["x"], 1)
    p.send_offsets_to_transaction([TopicPartition(src, 0, 7), TopicPartition(src, 1, 9)],
                                  c.consumer_group_metadata(), 30)
    p.abort_transaction(30)
    stored = c.committed([TopicPartition(src, 0), TopicPartition(src, 1)], 10)
    if any(tp.offset >= 0 for tp in stored):
        fail("an aborted transaction stored offsets %s" % stored)
    # A committed one's are.
    p.begin_transaction()
    produce(p, dst, ["y"], 1)
    p.send_offsets_to_transaction(c.position([TopicPartition(src, 0), TopicPartition(src, 1)]),
                                  c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    stored = {tp.partition: tp.offset
              for tp in c.committed([TopicPartition(src, 0), TopicPartition(src, 1)], 10)}
    if stored != {0: 20, 1: 20}:
        fail("committed offsets %s, want {0: 20, 1: 20}" % stored)
    c.close()
    print("send_offsets_to_transaction: stored on commit (20, 20), not on abort")


def fence():
    txid = "fence-" + uuid.uuid4().hex
    topic = "txn-fence"
    p1 = producer(txid)
    p1.begin_transaction()
    produce(p1, topic, ["old-%d" % i for i in range(5)], 1)
    p2 = producer(txid)  # fences p1 (its open transaction is aborted)
    p2.begin_transaction()
    produce(p2, topic, ["new-%d" % i for i in range(5)], 1)
    p2.commit_transaction(30)
    try:
        p1.commit_transaction(10)
        fail("the fenced producer's commit succeeded")
    except KafkaException as e:
        err = e.args[0]
        print("fenced producer: %s (fatal=%s)" % (err.name(), err.fatal()))
    seen = read_all(topic, 1, "read_committed")
    if sorted(seen) != ["new-%d" % i for i in range(5)]:
        fail("read_committed saw %s" % seen)
    print("only the new producer's transaction is visible")


def timeout():
    topic = "txn-timeout"
    p = producer("to-" + uuid.uuid4().hex, **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    produce(p, topic, ["late-%d" % i for i in range(10)], 1)
    plain = Producer({"bootstrap.servers": boot})
    for i in range(5):
        plain.produce(topic, value=("after-%d" % i).encode(), partition=0)
    plain.flush(30)
    # The broker aborts it after ~2 s; then the later records are stable.
    deadline = time.time() + 30
    seen = []
    while time.time() < deadline:
        seen = read_all(topic, 1, "read_committed", timeout=3)
        if len(seen) >= 5:
            break
        time.sleep(0.5)
    if sorted(seen) != ["after-%d" % i for i in range(5)]:
        fail("after the timeout read_committed saw %s" % seen)
    print("timed-out transaction aborted by the broker; later records visible")
    try:
        p.commit_transaction(10)
        fail("committing the timed-out transaction succeeded")
    except KafkaException as e:
        print("its producer's commit fails: %s" % e.args[0].name())


def again():
    """The same transactional id on every run: 10 more committed records."""
    topic = "txn-again"
    Producer({"bootstrap.servers": boot}).list_topics(topic, 10)  # creates it
    before = len(read_all(topic, 1, "read_committed"))
    p = producer("again-txn")
    p.begin_transaction()
    produce(p, topic, ["r-%d" % i for i in range(10)], 1)
    p.commit_transaction(30)
    after = len(read_all(topic, 1, "read_committed"))
    if after != before + 10:
        fail("read_committed saw %d records, then %d" % (before, after))
    print("again-txn: %d committed records" % after)


def leave_open():
    """A transaction left open on txn-open (its producer vanishes)."""
    import os
    p = producer("open-" + uuid.uuid4().hex, **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    produce(p, sys.argv[3], ["open-%d" % i for i in range(10)], 1)
    print("left a transaction open")
    sys.stdout.flush()
    os._exit(0)


def check_open():
    """After a broker restart the transaction left open times out: aborted,
    never visible, and the records produced after it become visible."""
    plain = Producer({"bootstrap.servers": boot})
    for i in range(5):
        plain.produce(sys.argv[3], value=("after-%d" % i).encode(), partition=0)
    plain.flush(30)
    deadline = time.time() + 30
    seen = []
    while time.time() < deadline:
        seen = read_all(sys.argv[3], 1, "read_committed", timeout=3)
        if len(seen) >= 5:
            break
        time.sleep(0.3)
    if sorted(seen) != ["after-%d" % i for i in range(5)]:
        fail("read_committed saw %s" % seen)
    everything = read_all(sys.argv[3], 1, "read_uncommitted")
    if len(everything) != 15:
        fail("read_uncommitted saw %d records, want 15" % len(everything))
    print("the transaction left open across the restart was aborted; later records visible")


{"leave-open": leave_open, "check-open": check_open,
 "commit-abort": commit_abort, "offsets": offsets, "fence": fence,
 "timeout": timeout, "again": again}[case]()
print("ok", case)
