/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The classic consumer group protocol (see sp_kafka_group.h). One state
 * machine per member; at most one of FindCoordinator, JoinGroup, SyncGroup,
 * OffsetFetch and LeaveGroup in flight (main_inflight), heartbeats and
 * commits only while no JoinGroup or SyncGroup is. Every response handler
 * first checks that the group still waits for it (state and flags), so an
 * answer that arrives after the group moved on changes nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sp_kafka_assignor.h"
#include "sp_kafka_group.h"
#include "sp_log.h"

#define API_OFFSET_COMMIT 8
#define API_OFFSET_FETCH 9
#define API_JOIN_GROUP 11
#define API_HEARTBEAT 12
#define API_LEAVE_GROUP 13
#define API_SYNC_GROUP 14

#define ERR_ILLEGAL_GENERATION 22
#define ERR_UNKNOWN_MEMBER_ID 25
#define ERR_MEMBER_ID_REQUIRED 79

#define SUBSCRIPTION_VERSION 1 /* topics, user data, owned partitions */
#define ASSIGNMENT_VERSION 1

static void group_step(struct sp_kafka_group *g);
static void group_rejoin(struct sp_kafka_group *g);

/* ---- Small helpers ---- */

static uint64_t ms_ns(int64_t ms)
{
    return (uint64_t)(ms > 0 ? ms : 0) * SP_NSEC_PER_MSEC;
}

/* The header keeps assignors as const void * (see the tag clash above). */
static const struct sp_kafka_assignor *assignor_at(const struct sp_kafka_group *g, unsigned i)
{
    SP_ASSERT(i < g->assignor_count);
    return g->assignors[i];
}

static const struct sp_kafka_assignor *protocol_of(const struct sp_kafka_group *g)
{
    SP_ASSERT(g->protocol != NULL);
    return g->protocol;
}

static struct sp_kafka_conn *coord_conn(struct sp_kafka_group *g)
{
    return g->coord >= 0 ? &g->conns[g->coord] : NULL;
}

static bool coord_ready(struct sp_kafka_group *g)
{
    struct sp_kafka_conn *conn = coord_conn(g);
    return conn != NULL && sp_kafka_conn_ready(conn);
}

static struct sp_kstr member_kstr(const struct sp_kafka_group *g)
{
    return (struct sp_kstr){g->member_id, g->member_id_len};
}

static void retry_in(struct sp_kafka_group *g, uint64_t delay_ns)
{
    uint64_t at = sp_now_ns() + delay_ns;
    if (!sp_timer_armed(&g->retry_timer) || g->retry_timer.deadline_ns > at)
        sp_shard_timer_arm(g->client->shard, &g->retry_timer, at);
}

static void retry_backoff(struct sp_kafka_group *g)
{
    retry_in(g, ms_ns(g->config->retry_backoff_ms));
}

static bool is_coordinator_error(int16_t code)
{
    return code == SP_KAFKA_ERR_COORDINATOR_NOT_AVAILABLE || code == SP_KAFKA_ERR_NOT_COORDINATOR;
}

static bool terminal(const struct sp_kafka_group *g)
{
    return g->state == SP_KAFKA_GROUP_LEAVING || g->state == SP_KAFKA_GROUP_CLOSED;
}

/* The consumer's position of `p`, or p->offset when it does not hold it. */
static int64_t position_of(const struct sp_kafka_group *g, const struct sp_kafka_group_partition *p)
{
    const struct sp_kafka_consumer *c = g->consumer;
    for (unsigned i = 0; i < c->part_count; i++)
        if (c->parts[i].topic == p->topic && c->parts[i].partition == p->partition)
            return c->parts[i].offset;
    return p->offset;
}

static bool part_in(const struct sp_kafka_group_partition *set, unsigned count,
                    const struct sp_kafka_group_partition *p)
{
    for (unsigned i = 0; i < count; i++)
        if (set[i].topic == p->topic && set[i].partition == p->partition)
            return true;
    return false;
}

/* Refreshes every owned partition's offset to the consumer's position. */
static void owned_positions(struct sp_kafka_group *g)
{
    for (unsigned i = 0; i < g->owned_count; i++)
        g->owned[i].offset = position_of(g, &g->owned[i]);
}

/*
 * Makes the consumer hold exactly owned[] (kept partitions resume from their
 * positions): the consumer can only unassign everything.
 */
static void consumer_sync(struct sp_kafka_group *g)
{
    owned_positions(g);
    sp_kafka_consumer_unassign(g->consumer);
    for (unsigned i = 0; i < g->owned_count; i++) {
        const struct sp_kafka_group_partition *p = &g->owned[i];
        int ret = sp_kafka_consumer_assign(g->consumer, p->topic->name, p->partition, p->offset);
        if (ret < 0)
            sp_warn("kafka group %s: cannot assign %s-%d: %s", g->config->group_id, p->topic->name,
                    p->partition, strerror(-ret));
    }
}

/* ---- Coordinator connection ---- */

static void coord_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)err;
    if (up && conn == coord_conn(g) && g->state == SP_KAFKA_GROUP_CONNECTING)
        group_step(g);
}

/* Forgets the coordinator: its connection closes, the next step finds another. */
static void coord_lost(struct sp_kafka_group *g, const char *why)
{
    sp_debug("kafka group %s: coordinator %d lost: %s", g->config->group_id, g->coordinator_id,
             why);
    if (g->coord >= 0)
        sp_kafka_conn_close(&g->conns[g->coord]);
    g->coord = -1;
    g->coordinator_id = -1;
}

/* Opens a connection to the coordinator at host:port; 0 or -errno. */
static int coord_open(struct sp_kafka_group *g, int32_t node_id, struct sp_kstr host, int32_t port)
{
    char name[SP_KAFKA_HOST_BYTES_MAX];
    if (host.len <= 0 || (size_t)host.len >= sizeof(name) || port <= 0 || port > 65535)
        return -EBADMSG;
    memcpy(name, host.ptr, (size_t)host.len);
    name[host.len] = '\0';
    struct sp_kafka_conn *cur = coord_conn(g);
    if (cur != NULL && cur->port == port && strcmp(cur->host, name) == 0 &&
        cur->state != SP_KAFKA_CONN_CLOSING && !cur->closing_by_owner) {
        g->coordinator_id = node_id;
        return 0;
    }
    if (cur != NULL)
        coord_lost(g, "moved");
    for (int slot = 0; slot < 2; slot++) {
        if (g->conn_in_use[slot]) {
            if (!sp_kafka_conn_idle(&g->conns[slot]))
                continue;
            sp_kafka_conn_deinit(&g->conns[slot]);
            g->conn_in_use[slot] = false;
        }
        int ret = sp_kafka_conn_init(&g->conns[slot], g->client->shard, &g->conn_config, name,
                                     (uint16_t)port, node_id, coord_state, g);
        if (ret < 0)
            return ret;
        g->conn_in_use[slot] = true;
        g->coord = slot;
        g->coordinator_id = node_id;
        sp_kafka_conn_connect(&g->conns[slot]);
        return 0;
    }
    return -EBUSY; /* both slots still draining */
}

/* ---- FindCoordinator ---- */

