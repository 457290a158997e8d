/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka consumer (see sp_kafka_consumer.h).
 */
#include <errno.h>
#include <string.h>

#include "sp_kafka_consumer.h"
#include "sp_log.h"

#define FETCH_API_KEY 1
#define LIST_OFFSETS_API_KEY 2
/* Fetch v13+ names topics by id, which the client does not track yet. */
#define FETCH_VERSION_MAX 12
#define FETCH_PARTITIONS_MAX SP_KAFKA_FETCH_SESSION_PARTITIONS_MAX
/* Fetch sessions came with v7. */
#define FETCH_SESSION_VERSION_MIN 7
#define ERR_FETCH_SESSION_ID_NOT_FOUND 70
#define ERR_INVALID_FETCH_SESSION_EPOCH 71
/*
 * ListOffsets v4+ carries leader epochs for fencing, which this consumer
 * does not use yet; librdkafka 2.0's mock cluster also writes v4/v5's
 * LeaderEpoch as 8 bytes instead of 4. v3 has everything needed.
 */
#define LIST_OFFSETS_VERSION_MAX 3

static void consumer_fetch_all(struct sp_kafka_consumer *c);

/* ---- Assignment ---- */

static struct sp_kafka_cpart *part_find(struct sp_kafka_consumer *c, const char *topic,
                                        int32_t partition)
{
    for (unsigned i = 0; i < c->part_count; i++)
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic->name, topic) == 0)
            return &c->parts[i];
    return NULL;
}

static int assign_one(struct sp_kafka_consumer *c, struct sp_kafka_topic_info *t, int32_t partition,
                      int64_t offset)
{
    struct sp_kafka_cpart *p = part_find(c, t->name, partition);
    if (p == NULL) {
        if (c->part_count == SP_KAFKA_CONSUMER_PARTITIONS_MAX)
            return -ENOSPC;
        p = &c->parts[c->part_count++];
    }
    *p = (struct sp_kafka_cpart){.topic = t,
                                 .partition = partition,
                                 .offset = offset,
                                 .high_watermark = -1,
                                 .last_stable_offset = -1};
    return 0;
}

int sp_kafka_consumer_assign(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                             int64_t offset)
{
    if (offset < SP_KAFKA_OFFSET_BEGINNING || partition < -1)
        return -EINVAL;
    int err = 0;
    struct sp_kafka_topic_info *t = sp_kafka_client_topic(c->client, topic, strlen(topic), &err);
    if (t == NULL)
        return err;
    if (partition >= 0) {
        int ret = assign_one(c, t, partition, offset);
        consumer_fetch_all(c);
        return ret;
    }
    if (!t->known)
        return t->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION && c->client->metadata_ever
                   ? -ENOENT
                   : -EAGAIN;
    for (int32_t p = 0; p < t->partition_count; p++) {
        int ret = assign_one(c, t, p, offset);
        if (ret < 0)
            return ret;
    }
    consumer_fetch_all(c);
    return 0;
}

int sp_kafka_consumer_seek(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                           int64_t offset)
{
    if (offset < SP_KAFKA_OFFSET_BEGINNING)
        return -EINVAL;
    struct sp_kafka_cpart *p = part_find(c, topic, partition);
    if (p == NULL)
        return -ENOENT;
    p->offset = offset; /* a Fetch in flight for the old offset is ignored */
    p->stopped = false;
    consumer_fetch_all(c);
    return 0;
}

void sp_kafka_consumer_unassign(struct sp_kafka_consumer *c)
{
    c->part_count = 0;
}

void sp_kafka_consumer_pause(struct sp_kafka_consumer *c, bool paused)
{
    c->paused = paused;
    if (!paused)
        consumer_fetch_all(c);
}

static void part_stop(struct sp_kafka_consumer *c, struct sp_kafka_cpart *p, int err, int16_t code)
{
    p->stopped = true;
    sp_warn("kafka consumer: %s-%d stopped: %s", p->topic->name, p->partition,
            code != 0 ? sp_kafka_error_name(code) : strerror(-err));
    if (c->error_fn != NULL)
        c->error_fn(c, p->topic->name, p->partition, err, code, c->ctx);
}

