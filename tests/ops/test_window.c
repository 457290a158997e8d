/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Windows against hand-computed results, on one shard and on two (the key_by
 * exchange between them): tumbling with late records to the side output;
 * allowed lateness firing updated results, then purging; hopping windows;
 * session windows merging when a record bridges two sessions; global windows
 * with a count trigger; running aggregates; sum, min, max and avg; a user
 * aggregate; build errors named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "job_test.h"

struct want {
    int64_t start, end, key, value;
};

static int cmp_want(const void *a, const void *b)
{
    const struct want *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

/* Compares collected aggregate rows with `want` as multisets. */
static void check_rows(struct collector *c, const struct want *want, unsigned n, bool f64)
{
    struct want got[COLLECT_MAX];
    for (unsigned i = 0; i < c->count; i++) {
        const struct sp_agg_row *r = &c->rows[i].row;
        got[i] = (struct want){r->window_start, r->window_end, r->key.i64,
                               f64 ? (int64_t)(r->value.f64 * 1000) : r->value.i64};
    }
    struct want exp[64];
    memcpy(exp, want, n * sizeof(*want));
    qsort(got, c->count, sizeof(*got), cmp_want);
    qsort(exp, n, sizeof(*exp), cmp_want);
    for (unsigned i = 0; i < c->count && i < n; i++) {
        if (cmp_want(&got[i], &exp[i]) != 0)
            fail_msg("row %u: got [%lld,%lld) key %lld value %lld, want [%lld,%lld) key %lld "
                     "value %lld",
                     i, (long long)got[i].start, (long long)got[i].end, (long long)got[i].key,
                     (long long)got[i].value, (long long)exp[i].start, (long long)exp[i].end,
                     (long long)exp[i].key, (long long)exp[i].value);
    }
    assert_int_equal(c->count, n);
}

struct late_rows {
    pthread_mutex_t lock;
    struct ev rows[64];
    unsigned count;
};

static void collect_late(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct late_rows *l = ctx;
    pthread_mutex_lock(&l->lock);
    if (l->count < 64)
        memcpy(&l->rows[l->count++], row, sizeof(struct ev));
    pthread_mutex_unlock(&l->lock);
}

static struct collector coll;
static struct late_rows late;

/* Runs events -> key_by(user) -> window(agg) -> collector (+ late) on `cores`. */
static void run_window(const struct ev *events, unsigned n, int64_t ooo, const struct sp_window *w,
                       const struct sp_agg *agg, unsigned cores)
{
    collector_init(&coll);
    memset(&late, 0, sizeof(late));
    pthread_mutex_init(&late.lock, NULL);
    struct replay r = {events, n};
    struct sp_job *job = sp_job_new("window-test");
    struct sp_stream *lo;
    struct sp_stream *s = replay_source(job, &r, ooo);
    s = sp_window_aggregate(sp_key_by(s, "user"), w, agg, &lo);
    sp_sink_call(s, collect_agg, &coll);
    sp_sink_call(lo, collect_late, &late);
    struct sp_run_config rc = test_run_config(cores);
    struct sp_job_stats stats;
    int rc_run = sp_job_run(job, &rc, &stats);
    if (rc_run != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    assert_int_equal(stats.records_in, n);
    assert_int_equal(stats.records_late, late.count);
    assert_false(stats.interrupted);
    sp_job_free(job);
}

static const struct ev tumbling_events[] = {
    {1, 1, 0, 0},  {3, 2, 0, 0},  {5, 1, 0, 0},
    {12, 1, 0, 0}, {8, 2, 0, 0}, /* late: [0,10) fired at watermark 11 */
    {15, 2, 0, 0}, {25, 1, 0, 0},
};

static void tumbling(unsigned cores)
{
    struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = 10};
    run_window(tumbling_events, 7, 0, &w, &(struct sp_agg){.kind = SP_AGG_COUNT}, cores);
    static const struct want want[] = {
        {0, 10, 1, 2}, {0, 10, 2, 1}, {10, 20, 1, 1}, {10, 20, 2, 1}, {20, 30, 1, 1},
    };
    check_rows(&coll, want, 5, false);
    assert_int_equal(late.count, 1);
    assert_int_equal(late.rows[0].ts, 8);
    assert_int_equal(late.rows[0].user, 2);
    /* Results carry the window's last millisecond as their time. */
    for (unsigned i = 0; i < coll.count; i++)
        assert_int_equal(coll.rows[i].ts, coll.rows[i].row.window_end - 1);
}

static void test_tumbling_one_shard(void **state)
{
    (void)state;
    tumbling(1);
}

static void test_tumbling_two_shards(void **state)
{
    (void)state;
    tumbling(test_cores(2));
}

static void test_allowed_lateness(void **state)
{
    (void)state;
    static const struct ev events[] = {
        {1, 1, 0, 0},  {3, 2, 0, 0},  {5, 1, 0, 0},
        {12, 1, 0, 0}, {8, 2, 0, 0},  /* late but within 10 ms: [0,10) fires again with 2 */
        {15, 2, 0, 0}, {25, 1, 0, 0}, /* watermark 24: [0,10) purged (9 + 10 <= 24) */
        {9, 1, 0, 0},                 /* too late: side output */
    };
    struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = 10, .allowed_lateness_ms = 10};
    run_window(events, 8, 0, &w, &(struct sp_agg){.kind = SP_AGG_COUNT}, test_cores(2));
    static const struct want want[] = {
        {0, 10, 1, 2}, {0, 10, 2, 1}, {0, 10, 2, 2}, {10, 20, 1, 1}, {10, 20, 2, 1}, {20, 30, 1, 1},
    };
    check_rows(&coll, want, 6, false);
    /* The update comes after the first firing of the same window. */
    uint64_t first = UINT64_MAX, update = UINT64_MAX;
    for (unsigned i = 0; i < coll.count; i++) {
        const struct sp_agg_row *r = &coll.rows[i].row;
        if (r->window_start == 0 && r->key.i64 == 2)
            *(r->value.i64 == 1 ? &first : &update) = coll.rows[i].seq;
    }
    assert_true(first < update);
    assert_int_equal(late.count, 1);
    assert_int_equal(late.rows[0].ts, 9);
}

