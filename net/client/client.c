/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bootstrap, brokers and metadata (see sp_kafka_client.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sp_kafka_client.h"
#include "sp_log.h"

static void metadata_send(struct sp_kafka_client *client);

/* ---- Errors ---- */

bool sp_kafka_error_retriable(int16_t code)
{
    switch (code) {
    case SP_KAFKA_ERR_CORRUPT_MESSAGE:
    case SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION:
    case SP_KAFKA_ERR_LEADER_NOT_AVAILABLE:
    case SP_KAFKA_ERR_NOT_LEADER_OR_FOLLOWER:
    case SP_KAFKA_ERR_REQUEST_TIMED_OUT:
    case SP_KAFKA_ERR_NETWORK_EXCEPTION:
    case SP_KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case SP_KAFKA_ERR_COORDINATOR_NOT_AVAILABLE:
    case SP_KAFKA_ERR_NOT_COORDINATOR:
    case SP_KAFKA_ERR_NOT_ENOUGH_REPLICAS:
    case SP_KAFKA_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case SP_KAFKA_ERR_FENCED_LEADER_EPOCH:
    case SP_KAFKA_ERR_UNKNOWN_LEADER_EPOCH:
        return true;
    default:
        return false;
    }
}

const char *sp_kafka_error_name(int16_t code)
{
    static const struct {
        int16_t code;
        const char *name;
    } names[] = {
        {0, "NONE"},
        {1, "OFFSET_OUT_OF_RANGE"},
        {2, "CORRUPT_MESSAGE"},
        {3, "UNKNOWN_TOPIC_OR_PARTITION"},
        {5, "LEADER_NOT_AVAILABLE"},
        {6, "NOT_LEADER_OR_FOLLOWER"},
        {7, "REQUEST_TIMED_OUT"},
        {10, "MESSAGE_TOO_LARGE"},
        {13, "NETWORK_EXCEPTION"},
        {14, "COORDINATOR_LOAD_IN_PROGRESS"},
        {15, "COORDINATOR_NOT_AVAILABLE"},
        {16, "NOT_COORDINATOR"},
        {17, "INVALID_TOPIC_EXCEPTION"},
        {19, "NOT_ENOUGH_REPLICAS"},
        {20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND"},
        {22, "ILLEGAL_GENERATION"},
        {25, "UNKNOWN_MEMBER_ID"},
        {27, "REBALANCE_IN_PROGRESS"},
        {29, "TOPIC_AUTHORIZATION_FAILED"},
        {35, "UNSUPPORTED_VERSION"},
        {36, "TOPIC_ALREADY_EXISTS"},
        {37, "INVALID_PARTITIONS"},
        {42, "INVALID_REQUEST"},
        {45, "OUT_OF_ORDER_SEQUENCE_NUMBER"},
        {46, "DUPLICATE_SEQUENCE_NUMBER"},
        {47, "INVALID_PRODUCER_EPOCH"},
        {48, "INVALID_TXN_STATE"},
        {74, "FENCED_LEADER_EPOCH"},
        {75, "UNKNOWN_LEADER_EPOCH"},
        {90, "PRODUCER_FENCED"},
    };
    for (unsigned i = 0; i < SP_ARRAY_LEN(names); i++)
        if (names[i].code == code)
            return names[i].name;
    return "UNKNOWN";
}

/* ---- Connections ---- */

static void notify(struct sp_kafka_client *client)
{
    if (client->on_change != NULL && !client->closing)
        client->on_change(client, client->ctx);
}

static void bootstrap_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx);

static int bootstrap_open(struct sp_kafka_client *client)
{
    char host[SP_KAFKA_HOST_BYTES_MAX];
    uint16_t port;
    int ret = sp_kafka_config_bootstrap(client->config, client->bootstrap_index, host, sizeof(host),
                                        &port);
    if (ret == -ENOENT && client->bootstrap_index > 0) {
        client->bootstrap_index = 0;
        ret = sp_kafka_config_bootstrap(client->config, 0, host, sizeof(host), &port);
    }
    if (ret < 0)
        return ret;
    ret = sp_kafka_conn_init(&client->bootstrap, client->shard, &client->conn_config, host, port,
                             -1, bootstrap_state, client);
    if (ret < 0)
        return ret;
    client->bootstrap_in_use = true;
    sp_kafka_conn_connect(&client->bootstrap);
    return 0;
}

static void bootstrap_next(struct sp_timer *timer, void *ctx);

static void bootstrap_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx)
{
    struct sp_kafka_client *client = ctx;
    if (up) {
        client->bootstrap_failures = 0;
        if (!client->metadata_ever)
            metadata_send(client);
        return;
    }
    client->bootstrap_error = err;
    client->bootstrap_failures++;
    sp_debug("kafka bootstrap %s:%u: %s", conn->host, conn->port, strerror(err < 0 ? -err : EIO));
    if (client->metadata_ever || client->closing)
        return;
    /* Move on to the next bootstrap server, if there is another. */
    char host[SP_KAFKA_HOST_BYTES_MAX];
    uint16_t port;
    if (sp_kafka_config_bootstrap(client->config, 1, host, sizeof(host), &port) == 0) {
        sp_kafka_conn_close(conn);
        client->bootstrap_index++;
        sp_shard_timer_arm(client->shard, &client->bootstrap_timer, sp_now_ns() + SP_NSEC_PER_MSEC);
    }
}

