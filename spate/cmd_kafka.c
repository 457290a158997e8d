/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka commands for people, in the spirit of kcat and rpk:
 *
 *   spate produce -b HOST:PORT -t TOPIC [-k SEP] [-p PARTITION] [-z CODEC]
 *                 [-X key=value]... [-F FILE]
 *   spate consume -b HOST:PORT -t TOPIC [--from-beginning] [-e] [--count N]
 *                 [-g GROUP] [-k SEP] [-f FORMAT] [-X key=value]... [-F FILE]
 *   spate topic list|create|delete -b HOST:PORT [-t TOPIC] [-p PARTITIONS]
 *
 * Each runs one shard with the native client. -X sets any client property
 * by its Kafka name, -F reads a .properties file. produce reads lines from
 * stdin (with -k SEP the text before the first SEP is the key) and reports
 * what was delivered; consume prints one value per line (key SEP value with
 * -k; -f with %t %p %o %k %s %T placeholders), and exits after --count
 * records, at the end of every partition with -e (as kcat -e), or on Ctrl-C. Wrong usage exits 2; a
 * broker that cannot be reached, a missing topic or API, or failed deliveries print one line and
 * exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "sp_io.h"
#include "sp_kafka_admin.h"
#include "sp_kafka_consumer.h"
#include "sp_kafka_group.h"
#include "sp_kafka_producer.h"
#include "sp_log.h"
#include "sp_runtime.h"

#define STDIN_CHUNK_BYTES (256u * 1024u)
#define WAIT_METADATA_NS (10 * SP_NSEC_PER_SEC)
#define POLL_NS (2 * SP_NSEC_PER_MSEC)
#define GROUP_LEAVE_NS (5 * SP_NSEC_PER_SEC) /* commit and LeaveGroup, at most */

enum kafka_cmd { CMD_PRODUCE, CMD_CONSUME, CMD_TOPIC };

struct kafka_job {
    enum kafka_cmd cmd;
    const char *sub; /* topic: list, create, delete */
    const char *brokers;
    const char *topic;
    const char *key_sep;
    const char *format;
    const char *group_id; /* consume -g */
    int32_t partition;
    int32_t partitions; /* topic create */
    int64_t count;      /* consume: stop after this many; -1: never */
    bool from_beginning;
    bool exit_at_end; /* consume: stop once every partition is caught up */
    struct sp_kafka_config config;
    int exit_code;
    char error[512];

    /* On the shard. */
    struct sp_shard *shard;
    struct sp_kafka_client client;
    struct sp_kafka_producer producer;
    struct sp_kafka_consumer consumer;
    struct sp_kafka_group group;
    bool client_up, producer_up, consumer_up, group_up;
    bool group_leaving, group_left, group_closed;
    uint64_t group_leave_deadline_ns;
    bool started; /* the command's work has begun */
    bool finishing;
    struct sp_timer deadline;  /* waiting for the first metadata */
    struct sp_timer poll;      /* finishing: waiting for deliveries and idle */
    struct sp_timer end_check; /* consume -e */
    struct sp_stop_hook hook;

    /* produce */
    struct sp_io_op read_op;
    uint8_t *in;
    uint32_t in_len;
    bool eof;
    bool blocked; /* a line waits for batch memory */
    uint64_t lines;
    uint64_t delivered;
    uint64_t failed;
    int first_error;
    int16_t first_error_code;

    /* consume */
    int64_t consumed;
};

static void finish(struct kafka_job *job, int exit_code);

static void fail(struct kafka_job *job, const char *fmt, ...) SP_PRINTF(2, 3);

static void fail(struct kafka_job *job, const char *fmt, ...)
{
    if (job->error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->error, sizeof(job->error), fmt, ap);
        va_end(ap);
    }
    finish(job, 1);
}

/* ---- Arguments ---- */

static int usage_error(struct kafka_job *job, const char *fmt, ...) SP_PRINTF(2, 3);

