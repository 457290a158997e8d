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
