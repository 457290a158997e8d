/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: record batches, every decoder of net/record. Each input
 * is read four ways:
 *  1. as a records field (a Fetch response's): every batch, v2 or legacy,
 *     with its CRC as it is, iterated to the last record and header;
 *  2. as one v2 batch whose length and CRC are made right first, so that
 *     mutations reach the records and the codecs instead of dying at the CRC;
 *  3. after byte 0, as the compressed records of every codec (the output
 *     limited to 256 KiB, as a bomb must be), the output then iterated as v2
 *     records and as a legacy message set;
 *  4. as a legacy message set, magic 0 and 1 (a wrapper's inner set), as it
 *     is and with every entry's CRC made right (then also as a records
 *     field), for the same reason as 2.
 * Record spans are checked by touching their first and last bytes, inside
 * buffers of the exact size (a copy of the decompressed bytes), so ASan
 * sees any span that reaches past its data.
 *
 * Built with -DSP_FUZZ_RECORD_SEEDS and without -fsanitize=fuzzer, the file
 * is instead the program that wrote the seed corpus
 * (tests/fuzz/corpus/record_batch): `./seeds DIR`.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "sp_crc32c.h"
#include "sp_record.h"

#define FUZZ_DST_BYTES (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sp_record_codec codec;
static bool codec_ready;
static uint8_t dst[FUZZ_DST_BYTES];
static volatile unsigned sink;

static void touch(const uint8_t *p, int32_t len)
{
    if (p != NULL && len > 0)
        sink += p[0] + p[len - 1];
}

static void touch_record(const struct sp_record *r, bool control)
{
    touch(r->key, r->key_len);
    touch(r->value, r->value_len);
    struct sp_record_header_iter hit;
    struct sp_record_header h;
    sp_record_header_iter_init(&hit, r);
    while (sp_record_header_next(&hit, &h) == 1) {
        touch(h.key, h.key_len);
        touch(h.value, h.value_len);
    }
    if (control) {
        struct sp_record_control c;
        if (sp_record_control_parse(r, &c) == 0)
            sink += (unsigned)c.type;
    }
}

/* Iterates records/len as `batch`'s records, from an exact-size copy. */
static void iterate(const struct sp_record_batch *batch, const uint8_t *records, size_t len)
{
    uint8_t *copy = malloc(len != 0 ? len : 1);
    if (copy == NULL)
        return;
    if (len != 0)
        memcpy(copy, records, len);
    struct sp_record_iter it;
    if (sp_record_iter_init(&it, batch, copy, len) == 0) {
        struct sp_record r;
        while (sp_record_iter_next(&it, &r) == 1)
            touch_record(&r, sp_record_batch_is_control(batch));
    }
    free(copy);
}

static void iterate_batch(const struct sp_record_batch *batch)
{
    if (sp_record_batch_codec(batch) == SP_RECORD_CODEC_NONE) {
        iterate(batch, batch->records, batch->records_len);
        return;
    }
    size_t len = 0;
    if (sp_record_batch_decompress(batch, &codec, dst, sizeof(dst), &len) == 0)
        iterate(batch, dst, len);
}

static void fuzz_records_field(const uint8_t *data, size_t size)
{
    struct sp_record_set set;
    struct sp_record_batch batch;
    sp_record_set_init(&set, data, size);
    while (sp_record_set_next(&set, &batch) == 1)
        iterate_batch(&batch);
}

static void fuzz_fixed_batch(const uint8_t *data, size_t size)
{
    if (size < SP_RECORD_BATCH_HEADER_BYTES || size - 12 > INT32_MAX)
        return;
    uint8_t *copy = malloc(size);
    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    uint32_t length = (uint32_t)(size - 12);
    copy[8] = (uint8_t)(length >> 24);
    copy[9] = (uint8_t)(length >> 16);
    copy[10] = (uint8_t)(length >> 8);
    copy[11] = (uint8_t)length;
    copy[16] = SP_RECORD_MAGIC_V2;
    uint32_t crc = sp_crc32c(0, copy + 21, size - 21);
    copy[17] = (uint8_t)(crc >> 24);
    copy[18] = (uint8_t)(crc >> 16);
    copy[19] = (uint8_t)(crc >> 8);
    copy[20] = (uint8_t)crc;
    struct sp_record_batch batch;
    if (sp_record_batch_parse(copy, size, &batch) == 0)
        iterate_batch(&batch);
    free(copy);
}

/* A batch header for iterating bytes that did not come with one. */
static struct sp_record_batch fake_batch(int magic, int32_t record_count)
{
    struct sp_record_batch b;
    memset(&b, 0, sizeof(b));
    b.magic = (int8_t)magic;
    b.record_count = record_count;
    b.base_offset = 1000;
    b.base_timestamp = 1700000000000;
    b.max_timestamp = 1700000000000;
    return b;
}

static void fuzz_codecs(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    int32_t count = data[0];
    for (int id = SP_RECORD_CODEC_GZIP; id < SP_RECORD_CODEC_COUNT; id++) {
        size_t len = 0;
        int magic = id == SP_RECORD_CODEC_LZ4 && (data[0] & 1) ? 0 : 2;
        struct sp_record_batch b = fake_batch(magic, count);
        b.attributes = (int16_t)id;
        b.records = data + 1;
        b.records_len = size - 1;
        if (sp_record_batch_decompress(&b, &codec, dst, sizeof(dst), &len) != 0)
            continue;
        b = fake_batch(2, count);
        iterate(&b, dst, len);
        b = fake_batch(1, -1);
        b.attributes = SP_RECORD_CODEC_GZIP; /* a wrapper's inner set */
        iterate(&b, dst, len);
    }
}

/* Makes the CRC of every legacy entry right, walking their size fields. */
static void fix_legacy_crcs(uint8_t *p, size_t size)
{
    size_t pos = 0;
    while (size - pos >= 17) {
        uint8_t *e = p + pos;
        uint32_t len = (uint32_t)e[8] << 24 | (uint32_t)e[9] << 16 | (uint32_t)e[10] << 8 | e[11];
        if (len < 5 || len > size - pos - 12)
            break;
        uint32_t crc = (uint32_t)crc32(0, e + 16, len - 4);
        e[12] = (uint8_t)(crc >> 24);
        e[13] = (uint8_t)(crc >> 16);
        e[14] = (uint8_t)(crc >> 8);
        e[15] = (uint8_t)crc;
        pos += 12 + (size_t)len;
    }
}

static void fuzz_message_set(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size != 0 ? size : 1);
    if (copy == NULL)
        return;
    if (size != 0)
        memcpy(copy, data, size);
    fix_legacy_crcs(copy, size);
    for (int magic = 0; magic <= 1; magic++) {
        struct sp_record_batch b = fake_batch(magic, -1);
        b.attributes =
            (int16_t)(SP_RECORD_CODEC_GZIP | (magic ? SP_RECORD_ATTR_LOG_APPEND_TIME : 0));
        iterate(&b, data, size);
        iterate(&b, copy, size);
    }
    fuzz_records_field(copy, size);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!codec_ready) {
        if (sp_record_codec_init(&codec, SP_RECORD_CODEC_DECOMPRESS) != 0)
            abort();
        codec_ready = true;
    }
    fuzz_records_field(data, size);
    fuzz_fixed_batch(data, size);
    fuzz_codecs(data, size);
    fuzz_message_set(data, size);
    return 0;
}

