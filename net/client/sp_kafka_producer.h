/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka producer of one shard, on sp_kafka_client.
 *
 * Records are appended to a RecordBatch v2 per partition as they come
 * (zero intermediate copies: key, value and headers go straight into the
 * batch). A batch closes when it reaches batch.size or has waited linger.ms;
 * closed batches are sent to the partition's leader, one per partition per
 * Produce request, several partitions per request, at most
 * max.in.flight.requests.per.connection requests per partition in flight
 * (one without idempotence, so a retry cannot reorder). Compression happens
 * when a batch closes.
 *
 * Idempotence (enable.idempotence, the default): InitProducerId first; every
 * batch carries the producer id, epoch and its first sequence number; a
 * retried batch keeps them, so the broker writes it once. On
 * OUT_OF_ORDER_SEQUENCE_NUMBER with no earlier batch of the partition still
 * unresolved, the producer takes a new epoch (InitProducerId again) and
 * restamps what it has not yet had acknowledged.
 *
 * Every record gets exactly one delivery report: its offset, or the error
 * (retries exhausted past delivery.timeout.ms, a non-retriable broker error,
 * the producer closed). Memory: batches come from a pool bounded by
 * buffer.memory; a full pool is -ENOBUFS from sp_kafka_produce, which is
 * backpressure, never a drop.
 */
#ifndef SP_KAFKA_PRODUCER_H
#define SP_KAFKA_PRODUCER_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_kafka_client.h"
#include "sp_kafka_partitioner.h"
#include "sp_record.h"

#define SP_KAFKA_PRODUCER_TOPICS_MAX SP_KAFKA_CLIENT_TOPICS_MAX
#define SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX 256
#define SP_KAFKA_PRODUCER_BUFFER_MEMORY_DEFAULT (32u << 20) /* buffer.memory */

struct sp_kafka_producer;

struct sp_kafka_delivery {
    const char *topic;
    int32_t partition;
    int64_t offset;     /* -1 when unknown (acks=0) or failed */
    int err;            /* 0, or -errno: -ETIMEDOUT, -ECANCELED, -EPROTO (broker error) */
    int16_t error_code; /* the broker's error code behind -EPROTO */
    void *msg_ctx;      /* as given to sp_kafka_produce */
};

typedef void sp_kafka_delivery_fn(struct sp_kafka_producer *producer,
                                  const struct sp_kafka_delivery *delivery, void *ctx);

struct sp_kafka_pbatch;
struct sp_kafka_producer;

/* A transactional operation finished: 0, or -errno (-EPROTO: see txn_error). */
typedef void sp_kafka_txn_fn(struct sp_kafka_producer *producer, int err, void *ctx);

struct sp_kafka_ppart {
    struct sp_kafka_ptopic *topic;
    int32_t partition;
    bool txn_added;                     /* AddPartitionsToTxn done for the current transaction */
    bool txn_adding;                    /* ... in flight */
    struct sp_kafka_pbatch *open;       /* accumulating records */
    struct sp_kafka_pbatch *ready_head; /* closed, in sequence order */
    struct sp_kafka_pbatch *ready_tail;
    uint32_t inflight;
    int32_t next_sequence;
};

struct sp_kafka_ptopic {
    struct sp_kafka_topic_info *info;
    struct sp_kafka_ppart *parts; /* [part_count] */
    int32_t part_count;
    struct sp_kafka_sticky sticky; /* the null-key partition (KIP-480) */
};

struct sp_kafka_producer {
    struct sp_kafka_client *client;
    const struct sp_kafka_config *config;
    sp_kafka_delivery_fn *delivery_fn;
    void *ctx;
    sp_kafka_client_event_fn *chained_fn; /* the client's previous listener */
    void *chained_ctx;

    struct sp_kafka_ptopic topics[SP_KAFKA_PRODUCER_TOPICS_MAX];
    unsigned topic_count;

