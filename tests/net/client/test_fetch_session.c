/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fetch sessions (KIP-227) against a broker written here: librdkafka's
 * mock cluster grants no sessions, so the consumer always sends it full
 * Fetches (the other client tests cover that). This broker keeps sessions
 * as Kafka does: it holds each partition's fetch offset from the requests,
 * checks the epochs, applies forgotten partitions, and answers incremental
 * Fetches only for partitions with new records. It checks that no
 * incremental request repeats a partition whose offset did not change, and
 * once drops the session (FETCH_SESSION_ID_NOT_FOUND) to see the consumer
 * start a new one. Topic "t" has 3 partitions of 5 records each; when all
 * are read, 5 more arrive on partition 1 alone; then the consumer keeps
 * only partition 2, sought back two records, and the broker must see
 * partitions 0 and 1 forgotten and partition 2's last two records read again.
 *
 * Then the same consumer against spate's own endpoint (SPATE_PEER=spate:
 * `spate broker` behind tests/kafka-peers/spate_peer.sh), whose sessions
 * are real: the records come from a producer on the consumer's client,
 * and the consumer must read each exactly once in one session of
 * incremental fetches (no reset), then, narrowed to partition 2 and
 * sought back, its last two records again. The crafted case skips there
 * (it runs in client_fetch_session); the real one skips without the peer.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client_test.h"
#include "crafted_broker.h"
#include "mock_peer.h"
#include "sp_kafka_consumer.h"
#include "sp_kafka_producer.h"
#include "sp_log.h"

#define PARTITIONS 3
#define FIRST_RECORDS 5
#define MORE_RECORDS 5
#define TOTAL (PARTITIONS * FIRST_RECORDS + MORE_RECORDS)

/* ---- The broker: one session at a time, guarded by a mutex ---- */

struct session_broker {
    struct crafted_broker server;
    pthread_mutex_t lock;
    int32_t session_id; /* 0: none */
    int32_t next_epoch;
    bool in_session[PARTITIONS];
    int64_t fetch_offset[PARTITIONS];
    int64_t log_end[PARTITIONS];
    /* What the test checks. */
    int sessions_created;
    int incremental;
    int redundant; /* partitions resent with an unchanged offset */
    int bad_epochs;
    int full_sessionless;
    bool forgotten[PARTITIONS];
    bool dropped;              /* the one FETCH_SESSION_ID_NOT_FOUND was sent */
    atomic_bool consumer_done; /* all read: partition 1 grows */
};

static size_t build_records(uint8_t *buf, size_t cap, int32_t partition, int64_t from, int64_t to)
{
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.base_offset = from;
    struct sp_record_builder bld;
    SP_ASSERT(sp_record_builder_init(&bld, buf, cap, &config) == 0);
    for (int64_t o = from; o < to; o++) {
        char value[32];
        int n = snprintf(value, sizeof(value), "p%d-o%lld", partition, (long long)o);
        struct sp_record_input in = {.offset_delta = (int32_t)(o - from),
                                     .timestamp = 1700000000000 + o,
                                     .key = NULL,
                                     .key_len = -1,
                                     .value = value,
                                     .value_len = n};
        SP_ASSERT(sp_record_builder_append(&bld, &in) == 0);
    }
    size_t bytes = 0;
    SP_ASSERT(sp_record_builder_finish(&bld, NULL, &bytes) == 0);
    return bytes;
}

