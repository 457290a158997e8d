/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka producer (see sp_kafka_producer.h).
 *
 * A batch's life: open (records appended) -> ready (finished: compressed,
 * sequenced, CRC written; queued on its partition in sequence order) ->
 * in flight (in a Produce request) -> delivered, or back to ready for a
 * retry, or failed. A batch's memory returns to the pool when it is
 * delivered or failed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sp_crc32c.h"
#include "sp_kafka_producer.h"
#include "sp_log.h"

/* A record's smallest framing: length, attributes, deltas, key and value lengths, headers. */
#define RECORD_OVERHEAD_BYTES_MIN 7
#define PRODUCE_API_KEY 0
#define INIT_PRODUCER_ID_API_KEY 22
#define ERR_INVALID_TXN_STATE 48 /* Kafka's INVALID_TXN_STATE */

struct sp_kafka_pbatch {
    struct sp_kafka_pbatch *next;
    struct sp_kafka_ppart *part;
    uint8_t *buf;
    uint8_t *scratch;
    uint32_t buf_bytes;
    uint32_t scratch_bytes;
    bool pooled; /* back to the pool when done (else an oversized one-off) */
    bool finished;
    uint32_t count;
    uint32_t ctx_cap;
    void **ctxs;  /* each record's msg_ctx */
    size_t bytes; /* the finished batch */
    uint64_t created_ns;
    int32_t base_sequence;
    uint32_t attempts;
    struct sp_record_builder builder;
};

/* A Produce request in flight: which batches it carries. */
struct preq {
    struct sp_kafka_producer *producer;
    uint32_t count;
    struct sp_kafka_pbatch *batches[SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX];
};

static void producer_drain(struct sp_kafka_producer *p);
static void init_producer_id(struct sp_kafka_producer *p);
static void txn_maybe_end(struct sp_kafka_producer *p);
static void txn_add_partitions(struct sp_kafka_producer *p);
static void txn_init_step(struct sp_kafka_producer *p);

enum txn_state {
    TXN_NONE = 0, /* not transactional */
    TXN_UNINIT,   /* transactional, txn_init not called yet */
    TXN_INITING,
    TXN_READY,    /* between transactions */
    TXN_IN,       /* in a transaction */
    TXN_ENDING,   /* waiting for reports, then EndTxn */
    TXN_END_SENT, /* EndTxn in flight */
    TXN_FATAL,
};

static bool transactional(const struct sp_kafka_producer *p)
{
    return p->txn_id[0] != '\0';
}

static struct sp_arena *arena_of(struct sp_kafka_producer *p)
{
    return &p->client->shard->arena;
}

static bool idempotent(const struct sp_kafka_producer *p)
{
    return sp_kafka_config_idempotent(p->config);
}

static uint32_t max_inflight(const struct sp_kafka_producer *p)
{
    return idempotent(p) ? (uint32_t)SP_MIN(p->config->max_in_flight_requests_per_connection, 5)
                         : 1;
}

/* ---- Batch memory ---- */

static struct sp_kafka_pbatch *batch_new(struct sp_kafka_producer *p, uint32_t record_bytes)
{
    struct sp_kafka_pbatch *b = NULL;
    bool oversized = record_bytes + SP_RECORD_BATCH_HEADER_BYTES > p->scratch_bytes &&
                     record_bytes + SP_RECORD_BATCH_HEADER_BYTES > (uint32_t)p->config->batch_size;
    if (!oversized && p->free_batches != NULL) {
        b = p->free_batches;
        p->free_batches = b->next;
    } else {
        uint32_t buf_bytes =
            oversized ? record_bytes + SP_RECORD_BATCH_HEADER_BYTES + 64 : p->batch_bytes;
        if (p->config->compression_type != SP_RECORD_CODEC_NONE)
            buf_bytes = (uint32_t)sp_record_compress_bound(p->config->compression_type, buf_bytes) +
                        SP_RECORD_BATCH_HEADER_BYTES;
        uint32_t scratch = p->config->compression_type != SP_RECORD_CODEC_NONE
                               ? SP_MAX(p->scratch_bytes, record_bytes + 64)
                               : 0;
        uint32_t ctx_cap = (SP_MAX(buf_bytes, scratch) / RECORD_OVERHEAD_BYTES_MIN) + 1;
        uint64_t total = sizeof(*b) + buf_bytes + scratch + (uint64_t)ctx_cap * sizeof(void *);
        if (!oversized && p->pool_bytes + total > p->pool_bytes_max)
            return NULL;
        b = sp_arena_alloc(arena_of(p), sizeof(*b));
        uint8_t *buf = sp_arena_alloc(arena_of(p), buf_bytes);
        uint8_t *scr = scratch > 0 ? sp_arena_alloc(arena_of(p), scratch) : NULL;
        void **ctxs = sp_arena_alloc(arena_of(p), ctx_cap * sizeof(void *));
        if (b == NULL || buf == NULL || (scratch > 0 && scr == NULL) || ctxs == NULL) {
            sp_arena_free(arena_of(p), b);
            sp_arena_free(arena_of(p), buf);
            sp_arena_free(arena_of(p), scr);
            sp_arena_free(arena_of(p), ctxs);
            return NULL;
        }
        memset(b, 0, sizeof(*b));
        b->buf = buf;
        b->buf_bytes = buf_bytes;
        b->scratch = scr;
        b->scratch_bytes = scratch;
        b->ctxs = ctxs;
        b->ctx_cap = ctx_cap;
        b->pooled = !oversized;
        if (!oversized)
            p->pool_bytes += total;
    }
    b->next = NULL;
    b->finished = false;
    b->count = 0;
    b->attempts = 0;
    b->base_sequence = -1;
    b->created_ns = sp_now_ns();
    struct sp_record_builder_config bc = SP_RECORD_BUILDER_CONFIG_INIT;
    bc.codec = p->config->compression_type;
    bc.transactional = transactional(p);
    bc.scratch = b->scratch;
    bc.scratch_bytes = b->scratch_bytes;
    if (sp_record_builder_init(&b->builder, b->buf, b->buf_bytes, &bc) < 0) {
        b->next = p->free_batches;
        p->free_batches = b;
        return NULL;
    }
    return b;
}

static void batch_free(struct sp_kafka_producer *p, struct sp_kafka_pbatch *b)
{
    if (b->pooled) {
        b->next = p->free_batches;
        p->free_batches = b;
        return;
    }
    sp_arena_free(arena_of(p), b->buf);
    sp_arena_free(arena_of(p), b->scratch);
    sp_arena_free(arena_of(p), b->ctxs);
    sp_arena_free(arena_of(p), b);
}

