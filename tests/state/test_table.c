/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keyed state table: insert, find and delete against a reference model
 * over 200k random operations (the index grows several times and
 * backward-shift deletion keeps every key findable); namespaces visited in
 * increasing order with all their entries; segments going back to the budget
 * as entries die; a full budget is -ENOBUFS and leaves the table usable;
 * entries of one key group share segments; keys of different lengths and
 * namespaces never collide; a table placing entries by key and namespace
 * (ns_in_hash: thousands of timers or list elements per key) against the
 * model too, namespace visits and drops included.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_keygroup.h"
#include "sp_rand.h"
#include "sp_table.h"

#include "table_test.h"

static void table_init_hashed(struct sp_table *t, uint32_t value_bytes, bool ns_order,
                              bool ns_in_hash)
{
    struct sp_table_config c = {
        .name = "t",
        .value_bytes = value_bytes,
        .key_group_first = 0,
        .key_group_count = 16,
        .key_groups_total = 16,
        .ns_order = ns_order,
        .ns_in_hash = ns_in_hash,
        .budget = &budget,
    };
    assert_int_equal(sp_table_init(t, &c), 0);
}

static void table_init(struct sp_table *t, uint32_t value_bytes, bool ns_order)
{
    table_init_hashed(t, value_bytes, ns_order, false);
}

static struct sp_table_entry *upsert(struct sp_table *t, uint64_t key, int64_t ns, bool *created)
{
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(t, sp_key_hash(&key, sizeof(key)), &key, sizeof(key), ns, created, &err);
    assert_non_null(e);
    return e;
}

static struct sp_table_entry *find(struct sp_table *t, uint64_t key, int64_t ns)
{
    return sp_table_find(t, sp_key_hash(&key, sizeof(key)), &key, sizeof(key), ns);
}

#define MODEL_KEYS 20000u

static void test_against_model(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, sizeof(uint64_t), false);
    static uint64_t model[MODEL_KEYS]; /* 0: absent, else value */
    memset(model, 0, sizeof(model));
    struct sp_rand rng;
    sp_rand_seed(&rng, 42);
    uint64_t live = 0;
    for (unsigned op = 0; op < 200000; op++) {
        uint64_t key = sp_rand_next(&rng) % MODEL_KEYS;
        unsigned what = (unsigned)(sp_rand_next(&rng) % 4);
        if (what < 2) {
            bool created;
            struct sp_table_entry *e = upsert(&t, key, 0, &created);
            assert_int_equal(created, model[key] == 0);
            uint64_t *v = sp_table_value(&t, e);
            if (created) {
                assert_int_equal(*v, 0); /* zeroed */
                live++;
            } else {
                assert_int_equal(*v, model[key]);
            }
            *v = model[key] = op + 1;
        } else if (what == 2) {
            struct sp_table_entry *e = find(&t, key, 0);
            if (model[key] == 0) {
                assert_null(e);
            } else {
                assert_non_null(e);
                assert_int_equal(*(uint64_t *)sp_table_value(&t, e), model[key]);
                sp_table_delete(&t, e);
                model[key] = 0;
                live--;
            }
        } else {
            struct sp_table_entry *e = find(&t, key, 0);
            if (model[key] == 0)
                assert_null(e);
            else
                assert_int_equal(*(uint64_t *)sp_table_value(&t, e), model[key]);
        }
        assert_int_equal(sp_table_count(&t), live);
    }
    for (uint64_t key = 0; key < MODEL_KEYS; key++) {
        struct sp_table_entry *e = find(&t, key, 0);
        if (model[key] == 0)
            assert_null(e);
        else
            assert_int_equal(*(uint64_t *)sp_table_value(&t, e), model[key]);
    }
    sp_table_deinit(&t);
}

#define NS_KEYS 8u
#define NS_PER_KEY 2000u

