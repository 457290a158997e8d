/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark queries q0, q1 and q2 against the generator's events: a job
 * of the source alone collects 100k events, the test computes each query's
 * output from them in C (q0 every bid; q1 every bid at 0.908 of its price;
 * q2 auction and price of the bids whose auction is a multiple of 123), and
 * compares it, as a sorted multiset of rows, with what the query's job
 * emits on 1 and 2 cores. The stateful queries (q3-q8, q11; checked
 * against SQLite by scripts/nexmark_check in test_nexmark_sqlite.sh) give
 * the same rows on 1 and 2 cores; q12's processing-time windows count
 * every bid once, per bidder, in aligned 10-second windows. Then an
 * unknown query name is a job error.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../ops/job_test.h"
#include "sp_nexmark.h"

#define EVENTS 100000

/* A row of any of the three queries, comparable: absent fields are 0. */
struct row {
    int64_t auction, bidder, price_i64, date_time, ts;
    double price_f64;
    uint64_t extra_hash;
    uint32_t extra_len;
};

struct rows {
    struct row *r;
    size_t count, cap;
    pthread_mutex_t lock;
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ULL;
    return h;
}

static void rows_init(struct rows *rs)
{
    rs->cap = EVENTS;
    rs->count = 0;
    rs->r = calloc(rs->cap, sizeof(struct row));
    assert_non_null(rs->r);
    pthread_mutex_init(&rs->lock, NULL);
}

static void rows_free(struct rows *rs)
{
    free(rs->r);
    pthread_mutex_destroy(&rs->lock);
}

static void rows_add(struct rows *rs, const struct row *r)
{
    pthread_mutex_lock(&rs->lock);
    if (rs->count < rs->cap)
        rs->r[rs->count] = *r;
    rs->count++; /* counted even past cap, so the test sees too many */
    pthread_mutex_unlock(&rs->lock);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int row_cmp(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c;
    if ((c = cmp_i64(a->auction, b->auction)) || (c = cmp_i64(a->bidder, b->bidder)) ||
        (c = cmp_i64(a->price_i64, b->price_i64)) || (c = cmp_i64(a->date_time, b->date_time)) ||
        (c = cmp_i64(a->ts, b->ts)))
        return c;
    if (a->price_f64 != b->price_f64)
        return a->price_f64 < b->price_f64 ? -1 : 1;
    if (a->extra_hash != b->extra_hash)
        return a->extra_hash < b->extra_hash ? -1 : 1;
    return cmp_i64(a->extra_len, b->extra_len);
}

/* The generator's events, kept once for every test. */
static struct sp_nexmark_event *events;
static struct rows bids; /* every bid, as a q0 row with its timestamp */

static void collect_event(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)ctx, (void)shard, (void)ts;
    const struct sp_nexmark_event *e = row;
    /* each event id comes once, from one shard: no lock */
    if (e->event_id >= 0 && e->event_id < EVENTS)
        events[e->event_id] = *e; /* strings not kept: hashed below */
    if (e->kind == SP_NEXMARK_BID) {
        struct row r = {.auction = e->bid_auction,
                        .bidder = e->bid_bidder,
                        .price_i64 = e->bid_price,
                        .date_time = e->date_time,
                        .ts = ts,
                        .extra_hash = fnv1a(e->extra.ptr, e->extra.len),
                        .extra_len = e->extra.len};
        rows_add(&bids, &r);
    }
}

static struct sp_nexmark_config config;

static int setup(void **state)
{
    (void)state;
    sp_nexmark_config_default(&config);
    config.events = EVENTS;
    events = calloc(EVENTS, sizeof(*events));
    rows_init(&bids);
    struct sp_job *job = sp_job_new("nexmark-events");
    sp_sink_call(sp_nexmark_source(job, &config), collect_event, NULL);
    struct sp_run_config rc = test_run_config(1);
    struct sp_job_stats stats;
    if (sp_job_run(job, &rc, &stats) != 0) {
        fprintf(stderr, "generating events: %s\n", sp_job_error(job));
        return -1;
    }
    sp_job_free(job);
    if (stats.records_out != EVENTS || bids.count == 0 || bids.count > bids.cap)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(events);
    rows_free(&bids);
    return 0;
}

