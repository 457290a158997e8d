/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka sink (sp_sink_kafka): one producer per shard, on the shard's own
 * client (net/client/), writing every row of its input as one record of one
 * topic.
 *
 * A record's key is the key_field's value (a string's bytes as they are,
 * an int64 or a double as decimal text, a bool as true/false; no key_field:
 * a null key, spread by the sticky partitioner), its value the row in
 * `format` (sp_serde_encode: JSON by default), its timestamp the row's.
 * Partitions follow the key as the Java client's do (murmur2), so a keyed
 * result lands where Kafka Streams would put it.
 *
 * Backpressure. The producer copies each record into its batches at once;
 * this sink counts the key and value bytes not yet acknowledged and, past
 * spate.sink.buffer.bytes (16 MiB), blocks its input (sp_sink_block), which
 * stops the sources upstream; delivery reports bring it back under half of
 * that, and the sink unblocks. When the producer refuses a record (its
 * batch memory, buffer.memory, is full: -ENOBUFS; or the topic's metadata
 * is not there yet: -EAGAIN), the record and every later one wait, encoded,
 * in a FIFO (push() may not keep its batch) and the sink blocks until the
 * FIFO drained: nothing is dropped, and what waits is bounded by what the
 * operators upstream emit after the block (one source poll, and what one
 * watermark fires).
 *
 * Rows are counted (sp_sink_count) when the broker acknowledged them. A
 * failed delivery (retries exhausted, a broker error that is not
 * retriable, a topic that does not exist) fails the job with the error.
 * end() flushes the producer and reports the sink done (sp_sink_done, once)
 * when every record was acknowledged. The client closes in a stop hook of
 * the shard (the runtime drains only once every connection is down) and is
 * freed in close().
 *
 * Bootstrap servers that cannot be reached, or a topic that metadata does
 * not describe, within spate.sink.timeout.ms (30 s) of the start fail the
 * job.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_producer.h"
#include "sp_log.h"
#include "sp_op.h"

#define KSK_BUFFER_BYTES_DEFAULT (16u << 20)
#define KSK_TIMEOUT_MS_DEFAULT 30000
#define KSK_KEY_BYTES 48

struct ksk_config {
    struct sp_kafka_config kafka;
    char topic[SP_KAFKA_TOPIC_NAME_BYTES_MAX + 1];
    enum sp_format format;
    int key_field; /* -1: null keys */
    enum sp_type key_type;
    uint32_t key_offset;
    int64_t timeout_ms;
    uint64_t buffer_bytes;
};

/* A record waiting for the producer: this header, key, value, padding to 8. */
struct ksk_rec {
    int64_t ts;
    int32_t key_len; /* -1: null */
    int32_t value_len;
};

struct ksk {
    struct sp_inst *inst;
    const struct ksk_config *config;
    struct sp_kafka_client client;
    struct sp_kafka_producer producer;
    bool client_up, producer_up;
    struct sp_kafka_topic_info *topic;
    char *value;          /* one encoded value */
    uint32_t value_bytes; /* max.request.size */

    uint8_t *backlog; /* FIFO of struct ksk_rec */
    size_t backlog_read, backlog_len, backlog_cap;
    uint64_t backlog_records;
    uint64_t backlog_records_max;

    uint64_t produced, acked, failed;
    uint64_t bytes_outstanding;
    uint64_t bytes_outstanding_max; /* high-water mark */
    uint64_t blocks;                /* times the sink blocked its input */
    bool blocked;
    bool ending;
    bool done;
    bool closing;
    struct sp_timer deadline;
    struct sp_stop_hook hook;
};

static void ksk_fail(struct ksk *s, int err, const char *fmt, ...) SP_PRINTF(3, 4);

