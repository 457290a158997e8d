/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics registry, per-shard rows and histogram arithmetic (see
 * sp_metrics.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sp_metrics.h"

int sp_metrics_init(struct sp_metrics *metrics, uint32_t count_max)
{
    SP_ASSERT(metrics != NULL);
    memset(metrics, 0, sizeof(*metrics));
    metrics->descs = calloc(count_max ? count_max : 1, sizeof(*metrics->descs));
    if (metrics->descs == NULL)
        return -ENOMEM;
    metrics->count_max = count_max;
    return 0;
}

void sp_metrics_deinit(struct sp_metrics *metrics)
{
    SP_ASSERT(metrics != NULL);
    if (metrics->rows != NULL) {
        for (unsigned s = 0; s < metrics->shard_count; s++) {
            free(metrics->rows[s].values);
            free(metrics->rows[s].hists);
        }
        free(metrics->rows);
    }
    free(metrics->descs);
    memset(metrics, 0, sizeof(*metrics));
}

int sp_metrics_find(const struct sp_metrics *metrics, const char *name)
{
    SP_ASSERT(metrics != NULL);
    for (uint32_t i = 0; i < metrics->count; i++) {
        if (strcmp(metrics->descs[i].name, name) == 0)
            return (int)i;
    }
    return -ENOENT;
}

int sp_metrics_register(struct sp_metrics *metrics, const char *name, enum sp_metric_kind kind)
{
    SP_ASSERT(metrics != NULL);
    if (metrics->rows != NULL)
        return -EBUSY;
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= SP_METRIC_NAME_BYTES_MAX)
        return -EINVAL;
    int existing = sp_metrics_find(metrics, name);
    if (existing >= 0)
        return metrics->descs[existing].kind == kind ? existing : -EEXIST;
    if (metrics->count >= metrics->count_max)
        return -ENOSPC;

    struct sp_metric_desc *desc = &metrics->descs[metrics->count];
    memcpy(desc->name, name, len + 1);
    desc->kind = kind;
    desc->slot = kind == SP_METRIC_HISTOGRAM ? metrics->hist_count++ : metrics->value_count++;
    return (int)metrics->count++;
}

int sp_metrics_start(struct sp_metrics *metrics, unsigned shard_count)
{
    SP_ASSERT(metrics != NULL);
    SP_ASSERT(metrics->rows == NULL);
    SP_ASSERT(shard_count > 0);
    metrics->rows = aligned_alloc(SP_CACHELINE_BYTES, shard_count * sizeof(*metrics->rows));
    if (metrics->rows == NULL)
        return -ENOMEM;
    memset(metrics->rows, 0, shard_count * sizeof(*metrics->rows));
    metrics->shard_count = shard_count;
    for (unsigned s = 0; s < shard_count; s++) {
        struct sp_metrics_row *row = &metrics->rows[s];
        /* Round up to whole lines so two shards' values never share one. */
        size_t bytes = (metrics->value_count * sizeof(uint64_t) + SP_CACHELINE_BYTES) &
                       ~(size_t)(SP_CACHELINE_BYTES - 1);
        row->values = aligned_alloc(SP_CACHELINE_BYTES, bytes);
        row->hists = calloc(metrics->hist_count ? metrics->hist_count : 1, sizeof(struct sp_hist));
        if (row->values == NULL || row->hists == NULL) {
            sp_metrics_deinit(metrics);
            return -ENOMEM;
        }
        memset(row->values, 0, bytes);
    }
    return 0;
}

uint64_t sp_metrics_counter(const struct sp_metrics *metrics, int id)
{
    SP_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_ASSERT(metrics->descs[id].kind == SP_METRIC_COUNTER);
    uint64_t sum = 0;
    for (unsigned s = 0; s < metrics->shard_count; s++)
        sum += atomic_load_explicit(&metrics->rows[s].values[metrics->descs[id].slot],
                                    memory_order_relaxed);
    return sum;
}

