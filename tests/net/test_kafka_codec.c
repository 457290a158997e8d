/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The generated Kafka codec, every message at every valid version: random
 * messages (tests/net/gen/kafka_fill.c, generated alongside the codec)
 * encode to exactly their computed size, decode consuming every byte, and
 * re-encode to the same bytes; every truncation of an encoding is rejected.
 * Framing: request and response frames with each header version, the size
 * prefix checks, the ApiVersions error-35 fallback, and hand-written frames
 * of known bytes.
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

#include "kafka_fill.h"
#include "sp_kafka_frame.h"

#define ARENA_BYTES (4u << 20)
#define BUF_BYTES (1u << 20)
#define ROUNDS_PER_VERSION 40

static uint8_t arena_mem[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t arena2_mem[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t buf[BUF_BYTES];
static uint8_t buf2[BUF_BYTES];
static size_t largest; /* the largest message round-tripped */

/* Encodes, decodes and re-encodes one random message; returns its size. */
static size_t round_trip(const struct sp_kafka_msg_ops *ops, int16_t version, struct sp_rand *rng)
{
    struct sp_karena arena, arena2;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    sp_karena_init(&arena2, arena2_mem, sizeof(arena2_mem));
    void *msg = sp_karena_alloc(&arena, ops->struct_size);
    void *back = sp_karena_alloc(&arena2, ops->struct_size);
    assert_non_null(msg);
    assert_non_null(back);
    sp_kafka_fill(ops, msg, version, rng, &arena);

    size_t size = ops->size(msg, version);
    assert_true(size <= BUF_BYTES);
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, size);
    int ret = ops->encode(&w, version, msg);
    if (ret != 0)
        fail_msg("%s v%d encode: %d at %s", ops->name, version, ret, w.error_field);
    assert_ptr_equal(w.p, buf + size);
    largest = SP_MAX(largest, size);

    struct sp_kreader r;
    sp_kreader_init(&r, buf, size, &arena2);
    ret = ops->decode(&r, version, back);
    if (ret != 0)
        fail_msg("%s v%d decode: %d at %s", ops->name, version, ret, r.error_field);
    assert_ptr_equal(r.p, buf + size);

    assert_int_equal(ops->size(back, version), size);
    sp_kwriter_init(&w, buf2, size);
    assert_int_equal(ops->encode(&w, version, back), 0);
    if (memcmp(buf, buf2, size) != 0)
        fail_msg("%s v%d: re-encoding differs", ops->name, version);
    return size;
}

/* Every strict prefix of an encoding fails to decode, cleanly. */
static void truncations(const struct sp_kafka_msg_ops *ops, int16_t version, size_t size)
{
    struct sp_karena arena;
    for (size_t len = 0; len < size; len++) {
        sp_karena_init(&arena, arena2_mem, sizeof(arena2_mem));
        void *back = sp_karena_alloc(&arena, ops->struct_size);
        struct sp_kreader r;
        /* A copy at the end of the buffer, so reading past it trips ASan. */
        uint8_t *copy = buf2 + BUF_BYTES - len;
        memcpy(copy, buf, len);
        sp_kreader_init(&r, copy, len, &arena);
        int ret = ops->decode(&r, version, back);
        if (ret != -EBADMSG)
            fail_msg("%s v%d: %zu of %zu bytes decoded with %d", ops->name, version, len, size,
                     ret);
        assert_non_null(r.error_field);
    }
}

static void check_ops(const struct sp_kafka_msg_ops *ops, int16_t lo, int16_t hi,
                      unsigned *messages)
{
    struct sp_rand rng;
    for (int16_t v = lo; v <= hi; v++) {
        sp_rand_seed(&rng, (uint64_t)v * 7919 + strlen(ops->name));
        size_t size = 0;
        for (unsigned i = 0; i < ROUNDS_PER_VERSION; i++)
            size = round_trip(ops, v, &rng);
        truncations(ops, v, size);
        (*messages)++;
    }
}

static void test_every_message_every_version(void **state)
{
    (void)state;
    unsigned messages = 0;
    check_ops(&sp_kafka_request_header_ops, 0, 2, &messages);
    check_ops(&sp_kafka_response_header_ops, 0, 1, &messages);
    for (unsigned i = 0; i < sp_kafka_data_schema_count; i++) {
        const struct sp_kafka_data *d = &sp_kafka_data_schemas[i];
        check_ops(&d->ops, d->version_min, d->version_max, &messages);
    }
    for (unsigned i = 0; i < sp_kafka_api_count; i++) {
        const struct sp_kafka_api *api = &sp_kafka_apis[i];
        check_ops(&api->request, api->version_min, api->version_max, &messages);
        check_ops(&api->response, api->version_min, api->version_max, &messages);
    }
    /* The 29 APIs the issue names, both directions, every version. */
    unsigned expected = 3 + 2;
    for (unsigned i = 0; i < sp_kafka_data_schema_count; i++)
        expected += (unsigned)(sp_kafka_data_schemas[i].version_max -
                               sp_kafka_data_schemas[i].version_min + 1);
    for (unsigned i = 0; i < sp_kafka_api_count; i++)
        expected +=
            2u * (unsigned)(sp_kafka_apis[i].version_max - sp_kafka_apis[i].version_min + 1);
    assert_true(sp_kafka_api_count >= 29);
    assert_int_equal(messages, expected);
    printf("%u message versions round-tripped, the largest %zu bytes\n", messages, largest);
    /* Long strings and bytes were in there: 2- and 3-byte varint lengths. */
    assert_true(largest > 16384);
}

static void test_api_table_is_sorted_and_findable(void **state)
{
    (void)state;
    for (unsigned i = 0; i < sp_kafka_api_count; i++) {
        if (i > 0)
            assert_true(sp_kafka_apis[i - 1].key < sp_kafka_apis[i].key);
        assert_ptr_equal(sp_kafka_api_find(sp_kafka_apis[i].key), &sp_kafka_apis[i]);
    }
    assert_null(sp_kafka_api_find(-1));
    assert_null(sp_kafka_api_find(9999));
    assert_string_equal(sp_kafka_api_find(0)->name, "Produce");
    assert_string_equal(sp_kafka_api_find(18)->name, "ApiVersions");
}

/* ---- Frames ---- */

static void test_frame_check(void **state)
{
    (void)state;
    size_t n = 0;
    uint8_t b[8] = {0, 0, 0, 4, 1, 2, 3, 4};
    assert_int_equal(sp_kafka_frame_check(b, 3, 100, &n), 0);
    assert_int_equal(sp_kafka_frame_check(b, 7, 100, &n), 0);
    assert_int_equal(sp_kafka_frame_check(b, 8, 100, &n), 1);
    assert_int_equal(n, 8);
    uint8_t negative[4] = {0xff, 0xff, 0xff, 0xfe};
    assert_int_equal(sp_kafka_frame_check(negative, 4, 100, &n), -EBADMSG);
    uint8_t huge[4] = {0x7f, 0, 0, 0};
    assert_int_equal(sp_kafka_frame_check(huge, 4, SP_KAFKA_FRAME_BYTES_MAX_DEFAULT, &n), -EBADMSG);
}

static void test_header_versions(void **state)
{
    (void)state;
    /* Produce: flexible from v9. */
    assert_int_equal(sp_kafka_request_header_version(0, 8), 1);
    assert_int_equal(sp_kafka_request_header_version(0, 9), 2);
    assert_int_equal(sp_kafka_response_header_version(0, 8), 0);
    assert_int_equal(sp_kafka_response_header_version(0, 9), 1);
    /* ApiVersions: flexible requests from v3, responses always header v0. */
    assert_int_equal(sp_kafka_request_header_version(18, 2), 1);
    assert_int_equal(sp_kafka_request_header_version(18, 3), 2);
    assert_int_equal(sp_kafka_request_header_version(18, 99), 2);
    assert_int_equal(sp_kafka_response_header_version(18, 3), 0);
    /* ControlledShutdown v0 keeps request header v0. */
    assert_int_equal(sp_kafka_request_header_version(7, 0), 0);
}

static void test_request_frame_round_trip(void **state)
{
    (void)state;
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_metadata_request req;
    sp_kafka_metadata_request_init(&req);
    struct sp_kafka_metadata_request_metadata_request_topic topics[2];
    for (unsigned i = 0; i < 2; i++) {
        sp_kafka_metadata_request_metadata_request_topic_init(&topics[i]);
        topics[i].name = i == 0 ? SP_KSTR("events") : SP_KSTR("other");
    }
    req.topics = topics;
    req.topics_count = 2;
    for (int16_t v = 0; v <= SP_KAFKA_METADATA_REQUEST_VERSION_MAX; v++) {
        struct sp_kafka_request_header h;
        sp_kafka_request_header_init(&h);
        h.request_api_key = 3;
        h.request_api_version = v;
        h.correlation_id = 1000 + v;
        h.client_id = SP_KSTR("spate-test");
        size_t size = sp_kafka_request_frame_size(&h, &req);
        struct sp_kwriter w;
        sp_kwriter_init(&w, buf, size);
        assert_int_equal(sp_kafka_request_encode(&w, &h, &req), 0);
        size_t frame = 0;
        assert_int_equal(sp_kafka_frame_check(buf, size, 1 << 20, &frame), 1);
        assert_int_equal(frame, size);

        struct sp_kafka_request_frame out;
        const char *field;
        sp_karena_reset(&arena);
        assert_int_equal(sp_kafka_request_decode(buf + 4, size - 4, &arena, &out, &field), 0);
        assert_int_equal(out.header.request_api_key, 3);
        assert_int_equal(out.header.request_api_version, v);
        assert_int_equal(out.header.correlation_id, 1000 + v);
        assert_true(sp_kstr_eq(out.header.client_id, "spate-test"));
        struct sp_kafka_metadata_request *back = out.body;
        assert_int_equal(back->topics_count, 2);
        assert_true(sp_kstr_eq(back->topics[0].name, "events"));
        assert_true(sp_kstr_eq(back->topics[1].name, "other"));
    }
}

static void test_unknown_api_is_enotsup_with_header(void **state)
{
    (void)state;
    /* Request header v1: key 9999, version 0, correlation 7, client "x". */
    const uint8_t frame[] = {0x27, 0x0f, 0, 0, 0, 0, 0, 7, 0, 1, 'x'};
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_request_frame out;
    const char *field;
    assert_int_equal(sp_kafka_request_decode(frame, sizeof(frame), &arena, &out, &field), -ENOTSUP);
    assert_int_equal(out.header.correlation_id, 7);
    assert_null(out.api);
    /* Produce at version 99: known API, version out of range. */
    const uint8_t produce99[] = {0, 0, 0, 99, 0, 0, 0, 8, 0, 0, 0};
    assert_int_equal(sp_kafka_request_decode(produce99, sizeof(produce99), &arena, &out, &field),
                     -ENOTSUP);
    assert_int_equal(out.header.correlation_id, 8);
}

static void test_trailing_bytes_are_rejected(void **state)
{
    (void)state;
    /* ApiVersions v0 request (empty body) with one byte too many. */
    const uint8_t frame[] = {0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x00};
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_request_frame out;
    const char *field = NULL;
    assert_int_equal(sp_kafka_request_decode(frame, sizeof(frame) - 1, &arena, &out, &field), 0);
    assert_int_equal(sp_kafka_request_decode(frame, sizeof(frame), &arena, &out, &field), -EBADMSG);
    assert_non_null(field);
}

static void test_response_frames_and_api_versions_fallback(void **state)
{
    (void)state;
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    /* A broker that only knows ApiVersions v0-2 answers a v3 request in v0. */
    struct sp_kafka_api_versions_response resp;
    sp_kafka_api_versions_response_init(&resp);
    struct sp_kafka_api_versions_response_api_version keys[1];
    sp_kafka_api_versions_response_api_version_init(&keys[0]);
    keys[0].api_key = 18;
    keys[0].min_version = 0;
    keys[0].max_version = 2;
    resp.error_code = SP_KAFKA_ERROR_UNSUPPORTED_VERSION;
    resp.api_keys = keys;
    resp.api_keys_count = 1;
    size_t size = sp_kafka_response_frame_size(18, 0, &resp);
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, size);
    assert_int_equal(sp_kafka_response_encode(&w, 18, 0, 42, &resp), 0);
    /* Header v0 (correlation id only), then the v0 body. */
    assert_int_equal(sp_kload32(buf + 4), 42);
    assert_int_equal((int16_t)sp_kload16(buf + 8), 35);

    int32_t correlation = 0;
    void *body = NULL;
    int16_t decoded = -1;
    const char *field;
    assert_int_equal(sp_kafka_response_decode(buf + 4, size - 4, 18, 3, &arena, &correlation, &body,
                                              &decoded, &field),
                     0);
    assert_int_equal(correlation, 42);
    assert_int_equal(decoded, 0);
    struct sp_kafka_api_versions_response *back = body;
    assert_int_equal(back->error_code, 35);
    assert_int_equal(back->api_keys_count, 1);
    assert_int_equal(back->api_keys[0].max_version, 2);

    /* A flexible response (Metadata v12) carries header v1 and decodes back. */
    struct sp_kafka_metadata_response md;
    sp_kafka_metadata_response_init(&md);
    md.cluster_id = SP_KSTR("cluster-1");
    md.controller_id = 3;
    size = sp_kafka_response_frame_size(3, 12, &md);
    sp_kwriter_init(&w, buf, size);
    assert_int_equal(sp_kafka_response_encode(&w, 3, 12, 77, &md), 0);
    sp_karena_reset(&arena);
    assert_int_equal(sp_kafka_response_decode(buf + 4, size - 4, 3, 12, &arena, &correlation, &body,
                                              &decoded, &field),
                     0);
    assert_int_equal(correlation, 77);
    assert_int_equal(decoded, 12);
    struct sp_kafka_metadata_response *md_back = body;
    assert_true(sp_kstr_eq(md_back->cluster_id, "cluster-1"));
    assert_int_equal(md_back->controller_id, 3);
}