static void test_out_of_orderness_holds_windows(void **state)
{
    (void)state;
    /* With 5 ms of out-of-orderness the 8 is not late: the watermark is 6. */
    struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = 10};
    run_window(tumbling_events, 7, 5, &w, &(struct sp_agg){.kind = SP_AGG_COUNT}, 1);
    static const struct want want[] = {
        {0, 10, 1, 2}, {0, 10, 2, 2}, {10, 20, 1, 1}, {10, 20, 2, 1}, {20, 30, 1, 1},
    };
    check_rows(&coll, want, 5, false);
    assert_int_equal(late.count, 0);
}

static void test_hopping(void **state)
{
    (void)state;
    static const struct ev events[] = {{1, 1, 1, 0}, {6, 1, 2, 0}, {12, 1, 4, 0}};
    struct sp_window w = {.kind = SP_WINDOW_HOPPING, .size_ms = 10, .slide_ms = 5};
    run_window(events, 3, 0, &w, &(struct sp_agg){.kind = SP_AGG_SUM, .field = "amount"},
               test_cores(2));
    static const struct want want[] = {
        {-5, 5, 1, 1},
        {0, 10, 1, 3},
        {5, 15, 1, 6},
        {10, 20, 1, 4},
    };
    check_rows(&coll, want, 4, false);
}

static void test_session_merge(void **state)
{
    (void)state;
    static const struct ev events[] = {
        {1, 1, 0, 0},  {10, 1, 0, 0},
        {3, 2, 0, 0},  {5, 1, 0, 0}, /* bridges [1,6) and [10,15): one session [1,15) */
        {30, 2, 0, 0}, {40, 1, 0, 0},
    };
    struct sp_window w = {.kind = SP_WINDOW_SESSION, .gap_ms = 5};
    run_window(events, 6, 100, &w, &(struct sp_agg){.kind = SP_AGG_COUNT}, test_cores(2));
    static const struct want want[] = {
        {1, 15, 1, 3},
        {40, 45, 1, 1},
        {3, 8, 2, 1},
        {30, 35, 2, 1},
    };
    check_rows(&coll, want, 4, false);
}

