/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints of a running job: the coordinator, each shard's part, the
 * uploader, and restore.
 *
 * The coordinator runs on shard 0. Every checkpoint_interval_ms (after at
 * least checkpoint_min_pause_ms since the last one ended, one at a time) it
 * takes the next id, tells the uploader to begin, and sends a trigger to
 * every shard, whose sources put the barrier out (exec.c). Where the
 * barrier passes an instance (aligned on all its inputs), the shard takes
 * that instance's synchronous step: sp_table_snapshot_begin() on each of
 * its registered tables (O(1): a version bump), then its barrier() hook (a
 * sink pre-commits; small state goes in with sp_ckpt_put). The tables are
 * then streamed out by a task on the shard, a bounded slice per turn,
 * interleaved with processing: copy-on-write in the table keeps each
 * snapshot exact while the operator goes on writing. The stream is cut
 * into chunks (framed: which table, how many bytes) that go to the
 * uploader thread, which owns the store (ckpt/: file:// or s3://) and writes
 * each chunk as a segment. When every instance of a shard has passed the
 * barrier, its streams are out and its holds released (a sink waiting for
 * its epoch's acknowledgements), the shard sends "done" with its small
 * state; when every shard is done, the uploader adds the segments of
 * earlier checkpoints that deltas build on (by reference), publishes the
 * manifest, applies retention, and tells the coordinator, which tells every
 * shard: tables mark the snapshot complete (the next delta starts there),
 * sinks commit their epoch, sources may commit offsets. A checkpoint that
 * fails (a write error, a timeout, an alignment that ran out of memory) is
 * aborted everywhere; the job keeps running and the next one tries again.
 *
 * Incremental: a shard writes its tables whole (full) when it has no
 * completed checkpoint to build on, after checkpoint_max_deltas deltas, or
 * when its deltas add up to more than the last full one; otherwise the
 * entries written and deleted since its last completed checkpoint (delta).
 * A checkpoint's manifest lists every segment restore needs: the full one
 * and the deltas after it, per shard.
 *
 * Restore (before the runtime starts): the newest checkpoint whose manifest
 * and every segment verify (or the one asked for) is read into memory, the
 * frames of each old shard reassembled into one stream per table and
 * checkpoint; each shard then applies, for each of its tables, the full
 * stream and the deltas of every old shard whose key groups overlap its
 * own (so a checkpoint restores onto another shard count), and sources and
 * sinks read their small state back with sp_ckpt_foreach.
 *
 * Formats (little-endian): a shard's data for one checkpoint is a sequence
 * of frames [u32 kind][u32 table][u32 bytes][bytes]; the first frame
 * (kind HEAD) holds the shard, the shard count, full or delta, the
 * checkpoint it builds on, and the tables (node id, name); DATA frames
 * carry the named table's snapshot stream (state/sp_table.h) in order.
 * Small state goes into the manifest's positions as "<node id>/<key>".
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "exec_int.h"
#include "sp_ckpt_store.h"
#include "sp_io.h"
#include "sp_log.h"

#define CK_CHUNK_BYTES (32u << 20)       /* a segment's size at most */
#define CK_SLICE_BYTES (1u << 20)        /* streamed per task turn */
#define CK_INFLIGHT_BYTES (256ull << 20) /* handed to the uploader, not written yet */
#define CK_READ_MIN (64u << 10)          /* sp_table_snapshot_read's smallest cap */
#define CK_TABLES_MAX 256u               /* registered per shard */
#define CK_NAME_BYTES 48
#define CK_PUT_KEY_BYTES 200
#define CK_PUT_VALUE_BYTES 4096
#define CK_FRAME_HEAD 0x44414548u /* "HEAD" */
#define CK_FRAME_DATA 0x41544144u /* "DATA" */
#define CK_FRAME_BYTES 12u
#define CK_HEAD_MAGIC 0x31544b53u /* "SKT1" */
#define CK_WAIT_NS (1 * SP_NSEC_PER_MSEC)
#define CK_FINAL_TRIES 3 /* final checkpoints tried before a job ends without one */

/* ---- The uploader's queue ---- */

enum up_kind { UP_BEGIN, UP_CHUNK, UP_DONE, UP_ABORT, UP_STOP };

struct up_item {
    struct up_item *next;
    enum up_kind kind;
    uint64_t id;
    uint32_t shard;
    uint8_t *data; /* CHUNK: the segment; DONE: the puts (key NUL value-len value)... */
    size_t len;
    uint32_t puts;
    bool full;         /* DONE */
    uint64_t since_id; /* DONE, delta: the checkpoint it builds on */
    int err;           /* DONE: the shard failed its part */
    uint64_t sync_ns;  /* DONE: its longest synchronous step */
};

struct up_result {
    struct up_result *next;
    uint64_t id;
    int err;
    uint64_t bytes;
    uint64_t sync_ns; /* the longest synchronous step of any shard */
    uint32_t full;    /* shards that wrote their state whole */
};

struct ck_run {
    struct sp_exec *exec;
    struct sp_ckpt_store *store;
    char url[1024];
    /* Where a restore reads: the store, or a savepoint's (--from-savepoint). */
    struct sp_ckpt_store *rstore;
    const char *rurl;
    uint32_t interval_ms, min_pause_ms, timeout_ms, retain, max_deltas;

    /* The uploader thread and its queue. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct up_item *head, *tail;
    _Atomic uint64_t queued_bytes;
    struct up_result *results; /* for the coordinator, under lock */
    int event_fd;              /* the uploader writes it when a result is ready */
    uint64_t next_id;          /* uploader: ids beyond every published one */
    /* uploader's state of the checkpoint being written */
    uint64_t up_id;
    int up_err;
    uint32_t up_done;
    uint64_t up_bytes;
    uint64_t up_sync_ns;
    uint32_t up_full;
    struct sp_ckpt_manifest ref; /* an earlier manifest a delta builds on */

    /* Coordinator (shard 0). */
    struct sp_timer timer;
    struct sp_io_op event_op;
    uint64_t event_value;
    uint64_t inflight; /* 0: none */
    uint64_t trigger_ns, ended_ns;
    bool requested; /* sp_ckpt_request: one soon */
    bool stopping;
    uint64_t completed, failed;

    /* Restore. */
    bool restoring;
    struct sp_ckpt_manifest manifest;
    uint32_t old_shards;
    uint32_t key_groups;
    struct ck_old *old; /* [old_shards] */
};

/* A restored stream of one table, from one old shard's checkpoint. */
struct ck_rstream {
    uint32_t node;
    char name[CK_NAME_BYTES];
    uint8_t *data;
    size_t len;
};

/* One old shard's data in one checkpoint of the restored chain. */
struct ck_rpart {
    uint64_t id;
    bool full;
    struct ck_rstream *streams;
    uint32_t nstreams;
    uint8_t *buf; /* the segments back to back, frames compacted in place */
};

struct ck_old {
    struct ck_rpart *parts; /* oldest (full) first */
    uint32_t nparts;
};

/* ---- A shard's part ---- */

struct ck_table {
    struct sp_inst *inst;
    char name[CK_NAME_BYTES];
    struct sp_table *t;
    uint32_t done_v; /* its snapshot in the last completed checkpoint; 0: none */
    uint32_t snap_v; /* of the checkpoint in flight; 0: none */
    bool streaming;
};

struct ck_shard {
    struct sp_xshard *xs;
    struct ck_run *run;
    struct ck_table tables[CK_TABLES_MAX];
    uint32_t ntables;
    uint32_t insts; /* instances a barrier must pass */

    uint64_t done_id;    /* last completed checkpoint known here */
    uint64_t aborted_id; /* checkpoints up to here were given up */
    uint64_t triggered;  /* the newest checkpoint whose trigger came here */
    uint32_t deltas;     /* completed deltas since the last full one */
    bool staggered;      /* its first full write is done */
    bool force_full;     /* a delta could not be taken: the next write is whole */
    bool final_wait;     /* the sinks are done: a checkpoint after final_after ends the shard */
    uint64_t final_after;
    uint32_t final_failed; /* final checkpoints that failed */
    bool putting;          /* in barrier() or a source's checkpoint(): sp_ckpt_put allowed */
    uint64_t full_bytes, delta_bytes;

    /* The checkpoint in flight here. */
    uint64_t id;
    uint32_t passed;
    uint32_t holds;
    int err;
    bool full;
    uint64_t since_id;
    uint64_t bytes;
    uint64_t sync_ns;    /* its longest synchronous step */
    uint32_t stream_cur; /* table being streamed, UINT32_MAX: none */
    bool streams_done;
    bool sent_done;
    uint8_t *chunk;
    size_t chunk_len;
    uint8_t *puts;
    size_t puts_len, puts_cap;
    uint32_t puts_count;
    struct sp_task task;
    bool task_posted;
    struct sp_timer wait; /* the uploader is behind: stream again later */
};

/* ---- The uploader thread ---- */

static void up_push(struct ck_run *run, struct up_item *it)
{
    it->next = NULL;
    if (it->kind == UP_CHUNK)
        atomic_fetch_add(&run->queued_bytes, it->len);
    pthread_mutex_lock(&run->lock);
    if (run->tail)
        run->tail->next = it;
    else
        run->head = it;
    run->tail = it;
    pthread_cond_signal(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

static void up_result(struct ck_run *run, uint64_t id, int err, uint64_t bytes)
{
    struct up_result *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        sp_error("checkpoint %" PRIu64 ": out of memory reporting its end", id);
        return; /* the coordinator's timeout fails it */
    }
    r->id = id;
    r->err = err;
    r->bytes = bytes;
    r->sync_ns = run->up_sync_ns;
    r->full = run->up_full;
    pthread_mutex_lock(&run->lock);
    r->next = run->results;
    run->results = r;
    pthread_mutex_unlock(&run->lock);
    uint64_t one = 1;
    ssize_t n = write(run->event_fd, &one, sizeof(one));
    (void)n; /* a saturated counter still wakes the reader */
}

/* Adds shard `shard`'s segments of checkpoint `since` by reference. */
static int up_reference(struct ck_run *run, uint32_t shard, uint64_t since)
{
    struct sp_ckpt_manifest *m = &run->ref;
    if (m->checkpoint_id != since) {
        int err = sp_ckpt_store_read_manifest(run->store, since, m);
        if (err < 0) {
            m->checkpoint_id = 0;
            return err;
        }
    }
    for (uint32_t i = 0; i < m->segment_count; i++) {
        if (m->segments[i].shard != shard)
            continue;
        int err = sp_ckpt_store_reference(run->store, &m->segments[i]);
        if (err < 0)
            return err;
    }
    return 0;
}

/* The checkpoint being written failed: abandoned at once (what its shards
 * still send is dropped), the coordinator told. */
static void up_fail(struct ck_run *run, int err)
{
    uint64_t id = run->up_id;
    sp_ckpt_store_abort(run->store);
    run->up_id = 0;
    up_result(run, id, err, run->up_bytes);
}

static void up_done(struct ck_run *run, struct up_item *it)
{
    if (it->err < 0) {
        up_fail(run, it->err);
        return;
    }
    run->up_sync_ns = SP_MAX(run->up_sync_ns, it->sync_ns);
    run->up_full += it->full;
    if (run->up_err == 0 && !it->full)
        run->up_err = up_reference(run, it->shard, it->since_id);
    /* The shard's small state: key NUL, u32 length, value. */
    const uint8_t *p = it->data;
    for (uint32_t i = 0; run->up_err == 0 && i < it->puts; i++) {
        size_t klen = strlen((const char *)p);
        uint32_t vlen = sp_le_load32(p + klen + 1);
        run->up_err = sp_ckpt_store_set_position(run->store, p, (uint32_t)klen, p + klen + 5, vlen);
        p += klen + 5 + vlen;
    }
    if (++run->up_done < run->exec->shard_count)
        return;
    uint64_t id = run->up_id;
    int err = run->up_err;
    if (err == 0)
        err = sp_ckpt_store_publish(run->store, 0);
    if (err < 0) {
        sp_ckpt_store_abort(run->store);
    } else {
        int n = sp_ckpt_store_retain(run->store, run->retain);
        if (n < 0)
            sp_warn("checkpoint %" PRIu64 ": retention failed (%s); older checkpoints stay", id,
                    strerror(-n));
    }
    run->up_id = 0;
    up_result(run, id, err, run->up_bytes);
}

static void *up_main(void *arg)
{
    struct ck_run *run = arg;
    for (;;) {
        pthread_mutex_lock(&run->lock);
        while (run->head == NULL)
            pthread_cond_wait(&run->cond, &run->lock);
        struct up_item *it = run->head;
        run->head = it->next;
        if (run->head == NULL)
            run->tail = NULL;
        pthread_mutex_unlock(&run->lock);

        enum up_kind kind = it->kind;
        switch (kind) {
        case UP_BEGIN: {
            if (run->up_id != 0)
                sp_ckpt_store_abort(run->store);
            struct sp_ckpt_info info = {.checkpoint_id = it->id,
                                        .job = run->exec->job->name,
                                        .shard_count = run->exec->shard_count,
                                        .key_group_first = 0,
                                        .key_group_end = run->exec->config.key_groups};
            run->up_id = it->id;
            run->up_done = 0;
            run->up_bytes = 0;
            run->up_sync_ns = 0;
            run->up_full = 0;
            run->up_err = sp_ckpt_store_begin(run->store, &info);
            if (run->up_err < 0) {
                /* Report at once: shards' chunks for it are dropped. */
                uint64_t id = run->up_id;
                run->up_id = 0;
                up_result(run, id, run->up_err, 0);
            }
            break;
        }
        case UP_CHUNK:
            if (it->id == run->up_id && run->up_err == 0) {
                int err =
                    sp_ckpt_store_write_segment(run->store, it->shard, it->data, it->len, NULL);
                run->up_bytes += it->len;
                if (err < 0)
                    up_fail(run, err);
            }
            atomic_fetch_sub(&run->queued_bytes, it->len);
            break;
        case UP_DONE:
            if (it->id == run->up_id)
                up_done(run, it);
            break;
        case UP_ABORT:
            if (it->id == run->up_id) {
                sp_ckpt_store_abort(run->store);
                run->up_id = 0;
            }
            break;
        case UP_STOP:
            if (run->up_id != 0)
                sp_ckpt_store_abort(run->store);
            run->up_id = 0;
            break;
        }
        free(it->data);
        free(it);
        if (kind == UP_STOP)
            return NULL;
    }
}

/* ---- Coordinator (shard 0) ---- */

static void ck_msg_trigger(struct sp_shard *shard, void *arg);
static void old_free(struct ck_run *run);
static void ck_msg_done(struct sp_shard *shard, void *arg);
static void ck_msg_abort(struct sp_shard *shard, void *arg);

static void broadcast(struct ck_run *run, struct sp_shard *shard,
                      void (*fn)(struct sp_shard *, void *), uint64_t id)
{
    for (unsigned s = 0; s < run->exec->shard_count; s++) {
        int rc = sp_shard_send(shard, s, fn, (void *)(uintptr_t)id);
        SP_ASSERT(rc == 0); /* control messages: a handful per checkpoint */
    }
}

static void coord_arm(struct ck_run *run, struct sp_shard *shard);

static void coord_trigger(struct ck_run *run, struct sp_shard *shard, uint64_t now)
{
    uint64_t id = run->next_id++;
    struct up_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        sp_warn("checkpoint %" PRIu64 ": out of memory, skipped", id);
        run->ended_ns = now;
        return;
    }
    it->kind = UP_BEGIN;
    it->id = id;
    up_push(run, it);
    run->inflight = id;
    run->trigger_ns = now;
    run->requested = false;
    broadcast(run, shard, ck_msg_trigger, id);
}

static void coord_fail(struct ck_run *run, struct sp_shard *shard, uint64_t id, const char *why)
{
    sp_warn("checkpoint %" PRIu64 " failed: %s; the job goes on", id, why);
    run->failed++;
    struct up_item *it = calloc(1, sizeof(*it));
    if (it != NULL) {
        it->kind = UP_ABORT;
        it->id = id;
        up_push(run, it);
    }
    run->inflight = 0;
    run->ended_ns = sp_now_ns();
    broadcast(run, shard, ck_msg_abort, id);
}

static void coord_tick(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    struct ck_run *run = ctx;
    struct sp_shard *shard = run->exec->xs[0]->shard;
    if (run->stopping || run->exec->failed)
        return;
    uint64_t now = sp_now_ns();
    if (run->inflight != 0) {
        if (now - run->trigger_ns >= (uint64_t)run->timeout_ms * SP_NSEC_PER_MSEC)
            coord_fail(run, shard, run->inflight, "timed out");
    } else {
        uint64_t pause_end = run->ended_ns + (uint64_t)run->min_pause_ms * SP_NSEC_PER_MSEC;
        uint64_t due = run->trigger_ns + (uint64_t)run->interval_ms * SP_NSEC_PER_MSEC;
        if (now >= pause_end && (now >= due || run->requested))
            coord_trigger(run, shard, now);
    }
    coord_arm(run, shard);
}

static void coord_arm(struct ck_run *run, struct sp_shard *shard)
{
    uint64_t now = sp_now_ns();
    uint64_t at;
    if (run->inflight != 0) {
        at = run->trigger_ns + (uint64_t)run->timeout_ms * SP_NSEC_PER_MSEC;
    } else {
        uint64_t pause_end = run->ended_ns + (uint64_t)run->min_pause_ms * SP_NSEC_PER_MSEC;
        uint64_t due =
            run->requested ? now : run->trigger_ns + (uint64_t)run->interval_ms * SP_NSEC_PER_MSEC;
        at = SP_MAX(pause_end, due);
    }
    sp_shard_timer_cancel(shard, &run->timer);
    sp_shard_timer_arm(shard, &run->timer, SP_MAX(at, now));
}

static void coord_event(struct sp_io_op *op, int res, void *ctx);

static void coord_read_event(struct ck_run *run, struct sp_shard *shard)
{
    int rc = sp_io_read(shard, &run->event_op, run->event_fd, &run->event_value,
                        sizeof(run->event_value), 0, coord_event, run);
    if (rc < 0)
        sp_error("checkpoints: cannot wait for the uploader (%s)", strerror(-rc));
}

/* The uploader has results: a checkpoint published or failed. */
static void coord_event(struct sp_io_op *op, int res, void *ctx)
{
    (void)op;
    struct ck_run *run = ctx;
    if (res == -ECANCELED || run->stopping)
        return;
    struct sp_shard *shard = run->exec->xs[0]->shard;
    pthread_mutex_lock(&run->lock);
    struct up_result *r = run->results;
    run->results = NULL;
    pthread_mutex_unlock(&run->lock);
    while (r != NULL) {
        struct up_result *next = r->next;
        if (r->id == run->inflight) {
            if (r->err < 0) {
                coord_fail(run, shard, r->id, strerror(-r->err));
            } else {
                uint64_t us = (sp_now_ns() - run->trigger_ns) / 1000;
                sp_info("checkpoint %" PRIu64 " complete: %" PRIu64 " bytes in %" PRIu64
                        ".%03" PRIu64 " ms (%u of %u shards whole, the rest deltas; longest "
                        "synchronous step %" PRIu64 " us)",
                        r->id, r->bytes, us / 1000, us % 1000, r->full, run->exec->shard_count,
                        r->sync_ns / 1000);
                run->completed++;
                run->inflight = 0;
                run->ended_ns = sp_now_ns();
                broadcast(run, shard, ck_msg_done, r->id);
            }
        }
        free(r);
        r = next;
    }
    coord_arm(run, shard);
    coord_read_event(run, shard);
}

static void ck_msg_request(struct sp_shard *shard, void *arg)
{
    struct ck_run *run = ((struct sp_exec *)arg)->ck;
    if (run->stopping)
        return;
    run->requested = true;
    if (run->inflight == 0)
        coord_arm(run, shard);
}

void sp_ckpt_request(struct sp_xshard *xs)
{
    if (xs->exec->ck == NULL)
        return;
    int rc = sp_shard_send(xs->shard, 0, ck_msg_request, xs->exec);
    SP_ASSERT(rc == 0);
}

/* ---- A shard's part ---- */

static void shard_reset(struct ck_shard *cs)
{
    for (uint32_t i = 0; i < cs->ntables; i++) {
        struct ck_table *tb = &cs->tables[i];
        if (tb->streaming)
            sp_table_snapshot_cancel(tb->t);
        tb->streaming = false;
        tb->snap_v = 0;
    }
    free(cs->chunk);
    cs->chunk = NULL;
    cs->chunk_len = 0;
    cs->puts_len = 0;
    cs->puts_count = 0;
    cs->id = 0;
    cs->passed = cs->holds = 0;
    cs->err = 0;
    cs->bytes = 0;
    cs->sync_ns = 0;
    cs->stream_cur = UINT32_MAX;
    cs->streams_done = false;
    cs->sent_done = false;
}

/* The checkpoint this shard works on. It starts with the trigger (which
 * comes after the verdict on the one before, on the same ring from shard
 * 0); exchange receivers hold a barrier that comes first (ck_triggered). */
static struct ck_shard *shard_begin(struct sp_xshard *xs, uint64_t id)
{
    struct ck_shard *cs = xs->ckpt;
    if (id <= cs->aborted_id || id <= cs->done_id || (cs->id != 0 && id < cs->id))
        return NULL; /* given up (or a stale barrier): nothing to take */
    if (cs->id == id)
        return cs;
    if (cs->id != 0) {
        /* An earlier one never finished here: it failed elsewhere. */
        shard_reset(cs);
    }
    cs->id = id;
    cs->since_id = cs->done_id;
    cs->full = cs->done_id == 0 || cs->force_full || cs->deltas >= cs->run->max_deltas ||
               cs->delta_bytes > cs->full_bytes;
    return cs;
}

static void shard_fail(struct ck_shard *cs, int err)
{
    if (cs->err == 0)
        cs->err = err;
}

static int chunk_open(struct ck_shard *cs)
{
    if (cs->chunk != NULL)
        return 0;
    cs->chunk = malloc(CK_CHUNK_BYTES);
    if (cs->chunk == NULL)
        return -ENOMEM;
    cs->chunk_len = 0;
    return 0;
}

/* Hands the chunk to the uploader as a segment. */
static void chunk_ship(struct ck_shard *cs)
{
    if (cs->chunk == NULL || cs->chunk_len == 0)
        return;
    struct up_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        shard_fail(cs, -ENOMEM);
        return;
    }
    it->kind = UP_CHUNK;
    it->id = cs->id;
    it->shard = cs->xs->shard->id;
    it->data = cs->chunk;
    it->len = cs->chunk_len;
    cs->bytes += cs->chunk_len;
    cs->chunk = NULL;
    cs->chunk_len = 0;
    up_push(cs->run, it);
}

/* The HEAD frame: who wrote this, what it builds on, which tables. */
static int write_head(struct ck_shard *cs)
{
    int rc = chunk_open(cs);
    if (rc < 0)
        return rc;
    uint8_t *p = cs->chunk + CK_FRAME_BYTES;
    sp_le_store32(p, CK_HEAD_MAGIC);
    sp_le_store32(p + 4, cs->xs->shard->id);
    sp_le_store32(p + 8, cs->xs->exec->shard_count);
    sp_le_store32(p + 12, cs->full ? 1 : 0);
    sp_le_store64(p + 16, cs->id);
    sp_le_store64(p + 24, cs->full ? 0 : cs->since_id);
    sp_le_store32(p + 32, cs->ntables);
    p += 36;
    for (uint32_t i = 0; i < cs->ntables; i++) {
        sp_le_store32(p, cs->tables[i].inst->node->id);
        size_t n = strlen(cs->tables[i].name);
        p[4] = (uint8_t)n;
        memcpy(p + 5, cs->tables[i].name, n);
        p += 5 + n;
    }
    uint32_t bytes = (uint32_t)(p - (cs->chunk + CK_FRAME_BYTES));
    sp_le_store32(cs->chunk, CK_FRAME_HEAD);
    sp_le_store32(cs->chunk + 4, 0);
    sp_le_store32(cs->chunk + 8, bytes);
    cs->chunk_len = CK_FRAME_BYTES + bytes;
    return 0;
}

static void shard_maybe_done(struct ck_shard *cs);
static void stream_task(struct sp_task *task, struct sp_shard *shard);

static void stream_post(struct ck_shard *cs)
{
    if (cs->task_posted)
        return;
    cs->task_posted = true;
    sp_shard_post(cs->xs->shard, &cs->task, stream_task);
}

static void stream_wait_done(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    stream_post(ctx);
}

/* Streams a slice of the tables' snapshots into chunks. */
static void stream_task(struct sp_task *task, struct sp_shard *shard)
{
    struct ck_shard *cs = SP_CONTAINER_OF(task, struct ck_shard, task);
    cs->task_posted = false;
    if (cs->id == 0 || cs->streams_done || sp_shard_stopping(shard))
        return;
    if (atomic_load(&cs->run->queued_bytes) > CK_INFLIGHT_BYTES) {
        /* The uploader is behind: memory stays bounded, try again soon. */
        sp_shard_timer_cancel(shard, &cs->wait);
        sp_shard_timer_arm(shard, &cs->wait, sp_now_ns() + CK_WAIT_NS);
        return;
    }
    size_t slice = 0;
    while (slice < CK_SLICE_BYTES && cs->err == 0) {
        /* One table at a time, to its end (its frames stay together);
         * only tables whose snapshot began (their instance passed). */
        if (cs->stream_cur == UINT32_MAX) {
            for (uint32_t i = 0; i < cs->ntables && cs->stream_cur == UINT32_MAX; i++) {
                if (cs->tables[i].streaming)
                    cs->stream_cur = i;
            }
            if (cs->stream_cur == UINT32_MAX)
                break;
        }
        struct ck_table *tb = &cs->tables[cs->stream_cur];
        int rc = chunk_open(cs);
        if (rc < 0) {
            shard_fail(cs, rc);
            break;
        }
        if (CK_CHUNK_BYTES - cs->chunk_len < CK_FRAME_BYTES + CK_READ_MIN) {
            chunk_ship(cs);
            continue;
        }
        uint8_t *frame = cs->chunk + cs->chunk_len;
        int64_t n = sp_table_snapshot_read(tb->t, frame + CK_FRAME_BYTES,
                                           CK_CHUNK_BYTES - cs->chunk_len - CK_FRAME_BYTES);
        if (n < 0) {
            shard_fail(cs, (int)n);
            break;
        }
        if (n == 0) {
            tb->streaming = false; /* this table is out */
            cs->stream_cur = UINT32_MAX;
            continue;
        }
        sp_le_store32(frame, CK_FRAME_DATA);
        sp_le_store32(frame + 4, cs->stream_cur);
        sp_le_store32(frame + 8, (uint32_t)n);
        cs->chunk_len += CK_FRAME_BYTES + (size_t)n;
        slice += (size_t)n;
    }
    if (cs->err != 0) {
        shard_maybe_done(cs);
        return;
    }
    bool more = false;
    for (uint32_t i = 0; i < cs->ntables; i++)
        more |= cs->tables[i].streaming;
    if (more) {
        stream_post(cs);
        return;
    }
    if (cs->passed == cs->insts) {
        cs->streams_done = true;
        shard_maybe_done(cs);
    }
}

/* Every instance passed, every stream is out, every hold released: the
 * shard's part goes to the uploader. */
static void shard_maybe_done(struct ck_shard *cs)
{
    if (cs->id == 0 || cs->sent_done)
        return;
    if (cs->err == 0 && (cs->passed < cs->insts || cs->holds > 0 || !cs->streams_done))
        return;
    if (cs->err == 0)
        chunk_ship(cs);
    struct up_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        /* The coordinator's timeout fails the checkpoint. */
        sp_error("checkpoint %" PRIu64 ": out of memory", cs->id);
        return;
    }
    cs->sent_done = true;
    it->kind = UP_DONE;
    it->id = cs->id;
    it->shard = cs->xs->shard->id;
    it->full = cs->full;
    it->since_id = cs->since_id;
    it->err = cs->err;
    it->sync_ns = cs->sync_ns;
    it->data = cs->puts;
    it->len = cs->puts_len;
    it->puts = cs->puts_count;
    cs->puts = NULL;
    cs->puts_cap = cs->puts_len = 0;
    cs->puts_count = 0;
    free(cs->chunk);
    cs->chunk = NULL;
    up_push(cs->run, it);
}

