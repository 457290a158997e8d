/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state table snapshots (sp_table.h, "Snapshots"): a randomized model
 * test, several seeds, on tables with and without namespace lists and with
 * entries placed by key and namespace: random inserts, updates (through
 * upsert, find and namespace visits), deletes and namespace drops, mirrored
 * in a plain array; at random points a full or incremental snapshot begins
 * and is streamed out in pieces (64 KiB, 4 KiB or a few hundred bytes, so
 * records straddle reads) while the mutations go on; some checkpoints fail
 * (cancelled mid-stream, or streamed and never completed) and the next delta
 * starts from the older base. After every completed checkpoint, the full
 * stream and its deltas restored into a fresh table equal the model as it
 * was when that snapshot began. Also: restoring into tables that own half
 * the key groups each (their union is the model, each holds only its own
 * groups); truncated, corrupted and random streams are -EBADMSG and change
 * nothing; begin() holds no memory on a large table; no tombstones are kept
 * by a table that never takes snapshots, and complete() frees them; a
 * segment emptied and refilled during a snapshot leaks nothing into it;
 * the limit on bytes held aside fails a snapshot, or refuses the deltas
 * whose tombstones were dropped, and never breaks a later full one.
 *
 * The model runs once more with a spill (sp_spill.h) and a budget of a few
 * hundred KiB, so most entry segments live on disk while snapshots walk
 * them, copy-on-write copies them and restores fill tables sharing the
 * budget: the same checks hold, and segments went out and came back.
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

#define KEYS 1500u
#define NSS 6u /* namespaces 0..NSS-1 (ns_order tables) */
#define GROUPS 16u
#define VALUE_BYTES 20u /* not a multiple of 8 on purpose */
#define STREAMS_MAX 64u

#define TABLE_TEST_POOL_BYTES (128u << 20)
#include "table_test.h"

/* The spill the tables use in the spill runs (NULL: none). Mutations and
 * checks hold no entry pointer from one step to the next: each unpins. */
static struct sp_spill *spill_on;
#define SPILL_BUDGET_SEGMENTS 64u

static void unpin(void)
{
    if (spill_on != NULL)
        sp_spill_unpin(spill_on);
}

struct kind {
    bool ns_order;
    bool ns_in_hash;
};

static void table_open(struct sp_table *t, struct kind k, uint32_t first, uint32_t count)
{
    struct sp_table_config c = {
        .name = "t",
        .value_bytes = VALUE_BYTES,
        .key_group_first = first,
        .key_group_count = count,
        .key_groups_total = GROUPS,
        .ns_order = k.ns_order,
        .ns_in_hash = k.ns_in_hash,
        .budget = &budget,
        .spill = spill_on,
    };
    assert_int_equal(sp_table_init(t, &c), 0);
}

/* Key `id`: its 8 bytes, then id % 5 bytes more (keys of several lengths). */
struct key {
    uint8_t bytes[16];
    uint32_t len;
    uint64_t hash;
};

static struct key key_of(uint32_t id)
{
    struct key k;
    memset(&k, 0, sizeof(k));
    uint64_t v = (uint64_t)id * 0x9E3779B97F4A7C15ull + 1;
    memcpy(k.bytes, &v, 8);
    k.len = 8 + id % 5;
    for (uint32_t i = 8; i < k.len; i++)
        k.bytes[i] = (uint8_t)(id + i);
    k.hash = sp_key_hash(k.bytes, k.len);
    return k;
}

/* A value: the model's number, then the key id (20 bytes in all). */
static void value_put(void *dst, uint64_t v, uint32_t id)
{
    uint8_t b[VALUE_BYTES];
    memset(b, 0xA5, sizeof(b));
    memcpy(b, &v, 8);
    memcpy(b + 8, &id, 4);
    memcpy(dst, b, VALUE_BYTES);
}

static uint64_t value_get(const void *src)
{
    uint64_t v;
    memcpy(&v, src, 8);
    return v;
}

/* The model: [key][ns] -> value, 0 when absent. */
struct model {
    uint64_t v[KEYS][NSS];
};