static void answer_fetch(struct session_broker *b, int fd, int16_t version, int32_t corr,
                         const struct sp_kafka_fetch_request *req)
{
    struct sp_kafka_fetch_response r;
    sp_kafka_fetch_response_init(&r);
    struct sp_kafka_fetch_response_partition_data pds[PARTITIONS];
    static __thread uint8_t records[PARTITIONS][4096];
    bool include[PARTITIONS] = {false};
    bool incremental = false;

    pthread_mutex_lock(&b->lock);
    if (req->session_epoch == -1) {
        b->full_sessionless++;
    } else if (req->session_epoch == 0) {
        b->session_id = 100 + b->sessions_created++;
        b->next_epoch = 1;
        memset(b->in_session, 0, sizeof(b->in_session));
        r.session_id = b->session_id;
    } else if (req->session_id != b->session_id) {
        r.error_code = 70; /* FETCH_SESSION_ID_NOT_FOUND */
    } else if (req->session_epoch != b->next_epoch) {
        b->bad_epochs++;
        r.error_code = 71; /* INVALID_FETCH_SESSION_EPOCH */
    } else if (b->incremental == 2 && !b->dropped) {
        b->dropped = true; /* evicted, as a busy broker does */
        b->session_id = 0;
        r.error_code = 70;
    } else {
        incremental = true;
        b->incremental++;
        b->next_epoch++;
        r.session_id = b->session_id;
    }
    if (r.error_code != 0) {
        pthread_mutex_unlock(&b->lock);
        crafted_send(fd, 1, version, corr, &r);
        return;
    }
    for (int32_t t = 0; t < req->topics_count; t++) {
        for (int32_t i = 0; i < req->topics[t].partitions_count; i++) {
            const struct sp_kafka_fetch_request_fetch_partition *fp = &req->topics[t].partitions[i];
            int32_t p = fp->partition;
            SP_ASSERT(p >= 0 && p < PARTITIONS);
            if (incremental && b->in_session[p] && b->fetch_offset[p] == fp->fetch_offset)
                b->redundant++;
            b->in_session[p] = req->session_epoch >= 0;
            b->fetch_offset[p] = fp->fetch_offset;
            include[p] = true; /* a full Fetch answers every partition it names */
        }
    }
    for (int32_t t = 0; t < req->forgotten_topics_data_count; t++) {
        for (int32_t i = 0; i < req->forgotten_topics_data[t].partitions_count; i++) {
            int32_t p = req->forgotten_topics_data[t].partitions[i];
            b->in_session[p] = false;
            b->forgotten[p] = true;
        }
    }
    if (atomic_load(&b->consumer_done) && b->log_end[1] == FIRST_RECORDS)
        b->log_end[1] += MORE_RECORDS;
    int32_t n = 0;
    for (int32_t p = 0; p < PARTITIONS; p++) {
        bool has_data = b->fetch_offset[p] < b->log_end[p];
        if (incremental)
            include[p] = b->in_session[p] && has_data;
        if (!include[p])
            continue;
        sp_kafka_fetch_response_partition_data_init(&pds[n]);
        pds[n].partition_index = p;
        pds[n].high_watermark = b->log_end[p];
        pds[n].last_stable_offset = b->log_end[p];
        pds[n].log_start_offset = 0;
        if (has_data) {
            size_t len =
                build_records(records[p], sizeof(records[p]), p, b->fetch_offset[p], b->log_end[p]);
            pds[n].records = (struct sp_kbytes){records[p], (int32_t)len};
        } else {
            pds[n].records = (struct sp_kbytes){records[p], 0};
        }
        n++;
    }
    pthread_mutex_unlock(&b->lock);
    if (n == 0)
        usleep(5000); /* max.wait.ms, shortened: nothing new */
    struct sp_kafka_fetch_response_fetchable_topic_response tr;
    sp_kafka_fetch_response_fetchable_topic_response_init(&tr);
    tr.topic = sp_kstr_of("t");
    tr.partitions = pds;
    tr.partitions_count = n;
    if (n > 0) {
        r.responses = &tr;
        r.responses_count = 1;
    }
    crafted_send(fd, 1, version, corr, &r);
}

static bool answer(struct crafted_broker *server, int fd, const struct sp_kafka_request_frame *f)
{
    static const int16_t keys[][2] = {{3, 12}, {18, 3}, {1, 12}};
    struct session_broker *b = server->ctx;
    int16_t v = f->header.request_api_version;
    int32_t corr = f->header.correlation_id;
    switch (f->header.request_api_key) {
    case 18:
        crafted_api_versions(fd, v, corr, keys, SP_ARRAY_LEN(keys));
        break;
    case 3:
        crafted_metadata(server, fd, v, corr, f->body, PARTITIONS);
        break;
    case 1:
        answer_fetch(b, fd, v, corr, f->body);
        break;
    default:
        fprintf(stderr, "crafted broker: unexpected API %d\n", f->header.request_api_key);
        return false;
    }
    return true;
}

