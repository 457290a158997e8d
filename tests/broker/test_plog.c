/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The partition log on a real shard with real files: appends of v2 batches
 * (several records, several batches per append, pipelined) across segment
 * rolls; reads from every offset with small and large byte limits, at a
 * segment boundary, at the end (empty) and past it (-ERANGE); reopening;
 * a torn and a corrupted tail cut off by recovery; flush policies;
 * backpressure; a full disk (a 1 MiB tmpfs) reported as -ENOSPC with the
 * log still consistent; look-ups by time (by batch, and by record with
 * compressed batches and the largest timestamp); DeleteRecords; retention by
 * bytes and by time; compaction (latest per key at its offset, tombstones,
 * compressed batches, a null key refused, a read in flight across the
 * rewrite, reopening, a crash's leftovers).
 *
 * Everything the log does runs on the shard; checks there only record the
 * first failure (file line and condition), and the test asserts on it after
 * the runtime returned: cmocka's asserts must not run on a shard thread.
 * Each scenario is a step function the driver calls until it says WAIT (a
 * callback will resume it through a task) or DONE. Nothing depends on
 * machine speed: no sleeps and no timing checks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../runtime/rt_test.h"
#include "sp_plog.h"
#include "sp_record.h"

/* ---- The model: every batch the log holds, as it should read back ---- */

#define MODEL_MAX 4096u

struct mbatch {
    int64_t base;
    int64_t last;
    int64_t max_ts;
    uint32_t size;
    uint8_t *bytes; /* base offset rewritten to `base` */
};

static struct mbatch model[MODEL_MAX];
static uint32_t model_count;

static void model_reset(void)
{
    for (uint32_t i = 0; i < model_count; i++)
        free(model[i].bytes);
    model_count = 0;
}

/* The model batch starting at `base`, or NULL. */
static struct mbatch *model_find(int64_t base)
{
    uint32_t lo = 0, hi = model_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (model[mid].base < base)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < model_count && model[lo].base == base ? &model[lo] : NULL;
}

/* The model batch holding `offset`, or NULL. */
static struct mbatch *model_holding(int64_t offset)
{
    for (uint32_t i = 0; i < model_count; i++)
        if (model[i].base <= offset && offset <= model[i].last)
            return &model[i];
    return NULL;
}

/* Drops model batches at or after `offset` (recovery cut them off). */
static void model_truncate(int64_t offset)
{
    while (model_count > 0 && model[model_count - 1].base >= offset)
        free(model[--model_count].bytes);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* ---- Batches ---- */

static uint32_t value_seed;

/*
 * Builds a v2 batch of `n` records with timestamps ts0..ts0+n-1 and values
 * of `value_len` bytes into `buf`; returns its size.
 */
static uint32_t build_batch(uint8_t *buf, size_t cap, unsigned n, int64_t ts0, uint32_t value_len)
{
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.base_offset = 12345; /* the log rewrites it */
    struct sp_record_builder b;
    if (sp_record_builder_init(&b, buf, cap, &c) != 0)
        abort();
    uint8_t value[16384];
    SP_ASSERT(value_len <= sizeof(value));
    for (unsigned i = 0; i < n; i++) {
        for (uint32_t j = 0; j < value_len; j++)
            value[j] = (uint8_t)(value_seed * 31 + j);
        value_seed++;
        char key[16];
        int key_len = snprintf(key, sizeof(key), "k%u", value_seed);
        struct sp_record_input r = {
            .offset_delta = (int32_t)i,
            .timestamp = ts0 + i,
            .key = key,
            .key_len = key_len,
            .value = value,
            .value_len = (int32_t)value_len,
        };
        if (sp_record_builder_append(&b, &r) != 0)
            abort();
    }
    size_t size = 0;
    if (sp_record_builder_finish(&b, NULL, &size) != 0)
        abort();
    return (uint32_t)size;
}

/* ---- Scenarios ---- */

enum { NEXT = 0, WAIT = 1, DONE = 2 };

#define SLOTS 16
#define APPEND_BYTES_MAX (64u * 1024u)

struct scen;

/* One operation's result; ctx of its callback. */
struct slot {
    struct scen *s;
    bool done;
    int err;
    int64_t offset;
    /* for appends: what was sent, to enter in the model on success */
    uint8_t bytes[APPEND_BYTES_MAX];
    uint32_t len;
    /* for reads */
    int64_t read_offset;
    uint32_t max_bytes;
    uint32_t read_len;
};

struct scen {
    int (*fn)(struct scen *s, int step);
    int step;
    struct sp_shard *shard;
    struct sp_plog *log;
    struct sp_plog_config config;
    char dir[128];
    struct sp_task task;
    bool task_posted;
    bool finished;
    unsigned pending;
    int fail_line;
    char fail_what[200];
    struct slot slots[SLOTS];
    /* a sweep of reads */
    int64_t cursor;
    uint32_t sweep_max_bytes;
    unsigned reads_done;
    struct sp_timer timer;
    /* free-form per scenario */
    int64_t v[16];
};

static void scen_fail(struct scen *s, int line, const char *what)
{
    if (s->fail_line == 0) {
        s->fail_line = line;
        snprintf(s->fail_what, sizeof(s->fail_what), "%s", what);
    }
}

#define CHECK(s, cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            scen_fail(s, __LINE__, #cond);                                                         \
            return DONE;                                                                           \
        }                                                                                          \
    } while (0)

/* In callbacks, which return nothing. */
#define CHECK_CB(s, cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            scen_fail(s, __LINE__, #cond);                                                         \
    } while (0)

static void scen_finish(struct scen *s)
{
    s->finished = true;
    if (s->log && s->pending == 0) {
        sp_plog_close(s->log);
        s->log = NULL;
    }
    sp_runtime_stop(s->shard->runtime);
}

static void scen_run(struct scen *s)
{
    while (!s->finished) {
        int r = s->fn(s, s->step++);
        if (r == DONE || s->fail_line != 0) {
            scen_finish(s);
            return;
        }
        if (r == WAIT && s->pending > 0)
            return;
    }
}

static void scen_task(struct sp_task *task, struct sp_shard *shard)
{
    struct scen *s = SP_CONTAINER_OF(task, struct scen, task);
    (void)shard;
    s->task_posted = false;
    scen_run(s);
}

/* A callback finished: resume the scenario from a task once nothing is pending. */
static void scen_resume(struct scen *s)
{
    SP_ASSERT(s->pending > 0);
    if (--s->pending == 0 && !s->task_posted && !s->finished) {
        s->task_posted = true;
        sp_shard_post(s->shard, &s->task, scen_task);
    }
}

static void scen_start(struct sp_shard *shard, void *ctx)
{
    struct scen *s = ctx;
    s->shard = shard;
    scen_run(s);
}

/* Runs the scenario on one shard; asserts (here, off the shard) that nothing failed. */
static void scen_exec(struct scen *s, int (*fn)(struct scen *, int))
{
    s->fn = fn;
    s->step = 0;
    s->finished = false;
    s->pending = 0;
    s->log = NULL;
    struct sp_runtime_config config;
    rt_test_config(&config, 1, scen_start, s);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
    if (s->fail_line != 0)
        fail_msg("line %d: %s", s->fail_line, s->fail_what);
    assert_null(s->log);
}