    /* Batch memory. */
    struct sp_kafka_pbatch *free_batches;
    uint32_t batch_bytes;    /* a pooled batch's buffer */
    uint32_t scratch_bytes;  /* its uncompressed-records buffer (0: none) */
    uint64_t pool_bytes;     /* allocated so far */
    uint64_t pool_bytes_max; /* buffer.memory */
    struct sp_record_codec codec;

    /* Idempotence. */
    int64_t producer_id; /* -1 until InitProducerId answered */
    int16_t producer_epoch;
    bool pid_inflight;
    bool fatal;
    int fatal_error;

    /* Transactions (transactional.id set). */
    int txn_state;           /* enum in producer.c */
    int32_t txn_coordinator; /* broker id, -1 until found */
    bool txn_step_inflight;  /* FindCoordinator or InitProducerId in flight */
    sp_kafka_txn_fn *txn_fn; /* the operation in progress reports here */
    void *txn_ctx;
    bool txn_end_commit;                 /* what EndTxn will say */
    bool txn_resumed;                    /* the transaction is an earlier producer's (txn_resume) */
    int16_t txn_error_code;              /* the broker's error behind txn_error, 0 if none */
    char txn_error[160];                 /* why the producer is fenced or failed */
    char txn_id[SP_KAFKA_CONFIG_ID_MAX]; /* transactional.id, or txn_id_set's; "" = none */

    struct sp_timer linger_timer;
    struct sp_rand rand;
    bool closing;

    /* Statistics. */
    uint64_t records_queued;
    uint64_t records_delivered;
    uint64_t records_failed;
    uint64_t batches_sent;
    uint64_t requests_sent;
    uint64_t retries;
    uint64_t epoch_bumps;
};

/*
 * Starts a producer on `client` (whose config it uses). `fn(producer,
 * delivery, ctx)` reports every record once. 0 or -ENOMEM.
 */
SP_MUST_CHECK int sp_kafka_producer_init(struct sp_kafka_producer *producer,
                                         struct sp_kafka_client *client, sp_kafka_delivery_fn *fn,
                                         void *ctx);

/*
 * Queues one record for `topic`. `partition` -1 chooses one: murmur2 of the
 * key as the Java client, sticky for a null key (KIP-480). Key and value
 * (NULL with length -1 for null) and headers are copied into the batch now.
 * `timestamp_ms` < 0 takes the current time. `msg_ctx` comes back in the
 * delivery report. Returns 0; -EAGAIN while the topic's metadata is not
 * known yet (retry after the client's on_change); -ENOBUFS when batch
 * memory is exhausted (retry after deliveries); -EMSGSIZE for a record
 * larger than max.request.size; -EINVAL for a bad partition; -ENOENT for a
 * topic the brokers do not have; -EPIPE after a fatal error or close.
 */
SP_MUST_CHECK int sp_kafka_produce(struct sp_kafka_producer *producer, const char *topic,
                                   size_t topic_len, int32_t partition, const void *key,
                                   int32_t key_len, const void *value, int32_t value_len,
                                   const struct sp_record_header *headers, uint32_t header_count,
                                   int64_t timestamp_ms, void *msg_ctx);

/* ---- Transactions (transactional.id set; Kafka's two-phase commit) ---- */

/*
 * Finds the transaction coordinator and takes the producer id and epoch for
 * transactional.id (fencing any older producer with that id). `fn` reports.
 * 0, -EINVAL (no transactional.id) or -EBUSY (an operation in progress).
 */
SP_MUST_CHECK int sp_kafka_producer_txn_init(struct sp_kafka_producer *producer,
                                             sp_kafka_txn_fn *fn, void *ctx);

/*
 * Gives this producer its own transactional id instead of the config's
 * transactional.id (several transactional producers on one client: the
 * config's id is then a default). Before txn_init or txn_resume, with
 * nothing produced yet. 0; -EINVAL for an empty or too long id
 * (SP_KAFKA_CONFIG_ID_MAX), or when the config is not idempotent (a
 * transactional producer is); -EBUSY once started.
 */
