/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Serdes (serde.c) without a job: rows are decoded into a batch the test
 * owns (sp_batch_reset() on an aligned 32 KiB buffer, an sp_out over it),
 * which is all sp_out_row() and sp_out_str() touch while the batch has room.
 *
 * Covered: JSON and CSV round trips over a schema with every type (extreme
 * integers, awkward doubles, strings with quotes, commas, newlines, control
 * bytes and non-ASCII); JSON missing, unknown and null fields, wrong types,
 * integral reals, malformed and non-object documents; CSV quoting, quoted
 * newlines, wrong column counts, strict numbers and overflow; RAW and
 * STRING with UTF-8 validation (overlongs, surrogates, beyond U+10FFFF,
 * cut sequences); encoding into every too-small buffer (-ENOSPC, nothing
 * written past the end); and every prefix and many one-byte mutations of
 * valid records decoded from exact-size heap copies, so ASan sees any read
 * past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sp_op.h"

#define BATCH_BYTES 32768u

struct rec {
    int64_t id;
    double price;
    bool ok;
    struct sp_str name;
    struct sp_str note;
};

static const struct sp_field rec_fields[] = {
    SP_FIELD(struct rec, id, SP_T_I64),   SP_FIELD(struct rec, price, SP_T_F64),
    SP_FIELD(struct rec, ok, SP_T_BOOL),  SP_FIELD(struct rec, name, SP_T_STR),
    SP_FIELD(struct rec, note, SP_T_STR),
};
static const struct sp_schema rec_schema = SP_SCHEMA(struct rec, rec_fields);

struct kv {
    struct sp_str key;
    struct sp_str value;
};

static const struct sp_field kv_fields[] = {
    SP_FIELD(struct kv, key, SP_T_STR),
    SP_FIELD(struct kv, value, SP_T_STR),
};
static const struct sp_schema kv_schema = SP_SCHEMA(struct kv, kv_fields);

/* "value" is not a string: RAW and STRING refuse it. */
struct bad_kv {
    int64_t value;
};
static const struct sp_field bad_kv_fields[] = {SP_FIELD(struct bad_kv, value, SP_T_I64)};
static const struct sp_schema bad_kv_schema = SP_SCHEMA(struct bad_kv, bad_kv_fields);

/* One string field: CSV must not write a blank line for "". */
struct one {
    struct sp_str s;
};
static const struct sp_field one_fields[] = {SP_FIELD(struct one, s, SP_T_STR)};
static const struct sp_schema one_schema = SP_SCHEMA(struct one, one_fields);

static struct sp_batch *batch;
static struct sp_out out;
static char err[256];

/* A fresh zeroed row of `schema` at the start of the test's batch. */
static void *fresh_row(const struct sp_schema *schema)
{
    free(out.spill);
    memset(&out, 0, sizeof(out));
    sp_batch_reset(batch, schema->row_bytes, BATCH_BYTES);
    out.batch = batch;
    out.schema = schema;
    return sp_out_row(&out, 0);
}

/* Checks the reason is one NUL-terminated line. */
static void check_err_line(void)
{
    size_t n = strnlen(err, sizeof(err));
    assert_true(n < sizeof(err));
    for (size_t i = 0; i < n; i++)
        assert_true((unsigned char)err[i] >= 0x20);
}

/* Decodes `len` bytes from an exact-size heap copy (ASan: no over-read). */
static int decode(enum sp_format format, const struct sp_schema *schema, const char *text,
                  size_t len, void **row_out)
{
    void *row = fresh_row(schema);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    memset(err, 'x', sizeof(err));
    int rc = sp_serde_decode(format, schema, len ? copy : NULL, len, row, &out, err, sizeof(err));
    free(copy);
    check_err_line();
    if (rc == 0)
        assert_int_equal(err[0], '\0');
    else
        assert_int_equal(rc, -EBADMSG);
    if (row_out != NULL)
        *row_out = row;
    return rc;
}

static int decode_str(enum sp_format format, const struct sp_schema *schema, const char *text,
                      void **row_out)
{
    return decode(format, schema, text, strlen(text), row_out);
}

