/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Async I/O on the ring, with real files and real sockets: write, fsync,
 * read back and close a file (plain and registered buffers), an open that
 * fails with -ENOENT, a loopback TCP echo between two shards (accept,
 * connect, send, recv, orderly close) and a refused connection reported as
 * a result. Also run under ThreadSanitizer.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "rt_test.h"
#include "sp_io.h"

/* ---- Files ---- */

#define FILE_BYTES (64u * 1024u)
#define FIXED_OFFSET (1u << 20)
#define FIXED_BYTES 4096u

enum file_step {
    F_OPEN,
    F_WRITE,
    F_WRITE_FIXED,
    F_FSYNC,
    F_READ,
    F_READ_FIXED,
    F_CLOSE,
    F_MISSING,
    F_DONE
};

struct file_test {
    char path[64];
    int fd;
    enum file_step step;
    int failed_res; /* first unexpected result, 0 if none */
    enum file_step failed_step;
    int missing_res;
    struct sp_io_op op;
    unsigned char out[FILE_BYTES];
    unsigned char in[FILE_BYTES];
    unsigned char fixed[2][FIXED_BYTES]; /* registered: [0] written, [1] read into */
};

static void file_next(struct sp_io_op *op, int res, void *ctx);

static void file_fail(struct sp_shard *shard, struct file_test *t, int res)
{
    t->failed_res = res < 0 ? res : -EIO;
    t->failed_step = t->step;
    sp_runtime_stop(shard->runtime);
}

/* Issues the request of the current step. */
static void file_issue(struct sp_shard *shard, struct file_test *t)
{
    int ret = 0;
    switch (t->step) {
    case F_OPEN:
        ret = sp_io_open(shard, &t->op, t->path, O_CREAT | O_RDWR | O_TRUNC, 0600, file_next, t);
        break;
    case F_WRITE:
        ret = sp_io_write(shard, &t->op, t->fd, t->out, FILE_BYTES, 0, file_next, t);
        break;
    case F_WRITE_FIXED:
        ret = sp_io_write_fixed(shard, &t->op, t->fd, t->fixed[0], FIXED_BYTES, FIXED_OFFSET, 0,
                                file_next, t);
        break;
    case F_FSYNC:
        ret = sp_io_fsync(shard, &t->op, t->fd, false, file_next, t);
        break;
    case F_READ:
        ret = sp_io_read(shard, &t->op, t->fd, t->in, FILE_BYTES, 0, file_next, t);
        break;
    case F_READ_FIXED:
        ret = sp_io_read_fixed(shard, &t->op, t->fd, t->fixed[1], FIXED_BYTES, FIXED_OFFSET, 1,
                               file_next, t);
        break;
    case F_CLOSE:
        ret = sp_io_close(shard, &t->op, t->fd, file_next, t);
        break;
    case F_MISSING:
        ret = sp_io_open(shard, &t->op, "/nonexistent-dir-spate/file", O_RDONLY, 0, file_next, t);
        break;
    case F_DONE:
        sp_runtime_stop(shard->runtime);
        return;
    }
    if (ret < 0)
        file_fail(shard, t, ret);
}

static void file_next(struct sp_io_op *op, int res, void *ctx)
{
    struct file_test *t = ctx;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    bool ok = true;
    switch (t->step) {
    case F_OPEN:
        ok = res >= 0;
        t->fd = res;
        break;
    case F_WRITE:
        ok = res == (int)FILE_BYTES;
        break;
    case F_WRITE_FIXED:
        ok = res == (int)FIXED_BYTES;
        break;
    case F_FSYNC:
        ok = res == 0;
        break;
    case F_READ:
        ok = res == (int)FILE_BYTES;
        break;
    case F_READ_FIXED:
        ok = res == (int)FIXED_BYTES;
        break;
    case F_CLOSE:
        ok = res == 0;
        break;
    case F_MISSING:
        t->missing_res = res;
        break;
    case F_DONE:
        ok = false;
        break;
    }
    if (!ok) {
        file_fail(shard, t, res);
        return;
    }
    t->step++;
    file_issue(shard, t);
}

static void file_start(struct sp_shard *shard, void *ctx)
{
    struct file_test *t = ctx;
    struct iovec iov[2] = {{t->fixed[0], FIXED_BYTES}, {t->fixed[1], FIXED_BYTES}};
    int ret = sp_io_register_buffers(shard, iov, 2);
    if (ret < 0) {
        file_fail(shard, t, ret);
        return;
    }
    file_issue(shard, t);
}