void ck_inst_barrier(struct sp_inst *inst, uint64_t id)
{
    struct sp_xshard *xs = inst->xs;
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL)
        return;
    uint64_t t0 = sp_now_ns();
    cs = shard_begin(xs, id);
    if (cs == NULL)
        return; /* given up (or stale): no snapshot, no pre-commit */
    if (cs->err == 0) {
        if (cs->passed == 0 && cs->chunk == NULL && cs->chunk_len == 0) {
            int rc = write_head(cs);
            if (rc < 0)
                shard_fail(cs, rc);
        }
        /* The synchronous step: each table's snapshot begins (O(1)). */
        for (uint32_t i = 0; i < cs->ntables && cs->err == 0; i++) {
            struct ck_table *tb = &cs->tables[i];
            if (tb->inst != inst)
                continue;
            int64_t v = sp_table_snapshot_begin(tb->t, cs->full, cs->full ? 0 : tb->done_v);
            if (v < 0) {
                /* A delta that cannot be taken (its tombstones were dropped
                 * at the memory limit) is not taken again: write whole. */
                if (!cs->full)
                    cs->force_full = true;
                shard_fail(cs, (int)v);
                break;
            }
            tb->snap_v = (uint32_t)v;
            tb->streaming = true;
        }
    }
    cs->putting = true; /* what barrier() puts belongs to this checkpoint */
    if (inst->vt->barrier != NULL)
        inst->vt->barrier(inst, id);
    cs->putting = false;
    cs->sync_ns = SP_MAX(cs->sync_ns, sp_now_ns() - t0);
    cs->passed++;
    stream_post(cs);
    if (cs->err != 0)
        shard_maybe_done(cs);
}

