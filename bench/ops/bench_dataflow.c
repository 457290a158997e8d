/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whole-path dataflow benchmarks: each iteration builds real jobs with the
 * public API (sp_job.h), runs them with sp_job_run and reports records per
 * second of wall time (manual time, one run of DF_EVENTS events).
 *
 * The events: rows {ts, user, amount} (24 bytes) from the generator, user =
 * a multiplicative hash of the event's index to one of 2^20 (1,048,576)
 * distinct keys, timestamps rising by 1 ms every `per_ms` events of a
 * partition (one partition per core), no out-of-orderness.
 *
 * The time measured is from the first event generated to the last one (the
 * generator stamps both), so shard start-up (populating managed memory) and
 * teardown are left out; what is left out at the end is at most the batches
 * still in flight then (a few thousand rows of millions, and on one core the
 * last window's firing).
 *
 * Every case also runs its baselines side by side, with the same events and
 * cores: generator -> blackhole, and generator -> key_by -> blackhole, so
 * each stage's share per record can be read from the counters (differences
 * of ns per record; noisy when a share is small).
 *  - dataflow/window_add/N: generator -> key_by(user) -> tumbling 10 s count
 *    window -> blackhole on one core; N events per ms per partition: 1 (a
 *    window holds 10,000 events, as many keys) and 100 (a window holds 1M
 *    events over ~890,000 of the keys: state far past the caches).
 *  - dataflow/hash_agg: generator -> key_by(user) -> running count per key
 *    (sp_aggregate; one output row per record) -> blackhole on one core;
 *    every one of the 1M keys in state.
 *  - dataflow/key_by_exchange: generator -> key_by(user) -> blackhole on
 *    min(2, CPUs) cores: records through the exchange between shards.
 * Counters: ns_per_record (the case's job), gen_ns (generator -> blackhole),
 * key_by_ns (its share over gen_ns), op_ns (the window's or aggregate's share
 * over key_by), out_per_record (rows the operator emitted per record),
 * state_MiB (sp_job_stats.state_bytes_max: keyed state high-water mark over
 * all shards), bp_ms (time sources spent blocked by backpressure).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_common.h"
#include "sp_job.h"
#include "sp_log.h"
#include "sp_runtime.h"

#define DF_EVENTS (16ull << 20)
#define DF_KEY_BITS 20u /* 1,048,576 distinct users */
#define DF_MEMORY_BYTES ((size_t)512 << 20)
#define DF_WINDOW_MS 10000
#define DF_PARTITIONS_MAX 16u

struct df_event {
    int64_t ts;
    int64_t user;
    int64_t amount;
};

static const struct sp_field df_fields[] = {
    SP_FIELD(struct df_event, ts, SP_T_I64),
    SP_FIELD(struct df_event, user, SP_T_I64),
    SP_FIELD(struct df_event, amount, SP_T_I64),
};
static const struct sp_schema df_schema = SP_SCHEMA(struct df_event, df_fields);

/* The generator's context: what to make, and when the first and last events
 * of each partition were made (each written by the shard owning it, read
 * after sp_job_run has joined the shards). */
struct df_gen {
    uint64_t count;
    uint32_t partitions;
    uint64_t ts_mul; /* ts = high 64 bits of index * ts_mul: index / (P * per_ms) */
    uint64_t first_ns[DF_PARTITIONS_MAX];
    uint64_t last_ns[DF_PARTITIONS_MAX];
};

static int64_t df_generate(void *ctx, uint32_t partition, uint64_t index, void *row,
                           struct sp_out *out)
{
    (void)out;
    struct df_gen *g = ctx;
    if (SP_UNLIKELY(index < g->partitions))
        g->first_ns[partition] = sp_now_ns();
    if (SP_UNLIKELY(index + g->partitions >= g->count))
        g->last_ns[partition] = sp_now_ns();
    __extension__ typedef unsigned __int128 df_u128;
    /* Multiplying beats dividing; monotone in the index, so never late. */
    int64_t ts = (int64_t)(((df_u128)index * g->ts_mul) >> 64);
    struct df_event *e = row;
    e->ts = ts;
    e->user = (int64_t)((index * 0x9E3779B97F4A7C15ull) >> (64 - DF_KEY_BITS));
    e->amount = (int64_t)(index & 1023);
    return ts;
}

enum df_shape {
    DF_GEN,    /* generator -> blackhole */
    DF_KEY_BY, /* generator -> key_by -> blackhole */
    DF_WINDOW, /* ... -> key_by -> tumbling count -> blackhole */
    DF_AGG,    /* ... -> key_by -> running count -> blackhole */
};

static const char *const df_shape_names[] = {"generator", "key_by", "window", "aggregate"};

struct df_result {
    double seconds;
    uint64_t records_out;
    uint64_t state_bytes_max;
    uint64_t backpressure_ns;
};

/* Builds and runs one job; 0, or -1 after logging why. */
static int df_run(enum df_shape shape, unsigned cores, unsigned per_ms, struct df_result *r)
{
    struct df_gen g;
    memset(&g, 0, sizeof(g));
    g.count = DF_EVENTS;
    g.partitions = cores;
    g.ts_mul = UINT64_MAX / ((uint64_t)cores * per_ms);

    struct sp_job *job = sp_job_new(df_shape_names[shape]);
    if (job == NULL)
        return -1;
    struct sp_gen_config gc = {.count = g.count, .partitions = cores};
    struct sp_watermarks wm = {.ts_field = "ts", .out_of_orderness_ms = 0};
    struct sp_stream *s = sp_source_generator(job, &df_schema, df_generate, &g, &gc, &wm);
    if (shape != DF_GEN)
        s = sp_key_by(s, "user");
    struct sp_agg count = {.kind = SP_AGG_COUNT};
    if (shape == DF_WINDOW) {
        struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = DF_WINDOW_MS};
        s = sp_window_aggregate(s, &w, &count, NULL);
    } else if (shape == DF_AGG) {
        s = sp_aggregate(s, &count);
    }
    sp_sink_blackhole(s);

    struct sp_run_config rc;
    sp_run_config_default(&rc);
    rc.cores = cores;
    rc.memory_bytes = DF_MEMORY_BYTES;
    rc.handle_signals = false;
    struct sp_job_stats stats;
    int ret = sp_job_run(job, &rc, &stats);
    if (ret != 0) {
        sp_error("dataflow bench: %s job: %s", df_shape_names[shape], sp_job_error(job));
        sp_job_free(job);
        return -1;
    }
    sp_job_free(job);
    if (stats.records_in != g.count || stats.interrupted) {
        sp_error("dataflow bench: %s job read %llu of %llu events%s", df_shape_names[shape],
                 (unsigned long long)stats.records_in, (unsigned long long)g.count,
                 stats.interrupted ? " (interrupted)" : "");
        return -1;
    }
    uint64_t first = UINT64_MAX, last = 0;
    for (unsigned p = 0; p < cores; p++) {
        first = SP_MIN(first, g.first_ns[p]);
        last = SP_MAX(last, g.last_ns[p]);
    }
    if (first == 0 || last <= first) {
        sp_error("dataflow bench: %s job: no timing", df_shape_names[shape]);
        return -1;
    }
    r->seconds = (double)(last - first) / 1e9;
    r->records_out = stats.records_out;
    r->state_bytes_max = stats.state_bytes_max;
    r->backpressure_ns = stats.backpressure_ns;
    return 0;
}

