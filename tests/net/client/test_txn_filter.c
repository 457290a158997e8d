/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The consumer's transaction filter on Fetch partition data built here with
 * the record builder and the marker encoder: committed and aborted
 * transactions, producers interleaved, an aborted transaction over several
 * batches, an abort marker ending a producer's abort (its next transaction
 * delivered), idempotent and plain batches, read_uncommitted, aborted lists
 * out of order (shuffled, sorted in place), the fetch offset inside a
 * batch, a compressed control batch, a cut trailing batch at every length,
 * and malformed input (garbage, a bad checksum, offsets going backwards, an
 * unreadable marker, every byte flipped). Each records field is copied into
 * an exact-size allocation first, so ASan sees any read past it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_kafka_txn_filter.h"
#include "sp_rand.h"
#include "sp_record.h"

#define FIELD_BYTES (256 * 1024)
#define DELIVERED_MAX 1024
#define ABORTED_MAX 512

/* ---- Building a records field ---- */

struct field {
    uint8_t buf[FIELD_BYTES];
    size_t len;
};

static struct field *field_new(void)
{
    struct field *f = calloc(1, sizeof *f);
    assert_non_null(f);
    return f;
}

/* Appends a batch of `count` records at offsets base..base+count-1; values name the offset. */
static void add_batch(struct field *f, int64_t base, int count, int64_t producer_id,
                      bool transactional)
{
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.base_offset = base;
    config.producer_id = producer_id;
    config.producer_epoch = producer_id >= 0 ? 0 : -1;
    config.base_sequence = producer_id >= 0 ? 0 : -1;
    config.transactional = transactional;
    struct sp_record_builder b;
    assert_int_equal(sp_record_builder_init(&b, f->buf + f->len, FIELD_BYTES - f->len, &config), 0);
    for (int i = 0; i < count; i++) {
        int64_t offset = base + i;
        struct sp_record_input in = {.offset_delta = i,
                                     .timestamp = 1700000000000 + i,
                                     .key = NULL,
                                     .key_len = -1,
                                     .value = &offset,
                                     .value_len = (int32_t)sizeof offset};
        assert_int_equal(sp_record_builder_append(&b, &in), 0);
    }
    size_t bytes = 0;
    assert_int_equal(sp_record_builder_finish(&b, NULL, &bytes), 0);
    f->len += bytes;
}

static void add_marker(struct field *f, int64_t offset, int64_t producer_id, int16_t type)
{
    struct sp_record_marker m = {.offset = offset,
                                 .timestamp = 1700000000000,
                                 .producer_id = producer_id,
                                 .producer_epoch = 0,
                                 .partition_leader_epoch = 0,
                                 .type = type,
                                 .coordinator_epoch = 1};
    size_t bytes = 0;
    assert_int_equal(sp_record_marker_encode(f->buf + f->len, FIELD_BYTES - f->len, &m, &bytes), 0);
    f->len += bytes;
}

#define ABORT SP_RECORD_CONTROL_ABORT
#define COMMIT SP_RECORD_CONTROL_COMMIT

/* ---- Running the filter ---- */

struct result {
    int64_t base[DELIVERED_MAX]; /* base offsets of the delivered batches */
    size_t count;
    int rc;              /* the call that ended the walk: 0 or an error */
    int64_t next_offset; /* after the walk */
    struct sp_kafka_txn_filter filter;
};

struct run_args {
    enum sp_kafka_isolation_level isolation;
    int64_t fetch_offset;
    const struct sp_kafka_fetch_response_aborted_transaction *aborted;
    int32_t aborted_count;
    struct sp_record_codec *codec;
};

