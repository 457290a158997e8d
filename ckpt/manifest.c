/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint manifest's binary format: encoder and decoder. A manifest
 * is little-endian, self-delimiting and self-checking: a 64-byte header
 * (magic "SPCKMANI", version, header size, total size, checkpoint id, time,
 * shard count, key-group range, counts), the job name, the source
 * positions, the segment entries, and a CRC-32C of everything before it in
 * the last four bytes. That last rule holds for every version, so a decoder
 * can tell a damaged manifest (-EBADMSG) from a sound one of a version it
 * does not know (-EPROTONOSUPPORT). The layout is drawn out in
 * docs/architecture.md ("ckpt/").
 *
 * The decoder reads outside bytes: it checks every length against what is
 * left before using it, never asserts on the input, and fills only the
 * capacities the caller's manifest was initialised with.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ckpt_store.h"
#include "sp_crc32c.h"

#define MANIFEST_MAGIC "SPCKMANI"
#define MANIFEST_MAGIC_BYTES 8
#define MANIFEST_HEADER_BYTES 64
#define MANIFEST_TRAILER_BYTES 4
#define SEGMENT_FIXED_BYTES 32 /* name_bytes u16, kind u8, pad u8, shard, size, checksum, by */
#define POSITION_FIXED_BYTES 8

_Static_assert(sizeof(MANIFEST_MAGIC) - 1 == MANIFEST_MAGIC_BYTES, "magic is 8 bytes");
_Static_assert(SP_CKPT_SEGMENT_NAME_BYTES_MAX < 65536, "segment names fit a u16 length");

/* ---- Building a manifest ---- */

int sp_ckpt_manifest_init(struct sp_ckpt_manifest *m, uint32_t segment_max, uint32_t position_max,
                          uint32_t blob_max)
{
    SP_ASSERT(m != NULL);
    memset(m, 0, sizeof(*m));
    if (segment_max == 0 || segment_max > SP_CKPT_SEGMENTS_MAX ||
        position_max > SP_CKPT_POSITIONS_MAX)
        return -EINVAL;
    m->segments = calloc(segment_max, sizeof(*m->segments));
    m->positions = calloc(position_max ? position_max : 1, sizeof(*m->positions));
    m->blob = malloc(blob_max ? blob_max : 1);
    if (m->segments == NULL || m->positions == NULL || m->blob == NULL) {
        sp_ckpt_manifest_deinit(m);
        return -ENOMEM;
    }
    m->segment_max = segment_max;
    m->position_max = position_max;
    m->blob_max = blob_max;
    return 0;
}

void sp_ckpt_manifest_deinit(struct sp_ckpt_manifest *m)
{
    SP_ASSERT(m != NULL);
    free(m->segments);
    free(m->positions);
    free(m->blob);
    memset(m, 0, sizeof(*m));
}

void sp_ckpt_manifest_clear(struct sp_ckpt_manifest *m)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(m->segments != NULL);
    m->checkpoint_id = 0;
    m->time_ms = 0;
    m->shard_count = 0;
    m->key_group_first = 0;
    m->key_group_end = 0;
    m->job[0] = '\0';
    m->position_count = 0;
    m->segment_count = 0;
    m->blob_bytes = 0;
}

int sp_ckpt_manifest_add_position(struct sp_ckpt_manifest *m, const void *key, uint32_t key_bytes,
                                  const void *value, uint32_t value_bytes)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(key != NULL || key_bytes == 0);
    SP_ASSERT(value != NULL || value_bytes == 0);
    if (key_bytes > SP_CKPT_POSITION_KEY_BYTES_MAX ||
        value_bytes > SP_CKPT_POSITION_VALUE_BYTES_MAX)
        return -EINVAL;
    if (m->position_count == m->position_max ||
        (uint64_t)m->blob_bytes + key_bytes + value_bytes > m->blob_max)
        return -E2BIG;
    struct sp_ckpt_position *p = &m->positions[m->position_count++];
    p->key_offset = m->blob_bytes;
    p->key_bytes = key_bytes;
    if (key_bytes > 0)
        memcpy(m->blob + m->blob_bytes, key, key_bytes);
    m->blob_bytes += key_bytes;
    p->value_offset = m->blob_bytes;
    p->value_bytes = value_bytes;
    if (value_bytes > 0)
        memcpy(m->blob + m->blob_bytes, value, value_bytes);
    m->blob_bytes += value_bytes;
    return 0;
}