/* Bytes from Kafka's protocol guide: a v0 Metadata request for topic "test". */
static void test_known_bytes(void **state)
{
    (void)state;
    const uint8_t frame[] = {
        0, 0, 0,   0x18,                               /* size 24 */
        0, 3, 0,   0,                                  /* Metadata v0 */
        0, 0, 0,   5,                                  /* correlation id 5 */
        0, 4, 'k', 'c',  'a', 't',                     /* client id "kcat" */
        0, 0, 0,   1,    0,   4,   't', 'e', 's', 't', /* topics ["test"] */
    };
    size_t n;
    assert_int_equal(sp_kafka_frame_check(frame, sizeof(frame), 1 << 20, &n), 1);
    assert_int_equal(n, sizeof(frame));
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_request_frame out;
    const char *field;
    assert_int_equal(sp_kafka_request_decode(frame + 4, n - 4, &arena, &out, &field), 0);
    struct sp_kafka_metadata_request *md = out.body;
    assert_int_equal(md->topics_count, 1);
    assert_true(sp_kstr_eq(md->topics[0].name, "test"));
    /* The same request from spate's encoder is byte-identical. */
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, sizeof(frame));
    assert_int_equal(sp_kafka_request_encode(&w, &out.header, md), 0);
    assert_memory_equal(buf, frame, sizeof(frame));
}

