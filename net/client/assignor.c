/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Consumer-group partition assignors (range, roundrobin, cooperative-sticky)
 * and the JoinGroup/SyncGroup bytes that carry subscriptions and
 * assignments. The contracts and the differences from Kafka's Java client
 * are in sp_kafka_assignor.h; this file is how.
 *
 * Every assignor works on the same dense model, built once per call in the
 * caller's arena: members numbered by rank (their order by member id), topics
 * by index (their order by name), every partition by a global index
 * (topic_base[topic] + partition), each member's known topics as a sorted
 * list and each topic's subscribers as a list ascending by rank. An assignor
 * only fills owner[global index] with a rank or -1; one emitter turns that
 * into the per-member output. Nothing recurses and every loop is bounded by
 * the group's sizes, which the limits in the header bound in turn.
 */
#include "sp_kafka_assignor.h"

#include <errno.h>
#include <string.h>

/* Passes of the general cooperative-sticky balancing (see the header). */
#define SP_ASG_STICKY_PASSES_MAX 32

/* ---- Small helpers ---- */

typedef int (*sp_asg_cmp_fn)(int32_t x, int32_t y, const void *ctx);

/* Byte order of two strings, the shorter first on a common prefix. */
static int sp_asg_kstr_cmp(struct sp_kstr x, struct sp_kstr y)
{
    size_t nx = x.len > 0 ? (size_t)x.len : 0;
    size_t ny = y.len > 0 ? (size_t)y.len : 0;
    size_t n = SP_MIN(nx, ny);
    int c = n > 0 ? memcmp(x.ptr, y.ptr, n) : 0;
    if (c != 0)
        return c;
    return (nx > ny) - (nx < ny);
}

static int sp_asg_cmp_int(int32_t x, int32_t y, const void *ctx)
{
    (void)ctx;
    return (x > y) - (x < y);
}

static void sp_asg_sift(int32_t *v, size_t root, size_t n, sp_asg_cmp_fn cmp, const void *ctx)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && cmp(v[child], v[child + 1], ctx) < 0)
            child++;
        if (cmp(v[root], v[child], ctx) >= 0)
            return;
        int32_t t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

/*
 * Heapsort: O(n log n) worst case, no recursion and no allocation, which is
 * what a leader sorting thousands of member ids on a shard wants; `cmp` must
 * be a total order, so instability does not show.
 */
static void sp_asg_sort(int32_t *v, size_t n, sp_asg_cmp_fn cmp, const void *ctx)
{
    if (n < 2)
        return;
    for (size_t i = n / 2; i-- > 0;)
        sp_asg_sift(v, i, n, cmp, ctx);
    for (size_t end = n - 1; end > 0; end--) {
        int32_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sp_asg_sift(v, 0, end, cmp, ctx);
    }
}

/* Index of `x` in the ascending v[0..n), or -1. */
static int32_t sp_asg_bsearch(const int32_t *v, int32_t n, int32_t x)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x ? lo : -1;
}

/* ---- The dense model ---- */

struct sp_asg {
    const struct sp_kafka_assignor_group *group;
    struct sp_karena *arena;
    int32_t member_count;
    int32_t topic_count;
    int32_t partition_total;
    int32_t *member_of_rank; /* [member_count]: input index of each rank */
    int32_t *topic_of_index; /* [topic_count]: metadata index of each topic index */
    int32_t *topic_base;     /* [topic_count + 1]: global index of partition 0 */
    int32_t *mt_off;         /* [member_count + 1]: rank -> its slice of mt_list */
    int32_t *mt_list;        /* known topics of each rank, ascending, unique */
    int32_t *ts_off;         /* [topic_count + 1]: topic -> its slice of ts_list */
    int32_t *ts_list;        /* subscribers of each topic, ascending ranks */
    int32_t *owner;          /* [partition_total]: rank, or -1 */
};

/* Never dereferenced: what an empty array points at (the arena may have no base). */
static int64_t sp_asg_empty_array[1];

/* `count` elements of `size` bytes from the arena, or NULL when it is full. */
static void *sp_asg_alloc(struct sp_asg *a, size_t count, size_t size)
{
    if (count == 0)
        return sp_asg_empty_array;
    return sp_karena_alloc(a->arena, count * size);
}

#define SP_ASG_ALLOC(a, ptr, count)                                                                \
    do {                                                                                           \
        (ptr) = sp_asg_alloc((a), (size_t)(count), sizeof(*(ptr)));                                \
        if ((ptr) == NULL)                                                                         \
            return -ENOBUFS;                                                                       \
    } while (0)

static inline int32_t sp_asg_partitions(const struct sp_asg *a, int32_t topic)
{
    return a->topic_base[topic + 1] - a->topic_base[topic];
}

static inline struct sp_kstr sp_asg_topic_name(const struct sp_asg *a, int32_t topic)
{
    return a->group->topics[a->topic_of_index[topic]].name;
}

static inline const struct sp_kafka_assignor_member *sp_asg_member(const struct sp_asg *a,
                                                                   int32_t rank)
{
    return &a->group->members[a->member_of_rank[rank]];
}