static void collect_q0(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard;
    const struct sp_nexmark_q0_row *q = row;
    struct row r = {.auction = q->auction,
                    .bidder = q->bidder,
                    .price_i64 = q->price,
                    .date_time = q->date_time,
                    .ts = ts,
                    .extra_hash = fnv1a(q->extra.ptr, q->extra.len),
                    .extra_len = q->extra.len};
    rows_add(ctx, &r);
}

static void collect_q1(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard;
    const struct sp_nexmark_q1_row *q = row;
    struct row r = {.auction = q->auction,
                    .bidder = q->bidder,
                    .price_f64 = q->price,
                    .date_time = q->date_time,
                    .ts = ts,
                    .extra_hash = fnv1a(q->extra.ptr, q->extra.len),
                    .extra_len = q->extra.len};
    rows_add(ctx, &r);
}

static void collect_q2(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard;
    const struct sp_nexmark_q2_row *q = row;
    struct row r = {.auction = q->auction, .price_i64 = q->price, .ts = ts};
    rows_add(ctx, &r);
}

/* What each query should emit, from the bids. */
static size_t expected(const char *query, struct row *out)
{
    size_t n = 0;
    for (size_t i = 0; i < bids.count; i++) {
        struct row r = bids.r[i];
        if (strcmp(query, "q1") == 0) {
            r.price_f64 = r.price_i64 * 0.908;
            r.price_i64 = 0;
        } else if (strcmp(query, "q2") == 0) {
            if (r.auction % 123 != 0)
                continue;
            r = (struct row){.auction = r.auction, .price_i64 = r.price_i64, .ts = r.ts};
        }
        out[n++] = r;
    }
    return n;
}

static void check_query(const char *query, sp_sink_fn *collect, unsigned cores)
{
    struct rows got;
    rows_init(&got);
    struct sp_job *job = sp_job_new(query);
    struct sp_stream *s = sp_nexmark_query(job, query, sp_nexmark_source(job, &config), &config);
    sp_sink_call(s, collect, &got);
    struct sp_run_config rc = test_run_config(cores);
    struct sp_job_stats stats;
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("%s on %u cores: %s", query, cores, sp_job_error(job));
    sp_job_free(job);
    assert_int_equal(stats.records_in, EVENTS);
    assert_int_equal(stats.records_out, got.count);

    struct row *want = calloc(bids.count, sizeof(struct row));
    assert_non_null(want);
    size_t want_count = expected(query, want);
    if (got.count != want_count)
        fail_msg("%s on %u cores: %zu rows, expected %zu", query, cores, got.count, want_count);
    qsort(got.r, got.count, sizeof(struct row), row_cmp);
    qsort(want, want_count, sizeof(struct row), row_cmp);
    for (size_t i = 0; i < want_count; i++) {
        if (row_cmp(&got.r[i], &want[i]) != 0)
            fail_msg("%s on %u cores: row %zu (sorted) differs: auction %lld price %lld/%.17g, "
                     "expected auction %lld price %lld/%.17g",
                     query, cores, i, (long long)got.r[i].auction, (long long)got.r[i].price_i64,
                     got.r[i].price_f64, (long long)want[i].auction, (long long)want[i].price_i64,
                     want[i].price_f64);
    }
    free(want);
    rows_free(&got);
}

static void test_bids_are_most_events(void **state)
{
    (void)state;
    /* 46 of every 50 events are bids: the queries have something to do. */
    assert_int_equal(bids.count, EVENTS / 50 * 46);
    uint64_t kinds[3] = {0};
    for (size_t i = 0; i < EVENTS; i++)
        kinds[events[i].kind]++;
    assert_int_equal(kinds[SP_NEXMARK_BID], bids.count);
}

