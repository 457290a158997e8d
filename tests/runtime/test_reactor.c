/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shards and the reactor loop, on a real runtime: every ordered pair of
 * shards exchanging messages in order (sleeping with MSG_RING wake-ups, with
 * eventfd wake-ups, and polling), one message waking a shard seen asleep
 * (exactly one wake-up, both ways), backpressure from a full ring, timers on a
 * shard, tasks yielding to messages, stop hooks, cancellation of pending I/O
 * on stop, the drain time-out, configuration errors and the runtime's
 * metrics. Also run under ThreadSanitizer.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "rt_test.h"
#include "sp_io.h"

#define SHARDS_MAX 4u

/* ---- All pairs, in order ---- */

#define PAIR_MESSAGES 50000u
#define SEND_BATCH 16u

struct pairs_shard {
    uint64_t sent_to[SHARDS_MAX];
    uint64_t next_from[SHARDS_MAX]; /* next sequence expected from each shard */
    uint64_t received;
    uint64_t out_of_order;
    struct sp_task task;
    struct sp_task notify;
} SP_CACHELINE_ALIGNED;

struct pairs {
    unsigned shards;
    unsigned done; /* shard 0's count of shards that received everything */
    struct pairs_shard per[SHARDS_MAX];
};

static struct pairs *pairs_of(struct sp_shard *shard)
{
    return shard->runtime->config.ctx;
}

/* A message's arg packs the sender (high bits) and its sequence number. */
#define SEQ_BITS 40

static void on_all_received(struct sp_shard *shard, void *arg)
{
    struct pairs *p = arg;
    if (++p->done == p->shards)
        sp_runtime_stop(shard->runtime);
}

/* Tells shard 0, retrying while the ring there is full of data. */
static void notify_done(struct sp_task *task, struct sp_shard *shard)
{
    if (sp_shard_send(shard, 0, on_all_received, pairs_of(shard)) < 0)
        sp_shard_post(shard, task, notify_done);
}

static void on_pair_message(struct sp_shard *shard, void *arg)
{
    struct pairs *p = pairs_of(shard);
    struct pairs_shard *me = &p->per[shard->id];
    uintptr_t v = (uintptr_t)arg;
    unsigned from = (unsigned)(v >> SEQ_BITS);
    uint64_t seq = v & ((1ull << SEQ_BITS) - 1);
    if (seq != me->next_from[from])
        me->out_of_order++;
    me->next_from[from] = seq + 1;
    if (++me->received == (uint64_t)PAIR_MESSAGES * p->shards)
        sp_shard_post(shard, &me->notify, notify_done);
}

static void pairs_send(struct sp_task *task, struct sp_shard *shard)
{
    struct pairs *p = pairs_of(shard);
    struct pairs_shard *me = &p->per[shard->id];
    bool more = false;
    for (unsigned to = 0; to < p->shards; to++) {
        uint64_t seq = me->sent_to[to];
        unsigned want = (unsigned)SP_MIN((uint64_t)SEND_BATCH, PAIR_MESSAGES - seq);
        struct sp_msg msgs[SEND_BATCH];
        for (unsigned i = 0; i < want; i++)
            msgs[i] = (struct sp_msg){on_pair_message,
                                      (void *)(((uintptr_t)shard->id << SEQ_BITS) | (seq + i))};
        me->sent_to[to] += sp_shard_send_batch(shard, to, msgs, want);
        more |= me->sent_to[to] < PAIR_MESSAGES;
    }
    if (more)
        sp_shard_post(shard, task, pairs_send);
}

static void pairs_start(struct sp_shard *shard, void *ctx)
{
    struct pairs *p = ctx;
    sp_shard_post(shard, &p->per[shard->id].task, pairs_send);
}