static struct scen *scen_new(const char *name)
{
    struct scen *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    snprintf(s->dir, sizeof(s->dir), "/tmp/spate-test-plog-%d-%s", (int)getpid(), name);
    sp_plog_config_default(&s->config, s->dir);
    model_reset();
    value_seed = 1;
    return s;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void scen_free(struct scen *s)
{
    nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(s);
    model_reset();
}

/* ---- Operations (each callback records into its slot) ---- */

static void append_cb(void *ctx, int err, int64_t offset)
{
    struct slot *sl = ctx;
    struct scen *s = sl->s;
    CHECK_CB(s, !sl->done);
    sl->done = true;
    sl->err = err;
    sl->offset = offset;
    if (err == 0 && sl->len > 0) {
        /* Enter every batch of the append in the model, as the log numbered them. */
        int64_t next = offset;
        for (uint32_t pos = 0; pos < sl->len;) {
            struct sp_record_batch b;
            CHECK_CB(s, sp_record_batch_parse(sl->bytes + pos, sl->len - pos, &b) == 0);
            CHECK_CB(s, model_count < MODEL_MAX);
            CHECK_CB(s, model_count == 0 || model[model_count - 1].last + 1 == next);
            struct mbatch *m = &model[model_count++];
            m->base = next;
            m->last = next + b.last_offset_delta;
            m->max_ts = b.max_timestamp;
            m->size = (uint32_t)b.size;
            m->bytes = malloc(b.size);
            memcpy(m->bytes, sl->bytes + pos, b.size);
            put_be64(m->bytes, (uint64_t)next);
            next = m->last + 1;
            pos += (uint32_t)b.size;
        }
    }
    scen_resume(s);
}

/* Queues an append of the slot's bytes; the immediate return code. */
static int issue_append(struct scen *s, unsigned i)
{
    struct slot *sl = &s->slots[i];
    sl->s = s;
    sl->done = false;
    int ret = sp_plog_append(s->log, sl->bytes, sl->len, append_cb, sl);
    if (ret == 0)
        s->pending++;
    return ret;
}

/* Fills slot i with `batches` batches of `n` records each. */
static void fill_slot(struct scen *s, unsigned i, unsigned batches, unsigned n, int64_t ts0,
                      uint32_t value_len)
{
    struct slot *sl = &s->slots[i];
    sl->len = 0;
    for (unsigned b = 0; b < batches; b++)
        sl->len += build_batch(sl->bytes + sl->len, APPEND_BYTES_MAX - sl->len, n,
                               ts0 + (int64_t)b * 10, value_len);
}

static void flush_cb(void *ctx, int err, int64_t offset)
{
    struct slot *sl = ctx;
    sl->done = true;
    sl->err = err;
    sl->offset = offset;
    scen_resume(sl->s);
}

static int issue_flush(struct scen *s, unsigned i)
{
    struct slot *sl = &s->slots[i];
    sl->s = s;
    sl->done = false;
    int ret = sp_plog_flush(s->log, flush_cb, sl);
    if (ret == 0)
        s->pending++;
    return ret;
}

static bool file_exists(const char *dir, int64_t base, const char *ext)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%020" PRId64 "%s", dir, base, ext);
    return access(path, F_OK) == 0;
}

/* Checks a read's bytes against the model. */
static void verify_read(struct scen *s, struct slot *sl, const uint8_t *data, uint32_t len)
{
    int64_t stable = sp_plog_stable_end(s->log);
    if (sl->read_offset >= stable) {
        CHECK_CB(s, len == 0);
        return;
    }
    CHECK_CB(s, len > 0);
    uint32_t pos = 0, count = 0;
    int64_t expect = -1;
    while (pos < len && s->fail_line == 0) {
        struct sp_record_batch b;
        CHECK_CB(s, sp_record_batch_parse(data + pos, len - pos, &b) == 0);
        if (s->fail_line)
            return;
        struct mbatch *m = model_find(b.base_offset);
        CHECK_CB(s, m != NULL);
        if (!m)
            return;
        CHECK_CB(s, m->size == b.size);
        CHECK_CB(s, memcmp(m->bytes, data + pos, m->size) == 0);
        if (count == 0)
            CHECK_CB(s, m->base <= sl->read_offset && sl->read_offset <= m->last);
        else
            CHECK_CB(s, m->base == expect);
        expect = m->last + 1;
        pos += m->size;
        count++;
    }
    CHECK_CB(s, pos == len);
    CHECK_CB(s, count == 1 || len <= sl->max_bytes);
    /* Not cut short needlessly: the next batch would not fit, or is in another segment. */
    struct mbatch *next = model_find(expect);
    if (next && len + next->size <= sl->max_bytes && next->last < stable)
        CHECK_CB(s, file_exists(s->dir, next->base, ".log"));
}

static void read_cb(void *ctx, int err, const uint8_t *data, uint32_t len)
{
    struct slot *sl = ctx;
    struct scen *s = sl->s;
    sl->done = true;
    sl->err = err;
    sl->read_len = len;
    CHECK_CB(s, err == 0);
    CHECK_CB(s, (data == NULL) == (len == 0));
    if (err == 0)
        verify_read(s, sl, data, len);
    s->reads_done++;
    scen_resume(s);
}

static int issue_read(struct scen *s, unsigned i, int64_t offset, uint32_t max_bytes)
{
    struct slot *sl = &s->slots[i];
    sl->s = s;
    sl->done = false;
    sl->read_offset = offset;
    sl->max_bytes = max_bytes;
    int ret = sp_plog_read(s->log, offset, max_bytes, read_cb, sl);
    if (ret == 0)
        s->pending++;
    return ret;
}

/*
 * One step of a sweep reading every offset from the start to the stable end
 * (inclusive: the last read is empty), SLOTS reads at a time. Returns WAIT
 * while reads remain (the caller's step repeats), NEXT when done.
 */
static int sweep(struct scen *s, int step, uint32_t max_bytes)
{
    int64_t end = sp_plog_stable_end(s->log);
    if (s->cursor > end)
        return NEXT;
    for (unsigned i = 0; i < SLOTS && s->cursor <= end; i++, s->cursor++)
        if (issue_read(s, i, s->cursor, max_bytes) != 0)
            scen_fail(s, __LINE__, "issue_read in sweep");
    s->step = step; /* again */
    return WAIT;
}

static void timer_cb(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    scen_resume(ctx);
}

/* Resumes the scenario after `ms` on the shard's clock (waiting for something, never timing it). */
static void issue_sleep(struct scen *s, uint64_t ms)
{
    sp_timer_init(&s->timer, timer_cb, s);
    sp_shard_timer_arm(s->shard, &s->timer, sp_now_ns() + ms * SP_NSEC_PER_MSEC);
    s->pending++;
}

static void time_cb(void *ctx, int err, int64_t offset)
{
    struct slot *sl = ctx;
    sl->done = true;
    sl->err = err;
    sl->offset = offset;
    scen_resume(sl->s);
}

static int issue_time(struct scen *s, unsigned i, int64_t ts)
{
    struct slot *sl = &s->slots[i];
    sl->s = s;
    sl->done = false;
    sl->read_offset = ts;
    int ret = sp_plog_offset_for_time(s->log, ts, time_cb, sl);
    if (ret == 0)
        s->pending++;
    return ret;
}

/* What sp_plog_offset_for_time should say for ts, from the model. */
static int64_t model_offset_for_time(int64_t ts, int64_t start, int64_t end)
{
    for (uint32_t i = 0; i < model_count; i++)
        if (model[i].last >= start && model[i].max_ts >= ts)
            return SP_MAX(model[i].base, start);
    return end;
}

/* Segment files in the directory: base offsets sorted, and each .log's size. */
static unsigned list_segments(const char *dir, int64_t *bases, uint64_t *sizes, unsigned max)
{
    DIR *d = opendir(dir);
    unsigned n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != 24 || strcmp(e->d_name + 20, ".log") != 0 || n == max)
            continue;
        int64_t base = strtoll(e->d_name, NULL, 10);
        unsigned at = n++;
        while (at > 0 && bases[at - 1] > base) {
            bases[at] = bases[at - 1];
            at--;
        }
        bases[at] = base;
    }
    if (d)
        closedir(d);
    for (unsigned i = 0; i < n && sizes; i++) {
        char path[256];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%020" PRId64 ".log", dir, bases[i]);
        sizes[i] = stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
    }
    return n;
}

/* ---- Appends, rolls, reads, reopen ---- */

/*
 * Appends `v[0]` rounds of SLOTS appends in flight at once; append i holds
 * 1 + i % 3 batches of 1 + i % 4 records. Steps from `step` on; returns
 * NEXT when all are in.
 */
static int append_rounds(struct scen *s, int step, int rounds, uint32_t value_len)
{
    if (s->v[0] > 0) { /* the previous round completed: check it */
        for (unsigned i = 0; i < SLOTS; i++) {
            CHECK(s, s->slots[i].done);
            CHECK(s, s->slots[i].err == 0);
            if (i > 0)
                CHECK(s, s->slots[i].offset > s->slots[i - 1].offset);
        }
    }
    if (s->v[0] == rounds) {
        s->v[0] = 0;
        return NEXT;
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        unsigned k = (unsigned)s->v[0] * SLOTS + i;
        fill_slot(s, i, 1 + k % 3, 1 + k % 4, 1000 + k * 100, value_len);
        int64_t end = sp_plog_end_offset(s->log);
        CHECK(s, issue_append(s, i) == 0);
        CHECK(s, sp_plog_end_offset(s->log) > end);
    }
    s->v[0]++;
    s->step = step;
    return WAIT;
}

