/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka record batches: the bytes of a Fetch response's `records` field, of a
 * Produce request's, and of a log segment.
 *
 * Decoding is zero-copy: a parsed batch and its records point into the
 * caller's buffer (or, for a compressed batch, into the buffer the caller
 * gave for its decompressed records), which must outlive them. Every decoder
 * here takes bytes from the outside: it never asserts on them, never reads
 * outside the buffer it was given, and rejects what it cannot vouch for with
 * -EBADMSG (in debug builds it logs the line that rejected it at debug level).
 *
 * Formats (all integers big-endian; varints are zigzag LEB128 as in
 * protobuf, at most 5 bytes for 32 bits and 10 for 64):
 *
 *  - RecordBatch v2 (magic 2), a 61-byte header then the records:
 *      baseOffset int64, batchLength int32 (bytes after this field),
 *      partitionLeaderEpoch int32, magic int8, crc uint32 (CRC-32C of
 *      everything from attributes to the end), attributes int16,
 *      lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64,
 *      producerId int64, producerEpoch int16, baseSequence int32,
 *      recordCount int32, records (compressed as a whole when the codec
 *      bits say so). A record: length varint, attributes int8,
 *      timestampDelta varlong, offsetDelta varint, keyLength varint (-1:
 *      null), key, valueLength varint, value, headerCount varint, headers
 *      (keyLength varint, key, valueLength varint (-1: null), value).
 *  - Legacy MessageSet (magic 0 and 1): offset int64, messageSize int32,
 *    crc uint32 (CRC-32 IEEE from magic to the end), magic int8,
 *    attributes int8, timestamp int64 (v1 only), key bytes, value bytes
 *    (int32 length, -1: null). A compressed message is a wrapper whose value
 *    is a whole message set; in v1 the inner offsets are relative, the
 *    wrapper carrying the offset of the last inner message.
 *
 * Both formats share the first 17 bytes' layout (offset, size, 4 bytes,
 * magic), so one walker (struct sp_record_set) reads a records field that
 * mixes them, and legacy messages come out of the same iterator as v2
 * records (struct sp_record_iter), with no headers.
 *
 * Compression codecs: gzip (zlib, gzip format), snappy (the xerial framing
 * the Java client writes, or raw snappy; written with xerial framing), lz4
 * (the LZ4 frame format) and zstd. Decompression writes into a buffer the
 * caller gives; its size is the limit on the decompressed bytes, beyond which
 * decoding stops with -EMSGSIZE, so a decompression bomb costs no memory.
 * The contexts of the libraries (struct sp_record_codec) are allocated once,
 * at start-up, and reused: the hot path does not allocate.
 *
 * Threads: nothing here is shared. A codec context, an iterator or a builder
 * belongs to the thread (shard) that uses it; different threads may decode
 * different batches at the same time.
 */
#ifndef SP_RECORD_H
#define SP_RECORD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"

/* ---- Format constants ---- */

#define SP_RECORD_BATCH_HEADER_BYTES 61 /* v2 header, up to the first record */
#define SP_RECORD_LOG_OVERHEAD_BYTES 12 /* offset + size, every format */
#define SP_RECORD_MAGIC_V0 0
#define SP_RECORD_MAGIC_V1 1
#define SP_RECORD_MAGIC_V2 2

/* RecordBatch v2 attributes. */
#define SP_RECORD_ATTR_CODEC_MASK 0x07
#define SP_RECORD_ATTR_LOG_APPEND_TIME 0x08
#define SP_RECORD_ATTR_TRANSACTIONAL 0x10
#define SP_RECORD_ATTR_CONTROL 0x20
#define SP_RECORD_ATTR_DELETE_HORIZON 0x40

/* Compression codecs, as the attribute bits 0-2 number them. */
enum sp_record_codec_id {
    SP_RECORD_CODEC_NONE = 0,
    SP_RECORD_CODEC_GZIP = 1,
    SP_RECORD_CODEC_SNAPPY = 2,
    SP_RECORD_CODEC_LZ4 = 3,
    SP_RECORD_CODEC_ZSTD = 4,
};
#define SP_RECORD_CODEC_COUNT 5

