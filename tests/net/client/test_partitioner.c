/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The partitioners: murmur2 against the vectors of Kafka's own UtilsTest
 * (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
 * testMurmur2); the key partitioner against librdkafka's Java-compatible
 * murmur2_random partitioner, the real thing, on 100,000 random keys of
 * 0..64 bytes at random misalignments and partition counts 1..1000, and
 * at partition count 2^31 - 1 where the partition is nearly the whole
 * positive hash; toPositive rather than abs. The sticky partitioner: stays
 * until its batch is done, ignores other partitions' batches, never
 * repeats a partition when it has a choice, spreads evenly over the
 * available partitions and never leaves them, falls back to all partitions
 * when none is available, handles one partition, a shrunken partition
 * count, and is deterministic for a seed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>

#include "sp_kafka_partitioner.h"
#include "sp_rand.h"

/* ---- murmur2 ---- */

static void test_murmur2_java_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int32_t hash; /* Java's signed int */
    } cases[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t h = sp_kafka_murmur2(cases[i].key, strlen(cases[i].key));
        assert_int_equal((int32_t)h, cases[i].hash);
    }
}

static void test_to_positive(void **state)
{
    (void)state;
    /*
     * murmur2("21") is -973932308: toPositive gives 2^31 - 973932308 =
     * 1173551340, so 340 of 1000 partitions (abs would give 308).
     */
    assert_int_equal(sp_kafka_partition_for_key("21", 2, 1000), 340);
    assert_int_equal(sp_kafka_partition_for_key("21", 2, INT32_MAX), 1173551340);
    assert_int_equal(sp_kafka_partition_for_key("foobar", 6, 1), 0);
    /* A NULL key of length 0 hashes like an empty key. */
    for (int32_t n = 1; n < 100; n++)
        assert_int_equal(sp_kafka_partition_for_key(NULL, 0, n),
                         sp_kafka_partition_for_key("", 0, n));
}

static void test_murmur2_equals_librdkafka(void **state)
{
    (void)state;
    struct sp_rand rand;
    sp_rand_seed(&rand, 0x5EED0001);
    uint8_t buf[64 + 8];
    for (unsigned iter = 0; iter < 100000; iter++) {
        size_t len = (size_t)sp_rand_below(&rand, 65);
        size_t misalign = (size_t)sp_rand_below(&rand, 8);
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)sp_rand_next(&rand);
        const uint8_t *key = buf + misalign;
        int32_t count = 1 + (int32_t)sp_rand_below(&rand, 1000);
        /* A NULL topic is fine for a non-NULL key: librdkafka only reads it for NULL keys. */
        int32_t want = rd_kafka_msg_partitioner_murmur2_random(NULL, key, len, count, NULL, NULL);
        int32_t got = sp_kafka_partition_for_key(key, len, count);
        if (got != want)
            fail_msg("key length %zu, %d partitions: spate %d, librdkafka %d", len, (int)count,
                     (int)got, (int)want);
    }
    /* With 2^31 - 1 partitions the partition is the positive hash (but for one value). */
    for (unsigned iter = 0; iter < 10000; iter++) {
        size_t len = (size_t)sp_rand_below(&rand, 65);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)sp_rand_next(&rand);
        int32_t want =
            rd_kafka_msg_partitioner_murmur2_random(NULL, buf, len, INT32_MAX, NULL, NULL);
        assert_int_equal(sp_kafka_partition_for_key(buf, len, INT32_MAX), want);
        uint32_t positive = sp_kafka_murmur2(buf, len) & 0x7fffffffu;
        assert_int_equal(positive == INT32_MAX ? 0 : (int32_t)positive, want);
    }
}

/* ---- Sticky ---- */

static int32_t all_partitions[1000];

static void fill_all(void)
{
    for (int32_t i = 0; i < 1000; i++)
        all_partitions[i] = i;
}