static int open_log(struct scen *s)
{
    int ret = sp_plog_open(s->shard, &s->config, &s->log);
    if (ret != 0)
        s->log = NULL;
    return ret;
}

static int scen_roll(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_start_offset(s->log) == 0);
        CHECK(s, sp_plog_end_offset(s->log) == 0);
        CHECK(s, sp_plog_segment_count(s->log) == 1);
        CHECK(s, sp_plog_read(s->log, 1, 100, read_cb, NULL) == -ERANGE);
        CHECK(s, issue_read(s, 0, 0, 100) == 0); /* empty log: empty read */
        return WAIT;
    case 1:
        CHECK(s, s->slots[0].read_len == 0);
        return NEXT;
    case 2:
        return append_rounds(s, step, 10, 150);
    case 3:
        CHECK(s, sp_plog_stable_end(s->log) == sp_plog_end_offset(s->log));
        CHECK(s, sp_plog_end_offset(s->log) == model[model_count - 1].last + 1);
        CHECK(s, sp_plog_segment_count(s->log) >= 5);
        s->v[1] = sp_plog_segment_count(s->log);
        s->v[2] = sp_plog_end_offset(s->log);
        CHECK(s, sp_plog_read(s->log, s->v[2] + 1, 100, read_cb, NULL) == -ERANGE);
        CHECK(s, sp_plog_read(s->log, -1, 100, read_cb, NULL) == -ERANGE);
        s->cursor = 0;
        return NEXT;
    case 4:
        return sweep(s, step, 1); /* one batch each, whatever max_bytes says */
    case 5:
        s->cursor = 0;
        return NEXT;
    case 6:
        return sweep(s, step, 3000); /* several batches, never past a segment */
    case 7: {
        /* Segment boundaries: a read at each segment's base starts there. */
        int64_t bases[64];
        unsigned n = list_segments(s->dir, bases, NULL, 64);
        CHECK(s, n == (unsigned)s->v[1]);
        CHECK(s, bases[0] == 0);
        for (unsigned i = 0; i < n; i++) {
            CHECK(s, model_find(bases[i]) != NULL);
            CHECK(s, file_exists(s->dir, bases[i], ".index"));
            CHECK(s, file_exists(s->dir, bases[i], ".timeindex"));
        }
        for (unsigned i = 1; i < n && i < SLOTS; i++)
            CHECK(s, issue_read(s, i, bases[i], 1u << 20) == 0);
        return WAIT;
    }
    case 8:
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0); /* reopen: the same log */
        CHECK(s, sp_plog_end_offset(s->log) == s->v[2]);
        CHECK(s, sp_plog_stable_end(s->log) == s->v[2]);
        CHECK(s, sp_plog_segment_count(s->log) == (uint32_t)s->v[1]);
        s->cursor = 0;
        return NEXT;
    case 9:
        return sweep(s, step, 2000);
    case 10:
        return append_rounds(s, step, 2, 150); /* offsets go on from the end */
    case 11:
        CHECK(s, model[0].base == 0);
        for (uint32_t i = 1; i < model_count; i++)
            CHECK(s, model[i].base == model[i - 1].last + 1);
        CHECK(s, sp_plog_end_offset(s->log) == model[model_count - 1].last + 1);
        s->cursor = s->v[2] - 3;
        return NEXT;
    case 12:
        return sweep(s, step, 5000);
    default:
        return DONE;
    }
}

static void test_append_read_roll(void **state)
{
    (void)state;
    struct scen *s = scen_new("roll");
    s->config.segment_bytes = 8192;
    s->config.index_interval_bytes = 1024;
    scen_exec(s, scen_roll);
    scen_free(s);
}

/* ---- Backpressure and bad input ---- */

static int scen_backpressure(struct scen *s, int step)
{
    switch (step) {
    case 0: {
        CHECK(s, open_log(s) == 0);
        /* Three 5 KiB appends fill the 16 KiB buffer; none completes before we return. */
        unsigned ok = 0;
        for (unsigned i = 0; i < 4; i++) {
            fill_slot(s, i, 1, 1, 1000, 5000);
            int ret = issue_append(s, i);
            CHECK(s, ret == 0 || (i == 3 && ret == -EAGAIN));
            ok += ret == 0;
        }
        CHECK(s, ok == 3);
        CHECK(s, sp_plog_end_offset(s->log) == 3);
        fill_slot(s, 5, 4, 1, 1000, 5000);
        CHECK(s, sp_plog_append(s->log, s->slots[5].bytes, s->slots[5].len, append_cb, NULL) ==
                     -EMSGSIZE);
        uint8_t junk[100];
        memset(junk, 7, sizeof(junk));
        CHECK(s, sp_plog_append(s->log, junk, sizeof(junk), append_cb, NULL) == -EBADMSG);
        CHECK(s, sp_plog_append(s->log, s->slots[0].bytes, 60, append_cb, NULL) == -EBADMSG);
        CHECK(s, issue_flush(s, 6) == 0);
        return WAIT;
    }
    case 1:
        CHECK(s, s->slots[6].err == 0);
        CHECK(s, s->slots[6].offset == 3);
        CHECK(s, sp_plog_stable_end(s->log) == 3);
        /* Room again. */
        CHECK(s, issue_append(s, 3) == 0);
        return WAIT;
    case 2:
        CHECK(s, s->slots[3].err == 0);
        CHECK(s, s->slots[3].offset == 3);
        s->cursor = 0;
        return NEXT;
    case 3:
        return sweep(s, step, 100000);
    default:
        return DONE;
    }
}

static void test_backpressure(void **state)
{
    (void)state;
    struct scen *s = scen_new("backpressure");
    s->config.append_buffer_bytes = 16384;
    scen_exec(s, scen_backpressure);
    scen_free(s);
}

/* ---- Torn and corrupt tails ---- */

static int scen_fill_close(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        return NEXT;
    case 1:
        return append_rounds(s, step, 3, 200);
    case 2:
        s->v[2] = sp_plog_end_offset(s->log);
        sp_plog_close(s->log);
        s->log = NULL;
        return DONE;
    default:
        return DONE;
    }
}

/* Reopens after damage: the log ends at v[3]; reads stop there; appends go on from it. */
static int scen_recovered(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_end_offset(s->log) == s->v[3]);
        CHECK(s, sp_plog_stable_end(s->log) == s->v[3]);
        s->cursor = 0;
        return NEXT;
    case 1:
        return sweep(s, step, 1u << 20); /* the read at v[3] checks it is empty */
    case 2:
        CHECK(s, sp_plog_read(s->log, s->v[3] + 1, 100, read_cb, NULL) == -ERANGE);
        fill_slot(s, 0, 2, 3, 5000, 100);
        CHECK(s, issue_append(s, 0) == 0);
        return WAIT;
    case 3:
        CHECK(s, s->slots[0].err == 0);
        CHECK(s, s->slots[0].offset == s->v[3]);
        s->cursor = s->v[3] > 5 ? s->v[3] - 5 : 0;
        return NEXT;
    case 4:
        return sweep(s, step, 1u << 20);
    case 5:
        s->v[2] = sp_plog_end_offset(s->log);
        return DONE;
    default:
        return DONE;
    }
}

/* Reopens: the log ends at v[3] (past the last batch: a gap) and an append goes there. */
static int scen_goes_on(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_end_offset(s->log) == s->v[3]);
        CHECK(s, sp_plog_stable_end(s->log) == s->v[3]);
        fill_slot(s, 0, 1, 3, 6000, 100);
        CHECK(s, issue_append(s, 0) == 0);
        return WAIT;
    case 1:
        CHECK(s, s->slots[0].err == 0);
        CHECK(s, s->slots[0].offset == s->v[3]);
        sp_plog_close(s->log);
        s->log = NULL;
        return DONE;
    default:
        return DONE;
    }
}

/* The last segment's path and size. */
static void last_segment(struct scen *s, char *path, size_t path_bytes, int64_t *base,
                         uint64_t *size)
{
    int64_t bases[256];
    uint64_t sizes[256];
    unsigned n = list_segments(s->dir, bases, sizes, 256);
    assert_true(n > 0);
    snprintf(path, path_bytes, "%s/%020" PRId64 ".log", s->dir, bases[n - 1]);
    *base = bases[n - 1];
    *size = sizes[n - 1];
}