/* ---- Offsets: ListOffsets for beginning, end and resets ---- */

struct list_req {
    struct sp_kafka_consumer *consumer;
    unsigned count;
    uint16_t parts[FETCH_PARTITIONS_MAX];
};

static void list_offsets_done(struct sp_kafka_conn *conn, int err, const void *body,
                              int16_t version, void *ctx)
{
    struct list_req *req = ctx;
    struct sp_kafka_consumer *c = req->consumer;
    (void)conn;
    for (unsigned i = 0; i < req->count; i++) {
        struct sp_kafka_cpart *p = &c->parts[req->parts[i]];
        p->resolving = false;
        if (err < 0)
            continue;
        const struct sp_kafka_list_offsets_response *r = body;
        for (int32_t t = 0; t < r->topics_count; t++) {
            if (!sp_kstr_eq(r->topics[t].name, p->topic->name))
                continue;
            for (int32_t q = 0; q < r->topics[t].partitions_count; q++) {
                const struct sp_kafka_list_offsets_response_list_offsets_partition_response *pr =
                    &r->topics[t].partitions[q];
                if (pr->partition_index != p->partition)
                    continue;
                if (pr->error_code != 0) {
                    if (!sp_kafka_error_retriable(pr->error_code))
                        part_stop(c, p, -EPROTO, pr->error_code);
                    else
                        sp_kafka_client_refresh(c->client);
                    continue;
                }
                int64_t offset =
                    version == 0 ? (pr->old_style_offsets_count > 0 ? pr->old_style_offsets[0] : -1)
                                 : pr->offset;
                if (offset >= 0 && p->offset < 0) /* not sought elsewhere meanwhile */
                    p->offset = offset;
            }
        }
    }
    sp_arena_free(&c->client->shard->arena, req);
    consumer_fetch_all(c);
}

/* Resolves the negative offsets of partitions led by `leader`. */
static void resolve_offsets(struct sp_kafka_consumer *c, int32_t leader, struct sp_kafka_conn *conn)
{
    struct list_req *req = sp_arena_alloc(&c->client->shard->arena, sizeof(*req));
    if (req == NULL)
        return;
    req->consumer = c;
    req->count = 0;
    struct sp_kafka_list_offsets_request_list_offsets_partition lps[FETCH_PARTITIONS_MAX];
    struct sp_kafka_list_offsets_request_list_offsets_topic lts[SP_KAFKA_CLIENT_TOPICS_MAX];
    unsigned lt_count = 0;
    for (unsigned i = 0; i < c->part_count && req->count < FETCH_PARTITIONS_MAX; i++) {
        struct sp_kafka_cpart *p = &c->parts[i];
        if (p->offset >= 0 || p->resolving || p->stopped || !p->topic->known ||
            p->partition >= p->topic->partition_count ||
            p->topic->partitions[p->partition].leader != leader)
            continue;
        struct sp_kafka_list_offsets_request_list_offsets_topic *lt = NULL;
        for (unsigned t = 0; t < lt_count; t++)
            if (sp_kstr_eq(lts[t].name, p->topic->name))
                lt = &lts[t];
        if (lt == NULL) {
            if (lt_count == SP_ARRAY_LEN(lts))
                continue;
            lt = &lts[lt_count++];
            sp_kafka_list_offsets_request_list_offsets_topic_init(lt);
            lt->name = sp_kstr_of(p->topic->name);
            lt->partitions = &lps[req->count];
            lt->partitions_count = 0;
        }
        /* Partitions of a topic must be contiguous in lps: sorted by topic below. */
        struct sp_kafka_list_offsets_request_list_offsets_partition *lp = &lps[req->count];
        sp_kafka_list_offsets_request_list_offsets_partition_init(lp);
        lp->partition_index = p->partition;
        lp->timestamp = p->offset; /* -2 earliest, -1 latest: Kafka's own sentinels */
        lp->max_num_offsets = 1;
        if (lt->partitions + lt->partitions_count != lp) {
            /* Not contiguous: leave it for the next round. */
            continue;
        }
        lt->partitions_count++;
        req->parts[req->count++] = (uint16_t)i;
        p->resolving = true;
    }
    if (req->count == 0) {
        sp_arena_free(&c->client->shard->arena, req);
        return;
    }
    struct sp_kafka_list_offsets_request body;
    sp_kafka_list_offsets_request_init(&body);
    body.replica_id = -1;
    body.isolation_level = (int8_t)c->config->isolation_level;
    body.topics = lts;
    body.topics_count = (int32_t)lt_count;
    int16_t version =
        SP_MIN(sp_kafka_conn_version(conn, LIST_OFFSETS_API_KEY), LIST_OFFSETS_VERSION_MAX);
    if (sp_kafka_conn_send(conn, LIST_OFFSETS_API_KEY, version, &body, list_offsets_done, req) <
        0) {
        for (unsigned i = 0; i < req->count; i++)
            c->parts[req->parts[i]].resolving = false;
        sp_arena_free(&c->client->shard->arena, req);
    }
}

