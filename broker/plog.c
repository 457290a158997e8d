/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The partition log (sp_plog.h): segments, the append pipeline, reads and
 * time look-ups on the ring, recovery, DeleteRecords, retention, and the
 * log cleaner (compaction) with the timer that runs retention and it.
 *
 * Appends are copied into one ring buffer of append_buffer_bytes and queued
 * as descriptors (SP_PLOG_APPENDS_MAX of them). Offsets and the segment an
 * append goes to are decided at once, when it is queued; the bytes reach
 * the file through a single writer that works the queue in order: it rolls
 * the segment when a descriptor says so, writes every append that follows
 * contiguously in the buffer with one pwrite (group commit), fsyncs when the
 * flush policy says so, and only then makes them stable and calls their
 * callbacks. One request (or one group of parallel requests, for a roll) is
 * in flight at a time, so completions are in order by construction. A
 * failure fails the group and everything queued behind it, truncates the
 * segment back to its stable size and rewinds the end offset, so the next
 * append reuses the offsets and is written where the failed one would have
 * been.
 *
 * Indexes live in memory (sorted arrays, binary search) and go to their
 * files when the segment rolls (then fsync'd with it) and at close. Entries
 * are Kafka's: the offset index maps a batch's last offset to its position
 * every index_interval_bytes; the time index records the largest timestamp
 * so far and the last offset of the batch that had it, at the same points
 * and once more when the segment rolls.
 *
 * Segments are reference counted by the reads that use them: deleting one
 * unlinks its files at once and frees it when its last read completes.
 * The cleaner replaces a closed segment's struct with a new one on the
 * rewritten file; the old struct, still holding its descriptor on the old
 * file, lives on among the zombies while reads use it.
 *
 * The cleaner works with plain system calls on the shard (like retention):
 * a pass reads the closed segments twice (keys, then the rewrite), a batch
 * at a time, and holds the key map (24 bytes a key, at most
 * cleaner_keys_max keys) and one batch's buffers. It never touches the last
 * segment, the only one the writer writes, and skips a pass while a roll is
 * in flight (the roll's index writes use roll_buf, which it reuses).
 */
#include "sp_plog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sp_crc32c.h"
#include "sp_io.h"
#include "sp_record.h"
#include "sp_timer.h"

/* ---- Batch header fields (sp_record.h has the layout) ---- */

#define HDR_BASE_OFFSET 0
#define HDR_BATCH_LENGTH 8
#define HDR_MAGIC 16
#define HDR_CRC 17
#define HDR_ATTRIBUTES 21
#define HDR_LAST_OFFSET_DELTA 23
#define HDR_MAX_TIMESTAMP 35
#define HDR_BYTES SP_RECORD_BATCH_HEADER_BYTES

#define START_FILE "log-start-offset"
/* Scans read the segment this much at a time: a 4 KiB index interval's worth many times over. */
#define SCAN_BYTES (64u * 1024u)
#define ROLL_OPS 6

static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* What the header of the batch at `p` says (the first HDR_BYTES bytes). */
struct batch_info {
    int64_t base_offset;
    int64_t last_offset;
    int64_t max_timestamp;
    uint32_t size; /* 12 + batchLength */
};

/* Reads a header's fields; false when its length or magic cannot be a v2 batch. */
static bool batch_header(const uint8_t *p, struct batch_info *out)
{
    int32_t length = (int32_t)be32(p + HDR_BATCH_LENGTH);
    int32_t delta = (int32_t)be32(p + HDR_LAST_OFFSET_DELTA);
    if (length < HDR_BYTES - SP_RECORD_LOG_OVERHEAD_BYTES || length > INT32_MAX - 12)
        return false;
    if (p[HDR_MAGIC] != SP_RECORD_MAGIC_V2 || delta < 0)
        return false;
    out->base_offset = (int64_t)be64(p + HDR_BASE_OFFSET);
    out->last_offset = out->base_offset + delta;
    out->max_timestamp = (int64_t)be64(p + HDR_MAX_TIMESTAMP);
    out->size = (uint32_t)length + SP_RECORD_LOG_OVERHEAD_BYTES;
    return true;
}

/* ---- Segments ---- */

struct off_entry {
    int32_t rel_offset;
    int32_t position;
};

struct time_entry {
    int64_t timestamp;
    int32_t rel_offset;
};

struct seg {
    int64_t base_offset;
    int64_t next_offset;           /* one past the last stable offset */
    uint64_t size_bytes;           /* stable bytes */
    int64_t max_timestamp;         /* largest maxTimestamp of its stable batches; -1 none */
    int64_t max_ts_offset;         /* last offset of the batch that had it */
    uint32_t since_index;          /* bytes appended since the last index entry */
    int log_fd, index_fd, time_fd; /* index fds only while the segment takes appends */
    struct off_entry *idx;
    uint32_t idx_count, idx_cap;
    struct time_entry *tidx;
    uint32_t tidx_count, tidx_cap;
    uint32_t refs; /* reads in flight */
    bool deleted;
    struct seg *next_zombie;
};

/* An append or a flush, queued for the writer. */
struct desc {
    int64_t base_offset;
    int64_t next_offset;
    uint32_t buf_off;
    uint32_t len;  /* 0: a flush */
    bool roll;     /* starts a new segment at base_offset */
    bool internal; /* a flush of the interval timer: no callback */
    sp_plog_append_fn *fn;
    void *ctx;
};

enum read_mode { READ_BATCHES, READ_SLICE, READ_TIME };

struct plog_read {
    struct sp_plog *log;
    struct sp_io_op op;
    struct sp_task task;
    enum read_mode mode;
    bool in_use;
    int64_t target; /* offset or timestamp */
    uint32_t max_bytes;
    struct seg *seg; /* referenced */
    uint64_t pos;    /* next batch's position in seg */
    uint64_t limit;  /* seg's stable bytes when the read began */
    uint8_t *buf;
    uint32_t buf_cap;
    uint64_t buf_file_pos; /* file position of buf[0] */
    uint32_t buf_len;
    uint32_t want; /* bytes wanted at buf_file_pos */
    int64_t stable_end;
    sp_plog_read_fn *read_fn;
    sp_plog_slice_fn *slice_fn;
    int slice_fd; /* READ_SLICE: a duplicate of the segment's, for the caller */
    sp_plog_append_fn *time_fn;
    sp_plog_time_fn *record_fn; /* READ_TIME by record (sp_plog_lookup_time) */
    bool found;                 /* record_fn: a record was found */
    int64_t found_offset, found_ts;
    void *ctx;
};

enum writer_state { W_IDLE, W_WRITE, W_FSYNC, W_ROLL1, W_ROLL2, W_FLUSH };

struct sp_plog {
    struct sp_shard *shard;
    struct sp_plog_config config;
    char dir[PATH_MAX - 32];
    int64_t start_offset;
    int64_t end_offset;
    int64_t stable_end;

    struct seg **segs;
    uint32_t seg_count, seg_cap;
    struct seg *zombies;
    uint64_t tail_bytes; /* bytes assigned to the last segment, queued ones included */
    int64_t tail_base;   /* that segment's base offset, a queued roll's included */

    /* The append queue: descriptors and the ring buffer of their bytes. */
    struct desc *descs;
    uint32_t desc_head, desc_count;
    uint8_t *buf;
    uint32_t buf_cap;

    /* The writer. */
    enum writer_state state;
    struct sp_io_op op;
    uint32_t group_count; /* descriptors in the write in flight */
    uint32_t group_len;
    uint32_t group_done; /* bytes of it written so far */
    uint64_t group_pos;  /* file position of the group */
    bool dirty;          /* written since the last fsync */
    bool in_callbacks;   /* completions are being delivered: do not start the writer */
    bool closing;        /* closed with the interval timer's flush in flight: free when done */
    bool kick_pending;   /* a retry task is posted */
    struct sp_task kick_task;
    struct sp_io_op roll_ops[ROLL_OPS];
    int roll_fds[3];
    uint32_t roll_pending;
    int roll_err;
    char roll_paths[3][PATH_MAX];
    uint8_t *roll_buf;
    size_t roll_buf_cap;

    struct sp_timer flush_timer;
    bool timer_armed;

    /* The cleaner (retention and compaction on a timer) and record parsing. */
    struct sp_timer cleaner_timer;
    bool cleaner_armed;
    bool stopped;                  /* the shard is stopping: the cleaner's timer stays off */
    struct sp_stop_hook stop_hook; /* on the shard's list from open until close or the stop */
    int64_t clean_end;             /* offsets below this were cleaned by the last pass */
    struct sp_plog_clean_stats clean_stats;
    struct sp_record_codec codec; /* decompress and compress, made on first use */
    bool codec_ready;
    uint8_t *dec; /* decompressed records */
    size_t dec_cap;

    struct plog_read reads[SP_PLOG_READS_MAX];
    struct plog_read *delivering; /* the read whose fn runs (sp_plog_read_take) */
    uint32_t reads_in_flight;
    uint32_t queued_bytes;
    struct sp_plog_stats stats;
};

static struct seg *tail_seg(const struct sp_plog *log)
{
    SP_ASSERT(log->seg_count > 0);
    return log->segs[log->seg_count - 1];
}

static int seg_path(const struct sp_plog *log, int64_t base, const char *ext, char *out,
                    size_t out_bytes)
{
    int n = snprintf(out, out_bytes, "%s/%020" PRId64 "%s", log->dir, base, ext);
    return n < 0 || (size_t)n >= out_bytes ? -ENAMETOOLONG : 0;
}

/* Grows an index array by doubling; false when out of memory. */
static bool grow(void **arr, uint32_t *cap, uint32_t count, size_t entry_bytes)
{
    if (count < *cap)
        return true;
    uint32_t n = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, (size_t)n * entry_bytes);
    if (!p)
        return false;
    *arr = p;
    *cap = n;
    return true;
}

/*
 * Accounts one stable batch at `pos` of `seg`: index entries as Kafka's
 * LogSegment.append makes them, then the sizes. When an index cannot grow
 * (out of memory) the entry is left out: a sparser index is still correct.
 */
static void seg_add_batch(struct seg *seg, const struct batch_info *b, uint64_t pos,
                          uint32_t interval)
{
    SP_ASSERT(b->base_offset >= seg->next_offset); /* equal but in cleaned segments */
    SP_ASSERT(pos == seg->size_bytes);
    if (b->max_timestamp > seg->max_timestamp) {
        seg->max_timestamp = b->max_timestamp;
        seg->max_ts_offset = b->last_offset;
    }
    if (seg->since_index > interval) {
        if (grow((void **)&seg->idx, &seg->idx_cap, seg->idx_count, sizeof(*seg->idx))) {
            seg->idx[seg->idx_count++] =
                (struct off_entry){(int32_t)(b->last_offset - seg->base_offset), (int32_t)pos};
        }
        bool newer =
            seg->tidx_count == 0 || seg->max_timestamp > seg->tidx[seg->tidx_count - 1].timestamp;
        if (newer && seg->max_timestamp >= 0 &&
            grow((void **)&seg->tidx, &seg->tidx_cap, seg->tidx_count, sizeof(*seg->tidx))) {
            seg->tidx[seg->tidx_count++] = (struct time_entry){
                seg->max_timestamp, (int32_t)(seg->max_ts_offset - seg->base_offset)};
        }
        seg->since_index = 0;
    }
    seg->since_index += b->size;
    seg->size_bytes += b->size;
    seg->next_offset = b->last_offset + 1;
}

/* The time index's final entry, as Kafka adds when a segment stops taking appends. */
static void seg_seal_time_index(struct seg *seg)
{
    bool newer =
        seg->tidx_count == 0 || seg->max_timestamp > seg->tidx[seg->tidx_count - 1].timestamp;
    if (newer && seg->max_timestamp >= 0 &&
        grow((void **)&seg->tidx, &seg->tidx_cap, seg->tidx_count, sizeof(*seg->tidx))) {
        seg->tidx[seg->tidx_count++] = (struct time_entry){
            seg->max_timestamp, (int32_t)(seg->max_ts_offset - seg->base_offset)};
    }
}

/* Position to scan from for `offset`: the last index entry at or below it, else 0. */
static uint64_t seg_lookup(const struct seg *seg, int64_t offset)
{
    int64_t rel = offset - seg->base_offset;
    uint32_t lo = 0, hi = seg->idx_count; /* first entry above rel */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (seg->idx[mid].rel_offset <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 0 : (uint64_t)seg->idx[lo - 1].position;
}

/* Position to scan from for the first batch with maxTimestamp >= ts. */
static uint64_t seg_lookup_time(const struct seg *seg, int64_t ts)
{
    uint32_t lo = 0, hi = seg->tidx_count; /* first entry with timestamp >= ts */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (seg->tidx[mid].timestamp < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    return seg_lookup(seg, seg->base_offset + seg->tidx[lo - 1].rel_offset);
}

static void seg_free(struct seg *seg)
{
    if (seg->log_fd >= 0)
        close(seg->log_fd);
    if (seg->index_fd >= 0)
        close(seg->index_fd);
    if (seg->time_fd >= 0)
        close(seg->time_fd);
    free(seg->idx);
    free(seg->tidx);
    free(seg);
}

static struct seg *seg_new(int64_t base)
{
    struct seg *seg = calloc(1, sizeof(*seg));
    if (!seg)
        return NULL;
    seg->base_offset = base;
    seg->next_offset = base;
    seg->max_timestamp = -1;
    seg->max_ts_offset = -1;
    seg->log_fd = seg->index_fd = seg->time_fd = -1;
    return seg;
}

static void seg_unref(struct sp_plog *log, struct seg *seg)
{
    SP_ASSERT(seg->refs > 0);
    if (--seg->refs > 0 || !seg->deleted)
        return;
    for (struct seg **p = &log->zombies; *p; p = &(*p)->next_zombie) {
        if (*p == seg) {
            *p = seg->next_zombie;
            break;
        }
    }
    seg_free(seg);
}

/* Serialises the indexes big-endian into log->roll_buf: [offset index][time index]. */
static int seg_index_bytes(struct sp_plog *log, const struct seg *seg, size_t *idx_bytes,
                           size_t *time_bytes)
{
    *idx_bytes = (size_t)seg->idx_count * 8;
    *time_bytes = (size_t)seg->tidx_count * 12;
    size_t need = *idx_bytes + *time_bytes;
    if (need > log->roll_buf_cap) {
        uint8_t *p = realloc(log->roll_buf, need);
        if (!p)
            return -ENOMEM;
        log->roll_buf = p;
        log->roll_buf_cap = need;
    }
    uint8_t *w = log->roll_buf;
    for (uint32_t i = 0; i < seg->idx_count; i++, w += 8) {
        put_be32(w, (uint32_t)seg->idx[i].rel_offset);
        put_be32(w + 4, (uint32_t)seg->idx[i].position);
    }
    for (uint32_t i = 0; i < seg->tidx_count; i++, w += 12) {
        put_be64(w, (uint64_t)seg->tidx[i].timestamp);
        put_be32(w + 8, (uint32_t)seg->tidx[i].rel_offset);
    }
    return 0;
}

/* Writes a whole buffer with pwrite(2) and truncates the file to it (open, close). */
static int write_all_sync(int fd, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, p + done, n - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -ENOSPC;
        done += (size_t)w;
    }
    return ftruncate(fd, (off_t)n) < 0 ? -errno : 0;
}

/* ---- Recovery ---- */

/* Reads up to n bytes at pos; the count or -errno. */
static ssize_t pread_full(int fd, uint8_t *p, size_t n, uint64_t pos)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, (off_t)(pos + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/*
 * Scans `seg`'s file from 0, batch by batch, rebuilding its indexes; stops
 * at the first batch that is torn, not v2, out of sequence or fails its CRC.
 * With `check_crc` false (trusted segments without index files) only the
 * headers are read. Sets *valid_bytes to the bytes of whole good batches.
 */
static int seg_scan(struct seg *seg, uint64_t file_bytes, uint32_t interval, bool check_crc,
                    uint64_t *valid_bytes)
{
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    uint64_t pos = 0;
    while (pos + HDR_BYTES <= file_bytes) {
        ssize_t r = pread_full(seg->log_fd, buf, HDR_BYTES, pos);
        if (r < 0) {
            ret = (int)r;
            break;
        }
        struct batch_info b;
        if (r < HDR_BYTES || !batch_header(buf, &b) || b.base_offset < seg->next_offset ||
            pos + b.size > file_bytes)
            break;
        if (check_crc) {
            if (b.size > cap) {
                uint8_t *p = realloc(buf, b.size);
                if (!p) {
                    ret = -ENOMEM;
                    break;
                }
                buf = p;
                cap = b.size;
            }
            r = pread_full(seg->log_fd, buf, b.size, pos);
            if (r < 0) {
                ret = (int)r;
                break;
            }
            if ((size_t)r < b.size ||
                sp_crc32c(0, buf + HDR_ATTRIBUTES, b.size - HDR_ATTRIBUTES) != be32(buf + HDR_CRC))
                break;
        }
        seg_add_batch(seg, &b, pos, interval);
        pos += b.size;
    }
    free(buf);
    *valid_bytes = pos;
    return ret;
}

/* Reads a whole small file into a malloc'd buffer; -ENOENT when it is missing. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
    } else {
        *len = (size_t)st.st_size;
        *out = malloc(*len + 1);
        if (!*out)
            ret = -ENOMEM;
        else if (pread_full(fd, *out, *len, 0) != (ssize_t)*len)
            ret = -EIO;
        if (ret < 0) {
            free(*out);
            *out = NULL;
        }
    }
    close(fd);
    return ret;
}

/*
 * Loads the index files of a trusted (older) segment; false when they are
 * missing or do not fit the segment, and the caller rebuilds them.
 */
static bool seg_load_indexes(struct sp_plog *log, struct seg *seg)
{
    char path[PATH_MAX];
    uint8_t *data = NULL;
    size_t len = 0;
    if (seg_path(log, seg->base_offset, ".index", path, sizeof(path)) < 0 ||
        read_file(path, &data, &len) < 0)
        return false;
    bool ok = len % 8 == 0;
    for (size_t i = 0; ok && i < len; i += 8) {
        struct off_entry e = {(int32_t)be32(data + i), (int32_t)be32(data + i + 4)};
        ok = e.rel_offset >= 0 && e.position >= 0 && (uint64_t)e.position < seg->size_bytes &&
             (seg->idx_count == 0 || e.position > seg->idx[seg->idx_count - 1].position) &&
             grow((void **)&seg->idx, &seg->idx_cap, seg->idx_count, sizeof(*seg->idx));
        if (ok)
            seg->idx[seg->idx_count++] = e;
    }
    free(data);
    data = NULL;
    if (ok && (seg_path(log, seg->base_offset, ".timeindex", path, sizeof(path)) < 0 ||
               read_file(path, &data, &len) < 0))
        ok = false;
    ok = ok && len % 12 == 0;
    for (size_t i = 0; ok && i < len; i += 12) {
        struct time_entry e = {(int64_t)be64(data + i), (int32_t)be32(data + i + 8)};
        ok = e.rel_offset >= 0 &&
             grow((void **)&seg->tidx, &seg->tidx_cap, seg->tidx_count, sizeof(*seg->tidx));
        if (ok)
            seg->tidx[seg->tidx_count++] = e;
    }
    free(data);
    if (ok && seg->tidx_count > 0) {
        seg->max_timestamp = seg->tidx[seg->tidx_count - 1].timestamp;
        seg->max_ts_offset = seg->base_offset + seg->tidx[seg->tidx_count - 1].rel_offset;
    }
    if (!ok) {
        seg->idx_count = 0;
        seg->tidx_count = 0;
    }
    return ok;
}

static int seg_open_files(struct sp_plog *log, struct seg *seg, bool create, bool with_indexes)
{
    char path[PATH_MAX];
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
    int ret = seg_path(log, seg->base_offset, ".log", path, sizeof(path));
    if (ret < 0)
        return ret;
    seg->log_fd = open(path, flags, 0644);
    if (seg->log_fd < 0)
        return -errno;
    if (!with_indexes)
        return 0;
    flags = O_RDWR | O_CLOEXEC | O_CREAT;
    if ((ret = seg_path(log, seg->base_offset, ".index", path, sizeof(path))) < 0)
        return ret;
    seg->index_fd = open(path, flags, 0644);
    if (seg->index_fd < 0)
        return -errno;
    if ((ret = seg_path(log, seg->base_offset, ".timeindex", path, sizeof(path))) < 0)
        return ret;
    seg->time_fd = open(path, flags, 0644);
    return seg->time_fd < 0 ? -errno : 0;
}

/* Writes the segment's in-memory indexes to its open index files, synchronously. */
static int seg_write_indexes_sync(struct sp_plog *log, struct seg *seg)
{
    size_t idx_bytes, time_bytes;
    int ret = seg_index_bytes(log, seg, &idx_bytes, &time_bytes);
    if (ret == 0)
        ret = write_all_sync(seg->index_fd, log->roll_buf, idx_bytes);
    if (ret == 0)
        ret = write_all_sync(seg->time_fd, log->roll_buf + idx_bytes, time_bytes);
    return ret;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Base offsets of the directory's segments, sorted; *out malloc'd. */
static int list_segments(struct sp_plog *log, int64_t **out, uint32_t *count)
{
    DIR *d = opendir(log->dir);
    if (!d)
        return -errno;
    uint32_t n = 0, cap = 0;
    int64_t *bases = NULL;
    int ret = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        /* Leftovers of a cleaning or an index write that a crash cut short. */
        if ((len > 8 && strcmp(e->d_name + len - 8, ".cleaned") == 0) ||
            (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0)) {
            (void)unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (len != 24 || strcmp(e->d_name + 20, ".log") != 0)
            continue;
        int64_t base = 0;
        for (int i = 0; i < 20 && ret == 0; i++) {
            char c = e->d_name[i];
            if (c < '0' || c > '9' || base > (INT64_MAX - 9) / 10)
                ret = -EBADMSG;
            else
                base = base * 10 + (c - '0');
        }
        if (ret == 0 && !grow((void **)&bases, &cap, n, sizeof(*bases)))
            ret = -ENOMEM;
        if (ret < 0)
            break;
        bases[n++] = base;
    }
    closedir(d);
    if (ret < 0) {
        free(bases);
        return ret;
    }
    if (n > 1)
        qsort(bases, n, sizeof(*bases), cmp_i64);
    *out = bases;
    *count = n;
    return 0;
}

/* The persisted log start offset, or -1 when the file does not exist. */
static int read_start_offset(struct sp_plog *log, int64_t *out)
{
    char path[PATH_MAX];
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", log->dir, START_FILE);
    int ret = read_file(path, &data, &len);
    if (ret == -ENOENT) {
        *out = -1;
        return 0;
    }
    if (ret < 0)
        return ret;
    data[len] = 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll((const char *)data, &end, 10);
    ret = errno != 0 || end == (char *)data || v < 0 || (*end != '\n' && *end != 0) ? -EBADMSG : 0;
    free(data);
    *out = v;
    return ret;
}

/* Writes the start offset file: temporary file, fsync, rename, fsync the directory. */
static int write_start_offset(struct sp_plog *log, int64_t offset)
{
    char path[PATH_MAX], tmp[PATH_MAX], text[32];
    snprintf(path, sizeof(path), "%s/%s", log->dir, START_FILE);
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", log->dir, START_FILE);
    int n = snprintf(text, sizeof(text), "%" PRId64 "\n", offset);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = write_all_sync(fd, (const uint8_t *)text, (size_t)n);
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    close(fd);
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret < 0) {
        unlink(tmp);
        return ret;
    }
    int dfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) < 0)
            ret = -errno;
        close(dfd);
    }
    return ret;
}