static int usage_error(struct kafka_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int set_property(struct kafka_job *job, const char *key, const char *value)
{
    char err[256];
    if (sp_kafka_config_set(&job->config, key, value, err, sizeof(err)) < 0)
        return usage_error(job, "%s", err);
    return 0;
}

static int parse_args(struct kafka_job *job, const struct spate_cli *cli)
{
    int argc = cli->pass_count;
    char **argv = (char **)cli->pass;
    sp_kafka_config_init(&job->config);
    job->partition = -1;
    job->partitions = 1;
    job->count = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (job->cmd == CMD_TOPIC && job->sub == NULL && a[0] != '-') {
            job->sub = a;
            takes = false;
        } else if (strcmp(a, "--from-beginning") == 0) {
            job->from_beginning = true;
            takes = false;
        } else if (strcmp(a, "-e") == 0 || strcmp(a, "--exit-at-end") == 0) {
            job->exit_at_end = true;
            takes = false;
        } else if (v == NULL) {
            return usage_error(job, "%s: missing its value", a);
        } else if (strcmp(a, "-b") == 0 || strcmp(a, "--brokers") == 0) {
            job->brokers = v;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--topic") == 0) {
            job->topic = v;
        } else if (strcmp(a, "-k") == 0) {
            job->key_sep = v;
        } else if (strcmp(a, "-f") == 0) {
            job->format = v;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--partitions") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < (job->cmd == CMD_TOPIC ? 1 : 0) || n > SP_KAFKA_PARTITIONS_MAX)
                return usage_error(job, "%s '%s': not a partition %s", a, v,
                                   job->cmd == CMD_TOPIC ? "count" : "number");
            if (job->cmd == CMD_TOPIC)
                job->partitions = (int32_t)n;
            else
                job->partition = (int32_t)n;
        } else if (strcmp(a, "--count") == 0 || strcmp(a, "-c") == 0) {
            char *end;
            long long n = strtoll(v, &end, 10);
            if (*end != '\0' || n < 1)
                return usage_error(job, "%s '%s': must be a positive number", a, v);
            job->count = n;
        } else if (strcmp(a, "-z") == 0) {
            if (set_property(job, "compression.type", v) < 0)
                return -EINVAL;
        } else if (strcmp(a, "-X") == 0) {
            char key[256];
            const char *eq = strchr(v, '=');
            if (eq == NULL || (size_t)(eq - v) >= sizeof(key))
                return usage_error(job, "-X '%s': must be key=value", v);
            memcpy(key, v, (size_t)(eq - v));
            key[eq - v] = '\0';
            if (set_property(job, key, eq + 1) < 0)
                return -EINVAL;
        } else if (strcmp(a, "-F") == 0) {
            char err[256];
            if (sp_kafka_config_load_file(&job->config, v, err, sizeof(err)) < 0)
                return usage_error(job, "%s", err);
        } else if (strcmp(a, "-g") == 0 || strcmp(a, "--group") == 0) {
            if (job->cmd != CMD_CONSUME)
                return usage_error(job, "-g: only consume joins a group");
            job->group_id = v;
            if (set_property(job, "group.id", v) < 0)
                return -EINVAL;
        } else {
            return usage_error(job, "unknown flag '%s'", a);
        }
        if (takes)
            i++;
    }
    if (job->cmd == CMD_TOPIC &&
        (job->sub == NULL || (strcmp(job->sub, "list") != 0 && strcmp(job->sub, "create") != 0 &&
                              strcmp(job->sub, "delete") != 0)))
        return usage_error(job, "topic: say list, create or delete");
    if (job->brokers == NULL)
        return usage_error(job, "-b HOST:PORT is required");
    if (job->topic == NULL && !(job->cmd == CMD_TOPIC && strcmp(job->sub, "list") == 0))
        return usage_error(job, "-t TOPIC is required");
    if (set_property(job, "bootstrap.servers", job->brokers) < 0)
        return -EINVAL;
    /* In a group, committed offsets come first; --from-beginning only says
     * where a partition without one starts (as kafka-console-consumer). */
    if (job->group_id != NULL &&
        set_property(job, "auto.offset.reset", job->from_beginning ? "earliest" : "latest") < 0)
        return -EINVAL;
    if (job->config.client_id[0] == '\0' && set_property(job, "client.id", "spate-cli") < 0)
        return -EINVAL;
    char err[256];
    if (sp_kafka_config_validate(&job->config, err, sizeof(err)) < 0)
        return usage_error(job, "%s", err);
    return 0;
}

