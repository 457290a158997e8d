#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# test_admin.sh's client: Kafka admin requests to spate broker through
# kafka-python (Debian's python3-kafka), and DeleteRecords as a raw v0 frame
# (kafka-python 2.0 has no delete_records). Prints what the broker answered.
# Usage: admin_client.py HOST:PORT COMMAND [ARGS...]
import socket
import struct
import sys


def admin(bootstrap):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="spate-test",
                            request_timeout_ms=30000)


def delete_records(bootstrap, topic, partition, offset):
    """DeleteRecords v0 for one partition: prints 'error low_watermark'."""
    host, port = bootstrap.rsplit(":", 1)
    name = topic.encode()
    client = b"spate-test"
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">iiq", 1, partition, offset) + struct.pack(">i", 30000)
    header = struct.pack(">hhih", 21, 0, 7, len(client)) + client
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_all(s, 4))[0]
        resp = recv_all(s, size)
    corr, _throttle, topics = struct.unpack_from(">iii", resp, 0)
    assert corr == 7 and topics == 1, (corr, topics)
    at = 12
    nlen = struct.unpack_from(">h", resp, at)[0]
    at += 2
    assert resp[at:at + nlen] == name
    at += nlen
    parts, index, low, err = struct.unpack_from(">iiqh", resp, at)
    assert parts == 1 and index == partition, (parts, index)
    print(err, low)


def recv_all(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("the broker closed the connection")
        out += chunk
    return out


def main():
    bootstrap, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if cmd == "delete-records":
        delete_records(bootstrap, args[0], int(args[1]), int(args[2]))
        return
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    from kafka.errors import KafkaError
    a = admin(bootstrap)
    try:
        if cmd == "create":
            a.create_topics([NewTopic(args[0], int(args[1]), 1)])
            print("created")
        elif cmd == "list":
            print("\n".join(sorted(a.list_topics())))
        elif cmd == "describe-topic":
            for r in a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args[0])]):
                for res in r.resources:
                    err, _msg, _rtype, _rname, configs = res[:5]
                    print("error", err)
                    for c in configs:
                        print(c[0], c[1])
        elif cmd == "describe-broker":
            for r in a.describe_configs([ConfigResource(ConfigResourceType.BROKER, args[0])]):
                for res in r.resources:
                    print("error", res[0])
                    for c in res[4]:
                        print(c[0], c[1])
        elif cmd == "partitions":
            try:
                a.create_partitions({args[0]: NewPartitions(int(args[1]))},
                                    validate_only=len(args) > 2 and args[2] == "validate")
                print("ok")
            except KafkaError as e:
                print("error", type(e).__name__)
        elif cmd == "delete":
            try:
                a.delete_topics(args)
                print("deleted")
            except KafkaError as e:
                print("error", type(e).__name__)
        elif cmd == "cluster":
            c = a.describe_cluster()
            print("cluster", c["cluster_id"], "controller", c["controller_id"],
                  "brokers", len(c["brokers"]))
        else:
            sys.exit("unknown command " + cmd)
    finally:
        a.close()


if __name__ == "__main__":
    main()
