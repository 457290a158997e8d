/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: the registry (ids, lookups, duplicate names, -EEXIST, -ENOSPC,
 * -EINVAL names, -EBUSY once started), counters and gauges summed over shard
 * rows, and histograms: the bucket function (exact below 16, monotonic,
 * every bucket's upper bound within 6.25% of its values), quantiles within
 * 6.25% of the exact ones for uniform, exponential-like, log-uniform and
 * constant data, merging across rows, the exact maximum and the empty
 * histogram. A last test runs writer threads, each on its own row, while the
 * main thread reads the sums (suite 'threads': also run under
 * ThreadSanitizer), and checks the totals after join.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_rand.h"
#include "sp_metrics.h"

/* ---- Helpers ---- */

static struct sp_rand rng;

/*
 * An exponentially distributed value with the given mean, by inverting the
 * CDF: -ln(U) * mean. The logarithm is computed here (the tests do not link
 * libm): ln(r / 2^53) = (e - 53) ln 2 + ln(m), r = m * 2^e with m in [1, 2),
 * and ln(m) = 2 atanh((m - 1) / (m + 1)) by its series, |z| <= 1/3.
 */
static uint64_t rng_exponential(double mean)
{
    const double ln2 = 0.69314718055994530942;
    uint64_t r = (sp_rand_next(&rng) >> 11) + 1; /* 1 .. 2^53 */
    int e = 63 - __builtin_clzll(r);
    double m = (double)r / (double)(1ULL << e);
    double z = (m - 1.0) / (m + 1.0);
    double z2 = z * z, term = z, series = 0.0;
    for (unsigned k = 1; k < 40; k += 2) {
        series += term / k;
        term *= z2;
    }
    double ln_u = (e - 53) * ln2 + 2.0 * series;
    return (uint64_t)(-ln_u * mean);
}

/* A log-uniform value: a random power of two below 2^62, then uniform. */
static uint64_t rng_log_uniform(void)
{
    unsigned e = (unsigned)(sp_rand_next(&rng) % 62);
    return (1ULL << e) | (sp_rand_next(&rng) & ((1ULL << e) - 1));
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t hist_load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* ---- Registry ---- */

static void test_register_and_find(void **state)
{
    (void)state;
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 8), 0);
    assert_int_equal(sp_metrics_find(&m, "records_in"), -ENOENT);

    int c = sp_metrics_register(&m, "records_in", SP_METRIC_COUNTER);
    int g = sp_metrics_register(&m, "queue_depth", SP_METRIC_GAUGE);
    int h = sp_metrics_register(&m, "latency_ns", SP_METRIC_HISTOGRAM);
    assert_int_equal(c, 0);
    assert_int_equal(g, 1);
    assert_int_equal(h, 2);
    assert_int_equal(sp_metrics_find(&m, "records_in"), c);
    assert_int_equal(sp_metrics_find(&m, "queue_depth"), g);
    assert_int_equal(sp_metrics_find(&m, "latency_ns"), h);
    assert_int_equal(sp_metrics_find(&m, "latency"), -ENOENT);
    assert_int_equal(sp_metrics_find(&m, "latency_ns_"), -ENOENT);
    assert_int_equal(sp_metrics_find(&m, ""), -ENOENT);

    /* Same name, same kind: the same id, nothing new registered. */
    assert_int_equal(sp_metrics_register(&m, "records_in", SP_METRIC_COUNTER), c);
    assert_int_equal(sp_metrics_register(&m, "latency_ns", SP_METRIC_HISTOGRAM), h);
    assert_int_equal(m.count, 3);
    /* Same name, another kind. */
    assert_int_equal(sp_metrics_register(&m, "records_in", SP_METRIC_GAUGE), -EEXIST);
    assert_int_equal(sp_metrics_register(&m, "records_in", SP_METRIC_HISTOGRAM), -EEXIST);
    assert_int_equal(sp_metrics_register(&m, "queue_depth", SP_METRIC_COUNTER), -EEXIST);
    assert_int_equal(sp_metrics_register(&m, "latency_ns", SP_METRIC_GAUGE), -EEXIST);
    assert_int_equal(m.count, 3);
    sp_metrics_deinit(&m);
}

