/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka source (sp_source_kafka): one consumer per shard, on the
 * shard's own client (net/client/), reading one topic.
 *
 * Partitions. Without a group, shard s of n takes the partitions p with
 * p mod n == s, once metadata says how many there are, and declares them
 * with sp_src_partitions (global numbers are Kafka's partition ids). With a
 * group, each shard is a member of it and declares what the group assigns
 * it, again on every rebalance. Until either is known the shard declares
 * one placeholder partition: with none, the executor would take this
 * shard's stream as empty from the start and ignore its watermark.
 *
 * Records. The consumer hands records over as views into a fetch response,
 * valid during the callback only, and a fetch may bring more than the
 * executor asks for in one poll. So each record is copied into a per-
 * partition FIFO of chunks, and poll() emits at most `max_rows` of them,
 * taking runs of partitions in turn. The FIFO is bounded: past
 * spate.source.buffer.bytes (default 8 MiB) the consumer is paused (no new
 * Fetch; the one in flight still lands, so the bound is that plus one
 * fetch response) and it resumes once poll() brought the FIFOs under half
 * of that. A source that is not polled (backpressure downstream) therefore
 * stops fetching within one fetch.
 *
 * Offsets. A partition's position is the offset of its first buffered
 * record, or the consumer's fetch offset when nothing is buffered: exactly
 * the next record not yet emitted. In a group these positions are what is
 * committed: every auto.commit.interval.ms, whenever the buffer drained
 * (at most every 50 ms), when a partition is revoked, when the source ends
 * and when a job that completed stops (not a job stopped part way or
 * failed: see sp_job.h). The group's own commits are turned off
 * (enable.auto.commit=false): it would commit the consumer's fetch offset,
 * which runs ahead of what was emitted by what is buffered. The commit is
 * sent here on the group's coordinator connection, because the group API
 * commits only the consumer's positions and only of the partitions it
 * still owns (a revoked callback comes after they left).
 *
 * Bounded reads (stop_at_end). The end of each partition is its latest
 * offset (ListOffsets, at the isolation level configured), listed before
 * fetching starts; records at or past it are dropped, and a partition
 * whose position reached it is ended (its committed offset is at most the
 * end). When every partition of the shard ended poll() returns SP_POLL_END
 * (at once for a shard without any; in a group, once the member is in a
 * stable generation). The member stays in its group until the job stops;
 * partitions a rebalance hands it after its end are not read (they stay
 * at their committed offsets, for the next run).
 *
 * Failures: a record the serde rejects fails the job with its topic,
 * partition and offset, or with skip_malformed is counted, logged
 * (rate-limited) and skipped. Bootstrap servers that cannot be reached, or
 * a topic that metadata does not describe, within spate.source.timeout.ms
 * (30 s) fail the job; later connection failures are retried as the
 * client does.
 *
 * Checkpoints. The source puts each partition's position into every
 * checkpoint ("p/N") and a restored run starts there. With checkpoints the
 * partitions are assigned as without a group (p mod n == s), even when a
 * group is configured: a group's rebalances and commits would move
 * partitions and offsets between checkpoints, and positions must come from
 * the checkpoint alone. The group's offsets are still committed, for
 * monitoring (lag tools read them), best effort, when a checkpoint
 * completed (the last ones may not go out before the process ends): the
 * positions of that checkpoint, as a commit without membership (generation
 * -1, which a group without members takes). Positions a restored run knew
 * but has not read yet are carried forward ("c/N") so that no checkpoint
 * forgets one.
 *
 * Everything of a shard lives on that shard: opened in open(), shut in
 * stop() (called by the executor's stop hook: the consumer pauses; in a
 * group, after a completed run, the positions are committed if they moved,
 * else (and after a stop part way) the member leaves
 * the group; one task later every connection closes, so that what stop()
 * sent is written first) and freed in close().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_admin.h"
#include "sp_kafka_consumer.h"
#include "sp_kafka_group.h"
#include "sp_log.h"
#include "sp_op.h"

#define KS_CHUNK_BYTES (64u * 1024u)
#define KS_SPARE_CHUNKS_MAX 16
#define KS_BUFFER_BYTES_DEFAULT (8u << 20)
#define KS_TIMEOUT_MS_DEFAULT 30000
#define KS_TICK_NS (10 * SP_NSEC_PER_MSEC)
#define KS_FINAL_COMMIT_NS (10 * SP_NSEC_PER_SEC)
#define KS_RUN_ROWS 64 /* rows of one partition before the next one's turn */
#define KS_MALFORMED_LOG_NS (10 * SP_NSEC_PER_SEC)
#define KS_MALFORMED_LOG_FIRST 3
#define KS_COMMITS_MAX 4 /* periodic ones in flight; revocations always go */
#define KS_IDLE_COMMIT_NS (50 * SP_NSEC_PER_MSEC)
#define KS_PLACEHOLDER UINT32_MAX
#define KS_API_OFFSET_COMMIT 8

/* ---- Configuration (built once, read by every shard) ---- */

/* One allocation, as sp_job_free() frees a source's config with free(). */
struct ks_config {
    struct sp_kafka_config kafka;
    char topic[SP_KAFKA_TOPIC_NAME_BYTES_MAX + 1];
    enum sp_format format;
    bool group;
    bool from_beginning;
    bool stop_at_end;
    bool skip_malformed;
    bool record_row; /* RAW/STRING into struct sp_record_row */
    int64_t timeout_ms;
    uint64_t buffer_bytes;
};

/* ---- Per-shard state ---- */

/* A buffered record: this header, the key, the value, padding to 8. */
struct ks_rec {
    int64_t offset;
    int64_t timestamp;
    int32_t key_len; /* -1: null */
    int32_t value_len;
};

struct ks_chunk {
    struct ks_chunk *next;
    uint32_t cap;
    uint32_t used;
    uint32_t read;
    uint32_t pad_;
    uint8_t data[];
};

struct ks_part {
    int32_t partition;
    int64_t end_offset; /* stop_at_end: the first offset past the end */
    struct ks_chunk *head;
    struct ks_chunk *tail;
    uint32_t queued;   /* records buffered */
    int64_t committed; /* the offset last sent in a commit, -1 */
    bool ended;
};

struct ks {
    struct sp_src *src;
    const struct ks_config *config;
    struct sp_kafka_client client;
    struct sp_kafka_consumer consumer;
    struct sp_kafka_group group;
    bool client_up, consumer_up, group_up, group_closed;
    /* Partitions come from the group (a group is configured and the run
     * takes no checkpoints); otherwise the job assigns them. */
    bool grouped;
    /* With checkpoints and a group: the positions put into the checkpoint
     * in flight, committed to the group once it completed (a commit without
     * membership, for monitoring: lag tools read the group's offsets). */
    int32_t *mon_parts;
    int64_t *mon_offs;
    uint32_t mon_count;
    uint64_t mon_id;
    int32_t mon_coord; /* the group's coordinator, -1: not known */
    bool mon_finding, mon_inflight;
    bool mon_again; /* a checkpoint completed while a commit was in flight */
    struct sp_kafka_topic_info *topic;

    /* This shard's partitions, in the order given to sp_src_partitions. */
    struct ks_part *parts;
    uint32_t part_count;
    bool placeholder;  /* src holds the placeholder partition instead */
    int32_t *index_of; /* [SP_KAFKA_PARTITIONS_MAX]: partition -> index, -1 */
    int64_t *ends;     /* [SP_KAFKA_PARTITIONS_MAX]: stop_at_end's end offsets */
    int64_t *restored; /* [SP_KAFKA_PARTITIONS_MAX]: a restored checkpoint's positions, -1 */
    int64_t *carried;  /* [SP_KAFKA_PARTITIONS_MAX]: the same, kept for later checkpoints */
    uint32_t cursor;

    bool started;               /* the topic's metadata arrived; assignment under way */
    bool ready;                 /* manual: partitions assigned */
    bool paused;                /* the consumer, for a full buffer */
    bool finished;              /* every partition ended */
    uint64_t final_deadline_ns; /* group: END waits this long for the last commit */
    bool stopping;              /* stop() ran */
    bool leaving;               /* the group is being left (or was) */
    bool commit_retry;          /* a commit failed: commit again once stable */
    bool commit_idle;           /* the buffer drained since the last commit */
    uint64_t commit_last_ns;
    uint64_t buffered_bytes;
    uint64_t buffered_bytes_max; /* high-water mark */
    uint64_t pauses;             /* times the buffer filled up */
    struct ks_chunk *spare;
    unsigned spare_count;

    uint64_t malformed;
    uint64_t malformed_logged_ns;
    unsigned commits_inflight;
    uint64_t commits_failed;

    struct sp_timer deadline; /* the metadata must come by then */
    struct sp_timer tick;     /* ends, empty assignments, commits */
    uint64_t commit_due_ns;
    struct sp_task close_task;
    struct sp_kafka_offset_commit_request_offset_commit_request_partition
        commit_parts[SP_KAFKA_GROUP_PARTITIONS_MAX];
};

static void ks_fail(struct ks *ks, int err, const char *fmt, ...) SP_PRINTF(3, 4);
static void ks_leave(struct ks *ks);

static void ks_fail(struct ks *ks, int err, const char *fmt, ...)
{
    char msg[SP_JOB_ERROR_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_exec_fail(ks->src->xs, err, "kafka source '%s': %s", ks->config->topic, msg);
}

/* ---- The record buffer ---- */

static uint32_t rec_bytes(const struct ks_rec *r)
{
    uint32_t n =
        (uint32_t)sizeof(*r) + (uint32_t)SP_MAX(r->key_len, 0) + (uint32_t)SP_MAX(r->value_len, 0);
    return (n + 7u) & ~7u;
}

static struct ks_chunk *chunk_get(struct ks *ks, uint32_t need)
{
    struct ks_chunk *c;
    if (need <= KS_CHUNK_BYTES && ks->spare != NULL) {
        c = ks->spare;
        ks->spare = c->next;
        ks->spare_count--;
    } else {
        uint32_t cap = SP_MAX(need, KS_CHUNK_BYTES);
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
    }
    c->next = NULL;
    c->used = c->read = 0;
    return c;
}

static void chunk_put(struct ks *ks, struct ks_chunk *c)
{
    if (c->cap == KS_CHUNK_BYTES && ks->spare_count < KS_SPARE_CHUNKS_MAX) {
        c->next = ks->spare;
        ks->spare = c;
        ks->spare_count++;
        return;
    }
    free(c);
}

/* Copies `rec` to the end of p's FIFO. 0 or -ENOMEM (or -EMSGSIZE). */
static int part_push(struct ks *ks, struct ks_part *p, const struct sp_record *rec)
{
    struct ks_rec h = {rec->offset, rec->timestamp, rec->key_len, rec->value_len};
    if (rec->key_len > (int32_t)(UINT32_MAX / 4) || rec->value_len > (int32_t)(UINT32_MAX / 4))
        return -EMSGSIZE;
    uint32_t need = rec_bytes(&h);
    struct ks_chunk *c = p->tail;
    if (c == NULL || c->cap - c->used < need) {
        c = chunk_get(ks, need);
        if (c == NULL)
            return -ENOMEM;
        if (p->tail != NULL)
            p->tail->next = c;
        else
            p->head = c;
        p->tail = c;
    }
    uint8_t *at = c->data + c->used;
    memcpy(at, &h, sizeof(h));
    at += sizeof(h);
    if (rec->key_len > 0)
        memcpy(at, rec->key, (size_t)rec->key_len);
    at += SP_MAX(rec->key_len, 0);
    if (rec->value_len > 0)
        memcpy(at, rec->value, (size_t)rec->value_len);
    c->used += need;
    p->queued++;
    ks->buffered_bytes += need;
    if (ks->buffered_bytes > ks->buffered_bytes_max)
        ks->buffered_bytes_max = ks->buffered_bytes;
    return 0;
}

static const struct ks_rec *part_head(const struct ks_part *p)
{
    SP_ASSERT(p->queued > 0);
    SP_ASSERT(p->head != NULL && p->head->read < p->head->used);
    return (const struct ks_rec *)(p->head->data + p->head->read);
}

static void part_pop(struct ks *ks, struct ks_part *p)
{
    struct ks_chunk *c = p->head;
    uint32_t n = rec_bytes(part_head(p));
    c->read += n;
    p->queued--;
    SP_ASSERT(ks->buffered_bytes >= n);
    ks->buffered_bytes -= n;
    if (c->read < c->used)
        return;
    if (c == p->tail) {
        c->read = c->used = 0; /* keep the last chunk for what comes next */
        return;
    }
    p->head = c->next;
    chunk_put(ks, c);
}

static void part_clear(struct ks *ks, struct ks_part *p)
{
    while (p->queued > 0)
        part_pop(ks, p);
    while (p->head != NULL) {
        struct ks_chunk *c = p->head;
        p->head = c->next;
        chunk_put(ks, c);
    }
    p->tail = NULL;
}

/* Resumes fetching once the buffer drained to half its bound. */
static void ks_maybe_resume(struct ks *ks)
{
    if (ks->paused && !ks->stopping && !ks->finished &&
        ks->buffered_bytes <= ks->config->buffer_bytes / 2) {
        ks->paused = false;
        sp_kafka_consumer_pause(&ks->consumer, false);
    }
}

/* ---- Partitions ---- */

static const struct sp_kafka_cpart *ks_cpart(const struct ks *ks, int32_t partition)
{
    const struct sp_kafka_consumer *c = &ks->consumer;
    for (unsigned i = 0; i < c->part_count; i++)
        if (c->parts[i].partition == partition)
            return &c->parts[i];
    return NULL;
}

/*
 * The next offset not yet emitted, -1 when unknown (not resolved yet). With
 * stop_at_end, at most the end: what lies past it is dropped, not emitted.
 */
static int64_t ks_position(const struct ks *ks, const struct ks_part *p)
{
    int64_t pos;
    if (p->queued > 0) {
        pos = part_head(p)->offset;
    } else {
        const struct sp_kafka_cpart *cp = ks_cpart(ks, p->partition);
        pos = cp != NULL && cp->offset >= 0 ? cp->offset : -1;
    }
    if (ks->config->stop_at_end && pos > p->end_offset && p->end_offset >= 0)
        pos = p->end_offset;
    return pos;
}

/*
 * Makes `numbers` (count of them) this shard's partitions: buffers of the
 * ones kept move along, the others' are dropped; with none and `hold`, the
 * placeholder holds the watermark back. 0 or -ENOMEM (the job failed).
 */
static int ks_set_parts(struct ks *ks, const int32_t *numbers, uint32_t count, bool hold)
{
    struct ks_part *next = calloc(SP_MAX(count, 1u), sizeof(*next));
    uint32_t *globals = calloc(SP_MAX(count, 1u), sizeof(*globals));
    if (next == NULL || globals == NULL) {
        free(next);
        free(globals);
        ks_fail(ks, -ENOMEM, "assigning partitions");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        int32_t old = ks->index_of[numbers[i]];
        if (old >= 0) {
            next[i] = ks->parts[old];
            ks->parts[old].head = ks->parts[old].tail = NULL;
            ks->parts[old].queued = 0;
            ks->parts[old].partition = -1;
        } else {
            next[i] = (struct ks_part){.partition = numbers[i], .end_offset = -1, .committed = -1};
            if (ks->config->stop_at_end)
                next[i].end_offset = ks->ends[numbers[i]];
        }
        globals[i] = (uint32_t)numbers[i];
    }
    for (uint32_t i = 0; i < ks->part_count; i++) {
        if (ks->parts[i].partition >= 0)
            ks->index_of[ks->parts[i].partition] = -1;
        part_clear(ks, &ks->parts[i]);
    }
    free(ks->parts);
    ks->parts = next;
    ks->part_count = count;
    ks->cursor = 0;
    for (uint32_t i = 0; i < count; i++)
        ks->index_of[numbers[i]] = (int32_t)i;
    ks->placeholder = count == 0 && hold;
    uint32_t placeholder = KS_PLACEHOLDER;
    int rc = ks->placeholder ? sp_src_partitions(ks->src, 1, &placeholder)
                             : sp_src_partitions(ks->src, count, globals);
    free(globals);
    if (rc < 0)
        ks_fail(ks, rc, "declaring partitions");
    /* Ended partitions stay ended across a reassignment. */
    for (uint32_t i = 0; rc == 0 && !ks->placeholder && i < count; i++)
        if (ks->parts[i].ended)
            sp_src_partition_end(ks->src, i);
    return rc;
}

/* ---- Group commits ---- */

static void ks_commit_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                           void *ctx)
{
    struct ks *ks = ctx;
    (void)conn;
    (void)version;
    SP_ASSERT(ks->commits_inflight > 0);
    ks->commits_inflight--;
    int16_t code = err == 0 ? sp_kafka_offset_commit_error(body) : 0;
    if (err != 0 || code != 0) {
        /*
         * Not fatal: around a rebalance commits fail (REBALANCE_IN_PROGRESS);
         * every position goes again once the generation is stable.
         */
        ks->commits_failed++;
        ks->commit_retry = true;
        for (uint32_t i = 0; i < ks->part_count; i++)
            ks->parts[i].committed = -1;
        sp_debug("kafka source '%s': commit failed: %s", ks->config->topic,
                 code != 0 ? sp_kafka_error_name(code) : strerror(-err));
    }
}

/*
 * Commits `offsets` of `partitions` (count of them; negative offsets are
 * skipped) for the group's current generation, on its coordinator
 * connection; `periodic` ones give way when KS_COMMITS_MAX are in flight.
 * Quietly does nothing when the group is not in a state to commit (no
 * generation, no coordinator, a JoinGroup or SyncGroup in flight): the next
 * commit, or the next owner's reading, covers it. Returns whether a commit
 * was sent.
 */
/*
 * Sends an OffsetCommit of `offsets` of `partitions` (count of them;
 * negative offsets are skipped) for the source's topic and group, as
 * member `member` of generation `generation` (-1 and "": a commit without
 * membership), on `conn`; `fn` gets the answer. The partitions committed
 * (0: nothing to commit, nothing sent), or -errno from the send.
 */
static int ks_send_commit(struct ks *ks, struct sp_kafka_conn *conn, const int32_t *partitions,
                          const int64_t *offsets, unsigned count, int32_t generation,
                          struct sp_kstr member, sp_kafka_response_fn *fn)
{
    unsigned n = 0;
    for (unsigned i = 0; i < count && n < SP_ARRAY_LEN(ks->commit_parts); i++) {
        if (offsets[i] < 0)
            continue;
        struct sp_kafka_offset_commit_request_offset_commit_request_partition *cp =
            &ks->commit_parts[n++];
        sp_kafka_offset_commit_request_offset_commit_request_partition_init(cp);
        cp->partition_index = partitions[i];
        cp->committed_offset = offsets[i];
        cp->committed_leader_epoch = -1;
        cp->commit_timestamp = -1;
        cp->committed_metadata = SP_KSTR("");
    }
    if (n == 0)
        return 0;
    struct sp_kafka_offset_commit_request_offset_commit_request_topic topic;
    sp_kafka_offset_commit_request_offset_commit_request_topic_init(&topic);
    topic.name = sp_kstr_of(ks->config->topic);
    topic.partitions = ks->commit_parts;
    topic.partitions_count = (int32_t)n;
    struct sp_kafka_offset_commit_request req;
    sp_kafka_offset_commit_request_init(&req);
    req.group_id = sp_kstr_of(ks->config->kafka.group_id);
    req.generation_id_or_member_epoch = generation;
    req.member_id = member;
    req.group_instance_id = SP_KSTR_NULL;
    req.retention_time_ms = -1;
    req.topics = &topic;
    req.topics_count = 1;
    int rc = sp_kafka_conn_send(conn, KS_API_OFFSET_COMMIT, -1, &req, fn, ks);
    return rc < 0 ? rc : (int)n;
}

static bool ks_commit(struct ks *ks, const int32_t *partitions, const int64_t *offsets,
                      unsigned count, bool periodic)
{
    struct sp_kafka_group *g = &ks->group;
    if (!ks->group_up || ks->group_closed || ks->leaving || g->generation_id < 0 || g->coord < 0 ||
        g->member_id_len <= 0 || (periodic && ks->commits_inflight >= KS_COMMITS_MAX))
        return false;
    if (g->main_inflight &&
        (g->state == SP_KAFKA_GROUP_JOINING || g->state == SP_KAFKA_GROUP_SYNCING))
        return false;
    struct sp_kafka_conn *conn = &g->conns[g->coord];
    if (!sp_kafka_conn_ready(conn))
        return false;
    int rc = ks_send_commit(ks, conn, partitions, offsets, count, g->generation_id,
                            (struct sp_kstr){g->member_id, g->member_id_len}, ks_commit_done);
    if (rc == 0)
        return false;
    if (rc < 0) {
        sp_debug("kafka source '%s': cannot send a commit: %s", ks->config->topic, strerror(-rc));
        return false;
    }
    ks->commits_inflight++;
    ks->commit_last_ns = sp_now_ns();
    for (unsigned i = 0; i < count; i++) {
        int32_t p = partitions[i];
        int32_t k = p >= 0 && p < SP_KAFKA_PARTITIONS_MAX ? ks->index_of[p] : -1;
        if (k >= 0 && offsets[i] >= 0)
            ks->parts[k].committed = offsets[i];
    }
    return true;
}

/*
 * Commits the position of every partition of this shard that moved since
 * its last commit. Returns whether a commit was sent.
 */
static bool ks_commit_all(struct ks *ks, bool periodic)
{
    if (!ks->group_up || ks->part_count == 0)
        return false;
    int32_t *partitions = calloc(ks->part_count, sizeof(*partitions));
    int64_t *offsets = calloc(ks->part_count, sizeof(*offsets));
    bool sent = false;
    if (partitions != NULL && offsets != NULL) {
        unsigned n = 0;
        for (uint32_t i = 0; i < ks->part_count; i++) {
            int64_t pos = ks_position(ks, &ks->parts[i]);
            if (pos < 0 || pos == ks->parts[i].committed)
                continue;
            partitions[n] = ks->parts[i].partition;
            offsets[n++] = pos;
        }
        sent = n > 0 && ks_commit(ks, partitions, offsets, n, periodic);
    }
    free(partitions);
    free(offsets);
    return sent;
}

/*
 * Leaves the group (LeaveGroup, at stop), so that the others take over at
 * once instead of after session.timeout.ms. Sent alone: while the runtime
 * drains, a connection gets out one write, and a commit queued before it
 * would hold the LeaveGroup back; so a stop that must commit does not
 * leave. (Leaving when the source ends would start a rebalance in which
 * the other members' commits fail.)
 */
static void ks_leave(struct ks *ks)
{
    if (!ks->group_up || ks->leaving)
        return;
    ks->leaving = true;
    sp_kafka_group_leave(&ks->group, false, NULL, NULL);
}

/*
 * Commits once the buffer drained (at most every KS_IDLE_COMMIT_NS), on top
 * of every auto.commit.interval.ms: what a rebalance makes the next owner
 * read again is then only what was emitted since the last fetch, where
 * the commit on revocation cannot be made (librdkafka's mock, unlike Kafka,
 * refuses commits once a rebalance began) or the member died.
 */
static void ks_commit_idle(struct ks *ks)
{
    if (!ks->commit_idle || !ks->group_up || ks->commits_inflight > 0 ||
        !sp_kafka_group_stable(&ks->group) || sp_now_ns() - ks->commit_last_ns < KS_IDLE_COMMIT_NS)
        return;
    ks->commit_idle = false;
    (void)ks_commit_all(ks, true);
}

/* ---- Group membership ---- */

/* `parts` minus (or plus) the group's partitions, into this shard's set. */
static void ks_regroup(struct ks *ks, const struct sp_kafka_group_partition *parts, unsigned count,
                       bool add)
{
    int32_t *numbers = calloc(ks->part_count + count + 1, sizeof(*numbers));
    if (numbers == NULL) {
        ks_fail(ks, -ENOMEM, "a rebalance");
        return;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < ks->part_count; i++) {
        bool listed = false;
        for (unsigned j = 0; j < count && !listed; j++)
            listed = parts[j].partition == ks->parts[i].partition;
        if (add || !listed)
            numbers[n++] = ks->parts[i].partition;
    }
    for (unsigned j = 0; add && j < count; j++) {
        int32_t p = parts[j].partition;
        if (p >= 0 && p < SP_KAFKA_PARTITIONS_MAX && ks->index_of[p] < 0)
            numbers[n++] = p;
    }
    /* Empty in the middle of a rebalance: hold the watermark until it ends. */
    bool hold = !add;
    if (ks_set_parts(ks, numbers, n, hold) == 0)
        sp_src_wake(ks->src);
    free(numbers);
}

static void ks_assigned(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                        unsigned count, void *ctx)
{
    struct ks *ks = ctx;
    (void)g;
    if (ks->stopping || ks->finished)
        return;
    for (unsigned i = 0; i < count; i++)
        sp_debug("kafka source '%s': assigned partition %d from offset %lld", ks->config->topic,
                 parts[i].partition, (long long)parts[i].offset);
    ks_regroup(ks, parts, count, true);
    /* Restored: a partition starts where the checkpoint says, not at the
     * group's committed offset (once: later rebalances use the group's). */
    for (unsigned i = 0; ks->restored != NULL && i < count; i++) {
        int32_t p = parts[i].partition;
        if (p < 0 || p >= SP_KAFKA_PARTITIONS_MAX || ks->restored[p] < 0)
            continue;
        int rc = sp_kafka_consumer_seek(&ks->consumer, ks->config->topic, p, ks->restored[p]);
        if (rc < 0) {
            ks_fail(ks, rc, "seeking partition %d to its checkpointed offset", p);
            return;
        }
        ks->restored[p] = -1;
    }
}

/*
 * Revoked: their positions are committed before anyone else is given them
 * (the coordinator answers this connection in order). Not when stopping:
 * stop() committed already.
 */
static void ks_revoked(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                       unsigned count, void *ctx)
{
    struct ks *ks = ctx;
    (void)g;
    if (ks->stopping || ks->leaving)
        return;
    int32_t *partitions = calloc(SP_MAX(count, 1u), sizeof(*partitions));
    int64_t *offsets = calloc(SP_MAX(count, 1u), sizeof(*offsets));
    if (partitions != NULL && offsets != NULL) {
        for (unsigned i = 0; i < count; i++) {
            int32_t p = parts[i].partition;
            int32_t k = p >= 0 && p < SP_KAFKA_PARTITIONS_MAX ? ks->index_of[p] : -1;
            partitions[i] = p;
            /* The consumer no longer holds them: its last position came along. */
            offsets[i] = k >= 0 && ks->parts[k].queued > 0 ? part_head(&ks->parts[k])->offset
                                                           : parts[i].offset;
            /* Past the end nothing was emitted (see ks_position). */
            if (k >= 0 && ks->config->stop_at_end && ks->parts[k].end_offset >= 0 &&
                offsets[i] > ks->parts[k].end_offset)
                offsets[i] = ks->parts[k].end_offset;
        }
        ks_commit(ks, partitions, offsets, count, false);
    }
    free(partitions);
    free(offsets);
    if (!ks->finished)
        ks_regroup(ks, parts, count, false);
}

/* Lost (the generation ended without us): dropped, not committed. */
static void ks_lost(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                    unsigned count, void *ctx)
{
    struct ks *ks = ctx;
    (void)g;
    if (!ks->stopping && !ks->finished && !ks->leaving)
        ks_regroup(ks, parts, count, false);
}

static int ks_group_start(struct ks *ks)
{
    const struct sp_kafka_group_callbacks cb = {
        .assigned = ks_assigned, .revoked = ks_revoked, .lost = ks_lost, .ctx = ks};
    const char *topic = ks->config->topic;
    int rc = sp_kafka_group_init(&ks->group, &ks->consumer, &topic, 1, &cb);
    if (rc < 0) {
        ks_fail(ks, rc, "joining group '%s'", ks->config->kafka.group_id);
        return rc;
    }
    ks->group_up = true;
    ks->commit_due_ns =
        sp_now_ns() + (uint64_t)ks->config->kafka.auto_commit_interval_ms * SP_NSEC_PER_MSEC;
    return 0;
}

/* ---- Starting ---- */

static void ks_begin_manual(struct ks *ks)
{
    struct sp_src *src = ks->src;
    int32_t total = ks->topic->partition_count;
    int32_t *numbers = calloc((size_t)SP_MAX(total, 1), sizeof(*numbers));
    if (numbers == NULL) {
        ks_fail(ks, -ENOMEM, "assigning partitions");
        return;
    }
    uint32_t n = 0;
    for (int32_t p = (int32_t)src->shard; p < total; p += (int32_t)src->shard_count)
        numbers[n++] = p;
    if (ks_set_parts(ks, numbers, n, false) < 0) {
        free(numbers);
        return;
    }
    free(numbers);
    int64_t from = ks->config->from_beginning ? SP_KAFKA_OFFSET_BEGINNING : SP_KAFKA_OFFSET_END;
    for (uint32_t i = 0; i < ks->part_count; i++) {
        int32_t p = ks->parts[i].partition;
        int64_t at = ks->restored != NULL && ks->restored[p] >= 0 ? ks->restored[p] : from;
        int rc = sp_kafka_consumer_assign(&ks->consumer, ks->config->topic, p, at);
        if (rc < 0) {
            ks_fail(ks, rc, "assigning partition %d", ks->parts[i].partition);
            return;
        }
    }
    sp_debug("kafka source '%s': %u of %d partitions on this shard", ks->config->topic,
             ks->part_count, total);
    ks->ready = true;
    sp_src_wake(src);
}

static void ks_mon_find(struct ks *ks);

static void ks_begin(struct ks *ks)
{
    /* With checkpoints the job assigns the partitions, as Flink's source
     * does: positions come from checkpoints, and a group's rebalances and
     * commits would move partitions and offsets between the cuts. */
    if (ks->grouped) {
        (void)ks_group_start(ks);
    } else {
        ks_begin_manual(ks);
        ks_mon_find(ks); /* known before the first commit, which may be the last */
    }
}

static void ks_ends_listed(struct sp_kafka_client *client, const struct sp_kafka_admin_result *r,
                           void *ctx)
{
    struct ks *ks = ctx;
    (void)client;
    if (ks->stopping)
        return;
    if (r->err < 0) {
        ks_fail(ks, r->err, "listing the end offsets%s%s", r->message[0] ? ": " : "", r->message);
        return;
    }
    for (unsigned i = 0; i < r->count; i++) {
        const struct sp_kafka_admin_item *it = &r->items[i];
        if (it->error != 0) {
            ks_fail(ks, 0, "listing the end offset of partition %d: %s", it->partition,
                    sp_kafka_error_name(it->error));
            return;
        }
        if (it->partition >= 0 && it->partition < SP_KAFKA_PARTITIONS_MAX)
            ks->ends[it->partition] = it->offset;
    }
    ks_begin(ks);
}

/* stop_at_end: the end offsets come first (this shard's, or all for a group). */
static void ks_list_ends(struct ks *ks)
{
    struct sp_src *src = ks->src;
    int32_t total = ks->topic->partition_count;
    int32_t *numbers = calloc((size_t)SP_MAX(total, 1), sizeof(*numbers));
    if (numbers == NULL) {
        ks_fail(ks, -ENOMEM, "listing the end offsets");
        return;
    }
    unsigned n = 0;
    int32_t step = ks->grouped ? 1 : (int32_t)src->shard_count;
    for (int32_t p = ks->grouped ? 0 : (int32_t)src->shard; p < total; p += step)
        numbers[n++] = p;
    if (n > SP_KAFKA_ADMIN_ITEMS_MAX) {
        free(numbers);
        ks_fail(ks, 0, "stop_at_end reads at most %u partitions per shard",
                SP_KAFKA_ADMIN_ITEMS_MAX);
        return;
    }
    if (n == 0) {
        free(numbers);
        ks_begin(ks);
        return;
    }
    int32_t timeout_ms = (int32_t)SP_MIN(ks->config->timeout_ms, (int64_t)INT32_MAX);
    int rc = sp_kafka_admin_list_offsets(
        &ks->client, ks->config->topic, numbers, n, SP_KAFKA_OFFSET_SPEC_LATEST,
        (int8_t)ks->config->kafka.isolation_level, timeout_ms, ks_ends_listed, ks);
    free(numbers);
    if (rc < 0)
        ks_fail(ks, rc, "listing the end offsets");
}

static void ks_mon_commit(struct ks *ks);

static void ks_client_event(struct sp_kafka_client *client, void *ctx)
{
    struct ks *ks = ctx;
    (void)client;
    if (ks->mon_again && !ks->mon_inflight) {
        ks->mon_again = false; /* a connection came up: the commit that waited for it */
        ks_mon_commit(ks);
    }
    if (ks->started || ks->stopping || !ks->topic->known || ks->topic->partition_count <= 0)
        return;
    ks->started = true;
    sp_shard_timer_cancel(ks->src->xs->shard, &ks->deadline);
    if (ks->config->stop_at_end)
        ks_list_ends(ks);
    else
        ks_begin(ks);
}

static void ks_deadline(struct sp_timer *timer, void *ctx)
{
    struct ks *ks = ctx;
    (void)timer;
    if (ks->started || ks->stopping)
        return;
    const struct sp_kafka_client *c = &ks->client;
    long long ms = (long long)ks->config->timeout_ms;
    if (!c->metadata_ever) {
        ks_fail(ks, 0, "cannot reach the bootstrap servers %s within %lld ms: %s",
                ks->config->kafka.bootstrap_servers, ms,
                c->bootstrap_error < 0 ? strerror(-c->bootstrap_error) : "no answer");
        return;
    }
    if (ks->topic->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION)
        ks_fail(ks, 0, "the topic does not exist (waited %lld ms)", ms);
    else
        ks_fail(ks, 0, "no metadata for the topic within %lld ms (%s)", ms,
                sp_kafka_error_name(ks->topic->error));
}

static void ks_consumer_error(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                              int err, int16_t code, void *ctx)
{
    struct ks *ks = ctx;
    (void)c;
    (void)topic;
    if (ks->stopping)
        return;
    if (code != 0)
        ks_fail(ks, 0, "partition %d: %s", partition, sp_kafka_error_name(code));
    else
        ks_fail(ks, err, "partition %d", partition);
}

/* ---- Records in ---- */

static void ks_record(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                      const struct sp_record *rec, void *ctx)
{
    struct ks *ks = ctx;
    (void)topic;
    if (ks->stopping || ks->finished || partition < 0 || partition >= SP_KAFKA_PARTITIONS_MAX)
        return;
    int32_t k = ks->index_of[partition];
    if (k < 0)
        return; /* no longer ours */
    struct ks_part *p = &ks->parts[k];
    if (p->ended || (ks->config->stop_at_end && rec->offset >= p->end_offset))
        return; /* past the end: never emitted, never buffered */
    int rc = part_push(ks, p, rec);
    if (rc < 0) {
        ks_fail(ks, rc, "partition %d offset %lld: cannot buffer the record", partition,
                (long long)rec->offset);
        return;
    }
    if (!ks->paused && ks->buffered_bytes >= ks->config->buffer_bytes) {
        ks->paused = true;
        ks->pauses++;
        sp_kafka_consumer_pause(c, true);
    }
    sp_src_wake(ks->src);
}

/* ---- Rows out ---- */

/* Takes the half-written last row back out of the source's batch. */
static void ks_drop_row(struct sp_src *src)
{
    struct sp_out *out = sp_src_out(src);
    SP_ASSERT(out->pending);
    SP_ASSERT(out->batch->count > 0);
    out->batch->count--;
    out->pending = false;
    out->spill_used = 0; /* its strings that did not fit the batch */
}

/* A record the serde refused: the job fails, or it is skipped. <0: failed. */
static int ks_malformed(struct ks *ks, const struct ks_part *p, const struct ks_rec *r,
                        const char *why)
{
    ks_drop_row(ks->src);
    if (!ks->config->skip_malformed) {
        sp_exec_fail(ks->src->xs, -EBADMSG, "topic %s partition %d offset %lld: %s",
                     ks->config->topic, p->partition, (long long)r->offset, why);
        return -EBADMSG;
    }
    ks->malformed++;
    uint64_t now = sp_now_ns();
    if (ks->malformed <= KS_MALFORMED_LOG_FIRST ||
        now - ks->malformed_logged_ns >= KS_MALFORMED_LOG_NS) {
        ks->malformed_logged_ns = now;
        sp_warn("kafka source: skipped a malformed record at topic %s partition %d offset %lld: "
                "%s (%llu so far on this shard)",
                ks->config->topic, p->partition, (long long)r->offset, why,
                (unsigned long long)ks->malformed);
    }
    return 0;
}

/* Emits the head record of partition k (or skips it). <0: the job failed. */
static int ks_emit(struct ks *ks, uint32_t k)
{
    struct sp_src *src = ks->src;
    struct ks_part *p = &ks->parts[k];
    const struct ks_rec *r = part_head(p);
    const uint8_t *key = (const uint8_t *)(r + 1);
    const uint8_t *value = key + SP_MAX(r->key_len, 0);
    uint32_t value_len = (uint32_t)SP_MAX(r->value_len, 0);
    struct sp_out *out = sp_src_out(src);
    void *row = sp_src_row(src);
    char why[160];
    int rc = 0;
    if (ks->config->record_row) {
        /* STRING checks UTF-8, so its value goes through the serde. */
        struct sp_str v = {0};
        if (ks->config->format == SP_FORMAT_STRING)
            rc = sp_serde_decode(SP_FORMAT_STRING, src->node->schema, value, value_len, row, out,
                                 why, sizeof(why));
        else
            v = sp_out_str(out, value, value_len);
        struct sp_str k_str = sp_out_str(out, key, (uint32_t)SP_MAX(r->key_len, 0));
        struct sp_record_row *rr = row;
        if (ks->config->format != SP_FORMAT_STRING)
            rr->value = v;
        rr->key = k_str;
        rr->timestamp = r->timestamp;
        rr->offset = r->offset;
        rr->partition = p->partition;
    } else {
        rc = sp_serde_decode(ks->config->format, src->node->schema, value, value_len, row, out, why,
                             sizeof(why));
    }
    if (rc < 0) {
        rc = ks_malformed(ks, p, r, why);
        part_pop(ks, p);
        return rc;
    }
    sp_src_commit(src, k, r->timestamp);
    part_pop(ks, p);
    return 0;
}

/* Up to `max_rows` rows, runs of KS_RUN_ROWS per partition in turn. */
static int ks_emit_rows(struct ks *ks, uint32_t max_rows)
{
    uint32_t made = 0;
    bool any = true;
    while (made < max_rows && any && !sp_exec_failed(ks->src->xs)) {
        any = false;
        for (uint32_t j = 0; j < ks->part_count && made < max_rows; j++) {
            uint32_t k = (ks->cursor + j) % ks->part_count;
            struct ks_part *p = &ks->parts[k];
            for (unsigned run = 0; run < KS_RUN_ROWS && p->queued > 0 && made < max_rows; run++) {
                int rc = ks_emit(ks, k);
                if (rc < 0)
                    return rc;
                made++;
            }
            any |= p->queued > 0;
        }
        ks->cursor = ks->part_count > 0 ? (ks->cursor + 1) % ks->part_count : 0;
    }
    return 0;
}

/* stop_at_end: ends the partitions whose position reached their end. True when all ended. */
static bool ks_check_ends(struct ks *ks)
{
    bool all = true;
    for (uint32_t k = 0; k < ks->part_count; k++) {
        struct ks_part *p = &ks->parts[k];
        if (!p->ended) {
            int64_t pos = ks_position(ks, p);
            if (p->end_offset <= 0 || (pos >= 0 && pos >= p->end_offset)) {
                p->ended = true;
                sp_src_partition_end(ks->src, k);
            }
        }
        all &= p->ended;
    }
    return all;
}

/* Whether this shard's set of partitions is settled enough to end it. */
static bool ks_settled(const struct ks *ks)
{
    if (ks->grouped)
        return ks->group_up && sp_kafka_group_stable(&ks->group) && !ks->placeholder;
    return ks->ready;
}

/*
 * Every partition ended: fetching stops and the positions are committed
 * (again after a rebalance if that fails). The member stays in its group
 * until the job stops.
 */
static void ks_finish(struct ks *ks)
{
    ks->finished = true;
    if (!ks->paused) {
        ks->paused = true;
        sp_kafka_consumer_pause(&ks->consumer, true);
    }
    if (ks->group_up) {
        /* The run's last commit must land before the source reports its end
         * (the job stops soon after): retried from the tick until acked. */
        if (!ks_commit_all(ks, false))
            ks->commit_retry = true;
        ks->final_deadline_ns = sp_now_ns() + KS_FINAL_COMMIT_NS;
    }
    sp_debug("kafka source '%s': every partition of this shard ended", ks->config->topic);
}

/* A finished source in a group: its last commit is acknowledged (or it
 * waited long enough and says so). */
static bool ks_final_committed(struct ks *ks)
{
    if (!ks->group_up || (ks->commits_inflight == 0 && !ks->commit_retry))
        return true;
    if (sp_now_ns() < ks->final_deadline_ns)
        return false;
    sp_warn("kafka source '%s': the last offset commit did not succeed in %llu s; the next run "
            "may read some records again",
            ks->config->topic, (unsigned long long)(KS_FINAL_COMMIT_NS / SP_NSEC_PER_SEC));
    ks->commit_retry = false;
    return true;
}

static int ks_poll(struct sp_src *src, uint32_t max_rows)
{
    struct ks *ks = src->state;
    if (ks != NULL && ks->finished && !ks->stopping)
        return ks_final_committed(ks) ? SP_POLL_END : SP_POLL_WAIT;
    if (ks == NULL || ks->stopping)
        return SP_POLL_WAIT;
    int rc = ks_emit_rows(ks, max_rows);
    if (rc < 0)
        return rc;
    ks_maybe_resume(ks);
    if (ks->config->stop_at_end && ks_settled(ks) && ks_check_ends(ks)) {
        ks_finish(ks);
        return ks_final_committed(ks) ? SP_POLL_END : SP_POLL_WAIT;
    }
    for (uint32_t k = 0; k < ks->part_count; k++)
        if (ks->parts[k].queued > 0)
            return SP_POLL_MORE;
    if (ks->group_up) {
        ks->commit_idle = true;
        ks_commit_idle(ks);
    }
    return SP_POLL_WAIT;
}

/* ---- Timers ---- */

/* Whether a poll now could end a partition (stop_at_end). */
static bool ks_end_pending(struct ks *ks)
{
    if (!ks_settled(ks))
        return false;
    for (uint32_t k = 0; k < ks->part_count; k++) {
        const struct ks_part *p = &ks->parts[k];
        if (p->ended)
            continue;
        int64_t pos = ks_position(ks, p);
        if (p->end_offset <= 0 || (pos >= 0 && pos >= p->end_offset))
            return true;
    }
    return ks->part_count == 0;
}

static void ks_tick(struct sp_timer *timer, void *ctx)
{
    struct ks *ks = ctx;
    struct sp_src *src = ks->src;
    if (ks->stopping)
        return;
    uint64_t now = sp_now_ns();
    if (ks->group_up) {
        /* A stable generation that gave this shard nothing: it holds nothing back. */
        if (!ks->finished && ks->placeholder && sp_kafka_group_stable(&ks->group) &&
            ks->group.owned_count == 0 && ks_set_parts(ks, NULL, 0, false) == 0)
            sp_src_wake(src);
        if (now >= ks->commit_due_ns || (ks->commit_retry && ks->commits_inflight == 0)) {
            if (sp_kafka_group_stable(&ks->group)) {
                ks->commit_retry = false;
                (void)ks_commit_all(ks, true);
            }
            ks->commit_due_ns =
                now + (uint64_t)ks->config->kafka.auto_commit_interval_ms * SP_NSEC_PER_MSEC;
        }
        ks_commit_idle(ks);
    }
    if (ks->config->stop_at_end && !ks->finished && ks_end_pending(ks))
        sp_src_wake(src);
    if (ks->finished && src->waiting)
        sp_src_wake(src); /* the last commit may have landed: report the end */
    if (!ks->finished || ks->group_up)
        sp_shard_timer_arm(src->xs->shard, timer, now + KS_TICK_NS);
}

/* ---- Life cycle ---- */

/* ---- Checkpoints: per partition "p/N", the next offset to emit ---- */

/*
 * A checkpoint holds "p/N" for each partition a shard read (its next
 * offset), and "c/N" for partitions a restored run knew a position of but
 * nobody has read since (not assigned yet, not resolved yet): carried
 * forward, so that a checkpoint never forgets a position. "p/" wins.
 */
static void ks_restore_one(void *ctx, const char *key, const void *value, uint32_t len)
{
    struct ks *ks = ctx;
    unsigned long p;
    int64_t offset;
    char kind;
    if (sscanf(key, "%c/%lu", &kind, &p) != 2 || (kind != 'p' && kind != 'c') ||
        p >= SP_KAFKA_PARTITIONS_MAX || len != sizeof(offset))
        return; /* not this source's (it writes nothing else) */
    memcpy(&offset, value, sizeof(offset));
    if (kind == 'p')
        ks->restored[p] = offset;
    else if (ks->carried[p] < 0)
        ks->carried[p] = offset; /* a "p/" of the same partition replaces it below */
}

static void ks_checkpoint(struct sp_src *src, uint64_t id)
{
    struct ks *ks = src->state;
    if (ks == NULL)
        return;
    uint32_t n_mon = 0;
    if (ks->mon_parts != NULL)
        ks->mon_count = 0;
    for (uint32_t i = 0; !ks->placeholder && i < ks->part_count; i++) {
        int32_t p = ks->parts[i].partition;
        int64_t pos = ks_position(ks, &ks->parts[i]);
        if (pos < 0 && ks->carried != NULL)
            pos = ks->carried[p]; /* restored, nothing read yet */
        if (pos < 0)
            continue; /* never read: a restore starts it as a fresh run would */
        char key[32];
        snprintf(key, sizeof(key), "p/%d", p);
        if (sp_ckpt_put(src->xs, src->node, key, &pos, sizeof(pos)) < 0)
            return; /* the checkpoint fails */
        if (ks->mon_parts != NULL) {
            ks->mon_parts[n_mon] = p;
            ks->mon_offs[n_mon++] = pos;
        }
    }
    if (ks->mon_parts != NULL) {
        ks->mon_id = id;
        ks->mon_count = n_mon;
    }
    /* Shard 0 carries every restored position forward; "p/" entries of
     * the partitions being read take precedence at the next restore. */
    for (int32_t p = 0; ks->carried != NULL && src->shard == 0 && p < SP_KAFKA_PARTITIONS_MAX;
         p++) {
        if (ks->carried[p] < 0)
            continue;
        char key[32];
        snprintf(key, sizeof(key), "c/%d", p);
        if (sp_ckpt_put(src->xs, src->node, key, &ks->carried[p], sizeof(ks->carried[p])) < 0)
            return;
    }
}

static void ks_mon_commit(struct ks *ks);

static void ks_mon_coord(struct sp_kafka_client *client, int err, int16_t error_code,
                         int32_t node_id, void *ctx)
{
    (void)client;
    struct ks *ks = ctx;
    ks->mon_finding = false;
    if (err < 0 || error_code != 0) {
        sp_debug("kafka source '%s': no coordinator for group '%s' yet", ks->config->topic,
                 ks->config->kafka.group_id);
        return; /* the next checkpoint asks again */
    }
    ks->mon_coord = node_id;
    (void)sp_kafka_client_broker(&ks->client, node_id); /* connect now */
    ks_mon_commit(ks);
}

static void ks_mon_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                        void *ctx)
{
    (void)conn, (void)version;
    struct ks *ks = ctx;
    ks->mon_inflight = false;
    if (err == -ECANCELED)
        return; /* stopping */
    int16_t code = err == 0 ? sp_kafka_offset_commit_error(body) : 0;
    if (err != 0 || code != 0) {
        ks->commits_failed++;
        ks->mon_coord = -1; /* find it again (it may have moved) */
        sp_debug("kafka source '%s': commit for monitoring failed: %s", ks->config->topic,
                 code != 0 ? sp_kafka_error_name(code) : strerror(-err));
    }
    if (ks->mon_again) {
        ks->mon_again = false;
        ks_mon_commit(ks); /* the newer checkpoint's positions */
    }
}

