/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka source and sink in whole jobs, against librdkafka's mock cluster
 * (tests/kafka-peers/mock_broker: a real Kafka-protocol broker on loopback;
 * there is no real Kafka broker here). Input is written and output read
 * with kcat, a real client that shares no code with spate.
 *
 *  - windows: 4 input partitions read on 2 shards (manual assignment, from
 *    the beginning, bounded), keyed, 10 s tumbling counts, written back
 *    with the user as key; every output line compared with counts computed
 *    here, no line missing, none extra, none twice.
 *  - group: 2 shards as members of one group read every record exactly
 *    once; a second run of the same group finds everything committed.
 *  - group rebalance: `spate consume -g` shares the job's group, then
 *    dies; the job takes its partitions over from its commits; job and
 *    CLI together read every record once.
 *  - malformed: a record that is not JSON fails the job naming its topic,
 *    partition and offset; skipping malformed records, the rest is read;
 *    RAW into sp_record_row gives every record as it is, with its offset,
 *    partition and timestamp.
 *  - unreachable: bootstrap servers nobody listens on fail the source and
 *    the sink within their time-out.
 *  - sink waits: rows that reach the sink before its topic's metadata wait
 *    (blocking the input) and all get written once it comes.
 *  - backpressure: a source buffer far smaller than the input (the
 *    consumer pauses and resumes) and a sink high-water mark far smaller
 *    than the output (the sink blocks and unblocks) lose and duplicate
 *    nothing; prints the throughput.
 *
 * Each test starts its own mock. Skips (77) without the mock or kcat.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include <jansson.h>

#include "../net/client/mock_peer.h"
#include "sp_common.h"
#include "sp_job.h"
#include "sp_log.h"
#include "sp_runtime.h"

/* ---- Shared ---- */

struct click {
    int64_t user;
    int64_t ts;
    int64_t amount;
    int64_t id;
};

static const struct sp_field click_fields[] = {
    SP_FIELD(struct click, user, SP_T_I64),
    SP_FIELD(struct click, ts, SP_T_I64),
    SP_FIELD(struct click, amount, SP_T_I64),
    SP_FIELD(struct click, id, SP_T_I64),
};
static const struct sp_schema click_schema = SP_SCHEMA(struct click, click_fields);

static struct sp_run_config run_config(void)
{
    struct sp_run_config rc;
    sp_run_config_default(&rc);
    unsigned cpus = sp_runtime_cpu_count();
    rc.cores = cpus < 2 ? cpus : 2;
    rc.memory_bytes = 32u << 20;
    rc.handle_signals = false;
    return rc;
}

static void need_kcat(void)
{
    if (system("command -v kcat >/dev/null 2>&1") != 0)
        skip();
}

static void start_mock(struct mock_peer *m, const char *const *topics)
{
    const char *args[16];
    unsigned n = 0;
    for (unsigned i = 0; topics[i] != NULL && n + 2 < SP_ARRAY_LEN(args); i++) {
        args[n++] = "--topic";
        args[n++] = topics[i];
    }
    args[n] = NULL;
    assert_int_equal(mock_peer_start(m, args), 0);
}

/* Writes `lines` (newline-separated) to partition `p` of `topic` with kcat. */
static void produce(const struct mock_peer *m, const char *topic, int p, const char *lines)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "kcat -P -b %s -t %s -p %d", m->bootstrap, topic, p);
    FILE *f = popen(cmd, "w");
    assert_non_null(f);
    fputs(lines, f);
    assert_int_equal(pclose(f), 0);
}

/* Appends one JSON click to `buf` (at *used, cap bytes). */
static void click_line(char *buf, size_t cap, size_t *used, const struct click *c)
{
    int n = snprintf(buf + *used, cap - *used,
                     "{\"user\":%lld,\"ts\":%lld,\"amount\":%lld,\"id\":%lld}\n",
                     (long long)c->user, (long long)c->ts, (long long)c->amount, (long long)c->id);
    assert_true(n > 0 && (size_t)n < cap - *used);
    *used += (size_t)n;
}

