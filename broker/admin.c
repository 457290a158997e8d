/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Topic and cluster administration: DeleteTopics, CreatePartitions,
 * DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster,
 * DeleteRecords; and the topic configs themselves (tcfg_*: names, parsing,
 * what they change in a partition log's settings).
 *
 * Registry changes go through broker.c (topic_delete, topic_add_partitions);
 * work on a partition's log runs on its owner shard as a POP_CALL (closing
 * and removing a deleted topic's logs, moving a log's start for
 * DeleteRecords), and the request is answered once every one is back.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_int.h"
#include "sp_log.h"

static void delete_topics(struct req *r);
static void create_partitions(struct req *r);
static void describe_configs(struct req *r);
static void describe_cluster(struct req *r);
static void delete_records(struct req *r);
static void alter_configs(struct req *r);
static void incremental_alter_configs(struct req *r);

const struct api_entry admin_apis[] = {
    {20, 0, 6, delete_topics},     {21, 0, 2, delete_records},
    {32, 0, 4, describe_configs},  {33, 0, 2, alter_configs},
    {37, 0, 3, create_partitions}, {44, 0, 1, incremental_alter_configs},
    {60, 0, 1, describe_cluster},  {-1, 0, 0, NULL},
};

/* ---- Topic configs ---- */

static const char *const tcfg_names[TCFG_COUNT] = {
    [TCFG_CLEANUP_POLICY] = "cleanup.policy",
    [TCFG_RETENTION_MS] = "retention.ms",
    [TCFG_RETENTION_BYTES] = "retention.bytes",
    [TCFG_SEGMENT_BYTES] = "segment.bytes",
    [TCFG_MAX_MESSAGE_BYTES] = "max.message.bytes",
    [TCFG_DELETE_RETENTION_MS] = "delete.retention.ms",
    [TCFG_MIN_COMPACTION_LAG_MS] = "min.compaction.lag.ms",
    [TCFG_MIN_CLEANABLE_DIRTY_RATIO] = "min.cleanable.dirty.ratio",
    [TCFG_MESSAGE_TIMESTAMP_TYPE] = "message.timestamp.type",
};

const char *tcfg_name(int key)
{
    SP_ASSERT(key >= 0 && key < TCFG_COUNT);
    return tcfg_names[key];
}

int tcfg_key(const char *name, size_t len)
{
    for (int k = 0; k < TCFG_COUNT; k++) {
        if (strlen(tcfg_names[k]) == len && memcmp(tcfg_names[k], name, len) == 0)
            return k;
    }
    return -1;
}

/* A whole decimal integer in [min, max]; false when not. */
static bool parse_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int16_t tcfg_parse(int key, const char *value, size_t len, int64_t *out, char *msg, size_t msg_size)
{
    SP_ASSERT(key >= 0 && key < TCFG_COUNT);
    bool ok = false;
    const char *want = "";
    char buf[32];
    switch (key) {
    case TCFG_CLEANUP_POLICY: {
        want = "delete, compact or compact,delete";
        int64_t bits = 0;
        ok = len > 0;
        for (size_t at = 0; ok && at < len;) {
            size_t n = 0;
            while (at + n < len && value[at + n] != ',')
                n++;
            if (n == 6 && memcmp(value + at, "delete", 6) == 0)
                bits |= SP_PLOG_CLEANUP_DELETE;
            else if (n == 7 && memcmp(value + at, "compact", 7) == 0)
                bits |= SP_PLOG_CLEANUP_COMPACT;
            else
                ok = false;
            at += n + 1;
        }
        *out = bits;
        break;
    }
    case TCFG_RETENTION_MS:
    case TCFG_RETENTION_BYTES:
        want = "-1 (none) or a count";
        ok = parse_i64(value, len, -1, INT64_MAX, out);
        break;
    case TCFG_SEGMENT_BYTES:
        want = "100 to 2147483647";
        ok = parse_i64(value, len, 100, INT32_MAX, out);
        break;
    case TCFG_MAX_MESSAGE_BYTES:
        want = "0 to 2147483647";
        ok = parse_i64(value, len, 0, INT32_MAX, out);
        break;
    case TCFG_DELETE_RETENTION_MS:
    case TCFG_MIN_COMPACTION_LAG_MS:
        want = "0 or more ms";
        ok = parse_i64(value, len, 0, INT64_MAX, out);
        break;
    case TCFG_MIN_CLEANABLE_DIRTY_RATIO: {
        want = "a ratio from 0 to 1";
        if (len > 0 && len < sizeof(buf)) {
            memcpy(buf, value, len);
            buf[len] = '\0';
            char *end = NULL;
            double d = strtod(buf, &end);
            ok = *end == '\0' && d >= 0 && d <= 1;
            *out = (int64_t)(d * 1e6 + 0.5);
        }
        break;
    }
    case TCFG_MESSAGE_TIMESTAMP_TYPE:
        want = "CreateTime (LogAppendTime is not supported)";
        ok = len == 10 && memcmp(value, "CreateTime", 10) == 0;
        *out = 0;
        break;
    }
    if (ok)
        return KERR_NONE;
    snprintf(msg, msg_size, "%s '%.*s': %s", tcfg_names[key], (int)SP_MIN(len, 64), value, want);
    return KERR_INVALID_CONFIG;
}