static void find_done(struct sp_kafka_client *client, int err, int16_t code, int32_t node,
                      void *ctx)
{
    struct sp_kafka_group *g = ctx;
    g->main_inflight = false;
    if (g->state != SP_KAFKA_GROUP_FINDING) {
        group_step(g);
        return;
    }
    if (err < 0) {
        retry_backoff(g);
        return;
    }
    if (code != 0) {
        sp_debug("kafka group %s: FindCoordinator: %s", g->config->group_id,
                 sp_kafka_error_name(code));
        retry_backoff(g);
        return;
    }
    /* The client recorded the coordinator's address with its brokers. */
    const struct sp_kafka_conn *addr = NULL;
    for (unsigned i = 0; i < client->broker_count && addr == NULL; i++)
        if (client->brokers[i].in_use && client->brokers[i].node_id == node)
            addr = &client->brokers[i].conn;
    int ret =
        addr == NULL ? -ENOENT : coord_open(g, node, sp_kstr_of(addr->host), (int32_t)addr->port);
    if (ret < 0) {
        sp_warn("kafka group %s: coordinator %d: %s", g->config->group_id, node, strerror(-ret));
        retry_backoff(g);
        return;
    }
    g->state = SP_KAFKA_GROUP_CONNECTING;
    group_step(g);
}

static void find_send(struct sp_kafka_group *g)
{
    if (sp_kafka_client_find_coordinator(g->client, SP_KAFKA_COORDINATOR_GROUP, g->config->group_id,
                                         find_done, g) < 0) {
        retry_backoff(g);
        return;
    }
    g->main_inflight = true;
}

/* ---- Revocation ---- */

static void call_parts(struct sp_kafka_group *g, sp_kafka_group_partitions_fn *fn,
                       const struct sp_kafka_group_partition *parts, unsigned count)
{
    if (fn != NULL && count > 0)
        fn(g, parts, count, g->cb.ctx);
}

/* Every owned partition is gone (lost: no commit, someone else may own them). */
static void lose_all(struct sp_kafka_group *g)
{
    if (g->owned_count == 0)
        return;
    owned_positions(g);
    sp_kafka_consumer_unassign(g->consumer);
    unsigned count = g->owned_count;
    g->owned_count = 0;
    call_parts(g, g->cb.lost, g->owned, count);
}

static void reset_generation(struct sp_kafka_group *g, bool member_too)
{
    g->generation_id = -1;
    if (member_too)
        g->member_id_len = 0;
}

/* ---- Commits ---- */

int16_t sp_kafka_offset_commit_error(const struct sp_kafka_offset_commit_response *r)
{
    for (int32_t t = 0; t < r->topics_count; t++)
        for (int32_t p = 0; p < r->topics[t].partitions_count; p++)
            if (r->topics[t].partitions[p].error_code != 0)
                return r->topics[t].partitions[p].error_code;
    return 0;
}

static void commit_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                        void *ctx)
{
    struct sp_kafka_group_commit_slot *slot = ctx;
    struct sp_kafka_group *g = slot->group;
    (void)conn;
    (void)version;
    SP_ASSERT(slot->in_use);
    SP_ASSERT(g->commits_inflight > 0);
    g->commits_inflight--;
    int16_t code = err == 0 ? sp_kafka_offset_commit_error(body) : 0;
    if (code != 0)
        err = -EPROTO;
    if (err == 0) {
        g->commits_ok++;
    } else {
        g->commits_failed++;
        sp_debug("kafka group %s: commit failed: %s", g->config->group_id,
                 code != 0 ? sp_kafka_error_name(code) : strerror(-err));
        if (is_coordinator_error(code) && !terminal(g) && g->state == SP_KAFKA_GROUP_STABLE) {
            coord_lost(g, sp_kafka_error_name(code));
            g->state = SP_KAFKA_GROUP_FINDING;
            group_step(g);
        }
    }
    sp_kafka_group_commit_fn *fn = slot->fn;
    void *fn_ctx = slot->ctx;
    slot->in_use = false;
    if (fn != NULL)
        fn(g, err, code, fn_ctx);
}

/*
 * Sends OffsetCommit for `parts` (their offset fields; negative ones are
 * skipped). 0 with `fn` to come; 1 when there was nothing to commit (`fn`
 * not called); -errno.
 */
static int commit_send(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                       unsigned count, sp_kafka_group_commit_fn *fn, void *ctx)
{
    struct sp_kafka_conn *conn = coord_conn(g);
    if (conn == NULL || !sp_kafka_conn_ready(conn) || g->generation_id < 0)
        return -ENOTCONN;
    struct sp_kafka_group_commit_slot *slot = NULL;
    for (unsigned i = 0; i < SP_KAFKA_GROUP_COMMITS_MAX; i++)
        if (!g->commits[i].in_use) {
            slot = &g->commits[i];
            break;
        }
    if (slot == NULL)
        return -EBUSY;
    struct sp_kafka_offset_commit_request_offset_commit_request_partition *cps = g->commit_scratch;
    struct sp_kafka_offset_commit_request_offset_commit_request_topic
        cts[SP_KAFKA_GROUP_TOPICS_MAX];
    unsigned cp_count = 0, ct_count = 0;
    /* Topic by topic, so that each topic's partitions are contiguous. */
    for (unsigned t = 0; t < g->client->topic_count && ct_count < SP_ARRAY_LEN(cts); t++) {
        struct sp_kafka_topic_info *topic = &g->client->topics[t];
        unsigned first = cp_count;
        for (unsigned i = 0; i < count && cp_count < SP_KAFKA_GROUP_PARTITIONS_MAX; i++) {
            if (parts[i].topic != topic || parts[i].offset < 0)
                continue;
            struct sp_kafka_offset_commit_request_offset_commit_request_partition *cp =
                &cps[cp_count++];
            sp_kafka_offset_commit_request_offset_commit_request_partition_init(cp);
            cp->partition_index = parts[i].partition;
            cp->committed_offset = parts[i].offset;
            cp->committed_leader_epoch = -1;
            cp->commit_timestamp = -1;
            cp->committed_metadata = SP_KSTR("");
        }
        if (cp_count > first) {
            struct sp_kafka_offset_commit_request_offset_commit_request_topic *ct =
                &cts[ct_count++];
            sp_kafka_offset_commit_request_offset_commit_request_topic_init(ct);
            ct->name = sp_kstr_of(topic->name);
            ct->partitions = &cps[first];
            ct->partitions_count = (int32_t)(cp_count - first);
        }
    }
    if (cp_count == 0)
        return 1;
    struct sp_kafka_offset_commit_request req;
    sp_kafka_offset_commit_request_init(&req);
    req.group_id = sp_kstr_of(g->config->group_id);
    req.generation_id_or_member_epoch = g->generation_id;
    req.member_id = member_kstr(g);
    req.group_instance_id = SP_KSTR_NULL;
    req.retention_time_ms = -1;
    req.topics = cts;
    req.topics_count = (int32_t)ct_count;
    *slot = (struct sp_kafka_group_commit_slot){g, fn, ctx, true};
    int ret = sp_kafka_conn_send(conn, API_OFFSET_COMMIT, -1, &req, commit_done, slot);
    if (ret < 0) {
        slot->in_use = false;
        return ret;
    }
    g->commits_inflight++;
    return 0;
}

int sp_kafka_group_commit(struct sp_kafka_group *g, sp_kafka_group_commit_fn *fn, void *ctx)
{
    SP_ASSERT(g != NULL);
    if (g->state != SP_KAFKA_GROUP_STABLE)
        return -ENOTCONN;
    owned_positions(g);
    int ret = commit_send(g, g->owned, g->owned_count, fn, ctx);
    if (ret == 1) {
        if (fn != NULL)
            fn(g, 0, 0, ctx);
        return 0;
    }
    return ret;
}

