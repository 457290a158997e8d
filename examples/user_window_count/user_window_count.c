/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Clicks per user in 5-minute event-time tumbling windows, with 10 seconds
 * of bounded out-of-orderness; clicks that arrive after their window has
 * fired go to a side output instead of being lost silently. In Flink:
 *
 *     clicks.assignTimestampsAndWatermarks(
 *               WatermarkStrategy.forBoundedOutOfOrderness(Duration.ofSeconds(10)))
 *           .keyBy(c -> c.user)
 *           .window(TumblingEventTimeWindows.of(Time.minutes(5)))
 *           .sideOutputLateData(lateTag)
 *           .aggregate(new Count());
 *
 * Clicks come from the built-in generator (out of order by up to 8 s, and
 * one in `late-every` up to 10 minutes late), a Kafka topic or a JSON-lines
 * file. See README.md.
 */
#include <stdio.h>
#include <string.h>

#include "sp_job.h"

struct click {
    int64_t user;
    int64_t ts;
    struct sp_str page;
};

static const struct sp_field click_fields[] = {
    SP_FIELD(struct click, user, SP_T_I64),
    SP_FIELD(struct click, ts, SP_T_I64),
    SP_FIELD(struct click, page, SP_T_STR),
};
static const struct sp_schema click_schema = SP_SCHEMA(struct click, click_fields);