static int add_seg(struct sp_plog *log, struct seg *seg)
{
    if (!grow((void **)&log->segs, &log->seg_cap, log->seg_count, sizeof(*log->segs)))
        return -ENOMEM;
    log->segs[log->seg_count++] = seg;
    return 0;
}

/* True when the segment's .log file exists and is empty. */
static bool seg_file_empty(const struct sp_plog *log, int64_t base)
{
    char path[PATH_MAX];
    struct stat st;
    return seg_path(log, base, ".log", path, sizeof(path)) == 0 && stat(path, &st) == 0 &&
           st.st_size == 0;
}

/* Removes a segment's three files. */
static void seg_unlink(const struct sp_plog *log, int64_t base)
{
    static const char *const exts[3] = {".log", ".index", ".timeindex"};
    char path[PATH_MAX];
    for (unsigned i = 0; i < 3; i++)
        if (seg_path(log, base, exts[i], path, sizeof(path)) == 0)
            unlink(path);
}

/* Opens an older, trusted segment: its size from the file, its indexes from theirs. */
static int recover_old(struct sp_plog *log, struct seg *seg, int64_t next_base)
{
    int ret = seg_open_files(log, seg, false, false);
    struct stat st;
    if (ret == 0 && fstat(seg->log_fd, &st) < 0)
        ret = -errno;
    if (ret < 0)
        return ret;
    seg->size_bytes = (uint64_t)st.st_size;
    seg->next_offset = next_base;
    if (seg_load_indexes(log, seg))
        return 0;
    /* Missing or damaged index files: rebuild them from the (trusted) data. */
    uint64_t valid = 0;
    seg->size_bytes = 0;
    seg->next_offset = seg->base_offset;
    ret = seg_scan(seg, (uint64_t)st.st_size, log->config.index_interval_bytes, false, &valid);
    seg->size_bytes = valid;
    seg->next_offset = next_base;
    return ret;
}