static double now_s(void)
{
    return (double)sp_now_ns() / 1e9;
}

/* ---- Windows, manual assignment, Kafka to Kafka ---- */

#define WIN_PARTITIONS 4
#define WIN_PER_PARTITION 100
#define WIN_USERS 7
#define WIN_BASE_MS 1000000
#define WIN_SIZE_MS 10000
#define WIN_OOO_MS 5000
#define WIN_SLOTS 64 /* windows per user, at most */

/*
 * Partition p's i-th click: 250 ms apart, each moved by up to +-2 s, so
 * within a partition records come up to 4 s out of order, inside the
 * 5 s bound: none is late, and the counts do not depend on timing.
 */
static struct click win_click(int p, int i)
{
    int64_t jitter = (int64_t)((i * 7919 + p * 104729) % 4000) - 2000;
    return (struct click){
        .user = (i * 31 + p * 17) % WIN_USERS + 1,
        .ts = WIN_BASE_MS + (int64_t)i * 250 + jitter,
        .amount = i % 5,
        .id = p * WIN_PER_PARTITION + i,
    };
}

/* Output windows per user and slot (slot 0 starts 10 s before WIN_BASE_MS). */
struct win_table {
    int64_t count[WIN_USERS + 1][WIN_SLOTS];
    unsigned seen[WIN_USERS + 1][WIN_SLOTS];
};

/* Writes the input and counts what each window must hold. */
static void win_produce(const struct mock_peer *m, struct win_table *want)
{
    static char lines[64 << 10];
    for (int p = 0; p < WIN_PARTITIONS; p++) {
        size_t used = 0;
        for (int i = 0; i < WIN_PER_PARTITION; i++) {
            struct click c = win_click(p, i);
            click_line(lines, sizeof(lines), &used, &c);
            int64_t slot = (c.ts - WIN_BASE_MS + WIN_SIZE_MS) / WIN_SIZE_MS; /* ts >= base - 2 s */
            assert_true(slot >= 0 && slot < WIN_SLOTS);
            want->count[c.user][slot]++;
            want->seen[c.user][slot] = 1;
        }
        produce(m, "in", p, lines);
    }
}

/* Reads every window back: key the user, value the aggregate row as JSON. */
static unsigned win_read_back(const struct mock_peer *m, struct win_table *got)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "kcat -C -b %s -t out -o beginning -e -q -f '%%k %%s\\n'",
             m->bootstrap);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    unsigned lines_read = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lines_read++;
        long long key;
        int at = 0;
        if (sscanf(line, "%lld %n", &key, &at) != 1)
            fail_msg("output line without a key: %s", line);
        json_error_t jerr;
        json_t *v = json_loads(line + at, 0, &jerr);
        if (v == NULL)
            fail_msg("output value is not JSON (%s): %s", jerr.text, line);
        long long ws = json_integer_value(json_object_get(v, "window_start"));
        long long we = json_integer_value(json_object_get(v, "window_end"));
        long long count = json_integer_value(json_object_get(v, "count"));
        long long user = json_integer_value(json_object_get(v, "user"));
        json_decref(v);
        assert_int_equal(user, key);
        assert_int_equal(we - ws, WIN_SIZE_MS);
        assert_true(user >= 1 && user <= WIN_USERS);
        assert_int_equal((ws - WIN_BASE_MS) % WIN_SIZE_MS, 0);
        long long slot = (ws - WIN_BASE_MS + WIN_SIZE_MS) / WIN_SIZE_MS;
        assert_true(slot >= 0 && slot < WIN_SLOTS);
        got->seen[user][slot]++;
        got->count[user][slot] = count;
    }
    assert_int_equal(pclose(f), 0);
    return lines_read;
}

