/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed process functions: per-key value state survives across records;
 * event-time timers fire once per (key, time) however often they are set,
 * in time order, only when the watermark passes them, and may be deleted;
 * a timer set from on_timer fires too; processing-time timers fire once,
 * not before their time, and at the end of the input only when asked; list
 * state keeps each key's elements through appends, removals and clears;
 * with a state TTL, value and list state read after the TTL are gone (read
 * from a processing-time timer set past the TTL: the state's clock is at
 * least the timer's time), and with a long TTL they are still there. Map
 * state answers random puts, gets, removals, iterations and clears over
 * many keys as a reference model does, on one shard and two, and through a
 * checkpoint restored onto another shard count; a map key too long for
 * map_key_bytes is absent to reads and fails the job on a put, a bad map
 * config fails it at start, and an exhausted budget fails it; with a TTL a
 * map expires as a whole, entries written after its creation included.
 * Aggregating state gives a reference running sum per key, through clears.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <cmocka.h>

#include "job_test.h"

/* What the function emits: the key, the timer's time, the key's count. */
struct fired {
    int64_t user;
    int64_t at;
    int64_t count;
    int64_t watermark;
    int64_t now_ms;
};

static const struct sp_field fired_fields[] = {
    SP_FIELD(struct fired, user, SP_T_I64),   SP_FIELD(struct fired, at, SP_T_I64),
    SP_FIELD(struct fired, count, SP_T_I64),  SP_FIELD(struct fired, watermark, SP_T_I64),
    SP_FIELD(struct fired, now_ms, SP_T_I64),
};
static const struct sp_schema fired_schema = SP_SCHEMA(struct fired, fired_fields);

struct seen {
    pthread_mutex_t lock;
    struct fired rows[1024];
    unsigned count;
};

static struct seen seen;

static void collect_fired(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct seen *s = ctx;
    pthread_mutex_lock(&s->lock);
    if (s->count < 1024)
        memcpy(&s->rows[s->count++], row, sizeof(struct fired));
    pthread_mutex_unlock(&s->lock);
}

/* Each record counts into its key's state and sets a timer at the next
 * multiple of 10 after its time (twice, to show it fires once); a record
 * with amount 99 deletes that timer again. */
static void counting_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    int64_t *count = sp_pctx_state(c);
    if (count == NULL)
        return;
    (*count)++;
    int64_t at = (ts / 10 + 1) * 10;
    if (e->amount == 99) {
        sp_pctx_timer_event_delete(c, at);
        return;
    }
    sp_pctx_timer_event(c, at);
    sp_pctx_timer_event(c, at);
}

static void counting_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    f->count = event_time ? *(int64_t *)sp_pctx_state(c) : -1;
    f->watermark = sp_pctx_watermark(c);
    /* A follow-up timer from the callback itself, once, far ahead. */
    if (ts == 10)
        sp_pctx_timer_event(c, 1000);
}

static void run_process(const struct ev *events, unsigned n, const struct sp_process_fn *fn,
                        unsigned cores, double max_seconds, uint64_t rate)
{
    memset(&seen, 0, sizeof(seen));
    pthread_mutex_init(&seen.lock, NULL);
    struct replay r = {events, n};
    struct sp_job *job = sp_job_new("process");
    struct sp_stream *s;
    if (rate == 0) {
        s = replay_source(job, &r, 0);
    } else {
        struct sp_gen_config gc = {.count = n, .partitions = 1, .rate = (double)rate};
        struct sp_watermarks wm = {.ts_field = "ts"};
        s = sp_source_generator(job, &ev_schema, replay_gen, &r, &gc, &wm);
    }
    s = sp_process(sp_key_by(s, "user"), &fired_schema, fn);
    sp_sink_call(s, collect_fired, &seen);
    struct sp_run_config rc = test_run_config(cores);
    rc.max_seconds = max_seconds;
    if (sp_job_run(job, &rc, NULL) != 0)
        fail_msg("%s", sp_job_error(job));
    sp_job_free(job);
}

static void test_event_timers_once_in_order(void **state)
{
    (void)state;
    static const struct ev events[] = {
        {1, 1, 0, 0},  {3, 1, 0, 0},   {2, 2, 0, 0}, /* timers (1,10) (2,10) */
        {12, 1, 0, 0},                 /* watermark 11 (after this record is counted): both fire */
        {15, 2, 0, 0}, {16, 2, 99, 0}, /* (2,20) set, then deleted */
        {25, 1, 0, 0},                 /* (1,20) and (1,30) fire later */
        {31, 3, 0, 0},                 /* watermark 30: (1,20) (1,30) */
    };
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(int64_t), .process = counting_process, .on_timer = counting_timer};
    run_process(events, 8, &fn, test_cores(2), 0, 0);
    /* Per key, in time order, each (key, time) once; none before its time. */
    struct {
        int64_t user, at, count;
    } want[] = {
        {1, 10, 3}, {2, 10, 1}, {1, 20, 4}, {1, 30, 4}, {3, 40, 1}, {1, 1000, 4}, {2, 1000, 3},
    };
    assert_int_equal(seen.count, 7);
    for (unsigned w = 0; w < 7; w++) {
        unsigned hits = 0;
        for (unsigned i = 0; i < seen.count; i++) {
            if (seen.rows[i].user == want[w].user && seen.rows[i].at == want[w].at) {
                hits++;
                assert_int_equal(seen.rows[i].count, want[w].count);
                assert_true(seen.rows[i].watermark >= seen.rows[i].at);
            }
        }
        if (hits != 1)
            fail_msg("timer (%lld, %lld) fired %u times", (long long)want[w].user,
                     (long long)want[w].at, hits);
    }
    for (unsigned i = 1; i < seen.count; i++) {
        for (unsigned j = 0; j < i; j++) {
            if (seen.rows[j].user == seen.rows[i].user)
                assert_true(seen.rows[j].at < seen.rows[i].at);
        }
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void proc_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)row, (void)ts;
    int64_t *count = sp_pctx_state(c);
    (*count)++;
    /* The next 50 ms boundary: records close together share one timer. */
    int64_t at = (sp_pctx_now_ms(c) / 50 + 1) * 50;
    sp_pctx_timer_proc(c, at);
}

