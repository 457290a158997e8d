/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin operations (see sp_kafka_admin.h). An operation is a set of items
 * and a round: every round sends what is still unanswered where it belongs
 * (the controller, each broker, each coordinator, each leader), and when
 * the round's requests have all come back either every item is done or a
 * retry is armed for after retry.backoff.ms, until the deadline. Operations
 * whose items come from the answer (list groups, describe configs and
 * cluster) are done when a round asks for no retry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_admin.h"
#include "sp_log.h"

#define API_LIST_OFFSETS 2
#define API_DESCRIBE_GROUPS 15
#define API_LIST_GROUPS 16
#define API_CREATE_TOPICS 19
#define API_DELETE_TOPICS 20
#define API_CREATE_PARTITIONS 37
#define API_DELETE_RECORDS 21
#define API_DESCRIBE_CONFIGS 32
#define API_DESCRIBE_CLUSTER 60
/* As in consumer.c: v4+ only adds leader epochs, which the mock mis-encodes. */
#define LIST_OFFSETS_VERSION_MAX 3

#define ERR_NOT_CONTROLLER 41

enum op_kind {
    OP_CREATE_TOPICS,
    OP_DELETE_TOPICS,
    OP_CREATE_PARTITIONS,
    OP_LIST_GROUPS,
    OP_DESCRIBE_GROUPS,
    OP_LIST_OFFSETS,
    OP_DELETE_RECORDS,
    OP_DESCRIBE_CONFIGS,
    OP_DESCRIBE_CLUSTER,
};

static const struct {
    const char *name;
    int16_t api_key;
} op_api[] = {
    [OP_CREATE_TOPICS] = {"CreateTopics", API_CREATE_TOPICS},
    [OP_DELETE_TOPICS] = {"DeleteTopics", API_DELETE_TOPICS},
    [OP_CREATE_PARTITIONS] = {"CreatePartitions", API_CREATE_PARTITIONS},
    [OP_LIST_GROUPS] = {"ListGroups", API_LIST_GROUPS},
    [OP_DESCRIBE_GROUPS] = {"DescribeGroups", API_DESCRIBE_GROUPS},
    [OP_LIST_OFFSETS] = {"ListOffsets", API_LIST_OFFSETS},
    [OP_DELETE_RECORDS] = {"DeleteRecords", API_DELETE_RECORDS},
    [OP_DESCRIBE_CONFIGS] = {"DescribeConfigs", API_DESCRIBE_CONFIGS},
    [OP_DESCRIBE_CLUSTER] = {"DescribeCluster", API_DESCRIBE_CLUSTER},
};

struct admin_op {
    struct sp_kafka_client *client;
    enum op_kind kind;
    sp_kafka_admin_fn *fn;
    void *ctx;
    struct sp_timer timer;
    uint64_t deadline_ns;
    int32_t timeout_ms;
    int64_t timestamp; /* list offsets */
    int8_t isolation_level;
    int8_t resource_type;  /* describe configs */
    unsigned pending;      /* requests and lookups of this round in flight */
    bool retry;            /* something this round asks for another */
    bool finished;         /* fn has run: the op waits for pending to drain */
    uint32_t brokers_done; /* list groups: brokers answered, by index */
    int last_err;          /* the last transport failure, for the final report */
    unsigned count;
    unsigned capacity;
    void *scratch; /* request elements of a round: capacity * SCRATCH_BYTES */
    struct sp_kafka_admin_item items[];
};

/* Room per item for the request elements a round encodes from. */
#define SCRATCH_BYTES                                                                              \
    SP_MAX(                                                                                        \
        SP_MAX(sizeof(struct sp_kafka_create_topics_request_creatable_topic),                      \
               sizeof(struct sp_kstr) +                                                            \
                   sizeof(struct sp_kafka_delete_topics_request_delete_topic_state)),              \
        SP_MAX(SP_MAX(sizeof(struct sp_kafka_create_partitions_request_create_partitions_topic),   \
                      sizeof(struct sp_kafka_list_offsets_request_list_offsets_partition)),        \
               sizeof(struct sp_kafka_delete_records_request_delete_records_partition)))

/* One request of a round: which op, and for describe / list offsets where. */
struct admin_req {
    struct admin_op *op;
    int32_t node;   /* broker (list groups: its index) */
    unsigned index; /* describe groups: the item */
};

static void op_round(struct admin_op *op);
static int item_init(struct sp_kafka_admin_item *it, const char *name, size_t max);

