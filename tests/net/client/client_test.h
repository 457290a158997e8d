/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the client tests share: running a test on one shard, and a client
 * config from Kafka properties. Include after <cmocka.h>.
 */
#ifndef SP_TEST_CLIENT_TEST_H
#define SP_TEST_CLIENT_TEST_H

#include "sp_kafka_client.h"
#include "sp_runtime.h"

/* Runs `on_start` on one unpinned shard until the test stops the runtime. */
static inline void client_test_run(void (*on_start)(struct sp_shard *, void *), void *ctx)
{
    struct sp_runtime_config config;
    sp_runtime_config_default(&config);
    config.shard_count = 1;
    config.pin = false;
    config.memory_bytes = 1u << 20;
    config.on_start = on_start;
    config.ctx = ctx;
    config.drain_timeout_ns = 5 * SP_NSEC_PER_SEC;
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
}

static inline void client_test_closing(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_client *client = ctx;
    struct sp_shard *shard = client->shard;
    if (!sp_kafka_client_idle(client)) {
        sp_shard_timer_arm(shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    sp_kafka_client_deinit(client);
    sp_runtime_stop(shard->runtime);
}

/*
 * Ends a test's shard: closes `client` (its producers and consumers already
 * deinitialised), then, with `timer` (not armed), waits until it is idle,
 * deinitialises it and stops the runtime.
 */
static inline void client_test_finish(struct sp_kafka_client *client, struct sp_timer *timer)
{
    sp_kafka_client_close(client);
    sp_timer_init(timer, client_test_closing, client);
    sp_shard_timer_arm(client->shard, timer, sp_now_ns());
}

/* A validated config from NULL-terminated key, value pairs. */
static inline void client_test_config(struct sp_kafka_config *config, const char *const *pairs)
{
    char err[256];
    sp_kafka_config_init(config);
    for (unsigned i = 0; pairs[i] != NULL; i += 2)
        if (sp_kafka_config_set(config, pairs[i], pairs[i + 1], err, sizeof(err)) != 0)
            fail_msg("%s=%s: %s", pairs[i], pairs[i + 1], err);
    if (sp_kafka_config_validate(config, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
}

#endif /* SP_TEST_CLIENT_TEST_H */
