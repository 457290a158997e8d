/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Spilling cold keyed state to disk (sp_spill.h): a table holding ten
 * times its budget keeps every entry, through upserts, finds, gets,
 * deletes, whole-table iteration and TTL cleanup, while segments go to the
 * spill file and come back; entries touched since the last unpin are never
 * spilled (pointers stay valid), so a working set larger than the budget
 * is -ENOBUFS, never a stale pointer; a full spill file (its byte limit)
 * fails the request that needed room and loses nothing; a spill file that
 * cannot be read back makes the error sticky: lookups that need it find
 * nothing, snapshots fail, and the table can still be torn down; every
 * file slot is free again at the end; TTL cleanup reaches spilled entries;
 * all of it with plain system calls too. (The snapshot model test runs with a
 * spill too: test_table_snapshot.c.)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_keygroup.h"
#include "sp_rand.h"
#include "sp_table.h"

#define GROUPS 8u
#define BUDGET 160u /* segments of 4 KiB */
#define KEYS 20000u /* about 8 x the budget in entries of 248 bytes */
#define VALUE_BYTES 200u

#include "table_test.h"

static struct sp_spill spill;

static int setup_spill(void **state)
{
    setup(state);
    sp_budget_set_limit(&budget, BUDGET);
    struct sp_spill_config c = {.dir = table_test_spill_dir(), .batch = 4};
    assert_int_equal(sp_spill_init(&spill, &budget, &c), 0);
    return 0;
}

static int teardown_spill(void **state)
{
    sp_spill_deinit(&spill);
    return teardown(state);
}

static void table_open(struct sp_table *t, uint64_t ttl_ms)
{
    struct sp_table_config c = {
        .name = "spill",
        .value_bytes = VALUE_BYTES,
        .key_group_first = 0,
        .key_group_count = GROUPS,
        .key_groups_total = GROUPS,
        .budget = &budget,
        .spill = &spill,
        .ttl_ms = ttl_ms,
    };
    assert_int_equal(sp_table_init(t, &c), 0);
}

static uint64_t hash_of(uint64_t key)
{
    return sp_key_hash(&key, sizeof(key));
}

static struct sp_table_entry *put(struct sp_table *t, uint64_t key, uint64_t v)
{
    bool created;
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(t, hash_of(key), &key, sizeof(key), 0, &created, &err);
    if (e != NULL) {
        uint64_t val[2] = {v, key};
        memset(sp_table_value(t, e), 0x5A, VALUE_BYTES);
        memcpy(sp_table_value(t, e), val, sizeof(val));
    }
    return e;
}

static bool get(struct sp_table *t, uint64_t key, uint64_t *v)
{
    const struct sp_table_entry *e = sp_table_get(t, hash_of(key), &key, sizeof(key), 0);
    if (e == NULL)
        return false;
    uint64_t val[2];
    memcpy(val, sp_table_value(t, (struct sp_table_entry *)e), sizeof(val));
    assert_int_equal(val[1], key);
    *v = val[0];
    return true;
}

/* Keys 0..n-1 with values k + 1, nothing pinned between two. */
static void fill(struct sp_table *t, uint64_t n)
{
    for (uint64_t k = 0; k < n; k++) {
        sp_spill_unpin(&spill);
        assert_non_null(put(t, k, k + 1));
    }
}

/* After a spill error a snapshot of `t` fails (-EIO): state was lost. */
static void assert_snapshot_lost(struct sp_table *t)
{
    assert_true(sp_table_snapshot_begin(t, true, 0) > 0);
    uint8_t buf[4096];
    assert_int_equal(sp_table_snapshot_read(t, buf, sizeof(buf)), -EIO);
    sp_table_snapshot_cancel(t);
}

struct visit {
    uint64_t count;
    uint64_t sum;
};

static void visit_fn(struct sp_table_entry *e, void *ctx)
{
    struct visit *v = ctx;
    uint64_t val[2];
    memcpy(val, (uint8_t *)e + sizeof(*e), sizeof(val));
    v->count++;
    v->sum += val[0];
}

/* A model of random upserts, finds, gets and deletes over ten times the
 * budget: the table always agrees with it. */
