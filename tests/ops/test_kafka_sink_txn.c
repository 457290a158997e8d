/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka sink's exactly-once protocol (ops/kafka_sink.c) on its own:
 * the sink's code is compiled into this test with the executor faked
 * around it (checkpoint puts, holds, done notifications, restores, the
 * sink's block and done calls), against spate broker (SPATE_PEER=spate,
 * tests/kafka-peers/spate_peer.sh) on one shard, and read back with
 * `spate consume` at read_committed and read_uncommitted.
 *
 * Run 1 writes 100 rows, takes barrier 1 (one transaction listed, the
 * checkpoint held until the rows are acknowledged), 50 rows, barrier 2,
 * completes checkpoint 1 (its transaction commits: 100 rows visible), then
 * writes 30 rows that no checkpoint covers and "crashes" (its producers
 * dropped, nothing ended). Run 2 restores checkpoint 2: it resumes and
 * commits both listed transactions (the first one again) and initialises
 * the other ids, which aborts the 30: 150 rows visible, 180 in the log; it
 * "crashes" at once. Run 3 restores checkpoint 2 under another prefix from
 * two old shards (old shard 1's ids belong to this shard now): the listed
 * transactions are resumed by the restore's own producers, the old
 * shard's ids initialised, and those producers released. Run 4 restores
 * checkpoint 2 again: both resumes succeed (the restored slots kept their
 * epochs); it writes 20 rows, completes checkpoint 3 (170 visible), then
 * checkpoints 4 to 6 of 10 rows each, the last one on a committed slot
 * reused as it is (same producer id and epoch: 200 visible), ends, and
 * reports done only after the checkpoint it asked for completed. Run
 * 5 restores checkpoint 2 once more, now that run 4 reused and
 * re-initialised its ids: the resume is refused as fenced and the job
 * fails, naming transaction.timeout.ms.
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

/* The sink's stop hook is called by the test ("crash"), not by the runtime. */
#define sp_shard_on_stop fake_on_stop
#include "kafka_sink.c"
#undef sp_shard_on_stop

#include "../net/client/mock_peer.h"
#include "sp_runtime.h"

#define TOPIC "sink.txn"
#define PUTS_MAX 256
#define WAIT_TICKS_MAX 30000 /* 2 ms each: a minute per step, against a hang */

/* ---- The executor, faked ---- */

struct put {
    uint64_t id;
    char key[64];
    char value[512];
    uint32_t len;
};

static struct {
    bool enabled;
    bool restoring;
    uint64_t restore_from;
    uint32_t restored_shards;
    uint64_t current; /* the checkpoint whose barrier is being taken */
    struct put puts[PUTS_MAX];
    unsigned nputs;
    int holds[16];
    unsigned released_ok[16];
    unsigned released_err[16];
    unsigned requests;
    bool failed;
    char error[SP_JOB_ERROR_BYTES];
    bool blocked;
    bool done;
    uint64_t counted;
    struct sp_stop_hook *hook;
} fk;

void fake_on_stop(struct sp_shard *shard, struct sp_stop_hook *hook,
                  void (*fn)(struct sp_stop_hook *hook, struct sp_shard *shard))
{
    (void)shard;
    hook->fn = fn;
    fk.hook = hook;
}

bool sp_ckpt_enabled(const struct sp_xshard *xs)
{
    (void)xs;
    return fk.enabled;
}

bool sp_ckpt_restoring(const struct sp_xshard *xs)
{
    (void)xs;
    return fk.restoring;
}

uint64_t sp_ckpt_restored_id(const struct sp_xshard *xs)
{
    (void)xs;
    return fk.restoring ? fk.restore_from : 0;
}

uint32_t sp_ckpt_restored_shards(const struct sp_xshard *xs)
{
    (void)xs;
    return fk.restoring ? fk.restored_shards : 0;
}

int sp_ckpt_put(struct sp_xshard *xs, const struct sp_node *node, const char *key,
                const void *value, uint32_t len)
{
    (void)xs;
    (void)node;
    SP_ASSERT(fk.nputs < PUTS_MAX);
    SP_ASSERT(len < sizeof(fk.puts[0].value));
    struct put *p = &fk.puts[fk.nputs++];
    p->id = fk.current;
    snprintf(p->key, sizeof(p->key), "%s", key);
    memcpy(p->value, value, len);
    p->value[len] = '\0';
    p->len = len;
    return 0;
}

int sp_ckpt_foreach(struct sp_xshard *xs, const struct sp_node *node,
                    void (*fn)(void *ctx, const char *key, const void *value, uint32_t len),
                    void *ctx)
{
    (void)xs;
    (void)node;
    int n = 0;
    for (unsigned i = 0; fk.restoring && i < fk.nputs; i++)
        if (fk.puts[i].id == fk.restore_from) {
            fn(ctx, fk.puts[i].key, fk.puts[i].value, fk.puts[i].len);
            n++;
        }
    return n;
}

void sp_ckpt_hold(struct sp_xshard *xs, uint64_t id)
{
    (void)xs;
    SP_ASSERT(id < 16);
    fk.holds[id]++;
}

void sp_ckpt_release(struct sp_xshard *xs, uint64_t id, int err)
{
    (void)xs;
    SP_ASSERT(id < 16);
    SP_ASSERT(fk.holds[id] > 0);
    fk.holds[id]--;
    if (err < 0)
        fk.released_err[id]++;
    else
        fk.released_ok[id]++;
}

void sp_ckpt_request(struct sp_xshard *xs)
{
    (void)xs;
    fk.requests++;
}

void sp_exec_fail(struct sp_xshard *xs, int err, const char *fmt, ...)
{
    (void)xs;
    (void)err;
    if (fk.failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fk.error, sizeof(fk.error), fmt, ap);
    va_end(ap);
    fk.failed = true;
    fprintf(stderr, "job failed: %s\n", fk.error);
}

bool sp_exec_failed(const struct sp_xshard *xs)
{
    (void)xs;
    return fk.failed;
}

void sp_sink_block(struct sp_inst *inst)
{
    (void)inst;
    fk.blocked = true;
}

void sp_sink_unblock(struct sp_inst *inst)
{
    (void)inst;
    fk.blocked = false;
}

void sp_sink_count(struct sp_inst *inst, uint64_t rows)
{
    (void)inst;
    fk.counted += rows;
}

void sp_sink_done(struct sp_inst *inst)
{
    (void)inst;
    SP_ASSERT(!fk.done);
    fk.done = true;
}

/* The sink's job-building side: called only through sp_sink_kafka, not here. */
void sp_job_add_sink(struct sp_stream *in, const char *name, const struct sp_op_vt *vt,
                     void *config, void (*config_free)(void *config))
{
    (void)in;
    (void)name;
    (void)vt;
    (void)config;
    (void)config_free;
}

void sp_job_set_error(struct sp_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    job->failed = true;
}

struct sp_job *sp_stream_job(struct sp_stream *s)
{
    return s->job;
}

const struct sp_schema *sp_stream_schema(struct sp_stream *s)
{
    (void)s;
    return NULL;
}

int sp_schema_find(const struct sp_schema *schema, const char *name)
{
    (void)schema;
    (void)name;
    return -1;
}

/* Rows are one int64; the value is its decimal text. */
int sp_serde_encode(enum sp_format format, const struct sp_schema *schema, const void *row,
                    char *buf, size_t cap)
{
    (void)format;
    (void)schema;
    int64_t v;
    memcpy(&v, row, sizeof(v));
    int n = snprintf(buf, cap, "%lld", (long long)v);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

/* ---- The runs ---- */

enum step {
    R1_OPEN,
    R1_BARRIER1,
    R1_BARRIER2,
    R1_DONE1,
    R1_UNCOVERED,
    R1_CRASH,
    R2_RESTORE,
    R2_CRASH,
    R3_RESTORE,
    R3_STOP,
    R4_RESTORE,
    R4_WRITE,
    R4_DONE3,
    R4_REUSE,
    R4_END,
    R4_STOP,
    R5_RESTORE,
    R5_STOP,
    STEPS,
};

struct sink_case {
    struct mock_peer mock;
    struct sp_shard *shard;
    struct sp_timer timer;
    struct ksk_config config;
    struct ksk_config config_other; /* another prefix */
    struct sp_job job;
    struct sp_schema schema;
    struct sp_node node;
    struct sp_xshard xs;
    struct sp_inst inst;
    bool up;      /* the instance is open */
    bool pending; /* the step's action ran; waiting for its condition */
    enum step step;
    unsigned ticks;
    int64_t next_value;
    uint64_t loop;      /* R4_REUSE's checkpoint */
    int visible[STEPS]; /* read_committed rows after the step, -1 when not read */
    int all[STEPS];
    bool ok[STEPS];
    char error[STEPS][SP_JOB_ERROR_BYTES];
    uint8_t batch_mem[64 << 10] __attribute__((aligned(16)));
};

static void tick(struct sp_timer *timer, void *ctx);

static void again(struct sink_case *c)
{
    sp_shard_timer_arm(c->shard, &c->timer, sp_now_ns() + 2 * SP_NSEC_PER_MSEC);
}

static struct ksk *sink(struct sink_case *c)
{
    return c->inst.state;
}

/* Pushes `n` rows (values next_value...) as one batch. */
static void push_rows(struct sink_case *c, unsigned n)
{
    struct sp_batch *b = (struct sp_batch *)c->batch_mem;
    sp_batch_reset(b, sizeof(int64_t), sizeof(c->batch_mem));
    SP_ASSERT(n <= sp_batch_capacity(sizeof(c->batch_mem), sizeof(int64_t)));
    for (unsigned i = 0; i < n; i++) {
        uint8_t *slot = sp_batch_slot(b, i);
        int64_t ts = 1000 + c->next_value, v = c->next_value++;
        memcpy(slot, &ts, sizeof(ts));
        memcpy(slot + 8, &v, sizeof(v));
        b->count++;
    }
    kafka_sink_vt.push(&c->inst, 0, b);
}

static void barrier(struct sink_case *c, uint64_t id)
{
    fk.current = id;
    kafka_sink_vt.barrier(&c->inst, id);
}

static void open_sink(struct sink_case *c, const struct ksk_config *config, bool restoring,
                      uint64_t from, uint32_t old_shards)
{
    fk.restoring = restoring;
    fk.restore_from = from;
    fk.restored_shards = old_shards;
    fk.done = false;
    memset(&c->node, 0, sizeof(c->node));
    c->node.kind = SP_NODE_SINK;
    c->node.id = 3;
    c->node.name = "kafka";
    c->node.u.sink.config = (void *)config;
    memset(&c->xs, 0, sizeof(c->xs));
    c->xs.shard = c->shard;
    memset(&c->inst, 0, sizeof(c->inst));
    c->inst.vt = &kafka_sink_vt;
    c->inst.node = &c->node;
    c->inst.xs = &c->xs;
    int rc = kafka_sink_vt.open(&c->inst);
    SP_ASSERT(rc == 0);
    if (restoring) {
        rc = kafka_sink_vt.restored(&c->inst);
        SP_ASSERT(rc == 0 || fk.failed);
    }
    c->up = true;
}

/* The shard's stop, for this sink only: its stop hook, then close once the client is idle. */
static bool close_sink(struct sink_case *c)
{
    if (!c->up)
        return true;
    struct ksk *s = sink(c);
    if (!s->closing)
        fk.hook->fn(fk.hook, c->shard);
    if (s->client_up && !sp_kafka_client_idle(&s->client))
        return false;
    kafka_sink_vt.close(&c->inst);
    c->up = false;
    return true;
}

/* Reads the topic back at `isolation` with `spate consume`: how many records. */
static int read_back(const struct sink_case *c, const char *isolation)
{
    const char *spate = getenv("SPATE_BIN");
    SP_ASSERT(spate != NULL);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout 60 %s --cores 1 consume -b %s -t %s --from-beginning -e "
             "-X isolation.level=%s | wc -l",
             spate, c->mock.bootstrap, TOPIC, isolation);
    FILE *f = popen(cmd, "r");
    SP_ASSERT(f != NULL);
    int n = -1;
    if (fscanf(f, "%d", &n) != 1)
        n = -1;
    pclose(f);
    return n;
}

static bool slots_ready(const struct ksk *s)
{
    for (uint32_t i = 0; i < s->slot_count; i++)
        if (s->slots[i].state == SLOT_UNINIT || s->slots[i].state == SLOT_INITING ||
            s->slots[i].state == SLOT_RESUMING)
            return false;
    return s->recovering == 0;
}

static bool all_acked(const struct ksk *s)
{
    return s->acked + s->failed == s->produced && s->backlog_len == s->backlog_read;
}

/* The step's condition holds: record what it shows and go on. */
static void next(struct sink_case *c, bool ok)
{
    c->ok[c->step] = ok;
    snprintf(c->error[c->step], sizeof(c->error[c->step]), "%s", fk.error);
    c->step++;
    c->pending = false;
    c->ticks = 0;
}

static void read_now(struct sink_case *c)
{
    c->visible[c->step] = read_back(c, "read_committed");
    c->all[c->step] = read_back(c, "read_uncommitted");
}

static void tick(struct sp_timer *timer, void *ctx)
{
    struct sink_case *c = ctx;
    (void)timer;
    if (++c->ticks > WAIT_TICKS_MAX) {
        fprintf(stderr, "stuck in step %d\n", (int)c->step);
        fk.failed = true;
        c->step = STEPS;
    }
    struct ksk *s = c->up ? sink(c) : NULL;
    switch (c->step) {
    case R1_OPEN:
        if (!c->pending) {
            open_sink(c, &c->config, false, 0, 0);
            c->pending = true;
        } else if (slots_ready(s) && s->topic->known) {
            next(c, s->ready);
        }
        break;
    case R1_BARRIER1:
    case R1_BARRIER2: {
        uint64_t id = c->step == R1_BARRIER1 ? 1 : 2;
        if (!c->pending) {
            push_rows(c, id == 1 ? 100 : 50);
            barrier(c, id);
            c->pending = true;
        } else if (fk.holds[id] == 0) {
            next(c, fk.released_err[id] == 0);
        }
        break;
    }
    case R1_DONE1:
        if (!c->pending) {
            kafka_sink_vt.checkpoint_done(&c->inst, 1);
            c->pending = true;
        } else if (s->committed_txns == 1) {
            read_now(c);
            next(c, true);
            break;
        }
        break;
    case R1_UNCOVERED:
        if (!c->pending) {
            push_rows(c, 30);
            ksk_flush(s);
            c->pending = true;
        } else if (all_acked(s)) {
            next(c, true);
        }
        break;
    case R1_CRASH:
    case R2_CRASH:
    case R3_STOP:
    case R4_STOP:
    case R5_STOP:
        if (close_sink(c))
            next(c, true);
        break;
    case R2_RESTORE:
    case R4_RESTORE:
        if (!c->pending) {
            open_sink(c, &c->config, true, 2, 1);
            c->pending = true;
        } else if (fk.failed || slots_ready(s)) {
            bool protected_ok = s->slots[0].state == SLOT_COMMITTED && s->slots[0].needs_init &&
                                s->slots[1].state == SLOT_COMMITTED;
            read_now(c);
            next(c, !fk.failed && protected_ok && s->committed_txns == 2);
            break;
        }
        break;
    case R4_WRITE:
        if (!c->pending) {
            push_rows(c, 20);
            barrier(c, 3);
            c->pending = true;
        } else if (fk.holds[3] == 0) {
            next(c, fk.released_err[3] == 0);
        }
        break;
    case R4_DONE3:
        if (!c->pending) {
            kafka_sink_vt.checkpoint_done(&c->inst, 3);
            c->pending = true;
        } else if (s->committed_txns == 3 && slots_ready(s) && s->slots[0].state == SLOT_FREE) {
            read_now(c);
            next(c, true);
            break;
        }
        break;
    case R4_REUSE:
        /* Checkpoints 4, 5, 6 of 10 rows each: slot 0, re-initialised after
         * the restore, then slot 1, then slot 0 again, committed and reused
         * as it is (no InitProducerId: the same producer id and epoch). */
        if (c->loop == 0)
            c->loop = 4;
        if (!c->pending) {
            push_rows(c, 10);
            barrier(c, c->loop);
            c->pending = true;
        } else if (fk.holds[c->loop] == 0 && s->last_done < c->loop) {
            kafka_sink_vt.checkpoint_done(&c->inst, c->loop);
        } else if (s->last_done == c->loop && s->committed_txns == c->loop) {
            if (c->loop == 6) {
                read_now(c);
                next(c, fk.released_err[4] + fk.released_err[5] + fk.released_err[6] == 0);
                break;
            }
            c->loop++;
            c->pending = false;
        }
        break;
    case R4_END:
        if (!c->pending) {
            kafka_sink_vt.end(&c->inst);
            c->pending = true;
            /* Not done before the checkpoint after the end completed. */
            if (fk.done || fk.requests != 1)
                next(c, false);
        } else if (fk.holds[7] == 0 && s->end_barrier == 0) {
            barrier(c, 7);
        } else if (s->end_barrier == 7 && fk.holds[7] == 0 && s->last_done < 7) {
            if (fk.done) {
                next(c, false);
                break;
            }
            kafka_sink_vt.checkpoint_done(&c->inst, 7);
        } else if (fk.done) {
            next(c, true);
        }
        break;
    case R3_RESTORE:
        if (!c->pending) {
            open_sink(c, &c->config_other, true, 2, 2);
            c->pending = true;
        } else if (fk.failed || (slots_ready(s) && s->rec_up == 0 && s->rec_count > 0)) {
            next(c, !fk.failed && s->rec_count == 2 + s->slot_count);
        }
        break;
    case R5_RESTORE:
        if (!c->pending) {
            open_sink(c, &c->config, true, 2, 1);
            c->pending = true;
        } else if (fk.failed) {
            next(c, true);
        }
        break;
    case STEPS:
        if (c->up && !close_sink(c))
            break;
        sp_runtime_stop(c->shard->runtime);
        return;
    }
    again(c);
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct sink_case *c = ctx;
    c->shard = shard;
    sp_timer_init(&c->timer, tick, c);
    again(c);
}

static void configure(struct sink_case *c, struct ksk_config *config, const char *prefix)
{
    static char prop[64];
    snprintf(prop, sizeof(prop), "transactional.id=%s", prefix);
    const char *props[] = {"linger.ms=5", prop, NULL};
    struct sp_kafka_sink_config kc = {
        .bootstrap = c->mock.bootstrap,
        .topic = TOPIC,
        .properties = props,
    };
    bool ok = ksk_configure(&c->job, config, &kc, SP_FORMAT_JSON, &c->schema);
    if (!ok)
        fail_msg("configure: %s", c->job.error);
    assert_string_equal(config->txn_prefix, prefix);
    assert_int_equal(config->kafka.transactional_id[0], '\0');
    assert_int_equal(config->kafka.transaction_timeout_ms, 900000);
    assert_int_equal(config->slot_count, KSK_SLOTS_DEFAULT);
}

static void test_exactly_once_across_crashes(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct sink_case c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < STEPS; i++)
        c.visible[i] = c.all[i] = -1;
    memset(&fk, 0, sizeof(fk));
    fk.enabled = true;
    snprintf(c.job.name, sizeof(c.job.name), "sinktest");
    const char *args[] = {"--topic", TOPIC ":3", NULL};
    assert_int_equal(mock_peer_start(&c.mock, args), 0);
    configure(&c, &c.config, "sinktest-a");
    configure(&c, &c.config_other, "sinktest-b");

    struct sp_runtime_config rc;
    sp_runtime_config_default(&rc);
    rc.shard_count = 1;
    rc.pin = false;
    rc.memory_bytes = 1u << 20;
    rc.on_start = start;
    rc.ctx = &c;
    rc.drain_timeout_ns = 5 * SP_NSEC_PER_SEC;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &rc), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
    mock_peer_stop(&c.mock);

    for (int i = 0; i < STEPS; i++)
        fprintf(stderr, "step %d: %s, visible %d of %d%s%s\n", i, c.ok[i] ? "ok" : "NOT OK",
                c.visible[i], c.all[i], c.error[i][0] ? ": " : "", c.error[i]);
    for (int i = 0; i < STEPS; i++)
        if (!c.ok[i])
            fail_msg("step %d failed", i);
    /* Checkpoint 1 lists the first transaction; 2 lists it (not yet
     * committed) and the second. Both were held until acknowledged. */
    unsigned in1 = 0, in2 = 0;
    for (unsigned i = 0; i < fk.nputs; i++) {
        in1 += fk.puts[i].id == 1;
        in2 += fk.puts[i].id == 2;
    }
    assert_int_equal(in1, 1);
    assert_int_equal(in2, 2);
    assert_int_equal(fk.released_ok[1], 1);
    assert_int_equal(fk.released_ok[2], 1);
    /* Exactly once: the committed epochs once, never the uncovered rows. */
    assert_int_equal(c.visible[R1_DONE1], 100);
    assert_int_equal(c.visible[R2_RESTORE], 150);
    assert_int_equal(c.all[R2_RESTORE], 180);
    assert_int_equal(c.visible[R4_RESTORE], 150);
    assert_int_equal(c.visible[R4_DONE3], 170);
    assert_int_equal(c.visible[R4_REUSE], 200);
    assert_int_equal(c.all[R4_REUSE], 230);
    /* Slot 0's transactions of checkpoints 4 and 6: one producer id and epoch. */
    const char *v4 = NULL, *v6 = NULL;
    for (unsigned i = 0; i < fk.nputs; i++) {
        if (strcmp(fk.puts[i].key, "txn/0/0") != 0)
            continue;
        if (fk.puts[i].id == 4)
            v4 = fk.puts[i].value;
        if (fk.puts[i].id == 6)
            v6 = fk.puts[i].value;
    }
    assert_non_null(v4);
    assert_non_null(v6);
    assert_string_equal(v4, v6);
    /* A stale checkpoint's transaction: refused as fenced, and said so. */
    if (strstr(c.error[R5_RESTORE], "cannot be committed") == NULL ||
        strstr(c.error[R5_RESTORE], "transaction.timeout.ms") == NULL)
        fail_msg("run 5's error: '%s'", c.error[R5_RESTORE]);
}

