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
 * on crafted Fetch responses in test_txn_filter.c, and against spate's
 * own endpoint (SPATE_PEER=spate), which does: there the commit-and-abort
 * case reads the topic back, read_committed (spate consume and kcat) seeing
 * the committed transaction only and read_uncommitted both; the injected
 * fence skips, and a real one runs instead: while the first producer's
 * transaction is open, a second producer with the same transactional.id
 * initialises, the coordinator aborts the first's transaction and bumps
 * the epoch, and the first one's commit fails for good, its records
 * invisible to read_committed.
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

enum step { INIT, TXN1, TXN1_OFFSETS, FENCE, TXN1_COMMIT, TXN2, TXN2_ABORT, DONE };

struct txn_case {
    struct mock_peer mock;
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_producer producer;
    struct sp_kafka_producer rival; /* real fence: same transactional.id, on the same client */
    struct sp_timer timer;
    enum step step;
    unsigned produced;
    unsigned delivered;
    int results[DONE];
    char fenced_reason[160];
    bool fence_test; /* stop after the first commit, which is refused */
    bool real_fence; /* fence_test by a rival producer, not an injected error */
    bool rival_started;
    bool began;
};

/* The step after `step` in this case's flow. */
static enum step next_of(const struct txn_case *c, enum step step)
{
    switch (step) {
    case INIT:
        return TXN1;
    case TXN1:
        return !c->fence_test ? TXN1_OFFSETS : c->real_fence ? FENCE : TXN1_COMMIT;
    case TXN1_OFFSETS:
    case FENCE:
        return TXN1_COMMIT;
    case TXN1_COMMIT:
        return c->fence_test ? DONE : TXN2;
    case TXN2:
        return TXN2_ABORT;
    case TXN2_ABORT:
    case DONE:
        break;
    }
    return DONE;
}

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
    c->step = next_of(c, c->step);
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
        c->step = next_of(c, c->step);
        again(c);
        return;
    case FENCE:
        /* Once the open transaction's records are in the log, the rival
         * takes the transactional.id over. */
        if (c->delivered < RECORDS) {
            again(c);
            return;
        }
        if (!c->rival_started) {
            c->rival_started = true;
            ret = sp_kafka_producer_init(&c->rival, &c->client, delivered, c);
            SP_ASSERT(ret == 0);
            ret = sp_kafka_producer_txn_init(&c->rival, done_cb, c);
            SP_ASSERT(ret == 0);
        }
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
        if (c->rival_started)
            sp_kafka_producer_deinit(&c->rival); /* the last one in: out first */
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
}

/*
 * Reads TOPIC back at `isolation` with `spate consume` (and with kcat when
 * it is there, which must agree): how many records.
 */
static int read_back(const struct txn_case *c, const char *isolation)
{
    const char *spate = getenv("SPATE_BIN");
    assert_non_null(spate);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout 60 %s --cores 1 consume -b %s -t %s --from-beginning -e "
             "-X isolation.level=%s | wc -l",
             spate, c->mock.bootstrap, TOPIC, isolation);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int n = -1;
    if (fscanf(f, "%d", &n) != 1)
        n = -1;
    assert_int_equal(pclose(f), 0);
    if (system("command -v kcat >/dev/null") == 0) {
        snprintf(cmd, sizeof(cmd),
                 "timeout 60 kcat -C -b %s -t %s -o beginning -e -q -X isolation.level=%s | wc -l",
                 c->mock.bootstrap, TOPIC, isolation);
        f = popen(cmd, "r");
        assert_non_null(f);
        int k = -1;
        if (fscanf(f, "%d", &k) != 1)
            k = -1;
        assert_int_equal(pclose(f), 0);
        if (k != n)
            fail_msg("%s: spate consume read %d records, kcat %d", isolation, n, k);
    }
    return n;
}

/*
 * The offsets group txn.group has committed on partitions 0 and 1, as
 * confluent-kafka reads them ("P0 P1"); -2 each when it is not installed.
 */
