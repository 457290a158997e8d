/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One partition's log, as Kafka lays it out on disk: segment files named by
 * their base offset in 20 digits (`00000000000000000000.log`), each holding
 * RecordBatch v2 bytes exactly as the broker serves them, with a sparse
 * offset index (`.index`: relative offset int32, file position int32) and a
 * sparse time index (`.timeindex`: timestamp int64, relative offset int32),
 * big-endian as Kafka writes them. The log start offset that DeleteRecords
 * moves lives in the file `log-start-offset` of the partition's directory,
 * replaced atomically (write, fsync, rename).
 *
 * It is not a broker: it neither validates batches (the caller has checked
 * magic, CRC and lengths; a compacted log refuses records without a key),
 * nor knows about replication or transactions. Compaction (sp_plog_clean)
 * keeps offsets but leaves gaps between the batches of cleaned segments.
 *
 * Threads: a log belongs to the shard that opened it; every call is made on
 * that shard and every callback runs there. There are no locks.
 *
 * I/O: appends, reads, time look-ups and flushes go through the shard's
 * io_uring (sp_io.h) and complete later on the shard. Opening (recovery),
 * closing, DeleteRecords and retention use plain system calls: they create,
 * rename, truncate and unlink files, which sp_io.h does not offer, and are
 * rare. The error path of a failed write truncates the segment with
 * ftruncate(2) too.
 *
 * Invariants:
 *  - start_offset <= stable_end <= end_offset;
 *  - offsets increase: batch i of the log starts after batch i-1's last
 *    offset, at its last offset + 1 except in segments the cleaner rewrote
 *    (which may have gaps); a segment ends where the next one begins;
 *  - readers see only the stable part: bytes whose write completed (and, with
 *    SP_PLOG_FLUSH_EVERY, whose fsync did); a torn or failed write is
 *    truncated away before anything after it becomes stable;
 *  - only the last segment is ever written; a segment is fsync'd (data and
 *    indexes) when the log rolls past it, so recovery trusts older segments
 *    and scans only the last one.
 */
#ifndef SP_PLOG_H
#define SP_PLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_reactor.h"

/* When appended bytes are made durable. */
enum sp_plog_flush {
    SP_PLOG_FLUSH_EVERY,    /* fsync before an append completes (and becomes readable) */
    SP_PLOG_FLUSH_INTERVAL, /* fsync every flush_interval_ms, on a shard timer */
    SP_PLOG_FLUSH_OS,       /* never: the page cache decides (sp_plog_flush still works) */
};

struct sp_plog_config {
    const char *dir;               /* the partition's directory, created if missing (borrowed
                                      until sp_plog_open returns) */
    uint64_t segment_bytes;        /* roll to a new segment past this; at most INT32_MAX */
    uint32_t index_interval_bytes; /* an offset/time index entry every this many bytes */
    enum sp_plog_flush flush;
    uint64_t flush_interval_ms;   /* SP_PLOG_FLUSH_INTERVAL only; > 0 */
    int64_t retention_ms;         /* delete segments whose newest timestamp is older; -1 none */
    int64_t retention_bytes;      /* delete oldest segments while the log is larger; -1 none */
    uint32_t append_buffer_bytes; /* most bytes of appends queued or in flight */
    /* Topic configs (Kafka's names in comments); see "Compaction" below. */
    unsigned cleanup;                 /* cleanup.policy: SP_PLOG_CLEANUP_* bits */
    uint32_t max_message_bytes;       /* max.message.bytes: a larger batch is refused; 0 none */
    int64_t delete_retention_ms;      /* delete.retention.ms: tombstones kept at least this */
    int64_t min_compaction_lag_ms;    /* min.compaction.lag.ms: newer segments are not cleaned */
    double min_cleanable_dirty_ratio; /* min.cleanable.dirty.ratio: 0 to 1 */
    uint64_t cleaner_interval_ms;     /* retention and cleaning on a shard timer; 0: only on call */
    uint32_t cleaner_keys_max;        /* most distinct keys one cleaning pass may hold */
};

/* cleanup.policy bits: delete (retention) and compact (the cleaner), or both. */
#define SP_PLOG_CLEANUP_DELETE 0x1u
#define SP_PLOG_CLEANUP_COMPACT 0x2u
/* Kafka's cleaner defaults: a day of tombstones, half the log dirty; 2^20 keys a pass. */
#define SP_PLOG_DELETE_RETENTION_MS_DEFAULT 86400000
#define SP_PLOG_DIRTY_RATIO_DEFAULT 0.5
#define SP_PLOG_CLEANER_KEYS_MAX_DEFAULT (1u << 20)