void ck_src_barrier(struct sp_src *src, uint64_t id)
{
    struct sp_xshard *xs = src->xs;
    if (xs->ckpt == NULL)
        return;
    struct ck_shard *cs = shard_begin(xs, id);
    if (cs == NULL)
        return;
    cs->putting = true;
    if (src->node->u.source.vt->checkpoint != NULL)
        src->node->u.source.vt->checkpoint(src, id);
    cs->putting = false;
}

void ck_align_failed(struct sp_xshard *xs, uint64_t id)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs != NULL && cs->id == id)
        shard_fail(cs, -ENOBUFS);
}

void sp_ckpt_hold(struct sp_xshard *xs, uint64_t id)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs != NULL && cs->id == id)
        cs->holds++;
}

void sp_ckpt_release(struct sp_xshard *xs, uint64_t id, int err)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL || cs->id != id || cs->holds == 0)
        return; /* given up meanwhile */
    cs->holds--;
    if (err < 0)
        shard_fail(cs, err);
    shard_maybe_done(cs);
}

int sp_ckpt_put(struct sp_xshard *xs, const struct sp_node *node, const char *key,
                const void *value, uint32_t len)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL || cs->id == 0 || !cs->putting)
        return -EINVAL; /* only from barrier() or a source's checkpoint() */
    char full[CK_PUT_KEY_BYTES + 16];
    int klen = snprintf(full, sizeof(full), "%u/%s", node->id, key);
    if (klen < 0 || (size_t)klen >= sizeof(full) || strlen(key) > CK_PUT_KEY_BYTES ||
        len > CK_PUT_VALUE_BYTES) {
        shard_fail(cs, -E2BIG);
        return -E2BIG;
    }
    size_t need = (size_t)klen + 5 + len;
    if (cs->puts_len + need > cs->puts_cap) {
        size_t cap = SP_MAX(cs->puts_cap * 2, cs->puts_len + need + 1024);
        uint8_t *p = realloc(cs->puts, cap);
        if (p == NULL) {
            shard_fail(cs, -ENOMEM);
            return -ENOMEM;
        }
        cs->puts = p;
        cs->puts_cap = cap;
    }
    uint8_t *p = cs->puts + cs->puts_len;
    memcpy(p, full, (size_t)klen + 1);
    sp_le_store32(p + klen + 1, len);
    memcpy(p + klen + 5, value, len);
    cs->puts_len += need;
    cs->puts_count++;
    return 0;
}