static void auto_commit_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)timer;
    if (terminal(g))
        return;
    if (g->state == SP_KAFKA_GROUP_STABLE && g->commits_inflight == 0) {
        int ret = sp_kafka_group_commit(g, NULL, NULL);
        if (ret < 0)
            sp_debug("kafka group %s: auto-commit: %s", g->config->group_id, strerror(-ret));
    }
    sp_shard_timer_arm(g->client->shard, &g->commit_timer,
                       sp_now_ns() + ms_ns(g->config->auto_commit_interval_ms));
}

/* ---- JoinGroup ---- */

/* A subscription's bytes for `assignor`, in the work arena; len -1 on failure. */
static struct sp_kbytes subscription_bytes(struct sp_kafka_group *g,
                                           const struct sp_kafka_assignor *assignor,
                                           uint8_t user_data[SP_KAFKA_COOPERATIVE_USER_DATA_BYTES])
{
    struct sp_kbytes none = {NULL, -1};
    struct sp_kstr *names = sp_karena_alloc(&g->work, g->topic_count * sizeof(*names));
    struct sp_kafka_consumer_protocol_subscription_topic_partition *owned =
        sp_karena_alloc(&g->work, SP_MAX(g->topic_count, 1u) * sizeof(*owned));
    int32_t *indexes = sp_karena_alloc(&g->work, SP_MAX(g->owned_count, 1u) * sizeof(int32_t));
    if (names == NULL || owned == NULL || indexes == NULL)
        return none;
    struct sp_kafka_consumer_protocol_subscription s;
    sp_kafka_consumer_protocol_subscription_init(&s);
    for (unsigned t = 0; t < g->topic_count; t++)
        names[t] = sp_kstr_of(g->topics[t]->name);
    s.topics = names;
    s.topics_count = (int32_t)g->topic_count;
    s.user_data = assignor->cooperative
                      ? sp_kafka_cooperative_user_data(user_data, g->generation_id)
                      : (struct sp_kbytes){NULL, -1};
    /* Owned partitions, topic by topic (only cooperative protocols read them). */
    int32_t owned_count = 0;
    unsigned used = 0;
    for (unsigned t = 0; t < g->topic_count; t++) {
        unsigned first = used;
        for (unsigned i = 0; i < g->owned_count; i++)
            if (g->owned[i].topic == g->topics[t])
                indexes[used++] = g->owned[i].partition;
        if (used > first) {
            sp_kafka_consumer_protocol_subscription_topic_partition_init(&owned[owned_count]);
            owned[owned_count].topic = names[t];
            owned[owned_count].partitions = &indexes[first];
            owned[owned_count].partitions_count = (int32_t)(used - first);
            owned_count++;
        }
    }
    s.owned_partitions = owned;
    s.owned_partitions_count = owned_count;
    size_t size = sp_kafka_subscription_bytes_size(&s, SUBSCRIPTION_VERSION);
    uint8_t *buf = sp_karena_alloc(&g->work, size);
    if (buf == NULL || sp_kafka_subscription_bytes_encode(buf, size, SUBSCRIPTION_VERSION, &s) < 0)
        return none;
    return (struct sp_kbytes){buf, (int32_t)size};
}

/* Copies the JoinGroup members (leader only); 0 or -ENOSPC. */
static int members_copy(struct sp_kafka_group *g, const struct sp_kafka_join_group_response *r)
{
    g->member_count = 0;
    g->join_used = 0;
    if (r->members_count > SP_KAFKA_GROUP_MEMBERS_MAX)
        return -ENOSPC;
    for (int32_t i = 0; i < r->members_count; i++) {
        const struct sp_kafka_join_group_response_join_group_response_member *m = &r->members[i];
        int32_t id_len = SP_MAX(m->member_id.len, 0);
        int32_t meta_len = SP_MAX(m->metadata.len, 0);
        if ((uint64_t)g->join_used + (uint64_t)id_len + (uint64_t)meta_len >
            SP_KAFKA_GROUP_JOIN_BYTES_MAX)
            return -ENOSPC;
        uint8_t *p = g->join_buf + g->join_used;
        if (id_len > 0)
            memcpy(p, m->member_id.ptr, (size_t)id_len);
        if (meta_len > 0)
            memcpy(p + id_len, m->metadata.ptr, (size_t)meta_len);
        g->member_ids[i] = (struct sp_kstr){(const char *)p, id_len};
        g->member_meta[i] = (struct sp_kbytes){p + id_len, meta_len};
        g->join_used += (uint32_t)(id_len + meta_len);
        g->member_count++;
    }
    return 0;
}

/*
 * The start of every answer to a JoinGroup, SyncGroup or OffsetFetch sent
 * in state `expected`: false when the handler has nothing more to do, the
 * group having moved on or lost its coordinator (it looks for it again).
 */
static bool main_answer(struct sp_kafka_group *g, enum sp_kafka_group_state expected, int err)
{
    g->main_inflight = false;
    if (g->state != expected) {
        group_step(g);
        return false;
    }
    if (err < 0) {
        coord_lost(g, strerror(-err));
        g->state = SP_KAFKA_GROUP_FINDING;
        retry_backoff(g);
        return false;
    }
    return true;
}

static void sync_send(struct sp_kafka_group *g,
                      struct sp_kafka_sync_group_request_sync_group_request_assignment *as,
                      int32_t count);

static void join_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                      void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)conn;
    (void)version;
    if (!main_answer(g, SP_KAFKA_GROUP_JOINING, err))
        return;
    const struct sp_kafka_join_group_response *r = body;
    int16_t code = r->error_code;
    if (code != 0)
        sp_debug("kafka group %s: JoinGroup: %s", g->config->group_id, sp_kafka_error_name(code));
    if (code == ERR_MEMBER_ID_REQUIRED) {
        if (r->member_id.len <= 0 || r->member_id.len >= SP_KAFKA_GROUP_MEMBER_ID_BYTES_MAX) {
            retry_backoff(g);
            return;
        }
        memcpy(g->member_id, r->member_id.ptr, (size_t)r->member_id.len);
        g->member_id_len = r->member_id.len;
        group_step(g);
        return;
    }
    if (code == ERR_UNKNOWN_MEMBER_ID || code == ERR_ILLEGAL_GENERATION) {
        lose_all(g);
        reset_generation(g, code == ERR_UNKNOWN_MEMBER_ID);
        group_step(g);
        return;
    }
    if (is_coordinator_error(code)) {
        coord_lost(g, sp_kafka_error_name(code));
        g->state = SP_KAFKA_GROUP_FINDING;
        retry_backoff(g);
        return;
    }
    if (code != 0) { /* REBALANCE_IN_PROGRESS, COORDINATOR_LOAD_IN_PROGRESS, others */
        retry_backoff(g);
        return;
    }
    if (r->member_id.len <= 0 || r->member_id.len >= SP_KAFKA_GROUP_MEMBER_ID_BYTES_MAX) {
        sp_warn("kafka group %s: JoinGroup: bad member id", g->config->group_id);
        retry_backoff(g);
        return;
    }
    memcpy(g->member_id, r->member_id.ptr, (size_t)r->member_id.len);
    g->member_id_len = r->member_id.len;
    g->generation_id = r->generation_id;
    g->protocol = sp_kafka_assignor_find(r->protocol_name);
    g->joins++;
    if (g->protocol == NULL) {
        sp_warn("kafka group %s: coordinator chose protocol %.*s, which is not ours",
                g->config->group_id, SP_MAX(r->protocol_name.len, 0), r->protocol_name.ptr);
        retry_backoff(g);
        return;
    }
    g->leader = r->leader.len == g->member_id_len &&
                memcmp(r->leader.ptr, g->member_id, (size_t)g->member_id_len) == 0;
    sp_debug("kafka group %s: joined generation %d as %.*s%s (%s)", g->config->group_id,
             g->generation_id, g->member_id_len, g->member_id, g->leader ? ", leader" : "",
             protocol_of(g)->name);
    if (!g->leader) {
        g->state = SP_KAFKA_GROUP_SYNCING;
        sync_send(g, NULL, 0);
        return;
    }
    if (members_copy(g, r) < 0) {
        sp_warn("kafka group %s: %d members: more than this leader holds", g->config->group_id,
                r->members_count);
        g->state = SP_KAFKA_GROUP_SYNCING;
        sync_send(g, NULL, 0);
        return;
    }
    /*
     * Assign on fresh metadata, as librdkafka's leader does: partitions may
     * have been added since the last refresh. (It also gives the followers
     * time to send their SyncGroup first, which librdkafka's mock needs: it
     * completes the sync when the leader's arrives and answers later ones
     * with a null assignment.)
     */
    g->metadata_mark = g->client->metadata_refreshes;
    g->assign_after_ns = sp_now_ns() + SP_KAFKA_GROUP_ASSIGN_DELAY_MS * SP_NSEC_PER_MSEC;
    sp_kafka_client_refresh(g->client);
    g->state = SP_KAFKA_GROUP_ASSIGNING;
    group_step(g);
}