void tcfg_format(int key, int64_t v, char *out, size_t out_size)
{
    switch (key) {
    case TCFG_CLEANUP_POLICY:
        snprintf(out, out_size, "%s",
                 v == (SP_PLOG_CLEANUP_DELETE | SP_PLOG_CLEANUP_COMPACT) ? "compact,delete"
                 : v == SP_PLOG_CLEANUP_COMPACT                          ? "compact"
                                                                         : "delete");
        break;
    case TCFG_MIN_CLEANABLE_DIRTY_RATIO:
        snprintf(out, out_size, "%g", (double)v / 1e6);
        break;
    case TCFG_MESSAGE_TIMESTAMP_TYPE:
        snprintf(out, out_size, "CreateTime");
        break;
    default:
        snprintf(out, out_size, "%" PRId64, v);
        break;
    }
}

void tcfg_apply(const struct topic_config *c, struct sp_plog_config *log)
{
    for (int k = 0; k < TCFG_COUNT; k++) {
        if (!(c->set & (1u << k)))
            continue;
        int64_t v = c->v[k];
        switch (k) {
        case TCFG_CLEANUP_POLICY:
            log->cleanup = (unsigned)v;
            break;
        case TCFG_RETENTION_MS:
            log->retention_ms = v;
            break;
        case TCFG_RETENTION_BYTES:
            log->retention_bytes = v;
            break;
        case TCFG_SEGMENT_BYTES:
            log->segment_bytes = (uint64_t)v;
            break;
        case TCFG_MAX_MESSAGE_BYTES:
            log->max_message_bytes = (uint32_t)v;
            break;
        case TCFG_DELETE_RETENTION_MS:
            log->delete_retention_ms = v;
            break;
        case TCFG_MIN_COMPACTION_LAG_MS:
            log->min_compaction_lag_ms = v;
            break;
        case TCFG_MIN_CLEANABLE_DIRTY_RATIO:
            log->min_cleanable_dirty_ratio = (double)v / 1e6;
            break;
        default:
            break;
        }
    }
}

enum {
    KERR_INVALID_REPLICA_ASSIGNMENT = 39,
    KERR_UNKNOWN_TOPIC_ID = 100,
};

static struct sp_kstr kstr(const char *s)
{
    return (struct sp_kstr){s, s != NULL ? (int32_t)strlen(s) : -1};
}