static void bootstrap_next(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_client *client = ctx;
    if (!sp_kafka_conn_idle(&client->bootstrap)) {
        sp_shard_timer_arm(client->shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    sp_kafka_conn_deinit(&client->bootstrap);
    client->bootstrap_in_use = false;
    if (bootstrap_open(client) < 0)
        sp_warn("kafka: no usable bootstrap server");
}

static void broker_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx)
{
    struct sp_kafka_client *client = ctx;
    (void)conn;
    (void)err;
    if (!up)
        sp_kafka_client_refresh(client); /* leaders may have moved */
    notify(client);
}

struct sp_kafka_conn *sp_kafka_client_broker(struct sp_kafka_client *client, int32_t node_id)
{
    for (unsigned i = 0; i < client->broker_count; i++) {
        struct sp_kafka_broker *b = &client->brokers[i];
        if (b->in_use && b->node_id == node_id) {
            if (!client->closing)
                sp_kafka_conn_connect(&b->conn);
            return &b->conn;
        }
    }
    return NULL;
}

struct sp_kafka_conn *sp_kafka_client_any(struct sp_kafka_client *client)
{
    for (unsigned i = 0; i < client->broker_count; i++)
        if (client->brokers[i].in_use && sp_kafka_conn_ready(&client->brokers[i].conn))
            return &client->brokers[i].conn;
    if (client->bootstrap_in_use && sp_kafka_conn_ready(&client->bootstrap))
        return &client->bootstrap;
    return NULL;
}

/* Adds or updates broker `node_id` at host:port. */
static void broker_upsert(struct sp_kafka_client *client, int32_t node_id, struct sp_kstr host,
                          int32_t port)
{
    char name[SP_KAFKA_HOST_BYTES_MAX];
    if (host.len <= 0 || (size_t)host.len >= sizeof(name) || port <= 0 || port > 65535)
        return;
    memcpy(name, host.ptr, (size_t)host.len);
    name[host.len] = '\0';
    for (unsigned i = 0; i < client->broker_count; i++) {
        struct sp_kafka_broker *b = &client->brokers[i];
        if (b->in_use && b->node_id == node_id) {
            if (strcmp(b->conn.host, name) != 0 || b->conn.port != port)
                sp_warn("kafka: broker %d moved to %s:%d: keeping %s:%u", node_id, name, port,
                        b->conn.host, b->conn.port);
            return;
        }
    }
    if (client->broker_count == SP_KAFKA_CLIENT_BROKERS_MAX) {
        sp_warn("kafka: more than %d brokers: broker %d ignored", SP_KAFKA_CLIENT_BROKERS_MAX,
                node_id);
        return;
    }
    struct sp_kafka_broker *b = &client->brokers[client->broker_count];
    if (sp_kafka_conn_init(&b->conn, client->shard, &client->conn_config, name, (uint16_t)port,
                           node_id, broker_state, client) < 0) {
        sp_warn("kafka: broker %d at %s:%d: cannot use", node_id, name, port);
        return;
    }
    b->node_id = node_id;
    b->in_use = true;
    client->broker_count++;
}

/* ---- Metadata ---- */

static void metadata_timer_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_client *client = ctx;
    (void)timer;
    metadata_send(client);
}

