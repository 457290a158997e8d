/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker's API handlers: each turns a decoded request into a response
 * body in the request's memory, starting partition operations on their
 * owner shards where it needs the logs, and ends with req_finish().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_int.h"
#include "sp_log.h"
#include "sp_record.h"

/* ---- Versions served ---- */

/*
 * Produce reaches down to 0, as librdkafka wants to see before it
 * compresses; versions below 3 carry legacy message sets, answered with
 * UNSUPPORTED_FOR_MESSAGE_FORMAT (the log keeps v2 batches only). Fetch
 * from 4 (v2 batches, isolation level) to 12 (topic names: 13 moves to
 * topic ids).
 */
static void produce(struct req *r);
static void fetch(struct req *r);
static void list_offsets(struct req *r);
static void metadata(struct req *r);
static void api_versions(struct req *r);
static void create_topics(struct req *r);

const struct api_entry core_apis[] = {
    {0, 0, 9, produce},   {1, 4, 12, fetch},        {2, 1, 7, list_offsets},
    {3, 0, 12, metadata}, {18, 0, 3, api_versions}, {19, 0, 7, create_topics},
    {-1, 0, 0, NULL},
};

/* Every table of handlers (broker_int.h). */
static const struct api_entry *const tables[] = {core_apis, group_apis, admin_apis, producer_apis};

/* The entry for `key`, NULL when none. */
static const struct api_entry *entry_of(int16_t key)
{
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        for (const struct api_entry *e = tables[t]; e->handle != NULL; e++) {
            if (e->key == key)
                return e;
        }
    }
    return NULL;
}

static const struct sp_kafka_api *codec_api(int16_t key)
{
    for (unsigned i = 0; i < sp_kafka_api_count; i++) {
        if (sp_kafka_apis[i].key == key)
            return &sp_kafka_apis[i];
    }
    return NULL;
}

/* The range served for `key`, within what the codec knows; false if none. */
static bool served_range(int16_t key, int16_t *min, int16_t *max)
{
    const struct api_entry *e = entry_of(key);
    const struct sp_kafka_api *api = codec_api(key);
    if (e == NULL || api == NULL)
        return false;
    *min = SP_MAX(e->min, api->version_min);
    *max = SP_MIN(e->max, api->version_max);
    return *min <= *max;
}

bool api_served(int16_t key, int16_t version)
{
    int16_t min, max;
    return served_range(key, &min, &max) && version >= min && version <= max;
}

static struct sp_kstr kstr(const char *s)
{
    return (struct sp_kstr){s, s != NULL ? (int32_t)strlen(s) : -1};
}

/* ---- ApiVersions ---- */

static void *api_versions_body(struct req *r, int16_t error)
{
    struct sp_kafka_api_versions_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_api_versions_response_api_version *keys =
        req_alloc(r, (SP_KAFKA_API_KEY_MAX + 1) * sizeof(*keys));
    if (resp == NULL || keys == NULL)
        return NULL;
    sp_kafka_api_versions_response_init(resp);
    resp->error_code = error;
    int32_t n = 0;
    for (int16_t key = 0; key <= SP_KAFKA_API_KEY_MAX; key++) {
        int16_t min, max;
        if (!served_range(key, &min, &max))
            continue;
        keys[n++] = (struct sp_kafka_api_versions_response_api_version){
            .api_key = key, .min_version = min, .max_version = max};
    }
    resp->api_keys = keys;
    resp->api_keys_count = n;
    resp->supported_features_count = 0;
    resp->finalized_features_count = 0;
    resp->finalized_features_epoch = -1;
    return resp;
}

void api_versions_unsupported(struct req *r)
{
    /* Answered in v0, which every client reads, with the range served. */
    r->version = 0;
    r->resp = api_versions_body(r, 35);
    req_finish(r);
}

static void api_versions(struct req *r)
{
    r->resp = api_versions_body(r, KERR_NONE);
    req_finish(r);
}

/* ---- Metadata ---- */

