/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Record batches: varint encodings, their truncation and overflow;
 * encode -> parse -> iterate round trips with every codec (null and empty
 * keys and values, headers with null values, thousands of records), batch
 * fields and flags; CRC corruption at every byte; truncation at every
 * length, both as a cut buffer and as a batch whose header was fixed up to
 * match the cut (each copy in an exact-size allocation, so ASan sees any
 * read past it); random corruption of the records; the decompression limit
 * (bombs of every codec, the exact boundary); control batches; the records
 * field walker with a cut last batch; legacy v0/v1 messages built here by
 * hand, plain and gzip-wrapped (relative and absolute offsets,
 * LogAppendTime), and v0's lz4 frame checksum; xerial and raw snappy; and
 * real batches librdkafka (kcat) produced, one per codec.
 */
#include <errno.h>
#include <lz4frame.h>
#include <setjmp.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "record_int.h"
#include "sp_crc32c.h"
#include "sp_rand.h"
#include "sp_record.h"

static struct sp_record_codec codec;

static const enum sp_record_codec_id all_codecs[] = {
    SP_RECORD_CODEC_NONE, SP_RECORD_CODEC_GZIP, SP_RECORD_CODEC_SNAPPY,
    SP_RECORD_CODEC_LZ4,  SP_RECORD_CODEC_ZSTD,
};

/* ---- Helpers ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Rewrites a v2 batch's length and CRC after its bytes were changed. */
static void fix_header(uint8_t *batch, size_t total)
{
    put32(batch + 8, (uint32_t)(total - 12));
    put32(batch + 17, sp_crc32c(0, batch + 21, total - 21));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n != 0 ? n : 1);
    assert_non_null(p);
    return p;
}

#define KEY_MAX 40
#define VALUE_MAX 300
#define HEADERS_MAX 3

/* A record to append and to compare against, with its own bytes. */
struct t_record {
    struct sp_record_input in;
    struct sp_record_header headers[HEADERS_MAX];
    uint8_t key[KEY_MAX];
    uint8_t value[VALUE_MAX];
    uint8_t hkey[HEADERS_MAX][12];
    uint8_t hvalue[HEADERS_MAX][12];
};

/* A length: null (-1) one time in 8, empty one time in 8 (when allowed), else 1..max. */
static int32_t random_len(struct sp_rand *rng, int32_t max, bool nullable)
{
    uint64_t pick = sp_rand_below(rng, 8);
    if (pick == 0 && nullable)
        return -1;
    if (pick == 1)
        return 0;
    return 1 + (int32_t)sp_rand_below(rng, (uint64_t)max);
}

static void fill(uint8_t *p, int32_t len, struct sp_rand *rng)
{
    for (int32_t i = 0; i < len; i++)
        p[i] = (uint8_t)sp_rand_next(rng);
}

static void t_record_random(struct t_record *r, struct sp_rand *rng, int32_t offset_delta,
                            int64_t timestamp)
{
    memset(&r->in, 0, sizeof(r->in));
    r->in.offset_delta = offset_delta;
    r->in.timestamp = timestamp;
    r->in.key_len = random_len(rng, KEY_MAX, true);
    r->in.value_len = random_len(rng, VALUE_MAX, true);
    fill(r->key, r->in.key_len, rng);
    fill(r->value, r->in.value_len, rng);
    r->in.key = r->in.key_len >= 0 ? r->key : NULL;
    r->in.value = r->in.value_len >= 0 ? r->value : NULL;
    r->in.header_count = (uint32_t)sp_rand_below(rng, HEADERS_MAX + 1);
    r->in.headers = r->headers;
    for (uint32_t h = 0; h < r->in.header_count; h++) {
        struct sp_record_header *hd = &r->headers[h];
        hd->key_len = random_len(rng, 12, false);
        hd->value_len = random_len(rng, 12, true);
        fill(r->hkey[h], hd->key_len, rng);
        fill(r->hvalue[h], hd->value_len, rng);
        hd->key = r->hkey[h];
        hd->value = hd->value_len >= 0 ? r->hvalue[h] : NULL;
    }
}

static void assert_bytes(const uint8_t *got, int32_t got_len, const void *want, int32_t want_len)
{
    assert_int_equal(got_len, want_len);
    if (want_len < 0) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    if (want_len > 0)
        assert_memory_equal(got, want, (size_t)want_len);
}

static void assert_record(const struct sp_record *got, const struct t_record *want,
                          int64_t base_offset, int64_t timestamp)
{
    assert_int_equal(got->offset, base_offset + want->in.offset_delta);
    assert_int_equal(got->timestamp, timestamp);
    assert_bytes(got->key, got->key_len, want->in.key, want->in.key_len);
    assert_bytes(got->value, got->value_len, want->in.value, want->in.value_len);
    assert_int_equal(got->header_count, want->in.header_count);
    struct sp_record_header_iter hit;
    sp_record_header_iter_init(&hit, got);
    struct sp_record_header h;
    for (uint32_t i = 0; i < want->in.header_count; i++) {
        assert_int_equal(sp_record_header_next(&hit, &h), 1);
        assert_bytes(h.key, h.key_len, want->headers[i].key, want->headers[i].key_len);
        assert_bytes(h.value, h.value_len, want->headers[i].value, want->headers[i].value_len);
    }
    assert_int_equal(sp_record_header_next(&hit, &h), 0);
}

/* Builds a batch of `n` records into a fresh allocation; returns it and its size. */
static uint8_t *build_batch(const struct sp_record_builder_config *config, struct t_record *recs,
                            unsigned n, size_t *size)
{
    size_t raw = 64;
    for (unsigned i = 0; i < n; i++)
        raw += 64 + (size_t)SP_MAX(recs[i].in.key_len, 0) +
               (size_t)SP_MAX(recs[i].in.value_len, 0) + HEADERS_MAX * 30;
    size_t cap = SP_RECORD_BATCH_HEADER_BYTES + sp_record_compress_bound(config->codec, raw);
    uint8_t *buf = xmalloc(cap);
    uint8_t *scratch = xmalloc(raw);
    struct sp_record_builder_config c = *config;
    c.scratch = scratch;
    c.scratch_bytes = raw;
    struct sp_record_builder b;
    assert_int_equal(sp_record_builder_init(&b, buf, cap, &c), 0);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(sp_record_builder_append(&b, &recs[i].in), 0);
    assert_int_equal(sp_record_builder_finish(&b, &codec, size), 0);
    free(scratch);
    /* Into an exact-size allocation: ASan then sees any read past the batch. */
    uint8_t *exact = xmalloc(*size);
    memcpy(exact, buf, *size);
    free(buf);
    return exact;
}

static struct t_record *random_records(unsigned n, uint64_t seed, int64_t ts0)
{
    struct sp_rand rng;
    sp_rand_seed(&rng, seed);
    struct t_record *recs = xmalloc(sizeof(*recs) * (n != 0 ? n : 1));
    int32_t delta = 0;
    for (unsigned i = 0; i < n; i++) {
        /* Deltas with gaps (compacted topics), timestamps out of order. */
        delta += 1 + (int32_t)sp_rand_below(&rng, 3);
        int64_t ts = ts0 + (int64_t)sp_rand_below(&rng, 100000) - 50000;
        t_record_random(&recs[i], &rng, delta, ts);
    }
    return recs;
}

/* Parses, iterates and compares every field of every record. */
static void check_batch(const uint8_t *buf, size_t size, const struct sp_record_builder_config *c,
                        const struct t_record *recs, unsigned n)
{
    struct sp_record_batch batch;
    assert_int_equal(sp_record_batch_parse(buf, size, &batch), 0);
    assert_int_equal(batch.size, size);
    assert_int_equal(batch.magic, 2);
    assert_int_equal(batch.base_offset, c->base_offset);
    assert_int_equal(batch.record_count, n);
    assert_int_equal(batch.last_offset_delta, recs[n - 1].in.offset_delta);
    assert_int_equal(batch.producer_id, c->producer_id);
    assert_int_equal(batch.producer_epoch, c->producer_epoch);
    assert_int_equal(batch.base_sequence, c->base_sequence);
    assert_int_equal(batch.partition_leader_epoch, c->partition_leader_epoch);
    assert_int_equal(sp_record_batch_codec(&batch), c->codec);
    assert_int_equal(sp_record_batch_is_transactional(&batch), c->transactional);
    assert_int_equal(sp_record_batch_is_control(&batch), c->control);
    assert_int_equal(sp_record_batch_log_append_time(&batch), c->log_append_time_ms >= 0);
    assert_int_equal(batch.base_timestamp, recs[0].in.timestamp);
    int64_t max_ts = recs[0].in.timestamp;
    for (unsigned i = 1; i < n; i++)
        max_ts = SP_MAX(max_ts, recs[i].in.timestamp);
    assert_int_equal(batch.max_timestamp,
                     c->log_append_time_ms >= 0 ? c->log_append_time_ms : max_ts);
    assert_int_equal(sp_record_batch_last_offset(&batch),
                     c->base_offset + recs[n - 1].in.offset_delta);

    size_t dst_max = 64u << 20;
    uint8_t *dst = c->codec != SP_RECORD_CODEC_NONE ? xmalloc(dst_max) : NULL;
    struct sp_record_iter it;
    assert_int_equal(sp_record_iter_open(&it, &batch, &codec, dst, dst != NULL ? dst_max : 0), 0);
    struct sp_record r;
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(sp_record_iter_next(&it, &r), 1);
        int64_t ts = c->log_append_time_ms >= 0 ? c->log_append_time_ms : recs[i].in.timestamp;
        assert_record(&r, &recs[i], c->base_offset, ts);
    }
    assert_int_equal(sp_record_iter_next(&it, &r), 0);
    assert_int_equal(sp_record_iter_next(&it, &r), 0);
    free(dst);
}