/* ---- The consumer ---- */

struct session_case {
    struct session_broker *broker;
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_consumer consumer;
    struct sp_timer timer;
    int seen[PARTITIONS][FIRST_RECORDS + MORE_RECORDS];
    unsigned records;
    unsigned bad_values;
    bool narrowed;
    uint64_t narrowed_at_ns;
    uint64_t incremental_fetches;
    uint64_t resets;
};

static void on_record(struct sp_kafka_consumer *consumer, const char *topic, int32_t partition,
                      const struct sp_record *rec, void *ctx)
{
    struct session_case *c = ctx;
    (void)consumer;
    (void)topic;
    char want[32];
    int n = snprintf(want, sizeof(want), "p%d-o%lld", partition, (long long)rec->offset);
    if (rec->value_len != n || memcmp(rec->value, want, (size_t)n) != 0)
        c->bad_values++;
    if (partition >= 0 && partition < PARTITIONS && rec->offset >= 0 &&
        rec->offset < FIRST_RECORDS + MORE_RECORDS)
        c->seen[partition][rec->offset]++;
    c->records++;
}

static void check(struct sp_timer *timer, void *ctx)
{
    struct session_case *c = ctx;
    if (c->records == PARTITIONS * FIRST_RECORDS)
        atomic_store(&c->broker->consumer_done, true);
    /* Narrow only once the second session runs incrementally, so that the
     * narrowing Fetch is an incremental one (a session dropped or opened at
     * that moment would carry no forgotten list, rightly). */
    pthread_mutex_lock(&c->broker->lock);
    bool settled =
        c->broker->dropped && c->broker->sessions_created == 2 && c->broker->next_epoch >= 2;
    pthread_mutex_unlock(&c->broker->lock);
    if (c->records >= TOTAL && !c->narrowed && settled) {
        /* Keep partition 2 only: 0 and 1 leave the session. */
        sp_kafka_consumer_unassign(&c->consumer);
        assert_int_equal(sp_kafka_consumer_assign(&c->consumer, "t", 2, FIRST_RECORDS), 0);
        /* And read its last two records again: the session sends the new offset. */
        assert_int_equal(sp_kafka_consumer_seek(&c->consumer, "t", 2, FIRST_RECORDS - 2), 0);
        assert_int_equal(sp_kafka_consumer_seek(&c->consumer, "t", 0, 0), -ENOENT);
        c->narrowed = true;
        c->narrowed_at_ns = sp_now_ns();
    }
    bool forgotten;
    pthread_mutex_lock(&c->broker->lock);
    forgotten = c->broker->forgotten[0] && c->broker->forgotten[1];
    pthread_mutex_unlock(&c->broker->lock);
    if ((c->narrowed && forgotten && c->records >= TOTAL + 2) ||
        sp_now_ns() > c->narrowed_at_ns + 10 * SP_NSEC_PER_SEC) {
        c->incremental_fetches = c->consumer.incremental_fetches;
        c->resets = c->consumer.fetch_session_resets;
        sp_kafka_consumer_deinit(&c->consumer);
        client_test_finish(&c->client, &c->timer);
        return;
    }
    sp_shard_timer_arm(c->shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct session_case *c = ctx;
    c->shard = shard;
    assert_int_equal(sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL), 0);
    assert_int_equal(sp_kafka_consumer_init(&c->consumer, &c->client, on_record, NULL, c), 0);
    for (int32_t p = 0; p < PARTITIONS; p++)
        assert_int_equal(sp_kafka_consumer_assign(&c->consumer, "t", p, 0), 0);
    c->narrowed_at_ns = sp_now_ns() + 20 * SP_NSEC_PER_SEC; /* the deadline until then */
    sp_timer_init(&c->timer, check, c);
    sp_shard_timer_arm(shard, &c->timer, sp_now_ns() + SP_NSEC_PER_MSEC);
}

