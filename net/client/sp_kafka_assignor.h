/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Consumer-group partition assignors: the functions the group leader runs on
 * the members' subscriptions to decide who consumes which partition, and the
 * bytes that carry subscriptions (JoinGroup member metadata) and assignments
 * (SyncGroup) between members. Pure functions: no I/O, no clock, no malloc;
 * every array they produce comes from the caller's arena, every string points
 * into the caller's input. Any core may call them; nothing is shared.
 *
 * Three assignors, named as Kafka's Java client names them, so that a spate
 * member and a Java member agree on the protocol name in JoinGroup:
 *
 * "range" (eager): per topic, the members subscribed to it sorted by member
 *     id, the partitions cut into contiguous ranges; the first
 *     (partitions % members) members get one more. Same result as Java's
 *     RangeAssignor without racks.
 * "roundrobin" (eager): every partition of a subscribed topic, sorted by
 *     (topic, partition), dealt in turn to the members sorted by member id,
 *     skipping members not subscribed to the topic; the turn carries over
 *     from one topic to the next. Same result as Java's RoundRobinAssignor.
 * "cooperative-sticky" (cooperative and eager): balanced, sticky and
 *     cooperative, the guarantees listed at sp_kafka_assignor_assign().
 *
 * Where this differs from Java (all documented at the functions): members are
 * ordered by member id only (Java puts static members, group.instance.id,
 * first and orders them by that id); strings compare as bytes (Java compares
 * UTF-16 units: the same order for ASCII, which topic names always are);
 * racks are ignored (Java's rack-aware modes only act when brokers and
 * consumers both set racks); cooperative-sticky checks generations per
 * partition rather than per member, and its general case (members with
 * different subscriptions) is a simpler, bounded heuristic.
 */
#ifndef SP_KAFKA_ASSIGNOR_H
#define SP_KAFKA_ASSIGNOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_kafka_apis.h"
#include "sp_kafka_wire.h"

/*
 * Limits on one assignment, checked (-EINVAL) before any work: they keep
 * every index in an int32_t and bound the arena, which needs about 24 bytes
 * per partition, 44 per member and 40 per topic name in the subscriptions
 * (sp_kafka_assignor_arena_bytes says exactly).
 */
#define SP_KAFKA_ASSIGNOR_MEMBERS_MAX 65536
#define SP_KAFKA_ASSIGNOR_TOPICS_MAX 65536
#define SP_KAFKA_ASSIGNOR_PARTITIONS_MAX (1 << 24)    /* over all topics */
#define SP_KAFKA_ASSIGNOR_SUBSCRIPTIONS_MAX (1 << 24) /* topic names over all members */

/* Java's DEFAULT_GENERATION: a member that reports no generation. */
#define SP_KAFKA_ASSIGNOR_GENERATION_NONE (-1)

/* The user data Java's cooperative-sticky puts in a subscription: int32 generation. */
#define SP_KAFKA_COOPERATIVE_USER_DATA_BYTES 4

/*
 * One member of the group as the leader sees it, borrowed from its decoded
 * subscription (sp_kafka_assignor_member_from_subscription fills it).
 * `topics` may name topics missing from the metadata (skipped, as Java does)
 * or a topic twice (counted once). `owned` is what the member says it owns
 * now, at `generation_id`; only cooperative-sticky reads `owned` and
 * `generation_id`, and claims on unknown topics or partitions are ignored.
 */
struct sp_kafka_assignor_member {
    struct sp_kstr member_id;
    const struct sp_kstr *topics;
    int32_t topics_count;
    const struct sp_kafka_consumer_protocol_subscription_topic_partition *owned;
    int32_t owned_count;
    int32_t generation_id; /* SP_KAFKA_ASSIGNOR_GENERATION_NONE: unknown */
};

/* A topic of the cluster metadata: partitions 0 .. partition_count - 1. */
struct sp_kafka_assignor_topic {
    struct sp_kstr name;
    int32_t partition_count;
};

