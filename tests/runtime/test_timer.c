/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hierarchical timer wheel: tick-shift validation, firing order across
 * distinct ticks and levels, the never-early rule (nothing fires while
 * now < deadline; a tick-aligned deadline fires on the first advance with
 * now >= deadline, an unaligned one within a tick), cancel in every position
 * (wheel slot and expired list, the latter when fire_max leaves timers
 * pending), re-arm, deadlines in the past and far in the future (100 years,
 * UINT64_MAX), callbacks that arm and cancel timers (themselves included),
 * fire_max, next_ns, the armed-count high-water mark, and a randomized run of
 * 2000 timers against a reference model at several tick sizes (fixed seed).
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_rand.h"
#include "sp_timer.h"

#define FIRE_ALL UINT_MAX
#define LOG_MAX 4096

/* ---- Helpers ---- */

/* What the callbacks write: the order timers fired in and the now of each. */
struct fire_log {
    uint64_t now_ns; /* the now of the advance in progress */
    unsigned count;
    unsigned ids[LOG_MAX];
};

struct tbox {
    struct sp_timer timer;
    unsigned id;
    unsigned fire_count;
    uint64_t fired_now_ns;
    struct fire_log *log;
};

static void record_fire(struct sp_timer *timer, void *ctx)
{
    struct tbox *box = ctx;
    assert_ptr_equal(&box->timer, timer);
    assert_false(sp_timer_armed(timer)); /* disarmed before its callback runs */
    box->fire_count++;
    box->fired_now_ns = box->log->now_ns;
    assert_true(box->log->count < LOG_MAX);
    box->log->ids[box->log->count++] = box->id;
}

static void boxes_init(struct tbox *boxes, unsigned n, struct fire_log *log)
{
    memset(log, 0, sizeof(*log));
    for (unsigned i = 0; i < n; i++) {
        boxes[i].id = i;
        boxes[i].fire_count = 0;
        boxes[i].fired_now_ns = 0;
        boxes[i].log = log;
        sp_timer_init(&boxes[i].timer, record_fire, &boxes[i]);
    }
}

static unsigned advance(struct sp_timer_wheel *wheel, struct fire_log *log, uint64_t now_ns,
                        unsigned fire_max)
{
    log->now_ns = now_ns;
    return sp_timer_wheel_advance(wheel, now_ns, fire_max);
}

static struct sp_rand rng;

/* A random value of random magnitude: below 2^e for e in [0, bits_max]. */
static uint64_t rng_magnitude(unsigned bits_max)
{
    unsigned e = (unsigned)sp_rand_below(&rng, bits_max + 1);
    return e == 0 ? 0 : sp_rand_next(&rng) >> (64 - e);
}

static uint64_t round_up_tick(uint64_t ns, unsigned shift)
{
    uint64_t mask = (1ULL << shift) - 1;
    return (ns & mask) == 0 ? ns : (ns | mask) + 1;
}

static void shuffle(unsigned *a, unsigned n)
{
    for (unsigned i = n; i > 1; i--) {
        unsigned j = (unsigned)sp_rand_below(&rng, i);
        unsigned t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- Init ---- */

static void test_init_rejects_bad_tick_shift(void **state)
{
    (void)state;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 0), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, SP_TIMER_TICK_SHIFT_MIN - 1), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, SP_TIMER_TICK_SHIFT_MAX + 1), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 63), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 64), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, UINT_MAX), -EINVAL);
    assert_int_equal(sp_timer_wheel_init(&wheel, 123, SP_TIMER_TICK_SHIFT_MIN), 0);
    assert_int_equal(sp_timer_wheel_init(&wheel, UINT64_MAX, SP_TIMER_TICK_SHIFT_MAX), 0);

    /* A fresh wheel is empty. */
    assert_int_equal(sp_timer_wheel_init(&wheel, 5000, 8), 0);
    assert_int_equal(wheel.armed_count, 0);
    assert_int_equal(wheel.armed_count_max, 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
    assert_int_equal(sp_timer_wheel_advance(&wheel, 1000000, FIRE_ALL), 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
}

/* ---- Order and the never-early rule ---- */

/*
 * Tick-aligned deadlines spread over levels 0..4, armed in random order:
 * stepping to deadline - 1 fires nothing, stepping to the deadline fires
 * exactly that timer.
 */
static void test_fires_in_order_never_early(void **state)
{
    (void)state;
    enum { N = 64 };
    const unsigned shift = 10;
    const uint64_t t0 = 1ULL << 30;
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, t0, shift), 0);
    boxes_init(boxes, N, &log);

    /* Distinct ticks: i^3 * 37 + i ticks ahead spans 1 tick to ~9.7M ticks. */
    uint64_t deadline[N];
    unsigned order[N];
    for (unsigned i = 0; i < N; i++) {
        uint64_t ticks = (uint64_t)i * i * i * 37 + i + 1;
        deadline[i] = t0 + (ticks << shift);
        order[i] = i;
    }
    sp_rand_seed(&rng, 0x1234567);
    shuffle(order, N);
    for (unsigned k = 0; k < N; k++)
        sp_timer_arm(&wheel, &boxes[order[k]].timer, deadline[order[k]]);
    assert_int_equal(wheel.armed_count, N);
    assert_int_equal(wheel.armed_count_max, N);

    for (unsigned i = 0; i < N; i++) {
        uint64_t next = sp_timer_wheel_next_ns(&wheel);
        assert_true(next <= deadline[i]);
        assert_true(next > (i == 0 ? t0 : deadline[i - 1]));
        assert_int_equal(advance(&wheel, &log, deadline[i] - 1, FIRE_ALL), 0);
        assert_int_equal(boxes[i].fire_count, 0);
        assert_true(sp_timer_armed(&boxes[i].timer));
        assert_int_equal(advance(&wheel, &log, deadline[i], FIRE_ALL), 1);
        assert_int_equal(boxes[i].fire_count, 1);
        assert_int_equal(log.count, i + 1);
        assert_int_equal(log.ids[i], i);
        assert_int_equal(wheel.armed_count, N - 1 - i);
    }
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
    assert_int_equal(wheel.fired_count, N);
}