/* ---- Fetching ---- */

struct fetch_req {
    struct sp_kafka_consumer *consumer;
    unsigned broker_slot;
    int32_t session_epoch; /* as sent */
    unsigned count;
    uint16_t parts[FETCH_PARTITIONS_MAX];
    int64_t offsets[FETCH_PARTITIONS_MAX]; /* the offset each was fetched from */
};

static void deliver_batches(struct sp_kafka_consumer *c, struct sp_kafka_cpart *p, int64_t from,
                            const struct sp_kafka_fetch_response_partition_data *pd)
{
    struct sp_kafka_txn_filter_config fc = {
        .isolation = c->config->isolation_level,
        .fetch_offset = from,
        .scratch = c->aborted,
        .scratch_count = SP_ARRAY_LEN(c->aborted),
        .codec = &c->codec,
    };
    struct sp_kafka_txn_filter filter;
    if (sp_kafka_txn_filter_init_partition(&filter, &fc, pd) < 0) {
        part_stop(c, p, -ENOBUFS, 0);
        return;
    }
    struct sp_record_batch batch;
    int ret;
    while ((ret = sp_kafka_txn_filter_next(&filter, &batch)) == 1) {
        struct sp_record_iter it;
        if (sp_record_iter_open(&it, &batch, &c->codec, c->scratch, c->scratch_bytes) < 0) {
            part_stop(c, p, -EBADMSG, 0);
            return;
        }
        struct sp_record rec;
        int more;
        while ((more = sp_record_iter_next(&it, &rec)) == 1) {
            if (rec.offset < from)
                continue; /* the batch began before the offset asked for */
            c->records++;
            c->record_fn(c, p->topic->name, p->partition, &rec, c->ctx);
            if (p->stopped || c->part_count == 0)
                return;
        }
        if (more < 0) {
            part_stop(c, p, -EBADMSG, 0);
            return;
        }
    }
    if (ret < 0) {
        part_stop(c, p, ret, 0);
        return;
    }
    c->aborted_batches += filter.aborted_batch_count;
    int64_t next = sp_kafka_txn_filter_next_offset(&filter);
    if (next > p->offset)
        p->offset = next;
}

/* ---- Fetch sessions ---- */

static struct sp_kafka_fetch_session *session_of(struct sp_kafka_consumer *c, unsigned slot,
                                                 int16_t version)
{
    if (version < FETCH_SESSION_VERSION_MIN)
        return NULL;
    struct sp_kafka_fetch_session *s = c->sessions[slot];
    if (s == NULL) {
        s = sp_arena_alloc(&c->client->shard->arena, sizeof(*s));
        if (s == NULL)
            return NULL; /* full fetches, as without sessions */
        memset(s, 0, sizeof(*s));
        c->sessions[slot] = s;
    }
    return s->unsupported ? NULL : s;
}

