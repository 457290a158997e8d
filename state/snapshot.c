/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots of the keyed state table (sp_table.h, "Snapshots"): the stream a
 * checkpoint copies, produced a piece at a time while the table keeps
 * changing, and its restore.
 *
 * Versions. The table's version is the one being written now; begin() closes
 * it (it becomes the snapshot's version v) and opens v + 1. Every entry
 * carries the version of its last possible write and the one it was created
 * in; so the snapshot is every live entry of version <= v, and a delta
 * since `since` those of version in (since, v]. Once a snapshot was begun,
 * a segment's version is raised by every write to it too, so a delta skips
 * the segments not written since its base without looking inside.
 *
 * Copy-on-write. begin() does not look at the entries: a walker goes through
 * the segment slots in index order, [0, walk_end) (those in use at begin;
 * later ones only hold entries of later versions). Whatever hands out an
 * entry that may be written (find, upsert, ns_first, ns_next) or deletes one
 * first calls sp_table_snap_touch() on its segment while the snapshot is
 * active: unless the walker passed the segment, or it was copied already
 * (its snap_seq is the snapshot's seq), the segment's qualifying entries
 * are encoded as stream records into the `cow` buffer and the segment is
 * marked; read() streams `cow` before walking on, and the walker skips marked
 * segments. A segment allocated during the snapshot gets the snapshot's seq
 * at once (seg_new), so a slot freed and reused is never walked with a stale
 * offset; an open segment emptied and rewound (entry_kill) was marked by the
 * delete that emptied it.
 *
 * Tombstones. A delta is applied onto the table as of `since`, so it must
 * delete the entries deleted in (since, v] that existed at `since`. The
 * rule kept: deleting an entry created in version c while the table is at
 * version d records a tombstone tagged d when c < d (and a snapshot was ever
 * begun). Proof: a delta that includes tag d has since < d (tags in
 * (since, v]); its base holds the entry only if c <= since, hence c < d; so
 * no needed tombstone is missed. When c == d no base with since < d holds
 * the entry, and before the first begin every later base has since >= d,
 * so nothing is lost by keeping none then. An extra tombstone is harmless:
 * tombstones are applied before the entries of the same delta, and a key
 * alive at v whose incarnation was created after `since` is in the delta as
 * an entry, while one created at or before `since` was never deleted in
 * (since, v] (its tombstone would belong to an older incarnation, deleted
 * before it was created). Tombstones live in one log, {tag, length,
 * record}, until sp_table_snapshot_complete() frees those up to its version
 * (an active delta keeps the ones after its `since`).
 *
 * The stream (little-endian, written byte by byte, no alignment):
 *   header  magic u32 "SPTS", format u16 (1), flags u16 (bit 0: full,
 *           bit 1: entries carry their last write's time: a TTL table),
 *           since u32, version u32, value_bytes u32, key_groups_total u32
 *   record  type u8 (1 entry, 2 tombstone), key_len u32, hash u64, ns i64,
 *           write time u64 ms (entries of TTL streams only), value
 *           (entries only: value_bytes), key
 *   end     type u8 (3), entry count u64, tombstone count u64, CRC-32C u32
 *           of every byte before the end record
 * Tombstones come before entries; the end record is the last byte. Limits:
 * the bytes held aside (cow, a record split across reads, tombstones) are at
 * most config.snapshot_held_bytes_max: over it the snapshot fails
 * (-ENOBUFS from read), or a tombstone is dropped and no delta from before
 * its version can be taken (-ENOBUFS from begin).
 *
 * TTL. A full snapshot leaves out the entries expired by the table's clock
 * when they are encoded (Flink's cleanupFullSnapshot). That is safe for the
 * deltas taken on it because the clock never goes back and an expired entry
 * is never written again (find and upsert delete it): such an entry can
 * only be deleted later, and its tombstone finds nothing to delete. Deltas
 * keep expired entries (restored, they keep their times and expire as they
 * would have).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sp_crc32c.h"
#include "sp_keygroup.h"
#include "sp_table.h"
#include "table_int.h"

#define SNAP_MAGIC 0x53545053u /* "SPTS" */
#define SNAP_FORMAT 1u
#define SNAP_FLAG_FULL 1u
#define SNAP_FLAG_TTL 2u
#define SNAP_TIME_BYTES 8u
#define SNAP_HEADER_BYTES 24u
#define SNAP_REC_HEAD_BYTES 21u
#define SNAP_END_BYTES 21u
#define SNAP_TOMB_TAG_BYTES 8u /* tag u32, record length u32 */
#define SNAP_BUF_MIN 4096u

enum { REC_ENTRY = 1, REC_TOMB = 2, REC_END = 3 };
enum { PHASE_HEADER, PHASE_TOMBS, PHASE_ENTRIES, PHASE_END, PHASE_DONE };

/* ---- Buffers held aside ---- */

uint64_t sp_table_snapshot_held_bytes(const struct sp_table *t)
{
    const struct sp_table_snap *s = &t->snap;
    return (uint64_t)s->cow.cap + s->pend.cap + s->tomb.cap;
}

static void buf_free(struct sp_table_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static inline size_t buf_pending(const struct sp_table_buf *b)
{
    return b->len - b->head;
}

/* Makes room for `more` bytes after b->len (moving consumed bytes out
 * first). 0, -ENOBUFS (over the table's limit) or -ENOMEM. */
static int buf_reserve(struct sp_table *t, struct sp_table_buf *b, size_t more)
{
    SP_ASSERT(b->head <= b->len);
    SP_ASSERT(b->len <= b->cap);
    if (b->cap - b->len >= more)
        return 0;
    if (b->head > 0) {
        memmove(b->data, b->data + b->head, b->len - b->head);
        b->len -= b->head;
        b->head = 0;
        if (b->cap - b->len >= more)
            return 0;
    }
    if (more > SIZE_MAX / 4 - b->len)
        return -ENOBUFS;
    size_t cap = b->cap > SNAP_BUF_MIN ? b->cap : SNAP_BUF_MIN;
    while (cap < b->len + more)
        cap *= 2;
    if (sp_table_snapshot_held_bytes(t) - b->cap + cap > t->config.snapshot_held_bytes_max)
        return -ENOBUFS;
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

/* ---- Records ---- */

static inline bool entry_in_snap(const struct sp_table *t, const struct sp_table_entry *e)
{
    const struct sp_table_snap *s = &t->snap;
    if ((e->key_len & SP_TABLE_DEAD) != 0 || e->version > s->v)
        return false;
    if (s->full)
        return !sp_table_expired(t, e);
    return e->version > s->since;
}

static inline size_t entry_rec_bytes(const struct sp_table *t, const struct sp_table_entry *e)
{
    return SNAP_REC_HEAD_BYTES + (t->config.ttl_ms != 0 ? SNAP_TIME_BYTES : 0) +
           t->config.value_bytes + e->key_len;
}

static void rec_head_encode(uint8_t *p, uint8_t type, const struct sp_table_entry *e)
{
    p[0] = type;
    sp_le_store32(p + 1, e->key_len);
    sp_le_store64(p + 5, e->hash);
    sp_le_store64(p + 13, (uint64_t)e->ns);
}

static void entry_rec_encode(const struct sp_table *t, const struct sp_table_entry *e, uint8_t *p)
{
    uint32_t vb = t->config.value_bytes;
    rec_head_encode(p, REC_ENTRY, e);
    p += SNAP_REC_HEAD_BYTES;
    if (t->config.ttl_ms != 0) {
        sp_le_store64(p, sp_table_ttl_written(t, e));
        p += SNAP_TIME_BYTES;
    }
    memcpy(p, (const uint8_t *)e + t->value_off, vb);
    memcpy(p + vb, sp_table_key(t, e), e->key_len);
}

/* ---- Copy-on-write and tombstones (called from table.c) ---- */

void sp_table_snap_touch(struct sp_table *t, uint32_t no)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(s->active);
    SP_ASSERT(no < t->seg_count);
    struct sp_table_seg *seg = &t->segs[no];
    if (no < s->walk_seg || no >= s->walk_end || seg->snap_seq == s->seq || s->err != 0)
        return;
    seg->snap_seq = s->seq; /* copied now, or nothing of it is in the snapshot */
    if (!s->full && seg->version <= s->since)
        return;
    uint32_t first = no == s->walk_seg ? s->walk_off : 0;
    size_t need = 0;
    for (uint32_t off = first; off < seg->used;) {
        const struct sp_table_entry *e = (const struct sp_table_entry *)(seg->base + off);
        off += e->bytes;
        if (entry_in_snap(t, e))
            need += entry_rec_bytes(t, e);
    }
    if (need == 0)
        return;
    int rc = buf_reserve(t, &s->cow, need);
    if (rc < 0) {
        s->err = rc; /* the snapshot is lost; read() says so */
        return;
    }
    uint8_t *p = s->cow.data + s->cow.len;
    for (uint32_t off = first; off < seg->used;) {
        const struct sp_table_entry *e = (const struct sp_table_entry *)(seg->base + off);
        off += e->bytes;
        if (entry_in_snap(t, e)) {
            entry_rec_encode(t, e, p);
            p += entry_rec_bytes(t, e);
            s->entry_count++;
        }
    }
    s->cow.len += need;
    SP_ASSERT(p == s->cow.data + s->cow.len);
}

void sp_table_snap_delete(struct sp_table *t, const struct sp_table_entry *e, uint32_t no)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(s->ever);
    SP_ASSERT((e->key_len & SP_TABLE_DEAD) == 0);
    if (s->active)
        sp_table_snap_touch(t, no);
    if (e->created >= t->version)
        return; /* created in this version: no base can hold it (see the top) */
    size_t rec = SNAP_REC_HEAD_BYTES + e->key_len;
    if (buf_reserve(t, &s->tomb, SNAP_TOMB_TAG_BYTES + rec) < 0) {
        s->tomb_lost = t->version; /* no delta from before this version */
        return;
    }
    uint8_t *p = s->tomb.data + s->tomb.len;
    sp_le_store32(p, t->version);
    sp_le_store32(p + 4, (uint32_t)rec);
    rec_head_encode(p + SNAP_TOMB_TAG_BYTES, REC_TOMB, e);
    memcpy(p + SNAP_TOMB_TAG_BYTES + SNAP_REC_HEAD_BYTES, sp_table_key(t, e), e->key_len);
    s->tomb.len += SNAP_TOMB_TAG_BYTES + rec;
}

void sp_table_snap_deinit(struct sp_table *t)
{
    buf_free(&t->snap.cow);
    buf_free(&t->snap.pend);
    buf_free(&t->snap.tomb);
    free(t->snap.peek);
    t->snap.peek = NULL;
}

/* ---- Streaming ---- */

int64_t sp_table_snapshot_begin(struct sp_table *t, bool full, uint32_t since)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(t->version > 0);
    SP_ASSERT(!s->active || s->phase != PHASE_DONE);
    if (s->active)
        return -EBUSY;
    if (!full && (since == 0 || since >= t->version))
        return -EINVAL;
    if (!full && s->tomb_lost > since)
        return -ENOBUFS;
    if (t->version == UINT32_MAX)
        return -EOVERFLOW;
    if (++s->seq == 0) { /* once in 2^32 snapshots: forget old marks */
        for (uint32_t i = 0; i < t->seg_count; i++)
            t->segs[i].snap_seq = 0;
        s->seq = 1;
    }
    s->active = true;
    s->ever = true;
    s->full = full;
    s->crc_closed = false;
    s->err = 0;
    s->phase = PHASE_HEADER;
    s->v = t->version;
    s->since = full ? 0 : since;
    s->walk_seg = 0;
    s->walk_off = 0;
    s->walk_end = t->seg_count;
    s->crc = 0;
    s->entry_count = 0;
    s->tomb_count = 0;
    s->tomb_cursor = 0;
    t->version++;
    return s->v;
}

/* The caller's buffer being filled by one read(). */
struct snap_out {
    uint8_t *p;
    size_t cap;
    size_t n;
    size_t crc_from; /* bytes before this are in s->crc */
    size_t scanned;  /* entry bytes the walker passed in this call */
};

/* Where to encode `len` more bytes: the caller's buffer when they fit, else
 * the pending buffer (empty now), drained into it next. NULL: s->err set. */
static uint8_t *emit(struct sp_table *t, struct snap_out *o, size_t len)
{
    if (o->cap - o->n >= len) {
        uint8_t *p = o->p + o->n;
        o->n += len;
        return p;
    }
    struct sp_table_buf *b = &t->snap.pend;
    SP_ASSERT(buf_pending(b) == 0);
    b->len = b->head = 0;
    int rc = buf_reserve(t, b, len);
    if (rc < 0) {
        t->snap.err = rc;
        return NULL;
    }
    b->len = len;
    return b->data;
}

static void drain(struct snap_out *o, struct sp_table_buf *b)
{
    size_t k = buf_pending(b);
    if (k == 0)
        return;
    if (k > o->cap - o->n)
        k = o->cap - o->n;
    memcpy(o->p + o->n, b->data + b->head, k);
    o->n += k;
    b->head += k;
    if (b->head == b->len)
        b->head = b->len = 0;
}

static void header_step(struct sp_table *t, struct snap_out *o)
{
    struct sp_table_snap *s = &t->snap;
    uint8_t *p = emit(t, o, SNAP_HEADER_BYTES);
    if (p == NULL)
        return;
    sp_le_store32(p, SNAP_MAGIC);
    sp_le_store16(p + 4, SNAP_FORMAT);
    sp_le_store16(p + 6, (uint16_t)((s->full ? SNAP_FLAG_FULL : 0) |
                                    (t->config.ttl_ms != 0 ? SNAP_FLAG_TTL : 0)));
    sp_le_store32(p + 8, s->since);
    sp_le_store32(p + 12, s->v);
    sp_le_store32(p + 16, t->config.value_bytes);
    sp_le_store32(p + 20, t->config.key_groups_total);
    s->phase = s->full ? PHASE_ENTRIES : PHASE_TOMBS;
}

/* Streams the tombstones tagged (since, v] until the caller's buffer is
 * full; those of later versions (deletes since begin) are passed over. */
static void tombs_step(struct sp_table *t, struct snap_out *o)
{
    struct sp_table_snap *s = &t->snap;
    while (s->tomb_cursor < s->tomb.len) {
        if (o->n == o->cap || buf_pending(&s->pend) > 0)
            return;
        const uint8_t *q = s->tomb.data + s->tomb_cursor;
        uint32_t tag = sp_le_load32(q);
        uint32_t len = sp_le_load32(q + 4);
        SP_ASSERT(s->tomb_cursor + SNAP_TOMB_TAG_BYTES + len <= s->tomb.len);
        s->tomb_cursor += SNAP_TOMB_TAG_BYTES + len;
        if (tag <= s->since || tag > s->v)
            continue;
        uint8_t *p = emit(t, o, len);
        if (p == NULL)
            return;
        memcpy(p, s->tomb.data + s->tomb_cursor - len, len);
        s->tomb_count++;
    }
    s->phase = PHASE_ENTRIES;
}

/* Streams what copy-on-write set aside, then walks on, until the caller's
 * buffer is full or, after a scan of 4 × its size without output, returns
 * (so a sparse delta does not make one call walk the whole table). */
static void entries_step(struct sp_table *t, struct snap_out *o)
{
    struct sp_table_snap *s = &t->snap;
    drain(o, &s->cow);
    if (buf_pending(&s->cow) > 0)
        return;
    size_t scan_max = o->cap * 4;
    while (s->walk_seg < s->walk_end) {
        const struct sp_table_seg *seg = &t->segs[s->walk_seg];
        if ((seg->base == NULL && seg->slot == 0) || seg->snap_seq == s->seq ||
            (!s->full && seg->version <= s->since)) {
            s->walk_seg++;
            s->walk_off = 0;
            s->peek_valid = false;
            continue;
        }
        const uint8_t *base = seg->base;
        if (base == NULL) {
            /* Spilled: walked in a copy read from disk. It cannot change
             * while the walker is in it: a write first reads it back, and
             * copy-on-write then marks it done (snap_seq). */
            if (!s->peek_valid || s->peek_no != s->walk_seg) {
                if (s->peek == NULL && (s->peek = malloc(1u << t->seg_shift)) == NULL) {
                    s->err = -ENOMEM;
                    return;
                }
                if (sp_table_seg_peek(t, s->walk_seg, s->peek) == NULL) {
                    s->err = -EIO;
                    return;
                }
                s->peek_no = s->walk_seg;
                s->peek_valid = true;
            }
            base = s->peek;
        }
        while (s->walk_off < seg->used) {
            if (o->n == o->cap || buf_pending(&s->pend) > 0)
                return;
            if (o->scanned > scan_max && o->n > 0)
                return;
            const struct sp_table_entry *e = (const struct sp_table_entry *)(base + s->walk_off);
            SP_ASSERT(e->bytes >= t->key_off && e->bytes <= seg->used - s->walk_off);
            s->walk_off += e->bytes;
            o->scanned += e->bytes;
            if (!entry_in_snap(t, e))
                continue;
            uint8_t *p = emit(t, o, entry_rec_bytes(t, e));
            if (p == NULL)
                return;
            entry_rec_encode(t, e, p);
            s->entry_count++;
        }
        s->walk_seg++;
        s->walk_off = 0;
        s->peek_valid = false;
    }
    SP_ASSERT(buf_pending(&s->cow) == 0);
    s->phase = PHASE_END;
}

static void end_step(struct sp_table *t, struct snap_out *o)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(buf_pending(&s->pend) == 0);
    s->crc = sp_crc32c(s->crc, o->p + o->crc_from, o->n - o->crc_from);
    o->crc_from = o->n;
    s->crc_closed = true;
    uint8_t *p = emit(t, o, SNAP_END_BYTES);
    if (p == NULL)
        return;
    p[0] = REC_END;
    sp_le_store64(p + 1, s->entry_count);
    sp_le_store64(p + 9, s->tomb_count);
    sp_le_store32(p + 17, s->crc);
    s->phase = PHASE_DONE;
}

/* One step of the stream: the rest of a spilled record first, else some of
 * the current phase. */
static void snap_step(struct sp_table *t, struct snap_out *o)
{
    struct sp_table_snap *s = &t->snap;
    if (buf_pending(&s->pend) > 0) {
        drain(o, &s->pend);
        return;
    }
    switch (s->phase) {
    case PHASE_HEADER:
        header_step(t, o);
        break;
    case PHASE_TOMBS:
        tombs_step(t, o);
        break;
    case PHASE_ENTRIES:
        entries_step(t, o);
        break;
    case PHASE_END:
        end_step(t, o);
        break;
    default:
        SP_ASSERT(s->phase == PHASE_DONE);
        break;
    }
}

static void snap_finish(struct sp_table *t)
{
    struct sp_table_snap *s = &t->snap;
    s->active = false;
    s->err = 0;
    s->phase = PHASE_DONE;
    buf_free(&s->cow);
    buf_free(&s->pend);
    free(s->peek);
    s->peek = NULL;
    s->peek_valid = false;
}

int64_t sp_table_snapshot_read(struct sp_table *t, void *buf, size_t cap)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(buf != NULL);
    SP_ASSERT(cap > 0);
    if (!s->active)
        return 0;
    if (s->err == 0 && t->config.spill != NULL && sp_spill_error(t->config.spill) != 0)
        s->err = -EIO; /* state was lost with a spilled segment */
    if (s->err != 0)
        return s->err;
    struct snap_out o = {.p = buf, .cap = cap, .n = 0, .crc_from = 0, .scanned = 0};
    bool more;
    do {
        size_t n_before = o.n;
        uint32_t phase_before = s->phase;
        snap_step(t, &o);
        if (s->err != 0)
            return s->err;
        /* Go on while there is room, something is left, and the step moved
         * (bytes, a phase, a record spilled) or nothing came yet: the walker
         * stops early after a long scan without output. */
        bool moved = o.n > n_before || s->phase != phase_before || buf_pending(&s->pend) > 0;
        bool finished = s->phase == PHASE_DONE && buf_pending(&s->pend) == 0;
        more = o.n < cap && !finished && (moved || o.n == 0);
    } while (more);
    if (!s->crc_closed)
        s->crc = sp_crc32c(s->crc, o.p + o.crc_from, o.n - o.crc_from);
    if (s->phase == PHASE_DONE && buf_pending(&s->pend) == 0)
        snap_finish(t); /* everything is out: the next call returns 0 */
    return (int64_t)o.n;
}

void sp_table_snapshot_cancel(struct sp_table *t)
{
    SP_ASSERT(t->snap.seq > 0 || !t->snap.active);
    snap_finish(t);
    SP_ASSERT(!t->snap.active);
}

void sp_table_snapshot_complete(struct sp_table *t, uint32_t v)
{
    struct sp_table_snap *s = &t->snap;
    SP_ASSERT(v < t->version);
    uint32_t upto = v;
    if (s->active && !s->full && s->since < upto)
        upto = s->since; /* the delta being streamed still needs (since, v] */
    size_t w = 0;
    size_t removed_before_cursor = 0;
    for (size_t r = 0; r < s->tomb.len;) {
        uint32_t tag = sp_le_load32(s->tomb.data + r);
        size_t len = SNAP_TOMB_TAG_BYTES + sp_le_load32(s->tomb.data + r + 4);
        SP_ASSERT(r + len <= s->tomb.len);
        if (tag <= upto) {
            if (r < s->tomb_cursor)
                removed_before_cursor += len;
        } else {
            if (w != r)
                memmove(s->tomb.data + w, s->tomb.data + r, len);
            w += len;
        }
        r += len;
    }
    s->tomb.len = w;
    s->tomb_cursor -= removed_before_cursor;
    if (w == 0)
        buf_free(&s->tomb);
    SP_ASSERT(s->tomb_cursor <= s->tomb.len);
}

/* ---- Restore ---- */

struct snap_rec {
    uint8_t type;
    uint32_t key_len;
    uint64_t hash;
    int64_t ns;
    uint64_t written_ms;  /* entries of TTL streams only */
    const uint8_t *value; /* entries only */
    const uint8_t *key;
    uint64_t entry_count; /* the end record */
    uint64_t tomb_count;
    uint32_t crc;
};

/* Parses the record at p (left bytes; entries carry a time when `timed`).
 * Its length, or -EBADMSG. */
static int64_t rec_parse(const uint8_t *p, size_t left, uint32_t value_bytes, bool timed,
                         struct snap_rec *r)
{
    if (left < 1)
        return -EBADMSG;
    r->type = p[0];
    if (r->type == REC_END) {
        if (left < SNAP_END_BYTES)
            return -EBADMSG;
        r->entry_count = sp_le_load64(p + 1);
        r->tomb_count = sp_le_load64(p + 9);
        r->crc = sp_le_load32(p + 17);
        return SNAP_END_BYTES;
    }
    if ((r->type != REC_ENTRY && r->type != REC_TOMB) || left < SNAP_REC_HEAD_BYTES)
        return -EBADMSG;
    r->key_len = sp_le_load32(p + 1);
    r->hash = sp_le_load64(p + 5);
    r->ns = (int64_t)sp_le_load64(p + 13);
    if (r->key_len > SP_TABLE_KEY_MAX)
        return -EBADMSG;
    uint32_t time_bytes = r->type == REC_ENTRY && timed ? SNAP_TIME_BYTES : 0;
    uint64_t body = (uint64_t)r->key_len + time_bytes + (r->type == REC_ENTRY ? value_bytes : 0);
    if (body > left - SNAP_REC_HEAD_BYTES)
        return -EBADMSG;
    r->written_ms = time_bytes != 0 ? sp_le_load64(p + SNAP_REC_HEAD_BYTES) : 0;
    r->value = p + SNAP_REC_HEAD_BYTES + time_bytes;
    r->key = r->value + (r->type == REC_ENTRY ? value_bytes : 0);
    return (int64_t)(SNAP_REC_HEAD_BYTES + body);
}

/* Checks the whole stream before anything is applied: header, records
 * (tombstones first), the end record last with matching counts and CRC.
 * *mine: the entries of the table's own key groups (what restore adds). */
static int stream_check(const struct sp_table *t, const uint8_t *p, size_t len, uint64_t *mine)
{
    if (len < SNAP_HEADER_BYTES + SNAP_END_BYTES)
        return -EBADMSG;
    if (sp_le_load32(p) != SNAP_MAGIC || sp_le_load16(p + 4) != SNAP_FORMAT ||
        (sp_le_load16(p + 6) & ~(SNAP_FLAG_FULL | SNAP_FLAG_TTL)) != 0 ||
        sp_le_load32(p + 16) != t->config.value_bytes)
        return -EBADMSG;
    /* A full stream is of no base; a delta's base is older than it. The key
     * groups total is informative: records are placed by this table's. */
    bool full = (sp_le_load16(p + 6) & SNAP_FLAG_FULL) != 0;
    bool timed = (sp_le_load16(p + 6) & SNAP_FLAG_TTL) != 0;
    uint32_t since = sp_le_load32(p + 8);
    uint32_t v = sp_le_load32(p + 12);
    if (v == 0 || (full ? since != 0 : since == 0 || since >= v))
        return -EBADMSG;
    uint64_t entries = 0;
    uint64_t tombs = 0;
    *mine = 0;
    for (size_t off = SNAP_HEADER_BYTES; off < len;) {
        struct snap_rec r;
        int64_t k = rec_parse(p + off, len - off, t->config.value_bytes, timed, &r);
        if (k < 0)
            return (int)k;
        if (r.type == REC_END) {
            if (off + (size_t)k != len || r.entry_count != entries || r.tomb_count != tombs ||
                r.crc != sp_crc32c(0, p, off))
                return -EBADMSG;
            return 0;
        }
        if (r.type == REC_TOMB) {
            if (entries > 0 || full)
                return -EBADMSG; /* a tombstone after an entry would undo it */
            tombs++;
        } else {
            entries++;
            uint32_t g = sp_key_group(r.hash, t->config.key_groups_total);
            *mine += g >= t->config.key_group_first &&
                     g - t->config.key_group_first < t->config.key_group_count;
        }
        off += (size_t)k;
    }
    return -EBADMSG; /* no end record: truncated */
}

static int restore_apply(struct sp_table *t, const uint8_t *p, size_t len, uint64_t mine);

int sp_table_restore(struct sp_table *t, const void *stream, size_t len)
{
    const uint8_t *p = stream;
    SP_ASSERT(stream != NULL || len == 0);
    SP_ASSERT(t->config.key_groups_total > 0);
    uint64_t mine = 0;
    int rc = stream_check(t, p, len, &mine);
    if (rc < 0)
        return rc;
    return restore_apply(t, p, len, mine);
}

int sp_table_restore_verified(struct sp_table *t, const void *stream, size_t len)
{
    const uint8_t *p = stream;
    SP_ASSERT(stream != NULL || len == 0);
    SP_ASSERT(t->config.key_groups_total > 0);
    /* The header, and the end record's count of entries (all key groups:
     * the index may be sized for more than this table keeps). */
    if (len < SNAP_HEADER_BYTES + SNAP_END_BYTES || sp_le_load32(p) != SNAP_MAGIC ||
        sp_le_load16(p + 4) != SNAP_FORMAT ||
        (sp_le_load16(p + 6) & ~(SNAP_FLAG_FULL | SNAP_FLAG_TTL)) != 0 ||
        sp_le_load32(p + 16) != t->config.value_bytes || p[len - SNAP_END_BYTES] != REC_END)
        return -EBADMSG;
    uint64_t entries = sp_le_load64(p + len - SNAP_END_BYTES + 1);
    return restore_apply(t, p, len, entries);
}

/* Applies a stream whose header was checked; every record is still parsed
 * with its bounds checked (a bad one stops it: -EBADMSG). */
/* Applies one parsed record (an entry or a tombstone). 0 or -errno. */
static int rec_apply(struct sp_table *t, const struct snap_rec *r, bool absent, bool timed)
{
    if (r->type == REC_TOMB) {
        struct sp_table_entry *e = sp_table_find(t, r->hash, r->key, r->key_len, r->ns);
        if (e != NULL)
            sp_table_delete(t, e);
        return 0;
    }
    int err = 0;
    struct sp_table_entry *e;
    if (absent) {
        e = sp_table_insert_absent(t, r->hash, r->key, r->key_len, r->ns, r->value, &err);
    } else {
        bool created;
        e = sp_table_upsert(t, r->hash, r->key, r->key_len, r->ns, &created, &err);
        if (e != NULL)
            memcpy(sp_table_value(t, e), r->value, t->config.value_bytes);
    }
    if (e == NULL)
        return err == -E2BIG ? -EBADMSG : err;
    if (timed && t->config.ttl_ms != 0)
        sp_table_ttl_stamp(t, e, r->written_ms);
    return 0;
}

static int restore_apply(struct sp_table *t, const uint8_t *p, size_t len, uint64_t mine)
{
    int rc;
    /* The index sized once for what comes (no doubling and rehashing on the
     * way), then a pipeline: a record's index slot is prefetched when it is
     * parsed, AHEAD records before it is applied, so the miss is over by
     * then (applying is bound by those misses). */
    rc = sp_table_reserve(t, t->count + mine);
    if (rc < 0)
        return rc;
    uint32_t first = t->config.key_group_first;
    bool timed = (sp_le_load16(p + 6) & SNAP_FLAG_TTL) != 0;
    bool prefetch = !t->config.ns_in_hash;
    /* A full stream into an empty table (a restore onto as many shards as
     * wrote it) has each key once: inserted without looking for it. */
    bool absent = (sp_le_load16(p + 6) & SNAP_FLAG_FULL) != 0 && t->count == 0 && t->dir == NULL;
    enum { AHEAD = 16 }; /* a power of two */
    struct snap_rec ring[AHEAD];
    unsigned head = 0, queued = 0;
    size_t off = SNAP_HEADER_BYTES;
    bool end = false;
    for (;;) {
        /* Parse until the ring is full (records of other key groups are
         * passed over) or the stream ends. */
        while (!end && queued < AHEAD) {
            struct snap_rec *r = &ring[(head + queued) & (AHEAD - 1)];
            int64_t k = rec_parse(p + off, len - off, t->config.value_bytes, timed, r);
            if (k < 0)
                return (int)k; /* a verified stream that is not one spate wrote */
            off += (size_t)k;
            if (r->type == REC_END) {
                if (off != len)
                    return -EBADMSG;
                end = true;
                break;
            }
            uint32_t group = sp_key_group(r->hash, t->config.key_groups_total);
            if (group < first || group - first >= t->config.key_group_count)
                continue;
            if (prefetch)
                sp_table_prefetch(t, r->hash);
            queued++;
        }
        if (queued == 0)
            return 0;
        rc = rec_apply(t, &ring[head], absent, timed);
        if (rc < 0)
            return rc;
        sp_table_unpin(t); /* no entry pointer is held past a record */
        head = (head + 1) & (AHEAD - 1);
        queued--;
    }
}
