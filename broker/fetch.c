/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fetch: reads of the partitions a consumer asks for, each on its owner
 * shard, answered when min_bytes have come or max_wait_ms has passed (the
 * long poll looks again every FETCH_POLL_NS), with read_committed cut at
 * the last stable offset and the aborted transactions listed.
 *
 * Fetch sessions (KIP-227, Fetch v7 and up): a consumer may ask for a
 * session (session id 0, epoch 0); the broker then remembers the
 * partitions of that full fetch with their fetch offsets, and later
 * requests of the session (its id, the next epoch) name only the partitions
 * whose fetch offset changed, plus those to forget. The answer to such an
 * incremental fetch carries only the partitions with something new:
 * records, an error, or a high watermark, last stable offset or log start
 * that moved since the session last answered them. Sessions live on the
 * shard of the connection that made them (a client that reconnects onto
 * another shard gets FETCH_SESSION_ID_NOT_FOUND and starts a new one, as
 * after a Kafka broker's restart); a shard keeps at most
 * sp_broker_config.fetch_sessions_max of them, evicting the one unused
 * longest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_log.h"

#define FETCH_POLL_NS 5000000ull /* how often a waiting fetch looks again */
/* A partition read whose budget is at least this is sent from a mapping of
 * the log's segment (no copy) rather than read into memory: over plaintext
 * (TLS encrypts on the shard, which must not fault on the mapping), for
 * read_uncommitted (read_committed cuts at the last stable offset). */
#define FETCH_SLICE_MIN_BYTES (256u << 10)
#define SESSION_PARTS_MAX 100000u     /* partitions one session remembers */
#define KERR_SESSION_NOT_FOUND 70     /* FETCH_SESSION_ID_NOT_FOUND */
#define KERR_INVALID_SESSION_EPOCH 71 /* INVALID_FETCH_SESSION_EPOCH */

/* ---- Sessions ---- */

struct spart {
    char *topic;
    int32_t partition;
    int64_t fetch_offset;
    int32_t max_bytes;
    /* what the session last answered for it (-2: never) */
    int64_t hw, lso, log_start;
};

struct fsession {
    struct fsession *next;
    int32_t id;
    int32_t epoch; /* the epoch the next request must carry */
    uint64_t used_ns;
    struct spart *parts;
    uint32_t count, cap;
    bool busy; /* a fetch of it is in flight (it holds pointers into parts) */
};

struct sessions {
    struct fsession *list;
    uint32_t count;
    uint32_t next_id;
    struct fsession *removed; /* removed while busy: freed when their fetch ends */
};

static struct sessions *sessions_of(struct bshard *bs)
{
    if (bs->fetch_sessions == NULL)
        bs->fetch_sessions = calloc(1, sizeof(struct sessions));
    return bs->fetch_sessions;
}

static void session_free(struct fsession *s)
{
    for (uint32_t i = 0; i < s->count; i++)
        free(s->parts[i].topic);
    free(s->parts);
    free(s);
}

void fetch_sessions_free(struct bshard *bs)
{
    struct sessions *ss = bs->fetch_sessions;
    if (ss == NULL)
        return;
    while (ss->list != NULL) {
        struct fsession *s = ss->list;
        ss->list = s->next;
        session_free(s);
    }
    while (ss->removed != NULL) {
        struct fsession *s = ss->removed;
        ss->removed = s->next;
        session_free(s);
    }
    free(ss);
    bs->fetch_sessions = NULL;
}

static struct fsession *session_find(struct sessions *ss, int32_t id)
{
    for (struct fsession *s = ss->list; s != NULL; s = s->next) {
        if (s->id == id)
            return s;
    }
    return NULL;
}

static void session_remove(struct sessions *ss, int32_t id)
{
    for (struct fsession **sp = &ss->list; *sp != NULL; sp = &(*sp)->next) {
        if ((*sp)->id == id) {
            struct fsession *s = *sp;
            *sp = s->next;
            ss->count--;
            if (s->busy) {
                s->next = ss->removed;
                ss->removed = s;
            } else {
                session_free(s);
            }
            return;
        }
    }
}

/* A new, empty session; NULL when there is no room (then the fetch is
 * answered without one, as Kafka does). */
static struct fsession *session_new(struct bshard *bs, struct sessions *ss)
{
    uint32_t max = bs->b->config.fetch_sessions_max;
    if (max == 0)
        return NULL;
    if (ss->count >= max) {
        struct fsession **victim = NULL;
        for (struct fsession **sp = &ss->list; *sp != NULL; sp = &(*sp)->next) {
            if (!(*sp)->busy && (victim == NULL || (*sp)->used_ns < (*victim)->used_ns))
                victim = sp;
        }
        if (victim == NULL)
            return NULL;
        struct fsession *s = *victim;
        *victim = s->next;
        ss->count--;
        session_free(s);
    }
    struct fsession *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    /* Ids unique over the shards: the shard in the low bits; positive. */
    do {
        ss->next_id++;
        s->id = (int32_t)(((ss->next_id * bs->b->shards + bs->shard->id) & 0x7fffffffu));
    } while (s->id == 0 || session_find(ss, s->id) != NULL);
    s->epoch = 0; /* the opening fetch moves it to 1 */
    s->next = ss->list;
    ss->list = s;
    ss->count++;
    return s;
}

static struct spart *session_part(struct fsession *s, struct sp_kstr topic, int32_t partition)
{
    for (uint32_t i = 0; i < s->count; i++) {
        struct spart *sp = &s->parts[i];
        if (sp->partition == partition && strlen(sp->topic) == (size_t)topic.len &&
            memcmp(sp->topic, topic.ptr, (size_t)topic.len) == 0)
            return sp;
    }
    return NULL;
}

/* Adds or updates a partition of the session; false when out of room. */
static bool session_set(struct fsession *s, struct sp_kstr topic, int32_t partition, int64_t offset,
                        int32_t max_bytes)
{
    struct spart *sp = session_part(s, topic, partition);
    if (sp == NULL) {
        if (s->count == s->cap) {
            uint32_t cap = s->cap ? s->cap * 2 : 16;
            struct spart *g = cap <= SESSION_PARTS_MAX ? realloc(s->parts, cap * sizeof(*g)) : NULL;
            if (g == NULL)
                return false;
            s->parts = g;
            s->cap = cap;
        }
        char *name = kstr_dup(topic);
        if (name == NULL)
            return false;
        sp = &s->parts[s->count++];
        *sp = (struct spart){
            .topic = name, .partition = partition, .hw = -2, .lso = -2, .log_start = -2};
    }
    sp->fetch_offset = offset;
    sp->max_bytes = max_bytes;
    return true;
}

static void session_forget(struct fsession *s, struct sp_kstr topic, int32_t partition)
{
    struct spart *sp = session_part(s, topic, partition);
    if (sp == NULL)
        return;
    free(sp->topic);
    *sp = s->parts[--s->count];
}

/* ---- The fetch ---- */

struct fetch {
    uint64_t deadline_ns;
    struct pop **pops;     /* every partition of the fetch */
    struct spart **sparts; /* [i]: pops[i]'s session partition, or NULL */
    bool *started;         /* [i]: read on its owner (else answered with its error) */
    uint32_t pop_count;
    uint64_t bytes;
    struct fsession *session;
    bool incremental;
};

static void fetch_start_reads(struct req *r);
static void fetch_session_release(struct req *r);
static void pop_records_free(struct pop *p);

/* The request goes, answered or not (its connection closed while it
 * waited): its session is free again, its reads' buffers and mappings go. */
static void fetch_free(struct req *r)
{
    struct fetch *f = r->api;
    fetch_session_release(r);
    for (uint32_t i = 0; f->pops != NULL && i < f->pop_count; i++)
        pop_records_free(f->pops[i]);
}

/* Drops what a read brought (a round that waits for more, a partition left
 * out of an incremental answer). */
static void pop_records_free(struct pop *p)
{
    free(p->records_mem);
    free(p->aborted);
    if (p->map_base != NULL)
        munmap(p->map_base, p->map_len);
    p->map_base = NULL;
    p->records = NULL;
    p->records_mem = NULL;
    p->records_len = 0;
    p->aborted = NULL;
    p->aborted_count = 0;
}

/* The fetch no longer points into its session. */
static void fetch_session_release(struct req *r)
{
    struct fetch *f = r->api;
    struct fsession *s = f->session;
    if (s == NULL)
        return;
    f->session = NULL;
    s->busy = false;
    struct sessions *ss = r->conn->bs->fetch_sessions;
    for (struct fsession **sp = &ss->removed; *sp != NULL; sp = &(*sp)->next) {
        if (*sp == s) {
            *sp = s->next;
            session_free(s);
            return;
        }
    }
}

static int pop_cmp(const void *a, const void *b)
{
    const struct pop *x = *(struct pop *const *)a, *y = *(struct pop *const *)b;
    int c = strcmp(x->topic, y->topic);
    return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* The partition goes into the answer: always in a full fetch; in an
 * incremental one when something about it is new. */
static bool included(const struct fetch *f, const struct pop *p, const struct spart *sp)
{
    if (!f->incremental || sp == NULL)
        return true;
    return p->records_len > 0 || p->error != KERR_NONE || p->high_watermark != sp->hw ||
           p->lso != sp->lso || p->log_start != sp->log_start;
}

static void fill_partition(struct req *r, struct pop *p,
                           struct sp_kafka_fetch_response_partition_data *o)
{
    sp_kafka_fetch_response_partition_data_init(o);
    o->partition_index = p->partition;
    o->error_code = p->error;
    o->high_watermark = p->error == KERR_NONE ? p->high_watermark : -1;
    o->last_stable_offset = p->error == KERR_NONE ? p->lso : -1;
    o->log_start_offset = p->error == KERR_NONE ? p->log_start : -1;
    o->aborted_transactions_count = -1;
    o->preferred_read_replica = -1;
    o->records = (struct sp_kbytes){NULL, 0};
    if (p->isolation == 1 && p->error == KERR_NONE) {
        o->aborted_transactions = p->aborted;
        o->aborted_transactions_count = p->aborted_count;
        if (p->aborted != NULL && !req_adopt(r, p->aborted)) {
            free(p->aborted);
            o->aborted_transactions_count = 0;
            o->error_code = KERR_UNKNOWN_SERVER_ERROR;
        }
        p->aborted = NULL;
    }
    if (p->map_base != NULL) {
        /* Records in a mapping of the segment: sent from there. */
        void *base = p->map_base;
        p->map_base = NULL;
        if (req_adopt_map(r, base, p->map_len)) {
            o->records = (struct sp_kbytes){p->records, (int32_t)p->records_len};
        } else {
            o->records = (struct sp_kbytes){NULL, 0};
            o->error_code = KERR_UNKNOWN_SERVER_ERROR;
        }
        p->records = NULL;
        return;
    }
    o->records = (struct sp_kbytes){p->records, (int32_t)p->records_len};
    /* Freed with the request, once the response is sent. */
    if (p->records_mem != NULL && !req_adopt(r, p->records_mem)) {
        free(p->records_mem);
        o->records = (struct sp_kbytes){NULL, 0};
        o->error_code = KERR_UNKNOWN_SERVER_ERROR;
    }
    p->records = NULL;
    p->records_mem = NULL;
}

static void fetch_finish(struct req *r)
{
    struct fetch *f = r->api;
    struct sp_kafka_fetch_response *resp = r->resp;
    struct pop **order = req_alloc(r, (f->pop_count ? f->pop_count : 1) * sizeof(*order));
    struct sp_kafka_fetch_response_fetchable_topic_response *topics =
        req_alloc(r, (f->pop_count ? f->pop_count : 1) * sizeof(*topics));
    struct sp_kafka_fetch_response_partition_data *parts =
        req_alloc(r, (f->pop_count ? f->pop_count : 1) * sizeof(*parts));
    if (order == NULL || topics == NULL || parts == NULL) {
        fetch_session_release(r);
        r->resp = NULL;
        req_finish(r);
        return;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->pop_count; i++) {
        struct pop *p = f->pops[i];
        struct spart *sp = f->sparts[i];
        if (!included(f, p, sp)) {
            pop_records_free(p);
            continue;
        }
        if (sp != NULL) {
            sp->hw = p->error == KERR_NONE ? p->high_watermark : -1;
            sp->lso = p->error == KERR_NONE ? p->lso : -1;
            sp->log_start = p->error == KERR_NONE ? p->log_start : -1;
        }
        order[n++] = p;
    }
    qsort(order, n, sizeof(*order), pop_cmp);
    int32_t nt = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nt == 0 || strcmp(order[i]->topic, order[i - 1]->topic) != 0) {
            sp_kafka_fetch_response_fetchable_topic_response_init(&topics[nt]);
            topics[nt].topic = (struct sp_kstr){order[i]->topic, (int32_t)strlen(order[i]->topic)};
            topics[nt].partitions = &parts[i];
            topics[nt].partitions_count = 0;
            nt++;
        }
        fill_partition(r, order[i], &parts[i]);
        topics[nt - 1].partitions_count++;
        if (parts[i].records.len >= (int32_t)REQ_GAP_MIN_BYTES) {
            /* sent from the read's buffer, not copied into the answer */
            r->gap_count++;
            r->gap_bytes += (size_t)parts[i].records.len;
        }
    }
    resp->responses = topics;
    resp->responses_count = nt;
    fetch_session_release(r);
    req_finish(r);
}