static void round_trip(enum sp_record_codec_id id, unsigned n, uint64_t seed)
{
    struct t_record *recs = random_records(n, seed, 1700000000000);
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.base_offset = 1000 + (int64_t)seed;
    c.codec = id;
    c.producer_id = 77;
    c.producer_epoch = 3;
    c.base_sequence = 500;
    c.partition_leader_epoch = 9;
    size_t size;
    uint8_t *buf = build_batch(&c, recs, n, &size);
    check_batch(buf, size, &c, recs, n);
    free(buf);
    free(recs);
}

static int group_setup(void **state)
{
    (void)state;
    return sp_record_codec_init(&codec, SP_RECORD_CODEC_DECOMPRESS | SP_RECORD_CODEC_COMPRESS);
}

static int group_teardown(void **state)
{
    (void)state;
    sp_record_codec_deinit(&codec);
    return 0;
}

/* ---- Varints ---- */

static void test_varint_known_encodings(void **state)
{
    (void)state;
    static const struct {
        int32_t v;
        uint8_t bytes[5];
        unsigned len;
    } cases[] = {
        {0, {0x00}, 1},
        {-1, {0x01}, 1},
        {1, {0x02}, 1},
        {63, {0x7E}, 1},
        {-64, {0x7F}, 1},
        {64, {0x80, 0x01}, 2},
        {-65, {0x81, 0x01}, 2},
        {8191, {0xFE, 0x7F}, 2},
        {8192, {0x80, 0x80, 0x01}, 3},
        {INT32_MAX, {0xFE, 0xFF, 0xFF, 0xFF, 0x0F}, 5},
        {INT32_MIN, {0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, 5},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(cases); i++) {
        uint8_t out[5];
        assert_int_equal(sp_record_varint_size(cases[i].v), cases[i].len);
        assert_int_equal(sp_record_varint_encode(out, cases[i].v), cases[i].len);
        assert_memory_equal(out, cases[i].bytes, cases[i].len);
        int32_t v = 12345;
        assert_int_equal(sp_record_varint_decode(cases[i].bytes, cases[i].len, &v), cases[i].len);
        assert_int_equal(v, cases[i].v);
        /* Every shorter prefix is cut short. */
        for (unsigned cut = 0; cut < cases[i].len; cut++)
            assert_int_equal(sp_record_varint_decode(cases[i].bytes, cut, &v), -EBADMSG);
    }

    static const uint8_t max64[10] = {0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    static const uint8_t min64[10] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    uint8_t out[10];
    int64_t v64;
    assert_int_equal(sp_record_varlong_encode(out, INT64_MAX), 10);
    assert_memory_equal(out, max64, 10);
    assert_int_equal(sp_record_varlong_encode(out, INT64_MIN), 10);
    assert_memory_equal(out, min64, 10);
    assert_int_equal(sp_record_varlong_decode(max64, 10, &v64), 10);
    assert_int_equal(v64, INT64_MAX);
    assert_int_equal(sp_record_varlong_decode(min64, 10, &v64), 10);
    assert_int_equal(v64, INT64_MIN);
    for (unsigned cut = 0; cut < 10; cut++)
        assert_int_equal(sp_record_varlong_decode(max64, cut, &v64), -EBADMSG);
    assert_int_equal(sp_record_varlong_size(-1), 1);
    assert_int_equal(sp_record_varlong_size(1LL << 40), 6);
}

static void test_varint_overflow_and_padding(void **state)
{
    (void)state;
    int32_t v;
    int64_t v64;
    /* 5th byte beyond 4 bits: the value needs more than 32. */
    static const uint8_t over5[5] = {0xFF, 0xFF, 0xFF, 0xFF, 0x10};
    assert_int_equal(sp_record_varint_decode(over5, 5, &v), -EBADMSG);
    static const uint8_t cont5[6] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(sp_record_varint_decode(cont5, 6, &v), -EBADMSG);
    static const uint8_t over10[10] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02};
    assert_int_equal(sp_record_varlong_decode(over10, 10, &v64), -EBADMSG);
    static const uint8_t cont10[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x81, 0x00};
    assert_int_equal(sp_record_varlong_decode(cont10, 11, &v64), -EBADMSG);
    /* Padded (non-minimal) encodings are valid, as Kafka reads them. */
    static const uint8_t padded[3] = {0x82, 0x80, 0x00};
    assert_int_equal(sp_record_varint_decode(padded, 3, &v), 3);
    assert_int_equal(v, 1);
    assert_int_equal(sp_record_varlong_decode(padded, 3, &v64), 3);
    assert_int_equal(v64, 1);
    /* A varint stops at its own end, not the buffer's. */
    static const uint8_t two[2] = {0x04, 0x06};
    assert_int_equal(sp_record_varint_decode(two, 2, &v), 1);
    assert_int_equal(v, 2);
}

static void test_varint_random_round_trip(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 3);
    for (unsigned i = 0; i < 100000; i++) {
        uint64_t r = sp_rand_next(&rng);
        int64_t v64 = (int64_t)(r >> sp_rand_below(&rng, 64));
        if (i & 1)
            v64 = -v64;
        int32_t v32 = (int32_t)v64;
        uint8_t buf[10];
        unsigned n = sp_record_varlong_encode(buf, v64);
        assert_int_equal(n, sp_record_varlong_size(v64));
        int64_t got64;
        assert_int_equal(sp_record_varlong_decode(buf, n, &got64), (int)n);
        assert_int_equal(got64, v64);
        n = sp_record_varint_encode(buf, v32);
        assert_int_equal(n, sp_record_varint_size(v32));
        int32_t got32;
        assert_int_equal(sp_record_varint_decode(buf, n, &got32), (int)n);
        assert_int_equal(got32, v32);
    }
}

/* ---- Round trips ---- */

static void test_round_trip_every_codec(void **state)
{
    (void)state;
    for (unsigned i = 0; i < SP_ARRAY_LEN(all_codecs); i++) {
        round_trip(all_codecs[i], 1, 1);
        round_trip(all_codecs[i], 7, 2);
        round_trip(all_codecs[i], 300, 3);
    }
}

static void test_round_trip_many_records(void **state)
{
    (void)state;
    /* 3 MB of records: several snappy and lz4 blocks, and zlib's output buffer refilled. */
    for (unsigned i = 0; i < SP_ARRAY_LEN(all_codecs); i++)
        round_trip(all_codecs[i], 20000, 10 + i);
}

static void test_null_empty_and_headers(void **state)
{
    (void)state;
    struct t_record recs[4];
    memset(recs, 0, sizeof(recs));
    /* null key, null value; empty key, empty value; a header with a null value. */
    recs[0].in =
        (struct sp_record_input){.offset_delta = 0, .timestamp = 5, .key_len = -1, .value_len = -1};
    recs[1].in = (struct sp_record_input){.offset_delta = 1,
                                          .timestamp = 6,
                                          .key = recs[1].key,
                                          .key_len = 0,
                                          .value = recs[1].value,
                                          .value_len = 0};
    recs[2].headers[0] = (struct sp_record_header){
        .key = (const uint8_t *)"h", .key_len = 1, .value = NULL, .value_len = -1};
    recs[2].headers[1] = (struct sp_record_header){
        .key = (const uint8_t *)"", .key_len = 0, .value = (const uint8_t *)"", .value_len = 0};
    recs[2].in = (struct sp_record_input){.offset_delta = 2,
                                          .timestamp = 4,
                                          .key_len = -1,
                                          .value = (const uint8_t *)"v",
                                          .value_len = 1,
                                          .headers = recs[2].headers,
                                          .header_count = 2};
    memcpy(recs[3].value, "x", 1);
    recs[3].in = (struct sp_record_input){.offset_delta = 1000,
                                          .timestamp = -1,
                                          .key_len = -1,
                                          .value = recs[3].value,
                                          .value_len = 1};
    for (unsigned i = 0; i < SP_ARRAY_LEN(all_codecs); i++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[i];
        size_t size;
        uint8_t *buf = build_batch(&c, recs, 4, &size);
        check_batch(buf, size, &c, recs, 4);
        free(buf);
    }
}

static void test_flags_and_log_append_time(void **state)
{
    (void)state;
    struct t_record *recs = random_records(50, 5, 1600000000000);
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.codec = SP_RECORD_CODEC_LZ4;
    c.transactional = true;
    c.producer_id = 1234567890123;
    c.producer_epoch = 32767;
    c.base_sequence = INT32_MAX - 100;
    c.log_append_time_ms = 1700000000999;
    c.base_offset = INT64_MAX / 2;
    size_t size;
    uint8_t *buf = build_batch(&c, recs, 50, &size);
    check_batch(buf, size, &c, recs, 50);
    free(buf);
    free(recs);
}