/* Looks up the group's coordinator (monitoring commits), once at a time. */
static void ks_mon_find(struct ks *ks)
{
    if (ks->mon_parts == NULL || ks->mon_finding || ks->mon_coord >= 0 || ks->stopping)
        return;
    if (sp_kafka_client_find_coordinator(&ks->client, SP_KAFKA_COORDINATOR_GROUP,
                                         ks->config->kafka.group_id, ks_mon_coord, ks) == 0)
        ks->mon_finding = true;
}

/* Commits the positions of the last completed checkpoint to the group,
 * without being a member (generation -1: Kafka's "simple" commit, which a
 * group without members takes). Best effort: the next checkpoint commits
 * again. */
static void ks_mon_commit(struct ks *ks)
{
    if (ks->stopping || ks->mon_count == 0)
        return;
    if (ks->mon_inflight) {
        ks->mon_again = true;
        return;
    }
    if (ks->mon_coord < 0) {
        ks_mon_find(ks);
        return;
    }
    struct sp_kafka_conn *conn = sp_kafka_client_broker(&ks->client, ks->mon_coord);
    if (conn == NULL) {
        ks->mon_coord = -1;
        return;
    }
    if (!sp_kafka_conn_ready(conn)) {
        ks->mon_again = true; /* sent once it is ready (ks_client_event) */
        return;
    }
    if (ks_send_commit(ks, conn, ks->mon_parts, ks->mon_offs, ks->mon_count, -1, SP_KSTR(""),
                       ks_mon_done) > 0)
        ks->mon_inflight = true;
}

