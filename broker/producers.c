/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Idempotent producers: producer ids (InitProducerId), and per partition,
 * on its owner shard, each producer's epoch and the sequence numbers of its
 * last five batches, as Kafka keeps them, so a retried batch is answered
 * with the offset it already has instead of being written twice, and a gap
 * or a stale epoch is refused.
 *
 * Producer ids come in blocks: the end of the current block is written to
 * the data directory (`producer-ids`, replaced atomically) before an id of
 * it is handed out, so ids are never reused across restarts.
 *
 * Known limit: the per-partition state lives in memory; after a broker
 * restart a producer is unknown, and its next batch is accepted whatever
 * its sequence (a retry that straddles the restart may be written twice).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_log.h"
#include "sp_record.h"

#define PID_BLOCK 1000

/* ---- Producer ids ---- */

static int pid_persist(struct sp_broker *b, int64_t block_end)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/producer-ids", b->data_dir);
    snprintf(tmp, sizeof(tmp), "%s/producer-ids.tmp", b->data_dir);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    int rc = fprintf(f, "%" PRId64 "\n", block_end) < 0 ? -EIO : 0;
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    return rc;
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

/* A fresh producer id, or -1 when the block cannot be recorded. */
static int64_t pid_new(struct sp_broker *b)
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
 * epoch bumped when the producer names it. Transactions are not served yet. */
static void init_producer_id(struct req *r)
{
    const struct sp_kafka_init_producer_id_request *q = r->f.body;
    struct sp_kafka_init_producer_id_response *resp = req_alloc(r, sizeof(*resp));
    if (resp == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_init_producer_id_response_init(resp);
    r->resp = resp;
    if (q->transactional_id.len >= 0) {
        resp->error_code = 53; /* TRANSACTIONAL_ID_AUTHORIZATION_FAILED: not served yet */
        resp->producer_id = -1;
        resp->producer_epoch = -1;
    } else if (q->producer_id >= 0 && q->producer_epoch >= 0) {
        if (q->producer_epoch >= INT16_MAX - 1) {
            resp->producer_id = pid_new(r->conn->bs->b);
            resp->producer_epoch = 0;
        } else {
            resp->producer_id = q->producer_id;
            resp->producer_epoch = (int16_t)(q->producer_epoch + 1);
        }
    } else {
        resp->producer_id = pid_new(r->conn->bs->b);
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

/* ---- Sequence state per partition ---- */

#define RECENT 5

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
};

struct producers {
    struct producer_state *v;
    uint32_t count, cap;
};

static struct producer_state *state_of(struct part *pt, int64_t pid, bool create)
{
    struct producers *ps = pt->producers;
    for (uint32_t i = 0; ps != NULL && i < ps->count; i++) {
        if (ps->v[i].pid == pid)
            return &ps->v[i];
    }
    if (!create)
        return NULL;
    if (ps == NULL) {
        ps = pt->producers = calloc(1, sizeof(*ps));
        if (ps == NULL)
            return NULL;
    }
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
    return s;
}

void producers_free(struct part *pt)
{
    struct producers *ps = pt->producers;
    if (ps != NULL)
        free(ps->v);
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
    while (sp_record_set_next(&set, &batch) == 1) {
        if (batch.producer_id != first.producer_id || batch.producer_epoch != first.producer_epoch)
            return 87; /* INVALID_RECORD: one producer per request's partition data */
        last = seq_add(batch.base_sequence, batch.last_offset_delta);
    }
    p->pid = first.producer_id;
    if (first.producer_id < 0)
        return KERR_NONE; /* not idempotent */
    p->epoch = first.producer_epoch;
    p->seq_first = first.base_sequence;
    p->seq_last = last;
    struct producer_state *s = state_of(pt, first.producer_id, true);
    if (s == NULL)
        return KERR_UNKNOWN_SERVER_ERROR;
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

void producers_done(struct part *pt, struct pop *p, int err, int64_t base_offset)
{
    if (p->pid < 0)
        return;
    struct producer_state *s = state_of(pt, p->pid, false);
    if (s == NULL || s->epoch != p->epoch)
        return;
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
