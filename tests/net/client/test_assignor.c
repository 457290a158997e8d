/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The consumer-group assignors (net/client/assignor.c): the exact results of
 * Kafka's Java RangeAssignor and RoundRobinAssignor on their Javadoc and unit
 * test examples; range and roundrobin against straightforward models of the
 * Java loops on thousands of random groups; cooperative-sticky's guarantees
 * on random groups (valid, complete when nothing is in flight, balanced
 * within each subscription set, stable when nothing changes, minimum
 * revocations when a member joins with none of them handed over in the same
 * round, nobody else moved when a member leaves, never a partition given
 * while another member claims it) and on hand-made generation conflicts;
 * bad groups and every too-small arena; and the JoinGroup/SyncGroup bytes
 * at versions 0..3 with their int16 version prefix, every truncation
 * rejected, newer versions read as 3.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_kafka_assignor.h"
#include "sp_rand.h"

#define T_MEMBERS_MAX 24
#define T_TOPICS_MAX 8
#define T_PARTS_MAX 40
#define T_SUBS_MAX (T_TOPICS_MAX + 3) /* room for an unknown topic and a repeat */
#define T_ARENA_BYTES (1u << 20)

/* A test group: owns every string and array the assignor input borrows. */
struct tgroup {
    int32_t member_count;
    int32_t topic_count;
    char ids[T_MEMBERS_MAX][32];
    char names[T_TOPICS_MAX][16];
    struct sp_kafka_assignor_topic topics[T_TOPICS_MAX];
    struct sp_kstr subs[T_MEMBERS_MAX][T_SUBS_MAX];
    struct sp_kafka_assignor_member members[T_MEMBERS_MAX];
    struct sp_kafka_consumer_protocol_subscription_topic_partition owned[T_MEMBERS_MAX]
                                                                        [T_TOPICS_MAX];
    int32_t owned_parts[T_MEMBERS_MAX][T_TOPICS_MAX][T_PARTS_MAX + 1]; /* + a bad claim */
    /* The last result: owner[topic][partition] = member index or -1. */
    int32_t owner[T_TOPICS_MAX][T_PARTS_MAX];
    struct sp_kafka_consumer_protocol_assignment out[T_MEMBERS_MAX];
    size_t arena_used;
};

static uint8_t arena_mem[T_ARENA_BYTES] __attribute__((aligned(16)));

static struct sp_kstr kstr(const char *s)
{
    return sp_kstr_of(s);
}

static void tg_init(struct tgroup *g, int32_t topic_count, const int32_t *partitions)
{
    memset(g, 0, sizeof(*g));
    g->topic_count = topic_count;
    for (int32_t t = 0; t < topic_count; t++) {
        snprintf(g->names[t], sizeof(g->names[t]), "t%d", (int)t);
        g->topics[t].name = kstr(g->names[t]);
        g->topics[t].partition_count = partitions[t];
    }
}

static int32_t tg_add_member(struct tgroup *g, const char *id)
{
    int32_t m = g->member_count++;
    assert_true(m < T_MEMBERS_MAX);
    snprintf(g->ids[m], sizeof(g->ids[m]), "%s", id);
    g->members[m].member_id = kstr(g->ids[m]);
    g->members[m].topics = g->subs[m];
    g->members[m].owned = g->owned[m];
    g->members[m].generation_id = SP_KAFKA_ASSIGNOR_GENERATION_NONE;
    return m;
}

static void tg_subscribe(struct tgroup *g, int32_t m, const char *topic)
{
    assert_true(g->members[m].topics_count < T_SUBS_MAX);
    g->subs[m][g->members[m].topics_count++] = kstr(topic);
}

static bool tg_subscribed(const struct tgroup *g, int32_t m, int32_t t)
{
    for (int32_t i = 0; i < g->members[m].topics_count; i++) {
        if (g->subs[m][i].len == (int32_t)strlen(g->names[t]) &&
            memcmp(g->subs[m][i].ptr, g->names[t], strlen(g->names[t])) == 0)
            return true;
    }
    return false;
}

static int32_t tg_subscriber_count(const struct tgroup *g, int32_t t)
{
    int32_t n = 0;
    for (int32_t m = 0; m < g->member_count; m++)
        n += tg_subscribed(g, m, t) ? 1 : 0;
    return n;
}

static int32_t tg_topic_of(const struct tgroup *g, struct sp_kstr name)
{
    for (int32_t t = 0; t < g->topic_count; t++) {
        if (name.len == (int32_t)strlen(g->names[t]) &&
            memcmp(name.ptr, g->names[t], (size_t)name.len) == 0)
            return t;
    }
    return -1;
}

/* Sets member m's owned partitions to what it holds in g->owner, at `generation`. */
static void tg_own_result(struct tgroup *g, int32_t m, int32_t generation)
{
    g->members[m].owned_count = 0;
    g->members[m].generation_id = generation;
    for (int32_t t = 0; t < g->topic_count; t++) {
        int32_t n = 0;
        for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
            if (g->owner[t][p] == m)
                g->owned_parts[m][t][n++] = p;
        }
        if (n == 0)
            continue;
        struct sp_kafka_consumer_protocol_subscription_topic_partition *e =
            &g->owned[m][g->members[m].owned_count++];
        e->topic = g->topics[t].name;
        e->partitions = g->owned_parts[m][t];
        e->partitions_count = n;
    }
}

/* Adds one owned partition claim to member m. */
static void tg_claim(struct tgroup *g, int32_t m, int32_t t, int32_t p)
{
    struct sp_kafka_consumer_protocol_subscription_topic_partition *e = NULL;
    for (int32_t i = 0; i < g->members[m].owned_count; i++) {
        if (g->owned[m][i].topic.ptr == g->topics[t].name.ptr)
            e = &g->owned[m][i];
    }
    if (e == NULL) {
        e = &g->owned[m][g->members[m].owned_count++];
        e->topic = g->topics[t].name;
        e->partitions = g->owned_parts[m][t];
        e->partitions_count = 0;
    }
    g->owned_parts[m][t][e->partitions_count++] = p;
}

static bool tg_claims(const struct tgroup *g, int32_t m, int32_t t, int32_t p)
{
    for (int32_t i = 0; i < g->members[m].owned_count; i++) {
        const struct sp_kafka_consumer_protocol_subscription_topic_partition *e = &g->owned[m][i];
        if (tg_topic_of(g, e->topic) != t)
            continue;
        for (int32_t j = 0; j < e->partitions_count; j++) {
            if (e->partitions[j] == p)
                return true;
        }
    }
    return false;
}

