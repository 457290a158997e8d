/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint manifest's format (ckpt/manifest.c): a manifest with a job,
 * positions and segments (own and referenced, both checksum kinds) encodes
 * and decodes to the same thing; every single flipped byte and every
 * truncation is refused with -EBADMSG; a sound manifest of an unknown
 * version is refused with -EPROTONOSUPPORT; a manifest larger than the
 * decoder's capacities gives -E2BIG; bytes the encoder never writes (the
 * reserved byte, a NUL in a name) are refused; structural lies (a segment written by
 * a later checkpoint, a shard out of range, a duplicate name) are -EBADMSG;
 * manifest keys parse.
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

#include "sp_ckpt_store.h"
#include "sp_crc32c.h"

static void fill(struct sp_ckpt_manifest *m)
{
    m->checkpoint_id = 7;
    m->time_ms = 1764150000123;
    m->shard_count = 4;
    m->key_group_first = 0;
    m->key_group_end = 128;
    strcpy(m->job, "orders-per-user");
    assert_int_equal(sp_ckpt_manifest_add_position(m, "orders/0", 8, "\x10\x27\0\0\0\0\0\0", 8), 0);
    assert_int_equal(sp_ckpt_manifest_add_position(m, "orders/1", 8, "", 0), 0);
    for (uint32_t i = 0; i < 6; i++) {
        struct sp_ckpt_segment s;
        memset(&s, 0, sizeof(s));
        snprintf(s.name, sizeof(s.name), "segments/%016x-%04x-%08x", i < 3 ? 5 : 7, i % 4, i);
        s.size_bytes = 1000u * i;
        s.checksum_kind = i % 2 ? SP_CKPT_CHECKSUM_XXH64 : SP_CKPT_CHECKSUM_CRC32C;
        s.checksum = i % 2 ? 0x0123456789abcdefULL + i : 0xe3069283u + i;
        s.shard = i % 4;
        s.written_by_id = i < 3 ? 5 : 7;
        assert_int_equal(sp_ckpt_manifest_add_segment(m, &s), 0);
    }
}

static uint8_t *encode(const struct sp_ckpt_manifest *m, size_t *len)
{
    *len = sp_ckpt_manifest_encoded_bytes(m);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(sp_ckpt_manifest_encode(m, buf, *len), (int64_t)*len);
    return buf;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct sp_ckpt_manifest a, b;
    assert_int_equal(sp_ckpt_manifest_init(&a, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_init(&b, 16, 4, 256), 0);
    fill(&a);
    size_t len;
    uint8_t *buf = encode(&a, &len);
    assert_int_equal(sp_ckpt_manifest_encode(&a, buf, len - 1), -ENOBUFS);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), 0);
    assert_true(b.checkpoint_id == a.checkpoint_id);
    assert_true(b.time_ms == a.time_ms);
    assert_int_equal(b.shard_count, 4);
    assert_int_equal(b.key_group_end, 128);
    assert_string_equal(b.job, a.job);
    assert_int_equal(b.position_count, 2);
    assert_memory_equal(b.blob + b.positions[0].key_offset, "orders/0", 8);
    assert_int_equal(b.positions[0].value_bytes, 8);
    assert_int_equal(b.positions[1].value_bytes, 0);
    assert_int_equal(b.segment_count, a.segment_count);
    assert_memory_equal(b.segments, a.segments, sizeof(a.segments[0]) * a.segment_count);
    /* And again: encoding the decoded manifest gives the same bytes. */
    size_t len2;
    uint8_t *buf2 = encode(&b, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    assert_int_equal(sp_ckpt_manifest_find_segment(&b, a.segments[4].name), 4);
    assert_int_equal(sp_ckpt_manifest_find_segment(&b, "segments/nope"), -ENOENT);
    free(buf);
    free(buf2);
    sp_ckpt_manifest_deinit(&a);
    sp_ckpt_manifest_deinit(&b);
}

static void test_every_flip_and_truncation_refused(void **state)
{
    (void)state;
    struct sp_ckpt_manifest a, b;
    assert_int_equal(sp_ckpt_manifest_init(&a, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_init(&b, 16, 4, 256), 0);
    fill(&a);
    size_t len;
    uint8_t *buf = encode(&a, &len);
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(sp_ckpt_manifest_decode(&b, buf, cut), -EBADMSG);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), 0);
    free(buf);
    sp_ckpt_manifest_deinit(&a);
    sp_ckpt_manifest_deinit(&b);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrites a field and the trailer, as a writer of that content would have. */
static void patch_u32(uint8_t *buf, size_t len, size_t at, uint32_t v)
{
    put_u32(buf + at, v);
    put_u32(buf + len - 4, sp_crc32c(0, buf, len - 4));
}