static void test_model(void **state)
{
    (void)state;
    struct sp_table t;
    table_open(&t, 0);
    uint64_t *m = calloc(KEYS, sizeof(*m)); /* 0: absent */
    assert_non_null(m);
    struct sp_rand rnd;
    sp_rand_seed(&rnd, 7);
    for (uint64_t k = 0; k < KEYS; k++) {
        sp_spill_unpin(&spill);
        assert_non_null(put(&t, k, k + 1));
        m[k] = k + 1;
    }
    assert_true(spill.stats.spilled > BUDGET);
    for (unsigned i = 0; i < 60000; i++) {
        sp_spill_unpin(&spill);
        uint64_t k = sp_rand_below(&rnd, KEYS);
        uint64_t op = sp_rand_below(&rnd, 10);
        uint64_t v;
        if (op < 4) {
            assert_non_null(put(&t, k, i + 7));
            m[k] = i + 7;
        } else if (op < 6) {
            struct sp_table_entry *e = sp_table_find(&t, hash_of(k), &k, sizeof(k), 0);
            assert_int_equal(e != NULL, m[k] != 0);
            if (e != NULL) {
                sp_table_delete(&t, e);
                m[k] = 0;
            }
        } else {
            bool found = get(&t, k, &v);
            assert_int_equal(found, m[k] != 0);
            if (found)
                assert_int_equal(v, m[k]);
        }
    }
    struct visit want = {0, 0}, got = {0, 0};
    for (uint64_t k = 0; k < KEYS; k++) {
        if (m[k] != 0) {
            want.count++;
            want.sum += m[k];
        }
    }
    assert_int_equal(sp_table_count(&t), want.count);
    sp_table_foreach(&t, visit_fn, &got); /* spilled segments included */
    assert_int_equal(got.count, want.count);
    assert_int_equal(got.sum, want.sum);
    assert_true(spill.stats.segments_in > 1000);
    assert_int_equal(sp_spill_error(&spill), 0);
    sp_table_deinit(&t);
    assert_int_equal(spill.stats.spilled, 0); /* every slot back */
    free(m);
}

/* Pointers handed out since the last unpin stay valid: with all of them
 * pinned, the table runs out instead of spilling them. First a pointer held
 * while many inserts (which spill to make room) go on, in this table and
 * in another one unpinned all the while. */
static void test_pinned(void **state)
{
    (void)state;
    struct sp_table t, other;
    table_open(&t, 0);
    table_open(&other, 0);
    fill(&t, KEYS);
    sp_spill_unpin(&spill);
    uint64_t k0 = 7;
    struct sp_table_entry *held0 = sp_table_find(&t, hash_of(k0), &k0, sizeof(k0), 0);
    assert_non_null(held0);
    for (uint64_t k = 0; k < KEYS / 2; k++) { /* the two indexes must fit beside */
        sp_table_unpin(&other);
        assert_non_null(put(&other, k, k));
    }
    uint64_t val0[2];
    memcpy(val0, sp_table_value(&t, held0), sizeof(val0));
    assert_int_equal(val0[1], k0);
    assert_int_equal(val0[0], k0 + 1);
    assert_true(spill.stats.segments_out > KEYS / 32); /* room was made meanwhile */
    sp_table_deinit(&other);
    sp_spill_unpin(&spill);
    struct sp_table_entry *held[KEYS / 4];
    uint32_t n = 0;
    bool ran_out = false;
    for (uint64_t k = 0; k < KEYS && n < KEYS / 4; k += 4) {
        struct sp_table_entry *e = sp_table_find(&t, hash_of(k), &k, sizeof(k), 0);
        if (e == NULL) {
            ran_out = true; /* the budget holds only so many pinned segments */
            break;
        }
        held[n++] = e;
    }
    assert_true(ran_out);
    assert_int_equal(sp_spill_error(&spill), -ENOBUFS);
    /* Every pointer handed out is still the entry it was. */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t val[2];
        memcpy(val, sp_table_value(&t, held[i]), sizeof(val));
        assert_int_equal(val[1], (uint64_t)i * 4);
        assert_int_equal(val[0], (uint64_t)i * 4 + 1);
    }
    /* Sticky: a snapshot fails. */
    assert_snapshot_lost(&t);
    sp_table_deinit(&t);
    assert_int_equal(spill.stats.spilled, 0);
}