static void test_many_namespaces_per_key(void **state)
{
    (void)state;
    struct sp_table t;
    table_init_hashed(&t, sizeof(uint64_t), true, true);
    static uint64_t model[NS_KEYS][NS_PER_KEY + 1]; /* [key][ns]: 0 absent, else value */
    memset(model, 0, sizeof(model));
    struct sp_rand rng;
    sp_rand_seed(&rng, 7);
    uint64_t live = 0;
    for (unsigned op = 0; op < 100000; op++) {
        uint64_t key = sp_rand_next(&rng) % NS_KEYS;
        int64_t ns = (int64_t)(sp_rand_next(&rng) % NS_PER_KEY) + 1;
        unsigned what = (unsigned)(sp_rand_next(&rng) % 3);
        struct sp_table_entry *e = find(&t, key, ns);
        if (model[key][ns] == 0)
            assert_null(e);
        else
            assert_int_equal(*(uint64_t *)sp_table_value(&t, e), model[key][ns]);
        if (what < 2) {
            bool created;
            e = upsert(&t, key, ns, &created);
            live += created;
            *(uint64_t *)sp_table_value(&t, e) = model[key][ns] = op + 1;
        } else if (e != NULL) {
            sp_table_delete(&t, e);
            model[key][ns] = 0;
            live--;
        }
        assert_int_equal(sp_table_count(&t), live);
    }
    /* Namespaces in increasing order, each with exactly the model's keys. */
    int64_t ns;
    int64_t last = 0;
    while (sp_table_ns_min(&t, &ns)) {
        assert_true(ns > last);
        last = ns;
        unsigned want = 0, got = 0;
        for (uint64_t key = 0; key < NS_KEYS; key++)
            want += model[key][ns] != 0;
        struct sp_table_entry *e;
        while ((e = sp_table_ns_first(&t, ns)) != NULL) {
            uint64_t key;
            memcpy(&key, sp_table_key(&t, e), sizeof(key));
            assert_int_equal(*(uint64_t *)sp_table_value(&t, e), model[key][ns]);
            model[key][ns] = 0;
            sp_table_delete(&t, e);
            got++;
        }
        assert_int_equal(got, want);
    }
    assert_int_equal(sp_table_count(&t), 0);
    sp_table_deinit(&t);
}

static void count_seen(struct sp_table_entry *e, void *ctx)
{
    /* Keys 0, 1, 2, ... in order: their sum, and order checked by value. */
    uint64_t *seen = ctx;
    uint64_t k;
    memcpy(&k, (const uint8_t *)e + sizeof(*e) + 8, sizeof(k));
    *seen += k;
}

static bool stop_now(void *ctx)
{
    (void)ctx;
    return true;
}

static void test_namespaces_in_order(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, 8, true);
    /* Keys 0..999 in namespaces 50, 10, 30 (inserted out of order). */
    static const int64_t spaces[] = {50, 10, 30};
    for (unsigned s = 0; s < 3; s++) {
        for (uint64_t k = 0; k < 1000; k++) {
            bool created;
            struct sp_table_entry *e = upsert(&t, k, spaces[s], &created);
            assert_true(created);
            *(uint64_t *)sp_table_value(&t, e) = k;
        }
    }
    assert_int_equal(sp_table_count(&t), 3000);
    assert_int_equal(sp_table_ns_count(&t, 30), 1000);
    int64_t expect[] = {10, 30, 50};
    for (unsigned s = 0; s < 3; s++) {
        int64_t ns;
        assert_true(sp_table_ns_min(&t, &ns));
        assert_int_equal(ns, expect[s]);
        /* Every entry of the namespace, in insertion order. */
        uint64_t k = 0;
        for (struct sp_table_entry *e = sp_table_ns_first(&t, ns); e != NULL;
             e = sp_table_ns_next(&t, e), k++) {
            assert_int_equal(e->ns, ns);
            assert_int_equal(*(uint64_t *)sp_table_value(&t, e), k);
        }
        assert_int_equal(k, 1000);
        if (s == 1) {
            /* All at once, each seen first, in insertion order. */
            uint64_t seen = 0;
            /* Stopped after the first block, the rest stays... */
            assert_false(sp_table_ns_drop(&t, ns, count_seen, stop_now, &seen));
            assert_int_equal(sp_table_ns_count(&t, ns), 1000 - SP_TABLE_NS_BLOCK_REFS);
            assert_int_equal(seen, SP_TABLE_NS_BLOCK_REFS * (SP_TABLE_NS_BLOCK_REFS - 1) / 2);
            int64_t first;
            assert_true(sp_table_ns_min(&t, &first));
            assert_int_equal(first, ns);
            /* ...for the next call. */
            assert_true(sp_table_ns_drop(&t, ns, count_seen, NULL, &seen));
            assert_int_equal(seen, 1000 * 999 / 2);
            assert_null(sp_table_ns_first(&t, ns));
            assert_int_equal(sp_table_count(&t), 1000);
            for (uint64_t key = 0; key < 1000; key++) {
                assert_null(find(&t, key, ns));
                assert_non_null(find(&t, key, 50));
            }
            continue;
        }
        struct sp_table_entry *e;
        while ((e = sp_table_ns_first(&t, ns)) != NULL)
            sp_table_delete(&t, e);
    }
    int64_t ns;
    assert_false(sp_table_ns_min(&t, &ns));
    assert_int_equal(sp_table_count(&t), 0);
    sp_table_deinit(&t);
}

