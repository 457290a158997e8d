/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reactor loop of one shard (see sp_reactor.h for the turn order).
 *
 * Sleeping without losing a wake-up: before sleeping, the shard stores
 * `sleeping = 1` and then looks at its inbound rings once more; a sender
 * publishes its message and then reads `sleeping`. Both sides put a
 * sequentially consistent fence between their store and their load, so at
 * least one of them sees the other: either the shard finds the message, or
 * the sender sees the flag and wakes it. The sender takes the flag with an
 * exchange, so a sleep costs at most one wake-up however many shards send.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "reactor_int.h"
#include "sp_log.h"

/* A stopping shard whose eventfd read was cancelled re-checks this often. */
#define SP_DRAIN_POLL_NS (1 * SP_NSEC_PER_MSEC)
/* Tasks run between two reads of the clock. */
#define SP_TASK_CLOCK_EVERY 16u

static _Thread_local struct sp_shard *current_shard;

struct sp_shard *sp_shard_current(void)
{
    return current_shard;
}

/* ---- Submission ---- */

static void shard_flush(struct sp_shard *shard)
{
    if (shard->sqe_unsubmitted == 0)
        return;
    int ret = io_uring_submit(&shard->ring);
    if (ret < 0) {
        /* -EBUSY/-EAGAIN: the kernel is short of completion room; retry next turn. */
        if (ret != -EBUSY && ret != -EAGAIN && ret != -EINTR)
            sp_warn("io_uring_submit: %s", strerror(-ret));
        return;
    }
    shard->sqe_unsubmitted = io_uring_sq_ready(&shard->ring);
}

static struct io_uring_sqe *shard_raw_sqe(struct sp_shard *shard)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&shard->ring);
    if (sqe == NULL) {
        shard_flush(shard);
        sqe = io_uring_get_sqe(&shard->ring);
        if (sqe == NULL)
            return NULL;
    }
    shard->sqe_unsubmitted++;
    return sqe;
}

struct io_uring_sqe *sp_shard_sqe_raw(struct sp_shard *shard)
{
    SP_ASSERT(shard == current_shard);
    return shard_raw_sqe(shard);
}

struct io_uring_sqe *sp_shard_sqe(struct sp_shard *shard, struct sp_io_op *op)
{
    SP_ASSERT(shard == current_shard);
    SP_ASSERT((uintptr_t)op >= SP_UDATA_RESERVED_MAX);
    struct io_uring_sqe *sqe = shard_raw_sqe(shard);
    if (sqe == NULL)
        return NULL;
    io_uring_sqe_set_data(sqe, op);
    shard->inflight++;
    if (shard->cancel_new)
        shard->cancel_pending = true; /* requests made while draining get cancelled too */
    return sqe;
}

/* ---- Wake-ups ---- */

static void event_read_arm(struct sp_shard *shard);

static void event_read_done(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_shard *shard = ctx;
    (void)op;
    if (res < 0 && res != -ECANCELED && res != -EINTR)
        sp_warn("eventfd read: %s", strerror(-res));
    if (!shard->stopping)
        event_read_arm(shard);
}

static void event_read_arm(struct sp_shard *shard)
{
    shard->event_op.fn = event_read_done;
    shard->event_op.ctx = shard;
    struct io_uring_sqe *sqe = sp_shard_sqe(shard, &shard->event_op);
    if (sqe == NULL) {
        /* The queue stayed full: the next turn tries again (event_rearm). */
        shard->event_rearm = true;
        return;
    }
    shard->event_rearm = false;
    io_uring_prep_read(sqe, shard->event_fd, &shard->event_value, sizeof(shard->event_value), 0);
}

void sp_shard_wake_external(struct sp_shard *shard)
{
    uint64_t one = 1;
    ssize_t n = write(shard->event_fd, &one, sizeof(one));
    (void)n; /* EAGAIN means the counter is saturated: a wake is pending anyway */
}

