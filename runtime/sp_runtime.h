/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime: starts one shard per configured core, pinned, connects every
 * ordered pair of shards with an SPSC ring, runs until stopped, and shuts
 * down in order. It is the only place that creates threads.
 *
 * Lifecycle: sp_runtime_init (validate config, probe io_uring) ->
 * sp_runtime_run (start shards, call on_start on each, block until every
 * shard has drained) -> sp_runtime_deinit. A stop comes from
 * sp_runtime_stop (any thread, async-signal-safe) or, with handle_signals,
 * from SIGINT/SIGTERM: every shard runs its stop hooks, cancels its pending
 * I/O, drains its queues and exits. A second signal exits the process at
 * once with status 128 + signal number.
 */
#ifndef SP_RUNTIME_H
#define SP_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_metrics.h"
#include "sp_reactor.h"

struct sp_runtime_config {
    unsigned shard_count;      /* 1..online CPUs (with pin), default all */
    bool pin;                  /* pin shard i to the i-th allowed CPU */
    bool poll;                 /* spin instead of sleeping in the ring */
    bool handle_signals;       /* SIGINT/SIGTERM stop the runtime */
    bool force_eventfd_wake;   /* never use IORING_OP_MSG_RING (tests) */
    size_t memory_bytes;       /* managed memory per shard */
    uint32_t segment_bytes;    /* managed-memory segment size */
    uint32_t ring_capacity;    /* messages per SPSC ring (power of two) */
    uint32_t uring_entries;    /* io_uring submission queue size */
    uint64_t task_quota_ns;    /* run tasks this long before polling I/O */
    uint64_t idle_spin_ns;     /* keep polling this long after the last work
                                  before sleeping (0: sleep at once) */
    uint64_t drain_timeout_ns; /* longest a stopping shard waits to drain */
    unsigned timer_tick_shift; /* timer ticks of 2^shift ns */
    uint32_t metrics_max;      /* metric declarations the registry holds */
    /* Called on every shard's thread once all shards are up. */
    void (*on_start)(struct sp_shard *shard, void *ctx);
    /* Called on every shard's thread after all shards have drained (no
     * message, task or I/O is left anywhere), before the shard is torn
     * down: where work returns the managed memory it still holds. */
    void (*on_finish)(struct sp_shard *shard, void *ctx);
    void *ctx;
};

/* Fills `config` with the defaults (all online CPUs, pinned, sleeping). */
void sp_runtime_config_default(struct sp_runtime_config *config);

/* Number of CPUs this process may run on (its affinity mask). */
unsigned sp_runtime_cpu_count(void);

struct sp_runtime {
    struct sp_runtime_config config;
    /* [shard_count]; published by each shard once it is set up, freed by
     * the main thread after all have joined, so any thread may read them. */
    struct sp_shard *_Atomic *shards;
    struct sp_ring *rings; /* [from * shard_count + to] */
    pthread_t *threads;
    int *cpus; /* CPU of each shard, -1 when not pinned */
    bool has_msg_ring;
    _Atomic bool stop_requested;
    _Atomic bool start_failed;
    _Atomic bool drain_timed_out;
    _Atomic unsigned shards_running;
    _Atomic int start_error;
    pthread_barrier_t started;
    pthread_barrier_t finished;
    struct sp_metrics metrics;
};

/*
 * Validates `config` and prepares the runtime. Returns 0; -EINVAL for a bad
 * setting (shard_count 0 or above the CPUs it may pin to, a capacity or
 * segment size that is not a power of two); -ENOSYS when io_uring is not
 * available or older than kernel 5.19; -ENOMEM.
 */
SP_MUST_CHECK int sp_runtime_init(struct sp_runtime *rt, const struct sp_runtime_config *config);

/* The registry for declaring metrics before sp_runtime_run. */
static inline struct sp_metrics *sp_runtime_metrics(struct sp_runtime *rt)
{
    return &rt->metrics;
}

/*
 * Starts the shards and blocks until all have stopped. Returns 0 when every
 * shard drained, -ETIMEDOUT when one hit drain_timeout_ns, or the -errno of
 * a shard that failed to start (io_uring, memory, pinning).
 */
SP_MUST_CHECK int sp_runtime_run(struct sp_runtime *rt);

/*
 * Requests a stop. Any thread, any time until sp_runtime_deinit,
 * async-signal-safe; idempotent.
 */
void sp_runtime_stop(struct sp_runtime *rt);

/* Frees everything; the runtime must not be running. */
void sp_runtime_deinit(struct sp_runtime *rt);

/* Metric ids of the runtime's own counters (valid after sp_runtime_init). */
enum sp_runtime_metric {
    SP_RT_METRIC_LOOPS,
    SP_RT_METRIC_TASKS,
    SP_RT_METRIC_MSG_IN,
    SP_RT_METRIC_MSG_OUT,
    SP_RT_METRIC_MSG_FULL,
    SP_RT_METRIC_WAKES,
    SP_RT_METRIC_SLEEPS,
    SP_RT_METRIC_CQES,
    SP_RT_METRIC_COUNT,
};

#endif /* SP_RUNTIME_H */