/* ---- Delivery ---- */

static void deliver(struct sp_kafka_producer *p, struct sp_kafka_pbatch *b, int err,
                    int16_t error_code, int64_t base_offset)
{
    struct sp_kafka_ppart *part = b->part;
    struct sp_kafka_delivery d = {
        .topic = part->topic->info->name,
        .partition = part->partition,
        .err = err,
        .error_code = error_code,
    };
    for (uint32_t i = 0; i < b->count; i++) {
        d.offset = err == 0 && base_offset >= 0 ? base_offset + i : -1;
        d.msg_ctx = b->ctxs[i];
        if (p->delivery_fn != NULL)
            p->delivery_fn(p, &d, p->ctx);
    }
    if (err == 0)
        p->records_delivered += b->count;
    else
        p->records_failed += b->count;
    batch_free(p, b);
    txn_maybe_end(p);
}

/* ---- Closing batches ---- */

/*
 * Puts a finished batch on its partition's ready list, in sequence order;
 * without sequences, a retried batch (`front`) goes first so that order
 * holds.
 */
static void ready_insert(struct sp_kafka_ppart *part, struct sp_kafka_pbatch *b, bool front)
{
    b->next = NULL;
    if (front && b->base_sequence < 0) {
        b->next = part->ready_head;
        part->ready_head = b;
        if (part->ready_tail == NULL)
            part->ready_tail = b;
        return;
    }
    if (part->ready_head == NULL) {
        part->ready_head = part->ready_tail = b;
        return;
    }
    if (b->base_sequence < 0 || part->ready_tail->base_sequence < b->base_sequence) {
        part->ready_tail->next = b;
        part->ready_tail = b;
        return;
    }
    struct sp_kafka_pbatch **at = &part->ready_head;
    while (*at != NULL && (*at)->base_sequence < b->base_sequence)
        at = &(*at)->next;
    b->next = *at;
    *at = b;
    if (b->next == NULL)
        part->ready_tail = b;
}

/*
 * Writes the producer id, epoch and base sequence into a finished batch and
 * recomputes its CRC (which covers them): for the first send, and again
 * after an epoch bump.
 */
static void batch_stamp(struct sp_kafka_producer *p, struct sp_kafka_pbatch *b)
{
    uint8_t *h = b->buf;
    sp_kstore64(h + 43, (uint64_t)p->producer_id);
    sp_kstore16(h + 51, (uint16_t)p->producer_epoch);
    sp_kstore32(h + 53, (uint32_t)b->base_sequence);
    sp_kstore32(h + 17, sp_crc32c(0, h + 21, b->bytes - 21));
}

static void batch_close(struct sp_kafka_producer *p, struct sp_kafka_ppart *part)
{
    struct sp_kafka_pbatch *b = part->open;
    if (b == NULL)
        return;
    part->open = NULL;
    size_t bytes = 0;
    int ret = sp_record_builder_finish(&b->builder, &p->codec, &bytes);
    if (ret < 0) {
        sp_warn("kafka producer: batch for %s-%d: %s", part->topic->info->name, part->partition,
                strerror(-ret));
        deliver(p, b, ret, 0, -1);
        return;
    }
    b->bytes = bytes;
    b->finished = true;
    if (idempotent(p) && p->producer_id >= 0) {
        b->base_sequence = part->next_sequence;
        part->next_sequence += (int32_t)b->count;
        batch_stamp(p, b);
    }
    ready_insert(part, b, false);
    sp_kafka_sticky_batch_done(&part->topic->sticky, part->partition);
}

static void linger_timer_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)timer;
    uint64_t now = sp_now_ns();
    uint64_t linger = (uint64_t)p->config->linger_ms * SP_NSEC_PER_MSEC;
    uint64_t next = UINT64_MAX;
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        for (int32_t i = 0; i < topic->part_count; i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            if (part->open == NULL || part->open->count == 0)
                continue;
            if (part->open->created_ns + linger <= now)
                batch_close(p, part);
            else
                next = SP_MIN(next, part->open->created_ns + linger);
        }
    }
    if (next != UINT64_MAX)
        sp_shard_timer_arm(p->client->shard, &p->linger_timer, next);
    producer_drain(p);
}

/* ---- Sending ---- */

static void produce_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                         void *ctx);

static bool retriable_for_producer(int16_t code)
{
    return sp_kafka_error_retriable(code) || code == SP_KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
}

/* A batch that must be tried again, or failed when out of time. */
static void batch_retry(struct sp_kafka_producer *p, struct sp_kafka_pbatch *b, int err,
                        int16_t code)
{
    uint64_t limit = (uint64_t)sp_kafka_config_delivery_timeout_ms(p->config) * SP_NSEC_PER_MSEC;
    if (p->closing || sp_now_ns() - b->created_ns > limit) {
        deliver(p, b, p->closing ? -ECANCELED : -ETIMEDOUT, code, -1);
        return;
    }
    b->attempts++;
    p->retries++;
    (void)err;
    ready_insert(b->part, b, true);
}

static int16_t acks_of(const struct sp_kafka_producer *p)
{
    return (int16_t)p->config->acks;
}