/* Decoding `text` fails with a reason containing `want`. */
static void expect_error(enum sp_format format, const struct sp_schema *schema, const char *text,
                         const char *want)
{
    int rc = decode_str(format, schema, text, NULL);
    if (rc != -EBADMSG)
        fail_msg("'%s' decoded, want an error with '%s'", text, want);
    if (strstr(err, want) == NULL)
        fail_msg("'%s': reason '%s' lacks '%s'", text, err, want);
}

static void assert_str(struct sp_str s, const char *want, size_t len)
{
    assert_int_equal(s.len, len);
    assert_memory_equal(s.ptr, want, len);
}

static int setup(void **state)
{
    (void)state;
    batch = aligned_alloc(64, BATCH_BYTES);
    return batch == NULL;
}

static int teardown(void **state)
{
    (void)state;
    free(out.spill);
    out.spill = NULL;
    free(batch);
    return 0;
}

/* ---- Round trips ---- */

static const struct {
    int64_t id;
    double price;
    bool ok;
    const char *name;
    size_t name_len; /* 0: strlen */
    const char *note;
} samples[] = {
    {0, 0.0, false, "", 0, ""},
    {1, 2.5, true, "plain", 0, "x"},
    {INT64_MAX, DBL_MAX, true, "a,b", 0, "say \"hi\""},
    {INT64_MIN, -DBL_MIN, false, "line\nbreak\r\n", 0, ",\"\","},
    {-42, 0.1, true, "tab\tbs\\sl/\x01\x1f", 0, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"},
    {7, -0.0, false, "nul\0in", 6, "\"quoted\""},
    {123456789, 1e-310, true, "  spaced  ", 0, "trailing,"},
};

static void fill(struct rec *r, unsigned i)
{
    memset(r, 0, sizeof(*r));
    r->id = samples[i].id;
    r->price = samples[i].price;
    r->ok = samples[i].ok;
    size_t n = samples[i].name_len ? samples[i].name_len : strlen(samples[i].name);
    r->name = sp_str_of(samples[i].name, (uint32_t)n);
    r->note = sp_str_of(samples[i].note, (uint32_t)strlen(samples[i].note));
}

static void round_trip(enum sp_format format)
{
    for (unsigned i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        struct rec in;
        fill(&in, i);
        char buf[512];
        int n = sp_serde_encode(format, &rec_schema, &in, buf, sizeof(buf));
        assert_true(n > 0);
        assert_true(buf[n - 1] != '\n'); /* no trailing newline */
        if (format == SP_FORMAT_JSON)
            assert_null(memchr(buf, '\n', (size_t)n));
        void *row;
        int rc = decode(format, &rec_schema, buf, (size_t)n, &row);
        if (rc != 0)
            fail_msg("sample %u: '%.*s' does not decode: %s", i, n, buf, err);
        struct rec *r = row;
        assert_int_equal(r->id, in.id);
        assert_memory_equal(&r->price, &in.price, sizeof(double)); /* bit for bit, -0.0 too */
        assert_int_equal(r->ok, in.ok);
        assert_str(r->name, in.name.ptr, in.name.len);
        assert_str(r->note, in.note.ptr, in.note.len);
    }
}

static void test_json_round_trip(void **state)
{
    (void)state;
    round_trip(SP_FORMAT_JSON);
}

static void test_csv_round_trip(void **state)
{
    (void)state;
    round_trip(SP_FORMAT_CSV);
}

static void test_json_encode_exact(void **state)
{
    (void)state;
    struct rec r = {.id = -3, .price = 2.5, .ok = true, .name = sp_str_of("a\"b\\c\n", 6)};
    char buf[256];
    int n = sp_serde_encode(SP_FORMAT_JSON, &rec_schema, &r, buf, sizeof(buf));
    const char *want =
        "{\"id\":-3,\"price\":2.5,\"ok\":true,\"name\":\"a\\\"b\\\\c\\n\",\"note\":\"\"}";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
    /* Not UTF-8: the replacement character, so the output is valid JSON. */
    r = (struct rec){.price = NAN, .name = sp_str_of("a\xff\xc3", 3), .note = sp_str_of("\x7f", 1)};
    n = sp_serde_encode(SP_FORMAT_JSON, &rec_schema, &r, buf, sizeof(buf));
    want = "{\"id\":0,\"price\":null,\"ok\":false,\"name\":\"a\\ufffd\\ufffd\",\"note\":\"\x7f\"}";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
    void *row;
    assert_int_equal(decode(SP_FORMAT_JSON, &rec_schema, buf, (size_t)n, &row), 0);
    assert_true(((struct rec *)row)->price == 0.0); /* null reads as zero */
    assert_str(((struct rec *)row)->name, "a\xef\xbf\xbd\xef\xbf\xbd", 7);
}

static void test_csv_encode_exact(void **state)
{
    (void)state;
    struct rec r = {.id = 5,
                    .price = -INFINITY,
                    .name = sp_str_of("x,y", 3),
                    .note = sp_str_of("he said \"no\"", 12)};
    char buf[256];
    int n = sp_serde_encode(SP_FORMAT_CSV, &rec_schema, &r, buf, sizeof(buf));
    const char *want = "5,-inf,false,\"x,y\",\"he said \"\"no\"\"\"";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
    r.price = NAN;
    n = sp_serde_encode(SP_FORMAT_CSV, &rec_schema, &r, buf, sizeof(buf));
    void *row;
    assert_int_equal(decode(SP_FORMAT_CSV, &rec_schema, buf, (size_t)n, &row), 0);
    assert_true(isnan(((struct rec *)row)->price));
    /* A one-field row with an empty string is "" rather than a blank line. */
    struct one o = {.s = sp_str_of("", 0)};
    n = sp_serde_encode(SP_FORMAT_CSV, &one_schema, &o, buf, sizeof(buf));
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "\"\"", 2);
    assert_int_equal(decode(SP_FORMAT_CSV, &one_schema, buf, 2, &row), 0);
    assert_int_equal(((struct one *)row)->s.len, 0);
}