static void tg_remove_member(struct tgroup *g, int32_t m)
{
    /* Move the last member into slot m, fixing the pointers into g. */
    int32_t last = g->member_count - 1;
    if (m != last) {
        memcpy(g->ids[m], g->ids[last], sizeof(g->ids[m]));
        memcpy(g->subs[m], g->subs[last], sizeof(g->subs[m]));
        memcpy(g->owned_parts[m], g->owned_parts[last], sizeof(g->owned_parts[m]));
        g->members[m] = g->members[last];
        g->members[m].member_id = kstr(g->ids[m]);
        g->members[m].topics = g->subs[m];
        g->members[m].owned = g->owned[m];
        memcpy(g->owned[m], g->owned[last], sizeof(g->owned[m]));
        for (int32_t i = 0; i < g->members[m].owned_count; i++) {
            int32_t t = tg_topic_of(g, g->owned[m][i].topic);
            g->owned[m][i].partitions = g->owned_parts[m][t];
        }
        for (int32_t t = 0; t < g->topic_count; t++) {
            for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
                if (g->owner[t][p] == m)
                    g->owner[t][p] = -1;
                else if (g->owner[t][p] == last)
                    g->owner[t][p] = m;
            }
        }
    } else {
        for (int32_t t = 0; t < g->topic_count; t++) {
            for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
                if (g->owner[t][p] == m)
                    g->owner[t][p] = -1;
            }
        }
    }
    g->member_count--;
}

/* Swaps members x and y (input order only), keeping g->owner in step. */
static void tg_swap_members(struct tgroup *g, int32_t x, int32_t y)
{
    static char id[32];
    static struct sp_kstr subs[T_SUBS_MAX];
    static struct sp_kafka_consumer_protocol_subscription_topic_partition owned[T_TOPICS_MAX];
    static int32_t owned_parts[T_TOPICS_MAX][T_PARTS_MAX + 1];
    if (x == y)
        return;
    struct sp_kafka_assignor_member member = g->members[x];
#define SWAP_ARRAY(field, tmp)                                                                     \
    do {                                                                                           \
        memcpy(tmp, g->field[x], sizeof(tmp));                                                     \
        memcpy(g->field[x], g->field[y], sizeof(tmp));                                             \
        memcpy(g->field[y], tmp, sizeof(tmp));                                                     \
    } while (0)
    SWAP_ARRAY(ids, id);
    SWAP_ARRAY(subs, subs);
    SWAP_ARRAY(owned, owned);
    SWAP_ARRAY(owned_parts, owned_parts);
#undef SWAP_ARRAY
    g->members[x] = g->members[y];
    g->members[y] = member;
    for (int32_t i = 0; i < 2; i++) {
        int32_t m = i == 0 ? x : y;
        g->members[m].member_id = kstr(g->ids[m]);
        g->members[m].topics = g->subs[m];
        g->members[m].owned = g->owned[m];
        for (int32_t j = 0; j < g->members[m].owned_count; j++)
            g->owned[m][j].partitions = g->owned_parts[m][tg_topic_of(g, g->owned[m][j].topic)];
    }
    for (int32_t t = 0; t < g->topic_count; t++) {
        for (int32_t p = 0; p < g->topics[t].partition_count; p++)
            g->owner[t][p] = g->owner[t][p] == x ? y : g->owner[t][p] == y ? x : g->owner[t][p];
    }
}

/*
 * Runs `a` on g and reads the result into g->owner, checking its shape:
 * known topics in strictly ascending name order, partitions strictly
 * ascending and in range, no partition given twice, user data null, and the
 * arena within sp_kafka_assignor_arena_bytes.
 */
static int tg_run(struct tgroup *g, const struct sp_kafka_assignor *a)
{
    struct sp_kafka_assignor_group group = {g->members, g->member_count, g->topics, g->topic_count};
    struct sp_karena arena;
    size_t need = sp_kafka_assignor_arena_bytes(&group);
    assert_true(need > 0 && need <= T_ARENA_BYTES);
    sp_karena_init(&arena, arena_mem, need);
    int rc = sp_kafka_assignor_assign(a, &group, g->out, &arena);
    if (rc != 0)
        return rc;
    g->arena_used = arena.used;
    for (int32_t t = 0; t < T_TOPICS_MAX; t++) {
        for (int32_t p = 0; p < T_PARTS_MAX; p++)
            g->owner[t][p] = -1;
    }
    for (int32_t m = 0; m < g->member_count; m++) {
        const struct sp_kafka_consumer_protocol_assignment *o = &g->out[m];
        assert_true(o->user_data.len < 0);
        assert_true(o->assigned_partitions_count >= 0);
        int32_t prev_t = -1;
        for (int32_t i = 0; i < o->assigned_partitions_count; i++) {
            const struct sp_kafka_consumer_protocol_assignment_topic_partition *e =
                &o->assigned_partitions[i];
            int32_t t = tg_topic_of(g, e->topic);
            assert_true(t >= 0);
            if (prev_t >= 0)
                assert_true(strcmp(g->names[prev_t], g->names[t]) < 0);
            prev_t = t;
            assert_true(e->partitions_count > 0);
            for (int32_t j = 0; j < e->partitions_count; j++) {
                int32_t p = e->partitions[j];
                assert_true(p >= 0 && p < g->topics[t].partition_count);
                if (j > 0)
                    assert_true(e->partitions[j - 1] < p);
                assert_int_equal(g->owner[t][p], -1);
                g->owner[t][p] = m;
            }
        }
    }
    return 0;
}

/* Member m's assignment as "t0p0,t0p2,t1p1" (empty string for none). */
static const char *tg_format(const struct tgroup *g, int32_t m)
{
    static char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    const struct sp_kafka_consumer_protocol_assignment *o = &g->out[m];
    for (int32_t i = 0; i < o->assigned_partitions_count; i++) {
        const struct sp_kafka_consumer_protocol_assignment_topic_partition *e =
            &o->assigned_partitions[i];
        for (int32_t j = 0; j < e->partitions_count; j++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.*sp%d", n > 0 ? "," : "",
                                  (int)e->topic.len, e->topic.ptr, (int)e->partitions[j]);
    }
    return buf;
}

static int32_t tg_count(const struct tgroup *g, int32_t m)
{
    int32_t n = 0;
    for (int32_t t = 0; t < g->topic_count; t++) {
        for (int32_t p = 0; p < g->topics[t].partition_count; p++)
            n += g->owner[t][p] == m ? 1 : 0;
    }
    return n;
}

/* ---- Names ---- */