static void run_all_pairs(bool poll, bool eventfd_wake)
{
    static struct pairs p;
    memset(&p, 0, sizeof(p));
    p.shards = SP_MIN(SHARDS_MAX, SP_MAX(2u, sp_runtime_cpu_count()));
    struct sp_runtime_config config;
    rt_test_config(&config, p.shards, pairs_start, &p);
    config.poll = poll;
    config.idle_spin_ns = 0; /* sleep at once: every message may need a wake-up */
    config.force_eventfd_wake = eventfd_wake;
    config.ring_capacity = 256; /* small, so backpressure happens often */
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    if (eventfd_wake)
        assert_false(rt.has_msg_ring);
    assert_int_equal(sp_runtime_run(&rt), 0);
    for (unsigned s = 0; s < p.shards; s++) {
        assert_int_equal(p.per[s].received, (uint64_t)PAIR_MESSAGES * p.shards);
        assert_int_equal(p.per[s].out_of_order, 0);
        for (unsigned from = 0; from < p.shards; from++)
            assert_int_equal(p.per[s].next_from[from], PAIR_MESSAGES);
    }
    uint64_t expected = (uint64_t)PAIR_MESSAGES * p.shards * p.shards + p.shards;
    assert_int_equal(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_MSG_IN), expected);
    assert_int_equal(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_MSG_OUT), expected);
    /* Every message arrived on shards that sleep at once whenever idle: no
     * wake-up was lost (a lost one hangs the run). How many wake-ups that
     * took depends on the machine's scheduling; one wake-up for one message
     * to a shard seen asleep is checked exactly below. */
    if (poll)
        assert_int_equal(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_SLEEPS), 0);
    sp_runtime_deinit(&rt);
}

static void test_all_pairs_sleeping(void **state)
{
    (void)state;
    run_all_pairs(false, false);
}

static void test_all_pairs_eventfd_wakeups(void **state)
{
    (void)state;
    run_all_pairs(false, true);
}

static void test_all_pairs_polling(void **state)
{
    (void)state;
    run_all_pairs(true, false);
}

/* ---- One message to a shard seen asleep ---- */

struct sleeper {
    struct sp_timer look;
    unsigned seen_asleep; /* shard 1's consecutive looks finding shard 0 asleep */
    bool sent;
    bool received;
};

static void sleeper_received(struct sp_shard *shard, void *arg)
{
    struct sleeper *s = arg;
    s->received = true;
    sp_runtime_stop(shard->runtime);
}

/* Shard 1 looks at shard 0 every millisecond; once two looks in a row find
 * it asleep in its ring (not passing through its check before sleeping,
 * which takes nanoseconds), one message goes to it. */
static void sleeper_look(struct sp_timer *timer, void *ctx)
{
    struct sleeper *s = ctx;
    struct sp_shard *me = sp_shard_current();
    struct sp_shard *zero = atomic_load(&me->runtime->shards[0]);
    bool asleep = zero != NULL && atomic_load(&zero->sleeping) != 0;
    s->seen_asleep = asleep ? s->seen_asleep + 1 : 0;
    if (s->seen_asleep >= 2 && sp_shard_send(me, 0, sleeper_received, s) == 0) {
        s->sent = true;
        return;
    }
    sp_shard_timer_arm(me, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
}

static void sleeper_start(struct sp_shard *shard, void *ctx)
{
    struct sleeper *s = ctx;
    if (shard->id != 1)
        return;
    sp_timer_init(&s->look, sleeper_look, s);
    sp_shard_timer_arm(shard, &s->look, sp_now_ns() + SP_NSEC_PER_MSEC);
}

static void run_sleeper(bool eventfd_wake)
{
    static struct sleeper s;
    memset(&s, 0, sizeof(s));
    struct sp_runtime_config config;
    rt_test_config(&config, 2, sleeper_start, &s);
    config.idle_spin_ns = 0;
    config.force_eventfd_wake = eventfd_wake;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    assert_true(s.sent);
    assert_true(s.received);
    /* The one message woke its sleeping target with exactly one wake-up
     * (the stop's wake-ups go through eventfd and are not counted). */
    assert_int_equal(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_WAKES), 1);
    assert_true(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_SLEEPS) >= 1);
    sp_runtime_deinit(&rt);
}