SP_MUST_CHECK int sp_kafka_producer_txn_id_set(struct sp_kafka_producer *producer,
                                               const char *transactional_id);

/*
 * Takes over a transaction that an earlier producer of this transactional
 * id left open or prepared (a process that crashed between its records'
 * acknowledgement and its commit): the producer gets `producer_id` and
 * `producer_epoch` as they were, without InitProducerId (which would abort
 * that transaction), and is in that transaction; the only thing to do next
 * is sp_kafka_producer_txn_end, which finds the coordinator and sends
 * EndTxn (this is Flink's resumeTransaction). Producing into a resumed
 * transaction is refused (-EPROTO from sp_kafka_produce: its sequence
 * numbers belong to the earlier producer).
 *
 * txn_end(commit) reports 0 when the coordinator committed it, or when it
 * was already committed with this producer id and epoch (a commit that
 * happened before a crash: Kafka answers a repeated commit with success);
 * aborting one that is already aborted succeeds the same way. It reports
 * -EPROTO, with the producer fatal and txn_error/txn_error_code saying
 * why, when the transaction cannot be ended so: INVALID_PRODUCER_EPOCH or
 * PRODUCER_FENCED (a newer producer initialised this id, or the
 * coordinator aborted the transaction at its transaction.timeout.ms and
 * bumped the epoch), INVALID_PRODUCER_ID_MAPPING (the coordinator does not
 * know this id and producer id: expired), INVALID_TXN_STATE (it ended the
 * other way). After a successful end the producer has no producer id
 * again: sp_kafka_producer_txn_init before producing.
 *
 * Call on a transactional producer that was never initialised (or is back
 * there after a resumed end). 0; -EINVAL (not transactional, pid < 0 or
 * epoch < 0); -EBUSY (initialised, or an operation in progress).
 */
SP_MUST_CHECK int sp_kafka_producer_txn_resume(struct sp_kafka_producer *producer,
                                               int64_t producer_id, int16_t producer_epoch);

/* Starts a transaction: records produced from now on belong to it. 0 or -EBUSY. */
SP_MUST_CHECK int sp_kafka_producer_txn_begin(struct sp_kafka_producer *producer);

/*
 * Adds consumer offsets to the transaction (AddOffsetsToTxn, then
 * TxnOffsetCommit to the group's coordinator): `offsets` are the next
 * offsets to read of `count` partitions of `topic`. 0 or -EBUSY.
 */
struct sp_kafka_txn_offset {
    int32_t partition;
    int64_t offset;
};
SP_MUST_CHECK int sp_kafka_producer_txn_send_offsets(struct sp_kafka_producer *producer,
                                                     const char *group_id, const char *topic,
                                                     const struct sp_kafka_txn_offset *offsets,
                                                     unsigned count, sp_kafka_txn_fn *fn,
                                                     void *ctx);

/*
 * Ends the transaction: flushes, waits for every record's report, then
 * EndTxn with commit or abort. `fn` reports. 0 or -EBUSY.
 */
SP_MUST_CHECK int sp_kafka_producer_txn_end(struct sp_kafka_producer *producer, bool commit,
                                            sp_kafka_txn_fn *fn, void *ctx);

/* Closes every open batch now instead of after linger.ms, and sends. */
void sp_kafka_producer_flush(struct sp_kafka_producer *producer);

/* Records queued and not yet reported. */
uint64_t sp_kafka_producer_outstanding(const struct sp_kafka_producer *producer);

/*
 * Fails every record not yet sent with -ECANCELED (after a flush, call it
 * once outstanding is 0 for a clean close) and releases the memory.
 */
void sp_kafka_producer_deinit(struct sp_kafka_producer *producer);

#endif /* SP_KAFKA_PRODUCER_H */