/* Sends one Produce request to broker `leader` with what is ready for it. */
static void send_to(struct sp_kafka_producer *p, int32_t leader, struct sp_kafka_conn *conn)
{
    struct preq *req = sp_arena_alloc(arena_of(p), sizeof(*req));
    if (req == NULL)
        return;
    req->producer = p;
    req->count = 0;
    struct sp_kafka_produce_request_topic_produce_data tds[SP_KAFKA_PRODUCER_TOPICS_MAX];
    struct sp_kafka_produce_request_partition_produce_data
        pds[SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX];
    uint32_t td_count = 0, pd_count = 0;
    size_t bytes = 0;
    for (unsigned t = 0; t < p->topic_count && pd_count < SP_ARRAY_LEN(pds); t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        uint32_t first = pd_count;
        for (int32_t i = 0; i < topic->part_count && pd_count < SP_ARRAY_LEN(pds); i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            struct sp_kafka_pbatch *b = part->ready_head;
            if (b == NULL || part->inflight >= max_inflight(p) ||
                topic->info->partitions[i].leader != leader)
                continue;
            if (transactional(p) && !part->txn_added)
                continue; /* AddPartitionsToTxn first */
            if (bytes + b->bytes > (size_t)p->config->max_request_size && pd_count > first)
                break;
            part->ready_head = b->next;
            if (part->ready_head == NULL)
                part->ready_tail = NULL;
            b->next = NULL;
            part->inflight++;
            sp_kafka_produce_request_partition_produce_data_init(&pds[pd_count]);
            pds[pd_count].index = part->partition;
            pds[pd_count].records = (struct sp_kbytes){b->buf, (int32_t)b->bytes};
            pd_count++;
            req->batches[req->count++] = b;
            bytes += b->bytes;
        }
        if (pd_count > first) {
            sp_kafka_produce_request_topic_produce_data_init(&tds[td_count]);
            tds[td_count].name = sp_kstr_of(topic->info->name);
            tds[td_count].partition_data = &pds[first];
            tds[td_count].partition_data_count = (int32_t)(pd_count - first);
            td_count++;
        }
    }
    if (req->count == 0) {
        sp_arena_free(arena_of(p), req);
        return;
    }
    struct sp_kafka_produce_request body;
    sp_kafka_produce_request_init(&body);
    body.acks = acks_of(p);
    body.timeout_ms = p->config->request_timeout_ms;
    body.topic_data = tds;
    body.topic_data_count = (int32_t)td_count;
    bool no_answer = body.acks == 0;
    int ret =
        sp_kafka_conn_send(conn, PRODUCE_API_KEY, -1, &body, no_answer ? NULL : produce_done, req);
    if (ret < 0) {
        /* Not sent: everything goes back, in order, for the next try. */
        for (uint32_t i = 0; i < req->count; i++) {
            req->batches[i]->part->inflight--;
            ready_insert(req->batches[i]->part, req->batches[i], true);
        }
        sp_arena_free(arena_of(p), req);
        return;
    }
    p->requests_sent++;
    p->batches_sent += req->count;
    if (no_answer) {
        for (uint32_t i = 0; i < req->count; i++) {
            req->batches[i]->part->inflight--;
            deliver(p, req->batches[i], 0, 0, -1);
        }
        sp_arena_free(arena_of(p), req);
    }
}

static void producer_drain(struct sp_kafka_producer *p)
{
    if (transactional(p)) {
        if (p->txn_state != TXN_IN && p->txn_state != TXN_ENDING && p->txn_state != TXN_END_SENT)
            return; /* records wait for a transaction */
        txn_add_partitions(p);
    } else if (p->fatal || (idempotent(p) && p->producer_id < 0)) {
        if (idempotent(p) && p->producer_id < 0)
            init_producer_id(p);
        return;
    }
    /* One request per leader with ready batches whose connection is up. */
    int32_t leaders[SP_KAFKA_CLIENT_BROKERS_MAX];
    unsigned leader_count = 0;
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        for (int32_t i = 0; i < topic->part_count; i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            if (part->ready_head == NULL || part->inflight >= max_inflight(p))
                continue;
            int32_t leader = topic->info->partitions[i].leader;
            if (leader < 0)
                continue;
            bool seen = false;
            for (unsigned l = 0; l < leader_count; l++)
                seen |= leaders[l] == leader;
            if (!seen && leader_count < SP_ARRAY_LEN(leaders))
                leaders[leader_count++] = leader;
        }
    }
    for (unsigned l = 0; l < leader_count; l++) {
        struct sp_kafka_conn *conn = sp_kafka_client_broker(p->client, leaders[l]);
        if (conn == NULL) {
            sp_kafka_client_refresh(p->client);
            continue;
        }
        if (sp_kafka_conn_ready(conn))
            send_to(p, leaders[l], conn);
    }
}

static void produce_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                         void *ctx)
{
    struct preq *req = ctx;
    struct sp_kafka_producer *p = req->producer;
    (void)conn;
    (void)version;
    bool refresh = false;
    bool bump = false;
    for (uint32_t i = 0; i < req->count; i++) {
        struct sp_kafka_pbatch *b = req->batches[i];
        struct sp_kafka_ppart *part = b->part;
        part->inflight--;
        if (err < 0) {
            refresh = true;
            batch_retry(p, b, err, 0);
            continue;
        }
        const struct sp_kafka_produce_response *r = body;
        const struct sp_kafka_produce_response_partition_produce_response *pr = NULL;
        for (int32_t t = 0; t < r->responses_count && pr == NULL; t++) {
            if (!sp_kstr_eq(r->responses[t].name, part->topic->info->name))
                continue;
            for (int32_t q = 0; q < r->responses[t].partition_responses_count; q++)
                if (r->responses[t].partition_responses[q].index == part->partition)
                    pr = &r->responses[t].partition_responses[q];
        }
        int16_t code = pr != NULL ? pr->error_code : SP_KAFKA_ERR_NETWORK_EXCEPTION;
        if (code == 0 || code == SP_KAFKA_ERR_DUPLICATE_SEQUENCE_NUMBER) {
            deliver(p, b, 0, 0, pr->base_offset);
            continue;
        }
        if (code == SP_KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER) {
            /* An earlier batch of this partition still to be resolved
             * explains the gap: it is retried, then this one. Otherwise the
             * broker lost our sequence state: a new epoch. */
            bool earlier =
                part->inflight > 0 ||
                (part->ready_head != NULL && part->ready_head->base_sequence < b->base_sequence);
            bump |= !earlier;
        }
        if (retriable_for_producer(code)) {
            sp_debug("kafka producer: %s-%d seq %d: %s, retrying", part->topic->info->name,
                     part->partition, b->base_sequence, sp_kafka_error_name(code));
            refresh |= code != SP_KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
            batch_retry(p, b, -EPROTO, code);
            continue;
        }
        sp_warn("kafka producer: %s-%d: %s", part->topic->info->name, part->partition,
                sp_kafka_error_name(code));
        deliver(p, b, -EPROTO, code, -1);
    }
    sp_arena_free(arena_of(p), req);
    if (bump && idempotent(p) && !p->pid_inflight) {
        p->producer_id = -1; /* no sends until the new epoch */
        p->epoch_bumps++;
    }
    if (refresh)
        sp_kafka_client_refresh(p->client);
    producer_drain(p);
}

/* ---- Idempotence: producer id and epoch ---- */

static void restamp_all(struct sp_kafka_producer *p)
{
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        for (int32_t i = 0; i < topic->part_count; i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            SP_ASSERT(part->inflight == 0 || part->next_sequence >= 0);
            part->next_sequence = 0;
            for (struct sp_kafka_pbatch *b = part->ready_head; b != NULL; b = b->next) {
                b->base_sequence = part->next_sequence;
                part->next_sequence += (int32_t)b->count;
                batch_stamp(p, b);
            }
        }
    }
}