static void session_reset(struct sp_kafka_consumer *c, struct sp_kafka_fetch_session *s)
{
    if (s->id != 0)
        c->fetch_session_resets++;
    s->id = 0;
    s->epoch = 0;
    s->count = 0;
}

static void session_answered(struct sp_kafka_consumer *c, const struct fetch_req *req, int err,
                             const struct sp_kafka_fetch_response *r)
{
    struct sp_kafka_fetch_session *s = c->sessions[req->broker_slot];
    if (s == NULL || req->session_epoch < 0)
        return;
    if (err < 0 || r->error_code != 0) {
        session_reset(c, s); /* the next Fetch is a full one */
        return;
    }
    if (req->session_epoch == 0) {
        if (r->session_id == 0) {
            s->unsupported = true; /* the broker keeps no sessions for us */
            s->count = 0;
            return;
        }
        s->id = r->session_id;
    }
    s->epoch = s->epoch == INT32_MAX ? 1 : s->epoch + 1;
}

/* Whether partition `p` should be fetched from `leader` now. */
static bool part_wanted(const struct sp_kafka_cpart *p, int32_t leader)
{
    const struct sp_kafka_topic_info *t = p->topic;
    return p->offset >= 0 && !p->stopped && t->known && p->partition < t->partition_count &&
           t->partitions[p->partition].leader == leader;
}

static void fetch_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                       void *ctx)
{
    struct fetch_req *req = ctx;
    struct sp_kafka_consumer *c = req->consumer;
    (void)conn;
    (void)version;
    c->fetching[req->broker_slot] = false;
    c->fetches++;
    bool refresh = err < 0;
    session_answered(c, req, err, err == 0 ? body : NULL);
    if (err == 0) {
        const struct sp_kafka_fetch_response *r = body;
        if (r->error_code != 0 && r->error_code != ERR_FETCH_SESSION_ID_NOT_FOUND &&
            r->error_code != ERR_INVALID_FETCH_SESSION_EPOCH)
            refresh = true;
        for (int32_t t = 0; t < r->responses_count; t++) {
            const struct sp_kafka_fetch_response_fetchable_topic_response *tr = &r->responses[t];
            for (int32_t q = 0; q < tr->partitions_count; q++) {
                const struct sp_kafka_fetch_response_partition_data *pd = &tr->partitions[q];
                /* Match by name against what this request asked. */
                for (unsigned i = 0; i < req->count; i++) {
                    if (req->parts[i] >= c->part_count)
                        continue;
                    struct sp_kafka_cpart *p = &c->parts[req->parts[i]];
                    if (p->partition != pd->partition_index ||
                        !sp_kstr_eq(tr->topic, p->topic->name))
                        continue;
                    if (p->offset != req->offsets[i] || p->stopped)
                        break; /* re-assigned or sought meanwhile */
                    if (pd->error_code == SP_KAFKA_ERR_OFFSET_OUT_OF_RANGE) {
                        sp_debug("kafka consumer: %s-%d: offset %lld out of range (log %lld..%lld)",
                                 p->topic->name, p->partition, (long long)p->offset,
                                 (long long)pd->log_start_offset, (long long)pd->high_watermark);
                        if (c->config->auto_offset_reset == SP_KAFKA_OFFSET_RESET_NONE)
                            part_stop(c, p, -ERANGE, pd->error_code);
                        else
                            p->offset =
                                c->config->auto_offset_reset == SP_KAFKA_OFFSET_RESET_EARLIEST
                                    ? SP_KAFKA_OFFSET_BEGINNING
                                    : SP_KAFKA_OFFSET_END;
                        break;
                    }
                    if (pd->error_code != 0) {
                        if (sp_kafka_error_retriable(pd->error_code))
                            refresh = true;
                        else
                            part_stop(c, p, -EPROTO, pd->error_code);
                        break;
                    }
                    p->high_watermark = pd->high_watermark;
                    p->last_stable_offset = version >= 4 ? pd->last_stable_offset : -1;
                    if (pd->records.len > 0) {
                        c->bytes += (uint64_t)pd->records.len;
                        deliver_batches(c, p, req->offsets[i], pd);
                    }
                    break;
                }
            }
        }
    }
    sp_arena_free(&c->client->shard->arena, req);
    if (refresh)
        sp_kafka_client_refresh(c->client);
    consumer_fetch_all(c);
}

