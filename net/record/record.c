/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoding of record batches (see sp_record.h): the v2 header and its
 * CRC-32C, the walk over a records field, the record and header iterators
 * and control records. Legacy messages are parsed in legacy.c, codecs live
 * in codec.c, encoding in record_build.c.
 *
 * The record iterator is the hot path (one call per record: 75 M records/s
 * on one core for a batch of 1,000 records with 100-byte values, its CRC
 * included; bench record_decode/none): each record is one pass over its bytes, varints take a
 * one-byte fast path, and every length is checked against the end of the record it belongs to, so
 * that no field can reach past its record and no record past its batch.
 */
#include <errno.h>
#include <string.h>

#include "record_int.h"
#include "sp_crc32c.h"
#include "sp_log.h"
#include "sp_record.h"

int sp_record_reject(const char *file, int line)
{
    sp_debug("record: rejected malformed input (%s:%d)", file, line);
    return -EBADMSG;
}

const char *sp_record_codec_name(int codec)
{
    static const char *const names[SP_RECORD_CODEC_COUNT] = {"none", "gzip", "snappy", "lz4",
                                                             "zstd"};
    if (codec < 0 || codec >= SP_RECORD_CODEC_COUNT)
        return NULL;
    return names[codec];
}

/* ---- Varints within a bound ---- */

/* Reads a zigzag varint at *pp, which must stay below `end`; advances *pp. */
static inline int rd_varint(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    const uint8_t *p = *pp;
    if (SP_LIKELY(p < end && *p < 0x80)) {
        uint32_t raw = *p;
        *out = (int32_t)((raw >> 1) ^ (0u - (raw & 1)));
        *pp = p + 1;
        return 0;
    }
    int n = sp_record_varint_decode(p, (size_t)(end - p), out);
    if (n < 0)
        return n;
    *pp = p + n;
    return 0;
}

static inline int rd_varlong(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;
    if (SP_LIKELY(p < end && *p < 0x80)) {
        uint64_t raw = *p;
        *out = (int64_t)((raw >> 1) ^ (0ull - (raw & 1)));
        *pp = p + 1;
        return 0;
    }
    int n = sp_record_varlong_decode(p, (size_t)(end - p), out);
    if (n < 0)
        return n;
    *pp = p + n;
    return 0;
}

/*
 * Reads a length-prefixed byte string (varint length, -1 for null when
 * `nullable`) that must end by `end`; advances *pp past it.
 */
static inline int rd_bytes(const uint8_t **pp, const uint8_t *end, bool nullable,
                           const uint8_t **data, int32_t *len)
{
    if (rd_varint(pp, end, len) != 0)
        return -EBADMSG;
    if (*len < 0) {
        if (*len != -1 || !nullable)
            return -EBADMSG;
        *data = NULL;
        return 0;
    }
    if (*len > end - *pp)
        return -EBADMSG;
    *data = *pp;
    *pp += *len;
    return 0;
}

/* ---- Batch header ---- */

/* Smallest value of the size field for each magic. */
static int32_t batch_size_min(int magic)
{
    static const int32_t size_min[3] = {SP_RECORD_LEGACY_V0_MIN, SP_RECORD_LEGACY_V1_MIN,
                                        SP_RECORD_BATCH_HEADER_BYTES -
                                            SP_RECORD_LOG_OVERHEAD_BYTES};
    SP_ASSERT(magic >= 0);
    SP_ASSERT(magic <= 2);
    return size_min[magic];
}

static int batch_parse_v2(const uint8_t *buf, struct sp_record_batch *out)
{
    out->partition_leader_epoch = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_EPOCH);
    out->crc = sp_record_be32(buf + SP_RECORD_OFF_CRC);
    out->attributes = (int16_t)sp_record_be16(buf + SP_RECORD_OFF_ATTRIBUTES);
    out->last_offset_delta = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_LAST_DELTA);
    out->base_timestamp = (int64_t)sp_record_be64(buf + SP_RECORD_OFF_BASE_TS);
    out->max_timestamp = (int64_t)sp_record_be64(buf + SP_RECORD_OFF_MAX_TS);
    out->producer_id = (int64_t)sp_record_be64(buf + SP_RECORD_OFF_PRODUCER_ID);
    out->producer_epoch = (int16_t)sp_record_be16(buf + SP_RECORD_OFF_PRODUCER_EPOCH);
    out->base_sequence = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_BASE_SEQUENCE);
    out->record_count = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_COUNT);
    out->records = buf + SP_RECORD_BATCH_HEADER_BYTES;
    out->records_len = out->size - SP_RECORD_BATCH_HEADER_BYTES;

    if ((out->attributes & SP_RECORD_ATTR_CODEC_MASK) >= SP_RECORD_CODEC_COUNT)
        return SP_RECORD_BAD();
    if (out->record_count < 0)
        return SP_RECORD_BAD();
    uint32_t crc =
        sp_crc32c(0, buf + SP_RECORD_OFF_ATTRIBUTES, out->size - SP_RECORD_OFF_ATTRIBUTES);
    if (crc != out->crc)
        return SP_RECORD_BAD();
    return 0;
}