static void ks_checkpoint_done(struct sp_src *src, uint64_t id)
{
    struct ks *ks = src->state;
    if (ks != NULL && ks->mon_parts != NULL && ks->mon_id == id)
        ks_mon_commit(ks);
}

static int ks_open(struct sp_src *src)
{
    const struct ks_config *c = src->node->u.source.config;
    struct sp_shard *shard = src->xs->shard;
    struct ks *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return -ENOMEM;
    src->state = ks;
    ks->src = src;
    ks->config = c;
    ks->grouped = c->group && !sp_ckpt_enabled(src->xs);
    ks->mon_coord = -1;
    if (c->group && !ks->grouped) {
        ks->mon_parts = malloc(SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->mon_parts));
        ks->mon_offs = malloc(SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->mon_offs));
        if (ks->mon_parts == NULL || ks->mon_offs == NULL)
            return -ENOMEM;
    }
    sp_timer_init(&ks->deadline, ks_deadline, ks);
    sp_timer_init(&ks->tick, ks_tick, ks);
    ks->index_of = malloc(SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->index_of));
    ks->ends = calloc(SP_KAFKA_PARTITIONS_MAX, sizeof(*ks->ends));
    if (ks->index_of == NULL || ks->ends == NULL)
        return -ENOMEM;
    memset(ks->index_of, 0xff, SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->index_of));
    if (sp_ckpt_restoring(src->xs)) {
        ks->restored = malloc(SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->restored));
        ks->carried = malloc(SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->carried));
        if (ks->restored == NULL || ks->carried == NULL)
            return -ENOMEM;
        memset(ks->restored, 0xff, SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->restored));
        memset(ks->carried, 0xff, SP_KAFKA_PARTITIONS_MAX * sizeof(*ks->carried));
        sp_ckpt_foreach(src->xs, src->node, ks_restore_one, ks);
        for (int32_t p = 0; p < SP_KAFKA_PARTITIONS_MAX; p++) {
            if (ks->restored[p] < 0)
                ks->restored[p] = ks->carried[p];
            ks->carried[p] = ks->restored[p];
        }
    }
    /* The placeholder until the partitions are known (see the top). */
    int rc = ks_set_parts(ks, NULL, 0, true);
    if (rc < 0)
        return rc;
    rc = sp_kafka_client_init(&ks->client, shard, &c->kafka, ks_client_event, ks);
    if (rc < 0) {
        ks_fail(ks, rc, "bootstrap servers '%s'", c->kafka.bootstrap_servers);
        return rc;
    }
    ks->client_up = true;
    ks->client.allow_auto_topic_creation = false;
    rc = sp_kafka_consumer_init(&ks->consumer, &ks->client, ks_record, ks_consumer_error, ks);
    if (rc < 0) {
        ks_fail(ks, rc, "starting the consumer");
        return rc;
    }
    ks->consumer_up = true;
    ks->topic = sp_kafka_client_topic(&ks->client, c->topic, strlen(c->topic), &rc);
    if (ks->topic == NULL) {
        ks_fail(ks, rc, "the topic's name");
        return rc;
    }
    uint64_t now = sp_now_ns();
    sp_shard_timer_arm(shard, &ks->deadline, now + (uint64_t)c->timeout_ms * SP_NSEC_PER_MSEC);
    if (c->stop_at_end || ks->grouped)
        sp_shard_timer_arm(shard, &ks->tick, now + KS_TICK_NS);
    return 0;
}