static void test_register_limits(void **state)
{
    (void)state;
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 3), 0);

    char name[200];
    assert_int_equal(sp_metrics_register(&m, "", SP_METRIC_COUNTER), -EINVAL);
    assert_int_equal(sp_metrics_register(&m, NULL, SP_METRIC_COUNTER), -EINVAL);
    memset(name, 'n', sizeof(name));
    name[SP_METRIC_NAME_BYTES_MAX] = '\0'; /* 64 characters: one too many */
    assert_int_equal(sp_metrics_register(&m, name, SP_METRIC_COUNTER), -EINVAL);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(sp_metrics_register(&m, name, SP_METRIC_GAUGE), -EINVAL);
    assert_int_equal(m.count, 0);

    /* 63 characters is the longest name. */
    name[SP_METRIC_NAME_BYTES_MAX - 1] = '\0';
    int longest = sp_metrics_register(&m, name, SP_METRIC_COUNTER);
    assert_int_equal(longest, 0);
    assert_int_equal(sp_metrics_find(&m, name), longest);
    assert_string_equal(m.descs[longest].name, name);

    assert_int_equal(sp_metrics_register(&m, "a", SP_METRIC_GAUGE), 1);
    assert_int_equal(sp_metrics_register(&m, "b", SP_METRIC_HISTOGRAM), 2);
    assert_int_equal(sp_metrics_register(&m, "c", SP_METRIC_COUNTER), -ENOSPC);
    assert_int_equal(sp_metrics_register(&m, "d", SP_METRIC_HISTOGRAM), -ENOSPC);
    /* Full, but an existing name still resolves (or clashes). */
    assert_int_equal(sp_metrics_register(&m, "a", SP_METRIC_GAUGE), 1);
    assert_int_equal(sp_metrics_register(&m, "b", SP_METRIC_COUNTER), -EEXIST);
    assert_int_equal(m.count, 3);
    sp_metrics_deinit(&m);

    /* A registry for no metrics. */
    assert_int_equal(sp_metrics_init(&m, 0), 0);
    assert_int_equal(sp_metrics_register(&m, "x", SP_METRIC_COUNTER), -ENOSPC);
    assert_int_equal(sp_metrics_find(&m, "x"), -ENOENT);
    sp_metrics_deinit(&m);
}

static void test_register_after_start_is_busy(void **state)
{
    (void)state;
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 8), 0);
    int c = sp_metrics_register(&m, "c", SP_METRIC_COUNTER);
    assert_true(c >= 0);
    assert_int_equal(sp_metrics_start(&m, 2), 0);
    assert_int_equal(m.shard_count, 2);
    assert_int_equal(sp_metrics_register(&m, "new", SP_METRIC_COUNTER), -EBUSY);
    assert_int_equal(sp_metrics_register(&m, "new", SP_METRIC_HISTOGRAM), -EBUSY);
    assert_int_equal(sp_metrics_find(&m, "new"), -ENOENT);
    assert_int_equal(sp_metrics_find(&m, "c"), c);
    assert_int_equal(m.count, 1);
    sp_metrics_deinit(&m);
}

/* ---- Counters and gauges ---- */