static void join_send(struct sp_kafka_group *g)
{
    struct sp_kafka_conn *conn = coord_conn(g);
    SP_ASSERT(conn != NULL);
    sp_karena_reset(&g->work);
    struct sp_kafka_join_group_request_join_group_request_protocol
        protocols[SP_KAFKA_CONFIG_ASSIGNORS_MAX];
    uint8_t user_data[SP_KAFKA_CONFIG_ASSIGNORS_MAX][SP_KAFKA_COOPERATIVE_USER_DATA_BYTES];
    for (unsigned i = 0; i < g->assignor_count; i++) {
        sp_kafka_join_group_request_join_group_request_protocol_init(&protocols[i]);
        protocols[i].name = sp_kstr_of(assignor_at(g, i)->name);
        protocols[i].metadata = subscription_bytes(g, assignor_at(g, i), user_data[i]);
        if (protocols[i].metadata.len < 0) {
            sp_warn("kafka group %s: subscription does not fit", g->config->group_id);
            retry_backoff(g);
            return;
        }
    }
    struct sp_kafka_join_group_request req;
    sp_kafka_join_group_request_init(&req);
    req.group_id = sp_kstr_of(g->config->group_id);
    req.session_timeout_ms = g->config->session_timeout_ms;
    req.rebalance_timeout_ms = g->config->max_poll_interval_ms;
    req.member_id = member_kstr(g);
    req.group_instance_id = SP_KSTR_NULL;
    req.protocol_type = SP_KSTR("consumer");
    req.protocols = protocols;
    req.protocols_count = (int32_t)g->assignor_count;
    req.reason = SP_KSTR_NULL;
    g->synced = false;
    if (sp_kafka_conn_send(conn, API_JOIN_GROUP, -1, &req, join_done, g) < 0) {
        retry_backoff(g);
        return;
    }
    g->main_inflight = true;
}

/* Begins a rebalance: EAGER commits and revokes everything first. */
static void group_rejoin(struct sp_kafka_group *g)
{
    if (terminal(g))
        return;
    g->rejoin_wanted = false;
    if (!g->cooperative && g->owned_count > 0) {
        owned_positions(g);
        if (sp_kafka_config_auto_commit(g->config)) {
            int ret = commit_send(g, g->owned, g->owned_count, NULL, NULL);
            if (ret < 0)
                sp_debug("kafka group %s: commit before rebalance: %s", g->config->group_id,
                         strerror(-ret));
        }
        sp_kafka_consumer_unassign(g->consumer);
        unsigned count = g->owned_count;
        g->owned_count = 0;
        call_parts(g, g->cb.revoked, g->owned, count);
    }
    g->state = coord_ready(g)
                   ? SP_KAFKA_GROUP_JOINING
                   : (g->coord >= 0 ? SP_KAFKA_GROUP_CONNECTING : SP_KAFKA_GROUP_FINDING);
    group_step(g);
}

/* ---- Assignment (leader) ---- */

/* 0 with the SyncGroup sent; -EAGAIN while topic metadata is missing. */
static int assign_and_sync(struct sp_kafka_group *g)
{
    if (g->client->metadata_refreshes == g->metadata_mark || sp_now_ns() < g->assign_after_ns) {
        sp_kafka_client_refresh(g->client);
        return -EAGAIN;
    }
    sp_karena_reset(&g->work);
    int32_t n = g->member_count;
    struct sp_kafka_assignor_member *members =
        sp_karena_alloc(&g->work, (size_t)SP_MAX(n, 1) * sizeof(*members));
    struct sp_kafka_consumer_protocol_subscription *subs =
        sp_karena_alloc(&g->work, (size_t)SP_MAX(n, 1) * sizeof(*subs));
    struct sp_kafka_assignor_topic *topics =
        sp_karena_alloc(&g->work, SP_KAFKA_CLIENT_TOPICS_MAX * sizeof(*topics));
    if (members == NULL || subs == NULL || topics == NULL)
        return -ENOBUFS;
    int32_t valid = 0;
    for (int32_t i = 0; i < n; i++) {
        int16_t v;
        if (sp_kafka_subscription_bytes_decode(g->member_meta[i].ptr, (size_t)g->member_meta[i].len,
                                               &g->work, &v, &subs[valid]) < 0) {
            sp_warn("kafka group %s: member %.*s: subscription does not parse: ignored",
                    g->config->group_id, g->member_ids[i].len, g->member_ids[i].ptr);
            continue;
        }
        sp_kafka_assignor_member_from_subscription(&members[valid], g->member_ids[i], &subs[valid]);
        valid++;
    }
    /* Every topic any member subscribes to must be known (or known missing). */
    int32_t topic_count = 0;
    bool missing = false;
    for (int32_t i = 0; i < valid; i++) {
        for (int32_t t = 0; t < members[i].topics_count; t++) {
            struct sp_kstr name = members[i].topics[t];
            if (name.len <= 0 || name.len > SP_KAFKA_TOPIC_NAME_BYTES_MAX)
                continue;
            int err = 0;
            struct sp_kafka_topic_info *info =
                sp_kafka_client_topic(g->client, name.ptr, (size_t)name.len, &err);
            if (info == NULL)
                continue;
            if (!info->known || info->partition_count <= 0) {
                if (!(info->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION &&
                      g->client->metadata_ever))
                    missing = true;
                continue;
            }
            bool dup = false;
            for (int32_t k = 0; k < topic_count; k++)
                dup |= sp_kstr_eq(topics[k].name, info->name);
            if (!dup && topic_count < SP_KAFKA_CLIENT_TOPICS_MAX)
                topics[topic_count++] =
                    (struct sp_kafka_assignor_topic){sp_kstr_of(info->name), info->partition_count};
        }
    }
    if (missing) {
        sp_kafka_client_refresh(g->client);
        return -EAGAIN;
    }
    struct sp_kafka_assignor_group in = {members, valid, topics, topic_count};
    struct sp_kafka_consumer_protocol_assignment *out =
        sp_karena_alloc(&g->work, (size_t)SP_MAX(valid, 1) * sizeof(*out));
    struct sp_kafka_sync_group_request_sync_group_request_assignment *as =
        sp_karena_alloc(&g->work, (size_t)SP_MAX(valid, 1) * sizeof(*as));
    if (out == NULL || as == NULL)
        return -ENOBUFS;
    int ret = sp_kafka_assignor_assign(protocol_of(g), &in, out, &g->work);
    if (ret < 0) {
        sp_warn("kafka group %s: %s assignor: %s", g->config->group_id, protocol_of(g)->name,
                strerror(-ret));
        return ret;
    }
    for (int32_t i = 0; i < valid; i++) {
        size_t size = sp_kafka_assignment_bytes_size(&out[i], ASSIGNMENT_VERSION);
        uint8_t *buf = sp_karena_alloc(&g->work, size);
        if (buf == NULL)
            return -ENOBUFS;
        ret = sp_kafka_assignment_bytes_encode(buf, size, ASSIGNMENT_VERSION, &out[i]);
        if (ret < 0)
            return ret;
        sp_kafka_sync_group_request_sync_group_request_assignment_init(&as[i]);
        as[i].member_id = members[i].member_id;
        as[i].assignment = (struct sp_kbytes){buf, (int32_t)size};
    }
    for (int32_t i = 0; i < valid; i++)
        sp_debug("kafka group %s: assigning %d bytes to %.*s", g->config->group_id,
                 as[i].assignment.len, as[i].member_id.len, as[i].member_id.ptr);
    g->state = SP_KAFKA_GROUP_SYNCING;
    sync_send(g, as, valid);
    return 0;
}