/* Each delivered batch's records must read back: offsets in order, values naming them. */
static void check_records(const struct sp_record_batch *batch)
{
    struct sp_record_iter it;
    assert_int_equal(sp_record_iter_open(&it, batch, NULL, NULL, 0), 0);
    struct sp_record r;
    int32_t n = 0;
    while (sp_record_iter_next(&it, &r) == 1) {
        assert_int_equal(r.offset, batch->base_offset + n);
        assert_int_equal(r.value_len, (int32_t)sizeof(int64_t));
        int64_t v;
        memcpy(&v, r.value, sizeof v);
        assert_int_equal(v, r.offset);
        n++;
    }
    assert_int_equal(n, batch->record_count);
}

/* Filters the first `len` bytes of `f` (copied to an exact-size buffer) to the end. */
static void run_len(const struct field *f, size_t len, const struct run_args *args,
                    struct result *res)
{
    uint8_t *exact = malloc(len != 0 ? len : 1);
    assert_non_null(exact);
    memcpy(exact, f->buf, len);
    struct sp_kafka_fetch_response_aborted_transaction scratch[ABORTED_MAX];
    assert_true(args->aborted_count <= ABORTED_MAX);
    struct sp_kafka_txn_filter_config config = {.isolation = args->isolation,
                                                .fetch_offset = args->fetch_offset,
                                                .scratch = scratch,
                                                .scratch_count = ABORTED_MAX,
                                                .codec = args->codec};
    assert_int_equal(sp_kafka_txn_filter_init(&res->filter, &config, args->aborted,
                                              args->aborted_count, exact, len),
                     0);
    res->count = 0;
    struct sp_record_batch batch;
    int rc;
    while ((rc = sp_kafka_txn_filter_next(&res->filter, &batch)) == 1) {
        assert_true(res->count < DELIVERED_MAX);
        assert_false(sp_record_batch_is_control(&batch));
        check_records(&batch);
        res->base[res->count++] = batch.base_offset;
    }
    res->rc = rc;
    res->next_offset = sp_kafka_txn_filter_next_offset(&res->filter);
    /* An ended walk stays ended: the same answer again. */
    assert_int_equal(sp_kafka_txn_filter_next(&res->filter, &batch), rc);
    free(exact);
}

static void run(const struct field *f, const struct run_args *args, struct result *res)
{
    run_len(f, f->len, args, res);
}

static void expect_delivered(const struct result *res, const int64_t *bases, size_t count)
{
    assert_int_equal(res->count, count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(res->base[i], bases[i]);
}

#define EXPECT(res, ...)                                                                           \
    do {                                                                                           \
        static const int64_t expected_[] = {__VA_ARGS__};                                          \
        expect_delivered((res), expected_, sizeof expected_ / sizeof expected_[0]);                \
    } while (0)

#define AB(pid, first)                                                                             \
    {                                                                                              \
        .producer_id = (pid), .first_offset = (first)                                              \
    }

static struct result *result_new(void)
{
    struct result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    return r;
}

/* ---- Transactions ---- */

static void test_committed_delivered(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 3, 7, true);
    add_marker(f, 3, 7, COMMIT);
    struct run_args args = {.isolation = SP_KAFKA_READ_COMMITTED};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0);
    assert_int_equal(res->next_offset, 4); /* past the marker */
    assert_int_equal(res->filter.control_batch_count, 1);
    assert_int_equal(res->filter.aborted_batch_count, 0);
    assert_int_equal(res->filter.batch_count, 2);
    free(res);
    free(f);
}

static void test_aborted_skipped(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 3, 7, true);
    add_marker(f, 3, 7, ABORT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(7, 0)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    assert_int_equal(res->count, 0);
    assert_int_equal(res->next_offset, 4); /* nothing delivered, yet never fetched again */
    assert_int_equal(res->filter.aborted_batch_count, 1);
    assert_int_equal(res->filter.aborted_producer_count, 0); /* the marker removed it */
    free(res);
    free(f);
}

/* Producer 1 commits, producer 2 aborts, their batches interleaved, and a plain batch. */
static void build_interleaved(struct field *f)
{
    add_batch(f, 0, 2, 1, true);
    add_batch(f, 2, 2, 2, true);
    add_batch(f, 4, 2, 1, true);
    add_batch(f, 6, 2, 2, true);
    add_marker(f, 8, 1, COMMIT);
    add_marker(f, 9, 2, ABORT);
    add_batch(f, 10, 1, -1, false);
}