static void init_producer_id_done(struct sp_kafka_conn *conn, int err, const void *body,
                                  int16_t version, void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)conn;
    (void)version;
    p->pid_inflight = false;
    if (err < 0) {
        sp_kafka_client_refresh(p->client);
        return; /* tried again on the next drain */
    }
    const struct sp_kafka_init_producer_id_response *r = body;
    if (r->error_code != 0) {
        if (sp_kafka_error_retriable(r->error_code))
            return;
        sp_warn("kafka producer: InitProducerId: %s", sp_kafka_error_name(r->error_code));
        p->fatal = true;
        p->fatal_error = -EPROTO;
        return;
    }
    p->producer_id = r->producer_id;
    p->producer_epoch = r->producer_epoch;
    sp_debug("kafka producer: id %lld epoch %d", (long long)p->producer_id, p->producer_epoch);
    restamp_all(p);
    producer_drain(p);
}

static void init_producer_id(struct sp_kafka_producer *p)
{
    if (p->pid_inflight || p->closing)
        return;
    struct sp_kafka_conn *conn = sp_kafka_client_any(p->client);
    if (conn == NULL)
        return;
    /* Nothing of the old epoch may be in flight when the new one applies. */
    for (unsigned t = 0; t < p->topic_count; t++)
        for (int32_t i = 0; i < p->topics[t].part_count; i++)
            if (p->topics[t].parts[i].inflight > 0)
                return;
    struct sp_kafka_init_producer_id_request req;
    sp_kafka_init_producer_id_request_init(&req);
    /* Not transactional: -1, as librdkafka sends (Kafka ignores it then,
     * librdkafka's mock cluster refuses anything else). */
    req.transaction_timeout_ms = -1;
    req.transactional_id = SP_KSTR_NULL; /* the schema's default is "", not null */
    if (sp_kafka_conn_send(conn, INIT_PRODUCER_ID_API_KEY, -1, &req, init_producer_id_done, p) == 0)
        p->pid_inflight = true;
}

/* ---- Topics and partitions ---- */

static void client_changed(struct sp_kafka_client *client, void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    if (p->txn_state == TXN_INITING)
        txn_init_step(p);
    txn_maybe_end(p);
    producer_drain(p);
    if (p->chained_fn != NULL)
        p->chained_fn(client, p->chained_ctx);
}

static struct sp_kafka_ptopic *ptopic_get(struct sp_kafka_producer *p, const char *name, size_t len,
                                          int *err)
{
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        if (strlen(topic->info->name) == len && memcmp(topic->info->name, name, len) == 0) {
            if (!topic->info->known) {
                *err = -EAGAIN;
                return NULL;
            }
            if (topic->part_count != topic->info->partition_count) {
                /* Partitions were added: keep what exists, add the rest. */
                struct sp_kafka_ppart *parts = sp_arena_alloc(
                    arena_of(p), (size_t)topic->info->partition_count * sizeof(*parts));
                if (parts == NULL || topic->info->partition_count < topic->part_count) {
                    sp_arena_free(arena_of(p), parts);
                    *err = -ENOMEM;
                    return NULL;
                }
                memset(parts, 0, (size_t)topic->info->partition_count * sizeof(*parts));
                if (topic->part_count > 0)
                    memcpy(parts, topic->parts, (size_t)topic->part_count * sizeof(*parts));
                for (int32_t i = topic->part_count; i < topic->info->partition_count; i++) {
                    parts[i].topic = topic;
                    parts[i].partition = i;
                }
                /* Batches point at their partition: re-point them. */
                for (int32_t i = 0; i < topic->part_count; i++) {
                    if (parts[i].open != NULL)
                        parts[i].open->part = &parts[i];
                    for (struct sp_kafka_pbatch *b = parts[i].ready_head; b; b = b->next)
                        b->part = &parts[i];
                }
                if (topic->parts != NULL && topic->part_count > 0) {
                    for (int32_t i = 0; i < topic->part_count; i++)
                        if (topic->parts[i].inflight > 0) {
                            /* In-flight batches still point at the old array. */
                            sp_arena_free(arena_of(p), parts);
                            *err = -EAGAIN;
                            return NULL;
                        }
                    sp_arena_free(arena_of(p), topic->parts);
                }
                topic->parts = parts;
                topic->part_count = topic->info->partition_count;
            }
            return topic;
        }
    }
    if (p->topic_count == SP_KAFKA_PRODUCER_TOPICS_MAX) {
        *err = -ENOSPC;
        return NULL;
    }
    struct sp_kafka_topic_info *info = sp_kafka_client_topic(p->client, name, len, err);
    if (info == NULL)
        return NULL;
    struct sp_kafka_ptopic *topic = &p->topics[p->topic_count++];
    memset(topic, 0, sizeof(*topic));
    topic->info = info;
    sp_kafka_sticky_init(&topic->sticky, &p->rand);
    *err = -EAGAIN; /* known after the metadata answer */
    if (info->known)
        return ptopic_get(p, name, len, err);
    return NULL;
}

static int32_t choose_partition(struct sp_kafka_ptopic *topic, const void *key, int32_t key_len)
{
    int32_t count = topic->part_count;
    if (key != NULL && key_len >= 0)
        return sp_kafka_partition_for_key(key, (size_t)key_len, count);
    if (topic->sticky.partition >= 0 && topic->sticky.partition < count)
        return topic->sticky.partition;
    int32_t available[SP_KAFKA_PARTITIONS_MAX];
    unsigned n = 0;
    for (int32_t i = 0; i < count; i++)
        if (topic->info->partitions[i].leader >= 0)
            available[n++] = i;
    return sp_kafka_sticky_partition(&topic->sticky, count, available, n);
}

/* ---- Public ---- */