static bool metadata_topic(struct req *r, const struct topic *t,
                           struct sp_kafka_metadata_response_metadata_response_topic *out)
{
    struct sp_broker *b = r->conn->bs->b;
    sp_kafka_metadata_response_metadata_response_topic_init(out);
    out->error_code = KERR_NONE;
    out->name = kstr(t->name);
    memcpy(out->topic_id.bytes, t->id, 16);
    out->is_internal = false;
    out->topic_authorized_operations = INT32_MIN;
    struct sp_kafka_metadata_response_metadata_response_partition *parts =
        req_alloc(r, (size_t)t->partitions * sizeof(*parts));
    int32_t *node = req_alloc(r, sizeof(*node));
    if (parts == NULL || node == NULL)
        return false;
    *node = b->config.node_id;
    for (int32_t p = 0; p < t->partitions; p++) {
        sp_kafka_metadata_response_metadata_response_partition_init(&parts[p]);
        parts[p].error_code = KERR_NONE;
        parts[p].partition_index = p;
        parts[p].leader_id = b->config.node_id;
        parts[p].leader_epoch = 0;
        parts[p].replica_nodes = node;
        parts[p].replica_nodes_count = 1;
        parts[p].isr_nodes = node;
        parts[p].isr_nodes_count = 1;
        parts[p].offline_replicas_count = 0;
    }
    out->partitions = parts;
    out->partitions_count = t->partitions;
    return true;
}

static void metadata(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_metadata_request *q = r->f.body;
    struct sp_kafka_metadata_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_metadata_response_metadata_response_broker *broker =
        req_alloc(r, sizeof(*broker));
    if (resp == NULL || broker == NULL)
        goto out;
    sp_kafka_metadata_response_init(resp);
    sp_kafka_metadata_response_metadata_response_broker_init(broker);
    broker->node_id = b->config.node_id;
    broker->host = kstr(b->advertised_host);
    broker->port = b->port;
    broker->rack = SP_KSTR_NULL;
    resp->brokers = broker;
    resp->brokers_count = 1;
    resp->cluster_id = SP_KSTR("spate");
    resp->controller_id = b->config.node_id;
    resp->cluster_authorized_operations = INT32_MIN;

    bool all = q->topics_count < 0 || (r->version == 0 && q->topics_count == 0);
    bool create = b->config.auto_create_topics && (r->version < 4 || q->allow_auto_topic_creation);
    const struct topic_set *set = topics_now(b);
    int32_t n = all ? (int32_t)set->count : q->topics_count;
    struct sp_kafka_metadata_response_metadata_response_topic *topics =
        req_alloc(r, (size_t)(n > 0 ? n : 1) * sizeof(*topics));
    if (topics == NULL)
        goto out;
    for (int32_t i = 0; i < n; i++) {
        const struct topic *t = NULL;
        if (all) {
            t = &set->topics[i];
        } else {
            struct sp_kstr name = q->topics[i].name;
            if (name.len >= 0) {
                t = topic_find(topics_now(b), name.ptr, (size_t)name.len);
                if (t == NULL && create)
                    (void)topic_create(b, name.ptr, (size_t)name.len, -1, &t);
            }
            if (t == NULL) {
                sp_kafka_metadata_response_metadata_response_topic_init(&topics[i]);
                topics[i].error_code =
                    name.len > 0 ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_INVALID_TOPIC;
                topics[i].name = name.len >= 0 ? kstr(req_strdup(r, name)) : SP_KSTR_NULL;
                topics[i].partitions_count = 0;
                topics[i].topic_authorized_operations = INT32_MIN;
                continue;
            }
        }
        if (!metadata_topic(r, t, &topics[i]))
            goto out;
    }
    resp->topics = topics;
    resp->topics_count = n;
    r->resp = resp;
out:
    req_finish(r);
}

/* ---- CreateTopics ---- */

static void create_topics(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_create_topics_request *q = r->f.body;
    struct sp_kafka_create_topics_response *resp = req_alloc(r, sizeof(*resp));
    int32_t n = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_create_topics_response_creatable_topic_result *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_create_topics_response_init(resp);
    for (int32_t i = 0; i < n; i++) {
        const struct sp_kafka_create_topics_request_creatable_topic *t = &q->topics[i];
        struct sp_kafka_create_topics_response_creatable_topic_result *o = &res[i];
        sp_kafka_create_topics_response_creatable_topic_result_init(o);
        o->name = kstr(req_strdup(r, t->name));
        o->num_partitions =
            t->num_partitions == -1 ? b->config.default_partitions : t->num_partitions;
        o->replication_factor = 1;
        o->configs_count = 0;
        char msg[160] = "";
        int16_t err = KERR_NONE;
        if (t->replication_factor != -1 && t->replication_factor != 1) {
            err = KERR_INVALID_REPLICATION_FACTOR;
            snprintf(msg, sizeof(msg), "a single-node broker keeps one replica");
        } else if (t->assignments_count > 0) {
            err = KERR_INVALID_REQUEST;
            snprintf(msg, sizeof(msg), "manual replica assignment is not supported");
        } else if (t->configs_count > 0) {
            err = 40; /* INVALID_CONFIG */
            snprintf(msg, sizeof(msg), "topic configs are not supported yet ('%.*s')",
                     (int)SP_MIN(t->configs[0].name.len, 64), t->configs[0].name.ptr);
        } else if (t->name.len <= 0) {
            err = KERR_INVALID_TOPIC;
        } else if (q->validate_only) {
            const struct topic *exists =
                topic_find(topics_now(b), t->name.ptr, (size_t)t->name.len);
            err = exists != NULL ? KERR_TOPIC_ALREADY_EXISTS : KERR_NONE;
        } else {
            const struct topic *made = NULL;
            err = topic_create(b, t->name.ptr, (size_t)t->name.len, t->num_partitions, &made);
            if (err == KERR_NONE && made != NULL)
                memcpy(o->topic_id.bytes, made->id, 16);
        }
        o->error_code = err;
        if (msg[0] != '\0')
            o->error_message = kstr(req_strdup(r, kstr(msg)));
    }
    resp->topics = res;
    resp->topics_count = n;
    r->resp = resp;
    req_finish(r);
}