static void test_windows(void **state)
{
    (void)state;
    need_kcat();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"in:4", "out:2", NULL});
    static struct win_table want, got;
    memset(&want, 0, sizeof(want));
    memset(&got, 0, sizeof(got));
    win_produce(&m, &want);

    struct sp_job *job = sp_job_new("kafka-windows");
    const char *const sink_props[] = {"linger.ms=2", NULL};
    struct sp_stream *s = sp_source_kafka(
        job,
        &(struct sp_kafka_source_config){
            .bootstrap = m.bootstrap, .topic = "in", .from_beginning = true, .stop_at_end = true},
        SP_FORMAT_JSON, &click_schema,
        &(struct sp_watermarks){.ts_field = "ts", .out_of_orderness_ms = WIN_OOO_MS});
    s = sp_key_by(s, "user");
    s = sp_window_aggregate(s,
                            &(struct sp_window){.kind = SP_WINDOW_TUMBLING, .size_ms = WIN_SIZE_MS},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    sp_sink_kafka(s,
                  &(struct sp_kafka_sink_config){.bootstrap = m.bootstrap,
                                                 .topic = "out",
                                                 .key_field = "user",
                                                 .properties = sink_props},
                  SP_FORMAT_JSON);
    struct sp_run_config rc = run_config();
    struct sp_job_stats stats;
    double t0 = now_s();
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    double took = now_s() - t0;
    assert_int_equal(stats.records_in, WIN_PARTITIONS * WIN_PER_PARTITION);
    assert_int_equal(stats.records_late, 0);
    sp_job_free(job);

    unsigned lines_read = win_read_back(&m, &got);
    unsigned windows = 0;
    for (int u = 1; u <= WIN_USERS; u++) {
        for (int w = 0; w < WIN_SLOTS; w++) {
            if (want.seen[u][w] == 0 && got.seen[u][w] == 0)
                continue;
            windows++;
            if (got.seen[u][w] != 1 || got.count[u][w] != want.count[u][w])
                fail_msg("user %d window %lld: seen %u times, count %lld, want once with %lld", u,
                         (long long)(WIN_BASE_MS + (w - 1) * WIN_SIZE_MS), got.seen[u][w],
                         (long long)got.count[u][w], (long long)want.count[u][w]);
        }
    }
    assert_int_equal(lines_read, windows);
    assert_int_equal(stats.records_out, windows);
    fprintf(stderr, "windows: %u records in, %u windows out, %.2f s on %u shards\n",
            WIN_PARTITIONS * WIN_PER_PARTITION, windows, took, rc.cores);
    mock_peer_stop(&m);
}

/* ---- Group ---- */

#define GROUP_PARTITIONS 4
#define GROUP_PER_PARTITION 500
#define GROUP_RECORDS (GROUP_PARTITIONS * GROUP_PER_PARTITION)

struct id_counts {
    _Atomic unsigned counts[GROUP_RECORDS];
    _Atomic unsigned bad;
    _Atomic unsigned shards_seen; /* bit per shard that got rows */
};

static void count_ids(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    struct id_counts *c = ctx;
    const struct click *r = row;
    (void)ts;
    if (r->id < 0 || r->id >= GROUP_RECORDS)
        atomic_fetch_add(&c->bad, 1);
    else
        atomic_fetch_add(&c->counts[r->id], 1);
    atomic_fetch_or(&c->shards_seen, 1u << shard);
}

static int run_group(const struct mock_peer *m, struct id_counts *c, struct sp_job_stats *stats)
{
    struct sp_job *job = sp_job_new("kafka-group");
    const char *const props[] = {"session.timeout.ms=6000", "heartbeat.interval.ms=500", NULL};
    struct sp_stream *s =
        sp_source_kafka(job,
                        &(struct sp_kafka_source_config){.bootstrap = m->bootstrap,
                                                         .topic = "gin",
                                                         .group = "spate-g1",
                                                         .from_beginning = true,
                                                         .stop_at_end = true,
                                                         .properties = props},
                        SP_FORMAT_JSON, &click_schema, NULL);
    sp_sink_call(s, count_ids, c);
    struct sp_run_config rc = run_config();
    rc.max_seconds = 45; /* a safety net: stop_at_end ends it */
    int ret = sp_job_run(job, &rc, stats);
    if (ret != 0)
        fail_msg("group job failed: %s", sp_job_error(job));
    assert_false(stats->interrupted);
    sp_job_free(job);
    return ret;
}