static void test_torn_tail(void **state)
{
    (void)state;
    struct scen *s = scen_new("torn");
    s->config.segment_bytes = 16384;
    s->config.index_interval_bytes = 512;
    scen_exec(s, scen_fill_close);

    /* Cut the last batch in the middle and add garbage after it. */
    char path[256];
    int64_t base;
    uint64_t size;
    last_segment(s, path, sizeof(path), &base, &size);
    struct mbatch *last = &model[model_count - 1];
    assert_true(last->base >= base); /* the last batch is in the last segment */
    assert_int_equal(truncate(path, (off_t)(size - last->size / 2)), 0);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    uint8_t junk[300];
    for (unsigned i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    s->v[3] = last->base;
    model_truncate(last->base);
    scen_exec(s, scen_recovered);
    struct stat st;
    last_segment(s, path, sizeof(path), &base, &size);
    assert_int_equal(stat(path, &st), 0);

    /* Flip a byte inside the records of the batch before the last: its CRC fails. */
    struct mbatch *victim = &model[model_count - 2];
    assert_true(victim->base >= base);
    uint64_t pos = size - model[model_count - 1].size - victim->size / 2;
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)pos), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)pos), 1);
    close(fd);
    s->v[3] = victim->base;
    model_truncate(victim->base);
    scen_exec(s, scen_recovered);

    /* A file holding only garbage, from offset 0 of its segment on. */
    last_segment(s, path, sizeof(path), &base, &size);
    assert_int_equal(truncate(path, 0), 0);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    s->v[3] = base;
    model_truncate(base);
    scen_exec(s, scen_recovered);

    /*
     * An empty last segment (a crash in the middle of a roll) goes, and the
     * one before it is scanned as the last: here it lost its last batch too.
     */
    int64_t bases[256];
    unsigned n = list_segments(s->dir, bases, NULL, 256);
    assert_true(n >= 3);
    last_segment(s, path, sizeof(path), &base, &size);
    assert_int_equal(truncate(path, 0), 0);
    snprintf(path, sizeof(path), "%s/%020" PRId64 ".log", s->dir, bases[n - 2]);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 1), 0);
    struct mbatch *cut = model_holding(base - 1);
    assert_non_null(cut);
    s->v[3] = cut->base;
    model_truncate(cut->base);
    scen_exec(s, scen_recovered);
    assert_false(file_exists(s->dir, bases[n - 1], ".log")); /* the empty one went */

    /*
     * The same, but the segment before is intact and ends short of the
     * empty one's base, as when the cleaner dropped its last batches: those
     * offsets were handed out, so the log goes on from the base (a gap),
     * never handing them out again.
     */
    n = list_segments(s->dir, bases, NULL, 256);
    assert_true(n >= 2);
    last_segment(s, path, sizeof(path), &base, &size);
    assert_int_equal(truncate(path, 0), 0);
    struct mbatch *dropped = model_holding(base - 1);
    assert_non_null(dropped);
    snprintf(path, sizeof(path), "%s/%020" PRId64 ".log", s->dir, bases[n - 2]);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - (off_t)dropped->size), 0); /* a whole batch */
    s->v[3] = base;
    model_truncate(dropped->base);
    model[model_count - 1].last = base - 1; /* the model's view of the gap: no reads follow */
    scen_exec(s, scen_goes_on);
    scen_free(s);
}

/* ---- Flush policies ---- */

static int scen_flush(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        return NEXT;
    case 1:
        return append_rounds(s, step, 3, 300);
    case 2:
        CHECK(s, sp_plog_stable_end(s->log) == sp_plog_end_offset(s->log));
        CHECK(s, issue_flush(s, 0) == 0);
        fill_slot(s, 1, 1, 2, 100, 10);
        CHECK(s, issue_append(s, 1) == 0);
        CHECK(s, issue_flush(s, 2) == 0);
        return WAIT;
    case 3:
        CHECK(s, s->slots[0].err == 0);
        CHECK(s, s->slots[1].err == 0);
        CHECK(s, s->slots[2].err == 0);
        CHECK(s, s->slots[2].offset == s->slots[1].offset + 2);
        CHECK(s, s->slots[0].offset == s->slots[1].offset);
        s->cursor = 0;
        return NEXT;
    case 4:
        return sweep(s, step, 4096);
    case 5: {
        struct sp_plog_stats st;
        sp_plog_stats(s->log, &st);
        CHECK(s, st.append_count == 3 * SLOTS + 1);
        CHECK(s, st.append_failed_count == 0);
        CHECK(s, st.roll_count == sp_plog_segment_count(s->log) - 1);
        CHECK(s, st.roll_count >= 2);
        CHECK(s, st.write_count >= 1);
        CHECK(s, st.queued_max >= SLOTS);
        CHECK(s, st.read_count == s->reads_done);
        /* Rolls fsync, explicit flushes fsync; EVERY also fsyncs each group it writes. */
        uint64_t fixed = st.roll_count + 2;
        if (s->config.flush == SP_PLOG_FLUSH_EVERY)
            CHECK(s, st.fsync_count == fixed + st.write_count);
        if (s->config.flush == SP_PLOG_FLUSH_OS)
            CHECK(s, st.fsync_count == fixed);
        if (s->config.flush != SP_PLOG_FLUSH_INTERVAL)
            return DONE;
        s->v[1] = (int64_t)st.fsync_count;
        fill_slot(s, 0, 1, 1, 100, 10);
        CHECK(s, issue_append(s, 0) == 0);
        return WAIT;
    }
    case 6: {
        /* INTERVAL: the timer's fsync comes; wait for it (at most 10 s, never timed). */
        struct sp_plog_stats st;
        sp_plog_stats(s->log, &st);
        if ((int64_t)st.fsync_count > s->v[1])
            return NEXT;
        CHECK(s, ++s->v[2] < 10000);
        issue_sleep(s, 1);
        s->step = step;
        return WAIT;
    }
    case 7:
        /* Close and reopen while the timer runs, at whatever point its flush is. */
        if (s->v[3] == 30)
            return DONE;
        s->v[3]++;
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        fill_slot(s, 0, 1, 1, 100, 10);
        CHECK(s, issue_append(s, 0) == 0);
        issue_sleep(s, 1);
        s->step = step;
        return WAIT;
    default:
        return DONE;
    }
}

static void test_flush_policies(void **state)
{
    (void)state;
    enum sp_plog_flush policies[3] = {SP_PLOG_FLUSH_EVERY, SP_PLOG_FLUSH_INTERVAL,
                                      SP_PLOG_FLUSH_OS};
    for (unsigned i = 0; i < 3; i++) {
        struct scen *s = scen_new("flush");
        s->config.segment_bytes = 10000;
        s->config.flush = policies[i];
        s->config.flush_interval_ms = 1;
        scen_exec(s, scen_flush);
        scen_free(s);
    }
}

/* ---- A full disk ---- */

/*
 * Appends rounds of 4 appends of ~8 KiB in flight until some fail. The
 * failures must be -ENOSPC, a suffix of the round, and leave the log
 * consistent: stable == end, the file no longer than the stable bytes, all of
 * it readable. Then DeleteRecords frees space, and appends succeed again at
 * the offsets the failed ones gave back.
 */