/* One big jump past every deadline fires them all, earliest tick first. */
static void test_one_jump_fires_in_tick_order(void **state)
{
    (void)state;
    enum { N = 500 };
    const unsigned shift = 6;
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, shift), 0);
    boxes_init(boxes, N, &log);

    sp_rand_seed(&rng, 42);
    uint64_t tick[N];
    uint64_t tick_last = 0;
    for (unsigned i = 0; i < N; i++) {
        tick[i] = 1 + rng_magnitude(30); /* some share a tick: fine */
        tick_last = SP_MAX(tick_last, tick[i]);
        /* Unaligned deadlines inside the tick: tick i fires at i << shift. */
        sp_timer_arm(&wheel, &boxes[i].timer,
                     ((tick[i] - 1) << shift) + 1 + sp_rand_below(&rng, 63));
    }
    assert_int_equal(advance(&wheel, &log, tick_last << shift, FIRE_ALL), N);
    assert_int_equal(log.count, N);
    for (unsigned k = 1; k < N; k++)
        assert_true(tick[log.ids[k - 1]] <= tick[log.ids[k]]);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(boxes[i].fire_count, 1);
    assert_int_equal(wheel.armed_count, 0);
}

/*
 * An unaligned deadline: nothing before it, and it fires no later than the
 * end of its tick (the header's "at most one tick late").
 */
static void test_unaligned_deadline_within_one_tick(void **state)
{
    (void)state;
    const unsigned shift = 12;
    const uint64_t tick_ns = 1ULL << shift;
    static struct tbox boxes[3];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, shift), 0);
    boxes_init(boxes, 3, &log);

    uint64_t d = 100 * tick_ns + 1; /* just past a tick boundary */
    sp_timer_arm(&wheel, &boxes[0].timer, d);
    assert_int_equal(advance(&wheel, &log, d - 1, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 101 * tick_ns - 1, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 101 * tick_ns, FIRE_ALL), 1);
    assert_true(boxes[0].fired_now_ns >= d);

    /* Deadline on a tick boundary, now one ns short then exactly on it. */
    sp_timer_arm(&wheel, &boxes[1].timer, 200 * tick_ns);
    assert_int_equal(advance(&wheel, &log, 200 * tick_ns - 1, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 200 * tick_ns, FIRE_ALL), 1);
    assert_int_equal(boxes[1].fire_count, 1);

    /* Time that does not move, or moves back, fires nothing new. */
    sp_timer_arm(&wheel, &boxes[2].timer, 300 * tick_ns);
    assert_int_equal(advance(&wheel, &log, 200 * tick_ns, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 100, FIRE_ALL), 0);
    assert_int_equal(boxes[2].fire_count, 0);
    assert_int_equal(advance(&wheel, &log, 300 * tick_ns, FIRE_ALL), 1);
}

/* Many timers on one deadline fire together, each once. */
static void test_same_deadline_all_fire(void **state)
{
    (void)state;
    enum { N = 300 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, N, &log);
    for (unsigned i = 0; i < N; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, 1ULL << 40);
    assert_int_equal(advance(&wheel, &log, (1ULL << 40) - 1, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 1ULL << 40, FIRE_ALL), N);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(boxes[i].fire_count, 1);
}

/* ---- Cancel ---- */

static void test_cancel(void **state)
{
    (void)state;
    enum { N = 9 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, N, &log);

    /* Cancelling a timer that was never armed changes nothing. */
    sp_timer_cancel(&wheel, &boxes[0].timer);
    assert_int_equal(wheel.armed_count, 0);
    assert_false(sp_timer_armed(&boxes[0].timer));

    /* Three timers per slot: cancel the head, the middle and the tail. */
    for (unsigned i = 0; i < N; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, (i < 3 ? 1000 : i < 6 ? 100000 : 50000000));
    assert_int_equal(wheel.armed_count, N);
    sp_timer_cancel(&wheel, &boxes[0].timer);
    sp_timer_cancel(&wheel, &boxes[4].timer);
    sp_timer_cancel(&wheel, &boxes[8].timer);
    assert_false(sp_timer_armed(&boxes[0].timer));
    assert_int_equal(wheel.armed_count, N - 3);
    /* Twice is a no-op. */
    sp_timer_cancel(&wheel, &boxes[4].timer);
    assert_int_equal(wheel.armed_count, N - 3);
    assert_int_equal(wheel.armed_count_max, N);

    assert_int_equal(advance(&wheel, &log, 60000000, FIRE_ALL), N - 3);
    assert_int_equal(boxes[0].fire_count, 0);
    assert_int_equal(boxes[4].fire_count, 0);
    assert_int_equal(boxes[8].fire_count, 0);
    for (unsigned i = 0; i < N; i++) {
        if (i != 0 && i != 4 && i != 8)
            assert_int_equal(boxes[i].fire_count, 1);
    }

    /* Cancel of a fired (idle) timer is a no-op too. */
    sp_timer_cancel(&wheel, &boxes[1].timer);
    assert_int_equal(wheel.armed_count, 0);

    /* Cancel every timer of a slot: the slot must be empty afterwards. */
    sp_timer_arm(&wheel, &boxes[0].timer, 70000000);
    sp_timer_arm(&wheel, &boxes[1].timer, 70000000);
    sp_timer_cancel(&wheel, &boxes[1].timer);
    sp_timer_cancel(&wheel, &boxes[0].timer);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
    assert_int_equal(advance(&wheel, &log, UINT64_MAX / 2, FIRE_ALL), 0);
    assert_int_equal(wheel.armed_count, 0);
}

