/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the tests that start a real runtime: a small configuration
 * (unpinned, so a test may run more shards than the machine has CPUs, and
 * little memory), and the skip rule: when io_uring is not available on this
 * machine the test exits 77 so meson reports SKIP rather than a pass.
 */
#ifndef SP_RT_TEST_H
#define SP_RT_TEST_H

#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>

#include "sp_runtime.h"

static inline void rt_test_config(struct sp_runtime_config *config, unsigned shards,
                                  void (*on_start)(struct sp_shard *, void *), void *ctx)
{
    sp_runtime_config_default(config);
    config->shard_count = shards;
    config->pin = false;
    config->memory_bytes = 1u << 20;
    config->drain_timeout_ns = 10 * SP_NSEC_PER_SEC;
    config->on_start = on_start;
    config->ctx = ctx;
}

/* Exits 77 (skip) when this machine has no usable io_uring. */
static inline void rt_test_require_uring(void)
{
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0) {
        fprintf(stderr, "io_uring is not available here: skipping\n");
        exit(77);
    }
    io_uring_queue_exit(&ring);
}

#endif /* SP_RT_TEST_H */