static void proc_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    f->count = event_time ? -1 : *(int64_t *)sp_pctx_state(c);
    f->now_ms = wall_ms();
}

static void test_processing_time_timers(void **state)
{
    (void)state;
    static struct ev events[40];
    for (unsigned i = 0; i < 40; i++)
        events[i] = (struct ev){.ts = i, .user = i % 2};
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(int64_t), .process = proc_process, .on_timer = proc_timer};
    /* 40 records at 100 per second, then the job runs on until stopped. */
    run_process(events, 40, &fn, 1, 0.9, 100);
    assert_true(seen.count >= 4);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_true(seen.rows[i].count >= 0); /* processing time */
        assert_true(seen.rows[i].now_ms >= seen.rows[i].at);
        for (unsigned j = 0; j < i; j++)
            assert_false(seen.rows[j].user == seen.rows[i].user &&
                         seen.rows[j].at == seen.rows[i].at);
    }
}

/* amount >= 0 appends it to the key's list, -1 removes element 0; every
 * record sets a timer at the next multiple of 1000. */
static void list_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    if (e->amount == -1) {
        sp_pctx_list_remove(c, 0);
    } else {
        int64_t *v = sp_pctx_list_append(c);
        if (v == NULL)
            return;
        *v += e->amount; /* zeroed: anything else shows in the sums */
    }
    sp_pctx_timer_event(c, (ts / 1000 + 1) * 1000);
}

/* Emits the list's length (count) and sum (watermark field), then clears it. */
static void list_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    uint32_t len = sp_pctx_list_len(c);
    f->count = len;
    for (uint32_t i = 0; i < len; i++)
        f->watermark += *(const int64_t *)sp_pctx_list_at(c, i);
    sp_pctx_list_clear(c);
    /* No cmocka asserts on a shard: a wrong answer shows as count -1. */
    if (sp_pctx_list_at(c, len) != NULL || sp_pctx_list_len(c) != 0)
        f->count = -1;
}

static void test_list_state(void **state)
{
    (void)state;
    static struct ev events[310];
    unsigned n = 0;
    events[n++] = (struct ev){.ts = 1, .user = 1, .amount = 5};
    events[n++] = (struct ev){.ts = 2, .user = 1, .amount = 7};
    events[n++] = (struct ev){.ts = 3, .user = 1, .amount = 9};
    events[n++] = (struct ev){.ts = 4, .user = 1, .amount = -1}; /* 9 takes 5's place */
    for (int64_t i = 1; i <= 300; i++)
        events[n++] = (struct ev){.ts = 5, .user = 2, .amount = i};
    /* Its watermark fires the timers at 1000; then a list again after the clear. */
    events[n++] = (struct ev){.ts = 1600, .user = 3, .amount = -1}; /* removing from nothing */
    events[n++] = (struct ev){.ts = 2500, .user = 1, .amount = 4};
    static const struct sp_process_fn fn = {
        .list_bytes = sizeof(int64_t), .process = list_process, .on_timer = list_timer};
    run_process(events, n, &fn, test_cores(2), 0, 0);
    struct {
        int64_t user, at, len, sum;
    } want[] = {{1, 1000, 2, 16}, {2, 1000, 300, 45150}, {3, 2000, 0, 0}, {1, 3000, 1, 4}};
    assert_int_equal(seen.count, 4);
    for (unsigned w = 0; w < 4; w++) {
        unsigned hits = 0;
        for (unsigned i = 0; i < seen.count; i++) {
            if (seen.rows[i].user != want[w].user || seen.rows[i].at != want[w].at)
                continue;
            hits++;
            assert_int_equal(seen.rows[i].count, want[w].len);
            assert_int_equal(seen.rows[i].watermark, want[w].sum);
        }
        assert_int_equal(hits, 1);
    }
}

/* A processing-time timer an hour ahead per key: fires only at the end. */
static void late_proc_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)row, (void)ts;
    int64_t *count = sp_pctx_state(c);
    (*count)++;
    sp_pctx_timer_proc(c, (sp_pctx_now_ms(c) / 3600000 + 1) * 3600000);
}

static void test_processing_time_timers_at_end(void **state)
{
    (void)state;
    static struct ev events[100];
    for (unsigned i = 0; i < 100; i++)
        events[i] = (struct ev){.ts = i, .user = i % 7};
    struct sp_process_fn fn = {
        .state_bytes = sizeof(int64_t), .process = late_proc_process, .on_timer = proc_timer};
    run_process(events, 100, &fn, test_cores(2), 0, 0);
    assert_int_equal(seen.count, 0); /* dropped with the stream, as in Flink */
    fn.proc_timers_at_end = true;
    run_process(events, 100, &fn, test_cores(2), 0, 0);
    assert_int_equal(seen.count, 7);
    int64_t total = 0;
    for (unsigned i = 0; i < seen.count; i++) {
        assert_true(seen.rows[i].at > seen.rows[i].now_ms); /* early, at the end */
        total += seen.rows[i].count;
    }
    assert_int_equal(total, 100);
}

/* State TTL: each record is its own key; it counts into the value state,
 * appends its amount to the list and sets a processing-time timer `delay`
 * ms ahead, which reports what it finds (count -2: no value state). */
static void ttl_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)ts;
    const struct ev *e = row;
    int64_t *count = sp_pctx_state(c);
    int64_t *v = sp_pctx_list_append(c);
    if (count == NULL || v == NULL)
        return;
    (*count)++;
    *v = e->amount;
    sp_pctx_timer_proc(c, sp_pctx_now_ms(c) + *(const int64_t *)sp_pctx_user(c));
}

