/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state table snapshot benchmarks (sp_table.h, "Snapshots"), on the
 * benchmark thread with a segment pool and budget of their own. The table is
 * the one of bench_table.c: 1,048,576 8-byte keys (the argument), namespace
 * 0, a 16-byte value, 128 key groups, filled once in setup.
 *  - snapshot/begin/K: sp_table_snapshot_begin() then cancel: what a
 *    checkpoint barrier costs the operator (O(1): no walk, no allocation).
 *  - snapshot/read/K: one full snapshot streamed out in 256 KiB reads with
 *    nothing else running (manual time); counter stream_MB_per_s and
 *    entries/s as items.
 *  - snapshot/upsert_idle/K: table/upsert's loop on a table that has taken
 *    (and completed) a snapshot, none active: the per-write version stamps
 *    and the copy-on-write test, to set beside table/upsert/K (a table that
 *    never took one) in the same run.
 *  - snapshot/upsert_streaming/K: the same upserts while full snapshots are
 *    streamed back to back, one 256 KiB read every 2,048 upserts: copy-on-
 *    write plus the reads, per upsert.
 *  - snapshot/restore/K: the table's full snapshot (held in memory) applied
 *    to a fresh table with sp_table_restore_verified, as a checkpoint's
 *    restore applies a verified segment (manual time: the apply alone, not
 *    the fresh table's teardown); counter stream_MB_per_s.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_bench.h"
#include "sp_keygroup.h"
#include "sp_log.h"
#include "sp_mem.h"
#include "sp_table.h"

#define SNAP_POOL_BYTES (512u << 20)
#define SNAP_KEY_GROUPS 128u
#define SNAP_READ_BYTES (256u << 10)
#define SNAP_UPSERTS_PER_READ 2048u

struct snap_value {
    int64_t count;
    int64_t sum;
};

struct snap_key {
    uint64_t key;
    uint64_t hash;
};

struct snap_bench {
    struct sp_segment_pool pool;
    struct sp_budget budget;
    struct sp_table table;
    bool table_live;
    struct snap_key *keys; /* [count], in visiting order */
    uint64_t count;
    uint64_t next;
    uint8_t *buf;    /* [SNAP_READ_BYTES] */
    uint8_t *stream; /* snapshot/restore: a full snapshot */
    size_t stream_len;
    uint64_t stream_bytes;
    double stream_seconds;
    uint64_t snapshots;
    uint64_t held_bytes_max; /* copy-on-write, sampled at each read */
};

static void snap_bench_free(struct snap_bench *b)
{
    if (b->table_live)
        sp_table_deinit(&b->table);
    if (b->pool.segment_count != 0)
        sp_segment_pool_deinit(&b->pool);
    free(b->keys);
    free(b->buf);
    free(b->stream);
    free(b);
}

static uint64_t rand_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct sp_table_entry *upsert_key(struct snap_bench *b, const struct snap_key *k)
{
    bool created;
    int err;
    struct sp_table_entry *e =
        sp_table_upsert(&b->table, k->hash, &k->key, sizeof(k->key), 0, &created, &err);
    if (SP_UNLIKELY(e == NULL)) {
        sp_error("snapshot bench: upsert: %s", strerror(-err));
        abort();
    }
    return e;
}

/* Streams the snapshot begun to its end; the bytes, or -errno. */
static int64_t stream_all(struct snap_bench *b)
{
    int64_t total = 0;
    for (;;) {
        int64_t n = sp_table_snapshot_read(&b->table, b->buf, SNAP_READ_BYTES);
        if (n < 0)
            return n;
        if (n == 0)
            return total;
        total += n;
    }
}

/* A full table of K keys, visited in random order. */
static void *snap_setup(int64_t arg)
{
    struct snap_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->count = (uint64_t)(arg > 0 ? arg : 1024);
    b->keys = malloc(b->count * sizeof(*b->keys));
    b->buf = malloc(SNAP_READ_BYTES);
    int rc = b->keys == NULL || b->buf == NULL
                 ? -ENOMEM
                 : sp_segment_pool_init(&b->pool, SNAP_POOL_BYTES, SP_SEGMENT_BYTES_DEFAULT);
    if (rc < 0) {
        sp_error("snapshot bench: %s", strerror(-rc));
        snap_bench_free(b);
        return NULL;
    }
    sp_budget_init(&b->budget, &b->pool, "bench.snapshot", b->pool.segment_count);
    struct sp_table_config c = {
        .name = "bench",
        .value_bytes = sizeof(struct snap_value),
        .key_group_first = 0,
        .key_group_count = SNAP_KEY_GROUPS,
        .key_groups_total = SNAP_KEY_GROUPS,
        .budget = &b->budget,
    };
    if ((rc = sp_table_init(&b->table, &c)) < 0) {
        sp_error("snapshot bench: sp_table_init: %s", strerror(-rc));
        snap_bench_free(b);
        return NULL;
    }
    b->table_live = true;
    for (uint64_t i = 0; i < b->count; i++)
        b->keys[i].key = i * 0x9E3779B97F4A7C15ull;
    uint64_t seed = 0x5EED5EEDull;
    for (uint64_t i = b->count - 1; i > 0; i--) {
        uint64_t j = rand_next(&seed) % (i + 1);
        uint64_t t = b->keys[i].key;
        b->keys[i].key = b->keys[j].key;
        b->keys[j].key = t;
    }
    for (uint64_t i = 0; i < b->count; i++) {
        b->keys[i].hash = sp_key_hash(&b->keys[i].key, sizeof(b->keys[i].key));
        upsert_key(b, &b->keys[i]);
    }
    return b;
}

/* The same, after one full snapshot taken and completed. */
static void *snap_setup_taken(int64_t arg)
{
    struct snap_bench *b = snap_setup(arg);
    if (b == NULL)
        return NULL;
    int64_t v = sp_table_snapshot_begin(&b->table, true, 0);
    if (v < 0 || stream_all(b) < 0) {
        sp_error("snapshot bench: the first snapshot failed");
        snap_bench_free(b);
        return NULL;
    }
    sp_table_snapshot_complete(&b->table, (uint32_t)v);
    return b;
}

/* A full table's snapshot held in memory; the table itself goes. */
static void *snap_setup_stream(int64_t arg)
{
    struct snap_bench *b = snap_setup(arg);
    if (b == NULL)
        return NULL;
    size_t cap = 1u << 20;
    b->stream = malloc(cap);
    int64_t v = sp_table_snapshot_begin(&b->table, true, 0);
    for (int64_t n = 1; b->stream != NULL && v > 0 && n > 0;) {
        if (b->stream_len + SNAP_READ_BYTES > cap) {
            uint8_t *grown = realloc(b->stream, cap * 2);
            if (grown == NULL)
                break;
            b->stream = grown;
            cap *= 2;
        }
        n = sp_table_snapshot_read(&b->table, b->stream + b->stream_len, SNAP_READ_BYTES);
        if (n < 0)
            break;
        b->stream_len += (size_t)n;
        if (n == 0) {
            sp_table_deinit(&b->table);
            b->table_live = false;
            return b;
        }
    }
    sp_error("snapshot bench: the snapshot to restore failed");
    snap_bench_free(b);
    return NULL;
}

static double restore_run(void *state, uint64_t iterations)
{
    struct snap_bench *b = state;
    double spent = 0;
    struct sp_table_config c = {
        .name = "bench",
        .value_bytes = sizeof(struct snap_value),
        .key_group_first = 0,
        .key_group_count = SNAP_KEY_GROUPS,
        .key_groups_total = SNAP_KEY_GROUPS,
        .budget = &b->budget,
    };
    for (uint64_t i = 0; i < iterations; i++) {
        if (sp_table_init(&b->table, &c) < 0)
            return -1;
        double t0 = now_s();
        int rc = sp_table_restore_verified(&b->table, b->stream, b->stream_len);
        spent += now_s() - t0;
        if (rc < 0 || sp_table_count(&b->table) != b->count) {
            sp_error("snapshot bench: restore: %s", strerror(-rc));
            sp_table_deinit(&b->table);
            return -1;
        }
        sp_table_deinit(&b->table);
        b->stream_bytes += b->stream_len;
    }
    b->stream_seconds += spent;
    return spent;
}

static double begin_run(void *state, uint64_t iterations)
{
    struct snap_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        if (sp_table_snapshot_begin(&b->table, true, 0) < 0)
            abort();
        sp_table_snapshot_cancel(&b->table);
    }
    return 0;
}