/* ---- Corruption and truncation ---- */

static void test_crc_corruption_detected(void **state)
{
    (void)state;
    struct t_record *recs = random_records(20, 6, 1700000000000);
    for (unsigned k = 0; k < SP_ARRAY_LEN(all_codecs); k++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[k];
        size_t size;
        uint8_t *buf = build_batch(&c, recs, 20, &size);
        struct sp_record_batch batch;
        assert_int_equal(sp_record_batch_parse(buf, size, &batch), 0);
        /* Every byte the CRC covers, the CRC itself and the magic. */
        for (size_t i = 16; i < size; i++) {
            for (unsigned bit = 0; bit < 8; bit += 3) {
                buf[i] ^= (uint8_t)(1u << bit);
                assert_int_equal(sp_record_batch_parse(buf, size, &batch), -EBADMSG);
                buf[i] ^= (uint8_t)(1u << bit);
            }
        }
        /* The length: a different batch size is cut short or not a batch. */
        buf[11] ^= 1;
        assert_true(sp_record_batch_parse(buf, size, &batch) < 0);
        buf[11] ^= 1;
        assert_int_equal(sp_record_batch_parse(buf, size, &batch), 0);
        free(buf);
    }
    free(recs);
}

static void test_truncated_buffer_every_length(void **state)
{
    (void)state;
    struct t_record *recs = random_records(10, 7, 1700000000000);
    for (unsigned k = 0; k < SP_ARRAY_LEN(all_codecs); k++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[k];
        size_t size;
        uint8_t *buf = build_batch(&c, recs, 10, &size);
        for (size_t cut = 0; cut < size; cut++) {
            uint8_t *part = xmalloc(cut);
            memcpy(part, buf, cut);
            struct sp_record_batch batch;
            assert_int_equal(sp_record_batch_parse(part, cut, &batch), -EAGAIN);
            assert_int_equal(batch.size, cut >= 12 ? size : 0);
            struct sp_record_set set;
            sp_record_set_init(&set, part, cut);
            assert_int_equal(sp_record_set_next(&set, &batch), 0);
            assert_int_equal(set.partial_bytes, cut);
            assert_int_equal(set.partial_batch_bytes, cut >= 12 ? size : 0);
            free(part);
        }
        free(buf);
    }
    free(recs);
}

/* Iterates a batch whole; 0 when every declared record came out, else the error. */
static int iterate_all(const uint8_t *buf, size_t size, uint8_t *dst, size_t dst_max)
{
    struct sp_record_batch batch;
    int rc = sp_record_batch_parse(buf, size, &batch);
    if (rc < 0)
        return rc;
    struct sp_record_iter it;
    rc = sp_record_iter_open(&it, &batch, &codec, dst, dst_max);
    if (rc < 0)
        return rc;
    struct sp_record r;
    unsigned headers = 0;
    while ((rc = sp_record_iter_next(&it, &r)) == 1) {
        struct sp_record_header_iter hit;
        struct sp_record_header h;
        sp_record_header_iter_init(&hit, &r);
        while ((rc = sp_record_header_next(&hit, &h)) == 1)
            headers++;
        if (rc < 0)
            return rc;
    }
    (void)headers;
    return rc;
}

static void test_truncated_records_fixed_header(void **state)
{
    (void)state;
    struct t_record *recs = random_records(12, 8, 1700000000000);
    size_t dst_max = 1 << 20;
    uint8_t *dst = xmalloc(dst_max);
    for (unsigned k = 0; k < SP_ARRAY_LEN(all_codecs); k++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[k];
        size_t size;
        uint8_t *buf = build_batch(&c, recs, 12, &size);
        assert_int_equal(iterate_all(buf, size, dst, dst_max), 0);
        /* A header that matches the cut: the CRC passes, the records must not. */
        for (size_t cut = SP_RECORD_BATCH_HEADER_BYTES; cut < size; cut++) {
            uint8_t *part = xmalloc(cut);
            memcpy(part, buf, cut);
            fix_header(part, cut);
            int rc = iterate_all(part, cut, dst, dst_max);
            if (rc != -EBADMSG)
                fail_msg("codec %d cut %zu of %zu: %d", c.codec, cut, size, rc);
            free(part);
        }
        free(buf);
    }
    free(dst);
    free(recs);
}

static void test_random_corruption_never_crashes(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 11);
    struct t_record *recs = random_records(30, 9, 1700000000000);
    size_t dst_max = 1 << 20;
    uint8_t *dst = xmalloc(dst_max);
    for (unsigned k = 0; k < SP_ARRAY_LEN(all_codecs); k++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[k];
        size_t size;
        uint8_t *buf = build_batch(&c, recs, 30, &size);
        unsigned failed = 0;
        for (unsigned trial = 0; trial < 3000; trial++) {
            uint8_t *copy = xmalloc(size);
            memcpy(copy, buf, size);
            unsigned flips = 1 + (unsigned)sp_rand_below(&rng, 4);
            for (unsigned f = 0; f < flips; f++) {
                size_t at = SP_RECORD_BATCH_HEADER_BYTES +
                            sp_rand_below(&rng, size - SP_RECORD_BATCH_HEADER_BYTES);
                copy[at] = (uint8_t)sp_rand_next(&rng);
            }
            fix_header(copy, size);
            int rc = iterate_all(copy, size, dst, dst_max);
            assert_true(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
            failed += rc != 0;
            free(copy);
        }
        /* Most corruptions are caught (some only change bytes of a value). */
        assert_true(failed > 0);
        free(buf);
    }
    free(dst);
    free(recs);
}

/* ---- Decompression limit ---- */

static void test_decompression_bomb_is_bounded(void **state)
{
    (void)state;
    /* One record of 16 MiB of zeros: under 1 MiB compressed in every codec (snappy's ~21:1 the
     * worst). */
    enum { BOMB = 16 << 20 };
    struct t_record *rec = xmalloc(sizeof(*rec));
    memset(&rec->in, 0, sizeof(rec->in));
    uint8_t *zeros = calloc(1, BOMB);
    assert_non_null(zeros);
    rec->in = (struct sp_record_input){.key_len = -1, .value = zeros, .value_len = BOMB};
    uint8_t *scratch = xmalloc(BOMB + 64);
    uint8_t *dst = xmalloc(1 << 20);
    for (unsigned k = 1; k < SP_ARRAY_LEN(all_codecs); k++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = all_codecs[k];
        c.scratch = scratch;
        c.scratch_bytes = BOMB + 64;
        size_t buf_bytes =
            SP_RECORD_BATCH_HEADER_BYTES + sp_record_compress_bound(c.codec, BOMB + 64);
        uint8_t *buf = xmalloc(buf_bytes);
        struct sp_record_builder b;
        assert_int_equal(sp_record_builder_init(&b, buf, buf_bytes, &c), 0);
        assert_int_equal(sp_record_builder_append(&b, &rec->in), 0);
        size_t size;
        assert_int_equal(sp_record_builder_finish(&b, &codec, &size), 0);
        assert_true(size < (1 << 20));
        struct sp_record_batch batch;
        assert_int_equal(sp_record_batch_parse(buf, size, &batch), 0);
        size_t n = 0;
        assert_int_equal(sp_record_batch_decompress(&batch, &codec, dst, 1 << 20, &n), -EMSGSIZE);
        struct sp_record_iter it;
        assert_int_equal(sp_record_iter_open(&it, &batch, &codec, dst, 1 << 20), -EMSGSIZE);
        assert_int_equal(sp_record_iter_open(&it, &batch, &codec, NULL, 0), -EMSGSIZE);
        free(buf);
    }
    free(dst);
    free(scratch);
    free(zeros);
    free(rec);
}

static void test_decompression_limit_exact(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 12);
    static const size_t sizes[] = {1, 100, 4096, 65536, 65537, 200000};
    for (unsigned s = 0; s < SP_ARRAY_LEN(sizes); s++) {
        size_t len = sizes[s];
        uint8_t *src = xmalloc(len);
        for (size_t i = 0; i < len; i++)
            src[i] = (uint8_t)(sp_rand_below(&rng, 4) == 0 ? sp_rand_next(&rng) : 'a');
        for (unsigned k = 1; k < SP_ARRAY_LEN(all_codecs); k++) {
            size_t bound = sp_record_compress_bound(all_codecs[k], len);
            uint8_t *comp = xmalloc(bound);
            size_t clen = 0;
            assert_int_equal(
                sp_record_compress(&codec, all_codecs[k], 0, src, len, comp, bound, &clen), 0);
            uint8_t *out = xmalloc(len);
            size_t n = 0;
            assert_int_equal(sp_record_decompress(&codec, all_codecs[k], comp, clen, out, len, &n),
                             0);
            assert_int_equal(n, len);
            assert_memory_equal(out, src, len);
            if (sp_record_decompress(&codec, all_codecs[k], comp, clen, out, len - 1, &n) !=
                -EMSGSIZE)
                fail_msg("codec %u len %zu: one byte short is not -EMSGSIZE", k, len);
            /* Too small an output for compression is -ENOBUFS, never an overflow. */
            uint8_t *small = xmalloc(clen - 1);
            assert_int_equal(
                sp_record_compress(&codec, all_codecs[k], 0, src, len, small, clen - 1, &n),
                -ENOBUFS);
            free(small);
            free(out);
            free(comp);
        }
        free(src);
    }
}

