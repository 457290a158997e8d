/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Managed memory: segment-pool set-up (bad segment sizes, empty pools),
 * budgets (exhaustion is -ENOBUFS and counted, release then reserve, limits
 * changed while segments are held, two budgets over one pool that runs dry
 * first), high-water marks of budgets and pool, and the segments themselves:
 * distinct, aligned, inside the one mapping (or, in SP_MALLOC_ONLY builds,
 * separate aligned allocations) and writable end to end. Also the byte-size
 * parser and the per-shard arena on the test thread. Every test passes in
 * both allocator builds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#ifndef SP_MALLOC_ONLY
#include <jemalloc/jemalloc.h>
#endif

#include "sp_mem.h"

#define SEGMENTS_MAX 64

/* ---- Pool set-up ---- */

static void test_pool_rejects_bad_segment_sizes(void **state)
{
    (void)state;
    const uint32_t bad[] = {0,    1,    2,     512,   1024,       2048,        4095,
                            4097, 6144, 12288, 40000, (3u << 12), 0x80000001u, UINT32_MAX};
    struct sp_segment_pool pool;
    for (unsigned i = 0; i < SP_ARRAY_LEN(bad); i++)
        assert_int_equal(sp_segment_pool_init(&pool, 1u << 20, bad[i]), -EINVAL);

    /* More segments than SP_SEGMENT_COUNT_MAX: refused before any mapping. */
    size_t too_many = ((size_t)SP_SEGMENT_COUNT_MAX + 1) * SP_SEGMENT_BYTES_MIN;
    assert_int_equal(sp_segment_pool_init(&pool, too_many, SP_SEGMENT_BYTES_MIN), -EINVAL);
    assert_int_equal(sp_segment_pool_init(&pool, SIZE_MAX, SP_SEGMENT_BYTES_MIN), -EINVAL);

    /* The smallest and a large power of two are fine. */
    assert_int_equal(sp_segment_pool_init(&pool, 1u << 20, SP_SEGMENT_BYTES_MIN), 0);
    assert_int_equal(pool.segment_count, (1u << 20) / SP_SEGMENT_BYTES_MIN);
    assert_int_equal(pool.free_count, pool.segment_count);
    assert_int_equal(sp_segment_pool_used(&pool), 0);
    sp_segment_pool_deinit(&pool);
    assert_int_equal(sp_segment_pool_init(&pool, 4u << 20, 1u << 20), 0);
    assert_int_equal(pool.segment_count, 4);
    sp_segment_pool_deinit(&pool);
}

static void test_pool_zero_budget(void **state)
{
    (void)state;
    const size_t totals[] = {0, 1, SP_SEGMENT_BYTES_DEFAULT - 1};
    for (unsigned i = 0; i < SP_ARRAY_LEN(totals); i++) {
        struct sp_segment_pool pool;
        assert_int_equal(sp_segment_pool_init(&pool, totals[i], SP_SEGMENT_BYTES_DEFAULT), 0);
        assert_int_equal(pool.segment_count, 0);
        assert_int_equal(sp_segment_pool_used(&pool), 0);

        struct sp_budget budget;
        sp_budget_init(&budget, &pool, "empty", 10);
        void *seg = (void *)&budget; /* must stay untouched on failure */
        assert_int_equal(sp_budget_reserve(&budget, &seg), -ENOBUFS);
        assert_int_equal(sp_budget_reserve(&budget, &seg), -ENOBUFS);
        assert_ptr_equal(seg, &budget);
        assert_int_equal(budget.denied_count, 2);
        assert_int_equal(budget.used, 0);
        assert_int_equal(budget.used_max, 0);
        assert_int_equal(pool.used_count_max, 0);
        sp_segment_pool_deinit(&pool);
    }
}

/* ---- Budgets ---- */

