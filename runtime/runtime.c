/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shard threads, pinning, the ring mesh, start-up and shutdown (see
 * sp_runtime.h).
 *
 * Start-up is two-phase so that no shard talks to another before that one
 * exists: every shard initialises itself on its own thread (first-touch
 * memory, its own io_uring), then all meet at a barrier with the main thread,
 * and only then run on_start. Shutdown is two-phase for the same reason: a
 * shard that has drained waits at a second barrier until all have, because
 * others may still read its `sleeping` flag and ring fd when they send.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reactor_int.h"
#include "sp_log.h"

#define SP_SIGNAL_POLL_NS (50 * SP_NSEC_PER_MSEC)
/*
 * Polling this long after the last work before sleeping, as Seastar's
 * reactor does (its default is 200 us). A sleeping vCPU of the VM in
 * docs/benchmarks.md takes about 35 us to wake, so without it every message
 * between otherwise idle shards costs that; 50 us of spinning covers the
 * gaps of a request-response exchange while keeping an idle shard's CPU cost
 * small.
 */
#define SP_IDLE_SPIN_NS_DEFAULT (50 * SP_NSEC_PER_USEC)

static const char *const runtime_metric_names[SP_RT_METRIC_COUNT] = {
    [SP_RT_METRIC_LOOPS] = "runtime.loops",
    [SP_RT_METRIC_TASKS] = "runtime.tasks",
    [SP_RT_METRIC_MSG_IN] = "runtime.messages_in",
    [SP_RT_METRIC_MSG_OUT] = "runtime.messages_out",
    [SP_RT_METRIC_MSG_FULL] = "runtime.messages_ring_full",
    [SP_RT_METRIC_WAKES] = "runtime.wakeups_sent",
    [SP_RT_METRIC_SLEEPS] = "runtime.sleeps",
    [SP_RT_METRIC_CQES] = "runtime.io_completions",
};

void sp_runtime_config_default(struct sp_runtime_config *config)
{
    SP_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    config->shard_count = sp_runtime_cpu_count();
    config->pin = true;
    config->memory_bytes = 64u << 20;
    config->segment_bytes = SP_SEGMENT_BYTES_DEFAULT;
    config->ring_capacity = 4096;
    config->uring_entries = 256;
    config->task_quota_ns = 500 * SP_NSEC_PER_USEC;
    config->idle_spin_ns = SP_IDLE_SPIN_NS_DEFAULT;
    config->drain_timeout_ns = 5 * SP_NSEC_PER_SEC;
    config->timer_tick_shift = 10; /* 1.024 us */
    config->metrics_max = 256;
}

unsigned sp_runtime_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? (unsigned)count : 1;
}

/* ---- Init ---- */

static int config_check(const struct sp_runtime_config *config)
{
    if (config->shard_count == 0 || config->shard_count > SP_SHARDS_MAX)
        return -EINVAL;
    if (config->pin && config->shard_count > sp_runtime_cpu_count())
        return -EINVAL;
    if (!sp_is_pow2(config->ring_capacity) || config->ring_capacity > SP_RING_CAPACITY_MAX)
        return -EINVAL;
    if (!sp_is_pow2(config->segment_bytes) || config->segment_bytes < SP_SEGMENT_BYTES_MIN)
        return -EINVAL;
    if (config->uring_entries < 8 || config->uring_entries > 32768)
        return -EINVAL;
    if (config->task_quota_ns == 0 || config->drain_timeout_ns == 0)
        return -EINVAL;
    if (config->idle_spin_ns > SP_NSEC_PER_SEC)
        return -EINVAL;
    if (config->timer_tick_shift < SP_TIMER_TICK_SHIFT_MIN ||
        config->timer_tick_shift > SP_TIMER_TICK_SHIFT_MAX)
        return -EINVAL;
    if (config->metrics_max < SP_RT_METRIC_COUNT)
        return -EINVAL;
    return 0;
}

/*
 * Is io_uring usable here, and does it have IORING_OP_MSG_RING? The runtime
 * needs kernel 5.19: waits with a timeout argument (IORING_FEAT_EXT_ARG,
 * 5.11) and IORING_ASYNC_CANCEL_ANY at stop (5.19, the release that also
 * brought IORING_OP_SOCKET, which is what is probed for it).
 */
