/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Broker connections on a real runtime: against librdkafka's mock cluster,
 * ApiVersions negotiation (including its error-35 answer to v3) and a
 * Metadata round trip (against spate broker, SPATE_PEER=spate: v3 and v12
 * at once); against a hostile peer written here (a loopback
 * server thread), garbage, a truncated frame followed by a close, and
 * silence each take the connection down with the right error, every
 * outstanding request fails once, and the connection comes back by itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "client_test.h"

#include "mock_peer.h"
#include "sp_kafka_conn.h"
#include "sp_runtime.h"

/* ---- Against the mock cluster ---- */

struct mock_case {
    struct mock_peer mock;
    struct sp_kafka_conn conn;
    int16_t metadata_version;
    int16_t api_versions_version;
    int metadata_err;
    int32_t partitions;
    bool topic_found;
};

static void mock_closed_check(struct sp_timer *timer, void *ctx);
static struct sp_timer close_timer;

static void metadata_done(struct sp_kafka_conn *conn, int err, const void *body, int16_t version,
                          void *ctx)
{
    struct mock_case *m = ctx;
    m->metadata_err = err;
    m->metadata_version = version;
    if (err == 0) {
        const struct sp_kafka_metadata_response *r = body;
        for (int32_t i = 0; i < r->topics_count; i++) {
            if (sp_kstr_eq(r->topics[i].name, "events")) {
                m->topic_found = true;
                m->partitions = r->topics[i].partitions_count;
            }
        }
    }
    sp_kafka_conn_close(conn);
    sp_timer_init(&close_timer, mock_closed_check, m);
    sp_shard_timer_arm(conn->shard, &close_timer, sp_now_ns());
}