static void ksk_fail(struct ksk *s, int err, const char *fmt, ...)
{
    char msg[SP_JOB_ERROR_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_exec_fail(s->inst->xs, err, "kafka sink '%s': %s", s->config->topic, msg);
}

static bool ksk_stopped(const struct ksk *s)
{
    return s->closing || sp_exec_failed(s->inst->xs);
}

/* ---- Producing ---- */

static uint32_t rec_bytes(int32_t key_len, int32_t value_len)
{
    uint32_t n = (uint32_t)sizeof(struct ksk_rec) + (uint32_t)SP_MAX(key_len, 0) +
                 (uint32_t)SP_MAX(value_len, 0);
    return (n + 7u) & ~7u;
}

/* 1: produced; 0: the producer cannot take it now (retry later); <0: failed. */
static int ksk_produce(struct ksk *s, const void *key, int32_t key_len, const void *value,
                       int32_t value_len, int64_t ts)
{
    uint64_t bytes = (uint64_t)SP_MAX(key_len, 0) + (uint64_t)value_len;
    const struct ksk_config *c = s->config;
    int rc = sp_kafka_produce(&s->producer, c->topic, strlen(c->topic), -1, key, key_len, value,
                              value_len, NULL, 0, ts, (void *)(uintptr_t)bytes);
    if (rc == 0) {
        s->produced++;
        s->bytes_outstanding += bytes;
        if (s->bytes_outstanding > s->bytes_outstanding_max)
            s->bytes_outstanding_max = s->bytes_outstanding;
        return 1;
    }
    if (rc == -EAGAIN || rc == -ENOBUFS)
        return 0;
    if (rc == -ENOENT)
        ksk_fail(s, 0, "the topic does not exist");
    else if (rc == -EMSGSIZE)
        ksk_fail(s, 0, "a record of %llu bytes is larger than max.request.size (%d)",
                 (unsigned long long)bytes, c->kafka.max_request_size);
    else
        ksk_fail(s, rc, "producing");
    return rc;
}

static int ksk_backlog_add(struct ksk *s, const void *key, int32_t key_len, const void *value,
                           int32_t value_len, int64_t ts)
{
    uint32_t need = rec_bytes(key_len, value_len);
    if (s->backlog_len + need > s->backlog_cap) {
        /* Move what is left to the front, then grow if still short. */
        if (s->backlog_read > 0) {
            memmove(s->backlog, s->backlog + s->backlog_read, s->backlog_len - s->backlog_read);
            s->backlog_len -= s->backlog_read;
            s->backlog_read = 0;
        }
        if (s->backlog_len + need > s->backlog_cap) {
            size_t cap = SP_MAX(s->backlog_cap * 2, s->backlog_len + need + (64u << 10));
            uint8_t *b = realloc(s->backlog, cap);
            if (b == NULL) {
                ksk_fail(s, -ENOMEM, "holding records for the producer");
                return -ENOMEM;
            }
            s->backlog = b;
            s->backlog_cap = cap;
        }
    }
    struct ksk_rec h = {ts, key_len, value_len};
    uint8_t *at = s->backlog + s->backlog_len;
    memcpy(at, &h, sizeof(h));
    at += sizeof(h);
    if (key_len > 0)
        memcpy(at, key, (size_t)key_len);
    at += SP_MAX(key_len, 0);
    memcpy(at, value, (size_t)value_len);
    s->backlog_len += need;
    s->backlog_records++;
    if (s->backlog_records > s->backlog_records_max)
        s->backlog_records_max = s->backlog_records;
    return 0;
}

/* Hands the waiting records to the producer, in order, while it takes them. */
static void ksk_backlog_drain(struct ksk *s)
{
    while (s->backlog_read < s->backlog_len && !ksk_stopped(s)) {
        struct ksk_rec h;
        memcpy(&h, s->backlog + s->backlog_read, sizeof(h));
        const uint8_t *key = s->backlog + s->backlog_read + sizeof(h);
        const uint8_t *value = key + SP_MAX(h.key_len, 0);
        if (ksk_produce(s, h.key_len >= 0 ? key : NULL, h.key_len, value, h.value_len, h.ts) <= 0)
            return;
        s->backlog_read += rec_bytes(h.key_len, h.value_len);
        s->backlog_records--;
    }
    if (s->backlog_read == s->backlog_len)
        s->backlog_read = s->backlog_len = 0;
}

/* Blocks past the high-water mark or with records waiting; unblocks under half. */
static void ksk_update_block(struct ksk *s)
{
    bool waiting = s->backlog_len > s->backlog_read;
    if (!s->blocked && (waiting || s->bytes_outstanding >= s->config->buffer_bytes)) {
        s->blocked = true;
        s->blocks++;
        sp_sink_block(s->inst);
        sp_kafka_producer_flush(&s->producer); /* what is queued goes now */
    } else if (s->blocked && !waiting && s->bytes_outstanding <= s->config->buffer_bytes / 2) {
        s->blocked = false;
        sp_sink_unblock(s->inst);
    }
}

static void ksk_check_done(struct ksk *s)
{
    if (!s->ending || s->done || s->backlog_len > s->backlog_read ||
        s->acked + s->failed != s->produced)
        return;
    s->done = true;
    sp_debug("kafka sink '%s': %llu records acknowledged; blocked %llu times, at most %llu bytes "
             "unacknowledged, %llu records waiting for the producer",
             s->config->topic, (unsigned long long)s->acked, (unsigned long long)s->blocks,
             (unsigned long long)s->bytes_outstanding_max,
             (unsigned long long)s->backlog_records_max);
    sp_sink_done(s->inst);
}

static void ksk_delivered(struct sp_kafka_producer *producer, const struct sp_kafka_delivery *d,
                          void *ctx)
{
    struct ksk *s = ctx;
    (void)producer;
    uint64_t bytes = (uint64_t)(uintptr_t)d->msg_ctx;
    SP_ASSERT(s->bytes_outstanding >= bytes);
    s->bytes_outstanding -= bytes;
    if (d->err == 0) {
        s->acked++;
        sp_sink_count(s->inst, 1);
    } else {
        s->failed++;
        if (!ksk_stopped(s)) {
            if (d->err == -EPROTO && d->error_code != 0)
                ksk_fail(s, 0, "delivery to partition %d failed: %s", d->partition,
                         sp_kafka_error_name(d->error_code));
            else
                ksk_fail(s, d->err, "delivery to partition %d failed", d->partition);
        }
    }
    if (ksk_stopped(s))
        return;
    ksk_backlog_drain(s);
    ksk_update_block(s);
    ksk_check_done(s);
}

/* Metadata arrived or a broker came up: waiting records may go now. */
static void ksk_client_event(struct sp_kafka_client *client, void *ctx)
{
    struct ksk *s = ctx;
    (void)client;
    if (s->topic != NULL && s->topic->known)
        sp_shard_timer_cancel(s->inst->xs->shard, &s->deadline);
    if (ksk_stopped(s) || !s->producer_up)
        return;
    ksk_backlog_drain(s);
    if (s->ending)
        sp_kafka_producer_flush(&s->producer);
    ksk_update_block(s);
    ksk_check_done(s);
}

static void ksk_deadline(struct sp_timer *timer, void *ctx)
{
    struct ksk *s = ctx;
    (void)timer;
    if (ksk_stopped(s) || s->topic->known)
        return;
    long long ms = (long long)s->config->timeout_ms;
    if (!s->client.metadata_ever)
        ksk_fail(s, 0, "cannot reach the bootstrap servers %s within %lld ms: %s",
                 s->config->kafka.bootstrap_servers, ms,
                 s->client.bootstrap_error < 0 ? strerror(-s->client.bootstrap_error)
                                               : "no answer");
    else if (s->topic->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION)
        ksk_fail(s, 0, "the topic does not exist (waited %lld ms)", ms);
    else
        ksk_fail(s, 0, "no metadata for the topic within %lld ms (%s)", ms,
                 sp_kafka_error_name(s->topic->error));
}

/* ---- Rows in ---- */

/* The row's key as bytes (in `tmp` for numbers); length, -1 for a null key. */
static int32_t ksk_key(const struct ksk_config *c, const void *row, char tmp[KSK_KEY_BYTES],
                       const void **key)
{
    const uint8_t *p = (const uint8_t *)row + c->key_offset;
    *key = tmp;
    if (c->key_field < 0) {
        *key = NULL;
        return -1;
    }
    switch (c->key_type) {
    case SP_T_STR: {
        struct sp_str str;
        memcpy(&str, p, sizeof(str));
        *key = str.len > 0 ? str.ptr : "";
        return (int32_t)str.len;
    }
    case SP_T_I64: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return snprintf(tmp, KSK_KEY_BYTES, "%lld", (long long)v);
    }
    case SP_T_F64: {
        double v;
        memcpy(&v, p, sizeof(v));
        return snprintf(tmp, KSK_KEY_BYTES, "%.17g", v);
    }
    case SP_T_BOOL:
        return snprintf(tmp, KSK_KEY_BYTES, "%s", p[0] ? "true" : "false");
    }
    return -1;
}