/* "none", "gzip", "snappy", "lz4", "zstd"; NULL for anything else. */
const char *sp_record_codec_name(int codec);

/* ---- Varints (zigzag LEB128) ---- */

#define SP_RECORD_VARINT_BYTES_MAX 5
#define SP_RECORD_VARLONG_BYTES_MAX 10

/*
 * Decodes a zigzag varint (32-bit) from the `len` bytes at `buf`. Returns the
 * bytes it took (1 to 5), or -EBADMSG when the bytes end before the varint
 * does or its value does not fit in 32 bits (a 5th byte above 0x0F).
 */
static inline int sp_record_varint_decode(const uint8_t *buf, size_t len, int32_t *out)
{
    uint32_t raw = 0;
    for (unsigned i = 0; i < SP_RECORD_VARINT_BYTES_MAX; i++) {
        if (i >= len)
            return -EBADMSG;
        uint8_t byte = buf[i];
        if (i == SP_RECORD_VARINT_BYTES_MAX - 1 && byte > 0x0F)
            return -EBADMSG;
        raw |= (uint32_t)(byte & 0x7F) << (7 * i);
        if (byte < 0x80) {
            *out = (int32_t)((raw >> 1) ^ (0u - (raw & 1)));
            return (int)i + 1;
        }
    }
    return -EBADMSG; /* not reached: the 5th byte is at most 0x0F */
}

/* As sp_record_varint_decode() for 64 bits: 1 to 10 bytes, the 10th at most 0x01. */
static inline int sp_record_varlong_decode(const uint8_t *buf, size_t len, int64_t *out)
{
    uint64_t raw = 0;
    for (unsigned i = 0; i < SP_RECORD_VARLONG_BYTES_MAX; i++) {
        if (i >= len)
            return -EBADMSG;
        uint8_t byte = buf[i];
        if (i == SP_RECORD_VARLONG_BYTES_MAX - 1 && byte > 0x01)
            return -EBADMSG;
        raw |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (byte < 0x80) {
            *out = (int64_t)((raw >> 1) ^ (0ull - (raw & 1)));
            return (int)i + 1;
        }
    }
    return -EBADMSG;
}

/* Bytes sp_record_varint_encode() writes for `v` (1 to 5). */
static inline unsigned sp_record_varint_size(int32_t v)
{
    uint32_t raw = ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
    unsigned n = 1;
    while (raw >= 0x80) {
        raw >>= 7;
        n++;
    }
    return n;
}

/* Bytes sp_record_varlong_encode() writes for `v` (1 to 10). */
static inline unsigned sp_record_varlong_size(int64_t v)
{
    uint64_t raw = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned n = 1;
    while (raw >= 0x80) {
        raw >>= 7;
        n++;
    }
    return n;
}

/* Writes `v` as a zigzag varint at `buf` (room for 5 bytes); returns the bytes written. */
static inline unsigned sp_record_varint_encode(uint8_t *buf, int32_t v)
{
    uint32_t raw = ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
    unsigned n = 0;
    while (raw >= 0x80) {
        buf[n++] = (uint8_t)(raw | 0x80);
        raw >>= 7;
    }
    buf[n++] = (uint8_t)raw;
    return n;
}

/* Writes `v` as a zigzag varlong at `buf` (room for 10 bytes); returns the bytes written. */
static inline unsigned sp_record_varlong_encode(uint8_t *buf, int64_t v)
{
    uint64_t raw = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned n = 0;
    while (raw >= 0x80) {
        buf[n++] = (uint8_t)(raw | 0x80);
        raw >>= 7;
    }
    buf[n++] = (uint8_t)raw;
    return n;
}

/* ---- Codec contexts ---- */

struct z_stream_s;
struct ZSTD_DCtx_s;
struct ZSTD_CCtx_s;
struct LZ4F_dctx_s;
struct LZ4F_cctx_s;

/* What a codec context is set up for (sp_record_codec_init's flags). */
#define SP_RECORD_CODEC_DECOMPRESS 0x1u
#define SP_RECORD_CODEC_COMPRESS 0x2u

