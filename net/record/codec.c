/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compression codecs of record batches (see sp_record.h): gzip through zlib,
 * snappy (xerial-framed or raw), lz4 frames through lz4frame, zstd.
 *
 * Decompression never writes more than the caller's limit and never
 * allocates past its context: the output buffer's size is the limit, and a
 * codec that still has output when the buffer is full is caught by asking
 * it for one byte more into a probe byte; if it produces one, the batch
 * decompresses to more than the limit and the call fails with -EMSGSIZE
 * (a gzip bomb expands 1000:1; this is what keeps a 1 MB batch from asking
 * for a gigabyte). Snappy and zstd (single pass) know their output size
 * before they write it.
 *
 * The contexts are allocated once by sp_record_codec_init() and reset per
 * call: zlib keeps its window, zstd its tables, lz4 its block buffers.
 * Snappy's C API allocates a small hash table per compress call (encoding
 * only).
 */
#include <errno.h>
#include <limits.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "record_int.h"
#include "sp_record.h"

/* The xerial snappy-java stream header: magic, version 1, compatible version 1. */
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HEADER_BYTES 16
/* snappy-java's default block: what the Java client writes. */
#define XERIAL_BLOCK_BYTES (32u * 1024u)
/* lz4 input per compressUpdate call: one block of the 64 KiB block size. */
#define LZ4_CHUNK_BYTES (64u * 1024u)

/* ---- Contexts ---- */

static int codec_init_decompress(struct sp_record_codec *codec)
{
    codec->inflate = calloc(1, sizeof(z_stream));
    if (codec->inflate == NULL)
        return -ENOMEM;
    if (inflateInit2(codec->inflate, 16 + MAX_WBITS) != Z_OK) {
        free(codec->inflate);
        codec->inflate = NULL;
        return -ENOMEM;
    }
    codec->zstd_d = ZSTD_createDCtx();
    if (codec->zstd_d == NULL)
        return -ENOMEM;
    LZ4F_dctx *lz4 = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&lz4, LZ4F_VERSION)))
        return -ENOMEM;
    codec->lz4_d = lz4;
    return 0;
}