static void test_decompress_garbage(void **state)
{
    (void)state;
    static const uint8_t garbage[] = "this is not compressed data at all, not by any codec";
    uint8_t out[256];
    size_t n;
    for (unsigned k = 1; k < SP_ARRAY_LEN(all_codecs); k++) {
        assert_int_equal(sp_record_decompress(&codec, all_codecs[k], garbage, sizeof(garbage), out,
                                              sizeof(out), &n),
                         -EBADMSG);
        assert_int_equal(
            sp_record_decompress(&codec, all_codecs[k], garbage, 0, out, sizeof(out), &n),
            -EBADMSG);
    }
    assert_int_equal(
        sp_record_decompress(&codec, SP_RECORD_CODEC_NONE, garbage, 4, out, sizeof(out), &n),
        -EINVAL);
    assert_int_equal(
        sp_record_decompress(&codec, (enum sp_record_codec_id)7, garbage, 4, out, sizeof(out), &n),
        -EINVAL);
    struct sp_record_codec only_compress;
    assert_int_equal(sp_record_codec_init(&only_compress, SP_RECORD_CODEC_COMPRESS), 0);
    assert_int_equal(sp_record_decompress(&only_compress, SP_RECORD_CODEC_GZIP, garbage, 4, out,
                                          sizeof(out), &n),
                     -EINVAL);
    sp_record_codec_deinit(&only_compress);
    assert_int_equal(sp_record_codec_init(&only_compress, 0), -EINVAL);
    assert_int_equal(sp_record_codec_init(&only_compress, 0x80), -EINVAL);
}

/* ---- Snappy framings ---- */

/* Builds a batch whose records are compressed here, by `compress`, not by the builder. */
static uint8_t *rebatch(const uint8_t *plain, size_t plain_size, enum sp_record_codec_id id,
                        const uint8_t *records, size_t records_len, size_t *size)
{
    *size = SP_RECORD_BATCH_HEADER_BYTES + records_len;
    uint8_t *buf = xmalloc(*size);
    memcpy(buf, plain, SP_RECORD_BATCH_HEADER_BYTES);
    buf[22] = (uint8_t)((buf[22] & ~SP_RECORD_ATTR_CODEC_MASK) | id);
    memcpy(buf + SP_RECORD_BATCH_HEADER_BYTES, records, records_len);
    fix_header(buf, *size);
    (void)plain_size;
    return buf;
}