static void test_names(void **state)
{
    (void)state;
    assert_ptr_equal(sp_kafka_assignor_find(SP_KSTR("range")), &sp_kafka_assignor_range);
    assert_ptr_equal(sp_kafka_assignor_find(SP_KSTR("roundrobin")), &sp_kafka_assignor_roundrobin);
    assert_ptr_equal(sp_kafka_assignor_find(SP_KSTR("cooperative-sticky")),
                     &sp_kafka_assignor_cooperative_sticky);
    /* Not NUL-terminated: only `len` bytes count. */
    assert_ptr_equal(sp_kafka_assignor_find((struct sp_kstr){"rangeX", 5}),
                     &sp_kafka_assignor_range);
    assert_null(sp_kafka_assignor_find(SP_KSTR("rang")));
    assert_null(sp_kafka_assignor_find(SP_KSTR("sticky")));
    assert_null(sp_kafka_assignor_find(SP_KSTR("Range")));
    assert_null(sp_kafka_assignor_find(SP_KSTR("")));
    assert_null(sp_kafka_assignor_find(SP_KSTR_NULL));
    assert_string_equal(sp_kafka_assignor_range.name, "range");
    assert_string_equal(sp_kafka_assignor_roundrobin.name, "roundrobin");
    assert_string_equal(sp_kafka_assignor_cooperative_sticky.name, "cooperative-sticky");
    assert_false(sp_kafka_assignor_range.cooperative);
    assert_false(sp_kafka_assignor_roundrobin.cooperative);
    assert_true(sp_kafka_assignor_cooperative_sticky.cooperative);
}

/* ---- Exact Java results ---- */

/* Two members, t0 and t1 of 3 partitions each: the Javadoc examples. */
static void test_javadoc_two_topics(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {3, 3};
    tg_init(&g, 2, parts);
    /* Input order differs from id order: the result must not. */
    int32_t c1 = tg_add_member(&g, "C1");
    int32_t c0 = tg_add_member(&g, "C0");
    tg_subscribe(&g, c1, "t1");
    tg_subscribe(&g, c1, "t0");
    tg_subscribe(&g, c0, "t0");
    tg_subscribe(&g, c0, "t1");

    assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
    assert_string_equal(tg_format(&g, c0), "t0p0,t0p1,t1p0,t1p1");
    assert_string_equal(tg_format(&g, c1), "t0p2,t1p2");

    assert_int_equal(tg_run(&g, &sp_kafka_assignor_roundrobin), 0);
    assert_string_equal(tg_format(&g, c0), "t0p0,t0p2,t1p1");
    assert_string_equal(tg_format(&g, c1), "t0p1,t1p0,t1p2");

    /* A fresh group with identical subscriptions: Java's round-robin fill. */
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, c0), "t0p0,t0p2,t1p1");
    assert_string_equal(tg_format(&g, c1), "t0p1,t1p0,t1p2");
}

/* RoundRobinAssignor's Javadoc example with different subscriptions. */
static void test_roundrobin_javadoc_mixed(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {1, 2, 3};
    tg_init(&g, 3, parts);
    int32_t c2 = tg_add_member(&g, "C2");
    int32_t c0 = tg_add_member(&g, "C0");
    int32_t c1 = tg_add_member(&g, "C1");
    tg_subscribe(&g, c0, "t0");
    tg_subscribe(&g, c1, "t0");
    tg_subscribe(&g, c1, "t1");
    tg_subscribe(&g, c2, "t0");
    tg_subscribe(&g, c2, "t1");
    tg_subscribe(&g, c2, "t2");
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_roundrobin), 0);
    assert_string_equal(tg_format(&g, c0), "t0p0");
    assert_string_equal(tg_format(&g, c1), "t1p0");
    assert_string_equal(tg_format(&g, c2), "t1p1,t2p0,t2p1,t2p2");
}

/*
 * Java's testMultipleConsumersMixedTopics (both assignors give the same
 * here): topic1 of 3 and topic2 of 2, consumer2 alone on topic2.
 */
static void test_java_mixed_topics(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {3, 2};
    tg_init(&g, 2, parts);
    snprintf(g.names[0], sizeof(g.names[0]), "topic1");
    snprintf(g.names[1], sizeof(g.names[1]), "topic2");
    g.topics[0].name = kstr(g.names[0]);
    g.topics[1].name = kstr(g.names[1]);
    int32_t c3 = tg_add_member(&g, "consumer3");
    int32_t c1 = tg_add_member(&g, "consumer1");
    int32_t c2 = tg_add_member(&g, "consumer2");
    tg_subscribe(&g, c1, "topic1");
    tg_subscribe(&g, c2, "topic1");
    tg_subscribe(&g, c2, "topic2");
    tg_subscribe(&g, c3, "topic1");
    const struct sp_kafka_assignor *both[] = {&sp_kafka_assignor_range,
                                              &sp_kafka_assignor_roundrobin};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(tg_run(&g, both[i]), 0);
        assert_string_equal(tg_format(&g, c1), "topic1p0");
        assert_string_equal(tg_format(&g, c2), "topic1p1,topic2p0,topic2p1");
        assert_string_equal(tg_format(&g, c3), "topic1p2");
    }
}

/* Java's small range cases: unknown and unsubscribed topics, more members than partitions. */
static void test_range_small_cases(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {3, 3};
    tg_init(&g, 2, parts);
    int32_t c = tg_add_member(&g, "consumer");
    tg_subscribe(&g, c, "nonexistent");
    for (int i = 0; i < 3; i++) {
        const struct sp_kafka_assignor *a = i == 0   ? &sp_kafka_assignor_range
                                            : i == 1 ? &sp_kafka_assignor_roundrobin
                                                     : &sp_kafka_assignor_cooperative_sticky;
        assert_int_equal(tg_run(&g, a), 0);
        assert_string_equal(tg_format(&g, c), "");
    }
    tg_subscribe(&g, c, "t0"); /* t1 stays unsubscribed */
    tg_subscribe(&g, c, "t0"); /* a repeat counts once */
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
    assert_string_equal(tg_format(&g, c), "t0p0,t0p1,t0p2");

    const int32_t one[] = {1};
    tg_init(&g, 1, one);
    int32_t b = tg_add_member(&g, "consumer2");
    int32_t a = tg_add_member(&g, "consumer1");
    tg_subscribe(&g, a, "t0");
    tg_subscribe(&g, b, "t0");
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
    assert_string_equal(tg_format(&g, a), "t0p0");
    assert_string_equal(tg_format(&g, b), "");
    assert_null(g.out[b].assigned_partitions);
    assert_int_equal(g.out[b].assigned_partitions_count, 0);

    /* No members, no topics: nothing to do, not an error. */
    tg_init(&g, 0, one);
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
}

/* ---- Random groups ---- */

static const char *const unknown_topic = "zz-missing";

/*
 * A random group: 1..T_MEMBERS_MAX members with random ids (so id order is
 * not input order), 1..T_TOPICS_MAX topics of 0..T_PARTS_MAX partitions;
 * with `identical`, every member subscribes to the same set in its own
 * order, else to random subsets drawn from a few shapes so that several
 * members share each. Subscriptions sometimes name an unknown topic or
 * repeat one.
 */
