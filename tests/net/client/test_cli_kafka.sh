#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# spate's Kafka commands against librdkafka's mock cluster, with kcat on the
# other side: what spate produces kcat reads byte for byte and the reverse,
# with every codec; topic list works; topic create against a broker without
# CreateTopics fails with one line naming the API; an unreachable bootstrap
# server fails with one line, not a hang. Exits 77 without kcat.
# With SPATE_PEER=spate, MOCK_BROKER is tests/kafka-peers/spate_peer.sh
# (`spate broker` behind the mock's interface) and the same runs against
# spate's own endpoint, where topic create and delete must succeed: the
# topic appears in topic list with its partitions, and goes.
# Usage: test_cli_kafka.sh SPATE MOCK_BROKER
set -euo pipefail
spate=$1 mock=$2
command -v kcat >/dev/null || { echo "kcat not installed: skipping"; exit 77; }
work=$(mktemp -d)
mkfifo "$work/ctl"
"$mock" --topic cli.none:3 --topic cli.gzip:3 --topic cli.snappy:3 --topic cli.lz4:3 \
    --topic cli.zstd:3 <"$work/ctl" >"$work/bootstrap" 2>"$work/mock.log" &
mock_pid=$!
exec 3>"$work/ctl"
trap 'exec 3>&-; kill $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$work"' EXIT
# the spate peer starts a broker and creates five topics: allow it a minute
for _ in $(seq 600); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
bs=$(head -n1 "$work/bootstrap")
[ -n "$bs" ] || { echo "the peer did not start:"; cat "$work/mock.log"; exit 1; }

for c in none gzip snappy lz4 zstd; do
    # spate -> kcat
    for i in $(seq 1 200); do printf 'key-%d:value %d from spate, %s\n' "$i" "$i" "$c"; done \
        >"$work/in.$c"
    timeout 30 "$spate" produce -b "$bs" -t "cli.$c" -k : -z "$c" <"$work/in.$c" 2>"$work/err"
    grep -q '^200 records delivered' "$work/err" || { cat "$work/err"; exit 1; }
    timeout 30 kcat -C -b "$bs" -t "cli.$c" -o beginning -e -q -f '%k:%s\n' | sort >"$work/kcat.$c"
    sort "$work/in.$c" | diff -u - "$work/kcat.$c" >/dev/null ||
        { echo "codec $c: kcat read something else than spate produced"; exit 1; }
    # kcat -> spate
    for i in $(seq 1 200); do printf 'kcat-%d:from kcat %d, %s\n' "$i" "$i" "$c"; done \
        >"$work/kin.$c"
    timeout 30 kcat -P -b "$bs" -t "cli.$c" -K: -z "$c" -l "$work/kin.$c"
    timeout 30 "$spate" consume -b "$bs" -t "cli.$c" --from-beginning --count 400 -k : \
        | sort >"$work/spate.$c"
    sort "$work/in.$c" "$work/kin.$c" | diff -u - "$work/spate.$c" >/dev/null ||
        { echo "codec $c: spate read something else than was produced"; exit 1; }
    echo "codec $c: spate -> kcat and kcat -> spate, 400 records each way unchanged"
done

# A consumer group: the first member reads everything and commits as it
# leaves; the next one resumes after the commit and reads only what is new.
# (The mock holds the next join for the session timeout even after a
# LeaveGroup, kcat's too: a short session keeps the test short.)
gx=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000)
for i in $(seq 1 300); do printf 'g1-%d\n' "$i"; done >"$work/g1"
for i in $(seq 1 120); do printf 'g2-%d\n' "$i"; done >"$work/g2"
timeout 30 "$spate" produce -b "$bs" -t cli.none <"$work/g1" 2>/dev/null
timeout 60 "$spate" consume -b "$bs" -t cli.none -g cli-group "${gx[@]}" --from-beginning --count 700 \
    2>"$work/gerr" | sort >"$work/gout1" || { cat "$work/gerr"; exit 1; }
[ "$(wc -l <"$work/gout1")" = 700 ] && [ "$(grep -c '^g1-' "$work/gout1")" = 300 ] ||
    { echo "group: first member read $(wc -l <"$work/gout1") records"; exit 1; }
timeout 30 "$spate" produce -b "$bs" -t cli.none <"$work/g2" 2>/dev/null
timeout 60 "$spate" consume -b "$bs" -t cli.none -g cli-group "${gx[@]}" --count 120 2>"$work/gerr" |
    sort >"$work/gout2" || { cat "$work/gerr"; exit 1; }