static void test_interleaved_producers(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    build_interleaved(f);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(2, 2)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0, 4, 10);
    assert_int_equal(res->next_offset, 11);
    assert_int_equal(res->filter.aborted_batch_count, 2);
    assert_int_equal(res->filter.control_batch_count, 2);
    free(res);
    free(f);
}

static void test_aborted_spans_batches(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 2, 5, true);
    add_batch(f, 2, 1, -1, false); /* plain, in the middle of the transaction */
    add_batch(f, 3, 2, 5, true);
    add_batch(f, 5, 4, 5, true);
    add_batch(f, 9, 1, 6, true); /* another producer, committed */
    add_marker(f, 10, 5, ABORT);
    add_marker(f, 11, 6, COMMIT);
    add_batch(f, 12, 2, -1, false);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(5, 0)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 2, 9, 12);
    assert_int_equal(res->filter.aborted_batch_count, 3);
    assert_int_equal(res->next_offset, 14);
    free(res);
    free(f);
}

/* The abort marker ends the abort: the producer's next transaction is delivered. */
static void test_abort_marker_removes_producer(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 2, 3, true); /* aborted */
    add_marker(f, 2, 3, ABORT);
    add_batch(f, 3, 2, 3, true); /* committed */
    add_marker(f, 5, 3, COMMIT);
    add_batch(f, 6, 3, 3, true); /* aborted again */
    add_marker(f, 9, 3, ABORT);
    add_batch(f, 10, 1, 3, true); /* committed again */
    add_marker(f, 11, 3, COMMIT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(3, 0), AB(3, 6)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 2};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 3, 10);
    assert_int_equal(res->filter.aborted_batch_count, 2);
    assert_int_equal(res->next_offset, 12);
    free(res);
    free(f);
}

/*
 * An aborted transaction counts from its first offset on: the same
 * producer's earlier, committed transaction is delivered; a batch whose last
 * offset reaches the first offset is aborted.
 */
static void test_aborted_from_first_offset_on(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 2, 4, true);
    add_marker(f, 2, 4, COMMIT);
    add_batch(f, 3, 4, 4, true); /* offsets 3..6; the aborted transaction begins at 6 */
    add_marker(f, 7, 4, ABORT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(4, 6)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0);
    assert_int_equal(res->next_offset, 8);
    free(res);
    free(f);
}

/*
 * Only transactional batches are aborted: an idempotent (non-transactional)
 * batch of an aborted producer and plain batches are delivered.
 */
static void test_non_transactional_always_delivered(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 1, -1, false);
    add_batch(f, 1, 2, 9, true);
    add_batch(f, 3, 2, 9, false); /* idempotent, same producer id */
    add_batch(f, 5, 1, -1, false);
    add_marker(f, 6, 9, ABORT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(9, 1)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0, 3, 5);
    free(res);
    free(f);
}

static void test_read_uncommitted(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    build_interleaved(f);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(2, 2)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_UNCOMMITTED, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0, 2, 4, 6, 10);
    assert_int_equal(res->next_offset, 11);
    assert_int_equal(res->filter.control_batch_count, 2);
    assert_int_equal(res->filter.aborted_batch_count, 0);

    /* No scratch is needed: the list is never looked at. */
    struct sp_kafka_txn_filter filter;
    struct sp_kafka_txn_filter_config config = {.isolation = SP_KAFKA_READ_UNCOMMITTED};
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, ab, 1, f->buf, f->len), 0);
    struct sp_record_batch batch;
    size_t n = 0;
    while (sp_kafka_txn_filter_next(&filter, &batch) == 1)
        n++;
    assert_int_equal(n, 5);
    free(res);
    free(f);
}

/* ---- Aborted lists out of order ---- */