static struct sp_table_entry *t_upsert(struct sp_table *t, uint32_t id, int64_t ns, bool *created)
{
    struct key k = key_of(id);
    int err = 0;
    struct sp_table_entry *e = sp_table_upsert(t, k.hash, k.bytes, k.len, ns, created, &err);
    assert_non_null(e);
    return e;
}

static struct sp_table_entry *t_find(struct sp_table *t, uint32_t id, int64_t ns)
{
    struct key k = key_of(id);
    return sp_table_find(t, k.hash, k.bytes, k.len, ns);
}

/* The table holds exactly the model's entries of groups [first, first+count). */
static void check_equal(struct sp_table *t, const struct model *m, uint32_t first, uint32_t count)
{
    uint64_t want = 0;
    for (uint32_t id = 0; id < KEYS; id++) {
        struct key k = key_of(id);
        uint32_t g = sp_key_group(k.hash, GROUPS);
        bool mine = g >= first && g < first + count;
        for (uint32_t ns = 0; ns < NSS; ns++) {
            unpin();
            const struct sp_table_entry *e = sp_table_get(t, k.hash, k.bytes, k.len, ns);
            if (m->v[id][ns] == 0 || !mine) {
                assert_null(e);
                continue;
            }
            assert_non_null(e);
            assert_int_equal(value_get(sp_table_value(t, (struct sp_table_entry *)e)),
                             m->v[id][ns]);
            want++;
        }
    }
    assert_int_equal(sp_table_count(t), want);
}

/* A stream collected from reads. */
struct stream {
    uint8_t *data;
    size_t len;
    size_t cap;
};

