/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The classic Kafka consumer group protocol (JoinGroup / SyncGroup /
 * Heartbeat / OffsetCommit / OffsetFetch / LeaveGroup) driving an
 * sp_kafka_consumer of the same shard: the group decides which partitions
 * the consumer fetches, from which offsets, and commits its positions.
 *
 * The group talks to its coordinator over a connection of its own, as
 * librdkafka does, not over the client's broker connection: JoinGroup and
 * SyncGroup answers are held by the coordinator until the rebalance ends,
 * and a broker that answers the requests of one connection out of order
 * (librdkafka's mock does) must not see Fetch and JoinGroup on the same
 * connection. Nothing else is sent on that connection while a JoinGroup or
 * SyncGroup is in flight, for the same reason. The coordinator's address
 * comes from the FindCoordinator answer, so a coordinator that the
 * metadata does not list is reachable too.
 *
 * Rebalance protocol: COOPERATIVE when every configured assignor supports
 * it (cooperative-sticky alone), else EAGER, as the Java client decides.
 * EAGER: before (re)joining, the positions are committed and every
 * partition is revoked. COOPERATIVE: partitions are kept across the
 * rebalance; after SyncGroup the ones lost are committed and revoked, and
 * when any was, the member rejoins at once (the second round).
 *
 * Newly assigned partitions start from their committed offset (OffsetFetch)
 * or, without one, as auto.offset.reset says ("none" starts at the end and
 * is reported with a warning).
 *
 * Not here: static membership (group.instance.id is sent null), the
 * KIP-848 consumer protocol, max.poll.interval.ms enforcement (the shard
 * loop polls continuously), pattern subscriptions.
 *
 * Thread rules: one shard, the consumer's.
 */
#ifndef SP_KAFKA_GROUP_H
#define SP_KAFKA_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_kafka_apis.h"
#include "sp_kafka_assignor.h"
#include "sp_kafka_client.h"
#include "sp_kafka_conn.h"
#include "sp_kafka_consumer.h"

#define SP_KAFKA_GROUP_TOPICS_MAX 16       /* subscribed topics */
#define SP_KAFKA_GROUP_PARTITIONS_MAX 1024 /* owned by this member */
#define SP_KAFKA_GROUP_MEMBERS_MAX 256     /* members a leader assigns */
#define SP_KAFKA_GROUP_MEMBER_ID_BYTES_MAX 256
#define SP_KAFKA_GROUP_JOIN_BYTES_MAX (256u << 10) /* members' metadata, leader */
#define SP_KAFKA_GROUP_WORK_BYTES (1u << 20)       /* encode/decode/assign arena */
#define SP_KAFKA_GROUP_COMMITS_MAX 8               /* OffsetCommits in flight */
/*
 * The leader assigns on metadata fetched after the JoinGroup and not before
 * this delay: librdkafka's mock completes a sync when the leader's
 * SyncGroup arrives and answers followers that come later with a null
 * assignment (REBALANCE_IN_PROGRESS), so the followers, answered at the
 * same moment, must get there first. Real brokers wait for everyone.
 */
#define SP_KAFKA_GROUP_ASSIGN_DELAY_MS 20

enum sp_kafka_group_state {
    SP_KAFKA_GROUP_INIT = 0,
    SP_KAFKA_GROUP_FINDING,    /* FindCoordinator in flight or waiting to send */
    SP_KAFKA_GROUP_CONNECTING, /* coordinator connection coming up */
    SP_KAFKA_GROUP_JOINING,    /* JoinGroup in flight or waiting to send */
    SP_KAFKA_GROUP_ASSIGNING,  /* leader: waiting for topic metadata */
    SP_KAFKA_GROUP_SYNCING,    /* SyncGroup in flight */
    SP_KAFKA_GROUP_FETCHING,   /* OffsetFetch for new partitions in flight */
    SP_KAFKA_GROUP_STABLE,     /* member of a generation, heartbeating */
    SP_KAFKA_GROUP_LEAVING,    /* LeaveGroup in flight */
    SP_KAFKA_GROUP_CLOSED,     /* left; nothing more happens */
};

struct sp_kafka_group_partition {
    struct sp_kafka_topic_info *topic; /* the client's */
    int32_t partition;
    /*
     * assigned: the offset the consumer starts from (committed, or
     * SP_KAFKA_OFFSET_BEGINNING/END); revoked and lost: the position the
     * consumer had reached (negative when it had not resolved one).
     */
    int64_t offset;
};

struct sp_kafka_group;

/* Partitions assigned, revoked or lost; `parts` valid during the call only. */
typedef void sp_kafka_group_partitions_fn(struct sp_kafka_group *group,
                                          const struct sp_kafka_group_partition *parts,
                                          unsigned count, void *ctx);

/*
 * An OffsetCommit's outcome: err 0; -EPROTO with the first partition's
 * Kafka error_code; -ENOTCONN/-ECONNRESET/-ETIMEDOUT/-ECANCELED when the
 * request did not get an answer.
 */
typedef void sp_kafka_group_commit_fn(struct sp_kafka_group *group, int err, int16_t error_code,
                                      void *ctx);

/* The group has left (or given up leaving) after sp_kafka_group_leave. */
typedef void sp_kafka_group_done_fn(struct sp_kafka_group *group, void *ctx);

struct sp_kafka_group_callbacks {
    sp_kafka_group_partitions_fn *assigned; /* each may be NULL */
    sp_kafka_group_partitions_fn *revoked;
    sp_kafka_group_partitions_fn *lost;
    void *ctx;
};

struct sp_kafka_group_commit_slot {
    struct sp_kafka_group *group;
    sp_kafka_group_commit_fn *fn;
    void *ctx;
    bool in_use;
};

struct sp_kafka_group {
    struct sp_kafka_client *client;
    struct sp_kafka_consumer *consumer;
    const struct sp_kafka_config *config;
    struct sp_kafka_group_callbacks cb;
    sp_kafka_client_event_fn *chained_fn;
    void *chained_ctx;

    enum sp_kafka_group_state state;
    struct sp_kafka_topic_info *topics[SP_KAFKA_GROUP_TOPICS_MAX];
    unsigned topic_count;
    const struct sp_kafka_assignor *assignors[SP_KAFKA_CONFIG_ASSIGNORS_MAX];
    unsigned assignor_count;
    bool cooperative;

    /* The coordinator: two connection slots, the old one draining. */
    struct sp_kafka_conn conns[2];
    bool conn_in_use[2];
    int coord; /* slot of the current coordinator connection, -1 when none */
    int32_t coordinator_id;
    struct sp_kafka_conn_config conn_config;
    bool main_inflight; /* FindCoordinator, JoinGroup, SyncGroup, OffsetFetch or LeaveGroup */
    bool heartbeat_inflight;
    unsigned commits_inflight;

    /* Membership. */
    char member_id[SP_KAFKA_GROUP_MEMBER_ID_BYTES_MAX];
    int32_t member_id_len;
    int32_t generation_id; /* -1: none */
    bool leader;
    bool rejoin_wanted;                       /* rejoin once the current step ends */
    bool leave_wanted;                        /* leave once the current JoinGroup/SyncGroup ends */
    bool leave_commit;                        /* commit before leaving */
    const struct sp_kafka_assignor *protocol; /* the assignor the coordinator chose */

    /* Leader: the members of the last JoinGroup, copied. */
    uint8_t *join_buf;
    uint32_t join_used;
    struct sp_kstr member_ids[SP_KAFKA_GROUP_MEMBERS_MAX];
    struct sp_kbytes member_meta[SP_KAFKA_GROUP_MEMBERS_MAX];
    int32_t member_count;
    uint64_t metadata_mark;   /* client->metadata_refreshes when the join completed */
    uint64_t assign_after_ns; /* leader: not before (SP_KAFKA_GROUP_ASSIGN_DELAY_MS) */
    bool synced;              /* the SyncGroup of this generation succeeded */

    /* Partitions owned, and those of a SyncGroup awaiting their offsets. */
    struct sp_kafka_group_partition owned[SP_KAFKA_GROUP_PARTITIONS_MAX];
    unsigned owned_count;
    struct sp_kafka_group_partition incoming[SP_KAFKA_GROUP_PARTITIONS_MAX];
    unsigned incoming_count;

    /* Scratch of one call each (no statics: every shard has its own group). */
    struct sp_kafka_group_partition next_scratch[SP_KAFKA_GROUP_PARTITIONS_MAX];
    struct sp_kafka_group_partition revoked_scratch[SP_KAFKA_GROUP_PARTITIONS_MAX];
    struct sp_kafka_offset_commit_request_offset_commit_request_partition
        commit_scratch[SP_KAFKA_GROUP_PARTITIONS_MAX];
    int32_t index_scratch[SP_KAFKA_GROUP_PARTITIONS_MAX];

    uint8_t *work_mem;
    struct sp_karena work;

    struct sp_timer heartbeat_timer;
    struct sp_timer commit_timer; /* auto-commit */
    struct sp_timer retry_timer;  /* back-off and polling for a state's next step */
    struct sp_kafka_group_commit_slot commits[SP_KAFKA_GROUP_COMMITS_MAX];

    sp_kafka_group_done_fn *done_fn;
    void *done_ctx;

    /* Statistics. */
    uint64_t joins;
    uint64_t rebalances; /* SyncGroups completed */
    uint64_t commits_ok;
    uint64_t commits_failed;
};

/*
 * Starts `group` (config group.id, which must not be "") for `consumer` on
 * its client: subscribes to `topics` (topic_count names, copied into the
 * client's topic table) and begins with FindCoordinator. The group takes
 * over the consumer's assignment: do not assign or unassign it by hand
 * meanwhile. `cb` is copied. 0; -EINVAL (no group.id, no topics, a bad
 * name, no assignor); -ENOSPC (more than SP_KAFKA_GROUP_TOPICS_MAX topics or
 * the client's table is full); -ENOMEM.
 */
SP_MUST_CHECK int sp_kafka_group_init(struct sp_kafka_group *group,
                                      struct sp_kafka_consumer *consumer, const char *const *topics,
                                      unsigned topic_count,
                                      const struct sp_kafka_group_callbacks *cb);

/* The first partition error of an OffsetCommit response, 0 when every
 * partition was committed (one check for every committer). */
int16_t sp_kafka_offset_commit_error(const struct sp_kafka_offset_commit_response *r);

/*
 * Commits the consumer's current position of every owned partition with
 * OffsetCommit (this generation and member id); `fn` (may be NULL) runs
 * once with the outcome. 0 (also when nothing is owned: `fn` then runs
 * before the return); -ENOTCONN when not a member of a stable generation
 * (nothing sent, `fn` not called); -EBUSY when SP_KAFKA_GROUP_COMMITS_MAX
 * commits are in flight; the connection's -ENOBUFS.
 */
SP_MUST_CHECK int sp_kafka_group_commit(struct sp_kafka_group *group, sp_kafka_group_commit_fn *fn,
                                        void *ctx);

/*
 * Leaves the group: commits the positions (when auto-commit is on or
 * `commit` is true), revokes every partition (revoked callback), sends
 * LeaveGroup, and then calls `fn` (may be NULL), once, whether the
 * coordinator answered or not. A JoinGroup or SyncGroup in flight is let
 * finish first. After it the group does nothing but wait for
 * sp_kafka_group_close.
 */
void sp_kafka_group_leave(struct sp_kafka_group *group, bool commit, sp_kafka_group_done_fn *fn,
                          void *ctx);

/*
 * Stops everything without leaving (the coordinator notices by the
 * session timeout) and closes the coordinator connection;
 * sp_kafka_group_idle says when sp_kafka_group_deinit may run. Deinit the
 * group before its consumer.
 */
void sp_kafka_group_close(struct sp_kafka_group *group);
bool sp_kafka_group_idle(const struct sp_kafka_group *group);
void sp_kafka_group_deinit(struct sp_kafka_group *group);

/* Whether the group is a stable member with its partitions assigned. */
static inline bool sp_kafka_group_stable(const struct sp_kafka_group *group)
{
    return group->state == SP_KAFKA_GROUP_STABLE;
}

#endif /* SP_KAFKA_GROUP_H */