static int codec_init_compress(struct sp_record_codec *codec)
{
    codec->deflate = calloc(1, sizeof(z_stream));
    if (codec->deflate == NULL)
        return -ENOMEM;
    if (deflateInit2(codec->deflate, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(codec->deflate);
        codec->deflate = NULL;
        return -ENOMEM;
    }
    codec->gzip_level = Z_DEFAULT_COMPRESSION;
    codec->zstd_c = ZSTD_createCCtx();
    if (codec->zstd_c == NULL)
        return -ENOMEM;
    LZ4F_cctx *lz4 = NULL;
    if (LZ4F_isError(LZ4F_createCompressionContext(&lz4, LZ4F_VERSION)))
        return -ENOMEM;
    codec->lz4_c = lz4;
    return 0;
}

int sp_record_codec_init(struct sp_record_codec *codec, unsigned flags)
{
    SP_ASSERT(codec != NULL);
    memset(codec, 0, sizeof(*codec));
    const unsigned known = SP_RECORD_CODEC_DECOMPRESS | SP_RECORD_CODEC_COMPRESS;
    if (flags == 0 || (flags & ~known) != 0)
        return -EINVAL;
    codec->flags = flags;
    int rc = 0;
    if (flags & SP_RECORD_CODEC_DECOMPRESS)
        rc = codec_init_decompress(codec);
    if (rc == 0 && (flags & SP_RECORD_CODEC_COMPRESS))
        rc = codec_init_compress(codec);
    if (rc < 0)
        sp_record_codec_deinit(codec);
    return rc;
}

void sp_record_codec_deinit(struct sp_record_codec *codec)
{
    SP_ASSERT(codec != NULL);
    if (codec->inflate != NULL) {
        inflateEnd(codec->inflate);
        free(codec->inflate);
    }
    if (codec->deflate != NULL) {
        deflateEnd(codec->deflate);
        free(codec->deflate);
    }
    ZSTD_freeDCtx(codec->zstd_d);
    ZSTD_freeCCtx(codec->zstd_c);
    if (codec->lz4_d != NULL)
        LZ4F_freeDecompressionContext(codec->lz4_d);
    if (codec->lz4_c != NULL)
        LZ4F_freeCompressionContext(codec->lz4_c);
    memset(codec, 0, sizeof(*codec));
}

/* ---- xxHash32, for the lz4 frame header checksum of legacy v0 ---- */

#define XXH_PRIME1 2654435761u
#define XXH_PRIME2 2246822519u
#define XXH_PRIME3 3266489917u
#define XXH_PRIME4 668265263u
#define XXH_PRIME5 374761393u

static inline uint32_t xxh_rotl(uint32_t x, unsigned r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t xxh_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v; /* little-endian host: see record_int.h */
}

static inline uint32_t xxh_round(uint32_t acc, uint32_t input)
{
    return xxh_rotl(acc + input * XXH_PRIME2, 13) * XXH_PRIME1;
}

uint32_t sp_record_xxh32(const uint8_t *p, size_t len, uint32_t seed)
{
    const uint8_t *end = p + len;
    uint32_t h;
    if (len >= 16) {
        uint32_t v1 = seed + XXH_PRIME1 + XXH_PRIME2, v2 = seed + XXH_PRIME2;
        uint32_t v3 = seed, v4 = seed - XXH_PRIME1;
        for (; end - p >= 16; p += 16) {
            v1 = xxh_round(v1, xxh_le32(p));
            v2 = xxh_round(v2, xxh_le32(p + 4));
            v3 = xxh_round(v3, xxh_le32(p + 8));
            v4 = xxh_round(v4, xxh_le32(p + 12));
        }
        h = xxh_rotl(v1, 1) + xxh_rotl(v2, 7) + xxh_rotl(v3, 12) + xxh_rotl(v4, 18);
    } else {
        h = seed + XXH_PRIME5;
    }
    h += (uint32_t)len;
    for (; end - p >= 4; p += 4)
        h = xxh_rotl(h + xxh_le32(p) * XXH_PRIME3, 17) * XXH_PRIME4;
    for (; p < end; p++)
        h = xxh_rotl(h + *p * XXH_PRIME5, 11) * XXH_PRIME1;
    h ^= h >> 15;
    h *= XXH_PRIME2;
    h ^= h >> 13;
    h *= XXH_PRIME3;
    h ^= h >> 16;
    return h;
}

/* ---- Decompression ---- */

static int gzip_decompress(z_stream *s, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                           size_t *out_len)
{
    if (len > UINT_MAX)
        return SP_RECORD_BAD();
    if (inflateReset(s) != Z_OK)
        return -EIO;
    s->next_in = (Bytef *)(uintptr_t)src;
    s->avail_in = (uInt)len;
    size_t produced = 0;
    uint8_t probe;
    /* Ends: every Z_OK round consumes input or fills output, both bounded. */
    for (;;) {
        bool probing = produced == cap;
        size_t room = probing ? 1 : SP_MIN(cap - produced, (size_t)UINT_MAX);
        s->next_out = probing ? &probe : dst + produced;
        s->avail_out = (uInt)room;
        int ret = inflate(s, Z_NO_FLUSH);
        size_t got = room - s->avail_out;
        if (probing && got != 0)
            return -EMSGSIZE;
        produced += got;
        if (ret == Z_STREAM_END) {
            if (s->avail_in == 0)
                break;
            if (inflateReset(s) != Z_OK) /* another gzip member follows */
                return -EIO;
            continue;
        }
        if (ret == Z_OK)
            continue;
        if (ret == Z_MEM_ERROR)
            return -ENOMEM;
        return SP_RECORD_BAD(); /* Z_BUF_ERROR: cut short; Z_DATA_ERROR, Z_NEED_DICT */
    }
    *out_len = produced;
    return 0;
}

static int snappy_raw_decompress(const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                                 size_t *out_len)
{
    size_t n = 0;
    if (snappy_uncompressed_length((const char *)src, len, &n) != SNAPPY_OK)
        return SP_RECORD_BAD();
    if (n > cap)
        return -EMSGSIZE;
    if (snappy_uncompress((const char *)src, len, (char *)dst, &n) != SNAPPY_OK)
        return SP_RECORD_BAD();
    *out_len = n;
    return 0;
}

/* xerial framing: header, then [int32 length, raw snappy block]...; headers may repeat. */
static int snappy_decompress(const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                             size_t *out_len)
{
    if (len < XERIAL_HEADER_BYTES || memcmp(src, xerial_magic, sizeof(xerial_magic)) != 0)
        return snappy_raw_decompress(src, len, dst, cap, out_len);
    const uint8_t *p = src, *end = src + len;
    size_t produced = 0;
    while (p != end) {
        if (end - p >= (ptrdiff_t)sizeof(xerial_magic) &&
            memcmp(p, xerial_magic, sizeof(xerial_magic)) == 0) {
            if (end - p < XERIAL_HEADER_BYTES)
                return SP_RECORD_BAD();
            p += XERIAL_HEADER_BYTES; /* a concatenated stream */
            continue;
        }
        if (end - p < 4)
            return SP_RECORD_BAD();
        uint32_t block = sp_record_be32(p);
        p += 4;
        if (block > (size_t)(end - p))
            return SP_RECORD_BAD();
        size_t n = 0;
        int rc = snappy_raw_decompress(p, block, dst + produced, cap - produced, &n);
        if (rc < 0)
            return rc;
        produced += n;
        p += block;
    }
    *out_len = produced;
    return 0;
}

/*
 * Kafka before 0.10 (message format v0) computed the lz4 frame header
 * checksum over the frame's magic number too. Copies the header into
 * `header` with the checksum liblz4 expects; returns its size or -EBADMSG.
 */
static int lz4_fix_v0_header(const uint8_t *src, size_t len, uint8_t *header)
{
    if (len < 7)
        return SP_RECORD_BAD();
    uint8_t flg = src[4];
    size_t header_len = 7 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0);
    if (len < header_len)
        return SP_RECORD_BAD();
    SP_ASSERT(header_len <= LZ4F_HEADER_SIZE_MAX);
    memcpy(header, src, header_len);
    header[header_len - 1] = (uint8_t)(sp_record_xxh32(header + 4, header_len - 5, 0) >> 8);
    return (int)header_len;
}

