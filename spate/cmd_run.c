/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate run JOB [--param key=value]... [--embedded-broker [HOST:PORT]
 * [--broker-data DIR] [--broker-port-file FILE] [--keep-serving]]: runs one
 * of the built-in jobs, the programs under examples/ compiled into spate.
 * The global flags (--cores, --memory, --poll) size the run; a progress
 * line goes to stderr each second on a terminal, a summary at the end.
 * Exit 0, 1 when the job fails (the reason on stderr) or the endpoint
 * cannot start, 2 for a wrong job name, parameter or flag.
 *
 * --embedded-broker runs spate's Kafka-compatible endpoint (sp_broker.h,
 * what `spate broker` runs alone) inside the job's process, on the job's
 * own shards: created (socket bound, topics loaded) before the runtime,
 * started on each shard before the job opens there, stopped after the
 * job's own stop hooks, closed after the job closed. So a job and its
 * topics need no other process: its Kafka sources and sinks reach the
 * endpoint at HOST:PORT like any broker, and other clients (kcat, ...) can
 * too while it runs. HOST:PORT defaults to 127.0.0.1:9092 (port 0: any
 * free port, which --broker-port-file writes); the data directory
 * (--broker-data) to ./spate-data, the same as `spate broker`'s, so either
 * one sees the other's topics when run one after the other. The job's
 * sources and sinks do not create topics: --broker-topic NAME[:PARTITIONS]
 * (up to 16) creates them before the job starts, unless they exist (by
 * default with one partition per core, which is also what other clients'
 * auto-creation gives). A built-in job's `brokers` parameter, when not
 * given, is set to the endpoint's address.
 *
 * When the job ends the endpoint stops with it (what was acknowledged is
 * in the data directory for the next run), unless --keep-serving: a job
 * that finished leaves the endpoint serving until SIGINT or SIGTERM (a
 * line on stderr says so), for watching its output topics; the summary
 * follows the stop and times the job alone. A job that failed stops the
 * endpoint at once either way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "sp_broker.h"
#include "sp_job.h"
#include "sp_runtime.h"

struct sp_job *order_count_job(const struct sp_params *params);
struct sp_job *user_window_count_job(const struct sp_params *params);
struct sp_job *keyed_state_job(const struct sp_params *params);

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
    {"keyed-state",
     "running count per key over a large key space: the checkpoint benchmark's job "
     "(examples/keyed_state)",
     keyed_state_job},
};

static void list_jobs(FILE *out)
{
    fprintf(out, "built-in jobs (spate run JOB [--param key=value]...):\n");
    for (unsigned i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        fprintf(out, "  %-20s %s\n", builtins[i].name, builtins[i].summary);
    fprintf(out,
            "with spate's Kafka endpoint in the job's process:\n"
            "  --embedded-broker [HOST:PORT]  listen there (default 127.0.0.1:9092)\n"
            "  --broker-data DIR              its topics (default ./spate-data)\n"
            "  --broker-port-file FILE        write the port once listening\n"
            "  --broker-topic NAME[:N]        create the topic first unless it exists\n"
            "  --keep-serving                 after the job finished, serve until Ctrl-C\n"
            "checkpoints (exactly-once state and Kafka output):\n"
            "  --checkpoint-dir URL           file:///dir or s3://bucket/prefix\n"
            "  --checkpoint-interval MS       between checkpoints (default 1000)\n"
            "  --checkpoint-timeout MS        fail one not done by then (default 60000)\n"
            "  --checkpoint-min-pause MS      after one ends (default 0)\n"
            "  --checkpoint-retain N          keep the newest N (default 3)\n"
            "  --restore latest|none|ID       what to start from (default latest)\n"
            "  --from-savepoint URL           start from a savepoint (spate savepoint)\n"
            "state larger than memory:\n"
            "  --spill-dir DIR|none           spill cold state there (default /var/tmp;\n"
            "                                 none: state must fit --memory)\n"
            "  --spill-max BYTES              at most this much per shard (default: no limit)\n");
}

/* The embedded endpoint, shared by the job's shards through its hooks. */
struct embedded {
    struct sp_broker *broker;
    char address[300]; /* HOST:PORT, with the port it bound */
};

static void embedded_start(struct sp_shard *shard, void *ctx)
{
    struct embedded *e = ctx;
    sp_broker_shard_start(e->broker, shard);
}

static void embedded_finish(struct sp_shard *shard, void *ctx)
{
    struct embedded *e = ctx;
    sp_broker_shard_finish(e->broker, shard);
}

static void embedded_complete(void *ctx)
{
    struct embedded *e = ctx;
    fprintf(stderr,
            "spate run: the job finished; the Kafka endpoint on %s keeps serving until "
            "Ctrl-C\n",
            e->address);
}

/* --broker-topic NAME[:PARTITIONS]: creates the topic unless it exists
 * (default partitions: one per shard). 0, 1 when it cannot, 2 for wrong
 * input. */
static int embedded_topic(struct sp_broker *broker, const char *value, unsigned shards)
{
    char name[256];
    long partitions = (long)shards;
    const char *colon = strrchr(value, ':');
    size_t len = colon != NULL ? (size_t)(colon - value) : strlen(value);
    if (colon != NULL) {
        char *end = NULL;
        errno = 0;
        partitions = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || errno != 0 || partitions < 1 || partitions > 100000)
            len = 0; /* rejected below */
    }
    if (len == 0 || len >= sizeof(name)) {
        fprintf(stderr, "spate: run: --broker-topic '%s': NAME or NAME:PARTITIONS (1 to 100000)\n",
                value);
        return 2;
    }
    memcpy(name, value, len);
    name[len] = '\0';
    int err = sp_broker_topic_create(broker, name, (int32_t)partitions);
    if (err == -EINVAL) {
        fprintf(stderr, "spate: run: --broker-topic '%s': not a valid topic name\n", value);
        return 2;
    }
    if (err < 0 && err != -EEXIST) {
        fprintf(stderr, "spate: run: --broker-topic '%s': %s\n", value, strerror(-err));
        return 1;
    }
    return 0;
}

