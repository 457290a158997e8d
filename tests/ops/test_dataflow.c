/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The executor: key_by over two shards puts every key on exactly one shard
 * (the owner of its key group) and loses nothing, with integer and string
 * keys (strings travel with their rows); map, filter, flat_map and union
 * compose; a slow sink holds the sources back through the credits and
 * memory stays bounded while nothing is lost; an idle partition does not
 * hold windows back once its idle timeout passes, and does without one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "job_test.h"
#include "sp_keygroup.h"
#include "sp_op.h"

#define KEYS 50000u
#define EVENTS 1000000u

/* ---- key_by ---- */

struct per_shard {
    uint32_t counts[2][KEYS];
    uint64_t bad_shard;
};

static struct per_shard ps;
static unsigned run_cores; /* test_cores() on a pinned shard would say 1 */

static int64_t int_key_gen(void *ctx, uint32_t partition, uint64_t index, void *row,
                           struct sp_out *out)
{
    (void)ctx, (void)partition, (void)out;
    struct ev *e = row;
    e->ts = (int64_t)index;
    e->user = (int64_t)(index % KEYS);
    e->amount = 1;
    return e->ts;
}

static void count_int(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)ts;
    struct per_shard *p = ctx;
    const struct ev *e = row;
    p->counts[shard][e->user]++; /* each shard writes its own row */
    uint32_t g = sp_key_group(sp_key_hash(&e->user, 8), 128);
    if (sp_key_group_owner(g, 128, run_cores) != shard)
        p->bad_shard++;
}

static void test_key_by_every_key_on_one_shard(void **state)
{
    (void)state;
    unsigned cores = test_cores(2);
    memset(&ps, 0, sizeof(ps));
    run_cores = test_cores(2);
    struct sp_job *job = sp_job_new("key_by");
    struct sp_gen_config gc = {.count = EVENTS, .partitions = 4};
    struct sp_stream *s = sp_source_generator(job, &ev_schema, int_key_gen, NULL, &gc, NULL);
    sp_sink_call(sp_key_by(s, "user"), count_int, &ps);
    struct sp_run_config rc = test_run_config(cores);
    struct sp_job_stats stats;
    assert_int_equal(sp_job_run(job, &rc, &stats), 0);
    sp_job_free(job);
    assert_int_equal(stats.records_in, EVENTS);
    assert_int_equal(stats.records_out, EVENTS);
    assert_int_equal(ps.bad_shard, 0);
    for (uint32_t k = 0; k < KEYS; k++) {
        uint32_t total = ps.counts[0][k] + ps.counts[1][k];
        assert_int_equal(total, EVENTS / KEYS);
        assert_true(ps.counts[0][k] == 0 || ps.counts[1][k] == 0);
    }
}

/* String keys: "user-N" written into the batch by the generator. */
struct named {
    struct sp_str name;
    int64_t ts;
};

static const struct sp_field named_fields[] = {
    SP_FIELD(struct named, name, SP_T_STR),
    SP_FIELD(struct named, ts, SP_T_I64),
};
static const struct sp_schema named_schema = SP_SCHEMA(struct named, named_fields);

static int64_t str_key_gen(void *ctx, uint32_t partition, uint64_t index, void *row,
                           struct sp_out *out)
{
    (void)ctx, (void)partition;
    struct named *n = row;
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "user-%llu", (unsigned long long)(index % KEYS));
    n->name = sp_out_str(out, buf, (uint32_t)len);
    n->ts = (int64_t)index;
    return n->ts;
}

static void count_str(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)ts;
    struct per_shard *p = ctx;
    const struct named *n = row;
    char buf[32];
    unsigned long long k;
    /* No cmocka asserts on shard threads: count what is wrong instead. */
    if (n->name.len >= sizeof(buf)) {
        fprintf(stderr, "bad len %u\n", n->name.len);
        p->bad_shard++;
        return;
    }
    memcpy(buf, n->name.ptr, n->name.len);
    buf[n->name.len] = 0;
    if (sscanf(buf, "user-%llu", &k) != 1 || k >= KEYS) {
        fprintf(stderr, "bad '%s'\n", buf);
        p->bad_shard++;
        return;
    }
    p->counts[shard][k]++;
    uint32_t g = sp_key_group(sp_key_hash(n->name.ptr, n->name.len), 128);
    if (sp_key_group_owner(g, 128, run_cores) != shard)
        p->bad_shard++;
}