#ifdef SP_FUZZ_RECORD_SEEDS
/* ---- The seed corpus writer ---- */

static void write_seed(const char *dir, const char *name, const uint8_t *bytes, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A small batch of five records (null key, empty value, headers) in `codec_id`. */
static size_t seed_batch(struct sp_record_codec *enc, int codec_id, uint8_t *out, size_t cap)
{
    static uint8_t scratch[4096];
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.base_offset = 42;
    c.codec = (enum sp_record_codec_id)codec_id;
    c.scratch = scratch;
    c.scratch_bytes = sizeof(scratch);
    c.producer_id = 7;
    c.producer_epoch = 1;
    c.base_sequence = 0;
    struct sp_record_builder b;
    if (sp_record_builder_init(&b, out, cap, &c) != 0)
        exit(1);
    static const struct sp_record_header headers[2] = {
        {.key = (const uint8_t *)"trace",
         .key_len = 5,
         .value = (const uint8_t *)"t-1",
         .value_len = 3},
        {.key = (const uint8_t *)"none", .key_len = 4, .value = NULL, .value_len = -1},
    };
    for (int i = 0; i < 5; i++) {
        char key[8], value[64];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(value, sizeof(value), "value %d value value value", i);
        struct sp_record_input r = {
            .offset_delta = i,
            .timestamp = 1700000000000 + i,
            .key = i == 1 ? NULL : key,
            .key_len = i == 1 ? -1 : (int32_t)strlen(key),
            .value = value,
            .value_len = i == 2 ? 0 : (int32_t)strlen(value),
            .headers = headers,
            .header_count = (uint32_t)(i % 3),
        };
        if (sp_record_builder_append(&b, &r) != 0)
            exit(1);
    }
    size_t size;
    int rc = sp_record_builder_finish(&b, enc, &size);
    if (rc != 0) {
        fprintf(stderr, "seed batch %s: %d\n", sp_record_codec_name(codec_id), rc);
        exit(1);
    }
    return size;
}

/* A legacy message (magic 0 or 1) at p; returns its size. */
static size_t seed_legacy(uint8_t *p, int64_t offset, int magic, uint8_t attributes,
                          const uint8_t *value, uint32_t value_len)
{
    size_t pos = 16;
    p[pos++] = (uint8_t)magic;
    p[pos++] = attributes;
    if (magic == 1) {
        memset(p + pos, 0, 8);
        p[pos + 7] = 1;
        pos += 8;
    }
    memset(p + pos, 0xFF, 4); /* null key */
    pos += 4;
    for (int i = 0; i < 4; i++)
        p[pos + (size_t)i] = (uint8_t)(value_len >> (24 - 8 * i));
    pos += 4;
    memcpy(p + pos, value, value_len);
    pos += value_len;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)offset >> (56 - 8 * i));
    uint32_t size = (uint32_t)(pos - 12), crc = (uint32_t)crc32(0, p + 16, (uInt)(pos - 16));
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (uint8_t)(size >> (24 - 8 * i));
        p[12 + i] = (uint8_t)(crc >> (24 - 8 * i));
    }
    return pos;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    struct sp_record_codec enc;
    if (sp_record_codec_init(&enc, SP_RECORD_CODEC_COMPRESS) != 0)
        return 1;
    static uint8_t buf[8192];
    char name[64];
    for (int id = 0; id < SP_RECORD_CODEC_COUNT; id++) {
        size_t n = seed_batch(&enc, id, buf, sizeof(buf));
        snprintf(name, sizeof(name), "batch-%s", sp_record_codec_name(id));
        write_seed(argv[1], name, buf, n);
    }
    /* Two batches and the start of a third, as a Fetch response cuts them. */
    size_t a = seed_batch(&enc, SP_RECORD_CODEC_NONE, buf, sizeof(buf));
    size_t b = seed_batch(&enc, SP_RECORD_CODEC_LZ4, buf + a, sizeof(buf) - a);
    size_t c = seed_batch(&enc, SP_RECORD_CODEC_NONE, buf + a + b, sizeof(buf) - a - b);
    write_seed(argv[1], "field-partial", buf, a + b + c / 2);
    struct sp_record_marker m = {.offset = 47,
                                 .timestamp = 1700000000100,
                                 .producer_id = 7,
                                 .producer_epoch = 1,
                                 .partition_leader_epoch = 0,
                                 .type = SP_RECORD_CONTROL_COMMIT,
                                 .coordinator_epoch = 3};
    size_t n;
    if (sp_record_marker_encode(buf, sizeof(buf), &m, &n) != 0)
        return 1;
    write_seed(argv[1], "control-commit", buf, n);
    /* Legacy: plain v0 and v1 messages, and a v1 gzip wrapper of two messages. */
    n = seed_legacy(buf, 10, 0, 0, (const uint8_t *)"legacy v0", 9);
    n += seed_legacy(buf + n, 11, 1, 0, (const uint8_t *)"legacy v1", 9);
    write_seed(argv[1], "legacy-plain", buf, n);
    uint8_t inner[256], comp[512];
    size_t inner_len = seed_legacy(inner, 0, 1, 0, (const uint8_t *)"inner 0", 7);
    inner_len += seed_legacy(inner + inner_len, 1, 1, 0, (const uint8_t *)"inner 1", 7);
    size_t comp_len = 0;
    if (sp_record_compress(&enc, SP_RECORD_CODEC_GZIP, 0, inner, inner_len, comp, sizeof(comp),
                           &comp_len) != 0)
        return 1;
    n = seed_legacy(buf, 21, 1, SP_RECORD_CODEC_GZIP, comp, (uint32_t)comp_len);
    write_seed(argv[1], "legacy-gzip-wrapper", buf, n);
    sp_record_codec_deinit(&enc);
    return 0;
}
#endif /* SP_FUZZ_RECORD_SEEDS */