/* ---- Produce ---- */

/* The batches of a produce: whole, v2, CRC good. A Kafka error code. */
static int16_t produce_check(struct sp_kbytes records, char *msg, size_t msg_size)
{
    if (records.len <= 0) {
        snprintf(msg, msg_size, "no records");
        return KERR_CORRUPT_MESSAGE;
    }
    struct sp_record_set set;
    sp_record_set_init(&set, records.ptr, (size_t)records.len);
    struct sp_record_batch batch;
    int rc, batches = 0;
    while ((rc = sp_record_set_next(&set, &batch)) == 1) {
        if (batch.magic != SP_RECORD_MAGIC_V2) {
            snprintf(msg, msg_size, "message format v%d: the log keeps v2 batches only",
                     batch.magic);
            return KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT;
        }
        if (batch.record_count <= 0 || batch.last_offset_delta != batch.record_count - 1) {
            snprintf(msg, msg_size, "batch %d: %d records, last offset delta %d", batches,
                     batch.record_count, batch.last_offset_delta);
            return KERR_CORRUPT_MESSAGE;
        }
        batches++;
    }
    if (rc < 0 || set.partial_bytes > 0 || batches == 0) {
        snprintf(msg, msg_size, "%s",
                 rc < 0 ? "a batch fails its checks (length, CRC)" : "a truncated batch");
        return KERR_CORRUPT_MESSAGE;
    }
    return KERR_NONE;
}

static void produce_pop_done(struct pop *p)
{
    struct req *r = p->req;
    struct sp_kafka_produce_response_partition_produce_response *o = p->slot;
    o->error_code = p->error;
    o->base_offset = p->error == KERR_NONE ? p->base_offset : -1;
    o->log_start_offset = p->log_start;
    if (r->pending == 0)
        req_finish(r);
}

static void produce(struct req *r)
{
    const struct sp_kafka_produce_request *q = r->f.body;
    struct sp_broker *b = r->conn->bs->b;
    struct sp_kafka_produce_response *resp = req_alloc(r, sizeof(*resp));
    int32_t nt = q->topic_data_count > 0 ? q->topic_data_count : 0;
    struct sp_kafka_produce_response_topic_produce_response *topics =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*topics));
    if (resp == NULL || topics == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_produce_response_init(resp);
    resp->responses = topics;
    resp->responses_count = nt;
    resp->node_endpoints_count = 0;
    r->resp = resp;
    r->no_response = q->acks == 0;
    r->pending++; /* held until every partition is started */
    const struct topic_set *set = topics_now(b);
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_produce_request_topic_produce_data *td = &q->topic_data[i];
        int32_t np = td->partition_data_count > 0 ? td->partition_data_count : 0;
        struct sp_kafka_produce_response_partition_produce_response *parts =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*parts));
        char *name = req_strdup(r, td->name);
        if (parts == NULL || name == NULL)
            break;
        topics[i].name = kstr(name);
        topics[i].partition_responses = parts;
        topics[i].partition_responses_count = np;
        const struct topic *t =
            td->name.len > 0 ? topic_find(set, td->name.ptr, (size_t)td->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_produce_request_partition_produce_data *pd =
                &td->partition_data[k];
            struct sp_kafka_produce_response_partition_produce_response *o = &parts[k];
            sp_kafka_produce_response_partition_produce_response_init(o);
            o->index = pd->index;
            o->base_offset = -1;
            o->log_append_time_ms = -1;
            o->log_start_offset = -1;
            o->record_errors_count = 0;
            if (t == NULL || pd->index < 0 || pd->index >= t->partitions) {
                o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            char msg[160];
            int16_t err = produce_check(pd->records, msg, sizeof(msg));
            if (err != KERR_NONE) {
                sp_warn("broker: produce to %s-%" PRId32 " from %s refused: %s", name, pd->index,
                        r->conn->peer, msg);
                o->error_code = err;
                o->error_message = kstr(req_strdup(r, kstr(msg)));
                continue;
            }
            struct pop *p = req_alloc(r, sizeof(*p));
            if (p == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                continue;
            }
            *p = (struct pop){.kind = POP_APPEND,
                              .req = r,
                              .topic = t->name,
                              .partition = pd->index,
                              .data = pd->records.ptr,
                              .len = (uint32_t)pd->records.len,
                              .done = produce_pop_done,
                              .slot = o};
            pop_start(p);
        }
    }
    if (--r->pending == 0)
        req_finish(r);
}