static void copy_kstr(char *dst, size_t size, struct sp_kstr s)
{
    size_t n = s.len > 0 ? SP_MIN((size_t)s.len, size - 1) : 0;
    if (n > 0)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void op_free(struct admin_op *op)
{
    sp_arena_free(&op->client->shard->arena, op);
}

/* Reports once; the op is freed when its last request has come back. */
static void op_finish(struct admin_op *op, int err, const char *message)
{
    SP_ASSERT(!op->finished);
    op->finished = true;
    sp_shard_timer_cancel(op->client->shard, &op->timer);
    struct sp_kafka_admin_result result = {.err = err, .count = op->count, .items = op->items};
    if (message != NULL)
        snprintf(result.message, sizeof(result.message), "%s", message);
    op->fn(op->client, &result, op->ctx);
    if (op->pending == 0)
        op_free(op);
}

static void op_timed_out(struct admin_op *op)
{
    for (unsigned i = 0; i < op->count; i++) {
        struct sp_kafka_admin_item *it = &op->items[i];
        if (!it->done) {
            it->error = SP_KAFKA_ERR_REQUEST_TIMED_OUT;
            if (it->message[0] == '\0')
                snprintf(it->message, sizeof(it->message), "no answer within %d ms",
                         op->timeout_ms);
        }
    }
    char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
    snprintf(message, sizeof(message), "%s: no answer within %d ms%s%s", op_api[op->kind].name,
             op->timeout_ms, op->last_err != 0 ? ": " : "",
             op->last_err != 0 ? strerror(-op->last_err) : "");
    op_finish(op, op->last_err == -ENOTCONN ? -ENOTCONN : -ETIMEDOUT, message);
}

static void op_retry_fired(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    op_round(ctx);
}

/* Called when a round's last request is back: done, retry or give up. */
static void op_round_end(struct admin_op *op)
{
    if (op->pending > 0)
        return;
    if (op->finished) {
        op_free(op);
        return;
    }
    bool all = true;
    for (unsigned i = 0; i < op->count && all; i++)
        all = op->items[i].done;
    if (op->kind == OP_LIST_GROUPS || op->kind == OP_DESCRIBE_CONFIGS ||
        op->kind == OP_DESCRIBE_CLUSTER)
        all = !op->retry;
    if (all) {
        op_finish(op, 0, NULL);
        return;
    }
    uint64_t backoff = (uint64_t)op->client->config->retry_backoff_ms * SP_NSEC_PER_MSEC;
    if (sp_now_ns() + backoff >= op->deadline_ns) {
        op_timed_out(op);
        return;
    }
    sp_shard_timer_arm(op->client->shard, &op->timer, sp_now_ns() + backoff);
}

/* A Kafka error for an item: final unless retriable. */
static void item_answer(struct admin_op *op, struct sp_kafka_admin_item *it, int16_t code,
                        struct sp_kstr message)
{
    copy_kstr(it->message, sizeof(it->message), message);
    /* A topic that does not exist is a final answer to a topic change or
     * a config description. */
    bool final = code == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION &&
                 (op->kind == OP_DELETE_TOPICS || op->kind == OP_CREATE_PARTITIONS ||
                  op->kind == OP_DESCRIBE_CONFIGS);
    if (code != 0 && !final && (code == ERR_NOT_CONTROLLER || sp_kafka_error_retriable(code))) {
        it->error = code; /* reported if the deadline passes */
        op->retry = true;
        sp_kafka_client_refresh(op->client);
        return;
    }
    it->error = code;
    it->done = true;
}

static struct sp_kafka_admin_item *item_named(struct admin_op *op, struct sp_kstr name)
{
    for (unsigned i = 0; i < op->count; i++)
        if (!op->items[i].done && sp_kstr_eq(name, op->items[i].name))
            return &op->items[i];
    return NULL;
}

static struct admin_req *req_new(struct admin_op *op, int32_t node, unsigned index)
{
    struct admin_req *req = sp_arena_alloc(&op->client->shard->arena, sizeof(*req));
    if (req != NULL)
        *req = (struct admin_req){op, node, index};
    return req;
}

/* Transport failures: the round retries (the connection reconnects). */
static bool req_failed(struct admin_op *op, int err)
{
    if (err == 0)
        return false;
    op->last_err = err;
    op->retry = true;
    if (err != -ECANCELED)
        sp_kafka_client_refresh(op->client);
    return true;
}

/* ---- Topics at the controller ---- */

static void controller_answered(struct sp_kafka_conn *conn, int err, const void *body,
                                int16_t version, void *ctx)
{
    struct admin_op *op = ctx;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        if (op->kind == OP_CREATE_TOPICS) {
            const struct sp_kafka_create_topics_response *r = body;
            for (int32_t i = 0; i < r->topics_count; i++) {
                struct sp_kafka_admin_item *it = item_named(op, r->topics[i].name);
                if (it == NULL)
                    continue;
                if (version >= 5 && r->topics[i].error_code == 0)
                    it->partitions = r->topics[i].num_partitions;
                item_answer(op, it, r->topics[i].error_code, r->topics[i].error_message);
            }
        } else if (op->kind == OP_DELETE_TOPICS) {
            const struct sp_kafka_delete_topics_response *r = body;
            for (int32_t i = 0; i < r->responses_count; i++) {
                struct sp_kafka_admin_item *it = item_named(op, r->responses[i].name);
                if (it != NULL)
                    item_answer(op, it, r->responses[i].error_code, r->responses[i].error_message);
            }
        } else {
            const struct sp_kafka_create_partitions_response *r = body;
            for (int32_t i = 0; i < r->results_count; i++) {
                struct sp_kafka_admin_item *it = item_named(op, r->results[i].name);
                if (it != NULL)
                    item_answer(op, it, r->results[i].error_code, r->results[i].error_message);
            }
        }
        /* An item the broker did not mention is asked again. */
        for (unsigned i = 0; i < op->count; i++)
            op->retry |= !op->items[i].done;
    }
    op_round_end(op);
}

/* The controller's connection when known and up, else any broker's. */
static struct sp_kafka_conn *controller_conn(struct sp_kafka_client *client)
{
    if (client->controller_id >= 0) {
        struct sp_kafka_conn *conn = sp_kafka_client_broker(client, client->controller_id);
        if (conn != NULL && sp_kafka_conn_ready(conn))
            return conn;
    }
    return sp_kafka_client_any(client);
}

