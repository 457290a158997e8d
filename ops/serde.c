/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Serdes: one record (a Kafka value, a line of a file without its newline)
 * to a row and back, in JSON, CSV, RAW or STRING (sp_op.h has the
 * contracts). This is a decoder of outside bytes: it never reads past `len`
 * (the data is not NUL-terminated), never asserts on the bytes, allocates
 * no more than a constant factor of the record (jansson's tree, for JSON),
 * and answers every malformed record with -EBADMSG and a one-line reason
 * naming the field, e.g. "field 'amount': expected an integer, got a
 * string".
 *
 * Choices the header leaves open, made here:
 *
 * - JSON: null is the field's zero (0, 0.0, false, the empty string), like a
 *   missing field, so a NaN written as null reads back as 0.0. An int64
 *   field takes an integer, or a real that is integral and within int64
 *   (1e3 is 1000; 1.5 and 1e19 are errors); a double field takes integers
 *   and reals. A duplicated key: the last one wins (jansson's default).
 *   Embedded NULs ("\u0000") are kept: strings carry their length.
 * - CSV: no header line, every record is data. An empty field is the
 *   field's zero. Numbers are strict: no whitespace, the whole field must
 *   parse (strtoll base 10, strtod, so "nan" and "inf" are doubles), and an
 *   int64 or a double out of range is an error. Booleans are true, false,
 *   1 or 0. A quote inside an unquoted field, text after a closing quote
 *   and an unterminated quote are errors; a quoted field may hold commas,
 *   "" for a quote, and newlines. The C locale is assumed ('.' decimals).
 * - Encoding: doubles with %.17g (they read back bit for bit), in JSON
 *   always with a '.' or an exponent so they stay reals (-0.0 too). JSON
 *   writes a non-finite double as null and bytes that are not UTF-8 as
 *   U+FFFD, so the output is always valid JSON. CSV writes nan, inf and
 *   -inf, and quotes a string holding a comma, a quote, CR or LF (and the
 *   empty string of a one-field schema, so the line is not blank). RAW and
 *   STRING copy the "value" field's bytes unchecked.
 *
 * Strings go into the row's batch with sp_out_str(), which never moves the
 * row being written (a string that does not fit waits in the output's spill
 * area until the row is committed), so `row` stays valid throughout.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_common.h"
#include "sp_op.h"

/* Larger records are refused before parsing: it bounds jansson's tree, and
 * a string must fit sp_str's 32-bit length anyway. A batch (32 KiB by
 * default) is far smaller, so this never refuses a record a job can hold. */
#define SERDE_RECORD_BYTES_MAX (64u << 20)
/* Longest text taken for a number (an int64 needs 20, a %.17g double 24). */
#define SERDE_NUMBER_CHARS_MAX 64
/* How much of an offending value an error quotes. */
#define SERDE_SNIPPET_CHARS 24

/* ---- Errors ---- */

/* Formats a reason into `err` (when there is room for one), always
 * NUL-terminated and on one line: control bytes become spaces. */
static int SP_PRINTF(3, 4) fail(char *err, size_t err_bytes, const char *fmt, ...)
{
    if (err == NULL || err_bytes == 0)
        return -EBADMSG;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
    err[err_bytes - 1] = '\0';
    for (char *p = err; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    return -EBADMSG;
}

/* A printable excerpt of `n` bytes for an error: at most SERDE_SNIPPET_CHARS,
 * bytes outside printable ASCII as '?', "..." when cut. */
static const char *snippet(char dst[SERDE_SNIPPET_CHARS + 4], const char *p, size_t n)
{
    size_t k = n < SERDE_SNIPPET_CHARS ? n : SERDE_SNIPPET_CHARS;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)p[i];
        dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (k < n)
        memcpy(dst + k, "...", 3), k += 3;
    dst[k] = '\0';
    return dst;
}

/* ---- UTF-8 ---- */

/*
 * The length (1 to 4) of the well-formed UTF-8 sequence at `p`, or 0 when
 * the bytes there are not one: a stray continuation byte, an overlong form
 * (C0, C1, E0 80..9F, F0 80..8F), a surrogate (ED A0..BF), a code point
 * above U+10FFFF (F4 90.., F5..FF), or a sequence cut by the end.
 */
static unsigned utf8_char(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;
    if (c < 0xe0)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c < 0xf5) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* The offset of the first byte that is not well-formed UTF-8, or `n`. */
static size_t utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned k = utf8_char(p + i, n - i);
        if (k == 0)
            return i;
        i += k;
    }
    return n;
}

