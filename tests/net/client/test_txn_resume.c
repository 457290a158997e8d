/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resuming a transaction an earlier producer left open
 * (sp_kafka_producer_txn_resume), against spate's own endpoint: the
 * committer half of a two-phase-commit sink (Flink's KafkaCommitter).
 *
 * One producer initialises a transactional id, produces into a
 * transaction, has every record acknowledged and "crashes" (it is dropped
 * without EndTxn). A second producer object resumes the transaction with
 * the same id, producer id and epoch and commits it; a third resumes it
 * again and commits (it is already committed: success, as Kafka answers a
 * repeated commit); a fourth tries to abort it (INVALID_TXN_STATE: it ended
 * the other way). Then a producer initialises the id (InitProducerId bumps
 * the epoch), leaves a second transaction open and "crashes"; a resume of
 * that one aborts it. Last, a resume of the first transaction's old epoch
 * is refused as fenced, for good and with a clear error. A read_committed
 * consumer (spate consume, and kcat when present) sees the first
 * transaction's records once and the aborted one's not at all.
 *
 * librdkafka's mock cluster neither isolates transactions nor keeps a
 * transaction's state across producers, so the case runs against spate
 * broker only (SPATE_PEER=spate); the argument checks run everywhere.
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

#define RECORDS 50
#define TOPIC "txn.resume"
#define TXN_ID "spate-txn-resume-test"
#define WAIT_STEPS_MAX 30000 /* 2 ms each: a minute per step, against a hang */

enum step {
    INIT,          /* first: InitProducerId */
    PRODUCE,       /* first: a transaction, every record acknowledged, then dropped */
    RESUME_COMMIT, /* second: resume and commit */
    RECOMMIT,      /* third: resume the committed one and commit again */
    REABORT,       /* fourth: resume the committed one and abort: refused */
    INIT2,         /* fifth: InitProducerId (epoch bump), */
    PRODUCE2,      /* a second transaction, dropped */
    RESUME_ABORT,  /* sixth: resume the second and abort it */
    STALE,         /* seventh: resume the first with its old epoch: fenced */
    DONE,
};

#define PRODUCERS 7

struct resume_case {
    struct mock_peer mock;
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_producer p[PRODUCERS]; /* one per step that needs one, in order */
    unsigned started;                      /* producers initialised (deinit in reverse) */
    struct sp_timer timer;
    enum step step;
    bool in_step; /* the step's operation was started */
    bool began;   /* PRODUCE, PRODUCE2: the transaction was begun */
    unsigned produced;
    unsigned delivered;
    unsigned waits;
    int64_t pid1, pid2;
    int16_t epoch1, epoch2;
    int results[DONE];
    int16_t codes[DONE];
    char errors[DONE][160];
};

static void advance(struct sp_timer *timer, void *ctx);

static void again(struct resume_case *c)
{
    sp_shard_timer_arm(c->shard, &c->timer, sp_now_ns() + 2 * SP_NSEC_PER_MSEC);
}

static void delivered(struct sp_kafka_producer *p, const struct sp_kafka_delivery *d, void *ctx)
{
    struct resume_case *c = ctx;
    (void)p;
    if (d->err == 0)
        c->delivered++;
}

static struct sp_kafka_producer *producer_new(struct resume_case *c)
{
    SP_ASSERT(c->started < PRODUCERS);
    struct sp_kafka_producer *p = &c->p[c->started];
    int ret = sp_kafka_producer_init(p, &c->client, delivered, c);
    SP_ASSERT(ret == 0);
    c->started++;
    return p;
}

static struct sp_kafka_producer *current(struct resume_case *c)
{
    SP_ASSERT(c->started > 0);
    return &c->p[c->started - 1];
}

static void step_done(struct sp_kafka_producer *p, int err, void *ctx)
{
    struct resume_case *c = ctx;
    c->results[c->step] = err;
    c->codes[c->step] = p->txn_error_code;
    snprintf(c->errors[c->step], sizeof(c->errors[c->step]), "%s", p->txn_error);
    c->step++;
    c->in_step = false;
    c->waits = 0;
    again(c);
}

/* Produces RECORDS into the current transaction; true once all are acknowledged. */
static bool produce_all(struct resume_case *c, struct sp_kafka_producer *p)
{
    while (c->produced < RECORDS) {
        char v[16];
        int n = snprintf(v, sizeof(v), "r%u", c->produced);
        int ret = sp_kafka_produce(p, TOPIC, strlen(TOPIC), -1, v, n, v, n, NULL, 0, -1, NULL);
        if (ret == -EAGAIN || ret == -ENOBUFS)
            return false;
        SP_ASSERT(ret == 0);
        c->produced++;
    }
    sp_kafka_producer_flush(p);
    return c->delivered == c->produced;
}

/* Starts a resumed end of (pid, epoch) on a new producer. */
static void resume_end(struct resume_case *c, int64_t pid, int16_t epoch, bool commit)
{
    struct sp_kafka_producer *p = producer_new(c);
    int ret = sp_kafka_producer_txn_resume(p, pid, epoch);
    SP_ASSERT(ret == 0);
    /* Nothing may be produced into a transaction that is not ours. */
    ret = sp_kafka_produce(p, TOPIC, strlen(TOPIC), 0, "x", 1, "x", 1, NULL, 0, -1, NULL);
    SP_ASSERT(ret == -EPROTO);
    ret = sp_kafka_producer_txn_end(p, commit, step_done, c);
    SP_ASSERT(ret == 0);
}

static void finish(struct resume_case *c)
{
    while (c->started > 0)
        sp_kafka_producer_deinit(&c->p[--c->started]); /* the last one in: out first */
    client_test_finish(&c->client, &c->timer);
}

static void advance(struct sp_timer *timer, void *ctx)
{
    struct resume_case *c = ctx;
    (void)timer;
    if (++c->waits > WAIT_STEPS_MAX) {
        fprintf(stderr, "stuck in step %d\n", (int)c->step);
        c->results[c->step] = -ETIMEDOUT;
        c->step = DONE;
    }
    if (c->in_step)
        return; /* step_done moves on */
    int ret;
    switch (c->step) {
    case INIT:
    case INIT2:
        c->in_step = true;
        ret = sp_kafka_producer_txn_init(producer_new(c), step_done, c);
        SP_ASSERT(ret == 0);
        return;
    case PRODUCE:
    case PRODUCE2: {
        struct sp_kafka_producer *p = current(c);
        if (!c->began) {
            ret = sp_kafka_producer_txn_begin(p);
            SP_ASSERT(ret == 0);
            c->began = true;
        }
        if (!produce_all(c, p)) {
            again(c);
            return;
        }
        /* Every record is in the log; the producer "crashes" before EndTxn. */
        if (c->step == PRODUCE) {
            c->pid1 = p->producer_id;
            c->epoch1 = p->producer_epoch;
        } else {
            c->pid2 = p->producer_id;
            c->epoch2 = p->producer_epoch;
        }
        c->produced = c->delivered = 0;
        c->began = false;
        c->results[c->step] = 0;
        c->step++;
        c->waits = 0;
        again(c);
        return;
    }
    case RESUME_COMMIT:
    case RECOMMIT:
        c->in_step = true;
        resume_end(c, c->pid1, c->epoch1, true);
        return;
    case REABORT:
        c->in_step = true;
        resume_end(c, c->pid1, c->epoch1, false);
        return;
    case RESUME_ABORT:
        c->in_step = true;
        resume_end(c, c->pid2, c->epoch2, false);
        return;
    case STALE:
        c->in_step = true;
        resume_end(c, c->pid1, c->epoch1, true);
        return;
    case DONE:
        finish(c);
        return;
    }
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct resume_case *c = ctx;
    c->shard = shard;
    sp_timer_init(&c->timer, advance, c);
    int ret = sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL);
    SP_ASSERT(ret == 0);
    again(c);
}

