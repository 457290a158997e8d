/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Managed-memory benchmarks:
 *  - segment/reserve_release: take one segment through a budget and give it
 *    back (one pair), from a pool with half its segments already in use.
 */
#include <stdlib.h>

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

const struct sp_bench_case sp_bench_mem_cases[] = {
    {.name = "segment/reserve_release",
     .run_batch = 4096,
     .setup = mem_setup,
     .run = reserve_release_run,
     .teardown = mem_teardown},
    {.name = NULL},
};
