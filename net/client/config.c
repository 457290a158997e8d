/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka client's configuration (see sp_kafka_config.h): a table of
 * properties (name, kind, field, range, default) drives init, set and the
 * error messages, so a property is one line of the table; a Java
 * .properties reader; the Java client's cross-field rules.
 *
 * Nothing here allocates: values are parsed in place, files are read
 * through stdio into fixed line buffers, and load_file works on a copy of
 * the config (a few KiB on the stack) that replaces the caller's only when
 * the whole file is good. Configuration is read once at start-up, so the
 * code favours clear messages over speed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sp_kafka_config.h"

/* ---- The property table ---- */

enum prop_kind {
    PROP_I32,       /* int32_t in [min, max] */
    PROP_I64,       /* int64_t in [min, max] */
    PROP_BOOL,      /* bool: true or false */
    PROP_STR,       /* char[size] */
    PROP_ENUM,      /* a 4-byte enum (or int32_t) from `names` */
    PROP_SERVERS,   /* bootstrap.servers: char[size], each entry host:port */
    PROP_ASSIGNORS, /* partition.assignment.strategy: assignors[] */
};

#define PROP_NONEMPTY 0x1u    /* "" is invalid (Java's NonEmptyString) */
#define PROP_INSTANCE_ID 0x2u /* Kafka's group.instance.id characters and length */
#define PROP_ALIAS 0x4u       /* another name for the property `id` */

/* Property ids: the bit of set_mask each one owns. */
enum prop_id {
    P_BOOTSTRAP_SERVERS,
    P_CLIENT_ID,
    P_METADATA_MAX_AGE_MS,
    P_RECONNECT_BACKOFF_MS,
    P_RECONNECT_BACKOFF_MAX_MS,
    P_RETRY_BACKOFF_MS,
    P_RETRY_BACKOFF_MAX_MS,
    P_REQUEST_TIMEOUT_MS,
    P_SOCKET_SETUP_TIMEOUT_MS,
    P_SOCKET_SETUP_TIMEOUT_MAX_MS,
    P_ACKS,
    P_LINGER_MS,
    P_BATCH_SIZE,
    P_COMPRESSION_TYPE,
    P_ENABLE_IDEMPOTENCE,
    P_TRANSACTIONAL_ID,
    P_TRANSACTION_TIMEOUT_MS,
    P_MAX_IN_FLIGHT,
    P_RETRIES,
    P_DELIVERY_TIMEOUT_MS,
    P_MAX_REQUEST_SIZE,
    P_PARTITIONER,
    P_GROUP_ID,
    P_GROUP_INSTANCE_ID,
    P_AUTO_OFFSET_RESET,
    P_ISOLATION_LEVEL,
    P_SESSION_TIMEOUT_MS,
    P_HEARTBEAT_INTERVAL_MS,
    P_MAX_POLL_INTERVAL_MS,
    P_MAX_POLL_RECORDS,
    P_ENABLE_AUTO_COMMIT,
    P_AUTO_COMMIT_INTERVAL_MS,
    P_FETCH_MIN_BYTES,
    P_FETCH_MAX_BYTES,
    P_FETCH_MAX_WAIT_MS,
    P_MAX_PARTITION_FETCH_BYTES,
    P_ASSIGNMENT_STRATEGY,
    P_COUNT,
};
_Static_assert(P_COUNT <= 64, "set_mask has a bit per property");

struct prop_name {
    const char *name;
    int32_t value;
};

struct prop {
    const char *name;
    const char *default_value;
    const struct prop_name *names; /* PROP_ENUM: the spellings, NULL-terminated */
    const char *allowed;           /* PROP_ENUM: the spellings, for messages */
    int64_t min, max;              /* PROP_I32, PROP_I64 */
    uint16_t offset;
    uint16_t size; /* PROP_STR, PROP_SERVERS: capacity, NUL included */
    uint8_t kind;
    uint8_t id;
    uint8_t flags;
};

/*
 * The field's offset, with a compile-time check that it has `bytes` bytes
 * (a negative array size stops the build), so a row cannot write an int64_t
 * property into an int32_t field.
 */
#define FIELD(field, bytes)                                                                        \
    (uint16_t)(offsetof(struct sp_kafka_config, field) +                                           \
               0 * sizeof(char[sizeof(((struct sp_kafka_config *)0)->field) == (bytes) ? 1 : -1]))
#define FIELD_SIZE(field) (uint16_t)sizeof(((struct sp_kafka_config *)0)->field)

#define I32(nm, pid, field, def, lo, hi)                                                           \
    {                                                                                              \
        .name = nm, .id = pid, .kind = PROP_I32, .offset = FIELD(field, 4), .default_value = def,  \
        .min = lo, .max = hi                                                                       \
    }
#define I64(nm, pid, field, def, lo, hi)                                                           \
    {                                                                                              \
        .name = nm, .id = pid, .kind = PROP_I64, .offset = FIELD(field, 8), .default_value = def,  \
        .min = lo, .max = hi                                                                       \
    }
#define BOOL(nm, pid, field, def)                                                                  \
    {                                                                                              \
        .name = nm, .id = pid, .kind = PROP_BOOL, .offset = FIELD(field, sizeof(bool)),            \
        .default_value = def                                                                       \
    }