static void ttl_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    const int64_t *got = sp_pctx_state_get(c);
    const int64_t *found = sp_pctx_state_find(c);
    f->count = found != NULL ? *found : -2;
    if ((got == NULL) != (found == NULL))
        f->count = -3;
    uint32_t len = sp_pctx_list_len(c);
    f->watermark = len == 1 ? *(const int64_t *)sp_pctx_list_at(c, 0) : -(int64_t)len - 10;
    f->now_ms = wall_ms();
}

static void test_state_ttl(void **state)
{
    (void)state;
    /* 50 records at 100 a second: the timers of the first ones fire while
     * the input lasts (those pending at its end are dropped). */
    static struct ev events[50];
    for (unsigned i = 0; i < 50; i++)
        events[i] = (struct ev){.ts = i, .user = 100 + i, .amount = 7 * i};
    /* Timers fire 80 ms after the only write to their key: a 30 ms TTL has
     * passed by the state's clock, whatever the machine's speed. */
    static int64_t delay = 80;
    struct sp_process_fn fn = {.state_bytes = sizeof(int64_t),
                               .list_bytes = sizeof(int64_t),
                               .process = ttl_process,
                               .on_timer = ttl_timer,
                               .ctx = &delay,
                               .state_ttl_ms = 30};
    run_process(events, 50, &fn, test_cores(2), 0, 100);
    assert_true(seen.count >= 1);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_int_equal(seen.rows[i].count, -2);
        assert_int_equal(seen.rows[i].watermark, -10); /* an empty list */
        assert_true(seen.rows[i].now_ms >= seen.rows[i].at);
    }
    /* An hour's TTL: everything is still there. */
    fn.state_ttl_ms = 3600000;
    run_process(events, 50, &fn, test_cores(2), 0, 100);
    assert_true(seen.count >= 1);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_int_equal(seen.rows[i].count, 1);
        assert_int_equal(seen.rows[i].watermark, 7 * (seen.rows[i].user - 100));
    }
}

/* State TTL while keys keep being written: each record stores its wall
 * time as the value and appends it to the list, and sets a timer 30 ms
 * ahead. A timer at `ts` runs with the state's clock at ts or later, so it
 * must find no value last written TTL or more before ts, and no list whose
 * first element (its creation) is that old; count says how many such it
 * found (a missing element in a live list counts too), watermark the
 * list's length. */
#define TTL_MS 100
static void ttl_keep_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)row, (void)ts;
    int64_t *last = sp_pctx_state(c);
    int64_t *v = sp_pctx_list_append(c);
    if (last == NULL || v == NULL)
        return;
    *last = *v = sp_pctx_now_ms(c);
    sp_pctx_timer_proc(c, sp_pctx_now_ms(c) + 30);
}

static void ttl_keep_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    const int64_t *last = sp_pctx_state_get(c);
    if (last != NULL && ts >= *last + TTL_MS)
        f->count++;
    uint32_t len = sp_pctx_list_len(c);
    for (uint32_t i = 0; i < len; i++) {
        const int64_t *v = sp_pctx_list_at(c, i);
        if (v == NULL || (i == 0 && ts >= *v + TTL_MS))
            f->count++;
    }
    f->watermark = len;
}

static void test_state_ttl_rewritten(void **state)
{
    (void)state;
    static struct ev events[80];
    for (unsigned i = 0; i < 80; i++)
        events[i] = (struct ev){.ts = i, .user = i % 4};
    static const struct sp_process_fn fn = {.state_bytes = sizeof(int64_t),
                                            .list_bytes = sizeof(int64_t),
                                            .process = ttl_keep_process,
                                            .on_timer = ttl_keep_timer,
                                            .state_ttl_ms = TTL_MS};
    run_process(events, 80, &fn, test_cores(2), 0, 100);
    assert_true(seen.count >= 1);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_int_equal(seen.rows[i].count, 0);
    }
}

/* The sink asks when the watermark passed each fired timer's time. */
struct wm_seen {
    struct sp_job *job;
    _Atomic unsigned rows, found, wrong;
};

static void wm_time_sink(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct wm_seen *w = ctx;
    const struct fired *f = row;
    uint64_t at = 0, now = sp_now_ns();
    w->rows++;
    if (sp_job_watermark_time(w->job, f->at, &at)) {
        w->found++;
        if (at > now || at == 0)
            w->wrong++;
    }
    /* Timers before 1000 fire long before the end: 5000 is not reached then
     * (the last event is at 1999; only the end's watermark passes it). */
    if (f->at < 1000 && sp_job_watermark_time(w->job, 5000, &at))
        w->wrong++;
}

static void test_watermark_time(void **state)
{
    (void)state;
    static struct ev events[2000];
    for (unsigned i = 0; i < 2000; i++)
        events[i] = (struct ev){.ts = i, .user = i % 5};
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(int64_t), .process = counting_process, .on_timer = counting_timer};
    struct replay r = {events, 2000};
    struct sp_job *job = sp_job_new("wm-time");
    struct sp_stream *s =
        sp_process(sp_key_by(replay_source(job, &r, 0), "user"), &fired_schema, &fn);
    struct wm_seen w = {.job = job};
    sp_sink_call(s, wm_time_sink, &w);
    struct sp_run_config rc = test_run_config(test_cores(2));
    rc.watermark_times = true;
    if (sp_job_run(job, &rc, NULL) != 0)
        fail_msg("%s", sp_job_error(job));
    uint64_t at;
    assert_false(sp_job_watermark_time(job, 0, &at)); /* not running */
    sp_job_free(job);
    /* A timer fires once the watermark passed its time: every row's start is known. */
    assert_true(w.rows >= 200 * 5);
    assert_int_equal(w.found, w.rows);
    assert_int_equal(w.wrong, 0);
}

