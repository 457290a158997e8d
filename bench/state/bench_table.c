/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state table benchmarks (sp_table), one operation per iteration, on
 * the benchmark thread with a segment pool and budget of its own. Keys are
 * 8-byte integers, hashed with xxh3 (sp_key_hash) once in setup, visited in
 * a random permutation (a fresh one per pass would cost more than the
 * table), namespace 0, a 16-byte value (a count and a sum), 128 key groups
 * all owned by this table. The argument is the number of distinct keys:
 * 1,048,576 (index and entries far larger than the caches) and 1,024 (cache
 * resident).
 *  - table/upsert/K: upsert of a key already present and count++ / sum +=:
 *    the per-record path of a running aggregate in steady state.
 *  - table/insert/K: upsert into a table being filled from empty, index
 *    growth included: the first record of every key (the table is emptied
 *    and refilled every K operations; the reset is timed too, and is cheap).
 *  - table/find/K: find of a key present.
 *  - table/churn/K: delete a key's entry and upsert it again (one pair per
 *    iteration): window state that dies and is reborn; entries are appended,
 *    so this also exercises freeing and reusing whole segments.
 *  - table/upsert_spill_idle/K: table/upsert on a table with a spill
 *    attached (state/sp_spill.h) and memory to spare: what the spill costs
 *    the hot path when nothing is spilled (compare with table/upsert).
 *  - table/upsert_spilled/K: table/upsert with memory for about half the
 *    state, the rest in the spill file, keys visited in the order they were
 *    inserted (state touched in the order it was made, like sessions or
 *    windows: a segment read back serves its few hundred entries); counter
 *    reads_per_op, segments read back per upsert.
 *  - table/upsert_spilled_random/K: the same with keys visited in another
 *    random order than they were inserted in: the worst case, where about
 *    every other upsert reads a 32 KiB segment back and writes one out.
 * Counters: mem_bytes_per_key, the budget's high-water mark over the keys.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_keygroup.h"
#include "sp_log.h"
#include "sp_mem.h"
#include "sp_table.h"

#define TABLE_POOL_BYTES (256u << 20)
#define TABLE_KEY_GROUPS 128u

struct table_value {
    int64_t count;
    int64_t sum;
};

struct table_key {
    uint64_t key;
    uint64_t hash;
};

struct table_bench {
    struct sp_segment_pool pool;
    struct sp_budget budget;
    struct sp_table table;
    bool table_live;
    struct sp_spill spill;
    bool spill_live;
    struct table_key *keys; /* [count], in visiting order */
    uint64_t count;
    uint64_t next; /* position in keys */
    uint64_t ops;  /* operations run (spill counters) */
    uint64_t sink;
};

static int table_open(struct table_bench *b)
{
    struct sp_table_config c = {
        .name = "bench",
        .value_bytes = sizeof(struct table_value),
        .key_group_first = 0,
        .key_group_count = TABLE_KEY_GROUPS,
        .key_groups_total = TABLE_KEY_GROUPS,
        .budget = &b->budget,
        .spill = b->spill_live ? &b->spill : NULL,
    };
    int rc = sp_table_init(&b->table, &c);
    b->table_live = rc == 0;
    return rc;
}

static void table_bench_free(struct table_bench *b)
{
    if (b->table_live)
        sp_table_deinit(&b->table);
    if (b->spill_live)
        sp_spill_deinit(&b->spill);
    if (b->pool.segment_count != 0)
        sp_segment_pool_deinit(&b->pool);
    free(b->keys);
    free(b);
}

/* xorshift64*: cheap and good enough for a shuffle. */
static uint64_t rand_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* An empty table and K keys in random order; with `spill_segments`, a
 * spill and a budget of that many segments (UINT32_MAX: the whole pool). */
