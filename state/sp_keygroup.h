/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys, key groups and their owners: how keyed state is partitioned.
 *
 * A key's bytes are hashed with xxh3 (64-bit) to a key group, one of a fixed
 * number per job (Flink's max parallelism); key groups are the unit that
 * shards and nodes own and that rescaling moves. Shard s of n owns the
 * contiguous range [ceil(s * G / n), ceil((s + 1) * G / n)) of the G groups,
 * as Flink assigns them to subtasks (128 groups over 3 shards: [0,43),
 * [43,86), [86,128)), so every shard owns a nearly equal share and a rescale
 * from n to m moves whole ranges.
 *
 * The group of a hash is the high word of hash * G (Lemire's multiply-shift
 * reduction): uniform for any G, no division on the hot path.
 */
#ifndef SP_KEYGROUP_H
#define SP_KEYGROUP_H

#include <stddef.h>
#include <stdint.h>
/* xxh3 inlined: keys are a few bytes, and a call into the shared library
 * would cost as much as the hash. */
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include "sp_common.h"

/* Largest key-group count: shard ranges stay exact in 32-bit arithmetic. */
#define SP_KEY_GROUPS_MAX (1u << 16)

static inline uint64_t sp_key_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/* Key group of a key hash, in [0, group_count). */
static inline uint32_t sp_key_group(uint64_t hash, uint32_t group_count)
{
    SP_DEBUG_ASSERT(group_count > 0 && group_count <= SP_KEY_GROUPS_MAX);
    __extension__ typedef unsigned __int128 sp_u128;
    return (uint32_t)(((sp_u128)hash * group_count) >> 64);
}

/* Owner of key group `group` among `owner_count` shards (or nodes). */
static inline uint32_t sp_key_group_owner(uint32_t group, uint32_t group_count,
                                          uint32_t owner_count)
{
    SP_DEBUG_ASSERT(group < group_count);
    SP_DEBUG_ASSERT(owner_count > 0 && owner_count <= group_count);
    return (uint32_t)(((uint64_t)group * owner_count) / group_count);
}

struct sp_key_group_range {
    uint32_t first; /* inclusive */
    uint32_t end;   /* exclusive */
};

/*
 * The key groups owner `owner` of `owner_count` holds. Returns 0, or
 * -EINVAL when the counts are out of range (owner_count must be at most
 * group_count, group_count at most SP_KEY_GROUPS_MAX).
 */
SP_MUST_CHECK int sp_key_group_range(uint32_t group_count, uint32_t owner_count, uint32_t owner,
                                     struct sp_key_group_range *range_out);

#endif /* SP_KEYGROUP_H */