/* The consumer's partition a session entry stands for, or NULL. */
static struct sp_kafka_cpart *session_part(struct sp_kafka_consumer *c,
                                           struct sp_kafka_fetch_session_part *sp)
{
    if (sp->index < c->part_count) {
        struct sp_kafka_cpart *p = &c->parts[sp->index];
        if (p->topic == sp->topic && p->partition == sp->partition)
            return p;
    }
    for (unsigned i = 0; i < c->part_count; i++) {
        if (c->parts[i].topic == sp->topic && c->parts[i].partition == sp->partition) {
            sp->index = i; /* the parts moved */
            return &c->parts[i];
        }
    }
    return NULL;
}

/* A Fetch being built: partitions to send and to forget, grouped by topic at the end. */
struct sp_kafka_fetch_build {
    struct sp_kafka_fetch_request_fetch_partition fps[FETCH_PARTITIONS_MAX];
    struct sp_kafka_fetch_request_fetch_topic fts[SP_KAFKA_CLIENT_TOPICS_MAX];
    unsigned fp_count;
    unsigned ft_count;
    struct sp_kafka_topic_info *send_topic[FETCH_PARTITIONS_MAX];
    int32_t send_partition[FETCH_PARTITIONS_MAX];
    int64_t send_offset[FETCH_PARTITIONS_MAX];
    unsigned send_count;
    struct sp_kafka_topic_info *forget_topic[FETCH_PARTITIONS_MAX];
    int32_t forget_partition[FETCH_PARTITIONS_MAX];
    int32_t forget_ids[FETCH_PARTITIONS_MAX];
    struct sp_kafka_fetch_request_forgotten_topic forgotten[SP_KAFKA_CLIENT_TOPICS_MAX];
    unsigned forget_count;
    unsigned forgotten_count;
};

static void build_send(struct sp_kafka_fetch_build *fb, struct sp_kafka_topic_info *topic,
                       int32_t partition, int64_t offset)
{
    fb->send_topic[fb->send_count] = topic;
    fb->send_partition[fb->send_count] = partition;
    fb->send_offset[fb->send_count] = offset;
    fb->send_count++;
}

/* Groups the partitions to send and to forget by topic, as the request wants. */
static void build_group(struct sp_kafka_consumer *c, struct sp_kafka_fetch_build *fb)
{
    for (unsigned t = 0; t < c->client->topic_count; t++) {
        struct sp_kafka_topic_info *topic = &c->client->topics[t];
        struct sp_kstr name = {topic->name, (int32_t)strlen(topic->name)};
        unsigned first = fb->fp_count;
        for (unsigned i = 0; i < fb->send_count; i++) {
            if (fb->send_topic[i] != topic)
                continue;
            struct sp_kafka_fetch_request_fetch_partition *fp = &fb->fps[fb->fp_count++];
            sp_kafka_fetch_request_fetch_partition_init(fp);
            fp->partition = fb->send_partition[i];
            fp->current_leader_epoch = -1;
            fp->fetch_offset = fb->send_offset[i];
            fp->log_start_offset = -1;
            fp->last_fetched_epoch = -1;
            fp->partition_max_bytes = c->config->max_partition_fetch_bytes;
        }
        if (fb->fp_count > first) {
            struct sp_kafka_fetch_request_fetch_topic *ft = &fb->fts[fb->ft_count++];
            sp_kafka_fetch_request_fetch_topic_init(ft);
            ft->topic = name;
            ft->partitions = &fb->fps[first];
            ft->partitions_count = (int32_t)(fb->fp_count - first);
        }
        unsigned ids = 0;
        for (unsigned i = 0; i < fb->forget_count; i++)
            if (fb->forget_topic[i] == topic)
                ids++;
        if (ids > 0) {
            struct sp_kafka_fetch_request_forgotten_topic *ff =
                &fb->forgotten[fb->forgotten_count++];
            sp_kafka_fetch_request_forgotten_topic_init(ff);
            ff->topic = name;
            unsigned base = 0;
            for (unsigned k = 0; k < fb->forgotten_count - 1; k++)
                base += (unsigned)fb->forgotten[k].partitions_count;
            ff->partitions = &fb->forget_ids[base];
            ff->partitions_count = 0;
            for (unsigned i = 0; i < fb->forget_count; i++)
                if (fb->forget_topic[i] == topic)
                    fb->forget_ids[base + (unsigned)ff->partitions_count++] =
                        fb->forget_partition[i];
        }
    }
}