static int probe_uring(bool *has_msg_ring)
{
    struct io_uring ring;
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    int ret = io_uring_queue_init_params(8, &ring, &params);
    if (ret < 0)
        return -ENOSYS;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    bool new_enough = probe != NULL && (params.features & IORING_FEAT_EXT_ARG) != 0 &&
                      io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    if (!new_enough) {
        io_uring_free_probe(probe);
        io_uring_queue_exit(&ring);
        return -ENOSYS;
    }
    *has_msg_ring = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return 0;
}

static int cpus_assign(struct sp_runtime *rt)
{
    unsigned n = rt->config.shard_count;
    rt->cpus = calloc(n, sizeof(int));
    if (rt->cpus == NULL)
        return -ENOMEM;
    cpu_set_t set;
    bool have_set = sched_getaffinity(0, sizeof(set), &set) == 0;
    unsigned next = 0;
    for (unsigned i = 0; i < n; i++) {
        rt->cpus[i] = -1;
        if (!rt->config.pin || !have_set)
            continue;
        while (next < CPU_SETSIZE && !CPU_ISSET(next, &set))
            next++;
        if (next < CPU_SETSIZE)
            rt->cpus[i] = (int)next++;
    }
    return 0;
}

static int rings_init(struct sp_runtime *rt)
{
    unsigned n = rt->config.shard_count;
    rt->rings = aligned_alloc(SP_CACHELINE_BYTES, (size_t)n * n * sizeof(struct sp_ring));
    if (rt->rings == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < n * n; i++) {
        int ret = sp_ring_init(&rt->rings[i], rt->config.ring_capacity, 0);
        if (ret < 0) {
            for (unsigned j = 0; j < i; j++)
                sp_ring_deinit(&rt->rings[j]);
            free(rt->rings);
            rt->rings = NULL;
            return ret;
        }
    }
    return 0;
}

int sp_runtime_init(struct sp_runtime *rt, const struct sp_runtime_config *config)
{
    SP_ASSERT(rt != NULL);
    SP_ASSERT(config != NULL);
    memset(rt, 0, sizeof(*rt));
    int ret = config_check(config);
    if (ret < 0)
        return ret;
    rt->config = *config;
    ret = probe_uring(&rt->has_msg_ring);
    if (ret < 0)
        return ret;
    if (config->force_eventfd_wake)
        rt->has_msg_ring = false;

    ret = sp_metrics_init(&rt->metrics, config->metrics_max);
    if (ret < 0)
        return ret;
    for (int i = 0; i < SP_RT_METRIC_COUNT; i++) {
        int id = sp_metrics_register(&rt->metrics, runtime_metric_names[i], SP_METRIC_COUNTER);
        SP_ASSERT(id == i);
    }
    unsigned n = config->shard_count;
    rt->shards = calloc(n, sizeof(*rt->shards));
    rt->threads = calloc(n, sizeof(*rt->threads));
    if (rt->shards == NULL || rt->threads == NULL || cpus_assign(rt) < 0 || rings_init(rt) < 0) {
        sp_runtime_deinit(rt);
        return -ENOMEM;
    }
    return 0;
}

void sp_runtime_deinit(struct sp_runtime *rt)
{
    SP_ASSERT(rt != NULL);
    SP_ASSERT(atomic_load(&rt->shards_running) == 0);
    /* The shards' structs and eventfds live until now: sp_runtime_stop may
     * be called from any thread until the runtime is deinitialised. */
    for (unsigned i = 0; rt->shards != NULL && i < rt->config.shard_count; i++) {
        struct sp_shard *shard = atomic_exchange(&rt->shards[i], NULL);
        if (shard != NULL && shard->event_fd >= 0)
            close(shard->event_fd);
        free(shard);
    }
    if (rt->rings != NULL) {
        for (unsigned i = 0; i < rt->config.shard_count * rt->config.shard_count; i++)
            sp_ring_deinit(&rt->rings[i]);
        free(rt->rings);
    }
    free(rt->shards);
    free(rt->threads);
    free(rt->cpus);
    sp_metrics_deinit(&rt->metrics);
    memset(rt, 0, sizeof(*rt));
}

/* ---- Shard threads ---- */

struct shard_start {
    struct sp_runtime *rt;
    unsigned id;
};

