/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real frames from real clients: tests/fixtures/kafka holds every frame that
 * kcat (librdkafka 2.0) and kafka-python exchanged with librdkafka's mock
 * cluster (see the README there for how they were captured). Each request
 * and response must decode with the generated codec at the version the
 * client used, consuming every byte, and re-encode to the very same bytes:
 * that proves the codec agrees with two independent implementations, not
 * only with itself.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_kafka_frame.h"
#include "sp_record.h"

#ifndef FIXTURES_DIR
#error "FIXTURES_DIR must name tests/fixtures/kafka"
#endif

#define FRAME_BYTES_MAX (1u << 20)

static uint8_t arena_mem[8u << 20] __attribute__((aligned(16)));
static uint8_t frame[FRAME_BYTES_MAX];
static uint8_t again[FRAME_BYTES_MAX];

/*
 * Frames the mock cluster gets wrong, which a strict decoder must refuse:
 * OffsetFetch v3 "all topics" answered with a null topics array, which the
 * v3 schema does not allow (kafka-python crashes on it with a TypeError).
 */
static const struct {
    const char *file;
    const char *field;
} nonconforming[] = {
    {"kp-admin/0024-resp-OffsetFetch-v3.bin", "OffsetFetchResponse.Topics"},
};

static const char *nonconforming_field(const char *path)
{
    for (unsigned i = 0; i < SP_ARRAY_LEN(nonconforming); i++) {
        size_t n = strlen(path), m = strlen(nonconforming[i].file);
        if (n >= m && strcmp(path + n - m, nonconforming[i].file) == 0)
            return nonconforming[i].field;
    }
    return NULL;
}

struct tally {
    unsigned rejected;
    unsigned requests;
    unsigned responses;
    unsigned fallbacks;
    unsigned apis_seen[SP_KAFKA_API_KEY_MAX + 1];
};

static size_t load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    size_t n = fread(frame, 1, sizeof(frame), f);
    fclose(f);
    return n;
}

static void check_request(const char *path, size_t len, int key, int version, int correlation,
                          const char *client_id, struct tally *t)
{
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_request_frame req;
    const char *field = NULL;
    int ret = sp_kafka_request_decode(frame + 4, len - 4, &arena, &req, &field);
    if (ret != 0)
        fail_msg("%s: decode %d at %s", path, ret, field ? field : "?");
    assert_int_equal(req.header.request_api_key, key);
    assert_int_equal(req.header.request_api_version, version);
    assert_int_equal(req.header.correlation_id, correlation);
    if (strcmp(client_id, "-") != 0 && !sp_kstr_eq(req.header.client_id, client_id))
        fail_msg("%s: client id '%.*s', the manifest says '%s'", path, req.header.client_id.len,
                 req.header.client_id.ptr, client_id);
    size_t size = sp_kafka_request_frame_size(&req.header, req.body);
    assert_int_equal(size, len);
    struct sp_kwriter w;
    sp_kwriter_init(&w, again, size);
    assert_int_equal(sp_kafka_request_encode(&w, &req.header, req.body), 0);
    if (memcmp(frame, again, len) != 0)
        fail_msg("%s: re-encoding differs", path);
    t->requests++;
    t->apis_seen[key]++;
}

static void check_response(const char *path, size_t len, int key, int version, int expected_id,
                           struct tally *t)
{
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    int32_t correlation;
    void *body;
    int16_t decoded;
    const char *field = NULL;
    int ret = sp_kafka_response_decode(frame + 4, len - 4, (int16_t)key, (int16_t)version, &arena,
                                       &correlation, &body, &decoded, &field);
    const char *wrong = nonconforming_field(path);
    if (wrong != NULL) {
        assert_int_equal(ret, -EBADMSG);
        assert_string_equal(field, wrong);
        t->rejected++;
        return;
    }
    if (ret != 0)
        fail_msg("%s: decode %d at %s", path, ret, field ? field : "?");
    assert_int_equal(correlation, expected_id);
    if (decoded != version) {
        /* The ApiVersions fallback: the client then retries with v0. */
        assert_int_equal(key, SP_KAFKA_API_VERSIONS_KEY);
        assert_int_equal(((struct sp_kafka_api_versions_response *)body)->error_code,
                         SP_KAFKA_ERROR_UNSUPPORTED_VERSION);
        t->fallbacks++;
        return;
    }
    size_t size = sp_kafka_response_frame_size((int16_t)key, (int16_t)version, body);
    assert_int_equal(size, len);
    struct sp_kwriter w;
    sp_kwriter_init(&w, again, size);
    assert_int_equal(
        sp_kafka_response_encode(&w, (int16_t)key, (int16_t)version, correlation, body), 0);
    if (memcmp(frame, again, len) != 0)
        fail_msg("%s: re-encoding differs", path);
    t->responses++;
}

static void check_scenario(const char *dir, struct tally *t)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/manifest.txt", dir);
    FILE *manifest = fopen(path, "r");
    if (manifest == NULL)
        return; /* not a scenario folder */
    char line[2048];
    while (fgets(line, sizeof(line), manifest) != NULL) {
        if (line[0] == '#')
            continue;
        char file[256], direction[8], client_id[128];
        int key, version, correlation, conn;
        char client[64];
        if (sscanf(line, "%255s %7s %d %d %d %63s %d %127s", file, direction, &key, &version,
                   &correlation, client, &conn, client_id) != 8)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        size_t len = load(path);
        size_t frame_len = 0;
        assert_int_equal(sp_kafka_frame_check(frame, len, FRAME_BYTES_MAX, &frame_len), 1);
        assert_int_equal(frame_len, len);
        /* The mock answers admin requests by closing: nothing to check there. */
        if (sp_kafka_api_find((int16_t)key) == NULL)
            continue;
        if (strcmp(direction, "req") == 0)
            check_request(path, len, key, version, correlation, client_id, t);
        else
            check_response(path, len, key, version, correlation, t);
    }
    fclose(manifest);
}

