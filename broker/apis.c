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
static void list_offsets(struct req *r);
static void metadata(struct req *r);
static void api_versions(struct req *r);
static void create_topics(struct req *r);

const struct api_entry core_apis[] = {
    {0, 0, 9, produce},       {2, 1, 7, list_offsets},   {3, 0, 12, metadata},
    {18, 0, 3, api_versions}, {19, 0, 7, create_topics}, {-1, 0, 0, NULL},
};

/* Every table of handlers (broker_int.h). */
static const struct api_entry *const tables[] = {core_apis, group_apis, admin_apis, producer_apis,
                                                 txn_apis,  sasl_apis,  fetch_apis};

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

/* A topic the request named, and where it was first named. */
struct named {
    struct sp_kstr name;
    int32_t index;
};

static int named_index_cmp(const void *a, const void *b)
{
    int32_t x = ((const struct named *)a)->index, y = ((const struct named *)b)->index;
    return (x > y) - (x < y);
}

static int named_cmp(const void *pa, const void *pb)
{
    const struct named *a = pa, *b = pb;
    int32_t la = SP_MAX(a->name.len, 0), lb = SP_MAX(b->name.len, 0);
    int c = memcmp(a->name.ptr != NULL ? a->name.ptr : "", b->name.ptr != NULL ? b->name.ptr : "",
                   (size_t)SP_MIN(la, lb));
    if (c == 0)
        c = (la > lb) - (la < lb);
    if (c == 0)
        c = (a->name.len < 0) - (b->name.len < 0);
    return c != 0 ? c : (a->index > b->index) - (a->index < b->index);
}

/* An answer for a topic that is not described: its error, no partitions. */
static void metadata_error(struct req *r, struct sp_kstr name, int16_t error,
                           struct sp_kafka_metadata_response_metadata_response_topic *out)
{
    sp_kafka_metadata_response_metadata_response_topic_init(out);
    out->error_code = error;
    out->name = name.len >= 0 ? kstr(req_strdup(r, name)) : SP_KSTR_NULL;
    out->partitions_count = 0;
    out->topic_authorized_operations = INT32_MIN;
}