/*
 * fire_max leaves expired timers queued; cancelling them (head, middle,
 * tail of the queue) must keep them from firing later.
 */
static void test_cancel_expired_not_yet_fired(void **state)
{
    (void)state;
    enum { N = 8 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, N, &log);
    for (unsigned i = 0; i < N; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, 1000 + 16 * i);

    assert_int_equal(advance(&wheel, &log, 100000, 2), 2);
    assert_int_equal(wheel.armed_count, N - 2);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);

    /* The pending ones are still armed; cancel head, middle and tail. */
    unsigned pending[N];
    unsigned pending_count = 0;
    for (unsigned i = 0; i < N; i++) {
        if (boxes[i].fire_count == 0) {
            assert_true(sp_timer_armed(&boxes[i].timer));
            pending[pending_count++] = i;
        }
    }
    assert_int_equal(pending_count, N - 2);
    unsigned head = log.ids[1] + 1; /* fired in tick order, so next up */
    assert_int_equal(head, pending[0]);
    sp_timer_cancel(&wheel, &boxes[pending[0]].timer);
    sp_timer_cancel(&wheel, &boxes[pending[2]].timer);
    sp_timer_cancel(&wheel, &boxes[pending[pending_count - 1]].timer);
    assert_int_equal(wheel.armed_count, N - 5);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);

    assert_int_equal(advance(&wheel, &log, 100000, FIRE_ALL), N - 5);
    assert_int_equal(boxes[pending[0]].fire_count, 0);
    assert_int_equal(boxes[pending[2]].fire_count, 0);
    assert_int_equal(boxes[pending[pending_count - 1]].fire_count, 0);
    assert_int_equal(boxes[pending[1]].fire_count, 1);
    assert_int_equal(boxes[pending[3]].fire_count, 1);
    assert_int_equal(wheel.armed_count, 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);

    /* Cancel every queued timer: the queue must be empty, not dangling. */
    for (unsigned i = 0; i < 3; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, 0);
    for (unsigned i = 0; i < 3; i++)
        sp_timer_cancel(&wheel, &boxes[i].timer);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
    assert_int_equal(advance(&wheel, &log, 200000, FIRE_ALL), 0);
    sp_timer_arm(&wheel, &boxes[3].timer, 0);
    assert_int_equal(advance(&wheel, &log, 200000, FIRE_ALL), 1);
    assert_int_equal(boxes[3].fire_count, 2);
}

/* ---- Re-arm ---- */

static void test_rearm(void **state)
{
    (void)state;
    static struct tbox boxes[2];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    const unsigned shift = 8;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, shift), 0);
    boxes_init(boxes, 2, &log);

    /* Earlier: fires at the new deadline, and not again at the old one. */
    sp_timer_arm(&wheel, &boxes[0].timer, 1000000ULL << shift);
    sp_timer_arm(&wheel, &boxes[0].timer, 10ULL << shift);
    assert_int_equal(wheel.armed_count, 1);
    assert_int_equal(wheel.armed_count_max, 1);
    assert_int_equal(advance(&wheel, &log, (10ULL << shift) - 1, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, 10ULL << shift, FIRE_ALL), 1);
    assert_int_equal(advance(&wheel, &log, 2000000ULL << shift, FIRE_ALL), 0);
    assert_int_equal(boxes[0].fire_count, 1);

    /* Later: nothing at the old deadline. */
    uint64_t t = 2000000ULL << shift;
    sp_timer_arm(&wheel, &boxes[1].timer, t + (5ULL << shift));
    sp_timer_arm(&wheel, &boxes[1].timer, t + (5000ULL << shift));
    assert_int_equal(wheel.armed_count, 1);
    assert_int_equal(advance(&wheel, &log, t + (5ULL << shift), FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, t + (4999ULL << shift), FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, t + (5000ULL << shift), FIRE_ALL), 1);
    assert_int_equal(boxes[1].fire_count, 1);

    /* A timer queued as expired, re-armed into the future, waits for it. */
    t += 5000ULL << shift;
    sp_timer_arm(&wheel, &boxes[0].timer, t - 1);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    sp_timer_arm(&wheel, &boxes[0].timer, t + (64ULL << shift));
    assert_true(sp_timer_wheel_next_ns(&wheel) > t);
    assert_int_equal(advance(&wheel, &log, t, FIRE_ALL), 0);
    assert_int_equal(advance(&wheel, &log, t + (64ULL << shift), FIRE_ALL), 1);
    assert_int_equal(boxes[0].fire_count, 2);

    /* And a wheel timer re-armed into the past fires on the next advance. */
    t += 64ULL << shift;
    sp_timer_arm(&wheel, &boxes[1].timer, t + (100000ULL << shift));
    sp_timer_arm(&wheel, &boxes[1].timer, t - (3ULL << shift));
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    assert_int_equal(advance(&wheel, &log, t, FIRE_ALL), 1);
    assert_int_equal(boxes[1].fire_count, 2);
    assert_int_equal(wheel.armed_count, 0);
    assert_int_equal(wheel.armed_count_max, 1);
}

