/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hierarchical timer wheel (see sp_timer.h for the scheme).
 *
 * Invariant that makes the next-deadline search cheap: a timer in level l has
 * a tick that agrees with `now_tick` in every digit above l and is strictly
 * greater in digit l. So within a level, occupied slots all lie after the
 * current slot and never wrap, and every timer in a lower level is due before
 * every timer in a higher one. advance() keeps the invariant by moving
 * `now_tick` only to the start of a slot it is emptying, or to a time before
 * every remaining slot.
 */
#include <errno.h>
#include <string.h>

#include "sp_timer.h"

/*
 * The largest tick is the ceiling of UINT64_MAX / 2^SP_TIMER_TICK_SHIFT_MIN,
 * 2^60, whose highest bit (60) belongs to level 10: eleven levels hold every
 * tick, so no deadline is clamped (a clamp would fire early).
 */
_Static_assert((64 - SP_TIMER_TICK_SHIFT_MIN) / SP_TIMER_SLOT_BITS < SP_TIMER_LEVELS,
               "the levels cover every tick of a 64-bit nanosecond clock");

int sp_timer_wheel_init(struct sp_timer_wheel *wheel, uint64_t now_ns, unsigned tick_shift)
{
    SP_ASSERT(wheel != NULL);
    if (tick_shift < SP_TIMER_TICK_SHIFT_MIN || tick_shift > SP_TIMER_TICK_SHIFT_MAX)
        return -EINVAL;
    memset(wheel, 0, sizeof(*wheel));
    wheel->tick_shift = tick_shift;
    wheel->now_tick = now_ns >> tick_shift;
    return 0;
}

void sp_timer_init(struct sp_timer *timer, sp_timer_fn *fn, void *ctx)
{
    SP_ASSERT(timer != NULL);
    SP_ASSERT(fn != NULL);
    memset(timer, 0, sizeof(*timer));
    timer->fn = fn;
    timer->ctx = ctx;
}

/* ---- Lists ---- */

static void list_push(struct sp_timer **head, struct sp_timer *timer)
{
    timer->prev = NULL;
    timer->next = *head;
    if (*head != NULL)
        (*head)->prev = timer;
    *head = timer;
}

static void expired_append(struct sp_timer_wheel *wheel, struct sp_timer *timer)
{
    timer->state = SP_TIMER_EXPIRED;
    timer->next = NULL;
    timer->prev = wheel->expired_tail;
    if (wheel->expired_tail != NULL)
        wheel->expired_tail->next = timer;
    else
        wheel->expired_head = timer;
    wheel->expired_tail = timer;
}

static void unlink_timer(struct sp_timer_wheel *wheel, struct sp_timer *timer)
{
    if (timer->next != NULL)
        timer->next->prev = timer->prev;
    if (timer->state == SP_TIMER_EXPIRED) {
        if (timer->prev != NULL)
            timer->prev->next = timer->next;
        else
            wheel->expired_head = timer->next;
        if (wheel->expired_tail == timer)
            wheel->expired_tail = timer->prev;
        return;
    }
    SP_ASSERT(timer->state == SP_TIMER_WHEEL);
    struct sp_timer **head = &wheel->slots[timer->level][timer->slot];
    if (timer->prev != NULL) {
        timer->prev->next = timer->next;
    } else {
        SP_ASSERT(*head == timer);
        *head = timer->next;
        if (*head == NULL)
            wheel->occupied[timer->level] &= ~(1ULL << timer->slot);
    }
}

/* ---- Placement ---- */

/* Puts an armed timer where its tick says, relative to the wheel's now. */
static void place(struct sp_timer_wheel *wheel, struct sp_timer *timer)
{
    if (timer->tick <= wheel->now_tick) {
        expired_append(wheel, timer);
        return;
    }
    uint64_t masked = (wheel->now_tick ^ timer->tick) | (SP_TIMER_SLOTS - 1);
    unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
    unsigned level = significant / SP_TIMER_SLOT_BITS;
    SP_ASSERT(level < SP_TIMER_LEVELS);
    unsigned slot = (unsigned)(timer->tick >> (level * SP_TIMER_SLOT_BITS)) & (SP_TIMER_SLOTS - 1);

    timer->state = SP_TIMER_WHEEL;
    timer->level = (uint8_t)level;
    timer->slot = (uint8_t)slot;
    list_push(&wheel->slots[level][slot], timer);
    wheel->occupied[level] |= 1ULL << slot;
}