static void stream_append(struct stream *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        s->data = realloc(s->data, cap);
        assert_non_null(s->data);
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

static void stream_free(struct stream *s)
{
    free(s->data);
    memset(s, 0, sizeof(*s));
}

/* Restores streams[0..n) in order into a fresh table of groups
 * [first, first + count) and checks it against `m`. */
static void check_restore(struct kind k, struct stream *streams, unsigned n, const struct model *m,
                          uint32_t first, uint32_t count)
{
    struct sp_table r;
    table_open(&r, k, first, count);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(sp_table_restore(&r, streams[i].data, streams[i].len), 0);
    check_equal(&r, m, first, count);
    sp_table_deinit(&r);
}

/* One random mutation of t, mirrored in m. */
static void mutate(struct sp_table *t, struct kind k, struct model *m, struct sp_rand *rnd,
                   uint64_t *next_value)
{
    uint32_t id = (uint32_t)sp_rand_below(rnd, KEYS);
    int64_t ns = k.ns_order || k.ns_in_hash ? (int64_t)sp_rand_below(rnd, NSS) : 0;
    uint64_t op = sp_rand_below(rnd, 100);
    uint64_t v = (*next_value)++;
    unpin();
    if (op < 45) { /* insert or update through upsert */
        bool created;
        struct sp_table_entry *e = t_upsert(t, id, ns, &created);
        assert_int_equal(created, m->v[id][ns] == 0);
        value_put(sp_table_value(t, e), v, id);
        m->v[id][ns] = v;
    } else if (op < 65) { /* update through find */
        struct sp_table_entry *e = t_find(t, id, ns);
        assert_int_equal(e != NULL, m->v[id][ns] != 0);
        if (e != NULL) {
            value_put(sp_table_value(t, e), v, id);
            m->v[id][ns] = v;
        }
    } else if (op < 90) { /* delete */
        struct sp_table_entry *e = t_find(t, id, ns);
        assert_int_equal(e != NULL, m->v[id][ns] != 0);
        if (e != NULL) {
            sp_table_delete(t, e);
            m->v[id][ns] = 0;
        }
    } else if (op < 95 && k.ns_order) { /* update a namespace through its list */
        for (struct sp_table_entry *e = sp_table_ns_first(t, ns); e != NULL;
             e = sp_table_ns_next(t, e)) {
            uint32_t eid;
            memcpy(&eid, (uint8_t *)sp_table_value(t, e) + 8, 4);
            assert_true(eid < KEYS);
            value_put(sp_table_value(t, e), v, eid);
            m->v[eid][ns] = v;
        }
    } else if (op < 97 && k.ns_order) { /* drop a namespace */
        sp_table_ns_drop(t, ns, NULL, NULL, NULL);
        for (uint32_t i = 0; i < KEYS; i++)
            m->v[i][ns] = 0;
    } else { /* read only: counts as no write */
        struct key kk = key_of(id);
        const struct sp_table_entry *e = sp_table_get(t, kk.hash, kk.bytes, kk.len, ns);
        assert_int_equal(e != NULL, m->v[id][ns] != 0);
    }
}

/*
 * The model test for one kind of table and seed. Checkpoints in a row: a
 * snapshot begins (full when there is no completed base or one time in
 * four, else the delta since the last completed one), is read in pieces of
 * `cap` with mutations in between, and then either completes (its stream
 * joins the chain and the chain restored equals the model at begin), or
 * fails: cancelled mid-stream, or streamed and dropped.
 */
static void model_run(struct kind k, uint64_t seed, unsigned checkpoints)
{
    struct sp_rand rnd;
    sp_rand_seed(&rnd, seed);
    struct sp_table t;
    table_open(&t, k, 0, GROUPS);
    struct model *m = calloc(1, sizeof(*m));
    struct model *at_begin = calloc(1, sizeof(*at_begin));
    struct stream *chain = calloc(STREAMS_MAX, sizeof(*chain));
    assert_non_null(m);
    assert_non_null(at_begin);
    assert_non_null(chain);
    unsigned chain_len = 0;
    uint32_t base = 0; /* the last completed snapshot */
    uint64_t next_value = 1;
    uint8_t *buf = malloc(65536);
    assert_non_null(buf);
    static const size_t caps[] = {65536, 4096, 333};

    for (unsigned i = 0; i < 3000; i++) /* something to start from */
        mutate(&t, k, m, &rnd, &next_value);
    for (unsigned c = 0; c < checkpoints; c++) {
        unsigned between = (unsigned)sp_rand_below(&rnd, 2000);
        for (unsigned i = 0; i < between; i++)
            mutate(&t, k, m, &rnd, &next_value);
        bool full = base == 0 || sp_rand_below(&rnd, 4) == 0 || chain_len == STREAMS_MAX;
        int64_t v = sp_table_snapshot_begin(&t, full, full ? 0 : base);
        assert_true(v > (int64_t)base);
        assert_int_equal(sp_table_snapshot_begin(&t, true, 0), -EBUSY);
        memcpy(at_begin, m, sizeof(*m));
        size_t cap = caps[sp_rand_below(&rnd, 3)];
        uint64_t fate = sp_rand_below(&rnd, 10); /* 0: cancelled, 1: dropped */
        struct stream s = {0};
        unsigned reads = 0;
        for (;;) {
            if (fate == 0 && reads == 3) {
                sp_table_snapshot_cancel(&t);
                break;
            }
            int64_t n = sp_table_snapshot_read(&t, buf, cap);
            assert_true(n >= 0);
            assert_true((size_t)n <= cap);
            if (n == 0)
                break;
            reads++;
            stream_append(&s, buf, (size_t)n);
            unsigned work = (unsigned)sp_rand_below(&rnd, cap == 333 ? 8 : 150);
            for (unsigned i = 0; i < work; i++)
                mutate(&t, k, m, &rnd, &next_value);
        }
        assert_int_equal(sp_table_snapshot_read(&t, buf, cap), 0);
        if (fate <= 1) {
            stream_free(&s);
            continue;
        }
        /* Completed: the chain restored is the table as of begin. */
        sp_table_snapshot_complete(&t, (uint32_t)v);
        if (full) {
            for (unsigned i = 0; i < chain_len; i++)
                stream_free(&chain[i]);
            chain_len = 0;
        }
        chain[chain_len++] = s;
        base = (uint32_t)v;
        check_restore(k, chain, chain_len, at_begin, 0, GROUPS);
        if (sp_rand_below(&rnd, 4) == 0) { /* and by halves of the key groups */
            check_restore(k, chain, chain_len, at_begin, 0, GROUPS / 2);
            check_restore(k, chain, chain_len, at_begin, GROUPS / 2, GROUPS / 2);
        }
    }
    /* Nothing active: only tombstones newer than the last base are held. */
    sp_table_snapshot_complete(&t, base);
    struct sp_table_snap *sn = &t.snap;
    assert_false(sn->active);
    assert_int_equal(sn->cow.cap + sn->pend.cap, 0);
    for (unsigned i = 0; i < chain_len; i++)
        stream_free(&chain[i]);
    free(chain);
    free(buf);
    free(m);
    free(at_begin);
    sp_table_deinit(&t);
}

static void test_model_plain(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 4; seed++)
        model_run((struct kind){.ns_order = false, .ns_in_hash = false}, seed, 30);
}