static void committed_offsets(const struct txn_case *c, long out[2])
{
    out[0] = out[1] = -2;
    if (system("/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null") != 0)
        return;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout 60 /usr/bin/python3 -c 'import confluent_kafka as ck\n"
             "c = ck.Consumer({\"bootstrap.servers\": \"%s\", \"group.id\": "
             "\"txn.group\"})\n"
             "tps = c.committed([ck.TopicPartition(\"%s\", p) for p in (0, 1)], timeout=30)\n"
             "print(*[tp.offset for tp in tps])\n"
             "c.close()'",
             c->mock.bootstrap, TOPIC);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (fscanf(f, "%ld %ld", &out[0], &out[1]) != 2)
        out[0] = out[1] = -3;
    assert_int_equal(pclose(f), 0);
    fprintf(stderr, "txn.group's committed offsets: %ld %ld\n", out[0], out[1]);
}

static void test_commit_and_abort(void **state)
{
    (void)state;
    static struct txn_case c;
    memset(&c, 0, sizeof(c));
    run_case(&c, NULL);
    int committed = -1, all = -1;
    long offsets[2] = {-2, -2};
    if (mock_peer_is_spate()) {
        committed = read_back(&c, "read_committed");
        all = read_back(&c, "read_uncommitted");
        committed_offsets(&c, offsets);
    }
    mock_peer_stop(&c.mock);
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.results[TXN1_OFFSETS], 0);
    assert_int_equal(c.results[TXN1_COMMIT], 0);
    assert_int_equal(c.results[TXN2_ABORT], 0);
    /* Both transactions' records were acknowledged by the log. */
    assert_int_equal(c.delivered, 2 * RECORDS);
    assert_false(c.producer.fatal);
    if (mock_peer_is_spate()) {
        /* The aborted transaction is in the log, and hidden from read_committed. */
        assert_int_equal(committed, RECORDS);
        assert_int_equal(all, 2 * RECORDS);
        /* TxnOffsetCommit's offsets became the group's with the commit. */
        if (offsets[0] != -2) {
            assert_int_equal(offsets[0], 42);
            assert_int_equal(offsets[1], 7);
        }
    }
}

static void test_fenced_producer_stops_for_good(void **state)
{
    (void)state;
    static struct txn_case c;
    memset(&c, 0, sizeof(c));
    mock_peer_needs_mock();
    c.fence_test = true;
    run_case(&c, "push-errors EndTxn 47"); /* INVALID_PRODUCER_EPOCH */
    mock_peer_stop(&c.mock);
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.results[TXN1_COMMIT], -EPROTO);
    assert_true(c.producer.fatal);
    if (strstr(c.fenced_reason, "EndTxn: INVALID_PRODUCER_EPOCH") == NULL ||
        strstr(c.fenced_reason, "another producer") == NULL)
        fail_msg("fenced producer's error: '%s'", c.fenced_reason);
}

static void test_rival_producer_fences_for_real(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct txn_case c;
    memset(&c, 0, sizeof(c));
    c.fence_test = true;
    c.real_fence = true;
    run_case(&c, NULL);
    int committed = read_back(&c, "read_committed");
    int all = read_back(&c, "read_uncommitted");
    mock_peer_stop(&c.mock);
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.delivered, RECORDS); /* the open transaction's records were written */
    assert_int_equal(c.results[FENCE], 0);  /* the rival took over */
    assert_false(c.rival.fatal);
    assert_int_equal(c.results[TXN1_COMMIT], -EPROTO);
    assert_true(c.producer.fatal);
    if ((strstr(c.fenced_reason, "INVALID_PRODUCER_EPOCH") == NULL &&
         strstr(c.fenced_reason, "PRODUCER_FENCED") == NULL) ||
        strstr(c.fenced_reason, "another producer") == NULL)
        fail_msg("fenced producer's error: '%s'", c.fenced_reason);
    /* The coordinator aborted the fenced transaction: nothing committed. */
    assert_int_equal(committed, 0);
    assert_int_equal(all, RECORDS);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_and_abort),
        cmocka_unit_test(test_fenced_producer_stops_for_good),
        cmocka_unit_test(test_rival_producer_fences_for_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
