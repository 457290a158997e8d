/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `spate` program: one dispatcher over the subcommands. Each command is
 * a row of the table below (bench has two: micro and nexmark). Wrong input
 * prints one line saying why and exits 2; a command that fails at run time
 * exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sp_log.h"

#ifndef SPATE_VERSION
#define SPATE_VERSION "unknown"
#endif

#ifndef SP_MALLOC_ONLY
/*
 * jemalloc's options, read when it starts. oversize_threshold:0 keeps
 * large allocations (a broker's fetch of tens of MiB, its log reads) in the
 * ordinary arenas, whose freed pages are reused for dirty_decay_ms (10 s)
 * before they go back to the kernel; jemalloc 5.3's default (8 MiB) gives
 * them a dedicated arena that returns them at once, so each such buffer
 * came back as fresh pages, zeroed on first touch: half the broker's time
 * in large fetches (scripts/bench_broker, docs/benchmarks.md).
 */
const char *malloc_conf = "oversize_threshold:0";
#endif

static int cmd_version(const struct spate_cli *cli)
{
    (void)cli;
    printf("spate %s\n", SPATE_VERSION);
    return 0;
}

static int cmd_bench(const struct spate_cli *cli)
{
    if (cli->subcommand != NULL && strcmp(cli->subcommand, "micro") == 0)
        return spate_bench_micro(cli);
    if (cli->subcommand != NULL && strcmp(cli->subcommand, "nexmark") == 0)
        return spate_bench_nexmark(cli);
    fprintf(stderr, "spate: bench: unknown benchmark '%s' (have: micro, nexmark)\n",
            cli->subcommand ? cli->subcommand : "");
    return 2;
}

struct command {
    const char *name;
    const char *usage;
    int (*fn)(const struct spate_cli *cli);
};

static const struct command commands[] = {
    {"version", "version              print the version", cmd_version},
    {"demo", "demo                 run the runtime workload on every core and print figures",
     spate_demo},
    {"run",
     "run JOB [--param key=value]...\n"
     "                       run a built-in job (spate run, without a job, lists them)",
     spate_run},
    {"bench",
     "bench micro [--benchmark_*]  operator and runtime microbenchmarks "
     "(Google Benchmark flags)",
     cmd_bench},
    {"bench",
     "bench nexmark (--query qN | --all) --events N[K|M|G] [--rate R] [--seed S]\n"
     "                       [--json FILE] [--dump DIR] [--out DIR]\n"
     "                       Nexmark queries (q0-q8, q11, q12) over generated events on "
     "--cores\n"
     "                       cores: events/s in total and per core, output rows, latency "
     "p50/p99,\n"
     "                       peak RSS; --dump: events and output as CSV "
     "(scripts/nexmark_check);\n"
     "                       --all: every query, a table and a chart into --out (docs)",
     cmd_bench},
    {"broker",
     "broker [--listen HOST:PORT] [--data DIR] [--partitions N] [--auto-create on|off]\n"
     "                       [--flush every|os|MS] [--segment-bytes N] [--advertise HOST] "
     "[--port-file F]\n"
     "                       [--tls-cert FILE --tls-key FILE] [--sasl plain|scram-sha-256 "
     "--users FILE]\n"
     "                       [--idle-timeout-ms MS]\n"
     "                       serve the Kafka protocol (127.0.0.1:9092, data in ./spate-data) "
     "until stopped;\n"
     "                       TLS and SASL (users: user:password lines) make it SSL, "
     "SASL_PLAINTEXT or SASL_SSL",
     spate_broker},
    {"produce",
     "produce -b HOST:PORT -t TOPIC [-k SEP] [-p N] [-z CODEC] [-X key=value]... "
     "[-F FILE]\n"
     "                       lines from stdin to a topic (-k: key before SEP)",
     spate_produce},
    {"consume",
     "consume -b HOST:PORT -t TOPIC [--from-beginning] [-e] [--count N] [-g GROUP] "
     "[-k SEP] [-f FMT] [-X key=value]...\n"
     "                       records to stdout (-f: %t %p %o %k %s %T; -g: in a "
     "consumer group, from its committed offsets)",
     spate_consume},
    {"topic", "topic list|create|delete -b HOST:PORT [-t TOPIC] [-p PARTITIONS]", spate_topic},
    {"checkpoint", "checkpoint list|inspect URL [ID]  stored checkpoints, sizes, verification",
     spate_checkpoint},
    {"savepoint", "savepoint FROM_URL TO_URL [ID]    a self-contained copy of a checkpoint",
     spate_savepoint},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: spate [flags] <command> [arguments]\n\ncommands:\n");
    for (unsigned i = 0; i < SP_ARRAY_LEN(commands); i++)
        fprintf(out, "  %s\n", commands[i].usage);
    fprintf(out,
            "\nflags (before or after the command):\n"
            "  --cores N            shards, one pinned thread per core (default: all %u CPUs)\n"
            "  --memory BYTES       managed memory per shard, K/M/G/T suffixes (default 64M; run: "
            "256M)\n"
            "  --poll               spin on the rings instead of sleeping (lowest latency)\n"
            "  --log-level LEVEL    error, warn, info (default), debug or trace\n"
            "  --seconds S          demo: length of each phase (default 2)\n"
            "  -h, --help           this text\n",
            sp_runtime_cpu_count());
}

int main(int argc, char **argv)
{
    struct spate_cli cli;
    if (spate_cli_parse(&cli, argc, argv) < 0) {
        fprintf(stderr, "spate: %s (see spate --help)\n", cli.reason);
        return 2;
    }
    if (cli.help || (cli.command != NULL && strcmp(cli.command, "help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (cli.command == NULL) {
        fprintf(stderr, "spate: no command given (see spate --help)\n");
        return 2;
    }
    if (cli.log_level >= 0)
        sp_log_set_level((enum sp_log_level)cli.log_level);
    for (unsigned i = 0; i < SP_ARRAY_LEN(commands); i++) {
        if (strcmp(cli.command, commands[i].name) == 0)
            return commands[i].fn(&cli);
    }
    fprintf(stderr, "spate: unknown command '%s' (see spate --help)\n", cli.command);
    return 2;
}