/* A formatted string in the request's memory (SP_KSTR_NULL when out of memory). */
static struct sp_kstr kfmt(struct req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static struct sp_kstr kfmt(struct req *r, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    char *s = req_alloc(r, n + 1);
    if (s == NULL)
        return SP_KSTR_NULL;
    memcpy(s, buf, n + 1);
    return (struct sp_kstr){s, (int32_t)n};
}

/* ---- DeleteTopics ---- */

/* A deleted partition's drop, and the topic result it reports to. */
struct drop {
    struct pop pop;
    struct sp_kafka_delete_topics_response_deletable_topic_result *o;
};

static void drop_done(struct pop *p)
{
    struct drop *d = SP_CONTAINER_OF(p, struct drop, pop);
    struct req *r = p->req;
    if (p->error != KERR_NONE && d->o->error_code == KERR_NONE)
        d->o->error_code = p->error;
    if (r->pending == 0)
        req_finish(r);
}

/* The topic whose id is `id` in the current snapshot, NULL when none. */
static const struct topic *topic_by_id(struct sp_broker *b, const uint8_t *id)
{
    const struct topic_set *set = topics_now(b);
    for (uint32_t i = 0; i < set->count; i++) {
        if (memcmp(set->topics[i].id, id, 16) == 0)
            return &set->topics[i];
    }
    return NULL;
}

static void delete_topics(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_delete_topics_request *q = r->f.body;
    bool by_state = r->version >= 6;
    int32_t n = by_state ? q->topics_count : q->topic_names_count;
    if (n < 0)
        n = 0;
    struct sp_kafka_delete_topics_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_delete_topics_response_deletable_topic_result *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_delete_topics_response_init(resp);
    resp->responses = res;
    resp->responses_count = n;
    r->resp = resp;
    r->pending++; /* held until every partition is started */
    for (int32_t i = 0; i < n; i++) {
        struct sp_kafka_delete_topics_response_deletable_topic_result *o = &res[i];
        sp_kafka_delete_topics_response_deletable_topic_result_init(o);
        struct sp_kstr name = by_state ? q->topics[i].name : q->topic_names[i];
        o->error_message = SP_KSTR_NULL;
        if (by_state && name.len < 0) {
            /* v6: by id. The answer names it too. */
            const uint8_t *id = q->topics[i].topic_id.bytes;
            memcpy(o->topic_id.bytes, id, 16);
            const struct topic *t = topic_by_id(b, id);
            if (t == NULL) {
                o->name = SP_KSTR_NULL;
                o->error_code = KERR_UNKNOWN_TOPIC_ID;
                continue;
            }
            name = kstr(t->name);
        }
        char *copy = req_strdup(r, name);
        if (copy == NULL) {
            o->error_code = KERR_UNKNOWN_SERVER_ERROR;
            continue;
        }
        o->name = (struct sp_kstr){copy, name.len > 0 ? name.len : 0};
        struct topic gone;
        o->error_code = name.len > 0 ? topic_delete(b, name.ptr, (size_t)name.len, &gone)
                                     : KERR_UNKNOWN_TOPIC_OR_PARTITION;
        if (o->error_code != KERR_NONE)
            continue;
        if (by_state)
            memcpy(o->topic_id.bytes, gone.id, 16);
        for (int32_t k = 0; k < gone.partitions; k++) {
            struct drop *d = req_alloc(r, sizeof(*d));
            if (d == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                break;
            }
            d->o = o;
            d->pop = (struct pop){.req = r,
                                  .topic = gone.name, /* kept by the old snapshots */
                                  .partition = k,
                                  .call = part_drop_call,
                                  .done = drop_done};
            pop_call(&d->pop, partition_owner(b, gone.name, k));
        }
    }
    if (--r->pending == 0)
        req_finish(r);
}

/* ---- CreatePartitions ---- */

static void create_partitions(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_create_partitions_request *q = r->f.body;
    int32_t n = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_create_partitions_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_create_partitions_response_create_partitions_topic_result *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_create_partitions_response_init(resp);
    resp->results = res;
    resp->results_count = n;
    for (int32_t i = 0; i < n; i++) {
        const struct sp_kafka_create_partitions_request_create_partitions_topic *t = &q->topics[i];
        struct sp_kafka_create_partitions_response_create_partitions_topic_result *o = &res[i];
        sp_kafka_create_partitions_response_create_partitions_topic_result_init(o);
        char *name = req_strdup(r, t->name);
        o->name = (struct sp_kstr){name != NULL ? name : "", t->name.len > 0 ? t->name.len : 0};
        o->error_message = SP_KSTR_NULL;
        bool assignment_ok = true;
        for (int32_t a = 0; a < t->assignments_count && assignment_ok; a++) {
            const struct sp_kafka_create_partitions_request_create_partitions_assignment *as =
                &t->assignments[a];
            if (as->broker_ids_count != 1 || as->broker_ids[0] != b->config.node_id)
                assignment_ok = false;
        }
        if (t->name.len <= 0) {
            o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            continue;
        }
        int32_t was = 0;
        o->error_code =
            topic_add_partitions(b, t->name.ptr, (size_t)t->name.len, t->count, true, &was);
        if (o->error_code == KERR_NONE &&
            (!assignment_ok ||
             (t->assignments_count >= 0 && t->assignments_count != t->count - was))) {
            o->error_code = KERR_INVALID_REPLICA_ASSIGNMENT;
            o->error_message = kfmt(r,
                                    "one assignment per new partition, each the single "
                                    "replica %" PRId32,
                                    b->config.node_id);
        } else if (o->error_code == KERR_NONE && !q->validate_only) {
            o->error_code =
                topic_add_partitions(b, t->name.ptr, (size_t)t->name.len, t->count, false, &was);
        }
        if (o->error_code == KERR_INVALID_PARTITIONS)
            o->error_message = kfmt(
                r, "the topic has %" PRId32 " partitions: %" PRId32 " is not more", was, t->count);
    }
    r->resp = resp;
    req_finish(r);
}

/* ---- DescribeConfigs ---- */

enum {
    RES_TOPIC = 2,
    RES_BROKER = 4,
    SRC_DYNAMIC_TOPIC = 1,
    SRC_STATIC_BROKER = 4,
    SRC_DEFAULT = 5,
    TYPE_BOOLEAN = 1,
    TYPE_STRING = 2,
    TYPE_INT = 3,
    TYPE_LONG = 5,
    TYPE_DOUBLE = 6,
    TYPE_LIST = 7,
};

struct config_list {
    struct req *r;
    const struct sp_kafka_describe_configs_request_describe_configs_resource *q;
    struct sp_kafka_describe_configs_response_describe_configs_resource_result *items;
    int32_t count, cap;
    bool topic; /* a topic's configs */
    bool own;   /* the next one added is the topic's own value */
};

/* Adds one config, when the request asks for it (all, or by name). */
static void config_add(struct config_list *l, const char *name, struct sp_kstr value,
                       bool is_default, int8_t type)
{
    if (l->q->configuration_keys_count >= 0) {
        bool asked = false;
        for (int32_t i = 0; i < l->q->configuration_keys_count && !asked; i++) {
            struct sp_kstr k = l->q->configuration_keys[i];
            asked = k.len == (int32_t)strlen(name) && memcmp(k.ptr, name, (size_t)k.len) == 0;
        }
        if (!asked)
            return;
    }
    if (l->count == l->cap || value.ptr == NULL)
        return;
    struct sp_kafka_describe_configs_response_describe_configs_resource_result *o =
        &l->items[l->count++];
    int16_t v = l->r->version;
    sp_kafka_describe_configs_response_describe_configs_resource_result_init(o);
    o->name = kstr(name);
    o->value = value;
    o->read_only = !l->topic || tcfg_key(name, strlen(name)) < 0; /* AlterConfigs can set */
    o->is_sensitive = false;
    o->documentation = SP_KSTR_NULL;
    if (v == 0)
        o->is_default = is_default && !l->own;
    if (v >= 1)
        o->config_source = l->own       ? SRC_DYNAMIC_TOPIC
                           : is_default ? SRC_DEFAULT
                                        : SRC_STATIC_BROKER;
    if (v >= 3)
        o->config_type = type;
}

static void config_i64(struct config_list *l, const char *name, int64_t value, int64_t dflt,
                       int8_t type)
{
    config_add(l, name, kfmt(l->r, "%" PRId64, value), value == dflt, type);
}

#define CONFIGS_MAX 20

/* A topic's config `key`: its own value (DYNAMIC_TOPIC_CONFIG) when it has one. */
static bool topic_own(struct config_list *l, const struct topic *t, int key)
{
    if (!(t->config.set & (1u << key)))
        return false;
    char v[64];
    tcfg_format(key, t->config.v[key], v, sizeof(v));
    static const int8_t types[TCFG_COUNT] = {
        [TCFG_CLEANUP_POLICY] = TYPE_LIST,           [TCFG_RETENTION_MS] = TYPE_LONG,
        [TCFG_RETENTION_BYTES] = TYPE_LONG,          [TCFG_SEGMENT_BYTES] = TYPE_INT,
        [TCFG_MAX_MESSAGE_BYTES] = TYPE_INT,         [TCFG_DELETE_RETENTION_MS] = TYPE_LONG,
        [TCFG_MIN_COMPACTION_LAG_MS] = TYPE_LONG,    [TCFG_MIN_CLEANABLE_DIRTY_RATIO] = TYPE_DOUBLE,
        [TCFG_MESSAGE_TIMESTAMP_TYPE] = TYPE_STRING,
    };
    l->own = true;
    config_add(l, tcfg_name(key), kfmt(l->r, "%s", v), false, types[key]);
    l->own = false;
    return true;
}

static void topic_configs(struct sp_broker *b, const struct topic *t, struct config_list *l)
{
    const struct sp_plog_config *c = &b->config.log;
    struct sp_plog_config d;
    sp_plog_config_default(&d, NULL);
    l->topic = true;
    if (!topic_own(l, t, TCFG_CLEANUP_POLICY))
        config_add(l, "cleanup.policy", kstr("delete"), true, TYPE_LIST);
    if (!topic_own(l, t, TCFG_RETENTION_MS))
        config_i64(l, "retention.ms", c->retention_ms, d.retention_ms, TYPE_LONG);
    if (!topic_own(l, t, TCFG_RETENTION_BYTES))
        config_i64(l, "retention.bytes", c->retention_bytes, d.retention_bytes, TYPE_LONG);
    if (!topic_own(l, t, TCFG_SEGMENT_BYTES))
        config_i64(l, "segment.bytes", (int64_t)c->segment_bytes, (int64_t)d.segment_bytes,
                   TYPE_INT);
    config_i64(l, "index.interval.bytes", c->index_interval_bytes, d.index_interval_bytes,
               TYPE_INT);
    /* The flush policy, as Kafka's two settings say it. */
    bool flush_default = c->flush == d.flush && (c->flush != SP_PLOG_FLUSH_INTERVAL ||
                                                 c->flush_interval_ms == d.flush_interval_ms);
    int64_t messages = c->flush == SP_PLOG_FLUSH_EVERY ? 1 : INT64_MAX;
    int64_t ms = c->flush == SP_PLOG_FLUSH_EVERY      ? 0
                 : c->flush == SP_PLOG_FLUSH_INTERVAL ? (int64_t)c->flush_interval_ms
                                                      : INT64_MAX;
    config_add(l, "flush.messages", kfmt(l->r, "%" PRId64, messages), flush_default, TYPE_LONG);
    config_add(l, "flush.ms", kfmt(l->r, "%" PRId64, ms), flush_default, TYPE_LONG);
    /* A batch is refused past the request size or a segment's. */
    int64_t max_message = SP_MIN((int64_t)b->config.max_request_bytes, (int64_t)c->segment_bytes);
    if (!topic_own(l, t, TCFG_MAX_MESSAGE_BYTES))
        config_add(l, "max.message.bytes", kfmt(l->r, "%" PRId64, max_message),
                   b->config.max_request_bytes == SP_KAFKA_FRAME_BYTES_MAX_DEFAULT &&
                       c->segment_bytes == d.segment_bytes,
                   TYPE_INT);
    if (!topic_own(l, t, TCFG_DELETE_RETENTION_MS))
        config_i64(l, "delete.retention.ms", c->delete_retention_ms, d.delete_retention_ms,
                   TYPE_LONG);
    if (!topic_own(l, t, TCFG_MIN_COMPACTION_LAG_MS))
        config_i64(l, "min.compaction.lag.ms", c->min_compaction_lag_ms, d.min_compaction_lag_ms,
                   TYPE_LONG);
    if (!topic_own(l, t, TCFG_MIN_CLEANABLE_DIRTY_RATIO))
        config_add(l, "min.cleanable.dirty.ratio", kfmt(l->r, "%g", c->min_cleanable_dirty_ratio),
                   c->min_cleanable_dirty_ratio == d.min_cleanable_dirty_ratio, TYPE_DOUBLE);
    if (!topic_own(l, t, TCFG_MESSAGE_TIMESTAMP_TYPE))
        config_add(l, "message.timestamp.type", kstr("CreateTime"), true, TYPE_STRING);
    config_add(l, "min.insync.replicas", kstr("1"), true, TYPE_INT);
}

static void broker_configs(struct sp_broker *b, struct config_list *l)
{
    config_i64(l, "node.id", b->config.node_id, 0, TYPE_INT);
    config_i64(l, "broker.id", b->config.node_id, 0, TYPE_INT);
    config_add(l, "auto.create.topics.enable",
               kstr(b->config.auto_create_topics ? "true" : "false"), b->config.auto_create_topics,
               TYPE_BOOLEAN);
    config_i64(l, "num.partitions", b->config.default_partitions, 1, TYPE_INT);
    config_add(l, "log.dirs", kstr(b->data_dir), false, TYPE_STRING);
    config_i64(l, "log.segment.bytes", (int64_t)b->config.log.segment_bytes,
               (int64_t)SP_PLOG_SEGMENT_BYTES_DEFAULT, TYPE_INT);
    config_i64(l, "log.retention.ms", b->config.log.retention_ms, -1, TYPE_LONG);
    config_i64(l, "log.retention.bytes", b->config.log.retention_bytes, -1, TYPE_LONG);
    config_i64(l, "socket.request.max.bytes", b->config.max_request_bytes,
               SP_KAFKA_FRAME_BYTES_MAX_DEFAULT, TYPE_INT);
    config_i64(l, "default.replication.factor", 1, 1, TYPE_INT);
    config_i64(l, "offsets.topic.replication.factor", 1, 1, TYPE_INT);
}

static void describe_configs(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_describe_configs_request *q = r->f.body;
    int32_t n = q->resources_count > 0 ? q->resources_count : 0;
    struct sp_kafka_describe_configs_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_describe_configs_response_describe_configs_result *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_describe_configs_response_init(resp);
    resp->results = res;
    resp->results_count = n;
    for (int32_t i = 0; i < n; i++) {
        const struct sp_kafka_describe_configs_request_describe_configs_resource *rq =
            &q->resources[i];
        struct sp_kafka_describe_configs_response_describe_configs_result *o = &res[i];
        sp_kafka_describe_configs_response_describe_configs_result_init(o);
        o->resource_type = rq->resource_type;
        char *name = req_strdup(r, rq->resource_name);
        o->resource_name =
            (struct sp_kstr){name != NULL ? name : "", name != NULL ? (int32_t)strlen(name) : 0};
        o->error_message = SP_KSTR_NULL;
        o->configs_count = 0;
        struct config_list l = {.r = r, .q = rq, .cap = CONFIGS_MAX};
        l.items = req_alloc(r, CONFIGS_MAX * sizeof(*l.items));
        if (l.items == NULL || name == NULL) {
            o->error_code = KERR_UNKNOWN_SERVER_ERROR;
            continue;
        }
        if (rq->resource_type == RES_TOPIC) {
            const struct topic *t = rq->resource_name.len <= 0
                                        ? NULL
                                        : topic_find(topics_now(b), rq->resource_name.ptr,
                                                     (size_t)rq->resource_name.len);
            if (t == NULL) {
                o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                o->error_message = kfmt(r, "no topic '%.*s'", 200, name);
                continue;
            }
            topic_configs(b, t, &l);
        } else if (rq->resource_type == RES_BROKER) {
            char id[16];
            snprintf(id, sizeof(id), "%" PRId32, b->config.node_id);
            if (strcmp(name, id) != 0 && name[0] != '\0') {
                o->error_code = KERR_INVALID_REQUEST;
                o->error_message = kfmt(r, "this is broker %s, not '%.*s'", id, 64, name);
                continue;
            }
            broker_configs(b, &l);
        } else {
            o->error_code = KERR_INVALID_REQUEST;
            o->error_message =
                kfmt(r, "resource type %d: only topics (2) and brokers (4) have configs",
                     rq->resource_type);
            continue;
        }
        o->error_code = KERR_NONE;
        o->configs = l.items;
        o->configs_count = l.count;
    }
    r->resp = resp;
    req_finish(r);
}

/* ---- DescribeCluster ---- */

static void describe_cluster(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    struct sp_kafka_describe_cluster_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_describe_cluster_response_describe_cluster_broker *broker =
        req_alloc(r, sizeof(*broker));
    if (resp == NULL || broker == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_describe_cluster_response_init(resp);
    sp_kafka_describe_cluster_response_describe_cluster_broker_init(broker);
    broker->broker_id = b->config.node_id;
    broker->host = kstr(b->advertised_host);
    broker->port = b->port;
    broker->rack = SP_KSTR_NULL;
    resp->error_code = KERR_NONE;
    resp->error_message = SP_KSTR_NULL;
    resp->cluster_id = SP_KSTR("spate");
    resp->controller_id = b->config.node_id;
    resp->brokers = broker;
    resp->brokers_count = 1;
    r->resp = resp;
    req_finish(r);
}

/* ---- DeleteRecords ---- */

/* On the partition's owner: moves the log start. */
static void delete_records_call(struct pop *p)
{
    int err = 0;
    struct sp_plog *log = part_log_here(p->req->conn->bs->b, p->topic, p->partition, &err);
    p->log_start = -1;
    if (log == NULL) {
        p->error = err == -ENOENT ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_KAFKA_STORAGE_ERROR;
        pop_reply(p);
        return;
    }
    int64_t offset = p->offset == -1 ? sp_plog_stable_end(log) : p->offset;
    int rc = offset < 0 ? -ERANGE : sp_plog_delete_before(log, offset);
    if (rc == -ERANGE) {
        p->error = KERR_OFFSET_OUT_OF_RANGE;
    } else if (rc < 0) {
        sp_error("broker: DeleteRecords on %s-%" PRId32 ": %s", p->topic, p->partition,
                 strerror(-rc));
        p->error = KERR_KAFKA_STORAGE_ERROR;
    } else {
        p->error = KERR_NONE;
    }
    p->log_start = sp_plog_start_offset(log);
    pop_reply(p);
}

static void delete_records_done(struct pop *p)
{
    struct req *r = p->req;
    struct sp_kafka_delete_records_response_delete_records_partition_result *o = p->slot;
    o->error_code = p->error;
    o->low_watermark = p->error == KERR_NONE ? p->log_start : -1;
    if (r->pending == 0)
        req_finish(r);
}

static void delete_records(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_delete_records_request *q = r->f.body;
    int32_t nt = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_delete_records_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_delete_records_response_delete_records_topic_result *topics =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*topics));
    if (resp == NULL || topics == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_delete_records_response_init(resp);
    resp->topics = topics;
    resp->topics_count = nt;
    r->resp = resp;
    r->pending++; /* held until every partition is started */
    const struct topic_set *set = topics_now(b);
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_delete_records_request_delete_records_topic *td = &q->topics[i];
        int32_t np = td->partitions_count > 0 ? td->partitions_count : 0;
        struct sp_kafka_delete_records_response_delete_records_partition_result *parts =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*parts));
        char *name = req_strdup(r, td->name);
        sp_kafka_delete_records_response_delete_records_topic_result_init(&topics[i]);
        if (parts == NULL || name == NULL) {
            topics[i].name = SP_KSTR("");
            topics[i].partitions_count = 0;
            continue;
        }
        topics[i].name = (struct sp_kstr){name, td->name.len > 0 ? td->name.len : 0};
        topics[i].partitions = parts;
        topics[i].partitions_count = np;
        const struct topic *t =
            td->name.len > 0 ? topic_find(set, td->name.ptr, (size_t)td->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_delete_records_request_delete_records_partition *pd =
                &td->partitions[k];
            struct sp_kafka_delete_records_response_delete_records_partition_result *o = &parts[k];
            sp_kafka_delete_records_response_delete_records_partition_result_init(o);
            o->partition_index = pd->partition_index;
            o->low_watermark = -1;
            if (t == NULL || pd->partition_index < 0 || pd->partition_index >= t->partitions) {
                o->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (pd->offset < -1) {
                o->error_code = KERR_OFFSET_OUT_OF_RANGE;
                continue;
            }
            struct pop *p = req_alloc(r, sizeof(*p));
            if (p == NULL) {
                o->error_code = KERR_UNKNOWN_SERVER_ERROR;
                continue;
            }
            *p = (struct pop){.req = r,
                              .topic = t->name,
                              .partition = pd->partition_index,
                              .offset = pd->offset,
                              .call = delete_records_call,
                              .done = delete_records_done,
                              .slot = o};
            pop_call(p, partition_owner(b, t->name, pd->partition_index));
        }
    }
    if (--r->pending == 0)
        req_finish(r);
}

