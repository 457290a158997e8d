# SPDX-License-Identifier: Apache-2.0
# Sourced by the tests that need s3rver, a real S3-compatible server from
# the npm registry. s3rver_setup WORKDIR DIR installs the version pinned in
# tests/ckpt/s3rver/ (npm_pinned: `npm ci` into WORKDIR/s3rver, only when
# the lock file changed; skips with 77 without node, npm or the registry),
# picks a free port on 127.0.0.1 and writes DIR/start.sh and DIR/stop.sh:
# start.sh starts it (data in DIR/data, bucket $s3_bucket made, its default
# key and secret S3RVER, log in DIR/s3rver.log) and waits until it answers,
# at most 30 s; stop.sh stops it. Both may run again (the same data and
# port): a test stops and restarts it. Sets $s3_port and $s3_bucket.
s3rver_setup() { # workdir dir
    local work=$1 dir=$2
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    . "$here/../npm_pinned.sh"
    npm_pinned s3rver "$here/s3rver" "$work"
    mkdir -p "$dir/data"
    s3_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    s3_bucket=spate-ckpt
    # s3rver's LIST continuation tokens are DES-encrypted, which Node's
    # OpenSSL 3 has only in its legacy provider.
    cat >"$dir/start.sh" <<EOS
#!/usr/bin/env bash
set -eu
node --openssl-legacy-provider "$js/node_modules/s3rver/bin/s3rver.js" --directory "$dir/data" --address 127.0.0.1 \\
    --port $s3_port --configure-bucket $s3_bucket >>"$dir/s3rver.log" 2>&1 </dev/null &
echo \$! >"$dir/pid"
for _ in \$(seq 300); do
    if (exec 3<>/dev/tcp/127.0.0.1/$s3_port) 2>/dev/null; then exit 0; fi
    kill -0 \$(cat "$dir/pid") 2>/dev/null || { echo "s3rver exited" >&2; tail -20 "$dir/s3rver.log" >&2; exit 1; }
    sleep 0.1
done
echo "s3rver did not start in 30 s" >&2
exit 1
EOS
    cat >"$dir/stop.sh" <<EOS
#!/usr/bin/env bash
set -eu
[ -f "$dir/pid" ] || exit 0
pid=\$(cat "$dir/pid")
kill "\$pid" 2>/dev/null || true
for _ in \$(seq 100); do kill -0 "\$pid" 2>/dev/null || { rm -f "$dir/pid"; exit 0; }; sleep 0.1; done
kill -9 "\$pid"; rm -f "$dir/pid"
EOS
    chmod +x "$dir/start.sh" "$dir/stop.sh"
}