static void test_model_ns_order(void **state)
{
    (void)state;
    for (uint64_t seed = 11; seed <= 14; seed++)
        model_run((struct kind){.ns_order = true, .ns_in_hash = false}, seed, 30);
}

static void test_model_ns_in_hash(void **state)
{
    (void)state;
    for (uint64_t seed = 21; seed <= 24; seed++)
        model_run((struct kind){.ns_order = true, .ns_in_hash = true}, seed, 30);
    model_run((struct kind){.ns_order = false, .ns_in_hash = true}, 31, 30);
}

static struct sp_spill spill;

static int setup_spill(void **state)
{
    setup(state);
    sp_budget_set_limit(&budget, SPILL_BUDGET_SEGMENTS);
    struct sp_spill_config c = {.dir = table_test_spill_dir(), .batch = 8};
    assert_int_equal(sp_spill_init(&spill, &budget, &c), 0);
    spill_on = &spill;
    return 0;
}

static int teardown_spill(void **state)
{
    /* Segments went to disk and came back, and every slot is free again. */
    print_message("spill: used_max %u out %llu in %llu max %u\n", budget.used_max,
                  (unsigned long long)spill.stats.segments_out,
                  (unsigned long long)spill.stats.segments_in, spill.stats.spilled_max);
    assert_true(spill.stats.segments_out > 100);
    assert_true(spill.stats.segments_in > 100);
    assert_int_equal(spill.stats.spilled, 0);
    assert_int_equal(sp_spill_error(&spill), 0);
    spill_on = NULL;
    sp_spill_deinit(&spill);
    return teardown(state);
}

static void test_model_spill(void **state)
{
    (void)state;
    model_run((struct kind){.ns_order = false, .ns_in_hash = false}, 41, 20);
    model_run((struct kind){.ns_order = true, .ns_in_hash = false}, 42, 20);
    model_run((struct kind){.ns_order = true, .ns_in_hash = true}, 43, 20);
}

/* Reads a whole snapshot with no mutation in between. */
static void read_all(struct sp_table *t, struct stream *s, size_t cap)
{
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        int64_t n = sp_table_snapshot_read(t, buf, cap);
        assert_true(n >= 0);
        if (n == 0)
            break;
        stream_append(s, buf, (size_t)n);
    }
    free(buf);
}

static void fill(struct sp_table *t, struct model *m, uint32_t keys, uint64_t salt)
{
    for (uint32_t id = 0; id < keys; id++) {
        bool created;
        struct sp_table_entry *e = t_upsert(t, id, 0, &created);
        value_put(sp_table_value(t, e), id + salt, id);
        m->v[id][0] = id + salt;
    }
}

/* A delta whose snapshot was cancelled half-way, then one from the same
 * base: the base and the second delta give the table at its begin. */