/* ---- SyncGroup ---- */

static void fetch_offsets_send(struct sp_kafka_group *g);

/* Takes the decoded assignment: revokes what was lost, fetches offsets of what is new. */
static void assignment_apply(struct sp_kafka_group *g,
                             const struct sp_kafka_consumer_protocol_assignment *a)
{
    g->incoming_count = 0;
    struct sp_kafka_group_partition *next = g->next_scratch;
    unsigned next_count = 0;
    for (int32_t t = 0; t < a->assigned_partitions_count; t++) {
        const struct sp_kafka_consumer_protocol_assignment_topic_partition *tp =
            &a->assigned_partitions[t];
        if (tp->topic.len <= 0 || tp->topic.len > SP_KAFKA_TOPIC_NAME_BYTES_MAX)
            continue;
        int err = 0;
        struct sp_kafka_topic_info *info =
            sp_kafka_client_topic(g->client, tp->topic.ptr, (size_t)tp->topic.len, &err);
        if (info == NULL) {
            sp_warn("kafka group %s: assigned topic %.*s: %s", g->config->group_id, tp->topic.len,
                    tp->topic.ptr, strerror(-err));
            continue;
        }
        for (int32_t p = 0; p < tp->partitions_count && next_count < SP_KAFKA_GROUP_PARTITIONS_MAX;
             p++) {
            struct sp_kafka_group_partition gp = {info, tp->partitions[p], -1};
            if (gp.partition < 0 || part_in(next, next_count, &gp))
                continue;
            next[next_count++] = gp;
        }
    }
    /* Lost ones (EAGER owns nothing here). */
    struct sp_kafka_group_partition *revoked = g->revoked_scratch;
    unsigned revoked_count = 0;
    owned_positions(g);
    unsigned kept = 0;
    for (unsigned i = 0; i < g->owned_count; i++) {
        if (part_in(next, next_count, &g->owned[i]))
            g->owned[kept++] = g->owned[i];
        else
            revoked[revoked_count++] = g->owned[i];
    }
    g->owned_count = kept;
    for (unsigned i = 0; i < next_count; i++)
        if (!part_in(g->owned, g->owned_count, &next[i]))
            g->incoming[g->incoming_count++] = next[i];
    if (revoked_count > 0) {
        /* Committed before anyone can be given them: the coordinator answers in order. */
        if (sp_kafka_config_auto_commit(g->config)) {
            int ret = commit_send(g, revoked, revoked_count, NULL, NULL);
            if (ret < 0)
                sp_debug("kafka group %s: commit of revoked: %s", g->config->group_id,
                         strerror(-ret));
        }
        consumer_sync(g);
        call_parts(g, g->cb.revoked, revoked, revoked_count);
        g->rejoin_wanted = true; /* the second round gives them out */
    }
    g->rebalances++;
    g->synced = true;
    if (g->incoming_count > 0) {
        g->state = SP_KAFKA_GROUP_FETCHING;
        fetch_offsets_send(g);
        return;
    }
    g->state = SP_KAFKA_GROUP_STABLE;
    group_step(g);
}

static void sync_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                      void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)conn;
    (void)version;
    if (!main_answer(g, SP_KAFKA_GROUP_SYNCING, err))
        return;
    const struct sp_kafka_sync_group_response *r = body;
    int16_t code = r->error_code;
    if (code != 0) {
        sp_debug("kafka group %s: SyncGroup: %s", g->config->group_id, sp_kafka_error_name(code));
        if (code == ERR_UNKNOWN_MEMBER_ID || code == ERR_ILLEGAL_GENERATION) {
            lose_all(g);
            reset_generation(g, code == ERR_UNKNOWN_MEMBER_ID);
        } else if (is_coordinator_error(code)) {
            coord_lost(g, sp_kafka_error_name(code));
        }
        g->state = SP_KAFKA_GROUP_JOINING;
        if (g->coord < 0)
            g->state = SP_KAFKA_GROUP_FINDING;
        if (code == SP_KAFKA_ERR_REBALANCE_IN_PROGRESS)
            group_step(g);
        else
            retry_backoff(g);
        return;
    }
    sp_karena_reset(&g->work);
    struct sp_kafka_consumer_protocol_assignment a;
    sp_kafka_consumer_protocol_assignment_init(&a);
    a.assigned_partitions_count = 0;
    int16_t v;
    if (r->assignment.len > 0 &&
        sp_kafka_assignment_bytes_decode(r->assignment.ptr, (size_t)r->assignment.len, &g->work, &v,
                                         &a) < 0) {
        sp_warn("kafka group %s: assignment does not parse: rejoining", g->config->group_id);
        g->state = SP_KAFKA_GROUP_JOINING;
        retry_backoff(g);
        return;
    }
    assignment_apply(g, &a);
}

static void sync_send(struct sp_kafka_group *g,
                      struct sp_kafka_sync_group_request_sync_group_request_assignment *as,
                      int32_t count)
{
    struct sp_kafka_conn *conn = coord_conn(g);
    struct sp_kafka_sync_group_request req;
    sp_kafka_sync_group_request_init(&req);
    req.group_id = sp_kstr_of(g->config->group_id);
    req.generation_id = g->generation_id;
    req.member_id = member_kstr(g);
    req.group_instance_id = SP_KSTR_NULL;
    req.protocol_type = SP_KSTR("consumer");
    req.protocol_name = sp_kstr_of(protocol_of(g)->name);
    req.assignments = as;
    req.assignments_count = count;
    if (conn == NULL || sp_kafka_conn_send(conn, API_SYNC_GROUP, -1, &req, sync_done, g) < 0) {
        /* The generation cannot complete without us: rejoin. */
        g->state = SP_KAFKA_GROUP_JOINING;
        retry_backoff(g);
        return;
    }
    g->main_inflight = true;
}

/* ---- OffsetFetch ---- */