void sp_timer_arm(struct sp_timer_wheel *wheel, struct sp_timer *timer, uint64_t deadline_ns)
{
    SP_ASSERT(wheel != NULL);
    SP_ASSERT(timer->fn != NULL);
    if (sp_timer_armed(timer))
        sp_timer_cancel(wheel, timer);

    uint64_t mask = (1ULL << wheel->tick_shift) - 1;
    uint64_t tick = (deadline_ns >> wheel->tick_shift) + ((deadline_ns & mask) != 0);
    timer->deadline_ns = deadline_ns;
    timer->tick = tick;
    place(wheel, timer);

    wheel->armed_count++;
    if (wheel->armed_count > wheel->armed_count_max)
        wheel->armed_count_max = wheel->armed_count;
}

void sp_timer_cancel(struct sp_timer_wheel *wheel, struct sp_timer *timer)
{
    SP_ASSERT(wheel != NULL);
    if (!sp_timer_armed(timer))
        return;
    SP_ASSERT(wheel->armed_count > 0);
    unlink_timer(wheel, timer);
    timer->state = SP_TIMER_IDLE;
    timer->next = timer->prev = NULL;
    wheel->armed_count--;
}

/* ---- Advancing ---- */

/*
 * Finds the earliest occupied slot. Returns false when the wheel is empty;
 * else sets the level, slot and the tick at which that slot starts.
 */
static bool next_slot(const struct sp_timer_wheel *wheel, unsigned *level_out, unsigned *slot_out,
                      uint64_t *tick_out)
{
    for (unsigned level = 0; level < SP_TIMER_LEVELS; level++) {
        uint64_t occupied = wheel->occupied[level];
        if (occupied == 0)
            continue;
        unsigned shift = level * SP_TIMER_SLOT_BITS;
        unsigned now_slot = (unsigned)(wheel->now_tick >> shift) & (SP_TIMER_SLOTS - 1);
        /* By the invariant no occupied slot lies at or before now_slot. */
        SP_ASSERT((occupied & ((2ULL << now_slot) - 1)) == 0);
        unsigned slot = (unsigned)__builtin_ctzll(occupied);
        uint64_t slot_range = 1ULL << shift;
        /* The top level spans all 64 bits: it starts at tick 0. */
        unsigned span_bits = shift + SP_TIMER_SLOT_BITS;
        uint64_t level_start = span_bits >= 64 ? 0 : wheel->now_tick & ~((1ULL << span_bits) - 1);
        *level_out = level;
        *slot_out = slot;
        *tick_out = level_start + slot * slot_range;
        SP_ASSERT(*tick_out > wheel->now_tick);
        return true;
    }
    return false;
}

/* Empties one slot: due timers expire, the others move to lower levels. */
static void cascade(struct sp_timer_wheel *wheel, unsigned level, unsigned slot, uint64_t tick)
{
    struct sp_timer *timer = wheel->slots[level][slot];
    wheel->slots[level][slot] = NULL;
    wheel->occupied[level] &= ~(1ULL << slot);
    wheel->now_tick = tick;
    while (timer != NULL) {
        struct sp_timer *next = timer->next;
        SP_ASSERT(timer->tick >= tick);
        SP_ASSERT(level > 0 || timer->tick == tick);
        place(wheel, timer);
        timer = next;
    }
}

unsigned sp_timer_wheel_advance(struct sp_timer_wheel *wheel, uint64_t now_ns, unsigned fire_max)
{
    SP_ASSERT(wheel != NULL);
    uint64_t target = now_ns >> wheel->tick_shift;
    if (target > wheel->now_tick) {
        unsigned level, slot;
        uint64_t tick;
        while (next_slot(wheel, &level, &slot, &tick) && tick <= target)
            cascade(wheel, level, slot, tick);
        wheel->now_tick = target;
    }

    unsigned fired = 0;
    while (fired < fire_max && wheel->expired_head != NULL) {
        struct sp_timer *timer = wheel->expired_head;
        sp_timer_cancel(wheel, timer);
        wheel->fired_count++;
        fired++;
        timer->fn(timer, timer->ctx);
    }
    return fired;
}

uint64_t sp_timer_wheel_next_ns(const struct sp_timer_wheel *wheel)
{
    SP_ASSERT(wheel != NULL);
    if (wheel->expired_head != NULL)
        return 0;
    unsigned level, slot;
    uint64_t tick;
    if (!next_slot(wheel, &level, &slot, &tick))
        return UINT64_MAX;
    if (tick > (UINT64_MAX >> wheel->tick_shift))
        return UINT64_MAX;
    return tick << wheel->tick_shift;
}
