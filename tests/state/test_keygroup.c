/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys, key groups and owners: a hash's group is in range, monotonic in the
 * hash and covers the ends; the owner of every group and the ranges agree
 * for many (group count, owner count) pairs (1, primes, equal counts, 128/3,
 * 32768/16, 65536/7 and every pair up to 64 groups), the ranges partition
 * [0, G) contiguously in nearly equal shares and match Flink's assignment;
 * bad counts are -EINVAL; xxh3 of 100k sequential 8-byte keys spreads evenly
 * over 128 groups; and sp_key_hash is XXH3_64bits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sp_rand.h"
#include "sp_keygroup.h"

__extension__ typedef unsigned __int128 u128;

static struct sp_rand rng;

/* ---- Groups of hashes ---- */

static void test_group_in_range(void **state)
{
    (void)state;
    const uint32_t counts[] = {1, 2, 3, 7, 100, 128, 1000, 32768, 65521, 65535, SP_KEY_GROUPS_MAX};
    for (unsigned c = 0; c < SP_ARRAY_LEN(counts); c++) {
        uint32_t g = counts[c];
        assert_int_equal(sp_key_group(0, g), 0);
        assert_int_equal(sp_key_group(UINT64_MAX, g), g - 1);
        assert_int_equal(sp_key_group(UINT64_MAX - 1, g), g - 1);
        assert_int_equal(sp_key_group(1ULL << 63, g), g / 2); /* the middle */
        sp_rand_seed(&rng, 0xC0FFEE + c);
        for (unsigned i = 0; i < 100000; i++)
            assert_true(sp_key_group(sp_rand_next(&rng), g) < g);
        /* Group k starts at hash ceil(k * 2^64 / G): the boundaries are exact. */
        for (uint32_t k = 1; k < g; k += 1 + g / 50) {
            u128 start = (((u128)k << 64) + g - 1) / g;
            assert_int_equal(sp_key_group((uint64_t)start, g), k);
            assert_int_equal(sp_key_group((uint64_t)start - 1, g), k - 1);
        }
    }
}

static void test_group_monotonic_in_hash(void **state)
{
    (void)state;
    sp_rand_seed(&rng, 5);
    uint64_t h = 0;
    uint32_t prev = 0;
    while (h < UINT64_MAX - (1ULL << 52)) {
        uint32_t g = sp_key_group(h, 1000);
        assert_true(g >= prev);
        assert_true(g <= prev + 1);
        prev = g;
        h += sp_rand_next(&rng) >> 13; /* steps below 2^51, finer than a group */
    }
    assert_true(prev >= 999 - 1);
}

/* ---- Owners and ranges ---- */

/*
 * For each owner: the range is non-empty, starts where the last one ended,
 * every group in it has that owner, and its size is floor(G/n) or one more.
 */
static void check_partition(uint32_t group_count, uint32_t owner_count)
{
    uint32_t expect_first = 0;
    uint32_t size_min = group_count / owner_count;
    for (uint32_t owner = 0; owner < owner_count; owner++) {
        struct sp_key_group_range range = {UINT32_MAX, UINT32_MAX};
        assert_int_equal(sp_key_group_range(group_count, owner_count, owner, &range), 0);
        assert_int_equal(range.first, expect_first);
        assert_true(range.first < range.end);
        assert_true(range.end <= group_count);
        uint32_t size = range.end - range.first;
        assert_true(size == size_min || size == size_min + 1);
        for (uint32_t g = range.first; g < range.end; g++)
            assert_int_equal(sp_key_group_owner(g, group_count, owner_count), owner);
        expect_first = range.end;
    }
    assert_int_equal(expect_first, group_count);
}

static void test_owner_and_range_agree(void **state)
{
    (void)state;
    const uint32_t pairs[][2] = {
        {1, 1},       {2, 1},         {2, 2},         {128, 1},     {128, 3},
        {128, 128},   {128, 127},     {128, 5},       {127, 13},    {97, 89},
        {8191, 31},   {1000, 7},      {32768, 16},    {32768, 3},   {65536, 7},
        {65536, 1},   {65536, 65536}, {65536, 65535}, {65536, 3},   {65521, 65521},
        {65521, 251}, {65535, 65534}, {4096, 4095},   {10007, 101}, {257, 256},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(pairs); i++)
        check_partition(pairs[i][0], pairs[i][1]);
    /* Every pair up to 64 groups. */
    for (uint32_t g = 1; g <= 64; g++) {
        for (uint32_t n = 1; n <= g; n++)
            check_partition(g, n);
    }
}

/* Flink's KeyGroupRangeAssignment for maxParallelism 128, parallelism 3. */
static void test_matches_flink_assignment(void **state)
{
    (void)state;
    const uint32_t expect[3][2] = {{0, 43}, {43, 86}, {86, 128}};
    for (uint32_t owner = 0; owner < 3; owner++) {
        struct sp_key_group_range range;
        assert_int_equal(sp_key_group_range(128, 3, owner, &range), 0);
        assert_int_equal(range.first, expect[owner][0]);
        assert_int_equal(range.end, expect[owner][1]);
    }
    /* Flink: start = ceil(o * G / n), end (inclusive) = floor(((o + 1) * G - 1) / n). */
    const uint32_t pairs[][2] = {{32768, 16}, {65536, 7}, {1000, 33}, {4096, 100}};
    for (unsigned i = 0; i < SP_ARRAY_LEN(pairs); i++) {
        uint64_t g = pairs[i][0], n = pairs[i][1];
        for (uint32_t owner = 0; owner < n; owner++) {
            struct sp_key_group_range range;
            assert_int_equal(sp_key_group_range((uint32_t)g, (uint32_t)n, owner, &range), 0);
            assert_int_equal(range.first, (owner * g + n - 1) / n);
            assert_int_equal(range.end, ((owner + 1) * g - 1) / n + 1);
        }
    }
    /* 32768 / 16 divides evenly: 2048 each. */
    struct sp_key_group_range range;
    assert_int_equal(sp_key_group_range(32768, 16, 5, &range), 0);
    assert_int_equal(range.first, 5 * 2048);
    assert_int_equal(range.end, 6 * 2048);
}

