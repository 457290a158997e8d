/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a job from a command line: parameters (key=value), the run with a
 * progress line, the summary, and the exit status. `spate run` and the
 * example programs share it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_job.h"
#include "sp_mem.h"
#include "sp_op.h"
#include "sp_runtime.h"

int sp_params_add(struct sp_params *params, const char *key_value)
{
    const char *eq = strchr(key_value, '=');
    size_t len = strlen(key_value);
    if (eq == NULL || eq == key_value || params->count == SP_PARAMS_MAX ||
        params->used + len + 2 > sizeof(params->storage))
        return -EINVAL;
    char *copy = params->storage + params->used;
    memcpy(copy, key_value, len + 1);
    params->used += (unsigned)len + 1;
    copy[eq - key_value] = '\0';
    /* A later setting of the same key wins. */
    for (unsigned i = 0; i < params->count; i++) {
        if (strcmp(params->keys[i], copy) == 0) {
            params->values[i] = copy + (eq - key_value) + 1;
            return 0;
        }
    }
    params->keys[params->count] = copy;
    params->values[params->count++] = copy + (eq - key_value) + 1;
    return 0;
}

const char *sp_param(const struct sp_params *params, const char *key, const char *def)
{
    for (unsigned i = 0; params != NULL && i < params->count; i++) {
        if (strcmp(params->keys[i], key) == 0)
            return params->values[i];
    }
    return def;
}

int64_t sp_param_i64(struct sp_job *job, const struct sp_params *params, const char *key,
                     int64_t def)
{
    const char *v = sp_param(params, key, NULL);
    if (v == NULL)
        return def;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    /* Sizes and counts may carry K/M/G (powers of 1000: event counts). */
    long long mult = 1;
    if (end != v && (*end == 'K' || *end == 'k'))
        mult = 1000, end++;
    else if (end != v && *end == 'M')
        mult = 1000000, end++;
    else if (end != v && *end == 'G')
        mult = 1000000000, end++;
    long long value;
    if (errno != 0 || end == v || *end != '\0' || __builtin_mul_overflow(n, mult, &value)) {
        sp_job_set_error(job, "parameter %s=%s: not an integer", key, v);
        return def;
    }
    return value;
}

double sp_param_f64(struct sp_job *job, const struct sp_params *params, const char *key, double def)
{
    const char *v = sp_param(params, key, NULL);
    if (v == NULL)
        return def;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0') {
        sp_job_set_error(job, "parameter %s=%s: not a number", key, v);
        return def;
    }
    return d;
}

void sp_params_check(struct sp_job *job, const struct sp_params *params, const char *const *known)
{
    for (unsigned i = 0; params != NULL && i < params->count; i++) {
        bool ok = false;
        for (unsigned k = 0; known[k] != NULL && !ok; k++)
            ok = strcmp(known[k], params->keys[i]) == 0;
        if (!ok) {
            char list[256] = "";
            size_t at = 0;
            for (unsigned k = 0; known[k] != NULL && at < sizeof(list); k++)
                at +=
                    (size_t)snprintf(list + at, sizeof(list) - at, "%s%s", k ? ", " : "", known[k]);
            sp_job_set_error(job, "unknown parameter '%s' (this job has: %s)", params->keys[i],
                             list);
            return;
        }
    }
}

static void human(double v, char *buf, size_t cap)
{
    if (v >= 1e9)
        snprintf(buf, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1fK", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

int sp_job_run_cli(sp_job_build_fn *build, const struct sp_params *params,
                   const struct sp_run_config *config)
{
    struct sp_job *job = build(params);
    if (job == NULL) {
        fprintf(stderr, "spate: out of memory building the job\n");
        return 1;
    }
    if (sp_job_error(job) != NULL) {
        fprintf(stderr, "spate: %s: %s\n", job->name, sp_job_error(job));
        sp_job_free(job);
        return 2;
    }
    struct sp_run_config rc = *config;
    if (isatty(STDERR_FILENO))
        rc.progress = true;
    struct sp_job_stats stats;
    int ret = sp_job_run(job, &rc, &stats);
    if (ret != 0) {
        fprintf(stderr, "spate: job %s failed: %s\n", job->name, sp_job_error(job));
        sp_job_free(job);
        return 1;
    }
    unsigned cores = rc.cores ? rc.cores : sp_runtime_cpu_count();
    double secs = stats.seconds > 0 ? stats.seconds : 1e-9;
    char in_rate[32], per_core[32];
    human((double)stats.records_in / secs, in_rate, sizeof(in_rate));
    human((double)stats.records_in / secs / cores, per_core, sizeof(per_core));
    fprintf(stderr,
            "spate: job %s %s after %.2f s on %u cores: %" PRIu64 " records in (%s/s, %s/s per "
            "core), %" PRIu64 " out, %" PRIu64 " late; state peak %.1f MiB, buffers peak %.1f "
            "MiB\n",
            job->name, stats.interrupted ? "stopped" : "finished", stats.seconds, cores,
            stats.records_in, in_rate, per_core, stats.records_out, stats.records_late,
            (double)stats.state_bytes_max / (1 << 20), (double)stats.buffer_bytes_max / (1 << 20));
    if (stats.spilled_bytes_max > 0)
        fprintf(stderr,
                "spate: state spilled to disk: peak %.1f MiB, %" PRIu64 " segments read back\n",
                (double)stats.spilled_bytes_max / (1 << 20), stats.spill_reads);
    sp_job_free(job);
    return 0;
}

int sp_job_main(sp_job_build_fn *build, int argc, char **argv)
{
    struct sp_params params = {0};
    struct sp_run_config rc;
    sp_run_config_default(&rc);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--param") == 0 && i + 1 < argc) {
            a = argv[++i];
        } else if ((strcmp(a, "--cores") == 0 || strcmp(a, "--memory") == 0) && i + 1 < argc) {
            const char *v = argv[++i];
            if (a[2] == 'c') {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end != '\0' || n < 1 || n > 4096) {
                    fprintf(stderr, "%s: --cores %s: not a core count\n", argv[0], v);
                    return 2;
                }
                rc.cores = (unsigned)n;
            } else if (sp_parse_bytes(v, &rc.memory_bytes) < 0) {
                fprintf(stderr, "%s: --memory %s: not a size\n", argv[0], v);
                return 2;
            }
            continue;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fprintf(stdout, "usage: %s [key=value]... [--cores N] [--memory BYTES]\n", argv[0]);
            return 0;
        }
        if (sp_params_add(&params, a) < 0) {
            fprintf(stderr, "%s: '%s' is not key=value\n", argv[0], a);
            return 2;
        }
    }
    return sp_job_run_cli(build, &params, &rc);
}