static void test_counters_and_gauges_sum_rows(void **state)
{
    (void)state;
    enum { SHARDS = 4 };
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 16), 0);
    /* Kinds interleaved, so slots and ids differ. */
    int h0 = sp_metrics_register(&m, "h0", SP_METRIC_HISTOGRAM);
    int c1 = sp_metrics_register(&m, "c1", SP_METRIC_COUNTER);
    int g1 = sp_metrics_register(&m, "g1", SP_METRIC_GAUGE);
    int h1 = sp_metrics_register(&m, "h1", SP_METRIC_HISTOGRAM);
    int c2 = sp_metrics_register(&m, "c2", SP_METRIC_COUNTER);
    int g2 = sp_metrics_register(&m, "g2", SP_METRIC_GAUGE);
    assert_true(h0 >= 0 && c1 >= 0 && g1 >= 0 && h1 >= 0 && c2 >= 0 && g2 >= 0);
    assert_int_equal(sp_metrics_start(&m, SHARDS), 0);

    assert_int_equal(sp_metrics_counter(&m, c1), 0);
    assert_int_equal(sp_metrics_gauge(&m, g1), 0);
    for (unsigned s = 0; s < SHARDS; s++) {
        for (unsigned k = 0; k <= s; k++)
            sp_counter_add(&m, s, c1, 10 + s);
        sp_counter_add(&m, s, c2, 1000);
        sp_gauge_set(&m, s, g1, 99);
        sp_gauge_set(&m, s, g1, (int64_t)s * 100 - 250); /* last value counts */
        sp_gauge_set(&m, s, g2, -1);
    }
    /* c1: 10 + 2*11 + 3*12 + 4*13; g1: -250 - 150 - 50 + 50. */
    assert_int_equal(sp_metrics_counter(&m, c1), 10 + 22 + 36 + 52);
    assert_int_equal(sp_metrics_counter(&m, c2), 4000);
    assert_true(sp_metrics_gauge(&m, g1) == -400);
    assert_true(sp_metrics_gauge(&m, g2) == -4);

    /* Each row is its shard's own: updating one moves the sum by that. */
    sp_counter_add(&m, 2, c2, 5);
    assert_int_equal(sp_metrics_counter(&m, c2), 4005);
    assert_int_equal(sp_metrics_counter(&m, c1), 120);
    sp_gauge_set(&m, 3, g1, INT64_C(1) << 40);
    assert_true(sp_metrics_gauge(&m, g1) == -450 + (INT64_C(1) << 40));
    assert_true(sp_metrics_gauge(&m, g2) == -4);

    /* Counters and histograms do not share storage. */
    struct sp_hist out;
    sp_metrics_hist(&m, h0, &out);
    assert_int_equal(hist_load(&out.count), 0);
    sp_metrics_hist(&m, h1, &out);
    assert_int_equal(hist_load(&out.count), 0);
    sp_metrics_deinit(&m);
}

/* ---- Histograms ---- */

static void test_hist_bucket_function(void **state)
{
    (void)state;
    /* Exact below 16 (and, with 16 sub-buckets, up to 31). */
    for (uint64_t v = 0; v < 32; v++)
        assert_int_equal(sp_hist_bucket(v), v);
    assert_int_equal(sp_hist_bucket(UINT64_MAX), SP_HIST_BUCKETS - 1);

    /* Monotonic, in range, over a dense low range and every power of two. */
    unsigned prev = 0;
    for (uint64_t v = 0; v < 200000; v++) {
        unsigned b = sp_hist_bucket(v);
        assert_true(b >= prev);
        assert_true(b <= prev + 1);
        assert_true(b < SP_HIST_BUCKETS);
        prev = b;
    }
    for (unsigned e = 4; e < 64; e++) {
        uint64_t p = 1ULL << e;
        assert_true(sp_hist_bucket(p - 1) < sp_hist_bucket(p));
        assert_true(sp_hist_bucket(p) <= sp_hist_bucket(p + 1));
        assert_true(sp_hist_bucket(p) < SP_HIST_BUCKETS);
    }
    sp_rand_seed(&rng, 1);
    uint64_t sample[4096];
    for (unsigned i = 0; i < SP_ARRAY_LEN(sample); i++)
        sample[i] = sp_rand_next(&rng) >> (sp_rand_next(&rng) % 64);
    qsort(sample, SP_ARRAY_LEN(sample), sizeof(sample[0]), compare_u64);
    for (unsigned i = 1; i < SP_ARRAY_LEN(sample); i++)
        assert_true(sp_hist_bucket(sample[i - 1]) <= sp_hist_bucket(sample[i]));

    /*
     * A bucket's reported value (the quantile of a histogram holding v and
     * a larger value, so the cap at max does not apply) is at least v, at
     * most v + v/16, and falls in v's own bucket.
     */
    for (unsigned i = 0; i < SP_ARRAY_LEN(sample) + 64; i++) {
        uint64_t v = i < SP_ARRAY_LEN(sample) ? sample[i] : (UINT64_MAX >> (i - 4096)) - 1;
        static struct sp_hist hist;
        sp_hist_reset(&hist);
        sp_hist_record(&hist, v);
        sp_hist_record(&hist, UINT64_MAX);
        uint64_t q = sp_hist_quantile(&hist, 0.5);
        assert_true(q >= v);
        assert_true(q - v <= v / 16);
        assert_int_equal(sp_hist_bucket(q), sp_hist_bucket(v));
    }
}