static void tg_random(struct tgroup *g, struct sp_rand *rng, bool identical, int32_t members_max)
{
    int32_t parts[T_TOPICS_MAX];
    int32_t topic_count = 1 + (int32_t)sp_rand_below(rng, T_TOPICS_MAX);
    for (int32_t t = 0; t < topic_count; t++)
        parts[t] = (int32_t)sp_rand_below(rng, T_PARTS_MAX + 1);
    tg_init(g, topic_count, parts);
    int32_t member_count = 1 + (int32_t)sp_rand_below(rng, (uint64_t)members_max);
    uint32_t shapes[3];
    for (int i = 0; i < 3; i++)
        shapes[i] = (uint32_t)sp_rand_below(rng, 1u << topic_count);
    shapes[0] |= 1u; /* someone reads t0 */
    for (int32_t m = 0; m < member_count; m++) {
        char id[32];
        snprintf(id, sizeof(id), "consumer-%04x-%d", (unsigned)sp_rand_below(rng, 0x10000), (int)m);
        tg_add_member(g, id);
        uint32_t set = identical ? shapes[0] : shapes[sp_rand_below(rng, 3)];
        int32_t start = (int32_t)sp_rand_below(rng, (uint64_t)topic_count);
        for (int32_t i = 0; i < topic_count; i++) {
            int32_t t = (start + i) % topic_count;
            if (set & (1u << t))
                tg_subscribe(g, m, g->names[t]);
        }
        if (sp_rand_below(rng, 4) == 0)
            tg_subscribe(g, m, unknown_topic);
        if (g->members[m].topics_count > 0 && sp_rand_below(rng, 4) == 0)
            tg_subscribe(g, m, g->subs[m][0].ptr);
    }
}

/* Member indices in member-id order. */
static void tg_sorted_members(const struct tgroup *g, int32_t *order)
{
    for (int32_t i = 0; i < g->member_count; i++)
        order[i] = i;
    for (int32_t i = 1; i < g->member_count; i++) {
        for (int32_t j = i; j > 0 && strcmp(g->ids[order[j - 1]], g->ids[order[j]]) > 0; j--) {
            int32_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    }
}

/* Java's RangeAssignor loop, written the obvious way. */
static void model_range(const struct tgroup *g, int32_t owner[T_TOPICS_MAX][T_PARTS_MAX])
{
    int32_t order[T_MEMBERS_MAX];
    tg_sorted_members(g, order);
    for (int32_t t = 0; t < g->topic_count; t++) {
        int32_t subs[T_MEMBERS_MAX], k = 0;
        for (int32_t i = 0; i < g->member_count; i++) {
            if (tg_subscribed(g, order[i], t))
                subs[k++] = order[i];
        }
        int32_t n = g->topics[t].partition_count;
        for (int32_t p = 0; p < n; p++)
            owner[t][p] = -1;
        if (k == 0)
            continue;
        int32_t per = n / k, extra = n % k;
        for (int32_t i = 0; i < k; i++) {
            int32_t start = per * i + (i < extra ? i : extra);
            int32_t len = per + (i + 1 > extra ? 0 : 1);
            for (int32_t p = start; p < start + len; p++)
                owner[t][p] = subs[i];
        }
    }
}

/* Java's RoundRobinAssignor: a circular iterator with peek and next. */
static void model_roundrobin(const struct tgroup *g, int32_t owner[T_TOPICS_MAX][T_PARTS_MAX])
{
    int32_t order[T_MEMBERS_MAX];
    tg_sorted_members(g, order);
    int32_t topics[T_TOPICS_MAX]; /* sorted by name */
    for (int32_t t = 0; t < g->topic_count; t++)
        topics[t] = t;
    for (int32_t i = 1; i < g->topic_count; i++) {
        for (int32_t j = i; j > 0 && strcmp(g->names[topics[j - 1]], g->names[topics[j]]) > 0;
             j--) {
            int32_t x = topics[j];
            topics[j] = topics[j - 1];
            topics[j - 1] = x;
        }
    }
    int32_t it = 0;
    for (int32_t i = 0; i < g->topic_count; i++) {
        int32_t t = topics[i];
        for (int32_t p = 0; p < g->topics[t].partition_count; p++)
            owner[t][p] = -1;
        if (tg_subscriber_count(g, t) == 0)
            continue;
        for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
            while (!tg_subscribed(g, order[it], t))
                it = (it + 1) % g->member_count;
            owner[t][p] = order[it];
            it = (it + 1) % g->member_count;
        }
    }
}

/* Every partition of a subscribed topic to exactly one subscriber; others to nobody. */
static void check_complete(const struct tgroup *g)
{
    for (int32_t t = 0; t < g->topic_count; t++) {
        bool wanted = tg_subscriber_count(g, t) > 0;
        for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
            int32_t m = g->owner[t][p];
            if (!wanted) {
                assert_int_equal(m, -1);
                continue;
            }
            assert_true(m >= 0);
            assert_true(tg_subscribed(g, m, t));
        }
    }
}

/* Members with the same known topics hold counts within one of each other. */
static void check_class_balance(const struct tgroup *g)
{
    for (int32_t x = 0; x < g->member_count; x++) {
        for (int32_t y = 0; y < g->member_count; y++) {
            bool same = true;
            for (int32_t t = 0; t < g->topic_count; t++)
                same = same && tg_subscribed(g, x, t) == tg_subscribed(g, y, t);
            if (same)
                assert_true(tg_count(g, x) <= tg_count(g, y) + 1);
        }
    }
}

/*
 * No partition could move to another subscriber of its topic holding two or
 * fewer than its owner: the general case's balance across subscription sets
 * (Java's reassignment criterion), reached whenever its passes converge.
 */
static void check_no_improving_move(const struct tgroup *g)
{
    for (int32_t t = 0; t < g->topic_count; t++) {
        for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
            int32_t x = g->owner[t][p];
            for (int32_t y = 0; x >= 0 && y < g->member_count; y++) {
                if (tg_subscribed(g, y, t))
                    assert_true(tg_count(g, x) < tg_count(g, y) + 2);
            }
        }
    }
}

static void test_random_range_roundrobin(void **state)
{
    (void)state;
    static struct tgroup g;
    static int32_t expect[T_TOPICS_MAX][T_PARTS_MAX];
    struct sp_rand rng;
    sp_rand_seed(&rng, 0xA551);
    for (int round = 0; round < 3000; round++) {
        bool identical = round % 2 == 0;
        tg_random(&g, &rng, identical, T_MEMBERS_MAX);

        assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
        model_range(&g, expect);
        for (int32_t t = 0; t < g.topic_count; t++)
            for (int32_t p = 0; p < g.topics[t].partition_count; p++)
                assert_int_equal(g.owner[t][p], expect[t][p]);
        check_complete(&g);
        /* Per topic, subscribers' counts differ by at most one. */
        for (int32_t t = 0; t < g.topic_count; t++) {
            int32_t lo = INT32_MAX, hi = 0;
            for (int32_t m = 0; m < g.member_count; m++) {
                if (!tg_subscribed(&g, m, t))
                    continue;
                int32_t n = 0;
                for (int32_t p = 0; p < g.topics[t].partition_count; p++)
                    n += g.owner[t][p] == m;
                lo = n < lo ? n : lo;
                hi = n > hi ? n : hi;
            }
            assert_true(lo == INT32_MAX || hi - lo <= 1);
        }

        assert_int_equal(tg_run(&g, &sp_kafka_assignor_roundrobin), 0);
        model_roundrobin(&g, expect);
        for (int32_t t = 0; t < g.topic_count; t++)
            for (int32_t p = 0; p < g.topics[t].partition_count; p++)
                assert_int_equal(g.owner[t][p], expect[t][p]);
        check_complete(&g);
        if (identical)
            check_class_balance(&g);
    }
}