/* One task after stop(): what it sent has been submitted; now close. */
static void ks_close_task(struct sp_task *task, struct sp_shard *shard)
{
    struct ks *ks = SP_CONTAINER_OF(task, struct ks, close_task);
    (void)shard;
    if (ks->group_up && !ks->group_closed) {
        ks->group_closed = true;
        sp_kafka_group_close(&ks->group);
    }
    if (ks->client_up && !ks->client.closing)
        sp_kafka_client_close(&ks->client);
}

static void ks_stop(struct sp_src *src)
{
    struct ks *ks = src->state;
    if (ks == NULL || ks->stopping)
        return;
    struct sp_shard *shard = src->xs->shard;
    sp_shard_timer_cancel(shard, &ks->deadline);
    sp_shard_timer_cancel(shard, &ks->tick);
    if (ks->consumer_up && !ks->paused) {
        ks->paused = true;
        sp_kafka_consumer_pause(&ks->consumer, true);
    }
    /*
     * One write per connection gets out now: the commit if positions moved,
     * else the leave. Only when the job ran to its end: a job stopped or
     * failed part way has records in flight and windows not fired, and
     * committing what the source handed on would skip them on restart.
     */
    bool completed = sp_exec_completed(src->xs) && !sp_exec_failed(src->xs);
    if (ks->group_up && !ks->leaving && !(completed && ks_commit_all(ks, false)))
        ks_leave(ks);
    if (completed && ks->mon_again) {
        /* The final checkpoint's positions, for monitoring: sent beside
         * the one in flight (nothing waits for the answers now). */
        ks->mon_inflight = ks->mon_again = false;
        ks_mon_commit(ks);
    }
    ks->stopping = true;
    sp_shard_post(shard, &ks->close_task, ks_close_task);
}