static void fetch_again(struct sp_timer *t, void *ctx)
{
    (void)t;
    fetch_start_reads(ctx);
}

/* Every read of this round is back: answer, or wait for more data. */
static void fetch_check(struct req *r)
{
    struct fetch *f = r->api;
    const struct sp_kafka_fetch_request *q = r->f.body;
    bool errors = false;
    f->bytes = 0;
    for (uint32_t i = 0; i < f->pop_count; i++) {
        errors |= f->pops[i]->error != KERR_NONE;
        f->bytes += f->pops[i]->records_len;
    }
    uint64_t now = sp_now_ns();
    if (!r->conn->closing && !errors && f->bytes < (uint64_t)SP_MAX(q->min_bytes, 1) &&
        now < f->deadline_ns) {
        /* Not enough yet: look again shortly, until the wait is over. */
        for (uint32_t i = 0; i < f->pop_count; i++) {
            pop_records_free(f->pops[i]);
        }
        sp_timer_init(&r->timer, fetch_again, r);
        sp_shard_timer_arm(r->conn->bs->shard, &r->timer,
                           SP_MIN(now + FETCH_POLL_NS, f->deadline_ns));
        return;
    }
    fetch_finish(r);
}

static void fetch_pop_done(struct pop *p)
{
    if (p->req->pending == 0)
        fetch_check(p->req);
}