/* ---- Finishing ---- */

static void group_left(struct sp_kafka_group *group, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)group;
    job->group_left = true;
}

static void poll_fired(struct sp_timer *timer, void *ctx)
{
    struct kafka_job *job = ctx;
    if (job->producer_up && sp_kafka_producer_outstanding(&job->producer) > 0 &&
        !sp_shard_stopping(job->shard)) {
        sp_shard_timer_arm(job->shard, timer, sp_now_ns() + POLL_NS);
        return;
    }
    if (job->group_up) {
        /* Leave the group first: commit the positions, hand the partitions back. */
        if (!job->group_leaving) {
            job->group_leaving = true;
            job->group_leave_deadline_ns = sp_now_ns() + GROUP_LEAVE_NS;
            sp_kafka_group_leave(&job->group, true, group_left, job);
        }
        if (!job->group_left && sp_now_ns() < job->group_leave_deadline_ns) {
            sp_shard_timer_arm(job->shard, timer, sp_now_ns() + POLL_NS);
            return;
        }
        if (!job->group_closed) {
            job->group_closed = true;
            sp_kafka_group_close(&job->group);
        }
        if (!sp_kafka_group_idle(&job->group)) {
            sp_shard_timer_arm(job->shard, timer, sp_now_ns() + POLL_NS);
            return;
        }
        sp_kafka_group_deinit(&job->group);
        job->group_up = false;
    }
    if (job->client_up && !job->client.closing) {
        if (job->producer_up)
            sp_kafka_producer_deinit(&job->producer);
        if (job->consumer_up)
            sp_kafka_consumer_deinit(&job->consumer);
        job->producer_up = job->consumer_up = false;
        sp_kafka_client_close(&job->client);
    }
    if (job->client_up && !sp_kafka_client_idle(&job->client)) {
        sp_shard_timer_arm(job->shard, timer, sp_now_ns() + POLL_NS);
        return;
    }
    if (job->client_up)
        sp_kafka_client_deinit(&job->client);
    job->client_up = false;
    sp_runtime_stop(job->shard->runtime);
}

static void finish(struct kafka_job *job, int exit_code)
{
    if (job->finishing)
        return;
    job->finishing = true;
    job->exit_code = exit_code;
    sp_shard_timer_cancel(job->shard, &job->deadline);
    sp_shard_timer_cancel(job->shard, &job->end_check);
    fflush(stdout);
    if (job->producer_up)
        sp_kafka_producer_flush(&job->producer);
    sp_shard_timer_arm(job->shard, &job->poll, sp_now_ns());
}

static void on_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct kafka_job *job = SP_CONTAINER_OF(hook, struct kafka_job, hook);
    (void)shard;
    finish(job, job->exit_code);
}

/* consume -e: every partition has reached the high watermark it was last told. */
static void end_check_fired(struct sp_timer *timer, void *ctx)
{
    struct kafka_job *job = ctx;
    if (job->finishing || !job->consumer_up)
        return;
    const struct sp_kafka_consumer *c = &job->consumer;
    bool caught_up = c->part_count > 0 && (!job->group_up || sp_kafka_group_stable(&job->group));
    /* read_committed ends at the last stable offset, as kcat's -e does:
     * past it are an open transaction's records, not readable yet. */
    bool committed = job->config.isolation_level == SP_KAFKA_READ_COMMITTED;
    for (unsigned i = 0; i < c->part_count && caught_up; i++) {
        const struct sp_kafka_cpart *p = &c->parts[i];
        int64_t end =
            committed && p->last_stable_offset >= 0 ? p->last_stable_offset : p->high_watermark;
        caught_up = p->stopped || (end >= 0 && p->offset >= 0 && p->offset >= end);
    }
    if (caught_up) {
        finish(job, 0);
        return;
    }
    sp_shard_timer_arm(job->shard, timer, sp_now_ns() + 5 * SP_NSEC_PER_MSEC);
}