static void ks_close(struct sp_src *src)
{
    struct ks *ks = src->state;
    if (ks == NULL)
        return;
    struct sp_shard *shard = src->xs->shard;
    sp_shard_timer_cancel(shard, &ks->deadline);
    sp_shard_timer_cancel(shard, &ks->tick);
    if (!ks->stopping) {
        /* Never stopped (a failed start): close now. */
        ks->stopping = true;
        ks_close_task(&ks->close_task, shard);
    }
    if (ks->malformed > 0)
        sp_warn("kafka source '%s': %llu malformed records skipped on this shard",
                ks->config->topic, (unsigned long long)ks->malformed);
    sp_debug("kafka source '%s': buffered at most %llu bytes, paused %llu times, %llu commits "
             "failed",
             ks->config->topic, (unsigned long long)ks->buffered_bytes_max,
             (unsigned long long)ks->pauses, (unsigned long long)ks->commits_failed);
    bool idle = !ks->client_up || sp_kafka_client_idle(&ks->client);
    if (ks->group_up)
        idle &= sp_kafka_group_idle(&ks->group);
    if (!idle) {
        /* The drain timed out with I/O in flight that points into ks: keep it. */
        sp_warn("kafka source '%s': connections still busy at close; leaking them",
                ks->config->topic);
        src->state = NULL;
        return;
    }
    if (ks->group_up)
        sp_kafka_group_deinit(&ks->group);
    if (ks->consumer_up)
        sp_kafka_consumer_deinit(&ks->consumer);
    if (ks->client_up)
        sp_kafka_client_deinit(&ks->client);
    for (uint32_t i = 0; i < ks->part_count; i++)
        part_clear(ks, &ks->parts[i]);
    while (ks->spare != NULL) {
        struct ks_chunk *c = ks->spare;
        ks->spare = c->next;
        free(c);
    }
    free(ks->parts);
    free(ks->index_of);
    free(ks->ends);
    free(ks->restored);
    free(ks->carried);
    free(ks->mon_parts);
    free(ks->mon_offs);
    free(ks);
    src->state = NULL;
}