static double read_run(void *state, uint64_t iterations)
{
    struct snap_bench *b = state;
    double t0 = now_s();
    for (uint64_t i = 0; i < iterations; i++) {
        if (sp_table_snapshot_begin(&b->table, true, 0) < 0)
            abort();
        int64_t n = stream_all(b);
        if (n < 0) {
            sp_error("snapshot bench: read: %s", strerror((int)-n));
            return -1;
        }
        b->stream_bytes += (uint64_t)n;
        b->snapshots++;
    }
    double s = now_s() - t0;
    b->stream_seconds += s;
    return s;
}

static inline const struct snap_key *next_key(struct snap_bench *b)
{
    const struct snap_key *k = &b->keys[b->next];
    if (++b->next == b->count)
        b->next = 0;
    return k;
}

static double upsert_run(void *state, uint64_t iterations)
{
    struct snap_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        struct snap_value *v = sp_table_value(&b->table, upsert_key(b, next_key(b)));
        v->count++;
        v->sum += (int64_t)i;
    }
    return 0;
}

static double upsert_streaming_run(void *state, uint64_t iterations)
{
    struct snap_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        if (i % SNAP_UPSERTS_PER_READ == 0) {
            if (!b->table.snap.active && sp_table_snapshot_begin(&b->table, true, 0) < 0)
                abort();
            int64_t n = sp_table_snapshot_read(&b->table, b->buf, SNAP_READ_BYTES);
            if (n < 0)
                abort();
            b->stream_bytes += (uint64_t)n;
            b->snapshots += n == 0;
            uint64_t held = sp_table_snapshot_held_bytes(&b->table);
            if (held > b->held_bytes_max)
                b->held_bytes_max = held;
        }
        struct snap_value *v = sp_table_value(&b->table, upsert_key(b, next_key(b)));
        v->count++;
        v->sum += (int64_t)i;
    }
    return 0;
}