/* The whole input of one assignment. */
struct sp_kafka_assignor_group {
    const struct sp_kafka_assignor_member *members;
    int32_t member_count;
    const struct sp_kafka_assignor_topic *topics; /* metadata of every subscribed topic */
    int32_t topic_count;
};

struct sp_kafka_assignor;

/*
 * An assignor's entry point (see sp_kafka_assignor_assign). `out` has
 * group->member_count entries, which it clears before anything else.
 */
typedef int (*sp_kafka_assignor_fn)(const struct sp_kafka_assignor_group *group,
                                    struct sp_kafka_consumer_protocol_assignment *out,
                                    struct sp_karena *arena);

struct sp_kafka_assignor {
    const char *name; /* the JoinGroup protocol name */
    bool cooperative; /* supports the COOPERATIVE rebalance protocol (all support EAGER) */
    sp_kafka_assignor_fn assign;
};

extern const struct sp_kafka_assignor sp_kafka_assignor_range;
extern const struct sp_kafka_assignor sp_kafka_assignor_roundrobin;
extern const struct sp_kafka_assignor sp_kafka_assignor_cooperative_sticky;

/*
 * The assignor called `name` ("range", "roundrobin", "cooperative-sticky";
 * exact bytes, `name` need not be NUL-terminated), or NULL for any other.
 */
const struct sp_kafka_assignor *sp_kafka_assignor_find(struct sp_kstr name);

/*
 * Arena bytes that sp_kafka_assignor_assign needs at most for `group`, with
 * any of the three assignors: its scratch plus the result. 0 for a group
 * beyond the limits above or with a negative count (sp_kafka_assignor_assign
 * says -EINVAL for it).
 */
size_t sp_kafka_assignor_arena_bytes(const struct sp_kafka_assignor_group *group);

/*
 * Runs `assignor` on `group` and writes member i's assignment to out[i]
 * (group->member_count entries): topics in name order, each topic once with
 * its partitions ascending, user_data null. Topic names point into
 * group->topics; the arrays come from `arena`, which also holds the scratch
 * (free both with sp_karena_reset when done). Deterministic: the same input
 * in any member order gives the same assignment to the same member ids.
 *
 * Every assignor guarantees: a partition goes to at most one member, and only
 * to a member subscribed to its topic; a topic missing from the metadata is
 * skipped; range and roundrobin assign every partition of every topic that
 * some member subscribes to.
 *
 * cooperative-sticky guarantees, in this order of priority:
 * - Cooperative: a partition is never given to a member while another member
 *   may still hold it. When the computed owner differs from a member that
 *   claims the partition in `owned` (whatever its generation), the partition
 *   is left out of this assignment: the claimant is told to revoke it (it is
 *   not in its assignment), rejoins, and the partition is assigned in the
 *   next round. Java does the same (CooperativeStickyAssignor's
 *   partitionsTransferringOwnership).
 * - Generations: when members claim the same partition, the claim with the
 *   highest generation is the owner's; two claims at the same highest
 *   generation are both void (neither keeps it, it is assigned in the next
 *   round). Java instead voids every claim of a member below the group's
 *   highest generation, even on partitions nobody else claims; this keeps
 *   such partitions where they are.
 * - Balanced: before the cooperative holdback, members with the same set of
 *   (known) subscribed topics hold counts that differ by at most one; with
 *   identical subscriptions that is every member (Java's constrained case).
 * - Sticky: with identical subscriptions a member keeps every partition it
 *   validly owns up to its quota, the (partitions % members) larger quotas
 *   going first to members that own more than the smaller one, so the
 *   number revoked is the minimum any balanced assignment allows; an
 *   unchanged group whose owned partitions are the last assignment gets the
 *   same assignment back.
 * - Different subscriptions (Java's generalAssign, an iterative search that
 *   also balances across subscription sets): kept claims first, then each
 *   free partition, fewest-subscriber topics first, to its least loaded
 *   subscriber, then at most 32 passes moving a partition whenever its owner
 *   holds two or more than another subscriber of its topic (free partitions
 *   before kept ones), then the exact balancing within each subscription set.
 *   Across sets the result is balanced when those passes converge (always
 *   seen in tests) and valid always; once converged, an unchanged group gets
 *   the same assignment back.
 *
 * 0; -EINVAL for a bad group (a negative count, a null member id or topic
 * name, two members with the same id, a topic listed twice in the metadata,
 * or beyond the limits above); -ENOBUFS when the arena is too small
 * (sp_kafka_assignor_arena_bytes is always enough); `out` and the arena are
 * then unspecified.
 */