static void test_cancelled_then_delta(void **state)
{
    (void)state;
    struct kind k = {0};
    struct sp_table t;
    table_open(&t, k, 0, GROUPS);
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    fill(&t, m, KEYS, 1000);
    struct stream chain[2] = {{0}};
    int64_t v1 = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v1 > 0);
    read_all(&t, &chain[0], 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v1);

    for (uint32_t id = 0; id < KEYS; id += 3) { /* deletes and updates */
        sp_table_delete(&t, t_find(&t, id, 0));
        m->v[id][0] = 0;
    }
    int64_t v2 = sp_table_snapshot_begin(&t, false, (uint32_t)v1);
    assert_true(v2 > v1);
    uint8_t buf[4096];
    assert_true(sp_table_snapshot_read(&t, buf, sizeof(buf)) > 0);
    for (uint32_t id = 1; id < KEYS; id += 3) {
        value_put(sp_table_value(&t, t_find(&t, id, 0)), 7, id);
        m->v[id][0] = 7;
    }
    sp_table_snapshot_cancel(&t);
    assert_int_equal(sp_table_snapshot_read(&t, buf, sizeof(buf)), 0);
    for (uint32_t id = 0; id < KEYS; id += 6) { /* some come back */
        bool created;
        value_put(sp_table_value(&t, t_upsert(&t, id, 0, &created)), 9, id);
        m->v[id][0] = 9;
    }
    int64_t v3 = sp_table_snapshot_begin(&t, false, (uint32_t)v1);
    assert_true(v3 > v2);
    read_all(&t, &chain[1], 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v3);
    check_restore(k, chain, 2, m, 0, GROUPS);
    /* A delta needs a base older than it. */
    assert_int_equal(sp_table_snapshot_begin(&t, false, 0), -EINVAL);
    assert_int_equal(sp_table_snapshot_begin(&t, false, (uint32_t)v3 + 5), -EINVAL);
    stream_free(&chain[0]);
    stream_free(&chain[1]);
    free(m);
    sp_table_deinit(&t);
}

/* Every key group's open segment emptied and refilled while the snapshot
 * is being streamed: the snapshot holds the old entries only. */
static void test_segment_reused_during_snapshot(void **state)
{
    (void)state;
    struct kind k = {0};
    struct sp_table t;
    table_open(&t, k, 0, GROUPS);
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    fill(&t, m, KEYS, 100);
    struct model *old = calloc(1, sizeof(*old));
    assert_non_null(old);
    memcpy(old, m, sizeof(*m));
    int64_t v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    struct stream s = {0};
    uint8_t buf[512];
    int64_t n = sp_table_snapshot_read(&t, buf, sizeof(buf)); /* mid-segment */
    assert_true(n > 0);
    stream_append(&s, buf, (size_t)n);
    for (uint32_t id = 0; id < KEYS; id++)
        sp_table_delete(&t, t_find(&t, id, 0));
    assert_int_equal(sp_table_count(&t), 0);
    memset(m, 0, sizeof(*m));
    fill(&t, m, KEYS, 50000);
    read_all(&t, &s, 512);
    check_restore(k, &s, 1, old, 0, GROUPS);
    sp_table_snapshot_complete(&t, (uint32_t)v);
    stream_free(&s);
    free(m);
    free(old);
    sp_table_deinit(&t);
}

