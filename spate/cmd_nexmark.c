/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate bench nexmark (--query qN | --all) --events N [--rate R] [--seed S]
 * [--json FILE] [--dump DIR] [--out DIR]: Nexmark queries over generated
 * events, timed. A query's job is the nexmark source (one partition per
 * core), the query, and a sink that counts its rows; the global --cores,
 * --memory and --poll size the run. It prints events, seconds, events/s in
 * total and per core (generator included, as Flink's figures include
 * theirs), output rows, latency p50/p99 and peak RSS; --json writes the
 * same as one JSON object. A progress line on stderr when it is a terminal.
 *
 * Latency, for the queries that emit on time (q4-q8, q11): from the moment
 * every source's watermark passed the result's time (a window's last
 * millisecond, an auction's expiry: sp_job_watermark_time) to the sink
 * receiving the row; for q12, from its processing-time window's end. n/a
 * for q0-q3, which emit as records arrive.
 *
 * --dump DIR writes the events (person.csv, auction.csv, bid.csv) and the
 * query's output (qN.csv) as CSV, for scripts/nexmark_check. --all runs
 * every query, each in a process of its own (so peak RSS is its own), after
 * measuring the machine's memory read bandwidth, and writes
 * nexmark-results.md (a table, with Flink's published per-core figures)
 * and nexmark-results.svg (a bar chart) into --out (default docs).
 *
 * Exit 2 for wrong input (unknown query, bad number), 1 when a job fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "sp_job.h"
#include "sp_nexmark.h"

extern char **environ;

struct nexmark_args {
    const char *query;
    bool all;
    uint64_t events;
    double rate;
    uint64_t seed;
    const char *json;
    const char *dump;
    const char *out;
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

/* A count with an optional K, M or G (thousands, millions, billions). */
static int parse_count(const char *text, uint64_t *out)
{
    char buf[32];
    size_t len = text != NULL ? strlen(text) : 0;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len + 1);
    uint64_t scale = 1;
    char last = buf[len - 1];
    if (last == 'K' || last == 'k' || last == 'M' || last == 'm' || last == 'G' || last == 'g') {
        scale = last == 'K' || last == 'k'   ? 1000
                : last == 'M' || last == 'm' ? 1000000
                                             : 1000000000;
        buf[len - 1] = '\0';
    }
    uint64_t v;
    if (parse_u64(buf, &v) < 0 || v > UINT64_MAX / scale)
        return -1;
    *out = v * scale;
    return 0;
}

/* 0, or 2 with the reason printed. */
static int parse_args(const struct spate_cli *cli, struct nexmark_args *a)
{
    for (int i = 0; i < cli->pass_count; i++) {
        const char *arg = cli->pass[i];
        static const char *const names[] = {"--query", "--events", "--rate", "--seed",
                                            "--json",  "--dump",   "--out"};
        const char *name = NULL, *value = NULL;
        if (strcmp(arg, "--all") == 0) {
            a->all = true;
            continue;
        }
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
                return usage_error("unknown query '%s' (have: %s)", value, sp_nexmark_query_list());
            a->query = value;
        } else if (strcmp(name, "--events") == 0) {
            if (parse_count(value, &a->events) < 0 || a->events == 0)
                return usage_error("--events '%s': must be a positive whole number (K, M, G: "
                                   "thousands, millions, billions)",
                                   value);
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
        } else if (*value == '\0') {
            return usage_error("%s needs a %s", name,
                               strcmp(name, "--json") == 0 ? "file name" : "directory");
        } else if (strcmp(name, "--json") == 0) {
            a->json = value;
        } else if (strcmp(name, "--dump") == 0) {
            a->dump = value;
        } else {
            a->out = value;
        }
    }
    if (a->query == NULL && !a->all)
        return usage_error("--query (one of %s) or --all is missing", sp_nexmark_query_list());
    if (a->query != NULL && a->all)
        return usage_error("--query and --all exclude each other");
    if (a->all && a->dump != NULL)
        return usage_error("--dump takes one --query, not --all");
    if (!a->all && a->out != NULL)
        return usage_error("--out goes with --all (where its table and chart go)");
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

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* sp_job_watermark_time's clock */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- What each query emits: latency kind, CSV ---- */

enum latency_kind {
    LATENCY_NONE,      /* q0-q3: rows as records arrive */
    LATENCY_WATERMARK, /* rows on time: from the watermark passing the row's time */
    LATENCY_PROC,      /* q12: from the processing-time window's end */
};

static enum latency_kind latency_of(const char *q)
{
    if (strcmp(q, "q12") == 0)
        return LATENCY_PROC;
    static const char *const on_time[] = {"q4", "q5", "q6", "q7", "q8", "q11"};
    for (size_t i = 0; i < sizeof(on_time) / sizeof(on_time[0]); i++) {
        if (strcmp(q, on_time[i]) == 0)
            return LATENCY_WATERMARK;
    }
    return LATENCY_NONE;
}

/* RFC 4180: always quoted, quotes doubled. */
static void csv_str(FILE *f, struct sp_str s)
{
    fputc('"', f);
    for (uint32_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '"')
            fputc('"', f);
        fputc(s.ptr[i], f);
    }
    fputc('"', f);
}

static const char *csv_header(const char *q)
{
    if (strcmp(q, "q0") == 0 || strcmp(q, "q1") == 0 || strcmp(q, "q7") == 0)
        return "auction,bidder,price,date_time,extra";
    if (strcmp(q, "q2") == 0)
        return "auction,price";
    if (strcmp(q, "q3") == 0)
        return "name,city,state,id";
    if (strcmp(q, "q4") == 0)
        return "category,avg";
    if (strcmp(q, "q5") == 0)
        return "auction,num,starttime,endtime";
    if (strcmp(q, "q6") == 0)
        return "seller,avg_price";
    if (strcmp(q, "q8") == 0)
        return "id,name,starttime";
    return "bidder,bid_count,starttime,endtime"; /* q11, q12 */
}

static void csv_row(const char *q, FILE *f, const void *row)
{
    if (strcmp(q, "q0") == 0 || strcmp(q, "q7") == 0) {
        const struct sp_nexmark_q0_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",", r->auction, r->bidder,
                r->price, r->date_time);
        csv_str(f, r->extra);
    } else if (strcmp(q, "q1") == 0) {
        const struct sp_nexmark_q1_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64 ",%.3f,%" PRId64 ",", r->auction, r->bidder, r->price,
                r->date_time);
        csv_str(f, r->extra);
    } else if (strcmp(q, "q2") == 0) {
        const struct sp_nexmark_q2_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64, r->auction, r->price);
    } else if (strcmp(q, "q3") == 0) {
        const struct sp_nexmark_q3_row *r = row;
        csv_str(f, r->name);
        fputc(',', f);
        csv_str(f, r->city);
        fputc(',', f);
        csv_str(f, r->state);
        fprintf(f, ",%" PRId64, r->id);
    } else if (strcmp(q, "q4") == 0) {
        const struct sp_nexmark_q4_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64, r->category, r->avg);
    } else if (strcmp(q, "q5") == 0) {
        const struct sp_nexmark_q5_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r->auction, r->num, r->starttime,
                r->endtime);
    } else if (strcmp(q, "q6") == 0) {
        const struct sp_nexmark_q6_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64, r->seller, r->avg_price);
    } else if (strcmp(q, "q8") == 0) {
        const struct sp_nexmark_q8_row *r = row;
        fprintf(f, "%" PRId64 ",", r->id);
        csv_str(f, r->name);
        fprintf(f, ",%" PRId64, r->starttime);
    } else {
        const struct sp_nexmark_q11_row *r = row;
        fprintf(f, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r->bidder, r->bid_count,
                r->starttime, r->endtime);
    }
    fputc('\n', f);
}

