/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate broker [--listen HOST:PORT] [--data DIR] [--partitions N]
 * [--auto-create on|off] [--flush every|os|MS] [--segment-bytes N]
 * [--max-request-bytes N] [--advertise HOST] [--port-file FILE]
 * [--tls-cert FILE --tls-key FILE] [--sasl plain|scram-sha-256 --users FILE]
 * [--idle-timeout-ms MS] [--log-cleaner-interval-ms MS] [--max-topics N]
 * [--max-partitions N] [--metadata-partitions-max N]:
 * spate's Kafka-compatible endpoint alone (broker/sp_broker.h), on every
 * core given with the global --cores, until SIGINT or SIGTERM. Binds
 * 127.0.0.1:9092 unless told otherwise; --listen with port 0 picks a free
 * port, which --port-file writes once listening (for scripts and tests).
 * --tls-cert/--tls-key make the listener TLS (PEM files), --sasl with a
 * users file (`user:password` lines) asks every connection to
 * authenticate: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL in Kafka's
 * words. --idle-timeout-ms closes idle connections (600000; 0: never).
 * --log-cleaner-interval-ms: how often each partition applies retention
 * and, for compacted topics, runs the log cleaner (15000; 0: never).
 * --max-topics and --max-partitions cap the registry (10000, 100000 in
 * all); --metadata-partitions-max bounds one Metadata answer (100000).
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
        static const char *const names[] = {"--listen",
                                            "--data",
                                            "--partitions",
                                            "--auto-create",
                                            "--flush",
                                            "--segment-bytes",
                                            "--advertise",
                                            "--port-file",
                                            "--max-request-bytes",
                                            "--tls-cert",
                                            "--tls-key",
                                            "--sasl",
                                            "--users",
                                            "--idle-timeout-ms",
                                            "--log-cleaner-interval-ms",
                                            "--max-topics",
                                            "--max-partitions",
                                            "--metadata-partitions-max"};
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
        } else if (strcmp(name, "--tls-cert") == 0) {
            config.tls_cert_file = value;
        } else if (strcmp(name, "--tls-key") == 0) {
            config.tls_key_file = value;
        } else if (strcmp(name, "--sasl") == 0) {
            if (strcmp(value, "plain") == 0)
                config.sasl = SP_BROKER_SASL_PLAIN;
            else if (strcmp(value, "scram-sha-256") == 0)
                config.sasl = SP_BROKER_SASL_SCRAM_SHA_256;
            else
                return usage("--sasl '%s': plain or scram-sha-256", value);
        } else if (strcmp(name, "--users") == 0) {
            config.users_file = value;
        } else if (strcmp(name, "--idle-timeout-ms") == 0) {
            if (parse_u64(value, &n) < 0 || n > UINT32_MAX)
                return usage("--idle-timeout-ms '%s': 0 (never) to 4294967295", value);
            config.idle_timeout_ms = (uint32_t)n;
        } else if (strcmp(name, "--log-cleaner-interval-ms") == 0) {
            if (parse_u64(value, &n) < 0 || n > 86400000)
                return usage("--log-cleaner-interval-ms '%s': 0 (off) to 86400000", value);
            config.log.cleaner_interval_ms = n;
        } else if (strcmp(name, "--max-topics") == 0 || strcmp(name, "--max-partitions") == 0 ||
                   strcmp(name, "--metadata-partitions-max") == 0) {
            if (parse_u64(value, &n) < 0 || n == 0 || n > 10000000)
                return usage("%s '%s': 1 to 10000000", name, value);
            if (strcmp(name, "--max-topics") == 0)
                config.max_topics = (uint32_t)n;
            else if (strcmp(name, "--max-partitions") == 0)
                config.max_partitions = (uint32_t)n;
            else
                config.metadata_partitions_max = (uint32_t)n;
        } else {
            port_file = value;
        }
    }

    if ((config.tls_cert_file == NULL) != (config.tls_key_file == NULL))
        return usage("--tls-cert and --tls-key go together");
    if ((config.sasl == SP_BROKER_SASL_NONE) != (config.users_file == NULL))
        return usage("--sasl and --users go together");

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
    static const char *const modes[] = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"};
    fprintf(stderr, "spate broker: listening on %s:%u (%s), data in %s, %u shard%s\n", config.host,
            sp_broker_port(run.broker),
            modes[(config.tls_cert_file != NULL) + 2 * (config.sasl != SP_BROKER_SASL_NONE)],
            config.data_dir, rc.shard_count, rc.shard_count == 1 ? "" : "s");
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