static void test_snappy_raw_and_xerial(void **state)
{
    (void)state;
    struct t_record *recs = random_records(400, 13, 1700000000000);
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    size_t plain_size;
    uint8_t *plain = build_batch(&c, recs, 400, &plain_size);
    const uint8_t *raw = plain + SP_RECORD_BATCH_HEADER_BYTES;
    size_t raw_len = plain_size - SP_RECORD_BATCH_HEADER_BYTES;
    assert_true(raw_len > 40000);

    /* Raw snappy, as librdkafka writes it. */
    size_t max = snappy_max_compressed_length(raw_len);
    uint8_t *comp = xmalloc(16 + 2 * (4 + max));
    size_t clen = max;
    assert_int_equal(snappy_compress((const char *)raw, raw_len, (char *)comp, &clen), SNAPPY_OK);
    size_t size;
    uint8_t *batch = rebatch(plain, plain_size, SP_RECORD_CODEC_SNAPPY, comp, clen, &size);
    struct sp_record_builder_config cs = c;
    cs.codec = SP_RECORD_CODEC_SNAPPY;
    check_batch(batch, size, &cs, recs, 400);
    free(batch);

    /* xerial by hand: header, then two blocks of uneven size. */
    static const uint8_t header[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
                                       0,    0,   0,   1,   0,   0,   0,   1};
    memcpy(comp, header, 16);
    size_t pos = 16, half = raw_len / 3;
    for (unsigned b = 0; b < 2; b++) {
        const uint8_t *in = raw + (b == 0 ? 0 : half);
        size_t in_len = b == 0 ? half : raw_len - half;
        size_t n = max;
        assert_int_equal(snappy_compress((const char *)in, in_len, (char *)comp + pos + 4, &n),
                         SNAPPY_OK);
        put32(comp + pos, (uint32_t)n);
        pos += 4 + n;
    }
    batch = rebatch(plain, plain_size, SP_RECORD_CODEC_SNAPPY, comp, pos, &size);
    check_batch(batch, size, &cs, recs, 400);
    free(batch);

    /* A block length past the end, and a cut block length, are rejected. */
    uint8_t out[64];
    size_t n;
    uint8_t bad[22];
    memcpy(bad, header, 16);
    put32(bad + 16, 100);
    bad[20] = 0;
    bad[21] = 0;
    assert_int_equal(
        sp_record_decompress(&codec, SP_RECORD_CODEC_SNAPPY, bad, 22, out, sizeof(out), &n),
        -EBADMSG);
    assert_int_equal(
        sp_record_decompress(&codec, SP_RECORD_CODEC_SNAPPY, bad, 18, out, sizeof(out), &n),
        -EBADMSG);
    /* A header alone is an empty stream. */
    assert_int_equal(
        sp_record_decompress(&codec, SP_RECORD_CODEC_SNAPPY, bad, 16, out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);

    /* The builder writes xerial framing. */
    size_t bsize;
    uint8_t *built = build_batch(&cs, recs, 400, &bsize);
    assert_memory_equal(built + SP_RECORD_BATCH_HEADER_BYTES, header, 16);
    free(built);
    free(comp);
    free(plain);
    free(recs);
}

/* ---- Control batches ---- */

static void test_control_markers(void **state)
{
    (void)state;
    uint8_t buf[256];
    for (int type = 0; type <= 1; type++) {
        struct sp_record_marker m = {.offset = 4242,
                                     .timestamp = 1700000000123,
                                     .producer_id = 99,
                                     .producer_epoch = 7,
                                     .partition_leader_epoch = 3,
                                     .type = (int16_t)type,
                                     .coordinator_epoch = 17};
        size_t size;
        assert_int_equal(sp_record_marker_encode(buf, sizeof(buf), &m, &size), 0);
        uint8_t *exact = xmalloc(size);
        memcpy(exact, buf, size);
        struct sp_record_batch batch;
        assert_int_equal(sp_record_batch_parse(exact, size, &batch), 0);
        assert_true(sp_record_batch_is_control(&batch));
        assert_true(sp_record_batch_is_transactional(&batch));
        assert_int_equal(batch.producer_id, 99);
        assert_int_equal(batch.producer_epoch, 7);
        assert_int_equal(batch.record_count, 1);
        assert_int_equal(batch.base_offset, 4242);
        struct sp_record_iter it;
        assert_int_equal(sp_record_iter_open(&it, &batch, NULL, NULL, 0), 0);
        struct sp_record r;
        assert_int_equal(sp_record_iter_next(&it, &r), 1);
        assert_int_equal(r.offset, 4242);
        assert_int_equal(r.timestamp, 1700000000123);
        struct sp_record_control ctl;
        assert_int_equal(sp_record_control_parse(&r, &ctl), 0);
        assert_int_equal(ctl.version, 0);
        assert_int_equal(ctl.type, type);
        assert_int_equal(ctl.marker_version, 0);
        assert_int_equal(ctl.coordinator_epoch, 17);
        assert_int_equal(sp_record_iter_next(&it, &r), 0);
        free(exact);
    }
    struct sp_record_marker bad = {.type = 2};
    size_t size;
    assert_int_equal(sp_record_marker_encode(buf, sizeof(buf), &bad, &size), -EINVAL);
    bad.type = SP_RECORD_CONTROL_COMMIT;
    assert_int_equal(sp_record_marker_encode(buf, 70, &bad, &size), -ENOBUFS);

    /* Keys: too short, null, negative version; another type needs no marker value. */
    static const uint8_t key_short[3] = {0, 0, 1};
    static const uint8_t key_neg[4] = {0xFF, 0xFF, 0, 1};
    static const uint8_t key_leader[4] = {0, 0, 0, 2};
    static const uint8_t value_short[5] = {0, 0, 0, 0, 1};
    struct sp_record r = {.key = key_short, .key_len = 3, .value = value_short, .value_len = 5};
    struct sp_record_control ctl;
    assert_int_equal(sp_record_control_parse(&r, &ctl), -EBADMSG);
    r.key = NULL;
    r.key_len = -1;
    assert_int_equal(sp_record_control_parse(&r, &ctl), -EBADMSG);
    r.key = key_neg;
    r.key_len = 4;
    assert_int_equal(sp_record_control_parse(&r, &ctl), -EBADMSG);
    r.key = key_leader;
    assert_int_equal(sp_record_control_parse(&r, &ctl), 0);
    assert_int_equal(ctl.type, 2);
    assert_int_equal(ctl.coordinator_epoch, -1);
    static const uint8_t key_commit[4] = {0, 0, 0, 1};
    r.key = key_commit; /* a commit whose marker value is 5 bytes, not 6 */
    assert_int_equal(sp_record_control_parse(&r, &ctl), -EBADMSG);
}

/* ---- Records field ---- */

static void test_record_set_walk(void **state)
{
    (void)state;
    struct t_record *recs = random_records(5, 14, 1700000000000);
    size_t sizes[3];
    uint8_t *batches[3];
    for (unsigned i = 0; i < 3; i++) {
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.base_offset = 100 * i;
        c.codec = all_codecs[i * 2];
        batches[i] = build_batch(&c, recs, 5, &sizes[i]);
    }
    size_t total = sizes[0] + sizes[1] + sizes[2];
    uint8_t *field = xmalloc(total);
    memcpy(field, batches[0], sizes[0]);
    memcpy(field + sizes[0], batches[1], sizes[1]);
    memcpy(field + sizes[0] + sizes[1], batches[2], sizes[2]);
    for (size_t len = 0; len <= total; len++) {
        uint8_t *part = xmalloc(len);
        memcpy(part, field, len);
        struct sp_record_set set;
        sp_record_set_init(&set, part, len);
        struct sp_record_batch b;
        size_t whole = 0, seen = 0;
        int rc;
        while ((rc = sp_record_set_next(&set, &b)) == 1) {
            assert_int_equal(b.base_offset, 100 * whole);
            seen += b.size;
            whole++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(seen + set.partial_bytes, len);
        size_t expect_whole = len >= total                 ? 3
                              : len >= sizes[0] + sizes[1] ? 2
                              : len >= sizes[0]            ? 1
                                                           : 0;
        assert_int_equal(whole, expect_whole);
        free(part);
    }
    /* A size field below every format's minimum: not a batch, and the walk stays failed. */
    uint8_t *bad = xmalloc(sizes[0] + 12);
    memcpy(bad, batches[0], sizes[0]);
    memset(bad + sizes[0], 0, 12);
    put32(bad + sizes[0] + 8, 5);
    struct sp_record_set set;
    sp_record_set_init(&set, bad, sizes[0] + 12);
    struct sp_record_batch b;
    assert_int_equal(sp_record_set_next(&set, &b), 1);
    assert_int_equal(sp_record_set_next(&set, &b), -EBADMSG);
    assert_int_equal(sp_record_set_next(&set, &b), -EBADMSG);
    /* An unknown magic is caught as soon as its byte is there, even in a cut batch. */
    memset(bad, 0, 17);
    put32(bad + 8, 1000);
    bad[16] = 3;
    assert_int_equal(sp_record_batch_parse(bad, 17, &b), -EBADMSG);
    bad[16] = 2;
    put32(bad + 8, 48); /* below v2's 49 */
    assert_int_equal(sp_record_batch_parse(bad, 17, &b), -EBADMSG);
    sp_record_set_init(&set, NULL, 0);
    assert_int_equal(sp_record_set_next(&set, &b), 0);
    assert_int_equal(set.partial_bytes, 0);
    free(bad);
    free(field);
    for (unsigned i = 0; i < 3; i++)
        free(batches[i]);
    free(recs);
}

/* ---- Builder ---- */

static void test_builder_errors(void **state)
{
    (void)state;
    uint8_t buf[200];
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    struct sp_record_builder b;
    assert_int_equal(sp_record_builder_init(&b, buf, 60, &c), -ENOBUFS);
    c.codec = SP_RECORD_CODEC_ZSTD;
    assert_int_equal(sp_record_builder_init(&b, buf, sizeof(buf), &c), -EINVAL); /* no scratch */
    c.codec = (enum sp_record_codec_id)5;
    assert_int_equal(sp_record_builder_init(&b, buf, sizeof(buf), &c), -EINVAL);
    c.codec = SP_RECORD_CODEC_NONE;
    assert_int_equal(sp_record_builder_init(&b, buf, sizeof(buf), &c), 0);
    size_t size;
    assert_int_equal(sp_record_builder_finish(&b, NULL, &size), -ENODATA);

    uint8_t value[60];
    memset(value, 'v', sizeof(value));
    struct sp_record_input r = {
        .offset_delta = 0, .timestamp = 10, .key_len = -1, .value = value, .value_len = 60};
    assert_int_equal(sp_record_builder_append(&b, &r), 0);
    /* Offsets must increase; lengths below -1 or without bytes are invalid. */
    assert_int_equal(sp_record_builder_append(&b, &r), -EINVAL);
    r.offset_delta = 1;
    r.value_len = -2;
    assert_int_equal(sp_record_builder_append(&b, &r), -EINVAL);
    r.value_len = 5;
    r.value = NULL;
    assert_int_equal(sp_record_builder_append(&b, &r), -EINVAL);
    struct sp_record_header h = {.key = NULL, .key_len = -1, .value = NULL, .value_len = -1};
    r.value = value;
    r.headers = &h;
    r.header_count = 1;
    assert_int_equal(sp_record_builder_append(&b, &r), -EINVAL); /* null header key */
    r.header_count = 0;
    r.value_len = 60;
    assert_int_equal(sp_record_builder_append(&b, &r), 0);
    /* A third does not fit in 200 bytes: the builder is unchanged. */
    r.offset_delta = 2;
    r.timestamp = 5;
    assert_int_equal(sp_record_builder_append(&b, &r), -ENOBUFS);
    assert_int_equal(sp_record_builder_finish(&b, NULL, &size), 0);
    struct sp_record_batch batch;
    assert_int_equal(sp_record_batch_parse(buf, size, &batch), 0);
    assert_int_equal(batch.record_count, 2);
    assert_int_equal(batch.last_offset_delta, 1);
    assert_int_equal(batch.max_timestamp, 10);

    /* Compressed records that do not fit the batch buffer: -ENOBUFS. */
    uint8_t scratch[4096];
    uint8_t small[80];
    struct sp_rand rng;
    sp_rand_seed(&rng, 15);
    uint8_t noise[1000];
    fill(noise, sizeof(noise), &rng);
    for (unsigned k = 1; k < SP_ARRAY_LEN(all_codecs); k++) {
        c.codec = all_codecs[k];
        c.scratch = scratch;
        c.scratch_bytes = sizeof(scratch);
        assert_int_equal(sp_record_builder_init(&b, small, sizeof(small), &c), 0);
        struct sp_record_input big = {.key_len = -1, .value = noise, .value_len = 1000};
        assert_int_equal(sp_record_builder_append(&b, &big), 0);
        assert_int_equal(sp_record_builder_finish(&b, &codec, &size), -ENOBUFS);
        assert_int_equal(sp_record_builder_init(&b, small, sizeof(small), &c), 0);
        assert_int_equal(sp_record_builder_append(&b, &big), 0);
        assert_int_equal(sp_record_builder_finish(&b, NULL, &size), -EINVAL);
    }
}

/* ---- Headers ---- */

static void test_header_iter_rejects_bad_spans(void **state)
{
    (void)state;
    /* key length 5 with 2 bytes left; a null key; a count beyond the span. */
    static const uint8_t cut[3] = {0x0A, 'a', 'b'};
    static const uint8_t null_key[2] = {0x01, 0x01};
    static const uint8_t one[3] = {0x02, 'k', 0x01};
    struct sp_record r = {.headers = cut, .headers_len = 3, .header_count = 1};
    struct sp_record_header_iter it;
    struct sp_record_header h;
    sp_record_header_iter_init(&it, &r);
    assert_int_equal(sp_record_header_next(&it, &h), -EBADMSG);
    assert_int_equal(sp_record_header_next(&it, &h), -EBADMSG);
    r.headers = null_key;
    r.headers_len = 2;
    sp_record_header_iter_init(&it, &r);
    assert_int_equal(sp_record_header_next(&it, &h), -EBADMSG);
    r.headers = one;
    r.headers_len = 3;
    r.header_count = 2;
    sp_record_header_iter_init(&it, &r);
    assert_int_equal(sp_record_header_next(&it, &h), 1);
    assert_int_equal(h.key_len, 1);
    assert_int_equal(h.value_len, -1);
    assert_null(h.value);
    assert_int_equal(sp_record_header_next(&it, &h), -EBADMSG);
    r.header_count = 0;
    sp_record_header_iter_init(&it, &r);
    assert_int_equal(sp_record_header_next(&it, &h), -EBADMSG); /* bytes left over */
    r.headers = NULL;
    r.headers_len = 0;
    sp_record_header_iter_init(&it, &r);
    assert_int_equal(sp_record_header_next(&it, &h), 0);
}

/* Parses and iterates records only (no headers): 0 when all came out, else the error. */
static int iterate_records(const uint8_t *buf, size_t size)
{
    struct sp_record_batch batch;
    struct sp_record_iter it;
    struct sp_record r;
    int rc = sp_record_batch_parse(buf, size, &batch);
    if (rc == 0)
        rc = sp_record_iter_open(&it, &batch, NULL, NULL, 0);
    while (rc == 0 && (rc = sp_record_iter_next(&it, &r)) == 1)
        rc = 0;
    return rc;
}

/* A record whose length says more or less than its fields take; extra records. */
static void test_record_length_mismatch(void **state)
{
    (void)state;
    /* attributes 0, ts delta 0, offset delta 0, key null, value "ab", 0 headers = 8 bytes. */
    uint8_t batch[SP_RECORD_BATCH_HEADER_BYTES + 32];
    memset(batch, 0, sizeof(batch));
    batch[16] = 2;
    put32(batch + 57, 1);
    static const uint8_t rec[9] = {0x10, 0x00, 0x00, 0x00, 0x01, 0x04, 'a', 'b', 0x00};
    for (int delta = -2; delta <= 2; delta++) {
        memcpy(batch + SP_RECORD_BATCH_HEADER_BYTES, rec, sizeof(rec));
        batch[SP_RECORD_BATCH_HEADER_BYTES] = (uint8_t)((8 + delta) * 2);
        size_t total = SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec) + (delta > 0 ? (size_t)delta : 0);
        fix_header(batch, total);
        assert_int_equal(iterate_records(batch, total), delta == 0 ? 0 : -EBADMSG);
    }
    /* Two records where the header declares one, and one where it declares two. */
    memcpy(batch + SP_RECORD_BATCH_HEADER_BYTES, rec, sizeof(rec));
    memcpy(batch + SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec), rec, sizeof(rec));
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + 2 * sizeof(rec));
    assert_int_equal(iterate_records(batch, SP_RECORD_BATCH_HEADER_BYTES + 2 * sizeof(rec)),
                     -EBADMSG);
    put32(batch + 57, 2);
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + 2 * sizeof(rec));
    assert_int_equal(iterate_records(batch, SP_RECORD_BATCH_HEADER_BYTES + 2 * sizeof(rec)), 0);
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec));
    assert_int_equal(iterate_records(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec)), -EBADMSG);
    /* A header count that the record's bytes cannot hold. */
    memcpy(batch + SP_RECORD_BATCH_HEADER_BYTES, rec, sizeof(rec));
    batch[SP_RECORD_BATCH_HEADER_BYTES + 8] = 0x02;
    put32(batch + 57, 1);
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec));
    assert_int_equal(iterate_records(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec)), -EBADMSG);
    batch[SP_RECORD_BATCH_HEADER_BYTES + 8] = 0x00;
    /* A negative record count is not a batch. */
    memcpy(batch + SP_RECORD_BATCH_HEADER_BYTES, rec, sizeof(rec));
    put32(batch + 57, 0xFFFFFFFFu);
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec));
    struct sp_record_batch b;
    assert_int_equal(sp_record_batch_parse(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec), &b),
                     -EBADMSG);
    /* Codec bits 5..7 are not codecs. */
    put32(batch + 57, 1);
    batch[22] = 5;
    fix_header(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec));
    assert_int_equal(sp_record_batch_parse(batch, SP_RECORD_BATCH_HEADER_BYTES + sizeof(rec), &b),
                     -EBADMSG);
}