static void shard_wake(struct sp_shard *self, struct sp_shard *target)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&target->sleeping, memory_order_relaxed))
        return;
    if (!atomic_exchange_explicit(&target->sleeping, 0, memory_order_acq_rel))
        return;
    self->stats.wake_sent_count++;
    if (!self->runtime->has_msg_ring) {
        sp_shard_wake_external(target);
        return;
    }
    struct io_uring_sqe *sqe = shard_raw_sqe(self);
    if (sqe == NULL) {
        sp_shard_wake_external(target);
        return;
    }
    io_uring_prep_msg_ring(sqe, target->ring_fd, 0, SP_UDATA_WAKE, 0);
    io_uring_sqe_set_data64(sqe, SP_UDATA_WAKE_SENT + target->id);
    /* Submit now: the target sleeps until this reaches the kernel. */
    shard_flush(self);
}

/* ---- Public shard calls ---- */

void sp_shard_post(struct sp_shard *shard, struct sp_task *task,
                   void (*fn)(struct sp_task *task, struct sp_shard *shard))
{
    SP_ASSERT(shard == current_shard);
    SP_ASSERT(fn != NULL);
    task->fn = fn;
    task->next = NULL;
    if (shard->task_tail != NULL)
        shard->task_tail->next = task;
    else
        shard->task_head = task;
    shard->task_tail = task;
}

unsigned sp_shard_send_batch(struct sp_shard *shard, unsigned to, const struct sp_msg *msgs,
                             unsigned n)
{
    SP_ASSERT(shard == current_shard);
    SP_ASSERT(to < shard->shard_count);
    /* Counted before the push, so no receiver can count one not yet sent. */
    uint64_t counted = atomic_load_explicit(&shard->msgs_sent, memory_order_relaxed);
    atomic_store_explicit(&shard->msgs_sent, counted + n, memory_order_release);
    unsigned sent = sp_ring_push(shard->outbound[to], msgs, n);
    if (sent < n)
        atomic_store_explicit(&shard->msgs_sent, counted + sent, memory_order_release);
    shard->stats.msg_out_count += sent;
    if (sent < n)
        shard->stats.msg_full_count++;
    if (sent > 0 && to != shard->id)
        shard_wake(shard, atomic_load_explicit(&shard->runtime->shards[to], memory_order_relaxed));
    return sent;
}

void sp_shard_on_stop(struct sp_shard *shard, struct sp_stop_hook *hook,
                      void (*fn)(struct sp_stop_hook *hook, struct sp_shard *shard))
{
    SP_ASSERT(shard == current_shard);
    SP_ASSERT(fn != NULL);
    hook->fn = fn;
    hook->next = shard->stop_hooks;
    shard->stop_hooks = hook;
}

/* ---- The turn ---- */

static unsigned drain_inbound(struct sp_shard *shard)
{
    struct sp_msg batch[SP_MSG_BATCH];
    unsigned total = 0;
    /* Start at a different ring each turn, so no sender can starve the rest. */
    unsigned first = shard->drain_first;
    shard->drain_first = first + 1 < shard->shard_count ? first + 1 : 0;
    for (unsigned i = 0; i < shard->shard_count; i++) {
        unsigned from = first + i < shard->shard_count ? first + i : first + i - shard->shard_count;
        struct sp_ring *ring = shard->inbound[from];
        unsigned n;
        while (total < SP_MSG_PER_TURN_MAX && (n = sp_ring_pop(ring, batch, SP_MSG_BATCH)) > 0) {
            for (unsigned m = 0; m < n; m++)
                batch[m].fn(shard, batch[m].arg);
            total += n;
        }
    }
    shard->stats.msg_in_count += total;
    if (total > 0)
        atomic_store_explicit(&shard->msgs_received,
                              atomic_load_explicit(&shard->msgs_received, memory_order_relaxed) +
                                  total,
                              memory_order_release);
    return total;
}

static bool inbound_empty(struct sp_shard *shard)
{
    for (unsigned from = 0; from < shard->shard_count; from++) {
        if (!sp_ring_empty(shard->inbound[from]))
            return false;
    }
    return true;
}

/*
 * Runs the tasks queued when the turn began, until the time budget is spent.
 * A task posted during the turn (a task re-posting itself, say) waits for the
 * next one, so messages and completions are looked at in between.
 */