static void test_incremental_fetches_in_a_session(void **state)
{
    (void)state;
    if (mock_peer_is_spate())
        skip(); /* the crafted broker's case: client_fetch_session runs it */
    static struct session_broker b;
    static struct session_case c;
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&b.lock, NULL);
    for (int p = 0; p < PARTITIONS; p++)
        b.log_end[p] = FIRST_RECORDS;
    assert_int_equal(crafted_start(&b.server, answer, &b), 0);
    c.broker = &b;
    char bootstrap[64];
    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%u", b.server.port);
    const char *const props[] = {"bootstrap.servers", bootstrap, NULL};
    client_test_config(&c.config, props);
    client_test_run(start, &c);
    crafted_stop(&b.server);

    /* Every record exactly once, in order of offsets within a partition. */
    assert_int_equal(c.bad_values, 0);
    assert_int_equal(c.records, TOTAL + 2);
    for (int p = 0; p < PARTITIONS; p++)
        for (int o = 0; o < (p == 1 ? FIRST_RECORDS + MORE_RECORDS : FIRST_RECORDS); o++)
            assert_int_equal(c.seen[p][o], p == 2 && o >= FIRST_RECORDS - 2 ? 2 : 1);
    /* Sessions: two created (the first was dropped), incremental fetches
     * in them, none repeating an unchanged partition, epochs in order. */
    assert_int_equal(b.sessions_created, 2);
    assert_true(b.dropped);
    assert_true(b.incremental >= 3);
    assert_int_equal(b.redundant, 0);
    assert_int_equal(b.bad_epochs, 0);
    assert_int_equal(b.full_sessionless, 0);
    assert_true(b.forgotten[0] && b.forgotten[1]);
    assert_false(b.forgotten[2]);
    assert_true(c.incremental_fetches >= 3);
    assert_int_equal(c.resets, 1);
}

/* ---- Against spate broker ---- */

struct real_case {
    struct mock_peer peer;
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_consumer consumer;
    struct sp_kafka_producer producer;
    struct sp_timer timer;
    int seen[PARTITIONS][FIRST_RECORDS + MORE_RECORDS];
    unsigned records;
    unsigned bad_values;
    unsigned produced; /* of TOTAL: FIRST_RECORDS per partition, then MORE_RECORDS on 1 */
    unsigned delivered;
    unsigned failed;
    bool narrowed;
    uint64_t deadline_ns;
    uint64_t settle_ns; /* 0 until the last record: then a grace for duplicates */
    uint64_t incremental_at_narrow;
    uint64_t incremental_fetches;
    uint64_t resets;
};

static void real_record(struct sp_kafka_consumer *consumer, const char *topic, int32_t partition,
                        const struct sp_record *rec, void *ctx)
{
    struct real_case *c = ctx;
    (void)consumer;
    (void)topic;
    char want[32];
    int n = snprintf(want, sizeof(want), "p%d-o%lld", partition, (long long)rec->offset);
    if (rec->value_len != n || memcmp(rec->value, want, (size_t)n) != 0)
        c->bad_values++;
    if (partition >= 0 && partition < PARTITIONS && rec->offset >= 0 &&
        rec->offset < FIRST_RECORDS + MORE_RECORDS)
        c->seen[partition][rec->offset]++;
    c->records++;
}

static void real_delivered(struct sp_kafka_producer *p, const struct sp_kafka_delivery *d,
                           void *ctx)
{
    struct real_case *c = ctx;
    (void)p;
    if (d->err == 0)
        c->delivered++;
    else
        c->failed++;
}

/* Produces records up to `limit` in order: record i is p(i / 5)'s offset i % 5, then p1's. */
static void real_produce(struct real_case *c, unsigned limit)
{
    while (c->produced < limit) {
        unsigned i = c->produced;
        int32_t partition = i < PARTITIONS * FIRST_RECORDS ? (int32_t)(i / FIRST_RECORDS) : 1;
        int64_t offset =
            i < PARTITIONS * FIRST_RECORDS ? i % FIRST_RECORDS : FIRST_RECORDS + i % FIRST_RECORDS;
        char value[32];
        int n = snprintf(value, sizeof(value), "p%d-o%lld", partition, (long long)offset);
        int ret = sp_kafka_produce(&c->producer, "t", 1, partition, NULL, -1, value, n, NULL, 0, -1,
                                   NULL);
        if (ret == -EAGAIN || ret == -ENOBUFS)
            return; /* metadata or memory: the next check */
        assert_int_equal(ret, 0);
        c->produced++;
    }
}