/* Reads TOPIC back at `isolation` (spate consume; kcat too when present, which must agree). */
static int read_back(const struct resume_case *c, const char *isolation)
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

static void test_resume_commits_once(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct resume_case c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"--topic", TOPIC ":3", NULL};
    assert_int_equal(mock_peer_start(&c.mock, args), 0);
    const char *const props[] = {"bootstrap.servers", c.mock.bootstrap, "transactional.id", TXN_ID,
                                 NULL};
    client_test_config(&c.config, props);
    client_test_run(start, &c);
    int committed = read_back(&c, "read_committed");
    int all = read_back(&c, "read_uncommitted");
    mock_peer_stop(&c.mock);
    for (int s = INIT; s < DONE; s++)
        fprintf(stderr, "step %d: %d %s\n", s, c.results[s], c.errors[s]);
    assert_int_equal(c.results[INIT], 0);
    assert_int_equal(c.results[PRODUCE], 0);
    assert_true(c.pid1 >= 0);
    /* The crashed producer's transaction, committed by another producer object. */
    assert_int_equal(c.results[RESUME_COMMIT], 0);
    /* Committing it again (a crash after the commit) succeeds. */
    assert_int_equal(c.results[RECOMMIT], 0);
    /* Aborting a committed transaction is refused, for good. */
    assert_int_equal(c.results[REABORT], -EPROTO);
    assert_int_equal(c.codes[REABORT], 48); /* INVALID_TXN_STATE */
    assert_int_equal(c.results[INIT2], 0);
    assert_int_equal(c.results[PRODUCE2], 0);
    assert_int_equal(c.pid2, c.pid1);
    assert_true(c.epoch2 > c.epoch1); /* InitProducerId bumped it */
    assert_int_equal(c.results[RESUME_ABORT], 0);
    /* The first epoch is fenced now: a clear, final error. */
    assert_int_equal(c.results[STALE], -EPROTO);
    if ((c.codes[STALE] != SP_KAFKA_ERR_INVALID_PRODUCER_EPOCH &&
         c.codes[STALE] != SP_KAFKA_ERR_PRODUCER_FENCED) ||
        strstr(c.errors[STALE], "EndTxn") == NULL ||
        strstr(c.errors[STALE], "transaction.timeout.ms") == NULL)
        fail_msg("stale resume's error: %d '%s'", c.codes[STALE], c.errors[STALE]);
    assert_true(c.p[PRODUCERS - 1].fatal); /* the last one made: STALE's */
    /* Exactly once: the committed transaction's records, not the aborted one's. */
    assert_int_equal(committed, RECORDS);
    assert_int_equal(all, 2 * RECORDS);
}