/* ---- AlterConfigs and IncrementalAlterConfigs ---- */

/* One config change of either request, as the handlers read it. */
struct config_op {
    struct sp_kstr name, value;
    int8_t op; /* IncrementalAlterConfigs: 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT */
};

enum { OP_SET = 0, OP_DELETE = 1 };

/* A partition's log takes its topic's current configs, on its owner. */
static void apply_config_call(struct pop *p)
{
    struct sp_broker *b = p->req->conn->bs->b;
    int err = 0;
    struct sp_plog *log = part_log_here(b, p->topic, p->partition, &err);
    const struct topic *t = topic_find(topics_now(b), p->topic, strlen(p->topic));
    p->error = KERR_NONE;
    if (log != NULL && t != NULL) {
        struct sp_plog_config c;
        topic_log_config(b, t, &c);
        if (sp_plog_set_config(log, &c) < 0)
            p->error = KERR_INVALID_CONFIG;
    } else if (err != -ENOENT) {
        p->error = KERR_KAFKA_STORAGE_ERROR;
    }
    pop_reply(p);
}

/* Where a resource's answer goes: its error code and message. */
struct alter_slot {
    int16_t *error_code;
    struct sp_kstr *error_message;
};

static void apply_config_done(struct pop *p)
{
    struct req *r = p->req;
    struct alter_slot *s = p->slot;
    if (p->error != KERR_NONE && *s->error_code == KERR_NONE) {
        *s->error_code = p->error;
        *s->error_message = kfmt(r, "partition %" PRId32 " did not take the configs", p->partition);
    }
    if (r->pending == 0)
        req_finish(r);
}