static int send_to_controller(struct admin_op *op, struct sp_kafka_conn *conn)
{
    unsigned n = 0;
    int16_t version = sp_kafka_conn_version(conn, op_api[op->kind].api_key);
    int ret;
    if (op->kind == OP_CREATE_TOPICS) {
        struct sp_kafka_create_topics_request_creatable_topic *topics = op->scratch;
        for (unsigned i = 0; i < op->count; i++) {
            const struct sp_kafka_admin_item *it = &op->items[i];
            if (it->done)
                continue;
            sp_kafka_create_topics_request_creatable_topic_init(&topics[n]);
            topics[n].name = sp_kstr_of(it->name);
            topics[n].num_partitions = it->partitions;
            /* Before v4 the broker has no defaults: one replica. */
            topics[n].replication_factor =
                it->replication_factor < 0 && version < 4 ? 1 : it->replication_factor;
            if (it->partitions < 0 && version < 4)
                topics[n].num_partitions = 1;
            n++;
        }
        struct sp_kafka_create_topics_request req;
        sp_kafka_create_topics_request_init(&req);
        req.topics = topics;
        req.topics_count = (int32_t)n;
        req.timeout_ms = op->timeout_ms;
        ret = sp_kafka_conn_send(conn, API_CREATE_TOPICS, -1, &req, controller_answered, op);
    } else if (op->kind == OP_DELETE_TOPICS) {
        struct sp_kafka_delete_topics_request_delete_topic_state *states = op->scratch;
        struct sp_kstr *names = (struct sp_kstr *)(states + op->count);
        for (unsigned i = 0; i < op->count; i++) {
            if (op->items[i].done)
                continue;
            names[n] = sp_kstr_of(op->items[i].name);
            sp_kafka_delete_topics_request_delete_topic_state_init(&states[n]);
            states[n].name = names[n];
            n++;
        }
        struct sp_kafka_delete_topics_request req;
        sp_kafka_delete_topics_request_init(&req);
        req.topic_names = names; /* up to v5 */
        req.topic_names_count = (int32_t)n;
        req.topics = states; /* v6 on */
        req.topics_count = (int32_t)n;
        req.timeout_ms = op->timeout_ms;
        ret = sp_kafka_conn_send(conn, API_DELETE_TOPICS, -1, &req, controller_answered, op);
    } else {
        struct sp_kafka_create_partitions_request_create_partitions_topic *topics = op->scratch;
        for (unsigned i = 0; i < op->count; i++) {
            if (op->items[i].done)
                continue;
            sp_kafka_create_partitions_request_create_partitions_topic_init(&topics[n]);
            topics[n].name = sp_kstr_of(op->items[i].name);
            topics[n].count = op->items[i].partitions;
            topics[n].assignments_count = -1; /* the broker places them */
            n++;
        }
        struct sp_kafka_create_partitions_request req;
        sp_kafka_create_partitions_request_init(&req);
        req.topics = topics;
        req.topics_count = (int32_t)n;
        req.timeout_ms = op->timeout_ms;
        ret = sp_kafka_conn_send(conn, API_CREATE_PARTITIONS, -1, &req, controller_answered, op);
    }
    if (ret == 0)
        op->pending++;
    return ret;
}

/* ---- Groups ---- */

static void groups_listed(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                          void *ctx)
{
    struct admin_req *req = ctx;
    struct admin_op *op = req->op;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_list_groups_response *r = body;
        if (r->error_code != 0 && sp_kafka_error_retriable(r->error_code)) {
            op->retry = true;
        } else {
            op->brokers_done |= 1u << req->node;
            if (r->error_code != 0)
                sp_log(SP_LOG_WARN, "ListGroups at broker %d: %s",
                       op->client->brokers[req->node].node_id, sp_kafka_error_name(r->error_code));
            for (int32_t i = 0; i < r->groups_count && op->count < op->capacity; i++) {
                const struct sp_kafka_list_groups_response_listed_group *g = &r->groups[i];
                struct sp_kafka_admin_item *it = &op->items[op->count++];
                memset(it, 0, sizeof(*it));
                copy_kstr(it->name, sizeof(it->name), g->group_id);
                copy_kstr(it->protocol_type, sizeof(it->protocol_type), g->protocol_type);
                copy_kstr(it->state, sizeof(it->state), g->group_state);
                it->coordinator = op->client->brokers[req->node].node_id;
                it->done = true;
            }
        }
    }
    sp_arena_free(&op->client->shard->arena, req);
    op_round_end(op);
}

static void group_described(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                            void *ctx)
{
    struct admin_req *req = ctx;
    struct admin_op *op = req->op;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_describe_groups_response *r = body;
        struct sp_kafka_admin_item *it = &op->items[req->index];
        for (int32_t i = 0; i < r->groups_count; i++) {
            const struct sp_kafka_describe_groups_response_described_group *g = &r->groups[i];
            if (!sp_kstr_eq(g->group_id, it->name))
                continue;
            copy_kstr(it->state, sizeof(it->state), g->group_state);
            copy_kstr(it->protocol_type, sizeof(it->protocol_type), g->protocol_type);
            copy_kstr(it->protocol, sizeof(it->protocol), g->protocol_data);
            it->members = g->members_count > 0 ? g->members_count : 0;
            it->coordinator = req->node;
            item_answer(op, it, g->error_code, SP_KSTR_NULL);
        }
        op->retry |= !it->done;
    }
    sp_arena_free(&op->client->shard->arena, req);
    op_round_end(op);
}