/* A segment key: "segments/" then 1..55 characters of [0-9a-zA-Z._-]. */
static bool segment_name_valid(const char *name, size_t len)
{
    size_t prefix = sizeof(SP_CKPT_SEGMENT_PREFIX) - 1;
    if (len <= prefix || len > SP_CKPT_SEGMENT_NAME_BYTES_MAX)
        return false;
    if (memcmp(name, SP_CKPT_SEGMENT_PREFIX, prefix) != 0)
        return false;
    for (size_t i = prefix; i < len; i++) {
        char c = name[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '_' || (c == '.' && i > prefix);
        if (!ok)
            return false;
    }
    return true;
}

static bool checksum_kind_valid(uint8_t kind)
{
    return kind == SP_CKPT_CHECKSUM_CRC32C || kind == SP_CKPT_CHECKSUM_XXH64;
}

int sp_ckpt_manifest_add_segment(struct sp_ckpt_manifest *m, const struct sp_ckpt_segment *s)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(s != NULL);
    size_t len = strnlen(s->name, sizeof(s->name));
    if (!segment_name_valid(s->name, len) || !checksum_kind_valid(s->checksum_kind))
        return -EINVAL;
    if (s->checksum_kind == SP_CKPT_CHECKSUM_CRC32C && s->checksum > UINT32_MAX)
        return -EINVAL;
    if (m->segment_count == m->segment_max)
        return -E2BIG;
    m->segments[m->segment_count++] = *s;
    return 0;
}

int sp_ckpt_manifest_find_segment(const struct sp_ckpt_manifest *m, const char *name)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(name != NULL);
    /* Linear: a manifest holds at most segments_max entries and this runs
     * once per reference, off the shards. */
    for (uint32_t i = 0; i < m->segment_count; i++) {
        if (strcmp(m->segments[i].name, name) == 0)
            return (int)i;
    }
    return -ENOENT;
}

/* ---- Encoding ---- */

size_t sp_ckpt_manifest_encoded_bytes(const struct sp_ckpt_manifest *m)
{
    SP_ASSERT(m != NULL);
    size_t n = MANIFEST_HEADER_BYTES + strlen(m->job);
    n += (size_t)m->position_count * POSITION_FIXED_BYTES + m->blob_bytes;
    for (uint32_t i = 0; i < m->segment_count; i++)
        n += SEGMENT_FIXED_BYTES + strlen(m->segments[i].name);
    return n + MANIFEST_TRAILER_BYTES;
}

static void encode_header(const struct sp_ckpt_manifest *m, uint8_t *p, size_t total)
{
    memcpy(p, MANIFEST_MAGIC, MANIFEST_MAGIC_BYTES);
    sp_le_store32(p + 8, SP_CKPT_MANIFEST_VERSION);
    sp_le_store32(p + 12, MANIFEST_HEADER_BYTES);
    sp_le_store64(p + 16, total);
    sp_le_store64(p + 24, m->checkpoint_id);
    sp_le_store64(p + 32, (uint64_t)m->time_ms);
    sp_le_store32(p + 40, m->shard_count);
    sp_le_store32(p + 44, m->key_group_first);
    sp_le_store32(p + 48, m->key_group_end);
    sp_le_store32(p + 52, (uint32_t)strlen(m->job));
    sp_le_store32(p + 56, m->position_count);
    sp_le_store32(p + 60, m->segment_count);
}

