/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transactional producer's protocol flow against librdkafka's mock
 * cluster: FindCoordinator and InitProducerId for the transactional.id,
 * then a transaction that produces, adds consumer offsets
 * (AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit) and commits with
 * EndTxn; a second that aborts; and a fenced producer: the coordinator
 * answers INVALID_PRODUCER_EPOCH (injected: librdkafka 2.0's mock hands a
 * new producer id to every InitProducerId and never fences the old one),
 * and the producer stops with a clear, final error.
 *
 * The mock does not isolate transactions (a read_committed consumer still
 * sees aborted records), so what a transaction leaves in the log is tested
 * on crafted Fetch responses in test_txn_filter.c, not here.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client_test.h"
#include "mock_peer.h"
#include "sp_kafka_producer.h"
#include "sp_log.h"

#define RECORDS 100
#define TOPIC "txn.events"

enum step { INIT, TXN1, TXN1_OFFSETS, TXN1_COMMIT, TXN2, TXN2_ABORT, DONE };

struct txn_case {
    struct mock_peer mock;
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_producer producer;
    struct sp_timer timer;
    enum step step;
    unsigned produced;
    unsigned delivered;
    int results[DONE];
    char fenced_reason[160];
    bool fence_test; /* stop after the first commit, which is refused */
    bool began;
};

static void advance(struct sp_timer *timer, void *ctx);

static void again(struct txn_case *c)
{
    sp_shard_timer_arm(c->shard, &c->timer, sp_now_ns() + 2 * SP_NSEC_PER_MSEC);
}

static void done_cb(struct sp_kafka_producer *p, int err, void *ctx)
{
    struct txn_case *c = ctx;
    (void)p;
    c->results[c->step] = err;
    c->step = c->fence_test && c->step == TXN1_COMMIT ? DONE : c->step + 1;
    again(c);
}

static void delivered(struct sp_kafka_producer *p, const struct sp_kafka_delivery *d, void *ctx)
{
    struct txn_case *c = ctx;
    (void)p;
    if (d->err == 0)
        c->delivered++;
}

static bool produce_some(struct txn_case *c)
{
    while (c->produced < RECORDS) {
        char v[16];
        int n = snprintf(v, sizeof(v), "r%u", c->produced);
        int ret =
            sp_kafka_produce(&c->producer, TOPIC, strlen(TOPIC), -1, v, n, v, n, NULL, 0, -1, NULL);
        if (ret == -EAGAIN || ret == -ENOBUFS)
            return false;
        SP_ASSERT(ret == 0);
        c->produced++;
    }
    return true;
}

static void advance(struct sp_timer *timer, void *ctx)
{
    struct txn_case *c = ctx;
    (void)timer;
    int ret = 0;
    switch (c->step) {
    case INIT:
        return; /* done_cb moves on */
    case TXN1:
    case TXN2:
        if (!c->began) {
            ret = sp_kafka_producer_txn_begin(&c->producer);
            SP_ASSERT(ret == 0);
            c->began = true;
            c->produced = 0;
        }
        if (!produce_some(c)) {
            again(c);
            return;
        }
        c->began = false;
        c->step = c->fence_test && c->step == TXN1 ? TXN1_COMMIT : c->step + 1;
        again(c);
        return;
    case TXN1_OFFSETS: {
        const struct sp_kafka_txn_offset offsets[2] = {{0, 42}, {1, 7}};
        ret = sp_kafka_producer_txn_send_offsets(&c->producer, "txn.group", TOPIC, offsets, 2,
                                                 done_cb, c);
        if (ret == -EAGAIN)
            again(c);
        else
            SP_ASSERT(ret == 0);
        return;
    }
    case TXN1_COMMIT:
    case TXN2_ABORT:
        ret = sp_kafka_producer_txn_end(&c->producer, c->step == TXN1_COMMIT, done_cb, c);
        SP_ASSERT(ret == 0);
        return;
    case DONE:
        snprintf(c->fenced_reason, sizeof(c->fenced_reason), "%s", c->producer.txn_error);
        sp_kafka_producer_deinit(&c->producer);
        client_test_finish(&c->client, &c->timer);
        return;
    }
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct txn_case *c = ctx;
    c->shard = shard;
    sp_timer_init(&c->timer, advance, c);
    int ret = sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL);
    SP_ASSERT(ret == 0);
    ret = sp_kafka_producer_init(&c->producer, &c->client, delivered, c);
    SP_ASSERT(ret == 0);
    ret = sp_kafka_producer_txn_init(&c->producer, done_cb, c);
    SP_ASSERT(ret == 0);
}

static void run_case(struct txn_case *c, const char *inject)
{
    const char *args[] = {"--brokers", "3", "--topic", TOPIC ":4", NULL};
    assert_int_equal(mock_peer_start(&c->mock, args), 0);
    if (inject != NULL)
        assert_int_equal(mock_peer_command(&c->mock, inject), 0);
    const char *const props[] = {"bootstrap.servers", c->mock.bootstrap, "transactional.id",
                                 "spate-txn-test", NULL};
    client_test_config(&c->config, props);
    client_test_run(start, c);
    mock_peer_stop(&c->mock);
}

static void test_commit_and_abort(void **state)
{
    (void)state;
    static struct txn_case c;
    memset(&c, 0, sizeof(c));
    run_case(&c, NULL);
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.results[TXN1_OFFSETS], 0);
    assert_int_equal(c.results[TXN1_COMMIT], 0);
    assert_int_equal(c.results[TXN2_ABORT], 0);
    /* Both transactions' records were acknowledged by the log. */
    assert_int_equal(c.delivered, 2 * RECORDS);
    assert_false(c.producer.fatal);
}

static void test_fenced_producer_stops_for_good(void **state)
{
    (void)state;
    static struct txn_case c;
    memset(&c, 0, sizeof(c));
    c.fence_test = true;
    run_case(&c, "push-errors EndTxn 47"); /* INVALID_PRODUCER_EPOCH */
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.results[TXN1_COMMIT], -EPROTO);
    assert_true(c.producer.fatal);
    if (strstr(c.fenced_reason, "EndTxn: INVALID_PRODUCER_EPOCH") == NULL ||
        strstr(c.fenced_reason, "another producer") == NULL)
        fail_msg("fenced producer's error: '%s'", c.fenced_reason);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_and_abort),
        cmocka_unit_test(test_fenced_producer_stops_for_good),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