/*
 * The compression libraries' contexts, allocated at init and reused by every
 * call, so that decoding allocates nothing after the first batch of each
 * codec (zlib allocates its 32 KiB window, liblz4 its block buffers, at
 * their first use). About 250 KiB for decompression (zlib's window, zstd's
 * tables, lz4's 64 KiB blocks; a frame declaring 4 MiB blocks grows lz4's
 * buffers to 8 MiB once) and a few MiB more with compression (zstd's and
 * deflate's match finders; snappy allocates its own per call).
 */
struct sp_record_codec {
    unsigned flags;
    int gzip_level;
    struct z_stream_s *inflate;
    struct z_stream_s *deflate;
    struct ZSTD_DCtx_s *zstd_d;
    struct ZSTD_CCtx_s *zstd_c;
    struct LZ4F_dctx_s *lz4_d;
    struct LZ4F_cctx_s *lz4_c;
};

/*
 * Allocates the contexts that `flags` asks for (SP_RECORD_CODEC_DECOMPRESS,
 * SP_RECORD_CODEC_COMPRESS or both). 0, -EINVAL (no flag) or -ENOMEM.
 */
SP_MUST_CHECK int sp_record_codec_init(struct sp_record_codec *codec, unsigned flags);
void sp_record_codec_deinit(struct sp_record_codec *codec);

/*
 * Decompresses `len` bytes at `src` compressed with `id` into `dst`, writing
 * at most `dst_bytes_max` bytes; sets *out_len. Gzip may hold several
 * members, lz4 and zstd several frames; snappy may be xerial-framed or raw.
 * Returns 0; -EMSGSIZE when the output would exceed dst_bytes_max; -EBADMSG
 * when the input is not valid (truncated, corrupt, trailing bytes);
 * -EINVAL for SP_RECORD_CODEC_NONE, an unknown id, or a context without
 * SP_RECORD_CODEC_DECOMPRESS; -ENOMEM when a library fails to allocate.
 */
SP_MUST_CHECK int sp_record_decompress(struct sp_record_codec *codec, enum sp_record_codec_id id,
                                       const uint8_t *src, size_t len, uint8_t *dst,
                                       size_t dst_bytes_max, size_t *out_len);

/*
 * Compresses `len` bytes at `src` into `dst` (at most `dst_bytes`), as Kafka
 * clients expect: gzip format; xerial-framed snappy in 32 KiB blocks; lz4
 * frames of independent 64 KiB blocks with no content size (which the Java
 * client rejects); zstd. `level` 0 is the codec's default. Sets *out_len.
 * Returns 0; -ENOBUFS when dst is too small (sp_record_compress_bound() bytes
 * always suffice); -EINVAL for NONE, an unknown id, or a context without
 * SP_RECORD_CODEC_COMPRESS; -ENOMEM; -EIO when a library fails otherwise.
 */
SP_MUST_CHECK int sp_record_compress(struct sp_record_codec *codec, enum sp_record_codec_id id,
                                     int level, const uint8_t *src, size_t len, uint8_t *dst,
                                     size_t dst_bytes, size_t *out_len);

/* The most bytes sp_record_compress() can write for `len` input bytes. */
size_t sp_record_compress_bound(enum sp_record_codec_id id, size_t len);

/* ---- Batches ---- */

/*
 * One RecordBatch (magic 2), or one legacy message (magic 0 or 1: a plain
 * message, or a compressed wrapper of a message set). For legacy messages
 * the v2-only fields hold Kafka's "none" values (producer id -1 and so on),
 * attributes the message's 8 bits, base and max timestamp the message's
 * timestamp (-1 in v0), record_count 1 for a plain message and -1 (not
 * known before decompressing) for a wrapper, and records the bytes the
 * iterator reads: the whole message for a plain one (it iterates as a
 * message set of one), the compressed value for a wrapper.
 */
struct sp_record_batch {
    int64_t base_offset;
    int32_t batch_length; /* bytes after the length field */
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t record_count;
    const uint8_t *records; /* as on the wire: compressed when the codec is not NONE */
    size_t records_len;
    size_t size; /* bytes of the whole batch: 12 + batch_length */
};

