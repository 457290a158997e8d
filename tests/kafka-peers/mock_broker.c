/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mock_broker: a Kafka cluster of one or more brokers from librdkafka's mock
 * (rdkafka_mock.h), speaking the real Kafka protocol on loopback TCP ports,
 * steered by tests through a line protocol on stdin. A test peer only: it
 * is built from tests/kafka-peers/meson.build (and by hand by
 * scripts/kafka_capture_fixtures.sh:
 *   cc -std=c11 -O1 -Wall -Wextra -o mock_broker mock_broker.c -lrdkafka)
 * and is never part of spate.
 *
 * Usage:
 *   mock_broker [--topic NAME:PARTITIONS]... [--brokers N]
 *
 * Creates each topic (replication factor 1), prints the bootstrap host:port
 * list on the first stdout line, flushes, then reads commands from stdin
 * until `quit`, EOF on stdin, or SIGTERM/SIGINT. Brokers have ids 1..N and
 * listen on 127.0.0.1, each on an ephemeral port the kernel chose, which is
 * also the address they advertise. Diagnostics go to stderr.
 *
 * Control protocol: one command per line, words separated by blanks. Every
 * line read gets exactly one reply line on stdout, flushed at once: "ok" or
 * "error <reason>" (an empty line too, so a script that sends one line and
 * reads one never hangs). Lines are at most 1023 bytes. API keys are numbers
 * (0 Produce, 1 Fetch, 3 Metadata...) or the names in api_keys[] below;
 * errors are Kafka/librdkafka error codes as numbers or names, with or
 * without the RD_KAFKA_RESP_ERR_ prefix (NOT_LEADER_FOR_PARTITION, 6,
 * _TRANSPORT: the broker drops the connection).
 *
 *   topic NAME PARTITIONS [REPLICATION]  create a topic (REPLICATION 1..N, default 1;
 *                                        librdkafka 2.0.2 ignores it: every partition
 *                                        gets min(3, N) replicas)
 *   push-errors API ERR[,ERR...]         the next requests of API, on any broker,
 *                                        fail with these errors, in order
 *   broker-push-errors ID API ERR[:RTT_MS][,...]
 *                                        the same on broker ID only, each answer
 *                                        delayed RTT_MS (ERR 0: no error, delay only);
 *                                        takes precedence over push-errors
 *   broker-down ID / broker-up ID        drop broker ID's connections and refuse
 *                                        new ones / accept again (no leader change)
 *   leader TOPIC PARTITION ID            make broker ID the partition's leader (-1:
 *                                        none; librdkafka creates a missing topic)
 *   coordinator group|txn KEY ID         the coordinator of group / transactional id KEY
 *   rtt ID MS                            delay every answer of broker ID by MS
 *   quit                                 reply ok and exit (as EOF on stdin does)
 *
 * Everything here runs on the main thread; the mock cluster's own thread
 * serves the clients. Each command is a call into rdkafka_mock.h, which
 * takes the cluster's lock or hands an op to that thread and waits for it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define TOPICS_MAX 64
#define BROKERS_MAX 16
#define LINE_BYTES_MAX 1024 /* with the newline */
#define WORDS_MAX 8
#define ERRORS_MAX 64 /* per push command */
#define REASON_BYTES 256

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--topic NAME:PARTITIONS]... [--brokers N]\n", argv0);
}

struct topic_arg {
    char name[256];
    int partitions;
};

static int parse_topic(const char *arg, struct topic_arg *out)
{
    const char *colon = strrchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
    if (len == 0 || len >= sizeof out->name)
        return -1;
    memcpy(out->name, arg, len);
    out->name[len] = '\0';
    out->partitions = 1;
    if (colon) {
        char *end = NULL;
        long n = strtol(colon + 1, &end, 10);
        if (*end != '\0' || n < 1 || n > 10000)
            return -1;
        out->partitions = (int)n;
    }
    return 0;
}

/* ---- Parsing command words ---- */

struct mock {
    rd_kafka_mock_cluster_t *cluster;
    int broker_count;
    char reason[REASON_BYTES]; /* why the current command failed */
};

/* Fills m->reason; returns -1, the handlers' failure. */
static int fail(struct mock *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct mock *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->reason, sizeof m->reason, fmt, ap);
    va_end(ap);
    return -1;
}