static void csv_event(FILE *const *files, const struct sp_nexmark_event *e)
{
    FILE *f = files[e->kind];
    if (e->kind == SP_NEXMARK_PERSON) {
        fprintf(f, "%" PRId64 ",", e->person_id);
        csv_str(f, e->person_name);
        fputc(',', f);
        csv_str(f, e->person_email_address);
        fputc(',', f);
        csv_str(f, e->person_credit_card);
        fputc(',', f);
        csv_str(f, e->person_city);
        fputc(',', f);
        csv_str(f, e->person_state);
        fprintf(f, ",%" PRId64 ",", e->date_time);
    } else if (e->kind == SP_NEXMARK_AUCTION) {
        fprintf(f, "%" PRId64 ",", e->auction_id);
        csv_str(f, e->auction_item_name);
        fputc(',', f);
        csv_str(f, e->auction_description);
        fprintf(f, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",",
                e->auction_initial_bid, e->auction_reserve, e->date_time, e->auction_expires,
                e->auction_seller, e->auction_category);
    } else {
        fprintf(f, "%" PRId64 ",%" PRId64 ",%" PRId64 ",", e->bid_auction, e->bid_bidder,
                e->bid_price);
        csv_str(f, e->bid_channel);
        fputc(',', f);
        csv_str(f, e->bid_url);
        fprintf(f, ",%" PRId64 ",", e->date_time);
    }
    csv_str(f, e->extra);
    fputc('\n', f);
}