/* ---- Map state and aggregating state ---- */

/* A sink keeping each row at its `at` (the record's index). */
struct indexed {
    struct fired *rows;
    unsigned count;
};

static void collect_indexed(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    const struct indexed *x = ctx;
    const struct fired *f = row;
    if (f->at >= 0 && f->at < (int64_t)x->count)
        x->rows[f->at] = *f;
}

/* A run whose failure is expected: its error, or "" when it succeeded. */
static char run_error[512];

static int run_process_rc(const struct ev *events, unsigned n, const struct sp_process_fn *fn,
                          unsigned cores, size_t memory_bytes)
{
    memset(&seen, 0, sizeof(seen));
    pthread_mutex_init(&seen.lock, NULL);
    struct replay r = {events, n};
    struct sp_job *job = sp_job_new("process-map");
    struct sp_stream *s =
        sp_process(sp_key_by(replay_source(job, &r, 0), "user"), &fired_schema, fn);
    sp_sink_call(s, collect_fired, &seen);
    struct sp_run_config rc = test_run_config(cores);
    if (memory_bytes != 0)
        rc.memory_bytes = memory_bytes;
    int err = sp_job_run(job, &rc, NULL);
    snprintf(run_error, sizeof(run_error), "%s", err != 0 ? sp_job_error(job) : "");
    sp_job_free(job);
    return err;
}

/* The model test's map keys: key 0 is empty, the others a number padded
 * with up to 12 'x', so lengths vary from 0 to 14 bytes. */
#define MAP_KEYS 48
#define MAP_KEY_BYTES 16
static uint32_t map_key_of(unsigned k, char *buf)
{
    if (k == 0)
        return 0;
    int n = snprintf(buf, MAP_KEY_BYTES + 1, "%u", k);
    for (unsigned i = 0; i < k % 13; i++)
        buf[n++] = 'x';
    return (uint32_t)n;
}

static int64_t map_key_hash(const void *key, uint32_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ ((const uint8_t *)key)[i]) * 1099511628211ull;
    return (int64_t)(h >> 20);
}

enum { MOP_PUT, MOP_PUT2, MOP_GET, MOP_CONTAINS, MOP_REMOVE, MOP_ITERATE, MOP_CLEAR, MOP_COUNT };

/* Every record is one operation on its key's map, amount = op + MOP_COUNT *
 * (map key + MAP_KEYS * value); it emits the operation's result (count:
 * the old value or -1 for puts and gets, 0/1 for contains and remove, an
 * order-free checksum for iterate, the size before for clear; -999 when the
 * state broke a rule the reference cannot see) and the map's size after it
 * (watermark). `at` is the record's time, its index. */
static void map_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    unsigned op = (unsigned)(e->amount % MOP_COUNT);
    unsigned k = (unsigned)(e->amount / MOP_COUNT % MAP_KEYS);
    int64_t val = e->amount / MOP_COUNT / MAP_KEYS;
    char buf[MAP_KEY_BYTES + 1];
    uint32_t len = map_key_of(k, buf);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    struct sp_str key = sp_pctx_key(c);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    const int64_t *got = sp_pctx_map_get(c, buf, len);
    switch (op) {
    case MOP_PUT:
    case MOP_PUT2: {
        f->count = got != NULL ? *got : -1;
        int64_t *v = sp_pctx_map_put(c, buf, len);
        if (v == NULL || (got == NULL && *v != 0) || (got != NULL && v != got)) {
            f->count = -999;
            break;
        }
        *v = val;
        break;
    }
    case MOP_GET:
        f->count = got != NULL ? *got : -1;
        break;
    case MOP_CONTAINS:
        f->count = sp_pctx_map_contains(c, buf, len);
        if (f->count != (got != NULL))
            f->count = -999;
        break;
    case MOP_REMOVE:
        f->count = sp_pctx_map_remove(c, buf, len);
        if (f->count != (got != NULL) || sp_pctx_map_get(c, buf, len) != NULL ||
            sp_pctx_map_remove(c, buf, len))
            f->count = -999;
        break;
    case MOP_ITERATE: {
        uint32_t n = sp_pctx_map_len(c);
        for (uint32_t i = 0; i < n; i++) {
            struct sp_str mk = {0};
            const int64_t *v = sp_pctx_map_at(c, i, &mk);
            if (v == NULL || sp_pctx_map_get(c, mk.ptr, mk.len) != v) {
                f->count = -999;
                break;
            }
            f->count += map_key_hash(mk.ptr, mk.len) * 31 + *v;
        }
        if (sp_pctx_map_at(c, n, NULL) != NULL)
            f->count = -999;
        break;
    }
    case MOP_CLEAR:
        f->count = sp_pctx_map_len(c);
        sp_pctx_map_clear(c);
        if (sp_pctx_map_len(c) != 0 || sp_pctx_map_get(c, buf, len) != NULL)
            f->count = -999;
        break;
    }
    f->watermark = sp_pctx_map_len(c);
}

/* The reference: each user's map as present/value per map key. */
struct map_model {
    bool present[MAP_KEYS];
    int64_t value[MAP_KEYS];
};

/* Random map operations for `n` records over `users` keys, and what the
 * reference model says each returns (want_result) and the map's size after
 * it (want_len). */
