/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A broker written in the tests, for what librdkafka's mock cluster cannot
 * show: a thread accepts connections on a loopback port and serves each on
 * its own thread, decoding every request with spate's codec and handing it
 * to the test's `answer` function, which replies with Kafka's own response
 * structures at the version asked (crafted_send).
 */
#ifndef SP_TEST_CRAFTED_BROKER_H
#define SP_TEST_CRAFTED_BROKER_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_io.h"
#include "sp_kafka_frame.h"
#include "sp_kafka_wire.h"

struct crafted_broker;

/* Answers one decoded request on `fd`; false closes the connection. */
typedef bool crafted_answer_fn(struct crafted_broker *b, int fd,
                               const struct sp_kafka_request_frame *f);

#define CRAFTED_MAX_CONNS 64

struct crafted_broker {
    int listen_fd;
    uint16_t port;
    crafted_answer_fn *answer;
    void *ctx;
    pthread_t acceptor;
    /* Open connections, so that crafted_stop can end them and wait for
     * their threads: what those threads wrote is then the test's to read. */
    pthread_mutex_t conns_lock;
    pthread_cond_t conns_done;
    int conn_fds[CRAFTED_MAX_CONNS];
    unsigned conns;
};

struct crafted_conn {
    struct crafted_broker *b;
    int fd;
};

static inline void crafted_send(int fd, int16_t api_key, int16_t version, int32_t correlation,
                                const void *body)
{
    size_t size = sp_kafka_response_frame_size(api_key, version, body);
    uint8_t *out = malloc(size);
    SP_ASSERT(out != NULL);
    struct sp_kwriter w;
    sp_kwriter_init(&w, out, size);
    int enc = sp_kafka_response_encode(&w, api_key, version, correlation, body);
    if (enc != 0)
        fprintf(stderr, "crafted broker: encoding API %d v%d: %d\n", api_key, version, enc);
    SP_ASSERT(enc == 0);
    SP_ASSERT(send(fd, out, size, MSG_NOSIGNAL) == (ssize_t)size);
    free(out);
}

static inline void *crafted_serve(void *arg)
{
    struct crafted_conn *c = arg;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    void *arena_mem = malloc(cap);
    SP_ASSERT(buf != NULL && arena_mem != NULL);
    for (;;) {
        uint8_t size_buf[4];
        if (recv(c->fd, size_buf, 4, MSG_WAITALL) != 4)
            break;
        uint32_t size = sp_kload32(size_buf);
        if (size > cap || recv(c->fd, buf, size, MSG_WAITALL) != (ssize_t)size)
            break;
        struct sp_karena arena;
        sp_karena_init(&arena, arena_mem, cap);
        struct sp_kafka_request_frame f;
        const char *field = NULL;
        if (sp_kafka_request_decode(buf, size, &arena, &f, &field) != 0) {
            fprintf(stderr, "crafted broker: undecodable request (%s)\n", field ? field : "?");
            break;
        }
        if (!c->b->answer(c->b, c->fd, &f))
            break;
    }
    struct crafted_broker *b = c->b;
    pthread_mutex_lock(&b->conns_lock);
    for (unsigned i = 0; i < b->conns; i++) {
        if (b->conn_fds[i] == c->fd) {
            b->conn_fds[i] = b->conn_fds[--b->conns];
            break;
        }
    }
    close(c->fd); /* under the lock: crafted_stop never shuts down a reused number */
    pthread_cond_broadcast(&b->conns_done);
    pthread_mutex_unlock(&b->conns_lock);
    free(buf);
    free(arena_mem);
    free(c);
    return NULL;
}

