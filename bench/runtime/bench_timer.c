/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Timer wheel benchmarks, on a wheel that already holds 10,000 timers spread
 * over the next ten seconds (a busy shard's load):
 *  - timer/arm_cancel: arm a timer 0..1 s ahead and cancel it (one pair).
 *  - timer/arm_fire: arm a timer due in the past, then advance to fire it.
 */
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_rand.h"
#include "sp_timer.h"

#define BACKGROUND_TIMERS 10000u
#define ACTIVE_TIMERS 1024u

struct timer_bench {
    struct sp_timer_wheel wheel;
    uint64_t now_ns;
    uint64_t fired;
    struct sp_timer background[BACKGROUND_TIMERS];
    struct sp_timer active[ACTIVE_TIMERS];
};

static void on_fire(struct sp_timer *timer, void *ctx)
{
    struct timer_bench *b = ctx;
    (void)timer;
    b->fired++;
}

static void *timer_setup(int64_t arg)
{
    (void)arg;
    struct timer_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->now_ns = 1000 * SP_NSEC_PER_SEC;
    if (sp_timer_wheel_init(&b->wheel, b->now_ns, 10) < 0) {
        free(b);
        return NULL;
    }
    struct sp_rand rand;
    sp_rand_seed(&rand, 88172645463325252ull);
    for (unsigned i = 0; i < BACKGROUND_TIMERS; i++) {
        sp_timer_init(&b->background[i], on_fire, b);
        sp_timer_arm(&b->wheel, &b->background[i],
                     b->now_ns + 1 + sp_rand_below(&rand, 10 * SP_NSEC_PER_SEC));
    }
    for (unsigned i = 0; i < ACTIVE_TIMERS; i++)
        sp_timer_init(&b->active[i], on_fire, b);
    return b;
}

static double arm_cancel_run(void *state, uint64_t iterations)
{
    struct timer_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        struct sp_timer *t = &b->active[i & (ACTIVE_TIMERS - 1)];
        sp_timer_arm(&b->wheel, t, b->now_ns + 1 + (i * 7919u) % SP_NSEC_PER_SEC);
        sp_timer_cancel(&b->wheel, t);
    }
    return 0;
}

static double arm_fire_run(void *state, uint64_t iterations)
{
    struct timer_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        sp_timer_arm(&b->wheel, &b->active[i & (ACTIVE_TIMERS - 1)], b->now_ns);
        (void)sp_timer_wheel_advance(&b->wheel, b->now_ns, 1);
    }
    return 0;
}

static void timer_teardown(void *state)
{
    free(state);
}

const struct sp_bench_case sp_bench_timer_cases[] = {
    {.name = "timer/arm_cancel",
     .run_batch = 1024,
     .setup = timer_setup,
     .run = arm_cancel_run,
     .teardown = timer_teardown},
    {.name = "timer/arm_fire",
     .run_batch = 1024,
     .setup = timer_setup,
     .run = arm_fire_run,
     .teardown = timer_teardown},
    {.name = NULL},
};