static void test_budget_exhaustion_and_release(void **state)
{
    (void)state;
    struct sp_segment_pool pool;
    assert_int_equal(sp_segment_pool_init(&pool, 16 * 4096, 4096), 0);
    struct sp_budget budget;
    sp_budget_init(&budget, &pool, "window", 4);
    assert_string_equal(budget.name, "window");
    assert_int_equal(budget.limit, 4);

    void *segs[4] = {0};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(sp_budget_reserve(&budget, &segs[i]), 0);
        assert_non_null(segs[i]);
    }
    assert_int_equal(budget.used, 4);
    assert_int_equal(budget.denied_count, 0);

    /* At the limit, though the pool has 12 left. */
    void *extra = NULL;
    assert_int_equal(sp_budget_reserve(&budget, &extra), -ENOBUFS);
    assert_null(extra);
    assert_int_equal(sp_budget_reserve(&budget, &extra), -ENOBUFS);
    assert_int_equal(budget.denied_count, 2);
    assert_int_equal(budget.used, 4);
    assert_int_equal(sp_segment_pool_used(&pool), 4);

    /* Release one, and a reservation succeeds again. */
    sp_budget_release(&budget, segs[2]);
    assert_int_equal(budget.used, 3);
    assert_int_equal(sp_segment_pool_used(&pool), 3);
    assert_int_equal(sp_budget_reserve(&budget, &segs[2]), 0);
    assert_non_null(segs[2]);
    assert_int_equal(sp_budget_reserve(&budget, &extra), -ENOBUFS);
    assert_int_equal(budget.denied_count, 3);

    for (unsigned i = 0; i < 4; i++)
        sp_budget_release(&budget, segs[i]);
    assert_int_equal(budget.used, 0);
    assert_int_equal(budget.used_max, 4);
    assert_int_equal(sp_segment_pool_used(&pool), 0);
    sp_segment_pool_deinit(&pool);
}

static void test_high_water_marks(void **state)
{
    (void)state;
    struct sp_segment_pool pool;
    assert_int_equal(sp_segment_pool_init(&pool, 10 * 8192, 8192), 0);
    struct sp_budget a, b;
    sp_budget_init(&a, &pool, "a", 10);
    sp_budget_init(&b, &pool, "b", 10);
    void *sa[10] = {0}, *sb[10] = {0};
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(sp_budget_reserve(&a, &sa[i]), 0);
    for (unsigned i = 0; i < 3; i++)
        sp_budget_release(&a, sa[i]);
    assert_int_equal(a.used, 2);
    assert_int_equal(a.used_max, 5);
    assert_int_equal(pool.used_count_max, 5);

    /* b's peak (4) is lower than a's, but the pool's peak counts both. */
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(sp_budget_reserve(&b, &sb[i]), 0);
    assert_int_equal(b.used_max, 4);
    assert_int_equal(sp_segment_pool_used(&pool), 6);
    assert_int_equal(pool.used_count_max, 6);
    sp_budget_release(&b, sb[3]);
    assert_int_equal(sp_budget_reserve(&a, &sa[0]), 0);
    assert_int_equal(a.used, 3);
    assert_int_equal(a.used_max, 5);
    assert_int_equal(pool.used_count_max, 6);

    sp_budget_release(&a, sa[0]);
    sp_budget_release(&a, sa[3]);
    sp_budget_release(&a, sa[4]);
    for (unsigned i = 0; i < 3; i++)
        sp_budget_release(&b, sb[i]);
    assert_int_equal(sp_segment_pool_used(&pool), 0);
    assert_int_equal(pool.used_count_max, 6); /* a mark, not the current use */
    assert_int_equal(a.used_max, 5);
    assert_int_equal(b.used_max, 4);
    sp_segment_pool_deinit(&pool);
}