static int lz4_decompress(LZ4F_dctx *d, const uint8_t *src, size_t len, bool v0, uint8_t *dst,
                          size_t cap, size_t *out_len)
{
    uint8_t header[LZ4F_HEADER_SIZE_MAX];
    const uint8_t *seg[2] = {src, NULL};
    size_t seg_len[2] = {len, 0};
    unsigned segs = 1;
    if (v0) {
        int n = lz4_fix_v0_header(src, len, header);
        if (n < 0)
            return n;
        seg[0] = header;
        seg_len[0] = (size_t)n;
        seg[1] = src + n;
        seg_len[1] = len - (size_t)n;
        segs = 2;
    }
    LZ4F_resetDecompressionContext(d);
    unsigned s = 0;
    const uint8_t *in = seg[0];
    size_t in_left = seg_len[0];
    size_t produced = 0;
    uint8_t probe;
    for (;;) {
        if (in_left == 0 && s + 1 < segs) {
            s++;
            in = seg[s];
            in_left = seg_len[s];
        }
        bool probing = produced == cap;
        size_t out_sz = probing ? 1 : cap - produced;
        size_t in_sz = in_left;
        size_t hint =
            LZ4F_decompress(d, probing ? &probe : dst + produced, &out_sz, in, &in_sz, NULL);
        if (LZ4F_isError(hint))
            return SP_RECORD_BAD();
        if (probing && out_sz != 0)
            return -EMSGSIZE;
        produced += out_sz;
        in += in_sz;
        in_left -= in_sz;
        bool input_done = in_left == 0 && s + 1 >= segs;
        if (hint == 0 && input_done)
            break; /* the last frame is complete */
        if (in_sz == 0 && out_sz == 0)
            return SP_RECORD_BAD(); /* needs input it does not have: cut short */
    }
    *out_len = produced;
    return 0;
}

static int zstd_decompress(ZSTD_DCtx *d, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                           size_t *out_len)
{
    if (len == 0)
        return SP_RECORD_BAD();
    /* Single pass: straight into dst, no window buffer, stops at cap. */
    size_t n = ZSTD_decompressDCtx(d, dst, cap, src, len);
    if (ZSTD_isError(n)) {
        ZSTD_ErrorCode code = ZSTD_getErrorCode(n);
        if (code == ZSTD_error_dstSize_tooSmall)
            return -EMSGSIZE;
        if (code == ZSTD_error_memory_allocation)
            return -ENOMEM;
        return SP_RECORD_BAD();
    }
    *out_len = n;
    return 0;
}