static struct table_bench *table_bench_new_spill(int64_t arg, uint32_t spill_segments)
{
    struct table_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->count = (uint64_t)(arg > 0 ? arg : 1024);
    b->keys = malloc(b->count * sizeof(*b->keys));
    int rc = b->keys == NULL
                 ? -ENOMEM
                 : sp_segment_pool_init(&b->pool, TABLE_POOL_BYTES, SP_SEGMENT_BYTES_DEFAULT);
    if (rc < 0) {
        sp_error("table bench: %s", strerror(-rc));
        table_bench_free(b);
        return NULL;
    }
    sp_budget_init(&b->budget, &b->pool, "bench.table", b->pool.segment_count);
    if (spill_segments != 0) {
        if (spill_segments != UINT32_MAX)
            sp_budget_set_limit(&b->budget, spill_segments);
        const char *dir = getenv("TMPDIR");
        struct sp_spill_config sc = {.dir = dir != NULL && *dir ? dir : "/var/tmp"};
        if ((rc = sp_spill_init(&b->spill, &b->budget, &sc)) < 0) {
            sp_error("table bench: sp_spill_init: %s", strerror(-rc));
            table_bench_free(b);
            return NULL;
        }
        b->spill_live = true;
    }
    if ((rc = table_open(b)) < 0) {
        sp_error("table bench: sp_table_init: %s", strerror(-rc));
        table_bench_free(b);
        return NULL;
    }
    for (uint64_t i = 0; i < b->count; i++)
        b->keys[i].key = i * 0x9E3779B97F4A7C15ull; /* distinct, not sequential */
    uint64_t seed = 0x5EED5EEDull;
    for (uint64_t i = b->count - 1; i > 0; i--) {
        uint64_t j = rand_next(&seed) % (i + 1);
        uint64_t t = b->keys[i].key;
        b->keys[i].key = b->keys[j].key;
        b->keys[j].key = t;
    }
    for (uint64_t i = 0; i < b->count; i++)
        b->keys[i].hash = sp_key_hash(&b->keys[i].key, sizeof(b->keys[i].key));
    return b;
}

static struct table_bench *table_bench_new(int64_t arg)
{
    return table_bench_new_spill(arg, 0);
}

static struct sp_table_entry *upsert_key(struct table_bench *b, const struct table_key *k)
{
    bool created;
    int err;
    struct sp_table_entry *e =
        sp_table_upsert(&b->table, k->hash, &k->key, sizeof(k->key), 0, &created, &err);
    if (SP_UNLIKELY(e == NULL)) {
        sp_error("table bench: upsert: %s", strerror(-err));
        abort();
    }
    return e;
}

static void *table_setup_full(int64_t arg)
{
    struct table_bench *b = table_bench_new(arg);
    if (b == NULL)
        return NULL;
    for (uint64_t i = 0; i < b->count; i++)
        upsert_key(b, &b->keys[i]);
    return b;
}

/* Full, on a table with a spill: memory to spare (`half` false) or for
 * about half its entries (the index stays in memory). */
static void *table_setup_spill(int64_t arg, bool half)
{
    uint64_t keys = (uint64_t)(arg > 0 ? arg : 1024);
    /* An entry is 64 bytes; the index 8 bytes a slot at 3/4 load at most,
     * twice that while it doubles. */
    uint64_t seg = SP_SEGMENT_BYTES_DEFAULT;
    uint64_t slots = 1024;
    while (slots / 4 * 3 < keys)
        slots *= 2;
    uint64_t index_segs = (slots * 8 * 3 / 2 + seg - 1) / seg;
    uint64_t entry_segs = (keys * 64 + seg - 1) / seg;
    uint32_t limit = half ? (uint32_t)(index_segs + entry_segs / 2 + TABLE_KEY_GROUPS) : UINT32_MAX;
    struct table_bench *b = table_bench_new_spill(arg, limit);
    if (b == NULL)
        return NULL;
    for (uint64_t i = 0; i < b->count; i++) {
        upsert_key(b, &b->keys[i]);
        sp_table_unpin(&b->table);
    }
    b->spill.stats.segments_in = 0;
    return b;
}

static void *table_setup_spill_idle(int64_t arg)
{
    return table_setup_spill(arg, false);
}

static void *table_setup_spilled(int64_t arg)
{
    return table_setup_spill(arg, true);
}

static void *table_setup_spilled_random(int64_t arg)
{
    struct table_bench *b = table_setup_spill(arg, true);
    if (b == NULL)
        return NULL;
    uint64_t seed = 0xC0FFEEull;
    for (uint64_t i = b->count - 1; i > 0; i--) {
        uint64_t j = rand_next(&seed) % (i + 1);
        struct table_key t = b->keys[i];
        b->keys[i] = b->keys[j];
        b->keys[j] = t;
    }
    return b;
}

static void *table_setup_empty(int64_t arg)
{
    return table_bench_new(arg);
}

static inline const struct table_key *next_key(struct table_bench *b)
{
    const struct table_key *k = &b->keys[b->next];
    if (++b->next == b->count)
        b->next = 0;
    return k;
}

static double upsert_run(void *state, uint64_t iterations)
{
    struct table_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        const struct table_key *k = next_key(b);
        struct table_value *v = sp_table_value(&b->table, upsert_key(b, k));
        v->count++;
        v->sum += (int64_t)i;
    }
    return 0;
}