int sp_kafka_produce(struct sp_kafka_producer *p, const char *topic_name, size_t topic_len,
                     int32_t partition, const void *key, int32_t key_len, const void *value,
                     int32_t value_len, const struct sp_record_header *headers,
                     uint32_t header_count, int64_t timestamp_ms, void *msg_ctx)
{
    if (p->fatal || p->closing)
        return -EPIPE;
    if (transactional(p) && (p->txn_state != TXN_IN || p->txn_resumed))
        return -EPROTO; /* produce inside txn_begin .. txn_end only, not into a resumed one */
    int err = 0;
    struct sp_kafka_ptopic *topic = ptopic_get(p, topic_name, topic_len, &err);
    if (topic == NULL)
        return err;
    if (topic->info->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION && topic->part_count == 0)
        return -ENOENT;
    if (topic->part_count == 0)
        return -EAGAIN;
    if (partition < -1 || partition >= topic->part_count)
        return -EINVAL;
    if (partition < 0)
        partition = choose_partition(topic, key, key_len);
    struct sp_kafka_ppart *part = &topic->parts[partition];

    size_t record_bytes = (size_t)SP_MAX(key_len, 0) + (size_t)SP_MAX(value_len, 0) + 32;
    for (uint32_t i = 0; i < header_count; i++)
        record_bytes += (size_t)headers[i].key_len + (size_t)SP_MAX(headers[i].value_len, 0) + 10;
    if (record_bytes + SP_RECORD_BATCH_HEADER_BYTES > (size_t)p->config->max_request_size)
        return -EMSGSIZE;
    if (timestamp_ms < 0)
        timestamp_ms = sp_wall_ms();

    struct sp_record_input in = {
        .timestamp = timestamp_ms,
        .key = key,
        .key_len = key != NULL ? key_len : -1,
        .value = value,
        .value_len = value != NULL ? value_len : -1,
        .headers = headers,
        .header_count = header_count,
    };
    for (int attempt = 0; attempt < 2; attempt++) {
        if (part->open == NULL) {
            part->open = batch_new(p, (uint32_t)record_bytes);
            if (part->open == NULL)
                return -ENOBUFS;
            part->open->part = part;
            if (!sp_timer_armed(&p->linger_timer))
                sp_shard_timer_arm(p->client->shard, &p->linger_timer,
                                   sp_now_ns() + (uint64_t)p->config->linger_ms * SP_NSEC_PER_MSEC);
        }
        struct sp_kafka_pbatch *b = part->open;
        in.offset_delta = (int32_t)b->count;
        int ret = b->count < b->ctx_cap ? sp_record_builder_append(&b->builder, &in) : -ENOBUFS;
        if (ret == 0) {
            b->ctxs[b->count++] = msg_ctx;
            p->records_queued++;
            if (b->builder.records_len + SP_RECORD_BATCH_HEADER_BYTES >=
                (size_t)p->config->batch_size) {
                batch_close(p, part);
                producer_drain(p);
            }
            return 0;
        }
        if (ret != -ENOBUFS || b->count == 0)
            return ret == -ENOBUFS ? -EMSGSIZE : ret;
        batch_close(p, part); /* full: the record starts the next batch */
        producer_drain(p);
    }
    return -ENOBUFS;
}

void sp_kafka_producer_flush(struct sp_kafka_producer *p)
{
    for (unsigned t = 0; t < p->topic_count; t++)
        for (int32_t i = 0; i < p->topics[t].part_count; i++)
            if (p->topics[t].parts[i].open != NULL && p->topics[t].parts[i].open->count > 0)
                batch_close(p, &p->topics[t].parts[i]);
    producer_drain(p);
}

uint64_t sp_kafka_producer_outstanding(const struct sp_kafka_producer *p)
{
    return p->records_queued - p->records_delivered - p->records_failed;
}

int sp_kafka_producer_init(struct sp_kafka_producer *p, struct sp_kafka_client *client,
                           sp_kafka_delivery_fn *fn, void *ctx)
{
    SP_ASSERT(p != NULL);
    SP_ASSERT(client != NULL);
    memset(p, 0, sizeof(*p));
    p->client = client;
    p->config = client->config;
    p->delivery_fn = fn;
    p->ctx = ctx;
    p->producer_id = -1;
    p->producer_epoch = -1;
    p->pool_bytes_max = SP_KAFKA_PRODUCER_BUFFER_MEMORY_DEFAULT;
    p->batch_bytes = (uint32_t)p->config->batch_size + 1024;
    p->scratch_bytes = (uint32_t)p->config->batch_size + 1024;
    sp_rand_seed(&p->rand, sp_now_ns());
    sp_timer_init(&p->linger_timer, linger_timer_fired, p);
    int ret = sp_record_codec_init(&p->codec, SP_RECORD_CODEC_COMPRESS);
    if (ret < 0)
        return ret;
    p->chained_fn = client->on_change;
    p->chained_ctx = client->ctx;
    client->on_change = client_changed;
    client->ctx = p;
    snprintf(p->txn_id, sizeof(p->txn_id), "%s", p->config->transactional_id);
    p->txn_state = transactional(p) ? TXN_UNINIT : TXN_NONE;
    p->txn_coordinator = -1;
    return 0;
}

/* ---- Transactions ---- */

static void txn_report(struct sp_kafka_producer *p, int err)
{
    sp_kafka_txn_fn *fn = p->txn_fn;
    void *ctx = p->txn_ctx;
    p->txn_fn = NULL;
    if (fn != NULL)
        fn(p, err, ctx);
}

/* A broker error that ends this producer for good (fenced, unauthorized...). */
static bool txn_fatal_code(int16_t code)
{
    return code == SP_KAFKA_ERR_PRODUCER_FENCED || code == SP_KAFKA_ERR_INVALID_PRODUCER_EPOCH ||
           code == 53 /* TRANSACTIONAL_ID_AUTHORIZATION_FAILED */ ||
           code == 49 /* INVALID_PRODUCER_ID_MAPPING */;
}

static void txn_fail(struct sp_kafka_producer *p, int16_t code, const char *what)
{
    bool fenced =
        code == SP_KAFKA_ERR_PRODUCER_FENCED || code == SP_KAFKA_ERR_INVALID_PRODUCER_EPOCH;
    const char *why = "";
    if (p->txn_resumed && fenced)
        why = " (another producer with this transactional.id took over, or the coordinator "
              "aborted it at its transaction.timeout.ms)";
    else if (fenced)
        why = " (another producer with this transactional.id took over)";
    else if (p->txn_resumed && code == 49 /* INVALID_PRODUCER_ID_MAPPING */)
        why = " (the coordinator no longer knows this transactional.id and producer id)";
    else if (code == ERR_INVALID_TXN_STATE)
        why = " (the transaction ended the other way)";
    p->txn_state = TXN_FATAL;
    p->fatal = true;
    p->fatal_error = -EPROTO;
    p->txn_error_code = code;
    snprintf(p->txn_error, sizeof(p->txn_error), "%s: %s%s", what, sp_kafka_error_name(code), why);
    sp_warn("kafka producer: %s", p->txn_error);
    txn_report(p, -EPROTO);
}

static struct sp_kafka_conn *txn_conn(struct sp_kafka_producer *p)
{
    if (p->txn_coordinator < 0)
        return NULL;
    struct sp_kafka_conn *conn = sp_kafka_client_broker(p->client, p->txn_coordinator);
    return conn != NULL && sp_kafka_conn_ready(conn) ? conn : NULL;
}