/* Truncated, corrupted, foreign and random streams: -EBADMSG, no change. */
static void test_bad_streams(void **state)
{
    (void)state;
    struct kind k = {0};
    struct sp_table t;
    table_open(&t, k, 0, GROUPS);
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    fill(&t, m, 200, 1);
    assert_true(sp_table_snapshot_begin(&t, true, 0) > 0);
    struct stream s = {0};
    read_all(&t, &s, 65536);
    struct sp_table r;
    table_open(&r, k, 0, GROUPS);
    for (size_t len = 0; len < s.len; len += 1 + len / 16)
        assert_int_equal(sp_table_restore(&r, s.data, len), -EBADMSG);
    assert_int_equal(sp_table_count(&r), 0);
    uint8_t *copy = malloc(s.len + 64);
    assert_non_null(copy);
    struct sp_rand rnd;
    sp_rand_seed(&rnd, 99);
    for (unsigned i = 0; i < 2000; i++) { /* one byte changed anywhere */
        memcpy(copy, s.data, s.len);
        size_t at = (size_t)sp_rand_below(&rnd, s.len);
        copy[at] ^= (uint8_t)(1 + sp_rand_below(&rnd, 255));
        assert_int_equal(sp_table_restore(&r, copy, s.len), -EBADMSG);
    }
    memcpy(copy, s.data, s.len); /* trailing bytes */
    assert_int_equal(sp_table_restore(&r, copy, s.len + 1), -EBADMSG);
    for (unsigned i = 0; i < 2000; i++) { /* garbage, some with a valid header */
        size_t len = (size_t)sp_rand_below(&rnd, s.len + 64);
        for (size_t j = 0; j < len; j++)
            copy[j] = (uint8_t)sp_rand_next(&rnd);
        if (i % 2 == 0 && len >= 24)
            memcpy(copy, s.data, 24);
        assert_int_equal(sp_table_restore(&r, copy, len), -EBADMSG);
    }
    assert_int_equal(sp_table_count(&r), 0);
    /* The single-pass restore of verified bytes: every truncation and
     * garbage is refused or stops part way, never read out of bounds (run
     * under ASan); the whole stream restores the same table. */
    for (size_t len = 0; len < s.len; len += 1 + len / 16) {
        memcpy(copy, s.data, len);
        assert_true(sp_table_restore_verified(&r, copy, len) < 0);
    }
    for (unsigned i = 0; i < 500; i++) {
        size_t len = (size_t)sp_rand_below(&rnd, s.len + 64);
        for (size_t j = 0; j < len; j++)
            copy[j] = (uint8_t)sp_rand_next(&rnd);
        if (i % 2 == 0 && len >= 24)
            memcpy(copy, s.data, 24);
        int rc = sp_table_restore_verified(&r, copy, len); /* any result, no crash */
        assert_true(rc == 0 || rc == -EBADMSG || rc == -ENOBUFS);
    }
    sp_table_deinit(&r);
    table_open(&r, k, 0, GROUPS);
    assert_int_equal(sp_table_restore_verified(&r, s.data, s.len), 0);
    assert_int_equal(sp_table_count(&r), sp_table_count(&t));
    sp_table_deinit(&r);
    /* Another value size. */
    struct sp_table_config c = {.name = "w",
                                .value_bytes = VALUE_BYTES + 8,
                                .key_group_first = 0,
                                .key_group_count = GROUPS,
                                .key_groups_total = GROUPS,
                                .budget = &budget};
    assert_int_equal(sp_table_init(&r, &c), 0);
    assert_int_equal(sp_table_restore(&r, s.data, s.len), -EBADMSG);
    sp_table_deinit(&r);
    /* And the good one still restores. */
    check_restore(k, &s, 1, m, 0, GROUPS);
    free(copy);
    stream_free(&s);
    free(m);
    sp_table_deinit(&t);
}

/* begin() on a large table holds nothing and allocates nothing (it does not
 * walk: O(1)); a table that never takes snapshots keeps no tombstones, and
 * complete() frees those that a delta no longer needs. */