/* Topic index of `name`, or -1 when the metadata lacks it. */
static int32_t sp_asg_topic_find(const struct sp_asg *a, struct sp_kstr name)
{
    if (name.len < 0)
        return -1;
    int32_t lo = 0, hi = a->topic_count;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = sp_asg_kstr_cmp(sp_asg_topic_name(a, mid), name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static bool sp_asg_subscribed(const struct sp_asg *a, int32_t rank, int32_t topic)
{
    int32_t off = a->mt_off[rank];
    return sp_asg_bsearch(a->mt_list + off, a->mt_off[rank + 1] - off, topic) >= 0;
}

static int sp_asg_cmp_member(int32_t x, int32_t y, const void *ctx)
{
    const struct sp_kafka_assignor_group *g = ctx;
    return sp_asg_kstr_cmp(g->members[x].member_id, g->members[y].member_id);
}

static int sp_asg_cmp_topic(int32_t x, int32_t y, const void *ctx)
{
    const struct sp_kafka_assignor_group *g = ctx;
    return sp_asg_kstr_cmp(g->topics[x].name, g->topics[y].name);
}

/* The limits and shape checks that need no sorting. */
static int sp_asg_check(const struct sp_kafka_assignor_group *g)
{
    if (g->member_count < 0 || g->member_count > SP_KAFKA_ASSIGNOR_MEMBERS_MAX)
        return -EINVAL;
    if (g->topic_count < 0 || g->topic_count > SP_KAFKA_ASSIGNOR_TOPICS_MAX)
        return -EINVAL;
    SP_ASSERT(g->member_count == 0 || g->members != NULL);
    SP_ASSERT(g->topic_count == 0 || g->topics != NULL);
    int64_t subscriptions = 0, partitions = 0;
    for (int32_t i = 0; i < g->member_count; i++) {
        const struct sp_kafka_assignor_member *m = &g->members[i];
        if (m->member_id.len < 0 || m->topics_count < 0 || m->owned_count < 0)
            return -EINVAL;
        SP_ASSERT(m->topics_count == 0 || m->topics != NULL);
        SP_ASSERT(m->owned_count == 0 || m->owned != NULL);
        subscriptions += m->topics_count;
    }
    for (int32_t i = 0; i < g->topic_count; i++) {
        if (g->topics[i].name.len < 0 || g->topics[i].partition_count < 0)
            return -EINVAL;
        partitions += g->topics[i].partition_count;
    }
    if (subscriptions > SP_KAFKA_ASSIGNOR_SUBSCRIPTIONS_MAX)
        return -EINVAL;
    if (partitions > SP_KAFKA_ASSIGNOR_PARTITIONS_MAX)
        return -EINVAL;
    return 0;
}

/* Members by id and topics by name; two equal neighbours are a bad group. */
static int sp_asg_prepare_order(struct sp_asg *a)
{
    const struct sp_kafka_assignor_group *g = a->group;
    SP_ASG_ALLOC(a, a->member_of_rank, a->member_count);
    SP_ASG_ALLOC(a, a->topic_of_index, a->topic_count);
    SP_ASG_ALLOC(a, a->topic_base, a->topic_count + 1);
    for (int32_t i = 0; i < a->member_count; i++)
        a->member_of_rank[i] = i;
    for (int32_t i = 0; i < a->topic_count; i++)
        a->topic_of_index[i] = i;
    sp_asg_sort(a->member_of_rank, (size_t)a->member_count, sp_asg_cmp_member, g);
    sp_asg_sort(a->topic_of_index, (size_t)a->topic_count, sp_asg_cmp_topic, g);
    for (int32_t i = 1; i < a->member_count; i++) {
        if (sp_asg_cmp_member(a->member_of_rank[i - 1], a->member_of_rank[i], g) == 0)
            return -EINVAL;
    }
    for (int32_t i = 1; i < a->topic_count; i++) {
        if (sp_asg_cmp_topic(a->topic_of_index[i - 1], a->topic_of_index[i], g) == 0)
            return -EINVAL;
    }
    a->topic_base[0] = 0;
    for (int32_t t = 0; t < a->topic_count; t++)
        a->topic_base[t + 1] = a->topic_base[t] + g->topics[a->topic_of_index[t]].partition_count;
    a->partition_total = a->topic_base[a->topic_count];
    return 0;
}

/* Each member's known topics (sorted, unique), then each topic's subscribers. */
static int sp_asg_prepare_subscriptions(struct sp_asg *a)
{
    size_t raw = 0;
    for (int32_t i = 0; i < a->member_count; i++)
        raw += (size_t)a->group->members[i].topics_count;
    SP_ASG_ALLOC(a, a->mt_off, a->member_count + 1);
    SP_ASG_ALLOC(a, a->mt_list, raw);
    int32_t pos = 0;
    for (int32_t r = 0; r < a->member_count; r++) {
        const struct sp_kafka_assignor_member *m = sp_asg_member(a, r);
        int32_t start = pos;
        a->mt_off[r] = start;
        for (int32_t i = 0; i < m->topics_count; i++) {
            int32_t t = sp_asg_topic_find(a, m->topics[i]);
            if (t >= 0)
                a->mt_list[pos++] = t;
        }
        sp_asg_sort(a->mt_list + start, (size_t)(pos - start), sp_asg_cmp_int, NULL);
        int32_t unique = start;
        for (int32_t i = start; i < pos; i++) {
            if (unique == start || a->mt_list[unique - 1] != a->mt_list[i])
                a->mt_list[unique++] = a->mt_list[i];
        }
        pos = unique;
    }
    a->mt_off[a->member_count] = pos;

    int32_t *cursor;
    SP_ASG_ALLOC(a, a->ts_off, a->topic_count + 1);
    SP_ASG_ALLOC(a, a->ts_list, pos);
    SP_ASG_ALLOC(a, cursor, a->topic_count);
    memset(a->ts_off, 0, (size_t)(a->topic_count + 1) * sizeof(*a->ts_off));
    for (int32_t i = 0; i < pos; i++)
        a->ts_off[a->mt_list[i] + 1]++;
    for (int32_t t = 0; t < a->topic_count; t++) {
        a->ts_off[t + 1] += a->ts_off[t];
        cursor[t] = a->ts_off[t];
    }
    for (int32_t r = 0; r < a->member_count; r++) {
        for (int32_t i = a->mt_off[r]; i < a->mt_off[r + 1]; i++)
            a->ts_list[cursor[a->mt_list[i]]++] = r;
    }
    SP_ASSERT(a->ts_off[a->topic_count] == pos);
    return 0;
}

/* Checks the group, clears `out` and builds the model with every partition free. */
static int sp_asg_prepare(struct sp_asg *a, const struct sp_kafka_assignor_group *group,
                          struct sp_kafka_consumer_protocol_assignment *out,
                          struct sp_karena *arena)
{
    SP_ASSERT(group != NULL);
    SP_ASSERT(arena != NULL);
    memset(a, 0, sizeof(*a));
    a->group = group;
    a->arena = arena;
    SP_KTRY(sp_asg_check(group));
    SP_ASSERT(group->member_count == 0 || out != NULL);
    a->member_count = group->member_count;
    a->topic_count = group->topic_count;
    for (int32_t i = 0; i < a->member_count; i++)
        sp_kafka_consumer_protocol_assignment_init(&out[i]);
    SP_KTRY(sp_asg_prepare_order(a));
    SP_KTRY(sp_asg_prepare_subscriptions(a));
    SP_ASG_ALLOC(a, a->owner, a->partition_total);
    for (int32_t i = 0; i < a->partition_total; i++)
        a->owner[i] = -1;
    return 0;
}

/* Counts each rank's topics (`entries`) and partitions in owner[]. */
static void sp_asg_emit_count(const struct sp_asg *a, int32_t *entries, int32_t *parts,
                              int32_t *last, size_t *entry_total, size_t *part_total)
{
    for (int32_t r = 0; r < a->member_count; r++) {
        entries[r] = 0;
        parts[r] = 0;
        last[r] = -1;
    }
    *entry_total = 0;
    *part_total = 0;
    for (int32_t t = 0; t < a->topic_count; t++) {
        for (int32_t gp = a->topic_base[t]; gp < a->topic_base[t + 1]; gp++) {
            int32_t r = a->owner[gp];
            if (r < 0)
                continue;
            SP_ASSERT(r < a->member_count);
            SP_DEBUG_ASSERT(sp_asg_subscribed(a, r, t));
            parts[r]++;
            (*part_total)++;
            if (last[r] != t) {
                last[r] = t;
                entries[r]++;
                (*entry_total)++;
            }
        }
    }
}

/*
 * Writes owner[] out as per-member (topic, partitions) lists, topics by name
 * and partitions ascending: one array of entries and one of partitions for
 * the whole group, each member a slice of both.
 */
static int sp_asg_emit(struct sp_asg *a, struct sp_kafka_consumer_protocol_assignment *out)
{
    int32_t *entries, *parts, *last;
    size_t entry_total, part_total;
    SP_ASG_ALLOC(a, entries, a->member_count);
    SP_ASG_ALLOC(a, parts, a->member_count);
    SP_ASG_ALLOC(a, last, a->member_count);
    sp_asg_emit_count(a, entries, parts, last, &entry_total, &part_total);

    struct sp_kafka_consumer_protocol_assignment_topic_partition *entry_all;
    int32_t *part_all;
    SP_ASG_ALLOC(a, entry_all, entry_total);
    SP_ASG_ALLOC(a, part_all, part_total);
    size_t entry_pos = 0, part_pos = 0;
    for (int32_t r = 0; r < a->member_count; r++) {
        struct sp_kafka_consumer_protocol_assignment *o = &out[a->member_of_rank[r]];
        o->assigned_partitions = entries[r] > 0 ? entry_all + entry_pos : NULL;
        o->assigned_partitions_count = 0;
        entry_pos += (size_t)entries[r];
        int32_t n = parts[r];
        parts[r] = (int32_t)part_pos; /* from here on: where its next partition goes */
        part_pos += (size_t)n;
        last[r] = -1;
    }
    SP_ASSERT(entry_pos == entry_total);
    SP_ASSERT(part_pos == part_total);

    for (int32_t t = 0; t < a->topic_count; t++) {
        for (int32_t gp = a->topic_base[t]; gp < a->topic_base[t + 1]; gp++) {
            int32_t r = a->owner[gp];
            if (r < 0)
                continue;
            struct sp_kafka_consumer_protocol_assignment *o = &out[a->member_of_rank[r]];
            if (last[r] != t) {
                struct sp_kafka_consumer_protocol_assignment_topic_partition *e =
                    &o->assigned_partitions[o->assigned_partitions_count++];
                e->topic = sp_asg_topic_name(a, t);
                e->partitions = part_all + parts[r];
                e->partitions_count = 0;
                last[r] = t;
            }
            struct sp_kafka_consumer_protocol_assignment_topic_partition *e =
                &o->assigned_partitions[o->assigned_partitions_count - 1];
            e->partitions[e->partitions_count++] = gp - a->topic_base[t];
            parts[r]++;
        }
    }
    return 0;
}

/* ---- range and roundrobin ---- */

/*
 * Per topic, its subscribers in rank order take contiguous ranges: each
 * n / k partitions, and the first n % k one more (Java's RangeAssignor).
 */
static void sp_asg_range(struct sp_asg *a)
{
    for (int32_t t = 0; t < a->topic_count; t++) {
        int32_t k = a->ts_off[t + 1] - a->ts_off[t];
        int32_t n = sp_asg_partitions(a, t);
        if (k == 0)
            continue;
        int32_t per = n / k, extra = n % k;
        for (int32_t i = 0; i < k; i++) {
            int32_t start = per * i + SP_MIN(i, extra);
            int32_t len = per + (i < extra ? 1 : 0);
            SP_ASSERT(start + len <= n);
            for (int32_t p = start; p < start + len; p++)
                a->owner[a->topic_base[t] + p] = a->ts_list[a->ts_off[t] + i];
        }
    }
}

/*
 * Java's RoundRobinAssignor walks a circular iterator over the members by id
 * and, for each partition in (topic, partition) order, skips members not
 * subscribed to its topic. Within one topic that is its subscriber list in
 * turn, starting at the first subscriber at or after the iterator; the
 * iterator then rests just after the last member served. Same result, in
 * O(partitions + topics log members) instead of O(partitions * members).
 */
static void sp_asg_roundrobin(struct sp_asg *a)
{
    int32_t cursor = 0; /* the rank the circular iterator points at */
    for (int32_t t = 0; t < a->topic_count; t++) {
        const int32_t *subs = a->ts_list + a->ts_off[t];
        int32_t k = a->ts_off[t + 1] - a->ts_off[t];
        int32_t n = sp_asg_partitions(a, t);
        if (k == 0 || n == 0)
            continue;
        int32_t lo = 0, hi = k;
        while (lo < hi) {
            int32_t mid = lo + (hi - lo) / 2;
            if (subs[mid] < cursor)
                lo = mid + 1;
            else
                hi = mid;
        }
        int32_t first = lo < k ? lo : 0;
        for (int32_t p = 0; p < n; p++)
            a->owner[a->topic_base[t] + p] = subs[(first + p) % k];
        cursor = (subs[(first + n - 1) % k] + 1) % a->member_count;
    }
}

static int sp_asg_range_assign(const struct sp_kafka_assignor_group *group,
                               struct sp_kafka_consumer_protocol_assignment *out,
                               struct sp_karena *arena)
{
    struct sp_asg a;
    SP_KTRY(sp_asg_prepare(&a, group, out, arena));
    sp_asg_range(&a);
    return sp_asg_emit(&a, out);
}

static int sp_asg_roundrobin_assign(const struct sp_kafka_assignor_group *group,
                                    struct sp_kafka_consumer_protocol_assignment *out,
                                    struct sp_karena *arena)
{
    struct sp_asg a;
    SP_KTRY(sp_asg_prepare(&a, group, out, arena));
    sp_asg_roundrobin(&a);
    return sp_asg_emit(&a, out);
}

/* ---- cooperative-sticky ---- */

/*
 * Per partition: claim is -1 (nobody claims it), the rank of its one
 * claimant, or -2 (several); winner is the rank whose claim counts (highest
 * generation, at wgen), -2 when two claims tie at that generation, -1 when
 * unclaimed. A member's class is its set of known topics: cls[rank] numbers
 * it, cls_list holds the ranks class by class (ascending within a class),
 * cls_off[class] where each starts.
 */
struct sp_asg_sticky {
    int32_t *claim;
    int32_t *winner;
    int32_t *wgen;
    int32_t *count;  /* [member_count]: partitions each rank holds now */
    int32_t *target; /* [member_count]: what balancing gives it */
    int32_t *cls;
    int32_t *cls_list;
    int32_t *cls_off;
    int32_t class_count;
    int32_t *pool;  /* [partition_total]: partitions waiting for a member */
    int32_t *under; /* [member_count]: members below target, while filling */
};

static void sp_asg_claim_note(struct sp_asg_sticky *s, int32_t gp, int32_t rank, int32_t gen)
{
    if (s->claim[gp] == -1) {
        s->claim[gp] = rank;
        s->winner[gp] = rank;
        s->wgen[gp] = gen;
        return;
    }
    if (s->claim[gp] != rank)
        s->claim[gp] = -2;
    if (gen > s->wgen[gp]) {
        s->winner[gp] = rank;
        s->wgen[gp] = gen;
    } else if (gen == s->wgen[gp] && s->winner[gp] != rank) {
        s->winner[gp] = -2;
    }
}

/* Reads every member's owned partitions; claims on unknown partitions are ignored. */
static void sp_asg_sticky_claims(struct sp_asg *a, struct sp_asg_sticky *s)
{
    for (int32_t i = 0; i < a->partition_total; i++) {
        s->claim[i] = -1;
        s->winner[i] = -1;
        s->wgen[i] = SP_KAFKA_ASSIGNOR_GENERATION_NONE;
    }
    for (int32_t r = 0; r < a->member_count; r++) {
        const struct sp_kafka_assignor_member *m = sp_asg_member(a, r);
        int32_t gen = m->generation_id < 0 ? SP_KAFKA_ASSIGNOR_GENERATION_NONE : m->generation_id;
        for (int32_t i = 0; i < m->owned_count; i++) {
            const struct sp_kafka_consumer_protocol_subscription_topic_partition *e = &m->owned[i];
            int32_t t = sp_asg_topic_find(a, e->topic);
            if (t < 0 || e->partitions_count <= 0)
                continue;
            SP_ASSERT(e->partitions != NULL);
            for (int32_t j = 0; j < e->partitions_count; j++) {
                int32_t p = e->partitions[j];
                if (p >= 0 && p < sp_asg_partitions(a, t))
                    sp_asg_claim_note(s, a->topic_base[t] + p, r, gen);
            }
        }
    }
}

/* Every partition stays with the member whose claim counts, if still subscribed. */
static void sp_asg_sticky_seed(struct sp_asg *a, struct sp_asg_sticky *s)
{
    for (int32_t r = 0; r < a->member_count; r++)
        s->count[r] = 0;
    for (int32_t t = 0; t < a->topic_count; t++) {
        for (int32_t gp = a->topic_base[t]; gp < a->topic_base[t + 1]; gp++) {
            int32_t w = s->winner[gp];
            if (w >= 0 && sp_asg_subscribed(a, w, t)) {
                a->owner[gp] = w;
                s->count[w]++;
            }
        }
    }
}

/* Lexicographic order of two ranks' known-topic lists. */
static int sp_asg_cmp_topics(const struct sp_asg *a, int32_t x, int32_t y)
{
    const int32_t *lx = a->mt_list + a->mt_off[x], *ly = a->mt_list + a->mt_off[y];
    int32_t nx = a->mt_off[x + 1] - a->mt_off[x], ny = a->mt_off[y + 1] - a->mt_off[y];
    for (int32_t i = 0; i < SP_MIN(nx, ny); i++) {
        if (lx[i] != ly[i])
            return lx[i] < ly[i] ? -1 : 1;
    }
    return (nx > ny) - (nx < ny);
}

static int sp_asg_cmp_class(int32_t x, int32_t y, const void *ctx)
{
    int c = sp_asg_cmp_topics(ctx, x, y);
    return c != 0 ? c : (x > y) - (x < y);
}

/* Groups the ranks by their set of known topics. */
static void sp_asg_sticky_classes(struct sp_asg *a, struct sp_asg_sticky *s)
{
    for (int32_t r = 0; r < a->member_count; r++)
        s->cls_list[r] = r;
    sp_asg_sort(s->cls_list, (size_t)a->member_count, sp_asg_cmp_class, a);
    s->class_count = 0;
    for (int32_t i = 0; i < a->member_count; i++) {
        if (i == 0 || sp_asg_cmp_topics(a, s->cls_list[i - 1], s->cls_list[i]) != 0)
            s->cls_off[s->class_count++] = i;
        s->cls[s->cls_list[i]] = s->class_count - 1;
    }
    s->cls_off[s->class_count] = a->member_count;
}

/*
 * Targets of a class holding `total` partitions over its `n` members: each
 * total / n, and the total % n larger quotas first to members holding more
 * than the smaller quota (so that they revoke one fewer), then to members at
 * it, then to the rest, each in rank order.
 */
static void sp_asg_sticky_targets(struct sp_asg_sticky *s, const int32_t *mem, int32_t n,
                                  int64_t total)
{
    int32_t quota = (int32_t)(total / n), extra = (int32_t)(total % n);
    for (int32_t i = 0; i < n; i++)
        s->target[mem[i]] = quota;
    for (int pass = 0; pass < 3; pass++) {
        for (int32_t i = 0; i < n && extra > 0; i++) {
            int32_t m = mem[i];
            bool fits = pass == 0 ? s->count[m] > quota : pass == 1 ? s->count[m] == quota : true;
            if (s->target[m] == quota && fits) {
                s->target[m] = quota + 1;
                extra--;
            }
        }
    }
    SP_ASSERT(extra == 0);
}

/*
 * Takes from members of class `c` above target the partitions beyond it,
 * into the pool: partitions they did not validly own first, then owned ones
 * from the highest index down, so a member keeps its lowest partitions.
 */
static void sp_asg_sticky_release(struct sp_asg *a, struct sp_asg_sticky *s, int32_t c,
                                  const int32_t *topics, int32_t topic_n, int32_t *pool_len)
{
    for (int kept = 0; kept < 2; kept++) {
        for (int32_t i = topic_n; i-- > 0;) {
            int32_t t = topics[i];
            for (int32_t gp = a->topic_base[t + 1]; gp-- > a->topic_base[t];) {
                int32_t m = a->owner[gp];
                if (m < 0 || s->cls[m] != c || s->count[m] <= s->target[m])
                    continue;
                if ((s->winner[gp] == m) != (kept == 1))
                    continue;
                a->owner[gp] = -1;
                s->count[m]--;
                s->pool[(*pool_len)++] = gp;
            }
        }
    }
}

/* Deals the pool, ascending, in turn to the class's members below target. */
static void sp_asg_sticky_fill(struct sp_asg *a, struct sp_asg_sticky *s, const int32_t *mem,
                               int32_t n, int32_t pool_len)
{
    sp_asg_sort(s->pool, (size_t)pool_len, sp_asg_cmp_int, NULL);
    int32_t under_n = 0;
    for (int32_t i = 0; i < n; i++) {
        if (s->count[mem[i]] < s->target[mem[i]])
            s->under[under_n++] = mem[i];
    }
    int32_t next = 0;
    while (next < pool_len) {
        SP_ASSERT(under_n > 0);
        int32_t keep = 0;
        for (int32_t i = 0; i < under_n; i++) {
            int32_t m = s->under[i];
            if (next < pool_len) {
                a->owner[s->pool[next++]] = m;
                s->count[m]++;
            }
            if (s->count[m] < s->target[m])
                s->under[keep++] = m;
        }
        under_n = keep;
    }
    SP_ASSERT(under_n == 0);
}

/*
 * Balances class `c` exactly: counts within one of each other, each member
 * keeping what it holds up to its target. With `take_free`, the free
 * partitions of the class's topics join the pool (the one-class case, where
 * nothing else could take them).
 */
static void sp_asg_sticky_balance_class(struct sp_asg *a, struct sp_asg_sticky *s, int32_t c,
                                        bool take_free)
{
    const int32_t *mem = s->cls_list + s->cls_off[c];
    int32_t n = s->cls_off[c + 1] - s->cls_off[c];
    SP_ASSERT(n > 0);
    const int32_t *topics = a->mt_list + a->mt_off[mem[0]];
    int32_t topic_n = a->mt_off[mem[0] + 1] - a->mt_off[mem[0]];
    if (topic_n == 0)
        return;
    int32_t pool_len = 0;
    for (int32_t i = 0; take_free && i < topic_n; i++) {
        for (int32_t gp = a->topic_base[topics[i]]; gp < a->topic_base[topics[i] + 1]; gp++) {
            if (a->owner[gp] < 0)
                s->pool[pool_len++] = gp;
        }
    }
    int64_t total = pool_len;
    for (int32_t i = 0; i < n; i++)
        total += s->count[mem[i]];
    sp_asg_sticky_targets(s, mem, n, total);
    sp_asg_sticky_release(a, s, c, topics, topic_n, &pool_len);
    sp_asg_sticky_fill(a, s, mem, n, pool_len);
    for (int32_t i = 0; i < n; i++)
        SP_ASSERT(s->count[mem[i]] == s->target[mem[i]]);
}

/* The first of `k` subscribers holding the fewest partitions. */
static int32_t sp_asg_least(const struct sp_asg_sticky *s, const int32_t *subs, int32_t k)
{
    int32_t best = subs[0];
    for (int32_t i = 1; i < k; i++) {
        if (s->count[subs[i]] < s->count[best])
            best = subs[i];
    }
    return best;
}

static int sp_asg_cmp_fewest_subscribers(int32_t x, int32_t y, const void *ctx)
{
    const struct sp_asg *a = ctx;
    int32_t kx = a->ts_off[x + 1] - a->ts_off[x], ky = a->ts_off[y + 1] - a->ts_off[y];
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return (x > y) - (x < y);
}

/*
 * The general case's first balance: each free partition, topics with the
 * fewest subscribers first, to its least loaded subscriber; then passes that
 * move a partition whenever its owner holds two or more than the least
 * loaded subscriber of its topic (each move lowers the sum of squared counts,
 * so the passes converge; they stop at SP_ASG_STICKY_PASSES_MAX regardless).
 */
static void sp_asg_sticky_general(struct sp_asg *a, struct sp_asg_sticky *s, int32_t *order)
{
    for (int32_t t = 0; t < a->topic_count; t++)
        order[t] = t;
    sp_asg_sort(order, (size_t)a->topic_count, sp_asg_cmp_fewest_subscribers, a);
    for (int32_t i = 0; i < a->topic_count; i++) {
        int32_t t = order[i], k = a->ts_off[t + 1] - a->ts_off[t];
        for (int32_t gp = a->topic_base[t]; k > 0 && gp < a->topic_base[t + 1]; gp++) {
            if (a->owner[gp] >= 0)
                continue;
            int32_t m = sp_asg_least(s, a->ts_list + a->ts_off[t], k);
            a->owner[gp] = m;
            s->count[m]++;
        }
    }
    for (int pass = 0; pass < SP_ASG_STICKY_PASSES_MAX; pass++) {
        int32_t moved = 0;
        for (int kept = 0; kept < 2; kept++) {
            for (int32_t t = 0; t < a->topic_count; t++) {
                const int32_t *subs = a->ts_list + a->ts_off[t];
                int32_t k = a->ts_off[t + 1] - a->ts_off[t];
                for (int32_t gp = a->topic_base[t]; k > 1 && gp < a->topic_base[t + 1]; gp++) {
                    int32_t x = a->owner[gp];
                    if (x < 0 || (s->winner[gp] == x) != (kept == 1))
                        continue;
                    int32_t y = sp_asg_least(s, subs, k);
                    if (s->count[x] < s->count[y] + 2)
                        continue;
                    a->owner[gp] = y;
                    s->count[x]--;
                    s->count[y]++;
                    moved++;
                }
            }
        }
        if (moved == 0)
            break;
    }
}

/*
 * The cooperative rule: a partition whose new owner is not the member whose
 * claim counted, while some member claims it, is left out of this round.
 */
static void sp_asg_sticky_holdback(struct sp_asg *a, const struct sp_asg_sticky *s)
{
    for (int32_t gp = 0; gp < a->partition_total; gp++) {
        int32_t o = a->owner[gp];
        if (o >= 0 && s->claim[gp] != -1 && s->winner[gp] != o)
            a->owner[gp] = -1;
    }
}

static int sp_asg_sticky_assign(const struct sp_kafka_assignor_group *group,
                                struct sp_kafka_consumer_protocol_assignment *out,
                                struct sp_karena *arena)
{
    struct sp_asg a;
    struct sp_asg_sticky s;
    int32_t *order;
    SP_KTRY(sp_asg_prepare(&a, group, out, arena));
    SP_ASG_ALLOC(&a, s.claim, a.partition_total);
    SP_ASG_ALLOC(&a, s.winner, a.partition_total);
    SP_ASG_ALLOC(&a, s.wgen, a.partition_total);
    SP_ASG_ALLOC(&a, s.pool, a.partition_total);
    SP_ASG_ALLOC(&a, s.count, a.member_count);
    SP_ASG_ALLOC(&a, s.target, a.member_count);
    SP_ASG_ALLOC(&a, s.cls, a.member_count);
    SP_ASG_ALLOC(&a, s.cls_list, a.member_count);
    SP_ASG_ALLOC(&a, s.cls_off, a.member_count + 1);
    SP_ASG_ALLOC(&a, s.under, a.member_count);
    SP_ASG_ALLOC(&a, order, a.topic_count);
    sp_asg_sticky_claims(&a, &s);
    sp_asg_sticky_seed(&a, &s);
    sp_asg_sticky_classes(&a, &s);
    if (s.class_count == 1) {
        sp_asg_sticky_balance_class(&a, &s, 0, true);
    } else {
        sp_asg_sticky_general(&a, &s, order);
        for (int32_t c = 0; c < s.class_count; c++)
            sp_asg_sticky_balance_class(&a, &s, c, false);
    }
    sp_asg_sticky_holdback(&a, &s);
    return sp_asg_emit(&a, out);
}

/* ---- Table and entry points ---- */

const struct sp_kafka_assignor sp_kafka_assignor_range = {
    .name = "range",
    .cooperative = false,
    .assign = sp_asg_range_assign,
};

const struct sp_kafka_assignor sp_kafka_assignor_roundrobin = {
    .name = "roundrobin",
    .cooperative = false,
    .assign = sp_asg_roundrobin_assign,
};

const struct sp_kafka_assignor sp_kafka_assignor_cooperative_sticky = {
    .name = "cooperative-sticky",
    .cooperative = true,
    .assign = sp_asg_sticky_assign,
};

const struct sp_kafka_assignor *sp_kafka_assignor_find(struct sp_kstr name)
{
    static const struct sp_kafka_assignor *const all[] = {
        &sp_kafka_assignor_range,
        &sp_kafka_assignor_roundrobin,
        &sp_kafka_assignor_cooperative_sticky,
    };
    if (name.len < 0)
        return NULL;
    SP_ASSERT(name.len == 0 || name.ptr != NULL);
    for (size_t i = 0; i < SP_ARRAY_LEN(all); i++) {
        if (sp_asg_kstr_cmp(name, sp_kstr_of(all[i]->name)) == 0)
            return all[i];
    }
    return NULL;
}

/* Bytes of one padded arena allocation of `count` elements of `size`. */
static size_t sp_asg_bytes(size_t count, size_t size)
{
    return count * size + 8;
}

size_t sp_kafka_assignor_arena_bytes(const struct sp_kafka_assignor_group *group)
{
    SP_ASSERT(group != NULL);
    if (sp_asg_check(group) != 0)
        return 0;
    size_t m = (size_t)group->member_count, t = (size_t)group->topic_count;
    size_t subs = 0, parts = 0;
    for (size_t i = 0; i < m; i++)
        subs += (size_t)group->members[i].topics_count;
    for (size_t i = 0; i < t; i++)
        parts += (size_t)group->topics[i].partition_count;
    size_t i32 = sizeof(int32_t);
    /* The model: member and topic order, topic bases, both CSR lists, the cursor, owner. */
    size_t n = sp_asg_bytes(m, i32) + sp_asg_bytes(t, i32) + sp_asg_bytes(t + 1, i32) +
               sp_asg_bytes(m + 1, i32) + sp_asg_bytes(subs, i32) + sp_asg_bytes(t + 1, i32) +
               sp_asg_bytes(subs, i32) + sp_asg_bytes(t, i32) + sp_asg_bytes(parts, i32);
    /* cooperative-sticky: four per partition, six per member, one per topic. */
    n += 4 * sp_asg_bytes(parts, i32) + 5 * sp_asg_bytes(m, i32) + sp_asg_bytes(m + 1, i32) +
         sp_asg_bytes(t, i32);
    /* The result: three counters per member, at most one entry per subscribed topic. */
    n += 3 * sp_asg_bytes(m, i32) +
         sp_asg_bytes(subs, sizeof(struct sp_kafka_consumer_protocol_assignment_topic_partition)) +
         sp_asg_bytes(parts, i32);
    return n;
}

int sp_kafka_assignor_assign(const struct sp_kafka_assignor *assignor,
                             const struct sp_kafka_assignor_group *group,
                             struct sp_kafka_consumer_protocol_assignment *out,
                             struct sp_karena *arena)
{
    SP_ASSERT(assignor != NULL);
    SP_ASSERT(assignor->assign != NULL);
    return assignor->assign(group, out, arena);
}

void sp_kafka_assignor_member_from_subscription(
    struct sp_kafka_assignor_member *member, struct sp_kstr member_id,
    const struct sp_kafka_consumer_protocol_subscription *subscription)
{
    SP_ASSERT(member != NULL);
    SP_ASSERT(subscription != NULL);
    const struct sp_kafka_consumer_protocol_subscription *s = subscription;
    member->member_id = member_id;
    member->topics = s->topics;
    member->topics_count = s->topics_count > 0 ? s->topics_count : 0;
    member->owned = s->owned_partitions;
    member->owned_count = s->owned_partitions_count > 0 ? s->owned_partitions_count : 0;
    int32_t gen = s->generation_id;
    if (gen < 0 && s->user_data.len >= SP_KAFKA_COOPERATIVE_USER_DATA_BYTES)
        gen = (int32_t)sp_kload32(s->user_data.ptr);
    member->generation_id = gen < 0 ? SP_KAFKA_ASSIGNOR_GENERATION_NONE : gen;
}

struct sp_kbytes sp_kafka_cooperative_user_data(uint8_t buf[SP_KAFKA_COOPERATIVE_USER_DATA_BYTES],
                                                int32_t generation)
{
    SP_ASSERT(buf != NULL);
    sp_kstore32(buf, (uint32_t)generation);
    return (struct sp_kbytes){buf, SP_KAFKA_COOPERATIVE_USER_DATA_BYTES};
}

/* ---- Member metadata and assignment bytes ---- */

size_t sp_kafka_subscription_bytes_size(const struct sp_kafka_consumer_protocol_subscription *s,
                                        int16_t version)
{
    return 2 + sp_kafka_consumer_protocol_subscription_size(s, version);
}

int sp_kafka_subscription_bytes_encode(void *buf, size_t buf_bytes, int16_t version,
                                       const struct sp_kafka_consumer_protocol_subscription *s)
{
    SP_ASSERT(s != NULL);
    SP_ASSERT(buf != NULL || buf_bytes == 0);
    if (version < 0 || version > SP_KAFKA_CONSUMER_PROTOCOL_SUBSCRIPTION_VERSION_MAX)
        return -ENOTSUP;
    if (buf_bytes < 2)
        return -ENOSPC;
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, buf_bytes);
    SP_KTRY(sp_kw_int16(&w, version, "ConsumerProtocolSubscription.version"));
    return sp_kafka_consumer_protocol_subscription_encode(&w, version, s);
}

int sp_kafka_subscription_bytes_decode(const void *buf, size_t len, struct sp_karena *arena,
                                       int16_t *version_out,
                                       struct sp_kafka_consumer_protocol_subscription *s)
{
    SP_ASSERT(buf != NULL || len == 0);
    SP_ASSERT(s != NULL);
    struct sp_kreader r;
    int16_t version;
    if (len < 2)
        return -EBADMSG; /* no version (and no null buffer for the reader) */
    sp_kreader_init(&r, buf, len, arena);
    SP_KTRY(sp_kr_int16(&r, &version, "ConsumerProtocolSubscription.version"));
    if (version < 0)
        return -EBADMSG;
    if (version_out != NULL)
        *version_out = version;
    return sp_kafka_consumer_protocol_subscription_decode(
        &r, SP_MIN(version, (int16_t)SP_KAFKA_CONSUMER_PROTOCOL_SUBSCRIPTION_VERSION_MAX), s);
}

size_t sp_kafka_assignment_bytes_size(const struct sp_kafka_consumer_protocol_assignment *s,
                                      int16_t version)
{
    return 2 + sp_kafka_consumer_protocol_assignment_size(s, version);
}

int sp_kafka_assignment_bytes_encode(void *buf, size_t buf_bytes, int16_t version,
                                     const struct sp_kafka_consumer_protocol_assignment *s)
{
    SP_ASSERT(s != NULL);
    SP_ASSERT(buf != NULL || buf_bytes == 0);
    if (version < 0 || version > SP_KAFKA_CONSUMER_PROTOCOL_ASSIGNMENT_VERSION_MAX)
        return -ENOTSUP;
    if (buf_bytes < 2)
        return -ENOSPC;
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, buf_bytes);
    SP_KTRY(sp_kw_int16(&w, version, "ConsumerProtocolAssignment.version"));
    return sp_kafka_consumer_protocol_assignment_encode(&w, version, s);
}

int sp_kafka_assignment_bytes_decode(const void *buf, size_t len, struct sp_karena *arena,
                                     int16_t *version_out,
                                     struct sp_kafka_consumer_protocol_assignment *s)
{
    SP_ASSERT(buf != NULL || len == 0);
    SP_ASSERT(s != NULL);
    struct sp_kreader r;
    int16_t version;
    if (len < 2)
        return -EBADMSG; /* no version (and no null buffer for the reader) */
    sp_kreader_init(&r, buf, len, arena);
    SP_KTRY(sp_kr_int16(&r, &version, "ConsumerProtocolAssignment.version"));
    if (version < 0)
        return -EBADMSG;
    if (version_out != NULL)
        *version_out = version;
    return sp_kafka_consumer_protocol_assignment_decode(
        &r, SP_MIN(version, (int16_t)SP_KAFKA_CONSUMER_PROTOCOL_ASSIGNMENT_VERSION_MAX), s);
}
