/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time to live in the keyed state table (sp_table.h, "Time to live"), with
 * the clock driven by the test through sp_table_ttl_tick (no sleeping):
 * entries expire ttl after their last write; upsert and find refresh the
 * time, get does not; expired entries are invisible to get, find, upsert
 * (which makes a fresh one), iteration and namespace visits, on tables with
 * and without namespace lists (the two places the time is kept); a
 * randomized model of upserts, finds, gets, deletes and ticks; the
 * incremental cleanup deletes expired entries a bounded number per tick and
 * gives their segments back to the budget within a bounded number of ticks,
 * its cursor surviving a segment freed and reused under it;
 * snapshots carry the write times (an entry restored near its expiry still
 * expires on time, through a full snapshot and a delta), full snapshots
 * leave expired entries out, also while the cleanup deletes during the
 * stream; a randomized chain of full and incremental snapshots taken while
 * the table changes restores to what was live at the last one; streams
 * restore across TTL and non-TTL tables; a table without
 * TTL lays out entries as before (same sizes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_keygroup.h"
#include "sp_rand.h"
#include "sp_table.h"

#define GROUPS 16u
#define TTL 1000u
#define T0 100000u /* the clock's first tick */

#include "table_test.h"

static void table_open(struct sp_table *t, uint64_t ttl_ms, bool ns_order, uint32_t cleanup)
{
    struct sp_table_config c = {
        .name = "ttl",
        .value_bytes = sizeof(uint64_t),
        .key_group_first = 0,
        .key_group_count = GROUPS,
        .key_groups_total = GROUPS,
        .ns_order = ns_order,
        .budget = &budget,
        .ttl_ms = ttl_ms,
        .ttl_cleanup_entries = cleanup,
    };
    assert_int_equal(sp_table_init(t, &c), 0);
}

static struct sp_table_entry *upsert(struct sp_table *t, uint64_t key, int64_t ns, bool *created)
{
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(t, sp_key_hash(&key, sizeof(key)), &key, sizeof(key), ns, created, &err);
    assert_non_null(e);
    return e;
}

static void put(struct sp_table *t, uint64_t key, int64_t ns, uint64_t v)
{
    bool created;
    *(uint64_t *)sp_table_value(t, upsert(t, key, ns, &created)) = v;
}

static struct sp_table_entry *find(struct sp_table *t, uint64_t key, int64_t ns)
{
    return sp_table_find(t, sp_key_hash(&key, sizeof(key)), &key, sizeof(key), ns);
}

static const struct sp_table_entry *get(struct sp_table *t, uint64_t key, int64_t ns)
{
    return sp_table_get(t, sp_key_hash(&key, sizeof(key)), &key, sizeof(key), ns);
}

static uint64_t value_of(struct sp_table *t, const struct sp_table_entry *e)
{
    return *(const uint64_t *)sp_table_value(t, (struct sp_table_entry *)e);
}

/* ---- Expiry, refresh ---- */

static void expiry_on(bool ns_order)
{
    struct sp_table t;
    table_open(&t, TTL, ns_order, 0);
    sp_table_ttl_tick(&t, T0);
    put(&t, 1, 0, 11); /* written at T0, expires at T0 + TTL */
    put(&t, 2, 0, 22);
    put(&t, 3, 0, 33);
    assert_int_equal(sp_table_write_ms(&t, get(&t, 1, 0)), T0);

    sp_table_ttl_tick(&t, T0 + 600);
    put(&t, 2, 0, 23);               /* a write refreshes: expires at T0 + 1600 */
    assert_non_null(find(&t, 3, 0)); /* find counts as a write: T0 + 1600 too */
    for (int i = 0; i < 5; i++)
        assert_non_null(get(&t, 1, 0)); /* get refreshes nothing */

    sp_table_ttl_tick(&t, T0 + TTL - 1);
    assert_int_equal(value_of(&t, get(&t, 1, 0)), 11);
    sp_table_ttl_tick(&t, T0 + TTL); /* write time + ttl <= now: expired */
    assert_null(get(&t, 1, 0));
    assert_null(find(&t, 1, 0)); /* find deletes it (if the tick did not) */
    assert_int_equal(sp_table_count(&t), 2);
    assert_int_equal(value_of(&t, get(&t, 2, 0)), 23);
    assert_int_equal(value_of(&t, get(&t, 3, 0)), 33);

    /* An expired entry upserted is a fresh one, zeroed. */
    sp_table_ttl_tick(&t, T0 + 1600);
    assert_null(get(&t, 2, 0));
    bool created;
    struct sp_table_entry *e = upsert(&t, 2, 0, &created);
    assert_true(created);
    assert_int_equal(value_of(&t, e), 0);
    assert_int_equal(sp_table_write_ms(&t, e), T0 + 1600);
    assert_int_equal(sp_table_count(&t), 1); /* the tick's cleanup deleted 3 */

    /* The clock does not go back: 3 stays expired. */
    sp_table_ttl_tick(&t, T0);
    assert_int_equal(sp_table_ttl_now(&t), T0 + 1600);
    assert_null(get(&t, 3, 0));
    sp_table_deinit(&t);
}

static void test_expiry_and_refresh(void **state)
{
    (void)state;
    expiry_on(false);
    expiry_on(true);
}

/* ---- Namespace visits and iteration ---- */

static void count_fn(struct sp_table_entry *e, void *ctx)
{
    (void)e;
    (*(unsigned *)ctx)++;
}

static void test_namespace_visits(void **state)
{
    (void)state;
    struct sp_table t;
    table_open(&t, TTL, true, 0);
    sp_table_ttl_tick(&t, T0);
    /* 40 entries in namespace 7: even keys written at T0, odd at T0 + 500,
     * so whole blocks (12 refs) and single holes expire. */
    for (uint64_t k = 0; k < 40; k += 2)
        put(&t, k, 7, k);
    for (uint64_t k = 0; k < 30; k++)
        put(&t, 1000 + k, 9, k); /* namespace 9: all at T0 */
    sp_table_ttl_tick(&t, T0 + 500);
    for (uint64_t k = 1; k < 40; k += 2)
        put(&t, k, 7, k);
    sp_table_ttl_tick(&t, T0 + TTL);

    unsigned n = 0;
    sp_table_foreach(&t, count_fn, &n);
    assert_int_equal(n, 20); /* the odd keys */

    unsigned visited = 0;
    for (struct sp_table_entry *e = sp_table_ns_first(&t, 7); e != NULL;
         e = sp_table_ns_next(&t, e)) {
        assert_int_equal(value_of(&t, e) % 2, 1);
        visited++;
    }
    assert_int_equal(visited, 20);
    assert_int_equal(sp_table_ns_count(&t, 7), 20); /* the visit deleted the rest */

    /* A namespace with only expired entries: no first entry, and it goes. */
    int64_t min;
    assert_true(sp_table_ns_min(&t, &min));
    assert_int_equal(min, 7);
    assert_null(sp_table_ns_first(&t, 9));
    assert_int_equal(sp_table_ns_count(&t, 9), 0);

    /* ns_drop calls fn on live entries only. */
    sp_table_ttl_tick(&t, T0 + 1200);
    for (uint64_t k = 0; k < 10; k++)
        put(&t, 2000 + k, 11, k); /* at T0 + 1200 */
    /* 7's odd keys: the visit above counted as a write (T0 + 1000). */
    sp_table_ttl_tick(&t, T0 + 2000);
    n = 0;
    assert_true(sp_table_ns_drop(&t, 7, count_fn, NULL, &n));
    assert_int_equal(n, 0);
    assert_true(sp_table_ns_drop(&t, 11, count_fn, NULL, &n));
    assert_int_equal(n, 10);
    assert_int_equal(sp_table_count(&t), 0);
    assert_false(sp_table_ns_min(&t, &min));
    sp_table_deinit(&t);
}

/* ---- A randomized model ---- */

#define MODEL_KEYS 3000u

struct model_entry {
    uint64_t v; /* 0: absent */
    uint64_t w; /* last write */
};

static bool model_live(const struct model_entry *m, uint64_t now)
{
    return m->v != 0 && now - m->w < TTL;
}

static void model_run(bool ns_order, uint64_t seed)
{
    struct sp_table t;
    table_open(&t, TTL, ns_order, 50);
    static struct model_entry model[MODEL_KEYS];
    memset(model, 0, sizeof(model));
    struct sp_rand rng;
    sp_rand_seed(&rng, seed);
    uint64_t now = T0;
    sp_table_ttl_tick(&t, now);
    for (unsigned op = 0; op < 100000; op++) {
        uint64_t key = sp_rand_next(&rng) % MODEL_KEYS;
        int64_t ns = ns_order ? (int64_t)(key % 4) : 0;
        struct model_entry *m = &model[key];
        unsigned what = (unsigned)(sp_rand_next(&rng) % 16);
        if (what < 6) {
            bool created;
            struct sp_table_entry *e = upsert(&t, key, ns, &created);
            assert_int_equal(created, !model_live(m, now));
            assert_int_equal(value_of(&t, e), created ? 0 : m->v);
            m->v = op + 1;
            m->w = now;
            *(uint64_t *)sp_table_value(&t, e) = m->v;
        } else if (what < 9) {
            struct sp_table_entry *e = find(&t, key, ns);
            if (!model_live(m, now)) {
                assert_null(e);
                m->v = 0;
            } else {
                assert_non_null(e);
                assert_int_equal(value_of(&t, e), m->v);
                m->w = now;
            }
        } else if (what < 12) {
            const struct sp_table_entry *e = get(&t, key, ns);
            if (!model_live(m, now)) {
                assert_null(e);
            } else {
                assert_non_null(e);
                assert_int_equal(value_of(&t, e), m->v);
                assert_int_equal(sp_table_write_ms(&t, e), m->w);
            }
        } else if (what < 14) {
            struct sp_table_entry *e = find(&t, key, ns);
            assert_int_equal(e != NULL, model_live(m, now));
            if (e != NULL)
                sp_table_delete(&t, e);
            m->v = 0;
        } else {
            now += sp_rand_next(&rng) % 40;
            sp_table_ttl_tick(&t, now);
        }
        if (op % 10000 == 0) {
            /* The table holds every live entry and maybe expired ones. */
            uint64_t live = 0;
            for (uint32_t k = 0; k < MODEL_KEYS; k++)
                live += model_live(&model[k], now);
            assert_true(sp_table_count(&t) >= live);
            unsigned n = 0;
            sp_table_foreach(&t, count_fn, &n);
            assert_int_equal(n, live);
        }
    }
    sp_table_deinit(&t);
}

static void test_model(void **state)
{
    (void)state;
    model_run(false, 1);
    model_run(false, 2);
    model_run(true, 3);
}

/* ---- Incremental cleanup ---- */

/* Entry segments with entries in them, and those held at all. */
static void entry_segs(const struct sp_table *t, uint32_t *with_live, uint32_t *held)
{
    *with_live = *held = 0;
    for (uint32_t i = 0; i < t->seg_count; i++) {
        if (t->segs[i].base == NULL)
            continue;
        (*held)++;
        *with_live += t->segs[i].live > 0;
    }
}

static void cleanup_on(bool ns_order)
{
    enum { N = 6000, PER_TICK = 100 };
    struct sp_table t;
    table_open(&t, TTL, ns_order, PER_TICK);
    sp_table_ttl_tick(&t, T0);
    for (uint64_t k = 0; k < N; k++)
        put(&t, k, ns_order ? (int64_t)(k % 8) : 0, k + 1);
    /* Keys N.. are written later and must survive (entries never move:
     * they are in segments of their own). */
    sp_table_ttl_tick(&t, T0 + 500);
    for (uint64_t k = N; k < N + N / 10; k++)
        put(&t, k, ns_order ? (int64_t)(k % 8) : 0, k + 2);
    uint32_t with_live, held;
    entry_segs(&t, &with_live, &held);
    uint64_t used_full = budget.used;
    uint32_t segs_full = held;
    assert_true(segs_full > 80);

    /* Nothing expired yet: a round of ticks deletes nothing. */
    for (unsigned i = 0; i < 200; i++)
        sp_table_ttl_tick(&t, T0 + 999);
    assert_int_equal(sp_table_count(&t), N + N / 10);

    /* Expired: each tick deletes at most PER_TICK... */
    sp_table_ttl_tick(&t, T0 + TTL);
    assert_true(sp_table_count(&t) >= N + N / 10 - PER_TICK);
    /* ...and one round over every entry and segment slot, which the appends
     * left at most N + N/10 entries and seg_count slots, gets them all. */
    uint32_t bound = (N + N / 10 + t.seg_count) / PER_TICK + 2;
    for (uint32_t i = 0; i < bound; i++)
        sp_table_ttl_tick(&t, T0 + TTL);
    assert_int_equal(sp_table_count(&t), N / 10);
    for (uint64_t k = 0; k < N + N / 10; k++) {
        const struct sp_table_entry *e = get(&t, k, ns_order ? (int64_t)(k % 8) : 0);
        if (k >= N)
            assert_int_equal(value_of(&t, e), k + 2);
        else
            assert_null(e);
    }
    /* The segments of dead entries went back: only those holding a
     * survivor stay, and the groups' open segments. */
    entry_segs(&t, &with_live, &held);
    assert_true(held <= with_live + GROUPS);
    assert_true(budget.used + (segs_full - held) <= used_full);
    assert_true(held < segs_full / 2);

    /* Then all of them. */
    sp_table_ttl_tick(&t, T0 + 500 + TTL);
    for (uint32_t i = 0; i < bound; i++)
        sp_table_ttl_tick(&t, T0 + 500 + TTL);
    assert_int_equal(sp_table_count(&t), 0);
    entry_segs(&t, &with_live, &held);
    assert_int_equal(with_live, 0);
    assert_true(held <= GROUPS);
    sp_table_deinit(&t);
}

static void test_cleanup(void **state)
{
    (void)state;
    cleanup_on(false);
    cleanup_on(true);
}

/* The cleanup's cursor stays in a segment that is freed and reused by
 * entries of another size meanwhile: it starts over at the segment's
 * start instead of reading the new entries at a stale offset. */
static void test_cleanup_cursor_reused_segment(void **state)
{
    (void)state;
    struct sp_table t;
    struct sp_table_config c = {
        .name = "ttl",
        .value_bytes = sizeof(uint64_t),
        .key_group_first = 0,
        .key_group_count = 1,
        .key_groups_total = 1,
        .budget = &budget,
        .ttl_ms = TTL,
        .ttl_cleanup_entries = 3,
    };
    assert_int_equal(sp_table_init(&t, &c), 0);
    sp_table_ttl_tick(&t, T0);
    for (uint64_t k = 0; k < 100; k++) /* 64-byte entries: 64 fill segment 0 */
        put(&t, k, 0, k + 1);
    sp_table_ttl_tick(&t, T0 + 1); /* the cursor: 3 entries into segment 0 */
    assert_int_equal(t.ttl_seg, 0);
    assert_int_equal(t.ttl_walk_off, 3 * 64);
    for (uint64_t k = 0; k < 64; k++) /* segment 0 empties and goes back */
        sp_table_delete(&t, find(&t, k, 0));
    /* 80-byte entries (30-byte keys) fill segment 1, then take segment 0's
     * slot again: 192 is in the middle of the third. */
    uint8_t key[30];
    for (uint32_t i = 0; i < 40; i++) {
        memset(key, (int)i, sizeof(key));
        bool created;
        int err = 0;
        struct sp_table_entry *e =
            sp_table_upsert(&t, sp_key_hash(key, sizeof(key)), key, sizeof(key), 0, &created, &err);
        assert_non_null(e);
        assert_int_equal(e->bytes, 80);
    }
    assert_non_null(t.segs[0].base);
    assert_int_equal(sp_table_count(&t), 36 + 40);
    for (unsigned i = 0; i < 200 && sp_table_count(&t) > 0; i++)
        sp_table_ttl_tick(&t, T0 + TTL + 1);
    assert_int_equal(sp_table_count(&t), 0);
    sp_table_deinit(&t);
}

/* ---- Snapshots ---- */

/* Streams the snapshot begun on `t` in reads of `piece` bytes, ticking the
 * clock to `tick_ms` between reads when not 0 (the cleanup deletes meanwhile). */
static uint8_t *stream(struct sp_table *t, size_t piece, uint64_t tick_ms, size_t *len)
{
    size_t cap = 1u << 16;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = 0;
    for (;;) {
        if (cap - n < piece) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        int64_t k = sp_table_snapshot_read(t, buf + n, piece);
        assert_true(k >= 0);
        if (k == 0)
            break;
        n += (size_t)k;
        if (tick_ms != 0)
            sp_table_ttl_tick(t, tick_ms);
    }
    *len = n;
    return buf;
}

static void snapshot_on(bool ns_order)
{
    struct sp_table t;
    table_open(&t, TTL, ns_order, 0);
    sp_table_ttl_tick(&t, T0);
    put(&t, 1, 0, 11); /* expires at T0 + 1000 */
    sp_table_ttl_tick(&t, T0 + 600);
    put(&t, 2, 0, 22); /* T0 + 1600 */
    int64_t v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    size_t full_len;
    uint8_t *full = stream(&t, 64, 0, &full_len);
    sp_table_snapshot_complete(&t, (uint32_t)v);

    sp_table_ttl_tick(&t, T0 + 900);
    put(&t, 3, 0, 33); /* T0 + 1900 */
    put(&t, 2, 0, 23); /* refreshed: T0 + 1900 */
    int64_t v2 = sp_table_snapshot_begin(&t, false, (uint32_t)v);
    assert_true(v2 > v);
    size_t delta_len;
    uint8_t *delta = stream(&t, 4096, 0, &delta_len);

    /* Restored near expiry: key 1 has 100 ms left, and expires on time. */
    struct sp_table r;
    table_open(&r, TTL, ns_order, 0);
    assert_int_equal(sp_table_restore(&r, full, full_len), 0);
    sp_table_ttl_tick(&r, T0 + 900);
    assert_int_equal(sp_table_write_ms(&r, get(&r, 1, 0)), T0);
    assert_int_equal(sp_table_write_ms(&r, get(&r, 2, 0)), T0 + 600);
    assert_int_equal(sp_table_restore(&r, delta, delta_len), 0);
    assert_int_equal(value_of(&r, get(&r, 2, 0)), 23);
    assert_int_equal(sp_table_write_ms(&r, get(&r, 2, 0)), T0 + 900);
    assert_int_equal(sp_table_write_ms(&r, get(&r, 3, 0)), T0 + 900);
    sp_table_ttl_tick(&r, T0 + 999);
    assert_non_null(get(&r, 1, 0));
    sp_table_ttl_tick(&r, T0 + 1000);
    assert_null(get(&r, 1, 0));
    assert_non_null(get(&r, 2, 0));
    sp_table_ttl_tick(&r, T0 + 1900);
    assert_null(get(&r, 2, 0));
    assert_null(get(&r, 3, 0));
    sp_table_deinit(&r);

    /* Onto a table without TTL: values without times, nothing expires. */
    table_open(&r, 0, ns_order, 0);
    assert_int_equal(sp_table_restore(&r, full, full_len), 0);
    assert_int_equal(sp_table_restore(&r, delta, delta_len), 0);
    sp_table_ttl_tick(&r, T0 + 1000000);
    assert_int_equal(value_of(&r, get(&r, 1, 0)), 11);
    assert_int_equal(value_of(&r, get(&r, 3, 0)), 33);
    /* And its stream onto a TTL table: the entries take the clock's time. */
    int64_t rv = sp_table_snapshot_begin(&r, true, 0);
    assert_true(rv > 0);
    size_t plain_len;
    uint8_t *plain = stream(&r, 4096, 0, &plain_len);
    assert_true(plain_len < full_len + delta_len); /* no times in it */
    sp_table_deinit(&r);
    table_open(&r, TTL, ns_order, 0);
    sp_table_ttl_tick(&r, T0 + 5000);
    assert_int_equal(sp_table_restore(&r, plain, plain_len), 0);
    assert_int_equal(sp_table_write_ms(&r, get(&r, 1, 0)), T0 + 5000);
    sp_table_ttl_tick(&r, T0 + 6000);
    assert_null(get(&r, 1, 0));
    sp_table_deinit(&r);
    free(plain);
    free(full);
    free(delta);
    sp_table_deinit(&t);
}

static void test_snapshot_keeps_times(void **state)
{
    (void)state;
    snapshot_on(false);
    snapshot_on(true);
}

/* Full snapshots leave expired entries out, whether the walker or copy-on-
 * write (the cleanup deleting during the stream) encodes them. */
static void full_skip_on(bool ns_order, uint64_t tick_during)
{
    enum { N = 2000 };
    struct sp_table t;
    table_open(&t, TTL, ns_order, 7);
    sp_table_ttl_tick(&t, T0);
    for (uint64_t k = 0; k < N; k++)
        put(&t, k, 0, k + 1); /* expire at T0 + 1000 */
    sp_table_ttl_tick(&t, T0 + 500);
    for (uint64_t k = 0; k < N; k += 3)
        put(&t, k, 0, k + 5);        /* T0 + 1500 */
    sp_table_ttl_tick(&t, T0 + TTL); /* most expired, a few cleaned up */
    assert_true(sp_table_count(&t) > N / 2);
    int64_t v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    size_t len;
    uint8_t *s = stream(&t, 256, tick_during, &len);

    struct sp_table r;
    table_open(&r, TTL, ns_order, 7);
    assert_int_equal(sp_table_restore(&r, s, len), 0);
    assert_int_equal(sp_table_count(&r), (N + 2) / 3);
    sp_table_ttl_tick(&r, T0 + TTL);
    for (uint64_t k = 0; k < N; k++) {
        const struct sp_table_entry *e = get(&r, k, 0);
        if (k % 3 == 0) {
            assert_int_equal(value_of(&r, e), k + 5);
            assert_int_equal(sp_table_write_ms(&r, e), T0 + 500);
        } else {
            assert_null(e);
        }
    }
    free(s);
    sp_table_deinit(&r);
    sp_table_deinit(&t);
}

static void test_full_snapshot_skips_expired(void **state)
{
    (void)state;
    full_skip_on(false, 0);
    full_skip_on(false, T0 + TTL);
    full_skip_on(true, T0 + TTL);
}

/* A randomized chain of snapshots, full then deltas, each streamed in
 * pieces while upserts, finds, deletes and ticks (whose cleanup deletes)
 * go on: the chain restored and read at the source's latest clock shows
 * exactly the entries live when the last snapshot began whose write time
 * has not expired by then, with their values and times. */
#define CHAIN_KEYS 1500u

static void chain_step(struct sp_table *t, struct model_entry *m, struct sp_rand *rng,
                       uint64_t *now, unsigned op, bool ns_order)
{
    uint64_t key = sp_rand_next(rng) % CHAIN_KEYS;
    int64_t ns = ns_order ? (int64_t)(key % 3) : 0;
    unsigned what = (unsigned)(sp_rand_next(rng) % 10);
    if (what < 4) {
        bool created;
        struct sp_table_entry *e = upsert(t, key, ns, &created);
        m[key].v = op + 1;
        m[key].w = *now;
        *(uint64_t *)sp_table_value(t, e) = m[key].v;
    } else if (what < 6) {
        if (find(t, key, ns) != NULL)
            m[key].w = *now;
        else
            m[key].v = 0;
    } else if (what < 8) {
        struct sp_table_entry *e = find(t, key, ns);
        if (e != NULL)
            sp_table_delete(t, e);
        m[key].v = 0;
    } else {
        *now += sp_rand_next(rng) % 10;
        sp_table_ttl_tick(t, *now);
    }
}

static void chain_on(bool ns_order, uint64_t seed)
{
    struct sp_table t;
    table_open(&t, TTL, ns_order, 64);
    static struct model_entry model[CHAIN_KEYS], at_begin[CHAIN_KEYS];
    memset(model, 0, sizeof(model));
    struct sp_rand rng;
    sp_rand_seed(&rng, seed);
    uint64_t now = T0;
    sp_table_ttl_tick(&t, now);
    uint8_t *streams[16];
    size_t lens[16];
    unsigned n = 0;
    uint32_t base = 0;
    unsigned op = 0;
    for (unsigned round = 0; round < 16; round++) {
        for (unsigned i = 0; i < 3000; i++)
            chain_step(&t, model, &rng, &now, op++, ns_order);
        int64_t v = sp_table_snapshot_begin(&t, base == 0, base);
        assert_true(v > 0);
        memcpy(at_begin, model, sizeof(model));
        /* Stream 512 bytes at a time, 20 mutations between reads. */
        size_t cap = 1u << 16, len = 0;
        uint8_t *buf = malloc(cap);
        assert_non_null(buf);
        for (;;) {
            if (cap - len < 512) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
            int64_t k = sp_table_snapshot_read(&t, buf + len, 512);
            assert_true(k >= 0);
            if (k == 0)
                break;
            len += (size_t)k;
            for (unsigned i = 0; i < 20; i++)
                chain_step(&t, model, &rng, &now, op++, ns_order);
        }
        sp_table_snapshot_complete(&t, (uint32_t)v);
        base = (uint32_t)v;
        streams[n] = buf;
        lens[n++] = len;

        struct sp_table r;
        table_open(&r, TTL, ns_order, 64);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(sp_table_restore(&r, streams[i], lens[i]), 0);
        sp_table_ttl_tick(&r, now);
        for (uint64_t key = 0; key < CHAIN_KEYS; key++) {
            const struct sp_table_entry *e = get(&r, key, ns_order ? (int64_t)(key % 3) : 0);
            if (!model_live(&at_begin[key], now)) {
                assert_null(e);
            } else {
                assert_non_null(e);
                assert_int_equal(value_of(&r, e), at_begin[key].v);
                assert_int_equal(sp_table_write_ms(&r, e), at_begin[key].w);
            }
        }
        sp_table_deinit(&r);
    }
    for (unsigned i = 0; i < n; i++)
        free(streams[i]);
    sp_table_deinit(&t);
}

static void test_snapshot_chain(void **state)
{
    (void)state;
    chain_on(false, 11);
    chain_on(true, 12);
}

/* ---- Layout ---- */

static void test_layout(void **state)
{
    (void)state;
    struct sp_table plain, ttl, plain_ns, ttl_ns;
    table_open(&plain, 0, false, 0);
    table_open(&ttl, TTL, false, 0);
    table_open(&plain_ns, 0, true, 0);
    table_open(&ttl_ns, TTL, true, 0);
    /* Without namespace lists the time costs no byte; with them, 8. */
    assert_int_equal(ttl.value_off, plain.value_off);
    assert_int_equal(ttl.key_off, plain.key_off);
    assert_int_equal(plain.value_off, sizeof(struct sp_table_entry));
    assert_int_equal(ttl_ns.value_off, plain_ns.value_off + 8);
    assert_int_equal(plain.ttl_off, 0);
    bool created;
    assert_int_equal(upsert(&plain, 5, 0, &created)->bytes, upsert(&ttl, 5, 0, &created)->bytes);
    assert_int_equal(upsert(&plain_ns, 5, 0, &created)->bytes, 64);
    assert_int_equal(upsert(&ttl_ns, 5, 0, &created)->bytes, 64);
    sp_table_deinit(&plain);
    sp_table_deinit(&ttl);
    sp_table_deinit(&plain_ns);
    sp_table_deinit(&ttl_ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_expiry_and_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_visits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup_cursor_reused_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_keeps_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_snapshot_skips_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
