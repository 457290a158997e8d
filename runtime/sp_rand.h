/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, fast, deterministic pseudo-random generator (xorshift64*, Vigna
 * 2016): the same seed gives the same sequence on every platform, which is
 * what tests, benchmarks and data generators need. Not for anything secret.
 * One generator per thread: the state is plain memory.
 */
#ifndef SP_RAND_H
#define SP_RAND_H

#include <stdint.h>

#include "sp_common.h"

struct sp_rand {
    uint64_t state;
};

/* Seeds the generator; seed 0 (xorshift's one bad state) is replaced. */
static inline void sp_rand_seed(struct sp_rand *rand, uint64_t seed)
{
    rand->state = seed != 0 ? seed : 0x9E3779B97F4A7C15ULL;
}

static inline uint64_t sp_rand_next(struct sp_rand *rand)
{
    SP_DEBUG_ASSERT(rand->state != 0);
    rand->state ^= rand->state >> 12;
    rand->state ^= rand->state << 25;
    rand->state ^= rand->state >> 27;
    return rand->state * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) by multiply-shift (no division); 0 when n is 0. */
static inline uint64_t sp_rand_below(struct sp_rand *rand, uint64_t n)
{
    __extension__ typedef unsigned __int128 sp_rand_u128;
    return (uint64_t)(((sp_rand_u128)sp_rand_next(rand) * n) >> 64);
}

#endif /* SP_RAND_H */