static void test_q0(void **state)
{
    (void)state;
    check_query("q0", collect_q0, 1);
    check_query("q0", collect_q0, test_cores(2));
}

static void test_q1(void **state)
{
    (void)state;
    check_query("q1", collect_q1, 1);
    check_query("q1", collect_q1, test_cores(2));
    /* The conversion itself, on a value that shows the fraction. */
    assert_true(sp_nexmark_q1_price(1000) == 908.0);
    assert_true(sp_nexmark_q1_price(12345) > 11209.25 && sp_nexmark_q1_price(12345) < 11209.27);
}

static void test_q2(void **state)
{
    (void)state;
    size_t selected = 0;
    for (size_t i = 0; i < bids.count; i++)
        selected += bids.r[i].auction % 123 == 0;
    assert_true(selected > 100); /* the selection is not empty at 100k events */
    check_query("q2", collect_q2, 1);
    check_query("q2", collect_q2, test_cores(2));
}

static void test_unknown_query_is_a_job_error(void **state)
{
    (void)state;
    struct sp_job *job = sp_job_new("bad");
    struct sp_stream *s = sp_nexmark_query(job, "q99", sp_nexmark_source(job, &config), &config);
    sp_sink_blackhole(s);
    assert_non_null(sp_job_error(job));
    assert_non_null(strstr(sp_job_error(job), "q99"));
    struct sp_run_config rc = test_run_config(1);
    assert_int_equal(sp_job_run(job, &rc, NULL), -1);
    sp_job_free(job);
    assert_false(sp_nexmark_query_exists("q99"));
    assert_false(sp_nexmark_query_exists(NULL));
    for (unsigned i = 0; sp_nexmark_query_names[i] != NULL; i++)
        assert_true(sp_nexmark_query_exists(sp_nexmark_query_names[i]));
}

/* Rows of any query as an order-free multiset fingerprint, by its schema. */
struct fingerprint {
    const struct sp_schema *schema;
    pthread_mutex_t lock;
    uint64_t sum, xor, count;
};

static void collect_fingerprint(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct fingerprint *f = ctx;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint32_t i = 0; i < f->schema->field_count; i++) {
        const struct sp_field *fd = &f->schema->fields[i];
        const uint8_t *at = (const uint8_t *)row + fd->offset;
        if (fd->type == SP_T_STR) {
            const struct sp_str *str = (const struct sp_str *)at;
            h = (h ^ fnv1a(str->ptr, str->len)) * 0x100000001b3ULL;
        } else {
            uint64_t v;
            memcpy(&v, at, sizeof(v));
            h = (h ^ v) * 0x100000001b3ULL;
        }
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    pthread_mutex_lock(&f->lock);
    f->sum += h;
    f->xor ^= h * 0x94d049bb133111ebULL;
    f->count++;
    pthread_mutex_unlock(&f->lock);
}

static void run_fingerprint(const char *query, const struct sp_schema *schema, unsigned cores,
                            struct fingerprint *f)
{
    memset(f, 0, sizeof(*f));
    f->schema = schema;
    pthread_mutex_init(&f->lock, NULL);
    struct sp_job *job = sp_job_new(query);
    struct sp_stream *s = sp_nexmark_query(job, query, sp_nexmark_source(job, &config), &config);
    sp_sink_call(s, collect_fingerprint, f);
    struct sp_run_config rc = test_run_config(cores);
    rc.memory_bytes = 64u << 20;
    if (sp_job_run(job, &rc, NULL) != 0)
        fail_msg("%s on %u cores: %s", query, cores, sp_job_error(job));
    sp_job_free(job);
    pthread_mutex_destroy(&f->lock);
}