static unsigned run_tasks(struct sp_shard *shard, uint64_t start_ns)
{
    struct sp_task *last = shard->task_tail;
    unsigned ran = 0;
    while (last != NULL) {
        struct sp_task *task = shard->task_head;
        shard->task_head = task->next;
        if (shard->task_head == NULL)
            shard->task_tail = NULL;
        task->fn(task, shard);
        ran++;
        if (task == last)
            break;
        if (ran % SP_TASK_CLOCK_EVERY == 0 && sp_now_ns() - start_ns >= shard->task_quota_ns)
            break;
    }
    shard->stats.task_count += ran;
    return ran;
}

/* Our MSG_RING to `target` failed: its sleeping flag is already cleared. */
static void wake_sent_failed(struct sp_shard *shard, unsigned target, int res)
{
    SP_ASSERT(target < shard->shard_count);
    sp_debug("MSG_RING wake-up of shard %u failed (%s): using its eventfd", target, strerror(-res));
    sp_shard_wake_external(
        atomic_load_explicit(&shard->runtime->shards[target], memory_order_relaxed));
}

static unsigned reap_completions(struct sp_shard *shard)
{
    struct io_uring_cqe *cqes[SP_CQE_BATCH];
    unsigned total = 0;
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(&shard->ring, cqes, SP_CQE_BATCH)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            uint64_t data = io_uring_cqe_get_data64(cqes[i]);
            if (data < SP_UDATA_RESERVED_MAX) {
                if (data >= SP_UDATA_WAKE_SENT && cqes[i]->res < 0)
                    wake_sent_failed(shard, (unsigned)(data - SP_UDATA_WAKE_SENT), cqes[i]->res);
                continue;
            }
            struct sp_io_op *op = (struct sp_io_op *)(uintptr_t)data;
            SP_ASSERT(shard->inflight > 0);
            shard->inflight--;
            op->fn(op, cqes[i]->res, op->ctx);
        }
        io_uring_cq_advance(&shard->ring, n);
        total += n;
        if (n < SP_CQE_BATCH)
            break;
    }
    shard->stats.cqe_count += total;
    return total;
}

static void send_cancel(struct sp_shard *shard)
{
    struct io_uring_sqe *sqe = shard_raw_sqe(shard);
    if (sqe == NULL)
        return; /* still pending: the next turn tries again */
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, SP_UDATA_IGNORE);
    shard->cancel_pending = false;
}

static void begin_stop(struct sp_shard *shard, uint64_t now_ns)
{
    uint64_t timeout_ns = shard->runtime->config.drain_timeout_ns;
    shard->stopping = true;
    shard->drain_deadline_ns = timeout_ns > UINT64_MAX - now_ns ? UINT64_MAX : now_ns + timeout_ns;
    sp_debug("stopping: %u requests in flight", shard->inflight);
    /* Cancel first: the hooks' own requests (a final flush) go in after it. */
    if (shard->inflight > 0)
        send_cancel(shard);
    while (shard->stop_hooks != NULL) {
        struct sp_stop_hook *hook = shard->stop_hooks;
        shard->stop_hooks = hook->next;
        hook->fn(hook, shard);
    }
    shard->cancel_new = true;
}

/* Nothing queued, in flight or armed here, and no message waiting. */
static bool locally_quiet(struct sp_shard *shard)
{
    return shard->inflight == 0 && shard->task_head == NULL && shard->timers.armed_count == 0 &&
           inbound_empty(shard);
}

/* One pass over every shard: false if one is busy; else the message counts. */
static bool collect(struct sp_shard *shard, uint64_t *sent, uint64_t *received)
{
    struct sp_runtime *rt = shard->runtime;
    *sent = *received = 0;
    for (unsigned i = 0; i < shard->shard_count; i++) {
        struct sp_shard *other = atomic_load_explicit(&rt->shards[i], memory_order_relaxed);
        if (!atomic_load_explicit(&other->quiet, memory_order_acquire))
            return false;
        *received += atomic_load_explicit(&other->msgs_received, memory_order_acquire);
    }
    for (unsigned i = 0; i < shard->shard_count; i++) {
        struct sp_shard *other = atomic_load_explicit(&rt->shards[i], memory_order_relaxed);
        *sent += atomic_load_explicit(&other->msgs_sent, memory_order_acquire);
    }
    return true;
}