static void metadata_schedule(struct sp_kafka_client *client, uint64_t at_ns)
{
    if (client->closing)
        return;
    if (!sp_timer_armed(&client->metadata_timer) || client->metadata_timer.deadline_ns > at_ns)
        sp_shard_timer_arm(client->shard, &client->metadata_timer, at_ns);
}

void sp_kafka_client_refresh(struct sp_kafka_client *client)
{
    client->metadata_wanted = true;
    uint64_t backoff = (uint64_t)client->config->retry_backoff_ms * SP_NSEC_PER_MSEC;
    metadata_schedule(client, SP_MAX(sp_now_ns(), client->metadata_last_ns + backoff));
}

static void topic_update(struct sp_kafka_client *client, struct sp_kafka_topic_info *t,
                         const struct sp_kafka_metadata_response_metadata_response_topic *r)
{
    t->error = r->error_code;
    if (r->error_code != 0 && r->partitions_count <= 0) {
        t->known = r->error_code != SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION &&
                   r->error_code != SP_KAFKA_ERR_LEADER_NOT_AVAILABLE && t->known;
        return;
    }
    int32_t count = SP_MIN(r->partitions_count, SP_KAFKA_PARTITIONS_MAX);
    if (count != t->partition_count) {
        sp_arena_free(&client->shard->arena, t->partitions);
        t->partitions = sp_arena_alloc(&client->shard->arena,
                                       (size_t)SP_MAX(count, 1) * sizeof(*t->partitions));
        if (t->partitions == NULL) {
            t->partition_count = 0;
            t->known = false;
            return;
        }
        t->partition_count = count;
        for (int32_t p = 0; p < count; p++)
            t->partitions[p] = (struct sp_kafka_partition_info){-1, -1, 0};
    }
    for (int32_t i = 0; i < r->partitions_count; i++) {
        const struct sp_kafka_metadata_response_metadata_response_partition *p = &r->partitions[i];
        if (p->partition_index < 0 || p->partition_index >= count)
            continue;
        struct sp_kafka_partition_info *info = &t->partitions[p->partition_index];
        info->leader = p->leader_id;
        info->leader_epoch = p->leader_epoch;
        info->error = p->error_code;
    }
    t->known = true;
}

static void metadata_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                          void *ctx)
{
    struct sp_kafka_client *client = ctx;
    (void)conn;
    (void)version;
    client->metadata_inflight = false;
    if (client->closing)
        return;
    if (err < 0) {
        sp_kafka_client_refresh(client);
        return;
    }
    const struct sp_kafka_metadata_response *r = body;
    client->controller_id = version >= 1 ? r->controller_id : -1;
    for (int32_t i = 0; i < r->brokers_count; i++)
        broker_upsert(client, r->brokers[i].node_id, r->brokers[i].host, r->brokers[i].port);
    bool retry = false;
    for (int32_t i = 0; i < r->topics_count; i++) {
        const struct sp_kafka_metadata_response_metadata_response_topic *rt = &r->topics[i];
        for (unsigned j = 0; j < client->topic_count; j++) {
            struct sp_kafka_topic_info *t = &client->topics[j];
            if (sp_kstr_eq(rt->name, t->name)) {
                topic_update(client, t, rt);
                retry |= rt->error_code != 0 && sp_kafka_error_retriable(rt->error_code);
                for (int32_t p = 0; p < t->partition_count; p++)
                    retry |= t->partitions[p].leader < 0;
            }
        }
    }
    client->metadata_ever = true;
    client->metadata_refreshes++;
    if (retry)
        sp_kafka_client_refresh(client);
    else
        metadata_schedule(client, sp_now_ns() + (uint64_t)client->config->metadata_max_age_ms *
                                                    SP_NSEC_PER_MSEC);
    notify(client);
}