static void real_check(struct sp_timer *timer, void *ctx)
{
    struct real_case *c = ctx;
    uint64_t now = sp_now_ns();
    real_produce(c, PARTITIONS * FIRST_RECORDS);
    /* All of the first records read: more arrive on partition 1 alone. */
    if (c->records >= PARTITIONS * FIRST_RECORDS)
        real_produce(c, TOTAL);
    if (c->records >= TOTAL && !c->narrowed && c->consumer.incremental_fetches >= 3) {
        /* Keep partition 2 only, and read its last two records again. */
        sp_kafka_consumer_unassign(&c->consumer);
        assert_int_equal(sp_kafka_consumer_assign(&c->consumer, "t", 2, FIRST_RECORDS), 0);
        assert_int_equal(sp_kafka_consumer_seek(&c->consumer, "t", 2, FIRST_RECORDS - 2), 0);
        c->narrowed = true;
        c->incremental_at_narrow = c->consumer.incremental_fetches;
    }
    if (c->narrowed && c->records >= TOTAL + 2 &&
        c->consumer.incremental_fetches > c->incremental_at_narrow + 1 && c->settle_ns == 0)
        c->settle_ns = now + 200 * SP_NSEC_PER_MSEC;
    if ((c->settle_ns != 0 && now >= c->settle_ns) || now > c->deadline_ns) {
        c->incremental_fetches = c->consumer.incremental_fetches;
        c->resets = c->consumer.fetch_session_resets;
        sp_kafka_producer_deinit(&c->producer); /* the last one in: out first */
        sp_kafka_consumer_deinit(&c->consumer);
        client_test_finish(&c->client, &c->timer);
        return;
    }
    sp_shard_timer_arm(c->shard, timer, now + SP_NSEC_PER_MSEC);
}

static void real_start(struct sp_shard *shard, void *ctx)
{
    struct real_case *c = ctx;
    c->shard = shard;
    assert_int_equal(sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL), 0);
    assert_int_equal(sp_kafka_consumer_init(&c->consumer, &c->client, real_record, NULL, c), 0);
    assert_int_equal(sp_kafka_producer_init(&c->producer, &c->client, real_delivered, c), 0);
    for (int32_t p = 0; p < PARTITIONS; p++)
        assert_int_equal(sp_kafka_consumer_assign(&c->consumer, "t", p, 0), 0);
    c->deadline_ns = sp_now_ns() + 30 * SP_NSEC_PER_SEC;
    sp_timer_init(&c->timer, real_check, c);
    sp_shard_timer_arm(shard, &c->timer, sp_now_ns() + SP_NSEC_PER_MSEC);
}

static void test_incremental_fetches_against_spate_broker(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct real_case c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"--topic", "t:3", NULL};
    assert_int_equal(mock_peer_start(&c.peer, args), 0);
    const char *const props[] = {
        "bootstrap.servers", c.peer.bootstrap, "fetch.max.wait.ms", "100", "linger.ms", "1", NULL};
    client_test_config(&c.config, props);
    client_test_run(real_start, &c);
    mock_peer_stop(&c.peer);

    assert_int_equal(c.failed, 0);
    assert_int_equal(c.delivered, TOTAL);
    assert_int_equal(c.bad_values, 0);
    assert_true(c.narrowed);
    assert_int_equal(c.records, TOTAL + 2);
    for (int p = 0; p < PARTITIONS; p++)
        for (int o = 0; o < (p == 1 ? FIRST_RECORDS + MORE_RECORDS : FIRST_RECORDS); o++)
            assert_int_equal(c.seen[p][o], p == 2 && o >= FIRST_RECORDS - 2 ? 2 : 1);
    /* One session throughout: incremental fetches, before and after the narrowing. */
    assert_true(c.incremental_fetches >= 5);
    assert_int_equal(c.resets, 0);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incremental_fetches_in_a_session),
        cmocka_unit_test(test_incremental_fetches_against_spate_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