/*
 * Alters one resource: checks every change, then (unless validate_only)
 * records the topic's new configs and sends them to its open logs.
 * `replace`: AlterConfigs, whose set of configs replaces the topic's own.
 */
static void alter_resource(struct req *r, int8_t type, struct sp_kstr name,
                           const struct config_op *ops, int32_t n, bool replace, bool validate_only,
                           struct alter_slot *slot)
{
    struct sp_broker *b = r->conn->bs->b;
    *slot->error_code = KERR_NONE;
    *slot->error_message = SP_KSTR_NULL;
    if (type != RES_TOPIC) {
        *slot->error_code = KERR_INVALID_REQUEST;
        *slot->error_message =
            kfmt(r,
                 "resource type %d: only topic configs can change (broker configs are "
                 "the command line's)",
                 type);
        return;
    }
    const struct topic *t =
        name.len > 0 ? topic_find(topics_now(b), name.ptr, (size_t)name.len) : NULL;
    if (t == NULL) {
        *slot->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
        *slot->error_message = kfmt(r, "no topic '%.*s'", (int)SP_MIN(SP_MAX(name.len, 0), 200),
                                    name.ptr != NULL ? name.ptr : "");
        return;
    }
    struct topic_config c = replace ? (struct topic_config){0} : t->config;
    for (int32_t i = 0; i < n; i++) {
        const struct config_op *op = &ops[i];
        int key = op->name.len > 0 ? tcfg_key(op->name.ptr, (size_t)op->name.len) : -1;
        char msg[200];
        if (key < 0) {
            *slot->error_code = KERR_INVALID_CONFIG;
            *slot->error_message =
                kfmt(r, "unknown or unsupported topic config '%.*s'",
                     (int)SP_MIN(SP_MAX(op->name.len, 0), 64), op->name.ptr ? op->name.ptr : "");
            return;
        }
        if (op->op == OP_DELETE) {
            c.set &= ~(1u << key);
            continue;
        }
        if (op->op != OP_SET) {
            *slot->error_code = KERR_INVALID_CONFIG;
            *slot->error_message = kfmt(r, "%s: only SET and DELETE are supported", tcfg_name(key));
            return;
        }
        int16_t e = op->value.len >= 0 ? tcfg_parse(key, op->value.ptr, (size_t)op->value.len,
                                                    &c.v[key], msg, sizeof(msg))
                                       : KERR_INVALID_CONFIG;
        if (e != KERR_NONE) {
            *slot->error_code = e;
            *slot->error_message =
                kfmt(r, "%s", op->value.len >= 0 ? msg : "a config value may not be null");
            return;
        }
        c.set |= 1u << key;
    }
    if (validate_only)
        return;
    *slot->error_code = topic_set_config(b, name.ptr, (size_t)name.len, &c);
    if (*slot->error_code != KERR_NONE)
        return;
    /* The logs: each partition's owner applies the topic's configs now in the registry. */
    t = topic_find(topics_now(b), name.ptr, (size_t)name.len);
    for (int32_t k = 0; t != NULL && k < t->partitions; k++) {
        struct pop *p = req_alloc(r, sizeof(*p));
        if (p == NULL) {
            *slot->error_code = KERR_UNKNOWN_SERVER_ERROR;
            break;
        }
        *p = (struct pop){.req = r,
                          .topic = t->name,
                          .partition = k,
                          .call = apply_config_call,
                          .done = apply_config_done,
                          .slot = slot};
        pop_call(p, partition_owner(b, t->name, k));
    }
}