/* ---- Past and far future ---- */

static void test_arm_in_past_fires_on_next_advance(void **state)
{
    (void)state;
    static struct tbox boxes[3];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    const uint64_t t0 = 1000ULL << 20;
    assert_int_equal(sp_timer_wheel_init(&wheel, t0, 20), 0);
    boxes_init(boxes, 3, &log);

    sp_timer_arm(&wheel, &boxes[0].timer, 0);
    sp_timer_arm(&wheel, &boxes[1].timer, t0 - 1);
    sp_timer_arm(&wheel, &boxes[2].timer, t0); /* at the wheel's time */
    assert_int_equal(wheel.armed_count, 3);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    /* Time has not moved, yet they are due. Queue order is arm order. */
    assert_int_equal(advance(&wheel, &log, t0, FIRE_ALL), 3);
    assert_int_equal(log.ids[0], 0);
    assert_int_equal(log.ids[1], 1);
    assert_int_equal(log.ids[2], 2);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
}

/*
 * An idle shard sleeps until next_ns and advances there. With a deadline
 * 100 years out that loop must reach it in few steps, with next_ns always
 * in (now, deadline], and fire nothing early.
 */
static void sleep_loop_to(unsigned shift, uint64_t t0, uint64_t deadline)
{
    static struct tbox boxes[1];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, t0, shift), 0);
    boxes_init(boxes, 1, &log);
    sp_timer_arm(&wheel, &boxes[0].timer, deadline);

    uint64_t now = t0;
    unsigned steps = 0;
    while (boxes[0].fire_count == 0) {
        uint64_t next = sp_timer_wheel_next_ns(&wheel);
        assert_true(next > now);
        assert_true(next <= round_up_tick(deadline, shift));
        now = next;
        unsigned fired = advance(&wheel, &log, now, FIRE_ALL);
        if (now < deadline)
            assert_int_equal(fired, 0);
        assert_true(++steps <= SP_TIMER_LEVELS * SP_TIMER_SLOTS);
    }
    assert_true(boxes[0].fired_now_ns >= deadline);
    assert_true(boxes[0].fired_now_ns == round_up_tick(deadline, shift));
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
}

static void test_far_future_deadline(void **state)
{
    (void)state;
    const uint64_t year_ns = 365ULL * 24 * 3600 * SP_NSEC_PER_SEC;
    const uint64_t t0 = 12345ULL * SP_NSEC_PER_SEC + 678;
    const unsigned shifts[] = {SP_TIMER_TICK_SHIFT_MIN, 10, 20, SP_TIMER_TICK_SHIFT_MAX};
    for (unsigned i = 0; i < SP_ARRAY_LEN(shifts); i++) {
        sleep_loop_to(shifts[i], t0, t0 + 100 * year_ns);
        sleep_loop_to(shifts[i], t0, t0 + 100 * year_ns + 1);
        sleep_loop_to(shifts[i], t0, round_up_tick(t0 + 100 * year_ns, shifts[i]));
        sleep_loop_to(shifts[i], 0, 1ULL << 63);
    }

    /* Big random steps towards a 100-year deadline never fire it early. */
    static struct tbox boxes[1];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, t0, 10), 0);
    boxes_init(boxes, 1, &log);
    uint64_t deadline = t0 + 100 * year_ns;
    sp_timer_arm(&wheel, &boxes[0].timer, deadline);
    sp_rand_seed(&rng, 7);
    uint64_t now = t0;
    while (now < deadline - 1) {
        now += 1 + sp_rand_below(&rng, SP_MIN(deadline - 1 - now, year_ns / 3));
        assert_int_equal(advance(&wheel, &log, now, FIRE_ALL), 0);
        uint64_t next = sp_timer_wheel_next_ns(&wheel);
        assert_true(next > now);
        assert_true(next <= round_up_tick(deadline, 10));
    }
    assert_int_equal(boxes[0].fire_count, 0);
    assert_int_equal(advance(&wheel, &log, round_up_tick(deadline, 10), FIRE_ALL), 1);
}

/*
 * A deadline of UINT64_MAX (a "never" that callers will write) is after
 * every now a 64-bit clock can name but UINT64_MAX itself, so it must not
 * fire at any now below it, at any tick size. The sharp case is the smallest
 * tick, 16 ns: the ceiling tick of any deadline above 2^64 - 16 is 2^60, one
 * past the 60 bits of ticks that ten levels of 64 slots hold.
 */
