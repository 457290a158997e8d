/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka wire primitives: the readers, writers and sizers that the generated
 * message code (gen/) is made of, and the per-frame arena decoding allocates
 * from.
 *
 * Memory: arrays take up to about 22 arena bytes per wire byte (an 88-byte
 * struct per 4-byte element at worst), so a frame of N bytes may need 22*N
 * bytes of arena; the caller sizes the arena, and a too small one is
 * -ENOBUFS, never an overrun.
 *
 * Decoding is zero-copy and bounded: strings, bytes and record sets are
 * (pointer, length) spans into the received frame, which must outlive the
 * decoded message; nothing reads past `end`; a length or count larger than
 * the bytes left is rejected before anything is allocated; arrays are the
 * only allocations, and they come from the caller's arena. Every decoding
 * failure is -EBADMSG (or -ENOBUFS when the arena is too small for a valid
 * frame) and leaves the name of the field that failed in `error_field`.
 *
 * Encoding writes into a buffer sized by the generated _size functions;
 * writers return -ENOSPC past its end (a sizing bug, not a peer's fault),
 * -ENOTSUP for a field that the version cannot carry, -EINVAL for a null
 * where the version allows none.
 *
 * Integers are big-endian; "compact" lengths and counts (flexible versions,
 * KIP-482) are unsigned varints of length + 1, with 0 for null.
 */
#ifndef SP_KAFKA_WIRE_H
#define SP_KAFKA_WIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sp_common.h"

/* A string in a frame: `len` bytes at `ptr`, not NUL-terminated; len < 0 is null. */
struct sp_kstr {
    const char *ptr;
    int32_t len;
};

/* Bytes (or a record set) in a frame; len < 0 is null. */
struct sp_kbytes {
    const uint8_t *ptr;
    int32_t len;
};

struct sp_kuuid {
    uint8_t bytes[16];
};

#define SP_KSTR_NULL ((struct sp_kstr){NULL, -1})
#define SP_KSTR(literal) ((struct sp_kstr){(literal), (int32_t)(sizeof(literal) - 1)})

/* A bump allocator over caller memory, reset per frame. */
struct sp_karena {
    uint8_t *base;
    size_t capacity;
    size_t used;
    size_t used_max; /* high-water mark over resets */
};

static inline void sp_karena_init(struct sp_karena *arena, void *buf, size_t capacity)
{
    arena->base = buf;
    arena->capacity = capacity;
    arena->used = 0;
    arena->used_max = 0;
}

static inline void sp_karena_reset(struct sp_karena *arena)
{
    arena->used = 0;
}

/* `bytes` aligned to 8, or NULL when the arena is full. */
static inline void *sp_karena_alloc(struct sp_karena *arena, size_t bytes)
{
    size_t start = (arena->used + 7) & ~(size_t)7;
    if (start > arena->capacity || bytes > arena->capacity - start)
        return NULL;
    arena->used = start + bytes;
    if (arena->used > arena->used_max)
        arena->used_max = arena->used;
    return arena->base + start;
}

struct sp_kreader {
    const uint8_t *p;
    const uint8_t *end;
    struct sp_karena *arena;
    const char *error_field; /* set by the first failure */
};

/*
 * A bytes field a writer left out of its buffer (sp_kwriter_gaps): its
 * length prefix is written, its `len` bytes at `ptr` belong at buffer
 * offset `at` and are to be sent from where they are (a fetch's records).
 */
struct sp_kgap {
    size_t at;
    const uint8_t *ptr;
    size_t len;
};

struct sp_kwriter {
    uint8_t *p;
    uint8_t *end;
    const char *error_field;
    /* Gaps (NULL: every field is copied in): bytes fields of at least
     * gap_min_bytes are recorded here instead, while there is room. */
    uint8_t *start;
    struct sp_kgap *gaps;
    uint32_t gap_count, gap_max;
    size_t gap_min_bytes;
};

static inline void sp_kreader_init(struct sp_kreader *r, const void *buf, size_t len,
                                   struct sp_karena *arena)
{
    r->p = buf;
    r->end = (const uint8_t *)buf + len;
    r->arena = arena;
    r->error_field = NULL;
}

static inline size_t sp_kreader_left(const struct sp_kreader *r)
{
    return (size_t)(r->end - r->p);
}

static inline void sp_kwriter_init(struct sp_kwriter *w, void *buf, size_t len)
{
    w->p = buf;
    w->end = (uint8_t *)buf + len;
    w->error_field = NULL;
    w->start = buf;
    w->gaps = NULL;
    w->gap_count = w->gap_max = 0;
    w->gap_min_bytes = 0;
}

/*
 * Makes the writer leave bytes fields of at least `min_bytes` out of its
 * buffer, recording them in gaps[0..max) instead (for a vectored send
 * without copying them). The encoded size is then what the size functions
 * say minus the gaps' lengths.
 */
static inline void sp_kwriter_gaps(struct sp_kwriter *w, struct sp_kgap *gaps, uint32_t max,
                                   size_t min_bytes)
{
    w->gaps = gaps;
    w->gap_max = max;
    w->gap_count = 0;
    w->gap_min_bytes = min_bytes;
}

/* Evaluates a call returning 0/-errno and returns its error. */
#define SP_KTRY(expr)                                                                              \
    do {                                                                                           \
        int sp_ktry_ret_ = (expr);                                                                 \
        if (SP_UNLIKELY(sp_ktry_ret_ < 0))                                                         \
            return sp_ktry_ret_;                                                                   \
    } while (0)

SP_COLD static inline int sp_kr_fail(struct sp_kreader *r, int err, const char *field)
{
    if (r->error_field == NULL)
        r->error_field = field;
    return err;
}

SP_COLD static inline int sp_kw_fail(struct sp_kwriter *w, int err, const char *field)
{
    if (w->error_field == NULL)
        w->error_field = field;
    return err;
}

/* ---- Fixed-size reads ---- */

static inline uint16_t sp_kload16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t sp_kload32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t sp_kload64(const uint8_t *p)
{
    return (uint64_t)sp_kload32(p) << 32 | sp_kload32(p + 4);
}

static inline void sp_kstore16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void sp_kstore32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void sp_kstore64(uint8_t *p, uint64_t v)
{
    sp_kstore32(p, (uint32_t)(v >> 32));
    sp_kstore32(p + 4, (uint32_t)v);
}

#define SP_KREAD_FIXED(name, type, bytes, load)                                                    \
    static inline int sp_kr_##name(struct sp_kreader *r, type *out, const char *field)             \
    {                                                                                              \
        if (SP_UNLIKELY(sp_kreader_left(r) < (bytes)))                                             \
            return sp_kr_fail(r, -EBADMSG, field);                                                 \
        *out = (type)load;                                                                         \
        r->p += (bytes);                                                                           \
        return 0;                                                                                  \
    }

SP_KREAD_FIXED(int8, int8_t, 1, r->p[0])
SP_KREAD_FIXED(int16, int16_t, 2, sp_kload16(r->p))
SP_KREAD_FIXED(uint16, uint16_t, 2, sp_kload16(r->p))
SP_KREAD_FIXED(int32, int32_t, 4, sp_kload32(r->p))
SP_KREAD_FIXED(uint32, uint32_t, 4, sp_kload32(r->p))
SP_KREAD_FIXED(int64, int64_t, 8, sp_kload64(r->p))

static inline int sp_kr_bool(struct sp_kreader *r, bool *out, const char *field)
{
    int8_t v;
    SP_KTRY(sp_kr_int8(r, &v, field));
    *out = v != 0;
    return 0;
}

static inline int sp_kr_float64(struct sp_kreader *r, double *out, const char *field)
{
    int64_t bits;
    SP_KTRY(sp_kr_int64(r, &bits, field));
    memcpy(out, &bits, sizeof(*out));
    return 0;
}

static inline int sp_kr_uuid(struct sp_kreader *r, struct sp_kuuid *out, const char *field)
{
    if (SP_UNLIKELY(sp_kreader_left(r) < 16))
        return sp_kr_fail(r, -EBADMSG, field);
    memcpy(out->bytes, r->p, 16);
    r->p += 16;
    return 0;
}

/* ---- Varints ---- */

/* Unsigned LEB128 of at most 5 bytes, the value within 32 bits. */
static inline int sp_kr_uvarint(struct sp_kreader *r, uint32_t *out, const char *field)
{
    uint32_t value = 0;
    for (unsigned shift = 0; shift < 35; shift += 7) {
        if (SP_UNLIKELY(r->p >= r->end))
            return sp_kr_fail(r, -EBADMSG, field);
        uint8_t b = *r->p++;
        if (shift == 28 && (b & 0xf0) != 0)
            return sp_kr_fail(r, -EBADMSG, field);
        value |= (uint32_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = value;
            return 0;
        }
    }
    return sp_kr_fail(r, -EBADMSG, field);
}

static inline size_t sp_ks_uvarint(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline int sp_kw_uvarint(struct sp_kwriter *w, uint32_t v, const char *field)
{
    if (SP_UNLIKELY((size_t)(w->end - w->p) < sp_ks_uvarint(v)))
        return sp_kw_fail(w, -ENOSPC, field);
    while (v >= 0x80) {
        *w->p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w->p++ = (uint8_t)v;
    return 0;
}

/* ---- Fixed-size writes ---- */

#define SP_KWRITE_FIXED(name, type, bytes, store)                                                  \
    static inline int sp_kw_##name(struct sp_kwriter *w, type v, const char *field)                \
    {                                                                                              \
        if (SP_UNLIKELY((size_t)(w->end - w->p) < (bytes)))                                        \
            return sp_kw_fail(w, -ENOSPC, field);                                                  \
        store;                                                                                     \
        w->p += (bytes);                                                                           \
        return 0;                                                                                  \
    }

SP_KWRITE_FIXED(int8, int8_t, 1, w->p[0] = (uint8_t)v)
SP_KWRITE_FIXED(int16, int16_t, 2, sp_kstore16(w->p, (uint16_t)v))
SP_KWRITE_FIXED(uint16, uint16_t, 2, sp_kstore16(w->p, v))
SP_KWRITE_FIXED(int32, int32_t, 4, sp_kstore32(w->p, (uint32_t)v))
SP_KWRITE_FIXED(uint32, uint32_t, 4, sp_kstore32(w->p, v))
SP_KWRITE_FIXED(int64, int64_t, 8, sp_kstore64(w->p, (uint64_t)v))

static inline int sp_kw_bool(struct sp_kwriter *w, bool v, const char *field)
{
    return sp_kw_int8(w, v ? 1 : 0, field);
}

static inline int sp_kw_float64(struct sp_kwriter *w, double v, const char *field)
{
    int64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return sp_kw_int64(w, bits, field);
}

static inline int sp_kw_uuid(struct sp_kwriter *w, const struct sp_kuuid *v, const char *field)
{
    if (SP_UNLIKELY(w->end - w->p < 16))
        return sp_kw_fail(w, -ENOSPC, field);
    memcpy(w->p, v->bytes, 16);
    w->p += 16;
    return 0;
}

static inline int sp_kw_raw(struct sp_kwriter *w, const void *data, size_t len, const char *field)
{
    if (SP_UNLIKELY((size_t)(w->end - w->p) < len))
        return sp_kw_fail(w, -ENOSPC, field);
    if (len > 0)
        memcpy(w->p, data, len);
    w->p += len;
    return 0;
}

/* ---- Lengths: strings, bytes, arrays ---- */

/*
 * Reads a length or count: int16 (strings), int32 (bytes, arrays) or a
 * compact uvarint. Sets *out to -1 for null, rejecting null when not
 * `nullable`, and rejects anything above INT32_MAX.
 */
static inline int sp_kr_length(struct sp_kreader *r, bool compact, bool wide, bool nullable,
                               int32_t *out, const char *field)
{
    int32_t len;
    if (compact) {
        uint32_t v;
        SP_KTRY(sp_kr_uvarint(r, &v, field));
        if (SP_UNLIKELY(v > (uint32_t)INT32_MAX))
            return sp_kr_fail(r, -EBADMSG, field);
        len = (int32_t)v - 1;
    } else if (wide) {
        SP_KTRY(sp_kr_int32(r, &len, field));
    } else {
        int16_t len16;
        SP_KTRY(sp_kr_int16(r, &len16, field));
        len = len16;
    }
    if (len < 0) {
        if (SP_UNLIKELY(len != -1 || !nullable))
            return sp_kr_fail(r, -EBADMSG, field);
    }
    *out = len;
    return 0;
}

static inline int sp_kr_string(struct sp_kreader *r, bool compact, bool nullable,
                               struct sp_kstr *out, const char *field)
{
    int32_t len;
    SP_KTRY(sp_kr_length(r, compact, false, nullable, &len, field));
    /* Kafka caps strings at 32767 bytes in every encoding, compact too. */
    if (len > INT16_MAX || (len > 0 && SP_UNLIKELY((size_t)len > sp_kreader_left(r))))
        return sp_kr_fail(r, -EBADMSG, field);
    out->ptr = (const char *)r->p;
    out->len = len;
    if (len > 0)
        r->p += len;
    return 0;
}

static inline int sp_kr_bytes(struct sp_kreader *r, bool compact, bool nullable,
                              struct sp_kbytes *out, const char *field)
{
    int32_t len;
    SP_KTRY(sp_kr_length(r, compact, true, nullable, &len, field));
    if (len > 0 && SP_UNLIKELY((size_t)len > sp_kreader_left(r)))
        return sp_kr_fail(r, -EBADMSG, field);
    out->ptr = r->p;
    out->len = len;
    if (len > 0)
        r->p += len;
    return 0;
}

/*
 * Reads an array count and reserves its elements in the arena. A count that
 * could not fit in the bytes left (each element takes at least
 * `elem_bytes_min` on the wire) is rejected before allocating.
 */
static inline int sp_kr_array(struct sp_kreader *r, bool compact, bool nullable, size_t elem_size,
                              size_t elem_bytes_min, int32_t *count_out, void **items_out,
                              const char *field)
{
    int32_t count;
    SP_KTRY(sp_kr_length(r, compact, true, nullable, &count, field));
    *items_out = NULL;
    *count_out = count;
    if (count <= 0)
        return 0;
    if (SP_UNLIKELY(elem_bytes_min > 0 && (size_t)count > sp_kreader_left(r) / elem_bytes_min))
        return sp_kr_fail(r, -EBADMSG, field);
    void *items = sp_karena_alloc(r->arena, (size_t)count * elem_size);
    if (SP_UNLIKELY(items == NULL))
        return sp_kr_fail(r, -ENOBUFS, field);
    *items_out = items;
    return 0;
}

/*
 * Size on the wire of a length or count `len` (any negative: null, as the
 * writer treats it).
 */
static inline size_t sp_ks_length(bool compact, bool wide, int32_t len)
{
    if (compact)
        return len < 0 ? 1 : sp_ks_uvarint((uint32_t)len + 1);
    return wide ? 4 : 2;
}

static inline int sp_kw_length(struct sp_kwriter *w, bool compact, bool wide, bool nullable,
                               int32_t len, const char *field)
{
    if (len < 0 && !nullable)
        return sp_kw_fail(w, -EINVAL, field);
    if (len < 0)
        len = -1;
    if (!wide && len > INT16_MAX)
        return sp_kw_fail(w, -EINVAL, field); /* strings: 32767 bytes at most */
    if (compact)
        return sp_kw_uvarint(w, len < 0 ? 0 : (uint32_t)len + 1, field);
    if (wide)
        return sp_kw_int32(w, len, field);
    return sp_kw_int16(w, (int16_t)len, field);
}

static inline int sp_kw_string(struct sp_kwriter *w, bool compact, bool nullable, struct sp_kstr v,
                               const char *field)
{
    SP_KTRY(sp_kw_length(w, compact, false, nullable, v.len, field));
    return v.len > 0 ? sp_kw_raw(w, v.ptr, (size_t)v.len, field) : 0;
}

static inline int sp_kw_bytes(struct sp_kwriter *w, bool compact, bool nullable, struct sp_kbytes v,
                              const char *field)
{
    SP_KTRY(sp_kw_length(w, compact, true, nullable, v.len, field));
    if (SP_UNLIKELY(w->gaps != NULL) && v.len > 0 && (size_t)v.len >= w->gap_min_bytes &&
        w->gap_count < w->gap_max) {
        w->gaps[w->gap_count++] =
            (struct sp_kgap){.at = (size_t)(w->p - w->start), .ptr = v.ptr, .len = (size_t)v.len};
        return 0;
    }
    return v.len > 0 ? sp_kw_raw(w, v.ptr, (size_t)v.len, field) : 0;
}

static inline size_t sp_ks_string(bool compact, struct sp_kstr v)
{
    return sp_ks_length(compact, false, v.len) + (v.len > 0 ? (size_t)v.len : 0);
}

static inline size_t sp_ks_bytes(bool compact, struct sp_kbytes v)
{
    return sp_ks_length(compact, true, v.len) + (v.len > 0 ? (size_t)v.len : 0);
}

/* ---- Tagged fields ---- */

/* Skips an unknown tagged field's `size` bytes. */
static inline int sp_kr_skip(struct sp_kreader *r, uint32_t size, const char *field)
{
    if (SP_UNLIKELY(size > sp_kreader_left(r)))
        return sp_kr_fail(r, -EBADMSG, field);
    r->p += size;
    return 0;
}

/*
 * A reader over the next `size` bytes of `r` (a tagged field's value), and
 * `r` moved past them.
 */
static inline int sp_kr_sub(struct sp_kreader *r, uint32_t size, struct sp_kreader *sub,
                            const char *field)
{
    if (SP_UNLIKELY(size > sp_kreader_left(r)))
        return sp_kr_fail(r, -EBADMSG, field);
    sub->p = r->p;
    sub->end = r->p + size;
    sub->arena = r->arena;
    sub->error_field = NULL;
    r->p += size;
    return 0;
}

/* A tagged field must fill exactly the size its header announced. */
static inline int sp_kr_sub_done(struct sp_kreader *r, struct sp_kreader *sub, int ret,
                                 const char *field)
{
    if (ret < 0)
        return sp_kr_fail(r, ret, sub->error_field ? sub->error_field : field);
    if (sub->p != sub->end)
        return sp_kr_fail(r, -EBADMSG, field);
    return 0;
}

/* A C string as a Kafka string (pointing at it, not copied). */
static inline struct sp_kstr sp_kstr_of(const char *s)
{
    return (struct sp_kstr){s, (int32_t)strlen(s)};
}

static inline bool sp_kstr_eq(struct sp_kstr a, const char *b)
{
    size_t n = strlen(b);
    return a.len >= 0 && (size_t)a.len == n && (n == 0 || memcmp(a.ptr, b, n) == 0);
}

static inline bool sp_kuuid_is_zero(const struct sp_kuuid *u)
{
    static const uint8_t zero[16];
    return memcmp(u->bytes, zero, 16) == 0;
}

#endif /* SP_KAFKA_WIRE_H */