int sp_record_decompress_magic(struct sp_record_codec *codec, enum sp_record_codec_id id, int magic,
                               const uint8_t *src, size_t len, uint8_t *dst, size_t dst_bytes_max,
                               size_t *out_len)
{
    SP_ASSERT(codec != NULL);
    SP_ASSERT(src != NULL || len == 0);
    SP_ASSERT(dst != NULL || dst_bytes_max == 0);
    SP_ASSERT(out_len != NULL);
    if ((codec->flags & SP_RECORD_CODEC_DECOMPRESS) == 0)
        return -EINVAL;
    uint8_t empty[1];
    if (dst == NULL)
        dst = empty; /* never written: the limit is 0 */
    static const uint8_t no_input[1];
    if (src == NULL)
        src = no_input;
    *out_len = 0;
    switch (id) {
    case SP_RECORD_CODEC_GZIP:
        return gzip_decompress(codec->inflate, src, len, dst, dst_bytes_max, out_len);
    case SP_RECORD_CODEC_SNAPPY:
        return snappy_decompress(src, len, dst, dst_bytes_max, out_len);
    case SP_RECORD_CODEC_LZ4:
        return lz4_decompress(codec->lz4_d, src, len, magic == SP_RECORD_MAGIC_V0, dst,
                              dst_bytes_max, out_len);
    case SP_RECORD_CODEC_ZSTD:
        return zstd_decompress(codec->zstd_d, src, len, dst, dst_bytes_max, out_len);
    case SP_RECORD_CODEC_NONE:
    default:
        return -EINVAL;
    }
}

int sp_record_decompress(struct sp_record_codec *codec, enum sp_record_codec_id id,
                         const uint8_t *src, size_t len, uint8_t *dst, size_t dst_bytes_max,
                         size_t *out_len)
{
    return sp_record_decompress_magic(codec, id, SP_RECORD_MAGIC_V2, src, len, dst, dst_bytes_max,
                                      out_len);
}

/* ---- Compression ---- */

static int gzip_compress(struct sp_record_codec *codec, int level, const uint8_t *src, size_t len,
                         uint8_t *dst, size_t cap, size_t *out_len)
{
    z_stream *s = codec->deflate;
    int want = level == 0 ? Z_DEFAULT_COMPRESSION : level;
    if (want < Z_DEFAULT_COMPRESSION || want > Z_BEST_COMPRESSION || len > UINT_MAX)
        return -EINVAL;
    if (deflateReset(s) != Z_OK)
        return -EIO;
    if (want != codec->gzip_level) {
        if (deflateParams(s, want, Z_DEFAULT_STRATEGY) != Z_OK)
            return -EIO;
        codec->gzip_level = want;
    }
    s->next_in = (Bytef *)(uintptr_t)src;
    s->avail_in = (uInt)len;
    size_t room = SP_MIN(cap, (size_t)UINT_MAX);
    s->next_out = dst;
    s->avail_out = (uInt)room;
    int ret = deflate(s, Z_FINISH);
    if (ret == Z_OK || ret == Z_BUF_ERROR)
        return -ENOBUFS;
    if (ret != Z_STREAM_END)
        return -EIO;
    *out_len = room - s->avail_out;
    return 0;
}

static int snappy_compress_xerial(const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                                  size_t *out_len)
{
    if (cap < XERIAL_HEADER_BYTES)
        return -ENOBUFS;
    memcpy(dst, xerial_magic, sizeof(xerial_magic));
    sp_record_put32(dst + 8, 1);  /* version */
    sp_record_put32(dst + 12, 1); /* compatible version */
    size_t pos = XERIAL_HEADER_BYTES;
    for (size_t done = 0; done < len;) {
        size_t n = SP_MIN(len - done, (size_t)XERIAL_BLOCK_BYTES);
        size_t block = snappy_max_compressed_length(n);
        if (cap - pos < 4 || cap - pos - 4 < block)
            return -ENOBUFS;
        if (snappy_compress((const char *)src + done, n, (char *)dst + pos + 4, &block) !=
            SNAPPY_OK)
            return -EIO;
        sp_record_put32(dst + pos, (uint32_t)block);
        pos += 4 + block;
        done += n;
    }
    *out_len = pos;
    return 0;
}

static void lz4_prefs(LZ4F_preferences_t *prefs, int level)
{
    memset(prefs, 0, sizeof(*prefs));
    prefs->frameInfo.blockSizeID = LZ4F_max64KB;
    prefs->frameInfo.blockMode = LZ4F_blockIndependent;
    prefs->frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
    prefs->frameInfo.frameType = LZ4F_frame;
    prefs->compressionLevel = level;
    /* Each update compresses what it was given: no block held back, so the
     * space an update needs is its own input's bound, not a whole block's. */
    prefs->autoFlush = 1;
}