/* ---- Legacy message sets ---- */

/* Writes one legacy entry at p; returns its size. */
static size_t legacy_msg(uint8_t *p, int64_t offset, int magic, uint8_t attributes, int64_t ts,
                         const char *key, const uint8_t *value, int32_t value_len)
{
    size_t pos = 16;
    p[pos++] = (uint8_t)magic;
    p[pos++] = attributes;
    if (magic == 1) {
        put64(p + pos, (uint64_t)ts);
        pos += 8;
    }
    int32_t key_len = key != NULL ? (int32_t)strlen(key) : -1;
    put32(p + pos, (uint32_t)key_len);
    pos += 4;
    if (key_len > 0) {
        memcpy(p + pos, key, (size_t)key_len);
        pos += (size_t)key_len;
    }
    put32(p + pos, (uint32_t)value_len);
    pos += 4;
    if (value_len > 0) {
        memcpy(p + pos, value, (size_t)value_len);
        pos += (size_t)value_len;
    }
    put64(p, (uint64_t)offset);
    put32(p + 8, (uint32_t)(pos - 12));
    put32(p + 12, (uint32_t)crc32(0, p + 16, (uInt)(pos - 16)));
    return pos;
}

static size_t gzip_by_zlib(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = (Bytef *)(uintptr_t)src;
    s.avail_in = (uInt)len;
    s.next_out = dst;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t n = cap - s.avail_out;
    deflateEnd(&s);
    return n;
}

static void expect_record(struct sp_record_iter *it, int64_t offset, int64_t ts, const char *key,
                          const char *value)
{
    struct sp_record r;
    assert_int_equal(sp_record_iter_next(it, &r), 1);
    assert_int_equal(r.offset, offset);
    assert_int_equal(r.timestamp, ts);
    assert_bytes(r.key, r.key_len, key, key != NULL ? (int32_t)strlen(key) : -1);
    assert_bytes(r.value, r.value_len, value, value != NULL ? (int32_t)strlen(value) : -1);
    assert_int_equal(r.header_count, 0);
}

static void test_legacy_plain_messages(void **state)
{
    (void)state;
    uint8_t *set = xmalloc(4096);
    size_t len = legacy_msg(set, 10, 0, 0, 0, "k0", (const uint8_t *)"v0", 2);
    const size_t first = len;
    len += legacy_msg(set + len, 11, 0, 0, 0, NULL, NULL, -1);
    len += legacy_msg(set + len, 12, 1, 0, 1500000000000, "k1", (const uint8_t *)"value-1", 7);
    len += legacy_msg(set + len, 13, 1, SP_RECORD_ATTR_LOG_APPEND_TIME, 1500000000555, "",
                      (const uint8_t *)"", 0);
    /* A v2 batch after them: one records field may mix the formats. */
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.base_offset = 14;
    struct t_record *recs = random_records(3, 16, 1600000000000);
    size_t v2_size;
    uint8_t *v2 = build_batch(&c, recs, 3, &v2_size);
    memcpy(set + len, v2, v2_size);
    len += v2_size;
    uint8_t *exact = xmalloc(len);
    memcpy(exact, set, len);

    struct sp_record_set walk;
    sp_record_set_init(&walk, exact, len);
    struct sp_record_batch b;
    struct sp_record_iter it;
    static const int64_t offsets[4] = {10, 11, 12, 13};
    static const int64_t stamps[4] = {-1, -1, 1500000000000, 1500000000555};
    static const char *const keys[4] = {"k0", NULL, "k1", ""};
    static const char *const values[4] = {"v0", NULL, "value-1", ""};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(sp_record_set_next(&walk, &b), 1);
        assert_int_equal(b.magic, i < 2 ? 0 : 1);
        assert_int_equal(b.base_offset, offsets[i]);
        assert_int_equal(b.record_count, 1);
        assert_int_equal(b.producer_id, -1);
        assert_int_equal(sp_record_batch_codec(&b), SP_RECORD_CODEC_NONE);
        assert_int_equal(sp_record_iter_open(&it, &b, NULL, NULL, 0), 0);
        expect_record(&it, offsets[i], stamps[i], keys[i], values[i]);
        struct sp_record r;
        assert_int_equal(sp_record_iter_next(&it, &r), 0);
    }
    assert_int_equal(sp_record_set_next(&walk, &b), 1);
    check_batch(exact + len - v2_size, v2_size, &c, recs, 3);
    assert_int_equal(sp_record_set_next(&walk, &b), 0);
    assert_int_equal(walk.partial_bytes, 0);

    /* Every flipped bit of a legacy message (after its size) is caught by its CRC. */
    for (size_t i = 12; i < first; i++) {
        exact[i] ^= 0x20;
        assert_true(sp_record_batch_parse(exact, len, &b) < 0);
        exact[i] ^= 0x20;
    }
    /* Every cut is incomplete. */
    for (size_t cut = 0; cut < first; cut++) {
        uint8_t *part = xmalloc(cut);
        memcpy(part, exact, cut);
        assert_int_equal(sp_record_batch_parse(part, cut, &b), -EAGAIN);
        free(part);
    }
    free(v2);
    free(recs);
    free(exact);
    free(set);
}

/* A wrapper of `magic` around three inner messages, compressed with gzip (zlib here). */
static size_t legacy_gzip_wrapper(uint8_t *out, int magic, int64_t wrapper_offset,
                                  const int64_t inner_offsets[3], uint8_t attributes, int64_t ts)
{
    uint8_t inner[512];
    size_t len = 0;
    len +=
        legacy_msg(inner + len, inner_offsets[0], magic, 0, 1000, "a", (const uint8_t *)"one", 3);
    len +=
        legacy_msg(inner + len, inner_offsets[1], magic, 0, 2000, NULL, (const uint8_t *)"two", 3);
    len += legacy_msg(inner + len, inner_offsets[2], magic, 0, 3000, "c", NULL, -1);
    uint8_t comp[1024];
    size_t clen = gzip_by_zlib(inner, len, comp, sizeof(comp));
    return legacy_msg(out, wrapper_offset, magic, (uint8_t)(SP_RECORD_CODEC_GZIP | attributes), ts,
                      NULL, comp, (int32_t)clen);
}