static void test_key_by_string_keys(void **state)
{
    (void)state;
    memset(&ps, 0, sizeof(ps));
    run_cores = test_cores(2);
    struct sp_job *job = sp_job_new("key_by_str");
    struct sp_gen_config gc = {.count = EVENTS / 4, .partitions = 3};
    struct sp_stream *s = sp_source_generator(job, &named_schema, str_key_gen, NULL, &gc, NULL);
    sp_sink_call(sp_key_by(s, "name"), count_str, &ps);
    struct sp_run_config rc = test_run_config(test_cores(2));
    struct sp_job_stats stats;
    assert_int_equal(sp_job_run(job, &rc, &stats), 0);
    sp_job_free(job);
    assert_int_equal(stats.records_out, EVENTS / 4);
    assert_int_equal(ps.bad_shard, 0);
    for (uint32_t k = 0; k < KEYS; k++) {
        assert_int_equal(ps.counts[0][k] + ps.counts[1][k], EVENTS / 4 / KEYS);
        assert_true(ps.counts[0][k] == 0 || ps.counts[1][k] == 0);
    }
}

/* ---- Stateless operators ---- */

static bool even_user(void *ctx, const void *row)
{
    (void)ctx;
    return ((const struct ev *)row)->user % 2 == 0;
}

static void to_named(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx;
    const struct ev *e = in;
    struct named *n = out_row;
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "user-%lld", (long long)e->user);
    n->name = sp_out_str(out, buf, (uint32_t)len);
    n->ts = e->ts;
}

static void twice(void *ctx, const void *in, int64_t ts, struct sp_out *out)
{
    (void)ctx;
    for (int i = 0; i < 2; i++) {
        struct named *n = sp_out_row(out, ts);
        *n = *(const struct named *)in; /* the input's string: spate copies it in */
    }
}

static void test_map_filter_flat_map_union(void **state)
{
    (void)state;
    memset(&ps, 0, sizeof(ps));
    run_cores = test_cores(2);
    struct sp_job *job = sp_job_new("chain");
    struct sp_gen_config gc = {.count = 100000, .partitions = 2};
    struct sp_stream *a = sp_source_generator(job, &ev_schema, int_key_gen, NULL, &gc, NULL);
    a = sp_flat_map(sp_map(sp_filter(a, even_user, NULL), &named_schema, to_named, NULL),
                    &named_schema, twice, NULL);
    struct sp_gen_config gb = {.count = 50000, .partitions = 1};
    struct sp_stream *b = sp_source_generator(job, &named_schema, str_key_gen, NULL, &gb, NULL);
    sp_sink_call(sp_key_by(sp_union(a, b), "name"), count_str, &ps);
    struct sp_run_config rc = test_run_config(test_cores(2));
    struct sp_job_stats stats;
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("%s", sp_job_error(job));
    sp_job_free(job);
    assert_int_equal(stats.records_in, 150000);
    assert_int_equal(stats.records_out, 100000 + 50000);
    assert_int_equal(ps.bad_shard, 0);
    for (uint32_t k = 0; k < KEYS; k++) {
        /* even keys: 2 events x 2 copies + 1 from b; odd keys: 1 from b */
        uint32_t want = (k % 2 == 0 ? 4 : 0) + 1;
        assert_int_equal(ps.counts[0][k] + ps.counts[1][k], want);
    }
}

/* ---- Backpressure ---- */

struct slow_sink {
    struct sp_timer timer;
    struct sp_inst *inst;
    uint64_t rows;
};

static uint64_t slow_rows_total;

static void slow_wake(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    struct slow_sink *s = ctx;
    sp_sink_unblock(s->inst);
}

static int slow_open(struct sp_inst *inst)
{
    struct slow_sink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->inst = inst;
    sp_timer_init(&s->timer, slow_wake, s);
    inst->state = s;
    return 0;
}

static void slow_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct slow_sink *s = inst->state;
    s->rows += in->count;
    sp_sink_count(inst, in->count);
    /* Full after every batch; room again 200 us later. */
    sp_sink_block(inst);
    sp_shard_timer_arm(inst->xs->shard, &s->timer, sp_now_ns() + 200 * SP_NSEC_PER_USEC);
}

