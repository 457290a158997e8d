/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Single-producer single-consumer ring between two shards. It carries
 * messages (a function and its argument, 16 bytes) by value, so sending needs
 * no allocation. Capacity is a power of two fixed at init; a full ring is
 * backpressure (push returns fewer items than asked), never a drop or a block.
 *
 * Layout: the producer's index and its cached copy of the consumer's index sit
 * on one cache line, the consumer's index and its cached copy of the
 * producer's on another, and the slots on their own lines. Each core therefore
 * writes only its own line, and reads the other's only when its cached copy
 * says the ring looks full (producer) or empty (consumer). Indices run freely
 * over 2^32 and wrap; occupancy is always `tail - head` in unsigned arithmetic.
 *
 * Thread rules: exactly one thread pushes and exactly one thread pops. Any
 * number of threads may call sp_ring_count_approx() for monitoring.
 */
#ifndef SP_RING_H
#define SP_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp_common.h"

struct sp_shard;

/* A cross-shard message: `fn(shard, arg)` runs on the receiving shard. */
typedef void sp_msg_fn(struct sp_shard *shard, void *arg);

struct sp_msg {
    sp_msg_fn *fn;
    void *arg;
};

/* Largest capacity: keeps `tail - head` unambiguous over 32-bit indices. */
#define SP_RING_CAPACITY_MAX (1u << 30)

struct sp_ring {
    /* Written by the producer only. */
    struct {
        _Atomic uint32_t tail;
        uint32_t head_cache;
        uint32_t count_max; /* high-water mark of occupancy seen at push */
    } prod SP_CACHELINE_ALIGNED;
    /* Written by the consumer only. */
    struct {
        _Atomic uint32_t head;
        uint32_t tail_cache;
    } cons SP_CACHELINE_ALIGNED;
    /* Read-only after init. */
    struct {
        uint32_t capacity;
        uint32_t mask;
        struct sp_msg *slots;
    } conf SP_CACHELINE_ALIGNED;
};

/*
 * Initialises `ring` with `capacity` slots (a power of two, at most
 * SP_RING_CAPACITY_MAX). `start_index` sets both indices; tests use values
 * near UINT32_MAX to exercise index wrap-around, everyone else passes 0.
 * Returns 0, -EINVAL for a bad capacity, or -ENOMEM.
 */
SP_MUST_CHECK int sp_ring_init(struct sp_ring *ring, uint32_t capacity, uint32_t start_index);

/* Frees the slots. The ring must not be in use by either side. */
void sp_ring_deinit(struct sp_ring *ring);

/*
 * Pushes up to `n` messages, in order. Returns how many were pushed (0 when
 * full). Producer side only.
 */
static inline unsigned sp_ring_push(struct sp_ring *ring, const struct sp_msg *msgs, unsigned n)
{
    uint32_t tail = atomic_load_explicit(&ring->prod.tail, memory_order_relaxed);
    uint32_t capacity = ring->conf.capacity;
    uint32_t space = capacity - (tail - ring->prod.head_cache);

    if (SP_UNLIKELY(space < n)) {
        ring->prod.head_cache = atomic_load_explicit(&ring->cons.head, memory_order_acquire);
        space = capacity - (tail - ring->prod.head_cache);
        SP_ASSERT(space <= capacity);
        if (space < n)
            n = space;
        if (n == 0)
            return 0;
    }
    uint32_t mask = ring->conf.mask;
    for (unsigned i = 0; i < n; i++)
        ring->conf.slots[(tail + i) & mask] = msgs[i];
    atomic_store_explicit(&ring->prod.tail, tail + n, memory_order_release);

    /* An upper bound of the occupancy, since head_cache may be stale. */
    uint32_t used = tail + n - ring->prod.head_cache;
    if (used > ring->prod.count_max)
        ring->prod.count_max = used;
    return n;
}

/*
 * Pops up to `n` messages into `out`, in order. Returns how many were popped
 * (0 when empty). Consumer side only.
 */
static inline unsigned sp_ring_pop(struct sp_ring *ring, struct sp_msg *out, unsigned n)
{
    uint32_t head = atomic_load_explicit(&ring->cons.head, memory_order_relaxed);
    uint32_t avail = ring->cons.tail_cache - head;

    if (avail < n) {
        ring->cons.tail_cache = atomic_load_explicit(&ring->prod.tail, memory_order_acquire);
        avail = ring->cons.tail_cache - head;
        SP_ASSERT(avail <= ring->conf.capacity);
        if (avail < n)
            n = avail;
        if (n == 0)
            return 0;
    }
    uint32_t mask = ring->conf.mask;
    for (unsigned i = 0; i < n; i++)
        out[i] = ring->conf.slots[(head + i) & mask];
    atomic_store_explicit(&ring->cons.head, head + n, memory_order_release);
    return n;
}

/*
 * True when the consumer would find nothing to pop. Consumer side only; reads
 * the producer's index (acquire), so it sees every push that came before.
 */
static inline bool sp_ring_empty(struct sp_ring *ring)
{
    uint32_t head = atomic_load_explicit(&ring->cons.head, memory_order_relaxed);
    if (ring->cons.tail_cache != head)
        return false;
    ring->cons.tail_cache = atomic_load_explicit(&ring->prod.tail, memory_order_acquire);
    return ring->cons.tail_cache == head;
}

/* Occupancy as seen from any thread; exact only when both sides are idle. */
static inline uint32_t sp_ring_count_approx(const struct sp_ring *ring)
{
    uint32_t head = atomic_load_explicit(&ring->cons.head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&ring->prod.tail, memory_order_relaxed);
    return tail - head;
}

#endif /* SP_RING_H */