static void coordinator_found(struct sp_kafka_client *client, int err, int16_t code, int32_t node,
                              void *ctx)
{
    struct admin_req *req = ctx;
    struct admin_op *op = req->op;
    op->pending--;
    if (op->finished || req_failed(op, err)) {
        sp_arena_free(&client->shard->arena, req);
        op_round_end(op);
        return;
    }
    struct sp_kafka_admin_item *it = &op->items[req->index];
    if (code != 0) {
        item_answer(op, it, code, SP_KSTR_NULL);
        sp_arena_free(&client->shard->arena, req);
        op_round_end(op);
        return;
    }
    struct sp_kafka_conn *conn = sp_kafka_client_broker(client, node);
    int ret = -ENOTCONN;
    if (conn != NULL && sp_kafka_conn_ready(conn)) {
        if (sp_kafka_conn_version(conn, API_DESCRIBE_GROUPS) < 0) {
            ret = -ENOTSUP;
        } else {
            struct sp_kstr name = {it->name, (int32_t)strlen(it->name)};
            struct sp_kafka_describe_groups_request body;
            sp_kafka_describe_groups_request_init(&body);
            body.groups = &name;
            body.groups_count = 1;
            req->node = node;
            ret = sp_kafka_conn_send(conn, API_DESCRIBE_GROUPS, -1, &body, group_described, req);
        }
    }
    if (ret == 0) {
        op->pending++;
        return;
    }
    if (ret == -ENOTSUP) {
        it->error = SP_KAFKA_ERR_UNSUPPORTED_VERSION;
        snprintf(it->message, sizeof(it->message),
                 "the coordinator (broker %d) does not support DescribeGroups (API 15)", node);
        it->done = true;
    } else {
        req_failed(op, ret);
    }
    sp_arena_free(&client->shard->arena, req);
    op_round_end(op);
}

/* ---- Offsets at the leaders ---- */

static void offsets_listed(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                           void *ctx)
{
    struct admin_req *req = ctx;
    struct admin_op *op = req->op;
    (void)conn;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_list_offsets_response *r = body;
        for (int32_t t = 0; t < r->topics_count; t++) {
            const struct sp_kafka_list_offsets_response_list_offsets_topic_response *rt =
                &r->topics[t];
            for (int32_t i = 0; i < rt->partitions_count; i++) {
                const struct sp_kafka_list_offsets_response_list_offsets_partition_response *rp =
                    &rt->partitions[i];
                for (unsigned j = 0; j < op->count; j++) {
                    struct sp_kafka_admin_item *it = &op->items[j];
                    if (it->done || it->partition != rp->partition_index ||
                        !sp_kstr_eq(rt->name, it->name))
                        continue;
                    if (version == 0)
                        it->offset =
                            rp->old_style_offsets_count > 0 ? rp->old_style_offsets[0] : -1;
                    else
                        it->offset = rp->offset;
                    it->timestamp = version >= 1 ? rp->timestamp : -1;
                    it->leader_epoch = version >= 4 ? rp->leader_epoch : -1;
                    item_answer(op, it, rp->error_code, SP_KSTR_NULL);
                }
            }
        }
        for (unsigned j = 0; j < op->count; j++)
            if (!op->items[j].done && op->items[j].coordinator == req->node)
                op->retry = true; /* the leader did not mention it */
    }
    sp_arena_free(&op->client->shard->arena, req);
    op_round_end(op);
}

static void records_deleted(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                            void *ctx)
{
    struct admin_req *req = ctx;
    struct admin_op *op = req->op;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_delete_records_response *r = body;
        for (int32_t t = 0; t < r->topics_count; t++) {
            const struct sp_kafka_delete_records_response_delete_records_topic_result *rt =
                &r->topics[t];
            for (int32_t i = 0; i < rt->partitions_count; i++) {
                const struct sp_kafka_delete_records_response_delete_records_partition_result *rp =
                    &rt->partitions[i];
                for (unsigned j = 0; j < op->count; j++) {
                    struct sp_kafka_admin_item *it = &op->items[j];
                    if (it->done || it->partition != rp->partition_index ||
                        !sp_kstr_eq(rt->name, it->name))
                        continue;
                    if (rp->error_code == 0)
                        it->offset = rp->low_watermark;
                    item_answer(op, it, rp->error_code, SP_KSTR_NULL);
                }
            }
        }
        for (unsigned j = 0; j < op->count; j++)
            if (!op->items[j].done && op->items[j].coordinator == req->node)
                op->retry = true; /* the leader did not mention it */
    }
    sp_arena_free(&op->client->shard->arena, req);
    op_round_end(op);
}

/* Sends delete records' items for `leader` (marked with coordinator == leader) to it. */
static int send_delete_records(struct admin_op *op, struct sp_kafka_conn *conn, int32_t leader,
                               unsigned first)
{
    struct sp_kafka_delete_records_request_delete_records_partition *parts = op->scratch;
    int32_t n = 0;
    for (unsigned j = first; j < op->count; j++) {
        const struct sp_kafka_admin_item *it = &op->items[j];
        if (it->done || it->coordinator != leader)
            continue;
        sp_kafka_delete_records_request_delete_records_partition_init(&parts[n]);
        parts[n].partition_index = it->partition;
        parts[n].offset = it->offset;
        n++;
    }
    struct sp_kafka_delete_records_request_delete_records_topic topic;
    sp_kafka_delete_records_request_delete_records_topic_init(&topic);
    topic.name = sp_kstr_of(op->items[first].name);
    topic.partitions = parts;
    topic.partitions_count = n;
    struct sp_kafka_delete_records_request body;
    sp_kafka_delete_records_request_init(&body);
    body.topics = &topic;
    body.topics_count = 1;
    body.timeout_ms = op->timeout_ms;
    struct admin_req *req = req_new(op, leader, 0);
    int ret = req == NULL
                  ? -ENOBUFS
                  : sp_kafka_conn_send(conn, API_DELETE_RECORDS, -1, &body, records_deleted, req);
    if (ret < 0 && req != NULL)
        sp_arena_free(&op->client->shard->arena, req);
    return ret;
}