/* ---- Fetch ---- */

#define FETCH_POLL_NS 5000000ull /* how often a waiting fetch looks again */

struct fetch {
    uint64_t deadline_ns;
    struct pop **pops;
    uint32_t pop_count;
    uint64_t bytes;
};

static void fetch_start_reads(struct req *r);

static void fetch_finish(struct req *r)
{
    struct fetch *f = r->api;
    for (uint32_t i = 0; i < f->pop_count; i++) {
        struct pop *p = f->pops[i];
        struct sp_kafka_fetch_response_partition_data *o = p->slot;
        o->error_code = p->error;
        o->high_watermark = p->high_watermark;
        o->last_stable_offset = p->high_watermark;
        o->log_start_offset = p->log_start;
        o->records = (struct sp_kbytes){p->records, (int32_t)p->records_len};
        /* Freed with the request, after the response is encoded. */
        if (p->records != NULL && !req_adopt(r, p->records)) {
            free(p->records);
            o->records = (struct sp_kbytes){NULL, 0};
            o->error_code = KERR_UNKNOWN_SERVER_ERROR;
        }
        p->records = NULL;
    }
    req_finish(r);
}

static void fetch_again(struct sp_timer *t, void *ctx)
{
    (void)t;
    struct req *r = ctx;
    fetch_start_reads(r);
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
            free(f->pops[i]->records);
            f->pops[i]->records = NULL;
            f->pops[i]->records_len = 0;
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
        struct pop *p = f->pops[i];
        p->error = KERR_NONE;
        pop_start(p);
    }
    if (--r->pending == 0) /* every read answered at once */
        fetch_check(r);
}

static void fetch(struct req *r)
{
    const struct sp_kafka_fetch_request *q = r->f.body;
    struct sp_broker *b = r->conn->bs->b;
    struct sp_kafka_fetch_response *resp = req_alloc(r, sizeof(*resp));
    struct fetch *f = req_alloc(r, sizeof(*f));
    int32_t nt = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_fetch_response_fetchable_topic_response *topics =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*topics));
    uint32_t total = 0;
    for (int32_t i = 0; i < nt; i++)
        total += (uint32_t)SP_MAX(q->topics[i].partitions_count, 0);
    if (resp == NULL || f == NULL || topics == NULL ||
        (f->pops = req_alloc(r, (total ? total : 1) * sizeof(*f->pops))) == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_fetch_response_init(resp);
    resp->error_code = KERR_NONE;
    resp->session_id = 0; /* sessionless: every fetch is a full one */
    resp->responses = topics;
    resp->responses_count = nt;
    resp->node_endpoints_count = 0;
    r->resp = resp;
    r->api = f;
    f->deadline_ns = sp_now_ns() + (uint64_t)SP_MAX(q->max_wait_ms, 0) * 1000000ull;
    const struct topic_set *set = topics_now(b);
    int64_t budget = q->max_bytes > 0 ? q->max_bytes : INT32_MAX;
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_fetch_request_fetch_topic *ft = &q->topics[i];
        int32_t np = SP_MAX(ft->partitions_count, 0);
        struct sp_kafka_fetch_response_partition_data *parts =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*parts));
        char *name = req_strdup(r, ft->topic);
        if (parts == NULL || name == NULL) {
            req_finish(r);
            return;
        }
        topics[i].topic = kstr(name);
        topics[i].topic_id = ft->topic_id;
        topics[i].partitions = parts;
        topics[i].partitions_count = np;
        const struct topic *t =
            ft->topic.len > 0 ? topic_find(set, ft->topic.ptr, (size_t)ft->topic.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_fetch_request_fetch_partition *fp = &ft->partitions[k];
            struct sp_kafka_fetch_response_partition_data *o = &parts[k];
            sp_kafka_fetch_response_partition_data_init(o);
            o->partition_index = fp->partition;
            o->high_watermark = -1;
            o->last_stable_offset = -1;
            o->log_start_offset = -1;
            o->aborted_transactions_count = -1;
            o->preferred_read_replica = -1;
            o->records = (struct sp_kbytes){NULL, 0};
            if (t == NULL || fp->partition < 0 || fp->partition >= t->partitions) {
                o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            struct pop *p = req_alloc(r, sizeof(*p));
            if (p == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                continue;
            }
            /* The request's max_bytes shared out in request order; past it,
             * a partition still returns its first batch (as Kafka does). */
            uint32_t max = (uint32_t)SP_MAX(
                SP_MIN((int64_t)SP_MAX(fp->partition_max_bytes, 1), budget), (int64_t)1);
            budget -= max;
            *p = (struct pop){.kind = POP_READ,
                              .req = r,
                              .topic = t->name,
                              .partition = fp->partition,
                              .offset = fp->fetch_offset,
                              .max_bytes = max,
                              .done = fetch_pop_done,
                              .slot = o};
            f->pops[f->pop_count++] = p;
        }
    }
    if (f->pop_count == 0) {
        req_finish(r);
        return;
    }
    fetch_start_reads(r);
}