int sp_record_batch_parse(const uint8_t *buf, size_t len, struct sp_record_batch *out)
{
    SP_ASSERT(buf != NULL || len == 0);
    SP_ASSERT(out != NULL);
    out->size = 0;
    if (len < SP_RECORD_LOG_OVERHEAD_BYTES)
        return -EAGAIN;
    int32_t size = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_LENGTH);
    if (size < SP_RECORD_LEGACY_V0_MIN)
        return SP_RECORD_BAD();
    size_t total = SP_RECORD_LOG_OVERHEAD_BYTES + (size_t)size;
    /* The magic is at the same place in every format: check it as soon as it is there. */
    if (len > SP_RECORD_OFF_MAGIC) {
        int8_t magic = (int8_t)buf[SP_RECORD_OFF_MAGIC];
        if (magic < 0 || magic > SP_RECORD_MAGIC_V2)
            return SP_RECORD_BAD();
        if (size < batch_size_min(magic))
            return SP_RECORD_BAD();
    }
    if (len < total) {
        out->size = total;
        return -EAGAIN;
    }
    out->base_offset = (int64_t)sp_record_be64(buf);
    out->batch_length = size;
    out->magic = (int8_t)buf[SP_RECORD_OFF_MAGIC];
    out->size = total;
    if (out->magic < SP_RECORD_MAGIC_V2)
        return sp_record_legacy_parse(buf, len, out);
    return batch_parse_v2(buf, out);
}

int sp_record_batch_decompress(const struct sp_record_batch *batch, struct sp_record_codec *codec,
                               uint8_t *dst, size_t dst_bytes_max, size_t *out_len)
{
    SP_ASSERT(batch != NULL);
    SP_ASSERT(out_len != NULL);
    enum sp_record_codec_id id = sp_record_batch_codec(batch);
    if (id == SP_RECORD_CODEC_NONE || codec == NULL)
        return -EINVAL;
    return sp_record_decompress_magic(codec, id, batch->magic, batch->records, batch->records_len,
                                      dst, dst_bytes_max, out_len);
}

/* ---- Records field ---- */

void sp_record_set_init(struct sp_record_set *set, const uint8_t *buf, size_t len)
{
    SP_ASSERT(set != NULL);
    SP_ASSERT(buf != NULL || len == 0);
    set->pos = buf;
    set->end = sp_record_span_end(buf, len);
    set->partial_bytes = 0;
    set->partial_batch_bytes = 0;
    set->failed = false;
}

int sp_record_set_next(struct sp_record_set *set, struct sp_record_batch *out)
{
    SP_ASSERT(set != NULL);
    if (set->failed)
        return -EBADMSG;
    SP_ASSERT(set->pos <= set->end);
    size_t left = (size_t)(set->end - set->pos);
    if (left == 0)
        return 0;
    int rc = sp_record_batch_parse(set->pos, left, out);
    if (rc == -EAGAIN) {
        set->partial_bytes = left;
        set->partial_batch_bytes = out->size;
        set->pos = set->end;
        return 0;
    }
    if (rc < 0) {
        set->failed = true;
        return rc;
    }
    SP_ASSERT(out->size <= left);
    set->pos += out->size;
    return 1;
}

/* ---- Records ---- */

int sp_record_iter_init(struct sp_record_iter *it, const struct sp_record_batch *batch,
                        const uint8_t *records, size_t len)
{
    SP_ASSERT(it != NULL);
    SP_ASSERT(batch != NULL);
    SP_ASSERT(records != NULL || len == 0);
    if (batch->magic < SP_RECORD_MAGIC_V2)
        return sp_record_legacy_iter_init(it, batch, records, len);
    it->pos = records;
    it->end = sp_record_span_end(records, len);
    it->failed = false;
    it->base_offset = batch->base_offset;
    it->base_timestamp = batch->base_timestamp;
    it->log_append_time_ms = sp_record_batch_log_append_time(batch) ? batch->max_timestamp : -1;
    it->remaining = batch->record_count;
    it->magic = batch->magic;
    return 0;
}

int sp_record_iter_open(struct sp_record_iter *it, const struct sp_record_batch *batch,
                        struct sp_record_codec *codec, uint8_t *dst, size_t dst_bytes_max)
{
    SP_ASSERT(batch != NULL);
    if (sp_record_batch_codec(batch) == SP_RECORD_CODEC_NONE)
        return sp_record_iter_init(it, batch, batch->records, batch->records_len);
    if (codec == NULL || (dst == NULL && dst_bytes_max != 0))
        return -EINVAL;
    size_t len = 0;
    int rc = sp_record_batch_decompress(batch, codec, dst, dst_bytes_max, &len);
    if (rc < 0)
        return rc;
    return sp_record_iter_init(it, batch, dst, len);
}