static void test_file_write_fsync_read_close(void **state)
{
    (void)state;
    static struct file_test t;
    memset(&t, 0, sizeof(t));
    snprintf(t.path, sizeof(t.path), "/tmp/spate-test-io-%d", (int)getpid());
    for (unsigned i = 0; i < FILE_BYTES; i++)
        t.out[i] = (unsigned char)(i * 131 + 17);
    for (unsigned i = 0; i < FIXED_BYTES; i++)
        t.fixed[0][i] = (unsigned char)(i ^ 0x5a);

    struct sp_runtime_config config;
    rt_test_config(&config, 1, file_start, &t);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
    unlink(t.path);

    if (t.failed_res != 0)
        fail_msg("step %d failed: %s", t.failed_step, strerror(-t.failed_res));
    assert_int_equal(t.step, F_DONE);
    assert_memory_equal(t.in, t.out, FILE_BYTES);
    assert_memory_equal(t.fixed[1], t.fixed[0], FIXED_BYTES);
    assert_int_equal(t.missing_res, -ENOENT);
}

/* ---- TCP echo between two shards ---- */

#define ECHO_BYTES (1u << 20)
#define ECHO_CHUNK (16u * 1024u)

struct echo_server {
    int listen_fd;
    int fd;
    struct sp_io_op op;
    unsigned char buf[ECHO_CHUNK];
    uint32_t have; /* bytes in buf */
    uint32_t sent; /* of them, echoed */
    uint64_t echoed;
    int error;
    bool closed;
};

struct echo_client {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct sp_io_op send_op;
    struct sp_io_op recv_op;
    uint64_t sent;
    uint64_t received;
    uint64_t mismatches;
    int error;
    bool done;
    unsigned char out[ECHO_CHUNK];
    unsigned char in[ECHO_CHUNK];
};

struct echo {
    struct echo_server server;
    struct echo_client client;
    unsigned finished;
    int refused_res;
    struct sp_io_op refused_op;
    int refused_fd;
    struct sockaddr_storage refused_addr;
    socklen_t refused_addr_len;
};

static unsigned char pattern(uint64_t offset)
{
    return (unsigned char)(offset * 7 + offset / 4099);
}

static void echo_finished(struct sp_shard *shard, void *arg)
{
    struct echo *e = arg;
    if (++e->finished == 3) /* server, client, refused connection */
        sp_runtime_stop(shard->runtime);
}

static void report_finished(struct sp_shard *shard, struct echo *e)
{
    int ret = sp_shard_send(shard, 0, echo_finished, e);
    SP_ASSERT(ret == 0);
}

/* Server, shard 0: accept, then recv and send back until the peer closes. */
static void server_recv(struct sp_shard *shard, struct echo *e);

static void server_sent(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct echo_server *s = &e->server;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res <= 0) {
        s->error = res < 0 ? res : -EPIPE;
        report_finished(shard, e);
        return;
    }
    s->sent += (uint32_t)res;
    s->echoed += (uint64_t)res;
    if (s->sent < s->have) {
        int ret =
            sp_io_send(shard, &s->op, s->fd, s->buf + s->sent, s->have - s->sent, server_sent, e);
        SP_ASSERT(ret == 0);
        return;
    }
    server_recv(shard, e);
}

static void server_received(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct echo_server *s = &e->server;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res <= 0) {
        s->error = res;
        s->closed = res == 0;
        close(s->fd);
        report_finished(shard, e);
        return;
    }
    s->have = (uint32_t)res;
    s->sent = 0;
    int ret = sp_io_send(shard, &s->op, s->fd, s->buf, s->have, server_sent, e);
    SP_ASSERT(ret == 0);
}

static void server_recv(struct sp_shard *shard, struct echo *e)
{
    struct echo_server *s = &e->server;
    int ret = sp_io_recv(shard, &s->op, s->fd, s->buf, sizeof(s->buf), server_received, e);
    SP_ASSERT(ret == 0);
}

static void server_accepted(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res < 0) {
        e->server.error = res;
        report_finished(shard, e);
        return;
    }
    e->server.fd = res;
    server_recv(shard, e);
}

/* Client, shard 1: connect, then one send and one recv in flight at a time. */
static void client_send(struct sp_shard *shard, struct echo *e);
static void client_recv(struct sp_shard *shard, struct echo *e);

static void client_fail(struct sp_shard *shard, struct echo *e, int res)
{
    if (e->client.error == 0)
        e->client.error = res < 0 ? res : -EPIPE;
    if (!e->client.done) {
        e->client.done = true;
        shutdown(e->client.fd, SHUT_RDWR);
        report_finished(shard, e);
    }
}

static void client_sent(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res <= 0) {
        client_fail(shard, e, res);
        return;
    }
    e->client.sent += (uint64_t)res;
    if (e->client.sent < ECHO_BYTES)
        client_send(shard, e);
}

static void client_send(struct sp_shard *shard, struct echo *e)
{
    struct echo_client *c = &e->client;
    uint32_t len = (uint32_t)SP_MIN((uint64_t)ECHO_CHUNK, ECHO_BYTES - c->sent);
    for (uint32_t i = 0; i < len; i++)
        c->out[i] = pattern(c->sent + i);
    int ret = sp_io_send(shard, &c->send_op, c->fd, c->out, len, client_sent, e);
    SP_ASSERT(ret == 0);
}

