/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mock_broker: a one-broker Kafka cluster from librdkafka's mock
 * (rdkafka_mock.h), speaking the real Kafka protocol on a loopback TCP port.
 * Used by scripts/kafka_capture_fixtures.sh to record the frames real clients
 * exchange with a broker.
 *
 * Build (no meson wiring yet):
 *   cc -std=c11 -O1 -Wall -Wextra -o build/mock_broker \
 *      tests/kafka-peers/mock_broker.c -lrdkafka
 *
 * Usage:
 *   mock_broker [--topic NAME:PARTITIONS]... [--brokers N]
 *
 * Creates each topic (replication factor 1), prints the bootstrap host:port
 * list on the first stdout line, flushes, then runs until SIGTERM/SIGINT or
 * EOF on stdin. Diagnostics go to stderr. The listener binds 127.0.0.1 on an
 * ephemeral port chosen by the kernel; the broker advertises that same
 * address in Metadata and FindCoordinator responses.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--topic NAME:PARTITIONS]... [--brokers N]\n", argv0);
}

struct topic_arg {
    char name[256];
    int partitions;
};

static int parse_topic(const char *arg, struct topic_arg *out) {
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

int main(int argc, char **argv) {
    struct topic_arg topics[MAX_TOPICS];
    int ntopics = 0;
    int nbrokers = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            if (ntopics == MAX_TOPICS || parse_topic(argv[++i], &topics[ntopics]) != 0) {
                fprintf(stderr, "mock_broker: bad --topic '%s'\n", argv[i]);
                return 2;
            }
            ntopics++;
        } else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            nbrokers = atoi(argv[++i]);
            if (nbrokers < 1 || nbrokers > 16) {
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

    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mcluster) {
        fprintf(stderr, "mock_broker: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }

    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mcluster, topics[i].name, topics[i].partitions, 1);
        if (err) {
            fprintf(stderr, "mock_broker: topic %s: %s\n", topics[i].name, rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mcluster);
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

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
    fflush(stdout);

    /* Wait for a signal or stdin EOF. poll() is interrupted by the signal
     * (no SA_RESTART); a closed or unreadable stdin ends the run too. */
    while (!stop_requested) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int n = poll(&pfd, 1, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            char buf[256];
            ssize_t r = read(0, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                break; /* EOF: the parent went away */
        }
    }

    fprintf(stderr, "mock_broker: shutting down\n");
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(rk);
    return 0;
}