static void incremental_alter_configs(struct req *r)
{
    const struct sp_kafka_incremental_alter_configs_request *q = r->f.body;
    int32_t n = q->resources_count > 0 ? q->resources_count : 0;
    struct sp_kafka_incremental_alter_configs_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_incremental_alter_configs_response_alter_configs_resource_response *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_incremental_alter_configs_response_init(resp);
    resp->responses = res;
    resp->responses_count = n;
    r->resp = resp;
    r->pending++; /* held until every partition is started */
    for (int32_t i = 0; i < n; i++) {
        const struct sp_kafka_incremental_alter_configs_request_alter_configs_resource *rq =
            &q->resources[i];
        sp_kafka_incremental_alter_configs_response_alter_configs_resource_response_init(&res[i]);
        res[i].resource_type = rq->resource_type;
        char *name = req_strdup(r, rq->resource_name);
        res[i].resource_name = kstr(name != NULL ? name : "");
        int32_t nc = rq->configs_count > 0 ? rq->configs_count : 0;
        struct config_op *ops = req_alloc(r, (size_t)(nc ? nc : 1) * sizeof(*ops));
        struct alter_slot *slot = req_alloc(r, sizeof(*slot));
        if (ops == NULL || slot == NULL || name == NULL) {
            res[i].error_code = KERR_UNKNOWN_SERVER_ERROR;
            continue;
        }
        for (int32_t k = 0; k < nc; k++)
            ops[k] = (struct config_op){rq->configs[k].name, rq->configs[k].value,
                                        rq->configs[k].config_operation};
        *slot = (struct alter_slot){&res[i].error_code, &res[i].error_message};
        alter_resource(r, rq->resource_type, rq->resource_name, ops, nc, false, q->validate_only,
                       slot);
    }
    if (--r->pending == 0)
        req_finish(r);
}