static int64_t reset_offset(const struct sp_kafka_group *g,
                            const struct sp_kafka_group_partition *p)
{
    switch (g->config->auto_offset_reset) {
    case SP_KAFKA_OFFSET_RESET_EARLIEST:
        return SP_KAFKA_OFFSET_BEGINNING;
    case SP_KAFKA_OFFSET_RESET_NONE:
        sp_warn("kafka group %s: %s-%d has no committed offset (auto.offset.reset=none): "
                "starting at the end",
                g->config->group_id, p->topic->name, p->partition);
        return SP_KAFKA_OFFSET_END;
    case SP_KAFKA_OFFSET_RESET_LATEST:
    default:
        return SP_KAFKA_OFFSET_END;
    }
}

static void incoming_take(struct sp_kafka_group *g)
{
    unsigned first = g->owned_count;
    for (unsigned i = 0; i < g->incoming_count && g->owned_count < SP_KAFKA_GROUP_PARTITIONS_MAX;
         i++) {
        struct sp_kafka_group_partition *p = &g->incoming[i];
        if (p->offset < 0)
            p->offset = reset_offset(g, p);
        int ret = sp_kafka_consumer_assign(g->consumer, p->topic->name, p->partition, p->offset);
        if (ret < 0) {
            sp_warn("kafka group %s: cannot assign %s-%d: %s", g->config->group_id, p->topic->name,
                    p->partition, strerror(-ret));
            continue;
        }
        g->owned[g->owned_count++] = *p;
    }
    g->incoming_count = 0;
    g->state = SP_KAFKA_GROUP_STABLE;
    call_parts(g, g->cb.assigned, &g->owned[first], g->owned_count - first);
}

static void fetch_offsets_done(struct sp_kafka_conn *conn, int err, const void *body,
                               int16_t version, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)conn;
    if (!main_answer(g, SP_KAFKA_GROUP_FETCHING, err))
        return;
    const struct sp_kafka_offset_fetch_response *r = body;
    int16_t code = version >= 2 ? r->error_code : 0;
    if (version >= 8 && r->groups_count > 0)
        code = r->groups[0].error_code;
    /* Partition-level errors as well: unstable offsets, coordinator moves. */
    for (unsigned i = 0; i < g->incoming_count; i++)
        g->incoming[i].offset = -1;
    if (code == 0 && version < 8) {
        for (int32_t t = 0; t < r->topics_count && code == 0; t++) {
            const struct sp_kafka_offset_fetch_response_offset_fetch_response_topic *rt =
                &r->topics[t];
            for (int32_t q = 0; q < rt->partitions_count && code == 0; q++) {
                const struct sp_kafka_offset_fetch_response_offset_fetch_response_partition *rp =
                    &rt->partitions[q];
                if (rp->error_code != 0 &&
                    rp->error_code != SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION) {
                    code = rp->error_code;
                    break;
                }
                for (unsigned i = 0; i < g->incoming_count; i++)
                    if (g->incoming[i].partition == rp->partition_index &&
                        sp_kstr_eq(rt->name, g->incoming[i].topic->name))
                        g->incoming[i].offset = rp->committed_offset;
            }
        }
    } else if (code == 0 && r->groups_count > 0) {
        const struct sp_kafka_offset_fetch_response_offset_fetch_response_group *rg = &r->groups[0];
        for (int32_t t = 0; t < rg->topics_count && code == 0; t++) {
            const struct sp_kafka_offset_fetch_response_offset_fetch_response_topics *rt =
                &rg->topics[t];
            for (int32_t q = 0; q < rt->partitions_count && code == 0; q++) {
                const struct sp_kafka_offset_fetch_response_offset_fetch_response_partitions *rp =
                    &rt->partitions[q];
                if (rp->error_code != 0 &&
                    rp->error_code != SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION) {
                    code = rp->error_code;
                    break;
                }
                for (unsigned i = 0; i < g->incoming_count; i++)
                    if (g->incoming[i].partition == rp->partition_index &&
                        sp_kstr_eq(rt->name, g->incoming[i].topic->name))
                        g->incoming[i].offset = rp->committed_offset;
            }
        }
    }
    if (code != 0) {
        sp_debug("kafka group %s: OffsetFetch: %s", g->config->group_id, sp_kafka_error_name(code));
        if (is_coordinator_error(code)) {
            coord_lost(g, sp_kafka_error_name(code));
            g->state = SP_KAFKA_GROUP_FINDING; /* then FETCHING again: see group_step */
        }
        retry_backoff(g);
        return;
    }
    incoming_take(g);
    group_step(g);
}

static void fetch_offsets_send(struct sp_kafka_group *g)
{
    struct sp_kafka_conn *conn = coord_conn(g);
    if (conn == NULL || !sp_kafka_conn_ready(conn)) {
        retry_backoff(g);
        return;
    }
    int16_t version = sp_kafka_conn_version(conn, API_OFFSET_FETCH);
    int32_t *indexes = g->index_scratch;
    struct sp_kafka_offset_fetch_request_offset_fetch_request_topic ts[SP_KAFKA_GROUP_TOPICS_MAX];
    struct sp_kafka_offset_fetch_request_offset_fetch_request_topics gts[SP_KAFKA_GROUP_TOPICS_MAX];
    unsigned used = 0, t_count = 0;
    for (unsigned t = 0; t < g->client->topic_count && t_count < SP_ARRAY_LEN(ts); t++) {
        struct sp_kafka_topic_info *topic = &g->client->topics[t];
        unsigned first = used;
        for (unsigned i = 0; i < g->incoming_count; i++)
            if (g->incoming[i].topic == topic)
                indexes[used++] = g->incoming[i].partition;
        if (used == first)
            continue;
        sp_kafka_offset_fetch_request_offset_fetch_request_topic_init(&ts[t_count]);
        ts[t_count].name = sp_kstr_of(topic->name);
        ts[t_count].partition_indexes = &indexes[first];
        ts[t_count].partition_indexes_count = (int32_t)(used - first);
        sp_kafka_offset_fetch_request_offset_fetch_request_topics_init(&gts[t_count]);
        gts[t_count].name = ts[t_count].name;
        gts[t_count].partition_indexes = &indexes[first];
        gts[t_count].partition_indexes_count = (int32_t)(used - first);
        t_count++;
    }
    struct sp_kafka_offset_fetch_request_offset_fetch_request_group grp;
    sp_kafka_offset_fetch_request_offset_fetch_request_group_init(&grp);
    grp.group_id = sp_kstr_of(g->config->group_id);
    grp.member_id = SP_KSTR_NULL;
    grp.member_epoch = -1;
    grp.topics = gts;
    grp.topics_count = (int32_t)t_count;
    struct sp_kafka_offset_fetch_request req;
    sp_kafka_offset_fetch_request_init(&req);
    req.require_stable = false;
    if (version >= 8) {
        req.groups = &grp;
        req.groups_count = 1;
    } else {
        req.group_id = grp.group_id;
        req.topics = ts;
        req.topics_count = (int32_t)t_count;
    }
    if (sp_kafka_conn_send(conn, API_OFFSET_FETCH, version, &req, fetch_offsets_done, g) < 0) {
        retry_backoff(g);
        return;
    }
    g->main_inflight = true;
}

/* ---- Heartbeat ---- */