/* ---- JSON ---- */

static void test_json_missing_unknown_null(void **state)
{
    (void)state;
    void *row;
    assert_int_equal(
        decode_str(SP_FORMAT_JSON, &rec_schema,
                   "{\"extra\":{\"a\":[1,{\"b\":null}]},\"id\":5,\"zzz\":\"x\",\"note\":null}",
                   &row),
        0);
    struct rec *r = row;
    assert_int_equal(r->id, 5);
    assert_true(r->price == 0.0);
    assert_false(r->ok);
    assert_int_equal(r->name.len, 0);
    assert_int_equal(r->note.len, 0);
    assert_int_equal(decode_str(SP_FORMAT_JSON, &rec_schema, "  {}  ", &row), 0);
    assert_int_equal(((struct rec *)row)->id, 0);
    assert_int_equal(decode_str(SP_FORMAT_JSON, &rec_schema,
                                "{\"id\":null,\"price\":null,\"ok\":null,\"name\":null}", &row),
                     0);
    assert_int_equal(((struct rec *)row)->id, 0);
    /* Integers into doubles, integral reals into integers; the last duplicate wins. */
    assert_int_equal(decode_str(SP_FORMAT_JSON, &rec_schema,
                                "{\"price\":3,\"id\":1e3,\"ok\":true,\"ok\":false}", &row),
                     0);
    assert_true(((struct rec *)row)->price == 3.0);
    assert_int_equal(((struct rec *)row)->id, 1000);
    assert_false(((struct rec *)row)->ok);
    assert_int_equal(
        decode_str(SP_FORMAT_JSON, &rec_schema, "{\"id\":-9.2233720368547758e18}", &row), 0);
    assert_int_equal(((struct rec *)row)->id, INT64_MIN);
    /* An escaped NUL is kept: strings carry their length. */
    assert_int_equal(
        decode_str(SP_FORMAT_JSON, &rec_schema, "{\"name\":\"a\\u0000b\\u00e9\"}", &row), 0);
    assert_str(((struct rec *)row)->name, "a\0b\xc3\xa9", 5);
}