static int scen_full(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        return NEXT;
    case 1: {
        if (s->v[0] > 0) {
            bool failed = false;
            for (unsigned i = 0; i < 4; i++) {
                struct slot *sl = &s->slots[i];
                CHECK(s, sl->done);
                if (sl->err != 0) {
                    CHECK(s, sl->err == -ENOSPC);
                    CHECK(s, sl->offset == -1);
                    failed = true;
                }
                CHECK(s, !failed || sl->err != 0); /* once one fails, the rest do */
            }
            if (failed)
                return NEXT;
        }
        CHECK(s, s->v[0] < 400); /* 1 MiB fills long before this */
        for (unsigned i = 0; i < 4; i++) {
            fill_slot(s, i, 1, 2, 1000 + s->v[0], 4000);
            CHECK(s, issue_append(s, i) == 0);
        }
        s->v[0]++;
        s->step = step;
        return WAIT;
    }
    case 2: {
        int64_t end = sp_plog_end_offset(s->log);
        CHECK(s, sp_plog_stable_end(s->log) == end);
        CHECK(s, model_count > 0);
        CHECK(s, end == model[model_count - 1].last + 1);
        int64_t bases[256];
        uint64_t sizes[256];
        unsigned n = list_segments(s->dir, bases, sizes, 256);
        CHECK(s, n == sp_plog_segment_count(s->log));
        uint64_t total = 0;
        for (unsigned i = 0; i < n; i++)
            total += sizes[i];
        CHECK(s, total == sp_plog_size_bytes(s->log)); /* nothing torn left in the files */
        s->cursor = 0;
        return NEXT;
    }
    case 3:
        return sweep(s, step, 20000);
    case 4:
        /* Still full: another append fails the same way and changes nothing. */
        s->v[4] = sp_plog_end_offset(s->log);
        fill_slot(s, 0, 1, 2, 5000, 12000);
        CHECK(s, issue_append(s, 0) == 0);
        return WAIT;
    case 5:
        CHECK(s, s->slots[0].err == -ENOSPC);
        CHECK(s, sp_plog_end_offset(s->log) == s->v[4]);
        CHECK(s, sp_plog_stable_end(s->log) == s->v[4]);
        /*
         * Free space: retention by bytes (1) drops every segment but the last
         * (and the one before it when the last is empty: the log without it
         * would be 0 bytes). Not DeleteRecords, whose start offset file may
         * find no room.
         */
        CHECK(s, sp_plog_retain(s->log, 0) >= 1);
        CHECK(s, sp_plog_segment_count(s->log) <= 2);
        s->v[5] = sp_plog_start_offset(s->log);
        CHECK(s, s->v[5] <= s->v[4]);
        CHECK(s, model_find(s->v[5]) != NULL || s->v[5] == s->v[4]);
        fill_slot(s, 1, 1, 2, 6000, 4000);
        CHECK(s, issue_append(s, 1) == 0);
        return WAIT;
    case 6:
        CHECK(s, s->slots[1].err == 0);
        CHECK(s, s->slots[1].offset == s->v[4]);
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_start_offset(s->log) == s->v[5]);
        CHECK(s, sp_plog_end_offset(s->log) == s->v[4] + 2);
        s->cursor = s->v[5];
        return NEXT;
    case 7:
        return sweep(s, step, 20000);
    case 8:
        /* An append larger than a segment starts a fresh one, whose index files are empty. */
        fill_slot(s, 2, 5, 1, 7000, 12000);
        CHECK(s, s->slots[2].len > s->config.segment_bytes);
        CHECK(s, issue_append(s, 2) == 0);
        return WAIT;
    case 9: {
        CHECK(s, s->slots[2].err == 0);
        s->v[6] = sp_plog_segment_count(s->log);
        s->v[4] = sp_plog_end_offset(s->log);
        /* Fill every page left, then an append that must roll: the roll's index write fails. */
        char path[200];
        snprintf(path, sizeof(path), "%s/filler", s->dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(s, fd >= 0);
        static uint8_t zeros[65536];
        while (write(fd, zeros, sizeof(zeros)) == (ssize_t)sizeof(zeros))
            ;
        close(fd);
        fill_slot(s, 3, 5, 1, 8000, 12000);
        CHECK(s, issue_append(s, 3) == 0);
        return WAIT;
    }
    case 10: {
        CHECK(s, s->slots[3].err == -ENOSPC);
        CHECK(s, sp_plog_segment_count(s->log) == s->v[6]);
        int64_t bases[256];
        CHECK(s, list_segments(s->dir, bases, NULL, 256) == s->v[6]); /* the new files went */
        CHECK(s, sp_plog_end_offset(s->log) == s->v[4]);
        CHECK(s, sp_plog_stable_end(s->log) == s->v[4]);
        char path[200];
        snprintf(path, sizeof(path), "%s/filler", s->dir);
        CHECK(s, unlink(path) == 0);
        CHECK(s, issue_append(s, 3) == 0); /* room again: the roll and the write go through */
        return WAIT;
    }
    case 11:
        CHECK(s, s->slots[3].err == 0);
        CHECK(s, s->slots[3].offset == s->v[4]);
        CHECK(s, sp_plog_segment_count(s->log) == s->v[6] + 1);
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_end_offset(s->log) == s->v[4] + 5);
        s->cursor = sp_plog_start_offset(s->log);
        return NEXT;
    case 12:
        return sweep(s, step, 20000);
    default:
        return DONE;
    }
}

/* The tmpfs, unmounted by the teardown even when the test fails. */
static char full_dir[128];

static int full_disk_teardown(void **state)
{
    (void)state;
    if (full_dir[0] != 0) {
        umount2(full_dir, MNT_DETACH); /* a failed test may have left files open */
        rmdir(full_dir);
        full_dir[0] = 0;
    }
    return 0;
}

static void test_full_disk(void **state)
{
    (void)state;
    struct scen *s = scen_new("full");
    assert_int_equal(mkdir(s->dir, 0755), 0);
    if (mount("tmpfs", s->dir, "tmpfs", 0, "size=1m") == 0) {
        snprintf(full_dir, sizeof(full_dir), "%s", s->dir);
    } else {
        fprintf(stderr, "cannot mount a tmpfs at %s (%s): skipping the full-disk test\n", s->dir,
                strerror(errno));
        rmdir(s->dir);
        free(s);
        skip();
    }
    s->config.segment_bytes = 48 * 1024;
    s->config.index_interval_bytes = 4096;
    s->config.flush = SP_PLOG_FLUSH_EVERY;
    s->config.retention_bytes = 1;
    scen_exec(s, scen_full);
    free(s);
    model_reset();
    assert_int_equal(umount(full_dir), 0);
    full_disk_teardown(NULL);
}

/* ---- Look-ups by time ---- */

/* Batches with timestamps that go up and down: v[1] selects the ones to ask for. */
static int scen_time(struct scen *s, int step)
{
    switch (step) {
    case 0:
        if (!s->log)
            CHECK(s, open_log(s) == 0);
        if (s->v[5]) /* reopened: skip the appends */
            s->step = 3;
        return NEXT;
    case 1: {
        if (s->v[0] == 40) {
            s->v[0] = 0;
            return NEXT;
        }
        for (unsigned i = 0; i < 8; i++) {
            uint32_t k = (uint32_t)s->v[0] * 8 + i;
            /* Mostly rising, with dips: a sawtooth plus a small wobble. */
            int64_t ts0 = 100000 + (int64_t)k * 50 - (k % 7 == 3 ? 400 : 0) + (k * 37) % 11;
            fill_slot(s, i, 1, 1 + k % 3, ts0, 100);
            CHECK(s, issue_append(s, i) == 0);
        }
        s->v[0]++;
        s->step = step;
        return WAIT;
    }
    case 2:
        CHECK(s, sp_plog_segment_count(s->log) >= 4);
        return NEXT;
    case 3: {
        /* v[1]: the next timestamp to ask for, every 7 ms over the whole range. */
        if (s->v[1] == 0)
            s->v[1] = 99000;
        if (s->v[2] > 0) {
            int64_t start = sp_plog_start_offset(s->log), end = sp_plog_stable_end(s->log);
            for (unsigned i = 0; i < SLOTS; i++) {
                struct slot *sl = &s->slots[i];
                CHECK(s, sl->err == 0);
                CHECK(s, sl->offset == model_offset_for_time(sl->read_offset, start, end));
            }
        }
        if (s->v[1] > 100000 + 320 * 50 + 100)
            return NEXT;
        for (unsigned i = 0; i < SLOTS; i++) {
            CHECK(s, issue_time(s, i, s->v[1]) == 0);
            s->v[1] += 7;
        }
        s->v[2]++;
        s->step = step;
        return WAIT;
    }
    case 4:
        s->v[1] = 0;
        s->v[2] = 0;
        if (s->v[5] == 0) { /* again after a reopen: the old segments' indexes come from files */
            sp_plog_close(s->log);
            s->log = NULL;
            s->v[5] = 1;
            s->step = 0;
            return NEXT;
        }
        if (s->v[5] == 1) { /* and after DeleteRecords moved the start into a segment */
            int64_t mid = model[model_count / 2].base + 1;
            CHECK(s, sp_plog_delete_before(s->log, mid) >= 1);
            s->v[5] = 2;
            s->step = 3;
            return NEXT;
        }
        return DONE;
    default:
        return DONE;
    }
}

