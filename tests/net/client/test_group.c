/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Consumer groups against librdkafka's mock cluster (3 brokers): three
 * members, each a runtime of one shard on its own thread with its own
 * client, consumer and group, share a topic of 6 partitions pre-filled by
 * kcat. Checked, once per assignor (range, roundrobin, cooperative-sticky):
 * the partitions are spread 2/2/2 and every record is consumed exactly
 * once; then member 0 commits and leaves, its partitions move to the other
 * two (their assigned callbacks show them), and as more records are
 * produced every one is still consumed exactly once: the new owners resume
 * from the committed offsets, nothing twice, nothing skipped. Against
 * spate broker (SPATE_PEER=spate) the same, with only the commits the
 * members make themselves (see run_group).
 *
 * Waits are bounded (WAIT_MS each) and fail with what was missing; the
 * runtime threads are always stopped and joined before the test returns.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "client_test.h"

#include "mock_peer.h"
#include "sp_kafka_group.h"
#include "sp_log.h"
#include "sp_runtime.h"

#define TOPIC "grp"
#define PARTITIONS 6
#define MEMBERS 3
#define PER_PARTITION 100                          /* records per partition per phase */
#define PHASE_RECORDS (PARTITIONS * PER_PARTITION) /* 600 */
#define RECORDS (2 * PHASE_RECORDS)
#define WAIT_MS 20000

struct member {
    unsigned index;
    struct scenario *s;
    struct sp_kafka_config config;
    pthread_t thread;
    /* Shard side. */
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_consumer consumer;
    struct sp_kafka_group group;
    struct sp_timer tick;
    bool leaving, closing;
    /* Read by the test thread. */
    _Atomic int owned;            /* partitions held now */
    _Atomic unsigned owned_mask;  /* bit p: partition p held */
    _Atomic unsigned gained_mask; /* bit p: assigned after the leave began */
    _Atomic int stable;
    _Atomic int state;      /* the group's, its generation and counts: */
    _Atomic int generation; /* for the failure report */
    _Atomic unsigned long joins;
    _Atomic unsigned long rebalances;
    _Atomic int left;
    _Atomic unsigned committed_round; /* the last explicit commit round that succeeded */
    _Atomic int commit_err;           /* of the last explicit commit */
    _Atomic unsigned revoked;         /* partitions revoked, in all */
    unsigned commit_round;            /* shard side: the last round started */
    bool started;
    _Atomic unsigned consumed;
};