static const struct sp_source_vt kafka_source_vt = {
    .name = "kafka",
    .open = ks_open,
    .poll = ks_poll,
    .close = ks_close,
    .stop = ks_stop,
    .checkpoint = ks_checkpoint,
    .checkpoint_done = ks_checkpoint_done,
};

/* ---- Building ---- */

static bool parse_i64(const char *s, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

/* One "key=value": spate's own keys here, the rest to the client config. */
static bool ks_property(struct sp_job *job, struct ks_config *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
        sp_job_set_error(job, "kafka source: property '%s': must be key=value", kv);
        return false;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    const char *value = eq + 1;
    int64_t v;
    if (strcmp(key, "spate.source.timeout.ms") == 0) {
        if (!parse_i64(value, 1, &v)) {
            sp_job_set_error(job, "kafka source: %s '%s': a positive integer", key, value);
            return false;
        }
        c->timeout_ms = v;
    } else if (strcmp(key, "spate.source.buffer.bytes") == 0) {
        if (!parse_i64(value, 4096, &v)) {
            sp_job_set_error(job, "kafka source: %s '%s': an integer >= 4096", key, value);
            return false;
        }
        c->buffer_bytes = (uint64_t)v;
    } else {
        char err[256];
        if (sp_kafka_config_set(&c->kafka, key, value, err, sizeof(err)) < 0) {
            sp_job_set_error(job, "kafka source: %s", err);
            return false;
        }
    }
    return true;
}

static bool ks_set(struct sp_job *job, struct ks_config *c, const char *key, const char *value)
{
    char err[256];
    if (sp_kafka_config_set(&c->kafka, key, value, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka source: %s", err);
        return false;
    }
    return true;
}

static bool ks_configure(struct sp_job *job, struct ks_config *c,
                         const struct sp_kafka_source_config *config, enum sp_format format,
                         const struct sp_schema *schema)
{
    if (config->bootstrap == NULL || config->bootstrap[0] == '\0' || config->topic == NULL ||
        config->topic[0] == '\0') {
        sp_job_set_error(job, "kafka source: bootstrap servers and a topic are needed");
        return false;
    }
    if (strlen(config->topic) > SP_KAFKA_TOPIC_NAME_BYTES_MAX) {
        sp_job_set_error(job, "kafka source: a topic name has at most %u characters",
                         SP_KAFKA_TOPIC_NAME_BYTES_MAX);
        return false;
    }
    if (format > SP_FORMAT_STRING) {
        sp_job_set_error(job, "kafka source: unknown format %d", (int)format);
        return false;
    }
    if (schema == NULL)
        return true; /* sp_job_add_source reports it */
    c->record_row =
        schema == &sp_record_schema && (format == SP_FORMAT_RAW || format == SP_FORMAT_STRING);
    int value = sp_schema_find(schema, "value");
    if ((format == SP_FORMAT_RAW || format == SP_FORMAT_STRING) &&
        (value < 0 || schema->fields[value].type != SP_T_STR)) {
        sp_job_set_error(job, "kafka source: RAW and STRING need a string field 'value' in '%s'",
                         schema->name ? schema->name : "the schema");
        return false;
    }
    snprintf(c->topic, sizeof(c->topic), "%s", config->topic);
    c->format = format;
    c->group = config->group != NULL && config->group[0] != '\0';
    c->from_beginning = config->from_beginning;
    c->stop_at_end = config->stop_at_end;
    c->skip_malformed = config->skip_malformed;
    c->timeout_ms = KS_TIMEOUT_MS_DEFAULT;
    c->buffer_bytes = KS_BUFFER_BYTES_DEFAULT;
    sp_kafka_config_init(&c->kafka);
    if (!ks_set(job, c, "client.id", "spate-source") ||
        !ks_set(job, c, "auto.offset.reset", config->from_beginning ? "earliest" : "latest"))
        return false;
    for (unsigned i = 0; config->properties != NULL && config->properties[i] != NULL; i++)
        if (!ks_property(job, c, config->properties[i]))
            return false;
    /* What the source decides, whatever the properties said. */
    if (!ks_set(job, c, "bootstrap.servers", config->bootstrap) ||
        !ks_set(job, c, "group.id", c->group ? config->group : "") ||
        !ks_set(job, c, "enable.auto.commit", "false"))
        return false;
    char err[256];
    if (sp_kafka_config_validate(&c->kafka, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka source: %s", err);
        return false;
    }
    return true;
}

struct sp_stream *sp_source_kafka(struct sp_job *job, const struct sp_kafka_source_config *config,
                                  enum sp_format format, const struct sp_schema *schema,
                                  const struct sp_watermarks *wm)
{
    struct ks_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sp_job_set_error(job, "kafka source: out of memory");
        return sp_job_add_source(job, "kafka", &kafka_source_vt, NULL, NULL, NULL);
    }
    if (config == NULL || !ks_configure(job, c, config, format, schema)) {
        if (config == NULL)
            sp_job_set_error(job, "kafka source: no configuration given");
        free(c);
        return sp_job_add_source(job, "kafka", &kafka_source_vt, NULL, NULL, NULL);
    }
    return sp_job_add_source(job, "kafka", &kafka_source_vt, c, schema, wm);
}