static void test_group(void **state)
{
    (void)state;
    need_kcat();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"gin:4", NULL});
    static char lines[128 << 10];
    for (int p = 0; p < GROUP_PARTITIONS; p++) {
        size_t used = 0;
        for (int i = 0; i < GROUP_PER_PARTITION; i++) {
            struct click c = {
                .user = i % 9, .ts = 1000 + i, .amount = 1, .id = p * GROUP_PER_PARTITION + i};
            click_line(lines, sizeof(lines), &used, &c);
        }
        produce(&m, "gin", p, lines);
    }
    static struct id_counts c;
    memset(&c, 0, sizeof(c));
    struct sp_job_stats stats;
    double t0 = now_s();
    run_group(&m, &c, &stats);
    double took = now_s() - t0;
    for (unsigned i = 0; i < GROUP_RECORDS; i++)
        if (atomic_load(&c.counts[i]) != 1)
            fail_msg("record %u read %u times", i, atomic_load(&c.counts[i]));
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(stats.records_in, GROUP_RECORDS);
    unsigned cores = run_config().cores;
    if (cores == 2)
        assert_int_equal(atomic_load(&c.shards_seen), 3); /* both members got partitions */
    fprintf(stderr, "group: %u records read once each on %u shards in %.2f s\n", GROUP_RECORDS,
            cores, took);

    /* The same group again: every offset was committed at the end. */
    memset(&c, 0, sizeof(c));
    run_group(&m, &c, &stats);
    assert_int_equal(stats.records_in, 0);
    mock_peer_stop(&m);
}

/* ---- Group: a member comes and goes while the job reads ---- */

#define REB_PARTITIONS 4
#define REB_BATCH 400 /* records per batch, over every partition */
#define REB_BATCHES 3
#define REB_RECORDS (REB_BATCHES * REB_BATCH)

struct reb_job {
    const struct mock_peer *m;
    struct id_counts *counts;
    struct sp_job_stats stats;
    int ret;
    char error[512];
};

static void *reb_run(void *arg)
{
    struct reb_job *r = arg;
    struct sp_job *job = sp_job_new("kafka-rebalance");
    const char *const props[] = {"session.timeout.ms=4000", "heartbeat.interval.ms=300", NULL};
    struct sp_stream *s =
        sp_source_kafka(job,
                        &(struct sp_kafka_source_config){.bootstrap = r->m->bootstrap,
                                                         .topic = "reb",
                                                         .group = "spate-g2",
                                                         .from_beginning = true,
                                                         .properties = props},
                        SP_FORMAT_JSON, &click_schema, NULL);
    sp_sink_call(s, count_ids, r->counts);
    struct sp_run_config rc = run_config();
    rc.max_seconds = 17; /* unbounded: stopped after this */
    r->ret = sp_job_run(job, &rc, &r->stats);
    if (r->ret != 0)
        snprintf(r->error, sizeof(r->error), "%s", sp_job_error(job));
    sp_job_free(job);
    return NULL;
}

static void reb_produce(const struct mock_peer *m, int batch)
{
    static char lines[64 << 10];
    for (int p = 0; p < REB_PARTITIONS; p++) {
        size_t used = 0;
        for (int i = 0; i < REB_BATCH / REB_PARTITIONS; i++) {
            struct click c = {.user = i,
                              .ts = 1000 + i,
                              .amount = 1,
                              .id = batch * REB_BATCH + p * (REB_BATCH / REB_PARTITIONS) + i};
            click_line(lines, sizeof(lines), &used, &c);
        }
        produce(m, "reb", p, lines);
    }
}

