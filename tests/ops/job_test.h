/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the dataflow tests share: an event row, a generator that replays a
 * fixed array in order (one partition, one event per poll, so each event
 * sees the watermark of those before it), and a sink that collects rows
 * from every shard for the test to compare after the run.
 */
#ifndef JOB_TEST_H
#define JOB_TEST_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sp_job.h"
#include "sp_runtime.h"

struct ev {
    int64_t ts;
    int64_t user;
    int64_t amount;
    double price;
};

static const struct sp_field ev_fields[] = {
    SP_FIELD(struct ev, ts, SP_T_I64),
    SP_FIELD(struct ev, user, SP_T_I64),
    SP_FIELD(struct ev, amount, SP_T_I64),
    SP_FIELD(struct ev, price, SP_T_F64),
};
static const struct sp_schema ev_schema = SP_SCHEMA(struct ev, ev_fields);

struct replay {
    const struct ev *events;
    uint64_t count;
};

static int64_t replay_gen(void *ctx, uint32_t partition, uint64_t index, void *row,
                          struct sp_out *out)
{
    (void)partition, (void)out;
    const struct replay *r = ctx;
    memcpy(row, &r->events[index], sizeof(struct ev));
    return r->events[index].ts;
}

/* A source replaying `events` in order with `ooo_ms` out-of-orderness. */
static inline struct sp_stream *replay_source(struct sp_job *job, struct replay *r, int64_t ooo_ms)
{
    struct sp_gen_config gc = {.count = r->count, .partitions = 1, .events_per_poll = 1};
    struct sp_watermarks wm = {.ts_field = "ts", .out_of_orderness_ms = ooo_ms};
    return sp_source_generator(job, &ev_schema, replay_gen, r, &gc, &wm);
}

#define COLLECT_MAX 4096

struct collected {
    struct sp_agg_row row;
    int64_t ts;
    unsigned shard;
    uint64_t seq;
};

struct collector {
    pthread_mutex_t lock;
    struct collected rows[COLLECT_MAX];
    char keys[COLLECT_MAX][32];
    unsigned count;
    uint64_t seq;
};

static inline void collector_init(struct collector *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
}

__attribute__((unused)) static void collect_agg(void *ctx, unsigned shard, const void *row,
                                                int64_t ts)
{
    struct collector *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (c->count < COLLECT_MAX) {
        struct collected *r = &c->rows[c->count];
        memcpy(&r->row, row, sizeof(r->row));
        r->ts = ts;
        r->shard = shard;
        r->seq = c->seq++;
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
}

static inline struct sp_run_config test_run_config(unsigned cores)
{
    struct sp_run_config rc;
    sp_run_config_default(&rc);
    rc.cores = cores;
    rc.memory_bytes = 16u << 20;
    rc.handle_signals = false;
    return rc;
}

/* Cores this machine lets a test use (at most `want`). */
static inline unsigned test_cores(unsigned want)
{
    unsigned n = sp_runtime_cpu_count();
    return n < want ? n : want;
}

#endif /* JOB_TEST_H */