/* Budgets may promise more than the pool holds: the pool runs dry first. */
static void test_shared_pool_runs_dry(void **state)
{
    (void)state;
    struct sp_segment_pool pool;
    assert_int_equal(sp_segment_pool_init(&pool, 8 * 4096, 4096), 0);
    struct sp_budget a, b;
    sp_budget_init(&a, &pool, "state", 6);
    sp_budget_init(&b, &pool, "network", 6);
    void *sa[6] = {0}, *sb[6] = {0};
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(sp_budget_reserve(&a, &sa[i]), 0);
    assert_int_equal(sp_budget_reserve(&b, &sb[0]), 0);
    assert_int_equal(sp_budget_reserve(&b, &sb[1]), 0);

    /* b is under its limit but the pool is empty. */
    void *none = NULL;
    assert_int_equal(sp_budget_reserve(&b, &none), -ENOBUFS);
    assert_null(none);
    assert_int_equal(b.used, 2);
    assert_int_equal(b.denied_count, 1);
    /* a is at its limit. */
    assert_int_equal(sp_budget_reserve(&a, &none), -ENOBUFS);
    assert_int_equal(a.denied_count, 1);
    assert_int_equal(sp_segment_pool_used(&pool), 8);
    assert_int_equal(pool.free_count, 0);

    /* a gives back 3; b takes them and the pool is dry again. */
    for (unsigned i = 3; i < 6; i++)
        sp_budget_release(&a, sa[i]);
    for (unsigned i = 2; i < 5; i++)
        assert_int_equal(sp_budget_reserve(&b, &sb[i]), 0);
    assert_int_equal(sp_budget_reserve(&b, &none), -ENOBUFS);
    assert_int_equal(b.denied_count, 2);
    assert_int_equal(b.used, 5);
    assert_int_equal(pool.used_count_max, 8);

    for (unsigned i = 0; i < 3; i++)
        sp_budget_release(&a, sa[i]);
    for (unsigned i = 0; i < 5; i++)
        sp_budget_release(&b, sb[i]);
    assert_int_equal(sp_segment_pool_used(&pool), 0);
    sp_segment_pool_deinit(&pool);
}

static void test_budget_set_limit(void **state)
{
    (void)state;
    struct sp_segment_pool pool;
    assert_int_equal(sp_segment_pool_init(&pool, 32 * 4096, 4096), 0);
    struct sp_budget budget;
    sp_budget_init(&budget, &pool, "sort", 4);
    void *segs[12] = {0};
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(sp_budget_reserve(&budget, &segs[i]), 0);

    /* Lowered below what is held: the held segments stay. */
    sp_budget_set_limit(&budget, 2);
    assert_int_equal(budget.limit, 2);
    assert_int_equal(budget.used, 4);
    void *none = NULL;
    assert_int_equal(sp_budget_reserve(&budget, &none), -ENOBUFS);
    sp_budget_release(&budget, segs[3]);
    sp_budget_release(&budget, segs[2]);
    assert_int_equal(sp_budget_reserve(&budget, &none), -ENOBUFS); /* 2 held, limit 2 */
    sp_budget_release(&budget, segs[1]);
    assert_int_equal(sp_budget_reserve(&budget, &segs[1]), 0);
    assert_int_equal(budget.denied_count, 2);

    /* Raised: room for 10 more. */
    sp_budget_set_limit(&budget, 12);
    for (unsigned i = 2; i < 12; i++)
        assert_int_equal(sp_budget_reserve(&budget, &segs[i]), 0);
    assert_int_equal(sp_budget_reserve(&budget, &none), -ENOBUFS);
    assert_int_equal(budget.used, 12);
    assert_int_equal(budget.used_max, 12);

    /* Zero: nothing more. */
    sp_budget_set_limit(&budget, 0);
    for (unsigned i = 0; i < 12; i++)
        sp_budget_release(&budget, segs[i]);
    assert_int_equal(sp_budget_reserve(&budget, &none), -ENOBUFS);
    assert_null(none);
    assert_int_equal(budget.used, 0);
    sp_segment_pool_deinit(&pool);
}

/* ---- Segments ---- */

static int compare_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a;
    uintptr_t y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/*
 * Takes every segment of a pool and checks each is distinct from the others,
 * aligned and writable over its whole length (patterns written to all of
 * them first and read back after, so any overlap shows).
 */