/* This shard's part of checkpoint `id` is published: its tables build on
 * it from now on. */
static void apply_done(struct ck_shard *cs)
{
    for (uint32_t i = 0; i < cs->ntables; i++) {
        struct ck_table *tb = &cs->tables[i];
        if (tb->snap_v == 0)
            continue;
        sp_table_snapshot_complete(tb->t, tb->snap_v);
        tb->done_v = tb->snap_v;
        tb->snap_v = 0;
    }
}

static void ck_msg_trigger(struct sp_shard *shard, void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    struct sp_exec *exec = shard->runtime->config.ctx;
    struct sp_xshard *xs = exec->xs[shard->id];
    if (exec->failed || xs->ckpt == NULL)
        return;
    xs->ckpt->triggered = id;
    if (shard_begin(xs, id) == NULL)
        return;
    exec_barrier_inject(xs, id);
    exec_barrier_aligned(xs); /* exchange receivers that waited for this */
}

void ck_shard_final(struct sp_xshard *xs)
{
    struct ck_shard *cs = xs->ckpt;
    cs->final_wait = true;
    cs->final_after = cs->triggered; /* later triggers put barriers out after the end */
    sp_ckpt_request(xs);
}

bool ck_triggered(const struct sp_xshard *xs, uint64_t id)
{
    return xs->ckpt == NULL || xs->ckpt->triggered >= id;
}