struct gen_ctx {
    uint64_t users;
    uint64_t late_every;
    int64_t ms_per_event;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static const char *const pages[] = {"/", "/search", "/item", "/cart", "/checkout"};

/* Click i: a user from a hash of i, event time advancing ms_per_event per
 * click with up to 8 s of disorder, and now and then a straggler. */
static int64_t gen_click(void *ctx, uint32_t partition, uint64_t index, void *row,
                         struct sp_out *out)
{
    (void)partition, (void)out;
    const struct gen_ctx *g = ctx;
    struct click *c = row;
    uint64_t h = mix(index + 1);
    c->user = (int64_t)(h % g->users);
    int64_t ts = 1700000000000 + (int64_t)index * g->ms_per_event - (int64_t)((h >> 20) % 8000);
    if (g->late_every != 0 && index % g->late_every == g->late_every - 1)
        ts -= 60000 + (int64_t)((h >> 40) % 540000); /* 1 to 10 minutes late */
    c->ts = ts;
    const char *page = pages[(h >> 8) % 5];
    c->page = sp_str_of(page, (uint32_t)strlen(page));
    return ts;
}

static struct gen_ctx gen_ctx;

static const char *const known[] = {"source",    "events",    "users", "ms-per-event", "late-every",
                                    "rate",      "brokers",   "topic", "file",         "sink",
                                    "late-sink", "out-topic", "mode",  "to-end",       "partitions",
                                    "group",     NULL};

static void sink_to(struct sp_job *job, struct sp_stream *s, const char *what, const char *brokers,
                    const char *topic)
{
    if (strcmp(what, "stdout") == 0) {
        sp_sink_stdout(s);
    } else if (strcmp(what, "blackhole") == 0) {
        sp_sink_blackhole(s);
    } else if (strcmp(what, "kafka") == 0) {
        struct sp_kafka_sink_config kc = {
            .bootstrap = brokers, .topic = topic, .key_field = "user"};
        sp_sink_kafka(s, &kc, SP_FORMAT_JSON);
    } else if (strncmp(what, "file:", 5) == 0) {
        sp_sink_file(s, what + 5);
    } else if (strncmp(what, "files:", 6) == 0) {
        sp_sink_files(s, what + 6); /* part files, exactly once with checkpoints */
    } else {
        sp_job_set_error(job, "sink '%s': use stdout, blackhole, kafka, file:PATH or files:DIR",
                         what);
    }
}

struct sp_job *user_window_count_job(const struct sp_params *p);
struct sp_job *user_window_count_job(const struct sp_params *p)
{
    struct sp_job *job = sp_job_new("user-window-count");
    if (job == NULL)
        return NULL;
    sp_params_check(job, p, known);
    struct sp_watermarks wm = {
        .ts_field = "ts", .out_of_orderness_ms = 10000, .idle_timeout_ms = 30000};
    const char *source = sp_param(p, "source", "generator");
    const char *brokers = sp_param(p, "brokers", "127.0.0.1:9092");
    struct sp_stream *clicks;
    if (strcmp(source, "generator") == 0) {
        int64_t users = sp_param_i64(job, p, "users", 1000);
        int64_t late_every = sp_param_i64(job, p, "late-every", 10000);
        int64_t events = sp_param_i64(job, p, "events", 1000000);
        /* Generator partitions (default: one per core); fixed, a checkpoint
         * restores onto another core count. */
        int64_t partitions = sp_param_i64(job, p, "partitions", 0);
        gen_ctx.ms_per_event = sp_param_i64(job, p, "ms-per-event", 1);
        if (users <= 0 || late_every < 0 || events < 0 || gen_ctx.ms_per_event < 0 ||
            partitions < 0 || partitions > 65536)
            sp_job_set_error(job, "users must be > 0; events, late-every and ms-per-event >= 0; "
                                  "partitions 0 to 65536");
        gen_ctx.users = (uint64_t)(users > 0 ? users : 1);
        gen_ctx.late_every = (uint64_t)(late_every > 0 ? late_every : 0);
        struct sp_gen_config gc = {
            .count = (uint64_t)(events > 0 ? events : 0),
            .rate = sp_param_f64(job, p, "rate", 0),
            .partitions = (uint32_t)(partitions > 0 ? partitions : 0),
        };
        clicks = sp_source_generator(job, &click_schema, gen_click, &gen_ctx, &gc, &wm);
    } else if (strcmp(source, "kafka") == 0) {
        const char *to_end = sp_param(p, "to-end", "false");
        if (strcmp(to_end, "true") != 0 && strcmp(to_end, "false") != 0)
            sp_job_set_error(job, "to-end=%s: true or false", to_end);
        struct sp_kafka_source_config kc = {
            .bootstrap = brokers,
            .topic = sp_param(p, "topic", "clicks"),
            .from_beginning = true,
            .stop_at_end = strcmp(to_end, "true") == 0,
            .group = sp_param(p, "group", NULL), /* a consumer group (none: all partitions) */
        };
        clicks = sp_source_kafka(job, &kc, SP_FORMAT_JSON, &click_schema, &wm);
    } else if (strcmp(source, "file") == 0) {
        clicks = sp_source_file(job, sp_param(p, "file", "clicks.jsonl"), SP_FORMAT_JSON,
                                &click_schema, &wm);
    } else {
        sp_job_set_error(job, "source=%s: use generator, kafka or file", source);
        return job;
    }
    const char *mode = sp_param(p, "mode", "window");
    if (strcmp(mode, "produce") == 0) {
        /* The clicks themselves into `topic`, keyed by user: what a
         * windowed run with source=kafka reads. */
        struct sp_kafka_sink_config kc = {
            .bootstrap = brokers, .topic = sp_param(p, "topic", "clicks"), .key_field = "user"};
        sp_sink_kafka(clicks, &kc, SP_FORMAT_JSON);
        return job;
    }
    if (strcmp(mode, "window") != 0)
        sp_job_set_error(job, "mode=%s: window or produce", mode);
    struct sp_stream *late;
    struct sp_stream *counts =
        sp_window_aggregate(sp_key_by(clicks, "user"),
                            &(struct sp_window){.kind = SP_WINDOW_TUMBLING, .size_ms = 300000},
                            &(struct sp_agg){.kind = SP_AGG_COUNT, .name = "clicks"}, &late);
    const char *out_topic = sp_param(p, "out-topic", "clicks-per-user");
    sink_to(job, counts, sp_param(p, "sink", "stdout"), brokers, out_topic);
    sink_to(job, late, sp_param(p, "late-sink", "blackhole"), brokers, "late-clicks");
    return job;
}

#ifndef SPATE_BUILTIN
int main(int argc, char **argv)
{
    return sp_job_main(user_window_count_job, argc, argv);
}
#endif