/* upsert_run for spilling tables: the operator's unpin after each record. */
static double upsert_unpin_run(void *state, uint64_t iterations)
{
    struct table_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        const struct table_key *k = next_key(b);
        struct table_value *v = sp_table_value(&b->table, upsert_key(b, k));
        v->count++;
        v->sum += (int64_t)i;
        sp_table_unpin(&b->table);
    }
    b->ops += iterations;
    return 0;
}

static unsigned table_counters(void *state, struct sp_bench_counter *out);

static unsigned spill_counters(void *state, struct sp_bench_counter *out)
{
    struct table_bench *b = state;
    unsigned n = table_counters(state, out);
    double ops = b->ops > 0 ? (double)b->ops : 1;
    out[n++] = (struct sp_bench_counter){"reads_per_op", (double)b->spill.stats.segments_in / ops};
    out[n++] = (struct sp_bench_counter){"spilled_bytes",
                                         (double)b->spill.stats.spilled * b->pool.segment_bytes};
    return n;
}

static double insert_run(void *state, uint64_t iterations)
{
    struct table_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        if (b->next == 0 && sp_table_count(&b->table) != 0) {
            sp_table_deinit(&b->table);
            b->table_live = false;
            if (table_open(b) < 0)
                abort();
        }
        const struct table_key *k = next_key(b);
        struct table_value *v = sp_table_value(&b->table, upsert_key(b, k));
        v->count++;
    }
    return 0;
}

static double find_run(void *state, uint64_t iterations)
{
    struct table_bench *b = state;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        const struct table_key *k = next_key(b);
        struct sp_table_entry *e = sp_table_find(&b->table, k->hash, &k->key, sizeof(k->key), 0);
        acc += ((struct table_value *)sp_table_value(&b->table, e))->count;
    }
    b->sink += acc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static double churn_run(void *state, uint64_t iterations)
{
    struct table_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        const struct table_key *k = next_key(b);
        struct sp_table_entry *e = sp_table_find(&b->table, k->hash, &k->key, sizeof(k->key), 0);
        sp_table_delete(&b->table, e);
        struct table_value *v = sp_table_value(&b->table, upsert_key(b, k));
        v->count = 1;
    }
    return 0;
}

static unsigned table_counters(void *state, struct sp_bench_counter *out)
{
    struct table_bench *b = state;
    double bytes = (double)b->budget.used_max * b->pool.segment_bytes;
    out[0] = (struct sp_bench_counter){"mem_bytes_per_key", bytes / (double)b->count};
    return 1;
}

static void table_teardown(void *state)
{
    table_bench_free(state);
}

const struct sp_bench_case sp_bench_table_cases[] = {
    {.name = "table/upsert",
     .args = {1u << 20, 1024},
     .run_batch = 1u << 16,
     .setup = table_setup_full,
     .run = upsert_run,
     .counters = table_counters,
     .teardown = table_teardown},
    {.name = "table/insert",
     .args = {1u << 20, 1024},
     .run_batch = 1u << 16,
     .setup = table_setup_empty,
     .run = insert_run,
     .counters = table_counters,
     .teardown = table_teardown},
    {.name = "table/find",
     .args = {1u << 20, 1024},
     .run_batch = 1u << 16,
     .setup = table_setup_full,
     .run = find_run,
     .counters = table_counters,
     .teardown = table_teardown},
    {.name = "table/churn",
     .args = {1u << 20, 1024},
     .run_batch = 1u << 16,
     .setup = table_setup_full,
     .run = churn_run,
     .counters = table_counters,
     .teardown = table_teardown},
    {.name = "table/upsert_spill_idle",
     .args = {1u << 20, 1024},
     .run_batch = 1u << 16,
     .setup = table_setup_spill_idle,
     .run = upsert_unpin_run,
     .counters = spill_counters,
     .teardown = table_teardown},
    {.name = "table/upsert_spilled",
     .args = {1u << 20},
     .run_batch = 1u << 14,
     .setup = table_setup_spilled,
     .run = upsert_unpin_run,
     .counters = spill_counters,
     .teardown = table_teardown},
    {.name = "table/upsert_spilled_random",
     .args = {1u << 20},
     .run_batch = 1u << 10,
     .setup = table_setup_spilled_random,
     .run = upsert_unpin_run,
     .counters = spill_counters,
     .teardown = table_teardown},
    {.name = NULL},
};
