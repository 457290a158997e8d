/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka consumer of one shard, on sp_kafka_client: manually assigned
 * partitions (consumer groups build on this), one Fetch in flight per
 * leader, records handed to the caller as zero-copy views into the fetch
 * response (compressed batches are decompressed into one scratch buffer
 * first), read_committed filtering of aborted transactions, and
 * auto.offset.reset through ListOffsets.
 *
 * Offsets: SP_KAFKA_OFFSET_BEGINNING and SP_KAFKA_OFFSET_END resolve with
 * ListOffsets before the first fetch; an OFFSET_OUT_OF_RANGE answer resets
 * as auto.offset.reset says (with "none" the partition stops and the error
 * is reported). Records before the requested offset in the first batch are
 * skipped, as the broker returns whole batches.
 *
 * Fetch sessions (KIP-227), with brokers at Fetch v7+: the first Fetch to a
 * leader is a full one that asks for a session (epoch 0); once the broker
 * grants one, each Fetch names only the partitions whose fetch offset
 * changed, the ones joining and (forgotten_topics_data) the ones leaving,
 * and the broker answers only for partitions with something new. A broker
 * that grants no session (librdkafka's mock) gets full Fetches, session
 * epoch -1; FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH or a
 * dropped connection start a new session with a full Fetch.
 */
#ifndef SP_KAFKA_CONSUMER_H
#define SP_KAFKA_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_kafka_client.h"
#include "sp_kafka_txn_filter.h"
#include "sp_record.h"

#define SP_KAFKA_CONSUMER_PARTITIONS_MAX 1024
#define SP_KAFKA_OFFSET_END (-1)
#define SP_KAFKA_OFFSET_BEGINNING (-2)
#define SP_KAFKA_ABORTED_MAX 1024 /* aborted transactions per partition per fetch */

struct sp_kafka_consumer;

/* A record, valid during the call only. */
typedef void sp_kafka_record_fn(struct sp_kafka_consumer *consumer, const char *topic,
                                int32_t partition, const struct sp_record *record, void *ctx);

/* A partition that cannot go on (reset "none", unknown topic, corrupt data). */
typedef void sp_kafka_consumer_error_fn(struct sp_kafka_consumer *consumer, const char *topic,
                                        int32_t partition, int err, int16_t error_code, void *ctx);

struct sp_kafka_cpart {
    struct sp_kafka_topic_info *topic;
    int32_t partition;
    int64_t offset;         /* next to fetch; < 0 while it must be resolved */
    int64_t high_watermark; /* from the last fetch, -1 before */
    /* From the last fetch (v4+), -1 before or from older brokers: the end
     * of what read_committed can read while a transaction is open. */
    int64_t last_stable_offset;
    bool stopped;
    bool resolving;
    uint32_t mark; /* building a session Fetch: already in the session */
};

/* Partitions per Fetch and per fetch session: every assigned one can be in one. */
#define SP_KAFKA_FETCH_SESSION_PARTITIONS_MAX SP_KAFKA_CONSUMER_PARTITIONS_MAX

struct sp_kafka_fetch_build; /* consumer.c: a Fetch request being put together */

/* What a broker holds for a fetch session: partitions at the offset last sent. */
struct sp_kafka_fetch_session {
    int32_t id;       /* 0: none */
    int32_t epoch;    /* of the next request: 0 asks for a session */
    bool unsupported; /* the broker granted none: full fetches, epoch -1 */
    unsigned count;
    struct sp_kafka_fetch_session_part {
        struct sp_kafka_topic_info *topic;
        int32_t partition;
        uint32_t index; /* in the consumer's parts, checked before use */
        int64_t offset;
    } parts[SP_KAFKA_FETCH_SESSION_PARTITIONS_MAX];
};

struct sp_kafka_consumer {
    struct sp_kafka_client *client;
    const struct sp_kafka_config *config;
    sp_kafka_record_fn *record_fn;
    sp_kafka_consumer_error_fn *error_fn;
    void *ctx;
    sp_kafka_client_event_fn *chained_fn;
    void *chained_ctx;

    struct sp_kafka_cpart parts[SP_KAFKA_CONSUMER_PARTITIONS_MAX];
    unsigned part_count;
    bool fetching[SP_KAFKA_CLIENT_BROKERS_MAX];                           /* by broker slot */
    struct sp_kafka_fetch_session *sessions[SP_KAFKA_CLIENT_BROKERS_MAX]; /* by broker slot */
    struct sp_kafka_fetch_build *build; /* scratch of fetch_from, reused */
    bool paused;
    bool closing;
    unsigned next_fetch_start; /* where the next Fetch starts adding partitions */
    uint32_t mark;             /* the current session Fetch's cpart mark */

    struct sp_record_codec codec;
    uint8_t *scratch; /* decompressed records of one batch */
    uint32_t scratch_bytes;
    struct sp_kafka_fetch_response_aborted_transaction aborted[SP_KAFKA_ABORTED_MAX];

    /* Statistics. */
    uint64_t records;
    uint64_t bytes;
    uint64_t fetches;
    uint64_t incremental_fetches; /* within a fetch session */
    uint64_t fetch_session_resets;
    uint64_t aborted_batches;
};

/*
 * Starts a consumer on `client` (whose config it uses): `record_fn` gets
 * every record, `error_fn` (may be NULL) every partition that stops. 0 or
 * -ENOMEM.
 */
SP_MUST_CHECK int sp_kafka_consumer_init(struct sp_kafka_consumer *consumer,
                                         struct sp_kafka_client *client,
                                         sp_kafka_record_fn *record_fn,
                                         sp_kafka_consumer_error_fn *error_fn, void *ctx);

/*
 * Adds `topic`/`partition` from `offset` (>= 0, SP_KAFKA_OFFSET_BEGINNING
 * or SP_KAFKA_OFFSET_END). Partition -1 adds every partition of the topic,
 * once its metadata is known (-EAGAIN until then). 0, -EAGAIN, -ENOSPC,
 * -EINVAL, -ENOENT (no such topic).
 */
SP_MUST_CHECK int sp_kafka_consumer_assign(struct sp_kafka_consumer *consumer, const char *topic,
                                           int32_t partition, int64_t offset);

/*
 * Moves an assigned partition to `offset` (>= 0, SP_KAFKA_OFFSET_BEGINNING
 * or SP_KAFKA_OFFSET_END); a stopped partition starts again. 0, -EINVAL,
 * -ENOENT (not assigned).
 */
SP_MUST_CHECK int sp_kafka_consumer_seek(struct sp_kafka_consumer *consumer, const char *topic,
                                         int32_t partition, int64_t offset);

/* Removes every assignment (fetches in flight are ignored when they return). */
void sp_kafka_consumer_unassign(struct sp_kafka_consumer *consumer);

/* Stops and resumes fetching (backpressure from the caller). */
void sp_kafka_consumer_pause(struct sp_kafka_consumer *consumer, bool paused);

/* Releases the consumer's memory; the client must be closed after. */
void sp_kafka_consumer_deinit(struct sp_kafka_consumer *consumer);

#endif /* SP_KAFKA_CONSUMER_H */