int64_t sp_ckpt_manifest_encode(const struct sp_ckpt_manifest *m, void *buf, size_t cap)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(buf != NULL);
    SP_ASSERT(strlen(m->job) <= SP_CKPT_JOB_BYTES_MAX);
    size_t total = sp_ckpt_manifest_encoded_bytes(m);
    if (total > SP_CKPT_MANIFEST_BYTES_MAX)
        return -E2BIG;
    if (total > cap)
        return -ENOBUFS;
    uint8_t *p = buf;
    encode_header(m, p, total);
    size_t at = MANIFEST_HEADER_BYTES;
    size_t job_bytes = strlen(m->job);
    memcpy(p + at, m->job, job_bytes);
    at += job_bytes;
    for (uint32_t i = 0; i < m->position_count; i++) {
        const struct sp_ckpt_position *pos = &m->positions[i];
        sp_le_store32(p + at, pos->key_bytes);
        sp_le_store32(p + at + 4, pos->value_bytes);
        at += POSITION_FIXED_BYTES;
        memcpy(p + at, m->blob + pos->key_offset, pos->key_bytes);
        at += pos->key_bytes;
        memcpy(p + at, m->blob + pos->value_offset, pos->value_bytes);
        at += pos->value_bytes;
    }
    for (uint32_t i = 0; i < m->segment_count; i++) {
        const struct sp_ckpt_segment *s = &m->segments[i];
        size_t name_bytes = strlen(s->name);
        sp_le_store16(p + at, (uint16_t)name_bytes);
        p[at + 2] = s->checksum_kind;
        p[at + 3] = 0;
        sp_le_store32(p + at + 4, s->shard);
        sp_le_store64(p + at + 8, s->size_bytes);
        sp_le_store64(p + at + 16, s->checksum);
        sp_le_store64(p + at + 24, s->written_by_id);
        memcpy(p + at + SEGMENT_FIXED_BYTES, s->name, name_bytes);
        at += SEGMENT_FIXED_BYTES + name_bytes;
    }
    SP_ASSERT(at + MANIFEST_TRAILER_BYTES == total);
    sp_le_store32(p + at, sp_crc32c(0, p, at));
    return (int64_t)total;
}

/* ---- Decoding ---- */

/* Checks magic, size and checksum: 0 or -EBADMSG; then the version. */
static int decode_envelope(const uint8_t *p, size_t len)
{
    if (len < MANIFEST_HEADER_BYTES + MANIFEST_TRAILER_BYTES || len > SP_CKPT_MANIFEST_BYTES_MAX)
        return -EBADMSG;
    if (memcmp(p, MANIFEST_MAGIC, MANIFEST_MAGIC_BYTES) != 0)
        return -EBADMSG;
    if (sp_le_load64(p + 16) != len)
        return -EBADMSG;
    if (sp_le_load32(p + len - MANIFEST_TRAILER_BYTES) !=
        sp_crc32c(0, p, len - MANIFEST_TRAILER_BYTES))
        return -EBADMSG;
    if (sp_le_load32(p + 8) != SP_CKPT_MANIFEST_VERSION)
        return -EPROTONOSUPPORT;
    if (sp_le_load32(p + 12) != MANIFEST_HEADER_BYTES)
        return -EBADMSG;
    return 0;
}

static int decode_positions(struct sp_ckpt_manifest *m, const uint8_t *p, size_t end, size_t *at,
                            uint32_t count)
{
    if (count > m->position_max)
        return -E2BIG;
    for (uint32_t i = 0; i < count; i++) {
        if (end - *at < POSITION_FIXED_BYTES)
            return -EBADMSG;
        uint32_t key_bytes = sp_le_load32(p + *at);
        uint32_t value_bytes = sp_le_load32(p + *at + 4);
        *at += POSITION_FIXED_BYTES;
        if (key_bytes > SP_CKPT_POSITION_KEY_BYTES_MAX ||
            value_bytes > SP_CKPT_POSITION_VALUE_BYTES_MAX ||
            end - *at < (size_t)key_bytes + value_bytes)
            return -EBADMSG;
        int err =
            sp_ckpt_manifest_add_position(m, p + *at, key_bytes, p + *at + key_bytes, value_bytes);
        if (err < 0)
            return err;
        *at += (size_t)key_bytes + value_bytes;
    }
    return 0;
}