struct scenario {
    struct mock_peer mock;
    const char *strategy;
    struct member members[MEMBERS];
    _Atomic unsigned char counts[RECORDS]; /* times each record was consumed */
    _Atomic unsigned unexpected;
    _Atomic unsigned commit_round; /* everyone: commit once per round */
    _Atomic unsigned commit_from;  /* rounds apply to members >= this one */
    _Atomic int leave_now;         /* member 0: commit and leave */
    _Atomic int stop;              /* everyone: shut down */
    _Atomic int errors;            /* a partition stopped */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- Shard side ---- */

static void on_record(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                      const struct sp_record *rec, void *ctx)
{
    struct member *m = ctx;
    (void)c;
    (void)topic;
    (void)partition;
    char buf[32];
    unsigned id;
    if (rec->value == NULL || rec->value_len <= 0 || (size_t)rec->value_len >= sizeof(buf)) {
        atomic_fetch_add(&m->s->unexpected, 1);
        return;
    }
    memcpy(buf, rec->value, (size_t)rec->value_len);
    buf[rec->value_len] = '\0';
    if (sscanf(buf, "r%u", &id) != 1 || id >= RECORDS) {
        atomic_fetch_add(&m->s->unexpected, 1);
        return;
    }
    atomic_fetch_add(&m->s->counts[id], 1);
    atomic_fetch_add(&m->consumed, 1);
}

static void on_error(struct sp_kafka_consumer *c, const char *topic, int32_t partition, int err,
                     int16_t code, void *ctx)
{
    struct member *m = ctx;
    (void)c;
    fprintf(stderr, "member %u: %s-%d stopped: %d/%d\n", m->index, topic, partition, err, code);
    atomic_fetch_add(&m->s->errors, 1);
}

static void parts_change(struct member *m, const struct sp_kafka_group_partition *parts,
                         unsigned count, bool add)
{
    for (unsigned i = 0; i < count; i++) {
        SP_ASSERT(parts[i].partition >= 0 && parts[i].partition < PARTITIONS);
        unsigned bit = 1u << parts[i].partition;
        if (add) {
            atomic_fetch_or(&m->owned_mask, bit);
            atomic_fetch_add(&m->owned, 1);
            if (atomic_load(&m->s->leave_now))
                atomic_fetch_or(&m->gained_mask, bit);
        } else {
            atomic_fetch_and(&m->owned_mask, ~bit);
            atomic_fetch_sub(&m->owned, 1);
            atomic_fetch_add(&m->revoked, 1);
        }
    }
}

static void on_assigned(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                        unsigned count, void *ctx)
{
    (void)g;
    parts_change(ctx, parts, count, true);
}

static void on_revoked(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                       unsigned count, void *ctx)
{
    (void)g;
    parts_change(ctx, parts, count, false);
}

static void on_lost(struct sp_kafka_group *g, const struct sp_kafka_group_partition *parts,
                    unsigned count, void *ctx)
{
    struct member *m = ctx;
    (void)g;
    fprintf(stderr, "member %u: %u partitions lost\n", m->index, count);
    parts_change(m, parts, count, false);
}

static void on_commit(struct sp_kafka_group *g, int err, int16_t code, void *ctx)
{
    struct member *m = ctx;
    (void)g;
    (void)code;
    atomic_store(&m->commit_err, err);
    if (err == 0)
        atomic_store(&m->committed_round, m->commit_round);
}

static void on_left(struct sp_kafka_group *g, void *ctx)
{
    struct member *m = ctx;
    (void)g;
    atomic_store(&m->left, 1);
}

static void closing_poll(struct sp_timer *timer, void *ctx)
{
    struct member *m = ctx;
    if (!sp_kafka_group_idle(&m->group)) {
        sp_shard_timer_arm(m->shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    sp_kafka_group_deinit(&m->group);
    sp_kafka_consumer_deinit(&m->consumer);
    client_test_finish(&m->client, timer);
}

static void tick(struct sp_timer *timer, void *ctx)
{
    struct member *m = ctx;
    struct scenario *s = m->s;
    atomic_store(&m->stable, sp_kafka_group_stable(&m->group));
    atomic_store(&m->state, (int)m->group.state);
    atomic_store(&m->generation, m->group.generation_id);
    atomic_store(&m->joins, (unsigned long)m->group.joins);
    atomic_store(&m->rebalances, (unsigned long)m->group.rebalances);
    unsigned round = atomic_load(&s->commit_round);
    if (round != m->commit_round && sp_kafka_group_stable(&m->group)) {
        m->commit_round = round;
        int ret = sp_kafka_group_commit(&m->group, on_commit, m);
        if (ret < 0)
            atomic_store(&m->commit_err, ret);
    }
    if (m->index == 0 && atomic_load(&s->leave_now) && !m->leaving) {
        if (sp_kafka_group_stable(&m->group)) {
            m->leaving = true;
            sp_kafka_group_leave(&m->group, true, on_left, m);
        }
    }
    if (atomic_load(&s->stop) && !m->closing) {
        m->closing = true;
        sp_kafka_group_close(&m->group);
        sp_timer_init(timer, closing_poll, m);
        sp_shard_timer_arm(m->shard, timer, sp_now_ns());
        return;
    }
    sp_shard_timer_arm(m->shard, timer, sp_now_ns() + 5 * SP_NSEC_PER_MSEC);
}

static void start(struct sp_shard *shard, void *ctx)
{
    struct member *m = ctx;
    m->shard = shard;
    SP_ASSERT(sp_kafka_client_init(&m->client, shard, &m->config, NULL, NULL) == 0);
    SP_ASSERT(sp_kafka_consumer_init(&m->consumer, &m->client, on_record, on_error, m) == 0);
    const char *topics[] = {TOPIC};
    struct sp_kafka_group_callbacks cb = {on_assigned, on_revoked, on_lost, m};
    SP_ASSERT(sp_kafka_group_init(&m->group, &m->consumer, topics, 1, &cb) == 0);
    sp_timer_init(&m->tick, tick, m);
    sp_shard_timer_arm(shard, &m->tick, sp_now_ns());
}

static void *run_member(void *arg)
{
    struct member *m = arg;
    struct sp_runtime_config config;
    sp_runtime_config_default(&config);
    config.shard_count = 1;
    config.pin = false;
    config.handle_signals = false;
    config.memory_bytes = 48u << 20;
    config.on_start = start;
    config.ctx = m;
    struct sp_runtime rt;
    SP_ASSERT(sp_runtime_init(&rt, &config) == 0);
    SP_ASSERT(sp_runtime_run(&rt) == 0);
    sp_runtime_deinit(&rt);
    return NULL;
}

/* ---- Test thread side ---- */

/* Produces records [first, first + PHASE_RECORDS): PER_PARTITION per partition. */
static int produce(struct scenario *s, unsigned first)
{
    for (unsigned p = 0; p < PARTITIONS; p++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "kcat -P -b %s -t %s -p %u", s->mock.bootstrap, TOPIC, p);
        FILE *f = popen(cmd, "w");
        if (f == NULL)
            return -errno;
        for (unsigned i = 0; i < PER_PARTITION; i++)
            fprintf(f, "r%u\n", first + p * PER_PARTITION + i);
        if (pclose(f) != 0)
            return -EIO;
    }
    return 0;
}

static unsigned consumed_distinct(struct scenario *s, unsigned limit, unsigned *doubled)
{
    unsigned n = 0;
    *doubled = 0;
    for (unsigned i = 0; i < limit; i++) {
        unsigned char c = atomic_load(&s->counts[i]);
        n += c > 0;
        *doubled += c > 1;
    }
    return n;
}

static bool spread_evenly(struct scenario *s, unsigned first, unsigned count, int each)
{
    unsigned all = 0;
    for (unsigned i = first; i < first + count; i++) {
        struct member *m = &s->members[i];
        if (!atomic_load(&m->stable) || atomic_load(&m->owned) != each)
            return false;
        unsigned mask = atomic_load(&m->owned_mask);
        if (all & mask)
            return false;
        all |= mask;
    }
    return all == (1u << PARTITIONS) - 1;
}

static bool phase1_spread(struct scenario *s)
{
    return spread_evenly(s, 0, MEMBERS, 2);
}

static bool phase2_spread(struct scenario *s)
{
    return spread_evenly(s, 1, MEMBERS - 1, 3);
}

static bool phase1_consumed(struct scenario *s)
{
    unsigned doubled;
    return consumed_distinct(s, PHASE_RECORDS, &doubled) == PHASE_RECORDS;
}

static bool all_consumed(struct scenario *s)
{
    unsigned doubled;
    return consumed_distinct(s, RECORDS, &doubled) == RECORDS;
}

static bool all_committed(struct scenario *s)
{
    for (unsigned i = 0; i < MEMBERS; i++)
        if (s->members[i].started &&
            atomic_load(&s->members[i].committed_round) != atomic_load(&s->commit_round))
            return false;
    return true;
}

static bool first_two_spread(struct scenario *s)
{
    return spread_evenly(s, 0, 2, 3);
}

static bool member0_left(struct scenario *s)
{
    return atomic_load(&s->members[0].left) != 0;
}

/* Waits until `pred` holds; false after WAIT_MS. */
static bool wait_for(bool (*pred)(struct scenario *), struct scenario *s)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!pred(s)) {
        if (now_ms() >= deadline)
            return false;
        usleep(5000);
    }
    return true;
}