/* A whole decimal number in [min, max]: 0, or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"InitProducerId", 22},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

static int parse_api_key(struct mock *m, const char *s, int16_t *out)
{
    long v;
    if (parse_long(s, 0, INT16_MAX, &v) == 0) {
        *out = (int16_t)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof api_keys / sizeof api_keys[0]; i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    return fail(m, "bad api key '%s'", s);
}

/* An error code librdkafka knows, by number or by name. */
static int parse_error(struct mock *m, const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t count;
    rd_kafka_get_err_descs(&descs, &count);
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    if (strncasecmp(s, prefix, sizeof prefix - 1) == 0)
        s += sizeof prefix - 1;
    long v;
    bool numeric = parse_long(s, INT_MIN, INT_MAX, &v) == 0;
    for (size_t i = 0; i < count; i++) {
        if (descs[i].name == NULL)
            continue;
        if (numeric ? (long)descs[i].code == v : strcasecmp(s, descs[i].name) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return fail(m, "unknown error '%s'", s);
}

static int parse_broker_id(struct mock *m, const char *s, bool all_allowed, int32_t *out)
{
    long v;
    if (parse_long(s, all_allowed ? -1 : 1, m->broker_count, &v) != 0 || v == 0)
        return fail(m, "bad broker id '%s' (1..%d%s)", s, m->broker_count,
                    all_allowed ? " or -1" : "");
    *out = (int32_t)v;
    return 0;
}

/* Maps librdkafka's answer to ok or a reason. */
static int check_err(struct mock *m, rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return fail(m, "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
}

/* ---- Commands ---- */

static int cmd_topic(struct mock *m, char **w, int n)
{
    long partitions = 0, replication = 1;
    if (parse_long(w[2], 1, 100000, &partitions) != 0)
        return fail(m, "bad partition count '%s'", w[2]);
    if (n > 3 && parse_long(w[3], 1, m->broker_count, &replication) != 0)
        return fail(m, "bad replication factor '%s' (1..%d)", w[3], m->broker_count);
    return check_err(
        m, rd_kafka_mock_topic_create(m->cluster, w[1], (int)partitions, (int)replication));
}

/*
 * Parses "ERR[:RTT_MS],..." into errs[] and rtts[] (rtts may be NULL: no
 * delays allowed). Returns the count, or -1.
 */
static int parse_error_list(struct mock *m, char *list, rd_kafka_resp_err_t *errs, int *rtts)
{
    int count = 0;
    char *save = NULL;
    for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (count == ERRORS_MAX)
            return fail(m, "more than %d errors", ERRORS_MAX);
        char *colon = strchr(item, ':');
        int rtt = 0;
        if (colon) {
            long v;
            *colon = '\0';
            if (!rtts)
                return fail(m, "no RTT allowed here ('%s:%s')", item, colon + 1);
            if (parse_long(colon + 1, 0, 600000, &v) != 0)
                return fail(m, "bad rtt '%s'", colon + 1);
            rtt = (int)v;
        }
        if (parse_error(m, item, &errs[count]) != 0)
            return -1;
        if (rtts)
            rtts[count] = rtt;
        count++;
    }
    if (count == 0)
        return fail(m, "no errors given");
    return count;
}

static int cmd_push_errors(struct mock *m, char **w, int n)
{
    (void)n;
    int16_t api = 0;
    rd_kafka_resp_err_t errs[ERRORS_MAX];
    if (parse_api_key(m, w[1], &api) != 0)
        return -1;
    int count = parse_error_list(m, w[2], errs, NULL);
    if (count < 0)
        return -1;
    rd_kafka_mock_push_request_errors_array(m->cluster, api, (size_t)count, errs);
    return 0;
}

/*
 * librdkafka 2.0.2 has only a variadic form of the per-broker push; one call
 * per entry appends to the same stack in the same order (the stack is a
 * FIFO that each call extends), so the list needs no va_list built at run
 * time. A failure part-way leaves the entries before it pushed; only an
 * unknown broker fails, and that fails on the first.
 */
static int cmd_broker_push_errors(struct mock *m, char **w, int n)
{
    (void)n;
    int32_t broker = 0;
    int16_t api = 0;
    rd_kafka_resp_err_t errs[ERRORS_MAX];
    int rtts[ERRORS_MAX];
    if (parse_broker_id(m, w[1], false, &broker) != 0 || parse_api_key(m, w[2], &api) != 0)
        return -1;
    int count = parse_error_list(m, w[3], errs, rtts);
    if (count < 0)
        return -1;
    for (int i = 0; i < count; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
            m->cluster, broker, api, 1, errs[i], rtts[i]);
        if (check_err(m, err) != 0)
            return -1;
    }
    return 0;
}

static int cmd_broker_down(struct mock *m, char **w, int n)
{
    (void)n;
    int32_t broker = 0;
    if (parse_broker_id(m, w[1], true, &broker) != 0)
        return -1;
    return check_err(m, rd_kafka_mock_broker_set_down(m->cluster, broker));
}

static int cmd_broker_up(struct mock *m, char **w, int n)
{
    (void)n;
    int32_t broker = 0;
    if (parse_broker_id(m, w[1], true, &broker) != 0)
        return -1;
    return check_err(m, rd_kafka_mock_broker_set_up(m->cluster, broker));
}

static int cmd_leader(struct mock *m, char **w, int n)
{
    (void)n;
    long partition = 0;
    int32_t broker = 0;
    if (parse_long(w[2], 0, INT32_MAX, &partition) != 0)
        return fail(m, "bad partition '%s'", w[2]);
    if (parse_broker_id(m, w[3], true, &broker) != 0)
        return -1;
    return check_err(
        m, rd_kafka_mock_partition_set_leader(m->cluster, w[1], (int32_t)partition, broker));
}

static int cmd_coordinator(struct mock *m, char **w, int n)
{
    (void)n;
    const char *type;
    int32_t broker = 0;
    if (strcmp(w[1], "group") == 0)
        type = "group";
    else if (strcmp(w[1], "txn") == 0 || strcmp(w[1], "transaction") == 0)
        type = "transaction";
    else
        return fail(m, "bad coordinator type '%s' (group or txn)", w[1]);
    if (parse_broker_id(m, w[3], false, &broker) != 0)
        return -1;
    return check_err(m, rd_kafka_mock_coordinator_set(m->cluster, type, w[2], broker));
}

static int cmd_rtt(struct mock *m, char **w, int n)
{
    (void)n;
    int32_t broker = 0;
    long ms = 0;
    if (parse_broker_id(m, w[1], true, &broker) != 0)
        return -1;
    if (parse_long(w[2], 0, 600000, &ms) != 0)
        return fail(m, "bad rtt '%s' (0..600000 ms)", w[2]);
    return check_err(m, rd_kafka_mock_broker_set_rtt(m->cluster, broker, (int)ms));
}

static int cmd_quit(struct mock *m, char **w, int n)
{
    (void)m;
    (void)w;
    (void)n;
    stop_requested = 1;
    return 0;
}

static const struct command {
    const char *name;
    int words_min; /* the command's name included */
    int words_max;
    int (*run)(struct mock *m, char **w, int n);
    const char *usage;
} commands[] = {
    {"topic", 3, 4, cmd_topic, "topic NAME PARTITIONS [REPLICATION]"},
    {"push-errors", 3, 3, cmd_push_errors, "push-errors API_KEY ERR[,ERR...]"},
    {"broker-push-errors", 4, 4, cmd_broker_push_errors,
     "broker-push-errors BROKER_ID API_KEY ERR[:RTT_MS][,...]"},
    {"broker-down", 2, 2, cmd_broker_down, "broker-down BROKER_ID"},
    {"broker-up", 2, 2, cmd_broker_up, "broker-up BROKER_ID"},
    {"leader", 4, 4, cmd_leader, "leader TOPIC PARTITION BROKER_ID"},
    {"coordinator", 4, 4, cmd_coordinator, "coordinator group|txn KEY BROKER_ID"},
    {"rtt", 3, 3, cmd_rtt, "rtt BROKER_ID MS"},
    {"quit", 1, 1, cmd_quit, "quit"},
};

/* Runs one command line (NUL-terminated, no newline) and writes its one reply. */
static void run_line(struct mock *m, char *line)
{
    char *w[WORDS_MAX + 1];
    int n = 0;
    char *save = NULL;
    int rc = -1;
    fprintf(stderr, "mock_broker: > %s\n", line);
    for (char *t = strtok_r(line, " \t\r", &save); t && n <= WORDS_MAX;
         t = strtok_r(NULL, " \t\r", &save))
        w[n++] = t;
    if (n == 0) {
        rc = fail(m, "empty line");
    } else if (n > WORDS_MAX) {
        rc = fail(m, "too many words");
    } else {
        rc = fail(m, "unknown command '%s'", w[0]);
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
            const struct command *c = &commands[i];
            if (strcmp(w[0], c->name) != 0)
                continue;
            if (n < c->words_min || n > c->words_max)
                rc = fail(m, "usage: %s", c->usage);
            else
                rc = c->run(m, w, n);
            break;
        }
    }
    if (rc == 0)
        printf("ok\n");
    else
        printf("error %s\n", m->reason);
    fflush(stdout);
    fprintf(stderr, "mock_broker: < %s%s\n", rc == 0 ? "ok" : "error ", rc == 0 ? "" : m->reason);
}