/* List offsets and delete records: one request per partition leader. */
static void leaders_round(struct admin_op *op)
{
    struct sp_kafka_client *client = op->client;
    struct sp_kafka_topic_info *t = NULL;
    int err = 0;
    t = sp_kafka_client_topic(client, op->items[0].name, strlen(op->items[0].name), &err);
    if (t == NULL) {
        char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
        snprintf(message, sizeof(message), "topic '%s': %s", op->items[0].name, strerror(-err));
        op_finish(op, err, message);
        return;
    }
    if (!t->known) {
        if (client->metadata_ever && t->error != 0 && !sp_kafka_error_retriable(t->error)) {
            for (unsigned i = 0; i < op->count; i++)
                if (!op->items[i].done)
                    item_answer(op, &op->items[i], t->error, SP_KSTR_NULL);
        } else {
            sp_kafka_client_refresh(client);
            op->retry = true;
        }
        return;
    }
    /* Items by leader: each pass sends one request for one leader. */
    for (unsigned i = 0; i < op->count; i++) {
        struct sp_kafka_admin_item *it = &op->items[i];
        it->coordinator = -2; /* not sent this round */
        if (it->done)
            continue;
        if (it->partition < 0 || it->partition >= t->partition_count) {
            it->error = SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            snprintf(it->message, sizeof(it->message), "the topic has %d partitions",
                     t->partition_count);
            it->done = true;
        }
    }
    for (unsigned i = 0; i < op->count; i++) {
        struct sp_kafka_admin_item *first = &op->items[i];
        if (first->done || first->coordinator != -2)
            continue;
        int32_t leader = t->partitions[first->partition].leader;
        struct sp_kafka_conn *conn = leader >= 0 ? sp_kafka_client_broker(client, leader) : NULL;
        if (conn == NULL || !sp_kafka_conn_ready(conn)) {
            first->coordinator = -1;
            op->retry = true;
            if (leader < 0)
                sp_kafka_client_refresh(client);
            continue;
        }
        if (op->kind == OP_DELETE_RECORDS) {
            if (sp_kafka_conn_version(conn, API_DELETE_RECORDS) < 0) {
                char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
                snprintf(message, sizeof(message),
                         "the broker at %.64s:%u does not support DeleteRecords (API 21)",
                         conn->host, conn->port);
                op_finish(op, -ENOTSUP, message);
                return;
            }
            for (unsigned j = i; j < op->count; j++) {
                struct sp_kafka_admin_item *it = &op->items[j];
                if (!it->done && it->coordinator == -2 &&
                    t->partitions[it->partition].leader == leader)
                    it->coordinator = leader;
            }
            int ret = send_delete_records(op, conn, leader, i);
            if (ret == 0)
                op->pending++;
            else
                req_failed(op, ret);
            continue;
        }
        int16_t version =
            SP_MIN(sp_kafka_conn_version(conn, API_LIST_OFFSETS), LIST_OFFSETS_VERSION_MAX);
        if (version < 0 || (version == 0 && op->timestamp >= 0)) {
            char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
            snprintf(message, sizeof(message),
                     "the broker at %.64s:%u does not support ListOffsets (API 2)%s", conn->host,
                     conn->port, version == 0 ? " by timestamp" : "");
            op_finish(op, -ENOTSUP, message);
            return;
        }
        struct sp_kafka_list_offsets_request_list_offsets_partition *parts = op->scratch;
        int32_t n = 0;
        for (unsigned j = i; j < op->count; j++) {
            struct sp_kafka_admin_item *it = &op->items[j];
            if (it->done || it->coordinator != -2 || t->partitions[it->partition].leader != leader)
                continue;
            sp_kafka_list_offsets_request_list_offsets_partition_init(&parts[n]);
            parts[n].partition_index = it->partition;
            parts[n].current_leader_epoch = -1;
            parts[n].timestamp = op->timestamp;
            parts[n].max_num_offsets = 1; /* v0 */
            it->coordinator = leader;
            n++;
        }
        struct sp_kafka_list_offsets_request_list_offsets_topic topic;
        sp_kafka_list_offsets_request_list_offsets_topic_init(&topic);
        topic.name = sp_kstr_of(first->name);
        topic.partitions = parts;
        topic.partitions_count = n;
        struct sp_kafka_list_offsets_request body;
        sp_kafka_list_offsets_request_init(&body);
        body.replica_id = -1;
        body.isolation_level = op->isolation_level;
        body.topics = &topic;
        body.topics_count = 1;
        struct admin_req *req = req_new(op, leader, 0);
        int ret = req == NULL ? -ENOBUFS
                              : sp_kafka_conn_send(conn, API_LIST_OFFSETS, version, &body,
                                                   offsets_listed, req);
        if (ret == 0) {
            op->pending++;
            continue;
        }
        if (req != NULL)
            sp_arena_free(&client->shard->arena, req);
        req_failed(op, ret);
    }
}

/* ---- Configs and the cluster, at any broker ---- */

static void configs_described(struct sp_kafka_conn *conn, int err, const void *body,
                              int16_t version, void *ctx)
{
    struct admin_op *op = ctx;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_describe_configs_response *r = body;
        struct sp_kafka_admin_item *res = &op->items[0];
        if (r->results_count < 1) {
            op->retry = true;
        } else if (r->results[0].error_code != 0) {
            op->count = 1;
            item_answer(op, res, r->results[0].error_code, r->results[0].error_message);
            op->retry = !res->done;
        } else {
            const struct sp_kafka_describe_configs_response_describe_configs_result *rr =
                &r->results[0];
            unsigned n = 0;
            for (int32_t i = 0; i < rr->configs_count && n < op->capacity; i++, n++) {
                const struct sp_kafka_describe_configs_response_describe_configs_resource_result
                    *c = &rr->configs[i];
                struct sp_kafka_admin_item *it = &op->items[n];
                memset(it, 0, sizeof(*it));
                copy_kstr(it->name, sizeof(it->name), c->name);
                copy_kstr(it->message, sizeof(it->message), c->value);
                it->config_source = c->config_source;
                it->read_only = c->read_only;
                /* v0 has is_default; later versions say it with the source (5). */
                it->is_default = version == 0 ? c->is_default : c->config_source == 5;
                it->sensitive = c->is_sensitive;
                it->partition = it->partitions = it->coordinator = it->leader_epoch = -1;
                it->offset = it->timestamp = -1;
                it->done = true;
            }
            op->count = n;
        }
    }
    op_round_end(op);
}

