/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Spilling cold keyed state to local disk: one spill file per shard, shared
 * by every keyed-state table of the shard (the tables that name it in their
 * configuration).
 *
 * When a table needs a managed-memory segment and the shard's state budget
 * is spent, the table asks the spill to make room: a clock sweep over the
 * registered tables' entry segments picks cold ones, writes a batch of them
 * to the file through an io_uring ring the spill owns (one submission for
 * the batch), and returns their memory to the budget. An entry of a spilled
 * segment keeps its place in the index; touching it (a lookup whose probe
 * reaches it, a namespace visit) reads its segment back into memory, one
 * read on the ring, synchronously: the shard waits for the disk as Flink's
 * RocksDB backend waits in a Get. Segments on disk are never written to;
 * their file slot is freed once they are back.
 *
 * Pointers: a table hands out pointers into its segments, so a segment
 * touched since its table was last unpinned is pinned: it is never chosen.
 * Each table counts its unpins (a generation; a touch stamps the segment
 * with it): sp_table_unpin when its owner holds no pointer into that table
 * (an operator between two records), sp_spill_unpin for every table of the
 * spill when nobody holds any (the executor, where a batch starts down the
 * graph). The working set between two unpins must fit the budget, or the
 * table reports -ENOBUFS as it did without spilling.
 *
 * Segments chosen: entry segments holding live entries (the index,
 * namespace lists and heaps stay in memory: 8 to 16 bytes per entry); a
 * segment a key group is appending to only when no other can go (it is
 * then closed: the next entry starts a new one). The clock gives a second
 * chance to segments touched since the hand last passed them. The
 * executor's batch allocations make room through sp_spill_reclaim too.
 *
 * Errors: a failed write (a full disk, the file's limit) leaves the
 * segments in memory and the table's request fails as a full budget does.
 * A failed read loses the segment for this run: the error is sticky
 * (sp_spill_error), the lookup that needed it finds nothing, snapshots fail,
 * and the owner must fail the job (the executor checks each tick, and
 * before a shard reports done) so that it restarts from its last
 * checkpoint.
 *
 * The file is opened with O_TMPFILE (or created and unlinked at once), so
 * nothing outlives the process, a crash included. Its size is the highest
 * number of segments spilled at once; freed slots are reused.
 *
 * A spill belongs to one shard and is used on its thread only.
 */
#ifndef SP_SPILL_H
#define SP_SPILL_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_mem.h"

struct sp_table;

#define SP_SPILL_BATCH_DEFAULT 16u
#define SP_SPILL_BATCH_MAX 64u

struct sp_spill_config {
    const char *dir;    /* where the file is made (it must exist) */
    uint64_t max_bytes; /* file size limit (0: none) */
    uint32_t batch;     /* segments written per sweep (0: the default) */
};

struct sp_spill_stats {
    uint64_t segments_out; /* written to the file */
    uint64_t segments_in;  /* read back */
    uint32_t spilled;      /* segments on disk now */
    uint32_t spilled_max;
    uint64_t write_errors;
};

struct sp_spill {
    struct sp_spill_config config;
    struct sp_budget *budget; /* the shard's state budget the tables share */
    uint32_t seg_bytes;
    int fd;
    bool have_ring;
    struct io_uring ring;
    int err;       /* sticky: a segment could not be read back */
    uint8_t *peek; /* one segment: TTL cleanup and foreach read spilled ones here */
    /* file slots: [0, slot_count) made, free ones stacked */
    uint32_t slot_count;
    uint32_t slot_max;
    uint32_t *slot_free;
    uint32_t slot_free_count;
    uint32_t slot_free_cap;
    /* the tables, and the clock's hand over their segments */
    struct sp_table **tables;
    uint32_t table_count;
    uint32_t table_cap;
    uint32_t hand_table;
    uint32_t hand_seg;
    struct sp_spill_stats stats;
};

/*
 * Opens the spill file in config->dir for segments of `budget`'s pool.
 * Returns 0, -EINVAL, or the -errno of making the file.
 */
SP_MUST_CHECK int sp_spill_init(struct sp_spill *s, struct sp_budget *budget,
                                const struct sp_spill_config *config);

/* Closes the file (every table must have left). */
void sp_spill_deinit(struct sp_spill *s);

/* The caller holds no entry pointer into any table of this spill (in
 * table.c: it advances each table's generation). */
void sp_spill_unpin(struct sp_spill *s);

/* 0, or the sticky error of a segment that could not be read back. */
static inline int sp_spill_error(const struct sp_spill *s)
{
    return s->err;
}

/* ---- For state/ (table.c) ---- */

/* Segments the file can take now (free slots and growth to its limit). */
static inline uint64_t sp_spill_room(const struct sp_spill *s)
{
    return (uint64_t)s->slot_free_count + (s->slot_max - s->slot_count);
}

/* Registers / unregisters a table with the sweep. 0 or -ENOMEM. */
SP_MUST_CHECK int sp_spill_attach(struct sp_spill *s, struct sp_table *t);
void sp_spill_detach(struct sp_spill *s, struct sp_table *t);

/* Writes `n` segments to free slots (stored in slots_out). 0, -ENOSPC (the
 * file's limit or the disk), -EIO; nothing is kept on failure. */
SP_MUST_CHECK int sp_spill_write(struct sp_spill *s, uint8_t *const *segs, uint32_t n,
                                 uint32_t *slots_out);

/* Reads slot `slot` into `seg` (one segment). 0 or -EIO. */
SP_MUST_CHECK int sp_spill_read(struct sp_spill *s, uint32_t slot, void *seg);

/* The slot is no longer needed. */
void sp_spill_free(struct sp_spill *s, uint32_t slot);

/* Makes room in the budget: spills up to one batch of cold segments. 0 when
 * at least one went, -ENOBUFS when none could (all pinned or open), or a
 * write's error. In table.c: it walks the tables. */
SP_MUST_CHECK int sp_spill_reclaim(struct sp_spill *s);

#endif /* SP_SPILL_H */
