/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Set-up and tear-down of the SPSC ring; the push and pop paths are inline in
 * sp_ring.h. Slots are allocated cache-line aligned so that the first slot
 * never shares a line with anything the other core writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ring.h"

int sp_ring_init(struct sp_ring *ring, uint32_t capacity, uint32_t start_index)
{
    SP_ASSERT(ring != NULL);
    if (!sp_is_pow2(capacity) || capacity > SP_RING_CAPACITY_MAX)
        return -EINVAL;

    memset(ring, 0, sizeof(*ring));
    size_t bytes = (size_t)capacity * sizeof(struct sp_msg);
    bytes = (bytes + SP_CACHELINE_BYTES - 1) & ~(size_t)(SP_CACHELINE_BYTES - 1);
    struct sp_msg *slots = aligned_alloc(SP_CACHELINE_BYTES, bytes);
    if (slots == NULL)
        return -ENOMEM;
    memset(slots, 0, bytes);

    ring->conf.capacity = capacity;
    ring->conf.mask = capacity - 1;
    ring->conf.slots = slots;
    atomic_init(&ring->prod.tail, start_index);
    ring->prod.head_cache = start_index;
    atomic_init(&ring->cons.head, start_index);
    ring->cons.tail_cache = start_index;
    SP_ASSERT(sp_ring_count_approx(ring) == 0);
    return 0;
}

void sp_ring_deinit(struct sp_ring *ring)
{
    SP_ASSERT(ring != NULL);
    free(ring->conf.slots);
    ring->conf.slots = NULL;
    ring->conf.capacity = 0;
}