static void test_json_wrong_types(void **state)
{
    (void)state;
    const struct sp_schema *s = &rec_schema;
    expect_error(SP_FORMAT_JSON, s, "{\"id\":\"5\"}",
                 "field 'id': expected an integer, got a string");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":1.5}", "field 'id': expected an integer, got 1.5");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":1e19}", "field 'id': expected an integer");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":9.2233720368547758e18}", "field 'id'");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":true}", "field 'id': expected an integer, got true");
    expect_error(SP_FORMAT_JSON, s, "{\"price\":\"1\"}",
                 "field 'price': expected a number, got a string");
    expect_error(SP_FORMAT_JSON, s, "{\"ok\":1}",
                 "field 'ok': expected true or false, got an integer");
    expect_error(SP_FORMAT_JSON, s, "{\"name\":5}",
                 "field 'name': expected a string, got an integer");
    expect_error(SP_FORMAT_JSON, s, "{\"name\":[]}",
                 "field 'name': expected a string, got an array");
    expect_error(SP_FORMAT_JSON, s, "{\"note\":{}}",
                 "field 'note': expected a string, got an object");
    expect_error(SP_FORMAT_JSON, s, "{\"price\":false}", "got false");
    /* Out of int64 or double range: jansson refuses to parse. */
    expect_error(SP_FORMAT_JSON, s, "{\"id\":9223372036854775808}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{\"price\":1e400}", "invalid JSON");
}

