/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin calls on crafted responses. librdkafka's mock cluster has no
 * CreateTopics, DeleteTopics, CreatePartitions, ListGroups or
 * DescribeGroups, so a broker written here answers them: a thread on a
 * loopback port that decodes each request with the codec, checks what the
 * client asked, and answers with Kafka's own response structures at the
 * version asked. It plays a one-node cluster whose node 1 is the
 * controller and every group's coordinator, with topic "t" of 3
 * partitions; it says NOT_CONTROLLER to the first CreateTopics and
 * NOT_COORDINATOR to the first DescribeGroups, which the client must retry.
 * A second broker advertises none of the admin APIs: calls fail at once
 * with a message naming the missing API.
 *
 * Against spate's own endpoint (SPATE_PEER=spate: `spate broker` behind
 * tests/kafka-peers/spate_peer.sh) the same calls run on a real broker:
 * topic "t" of 3 partitions holding 3, 5 and 0 records, and group "orders"
 * that a `spate consume -g` left Empty with its commits. The crafted cases
 * skip there (client_admin runs them); the real one skips without it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "client_test.h"
#include "crafted_broker.h"
#include "mock_peer.h"
#include "sp_kafka_admin.h"
#include "sp_log.h"

/* ---- The crafted broker ---- */

struct fake_broker {
    struct crafted_broker server;
    bool admin_apis; /* advertise the admin APIs */
    atomic_int create_topics_calls;
    atomic_int describe_calls;
    atomic_int list_offsets_calls;
    atomic_int last_timestamp_ok;     /* the ListOffsets timestamps were the ones asked */
    _Atomic int64_t expect_timestamp; /* written by the shard, read by the broker */
};

static void answer_create_topics(struct fake_broker *b, int fd, int16_t version, int32_t corr,
                                 const struct sp_kafka_create_topics_request *req)
{
    bool first = atomic_fetch_add(&b->create_topics_calls, 1) == 0;
    struct sp_kafka_create_topics_response_creatable_topic_result res[8];
    int32_t n = 0;
    for (int32_t i = 0; i < req->topics_count && n < 8; i++, n++) {
        const struct sp_kafka_create_topics_request_creatable_topic *t = &req->topics[i];
        sp_kafka_create_topics_response_creatable_topic_result_init(&res[n]);
        res[n].name = t->name;
        if (first) {
            res[n].error_code = 41; /* NOT_CONTROLLER */
        } else if (sp_kstr_eq(t->name, "t")) {
            res[n].error_code = 36; /* TOPIC_ALREADY_EXISTS */
            res[n].error_message = sp_kstr_of("Topic 't' already exists.");
        } else if (t->num_partitions != 6 || t->replication_factor != -1) {
            res[n].error_code = 37; /* INVALID_PARTITIONS: not what the test asked */
        } else {
            res[n].num_partitions = t->num_partitions;
            res[n].replication_factor = 1;
        }
    }
    struct sp_kafka_create_topics_response r;
    sp_kafka_create_topics_response_init(&r);
    r.topics = res;
    r.topics_count = n;
    crafted_send(fd, 19, version, corr, &r);
}