static void client_received(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct echo_client *c = &e->client;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res <= 0) {
        client_fail(shard, e, res);
        return;
    }
    for (int i = 0; i < res; i++) {
        if (c->in[i] != pattern(c->received + (uint64_t)i))
            c->mismatches++;
    }
    c->received += (uint64_t)res;
    if (c->received < ECHO_BYTES) {
        client_recv(shard, e);
        return;
    }
    c->done = true;
    shutdown(c->fd, SHUT_WR); /* the server sees end of stream and finishes */
    close(c->fd);
    report_finished(shard, e);
}

static void client_recv(struct sp_shard *shard, struct echo *e)
{
    struct echo_client *c = &e->client;
    int ret = sp_io_recv(shard, &c->recv_op, c->fd, c->in, sizeof(c->in), client_received, e);
    SP_ASSERT(ret == 0);
}

static void client_connected(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    struct sp_shard *shard = sp_shard_current();
    (void)op;
    if (res < 0) {
        client_fail(shard, e, res);
        return;
    }
    client_send(shard, e);
    client_recv(shard, e);
}

static void refused(struct sp_io_op *op, int res, void *ctx)
{
    struct echo *e = ctx;
    (void)op;
    e->refused_res = res;
    close(e->refused_fd);
    report_finished(sp_shard_current(), e);
}

static void echo_start(struct sp_shard *shard, void *ctx)
{
    struct echo *e = ctx;
    int ret;
    if (shard->id == 0) {
        ret = sp_io_accept(shard, &e->server.op, e->server.listen_fd, server_accepted, e);
        SP_ASSERT(ret == 0);
        return;
    }
    struct echo_client *c = &e->client;
    c->fd = sp_tcp_socket(AF_INET);
    SP_ASSERT(c->fd >= 0);
    ret = sp_io_connect(shard, &c->send_op, c->fd, (struct sockaddr *)&c->addr, c->addr_len,
                        client_connected, e);
    SP_ASSERT(ret == 0);

    e->refused_fd = sp_tcp_socket(AF_INET);
    SP_ASSERT(e->refused_fd >= 0);
    ret = sp_io_connect(shard, &e->refused_op, e->refused_fd, (struct sockaddr *)&e->refused_addr,
                        e->refused_addr_len, refused, e);
    SP_ASSERT(ret == 0);
}

/* A loopback port nobody listens on: bound, then closed. */
static uint16_t dead_port(void)
{
    uint16_t port = 0;
    int fd = sp_tcp_listen("127.0.0.1", 0, 1, &port);
    assert_true(fd >= 0);
    close(fd);
    return port;
}

static void test_tcp_echo_between_shards(void **state)
{
    (void)state;
    static struct echo e;
    memset(&e, 0, sizeof(e));
    uint16_t port = 0;
    e.server.listen_fd = sp_tcp_listen("127.0.0.1", 0, 16, &port);
    assert_true(e.server.listen_fd >= 0);
    assert_true(port != 0);
    assert_int_equal(sp_sockaddr_parse("127.0.0.1", port, &e.client.addr, &e.client.addr_len), 0);
    assert_int_equal(
        sp_sockaddr_parse("localhost", dead_port(), &e.refused_addr, &e.refused_addr_len), 0);

    struct sp_runtime_config config;
    rt_test_config(&config, 2, echo_start, &e);
    struct sp_runtime rt;
    assert_int_equal(sp_runtime_init(&rt, &config), 0);
    assert_int_equal(sp_runtime_run(&rt), 0);
    sp_runtime_deinit(&rt);
    close(e.server.listen_fd);

    assert_int_equal(e.client.error, 0);
    assert_int_equal(e.client.sent, ECHO_BYTES);
    assert_int_equal(e.client.received, ECHO_BYTES);
    assert_int_equal(e.client.mismatches, 0);
    assert_int_equal(e.server.echoed, ECHO_BYTES);
    assert_true(e.server.closed);
    assert_int_equal(e.refused_res, -ECONNREFUSED);
}

static void test_sockaddr_parse(void **state)
{
    (void)state;
    struct sockaddr_storage addr;
    socklen_t len;
    assert_int_equal(sp_sockaddr_parse("127.0.0.1", 9092, &addr, &len), 0);
    assert_int_equal(addr.ss_family, AF_INET);
    assert_int_equal(sp_sockaddr_parse("::1", 9092, &addr, &len), 0);
    assert_int_equal(addr.ss_family, AF_INET6);
    assert_int_equal(sp_sockaddr_parse("not-an-address", 1, &addr, &len), -EINVAL);
    assert_int_equal(sp_sockaddr_parse("", 1, &addr, &len), -EINVAL);
    assert_int_equal(sp_sockaddr_parse(NULL, 1, &addr, &len), -EINVAL);
    assert_int_equal(sp_tcp_listen("bogus", 0, 1, NULL), -EINVAL);
}

int main(void)
{
    rt_test_require_uring();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_write_fsync_read_close),
        cmocka_unit_test(test_tcp_echo_between_shards),
        cmocka_unit_test(test_sockaddr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