static void test_deadline_max_never_early(void **state)
{
    (void)state;
    const unsigned shifts[] = {SP_TIMER_TICK_SHIFT_MIN, 5, 10, 20, SP_TIMER_TICK_SHIFT_MAX};
    for (unsigned i = 0; i < SP_ARRAY_LEN(shifts); i++) {
        static struct tbox boxes[2];
        static struct fire_log log;
        struct sp_timer_wheel wheel;
        assert_int_equal(sp_timer_wheel_init(&wheel, 1000, shifts[i]), 0);
        boxes_init(boxes, 2, &log);
        sp_timer_arm(&wheel, &boxes[0].timer, UINT64_MAX);
        sp_timer_arm(&wheel, &boxes[1].timer, UINT64_MAX - 1);
        assert_int_equal(wheel.armed_count, 2);
        uint64_t next = sp_timer_wheel_next_ns(&wheel);
        assert_true(next > 1000);

        /* Follow next_ns as an idle shard would, up to UINT64_MAX - 2. */
        uint64_t now = 1000;
        for (unsigned steps = 0; next != UINT64_MAX && next < UINT64_MAX - 2; steps++) {
            assert_true(next > now);
            now = next;
            assert_int_equal(advance(&wheel, &log, now, FIRE_ALL), 0);
            assert_true(steps < SP_TIMER_LEVELS * SP_TIMER_SLOTS);
            next = sp_timer_wheel_next_ns(&wheel);
        }
        assert_int_equal(advance(&wheel, &log, UINT64_MAX - 2, FIRE_ALL), 0);
        assert_int_equal(boxes[0].fire_count, 0);
        assert_int_equal(boxes[1].fire_count, 0);
        assert_int_equal(wheel.armed_count, 2);
        sp_timer_cancel(&wheel, &boxes[0].timer);
        sp_timer_cancel(&wheel, &boxes[1].timer);
        assert_int_equal(wheel.armed_count, 0);
    }
}

/* ---- Callbacks that arm and cancel ---- */

struct periodic {
    struct sp_timer timer;
    struct sp_timer_wheel *wheel;
    uint64_t period_ns;
    uint64_t deadline_ns;
    uint64_t *now_ns;
    unsigned fire_count;
    unsigned fire_count_max;
};

static void periodic_fire(struct sp_timer *timer, void *ctx)
{
    struct periodic *p = ctx;
    assert_ptr_equal(&p->timer, timer);
    assert_true(*p->now_ns >= p->deadline_ns);
    p->fire_count++;
    if (p->fire_count < p->fire_count_max) {
        p->deadline_ns += p->period_ns;
        sp_timer_arm(p->wheel, timer, p->deadline_ns);
        /* Cancelling and re-arming itself inside its callback is fine too. */
        sp_timer_cancel(p->wheel, timer);
        assert_false(sp_timer_armed(timer));
        sp_timer_arm(p->wheel, timer, p->deadline_ns);
    }
}

static void test_callback_rearms_itself(void **state)
{
    (void)state;
    struct sp_timer_wheel wheel;
    const unsigned shift = 6;
    uint64_t now = 0;
    assert_int_equal(sp_timer_wheel_init(&wheel, now, shift), 0);
    struct periodic p = {.wheel = &wheel,
                         .period_ns = 100ULL << shift,
                         .deadline_ns = 100ULL << shift,
                         .now_ns = &now,
                         .fire_count_max = 50};
    sp_timer_init(&p.timer, periodic_fire, &p);
    sp_timer_arm(&wheel, &p.timer, p.deadline_ns);
    for (unsigned k = 1; k <= 60; k++) {
        now = (uint64_t)k * (100ULL << shift) - 1;
        assert_int_equal(sp_timer_wheel_advance(&wheel, now, FIRE_ALL), 0);
        now++;
        assert_int_equal(sp_timer_wheel_advance(&wheel, now, FIRE_ALL), k <= 50 ? 1 : 0);
        assert_int_equal(p.fire_count, SP_MIN(k, 50u));
    }
    assert_false(sp_timer_armed(&p.timer));
    assert_int_equal(wheel.armed_count, 0);
    assert_int_equal(wheel.armed_count_max, 1);
}

/* Two timers due together, each cancelling the other: exactly one fires. */
struct rival {
    struct sp_timer timer;
    struct sp_timer_wheel *wheel;
    struct rival *other;
    unsigned fire_count;
};

static void rival_fire(struct sp_timer *timer, void *ctx)
{
    struct rival *r = ctx;
    (void)timer;
    r->fire_count++;
    sp_timer_cancel(r->wheel, &r->other->timer);
}

static void test_callback_cancels_other_due_timer(void **state)
{
    (void)state;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    /* Same tick (one slot), adjacent ticks, and queued as expired. */
    const uint64_t deadlines[][2] = {{1600, 1600}, {1600, 1616}, {0, 0}, {160000, 160016}};
    uint64_t now = 0;
    for (unsigned c = 0; c < SP_ARRAY_LEN(deadlines); c++) {
        struct rival a = {.wheel = &wheel}, b = {.wheel = &wheel};
        a.other = &b;
        b.other = &a;
        sp_timer_init(&a.timer, rival_fire, &a);
        sp_timer_init(&b.timer, rival_fire, &b);
        sp_timer_arm(&wheel, &a.timer, now + deadlines[c][0]);
        sp_timer_arm(&wheel, &b.timer, now + deadlines[c][1]);
        now += deadlines[c][1] + 10000;
        assert_int_equal(sp_timer_wheel_advance(&wheel, now, FIRE_ALL), 1);
        assert_int_equal(a.fire_count + b.fire_count, 1);
        assert_int_equal(wheel.armed_count, 0);
        now += 1000000;
        assert_int_equal(sp_timer_wheel_advance(&wheel, now, FIRE_ALL), 0);
        assert_int_equal(a.fire_count + b.fire_count, 1);
    }
}