static void heartbeat_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                           void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)conn;
    (void)version;
    g->heartbeat_inflight = false;
    if (g->state != SP_KAFKA_GROUP_STABLE)
        return;
    if (err < 0) {
        coord_lost(g, strerror(-err));
        g->state = SP_KAFKA_GROUP_FINDING;
        retry_backoff(g);
        return;
    }
    const struct sp_kafka_heartbeat_response *r = body;
    int16_t code = r->error_code;
    if (code == 0)
        return;
    sp_debug("kafka group %s: Heartbeat: %s", g->config->group_id, sp_kafka_error_name(code));
    if (code == SP_KAFKA_ERR_REBALANCE_IN_PROGRESS) {
        group_rejoin(g);
    } else if (code == ERR_UNKNOWN_MEMBER_ID || code == ERR_ILLEGAL_GENERATION) {
        lose_all(g);
        reset_generation(g, code == ERR_UNKNOWN_MEMBER_ID);
        group_rejoin(g);
    } else if (is_coordinator_error(code)) {
        coord_lost(g, sp_kafka_error_name(code));
        g->state = SP_KAFKA_GROUP_FINDING;
        retry_backoff(g);
    }
}

static void heartbeat_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)timer;
    if (terminal(g))
        return;
    sp_shard_timer_arm(g->client->shard, &g->heartbeat_timer,
                       sp_now_ns() + ms_ns(g->config->heartbeat_interval_ms));
    if (g->state != SP_KAFKA_GROUP_STABLE || g->heartbeat_inflight || !coord_ready(g))
        return;
    struct sp_kafka_heartbeat_request req;
    sp_kafka_heartbeat_request_init(&req);
    req.group_id = sp_kstr_of(g->config->group_id);
    req.generation_id = g->generation_id;
    req.member_id = member_kstr(g);
    req.group_instance_id = SP_KSTR_NULL;
    if (sp_kafka_conn_send(coord_conn(g), API_HEARTBEAT, -1, &req, heartbeat_done, g) == 0)
        g->heartbeat_inflight = true;
}

/* ---- LeaveGroup ---- */

static void leave_finish(struct sp_kafka_group *g)
{
    g->state = SP_KAFKA_GROUP_CLOSED;
    sp_shard_timer_cancel(g->client->shard, &g->heartbeat_timer);
    sp_shard_timer_cancel(g->client->shard, &g->commit_timer);
    sp_shard_timer_cancel(g->client->shard, &g->retry_timer);
    sp_kafka_group_done_fn *fn = g->done_fn;
    g->done_fn = NULL;
    if (fn != NULL)
        fn(g, g->done_ctx);
}

static void leave_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                       void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)conn;
    (void)version;
    g->main_inflight = false;
    if (err < 0)
        sp_debug("kafka group %s: LeaveGroup: %s", g->config->group_id, strerror(-err));
    if (err == 0) {
        const struct sp_kafka_leave_group_response *r = body;
        if (r->error_code != 0)
            sp_debug("kafka group %s: LeaveGroup: %s", g->config->group_id,
                     sp_kafka_error_name(r->error_code));
    }
    if (g->state == SP_KAFKA_GROUP_LEAVING)
        leave_finish(g);
}

static void leave_now(struct sp_kafka_group *g, bool commit)
{
    g->leave_wanted = false;
    g->state = SP_KAFKA_GROUP_LEAVING;
    owned_positions(g);
    if (commit && g->owned_count > 0 && g->generation_id >= 0) {
        int ret = commit_send(g, g->owned, g->owned_count, NULL, NULL);
        if (ret < 0)
            sp_debug("kafka group %s: final commit: %s", g->config->group_id, strerror(-ret));
    }
    if (g->owned_count > 0) {
        sp_kafka_consumer_unassign(g->consumer);
        unsigned count = g->owned_count;
        g->owned_count = 0;
        call_parts(g, g->cb.revoked, g->owned, count);
    }
    struct sp_kafka_conn *conn = coord_conn(g);
    if (conn == NULL || !sp_kafka_conn_ready(conn) || g->member_id_len == 0) {
        leave_finish(g);
        return;
    }
    struct sp_kafka_leave_group_request_member_identity me;
    sp_kafka_leave_group_request_member_identity_init(&me);
    me.member_id = member_kstr(g);
    me.group_instance_id = SP_KSTR_NULL;
    me.reason = SP_KSTR_NULL;
    struct sp_kafka_leave_group_request req;
    sp_kafka_leave_group_request_init(&req);
    req.group_id = sp_kstr_of(g->config->group_id);
    if (sp_kafka_conn_version(conn, API_LEAVE_GROUP) >= 3) {
        req.members = &me;
        req.members_count = 1;
    } else {
        req.member_id = member_kstr(g);
    }
    if (sp_kafka_conn_send(conn, API_LEAVE_GROUP, -1, &req, leave_done, g) < 0) {
        leave_finish(g);
        return;
    }
    g->main_inflight = true;
}

void sp_kafka_group_leave(struct sp_kafka_group *g, bool commit, sp_kafka_group_done_fn *fn,
                          void *ctx)
{
    SP_ASSERT(g != NULL);
    SP_ASSERT(g->done_fn == NULL);
    if (terminal(g)) {
        if (fn != NULL)
            fn(g, ctx);
        return;
    }
    g->done_fn = fn;
    g->done_ctx = ctx;
    g->leave_commit = commit || sp_kafka_config_auto_commit(g->config);
    if (g->main_inflight &&
        (g->state == SP_KAFKA_GROUP_JOINING || g->state == SP_KAFKA_GROUP_SYNCING)) {
        g->leave_wanted = true; /* JoinGroup/SyncGroup answers must come first */
        return;
    }
    leave_now(g, g->leave_commit);
}

/* ---- The state machine ---- */

/* Runs the next step of the current state, when nothing is in flight. */
static void group_step(struct sp_kafka_group *g)
{
    if (terminal(g) || g->main_inflight)
        return;
    if (g->leave_wanted) {
        leave_now(g, g->leave_commit);
        return;
    }
    switch (g->state) {
    case SP_KAFKA_GROUP_INIT:
        g->state = SP_KAFKA_GROUP_FINDING;
        find_send(g);
        break;
    case SP_KAFKA_GROUP_FINDING:
        find_send(g);
        break;
    case SP_KAFKA_GROUP_CONNECTING:
        if (g->coord < 0) {
            g->state = SP_KAFKA_GROUP_FINDING;
            find_send(g);
        } else if (coord_ready(g)) {
            /* A member of a live generation goes on; others (re)join. */
            if (g->incoming_count > 0) {
                g->state = SP_KAFKA_GROUP_FETCHING;
                fetch_offsets_send(g);
            } else if (g->synced && !g->rejoin_wanted) {
                g->state = SP_KAFKA_GROUP_STABLE;
                group_step(g);
            } else {
                group_rejoin(g);
            }
        } else {
            retry_in(g, ms_ns(g->config->retry_backoff_ms) * 4);
        }
        break;
    case SP_KAFKA_GROUP_JOINING:
        if (!coord_ready(g)) {
            g->state = g->coord >= 0 ? SP_KAFKA_GROUP_CONNECTING : SP_KAFKA_GROUP_FINDING;
            retry_backoff(g);
            break;
        }
        join_send(g);
        break;
    case SP_KAFKA_GROUP_ASSIGNING: {
        int ret = assign_and_sync(g);
        if (ret == -EAGAIN) {
            retry_in(g, SP_KAFKA_GROUP_ASSIGN_DELAY_MS * SP_NSEC_PER_MSEC);
        } else if (ret < 0) {
            /* Without an assignment the generation fails: send none, everyone rejoins. */
            g->state = SP_KAFKA_GROUP_SYNCING;
            sync_send(g, NULL, 0);
        }
        break;
    }
    case SP_KAFKA_GROUP_SYNCING:
        /* Nothing in flight while SYNCING: the send failed; rejoin. */
        g->state = SP_KAFKA_GROUP_JOINING;
        retry_backoff(g);
        break;
    case SP_KAFKA_GROUP_FETCHING:
        fetch_offsets_send(g);
        break;
    case SP_KAFKA_GROUP_STABLE:
        if (g->rejoin_wanted) {
            group_rejoin(g);
            break;
        }
        if (!sp_timer_armed(&g->heartbeat_timer))
            sp_shard_timer_arm(g->client->shard, &g->heartbeat_timer,
                               sp_now_ns() + ms_ns(g->config->heartbeat_interval_ms));
        if (sp_kafka_config_auto_commit(g->config) && !sp_timer_armed(&g->commit_timer))
            sp_shard_timer_arm(g->client->shard, &g->commit_timer,
                               sp_now_ns() + ms_ns(g->config->auto_commit_interval_ms));
        break;
    case SP_KAFKA_GROUP_LEAVING:
    case SP_KAFKA_GROUP_CLOSED:
        break;
    }
}