/*
 * At least once with checkpoints: rows pushed before the topic's metadata
 * arrived wait in the FIFO, so the first barrier leaves a marker there and
 * holds its checkpoint until they are produced and acknowledged; nothing is
 * put, nothing transactional; the end needs no checkpoint.
 */
enum alo_step { A_OPEN, A_BARRIER1, A_BARRIER2, A_END, A_STOP, A_STEPS };

static void alo_tick(struct sp_timer *timer, void *ctx)
{
    struct sink_case *c = ctx;
    (void)timer;
    if (++c->ticks > WAIT_TICKS_MAX) {
        fprintf(stderr, "stuck in step %d\n", (int)c->step);
        fk.failed = true;
        c->step = (enum step)A_STEPS;
    }
    struct ksk *s = c->up ? sink(c) : NULL;
    switch ((enum alo_step)c->step) {
    case A_OPEN:
        open_sink(c, &c->config, false, 0, 0);
        /* The metadata is not there yet: the rows wait, and the barrier marks them. */
        push_rows(c, 40);
        barrier(c, 1);
        s = sink(c);
        next(c, !s->exactly && s->mark && fk.holds[1] == 1 && fk.blocked && fk.nputs == 0);
        break;
    case A_BARRIER1:
        if (fk.holds[1] == 0)
            next(c, fk.released_ok[1] == 1 && !s->mark && s->acked == 40);
        break;
    case A_BARRIER2:
        if (!c->pending) {
            push_rows(c, 10);
            barrier(c, 2);
            c->pending = true;
        } else if (fk.holds[2] == 0) {
            kafka_sink_vt.checkpoint_done(&c->inst, 2);
            next(c, fk.released_ok[2] + fk.released_err[2] <= 1 && fk.released_err[2] == 0);
        }
        break;
    case A_END:
        if (!c->pending) {
            kafka_sink_vt.end(&c->inst);
            c->pending = true;
        } else if (fk.done) {
            read_now(c);
            next(c, fk.requests == 0 && fk.nputs == 0);
        }
        break;
    case A_STOP:
        if (close_sink(c))
            next(c, true);
        break;
    case A_STEPS:
        if (c->up && !close_sink(c))
            break;
        sp_runtime_stop(c->shard->runtime);
        return;
    }
    again(c);
}