static void test_json_malformed(void **state)
{
    (void)state;
    const struct sp_schema *s = &rec_schema;
    expect_error(SP_FORMAT_JSON, s, "", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "1", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "\"s\"", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "null", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{\"id\":1,}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{}x", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{} {}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{'id':1}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{\"name\":\"\xff\"}", "invalid JSON");
    expect_error(SP_FORMAT_JSON, s, "{\"name\":\"a\nb\"}", "invalid JSON"); /* reason: one line */
    expect_error(SP_FORMAT_JSON, s, "[1,2]", "expected a JSON object, got an array");
    /* The data is not NUL-terminated: a NUL inside ends nothing. */
    assert_int_equal(decode(SP_FORMAT_JSON, s, "{\"id\":1}\0{", 10, NULL), -EBADMSG);
    /* Deep nesting is refused by jansson's depth limit, not the stack. */
    char deep[8192];
    memset(deep, '[', sizeof(deep));
    assert_int_equal(decode(SP_FORMAT_JSON, s, deep, sizeof(deep), NULL), -EBADMSG);
}

/* ---- CSV ---- */

static void test_csv_quoting(void **state)
{
    (void)state;
    void *row;
    assert_int_equal(
        decode_str(SP_FORMAT_CSV, &rec_schema, "7,1.5,true,\"a,b\",\"say \"\"hi\"\"\"", &row), 0);
    struct rec *r = row;
    assert_int_equal(r->id, 7);
    assert_true(r->price == 1.5);
    assert_true(r->ok);
    assert_str(r->name, "a,b", 3);
    assert_str(r->note, "say \"hi\"", 8);
    /* Quoted numbers, newlines in quotes, "" alone, empty fields as zero. */
    assert_int_equal(
        decode_str(SP_FORMAT_CSV, &rec_schema, "\"-8\",,1,\"two\nlines\r\n\",\"\"\"\"", &row), 0);
    r = row;
    assert_int_equal(r->id, -8);
    assert_true(r->price == 0.0);
    assert_true(r->ok);
    assert_str(r->name, "two\nlines\r\n", 11);
    assert_str(r->note, "\"", 1);
    assert_int_equal(decode_str(SP_FORMAT_CSV, &rec_schema, ",,,,", &row), 0);
    assert_int_equal(((struct rec *)row)->name.len, 0);
    const struct sp_schema *s = &rec_schema;
    expect_error(SP_FORMAT_CSV, s, "1,2,true,\"open,x", "column 4: a quoted field is not closed");
    expect_error(SP_FORMAT_CSV, s, "1,2,true,\"a\"b,x", "column 4: text after a closing quote");
    expect_error(SP_FORMAT_CSV, s, "1,2,true,a\"b,x", "column 4: a quote inside an unquoted field");
    expect_error(SP_FORMAT_CSV, s, "\"", "column 1: a quoted field is not closed");
}

static void test_csv_columns(void **state)
{
    (void)state;
    const struct sp_schema *s = &rec_schema;
    expect_error(SP_FORMAT_CSV, s, "1,2,true,a", "expected 5 fields, got 4");
    expect_error(SP_FORMAT_CSV, s, "1,2,true,a,b,c", "expected 5 fields, got 6");
    expect_error(SP_FORMAT_CSV, s, "", "expected 5 fields, got 1");
    expect_error(SP_FORMAT_CSV, s, "1,2,true,\"a,b,c,d\"", "expected 5 fields, got 4");
    /* Many columns are counted, not stored. */
    char many[4001];
    memset(many, ',', sizeof(many) - 1);
    many[sizeof(many) - 1] = '\0';
    expect_error(SP_FORMAT_CSV, s, many, "expected 5 fields, got 4001");
}

static void test_csv_numbers(void **state)
{
    (void)state;
    const struct sp_schema *s = &rec_schema;
    void *row;
    assert_int_equal(decode_str(SP_FORMAT_CSV, s, "-9223372036854775808,1e-400,0,,", &row), 0);
    assert_int_equal(((struct rec *)row)->id, INT64_MIN);
    assert_true(((struct rec *)row)->price == 0.0); /* underflow: kept as 0 */
    assert_int_equal(decode_str(SP_FORMAT_CSV, s, "+12,inf,false,,", &row), 0);
    assert_int_equal(((struct rec *)row)->id, 12);
    assert_true(isinf(((struct rec *)row)->price));
    expect_error(SP_FORMAT_CSV, s, "12a,0,true,,", "field 'id': expected an integer, got \"12a\"");
    expect_error(SP_FORMAT_CSV, s, " 12,0,true,,", "field 'id': expected an integer");
    expect_error(SP_FORMAT_CSV, s, "12 ,0,true,,", "field 'id': expected an integer");
    expect_error(SP_FORMAT_CSV, s, "0x10,0,true,,", "field 'id': expected an integer");
    expect_error(SP_FORMAT_CSV, s, "1.0,0,true,,", "field 'id': expected an integer");
    expect_error(SP_FORMAT_CSV, s, "-,0,true,,", "field 'id': expected an integer");
    expect_error(SP_FORMAT_CSV, s, "9223372036854775808,0,true,,",
                 "field 'id': integer out of range: 9223372036854775808");
    expect_error(SP_FORMAT_CSV, s, "-9223372036854775809,0,true,,",
                 "field 'id': integer out of range");
    expect_error(SP_FORMAT_CSV, s, "1,1e400,true,,", "field 'price': number out of range");
    expect_error(SP_FORMAT_CSV, s, "1,-1e400,true,,", "field 'price': number out of range");
    expect_error(SP_FORMAT_CSV, s, "1,1.5.2,true,,", "field 'price': expected a number");
    expect_error(SP_FORMAT_CSV, s, "1,\"1\"\"\",true,,", "field 'price': expected a number");
    expect_error(SP_FORMAT_CSV, s, "1,2,yes,,", "field 'ok': expected true or false, got \"yes\"");
    expect_error(SP_FORMAT_CSV, s, "1,2,TRUE,,", "field 'ok'");
    /* A NUL inside a number does not end it early. */
    assert_int_equal(
        decode(SP_FORMAT_CSV, s, "1\0002,0,true,,", sizeof("1\0002,0,true,,") - 1, NULL), -EBADMSG);
    assert_non_null(strstr(err, "field 'id'"));
    /* Longer than any number: refused, quoted in short. */
    char longnum[200];
    memset(longnum, '1', 100);
    strcpy(longnum + 100, ",0,true,,");
    expect_error(SP_FORMAT_CSV, s, longnum, "field 'id': expected an integer, got \"111");
    assert_non_null(strstr(err, "...\""));
}

/* ---- RAW and STRING ---- */

static void test_raw_string(void **state)
{
    (void)state;
    void *row;
    /* RAW takes any bytes, NULs and invalid UTF-8 included. */
    assert_int_equal(decode(SP_FORMAT_RAW, &kv_schema, "a\0\xff\xc0", 4, &row), 0);
    assert_str(((struct kv *)row)->value, "a\0\xff\xc0", 4);
    assert_int_equal(((struct kv *)row)->key.len, 0);
    assert_int_equal(decode(SP_FORMAT_RAW, &kv_schema, "", 0, &row), 0);
    assert_int_equal(((struct kv *)row)->value.len, 0);
    /* STRING: well-formed UTF-8 of every length, and the edges of the range. */
    static const char *good[] = {
        "ascii",
        "caf\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9d\x84\x9e",
        "\xc2\x80\xdf\xbf",
        "\xe0\xa0\x80\xef\xbf\xbf",
        "\xed\x9f\xbf\xee\x80\x80", /* around the surrogates */
        "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
    };
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (decode_str(SP_FORMAT_STRING, &kv_schema, good[i], &row) != 0)
            fail_msg("good[%u]: %s", i, err);
        assert_str(((struct kv *)row)->value, good[i], strlen(good[i]));
    }
    static const struct {
        const char *s;
        const char *why;
    } bad[] = {
        {"ok\x80", "invalid UTF-8 at byte 2"},           /* stray continuation */
        {"\xc0\xaf", "invalid UTF-8 at byte 0"},         /* overlong '/' */
        {"\xc1\xbf", "invalid UTF-8 at byte 0"},         /* overlong */
        {"\xe0\x80\xaf", "invalid UTF-8 at byte 0"},     /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", "invalid UTF-8 at byte 0"}, /* overlong, 4 bytes */
        {"ab\xed\xa0\x80", "invalid UTF-8 at byte 2"},   /* high surrogate */
        {"\xed\xbf\xbf", "invalid UTF-8 at byte 0"},     /* low surrogate */
        {"\xf4\x90\x80\x80", "invalid UTF-8 at byte 0"}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", "invalid UTF-8 at byte 0"}, /* F5 */
        {"\xff", "invalid UTF-8 at byte 0"},             /* FF */
        {"x\xe2\x82", "invalid UTF-8 at byte 1"},        /* cut at the end */
        {"\xe2\x82x", "invalid UTF-8 at byte 0"},        /* cut in the middle */
        {"\xf0\x9d\x84", "invalid UTF-8 at byte 0"},     /* cut 4-byte */
        {"\xc3\xa9\xc3", "invalid UTF-8 at byte 2"},     /* cut 2-byte */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(SP_FORMAT_STRING, &kv_schema, bad[i].s, bad[i].why);
    /* A schema without a string "value". */
    expect_error(SP_FORMAT_RAW, &rec_schema, "x", "no field 'value'");
    expect_error(SP_FORMAT_STRING, &bad_kv_schema, "x", "field 'value': must be a string");
    /* Encoding copies the value's bytes. */
    struct kv kv = {.key = sp_str_of("k", 1), .value = sp_str_of("v\0w", 3)};
    char buf[8];
    assert_int_equal(sp_serde_encode(SP_FORMAT_RAW, &kv_schema, &kv, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "v\0w", 3);
    assert_int_equal(sp_serde_encode(SP_FORMAT_STRING, &kv_schema, &kv, buf, 2), -ENOSPC);
    assert_int_equal(sp_serde_encode(SP_FORMAT_RAW, &rec_schema, &kv, buf, sizeof(buf)), -EINVAL);
}

/* ---- Encoding into small buffers ---- */

static void test_encode_enospc(void **state)
{
    (void)state;
    static const enum sp_format formats[] = {SP_FORMAT_JSON, SP_FORMAT_CSV};
    for (unsigned f = 0; f < 2; f++) {
        for (unsigned i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
            struct rec r;
            fill(&r, i);
            char full[512];
            int n = sp_serde_encode(formats[f], &rec_schema, &r, full, sizeof(full));
            assert_true(n > 0);
            for (int cap = 0; cap <= n; cap++) {
                char *buf = malloc((size_t)cap + 16);
                memset(buf, '#', (size_t)cap + 16);
                int m = sp_serde_encode(formats[f], &rec_schema, &r, buf, (size_t)cap);
                if (cap < n) {
                    assert_int_equal(m, -ENOSPC);
                } else {
                    assert_int_equal(m, n);
                    assert_memory_equal(buf, full, (size_t)n);
                }
                for (int k = cap; k < cap + 16; k++)
                    assert_int_equal(buf[k], '#'); /* nothing past the end */
                free(buf);
            }
        }
    }
}

/* ---- Robustness ---- */

/* Every prefix, and every byte replaced by a few troublesome ones, decodes
 * to 0 or -EBADMSG with a one-line reason; ASan watches the reads. */
static void torture(enum sp_format format, const struct sp_schema *schema, const char *rec)
{
    size_t len = strlen(rec);
    for (size_t n = 0; n <= len; n++)
        (void)decode(format, schema, rec, n, NULL);
    static const char subst[] = {'"',  ',',        '\\',       '{', '}', '[', '\0',
                                 '\n', (char)0xff, (char)0xc3, '9', 'e', '-', ':'};
    char *m = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            memcpy(m, rec, len);
            m[i] = subst[k];
            (void)decode(format, schema, m, len, NULL);
        }
    }
    free(m);
}

static void test_prefixes_never_crash(void **state)
{
    (void)state;
    torture(SP_FORMAT_JSON, &rec_schema,
            "{\"id\":-12,\"price\":1.5e3,\"ok\":true,\"name\":\"a\\\"b\\u00e9\",\"note\":null}");
    torture(SP_FORMAT_JSON, &rec_schema, "{\"x\":[1,{\"y\":\"\\ud834\\udd1e\"}],\"id\":1e2}");
    torture(SP_FORMAT_CSV, &rec_schema, "-12,1.5e3,true,\"a,\"\"b\"\"\",plain");
    torture(SP_FORMAT_CSV, &rec_schema, "\"1\",\"2\",\"0\",\"x\ny\",\"\"");
    torture(SP_FORMAT_STRING, &kv_schema, "caf\xc3\xa9 \xf0\x9d\x84\x9e \xe2\x82\xac");
    torture(SP_FORMAT_RAW, &kv_schema, "anything");
}

static void test_err_truncated(void **state)
{
    (void)state;
    void *row = fresh_row(&rec_schema);
    char small[8];
    memset(small, 'x', sizeof(small));
    const char *bad = "{\"id\":\"a very long string value\"}";
    assert_int_equal(sp_serde_decode(SP_FORMAT_JSON, &rec_schema, bad, strlen(bad), row, &out,
                                     small, sizeof(small)),
                     -EBADMSG);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, "field '", 7);
    /* No room for a reason at all is fine too. */
    row = fresh_row(&rec_schema);
    assert_int_equal(
        sp_serde_decode(SP_FORMAT_JSON, &rec_schema, bad, strlen(bad), row, &out, NULL, 0),
        -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_csv_round_trip),
        cmocka_unit_test(test_json_encode_exact),
        cmocka_unit_test(test_csv_encode_exact),
        cmocka_unit_test(test_json_missing_unknown_null),
        cmocka_unit_test(test_json_wrong_types),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_columns),
        cmocka_unit_test(test_csv_numbers),
        cmocka_unit_test(test_raw_string),
        cmocka_unit_test(test_encode_enospc),
        cmocka_unit_test(test_prefixes_never_crash),
        cmocka_unit_test(test_err_truncated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
