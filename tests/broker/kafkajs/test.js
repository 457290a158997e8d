// SPDX-License-Identifier: Apache-2.0
// spate broker against kafkajs (the pinned version of package.json), run by
// tests/broker/test_kafkajs.sh: node test.js HOST:PORT.
// - admin: a topic of 4 partitions created, described;
// - producer: keyed records over the 4 partitions, plain and gzip batches,
//   every send acknowledged with its offsets;
// - a consumer group of two members: they split the partitions (each some,
//   together all, disjointly) and together read every record exactly once,
//   with keys and values intact;
// - offsets: committed (the admin's fetchOffsets says the end of every
//   partition), and a new member of the group resumes from them, reading
//   just the records produced after.
// Waits for conditions with generous limits, never for fixed times; any
// failure throws and exits 1 with the reason on stderr.
'use strict';
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const broker = process.argv[2];
const topic = 'js';
const group = 'jg';
const partitions = 4;

function fail(why) {
    throw new Error(why);
}

// Resolves once check() is true; throws after `seconds`.
async function waitFor(seconds, what, check) {
    const end = Date.now() + seconds * 1000;
    while (!check()) {
        if (Date.now() > end)
            fail(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

const kafka = new Kafka({
    clientId: 'spate-kafkajs-test',
    brokers: [broker],
    logLevel: logLevel.ERROR,
    retry: { retries: 8 },
});

// A member of the group: what it read and the partitions it holds now.
async function member(name) {
    const m = {
        name,
        records: [],
        assigned: null,
        // A short fetch wait: a member rejoins a rebalance only between
        // fetches (kafkajs waits 5 s by default).
        consumer: kafka.consumer({
            groupId: group,
            sessionTimeout: 10000,
            heartbeatInterval: 500,
            maxWaitTimeInMs: 500,
        }),
    };
    m.consumer.on(m.consumer.events.GROUP_JOIN, (e) => {
        m.assigned = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    });
    await m.consumer.connect();
    await m.consumer.subscribe({ topic, fromBeginning: true });
    await m.consumer.run({
        eachMessage: async ({ partition, message }) => {
            m.records.push({
                partition,
                offset: Number(message.offset),
                key: message.key ? message.key.toString() : null,
                value: message.value.toString(),
            });
        },
    });
    return m;
}

// Sends records from..to (key k<i>, value v<i>) in batches of 100, every
// other batch gzip-compressed; checks every send was acknowledged.
async function produce(producer, from, to) {
    const used = new Set();
    for (let i = from; i <= to; i += 100) {
        const messages = [];
        for (let j = i; j <= Math.min(to, i + 99); j++)
            messages.push({ key: `k${j}`, value: `v${j}` });
        const compression = (i / 100) % 2 === 0 ? CompressionTypes.GZIP : CompressionTypes.None;
        const acks = await producer.send({ topic, messages, compression, acks: -1 });
        for (const a of acks) {
            if (a.errorCode !== 0)
                fail(`produce: partition ${a.partition} error ${a.errorCode}`);
            used.add(a.partition);
        }
    }
    return used;
}

// Every record from..to exactly once, keys with their values, and within a
// partition in offset order.
function checkRecords(what, records, from, to) {
    const seen = new Map();
    for (const r of records) {
        if (r.key !== `k${r.value.slice(1)}`)
            fail(`${what}: key ${r.key} with value ${r.value}`);
        seen.set(r.value, (seen.get(r.value) || 0) + 1);
    }
    for (let i = from; i <= to; i++) {
        const n = seen.get(`v${i}`) || 0;
        if (n !== 1)
            fail(`${what}: record v${i} read ${n} times`);
    }
    if (seen.size !== to - from + 1)
        fail(`${what}: ${seen.size} distinct records, wanted ${to - from + 1}`);
    const last = new Map();
    for (const r of records) {
        if (last.has(r.partition) && r.offset <= last.get(r.partition))
            fail(`${what}: partition ${r.partition} offset ${r.offset} after ${last.get(r.partition)}`);
        last.set(r.partition, r.offset);
    }
}

async function main() {
    const admin = kafka.admin();
    await admin.connect();
    if (!(await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true })))
        fail('createTopics: not created');
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    if (meta.topics[0].partitions.length !== partitions)
        fail(`metadata: ${meta.topics[0].partitions.length} partitions`);

    // Two members split the partitions before anything is produced.
    const a = await member('a');
    const b = await member('b');
    const split = () => {
        if (!a.assigned || !b.assigned || a.assigned.length === 0 || b.assigned.length === 0)
            return false;
        const all = a.assigned.concat(b.assigned).sort((x, y) => x - y);
        return all.join(',') === '0,1,2,3';
    };
    await waitFor(120, 'two members splitting 4 partitions', split);

    const producer = kafka.producer();
    await producer.connect();
    const used = await produce(producer, 1, 2000);
    if (used.size !== partitions)
        fail(`the keys went to ${used.size} partitions, wanted all ${partitions}`);
    await waitFor(120, 'the two members reading 2000 records',
        () => a.records.length + b.records.length >= 2000);
    // Stopping commits what they read.
    await a.consumer.disconnect();
    await b.consumer.disconnect();
    if (a.records.length === 0 || b.records.length === 0)
        fail(`a member read nothing: ${a.records.length} and ${b.records.length}`);
    checkRecords('two members', a.records.concat(b.records), 1, 2000);
    const fromA = new Set(a.records.map((r) => r.partition));
    for (const r of b.records) {
        if (fromA.has(r.partition))
            fail(`partition ${r.partition} read by both members`);
    }

    // What is committed is the end of every partition.
    const ends = await admin.fetchTopicOffsets(topic);
    const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const endOf = new Map(ends.map((e) => [e.partition, e.high]));
    let total = 0;
    for (const p of committed[0].partitions) {
        if (p.offset !== endOf.get(p.partition))
            fail(`partition ${p.partition}: committed ${p.offset}, end ${endOf.get(p.partition)}`);
        total += Number(p.offset);
    }
    if (total !== 2000)
        fail(`committed offsets add up to ${total}, wanted 2000`);

    // A new member resumes from the committed offsets: only the new records.
    await produce(producer, 2001, 2500);
    const c = await member('c');
    await waitFor(120, 'the new member reading 500 records', () => c.records.length >= 500);
    await c.consumer.disconnect();
    checkRecords('the resumed member', c.records, 2001, 2500);

    await producer.disconnect();
    await admin.disconnect();
    console.log('ok');
}

main().then(
    () => process.exit(0),
    (e) => {
        console.error(`FAIL: ${e.message}`);
        process.exit(1);
    });