static void map_model_build(struct ev *events, int64_t *want_result, int64_t *want_len, unsigned n,
                            unsigned users)
{
    struct map_model *model = calloc(users, sizeof(*model));
    assert_non_null(model);
    uint64_t rnd = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < n; i++) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        unsigned user = (unsigned)(rnd % users);
        unsigned op = (unsigned)(rnd >> 8) % MOP_COUNT;
        /* Clears are rare (one in four draws), else it is a get. */
        if (op == MOP_CLEAR && (rnd >> 16) % 4 != 0)
            op = MOP_GET;
        /* Users below 3 use few map keys (many hits), the others all. */
        unsigned keys = user < 3 ? 5 : MAP_KEYS;
        unsigned k = (unsigned)(rnd >> 24) % keys;
        int64_t val = 1 + (int64_t)((rnd >> 40) % 1000);
        events[i] =
            (struct ev){.ts = i, .user = user, .amount = op + MOP_COUNT * (k + MAP_KEYS * val)};
        struct map_model *m = &model[user];
        int64_t r = 0;
        switch (op) {
        case MOP_PUT:
        case MOP_PUT2:
            r = m->present[k] ? m->value[k] : -1;
            m->present[k] = true;
            m->value[k] = val;
            break;
        case MOP_GET:
            r = m->present[k] ? m->value[k] : -1;
            break;
        case MOP_CONTAINS:
            r = m->present[k];
            break;
        case MOP_REMOVE:
            r = m->present[k];
            m->present[k] = false;
            break;
        case MOP_ITERATE:
            for (unsigned j = 0; j < MAP_KEYS; j++) {
                char buf[MAP_KEY_BYTES + 1];
                uint32_t len = map_key_of(j, buf);
                if (m->present[j])
                    r += map_key_hash(buf, len) * 31 + m->value[j];
            }
            break;
        case MOP_CLEAR:
            for (unsigned j = 0; j < MAP_KEYS; j++) {
                r += m->present[j];
                m->present[j] = false;
            }
            break;
        }
        want_result[i] = r;
        want_len[i] = 0;
        for (unsigned j = 0; j < MAP_KEYS; j++)
            want_len[i] += m->present[j];
    }
    free(model);
}

/* Rows [first, n) are each record's, with the reference's result and size. */
static void map_rows_check(const struct fired *rows, const struct ev *events,
                           const int64_t *want_result, const int64_t *want_len, unsigned first,
                           unsigned n, unsigned cores)
{
    for (unsigned i = first; i < n; i++) {
        if (rows[i].at != (int64_t)i || rows[i].user != events[i].user)
            fail_msg("record %u: no row (cores %u, from record %u)", i, cores, first);
        if (rows[i].count != want_result[i] || rows[i].watermark != want_len[i])
            fail_msg("record %u (op %u, user %lld, cores %u, from record %u): got %lld size "
                     "%lld, want %lld size %lld",
                     i, (unsigned)(events[i].amount % MOP_COUNT), (long long)events[i].user, cores,
                     first, (long long)rows[i].count, (long long)rows[i].watermark,
                     (long long)want_result[i], (long long)want_len[i]);
    }
}

static void test_map_state_model(void **state)
{
    (void)state;
    enum { USERS = 23, N = 6000 };
    static struct ev events[N];
    static int64_t want_result[N], want_len[N];
    map_model_build(events, want_result, want_len, N, USERS);
    static const struct sp_process_fn fn = {
        .map_key_bytes = MAP_KEY_BYTES, .map_value_bytes = sizeof(int64_t), .process = map_process};
    /* The rows do not fit `seen`: a sink of its own, by record index. */
    static struct fired rows[N];
    struct indexed x = {rows, N};
    for (unsigned cores = 1; cores <= test_cores(2); cores++) {
        memset(rows, 0xff, sizeof(rows));
        struct replay r = {events, N};
        struct sp_job *job = sp_job_new("process-map-model");
        struct sp_stream *s =
            sp_process(sp_key_by(replay_source(job, &r, 0), "user"), &fired_schema, &fn);
        sp_sink_call(s, collect_indexed, &x);
        struct sp_run_config rc = test_run_config(cores);
        if (sp_job_run(job, &rc, NULL) != 0)
            fail_msg("%s", sp_job_error(job));
        sp_job_free(job);
        map_rows_check(rows, events, want_result, want_len, 0, N, cores);
    }
}

/* Runs and frees `job` with `memory_bytes` per shard, spilling into $TMPDIR
 * (else /tmp); its state must have gone to disk. */
static struct sp_job_stats run_spilled(struct sp_job *job, size_t memory_bytes)
{
    struct sp_run_config rc = test_run_config(test_cores(2));
    rc.memory_bytes = memory_bytes;
    const char *tmp = getenv("TMPDIR");
    rc.spill_dir = tmp != NULL && *tmp != '\0' ? tmp : "/tmp";
    struct sp_job_stats stats = {0};
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("%s", sp_job_error(job));
    sp_job_free(job);
    assert_true(stats.spilled_bytes_max > 0);
    return stats;
}

/* The map model with state larger than memory: 4,000 users' maps (about
 * 12 MB of state) in 4 MiB per shard, spilled to a directory: the same
 * answers, and segments did go to disk (the run's stats). */
static void test_map_state_spilled(void **state)
{
    (void)state;
    enum { USERS = 4000, N = 120000 };
    struct ev *events = calloc(N, sizeof(*events));
    int64_t *want_result = calloc(N, sizeof(*want_result));
    int64_t *want_len = calloc(N, sizeof(*want_len));
    struct fired *rows = malloc(N * sizeof(*rows));
    assert_true(events && want_result && want_len && rows);
    map_model_build(events, want_result, want_len, N, USERS);
    static const struct sp_process_fn fn = {
        .map_key_bytes = MAP_KEY_BYTES, .map_value_bytes = sizeof(int64_t), .process = map_process};
    struct indexed x = {rows, N};
    memset(rows, 0xff, N * sizeof(*rows));
    struct replay r = {events, N};
    struct sp_job *job = sp_job_new("process-map-spilled");
    struct sp_stream *s =
        sp_process(sp_key_by(replay_source(job, &r, 0), "user"), &fired_schema, &fn);
    sp_sink_call(s, collect_indexed, &x);
    struct sp_job_stats stats = run_spilled(job, 4u << 20);
    assert_true(stats.spill_reads > 0);
    map_rows_check(rows, events, want_result, want_len, 0, N, test_cores(2));
    free(events);
    free(want_result);
    free(want_len);
    free(rows);
}