static void fetch_start_reads(struct req *r)
{
    struct fetch *f = r->api;
    r->pending++;
    for (uint32_t i = 0; i < f->pop_count; i++) {
        if (!f->started[i])
            continue;
        f->pops[i]->error = KERR_NONE;
        pop_start(f->pops[i]);
    }
    if (--r->pending == 0) /* every read answered at once */
        fetch_check(r);
}

/* Adds the read of (topic, partition) from `offset` to the fetch. */
static bool fetch_add(struct req *r, const struct topic_set *set, struct sp_kstr topic,
                      int32_t partition, int64_t offset, int32_t partition_max_bytes,
                      int64_t *budget, struct spart *sp)
{
    struct fetch *f = r->api;
    const struct sp_kafka_fetch_request *q = r->f.body;
    struct pop *p = req_alloc(r, sizeof(*p));
    char *name = req_strdup(r, topic);
    if (p == NULL || name == NULL)
        return false;
    const struct topic *t = topic.len > 0 ? topic_find(set, topic.ptr, (size_t)topic.len) : NULL;
    /* The request's max_bytes shared out in request order; past it, a
     * partition still returns its first batch (as Kafka does). */
    uint32_t max =
        (uint32_t)SP_MAX(SP_MIN((int64_t)SP_MAX(partition_max_bytes, 1), *budget), (int64_t)1);
    *budget -= max;
    *p = (struct pop){.kind = POP_READ,
                      .req = r,
                      .topic = t != NULL ? t->name : name,
                      .partition = partition,
                      .offset = offset,
                      .max_bytes = max,
                      .isolation = q->isolation_level == 1 ? 1 : 0,
                      .slice = r->conn->tls == NULL && q->isolation_level != 1 &&
                               max >= FETCH_SLICE_MIN_BYTES,
                      .done = fetch_pop_done};
    bool ok = t != NULL && partition >= 0 && partition < t->partitions;
    if (!ok)
        p->error = KERR_UNKNOWN_TOPIC_OR_PARTITION;
    f->started[f->pop_count] = ok;
    f->sparts[f->pop_count] = sp;
    f->pops[f->pop_count++] = p;
    return true;
}