/* ---- Reading stdin ---- */

struct line_reader {
    char buf[LINE_BYTES_MAX];
    size_t len;
    bool discarding; /* inside a line that was too long: drop up to its newline */
};

/* Runs every whole line in the reader's buffer; keeps the start of the next one. */
static void run_lines(struct mock *m, struct line_reader *r)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(r->buf + start, '\n', r->len - start);
        if (!nl)
            break;
        *nl = '\0';
        if (r->discarding)
            r->discarding = false;
        else
            run_line(m, r->buf + start);
        start = (size_t)(nl - r->buf) + 1;
        if (stop_requested)
            return;
    }
    memmove(r->buf, r->buf + start, r->len - start);
    r->len -= start;
    if (r->len == sizeof r->buf) { /* no newline in a full buffer */
        if (!r->discarding) {
            fail(m, "line longer than %d bytes", LINE_BYTES_MAX - 1);
            printf("error %s\n", m->reason);
            fflush(stdout);
        }
        r->discarding = true;
        r->len = 0;
    }
}

/*
 * Serves commands until quit, EOF or a signal. poll() is interrupted by
 * the signal (no SA_RESTART), and its 1 s timeout covers a signal that
 * lands between the check and the call.
 */
static void serve(struct mock *m)
{
    struct line_reader reader = {.len = 0, .discarding = false};
    while (!stop_requested) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int ready = poll(&pfd, 1, 1000);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (ready == 0)
            continue;
        ssize_t got = read(0, reader.buf + reader.len, sizeof reader.buf - reader.len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            /* EOF (the parent went away) or a dead stdin. A last line without
             * its newline still runs: run_lines() left it shorter than the buffer. */
            if (got == 0 && reader.len > 0 && !reader.discarding) {
                reader.buf[reader.len] = '\0';
                run_line(m, reader.buf);
            }
            break;
        }
        reader.len += (size_t)got;
        run_lines(m, &reader);
    }
}