static void retry_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    (void)timer;
    group_step(g);
}

static void client_changed(struct sp_kafka_client *client, void *ctx)
{
    struct sp_kafka_group *g = ctx;
    if (g->chained_fn != NULL)
        g->chained_fn(client, g->chained_ctx);
    if (g->state == SP_KAFKA_GROUP_ASSIGNING || g->state == SP_KAFKA_GROUP_FINDING)
        group_step(g);
}

/* ---- Life cycle ---- */

static const struct sp_kafka_assignor *assignor_of(enum sp_kafka_assignor_id a)
{
    switch (a) {
    case SP_KAFKA_ASSIGNOR_RANGE:
        return &sp_kafka_assignor_range;
    case SP_KAFKA_ASSIGNOR_ROUNDROBIN:
        return &sp_kafka_assignor_roundrobin;
    case SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY:
        return &sp_kafka_assignor_cooperative_sticky;
    }
    return NULL;
}

int sp_kafka_group_init(struct sp_kafka_group *g, struct sp_kafka_consumer *consumer,
                        const char *const *topics, unsigned topic_count,
                        const struct sp_kafka_group_callbacks *cb)
{
    SP_ASSERT(g != NULL);
    SP_ASSERT(consumer != NULL);
    struct sp_kafka_client *client = consumer->client;
    const struct sp_kafka_config *config = client->config;
    if (config->group_id[0] == '\0' || topic_count == 0 || topics == NULL)
        return -EINVAL;
    if (topic_count > SP_KAFKA_GROUP_TOPICS_MAX)
        return -ENOSPC;
    memset(g, 0, sizeof(*g));
    g->client = client;
    g->consumer = consumer;
    g->config = config;
    if (cb != NULL)
        g->cb = *cb;
    g->coord = -1;
    g->coordinator_id = -1;
    g->generation_id = -1;
    for (unsigned i = 0; i < topic_count; i++) {
        int err = 0;
        struct sp_kafka_topic_info *t =
            sp_kafka_client_topic(client, topics[i], strlen(topics[i]), &err);
        if (t == NULL)
            return err;
        bool dup = false;
        for (unsigned k = 0; k < g->topic_count; k++)
            dup |= g->topics[k] == t;
        if (!dup)
            g->topics[g->topic_count++] = t;
    }
    g->cooperative = config->assignor_count > 0;
    for (unsigned i = 0; i < config->assignor_count; i++) {
        const struct sp_kafka_assignor *a = assignor_of(config->assignors[i]);
        if (a == NULL)
            return -EINVAL;
        g->assignors[g->assignor_count++] = a;
        g->cooperative &= a->cooperative;
    }
    if (g->assignor_count == 0)
        return -EINVAL;
    g->conn_config = client->conn_config;
    /* JoinGroup may be held for the whole rebalance timeout (Java adds 5 s too). */
    uint64_t join_ns = ms_ns(config->max_poll_interval_ms) + 5000 * SP_NSEC_PER_MSEC;
    g->conn_config.request_timeout_ns = SP_MAX(g->conn_config.request_timeout_ns, join_ns);
    g->conn_config.send_buffer_bytes = 1u << 20;
    g->conn_config.receive_buffer_bytes = 1u << 20;
    g->conn_config.arena_bytes = SP_MAX(g->conn_config.arena_bytes, 1u << 20);
    g->conn_config.reconnect = true;
    struct sp_arena *arena = &client->shard->arena;
    g->join_buf = sp_arena_alloc(arena, SP_KAFKA_GROUP_JOIN_BYTES_MAX);
    g->work_mem = sp_arena_alloc(arena, SP_KAFKA_GROUP_WORK_BYTES);
    if (g->join_buf == NULL || g->work_mem == NULL) {
        sp_arena_free(arena, g->join_buf);
        sp_arena_free(arena, g->work_mem);
        return -ENOMEM;
    }
    sp_karena_init(&g->work, g->work_mem, SP_KAFKA_GROUP_WORK_BYTES);
    sp_timer_init(&g->heartbeat_timer, heartbeat_fired, g);
    sp_timer_init(&g->commit_timer, auto_commit_fired, g);
    sp_timer_init(&g->retry_timer, retry_fired, g);
    g->chained_fn = client->on_change;
    g->chained_ctx = client->ctx;
    client->on_change = client_changed;
    client->ctx = g;
    g->state = SP_KAFKA_GROUP_INIT;
    sp_kafka_client_refresh(client);
    group_step(g);
    return 0;
}

void sp_kafka_group_close(struct sp_kafka_group *g)
{
    if (g->state != SP_KAFKA_GROUP_CLOSED) {
        g->state = SP_KAFKA_GROUP_CLOSED;
        sp_kafka_group_done_fn *fn = g->done_fn;
        g->done_fn = NULL;
        if (fn != NULL)
            fn(g, g->done_ctx);
    }
    sp_shard_timer_cancel(g->client->shard, &g->heartbeat_timer);
    sp_shard_timer_cancel(g->client->shard, &g->commit_timer);
    sp_shard_timer_cancel(g->client->shard, &g->retry_timer);
    for (int slot = 0; slot < 2; slot++)
        if (g->conn_in_use[slot])
            sp_kafka_conn_close(&g->conns[slot]);
    g->coord = -1;
}

bool sp_kafka_group_idle(const struct sp_kafka_group *g)
{
    for (int slot = 0; slot < 2; slot++)
        if (g->conn_in_use[slot] && !sp_kafka_conn_idle(&g->conns[slot]))
            return false;
    return true;
}

void sp_kafka_group_deinit(struct sp_kafka_group *g)
{
    SP_ASSERT(g->state == SP_KAFKA_GROUP_CLOSED);
    SP_ASSERT(sp_kafka_group_idle(g));
    for (int slot = 0; slot < 2; slot++)
        if (g->conn_in_use[slot]) {
            sp_kafka_conn_deinit(&g->conns[slot]);
            g->conn_in_use[slot] = false;
        }
    if (g->client->on_change == client_changed && g->client->ctx == g) {
        g->client->on_change = g->chained_fn;
        g->client->ctx = g->chained_ctx;
    }
    sp_arena_free(&g->client->shard->arena, g->join_buf);
    sp_arena_free(&g->client->shard->arena, g->work_mem);
    sp_debug("kafka group %s: %llu joins, %llu rebalances, %llu commits (%llu failed)",
             g->config->group_id, (unsigned long long)g->joins, (unsigned long long)g->rebalances,
             (unsigned long long)g->commits_ok, (unsigned long long)g->commits_failed);
}