/* Answers the fetch at once with a top-level error and no partitions. */
static void fetch_refuse(struct req *r, int16_t err)
{
    struct sp_kafka_fetch_response *resp = r->resp;
    resp->error_code = err;
    resp->session_id = 0;
    resp->responses_count = 0;
    req_finish(r);
}

static void fetch(struct req *r)
{
    const struct sp_kafka_fetch_request *q = r->f.body;
    struct bshard *bs = r->conn->bs;
    struct sp_kafka_fetch_response *resp = req_alloc(r, sizeof(*resp));
    struct fetch *f = req_alloc(r, sizeof(*f));
    if (resp == NULL || f == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_fetch_response_init(resp);
    resp->error_code = KERR_NONE;
    resp->session_id = 0;
    resp->responses_count = 0;
    resp->node_endpoints_count = 0;
    r->resp = resp;
    r->api = f;
    r->api_free = fetch_free;
    f->deadline_ns = sp_now_ns() + (uint64_t)SP_MAX(q->max_wait_ms, 0) * 1000000ull;

    /* The session, if any (Fetch v7 and up). */
    struct sessions *ss = r->version >= 7 ? sessions_of(bs) : NULL;
    int32_t sid = r->version >= 7 ? q->session_id : 0;
    int32_t epoch = r->version >= 7 ? q->session_epoch : -1;
    if (r->version >= 7 && ss == NULL) {
        fetch_refuse(r, KERR_UNKNOWN_SERVER_ERROR);
        return;
    }
    struct fsession *s = NULL;
    if (ss != NULL && epoch == -1 && sid != 0) {
        session_remove(ss, sid); /* the final fetch of a session: a full one */
    } else if (ss != NULL && epoch == 0) {
        if (sid != 0)
            session_remove(ss, sid);
        s = session_new(bs, ss); /* a full fetch that starts a session */
    } else if (ss != NULL && epoch > 0) {
        s = session_find(ss, sid);
        if (s == NULL) {
            fetch_refuse(r, KERR_SESSION_NOT_FOUND);
            return;
        }
        if (epoch != s->epoch || s->busy) { /* busy: one fetch of a session at a time */
            fetch_refuse(r, KERR_INVALID_SESSION_EPOCH);
            return;
        }
        f->incremental = true;
    }
    if (s != NULL) {
        s->used_ns = sp_now_ns();
        s->epoch = s->epoch == INT32_MAX ? 1 : s->epoch + 1;
        resp->session_id = s->id;
        f->session = s;
        s->busy = true;
    }

    /* The request's partitions into the session; its forgotten ones out. */
    int32_t nt = SP_MAX(q->topics_count, 0);
    uint32_t total = 0;
    for (int32_t i = 0; i < nt; i++)
        total += (uint32_t)SP_MAX(q->topics[i].partitions_count, 0);
    if (s != NULL) {
        for (int32_t i = 0; i < SP_MAX(q->forgotten_topics_data_count, 0); i++) {
            const struct sp_kafka_fetch_request_forgotten_topic *ft = &q->forgotten_topics_data[i];
            for (int32_t k = 0; k < SP_MAX(ft->partitions_count, 0); k++)
                session_forget(s, ft->topic, ft->partitions[k]);
        }
        for (int32_t i = 0; i < nt; i++) {
            const struct sp_kafka_fetch_request_fetch_topic *ft = &q->topics[i];
            for (int32_t k = 0; k < SP_MAX(ft->partitions_count, 0); k++) {
                const struct sp_kafka_fetch_request_fetch_partition *fp = &ft->partitions[k];
                if (!session_set(s, ft->topic, fp->partition, fp->fetch_offset,
                                 fp->partition_max_bytes)) {
                    fetch_session_release(r);
                    session_remove(ss, s->id);
                    fetch_refuse(r, KERR_UNKNOWN_SERVER_ERROR);
                    return;
                }
            }
        }
        total = s->count;
    }
    size_t n = total ? total : 1;
    f->pops = req_alloc(r, n * sizeof(*f->pops));
    f->sparts = req_alloc(r, n * sizeof(*f->sparts));
    f->started = req_alloc(r, n * sizeof(*f->started));
    if (f->pops == NULL || f->sparts == NULL || f->started == NULL) {
        fetch_session_release(r);
        r->resp = NULL;
        req_finish(r);
        return;
    }
    const struct topic_set *set = topics_now(bs->b);
    int64_t budget = q->max_bytes > 0 ? q->max_bytes : INT32_MAX;
    bool ok = true;
    if (s != NULL) {
        for (uint32_t i = 0; ok && i < s->count; i++) {
            struct spart *sp = &s->parts[i];
            ok = fetch_add(r, set, (struct sp_kstr){sp->topic, (int32_t)strlen(sp->topic)},
                           sp->partition, sp->fetch_offset, sp->max_bytes, &budget, sp);
        }
    } else {
        for (int32_t i = 0; ok && i < nt; i++) {
            const struct sp_kafka_fetch_request_fetch_topic *ft = &q->topics[i];
            for (int32_t k = 0; ok && k < SP_MAX(ft->partitions_count, 0); k++) {
                const struct sp_kafka_fetch_request_fetch_partition *fp = &ft->partitions[k];
                ok = fetch_add(r, set, ft->topic, fp->partition, fp->fetch_offset,
                               fp->partition_max_bytes, &budget, NULL);
            }
        }
    }
    if (!ok) {
        fetch_session_release(r);
        r->resp = NULL;
        req_finish(r);
        return;
    }
    fetch_start_reads(r);
}

/* Fetch from 4 (v2 batches, isolation level) to 12 (13 moves to topic ids). */
const struct api_entry fetch_apis[] = {
    {1, 4, 12, fetch},
    {-1, 0, 0, NULL},
};
