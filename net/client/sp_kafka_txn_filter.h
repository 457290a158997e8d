/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The consumer's transaction filter: which batches of one partition's Fetch
 * response to deliver, under read_committed or read_uncommitted, and at
 * which offset to fetch next. Pure: no I/O, no allocation, no clock.
 *
 * It does what the Java consumer does (CompletedFetch): the response's
 * aborted transactions (producer id, first offset) are taken in order of
 * first offset. On reaching a batch with a producer id (read_committed
 * only), every aborted transaction whose first offset is at or below the
 * batch's last offset has its producer added to the aborted set. Then an
 * ABORT control batch (its first record an ABORT marker) removes its
 * producer from the set; a transactional batch whose producer is in the set
 * is skipped. Control batches are never delivered; under read_uncommitted
 * every other batch is.
 *
 * It is not a record iterator: a delivered batch is handed over whole
 * (zero-copy, pointing into the caller's records buffer), and the caller
 * reads its records with sp_record_iter_open(). The first delivered batch
 * may begin before the fetch offset (the broker returns whole batches): its
 * records below fetch_offset are for the caller to skip, as Java does record
 * by record. Batches wholly below the fetch offset still count for the
 * transaction state but are not delivered.
 *
 * Memory is bounded and the caller's: the aborted list is copied into
 * caller-given scratch of at least as many entries (which may be the
 * response's own array, reordered in place) and sorted there by first
 * offset when it is not already sorted (Kafka does not promise an order).
 * The aborted-producer set lives in the same scratch, in the slots of the
 * transactions already consumed, so it needs no more room. Lookups in the
 * set are linear in its size, which is the number of producers whose
 * aborted transactions are open at the current offset (a handful).
 *
 * The records field comes from the outside: nothing here asserts on it.
 * Malformed input (a batch that does not parse, offsets that go backwards or
 * overflow, an unreadable control record) makes next() return -EBADMSG, and
 * the filter stays failed. A cut trailing batch (the broker's byte limit) is
 * not an error: the walk ends cleanly before it.
 *
 * Threads: a filter belongs to the shard that uses it; it points into the
 * records and scratch buffers, which must outlive it.
 */
#ifndef SP_KAFKA_TXN_FILTER_H
#define SP_KAFKA_TXN_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch_response.h"
#include "sp_common.h"
#include "sp_kafka_config.h" /* enum sp_kafka_isolation_level: Kafka's numbers */
#include "sp_record.h"

/*
 * Decompressed records of a compressed control batch are read from a buffer
 * of this size inside the filter. A transaction marker's one record is
 * about 20 bytes; a compressed control batch whose records exceed this is
 * rejected as malformed.
 */
#define SP_KAFKA_TXN_FILTER_CONTROL_BYTES_MAX 128

struct sp_kafka_txn_filter_config {
    enum sp_kafka_isolation_level isolation;
    int64_t fetch_offset; /* the offset the Fetch request asked for */
    /*
     * read_committed: room for the aborted list, at least aborted_count
     * entries (may be the list itself). Unused, may be NULL, under
     * read_uncommitted or when the list is empty.
     */
    struct sp_kafka_fetch_response_aborted_transaction *scratch;
    size_t scratch_count;
    /*
     * Optional: a context with SP_RECORD_CODEC_DECOMPRESS for the rare
     * compressed control batch (brokers write markers uncompressed). NULL:
     * such a batch makes next() fail with -EINVAL.
     */
    struct sp_record_codec *codec;
};

struct sp_kafka_txn_filter {
    struct sp_record_set set; /* set.partial_bytes: bytes of a cut trailing batch */
    struct sp_record_codec *codec;
    /*
     * The scratch: [0, aborted_producer_count) is the aborted-producer set
     * (producer_id only), [aborted_next, aborted_count) the transactions not
     * yet reached, by first offset. aborted_producer_count <= aborted_next.
     */
    struct sp_kafka_fetch_response_aborted_transaction *aborted;
    size_t aborted_count;
    size_t aborted_next;
    size_t aborted_producer_count;
    int64_t fetch_offset;
    int64_t next_offset;          /* where to fetch next */
    int64_t last_offset_seen;     /* last offset of the last whole batch, -1 before any */
    uint64_t batch_count;         /* whole batches seen, control and skipped included */
    uint64_t aborted_batch_count; /* data batches skipped as aborted */
    uint64_t control_batch_count; /* control batches seen (never delivered) */
    int failed_rc;                /* 0, or the error every later next() returns */
    enum sp_kafka_isolation_level isolation;
    uint8_t control_records[SP_KAFKA_TXN_FILTER_CONTROL_BYTES_MAX];
};

/*
 * Starts filtering the `records_len` bytes at `records` (a Fetch response
 * partition's records field, borrowed) against the `aborted_count` aborted
 * transactions at `aborted` (borrowed until init returns; -1 means the
 * list is null, as the codec writes it). Returns 0, or -ENOBUFS when
 * read_committed has more aborted transactions than config->scratch_count.
 * An isolation level other than the two is a programming error (asserted).
 */
SP_MUST_CHECK int
sp_kafka_txn_filter_init(struct sp_kafka_txn_filter *filter,
                         const struct sp_kafka_txn_filter_config *config,
                         const struct sp_kafka_fetch_response_aborted_transaction *aborted,
                         int32_t aborted_count, const uint8_t *records, size_t records_len);

/*
 * sp_kafka_txn_filter_init() on a decoded Fetch response partition: its
 * aborted transactions and records (a null records field is empty). The
 * partition's error code is the caller's to check first. 0 or -ENOBUFS.
 */
SP_MUST_CHECK int
sp_kafka_txn_filter_init_partition(struct sp_kafka_txn_filter *filter,
                                   const struct sp_kafka_txn_filter_config *config,
                                   const struct sp_kafka_fetch_response_partition_data *partition);

/*
 * The next batch to deliver: 1 and *out filled (pointing into the records
 * buffer); 0 at the end (a cut trailing batch included; see
 * filter->set.partial_bytes and partial_batch_bytes: a first batch larger
 * than the fetch's byte limit leaves the next offset where it was); or an
 * error, after which every call returns the same one: -EBADMSG for a
 * malformed records field; -EINVAL for a compressed control batch with no
 * codec context; -ENOMEM when a decompression library fails to allocate.
 * Each call consumes at least one batch and at most all of them.
 */
SP_MUST_CHECK int sp_kafka_txn_filter_next(struct sp_kafka_txn_filter *filter,
                                           struct sp_record_batch *out);

/*
 * The offset to fetch next: past the last whole batch seen (skipped,
 * control or delivered), so that a skipped or control batch at the end is
 * never fetched again; the fetch offset while no batch is seen. It assumes
 * the caller consumes each delivered batch whole.
 */
static inline int64_t sp_kafka_txn_filter_next_offset(const struct sp_kafka_txn_filter *filter)
{
    return filter->next_offset;
}

#endif /* SP_KAFKA_TXN_FILTER_H */
