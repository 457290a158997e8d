#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# kafka-python (Debian's python3-kafka) against spate broker's group
# coordinator, driven by test_groups.sh.
#   consume BROKER TOPIC GROUP OUT ASSIGNED: a group member with auto commit;
#       writes "partition offset value" per record to OUT and its current
#       assignment to ASSIGNED; on SIGTERM closes (committing) and exits.
#   committed BROKER TOPIC GROUP: prints "partition offset" for each
#       partition with a committed offset.
#   admin BROKER GROUP: ListGroups, DescribeGroups and OffsetFetch through
#       KafkaAdminClient; prints "listed", "state STATE", "offsets N".
#   errors BROKER: requests that must get Kafka's error codes (unknown
#       group, member, generation, bad input); prints "ok" or what failed.
import signal
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener


def consume(broker, topic, group, out_path, assigned_path):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            with open(assigned_path, "w") as f:
                f.write("")

        def on_partitions_assigned(self, assigned):
            with open(assigned_path, "w") as f:
                f.write(" ".join(str(tp.partition) for tp in sorted(assigned)) + "\n")

    c = KafkaConsumer(bootstrap_servers=broker, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=True,
                      auto_commit_interval_ms=500, session_timeout_ms=10000,
                      heartbeat_interval_ms=500, api_version_auto_timeout_ms=30000)
    c.subscribe([topic], listener=Listener())
    with open(out_path, "a", buffering=1) as out:
        while not stop:
            for tp, records in c.poll(timeout_ms=200).items():
                for rec in records:
                    out.write("%d %d %s\n" % (tp.partition, rec.offset,
                                              rec.value.decode()))
    c.close(autocommit=True)


def committed(broker, topic, group):
    c = KafkaConsumer(bootstrap_servers=broker, group_id=group,
                      enable_auto_commit=False, api_version_auto_timeout_ms=30000)
    parts = c.partitions_for_topic(topic) or set()
    for p in sorted(parts):
        off = c.committed(TopicPartition(topic, p))
        if off is not None:
            print(p, off)
    c.close(autocommit=False)


def admin(broker, group):
    from kafka import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=broker, api_version_auto_timeout_ms=30000)
    if group in [g[0] for g in a.list_consumer_groups()]:
        print("listed")
    for d in a.describe_consumer_groups([group]):
        print("state", d.state)
    print("offsets", len(a.list_consumer_group_offsets(group)))
    a.close()


def errors(broker):
    from kafka.client_async import KafkaClient
    from kafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
    from kafka.protocol.group import (HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
                                      SyncGroupRequest)
    cl = KafkaClient(bootstrap_servers=broker, api_version_auto_timeout_ms=30000)
    node = 0
    deadline = time.time() + 60
    while not cl.ready(node):
        cl.poll(timeout_ms=100)
        if time.time() > deadline:
            sys.exit("cannot connect")

    def call(req):
        fut = cl.send(node, req)
        cl.poll(future=fut, timeout_ms=30000)
        if not fut.succeeded():
            sys.exit("no answer to %r" % (req,))
        return fut.value

    bad = []

    def expect(what, got, want):
        if got != want:
            bad.append("%s: error %s, wanted %s" % (what, got, want))

    meta = b"\x00\x00\x00\x00\x00\x01\x00\x02t1\x00\x00\x00\x00"
    expect("heartbeat, unknown group",
           call(HeartbeatRequest[0]("nosuch", 1, "m")).error_code, 25)
    expect("sync, unknown member",
           call(SyncGroupRequest[0]("nosuch", 1, "m", [])).error_code, 25)
    expect("leave, unknown member",
           call(LeaveGroupRequest[0]("nosuch", "m")).error_code, 25)
    expect("join, empty group id",
           call(JoinGroupRequest[0]("", 10000, "", "consumer", [("range", meta)])).error_code, 24)
    expect("join, session timeout 1 ms",
           call(JoinGroupRequest[0]("eg", 1, "", "consumer", [("range", meta)])).error_code, 26)
    expect("join, no protocols",
           call(JoinGroupRequest[0]("eg", 10000, "", "consumer", [])).error_code, 23)
    expect("join, unknown member id",
           call(JoinGroupRequest[0]("nosuch", 10000, "who", "consumer",
                                    [("range", meta)])).error_code, 25)
    # v0 join (no MEMBER_ID_REQUIRED step): alone, it leads at once.
    j = call(JoinGroupRequest[1]("eg", 10000, 10000, "", "consumer", [("range", meta)]))
    expect("join", j.error_code, 0)
    if j.error_code == 0:
        me, gen = j.member_id, j.generation_id
        if j.leader_id != me or len(j.members) != 1:
            bad.append("join: leader %s, %d members" % (j.leader_id, len(j.members)))
        expect("heartbeat, before sync", call(HeartbeatRequest[0]("eg", gen, me)).error_code, 0)
        expect("heartbeat, wrong generation",
               call(HeartbeatRequest[0]("eg", gen + 5, me)).error_code, 22)
        expect("sync, wrong generation",
               call(SyncGroupRequest[0]("eg", gen + 5, me, [])).error_code, 22)
        s = call(SyncGroupRequest[0]("eg", gen, me, [(me, b"assignment")]))
        expect("sync", s.error_code, 0)
        if s.error_code == 0 and s.member_assignment != b"assignment":
            bad.append("sync: assignment %r" % (s.member_assignment,))
        expect("heartbeat", call(HeartbeatRequest[0]("eg", gen, me)).error_code, 0)
        c = call(OffsetCommitRequest[2]("eg", gen, me, -1,
                                        [("t1", [(0, 7, "meta"), (99, 1, "")]),
                                         ("nosuch-topic", [(0, 1, "")])]))
        codes = [p[1] for t in c.topics for p in t[1]]
        expect("commit (partition 0, 99, unknown topic)", codes, [0, 3, 3])
        c = call(OffsetCommitRequest[2]("eg", gen + 1, me, -1, [("t1", [(0, 8, "")])]))
        expect("commit, wrong generation", [p[1] for t in c.topics for p in t[1]], [22])
        c = call(OffsetCommitRequest[2]("eg", gen, me, -1, [("t1", [(1, 8, "x" * 5000)])]))
        expect("commit, metadata too large", [p[1] for t in c.topics for p in t[1]], [12])
        f = call(OffsetFetchRequest[1]("eg", [("t1", [0, 1])]))
        got = [(p[0], p[1], p[2], p[3]) for t in f.topics for p in t[1]]
        expect("fetch offsets", got, [(0, 7, "meta", 0), (1, -1, "", 0)])
        f = call(OffsetFetchRequest[2]("eg", None))
        expect("fetch all offsets", [(t[0], p[0], p[1]) for t in f.topics for p in t[1]],
               [("t1", 0, 7)])
        expect("leave", call(LeaveGroupRequest[0]("eg", me)).error_code, 0)
        expect("heartbeat, after leaving", call(HeartbeatRequest[0]("eg", gen, me)).error_code, 25)
    cl.close()
    print("ok" if not bad else "\n".join(bad))


if __name__ == "__main__":
    if sys.argv[1] == "consume":
        consume(*sys.argv[2:7])
    elif sys.argv[1] == "committed":
        committed(*sys.argv[2:5])
    elif sys.argv[1] == "admin":
        admin(*sys.argv[2:4])
    elif sys.argv[1] == "errors":
        errors(sys.argv[2])
    else:
        sys.exit("usage: test_groups.py consume|committed ...")
