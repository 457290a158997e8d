/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Encoding of RecordBatch v2 (see sp_record.h): a builder that appends
 * records into the caller's buffer and finishes the batch (compression,
 * header, CRC-32C), and transaction markers (control batches).
 *
 * Records of an uncompressed batch are written in place after the 61-byte
 * header; those of a compressed batch go to the caller's scratch buffer and
 * are compressed into the batch buffer by finish(), so neither path copies
 * records twice. An append that does not fit changes nothing: the caller
 * finishes the batch and starts another with that record.
 */
#include <errno.h>
#include <string.h>

#include "record_int.h"
#include "sp_crc32c.h"
#include "sp_record.h"

int sp_record_builder_init(struct sp_record_builder *builder, uint8_t *buf, size_t buf_bytes,
                           const struct sp_record_builder_config *config)
{
    SP_ASSERT(builder != NULL);
    SP_ASSERT(config != NULL);
    SP_ASSERT(buf != NULL || buf_bytes == 0);
    if ((unsigned)config->codec >= SP_RECORD_CODEC_COUNT)
        return -EINVAL;
    if (config->codec != SP_RECORD_CODEC_NONE && config->scratch == NULL)
        return -EINVAL;
    if (buf_bytes < SP_RECORD_BATCH_HEADER_BYTES)
        return -ENOBUFS;
    memset(builder, 0, sizeof(*builder));
    builder->config = *config;
    builder->buf = buf;
    builder->buf_bytes = buf_bytes;
    if (config->codec == SP_RECORD_CODEC_NONE) {
        builder->records = buf + SP_RECORD_BATCH_HEADER_BYTES;
        builder->records_bytes_max = buf_bytes - SP_RECORD_BATCH_HEADER_BYTES;
    } else {
        builder->records = config->scratch;
        builder->records_bytes_max = config->scratch_bytes;
    }
    builder->base_timestamp = -1;
    builder->max_timestamp = -1;
    builder->last_offset_delta = -1;
    return 0;
}

/* Wire size of a byte string of length `len` (-1: null) with its varint prefix. */
static uint64_t bytes_size(int32_t len)
{
    return sp_record_varint_size(len) + (uint64_t)(len > 0 ? len : 0);
}

static bool bytes_valid(const void *data, int32_t len, bool nullable)
{
    if (len < 0)
        return nullable && len == -1;
    return data != NULL || len == 0;
}

/* Size of the record's body (after its length varint), or 0 when it is invalid. */
static uint64_t record_body_size(const struct sp_record_input *r, int64_t timestamp_delta)
{
    if (!bytes_valid(r->key, r->key_len, true) || !bytes_valid(r->value, r->value_len, true))
        return 0;
    if (r->header_count > INT32_MAX || (r->header_count != 0 && r->headers == NULL))
        return 0;
    uint64_t size = 1 + sp_record_varlong_size(timestamp_delta) +
                    sp_record_varint_size(r->offset_delta) + bytes_size(r->key_len) +
                    bytes_size(r->value_len) + sp_record_varint_size((int32_t)r->header_count);
    for (uint32_t i = 0; i < r->header_count; i++) {
        const struct sp_record_header *h = &r->headers[i];
        if (!bytes_valid(h->key, h->key_len, false) || !bytes_valid(h->value, h->value_len, true))
            return 0;
        size += bytes_size(h->key_len) + bytes_size(h->value_len);
    }
    return size;
}

static uint8_t *put_bytes(uint8_t *p, const void *data, int32_t len)
{
    p += sp_record_varint_encode(p, len);
    if (len > 0) {
        memcpy(p, data, (size_t)len);
        p += len;
    }
    return p;
}

int sp_record_builder_append(struct sp_record_builder *builder,
                             const struct sp_record_input *record)
{
    SP_ASSERT(builder != NULL);
    SP_ASSERT(record != NULL);
    SP_ASSERT(!builder->finished);
    if (record->offset_delta < 0 || record->offset_delta <= builder->last_offset_delta)
        return -EINVAL;
    int64_t base = builder->record_count == 0 ? record->timestamp : builder->base_timestamp;
    int64_t timestamp_delta = (int64_t)((uint64_t)record->timestamp - (uint64_t)base);
    uint64_t body = record_body_size(record, timestamp_delta);
    if (body == 0 || body > INT32_MAX)
        return -EINVAL;
    uint64_t total = sp_record_varint_size((int32_t)body) + body;
    if (total > builder->records_bytes_max - builder->records_len ||
        builder->record_count == INT32_MAX)
        return -ENOBUFS;

    uint8_t *p = builder->records + builder->records_len;
    uint8_t *start = p;
    p += sp_record_varint_encode(p, (int32_t)body);
    *p++ = 0; /* record attributes: unused */
    p += sp_record_varlong_encode(p, timestamp_delta);
    p += sp_record_varint_encode(p, record->offset_delta);
    p = put_bytes(p, record->key, record->key_len);
    p = put_bytes(p, record->value, record->value_len);
    p += sp_record_varint_encode(p, (int32_t)record->header_count);
    for (uint32_t i = 0; i < record->header_count; i++) {
        p = put_bytes(p, record->headers[i].key, record->headers[i].key_len);
        p = put_bytes(p, record->headers[i].value, record->headers[i].value_len);
    }
    SP_ASSERT((uint64_t)(p - start) == total);

    builder->records_len += (size_t)total;
    if (builder->record_count == 0 || record->timestamp > builder->max_timestamp)
        builder->max_timestamp = record->timestamp;
    builder->base_timestamp = base;
    builder->last_offset_delta = record->offset_delta;
    builder->record_count++;
    return 0;
}

