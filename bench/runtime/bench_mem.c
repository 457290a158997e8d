/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Managed-memory benchmarks:
 *  - segment/reserve_release: take one segment through a budget and give it
 *    back (one pair), from a pool with half its segments already in use.
 *  - memory/random_line/MiB: read one byte of a random cache line of a
 *    managed-memory pool of that size (huge pages, as keyed state has),
 *    32 independent reads at a time with prefetches: the rate at which this
 *    machine serves random lines, the ceiling for state larger than the
 *    caches (a keyed update costs two: index slot and entry).
 */
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_mem.h"

#define POOL_SEGMENTS 4096u
#define HELD_SEGMENTS (POOL_SEGMENTS / 2)

struct mem_bench {
    struct sp_segment_pool pool;
    struct sp_budget budget;
    void *held[HELD_SEGMENTS];
};

static void *mem_setup(int64_t arg)
{
    (void)arg;
    struct mem_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    if (sp_segment_pool_init(&b->pool, (size_t)POOL_SEGMENTS * SP_SEGMENT_BYTES_MIN,
                             SP_SEGMENT_BYTES_MIN) < 0) {
        free(b);
        return NULL;
    }
    sp_budget_init(&b->budget, &b->pool, "bench", POOL_SEGMENTS);
    for (unsigned i = 0; i < HELD_SEGMENTS; i++) {
        if (sp_budget_reserve(&b->budget, &b->held[i]) < 0)
            abort();
    }
    return b;
}

static double reserve_release_run(void *state, uint64_t iterations)
{
    struct mem_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        void *segment;
        if (SP_UNLIKELY(sp_budget_reserve(&b->budget, &segment) < 0))
            abort();
        __asm__ volatile("" : : "r"(segment) : "memory");
        sp_budget_release(&b->budget, segment);
    }
    return 0;
}

static void mem_teardown(void *state)
{
    struct mem_bench *b = state;
    for (unsigned i = 0; i < HELD_SEGMENTS; i++)
        sp_budget_release(&b->budget, b->held[i]);
    sp_segment_pool_deinit(&b->pool);
    free(b);
}

struct line_bench {
    struct sp_segment_pool pool;
    uint8_t *base;
    uint64_t lines;
    uint64_t x;
    uint64_t sink;
};

static void *line_setup(int64_t mib)
{
    struct line_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    size_t bytes = (size_t)mib << 20;
    if (sp_segment_pool_init(&b->pool, bytes, 1u << 20) < 0 || b->pool.base == NULL) {
        free(b);
        return NULL;
    }
    b->base = b->pool.base;
    memset(b->base, 1, b->pool.mapping_bytes);
    b->lines = b->pool.mapping_bytes / 64;
    b->x = 88172645463325252ull;
    return b;
}

#define LINE_GROUP 32u

static double line_run(void *state, uint64_t iterations)
{
    struct line_bench *b = state;
    uint64_t x = b->x, sum = 0;
    uint64_t at[LINE_GROUP];
    for (uint64_t i = 0; i < iterations; i += LINE_GROUP) {
        for (unsigned j = 0; j < LINE_GROUP; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            at[j] = (x % b->lines) * 64;
            __builtin_prefetch(b->base + at[j]);
        }
        for (unsigned j = 0; j < LINE_GROUP; j++)
            sum += b->base[at[j]];
    }
    b->x = x;
    b->sink += sum;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static void line_teardown(void *state)
{
    struct line_bench *b = state;
    sp_segment_pool_deinit(&b->pool);
    free(b);
}

const struct sp_bench_case sp_bench_mem_cases[] = {
    {.name = "segment/reserve_release",
     .run_batch = 4096,
     .setup = mem_setup,
     .run = reserve_release_run,
     .teardown = mem_teardown},
    {.name = "memory/random_line",
     .args = {256},
     .run_batch = 1u << 16,
     .setup = line_setup,
     .run = line_run,
     .teardown = line_teardown},
    {.name = NULL},
};