/* ---- Rows ---- */

static void put_i64(void *row, const struct sp_field *f, int64_t v)
{
    memcpy((uint8_t *)row + f->offset, &v, sizeof(v));
}

static void put_f64(void *row, const struct sp_field *f, double v)
{
    memcpy((uint8_t *)row + f->offset, &v, sizeof(v));
}

static void put_bool(void *row, const struct sp_field *f, bool v)
{
    memcpy((uint8_t *)row + f->offset, &v, sizeof(v));
}

/*
 * Copies `len` bytes into the row's batch and stores the string in field
 * `f` of `row`. -1 when they cannot fit even an empty batch (sp_out_str()
 * has failed the job then).
 */
static int str_store(struct sp_out *out, void *row, const struct sp_field *f, const char *bytes,
                     size_t len)
{
    SP_ASSERT(len <= UINT32_MAX);
    struct sp_str s = sp_out_str(out, bytes, (uint32_t)len);
    if (s.len != len)
        return -1;
    memcpy((uint8_t *)row + f->offset, &s, sizeof(s));
    return 0;
}

static int str_too_big(const struct sp_field *f, size_t len, char *err, size_t err_bytes)
{
    return fail(err, err_bytes, "field '%s': %zu bytes of string do not fit a batch", f->name, len);
}

/* The index of the STR field "value", or a failure. */
static int value_field(const struct sp_schema *schema, char *err, size_t err_bytes)
{
    int i = sp_schema_find(schema, "value");
    if (i < 0)
        return fail(err, err_bytes, "the schema has no field 'value' for the record's bytes");
    if (schema->fields[i].type != SP_T_STR)
        return fail(err, err_bytes, "field 'value': must be a string to hold the record's bytes");
    return i;
}

/* ---- JSON decoding ---- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

static const char *type_want(enum sp_type t)
{
    switch (t) {
    case SP_T_I64:
        return "an integer";
    case SP_T_F64:
        return "a number";
    case SP_T_STR:
        return "a string";
    case SP_T_BOOL:
        return "true or false";
    }
    return "?";
}

/* One field from its JSON value; null leaves the zero the row has. */
static int json_field(const struct sp_field *f, const json_t *v, void *row, struct sp_out *out,
                      char *err, size_t err_bytes)
{
    if (json_is_null(v))
        return 0;
    switch (f->type) {
    case SP_T_I64:
        if (json_is_integer(v)) {
            put_i64(row, f, (int64_t)json_integer_value(v));
            return 0;
        }
        if (json_is_real(v)) {
            /* Integral and in range; 2^63 itself is out, -2^63 in. */
            double d = json_real_value(v);
            if (d == trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                put_i64(row, f, (int64_t)d);
                return 0;
            }
            return fail(err, err_bytes,
                        "field '%s': expected an integer, got %.17g (a fraction or out of range)",
                        f->name, d);
        }
        break;
    case SP_T_F64:
        if (json_is_integer(v) || json_is_real(v)) {
            put_f64(row, f, json_number_value(v));
            return 0;
        }
        break;
    case SP_T_BOOL:
        if (json_is_boolean(v)) {
            put_bool(row, f, json_is_true(v));
            return 0;
        }
        break;
    case SP_T_STR:
        if (json_is_string(v)) {
            size_t n = json_string_length(v);
            if (str_store(out, row, f, json_string_value(v), n) < 0)
                return str_too_big(f, n, err, err_bytes);
            return 0;
        }
        break;
    }
    return fail(err, err_bytes, "field '%s': expected %s, got %s", f->name, type_want(f->type),
                json_kind(v));
}

static int json_decode(const struct sp_schema *schema, const void *data, size_t len, void *row,
                       struct sp_out *out, char *err, size_t err_bytes)
{
    json_error_t je;
    /* Without JSON_DECODE_ANY only an object or an array parses. */
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, &je);
    if (root == NULL)
        return fail(err, err_bytes, "invalid JSON at byte %d: %s", je.position, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = fail(err, err_bytes, "expected a JSON object, got %s", json_kind(root));
        goto out;
    }
    for (uint32_t i = 0; i < schema->field_count && rc == 0; i++) {
        const struct sp_field *f = &schema->fields[i];
        const json_t *v = json_object_get(root, f->name);
        if (v != NULL)
            rc = json_field(f, v, row, out, err, err_bytes);
    }