static const char *const event_tables[3] = {"person", "auction", "bid"};
static const char *const event_headers[3] = {
    "id,name,email_address,credit_card,city,state,date_time,extra",
    "id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,extra",
    "auction,bidder,price,channel,url,date_time,extra",
};

/* ---- One run ---- */

/* Each shard's share of the sinks' work: no sharing, no locks. */
struct shard_out {
    uint32_t *latency_us;
    size_t latency_count, latency_cap;
    uint64_t unmeasured;
    bool oom;
    FILE *rows;      /* --dump: this shard's part of qN.csv */
    FILE *events[3]; /* and of person, auction, bid */
} __attribute__((aligned(64)));

struct run {
    const char *query;
    struct sp_job *job;
    enum latency_kind latency;
    unsigned cores;
    struct shard_out *shards;
};

static void latency_add(struct shard_out *o, uint64_t ns)
{
    if (o->latency_count == o->latency_cap) {
        size_t cap = o->latency_cap ? o->latency_cap * 2 : 4096;
        uint32_t *grown = realloc(o->latency_us, cap * sizeof(*grown));
        if (grown == NULL) {
            o->oom = true;
            return;
        }
        o->latency_us = grown;
        o->latency_cap = cap;
    }
    uint64_t us = ns / 1000;
    o->latency_us[o->latency_count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void on_result(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    struct run *r = ctx;
    struct shard_out *o = &r->shards[shard];
    if (r->latency == LATENCY_WATERMARK) {
        uint64_t passed;
        if (sp_job_watermark_time(r->job, ts, &passed)) {
            uint64_t now = mono_ns();
            latency_add(o, now > passed ? now - passed : 0);
        } else {
            o->unmeasured++;
        }
    } else if (r->latency == LATENCY_PROC) {
        int64_t now = sp_wall_ms(), end = ((const struct sp_nexmark_q11_row *)row)->endtime;
        if (now >= end)
            latency_add(o, (uint64_t)(now - end) * 1000000u);
        else
            o->unmeasured++; /* closed early: the end of a bounded run */
    }
    if (o->rows != NULL)
        csv_row(r->query, o->rows, row);
}

static void on_event(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)ts;
    struct run *r = ctx;
    csv_event(r->shards[shard].events, row);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct result {
    uint64_t events;
    double seconds;
    uint64_t output_rows;
    bool has_latency;
    double p50_ms, p99_ms;
    uint64_t latency_samples, latency_unmeasured;
    uint64_t peak_rss;
    bool interrupted;
};

/* The percentiles of every shard's samples. */
static void latency_summary(struct run *r, struct result *res)
{
    size_t total = 0;
    for (unsigned s = 0; s < r->cores; s++) {
        total += r->shards[s].latency_count;
        res->latency_unmeasured += r->shards[s].unmeasured;
    }
    res->latency_samples = total;
    if (total == 0)
        return;
    uint32_t *all = malloc(total * sizeof(*all));
    if (all == NULL)
        return;
    size_t n = 0;
    for (unsigned s = 0; s < r->cores; s++) {
        memcpy(all + n, r->shards[s].latency_us, r->shards[s].latency_count * sizeof(*all));
        n += r->shards[s].latency_count;
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    res->has_latency = true;
    res->p50_ms = all[(n - 1) / 2] / 1000.0;
    res->p99_ms = all[(size_t)((double)(n - 1) * 0.99)] / 1000.0;
    free(all);
}

static int part_path(char *buf, size_t size, const char *dir, const char *name, unsigned shard)
{
    int n = snprintf(buf, size, "%s/.%s.csv.%u", dir, name, shard);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* DIR/NAME.csv from its header and each shard's part (removed). */
static int dump_join(const char *dir, const char *name, const char *header, unsigned cores)
{
    char path[4096], part[4096];
    snprintf(path, sizeof(path), "%s/%s.csv", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", header);
    char buf[1 << 16];
    for (unsigned s = 0; s < cores; s++) {
        part_path(part, sizeof(part), dir, name, s);
        FILE *p = fopen(part, "r");
        if (p == NULL) {
            fclose(f);
            return -1;
        }
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
            if (fwrite(buf, 1, n, f) != n)
                break;
        }
        fclose(p);
        unlink(part);
    }
    bool bad = ferror(f) != 0;
    return fclose(f) == 0 && !bad ? 0 : -1;
}

/* Opens each shard's parts; -1 with the reason printed. */
static int dump_open(struct run *r, const char *dir)
{
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "spate: bench nexmark: cannot create '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    char part[4096];
    for (unsigned s = 0; s < r->cores; s++) {
        FILE **slots[4] = {&r->shards[s].rows, &r->shards[s].events[0], &r->shards[s].events[1],
                           &r->shards[s].events[2]};
        const char *names[4] = {r->query, event_tables[0], event_tables[1], event_tables[2]};
        for (int i = 0; i < 4; i++) {
            if (part_path(part, sizeof(part), dir, names[i], s) < 0 ||
                (*slots[i] = fopen(part, "w")) == NULL) {
                fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", part,
                        strerror(errno));
                return -1;
            }
        }
    }
    return 0;
}

/* Closes the parts and joins them (or, the run failed, removes them); -1
 * with the reason printed. */
static int dump_close(struct run *r, const char *dir, bool join)
{
    int rc = 0;
    char part[4096];
    for (unsigned s = 0; s < r->cores; s++) {
        FILE **slots[4] = {&r->shards[s].rows, &r->shards[s].events[0], &r->shards[s].events[1],
                           &r->shards[s].events[2]};
        const char *names[4] = {r->query, event_tables[0], event_tables[1], event_tables[2]};
        for (int i = 0; i < 4; i++) {
            if (*slots[i] != NULL && fclose(*slots[i]) != 0)
                rc = -1;
            *slots[i] = NULL;
            if (!join && part_path(part, sizeof(part), dir, names[i], s) == 0)
                unlink(part);
        }
    }
    if (!join)
        return 0;
    if (rc == 0) {
        rc |= dump_join(dir, r->query, csv_header(r->query), r->cores);
        for (int i = 0; i < 3; i++)
            rc |= dump_join(dir, event_tables[i], event_headers[i], r->cores);
    }
    if (rc != 0)
        fprintf(stderr, "spate: bench nexmark: writing the dump in '%s' failed: %s\n", dir,
                strerror(errno));
    return rc;
}

/* Runs one query; 0, 1 (job failed) or 2 (wrong input). */
static int run_query(const struct spate_cli *cli, const struct nexmark_args *a, unsigned cores,
                     struct result *res)
{
    struct sp_nexmark_config config;
    sp_nexmark_config_default(&config);
    config.events = a->events;
    config.seed = a->seed;
    config.emit_rate = a->rate;
    config.partitions = cores;

    struct run r = {.query = a->query, .latency = latency_of(a->query), .cores = cores};
    r.shards = calloc(cores, sizeof(*r.shards));
    if (r.shards == NULL)
        return 1;
    char name[32];
    snprintf(name, sizeof(name), "nexmark-%s", a->query);
    struct sp_job *job = sp_job_new(name);
    r.job = job;
    struct sp_stream *events = sp_nexmark_source(job, &config);
    struct sp_stream *out = sp_nexmark_query(job, a->query, events, &config);
    if (a->dump != NULL)
        sp_sink_call(events, on_event, &r);
    if (r.latency != LATENCY_NONE || a->dump != NULL)
        sp_sink_call(out, on_result, &r);
    else
        sp_sink_blackhole(out);
    int ret = 0;
    if (sp_job_error(job) != NULL) {
        fprintf(stderr, "spate: bench nexmark: %s\n", sp_job_error(job));
        ret = 2;
        goto out;
    }
    if (a->dump != NULL && dump_open(&r, a->dump) < 0) {
        dump_close(&r, a->dump, false);
        ret = 2;
        goto out;
    }

    struct sp_run_config rc;
    sp_run_config_default(&rc);
    rc.cores = cores;
    rc.memory_bytes = cli->memory_bytes;
    rc.poll = cli->poll;
    rc.progress = isatty(STDERR_FILENO);
    rc.watermark_times = r.latency == LATENCY_WATERMARK;
    struct sp_job_stats stats = {0};
    int run_rc = sp_job_run(job, &rc, &stats);
    if (run_rc < 0)
        fprintf(stderr, "spate: bench nexmark: %s failed: %s\n", a->query,
                sp_job_error(job) ? sp_job_error(job) : "unknown error");
    if (a->dump != NULL && dump_close(&r, a->dump, run_rc == 0) < 0)
        run_rc = -1; /* the reason is printed */
    if (run_rc < 0) {
        ret = 1;
        goto out;
    }
    struct rusage ru;
    *res = (struct result){
        .events = stats.records_in,
        .seconds = stats.seconds,
        .output_rows = stats.records_out - (a->dump != NULL ? stats.records_in : 0),
        .peak_rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0,
        .interrupted = stats.interrupted,
    };
    latency_summary(&r, res);
out:
    sp_job_free(job);
    for (unsigned s = 0; s < cores; s++)
        free(r.shards[s].latency_us);
    free(r.shards);
    return ret;
}

static void print_result(const char *query, unsigned cores, const struct result *res, size_t budget)
{
    char h1[32], h2[32];
    double secs = res->seconds > 0 ? res->seconds : 1e-9;
    double eps = (double)res->events / secs;
    printf("nexmark %s: %" PRIu64 " events on %u core%s%s\n", query, res->events, cores,
           cores == 1 ? "" : "s", res->interrupted ? " (stopped before the end)" : "");
    printf("  seconds           %.3f\n", res->seconds);
    printf("  events/s          %s (%s per core)\n", human(eps, h1, sizeof(h1)),
           human(eps / cores, h2, sizeof(h2)));
    printf("  output rows       %" PRIu64 "\n", res->output_rows);
    if (latency_of(query) == LATENCY_NONE)
        printf("  latency p50/p99   n/a (emits as records arrive, not on time)\n");
    else if (!res->has_latency)
        printf("  latency p50/p99   n/a (no result measured)\n");
    else
        printf("  latency p50/p99   %.3f / %.3f ms (%" PRIu64 " results%s)\n", res->p50_ms,
               res->p99_ms, res->latency_samples,
               res->latency_unmeasured > 0 ? ", some closed early or forgotten" : "");
    printf("  peak RSS          %.1f MiB (managed memory %.0f MiB)\n",
           (double)res->peak_rss / (1024.0 * 1024.0), (double)budget / (1024.0 * 1024.0));
}

static void json_result(FILE *f, const char *query, unsigned cores, const struct nexmark_args *a,
                        const struct result *res)
{
    double secs = res->seconds > 0 ? res->seconds : 1e-9;
    double eps = (double)res->events / secs;
    char p50[32] = "null", p99[32] = "null";
    if (res->has_latency) {
        snprintf(p50, sizeof(p50), "%.3f", res->p50_ms);
        snprintf(p99, sizeof(p99), "%.3f", res->p99_ms);
    }
    fprintf(f,
            "{\"query\": \"%s\", \"events\": %" PRIu64 ", \"cores\": %u, \"seconds\": %.6f, "
            "\"events_per_sec\": %.1f, \"events_per_sec_per_core\": %.1f, "
            "\"output_rows\": %" PRIu64 ", \"latency_p50_ms\": %s, \"latency_p99_ms\": %s, "
            "\"latency_samples\": %" PRIu64 ", \"peak_rss_bytes\": %" PRIu64 ", \"seed\": %" PRIu64
            ", \"rate\": %.17g, \"interrupted\": %s}\n",
            query, res->events, cores, res->seconds, eps, eps / cores, res->output_rows, p50, p99,
            res->latency_samples, res->peak_rss, a->seed, a->rate,
            res->interrupted ? "true" : "false");
}

/* The managed memory of a run: per shard, times the shards. */
static size_t budget_of(const struct spate_cli *cli, unsigned cores)
{
    return (cli->memory_bytes ? cli->memory_bytes : (size_t)256 << 20) * cores;
}

static int one_query(const struct spate_cli *cli, const struct nexmark_args *a, unsigned cores)
{
    FILE *json = NULL;
    if (a->json != NULL && (json = fopen(a->json, "w")) == NULL) {
        fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", a->json, strerror(errno));
        return 2;
    }
    struct result res = {0};
    int ret = run_query(cli, a, cores, &res);
    if (ret != 0) {
        if (json != NULL)
            fclose(json);
        return ret;
    }
    print_result(a->query, cores, &res, budget_of(cli, cores));
    if (json != NULL) {
        json_result(json, a->query, cores, a, &res);
        if (fclose(json) != 0) {
            fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", a->json,
                    strerror(errno));
            return 1;
        }
    }
    return res.interrupted ? 1 : 0;
}

/* ---- --all ---- */

/* Flink 1.13's published per-core figures (nexmark's README: 8 workers of
 * 8 cores), and this project's targets; 0 where none. */
struct reference {
    const char *query;
    double flink_per_core;
    double target_per_core;
};

static const struct reference references[] = {
    {"q0", 155e3, 10e6}, {"q1", 158e3, 10e6}, {"q2", 175e3, 10e6}, {"q3", 152e3, 3e6},
    {"q4", 34e3, 2e6},   {"q5", 22e3, 2e6},   {"q6", 0, 0},        {"q7", 12e3, 2e6},
    {"q8", 146e3, 3e6},  {"q11", 40e3, 2e6},  {"q12", 76e3, 2e6},
};

struct all_row {
    const char *query;
    bool ok;
    double eps_core, eps, seconds;
    uint64_t output_rows, peak_rss;
    char p50[16], p99[16];
};

/* A number after `"key": ` in a JSON object we wrote; NAN when absent or null. */
static double json_number(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(text, pat);
    if (p == NULL)
        return NAN;
    p += strlen(pat);
    if (strncmp(p, "null", 4) == 0)
        return NAN;
    return strtod(p, NULL);
}

/* Runs `spate bench nexmark --query Q ...` as a child (its own peak RSS). */
static int run_child(const struct spate_cli *cli, const struct nexmark_args *a, unsigned cores,
                     const char *query, const char *json_path, struct all_row *row)
{
    char events[32], cores_s[16], memory[32], seed[32], rate[64];
    snprintf(events, sizeof(events), "%" PRIu64, a->events);
    snprintf(cores_s, sizeof(cores_s), "%u", cores);
    snprintf(memory, sizeof(memory), "%zu", cli->memory_bytes);
    snprintf(seed, sizeof(seed), "%" PRIu64, a->seed);
    snprintf(rate, sizeof(rate), "%.17g", a->rate);
    char *argv[24];
    int n = 0;
    argv[n++] = "spate";
    argv[n++] = "--cores";
    argv[n++] = cores_s;
    if (cli->memory_bytes != 0) {
        argv[n++] = "--memory";
        argv[n++] = memory;
    }
    if (cli->poll)
        argv[n++] = "--poll";
    char *rest[] = {"bench",  "nexmark", "--query", (char *)query, "--events", events,
                    "--seed", seed,      "--rate",  rate,          "--json",   (char *)json_path};
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
        argv[n++] = rest[i];
    argv[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) {
        fprintf(stderr, "spate: bench nexmark: cannot start %s: %s\n", query, strerror(err));
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "spate: bench nexmark: %s failed (status %d)\n", query, status);
        return -1;
    }
    char text[2048] = {0};
    FILE *f = fopen(json_path, "r");
    if (f == NULL || fread(text, 1, sizeof(text) - 1, f) == 0) {
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    row->eps = json_number(text, "events_per_sec");
    row->eps_core = json_number(text, "events_per_sec_per_core");
    row->seconds = json_number(text, "seconds");
    row->output_rows = (uint64_t)json_number(text, "output_rows");
    row->peak_rss = (uint64_t)json_number(text, "peak_rss_bytes");
    double p50 = json_number(text, "latency_p50_ms"), p99 = json_number(text, "latency_p99_ms");
    snprintf(row->p50, sizeof(row->p50), isnan(p50) ? "n/a" : "%.1f", p50);
    snprintf(row->p99, sizeof(row->p99), isnan(p99) ? "n/a" : "%.1f", p99);
    row->ok = true;
    return 0;
}

/* One core reading a buffer far larger than the caches: GB/s, best of 3. */
static double memory_read_gbps(void)
{
    size_t bytes = (size_t)512 << 20, words = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(bytes);
    if (buf == NULL)
        return NAN;
    for (size_t i = 0; i < words; i++)
        buf[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 3; pass++) {
        uint64_t t0 = mono_ns(), s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i < words; i += 4) {
            s0 += buf[i];
            s1 += buf[i + 1];
            s2 += buf[i + 2];
            s3 += buf[i + 3];
        }
        sink += s0 + s1 + s2 + s3;
        double gbps = (double)bytes / (double)(mono_ns() - t0);
        if (gbps > best)
            best = gbps;
    }
    (void)sink;
    free(buf);
    return best;
}

/* The events' average size as the reference counts it (the 1:3:46 mix). */
static double average_event_bytes(void)
{
    struct sp_nexmark_config c;
    sp_nexmark_config_default(&c);
    double total = c.person_proportion + c.auction_proportion + c.bid_proportion;
    return (c.person_proportion * (double)c.avg_person_bytes +
            c.auction_proportion * (double)c.avg_auction_bytes +
            c.bid_proportion * (double)c.avg_bid_bytes) /
           total;
}

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v != NULL) {
                snprintf(buf, size, "%s", v + 2);
                buf[strcspn(buf, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

static void write_markdown(FILE *f, const struct all_row *rows, size_t n, unsigned cores,
                           const struct nexmark_args *a, double gbps, double limit)
{
    char cpu[256], date[32], h[32];
    cpu_model(cpu, sizeof(cpu));
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%d", gmtime(&now));
    fprintf(f, "# Nexmark results\n\n");
    fprintf(f,
            "Written by `spate bench nexmark --all --events %" PRIu64
            "` on %s: %u cores used of %ld online, %s.\n\n",
            a->events, date, cores, sysconf(_SC_NPROCESSORS_ONLN), cpu);
    fprintf(f,
            "Events/s per core include the generator, as Flink's figures include theirs. "
            "Flink 1.13: nexmark's published per-core figures (8 workers x 8 cores). Memory "
            "limit: one core reading memory at %.1f GB/s (measured in this run) can read %s "
            "events/s of the reference's %.0f-byte average event; no engine that touches "
            "each event's bytes once from memory does better per core.\n\n",
            gbps, human(limit, h, sizeof(h)), average_event_bytes());
    fprintf(f,
            "| query | events/s per core | Flink 1.13 per core | x Flink | target | memory "
            "limit | events/s | seconds | output rows | latency p50 / p99 ms | peak RSS MiB |\n");
    fprintf(f, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < n; i++) {
        const struct all_row *r = &rows[i];
        const struct reference *ref = &references[i];
        if (!r->ok) {
            fprintf(f, "| %s | failed | | | | | | | | | |\n", r->query);
            continue;
        }
        char e1[32], e2[32], e3[32], e4[32], e5[32], ratio[32] = "-", target[64] = "-";
        if (ref->flink_per_core > 0)
            snprintf(ratio, sizeof(ratio), "%.0fx", r->eps_core / ref->flink_per_core);
        if (ref->target_per_core > 0)
            snprintf(target, sizeof(target), ">= %s: %s", human(ref->target_per_core, e5, 32),
                     r->eps_core >= ref->target_per_core ? "met" : "**not met**");
        fprintf(f,
                "| %s | %s | %s | %s | %s | %.0f%% | %s | %.2f | %" PRIu64 " | %s / %s | %.0f |\n",
                r->query, human(r->eps_core, e1, 32),
                ref->flink_per_core > 0 ? human(ref->flink_per_core, e2, 32) : "-", ratio, target,
                100.0 * r->eps_core / limit, human(r->eps, e3, 32), r->seconds, r->output_rows,
                r->p50, r->p99, (double)r->peak_rss / (1024.0 * 1024.0));
        (void)e4;
    }
    fprintf(f, "\n![events/s per core, spate and Flink 1.13](nexmark-results.svg)\n");
}

/* Horizontal bars on a log scale: spate's and Flink's events/s per core. */
static void write_svg(FILE *f, const struct all_row *rows, size_t n, double limit)
{
    const int left = 60, width = 640, bar = 12, row_h = 34, top = 40;
    int height = top + (int)n * row_h + 40;
    const double lo = 4.0, hi = 9.0; /* 10K .. 1G events/s */
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            left + width + 120, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f,
            "<text x=\"%d\" y=\"20\" font-size=\"14\">Nexmark events/s per core (log scale): "
            "<tspan fill=\"#1f77b4\">spate</tspan>, <tspan fill=\"#999\">Flink 1.13</tspan>, "
            "<tspan fill=\"#d62728\">memory limit</tspan></text>\n",
            left);
    for (int d = (int)lo; d <= (int)hi; d++) {
        int x = left + (int)((d - lo) / (hi - lo) * width);
        static const char *const labels[] = {"10K", "100K", "1M", "10M", "100M", "1G"};
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, top - 5,
                x, top + (int)n * row_h);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x,
                top + (int)n * row_h + 16, labels[d - (int)lo]);
    }
    for (size_t i = 0; i < n; i++) {
        int y = top + (int)i * row_h;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8, y + 17,
                rows[i].query);
        double vals[2] = {rows[i].ok ? rows[i].eps_core : 0, references[i].flink_per_core};
        const char *colors[2] = {"#1f77b4", "#999"};
        for (int k = 0; k < 2; k++) {
            if (!(vals[k] > 0))
                continue;
            double l = log10(vals[k]);
            int w = (int)((l < lo ? 0 : l - lo) / (hi - lo) * width);
            char h[32];
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", left,
                    y + k * (bar + 2), w, bar, colors[k]);
            fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\">%s</text>\n", left + w + 4,
                    y + k * (bar + 2) + 10, human(vals[k], h, sizeof(h)));
        }
    }
    if (limit > 0) {
        int x = left + (int)((log10(limit) - lo) / (hi - lo) * width);
        fprintf(f,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d62728\" "
                "stroke-dasharray=\"4,3\"/>\n",
                x, top - 5, x, top + (int)n * row_h);
    }
    fprintf(f, "</svg>\n");
}