/* Opens the last segment: scans it, truncates a torn tail, rewrites its indexes. */
static int recover_last(struct sp_plog *log, struct seg *seg)
{
    int ret = seg_open_files(log, seg, false, true);
    struct stat st;
    if (ret == 0 && fstat(seg->log_fd, &st) < 0)
        ret = -errno;
    uint64_t valid = 0;
    if (ret == 0)
        ret = seg_scan(seg, (uint64_t)st.st_size, log->config.index_interval_bytes, true, &valid);
    if (ret < 0)
        return ret;
    SP_ASSERT(valid == seg->size_bytes);
    if (valid < (uint64_t)st.st_size) {
        if (ftruncate(seg->log_fd, (off_t)valid) < 0 || fsync(seg->log_fd) < 0)
            return -errno;
    }
    return seg_write_indexes_sync(log, seg);
}

static int recover(struct sp_plog *log)
{
    int64_t persisted = -1;
    int64_t *bases = NULL;
    uint32_t n = 0;
    int ret = read_start_offset(log, &persisted);
    if (ret == 0)
        ret = list_segments(log, &bases, &n);
    /*
     * An empty last segment may come from a crash in the middle of a roll,
     * before the segment it follows was fsync'd: drop it, so that one is
     * scanned as the last. (Once the new segment holds a byte, the roll had
     * completed.) It holds nothing, so nothing is lost. But when the one
     * before turns out intact, its end may still lie before the dropped
     * base: compaction drops batches, even all of a segment's, and those
     * offsets were handed out; the end offset then stays at the dropped
     * base (a gap, as the cleaner leaves them), never handing an offset out
     * twice. (A torn tail is a crash's loss: the end goes back to the last
     * whole batch, as Kafka's recovery does.) Only the last one is dropped:
     * an empty segment before it was emptied by the cleaner.
     */
    int64_t end_floor = -1;
    uint64_t tail_file_bytes = 0;
    if (ret == 0 && n > 1 && seg_file_empty(log, bases[n - 1])) {
        end_floor = bases[n - 1];
        seg_unlink(log, bases[n - 1]);
        n--;
        char path[PATH_MAX];
        struct stat st;
        if (seg_path(log, bases[n - 1], ".log", path, sizeof(path)) == 0 && stat(path, &st) == 0)
            tail_file_bytes = (uint64_t)st.st_size;
    }
    for (uint32_t i = 0; ret == 0 && i < n; i++) {
        struct seg *seg = seg_new(bases[i]);
        if (!seg || add_seg(log, seg) < 0) {
            free(seg);
            ret = -ENOMEM;
        } else if (i + 1 < n) {
            ret = recover_old(log, seg, bases[i + 1]);
        } else {
            ret = recover_last(log, seg);
        }
    }
    free(bases);
    if (ret == 0 && n == 0) {
        struct seg *seg = seg_new(persisted > 0 ? persisted : 0);
        if (!seg || add_seg(log, seg) < 0) {
            free(seg);
            return -ENOMEM;
        }
        ret = seg_open_files(log, seg, true, true);
    }
    if (ret < 0)
        return ret;
    struct seg *tail = tail_seg(log);
    if (tail->next_offset < end_floor && tail->size_bytes == tail_file_bytes)
        tail->next_offset = end_floor; /* intact, and compacted short of the roll: a gap */
    log->end_offset = log->stable_end = tail->next_offset;
    log->tail_bytes = tail->size_bytes;
    log->tail_base = tail->base_offset;
    log->start_offset = SP_MAX(persisted, log->segs[0]->base_offset);
    log->start_offset = SP_MIN(log->start_offset, log->end_offset);
    return 0;
}

/* ---- Open and close ---- */

void sp_plog_config_default(struct sp_plog_config *c, const char *dir)
{
    memset(c, 0, sizeof(*c));
    c->dir = dir;
    c->segment_bytes = SP_PLOG_SEGMENT_BYTES_DEFAULT;
    c->index_interval_bytes = SP_PLOG_INDEX_INTERVAL_BYTES_DEFAULT;
    c->flush = SP_PLOG_FLUSH_OS;
    c->retention_ms = -1;
    c->retention_bytes = -1;
    c->append_buffer_bytes = SP_PLOG_APPEND_BUFFER_BYTES_DEFAULT;
    c->cleanup = SP_PLOG_CLEANUP_DELETE;
    c->delete_retention_ms = SP_PLOG_DELETE_RETENTION_MS_DEFAULT;
    c->min_cleanable_dirty_ratio = SP_PLOG_DIRTY_RATIO_DEFAULT;
    c->cleaner_keys_max = SP_PLOG_CLEANER_KEYS_MAX_DEFAULT;
}

static bool config_valid(const struct sp_plog_config *c)
{
    return c->dir != NULL && c->segment_bytes > 0 && c->segment_bytes <= INT32_MAX &&
           c->index_interval_bytes > 0 && c->append_buffer_bytes > 0 &&
           (c->flush != SP_PLOG_FLUSH_INTERVAL || c->flush_interval_ms > 0) &&
           c->flush <= SP_PLOG_FLUSH_OS && c->cleanup != 0 &&
           (c->cleanup & ~(SP_PLOG_CLEANUP_DELETE | SP_PLOG_CLEANUP_COMPACT)) == 0 &&
           c->delete_retention_ms >= 0 && c->min_compaction_lag_ms >= 0 &&
           c->min_cleanable_dirty_ratio >= 0 && c->min_cleanable_dirty_ratio <= 1 &&
           c->cleaner_keys_max > 0;
}

static void flush_timer_fire(struct sp_timer *timer, void *ctx);
static void cleaner_timer_fire(struct sp_timer *timer, void *ctx);
static struct desc *desc_at(struct sp_plog *log, uint32_t i);

/* The shard stops: the cleaner's timer must not hold up its drain. */
static void plog_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct sp_plog *log = SP_CONTAINER_OF(hook, struct sp_plog, stop_hook);
    log->stopped = true;
    if (log->cleaner_armed)
        sp_shard_timer_cancel(shard, &log->cleaner_timer);
    log->cleaner_armed = false;
}

int sp_plog_open(struct sp_shard *shard, const struct sp_plog_config *c, struct sp_plog **out)
{
    SP_ASSERT(shard != NULL);
    SP_ASSERT(out != NULL);
    if (!config_valid(c) || strlen(c->dir) >= sizeof(((struct sp_plog *)0)->dir))
        return -EINVAL;
    if (mkdir(c->dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    struct sp_plog *log = calloc(1, sizeof(*log));
    if (!log)
        return -ENOMEM;
    log->shard = shard;
    log->config = *c;
    strcpy(log->dir, c->dir);
    log->config.dir = log->dir;
    log->buf_cap = c->append_buffer_bytes;
    log->buf = malloc(log->buf_cap);
    log->descs = calloc(SP_PLOG_APPENDS_MAX, sizeof(*log->descs));
    log->roll_buf_cap = 4096; /* grows with the indexes; never NULL, even for empty ones */
    log->roll_buf = malloc(log->roll_buf_cap);
    for (unsigned i = 0; i < 3; i++)
        log->roll_fds[i] = -1;
    int ret = log->buf && log->descs && log->roll_buf ? recover(log) : -ENOMEM;
    if (ret < 0) {
        log->in_callbacks = true; /* nothing in flight: close frees what recovery made */
        sp_plog_close(log);
        return ret;
    }
    if (c->flush == SP_PLOG_FLUSH_INTERVAL) {
        sp_timer_init(&log->flush_timer, flush_timer_fire, log);
        sp_shard_timer_arm(shard, &log->flush_timer,
                           sp_now_ns() + c->flush_interval_ms * SP_NSEC_PER_MSEC);
        log->timer_armed = true;
    }
    log->clean_end = log->start_offset;
    sp_timer_init(&log->cleaner_timer, cleaner_timer_fire, log);
    sp_shard_on_stop(shard, &log->stop_hook, plog_stop);
    log->stopped = sp_shard_stopping(shard); /* opened while stopping: the hook will not run */
    if (c->cleaner_interval_ms > 0 && !log->stopped) {
        sp_shard_timer_arm(shard, &log->cleaner_timer,
                           sp_now_ns() + c->cleaner_interval_ms * SP_NSEC_PER_MSEC);
        log->cleaner_armed = true;
    }
    *out = log;
    return 0;
}

static void plog_free(struct sp_plog *log)
{
    for (uint32_t i = 0; i < log->seg_count; i++)
        seg_free(log->segs[i]);
    for (unsigned i = 0; i < SP_PLOG_READS_MAX; i++)
        free(log->reads[i].buf);
    free(log->segs);
    free(log->descs);
    free(log->buf);
    free(log->roll_buf);
    free(log->dec);
    if (log->codec_ready)
        sp_record_codec_deinit(&log->codec);
    free(log);
}

/*
 * The interval timer's own flushes are the one thing the caller cannot wait
 * for: queued ones are dropped, and one in flight (or waiting to be retried)
 * frees the log when it completes.
 */
void sp_plog_close(struct sp_plog *log)
{
    if (!log)
        return;
    SP_ASSERT(log->reads_in_flight == 0);
    SP_ASSERT(log->zombies == NULL);
    SP_ASSERT(!log->closing);
    for (uint32_t i = 0; i < log->desc_count; i++)
        SP_ASSERT(desc_at(log, i)->internal);
    if (log->timer_armed)
        sp_shard_timer_cancel(log->shard, &log->flush_timer);
    if (log->cleaner_armed)
        sp_shard_timer_cancel(log->shard, &log->cleaner_timer);
    log->cleaner_armed = false;
    /* Off the shard's stop hooks (the runtime has no call for it; the list is its own). */
    for (struct sp_stop_hook **h = &log->shard->stop_hooks; *h != NULL; h = &(*h)->next) {
        if (*h == &log->stop_hook) {
            *h = log->stop_hook.next;
            break;
        }
    }
    if (log->seg_count > 0 && tail_seg(log)->index_fd >= 0 && !log->in_callbacks)
        (void)seg_write_indexes_sync(log, tail_seg(log));
    if (log->state != W_IDLE || log->kick_pending) {
        SP_ASSERT(log->state == W_FLUSH || log->state == W_IDLE);
        log->closing = true;
        return;
    }
    log->desc_count = 0;
    plog_free(log);
}

int64_t sp_plog_start_offset(const struct sp_plog *log)
{
    return log->start_offset;
}

int64_t sp_plog_end_offset(const struct sp_plog *log)
{
    return log->end_offset;
}

int64_t sp_plog_stable_end(const struct sp_plog *log)
{
    return log->stable_end;
}

uint32_t sp_plog_segment_count(const struct sp_plog *log)
{
    return log->seg_count;
}

void sp_plog_stats(const struct sp_plog *log, struct sp_plog_stats *out)
{
    *out = log->stats;
}

uint64_t sp_plog_size_bytes(const struct sp_plog *log)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < log->seg_count; i++)
        n += log->segs[i]->size_bytes;
    return n;
}