static void test_real_client_frames_decode_and_reencode_exactly(void **state)
{
    (void)state;
    static struct tally t;
    DIR *d = opendir(FIXTURES_DIR);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char dir[1024];
        if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", FIXTURES_DIR, e->d_name) >= sizeof(dir))
            fail_msg("path too long: %s", e->d_name);
        check_scenario(dir, &t);
    }
    closedir(d);
    printf("%u requests and %u responses re-encoded byte for byte, %u ApiVersions fallbacks\n",
           t.requests, t.responses, t.fallbacks);
    assert_true(t.requests > 100);
    assert_true(t.responses > 100);
    assert_true(t.fallbacks > 0);
    assert_int_equal(t.rejected, SP_ARRAY_LEN(nonconforming));
    /* The client's whole life: produce, fetch, offsets, metadata, groups. */
    const int expected[] = {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18};
    for (unsigned i = 0; i < SP_ARRAY_LEN(expected); i++)
        if (t.apis_seen[expected[i]] == 0)
            fail_msg("no fixture for API %d", expected[i]);
}

/* ---- kcat's batches, every codec, decode to what kcat was given ---- */

static uint8_t decompressed[1u << 20];

/* Checks every record of every batch in a Produce request; returns how many. */
static unsigned check_produced(const char *path, const char *codec_name, int codec_id,
                               unsigned *seen)
{
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    struct sp_kafka_request_frame req;
    const char *field;
    size_t len = load(path);
    assert_int_equal(sp_kafka_request_decode(frame + 4, len - 4, &arena, &req, &field), 0);
    const struct sp_kafka_produce_request *p = req.body;
    struct sp_record_codec codec;
    assert_int_equal(sp_record_codec_init(&codec, SP_RECORD_CODEC_DECOMPRESS), 0);
    unsigned count = 0;
    for (int32_t t = 0; t < p->topic_data_count; t++) {
        for (int32_t q = 0; q < p->topic_data[t].partition_data_count; q++) {
            struct sp_kbytes records = p->topic_data[t].partition_data[q].records;
            struct sp_record_set set;
            sp_record_set_init(&set, records.ptr, (size_t)records.len);
            struct sp_record_batch batch;
            int more;
            while ((more = sp_record_set_next(&set, &batch)) == 1) {
                assert_int_equal(batch.attributes & SP_RECORD_ATTR_CODEC_MASK, codec_id);
                struct sp_record_iter it;
                assert_int_equal(
                    sp_record_iter_open(&it, &batch, &codec, decompressed, sizeof(decompressed)),
                    0);
                struct sp_record rec;
                int more_records;
                while ((more_records = sp_record_iter_next(&it, &rec)) == 1) {
                    /* kcat spreads keys over partitions: any order, each once. */
                    count++;
                    assert_true(rec.key_len == 5 && memcmp(rec.key, "key-", 4) == 0);
                    unsigned i = (unsigned)(rec.key[4] - '0');
                    assert_true(i >= 1 && i <= 4);
                    assert_false(*seen & (1u << i));
                    *seen |= 1u << i;
                    char want[160];
                    int n = snprintf(want, sizeof(want),
                                     "value %u from kcat, codec %s; a repetitive payload payload "
                                     "payload payload",
                                     i, codec_name);
                    assert_int_equal(rec.value_len, n);
                    assert_memory_equal(rec.value, want, (size_t)n);
                    assert_int_equal(rec.header_count, 2);
                    struct sp_record_header_iter hit;
                    sp_record_header_iter_init(&hit, &rec);
                    struct sp_record_header h;
                    assert_int_equal(sp_record_header_next(&hit, &h), 1);
                    assert_int_equal(h.key_len, 5);
                    assert_memory_equal(h.key, "trace", 5);
                    assert_memory_equal(h.value, "t-1", 3);
                    assert_int_equal(sp_record_header_next(&hit, &h), 1);
                    assert_memory_equal(h.key, "origin", 6);
                    assert_memory_equal(h.value, "kcat", 4);
                    assert_int_equal(sp_record_header_next(&hit, &h), 0);
                }
                assert_int_equal(more_records, 0); /* the end, not an error */
            }
            assert_true(more == 0);
        }
    }
    sp_record_codec_deinit(&codec);
    return count;
}

static void test_kcat_batches_decode_to_the_original_records(void **state)
{
    (void)state;
    const char *codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    for (int c = 0; c < 5; c++) {
        char dir[512], path[1024];
        snprintf(dir, sizeof(dir), "%s/kcat-produce-%s", FIXTURES_DIR, codecs[c]);
        snprintf(path, sizeof(path), "%s/manifest.txt", dir);
        FILE *manifest = fopen(path, "r");
        assert_non_null(manifest);
        char line[2048];
        unsigned records = 0, seen = 0;
        while (fgets(line, sizeof(line), manifest) != NULL) {
            char file[256], direction[8];
            int key, version;
            if (line[0] == '#' ||
                sscanf(line, "%255s %7s %d %d", file, direction, &key, &version) != 4)
                continue;
            if (key != 0 || strcmp(direction, "req") != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, file);
            records += check_produced(path, codecs[c], c, &seen);
        }
        fclose(manifest);
        if (records != 4 || seen != 0x1e)
            fail_msg("codec %s: %u records, wanted kcat's 4", codecs[c], records);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_client_frames_decode_and_reencode_exactly),
        cmocka_unit_test(test_kcat_batches_decode_to_the_original_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