/* ---- Main ---- */

int main(int argc, char **argv)
{
    struct topic_arg topics[TOPICS_MAX];
    int ntopics = 0;
    int nbrokers = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            if (ntopics == TOPICS_MAX || parse_topic(argv[++i], &topics[ntopics]) != 0) {
                fprintf(stderr, "mock_broker: bad --topic '%s'\n", argv[i]);
                return 2;
            }
            ntopics++;
        } else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            nbrokers = atoi(argv[++i]);
            if (nbrokers < 1 || nbrokers > BROKERS_MAX) {
                fprintf(stderr, "mock_broker: bad --brokers '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(argv[0]);
            return 0;
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    /* The mock cluster needs an rd_kafka_t for book keeping; a producer with
     * a dummy config hosts it and never connects anywhere itself. */
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "mock_broker_host", errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mock_broker: conf: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "mock_broker: rd_kafka_new: %s\n", errstr);
        return 1;
    }

    struct mock m = {.cluster = rd_kafka_mock_cluster_new(rk, nbrokers), .broker_count = nbrokers};
    if (!m.cluster) {
        fprintf(stderr, "mock_broker: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }

    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(m.cluster, topics[i].name, topics[i].partitions, 1);
        if (err) {
            fprintf(stderr, "mock_broker: topic %s: %s\n", topics[i].name, rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(m.cluster);
            rd_kafka_destroy(rk);
            return 1;
        }
        fprintf(stderr, "mock_broker: topic %s partitions=%d\n", topics[i].name,
                topics[i].partitions);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(m.cluster));
    fflush(stdout);

    serve(&m);

    fprintf(stderr, "mock_broker: shutting down\n");
    rd_kafka_mock_cluster_destroy(m.cluster);
    rd_kafka_destroy(rk);
    return 0;
}