/*
 * An incremental Fetch in session `s`: partitions that left go to the
 * forgotten list, those whose offset moved are sent again, new ones join.
 * The request then covers every partition of the session.
 */
static void build_incremental(struct sp_kafka_consumer *c, struct sp_kafka_fetch_session *s,
                              int32_t leader, struct sp_kafka_fetch_build *fb,
                              struct fetch_req *req)
{
    uint32_t mark = ++c->mark;
    for (unsigned i = 0; i < s->count; i++) {
        struct sp_kafka_fetch_session_part *sp = &s->parts[i];
        struct sp_kafka_cpart *p = session_part(c, sp);
        if (p == NULL || !part_wanted(p, leader)) {
            fb->forget_topic[fb->forget_count] = sp->topic;
            fb->forget_partition[fb->forget_count] = sp->partition;
            fb->forget_count++;
            s->parts[i--] = s->parts[--s->count];
            continue;
        }
        p->mark = mark;
        if (p->offset != sp->offset) {
            sp->offset = p->offset;
            build_send(fb, sp->topic, sp->partition, sp->offset);
        }
    }
    for (unsigned i = 0; i < c->part_count && s->count < FETCH_PARTITIONS_MAX; i++) {
        struct sp_kafka_cpart *p = &c->parts[i];
        if (p->mark == mark || !part_wanted(p, leader))
            continue;
        s->parts[s->count++] =
            (struct sp_kafka_fetch_session_part){p->topic, p->partition, i, p->offset};
        build_send(fb, p->topic, p->partition, p->offset);
    }
    for (unsigned i = 0; i < s->count; i++) {
        req->parts[i] = (uint16_t)s->parts[i].index;
        req->offsets[i] = s->parts[i].offset;
    }
    req->count = s->count;
    c->incremental_fetches++;
}

/*
 * A full Fetch. The answer must fit the connection's receive buffer even
 * from a broker that ignores fetch.max.bytes (librdkafka's mock does): ask
 * for no more partitions than their max.partition.fetch.bytes allow,
 * starting where the last request stopped so that every partition gets its
 * turn.
 */
static void build_full(struct sp_kafka_consumer *c, int32_t leader, uint64_t budget,
                       struct sp_kafka_fetch_build *fb, struct fetch_req *req)
{
    uint64_t per_part = (uint64_t)c->config->max_partition_fetch_bytes + 1024;
    unsigned fit = (unsigned)SP_MAX((uint64_t)1, budget / per_part);
    unsigned start = c->next_fetch_start < c->part_count ? c->next_fetch_start : 0;
    for (unsigned k = 0; k < c->part_count && req->count < SP_MIN(fit, FETCH_PARTITIONS_MAX); k++) {
        unsigned i = (start + k) % c->part_count;
        struct sp_kafka_cpart *p = &c->parts[i];
        if (!part_wanted(p, leader))
            continue;
        build_send(fb, p->topic, p->partition, p->offset);
        req->parts[req->count] = (uint16_t)i;
        req->offsets[req->count] = p->offset;
        req->count++;
    }
    if (req->count > 0)
        c->next_fetch_start = (unsigned)(req->parts[req->count - 1] + 1);
}

