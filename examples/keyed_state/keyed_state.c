/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state: a running count per key over a large key space, the job the
 * checkpoint benchmark runs (scripts/bench_checkpoint) and a small example
 * of state that outlives any window.
 *
 * The generator's first `keys` events each create one key (event i: key i),
 * filling the state; every later event updates a key drawn from a hash of
 * its index. With `update-rate`, a second generator (unioned in) sends
 * `updates` such updates at that rate from the start, while the first one
 * fills at full speed: once full, a checkpoint interval changes about
 * update-rate x interval keys. With `hot-keys`, updates go to the first
 * that many keys only (a hot set: the state changed per interval stays
 * small at any speed, for measuring throughput with checkpoints). The
 * counts go to a sink (blackhole by default: the state is the point).
 *
 *   spate run keyed-state --param keys=14000000 --param update-rate=140000 \
 *       --param updates=8400000 --memory 1536M --checkpoint-dir file:///tmp/ck
 */
#include <stdint.h>
#include <string.h>

#include "sp_job.h"

struct event {
    int64_t key;
    int64_t ts;
};

static const struct sp_field event_fields[] = {
    SP_FIELD(struct event, key, SP_T_I64),
    SP_FIELD(struct event, ts, SP_T_I64),
};
static const struct sp_schema event_schema = SP_SCHEMA(struct event, event_fields);

struct ks_gen {
    uint64_t keys;
    uint64_t hot; /* updates go to keys [0, hot) */
    bool updates_only;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int64_t gen_event(void *ctx, uint32_t partition, uint64_t index, void *row,
                         struct sp_out *out)
{
    (void)partition, (void)out;
    const struct ks_gen *g = ctx;
    struct event *e = row;
    e->key = (int64_t)(index < g->keys && !g->updates_only ? index : mix(index) % g->hot);
    e->ts = 1700000000000 + (int64_t)(index / 1000);
    return e->ts;
}

static struct ks_gen ks_gen, ks_updates;

static const char *const known[] = {"keys",        "events",  "rate",     "partitions", "sink",
                                    "update-rate", "updates", "hot-keys", NULL};

struct sp_job *keyed_state_job(const struct sp_params *p);
struct sp_job *keyed_state_job(const struct sp_params *p)
{
    struct sp_job *job = sp_job_new("keyed-state");
    if (job == NULL)
        return NULL;
    sp_params_check(job, p, known);
    int64_t keys = sp_param_i64(job, p, "keys", 1000000);
    int64_t events = sp_param_i64(job, p, "events", 0);
    int64_t partitions = sp_param_i64(job, p, "partitions", 0);
    if (keys <= 0 || events < 0 || partitions < 0 || partitions > 65536)
        sp_job_set_error(job,
                         "keys must be > 0, events >= 0 (0: unbounded), partitions 0 to 65536");
    ks_gen.keys = (uint64_t)(keys > 0 ? keys : 1);
    int64_t hot = sp_param_i64(job, p, "hot-keys", 0);
    if (hot < 0 || hot > keys)
        sp_job_set_error(job, "hot-keys from 0 (all keys) to keys");
    ks_gen.hot = hot > 0 ? (uint64_t)hot : ks_gen.keys;
    struct sp_gen_config gc = {
        .count = (uint64_t)(events > 0 ? events : 0),
        .rate = sp_param_f64(job, p, "rate", 0),
        .partitions = (uint32_t)(partitions > 0 ? partitions : 0),
    };
    struct sp_watermarks wm = {.ts_field = "ts"};
    struct sp_stream *s = sp_source_generator(job, &event_schema, gen_event, &ks_gen, &gc, &wm);
    double update_rate = sp_param_f64(job, p, "update-rate", 0);
    int64_t updates = sp_param_i64(job, p, "updates", 0);
    if (update_rate > 0 || updates > 0) {
        ks_updates.keys = ks_gen.keys;
        ks_updates.hot = ks_gen.hot;
        ks_updates.updates_only = true;
        struct sp_gen_config uc = {.count = (uint64_t)(updates > 0 ? updates : 0),
                                   .rate = update_rate,
                                   .partitions = gc.partitions};
        s = sp_union(s, sp_source_generator(job, &event_schema, gen_event, &ks_updates, &uc, &wm));
    }
    struct sp_stream *counts =
        sp_aggregate(sp_key_by(s, "key"), &(struct sp_agg){.kind = SP_AGG_COUNT, .name = "n"});
    const char *sink = sp_param(p, "sink", "blackhole");
    if (strcmp(sink, "blackhole") == 0)
        sp_sink_blackhole(counts);
    else if (strcmp(sink, "stdout") == 0)
        sp_sink_stdout(counts);
    else if (strncmp(sink, "files:", 6) == 0)
        sp_sink_files(counts, sink + 6);
    else
        sp_job_set_error(job, "sink=%s: blackhole, stdout or files:DIR", sink);
    return job;
}