static void txn_retry_timer(struct sp_kafka_producer *p)
{
    /* Coordinator moves, loads and lost connections: try again shortly. */
    sp_kafka_client_refresh(p->client);
}

static void txn_pid_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                         void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)conn;
    (void)version;
    p->txn_step_inflight = false;
    if (err < 0) {
        p->txn_coordinator = -1;
        txn_retry_timer(p);
        return;
    }
    const struct sp_kafka_init_producer_id_response *r = body;
    if (r->error_code != 0) {
        if (txn_fatal_code(r->error_code)) {
            txn_fail(p, r->error_code, "InitProducerId");
            return;
        }
        if (r->error_code == SP_KAFKA_ERR_NOT_COORDINATOR ||
            r->error_code == SP_KAFKA_ERR_COORDINATOR_NOT_AVAILABLE)
            p->txn_coordinator = -1;
        txn_retry_timer(p);
        return;
    }
    p->producer_id = r->producer_id;
    p->producer_epoch = r->producer_epoch;
    p->txn_state = TXN_READY;
    restamp_all(p);
    txn_report(p, 0);
}

static void txn_coordinator_found(struct sp_kafka_client *client, int err, int16_t code,
                                  int32_t node, void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)client;
    p->txn_step_inflight = false;
    if (err < 0 || code != 0) {
        txn_retry_timer(p);
        return;
    }
    p->txn_coordinator = node;
    txn_init_step(p);
    producer_drain(p);
    txn_maybe_end(p); /* a resumed transaction's EndTxn waits for the coordinator only */
}

/* Drives txn_init: coordinator, then InitProducerId; called on every client change. */
static void txn_init_step(struct sp_kafka_producer *p)
{
    if (p->txn_state != TXN_INITING || p->txn_step_inflight)
        return;
    if (p->txn_coordinator < 0) {
        if (sp_kafka_client_find_coordinator(p->client, SP_KAFKA_COORDINATOR_TRANSACTION, p->txn_id,
                                             txn_coordinator_found, p) == 0)
            p->txn_step_inflight = true;
        return;
    }
    struct sp_kafka_conn *conn = txn_conn(p);
    if (conn == NULL)
        return;
    struct sp_kafka_init_producer_id_request req;
    sp_kafka_init_producer_id_request_init(&req);
    req.transactional_id = sp_kstr_of(p->txn_id);
    req.transaction_timeout_ms = p->config->transaction_timeout_ms;
    if (sp_kafka_conn_send(conn, INIT_PRODUCER_ID_API_KEY, -1, &req, txn_pid_done, p) == 0)
        p->txn_step_inflight = true;
}

int sp_kafka_producer_txn_init(struct sp_kafka_producer *p, sp_kafka_txn_fn *fn, void *ctx)
{
    if (!transactional(p))
        return -EINVAL;
    if (p->txn_state != TXN_UNINIT || p->txn_fn != NULL)
        return -EBUSY;
    p->txn_state = TXN_INITING;
    p->txn_fn = fn;
    p->txn_ctx = ctx;
    txn_init_step(p);
    return 0;
}

int sp_kafka_producer_txn_id_set(struct sp_kafka_producer *p, const char *id)
{
    size_t len = id != NULL ? strlen(id) : 0;
    if (len == 0 || len >= sizeof(p->txn_id) || !idempotent(p))
        return -EINVAL;
    if ((p->txn_state != TXN_NONE && p->txn_state != TXN_UNINIT) || p->txn_fn != NULL ||
        p->records_queued > 0)
        return -EBUSY;
    memcpy(p->txn_id, id, len + 1);
    p->txn_state = TXN_UNINIT;
    p->txn_coordinator = -1; /* another id may have another coordinator */
    return 0;
}

int sp_kafka_producer_txn_resume(struct sp_kafka_producer *p, int64_t producer_id,
                                 int16_t producer_epoch)
{
    if (!transactional(p) || producer_id < 0 || producer_epoch < 0)
        return -EINVAL;
    if (p->txn_state != TXN_UNINIT || p->txn_fn != NULL || sp_kafka_producer_outstanding(p) > 0)
        return -EBUSY;
    SP_ASSERT(!p->txn_resumed);
    SP_ASSERT(p->txn_state == TXN_UNINIT);
    p->producer_id = producer_id;
    p->producer_epoch = producer_epoch;
    p->txn_resumed = true;
    p->txn_state = TXN_IN;
    return 0;
}

int sp_kafka_producer_txn_begin(struct sp_kafka_producer *p)
{
    if (p->txn_state != TXN_READY)
        return p->txn_state == TXN_FATAL ? -EPIPE : -EBUSY;
    p->txn_state = TXN_IN;
    return 0;
}

static void add_partitions_done(struct sp_kafka_conn *conn, int err, const void *body,
                                int16_t version, void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)conn;
    bool retry = err < 0;
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        for (int32_t i = 0; i < topic->part_count; i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            if (!part->txn_adding)
                continue;
            part->txn_adding = false;
            if (err < 0)
                continue;
            const struct sp_kafka_add_partitions_to_txn_response *r = body;
            int16_t code = SP_KAFKA_ERR_NETWORK_EXCEPTION;
            int32_t n = version >= 4 ? (r->results_by_transaction_count > 0
                                            ? r->results_by_transaction[0].topic_results_count
                                            : 0)
                                     : r->results_by_topic_v3_and_below_count;
            for (int32_t k = 0; k < n; k++) {
                const struct
                    sp_kafka_add_partitions_to_txn_response_add_partitions_to_txn_topic_result *tr =
                        version >= 4 ? &r->results_by_transaction[0].topic_results[k]
                                     : &r->results_by_topic_v3_and_below[k];
                if (!sp_kstr_eq(tr->name, topic->info->name))
                    continue;
                for (int32_t q = 0; q < tr->results_by_partition_count; q++)
                    if (tr->results_by_partition[q].partition_index == part->partition)
                        code = tr->results_by_partition[q].partition_error_code;
            }
            if (code == 0) {
                part->txn_added = true;
            } else if (txn_fatal_code(code)) {
                txn_fail(p, code, "AddPartitionsToTxn");
                return;
            } else {
                retry = true;
                if (code == SP_KAFKA_ERR_NOT_COORDINATOR)
                    p->txn_coordinator = -1;
            }
        }
    }
    if (retry)
        txn_retry_timer(p);
    producer_drain(p);
}