/*
 * The cooperative rule on a result: a member gets a partition that another
 * member claims only when it claims it too at a strictly higher generation.
 */
static void check_cooperative(const struct tgroup *g)
{
    for (int32_t t = 0; t < g->topic_count; t++) {
        for (int32_t p = 0; p < g->topics[t].partition_count; p++) {
            int32_t o = g->owner[t][p];
            if (o < 0)
                continue;
            for (int32_t c = 0; c < g->member_count; c++) {
                if (c == o || !tg_claims(g, c, t, p))
                    continue;
                assert_true(tg_claims(g, o, t, p));
                assert_true(g->members[o].generation_id > g->members[c].generation_id);
            }
        }
    }
}

static void tg_save(const struct tgroup *g, int32_t owner[T_TOPICS_MAX][T_PARTS_MAX])
{
    memcpy(owner, g->owner, sizeof(g->owner));
}

static void check_same(const struct tgroup *g, int32_t owner[T_TOPICS_MAX][T_PARTS_MAX])
{
    for (int32_t t = 0; t < g->topic_count; t++)
        for (int32_t p = 0; p < g->topics[t].partition_count; p++)
            assert_int_equal(g->owner[t][p], owner[t][p]);
}

/* A fresh group, then the same group owning that result: the same again. */
static void test_random_sticky_fresh_and_stable(void **state)
{
    (void)state;
    static struct tgroup g;
    static int32_t first[T_TOPICS_MAX][T_PARTS_MAX];
    struct sp_rand rng;
    sp_rand_seed(&rng, 0x571C);
    for (int round = 0; round < 2000; round++) {
        bool identical = round % 2 == 0;
        tg_random(&g, &rng, identical, T_MEMBERS_MAX);
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_complete(&g);
        check_class_balance(&g);
        check_no_improving_move(&g);
        tg_save(&g, first);
        for (int32_t m = 0; m < g.member_count; m++)
            tg_own_result(&g, m, 1);
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_same(&g, first);
        check_cooperative(&g);
        /* The input order of members does not matter, only their ids. */
        for (int32_t i = 0; i + 1 < g.member_count; i += 2)
            tg_swap_members(&g, i, g.member_count - 1 - i / 2);
        tg_save(&g, first);
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_same(&g, first);
        for (int32_t m = 0; m < g.member_count; m++)
            g.members[m].owned_count = 0;
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_same(&g, first);
    }
}

/*
 * A stable group with identical subscriptions gains a member: the fewest
 * partitions any balanced assignment allows are revoked, none of them is
 * given to anyone in that round, and the next round completes the balance
 * without revoking anything more.
 */
static void test_random_sticky_join(void **state)
{
    (void)state;
    static struct tgroup g;
    static int32_t before[T_TOPICS_MAX][T_PARTS_MAX], mid[T_TOPICS_MAX][T_PARTS_MAX];
    struct sp_rand rng;
    sp_rand_seed(&rng, 0x10115);
    for (int round = 0; round < 2000; round++) {
        tg_random(&g, &rng, true, T_MEMBERS_MAX - 1);
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        for (int32_t m = 0; m < g.member_count; m++)
            tg_own_result(&g, m, 3);
        tg_save(&g, before);

        int32_t old_count = g.member_count, counts[T_MEMBERS_MAX], total = 0;
        for (int32_t m = 0; m < old_count; m++) {
            counts[m] = tg_count(&g, m);
            total += counts[m];
        }
        char id[32];
        snprintf(id, sizeof(id), "consumer-%04x-new", (unsigned)sp_rand_below(&rng, 0x10000));
        int32_t joiner = tg_add_member(&g, id);
        for (int32_t i = 0; i < g.members[0].topics_count; i++)
            tg_subscribe(&g, joiner, g.subs[0][i].ptr);
        /* The fewest revocations a balanced assignment allows. */
        int32_t quota = total / g.member_count, extra = total % g.member_count;
        int32_t over = 0, above = 0;
        for (int32_t m = 0; m < old_count; m++) {
            over += counts[m] > quota ? counts[m] - quota : 0;
            above += counts[m] > quota;
        }
        int32_t revoke_min = over - (extra < above ? extra : above);

        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_cooperative(&g);
        int32_t revoked = 0;
        for (int32_t t = 0; t < g.topic_count; t++) {
            for (int32_t p = 0; p < g.topics[t].partition_count; p++) {
                int32_t was = before[t][p], now = g.owner[t][p];
                if (was >= 0 && now != was) {
                    revoked++;
                    assert_int_equal(now, -1); /* not handed over in the same round */
                }
                if (now >= 0)
                    assert_int_equal(now, was); /* nobody gains before revocations finish */
            }
        }
        assert_int_equal(revoked, revoke_min);
        tg_save(&g, mid);

        for (int32_t m = 0; m < g.member_count; m++)
            tg_own_result(&g, m, 4);
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_complete(&g);
        check_class_balance(&g);
        for (int32_t t = 0; t < g.topic_count; t++)
            for (int32_t p = 0; p < g.topics[t].partition_count; p++)
                if (mid[t][p] >= 0)
                    assert_int_equal(g.owner[t][p], mid[t][p]);
    }
}

/*
 * A stable group loses a member: its partitions go to the others in the same
 * round (nobody claims them), every other member keeps all it had, and the
 * result is balanced (identical subscriptions); with different ones, moves
 * among the others may wait a round, after which it is complete and balanced.
 */
static void test_random_sticky_leave(void **state)
{
    (void)state;
    static struct tgroup g;
    static int32_t before[T_TOPICS_MAX][T_PARTS_MAX];
    struct sp_rand rng;
    sp_rand_seed(&rng, 0x1EAF);
    for (int round = 0; round < 2000; round++) {
        bool identical = round % 2 == 0;
        tg_random(&g, &rng, identical, T_MEMBERS_MAX);
        if (g.member_count < 2)
            continue;
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        for (int32_t m = 0; m < g.member_count; m++)
            tg_own_result(&g, m, 7);
        tg_remove_member(&g, (int32_t)sp_rand_below(&rng, (uint64_t)g.member_count));
        tg_save(&g, before); /* the leaver's partitions are -1 here */

        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_cooperative(&g);
        if (!identical) {
            /* Moves between the others may be held back for one round. */
            for (int32_t m = 0; m < g.member_count; m++)
                tg_own_result(&g, m, 8);
            assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
            check_complete(&g);
            check_class_balance(&g);
            continue;
        }
        check_complete(&g);
        check_class_balance(&g);
        for (int32_t t = 0; t < g.topic_count; t++)
            for (int32_t p = 0; p < g.topics[t].partition_count; p++)
                if (before[t][p] >= 0)
                    assert_int_equal(g.owner[t][p], before[t][p]);
    }
}