/* ---- The append queue ---- */

static struct desc *desc_at(struct sp_plog *log, uint32_t i)
{
    SP_ASSERT(i < log->desc_count);
    return &log->descs[(log->desc_head + i) % SP_PLOG_APPENDS_MAX];
}

/*
 * Where `len` bytes fit in the ring buffer, contiguously, after the queued
 * appends: an offset, or -1 when they do not fit now.
 */
static int64_t buf_place(struct sp_plog *log, uint32_t len)
{
    uint32_t head = 0, tail = 0;
    bool any = false;
    for (uint32_t i = 0; i < log->desc_count && !any; i++) /* first with bytes */
        if (desc_at(log, i)->len > 0) {
            head = desc_at(log, i)->buf_off;
            any = true;
        }
    for (uint32_t i = log->desc_count; i > 0 && any; i--) /* last with bytes */
        if (desc_at(log, i - 1)->len > 0) {
            tail = desc_at(log, i - 1)->buf_off + desc_at(log, i - 1)->len;
            break;
        }
    if (!any)
        return len <= log->buf_cap ? 0 : -1;
    if (tail > head) { /* [head, tail) in use: room at the end, else at the start */
        if (log->buf_cap - tail >= len)
            return (int64_t)tail;
        return head >= len ? 0 : -1;
    }
    return head - tail >= len ? (int64_t)tail : -1; /* wrapped: room between tail and head */
}

static void writer_kick(struct sp_plog *log);

static struct desc *desc_push(struct sp_plog *log)
{
    SP_ASSERT(log->desc_count < SP_PLOG_APPENDS_MAX);
    struct desc *d = &log->descs[(log->desc_head + log->desc_count) % SP_PLOG_APPENDS_MAX];
    log->desc_count++;
    log->stats.queued_max = SP_MAX(log->stats.queued_max, log->desc_count);
    memset(d, 0, sizeof(*d));
    return d;
}

/* Walks the batches of an append, rewriting base offsets from `next`; the next free offset. */
static int64_t assign_offsets(uint8_t *p, uint32_t len, int64_t next)
{
    uint32_t pos = 0;
    while (pos < len) {
        struct batch_info b;
        bool ok = batch_header(p + pos, &b);
        SP_ASSERT(ok);
        put_be64(p + pos + HDR_BASE_OFFSET, (uint64_t)next);
        next += b.last_offset - b.base_offset + 1;
        pos += b.size;
    }
    SP_ASSERT(pos == len);
    return next;
}

/* Checks that the bytes are whole v2 batches (not their CRCs: the caller did). */
static bool batches_whole(const uint8_t *p, uint32_t len)
{
    uint32_t pos = 0;
    while (pos < len) {
        struct batch_info b;
        if (len - pos < HDR_BYTES || !batch_header(p + pos, &b) || b.size > len - pos)
            return false;
        pos += b.size;
    }
    return len > 0;
}

/* Offsets the batches take (the sum of their lastOffsetDelta + 1). */
static int64_t batches_offsets(const uint8_t *p, uint32_t len)
{
    int64_t n = 0;
    for (uint32_t pos = 0; pos < len;) {
        struct batch_info b;
        bool ok = batch_header(p + pos, &b);
        SP_ASSERT(ok);
        n += b.last_offset - b.base_offset + 1;
        pos += b.size;
    }
    return n;
}

static int batches_check(struct sp_plog *log, const uint8_t *p, uint32_t len);

int sp_plog_append(struct sp_plog *log, const uint8_t *batches, uint32_t len, sp_plog_append_fn *fn,
                   void *ctx)
{
    SP_ASSERT(fn != NULL);
    SP_ASSERT(sp_shard_current() == log->shard);
    if (len > log->buf_cap || len > INT32_MAX)
        return -EMSGSIZE;
    if (!batches_whole(batches, len))
        return -EBADMSG;
    int checked = batches_check(log, batches, len);
    if (checked < 0)
        return checked;
    if (log->desc_count == SP_PLOG_APPENDS_MAX)
        return -EAGAIN;
    int64_t at = buf_place(log, len);
    if (at < 0)
        return -EAGAIN;
    /* Roll past segment_bytes, or where relative offsets (int32 in the indexes) would overflow. */
    int64_t count = batches_offsets(batches, len);
    bool roll = log->tail_bytes > 0 && (log->tail_bytes + len > log->config.segment_bytes ||
                                        log->end_offset + count - log->tail_base > INT32_MAX);
    struct desc *d = desc_push(log);
    d->buf_off = (uint32_t)at;
    d->len = len;
    d->roll = roll;
    d->fn = fn;
    d->ctx = ctx;
    d->base_offset = log->end_offset;
    memcpy(log->buf + at, batches, len);
    d->next_offset = assign_offsets(log->buf + at, len, log->end_offset);
    log->end_offset = d->next_offset;
    log->queued_bytes += len;
    log->stats.queued_bytes_max = SP_MAX(log->stats.queued_bytes_max, log->queued_bytes);
    log->tail_bytes = roll ? len : log->tail_bytes + len;
    log->tail_base = roll ? d->base_offset : log->tail_base;
    writer_kick(log);
    return 0;
}

static int flush_push(struct sp_plog *log, sp_plog_append_fn *fn, void *ctx, bool internal)
{
    if (log->desc_count == SP_PLOG_APPENDS_MAX)
        return -EAGAIN;
    struct desc *d = desc_push(log);
    d->fn = fn;
    d->ctx = ctx;
    d->internal = internal;
    d->base_offset = d->next_offset = log->end_offset;
    writer_kick(log);
    return 0;
}

int sp_plog_flush(struct sp_plog *log, sp_plog_append_fn *fn, void *ctx)
{
    SP_ASSERT(fn != NULL);
    SP_ASSERT(sp_shard_current() == log->shard);
    return flush_push(log, fn, ctx, false);
}

static void flush_timer_fire(struct sp_timer *timer, void *ctx)
{
    struct sp_plog *log = ctx;
    (void)timer;
    /* Written and not yet fsync'd, or bytes queued that will be: one internal flush. */
    bool queued = false;
    for (uint32_t i = 0; i < log->desc_count && !queued; i++)
        queued = desc_at(log, i)->len == 0;
    if ((log->dirty || log->desc_count > 0) && !queued)
        (void)flush_push(log, NULL, NULL, true); /* a full queue: the next tick flushes */
    sp_shard_timer_arm(log->shard, &log->flush_timer,
                       sp_now_ns() + log->config.flush_interval_ms * SP_NSEC_PER_MSEC);
}

/* ---- The writer ---- */

static void writer_done(struct sp_io_op *op, int res, void *ctx);
static void roll_done(struct sp_io_op *op, int res, void *ctx);
static void writer_fail(struct sp_plog *log, int err);

static void kick_task_run(struct sp_task *task, struct sp_shard *shard)
{
    struct sp_plog *log = SP_CONTAINER_OF(task, struct sp_plog, kick_task);
    (void)shard;
    log->kick_pending = false;
    if (log->closing) {
        plog_free(log);
        return;
    }
    writer_kick(log);
}

/* A request the ring refused (-EBUSY): try again next turn, after completions. */
static void writer_retry(struct sp_plog *log)
{
    log->state = W_IDLE;
    if (!log->kick_pending) {
        log->kick_pending = true;
        sp_shard_post(log->shard, &log->kick_task, kick_task_run);
    }
}

/* Issues the write of the rest of the group. */
static void group_write(struct sp_plog *log)
{
    struct desc *first = desc_at(log, 0);
    log->state = W_WRITE;
    log->stats.write_count++;
    int ret = sp_io_write(
        log->shard, &log->op, tail_seg(log)->log_fd, log->buf + first->buf_off + log->group_done,
        log->group_len - log->group_done, log->group_pos + log->group_done, writer_done, log);
    if (ret == -EBUSY)
        writer_retry(log);
    else if (ret < 0)
        writer_fail(log, ret);
}

static void group_fsync(struct sp_plog *log, enum writer_state state)
{
    log->state = state;
    log->stats.fsync_count++;
    int ret = sp_io_fsync(log->shard, &log->op, tail_seg(log)->log_fd, true, writer_done, log);
    if (ret == -EBUSY)
        writer_retry(log);
    else if (ret < 0)
        writer_fail(log, ret);
}

static void roll_start(struct sp_plog *log, int64_t base);

/* Starts the next request when the writer is idle and appends are queued. */
static void writer_kick(struct sp_plog *log)
{
    if (log->state != W_IDLE || log->in_callbacks || log->kick_pending || log->desc_count == 0)
        return;
    struct desc *first = desc_at(log, 0);
    if (first->len == 0) {
        log->group_count = 1;
        group_fsync(log, W_FLUSH);
        return;
    }
    if (first->roll) {
        roll_start(log, first->base_offset);
        return;
    }
    uint32_t n = 1, len = first->len;
    while (n < log->desc_count) {
        struct desc *d = desc_at(log, n);
        if (d->len == 0 || d->roll || d->buf_off != first->buf_off + len)
            break;
        len += d->len;
        n++;
    }
    log->group_count = n;
    log->group_len = len;
    log->group_done = 0;
    log->group_pos = tail_seg(log)->size_bytes;
    group_write(log);
}

/* Makes the group stable and calls its callbacks, in order. */
static void group_complete(struct sp_plog *log, int64_t flushed_offset)
{
    struct seg *seg = tail_seg(log);
    uint32_t n = log->group_count;
    log->state = W_IDLE;
    log->in_callbacks = true;
    for (uint32_t i = 0; i < n; i++) {
        struct desc d = *desc_at(log, 0);
        for (uint32_t pos = 0; pos < d.len;) {
            struct batch_info b;
            bool ok = batch_header(log->buf + d.buf_off + pos, &b);
            SP_ASSERT(ok);
            seg_add_batch(seg, &b, seg->size_bytes, log->config.index_interval_bytes);
            pos += b.size;
        }
        log->desc_head = (log->desc_head + 1) % SP_PLOG_APPENDS_MAX;
        log->desc_count--;
        log->queued_bytes -= d.len;
        if (d.len > 0) {
            log->stable_end = d.next_offset;
            log->stats.append_count++;
        }
        SP_ASSERT(log->stable_end == seg->next_offset);
        if (!d.internal)
            d.fn(d.ctx, 0, d.len > 0 ? d.base_offset : flushed_offset);
    }
    log->in_callbacks = false;
    writer_kick(log);
}