static void test_hostile_counts_fail_before_allocating(void **state)
{
    (void)state;
    /* Metadata v0 request claiming 2^31-1 topics in 4 bytes. */
    const uint8_t frame[] = {0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff};
    uint8_t tiny[64];
    struct sp_karena arena;
    sp_karena_init(&arena, tiny, sizeof(tiny));
    struct sp_kafka_request_frame out;
    const char *field = NULL;
    assert_int_equal(sp_kafka_request_decode(frame, sizeof(frame), &arena, &out, &field), -EBADMSG);
    assert_string_equal(field, "MetadataRequest.Topics");
    /* A string longer than the frame. */
    const uint8_t str[] = {0, 3, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, 'a'};
    assert_int_equal(sp_kafka_request_decode(str, sizeof(str), &arena, &out, &field), -EBADMSG);
    assert_string_equal(field, "RequestHeader.ClientId");
}

static void test_uvarint_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint32_t value;
        uint8_t bytes[5];
        size_t len;
    } cases[] = {
        {0, {0x00}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {16383, {0xff, 0x7f}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {1u << 28, {0x80, 0x80, 0x80, 0x80, 0x01}, 5},
        {UINT32_MAX, {0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(cases); i++) {
        uint8_t out[8];
        struct sp_kwriter w;
        sp_kwriter_init(&w, out, sizeof(out));
        assert_int_equal(sp_kw_uvarint(&w, cases[i].value, "v"), 0);
        assert_int_equal((size_t)(w.p - out), cases[i].len);
        assert_memory_equal(out, cases[i].bytes, cases[i].len);
        assert_int_equal(sp_ks_uvarint(cases[i].value), cases[i].len);
        struct sp_kreader r;
        sp_kreader_init(&r, cases[i].bytes, cases[i].len, NULL);
        uint32_t back = 0;
        assert_int_equal(sp_kr_uvarint(&r, &back, "v"), 0);
        assert_int_equal(back, cases[i].value);
    }
    /* Past 32 bits, and a sixth byte: refused. */
    const uint8_t over[] = {0xff, 0xff, 0xff, 0xff, 0x1f};
    const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    struct sp_kreader r;
    uint32_t v;
    sp_kreader_init(&r, over, sizeof(over), NULL);
    assert_int_equal(sp_kr_uvarint(&r, &v, "v"), -EBADMSG);
    sp_kreader_init(&r, six, sizeof(six), NULL);
    assert_int_equal(sp_kr_uvarint(&r, &v, "v"), -EBADMSG);
}

/*
 * A flexible request with a 200-byte compact string, checked byte by byte
 * against KIP-482's rules: uvarint(length + 1) = 201 = 0xc9 0x01, and an
 * empty tagged-field section (0x00) after the header and the body.
 */
static void test_flexible_bytes_by_hand(void **state)
{
    (void)state;
    static char name[200];
    memset(name, 'n', sizeof(name));
    struct sp_kafka_api_versions_request req;
    sp_kafka_api_versions_request_init(&req);
    req.client_software_name = (struct sp_kstr){name, 200};
    req.client_software_version = SP_KSTR("1.0");
    struct sp_kafka_request_header h;
    sp_kafka_request_header_init(&h);
    h.request_api_key = 18;
    h.request_api_version = 3;
    h.correlation_id = 9;
    h.client_id = SP_KSTR("c");
    size_t size = sp_kafka_request_frame_size(&h, &req);
    /* size + key + version + correlation + int16 client id "c" + header tags
     * + 2-byte length + 200 + 1-byte length + "1.0" + body tags */
    assert_int_equal(size, 4 + 2 + 2 + 4 + 3 + 1 + 2 + 200 + 1 + 3 + 1);
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, size);
    assert_int_equal(sp_kafka_request_encode(&w, &h, &req), 0);
    const uint8_t head[] = {
        0, 0, 0, (uint8_t)(size - 4), 0, 18, 0, 3, 0, 0, 0, 9, 0, 1, 'c', 0, 0xc9, 0x01, 'n'};
    assert_memory_equal(buf, head, sizeof(head));
    const uint8_t tail[] = {'n', 0x04, '1', '.', '0', 0x00};
    assert_memory_equal(buf + size - sizeof(tail), tail, sizeof(tail));
}

/* Compact strings are capped at 32767 bytes like the others (as Java does). */
static void test_compact_strings_capped(void **state)
{
    (void)state;
    static char huge[40000];
    memset(huge, 't', sizeof(huge));
    struct sp_kafka_api_versions_request req;
    sp_kafka_api_versions_request_init(&req);
    req.client_software_name = (struct sp_kstr){huge, (int32_t)sizeof(huge)};
    uint8_t *out = buf;
    struct sp_kwriter w;
    sp_kwriter_init(&w, out, BUF_BYTES);
    assert_int_equal(sp_kafka_api_versions_request_encode(&w, 3, &req), -EINVAL);
    /* And a compact string header claiming 40000 bytes is refused on read. */
    uint8_t wire[3 + 1] = {0xc1, 0xb8, 0x02, 0};
    struct sp_kreader r;
    sp_kreader_init(&r, wire, sizeof(wire), NULL);
    struct sp_kstr s;
    assert_int_equal(sp_kr_string(&r, true, false, &s, "s"), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_table_is_sorted_and_findable),
        cmocka_unit_test(test_every_message_every_version),
        cmocka_unit_test(test_frame_check),
        cmocka_unit_test(test_header_versions),
        cmocka_unit_test(test_request_frame_round_trip),
        cmocka_unit_test(test_unknown_api_is_enotsup_with_header),
        cmocka_unit_test(test_trailing_bytes_are_rejected),
        cmocka_unit_test(test_response_frames_and_api_versions_fallback),
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_hostile_counts_fail_before_allocating),
        cmocka_unit_test(test_uvarint_boundaries),
        cmocka_unit_test(test_flexible_bytes_by_hand),
        cmocka_unit_test(test_compact_strings_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