static void metadata_send(struct sp_kafka_client *client)
{
    if (client->metadata_inflight || client->closing)
        return;
    struct sp_kafka_conn *conn = sp_kafka_client_any(client);
    if (conn == NULL) {
        /* Connections come up by themselves; ask again then. */
        for (unsigned i = 0; i < client->broker_count; i++)
            sp_kafka_conn_connect(&client->brokers[i].conn);
        metadata_schedule(client, sp_now_ns() + (uint64_t)client->config->retry_backoff_ms *
                                                    SP_NSEC_PER_MSEC);
        return;
    }
    struct sp_kafka_metadata_request_metadata_request_topic topics[SP_KAFKA_CLIENT_TOPICS_MAX];
    for (unsigned i = 0; i < client->topic_count; i++) {
        sp_kafka_metadata_request_metadata_request_topic_init(&topics[i]);
        topics[i].name = sp_kstr_of(client->topics[i].name);
    }
    struct sp_kafka_metadata_request req;
    sp_kafka_metadata_request_init(&req);
    req.topics = topics;
    req.topics_count = (int32_t)client->topic_count;
    /* Before v4 the field does not exist and brokers create as configured. */
    req.allow_auto_topic_creation =
        client->allow_auto_topic_creation || sp_kafka_conn_version(conn, 3) < 4;
    /* v0 reads an empty list as "all topics": ask for one that cannot exist. */
    if (client->topic_count == 0 && sp_kafka_conn_version(conn, 3) == 0) {
        sp_kafka_metadata_request_metadata_request_topic_init(&topics[0]);
        topics[0].name = SP_KSTR("__spate_none");
        req.topics_count = 1;
    }
    int ret = sp_kafka_conn_send(conn, 3, -1, &req, metadata_done, client);
    if (ret < 0) {
        metadata_schedule(client, sp_now_ns() + (uint64_t)client->config->retry_backoff_ms *
                                                    SP_NSEC_PER_MSEC);
        return;
    }
    client->metadata_inflight = true;
    client->metadata_wanted = false;
    client->metadata_last_ns = sp_now_ns();
}

struct sp_kafka_topic_info *sp_kafka_client_topic(struct sp_kafka_client *client, const char *name,
                                                  size_t len, int *err)
{
    *err = 0;
    if (len == 0 || len > SP_KAFKA_TOPIC_NAME_BYTES_MAX) {
        *err = -EINVAL;
        return NULL;
    }
    for (unsigned i = 0; i < client->topic_count; i++) {
        struct sp_kafka_topic_info *t = &client->topics[i];
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
            return t;
    }
    if (client->topic_count == SP_KAFKA_CLIENT_TOPICS_MAX) {
        *err = -ENOSPC;
        return NULL;
    }
    struct sp_kafka_topic_info *t = &client->topics[client->topic_count++];
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    client->metadata_wanted = true;
    metadata_schedule(client, sp_now_ns());
    return t;
}

/* ---- Coordinators ---- */

struct coordinator_req {
    struct sp_kafka_client *client;
    sp_kafka_coordinator_fn *fn;
    void *ctx;
};

static void coordinator_found(struct sp_kafka_conn *conn, int err, const void *body,
                              int16_t version, void *ctx)
{
    struct coordinator_req *req = ctx;
    struct sp_kafka_client *client = req->client;
    (void)conn;
    int16_t code = 0;
    int32_t node = -1;
    if (err == 0) {
        const struct sp_kafka_find_coordinator_response *r = body;
        if (version >= 4 && r->coordinators_count > 0) {
            code = r->coordinators[0].error_code;
            node = r->coordinators[0].node_id;
            if (code == 0)
                broker_upsert(client, node, r->coordinators[0].host, r->coordinators[0].port);
        } else {
            code = r->error_code;
            node = r->node_id;
            if (code == 0)
                broker_upsert(client, node, r->host, r->port);
        }
    }
    sp_kafka_coordinator_fn *fn = req->fn;
    void *fn_ctx = req->ctx;
    sp_arena_free(&client->shard->arena, req);
    fn(client, err, code, node, fn_ctx);
}