static int16_t builder_attributes(const struct sp_record_builder_config *config)
{
    unsigned attributes = (unsigned)config->codec;
    if (config->log_append_time_ms >= 0)
        attributes |= SP_RECORD_ATTR_LOG_APPEND_TIME;
    if (config->transactional)
        attributes |= SP_RECORD_ATTR_TRANSACTIONAL;
    if (config->control)
        attributes |= SP_RECORD_ATTR_CONTROL;
    return (int16_t)attributes;
}

/* Writes the 61-byte header of a batch of `total` bytes, then its CRC. */
static void builder_write_header(struct sp_record_builder *builder, size_t total)
{
    const struct sp_record_builder_config *c = &builder->config;
    uint8_t *h = builder->buf;
    int64_t max_timestamp =
        c->log_append_time_ms >= 0 ? c->log_append_time_ms : builder->max_timestamp;
    sp_record_put64(h, (uint64_t)c->base_offset);
    sp_record_put32(h + SP_RECORD_OFF_LENGTH, (uint32_t)(total - SP_RECORD_LOG_OVERHEAD_BYTES));
    sp_record_put32(h + SP_RECORD_OFF_EPOCH, (uint32_t)c->partition_leader_epoch);
    h[SP_RECORD_OFF_MAGIC] = SP_RECORD_MAGIC_V2;
    sp_record_put16(h + SP_RECORD_OFF_ATTRIBUTES, (uint16_t)builder_attributes(c));
    sp_record_put32(h + SP_RECORD_OFF_LAST_DELTA, (uint32_t)builder->last_offset_delta);
    sp_record_put64(h + SP_RECORD_OFF_BASE_TS, (uint64_t)builder->base_timestamp);
    sp_record_put64(h + SP_RECORD_OFF_MAX_TS, (uint64_t)max_timestamp);
    sp_record_put64(h + SP_RECORD_OFF_PRODUCER_ID, (uint64_t)c->producer_id);
    sp_record_put16(h + SP_RECORD_OFF_PRODUCER_EPOCH, (uint16_t)c->producer_epoch);
    sp_record_put32(h + SP_RECORD_OFF_BASE_SEQUENCE, (uint32_t)c->base_sequence);
    sp_record_put32(h + SP_RECORD_OFF_COUNT, (uint32_t)builder->record_count);
    uint32_t crc = sp_crc32c(0, h + SP_RECORD_OFF_ATTRIBUTES, total - SP_RECORD_OFF_ATTRIBUTES);
    sp_record_put32(h + SP_RECORD_OFF_CRC, crc);
}

int sp_record_builder_finish(struct sp_record_builder *builder, struct sp_record_codec *codec,
                             size_t *batch_bytes)
{
    SP_ASSERT(builder != NULL);
    SP_ASSERT(batch_bytes != NULL);
    SP_ASSERT(!builder->finished);
    if (builder->record_count == 0)
        return -ENODATA;
    const struct sp_record_builder_config *c = &builder->config;
    size_t records_len = builder->records_len;
    if (c->codec != SP_RECORD_CODEC_NONE) {
        if (codec == NULL)
            return -EINVAL;
        int rc =
            sp_record_compress(codec, c->codec, c->compression_level, builder->records,
                               builder->records_len, builder->buf + SP_RECORD_BATCH_HEADER_BYTES,
                               builder->buf_bytes - SP_RECORD_BATCH_HEADER_BYTES, &records_len);
        if (rc < 0)
            return rc;
    }
    size_t total = SP_RECORD_BATCH_HEADER_BYTES + records_len;
    if (total - SP_RECORD_LOG_OVERHEAD_BYTES > INT32_MAX)
        return -ENOBUFS;
    SP_ASSERT(total <= builder->buf_bytes);
    builder_write_header(builder, total);
    builder->finished = true;
    *batch_bytes = total;
    return 0;
}

int sp_record_marker_encode(uint8_t *buf, size_t buf_bytes, const struct sp_record_marker *marker,
                            size_t *batch_bytes)
{
    SP_ASSERT(marker != NULL);
    SP_ASSERT(batch_bytes != NULL);
    if (marker->type != SP_RECORD_CONTROL_ABORT && marker->type != SP_RECORD_CONTROL_COMMIT)
        return -EINVAL;
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.base_offset = marker->offset;
    config.partition_leader_epoch = marker->partition_leader_epoch;
    config.producer_id = marker->producer_id;
    config.producer_epoch = marker->producer_epoch;
    config.transactional = true;
    config.control = true;
    struct sp_record_builder builder;
    int rc = sp_record_builder_init(&builder, buf, buf_bytes, &config);
    if (rc < 0)
        return rc;
    uint8_t key[4], value[6];
    sp_record_put16(key, 0); /* control record key version */
    sp_record_put16(key + 2, (uint16_t)marker->type);
    sp_record_put16(value, 0); /* EndTxnMarker version */
    sp_record_put32(value + 2, (uint32_t)marker->coordinator_epoch);
    struct sp_record_input record = {
        .offset_delta = 0,
        .timestamp = marker->timestamp,
        .key = key,
        .key_len = sizeof(key),
        .value = value,
        .value_len = sizeof(value),
    };
    rc = sp_record_builder_append(&builder, &record);
    if (rc < 0)
        return rc;
    return sp_record_builder_finish(&builder, NULL, batch_bytes);
}