static void slow_end(struct sp_inst *inst)
{
    sp_sink_done(inst);
}

static void slow_close(struct sp_inst *inst)
{
    struct slow_sink *s = inst->state;
    if (s == NULL)
        return;
    sp_shard_timer_cancel(inst->xs->shard, &s->timer);
    __atomic_fetch_add(&slow_rows_total, s->rows, __ATOMIC_RELAXED);
    free(s);
}

static const struct sp_op_vt slow_vt = {
    .name = "slow",
    .open = slow_open,
    .push = slow_push,
    .end = slow_end,
    .close = slow_close,
};

/*
 * Runs `job` (its sink the slow one) with 4 credits and checks every row
 * reached the sink and batch memory stayed within the credits: per shard,
 * `per_shard` output batches, and per destination and exchange (`exchanges`
 * of them) one open batch, `credits` in flight and the batches one source
 * poll can fill before it sees the block.
 */
static struct sp_job_stats run_into_slow_sink(struct sp_job *job, uint64_t rows, unsigned per_shard,
                                              unsigned exchanges)
{
    struct sp_run_config rc = test_run_config(test_cores(2));
    rc.credits = 4;
    rc.memory_bytes *= 2 / rc.cores; /* one shard holds both shards' keys */
    struct sp_job_stats stats;
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("%s", sp_job_error(job));
    sp_job_free(job);
    assert_int_equal(stats.records_out, rows);
    assert_int_equal(slow_rows_total, rows);
    uint64_t seg = 32 * 1024;
    unsigned n = test_cores(2);
    uint64_t bound = n * (per_shard + exchanges * n * (1 + 4 + 4096 / 1000 + 2)) * seg;
    if (stats.buffer_bytes_max > bound)
        fail_msg("batch memory peaked at %llu bytes, bound %llu",
                 (unsigned long long)stats.buffer_bytes_max, (unsigned long long)bound);
    return stats;
}

static void test_slow_sink_bounds_memory(void **state)
{
    (void)state;
    slow_rows_total = 0;
    struct sp_job *job = sp_job_new("slow");
    struct sp_gen_config gc = {.count = 300000, .partitions = 4};
    struct sp_stream *s = sp_source_generator(job, &ev_schema, int_key_gen, NULL, &gc, NULL);
    sp_job_add_sink(sp_key_by(s, "user"), "slow", &slow_vt, NULL, NULL);
    struct sp_job_stats stats = run_into_slow_sink(job, 300000, 3, 1);
    /* The sources waited for the sink. */
    assert_true(stats.backpressure_ns > 0);
}

/* A window firing 200k results at once, through a second exchange, into
 * the slow sink: the firing stops whenever downstream is full and goes on
 * when it has room, so batch memory stays within the same bound. */
static int64_t one_window_gen(void *ctx, uint32_t partition, uint64_t index, void *row,
                              struct sp_out *out)
{
    (void)ctx, (void)partition, (void)out;
    struct ev *e = row;
    e->ts = 5;
    e->user = (int64_t)(index % 200000);
    return e->ts;
}