static void shuffle(struct sp_kafka_fetch_response_aborted_transaction *a, size_t n,
                    struct sp_rand *rand)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)sp_rand_below(rand, i);
        struct sp_kafka_fetch_response_aborted_transaction t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void test_aborted_list_unordered(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    /* Three aborted transactions; the list comes last-first. */
    add_batch(f, 0, 2, 1, true);
    add_marker(f, 2, 1, ABORT);
    add_batch(f, 3, 2, 2, true);
    add_marker(f, 5, 2, ABORT);
    add_batch(f, 6, 1, 3, true);
    add_batch(f, 7, 1, 1, true);
    add_marker(f, 8, 1, COMMIT);
    add_marker(f, 9, 3, ABORT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(3, 6), AB(2, 3),
                                                                            AB(1, 0)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 3};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 7);
    assert_int_equal(res->filter.aborted_batch_count, 3);
    free(res);
    free(f);
}

/*
 * Many producers with transactions open at once (each a batch, then all the
 * markers): every third aborts. Any order of the list gives the same
 * answer, sorted in a copy or in place in the list itself.
 */
static void test_aborted_list_shuffled_many(void **state)
{
    (void)state;
    enum { PRODUCERS = 300 };
    struct field *f = field_new();
    struct result *res = result_new();
    struct sp_kafka_fetch_response_aborted_transaction ab[PRODUCERS];
    int32_t n = 0;
    for (int i = 0; i < PRODUCERS; i++)
        add_batch(f, i, 1, 1000 + i, true);
    for (int i = 0; i < PRODUCERS; i++) {
        bool abort = i % 3 == 0;
        add_marker(f, PRODUCERS + i, 1000 + i, abort ? ABORT : COMMIT);
        if (abort)
            ab[n++] = (struct sp_kafka_fetch_response_aborted_transaction)AB(1000 + i, i);
    }
    struct sp_rand rand;
    sp_rand_seed(&rand, 42);
    for (int round = 0; round < 20; round++) {
        if (round > 0)
            shuffle(ab, (size_t)n, &rand);
        struct run_args args = {
            .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = n};
        run(f, &args, res);
        assert_int_equal(res->rc, 0);
        assert_int_equal(res->count, PRODUCERS - n);
        for (size_t k = 0; k < res->count; k++)
            assert_true(res->base[k] % 3 != 0);
        assert_int_equal(res->next_offset, 2 * PRODUCERS);
        assert_int_equal(res->filter.aborted_batch_count, n);
        assert_int_equal(res->filter.aborted_producer_count, 0);
    }

    /* In place: the scratch is the list. */
    shuffle(ab, (size_t)n, &rand);
    struct sp_kafka_txn_filter filter;
    struct sp_kafka_txn_filter_config config = {
        .isolation = SP_KAFKA_READ_COMMITTED, .scratch = ab, .scratch_count = (size_t)n};
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, ab, n, f->buf, f->len), 0);
    for (int32_t i = 1; i < n; i++)
        assert_true(ab[i - 1].first_offset <= ab[i].first_offset);
    struct sp_record_batch batch;
    size_t delivered = 0;
    while (sp_kafka_txn_filter_next(&filter, &batch) == 1)
        delivered++;
    assert_int_equal(delivered, PRODUCERS - n);
    free(res);
    free(f);
}

static void test_scratch_too_small(void **state)
{
    (void)state;
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(1, 0), AB(2, 5)};
    struct sp_kafka_fetch_response_aborted_transaction scratch[1];
    struct sp_kafka_txn_filter filter;
    struct sp_kafka_txn_filter_config config = {
        .isolation = SP_KAFKA_READ_COMMITTED, .scratch = scratch, .scratch_count = 1};
    static const uint8_t none[1];
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, ab, 2, none, 0), -ENOBUFS);
    config.scratch = NULL;
    config.scratch_count = 0;
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, ab, 2, none, 0), -ENOBUFS);
    /* A null list (-1) or an empty one needs none. */
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, NULL, -1, none, 0), 0);
    assert_int_equal(sp_kafka_txn_filter_init(&filter, &config, ab, 0, none, 0), 0);
    struct sp_record_batch batch;
    assert_int_equal(sp_kafka_txn_filter_next(&filter, &batch), 0);
}

