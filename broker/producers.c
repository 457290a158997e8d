/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Producers: producer ids (InitProducerId), and per partition, on its owner
 * shard, what each producer left there: its epoch and the sequence numbers
 * of its last five batches, as Kafka keeps them, so a retried batch is
 * answered with the offset it already has instead of being written twice,
 * and a gap or a stale epoch is refused; the first offset of its open
 * transaction, which holds the partition's last stable offset back until
 * the transaction's marker; and the aborted transactions (producer, first
 * offset, marker offset) that read_committed fetches return.
 *
 * Producer ids come in blocks: the end of the current block is written to
 * the data directory (`producer-ids`, replaced atomically) before an id of
 * it is handed out, so ids are never reused across restarts.
 *
 * The per-partition state is rebuilt when the log opens: from the snapshot
 * `producer-state` a clean close writes (the state and the end offset it
 * describes, with a CRC) and the batch headers of the log after that
 * offset, or of the whole log when there is no usable snapshot (after a
 * crash). Each producer is remembered up to PRODUCERS_MAX per partition (the
 * one idle longest, without an open transaction, is forgotten first), the
 * aborted transactions up to ABORTED_MAX (the oldest first; those wholly
 * before the log start go).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_crc32c.h"
#include "sp_kafka_frame.h"
#include "sp_log.h"
#include "sp_record.h"

#define PID_BLOCK 1000

/* ---- Producer ids ---- */

static int pid_write(FILE *f, void *ctx)
{
    return fprintf(f, "%" PRId64 "\n", *(const int64_t *)ctx) < 0 ? -EIO : 0;
}

static int pid_persist(struct sp_broker *b, int64_t block_end)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/producer-ids", b->data_dir);
    snprintf(tmp, sizeof(tmp), "%s/producer-ids.tmp", b->data_dir);
    return file_replace(b->data_dir, path, tmp, pid_write, &block_end);
}

int producer_ids_load(struct sp_broker *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/producer-ids", b->data_dir);
    FILE *f = fopen(path, "r");
    int64_t next = 0;
    if (f != NULL) {
        if (fscanf(f, "%" SCNd64, &next) != 1 || next < 0)
            next = -1;
        fclose(f);
        if (next < 0)
            return -EBADMSG;
    } else if (errno != ENOENT) {
        return -errno;
    }
    b->pid_next = next;
    b->pid_block_end = next;
    return 0;
}

int64_t producer_id_new(struct sp_broker *b)
{
    pthread_mutex_lock(&b->topics_lock);
    if (b->pid_next == b->pid_block_end) {
        int rc = pid_persist(b, b->pid_block_end + PID_BLOCK);
        if (rc < 0) {
            pthread_mutex_unlock(&b->topics_lock);
            sp_error("broker: cannot record producer ids: %s", strerror(-rc));
            return -1;
        }
        b->pid_block_end += PID_BLOCK;
    }
    int64_t pid = b->pid_next++;
    pthread_mutex_unlock(&b->topics_lock);
    return pid;
}

/* InitProducerId: a new id at epoch 0, or (KIP-360) the same id with its
 * epoch bumped when the producer names it. With a transactional id, the
 * transaction coordinator answers (txn.c). */
