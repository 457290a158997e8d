/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate bench nexmark --query qN --events N [--rate R] [--seed S]
 * [--json FILE]: one Nexmark query over generated events, timed. The job is
 * the nexmark source (one partition per core), the query, and a blackhole
 * sink that counts the output rows; the global --cores, --memory and --poll
 * size the run. It prints events, seconds, events/s in total and per core
 * (generator included), output rows, latency p50/p99 (n/a: q0-q2 are not
 * windowed) and peak RSS; --json writes the same as one JSON object (null
 * for latencies that do not apply). A progress line on stderr when it is a
 * terminal. Exit 2 for wrong input (unknown query, bad number), 1 when the
 * job fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "commands.h"
#include "sp_job.h"
#include "sp_nexmark.h"

struct nexmark_args {
    const char *query;
    uint64_t events;
    double rate;
    uint64_t seed;
    const char *json;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr; returns 2, the exit status for wrong input. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spate: bench nexmark: ");
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
    if (*end != '\0' || errno != 0)
        return -1;
    *out = v;
    return 0;
}

/* 0, or 2 with the reason printed. */
static int parse_args(const struct spate_cli *cli, struct nexmark_args *a)
{
    for (int i = 0; i < cli->pass_count; i++) {
        const char *arg = cli->pass[i];
        static const char *const names[] = {"--query", "--events", "--rate", "--seed", "--json"};
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
            return usage_error(arg[0] == '-' ? "unknown flag '%s' (see spate --help)"
                                             : "unexpected argument '%s' (see spate --help)",
                               arg);
        if (value == NULL)
            return usage_error("%s needs a value", name);
        if (strcmp(name, "--query") == 0) {
            if (!sp_nexmark_query_exists(value))
                return usage_error("unknown query '%s' (have: %s)", value, "q0, q1, q2");
            a->query = value;
        } else if (strcmp(name, "--events") == 0) {
            if (parse_u64(value, &a->events) < 0 || a->events == 0)
                return usage_error("--events '%s': must be a positive whole number", value);
        } else if (strcmp(name, "--seed") == 0) {
            if (parse_u64(value, &a->seed) < 0)
                return usage_error("--seed '%s': must be a whole number from 0", value);
        } else if (strcmp(name, "--rate") == 0) {
            char *end = NULL;
            a->rate = strtod(value, &end);
            if (*value == '\0' || *end != '\0' || !(a->rate >= 0) || !isfinite(a->rate))
                return usage_error("--rate '%s': must be events per second, 0 or more (0: as "
                                   "fast as possible)",
                                   value);
        } else {
            if (*value == '\0')
                return usage_error("--json needs a file name");
            a->json = value;
        }
    }
    if (a->query == NULL)
        return usage_error("--query is missing (q0, q1, q2)");
    if (a->events == 0)
        return usage_error("--events is missing (the number of events to generate)");
    return 0;
}

/* 1234567 -> "1.23M". */
static const char *human(double v, char *buf, size_t size)
{
    static const char *const units[] = {"", "K", "M", "G", "T"};
    unsigned u = 0;
    while (v >= 1000 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1000;
        u++;
    }
    snprintf(buf, size, u == 0 ? "%.0f%s" : "%.2f%s", v, units[u]);
    return buf;
}

int spate_bench_nexmark(const struct spate_cli *cli)
{
    struct nexmark_args a = {0};
    int ret = parse_args(cli, &a);
    if (ret != 0)
        return ret;
    unsigned cores = cli->cores ? cli->cores : sp_runtime_cpu_count();

    FILE *json = NULL;
    if (a.json != NULL) {
        json = fopen(a.json, "w");
        if (json == NULL) {
            fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", a.json,
                    strerror(errno));
            return 2;
        }
    }

    struct sp_nexmark_config config;
    sp_nexmark_config_default(&config);
    config.events = a.events;
    config.seed = a.seed;
    config.emit_rate = a.rate;
    config.partitions = cores;

    char name[32];
    snprintf(name, sizeof(name), "nexmark-%s", a.query);
    struct sp_job *job = sp_job_new(name);
    struct sp_stream *events = sp_nexmark_source(job, &config);
    sp_sink_blackhole(sp_nexmark_query(job, a.query, events));
    if (sp_job_error(job) != NULL) {
        fprintf(stderr, "spate: bench nexmark: %s\n", sp_job_error(job));
        sp_job_free(job);
        if (json != NULL)
            fclose(json);
        return 2;
    }

    struct sp_run_config rc;
    sp_run_config_default(&rc);
    rc.cores = cores;
    rc.memory_bytes = cli->memory_bytes;
    rc.poll = cli->poll;
    rc.progress = isatty(STDERR_FILENO);
    struct sp_job_stats stats = {0};
    if (sp_job_run(job, &rc, &stats) < 0) {
        fprintf(stderr, "spate: bench nexmark: %s failed: %s\n", a.query,
                sp_job_error(job) ? sp_job_error(job) : "unknown error");
        sp_job_free(job);
        if (json != NULL)
            fclose(json);
        return 1;
    }
    sp_job_free(job);

    struct rusage ru;
    uint64_t peak_rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
    double secs = stats.seconds > 0 ? stats.seconds : 1e-9;
    double eps = (double)stats.records_in / secs;
    double eps_core = eps / cores;

    char h1[32], h2[32];
    printf("nexmark %s: %" PRIu64 " events on %u cores%s\n", a.query, stats.records_in, cores,
           stats.interrupted ? " (stopped before the end)" : "");
    printf("  seconds           %.3f\n", stats.seconds);
    printf("  events/s          %s (%s per core)\n", human(eps, h1, sizeof(h1)),
           human(eps_core, h2, sizeof(h2)));
    printf("  output rows       %" PRIu64 "\n", stats.records_out);
    printf("  latency p50/p99   n/a (not a windowed query)\n");
    printf("  peak RSS          %.1f MiB\n", (double)peak_rss / (1024.0 * 1024.0));

    if (json != NULL) {
        fprintf(json,
                "{\"query\": \"%s\", \"events\": %" PRIu64 ", \"cores\": %u, \"seconds\": %.6f, "
                "\"events_per_sec\": %.1f, \"events_per_sec_per_core\": %.1f, "
                "\"output_rows\": %" PRIu64 ", \"latency_p50_ms\": null, "
                "\"latency_p99_ms\": null, \"peak_rss_bytes\": %" PRIu64 ", \"seed\": %" PRIu64
                ", \"rate\": %.17g, \"interrupted\": %s}\n",
                a.query, stats.records_in, cores, stats.seconds, eps, eps_core, stats.records_out,
                peak_rss, a.seed, a.rate, stats.interrupted ? "true" : "false");
        if (fclose(json) != 0) {
            fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", a.json,
                    strerror(errno));
            return 1;
        }
    }
    return stats.interrupted ? 1 : 0;
}
