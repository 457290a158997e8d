/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to state/: what the table (table.c) and its snapshots
 * (snapshot.c) call of each other. The hot paths of table.c only test
 * t->snap.ever / t->snap.active and call in here when a snapshot concerns
 * them, and the TTL helpers both use; nothing here is for operators.
 */
#ifndef SP_TABLE_INT_H
#define SP_TABLE_INT_H

#include <string.h>

#include "sp_table.h"

/* Segment `no` is about to be written (an entry in it found, updated or
 * deleted) while a snapshot is active: copies its part of the snapshot
 * aside first unless the walker passed it or it was copied already. */
void sp_table_snap_touch(struct sp_table *t, uint32_t no);

/* Entry `e` (in segment `no`) is about to be deleted and t->snap.ever:
 * copy-on-write, then a tombstone when a base snapshot may hold it. */
void sp_table_snap_delete(struct sp_table *t, const struct sp_table_entry *e, uint32_t no);

/* Frees the snapshot's buffers (sp_table_deinit). */
void sp_table_snap_deinit(struct sp_table *t);

/*
 * Entry `e` of segment `no` may be written through the pointer the caller
 * gets: it is stamped with the current version, and so is its segment (a
 * delta skips segments not written since its base). An entry that already
 * carries the current version was written since the last begin, or created
 * since: it is no part of an active snapshot (whose entries are of older
 * versions), so there is nothing to copy and nothing to stamp. That is the
 * only branch of the hot path; it is taken once per entry per snapshot.
 */
static inline void sp_table_note_write(struct sp_table *t, struct sp_table_entry *e, uint32_t no)
{
    if (SP_UNLIKELY(e->version != t->version)) {
        if (t->snap.active)
            sp_table_snap_touch(t, no);
        t->segs[no].version = t->version;
        e->version = t->version;
    }
}

/* TTL tables: the time of entry `e`'s last write (memcpy: without ns_order
 * it shares bytes with ns_block/ns_slot). */
static inline uint64_t sp_table_ttl_written(const struct sp_table *t,
                                            const struct sp_table_entry *e)
{
    uint64_t ms;
    memcpy(&ms, (const uint8_t *)e + t->ttl_off, sizeof(ms));
    return ms;
}

static inline void sp_table_ttl_stamp(const struct sp_table *t, struct sp_table_entry *e,
                                      uint64_t ms)
{
    memcpy((uint8_t *)e + t->ttl_off, &ms, sizeof(ms));
}

/* Whether `e` has expired by the table's clock (false without TTL).
 * Flink's rule: expired once write time + ttl <= now (ttl_live_from is
 * now - ttl + 1, or 0 while now < ttl). */
static inline bool sp_table_expired(const struct sp_table *t, const struct sp_table_entry *e)
{
    return t->config.ttl_ms != 0 && sp_table_ttl_written(t, e) < t->ttl_live_from;
}

/* Segment `no` is spilled: its bytes read into `buf` (one segment) for a
 * walk that only reads, or NULL with the spill's sticky error set. */
const uint8_t *sp_table_seg_peek(struct sp_table *t, uint32_t no, uint8_t *buf);

/*
 * Inserts (hash, key, ns) with `value` (value_bytes), known to be absent:
 * a restore of a full stream into a table that was empty (a full stream
 * holds each key once). No probe for a match, no namespace lists: tables
 * without ns_order only. The entry, or NULL with *err as upsert's.
 */
struct sp_table_entry *sp_table_insert_absent(struct sp_table *t, uint64_t hash, const void *key,
                                              uint32_t key_len, int64_t ns, const void *value,
                                              int *err);

/* Grows the index now so that `count` entries fit without growing (a
 * restore knows what comes). 0, -ENOBUFS, -ENOMEM. */
SP_MUST_CHECK int sp_table_reserve(struct sp_table *t, uint64_t count);

#endif /* SP_TABLE_INT_H */