static void ck_msg_done(struct sp_shard *shard, void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    struct sp_exec *exec = shard->runtime->config.ctx;
    struct sp_xshard *xs = exec->xs[shard->id];
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL || exec->failed)
        return;
    if (cs->id == id && cs->sent_done) {
        if (cs->full) {
            /* Shards write whole at different checkpoints (the first full
             * write of each is staggered), so no checkpoint writes every
             * shard's state at once. */
            cs->deltas = cs->staggered ? 0
                                       : xs->shard->id * cs->run->max_deltas /
                                             SP_MAX(xs->exec->shard_count, 1u);
            cs->staggered = true;
            cs->force_full = false;
            cs->full_bytes = cs->bytes;
            cs->delta_bytes = 0;
        } else {
            cs->deltas++;
            cs->delta_bytes += cs->bytes;
        }
        apply_done(cs);
        shard_reset(cs);
        cs->done_id = id;
    }
    struct sp_job *job = exec->job;
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_src *src = xs->srcs[i];
        if (src != NULL && src->node->u.source.vt->checkpoint_done != NULL)
            src->node->u.source.vt->checkpoint_done(src, id);
        struct sp_inst *inst = xs->insts[i];
        if (inst != NULL && inst->vt->checkpoint_done != NULL)
            inst->vt->checkpoint_done(inst, id);
    }
    if (cs->final_wait && id > cs->final_after) {
        cs->final_wait = false;
        exec_shard_done(xs);
    }
}

/* Every source of the shard has ended. */
static bool sources_ended(const struct sp_xshard *xs)
{
    for (uint32_t i = 0; i < xs->exec->job->node_count; i++) {
        if (xs->srcs[i] != NULL && !xs->srcs[i]->ended)
            return false;
    }
    return true;
}

static void ck_msg_abort(struct sp_shard *shard, void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    struct sp_exec *exec = shard->runtime->config.ctx;
    struct sp_xshard *xs = exec->xs[shard->id];
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL)
        return;
    if (id > cs->aborted_id)
        cs->aborted_id = id;
    if (cs->id == id) {
        free(cs->puts);
        cs->puts = NULL;
        cs->puts_cap = 0;
        shard_reset(cs);
    }
    if (xs->inject_id == id)
        xs->inject_id = 0;
    exec_barrier_abandon(xs, id);
    if (!cs->final_wait && xs->sinks_open > 0 && sources_ended(xs) &&
        ++cs->final_failed >= CK_FINAL_TRIES) {
        /* Sinks wait for a checkpoint after the end to publish their last
         * output (exactly once), and checkpoints keep failing. */
        sp_exec_fail(xs, -EIO,
                     "checkpoints keep failing after the end of the input (%u in a row): the "
                     "sinks' last output cannot be committed",
                     cs->final_failed);
        return;
    }
    if (cs->final_wait && id > cs->final_after) {
        if (++cs->final_failed < CK_FINAL_TRIES) {
            sp_ckpt_request(xs); /* the final checkpoint failed: another */
        } else {
            /* The run is complete; only its end is not recorded (a restart
             * would read again from the last checkpoint). */
            sp_warn("the final checkpoint failed %u times: the job ends without it",
                    CK_FINAL_TRIES);
            cs->final_wait = false;
            exec_shard_done(xs);
        }
    }
}

/* ---- Registration, restore into tables ---- */

int sp_exec_state_table(struct sp_inst *inst, const char *name, struct sp_table *table)
{
    struct ck_shard *cs = inst->xs->ckpt;
    if (cs == NULL)
        return 0; /* no checkpoints: nothing to keep track of */
    if (cs->ntables == CK_TABLES_MAX || strlen(name) >= CK_NAME_BYTES)
        return -E2BIG;
    for (uint32_t i = 0; i < cs->ntables; i++) {
        if (cs->tables[i].inst == inst && strcmp(cs->tables[i].name, name) == 0)
            return -EEXIST;
    }
    struct ck_table *tb = &cs->tables[cs->ntables++];
    memset(tb, 0, sizeof(*tb));
    tb->inst = inst;
    tb->t = table;
    snprintf(tb->name, sizeof(tb->name), "%s", name);
    return 0;
}

bool sp_ckpt_enabled(const struct sp_xshard *xs)
{
    return xs->exec->ck != NULL;
}

bool sp_ckpt_restoring(const struct sp_xshard *xs)
{
    return xs->exec->ck != NULL && xs->exec->ck->restoring;
}

uint64_t sp_ckpt_restored_id(const struct sp_xshard *xs)
{
    return sp_ckpt_restoring(xs) ? xs->exec->ck->manifest.checkpoint_id : 0;
}

uint32_t sp_ckpt_restored_shards(const struct sp_xshard *xs)
{
    return sp_ckpt_restoring(xs) ? xs->exec->ck->old_shards : 0;
}

