/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line parsing for `spate` (see cli.h). Every rejection names the
 * flag and says what would have been right.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sp_log.h"
#include "sp_mem.h"

static int reject(struct spate_cli *cli, const char *fmt, ...) SP_PRINTF(2, 3);

static int reject(struct spate_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cli->reason, sizeof(cli->reason), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* The value of `--name value` or `--name=value`; NULL when missing. */
static const char *flag_value(int argc, char **argv, int *i, const char *arg, size_t name_len)
{
    if (arg[name_len] == '=')
        return arg + name_len + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static bool flag_is(const char *arg, const char *name, size_t *len_out)
{
    size_t len = strlen(name);
    *len_out = len;
    return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

static int parse_cores(struct spate_cli *cli, const char *value)
{
    unsigned cpus = sp_runtime_cpu_count();
    char *end = NULL;
    errno = 0;
    long n = value ? strtol(value, &end, 10) : 0;
    if (value == NULL || *value == '\0' || *end != '\0' || errno != 0)
        return reject(cli, "--cores '%s': not a number", value ? value : "");
    if (n < 1 || n > (long)cpus)
        return reject(cli, "--cores %ld: must be between 1 and %u (the CPUs this process may use)",
                      n, cpus);
    cli->cores = (unsigned)n;
    return 0;
}

static int parse_memory(struct spate_cli *cli, const char *value)
{
    size_t bytes = 0;
    if (value == NULL || sp_parse_bytes(value, &bytes) < 0)
        return reject(cli, "--memory '%s': not a size (bytes with an optional K, M, G or T)",
                      value ? value : "");
    if (bytes < SP_SEGMENT_BYTES_DEFAULT)
        return reject(cli, "--memory %s: must be at least %uK (one managed-memory segment)", value,
                      SP_SEGMENT_BYTES_DEFAULT / 1024);
    /* Each shard maps and touches its budget at start: it must fit in RAM. */
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_bytes = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && page_bytes > 0 ? (uint64_t)pages * (uint64_t)page_bytes : 0;
    if (ram != 0 && bytes > ram)
        return reject(cli, "--memory %s: more than this machine's %llu MiB of memory", value,
                      (unsigned long long)(ram >> 20));
    cli->memory_bytes = bytes;
    return 0;
}

static int parse_seconds(struct spate_cli *cli, const char *value)
{
    char *end = NULL;
    double s = value ? strtod(value, &end) : 0;
    if (value == NULL || *value == '\0' || *end != '\0' || !(s >= 0.001) || s > 3600)
        return reject(cli, "--seconds '%s': must be a number of seconds from 0.001 to 3600",
                      value ? value : "");
    cli->seconds = s;
    return 0;
}

/* A flag: returns 1 if consumed, 0 if not a global flag, or -EINVAL. */
static int parse_flag(struct spate_cli *cli, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    size_t len;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        cli->help = true;
        return 1;
    }
    if (strcmp(arg, "--poll") == 0) {
        cli->poll = true;
        return 1;
    }
    if (flag_is(arg, "--cores", &len))
        return parse_cores(cli, flag_value(argc, argv, i, arg, len)) < 0 ? -EINVAL : 1;
    if (flag_is(arg, "--memory", &len))
        return parse_memory(cli, flag_value(argc, argv, i, arg, len)) < 0 ? -EINVAL : 1;
    if (flag_is(arg, "--seconds", &len))
        return parse_seconds(cli, flag_value(argc, argv, i, arg, len)) < 0 ? -EINVAL : 1;
    if (flag_is(arg, "--log-level", &len)) {
        const char *value = flag_value(argc, argv, i, arg, len);
        int level = sp_log_level_parse(value);
        if (level < 0)
            return reject(cli, "--log-level '%s': must be error, warn, info, debug or trace",
                          value ? value : "");
        cli->log_level = level;
        return 1;
    }
    return 0;
}

/* A flag of `spate run` for its embedded Kafka endpoint: 1 if consumed, 0
 * if not one, or -EINVAL. */
static int parse_run_flag(struct spate_cli *cli, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    size_t len;
    if (flag_is(arg, "--embedded-broker", &len)) {
        cli->embedded_broker = "127.0.0.1:9092";
        if (arg[len] == '=')
            cli->embedded_broker = arg + len + 1;
        else if (*i + 1 < argc && argv[*i + 1][0] != '-' && strchr(argv[*i + 1], ':') != NULL)
            cli->embedded_broker = argv[++*i];
        if (*cli->embedded_broker == '\0')
            return reject(cli, "--embedded-broker: HOST:PORT, or nothing for 127.0.0.1:9092");
        return 1;
    }
    if (strcmp(arg, "--keep-serving") == 0) {
        cli->keep_serving = true;
        return 1;
    }
    static const struct {
        const char *flag;
        size_t offset;
        unsigned long min, max;
    } numbers[] = {
        {"--checkpoint-interval", offsetof(struct spate_cli, checkpoint_interval_ms), 1, 86400000},
        {"--checkpoint-timeout", offsetof(struct spate_cli, checkpoint_timeout_ms), 1, 86400000},
        {"--checkpoint-min-pause", offsetof(struct spate_cli, checkpoint_min_pause_ms), 0,
         86400000},
        {"--checkpoint-retain", offsetof(struct spate_cli, checkpoint_retain), 1, 1000},
    };
    for (size_t k = 0; k < sizeof(numbers) / sizeof(numbers[0]); k++) {
        if (!flag_is(arg, numbers[k].flag, &len))
            continue;
        const char *v = flag_value(argc, argv, i, arg, len);
        char *end = NULL;
        errno = 0;
        unsigned long n = v != NULL ? strtoul(v, &end, 10) : 0;
        if (v == NULL || *v == '\0' || *v == '-' || *end != '\0' || errno != 0 ||
            n < numbers[k].min || n > numbers[k].max)
            return reject(cli, "%s '%s': a number from %lu to %lu", numbers[k].flag, v ? v : "",
                          numbers[k].min, numbers[k].max);
        /* Nonzero: 0 means "not given" (the default); a pause of 0 is the default anyway. */
        *(uint32_t *)((char *)cli + numbers[k].offset) = (uint32_t)n;
        return 1;
    }
    const char **value = NULL;
    if (flag_is(arg, "--broker-data", &len)) {
        value = &cli->broker_data;
    } else if (flag_is(arg, "--broker-port-file", &len)) {
        value = &cli->broker_port_file;
    } else if (flag_is(arg, "--checkpoint-dir", &len)) {
        value = &cli->checkpoint_dir;
    } else if (flag_is(arg, "--restore", &len)) {
        value = &cli->restore;
    } else if (flag_is(arg, "--from-savepoint", &len)) {
        value = &cli->from_savepoint;
    } else if (flag_is(arg, "--spill-dir", &len)) {
        value = &cli->spill_dir;
    } else if (flag_is(arg, "--spill-max", &len)) {
        const char *v = flag_value(argc, argv, i, arg, len);
        if (v == NULL || sp_parse_bytes(v, &cli->spill_max_bytes) < 0 || cli->spill_max_bytes == 0)
            return reject(cli, "--spill-max '%s': a size like 512M or 20G", v ? v : "");
        return 1;
    } else if (flag_is(arg, "--broker-topic", &len)) {
        if (cli->broker_topic_count == SPATE_CLI_TOPICS_MAX)
            return reject(cli, "--broker-topic: at most %u", SPATE_CLI_TOPICS_MAX);
        value = &cli->broker_topics[cli->broker_topic_count++];
    }
    if (value == NULL)
        return 0;
    *value = flag_value(argc, argv, i, arg, len);
    if (*value == NULL || **value == '\0')
        return reject(cli, "%.*s needs a value", (int)len, arg);
    return 1;
}

bool spate_cli_own_args(const char *command)
{
    return strcmp(command, "produce") == 0 || strcmp(command, "consume") == 0 ||
           strcmp(command, "topic") == 0 || strcmp(command, "checkpoint") == 0 ||
           strcmp(command, "savepoint") == 0;
}

int spate_cli_parse(struct spate_cli *cli, int argc, char **argv)
{
    memset(cli, 0, sizeof(*cli));
    cli->log_level = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        /* The Kafka commands parse their own flags and words (kcat's -b, -t, ...). */
        if (cli->command != NULL && spate_cli_own_args(cli->command)) {
            if (cli->pass_count == SPATE_CLI_ARGS_MAX)
                return reject(cli, "too many arguments");
            cli->pass[cli->pass_count++] = argv[i];
            continue;
        }
        /* spate run JOB --param key=value ... */
        if (cli->command != NULL && strcmp(cli->command, "run") == 0 &&
            (strcmp(arg, "--param") == 0 || strncmp(arg, "--param=", 8) == 0)) {
            const char *kv = arg[7] == '=' ? arg + 8 : (i + 1 < argc ? argv[++i] : NULL);
            if (kv == NULL || strchr(kv, '=') == NULL || kv[0] == '=')
                return reject(cli, "--param needs key=value");
            if (cli->pass_count == SPATE_CLI_ARGS_MAX)
                return reject(cli, "too many parameters");
            cli->pass[cli->pass_count++] = (char *)kv;
            continue;
        }
        /* spate run JOB --embedded-broker [HOST:PORT] and its flags: the
         * address is optional, taken from the next word only when that
         * has a ':' (a job name has none). */
        if (cli->command != NULL && strcmp(cli->command, "run") == 0) {
            int ret = parse_run_flag(cli, argc, argv, &i);
            if (ret < 0)
                return ret;
            if (ret > 0)
                continue;
        }
        /* spate bench nexmark and spate broker: their own flags and values
         * go to `pass` (the command parses them); the global flags stay
         * global. */
        bool nexmark = (cli->subcommand != NULL && strcmp(cli->command, "bench") == 0 &&
                        strcmp(cli->subcommand, "nexmark") == 0) ||
                       (cli->command != NULL && strcmp(cli->command, "broker") == 0);
        if (arg[0] == '-' && arg[1] != '\0') {
            int ret = parse_flag(cli, argc, argv, &i);
            if (ret < 0)
                return ret;
            if (ret > 0)
                continue;
            if (nexmark) {
                if (cli->pass_count == SPATE_CLI_ARGS_MAX)
                    return reject(cli, "too many arguments");
                cli->pass[cli->pass_count++] = argv[i];
                continue;
            }
            if (strncmp(arg, "--benchmark_", 12) == 0 && cli->pass_count < SPATE_CLI_ARGS_MAX) {
                cli->pass[cli->pass_count++] = argv[i];
                continue;
            }
            return reject(cli, "unknown flag '%s'", arg);
        }
        if (nexmark) {
            if (cli->pass_count == SPATE_CLI_ARGS_MAX)
                return reject(cli, "too many arguments");
            cli->pass[cli->pass_count++] = argv[i];
        } else if (cli->command == NULL)
            cli->command = arg;
        else if ((strcmp(cli->command, "bench") == 0 || strcmp(cli->command, "run") == 0) &&
                 cli->subcommand == NULL)
            cli->subcommand = arg;
        else
            return reject(cli, "unexpected argument '%s'", arg);
    }
    bool bench_micro = cli->command != NULL && strcmp(cli->command, "bench") == 0 &&
                       cli->subcommand != NULL && strcmp(cli->subcommand, "micro") == 0;
    bool bench_nexmark = cli->command != NULL && strcmp(cli->command, "bench") == 0 &&
                         cli->subcommand != NULL && strcmp(cli->subcommand, "nexmark") == 0;
    bool own = bench_nexmark || (cli->command != NULL && (spate_cli_own_args(cli->command) ||
                                                          strcmp(cli->command, "run") == 0 ||
                                                          strcmp(cli->command, "broker") == 0));
    if (cli->pass_count > 0 && !bench_micro && !own)
        return reject(cli, "'%s' is a flag of 'spate bench micro' only", cli->pass[0]);
    if (cli->embedded_broker == NULL &&
        (cli->broker_data != NULL || cli->broker_port_file != NULL || cli->broker_topic_count > 0 ||
         cli->keep_serving))
        return reject(cli, "--broker-data, --broker-port-file, --broker-topic and --keep-serving "
                           "go with --embedded-broker");
    if (cli->checkpoint_dir == NULL &&
        (cli->checkpoint_interval_ms != 0 || cli->checkpoint_timeout_ms != 0 ||
         cli->checkpoint_min_pause_ms != 0 || cli->checkpoint_retain != 0 || cli->restore != NULL ||
         cli->from_savepoint != NULL))
        return reject(cli, "--checkpoint-interval, --checkpoint-timeout, --checkpoint-min-pause, "
                           "--checkpoint-retain, --restore and --from-savepoint go with "
                           "--checkpoint-dir");
    if (cli->restore != NULL && cli->from_savepoint != NULL)
        return reject(cli, "--restore or --from-savepoint, not both");
    return 0;
}

void spate_cli_config(const struct spate_cli *cli, struct sp_runtime_config *config)
{
    if (cli->cores != 0)
        config->shard_count = cli->cores;
    if (cli->memory_bytes != 0)
        config->memory_bytes = cli->memory_bytes;
    config->poll = cli->poll;
}