static void test_begin_holds_nothing(void **state)
{
    (void)state;
    struct sp_table t;
    struct sp_table_config c = {.name = "big",
                                .value_bytes = 8,
                                .key_group_first = 0,
                                .key_group_count = GROUPS,
                                .key_groups_total = GROUPS,
                                .budget = &budget};
    assert_int_equal(sp_table_init(&t, &c), 0);
    for (uint64_t i = 0; i < 400000; i++) {
        bool created;
        int err;
        uint64_t h = sp_key_hash(&i, sizeof(i));
        struct sp_table_entry *e = sp_table_upsert(&t, h, &i, sizeof(i), 0, &created, &err);
        assert_non_null(e);
        memcpy(sp_table_value(&t, e), &i, 8);
    }
    for (uint64_t i = 0; i < 400000; i += 2) { /* deletes before any snapshot */
        uint64_t h = sp_key_hash(&i, sizeof(i));
        sp_table_delete(&t, sp_table_find(&t, h, &i, sizeof(i), 0));
    }
    assert_int_equal(sp_table_snapshot_held_bytes(&t), 0);
    uint64_t used = budget.used;
    int64_t v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    assert_int_equal(sp_table_snapshot_held_bytes(&t), 0);
    assert_int_equal(budget.used, used);
    sp_table_snapshot_cancel(&t);
    v = sp_table_snapshot_begin(&t, true, 0);
    struct stream s = {0};
    read_all(&t, &s, 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v);
    stream_free(&s);
    /* Deletes of entries older than the version: tombstones, until a
     * snapshot holding them completes. */
    for (uint64_t i = 1; i < 2001; i += 2) {
        uint64_t h = sp_key_hash(&i, sizeof(i));
        sp_table_delete(&t, sp_table_find(&t, h, &i, sizeof(i), 0));
    }
    assert_true(sp_table_snapshot_held_bytes(&t) > 0);
    int64_t v2 = sp_table_snapshot_begin(&t, false, (uint32_t)v);
    assert_true(v2 > v);
    read_all(&t, &s, 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v2);
    assert_int_equal(sp_table_snapshot_held_bytes(&t), 0);
    /* An entry created and deleted in one version needs none. */
    uint64_t i = 1u << 30;
    bool created;
    int err;
    uint64_t h = sp_key_hash(&i, sizeof(i));
    assert_non_null(sp_table_upsert(&t, h, &i, sizeof(i), 0, &created, &err));
    sp_table_delete(&t, sp_table_find(&t, h, &i, sizeof(i), 0));
    assert_int_equal(sp_table_snapshot_held_bytes(&t), 0);
    stream_free(&s);
    sp_table_deinit(&t);
}

/* Over snapshot_held_bytes_max: copy-on-write fails the snapshot (read
 * says -ENOBUFS until it is cancelled), dropped tombstones refuse the
 * deltas that would need them, and a full snapshot is still possible. */
static void test_held_bytes_limit(void **state)
{
    (void)state;
    struct sp_table t;
    struct sp_table_config c = {.name = "small",
                                .value_bytes = VALUE_BYTES,
                                .key_group_first = 0,
                                .key_group_count = GROUPS,
                                .key_groups_total = GROUPS,
                                .budget = &budget,
                                .snapshot_held_bytes_max = 16384};
    assert_int_equal(sp_table_init(&t, &c), 0);
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    fill(&t, m, KEYS, 1);
    int64_t v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    for (uint32_t id = 0; id < KEYS; id++) /* every segment copied aside */
        assert_non_null(t_find(&t, id, 0));
    uint8_t buf[4096];
    assert_int_equal(sp_table_snapshot_read(&t, buf, sizeof(buf)), -ENOBUFS);
    assert_int_equal(sp_table_snapshot_read(&t, buf, sizeof(buf)), -ENOBUFS);
    assert_int_equal(sp_table_snapshot_begin(&t, true, 0), -EBUSY);
    sp_table_snapshot_cancel(&t);
    assert_int_equal(sp_table_snapshot_held_bytes(&t), 0);
    v = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v > 0);
    struct stream s = {0};
    read_all(&t, &s, 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v);
    check_restore((struct kind){0}, &s, 1, m, 0, GROUPS);
    stream_free(&s);
    for (uint32_t id = 0; id < KEYS; id++) { /* more tombstones than fit */
        sp_table_delete(&t, t_find(&t, id, 0));
        m->v[id][0] = 0;
    }
    assert_true(sp_table_snapshot_held_bytes(&t) <= 16384);
    assert_int_equal(sp_table_snapshot_begin(&t, false, (uint32_t)v), -ENOBUFS);
    int64_t v2 = sp_table_snapshot_begin(&t, true, 0);
    assert_true(v2 > v);
    read_all(&t, &s, 65536);
    sp_table_snapshot_complete(&t, (uint32_t)v2);
    check_restore((struct kind){0}, &s, 1, m, 0, GROUPS);
    stream_free(&s);
    /* Deltas from the new base work again. */
    fill(&t, m, 10, 5);
    int64_t v3 = sp_table_snapshot_begin(&t, false, (uint32_t)v2);
    assert_true(v3 > v2);
    sp_table_snapshot_cancel(&t);
    free(m);
    sp_table_deinit(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_ns_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_ns_in_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_then_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_reused_during_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_holds_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_bytes_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_spill, setup_spill, teardown_spill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