static void test_session_fires_on_watermark(void **state)
{
    (void)state;
    /* No out-of-orderness: each session fires once the watermark passes
     * it, and a record after that opens a new one. */
    static const struct ev events[] = {
        {1, 1, 0, 0}, {2, 1, 0, 0}, {20, 1, 0, 0}, {22, 1, 0, 0}, {50, 2, 0, 0},
    };
    struct sp_window w = {.kind = SP_WINDOW_SESSION, .gap_ms = 5};
    run_window(events, 5, 0, &w, &(struct sp_agg){.kind = SP_AGG_MAX, .field = "ts"}, 1);
    static const struct want want[] = {{1, 7, 1, 2}, {20, 27, 1, 22}, {50, 55, 2, 50}};
    check_rows(&coll, want, 3, false);
}

static void test_global_count(void **state)
{
    (void)state;
    static const struct ev events[] = {
        {1, 1, 1, 0}, {2, 2, 1, 0}, {3, 1, 2, 0}, {4, 2, 2, 0},
        {5, 1, 3, 0}, {6, 1, 4, 0}, {7, 2, 3, 0},
    };
    struct sp_window w = {.kind = SP_WINDOW_GLOBAL, .count = 2};
    run_window(events, 7, 0, &w, &(struct sp_agg){.kind = SP_AGG_SUM, .field = "amount"},
               test_cores(2));
    static const struct want want[] = {
        {INT64_MIN, INT64_MAX, 1, 3},
        {INT64_MIN, INT64_MAX, 1, 7},
        {INT64_MIN, INT64_MAX, 2, 3},
    };
    check_rows(&coll, want, 3, false);
}

static void test_avg_min(void **state)
{
    (void)state;
    static const struct ev events[] = {
        {1, 1, 5, 1.5},
        {2, 1, -3, 2.0},
        {3, 2, 7, 4.25},
        {4, 1, 9, 3.25},
    };
    struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = 10};
    run_window(events, 4, 0, &w, &(struct sp_agg){.kind = SP_AGG_AVG, .field = "price"}, 1);
    static const struct want avg[] = {{0, 10, 1, 2250}, {0, 10, 2, 4250}};
    check_rows(&coll, avg, 2, true);
    run_window(events, 4, 0, &w, &(struct sp_agg){.kind = SP_AGG_MIN, .field = "amount"}, 1);
    static const struct want min[] = {{0, 10, 1, -3}, {0, 10, 2, 7}};
    check_rows(&coll, min, 2, false);
    run_window(events, 4, 0, &w, &(struct sp_agg){.kind = SP_AGG_MAX, .field = "price"}, 1);
    static const struct want max[] = {{0, 10, 1, 3250}, {0, 10, 2, 4250}};
    check_rows(&coll, max, 2, true);
}

/* A user aggregate: the spread (max - min) of the amounts. */
struct spread {
    int64_t lo, hi;
    bool any;
};

static void spread_add(void *ctx, void *acc, const void *row, int64_t ts)
{
    (void)ctx, (void)ts;
    struct spread *s = acc;
    int64_t v = ((const struct ev *)row)->amount;
    if (!s->any || v < s->lo)
        s->lo = v;
    if (!s->any || v > s->hi)
        s->hi = v;
    s->any = true;
}

static void spread_merge(void *ctx, void *acc, const void *other)
{
    const struct spread *o = other;
    if (o->any) {
        spread_add(ctx, acc, &(struct ev){.amount = o->lo}, 0);
        spread_add(ctx, acc, &(struct ev){.amount = o->hi}, 0);
    }
}

static void spread_result(void *ctx, const void *acc, void *result)
{
    (void)ctx;
    const struct spread *s = acc;
    *(int64_t *)result = s->hi - s->lo;
}

static void test_user_aggregate_sessions(void **state)
{
    (void)state;
    static const struct sp_aggregate_fn spread = {
        .acc_bytes = sizeof(struct spread),
        .result_type = SP_T_I64,
        .add = spread_add,
        .merge = spread_merge,
        .result = spread_result,
    };
    static const struct ev events[] = {
        {1, 1, 10, 0}, {10, 1, 4, 0}, {5, 1, 30, 0}, /* merges: 4..30 */
    };
    struct sp_window w = {.kind = SP_WINDOW_SESSION, .gap_ms = 5};
    run_window(events, 3, 100, &w, &(struct sp_agg){.kind = SP_AGG_USER, .user = &spread}, 1);
    static const struct want want[] = {{1, 15, 1, 26}};
    check_rows(&coll, want, 1, false);
}