int sp_ckpt_foreach(struct sp_xshard *xs, const struct sp_node *node,
                    void (*fn)(void *ctx, const char *key, const void *value, uint32_t len),
                    void *ctx)
{
    if (!sp_ckpt_restoring(xs))
        return 0;
    const struct sp_ckpt_manifest *m = &xs->exec->ck->manifest;
    char prefix[16];
    int plen = snprintf(prefix, sizeof(prefix), "%u/", node->id);
    int count = 0;
    for (uint32_t i = 0; i < m->position_count; i++) {
        const struct sp_ckpt_position *p = &m->positions[i];
        const char *key = (const char *)m->blob + p->key_offset;
        if (p->key_bytes <= (uint32_t)plen || memcmp(key, prefix, (size_t)plen) != 0)
            continue;
        char k[CK_PUT_KEY_BYTES + 1];
        uint32_t kl = SP_MIN(p->key_bytes - (uint32_t)plen, (uint32_t)CK_PUT_KEY_BYTES);
        memcpy(k, key + plen, kl);
        k[kl] = '\0';
        fn(ctx, k, m->blob + p->value_offset, p->value_bytes);
        count++;
    }
    return count;
}

int ck_shard_open(struct sp_xshard *xs)
{
    /* Called after the operators opened: xs->ckpt was made for them. */
    struct ck_shard *cs = xs->ckpt;
    struct ck_run *run = xs->exec->ck;
    struct sp_job *job = xs->exec->job;
    cs->insts = job->node_count;
    if (!run->restoring)
        return 0;
    struct sp_key_group_range mine = sp_exec_key_range(xs);
    uint64_t t0 = sp_now_ns(), bytes = 0;
    for (uint32_t o = 0; o < run->old_shards; o++) {
        struct sp_key_group_range theirs;
        if (sp_key_group_range(run->key_groups, run->old_shards, o, &theirs) < 0)
            return -EINVAL;
        if (theirs.end <= mine.first || theirs.first >= mine.end)
            continue;
        const struct ck_old *old = &run->old[o];
        for (uint32_t p = 0; p < old->nparts; p++) {
            const struct ck_rpart *part = &old->parts[p];
            for (uint32_t s = 0; s < part->nstreams; s++) {
                const struct ck_rstream *st = &part->streams[s];
                struct ck_table *tb = NULL;
                for (uint32_t i = 0; i < cs->ntables && tb == NULL; i++) {
                    if (cs->tables[i].inst->node->id == st->node &&
                        strcmp(cs->tables[i].name, st->name) == 0)
                        tb = &cs->tables[i];
                }
                if (tb == NULL) {
                    sp_exec_fail(xs, 0,
                                 "checkpoint %" PRIu64 " has state '%s' of operator %u, which "
                                 "this job does not have",
                                 run->manifest.checkpoint_id, st->name, st->node);
                    return -EINVAL;
                }
                bytes += st->len;
                /* Segment checksums were verified as they were read. */
                int rc = sp_table_restore_verified(tb->t, st->data, st->len);
                if (rc < 0) {
                    sp_exec_fail(xs, rc, "restoring %s's state '%s' from checkpoint %" PRIu64,
                                 tb->inst->node->name, st->name, run->manifest.checkpoint_id);
                    return rc;
                }
            }
        }
    }
    sp_info("restored %" PRIu64 " bytes of state into this shard's tables in %.3f s", bytes,
            (double)(sp_now_ns() - t0) / 1e9);
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst->vt->restored != NULL) {
            int rc = inst->vt->restored(inst);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

void ck_shard_start(struct sp_xshard *xs)
{
    struct ck_run *run = xs->exec->ck;
    sp_timer_init(&xs->ckpt->wait, stream_wait_done, xs->ckpt);
    if (xs->shard->id != 0)
        return;
    /* Every shard applied its part before the start barrier: the restored
     * data goes (small state stays in the manifest, for sp_ckpt_foreach). */
    old_free(run);
    run->trigger_ns = run->ended_ns = sp_now_ns();
    sp_timer_init(&run->timer, coord_tick, run);
    coord_arm(run, xs->shard);
    coord_read_event(run, xs->shard);
}

void ck_shard_stop(struct sp_xshard *xs)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL)
        return;
    sp_shard_timer_cancel(xs->shard, &cs->wait);
    if (xs->shard->id == 0) {
        struct ck_run *run = xs->exec->ck;
        run->stopping = true;
        sp_shard_timer_cancel(xs->shard, &run->timer);
    }
}

void ck_shard_close(struct sp_xshard *xs)
{
    struct ck_shard *cs = xs->ckpt;
    if (cs == NULL)
        return;
    shard_reset(cs);
    free(cs->puts);
    free(cs);
    xs->ckpt = NULL;
}

/* ---- Before and after the run ---- */

static void old_free(struct ck_run *run)
{
    for (uint32_t o = 0; run->old != NULL && o < run->old_shards; o++) {
        for (uint32_t p = 0; p < run->old[o].nparts; p++) {
            free(run->old[o].parts[p].streams);
            free(run->old[o].parts[p].buf);
        }
        free(run->old[o].parts);
    }
    free(run->old);
    run->old = NULL;
}

/*
 * Parses one part (a HEAD frame and the DATA frames after it, up to the
 * next HEAD or `len`) at buf[*at]: DATA frames are moved together in place,
 * one stream per table. 0 or -EBADMSG / -ENOMEM.
 */
static int part_parse(struct ck_rpart *part, uint8_t *buf, size_t len, size_t *at_io,
                      uint32_t shard)
{
    size_t at = *at_io;
    if (len - at < CK_FRAME_BYTES || sp_le_load32(buf + at) != CK_FRAME_HEAD)
        return -EBADMSG;
    uint32_t hlen = sp_le_load32(buf + at + 8);
    if (hlen < 36 || hlen > len - at - CK_FRAME_BYTES)
        return -EBADMSG;
    const uint8_t *h = buf + at + CK_FRAME_BYTES;
    if (sp_le_load32(h) != CK_HEAD_MAGIC || sp_le_load32(h + 4) != shard)
        return -EBADMSG;
    part->full = sp_le_load32(h + 12) != 0;
    part->id = sp_le_load64(h + 16);
    uint32_t n = sp_le_load32(h + 32);
    if (n > CK_TABLES_MAX)
        return -EBADMSG;
    part->streams = calloc(n ? n : 1, sizeof(*part->streams));
    if (part->streams == NULL)
        return -ENOMEM;
    part->nstreams = n;
    const uint8_t *p = h + 36, *hend = h + hlen;
    for (uint32_t i = 0; i < n; i++) {
        if (hend - p < 5 || p[4] >= CK_NAME_BYTES || hend - p < 5 + p[4])
            return -EBADMSG;
        part->streams[i].node = sp_le_load32(p);
        memcpy(part->streams[i].name, p + 5, p[4]);
        part->streams[i].name[p[4]] = '\0';
        p += 5 + p[4];
    }
    /* Frames of one table come in one run (tables stream one after the
     * other): compact each table's data to the front of its first frame. */
    at += CK_FRAME_BYTES + hlen;
    uint32_t cur = UINT32_MAX;
    uint8_t *write = NULL;
    while (at < len && !(len - at >= 4 && sp_le_load32(buf + at) == CK_FRAME_HEAD)) {
        if (len - at < CK_FRAME_BYTES || sp_le_load32(buf + at) != CK_FRAME_DATA)
            return -EBADMSG;
        uint32_t table = sp_le_load32(buf + at + 4);
        uint32_t bytes = sp_le_load32(buf + at + 8);
        if (table >= n || bytes > len - at - CK_FRAME_BYTES)
            return -EBADMSG;
        struct ck_rstream *st = &part->streams[table];
        if (table != cur) {
            if (st->data != NULL)
                return -EBADMSG; /* a table's frames interrupted: not written by spate */
            cur = table;
            st->data = buf + at;
            write = st->data;
        }
        memmove(write, buf + at + CK_FRAME_BYTES, bytes);
        write += bytes;
        st->len += bytes;
        at += CK_FRAME_BYTES + bytes;
    }
    *at_io = at;
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct sp_ckpt_segment *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return strcmp(x->name, y->name); /* checkpoint id, then sequence */
}

/* A (shard, written_by) group of a restored manifest, read and parsed. */
struct rgroup {
    uint32_t first, end; /* its segments in the sorted manifest */
    uint32_t shard;
    uint64_t total;
    uint8_t *buf;
    struct ck_rpart *parts;
    uint32_t nparts;
    int err;
};