/*
 * A request failed: truncates what was written past the stable size, rewinds
 * the end offset and the tail's bytes to the stable ones, and fails every
 * queued descriptor (their offsets are given back), in order.
 */
static void writer_fail(struct sp_plog *log, int err)
{
    SP_ASSERT(err < 0);
    SP_ASSERT(!log->in_callbacks);
    struct seg *seg = tail_seg(log);
    if (log->state == W_WRITE || log->state == W_FSYNC)
        (void)ftruncate(seg->log_fd, (off_t)seg->size_bytes);
    log->state = W_IDLE;
    log->end_offset = log->stable_end;
    log->tail_bytes = seg->size_bytes;
    log->tail_base = seg->base_offset;
    uint32_t n = log->desc_count;
    log->in_callbacks = true;
    for (uint32_t i = 0; i < n; i++) {
        struct desc d = *desc_at(log, 0);
        log->desc_head = (log->desc_head + 1) % SP_PLOG_APPENDS_MAX;
        log->desc_count--;
        log->queued_bytes -= d.len;
        log->stats.append_failed_count += d.len > 0;
        if (!d.internal)
            d.fn(d.ctx, err, -1);
    }
    log->in_callbacks = false;
    writer_kick(log);
}

static void writer_done(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_plog *log = ctx;
    (void)op;
    if (log->closing) {
        log->state = W_IDLE;
        if (!log->kick_pending)
            plog_free(log);
        return;
    }
    switch (log->state) {
    case W_WRITE:
        if (res <= 0) {
            /* A regular file's write is cut short, or returns 0, only when space ran out. */
            writer_fail(log, res < 0 ? res : -ENOSPC);
            return;
        }
        log->group_done += (uint32_t)res;
        if (log->group_done < log->group_len) {
            group_write(log);
            return;
        }
        log->dirty = true;
        if (log->config.flush == SP_PLOG_FLUSH_EVERY) {
            group_fsync(log, W_FSYNC);
            return;
        }
        group_complete(log, -1);
        return;
    case W_FSYNC:
    case W_FLUSH:
        if (res < 0) {
            writer_fail(log, res);
            return;
        }
        log->dirty = false;
        group_complete(log, log->stable_end);
        return;
    default:
        SP_ASSERT(!"writer completion in a state without I/O");
    }
}

/* ---- Rolling a segment ---- */

/*
 * Step 1, in parallel: fsync the old segment's data, write its index files,
 * create the new segment's three files. Step 2: fsync the index files. Then
 * the new segment takes the appends. A failure undoes the new files and
 * fails the queue; the old segment stays the last one.
 */
static void roll_issue(struct sp_plog *log, int ret)
{
    if (ret == 0) {
        log->roll_pending++;
        return;
    }
    if (log->roll_err == 0)
        log->roll_err = ret;
}

static void roll_start(struct sp_plog *log, int64_t base)
{
    struct seg *old = tail_seg(log);
    struct sp_shard *sh = log->shard;
    size_t idx_bytes = 0, time_bytes = 0;
    log->state = W_ROLL1;
    log->stats.fsync_count++;
    log->roll_err = 0;
    log->roll_pending = 0;
    seg_seal_time_index(old);
    int ret = seg_index_bytes(log, old, &idx_bytes, &time_bytes);
    static const char *const exts[3] = {".log", ".index", ".timeindex"};
    for (unsigned i = 0; i < 3 && ret == 0; i++)
        ret = seg_path(log, base, exts[i], log->roll_paths[i], sizeof(log->roll_paths[i]));
    if (ret < 0) {
        writer_fail(log, ret);
        return;
    }
    int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    roll_issue(log, sp_io_fsync(sh, &log->roll_ops[0], old->log_fd, true, roll_done, log));
    roll_issue(log, sp_io_write(sh, &log->roll_ops[1], old->index_fd, log->roll_buf,
                                (uint32_t)idx_bytes, 0, roll_done, log));
    roll_issue(log, sp_io_write(sh, &log->roll_ops[2], old->time_fd, log->roll_buf + idx_bytes,
                                (uint32_t)time_bytes, 0, roll_done, log));
    for (unsigned i = 0; i < 3; i++)
        roll_issue(log, sp_io_open(sh, &log->roll_ops[3 + i], log->roll_paths[i], flags, 0644,
                                   roll_done, log));
    if (log->roll_pending == 0)
        roll_done(NULL, 0, log); /* nothing was issued: finish (and fail) now */
}

/* Closes and removes the new segment's files after a failed roll. */
static void roll_undo(struct sp_plog *log)
{
    for (unsigned i = 0; i < 3; i++) {
        if (log->roll_fds[i] >= 0) {
            close(log->roll_fds[i]);
            unlink(log->roll_paths[i]);
            log->roll_fds[i] = -1;
        }
    }
}

static void roll_finish(struct sp_plog *log)
{
    struct seg *old = tail_seg(log);
    struct seg *seg = seg_new(desc_at(log, 0)->base_offset);
    if (!seg || add_seg(log, seg) < 0) {
        free(seg);
        roll_undo(log);
        writer_fail(log, -ENOMEM);
        return;
    }
    SP_ASSERT(old->next_offset == seg->base_offset);
    seg->log_fd = log->roll_fds[0];
    seg->index_fd = log->roll_fds[1];
    seg->time_fd = log->roll_fds[2];
    for (unsigned i = 0; i < 3; i++)
        log->roll_fds[i] = -1;
    close(old->index_fd);
    close(old->time_fd);
    old->index_fd = old->time_fd = -1;
    desc_at(log, 0)->roll = false;
    log->state = W_IDLE;
    log->stats.roll_count++;
    writer_kick(log);
}

static void roll_done(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_plog *log = ctx;
    if (op != NULL) {
        unsigned i = (unsigned)(op - log->roll_ops);
        SP_ASSERT(i < ROLL_OPS);
        SP_ASSERT(log->roll_pending > 0);
        log->roll_pending--;
        if (res >= 0 && log->state == W_ROLL1 && i >= 3)
            log->roll_fds[i - 3] = res;
        if (res >= 0 && log->state == W_ROLL1 && (i == 1 || i == 2) &&
            (size_t)res != (i == 1 ? (size_t)tail_seg(log)->idx_count * 8
                                   : (size_t)tail_seg(log)->tidx_count * 12))
            res = -ENOSPC; /* a short write to a regular file: out of space */
        if (res < 0 && log->roll_err == 0)
            log->roll_err = res;
    }
    if (log->roll_pending > 0)
        return;
    if (log->roll_err == -EBUSY) { /* the ring was full: the whole roll again, next turn */
        roll_undo(log);
        writer_retry(log);
        return;
    }
    if (log->roll_err < 0) {
        roll_undo(log);
        writer_fail(log, log->roll_err);
        return;
    }
    if (log->state == W_ROLL2) {
        roll_finish(log);
        return;
    }
    struct seg *old = tail_seg(log);
    log->state = W_ROLL2;
    roll_issue(log,
               sp_io_fsync(log->shard, &log->roll_ops[0], old->index_fd, true, roll_done, log));
    roll_issue(log, sp_io_fsync(log->shard, &log->roll_ops[1], old->time_fd, true, roll_done, log));
    if (log->roll_pending == 0)
        roll_done(NULL, 0, log);
}

/* ---- Reads and time look-ups ---- */

static struct plog_read *read_get(struct sp_plog *log)
{
    for (unsigned i = 0; i < SP_PLOG_READS_MAX; i++) {
        if (!log->reads[i].in_use) {
            struct plog_read *r = &log->reads[i];
            r->in_use = true;
            r->log = log;
            r->seg = NULL;
            r->buf_len = 0;
            r->record_fn = NULL;
            r->found = false;
            log->reads_in_flight++;
            return r;
        }
    }
    return NULL;
}

static void read_put(struct plog_read *r)
{
    r->log->stats.read_count++;
    if (r->seg)
        seg_unref(r->log, r->seg);
    r->seg = NULL;
    r->in_use = false;
    r->log->reads_in_flight--;
}

/* Delivers a read's or a look-up's result and frees it. */
static void read_finish(struct plog_read *r, int err, uint32_t off, uint32_t len, int64_t offset)
{
    if (r->mode == READ_SLICE) {
        bool ok = err == 0 && len > 0;
        r->slice_fn(r->ctx, err, ok ? r->slice_fd : -1, ok ? r->buf_file_pos : 0, ok ? len : 0);
    } else if (r->mode == READ_BATCHES) {
        r->log->delivering = r;
        r->read_fn(r->ctx, err, err == 0 && len > 0 ? r->buf + off : NULL, err == 0 ? len : 0);
        r->log->delivering = NULL;
    } else if (r->record_fn != NULL)
        r->record_fn(r->ctx, err, err == 0 && r->found ? r->found_offset : -1,
                     err == 0 && r->found ? r->found_ts : -1);
    else
        r->time_fn(r->ctx, err, err == 0 ? SP_MAX(offset, r->log->start_offset) : -1);
    read_put(r);
}

static void read_empty_task(struct sp_task *task, struct sp_shard *shard)
{
    struct plog_read *r = SP_CONTAINER_OF(task, struct plog_read, task);
    (void)shard;
    read_finish(r, 0, 0, 0, r->stable_end);
}

static void read_done(struct sp_io_op *op, int res, void *ctx);
static void read_step(struct plog_read *r);

/* Reads [pos, pos + want) of the segment into the buffer, growing it. */
static void read_fill(struct plog_read *r, uint64_t pos, uint32_t want)
{
    if (want > r->buf_cap) {
        uint8_t *p = realloc(r->buf, want);
        if (!p) {
            read_finish(r, -ENOMEM, 0, 0, -1);
            return;
        }
        r->buf = p;
        r->buf_cap = want;
    }
    r->buf_file_pos = pos;
    r->buf_len = 0;
    r->want = want;
    int ret = sp_io_read(r->log->shard, &r->op, r->seg->log_fd, r->buf, want, pos, read_done, r);
    if (ret < 0)
        read_finish(r, ret, 0, 0, -1);
}

static void read_done(struct sp_io_op *op, int res, void *ctx)
{
    struct plog_read *r = ctx;
    (void)op;
    if (res <= 0) {
        read_finish(r, res < 0 ? res : -EIO, 0, 0, -1); /* the file is shorter than stable */
        return;
    }
    r->buf_len += (uint32_t)res;
    if (r->buf_len < r->want) {
        int ret = sp_io_read(r->log->shard, &r->op, r->seg->log_fd, r->buf + r->buf_len,
                             r->want - r->buf_len, r->buf_file_pos + r->buf_len, read_done, r);
        if (ret < 0)
            read_finish(r, ret, 0, 0, -1);
        return;
    }
    read_step(r);
}

/* True when [pos, pos + n) is in the buffer. */
static bool read_have(const struct plog_read *r, uint64_t pos, uint64_t n)
{
    return pos >= r->buf_file_pos && pos + n <= r->buf_file_pos + r->buf_len;
}

/* Cuts the batches at `start` (in the buffer) to whole ones, at least one; delivers them. */
static void read_deliver(struct plog_read *r, uint64_t start, uint32_t first_size)
{
    uint32_t off = (uint32_t)(start - r->buf_file_pos);
    uint32_t avail = r->buf_len - off;
    uint32_t len = first_size;
    while (len + HDR_BYTES <= avail) {
        struct batch_info b;
        if (!batch_header(r->buf + off + len, &b) || b.size > avail - len ||
            len + b.size > r->max_bytes)
            break;
        len += b.size;
    }
    read_finish(r, 0, off, len, -1);
}