static void test_offset_for_time(void **state)
{
    (void)state;
    struct scen *s = scen_new("time");
    s->config.segment_bytes = 8192;
    s->config.index_interval_bytes = 700;
    scen_exec(s, scen_time);
    scen_free(s);
}

/* ---- DeleteRecords ---- */

static int scen_delete(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        return NEXT;
    case 1:
        return append_rounds(s, step, 6, 200);
    case 2: {
        int64_t bases[64];
        unsigned n = list_segments(s->dir, bases, NULL, 64);
        CHECK(s, n >= 5);
        s->v[1] = bases[2] + 1; /* inside the third segment */
        s->v[2] = n;
        int64_t end = sp_plog_stable_end(s->log);
        CHECK(s, sp_plog_delete_before(s->log, end + 1) == -ERANGE);
        CHECK(s, sp_plog_delete_before(s->log, s->v[1]) == 2);
        CHECK(s, sp_plog_start_offset(s->log) == s->v[1]);
        CHECK(s, sp_plog_segment_count(s->log) == n - 2);
        CHECK(s, !file_exists(s->dir, bases[0], ".log"));
        CHECK(s, !file_exists(s->dir, bases[1], ".log"));
        CHECK(s, !file_exists(s->dir, bases[1], ".index"));
        CHECK(s, !file_exists(s->dir, bases[1], ".timeindex"));
        CHECK(s, file_exists(s->dir, bases[2], ".log"));
        CHECK(s, sp_plog_delete_before(s->log, s->v[1] - 1) == 0); /* before the start: no-op */
        CHECK(s, sp_plog_start_offset(s->log) == s->v[1]);
        CHECK(s, sp_plog_read(s->log, s->v[1] - 1, 100, read_cb, NULL) == -ERANGE);
        s->cursor = s->v[1];
        return NEXT;
    }
    case 3:
        return sweep(s, step, 3000);
    case 4:
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_start_offset(s->log) == s->v[1]); /* persisted */
        CHECK(s, sp_plog_segment_count(s->log) == s->v[2] - 2);
        /* Up to the end: every segment but the last goes. */
        CHECK(s, sp_plog_delete_before(s->log, sp_plog_stable_end(s->log)) == s->v[2] - 3);
        CHECK(s, sp_plog_segment_count(s->log) == 1);
        CHECK(s, sp_plog_start_offset(s->log) == sp_plog_stable_end(s->log));
        CHECK(s, issue_read(s, 0, sp_plog_start_offset(s->log), 100) == 0);
        return WAIT;
    case 5:
        CHECK(s, s->slots[0].read_len == 0);
        return DONE;
    default:
        return DONE;
    }
}

static void test_delete_before(void **state)
{
    (void)state;
    struct scen *s = scen_new("delete");
    s->config.segment_bytes = 6000;
    scen_exec(s, scen_delete);
    scen_free(s);
}

/* ---- Retention ---- */

static int scen_retain(struct scen *s, int step)
{
    switch (step) {
    case 0:
        CHECK(s, open_log(s) == 0);
        return NEXT;
    case 1:
        return append_rounds(s, step, 8, 200);
    case 2: {
        /* Nothing is old at the time of the first batch; bytes are off. */
        CHECK(s, sp_plog_retain(s->log, 1000) == 0);
        int64_t bases[128];
        uint64_t sizes[128];
        unsigned n = list_segments(s->dir, bases, sizes, 128);
        CHECK(s, n >= 6);
        CHECK(s, n == sp_plog_segment_count(s->log));
        /* By time: "now" just past the third segment's newest timestamp + retention. */
        struct mbatch *last_of_third = model_holding(bases[3] - 1);
        CHECK(s, last_of_third != NULL);
        int64_t newest = 0;
        for (uint32_t i = 0; i < model_count && model[i].base < bases[3]; i++)
            newest = SP_MAX(newest, model[i].max_ts);
        int64_t now = newest + s->config.retention_ms + 1;
        CHECK(s, sp_plog_retain(s->log, now) == 3);
        CHECK(s, sp_plog_start_offset(s->log) == bases[3]);
        CHECK(s, !file_exists(s->dir, bases[2], ".log"));
        CHECK(s, file_exists(s->dir, bases[3], ".log"));
        CHECK(s, sp_plog_retain(s->log, now) == 0);
        /* By bytes: keep the newest segments while the rest is at least the limit. */
        s->config.retention_ms = -1;
        uint64_t total = 0;
        for (unsigned i = 3; i < n; i++)
            total += sizes[i];
        unsigned expect = 0;
        for (unsigned i = 3; i + 1 < n && total - sizes[i] >= (uint64_t)s->v[7]; i++) {
            total -= sizes[i];
            expect++;
        }
        CHECK(s, expect >= 1);
        s->v[1] = expect;
        s->v[2] = bases[3 + expect];
        s->v[3] = n;
        return NEXT;
    }
    case 3:
        /* The log was opened with retention_ms; reopen it with the byte limit alone. */
        sp_plog_close(s->log);
        s->config.retention_bytes = s->v[7];
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_retain(s->log, INT64_MAX) == s->v[1]);
        CHECK(s, sp_plog_start_offset(s->log) == s->v[2]);
        CHECK(s, sp_plog_segment_count(s->log) == s->v[3] - 3 - s->v[1]);
        CHECK(s, sp_plog_size_bytes(s->log) >= (uint64_t)s->v[7]);
        CHECK(s, sp_plog_retain(s->log, INT64_MAX) == 0);
        s->cursor = s->v[2];
        return NEXT;
    case 4:
        return sweep(s, step, 3000);
    case 5:
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        CHECK(s, sp_plog_start_offset(s->log) == s->v[2]);
        return DONE;
    default:
        return DONE;
    }
}

static void test_retention(void **state)
{
    (void)state;
    struct scen *s = scen_new("retain");
    s->config.segment_bytes = 5000;
    s->config.retention_ms = 60000;
    s->v[7] = 12000; /* retention_bytes for the second half */
    scen_exec(s, scen_retain);
    scen_free(s);
}

/* ---- Compaction and look-ups by record ---- */

/* A record the test appended: what a reader should see, if it survives. */
struct crec {
    int64_t offset;
    int64_t ts;
    char key[8];
    char value[24]; /* "" with tomb: a null value */
    bool tomb;
};

#define CRECS_MAX 512u
static struct crec appended[CRECS_MAX], seen[CRECS_MAX];
static uint32_t appended_count, seen_count;

/*
 * Builds a batch of `n` records with keys keys[0..n) (NULL: a null key),
 * values "<key>-<round>" (round < 0: tombstones), all at timestamp ts, with
 * `codec`. Returns its size.
 */
static uint32_t build_keyed(uint8_t *buf, size_t cap, const char *const *keys, unsigned n,
                            int round, int64_t ts, enum sp_record_codec_id codec)
{
    static uint8_t scratch[65536];
    struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
    c.codec = codec;
    c.scratch = scratch;
    c.scratch_bytes = sizeof(scratch);
    struct sp_record_builder b;
    struct sp_record_codec cc;
    if (sp_record_codec_init(&cc, SP_RECORD_CODEC_COMPRESS) != 0 ||
        sp_record_builder_init(&b, buf, cap, &c) != 0)
        abort();
    for (unsigned i = 0; i < n; i++) {
        char value[24];
        int vlen = snprintf(value, sizeof(value), "%s-%d", keys[i] ? keys[i] : "null", round);
        struct sp_record_input r = {
            .offset_delta = (int32_t)i,
            .timestamp = ts,
            .key = keys[i],
            .key_len = keys[i] ? (int32_t)strlen(keys[i]) : -1,
            .value = round < 0 ? NULL : value,
            .value_len = round < 0 ? -1 : vlen,
        };
        if (sp_record_builder_append(&b, &r) != 0)
            abort();
    }
    size_t size = 0;
    if (sp_record_builder_finish(&b, &cc, &size) != 0)
        abort();
    sp_record_codec_deinit(&cc);
    return (uint32_t)size;
}