int64_t sp_metrics_gauge(const struct sp_metrics *metrics, int id)
{
    SP_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_ASSERT(metrics->descs[id].kind == SP_METRIC_GAUGE);
    int64_t sum = 0;
    for (unsigned s = 0; s < metrics->shard_count; s++)
        sum += (int64_t)atomic_load_explicit(&metrics->rows[s].values[metrics->descs[id].slot],
                                             memory_order_relaxed);
    return sum;
}

void sp_hist_reset(struct sp_hist *hist)
{
    SP_ASSERT(hist != NULL);
    memset(hist, 0, sizeof(*hist));
}

void sp_hist_merge(struct sp_hist *dst, const struct sp_hist *src)
{
    SP_ASSERT(dst != NULL);
    SP_ASSERT(src != NULL);
    for (unsigned b = 0; b < SP_HIST_BUCKETS; b++) {
        uint64_t n = atomic_load_explicit(&src->buckets[b], memory_order_relaxed);
        if (n != 0)
            atomic_store_explicit(&dst->buckets[b],
                                  atomic_load_explicit(&dst->buckets[b], memory_order_relaxed) + n,
                                  memory_order_relaxed);
    }
    uint64_t count = atomic_load_explicit(&dst->count, memory_order_relaxed) +
                     atomic_load_explicit(&src->count, memory_order_relaxed);
    uint64_t sum = atomic_load_explicit(&dst->sum, memory_order_relaxed) +
                   atomic_load_explicit(&src->sum, memory_order_relaxed);
    uint64_t max = SP_MAX(atomic_load_explicit(&dst->max, memory_order_relaxed),
                          atomic_load_explicit(&src->max, memory_order_relaxed));
    atomic_store_explicit(&dst->count, count, memory_order_relaxed);
    atomic_store_explicit(&dst->sum, sum, memory_order_relaxed);
    atomic_store_explicit(&dst->max, max, memory_order_relaxed);
}

void sp_metrics_hist(const struct sp_metrics *metrics, int id, struct sp_hist *out)
{
    SP_ASSERT(id >= 0 && (uint32_t)id < metrics->count);
    SP_ASSERT(metrics->descs[id].kind == SP_METRIC_HISTOGRAM);
    sp_hist_reset(out);
    for (unsigned s = 0; s < metrics->shard_count; s++)
        sp_hist_merge(out, &metrics->rows[s].hists[metrics->descs[id].slot]);
}

/* Largest value that falls in `bucket`. */
static uint64_t bucket_upper(unsigned bucket)
{
    if (bucket < (1u << SP_HIST_SUB_BITS))
        return bucket;
    unsigned exp = (bucket >> SP_HIST_SUB_BITS) + SP_HIST_SUB_BITS - 1;
    uint64_t sub = bucket & ((1u << SP_HIST_SUB_BITS) - 1);
    unsigned width_shift = exp - SP_HIST_SUB_BITS;
    uint64_t lower = (((uint64_t)1 << SP_HIST_SUB_BITS) + sub) << width_shift;
    return lower + (((uint64_t)1 << width_shift) - 1);
}

uint64_t sp_hist_quantile(const struct sp_hist *hist, double q)
{
    SP_ASSERT(hist != NULL);
    SP_ASSERT(q >= 0.0 && q <= 1.0);
    uint64_t count = atomic_load_explicit(&hist->count, memory_order_relaxed);
    if (count == 0)
        return 0;
    /* Rank of the wanted value, 1-based: the smallest rank covering q. */
    uint64_t rank = (uint64_t)(q * (double)count + 0.999999);
    if (rank == 0)
        rank = 1;
    if (rank > count)
        rank = count;
    uint64_t seen = 0;
    uint64_t max = atomic_load_explicit(&hist->max, memory_order_relaxed);
    for (unsigned b = 0; b < SP_HIST_BUCKETS; b++) {
        seen += atomic_load_explicit(&hist->buckets[b], memory_order_relaxed);
        if (seen >= rank)
            return SP_MIN(bucket_upper(b), max);
    }
    return max;
}