/*
 * Metadata. A topic named more than once is answered once (at its first
 * place); missing topics it may create are created together (one registry
 * snapshot); an answer describes at most metadata_partitions_max
 * partitions, and topics past that get POLICY_VIOLATION with no
 * partitions, so that no request makes an unbounded answer.
 */
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
    int32_t asked = all ? 0 : SP_MAX(q->topics_count, 0);
    /* The names asked for, once each, in the order first asked. */
    struct named *names = req_alloc(r, (size_t)(asked > 0 ? asked : 1) * sizeof(*names));
    struct sp_kstr *missing = req_alloc(r, (size_t)(asked > 0 ? asked : 1) * sizeof(*missing));
    int16_t *errs = req_alloc(r, (size_t)(asked > 0 ? asked : 1) * sizeof(*errs));
    int32_t *missing_at = req_alloc(r, (size_t)(asked > 0 ? asked : 1) * sizeof(*missing_at));
    int16_t *created = req_alloc(r, (size_t)(asked > 0 ? asked : 1) * sizeof(*created));
    if (names == NULL || missing == NULL || errs == NULL || missing_at == NULL || created == NULL)
        goto out;
    for (int32_t i = 0; i < asked; i++)
        names[i] = (struct named){q->topics[i].name, i};
    if (asked > 1)
        qsort(names, (size_t)asked, sizeof(*names), named_cmp);
    int32_t distinct = 0;
    for (int32_t i = 0; i < asked; i++) {
        if (distinct > 0 && names[distinct - 1].name.len == names[i].name.len &&
            (names[i].name.len <= 0 || memcmp(names[distinct - 1].name.ptr, names[i].name.ptr,
                                              (size_t)names[i].name.len) == 0))
            continue; /* sorted by index within equal names: the first is kept */
        names[distinct++] = names[i];
    }
    if (distinct > 1) /* back to the order asked (n log n: a request may name 100,000s) */
        qsort(names, (size_t)distinct, sizeof(*names), named_index_cmp);
    /* Missing ones created together. */
    int32_t nmissing = 0;
    for (int32_t i = 0; create && i < distinct; i++) {
        struct sp_kstr name = names[i].name;
        if (name.len > 0 && topic_find(set, name.ptr, (size_t)name.len) == NULL) {
            missing_at[nmissing] = i;
            missing[nmissing++] = name;
        }
    }
    if (nmissing > 0) {
        topics_create_batch(b, missing, nmissing, errs);
        set = topics_now(b);
    }
    for (int32_t k = 0; k < nmissing; k++) /* created[i]: how names[i]'s creation went */
        created[missing_at[k]] = errs[k];
    int32_t n = all ? (int32_t)set->count : distinct;
    struct sp_kafka_metadata_response_metadata_response_topic *topics =
        req_alloc(r, (size_t)(n > 0 ? n : 1) * sizeof(*topics));
    if (topics == NULL)
        goto out;
    uint64_t budget = b->config.metadata_partitions_max;
    for (int32_t i = 0; i < n; i++) {
        const struct topic *t = NULL;
        struct sp_kstr name = all ? kstr(set->topics[i].name) : names[i].name;
        if (all)
            t = &set->topics[i];
        else if (name.len >= 0)
            t = topic_find(set, name.ptr, (size_t)name.len);
        if (t == NULL) {
            /* Not created: past the caps (INVALID_PARTITIONS, POLICY_VIOLATION), or missing. */
            int16_t why = !all && created[i] != KERR_NONE && created[i] != KERR_TOPIC_ALREADY_EXISTS
                              ? created[i]
                              : KERR_UNKNOWN_TOPIC_OR_PARTITION;
            metadata_error(r, name, name.len > 0 ? why : KERR_INVALID_TOPIC, &topics[i]);
            continue;
        }
        if ((uint64_t)t->partitions > budget) {
            metadata_error(r, name, KERR_POLICY_VIOLATION, &topics[i]);
            continue;
        }
        budget -= (uint64_t)t->partitions;
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

/* A new topic's configs: INVALID_CONFIG (with msg) for an unknown name, a bad
 * value or a null one. */
static int16_t topic_configs_of(const struct sp_kafka_create_topics_request_creatable_topic *t,
                                struct topic_config *out, char *msg, size_t msg_size)
{
    memset(out, 0, sizeof(*out));
    for (int32_t i = 0; i < t->configs_count; i++) {
        struct sp_kstr name = t->configs[i].name, value = t->configs[i].value;
        int key = name.len > 0 ? tcfg_key(name.ptr, (size_t)name.len) : -1;
        if (key < 0) {
            snprintf(msg, msg_size, "unknown or unsupported topic config '%.*s'",
                     (int)SP_MIN(SP_MAX(name.len, 0), 64), name.ptr != NULL ? name.ptr : "");
            return KERR_INVALID_CONFIG;
        }
        if (value.len < 0) { /* null: the broker's value */
            out->set &= ~(1u << key);
            continue;
        }
        int16_t err = tcfg_parse(key, value.ptr, (size_t)value.len, &out->v[key], msg, msg_size);
        if (err != KERR_NONE)
            return err;
        out->set |= 1u << key;
    }
    return KERR_NONE;
}

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
        struct topic_config config;
        if (t->replication_factor != -1 && t->replication_factor != 1) {
            err = KERR_INVALID_REPLICATION_FACTOR;
            snprintf(msg, sizeof(msg), "a single-node broker keeps one replica");
        } else if (t->assignments_count > 0) {
            err = KERR_INVALID_REQUEST;
            snprintf(msg, sizeof(msg), "manual replica assignment is not supported");
        } else if ((err = topic_configs_of(t, &config, msg, sizeof(msg))) != KERR_NONE) {
            /* msg says which config and why */
        } else if (t->name.len <= 0) {
            err = KERR_INVALID_TOPIC;
        } else if (q->validate_only) {
            const struct topic *exists =
                topic_find(topics_now(b), t->name.ptr, (size_t)t->name.len);
            err = exists != NULL ? KERR_TOPIC_ALREADY_EXISTS : KERR_NONE;
        } else {
            const struct topic *made = NULL;
            err = topic_create_with(b, t->name.ptr, (size_t)t->name.len, t->num_partitions, &config,
                                    &made);
            if (err == KERR_NONE && made != NULL)
                memcpy(o->topic_id.bytes, made->id, 16);
            if (err == KERR_POLICY_VIOLATION ||
                (err == KERR_INVALID_PARTITIONS &&
                 (t->num_partitions == -1 ||
                  (t->num_partitions > 0 && t->num_partitions <= 100000))))
                snprintf(msg, sizeof(msg),
                         "the broker holds at most %" PRIu32 " topics and %" PRIu32
                         " partitions in all",
                         b->config.max_topics, b->config.max_partitions);
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

/* ---- ListOffsets ---- */

/*
 * ListOffsets runs on the partition's owner as a POP_CALL: -1 (latest) and
 * -2 (earliest) from the log's offsets, a timestamp (or -3, the largest
 * timestamp) with a look-up of the first record at or past it. The answer
 * is p->result_offset and, for look-ups, the record's timestamp in
 * p->base_offset (-1 and -1 when no record matches, as Kafka answers).
 */
static void list_call(struct pop *p);

static void list_time_done(void *ctx, int err, int64_t offset, int64_t timestamp)
{
    struct pop *p = ctx;
    p->error = err < 0 ? KERR_KAFKA_STORAGE_ERROR : KERR_NONE;
    p->result_offset = err < 0 ? -1 : offset;
    p->base_offset = err < 0 ? -1 : timestamp;
    pop_reply(p);
}

static void list_retry(struct sp_timer *t, void *ctx)
{
    (void)t;
    list_call(ctx);
}

static void list_call(struct pop *p)
{
    struct sp_broker *b = p->req->conn->bs->b;
    int err = 0;
    struct part *pt = part_here(b, p->topic, p->partition, &err);
    struct sp_plog *log = pt != NULL ? pt->log : NULL;
    p->base_offset = -1;
    p->result_offset = -1;
    p->error = KERR_NONE;
    if (log == NULL) {
        p->error = err == -ENOENT ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_KAFKA_STORAGE_ERROR;
        pop_reply(p);
        return;
    }
    if (p->offset == -1 || p->offset == -2) { /* latest (stable for read_committed), earliest */
        int64_t hw = sp_plog_stable_end(log);
        p->result_offset = p->offset == -2     ? sp_plog_start_offset(log)
                           : p->isolation == 1 ? producers_lso(pt, hw)
                                               : hw;
        pop_reply(p);
        return;
    }
    int rc = sp_plog_lookup_time(log, p->offset, list_time_done, p);
    if (rc == 0) {
        part_read_started(b, log);
    } else if (rc == -EAGAIN) { /* look-ups in flight at their limit: again in a moment */
        sp_timer_init(&p->retry, list_retry, p);
        sp_shard_timer_arm(sp_shard_current(), &p->retry, sp_now_ns() + 1000000);
    } else {
        p->error = KERR_INVALID_REQUEST;
        pop_reply(p);
    }
}

static void list_pop_done(struct pop *p)
{
    struct req *r = p->req;
    struct sp_kafka_list_offsets_response_list_offsets_partition_response *o = p->slot;
    o->error_code = p->error;
    o->offset = p->error == KERR_NONE ? p->result_offset : -1;
    o->timestamp = p->error == KERR_NONE ? p->base_offset : -1;
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
            if (lp->timestamp < -2 && !(lp->timestamp == -3 && r->version >= 7)) {
                o->error_code = lp->timestamp == -3 ? 35 /* UNSUPPORTED_VERSION */
                                                    : KERR_INVALID_REQUEST;
                continue;
            }
            struct pop *p = req_alloc(r, sizeof(*p));
            if (p == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                continue;
            }
            *p = (struct pop){.req = r,
                              .topic = t->name,
                              .partition = lp->partition_index,
                              .offset = lp->timestamp,
                              .isolation = r->version >= 2 && q->isolation_level == 1 ? 1 : 0,
                              .call = list_call,
                              .done = list_pop_done,
                              .slot = o};
            pop_call(p, partition_owner(b, t->name, lp->partition_index));
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