#define STR(nm, pid, field, fl)                                                                    \
    {                                                                                              \
        .name = nm, .id = pid, .kind = PROP_STR, .offset = FIELD(field, FIELD_SIZE(field)),        \
        .size = FIELD_SIZE(field), .default_value = "", .flags = fl                                \
    }
#define ENUM(nm, pid, field, def, tbl, txt)                                                        \
    {                                                                                              \
        .name = nm, .id = pid, .kind = PROP_ENUM, .offset = FIELD(field, 4), .default_value = def, \
        .names = tbl, .allowed = txt                                                               \
    }

static const struct prop_name acks_names[] = {
    {"all", -1}, {"-1", -1}, {"0", 0}, {"1", 1}, {NULL, 0},
};
static const struct prop_name codec_names[] = {
    {"none", SP_RECORD_CODEC_NONE},     {"gzip", SP_RECORD_CODEC_GZIP},
    {"snappy", SP_RECORD_CODEC_SNAPPY}, {"lz4", SP_RECORD_CODEC_LZ4},
    {"zstd", SP_RECORD_CODEC_ZSTD},     {NULL, 0},
};
static const struct prop_name reset_names[] = {
    {"latest", SP_KAFKA_OFFSET_RESET_LATEST},
    {"earliest", SP_KAFKA_OFFSET_RESET_EARLIEST},
    {"none", SP_KAFKA_OFFSET_RESET_NONE},
    {NULL, 0},
};
static const struct prop_name isolation_names[] = {
    {"read_uncommitted", SP_KAFKA_READ_UNCOMMITTED},
    {"read_committed", SP_KAFKA_READ_COMMITTED},
    {NULL, 0},
};
static const struct prop_name partitioner_names[] = {
    {"murmur2_random", SP_KAFKA_PARTITIONER_MURMUR2_RANDOM},
    {"murmur2", SP_KAFKA_PARTITIONER_MURMUR2},
    {NULL, 0},
};
/* Short names and the Java consumer's class names. */
static const struct prop_name assignor_names[] = {
    {"range", SP_KAFKA_ASSIGNOR_RANGE},
    {"roundrobin", SP_KAFKA_ASSIGNOR_ROUNDROBIN},
    {"cooperative-sticky", SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY},
    {"org.apache.kafka.clients.consumer.RangeAssignor", SP_KAFKA_ASSIGNOR_RANGE},
    {"org.apache.kafka.clients.consumer.RoundRobinAssignor", SP_KAFKA_ASSIGNOR_ROUNDROBIN},
    {"org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
     SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY},
    {NULL, 0},
};

_Static_assert(sizeof(enum sp_record_codec_id) == 4, "PROP_ENUM fields are 4 bytes");
_Static_assert(sizeof(enum sp_kafka_offset_reset) == 4, "PROP_ENUM fields are 4 bytes");
_Static_assert(sizeof(enum sp_kafka_isolation_level) == 4, "PROP_ENUM fields are 4 bytes");
_Static_assert(sizeof(enum sp_kafka_partitioner) == 4, "PROP_ENUM fields are 4 bytes");

/*
 * Defaults and ranges are the Java client's (Kafka 4.x ProducerConfig,
 * ConsumerConfig, CommonClientConfigs). Where Java has no range check the
 * comment says what we chose.
 */