/* Checks quantiles of `values` (sorted here) against a histogram of them. */
static void check_quantiles(uint64_t *values, unsigned n)
{
    static struct sp_hist hist;
    sp_hist_reset(&hist);
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++) {
        sp_hist_record(&hist, values[i]);
        sum += values[i];
    }
    qsort(values, n, sizeof(values[0]), compare_u64);
    assert_int_equal(hist_load(&hist.count), n);
    assert_int_equal(hist_load(&hist.sum), sum);
    assert_int_equal(hist_load(&hist.max), values[n - 1]);

    /* Quantiles in thousandths, so the exact rank is an integer ceiling. */
    const unsigned per_mille[] = {0, 1, 10, 100, 250, 500, 750, 900, 950, 990, 999, 1000};
    for (unsigned i = 0; i < SP_ARRAY_LEN(per_mille); i++) {
        uint64_t rank = ((uint64_t)per_mille[i] * n + 999) / 1000;
        if (rank == 0)
            rank = 1;
        uint64_t exact = values[rank - 1];
        uint64_t got = sp_hist_quantile(&hist, per_mille[i] / 1000.0);
        assert_true(got >= exact);
        assert_true(got - exact <= exact / 16); /* within 6.25% */
    }
    assert_int_equal(sp_hist_quantile(&hist, 1.0), values[n - 1]); /* the max, exact */
    assert_true(sp_hist_quantile(&hist, 0.0) <= values[0] + values[0] / 16);
}

static void test_hist_quantiles(void **state)
{
    (void)state;
    enum { N = 20000 };
    static uint64_t values[N];
    sp_rand_seed(&rng, 2024);

    for (unsigned i = 0; i < N; i++) /* uniform */
        values[i] = 1 + sp_rand_next(&rng) % 1000000;
    check_quantiles(values, N);

    for (unsigned i = 0; i < N; i++) /* exponential, mean 100 us */
        values[i] = rng_exponential(100000.0);
    check_quantiles(values, N);

    for (unsigned i = 0; i < N; i++) /* log-uniform over 2^0 .. 2^62 */
        values[i] = rng_log_uniform();
    check_quantiles(values, N);

    for (unsigned i = 0; i < N; i++) /* constant */
        values[i] = 123457;
    check_quantiles(values, N);

    for (unsigned i = 0; i < N; i++) /* small values: exact */
        values[i] = sp_rand_next(&rng) % 20;
    check_quantiles(values, N);

    values[0] = 777; /* a single value */
    check_quantiles(values, 1);

    /* A count that makes most ranks fractional. */
    for (unsigned i = 0; i < N; i++)
        values[i] = 1 + sp_rand_next(&rng) % 5000;
    check_quantiles(values, N - 7);

    /*
     * Values 0..15 once each (all exact buckets): quantile q is the value
     * of rank ceil(16 q), exactly.
     */
    static struct sp_hist hist;
    sp_hist_reset(&hist);
    for (uint64_t v = 0; v < 16; v++)
        sp_hist_record(&hist, v);
    for (unsigned k = 0; k <= 100; k++) {
        uint64_t rank = (k * 16 + 99) / 100;
        assert_int_equal(sp_hist_quantile(&hist, k / 100.0), rank == 0 ? 0 : rank - 1);
    }

    /* Constant values come back exactly at every quantile. */
    sp_hist_reset(&hist);
    for (unsigned i = 0; i < 1000; i++)
        sp_hist_record(&hist, 1000);
    for (unsigned q = 0; q <= 100; q++)
        assert_int_equal(sp_hist_quantile(&hist, q / 100.0), 1000);
}

static void test_hist_empty(void **state)
{
    (void)state;
    static struct sp_hist hist;
    sp_hist_reset(&hist);
    assert_int_equal(sp_hist_quantile(&hist, 0.0), 0);
    assert_int_equal(sp_hist_quantile(&hist, 0.5), 0);
    assert_int_equal(sp_hist_quantile(&hist, 1.0), 0);
    sp_hist_record(&hist, 5000);
    assert_int_equal(sp_hist_quantile(&hist, 0.5), 5000);
    sp_hist_reset(&hist);
    assert_int_equal(hist_load(&hist.count), 0);
    assert_int_equal(hist_load(&hist.max), 0);
    assert_int_equal(sp_hist_quantile(&hist, 0.99), 0);

    /* A registered histogram nobody recorded into. */
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 1), 0);
    int h = sp_metrics_register(&m, "idle", SP_METRIC_HISTOGRAM);
    assert_int_equal(h, 0);
    assert_int_equal(sp_metrics_start(&m, 3), 0);
    static struct sp_hist out;
    sp_hist_record(&out, 99); /* overwritten, not added to */
    sp_metrics_hist(&m, h, &out);
    assert_int_equal(hist_load(&out.count), 0);
    assert_int_equal(hist_load(&out.sum), 0);
    assert_int_equal(sp_hist_quantile(&out, 0.5), 0);
    sp_metrics_deinit(&m);
}