/* A callback that arms others: one already due, one later, one far out. */
struct spawner {
    struct sp_timer timer;
    struct sp_timer_wheel *wheel;
    struct tbox *due;
    struct tbox *later;
    struct tbox *queued; /* already expired and queued: pushed into the future */
    uint64_t now_ns;
};

static void spawner_fire(struct sp_timer *timer, void *ctx)
{
    struct spawner *s = ctx;
    (void)timer;
    sp_timer_arm(s->wheel, &s->due->timer, s->now_ns - 5);
    sp_timer_arm(s->wheel, &s->later->timer, s->now_ns + 1000000);
    if (s->queued != NULL && sp_timer_armed(&s->queued->timer))
        sp_timer_arm(s->wheel, &s->queued->timer, s->now_ns + 2000000);
}

static void test_callback_arms_other_timers(void **state)
{
    (void)state;
    static struct tbox boxes[3];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, 3, &log);
    struct spawner s = {.wheel = &wheel, .due = &boxes[0], .later = &boxes[1]};
    sp_timer_init(&s.timer, spawner_fire, &s);

    sp_timer_arm(&wheel, &s.timer, 16000);
    s.now_ns = 20000;
    log.now_ns = s.now_ns;
    unsigned fired = sp_timer_wheel_advance(&wheel, s.now_ns, FIRE_ALL);
    /* The due one fires on this advance or, at the latest, the next. */
    fired += sp_timer_wheel_advance(&wheel, s.now_ns, FIRE_ALL);
    assert_int_equal(fired, 2);
    assert_int_equal(boxes[0].fire_count, 1);
    assert_int_equal(boxes[1].fire_count, 0);
    assert_true(sp_timer_armed(&boxes[1].timer));
    log.now_ns = s.now_ns + 1000000 - 1;
    assert_int_equal(sp_timer_wheel_advance(&wheel, log.now_ns, FIRE_ALL), 0);
    log.now_ns++;
    assert_int_equal(sp_timer_wheel_advance(&wheel, log.now_ns, FIRE_ALL), 1);
    assert_int_equal(boxes[1].fire_count, 1);

    /*
     * The spawner and boxes[2] are both due in one advance. Whichever
     * fires first, boxes[2] fires exactly once: now if it went first, or
     * 2 ms later if the spawner pushed it out of the queue.
     */
    uint64_t t = 2000000;
    s.queued = &boxes[2];
    s.now_ns = t;
    sp_timer_arm(&wheel, &boxes[2].timer, t - 100);
    sp_timer_arm(&wheel, &s.timer, t - 100);
    log.now_ns = t;
    fired = sp_timer_wheel_advance(&wheel, t, 2);
    assert_true(fired == 2);
    unsigned early = boxes[2].fire_count;
    assert_true(early <= 1);
    log.now_ns = t + 2000000 - 1;
    sp_timer_wheel_advance(&wheel, log.now_ns, FIRE_ALL);
    assert_int_equal(boxes[2].fire_count, early);
    log.now_ns = t + 2000000;
    sp_timer_wheel_advance(&wheel, log.now_ns, FIRE_ALL);
    assert_int_equal(boxes[2].fire_count, 1);
    sp_timer_cancel(&wheel, &boxes[0].timer);
    sp_timer_cancel(&wheel, &boxes[1].timer);
    assert_int_equal(wheel.armed_count, 0);
}

/* ---- fire_max, next_ns, counts ---- */

static void test_fire_max(void **state)
{
    (void)state;
    enum { N = 10 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, N, &log);
    for (unsigned i = 0; i < N; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, 160 + 16 * i);

    /* fire_max 0 moves time and queues, but fires nothing. */
    assert_int_equal(advance(&wheel, &log, 100000, 0), 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    assert_int_equal(wheel.armed_count, N);
    assert_int_equal(advance(&wheel, &log, 100000, 3), 3);
    assert_int_equal(advance(&wheel, &log, 100000, 3), 3);
    assert_int_equal(wheel.armed_count, N - 6);
    assert_int_equal(advance(&wheel, &log, 100000, 3), 3);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    assert_int_equal(advance(&wheel, &log, 100000, 3), 1);
    assert_int_equal(advance(&wheel, &log, 100000, 3), 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);
    /* Earliest deadline first, each once. */
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(log.ids[i], i);
        assert_int_equal(boxes[i].fire_count, 1);
    }
    assert_int_equal(wheel.fired_count, N);
}

/* A callback that re-arms itself in the past is bounded by fire_max. */
static void rearm_past_fire(struct sp_timer *timer, void *ctx)
{
    struct sp_timer_wheel *wheel = ctx;
    sp_timer_arm(wheel, timer, 0);
}