static void cluster_described(struct sp_kafka_conn *conn, int err, const void *body,
                              int16_t version, void *ctx)
{
    struct admin_op *op = ctx;
    (void)conn;
    (void)version;
    op->pending--;
    if (!op->finished && !req_failed(op, err)) {
        const struct sp_kafka_describe_cluster_response *r = body;
        if (r->error_code != 0) {
            struct sp_kafka_admin_item *it = &op->items[0];
            op->count = 1;
            int named = item_init(it, "cluster", sizeof(it->name) - 1);
            SP_ASSERT(named == 0);
            item_answer(op, it, r->error_code, r->error_message);
            op->retry = !it->done;
        } else {
            unsigned n = 0;
            for (int32_t i = 0; i < r->brokers_count && n < op->capacity; i++, n++) {
                const struct sp_kafka_describe_cluster_response_describe_cluster_broker *b =
                    &r->brokers[i];
                struct sp_kafka_admin_item *it = &op->items[n];
                memset(it, 0, sizeof(*it));
                copy_kstr(it->name, sizeof(it->name), b->host);
                copy_kstr(it->state, sizeof(it->state), b->rack);
                copy_kstr(it->protocol, sizeof(it->protocol), r->cluster_id);
                it->coordinator = b->broker_id;
                it->port = b->port;
                it->controller = b->broker_id == r->controller_id;
                it->partition = it->partitions = it->leader_epoch = -1;
                it->offset = it->timestamp = -1;
                it->done = true;
            }
            op->count = n;
        }
    }
    op_round_end(op);
}

/*
 * Sends describe configs or cluster to any broker (a broker's configs: to
 * that broker). 0 when sent or to retry (op->retry set); -ENOTSUP after
 * finishing the op; another -errno for a failed send.
 */
static int any_broker_round(struct admin_op *op)
{
    struct sp_kafka_client *client = op->client;
    struct sp_kafka_conn *conn = NULL;
    if (op->kind == OP_DESCRIBE_CONFIGS && op->resource_type == SP_KAFKA_CONFIG_RESOURCE_BROKER) {
        conn = sp_kafka_client_broker(client, (int32_t)strtol(op->items[0].name, NULL, 10));
        if (conn != NULL && !sp_kafka_conn_ready(conn))
            conn = NULL;
        if (conn == NULL && !client->metadata_ever)
            sp_kafka_client_refresh(client);
    } else {
        conn = sp_kafka_client_any(client);
    }
    if (conn == NULL) {
        op->last_err = client->bootstrap_error != 0 ? client->bootstrap_error : -ENOTCONN;
        op->retry = true;
        return 0;
    }
    int16_t api = op_api[op->kind].api_key;
    if (sp_kafka_conn_version(conn, api) < 0) {
        char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
        snprintf(message, sizeof(message), "the broker at %.64s:%u does not support %s (API %d)",
                 conn->host, conn->port, op_api[op->kind].name, api);
        op_finish(op, -ENOTSUP, message); /* the round's hold keeps op */
        return -ENOTSUP;
    }
    int ret;
    if (op->kind == OP_DESCRIBE_CONFIGS) {
        struct sp_kafka_describe_configs_request_describe_configs_resource res;
        sp_kafka_describe_configs_request_describe_configs_resource_init(&res);
        res.resource_type = op->resource_type;
        res.resource_name = sp_kstr_of(op->items[0].name);
        res.configuration_keys = NULL;
        res.configuration_keys_count = -1; /* every config */
        struct sp_kafka_describe_configs_request body;
        sp_kafka_describe_configs_request_init(&body);
        body.resources = &res;
        body.resources_count = 1;
        ret = sp_kafka_conn_send(conn, API_DESCRIBE_CONFIGS, -1, &body, configs_described, op);
    } else {
        struct sp_kafka_describe_cluster_request body;
        sp_kafka_describe_cluster_request_init(&body);
        ret = sp_kafka_conn_send(conn, API_DESCRIBE_CLUSTER, -1, &body, cluster_described, op);
    }
    if (ret == 0)
        op->pending++;
    return ret;
}

/* ---- Rounds ---- */