/* The argument and state checks, on a producer that never talks to a broker. */
static void args_start(struct sp_shard *shard, void *ctx)
{
    struct resume_case *c = ctx;
    c->shard = shard;
    int ret = sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL);
    SP_ASSERT(ret == 0);
    struct sp_kafka_producer *p = producer_new(c);
    /* Not transactional (the config has no transactional.id) yet. */
    c->results[0] = sp_kafka_producer_txn_resume(p, 1, 0);
    c->results[1] = sp_kafka_producer_txn_id_set(p, "");
    c->results[2] = sp_kafka_producer_txn_id_set(p, "an-id");
    c->results[3] = sp_kafka_producer_txn_resume(p, -1, 0);
    c->results[4] = sp_kafka_producer_txn_resume(p, 1, -1);
    c->results[5] = sp_kafka_producer_txn_resume(p, 7, 3);
    c->results[6] = sp_kafka_producer_txn_resume(p, 7, 3);   /* already in it */
    c->results[7] = sp_kafka_producer_txn_id_set(p, "late"); /* started */
    c->codes[0] = (int16_t)(p->producer_id == 7 && p->producer_epoch == 3);
    c->codes[1] = (int16_t)(strcmp(p->txn_id, "an-id") == 0);
    sp_timer_init(&c->timer, advance, c);
    c->step = DONE;
    again(c);
}

static void test_resume_arguments(void **state)
{
    (void)state;
    static struct resume_case c;
    memset(&c, 0, sizeof(c));
    /* A port nothing listens on: these checks send nothing. */
    const char *const props[] = {"bootstrap.servers", "127.0.0.1:1", NULL};
    client_test_config(&c.config, props);
    client_test_run(args_start, &c);
    assert_int_equal(c.results[0], -EINVAL);
    assert_int_equal(c.results[1], -EINVAL);
    assert_int_equal(c.results[2], 0);
    assert_int_equal(c.results[3], -EINVAL);
    assert_int_equal(c.results[4], -EINVAL);
    assert_int_equal(c.results[5], 0);
    assert_int_equal(c.results[6], -EBUSY);
    assert_int_equal(c.results[7], -EBUSY);
    assert_int_equal(c.codes[0], 1);
    assert_int_equal(c.codes[1], 1);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_arguments),
        cmocka_unit_test(test_resume_commits_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