/*
 * Random ownership, generations and subscription changes: whatever members
 * claim, the result is valid and cooperative, balanced within subscription
 * sets when nothing is held back, and two more rounds (each member owning
 * its last assignment) reach a complete assignment.
 */
static void test_random_sticky_chaos(void **state)
{
    (void)state;
    static struct tgroup g;
    struct sp_rand rng;
    sp_rand_seed(&rng, 0xC4A05);
    for (int round = 0; round < 2000; round++) {
        tg_random(&g, &rng, round % 3 == 0, T_MEMBERS_MAX);
        for (int32_t m = 0; m < g.member_count; m++) {
            g.members[m].generation_id = (int32_t)sp_rand_below(&rng, 4) - 1;
            for (int32_t t = 0; t < g.topic_count; t++) {
                for (int32_t p = 0; p < g.topics[t].partition_count; p++) {
                    if (sp_rand_below(&rng, (uint64_t)g.member_count + 1) == 0)
                        tg_claim(&g, m, t, p);
                }
            }
            if (sp_rand_below(&rng, 8) == 0)
                tg_claim(&g, m, 0, T_PARTS_MAX + 5); /* beyond the topic: ignored */
        }
        assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
        check_cooperative(&g);
        for (int32_t next = 0; next < 2; next++) {
            for (int32_t m = 0; m < g.member_count; m++)
                tg_own_result(&g, m, 10 + next);
            assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
            check_cooperative(&g);
        }
        check_complete(&g);
        check_class_balance(&g);
    }
}

/* ---- Hand-made cooperative-sticky cases ---- */

static void test_sticky_join_exact(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {4};
    tg_init(&g, 1, parts);
    int32_t a = tg_add_member(&g, "A");
    tg_subscribe(&g, a, "t0");
    for (int32_t p = 0; p < 4; p++)
        tg_claim(&g, a, 0, p);
    g.members[a].generation_id = 1;
    int32_t b = tg_add_member(&g, "B");
    tg_subscribe(&g, b, "t0");
    /* A keeps half; the other half is revoked and not yet B's. */
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t0p0,t0p1");
    assert_string_equal(tg_format(&g, b), "");
    tg_own_result(&g, a, 2);
    tg_own_result(&g, b, 2);
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t0p0,t0p1");
    assert_string_equal(tg_format(&g, b), "t0p2,t0p3");
}

static void test_sticky_generations(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {2};

    /* The higher generation's claim wins; the stale claimant is not given it. */
    tg_init(&g, 1, parts);
    int32_t a = tg_add_member(&g, "A");
    int32_t b = tg_add_member(&g, "B");
    tg_subscribe(&g, a, "t0");
    tg_subscribe(&g, b, "t0");
    tg_claim(&g, a, 0, 0);
    tg_claim(&g, b, 0, 0);
    g.members[a].generation_id = 5;
    g.members[b].generation_id = 6;
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t0p1");
    assert_string_equal(tg_format(&g, b), "t0p0");

    /* Two claims at the same generation: void, nobody gets it this round. */
    g.members[b].generation_id = 5;
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "");
    assert_string_equal(tg_format(&g, b), "t0p1");
    tg_own_result(&g, a, 6);
    tg_own_result(&g, b, 6);
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t0p0");
    assert_string_equal(tg_format(&g, b), "t0p1");

    /* An older generation alone on its partition keeps it (Java would not). */
    tg_init(&g, 1, parts);
    a = tg_add_member(&g, "A");
    b = tg_add_member(&g, "B");
    tg_subscribe(&g, a, "t0");
    tg_subscribe(&g, b, "t0");
    tg_claim(&g, a, 0, 0);
    tg_claim(&g, b, 0, 1);
    g.members[a].generation_id = 3;
    g.members[b].generation_id = 7;
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t0p0");
    assert_string_equal(tg_format(&g, b), "t0p1");

    /* A claim on a topic the member left: revoked, then given elsewhere next round. */
    const int32_t two[] = {1, 1};
    tg_init(&g, 2, two);
    a = tg_add_member(&g, "A");
    b = tg_add_member(&g, "B");
    tg_subscribe(&g, a, "t1");
    tg_subscribe(&g, b, "t0");
    tg_claim(&g, a, 0, 0);
    g.members[a].generation_id = 2;
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_cooperative_sticky), 0);
    assert_string_equal(tg_format(&g, a), "t1p0");
    assert_string_equal(tg_format(&g, b), "");
}

/* ---- Errors and memory ---- */

static void test_bad_groups(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {3, 3};
    const struct sp_kafka_assignor *all[] = {&sp_kafka_assignor_range,
                                             &sp_kafka_assignor_roundrobin,
                                             &sp_kafka_assignor_cooperative_sticky};
    for (size_t i = 0; i < SP_ARRAY_LEN(all); i++) {
        struct sp_karena arena;
        sp_karena_init(&arena, arena_mem, sizeof(arena_mem));

        tg_init(&g, 2, parts);
        tg_add_member(&g, "same");
        tg_add_member(&g, "other");
        tg_add_member(&g, "same");
        struct sp_kafka_assignor_group group = {g.members, g.member_count, g.topics, g.topic_count};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);

        tg_init(&g, 2, parts);
        tg_add_member(&g, "one");
        g.topics[1].name = g.topics[0].name;
        group =
            (struct sp_kafka_assignor_group){g.members, g.member_count, g.topics, g.topic_count};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);

        tg_init(&g, 2, parts);
        tg_add_member(&g, "one");
        g.topics[1].partition_count = -1;
        group =
            (struct sp_kafka_assignor_group){g.members, g.member_count, g.topics, g.topic_count};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);
        assert_int_equal(sp_kafka_assignor_arena_bytes(&group), 0);

        tg_init(&g, 2, parts);
        tg_add_member(&g, "one");
        g.members[0].member_id = SP_KSTR_NULL;
        group =
            (struct sp_kafka_assignor_group){g.members, g.member_count, g.topics, g.topic_count};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);

        tg_init(&g, 2, parts);
        tg_add_member(&g, "one");
        g.topics[0].partition_count = SP_KAFKA_ASSIGNOR_PARTITIONS_MAX;
        group =
            (struct sp_kafka_assignor_group){g.members, g.member_count, g.topics, g.topic_count};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);

        group = (struct sp_kafka_assignor_group){g.members, SP_KAFKA_ASSIGNOR_MEMBERS_MAX + 1,
                                                 g.topics, 0};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);
        group = (struct sp_kafka_assignor_group){g.members, -1, g.topics, 0};
        assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -EINVAL);
    }
}