static void test_fire_max_bounds_self_rearming(void **state)
{
    (void)state;
    struct sp_timer_wheel wheel;
    struct sp_timer timer;
    assert_int_equal(sp_timer_wheel_init(&wheel, 1000, 4), 0);
    sp_timer_init(&timer, rearm_past_fire, &wheel);
    sp_timer_arm(&wheel, &timer, 0);
    assert_int_equal(sp_timer_wheel_advance(&wheel, 1000, 17), 17);
    assert_true(sp_timer_armed(&timer));
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    sp_timer_cancel(&wheel, &timer);
    assert_int_equal(sp_timer_wheel_advance(&wheel, 1000, 17), 0);
}

static void test_next_ns(void **state)
{
    (void)state;
    enum { N = 200 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    const unsigned shift = 7;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, shift), 0);
    boxes_init(boxes, N, &log);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);

    /* Inside level 0 the next slot is the deadline's own tick. */
    sp_timer_arm(&wheel, &boxes[0].timer, 5ULL << shift);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 5ULL << shift);
    sp_timer_arm(&wheel, &boxes[1].timer, (3ULL << shift) - 7);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 3ULL << shift);
    assert_int_equal(advance(&wheel, &log, 3ULL << shift, FIRE_ALL), 1);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 5ULL << shift);
    sp_timer_cancel(&wheel, &boxes[0].timer);
    assert_true(sp_timer_wheel_next_ns(&wheel) == UINT64_MAX);

    /* Due but not fired (fire_max 0): 0. */
    sp_timer_arm(&wheel, &boxes[0].timer, 4ULL << shift);
    assert_int_equal(advance(&wheel, &log, 4ULL << shift, 0), 0);
    assert_true(sp_timer_wheel_next_ns(&wheel) == 0);
    assert_int_equal(advance(&wheel, &log, 4ULL << shift, FIRE_ALL), 1);

    /* Random sets: never later than the earliest deadline's tick. */
    sp_rand_seed(&rng, 99);
    uint64_t now = 4ULL << shift;
    for (unsigned round = 0; round < 50; round++) {
        uint64_t earliest = UINT64_MAX;
        for (unsigned i = 0; i < N; i++) {
            uint64_t d = now + 1 + rng_magnitude(48);
            sp_timer_arm(&wheel, &boxes[i].timer, d);
            earliest = SP_MIN(earliest, round_up_tick(d, shift));
            uint64_t next = sp_timer_wheel_next_ns(&wheel);
            assert_true(next <= earliest);
            assert_true(next > now);
        }
        /* Sleep-until-next loop to the earliest: never fires before it. */
        while (log.count == 0) {
            uint64_t next = sp_timer_wheel_next_ns(&wheel);
            assert_true(next > now);
            assert_true(next <= earliest);
            now = next;
            unsigned fired = advance(&wheel, &log, now, FIRE_ALL);
            assert_true(fired == 0 || now == earliest);
        }
        for (unsigned i = 0; i < N; i++)
            sp_timer_cancel(&wheel, &boxes[i].timer);
        log.count = 0;
    }
}

static void test_armed_count_high_water(void **state)
{
    (void)state;
    enum { N = 6 };
    static struct tbox boxes[N];
    static struct fire_log log;
    struct sp_timer_wheel wheel;
    assert_int_equal(sp_timer_wheel_init(&wheel, 0, 4), 0);
    boxes_init(boxes, N, &log);
    for (unsigned i = 0; i < 5; i++)
        sp_timer_arm(&wheel, &boxes[i].timer, 1000 * (i + 1));
    assert_int_equal(wheel.armed_count, 5);
    assert_int_equal(wheel.armed_count_max, 5);
    sp_timer_cancel(&wheel, &boxes[0].timer);
    sp_timer_cancel(&wheel, &boxes[1].timer);
    assert_int_equal(wheel.armed_count, 3);
    assert_int_equal(wheel.armed_count_max, 5);
    sp_timer_arm(&wheel, &boxes[2].timer, 99999); /* re-arm: still 3 */
    assert_int_equal(wheel.armed_count, 3);
    assert_int_equal(wheel.armed_count_max, 5);
    sp_timer_arm(&wheel, &boxes[0].timer, 7);
    sp_timer_arm(&wheel, &boxes[1].timer, 7);
    sp_timer_arm(&wheel, &boxes[5].timer, 7);
    assert_int_equal(wheel.armed_count, 6);
    assert_int_equal(wheel.armed_count_max, 6);
    assert_int_equal(advance(&wheel, &log, 1000000, FIRE_ALL), 6);
    assert_int_equal(wheel.armed_count, 0);
    assert_int_equal(wheel.armed_count_max, 6);
    assert_int_equal(wheel.fired_count, 6);
}

/* ---- Randomized run against a reference model ---- */

enum { MODEL_N = 2000 };

struct model_timer {
    struct sp_timer timer;
    bool armed;
    uint64_t deadline_ns;
    unsigned fire_count;
    unsigned arm_count;
};

struct model {
    struct sp_timer_wheel wheel;
    unsigned shift;
    uint64_t now_ns;
    uint64_t armed_count;
    struct model_timer timers[MODEL_N];
};

static void model_fire(struct sp_timer *timer, void *ctx)
{
    struct model *m = ctx;
    struct model_timer *t = SP_CONTAINER_OF(timer, struct model_timer, timer);
    assert_true(t->armed);                    /* fires only while armed */
    assert_true(m->now_ns >= t->deadline_ns); /* never early */
    t->armed = false;
    t->fire_count++;
    m->armed_count--;
}