static void test_legacy_gzip_wrappers(void **state)
{
    (void)state;
    uint8_t buf[2048];
    uint8_t dst[4096];
    struct sp_record_batch b;
    struct sp_record_iter it;
    struct sp_record r;

    /* v1: inner offsets relative, the wrapper holds the last absolute one. */
    static const int64_t relative[3] = {0, 1, 2};
    size_t n = legacy_gzip_wrapper(buf, 1, 502, relative, 0, 9999);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(b.magic, 1);
    assert_int_equal(b.record_count, -1);
    assert_int_equal(sp_record_batch_codec(&b), SP_RECORD_CODEC_GZIP);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    expect_record(&it, 500, 1000, "a", "one");
    expect_record(&it, 501, 2000, NULL, "two");
    expect_record(&it, 502, 3000, "c", NULL);
    assert_int_equal(sp_record_iter_next(&it, &r), 0);

    /* v1 with LogAppendTime: the wrapper's timestamp for all. */
    n = legacy_gzip_wrapper(buf, 1, 502, relative, SP_RECORD_ATTR_LOG_APPEND_TIME, 9999);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    expect_record(&it, 500, 9999, "a", "one");
    expect_record(&it, 501, 9999, NULL, "two");
    expect_record(&it, 502, 9999, "c", NULL);
    assert_int_equal(sp_record_iter_next(&it, &r), 0);

    /* v0: inner offsets absolute, no timestamps. */
    static const int64_t absolute[3] = {70, 71, 72};
    n = legacy_gzip_wrapper(buf, 0, 72, absolute, 0, 0);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(b.magic, 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    expect_record(&it, 70, -1, "a", "one");
    expect_record(&it, 71, -1, NULL, "two");
    expect_record(&it, 72, -1, "c", NULL);
    assert_int_equal(sp_record_iter_next(&it, &r), 0);

    /* The decompression limit holds for wrappers too. */
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, 20), -EMSGSIZE);

    /* An inner message that is itself compressed, or of another magic, is rejected. */
    uint8_t inner[256];
    size_t ilen = legacy_msg(inner, 0, 1, SP_RECORD_CODEC_GZIP, 0, NULL, (const uint8_t *)"x", 1);
    uint8_t comp[512];
    size_t clen = gzip_by_zlib(inner, ilen, comp, sizeof(comp));
    n = legacy_msg(buf, 0, 1, SP_RECORD_CODEC_GZIP, 0, NULL, comp, (int32_t)clen);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    assert_int_equal(sp_record_iter_next(&it, &r), -EBADMSG);
    assert_int_equal(sp_record_iter_next(&it, &r), -EBADMSG);
    ilen = legacy_msg(inner, 0, 0, 0, 0, NULL, (const uint8_t *)"x", 1);
    clen = gzip_by_zlib(inner, ilen, comp, sizeof(comp));
    n = legacy_msg(buf, 0, 1, SP_RECORD_CODEC_GZIP, 0, NULL, comp, (int32_t)clen);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    assert_int_equal(sp_record_iter_next(&it, &r), -EBADMSG);
    /* A wrapper with a null value, and zstd in a legacy message, are not valid. */
    n = legacy_msg(buf, 0, 1, SP_RECORD_CODEC_GZIP, 0, NULL, NULL, -1);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), -EBADMSG);
    n = legacy_msg(buf, 0, 1, SP_RECORD_CODEC_ZSTD, 0, NULL, comp, (int32_t)clen);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), -EBADMSG);
}

/* An lz4 frame of `src`, with the header checksum Kafka 0.8/0.9 wrote (over the magic too). */
static size_t lz4_frame(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, bool broken_hc)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    prefs.frameInfo.contentSize = len; /* with a content size the header is 15 bytes */
    size_t n = LZ4F_compressFrame(dst, cap, src, len, &prefs);
    assert_false(LZ4F_isError(n));
    size_t header_len = 15;
    assert_int_equal(dst[4] & 0x08, 0x08);
    assert_int_equal(dst[header_len - 1],
                     (uint8_t)(sp_record_xxh32(dst + 4, header_len - 5, 0) >> 8));
    if (broken_hc)
        dst[header_len - 1] = (uint8_t)(sp_record_xxh32(dst, header_len - 1, 0) >> 8);
    return n;
}

static void test_legacy_lz4_v0_header_checksum(void **state)
{
    (void)state;
    uint8_t inner[256];
    size_t ilen = legacy_msg(inner, 5, 0, 0, 0, "k", (const uint8_t *)"lz4 v0 value", 12);
    uint8_t comp[512];
    size_t clen = lz4_frame(inner, ilen, comp, sizeof(comp), true);
    uint8_t buf[1024];
    size_t n = legacy_msg(buf, 5, 0, SP_RECORD_CODEC_LZ4, 0, NULL, comp, (int32_t)clen);
    struct sp_record_batch b;
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    uint8_t dst[1024];
    struct sp_record_iter it;
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    expect_record(&it, 5, -1, "k", "lz4 v0 value");
    struct sp_record r;
    assert_int_equal(sp_record_iter_next(&it, &r), 0);

    /* v1 frames must carry the right checksum: the same frame is rejected there. */
    ilen = legacy_msg(inner, 0, 1, 0, 77, "k", (const uint8_t *)"lz4 v1 value", 12);
    clen = lz4_frame(inner, ilen, comp, sizeof(comp), true);
    n = legacy_msg(buf, 5, 1, SP_RECORD_CODEC_LZ4, 77, NULL, comp, (int32_t)clen);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), -EBADMSG);
    clen = lz4_frame(inner, ilen, comp, sizeof(comp), false);
    n = legacy_msg(buf, 5, 1, SP_RECORD_CODEC_LZ4, 77, NULL, comp, (int32_t)clen);
    assert_int_equal(sp_record_batch_parse(buf, n, &b), 0);
    assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
    expect_record(&it, 5, 77, "k", "lz4 v1 value");
}

/* xxh32 against liblz4's: the content checksum of a frame is XXH32(content, 0). */
static void test_xxh32_matches_lz4(void **state)
{
    (void)state;
    struct sp_rand rng;
    sp_rand_seed(&rng, 17);
    uint8_t src[100];
    uint8_t frame[512];
    for (size_t len = 0; len <= sizeof(src); len++) {
        fill(src, (int32_t)len, &rng);
        LZ4F_preferences_t prefs;
        memset(&prefs, 0, sizeof(prefs));
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        size_t n = LZ4F_compressFrame(frame, sizeof(frame), src, len, &prefs);
        assert_false(LZ4F_isError(n));
        uint32_t stored = (uint32_t)frame[n - 4] | (uint32_t)frame[n - 3] << 8 |
                          (uint32_t)frame[n - 2] << 16 | (uint32_t)frame[n - 1] << 24;
        assert_int_equal(sp_record_xxh32(src, len, 0), stored);
    }
}

/* ---- Real batches ---- */

/*
 * Batches kcat (librdkafka, a real producer) wrote in Produce requests,
 * captured on the wire (scripts/kafka_capture.py), one per codec: records
 * with keys "key-N", values "value N from kcat, codec <codec>; a repetitive
 * payload payload payload payload", headers trace=t-1 and origin=kcat
 * (N 1-3 in a batch of three, 4 in a batch of one). librdkafka writes raw
 * snappy, not xerial.
 */
