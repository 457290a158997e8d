/* SPDX-License-Identifier: Apache-2.0 */
/* The commands of the `spate` program, one file each. Each returns an exit status. */
#ifndef SPATE_COMMANDS_H
#define SPATE_COMMANDS_H

#include "cli.h"

/* spate demo: cross-shard throughput and ping-pong on every core. */
int spate_demo(const struct spate_cli *cli);

/* spate produce / consume / topic: the Kafka commands (cmd_kafka.c). */
int spate_produce(const struct spate_cli *cli);
int spate_consume(const struct spate_cli *cli);
int spate_topic(const struct spate_cli *cli);

/* spate broker [--listen HOST:PORT] [--data DIR] ...: the Kafka-compatible endpoint. */
int spate_broker(const struct spate_cli *cli);

/* spate run JOB [--param k=v]...: a built-in job (cmd_run.c). */
int spate_run(const struct spate_cli *cli);

/* spate bench micro: the Google Benchmark microbenchmarks. */
int spate_bench_micro(const struct spate_cli *cli);

/* spate bench nexmark --query qN --events N ...: a Nexmark query (cmd_nexmark.c). */
int spate_bench_nexmark(const struct spate_cli *cli);

/* spate checkpoint list|inspect URL [ID]: a checkpoint store's contents (cmd_checkpoint.c). */
int spate_checkpoint(const struct spate_cli *cli);
/* spate savepoint FROM_URL TO_URL [ID]: a checkpoint copied whole, self-contained
 * (cmd_checkpoint.c). */
int spate_savepoint(const struct spate_cli *cli);

#endif /* SPATE_COMMANDS_H */
