/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: counters, gauges and latency histograms, kept per shard and
 * summed on read.
 *
 * Metrics are declared in a registry before the shards start (each gets a
 * small integer id); every shard then owns one row of values that only it
 * writes, with relaxed atomic stores, so updating a metric is a plain add on
 * a line no other core writes. A reader on any thread sums the rows with
 * relaxed loads: each value it sees is one a shard really had, and a sum is a
 * consistent total within the shards' last few updates.
 *
 * Histograms are log-linear: exact below 16, then 16 sub-buckets per power of
 * two, so any percentile is within 6.25% of the true value over the whole
 * 64-bit range, in 976 buckets.
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "sp_common.h"

#define SP_HIST_SUB_BITS 4
#define SP_HIST_BUCKETS ((64 - SP_HIST_SUB_BITS + 1) << SP_HIST_SUB_BITS)
#define SP_METRIC_NAME_BYTES_MAX 64

enum sp_metric_kind { SP_METRIC_COUNTER, SP_METRIC_GAUGE, SP_METRIC_HISTOGRAM };

/* A histogram: bucket counts, plus count, sum and max for exact summaries. */
struct sp_hist {
    _Atomic uint64_t buckets[SP_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
    _Atomic uint64_t max;
};

struct sp_metric_desc {
    char name[SP_METRIC_NAME_BYTES_MAX];
    enum sp_metric_kind kind;
    uint32_t slot; /* index into the row's values or histograms */
};

/* One shard's values, cache-line aligned so rows never share a line. */
struct sp_metrics_row {
    _Atomic uint64_t *values; /* counters and gauges (gauges as int64 bits) */
    struct sp_hist *hists;
} SP_CACHELINE_ALIGNED;

struct sp_metrics {
    struct sp_metric_desc *descs;
    uint32_t count;
    uint32_t count_max;
    uint32_t value_count;
    uint32_t hist_count;
    unsigned shard_count;
    struct sp_metrics_row *rows; /* NULL until sp_metrics_start */
};

/* Creates a registry for up to `count_max` metrics. Returns 0 or -ENOMEM. */
SP_MUST_CHECK int sp_metrics_init(struct sp_metrics *metrics, uint32_t count_max);
void sp_metrics_deinit(struct sp_metrics *metrics);

/*
 * Declares a metric and returns its id (>= 0), the id of an existing metric
 * of the same name and kind, -EEXIST for the same name with another kind,
 * -ENOSPC past count_max, -EINVAL for an empty or too long name, or -EBUSY
 * after sp_metrics_start.
 */
SP_MUST_CHECK int sp_metrics_register(struct sp_metrics *metrics, const char *name,
                                      enum sp_metric_kind kind);

/* Looks a metric up by name: its id, or -ENOENT. */
SP_MUST_CHECK int sp_metrics_find(const struct sp_metrics *metrics, const char *name);

/* Allocates one row per shard; no more metrics may be declared. 0 or -ENOMEM. */
SP_MUST_CHECK int sp_metrics_start(struct sp_metrics *metrics, unsigned shard_count);

/* ---- Updates: only on the shard that owns `row` ---- */

static inline struct sp_metrics_row *sp_metrics_row(struct sp_metrics *metrics, unsigned shard)
{
    SP_ASSERT(shard < metrics->shard_count);
    return &metrics->rows[shard];
}

static inline void sp_counter_add(struct sp_metrics *metrics, unsigned shard, int id, uint64_t n)
{
    SP_DEBUG_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_DEBUG_ASSERT(metrics->descs[id].kind == SP_METRIC_COUNTER);
    _Atomic uint64_t *v = &metrics->rows[shard].values[metrics->descs[id].slot];
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void sp_gauge_set(struct sp_metrics *metrics, unsigned shard, int id, int64_t value)
{
    SP_DEBUG_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_DEBUG_ASSERT(metrics->descs[id].kind == SP_METRIC_GAUGE);
    atomic_store_explicit(&metrics->rows[shard].values[metrics->descs[id].slot], (uint64_t)value,
                          memory_order_relaxed);
}

/* Bucket of `value`: exact below 2^SP_HIST_SUB_BITS, log-linear above. */
static inline unsigned sp_hist_bucket(uint64_t value)
{
    if (value < (1u << SP_HIST_SUB_BITS))
        return (unsigned)value;
    unsigned exp = 63u - (unsigned)__builtin_clzll(value);
    unsigned sub = (unsigned)(value >> (exp - SP_HIST_SUB_BITS)) & ((1u << SP_HIST_SUB_BITS) - 1);
    return ((exp - SP_HIST_SUB_BITS + 1) << SP_HIST_SUB_BITS) + sub;
}

/* Records one value in a histogram owned by the calling thread. */
static inline void sp_hist_record(struct sp_hist *hist, uint64_t value)
{
    _Atomic uint64_t *b = &hist->buckets[sp_hist_bucket(value)];
    atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&hist->count,
                          atomic_load_explicit(&hist->count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&hist->sum,
                          atomic_load_explicit(&hist->sum, memory_order_relaxed) + value,
                          memory_order_relaxed);
    if (value > atomic_load_explicit(&hist->max, memory_order_relaxed))
        atomic_store_explicit(&hist->max, value, memory_order_relaxed);
}

static inline void sp_metrics_hist_record(struct sp_metrics *metrics, unsigned shard, int id,
                                          uint64_t value)
{
    SP_DEBUG_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_DEBUG_ASSERT(metrics->descs[id].kind == SP_METRIC_HISTOGRAM);
    sp_hist_record(&metrics->rows[shard].hists[metrics->descs[id].slot], value);
}

/* ---- Reads: any thread ---- */

/* Sum of a counter over all shards. */
uint64_t sp_metrics_counter(const struct sp_metrics *metrics, int id);

/* Sum of a gauge over all shards. */
int64_t sp_metrics_gauge(const struct sp_metrics *metrics, int id);

/* Merges a histogram over all shards into `out` (overwritten). */
void sp_metrics_hist(const struct sp_metrics *metrics, int id, struct sp_hist *out);

/* Clears a histogram (only while no thread records into it). */
void sp_hist_reset(struct sp_hist *hist);

/* Adds `src` into `dst` (dst owned by the caller). */
void sp_hist_merge(struct sp_hist *dst, const struct sp_hist *src);

/*
 * The value at quantile `q` (0..1): the upper bound of the bucket that holds
 * it, capped at the exact maximum. 0 for an empty histogram.
 */
uint64_t sp_hist_quantile(const struct sp_hist *hist, double q);

#endif /* SP_METRICS_H */