static void test_stateful_queries_same_on_1_and_2_cores(void **state)
{
    (void)state;
    static const struct {
        const char *query;
        const struct sp_schema *schema;
    } cases[] = {
        {"q3", &sp_nexmark_q3_schema}, {"q5", &sp_nexmark_q5_schema},
        {"q6", &sp_nexmark_q6_schema}, {"q7", &sp_nexmark_q7_schema},
        {"q8", &sp_nexmark_q8_schema}, {"q11", &sp_nexmark_q11_schema},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fingerprint one, two;
        run_fingerprint(cases[i].query, cases[i].schema, 1, &one);
        run_fingerprint(cases[i].query, cases[i].schema, test_cores(2), &two);
        if (one.count == 0 || one.count != two.count || one.sum != two.sum || one.xor != two.xor)
            fail_msg("%s: %llu rows on 1 core, %llu on 2, fingerprints %s", cases[i].query,
                     (unsigned long long)one.count, (unsigned long long)two.count,
                     one.sum == two.sum ? "equal" : "differ");
    }
}

/* q12: what each bidder's windows counted. */
struct q12_seen {
    pthread_mutex_t lock;
    int64_t bidder[EVENTS];
    int64_t count[EVENTS];
    size_t rows;
    size_t bad_window;
};

static void collect_q12(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct q12_seen *s = ctx;
    const struct sp_nexmark_q11_row *r = row;
    pthread_mutex_lock(&s->lock);
    if (r->endtime - r->starttime != 10000 || r->starttime % 10000 != 0 || r->bid_count <= 0)
        s->bad_window++;
    if (s->rows < EVENTS) {
        s->bidder[s->rows] = r->bidder;
        s->count[s->rows] = r->bid_count;
    }
    s->rows++;
    pthread_mutex_unlock(&s->lock);
}

static int cmp_bidder_count(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

static void test_q12_counts_every_bid_once(void **state)
{
    (void)state;
    static struct q12_seen seen;
    memset(&seen, 0, sizeof(seen));
    pthread_mutex_init(&seen.lock, NULL);
    struct sp_job *job = sp_job_new("q12");
    struct sp_stream *s = sp_nexmark_query(job, "q12", sp_nexmark_source(job, &config), &config);
    sp_sink_call(s, collect_q12, &seen);
    struct sp_run_config rc = test_run_config(test_cores(2));
    if (sp_job_run(job, &rc, NULL) != 0)
        fail_msg("q12: %s", sp_job_error(job));
    sp_job_free(job);
    assert_true(seen.rows > 0 && seen.rows <= EVENTS);
    assert_int_equal(seen.bad_window, 0);
    /* Per bidder, the windows' counts add up to the bidder's bids. */
    static int64_t got[EVENTS][2], want[EVENTS][2];
    size_t ng = 0, nw = 0;
    for (size_t i = 0; i < seen.rows; i++) {
        got[ng][0] = seen.bidder[i];
        got[ng++][1] = seen.count[i];
    }
    for (size_t i = 0; i < bids.count; i++) {
        want[nw][0] = bids.r[i].bidder;
        want[nw++][1] = 1;
    }
    qsort(got, ng, sizeof(got[0]), cmp_bidder_count);
    qsort(want, nw, sizeof(want[0]), cmp_bidder_count);
    size_t i = 0, j = 0;
    while (i < ng || j < nw) {
        int64_t b = i < ng ? got[i][0] : want[j][0];
        int64_t g = 0, w = 0;
        for (; i < ng && got[i][0] == b; i++)
            g += got[i][1];
        for (; j < nw && want[j][0] == b; j++)
            w += want[j][1];
        if (g != w)
            fail_msg("q12: bidder %lld counted %lld bids, has %lld", (long long)b, (long long)g,
                     (long long)w);
    }
    pthread_mutex_destroy(&seen.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bids_are_most_events),
        cmocka_unit_test(test_q0),
        cmocka_unit_test(test_q1),
        cmocka_unit_test(test_q2),
        cmocka_unit_test(test_stateful_queries_same_on_1_and_2_cores),
        cmocka_unit_test(test_q12_counts_every_bid_once),
        cmocka_unit_test(test_unknown_query_is_a_job_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