static void op_round(struct admin_op *op)
{
    struct sp_kafka_client *client = op->client;
    SP_ASSERT(op->pending == 0);
    op->retry = false;
    if (client->closing) {
        op_finish(op, -ECANCELED, "the client is closing");
        return;
    }
    if (sp_now_ns() >= op->deadline_ns) {
        op_timed_out(op);
        return;
    }
    op->pending++; /* holds the round open while it sends */
    switch (op->kind) {
    case OP_CREATE_TOPICS:
    case OP_DELETE_TOPICS:
    case OP_CREATE_PARTITIONS: {
        struct sp_kafka_conn *conn = controller_conn(client);
        if (conn == NULL) {
            op->last_err = client->bootstrap_error != 0 ? client->bootstrap_error : -ENOTCONN;
            op->retry = true;
            break;
        }
        if (sp_kafka_conn_version(conn, op_api[op->kind].api_key) < 0) {
            char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
            snprintf(message, sizeof(message),
                     "the broker at %.64s:%u does not support %s (API %d)", conn->host, conn->port,
                     op_api[op->kind].name, op_api[op->kind].api_key);
            op->pending--;
            op_finish(op, -ENOTSUP, message);
            return;
        }
        int ret = send_to_controller(op, conn);
        if (ret < 0)
            req_failed(op, ret);
        break;
    }
    case OP_LIST_GROUPS: {
        bool any = false;
        for (unsigned b = 0; b < client->broker_count; b++) {
            if (!client->brokers[b].in_use || (op->brokers_done & (1u << b)))
                continue;
            any = true;
            struct sp_kafka_conn *conn = sp_kafka_client_broker(client, client->brokers[b].node_id);
            if (conn == NULL || !sp_kafka_conn_ready(conn)) {
                op->retry = true;
                continue;
            }
            if (sp_kafka_conn_version(conn, API_LIST_GROUPS) < 0) {
                char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
                snprintf(message, sizeof(message),
                         "the broker at %.64s:%u does not support ListGroups (API 16)", conn->host,
                         conn->port);
                op->pending--; /* freed when the rest is back */
                op_finish(op, -ENOTSUP, message);
                return;
            }
            struct sp_kafka_list_groups_request body;
            sp_kafka_list_groups_request_init(&body);
            struct admin_req *req = req_new(op, (int32_t)b, 0);
            int ret = req == NULL ? -ENOBUFS
                                  : sp_kafka_conn_send(conn, API_LIST_GROUPS, -1, &body,
                                                       groups_listed, req);
            if (ret == 0) {
                op->pending++;
            } else {
                if (req != NULL)
                    sp_arena_free(&client->shard->arena, req);
                req_failed(op, ret);
            }
        }
        if (!any && !client->metadata_ever) {
            op->retry = true; /* no broker list yet */
            sp_kafka_client_refresh(client);
        }
        break;
    }
    case OP_DESCRIBE_GROUPS:
        for (unsigned i = 0; i < op->count; i++) {
            if (op->items[i].done)
                continue;
            struct admin_req *req = req_new(op, -1, i);
            int ret =
                req == NULL
                    ? -ENOBUFS
                    : sp_kafka_client_find_coordinator(client, SP_KAFKA_COORDINATOR_GROUP,
                                                       op->items[i].name, coordinator_found, req);
            if (ret == 0) {
                op->pending++;
            } else {
                if (req != NULL)
                    sp_arena_free(&client->shard->arena, req);
                req_failed(op, ret);
            }
        }
        break;
    case OP_DESCRIBE_CONFIGS:
    case OP_DESCRIBE_CLUSTER: {
        int ret = any_broker_round(op);
        if (op->finished) {
            op->pending--;
            if (op->pending == 0)
                op_free(op);
            return;
        }
        if (ret < 0)
            req_failed(op, ret);
        break;
    }
    case OP_LIST_OFFSETS:
    case OP_DELETE_RECORDS:
        leaders_round(op);
        if (op->finished) {
            op->pending--;
            if (op->pending == 0)
                op_free(op);
            return;
        }
        break;
    }
    op->pending--;
    op_round_end(op);
}

/* ---- Starting ---- */

/* A new operation with room for `capacity` items: 0, -EINVAL, -ENOBUFS. */
static int op_new(struct sp_kafka_client *client, enum op_kind kind, unsigned capacity,
                  int32_t timeout_ms, sp_kafka_admin_fn *fn, void *ctx, struct admin_op **out)
{
    if (fn == NULL || timeout_ms <= 0 || capacity == 0 || capacity > SP_KAFKA_ADMIN_ITEMS_MAX)
        return -EINVAL;
    size_t items_bytes = sizeof(struct admin_op) + capacity * sizeof(struct sp_kafka_admin_item);
    items_bytes = (items_bytes + 15) & ~(size_t)15;
    size_t bytes = items_bytes + capacity * SCRATCH_BYTES;
    struct admin_op *op = sp_arena_alloc(&client->shard->arena, bytes);
    if (op == NULL)
        return -ENOBUFS;
    memset(op, 0, bytes);
    op->client = client;
    op->kind = kind;
    op->fn = fn;
    op->ctx = ctx;
    op->timeout_ms = timeout_ms;
    op->deadline_ns = sp_now_ns() + (uint64_t)timeout_ms * SP_NSEC_PER_MSEC;
    op->capacity = capacity;
    op->scratch = (char *)op + items_bytes;
    sp_timer_init(&op->timer, op_retry_fired, op);
    *out = op;
    return 0;
}

/* Names an item and sets its other inputs to "none": 0, or -EINVAL for an empty or long name. */
static int item_init(struct sp_kafka_admin_item *it, const char *name, size_t max)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > max || n >= sizeof(it->name))
        return -EINVAL;
    memcpy(it->name, name, n + 1);
    it->partition = -1;
    it->partitions = -1;
    it->replication_factor = -1;
    it->offset = -1;
    it->timestamp = -1;
    it->leader_epoch = -1;
    it->coordinator = -1;
    return 0;
}

/*
 * Names the op's `count` items: names[i], or names[0] for every one with
 * `same` (a topic's partitions). A bad name frees the op: -EINVAL.
 */
static int op_name(struct admin_op *op, const char *const *names, unsigned count, bool same,
                   size_t max)
{
    for (unsigned i = 0; i < count; i++) {
        if (item_init(&op->items[i], names[same ? 0 : i], max) < 0) {
            op_free(op);
            return -EINVAL;
        }
    }
    op->count = count;
    return 0;
}