/* ---- Offsets ---- */

static void test_fetch_offset_inside_batch(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 5, 8, true); /* aborted, wholly below the fetch offset */
    add_batch(f, 5, 5, -1, false);
    add_batch(f, 10, 5, 8, true); /* still aborted: the marker comes later */
    add_marker(f, 15, 8, ABORT);
    add_batch(f, 16, 2, -1, false);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(8, 0)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .fetch_offset = 7, .aborted = ab, .aborted_count = 1};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 5, 16); /* batch 5..9 holds the fetch offset: the caller skips 5 and 6 */
    assert_int_equal(res->next_offset, 18);
    assert_int_equal(res->filter.aborted_batch_count, 2);

    /* A plain batch wholly below the fetch offset is not delivered either. */
    args.fetch_offset = 12;
    run(f, &args, res);
    EXPECT(res, 16);
    free(res);
    free(f);
}

/* A cut trailing batch ends the walk cleanly, at every length of the field. */
static void test_partial_trailing_batch(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    size_t ends[8];  /* where each whole batch ends in the field */
    int64_t next[8]; /* the next offset once it is whole */
    size_t nb = 0;
    add_batch(f, 100, 3, 2, true);
    ends[nb] = f->len;
    next[nb++] = 103;
    add_marker(f, 103, 2, COMMIT);
    ends[nb] = f->len;
    next[nb++] = 104;
    add_batch(f, 104, 4, -1, false);
    ends[nb] = f->len;
    next[nb++] = 108;
    add_batch(f, 108, 2, 3, true);
    ends[nb] = f->len;
    next[nb++] = 110;
    add_marker(f, 110, 3, ABORT);
    ends[nb] = f->len;
    next[nb++] = 111;
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(3, 108)};
    struct run_args args = {.isolation = SP_KAFKA_READ_COMMITTED,
                            .fetch_offset = 100,
                            .aborted = ab,
                            .aborted_count = 1};
    for (size_t len = 0; len <= f->len; len++) {
        run_len(f, len, &args, res);
        assert_int_equal(res->rc, 0);
        size_t whole = 0;
        while (whole < nb && ends[whole] <= len)
            whole++;
        int64_t expect_next = whole == 0 ? 100 : next[whole - 1];
        assert_int_equal(res->next_offset, expect_next);
        assert_int_equal(res->filter.batch_count, whole);
        size_t start = whole == 0 ? 0 : ends[whole - 1];
        assert_int_equal(res->filter.set.partial_bytes, len - start);
        /* Delivered: batch 100 once whole, batch 104 once whole; 108 is aborted. */
        assert_int_equal(res->count, (whole >= 1) + (whole >= 3));
    }
    free(res);
    free(f);
}

static void test_init_partition(void **state)
{
    (void)state;
    struct field *f = field_new();
    build_interleaved(f);
    struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(2, 2)};
    struct sp_kafka_fetch_response_partition_data p;
    memset(&p, 0, sizeof p);
    p.aborted_transactions = ab;
    p.aborted_transactions_count = 1;
    p.records.ptr = f->buf;
    p.records.len = (int32_t)f->len;
    struct sp_kafka_fetch_response_aborted_transaction scratch[1];
    struct sp_kafka_txn_filter filter;
    struct sp_kafka_txn_filter_config config = {
        .isolation = SP_KAFKA_READ_COMMITTED, .scratch = scratch, .scratch_count = 1};
    assert_int_equal(sp_kafka_txn_filter_init_partition(&filter, &config, &p), 0);
    struct sp_record_batch batch;
    size_t n = 0;
    while (sp_kafka_txn_filter_next(&filter, &batch) == 1)
        n++;
    assert_int_equal(n, 3);
    assert_int_equal(sp_kafka_txn_filter_next_offset(&filter), 11);

    /* Null records, null list: nothing, and the next offset stays the fetch offset. */
    p.records.ptr = NULL;
    p.records.len = -1;
    p.aborted_transactions = NULL;
    p.aborted_transactions_count = -1;
    config.fetch_offset = 55;
    assert_int_equal(sp_kafka_txn_filter_init_partition(&filter, &config, &p), 0);
    assert_int_equal(sp_kafka_txn_filter_next(&filter, &batch), 0);
    assert_int_equal(sp_kafka_txn_filter_next_offset(&filter), 55);
    free(f);
}