/* Kafka's defaults: 1 GiB segments, an index entry every 4 KiB, 8 MiB of appends in flight. */
#define SP_PLOG_SEGMENT_BYTES_DEFAULT (1ull << 30)
#define SP_PLOG_INDEX_INTERVAL_BYTES_DEFAULT 4096u
#define SP_PLOG_APPEND_BUFFER_BYTES_DEFAULT (8u << 20)
/* Appends (and flushes) queued or in flight at once, whatever their bytes. */
#define SP_PLOG_APPENDS_MAX 4096u
/* Reads and time look-ups in flight at once. */
#define SP_PLOG_READS_MAX 32u

/* Fills `c` with the defaults for directory `dir`: no retention, flush OS. */
void sp_plog_config_default(struct sp_plog_config *c, const char *dir);

struct sp_plog;

/*
 * Opens (creating it if missing) the log in c->dir for `shard`, recovering
 * it: finds the segments, reads the log start offset, loads the indexes of
 * all but the last segment, scans the last segment batch by batch (length,
 * magic 2, offsets in sequence, CRC-32C), truncates it at the first bad or
 * torn batch and rebuilds its indexes. Synchronous system calls; call it
 * before serving, on the shard that will use the log. Returns 0 and *out;
 * -EINVAL (bad config), -ENOMEM, -EBADMSG (a segment file name or the start
 * offset file is not what this code writes), or the -errno of a system call.
 */
SP_MUST_CHECK int sp_plog_open(struct sp_shard *shard, const struct sp_plog_config *c,
                               struct sp_plog **out);

/*
 * Closes the files and frees the log. Writes the last segment's index files
 * (recovery rebuilds them anyway). Call it on the log's shard, outside the
 * log's callbacks, when every append, flush, read and time look-up of the
 * caller has completed (asserted). The interval timer's own fsync may still
 * be in flight: the log is then freed when it completes, so the runtime must
 * keep turning (it does while draining). NULL is a no-op.
 */
void sp_plog_close(struct sp_plog *log);

/* The log start offset: the first offset a read may ask for. */
int64_t sp_plog_start_offset(const struct sp_plog *log);
/* The next offset to assign (Kafka's log end offset). */
int64_t sp_plog_end_offset(const struct sp_plog *log);
/* The end of what has completed: the high watermark readers may see. */
int64_t sp_plog_stable_end(const struct sp_plog *log);
/* Segments in the log (deleted ones not counted). */
uint32_t sp_plog_segment_count(const struct sp_plog *log);
/* Stable bytes in all segments. */
uint64_t sp_plog_size_bytes(const struct sp_plog *log);

/* Counters and high-water marks, since open. */
struct sp_plog_stats {
    uint64_t append_count;        /* appends completed */
    uint64_t append_failed_count; /* appends failed through fn */
    uint64_t write_count;         /* pwrite requests (one per group of appends) */
    uint64_t fsync_count;         /* fsync requests on segment data (rolls' included) */
    uint64_t roll_count;          /* segments rolled */
    uint64_t read_count;          /* reads and time look-ups completed */
    uint32_t queued_max;          /* most appends and flushes queued at once */
    uint32_t queued_bytes_max;    /* most bytes of appends queued at once */
};

/* Copies the log's counters into *out. */
void sp_plog_stats(const struct sp_plog *log, struct sp_plog_stats *out);

/*
 * Called when an append or a flush completes: err 0 and the offset (an
 * append's base offset; for a flush, the end offset it made durable), or
 * -errno and -1.
 */
typedef void sp_plog_append_fn(void *ctx, int err, int64_t offset);

/*
 * Appends `len` bytes of one or more whole v2 record batches, already
 * validated by the caller (magic 2, CRC good, lengths consistent). Copies
 * them (the caller's buffer may go at once) and assigns offsets from the end
 * offset: batch i's baseOffset (bytes 0..7, outside the CRC) is rewritten to
 * the next free offset. Completes in order with fn(ctx, 0, base_offset) once
 * written (and fsync'd with SP_PLOG_FLUSH_EVERY), or fn(ctx, -errno, -1): a
 * failed write (-ENOSPC on a full disk, -EIO) fails that append and every
 * append queued behind it, truncates what was written of them, and gives
 * their offsets back, so the log stays consistent and later appends may
 * succeed. Appends queued after the failure was seen are not affected.
 * fn may call any sp_plog function but sp_plog_close.
 *
 * Returns 0 (fn will run, never before this returns); -EAGAIN when the
 * append buffer (append_buffer_bytes) or the queue (SP_PLOG_APPENDS_MAX) is
 * full: retry after some appends completed; -EMSGSIZE when `len` exceeds
 * append_buffer_bytes or INT32_MAX, or a batch exceeds max_message_bytes;
 * -EBADMSG when the bytes are not whole v2 batches (a length that overruns,
 * magic not 2, fewer than 61 bytes) or, in a log with cleanup compact, a
 * data batch has a record without a key (or records that do not parse). fn
 * does not run for any of those.
 */