/* Moves a scan to the next segment; false at the end of the log. */
static bool read_next_seg(struct plog_read *r)
{
    struct sp_plog *log = r->log;
    uint32_t i = 0;
    while (i < log->seg_count && log->segs[i]->base_offset <= r->seg->base_offset)
        i++;
    if (i == log->seg_count || log->segs[i]->base_offset >= r->stable_end)
        return false;
    seg_unref(log, r->seg);
    r->seg = log->segs[i];
    r->seg->refs++;
    r->pos = 0;
    r->limit = r->seg->size_bytes;
    r->buf_len = 0;
    return true;
}

static int batch_find_time(struct plog_read *r, const uint8_t *p, uint32_t size);

/* Walks batch headers in the buffer from r->pos; reads more when it runs out. */
static void read_step(struct plog_read *r)
{
    for (;;) {
        if (r->pos >= r->limit) {
            if (!read_next_seg(r)) {
                read_finish(r, 0, 0, 0, r->stable_end);
                return;
            }
            continue;
        }
        if (r->limit - r->pos < HDR_BYTES) {
            read_finish(r, -EIO, 0, 0, -1);
            return;
        }
        if (!read_have(r, r->pos, HDR_BYTES)) {
            read_fill(r, r->pos, (uint32_t)SP_MIN((uint64_t)SCAN_BYTES, r->limit - r->pos));
            return;
        }
        struct batch_info b;
        const uint8_t *p = r->buf + (r->pos - r->buf_file_pos);
        if (!batch_header(p, &b) || b.size > r->limit - r->pos) {
            read_finish(r, -EIO, 0, 0, -1);
            return;
        }
        if (r->mode == READ_TIME && b.max_timestamp >= r->target &&
            b.last_offset >= r->log->start_offset && r->record_fn == NULL) {
            read_finish(r, 0, 0, 0, b.base_offset);
            return;
        }
        if (r->mode == READ_TIME && b.max_timestamp >= r->target &&
            b.last_offset >= r->log->start_offset) {
            /* By record: the whole batch, then its records. */
            if (!read_have(r, r->pos, b.size)) {
                read_fill(r, r->pos, b.size);
                return;
            }
            int rc = batch_find_time(r, p, b.size);
            if (rc != 0) {
                read_finish(r, rc < 0 ? rc : 0, 0, 0, -1);
                return;
            }
        }
        if (r->mode == READ_SLICE && b.last_offset >= r->target) {
            /* The bytes from this batch on, up to max_bytes (at least the
             * batch): the last batch may be cut short, as Kafka's are. */
            uint64_t len = SP_MIN(r->limit - r->pos, SP_MAX((uint64_t)r->max_bytes, b.size));
            r->slice_fd = fcntl(r->seg->log_fd, F_DUPFD_CLOEXEC, 0);
            r->buf_file_pos = r->pos;
            read_finish(r, r->slice_fd < 0 ? -errno : 0, 0, (uint32_t)len, -1);
            return;
        }
        if (r->mode == READ_BATCHES && b.last_offset >= r->target) {
            uint64_t want = SP_MIN(r->limit - r->pos, SP_MAX((uint64_t)r->max_bytes, b.size));
            if (read_have(r, r->pos, want)) {
                read_deliver(r, r->pos, b.size);
                return;
            }
            read_fill(r, r->pos, (uint32_t)want);
            return;
        }
        r->pos += b.size;
    }
}

static void read_start_task(struct sp_task *task, struct sp_shard *shard)
{
    struct plog_read *r = SP_CONTAINER_OF(task, struct plog_read, task);
    (void)shard;
    read_step(r);
}

/* Starts a scan of `seg` from `pos`, on the next task turn (fn never runs inside the call). */
static void read_begin(struct plog_read *r, struct seg *seg, uint64_t pos)
{
    r->seg = seg;
    seg->refs++;
    r->pos = pos;
    r->limit = seg->size_bytes;
    r->stable_end = r->log->stable_end;
    sp_shard_post(r->log->shard, &r->task, read_start_task);
}

void *sp_plog_read_take(struct sp_plog *log, const uint8_t *data)
{
    struct plog_read *r = log->delivering;
    SP_ASSERT(r != NULL && data != NULL);
    SP_ASSERT(data >= r->buf && data < r->buf + r->buf_cap);
    void *buf = r->buf;
    r->buf = NULL; /* the next read of this slot allocates another */
    r->buf_cap = 0;
    r->buf_len = 0;
    return buf;
}

static int read_start(struct sp_plog *log, enum read_mode mode, int64_t offset, uint32_t max_bytes,
                      sp_plog_read_fn *fn, sp_plog_slice_fn *slice_fn, void *ctx)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    if (offset < log->start_offset || offset > log->end_offset)
        return -ERANGE;
    struct plog_read *r = read_get(log);
    if (!r)
        return -EAGAIN;
    r->mode = mode;
    r->target = offset;
    r->max_bytes = max_bytes;
    r->read_fn = fn;
    r->slice_fn = slice_fn;
    r->ctx = ctx;
    r->stable_end = log->stable_end;
    if (offset >= log->stable_end) {
        sp_shard_post(log->shard, &r->task, read_empty_task);
        return 0;
    }
    uint32_t i = log->seg_count;
    while (i > 1 && log->segs[i - 1]->base_offset > offset)
        i--;
    struct seg *seg = log->segs[i - 1];
    read_begin(r, seg, seg_lookup(seg, offset));
    return 0;
}

int sp_plog_scan(struct sp_plog *log, int64_t from, sp_plog_scan_fn *fn, void *ctx)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    uint8_t h[SP_PLOG_SCAN_BYTES];
    for (uint32_t i = 0; i < log->seg_count; i++) {
        const struct seg *seg = log->segs[i];
        if (i + 1 < log->seg_count && log->segs[i + 1]->base_offset <= from)
            continue; /* wholly before `from` */
        uint64_t pos = seg->base_offset < from ? seg_lookup(seg, from) : 0;
        while (pos + HDR_BYTES <= seg->size_bytes) {
            size_t want = (size_t)SP_MIN((uint64_t)sizeof(h), seg->size_bytes - pos);
            ssize_t got = pread(seg->log_fd, h, want, (off_t)pos);
            struct batch_info b;
            if (got < (ssize_t)HDR_BYTES)
                return got < 0 ? -errno : -EIO;
            if (!batch_header(h, &b) || b.size > seg->size_bytes - pos)
                return -EIO; /* recovery left only whole batches: not what this code wrote */
            if (b.last_offset >= from) {
                int rc = fn(ctx, h, (size_t)SP_MIN((uint64_t)got, (uint64_t)b.size));
                if (rc != 0)
                    return rc;
            }
            pos += b.size;
        }
    }
    return 0;
}

int sp_plog_read(struct sp_plog *log, int64_t offset, uint32_t max_bytes, sp_plog_read_fn *fn,
                 void *ctx)
{
    SP_ASSERT(fn != NULL);
    return read_start(log, READ_BATCHES, offset, max_bytes, fn, NULL, ctx);
}

int sp_plog_read_slice(struct sp_plog *log, int64_t offset, uint32_t max_bytes,
                       sp_plog_slice_fn *fn, void *ctx)
{
    SP_ASSERT(fn != NULL);
    return read_start(log, READ_SLICE, offset, max_bytes, NULL, fn, ctx);
}

/* A look-up by time (r's callback set): from the first segment whose newest
 * timestamp reaches ts, through its time index. */
static void read_time_begin(struct sp_plog *log, struct plog_read *r, int64_t ts, void *ctx)
{
    r->mode = READ_TIME;
    r->target = ts;
    r->ctx = ctx;
    r->max_bytes = 0;
    r->stable_end = log->stable_end;
    uint32_t i = 0;
    while (i < log->seg_count && log->segs[i]->max_timestamp < ts)
        i++;
    if (i == log->seg_count || log->segs[i]->size_bytes == 0) {
        sp_shard_post(log->shard, &r->task, read_empty_task);
        return;
    }
    read_begin(r, log->segs[i], seg_lookup_time(log->segs[i], ts));
}

int sp_plog_lookup_time(struct sp_plog *log, int64_t ts, sp_plog_time_fn *fn, void *ctx)
{
    SP_ASSERT(fn != NULL);
    SP_ASSERT(sp_shard_current() == log->shard);
    if (ts < 0 && ts != SP_PLOG_TIME_MAX_TIMESTAMP)
        return -EINVAL;
    if (ts == SP_PLOG_TIME_MAX_TIMESTAMP) {
        ts = -1; /* no timestamps at all: nothing to find */
        for (uint32_t i = 0; i < log->seg_count; i++)
            ts = SP_MAX(ts, log->segs[i]->max_timestamp);
        if (ts < 0)
            ts = INT64_MAX;
    }
    struct plog_read *r = read_get(log);
    if (!r)
        return -EAGAIN;
    r->record_fn = fn;
    read_time_begin(log, r, ts, ctx);
    return 0;
}

int sp_plog_offset_for_time(struct sp_plog *log, int64_t ts, sp_plog_append_fn *fn, void *ctx)
{
    SP_ASSERT(fn != NULL);
    SP_ASSERT(sp_shard_current() == log->shard);
    struct plog_read *r = read_get(log);
    if (!r)
        return -EAGAIN;
    r->time_fn = fn;
    read_time_begin(log, r, ts, ctx);
    return 0;
}

/* ---- Deleting segments ---- */

/* Removes the first segment: unlinks its files, frees it once no read uses it. */
static void delete_first(struct sp_plog *log)
{
    SP_ASSERT(log->seg_count > 1);
    struct seg *seg = log->segs[0];
    seg_unlink(log, seg->base_offset);
    memmove(log->segs, log->segs + 1, (log->seg_count - 1) * sizeof(*log->segs));
    log->seg_count--;
    if (seg->refs == 0) {
        seg_free(seg);
    } else {
        seg->deleted = true;
        seg->next_zombie = log->zombies;
        log->zombies = seg;
    }
    log->start_offset = SP_MAX(log->start_offset, log->segs[0]->base_offset);
}

int sp_plog_delete_before(struct sp_plog *log, int64_t offset)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    if (offset > log->stable_end)
        return -ERANGE;
    if (offset <= log->start_offset)
        return 0;
    int ret = write_start_offset(log, offset);
    if (ret < 0)
        return ret;
    log->start_offset = offset;
    int deleted = 0;
    while (log->seg_count > 1 && log->segs[1]->base_offset <= offset) {
        delete_first(log);
        deleted++;
    }
    return deleted;
}

int sp_plog_retain(struct sp_plog *log, int64_t now_ms)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    int deleted = 0;
    int64_t ms = log->config.retention_ms;
    /* An empty segment (the cleaner emptied it) holds nothing to keep. */
    while (ms >= 0 && log->seg_count > 1 &&
           (log->segs[0]->size_bytes == 0 ||
            (log->segs[0]->max_timestamp >= 0 && log->segs[0]->max_timestamp < now_ms - ms))) {
        delete_first(log);
        deleted++;
    }
    int64_t bytes = log->config.retention_bytes;
    if (bytes >= 0) {
        uint64_t size = sp_plog_size_bytes(log);
        while (log->seg_count > 1 && size - log->segs[0]->size_bytes >= (uint64_t)bytes) {
            size -= log->segs[0]->size_bytes;
            delete_first(log);
            deleted++;
        }
    }
    return deleted;
}

/* ---- Records inside batches ---- */

/* Decompressed records of one batch may take at most this much memory. */
#define DEC_BYTES_MAX (256u << 20)

/*
 * Parses the whole batch at p (size bytes, CRC checked) and opens an
 * iterator over its records, decompressing them into log->dec (grown as
 * needed, up to DEC_BYTES_MAX). 0, -ENOMEM, or -EIO when the bytes are not
 * a good batch.
 */
