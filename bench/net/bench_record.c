/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Record batch benchmarks:
 *  - crc32c/N: sp_crc32c() (the hardware path where the CPU has one) over
 *    an N-byte buffer (4 KiB, 64 KiB), bytes/s.
 *  - crc32c_portable/4096: the slicing-by-8 tables over 4 KiB, bytes/s.
 *  - record_decode/{none,lz4,zstd}: one v2 batch of 1,000 records (16-byte
 *    keys, 100-byte values, no headers) decoded as a consumer does: parse
 *    the header and check its CRC-32C, decompress (lz4, zstd) into a buffer
 *    reserved at setup, then locate every record's offset, timestamp, key,
 *    value and headers without copying them. items/s = records/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_crc32c.h"
#include "sp_rand.h"
#include "sp_record.h"

/* ---- CRC-32C ---- */

struct crc_bench {
    size_t len;
    uint32_t sink;
    uint8_t *buf;
};

static void *crc_setup(int64_t len)
{
    struct crc_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->len = (size_t)len;
    b->buf = malloc(b->len);
    if (b->buf == NULL) {
        free(b);
        return NULL;
    }
    struct sp_rand rng;
    sp_rand_seed(&rng, 1);
    for (size_t i = 0; i < b->len; i++)
        b->buf[i] = (uint8_t)sp_rand_next(&rng);
    return b;
}

