/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate demo: a real runtime workload on every core, until the dataflow
 * engine gives the demo a real job.
 *
 * Phase 1 (throughput): every shard sends messages in batches of 32 to every
 * other shard, round robin, for --seconds; a full ring is backpressure (the
 * sender yields and retries), never a drop. Receivers count what they get.
 * Phase 2 (latency): shard 0 plays ping-pong with each other shard in turn
 * for --seconds and records every round trip in a histogram.
 * With one core, both phases run shard 0 against itself.
 *
 * Per-shard figures are written only by their shard and read by the main
 * thread after every shard has joined.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "sp_log.h"
#include "sp_metrics.h"
#include "sp_runtime.h"

#define DEMO_BATCH 32u
#define DEMO_BATCHES_PER_TASK 16u
#define DEMO_SECONDS_DEFAULT 2.0

struct demo_shard {
    uint64_t sent;
    uint64_t received;
    uint64_t full_count;
    unsigned next_peer;
    struct sp_task task;
    struct sp_stop_hook hook;
} SP_CACHELINE_ALIGNED;

struct demo {
    struct sp_runtime rt;
    unsigned shard_count;
    uint64_t phase_ns;
    uint64_t flood_start_ns;
    uint64_t flood_deadline_ns;
    struct demo_shard *shards;
    /* Shard 0's. */
    unsigned flood_done_count;
    unsigned pong_peer;
    uint64_t peer_deadline_ns;
    uint64_t ping_ns;
    uint64_t round_trips;
    uint64_t pong_start_ns;
    uint64_t pong_end_ns;
    struct sp_task ping_retry;
    bool interrupted;
    struct sp_hist rtt;
};

static struct demo *demo_of(struct sp_shard *shard)
{
    return shard->runtime->config.ctx;
}

/* ---- Phase 1: all-to-all messages ---- */

static void on_data(struct sp_shard *shard, void *arg)
{
    struct demo *d = arg;
    d->shards[shard->id].received++;
}

static void start_ping_pong(struct sp_shard *shard, struct demo *d);

static void on_flood_done(struct sp_shard *shard, void *arg)
{
    struct demo *d = arg;
    SP_ASSERT(shard->id == 0);
    if (++d->flood_done_count == d->shard_count)
        start_ping_pong(shard, d);
}

static unsigned next_peer(struct demo *d, unsigned self)
{
    struct demo_shard *me = &d->shards[self];
    if (d->shard_count == 1)
        return 0;
    unsigned peer = me->next_peer;
    me->next_peer = (me->next_peer + 1) % d->shard_count;
    if (peer == self) {
        peer = me->next_peer;
        me->next_peer = (me->next_peer + 1) % d->shard_count;
    }
    return peer;
}

static void flood(struct sp_task *task, struct sp_shard *shard)
{
    struct demo *d = demo_of(shard);
    struct demo_shard *me = &d->shards[shard->id];
    if (sp_shard_stopping(shard))
        return;
    if (sp_now_ns() >= d->flood_deadline_ns) {
        if (sp_shard_send(shard, 0, on_flood_done, d) < 0)
            sp_shard_post(shard, task, flood); /* ring to shard 0 full: retry */
        return;
    }
    struct sp_msg msgs[DEMO_BATCH];
    for (unsigned i = 0; i < DEMO_BATCH; i++)
        msgs[i] = (struct sp_msg){.fn = on_data, .arg = d};
    for (unsigned b = 0; b < DEMO_BATCHES_PER_TASK; b++) {
        unsigned n = sp_shard_send_batch(shard, next_peer(d, shard->id), msgs, DEMO_BATCH);
        me->sent += n;
        if (n < DEMO_BATCH) {
            me->full_count++;
            break;
        }
    }
    sp_shard_post(shard, task, flood);
}

static void on_flood_begin(struct sp_shard *shard, void *arg)
{
    struct demo *d = arg;
    sp_shard_post(shard, &d->shards[shard->id].task, flood);
}

/* ---- Phase 2: ping-pong from shard 0 ---- */

static void on_pong(struct sp_shard *shard, void *arg);

static void on_ping(struct sp_shard *shard, void *arg)
{
    /* One message in flight per pair: the ring back cannot be full. */
    int ret = sp_shard_send(shard, 0, on_pong, arg);
    SP_ASSERT(ret == 0);
}

static void send_ping_task(struct sp_task *task, struct sp_shard *shard);

/* The ring may still hold the tail of phase 1's flood: retry until it takes. */
static void send_ping(struct sp_shard *shard, struct demo *d)
{
    d->ping_ns = sp_now_ns();
    if (sp_shard_send(shard, d->pong_peer, on_ping, d) < 0)
        sp_shard_post(shard, &d->ping_retry, send_ping_task);
}

static void send_ping_task(struct sp_task *task, struct sp_shard *shard)
{
    send_ping(shard, SP_CONTAINER_OF(task, struct demo, ping_retry));
}

static void finish(struct sp_shard *shard, struct demo *d)
{
    d->pong_end_ns = sp_now_ns();
    sp_runtime_stop(shard->runtime);
}

static void on_pong(struct sp_shard *shard, void *arg)
{
    struct demo *d = arg;
    uint64_t now = sp_now_ns();
    sp_hist_record(&d->rtt, now - d->ping_ns);
    d->round_trips++;
    if (sp_shard_stopping(shard)) {
        finish(shard, d);
        return;
    }
    if (now >= d->peer_deadline_ns) {
        if (d->pong_peer + 1 >= d->shard_count) {
            finish(shard, d);
            return;
        }
        d->pong_peer++;
        d->peer_deadline_ns = now + d->phase_ns / (d->shard_count - 1);
    }
    send_ping(shard, d);
}