/* Records the batch's records (at `base`) as appended. */
static void note_appended(const uint8_t *batch, uint32_t len, int64_t base)
{
    struct sp_record_batch b;
    struct sp_record_iter it;
    struct sp_record r;
    struct sp_record_codec cc;
    static uint8_t dec[65536];
    if (sp_record_codec_init(&cc, SP_RECORD_CODEC_DECOMPRESS) != 0 ||
        sp_record_batch_parse(batch, len, &b) != 0 ||
        sp_record_iter_open(&it, &b, &cc, dec, sizeof(dec)) != 0)
        abort();
    while (sp_record_iter_next(&it, &r) == 1 && appended_count < CRECS_MAX) {
        struct crec *c = &appended[appended_count++];
        memset(c, 0, sizeof(*c));
        c->offset = base + (r.offset - b.base_offset);
        c->ts = r.timestamp;
        memcpy(c->key, r.key, (size_t)SP_MIN(r.key_len, 7));
        c->tomb = r.value == NULL;
        if (r.value)
            memcpy(c->value, r.value, (size_t)SP_MIN(r.value_len, 23));
    }
    sp_record_codec_deinit(&cc);
}

/* A read's records into seen[] (offsets as the log holds them). */
static void collect_cb(void *ctx, int err, const uint8_t *data, uint32_t len)
{
    struct slot *sl = ctx;
    struct scen *s = sl->s;
    sl->done = true;
    sl->err = err;
    sl->read_len = len;
    CHECK_CB(s, err == 0);
    struct sp_record_set set;
    struct sp_record_batch b;
    struct sp_record_codec cc;
    static uint8_t dec[65536];
    CHECK_CB(s, sp_record_codec_init(&cc, SP_RECORD_CODEC_DECOMPRESS) == 0);
    sp_record_set_init(&set, data, len);
    int rc;
    while ((rc = sp_record_set_next(&set, &b)) == 1) {
        struct sp_record_iter it;
        struct sp_record r;
        CHECK_CB(s, sp_record_iter_open(&it, &b, &cc, dec, sizeof(dec)) == 0);
        while (sp_record_iter_next(&it, &r) == 1 && seen_count < CRECS_MAX) {
            struct crec *c = &seen[seen_count++];
            memset(c, 0, sizeof(*c));
            c->offset = r.offset;
            c->ts = r.timestamp;
            memcpy(c->key, r.key, (size_t)SP_MIN(r.key_len, 7));
            c->tomb = r.value == NULL;
            if (r.value)
                memcpy(c->value, r.value, (size_t)SP_MIN(r.value_len, 23));
        }
        sl->offset = sp_record_batch_last_offset(&b) + 1;
    }
    CHECK_CB(s, rc == 0);
    sp_record_codec_deinit(&cc);
    scen_resume(s);
}

/* One step of reading the whole log into seen[], a read at a time. */
static int collect(struct scen *s, int step)
{
    struct slot *sl = &s->slots[0];
    if (s->cursor == -1) { /* start */
        seen_count = 0;
        s->cursor = sp_plog_start_offset(s->log);
    } else {
        s->cursor = sl->offset;
    }
    if (s->cursor >= sp_plog_stable_end(s->log))
        return NEXT;
    sl->s = s;
    sl->done = false;
    sl->offset = s->cursor;
    CHECK(s, sp_plog_read(s->log, s->cursor, 700, collect_cb, sl) == 0);
    s->pending++;
    s->step = step;
    return WAIT;
}

/* Whether seen[] is what the cleaner should have left of appended[]: per key
 * only the latest record below `cleaned_end`, expired tombstones gone. */
static bool compacted_as_expected(int64_t cleaned_end, int64_t horizon_ms, char *why, size_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < appended_count; i++) {
        const struct crec *a = &appended[i];
        bool keep = true;
        if (a->offset < cleaned_end) {
            for (uint32_t j = i + 1; j < appended_count && keep; j++)
                if (appended[j].offset < cleaned_end && strcmp(appended[j].key, a->key) == 0)
                    keep = false;
            if (keep && a->tomb && a->ts < horizon_ms)
                keep = false;
        }
        if (!keep)
            continue;
        if (k >= seen_count || seen[k].offset != a->offset || strcmp(seen[k].key, a->key) != 0 ||
            strcmp(seen[k].value, a->value) != 0 || seen[k].tomb != a->tomb ||
            seen[k].ts != a->ts) {
            snprintf(why, n, "record %u: expected offset %" PRId64 " key %s, saw %" PRId64 " %s", k,
                     a->offset, a->key, k < seen_count ? seen[k].offset : -1,
                     k < seen_count ? seen[k].key : "-");
            return false;
        }
        k++;
    }
    if (k != seen_count) {
        snprintf(why, n, "%u records left, %u seen", k, seen_count);
        return false;
    }
    return true;
}

static void keyed_cb(void *ctx, int err, int64_t offset)
{
    struct slot *sl = ctx;
    sl->done = true;
    sl->err = err;
    sl->offset = offset;
    CHECK_CB(sl->s, err == 0);
    for (uint32_t pos = 0; err == 0 && pos < sl->len;) { /* every batch of the append */
        struct sp_record_batch b;
        CHECK_CB(sl->s, sp_record_batch_parse(sl->bytes + pos, sl->len - pos, &b) == 0);
        note_appended(sl->bytes + pos, (uint32_t)b.size, offset);
        offset += b.last_offset_delta + 1;
        pos += (uint32_t)b.size;
    }
    scen_resume(sl->s);
}

#define COMPACT_NOW_MS 10000000