struct rread {
    struct ck_run *run;
    const struct sp_ckpt_manifest *m;
    struct rgroup *groups;
    uint32_t count;
    _Atomic uint32_t next;
};

/* Reads, verifies and parses one group into its parts (one per checkpoint
 * in it: a savepoint's copy has a whole chain in one group). */
static void read_group(struct rread *rr, struct sp_ckpt_store *store, struct rgroup *g)
{
    const struct sp_ckpt_manifest *m = rr->m;
    g->buf = malloc(g->total ? g->total : 1);
    if (g->buf == NULL) {
        g->err = -ENOMEM;
        return;
    }
    uint64_t at = 0;
    for (uint32_t k = g->first; k < g->end; k++) {
        int err = sp_ckpt_store_read_segment(store, &m->segments[k], g->buf + at);
        if (err < 0) {
            sp_warn("checkpoint %" PRIu64 ": segment %s: %s", m->checkpoint_id, m->segments[k].name,
                    strerror(-err));
            g->err = err;
            return;
        }
        at += m->segments[k].size_bytes;
    }
    size_t next = 0;
    do {
        struct ck_rpart *parts = realloc(g->parts, (g->nparts + 1) * sizeof(*parts));
        if (parts == NULL) {
            g->err = -ENOMEM;
            return;
        }
        g->parts = parts;
        struct ck_rpart *part = &parts[g->nparts++];
        memset(part, 0, sizeof(*part));
        part->buf = g->nparts == 1 ? g->buf : NULL; /* freed once, with the first part */
        g->err = part_parse(part, g->buf, (size_t)g->total, &next, g->shard);
        if (g->err < 0)
            return;
    } while (next < g->total);
    g->buf = NULL; /* the first part owns it now */
}

static void read_groups(struct rread *rr, struct sp_ckpt_store *store)
{
    for (;;) {
        uint32_t i = atomic_fetch_add(&rr->next, 1);
        if (i >= rr->count)
            return;
        if (store == NULL)
            rr->groups[i].err = -EIO;
        else
            read_group(rr, store, &rr->groups[i]);
    }
}

/* A helper thread: its own store (a store is used by one thread at a time). */
static void *read_worker(void *arg)
{
    struct rread *rr = arg;
    struct sp_ckpt_store *store = NULL;
    if (sp_ckpt_store_open_reader(rr->run->rurl, &store) < 0)
        return NULL; /* the other threads read its share */
    read_groups(rr, store);
    sp_ckpt_store_close(store);
    return NULL;
}

/* Reads every segment of `m`, verified, into the old shards' parts. 0, or
 * -ENOENT / -EBADMSG when one is missing or bad, or another error. */