static void start_ping_pong(struct sp_shard *shard, struct demo *d)
{
    if (sp_shard_stopping(shard)) {
        finish(shard, d);
        return;
    }
    d->pong_start_ns = sp_now_ns();
    d->pong_peer = d->shard_count > 1 ? 1 : 0;
    d->peer_deadline_ns =
        d->pong_start_ns + d->phase_ns / (d->shard_count > 1 ? d->shard_count - 1 : 1);
    send_ping(shard, d);
}

/* ---- Start, stop, report ---- */

static void on_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct demo *d = demo_of(shard);
    (void)hook;
    if (shard->id == 0 && d->pong_end_ns == 0)
        d->interrupted = true;
}

static void on_start(struct sp_shard *shard, void *ctx)
{
    struct demo *d = ctx;
    sp_shard_on_stop(shard, &d->shards[shard->id].hook, on_stop);
    if (shard->id != 0)
        return;
    d->flood_start_ns = sp_now_ns();
    d->flood_deadline_ns = d->flood_start_ns + d->phase_ns;
    for (unsigned s = 0; s < d->shard_count; s++) {
        int ret = sp_shard_send(shard, s, on_flood_begin, d);
        SP_ASSERT(ret == 0); /* the rings are empty at start */
    }
}

static void report(const struct demo *d)
{
    const struct sp_runtime *rt = &d->rt;
    uint64_t sent = 0, received = 0, full = 0;
    printf("phase 1: all-to-all messages in batches of %u for %.1f s\n", DEMO_BATCH,
           (double)d->phase_ns / 1e9);
    for (unsigned s = 0; s < d->shard_count; s++) {
        const struct demo_shard *sh = &d->shards[s];
        printf("  shard %-3u sent %12llu  received %12llu  ring full %llu times\n", s,
               (unsigned long long)sh->sent, (unsigned long long)sh->received,
               (unsigned long long)sh->full_count);
        sent += sh->sent;
        received += sh->received;
        full += sh->full_count;
    }
    double seconds = (double)d->phase_ns / 1e9;
    printf("  total: %llu messages delivered of %llu sent, %.1f M/s (%.1f M/s per shard); "
           "backpressure from a full ring %llu times\n",
           (unsigned long long)received, (unsigned long long)sent, (double)received / seconds / 1e6,
           (double)received / seconds / 1e6 / d->shard_count, (unsigned long long)full);

    printf("phase 2: ping-pong between shard 0 and %s for %.1f s\n",
           d->shard_count > 1 ? "each other shard" : "itself", (double)d->phase_ns / 1e9);
    printf("  %llu round trips: p50 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.2f us\n",
           (unsigned long long)d->round_trips, (double)sp_hist_quantile(&d->rtt, 0.5) / 1e3,
           (double)sp_hist_quantile(&d->rtt, 0.99) / 1e3,
           (double)sp_hist_quantile(&d->rtt, 0.999) / 1e3, (double)atomic_load(&d->rtt.max) / 1e3);
    printf("runtime: %llu loop turns, %llu sleeps, %llu wake-ups sent, %llu messages in\n",
           (unsigned long long)sp_metrics_counter(&rt->metrics, SP_RT_METRIC_LOOPS),
           (unsigned long long)sp_metrics_counter(&rt->metrics, SP_RT_METRIC_SLEEPS),
           (unsigned long long)sp_metrics_counter(&rt->metrics, SP_RT_METRIC_WAKES),
           (unsigned long long)sp_metrics_counter(&rt->metrics, SP_RT_METRIC_MSG_IN));
    if (d->interrupted)
        printf("interrupted: the figures above cover the time before the stop\n");
}

int spate_demo(const struct spate_cli *cli)
{
    struct sp_runtime_config config;
    sp_runtime_config_default(&config);
    spate_cli_config(cli, &config);
    config.handle_signals = true;
    config.on_start = on_start;

    struct demo *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return 1;
    config.ctx = d;
    d->shard_count = config.shard_count;
    d->phase_ns = (uint64_t)((cli->seconds > 0 ? cli->seconds : DEMO_SECONDS_DEFAULT) * 1e9);
    d->shards = aligned_alloc(SP_CACHELINE_BYTES, d->shard_count * sizeof(*d->shards));
    if (d->shards == NULL) {
        free(d);
        return 1;
    }
    memset(d->shards, 0, d->shard_count * sizeof(*d->shards));

    int ret = sp_runtime_init(&d->rt, &config);
    if (ret < 0) {
        fprintf(stderr, "spate: demo: cannot start the runtime: %s\n", strerror(-ret));
        free(d->shards);
        free(d);
        return ret == -EINVAL ? 2 : 1;
    }
    printf("spate demo: runtime workload on %u shard%s (%s, %s wake-ups), %zu bytes of managed "
           "memory each\n",
           d->shard_count, d->shard_count == 1 ? "" : "s",
           config.poll ? "polling" : "sleeping in io_uring when idle",
           d->rt.has_msg_ring ? "IORING_OP_MSG_RING" : "eventfd", config.memory_bytes);
    fflush(stdout);
    ret = sp_runtime_run(&d->rt);
    if (ret == 0 || ret == -ETIMEDOUT)
        report(d);
    if (ret < 0)
        fprintf(stderr, "spate: demo: %s\n", strerror(-ret));
    sp_runtime_deinit(&d->rt);
    free(d->shards);
    free(d);
    return ret == 0 ? 0 : 1;
}