static void deadline_fired(struct sp_timer *timer, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)timer;
    if (!job->client.metadata_ever) {
        int err = job->client.bootstrap_error;
        fail(job, "cannot reach %s: %s", job->brokers,
             err < 0 ? strerror(-err) : "no answer from the broker");
        return;
    }
    if (job->started)
        return;
    /* A topic the broker keeps answering with a (retriable) error, such
     * as UNKNOWN_TOPIC_OR_PARTITION for a consumer, which does not create
     * topics: name the error rather than a silence. */
    int err = 0;
    const struct sp_kafka_topic_info *t =
        sp_kafka_client_topic(&job->client, job->topic, strlen(job->topic), &err);
    if (t != NULL && !t->known && t->error != 0)
        fail(job, "topic '%s': %s", job->topic, sp_kafka_error_name(t->error));
    else
        fail(job, "topic '%s': no metadata from the broker", job->topic);
}

/* ---- produce ---- */

static void produce_lines(struct kafka_job *job);

static void delivered(struct sp_kafka_producer *p, const struct sp_kafka_delivery *d, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)p;
    if (d->err == 0) {
        job->delivered++;
    } else {
        job->failed++;
        if (job->first_error == 0) {
            job->first_error = d->err;
            job->first_error_code = d->error_code;
        }
    }
    if (job->blocked)
        produce_lines(job);
}

static void read_stdin(struct kafka_job *job);

static void stdin_read(struct sp_io_op *op, int res, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)op;
    if (job->finishing)
        return;
    if (res < 0) {
        fail(job, "reading stdin: %s", strerror(-res));
        return;
    }
    if (res == 0)
        job->eof = true;
    job->in_len += (uint32_t)res;
    produce_lines(job);
}

static void read_stdin(struct kafka_job *job)
{
    if (job->eof || job->blocked || job->finishing)
        return;
    if (job->in_len == STDIN_CHUNK_BYTES) {
        fail(job, "a line longer than %u bytes", STDIN_CHUNK_BYTES);
        return;
    }
    int ret = sp_io_read(job->shard, &job->read_op, STDIN_FILENO, job->in + job->in_len,
                         STDIN_CHUNK_BYTES - job->in_len, UINT64_MAX, stdin_read, job);
    if (ret < 0)
        fail(job, "reading stdin: %s", strerror(-ret));
}

/* Produces one line; false when it must wait for memory. */
static bool produce_line(struct kafka_job *job, const char *line, size_t len)
{
    const char *key = NULL, *value = line;
    int32_t key_len = -1, value_len = (int32_t)len;
    if (job->key_sep != NULL) {
        size_t sep_len = strlen(job->key_sep);
        const char *at = sep_len > 0 ? memmem(line, len, job->key_sep, sep_len) : NULL;
        if (at != NULL) {
            key = line;
            key_len = (int32_t)(at - line);
            value = at + sep_len;
            value_len = (int32_t)(len - (size_t)key_len - sep_len);
        }
    }
    int ret = sp_kafka_produce(&job->producer, job->topic, strlen(job->topic), job->partition, key,
                               key_len, value, value_len, NULL, 0, -1, NULL);
    if (ret == -ENOBUFS || ret == -EAGAIN)
        return false;
    if (ret < 0) {
        fail(job, "producing to '%s': %s", job->topic,
             ret == -ENOENT ? "no such topic" : strerror(-ret));
        return true;
    }
    job->lines++;
    return true;
}