/*
 * The job's two shards and `spate consume -g` (the CLI, auto-committing
 * every 100 ms) share a group of three and split the topic; the CLI is
 * interrupted after 6 s, its session times out, and the shards take its
 * partitions over from its committed offsets; more records come before
 * and after. Between job and CLI every record is read exactly once.
 *
 * Records arrive only while the membership is settled: librdkafka's mock
 * refuses every commit once a rebalance began (Kafka accepts them until
 * the rebalance completes), so what a member emitted and had not yet
 * committed when one began would be read again by the next owner here.
 */
static void test_group_rebalance(void **state)
{
    (void)state;
    need_kcat();
    if (system("command -v timeout >/dev/null 2>&1") != 0)
        skip();
    /* The spate program of the same build, next to the mock's folder. */
    char spate[512];
    snprintf(spate, sizeof(spate), "%s", MOCK_BROKER);
    char *cut = strstr(spate, "/tests/kafka-peers/");
    if (cut == NULL)
        skip();
    snprintf(cut, sizeof(spate) - (size_t)(cut - spate), "/spate/spate");
    if (access(spate, X_OK) != 0)
        skip();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"reb:4", NULL});
    static struct id_counts c;
    memset(&c, 0, sizeof(c));
    reb_produce(&m, 0);
    struct reb_job r = {.m = &m, .counts = &c};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, reb_run, &r), 0);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout -s INT 6 %s consume -b %s -t reb -g spate-g2 --from-beginning "
             "-f '%%s\\n' -X auto.commit.interval.ms=100 -X heartbeat.interval.ms=300 "
             "-X session.timeout.ms=4000 2>/dev/null",
             spate, m.bootstrap);
    FILE *cli = popen(cmd, "r"); /* joins within the group's first 3 s, as the shards */
    assert_non_null(cli);
    usleep(4500 * 1000); /* the three members read the first batch */
    reb_produce(&m, 1);  /* read by the three */
    usleep(2500 * 1000); /* the CLI has been interrupted */
    reb_produce(&m, 2);  /* the CLI's share waits for its session to time out */
    static unsigned cli_counts[REB_RECORDS];
    memset(cli_counts, 0, sizeof(cli_counts));
    char line[256];
    unsigned cli_rows = 0;
    while (fgets(line, sizeof(line), cli) != NULL) {
        json_error_t jerr;
        json_t *v = json_loads(line, 0, &jerr);
        if (v == NULL)
            fail_msg("the CLI printed a line that is not JSON: %s", line);
        long long id = json_integer_value(json_object_get(v, "id"));
        json_decref(v);
        assert_true(id >= 0 && id < REB_RECORDS);
        cli_counts[id]++;
        cli_rows++;
    }
    (void)pclose(cli); /* interrupted: its status says so */
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (r.ret != 0)
        fail_msg("job failed: %s", r.error);
    unsigned job_rows = 0;
    for (unsigned i = 0; i < REB_RECORDS; i++) {
        unsigned n = atomic_load(&c.counts[i]) + cli_counts[i];
        job_rows += atomic_load(&c.counts[i]);
        if (n != 1)
            fail_msg("record %u read %u times (job %u, CLI %u)", i, n, atomic_load(&c.counts[i]),
                     cli_counts[i]);
    }
    assert_true(cli_rows > 0);
    fprintf(stderr, "group rebalance: %u records, %u by the job, %u by a member that left\n",
            REB_RECORDS, job_rows, cli_rows);
    mock_peer_stop(&m);
}

/* ---- Malformed records ---- */

struct counter {
    _Atomic uint64_t rows;
};

static void count_rows(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    struct counter *c = ctx;
    (void)shard, (void)row, (void)ts;
    atomic_fetch_add(&c->rows, 1);
}