static inline enum sp_record_codec_id sp_record_batch_codec(const struct sp_record_batch *batch)
{
    return (enum sp_record_codec_id)(batch->attributes & SP_RECORD_ATTR_CODEC_MASK);
}

/* Timestamps are the broker's append time (maxTimestamp), not the producer's. */
static inline bool sp_record_batch_log_append_time(const struct sp_record_batch *batch)
{
    return batch->magic > 0 && (batch->attributes & SP_RECORD_ATTR_LOG_APPEND_TIME) != 0;
}

static inline bool sp_record_batch_is_transactional(const struct sp_record_batch *batch)
{
    return batch->magic >= 2 && (batch->attributes & SP_RECORD_ATTR_TRANSACTIONAL) != 0;
}

static inline bool sp_record_batch_is_control(const struct sp_record_batch *batch)
{
    return batch->magic >= 2 && (batch->attributes & SP_RECORD_ATTR_CONTROL) != 0;
}

/* baseTimestamp is the delete horizon the log cleaner set (KIP-534). */
static inline bool sp_record_batch_has_delete_horizon(const struct sp_record_batch *batch)
{
    return batch->magic >= 2 && (batch->attributes & SP_RECORD_ATTR_DELETE_HORIZON) != 0;
}

/* Offset of the batch's last record (v2); a legacy message's own offset. */
static inline int64_t sp_record_batch_last_offset(const struct sp_record_batch *batch)
{
    if (batch->magic < 2)
        return batch->base_offset;
    return (int64_t)((uint64_t)batch->base_offset + (uint64_t)(int64_t)batch->last_offset_delta);
}

/*
 * Parses the batch (or legacy message) at the start of `buf` and checks its
 * checksum: CRC-32C for v2, CRC-32 for v0/v1. Fills *out; the records are
 * not looked at (the iterator checks them). Returns 0; -EAGAIN when `len`
 * holds only the start of the batch (out->size is then the whole batch's
 * bytes when the first 12 are there, else 0); -EBADMSG when the bytes are
 * not a valid batch (unknown magic, sizes, codec bits, checksum).
 */
SP_MUST_CHECK int sp_record_batch_parse(const uint8_t *buf, size_t len,
                                        struct sp_record_batch *out);

/*
 * Decompresses a compressed batch's records (v2) or wrapper's message set
 * (legacy) into `dst`, at most `dst_bytes_max` bytes; sets *out_len. Legacy
 * v0 lz4 wrappers, whose frame header checksum Kafka 0.8-0.9 computed
 * wrongly, are accepted as Kafka does. Errors as sp_record_decompress(), and
 * -EINVAL for an uncompressed batch.
 */
SP_MUST_CHECK int sp_record_batch_decompress(const struct sp_record_batch *batch,
                                             struct sp_record_codec *codec, uint8_t *dst,
                                             size_t dst_bytes_max, size_t *out_len);

/* ---- A records field: batches back to back ---- */

/*
 * Walks the batches of a records field (a Fetch response's, a log
 * segment's), v2 batches and legacy messages mixed. The broker may cut the
 * last batch short at the fetch's byte limit: that is not an error, the walk
 * ends there and partial_bytes says how many bytes of it were there.
 */
struct sp_record_set {
    const uint8_t *pos;
    const uint8_t *end;
    size_t partial_bytes;       /* after the end: bytes of a cut trailing batch, or 0 */
    size_t partial_batch_bytes; /* its whole size when known (12 bytes seen), else 0 */
    bool failed;
};

void sp_record_set_init(struct sp_record_set *set, const uint8_t *buf, size_t len);

/*
 * The next batch: 1 and *out filled; 0 at the end (a cut trailing batch
 * included: see partial_bytes); -EBADMSG when a whole batch is invalid (the
 * walk cannot go on: the rest of the field is not trusted, and every later
 * call returns -EBADMSG too).
 */
SP_MUST_CHECK int sp_record_set_next(struct sp_record_set *set, struct sp_record_batch *out);

/* ---- Records ---- */

