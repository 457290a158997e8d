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
 * least the timer's time), and with a long TTL they are still there.
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
