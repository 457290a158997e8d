/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The consumer's read_committed filter over one Fetch response partition
 * (see sp_kafka_txn_filter.h for the rules, which are the Java consumer's).
 * The aborted list is sorted once, in caller scratch, with a heapsort: no
 * recursion, no allocation, O(n log n) on any input, and skipped entirely
 * when the broker sent the list in order, which it does in practice (it
 * reads the list from its transaction index, in offset order). The walk
 * over the batches is the record library's sp_record_set; this file only
 * decides, batch by batch, what the caller sees.
 */
#include <errno.h>
#include <string.h>

#include "sp_kafka_txn_filter.h"
#include "sp_log.h"

/* Logs the line that rejected the input (debug level), returns -EBADMSG. */
static int txn_filter_reject(int line)
{
    sp_debug("txn_filter: rejected malformed records (txn_filter.c:%d)", line);
    return -EBADMSG;
}
#define TXN_FILTER_BAD() txn_filter_reject(__LINE__)

/* ---- The aborted list: sort and consume ---- */

static bool aborted_sorted(const struct sp_kafka_fetch_response_aborted_transaction *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (a[i - 1].first_offset > a[i].first_offset)
            return false;
    }
    return true;
}

/* Moves a[root] down the max-heap a[0, n) (keyed on first offset). */
static void aborted_sift_down(struct sp_kafka_fetch_response_aborted_transaction *a, size_t root,
                              size_t n)
{
    SP_ASSERT(root < n);
    for (;;) { /* at most log2(n) rounds: root at least doubles each time */
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && a[child + 1].first_offset > a[child].first_offset)
            child++;
        if (a[root].first_offset >= a[child].first_offset)
            return;
        struct sp_kafka_fetch_response_aborted_transaction tmp = a[root];
        a[root] = a[child];
        a[child] = tmp;
        root = child;
    }
}

static void aborted_sort(struct sp_kafka_fetch_response_aborted_transaction *a, size_t n)
{
    if (n < 2 || aborted_sorted(a, n))
        return;
    for (size_t i = n / 2; i-- > 0;)
        aborted_sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        struct sp_kafka_fetch_response_aborted_transaction tmp = a[0];
        a[0] = a[end];
        a[end] = tmp;
        aborted_sift_down(a, 0, end);
    }
    SP_DEBUG_ASSERT(aborted_sorted(a, n));
}

static bool producer_aborted(const struct sp_kafka_txn_filter *filter, int64_t producer_id)
{
    for (size_t i = 0; i < filter->aborted_producer_count; i++) {
        if (filter->aborted[i].producer_id == producer_id)
            return true;
    }
    return false;
}

/*
 * Adds to the aborted set the producers of every transaction not yet
 * reached whose first offset is at or below `offset`. The set grows into
 * the slots of the transactions it consumes, so it never overtakes them.
 */
static void aborted_consume_up_to(struct sp_kafka_txn_filter *filter, int64_t offset)
{
    while (filter->aborted_next < filter->aborted_count &&
           filter->aborted[filter->aborted_next].first_offset <= offset) {
        int64_t producer_id = filter->aborted[filter->aborted_next].producer_id;
        filter->aborted_next++;
        if (producer_aborted(filter, producer_id))
            continue;
        SP_ASSERT(filter->aborted_producer_count < filter->aborted_next);
        filter->aborted[filter->aborted_producer_count].producer_id = producer_id;
        filter->aborted[filter->aborted_producer_count].first_offset = -1;
        filter->aborted_producer_count++;
    }
    SP_ASSERT(filter->aborted_producer_count <= filter->aborted_next);
}

static void aborted_remove_producer(struct sp_kafka_txn_filter *filter, int64_t producer_id)
{
    for (size_t i = 0; i < filter->aborted_producer_count; i++) {
        if (filter->aborted[i].producer_id == producer_id) {
            filter->aborted_producer_count--;
            filter->aborted[i] = filter->aborted[filter->aborted_producer_count];
            return; /* the set holds each producer once */
        }
    }
}

/* ---- Init ---- */

int sp_kafka_txn_filter_init(struct sp_kafka_txn_filter *filter,
                             const struct sp_kafka_txn_filter_config *config,
                             const struct sp_kafka_fetch_response_aborted_transaction *aborted,
                             int32_t aborted_count, const uint8_t *records, size_t records_len)
{
    SP_ASSERT(filter != NULL);
    SP_ASSERT(config != NULL);
    SP_ASSERT(config->isolation == SP_KAFKA_READ_UNCOMMITTED ||
              config->isolation == SP_KAFKA_READ_COMMITTED);
    SP_ASSERT(aborted_count >= -1);
    SP_ASSERT(aborted != NULL || aborted_count <= 0);

    memset(filter, 0, offsetof(struct sp_kafka_txn_filter, control_records));
    filter->isolation = config->isolation;
    filter->codec = config->codec;
    filter->fetch_offset = config->fetch_offset;
    filter->next_offset = config->fetch_offset;
    filter->last_offset_seen = -1;
    sp_record_set_init(&filter->set, records, records_len);

    /* read_uncommitted never looks at the list: Java keeps it but never asks it. */
    size_t count = aborted_count > 0 ? (size_t)aborted_count : 0;
    if (config->isolation != SP_KAFKA_READ_COMMITTED || count == 0)
        return 0;
    if (config->scratch == NULL || config->scratch_count < count)
        return -ENOBUFS;
    /* memmove: the scratch may be the list itself, or overlap it. */
    memmove(config->scratch, aborted, count * sizeof *aborted);
    aborted_sort(config->scratch, count);
    filter->aborted = config->scratch;
    filter->aborted_count = count;
    return 0;
}