static inline void *crafted_accept(void *arg)
{
    struct crafted_broker *b = arg;
    for (;;) {
        int fd = accept(b->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* the listener was shut down */
        struct crafted_conn *c = malloc(sizeof(*c));
        SP_ASSERT(c != NULL);
        *c = (struct crafted_conn){b, fd};
        pthread_mutex_lock(&b->conns_lock);
        SP_ASSERT(b->conns < CRAFTED_MAX_CONNS);
        b->conn_fds[b->conns++] = fd;
        pthread_mutex_unlock(&b->conns_lock);
        pthread_t t;
        SP_ASSERT(pthread_create(&t, NULL, crafted_serve, c) == 0);
        pthread_detach(t);
    }
}

static inline int crafted_start(struct crafted_broker *b, crafted_answer_fn *answer, void *ctx)
{
    b->answer = answer;
    b->ctx = ctx;
    b->conns = 0;
    pthread_mutex_init(&b->conns_lock, NULL);
    pthread_cond_init(&b->conns_done, NULL);
    b->listen_fd = sp_tcp_listen("127.0.0.1", 0, 16, &b->port);
    if (b->listen_fd < 0)
        return b->listen_fd;
    return -pthread_create(&b->acceptor, NULL, crafted_accept, b);
}

/* Stops accepting, ends every connection (a reply being sent still goes out:
 * only the reading side is shut) and waits for their threads to finish. */
static inline void crafted_stop(struct crafted_broker *b)
{
    shutdown(b->listen_fd, SHUT_RDWR);
    pthread_join(b->acceptor, NULL);
    close(b->listen_fd);
    pthread_mutex_lock(&b->conns_lock);
    for (unsigned i = 0; i < b->conns; i++)
        shutdown(b->conn_fds[i], SHUT_RD);
    while (b->conns > 0)
        pthread_cond_wait(&b->conns_done, &b->conns_lock);
    pthread_mutex_unlock(&b->conns_lock);
    pthread_mutex_destroy(&b->conns_lock);
    pthread_cond_destroy(&b->conns_done);
}

/* An ApiVersions answer listing `keys` as {api_key, max_version} pairs. */
static inline void crafted_api_versions(int fd, int16_t version, int32_t corr,
                                        const int16_t (*keys)[2], unsigned n)
{
    struct sp_kafka_api_versions_response_api_version list[32];
    SP_ASSERT(n <= 32);
    for (unsigned i = 0; i < n; i++) {
        sp_kafka_api_versions_response_api_version_init(&list[i]);
        list[i].api_key = keys[i][0];
        list[i].max_version = keys[i][1];
    }
    struct sp_kafka_api_versions_response r;
    sp_kafka_api_versions_response_init(&r);
    r.api_keys = list;
    r.api_keys_count = (int32_t)n;
    crafted_send(fd, 18, version, corr, &r);
}

/* A Metadata answer: node 1 at the broker's port is everything's leader and
 * the controller; topic "t" has `partitions`, any other is unknown. */
static inline void crafted_metadata(struct crafted_broker *b, int fd, int16_t version, int32_t corr,
                                    const struct sp_kafka_metadata_request *req, int32_t partitions)
{
    struct sp_kafka_metadata_response_metadata_response_broker broker;
    sp_kafka_metadata_response_metadata_response_broker_init(&broker);
    broker.node_id = 1;
    broker.host = sp_kstr_of("127.0.0.1");
    broker.port = b->port;
    struct sp_kafka_metadata_response_metadata_response_partition parts[16];
    SP_ASSERT(partitions <= 16);
    for (int i = 0; i < partitions; i++) {
        sp_kafka_metadata_response_metadata_response_partition_init(&parts[i]);
        parts[i].partition_index = i;
        parts[i].leader_id = 1;
        parts[i].leader_epoch = 5;
    }
    struct sp_kafka_metadata_response_metadata_response_topic topics[8];
    int32_t n = 0;
    for (int32_t i = 0; req->topics_count > 0 && i < req->topics_count && n < 8; i++, n++) {
        sp_kafka_metadata_response_metadata_response_topic_init(&topics[n]);
        topics[n].name = req->topics[i].name;
        if (sp_kstr_eq(req->topics[i].name, "t")) {
            topics[n].partitions = parts;
            topics[n].partitions_count = partitions;
        } else {
            topics[n].error_code = 3; /* UNKNOWN_TOPIC_OR_PARTITION */
        }
    }
    struct sp_kafka_metadata_response r;
    sp_kafka_metadata_response_init(&r);
    r.brokers = &broker;
    r.brokers_count = 1;
    r.controller_id = 1;
    r.topics = topics;
    r.topics_count = n;
    crafted_send(fd, 3, version, corr, &r);
}

#endif /* SP_TEST_CRAFTED_BROKER_H */