out:
    json_decref(root);
    return rc;
}

/* ---- CSV decoding ---- */

/* A field of a CSV record: its bytes inside the quotes, if any. */
struct csv_cell {
    uint32_t start;
    uint32_t len;
    uint32_t quotes; /* "" pairs inside a quoted field */
    bool quoted;
};

/*
 * Splits `data` into fields (RFC 4180): the first `max` go into `cells`,
 * the rest are only counted. Returns the field count, or -EBADMSG on a
 * quoting error (`err` names the field by its 1-based column).
 */
static int csv_split(const char *data, uint32_t len, struct csv_cell *cells, uint32_t max,
                     char *err, size_t err_bytes)
{
    uint32_t count = 0, p = 0;
    for (;;) {
        struct csv_cell c = {.start = p};
        if (p < len && data[p] == '"') {
            c.quoted = true;
            c.start = ++p;
            for (;;) {
                if (p == len)
                    return fail(err, err_bytes, "column %u: a quoted field is not closed",
                                count + 1);
                if (data[p] == '"') {
                    if (p + 1 < len && data[p + 1] == '"') {
                        c.quotes++;
                        p += 2;
                        continue;
                    }
                    break;
                }
                p++;
            }
            c.len = p - c.start;
            p++; /* the closing quote */
            if (p < len && data[p] != ',')
                return fail(err, err_bytes, "column %u: text after a closing quote", count + 1);
        } else {
            while (p < len && data[p] != ',') {
                if (data[p] == '"')
                    return fail(err, err_bytes, "column %u: a quote inside an unquoted field",
                                count + 1);
                p++;
            }
            c.len = p - c.start;
        }
        if (count < max)
            cells[count] = c;
        count++;
        if (p == len)
            return (int)count;
        p++; /* the comma */
    }
}

/* A cell's text, unescaped, NUL-terminated in `buf` for number parsing;
 * NULL when it is longer than a number can be. */
static const char *csv_text(const char *data, const struct csv_cell *c, char *buf, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->len; i++) {
        char ch = data[c->start + i];
        if (n + 1 >= cap)
            return NULL;
        buf[n++] = ch;
        if (ch == '"')
            i++; /* "" is one quote */
    }
    buf[n] = '\0';
    return buf;
}

static int csv_number(const struct sp_field *f, const char *data, const struct csv_cell *c,
                      void *row, char *err, size_t err_bytes)
{
    char text[SERDE_NUMBER_CHARS_MAX + 1];
    char snip[SERDE_SNIPPET_CHARS + 4];
    const char *s = csv_text(data, c, text, sizeof(text));
    if (s == NULL || s[0] == ' ' || s[0] == '\t' || s[0] == '\0' || strlen(s) != c->len - c->quotes)
        goto bad;
    char *end;
    errno = 0;
    if (f->type == SP_T_I64) {
        long long v = strtoll(s, &end, 10);
        if (*end != '\0' || end == s)
            goto bad;
        if (errno == ERANGE)
            return fail(err, err_bytes, "field '%s': integer out of range: %s", f->name, s);
        put_i64(row, f, (int64_t)v);
    } else {
        double v = strtod(s, &end);
        if (*end != '\0' || end == s)
            goto bad;
        if (errno == ERANGE && isinf(v))
            return fail(err, err_bytes, "field '%s': number out of range: %s", f->name, s);
        put_f64(row, f, v); /* underflow: 0 or a subnormal, kept */
    }
    return 0;
bad:
    return fail(err, err_bytes, "field '%s': expected %s, got \"%s\"", f->name, type_want(f->type),
                snippet(snip, data + c->start, c->len));
}

