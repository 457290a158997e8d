/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shard: one thread pinned to one core, with its own io_uring ring,
 * timer wheel, run queue, managed memory and jemalloc arena. Everything a
 * shard owns is touched only by its thread; other shards reach it only
 * through the SPSC rings of sp_ring.h (sp_shard_send) and a wake-up.
 *
 * One turn of the reactor loop: drain inbound messages (bounded), fire due
 * timers, run queued tasks until the time budget (task_quota_ns) is spent,
 * reap I/O completions and hand them to their callbacks, submit new I/O in
 * one system call. With nothing to do for idle_spin_ns, the shard sleeps in
 * the ring
 * (io_uring_enter with a timeout equal to the next timer), and another shard
 * that sends it a message wakes it with IORING_OP_MSG_RING when the kernel
 * has it, by writing its eventfd otherwise. With `poll` set it never sleeps.
 *
 * This header is what code running on a shard uses. Starting shards is
 * sp_runtime.h; async file and socket I/O is sp_io.h.
 */
#ifndef SP_REACTOR_H
#define SP_REACTOR_H

#include <errno.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_mem.h"
#include "sp_metrics.h"
#include "sp_ring.h"
#include "sp_timer.h"

struct sp_runtime;
struct sp_shard;

/* A unit of work queued on the shard that owns it. Embed it; not copyable. */
struct sp_task {
    struct sp_task *next;
    void (*fn)(struct sp_task *task, struct sp_shard *shard);
};

/* Run once on the shard when a stop is requested (before draining). */
struct sp_stop_hook {
    struct sp_stop_hook *next;
    void (*fn)(struct sp_stop_hook *hook, struct sp_shard *shard);
};

/* An I/O request in flight; see sp_io.h. The CQE's user_data points here. */
struct sp_io_op;
typedef void sp_io_fn(struct sp_io_op *op, int res, void *ctx);
struct sp_io_op {
    sp_io_fn *fn;
    void *ctx;
};

/* Counters a shard keeps for itself; published to the metrics each turn. */
struct sp_shard_stats {
    uint64_t loop_count;
    uint64_t task_count;
    uint64_t msg_in_count;
    uint64_t msg_out_count;
    uint64_t msg_full_count; /* sends refused by a full ring */
    uint64_t wake_sent_count;
    uint64_t sleep_count;
    uint64_t cqe_count;
};

struct sp_shard {
    /* Read and written by other shards: its own line. */
    _Atomic uint32_t sleeping SP_CACHELINE_ALIGNED;

    /* Written by this shard only, read by others when all stop: messages
     * counted as sent before they are pushed, as received after they ran,
     * and whether this shard is quiet (see the drain in reactor.c). */
    _Atomic uint64_t msgs_sent SP_CACHELINE_ALIGNED;
    _Atomic uint64_t msgs_received;
    _Atomic bool quiet;

    unsigned id SP_CACHELINE_ALIGNED;
    unsigned shard_count;
    struct sp_runtime *runtime;
    struct io_uring ring;
    int ring_fd;  /* target of other shards' IORING_OP_MSG_RING */
    int event_fd; /* wake-up from threads without a ring */
    bool poll;
    bool stopping; /* a stop was seen; draining */
    bool drained;  /* left the loop */
    bool drain_timed_out;
    bool cancel_new;      /* cancel requests made from now on (after the stop hooks) */
    bool cancel_pending;  /* a cancel-any is owed to the kernel */
    bool event_rearm;     /* the eventfd read could not be queued: retry */
    unsigned drain_first; /* inbound ring to drain first this turn */
    uint64_t drain_deadline_ns;
    uint64_t task_quota_ns;
    uint64_t idle_spin_ns;
    uint64_t last_work_ns; /* when a turn last found something to do */

    struct sp_ring **inbound;  /* [shard_count]: inbound[j] is the ring j -> this */
    struct sp_ring **outbound; /* [shard_count]: outbound[j] is the ring this -> j */

    struct sp_timer_wheel timers;
    struct sp_task *task_head;
    struct sp_task *task_tail;
    struct sp_stop_hook *stop_hooks;
    uint32_t inflight;        /* sp_io_op requests awaiting completion */
    uint32_t sqe_unsubmitted; /* prepared, not yet handed to the kernel */

    uint64_t event_value;
    struct sp_io_op event_op;

    struct sp_segment_pool pool;
    struct sp_arena arena;
    struct sp_metrics *metrics;
    struct sp_shard_stats stats;
    struct sp_shard_stats stats_published;
};

/* The shard running on the calling thread, NULL off the shards. */
struct sp_shard *sp_shard_current(void);

/* Queues `task` to run on this shard, after those already queued. */
void sp_shard_post(struct sp_shard *shard, struct sp_task *task,
                   void (*fn)(struct sp_task *task, struct sp_shard *shard));

/*
 * Sends up to `n` messages to shard `to` (which may be this shard); each
 * runs there as `fn(that_shard, arg)`, in order. Returns how many were sent:
 * fewer than `n` when the ring is full, which is backpressure, never a drop;
 * the caller retries later. Wakes `to` if it sleeps.
 */
unsigned sp_shard_send_batch(struct sp_shard *shard, unsigned to, const struct sp_msg *msgs,
                             unsigned n);

/* One message: 0, or -EAGAIN when the ring to `to` is full. */
SP_MUST_CHECK static inline int sp_shard_send(struct sp_shard *shard, unsigned to, sp_msg_fn *fn,
                                              void *arg)
{
    struct sp_msg msg = {.fn = fn, .arg = arg};
    return sp_shard_send_batch(shard, to, &msg, 1) == 1 ? 0 : -EAGAIN;
}

/* Registers `hook` to run once when this shard starts stopping. */
void sp_shard_on_stop(struct sp_shard *shard, struct sp_stop_hook *hook,
                      void (*fn)(struct sp_stop_hook *hook, struct sp_shard *shard));

/* Arms a timer on this shard's wheel for `deadline_ns` (sp_now_ns clock). */
static inline void sp_shard_timer_arm(struct sp_shard *shard, struct sp_timer *timer,
                                      uint64_t deadline_ns)
{
    sp_timer_arm(&shard->timers, timer, deadline_ns);
}

static inline void sp_shard_timer_cancel(struct sp_shard *shard, struct sp_timer *timer)
{
    sp_timer_cancel(&shard->timers, timer);
}

/* True once this shard has seen a stop request. */
static inline bool sp_shard_stopping(const struct sp_shard *shard)
{
    return shard->stopping;
}

#endif /* SP_REACTOR_H */