static void produce_lines(struct kafka_job *job)
{
    job->blocked = false;
    uint32_t start = 0;
    while (!job->finishing) {
        uint8_t *nl = memchr(job->in + start, '\n', job->in_len - start);
        if (nl == NULL)
            break;
        if (!produce_line(job, (const char *)job->in + start, (size_t)(nl - job->in - start))) {
            job->blocked = true;
            break;
        }
        start = (uint32_t)(nl - job->in) + 1;
    }
    if (!job->blocked && job->eof && start < job->in_len && !job->finishing) {
        /* A last line without its newline. */
        if (produce_line(job, (const char *)job->in + start, job->in_len - start))
            start = job->in_len;
        else
            job->blocked = true;
    }
    memmove(job->in, job->in + start, job->in_len - start);
    job->in_len -= start;
    if (job->finishing)
        return;
    if (job->eof && !job->blocked && job->in_len == 0) {
        finish(job, 0);
        return;
    }
    if (!job->blocked)
        read_stdin(job);
    else
        sp_kafka_producer_flush(&job->producer);
}

/* ---- consume ---- */

static void print_field(const struct kafka_job *job, char f, const char *topic, int32_t partition,
                        const struct sp_record *r)
{
    switch (f) {
    case 't':
        fputs(topic, stdout);
        break;
    case 'p':
        printf("%d", partition);
        break;
    case 'o':
        printf("%lld", (long long)r->offset);
        break;
    case 'T':
        printf("%lld", (long long)r->timestamp);
        break;
    case 'k':
        if (r->key_len > 0)
            fwrite(r->key, 1, (size_t)r->key_len, stdout);
        break;
    case 's':
        if (r->value_len > 0)
            fwrite(r->value, 1, (size_t)r->value_len, stdout);
        break;
    case '%':
        putchar('%');
        break;
    default:
        putchar('%');
        putchar(f);
        break;
    }
    (void)job;
}

static void consumed(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                     const struct sp_record *r, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)c;
    if (job->finishing)
        return;
    if (job->format != NULL) {
        for (const char *f = job->format; *f; f++) {
            if (*f == '%' && f[1] != '\0')
                print_field(job, *++f, topic, partition, r);
            else if (*f == '\\' && f[1] == 'n' && ++f)
                putchar('\n');
            else if (*f == '\\' && f[1] == 't' && ++f)
                putchar('\t');
            else
                putchar(*f);
        }
    } else {
        if (job->key_sep != NULL) {
            print_field(job, 'k', topic, partition, r);
            fputs(job->key_sep, stdout);
        }
        print_field(job, 's', topic, partition, r);
        putchar('\n');
    }
    if (job->count > 0 && ++job->consumed >= job->count)
        finish(job, 0);
}

static void consume_error(struct sp_kafka_consumer *c, const char *topic, int32_t partition,
                          int err, int16_t code, void *ctx)
{
    struct kafka_job *job = ctx;
    (void)c;
    fail(job, "%s [%d]: %s", topic, partition,
         code != 0 ? sp_kafka_error_name(code) : strerror(-err));
}

/* ---- topic ---- */

static void topic_listed(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                         void *ctx)
{
    struct kafka_job *job = ctx;
    (void)conn;
    (void)version;
    if (err < 0) {
        fail(job, "listing topics: %s", strerror(-err));
        return;
    }
    const struct sp_kafka_metadata_response *r = body;
    for (int32_t i = 0; i < r->topics_count; i++) {
        const struct sp_kafka_metadata_response_metadata_response_topic *t = &r->topics[i];
        if (t->error_code != 0 || t->name.len <= 0)
            continue;
        printf("%.*s\t%d partitions\n", t->name.len, t->name.ptr, t->partitions_count);
    }
    finish(job, 0);
}

