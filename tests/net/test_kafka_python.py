#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kafka-python reads what spate encodes.

For every frame of a folder written by kafka_write_frames (a request and a
response for every API and version spate generates, random content), where
kafka-python 2.0.2 has a schema for that API and version: its decoder must
read the body to the last byte, and its encoder must write the decoded
object back to the very same bytes. That is a second, independent
implementation agreeing with spate's codec, for versions tshark 4.0 cannot
check (see test_tshark.sh). Exits 77 (skip) when kafka-python is missing.

Usage: test_kafka_python.py KAFKA_WRITE_FRAMES
"""
import importlib
import inspect
import io
import os
import pkgutil
import struct
import subprocess
import sys
import tempfile

try:
    import kafka.protocol
    from kafka.protocol.api import Request, Response
except ImportError:
    print("kafka-python not importable here: skipping")
    sys.exit(77)


# Where kafka-python 2.0.2's schema departs from Kafka's own definitions
# (../shared/kafka-protocol/messages): frames of these are not its to judge.
KAFKA_PYTHON_BUGS = {
    (0, 8, False): "ProduceResponse v8 lacks RecordErrors and ErrorMessage (Kafka: 8+)",
    (1, 7, True): "FetchRequest v7+ ForgottenTopicsData: String class for an instance",
    (1, 8, True): "same",
    (1, 9, True): "same",
    (1, 10, True): "same",
    (1, 11, True): "same",
    (2, 4, True): "ListOffsetsRequest v4+ CurrentLeaderEpoch as int64 (Kafka: int32)",
    (2, 5, True): "same",
    (10, 1, False): "FindCoordinatorResponse v1 lacks ThrottleTimeMs (Kafka: 1+)",
    (15, 3, False): "DescribeGroupsResponse v3 lacks AuthorizedOperations (Kafka: 3+)",
    (32, 1, False): "DescribeConfigsResponse v1 keeps v0's IsDefault, lacks ConfigSource (1+)",
    (32, 2, False): "same",
}


def schemas():
    found = {}
    for m in pkgutil.iter_modules(kafka.protocol.__path__):
        mod = importlib.import_module("kafka.protocol." + m.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls in (Request, Response) or not issubclass(cls, (Request, Response)):
                continue
            try:
                key = (cls.API_KEY, cls.API_VERSION, issubclass(cls, Request))
            except AttributeError:
                continue
            found[key] = cls
    return found


def body_of(frame, is_request):
    """The body after the size prefix and a v1 request / v0 response header."""
    data = frame[4:]
    if not is_request:
        return data[4:]
    (client_len,) = struct.unpack(">h", data[8:10])
    return data[10 + max(client_len, 0):]


def main():
    writer = sys.argv[1]
    classes = schemas()
    checked, failed = 0, []
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([writer, work, "11"], check=True)
        with open(os.path.join(work, "manifest.txt")) as f:
            rows = [l.rstrip("\n").split("\t") for l in f if not l.startswith("#")]
        for name, direction, key, version, *_ in rows:
            is_request = direction == "req"
            cls = classes.get((int(key), int(version), is_request))
            if cls is None or (int(key), int(version), is_request) in KAFKA_PYTHON_BUGS:
                continue
            with open(os.path.join(work, name), "rb") as f:
                body = body_of(f.read(), is_request)
            try:
                buf = io.BytesIO(body)
                obj = cls.decode(buf)
                if buf.tell() != len(body):
                    raise ValueError("read %d of %d bytes" % (buf.tell(), len(body)))
                again = obj.encode()
                if again != body:
                    raise ValueError("re-encoding differs")
            except Exception as e:  # any failure of the peer's reading is ours to report
                failed.append("%s: %s: %s" % (name, type(e).__name__, e))
            checked += 1
    print("kafka-python decoded and re-encoded %d spate frames, %d failed" % (checked, len(failed)))
    for f in failed[:20]:
        print("  " + f)
    return 1 if failed or checked < 100 else 0


if __name__ == "__main__":
    sys.exit(main())
