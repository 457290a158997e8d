/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin operations on a Kafka cluster, as Kafka's AdminClient does them:
 * create and delete topics and create partitions (at the controller), list
 * groups (at every broker) and describe them (at each group's coordinator),
 * list offsets earliest, latest or by timestamp (at each partition's
 * leader).
 *
 * Each call starts one operation and returns at once; the operation routes
 * its requests, retries what Kafka calls retriable (NOT_CONTROLLER,
 * NOT_COORDINATOR, NOT_LEADER_OR_FOLLOWER, a dropped connection, ...) after
 * retry.backoff.ms until its deadline, and calls back exactly once with a
 * result per item. An API the broker lacks ends the operation at once with
 * -ENOTSUP and a message naming it: the answer users get from
 * `spate topic create` against a broker without CreateTopics.
 *
 * Admin calls are control-path: each operation holds one allocation from
 * the shard arena for its items, freed before the callback returns.
 */
#ifndef SP_KAFKA_ADMIN_H
#define SP_KAFKA_ADMIN_H

#include <stdint.h>

#include "sp_kafka_client.h"

/* Items per operation: topics, partitions or groups. */
#define SP_KAFKA_ADMIN_ITEMS_MAX 1024
#define SP_KAFKA_ADMIN_MESSAGE_MAX 160
#define SP_KAFKA_ADMIN_GROUP_NAME_MAX 256
#define SP_KAFKA_ADMIN_FIELD_MAX 64

/* ListOffsets' special timestamps. */
#define SP_KAFKA_OFFSET_SPEC_LATEST (-1)
#define SP_KAFKA_OFFSET_SPEC_EARLIEST (-2)

/* One topic, partition or group of an operation, with its outcome. */
struct sp_kafka_admin_item {
    char name[SP_KAFKA_ADMIN_GROUP_NAME_MAX]; /* topic or group */
    int32_t partition;                        /* list offsets */
    int32_t partitions;                       /* create topics / partitions: count */
    int16_t replication_factor;               /* create topics; -1: the broker's default */
    bool done;                                /* answered for good */
    int16_t error;                            /* Kafka error code; 0 on success */
    char message[SP_KAFKA_ADMIN_MESSAGE_MAX]; /* the broker's error message, if any */
    /* List offsets: the offset (-1 when none matches the timestamp). */
    int64_t offset;
    int64_t timestamp;
    int32_t leader_epoch;
    /* List and describe groups. */
    char state[SP_KAFKA_ADMIN_FIELD_MAX];
    char protocol_type[SP_KAFKA_ADMIN_FIELD_MAX];
    char protocol[SP_KAFKA_ADMIN_FIELD_MAX]; /* describe: the assignor chosen */
    int32_t members;
    int32_t coordinator; /* describe: the coordinator's node id */
};

/*
 * An operation's outcome. `err` is 0 when every item was answered (each
 * item then has its own `error`); -ENOTSUP when the broker lacks the API
 * (message names it); -ETIMEDOUT when the deadline passed with items
 * unanswered (those have REQUEST_TIMED_OUT); -ENOTCONN when no broker could
 * be reached; -ECANCELED when the client closed. `items` is valid during
 * the callback only.
 */
struct sp_kafka_admin_result {
    int err;
    char message[SP_KAFKA_ADMIN_MESSAGE_MAX];
    unsigned count;
    const struct sp_kafka_admin_item *items;
};

typedef void sp_kafka_admin_fn(struct sp_kafka_client *client,
                               const struct sp_kafka_admin_result *result, void *ctx);

/* A topic to create: name, partitions (-1: the broker's default), replicas. */
struct sp_kafka_new_topic {
    const char *name;
    int32_t partitions;
    int16_t replication_factor; /* -1: the broker's default (CreateTopics v4+) */
};

/*
 * Each call returns 0 with `fn` to come, or -EINVAL (no items, too many, a
 * name too long), -ENOBUFS; `fn` is not called then. `timeout_ms` bounds
 * the whole operation, retries included (Kafka's default.api.timeout.ms),
 * and is the broker-side timeout of topic changes.
 */
SP_MUST_CHECK int sp_kafka_admin_create_topics(struct sp_kafka_client *client,
                                               const struct sp_kafka_new_topic *topics,
                                               unsigned count, int32_t timeout_ms,
                                               sp_kafka_admin_fn *fn, void *ctx);

SP_MUST_CHECK int sp_kafka_admin_delete_topics(struct sp_kafka_client *client,
                                               const char *const *names, unsigned count,
                                               int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                               void *ctx);

/* Grows `topic` to `total` partitions. */
SP_MUST_CHECK int sp_kafka_admin_create_partitions(struct sp_kafka_client *client,
                                                   const char *topic, int32_t total,
                                                   int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                                   void *ctx);

/* Every group every known broker coordinates: one item per group. */
SP_MUST_CHECK int sp_kafka_admin_list_groups(struct sp_kafka_client *client, int32_t timeout_ms,
                                             sp_kafka_admin_fn *fn, void *ctx);

SP_MUST_CHECK int sp_kafka_admin_describe_groups(struct sp_kafka_client *client,
                                                 const char *const *groups, unsigned count,
                                                 int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                                 void *ctx);

/*
 * Offsets of `count` partitions of `topic` for `timestamp`: latest or
 * earliest (the SP_KAFKA_OFFSET_SPEC_ values), or the first offset whose
 * timestamp is at or after `timestamp` ms. `isolation_level` 1 asks for
 * the last stable offset instead of the high watermark.
 */
SP_MUST_CHECK int sp_kafka_admin_list_offsets(struct sp_kafka_client *client, const char *topic,
                                              const int32_t *partitions, unsigned count,
                                              int64_t timestamp, int8_t isolation_level,
                                              int32_t timeout_ms, sp_kafka_admin_fn *fn, void *ctx);

#endif /* SP_KAFKA_ADMIN_H */