/*
 * Every arena smaller than what an assignment used fails with -ENOBUFS (the
 * allocations happen in the same order whatever the capacity), the exact
 * size works, and the estimate is never below it.
 */
static void test_arena_sizes(void **state)
{
    (void)state;
    static struct tgroup g;
    struct sp_rand rng;
    sp_rand_seed(&rng, 0xB0B);
    const struct sp_kafka_assignor *all[] = {&sp_kafka_assignor_range,
                                             &sp_kafka_assignor_roundrobin,
                                             &sp_kafka_assignor_cooperative_sticky};
    for (int round = 0; round < 12; round++) {
        tg_random(&g, &rng, round % 2 == 0, 6);
        for (int32_t m = 0; m < g.member_count; m += 2)
            tg_claim(&g, m, 0, 0);
        struct sp_kafka_assignor_group group = {g.members, g.member_count, g.topics, g.topic_count};
        for (size_t i = 0; i < SP_ARRAY_LEN(all); i++) {
            assert_int_equal(tg_run(&g, all[i]), 0);
            size_t used = g.arena_used;
            assert_true(used <= sp_kafka_assignor_arena_bytes(&group));
            for (size_t cap = 0; cap < used; cap += 1 + cap / 64) {
                struct sp_karena arena;
                sp_karena_init(&arena, arena_mem, cap);
                assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), -ENOBUFS);
            }
            struct sp_karena arena;
            sp_karena_init(&arena, arena_mem, used);
            assert_int_equal(sp_kafka_assignor_assign(all[i], &group, g.out, &arena), 0);
        }
    }
}

/* ---- Bytes ---- */

static uint8_t bytes_buf[4096];
static uint8_t bytes_buf2[4096];

static void check_kstr(struct sp_kstr got, struct sp_kstr want)
{
    assert_int_equal(got.len, want.len);
    if (want.len > 0)
        assert_memory_equal(got.ptr, want.ptr, (size_t)want.len);
}

static void test_subscription_bytes(void **state)
{
    (void)state;
    struct sp_kstr topics[] = {SP_KSTR("t0"), SP_KSTR("topic-1")};
    int32_t p0[] = {0, 2}, p1[] = {1};
    struct sp_kafka_consumer_protocol_subscription_topic_partition owned[] = {
        {SP_KSTR("t0"), p0, 2},
        {SP_KSTR("topic-1"), p1, 1},
    };
    uint8_t user[SP_KAFKA_COOPERATIVE_USER_DATA_BYTES];
    for (int16_t v = 0; v <= 3; v++) {
        struct sp_kafka_consumer_protocol_subscription s, back;
        sp_kafka_consumer_protocol_subscription_init(&s);
        s.topics = topics;
        s.topics_count = 2;
        s.user_data = sp_kafka_cooperative_user_data(user, 7);
        if (v >= 1) {
            s.owned_partitions = owned;
            s.owned_partitions_count = 2;
        }
        if (v >= 2)
            s.generation_id = 9;
        if (v >= 3)
            s.rack_id = SP_KSTR("rack-a");
        size_t n = sp_kafka_subscription_bytes_size(&s, v);
        assert_true(n <= sizeof(bytes_buf));
        assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, n - 1, v, &s), -ENOSPC);
        assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, n, v, &s), 0);
        assert_int_equal(bytes_buf[0], 0);
        assert_int_equal(bytes_buf[1], v);

        struct sp_karena arena;
        int16_t version = -1;
        sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
        assert_int_equal(sp_kafka_subscription_bytes_decode(bytes_buf, n, &arena, &version, &back),
                         0);
        assert_int_equal(version, v);
        assert_int_equal(back.topics_count, 2);
        check_kstr(back.topics[0], topics[0]);
        check_kstr(back.topics[1], topics[1]);
        assert_int_equal(back.user_data.len, 4);
        assert_memory_equal(back.user_data.ptr, user, 4);
        /* Zero-copy: the user data points into the buffer. */
        assert_true(back.user_data.ptr > bytes_buf && back.user_data.ptr + 4 <= bytes_buf + n);
        assert_int_equal(back.owned_partitions_count, v >= 1 ? 2 : 0);
        if (v >= 1) {
            check_kstr(back.owned_partitions[0].topic, owned[0].topic);
            assert_int_equal(back.owned_partitions[0].partitions_count, 2);
            assert_int_equal(back.owned_partitions[0].partitions[1], 2);
            check_kstr(back.owned_partitions[1].topic, owned[1].topic);
            assert_int_equal(back.owned_partitions[1].partitions[0], 1);
        }
        assert_int_equal(back.generation_id, v >= 2 ? 9 : -1);
        check_kstr(back.rack_id, v >= 3 ? SP_KSTR("rack-a") : SP_KSTR_NULL);

        /* The member as the leader sees it: the generation, from the field or the user data. */
        struct sp_kafka_assignor_member member;
        sp_kafka_assignor_member_from_subscription(&member, SP_KSTR("m"), &back);
        assert_int_equal(member.generation_id, v >= 2 ? 9 : 7);
        assert_int_equal(member.topics_count, 2);
        assert_int_equal(member.owned_count, v >= 1 ? 2 : 0);

        /* Every truncation is rejected. */
        for (size_t len = 0; len < n; len++) {
            sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
            assert_int_equal(
                sp_kafka_subscription_bytes_decode(bytes_buf, len, &arena, &version, &back),
                -EBADMSG);
        }
        /* An arena too small for the arrays. */
        sp_karena_init(&arena, arena_mem, 8);
        assert_int_equal(sp_kafka_subscription_bytes_decode(bytes_buf, n, &arena, &version, &back),
                         -ENOBUFS);
    }
    struct sp_kafka_consumer_protocol_subscription s;
    sp_kafka_consumer_protocol_subscription_init(&s);
    assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, sizeof(bytes_buf), 4, &s),
                     -ENOTSUP);
    assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, sizeof(bytes_buf), -1, &s),
                     -ENOTSUP);
    assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, 1, 0, &s), -ENOSPC);
}

