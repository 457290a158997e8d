/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state table: the one hash table every stateful operator keeps its
 * state in (window contents and aggregates, per-key values, timers). One per
 * state per shard, inside the shard's managed memory, organised by key group.
 *
 * An entry is (key bytes, namespace, fixed-size value). The namespace is a
 * 64-bit integer the operator gives meaning to: a window's end, a timer's
 * timestamp, 0 for plain per-key state. Entries live in managed-memory
 * segments, appended log-style, and every segment holds entries of one key
 * group only, so a snapshot or a rescale can take whole key groups, and a
 * checkpoint can copy only the segments written since the last one (each
 * segment records the table version of its last write). Entries never move:
 * a value pointer stays valid until its entry is deleted. A segment whose
 * entries are all deleted goes back to the budget (window state dies
 * wholesale, so windows free their memory as they fire).
 *
 * The index is open addressing with linear probing and backward-shift
 * deletion; its slots also live in segments (a directory of them), and it
 * doubles when three quarters full. A slot holds the entry's reference and
 * the low 32 bits of its hash.
 *
 * With `ns_order` set, the table also keeps, per namespace, a doubly linked
 * list of its entries and a min-heap of the namespaces present, so an
 * operator can visit namespaces in increasing order (fire windows or timers
 * up to a watermark) and every entry of one namespace in O(its size).
 *
 * Running out of the budget is -ENOBUFS (NULL from upsert): the caller
 * decides (backpressure, fail the job). With a spill (config.spill, see
 * sp_spill.h) the table first writes cold entry segments to disk and
 * reads them back when an entry of theirs is touched; an entry pointer then
 * stays valid only until the spill's owner next advances its epoch (the
 * executor: until the operator returns to the reactor), and only the
 * working set since then must fit the budget.
 * A table belongs to one shard and is used only on its thread.
 *
 * Time to live (ttl_ms, Flink's StateTtlConfig with OnCreateAndWrite,
 * NeverReturnExpired, processing time): the table keeps per entry the time
 * of its last write (upsert and find count as writes, sp_table_get does
 * not), from a clock the owner advances with sp_table_ttl_tick, so no hot
 * path reads the time. An entry whose last write is ttl_ms or more before
 * that clock is expired: it is never returned (get and find give NULL,
 * upsert makes a fresh zeroed one, iteration and namespace visits skip
 * it). Expired entries are deleted when found and by each tick, which looks
 * at the next ttl_cleanup_entries entries of a round robin over the entry
 * segments (Flink's incremental cleanup); full snapshots leave them out.
 */
#ifndef SP_TABLE_H
#define SP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_mem.h"
#include "sp_spill.h"

#define SP_TABLE_REF_NONE UINT32_MAX
#define SP_TABLE_DEAD 0x80000000u
#define SP_TABLE_KEY_MAX (SP_TABLE_DEAD - 1)

/* An entry's header; the value follows (8-byte aligned), then the key. */
struct sp_table_entry {
    uint64_t hash;
    int64_t ns;
    /* ns_order: the block of its namespace's list that holds it and where
     * in it. Tables with a TTL but no ns_order keep the time of the last
     * write here (sp_table.ttl_off). */
    uint32_t ns_block;
    uint32_t ns_slot;
    uint32_t key_len; /* SP_TABLE_DEAD set once deleted */
    uint32_t bytes;   /* the whole entry, header included */
    uint32_t version; /* table version of its last possible write (snapshots) */
    uint32_t created; /* table version it was inserted in (tombstones) */
};
_Static_assert(sizeof(struct sp_table_entry) == 40, "entry header: 40 bytes, value 8-aligned");

/* Growable array of fixed-size elements in managed-memory segments. */
struct sp_segvec {
    struct sp_budget *budget;
    struct sp_spill *spill; /* makes room in the budget when it is full */
    uint8_t **segs;
    uint32_t seg_count;
    uint32_t elem_shift; /* log2(element bytes) */
    uint32_t per_seg_shift;
    uint64_t len;
};

struct sp_table_seg {
    uint8_t *base;
    uint32_t key_group; /* every entry in it is of this group */
    uint32_t used;      /* bytes appended */
    uint32_t live;      /* entries not deleted */
    uint32_t version;   /* table version of the last write */
    uint32_t snap_seq;  /* the snapshot that copied it aside or need not walk it */
    /* Spill: base is NULL and slot is its file slot + 1 while on disk (base
     * NULL and slot 0: a free segment slot); touch is the spill's epoch of
     * the last access (pinned while current), seen what the clock's hand
     * saw there last (a touch since is a second chance). */
    uint32_t slot;
    uint32_t touch;
    uint32_t seen;
};

struct sp_table_config {
    const char *name;
    uint32_t value_bytes;
    uint32_t key_group_first; /* the shard's range [first, first + count) */
    uint32_t key_group_count;
    uint32_t key_groups_total; /* the job's key groups (hash -> group) */
    bool ns_order;             /* keep namespace lists and their heap */
    /* Place entries by key and namespace, not by key alone: for many
     * namespaces per key (timers, list elements), which would otherwise
     * share one probe run. The prefetch helpers below then do not apply. */
    bool ns_in_hash;
    struct sp_budget *budget; /* segments come from here */
    /* Cold entry segments go to disk when the budget is full (NULL: never;
     * the budget must be the spill's). */
    struct sp_spill *spill;
    /* Snapshots: bytes held aside by copy-on-write plus tombstones (0: the
     * default, SP_TABLE_SNAPSHOT_HELD_BYTES_DEFAULT). */
    uint64_t snapshot_held_bytes_max;
    /* Time to live of an entry after its last write, in ms of the clock
     * sp_table_ttl_tick advances (0: entries never expire). */
    uint64_t ttl_ms;
    /* Entries each tick looks at for expired ones (0: the default,
     * SP_TABLE_TTL_CLEANUP_DEFAULT). */
    uint32_t ttl_cleanup_entries;
};

#define SP_TABLE_TTL_CLEANUP_DEFAULT 1000u

#define SP_TABLE_SNAPSHOT_HELD_BYTES_DEFAULT (1ull << 30)

/* A growable malloc'd byte buffer (snapshot side buffers). */
struct sp_table_buf {
    uint8_t *data;
    size_t len;
    size_t head; /* bytes already consumed from the front */
    size_t cap;
};

/* The snapshot being streamed, and what deltas need kept (see below). */
struct sp_table_snap {
    bool active; /* begun, not yet fully read or cancelled: copy-on-write on */
    bool ever;   /* a snapshot was begun once: keep tombstones and versions */
    bool full;
    bool crc_closed;
    int err;            /* the snapshot failed (held bytes over the limit, -ENOMEM) */
    uint32_t phase;     /* header, tombstones, entries, end, done */
    uint32_t v;         /* its version */
    uint32_t since;     /* delta: versions (since, v] */
    uint32_t seq;       /* segments with this snap_seq are not walked */
    uint32_t walk_seg;  /* the walker: segments below walk_seg are done, */
    uint32_t walk_off;  /* walk_seg itself up to walk_off */
    uint32_t walk_end;  /* segment slots in use at begin */
    uint32_t crc;       /* CRC-32C of the bytes streamed so far */
    uint32_t tomb_lost; /* a tombstone of this version could not be kept */
    uint64_t entry_count;
    uint64_t tomb_count;
    size_t tomb_cursor;       /* next tombstone to stream */
    struct sp_table_buf cow;  /* records copied aside, streamed next */
    struct sp_table_buf pend; /* a record that did not fit the caller's buffer */
    struct sp_table_buf tomb; /* tombstone log: {tag, length, record} */
    uint8_t *peek;            /* a spilled segment's bytes, read for the walker */
    uint32_t peek_no;         /* which (valid while it is walk_seg) */
    bool peek_valid;
};

struct sp_table {
    struct sp_table_config config;
    uint32_t value_off; /* sizeof(struct sp_table_entry) */
    uint32_t key_off;   /* value_off + value bytes rounded to 8 */
    /* TTL: where the last write's time (u64 ms) lives in an entry: in
     * ns_block/ns_slot without ns_order (no extra byte), else between the
     * header and the value (value_off is 8 more). 0 without TTL. */
    uint32_t ttl_off;
    uint32_t seg_shift;
    uint32_t off_bits; /* bits of a ref that address 8-byte units in a segment */

    /* Entry segments: slots in `segs`, reused through `seg_free`. */
    struct sp_table_seg *segs;
    uint32_t seg_count; /* slots ever used */
    uint32_t seg_cap;
    uint32_t *seg_free;
    uint32_t seg_free_count;
    uint32_t *open_seg; /* [key_group_count]: the group's segment being appended */

    /* Index. */
    struct sp_segvec slots;
    uint64_t mask;
    uint64_t count;
    uint64_t grow_at;

    uint32_t version;
    struct sp_table_snap snap;

    /* ns_order: namespace -> {head, tail, count} (a table of its own) and a
     * min-heap of the namespaces present (may hold stale ones). */
    struct sp_table *dir;
    struct sp_segvec heap;
    struct sp_segvec blocks;         /* struct sp_table_ns_block */
    uint32_t block_free;             /* free list through `next` */
    struct sp_table_entry *ns_cache; /* the directory entry used last */
    int64_t ns_cache_key;

    /* TTL: the clock (sp_table_ttl_tick) and the cleanup's cursor, which
     * walks the entry segments like the snapshot walker. */
    uint64_t ttl_now_ms;
    uint64_t ttl_live_from; /* entries written before it are expired */
    uint32_t ttl_seg;
    uint32_t ttl_walk_off;

    /* Registered with config.spill: its entry segments may go to disk (a
     * namespace directory only takes room through it). */
    bool spill_attached;
    uint32_t spill_gen; /* unpins so far: what a touch stamps its segment with */
};

/*
 * A namespace's entries are a list of blocks of entry references (an
 * unrolled list), one cache line each: visiting a namespace reads blocks
 * and can load a dozen entries at once, where a list threaded through the
 * entries would wait for one miss per entry. A deleted entry leaves a hole;
 * a block without live entries is unlinked and reused.
 */
#define SP_TABLE_NS_BLOCK_REFS 12
struct sp_table_ns_block {
    uint32_t next; /* block indices, SP_TABLE_REF_NONE at the ends */
    uint32_t prev;
    uint32_t used; /* refs appended */
    uint32_t live; /* of which not deleted */
    uint32_t refs[SP_TABLE_NS_BLOCK_REFS];
};

/* Per-namespace list header kept in the directory. */
struct sp_table_ns {
    uint32_t head; /* first and last block */
    uint32_t tail;
    uint64_t count;
};

/*
 * Prepares an empty table. Returns 0, -EINVAL for a bad configuration,
 * -ENOBUFS when the budget cannot hold the first index segment, -ENOMEM.
 */
SP_MUST_CHECK int sp_table_init(struct sp_table *t, const struct sp_table_config *config);

/* Returns every segment to the budget. */
void sp_table_deinit(struct sp_table *t);

static inline uint64_t sp_table_count(const struct sp_table *t)
{
    return t->count;
}

/* Segments the table holds now (entries, index, namespace bookkeeping). */
uint32_t sp_table_segments(const struct sp_table *t);

/* The table's owner holds no pointer into this table (between two records,
 * say): what it touched may be spilled again. Pointers into other tables
 * stay pinned (an operator upstream in the same chain may hold some). */
static inline void sp_table_unpin(struct sp_table *t)
{
    t->spill_gen++;
}

/* Reads the spilled segment of `ref` back; its entry, or NULL when it
 * could not be (the spill's error is then set). For sp_table_entry_at. */
struct sp_table_entry *sp_table_entry_load(struct sp_table *t, uint32_t ref);

/* The entry of reference `ref`, read back from disk if it was spilled (NULL
 * when that failed: the spill's sticky error). */
static inline struct sp_table_entry *sp_table_entry_at(struct sp_table *t, uint32_t ref)
{
    struct sp_table_seg *seg = &t->segs[ref >> t->off_bits];
    if (SP_UNLIKELY(seg->base == NULL)) /* only ever with a spill */
        return sp_table_entry_load(t, ref);
    seg->touch = t->spill_gen;
    return (struct sp_table_entry *)(seg->base + ((size_t)(ref & ((1u << t->off_bits) - 1)) << 3));
}

/* The entry of `ref` if its segment is in memory, else NULL; no access. */
static inline const struct sp_table_entry *sp_table_entry_resident(const struct sp_table *t,
                                                                   uint32_t ref)
{
    const uint8_t *base = t->segs[ref >> t->off_bits].base;
    return base == NULL
               ? NULL
               : (const struct sp_table_entry *)(base +
                                                 ((size_t)(ref & ((1u << t->off_bits) - 1)) << 3));
}

static inline void *sp_table_value(const struct sp_table *t, struct sp_table_entry *e)
{
    return (uint8_t *)e + t->value_off;
}

static inline const void *sp_table_key(const struct sp_table *t, const struct sp_table_entry *e)
{
    return (const uint8_t *)e + t->key_off;
}

/*
 * Finds (hash, key, ns). `hash` must be sp_key_hash(key) (the key group is
 * derived from it). Returns the entry or NULL. The caller may write through
 * it, so for snapshots this counts as a write (sp_table_get does not).
 */
struct sp_table_entry *sp_table_find(struct sp_table *t, uint64_t hash, const void *key,
                                     uint32_t key_len, int64_t ns);

/*
 * Finds (hash, key, ns) or inserts it with a zeroed value; `*created` says
 * which. Returns the entry, or NULL with `*err` = -ENOBUFS (budget), -E2BIG
 * (the entry does not fit one segment), -ENOMEM.
 */
struct sp_table_entry *sp_table_upsert(struct sp_table *t, uint64_t hash, const void *key,
                                       uint32_t key_len, int64_t ns, bool *created, int *err);

/* Deletes an entry found by find/upsert/iteration. */
void sp_table_delete(struct sp_table *t, struct sp_table_entry *e);

/* The index slot of `hash`'s home position (inline: the prefetches below
 * run once or twice per record). Tables without ns_in_hash only. */
static inline const uint64_t *sp_table_home_slot(const struct sp_table *t, uint64_t hash)
{
    uint64_t pos = hash & t->mask;
    const struct sp_segvec *v = &t->slots;
    return (const uint64_t *)(v->segs[pos >> v->per_seg_shift] +
                              ((size_t)(pos & ((1ull << v->per_seg_shift) - 1)) << 3));
}

/* Hints the CPU to load the index slot of `hash` (batch lookups)... */
static inline void sp_table_prefetch(const struct sp_table *t, uint64_t hash)
{
    __builtin_prefetch(sp_table_home_slot(t, hash), 1);
}

/* ...and, a few records later, the entry that slot names. */
static inline void sp_table_prefetch_entry(const struct sp_table *t, uint64_t hash)
{
    uint64_t s = *sp_table_home_slot(t, hash);
    if (s != 0) {
        const uint8_t *e = (const uint8_t *)sp_table_entry_resident(t, (uint32_t)s - 1);
        if (e == NULL)
            return; /* spilled: the lookup reads it back */
        __builtin_prefetch(e, 1);
        __builtin_prefetch(e + t->key_off, 1); /* the key may start the next line */
    }
}

/* ---- Time to live ---- */

/*
 * Advances the TTL clock to `now_ms` (ms, any epoch; it never goes back: an
 * earlier time is ignored, so an entry once expired stays so) and deletes
 * the expired entries among the next ttl_cleanup_entries entries of the
 * cleanup's round (segments without entries count one each). The clock
 * starts at 0: tick before the first write. Entry pointers got before the
 * tick must be found again. Nothing but the clock for tables without TTL.
 */
void sp_table_ttl_tick(struct sp_table *t, uint64_t now_ms);

/* The TTL clock: the latest tick's time. */
static inline uint64_t sp_table_ttl_now(const struct sp_table *t)
{
    return t->ttl_now_ms;
}

/* The time of entry `e`'s last write (TTL tables only). */
uint64_t sp_table_write_ms(const struct sp_table *t, const struct sp_table_entry *e);

/* ---- ns_order tables ---- */

/* The smallest namespace with entries: true and `*ns`, or false when empty. */
bool sp_table_ns_min(struct sp_table *t, int64_t *ns);

/* First entry of namespace `ns` (insertion order), NULL when none. With a
 * TTL, it and sp_table_ns_next skip (and delete) expired entries; so
 * sp_table_ns_min and sp_table_ns_count may still count expired entries not
 * yet deleted, and ns_min may name a namespace whose ns_first is NULL. */
struct sp_table_entry *sp_table_ns_first(struct sp_table *t, int64_t ns);

/*
 * Deletes every entry of namespace `ns`, calling `fn` (when not NULL) on
 * each first, in insertion order. Faster than deleting one by one. `fn`
 * must not insert into or delete from this table. When `stop` (not NULL)
 * says so after a block of entries, it stops there and returns false: the
 * rest of the namespace stays for a later call. True when all are gone.
 * With a TTL, `fn` is not called on expired entries (they go all the same).
 */
bool sp_table_ns_drop(struct sp_table *t, int64_t ns,
                      void (*fn)(struct sp_table_entry *e, void *ctx), bool (*stop)(void *ctx),
                      void *ctx);

/* Entries in namespace `ns`. */
uint64_t sp_table_ns_count(struct sp_table *t, int64_t ns);

/* The next entry in the same namespace, NULL at the end. */
struct sp_table_entry *sp_table_ns_next(struct sp_table *t, const struct sp_table_entry *e);

/* ---- Whole-table iteration (snapshots, tests) ---- */

/* Calls fn for every live entry, by segment (expired ones skipped); fn must
 * not insert or delete, nor write: this is no write for snapshots (see
 * sp_table_get). */
void sp_table_foreach(struct sp_table *t, void (*fn)(struct sp_table_entry *e, void *ctx),
                      void *ctx);

/* Starts a new version: segments written from now on carry it. Versions
 * never go back; once snapshots are taken only sp_table_snapshot_begin
 * opens new ones. */
static inline void sp_table_set_version(struct sp_table *t, uint32_t version)
{
    t->version = version;
}

/* ---- Snapshots: what a checkpoint copies, asynchronously ----
 *
 * A snapshot is the table as it was at one instant (sp_table_snapshot_begin,
 * O(1): it closes the current version and opens the next), streamed out
 * afterwards in pieces (sp_table_snapshot_read) while the operator keeps
 * reading and writing the table. Copy-on-write keeps it exact: the first
 * time anything that may change an entry (find, upsert, delete, ns_drop,
 * ns_first/ns_next, whose callers may write through the pointer) touches a
 * segment the snapshot has not streamed yet, the segment's part of the
 * snapshot is copied aside first. Every entry records the version of its
 * last possible write; sp_table_get() reads without counting as one.
 *
 * Full snapshots hold every live entry (with a TTL, not expired when the
 * walker or copy-on-write encodes it). Incremental ones hold the entries
 * written in versions (since, v] and a tombstone (hash, key, namespace) for
 * every entry deleted in those versions that existed before them: applied
 * in order onto the snapshot of version `since`, they give version v's
 * table. The caller keeps which snapshot completed (a checkpoint that fails
 * just means the next delta starts from the same `since`) and tells the
 * table with sp_table_snapshot_complete(), which frees tombstones up to it.
 *
 * The stream's format (documented in docs/architecture.md): a header (magic,
 * format version, full/delta, since, v, value bytes, key groups total), then
 * records (tombstones before entries), then an end record with the counts,
 * so a truncated stream is refused. Each record carries its key hash, so a
 * restore can keep only its own key groups (restoring onto another shard
 * count).
 */

/* Starts a snapshot: full, or the delta since version `since` (0: full is
 * required). O(1): no walk, no allocation. Returns the snapshot's version v
 * (> since), or -EBUSY while another is being streamed (or failed and was
 * not cancelled), -EINVAL for a delta without a base (since 0, or not older
 * than the table's version), -ENOBUFS for a delta from before a version
 * whose tombstones could not all be kept (over snapshot_held_bytes_max: take
 * a full one), -EOVERFLOW when versions ran out. Entry pointers the caller
 * got before begin must not be written through after it: find them again. */
SP_MUST_CHECK int64_t sp_table_snapshot_begin(struct sp_table *t, bool full, uint32_t since);

/* Copies the next bytes of the stream into buf (at most cap; any cap works,
 * a few hundred KiB make few calls; records may straddle calls, the stream
 * is their concatenation): the count, 0 once everything was streamed (the
 * snapshot is over after the call that gave its last byte), -ENOBUFS when
 * copy-on-write went over snapshot_held_bytes_max, or -ENOMEM. After an
 * error the snapshot is lost: cancel it. 0 as well when none is active. */
SP_MUST_CHECK int64_t sp_table_snapshot_read(struct sp_table *t, void *buf, size_t cap);

/* Abandons the snapshot being streamed (a checkpoint that failed): what it
 * held aside is freed; tombstones stay for the next delta from the same
 * base. Nothing happens when none is active. */
void sp_table_snapshot_cancel(struct sp_table *t);

/* Snapshot `v` is part of a completed checkpoint: deltas start from it now;
 * tombstones of versions up to v are freed (those an active delta still
 * needs, after its `since`, stay). */
void sp_table_snapshot_complete(struct sp_table *t, uint32_t v);

/* Bytes held aside by copy-on-write and tombstones (metrics, tests). */
uint64_t sp_table_snapshot_held_bytes(const struct sp_table *t);

/*
 * Applies one stream (full or delta) onto the table: tombstones delete,
 * entries are upserted with their value; records of key groups outside the
 * table's range are skipped. Apply a full stream to an empty table, then its
 * deltas in order. The whole stream is checked (header, records, end record
 * with counts and CRC-32C) before anything is applied. Returns 0, -EBADMSG
 * (malformed, truncated, another value size, an entry too large for this
 * table's segments), -ENOBUFS (the budget is full), -ENOMEM; after the
 * last three the table holds part of the stream. Restored entries carry the
 * table's current version. With a TTL, they keep their last write's time
 * when the stream has them (a stream of a TTL table), else get the clock's;
 * a TTL table's stream restores onto a table without TTL too (times
 * dropped).
 */
SP_MUST_CHECK int sp_table_restore(struct sp_table *t, const void *stream, size_t len);

/*
 * The same for a stream whose bytes were verified already (a checkpoint
 * segment's checksum): no separate pass over it first. Every record is
 * still parsed within bounds, but a malformed one stops the restore part
 * way (-EBADMSG), with what came before it applied.
 */
SP_MUST_CHECK int sp_table_restore_verified(struct sp_table *t, const void *stream, size_t len);

/* Finds an entry without counting as a write (no copy-on-write, no version
 * stamp, no TTL refresh): for reads only; the entry must not be written
 * through. NULL for an expired entry (left for cleanup: this is no write). */
const struct sp_table_entry *sp_table_get(struct sp_table *t, uint64_t hash, const void *key,
                                          uint32_t key_len, int64_t ns);

#endif /* SP_TABLE_H */
