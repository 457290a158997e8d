/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate broker [--listen HOST:PORT] [--data DIR] [--partitions N]
 * [--auto-create on|off] [--flush every|os|MS] [--segment-bytes N]
 * [--max-request-bytes N] [--advertise HOST] [--port-file FILE]:
 * spate's Kafka-compatible endpoint alone (broker/sp_broker.h), on every
 * core given with the global --cores, until SIGINT or SIGTERM. Binds
 * 127.0.0.1:9092 unless told otherwise; --listen with port 0 picks a free
 * port, which --port-file writes once listening (for scripts and tests).
 * Exit 2 for wrong input, 1 when it cannot start.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "sp_broker.h"
#include "sp_log.h"
#include "sp_runtime.h"

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spate: broker: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static int parse_u64(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    uint64_t scale = 1;
    if (*end == 'K' || *end == 'k')
        scale = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        scale = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        scale = 1024ull * 1024 * 1024, end++;
    if (*end != '\0' || v > UINT64_MAX / scale)
        return -1;
    *out = v * scale;
    return 0;
}

struct broker_run {
    struct sp_broker *broker;
};

static void on_start(struct sp_shard *shard, void *ctx)
{
    struct broker_run *run = ctx;
    sp_broker_shard_start(run->broker, shard);
}

static void on_finish(struct sp_shard *shard, void *ctx)
{
    struct broker_run *run = ctx;
    sp_broker_shard_finish(run->broker, shard);
}

int spate_broker(const struct spate_cli *cli)
{
    struct sp_broker_config config;
    sp_broker_config_default(&config);
    config.data_dir = "spate-data";
    const char *port_file = NULL;
    static char host[256];
    for (int i = 0; i < cli->pass_count; i++) {
        const char *arg = cli->pass[i];
        static const char *const names[] = {"--listen",      "--data",      "--partitions",
                                            "--auto-create", "--flush",     "--segment-bytes",
                                            "--advertise",   "--port-file", "--max-request-bytes"};
        const char *name = NULL, *value = NULL;
        for (unsigned n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
            size_t len = strlen(names[n]);
            if (strncmp(arg, names[n], len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
                name = names[n];
                value = arg[len] == '=' ? arg + len + 1
                                        : (i + 1 < cli->pass_count ? cli->pass[++i] : NULL);
            }
        }
        if (name == NULL)
            return usage("%s '%s' (see spate --help)",
                         arg[0] == '-' ? "unknown flag" : "unexpected argument", arg);
        if (value == NULL || *value == '\0')
            return usage("%s needs a value", name);
        uint64_t n;
        if (strcmp(name, "--listen") == 0) {
            const char *colon = strrchr(value, ':');
            if (colon == NULL || colon == value || (size_t)(colon - value) >= sizeof(host) ||
                parse_u64(colon + 1, &n) < 0 || n > 65535)
                return usage("--listen '%s': HOST:PORT (port 0: any free one)", value);
            memcpy(host, value, (size_t)(colon - value));
            host[colon - value] = '\0';
            config.host = host;
            config.port = (uint16_t)n;
        } else if (strcmp(name, "--data") == 0) {
            config.data_dir = value;
        } else if (strcmp(name, "--partitions") == 0) {
            if (parse_u64(value, &n) < 0 || n == 0 || n > 100000)
                return usage("--partitions '%s': 1 to 100000", value);
            config.default_partitions = (int32_t)n;
        } else if (strcmp(name, "--auto-create") == 0) {
            if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
                return usage("--auto-create '%s': on or off", value);
            config.auto_create_topics = strcmp(value, "on") == 0;
        } else if (strcmp(name, "--flush") == 0) {
            if (strcmp(value, "every") == 0) {
                config.log.flush = SP_PLOG_FLUSH_EVERY;
            } else if (strcmp(value, "os") == 0) {
                config.log.flush = SP_PLOG_FLUSH_OS;
            } else if (parse_u64(value, &n) == 0 && n > 0) {
                config.log.flush = SP_PLOG_FLUSH_INTERVAL;
                config.log.flush_interval_ms = n;
            } else {
                return usage("--flush '%s': every (each batch), os, or an interval in ms", value);
            }
        } else if (strcmp(name, "--segment-bytes") == 0) {
            if (parse_u64(value, &n) < 0 || n < 4096 || n > INT32_MAX)
                return usage("--segment-bytes '%s': 4K to 2G", value);
            config.log.segment_bytes = n;
        } else if (strcmp(name, "--max-request-bytes") == 0) {
            if (parse_u64(value, &n) < 0 || n < 1024 || n > (1u << 30))
                return usage("--max-request-bytes '%s': 1K to 1G", value);
            config.max_request_bytes = (uint32_t)n;
        } else if (strcmp(name, "--advertise") == 0) {
            config.advertised_host = value;
        } else {
            port_file = value;
        }
    }

    struct sp_runtime_config rc;
    sp_runtime_config_default(&rc);
    rc.memory_bytes = 16u << 20; /* the broker keeps no keyed state */
    spate_cli_config(cli, &rc);
    rc.handle_signals = true;
    rc.on_start = on_start;
    rc.on_finish = on_finish;
    struct broker_run run = {0};
    rc.ctx = &run;

    char why[512];
    int err = sp_broker_create(&config, rc.shard_count, &run.broker, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "spate: broker: %s\n", why);
        return 1;
    }
    struct sp_runtime rt;
    err = sp_runtime_init(&rt, &rc);
    if (err < 0) {
        fprintf(stderr, "spate: broker: cannot start the runtime: %s\n", strerror(-err));
        sp_broker_free(run.broker);
        return 1;
    }
    fprintf(stderr, "spate broker: listening on %s:%u, data in %s, %u shard%s\n", config.host,
            sp_broker_port(run.broker), config.data_dir, rc.shard_count,
            rc.shard_count == 1 ? "" : "s");
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f == NULL || fprintf(f, "%u\n", sp_broker_port(run.broker)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "spate: broker: cannot write '%s': %s\n", port_file, strerror(errno));
            sp_runtime_deinit(&rt);
            sp_broker_free(run.broker);
            return 1;
        }
    }
    err = sp_runtime_run(&rt);
    sp_runtime_deinit(&rt);
    sp_broker_free(run.broker);
    if (err < 0) {
        fprintf(stderr, "spate: broker: %s\n", strerror(-err));
        return 1;
    }
    fprintf(stderr, "spate broker: stopped\n");
    return 0;
}