static void txn_add_partitions(struct sp_kafka_producer *p)
{
    struct sp_kafka_conn *conn = txn_conn(p);
    if (conn == NULL) {
        if (p->txn_coordinator < 0 && !p->txn_step_inflight &&
            sp_kafka_client_find_coordinator(p->client, SP_KAFKA_COORDINATOR_TRANSACTION, p->txn_id,
                                             txn_coordinator_found, p) == 0)
            p->txn_step_inflight = true;
        return;
    }
    struct sp_kafka_add_partitions_to_txn_request_add_partitions_to_txn_topic
        topics[SP_KAFKA_PRODUCER_TOPICS_MAX];
    int32_t parts[SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX];
    unsigned topic_count = 0, part_count = 0;
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        unsigned first = part_count;
        for (int32_t i = 0; i < topic->part_count && part_count < SP_ARRAY_LEN(parts); i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            if (part->txn_added || part->txn_adding || part->ready_head == NULL)
                continue;
            part->txn_adding = true;
            parts[part_count++] = part->partition;
        }
        if (part_count > first) {
            sp_kafka_add_partitions_to_txn_request_add_partitions_to_txn_topic_init(
                &topics[topic_count]);
            topics[topic_count].name = sp_kstr_of(topic->info->name);
            topics[topic_count].partitions = &parts[first];
            topics[topic_count].partitions_count = (int32_t)(part_count - first);
            topic_count++;
        }
    }
    if (topic_count == 0)
        return;
    struct sp_kstr id = sp_kstr_of(p->txn_id);
    struct sp_kafka_add_partitions_to_txn_request req;
    sp_kafka_add_partitions_to_txn_request_init(&req);
    req.v3_and_below_transactional_id = id;
    req.v3_and_below_producer_id = p->producer_id;
    req.v3_and_below_producer_epoch = p->producer_epoch;
    req.v3_and_below_topics = topics;
    req.v3_and_below_topics_count = (int32_t)topic_count;
    /* v4+ is for brokers talking to brokers; clients speak v3 at most. */
    int16_t version = SP_MIN(sp_kafka_conn_version(conn, 24), 3);
    if (sp_kafka_conn_send(conn, 24, version, &req, add_partitions_done, p) < 0)
        for (unsigned t = 0; t < p->topic_count; t++)
            for (int32_t i = 0; i < p->topics[t].part_count; i++)
                p->topics[t].parts[i].txn_adding = false;
}

static void end_txn_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                         void *ctx)
{
    struct sp_kafka_producer *p = ctx;
    (void)conn;
    (void)version;
    if (err == 0) {
        const struct sp_kafka_end_txn_response *r = body;
        if (r->error_code != 0) {
            /* INVALID_TXN_STATE: the transaction is not open and did not end
             * the way asked; sending again cannot change that. */
            if (txn_fatal_code(r->error_code) || r->error_code == ERR_INVALID_TXN_STATE) {
                txn_fail(p, r->error_code, "EndTxn");
                return;
            }
            err = -EPROTO;
        }
    }
    if (err < 0) {
        /* Coordinator trouble: send EndTxn again. */
        p->txn_coordinator = -1;
        txn_retry_timer(p);
        p->txn_state = TXN_ENDING;
        return;
    }
    for (unsigned t = 0; t < p->topic_count; t++)
        for (int32_t i = 0; i < p->topics[t].part_count; i++)
            p->topics[t].parts[i].txn_added = false;
    p->txn_state = TXN_READY;
    if (p->txn_resumed) {
        /* The earlier producer's sequence numbers are not ours: a new
         * producer id and epoch (txn_init) before producing. */
        p->txn_resumed = false;
        p->txn_state = TXN_UNINIT;
        p->producer_id = -1;
        p->producer_epoch = -1;
    }
    txn_report(p, 0);
}

/* When the transaction is ending and every record is reported: EndTxn. */
static void txn_maybe_end(struct sp_kafka_producer *p)
{
    if (p->txn_state != TXN_ENDING || sp_kafka_producer_outstanding(p) > 0)
        return;
    struct sp_kafka_conn *conn = txn_conn(p);
    if (conn == NULL) {
        txn_add_partitions(p); /* finds the coordinator again if needed */
        return;
    }
    struct sp_kafka_end_txn_request req;
    sp_kafka_end_txn_request_init(&req);
    req.transactional_id = sp_kstr_of(p->txn_id);
    req.producer_id = p->producer_id;
    req.producer_epoch = p->producer_epoch;
    req.committed = p->txn_end_commit;
    if (sp_kafka_conn_send(conn, 26, -1, &req, end_txn_done, p) == 0)
        p->txn_state = TXN_END_SENT;
}

int sp_kafka_producer_txn_end(struct sp_kafka_producer *p, bool commit, sp_kafka_txn_fn *fn,
                              void *ctx)
{
    if (p->txn_state != TXN_IN || p->txn_fn != NULL)
        return p->txn_state == TXN_FATAL ? -EPIPE : -EBUSY;
    p->txn_state = TXN_ENDING;
    p->txn_end_commit = commit;
    p->txn_fn = fn;
    p->txn_ctx = ctx;
    sp_kafka_producer_flush(p);
    txn_maybe_end(p);
    return 0;
}

/* ---- Offsets in a transaction ---- */

struct txn_offsets {
    struct sp_kafka_producer *producer;
    struct sp_timer retry; /* the group coordinator's connection is coming up */
    unsigned waits;
    int32_t retry_node;
    char group[SP_KAFKA_CONFIG_ID_MAX];
    char topic[SP_KAFKA_TOPIC_NAME_BYTES_MAX + 1];
    unsigned count;
    struct sp_kafka_txn_offset offsets[SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX];
};

static void txn_offsets_finish(struct txn_offsets *o, int err)
{
    struct sp_kafka_producer *p = o->producer;
    sp_arena_free(&p->client->shard->arena, o);
    txn_report(p, err);
}

static void txn_offset_commit_done(struct sp_kafka_conn *conn, int err, const void *body,
                                   int16_t version, void *ctx)
{
    struct txn_offsets *o = ctx;
    (void)conn;
    (void)version;
    if (err == 0) {
        const struct sp_kafka_txn_offset_commit_response *r = body;
        for (int32_t t = 0; t < r->topics_count; t++)
            for (int32_t q = 0; q < r->topics[t].partitions_count; q++) {
                int16_t code = r->topics[t].partitions[q].error_code;
                if (code != 0) {
                    if (txn_fatal_code(code)) {
                        struct sp_kafka_producer *p = o->producer;
                        sp_arena_free(&p->client->shard->arena, o);
                        txn_fail(p, code, "TxnOffsetCommit");
                        return;
                    }
                    err = -EPROTO;
                }
            }
    }
    txn_offsets_finish(o, err);
}