static void mock_closed_check(struct sp_timer *timer, void *ctx)
{
    struct mock_case *m = ctx;
    if (!sp_kafka_conn_idle(&m->conn)) {
        sp_shard_timer_arm(m->conn.shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    sp_kafka_conn_deinit(&m->conn);
    sp_runtime_stop(m->conn.shard->runtime);
}

static void mock_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx)
{
    struct mock_case *m = ctx;
    (void)err;
    if (!up)
        return;
    m->api_versions_version = conn->api_versions_version;
    struct sp_kafka_metadata_request req;
    sp_kafka_metadata_request_init(&req);
    struct sp_kafka_metadata_request_metadata_request_topic topic;
    sp_kafka_metadata_request_metadata_request_topic_init(&topic);
    topic.name = SP_KSTR("events");
    req.topics = &topic;
    req.topics_count = 1;
    int ret = sp_kafka_conn_send(conn, 3, -1, &req, metadata_done, m);
    SP_ASSERT(ret == 0);
}

static void mock_start(struct sp_shard *shard, void *ctx)
{
    struct mock_case *m = ctx;
    struct sp_kafka_conn_config config;
    sp_kafka_conn_config_default(&config);
    int ret =
        sp_kafka_conn_init(&m->conn, shard, &config, m->mock.host, m->mock.port, -1, mock_state, m);
    SP_ASSERT(ret == 0);
    sp_kafka_conn_connect(&m->conn);
}

static void test_mock_negotiates_and_answers_metadata(void **state)
{
    (void)state;
    static struct mock_case m;
    memset(&m, 0, sizeof(m));
    const char *args[] = {"--topic", "events:6", NULL};
    assert_int_equal(mock_peer_start(&m.mock, args), 0);
    client_test_run(mock_start, &m);
    mock_peer_stop(&m.mock);
    assert_int_equal(m.metadata_err, 0);
    assert_true(m.topic_found);
    assert_int_equal(m.partitions, 6);
    if (mock_peer_is_spate()) {
        /* spate broker serves ApiVersions v3 and Metadata v12: no fallback. */
        assert_int_equal(m.api_versions_version, 3);
        assert_int_equal(m.metadata_version, 12);
    } else {
        /* The mock knows ApiVersions up to v2 and Metadata up to v2 or so:
         * spate asked v3, got error 35 and settled lower. */
        assert_true(m.api_versions_version < 3);
        assert_true(m.metadata_version >= 0 && m.metadata_version < 12);
    }
}

/* ---- Against a hostile peer ---- */

enum behaviour { GARBAGE, TRUNCATE_CLOSE, SILENT, GOOD };

struct hostile {
    int listen_fd;
    uint16_t port;
    enum behaviour script[4];
    unsigned script_len;
    /* Shard side. */
    struct sp_kafka_conn conn;
    int downs[4];
    unsigned down_count;
    unsigned up_count;
    int request_errors[4];
    unsigned request_error_count;
};

/* Reads one request frame; returns its correlation id, or -1. */
static int32_t read_request(int fd)
{
    uint8_t size_buf[4];
    if (recv(fd, size_buf, 4, MSG_WAITALL) != 4)
        return -1;
    uint32_t size = sp_kload32(size_buf);
    static uint8_t body[65536];
    if (size > sizeof(body) || recv(fd, body, size, MSG_WAITALL) != (ssize_t)size)
        return -1;
    return (int32_t)sp_kload32(body + 4);
}

static void answer_api_versions(int fd, int32_t correlation)
{
    struct sp_kafka_api_versions_response r;
    sp_kafka_api_versions_response_init(&r);
    struct sp_kafka_api_versions_response_api_version keys[2];
    sp_kafka_api_versions_response_api_version_init(&keys[0]);
    keys[0].api_key = 18;
    keys[0].max_version = 3;
    sp_kafka_api_versions_response_api_version_init(&keys[1]);
    keys[1].api_key = 3;
    keys[1].max_version = 12;
    r.api_keys = keys;
    r.api_keys_count = 2;
    uint8_t out[512];
    size_t size = sp_kafka_response_frame_size(18, 3, &r);
    struct sp_kwriter w;
    sp_kwriter_init(&w, out, sizeof(out));
    SP_ASSERT(sp_kafka_response_encode(&w, 18, 3, correlation, &r) == 0);
    SP_ASSERT(send(fd, out, size, MSG_NOSIGNAL) == (ssize_t)size);
}

static void *hostile_server(void *arg)
{
    struct hostile *h = arg;
    for (unsigned i = 0; i < h->script_len; i++) {
        int fd = accept(h->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        int32_t correlation = read_request(fd);
        static const uint8_t garbage[] = {0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
        static const uint8_t half[] = {0, 0, 0, 40, 0, 0, 0, 1, 0};
        switch (h->script[i]) {
        case GARBAGE: /* a whole frame answering a correlation id never used */
            (void)!send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL);
            break;
        case TRUNCATE_CLOSE:
            (void)!send(fd, half, sizeof(half), MSG_NOSIGNAL);
            break;
        case SILENT: {
            char sink[256];
            while (recv(fd, sink, sizeof(sink), 0) > 0)
                ; /* until the client gives up and closes */
            break;
        }
        case GOOD:
            answer_api_versions(fd, correlation);
            /* Then answer nothing more; the client closes. */
            char sink[256];
            while (recv(fd, sink, sizeof(sink), 0) > 0)
                ;
            break;
        }
        close(fd);
    }
    return NULL;
}

static struct sp_timer hostile_close_timer;

static void hostile_closed_check(struct sp_timer *timer, void *ctx)
{
    struct hostile *h = ctx;
    if (!sp_kafka_conn_idle(&h->conn)) {
        sp_shard_timer_arm(h->conn.shard, timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    sp_kafka_conn_deinit(&h->conn);
    sp_runtime_stop(h->conn.shard->runtime);
}

static void hostile_state(struct sp_kafka_conn *conn, bool up, int err, void *ctx)
{
    struct hostile *h = ctx;
    if (!up) {
        if (h->down_count < SP_ARRAY_LEN(h->downs))
            h->downs[h->down_count++] = err;
        /* A fourth failure: the script is used up and nobody will accept
         * another connection; end here (the checks say what went wrong). */
        if (h->down_count < SP_ARRAY_LEN(h->downs))
            return;
    } else {
        h->up_count++;
        assert_int_equal(sp_kafka_conn_version(conn, 3), 12);
    }
    sp_kafka_conn_close(conn);
    sp_timer_init(&hostile_close_timer, hostile_closed_check, h);
    sp_shard_timer_arm(conn->shard, &hostile_close_timer, sp_now_ns());
}

static void hostile_start(struct sp_shard *shard, void *ctx)
{
    struct hostile *h = ctx;
    struct sp_kafka_conn_config config;
    sp_kafka_conn_config_default(&config);
    /* The silent step waits this out; the others are answered at once, but
     * a loaded machine may take a while to run the server's thread. */
    config.request_timeout_ns = 2 * SP_NSEC_PER_SEC;
    config.reconnect_backoff_ns = 5 * SP_NSEC_PER_MSEC;
    config.reconnect_backoff_max_ns = 20 * SP_NSEC_PER_MSEC;
    int ret =
        sp_kafka_conn_init(&h->conn, shard, &config, "127.0.0.1", h->port, 1, hostile_state, h);
    SP_ASSERT(ret == 0);
    sp_kafka_conn_connect(&h->conn);
}

static void test_hostile_peer_drops_and_reconnects(void **state)
{
    (void)state;
    static struct hostile h;
    memset(&h, 0, sizeof(h));
    h.listen_fd = sp_tcp_listen("127.0.0.1", 0, 8, &h.port);
    assert_true(h.listen_fd >= 0);
    h.script[0] = GARBAGE;
    h.script[1] = TRUNCATE_CLOSE;
    h.script[2] = SILENT;
    h.script[3] = GOOD;
    h.script_len = 4;
    pthread_t server;
    assert_int_equal(pthread_create(&server, NULL, hostile_server, &h), 0);
    client_test_run(hostile_start, &h);
    pthread_join(server, NULL);
    close(h.listen_fd);
    /* Three failures, each with its own reason, then a working connection. */
    assert_int_equal(h.down_count, 3);
    assert_int_equal(h.downs[0], -EBADMSG);
    assert_int_equal(h.downs[1], -ECONNRESET);
    assert_int_equal(h.downs[2], -ETIMEDOUT);
    assert_int_equal(h.up_count, 1);
    assert_int_equal(h.conn.reconnects, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mock_negotiates_and_answers_metadata),
        cmocka_unit_test(test_hostile_peer_drops_and_reconnects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