static void alo_start(struct sp_shard *shard, void *ctx)
{
    struct sink_case *c = ctx;
    c->shard = shard;
    sp_timer_init(&c->timer, alo_tick, c);
    again(c);
}

static void test_at_least_once_with_checkpoints(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct sink_case c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < STEPS; i++)
        c.visible[i] = c.all[i] = -1;
    memset(&fk, 0, sizeof(fk));
    fk.enabled = true;
    snprintf(c.job.name, sizeof(c.job.name), "alotest");
    const char *args[] = {"--topic", TOPIC ":3", NULL};
    assert_int_equal(mock_peer_start(&c.mock, args), 0);
    const char *props[] = {"linger.ms=5", "spate.sink.delivery=at-least-once", NULL};
    struct sp_kafka_sink_config kc = {
        .bootstrap = c.mock.bootstrap,
        .topic = TOPIC,
        .properties = props,
    };
    if (!ksk_configure(&c.job, &c.config, &kc, SP_FORMAT_JSON, &c.schema))
        fail_msg("configure: %s", c.job.error);
    assert_int_equal(c.config.delivery, KSK_AT_LEAST_ONCE);
    assert_string_equal(c.config.txn_prefix, "alotest-kafka-0"); /* the default */

    struct sp_runtime_config rc;
    sp_runtime_config_default(&rc);
    rc.shard_count = 1;
    rc.pin = false;
    rc.memory_bytes = 1u << 20;
    rc.on_start = alo_start;
    rc.ctx = &c;
    rc.drain_timeout_ns = 5 * SP_NSEC_PER_SEC;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &rc), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
    mock_peer_stop(&c.mock);
    for (int i = 0; i < A_STEPS; i++)
        fprintf(stderr, "step %d: %s, visible %d of %d%s%s\n", i, c.ok[i] ? "ok" : "NOT OK",
                c.visible[i], c.all[i], c.error[i][0] ? ": " : "", c.error[i]);
    for (int i = 0; i < A_STEPS; i++)
        if (!c.ok[i])
            fail_msg("step %d failed", i);
    assert_false(fk.failed);
    assert_int_equal(c.visible[A_END], 50);
    assert_int_equal(c.all[A_END], 50);
}