static int all_queries(const struct spate_cli *cli, const struct nexmark_args *a, unsigned cores)
{
    const char *dir = a->out != NULL ? a->out : "docs";
    size_t n = sizeof(references) / sizeof(references[0]);
    struct all_row rows[sizeof(references) / sizeof(references[0])];
    memset(rows, 0, sizeof(rows));
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) < 0) {
        fprintf(stderr, "spate: bench nexmark: --out '%s': not a directory this user can write\n",
                dir);
        return 2;
    }
    FILE *json = NULL;
    if (a->json != NULL && (json = fopen(a->json, "w")) == NULL) {
        fprintf(stderr, "spate: bench nexmark: cannot write '%s': %s\n", a->json, strerror(errno));
        return 2;
    }
    char tmp[] = "/tmp/spate-nexmark-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "spate: bench nexmark: cannot make a temporary file: %s\n",
                strerror(errno));
        if (json != NULL)
            fclose(json);
        return 1;
    }
    close(fd);
    char h1[32], h2[32];
    printf("| query | events/s per core | Flink 1.13 per core | output rows | latency p50 / p99 "
           "ms | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    int failed = 0;
    unsigned written = 0; /* objects in the JSON array */
    if (json != NULL)
        fprintf(json, "[\n");
    for (size_t i = 0; i < n; i++) {
        rows[i].query = references[i].query;
        if (run_child(cli, a, cores, references[i].query, tmp, &rows[i]) < 0) {
            failed++;
            printf("| %s | failed | | | | |\n", rows[i].query);
            continue;
        }
        printf("| %s | %s | %s | %" PRIu64 " | %s / %s | %.0f |\n", rows[i].query,
               human(rows[i].eps_core, h1, sizeof(h1)),
               references[i].flink_per_core > 0
                   ? human(references[i].flink_per_core, h2, sizeof(h2))
                   : "-",
               rows[i].output_rows, rows[i].p50, rows[i].p99,
               (double)rows[i].peak_rss / (1024.0 * 1024.0));
        fflush(stdout);
        if (json != NULL) {
            FILE *t = fopen(tmp, "r");
            char text[2048] = {0};
            if (t != NULL) {
                size_t got = fread(text, 1, sizeof(text) - 1, t);
                fclose(t);
                text[strcspn(text, "\n")] = '\0';
                fprintf(json, "%s%s\n", written++ > 0 ? "," : "", got > 0 ? text : "null");
            }
        }
    }
    unlink(tmp);
    if (json != NULL) {
        fprintf(json, "]\n");
        fclose(json);
    }
    /* After the runs: a child started while this process held the buffer
     * would inherit its peak RSS (posix_spawn shares the memory until exec). */
    double gbps = memory_read_gbps();
    double limit = gbps * 1e9 / average_event_bytes();
    printf("memory read bandwidth (one core): %.1f GB/s: %s events/s of %.0f bytes per core\n",
           gbps, human(limit, h1, sizeof(h1)), average_event_bytes());
    char path[4096];
    snprintf(path, sizeof(path), "%s/nexmark-results.md", dir);
    FILE *md = fopen(path, "w");
    snprintf(path, sizeof(path), "%s/nexmark-results.svg", dir);
    FILE *svg = fopen(path, "w");
    if (md == NULL || svg == NULL) {
        fprintf(stderr, "spate: bench nexmark: cannot write into '%s': %s\n", dir, strerror(errno));
        if (md != NULL)
            fclose(md);
        if (svg != NULL)
            fclose(svg);
        return 1;
    }
    write_markdown(md, rows, n, cores, a, gbps, limit);
    write_svg(svg, rows, n, limit);
    int bad = fclose(md) != 0;
    bad |= fclose(svg) != 0;
    printf("wrote %s/nexmark-results.md and %s/nexmark-results.svg\n", dir, dir);
    return failed > 0 || bad ? 1 : 0;
}

int spate_bench_nexmark(const struct spate_cli *cli)
{
    struct nexmark_args a = {0};
    int ret = parse_args(cli, &a);
    if (ret != 0)
        return ret;
    unsigned cores = cli->cores ? cli->cores : sp_runtime_cpu_count();
    return a.all ? all_queries(cli, &a, cores) : one_query(cli, &a, cores);
}