int sp_kafka_txn_filter_init_partition(
    struct sp_kafka_txn_filter *filter, const struct sp_kafka_txn_filter_config *config,
    const struct sp_kafka_fetch_response_partition_data *partition)
{
    SP_ASSERT(partition != NULL);
    const uint8_t *records = partition->records.len > 0 ? partition->records.ptr : NULL;
    size_t records_len = partition->records.len > 0 ? (size_t)partition->records.len : 0;
    return sp_kafka_txn_filter_init(filter, config, partition->aborted_transactions,
                                    partition->aborted_transactions_count, records, records_len);
}

/* ---- Batches ---- */

/*
 * Offsets of a partition's log only go up: a batch must start after the
 * last one ended, and the offset after its last must exist. Java does not
 * check this; the next fetch offset depends on it.
 */
static int txn_filter_check_offsets(const struct sp_kafka_txn_filter *filter,
                                    const struct sp_record_batch *batch)
{
    if (batch->base_offset < 0)
        return TXN_FILTER_BAD();
    if (batch->magic >= SP_RECORD_MAGIC_V2 && batch->last_offset_delta < 0)
        return TXN_FILTER_BAD();
    int64_t delta = batch->magic >= SP_RECORD_MAGIC_V2 ? batch->last_offset_delta : 0;
    if (batch->base_offset > INT64_MAX - 1 - delta) /* the next offset must exist */
        return TXN_FILTER_BAD();
    if (batch->base_offset <= filter->last_offset_seen)
        return TXN_FILTER_BAD();
    return 0;
}

/*
 * Whether a control batch's first record is an ABORT marker: 1, 0 (another
 * control type, or no record, as Java reads it), or an error.
 */
static int txn_filter_abort_marker(struct sp_kafka_txn_filter *filter,
                                   const struct sp_record_batch *batch)
{
    struct sp_record_iter it;
    int rc;
    if (sp_record_batch_codec(batch) == SP_RECORD_CODEC_NONE) {
        rc = sp_record_iter_init(&it, batch, batch->records, batch->records_len);
    } else {
        if (filter->codec == NULL)
            return -EINVAL;
        size_t len = 0;
        rc = sp_record_batch_decompress(batch, filter->codec, filter->control_records,
                                        sizeof filter->control_records, &len);
        if (rc == -EMSGSIZE || rc == -EBADMSG)
            return TXN_FILTER_BAD();
        if (rc < 0)
            return rc;
        rc = sp_record_iter_init(&it, batch, filter->control_records, len);
    }
    if (rc < 0)
        return TXN_FILTER_BAD();
    struct sp_record record;
    rc = sp_record_iter_next(&it, &record);
    if (rc < 0)
        return TXN_FILTER_BAD();
    if (rc == 0)
        return 0;
    struct sp_record_control control;
    if (sp_record_control_parse(&record, &control) < 0)
        return TXN_FILTER_BAD();
    return control.type == SP_RECORD_CONTROL_ABORT ? 1 : 0;
}

/* Whether to deliver `batch`: 1, 0 (skip it), or an error. */
static int txn_filter_decide(struct sp_kafka_txn_filter *filter,
                             const struct sp_record_batch *batch)
{
    bool control = sp_record_batch_is_control(batch);
    if (control)
        filter->control_batch_count++;
    /* Legacy messages have producer id -1: they never get here. */
    if (filter->isolation == SP_KAFKA_READ_COMMITTED && batch->producer_id >= 0) {
        aborted_consume_up_to(filter, sp_record_batch_last_offset(batch));
        int rc = control ? txn_filter_abort_marker(filter, batch) : 0;
        if (rc < 0)
            return rc;
        if (rc == 1) {
            aborted_remove_producer(filter, batch->producer_id);
        } else if (sp_record_batch_is_transactional(batch) &&
                   producer_aborted(filter, batch->producer_id)) {
            filter->aborted_batch_count += control ? 0 : 1;
            return 0;
        }
    }
    if (control)
        return 0;
    /* Every record is below the fetch offset: Java would skip each one. */
    if (sp_record_batch_last_offset(batch) < filter->fetch_offset)
        return 0;
    return 1;
}

int sp_kafka_txn_filter_next(struct sp_kafka_txn_filter *filter, struct sp_record_batch *out)
{
    SP_ASSERT(filter != NULL);
    SP_ASSERT(out != NULL);
    if (filter->failed_rc != 0)
        return filter->failed_rc;
    /* Each round consumes one whole batch of the buffer, so the loop ends. */
    for (;;) {
        int rc = sp_record_set_next(&filter->set, out);
        if (rc == 0)
            return 0;
        if (rc > 0)
            rc = txn_filter_check_offsets(filter, out);
        if (rc < 0) {
            filter->failed_rc = rc;
            return rc;
        }
        int64_t last = sp_record_batch_last_offset(out);
        SP_ASSERT(last > filter->last_offset_seen);
        filter->last_offset_seen = last;
        filter->batch_count++;
        /* Never backwards: a response's batches may all lie below the fetch offset. */
        if (last + 1 > filter->next_offset)
            filter->next_offset = last + 1;
        rc = txn_filter_decide(filter, out);
        if (rc < 0)
            filter->failed_rc = rc;
        if (rc != 0)
            return rc;
    }
}