static const uint8_t kcat_none[172] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x1c, 0x24, 0xf7, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xa2, 0x15,
    0x55, 0x00, 0x0e, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x00, 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0xda, 0x01, 0x00,
    0x00, 0x00, 0x0a, 0x6b, 0x65, 0x79, 0x2d, 0x34, 0x96, 0x01, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x20,
    0x34, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x6b, 0x63, 0x61, 0x74, 0x2c, 0x20, 0x63, 0x6f, 0x64,
    0x65, 0x63, 0x20, 0x6e, 0x6f, 0x6e, 0x65, 0x3b, 0x20, 0x61, 0x20, 0x72, 0x65, 0x70, 0x65, 0x74,
    0x69, 0x74, 0x69, 0x76, 0x65, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70, 0x61,
    0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x20, 0x70, 0x61,
    0x79, 0x6c, 0x6f, 0x61, 0x64, 0x04, 0x0a, 0x74, 0x72, 0x61, 0x63, 0x65, 0x06, 0x74, 0x2d, 0x31,
    0x0c, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e, 0x08, 0x6b, 0x63, 0x61, 0x74,
};
static const uint8_t kcat_gzip[191] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb3, 0x00, 0x00, 0x00, 0x00,
    0x02, 0xfe, 0x38, 0xa1, 0x7c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0xa2, 0x15,
    0x55, 0x01, 0x55, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x01, 0x55, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x03, 0x1f, 0x8b, 0x08,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xbb, 0xc5, 0xc8, 0xc0, 0xc0, 0xc0, 0x95, 0x9d, 0x5a,
    0xa9, 0x6b, 0x38, 0x8d, 0xb1, 0x2c, 0x31, 0xa7, 0x34, 0x55, 0xc1, 0x50, 0x21, 0xad, 0x28, 0x3f,
    0x57, 0x21, 0x3b, 0x39, 0xb1, 0x44, 0x47, 0x21, 0x39, 0x3f, 0x25, 0x35, 0x59, 0x21, 0xbd, 0x2a,
    0xb3, 0xc0, 0x5a, 0x21, 0x51, 0xa1, 0x28, 0xb5, 0x20, 0xb5, 0x24, 0xb3, 0x24, 0xb3, 0x2c, 0x55,
    0xa1, 0x20, 0xb1, 0x32, 0x27, 0x3f, 0x31, 0x05, 0x17, 0xcd, 0xc2, 0x55, 0x52, 0x94, 0x98, 0x9c,
    0xca, 0x56, 0xa2, 0x6b, 0xc8, 0x93, 0x5f, 0x94, 0x99, 0x9e, 0x99, 0xc7, 0x01, 0x32, 0xf0, 0x16,
    0xd0, 0x3a, 0x26, 0xb0, 0x75, 0x46, 0x30, 0xeb, 0x8c, 0x68, 0x6c, 0x1d, 0x0b, 0xd8, 0x3a, 0x63,
    0x98, 0x75, 0xc6, 0x34, 0xb4, 0x0e, 0x00, 0x2d, 0x77, 0x07, 0x68, 0x4d, 0x01, 0x00, 0x00,
};
static const uint8_t kcat_snappy[158] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x92, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x59, 0xf6, 0xd3, 0x0e, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xa2, 0x15,
    0x55, 0x02, 0x9f, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x02, 0x9f, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x71, 0xf0, 0x42,
    0xde, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x79, 0x2d, 0x34, 0x9a, 0x01, 0x76, 0x61, 0x6c,
    0x75, 0x65, 0x20, 0x34, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x6b, 0x63, 0x61, 0x74, 0x2c, 0x20,
    0x63, 0x6f, 0x64, 0x65, 0x63, 0x20, 0x73, 0x6e, 0x61, 0x70, 0x70, 0x79, 0x3b, 0x20, 0x61, 0x20,
    0x72, 0x65, 0x70, 0x65, 0x74, 0x69, 0x74, 0x69, 0x76, 0x65, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f,
    0x61, 0x64, 0x20, 0x5a, 0x08, 0x00, 0x58, 0x04, 0x0a, 0x74, 0x72, 0x61, 0x63, 0x65, 0x06, 0x74,
    0x2d, 0x31, 0x0c, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e, 0x08, 0x6b, 0x63, 0x61, 0x74,
};
static const uint8_t kcat_lz4[169] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9d, 0x00, 0x00, 0x00, 0x00,
    0x02, 0xa7, 0x5b, 0x0a, 0x53, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xa2, 0x15,
    0x55, 0x04, 0x56, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x04, 0x56, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x04, 0x22, 0x4d,
    0x18, 0x60, 0x40, 0x82, 0x5d, 0x00, 0x00, 0x00, 0xff, 0x30, 0xd8, 0x01, 0x00, 0x00, 0x00, 0x0a,
    0x6b, 0x65, 0x79, 0x2d, 0x34, 0x94, 0x01, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x20, 0x34, 0x20, 0x66,
    0x72, 0x6f, 0x6d, 0x20, 0x6b, 0x63, 0x61, 0x74, 0x2c, 0x20, 0x63, 0x6f, 0x64, 0x65, 0x63, 0x20,
    0x6c, 0x7a, 0x34, 0x3b, 0x20, 0x61, 0x20, 0x72, 0x65, 0x70, 0x65, 0x74, 0x69, 0x74, 0x69, 0x76,
    0x65, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x08, 0x00, 0x05, 0xf0, 0x08, 0x04, 0x0a,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x06, 0x74, 0x2d, 0x31, 0x0c, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e,
    0x08, 0x6b, 0x63, 0x61, 0x74, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t kcat_zstd[165] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00,
    0x00, 0x02, 0x88, 0x18, 0x4c, 0x6b, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0xa2, 0x15, 0x55, 0x06, 0x06, 0x00, 0x00, 0x01, 0xa2, 0x15, 0x55, 0x06, 0x06, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
    0x01, 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0xfd, 0x02, 0x00, 0x74, 0x05, 0xda, 0x01, 0x00,
    0x00, 0x00, 0x0a, 0x6b, 0x65, 0x79, 0x2d, 0x34, 0x96, 0x01, 0x76, 0x61, 0x6c, 0x75, 0x65,
    0x20, 0x34, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x6b, 0x63, 0x61, 0x74, 0x2c, 0x20, 0x63,
    0x6f, 0x64, 0x65, 0x63, 0x20, 0x7a, 0x73, 0x74, 0x64, 0x3b, 0x20, 0x61, 0x20, 0x72, 0x65,
    0x70, 0x65, 0x74, 0x69, 0x74, 0x69, 0x76, 0x65, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61,
    0x64, 0x04, 0x0a, 0x74, 0x72, 0x61, 0x63, 0x65, 0x06, 0x74, 0x2d, 0x31, 0x0c, 0x6f, 0x72,
    0x69, 0x67, 0x69, 0x6e, 0x08, 0x6b, 0x63, 0x61, 0x74, 0x01, 0x00, 0xc0, 0xc0, 0x12, 0x05,
};

static void test_real_kafka_batches(void **state)
{
    (void)state;
    static const struct {
        const uint8_t *bytes;
        size_t len;
        const char *name;
    } batches[] = {
        {kcat_none, sizeof(kcat_none), "none"},       {kcat_gzip, sizeof(kcat_gzip), "gzip"},
        {kcat_snappy, sizeof(kcat_snappy), "snappy"}, {kcat_lz4, sizeof(kcat_lz4), "lz4"},
        {kcat_zstd, sizeof(kcat_zstd), "zstd"},
    };
    uint8_t dst[4096];
    for (unsigned i = 0; i < SP_ARRAY_LEN(batches); i++) {
        uint8_t *exact = xmalloc(batches[i].len);
        memcpy(exact, batches[i].bytes, batches[i].len);
        struct sp_record_batch b;
        assert_int_equal(sp_record_batch_parse(exact, batches[i].len, &b), 0);
        assert_int_equal(b.size, batches[i].len);
        assert_string_equal(sp_record_codec_name(sp_record_batch_codec(&b)), batches[i].name);
        assert_true(b.record_count == 1 || b.record_count == 3);
        assert_int_equal(b.producer_id, -1);
        struct sp_record_iter it;
        assert_int_equal(sp_record_iter_open(&it, &b, &codec, dst, sizeof(dst)), 0);
        struct sp_record r;
        /* kcat sent keys 1-3 in one batch and key 4 in another. */
        int first = b.record_count == 1 ? 4 : 1;
        for (int n = 0; n < b.record_count; n++) {
            assert_int_equal(sp_record_iter_next(&it, &r), 1);
            assert_int_equal(r.offset, n);
            assert_int_equal(r.timestamp, b.base_timestamp);
            char key[16], value[128];
            snprintf(key, sizeof(key), "key-%d", first + n);
            snprintf(value, sizeof(value),
                     "value %d from kcat, codec %s; a repetitive payload payload payload payload",
                     first + n, batches[i].name);
            assert_bytes(r.key, r.key_len, key, (int32_t)strlen(key));
            assert_bytes(r.value, r.value_len, value, (int32_t)strlen(value));
            struct sp_record_header_iter hit;
            struct sp_record_header h;
            sp_record_header_iter_init(&hit, &r);
            assert_int_equal(sp_record_header_next(&hit, &h), 1);
            assert_bytes(h.key, h.key_len, "trace", 5);
            assert_bytes(h.value, h.value_len, "t-1", 3);
            assert_int_equal(sp_record_header_next(&hit, &h), 1);
            assert_bytes(h.key, h.key_len, "origin", 6);
            assert_bytes(h.value, h.value_len, "kcat", 4);
            assert_int_equal(sp_record_header_next(&hit, &h), 0);
        }
        assert_int_equal(sp_record_iter_next(&it, &r), 0);
        free(exact);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_known_encodings),
        cmocka_unit_test(test_varint_overflow_and_padding),
        cmocka_unit_test(test_varint_random_round_trip),
        cmocka_unit_test(test_round_trip_every_codec),
        cmocka_unit_test(test_round_trip_many_records),
        cmocka_unit_test(test_null_empty_and_headers),
        cmocka_unit_test(test_flags_and_log_append_time),
        cmocka_unit_test(test_crc_corruption_detected),
        cmocka_unit_test(test_truncated_buffer_every_length),
        cmocka_unit_test(test_truncated_records_fixed_header),
        cmocka_unit_test(test_random_corruption_never_crashes),
        cmocka_unit_test(test_decompression_bomb_is_bounded),
        cmocka_unit_test(test_decompression_limit_exact),
        cmocka_unit_test(test_decompress_garbage),
        cmocka_unit_test(test_snappy_raw_and_xerial),
        cmocka_unit_test(test_control_markers),
        cmocka_unit_test(test_record_set_walk),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_header_iter_rejects_bad_spans),
        cmocka_unit_test(test_record_length_mismatch),
        cmocka_unit_test(test_legacy_plain_messages),
        cmocka_unit_test(test_legacy_gzip_wrappers),
        cmocka_unit_test(test_legacy_lz4_v0_header_checksum),
        cmocka_unit_test(test_xxh32_matches_lz4),
        cmocka_unit_test(test_real_kafka_batches),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