static double crc_run(void *state, uint64_t iterations)
{
    struct crc_bench *b = state;
    uint32_t crc = b->sink;
    for (uint64_t i = 0; i < iterations; i++)
        crc = sp_crc32c(crc, b->buf, b->len);
    b->sink = crc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static double crc_portable_run(void *state, uint64_t iterations)
{
    struct crc_bench *b = state;
    uint32_t crc = b->sink;
    for (uint64_t i = 0; i < iterations; i++)
        crc = sp_crc32c_portable(crc, b->buf, b->len);
    b->sink = crc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static void crc_teardown(void *state)
{
    struct crc_bench *b = state;
    free(b->buf);
    free(b);
}

/* ---- Batch decoding ---- */

#define DECODE_RECORDS 1000u
#define DECODE_VALUE_BYTES 100
#define DECODE_KEY_BYTES 16
#define DECODE_RAW_BYTES (DECODE_RECORDS * (DECODE_VALUE_BYTES + DECODE_KEY_BYTES + 32))

struct decode_bench {
    struct sp_record_codec codec;
    uint8_t *batch;
    size_t batch_bytes;
    uint8_t *dst; /* decompressed records, reserved once */
    uint64_t sink;
};

/* Values of printable text with counters in them, about as compressible as JSON events. */
static void decode_value(uint8_t *value, unsigned i, struct sp_rand *rng)
{
    char text[160];
    int n = snprintf(text, sizeof(text),
                     "{\"user\":\"u%05u\",\"event\":\"click\",\"page\":\"/products/%u\","
                     "\"session\":\"%08llx\",\"seq\":%u}",
                     i * 7919u % 100000u, (unsigned)sp_rand_below(rng, 500),
                     (unsigned long long)sp_rand_below(rng, 1ull << 32), i);
    memset(value, ' ', DECODE_VALUE_BYTES);
    memcpy(value, text, (size_t)SP_MIN(n, DECODE_VALUE_BYTES));
}

static int decode_build(struct decode_bench *b, enum sp_record_codec_id id)
{
    uint8_t *scratch = malloc(DECODE_RAW_BYTES);
    size_t cap = SP_RECORD_BATCH_HEADER_BYTES + sp_record_compress_bound(id, DECODE_RAW_BYTES);
    b->batch = malloc(cap);
    if (scratch == NULL || b->batch == NULL) {
        free(scratch);
        return -1;
    }
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.codec = id;
    config.scratch = scratch;
    config.scratch_bytes = DECODE_RAW_BYTES;
    struct sp_record_builder builder;
    int rc = sp_record_builder_init(&builder, b->batch, cap, &config);
    struct sp_rand rng;
    sp_rand_seed(&rng, 5);
    for (unsigned i = 0; rc == 0 && i < DECODE_RECORDS; i++) {
        char key[DECODE_KEY_BYTES + 1];
        uint8_t value[DECODE_VALUE_BYTES];
        snprintf(key, sizeof(key), "user-%011u", i * 7919u % 100000u);
        decode_value(value, i, &rng);
        struct sp_record_input r = {.offset_delta = (int32_t)i,
                                    .timestamp = 1700000000000 + i / 10,
                                    .key = key,
                                    .key_len = DECODE_KEY_BYTES,
                                    .value = value,
                                    .value_len = DECODE_VALUE_BYTES};
        rc = sp_record_builder_append(&builder, &r);
    }
    if (rc == 0)
        rc = sp_record_builder_finish(&builder, &b->codec, &b->batch_bytes);
    free(scratch);
    return rc;
}

static void decode_teardown(void *state);

static void *decode_setup(enum sp_record_codec_id id)
{
    struct decode_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    if (sp_record_codec_init(&b->codec, SP_RECORD_CODEC_DECOMPRESS | SP_RECORD_CODEC_COMPRESS) !=
        0) {
        free(b);
        return NULL;
    }
    b->dst = malloc(DECODE_RAW_BYTES);
    if (b->dst == NULL || decode_build(b, id) != 0) {
        fprintf(stderr, "record_decode/%s: setup failed\n", sp_record_codec_name(id));
        decode_teardown(b);
        return NULL;
    }
    return b;
}

static void *decode_setup_none(int64_t arg)
{
    (void)arg;
    return decode_setup(SP_RECORD_CODEC_NONE);
}

static void *decode_setup_lz4(int64_t arg)
{
    (void)arg;
    return decode_setup(SP_RECORD_CODEC_LZ4);
}

static void *decode_setup_zstd(int64_t arg)
{
    (void)arg;
    return decode_setup(SP_RECORD_CODEC_ZSTD);
}

static double decode_run(void *state, uint64_t iterations)
{
    struct decode_bench *b = state;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        struct sp_record_batch batch;
        struct sp_record_iter it;
        struct sp_record r;
        if (sp_record_batch_parse(b->batch, b->batch_bytes, &batch) != 0 ||
            sp_record_iter_open(&it, &batch, &b->codec, b->dst, DECODE_RAW_BYTES) != 0)
            abort();
        unsigned n = 0;
        while (sp_record_iter_next(&it, &r) == 1) {
            acc += (uint64_t)r.offset + (uint64_t)r.timestamp + (uintptr_t)r.key +
                   (uintptr_t)r.value + (uint64_t)r.value_len + r.headers_len;
            n++;
        }
        if (n != DECODE_RECORDS)
            abort();
    }
    b->sink += acc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static void decode_teardown(void *state)
{
    struct decode_bench *b = state;
    sp_record_codec_deinit(&b->codec);
    free(b->batch);
    free(b->dst);
    free(b);
}

const struct sp_bench_case sp_bench_record_cases[] = {
    {.name = "crc32c",
     .args = {4096, 65536},
     .run_batch = 4096,
     .bytes_per_iteration_is_arg = 1,
     .setup = crc_setup,
     .run = crc_run,
     .teardown = crc_teardown},
    {.name = "crc32c_portable",
     .args = {4096},
     .run_batch = 1024,
     .bytes_per_iteration_is_arg = 1,
     .setup = crc_setup,
     .run = crc_portable_run,
     .teardown = crc_teardown},
    {.name = "record_decode/none",
     .items_per_iteration = DECODE_RECORDS,
     .run_batch = 64,
     .setup = decode_setup_none,
     .run = decode_run,
     .teardown = decode_teardown},
    {.name = "record_decode/lz4",
     .items_per_iteration = DECODE_RECORDS,
     .run_batch = 16,
     .setup = decode_setup_lz4,
     .run = decode_run,
     .teardown = decode_teardown},
    {.name = "record_decode/zstd",
     .items_per_iteration = DECODE_RECORDS,
     .run_batch = 16,
     .setup = decode_setup_zstd,
     .run = decode_run,
     .teardown = decode_teardown},
    {.name = NULL},
};