static void test_running_aggregate(void **state)
{
    (void)state;
    static const struct ev events[] = {{1, 1, 0, 0}, {2, 2, 0, 0}, {3, 1, 0, 0}, {4, 1, 0, 0}};
    collector_init(&coll);
    struct replay r = {events, 4};
    struct sp_job *job = sp_job_new("running");
    struct sp_stream *s = replay_source(job, &r, 0);
    s = sp_aggregate(sp_key_by(s, "user"), &(struct sp_agg){.kind = SP_AGG_COUNT});
    sp_sink_call(s, collect_agg, &coll);
    struct sp_run_config rc = test_run_config(test_cores(2));
    assert_int_equal(sp_job_run(job, &rc, NULL), 0);
    sp_job_free(job);
    /* A changelog: every update, in order per key. */
    static const struct want want[] = {{0, 0, 1, 1}, {0, 0, 1, 2}, {0, 0, 1, 3}, {0, 0, 2, 1}};
    check_rows(&coll, want, 4, false);
}

static void test_build_errors(void **state)
{
    (void)state;
    struct replay r = {tumbling_events, 7};
    struct sp_job *job = sp_job_new("bad");
    struct sp_stream *s = replay_source(job, &r, 0);
    s = sp_key_by(s, "nope");
    assert_non_null(sp_job_error(job));
    assert_non_null(strstr(sp_job_error(job), "nope"));
    /* Later calls are harmless; the run refuses with the first error. */
    s = sp_window_aggregate(s, &(struct sp_window){.kind = SP_WINDOW_TUMBLING},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    sp_sink_blackhole(s);
    struct sp_run_config rc = test_run_config(1);
    assert_int_equal(sp_job_run(job, &rc, NULL), -1);
    assert_non_null(strstr(sp_job_error(job), "nope"));
    sp_job_free(job);

    job = sp_job_new("bad2");
    s = sp_key_by(replay_source(job, &r, 0), "user");
    s = sp_window_aggregate(s, &(struct sp_window){.kind = SP_WINDOW_TUMBLING},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    assert_non_null(strstr(sp_job_error(job), "size_ms"));
    sp_job_free(job);

    job = sp_job_new("bad3");
    s = replay_source(job, &r, 0);
    s = sp_window_aggregate(s, &(struct sp_window){.kind = SP_WINDOW_TUMBLING, .size_ms = 5},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    assert_non_null(strstr(sp_job_error(job), "keyed"));
    sp_job_free(job);

    job = sp_job_new("bad4");
    s = sp_key_by(replay_source(job, &r, 0), "user");
    sp_aggregate(s, &(struct sp_agg){.kind = SP_AGG_SUM, .field = "missing"});
    assert_non_null(strstr(sp_job_error(job), "missing"));
    sp_job_free(job);

    job = sp_job_new("bad5");
    s = sp_key_by(replay_source(job, &r, 0), "user");
    s = sp_aggregate(s, &(struct sp_agg){.kind = SP_AGG_COUNT});
    (void)s; /* no sink */
    assert_int_equal(sp_job_run(job, &rc, NULL), -1);
    assert_non_null(strstr(sp_job_error(job), "sink"));
    sp_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tumbling_one_shard),
        cmocka_unit_test(test_tumbling_two_shards),
        cmocka_unit_test(test_allowed_lateness),
        cmocka_unit_test(test_out_of_orderness_holds_windows),
        cmocka_unit_test(test_hopping),
        cmocka_unit_test(test_session_merge),
        cmocka_unit_test(test_session_fires_on_watermark),
        cmocka_unit_test(test_global_count),
        cmocka_unit_test(test_avg_min),
        cmocka_unit_test(test_user_aggregate_sessions),
        cmocka_unit_test(test_running_aggregate),
        cmocka_unit_test(test_build_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