SP_MUST_CHECK int sp_plog_append(struct sp_plog *log, const uint8_t *batches, uint32_t len,
                                 sp_plog_append_fn *fn, void *ctx);

/*
 * Makes everything appended so far durable (fsync), then fn(ctx, 0,
 * end_offset) in order with the appends, or fn(ctx, -errno, -1). Returns 0
 * or -EAGAIN (queue full).
 */
SP_MUST_CHECK int sp_plog_flush(struct sp_plog *log, sp_plog_append_fn *fn, void *ctx);

/*
 * Called with the result of a read: err 0 and `len` bytes of whole batches
 * at `data` (valid only during the call; NULL when len is 0), or -errno.
 */
typedef void sp_plog_read_fn(void *ctx, int err, const uint8_t *data, uint32_t len);

/*
 * Reads whole batches of one segment, from the batch containing `offset`
 * on, at most max_bytes of them, but always at least one whole batch when
 * offset < stable end, even a larger one (as Kafka does), and never past the
 * stable end as it was at this call. Finds the batch through the sparse
 * offset index, then scans. len is 0 when stable_end <= offset <= end_offset
 * (nothing readable yet). fn runs later on the shard, never before this
 * returns; -EIO through fn when the segment's bytes are not batches.
 *
 * fn may call any sp_plog function but sp_plog_close.
 *
 * Returns 0; -ERANGE (Kafka's OFFSET_OUT_OF_RANGE) when offset < start or
 * offset > end_offset; -EAGAIN when SP_PLOG_READS_MAX reads are in flight.
 * fn does not run for those.
 */
SP_MUST_CHECK int sp_plog_read(struct sp_plog *log, int64_t offset, uint32_t max_bytes,
                               sp_plog_read_fn *fn, void *ctx);

/*
 * Called with the result of sp_plog_read_slice: err 0 and `len` bytes of
 * the file `fd` from `pos` (fd is a duplicate the callee owns and must
 * close; -1 and len 0 when there is nothing to read yet), or -errno.
 */
typedef void sp_plog_slice_fn(void *ctx, int err, int fd, uint64_t pos, uint32_t len);

/*
 * Called by sp_plog_scan with the start of each batch: its first `len`
 * bytes (the whole batch when it is at most SP_PLOG_SCAN_BYTES, else the
 * start: the v2 header at least). Nonzero stops the scan and is returned.
 */
typedef int sp_plog_scan_fn(void *ctx, const uint8_t *batch, size_t len);
#define SP_PLOG_SCAN_BYTES 128u

/*
 * Walks the stable batches from the one holding `from` to the end, in
 * offset order, with synchronous preads of their starts (the offset index
 * finds the first): for rebuilding state from the log when it opens (a
 * broker's producer state), not for serving. Returns 0, fn's nonzero
 * return, or -errno (-EIO when a segment holds something else than whole
 * batches).
 */
SP_MUST_CHECK int sp_plog_scan(struct sp_plog *log, int64_t from, sp_plog_scan_fn *fn, void *ctx);

/*
 * sp_plog_read without reading: where the bytes are, for a caller that
 * sends them from the file itself (a mapping, sendfile). The range starts at
 * the batch containing `offset` and holds at most max_bytes (at least that
 * batch), within one segment and the stable end; its last batch may be cut
 * short (Kafka's Fetch allows it: clients drop a partial trailing batch).
 * Only the batch headers before the first are read (through the offset
 * index). Returns as sp_plog_read does.
 */
SP_MUST_CHECK int sp_plog_read_slice(struct sp_plog *log, int64_t offset, uint32_t max_bytes,
                                     sp_plog_slice_fn *fn, void *ctx);

/*
 * Inside a read's fn, with its `data`: hands the caller the malloc'd buffer
 * `data` points into (free it with free()), so the bytes need no copy; the
 * log reads into a new buffer next time. Returns the buffer's start.
 */
void *sp_plog_read_take(struct sp_plog *log, const uint8_t *data);

/*
 * ListOffsets by time: fn(ctx, 0, o) with o the base offset of the first
 * batch (at or after the log start) whose maxTimestamp >= ts, or the stable
 * end when there is none; fn(ctx, -errno, -1) on a read error. Finds the
 * segment by its newest timestamp, the place in it through the time index,
 * then scans batch headers with reads on the ring. Asynchronous because the
 * scan reads the segment (the API asked for a plain return; a deviation).
 * Returns 0 or -EAGAIN (SP_PLOG_READS_MAX in flight); fn never runs before
 * this returns, and may call any sp_plog function but sp_plog_close.
 */
