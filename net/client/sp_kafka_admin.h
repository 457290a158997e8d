/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin operations on a Kafka cluster, as Kafka's AdminClient does them:
 * create and delete topics and create partitions (at the controller), list
 * groups (at every broker) and describe them (at each group's coordinator),
 * list offsets earliest, latest or by timestamp and delete records (at each
 * partition's leader), describe a topic's or a broker's configs and the
 * cluster (at any broker, or the broker described).
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

/* Configs per describe-configs operation: more are left out. */
#define SP_KAFKA_ADMIN_CONFIGS_MAX 256

/* DescribeConfigs' resource types. */
#define SP_KAFKA_CONFIG_RESOURCE_TOPIC 2
#define SP_KAFKA_CONFIG_RESOURCE_BROKER 4

/* DeleteRecords' "every record": up to the high watermark. */
#define SP_KAFKA_DELETE_RECORDS_ALL (-1)

/* ListOffsets' special timestamps. */
#define SP_KAFKA_OFFSET_SPEC_LATEST (-1)
#define SP_KAFKA_OFFSET_SPEC_EARLIEST (-2)

/*
 * One topic, partition, group, config or broker of an operation, with its
 * outcome. Describe configs: `name` is the config, `message` its value
 * (empty for a null one; truncated past SP_KAFKA_ADMIN_MESSAGE_MAX - 1
 * bytes), with its source and flags below; a resource error comes as one
 * item named after the resource. Describe cluster: one item per broker,
 * `name` its host, `coordinator` its node id, `state` its rack (empty when
 * none), `protocol` the cluster id; a cluster error as one item "cluster".
 */
struct sp_kafka_admin_item {
    char name[SP_KAFKA_ADMIN_GROUP_NAME_MAX]; /* topic or group */
    int32_t partition;                        /* list offsets, delete records */
    int32_t partitions;                       /* create topics / partitions: count */
    int16_t replication_factor;               /* create topics; -1: the broker's default */
    bool done;                                /* answered for good */
    int16_t error;                            /* Kafka error code; 0 on success */
    char message[SP_KAFKA_ADMIN_MESSAGE_MAX]; /* the broker's error message, if any */
    /* List offsets: the offset (-1 when none matches the timestamp).
     * Delete records: the offset asked, then the new log start offset. */
    int64_t offset;
    int64_t timestamp;
    int32_t leader_epoch;
    /* List and describe groups. */
    char state[SP_KAFKA_ADMIN_FIELD_MAX];
    char protocol_type[SP_KAFKA_ADMIN_FIELD_MAX];
    char protocol[SP_KAFKA_ADMIN_FIELD_MAX]; /* describe: the assignor chosen */
    int32_t members;
    int32_t coordinator; /* describe: the coordinator's node id */
    /* Describe configs: Kafka's ConfigSource (1 dynamic topic, 2 dynamic
     * broker, 4 static broker, 5 default...), and its flags. */
    int8_t config_source;
    bool read_only;
    bool is_default;
    bool sensitive;
    /* Describe cluster. */
    int32_t port;
    bool controller;
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

/*
 * Deletes the records of `count` partitions of `topic` before offsets[i]
 * (SP_KAFKA_DELETE_RECORDS_ALL: the high watermark): each item's `offset`
 * becomes the partition's new log start offset (low watermark).
 */
SP_MUST_CHECK int sp_kafka_admin_delete_records(struct sp_kafka_client *client, const char *topic,
                                                const int32_t *partitions, const int64_t *offsets,
                                                unsigned count, int32_t timeout_ms,
                                                sp_kafka_admin_fn *fn, void *ctx);

/*
 * The configs of one resource: a topic (SP_KAFKA_CONFIG_RESOURCE_TOPIC,
 * asked of any broker) or a broker (SP_KAFKA_CONFIG_RESOURCE_BROKER, `name`
 * its node id, asked of that broker). One item per config, at most
 * SP_KAFKA_ADMIN_CONFIGS_MAX (see struct sp_kafka_admin_item).
 */
SP_MUST_CHECK int sp_kafka_admin_describe_configs(struct sp_kafka_client *client,
                                                  int8_t resource_type, const char *name,
                                                  int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                                  void *ctx);

/* The cluster's brokers, controller and id, as any broker sees them (DescribeCluster). */
SP_MUST_CHECK int sp_kafka_admin_describe_cluster(struct sp_kafka_client *client,
                                                  int32_t timeout_ms, sp_kafka_admin_fn *fn,
                                                  void *ctx);

#endif /* SP_KAFKA_ADMIN_H */