/* The first round runs from the reactor, so fn never runs inside the call. */
static void op_begin(struct admin_op *op)
{
    sp_shard_timer_arm(op->client->shard, &op->timer, sp_now_ns());
}

int sp_kafka_admin_create_topics(struct sp_kafka_client *client,
                                 const struct sp_kafka_new_topic *topics, unsigned count,
                                 int32_t timeout_ms, sp_kafka_admin_fn *fn, void *ctx)
{
    struct admin_op *op;
    int ret = op_new(client, OP_CREATE_TOPICS, count, timeout_ms, fn, ctx, &op);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < count; i++) {
        if (item_init(&op->items[i], topics[i].name, SP_KAFKA_TOPIC_NAME_BYTES_MAX) < 0 ||
            topics[i].partitions == 0 || topics[i].partitions > SP_KAFKA_PARTITIONS_MAX ||
            topics[i].replication_factor == 0) {
            op_free(op);
            return -EINVAL;
        }
        op->items[i].partitions = topics[i].partitions;
        op->items[i].replication_factor = topics[i].replication_factor;
    }
    op->count = count;
    op_begin(op);
    return 0;
}

int sp_kafka_admin_delete_topics(struct sp_kafka_client *client, const char *const *names,
                                 unsigned count, int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                 void *ctx)
{
    struct admin_op *op;
    int ret = op_new(client, OP_DELETE_TOPICS, count, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, names, count, false, SP_KAFKA_TOPIC_NAME_BYTES_MAX);
    if (ret == 0)
        op_begin(op);
    return ret;
}

int sp_kafka_admin_create_partitions(struct sp_kafka_client *client, const char *topic,
                                     int32_t total, int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                     void *ctx)
{
    if (total <= 0 || total > SP_KAFKA_PARTITIONS_MAX)
        return -EINVAL;
    struct admin_op *op;
    int ret = op_new(client, OP_CREATE_PARTITIONS, 1, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, &topic, 1, false, SP_KAFKA_TOPIC_NAME_BYTES_MAX);
    if (ret == 0) {
        op->items[0].partitions = total;
        op_begin(op);
    }
    return ret;
}

int sp_kafka_admin_list_groups(struct sp_kafka_client *client, int32_t timeout_ms,
                               sp_kafka_admin_fn *fn, void *ctx)
{
    struct admin_op *op;
    int ret = op_new(client, OP_LIST_GROUPS, SP_KAFKA_ADMIN_ITEMS_MAX, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        op_begin(op);
    return ret;
}

int sp_kafka_admin_describe_groups(struct sp_kafka_client *client, const char *const *groups,
                                   unsigned count, int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                   void *ctx)
{
    struct admin_op *op;
    int ret = op_new(client, OP_DESCRIBE_GROUPS, count, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, groups, count, false, SP_KAFKA_ADMIN_GROUP_NAME_MAX - 1);
    if (ret == 0)
        op_begin(op);
    return ret;
}

int sp_kafka_admin_delete_records(struct sp_kafka_client *client, const char *topic,
                                  const int32_t *partitions, const int64_t *offsets, unsigned count,
                                  int32_t timeout_ms, sp_kafka_admin_fn *fn, void *ctx)
{
    for (unsigned i = 0; i < count && i <= SP_KAFKA_ADMIN_ITEMS_MAX; i++)
        if (offsets[i] < SP_KAFKA_DELETE_RECORDS_ALL)
            return -EINVAL;
    struct admin_op *op;
    int ret = op_new(client, OP_DELETE_RECORDS, count, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, &topic, count, true, SP_KAFKA_TOPIC_NAME_BYTES_MAX);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < count; i++) {
        op->items[i].partition = partitions[i];
        op->items[i].offset = offsets[i];
    }
    op_begin(op);
    return 0;
}

int sp_kafka_admin_describe_configs(struct sp_kafka_client *client, int8_t resource_type,
                                    const char *name, int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                    void *ctx)
{
    if (resource_type != SP_KAFKA_CONFIG_RESOURCE_TOPIC &&
        resource_type != SP_KAFKA_CONFIG_RESOURCE_BROKER)
        return -EINVAL;
    struct admin_op *op;
    int ret =
        op_new(client, OP_DESCRIBE_CONFIGS, SP_KAFKA_ADMIN_CONFIGS_MAX, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, &name, 1, false, SP_KAFKA_TOPIC_NAME_BYTES_MAX);
    if (ret < 0)
        return ret;
    op->resource_type = resource_type;
    op_begin(op);
    return 0;
}

int sp_kafka_admin_describe_cluster(struct sp_kafka_client *client, int32_t timeout_ms,
                                    sp_kafka_admin_fn *fn, void *ctx)
{
    struct admin_op *op;
    int ret =
        op_new(client, OP_DESCRIBE_CLUSTER, SP_KAFKA_CLIENT_BROKERS_MAX, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        op_begin(op);
    return ret;
}

int sp_kafka_admin_list_offsets(struct sp_kafka_client *client, const char *topic,
                                const int32_t *partitions, unsigned count, int64_t timestamp,
                                int8_t isolation_level, int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                void *ctx)
{
    if (timestamp < SP_KAFKA_OFFSET_SPEC_EARLIEST || (isolation_level != 0 && isolation_level != 1))
        return -EINVAL;
    struct admin_op *op;
    int ret = op_new(client, OP_LIST_OFFSETS, count, timeout_ms, fn, ctx, &op);
    if (ret == 0)
        ret = op_name(op, &topic, count, true, SP_KAFKA_TOPIC_NAME_BYTES_MAX);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < count; i++)
        op->items[i].partition = partitions[i];
    op->timestamp = timestamp;
    op->isolation_level = isolation_level;
    op_begin(op);
    return 0;
}