static const struct prop props[] = {
    /* ---- Common ---- */
    {.name = "bootstrap.servers",
     .id = P_BOOTSTRAP_SERVERS,
     .kind = PROP_SERVERS,
     .offset = FIELD(bootstrap_servers, SP_KAFKA_CONFIG_SERVERS_MAX),
     .size = SP_KAFKA_CONFIG_SERVERS_MAX,
     .default_value = ""},
    STR("client.id", P_CLIENT_ID, client_id, 0),
    I64("metadata.max.age.ms", P_METADATA_MAX_AGE_MS, metadata_max_age_ms, "300000", 0, INT64_MAX),
    I64("reconnect.backoff.ms", P_RECONNECT_BACKOFF_MS, reconnect_backoff_ms, "50", 0, INT64_MAX),
    I64("reconnect.backoff.max.ms", P_RECONNECT_BACKOFF_MAX_MS, reconnect_backoff_max_ms, "1000", 0,
        INT64_MAX),
    I64("retry.backoff.ms", P_RETRY_BACKOFF_MS, retry_backoff_ms, "100", 0, INT64_MAX),
    I64("retry.backoff.max.ms", P_RETRY_BACKOFF_MAX_MS, retry_backoff_max_ms, "1000", 0, INT64_MAX),
    I32("request.timeout.ms", P_REQUEST_TIMEOUT_MS, request_timeout_ms, "30000", 0, INT32_MAX),
    /* Java: no range; a negative timeout means nothing. */
    I64("socket.connection.setup.timeout.ms", P_SOCKET_SETUP_TIMEOUT_MS,
        socket_connection_setup_timeout_ms, "10000", 0, INT64_MAX),
    I64("socket.connection.setup.timeout.max.ms", P_SOCKET_SETUP_TIMEOUT_MAX_MS,
        socket_connection_setup_timeout_max_ms, "30000", 0, INT64_MAX),

    /* ---- Producer ---- */
    ENUM("acks", P_ACKS, acks, "all", acks_names, "all, -1, 0, 1"),
    I64("linger.ms", P_LINGER_MS, linger_ms, "5", 0, INT64_MAX),
    I32("batch.size", P_BATCH_SIZE, batch_size, "16384", 0, INT32_MAX),
    ENUM("compression.type", P_COMPRESSION_TYPE, compression_type, "none", codec_names,
         "none, gzip, snappy, lz4, zstd"),
    BOOL("enable.idempotence", P_ENABLE_IDEMPOTENCE, enable_idempotence, "true"),
    STR("transactional.id", P_TRANSACTIONAL_ID, transactional_id, PROP_NONEMPTY),
    /* Java: no range; the broker rejects 0 and negatives (InvalidTxnTimeout). */
    I32("transaction.timeout.ms", P_TRANSACTION_TIMEOUT_MS, transaction_timeout_ms, "60000", 1,
        INT32_MAX),
    I32("max.in.flight.requests.per.connection", P_MAX_IN_FLIGHT,
        max_in_flight_requests_per_connection, "5", 1, INT32_MAX),
    I32("retries", P_RETRIES, retries, "2147483647", 0, INT32_MAX),
    I32("delivery.timeout.ms", P_DELIVERY_TIMEOUT_MS, delivery_timeout_ms, "120000", 0, INT32_MAX),
    I32("max.request.size", P_MAX_REQUEST_SIZE, max_request_size, "1048576", 0, INT32_MAX),
    ENUM("partitioner", P_PARTITIONER, partitioner, "murmur2_random", partitioner_names,
         "murmur2_random, murmur2"),

    /* ---- Consumer ---- */
    STR("group.id", P_GROUP_ID, group_id, 0),
    STR("group.instance.id", P_GROUP_INSTANCE_ID, group_instance_id,
        PROP_NONEMPTY | PROP_INSTANCE_ID),
    ENUM("auto.offset.reset", P_AUTO_OFFSET_RESET, auto_offset_reset, "latest", reset_names,
         "earliest, latest, none"),
    ENUM("isolation.level", P_ISOLATION_LEVEL, isolation_level, "read_uncommitted", isolation_names,
         "read_uncommitted, read_committed"),
    /* Java: no range on the two below; 0 or less cannot work. */
    I32("session.timeout.ms", P_SESSION_TIMEOUT_MS, session_timeout_ms, "45000", 1, INT32_MAX),
    I32("heartbeat.interval.ms", P_HEARTBEAT_INTERVAL_MS, heartbeat_interval_ms, "3000", 1,
        INT32_MAX),
    I32("max.poll.interval.ms", P_MAX_POLL_INTERVAL_MS, max_poll_interval_ms, "300000", 1,
        INT32_MAX),
    I32("max.poll.records", P_MAX_POLL_RECORDS, max_poll_records, "500", 1, INT32_MAX),
    BOOL("enable.auto.commit", P_ENABLE_AUTO_COMMIT, enable_auto_commit, "true"),
    I32("auto.commit.interval.ms", P_AUTO_COMMIT_INTERVAL_MS, auto_commit_interval_ms, "5000", 0,
        INT32_MAX),
    I32("fetch.min.bytes", P_FETCH_MIN_BYTES, fetch_min_bytes, "1", 0, INT32_MAX),
    I32("fetch.max.bytes", P_FETCH_MAX_BYTES, fetch_max_bytes, "52428800", 0, INT32_MAX),
    I32("fetch.max.wait.ms", P_FETCH_MAX_WAIT_MS, fetch_max_wait_ms, "500", 0, INT32_MAX),
    I32("max.partition.fetch.bytes", P_MAX_PARTITION_FETCH_BYTES, max_partition_fetch_bytes,
        "1048576", 0, INT32_MAX),
    {.name = "partition.assignment.strategy",
     .id = P_ASSIGNMENT_STRATEGY,
     .kind = PROP_ASSIGNORS,
     .offset = FIELD(assignors, sizeof(enum sp_kafka_assignor_id) * SP_KAFKA_CONFIG_ASSIGNORS_MAX),
     .default_value = "range,cooperative-sticky"},

    /* ---- Aliases ---- */
    {.name = "message.max.bytes",
     .id = P_MAX_REQUEST_SIZE,
     .kind = PROP_I32,
     .offset = FIELD(max_request_size, 4),
     .min = 0,
     .max = INT32_MAX,
     .flags = PROP_ALIAS},
};

/* ---- Small helpers ---- */

/*
 * Messages quote at most this many bytes of a value, then "...": a value
 * can be a 4 KiB line of a file, and the message must still name the key.
 */
#define ECHO_MAX 64
#define ECHO(s, n) (int)SP_MIN((n), (size_t)ECHO_MAX), (s), (n) > ECHO_MAX ? "..." : ""