/* Two process functions in a chain, state spilled: A holds its value
 * state's pointer while it emits two rows, which go through a key_by to B
 * (on this shard at once, or on the other); both keep 500 bytes a key
 * (about 33 MB in all against 8 MiB a shard), so both spill; only then does A write through its
 * pointer. A's counts must come out 0, 1, 2, ... per key, each twice: a pointer that was spilled
 * under A (the exchange's local share unpinning every table) would lose increments (and ASan builds
 * catch the write). */
enum { CHAIN_USERS = 20000, CHAIN_PER_USER = 30, CHAIN_N = CHAIN_USERS * CHAIN_PER_USER };
static _Atomic uint8_t chain_seen[CHAIN_USERS][CHAIN_PER_USER][2];
static _Atomic unsigned chain_bad;

static void chain_a(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    int64_t *v = sp_pctx_state(c);
    if (v == NULL)
        return;
    int64_t count = *v;
    for (int i = 0; i < 2; i++) {
        struct ev *o = sp_out_row(sp_pctx_out(c), ts);
        *o = (struct ev){
            .ts = ts, .user = e->user * 2 + i, .amount = e->user * 1000000 + count, .price = i};
    }
    *v = count + 1; /* after the rows went down */
}

static void chain_b(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    uint8_t *big = sp_pctx_state(c);
    if (big == NULL)
        return;
    big[e->amount % 500]++;
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    *f = (struct fired){
        .user = e->amount / 1000000, .at = e->amount % 1000000, .count = (int64_t)e->price};
}

static void chain_sink(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)ctx, (void)shard, (void)ts;
    const struct fired *f = row;
    if (f->user < 0 || f->user >= CHAIN_USERS || f->at < 0 || f->at >= CHAIN_PER_USER ||
        f->count < 0 || f->count > 1)
        chain_bad++;
    else
        chain_seen[f->user][f->at][f->count]++;
}

/* Full batches (the replay source sends one event per batch, so no row
 * would be flushed in the middle of a record): each round visits every
 * user once, striding over the key space. */
static int64_t chain_gen(void *ctx, uint32_t partition, uint64_t index, void *row,
                         struct sp_out *out)
{
    (void)ctx, (void)partition, (void)out;
    *(struct ev *)row = (struct ev){.ts = (int64_t)index,
                                    .user = (int64_t)(index % CHAIN_USERS * 7919 % CHAIN_USERS)};
    return (int64_t)index;
}

static void test_chain_spilled(void **state)
{
    (void)state;
    memset((void *)chain_seen, 0, sizeof(chain_seen));
    chain_bad = 0;
    static const struct sp_process_fn fa = {.state_bytes = 512, .process = chain_a};
    static const struct sp_process_fn fb = {.state_bytes = 500, .process = chain_b};
    struct sp_job *job = sp_job_new("process-chain-spilled");
    struct sp_gen_config gc = {.count = CHAIN_N, .partitions = 1};
    struct sp_watermarks wm = {.ts_field = "ts"};
    struct sp_stream *src = sp_source_generator(job, &ev_schema, chain_gen, NULL, &gc, &wm);
    struct sp_stream *a = sp_process(sp_key_by(src, "user"), &ev_schema, &fa);
    struct sp_stream *b = sp_process(sp_key_by(a, "user"), &fired_schema, &fb);
    sp_sink_call(b, chain_sink, NULL);
    struct sp_job_stats stats = run_spilled(job, 8u << 20);
    print_message("chain: spilled %llu bytes at most, %llu segments read back\n",
                  (unsigned long long)stats.spilled_bytes_max,
                  (unsigned long long)stats.spill_reads);
    assert_int_equal(chain_bad, 0);
    for (unsigned u = 0; u < CHAIN_USERS; u++)
        for (unsigned n = 0; n < CHAIN_PER_USER; n++)
            for (unsigned i = 0; i < 2; i++)
                if (chain_seen[u][n][i] != 1)
                    fail_msg("user %u count %u row %u seen %u times", u, n, i,
                             (unsigned)chain_seen[u][n][i]);
}

/* Map state through a checkpoint and a restore onto another shard count:
 * a first run on two shards (one when the machine has one core), its one
 * source partition (a key's records stay in order) slowed to 4000 records
 * a second, takes a checkpoint every 50 ms and is stopped
 * after 0.6 s; a second run on one shard restores the newest and replays
 * the records after it. Every row of the second run must be what the
 * reference says for its record, which needs the maps as they were at the
 * checkpoint (an empty map would answer the first gets with -1), and the
 * second run must have started past record 0 (its rows tell where). */
static void test_map_state_restore(void **state)
{
    (void)state;
    enum { USERS = 23, N = 12000 };
    static struct ev events[N];
    static int64_t want_result[N], want_len[N];
    map_model_build(events, want_result, want_len, N, USERS);
    static const struct sp_process_fn fn = {
        .map_key_bytes = MAP_KEY_BYTES, .map_value_bytes = sizeof(int64_t), .process = map_process};
    static struct fired rows[N];
    struct indexed x = {rows, N};
    unsigned first = 0;
    /* A machine too slow to complete a checkpoint in the first run's time
     * gets a longer one (the second run then starts at record 0). */
    for (unsigned attempt = 0; attempt < 3 && first == 0; attempt++) {
        char dir[] = "/tmp/spate-process-map-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char url[64];
        snprintf(url, sizeof(url), "file://%s", dir);
        for (unsigned run = 0; run < 2; run++) {
            memset(rows, 0xff, sizeof(rows));
            struct replay r = {events, N};
            struct sp_job *job = sp_job_new("process-map-restore");
            struct sp_gen_config gc = {.count = N, .partitions = 1, .rate = run == 0 ? 4000 : 0};
            struct sp_watermarks wm = {.ts_field = "ts"};
            struct sp_stream *s = sp_source_generator(job, &ev_schema, replay_gen, &r, &gc, &wm);
            s = sp_process(sp_key_by(s, "user"), &fired_schema, &fn);
            sp_sink_call(s, collect_indexed, &x);
            struct sp_run_config rc = test_run_config(run == 0 ? test_cores(2) : 1);
            rc.checkpoint_url = url;
            rc.checkpoint_interval_ms = 50;
            rc.max_seconds = run == 0 ? 0.6 * (1u << attempt) : 0; /* < N / 4000 s */
            if (sp_job_run(job, &rc, NULL) != 0)
                fail_msg("run %u: %s", run, sp_job_error(job));
            sp_job_free(job);
        }
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        /* Rows of the second run only; the records before its start have none. */
        while (first < N && rows[first].at != (int64_t)first)
            first++;
    }
    if (first == 0 || first == N)
        fail_msg("the second run started at record %u", first);
    map_rows_check(rows, events, want_result, want_len, first, N, 1);
}