static void test_configuration(void **state)
{
    (void)state;
    static struct sink_case c;
    memset(&c, 0, sizeof(c));
    snprintf(c.job.name, sizeof(c.job.name), "conf");
    const char *bad[][3] = {
        {"spate.sink.delivery=twice", NULL},
        {"spate.sink.transactions=2", NULL},
        {"spate.sink.transactions=33", NULL},
        {"spate.sink.delivery=exactly-once", "enable.idempotence=false", NULL},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(bad); i++) {
        struct sp_kafka_sink_config kc = {
            .bootstrap = "127.0.0.1:1", .topic = TOPIC, .properties = bad[i]};
        memset(&c.config, 0, sizeof(c.config));
        c.job.error[0] = '\0';
        assert_false(ksk_configure(&c.job, &c.config, &kc, SP_FORMAT_JSON, &c.schema));
        fprintf(stderr, "%s: %s\n", bad[i][0], c.job.error);
        assert_non_null(strstr(c.job.error, "kafka sink"));
    }
    const char *good[] = {"spate.sink.transactions=3", "transaction.timeout.ms=60000", NULL};
    struct sp_kafka_sink_config kc = {
        .bootstrap = "127.0.0.1:1", .topic = TOPIC, .properties = good};
    memset(&c.config, 0, sizeof(c.config));
    assert_true(ksk_configure(&c.job, &c.config, &kc, SP_FORMAT_JSON, &c.schema));
    assert_int_equal(c.config.slot_count, 3);
    assert_int_equal(c.config.kafka.transaction_timeout_ms, 60000);
    assert_int_equal(c.config.delivery, KSK_DELIVERY_DEFAULT);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configuration),
        cmocka_unit_test(test_exactly_once_across_crashes),
        cmocka_unit_test(test_at_least_once_with_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