static void test_delete_from_middle_of_namespace(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, 8, true);
    bool created;
    for (uint64_t k = 0; k < 5; k++)
        upsert(&t, k, 7, &created);
    sp_table_delete(&t, find(&t, 2, 7));
    sp_table_delete(&t, find(&t, 0, 7));
    sp_table_delete(&t, find(&t, 4, 7));
    uint64_t seen[2];
    unsigned n = 0;
    for (struct sp_table_entry *e = sp_table_ns_first(&t, 7); e != NULL;
         e = sp_table_ns_next(&t, e))
        memcpy(&seen[n++], sp_table_key(&t, e), 8);
    assert_int_equal(n, 2);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 3);
    /* A namespace emptied and refilled comes back once. */
    sp_table_delete(&t, find(&t, 1, 7));
    sp_table_delete(&t, find(&t, 3, 7));
    upsert(&t, 9, 7, &created);
    int64_t ns;
    assert_true(sp_table_ns_min(&t, &ns));
    assert_int_equal(ns, 7);
    sp_table_delete(&t, find(&t, 9, 7));
    assert_false(sp_table_ns_min(&t, &ns));
    sp_table_deinit(&t);
}

static void test_segments_return(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, 16, true);
    uint32_t empty = budget.used;
    bool created;
    for (uint64_t k = 0; k < 50000; k++)
        upsert(&t, k, 1, &created);
    uint32_t full = budget.used;
    assert_true(full > empty + 50000 * 48 / SEG_BYTES);
    struct sp_table_entry *e;
    while ((e = sp_table_ns_first(&t, 1)) != NULL)
        sp_table_delete(&t, e);
    /* Entry segments went back (the index keeps its size). */
    assert_true(budget.used < full - 50000 * 48 / SEG_BYTES + 16 + 1);
    sp_table_deinit(&t);
    assert_int_equal(budget.used, 0);
}

static void test_budget_exhausted(void **state)
{
    (void)state;
    struct sp_budget small;
    sp_budget_init(&small, &pool, "small", 8);
    struct sp_table t;
    struct sp_table_config c = {
        .name = "small",
        .value_bytes = 64,
        .key_group_first = 0,
        .key_group_count = 1,
        .key_groups_total = 1,
        .budget = &small,
    };
    assert_int_equal(sp_table_init(&t, &c), 0);
    uint64_t k = 0;
    int err = 0;
    bool created;
    for (;; k++) {
        if (sp_table_upsert(&t, sp_key_hash(&k, 8), &k, 8, 0, &created, &err) == NULL)
            break;
    }
    assert_int_equal(err, -ENOBUFS);
    assert_true(k > 100);
    /* Everything inserted before is still there. */
    for (uint64_t i = 0; i < k; i++)
        assert_non_null(sp_table_find(&t, sp_key_hash(&i, 8), &i, 8, 0));
    sp_table_deinit(&t);
    assert_int_equal(small.used, 0);
}

static void test_keys_and_namespaces_distinct(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, 8, false);
    const char *keys[] = {"", "a", "ab", "abc", "abcdefghijklmnopqrstuvwxyz0123456789"};
    bool created;
    int err;
    for (unsigned i = 0; i < 5; i++) {
        for (int64_t ns = -1; ns <= 1; ns++) {
            uint32_t len = (uint32_t)strlen(keys[i]);
            struct sp_table_entry *e =
                sp_table_upsert(&t, sp_key_hash(keys[i], len), keys[i], len, ns, &created, &err);
            assert_non_null(e);
            assert_true(created);
            assert_int_equal(e->key_len, len);
            assert_memory_equal(sp_table_key(&t, e), keys[i], len);
        }
    }
    assert_int_equal(sp_table_count(&t), 15);
    /* A key too large for a segment is refused, not truncated. */
    static char big[SEG_BYTES];
    memset(big, 'x', sizeof(big));
    assert_null(
        sp_table_upsert(&t, sp_key_hash(big, sizeof(big)), big, sizeof(big), 0, &created, &err));
    assert_int_equal(err, -E2BIG);
    sp_table_deinit(&t);
}

struct group_check {
    const struct sp_table *t;
    unsigned bad;
};

static void check_group(struct sp_table_entry *e, void *ctx)
{
    struct group_check *g = ctx;
    /* The entry's segment holds only its key group. */
    for (uint32_t no = 0; no < g->t->seg_count; no++) {
        const struct sp_table_seg *seg = &g->t->segs[no];
        if (seg->base != NULL && (uint8_t *)e >= seg->base && (uint8_t *)e < seg->base + SEG_BYTES)
            g->bad += seg->key_group != sp_key_group(e->hash, g->t->config.key_groups_total);
    }
}

static void test_segments_by_key_group(void **state)
{
    (void)state;
    struct sp_table t;
    table_init(&t, 8, false);
    bool created;
    for (uint64_t k = 0; k < 5000; k++)
        upsert(&t, k, 0, &created);
    struct group_check g = {&t, 0};
    sp_table_foreach(&t, check_group, &g);
    assert_int_equal(g.bad, 0);
    sp_table_deinit(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_many_namespaces_per_key),
        cmocka_unit_test(test_namespaces_in_order),
        cmocka_unit_test(test_delete_from_middle_of_namespace),
        cmocka_unit_test(test_segments_return),
        cmocka_unit_test(test_budget_exhausted),
        cmocka_unit_test(test_keys_and_namespaces_distinct),
        cmocka_unit_test(test_segments_by_key_group),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