static void test_message_to_a_sleeping_shard_wakes_it(void **state)
{
    (void)state;
    run_sleeper(false);
}

static void test_message_to_a_sleeping_shard_wakes_it_by_eventfd(void **state)
{
    (void)state;
    run_sleeper(true);
}

/* ---- Backpressure ---- */

#define BP_TOTAL 1000u

struct backpressure {
    unsigned first_push;
    uint64_t sent;
    uint64_t received;
    struct sp_task task;
};

static void bp_received(struct sp_shard *shard, void *arg)
{
    struct backpressure *b = arg;
    if (++b->received == BP_TOTAL)
        sp_runtime_stop(shard->runtime);
}

static void bp_send(struct sp_task *task, struct sp_shard *shard)
{
    struct backpressure *b = SP_CONTAINER_OF(task, struct backpressure, task);
    struct sp_msg msgs[20];
    for (unsigned i = 0; i < 20; i++)
        msgs[i] = (struct sp_msg){bp_received, b};
    unsigned want = (unsigned)SP_MIN(20u, BP_TOTAL - b->sent);
    unsigned n = sp_shard_send_batch(shard, 1, msgs, want);
    if (b->sent == 0)
        b->first_push = n;
    b->sent += n;
    if (b->sent < BP_TOTAL)
        sp_shard_post(shard, task, bp_send);
}

static void bp_start(struct sp_shard *shard, void *ctx)
{
    struct backpressure *b = ctx;
    if (shard->id == 0)
        sp_shard_post(shard, &b->task, bp_send);
}

static void test_full_ring_is_backpressure_not_loss(void **state)
{
    (void)state;
    static struct backpressure b;
    memset(&b, 0, sizeof(b));
    struct sp_runtime_config config;
    rt_test_config(&config, 2, bp_start, &b);
    config.ring_capacity = 8;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    /* One push cannot put 20 into 8 slots. */
    assert_true(b.first_push > 0 && b.first_push <= 8);
    assert_int_equal(b.sent, BP_TOTAL);
    assert_int_equal(b.received, BP_TOTAL);
    assert_true(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_MSG_FULL) > 0);
    sp_runtime_deinit(&rt);
}

/* ---- Timers ---- */

struct timers {
    struct sp_timer t[3];
    uint64_t deadline[3];
    unsigned order[3];
    unsigned fired;
    unsigned early;
};

static void on_timer(struct sp_timer *timer, void *ctx)
{
    struct timers *t = ctx;
    unsigned i = (unsigned)(timer - t->t);
    if (sp_now_ns() < t->deadline[i])
        t->early++;
    t->order[t->fired++] = i;
    if (t->fired == 3)
        sp_runtime_stop(sp_shard_current()->runtime);
}

static void timers_start(struct sp_shard *shard, void *ctx)
{
    struct timers *t = ctx;
    uint64_t now = sp_now_ns();
    const uint64_t offsets_ms[3] = {30, 10, 20};
    for (unsigned i = 0; i < 3; i++) {
        sp_timer_init(&t->t[i], on_timer, t);
        t->deadline[i] = now + offsets_ms[i] * SP_NSEC_PER_MSEC;
        sp_shard_timer_arm(shard, &t->t[i], t->deadline[i]);
    }
}

static void test_timers_fire_in_order_on_a_sleeping_shard(void **state)
{
    (void)state;
    static struct timers t;
    memset(&t, 0, sizeof(t));
    struct sp_runtime_config config;
    rt_test_config(&config, 1, timers_start, &t);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    assert_int_equal(t.fired, 3);
    assert_int_equal(t.early, 0);
    assert_int_equal(t.order[0], 1);
    assert_int_equal(t.order[1], 2);
    assert_int_equal(t.order[2], 0);
    /* Nothing else to do while waiting: the shard slept in the ring. */
    assert_true(sp_metrics_counter(&rt.metrics, SP_RT_METRIC_SLEEPS) > 0);
    sp_runtime_deinit(&rt);
}

