/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A shard's Kafka client core: the bootstrap connection, one connection per
 * broker, and the metadata cache (topics, partitions, leaders and leader
 * epochs) the producer and consumer route by.
 *
 * Metadata is fetched for the topics someone asked for, refreshed every
 * metadata.max.age.ms, and sooner when asked (after NOT_LEADER_OR_FOLLOWER,
 * UNKNOWN_TOPIC_OR_PARTITION, a leader epoch change or a lost connection),
 * at most once per retry.backoff.ms. Bootstrap servers are tried in turn.
 *
 * Limits (fixed at build time, each with its -ENOSPC): brokers, topics, and
 * partitions per topic below. Thread rules: one shard.
 */
#ifndef SP_KAFKA_CLIENT_H
#define SP_KAFKA_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_kafka_config.h"
#include "sp_kafka_conn.h"

#define SP_KAFKA_CLIENT_BROKERS_MAX 32
#define SP_KAFKA_CLIENT_TOPICS_MAX 64
#define SP_KAFKA_TOPIC_NAME_BYTES_MAX 249 /* Kafka's own limit */
#define SP_KAFKA_PARTITIONS_MAX 4096

/* Kafka error codes the client acts on. */
enum {
    SP_KAFKA_ERR_NONE = 0,
    SP_KAFKA_ERR_OFFSET_OUT_OF_RANGE = 1,
    SP_KAFKA_ERR_CORRUPT_MESSAGE = 2,
    SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    SP_KAFKA_ERR_LEADER_NOT_AVAILABLE = 5,
    SP_KAFKA_ERR_NOT_LEADER_OR_FOLLOWER = 6,
    SP_KAFKA_ERR_REQUEST_TIMED_OUT = 7,
    SP_KAFKA_ERR_NETWORK_EXCEPTION = 13,
    SP_KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS = 14,
    SP_KAFKA_ERR_COORDINATOR_NOT_AVAILABLE = 15,
    SP_KAFKA_ERR_NOT_COORDINATOR = 16,
    SP_KAFKA_ERR_NOT_ENOUGH_REPLICAS = 19,
    SP_KAFKA_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    SP_KAFKA_ERR_REBALANCE_IN_PROGRESS = 27,
    SP_KAFKA_ERR_UNSUPPORTED_VERSION = 35,
    SP_KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    SP_KAFKA_ERR_DUPLICATE_SEQUENCE_NUMBER = 46,
    SP_KAFKA_ERR_INVALID_PRODUCER_EPOCH = 47,
    SP_KAFKA_ERR_PRODUCER_FENCED = 90,
    SP_KAFKA_ERR_FENCED_LEADER_EPOCH = 74,
    SP_KAFKA_ERR_UNKNOWN_LEADER_EPOCH = 75,
};

/* True for errors a request may be retried after (Kafka's RetriableException). */
bool sp_kafka_error_retriable(int16_t code);

/* Kafka's name of an error code ("NOT_LEADER_OR_FOLLOWER"), or "UNKNOWN". */
const char *sp_kafka_error_name(int16_t code);

struct sp_kafka_partition_info {
    int32_t leader;       /* broker id, -1 when none */
    int32_t leader_epoch; /* -1 when the broker does not say */
    int16_t error;
};

struct sp_kafka_topic_info {
    char name[SP_KAFKA_TOPIC_NAME_BYTES_MAX + 1];
    int16_t error; /* from the last metadata */
    bool known;    /* metadata has described it */
    int32_t partition_count;
    struct sp_kafka_partition_info *partitions; /* [partition_count] */
};

struct sp_kafka_broker {
    int32_t node_id;
    bool in_use;
    struct sp_kafka_conn conn;
};

struct sp_kafka_client;
typedef void sp_kafka_client_event_fn(struct sp_kafka_client *client, void *ctx);

struct sp_kafka_client {
    struct sp_shard *shard;
    const struct sp_kafka_config *config;
    struct sp_kafka_conn_config conn_config;
    char client_id[SP_KAFKA_CONFIG_ID_MAX];