static int restore_read(struct ck_run *run, struct sp_ckpt_manifest *m)
{
    struct sp_job *job = run->exec->job;
    if (strcmp(m->job, job->name) != 0) {
        sp_job_set_error(job, "checkpoint %" PRIu64 " in %s was written by job '%s', not '%s'",
                         m->checkpoint_id, run->rurl, m->job, job->name);
        return -EINVAL;
    }
    if (m->shard_count == 0 || m->shard_count > SP_CKPT_SHARDS_MAX ||
        m->key_group_end != run->exec->config.key_groups || m->key_group_first != 0) {
        sp_job_set_error(job,
                         "checkpoint %" PRIu64 " has key groups [%u, %u), this run %u: "
                         "restore with the same key groups (--key-groups)",
                         m->checkpoint_id, m->key_group_first, m->key_group_end,
                         run->exec->config.key_groups);
        return -EINVAL;
    }
    run->old_shards = m->shard_count;
    run->key_groups = m->key_group_end;
    run->old = calloc(m->shard_count, sizeof(*run->old));
    if (run->old == NULL)
        return -ENOMEM;
    qsort(m->segments, m->segment_count, sizeof(m->segments[0]), seg_cmp);
    /* One group per (shard, written_by): its segments back to back. */
    struct rgroup *groups = calloc(m->segment_count ? m->segment_count : 1, sizeof(*groups));
    if (groups == NULL)
        return -ENOMEM;
    uint32_t ngroups = 0;
    for (uint32_t i = 0; i < m->segment_count;) {
        uint32_t j = i;
        struct rgroup *g = &groups[ngroups++];
        g->first = i;
        g->shard = m->segments[i].shard;
        while (j < m->segment_count && m->segments[j].shard == g->shard &&
               m->segments[j].written_by_id == m->segments[i].written_by_id)
            g->total += m->segments[j++].size_bytes;
        g->end = j;
        i = j;
    }
    /* Read, verify and parse them on as many threads as the run has shards. */
    struct rread rr = {.run = run, .m = m, .groups = groups, .count = ngroups};
    unsigned threads = SP_MIN(SP_MAX(run->exec->shard_count, 1u), SP_MIN(ngroups, 17u));
    pthread_t tids[16];
    unsigned started = 0;
    for (unsigned t = 1; t < threads; t++) {
        if (pthread_create(&tids[started], NULL, read_worker, &rr) != 0)
            break;
        started++;
    }
    read_groups(&rr, run->rstore); /* this thread through the run's store */
    for (unsigned t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    int err = 0;
    for (uint32_t i = 0; i < ngroups; i++) {
        struct rgroup *g = &groups[i];
        if (err == 0 && g->err < 0)
            err = g->err;
        if (g->shard >= m->shard_count && err == 0)
            err = -EBADMSG;
        if (err < 0) {
            for (uint32_t k = 0; k < g->nparts; k++) {
                free(g->parts[k].streams);
                if (g->parts[k].buf != g->buf)
                    free(g->parts[k].buf); /* the first part owns the buffer once read */
            }
            free(g->parts);
            free(g->buf);
            continue;
        }
        /* Its parts, in order, after the old shard's earlier ones. */
        struct ck_old *old = &run->old[g->shard];
        struct ck_rpart *parts = realloc(old->parts, (old->nparts + g->nparts) * sizeof(*parts));
        if (parts == NULL) {
            err = -ENOMEM;
            i--; /* frees this group on the next pass */
            continue;
        }
        old->parts = parts;
        memcpy(parts + old->nparts, g->parts, g->nparts * sizeof(*parts));
        old->nparts += g->nparts;
        free(g->parts);
    }
    free(groups);
    if (err < 0)
        return err;
    for (uint32_t o = 0; o < m->shard_count; o++) {
        /* Oldest first (sorted by name: by checkpoint id); a full one first. */
        if (run->old[o].nparts > 0 && !run->old[o].parts[0].full)
            return -EBADMSG;
    }
    return 0;
}

/* Picks and reads the checkpoint to restore, if any. 0 or -1 (error set). */
/* The newest id `store` holds (0: none), or -1 with the job's error set. */
static int64_t newest_id(struct ck_run *run, struct sp_ckpt_store *store, const char *url,
                         uint64_t *ids, int *count)
{
    int n = sp_ckpt_store_list(store, ids, SP_CKPT_LIST_MAX);
    if (n < 0) {
        sp_job_set_error(run->exec->job, "checkpoints in %s: cannot list them: %s", url,
                         strerror(-n));
        return -1;
    }
    if (n > (int)SP_CKPT_LIST_MAX) {
        sp_job_set_error(run->exec->job,
                         "%s holds more than %u checkpoints: lower --checkpoint-retain", url,
                         SP_CKPT_LIST_MAX);
        return -1;
    }
    *count = n;
    return n > 0 ? (int64_t)ids[n - 1] : 0;
}

static int restore_prepare(struct ck_run *run)
{
    struct sp_job *job = run->exec->job;
    const char *want = run->exec->config.restore;
    uint64_t ids[SP_CKPT_LIST_MAX];
    int n = 0;
    int64_t newest = newest_id(run, run->store, run->url, ids, &n);
    if (newest < 0)
        return -1;
    run->next_id = (uint64_t)newest + 1; /* ids only grow in a store */
    run->rstore = run->store;
    run->rurl = run->url;
    const char *sp = run->exec->config.savepoint_url;
    if (sp != NULL) {
        /* A savepoint: its newest checkpoint, which must verify. */
        int err = sp_ckpt_store_open_reader(sp, &run->rstore);
        if (err < 0) {
            run->rstore = NULL;
            sp_job_set_error(job, "savepoint %s: %s", sp, strerror(-err));
            return -1;
        }
        run->rurl = sp;
        newest = newest_id(run, run->rstore, sp, ids, &n);
        if (newest <= 0) {
            if (newest == 0)
                sp_job_set_error(job, "savepoint %s holds no checkpoint", sp);
            return -1;
        }
        want = NULL;
    } else if (want != NULL && strcmp(want, "none") == 0) {
        return 0;
    }
    uint64_t only = 0;
    if (want != NULL && strcmp(want, "latest") != 0) {
        char *end = NULL;
        only = strtoull(want, &end, 10);
        if (*want == '\0' || *end != '\0' || only == 0) {
            sp_job_set_error(job, "restore '%s': 'latest', 'none' or a checkpoint id", want);
            return -1;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        if (only != 0 && ids[i] != only)
            continue;
        uint64_t t0 = sp_now_ns();
        int err = sp_ckpt_store_read_manifest(run->rstore, ids[i], &run->manifest);
        if (err == 0)
            err = restore_read(run, &run->manifest);
        if (err == 0) {
            run->restoring = true;
            /* A sink's transactions are told apart by checkpoint: ids grow. */
            if (run->next_id <= ids[i])
                run->next_id = ids[i] + 1;
            uint64_t bytes = 0;
            for (uint32_t k = 0; k < run->manifest.segment_count; k++)
                bytes += run->manifest.segments[k].size_bytes;
            sp_info("restoring checkpoint %" PRIu64 " from %s (%u shards then, %u now): %" PRIu64
                    " bytes read and verified in %.3f s",
                    ids[i], run->rurl, run->old_shards, run->exec->shard_count, bytes,
                    (double)(sp_now_ns() - t0) / 1e9);
            return 0;
        }
        old_free(run);
        if (err == -EINVAL)
            return -1; /* another job's, or other key groups: said why */
        if (err != -ENOENT && err != -EBADMSG && err != -EPROTONOSUPPORT && err != -E2BIG) {
            sp_job_set_error(job, "checkpoint %" PRIu64 " in %s: %s", ids[i], run->rurl,
                             strerror(-err));
            return -1; /* the storage failed, not the checkpoint: do not fall back */
        }
        if (only != 0) {
            sp_job_set_error(job, "checkpoint %" PRIu64 " in %s does not verify: %s", only,
                             run->rurl, strerror(-err));
            return -1;
        }
        sp_warn("checkpoint %" PRIu64 " does not verify (%s): trying an earlier one", ids[i],
                strerror(-err));
    }
    if (only != 0) {
        sp_job_set_error(job, "no checkpoint %" PRIu64 " in %s", only, run->rurl);
        return -1;
    }
    if (n > 0 && (want != NULL || sp != NULL)) {
        sp_job_set_error(job, "no checkpoint in %s verifies", run->rurl);
        return -1;
    }
    if (n > 0)
        sp_warn("no checkpoint in %s verifies: starting empty", run->rurl);
    return 0;
}

static void run_free(struct ck_run *run)
{
    old_free(run);
    sp_ckpt_manifest_deinit(&run->manifest);
    sp_ckpt_manifest_deinit(&run->ref);
    if (run->rstore != NULL && run->rstore != run->store)
        sp_ckpt_store_close(run->rstore);
    if (run->store != NULL)
        sp_ckpt_store_close(run->store);
    if (run->event_fd >= 0)
        close(run->event_fd);
    while (run->results != NULL) {
        struct up_result *r = run->results;
        run->results = r->next;
        free(r);
    }
    pthread_mutex_destroy(&run->lock);
    pthread_cond_destroy(&run->cond);
    free(run);
}

int ck_run_prepare(struct sp_exec *exec)
{
    struct sp_job *job = exec->job;
    const struct sp_run_config *c = &exec->config;
    struct ck_run *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        sp_job_set_error(job, "out of memory");
        return -1;
    }
    run->exec = exec;
    run->event_fd = -1;
    pthread_mutex_init(&run->lock, NULL);
    pthread_cond_init(&run->cond, NULL);
    snprintf(run->url, sizeof(run->url), "%s", c->checkpoint_url);
    run->interval_ms = c->checkpoint_interval_ms ? c->checkpoint_interval_ms : 1000;
    run->min_pause_ms = c->checkpoint_min_pause_ms;
    run->timeout_ms = c->checkpoint_timeout_ms ? c->checkpoint_timeout_ms : 60000;
    run->retain = c->checkpoint_retain ? c->checkpoint_retain : 3;
    run->max_deltas = c->checkpoint_max_deltas ? c->checkpoint_max_deltas : 16;
    run->next_id = 1;

    for (uint32_t i = 0; i < job->node_count; i++) {
        const struct sp_node *n = job->nodes[i];
        if (n->kind == SP_NODE_SOURCE && n->u.source.vt->checkpoint == NULL) {
            sp_job_set_error(job, "source %s cannot be checkpointed (it keeps no position)",
                             n->name);
            run_free(run);
            return -1;
        }
    }
    struct sp_ckpt_store_config sc;
    sp_ckpt_store_config_default(&sc);
    sc.create = true;
    sc.positions_max = SP_CKPT_POSITIONS_MAX;
    sc.position_bytes_max = SP_CKPT_POSITION_BLOB_MAX;
    int err = sp_ckpt_store_open(run->url, &sc, &run->store);
    if (err == 0)
        err = sp_ckpt_manifest_init(&run->manifest, SP_CKPT_SEGMENTS_MAX, SP_CKPT_POSITIONS_MAX,
                                    SP_CKPT_POSITION_BLOB_MAX);
    if (err == 0)
        err = sp_ckpt_manifest_init(&run->ref, SP_CKPT_SEGMENTS_MAX, SP_CKPT_POSITIONS_MAX,
                                    SP_CKPT_POSITION_BLOB_MAX);
    if (err < 0) {
        sp_job_set_error(job, "checkpoints in %s: %s", run->url, strerror(-err));
        run_free(run);
        return -1;
    }
    if (restore_prepare(run) < 0) {
        run_free(run);
        return -1;
    }
    run->event_fd = eventfd(0, EFD_CLOEXEC);
    if (run->event_fd < 0 || pthread_create(&run->thread, NULL, up_main, run) != 0) {
        sp_job_set_error(job, "checkpoints: cannot start the uploader");
        run_free(run);
        return -1;
    }
    run->thread_started = true;
    exec->ck = run;
    return 0;
}

/* Each shard's part, made before its operators open (they register tables). */
int ck_shard_alloc(struct sp_xshard *xs)
{
    struct ck_shard *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return -ENOMEM;
    cs->xs = xs;
    cs->run = xs->exec->ck;
    cs->stream_cur = UINT32_MAX;
    xs->ckpt = cs;
    return 0;
}

void ck_run_finish(struct sp_exec *exec)
{
    struct ck_run *run = exec->ck;
    if (run->thread_started) {
        struct up_item *it = calloc(1, sizeof(*it));
        SP_ASSERT(it != NULL);
        it->kind = UP_STOP;
        up_push(run, it);
        pthread_join(run->thread, NULL);
    }
    while (run->head != NULL) {
        struct up_item *it = run->head;
        run->head = it->next;
        free(it->data);
        free(it);
    }
    if (run->completed + run->failed > 0)
        sp_info("checkpoints: %" PRIu64 " completed, %" PRIu64 " failed", run->completed,
                run->failed);
    exec->ck = NULL;
    run_free(run);
}
