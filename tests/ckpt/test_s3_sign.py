#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""spate's S3 signatures against botocore's.

s3rver does not verify signatures, so this test checks them against the
reference: s3_capture (tests/ckpt/s3_capture.c) runs one of each S3 operation
through spate's client (libcurl's CURLOPT_AWS_SIGV4) against a local socket
server and prints each raw request; for each one, botocore's S3SigV4Auth signs
the same method, URL, headers and body at the same time (the request's
x-amz-date), and the Authorization headers must be equal byte for byte. The
payload hash spate sent (x-amz-content-sha256, OpenSSL's SHA-256) must equal
botocore's hash of the body it received.

Usage: /usr/bin/python3 test_s3_sign.py S3_CAPTURE   (exit 77: no botocore)
"""
import datetime
import subprocess
import sys
import types

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    print("botocore missing (scripts/deps test installs python3-botocore): skipping")
    sys.exit(77)

REGION = "eu-west-3"
ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# Headers libcurl sends but does not sign (nor does S3 require them signed).
UNSIGNED = {"authorization", "user-agent", "accept", "content-length", "expect",
            "x-amz-date"}


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers, body


def botocore_sign(method, target, headers, body):
    amz_date = headers["x-amz-date"]
    fixed = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDateTime)
    signed = {k: v for k, v in headers.items() if k not in UNSIGNED}
    # botocore computes x-amz-content-sha256 itself from the body.
    signed.pop("x-amz-content-sha256", None)
    request = AWSRequest(method=method, url="http://" + headers["host"] + target,
                         headers=signed, data=body)
    botocore.auth.S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION).add_auth(request)
    return request.headers["Authorization"], request.headers["X-Amz-Content-SHA256"]


def main():
    out = subprocess.run([sys.argv[1], REGION, ACCESS, SECRET], stdout=subprocess.PIPE,
                         timeout=60, check=True).stdout
    requests, pos = [], 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        marker = out[pos:nl].decode()
        assert marker.startswith("--- "), marker
        n = int(marker[4:])
        requests.append(out[nl + 1:nl + 1 + n])
        pos = nl + 1 + n
    failed = 0
    methods = set()
    for raw in requests:
        method, target, headers, body = parse(raw)
        methods.add(method)
        want, want_hash = botocore_sign(method, target, headers, body)
        got = headers.get("authorization", "")
        ok = got == want and headers.get("x-amz-content-sha256") == want_hash
        print(("ok   " if ok else "FAIL ") + method + " " + headers["host"] + target)
        if not ok:
            failed += 1
            print("  spate:    " + got)
            print("  botocore: " + want)
            print("  hash spate %s botocore %s" % (headers.get("x-amz-content-sha256"), want_hash))
    # PUT, PUT with an empty body, GET, HEAD, DELETE, LIST, and a multipart
    # upload of 3 parts (POST ?uploads, 3 PUTs, POST complete), and a PUT to
    # a virtual-hosted URL.
    if len(requests) != 12 or methods != {"PUT", "GET", "HEAD", "DELETE", "POST"}:
        print("FAIL: expected 12 requests of 5 methods, got %d: %s" % (len(requests), methods))
        failed += 1
    print("%d passed, %d failed" % (len(requests) - min(failed, len(requests)), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