    struct sp_kafka_conn bootstrap;
    bool bootstrap_in_use;
    unsigned bootstrap_index;
    unsigned bootstrap_failures;
    int bootstrap_error;
    struct sp_timer bootstrap_timer; /* moving on to the next bootstrap server */

    struct sp_kafka_broker brokers[SP_KAFKA_CLIENT_BROKERS_MAX];
    unsigned broker_count;
    struct sp_kafka_topic_info topics[SP_KAFKA_CLIENT_TOPICS_MAX];
    unsigned topic_count;

    bool metadata_inflight;
    bool metadata_wanted; /* refresh as soon as allowed */
    bool metadata_ever;   /* at least one answer */
    bool allow_auto_topic_creation;
    int32_t controller_id; /* from metadata v1+; -1 when unknown */
    uint64_t metadata_last_ns;
    uint64_t metadata_refreshes;
    struct sp_timer metadata_timer;

    bool closing;

    /* Called after every metadata answer and when a broker comes up. */
    sp_kafka_client_event_fn *on_change;
    void *ctx;
};

/*
 * Starts a client on `shard` with `config` (borrowed; validated by the
 * caller): connects to the first bootstrap server. 0, -EINVAL (no usable
 * bootstrap server) or -ENOMEM.
 */
SP_MUST_CHECK int sp_kafka_client_init(struct sp_kafka_client *client, struct sp_shard *shard,
                                       const struct sp_kafka_config *config,
                                       sp_kafka_client_event_fn *on_change, void *ctx);

/* Closes every connection; sp_kafka_client_idle says when it may be deinitialised. */
void sp_kafka_client_close(struct sp_kafka_client *client);
bool sp_kafka_client_idle(const struct sp_kafka_client *client);
void sp_kafka_client_deinit(struct sp_kafka_client *client);

/*
 * The topic `name` (len bytes), added to the metadata wanted if new. Its
 * `known` is false until metadata describes it. NULL with -ENOSPC past
 * SP_KAFKA_CLIENT_TOPICS_MAX or -EINVAL for a bad name, in *err.
 */
struct sp_kafka_topic_info *sp_kafka_client_topic(struct sp_kafka_client *client, const char *name,
                                                  size_t len, int *err);

/* Asks for a metadata refresh (after retry.backoff.ms since the last). */
void sp_kafka_client_refresh(struct sp_kafka_client *client);

/*
 * The connection to broker `node_id`, connecting it if needed (it may not
 * be ready yet: on_change runs when it is). NULL for an unknown broker.
 */
struct sp_kafka_conn *sp_kafka_client_broker(struct sp_kafka_client *client, int32_t node_id);

/* Any ready connection (for requests any broker answers), or NULL. */
struct sp_kafka_conn *sp_kafka_client_any(struct sp_kafka_client *client);

#define SP_KAFKA_COORDINATOR_GROUP 0
#define SP_KAFKA_COORDINATOR_TRANSACTION 1

/*
 * The coordinator of `key` (a group id or a transactional id, by
 * `key_type`): `fn(client, err, error_code, node_id, ctx)` gets its broker id
 * (added to the brokers if metadata had not listed it), or err < 0 (no
 * connection, a failed request) or error_code != 0 (the broker's answer,
 * e.g. COORDINATOR_NOT_AVAILABLE: ask again later). `key` is copied.
 * Returns 0 or -ENOTCONN / -ENOBUFS.
 */
typedef void sp_kafka_coordinator_fn(struct sp_kafka_client *client, int err, int16_t error_code,
                                     int32_t node_id, void *ctx);
SP_MUST_CHECK int sp_kafka_client_find_coordinator(struct sp_kafka_client *client, int8_t key_type,
                                                   const char *key, sp_kafka_coordinator_fn *fn,
                                                   void *ctx);

#endif /* SP_KAFKA_CLIENT_H */
