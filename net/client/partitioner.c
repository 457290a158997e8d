/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka's partitioners (see sp_kafka_partitioner.h): murmur2 exactly as
 * the Java client computes it, and the sticky choice of KIP-480 for records
 * without a key. The hash reads bytes one at a time and assembles the
 * little-endian words itself, so it gives Java's answer on any host byte
 * order and at any alignment.
 */
#include "sp_kafka_partitioner.h"

#define MURMUR2_SEED 0x9747b28cu
#define MURMUR2_M 0x5bd1e995u
#define MURMUR2_R 24

uint32_t sp_kafka_murmur2(const void *key, size_t len)
{
    SP_ASSERT(key != NULL || len == 0);
    const uint8_t *data = key;
    /* Java's length is an int: the seed mixes in its low 32 bits. */
    uint32_t h = MURMUR2_SEED ^ (uint32_t)len;
    size_t words = len / 4;
    for (size_t i = 0; i < words; i++) {
        const uint8_t *p = data + 4 * i;
        uint32_t k =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        k *= MURMUR2_M;
        k ^= k >> MURMUR2_R;
        k *= MURMUR2_M;
        h *= MURMUR2_M;
        h ^= k;
    }
    /*
     * The tail, as Java's fall-through switch on length % 4. Indexed, not a
     * pointer: data + 0 is undefined when data is NULL (an empty key).
     */
    size_t t = 4 * words;
    size_t rest = len % 4;
    if (rest >= 3)
        h ^= (uint32_t)data[t + 2] << 16;
    if (rest >= 2)
        h ^= (uint32_t)data[t + 1] << 8;
    if (rest >= 1) {
        h ^= (uint32_t)data[t];
        h *= MURMUR2_M;
    }
    h ^= h >> 13;
    h *= MURMUR2_M;
    h ^= h >> 15;
    return h;
}

int32_t sp_kafka_partition_for_key(const void *key, size_t len, int32_t partition_count)
{
    SP_ASSERT(partition_count >= 1);
    SP_ASSERT(key != NULL || len == 0);
    uint32_t positive = sp_kafka_murmur2(key, len) & 0x7fffffffu;
    int32_t partition = (int32_t)(positive % (uint32_t)partition_count);
    SP_ASSERT(partition >= 0 && partition < partition_count);
    return partition;
}

void sp_kafka_sticky_init(struct sp_kafka_sticky *sticky, struct sp_rand *rand)
{
    SP_ASSERT(sticky != NULL);
    SP_ASSERT(rand != NULL);
    sticky->rand = rand;
    sticky->partition = -1;
    sticky->partition_prev = -1;
}

/*
 * A uniform index in [0, n) other than `skip` (n >= 2, skip < n), or in
 * [0, n) when skip is n or more: draw among n - 1 and step over skip.
 * One draw, no retry loop (Java's loop redraws until it differs).
 */
static unsigned pick_index(struct sp_rand *rand, unsigned n, unsigned skip)
{
    SP_ASSERT(n >= 1);
    if (skip >= n || n == 1)
        return (unsigned)sp_rand_below(rand, n);
    unsigned i = (unsigned)sp_rand_below(rand, n - 1);
    return i >= skip ? i + 1 : i;
}

int32_t sp_kafka_sticky_choose(struct sp_kafka_sticky *sticky, int32_t partition_count,
                               const int32_t *available, unsigned available_count)
{
    SP_ASSERT(sticky != NULL);
    SP_ASSERT(partition_count >= 1);
    SP_ASSERT(available != NULL || available_count == 0);
    SP_ASSERT(available_count <= (unsigned)partition_count);
    int32_t prev = sticky->partition >= 0 ? sticky->partition : sticky->partition_prev;
    int32_t chosen;
    if (available_count == 0) {
        unsigned skip = prev >= 0 ? (unsigned)prev : ~0u;
        chosen = (int32_t)pick_index(sticky->rand, (unsigned)partition_count, skip);
    } else {
        /* Linear: once per batch, over at most partition_count entries. */
        unsigned skip = ~0u;
        for (unsigned i = 0; i < available_count; i++) {
            SP_DEBUG_ASSERT(available[i] >= 0 && available[i] < partition_count);
            if (prev >= 0 && available[i] == prev)
                skip = i;
        }
        chosen = available[pick_index(sticky->rand, available_count, skip)];
    }
    SP_ASSERT(chosen >= 0 && chosen < partition_count);
    if (sticky->partition >= 0)
        sticky->partition_prev = sticky->partition;
    sticky->partition = chosen;
    return chosen;
}

void sp_kafka_sticky_batch_done(struct sp_kafka_sticky *sticky, int32_t partition)
{
    SP_ASSERT(sticky != NULL);
    SP_ASSERT(partition >= 0);
    if (sticky->partition != partition)
        return;
    sticky->partition_prev = partition;
    sticky->partition = -1;
}