/* ---- Tasks yield to messages ---- */

struct yield {
    bool flag_seen_by_spinner;
    uint64_t spins;
    unsigned order[3];
    unsigned ran;
    struct sp_task spinner;
    struct sp_task ordered[3];
};

static void on_flag(struct sp_shard *shard, void *arg)
{
    struct yield *y = arg;
    (void)shard;
    y->flag_seen_by_spinner = true;
}

static void spin(struct sp_task *task, struct sp_shard *shard)
{
    struct yield *y = SP_CONTAINER_OF(task, struct yield, spinner);
    y->spins++;
    if (y->flag_seen_by_spinner) {
        sp_runtime_stop(shard->runtime);
        return;
    }
    sp_shard_post(shard, task, spin); /* forever, unless messages get a turn */
}

static void ordered(struct sp_task *task, struct sp_shard *shard)
{
    struct yield *y = shard->runtime->config.ctx;
    y->order[y->ran++] = (unsigned)(task - y->ordered);
}

static void yield_start(struct sp_shard *shard, void *ctx)
{
    struct yield *y = ctx;
    if (shard->id == 0) {
        for (unsigned i = 0; i < 3; i++)
            sp_shard_post(shard, &y->ordered[i], ordered);
        sp_shard_post(shard, &y->spinner, spin);
    } else {
        int ret = sp_shard_send(shard, 0, on_flag, y);
        SP_ASSERT(ret == 0);
    }
}

static void test_tasks_run_in_order_and_yield_to_messages(void **state)
{
    (void)state;
    static struct yield y;
    memset(&y, 0, sizeof(y));
    struct sp_runtime_config config;
    rt_test_config(&config, 2, yield_start, &y);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    assert_true(y.flag_seen_by_spinner);
    assert_int_equal(y.ran, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(y.order[i], i);
    sp_runtime_deinit(&rt);
}

/* ---- Stop: hooks, cancelled I/O, drain time-out ---- */

struct stopping {
    struct sp_stop_hook hooks[SHARDS_MAX];
    unsigned hook_runs[SHARDS_MAX];
    int sockets[2];
    char buf[16];
    struct sp_io_op recv_op;
    int recv_res;
    bool recv_done;
    struct sp_task forever;
};

static void on_stop_hook(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct stopping *s = shard->runtime->config.ctx;
    (void)hook;
    s->hook_runs[shard->id]++;
}

static void on_recv(struct sp_io_op *op, int res, void *ctx)
{
    struct stopping *s = ctx;
    (void)op;
    s->recv_res = res;
    s->recv_done = true;
}

static void stop_soon(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    (void)ctx;
    sp_runtime_stop(sp_shard_current()->runtime);
}

static struct sp_timer stop_timer;

static void stopping_start(struct sp_shard *shard, void *ctx)
{
    struct stopping *s = ctx;
    sp_shard_on_stop(shard, &s->hooks[shard->id], on_stop_hook);
    if (shard->id != 0)
        return;
    /* A receive that no data will ever complete: only the stop ends it. */
    int ret = sp_io_recv(shard, &s->recv_op, s->sockets[0], s->buf, sizeof(s->buf), on_recv, s);
    SP_ASSERT(ret == 0);
    sp_timer_init(&stop_timer, stop_soon, NULL);
    sp_shard_timer_arm(shard, &stop_timer, sp_now_ns() + 20 * SP_NSEC_PER_MSEC);
}

static void test_stop_runs_hooks_and_cancels_pending_io(void **state)
{
    (void)state;
    static struct stopping s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s.sockets), 0);
    struct sp_runtime_config config;
    rt_test_config(&config, 2, stopping_start, &s);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    assert_int_equal(s.hook_runs[0], 1);
    assert_int_equal(s.hook_runs[1], 1);
    assert_true(s.recv_done);
    assert_int_equal(s.recv_res, -ECANCELED);
    sp_runtime_deinit(&rt);
    close(s.sockets[0]);
    close(s.sockets[1]);
}