static int run_counting(const char *bootstrap, const char *topic, const char *const *props,
                        bool skip_malformed, struct counter *c, struct sp_job_stats *stats,
                        struct sp_job **job_out)
{
    struct sp_job *job = sp_job_new("kafka-count");
    struct sp_stream *s =
        sp_source_kafka(job,
                        &(struct sp_kafka_source_config){.bootstrap = bootstrap,
                                                         .topic = topic,
                                                         .from_beginning = true,
                                                         .stop_at_end = true,
                                                         .properties = props,
                                                         .skip_malformed = skip_malformed},
                        SP_FORMAT_JSON, &click_schema, NULL);
    sp_sink_call(s, count_rows, c);
    struct sp_run_config rc = run_config();
    rc.max_seconds = 40;
    int ret = sp_job_run(job, &rc, stats);
    *job_out = job;
    return ret;
}

struct raw_rows {
    pthread_mutex_t lock;
    unsigned count;
    unsigned offset_seen[10];
    int64_t partition[10];
    int64_t timestamp[10];
    uint32_t key_len[10];
    char value[10][64];
};

static void keep_raw(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    struct raw_rows *r = ctx;
    const struct sp_record_row *rr = row;
    (void)shard, (void)ts;
    pthread_mutex_lock(&r->lock);
    r->count++;
    if (rr->offset >= 0 && rr->offset < 10) {
        unsigned i = (unsigned)rr->offset;
        r->offset_seen[i]++;
        r->partition[i] = rr->partition;
        r->timestamp[i] = rr->timestamp;
        r->key_len[i] = rr->key.len;
        snprintf(r->value[i], sizeof(r->value[i]), "%.*s", (int)rr->value.len, rr->value.ptr);
    }
    pthread_mutex_unlock(&r->lock);
}

static void test_malformed(void **state)
{
    (void)state;
    need_kcat();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"bad:1", NULL});
    static char lines[4096];
    size_t used = 0;
    for (int i = 0; i < 10; i++) {
        if (i == 5) {
            used += (size_t)snprintf(lines + used, sizeof(lines) - used, "{\"user\": 1, oops\n");
            continue;
        }
        struct click c = {.user = i, .ts = 1000 + i, .amount = 1, .id = i};
        click_line(lines, sizeof(lines), &used, &c);
    }
    produce(&m, "bad", 0, lines);

    struct counter c = {0};
    struct sp_job_stats stats;
    struct sp_job *job;
    assert_int_equal(run_counting(m.bootstrap, "bad", NULL, false, &c, &stats, &job), -1);
    const char *err = sp_job_error(job);
    assert_non_null(err);
    fprintf(stderr, "malformed: the job failed with: %s\n", err);
    assert_non_null(strstr(err, "topic bad partition 0 offset 5"));
    sp_job_free(job);

    atomic_store(&c.rows, 0);
    int ret = run_counting(m.bootstrap, "bad", NULL, true, &c, &stats, &job);
    if (ret != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    assert_int_equal(atomic_load(&c.rows), 9);
    assert_int_equal(stats.records_in, 9);
    assert_false(stats.interrupted);
    sp_job_free(job);

    /* RAW into sp_record_row: every record as it is, the broken one too. */
    static struct raw_rows raw;
    memset(&raw, 0, sizeof(raw));
    pthread_mutex_init(&raw.lock, NULL);
    job = sp_job_new("kafka-raw");
    struct sp_stream *s = sp_source_kafka(
        job,
        &(struct sp_kafka_source_config){
            .bootstrap = m.bootstrap, .topic = "bad", .from_beginning = true, .stop_at_end = true},
        SP_FORMAT_RAW, &sp_record_schema, NULL);
    sp_sink_call(s, keep_raw, &raw);
    struct sp_run_config rc = run_config();
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    sp_job_free(job);
    assert_int_equal(raw.count, 10);
    for (unsigned i = 0; i < 10; i++) {
        assert_int_equal(raw.offset_seen[i], 1);
        assert_int_equal(raw.partition[i], 0);
        assert_true(raw.timestamp[i] > 1000000000000LL); /* kcat stamps the time of producing */
        assert_int_equal(raw.key_len[i], 0);
    }
    assert_string_equal(raw.value[5], "{\"user\": 1, oops");
    assert_string_equal(raw.value[0], "{\"user\":0,\"ts\":1000,\"amount\":1,\"id\":0}");
    pthread_mutex_destroy(&raw.lock);
    mock_peer_stop(&m);
}