static void SP_PRINTF(3, 4) err_set(char *err, size_t err_len, const char *fmt, ...)
{
    if (err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Trims [s, s + *len) of whitespace on both ends; returns the new start. */
static const char *trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n > 0 && is_space((unsigned char)s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_space((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

static int span_eq(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

static int span_eq_nocase(const char *s, size_t len, const char *word)
{
    if (strlen(word) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char a = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (a != word[i])
            return 0;
    }
    return 1;
}

/*
 * A decimal integer as Java's Long.parseLong reads it: an optional sign and
 * one or more digits, nothing else (no spaces inside, no hex, no '_').
 * Returns 0 or -EINVAL (also on int64_t overflow).
 */
static int parse_int64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int negative = 0;
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return -EINVAL;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static const struct prop *prop_find(const char *key)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(props); i++)
        if (strcmp(props[i].name, key) == 0)
            return &props[i];
    return NULL;
}

/* ---- Did you mean ---- */

/* Keys longer than this get no suggestion (the longest property has 38 characters). */
#define SUGGEST_KEY_MAX 64

/*
 * Optimal string alignment distance (Levenshtein plus transposition of two
 * neighbours), three rows of fixed size. `a` is folded (case-insensitive,
 * '_' and '-' read as '.'), so "Bootstrap_Servers" is 0 from
 * "bootstrap.servers" (the names in `b` are lower case already).
 */
static char fold(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c == '_' || c == '-' ? '.' : c;
}

static unsigned osa_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    SP_ASSERT(alen <= SUGGEST_KEY_MAX);
    SP_ASSERT(blen <= SUGGEST_KEY_MAX);
    unsigned rows[3][SUGGEST_KEY_MAX + 1];
    unsigned *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= blen; j++)
        prev[j] = (unsigned)j;
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = (unsigned)i;
        for (size_t j = 1; j <= blen; j++) {
            unsigned cost = fold(a[i - 1]) == b[j - 1] ? 0 : 1;
            unsigned best = SP_MIN(prev[j] + 1, cur[j - 1] + 1);
            best = SP_MIN(best, prev[j - 1] + cost);
            if (i > 1 && j > 1 && fold(a[i - 1]) == b[j - 2] && fold(a[i - 2]) == b[j - 1])
                best = SP_MIN(best, prev2[j - 2] + 1);
            cur[j] = best;
        }
        unsigned *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[blen];
}

/*
 * The known name closest to `key`, or NULL when none is close: within a
 * third of the candidate's length (one edit in "acks", three in
 * "linger.ms"), so that unrelated short keys get no suggestion.
 */
static const char *suggest(const char *key)
{
    size_t klen = strlen(key);
    if (klen == 0 || klen > SUGGEST_KEY_MAX)
        return NULL;
    const char *best = NULL;
    unsigned best_distance = ~0u;
    for (size_t i = 0; i < SP_ARRAY_LEN(props); i++) {
        size_t nlen = strlen(props[i].name);
        unsigned d = osa_distance(key, klen, props[i].name, nlen);
        if (d < best_distance && 3 * d <= nlen) {
            best = props[i].name;
            best_distance = d;
        }
    }
    return best;
}

/* ---- Bootstrap servers ---- */

/*
 * Finds the index-th non-empty entry of a comma-separated list, trimmed.
 * Returns 1 and sets *start, *len, or 0 past the end.
 */
static int list_entry(const char *list, unsigned index, const char **start, size_t *len)
{
    const char *p = list;
    unsigned seen = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        const char *s = trim(p, &n);
        if (n > 0) {
            if (seen == index) {
                *start = s;
                *len = n;
                return 1;
            }
            seen++;
        }
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int host_char(int c, int bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    if (c == '-' || c == '.' || c == '_')
        return 1;
    /* An IPv6 literal: colons and a zone id after '%'. */
    return bracketed && (c == ':' || c == '%');
}

/*
 * Parses one entry, [PROTOCOL://]host:port or [PROTOCOL://][v6]:port. The
 * host characters are those of Java's Utils.getHost pattern. Returns 0,
 * -EINVAL with *why, or -ENAMETOOLONG.
 */
static int server_parse(const char *s, size_t n, char *host, size_t host_len, uint16_t *port,
                        const char **why)
{
    for (size_t i = 0; i + 2 < n; i++) {
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            s += i + 3;
            n -= i + 3;
            break;
        }
    }
    const char *h = s;
    size_t hn;
    const char *rest;
    int bracketed = n > 0 && s[0] == '[';
    if (bracketed) {
        const char *close = memchr(s, ']', n);
        if (close == NULL) {
            *why = "missing ']' after an IPv6 address";
            return -EINVAL;
        }
        h = s + 1;
        hn = (size_t)(close - h);
        rest = close + 1;
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':')
                colon = s + i;
        if (colon == NULL) {
            *why = "missing ':port'";
            return -EINVAL;
        }
        hn = (size_t)(colon - s);
        rest = colon;
    }
    size_t rest_len = n - (size_t)(rest - s);
    if (hn == 0) {
        *why = "empty host";
        return -EINVAL;
    }
    for (size_t i = 0; i < hn; i++) {
        if (!host_char((unsigned char)h[i], bracketed)) {
            *why = !bracketed && h[i] == ':' ? "an IPv6 address needs brackets: [address]:port"
                                             : "a character not allowed in a host name";
            return -EINVAL;
        }
    }
    if (rest_len < 2 || rest[0] != ':' || rest_len > 6) {
        *why = rest_len == 0 || rest[0] != ':' ? "missing ':port'" : "port not in 1..65535";
        return -EINVAL;
    }
    unsigned p = 0;
    for (size_t i = 1; i < rest_len; i++) {
        if (rest[i] < '0' || rest[i] > '9') {
            *why = "port not in 1..65535";
            return -EINVAL;
        }
        p = p * 10 + (unsigned)(rest[i] - '0');
    }
    if (p == 0 || p > 65535) {
        *why = "port not in 1..65535";
        return -EINVAL;
    }
    if (hn + 1 > host_len)
        return -ENAMETOOLONG;
    memcpy(host, h, hn);
    host[hn] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* Checks every entry of a servers list; 0 or -EINVAL with `why` naming the entry. */
static int servers_check(const char *list, char *why, size_t why_len)
{
    char host[256];
    const char *s;
    size_t n;
    for (unsigned i = 0; list_entry(list, i, &s, &n); i++) {
        uint16_t port;
        const char *problem = "host longer than 255 bytes";
        if (server_parse(s, n, host, sizeof(host), &port, &problem) != 0) {
            err_set(why, why_len, "entry '%.*s%s': %s", ECHO(s, n), problem);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- Parsing one value ---- */

/* group.instance.id as JoinGroupRequest.validateGroupInstanceId wants it. */
static const char *instance_id_problem(const char *s, size_t n)
{
    if (n > SP_KAFKA_CONFIG_INSTANCE_ID_LEN_MAX)
        return "longer than 249 characters";
    if (span_eq(s, n, ".") || span_eq(s, n, ".."))
        return "cannot be '.' or '..'";
    for (size_t i = 0; i < n; i++)
        if (!host_char((unsigned char)s[i], 0))
            return "only ASCII letters, digits, '.', '_' and '-' are allowed";
    return NULL;
}

static int set_string(struct sp_kafka_config *config, const struct prop *prop, const char *v,
                      size_t n, char *err, size_t err_len)
{
    if (n == 0 && (prop->flags & PROP_NONEMPTY)) {
        err_set(err, err_len, "invalid value '' for %s: must be non-empty", prop->name);
        return -EINVAL;
    }
    if (n + 1 > prop->size) {
        err_set(err, err_len, "invalid value for %s: %zu bytes, at most %u", prop->name, n,
                (unsigned)(prop->size - 1));
        return -EINVAL;
    }
    const char *problem = (prop->flags & PROP_INSTANCE_ID) ? instance_id_problem(v, n) : NULL;
    if (problem != NULL) {
        err_set(err, err_len, "invalid value '%.*s%s' for %s: %s", ECHO(v, n), prop->name, problem);
        return -EINVAL;
    }
    if (prop->kind == PROP_SERVERS) {
        char list[SP_KAFKA_CONFIG_SERVERS_MAX];
        memcpy(list, v, n);
        list[n] = '\0';
        char why[256];
        if (servers_check(list, why, sizeof(why)) != 0) {
            err_set(err, err_len, "invalid value '%.*s%s' for %s: %s", ECHO(v, n), prop->name, why);
            return -EINVAL;
        }
    }
    char *field = (char *)config + prop->offset;
    memcpy(field, v, n);
    field[n] = '\0';
    return 0;
}

/* "range,cooperative-sticky": each entry known, none twice, at least one. */
static int set_assignors(struct sp_kafka_config *config, const struct prop *prop, const char *v,
                         size_t n, char *err, size_t err_len)
{
    enum sp_kafka_assignor_id list[SP_KAFKA_CONFIG_ASSIGNORS_MAX];
    unsigned count = 0;
    const char *p = v, *end = v + n;
    while (n > 0) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = (size_t)((comma != NULL ? comma : end) - p);
        const char *s = trim(p, &len);
        const struct prop_name *match = NULL;
        for (const struct prop_name *nm = assignor_names; nm->name != NULL; nm++)
            if (span_eq(s, len, nm->name))
                match = nm;
        if (match == NULL) {
            err_set(err, err_len,
                    "invalid value '%.*s%s' for %s: '%.*s%s' is not one of range, roundrobin, "
                    "cooperative-sticky",
                    ECHO(v, n), prop->name, ECHO(s, len));
            return -EINVAL;
        }
        for (unsigned i = 0; i < count; i++) {
            if (list[i] == (enum sp_kafka_assignor_id)match->value) {
                err_set(err, err_len, "invalid value '%.*s%s' for %s: '%.*s%s' is listed twice",
                        ECHO(v, n), prop->name, ECHO(s, len));
                return -EINVAL;
            }
        }
        /* Three distinct assignors exist, so a fourth entry is a duplicate. */
        SP_ASSERT(count < SP_KAFKA_CONFIG_ASSIGNORS_MAX);
        list[count++] = (enum sp_kafka_assignor_id)match->value;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (count == 0) {
        err_set(err, err_len,
                "invalid value '' for %s: expected a list of range, roundrobin, "
                "cooperative-sticky",
                prop->name);
        return -EINVAL;
    }
    memcpy(config->assignors, list, count * sizeof(list[0]));
    config->assignor_count = count;
    return 0;
}

/* Parses the trimmed value into the property's field; 0 or -EINVAL. */
static int set_value(struct sp_kafka_config *config, const struct prop *prop, const char *v,
                     size_t n, char *err, size_t err_len)
{
    char *field = (char *)config + prop->offset;
    int64_t x;
    switch (prop->kind) {
    case PROP_I32:
    case PROP_I64:
        if (parse_int64(v, n, &x) != 0 || x < prop->min || x > prop->max) {
            err_set(err, err_len,
                    "invalid value '%.*s%s' for %s: expected an integer in [%lld, %lld]",
                    ECHO(v, n), prop->name, (long long)prop->min, (long long)prop->max);
            return -EINVAL;
        }
        if (prop->kind == PROP_I32) {
            int32_t x32 = (int32_t)x;
            memcpy(field, &x32, sizeof(x32));
        } else {
            memcpy(field, &x, sizeof(x));
        }
        return 0;
    case PROP_BOOL: {
        /* Java's ConfigDef compares ignoring case. */
        bool b = span_eq_nocase(v, n, "true");
        if (!b && !span_eq_nocase(v, n, "false")) {
            err_set(err, err_len, "invalid value '%.*s%s' for %s: expected true or false",
                    ECHO(v, n), prop->name);
            return -EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case PROP_ENUM:
        for (const struct prop_name *nm = prop->names; nm->name != NULL; nm++) {
            if (span_eq(v, n, nm->name)) {
                memcpy(field, &nm->value, sizeof(nm->value));
                return 0;
            }
        }
        err_set(err, err_len, "invalid value '%.*s%s' for %s: expected one of %s", ECHO(v, n),
                prop->name, prop->allowed);
        return -EINVAL;
    case PROP_STR:
    case PROP_SERVERS:
        return set_string(config, prop, v, n, err, err_len);
    case PROP_ASSIGNORS:
        return set_assignors(config, prop, v, n, err, err_len);
    default:
        SP_ASSERT(prop->kind <= PROP_ASSIGNORS);
        return -EINVAL;
    }
}

/* ---- Public: init and set ---- */

void sp_kafka_config_init(struct sp_kafka_config *config)
{
    SP_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    for (size_t i = 0; i < SP_ARRAY_LEN(props); i++) {
        const struct prop *prop = &props[i];
        if (prop->flags & PROP_ALIAS)
            continue;
        SP_ASSERT(prop->id == i); /* rows in prop_id order: set_mask bit = row */
        /* Strings default to "" (memset), which transactional.id could not be set to. */
        if (prop->kind == PROP_STR)
            continue;
        size_t n = strlen(prop->default_value);
        int rc = set_value(config, prop, prop->default_value, n, NULL, 0);
        SP_ASSERT(rc == 0);
    }
    config->set_mask = 0;
}

int sp_kafka_config_set(struct sp_kafka_config *config, const char *key, const char *value,
                        char *err, size_t err_len)
{
    SP_ASSERT(config != NULL);
    SP_ASSERT(key != NULL);
    SP_ASSERT(value != NULL);
    SP_ASSERT(err != NULL || err_len == 0);
    if (err_len > 0)
        err[0] = '\0';
    const struct prop *prop = prop_find(key);
    if (prop == NULL) {
        const char *near = suggest(key);
        if (near != NULL)
            err_set(err, err_len, "unknown property '%s' (did you mean '%s'?)", key, near);
        else
            err_set(err, err_len, "unknown property '%s'", key);
        return -ENOENT;
    }
    size_t n = strlen(value);
    const char *v = trim(value, &n);
    int rc = set_value(config, prop, v, n, err, err_len);
    if (rc == 0)
        config->set_mask |= UINT64_C(1) << prop->id;
    return rc;
}

/* ---- .properties files ---- */

struct props_reader {
    FILE *file;
    unsigned line; /* natural line number of the next character */
};

static int props_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\f';
}

/* Consumes a line terminator whose first byte was `c` (\n, \r or \r\n). */
static void props_eol(struct props_reader *r, int c)
{
    if (c == '\r') {
        int next = getc(r->file);
        if (next != '\n' && next != EOF)
            ungetc(next, r->file);
    }
    r->line++;
}

static int props_skip_blanks(struct props_reader *r)
{
    int c;
    do
        c = getc(r->file);
    while (props_blank(c));
    return c;
}

/*
 * Reads one logical line as java.util.Properties' LineReader does: blank
 * and comment lines are skipped, leading whitespace is dropped, an odd run
 * of backslashes before the end of a line joins the next line (leading
 * whitespace dropped), escapes are left for props_unescape. Returns 1 with
 * the line in buf[0..*len) and its first line number in *first, 0 at the
 * end of the file, -E2BIG when it does not fit, -EILSEQ on a NUL byte.
 */
static int props_read_line(struct props_reader *r, char *buf, size_t cap, size_t *len,
                           unsigned *first)
{
    for (;;) {
        int c = props_skip_blanks(r);
        if (c == EOF)
            return 0;
        if (c == '\n' || c == '\r') {
            props_eol(r, c);
            continue;
        }
        *first = r->line;
        if (c == '#' || c == '!') {
            /* A comment runs to the end of its line; a backslash does not continue it. */
            while (c != EOF && c != '\n' && c != '\r')
                c = getc(r->file);
            if (c != EOF)
                props_eol(r, c);
            continue;
        }
        size_t n = 0;
        int backslash = 0;
        for (;;) {
            if (c == EOF)
                break;
            if (c == '\n' || c == '\r') {
                props_eol(r, c);
                if (!backslash)
                    break;
                n--; /* the backslash that continued the line */
                backslash = 0;
                c = props_skip_blanks(r);
                continue;
            }
            if (c == '\0')
                return -EILSEQ;
            if (n + 1 >= cap)
                return -E2BIG;
            buf[n++] = (char)c;
            backslash = c == '\\' ? !backslash : 0;
            c = getc(r->file);
        }
        if (backslash)
            n--; /* a backslash at the very end continues nothing */
        *len = n;
        return 1;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u" at in[*i]; -1 when malformed. */
static int32_t props_u16(const char *in, size_t len, size_t *i)
{
    if (len - *i < 4)
        return -1;
    int32_t v = 0;
    for (unsigned k = 0; k < 4; k++) {
        int h = hex_value(in[*i + k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    *i += 4;
    return v;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * A \u escape (and its low surrogate when it is a high one) as UTF-8.
 * Returns the bytes written or -1 with *why.
 */
static int props_unicode(const char *in, size_t len, size_t *i, char *out, const char **why)
{
    int32_t u = props_u16(in, len, i);
    if (u < 0) {
        *why = "malformed \\uxxxx encoding";
        return -1;
    }
    uint32_t cp = (uint32_t)u;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int32_t lo = -1;
        if (len - *i >= 2 && in[*i] == '\\' && in[*i + 1] == 'u') {
            *i += 2;
            lo = props_u16(in, len, i);
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
            *why = "a \\u high surrogate not followed by a \\u low surrogate";
            return -1;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        *why = "a \\u low surrogate without its high surrogate";
        return -1;
    } else if (cp == 0) {
        *why = "\\u0000 is not allowed";
        return -1;
    }
    return (int)utf8_put(out, cp);
}

/*
 * Java's Properties.loadConvert: \t \n \r \f, \uXXXX (to UTF-8 here) and
 * \c for any other c. The output is never longer than the input, so
 * `out` needs len + 1 bytes. Returns 0 or -EINVAL with *why.
 */
static int props_unescape(const char *in, size_t len, char *out, const char **why)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char c = in[i++];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        if (i == len)
            break; /* cannot happen after props_read_line; dropped like Java */
        c = in[i++];
        switch (c) {
        case 't':
            out[o++] = '\t';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'u': {
            int w = props_unicode(in, len, &i, out + o, why);
            if (w < 0)
                return -EINVAL;
            o += (size_t)w;
            break;
        }
        default:
            out[o++] = c;
            break;
        }
    }
    out[o] = '\0';
    return 0;
}

/*
 * Splits a logical line into key and value as Properties.load0 does: the
 * key ends at the first unescaped '=', ':' or blank; blanks, then one '='
 * or ':', then blanks separate it from the value.
 */
static void props_split(const char *line, size_t len, size_t *key_len, size_t *value_start)
{
    size_t k = 0, v = len;
    int has_sep = 0, backslash = 0;
    for (; k < len; k++) {
        char c = line[k];
        if (!backslash && (c == '=' || c == ':')) {
            v = k + 1;
            has_sep = 1;
            break;
        }
        if (!backslash && props_blank(c)) {
            v = k + 1;
            break;
        }
        backslash = c == '\\' ? !backslash : 0;
    }
    for (; v < len; v++) {
        char c = line[v];
        if (props_blank(c))
            continue;
        if (!has_sep && (c == '=' || c == ':')) {
            has_sep = 1;
            continue;
        }
        break;
    }
    *key_len = k;
    *value_start = v;
}

/* Buffers of the file reader: one logical line, its key and its value. */
struct props_bufs {
    char line[SP_KAFKA_CONFIG_LINE_MAX];
    char key[SP_KAFKA_CONFIG_LINE_MAX];
    char value[SP_KAFKA_CONFIG_LINE_MAX];
    char why[512];
};

/* Applies one logical line; 0 or -EINVAL with b->why. */
static int props_apply(struct sp_kafka_config *config, struct props_bufs *b, size_t len)
{
    size_t key_len, value_start;
    props_split(b->line, len, &key_len, &value_start);
    const char *why = NULL;
    if (props_unescape(b->line, key_len, b->key, &why) != 0 ||
        props_unescape(b->line + value_start, len - value_start, b->value, &why) != 0) {
        snprintf(b->why, sizeof(b->why), "%s", why);
        return -EINVAL;
    }
    int rc = sp_kafka_config_set(config, b->key, b->value, b->why, sizeof(b->why));
    return rc == 0 ? 0 : -EINVAL;
}

static int props_load(struct sp_kafka_config *config, struct props_reader *r, struct props_bufs *b,
                      unsigned *line)
{
    for (;;) {
        size_t len = 0;
        int rc = props_read_line(r, b->line, sizeof(b->line), &len, line);
        if (rc == 0)
            return ferror(r->file) ? -EIO : 0;
        if (rc == -E2BIG) {
            snprintf(b->why, sizeof(b->why), "line longer than %d bytes",
                     SP_KAFKA_CONFIG_LINE_MAX - 1);
            return -EINVAL;
        }
        if (rc == -EILSEQ) {
            snprintf(b->why, sizeof(b->why), "NUL byte in the line");
            return -EINVAL;
        }
        if (props_apply(config, b, len) != 0)
            return -EINVAL;
    }
}

int sp_kafka_config_load_file(struct sp_kafka_config *config, const char *path, char *err,
                              size_t err_len)
{
    SP_ASSERT(config != NULL);
    SP_ASSERT(path != NULL);
    SP_ASSERT(err != NULL || err_len == 0);
    if (err_len > 0)
        err[0] = '\0';
    struct props_reader r = {.file = fopen(path, "rb"), .line = 1};
    if (r.file == NULL) {
        int e = errno;
        err_set(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    /* About 16 KiB of stack: start-up code, never on a reactor's hot path. */
    struct props_bufs bufs;
    struct sp_kafka_config copy = *config;
    unsigned line = 0;
    int rc = props_load(&copy, &r, &bufs, &line);
    fclose(r.file);
    if (rc == -EIO) {
        err_set(err, err_len, "%s: read error", path);
        return rc;
    }
    if (rc != 0) {
        err_set(err, err_len, "%s:%u: %s", path, line, bufs.why);
        return rc;
    }
    *config = copy;
    return 0;
}

/* ---- Validation and effective values ---- */

static int prop_set(const struct sp_kafka_config *config, enum prop_id id)
{
    return (config->set_mask >> id) & 1;
}

/* The producer's rules (ProducerConfig.postProcessAndValidateIdempotenceConfigs). */
static int validate_idempotence(const struct sp_kafka_config *config, char *err, size_t err_len)
{
    int explicit = prop_set(config, P_ENABLE_IDEMPOTENCE);
    if (config->enable_idempotence) {
        if (config->retries == 0 && explicit) {
            err_set(err, err_len,
                    "Must set retries to non-zero when using the idempotent producer.");
            return -EINVAL;
        }
        if (config->acks != -1 && explicit) {
            err_set(err, err_len,
                    "Must set acks to all in order to use the idempotent producer. Otherwise "
                    "we cannot guarantee idempotence.");
            return -EINVAL;
        }
        if (config->max_in_flight_requests_per_connection >
            SP_KAFKA_CONFIG_IDEMPOTENT_IN_FLIGHT_MAX) {
            err_set(err, err_len,
                    "To use the idempotent producer, max.in.flight.requests.per.connection "
                    "must be set to at most 5. Current value is %d.",
                    (int)config->max_in_flight_requests_per_connection);
            return -EINVAL;
        }
    }
    if (config->transactional_id[0] != '\0' && !sp_kafka_config_idempotent(config)) {
        err_set(err, err_len, "Cannot set a transactional.id without also enabling idempotence.");
        return -EINVAL;
    }
    return 0;
}

int sp_kafka_config_validate(const struct sp_kafka_config *config, char *err, size_t err_len)
{
    SP_ASSERT(config != NULL);
    SP_ASSERT(err != NULL || err_len == 0);
    if (err_len > 0)
        err[0] = '\0';
    const char *s;
    size_t n;
    if (!list_entry(config->bootstrap_servers, 0, &s, &n)) {
        err_set(err, err_len, "No bootstrap urls given in bootstrap.servers");
        return -EINVAL;
    }
    char why[256];
    if (servers_check(config->bootstrap_servers, why, sizeof(why)) != 0) {
        err_set(err, err_len, "Invalid url in bootstrap.servers: %s", why);
        return -EINVAL;
    }
    if (validate_idempotence(config, err, err_len) != 0)
        return -EINVAL;
    int64_t linger_request_ms = SP_MIN(config->linger_ms, INT32_MAX) + config->request_timeout_ms;
    if (prop_set(config, P_DELIVERY_TIMEOUT_MS) &&
        config->delivery_timeout_ms < SP_MIN(linger_request_ms, INT32_MAX)) {
        err_set(err, err_len,
                "delivery.timeout.ms should be equal to or larger than linger.ms + "
                "request.timeout.ms");
        return -EINVAL;
    }
    if (config->group_id[0] == '\0' && prop_set(config, P_ENABLE_AUTO_COMMIT) &&
        config->enable_auto_commit) {
        err_set(err, err_len,
                "enable.auto.commit cannot be set to true when default group id (null) is used.");
        return -EINVAL;
    }
    if (config->group_id[0] != '\0' &&
        config->heartbeat_interval_ms >= config->session_timeout_ms) {
        err_set(err, err_len,
                "Heartbeat must be set lower than the session timeout: heartbeat.interval.ms "
                "is %d, session.timeout.ms %d",
                (int)config->heartbeat_interval_ms, (int)config->session_timeout_ms);
        return -EINVAL;
    }
    return 0;
}

int sp_kafka_config_bootstrap(const struct sp_kafka_config *config, unsigned index, char *host,
                              size_t host_len, uint16_t *port)
{
    SP_ASSERT(config != NULL);
    SP_ASSERT(host != NULL);
    SP_ASSERT(host_len > 0);
    SP_ASSERT(port != NULL);
    const char *s;
    size_t n;
    if (!list_entry(config->bootstrap_servers, index, &s, &n))
        return -ENOENT;
    const char *why = NULL;
    return server_parse(s, n, host, host_len, port, &why);
}

bool sp_kafka_config_idempotent(const struct sp_kafka_config *config)
{
    SP_ASSERT(config != NULL);
    if (!config->enable_idempotence)
        return false;
    if (prop_set(config, P_ENABLE_IDEMPOTENCE))
        return true;
    return config->retries != 0 && config->acks == -1;
}

int32_t sp_kafka_config_delivery_timeout_ms(const struct sp_kafka_config *config)
{
    SP_ASSERT(config != NULL);
    int64_t floor_ms = SP_MIN(config->linger_ms, INT32_MAX) + config->request_timeout_ms;
    floor_ms = SP_MIN(floor_ms, INT32_MAX);
    if (prop_set(config, P_DELIVERY_TIMEOUT_MS) || config->delivery_timeout_ms >= floor_ms)
        return config->delivery_timeout_ms;
    return (int32_t)floor_ms;
}

bool sp_kafka_config_auto_commit(const struct sp_kafka_config *config)
{
    SP_ASSERT(config != NULL);
    return config->enable_auto_commit && config->group_id[0] != '\0';
}