static void init_producer_id(struct req *r)
{
    const struct sp_kafka_init_producer_id_request *q = r->f.body;
    if (q->transactional_id.len >= 0) {
        txn_init_producer_id(r);
        return;
    }
    struct sp_kafka_init_producer_id_response *resp = req_alloc(r, sizeof(*resp));
    if (resp == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_init_producer_id_response_init(resp);
    r->resp = resp;
    if (q->producer_id >= 0 && q->producer_epoch >= 0) {
        if (q->producer_epoch >= INT16_MAX - 1) {
            resp->producer_id = producer_id_new(r->conn->bs->b);
            resp->producer_epoch = 0;
        } else {
            resp->producer_id = q->producer_id;
            resp->producer_epoch = (int16_t)(q->producer_epoch + 1);
        }
    } else {
        resp->producer_id = producer_id_new(r->conn->bs->b);
        resp->producer_epoch = 0;
    }
    if (resp->producer_id < 0 && resp->error_code == 0)
        resp->error_code = KERR_KAFKA_STORAGE_ERROR;
    req_finish(r);
}

const struct api_entry producer_apis[] = {
    {22, 0, 4, init_producer_id},
    {-1, 0, 0, NULL},
};

/* ---- Producer state per partition ---- */

#define RECENT 5
/* Producers remembered per partition; past it the one idle longest (with no
 * open transaction) is forgotten. */
#define PRODUCERS_MAX 10000u
/* Aborted transactions remembered per partition (the oldest go first). */
#define ABORTED_MAX 100000u

struct recent_batch {
    int32_t first, last;
    int64_t offset; /* -1 while its append is in flight */
};

struct producer_state {
    int64_t pid;
    int16_t epoch;
    int32_t last_seq; /* of the last batch accepted (in flight included) */
    uint32_t recent_count, recent_next;
    struct recent_batch recent[RECENT];
    int64_t txn_first; /* first offset of its open transaction here; -1 none */
    uint64_t used_ns;  /* last batch or marker */
};

struct aborted {
    int64_t pid, first, last; /* last: the abort marker's offset */
};

struct producers {
    struct producer_state *v;
    uint32_t count, cap;
    uint32_t open_txns; /* states with txn_first >= 0 */
    struct aborted *ab; /* by `last`, ascending: markers are appended in order */
    uint32_t ab_count, ab_cap;
};

static struct producers *producers_of(struct part *pt)
{
    if (pt->producers == NULL)
        pt->producers = calloc(1, sizeof(*pt->producers));
    return pt->producers;
}

/* Forgets the producer idle longest without an open transaction; false if none. */
static bool evict_one(struct producers *ps)
{
    uint32_t victim = UINT32_MAX;
    for (uint32_t i = 0; i < ps->count; i++) {
        if (ps->v[i].txn_first < 0 &&
            (victim == UINT32_MAX || ps->v[i].used_ns < ps->v[victim].used_ns))
            victim = i;
    }
    if (victim == UINT32_MAX)
        return false;
    ps->v[victim] = ps->v[--ps->count];
    return true;
}

static struct producer_state *state_of(struct part *pt, int64_t pid, bool create)
{
    struct producers *ps = pt->producers;
    for (uint32_t i = 0; ps != NULL && i < ps->count; i++) {
        if (ps->v[i].pid == pid)
            return &ps->v[i];
    }
    if (!create)
        return NULL;
    if ((ps = producers_of(pt)) == NULL)
        return NULL;
    if (ps->count >= PRODUCERS_MAX && !evict_one(ps))
        return NULL;
    if (ps->count == ps->cap) {
        uint32_t cap = ps->cap ? ps->cap * 2 : 8;
        struct producer_state *grown = realloc(ps->v, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        ps->v = grown;
        ps->cap = cap;
    }
    struct producer_state *s = &ps->v[ps->count++];
    memset(s, 0, sizeof(*s));
    s->pid = pid;
    s->epoch = -1;
    s->last_seq = -1;
    s->txn_first = -1;
    return s;
}

void producers_free(struct part *pt)
{
    struct producers *ps = pt->producers;
    if (ps != NULL) {
        free(ps->v);
        free(ps->ab);
    }
    free(ps);
    pt->producers = NULL;
}

static int32_t seq_add(int32_t seq, int32_t n)
{
    return (int32_t)(((int64_t)seq + n) % ((int64_t)INT32_MAX + 1));
}

int16_t producers_check(struct part *pt, struct pop *p, int64_t *dup_offset)
{
    *dup_offset = -1;
    struct sp_record_set set;
    sp_record_set_init(&set, p->data, p->len);
    struct sp_record_batch first, batch;
    if (sp_record_set_next(&set, &first) != 1)
        return KERR_CORRUPT_MESSAGE;
    int32_t last = seq_add(first.base_sequence, first.last_offset_delta);
    bool txn = sp_record_batch_is_transactional(&first);
    if (sp_record_batch_is_control(&first))
        return 87; /* INVALID_RECORD: control batches are the broker's own */
    while (sp_record_set_next(&set, &batch) == 1) {
        if (batch.producer_id != first.producer_id ||
            batch.producer_epoch != first.producer_epoch ||
            sp_record_batch_is_transactional(&batch) != txn || sp_record_batch_is_control(&batch))
            return 87; /* INVALID_RECORD: one producer per request's partition data */
        last = seq_add(batch.base_sequence, batch.last_offset_delta);
    }
    p->pid = first.producer_id;
    if (first.producer_id < 0)
        return txn ? 87 : KERR_NONE; /* not idempotent (a transaction needs an id) */
    if (first.base_sequence < 0)
        return 87; /* INVALID_RECORD: an idempotent producer's batches carry sequences */
    p->epoch = first.producer_epoch;
    p->seq_first = first.base_sequence;
    p->seq_last = last;
    struct producer_state *s = state_of(pt, first.producer_id, true);
    if (s == NULL)
        return KERR_UNKNOWN_SERVER_ERROR;
    s->used_ns = sp_now_ns();
    if (s->epoch >= 0 && first.producer_epoch < s->epoch)
        return 47; /* INVALID_PRODUCER_EPOCH */
    if (s->epoch >= 0 && first.producer_epoch == s->epoch) {
        for (uint32_t i = 0; i < s->recent_count; i++) {
            const struct recent_batch *rb = &s->recent[i];
            if (rb->first == p->seq_first && rb->last == p->seq_last) {
                if (rb->offset < 0)
                    return 7; /* REQUEST_TIMED_OUT: the same batch is still being written */
                *dup_offset = rb->offset;
                return KERR_NONE;
            }
        }
        if (p->seq_first != seq_add(s->last_seq, 1))
            return 45; /* OUT_OF_ORDER_SEQUENCE_NUMBER */
    } else {
        /* A new producer, or a new epoch: its sequence starts here. */
        s->epoch = first.producer_epoch;
        s->recent_count = s->recent_next = 0;
    }
    p->seq_prev = s->last_seq;
    s->last_seq = p->seq_last;
    s->recent[s->recent_next] =
        (struct recent_batch){.first = p->seq_first, .last = p->seq_last, .offset = -1};
    s->recent_next = (s->recent_next + 1) % RECENT;
    if (s->recent_count < RECENT)
        s->recent_count++;
    return KERR_NONE;
}

void producers_appended(struct part *pt, struct pop *p, int64_t base)
{
    struct sp_record_batch first;
    if (p->pid < 0 || sp_record_batch_parse(p->data, p->len, &first) < 0 ||
        !sp_record_batch_is_transactional(&first))
        return;
    struct producer_state *s = state_of(pt, p->pid, false);
    if (s == NULL || s->txn_first >= 0)
        return;
    /* The first batch of its transaction here: the partition's stable end
     * cannot pass this offset until the transaction's marker. */
    s->txn_first = base;
    pt->producers->open_txns++;
}

void producers_done(struct part *pt, struct pop *p, int err, int64_t base_offset)
{
    if (p->pid < 0)
        return;
    struct producer_state *s = state_of(pt, p->pid, false);
    if (s == NULL || s->epoch != p->epoch)
        return;
    if (err != 0 && s->txn_first >= 0 && s->txn_first >= sp_plog_end_offset(pt->log)) {
        /* The transaction's first batch was not written after all. */
        s->txn_first = -1;
        pt->producers->open_txns--;
    }
    for (uint32_t i = 0; i < s->recent_count; i++) {
        struct recent_batch *rb = &s->recent[i];
        if (rb->first != p->seq_first || rb->last != p->seq_last || rb->offset >= 0)
            continue;
        if (err == 0) {
            rb->offset = base_offset;
            return;
        }
        /* Not written, and neither was anything queued behind it (the log
         * fails those too): forget every batch still in flight, and go back
         * to the sequence before this one. */
        struct recent_batch keep[RECENT];
        uint32_t n = 0;
        for (uint32_t k = 0; k < s->recent_count; k++) {
            const struct recent_batch *e =
                &s->recent[(s->recent_next + RECENT - s->recent_count + k) % RECENT];
            if (e->offset >= 0)
                keep[n++] = *e;
        }
        memcpy(s->recent, keep, n * sizeof(keep[0]));
        s->recent_count = n;
        s->recent_next = n % RECENT;
        s->last_seq = p->seq_prev;
        return;
    }
}

static void marker_apply(struct part *pt, int64_t pid, int16_t epoch, bool commit, int64_t offset)
{
    struct producer_state *s = state_of(pt, pid, true);
    if (s == NULL)
        return; /* out of memory: the stable end stays where it is */
    s->used_ns = sp_now_ns();
    if (epoch > s->epoch) {
        /* A newer epoch (the coordinator fenced the producer): its
         * sequence starts again, older epochs are refused from now on. */
        s->epoch = epoch;
        s->recent_count = s->recent_next = 0;
        s->last_seq = -1;
    }
    struct producers *ps = pt->producers;
    int64_t first = s->txn_first;
    if (first < 0)
        return; /* nothing of it here: the marker alone */
    s->txn_first = -1;
    ps->open_txns--;
    if (commit)
        return;
    /* Forget the aborted transactions wholly before the log start. */
    int64_t start = sp_plog_start_offset(pt->log);
    uint32_t drop = 0;
    while (drop < ps->ab_count && ps->ab[drop].last < start)
        drop++;
    if (drop == 0 && ps->ab_count >= ABORTED_MAX)
        drop = 1;
    if (drop > 0) {
        memmove(ps->ab, ps->ab + drop, (ps->ab_count - drop) * sizeof(*ps->ab));
        ps->ab_count -= drop;
    }
    if (ps->ab_count == ps->ab_cap) {
        uint32_t cap = ps->ab_cap ? ps->ab_cap * 2 : 16;
        struct aborted *grown = realloc(ps->ab, cap * sizeof(*grown));
        if (grown == NULL) {
            sp_error("broker: %s-%" PRId32 ": out of memory for an aborted transaction", pt->topic,
                     pt->partition);
            return;
        }
        ps->ab = grown;
        ps->ab_cap = cap;
    }
    ps->ab[ps->ab_count++] = (struct aborted){.pid = pid, .first = first, .last = offset};
}

void producers_marker(struct part *pt, const struct pop *p, int64_t offset)
{
    marker_apply(pt, p->pid, p->epoch, p->commit, offset);
}

int64_t producers_lso(const struct part *pt, int64_t high_watermark)
{
    const struct producers *ps = pt->producers;
    int64_t lso = high_watermark;
    if (ps == NULL || ps->open_txns == 0)
        return lso;
    for (uint32_t i = 0; i < ps->count; i++) {
        if (ps->v[i].txn_first >= 0 && ps->v[i].txn_first < lso)
            lso = ps->v[i].txn_first;
    }
    return lso;
}

int producers_aborted(const struct part *pt, int64_t from, int64_t to,
                      struct sp_kafka_fetch_response_aborted_transaction **out, int32_t *count)
{
    *out = NULL;
    *count = 0;
    const struct producers *ps = pt->producers;
    if (ps == NULL || ps->ab_count == 0)
        return 0;
    /* The first whose marker is at or after `from` (sorted by marker). */
    uint32_t lo = 0, hi = ps->ab_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ps->ab[mid].last < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t n = 0;
    for (uint32_t i = lo; i < ps->ab_count; i++)
        n += ps->ab[i].first < to;
    if (n == 0)
        return 0;
    struct sp_kafka_fetch_response_aborted_transaction *v = malloc(n * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    n = 0;
    for (uint32_t i = lo; i < ps->ab_count; i++) {
        if (ps->ab[i].first < to)
            v[n++] = (struct sp_kafka_fetch_response_aborted_transaction){
                .producer_id = ps->ab[i].pid, .first_offset = ps->ab[i].first};
    }
    *out = v;
    *count = (int32_t)n;
    return 0;
}

/* ---- Recovery: the state from the log itself ---- */

/* A batch found in the log: what producers_check and producers_done would
 * have recorded for it. */
static void batch_apply(struct part *pt, int64_t pid, int16_t epoch, int32_t first_seq,
                        int32_t last_delta, int64_t base, bool txn)
{
    struct producer_state *s = state_of(pt, pid, true);
    if (s == NULL)
        return;
    if (epoch != s->epoch) {
        s->epoch = epoch;
        s->recent_count = s->recent_next = 0;
    }
    if (first_seq >= 0) {
        int32_t last = seq_add(first_seq, last_delta);
        s->last_seq = last;
        s->recent[s->recent_next] =
            (struct recent_batch){.first = first_seq, .last = last, .offset = base};
        s->recent_next = (s->recent_next + 1) % RECENT;
        if (s->recent_count < RECENT)
            s->recent_count++;
    }
    if (txn && s->txn_first < 0) {
        s->txn_first = base;
        pt->producers->open_txns++;
    }
}

/* A control batch's type (SP_RECORD_CONTROL_*) from its bytes as read
 * (`len` of them); -1 when they do not hold the whole batch, or it is not a
 * well-formed control batch (CRC, record, key). */
static int control_type(const uint8_t *bytes, size_t len)
{
    struct sp_record_batch batch;
    struct sp_record_iter it;
    struct sp_record rec;
    struct sp_record_control ctl;
    if (sp_record_batch_parse(bytes, len, &batch) != 0 ||
        sp_record_iter_init(&it, &batch, batch.records, batch.records_len) != 0 ||
        sp_record_iter_next(&it, &rec) != 1 || sp_record_control_parse(&rec, &ctl) != 0)
        return -1;
    return ctl.type;
}

/* sp_plog_scan's callback: what a batch found in the log says of its
 * producer (idempotent sequences, open transactions, markers). */
static int scan_batch(void *ctx, const uint8_t *h, size_t len)
{
    struct part *pt = ctx;
    int64_t base = (int64_t)sp_kload64(h);
    int16_t attrs = (int16_t)sp_kload16(h + 21);
    int32_t last_delta = (int32_t)sp_kload32(h + 23);
    int64_t pid = (int64_t)sp_kload64(h + 43);
    if (pid < 0)
        return 0;
    int16_t epoch = (int16_t)sp_kload16(h + 51);
    if (attrs & SP_RECORD_ATTR_CONTROL) {
        int type = control_type(h, len);
        if (type == SP_RECORD_CONTROL_ABORT || type == SP_RECORD_CONTROL_COMMIT)
            marker_apply(pt, pid, epoch, type == SP_RECORD_CONTROL_COMMIT, base);
    } else {
        batch_apply(pt, pid, epoch, (int32_t)sp_kload32(h + 53), last_delta, base,
                    (attrs & SP_RECORD_ATTR_TRANSACTIONAL) != 0);
    }
    return 0;
}

/*
 * The snapshot `producer-state` in the partition's directory, written at a
 * clean close: a header (magic, version, the sizes of the records, the end
 * offset it describes, the counts), the producer states and the aborted
 * transactions as they are in memory, and a CRC-32C of all that. Not
 * fsync'd: a snapshot that is missing, torn or from another build only
 * means a longer scan.
 */
#define SNAP_MAGIC 0x53505053u /* "SPPS" */
#define SNAP_VERSION 1u

struct snap_header {
    uint32_t magic, version, state_bytes, aborted_bytes;
    int64_t end_offset;
    uint32_t producers, aborted;
};

static void snap_path(char *buf, size_t size, const char *dir, const char *suffix)
{
    snprintf(buf, size, "%s/producer-state%s", dir, suffix);
}

/* Forgets the batches still waiting to be written (the log is closing):
 * each producer's sequence goes back to its last batch written. */
static void drop_unwritten(struct producers *ps)
{
    for (uint32_t i = 0; ps != NULL && i < ps->count; i++) {
        struct producer_state *s = &ps->v[i];
        struct recent_batch keep[RECENT];
        uint32_t n = 0;
        int32_t first_unwritten = -1;
        for (uint32_t k = 0; k < s->recent_count; k++) {
            const struct recent_batch *e =
                &s->recent[(s->recent_next + RECENT - s->recent_count + k) % RECENT];
            if (e->offset >= 0)
                keep[n++] = *e;
            else if (first_unwritten < 0)
                first_unwritten = e->first;
        }
        if (first_unwritten < 0)
            continue;
        memcpy(s->recent, keep, n * sizeof(keep[0]));
        s->recent_count = n;
        s->recent_next = n % RECENT;
        s->last_seq = n > 0 ? keep[n - 1].last : seq_add(first_unwritten, INT32_MAX);
    }
}

void producers_save(struct part *pt, const char *dir)
{
    drop_unwritten(pt->producers);
    const struct producers *ps = pt->producers;
    struct snap_header h = {.magic = SNAP_MAGIC,
                            .version = SNAP_VERSION,
                            .state_bytes = sizeof(struct producer_state),
                            .aborted_bytes = sizeof(struct aborted),
                            .end_offset = sp_plog_end_offset(pt->log),
                            .producers = ps != NULL ? ps->count : 0,
                            .aborted = ps != NULL ? ps->ab_count : 0};
    char path[4200], tmp[4200];
    snap_path(path, sizeof(path), dir, "");
    snap_path(tmp, sizeof(tmp), dir, ".tmp");
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        sp_warn("broker: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    uint32_t crc = sp_crc32c(0, &h, sizeof(h));
    bool ok = fwrite(&h, sizeof(h), 1, f) == 1;
    if (ps != NULL && h.producers > 0) {
        crc = sp_crc32c(crc, ps->v, h.producers * sizeof(*ps->v));
        ok &= fwrite(ps->v, sizeof(*ps->v), h.producers, f) == h.producers;
    }
    if (ps != NULL && h.aborted > 0) {
        crc = sp_crc32c(crc, ps->ab, h.aborted * sizeof(*ps->ab));
        ok &= fwrite(ps->ab, sizeof(*ps->ab), h.aborted, f) == h.aborted;
    }
    ok &= fwrite(&crc, sizeof(crc), 1, f) == 1;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        sp_warn("broker: cannot write %s", path);
        unlink(tmp);
    }
}

/* Loads the snapshot; the offset it describes, or -1 when there is none
 * usable (then nothing was loaded). */
static int64_t snap_load(struct part *pt, const char *dir, int64_t end)
{
    char path[4200];
    snap_path(path, sizeof(path), dir, "");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    struct snap_header h;
    struct producer_state *v = NULL;
    struct aborted *ab = NULL;
    uint32_t crc_file;
    int64_t at = -1;
    if (fread(&h, sizeof(h), 1, f) != 1 || h.magic != SNAP_MAGIC || h.version != SNAP_VERSION ||
        h.state_bytes != sizeof(*v) || h.aborted_bytes != sizeof(*ab) || h.end_offset > end ||
        h.end_offset < 0 || h.producers > PRODUCERS_MAX || h.aborted > ABORTED_MAX)
        goto out;
    v = malloc((h.producers ? h.producers : 1) * sizeof(*v));
    ab = malloc((h.aborted ? h.aborted : 1) * sizeof(*ab));
    if (v == NULL || ab == NULL || fread(v, sizeof(*v), h.producers, f) != h.producers ||
        fread(ab, sizeof(*ab), h.aborted, f) != h.aborted || fread(&crc_file, 4, 1, f) != 1)
        goto out;
    uint32_t crc = sp_crc32c(0, &h, sizeof(h));
    crc = sp_crc32c(crc, v, h.producers * sizeof(*v));
    crc = sp_crc32c(crc, ab, h.aborted * sizeof(*ab));
    if (crc != crc_file)
        goto out;
    struct producers *ps = producers_of(pt);
    if (ps == NULL)
        goto out;
    free(ps->v);
    free(ps->ab);
    ps->v = v;
    ps->count = ps->cap = h.producers;
    ps->ab = ab;
    ps->ab_count = ps->ab_cap = h.aborted;
    ps->open_txns = 0;
    for (uint32_t i = 0; i < h.producers; i++)
        ps->open_txns += v[i].txn_first >= 0;
    v = NULL;
    ab = NULL;
    at = h.end_offset;
out:
    free(v);
    free(ab);
    fclose(f);
    return at;
}

void producers_recover(struct part *pt, const char *dir)
{
    int64_t start = sp_plog_start_offset(pt->log), end = sp_plog_end_offset(pt->log);
    int64_t from = snap_load(pt, dir, end);
    if (from < 0 || from < start) {
        producers_free(pt); /* a snapshot older than the log start: scan it all */
        from = start;
    }
    if (from < end) {
        int rc = sp_plog_scan(pt->log, from, scan_batch, pt);
        if (rc < 0)
            sp_warn("broker: %s: cannot rebuild producer state: %s", dir, strerror(-rc));
    }
}