static void shard_pin(struct sp_runtime *rt, unsigned id)
{
    if (rt->cpus[id] < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(rt->cpus[id], &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (err != 0)
        sp_warn("cannot pin to CPU %d: %s", rt->cpus[id], strerror(err));
}

static void *shard_main(void *arg)
{
    struct shard_start start = *(struct shard_start *)arg;
    free(arg);
    struct sp_runtime *rt = start.rt;
    shard_pin(rt, start.id);

    struct sp_shard *shard = aligned_alloc(SP_CACHELINE_BYTES, sizeof(*shard));
    int ret = shard != NULL ? sp_shard_init(shard, rt, start.id) : -ENOMEM;
    if (ret < 0) {
        sp_error("shard %u failed to start: %s", start.id, strerror(-ret));
        atomic_store(&rt->start_error, ret); /* any failing shard's error will do */
        atomic_store(&rt->start_failed, true);
    }
    atomic_store_explicit(&rt->shards[start.id], shard, memory_order_release);
    pthread_barrier_wait(&rt->started);

    if (!atomic_load(&rt->start_failed)) {
        if (rt->config.on_start != NULL)
            rt->config.on_start(shard, rt->config.ctx);
        sp_shard_run(shard);
    }
    pthread_barrier_wait(&rt->finished);
    if (shard != NULL && !atomic_load(&rt->start_failed) && rt->config.on_finish != NULL)
        rt->config.on_finish(shard, rt->config.ctx);
    if (shard != NULL) {
        if (shard->drain_timed_out)
            atomic_store(&rt->drain_timed_out, true);
        sp_shard_deinit(shard); /* the struct and its eventfd stay for sp_runtime_stop */
    }
    atomic_fetch_sub(&rt->shards_running, 1);
    return NULL;
}

/* ---- Run and stop ---- */

void sp_runtime_stop(struct sp_runtime *rt)
{
    atomic_store(&rt->stop_requested, true);
    /* Shards that have not published themselves yet see the flag at start. */
    for (unsigned i = 0; i < rt->config.shard_count; i++) {
        struct sp_shard *shard = atomic_load_explicit(&rt->shards[i], memory_order_acquire);
        if (shard != NULL && shard->event_fd >= 0)
            sp_shard_wake_external(shard);
    }
}

static void wait_with_signals(struct sp_runtime *rt)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    bool stopping = false;
    struct timespec poll_ts = {.tv_sec = 0, .tv_nsec = (long)SP_SIGNAL_POLL_NS};
    while (atomic_load(&rt->shards_running) > 0) {
        int sig = sigtimedwait(&set, NULL, &poll_ts);
        if (sig <= 0)
            continue;
        if (stopping) {
            sp_warn("second %s: exiting without draining", strsignal(sig));
            _exit(128 + sig);
        }
        sp_info("%s: stopping, draining shards (again to force)", strsignal(sig));
        stopping = true;
        sp_runtime_stop(rt);
    }
}

int sp_runtime_run(struct sp_runtime *rt)
{
    SP_ASSERT(rt != NULL);
    unsigned n = rt->config.shard_count;
    int ret = sp_metrics_start(&rt->metrics, n);
    if (ret < 0)
        return ret;
    if (pthread_barrier_init(&rt->started, NULL, n + 1) != 0 ||
        pthread_barrier_init(&rt->finished, NULL, n) != 0)
        return -ENOMEM;

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    if (rt->config.handle_signals)
        pthread_sigmask(SIG_BLOCK, &block, &old);
    signal(SIGPIPE, SIG_IGN);

    atomic_store(&rt->shards_running, n);
    unsigned created = 0;
    for (; created < n; created++) {
        struct shard_start *start = malloc(sizeof(*start));
        int err = start ? 0 : ENOMEM;
        if (start != NULL) {
            *start = (struct shard_start){.rt = rt, .id = created};
            err = pthread_create(&rt->threads[created], NULL, shard_main, start);
            if (err != 0)
                free(start);
        }
        if (err != 0) {
            sp_error("cannot start shard thread %u: %s", created, strerror(err));
            _exit(1); /* the barriers count on every thread; nothing sane is left */
        }
    }
    pthread_barrier_wait(&rt->started);
    if (!atomic_load(&rt->start_failed)) {
        sp_debug("%u shards started (%s wake-ups, %s)", n,
                 rt->has_msg_ring ? "MSG_RING" : "eventfd",
                 rt->config.poll ? "polling" : "sleeping");
        if (rt->config.handle_signals)
            wait_with_signals(rt);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(rt->threads[i], NULL);
    if (rt->config.handle_signals)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_barrier_destroy(&rt->started);
    pthread_barrier_destroy(&rt->finished);

    if (atomic_load(&rt->start_failed))
        return atomic_load(&rt->start_error) < 0 ? atomic_load(&rt->start_error) : -EIO;
    return atomic_load(&rt->drain_timed_out) ? -ETIMEDOUT : 0;
}
