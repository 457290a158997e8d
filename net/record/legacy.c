/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Legacy MessageSet decoding (magic 0 and 1, Kafka before 0.11), for topics
 * whose old segments are still served in that format. A message set is a
 * run of entries: offset int64, size int32, then a message of `size` bytes:
 * crc uint32 (CRC-32 IEEE, zlib's, of the rest), magic int8, attributes
 * int8, timestamp int64 (v1), key and value (int32 length, -1: null).
 *
 * A compressed message is a wrapper: its value, decompressed, is an inner
 * message set of plain messages of the same magic (compression does not
 * nest). In v0 the inner offsets are absolute; in v1 they are relative
 * (0, 1, ...) and the wrapper carries the absolute offset of the last one,
 * so absolute = wrapper offset - last inner offset + inner offset. A v1
 * wrapper with LogAppendTime gives its own timestamp to every inner message.
 *
 * Legacy messages go through the same API as v2: sp_record_batch_parse()
 * returns one message as a batch, sp_record_iter_* yields its records (the
 * message itself, or the wrapper's inner messages) with no headers.
 */
#include <errno.h>
#include <zlib.h>

#include "record_int.h"
#include "sp_record.h"

/* One message of a message set, entry header included. */
struct legacy_msg {
    int64_t offset;
    int64_t timestamp; /* -1 in v0 */
    const uint8_t *key;
    const uint8_t *value;
    size_t size; /* bytes of the whole entry: 12 + message size */
    uint32_t crc;
    int32_t key_len;
    int32_t value_len;
    int8_t magic;
    uint8_t attributes;
};

/* Reads a legacy int32-length byte string ending by `end`; advances *pp. */
static int legacy_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **data, int32_t *len)
{
    if (end - *pp < 4)
        return SP_RECORD_BAD();
    *len = (int32_t)sp_record_be32(*pp);
    *pp += 4;
    if (*len == -1) {
        *data = NULL;
        return 0;
    }
    if (*len < 0 || *len > end - *pp)
        return SP_RECORD_BAD();
    *data = *pp;
    *pp += *len;
    return 0;
}

/*
 * Parses and checks the entry at the start of buf/len: sizes within len,
 * magic 0 or 1, CRC, key and value filling the message exactly.
 */
static int legacy_msg_parse(const uint8_t *buf, size_t len, struct legacy_msg *m)
{
    if (len < SP_RECORD_LOG_OVERHEAD_BYTES + SP_RECORD_LEGACY_V0_MIN)
        return SP_RECORD_BAD();
    int32_t size = (int32_t)sp_record_be32(buf + SP_RECORD_OFF_LENGTH);
    if (size < SP_RECORD_LEGACY_V0_MIN || (size_t)size > len - SP_RECORD_LOG_OVERHEAD_BYTES)
        return SP_RECORD_BAD();
    m->size = SP_RECORD_LOG_OVERHEAD_BYTES + (size_t)size;
    m->offset = (int64_t)sp_record_be64(buf);
    m->crc = sp_record_be32(buf + SP_RECORD_OFF_LENGTH + 4);
    m->magic = (int8_t)buf[SP_RECORD_OFF_MAGIC];
    m->attributes = buf[SP_RECORD_OFF_MAGIC + 1];
    if (m->magic != SP_RECORD_MAGIC_V0 && m->magic != SP_RECORD_MAGIC_V1)
        return SP_RECORD_BAD();
    if (m->magic == SP_RECORD_MAGIC_V1 && size < SP_RECORD_LEGACY_V1_MIN)
        return SP_RECORD_BAD();
    const uint8_t *crc_start = buf + SP_RECORD_OFF_MAGIC;
    const uint8_t *end = buf + m->size;
    if ((uint32_t)crc32(0, crc_start, (uInt)(end - crc_start)) != m->crc)
        return SP_RECORD_BAD();
    const uint8_t *p = crc_start + 2;
    m->timestamp = -1;
    if (m->magic == SP_RECORD_MAGIC_V1) {
        m->timestamp = (int64_t)sp_record_be64(p);
        p += 8;
    }
    if (legacy_bytes(&p, end, &m->key, &m->key_len) != 0)
        return -EBADMSG;
    if (legacy_bytes(&p, end, &m->value, &m->value_len) != 0)
        return -EBADMSG;
    if (p != end)
        return SP_RECORD_BAD();
    return 0;
}

int sp_record_legacy_parse(const uint8_t *buf, size_t len, struct sp_record_batch *out)
{
    SP_ASSERT(out->size <= len);
    struct legacy_msg m;
    int rc = legacy_msg_parse(buf, out->size, &m);
    if (rc < 0)
        return rc;
    SP_ASSERT(m.size == out->size);
    int codec = m.attributes & SP_RECORD_ATTR_CODEC_MASK;
    /* zstd came with v2: a legacy message cannot use it. */
    if (codec > SP_RECORD_CODEC_LZ4)
        return SP_RECORD_BAD();
    out->partition_leader_epoch = -1;
    out->crc = m.crc;
    out->attributes = m.attributes;
    out->last_offset_delta = 0;
    out->base_timestamp = m.timestamp;
    out->max_timestamp = m.timestamp;
    out->producer_id = -1;
    out->producer_epoch = -1;
    out->base_sequence = -1;
    if (codec == SP_RECORD_CODEC_NONE) {
        out->record_count = 1;
        out->records = buf; /* iterated as a message set of one */
        out->records_len = m.size;
        return 0;
    }
    if (m.value == NULL)
        return SP_RECORD_BAD(); /* a wrapper with nothing inside */
    out->record_count = -1;
    out->records = m.value;
    out->records_len = (size_t)m.value_len;
    return 0;
}

/* The offset of the last entry of a message set, checking only its framing. */
static int legacy_last_offset(const uint8_t *p, const uint8_t *end, int64_t *last)
{
    *last = 0;
    while (p != end) {
        if (end - p < SP_RECORD_LOG_OVERHEAD_BYTES)
            return SP_RECORD_BAD();
        int32_t size = (int32_t)sp_record_be32(p + SP_RECORD_OFF_LENGTH);
        if (size < SP_RECORD_LEGACY_V0_MIN || size > end - p - SP_RECORD_LOG_OVERHEAD_BYTES)
            return SP_RECORD_BAD();
        *last = (int64_t)sp_record_be64(p);
        p += SP_RECORD_LOG_OVERHEAD_BYTES + (size_t)size;
    }
    return 0;
}

int sp_record_legacy_iter_init(struct sp_record_iter *it, const struct sp_record_batch *batch,
                               const uint8_t *records, size_t len)
{
    SP_ASSERT(batch->magic == SP_RECORD_MAGIC_V0 || batch->magic == SP_RECORD_MAGIC_V1);
    it->pos = records;
    it->end = sp_record_span_end(records, len);
    it->failed = false;
    it->magic = batch->magic;
    it->remaining = -1; /* a message set ends where its bytes do */
    it->base_offset = 0;
    it->base_timestamp = -1;
    it->log_append_time_ms = -1;
    if (sp_record_batch_codec(batch) == SP_RECORD_CODEC_NONE)
        return 0; /* the message itself, its offset absolute */
    if (batch->magic == SP_RECORD_MAGIC_V0)
        return 0;
    if (sp_record_batch_log_append_time(batch))
        it->log_append_time_ms = batch->max_timestamp;
    int64_t last = 0;
    int rc = legacy_last_offset(it->pos, it->end, &last);
    if (rc < 0) {
        it->failed = true;
        return rc;
    }
    it->base_offset = (int64_t)((uint64_t)batch->base_offset - (uint64_t)last);
    return 0;
}

int sp_record_legacy_next(struct sp_record_iter *it, struct sp_record *out)
{
    SP_ASSERT(it->pos <= it->end);
    if (it->pos == it->end)
        return 0;
    struct legacy_msg m;
    int rc = legacy_msg_parse(it->pos, (size_t)(it->end - it->pos), &m);
    if (rc < 0)
        return rc;
    /* Inner messages share the wrapper's magic, and are never compressed again. */
    if (m.magic != it->magic || (m.attributes & SP_RECORD_ATTR_CODEC_MASK) != 0)
        return SP_RECORD_BAD();
    out->offset = (int64_t)((uint64_t)it->base_offset + (uint64_t)m.offset);
    out->timestamp = it->log_append_time_ms >= 0 ? it->log_append_time_ms : m.timestamp;
    out->attributes = (int8_t)m.attributes;
    out->key = m.key;
    out->key_len = m.key_len;
    out->value = m.value;
    out->value_len = m.value_len;
    out->headers = NULL;
    out->headers_len = 0;
    out->header_count = 0;
    it->pos += m.size;
    return 1;
}