static void test_hist_merge_rows(void **state)
{
    (void)state;
    enum { SHARDS = 3, N = 30000 };
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 2), 0);
    int h = sp_metrics_register(&m, "lat", SP_METRIC_HISTOGRAM);
    int other = sp_metrics_register(&m, "other", SP_METRIC_HISTOGRAM);
    assert_true(h >= 0 && other >= 0);
    assert_int_equal(sp_metrics_start(&m, SHARDS), 0);

    static struct sp_hist all;
    sp_hist_reset(&all);
    static uint64_t values[N];
    sp_rand_seed(&rng, 31337);
    uint64_t sum = 0;
    for (unsigned i = 0; i < N; i++) {
        /* Shards see different ranges: shard s around 10^(s+3). */
        unsigned s = i % SHARDS;
        uint64_t scale = s == 0 ? 1000 : s == 1 ? 10000 : 100000;
        values[i] = scale + sp_rand_next(&rng) % (scale * 9);
        sp_metrics_hist_record(&m, s, h, values[i]);
        sp_hist_record(&all, values[i]);
        sum += values[i];
    }
    sp_metrics_hist_record(&m, 1, other, UINT64_MAX); /* stays out of "lat" */

    static struct sp_hist merged;
    sp_metrics_hist(&m, h, &merged);
    assert_int_equal(hist_load(&merged.count), N);
    assert_int_equal(hist_load(&merged.sum), sum);
    for (unsigned b = 0; b < SP_HIST_BUCKETS; b++)
        assert_int_equal(hist_load(&merged.buckets[b]), hist_load(&all.buckets[b]));
    qsort(values, N, sizeof(values[0]), compare_u64);
    assert_int_equal(hist_load(&merged.max), values[N - 1]);
    assert_int_equal(sp_hist_quantile(&merged, 1.0), values[N - 1]);
    const unsigned per_mille[] = {10, 330, 500, 660, 900, 999};
    for (unsigned i = 0; i < SP_ARRAY_LEN(per_mille); i++) {
        double q = per_mille[i] / 1000.0;
        uint64_t exact = values[(per_mille[i] * N + 999) / 1000 - 1];
        uint64_t got = sp_hist_quantile(&merged, q);
        assert_true(got >= exact);
        assert_true(got - exact <= exact / 16);
        assert_int_equal(got, sp_hist_quantile(&all, q));
    }

    /* sp_hist_merge adds into a non-empty destination; max of both. */
    static struct sp_hist a, b;
    sp_hist_reset(&a);
    sp_hist_reset(&b);
    sp_hist_record(&a, 10);
    sp_hist_record(&a, 5000);
    sp_hist_record(&b, 10);
    sp_hist_record(&b, 70);
    sp_hist_merge(&a, &b);
    assert_int_equal(hist_load(&a.count), 4);
    assert_int_equal(hist_load(&a.sum), 5090);
    assert_int_equal(hist_load(&a.max), 5000);
    assert_int_equal(hist_load(&a.buckets[10]), 2);
    assert_int_equal(hist_load(&b.count), 2); /* the source is untouched */
    sp_hist_merge(&b, &a);
    assert_int_equal(hist_load(&b.max), 5000);
    assert_int_equal(hist_load(&b.count), 6);
    assert_int_equal(sp_hist_quantile(&b, 0.5), 10);
    sp_metrics_deinit(&m);
}

/* ---- Threads ---- */

enum { WRITERS = 4, WRITES = 200000 };