/*
 * A stopping shard may leave its loop only when every shard is quiet and no
 * message is in flight anywhere, or a message sent to it later would be
 * lost. A quiet shard becomes busy only by receiving a message, so two
 * passes (Mattern's four counters) that both find every shard quiet, agree,
 * and count as many messages received as sent prove that nothing can
 * happen any more: sent counts are never below the truth and received
 * counts never above it.
 */
static bool globally_quiet(struct sp_shard *shard)
{
    uint64_t sent1, received1, sent2, received2;
    if (!collect(shard, &sent1, &received1) || sent1 != received1)
        return false;
    if (!collect(shard, &sent2, &received2))
        return false;
    return sent1 == sent2 && received1 == received2;
}

static bool drained(struct sp_shard *shard, uint64_t now_ns)
{
    if (shard->cancel_pending)
        send_cancel(shard);
    bool quiet = locally_quiet(shard);
    atomic_store_explicit(&shard->quiet, quiet, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (quiet && globally_quiet(shard))
        return true;
    if (now_ns < shard->drain_deadline_ns)
        return false;
    sp_warn("drain timed out: %u requests in flight, tasks %s, %llu timers armed%s",
            shard->inflight, shard->task_head ? "queued" : "none",
            (unsigned long long)shard->timers.armed_count, quiet ? ", other shards busy" : "");
    shard->drain_timed_out = true;
    return true;
}

static void sleep_in_ring(struct sp_shard *shard, uint64_t now_ns)
{
    atomic_store_explicit(&shard->sleeping, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    bool stop_seen = !shard->stopping &&
                     atomic_load_explicit(&shard->runtime->stop_requested, memory_order_relaxed);
    if (stop_seen || !inbound_empty(shard) || io_uring_cq_ready(&shard->ring) > 0) {
        atomic_store_explicit(&shard->sleeping, 0, memory_order_relaxed);
        return;
    }
    uint64_t until_ns = sp_timer_wheel_next_ns(&shard->timers);
    if (shard->stopping)
        until_ns = SP_MIN(until_ns, SP_MIN(shard->drain_deadline_ns, now_ns + SP_DRAIN_POLL_NS));
    struct io_uring_cqe *cqe = NULL;
    int ret;
    if (until_ns == UINT64_MAX) {
        ret = io_uring_submit_and_wait_timeout(&shard->ring, &cqe, 1, NULL, NULL);
    } else if (until_ns > now_ns) {
        uint64_t wait_ns = until_ns - now_ns;
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / SP_NSEC_PER_SEC),
                                       .tv_nsec = (long long)(wait_ns % SP_NSEC_PER_SEC)};
        ret = io_uring_submit_and_wait_timeout(&shard->ring, &cqe, 1, &ts, NULL);
    } else {
        ret = 0;
    }
    shard->sqe_unsubmitted = io_uring_sq_ready(&shard->ring);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        sp_warn("io_uring wait: %s", strerror(-ret));
    atomic_store_explicit(&shard->sleeping, 0, memory_order_relaxed);
    shard->stats.sleep_count++;
}

static void publish_stats(struct sp_shard *shard)
{
    const uint64_t *now = (const uint64_t *)&shard->stats;
    uint64_t *seen = (uint64_t *)&shard->stats_published;
    _Static_assert(sizeof(struct sp_shard_stats) == SP_RT_METRIC_COUNT * sizeof(uint64_t),
                   "one runtime metric per shard stat, in order");
    for (int i = 0; i < SP_RT_METRIC_COUNT; i++) {
        if (now[i] != seen[i]) {
            sp_counter_add(shard->metrics, shard->id, i, now[i] - seen[i]);
            seen[i] = now[i];
        }
    }
}

void sp_shard_run(struct sp_shard *shard)
{
    SP_ASSERT(shard == current_shard);
    for (;;) {
        uint64_t now_ns = sp_now_ns();
        if (SP_UNLIKELY(shard->event_rearm) && !shard->stopping)
            event_read_arm(shard);
        unsigned work = drain_inbound(shard);
        work += sp_timer_wheel_advance(&shard->timers, now_ns, SP_TIMER_FIRE_PER_TURN_MAX);
        work += run_tasks(shard, now_ns);
        work += reap_completions(shard);
        shard->stats.loop_count++;
        publish_stats(shard);

        if (!shard->stopping &&
            atomic_load_explicit(&shard->runtime->stop_requested, memory_order_acquire))
            begin_stop(shard, now_ns);
        if (shard->stopping && drained(shard, now_ns))
            break;

        bool busy = work > 0 || shard->task_head != NULL;
        if (busy)
            shard->last_work_ns = now_ns;
        if (busy || shard->poll || now_ns - shard->last_work_ns < shard->idle_spin_ns)
            shard_flush(shard);
        else
            sleep_in_ring(shard, now_ns);
    }
    shard_flush(shard);
    shard->drained = true;
    sp_debug("drained after %llu turns", (unsigned long long)shard->stats.loop_count);
}