/* Creates the endpoint of --embedded-broker for a run on `shards` shards.
 * Returns 0, 1 when it cannot start or 2 for a wrong address. */
static int embedded_create(const struct spate_cli *cli, unsigned shards, struct embedded *e)
{
    static char host[256];
    const char *value = cli->embedded_broker;
    const char *colon = strrchr(value, ':');
    char *end = NULL;
    errno = 0;
    unsigned long port = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == value || (size_t)(colon - value) >= sizeof(host) ||
        colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || port > 65535) {
        fprintf(stderr, "spate: run: --embedded-broker '%s': HOST:PORT (port 0: any free one)\n",
                value);
        return 2;
    }
    memcpy(host, value, (size_t)(colon - value));
    host[colon - value] = '\0';
    struct sp_broker_config config;
    sp_broker_config_default(&config);
    config.host = host;
    config.port = (uint16_t)port;
    config.data_dir = cli->broker_data != NULL ? cli->broker_data : "spate-data";
    config.default_partitions = (int32_t)shards;
    char why[512];
    int err = sp_broker_create(&config, shards, &e->broker, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "spate: run: the embedded Kafka endpoint: %s\n", why);
        return 1;
    }
    for (unsigned i = 0; i < cli->broker_topic_count; i++) {
        err = embedded_topic(e->broker, cli->broker_topics[i], shards);
        if (err != 0) {
            sp_broker_free(e->broker);
            e->broker = NULL;
            return err;
        }
    }
    snprintf(e->address, sizeof(e->address), "%s:%u", host, sp_broker_port(e->broker));
    fprintf(stderr, "spate run: Kafka endpoint on %s, data in %s\n", e->address, config.data_dir);
    const char *port_file = cli->broker_port_file;
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f == NULL || fprintf(f, "%u\n", sp_broker_port(e->broker)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "spate: run: cannot write '%s': %s\n", port_file, strerror(errno));
            sp_broker_free(e->broker);
            e->broker = NULL;
            return 1;
        }
    }
    return 0;
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
    rc.checkpoint_url = cli->checkpoint_dir;
    rc.checkpoint_interval_ms = cli->checkpoint_interval_ms;
    rc.checkpoint_timeout_ms = cli->checkpoint_timeout_ms;
    rc.checkpoint_min_pause_ms = cli->checkpoint_min_pause_ms;
    rc.checkpoint_retain = cli->checkpoint_retain;
    rc.restore = cli->restore;
    rc.savepoint_url = cli->from_savepoint;
    rc.spill_max_bytes = cli->spill_max_bytes;
    if (cli->spill_dir == NULL) {
        /* The default: /var/tmp, on disk (unlike /tmp, often a tmpfs: a
         * spill there would only move state from one kind of RAM to another). */
        rc.spill_dir = "/var/tmp";
        if (access(rc.spill_dir, W_OK | X_OK) != 0) {
            fprintf(stderr, "spate: run: %s is not writable: state will not spill (--spill-dir)\n",
                    rc.spill_dir);
            rc.spill_dir = NULL;
        }
    } else if (strcmp(cli->spill_dir, "none") != 0) {
        rc.spill_dir = cli->spill_dir;
        if (access(rc.spill_dir, W_OK | X_OK) != 0) {
            fprintf(stderr, "spate: run: --spill-dir %s: %s\n", rc.spill_dir, strerror(errno));
            return 2;
        }
    }
    if (cli->embedded_broker == NULL)
        return sp_job_run_cli(job->build, &params, &rc);

    struct sp_runtime_config defaults;
    sp_runtime_config_default(&defaults);
    unsigned shards = rc.cores != 0 ? rc.cores : defaults.shard_count;
    static struct embedded e;
    int ret = embedded_create(cli, shards, &e);
    if (ret != 0)
        return ret;
    char brokers[sizeof(e.address) + 16];
    snprintf(brokers, sizeof(brokers), "brokers=%s", e.address);
    if (sp_param(&params, "brokers", NULL) == NULL && sp_params_add(&params, brokers) < 0) {
        fprintf(stderr, "spate: run: too many parameters\n");
        sp_broker_free(e.broker);
        return 2;
    }
    rc.on_shard_start = embedded_start;
    rc.on_shard_finish = embedded_finish;
    rc.hook_ctx = &e;
    if (cli->keep_serving) {
        rc.linger = true;
        rc.on_complete = embedded_complete;
    }
    ret = sp_job_run_cli(job->build, &params, &rc);
    sp_broker_free(e.broker);
    e.broker = NULL;
    return ret;
}