static void forever(struct sp_task *task, struct sp_shard *shard)
{
    sp_shard_post(shard, task, forever); /* ignores the stop: never drains */
}

static void stubborn_start(struct sp_shard *shard, void *ctx)
{
    struct stopping *s = ctx;
    sp_shard_post(shard, &s->forever, forever);
    sp_runtime_stop(shard->runtime);
}

static void test_drain_timeout_is_reported(void **state)
{
    (void)state;
    static struct stopping s;
    memset(&s, 0, sizeof(s));
    struct sp_runtime_config config;
    rt_test_config(&config, 1, stubborn_start, &s);
    config.drain_timeout_ns = 50 * SP_NSEC_PER_MSEC;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    uint64_t start = sp_now_ns();
    assert_int_equal(sp_runtime_run(&rt), -ETIMEDOUT);
    assert_true(sp_now_ns() - start >= 50 * SP_NSEC_PER_MSEC);
    sp_runtime_deinit(&rt);
}

/* ---- Stop: nothing is lost while shards drain ---- */

struct late {
    struct sp_stop_hook hook;
    struct sp_timer timer;
    struct sp_timer io_timer;
    int ran_on;
    int sockets[2];
    char buf[8];
    struct sp_io_op op;
    int recv_res;
    bool recv_done;
};

static void late_message(struct sp_shard *shard, void *arg)
{
    struct late *l = arg;
    l->ran_on = (int)shard->id;
}

static void late_send(struct sp_timer *timer, void *ctx)
{
    struct late *l = ctx;
    (void)timer;
    /* 20 ms into the stop, shard 1 has long been quiet: it must still run this. */
    int ret = sp_shard_send(sp_shard_current(), 1, late_message, l);
    SP_ASSERT(ret == 0);
}

static void late_recv_done(struct sp_io_op *op, int res, void *ctx)
{
    struct late *l = ctx;
    (void)op;
    l->recv_res = res;
    l->recv_done = true;
}

static void late_io(struct sp_timer *timer, void *ctx)
{
    struct late *l = ctx;
    (void)timer;
    /* A request made while draining: it must be cancelled, not waited for. */
    int ret = sp_io_recv(sp_shard_current(), &l->op, l->sockets[0], l->buf, sizeof(l->buf),
                         late_recv_done, l);
    SP_ASSERT(ret == 0);
}

static void late_hook(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct late *l = SP_CONTAINER_OF(hook, struct late, hook);
    sp_timer_init(&l->timer, late_send, l);
    sp_shard_timer_arm(shard, &l->timer, sp_now_ns() + 20 * SP_NSEC_PER_MSEC);
    sp_timer_init(&l->io_timer, late_io, l);
    sp_shard_timer_arm(shard, &l->io_timer, sp_now_ns() + 5 * SP_NSEC_PER_MSEC);
}

static void late_start(struct sp_shard *shard, void *ctx)
{
    struct late *l = ctx;
    if (shard->id != 0)
        return;
    sp_shard_on_stop(shard, &l->hook, late_hook);
    sp_runtime_stop(shard->runtime);
}

static void test_messages_and_io_during_drain_are_not_lost(void **state)
{
    (void)state;
    static struct late l;
    memset(&l, 0, sizeof(l));
    l.ran_on = -1;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, l.sockets), 0);
    struct sp_runtime_config config;
    rt_test_config(&config, 2, late_start, &l);
    config.idle_spin_ns = 0;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    uint64_t start = sp_now_ns();
    assert_int_equal(sp_runtime_run(&rt), 0);
    /* Well inside the 10 s drain time-out: the late request was cancelled. */
    assert_true(sp_now_ns() - start < 5 * SP_NSEC_PER_SEC);
    assert_int_equal(l.ran_on, 1);
    assert_true(l.recv_done);
    assert_int_equal(l.recv_res, -ECANCELED);
    sp_runtime_deinit(&rt);
    close(l.sockets[0]);
    close(l.sockets[1]);
}