int sp_kafka_client_find_coordinator(struct sp_kafka_client *client, int8_t key_type,
                                     const char *key, sp_kafka_coordinator_fn *fn, void *ctx)
{
    struct sp_kafka_conn *conn = sp_kafka_client_any(client);
    if (conn == NULL)
        return -ENOTCONN;
    struct coordinator_req *req = sp_arena_alloc(&client->shard->arena, sizeof(*req));
    if (req == NULL)
        return -ENOBUFS;
    *req = (struct coordinator_req){client, fn, ctx};
    struct sp_kstr k = {key, (int32_t)strlen(key)};
    struct sp_kafka_find_coordinator_request body;
    sp_kafka_find_coordinator_request_init(&body);
    body.key_type = key_type;
    if (sp_kafka_conn_version(conn, 10) >= 4) {
        body.coordinator_keys = &k; /* v4 on: a batch of keys */
        body.coordinator_keys_count = 1;
    } else {
        body.key = k;
    }
    int ret = sp_kafka_conn_send(conn, 10, -1, &body, coordinator_found, req);
    if (ret < 0)
        sp_arena_free(&client->shard->arena, req);
    return ret;
}

/* ---- Life cycle ---- */

int sp_kafka_client_init(struct sp_kafka_client *client, struct sp_shard *shard,
                         const struct sp_kafka_config *config, sp_kafka_client_event_fn *on_change,
                         void *ctx)
{
    SP_ASSERT(client != NULL);
    SP_ASSERT(shard == sp_shard_current());
    memset(client, 0, sizeof(*client));
    client->shard = shard;
    client->config = config;
    client->on_change = on_change;
    client->ctx = ctx;
    client->allow_auto_topic_creation = true;
    client->controller_id = -1;
    snprintf(client->client_id, sizeof(client->client_id), "%s",
             config->client_id[0] != '\0' ? config->client_id : "spate");
    sp_kafka_conn_config_default(&client->conn_config);
    client->conn_config.client_id = client->client_id;
    client->conn_config.request_timeout_ns =
        (uint64_t)config->request_timeout_ms * SP_NSEC_PER_MSEC;
    client->conn_config.connect_timeout_ns =
        (uint64_t)config->socket_connection_setup_timeout_ms * SP_NSEC_PER_MSEC;
    client->conn_config.reconnect_backoff_ns =
        (uint64_t)config->reconnect_backoff_ms * SP_NSEC_PER_MSEC;
    client->conn_config.reconnect_backoff_max_ns =
        (uint64_t)config->reconnect_backoff_max_ms * SP_NSEC_PER_MSEC;
    /* Room for a whole request, and for the largest fetch response asked for. */
    client->conn_config.send_buffer_bytes = (uint32_t)config->max_request_size * 2 + 65536;
    client->conn_config.receive_buffer_bytes =
        (uint32_t)SP_MIN((int64_t)config->fetch_max_bytes, 64 << 20) + (1u << 20);
    sp_timer_init(&client->metadata_timer, metadata_timer_fired, client);
    sp_timer_init(&client->bootstrap_timer, bootstrap_next, client);
    return bootstrap_open(client) < 0 ? -EINVAL : 0;
}

void sp_kafka_client_close(struct sp_kafka_client *client)
{
    client->closing = true;
    sp_shard_timer_cancel(client->shard, &client->metadata_timer);
    sp_shard_timer_cancel(client->shard, &client->bootstrap_timer);
    if (client->bootstrap_in_use)
        sp_kafka_conn_close(&client->bootstrap);
    for (unsigned i = 0; i < client->broker_count; i++)
        if (client->brokers[i].in_use)
            sp_kafka_conn_close(&client->brokers[i].conn);
}

bool sp_kafka_client_idle(const struct sp_kafka_client *client)
{
    if (client->bootstrap_in_use && !sp_kafka_conn_idle(&client->bootstrap))
        return false;
    for (unsigned i = 0; i < client->broker_count; i++)
        if (client->brokers[i].in_use && !sp_kafka_conn_idle(&client->brokers[i].conn))
            return false;
    return true;
}

void sp_kafka_client_deinit(struct sp_kafka_client *client)
{
    SP_ASSERT(sp_kafka_client_idle(client));
    if (client->bootstrap_in_use)
        sp_kafka_conn_deinit(&client->bootstrap);
    for (unsigned i = 0; i < client->broker_count; i++)
        if (client->brokers[i].in_use)
            sp_kafka_conn_deinit(&client->brokers[i].conn);
    for (unsigned i = 0; i < client->topic_count; i++)
        sp_arena_free(&client->shard->arena, client->topics[i].partitions);
    memset(client, 0, sizeof(*client));
}