/*
 * One record. Pointers are into the batch's (or decompressed) bytes; a null
 * key or value has a NULL pointer and length -1, an empty one a non-NULL
 * pointer and length 0. headers/headers_len is the wire span of the headers,
 * read with sp_record_header_iter (legacy messages have none).
 */
struct sp_record {
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key;
    const uint8_t *value;
    const uint8_t *headers;
    int32_t key_len;
    int32_t value_len;
    uint32_t headers_len;
    uint32_t header_count;
    int8_t attributes;
};

struct sp_record_header {
    const uint8_t *key; /* never null */
    const uint8_t *value;
    int32_t key_len;
    int32_t value_len; /* -1: null, value NULL */
};

/* Iterates the records of one batch (or the messages of one legacy message/wrapper). */
struct sp_record_iter {
    const uint8_t *pos;
    const uint8_t *end;
    int64_t base_offset; /* v2: batch base offset; legacy: added to inner offsets */
    int64_t base_timestamp;
    int64_t log_append_time_ms; /* >= 0: every record's timestamp */
    int32_t remaining;          /* v2: records left to read per recordCount */
    int8_t magic;
    bool failed;
};

/*
 * Starts iterating `batch` over its records' bytes `records`/`len`: the
 * batch's own records span for an uncompressed batch, or the decompressed
 * bytes of a compressed one. For a legacy wrapper this walks the inner
 * message set once to find v1's relative offsets' base. 0, or -EBADMSG
 * (legacy wrapper whose message set is malformed).
 */
SP_MUST_CHECK int sp_record_iter_init(struct sp_record_iter *it,
                                      const struct sp_record_batch *batch, const uint8_t *records,
                                      size_t len);

/*
 * sp_record_iter_init() for any batch: an uncompressed one in place
 * (`codec` and `dst` unused, may be NULL), a compressed one after
 * decompressing it into `dst` (at most `dst_bytes_max` bytes). Errors as
 * sp_record_batch_decompress() and sp_record_iter_init(); -EINVAL for a
 * compressed batch without a codec context.
 */
SP_MUST_CHECK int sp_record_iter_open(struct sp_record_iter *it,
                                      const struct sp_record_batch *batch,
                                      struct sp_record_codec *codec, uint8_t *dst,
                                      size_t dst_bytes_max);

/*
 * The next record: 1 and *out filled (its headers already checked); 0 at
 * the end; -EBADMSG for a malformed record, fewer records than the batch
 * declared, or bytes left over after the last one. After -EBADMSG the
 * iterator stays failed.
 */
SP_MUST_CHECK int sp_record_iter_next(struct sp_record_iter *it, struct sp_record *out);

struct sp_record_header_iter {
    const uint8_t *pos;
    const uint8_t *end;
    uint32_t remaining;
};

void sp_record_header_iter_init(struct sp_record_header_iter *it, const struct sp_record *record);

/* The next header: 1 and *out filled, 0 at the end, -EBADMSG. */
SP_MUST_CHECK int sp_record_header_next(struct sp_record_header_iter *it,
                                        struct sp_record_header *out);

/* ---- Control records (transaction markers) ---- */

#define SP_RECORD_CONTROL_ABORT 0
#define SP_RECORD_CONTROL_COMMIT 1

/*
 * A control record of a control batch: its key (version, type) and, for
 * abort and commit markers, its value (EndTxnMarker: version, coordinator
 * epoch). coordinator_epoch is -1 for other types (KRaft's leader change
 * and snapshot records), whose values are left to the caller.
 */
struct sp_record_control {
    int16_t version;
    int16_t type;
    int16_t marker_version;
    int32_t coordinator_epoch;
};

/*
 * Decodes the control record `record` (a record of a batch that
 * sp_record_batch_is_control() says is one). 0 or -EBADMSG (key shorter
 * than 4 bytes or null, negative version, marker value missing or short).
 */
SP_MUST_CHECK int sp_record_control_parse(const struct sp_record *record,
                                          struct sp_record_control *out);

/* ---- Encoding ---- */

/*
 * A record to append. Its headers use struct sp_record_header: key_len >= 0,
 * value NULL with value_len -1 for a null value.
 */