struct df_bench {
    enum df_shape shape;
    unsigned cores;
    unsigned per_ms;
    struct df_result gen, key_by, job;
};

static struct df_bench *df_bench_new(enum df_shape shape, unsigned cores, int64_t per_ms)
{
    struct df_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->shape = shape;
    b->cores = SP_MIN(cores, DF_PARTITIONS_MAX);
    b->per_ms = per_ms > 0 ? (unsigned)per_ms : 1;
    return b;
}

static void *window_setup(int64_t per_ms)
{
    return df_bench_new(DF_WINDOW, 1, per_ms);
}

static void *agg_setup(int64_t arg)
{
    (void)arg;
    return df_bench_new(DF_AGG, 1, 1);
}

static void *exchange_setup(int64_t arg)
{
    (void)arg;
    return df_bench_new(DF_KEY_BY, SP_MIN(2u, sp_runtime_cpu_count()), 1);
}

/* The baselines first, then the case's own job, whose time is returned. */
static double df_bench_run(void *state, uint64_t iterations)
{
    struct df_bench *b = state;
    SP_ASSERT(iterations == DF_EVENTS);
    if (df_run(DF_GEN, b->cores, b->per_ms, &b->gen) < 0)
        return -1;
    if (b->shape != DF_KEY_BY && df_run(DF_KEY_BY, b->cores, b->per_ms, &b->key_by) < 0)
        return -1;
    if (df_run(b->shape, b->cores, b->per_ms, &b->job) < 0)
        return -1;
    if (b->shape == DF_KEY_BY)
        b->key_by = b->job;
    return b->job.seconds;
}

static double ns_per_record(const struct df_result *r)
{
    return r->seconds * 1e9 / (double)DF_EVENTS;
}

static unsigned df_bench_counters(void *state, struct sp_bench_counter *out)
{
    struct df_bench *b = state;
    unsigned n = 0;
    out[n++] = (struct sp_bench_counter){"ns_per_record", ns_per_record(&b->job)};
    out[n++] = (struct sp_bench_counter){"gen_ns", ns_per_record(&b->gen)};
    out[n++] =
        (struct sp_bench_counter){"key_by_ns", ns_per_record(&b->key_by) - ns_per_record(&b->gen)};
    if (b->shape != DF_KEY_BY) {
        out[n++] =
            (struct sp_bench_counter){"op_ns", ns_per_record(&b->job) - ns_per_record(&b->key_by)};
        out[n++] = (struct sp_bench_counter){"out_per_record",
                                             (double)b->job.records_out / (double)DF_EVENTS};
    }
    out[n++] =
        (struct sp_bench_counter){"state_MiB", (double)b->job.state_bytes_max / (1024.0 * 1024.0)};
    out[n++] = (struct sp_bench_counter){"bp_ms", (double)b->job.backpressure_ns / 1e6};
    return n;
}

static void df_bench_teardown(void *state)
{
    free(state);
}

const struct sp_bench_case sp_bench_dataflow_cases[] = {
    {.name = "dataflow/window_add",
     .args = {1, 100, 10000},
     .fixed_iterations = DF_EVENTS,
     .manual_time = 1,
     .setup = window_setup,
     .run = df_bench_run,
     .counters = df_bench_counters,
     .teardown = df_bench_teardown},
    {.name = "dataflow/hash_agg",
     .fixed_iterations = DF_EVENTS,
     .manual_time = 1,
     .setup = agg_setup,
     .run = df_bench_run,
     .counters = df_bench_counters,
     .teardown = df_bench_teardown},
    {.name = "dataflow/key_by_exchange",
     .fixed_iterations = DF_EVENTS,
     .manual_time = 1,
     .setup = exchange_setup,
     .run = df_bench_run,
     .counters = df_bench_counters,
     .teardown = df_bench_teardown},
    {.name = NULL},
};