static void alter_configs(struct req *r)
{
    const struct sp_kafka_alter_configs_request *q = r->f.body;
    int32_t n = q->resources_count > 0 ? q->resources_count : 0;
    struct sp_kafka_alter_configs_response *resp = req_alloc(r, sizeof(*resp));
    struct sp_kafka_alter_configs_response_alter_configs_resource_response *res =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*res));
    if (resp == NULL || res == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_alter_configs_response_init(resp);
    resp->responses = res;
    resp->responses_count = n;
    r->resp = resp;
    r->pending++;
    for (int32_t i = 0; i < n; i++) {
        const struct sp_kafka_alter_configs_request_alter_configs_resource *rq = &q->resources[i];
        sp_kafka_alter_configs_response_alter_configs_resource_response_init(&res[i]);
        res[i].resource_type = rq->resource_type;
        char *name = req_strdup(r, rq->resource_name);
        res[i].resource_name = kstr(name != NULL ? name : "");
        int32_t nc = rq->configs_count > 0 ? rq->configs_count : 0;
        struct config_op *ops = req_alloc(r, (size_t)(nc ? nc : 1) * sizeof(*ops));
        struct alter_slot *slot = req_alloc(r, sizeof(*slot));
        if (ops == NULL || slot == NULL || name == NULL) {
            res[i].error_code = KERR_UNKNOWN_SERVER_ERROR;
            continue;
        }
        for (int32_t k = 0; k < nc; k++)
            ops[k] = (struct config_op){rq->configs[k].name, rq->configs[k].value, OP_SET};
        *slot = (struct alter_slot){&res[i].error_code, &res[i].error_message};
        alter_resource(r, rq->resource_type, rq->resource_name, ops, nc, true, q->validate_only,
                       slot);
    }
    if (--r->pending == 0)
        req_finish(r);
}