/* ---- Unreachable brokers, missing topics ---- */

static int64_t one_gen(void *ctx, uint32_t partition, uint64_t index, void *row, struct sp_out *out)
{
    (void)ctx, (void)partition, (void)out;
    struct click *c = row;
    c->user = (int64_t)index % 3;
    c->ts = 1000 + (int64_t)index;
    c->id = (int64_t)index;
    return c->ts;
}

static void test_unreachable(void **state)
{
    (void)state;
    /* Nothing listens on port 1 of loopback: every connection is refused. */
    const char *nobody = "127.0.0.1:1";
    const char *const props[] = {"spate.source.timeout.ms=1500", NULL};
    struct counter c = {0};
    struct sp_job_stats stats;
    struct sp_job *job;
    double t0 = now_s();
    assert_int_equal(run_counting(nobody, "in", props, false, &c, &stats, &job), -1);
    double took = now_s() - t0;
    const char *err = sp_job_error(job);
    assert_non_null(err);
    fprintf(stderr, "unreachable source: failed after %.2f s: %s\n", took, err);
    assert_non_null(strstr(err, "cannot reach the bootstrap servers 127.0.0.1:1"));
    assert_true(took >= 1.4 && took < 10);
    sp_job_free(job);

    /* The sink, fed by a generator. */
    job = sp_job_new("kafka-sink-unreachable");
    struct sp_stream *s = sp_source_generator(job, &click_schema, one_gen, NULL,
                                              &(struct sp_gen_config){.count = 10}, NULL);
    const char *const sink_props[] = {"spate.sink.timeout.ms=1500", NULL};
    sp_sink_kafka(
        s,
        &(struct sp_kafka_sink_config){
            .bootstrap = nobody, .topic = "out", .key_field = "user", .properties = sink_props},
        SP_FORMAT_JSON);
    struct sp_run_config rc = run_config();
    rc.max_seconds = 20;
    t0 = now_s();
    assert_int_equal(sp_job_run(job, &rc, &stats), -1);
    took = now_s() - t0;
    err = sp_job_error(job);
    assert_non_null(err);
    fprintf(stderr, "unreachable sink: failed after %.2f s: %s\n", took, err);
    assert_non_null(strstr(err, "kafka sink 'out': cannot reach the bootstrap servers"));
    assert_true(took < 10);
    sp_job_free(job);

    /*
     * A topic that does not exist is not tested here: librdkafka's mock
     * creates every topic a Metadata request names (it speaks Metadata
     * below v4, where asking is creating).
     */
}

/* ---- A sink whose metadata comes late ---- */

#define LATE_RECORDS 3000

/* Reads `topic` back with kcat: every key an id below `n`, each once. */
static void expect_ids_once(const struct mock_peer *m, const char *topic, unsigned n)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "kcat -C -b %s -t %s -o beginning -e -q -f '%%k\\n'", m->bootstrap,
             topic);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    unsigned char *seen = calloc(n, 1);
    assert_non_null(seen);
    char line[64];
    unsigned got = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        long id = strtol(line, NULL, 10);
        if (id < 0 || id >= (long)n)
            fail_msg("unexpected key %s", line);
        if (seen[id]++ != 0)
            fail_msg("id %ld written twice", id);
        got++;
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(got, n);
    free(seen);
}