static int lz4_compress(LZ4F_cctx *c, int level, const uint8_t *src, size_t len, uint8_t *dst,
                        size_t cap, size_t *out_len)
{
    LZ4F_preferences_t prefs;
    lz4_prefs(&prefs, level);
    if (cap < LZ4F_HEADER_SIZE_MAX)
        return -ENOBUFS;
    size_t pos = LZ4F_compressBegin(c, dst, cap, &prefs);
    if (LZ4F_isError(pos))
        return -EIO;
    for (size_t done = 0; done < len;) {
        size_t n = SP_MIN(len - done, (size_t)LZ4_CHUNK_BYTES);
        if (cap - pos < LZ4F_compressBound(n, &prefs))
            return -ENOBUFS;
        size_t w = LZ4F_compressUpdate(c, dst + pos, cap - pos, src + done, n, NULL);
        if (LZ4F_isError(w))
            return -EIO;
        pos += w;
        done += n;
    }
    if (cap - pos < LZ4F_compressBound(0, &prefs))
        return -ENOBUFS;
    size_t w = LZ4F_compressEnd(c, dst + pos, cap - pos, NULL);
    if (LZ4F_isError(w))
        return -EIO;
    *out_len = pos + w;
    return 0;
}

static int zstd_compress(ZSTD_CCtx *c, int level, const uint8_t *src, size_t len, uint8_t *dst,
                         size_t cap, size_t *out_len)
{
    size_t n = ZSTD_compressCCtx(c, dst, cap, src, len, level == 0 ? ZSTD_CLEVEL_DEFAULT : level);
    if (ZSTD_isError(n)) {
        ZSTD_ErrorCode code = ZSTD_getErrorCode(n);
        if (code == ZSTD_error_dstSize_tooSmall)
            return -ENOBUFS;
        return code == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
    }
    *out_len = n;
    return 0;
}

int sp_record_compress(struct sp_record_codec *codec, enum sp_record_codec_id id, int level,
                       const uint8_t *src, size_t len, uint8_t *dst, size_t dst_bytes,
                       size_t *out_len)
{
    SP_ASSERT(codec != NULL);
    SP_ASSERT(src != NULL || len == 0);
    SP_ASSERT(dst != NULL || dst_bytes == 0);
    SP_ASSERT(out_len != NULL);
    if ((codec->flags & SP_RECORD_CODEC_COMPRESS) == 0)
        return -EINVAL;
    static const uint8_t no_input[1];
    if (src == NULL)
        src = no_input;
    if (dst == NULL)
        return id > SP_RECORD_CODEC_NONE && id < SP_RECORD_CODEC_COUNT ? -ENOBUFS : -EINVAL;
    switch (id) {
    case SP_RECORD_CODEC_GZIP:
        return gzip_compress(codec, level, src, len, dst, dst_bytes, out_len);
    case SP_RECORD_CODEC_SNAPPY:
        return snappy_compress_xerial(src, len, dst, dst_bytes, out_len);
    case SP_RECORD_CODEC_LZ4:
        return lz4_compress(codec->lz4_c, level, src, len, dst, dst_bytes, out_len);
    case SP_RECORD_CODEC_ZSTD:
        return zstd_compress(codec->zstd_c, level, src, len, dst, dst_bytes, out_len);
    case SP_RECORD_CODEC_NONE:
    default:
        return -EINVAL;
    }
}

size_t sp_record_compress_bound(enum sp_record_codec_id id, size_t len)
{
    switch (id) {
    case SP_RECORD_CODEC_GZIP:
        /* zlib's bound, plus the gzip wrapper's 18 bytes instead of zlib's 6. */
        return (size_t)compressBound((uLong)len) + 12;
    case SP_RECORD_CODEC_SNAPPY: {
        size_t full = len / XERIAL_BLOCK_BYTES, rest = len % XERIAL_BLOCK_BYTES;
        size_t bound =
            XERIAL_HEADER_BYTES + full * (4 + snappy_max_compressed_length(XERIAL_BLOCK_BYTES));
        return bound + (rest != 0 ? 4 + snappy_max_compressed_length(rest) : 0);
    }
    case SP_RECORD_CODEC_LZ4: {
        LZ4F_preferences_t prefs;
        lz4_prefs(&prefs, 0);
        size_t full = len / LZ4_CHUNK_BYTES, rest = len % LZ4_CHUNK_BYTES;
        size_t bound = LZ4F_HEADER_SIZE_MAX + full * LZ4F_compressBound(LZ4_CHUNK_BYTES, &prefs);
        return bound + LZ4F_compressBound(rest, &prefs) + LZ4F_compressBound(0, &prefs);
    }
    case SP_RECORD_CODEC_ZSTD:
        return ZSTD_compressBound(len);
    case SP_RECORD_CODEC_NONE:
    default:
        return len;
    }
}
