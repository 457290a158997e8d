/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-shard memory: a jemalloc arena for ordinary allocations, and managed
 * memory, a fixed budget reserved at start-up and carved into equal
 * segments (Flink's MemorySegment model) for state, buffers and batches.
 *
 * Managed memory is one mapping per shard, taken and touched when the shard
 * starts, so its pages belong to the shard's core and the hot path never
 * calls the kernel or malloc. Consumers do not take segments from the pool
 * directly: each reserves a named budget (a segment limit) and takes segments
 * through it, so that every consumer has a limit and an exported high-water
 * mark. Running out, of the budget or of the pool, is -ENOBUFS: the caller
 * turns that into backpressure or spills, it never grows the heap.
 *
 * With the build option `allocator=malloc` (SP_MALLOC_ONLY) every segment is
 * its own malloc'd block and the arena is the process heap, so ASan and
 * valgrind see each allocation; otherwise released segments are poisoned
 * under ASan.
 *
 * Thread rules: a pool, its budgets and an arena belong to one shard and are
 * used only on its thread. Memory is returned on the shard that took it.
 */
#ifndef SP_MEM_H
#define SP_MEM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sp_common.h"

#define SP_SEGMENT_BYTES_MIN 4096u
#define SP_SEGMENT_BYTES_DEFAULT (32u * 1024u)
#define SP_SEGMENT_COUNT_MAX (1u << 30)

struct sp_segment_pool {
    uint8_t *base; /* the mapping (NULL in malloc-only builds) */
    size_t mapping_bytes;
    uint32_t segment_bytes; /* a power of two, >= SP_SEGMENT_BYTES_MIN */
    unsigned segment_shift;
    uint32_t segment_count;
    uint32_t free_count;     /* segments on the free stack */
    uint32_t *free_stack;    /* indices of free segments */
    uint32_t used_count_max; /* high-water mark of segments in use */
};

struct sp_budget {
    const char *name;
    struct sp_segment_pool *pool;
    uint32_t limit;        /* segments this consumer may hold at once */
    uint32_t used;         /* segments it holds now */
    uint32_t used_max;     /* high-water mark */
    uint64_t denied_count; /* reservations refused (backpressure events) */
};

/*
 * Segments are page-aligned, and aligned to their size relative to the start
 * of the pool (not in absolute addresses).
 *
 * Reserves `total_bytes` of managed memory as segments of `segment_bytes`
 * (power of two, >= SP_SEGMENT_BYTES_MIN) and touches every page. A budget
 * smaller than one segment gives an empty pool. Returns 0, -EINVAL or
 * -ENOMEM. Call on the owning shard's thread.
 */
SP_MUST_CHECK int sp_segment_pool_init(struct sp_segment_pool *pool, size_t total_bytes,
                                       uint32_t segment_bytes);

/* Releases the mapping. Every segment must have been released. */
void sp_segment_pool_deinit(struct sp_segment_pool *pool);

static inline uint32_t sp_segment_pool_used(const struct sp_segment_pool *pool)
{
    return pool->segment_count - pool->free_count;
}

/*
 * Creates a budget of at most `limit` segments of `pool` for consumer `name`
 * (borrowed, must outlive the budget). Budgets may together promise more than
 * the pool holds; the pool running dry is -ENOBUFS like the limit.
 */
void sp_budget_init(struct sp_budget *budget, struct sp_segment_pool *pool, const char *name,
                    uint32_t limit);

/* Changes the limit; segments already held above it stay until released. */
void sp_budget_set_limit(struct sp_budget *budget, uint32_t limit);

/*
 * Takes one segment for the budget's consumer and stores its address in
 * `*segment_out`. Returns 0, or -ENOBUFS when the budget is at its limit or
 * the pool is empty. The segment's contents are unspecified.
 */
SP_MUST_CHECK static inline int sp_budget_reserve(struct sp_budget *budget, void **segment_out)
{
    struct sp_segment_pool *pool = budget->pool;
    if (SP_UNLIKELY(budget->used >= budget->limit || pool->free_count == 0)) {
        budget->denied_count++;
        return -ENOBUFS;
    }
#ifdef SP_MALLOC_ONLY
    void *segment = aligned_alloc(pool->segment_bytes, pool->segment_bytes);
    if (segment == NULL) {
        budget->denied_count++;
        return -ENOBUFS;
    }
    pool->free_count--;
#else
    uint32_t index = pool->free_stack[--pool->free_count];
    SP_DEBUG_ASSERT(index < pool->segment_count);
    void *segment = pool->base + ((size_t)index << pool->segment_shift);
    SP_UNPOISON(segment, pool->segment_bytes);
#endif
    uint32_t used_pool = pool->segment_count - pool->free_count;
    if (used_pool > pool->used_count_max)
        pool->used_count_max = used_pool;
    if (++budget->used > budget->used_max)
        budget->used_max = budget->used;
    *segment_out = segment;
    return 0;
}

/* Returns a segment taken through the same budget. */
static inline void sp_budget_release(struct sp_budget *budget, void *segment)
{
    struct sp_segment_pool *pool = budget->pool;
    SP_ASSERT(budget->used > 0);
    SP_ASSERT(pool->free_count < pool->segment_count);
#ifdef SP_MALLOC_ONLY
    free(segment);
#else
    uintptr_t offset = (uintptr_t)segment - (uintptr_t)pool->base;
    SP_ASSERT(offset < pool->mapping_bytes);
    SP_DEBUG_ASSERT((offset & (pool->segment_bytes - 1)) == 0);
    SP_POISON(segment, pool->segment_bytes);
    pool->free_stack[pool->free_count] = (uint32_t)(offset >> pool->segment_shift);
#endif
    pool->free_count++;
    budget->used--;
}

/* ---- Arena: ordinary allocations of one shard ---- */

struct sp_arena {
    unsigned index; /* jemalloc arena index; unused in malloc-only builds */
    bool created;
};

/*
 * Creates a jemalloc arena and binds the calling thread to it, so that every
 * allocation this thread makes, malloc included, comes from it. In
 * malloc-only builds it only records that it was called. Returns 0 or -errno.
 */
SP_MUST_CHECK int sp_arena_init(struct sp_arena *arena);
void sp_arena_deinit(struct sp_arena *arena);

/* Allocates from the arena; NULL when out of memory. */
void *sp_arena_alloc(struct sp_arena *arena, size_t bytes);
void sp_arena_free(struct sp_arena *arena, void *ptr);

/*
 * Parses a byte size with an optional K, M, G or T suffix (powers of 1024,
 * case-insensitive, optional trailing B). Returns 0, or -EINVAL for anything
 * else, -ERANGE for a value past SIZE_MAX.
 */
SP_MUST_CHECK int sp_parse_bytes(const char *text, size_t *bytes_out);

#endif /* SP_MEM_H */
