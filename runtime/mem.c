/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Managed-memory segment pool, budgets and the per-shard jemalloc arena (see
 * sp_mem.h). The reserve/release hot path is inline in the header; this file
 * holds set-up, tear-down and the size parser.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef SP_MALLOC_ONLY
#include <jemalloc/jemalloc.h>
#endif

#include "sp_mem.h"

/* ---- Segment pool ---- */

int sp_segment_pool_init(struct sp_segment_pool *pool, size_t total_bytes, uint32_t segment_bytes)
{
    SP_ASSERT(pool != NULL);
    memset(pool, 0, sizeof(*pool));
    if (!sp_is_pow2(segment_bytes) || segment_bytes < SP_SEGMENT_BYTES_MIN)
        return -EINVAL;
    size_t count = total_bytes / segment_bytes;
    if (count > SP_SEGMENT_COUNT_MAX)
        return -EINVAL;

    pool->segment_bytes = segment_bytes;
    pool->segment_shift = (unsigned)__builtin_ctz(segment_bytes);
    pool->segment_count = (uint32_t)count;
    pool->free_count = (uint32_t)count;
    if (count == 0)
        return 0;
#ifndef SP_MALLOC_ONLY
    pool->free_stack = malloc(count * sizeof(uint32_t));
    if (pool->free_stack == NULL)
        return -ENOMEM;
    pool->mapping_bytes = count * segment_bytes;
    /*
     * Transparent huge pages where the kernel gives them: keyed state is
     * hash tables over this memory, read at random, and with 4 KiB pages a
     * random access misses the TLB as well as the cache. The mapping is
     * over-allocated by 2 MiB and the part before the first 2 MiB boundary
     * given back, so huge pages can back all of it. Then every page is
     * touched now (MADV_POPULATE_WRITE, or by hand on kernels before 5.14):
     * the budget is really reserved at start, not on first use.
     */
    size_t huge = 2u << 20;
    void *raw = mmap(NULL, pool->mapping_bytes + huge, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        free(pool->free_stack);
        memset(pool, 0, sizeof(*pool));
        return -ENOMEM;
    }
    uintptr_t start = ((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1);
    if (start > (uintptr_t)raw)
        munmap(raw, start - (uintptr_t)raw);
    size_t tail = (uintptr_t)raw + pool->mapping_bytes + huge - (start + pool->mapping_bytes);
    if (tail > 0)
        munmap((void *)(start + pool->mapping_bytes), tail);
    void *base = (void *)start;
    (void)madvise(base, pool->mapping_bytes, MADV_HUGEPAGE);
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    if (madvise(base, pool->mapping_bytes, MADV_POPULATE_WRITE) != 0) {
        if (errno != EINVAL) { /* out of memory: say so, do not get killed */
            munmap(base, pool->mapping_bytes);
            free(pool->free_stack);
            memset(pool, 0, sizeof(*pool));
            return -ENOMEM;
        }
        /* A kernel before 5.14: touch every page by hand. */
        long page = sysconf(_SC_PAGESIZE);
        for (size_t off = 0; off < pool->mapping_bytes; off += (size_t)page)
            ((volatile uint8_t *)base)[off] = 0;
    }
    pool->base = base;
    /* Hand out low addresses first: the stack pops from its end. */
    for (uint32_t i = 0; i < count; i++)
        pool->free_stack[i] = (uint32_t)(count - 1 - i);
    SP_POISON(pool->base, pool->mapping_bytes);
#endif
    return 0;
}

void sp_segment_pool_deinit(struct sp_segment_pool *pool)
{
    SP_ASSERT(pool != NULL);
    SP_ASSERT(pool->free_count == pool->segment_count);
#ifndef SP_MALLOC_ONLY
    if (pool->base != NULL) {
        SP_UNPOISON(pool->base, pool->mapping_bytes);
        munmap(pool->base, pool->mapping_bytes);
    }
    free(pool->free_stack);
#endif
    memset(pool, 0, sizeof(*pool));
}

void sp_budget_init(struct sp_budget *budget, struct sp_segment_pool *pool, const char *name,
                    uint32_t limit)
{
    SP_ASSERT(budget != NULL);
    SP_ASSERT(pool != NULL);
    SP_ASSERT(name != NULL);
    memset(budget, 0, sizeof(*budget));
    budget->name = name;
    budget->pool = pool;
    budget->limit = limit;
}

void sp_budget_set_limit(struct sp_budget *budget, uint32_t limit)
{
    SP_ASSERT(budget != NULL);
    budget->limit = limit;
}

/* ---- Arena ---- */

#ifdef SP_MALLOC_ONLY
int sp_arena_init(struct sp_arena *arena)
{
    SP_ASSERT(arena != NULL);
    arena->index = 0;
    arena->created = true;
    return 0;
}

void sp_arena_deinit(struct sp_arena *arena)
{
    SP_ASSERT(arena != NULL);
    arena->created = false;
}

void *sp_arena_alloc(struct sp_arena *arena, size_t bytes)
{
    SP_ASSERT(arena->created);
    return malloc(bytes);
}

void sp_arena_free(struct sp_arena *arena, void *ptr)
{
    SP_ASSERT(arena->created);
    free(ptr);
}
#else
/*
 * Arenas made for shards are kept and handed to later shards (a process may
 * start runtimes one after another: tests, benchmarks), since destroying
 * one would free what a shard allocated and left to others. Guarded by a
 * mutex: this is start-up, not the data path.
 */
#define SP_ARENAS_SPARE_MAX 1024
static pthread_mutex_t arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned arenas_spare[SP_ARENAS_SPARE_MAX];
static unsigned arenas_spare_count;

static int arena_take(unsigned *index)
{
    pthread_mutex_lock(&arenas_lock);
    bool reused = arenas_spare_count > 0;
    if (reused)
        *index = arenas_spare[--arenas_spare_count];
    pthread_mutex_unlock(&arenas_lock);
    if (reused)
        return 0;
    size_t len = sizeof(*index);
    return -mallctl("arenas.create", index, &len, NULL, 0);
}

int sp_arena_init(struct sp_arena *arena)
{
    SP_ASSERT(arena != NULL);
    unsigned index = 0;
    int err = -arena_take(&index);
    if (err != 0)
        return -err;
    err = mallctl("thread.arena", NULL, NULL, &index, sizeof(index));
    if (err != 0)
        return -err;
    /* Blocks this thread freed before binding sit in its cache and belong to
     * the old arena: flush them, or the next allocations would reuse them. */
    err = mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    if (err != 0)
        return -err;
    arena->index = index;
    arena->created = true;
    return 0;
}

void sp_arena_deinit(struct sp_arena *arena)
{
    SP_ASSERT(arena != NULL);
    SP_ASSERT(arena->created);
    /* Back to arena 0, cache flushed, and the arena kept for the next shard. */
    unsigned zero = 0;
    (void)mallctl("thread.arena", NULL, NULL, &zero, sizeof(zero));
    (void)mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    pthread_mutex_lock(&arenas_lock);
    if (arenas_spare_count < SP_ARENAS_SPARE_MAX)
        arenas_spare[arenas_spare_count++] = arena->index;
    pthread_mutex_unlock(&arenas_lock);
    arena->created = false;
}

void *sp_arena_alloc(struct sp_arena *arena, size_t bytes)
{
    SP_ASSERT(arena->created);
    return mallocx(bytes == 0 ? 1 : bytes, MALLOCX_ARENA(arena->index));
}

void sp_arena_free(struct sp_arena *arena, void *ptr)
{
    SP_ASSERT(arena->created);
    if (ptr != NULL)
        dallocx(ptr, 0);
}
#endif

/* ---- Sizes ---- */

int sp_parse_bytes(const char *text, size_t *bytes_out)
{
    SP_ASSERT(bytes_out != NULL);
    if (text == NULL || !isdigit((unsigned char)text[0]))
        return -EINVAL;
    uint64_t value = 0;
    const char *p = text;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return -ERANGE;
        value = value * 10 + digit;
    }
    unsigned shift = 0;
    switch (toupper((unsigned char)*p)) {
    case 'K':
        shift = 10;
        p++;
        break;
    case 'M':
        shift = 20;
        p++;
        break;
    case 'G':
        shift = 30;
        p++;
        break;
    case 'T':
        shift = 40;
        p++;
        break;
    default:
        break;
    }
    if (toupper((unsigned char)*p) == 'B')
        p++;
    if (*p != '\0')
        return -EINVAL;
    if (shift != 0 && value > (SIZE_MAX >> shift))
        return -ERANGE;
    if (value > SIZE_MAX)
        return -ERANGE;
    *bytes_out = (size_t)(value << shift);
    return 0;
}