static void test_sink_waits(void **state)
{
    (void)state;
    need_kcat();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"late:3", NULL});
    /*
     * The generator emits everything in its first polls, before the sink's
     * client has its first Metadata answer (connect, ApiVersions, Metadata):
     * the producer says -EAGAIN and the rows wait in the sink (with
     * SPATE_TEST_DEBUG=1 its close line says how many).
     */
    struct sp_job *job = sp_job_new("kafka-sink-waits");
    struct sp_stream *s = sp_source_generator(job, &click_schema, one_gen, NULL,
                                              &(struct sp_gen_config){.count = LATE_RECORDS}, NULL);
    sp_sink_kafka(s,
                  &(struct sp_kafka_sink_config){
                      .bootstrap = m.bootstrap, .topic = "late", .key_field = "id"},
                  SP_FORMAT_JSON);
    struct sp_run_config rc = run_config();
    struct sp_job_stats stats;
    double t0 = now_s();
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    double took = now_s() - t0;
    assert_int_equal(stats.records_out, LATE_RECORDS);
    sp_job_free(job);
    fprintf(stderr, "sink waits: %u records written, %.2f s\n", LATE_RECORDS, took);
    expect_ids_once(&m, "late", LATE_RECORDS);
    mock_peer_stop(&m);
}

/* ---- Backpressure ---- */

#define BP_PARTITIONS 2
#define BP_PER_PARTITION 20000
#define BP_RECORDS (BP_PARTITIONS * BP_PER_PARTITION)

static void test_backpressure(void **state)
{
    (void)state;
    need_kcat();
    struct mock_peer m;
    start_mock(&m, (const char *const[]){"bin:2", "bout:2", NULL});
    size_t cap = (size_t)BP_PER_PARTITION * 80;
    char *lines = malloc(cap);
    assert_non_null(lines);
    for (int p = 0; p < BP_PARTITIONS; p++) {
        size_t used = 0;
        for (int i = 0; i < BP_PER_PARTITION; i++) {
            struct click c = {
                .user = i % 1000, .ts = 1000 + i, .amount = i, .id = p * BP_PER_PARTITION + i};
            click_line(lines, cap, &used, &c);
        }
        produce(&m, "bin", p, lines);
    }
    free(lines);

    /* Kafka to Kafka, row for row, through buffers far smaller than the data. */
    struct sp_job *job = sp_job_new("kafka-backpressure");
    const char *const src_props[] = {"spate.source.buffer.bytes=65536",
                                     "max.partition.fetch.bytes=32768", NULL};
    const char *const sink_props[] = {"spate.sink.buffer.bytes=65536", "linger.ms=1", NULL};
    struct sp_stream *s = sp_source_kafka(job,
                                          &(struct sp_kafka_source_config){.bootstrap = m.bootstrap,
                                                                           .topic = "bin",
                                                                           .from_beginning = true,
                                                                           .stop_at_end = true,
                                                                           .properties = src_props},
                                          SP_FORMAT_JSON, &click_schema, NULL);
    sp_sink_kafka(
        s,
        &(struct sp_kafka_sink_config){
            .bootstrap = m.bootstrap, .topic = "bout", .key_field = "id", .properties = sink_props},
        SP_FORMAT_JSON);
    struct sp_run_config rc = run_config();
    struct sp_job_stats stats;
    double t0 = now_s();
    if (sp_job_run(job, &rc, &stats) != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    double took = now_s() - t0;
    assert_int_equal(stats.records_in, BP_RECORDS);
    assert_int_equal(stats.records_out, BP_RECORDS);
    sp_job_free(job);
    fprintf(stderr,
            "backpressure: %u records Kafka to Kafka in %.2f s (%.0f records/s, %u shards, "
            "64 KiB buffers), blocked %.2f s in total\n",
            BP_RECORDS, took, BP_RECORDS / took, rc.cores, (double)stats.backpressure_ns / 1e9);

    /* Every id once: the key is the id. */
    expect_ids_once(&m, "bout", BP_RECORDS);
    mock_peer_stop(&m);
}

int main(void)
{
    /* SPATE_TEST_DEBUG=1: the client's and the job's debug lines too. */
    const char *debug = getenv("SPATE_TEST_DEBUG");
    if (debug != NULL && debug[0] == '1')
        sp_log_set_level(SP_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),         cmocka_unit_test(test_group),
        cmocka_unit_test(test_group_rebalance), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unreachable),     cmocka_unit_test(test_sink_waits),
        cmocka_unit_test(test_backpressure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