static void fetch_from(struct sp_kafka_consumer *c, unsigned slot, int32_t leader,
                       struct sp_kafka_conn *conn)
{
    struct fetch_req *req = sp_arena_alloc(&c->client->shard->arena, sizeof(*req));
    struct sp_kafka_fetch_build *fb = c->build;
    if (req == NULL)
        return;
    req->consumer = c;
    req->broker_slot = slot;
    req->count = 0;
    req->session_epoch = -1;
    fb->fp_count = fb->ft_count = fb->send_count = fb->forget_count = fb->forgotten_count = 0;
    int16_t version = SP_MIN(sp_kafka_conn_version(conn, FETCH_API_KEY), FETCH_VERSION_MAX);
    uint64_t budget = conn->config.receive_buffer_bytes - (1u << 20);
    struct sp_kafka_fetch_session *s = session_of(c, slot, version);
    if (s != NULL && s->id != 0) {
        build_incremental(c, s, leader, fb, req);
        req->session_epoch = s->epoch;
    } else {
        build_full(c, leader, budget, fb, req);
        if (s != NULL) { /* ask for a session holding these partitions */
            req->session_epoch = 0;
            s->epoch = 0;
            s->count = req->count;
            for (unsigned i = 0; i < req->count; i++) {
                const struct sp_kafka_cpart *p = &c->parts[req->parts[i]];
                s->parts[i] = (struct sp_kafka_fetch_session_part){p->topic, p->partition,
                                                                   req->parts[i], p->offset};
            }
        }
    }
    if (req->count == 0 && fb->forget_count == 0)
        goto out;
    build_group(c, fb);
    struct sp_kafka_fetch_request body;
    sp_kafka_fetch_request_init(&body);
    body.replica_id = -1;
    body.max_wait_ms = c->config->fetch_max_wait_ms;
    body.min_bytes = c->config->fetch_min_bytes;
    body.max_bytes = (int32_t)SP_MIN((uint64_t)c->config->fetch_max_bytes, budget);
    body.isolation_level = (int8_t)c->config->isolation_level;
    body.session_id = s != NULL ? s->id : 0;
    body.session_epoch = req->session_epoch; /* -1: a full fetch, no session */
    body.topics = fb->fts;
    body.topics_count = (int32_t)fb->ft_count;
    if (fb->forgotten_count > 0) {
        body.forgotten_topics_data = fb->forgotten;
        body.forgotten_topics_data_count = (int32_t)fb->forgotten_count;
    }
    if (sp_kafka_conn_send(conn, FETCH_API_KEY, version, &body, fetch_done, req) < 0) {
        if (s != NULL)
            session_reset(c, s); /* what was sent is unknown: start over */
        goto out;
    }
    c->fetching[slot] = true;
    return;
out:
    sp_arena_free(&c->client->shard->arena, req);
}

static void consumer_fetch_all(struct sp_kafka_consumer *c)
{
    if (c->closing || c->paused)
        return;
    struct sp_kafka_client *client = c->client;
    for (unsigned b = 0; b < client->broker_count; b++) {
        struct sp_kafka_broker *broker = &client->brokers[b];
        if (!broker->in_use || c->fetching[b])
            continue;
        bool wanted = false, resolve = false;
        for (unsigned i = 0; i < c->part_count; i++) {
            struct sp_kafka_cpart *p = &c->parts[i];
            if (p->stopped || !p->topic->known || p->partition >= p->topic->partition_count ||
                p->topic->partitions[p->partition].leader != broker->node_id)
                continue;
            wanted |= p->offset >= 0;
            resolve |= p->offset < 0 && !p->resolving;
        }
        if (!wanted && !resolve)
            continue;
        struct sp_kafka_conn *conn = sp_kafka_client_broker(client, broker->node_id);
        if (conn == NULL || !sp_kafka_conn_ready(conn))
            continue;
        if (resolve)
            resolve_offsets(c, broker->node_id, conn);
        if (wanted)
            fetch_from(c, b, broker->node_id, conn);
    }
    for (unsigned i = 0; i < c->part_count; i++)
        if (!c->parts[i].topic->known || c->parts[i].topic->partitions == NULL ||
            c->parts[i].topic->partitions[c->parts[i].partition].leader < 0) {
            sp_kafka_client_refresh(client);
            break;
        }
}

