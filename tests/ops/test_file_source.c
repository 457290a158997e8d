/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file source (file_source.c) in whole jobs, on one shard and on two:
 * JSON lines and CSV files -> key_by -> tumbling count -> collector, against
 * hand-computed windows (with empty lines, CRLF, unknown fields and a last
 * line without a newline); a file larger than the read buffer with the
 * record count checked; rows with strings big enough that batches fill with
 * string bytes (the output's spill path), every row checked; CSV records
 * whose quoted fields span lines; RAW and STRING lines; and the failures:
 * a malformed line (before and after the first poll's worth) fails the job
 * naming the file and the line, a missing file names its path, a line
 * longer than the buffer names its line, a STRING line that is not UTF-8,
 * a row whose strings cannot fit a batch, and build errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <unistd.h>

#include "job_test.h"

static char dir[64];
static char paths[32][128];
static unsigned path_count;

/* Writes `len` bytes to a new file in the test's directory; its path. */
static const char *write_file(const char *name, const char *data, size_t len)
{
    assert_true(path_count < 32);
    char *path = paths[path_count++];
    snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/spate-file-XXXXXX");
    return mkdtemp(dir) == NULL;
}

static int teardown(void **state)
{
    (void)state;
    for (unsigned i = 0; i < path_count; i++)
        unlink(paths[i]);
    return rmdir(dir);
}

/* ---- Windows over ev rows ---- */

struct want {
    int64_t start, end, key, value;
};

static int cmp_want(const void *a, const void *b)
{
    const struct want *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

static struct collector coll;

/* Compares the collected windows with `want` as multisets. */
static void check_rows(const struct want *want, unsigned n)
{
    static struct want got[COLLECT_MAX], exp[COLLECT_MAX];
    assert_true(n <= COLLECT_MAX);
    for (unsigned i = 0; i < coll.count; i++) {
        const struct sp_agg_row *r = &coll.rows[i].row;
        got[i] = (struct want){r->window_start, r->window_end, r->key.i64, r->value.i64};
        assert_int_equal(coll.rows[i].ts, r->window_end - 1);
    }
    memcpy(exp, want, n * sizeof(*want));
    qsort(got, coll.count, sizeof(*got), cmp_want);
    qsort(exp, n, sizeof(*exp), cmp_want);
    for (unsigned i = 0; i < coll.count && i < n; i++) {
        if (cmp_want(&got[i], &exp[i]) != 0)
            fail_msg("row %u: got [%lld,%lld) key %lld value %lld, want [%lld,%lld) key %lld "
                     "value %lld",
                     i, (long long)got[i].start, (long long)got[i].end, (long long)got[i].key,
                     (long long)got[i].value, (long long)exp[i].start, (long long)exp[i].end,
                     (long long)exp[i].key, (long long)exp[i].value);
    }
    assert_int_equal(coll.count, n);
}

/*
 * Runs file -> key_by(user) -> tumbling(size_ms) count -> collector on
 * `cores`. Returns sp_job_run's result; the job is freed, its error (if
 * any) copied to `error`.
 */
static char error[512];

static int run_count(const char *path, enum sp_format format, int64_t size_ms, unsigned cores,
                     struct sp_job_stats *stats)
{
    collector_init(&coll);
    struct sp_job *job = sp_job_new("file-test");
    struct sp_watermarks wm = {.ts_field = "ts"};
    struct sp_stream *s = sp_source_file(job, path, format, &ev_schema, &wm);
    struct sp_window w = {.kind = SP_WINDOW_TUMBLING, .size_ms = size_ms};
    s = sp_window_aggregate(sp_key_by(s, "user"), &w, &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    sp_sink_call(s, collect_agg, &coll);
    struct sp_run_config rc = test_run_config(cores);
    int ret = sp_job_run(job, &rc, stats);
    const char *e = sp_job_error(job);
    snprintf(error, sizeof(error), "%s", e ? e : "");
    sp_job_free(job);
    return ret;
}

static void expect_ok(const char *path, enum sp_format format, int64_t size_ms, unsigned cores,
                      struct sp_job_stats *stats)
{
    int rc = run_count(path, format, size_ms, cores, stats);
    if (rc != 0)
        fail_msg("job failed: %s", error);
    assert_false(stats->interrupted);
    assert_int_equal(stats->records_late, 0);
}

static void expect_failure(const char *path, enum sp_format format, unsigned cores,
                           const char *want1, const char *want2)
{
    struct sp_job_stats stats;
    assert_int_equal(run_count(path, format, 10, cores, &stats), -1);
    if (strstr(error, want1) == NULL || strstr(error, want2) == NULL)
        fail_msg("error '%s' lacks '%s' or '%s'", error, want1, want2);
}

/* Users 1 and 2 over three 10 ms windows. */
static const struct want small_want[] = {
    {0, 10, 1, 2}, {0, 10, 2, 1}, {10, 20, 1, 1}, {10, 20, 2, 1}, {20, 30, 1, 1}, {20, 30, 2, 2},
};

static void json_small(unsigned cores)
{
    /* An unknown field, a missing one (price), blank lines, CRLF, no final newline. */
    const char *path = write_text(cores == 1 ? "small1.json" : "small2.json",
                                  "{\"ts\":1,\"user\":1,\"amount\":5,\"price\":1.5}\n"
                                  "\n"
                                  "{\"ts\":3,\"user\":2,\"amount\":1,\"extra\":[1,2]}\r\n"
                                  "{\"user\":1,\"ts\":5}\n"
                                  "{\"ts\":12,\"user\":1}\n"
                                  "\r\n"
                                  "{\"ts\":15,\"user\":2}\n"
                                  "{\"ts\":25,\"user\":1}\n"
                                  "{\"ts\":27,\"user\":2}\n"
                                  "{\"ts\":29,\"user\":2,\"price\":2}");
    struct sp_job_stats stats;
    expect_ok(path, SP_FORMAT_JSON, 10, cores, &stats);
    assert_int_equal(stats.records_in, 8); /* the non-empty lines */
    check_rows(small_want, 6);
}

static void test_json_one_shard(void **state)
{
    (void)state;
    json_small(1);
}

static void test_json_two_shards(void **state)
{
    (void)state;
    json_small(test_cores(2));
}

static void csv_small(unsigned cores)
{
    const char *path = write_text(cores == 1 ? "small1.csv" : "small2.csv", "1,1,5,1.5\n"
                                                                            "3,2,1,\n"
                                                                            "\n"
                                                                            "\"5\",1,0,0\r\n"
                                                                            "12,1,,\n"
                                                                            "15,2,7,-1e3\n"
                                                                            "25,1,0,0\n"
                                                                            "27,2,0,0\n"
                                                                            "29,2,0,0");
    struct sp_job_stats stats;
    expect_ok(path, SP_FORMAT_CSV, 10, cores, &stats);
    assert_int_equal(stats.records_in, 8);
    check_rows(small_want, 6);
}

static void test_csv_one_shard(void **state)
{
    (void)state;
    csv_small(1);
}

static void test_csv_two_shards(void **state)
{
    (void)state;
    csv_small(test_cores(2));
}

/* More lines than the 1 MiB read buffer holds, and than one poll emits:
 * every line is read once, the windows add up. */
static void test_large_file(void **state)
{
    (void)state;
    enum { LINES = 60000, USERS = 7, SIZE_MS = 1000 };
    size_t cap = (size_t)LINES * 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t at = 0;
    static struct want want[(LINES / SIZE_MS + 1) * USERS];
    unsigned nwant = 0;
    for (int i = 0; i < LINES; i++) {
        at += (size_t)snprintf(text + at, cap - at,
                               "{\"ts\":%d,\"user\":%d,\"amount\":%d,\"price\":0.25}\n", i,
                               i % USERS, i);
        if (i % 1000 == 999)
            at += (size_t)snprintf(text + at, cap - at, "\n"); /* blank lines too */
    }
    for (int w = 0; w < LINES / SIZE_MS; w++) {
        for (int u = 0; u < USERS; u++) {
            int64_t count = 0;
            for (int i = w * SIZE_MS; i < (w + 1) * SIZE_MS; i++)
                count += i % USERS == u;
            want[nwant++] = (struct want){w * SIZE_MS, (w + 1) * SIZE_MS, u, count};
        }
    }
    const char *path = write_file("large.json", text, at);
    assert_true(at > (2u << 20));
    free(text);
    for (unsigned cores = 1; cores <= test_cores(2); cores++) {
        struct sp_job_stats stats;
        expect_ok(path, SP_FORMAT_JSON, SIZE_MS, cores, &stats);
        assert_int_equal(stats.records_in, LINES);
        check_rows(want, nwant);
    }
}

/* ---- Failures ---- */

static void test_malformed_line(void **state)
{
    (void)state;
    const char *path = write_text("bad.json", "{\"ts\":1,\"user\":1}\n"
                                              "\n"
                                              "{\"ts\":3,\"user\":\"x\"}\n"
                                              "{\"ts\":4,\"user\":1}\n");
    for (unsigned cores = 1; cores <= test_cores(2); cores++) {
        expect_failure(path, SP_FORMAT_JSON, cores, path,
                       "line 3: field 'user': expected an integer");
    }
    const char *bad_json = write_text("syntax.json", "{\"ts\":1,\"user\":1}\n{\"ts\":2,\n");
    expect_failure(bad_json, SP_FORMAT_JSON, 1, bad_json, "line 2: invalid JSON");
    const char *bad_csv = write_text("bad.csv", "1,1,0,0\n2,1,0\n");
    expect_failure(bad_csv, SP_FORMAT_CSV, test_cores(2), bad_csv,
                   "line 2: expected 4 fields, got 3");
    /* Past the first poll (4,096 rows) and the first batches. */
    enum { LINES = 9000, BAD = 8000 };
    char *text = malloc((size_t)LINES * 40);
    size_t at = 0;
    for (int i = 1; i <= LINES; i++)
        at += (size_t)sprintf(text + at, i == BAD ? "%d,1,zz,0\n" : "%d,1,0,0\n", i);
    const char *late = write_file("late.csv", text, at);
    free(text);
    expect_failure(late, SP_FORMAT_CSV, test_cores(2), late,
                   "line 8000: field 'amount': expected an integer, got \"zz\"");
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof(path), "%s/does-not-exist.json", dir);
    for (unsigned cores = 1; cores <= test_cores(2); cores++)
        expect_failure(path, SP_FORMAT_JSON, cores, path, "No such file or directory");
}

static void test_line_too_long(void **state)
{
    (void)state;
    size_t big = (3u << 20) / 2;
    char *text = malloc(big + 64);
    size_t at = (size_t)sprintf(text, "{\"ts\":1,\"user\":1}\n{\"ts\":2,\"user\":1,\"x\":\"");
    memset(text + at, 'a', big);
    at += big;
    at += (size_t)sprintf(text + at, "\"}\n");
    const char *path = write_file("long.json", text, at);
    free(text);
    expect_failure(path, SP_FORMAT_JSON, 1, path, "line 2: longer than 1048576 bytes");
}

static void test_build_errors(void **state)
{
    (void)state;
    struct sp_job *job = sp_job_new("file-build");
    struct sp_stream *s = sp_source_file(job, NULL, SP_FORMAT_JSON, &ev_schema, NULL);
    sp_sink_blackhole(s);
    struct sp_run_config rc = test_run_config(1);
    assert_int_equal(sp_job_run(job, &rc, NULL), -1);
    assert_non_null(strstr(sp_job_error(job), "no path"));
    sp_job_free(job);
    job = sp_job_new("file-build");
    s = sp_source_file(job, "/dev/null", SP_FORMAT_RAW, &ev_schema, NULL);
    sp_sink_blackhole(s);
    assert_int_equal(sp_job_run(job, &rc, NULL), -1);
    assert_non_null(strstr(sp_job_error(job), "'value'"));
    sp_job_free(job);
    /* An empty file is an empty stream. */
    job = sp_job_new("file-empty");
    s = sp_source_file(job, "/dev/null", SP_FORMAT_CSV, &ev_schema, NULL);
    sp_sink_blackhole(s);
    struct sp_job_stats stats;
    assert_int_equal(sp_job_run(job, &rc, &stats), 0);
    assert_int_equal(stats.records_in, 0);
    sp_job_free(job);
}

/* ---- Strings ---- */

struct named {
    int64_t ts;
    struct sp_str name;
    struct sp_str pad;
};

static const struct sp_field named_fields[] = {
    SP_FIELD(struct named, ts, SP_T_I64),
    SP_FIELD(struct named, name, SP_T_STR),
    SP_FIELD(struct named, pad, SP_T_STR),
};
static const struct sp_schema named_schema = SP_SCHEMA(struct named, named_fields);

#define PAD_BYTES 3000

static const char *const names[] = {"alice", "bob, jr", "c\"q\"", "d\xc3\xa9"};

/* Rows checked as they arrive: the pad is ts's letter PAD_BYTES times. */
struct row_check {
    pthread_mutex_t lock;
    uint64_t rows;
    uint64_t bad;
    uint64_t per_name[4];
    char notes[8][32];
};

static struct row_check rows;

static void check_named(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard;
    struct row_check *c = ctx;
    const struct named *r = row;
    bool ok = r->ts == ts && r->pad.len == PAD_BYTES;
    for (uint32_t i = 0; ok && i < r->pad.len; i++)
        ok = r->pad.ptr[i] == (char)('a' + r->ts % 26);
    int which = -1;
    for (int k = 0; k < 4; k++) {
        if (r->name.len == strlen(names[k]) && memcmp(r->name.ptr, names[k], r->name.len) == 0)
            which = k;
    }
    ok = ok && which == (int)(r->ts % 4);
    pthread_mutex_lock(&c->lock);
    c->rows++;
    c->bad += !ok;
    if (which >= 0)
        c->per_name[which]++;
    pthread_mutex_unlock(&c->lock);
}

static void strings(enum sp_format format, unsigned cores)
{
    enum { LINES = 400 };
    size_t cap = (size_t)LINES * (PAD_BYTES + 64);
    char *text = malloc(cap);
    size_t at = 0;
    static char pad[PAD_BYTES + 1];
    for (int i = 0; i < LINES; i++) {
        memset(pad, 'a' + i % 26, PAD_BYTES);
        pad[PAD_BYTES] = '\0';
        if (format == SP_FORMAT_JSON) {
            static const char *const json_names[] = {"alice", "bob, jr", "c\\\"q\\\"", "d\\u00e9"};
            at += (size_t)snprintf(text + at, cap - at,
                                   "{\"ts\":%d,\"name\":\"%s\",\"pad\":\"%s\"}\n", i,
                                   json_names[i % 4], pad);
        } else {
            static const char *const csv_names[] = {"alice", "\"bob, jr\"", "\"c\"\"q\"\"\"",
                                                    "d\xc3\xa9"};
            at += (size_t)snprintf(text + at, cap - at, "%d,%s,%s\n", i, csv_names[i % 4], pad);
        }
    }
    const char *path = write_file(format == SP_FORMAT_JSON ? (cores == 1 ? "s1.json" : "s2.json")
                                                           : (cores == 1 ? "s1.csv" : "s2.csv"),
                                  text, at);
    free(text);
    memset(&rows, 0, sizeof(rows));
    pthread_mutex_init(&rows.lock, NULL);
    struct sp_job *job = sp_job_new("file-strings");
    struct sp_watermarks wm = {.ts_field = "ts"};
    struct sp_stream *s = sp_source_file(job, path, format, &named_schema, &wm);
    /* Through the exchange, so the strings cross shards too. */
    sp_sink_call(sp_key_by(s, "name"), check_named, &rows);
    struct sp_run_config rc = test_run_config(cores);
    struct sp_job_stats stats;
    int ret = sp_job_run(job, &rc, &stats);
    if (ret != 0)
        fail_msg("job failed: %s", sp_job_error(job));
    sp_job_free(job);
    assert_int_equal(stats.records_in, LINES);
    assert_int_equal(rows.rows, LINES);
    assert_int_equal(rows.bad, 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(rows.per_name[k], LINES / 4);
}

static void test_strings_json(void **state)
{
    (void)state;
    strings(SP_FORMAT_JSON, 1);
    strings(SP_FORMAT_JSON, test_cores(2));
}

static void test_strings_csv(void **state)
{
    (void)state;
    strings(SP_FORMAT_CSV, 1);
    strings(SP_FORMAT_CSV, test_cores(2));
}

/* Quoted CSV fields may span lines; line numbers stay physical. */
struct noted {
    pthread_mutex_t lock;
    unsigned count;
    int64_t ts[8];
    char name[8][32];
};

static struct noted noted;

static void collect_noted(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard, (void)ts;
    struct noted *c = ctx;
    const struct named *r = row;
    pthread_mutex_lock(&c->lock);
    if (c->count < 8) {
        c->ts[c->count] = r->ts;
        snprintf(c->name[c->count], sizeof(c->name[0]), "%.*s", (int)r->name.len, r->name.ptr);
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
}

static int run_noted(const char *path, enum sp_format format, const struct sp_schema *schema)
{
    memset(&noted, 0, sizeof(noted));
    pthread_mutex_init(&noted.lock, NULL);
    struct sp_job *job = sp_job_new("file-noted");
    sp_sink_call(sp_source_file(job, path, format, schema, NULL), collect_noted, &noted);
    struct sp_run_config rc = test_run_config(1);
    int ret = sp_job_run(job, &rc, NULL);
    const char *e = sp_job_error(job);
    snprintf(error, sizeof(error), "%s", e ? e : "");
    sp_job_free(job);
    return ret;
}

static void test_csv_multiline(void **state)
{
    (void)state;
    const char *path = write_text("multi.csv", "1,\"two\nlines\",x\n"
                                               "2,\"a \"\"quote\"\" and, a comma\",y\n"
                                               "3,\"\n\n\",z\n"
                                               "4,plain,w\n");
    assert_int_equal(run_noted(path, SP_FORMAT_CSV, &named_schema), 0);
    assert_int_equal(noted.count, 4);
    assert_string_equal(noted.name[0], "two\nlines");
    assert_string_equal(noted.name[1], "a \"quote\" and, a comma");
    assert_string_equal(noted.name[2], "\n\n");
    assert_string_equal(noted.name[3], "plain");
    /* The bad record starts on physical line 6. */
    const char *bad = write_text("multi-bad.csv", "1,\"two\nlines\",x\n"
                                                  "2,\"three\n\nlines\",y\n"
                                                  "x,plain,w\n");
    assert_int_equal(run_noted(bad, SP_FORMAT_CSV, &named_schema), -1);
    if (strstr(error, "line 6: field 'ts'") == NULL)
        fail_msg("error: %s", error);
    /* A quote never closed runs to the end of the file. */
    const char *open = write_text("open.csv", "1,ok,x\n2,\"never closed,y\n3,a,b\n");
    assert_int_equal(run_noted(open, SP_FORMAT_CSV, &named_schema), -1);
    if (strstr(error, "line 2: column 2: a quoted field is not closed") == NULL)
        fail_msg("error: %s", error);
}

/* A row whose strings cannot fit even an empty batch fails the job. */
static void test_string_too_big(void **state)
{
    (void)state;
    size_t big = 40000;
    char *text = malloc(big + 128);
    size_t at = (size_t)sprintf(text, "{\"ts\":1,\"name\":\"a\"}\n{\"ts\":2,\"pad\":\"");
    memset(text + at, 'p', big);
    at += big;
    at += (size_t)sprintf(text + at, "\"}\n{\"ts\":3}\n");
    const char *path = write_file("huge.json", text, at);
    free(text);
    assert_int_equal(run_noted(path, SP_FORMAT_JSON, &named_schema), -1);
    if (strstr(error, "does not fit a batch") == NULL)
        fail_msg("error: %s", error);
}

/* ---- RAW and STRING ---- */

struct kv {
    struct sp_str key;
    struct sp_str value;
};

static const struct sp_field kv_fields[] = {
    SP_FIELD(struct kv, key, SP_T_STR),
    SP_FIELD(struct kv, value, SP_T_STR),
};
static const struct sp_schema kv_schema = SP_SCHEMA(struct kv, kv_fields);

static void collect_kv(void *ctx, unsigned shard, const void *row, int64_t ts)
{
    (void)shard;
    struct noted *c = ctx;
    const struct kv *r = row;
    pthread_mutex_lock(&c->lock);
    if (c->count < 8) {
        c->ts[c->count] = ts;
        snprintf(c->name[c->count], sizeof(c->name[0]), "%.*s", (int)r->value.len, r->value.ptr);
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
}

static int run_kv(const char *path, enum sp_format format)
{
    memset(&noted, 0, sizeof(noted));
    pthread_mutex_init(&noted.lock, NULL);
    struct sp_job *job = sp_job_new("file-kv");
    sp_sink_call(sp_source_file(job, path, format, &kv_schema, NULL), collect_kv, &noted);
    struct sp_run_config rc = test_run_config(test_cores(2));
    int ret = sp_job_run(job, &rc, NULL);
    const char *e = sp_job_error(job);
    snprintf(error, sizeof(error), "%s", e ? e : "");
    sp_job_free(job);
    return ret;
}

static void test_raw_and_string(void **state)
{
    (void)state;
    const char *path = write_text("raw.txt", "first line\n\nsecond, \"line\"\r\n{not json}\n"
                                             "caf\xc3\xa9");
    assert_int_equal(run_kv(path, SP_FORMAT_RAW), 0);
    assert_int_equal(noted.count, 4);
    assert_string_equal(noted.name[0], "first line");
    assert_string_equal(noted.name[1], "second, \"line\"");
    assert_string_equal(noted.name[2], "{not json}");
    assert_string_equal(noted.name[3], "caf\xc3\xa9");
    /* Without a timestamp strategy, a row's time is its line number. */
    assert_int_equal(noted.ts[0], 1);
    assert_int_equal(noted.ts[1], 3);
    assert_int_equal(noted.ts[3], 5);
    assert_int_equal(run_kv(path, SP_FORMAT_STRING), 0);
    assert_int_equal(noted.count, 4);
    const char *bad = write_text("bad.txt", "ok\nstill ok\nnot \xc0\xaf ok\n");
    assert_int_equal(run_kv(bad, SP_FORMAT_RAW), 0);
    assert_int_equal(run_kv(bad, SP_FORMAT_STRING), -1);
    if (strstr(error, "line 3: invalid UTF-8 at byte 4") == NULL)
        fail_msg("error: %s", error);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_one_shard), cmocka_unit_test(test_json_two_shards),
        cmocka_unit_test(test_csv_one_shard),  cmocka_unit_test(test_csv_two_shards),
        cmocka_unit_test(test_large_file),     cmocka_unit_test(test_malformed_line),
        cmocka_unit_test(test_missing_file),   cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_build_errors),   cmocka_unit_test(test_strings_json),
        cmocka_unit_test(test_strings_csv),    cmocka_unit_test(test_csv_multiline),
        cmocka_unit_test(test_string_too_big), cmocka_unit_test(test_raw_and_string),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