/* ---- Compressed control batches ---- */

/* A control batch built by hand, compressed with gzip; key (version, type), value 6 bytes. */
static void add_control_gzip(struct field *f, int64_t offset, int64_t producer_id, uint8_t type,
                             struct sp_record_codec *codec)
{
    uint8_t scratch[512];
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.base_offset = offset;
    config.producer_id = producer_id;
    config.producer_epoch = 0;
    config.transactional = true;
    config.control = true;
    config.codec = SP_RECORD_CODEC_GZIP;
    config.scratch = scratch;
    config.scratch_bytes = sizeof scratch;
    struct sp_record_builder b;
    assert_int_equal(sp_record_builder_init(&b, f->buf + f->len, FIELD_BYTES - f->len, &config), 0);
    const uint8_t key[4] = {0, 0, 0, type};
    static const uint8_t value[6] = {0, 0, 0, 0, 0, 1};
    struct sp_record_input in = {
        .timestamp = 1700000000000, .key = key, .key_len = 4, .value = value, .value_len = 6};
    assert_int_equal(sp_record_builder_append(&b, &in), 0);
    size_t bytes = 0;
    assert_int_equal(sp_record_builder_finish(&b, codec, &bytes), 0);
    f->len += bytes;
}

static void test_compressed_control_batch(void **state)
{
    (void)state;
    struct sp_record_codec codec;
    assert_int_equal(
        sp_record_codec_init(&codec, SP_RECORD_CODEC_COMPRESS | SP_RECORD_CODEC_DECOMPRESS), 0);
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 1, 4, true);
    add_control_gzip(f, 1, 4, ABORT, &codec);
    add_batch(f, 2, 1, 4, true); /* delivered only if the marker was read as an abort */
    add_marker(f, 3, 4, COMMIT);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(4, 0)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1, .codec = &codec};
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 2);

    /* Without a codec context: -EINVAL, and it sticks (run_len checks). */
    args.codec = NULL;
    run(f, &args, res);
    assert_int_equal(res->rc, -EINVAL);
    assert_int_equal(res->count, 0);

    /* read_uncommitted never opens control batches. */
    args.isolation = SP_KAFKA_READ_UNCOMMITTED;
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0, 2);
    free(res);
    free(f);
    sp_record_codec_deinit(&codec);
}

/* ---- Malformed input ---- */

static void test_garbage(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    struct run_args args = {.isolation = SP_KAFKA_READ_COMMITTED};

    memset(f->buf, 0xA5, 200);
    f->len = 200;
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);
    assert_int_equal(res->count, 0);

    /* A good batch, then one with a bad checksum: the first is delivered, then -EBADMSG. */
    f->len = 0;
    add_batch(f, 0, 2, -1, false);
    size_t second = f->len;
    add_batch(f, 2, 2, -1, false);
    f->buf[f->len - 1] ^= 0x01;
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);
    EXPECT(res, 0);
    assert_int_equal(res->next_offset, 2);

    /* Offsets going backwards, or repeating. */
    f->len = second;
    add_batch(f, 1, 1, -1, false);
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);
    EXPECT(res, 0);

    /* A negative base offset. */
    f->len = 0;
    add_batch(f, -5, 1, -1, false);
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);

    /* The offset after the batch would overflow. */
    f->len = 0;
    add_batch(f, INT64_MAX - 1, 2, -1, false);
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);
    free(res);
    free(f);
}