static int csv_field(const struct sp_field *f, const char *data, const struct csv_cell *c,
                     void *row, struct sp_out *out, char *err, size_t err_bytes)
{
    if (c->len == 0)
        return 0; /* the field's zero */
    const char *p = data + c->start;
    switch (f->type) {
    case SP_T_I64:
    case SP_T_F64:
        return csv_number(f, data, c, row, err, err_bytes);
    case SP_T_BOOL: {
        char snip[SERDE_SNIPPET_CHARS + 4];
        if ((c->len == 4 && memcmp(p, "true", 4) == 0) || (c->len == 1 && p[0] == '1'))
            put_bool(row, f, true);
        else if ((c->len == 5 && memcmp(p, "false", 5) == 0) || (c->len == 1 && p[0] == '0'))
            put_bool(row, f, false);
        else
            return fail(err, err_bytes, "field '%s': expected true or false, got \"%s\"", f->name,
                        snippet(snip, p, c->len));
        return 0;
    }
    case SP_T_STR:
        break;
    }
    uint32_t n = c->len - c->quotes;
    if (str_store(out, row, f, p, n) < 0)
        return str_too_big(f, n, err, err_bytes);
    if (c->quotes > 0) {
        /* The batch holds the first n raw bytes; unescape into it. */
        struct sp_str s;
        memcpy(&s, (uint8_t *)row + f->offset, sizeof(s));
        char *dst = (char *)s.ptr;
        uint32_t k = 0;
        for (uint32_t i = 0; i < c->len; i++) {
            dst[k++] = p[i];
            if (p[i] == '"')
                i++;
        }
        SP_ASSERT(k == n);
    }
    return 0;
}

static int csv_decode(const struct sp_schema *schema, const char *data, uint32_t len, void *row,
                      struct sp_out *out, char *err, size_t err_bytes)
{
    struct csv_cell cells[SP_SCHEMA_FIELDS_MAX];
    int count = csv_split(data, len, cells, SP_SCHEMA_FIELDS_MAX, err, err_bytes);
    if (count < 0)
        return count;
    if ((uint32_t)count != schema->field_count)
        return fail(err, err_bytes, "expected %u fields, got %d", schema->field_count, count);
    for (uint32_t i = 0; i < schema->field_count; i++) {
        int rc = csv_field(&schema->fields[i], data, &cells[i], row, out, err, err_bytes);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- Decoding ---- */

int sp_serde_decode(enum sp_format format, const struct sp_schema *schema, const void *data,
                    size_t len, void *row, struct sp_out *out, char *err, size_t err_bytes)
{
    SP_ASSERT(schema != NULL);
    SP_ASSERT(row != NULL);
    SP_ASSERT(out != NULL);
    SP_ASSERT(data != NULL || len == 0);
    if (err != NULL && err_bytes > 0)
        err[0] = '\0';
    if (data == NULL)
        data = "";
    if (len > SERDE_RECORD_BYTES_MAX)
        return fail(err, err_bytes, "a record of %zu bytes (at most %u)", len,
                    SERDE_RECORD_BYTES_MAX);
    switch (format) {
    case SP_FORMAT_JSON:
        return json_decode(schema, data, len, row, out, err, err_bytes);
    case SP_FORMAT_CSV:
        return csv_decode(schema, data, (uint32_t)len, row, out, err, err_bytes);
    case SP_FORMAT_RAW:
    case SP_FORMAT_STRING: {
        if (format == SP_FORMAT_STRING) {
            size_t bad = utf8_valid_prefix(data, len);
            if (bad < len)
                return fail(err, err_bytes, "invalid UTF-8 at byte %zu", bad);
        }
        int i = value_field(schema, err, err_bytes);
        if (i < 0)
            return i;
        if (str_store(out, row, &schema->fields[i], data, len) < 0)
            return str_too_big(&schema->fields[i], len, err, err_bytes);
        return 0;
    }
    }
    return fail(err, err_bytes, "unknown format %d", (int)format);
}

/* ---- Encoding ---- */

/* An output buffer: a write that does not fit sets `full`, later ones do nothing. */
struct wbuf {
    char *p;
    size_t cap;
    size_t at;
    bool full;
};

static void w_put(struct wbuf *w, const void *s, size_t n)
{
    if (w->full || n > w->cap - w->at) {
        w->full = true;
        return;
    }
    memcpy(w->p + w->at, s, n);
    w->at += n;
}

static void w_ch(struct wbuf *w, char c)
{
    w_put(w, &c, 1);
}

static void w_json_string(struct wbuf *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    w_ch(w, '"');
    size_t i = 0;
    while (i < len && !w->full) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            w_put(w, e, 2);
        } else if (c == '\n') {
            w_put(w, "\\n", 2);
        } else if (c == '\r') {
            w_put(w, "\\r", 2);
        } else if (c == '\t') {
            w_put(w, "\\t", 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            w_put(w, e, 6);
        } else {
            unsigned k = utf8_char(p + i, len - i);
            if (k == 0) {
                w_put(w, "\\ufffd", 6); /* not UTF-8: the replacement character */
                k = 1;
            } else {
                w_put(w, p + i, k);
            }
            i += k;
            continue;
        }
        i++;
    }
    w_ch(w, '"');
}

/* A CSV string, quoted when it holds a separator, a quote or a line break. */
static void w_csv_string(struct wbuf *w, const char *s, size_t len, bool quote_empty)
{
    bool quote = len == 0 ? quote_empty : false;
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        w_put(w, s, len);
        return;
    }
    w_ch(w, '"');
    for (size_t i = 0; i < len && !w->full; i++) {
        if (s[i] == '"')
            w_ch(w, '"');
        w_ch(w, s[i]);
    }
    w_ch(w, '"');
}