static int batch_iter(struct sp_plog *log, const uint8_t *p, uint32_t size,
                      struct sp_record_batch *batch, struct sp_record_iter *it)
{
    if (sp_record_batch_parse(p, size, batch) < 0 || batch->size != size)
        return -EIO;
    if (sp_record_batch_codec(batch) == SP_RECORD_CODEC_NONE)
        return sp_record_iter_open(it, batch, NULL, NULL, 0) < 0 ? -EIO : 0;
    if (!log->codec_ready) {
        if (sp_record_codec_init(&log->codec,
                                 SP_RECORD_CODEC_DECOMPRESS | SP_RECORD_CODEC_COMPRESS) < 0)
            return -ENOMEM;
        log->codec_ready = true;
    }
    for (;;) {
        if (log->dec_cap == 0) {
            size_t want = SP_MAX((size_t)size * 4, (size_t)64 * 1024);
            log->dec = malloc(want);
            if (!log->dec)
                return -ENOMEM;
            log->dec_cap = want;
        }
        int rc = sp_record_iter_open(it, batch, &log->codec, log->dec, log->dec_cap);
        if (rc == 0)
            return 0;
        if (rc != -EMSGSIZE || log->dec_cap >= DEC_BYTES_MAX)
            return rc == -ENOMEM ? rc : -EIO;
        uint8_t *q = realloc(log->dec, log->dec_cap * 2);
        if (!q)
            return -ENOMEM;
        log->dec = q;
        log->dec_cap *= 2;
    }
}

static bool batch_is_control_or_txn(const uint8_t *p)
{
    uint16_t attr = (uint16_t)(p[HDR_ATTRIBUTES] << 8 | p[HDR_ATTRIBUTES + 1]);
    return (attr & (SP_RECORD_ATTR_CONTROL | SP_RECORD_ATTR_TRANSACTIONAL)) != 0;
}

/*
 * The checks an append gets from the log's configs: each batch at most
 * max_message_bytes (-EMSGSIZE), and in a compacted log every record of a
 * data batch has a key (-EBADMSG, Kafka's CORRUPT_MESSAGE). 0 when good.
 */
static int batches_check(struct sp_plog *log, const uint8_t *p, uint32_t len)
{
    bool compact = (log->config.cleanup & SP_PLOG_CLEANUP_COMPACT) != 0;
    if (log->config.max_message_bytes == 0 && !compact)
        return 0;
    uint32_t pos = 0;
    while (pos < len) { /* whole batches: batches_whole() said so */
        uint32_t size = be32(p + pos + HDR_BATCH_LENGTH) + SP_RECORD_LOG_OVERHEAD_BYTES;
        if (log->config.max_message_bytes > 0 && size > log->config.max_message_bytes)
            return -EMSGSIZE;
        if (compact && !batch_is_control_or_txn(p + pos)) {
            struct sp_record_batch batch;
            struct sp_record_iter it;
            struct sp_record rec;
            if (batch_iter(log, p + pos, size, &batch, &it) < 0)
                return -EBADMSG;
            int rc;
            while ((rc = sp_record_iter_next(&it, &rec)) == 1) {
                if (rec.key == NULL)
                    return -EBADMSG;
            }
            if (rc < 0)
                return -EBADMSG;
        }
        pos += size;
    }
    return 0;
}

/*
 * A look-up by record: the first record of the whole batch at p whose
 * timestamp is >= the target, at or after the log start and below the
 * stable end. 1 (r->found set), 0 when none is in this batch, -errno.
 */
static int batch_find_time(struct plog_read *r, const uint8_t *p, uint32_t size)
{
    struct sp_record_batch batch;
    struct sp_record_iter it;
    struct sp_record rec;
    int rc = batch_iter(r->log, p, size, &batch, &it);
    if (rc < 0)
        return rc;
    while ((rc = sp_record_iter_next(&it, &rec)) == 1) {
        if (rec.offset >= r->stable_end)
            return 0;
        if (rec.timestamp >= r->target && rec.offset >= r->log->start_offset) {
            r->found = true;
            r->found_offset = rec.offset;
            r->found_ts = rec.timestamp;
            return 1;
        }
    }
    return rc < 0 ? -EIO : 0;
}

/* ---- Config changes and the cleaner's timer ---- */

int sp_plog_set_config(struct sp_plog *log, const struct sp_plog_config *c)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    struct sp_plog_config next = log->config;
    next.segment_bytes = c->segment_bytes;
    next.retention_ms = c->retention_ms;
    next.retention_bytes = c->retention_bytes;
    next.max_message_bytes = c->max_message_bytes;
    next.cleanup = c->cleanup;
    next.delete_retention_ms = c->delete_retention_ms;
    next.min_compaction_lag_ms = c->min_compaction_lag_ms;
    next.min_cleanable_dirty_ratio = c->min_cleanable_dirty_ratio;
    next.cleaner_keys_max = c->cleaner_keys_max;
    next.cleaner_interval_ms = c->cleaner_interval_ms;
    if (!config_valid(&next))
        return -EINVAL;
    bool rearm = next.cleaner_interval_ms != log->config.cleaner_interval_ms;
    log->config = next;
    if (rearm && log->cleaner_armed) {
        sp_shard_timer_cancel(log->shard, &log->cleaner_timer);
        log->cleaner_armed = false;
    }
    if (rearm && next.cleaner_interval_ms > 0 && !log->stopped) {
        sp_shard_timer_arm(log->shard, &log->cleaner_timer,
                           sp_now_ns() + next.cleaner_interval_ms * SP_NSEC_PER_MSEC);
        log->cleaner_armed = true;
    }
    return 0;
}

/* Retention (cleanup.policy delete) and cleaning (compact), then again later. */
static void cleaner_timer_fire(struct sp_timer *timer, void *ctx)
{
    struct sp_plog *log = ctx;
    (void)timer;
    log->cleaner_armed = false;
    int64_t now_ms = sp_wall_ms();
    if (log->config.cleanup & SP_PLOG_CLEANUP_DELETE)
        (void)sp_plog_retain(log, now_ms);
    if (log->config.cleanup & SP_PLOG_CLEANUP_COMPACT) {
        int rc = sp_plog_clean(log, now_ms); /* a failed pass is tried again next time */
        (void)rc;
    }
    if (log->config.cleaner_interval_ms > 0 && !log->stopped) {
        sp_shard_timer_arm(log->shard, &log->cleaner_timer,
                           sp_now_ns() + log->config.cleaner_interval_ms * SP_NSEC_PER_MSEC);
        log->cleaner_armed = true;
    }
}

/* ---- Compaction ---- */

/*
 * The offset map of a cleaning pass: key -> offset of its latest record.
 * Keys are known by two independent 64-bit hashes (128 bits, as Kafka's
 * cleaner knows them by an MD5), so the map holds no key bytes; open
 * addressing, at most half full.
 */
struct keymap_entry {
    uint64_t h1, h2;
    int64_t offset; /* -1: an empty slot */
};

struct keymap {
    struct keymap_entry *e;
    uint32_t cap; /* a power of two */
    uint32_t count, max;
};

static void key_hash(const uint8_t *k, int32_t len, uint64_t *h1, uint64_t *h2)
{
    uint64_t a = 14695981039346656037ull, b = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    for (int32_t i = 0; i < len; i++) {
        a = (a ^ k[i]) * 1099511628211ull;
        b = (b + k[i]) * 0xBF58476D1CE4E5B9ull;
        b ^= b >> 29;
    }
    b ^= b >> 32;
    b *= 0x94D049BB133111EBull;
    b ^= b >> 31;
    *h1 = a;
    *h2 = b;
}

static struct keymap_entry *keymap_slot(const struct keymap *m, uint64_t h1, uint64_t h2)
{
    uint32_t i = (uint32_t)(h1 ^ (h1 >> 32)) & (m->cap - 1);
    for (uint32_t n = 0; n < m->cap; n++, i = (i + 1) & (m->cap - 1)) {
        struct keymap_entry *e = &m->e[i];
        if (e->offset < 0 || (e->h1 == h1 && e->h2 == h2))
            return e;
    }
    SP_ASSERT(false); /* at most half full: there is always an empty slot */
    return NULL;
}

static int keymap_grow(struct keymap *m, uint32_t cap)
{
    struct keymap_entry *e = malloc((size_t)cap * sizeof(*e));
    if (!e)
        return -ENOMEM;
    for (uint32_t i = 0; i < cap; i++)
        e[i].offset = -1;
    struct keymap old = *m;
    m->e = e;
    m->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.e[i].offset >= 0)
            *keymap_slot(m, old.e[i].h1, old.e[i].h2) = old.e[i];
    free(old.e);
    return 0;
}

/* Records `offset` as the latest of key (h1, h2). 0, -ENOBUFS (over max keys), -ENOMEM. */
static int keymap_put(struct keymap *m, uint64_t h1, uint64_t h2, int64_t offset)
{
    struct keymap_entry *e = keymap_slot(m, h1, h2);
    if (e->offset >= 0) {
        e->offset = SP_MAX(e->offset, offset);
        return 0;
    }
    if (m->count == m->max)
        return -ENOBUFS;
    if ((m->count + 1) * 2 > m->cap) {
        if (m->cap >= (1u << 30))
            return -ENOBUFS;
        int rc = keymap_grow(m, m->cap * 2);
        if (rc < 0)
            return rc;
        e = keymap_slot(m, h1, h2);
    }
    *e = (struct keymap_entry){h1, h2, offset};
    m->count++;
    return 0;
}

static int64_t keymap_get(const struct keymap *m, uint64_t h1, uint64_t h2)
{
    return keymap_slot(m, h1, h2)->offset;
}

/* A cleaning pass's buffers: one batch read, and one rebuilt. */
struct cleaner {
    struct sp_plog *log;
    struct keymap map;
    int64_t now_ms;
    uint8_t *in, *out, *scratch;
    size_t in_cap, out_cap, scratch_cap;
    struct sp_record_header *hdrs;
    uint32_t hdrs_cap;
};

static bool ensure(uint8_t **p, size_t *cap, size_t want)
{
    if (want <= *cap)
        return true;
    uint8_t *q = realloc(*p, want);
    if (!q)
        return false;
    *p = q;
    *cap = want;
    return true;
}

/* Reads the batch at `pos` of the segment file fd (bytes below `limit`) into cl->in. */
static int cleaner_read_batch(struct cleaner *cl, int fd, uint64_t pos, uint64_t limit,
                              struct batch_info *b)
{
    if (limit - pos < HDR_BYTES || !ensure(&cl->in, &cl->in_cap, HDR_BYTES))
        return limit - pos < HDR_BYTES ? -EIO : -ENOMEM;
    ssize_t r = pread_full(fd, cl->in, HDR_BYTES, pos);
    if (r < 0)
        return (int)r;
    if (r < HDR_BYTES || !batch_header(cl->in, b) || b->size > limit - pos)
        return -EIO;
    if (!ensure(&cl->in, &cl->in_cap, b->size))
        return -ENOMEM;
    r = pread_full(fd, cl->in, b->size, pos);
    if (r < 0)
        return (int)r;
    return (size_t)r == b->size ? 0 : -EIO;
}

/* Adds the keys of one segment's data batches to the map. */
static int cleaner_map_segment(struct cleaner *cl, const struct seg *seg)
{
    for (uint64_t pos = 0; pos < seg->size_bytes;) {
        struct batch_info b;
        int rc = cleaner_read_batch(cl, seg->log_fd, pos, seg->size_bytes, &b);
        if (rc < 0)
            return rc;
        pos += b.size;
        if (batch_is_control_or_txn(cl->in))
            continue;
        struct sp_record_batch batch;
        struct sp_record_iter it;
        struct sp_record rec;
        if ((rc = batch_iter(cl->log, cl->in, b.size, &batch, &it)) < 0)
            return rc;
        while ((rc = sp_record_iter_next(&it, &rec)) == 1) {
            if (rec.key == NULL)
                continue; /* written before the topic was compacted: kept */
            uint64_t h1, h2;
            key_hash(rec.key, rec.key_len, &h1, &h2);
            if ((rc = keymap_put(&cl->map, h1, h2, rec.offset)) < 0)
                return rc;
        }
        if (rc < 0)
            return -EIO;
    }
    return 0;
}