static void test_sticky_stays_until_batch_done(void **state)
{
    (void)state;
    fill_all();
    struct sp_rand rand;
    sp_rand_seed(&rand, 7);
    struct sp_kafka_sticky sticky;
    sp_kafka_sticky_init(&sticky, &rand);
    int32_t p = sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16);
    assert_true(p >= 0 && p < 16);
    for (unsigned i = 0; i < 10000; i++)
        assert_int_equal(sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16), p);
    /* Another partition's batch (a keyed record's) changes nothing. */
    sp_kafka_sticky_batch_done(&sticky, (p + 1) % 16);
    assert_int_equal(sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16), p);
    /* Its own batch does: a new partition, then sticky again. */
    sp_kafka_sticky_batch_done(&sticky, p);
    int32_t q = sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16);
    assert_int_not_equal(q, p);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16), q);
    /* Done twice for the same batch: the second is about a partition no longer sticky. */
    sp_kafka_sticky_batch_done(&sticky, q);
    int32_t r = sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16);
    sp_kafka_sticky_batch_done(&sticky, q);
    assert_int_equal(sp_kafka_sticky_partition(&sticky, 16, all_partitions, 16), r);
}

/*
 * Runs `batches` batches over `available` and counts the partitions
 * chosen; checks each is available and differs from the one before.
 */
static void run_batches(struct sp_kafka_sticky *sticky, int32_t partition_count,
                        const int32_t *available, unsigned available_count, unsigned batches,
                        unsigned *counts)
{
    int32_t last = -1;
    for (unsigned b = 0; b < batches; b++) {
        int32_t p = sp_kafka_sticky_partition(sticky, partition_count, available, available_count);
        assert_true(p >= 0 && p < partition_count);
        if (available_count > 0) {
            int found = 0;
            for (unsigned i = 0; i < available_count; i++)
                found |= available[i] == p;
            if (!found)
                fail_msg("partition %d is not available", (int)p);
        }
        unsigned choices = available_count > 0 ? available_count : (unsigned)partition_count;
        if (choices > 1 && p == last)
            fail_msg("partition %d twice in a row (batch %u)", (int)p, b);
        counts[p]++;
        last = p;
        sp_kafka_sticky_batch_done(sticky, p);
    }
}

static void test_sticky_spreads(void **state)
{
    (void)state;
    fill_all();
    struct sp_rand rand;
    sp_rand_seed(&rand, 11);
    struct sp_kafka_sticky sticky;
    sp_kafka_sticky_init(&sticky, &rand);

    /*
     * 10 partitions, 20,000 batches: 2,000 each expected. Never repeating
     * makes the walk a chain whose stationary distribution is still
     * uniform; the standard deviation is about 45, so +-400 never fails by
     * chance.
     */
    unsigned counts[1000] = {0};
    run_batches(&sticky, 10, all_partitions, 10, 20000, counts);
    for (int32_t p = 0; p < 10; p++)
        assert_true(counts[p] > 1600 && counts[p] < 2400);

    /* Only 3 of 12 available: only those, about a third each. */
    static const int32_t some[] = {2, 7, 11};
    memset(counts, 0, sizeof(counts));
    run_batches(&sticky, 12, some, 3, 9000, counts);
    for (int32_t p = 0; p < 12; p++) {
        if (p == 2 || p == 7 || p == 11)
            assert_true(counts[p] > 2500 && counts[p] < 3500);
        else
            assert_int_equal(counts[p], 0);
    }

    /* Two available: they alternate. */
    static const int32_t two[] = {4, 9};
    memset(counts, 0, sizeof(counts));
    run_batches(&sticky, 10, two, 2, 1000, counts);
    assert_int_equal(counts[4] + counts[9], 1000);
    assert_true(counts[4] == 500 || counts[4] == 499 || counts[4] == 501);

    /* Many partitions: every one is reached. */
    memset(counts, 0, sizeof(counts));
    run_batches(&sticky, 1000, all_partitions, 1000, 20000, counts);
    for (int32_t p = 0; p < 1000; p++)
        assert_true(counts[p] > 0);
}

