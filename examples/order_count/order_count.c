/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Order count: the running count of completed orders per customer, written
 * as a changelog, as in Kafka Streams' documentation:
 *
 *     orders.filter((id, order) -> "COMPLETED".equals(order.status))
 *           .groupBy((id, order) -> order.customer)
 *           .count()
 *           .toStream().to("order-counts");
 *
 * Orders come from a Kafka topic (JSON values), a JSON-lines file, or the
 * built-in generator; counts go to a Kafka topic (keyed by customer, every
 * update a record: a changelog a compacted topic keeps the latest of), to
 * stdout as JSON lines, or nowhere (blackhole). See README.md.
 */
#include <stdio.h>
#include <string.h>

#include "sp_job.h"

struct order {
    int64_t id;
    struct sp_str customer;
    struct sp_str status;
    int64_t amount_cents;
    int64_t ts;
};

static const struct sp_field order_fields[] = {
    SP_FIELD(struct order, id, SP_T_I64),     SP_FIELD(struct order, customer, SP_T_STR),
    SP_FIELD(struct order, status, SP_T_STR), SP_FIELD(struct order, amount_cents, SP_T_I64),
    SP_FIELD(struct order, ts, SP_T_I64),
};
static const struct sp_schema order_schema = SP_SCHEMA(struct order, order_fields);

static const char *const statuses[] = {"CREATED", "PAID", "COMPLETED", "CANCELLED"};

struct gen_ctx {
    uint64_t customers;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Order i: a customer and a status from a hash of i; one per millisecond. */
static int64_t gen_order(void *ctx, uint32_t partition, uint64_t index, void *row,
                         struct sp_out *out)
{
    (void)partition;
    const struct gen_ctx *g = ctx;
    struct order *o = row;
    uint64_t h = mix(index + 1);
    char name[32];
    int len = snprintf(name, sizeof(name), "customer-%llu", (unsigned long long)(h % g->customers));
    o->id = (int64_t)index;
    o->customer = sp_out_str(out, name, (uint32_t)len);
    const char *status = statuses[(h >> 32) % 4];
    o->status = sp_str_of(status, (uint32_t)strlen(status)); /* copied in by spate */
    o->amount_cents = (int64_t)(h % 100000);
    o->ts = 1700000000000 + (int64_t)index;
    return o->ts;
}

static bool completed(void *ctx, const void *row)
{
    (void)ctx;
    const struct order *o = row;
    return o->status.len == 9 && memcmp(o->status.ptr, "COMPLETED", 9) == 0;
}

static struct gen_ctx gen_ctx;

static const char *const known[] = {"source", "events", "customers", "brokers",   "topic",
                                    "group",  "file",   "sink",      "out-topic", NULL};

struct sp_job *order_count_job(const struct sp_params *p);
struct sp_job *order_count_job(const struct sp_params *p)
{
    struct sp_job *job = sp_job_new("order-count");
    if (job == NULL)
        return NULL;
    sp_params_check(job, p, known);
    const char *source = sp_param(p, "source", "generator");
    const char *brokers = sp_param(p, "brokers", "127.0.0.1:9092");
    struct sp_stream *orders;
    if (strcmp(source, "generator") == 0) {
        int64_t customers = sp_param_i64(job, p, "customers", 1000);
        int64_t events = sp_param_i64(job, p, "events", 1000000);
        if (customers <= 0 || events < 0)
            sp_job_set_error(job, "customers must be > 0 and events >= 0");
        gen_ctx.customers = (uint64_t)(customers > 0 ? customers : 1);
        struct sp_gen_config gc = {.count = (uint64_t)(events > 0 ? events : 0)};
        orders = sp_source_generator(job, &order_schema, gen_order, &gen_ctx, &gc, NULL);
    } else if (strcmp(source, "kafka") == 0) {
        struct sp_kafka_source_config kc = {
            .bootstrap = brokers,
            .topic = sp_param(p, "topic", "orders"),
            .group = sp_param(p, "group", "order-count"),
            .from_beginning = true,
        };
        orders = sp_source_kafka(job, &kc, SP_FORMAT_JSON, &order_schema, NULL);
    } else if (strcmp(source, "file") == 0) {
        orders = sp_source_file(job, sp_param(p, "file", "orders.jsonl"), SP_FORMAT_JSON,
                                &order_schema, NULL);
    } else {
        sp_job_set_error(job, "source=%s: use generator, kafka or file", source);
        return job;
    }
    struct sp_stream *counts =
        sp_aggregate(sp_key_by(sp_filter(orders, completed, NULL), "customer"),
                     &(struct sp_agg){.kind = SP_AGG_COUNT});
    const char *sink = sp_param(p, "sink", "stdout");
    if (strcmp(sink, "stdout") == 0) {
        sp_sink_stdout(counts);
    } else if (strcmp(sink, "kafka") == 0) {
        struct sp_kafka_sink_config kc = {
            .bootstrap = brokers,
            .topic = sp_param(p, "out-topic", "order-counts"),
            .key_field = "customer",
        };
        sp_sink_kafka(counts, &kc, SP_FORMAT_JSON);
    } else if (strcmp(sink, "blackhole") == 0) {
        sp_sink_blackhole(counts);
    } else {
        sp_job_set_error(job, "sink=%s: use stdout, kafka or blackhole", sink);
    }
    return job;
}

#ifndef SPATE_BUILTIN
int main(int argc, char **argv)
{
    return sp_job_main(order_count_job, argc, argv);
}
#endif