static void ksk_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct ksk *s = inst->state;
    const struct sp_schema *schema = inst->node->schema;
    for (uint32_t i = 0; i < in->count && !ksk_stopped(s); i++) {
        const void *row = sp_batch_row(in, i);
        char tmp[KSK_KEY_BYTES];
        const void *key;
        int32_t key_len = ksk_key(s->config, row, tmp, &key);
        int n = sp_serde_encode(s->config->format, schema, row, s->value, s->value_bytes);
        if (n < 0) {
            ksk_fail(s, n == -ENOSPC ? 0 : n, "a row does not fit max.request.size (%u bytes)%s",
                     s->value_bytes, n == -ENOSPC ? " once encoded" : "");
            return;
        }
        int64_t ts = sp_batch_ts(in, i);
        int rc = 0;
        if (s->backlog_len == s->backlog_read)
            rc = ksk_produce(s, key, key_len, s->value, n, ts);
        if (rc < 0)
            return;
        if (rc == 0 && ksk_backlog_add(s, key, key_len, s->value, n, ts) < 0)
            return;
    }
    ksk_update_block(s);
}

static void ksk_end(struct sp_inst *inst)
{
    struct ksk *s = inst->state;
    s->ending = true;
    if (ksk_stopped(s))
        return;
    ksk_backlog_drain(s);
    sp_kafka_producer_flush(&s->producer);
    ksk_update_block(s);
    ksk_check_done(s);
}