static void model_arm(struct model *m, struct model_timer *t, uint64_t deadline_ns)
{
    if (!t->armed)
        m->armed_count++;
    t->armed = true;
    t->deadline_ns = deadline_ns;
    t->arm_count++;
    sp_timer_arm(&m->wheel, &t->timer, deadline_ns);
}

static uint64_t model_deadline(const struct model *m)
{
    switch (sp_rand_below(&rng, 8)) {
    case 0: /* in the past or now */
        return m->now_ns - SP_MIN(m->now_ns, rng_magnitude(40));
    case 1: /* far out */
        return m->now_ns + rng_magnitude(61);
    default:
        return m->now_ns + rng_magnitude(36);
    }
}

static void model_check(struct model *m)
{
    assert_int_equal(m->wheel.armed_count, m->armed_count);
    uint64_t due_min = UINT64_MAX;
    for (unsigned i = 0; i < MODEL_N; i++) {
        struct model_timer *t = &m->timers[i];
        assert_int_equal(sp_timer_armed(&t->timer), t->armed);
        if (!t->armed)
            continue;
        /* Not late: anything due at this now has fired. */
        uint64_t due = round_up_tick(t->deadline_ns, m->shift);
        assert_true(due > m->now_ns);
        due_min = SP_MIN(due_min, due);
    }
    uint64_t next = sp_timer_wheel_next_ns(&m->wheel);
    assert_true(next <= due_min);
    if (due_min != UINT64_MAX)
        assert_true(next > m->now_ns);
}

static void model_run(unsigned shift, uint64_t seed)
{
    static struct model m;
    memset(&m, 0, sizeof(m));
    sp_rand_seed(&rng, seed);
    m.shift = shift;
    m.now_ns = 1ULL << 40;
    assert_int_equal(sp_timer_wheel_init(&m.wheel, m.now_ns, shift), 0);
    for (unsigned i = 0; i < MODEL_N; i++) {
        sp_timer_init(&m.timers[i].timer, model_fire, &m);
        model_arm(&m, &m.timers[i], model_deadline(&m));
    }
    /* Those armed in the past fire on this advance, though time stands. */
    sp_timer_wheel_advance(&m.wheel, m.now_ns, FIRE_ALL);
    model_check(&m);

    for (unsigned step = 0; step < 3000; step++) {
        /* Random cancels and re-arms (of armed, fired and idle timers). */
        unsigned ops = (unsigned)sp_rand_below(&rng, 20);
        for (unsigned k = 0; k < ops; k++) {
            struct model_timer *t = &m.timers[sp_rand_below(&rng, MODEL_N)];
            if (sp_rand_below(&rng, 3) == 0) {
                if (t->armed)
                    m.armed_count--;
                t->armed = false;
                sp_timer_cancel(&m.wheel, &t->timer);
            } else {
                model_arm(&m, t, model_deadline(&m));
            }
        }
        /* Steps of every size, staying below 2^62. */
        uint64_t step_ns =
            sp_rand_below(&rng, 10) == 0 ? 0 : rng_magnitude(sp_rand_below(&rng, 4) == 0 ? 44 : 30);
        if (m.now_ns + step_ns < (1ULL << 62))
            m.now_ns += step_ns;
        sp_timer_wheel_advance(&m.wheel, m.now_ns, FIRE_ALL);
        model_check(&m);
    }

    /* Flush: every timer still armed fires exactly once. */
    m.now_ns = UINT64_MAX - (1ULL << SP_TIMER_TICK_SHIFT_MAX);
    sp_timer_wheel_advance(&m.wheel, m.now_ns, FIRE_ALL);
    model_check(&m);
    assert_int_equal(m.armed_count, 0);
    uint64_t fired_total = 0;
    for (unsigned i = 0; i < MODEL_N; i++) {
        assert_true(m.timers[i].fire_count <= m.timers[i].arm_count);
        fired_total += m.timers[i].fire_count;
    }
    assert_int_equal(m.wheel.fired_count, fired_total);
    assert_true(fired_total >= MODEL_N);
}

static void test_random_against_model(void **state)
{
    (void)state;
    model_run(SP_TIMER_TICK_SHIFT_MIN, 0x9E3779B97F4A7C15ULL);
    model_run(10, 0xDEADBEEFCAFEULL);
    model_run(20, 12345);
    model_run(SP_TIMER_TICK_SHIFT_MAX, 777);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_tick_shift),
        cmocka_unit_test(test_fires_in_order_never_early),
        cmocka_unit_test(test_one_jump_fires_in_tick_order),
        cmocka_unit_test(test_unaligned_deadline_within_one_tick),
        cmocka_unit_test(test_same_deadline_all_fire),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_expired_not_yet_fired),
        cmocka_unit_test(test_rearm),
        cmocka_unit_test(test_arm_in_past_fires_on_next_advance),
        cmocka_unit_test(test_far_future_deadline),
        cmocka_unit_test(test_deadline_max_never_early),
        cmocka_unit_test(test_callback_rearms_itself),
        cmocka_unit_test(test_callback_cancels_other_due_timer),
        cmocka_unit_test(test_callback_arms_other_timers),
        cmocka_unit_test(test_fire_max),
        cmocka_unit_test(test_fire_max_bounds_self_rearming),
        cmocka_unit_test(test_next_ns),
        cmocka_unit_test(test_armed_count_high_water),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
