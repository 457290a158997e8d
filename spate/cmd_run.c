/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate run JOB [--param key=value]...: runs one of the built-in jobs, the
 * programs under examples/ compiled into spate. The global flags (--cores,
 * --memory, --poll) size the run; a progress line goes to stderr each
 * second on a terminal, a summary at the end. Exit 0, 1 when the job fails
 * (the reason on stderr), 2 for a wrong job name or parameter.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sp_job.h"

struct sp_job *order_count_job(const struct sp_params *params);
struct sp_job *user_window_count_job(const struct sp_params *params);

struct builtin {
    const char *name;
    const char *summary;
    sp_job_build_fn *build;
};

static const struct builtin builtins[] = {
    {"user-window-count",
     "clicks per user in 5-minute event-time windows, late clicks to a side output "
     "(examples/user_window_count)",
     user_window_count_job},
    {"order-count",
     "running count of completed orders per customer, as a changelog (examples/order_count)",
     order_count_job},
};

static void list_jobs(FILE *out)
{
    fprintf(out, "built-in jobs (spate run JOB [--param key=value]...):\n");
    for (unsigned i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        fprintf(out, "  %-20s %s\n", builtins[i].name, builtins[i].summary);
}

int spate_run(const struct spate_cli *cli)
{
    if (cli->subcommand == NULL) {
        list_jobs(stderr);
        return 2;
    }
    const struct builtin *job = NULL;
    for (unsigned i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        if (strcmp(builtins[i].name, cli->subcommand) == 0)
            job = &builtins[i];
    }
    if (job == NULL) {
        fprintf(stderr, "spate: run: no job '%s'\n", cli->subcommand);
        list_jobs(stderr);
        return 2;
    }
    struct sp_params params = {0};
    for (int i = 0; i < cli->pass_count; i++) {
        if (sp_params_add(&params, cli->pass[i]) < 0) {
            fprintf(stderr, "spate: run: '%s' is not key=value\n", cli->pass[i]);
            return 2;
        }
    }
    struct sp_run_config rc;
    sp_run_config_default(&rc);
    rc.cores = cli->cores;
    rc.memory_bytes = cli->memory_bytes;
    rc.poll = cli->poll;
    return sp_job_run_cli(job->build, &params, &rc);
}