static void group_coordinator_found(struct sp_kafka_client *client, int err, int16_t code,
                                    int32_t node, void *ctx)
{
    struct txn_offsets *o = ctx;
    struct sp_kafka_producer *p = o->producer;
    if (err < 0 || code != 0) {
        txn_offsets_finish(o, err < 0 ? err : -EPROTO);
        return;
    }
    struct sp_kafka_conn *conn = sp_kafka_client_broker(client, node);
    if (conn == NULL || !sp_kafka_conn_ready(conn)) {
        /* Connecting: look again in a moment, for up to request.timeout.ms. */
        uint64_t wait_ns = 5 * SP_NSEC_PER_MSEC;
        if ((uint64_t)++o->waits * wait_ns >
            (uint64_t)p->config->request_timeout_ms * SP_NSEC_PER_MSEC) {
            txn_offsets_finish(o, -ETIMEDOUT);
            return;
        }
        o->retry_node = node;
        sp_shard_timer_arm(client->shard, &o->retry, sp_now_ns() + wait_ns);
        return;
    }
    struct sp_kafka_txn_offset_commit_request_txn_offset_commit_request_partition
        parts[SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX];
    for (unsigned i = 0; i < o->count; i++) {
        sp_kafka_txn_offset_commit_request_txn_offset_commit_request_partition_init(&parts[i]);
        parts[i].partition_index = o->offsets[i].partition;
        parts[i].committed_offset = o->offsets[i].offset;
    }
    struct sp_kafka_txn_offset_commit_request_txn_offset_commit_request_topic topic;
    sp_kafka_txn_offset_commit_request_txn_offset_commit_request_topic_init(&topic);
    topic.name = sp_kstr_of(o->topic);
    topic.partitions = parts;
    topic.partitions_count = (int32_t)o->count;
    struct sp_kafka_txn_offset_commit_request req;
    sp_kafka_txn_offset_commit_request_init(&req);
    req.transactional_id = sp_kstr_of(p->txn_id);
    req.group_id = sp_kstr_of(o->group);
    req.producer_id = p->producer_id;
    req.producer_epoch = p->producer_epoch;
    req.topics = &topic;
    req.topics_count = 1;
    if (sp_kafka_conn_send(conn, 28, -1, &req, txn_offset_commit_done, o) < 0)
        txn_offsets_finish(o, -EAGAIN);
}

static void add_offsets_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                             void *ctx)
{
    struct txn_offsets *o = ctx;
    (void)conn;
    (void)version;
    if (err == 0) {
        const struct sp_kafka_add_offsets_to_txn_response *r = body;
        if (r->error_code != 0) {
            if (txn_fatal_code(r->error_code)) {
                struct sp_kafka_producer *p = o->producer;
                sp_arena_free(&p->client->shard->arena, o);
                txn_fail(p, r->error_code, "AddOffsetsToTxn");
                return;
            }
            err = -EPROTO;
        }
    }
    if (err < 0 || sp_kafka_client_find_coordinator(o->producer->client, SP_KAFKA_COORDINATOR_GROUP,
                                                    o->group, group_coordinator_found, o) < 0)
        txn_offsets_finish(o, err < 0 ? err : -EAGAIN);
}

static void txn_offsets_retry(struct sp_timer *timer, void *ctx)
{
    struct txn_offsets *o = ctx;
    (void)timer;
    group_coordinator_found(o->producer->client, 0, 0, o->retry_node, o);
}

int sp_kafka_producer_txn_send_offsets(struct sp_kafka_producer *p, const char *group_id,
                                       const char *topic, const struct sp_kafka_txn_offset *offsets,
                                       unsigned count, sp_kafka_txn_fn *fn, void *ctx)
{
    if (p->txn_state != TXN_IN || p->txn_fn != NULL)
        return p->txn_state == TXN_FATAL ? -EPIPE : -EBUSY;
    if (p->txn_resumed)
        return -EPROTO;
    if (count == 0 || count > SP_KAFKA_PRODUCER_REQUEST_PARTITIONS_MAX ||
        strlen(group_id) >= SP_KAFKA_CONFIG_ID_MAX || strlen(topic) > SP_KAFKA_TOPIC_NAME_BYTES_MAX)
        return -EINVAL;
    struct sp_kafka_conn *conn = txn_conn(p);
    if (conn == NULL)
        return -EAGAIN;
    struct txn_offsets *o = sp_arena_alloc(&p->client->shard->arena, sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    memset(o, 0, sizeof(*o));
    o->producer = p;
    sp_timer_init(&o->retry, txn_offsets_retry, o);
    snprintf(o->group, sizeof(o->group), "%s", group_id);
    snprintf(o->topic, sizeof(o->topic), "%s", topic);
    o->count = count;
    memcpy(o->offsets, offsets, count * sizeof(*offsets));
    struct sp_kafka_add_offsets_to_txn_request req;
    sp_kafka_add_offsets_to_txn_request_init(&req);
    req.transactional_id = sp_kstr_of(p->txn_id);
    req.producer_id = p->producer_id;
    req.producer_epoch = p->producer_epoch;
    req.group_id = sp_kstr_of(o->group);
    if (sp_kafka_conn_send(conn, 25, -1, &req, add_offsets_done, o) < 0) {
        sp_arena_free(&p->client->shard->arena, o);
        return -EAGAIN;
    }
    p->txn_fn = fn;
    p->txn_ctx = ctx;
    return 0;
}

void sp_kafka_producer_deinit(struct sp_kafka_producer *p)
{
    p->closing = true;
    sp_shard_timer_cancel(p->client->shard, &p->linger_timer);
    for (unsigned t = 0; t < p->topic_count; t++) {
        struct sp_kafka_ptopic *topic = &p->topics[t];
        for (int32_t i = 0; i < topic->part_count; i++) {
            struct sp_kafka_ppart *part = &topic->parts[i];
            if (part->open != NULL) {
                struct sp_kafka_pbatch *b = part->open;
                part->open = NULL;
                deliver(p, b, -ECANCELED, 0, -1);
            }
            while (part->ready_head != NULL) {
                struct sp_kafka_pbatch *b = part->ready_head;
                part->ready_head = b->next;
                deliver(p, b, -ECANCELED, 0, -1);
            }
        }
        sp_arena_free(arena_of(p), topic->parts);
    }
    while (p->free_batches != NULL) {
        struct sp_kafka_pbatch *b = p->free_batches;
        p->free_batches = b->next;
        b->pooled = false;
        batch_free(p, b);
    }
    sp_record_codec_deinit(&p->codec);
    p->client->on_change = p->chained_fn;
    p->client->ctx = p->chained_ctx;
}