/* ---- Set-up ---- */

static int ring_setup(struct sp_shard *shard, uint32_t entries)
{
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    /* SINGLE_ISSUER + COOP_TASKRUN: completions are run when we enter the
     * kernel anyway, not by interrupting the shard (kernel 6.0+). */
    /* TASKRUN_FLAG: with COOP_TASKRUN the kernel runs completion work only
     * when we enter it; the flag tells a polling shard, which may never
     * enter, that work waits (liburing's peek then enters for it). */
    params.flags =
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int ret = io_uring_queue_init_params(entries, &shard->ring, &params);
    if (ret == -EINVAL) {
        memset(&params, 0, sizeof(params));
        ret = io_uring_queue_init_params(entries, &shard->ring, &params);
    }
    if (ret < 0)
        return ret;
    shard->ring_fd = shard->ring.ring_fd;
    return 0;
}

int sp_shard_init(struct sp_shard *shard, struct sp_runtime *rt, unsigned id)
{
    SP_ASSERT(shard != NULL);
    SP_ASSERT(id < rt->config.shard_count);
    const struct sp_runtime_config *config = &rt->config;
    memset(shard, 0, sizeof(*shard));
    shard->id = id;
    shard->shard_count = config->shard_count;
    shard->runtime = rt;
    shard->poll = config->poll;
    shard->task_quota_ns = config->task_quota_ns;
    shard->idle_spin_ns = config->idle_spin_ns;
    shard->metrics = &rt->metrics;
    shard->event_fd = -1;
    shard->ring_fd = -1;
    current_shard = shard;
    sp_log_set_shard((int)id);

    int ret = sp_arena_init(&shard->arena);
    if (ret < 0)
        return ret;
    ret = sp_segment_pool_init(&shard->pool, config->memory_bytes, config->segment_bytes);
    if (ret < 0)
        return ret;
    ret = sp_timer_wheel_init(&shard->timers, sp_now_ns(), config->timer_tick_shift);
    if (ret < 0)
        return ret;
    shard->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (shard->event_fd < 0)
        return -errno;
    ret = ring_setup(shard, config->uring_entries);
    if (ret < 0)
        return ret;

    unsigned n = config->shard_count;
    shard->inbound = sp_arena_alloc(&shard->arena, n * sizeof(*shard->inbound));
    shard->outbound = sp_arena_alloc(&shard->arena, n * sizeof(*shard->outbound));
    if (shard->inbound == NULL || shard->outbound == NULL)
        return -ENOMEM;
    for (unsigned j = 0; j < n; j++) {
        shard->inbound[j] = &rt->rings[j * n + id];
        shard->outbound[j] = &rt->rings[id * n + j];
    }
    event_read_arm(shard);
    shard_flush(shard);
    return 0;
}

void sp_shard_deinit(struct sp_shard *shard)
{
    SP_ASSERT(shard == current_shard);
    if (shard->ring_fd >= 0)
        io_uring_queue_exit(&shard->ring);
    if (shard->pool.segment_count > 0 || shard->pool.free_stack != NULL) {
        uint32_t used = sp_segment_pool_used(&shard->pool);
        if (used == 0)
            sp_segment_pool_deinit(&shard->pool);
        else /* only after a drain time-out: work still holds them */
            sp_warn("%u managed-memory segments still held: leaving them mapped", used);
    }
    if (shard->arena.created) {
        sp_arena_free(&shard->arena, shard->inbound);
        sp_arena_free(&shard->arena, shard->outbound);
        sp_arena_deinit(&shard->arena);
    }
    shard->ring_fd = -1;
    current_shard = NULL;
    sp_log_set_shard(-1);
}