static void check_segments(uint32_t segment_bytes, uint32_t count)
{
    SP_ASSERT(count <= SEGMENTS_MAX);
    struct sp_segment_pool pool;
    assert_int_equal(
        sp_segment_pool_init(&pool, (size_t)count * segment_bytes + 100, segment_bytes), 0);
    assert_int_equal(pool.segment_count, count);
    struct sp_budget budget;
    sp_budget_init(&budget, &pool, "all", count + 5);
    void *segs[SEGMENTS_MAX] = {0};
    for (uint32_t round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < count; i++) {
            assert_int_equal(sp_budget_reserve(&budget, &segs[i]), 0);
            assert_non_null(segs[i]);
            memset(segs[i], (int)(i * 7 + round + 1), segment_bytes);
        }
        void *none = NULL;
        assert_int_equal(sp_budget_reserve(&budget, &none), -ENOBUFS);
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *p = segs[i];
            uint8_t want = (uint8_t)(i * 7 + round + 1);
            assert_int_equal(p[0], want);
            assert_int_equal(p[segment_bytes / 2], want);
            assert_int_equal(p[segment_bytes - 1], want);
            assert_true(memchr(p, want ^ 0xFF, segment_bytes) == NULL);
#ifdef SP_MALLOC_ONLY
            assert_int_equal((uintptr_t)p % segment_bytes, 0);
#else
            /*
             * The mapping is only page-aligned (mmap promises no more), so
             * segments are aligned to their size relative to its base, and
             * to pages absolutely.
             */
            assert_non_null(pool.base);
            assert_true(p >= pool.base);
            assert_true(p + segment_bytes <= pool.base + pool.mapping_bytes);
            assert_int_equal((uintptr_t)(p - pool.base) % segment_bytes, 0);
            assert_int_equal((uintptr_t)p % 4096, 0);
#endif
        }
        void *sorted[SEGMENTS_MAX];
        memcpy(sorted, segs, count * sizeof(void *));
        qsort(sorted, count, sizeof(void *), compare_ptr);
        for (uint32_t i = 1; i < count; i++)
            assert_true((uintptr_t)sorted[i - 1] + segment_bytes <= (uintptr_t)sorted[i]);
        assert_int_equal(sp_segment_pool_used(&pool), count);
        /* Release in a scrambled order; the second round takes them again. */
        for (uint32_t i = 0; i < count; i++)
            sp_budget_release(&budget, segs[(i * 5 + 3) % count]);
        assert_int_equal(sp_segment_pool_used(&pool), 0);
    }
    assert_int_equal(budget.used_max, count);
    assert_int_equal(pool.used_count_max, count);
    sp_segment_pool_deinit(&pool);
}

static void test_segments_distinct_aligned_writable(void **state)
{
    (void)state;
    check_segments(SP_SEGMENT_BYTES_MIN, 64);
    check_segments(SP_SEGMENT_BYTES_DEFAULT, 32);
    check_segments(1u << 20, 6);
    check_segments(8192, 1);
}

/* ---- Sizes ---- */

static void test_parse_bytes(void **state)
{
    (void)state;
    const struct {
        const char *text;
        size_t bytes;
    } good[] = {
        {"0", 0},
        {"1", 1},
        {"007", 7},
        {"4096", 4096},
        {"1K", 1024},
        {"1k", 1024},
        {"3M", 3ull << 20},
        {"3m", 3ull << 20},
        {"2G", 2ull << 30},
        {"2g", 2ull << 30},
        {"5T", 5ull << 40},
        {"5t", 5ull << 40},
        {"64KB", 64ull << 10},
        {"64kb", 64ull << 10},
        {"64Kb", 64ull << 10},
        {"1MB", 1ull << 20},
        {"12B", 12},
        {"12b", 12},
        {"0K", 0},
        {"18446744073709551615", SIZE_MAX},
        {"16777215T", 16777215ull << 40},
        {"17179869183G", 17179869183ull << 30},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(good); i++) {
        size_t bytes = 12345;
        assert_int_equal(sp_parse_bytes(good[i].text, &bytes), 0);
        assert_true(bytes == good[i].bytes);
    }

    const char *bad[] = {"",    "K",   "B",     "KB",   "-1",   "+1",      " 1",   "1 ",
                         "1\n", "1KK", "1BB",   "1KiB", "1.5K", "1e3",     "0x10", "1P",
                         "1 K", "abc", "12KBx", "1BK",  "1Y",   "\xd9\xa3"};
    for (unsigned i = 0; i < SP_ARRAY_LEN(bad); i++) {
        size_t bytes = 12345;
        assert_int_equal(sp_parse_bytes(bad[i], &bytes), -EINVAL);
        assert_true(bytes == 12345);
    }
    size_t bytes = 12345;
    assert_int_equal(sp_parse_bytes(NULL, &bytes), -EINVAL);

    const char *range[] = {
        "18446744073709551616", "99999999999999999999999999", "16777216T",
        "17179869184G",         "18446744073709551615K",      "100000000000000000000b"};
    for (unsigned i = 0; i < SP_ARRAY_LEN(range); i++) {
        bytes = 12345;
        assert_int_equal(sp_parse_bytes(range[i], &bytes), -ERANGE);
        assert_true(bytes == 12345);
    }
}