/* A number or boolean's text (JSON: non-finite doubles are null). */
static int scalar_text(const struct sp_field *f, const uint8_t *row, bool json, char *num,
                       size_t cap)
{
    switch (f->type) {
    case SP_T_I64: {
        int64_t v;
        memcpy(&v, row + f->offset, sizeof(v));
        return snprintf(num, cap, "%lld", (long long)v);
    }
    case SP_T_F64: {
        double v;
        memcpy(&v, row + f->offset, sizeof(v));
        if (isfinite(v)) {
            int n = snprintf(num, cap, "%.17g", v);
            /* JSON: always a real (-0.0 stays negative, 3.0 stays a double). */
            if (json && n > 0 && (size_t)n + 2 < cap && strpbrk(num, ".e") == NULL) {
                memcpy(num + n, ".0", 3);
                n += 2;
            }
            return n;
        }
        if (json)
            return snprintf(num, cap, "null");
        return snprintf(num, cap, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    }
    case SP_T_BOOL:
        return snprintf(num, cap, "%s", row[f->offset] ? "true" : "false");
    case SP_T_STR:
        break;
    }
    return 0;
}

static void encode_fields(struct wbuf *w, bool json, const struct sp_schema *schema,
                          const uint8_t *row)
{
    if (json)
        w_ch(w, '{');
    for (uint32_t i = 0; i < schema->field_count && !w->full; i++) {
        const struct sp_field *f = &schema->fields[i];
        if (i > 0)
            w_ch(w, ',');
        if (json) {
            w_json_string(w, f->name, strlen(f->name));
            w_ch(w, ':');
        }
        if (f->type == SP_T_STR) {
            struct sp_str s;
            memcpy(&s, row + f->offset, sizeof(s));
            if (json)
                w_json_string(w, s.ptr, s.len);
            else
                w_csv_string(w, s.ptr, s.len, schema->field_count == 1);
            continue;
        }
        char num[48];
        int n = scalar_text(f, row, json, num, sizeof(num));
        SP_ASSERT(n > 0 && (size_t)n < sizeof(num));
        w_put(w, num, (size_t)n);
    }
    if (json)
        w_ch(w, '}');
}

int sp_serde_encode(enum sp_format format, const struct sp_schema *schema, const void *row,
                    char *buf, size_t cap)
{
    SP_ASSERT(schema != NULL);
    SP_ASSERT(row != NULL);
    SP_ASSERT(buf != NULL || cap == 0);
    struct wbuf w = {.p = buf, .cap = cap < INT_MAX ? cap : INT_MAX};
    switch (format) {
    case SP_FORMAT_JSON:
    case SP_FORMAT_CSV:
        encode_fields(&w, format == SP_FORMAT_JSON, schema, row);
        break;
    case SP_FORMAT_RAW:
    case SP_FORMAT_STRING: {
        /* A schema without a "value" string is the caller's mistake. */
        int i = sp_schema_find(schema, "value");
        if (i < 0 || schema->fields[i].type != SP_T_STR)
            return -EINVAL;
        struct sp_str s;
        memcpy(&s, (const uint8_t *)row + schema->fields[i].offset, sizeof(s));
        w_put(&w, s.ptr, s.len);
        break;
    }
    default:
        return -EINVAL;
    }
    if (w.full)
        return -ENOSPC;
    return (int)w.at;
}

/* The schema of struct sp_record_row (sp_job.h). */
static const struct sp_field record_fields[] = {
    SP_FIELD(struct sp_record_row, key, SP_T_STR),
    SP_FIELD(struct sp_record_row, value, SP_T_STR),
    SP_FIELD(struct sp_record_row, timestamp, SP_T_I64),
    SP_FIELD(struct sp_record_row, offset, SP_T_I64),
    SP_FIELD(struct sp_record_row, partition, SP_T_I64),
};
const struct sp_schema sp_record_schema = SP_SCHEMA(struct sp_record_row, record_fields);