static void test_sticky_none_available(void **state)
{
    (void)state;
    struct sp_rand rand;
    sp_rand_seed(&rand, 13);
    struct sp_kafka_sticky sticky;
    sp_kafka_sticky_init(&sticky, &rand);
    /* No leader anywhere: any partition, still never twice in a row. */
    unsigned counts[1000] = {0};
    run_batches(&sticky, 8, NULL, 0, 8000, counts);
    for (int32_t p = 0; p < 8; p++)
        assert_true(counts[p] > 700 && counts[p] < 1300);
    /* One partition, nothing available: partition 0. */
    struct sp_kafka_sticky one;
    sp_kafka_sticky_init(&one, &rand);
    for (unsigned b = 0; b < 100; b++) {
        assert_int_equal(sp_kafka_sticky_partition(&one, 1, NULL, 0), 0);
        sp_kafka_sticky_batch_done(&one, 0);
    }
}

static void test_sticky_one_available(void **state)
{
    (void)state;
    struct sp_rand rand;
    sp_rand_seed(&rand, 17);
    struct sp_kafka_sticky sticky;
    sp_kafka_sticky_init(&sticky, &rand);
    /* One available of 6: always it, batch after batch (no other choice). */
    static const int32_t only[] = {5};
    for (unsigned b = 0; b < 100; b++) {
        assert_int_equal(sp_kafka_sticky_partition(&sticky, 6, only, 1), 5);
        sp_kafka_sticky_batch_done(&sticky, 5);
    }
    /* The previous partition is no longer available: any available one. */
    static const int32_t other[] = {3};
    assert_int_equal(sp_kafka_sticky_partition(&sticky, 6, other, 1), 3);
    /* A single partition topic. */
    static const int32_t zero[] = {0};
    struct sp_kafka_sticky single;
    sp_kafka_sticky_init(&single, &rand);
    for (unsigned b = 0; b < 100; b++) {
        assert_int_equal(sp_kafka_sticky_partition(&single, 1, zero, 1), 0);
        sp_kafka_sticky_batch_done(&single, 0);
    }
}

static void test_sticky_partition_count_shrinks(void **state)
{
    (void)state;
    fill_all();
    struct sp_rand rand;
    sp_rand_seed(&rand, 19);
    struct sp_kafka_sticky sticky;
    sp_kafka_sticky_init(&sticky, &rand);
    /* Stick to a high partition, then see metadata with fewer partitions. */
    static const int32_t high[] = {9};
    assert_int_equal(sp_kafka_sticky_partition(&sticky, 10, high, 1), 9);
    int32_t p = sp_kafka_sticky_partition(&sticky, 4, all_partitions, 4);
    assert_true(p >= 0 && p < 4);
    assert_int_equal(sp_kafka_sticky_partition(&sticky, 4, all_partitions, 4), p);
}

static void test_sticky_deterministic(void **state)
{
    (void)state;
    fill_all();
    struct sp_rand r1, r2;
    sp_rand_seed(&r1, 23);
    sp_rand_seed(&r2, 23);
    struct sp_kafka_sticky a, b;
    sp_kafka_sticky_init(&a, &r1);
    sp_kafka_sticky_init(&b, &r2);
    for (unsigned i = 0; i < 1000; i++) {
        int32_t pa = sp_kafka_sticky_partition(&a, 50, all_partitions, 50);
        int32_t pb = sp_kafka_sticky_partition(&b, 50, all_partitions, 50);
        assert_int_equal(pa, pb);
        sp_kafka_sticky_batch_done(&a, pa);
        sp_kafka_sticky_batch_done(&b, pb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_java_vectors),
        cmocka_unit_test(test_to_positive),
        cmocka_unit_test(test_murmur2_equals_librdkafka),
        cmocka_unit_test(test_sticky_stays_until_batch_done),
        cmocka_unit_test(test_sticky_spreads),
        cmocka_unit_test(test_sticky_none_available),
        cmocka_unit_test(test_sticky_one_available),
        cmocka_unit_test(test_sticky_partition_count_shrinks),
        cmocka_unit_test(test_sticky_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
