/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cross-shard messaging benchmarks:
 *  - ring/spsc: the bare SPSC ring between two threads pinned to two CPUs,
 *    the producer pushing in batches of the argument, the consumer popping.
 *  - shard/send32: messages through the runtime (sp_shard_send_batch, the
 *    wake-up check, the reactor's drain and dispatch), two polling shards.
 *  - shard/round_trip_{poll,idle_spin,sleep}: one message to the other shard
 *    and its answer back: with --poll; by default (sleeping after 50 us of
 *    idle polling); and sleeping at once, so that every message is a wake-up
 *    through MSG_RING. p50/p99/p99.9 counters.
 *  - baseline/eventfd_round_trip: the same round trip between two pinned
 *    threads that block in read(2) on eventfds, the kernel's own wake-up
 *    path, so the sleeping figure can be read as a ratio on any machine.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_log.h"
#include "sp_metrics.h"
#include "sp_ring.h"
#include "sp_runtime.h"

/* ---- Bare ring between two pinned threads ---- */

struct spsc_bench {
    struct sp_ring ring;
    unsigned batch;
    pthread_t consumer;
    cpu_set_t saved_affinity;
    _Atomic uint64_t consumed SP_CACHELINE_ALIGNED;
    _Atomic bool quit;
};

static void *spsc_consumer(void *arg)
{
    struct spsc_bench *b = arg;
    (void)sp_bench_pin(1);
    struct sp_msg out[64];
    uint64_t consumed = 0;
    while (!atomic_load_explicit(&b->quit, memory_order_relaxed)) {
        unsigned n = sp_ring_pop(&b->ring, out, b->batch);
        if (n == 0)
            continue;
        consumed += n;
        atomic_store_explicit(&b->consumed, consumed, memory_order_release);
    }
    return NULL;
}

static void *spsc_setup(int64_t batch)
{
    struct spsc_bench *b = aligned_alloc(SP_CACHELINE_BYTES, sizeof(*b));
    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->batch = (unsigned)batch;
    if (sp_ring_init(&b->ring, 4096, 0) < 0) {
        free(b);
        return NULL;
    }
    sched_getaffinity(0, sizeof(b->saved_affinity), &b->saved_affinity);
    (void)sp_bench_pin(0);
    if (pthread_create(&b->consumer, NULL, spsc_consumer, b) != 0) {
        sp_ring_deinit(&b->ring);
        free(b);
        return NULL;
    }
    return b;
}

static double spsc_run(void *state, uint64_t iterations)
{
    struct spsc_bench *b = state;
    struct sp_msg batch[64];
    for (unsigned i = 0; i < 64; i++)
        batch[i] = (struct sp_msg){.fn = NULL, .arg = (void *)(uintptr_t)i};
    uint64_t start = atomic_load_explicit(&b->consumed, memory_order_acquire);
    uint64_t pushed = 0;
    while (pushed < iterations) {
        unsigned want = (unsigned)SP_MIN((uint64_t)b->batch, iterations - pushed);
        pushed += sp_ring_push(&b->ring, batch, want);
    }
    while (atomic_load_explicit(&b->consumed, memory_order_acquire) - start < iterations)
        ;
    return 0;
}

static void spsc_teardown(void *state)
{
    struct spsc_bench *b = state;
    atomic_store(&b->quit, true);
    pthread_join(b->consumer, NULL);
    sched_setaffinity(0, sizeof(b->saved_affinity), &b->saved_affinity);
    sp_ring_deinit(&b->ring);
    free(b);
}

/* ---- Through the runtime ---- */

#define SHARD_SEND_BATCH 32u
#define SHARD_SEND_TURN_BATCHES 64u

struct shard_bench {
    struct sp_runtime rt;
    bool poll;
    bool no_idle_spin;
    uint64_t total;
    unsigned peer;
    /* shard 0's */
    uint64_t sent;
    uint64_t start_ns;
    uint64_t ping_ns;
    struct sp_task task;
    struct sp_hist hist;
    /* the peer's */
    uint64_t received SP_CACHELINE_ALIGNED;
    uint64_t end_ns;
};

static struct shard_bench *shard_bench_new(bool poll, uint64_t total)
{
    struct shard_bench *b = aligned_alloc(SP_CACHELINE_BYTES, sizeof(*b));
    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->poll = poll;
    b->total = total;
    return b;
}

static double shard_bench_run(struct shard_bench *b, void (*on_start)(struct sp_shard *, void *))
{
    struct sp_runtime_config config;
    sp_runtime_config_default(&config);
    config.shard_count = SP_MIN(2u, sp_runtime_cpu_count());
    config.poll = b->poll;
    if (b->no_idle_spin)
        config.idle_spin_ns = 0;
    config.memory_bytes = 1u << 20;
    config.on_start = on_start;
    config.ctx = b;
    b->peer = config.shard_count - 1;
    b->sent = b->received = 0;
    b->start_ns = b->end_ns = 0;
    int ret = sp_runtime_init(&b->rt, &config);
    if (ret == 0) {
        ret = sp_runtime_run(&b->rt);
        sp_runtime_deinit(&b->rt);
    }
    if (ret < 0 || b->end_ns <= b->start_ns) {
        sp_error("benchmark runtime: %s", strerror(ret < 0 ? -ret : EIO));
        return -1; /* the shim reports the case as failed */
    }
    return (double)(b->end_ns - b->start_ns) / 1e9;
}

static void on_item(struct sp_shard *shard, void *arg)
{
    struct shard_bench *b = arg;
    if (++b->received == b->total) {
        b->end_ns = sp_now_ns();
        sp_runtime_stop(shard->runtime);
    }
}

static void flood(struct sp_task *task, struct sp_shard *shard)
{
    struct shard_bench *b = SP_CONTAINER_OF(task, struct shard_bench, task);
    struct sp_msg msgs[SHARD_SEND_BATCH];
    for (unsigned i = 0; i < SHARD_SEND_BATCH; i++)
        msgs[i] = (struct sp_msg){.fn = on_item, .arg = b};
    for (unsigned turn = 0; turn < SHARD_SEND_TURN_BATCHES && b->sent < b->total; turn++) {
        unsigned want = (unsigned)SP_MIN((uint64_t)SHARD_SEND_BATCH, b->total - b->sent);
        unsigned n = sp_shard_send_batch(shard, b->peer, msgs, want);
        b->sent += n;
        if (n < want)
            break; /* ring full: let the loop turn */
    }
    if (b->sent < b->total && !sp_shard_stopping(shard))
        sp_shard_post(shard, task, flood);
}

static void flood_start(struct sp_shard *shard, void *ctx)
{
    struct shard_bench *b = ctx;
    if (shard->id != 0)
        return;
    b->start_ns = sp_now_ns();
    sp_shard_post(shard, &b->task, flood);
}

static void *send_setup(int64_t arg)
{
    (void)arg;
    return shard_bench_new(true, 0);
}

static double send_run(void *state, uint64_t iterations)
{
    struct shard_bench *b = state;
    b->total = iterations;
    return shard_bench_run(b, flood_start);
}

static void on_pong(struct sp_shard *shard, void *arg);

static void send_ping(struct sp_shard *shard, struct shard_bench *b);

static void on_ping(struct sp_shard *shard, void *arg)
{
    int ret = sp_shard_send(shard, 0, on_pong, arg);
    SP_ASSERT(ret == 0); /* one message in flight: the ring cannot be full */
}

static void send_ping(struct sp_shard *shard, struct shard_bench *b)
{
    b->ping_ns = sp_now_ns();
    int ret = sp_shard_send(shard, b->peer, on_ping, b);
    SP_ASSERT(ret == 0);
}

static void on_pong(struct sp_shard *shard, void *arg)
{
    struct shard_bench *b = arg;
    uint64_t now = sp_now_ns();
    sp_hist_record(&b->hist, now - b->ping_ns);
    if (++b->sent == b->total || sp_shard_stopping(shard)) {
        b->end_ns = now;
        sp_runtime_stop(shard->runtime);
        return;
    }
    send_ping(shard, b);
}

static void ping_start(struct sp_shard *shard, void *ctx)
{
    struct shard_bench *b = ctx;
    if (shard->id != 0)
        return;
    b->start_ns = sp_now_ns();
    send_ping(shard, b);
}

static void *rtt_setup_poll(int64_t arg)
{
    (void)arg;
    return shard_bench_new(true, 0);
}

static void *rtt_setup_spin(int64_t arg)
{
    (void)arg;
    return shard_bench_new(false, 0);
}

static void *rtt_setup_sleep(int64_t arg)
{
    (void)arg;
    struct shard_bench *b = shard_bench_new(false, 0);
    if (b != NULL)
        b->no_idle_spin = true;
    return b;
}

static double rtt_run(void *state, uint64_t iterations)
{
    struct shard_bench *b = state;
    b->total = iterations;
    sp_hist_reset(&b->hist);
    return shard_bench_run(b, ping_start);
}

static unsigned rtt_counters(void *state, struct sp_bench_counter *out)
{
    struct shard_bench *b = state;
    out[0] = (struct sp_bench_counter){"p50_ns", (double)sp_hist_quantile(&b->hist, 0.50)};
    out[1] = (struct sp_bench_counter){"p99_ns", (double)sp_hist_quantile(&b->hist, 0.99)};
    out[2] = (struct sp_bench_counter){"p999_ns", (double)sp_hist_quantile(&b->hist, 0.999)};
    return 3;
}

static void shard_teardown(void *state)
{
    free(state);
}

/* ---- Baseline: blocking eventfd ping-pong between two pinned threads ---- */

struct efd_bench {
    int ping_fd;
    int pong_fd;
    uint64_t total;
    pthread_t peer;
    cpu_set_t saved_affinity;
    struct sp_hist hist;
};

static void *efd_peer(void *arg)
{
    struct efd_bench *b = arg;
    (void)sp_bench_pin(1);
    uint64_t v;
    for (;;) {
        if (read(b->ping_fd, &v, sizeof(v)) != sizeof(v))
            return NULL;
        if (v == UINT64_MAX - 1)
            return NULL; /* the quit value */
        if (write(b->pong_fd, &v, sizeof(v)) != sizeof(v))
            return NULL;
    }
}

static void *efd_setup(int64_t arg)
{
    (void)arg;
    struct efd_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->ping_fd = eventfd(0, EFD_CLOEXEC);
    b->pong_fd = eventfd(0, EFD_CLOEXEC);
    sched_getaffinity(0, sizeof(b->saved_affinity), &b->saved_affinity);
    (void)sp_bench_pin(0);
    if (b->ping_fd < 0 || b->pong_fd < 0 || pthread_create(&b->peer, NULL, efd_peer, b) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

static double efd_run(void *state, uint64_t iterations)
{
    struct efd_bench *b = state;
    sp_hist_reset(&b->hist);
    uint64_t start = sp_now_ns();
    for (uint64_t i = 0; i < iterations; i++) {
        uint64_t t0 = sp_now_ns(), one = 1, v;
        if (write(b->ping_fd, &one, sizeof(one)) != sizeof(one) ||
            read(b->pong_fd, &v, sizeof(v)) != sizeof(v))
            return 0;
        sp_hist_record(&b->hist, sp_now_ns() - t0);
    }
    return (double)(sp_now_ns() - start) / 1e9;
}

static unsigned efd_counters(void *state, struct sp_bench_counter *out)
{
    struct efd_bench *b = state;
    out[0] = (struct sp_bench_counter){"p50_ns", (double)sp_hist_quantile(&b->hist, 0.50)};
    out[1] = (struct sp_bench_counter){"p99_ns", (double)sp_hist_quantile(&b->hist, 0.99)};
    out[2] = (struct sp_bench_counter){"p999_ns", (double)sp_hist_quantile(&b->hist, 0.999)};
    return 3;
}

static void efd_teardown(void *state)
{
    struct efd_bench *b = state;
    uint64_t quit = UINT64_MAX - 1;
    if (write(b->ping_fd, &quit, sizeof(quit)) == sizeof(quit))
        pthread_join(b->peer, NULL);
    sched_setaffinity(0, sizeof(b->saved_affinity), &b->saved_affinity);
    close(b->ping_fd);
    close(b->pong_fd);
    free(b);
}

const struct sp_bench_case sp_bench_ring_cases[] = {
    {.name = "ring/spsc_batch",
     .args = {1, 8, 32},
     .run_batch = 1u << 16,
     .setup = spsc_setup,
     .run = spsc_run,
     .teardown = spsc_teardown},
    {.name = "shard/send32_poll",
     .fixed_iterations = 20u << 20,
     .manual_time = 1,
     .setup = send_setup,
     .run = send_run,
     .teardown = shard_teardown},
    {.name = "shard/round_trip_poll",
     .fixed_iterations = 100000,
     .manual_time = 1,
     .setup = rtt_setup_poll,
     .run = rtt_run,
     .counters = rtt_counters,
     .teardown = shard_teardown},
    {.name = "shard/round_trip_idle_spin",
     .fixed_iterations = 100000,
     .manual_time = 1,
     .setup = rtt_setup_spin,
     .run = rtt_run,
     .counters = rtt_counters,
     .teardown = shard_teardown},
    {.name = "shard/round_trip_sleep",
     .fixed_iterations = 20000,
     .manual_time = 1,
     .setup = rtt_setup_sleep,
     .run = rtt_run,
     .counters = rtt_counters,
     .teardown = shard_teardown},
    {.name = "baseline/eventfd_round_trip",
     .fixed_iterations = 20000,
     .manual_time = 1,
     .setup = efd_setup,
     .run = efd_run,
     .counters = efd_counters,
     .teardown = efd_teardown},
    {.name = NULL},
};