/* A map key longer than map_key_bytes: get, contains and remove find
 * nothing (count 0 when so), a put fails the job. */
static void long_key_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    static const char key[] = "0123456789abcdefg"; /* 17 bytes */
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    f->user = e->user;
    f->count = sp_pctx_map_get(c, key, 17) != NULL || sp_pctx_map_contains(c, key, 17) ||
               sp_pctx_map_remove(c, key, 17);
    if (sp_pctx_map_put(c, key, 16) == NULL) /* the longest that fits */
        f->count = 2;
    if (e->amount == 1 && sp_pctx_map_put(c, key, 17) != NULL)
        f->count = 3;
}

static void test_map_state_key_too_long(void **state)
{
    (void)state;
    static const struct ev events[] = {{1, 1, 0, 0}, {2, 2, 0, 0}, {3, 1, 1, 0}};
    static const struct sp_process_fn fn = {
        .map_key_bytes = 16, .map_value_bytes = 8, .process = long_key_process};
    assert_int_equal(run_process_rc(events, 2, &fn, 1, 0), 0);
    assert_int_equal(seen.count, 2);
    for (unsigned i = 0; i < seen.count; i++)
        assert_int_equal(seen.rows[i].count, 0);
    assert_int_not_equal(run_process_rc(events, 3, &fn, 1, 0), 0);
    if (strstr(run_error, "longer than map_key_bytes") == NULL)
        fail_msg("error: %s", run_error);
}

static void test_map_state_bad_config(void **state)
{
    (void)state;
    static const struct ev events[] = {{1, 1, 0, 0}};
    struct sp_process_fn fn = {.map_key_bytes = 8, .process = long_key_process};
    assert_int_not_equal(run_process_rc(events, 1, &fn, 1, 0), 0);
    if (strstr(run_error, "map_value_bytes") == NULL)
        fail_msg("error: %s", run_error);
    fn = (struct sp_process_fn){.map_value_bytes = 8, .process = long_key_process};
    assert_int_not_equal(run_process_rc(events, 1, &fn, 1, 0), 0);
    fn = (struct sp_process_fn){.map_key_bytes = SP_PROCESS_MAP_KEY_BYTES_MAX + 1,
                                .map_value_bytes = 8,
                                .process = long_key_process};
    assert_int_not_equal(run_process_rc(events, 1, &fn, 1, 0), 0);
}

/* Puts distinct map keys into one key's map until put fails (or a million,
 * far more than the budget holds); count: how many went in. */
static void fill_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    f->user = e->user;
    for (uint32_t i = 0; i < 1000000; i++) {
        int64_t *v = sp_pctx_map_put(c, &i, sizeof(i));
        if (v == NULL)
            break;
        *v = i;
        f->count++;
    }
    f->watermark = sp_pctx_map_len(c);
}

static void test_map_state_budget(void **state)
{
    (void)state;
    static const struct ev events[] = {{1, 1, 0, 0}, {2, 1, 0, 0}};
    static const struct sp_process_fn fn = {
        .map_key_bytes = 4, .map_value_bytes = 8, .process = fill_process};
    assert_int_not_equal(run_process_rc(events, 2, &fn, 1, 4u << 20), 0);
    if (strstr(run_error, "managed memory") == NULL)
        fail_msg("error: %s", run_error);
    /* The failing record's row is its last: nothing ran after the failure. */
    assert_true(seen.count <= 1);
    if (seen.count == 1) {
        assert_true(seen.rows[0].count > 1000);
        assert_true(seen.rows[0].count < 1000000);
        assert_int_equal(seen.rows[0].watermark, seen.rows[0].count);
    }
}

/* Map TTL: each record is its own key; it puts map key "a" and sets a
 * processing-time timer 20 ms ahead (an even time), which puts "b" (when
 * the map is still there) and sets one 21 ms later (odd). With a 30 ms TTL the map created by the
 * record is gone at the second timer, "b" included, though "b" was written less than 30 ms before
 * it; a put then makes a fresh map of one entry. count: rules broken; watermark: the map's size the
 * second timer found. */
static void map_ttl_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)row, (void)ts;
    int64_t *v = sp_pctx_map_put(c, "a", 1);
    if (v == NULL)
        return;
    *v = 1;
    int64_t at = sp_pctx_now_ms(c) + 20;
    sp_pctx_timer_proc(c, at + (at & 1));
}