static void test_range_errors(void **state)
{
    (void)state;
    struct sp_key_group_range range = {1234, 5678};
    assert_int_equal(sp_key_group_range(0, 1, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(0, 0, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(SP_KEY_GROUPS_MAX + 1, 1, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(UINT32_MAX, 1, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(128, 0, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(128, 129, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(128, UINT32_MAX, 0, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(128, 4, 4, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(128, 4, UINT32_MAX, &range), -EINVAL);
    assert_int_equal(sp_key_group_range(1, 1, 1, &range), -EINVAL);
    /* The edges that are allowed. */
    assert_int_equal(
        sp_key_group_range(SP_KEY_GROUPS_MAX, SP_KEY_GROUPS_MAX, SP_KEY_GROUPS_MAX - 1, &range), 0);
    assert_int_equal(range.first, SP_KEY_GROUPS_MAX - 1);
    assert_int_equal(range.end, SP_KEY_GROUPS_MAX);
    assert_int_equal(sp_key_group_range(1, 1, 0, &range), 0);
    assert_int_equal(range.first, 0);
    assert_int_equal(range.end, 1);
}

/* ---- Hashing ---- */

static void test_sequential_keys_spread_evenly(void **state)
{
    (void)state;
    enum { KEYS = 100000, GROUPS = 128 };
    uint32_t counts[GROUPS] = {0};
    for (uint64_t key = 0; key < KEYS; key++) {
        uint8_t bytes[8];
        memcpy(bytes, &key, sizeof(bytes));
        uint32_t g = sp_key_group(sp_key_hash(bytes, sizeof(bytes)), GROUPS);
        assert_true(g < GROUPS);
        counts[g]++;
    }
    /* Mean 781.25; a binomial's sd here is ~28, so +-20% is ~5.6 sd. */
    uint32_t total = 0;
    for (unsigned g = 0; g < GROUPS; g++) {
        assert_true(counts[g] * 5 * GROUPS >= 4 * KEYS);
        assert_true(counts[g] * 5 * GROUPS <= 6 * KEYS);
        total += counts[g];
    }
    assert_int_equal(total, KEYS);

    /* Owners of 4 shards each see about a quarter of the keys. */
    uint32_t per_owner[4] = {0};
    for (unsigned g = 0; g < GROUPS; g++)
        per_owner[sp_key_group_owner(g, GROUPS, 4)] += counts[g];
    for (unsigned o = 0; o < 4; o++) {
        assert_true(per_owner[o] > KEYS / 4 - KEYS / 40);
        assert_true(per_owner[o] < KEYS / 4 + KEYS / 40);
    }
}

static void test_key_hash_is_xxh3(void **state)
{
    (void)state;
    static uint8_t bytes[4096];
    sp_rand_seed(&rng, 77);
    for (unsigned i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)sp_rand_next(&rng);

    /* XXH3_64bits of no bytes (seed 0), as published by xxHash. */
    assert_true(sp_key_hash("", 0) == 0x2D06800538D394C2ULL);
    assert_true(sp_key_hash(NULL, 0) == XXH3_64bits(NULL, 0));

    /* Every length through each of xxh3's code paths (0-16, 17-128, 129-240, long). */
    for (size_t len = 0; len <= 300; len++) {
        uint64_t h = sp_key_hash(bytes, len);
        assert_true(h == XXH3_64bits(bytes, len));
        assert_true(h == sp_key_hash(bytes, len)); /* deterministic */
        /* Not the same bytes at another address by accident. */
        uint8_t copy[300];
        memcpy(copy, bytes, len);
        assert_true(sp_key_hash(copy, len) == h);
    }
    assert_true(sp_key_hash(bytes, sizeof(bytes)) == XXH3_64bits(bytes, sizeof(bytes)));
    assert_true(sp_key_hash(bytes + 1, 1000) == XXH3_64bits(bytes + 1, 1000));

    /* Different keys, different hashes (for these, at least). */
    uint64_t a = 1, b = 2;
    assert_true(sp_key_hash(&a, 8) != sp_key_hash(&b, 8));
    assert_true(sp_key_hash("key", 3) != sp_key_hash("kez", 3));
    assert_true(sp_key_hash("key", 3) != sp_key_hash("key", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_in_range),
        cmocka_unit_test(test_group_monotonic_in_hash),
        cmocka_unit_test(test_owner_and_range_agree),
        cmocka_unit_test(test_matches_flink_assignment),
        cmocka_unit_test(test_range_errors),
        cmocka_unit_test(test_sequential_keys_spread_evenly),
        cmocka_unit_test(test_key_hash_is_xxh3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
