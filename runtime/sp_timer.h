/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hierarchical timer wheel, one per shard (not thread-safe by design).
 *
 * Time is nanoseconds on the monotonic clock, quantised to ticks of
 * 2^tick_shift ns. The wheel has SP_TIMER_LEVELS levels of 64 slots; a level-l
 * slot spans 64^l ticks, so eleven levels cover every tick a 64-bit
 * nanosecond clock can name and no deadline is ever clamped. A timer sits in the level
 * given by the highest bit in which its tick differs from the wheel's current
 * tick, and cascades down one or more levels as the wheel approaches it (the
 * scheme of Varghese & Lauck, laid out as in the Linux and Tokio wheels).
 *
 * Arm and cancel are O(1): a slot is an intrusive doubly-linked list and each
 * level keeps a 64-bit occupancy mask. Finding the next deadline is
 * O(levels) through those masks, so an idle shard can sleep until exactly the
 * next slot instead of ticking.
 *
 * A timer never fires early: its tick is the ceiling of its deadline and it
 * fires once the wheel's tick, the floor of now, reaches it. It fires at most
 * one tick late (plus the caller's own lateness in calling advance).
 */
#ifndef SP_TIMER_H
#define SP_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_common.h"

#define SP_TIMER_SLOT_BITS 6
#define SP_TIMER_SLOTS (1u << SP_TIMER_SLOT_BITS)
#define SP_TIMER_LEVELS 11
/* Smallest tick: 16 ns; eleven levels of 6 bits then hold every tick. */
#define SP_TIMER_TICK_SHIFT_MIN 4
#define SP_TIMER_TICK_SHIFT_MAX 30

struct sp_timer;
typedef void sp_timer_fn(struct sp_timer *timer, void *ctx);

/* Where an armed timer is: a wheel slot or the list of expired timers. */
enum sp_timer_state { SP_TIMER_IDLE = 0, SP_TIMER_WHEEL, SP_TIMER_EXPIRED };

struct sp_timer {
    struct sp_timer *next;
    struct sp_timer *prev;
    uint64_t deadline_ns;
    uint64_t tick;
    sp_timer_fn *fn;
    void *ctx;
    uint8_t state; /* enum sp_timer_state */
    uint8_t level;
    uint8_t slot;
};

struct sp_timer_wheel {
    uint64_t now_tick; /* every timer at or before this tick has fired */
    unsigned tick_shift;
    uint64_t occupied[SP_TIMER_LEVELS];
    struct sp_timer *slots[SP_TIMER_LEVELS][SP_TIMER_SLOTS];
    struct sp_timer *expired_head; /* fired on the next advance, in arm order */
    struct sp_timer *expired_tail;
    uint64_t armed_count;
    uint64_t armed_count_max; /* high-water mark */
    uint64_t fired_count;
};

/*
 * Initialises `wheel` at time `now_ns` with ticks of 2^tick_shift ns
 * (SP_TIMER_TICK_SHIFT_MIN..SP_TIMER_TICK_SHIFT_MAX). Returns 0 or -EINVAL.
 */
SP_MUST_CHECK int sp_timer_wheel_init(struct sp_timer_wheel *wheel, uint64_t now_ns,
                                      unsigned tick_shift);

/* Prepares `timer` to call `fn(timer, ctx)` when it fires. */
void sp_timer_init(struct sp_timer *timer, sp_timer_fn *fn, void *ctx);

/*
 * Arms `timer` to fire at `deadline_ns` (re-arms it if already armed). A
 * deadline at or before the wheel's time fires on the next advance. O(1).
 */
void sp_timer_arm(struct sp_timer_wheel *wheel, struct sp_timer *timer, uint64_t deadline_ns);

/* Disarms `timer`; a no-op for a timer that is not armed. O(1). */
void sp_timer_cancel(struct sp_timer_wheel *wheel, struct sp_timer *timer);

static inline bool sp_timer_armed(const struct sp_timer *timer)
{
    return timer->state != SP_TIMER_IDLE;
}

/*
 * Moves the wheel to `now_ns` and fires every timer whose deadline is at or
 * before it, at most `fire_max` of them (the rest stay queued and fire on the
 * next call). Callbacks may arm and cancel any timer, themselves included.
 * Returns the number fired.
 */
unsigned sp_timer_wheel_advance(struct sp_timer_wheel *wheel, uint64_t now_ns, unsigned fire_max);

/*
 * The earliest time at which advance could fire something: 0 when timers are
 * already due, UINT64_MAX when nothing is armed (or the first deadline lies
 * past the last tick boundary before UINT64_MAX). May be earlier than the
 * first deadline (the start of a coarse slot that needs cascading), never
 * later than that deadline rounded up to a whole tick.
 */
uint64_t sp_timer_wheel_next_ns(const struct sp_timer_wheel *wheel);

#endif /* SP_TIMER_H */