static void test_window_firing_waits_for_slow_sink(void **state)
{
    (void)state;
    slow_rows_total = 0;
    struct sp_job *job = sp_job_new("burst");
    struct sp_gen_config gc = {.count = 400000, .partitions = 2};
    struct sp_watermarks wm = {.ts_field = "ts"};
    struct sp_stream *s = sp_source_generator(job, &ev_schema, one_window_gen, NULL, &gc, &wm);
    s = sp_window_aggregate(sp_key_by(s, "user"),
                            &(struct sp_window){.kind = SP_WINDOW_TUMBLING, .size_ms = 10},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    sp_job_add_sink(sp_key_by(s, "user"), "slow", &slow_vt, NULL, NULL);
    (void)run_into_slow_sink(job, 200000, 6, 2);
}

/* A flat_map emitting 50 rows per input row into an exchange and the slow
 * sink: it stops mid-batch when downstream is full and keeps the rest of
 * its input, so memory stays within the same bound. */
static void fifty(void *ctx, const void *in, int64_t ts, struct sp_out *out)
{
    (void)ctx;
    const struct ev *e = in;
    for (int64_t k = 0; k < 50; k++) {
        struct ev *o = sp_out_row(out, ts);
        *o = *e;
        o->user = e->user * 50 + k;
    }
}

static void test_flat_map_burst_waits_for_slow_sink(void **state)
{
    (void)state;
    slow_rows_total = 0;
    struct sp_job *job = sp_job_new("flat-burst");
    struct sp_gen_config gc = {.count = 20000, .partitions = 2};
    struct sp_stream *s = sp_source_generator(job, &ev_schema, int_key_gen, NULL, &gc, NULL);
    s = sp_flat_map(s, &ev_schema, fifty, NULL);
    sp_job_add_sink(sp_key_by(s, "user"), "slow", &slow_vt, NULL, NULL);
    (void)run_into_slow_sink(job, 1000000, 6, 2);
}

/* ---- Idle partitions ---- */

struct two_parts {
    uint64_t next;
    uint64_t last_ns;
};

static int two_open(struct sp_src *src)
{
    struct two_parts *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    src->state = t;
    static const uint32_t parts[] = {0, 1};
    return sp_src_partitions(src, src->shard == 0 ? 2 : 0, parts);
}

/* Partition 0: 100 events 10 ms apart in event time, one every 3 ms of
 * processing time; partition 1: one event at 0, then nothing. Never ends. */
static int two_poll(struct sp_src *src, uint32_t max_rows)
{
    struct two_parts *t = src->state;
    (void)max_rows;
    if (src->partition_count == 0)
        return SP_POLL_WAIT;
    if (t->next == 0) {
        struct ev *e = sp_src_row(src);
        *e = (struct ev){.ts = 0, .user = 1};
        sp_src_commit(src, 1, 0);
    }
    uint64_t now = sp_now_ns();
    if (t->next > 0 && t->next < 100 && now - t->last_ns < 3 * SP_NSEC_PER_MSEC)
        return SP_POLL_MORE;
    if (t->next < 100) {
        t->last_ns = now;
        struct ev *e = sp_src_row(src);
        *e = (struct ev){.ts = (int64_t)t->next * 10, .user = 1};
        sp_src_commit(src, 0, 0);
        t->next++;
        return SP_POLL_MORE;
    }
    return SP_POLL_WAIT;
}

static void two_close(struct sp_src *src)
{
    free(src->state);
}

static const struct sp_source_vt two_vt = {
    .name = "two", .open = two_open, .poll = two_poll, .close = two_close};

static struct collector coll;

static void run_idle(int64_t idle_ms)
{
    collector_init(&coll);
    struct sp_job *job = sp_job_new("idle");
    struct sp_watermarks wm = {.ts_field = "ts", .idle_timeout_ms = idle_ms};
    struct sp_stream *s = sp_job_add_source(job, "two", &two_vt, NULL, &ev_schema, &wm);
    s = sp_window_aggregate(sp_key_by(s, "user"),
                            &(struct sp_window){.kind = SP_WINDOW_TUMBLING, .size_ms = 100},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    sp_sink_call(s, collect_agg, &coll);
    struct sp_run_config rc = test_run_config(test_cores(2));
    rc.max_seconds = 0.8;
    struct sp_job_stats stats;
    assert_int_equal(sp_job_run(job, &rc, &stats), 0);
    assert_true(stats.interrupted);
    sp_job_free(job);
}

static void test_idle_partition_does_not_hold_windows(void **state)
{
    (void)state;
    run_idle(50);
    /* Partition 0's watermark is 989: windows up to [800,900) fired. */
    assert_int_equal(coll.count, 9);
    for (unsigned i = 0; i < coll.count; i++) {
        const struct sp_agg_row *r = &coll.rows[i].row;
        assert_true(r->window_end <= 900);
        assert_int_equal(r->value.i64, r->window_start == 0 ? 11 : 10);
    }
}

static void test_without_idleness_the_quiet_partition_holds(void **state)
{
    (void)state;
    run_idle(0);
    assert_int_equal(coll.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_by_every_key_on_one_shard),
        cmocka_unit_test(test_key_by_string_keys),
        cmocka_unit_test(test_map_filter_flat_map_union),
        cmocka_unit_test(test_slow_sink_bounds_memory),
        cmocka_unit_test(test_window_firing_waits_for_slow_sink),
        cmocka_unit_test(test_flat_map_burst_waits_for_slow_sink),
        cmocka_unit_test(test_idle_partition_does_not_hold_windows),
        cmocka_unit_test(test_without_idleness_the_quiet_partition_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