/* Whether a record survives: the latest of its key, and not an expired tombstone. */
static bool cleaner_keep(const struct cleaner *cl, const struct sp_record *rec)
{
    if (rec->key == NULL)
        return true;
    uint64_t h1, h2;
    key_hash(rec->key, rec->key_len, &h1, &h2);
    if (keymap_get(&cl->map, h1, h2) != rec->offset)
        return false;
    return rec->value != NULL || rec->timestamp >= cl->now_ms - cl->log->config.delete_retention_ms;
}

/*
 * The batch in cl->in (b->size bytes) as the cleaner leaves it: *out_p and
 * *out_len (0: dropped), either cl->in unchanged or a rebuilt batch in
 * cl->out with the same base offset, last offset delta, producer fields
 * and codec. *removed counts the records left out.
 */
static int cleaner_filter_batch(struct cleaner *cl, const struct batch_info *b,
                                const uint8_t **out_p, uint32_t *out_len, uint64_t *removed)
{
    *out_p = cl->in;
    *out_len = b->size;
    if (batch_is_control_or_txn(cl->in))
        return 0;
    struct sp_record_batch batch;
    struct sp_record_iter it;
    struct sp_record rec;
    int rc = batch_iter(cl->log, cl->in, b->size, &batch, &it);
    if (rc < 0)
        return rc;
    int32_t kept = 0, total = 0;
    while ((rc = sp_record_iter_next(&it, &rec)) == 1) {
        total++;
        kept += cleaner_keep(cl, &rec);
    }
    if (rc < 0)
        return -EIO;
    if (kept == total)
        return 0;
    *removed += (uint64_t)(total - kept);
    if (kept == 0) {
        *out_len = 0;
        return 0;
    }
    /* Rebuild: the records decompressed again (log->dec is reused by the iterator). */
    enum sp_record_codec_id codec = sp_record_batch_codec(&batch);
    size_t records_bytes = codec == SP_RECORD_CODEC_NONE ? batch.records_len : 0;
    if (codec != SP_RECORD_CODEC_NONE) {
        /* Delta varints may grow when the base timestamp changes: room for that. */
        records_bytes = cl->log->dec_cap;
    }
    size_t room = records_bytes + (size_t)total * 16 + HDR_BYTES;
    if (!ensure(&cl->scratch, &cl->scratch_cap, room) ||
        !ensure(&cl->out, &cl->out_cap, HDR_BYTES + sp_record_compress_bound(codec, room)))
        return -ENOMEM;
    struct sp_record_builder_config bc = SP_RECORD_BUILDER_CONFIG_INIT;
    bc.base_offset = batch.base_offset;
    bc.partition_leader_epoch = batch.partition_leader_epoch;
    bc.producer_id = batch.producer_id;
    bc.producer_epoch = batch.producer_epoch;
    bc.base_sequence = batch.base_sequence;
    bc.log_append_time_ms = sp_record_batch_log_append_time(&batch) ? batch.max_timestamp : -1;
    bc.codec = codec;
    bc.scratch = cl->scratch;
    bc.scratch_bytes = cl->scratch_cap;
    struct sp_record_builder bld;
    if ((rc = sp_record_builder_init(&bld, cl->out, cl->out_cap, &bc)) < 0)
        return rc == -ENOBUFS ? -ENOMEM : -EIO;
    if ((rc = batch_iter(cl->log, cl->in, b->size, &batch, &it)) < 0)
        return rc;
    while ((rc = sp_record_iter_next(&it, &rec)) == 1) {
        if (!cleaner_keep(cl, &rec))
            continue;
        if (rec.header_count > cl->hdrs_cap) {
            struct sp_record_header *h = realloc(cl->hdrs, rec.header_count * sizeof(*h));
            if (!h)
                return -ENOMEM;
            cl->hdrs = h;
            cl->hdrs_cap = rec.header_count;
        }
        struct sp_record_header_iter hit;
        sp_record_header_iter_init(&hit, &rec);
        for (uint32_t h = 0; h < rec.header_count; h++) {
            if (sp_record_header_next(&hit, &cl->hdrs[h]) != 1)
                return -EIO;
        }
        struct sp_record_input in = {
            .offset_delta = (int32_t)(rec.offset - batch.base_offset),
            .timestamp = rec.timestamp,
            .key = rec.key,
            .value = rec.value,
            .key_len = rec.key_len,
            .value_len = rec.value_len,
            .headers = cl->hdrs,
            .header_count = rec.header_count,
        };
        if (sp_record_builder_append(&bld, &in) < 0)
            return -EIO;
    }
    if (rc < 0)
        return -EIO;
    size_t size = 0;
    if ((rc = sp_record_builder_finish(&bld, cl->log->codec_ready ? &cl->log->codec : NULL,
                                       &size)) < 0)
        return rc == -ENOMEM ? rc : -EIO;
    /* Kafka keeps the batch's last offset delta, so the producer's sequence range stays. */
    put_be32(cl->out + HDR_LAST_OFFSET_DELTA, (uint32_t)batch.last_offset_delta);
    put_be32(cl->out + HDR_CRC, sp_crc32c(0, cl->out + HDR_ATTRIBUTES, size - HDR_ATTRIBUTES));
    *out_p = cl->out;
    *out_len = (uint32_t)size;
    return 0;
}

/* Writes an index file through a temporary file renamed over it. */
static int index_file_write(const char *path, const uint8_t *p, size_t n)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = write_all_sync(fd, p, n);
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    close(fd);
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret < 0)
        unlink(tmp);
    return ret;
}

static void dir_fsync(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

/*
 * Rewrites segment i as the map says (see sp_plog_clean). 1 when it was
 * replaced, 0 when nothing in it changed, -errno (the old file stays).
 */
static int cleaner_rewrite(struct cleaner *cl, uint32_t i)
{
    struct sp_plog *log = cl->log;
    struct seg *old = log->segs[i];
    char path[PATH_MAX], cleaned[PATH_MAX], idx_path[PATH_MAX], time_path[PATH_MAX];
    int ret = seg_path(log, old->base_offset, ".log", path, sizeof(path));
    if (ret == 0)
        ret = seg_path(log, old->base_offset, ".log.cleaned", cleaned, sizeof(cleaned));
    if (ret == 0)
        ret = seg_path(log, old->base_offset, ".index", idx_path, sizeof(idx_path));
    if (ret == 0)
        ret = seg_path(log, old->base_offset, ".timeindex", time_path, sizeof(time_path));
    if (ret < 0)
        return ret;
    struct seg *seg = seg_new(old->base_offset);
    if (!seg)
        return -ENOMEM;
    seg->log_fd = open(cleaned, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (seg->log_fd < 0) {
        ret = -errno;
        seg_free(seg);
        return ret;
    }
    uint64_t removed = 0;
    for (uint64_t pos = 0; pos < old->size_bytes && ret == 0;) {
        struct batch_info b = {0};
        ret = cleaner_read_batch(cl, old->log_fd, pos, old->size_bytes, &b);
        const uint8_t *p = NULL;
        uint32_t len = 0;
        if (ret == 0)
            ret = cleaner_filter_batch(cl, &b, &p, &len, &removed);
        pos += b.size;
        if (ret < 0 || len == 0)
            continue;
        struct batch_info nb;
        if (!batch_header(p, &nb))
            ret = -EIO;
        for (uint32_t done = 0; ret == 0 && done < len;) {
            ssize_t w = pwrite(seg->log_fd, p + done, len - done, (off_t)(seg->size_bytes + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                ret = w < 0 ? -errno : -ENOSPC;
            else
                done += (uint32_t)w;
        }
        if (ret == 0)
            seg_add_batch(seg, &nb, seg->size_bytes, log->config.index_interval_bytes);
    }
    if (ret == 0 && removed == 0)
        ret = 1; /* nothing to remove: keep the old file */
    if (ret == 0 && fsync(seg->log_fd) < 0)
        ret = -errno;
    if (ret != 0) {
        unlink(cleaned);
        seg_free(seg);
        return ret < 0 ? ret : 0;
    }
    /* Old indexes go first: a crash after the rename then rebuilds them. */
    unlink(idx_path);
    unlink(time_path);
    if (rename(cleaned, path) < 0) {
        ret = -errno;
        unlink(cleaned);
        seg_free(seg);
        return ret; /* the old segment stays; its indexes are rebuilt when it reopens */
    }
    dir_fsync(log->dir);
    seg->next_offset = old->next_offset; /* the segment still ends where the next begins */
    seg_seal_time_index(seg);
    size_t idx_bytes, time_bytes;
    if (seg_index_bytes(log, seg, &idx_bytes, &time_bytes) == 0 &&
        index_file_write(idx_path, log->roll_buf, idx_bytes) == 0)
        (void)index_file_write(time_path, log->roll_buf + idx_bytes, time_bytes);
    /* (An index not written is rebuilt by recovery, from the new data.) */
    log->clean_stats.records_removed += removed;
    log->clean_stats.bytes_before += old->size_bytes;
    log->clean_stats.bytes_after += seg->size_bytes;
    log->segs[i] = seg;
    if (old->refs == 0) {
        seg_free(old);
    } else { /* reads in flight keep the old file open; freed with the last */
        old->deleted = true;
        old->next_zombie = log->zombies;
        log->zombies = old;
    }
    return 1;
}

int sp_plog_clean(struct sp_plog *log, int64_t now_ms)
{
    SP_ASSERT(sp_shard_current() == log->shard);
    SP_ASSERT(log->seg_count > 0);
    if (!(log->config.cleanup & SP_PLOG_CLEANUP_COMPACT))
        return 0;
    /* A roll in flight writes the index bytes of log->roll_buf, which a rewrite reuses. */
    if (log->state == W_ROLL1 || log->state == W_ROLL2)
        return 0;
    /* The closed segments, up to the first within the compaction lag. */
    uint32_t n = 0;
    int64_t lag = log->config.min_compaction_lag_ms;
    while (n + 1 < log->seg_count && !(lag > 0 && log->segs[n]->max_timestamp > now_ms - lag))
        n++;
    uint64_t total = 0, dirty = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += log->segs[i]->size_bytes;
        if (log->segs[i]->next_offset > log->clean_end)
            dirty += log->segs[i]->size_bytes;
    }
    if (n == 0 || dirty == 0 ||
        (double)dirty < log->config.min_cleanable_dirty_ratio * (double)total)
        return 0;
    struct cleaner cl = {.log = log, .now_ms = now_ms};
    cl.map.max = log->config.cleaner_keys_max;
    int ret = keymap_grow(&cl.map, 1024);
    for (uint32_t i = 0; i < n && ret == 0; i++)
        ret = cleaner_map_segment(&cl, log->segs[i]);
    int rewritten = 0;
    for (uint32_t i = 0; i < n && ret >= 0; i++) {
        ret = cleaner_rewrite(&cl, i);
        rewritten += ret > 0;
    }
    free(cl.map.e);
    free(cl.in);
    free(cl.out);
    free(cl.scratch);
    free(cl.hdrs);
    if (ret < 0)
        return ret;
    log->clean_end = log->segs[n - 1]->next_offset;
    if (rewritten > 0)
        log->clean_stats.pass_count++;
    return rewritten;
}

void sp_plog_clean_stats(const struct sp_plog *log, struct sp_plog_clean_stats *out)
{
    *out = log->clean_stats;
}
