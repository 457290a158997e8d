/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command line of the `spate` program: global flags, the command word(s) and
 * what is left for the command. Parsing never exits; it returns -EINVAL with
 * a one-line reason that main prints before exiting with status 2.
 */
#ifndef SPATE_CLI_H
#define SPATE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_runtime.h"

#define SPATE_CLI_REASON_BYTES 256
#define SPATE_CLI_ARGS_MAX 64
#define SPATE_CLI_TOPICS_MAX 16

struct spate_cli {
    const char *command;    /* NULL: none given */
    const char *subcommand; /* the word after "bench", NULL otherwise */
    bool help;
    bool poll;
    unsigned cores;      /* 0 until given: all online CPUs */
    size_t memory_bytes; /* 0 until given: the runtime default */
    int log_level;       /* -1 until given */
    double seconds;      /* demo: length of each phase; 0 until given */
    int pass_count;      /* arguments passed on to the command (bench micro's --benchmark_*
                          * flags, bench nexmark's flags and values, run's key=value) */
    char *pass[SPATE_CLI_ARGS_MAX];
    /* spate run JOB --embedded-broker [HOST:PORT] [--broker-data DIR]
     * [--broker-port-file FILE] [--broker-topic NAME[:PARTITIONS]]...
     * [--keep-serving]: NULL, 0 and false until given (embedded_broker
     * "127.0.0.1:9092" when given without an address). */
    const char *embedded_broker;
    const char *broker_data;
    const char *broker_port_file;
    const char *broker_topics[SPATE_CLI_TOPICS_MAX];
    unsigned broker_topic_count;
    bool keep_serving;
    /* spate run JOB --checkpoint-dir URL [--checkpoint-interval MS]
     * [--checkpoint-timeout MS] [--checkpoint-min-pause MS]
     * [--checkpoint-retain N] [--restore latest|none|ID] [--from-savepoint
     * URL]: NULL and 0 until
     * given (the run's defaults, sp_job.h). */
    const char *checkpoint_dir;
    uint32_t checkpoint_interval_ms;
    uint32_t checkpoint_timeout_ms;
    uint32_t checkpoint_min_pause_ms;
    uint32_t checkpoint_retain;
    const char *restore;
    const char *from_savepoint; /* --from-savepoint URL */
    /* spate run JOB [--spill-dir DIR|none] [--spill-max BYTES]: NULL and 0
     * until given (the default directory, no limit). */
    const char *spill_dir;
    size_t spill_max_bytes;
    char reason[SPATE_CLI_REASON_BYTES];
};

/*
 * Parses argv. Returns 0, or -EINVAL with `cli->reason` set. Flags may stand
 * before or after the command.
 */
int spate_cli_parse(struct spate_cli *cli, int argc, char **argv);

/*
 * True for commands that parse their own arguments: everything after the
 * command word goes to `pass` (global flags must come before the command).
 */
bool spate_cli_own_args(const char *command);

/* Applies the global flags to a runtime configuration. */
void spate_cli_config(const struct spate_cli *cli, struct sp_runtime_config *config);

#endif /* SPATE_CLI_H */