sort "$work/g2" | diff -u - "$work/gout2" >/dev/null ||
    { echo "group: the second member did not resume at the commit"; head "$work/gout2"; exit 1; }
echo "consumer group: 700 records, then exactly the 120 produced after the commit"

timeout 30 "$spate" topic list -b "$bs" | grep -q '^cli.zstd	3 partitions$' ||
    { echo "topic list misses cli.zstd"; exit 1; }
if [ "${SPATE_PEER:-}" = spate ]; then
    out=$(timeout 30 "$spate" topic create -b "$bs" -t fresh -p 2 2>&1) ||
        { echo "topic create failed against spate broker: $out"; exit 1; }
    timeout 30 "$spate" topic list -b "$bs" | grep -q '^fresh	2 partitions$' ||
        { echo "topic list misses the topic just created"; exit 1; }
    if out=$(timeout 30 "$spate" topic create -b "$bs" -t fresh -p 2 2>&1); then
        echo "topic create of an existing topic succeeded?"; exit 1
    fi
    [ "$(echo "$out" | grep -c '^spate: ')" = 1 ] && echo "$out" | grep -q 'TOPIC_ALREADY_EXISTS' ||
        { echo "topic create twice: unclear failure: $out"; exit 1; }
    out=$(timeout 30 "$spate" topic delete -b "$bs" -t fresh 2>&1) ||
        { echo "topic delete failed against spate broker: $out"; exit 1; }
    if timeout 30 "$spate" topic list -b "$bs" | grep -q '^fresh	'; then
        echo "topic list still shows the deleted topic"; exit 1
    fi
    echo "topic create, list, create again (TOPIC_ALREADY_EXISTS), delete: as asked"
    # read_committed -e ends at the last stable offset while a transaction
    # is open (confluent-kafka holds one open on cli.txn), as kcat's does.
    if /usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null; then
        printf 'c1\nc2\n' | timeout 30 "$spate" produce -b "$bs" -t cli.txn 2>/dev/null
        timeout 60 /usr/bin/python3 -c '
import confluent_kafka as ck, os, sys, time
bs, ready, done = sys.argv[1:4]
p = ck.Producer({"bootstrap.servers": bs, "transactional.id": "cli-open"})
p.init_transactions(30)
p.begin_transaction()
p.produce("cli.txn", b"in-open-txn")
p.flush(30)
open(ready, "w").close()
for _ in range(300):
    if os.path.exists(done):
        break
    time.sleep(0.1)
p.abort_transaction(30)' "$bs" "$work/txn.ready" "$work/txn.done" &
        txn_pid=$!
        for _ in $(seq 300); do [ -e "$work/txn.ready" ] && break; sleep 0.1; done
        [ -e "$work/txn.ready" ] || { echo "the open transaction did not start"; exit 1; }
        out=$(timeout 20 "$spate" consume -b "$bs" -t cli.txn --from-beginning -e \
            -X isolation.level=read_committed 2>&1) ||
            { echo "consume -e read_committed did not end with a transaction open: $out"; exit 1; }
        [ "$out" = "$(printf 'c1\nc2')" ] || { echo "read_committed read: $out"; exit 1; }
        touch "$work/txn.done"
        wait "$txn_pid" || { echo "the open transaction's producer failed"; exit 1; }
        echo "consume -e read_committed: ends at the last stable offset of an open transaction"
    fi
else
    if out=$(timeout 30 "$spate" topic create -b "$bs" -t fresh -p 2 2>&1); then
        echo "topic create succeeded against a broker without CreateTopics?"; exit 1
    fi
    [ "$(echo "$out" | grep -c '^spate: ')" = 1 ] && echo "$out" | grep -q 'CreateTopics (API 19)' ||
        { echo "topic create: unclear failure: $out"; exit 1; }
    echo "topic create without CreateTopics: $out"
fi

dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s)
if out=$(timeout 60 "$spate" produce -b "127.0.0.1:$dead" -t x </dev/null 2>&1); then
    echo "produce to a dead server succeeded?"; exit 1
fi
echo "$out" | grep -q "^spate: cannot reach 127.0.0.1:$dead: Connection refused" ||
    { echo "unreachable server: unclear failure: $out"; exit 1; }
[ $(( $(date +%s) - start )) -lt 30 ] || { echo "unreachable server: too slow to fail"; exit 1; }
echo "unreachable bootstrap: $(echo "$out" | grep '^spate: ')"