SP_MUST_CHECK int sp_kafka_assignor_assign(const struct sp_kafka_assignor *assignor,
                                           const struct sp_kafka_assignor_group *group,
                                           struct sp_kafka_consumer_protocol_assignment *out,
                                           struct sp_karena *arena);

/*
 * Fills `member` from a decoded subscription, borrowing its arrays: topics,
 * owned partitions and the generation, which is the subscription's
 * GenerationId (version 2 and later) or else, as Java's cooperative-sticky
 * reads it, the int32 at the start of the user data when it has 4 bytes or
 * more, or else SP_KAFKA_ASSIGNOR_GENERATION_NONE.
 */
void sp_kafka_assignor_member_from_subscription(
    struct sp_kafka_assignor_member *member, struct sp_kstr member_id,
    const struct sp_kafka_consumer_protocol_subscription *subscription);

/*
 * The user data of a cooperative-sticky subscription, as Java writes it (the
 * generation as a big-endian int32, for leaders that read subscriptions older
 * than version 2): written to `buf` and returned as bytes pointing at it.
 */
struct sp_kbytes sp_kafka_cooperative_user_data(uint8_t buf[SP_KAFKA_COOPERATIVE_USER_DATA_BYTES],
                                                int32_t generation);

/* ---- Member metadata and assignment bytes ---- */

/*
 * JoinGroup's per-member metadata is an int16 version followed by a
 * ConsumerProtocolSubscription at that version; SyncGroup's assignment is an
 * int16 version followed by a ConsumerProtocolAssignment. Versions 0..3.
 *
 * _size: the bytes _encode writes for `s` at `version`.
 * _encode: writes exactly that many bytes to `buf`; 0, -ENOSPC when
 *     `buf_bytes` is smaller, -ENOTSUP for a version outside 0..3 or a field
 *     the version cannot carry, -EINVAL for a null where none is allowed.
 * _decode: zero-copy: strings and bytes in `s` point into `buf`, which must
 *     outlive `s`; arrays come from `arena`. A version above 3 is read as 3
 *     and bytes after the message are ignored, as Java does, so that newer
 *     members (whose versions only append fields) stay readable; the version
 *     on the wire goes to *version_out. 0; -EBADMSG for a negative version
 *     or bytes that end early or do not parse; -ENOBUFS when the arena is
 *     too small.
 */
size_t sp_kafka_subscription_bytes_size(const struct sp_kafka_consumer_protocol_subscription *s,
                                        int16_t version);
SP_MUST_CHECK int
sp_kafka_subscription_bytes_encode(void *buf, size_t buf_bytes, int16_t version,
                                   const struct sp_kafka_consumer_protocol_subscription *s);
SP_MUST_CHECK int
sp_kafka_subscription_bytes_decode(const void *buf, size_t len, struct sp_karena *arena,
                                   int16_t *version_out,
                                   struct sp_kafka_consumer_protocol_subscription *s);

size_t sp_kafka_assignment_bytes_size(const struct sp_kafka_consumer_protocol_assignment *s,
                                      int16_t version);
SP_MUST_CHECK int
sp_kafka_assignment_bytes_encode(void *buf, size_t buf_bytes, int16_t version,
                                 const struct sp_kafka_consumer_protocol_assignment *s);
SP_MUST_CHECK int sp_kafka_assignment_bytes_decode(const void *buf, size_t len,
                                                   struct sp_karena *arena, int16_t *version_out,
                                                   struct sp_kafka_consumer_protocol_assignment *s);

#endif /* SP_KAFKA_ASSIGNOR_H */