static void topic_changed(struct sp_kafka_client *client, const struct sp_kafka_admin_result *r,
                          void *ctx)
{
    struct kafka_job *job = ctx;
    (void)client;
    if (r->err < 0) {
        fail(job, "topic %s '%s': %s", job->sub, job->topic,
             r->message[0] != '\0' ? r->message : strerror(-r->err));
        return;
    }
    const struct sp_kafka_admin_item *it = &r->items[0];
    if (it->error != 0) {
        fail(job, "topic %s '%s': %s%s%s", job->sub, job->topic, sp_kafka_error_name(it->error),
             it->message[0] != '\0' ? ": " : "", it->message);
        return;
    }
    fprintf(stderr, "topic '%s' %sd\n", job->topic, job->sub);
    finish(job, 0);
}

static void topic_start(struct kafka_job *job, struct sp_kafka_conn *conn)
{
    int ret;
    int32_t timeout_ms = job->config.request_timeout_ms;
    if (strcmp(job->sub, "list") == 0) {
        struct sp_kafka_metadata_request req;
        sp_kafka_metadata_request_init(&req);
        req.topics_count = sp_kafka_conn_version(conn, 3) == 0 ? 0 : -1; /* all topics */
        ret = sp_kafka_conn_send(conn, 3, -1, &req, topic_listed, job);
    } else if (strcmp(job->sub, "create") == 0) {
        const struct sp_kafka_new_topic t = {job->topic, job->partitions, -1};
        ret = sp_kafka_admin_create_topics(&job->client, &t, 1, timeout_ms, topic_changed, job);
    } else {
        const char *name = job->topic;
        ret = sp_kafka_admin_delete_topics(&job->client, &name, 1, timeout_ms, topic_changed, job);
    }
    if (ret < 0)
        fail(job, "topic %s: %s", job->sub, strerror(-ret));
}

/* ---- Starting ---- */

static void client_event(struct sp_kafka_client *client, void *ctx)
{
    struct kafka_job *job = ctx;
    if (job->started || job->finishing)
        return;
    if (job->cmd == CMD_TOPIC) {
        struct sp_kafka_conn *conn = sp_kafka_client_any(client);
        if (conn != NULL) {
            job->started = true;
            topic_start(job, conn);
        }
        return;
    }
    int err = 0;
    struct sp_kafka_topic_info *t =
        sp_kafka_client_topic(client, job->topic, strlen(job->topic), &err);
    if (t == NULL) {
        fail(job, "topic '%s': %s", job->topic, strerror(-err));
        return;
    }
    if (!t->known) {
        if (client->metadata_ever && t->error != 0 && !sp_kafka_error_retriable(t->error))
            fail(job, "topic '%s': %s", job->topic, sp_kafka_error_name(t->error));
        return;
    }
    if (job->partition >= t->partition_count) {
        fail(job, "topic '%s' has %d partitions: no partition %d", job->topic, t->partition_count,
             job->partition);
        return;
    }
    job->started = true;
    sp_shard_timer_cancel(job->shard, &job->deadline);
    if (job->cmd == CMD_PRODUCE) {
        read_stdin(job);
        return;
    }
    if (job->group_up) {
        /* The group assigns the partitions. */
        if (job->exit_at_end)
            sp_shard_timer_arm(job->shard, &job->end_check, sp_now_ns() + 5 * SP_NSEC_PER_MSEC);
        return;
    }
    int ret = sp_kafka_consumer_assign(&job->consumer, job->topic, job->partition,
                                       job->from_beginning ? SP_KAFKA_OFFSET_BEGINNING
                                                           : SP_KAFKA_OFFSET_END);
    if (ret < 0) {
        fail(job, "consuming '%s': %s", job->topic, strerror(-ret));
        return;
    }
    if (job->exit_at_end)
        sp_shard_timer_arm(job->shard, &job->end_check, sp_now_ns() + 5 * SP_NSEC_PER_MSEC);
}