/* ---- Life cycle ---- */

/* The shard is stopping: every connection closes so that it can drain. */
static void ksk_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct ksk *s = SP_CONTAINER_OF(hook, struct ksk, hook);
    s->closing = true;
    sp_shard_timer_cancel(shard, &s->deadline);
    /* Requests in flight fail first (their reports are ignored now), then the rest. */
    if (s->client_up && !s->client.closing)
        sp_kafka_client_close(&s->client);
    if (s->producer_up) {
        s->producer_up = false;
        sp_kafka_producer_deinit(&s->producer);
    }
    if (s->acked + s->failed != s->produced)
        sp_warn("kafka sink '%s': stopped with %llu records unacknowledged", s->config->topic,
                (unsigned long long)(s->produced - s->acked - s->failed));
}

static int ksk_open(struct sp_inst *inst)
{
    const struct ksk_config *c = inst->node->u.sink.config;
    struct sp_shard *shard = inst->xs->shard;
    struct ksk *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    inst->state = s;
    s->inst = inst;
    s->config = c;
    sp_timer_init(&s->deadline, ksk_deadline, s);
    s->value_bytes = (uint32_t)c->kafka.max_request_size;
    s->value = malloc(s->value_bytes);
    if (s->value == NULL)
        return -ENOMEM;
    int rc = sp_kafka_client_init(&s->client, shard, &c->kafka, ksk_client_event, s);
    if (rc < 0) {
        ksk_fail(s, rc, "bootstrap servers '%s'", c->kafka.bootstrap_servers);
        return rc;
    }
    s->client_up = true;
    s->client.allow_auto_topic_creation = false;
    sp_shard_on_stop(shard, &s->hook, ksk_stop);
    rc = sp_kafka_producer_init(&s->producer, &s->client, ksk_delivered, s);
    if (rc < 0) {
        ksk_fail(s, rc, "starting the producer");
        return rc;
    }
    s->producer_up = true;
    s->topic = sp_kafka_client_topic(&s->client, c->topic, strlen(c->topic), &rc);
    if (s->topic == NULL) {
        ksk_fail(s, rc, "the topic's name");
        return rc;
    }
    sp_shard_timer_arm(shard, &s->deadline,
                       sp_now_ns() + (uint64_t)c->timeout_ms * SP_NSEC_PER_MSEC);
    return 0;
}

static void ksk_close(struct sp_inst *inst)
{
    struct ksk *s = inst->state;
    if (s == NULL)
        return;
    sp_shard_timer_cancel(inst->xs->shard, &s->deadline);
    if (!s->closing)
        ksk_stop(&s->hook, inst->xs->shard); /* a failed start: no stop hook ran */
    if (s->client_up && !sp_kafka_client_idle(&s->client)) {
        /* The drain timed out with I/O in flight that points into s: keep it. */
        sp_warn("kafka sink '%s': connections still busy at close; leaking them", s->config->topic);
        inst->state = NULL;
        return;
    }
    if (s->client_up)
        sp_kafka_client_deinit(&s->client);
    free(s->backlog);
    free(s->value);
    free(s);
    inst->state = NULL;
}