struct sp_record_input {
    int32_t offset_delta; /* from the batch's base offset; increasing */
    int64_t timestamp;    /* ms since the epoch */
    const void *key;      /* NULL with key_len -1: null key */
    const void *value;    /* NULL with value_len -1: null value */
    int32_t key_len;
    int32_t value_len;
    const struct sp_record_header *headers;
    uint32_t header_count;
};

struct sp_record_builder_config {
    int64_t base_offset;
    int32_t partition_leader_epoch; /* -1 when unknown */
    int64_t producer_id;            /* -1: not idempotent */
    int16_t producer_epoch;         /* -1 */
    int32_t base_sequence;          /* -1 */
    int64_t log_append_time_ms;     /* >= 0: LogAppendTime batch with this time; -1: CreateTime */
    enum sp_record_codec_id codec;
    int compression_level; /* 0: the codec's default */
    bool transactional;
    bool control;
    /*
     * Compressed batches: the uncompressed records are built here (the
     * batch buffer then only receives the compressed bytes). Unused, may be
     * NULL, for SP_RECORD_CODEC_NONE.
     */
    uint8_t *scratch;
    size_t scratch_bytes;
};

#define SP_RECORD_BUILDER_CONFIG_INIT                                                              \
    {                                                                                              \
        .base_offset = 0, .partition_leader_epoch = -1, .producer_id = -1, .producer_epoch = -1,   \
        .base_sequence = -1, .log_append_time_ms = -1, .codec = SP_RECORD_CODEC_NONE,              \
    }

/*
 * Builds one v2 batch in a caller buffer. Records are appended one by one;
 * finish() compresses them if asked, writes the header and the CRC.
 */
struct sp_record_builder {
    struct sp_record_builder_config config;
    uint8_t *buf;
    size_t buf_bytes;
    uint8_t *records; /* buf + 61, or config.scratch */
    size_t records_bytes_max;
    size_t records_len;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int32_t last_offset_delta;
    int32_t record_count;
    bool finished;
};

/*
 * Starts a batch in `buf` (`buf_bytes`, borrowed until finish). 0; -EINVAL
 * for a bad config (unknown codec, compressed without scratch); -ENOBUFS
 * when buf cannot hold even the header.
 */
SP_MUST_CHECK int sp_record_builder_init(struct sp_record_builder *builder, uint8_t *buf,
                                         size_t buf_bytes,
                                         const struct sp_record_builder_config *config);

/*
 * Appends one record. The first record's timestamp becomes the batch's base
 * timestamp. 0; -ENOBUFS when it does not fit (the builder is unchanged:
 * finish this batch and start another); -EINVAL for an offset delta not
 * above the last one's, a length below -1, a length with a NULL pointer, a
 * null header key, or a record over 2 GiB.
 */
SP_MUST_CHECK int sp_record_builder_append(struct sp_record_builder *builder,
                                           const struct sp_record_input *record);

/*
 * Compresses the records if the codec says so, writes the header and the
 * CRC; *batch_bytes is the batch's size at the start of buf. `codec` is a
 * context with SP_RECORD_CODEC_COMPRESS (unused, may be NULL, for NONE).
 * 0; -ENODATA when no record was appended; -ENOBUFS when the compressed
 * records do not fit in buf; errors of sp_record_compress().
 */
SP_MUST_CHECK int sp_record_builder_finish(struct sp_record_builder *builder,
                                           struct sp_record_codec *codec, size_t *batch_bytes);

/* A transaction marker to encode as a control batch of one record. */
struct sp_record_marker {
    int64_t offset;
    int64_t timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t partition_leader_epoch;
    int16_t type; /* SP_RECORD_CONTROL_ABORT or _COMMIT */
    int32_t coordinator_epoch;
};

/*
 * Encodes `marker` as a transactional control batch at `buf`; sets
 * *batch_bytes. 0, -EINVAL (type not abort or commit), -ENOBUFS.
 */
SP_MUST_CHECK int sp_record_marker_encode(uint8_t *buf, size_t buf_bytes,
                                          const struct sp_record_marker *marker,
                                          size_t *batch_bytes);

#endif /* SP_RECORD_H */