static void client_changed(struct sp_kafka_client *client, void *ctx)
{
    struct sp_kafka_consumer *c = ctx;
    consumer_fetch_all(c);
    if (c->chained_fn != NULL)
        c->chained_fn(client, c->chained_ctx);
}

/* ---- Life cycle ---- */

int sp_kafka_consumer_init(struct sp_kafka_consumer *c, struct sp_kafka_client *client,
                           sp_kafka_record_fn *record_fn, sp_kafka_consumer_error_fn *error_fn,
                           void *ctx)
{
    SP_ASSERT(c != NULL);
    SP_ASSERT(record_fn != NULL);
    memset(c, 0, sizeof(*c));
    c->client = client;
    c->config = client->config;
    c->record_fn = record_fn;
    c->error_fn = error_fn;
    c->ctx = ctx;
    /* A whole partition's fetch decompressed: max.partition.fetch.bytes x 8. */
    c->scratch_bytes =
        (uint32_t)SP_MIN((int64_t)c->config->max_partition_fetch_bytes * 8, 256 << 20);
    c->scratch = sp_arena_alloc(&client->shard->arena, c->scratch_bytes);
    c->build = sp_arena_alloc(&client->shard->arena, sizeof(*c->build));
    if (c->scratch == NULL || c->build == NULL) {
        sp_arena_free(&client->shard->arena, c->scratch);
        sp_arena_free(&client->shard->arena, c->build);
        return -ENOMEM;
    }
    int ret = sp_record_codec_init(&c->codec, SP_RECORD_CODEC_DECOMPRESS);
    if (ret < 0) {
        sp_arena_free(&client->shard->arena, c->scratch);
        sp_arena_free(&client->shard->arena, c->build);
        return ret;
    }
    c->chained_fn = client->on_change;
    c->chained_ctx = client->ctx;
    client->on_change = client_changed;
    client->ctx = c;
    return 0;
}

void sp_kafka_consumer_deinit(struct sp_kafka_consumer *c)
{
    c->closing = true;
    int64_t hwm_sum = 0;
    for (unsigned i = 0; i < c->part_count; i++)
        hwm_sum += SP_MAX(c->parts[i].high_watermark, (int64_t)0);
    sp_debug("kafka consumer: %llu records, %llu fetches, high watermarks sum to %lld",
             (unsigned long long)c->records, (unsigned long long)c->fetches, (long long)hwm_sum);
    for (unsigned i = 0; i < c->part_count; i++) {
        const struct sp_kafka_cpart *p = &c->parts[i];
        if (p->high_watermark >= 0 && p->offset < p->high_watermark)
            sp_debug("kafka consumer: %s-%d left at offset %lld of %lld", p->topic->name,
                     p->partition, (long long)p->offset, (long long)p->high_watermark);
    }
    sp_record_codec_deinit(&c->codec);
    sp_arena_free(&c->client->shard->arena, c->scratch);
    sp_arena_free(&c->client->shard->arena, c->build);
    for (unsigned b = 0; b < SP_KAFKA_CLIENT_BROKERS_MAX; b++) {
        if (c->sessions[b] != NULL)
            sp_arena_free(&c->client->shard->arena, c->sessions[b]);
        c->sessions[b] = NULL; /* fetches in flight may still answer */
    }
    c->client->on_change = c->chained_fn;
    c->client->ctx = c->chained_ctx;
}
