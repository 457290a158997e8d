/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The producer's partitioners: records with a key go to
 * toPositive(murmur2(key)) % partition_count, bit for bit the Java
 * client's Utils.murmur2 and BuiltInPartitioner.partitionForKey (and
 * librdkafka's murmur2 partitioners), so spate and Java producers put a key
 * on the same partition; records without a key go through the sticky
 * partitioner of KIP-480.
 *
 * The sticky partitioner keeps sending null-key records to one partition
 * until the producer reports that the batch for that partition was closed
 * (sent or full), then picks another partition at random among those that
 * are available (have a leader), never the one it just left when there is
 * more than one to choose from. Records fill one batch at a time instead of
 * a sliver of every partition's batch: fewer, fuller batches, which is how
 * KIP-480 lowered produce latency. It is not KIP-794's adaptive version
 * (which weighs partitions by queue length); that is a later step.
 *
 * One struct sp_kafka_sticky serves one topic (the producer keeps it in
 * its per-topic state), so the calls take no topic name. It borrows a
 * struct sp_rand, which may be shared by all the topics of a shard; both
 * belong to one thread.
 *
 * Nothing here allocates; sp_kafka_sticky_partition's common case is an
 * inline load and compare.
 */
#ifndef SP_KAFKA_PARTITIONER_H
#define SP_KAFKA_PARTITIONER_H

#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_rand.h"

/*
 * Kafka's murmur2 (Utils.murmur2): MurmurHash2, seed 0x9747b28c, bytes
 * read as little-endian 32-bit words, the Java code's tail handling. Java
 * returns it as a signed int; this is the same 32 bits. `key` may be NULL
 * when len is 0.
 */
uint32_t sp_kafka_murmur2(const void *key, size_t len);

/*
 * The partition of a key among partition_count (>= 1) partitions:
 * (murmur2(key) & 0x7fffffff) % partition_count (Java's toPositive, not
 * abs). `key` may be NULL when len is 0, and hashes like an empty key.
 */
int32_t sp_kafka_partition_for_key(const void *key, size_t len, int32_t partition_count);

/* The sticky partitioner of one topic (see the top of this file). */
struct sp_kafka_sticky {
    struct sp_rand *rand;   /* borrowed */
    int32_t partition;      /* records go here; -1 when a new one must be chosen */
    int32_t partition_prev; /* the one before, avoided by the next choice; -1 if none */
};

/* Starts with no partition chosen; `rand` is borrowed for the struct's life. */
void sp_kafka_sticky_init(struct sp_kafka_sticky *sticky, struct sp_rand *rand);

/*
 * Chooses a new sticky partition: uniformly among `available` (partition
 * ids in [0, partition_count), available_count of them, no duplicates)
 * other than the previous one; among all partition_count when
 * available_count is 0 (no leader known anywhere: the record waits in the
 * accumulator either way, as in Java). Use sp_kafka_sticky_partition.
 */
int32_t sp_kafka_sticky_choose(struct sp_kafka_sticky *sticky, int32_t partition_count,
                               const int32_t *available, unsigned available_count);

/*
 * The partition for the next null-key record of the topic: the current
 * sticky partition, or a new one (sp_kafka_sticky_choose) when there is
 * none yet, when the last batch was done, or when the current one is not
 * below partition_count. `available` is only read when a new partition is
 * chosen; a partition that loses its leader while sticky stays sticky until
 * its batch is done, as in Java's StickyPartitionCache.
 */
static inline int32_t sp_kafka_sticky_partition(struct sp_kafka_sticky *sticky,
                                                int32_t partition_count, const int32_t *available,
                                                unsigned available_count)
{
    SP_ASSERT(partition_count >= 1);
    if (SP_LIKELY(sticky->partition >= 0 && sticky->partition < partition_count))
        return sticky->partition;
    return sp_kafka_sticky_choose(sticky, partition_count, available, available_count);
}

/*
 * The producer closed the batch of `partition` (it was sent or is full).
 * When that is the sticky partition, the next record chooses a new one;
 * for another partition (a keyed record's batch) nothing changes, as in
 * Java's StickyPartitionCache.nextPartition.
 */
void sp_kafka_sticky_batch_done(struct sp_kafka_sticky *sticky, int32_t partition);

#endif /* SP_KAFKA_PARTITIONER_H */