static const struct sp_op_vt kafka_sink_vt = {
    .name = "kafka",
    .open = ksk_open,
    .push = ksk_push,
    .end = ksk_end,
    .close = ksk_close,
};

/* ---- Building ---- */

static bool ksk_set(struct sp_job *job, struct ksk_config *c, const char *key, const char *value)
{
    char err[256];
    int64_t v;
    char *end;
    bool timeout = strcmp(key, "spate.sink.timeout.ms") == 0;
    if (timeout || strcmp(key, "spate.sink.buffer.bytes") == 0) {
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < 1) {
            sp_job_set_error(job, "kafka sink: %s '%s': a positive integer", key, value);
            return false;
        }
        if (timeout)
            c->timeout_ms = v;
        else
            c->buffer_bytes = (uint64_t)v;
        return true;
    }
    if (sp_kafka_config_set(&c->kafka, key, value, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka sink: %s", err);
        return false;
    }
    return true;
}

static bool ksk_property(struct sp_job *job, struct ksk_config *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
        sp_job_set_error(job, "kafka sink: property '%s': must be key=value", kv);
        return false;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    return ksk_set(job, c, key, eq + 1);
}

static bool ksk_configure(struct sp_job *job, struct ksk_config *c,
                          const struct sp_kafka_sink_config *config, enum sp_format format,
                          const struct sp_schema *schema)
{
    if (config->bootstrap == NULL || config->bootstrap[0] == '\0' || config->topic == NULL ||
        config->topic[0] == '\0') {
        sp_job_set_error(job, "kafka sink: bootstrap servers and a topic are needed");
        return false;
    }
    if (strlen(config->topic) > SP_KAFKA_TOPIC_NAME_BYTES_MAX) {
        sp_job_set_error(job, "kafka sink: a topic name has at most %u characters",
                         SP_KAFKA_TOPIC_NAME_BYTES_MAX);
        return false;
    }
    if (format > SP_FORMAT_STRING) {
        sp_job_set_error(job, "kafka sink: unknown format %d", (int)format);
        return false;
    }
    int value = sp_schema_find(schema, "value");
    if ((format == SP_FORMAT_RAW || format == SP_FORMAT_STRING) &&
        (value < 0 || schema->fields[value].type != SP_T_STR)) {
        sp_job_set_error(job, "kafka sink: RAW and STRING need a string field 'value' in '%s'",
                         schema->name ? schema->name : "the schema");
        return false;
    }
    c->key_field = -1;
    if (config->key_field != NULL) {
        c->key_field = sp_schema_find(schema, config->key_field);
        if (c->key_field < 0) {
            sp_job_set_error(job, "kafka sink: '%s' has no field '%s' for the key",
                             schema->name ? schema->name : "the input", config->key_field);
            return false;
        }
        c->key_type = schema->fields[c->key_field].type;
        c->key_offset = schema->fields[c->key_field].offset;
    }
    snprintf(c->topic, sizeof(c->topic), "%s", config->topic);
    c->format = format;
    c->timeout_ms = KSK_TIMEOUT_MS_DEFAULT;
    c->buffer_bytes = KSK_BUFFER_BYTES_DEFAULT;
    sp_kafka_config_init(&c->kafka);
    if (!ksk_set(job, c, "client.id", "spate-sink"))
        return false;
    for (unsigned i = 0; config->properties != NULL && config->properties[i] != NULL; i++)
        if (!ksk_property(job, c, config->properties[i]))
            return false;
    if (!ksk_set(job, c, "bootstrap.servers", config->bootstrap))
        return false;
    char err[256];
    if (sp_kafka_config_validate(&c->kafka, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka sink: %s", err);
        return false;
    }
    return true;
}

void sp_sink_kafka(struct sp_stream *in, const struct sp_kafka_sink_config *config,
                   enum sp_format format)
{
    struct sp_job *job = sp_stream_job(in);
    const struct sp_schema *schema = sp_stream_schema(in);
    if (schema == NULL)
        return; /* the stream is a placeholder: its error is recorded */
    if (config == NULL) {
        sp_job_set_error(job, "kafka sink: no configuration given");
        return;
    }
    struct ksk_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sp_job_set_error(job, "kafka sink: out of memory");
        return;
    }
    if (!ksk_configure(job, c, config, format, schema)) {
        free(c);
        return;
    }
    sp_job_add_sink(in, "kafka", &kafka_sink_vt, c, free);
}