/* Checks the headers from *pp to `end`, `count` of them; advances *pp. */
static int headers_check(const uint8_t **pp, const uint8_t *end, int32_t count)
{
    /* Each header takes 2 bytes at least: a count beyond that is a lie. */
    if (count < 0 || (size_t)count > (size_t)(end - *pp) / 2)
        return SP_RECORD_BAD();
    for (int32_t i = 0; i < count; i++) {
        const uint8_t *data;
        int32_t len;
        if (rd_bytes(pp, end, false, &data, &len) != 0)
            return SP_RECORD_BAD();
        if (rd_bytes(pp, end, true, &data, &len) != 0)
            return SP_RECORD_BAD();
    }
    return 0;
}

/* One v2 record at it->pos. */
static int record_next_v2(struct sp_record_iter *it, struct sp_record *out)
{
    const uint8_t *p = it->pos;
    int32_t len;
    if (rd_varint(&p, it->end, &len) != 0 || len < 0 || len > it->end - p)
        return SP_RECORD_BAD();
    const uint8_t *end = p + len;
    if (p == end)
        return SP_RECORD_BAD();
    out->attributes = (int8_t)*p++;
    int64_t timestamp_delta;
    int32_t offset_delta;
    if (rd_varlong(&p, end, &timestamp_delta) != 0 || rd_varint(&p, end, &offset_delta) != 0)
        return SP_RECORD_BAD();
    if (rd_bytes(&p, end, true, &out->key, &out->key_len) != 0)
        return SP_RECORD_BAD();
    if (rd_bytes(&p, end, true, &out->value, &out->value_len) != 0)
        return SP_RECORD_BAD();
    int32_t header_count;
    if (rd_varint(&p, end, &header_count) != 0)
        return SP_RECORD_BAD();
    out->headers = p;
    if (header_count != 0 && headers_check(&p, end, header_count) != 0)
        return -EBADMSG;
    if (p != end)
        return SP_RECORD_BAD(); /* the length and the fields disagree */
    out->header_count = (uint32_t)header_count;
    out->headers_len = (uint32_t)(end - out->headers);
    /* Unsigned sums: a hostile delta wraps instead of overflowing. */
    out->offset = (int64_t)((uint64_t)it->base_offset + (uint64_t)(int64_t)offset_delta);
    if (it->log_append_time_ms >= 0)
        out->timestamp = it->log_append_time_ms;
    else
        out->timestamp = (int64_t)((uint64_t)it->base_timestamp + (uint64_t)timestamp_delta);
    it->pos = end;
    it->remaining--;
    return 1;
}

int sp_record_iter_next(struct sp_record_iter *it, struct sp_record *out)
{
    SP_ASSERT(it != NULL);
    SP_ASSERT(out != NULL);
    if (it->failed)
        return -EBADMSG;
    int rc;
    if (it->magic < SP_RECORD_MAGIC_V2) {
        rc = sp_record_legacy_next(it, out);
    } else if (it->remaining == 0) {
        rc = it->pos == it->end ? 0 : SP_RECORD_BAD(); /* bytes after the last record */
    } else {
        rc = record_next_v2(it, out);
    }
    if (rc < 0)
        it->failed = true;
    return rc;
}

void sp_record_header_iter_init(struct sp_record_header_iter *it, const struct sp_record *record)
{
    SP_ASSERT(it != NULL);
    SP_ASSERT(record != NULL);
    SP_ASSERT(record->headers != NULL || record->headers_len == 0);
    it->pos = record->headers;
    it->end = sp_record_span_end(record->headers, record->headers_len);
    it->remaining = record->header_count;
}

int sp_record_header_next(struct sp_record_header_iter *it, struct sp_record_header *out)
{
    SP_ASSERT(it != NULL);
    SP_ASSERT(out != NULL);
    if (it->remaining == 0)
        return it->pos == it->end ? 0 : SP_RECORD_BAD();
    if (it->pos == NULL || it->pos >= it->end)
        return SP_RECORD_BAD();
    if (rd_bytes(&it->pos, it->end, false, &out->key, &out->key_len) != 0 ||
        rd_bytes(&it->pos, it->end, true, &out->value, &out->value_len) != 0) {
        it->pos = NULL;
        it->remaining = 0;
        return SP_RECORD_BAD();
    }
    it->remaining--;
    return 1;
}

/* ---- Control records ---- */

int sp_record_control_parse(const struct sp_record *record, struct sp_record_control *out)
{
    SP_ASSERT(record != NULL);
    SP_ASSERT(out != NULL);
    if (record->key == NULL || record->key_len < 4)
        return SP_RECORD_BAD();
    out->version = (int16_t)sp_record_be16(record->key);
    out->type = (int16_t)sp_record_be16(record->key + 2);
    out->marker_version = -1;
    out->coordinator_epoch = -1;
    if (out->version < 0)
        return SP_RECORD_BAD();
    if (out->type != SP_RECORD_CONTROL_ABORT && out->type != SP_RECORD_CONTROL_COMMIT)
        return 0;
    /* EndTxnMarker: version int16, coordinatorEpoch int32. */
    if (record->value == NULL || record->value_len < 6)
        return SP_RECORD_BAD();
    out->marker_version = (int16_t)sp_record_be16(record->value);
    out->coordinator_epoch = (int32_t)sp_record_be32(record->value + 2);
    if (out->marker_version < 0)
        return SP_RECORD_BAD();
    return 0;
}