/* ---- Arena ---- */

static void test_arena(void **state)
{
    (void)state;
    /*
     * Like a shard thread that allocated before its arena was made: small
     * blocks freed now sit in this thread's cache, and must not be handed
     * out as the arena's memory afterwards.
     */
    void *warm[64];
    for (unsigned i = 0; i < SP_ARRAY_LEN(warm); i++)
        warm[i] = malloc(i % 2 ? 1 : 256);
    for (unsigned i = 0; i < SP_ARRAY_LEN(warm); i++)
        free(warm[i]);
#ifndef SP_MALLOC_ONLY
    /* The same through jemalloc itself: under ASan, malloc is ASan's. */
    for (unsigned i = 0; i < SP_ARRAY_LEN(warm); i++)
        warm[i] = mallocx(i % 2 ? 1 : 256, 0);
    for (unsigned i = 0; i < SP_ARRAY_LEN(warm); i++)
        dallocx(warm[i], 0);
#endif

    struct sp_arena arena;
    assert_int_equal(sp_arena_init(&arena), 0);
    assert_true(arena.created);

    const size_t sizes[] = {1, 7, 64, 100, 4096, 65537, 1u << 20, 5u << 20};
    void *ptrs[SP_ARRAY_LEN(sizes)];
    for (unsigned i = 0; i < SP_ARRAY_LEN(sizes); i++) {
        ptrs[i] = sp_arena_alloc(&arena, sizes[i]);
        assert_non_null(ptrs[i]);
        memset(ptrs[i], 0xA0 + (int)i, sizes[i]);
    }
    for (unsigned i = 0; i < SP_ARRAY_LEN(sizes); i++) {
        const uint8_t *p = ptrs[i];
        assert_int_equal(p[0], 0xA0 + i);
        assert_int_equal(p[sizes[i] - 1], 0xA0 + i);
    }
#ifndef SP_MALLOC_ONLY
    /*
     * The allocations, and the thread's plain mallocs, come from the arena
     * (plain malloc only without ASan, which replaces malloc).
     */
    void *plain = malloc(256);
    assert_non_null(plain);
    void *both[] = {ptrs[0], ptrs[3], ptrs[6], plain};
    unsigned index[SP_ARRAY_LEN(both)];
    int err[SP_ARRAY_LEN(both)];
    for (unsigned i = 0; i < SP_ARRAY_LEN(both) - SP_ASAN; i++) {
        size_t len = sizeof(index[i]);
        index[i] = ~0u;
        err[i] = mallctl("arenas.lookup", &index[i], &len, &both[i], sizeof(both[i]));
    }
    free(plain);
    for (unsigned i = 0; i < SP_ARRAY_LEN(both) - SP_ASAN; i++) {
        assert_int_equal(err[i], 0);
        assert_int_equal(index[i], arena.index);
    }
    struct sp_arena other;
    assert_int_equal(sp_arena_init(&other), 0);
    assert_int_not_equal(other.index, arena.index);
    sp_arena_deinit(&other);
#endif
    for (unsigned i = 0; i < SP_ARRAY_LEN(sizes); i++)
        sp_arena_free(&arena, ptrs[i]);
    sp_arena_free(&arena, NULL);
    void *zero = sp_arena_alloc(&arena, 0);
    sp_arena_free(&arena, zero);
    sp_arena_deinit(&arena);
    assert_false(arena.created);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_rejects_bad_segment_sizes),
        cmocka_unit_test(test_pool_zero_budget),
        cmocka_unit_test(test_budget_exhaustion_and_release),
        cmocka_unit_test(test_high_water_marks),
        cmocka_unit_test(test_shared_pool_runs_dry),
        cmocka_unit_test(test_budget_set_limit),
        cmocka_unit_test(test_segments_distinct_aligned_writable),
        cmocka_unit_test(test_parse_bytes),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