static void answer_delete_topics(int fd, int16_t version, int32_t corr,
                                 const struct sp_kafka_delete_topics_request *req)
{
    struct sp_kafka_delete_topics_response_deletable_topic_result res[8];
    int32_t n = 0;
    int32_t count = version >= 6 ? req->topics_count : req->topic_names_count;
    for (int32_t i = 0; i < count && n < 8; i++, n++) {
        struct sp_kstr name = version >= 6 ? req->topics[i].name : req->topic_names[i];
        sp_kafka_delete_topics_response_deletable_topic_result_init(&res[n]);
        res[n].name = name;
        if (!sp_kstr_eq(name, "t"))
            res[n].error_code = SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    struct sp_kafka_delete_topics_response r;
    sp_kafka_delete_topics_response_init(&r);
    r.responses = res;
    r.responses_count = n;
    crafted_send(fd, 20, version, corr, &r);
}

static void answer_create_partitions(int fd, int16_t version, int32_t corr,
                                     const struct sp_kafka_create_partitions_request *req)
{
    struct sp_kafka_create_partitions_response_create_partitions_topic_result res;
    sp_kafka_create_partitions_response_create_partitions_topic_result_init(&res);
    res.name = req->topics[0].name;
    if (req->topics[0].count <= 3) {
        res.error_code = 37; /* INVALID_PARTITIONS */
        res.error_message = sp_kstr_of("Topic currently has 3 partitions, which is higher than or "
                                       "equal to the requested 3.");
    }
    struct sp_kafka_create_partitions_response r;
    sp_kafka_create_partitions_response_init(&r);
    r.results = &res;
    r.results_count = 1;
    crafted_send(fd, 37, version, corr, &r);
}

static void answer_find_coordinator(struct fake_broker *b, int fd, int16_t version, int32_t corr,
                                    const struct sp_kafka_find_coordinator_request *req)
{
    struct sp_kafka_find_coordinator_response r;
    sp_kafka_find_coordinator_response_init(&r);
    struct sp_kafka_find_coordinator_response_coordinator c;
    sp_kafka_find_coordinator_response_coordinator_init(&c);
    c.key = version >= 4 ? req->coordinator_keys[0] : req->key;
    c.node_id = 1;
    c.host = sp_kstr_of("127.0.0.1");
    c.port = b->server.port;
    if (version >= 4) {
        r.coordinators = &c;
        r.coordinators_count = 1;
    } else {
        r.node_id = 1;
        r.host = c.host;
        r.port = c.port;
    }
    crafted_send(fd, 10, version, corr, &r);
}

static void answer_list_groups(int fd, int16_t version, int32_t corr)
{
    struct sp_kafka_list_groups_response_listed_group g[2];
    sp_kafka_list_groups_response_listed_group_init(&g[0]);
    g[0].group_id = sp_kstr_of("orders");
    g[0].protocol_type = sp_kstr_of("consumer");
    g[0].group_state = sp_kstr_of("Stable");
    sp_kafka_list_groups_response_listed_group_init(&g[1]);
    g[1].group_id = sp_kstr_of("audit");
    g[1].protocol_type = sp_kstr_of("consumer");
    g[1].group_state = sp_kstr_of("Empty");
    struct sp_kafka_list_groups_response r;
    sp_kafka_list_groups_response_init(&r);
    r.groups = g;
    r.groups_count = 2;
    crafted_send(fd, 16, version, corr, &r);
}

static void answer_describe_groups(struct fake_broker *b, int fd, int16_t version, int32_t corr,
                                   const struct sp_kafka_describe_groups_request *req)
{
    bool first = atomic_fetch_add(&b->describe_calls, 1) == 0;
    struct sp_kafka_describe_groups_response_described_group_member members[3];
    for (int i = 0; i < 3; i++) {
        sp_kafka_describe_groups_response_described_group_member_init(&members[i]);
        members[i].member_id = sp_kstr_of(i == 0 ? "m-0" : i == 1 ? "m-1" : "m-2");
        members[i].client_id = sp_kstr_of("spate");
        members[i].client_host = sp_kstr_of("/127.0.0.1");
    }
    struct sp_kafka_describe_groups_response_described_group g[4];
    int32_t n = 0;
    for (int32_t i = 0; i < req->groups_count && n < 4; i++, n++) {
        sp_kafka_describe_groups_response_described_group_init(&g[n]);
        g[n].group_id = req->groups[i];
        if (first) {
            g[n].error_code = SP_KAFKA_ERR_NOT_COORDINATOR;
        } else if (sp_kstr_eq(req->groups[i], "orders")) {
            g[n].group_state = sp_kstr_of("Stable");
            g[n].protocol_type = sp_kstr_of("consumer");
            g[n].protocol_data = sp_kstr_of("cooperative-sticky");
            g[n].members = members;
            g[n].members_count = 3;
        } else {
            g[n].group_state = sp_kstr_of("Dead");
            g[n].error_code = 69; /* GROUP_ID_NOT_FOUND */
        }
    }
    struct sp_kafka_describe_groups_response r;
    sp_kafka_describe_groups_response_init(&r);
    r.groups = g;
    r.groups_count = n;
    crafted_send(fd, 15, version, corr, &r);
}

static void answer_list_offsets(struct fake_broker *b, int fd, int16_t version, int32_t corr,
                                const struct sp_kafka_list_offsets_request *req)
{
    atomic_fetch_add(&b->list_offsets_calls, 1);
    struct sp_kafka_list_offsets_response_list_offsets_partition_response res[8];
    int64_t old[8];
    const struct sp_kafka_list_offsets_request_list_offsets_topic *t = &req->topics[0];
    int32_t n = 0;
    bool ok = req->topics_count == 1 && req->replica_id == -1;
    for (int32_t i = 0; i < t->partitions_count && n < 8; i++, n++) {
        const struct sp_kafka_list_offsets_request_list_offsets_partition *p = &t->partitions[i];
        ok &= p->timestamp == atomic_load(&b->expect_timestamp);
        sp_kafka_list_offsets_response_list_offsets_partition_response_init(&res[n]);
        res[n].partition_index = p->partition_index;
        int64_t offset = p->timestamp == SP_KAFKA_OFFSET_SPEC_EARLIEST ? 10 * p->partition_index
                         : p->timestamp == SP_KAFKA_OFFSET_SPEC_LATEST ? 1000 + p->partition_index
                                                                       : 500 + p->partition_index;
        if (version == 0) {
            old[n] = offset;
            res[n].old_style_offsets = &old[n];
            res[n].old_style_offsets_count = 1;
        } else {
            res[n].offset = offset;
            res[n].timestamp = p->timestamp >= 0 ? p->timestamp + 7 : -1;
        }
    }
    atomic_store(&b->last_timestamp_ok, ok);
    struct sp_kafka_list_offsets_response_list_offsets_topic_response tr;
    sp_kafka_list_offsets_response_list_offsets_topic_response_init(&tr);
    tr.name = t->name;
    tr.partitions = res;
    tr.partitions_count = n;
    struct sp_kafka_list_offsets_response r;
    sp_kafka_list_offsets_response_init(&r);
    r.topics = &tr;
    r.topics_count = 1;
    crafted_send(fd, 2, version, corr, &r);
}

static bool answer(struct crafted_broker *server, int fd, const struct sp_kafka_request_frame *f)
{
    static const int16_t admin_keys[][2] = {
        {3, 12}, {18, 3}, {10, 4}, {2, 7}, {15, 5}, {16, 4}, {19, 7}, {20, 6}, {37, 3},
    };
    struct fake_broker *b = server->ctx;
    int16_t v = f->header.request_api_version;
    int32_t corr = f->header.correlation_id;
    switch (f->header.request_api_key) {
    case 18:
        crafted_api_versions(fd, v, corr, admin_keys, b->admin_apis ? 9 : 4);
        break;
    case 3:
        crafted_metadata(server, fd, v, corr, f->body, 3);
        break;
    case 19:
        answer_create_topics(b, fd, v, corr, f->body);
        break;
    case 20:
        answer_delete_topics(fd, v, corr, f->body);
        break;
    case 37:
        answer_create_partitions(fd, v, corr, f->body);
        break;
    case 10:
        answer_find_coordinator(b, fd, v, corr, f->body);
        break;
    case 16:
        answer_list_groups(fd, v, corr);
        break;
    case 15:
        answer_describe_groups(b, fd, v, corr, f->body);
        break;
    case 2:
        answer_list_offsets(b, fd, v, corr, f->body);
        break;
    default:
        fprintf(stderr, "crafted broker: unexpected API %d\n", f->header.request_api_key);
        return false;
    }
    return true;
}

/* ---- The client side ---- */

enum step {
    CREATE,
    CREATE_ONE_BAD,
    DELETE,
    PARTITIONS_BAD,
    PARTITIONS,
    LIST_GROUPS,
    DESCRIBE,
    OFFSETS_EARLIEST,
    OFFSETS_LATEST,
    OFFSETS_TIME,
    /* Against spate broker only (the crafted broker lacks these APIs). */
    DELETE_RECORDS,
    OFFSETS_AFTER_DELETE,
    CLUSTER,
    CONFIGS_TOPIC,
    CONFIGS_BROKER,
    CONFIGS_NO_TOPIC,
    STEPS,
};

struct saved {
    int err;
    char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
    unsigned count;
    struct sp_kafka_admin_item items[4];
    /* Describe configs: cleanup.policy's item, if there was one. */
    bool has_policy;
    struct sp_kafka_admin_item policy;
};

struct admin_case {
    struct fake_broker *broker; /* NULL against spate broker */
    struct sp_kafka_config config;
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_timer timer;
    enum step step;
    enum step last;
    bool waiting;
    struct saved results[STEPS];
};

static void next_step(struct sp_timer *timer, void *ctx);

static void answered(struct sp_kafka_client *client, const struct sp_kafka_admin_result *r,
                     void *ctx)
{
    struct admin_case *c = ctx;
    (void)client;
    struct saved *s = &c->results[c->step];
    s->err = r->err;
    snprintf(s->message, sizeof(s->message), "%s", r->message);
    s->count = r->count;
    for (unsigned i = 0; i < r->count && i < SP_ARRAY_LEN(s->items); i++)
        s->items[i] = r->items[i];
    for (unsigned i = 0; i < r->count; i++) {
        if (strcmp(r->items[i].name, "cleanup.policy") == 0) {
            s->has_policy = true;
            s->policy = r->items[i];
        }
    }
    c->waiting = false;
    c->step = c->step == c->last ? STEPS : c->step + 1;
    sp_shard_timer_arm(c->shard, &c->timer, sp_now_ns());
}

static void next_step(struct sp_timer *timer, void *ctx)
{
    struct admin_case *c = ctx;
    (void)timer;
    struct sp_kafka_client *cl = &c->client;
    const int32_t timeout = 5000;
    int ret = 0;
    static const int32_t parts[3] = {0, 1, 2};
    switch (c->step) {
    case CREATE: {
        const struct sp_kafka_new_topic t = {"fresh", 6, -1};
        ret = sp_kafka_admin_create_topics(cl, &t, 1, timeout, answered, c);
        break;
    }
    case CREATE_ONE_BAD: {
        const struct sp_kafka_new_topic t[2] = {{"t", 3, -1}, {"other", 6, -1}};
        ret = sp_kafka_admin_create_topics(cl, t, 2, timeout, answered, c);
        break;
    }
    case DELETE: {
        /* spate broker: keep "t" for the steps after. */
        const char *names[2] = {c->broker != NULL ? "t" : "other", "nope"};
        ret = sp_kafka_admin_delete_topics(cl, names, 2, timeout, answered, c);
        break;
    }
    case PARTITIONS_BAD:
        ret = sp_kafka_admin_create_partitions(cl, "t", 3, timeout, answered, c);
        break;
    case PARTITIONS:
        ret = sp_kafka_admin_create_partitions(cl, "t", 8, timeout, answered, c);
        break;
    case LIST_GROUPS:
        ret = sp_kafka_admin_list_groups(cl, timeout, answered, c);
        break;
    case DESCRIBE: {
        const char *groups[2] = {"orders", "ghost"};
        ret = sp_kafka_admin_describe_groups(cl, groups, 2, timeout, answered, c);
        break;
    }
    case OFFSETS_EARLIEST:
    case OFFSETS_LATEST:
    case OFFSETS_TIME: {
        int64_t ts = c->step == OFFSETS_EARLIEST ? SP_KAFKA_OFFSET_SPEC_EARLIEST
                     : c->step == OFFSETS_LATEST ? SP_KAFKA_OFFSET_SPEC_LATEST
                                                 : 1700000000000;
        if (c->broker != NULL)
            atomic_store(&c->broker->expect_timestamp, ts);
        ret = sp_kafka_admin_list_offsets(cl, "t", parts, 3, ts, 0, timeout, answered, c);
        break;
    }
    case DELETE_RECORDS: {
        /* Partition 0 up to offset 2, partition 1 all of it. */
        const int64_t to[2] = {2, SP_KAFKA_DELETE_RECORDS_ALL};
        ret = sp_kafka_admin_delete_records(cl, "t", parts, to, 2, timeout, answered, c);
        break;
    }
    case OFFSETS_AFTER_DELETE:
        ret = sp_kafka_admin_list_offsets(cl, "t", parts, 3, SP_KAFKA_OFFSET_SPEC_EARLIEST, 0,
                                          timeout, answered, c);
        break;
    case CLUSTER:
        ret = sp_kafka_admin_describe_cluster(cl, timeout, answered, c);
        break;
    case CONFIGS_TOPIC:
        ret = sp_kafka_admin_describe_configs(cl, SP_KAFKA_CONFIG_RESOURCE_TOPIC, "t", timeout,
                                              answered, c);
        break;
    case CONFIGS_BROKER: {
        char node[16];
        snprintf(node, sizeof(node), "%d", (int)c->results[CLUSTER].items[0].coordinator);
        ret = sp_kafka_admin_describe_configs(cl, SP_KAFKA_CONFIG_RESOURCE_BROKER, node, timeout,
                                              answered, c);
        break;
    }
    case CONFIGS_NO_TOPIC:
        ret = sp_kafka_admin_describe_configs(cl, SP_KAFKA_CONFIG_RESOURCE_TOPIC, "nope", timeout,
                                              answered, c);
        break;
    case STEPS:
        client_test_finish(cl, &c->timer);
        return;
    }
    assert_int_equal(ret, 0);
    c->waiting = true;
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct admin_case *c = ctx;
    c->shard = shard;
    sp_timer_init(&c->timer, next_step, c);
    assert_int_equal(sp_kafka_client_init(&c->client, shard, &c->config, NULL, NULL), 0);
    sp_shard_timer_arm(shard, &c->timer, sp_now_ns());
}

static void run_case(struct admin_case *c, struct fake_broker *b, enum step first, enum step last)
{
    assert_int_equal(crafted_start(&b->server, answer, b), 0);
    c->broker = b;
    c->step = first;
    c->last = last;
    char bootstrap[64];
    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%u", b->server.port);
    const char *const props[] = {"bootstrap.servers", bootstrap, "retry.backoff.ms", "10", NULL};
    client_test_config(&c->config, props);
    client_test_run(start, c);
    crafted_stop(&b->server);
}

static void test_admin_calls_on_crafted_responses(void **state)
{
    (void)state;
    if (mock_peer_is_spate())
        skip(); /* the crafted broker's case: client_admin runs it */
    static struct fake_broker b;
    static struct admin_case c;
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    b.admin_apis = true;
    run_case(&c, &b, CREATE, OFFSETS_TIME);
    const struct saved *r = c.results;

    /* NOT_CONTROLLER the first time, then created. */
    assert_int_equal(r[CREATE].err, 0);
    assert_int_equal(r[CREATE].count, 1);
    assert_int_equal(r[CREATE].items[0].error, 0);
    assert_int_equal(r[CREATE].items[0].partitions, 6);
    assert_true(atomic_load(&b.create_topics_calls) >= 3);
    /* One item fails with the broker's message, the other succeeds. */
    assert_int_equal(r[CREATE_ONE_BAD].err, 0);
    assert_int_equal(r[CREATE_ONE_BAD].items[0].error, 36);
    assert_string_equal(r[CREATE_ONE_BAD].items[0].message, "Topic 't' already exists.");
    assert_int_equal(r[CREATE_ONE_BAD].items[1].error, 0);

    assert_int_equal(r[DELETE].err, 0);
    assert_int_equal(r[DELETE].items[0].error, 0);
    assert_int_equal(r[DELETE].items[1].error, SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);

    assert_int_equal(r[PARTITIONS_BAD].items[0].error, 37);
    assert_non_null(strstr(r[PARTITIONS_BAD].items[0].message, "currently has 3 partitions"));
    assert_int_equal(r[PARTITIONS].items[0].error, 0);

    assert_int_equal(r[LIST_GROUPS].err, 0);
    assert_int_equal(r[LIST_GROUPS].count, 2);
    assert_string_equal(r[LIST_GROUPS].items[0].name, "orders");
    assert_string_equal(r[LIST_GROUPS].items[0].state, "Stable");
    assert_string_equal(r[LIST_GROUPS].items[1].name, "audit");
    assert_string_equal(r[LIST_GROUPS].items[1].protocol_type, "consumer");

    /* NOT_COORDINATOR the first time: looked up again and retried. */
    assert_int_equal(r[DESCRIBE].err, 0);
    assert_true(atomic_load(&b.describe_calls) >= 3);
    assert_int_equal(r[DESCRIBE].items[0].error, 0);
    assert_string_equal(r[DESCRIBE].items[0].state, "Stable");
    assert_string_equal(r[DESCRIBE].items[0].protocol, "cooperative-sticky");
    assert_int_equal(r[DESCRIBE].items[0].members, 3);
    assert_int_equal(r[DESCRIBE].items[0].coordinator, 1);
    assert_int_equal(r[DESCRIBE].items[1].error, 69);

    for (int p = 0; p < 3; p++) {
        assert_int_equal(r[OFFSETS_EARLIEST].items[p].partition, p);
        assert_int_equal(r[OFFSETS_EARLIEST].items[p].offset, 10 * p);
        assert_int_equal(r[OFFSETS_LATEST].items[p].offset, 1000 + p);
        assert_int_equal(r[OFFSETS_TIME].items[p].offset, 500 + p);
        assert_int_equal(r[OFFSETS_TIME].items[p].timestamp, 1700000000007);
    }
    /* All three partitions share a leader: one request each time. */
    assert_int_equal(atomic_load(&b.list_offsets_calls), 3);
    assert_true(atomic_load(&b.last_timestamp_ok));
}

static void test_missing_admin_api_is_named(void **state)
{
    (void)state;
    if (mock_peer_is_spate())
        skip();
    static struct fake_broker b;
    static struct admin_case c;
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    b.admin_apis = false;
    run_case(&c, &b, CREATE, CREATE);
    assert_int_equal(c.results[CREATE].err, -ENOTSUP);
    char want[128];
    snprintf(want, sizeof(want),
             "the broker at 127.0.0.1:%u does not support CreateTopics (API 19)", b.server.port);
    assert_string_equal(c.results[CREATE].message, want);
    assert_int_equal(atomic_load(&b.create_topics_calls), 0);

    /* The same for the calls asked of any broker, on a broker of its own:
     * the first one's connection threads may still be reading theirs. */
    static struct fake_broker b2;
    memset(&b2, 0, sizeof(b2));
    memset(&c, 0, sizeof(c));
    run_case(&c, &b2, CLUSTER, CLUSTER);
    assert_int_equal(c.results[CLUSTER].err, -ENOTSUP);
    snprintf(want, sizeof(want),
             "the broker at 127.0.0.1:%u does not support DescribeCluster (API 60)",
             b2.server.port);
    assert_string_equal(c.results[CLUSTER].message, want);
}

static void test_bad_arguments_are_refused(void **state)
{
    (void)state;
    struct sp_kafka_client client;
    memset(&client, 0, sizeof(client));
    const struct sp_kafka_new_topic zero = {"x", 0, -1};
    assert_int_equal(sp_kafka_admin_create_topics(&client, &zero, 0, 1000, answered, NULL),
                     -EINVAL);
    assert_int_equal(sp_kafka_admin_create_partitions(&client, "t", 0, 1000, answered, NULL),
                     -EINVAL);
    const int32_t p = 0;
    assert_int_equal(sp_kafka_admin_list_offsets(&client, "t", &p, 1, -3, 0, 1000, answered, NULL),
                     -EINVAL);
    assert_int_equal(sp_kafka_admin_list_offsets(&client, "t", &p, 1, -1, 2, 1000, answered, NULL),
                     -EINVAL);
    const int64_t before = -2;
    assert_int_equal(
        sp_kafka_admin_delete_records(&client, "t", &p, &before, 1, 1000, answered, NULL), -EINVAL);
    assert_int_equal(sp_kafka_admin_describe_configs(&client, 3, "t", 1000, answered, NULL),
                     -EINVAL);
}

/* Runs a shell command formatted as printf does; fails the test unless it exits 0. */
static void shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void shell(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    if (system(cmd) != 0)
        fail_msg("failed: %s", cmd);
}

static void test_admin_calls_against_spate_broker(void **state)
{
    (void)state;
    mock_peer_needs_spate();
    static struct mock_peer peer;
    static struct admin_case c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"--topic", "t:3", NULL};
    assert_int_equal(mock_peer_start(&peer, args), 0);
    const char *spate = getenv("SPATE_BIN");
    assert_non_null(spate);
    /* 3 records on partition 0, 5 on 1, none on 2; group "orders" reads
     * them, commits and leaves (Empty). */
    shell("printf 'a\\nb\\nc\\n' | timeout 30 %s --cores 1 produce -b %s -t t -p 0 2>/dev/null",
          spate, peer.bootstrap);
    shell("seq 5 | timeout 30 %s --cores 1 produce -b %s -t t -p 1 2>/dev/null", spate,
          peer.bootstrap);
    shell("timeout 60 %s --cores 1 consume -b %s -t t -g orders --from-beginning --count 8 "
          ">/dev/null 2>&1",
          spate, peer.bootstrap);

    c.step = CREATE;
    c.last = CONFIGS_NO_TOPIC;
    const char *const props[] = {"bootstrap.servers", peer.bootstrap, "retry.backoff.ms", "10",
                                 NULL};
    client_test_config(&c.config, props);
    client_test_run(start, &c);
    char host[sizeof(peer.host)];
    snprintf(host, sizeof(host), "%s", peer.host);
    unsigned short port = peer.port;
    mock_peer_stop(&peer);
    const struct saved *r = c.results;
    for (unsigned i = 0; i < CONFIGS_TOPIC; i++)
        for (unsigned k = 0; k < r[i].count && k < SP_ARRAY_LEN(r[i].items); k++)
            if (r[i].items[k].message[0] != '\0')
                fprintf(stderr, "step %u item %u: %d %s\n", i, k, r[i].items[k].error,
                        r[i].items[k].message);

    assert_int_equal(r[CREATE].err, 0);
    assert_int_equal(r[CREATE].count, 1);
    assert_int_equal(r[CREATE].items[0].error, 0);
    assert_int_equal(r[CREATE].items[0].partitions, 6);
    assert_int_equal(r[CREATE_ONE_BAD].err, 0);
    assert_int_equal(r[CREATE_ONE_BAD].items[0].error, 36); /* TOPIC_ALREADY_EXISTS */
    assert_int_equal(r[CREATE_ONE_BAD].items[1].error, 0);

    assert_int_equal(r[DELETE].err, 0);
    assert_int_equal(r[DELETE].items[0].error, 0);
    assert_int_equal(r[DELETE].items[1].error, SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);

    assert_int_equal(r[PARTITIONS_BAD].err, 0);
    assert_int_equal(r[PARTITIONS_BAD].items[0].error, 37); /* INVALID_PARTITIONS */
    assert_int_equal(r[PARTITIONS].err, 0);
    assert_int_equal(r[PARTITIONS].items[0].error, 0);

    assert_int_equal(r[LIST_GROUPS].err, 0);
    bool listed = false;
    for (unsigned i = 0; i < r[LIST_GROUPS].count && i < SP_ARRAY_LEN(r[LIST_GROUPS].items); i++)
        if (strcmp(r[LIST_GROUPS].items[i].name, "orders") == 0) {
            listed = true;
            /* Kafka keeps an Empty group's protocol type ("consumer");
             * spate broker clears it when the group goes Empty (reported). */
            const char *type = r[LIST_GROUPS].items[i].protocol_type;
            if (strcmp(type, "consumer") != 0 && strcmp(type, "") != 0)
                fail_msg("group orders: protocol type '%s'", type);
        }
    assert_true(listed);

    assert_int_equal(r[DESCRIBE].err, 0);
    assert_int_equal(r[DESCRIBE].items[0].error, 0);
    assert_string_equal(r[DESCRIBE].items[0].state, "Empty");
    assert_int_equal(r[DESCRIBE].items[0].members, 0);
    /* An unknown group: Dead (Kafka before KIP-1043) or GROUP_ID_NOT_FOUND. */
    if (r[DESCRIBE].items[1].error != 69)
        assert_string_equal(r[DESCRIBE].items[1].state, "Dead");

    static const int64_t latest[3] = {3, 5, 0};
    for (int p = 0; p < 3; p++) {
        assert_int_equal(r[OFFSETS_EARLIEST].items[p].error, 0);
        assert_int_equal(r[OFFSETS_EARLIEST].items[p].partition, p);
        assert_int_equal(r[OFFSETS_EARLIEST].items[p].offset, 0);
        assert_int_equal(r[OFFSETS_LATEST].items[p].offset, latest[p]);
        /* By time: the first record at or after 2023-11-14, none on the empty one. */
        assert_int_equal(r[OFFSETS_TIME].items[p].offset, p == 2 ? -1 : 0);
        if (p != 2)
            assert_true(r[OFFSETS_TIME].items[p].timestamp >= 1700000000000);
    }

    /* DeleteRecords: the new log starts, and ListOffsets agrees. */
    assert_int_equal(r[DELETE_RECORDS].err, 0);
    assert_int_equal(r[DELETE_RECORDS].count, 2);
    assert_int_equal(r[DELETE_RECORDS].items[0].error, 0);
    assert_int_equal(r[DELETE_RECORDS].items[0].offset, 2);
    assert_int_equal(r[DELETE_RECORDS].items[1].error, 0);
    assert_int_equal(r[DELETE_RECORDS].items[1].offset, 5);
    assert_int_equal(r[OFFSETS_AFTER_DELETE].items[0].offset, 2);
    assert_int_equal(r[OFFSETS_AFTER_DELETE].items[1].offset, 5);
    assert_int_equal(r[OFFSETS_AFTER_DELETE].items[2].offset, 0);

    /* DescribeCluster: one node, the controller, where we connected. */
    assert_int_equal(r[CLUSTER].err, 0);
    assert_int_equal(r[CLUSTER].count, 1);
    assert_int_equal(r[CLUSTER].items[0].error, 0);
    assert_string_equal(r[CLUSTER].items[0].name, host);
    assert_int_equal(r[CLUSTER].items[0].port, port);
    assert_true(r[CLUSTER].items[0].controller);
    assert_true(r[CLUSTER].items[0].protocol[0] != '\0'); /* the cluster id */

    /* DescribeConfigs: the topic's and the broker's, cleanup.policy a default "delete". */
    assert_int_equal(r[CONFIGS_TOPIC].err, 0);
    assert_true(r[CONFIGS_TOPIC].count >= 2);
    assert_true(r[CONFIGS_TOPIC].has_policy);
    assert_string_equal(r[CONFIGS_TOPIC].policy.message, "delete");
    assert_int_equal(r[CONFIGS_TOPIC].policy.error, 0);
    assert_int_equal(r[CONFIGS_TOPIC].policy.config_source, 5); /* DEFAULT_CONFIG */
    assert_true(r[CONFIGS_TOPIC].policy.is_default);
    assert_int_equal(r[CONFIGS_BROKER].err, 0);
    assert_true(r[CONFIGS_BROKER].count >= 1);
    for (unsigned i = 0; i < r[CONFIGS_BROKER].count && i < SP_ARRAY_LEN(r->items); i++)
        assert_int_equal(r[CONFIGS_BROKER].items[i].error, 0);
    /* A topic that is not there: one item with the error, at once. */
    assert_int_equal(r[CONFIGS_NO_TOPIC].err, 0);
    assert_int_equal(r[CONFIGS_NO_TOPIC].count, 1);
    assert_string_equal(r[CONFIGS_NO_TOPIC].items[0].name, "nope");
    assert_int_equal(r[CONFIGS_NO_TOPIC].items[0].error, SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_calls_on_crafted_responses),
        cmocka_unit_test(test_missing_admin_api_is_named),
        cmocka_unit_test(test_bad_arguments_are_refused),
        cmocka_unit_test(test_admin_calls_against_spate_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
