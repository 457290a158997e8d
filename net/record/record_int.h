/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private helpers of the record module: big-endian loads and stores, the
 * rejection macro every decoder returns through, and the few functions the
 * module's files share. Not installed, not for other modules.
 */
#ifndef SP_RECORD_INT_H
#define SP_RECORD_INT_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "sp_record.h"

/*
 * Rejects bad input: -EBADMSG, and in debug builds a debug-level log line
 * naming the file and line that rejected it, so that a corrupt batch from a
 * broker can be traced to the rule it broke.
 */
int sp_record_reject(const char *file, int line) SP_COLD;
#ifdef NDEBUG
#define SP_RECORD_BAD() (-EBADMSG)
#else
#define SP_RECORD_BAD() sp_record_reject(__FILE__, __LINE__)
#endif

static inline uint16_t sp_record_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t sp_record_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return __builtin_bswap32(v);
}

static inline uint64_t sp_record_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return __builtin_bswap64(v);
}

static inline void sp_record_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void sp_record_put32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void sp_record_put64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, sizeof(v));
}

/* p + len without the undefined NULL + 0 of an empty span. */
static inline const uint8_t *sp_record_span_end(const uint8_t *p, size_t len)
{
    return len != 0 ? p + len : p;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the big-endian helpers swap: a big-endian port drops the swaps");

/* Offsets of the v2 header's fields. */
#define SP_RECORD_OFF_LENGTH 8
#define SP_RECORD_OFF_EPOCH 12
#define SP_RECORD_OFF_MAGIC 16
#define SP_RECORD_OFF_CRC 17
#define SP_RECORD_OFF_ATTRIBUTES 21
#define SP_RECORD_OFF_LAST_DELTA 23
#define SP_RECORD_OFF_BASE_TS 27
#define SP_RECORD_OFF_MAX_TS 35
#define SP_RECORD_OFF_PRODUCER_ID 43
#define SP_RECORD_OFF_PRODUCER_EPOCH 51
#define SP_RECORD_OFF_BASE_SEQUENCE 53
#define SP_RECORD_OFF_COUNT 57

/* Smallest message sizes (the size field's value) of legacy v0 and v1. */
#define SP_RECORD_LEGACY_V0_MIN 14
#define SP_RECORD_LEGACY_V1_MIN 22

/*
 * sp_record_decompress() for a batch of magic `magic`: a v0 lz4 wrapper's
 * frame header checksum is recomputed before liblz4 reads it (Kafka before
 * 0.10 hashed the frame's magic number into it).
 */
int sp_record_decompress_magic(struct sp_record_codec *codec, enum sp_record_codec_id id, int magic,
                               const uint8_t *src, size_t len, uint8_t *dst, size_t dst_bytes_max,
                               size_t *out_len);

/* xxHash32 (as the LZ4 frame format uses it for its header checksum). */
uint32_t sp_record_xxh32(const uint8_t *p, size_t len, uint32_t seed);

/* Legacy messages (legacy.c). */
int sp_record_legacy_parse(const uint8_t *buf, size_t len, struct sp_record_batch *out);
int sp_record_legacy_iter_init(struct sp_record_iter *it, const struct sp_record_batch *batch,
                               const uint8_t *records, size_t len);
int sp_record_legacy_next(struct sp_record_iter *it, struct sp_record *out);

#endif /* SP_RECORD_INT_H */