/* ---- ListOffsets ---- */

static void list_pop_done(struct pop *p)
{
    struct req *r = p->req;
    struct sp_kafka_list_offsets_response_list_offsets_partition_response *o = p->slot;
    o->error_code = p->error;
    o->offset = p->error == KERR_NONE ? p->result_offset : -1;
    o->timestamp = -1;
    if (r->pending == 0)
        req_finish(r);
}

static void list_offsets(struct req *r)
{
    const struct sp_kafka_list_offsets_request *q = r->f.body;
    struct sp_broker *b = r->conn->bs->b;
    struct sp_kafka_list_offsets_response *resp = req_alloc(r, sizeof(*resp));
    int32_t nt = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_list_offsets_response_list_offsets_topic_response *topics =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*topics));
    if (resp == NULL || topics == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_list_offsets_response_init(resp);
    resp->topics = topics;
    resp->topics_count = nt;
    r->resp = resp;
    r->pending++;
    const struct topic_set *set = topics_now(b);
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_list_offsets_request_list_offsets_topic *lt = &q->topics[i];
        int32_t np = SP_MAX(lt->partitions_count, 0);
        struct sp_kafka_list_offsets_response_list_offsets_partition_response *parts =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*parts));
        char *name = req_strdup(r, lt->name);
        if (parts == NULL || name == NULL)
            break;
        topics[i].name = kstr(name);
        topics[i].partitions = parts;
        topics[i].partitions_count = np;
        const struct topic *t =
            lt->name.len > 0 ? topic_find(set, lt->name.ptr, (size_t)lt->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_list_offsets_request_list_offsets_partition *lp =
                &lt->partitions[k];
            struct sp_kafka_list_offsets_response_list_offsets_partition_response *o = &parts[k];
            sp_kafka_list_offsets_response_list_offsets_partition_response_init(o);
            o->partition_index = lp->partition_index;
            o->timestamp = -1;
            o->offset = -1;
            if (r->version >= 4) /* not ignorable: absent below 4 */
                o->leader_epoch = 0;
            if (t == NULL || lp->partition_index < 0 || lp->partition_index >= t->partitions) {
                o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            struct pop *p = req_alloc(r, sizeof(*p));
            if (p == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                continue;
            }
            *p = (struct pop){.kind = POP_LIST,
                              .req = r,
                              .topic = t->name,
                              .partition = lp->partition_index,
                              .offset = lp->timestamp,
                              .done = list_pop_done,
                              .slot = o};
            pop_start(p);
        }
    }
    if (--r->pending == 0)
        req_finish(r);
}

/* ---- Dispatch ---- */

void api_handle(struct bshard *bs, struct req *r)
{
    (void)bs;
    const struct api_entry *e = entry_of(r->key);
    SP_ASSERT(e != NULL); /* api_served() said so */
    e->handle(r);
}