static int scen_compact(struct scen *s, int step)
{
    static const char *const keys[] = {"a", "b", "c", "d", "e", "f"};
    switch (step) {
    case 0: {
        CHECK(s, open_log(s) == 0);
        appended_count = 0;
        /* A record without a key is refused in a compacted log. */
        const char *const nokey[] = {"a", NULL};
        uint32_t len = build_keyed(s->slots[0].bytes, APPEND_BYTES_MAX, nokey, 2, 0, 1000,
                                   SP_RECORD_CODEC_NONE);
        CHECK(s,
              sp_plog_append(s->log, s->slots[0].bytes, len, keyed_cb, &s->slots[0]) == -EBADMSG);
        /* max.message.bytes, changed on the open log: a larger batch is refused. */
        const char *const one[] = {"a"};
        len =
            build_keyed(s->slots[0].bytes, APPEND_BYTES_MAX, one, 1, 0, 1000, SP_RECORD_CODEC_NONE);
        struct sp_plog_config c = s->config;
        c.max_message_bytes = len - 1;
        CHECK(s, sp_plog_set_config(s->log, &c) == 0);
        CHECK(s,
              sp_plog_append(s->log, s->slots[0].bytes, len, keyed_cb, &s->slots[0]) == -EMSGSIZE);
        c.cleanup = 0;
        CHECK(s, sp_plog_set_config(s->log, &c) == -EINVAL); /* no policy at all */
        CHECK(s, sp_plog_set_config(s->log, &s->config) == 0);
        return NEXT;
    }
    case 1: {
        /* 12 rounds, one append at a time (their offsets in order): each round
         * writes every key in two batches (one gzip, one plain); round 5 makes
         * "d" a tombstone (old: expires), round 11 makes "e" one (recent). */
        if (s->v[0] == 12)
            return NEXT;
        int round = (int)s->v[0];
        unsigned half = (unsigned)s->v[1];
        struct slot *sl = &s->slots[0];
        sl->s = s;
        int64_t ts = round == 11 ? COMPACT_NOW_MS : 1000 + round;
        const char *const *ks = keys + (half ? 3 : 0);
        bool tomb = (round == 5 && half) || (round == 11 && half);
        if (tomb) { /* the tombstone alone in its batch, then the others */
            const char *one[1] = {round == 5 ? "d" : "e"};
            sl->len =
                build_keyed(sl->bytes, APPEND_BYTES_MAX, one, 1, -1, ts, SP_RECORD_CODEC_NONE);
            const char *rest[2] = {round == 5 ? "e" : "f", "f"};
            sl->len += build_keyed(sl->bytes + sl->len, APPEND_BYTES_MAX - sl->len, rest,
                                   round == 5 ? 2 : 1, round, ts, SP_RECORD_CODEC_NONE);
        } else {
            /* After its tombstone, "d" is not written again: the tombstone is its latest. */
            bool no_d = half && round > 5;
            /* After round 0, "c" is not written again: round 0's gzip batch is cut to it. */
            bool no_c = !half && round > 0;
            sl->len = build_keyed(sl->bytes, APPEND_BYTES_MAX, ks + no_d, no_d || no_c ? 2 : 3,
                                  round, ts, half ? SP_RECORD_CODEC_NONE : SP_RECORD_CODEC_GZIP);
        }
        CHECK(s, sp_plog_append(s->log, sl->bytes, sl->len, keyed_cb, sl) == 0);
        s->pending++;
        s->v[1] = !half;
        if (half)
            s->v[0]++;
        s->step = step;
        return WAIT;
    }
    case 2:
        CHECK(s, sp_plog_segment_count(s->log) >= 4);
        s->cursor = -1;
        return NEXT;
    case 3:
        return collect(s, step);
    case 4: {
        char why[200];
        CHECK(s, seen_count == appended_count); /* nothing cleaned yet */
        CHECK(s, compacted_as_expected(0, 0, why, sizeof(why)));
        /* A read in flight across the rewrite still sees the old bytes. */
        struct slot *sl = &s->slots[1];
        sl->s = s;
        sl->offset = 0;
        s->v[4] = seen_count;
        seen_count = 0;
        CHECK(s, sp_plog_read(s->log, 0, 100000, collect_cb, sl) == 0);
        s->pending++;
        uint32_t segs = sp_plog_segment_count(s->log);
        /* The dirty ratio holds it back while too little is dirty... */
        int cleaned = sp_plog_clean(s->log, COMPACT_NOW_MS);
        CHECK(s, cleaned >= 1);
        CHECK(s, sp_plog_segment_count(s->log) == segs);
        /* ...and once clean, a second pass finds nothing dirty. */
        CHECK(s, sp_plog_clean(s->log, COMPACT_NOW_MS) == 0);
        struct sp_plog_clean_stats st;
        sp_plog_clean_stats(s->log, &st);
        CHECK(s, st.records_removed > 0);
        CHECK(s, st.bytes_after < st.bytes_before);
        return WAIT;
    }
    case 5: {
        /* The read begun before the rewrite: the first segment's old batches. */
        CHECK(s, seen_count > 0);
        for (uint32_t i = 0; i < seen_count; i++)
            CHECK(s, seen[i].offset == appended[i].offset);
        s->cursor = -1;
        return NEXT;
    }
    case 6:
        return collect(s, step);
    case 7: {
        char why[200];
        /* The segments below the last one's base were cleaned. */
        int64_t bases[64];
        unsigned n = list_segments(s->dir, bases, NULL, 64);
        CHECK(s, n >= 2);
        s->v[6] = bases[n - 1];
        bool ok = compacted_as_expected(bases[n - 1], COMPACT_NOW_MS - 1000, why, sizeof(why));
        if (!ok)
            scen_fail(s, __LINE__, why);
        CHECK(s, ok);
        s->v[7] = seen_count;
        /* A crash's leftovers: a half-written .cleaned, an index temporary, a lost index. */
        char path[256];
        snprintf(path, sizeof(path), "%s/%020" PRId64 ".log.cleaned", s->dir, bases[0]);
        FILE *f = fopen(path, "w");
        CHECK(s, f != NULL);
        fputs("torn", f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/%020" PRId64 ".index.tmp", s->dir, bases[1]);
        f = fopen(path, "w");
        CHECK(s, f != NULL);
        fclose(f);
        snprintf(path, sizeof(path), "%s/%020" PRId64 ".index", s->dir, bases[0]);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%020" PRId64 ".timeindex", s->dir, bases[0]);
        unlink(path);
        sp_plog_close(s->log);
        CHECK(s, open_log(s) == 0);
        CHECK(s, !file_exists(s->dir, bases[0], ".log.cleaned"));
        CHECK(s, !file_exists(s->dir, bases[1], ".index.tmp"));
        s->cursor = -1;
        return NEXT;
    }
    case 8:
        return collect(s, step);
    case 9: {
        char why[200];
        CHECK(s, seen_count == s->v[7]);
        bool ok = compacted_as_expected(s->v[6], COMPACT_NOW_MS - 1000, why, sizeof(why));
        if (!ok)
            scen_fail(s, __LINE__, why);
        CHECK(s, ok);
        return DONE;
    }
    default:
        return DONE;
    }
}

static void test_compaction(void **state)
{
    (void)state;
    struct scen *s = scen_new("compact");
    s->config.segment_bytes = 400;
    s->config.index_interval_bytes = 100;
    s->config.cleanup = SP_PLOG_CLEANUP_COMPACT;
    s->config.min_cleanable_dirty_ratio = 0.1;
    s->config.delete_retention_ms = 1000;
    scen_exec(s, scen_compact);
    scen_free(s);
}

static void record_time_cb(void *ctx, int err, int64_t offset, int64_t timestamp)
{
    struct slot *sl = ctx;
    sl->done = true;
    sl->err = err;
    sl->offset = offset;
    sl->read_offset = timestamp;
    scen_resume(sl->s);
}

static int issue_lookup(struct scen *s, unsigned i, int64_t ts)
{
    struct slot *sl = &s->slots[i];
    sl->s = s;
    sl->done = false;
    int ret = sp_plog_lookup_time(s->log, ts, record_time_cb, sl);
    if (ret == 0)
        s->pending++;
    return ret;
}

/* Record timestamps: batch 0 holds 100, 300, 200 (gzip); batch 1 holds 350, 351. */
static int scen_lookup(struct scen *s, int step)
{
    static const int64_t asks[] = {50, 150, 250, 300, 320, 351, 352, SP_PLOG_TIME_MAX_TIMESTAMP};
    static const int64_t want_off[] = {0, 1, 1, 1, 3, 4, -1, 4};
    static const int64_t want_ts[] = {100, 300, 300, 300, 350, 351, -1, 351};
    switch (step) {
    case 0: {
        CHECK(s, open_log(s) == 0);
        CHECK(s, issue_lookup(s, 0, SP_PLOG_TIME_MAX_TIMESTAMP) == 0); /* empty log */
        CHECK(s, sp_plog_lookup_time(s->log, -5, record_time_cb, &s->slots[1]) == -EINVAL);
        return WAIT;
    }
    case 1: {
        CHECK(s, s->slots[0].err == 0 && s->slots[0].offset == -1);
        CHECK(s, s->slots[0].read_offset == -1);
        struct slot *sl = &s->slots[0];
        static uint8_t scratch[4096];
        struct sp_record_builder_config c = SP_RECORD_BUILDER_CONFIG_INIT;
        c.codec = SP_RECORD_CODEC_GZIP;
        c.scratch = scratch;
        c.scratch_bytes = sizeof(scratch);
        struct sp_record_builder b;
        struct sp_record_codec cc;
        CHECK(s, sp_record_codec_init(&cc, SP_RECORD_CODEC_COMPRESS) == 0);
        CHECK(s, sp_record_builder_init(&b, sl->bytes, APPEND_BYTES_MAX, &c) == 0);
        static const int64_t ts0[] = {100, 300, 200};
        for (int i = 0; i < 3; i++) {
            struct sp_record_input r = {.offset_delta = i,
                                        .timestamp = ts0[i],
                                        .key = "k",
                                        .key_len = 1,
                                        .value = "v",
                                        .value_len = 1};
            CHECK(s, sp_record_builder_append(&b, &r) == 0);
        }
        size_t size = 0;
        CHECK(s, sp_record_builder_finish(&b, &cc, &size) == 0);
        sp_record_codec_deinit(&cc);
        sl->len = (uint32_t)size;
        sl->len += build_batch(sl->bytes + sl->len, APPEND_BYTES_MAX - sl->len, 2, 350, 10);
        CHECK(s, issue_append(s, 0) == 0);
        return WAIT;
    }
    case 2:
        for (unsigned i = 0; i < sizeof(asks) / sizeof(asks[0]); i++)
            CHECK(s, issue_lookup(s, i, asks[i]) == 0);
        return WAIT;
    case 3:
        for (unsigned i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
            CHECK(s, s->slots[i].err == 0);
            CHECK(s, s->slots[i].offset == want_off[i]);
            CHECK(s, s->slots[i].read_offset == want_ts[i]);
        }
        return DONE;
    default:
        return DONE;
    }
}

static void test_lookup_time(void **state)
{
    (void)state;
    struct scen *s = scen_new("lookup");
    scen_exec(s, scen_lookup);
    scen_free(s);
}

int main(void)
{
    rt_test_require_uring();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_roll),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_flush_policies),
        cmocka_unit_test_teardown(test_full_disk, full_disk_teardown),
        cmocka_unit_test(test_offset_for_time),
        cmocka_unit_test(test_delete_before),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_lookup_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