/* Bytes written by hand as Java writes them; newer and negative versions. */
static void test_subscription_bytes_known(void **state)
{
    (void)state;
    /* A version-0 subscription as Java's range consumer sends it: ["t0"], null user data. */
    static const uint8_t v0[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
                                 0x02, 't',  '0',  0xff, 0xff, 0xff, 0xff};
    struct sp_kafka_consumer_protocol_subscription s;
    struct sp_karena arena;
    int16_t version;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    assert_int_equal(sp_kafka_subscription_bytes_decode(v0, sizeof(v0), &arena, &version, &s), 0);
    assert_int_equal(version, 0);
    assert_int_equal(s.topics_count, 1);
    assert_ptr_equal(s.topics[0].ptr, (const char *)v0 + 8); /* zero-copy */
    assert_int_equal(s.user_data.len, -1);
    struct sp_kafka_assignor_member member;
    sp_kafka_assignor_member_from_subscription(&member, SP_KSTR("m"), &s);
    assert_int_equal(member.generation_id, SP_KAFKA_ASSIGNOR_GENERATION_NONE);
    assert_int_equal(sp_kafka_subscription_bytes_size(&s, 0), sizeof(v0));
    assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, sizeof(v0), 0, &s), 0);
    assert_memory_equal(bytes_buf, v0, sizeof(v0));

    /* A negative version is refused; a newer one reads as 3, trailing bytes ignored. */
    uint8_t neg[sizeof(v0)];
    memcpy(neg, v0, sizeof(v0));
    neg[0] = 0xff;
    neg[1] = 0xff;
    assert_int_equal(sp_kafka_subscription_bytes_decode(neg, sizeof(neg), &arena, &version, &s),
                     -EBADMSG);

    struct sp_kstr topics[] = {SP_KSTR("t0")};
    sp_kafka_consumer_protocol_subscription_init(&s);
    s.topics = topics;
    s.topics_count = 1;
    s.generation_id = 4;
    s.rack_id = SP_KSTR("r");
    size_t n = sp_kafka_subscription_bytes_size(&s, 3);
    assert_int_equal(sp_kafka_subscription_bytes_encode(bytes_buf, n, 3, &s), 0);
    bytes_buf[1] = 5;
    memcpy(bytes_buf + n, "\x00\x00\x00\x07", 4); /* a field of version 5 */
    assert_int_equal(sp_kafka_subscription_bytes_decode(bytes_buf, n + 4, &arena, &version, &s), 0);
    assert_int_equal(version, 5);
    assert_int_equal(s.generation_id, 4);
    check_kstr(s.rack_id, SP_KSTR("r"));
}

static void test_assignment_bytes(void **state)
{
    (void)state;
    static struct tgroup g;
    const int32_t parts[] = {5, 3, 0};
    tg_init(&g, 3, parts);
    int32_t a = tg_add_member(&g, "A");
    int32_t b = tg_add_member(&g, "B");
    for (int32_t m = 0; m < 2; m++) {
        tg_subscribe(&g, m, "t0");
        tg_subscribe(&g, m, "t1");
        tg_subscribe(&g, m, "t2");
    }
    assert_int_equal(tg_run(&g, &sp_kafka_assignor_range), 0);
    assert_string_equal(tg_format(&g, a), "t0p0,t0p1,t0p2,t1p0,t1p1");
    assert_string_equal(tg_format(&g, b), "t0p3,t0p4,t1p2");
    static const uint8_t ud[] = {1, 2, 3};
    for (int16_t v = 0; v <= 3; v++) {
        struct sp_kafka_consumer_protocol_assignment s = g.out[a], back;
        s.user_data = v == 2 ? (struct sp_kbytes){ud, 3} : s.user_data;
        size_t n = sp_kafka_assignment_bytes_size(&s, v);
        assert_int_equal(sp_kafka_assignment_bytes_encode(bytes_buf2, n - 1, v, &s), -ENOSPC);
        assert_int_equal(sp_kafka_assignment_bytes_encode(bytes_buf2, n, v, &s), 0);
        assert_int_equal(bytes_buf2[0], 0);
        assert_int_equal(bytes_buf2[1], v);
        struct sp_karena arena;
        int16_t version = -1;
        sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
        assert_int_equal(sp_kafka_assignment_bytes_decode(bytes_buf2, n, &arena, &version, &back),
                         0);
        assert_int_equal(version, v);
        assert_int_equal(back.assigned_partitions_count, 2);
        for (int32_t i = 0; i < 2; i++) {
            check_kstr(back.assigned_partitions[i].topic, s.assigned_partitions[i].topic);
            assert_int_equal(back.assigned_partitions[i].partitions_count,
                             s.assigned_partitions[i].partitions_count);
            assert_memory_equal(
                back.assigned_partitions[i].partitions, s.assigned_partitions[i].partitions,
                (size_t)s.assigned_partitions[i].partitions_count * sizeof(int32_t));
        }
        assert_int_equal(back.user_data.len, v == 2 ? 3 : -1);
        for (size_t len = 0; len < n; len++) {
            sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
            assert_int_equal(
                sp_kafka_assignment_bytes_decode(bytes_buf2, len, &arena, &version, &back),
                -EBADMSG);
        }
        /* Version 9 reads as 3, with what follows ignored. */
        bytes_buf2[1] = 9;
        bytes_buf2[n] = 0x5a;
        sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
        assert_int_equal(
            sp_kafka_assignment_bytes_decode(bytes_buf2, n + 1, &arena, &version, &back), 0);
        assert_int_equal(version, 9);
        assert_int_equal(back.assigned_partitions_count, 2);
    }
    /* An empty assignment (B's in a smaller group would be): count 0, null user data. */
    struct sp_kafka_consumer_protocol_assignment empty, back;
    sp_kafka_consumer_protocol_assignment_init(&empty);
    static const uint8_t known[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(sp_kafka_assignment_bytes_size(&empty, 1), sizeof(known));
    assert_int_equal(sp_kafka_assignment_bytes_encode(bytes_buf2, sizeof(known), 1, &empty), 0);
    assert_memory_equal(bytes_buf2, known, sizeof(known));
    struct sp_karena arena;
    int16_t version;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    assert_int_equal(
        sp_kafka_assignment_bytes_decode(known, sizeof(known), &arena, &version, &back), 0);
    assert_int_equal(back.assigned_partitions_count, 0);
    assert_int_equal(sp_kafka_assignment_bytes_decode(NULL, 0, &arena, &version, &back), -EBADMSG);
    assert_int_equal(sp_kafka_assignment_bytes_encode(bytes_buf2, sizeof(bytes_buf2), 4, &empty),
                     -ENOTSUP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_javadoc_two_topics),
        cmocka_unit_test(test_roundrobin_javadoc_mixed),
        cmocka_unit_test(test_java_mixed_topics),
        cmocka_unit_test(test_range_small_cases),
        cmocka_unit_test(test_random_range_roundrobin),
        cmocka_unit_test(test_random_sticky_fresh_and_stable),
        cmocka_unit_test(test_random_sticky_join),
        cmocka_unit_test(test_random_sticky_leave),
        cmocka_unit_test(test_random_sticky_chaos),
        cmocka_unit_test(test_sticky_join_exact),
        cmocka_unit_test(test_sticky_generations),
        cmocka_unit_test(test_bad_groups),
        cmocka_unit_test(test_arena_sizes),
        cmocka_unit_test(test_subscription_bytes),
        cmocka_unit_test(test_subscription_bytes_known),
        cmocka_unit_test(test_assignment_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