SP_MUST_CHECK int sp_plog_offset_for_time(struct sp_plog *log, int64_t ts, sp_plog_append_fn *fn,
                                          void *ctx);

/*
 * Called with the result of a record look-up by time: err 0 with the offset
 * and timestamp of the record found, or -1 and -1 when there is none; or
 * -errno (then -1, -1).
 */
typedef void sp_plog_time_fn(void *ctx, int err, int64_t offset, int64_t timestamp);

/* The target timestamp that asks for the record with the largest timestamp. */
#define SP_PLOG_TIME_MAX_TIMESTAMP (-3)

/*
 * ListOffsets by time, as Kafka answers it: the first record (at or after
 * the log start, below the stable end) whose timestamp is >= ts, with that
 * timestamp; with ts SP_PLOG_TIME_MAX_TIMESTAMP, the first record that has
 * the log's largest timestamp. Compressed batches are decompressed to find
 * the record. Asynchronous like sp_plog_offset_for_time. Returns 0, -EAGAIN
 * (SP_PLOG_READS_MAX in flight) or -EINVAL (ts < 0 and not -3); fn never
 * runs before this returns, and may call any sp_plog function but
 * sp_plog_close.
 */
SP_MUST_CHECK int sp_plog_lookup_time(struct sp_plog *log, int64_t ts, sp_plog_time_fn *fn,
                                      void *ctx);

/*
 * DeleteRecords: moves the log start to `offset` (persisted first, in the
 * start offset file) and deletes the segments wholly before it (never the
 * last one). An offset at or before the start is a no-op. Synchronous
 * system calls. Returns the number of segments deleted; -ERANGE when offset
 * > stable end; the -errno of writing the start offset file (then nothing
 * changed).
 */
SP_MUST_CHECK int sp_plog_delete_before(struct sp_plog *log, int64_t offset);

/*
 * Retention: deletes the oldest segments (never the last, which takes the
 * appends) while their newest timestamp is older than now_ms - retention_ms
 * (a segment without timestamps, maxTimestamp -1, never expires by time)
 * or while the log without them is still at least retention_bytes. The log
 * start moves to the first kept segment's base. Returns the number of
 * segments deleted (0 when retention is off).
 */
int sp_plog_retain(struct sp_plog *log, int64_t now_ms);

/*
 * Changes the settings a topic config may change on an open log: segment
 * bytes (from the next roll), retention, max message bytes, cleanup policy
 * and the cleaner's settings. The directory, flush policy, index interval
 * and append buffer stay as opened. Returns 0 or -EINVAL (bad values; then
 * nothing changed).
 */
SP_MUST_CHECK int sp_plog_set_config(struct sp_plog *log, const struct sp_plog_config *c);

/*
 * Compaction (cleanup.policy compact), Kafka's log cleaner for one log:
 * when the closed segments (never the last one, nor one whose roll is in
 * flight, nor any from the first whose newest timestamp is within
 * min_compaction_lag_ms of now) hold at least min_cleanable_dirty_ratio of
 * bytes not cleaned yet, rewrites each of them keeping, per key, only the
 * record with the latest offset among those segments. Records keep their
 * offsets (a batch keeps its base offset and last offset delta; its CRC is
 * recomputed; a compressed batch is recompressed with its codec); a batch
 * left empty is dropped, so offsets may have gaps. A tombstone (null value)
 * that is the latest for its key is dropped once its timestamp is older
 * than now_ms - delete_retention_ms. Control and transactional batches are
 * kept untouched (a limit: aborted records are not removed either).
 *
 * Each segment is replaced atomically: `<base>.log.cleaned` is written and
 * fsync'd, the old index files are removed, the file is renamed over the
 * segment, the directory fsync'd, and the new indexes written (temporary
 * file, rename). A crash at any point leaves either the old segment or the
 * new one (recovery removes `.cleaned` leftovers and rebuilds missing
 * indexes). Reads in flight keep reading the old file. Synchronous system
 * calls on the log's shard.
 *
 * Returns the number of segments rewritten (0 when there was nothing to
 * do); -ENOBUFS when the segments hold more than cleaner_keys_max distinct
 * keys (nothing changed); -ENOMEM; -EIO when a segment's bytes are not good
 * batches; the -errno of a system call (the segment being rewritten keeps
 * its old file).
 */
SP_MUST_CHECK int sp_plog_clean(struct sp_plog *log, int64_t now_ms);

/* Cleaner counters, since open. */
struct sp_plog_clean_stats {
    uint64_t pass_count;                /* passes that rewrote something */
    uint64_t records_removed;           /* records (tombstones included) removed */
    uint64_t bytes_before, bytes_after; /* of the segments rewritten */
};
void sp_plog_clean_stats(const struct sp_plog *log, struct sp_plog_clean_stats *out);

#endif /* SP_PLOG_H */