struct writer {
    pthread_t thread;
    struct sp_metrics *metrics;
    unsigned shard;
    int counter, gauge, hist;
    _Atomic int *done;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (uint64_t i = 1; i <= WRITES; i++) {
        sp_counter_add(w->metrics, w->shard, w->counter, 1 + w->shard);
        sp_gauge_set(w->metrics, w->shard, w->gauge, (int64_t)i);
        sp_metrics_hist_record(w->metrics, w->shard, w->hist, i % 1000);
    }
    atomic_fetch_add_explicit(w->done, 1, memory_order_release);
    return NULL;
}

static void test_threads_write_rows_main_reads(void **state)
{
    (void)state;
    struct sp_metrics m;
    assert_int_equal(sp_metrics_init(&m, 4), 0);
    int c = sp_metrics_register(&m, "records", SP_METRIC_COUNTER);
    int g = sp_metrics_register(&m, "progress", SP_METRIC_GAUGE);
    int h = sp_metrics_register(&m, "batch", SP_METRIC_HISTOGRAM);
    assert_true(c >= 0 && g >= 0 && h >= 0);
    assert_int_equal(sp_metrics_start(&m, WRITERS), 0);

    /* Counter total: each writer adds 1 + shard, WRITES times. */
    uint64_t counter_total = 0;
    for (unsigned s = 0; s < WRITERS; s++)
        counter_total += (uint64_t)WRITES * (1 + s);

    _Atomic int done = 0;
    struct writer writers[WRITERS];
    for (unsigned s = 0; s < WRITERS; s++) {
        writers[s] = (struct writer){
            .metrics = &m, .shard = s, .counter = c, .gauge = g, .hist = h, .done = &done};
        assert_int_equal(pthread_create(&writers[s].thread, NULL, writer_main, &writers[s]), 0);
    }

    /* Read while they write: sums only grow and never pass the totals. */
    static struct sp_hist seen;
    uint64_t counter_prev = 0;
    uint64_t hist_count_prev = 0;
    unsigned reads = 0;
    while (atomic_load_explicit(&done, memory_order_acquire) < WRITERS || reads < 10) {
        uint64_t counter = sp_metrics_counter(&m, c);
        assert_true(counter >= counter_prev);
        assert_true(counter <= counter_total);
        counter_prev = counter;
        int64_t gauge = sp_metrics_gauge(&m, g);
        assert_true(gauge >= 0);
        assert_true(gauge <= (int64_t)WRITERS * WRITES);
        sp_metrics_hist(&m, h, &seen);
        uint64_t hist_count = hist_load(&seen.count);
        assert_true(hist_count >= hist_count_prev);
        assert_true(hist_count <= (uint64_t)WRITERS * WRITES);
        assert_true(hist_load(&seen.max) < 1000);
        hist_count_prev = hist_count;
        reads++;
    }
    for (unsigned s = 0; s < WRITERS; s++)
        assert_int_equal(pthread_join(writers[s].thread, NULL), 0);

    assert_int_equal(sp_metrics_counter(&m, c), counter_total);
    assert_true(sp_metrics_gauge(&m, g) == (int64_t)WRITERS * WRITES);
    sp_metrics_hist(&m, h, &seen);
    assert_int_equal(hist_load(&seen.count), (uint64_t)WRITERS * WRITES);
    /* Each writer records i % 1000 for i in 1..200000: 200 rounds of 0..999. */
    assert_int_equal(hist_load(&seen.sum), (uint64_t)WRITERS * (WRITES / 1000) * 999 * 1000 / 2);
    assert_int_equal(hist_load(&seen.max), 999);
    for (unsigned v = 0; v < 32; v++)
        assert_int_equal(hist_load(&seen.buckets[v]), (uint64_t)WRITERS * (WRITES / 1000));
    uint64_t median = sp_hist_quantile(&seen, 0.5);
    assert_true(median >= 499);
    assert_true(median - 499 <= 499 / 16);
    sp_metrics_deinit(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_find),
        cmocka_unit_test(test_register_limits),
        cmocka_unit_test(test_register_after_start_is_busy),
        cmocka_unit_test(test_counters_and_gauges_sum_rows),
        cmocka_unit_test(test_hist_bucket_function),
        cmocka_unit_test(test_hist_quantiles),
        cmocka_unit_test(test_hist_empty),
        cmocka_unit_test(test_hist_merge_rows),
        cmocka_unit_test(test_threads_write_rows_main_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