static void job_start(struct sp_shard *shard, void *ctx)
{
    struct kafka_job *job = ctx;
    job->shard = shard;
    sp_timer_init(&job->deadline, deadline_fired, job);
    sp_timer_init(&job->poll, poll_fired, job);
    sp_timer_init(&job->end_check, end_check_fired, job);
    sp_shard_on_stop(shard, &job->hook, on_stop);
    int ret = sp_kafka_client_init(&job->client, shard, &job->config, client_event, job);
    if (ret < 0) {
        fail(job, "bootstrap servers '%s': %s", job->brokers, strerror(-ret));
        return;
    }
    job->client_up = true;
    if (job->cmd == CMD_PRODUCE) {
        job->in = sp_arena_alloc(&shard->arena, STDIN_CHUNK_BYTES);
        if (job->in == NULL ||
            sp_kafka_producer_init(&job->producer, &job->client, delivered, job) < 0) {
            fail(job, "out of memory");
            return;
        }
        job->producer_up = true;
    } else if (job->cmd == CMD_CONSUME) {
        if (sp_kafka_consumer_init(&job->consumer, &job->client, consumed, consume_error, job) <
            0) {
            fail(job, "out of memory");
            return;
        }
        job->consumer_up = true;
        job->client.allow_auto_topic_creation = false;
        if (job->group_id != NULL) {
            const struct sp_kafka_group_callbacks cb = {0};
            ret = sp_kafka_group_init(&job->group, &job->consumer, &job->topic, 1, &cb);
            if (ret < 0) {
                fail(job, "group '%s': %s", job->group_id, strerror(-ret));
                return;
            }
            job->group_up = true;
        }
    }
    if (job->topic != NULL && job->cmd != CMD_TOPIC) {
        int err = 0;
        if (sp_kafka_client_topic(&job->client, job->topic, strlen(job->topic), &err) == NULL) {
            fail(job, "topic '%s': %s", job->topic, strerror(-err));
            return;
        }
    }
    sp_shard_timer_arm(shard, &job->deadline, sp_now_ns() + WAIT_METADATA_NS);
}

static int kafka_main(const struct spate_cli *cli, enum kafka_cmd cmd)
{
    static struct kafka_job job;
    memset(&job, 0, sizeof(job));
    job.cmd = cmd;
    if (parse_args(&job, cli) < 0) {
        fprintf(stderr, "spate: %s (see spate --help)\n", job.error);
        return 2;
    }
    struct sp_runtime_config config;
    sp_runtime_config_default(&config);
    spate_cli_config(cli, &config);
    config.shard_count = 1;
    config.handle_signals = true;
    config.on_start = job_start;
    config.ctx = &job;
    struct sp_runtime rt;
    int ret = sp_runtime_init(&rt, &config);
    if (ret < 0) {
        fprintf(stderr, "spate: cannot start the runtime: %s\n", strerror(-ret));
        return 1;
    }
    ret = sp_runtime_run(&rt);
    sp_runtime_deinit(&rt);
    fflush(stdout);
    if (cmd == CMD_PRODUCE && job.error[0] == '\0') {
        fprintf(stderr, "%llu records delivered to '%s', %llu failed\n",
                (unsigned long long)job.delivered, job.topic, (unsigned long long)job.failed);
        if (job.failed > 0) {
            snprintf(job.error, sizeof(job.error), "delivery failed: %s",
                     job.first_error_code != 0 ? sp_kafka_error_name(job.first_error_code)
                                               : strerror(-job.first_error));
            job.exit_code = 1;
        }
    }
    if (job.error[0] != '\0')
        fprintf(stderr, "spate: %s\n", job.error);
    if (ret < 0 && job.exit_code == 0)
        return 1;
    return job.exit_code;
}

int spate_produce(const struct spate_cli *cli)
{
    return kafka_main(cli, CMD_PRODUCE);
}

int spate_consume(const struct spate_cli *cli)
{
    return kafka_main(cli, CMD_CONSUME);
}

int spate_topic(const struct spate_cli *cli)
{
    return kafka_main(cli, CMD_TOPIC);
}