/* ---- Stop from another thread while the runtime ends ---- */

static _Atomic bool stopper_quit;

static void *stopper(void *arg)
{
    struct sp_runtime *rt = arg;
    while (!atomic_load(&stopper_quit))
        sp_runtime_stop(rt);
    return NULL;
}

static void test_stop_from_another_thread_races_nothing(void **state)
{
    (void)state;
    static struct pairs p;
    memset(&p, 0, sizeof(p));
    p.shards = 2;
    struct sp_runtime_config config;
    rt_test_config(&config, 2, NULL, NULL);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    atomic_store(&stopper_quit, false);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, stopper, &rt), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    /* Still calling stop after run returned: legal until deinit. */
    atomic_store(&stopper_quit, true);
    pthread_join(thread, NULL);
    sp_runtime_deinit(&rt);
}

/* ---- A drain time-out with memory still held reports, never aborts ---- */

struct holder {
    struct sp_budget budget;
    void *segment;
    struct sp_task forever;
};

static void hold_forever(struct sp_task *task, struct sp_shard *shard)
{
    sp_shard_post(shard, task, hold_forever);
}

static void holder_start(struct sp_shard *shard, void *ctx)
{
    struct holder *h = ctx;
    sp_budget_init(&h->budget, &shard->pool, "test", 1);
    int ret = sp_budget_reserve(&h->budget, &h->segment);
    SP_ASSERT(ret == 0);
    sp_shard_post(shard, &h->forever, hold_forever);
    sp_runtime_stop(shard->runtime);
}

static void test_drain_timeout_with_segments_held(void **state)
{
    (void)state;
    static struct holder h;
    memset(&h, 0, sizeof(h));
    struct sp_runtime_config config;
    rt_test_config(&config, 1, holder_start, &h);
    config.drain_timeout_ns = 20 * SP_NSEC_PER_MSEC;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), -ETIMEDOUT);
    sp_runtime_deinit(&rt);
}

/* ---- Configuration ---- */

static void test_bad_configuration_is_rejected(void **state)
{
    (void)state;
    struct sp_runtime_config config;
    struct sp_runtime rt;
    rt_test_config(&config, 0, NULL, NULL);
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
    rt_test_config(&config, sp_runtime_cpu_count() + 1, NULL, NULL);
    config.pin = true;
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
    rt_test_config(&config, 1, NULL, NULL);
    config.ring_capacity = 3;
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
    rt_test_config(&config, 1, NULL, NULL);
    config.segment_bytes = 1000;
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
    rt_test_config(&config, 1, NULL, NULL);
    config.timer_tick_shift = 2;
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
    rt_test_config(&config, 1, NULL, NULL);
    config.uring_entries = 1;
    assert_int_equal(sp_runtime_init(&rt, &config), -EINVAL);
}

int main(void)
{
    rt_test_require_uring();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_pairs_sleeping),
        cmocka_unit_test(test_all_pairs_eventfd_wakeups),
        cmocka_unit_test(test_all_pairs_polling),
        cmocka_unit_test(test_message_to_a_sleeping_shard_wakes_it),
        cmocka_unit_test(test_message_to_a_sleeping_shard_wakes_it_by_eventfd),
        cmocka_unit_test(test_full_ring_is_backpressure_not_loss),
        cmocka_unit_test(test_timers_fire_in_order_on_a_sleeping_shard),
        cmocka_unit_test(test_tasks_run_in_order_and_yield_to_messages),
        cmocka_unit_test(test_stop_runs_hooks_and_cancels_pending_io),
        cmocka_unit_test(test_drain_timeout_is_reported),
        cmocka_unit_test(test_messages_and_io_during_drain_are_not_lost),
        cmocka_unit_test(test_stop_from_another_thread_races_nothing),
        cmocka_unit_test(test_drain_timeout_with_segments_held),
        cmocka_unit_test(test_bad_configuration_is_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