static void describe(struct scenario *s, const char *what)
{
    unsigned doubled;
    unsigned n = consumed_distinct(s, RECORDS, &doubled);
    fprintf(stderr, "%s (%s): %u records consumed, %u twice, %u unexpected\n", what, s->strategy, n,
            doubled, atomic_load(&s->unexpected));
    for (unsigned i = 0; i < MEMBERS; i++) {
        struct member *m = &s->members[i];
        fprintf(stderr,
                "  member %u: stable %d, owned %d (mask %#x), gained %#x, consumed %u; "
                "state %d, generation %d, %lu joins, %lu syncs\n",
                i, atomic_load(&m->stable), atomic_load(&m->owned), atomic_load(&m->owned_mask),
                atomic_load(&m->gained_mask), atomic_load(&m->consumed), atomic_load(&m->state),
                atomic_load(&m->generation), atomic_load(&m->joins), atomic_load(&m->rebalances));
    }
}

static void run_group(const char *strategy)
{
    const char *only = getenv("GROUP_TEST_ONLY");
    if (only != NULL && strcmp(only, strategy) != 0)
        skip();
    static struct scenario s;
    memset(&s, 0, sizeof(s));
    s.strategy = strategy;
    if (system("command -v kcat >/dev/null") != 0)
        skip();
    const char *args[] = {"--brokers", "3", "--topic", TOPIC ":6", NULL};
    assert_int_equal(mock_peer_start(&s.mock, args), 0);
    assert_int_equal(produce(&s, 0), 0);

    char group_id[64];
    snprintf(group_id, sizeof(group_id), "g-%s", strategy);
    const char *settings[][2] = {
        {"bootstrap.servers", s.mock.bootstrap},
        {"group.id", group_id},
        {"partition.assignment.strategy", strategy},
        {"auto.offset.reset", "earliest"},
        {"enable.auto.commit", "true"},
        {"auto.commit.interval.ms", "200"},
        {"session.timeout.ms", "3000"},
        {"heartbeat.interval.ms", "200"},
        {"fetch.max.wait.ms", "50"},
        {"fetch.max.bytes", "1048576"},
        {"max.partition.fetch.bytes", "65536"},
        {"metadata.max.age.ms", "2000"},
    };
    for (unsigned i = 0; i < MEMBERS; i++) {
        struct member *m = &s.members[i];
        m->index = i;
        m->s = &s;
        sp_kafka_config_init(&m->config);
        char err[256];
        for (unsigned k = 0; k < SP_ARRAY_LEN(settings); k++)
            if (sp_kafka_config_set(&m->config, settings[k][0], settings[k][1], err, sizeof(err)) !=
                0)
                fail_msg("%s", err);
        assert_int_equal(sp_kafka_config_validate(&m->config, err, sizeof(err)), 0);
    }
    /*
     * Failures are recorded and checked after the join: the runtimes must
     * never outlive the memory they use.
     *
     * Explicit commits before each rebalance: librdkafka's mock refuses
     * OffsetCommit while the group is joining (REBALANCE_IN_PROGRESS), so
     * the EAGER commit-before-revoke of the members already there fails
     * with it, where a real broker (PreparingRebalance) takes it. Against
     * spate broker (SPATE_PEER=spate) there are none: the commits the
     * members make themselves (before a revoke, on leaving, auto commit)
     * must keep every record consumed exactly once.
     */
    const bool explicit_commits = !mock_peer_is_spate();
    const char *failure = NULL;
    unsigned gained = 0, moved = 0, doubled = 0, revoked_before[MEMBERS] = {0};
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&s.members[i].thread, NULL, run_member, &s.members[i]), 0);
        s.members[i].started = true;
    }
    if (!wait_for(first_two_spread, &s))
        failure = "two members: the 6 partitions were not spread 3/3";
    else if (!wait_for(phase1_consumed, &s))
        failure = "phase 1: records missing";
    if (failure == NULL && explicit_commits) {
        atomic_store(&s.commit_round, 1);
        if (!wait_for(all_committed, &s))
            failure = "round 1: the explicit commits did not all succeed";
    }
    /* A third member joins: cooperative-sticky moves one partition from each. */
    if (failure == NULL) {
        if (pthread_create(&s.members[2].thread, NULL, run_member, &s.members[2]) != 0) {
            failure = "pthread_create";
        } else {
            s.members[2].started = true;
            if (!wait_for(phase1_spread, &s))
                failure = "three members: the 6 partitions were not spread 2/2/2";
        }
    }
    if (failure == NULL && strcmp(strategy, "cooperative-sticky") == 0 &&
        (atomic_load(&s.members[0].revoked) != 1 || atomic_load(&s.members[1].revoked) != 1))
        failure = "cooperative: members 0 and 1 should each have given up exactly one partition";
    if (failure == NULL && explicit_commits) {
        atomic_store(&s.commit_round, 2);
        if (!wait_for(all_committed, &s))
            failure = "round 2: the explicit commits did not all succeed";
    }
    /* Member 0 commits and leaves; its partitions move to the other two. */
    if (failure == NULL) {
        for (unsigned i = 0; i < MEMBERS; i++)
            revoked_before[i] = atomic_load(&s.members[i].revoked);
        moved = atomic_load(&s.members[0].owned_mask);
        atomic_store(&s.leave_now, 1);
        if (!wait_for(member0_left, &s))
            failure = "member 0 did not leave";
        else if (!wait_for(phase2_spread, &s))
            failure = "member 0's partitions did not move to the others 3/3";
    }
    if (failure == NULL && strcmp(strategy, "cooperative-sticky") == 0 &&
        (atomic_load(&s.members[1].revoked) != revoked_before[1] ||
         atomic_load(&s.members[2].revoked) != revoked_before[2]))
        failure = "cooperative: the members that stayed should have kept their partitions";
    if (failure == NULL) {
        gained = atomic_load(&s.members[1].gained_mask) | atomic_load(&s.members[2].gained_mask);
        if (produce(&s, PHASE_RECORDS) != 0)
            failure = "producing phase 2 failed";
        else if (!wait_for(all_consumed, &s))
            failure = "phase 2: records missing";
    }
    /* A short grace for late duplicates to show up (not needed for correctness). */
    if (failure == NULL)
        usleep(300 * 1000);
    if (failure != NULL)
        describe(&s, failure);
    atomic_store(&s.stop, 1);
    for (unsigned i = 0; i < MEMBERS; i++)
        if (s.members[i].started)
            pthread_join(s.members[i].thread, NULL);
    mock_peer_stop(&s.mock);

    if (failure != NULL)
        fail_msg("%s: %s", strategy, failure);
    unsigned n = consumed_distinct(&s, RECORDS, &doubled);
    if (n != RECORDS || doubled != 0 || atomic_load(&s.unexpected) != 0)
        fail_msg("%s: %u of %u consumed, %u twice, %u unexpected", strategy, n, RECORDS, doubled,
                 atomic_load(&s.unexpected));
    assert_int_equal(atomic_load(&s.errors), 0);
    /* The assigned callbacks of the two that stayed showed member 0's partitions. */
    if (__builtin_popcount(moved) != 2 || (gained & moved) != moved)
        fail_msg("%s: member 0 held %#x; the others were assigned %#x after it left", strategy,
                 moved, gained);
}

static void test_range(void **state)
{
    (void)state;
    run_group("range");
}

static void test_roundrobin(void **state)
{
    (void)state;
    run_group("roundrobin");
}

static void test_cooperative_sticky(void **state)
{
    (void)state;
    run_group("cooperative-sticky");
}

int main(void)
{
    if (getenv("SPATE_TEST_DEBUG") != NULL)
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_roundrobin),
        cmocka_unit_test(test_cooperative_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