static int decode_segments(struct sp_ckpt_manifest *m, const uint8_t *p, size_t end, size_t *at,
                           uint32_t count)
{
    if (count > m->segment_max)
        return -E2BIG;
    for (uint32_t i = 0; i < count; i++) {
        if (end - *at < SEGMENT_FIXED_BYTES)
            return -EBADMSG;
        struct sp_ckpt_segment s;
        memset(&s, 0, sizeof(s));
        size_t name_bytes = sp_le_load16(p + *at);
        s.checksum_kind = p[*at + 2];
        if (p[*at + 3] != 0)
            return -EBADMSG; /* reserved: one encoding per manifest */
        s.shard = sp_le_load32(p + *at + 4);
        s.size_bytes = sp_le_load64(p + *at + 8);
        s.checksum = sp_le_load64(p + *at + 16);
        s.written_by_id = sp_le_load64(p + *at + 24);
        *at += SEGMENT_FIXED_BYTES;
        if (name_bytes > SP_CKPT_SEGMENT_NAME_BYTES_MAX || end - *at < name_bytes ||
            memchr(p + *at, '\0', name_bytes) != NULL)
            return -EBADMSG;
        memcpy(s.name, p + *at, name_bytes);
        s.name[name_bytes] = '\0';
        *at += name_bytes;
        if (s.written_by_id == 0 || s.written_by_id > m->checkpoint_id ||
            s.shard >= m->shard_count || sp_ckpt_manifest_find_segment(m, s.name) >= 0)
            return -EBADMSG;
        int err = sp_ckpt_manifest_add_segment(m, &s);
        if (err < 0)
            return err == -EINVAL ? -EBADMSG : err;
    }
    return 0;
}

int sp_ckpt_manifest_decode(struct sp_ckpt_manifest *m, const void *buf, size_t len)
{
    SP_ASSERT(m != NULL);
    SP_ASSERT(buf != NULL || len == 0);
    sp_ckpt_manifest_clear(m); /* a refused manifest leaves nothing behind */
    if (buf == NULL)
        return -EBADMSG;
    const uint8_t *p = buf;
    int err = decode_envelope(p, len);
    if (err < 0)
        return err;
    m->checkpoint_id = sp_le_load64(p + 24);
    m->time_ms = (int64_t)sp_le_load64(p + 32);
    m->shard_count = sp_le_load32(p + 40);
    m->key_group_first = sp_le_load32(p + 44);
    m->key_group_end = sp_le_load32(p + 48);
    uint32_t job_bytes = sp_le_load32(p + 52);
    uint32_t position_count = sp_le_load32(p + 56);
    uint32_t segment_count = sp_le_load32(p + 60);
    if (m->checkpoint_id == 0 || m->shard_count == 0 || m->shard_count > SP_CKPT_SHARDS_MAX ||
        m->key_group_first >= m->key_group_end || job_bytes > SP_CKPT_JOB_BYTES_MAX)
        return -EBADMSG;
    size_t end = len - MANIFEST_TRAILER_BYTES;
    size_t at = MANIFEST_HEADER_BYTES;
    if (end - at < job_bytes)
        return -EBADMSG;
    memcpy(m->job, p + at, job_bytes);
    m->job[job_bytes] = '\0';
    if (memchr(m->job, '\0', job_bytes) != NULL)
        return -EBADMSG;
    at += job_bytes;
    err = decode_positions(m, p, end, &at, position_count);
    if (err == 0)
        err = decode_segments(m, p, end, &at, segment_count);
    if (err == 0 && at != end)
        err = -EBADMSG; /* trailing bytes the counts do not account for */
    if (err < 0)
        sp_ckpt_manifest_clear(m);
    return err;
}

int sp_ckpt_manifest_key_id(const char *key, uint64_t *id)
{
    SP_ASSERT(key != NULL);
    SP_ASSERT(id != NULL);
    size_t prefix = sizeof(SP_CKPT_MANIFEST_PREFIX) - 1;
    size_t suffix = sizeof(SP_CKPT_MANIFEST_SUFFIX) - 1;
    size_t len = strlen(key);
    if (len != prefix + 16 + suffix || memcmp(key, SP_CKPT_MANIFEST_PREFIX, prefix) != 0 ||
        memcmp(key + prefix + 16, SP_CKPT_MANIFEST_SUFFIX, suffix) != 0)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = prefix; i < prefix + 16; i++) {
        char c = key[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -EINVAL;
        v = (v << 4) | d;
    }
    if (v == 0)
        return -EINVAL;
    *id = v;
    return 0;
}