static void test_unknown_version_refused(void **state)
{
    (void)state;
    struct sp_ckpt_manifest a, b;
    assert_int_equal(sp_ckpt_manifest_init(&a, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_init(&b, 16, 4, 256), 0);
    fill(&a);
    size_t len;
    uint8_t *buf = encode(&a, &len);
    patch_u32(buf, len, 8, SP_CKPT_MANIFEST_VERSION + 1);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EPROTONOSUPPORT);
    patch_u32(buf, len, 8, 0);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EPROTONOSUPPORT);
    patch_u32(buf, len, 8, SP_CKPT_MANIFEST_VERSION);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), 0);
    free(buf);
    sp_ckpt_manifest_deinit(&a);
    sp_ckpt_manifest_deinit(&b);
}

/* Found by fuzz_manifest: bytes the encoder never writes must be refused,
 * so that every manifest has exactly one encoding. */
static void test_one_encoding(void **state)
{
    (void)state;
    struct sp_ckpt_manifest a, b;
    assert_int_equal(sp_ckpt_manifest_init(&a, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_init(&b, 16, 4, 256), 0);
    fill(&a);
    size_t len;
    uint8_t *buf = encode(&a, &len);
    uint8_t *name = memmem(buf, len, "segments/", 9);
    assert_non_null(name);
    uint8_t *entry = name - 32;
    entry[3] = 8; /* the reserved byte after the checksum kind */
    put_u32(buf + len - 4, sp_crc32c(0, buf, len - 4));
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    assert_int_equal(b.segment_count, 0);
    entry[3] = 0;
    name[12] = '\0'; /* a NUL inside a segment name */
    put_u32(buf + len - 4, sp_crc32c(0, buf, len - 4));
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    /* After a good decode, a refused one leaves the manifest empty. */
    free(buf);
    buf = encode(&a, &len);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), 0);
    buf[0] ^= 1;
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    assert_int_equal(b.segment_count, 0);
    assert_int_equal(b.position_count, 0);
    free(buf);
    sp_ckpt_manifest_deinit(&a);
    sp_ckpt_manifest_deinit(&b);
}

static void test_capacity_and_structure(void **state)
{
    (void)state;
    struct sp_ckpt_manifest a, small;
    assert_int_equal(sp_ckpt_manifest_init(&a, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_init(&small, 2, 4, 256), 0);
    fill(&a);
    size_t len;
    uint8_t *buf = encode(&a, &len);
    assert_int_equal(sp_ckpt_manifest_decode(&small, buf, len), -E2BIG);
    assert_int_equal(small.segment_count, 0); /* nothing half-decoded is left */
    free(buf);

    /* A segment "written by" a later checkpoint than the manifest's. */
    a.segments[0].written_by_id = 8;
    buf = encode(&a, &len);
    struct sp_ckpt_manifest b;
    assert_int_equal(sp_ckpt_manifest_init(&b, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    free(buf);
    a.segments[0].written_by_id = 5;
    /* A shard beyond the shard count. */
    a.segments[1].shard = 4;
    buf = encode(&a, &len);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    free(buf);
    a.segments[1].shard = 1;
    /* The same segment twice. */
    a.segments[2] = a.segments[0];
    buf = encode(&a, &len);
    assert_int_equal(sp_ckpt_manifest_decode(&b, buf, len), -EBADMSG);
    free(buf);

    /* Builders refuse what cannot be encoded. */
    struct sp_ckpt_segment s;
    memset(&s, 0, sizeof(s));
    strcpy(s.name, "../etc/passwd");
    s.checksum_kind = SP_CKPT_CHECKSUM_CRC32C;
    assert_int_equal(sp_ckpt_manifest_add_segment(&b, &s), -EINVAL);
    strcpy(s.name, "segments/ok");
    s.checksum_kind = 9;
    assert_int_equal(sp_ckpt_manifest_add_segment(&b, &s), -EINVAL);
    char big[SP_CKPT_POSITION_VALUE_BYTES_MAX + 1] = {0};
    assert_int_equal(sp_ckpt_manifest_add_position(&b, "k", 1, big, sizeof(big)), -EINVAL);
    sp_ckpt_manifest_deinit(&a);
    sp_ckpt_manifest_deinit(&b);
    sp_ckpt_manifest_deinit(&small);
}

static void test_manifest_keys(void **state)
{
    (void)state;
    uint64_t id = 0;
    assert_int_equal(sp_ckpt_manifest_key_id("manifests/00000000000000ff.manifest", &id), 0);
    assert_true(id == 255);
    assert_int_equal(sp_ckpt_manifest_key_id("manifests/0000000000000000.manifest", &id), -EINVAL);
    assert_int_equal(sp_ckpt_manifest_key_id("manifests/00000000000000FF.manifest", &id), -EINVAL);
    assert_int_equal(sp_ckpt_manifest_key_id("manifests/ff.manifest", &id), -EINVAL);
    assert_int_equal(sp_ckpt_manifest_key_id("segments/00000000000000ff.manifest", &id), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_flip_and_truncation_refused),
        cmocka_unit_test(test_unknown_version_refused),
        cmocka_unit_test(test_one_encoding),
        cmocka_unit_test(test_capacity_and_structure),
        cmocka_unit_test(test_manifest_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