static unsigned snap_counters(void *state, struct sp_bench_counter *out)
{
    struct snap_bench *b = state;
    unsigned n = 0;
    out[n++] = (struct sp_bench_counter){"snapshots", (double)b->snapshots};
    if (b->stream_seconds > 0)
        out[n++] = (struct sp_bench_counter){"stream_MB_per_s",
                                             (double)b->stream_bytes / b->stream_seconds / 1e6};
    out[n++] = (struct sp_bench_counter){"held_MB_max", (double)b->held_bytes_max / 1e6};
    return n;
}

static void snap_teardown(void *state)
{
    snap_bench_free(state);
}

const struct sp_bench_case sp_bench_snapshot_cases[] = {
    {.name = "snapshot/begin",
     .args = {1u << 20},
     .run_batch = 1u << 12,
     .setup = snap_setup,
     .run = begin_run,
     .counters = snap_counters,
     .teardown = snap_teardown},
    {.name = "snapshot/read",
     .args = {1u << 20},
     .items_per_iteration = 1u << 20,
     .manual_time = 1,
     .fixed_iterations = 5,
     .setup = snap_setup,
     .run = read_run,
     .counters = snap_counters,
     .teardown = snap_teardown},
    {.name = "snapshot/restore",
     .args = {1u << 20},
     .items_per_iteration = 1u << 20,
     .manual_time = 1,
     .fixed_iterations = 5,
     .setup = snap_setup_stream,
     .run = restore_run,
     .counters = snap_counters,
     .teardown = snap_teardown},
    {.name = "snapshot/upsert_idle",
     .args = {1u << 20},
     .run_batch = 1u << 16,
     .setup = snap_setup_taken,
     .run = upsert_run,
     .counters = snap_counters,
     .teardown = snap_teardown},
    {.name = "snapshot/upsert_streaming",
     .args = {1u << 20},
     .run_batch = 1u << 16,
     .setup = snap_setup_taken,
     .run = upsert_streaming_run,
     .counters = snap_counters,
     .teardown = snap_teardown},
    {.name = NULL},
};