/* A full spill file fails the upsert that needed room; nothing is lost. */
static void test_file_full(void **state)
{
    (void)state;
    sp_spill_deinit(&spill);
    struct sp_spill_config c = {
        .dir = table_test_spill_dir(), .batch = 4, .max_bytes = 64u * SEG_BYTES};
    assert_int_equal(sp_spill_init(&spill, &budget, &c), 0);
    struct sp_table t;
    table_open(&t, 0);
    uint64_t k = 0;
    for (;; k++) {
        sp_spill_unpin(&spill);
        if (put(&t, k, k + 1) == NULL)
            break;
        assert_true(k < KEYS);
    }
    assert_true(spill.stats.write_errors > 0);
    assert_int_equal(sp_spill_error(&spill), 0); /* not sticky: nothing was lost */
    for (uint64_t i = 0; i < k; i++) {
        sp_spill_unpin(&spill);
        uint64_t v;
        assert_true(get(&t, i, &v));
        assert_int_equal(v, i + 1);
    }
    sp_table_deinit(&t);
}

/* A spill file that cannot be read back: the lookup finds nothing, the
 * error is sticky, snapshots fail, teardown still works. */
static void test_read_error(void **state)
{
    (void)state;
    struct sp_table t;
    table_open(&t, 0);
    fill(&t, KEYS / 2);
    assert_true(spill.stats.spilled > 0);
    /* The file descriptor now refuses reads (write-only). */
    int wo = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(wo >= 0);
    assert_true(dup2(wo, spill.fd) == spill.fd);
    close(wo);
    bool missed = false;
    for (uint64_t k = 0; k < KEYS / 2 && !missed; k++) {
        sp_spill_unpin(&spill);
        uint64_t v;
        missed = !get(&t, k, &v);
    }
    assert_true(missed);
    assert_int_equal(sp_spill_error(&spill), -EBADF);
    bool created;
    int err = 0;
    uint64_t k0 = 0;
    /* Further lookups of spilled entries fail too, and say so. */
    for (uint64_t k = 0; k < KEYS / 2; k++) {
        k0 = k;
        if (sp_table_upsert(&t, hash_of(k0), &k0, sizeof(k0), 0, &created, &err) == NULL)
            break;
    }
    assert_int_equal(err, -EIO);
    assert_snapshot_lost(&t);
    sp_table_deinit(&t);
}

/* TTL cleanup passes spilled segments by; their entries expire when read. */
static void test_ttl(void **state)
{
    (void)state;
    struct sp_table t;
    table_open(&t, 1000);
    sp_table_ttl_tick(&t, 10000);
    fill(&t, KEYS);
    sp_table_ttl_tick(&t, 10500);
    for (uint64_t k = 0; k < KEYS; k += 7) {
        sp_spill_unpin(&spill);
        uint64_t v;
        assert_true(get(&t, k, &v));
    }
    sp_table_ttl_tick(&t, 11000); /* everything expired */
    for (uint64_t k = 0; k < KEYS; k += 7) {
        sp_spill_unpin(&spill);
        uint64_t v;
        assert_false(get(&t, k, &v));
    }
    /* The cleanup deletes expired entries in memory and on disk alike
     * (spilled segments with expired entries are read back for it), so the
     * table empties and the file with it, a bounded amount per tick. */
    unsigned ticks = 0;
    while (sp_table_count(&t) > 0 && ticks < 5000) {
        sp_spill_unpin(&spill);
        sp_table_ttl_tick(&t, 11000 + ticks++);
    }
    assert_int_equal(sp_table_count(&t), 0);
    assert_int_equal(spill.stats.spilled, 0);
    assert_true(ticks > KEYS / 1000); /* at most 1,000 entries looked at per tick */
    struct visit got = {0, 0};
    sp_table_foreach(&t, visit_fn, &got);
    assert_int_equal(got.count, 0);
    assert_int_equal(sp_spill_error(&spill), 0);
    sp_table_deinit(&t);
}

/* The same model without io_uring (a ring the kernel refused or gave up):
 * plain pread and pwrite. */
static void test_plain_calls(void **state)
{
    if (spill.have_ring) {
        io_uring_queue_exit(&spill.ring);
        spill.have_ring = false;
    }
    test_model(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model, setup_spill, teardown_spill),
        cmocka_unit_test_setup_teardown(test_pinned, setup_spill, teardown_spill),
        cmocka_unit_test_setup_teardown(test_file_full, setup_spill, teardown_spill),
        cmocka_unit_test_setup_teardown(test_read_error, setup_spill, teardown_spill),
        cmocka_unit_test_setup_teardown(test_ttl, setup_spill, teardown_spill),
        cmocka_unit_test_setup_teardown(test_plain_calls, setup_spill, teardown_spill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