static void map_ttl_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    if ((ts & 1) == 0) {
        /* Only into the record's map (a slow machine may find it expired
         * already; a map made here would be too young at the next timer). */
        if (sp_pctx_map_contains(c, "a", 1)) {
            int64_t *v = sp_pctx_map_put(c, "b", 1);
            if (v != NULL)
                *v = 2;
        }
        sp_pctx_timer_proc(c, ts + 21);
        return;
    }
    struct sp_str key = sp_pctx_key(c);
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    memcpy(&f->user, key.ptr, sizeof(f->user));
    f->at = ts;
    f->watermark = sp_pctx_map_len(c);
    f->count = (sp_pctx_map_get(c, "a", 1) != NULL) + (sp_pctx_map_get(c, "b", 1) != NULL) +
               sp_pctx_map_contains(c, "b", 1) + (sp_pctx_map_at(c, 0, NULL) != NULL);
    int64_t *v = sp_pctx_map_put(c, "c", 1);
    if (v == NULL || *v != 0)
        f->count += 10;
    f->count += (sp_pctx_map_len(c) != 1) + (sp_pctx_map_get(c, "b", 1) != NULL) +
                sp_pctx_map_remove(c, "a", 1);
    f->now_ms = wall_ms();
}

static void test_map_state_ttl(void **state)
{
    (void)state;
    static struct ev events[50];
    for (unsigned i = 0; i < 50; i++)
        events[i] = (struct ev){.ts = i, .user = 100 + i};
    struct sp_process_fn fn = {.map_key_bytes = 4,
                               .map_value_bytes = sizeof(int64_t),
                               .process = map_ttl_process,
                               .on_timer = map_ttl_timer,
                               .state_ttl_ms = 30};
    run_process(events, 50, &fn, test_cores(2), 0, 100);
    assert_true(seen.count >= 1);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_int_equal(seen.rows[i].count, 0);
        assert_int_equal(seen.rows[i].watermark, 0);
        assert_true(seen.rows[i].now_ms >= seen.rows[i].at);
    }
    /* An hour's TTL: "a" and "b" are still there (4 from the reads, 1 for
     * size 3 after the put, 1 for "b", 1 for removing "a"). */
    fn.state_ttl_ms = 3600000;
    run_process(events, 50, &fn, test_cores(2), 0, 100);
    assert_true(seen.count >= 1);
    for (unsigned i = 0; i < seen.count; i++) {
        assert_int_equal(seen.rows[i].watermark, 2);
        assert_int_equal(seen.rows[i].count, 7);
    }
}

/* Aggregating state: a user aggregate of the amounts (its accumulator
 * holds a mark create() sets, so a missing create() shows); amount 0
 * clears the key's state first. count: the result after the add (-1 when
 * result() found none before the add, which only a clear allows). */
struct sum_acc {
    int64_t sum;
    int64_t mark;
};

static void sum_create(void *ctx, void *acc)
{
    (void)ctx;
    ((struct sum_acc *)acc)->mark = 77;
}

static void sum_add(void *ctx, void *acc, const void *row, int64_t ts)
{
    (void)ctx, (void)ts;
    ((struct sum_acc *)acc)->sum += ((const struct ev *)row)->amount;
}

static void sum_result(void *ctx, const void *acc, void *result)
{
    (void)ctx;
    const struct sum_acc *a = acc;
    *(int64_t *)result = a->mark == 77 ? a->sum : -777;
}

static const struct sp_aggregate_fn sum_agg = {.acc_bytes = sizeof(struct sum_acc),
                                               .result_type = SP_T_I64,
                                               .create = sum_create,
                                               .add = sum_add,
                                               .result = sum_result};

static void agg_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct ev *e = row;
    struct fired *f = sp_out_row(sp_pctx_out(c), ts);
    f->user = e->user;
    f->at = ts;
    int64_t before;
    if (e->amount == 0) {
        sp_pctx_agg_clear(c);
        if (sp_pctx_agg_result(c, &before))
            f->count = -5;
    }
    sp_pctx_agg_add(c, row, ts);
    if (!sp_pctx_agg_result(c, &f->watermark))
        f->count = -6;
}

static void test_agg_state(void **state)
{
    (void)state;
    enum { N = 900 };
    static struct ev events[N];
    static int64_t want[N];
    int64_t sums[7] = {0};
    for (unsigned i = 0; i < N; i++) {
        int64_t amount = (int64_t)((i * 7919u) % 23);
        unsigned user = (i * 31u) % 7;
        events[i] = (struct ev){.ts = i, .user = user, .amount = amount};
        if (amount == 0)
            sums[user] = 0;
        sums[user] += amount;
        want[i] = sums[user];
    }
    static const struct sp_process_fn fn = {.agg = &sum_agg, .process = agg_process};
    static struct fired rows[N];
    memset(rows, 0xff, sizeof(rows));
    struct indexed x = {rows, N};
    struct replay r = {events, N};
    struct sp_job *job = sp_job_new("process-agg");
    struct sp_stream *s =
        sp_process(sp_key_by(replay_source(job, &r, 0), "user"), &fired_schema, &fn);
    sp_sink_call(s, collect_indexed, &x);
    struct sp_run_config rc = test_run_config(test_cores(2));
    if (sp_job_run(job, &rc, NULL) != 0)
        fail_msg("%s", sp_job_error(job));
    sp_job_free(job);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(rows[i].at, i);
        assert_int_equal(rows[i].count, 0);
        assert_int_equal(rows[i].watermark, want[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watermark_time),
        cmocka_unit_test(test_list_state),
        cmocka_unit_test(test_processing_time_timers_at_end),
        cmocka_unit_test(test_event_timers_once_in_order),
        cmocka_unit_test(test_processing_time_timers),
        cmocka_unit_test(test_state_ttl),
        cmocka_unit_test(test_state_ttl_rewritten),
        cmocka_unit_test(test_map_state_model),
        cmocka_unit_test(test_map_state_spilled),
        cmocka_unit_test(test_chain_spilled),
        cmocka_unit_test(test_map_state_restore),
        cmocka_unit_test(test_map_state_key_too_long),
        cmocka_unit_test(test_map_state_bad_config),
        cmocka_unit_test(test_map_state_budget),
        cmocka_unit_test(test_map_state_ttl),
        cmocka_unit_test(test_agg_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