/* A control batch whose first record is no marker (a 2-byte key). */
static void test_bad_control_record(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    add_batch(f, 0, 1, -1, false);
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.base_offset = 1;
    config.producer_id = 3;
    config.producer_epoch = 0;
    config.transactional = true;
    config.control = true;
    struct sp_record_builder b;
    assert_int_equal(sp_record_builder_init(&b, f->buf + f->len, FIELD_BYTES - f->len, &config), 0);
    static const uint8_t key[2] = {0, 0};
    struct sp_record_input in = {.key = key, .key_len = 2, .value = NULL, .value_len = -1};
    assert_int_equal(sp_record_builder_append(&b, &in), 0);
    size_t bytes = 0;
    assert_int_equal(sp_record_builder_finish(&b, NULL, &bytes), 0);
    f->len += bytes;
    add_batch(f, 2, 1, -1, false);

    struct run_args args = {.isolation = SP_KAFKA_READ_COMMITTED};
    run(f, &args, res);
    assert_int_equal(res->rc, -EBADMSG);
    EXPECT(res, 0);
    /* read_uncommitted does not read it: skipped like any control batch. */
    args.isolation = SP_KAFKA_READ_UNCOMMITTED;
    run(f, &args, res);
    assert_int_equal(res->rc, 0);
    EXPECT(res, 0, 2);
    free(res);
    free(f);
}

/* Every bit flip in every byte: an error or a clean walk, never a crash or an over-read. */
static void test_every_byte_flipped(void **state)
{
    (void)state;
    struct field *f = field_new();
    struct result *res = result_new();
    build_interleaved(f);
    static const struct sp_kafka_fetch_response_aborted_transaction ab[] = {AB(2, 2)};
    struct run_args args = {
        .isolation = SP_KAFKA_READ_COMMITTED, .aborted = ab, .aborted_count = 1};
    for (size_t i = 0; i < f->len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            f->buf[i] ^= (uint8_t)(1u << bit);
            uint8_t *exact = malloc(f->len);
            assert_non_null(exact);
            memcpy(exact, f->buf, f->len);
            struct sp_kafka_fetch_response_aborted_transaction scratch[1];
            struct sp_kafka_txn_filter_config config = {
                .isolation = args.isolation, .scratch = scratch, .scratch_count = 1};
            struct sp_kafka_txn_filter *filter = &res->filter;
            assert_int_equal(sp_kafka_txn_filter_init(filter, &config, ab, 1, exact, f->len), 0);
            struct sp_record_batch batch;
            int rc;
            int rounds = 0;
            while ((rc = sp_kafka_txn_filter_next(filter, &batch)) == 1)
                assert_true(++rounds <= 7);
            assert_true(rc == 0 || rc == -EBADMSG);
            free(exact);
            f->buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(res);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_committed_delivered),
        cmocka_unit_test(test_aborted_skipped),
        cmocka_unit_test(test_interleaved_producers),
        cmocka_unit_test(test_aborted_spans_batches),
        cmocka_unit_test(test_abort_marker_removes_producer),
        cmocka_unit_test(test_aborted_from_first_offset_on),
        cmocka_unit_test(test_non_transactional_always_delivered),
        cmocka_unit_test(test_read_uncommitted),
        cmocka_unit_test(test_aborted_list_unordered),
        cmocka_unit_test(test_aborted_list_shuffled_many),
        cmocka_unit_test(test_scratch_too_small),
        cmocka_unit_test(test_fetch_offset_inside_batch),
        cmocka_unit_test(test_partial_trailing_batch),
        cmocka_unit_test(test_init_partition),
        cmocka_unit_test(test_compressed_control_batch),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bad_control_record),
        cmocka_unit_test(test_every_byte_flipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
