/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C: the check value and RFC 3720's iSCSI vectors; chaining (any
 * split of a buffer gives the whole buffer's value); the implementation
 * sp_crc32c() picked equals the portable tables on random buffers of every
 * length 0..4096 at every misalignment 0..7 and on large buffers that take
 * the three-stream long blocks; and the stored CRC of a batch librdkafka
 * wrote.
 * On a CPU without SSE4.2 both paths are the portable one and the
 * comparison tests say so (the vectors still check the tables).
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

#include "sp_crc32c.h"
#include "sp_rand.h"

static void test_known_vectors(void **state)
{
    (void)state;
    assert_int_equal(sp_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(sp_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(sp_crc32c(0, "", 0), 0);
    assert_int_equal(sp_crc32c(0, "a", 1), 0xC1D04330u);

    /* RFC 3720, B.4. */
    uint8_t buf[48];
    memset(buf, 0, 32);
    assert_int_equal(sp_crc32c(0, buf, 32), 0x8A9136AAu);
    assert_int_equal(sp_crc32c_portable(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    assert_int_equal(sp_crc32c(0, buf, 32), 0x62A8AB43u);
    for (unsigned i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(sp_crc32c(0, buf, 32), 0x46DD794Eu);
    for (unsigned i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(sp_crc32c(0, buf, 32), 0x113FDB5Cu);
    /* An iSCSI read command PDU. */
    static const uint8_t pdu[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    assert_int_equal(sp_crc32c(0, pdu, sizeof(pdu)), 0xD9963A56u);
    assert_int_equal(sp_crc32c_portable(0, pdu, sizeof(pdu)), 0xD9963A56u);
}

static void test_impl_name(void **state)
{
    (void)state;
    const char *name = sp_crc32c_impl_name();
    assert_non_null(name);
    assert_true(strcmp(name, "sse4.2+pclmul") == 0 || strcmp(name, "sse4.2") == 0 ||
                strcmp(name, "portable") == 0);
    if (strcmp(name, "portable") == 0)
        print_message("no SSE4.2 here: hardware == portable compares the tables with themselves\n");
}

static void test_chaining(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 7);
    uint8_t *buf = malloc(70000);
    assert_non_null(buf);
    for (unsigned i = 0; i < 70000; i++)
        buf[i] = (uint8_t)sp_rand_next(&rng);
    uint32_t whole = sp_crc32c(0, buf, 70000);
    assert_int_equal(whole, sp_crc32c_portable(0, buf, 70000));
    for (unsigned trial = 0; trial < 200; trial++) {
        size_t cut1 = sp_rand_below(&rng, 70001);
        size_t cut2 = cut1 + sp_rand_below(&rng, 70001 - cut1);
        uint32_t crc = sp_crc32c(0, buf, cut1);
        crc = sp_crc32c_portable(crc, buf + cut1, cut2 - cut1);
        crc = sp_crc32c(crc, buf + cut2, 70000 - cut2);
        assert_int_equal(crc, whole);
    }
    free(buf);
}

static void test_hardware_equals_portable_every_length(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 42);
    enum { LEN_MAX = 4096, MISALIGN_MAX = 8 };
    uint8_t *buf = malloc(LEN_MAX + MISALIGN_MAX);
    assert_non_null(buf);
    for (unsigned i = 0; i < LEN_MAX + MISALIGN_MAX; i++)
        buf[i] = (uint8_t)sp_rand_next(&rng);
    for (size_t len = 0; len <= LEN_MAX; len++) {
        for (size_t misalign = 0; misalign < MISALIGN_MAX; misalign++) {
            uint32_t seed = (uint32_t)sp_rand_next(&rng);
            uint32_t hw = sp_crc32c(seed, buf + misalign, len);
            uint32_t sw = sp_crc32c_portable(seed, buf + misalign, len);
            if (hw != sw)
                fail_msg("len %zu misalign %zu: hw %08x sw %08x", len, misalign, hw, sw);
        }
    }
    free(buf);
}

/* Sizes around the long block (3 x 8 KiB) and the short block's largest (3 x 1 KiB). */
static void test_hardware_equals_portable_large(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 99);
    enum { BIG = 4 << 20 };
    uint8_t *buf = malloc(BIG + 8);
    assert_non_null(buf);
    for (unsigned i = 0; i < BIG + 8; i++)
        buf[i] = (uint8_t)sp_rand_next(&rng);
    static const size_t sizes[] = {3072,  3073,  3095,  24575,  24576,   24577,   24576 + 3072,
                                   49152, 49160, 65536, 100001, 1 << 20, BIG - 3, BIG};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t misalign = 0; misalign < 8; misalign += 3) {
            uint32_t hw = sp_crc32c(0, buf + misalign, sizes[i]);
            uint32_t sw = sp_crc32c_portable(0, buf + misalign, sizes[i]);
            if (hw != sw)
                fail_msg("len %zu misalign %zu: hw %08x sw %08x", sizes[i], misalign, hw, sw);
        }
    }
    free(buf);
}

/*
 * A RecordBatch v2 librdkafka wrote (kcat producing one record, captured on
 * the wire):
 * its CRC field (bytes 17..20) is the CRC-32C of bytes 21 to the end.
 */
static void test_real_kafka_batch_crc(void **state)
{
    (void)state;
    static const uint8_t batch[] = {
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x1c, 0x24, 0xf7, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xa2, 0x15, 0x55, 0x00, 0x0e, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x00, 0x0e, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
        0x01, 0xda, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x79, 0x2d, 0x34, 0x96, 0x01, 0x76,
        0x61, 0x6c, 0x75, 0x65, 0x20, 0x34, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x6b, 0x63, 0x61,
        0x74, 0x2c, 0x20, 0x63, 0x6f, 0x64, 0x65, 0x63, 0x20, 0x6e, 0x6f, 0x6e, 0x65, 0x3b, 0x20,
        0x61, 0x20, 0x72, 0x65, 0x70, 0x65, 0x74, 0x69, 0x74, 0x69, 0x76, 0x65, 0x20, 0x70, 0x61,
        0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70,
        0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x04,
        0x0a, 0x74, 0x72, 0x61, 0x63, 0x65, 0x06, 0x74, 0x2d, 0x31, 0x0c, 0x6f, 0x72, 0x69, 0x67,
        0x69, 0x6e, 0x08, 0x6b, 0x63, 0x61, 0x74,
    };
    uint32_t stored = (uint32_t)batch[17] << 24 | (uint32_t)batch[18] << 16 |
                      (uint32_t)batch[19] << 8 | batch[20];
    assert_int_equal(sizeof(batch), 12 + 0xa0);
    assert_int_equal(sp_crc32c(0, batch + 21, sizeof(batch) - 21), stored);
    assert_int_equal(sp_crc32c_portable(0, batch + 21, sizeof(batch) - 21), stored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_impl_name),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_hardware_equals_portable_every_length),
        cmocka_unit_test(test_hardware_equals_portable_large),
        cmocka_unit_test(test_real_kafka_batch_crc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
