/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Async file and socket requests on the shard's ring, and the synchronous
 * socket set-up helpers (see sp_io.h). Each request is one SQE whose
 * user_data is the caller's sp_io_op; the reactor dispatches its CQE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "reactor_int.h"
#include "sp_io.h"

static struct io_uring_sqe *io_sqe(struct sp_shard *shard, struct sp_io_op *op, sp_io_fn *fn,
                                   void *ctx)
{
    SP_ASSERT(op != NULL);
    SP_ASSERT(fn != NULL);
    op->fn = fn;
    op->ctx = ctx;
    return sp_shard_sqe(shard, op);
}

int sp_io_open(struct sp_shard *shard, struct sp_io_op *op, const char *path, int flags,
               unsigned mode, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_openat(sqe, AT_FDCWD, path, flags | O_CLOEXEC, mode);
    return 0;
}

int sp_io_read(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf, uint32_t len,
               uint64_t offset, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_read(sqe, fd, buf, len, offset);
    return 0;
}

int sp_io_write(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf, uint32_t len,
                uint64_t offset, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_write(sqe, fd, buf, len, offset);
    return 0;
}

int sp_io_read_fixed(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf, uint32_t len,
                     uint64_t offset, unsigned buf_index, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_read_fixed(sqe, fd, buf, len, offset, (int)buf_index);
    return 0;
}

int sp_io_write_fixed(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf,
                      uint32_t len, uint64_t offset, unsigned buf_index, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_write_fixed(sqe, fd, buf, len, offset, (int)buf_index);
    return 0;
}

int sp_io_fsync(struct sp_shard *shard, struct sp_io_op *op, int fd, bool datasync, sp_io_fn *fn,
                void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    return 0;
}

int sp_io_close(struct sp_shard *shard, struct sp_io_op *op, int fd, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_close(sqe, fd);
    return 0;
}

int sp_io_accept(struct sp_shard *shard, struct sp_io_op *op, int listen_fd, sp_io_fn *fn,
                 void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    return 0;
}

int sp_io_connect(struct sp_shard *shard, struct sp_io_op *op, int fd, const struct sockaddr *addr,
                  socklen_t addr_len, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_connect(sqe, fd, addr, addr_len);
    return 0;
}

int sp_io_send(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf, uint32_t len,
               sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    return 0;
}

int sp_io_send_async(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf,
                     uint32_t len, sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_ASYNC;
    return 0;
}

int sp_io_recv(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf, uint32_t len,
               sp_io_fn *fn, void *ctx)
{
    struct io_uring_sqe *sqe = io_sqe(shard, op, fn, ctx);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    return 0;
}

int sp_io_cancel(struct sp_shard *shard, struct sp_io_op *target)
{
    SP_ASSERT(shard == sp_shard_current());
    SP_ASSERT(target != NULL);
    struct io_uring_sqe *sqe = sp_shard_sqe_raw(shard);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_cancel(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, SP_UDATA_IGNORE);
    return 0;
}

int sp_io_register_buffers(struct sp_shard *shard, const struct iovec *iov, unsigned count)
{
    SP_ASSERT(shard == sp_shard_current());
    SP_ASSERT(iov != NULL || count == 0);
    (void)io_uring_unregister_buffers(&shard->ring); /* -ENXIO when none: fine */
    if (count == 0)
        return 0;
    return io_uring_register_buffers(&shard->ring, iov, count);
}

/* ---- Socket set-up ---- */

int sp_sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *addr,
                      socklen_t *addr_len)
{
    SP_ASSERT(addr != NULL);
    SP_ASSERT(addr_len != NULL);
    memset(addr, 0, sizeof(*addr));
    if (host == NULL)
        return -EINVAL;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *in4 = (struct sockaddr_in *)addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *addr_len = sizeof(*in4);
        return 0;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *addr_len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

int sp_tcp_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int sp_tcp_listen(const char *host, uint16_t port, int backlog, uint16_t *port_out)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int ret = sp_sockaddr_parse(host, port, &addr, &addr_len);
    if (ret < 0)
        return ret;
    int fd = sp_tcp_socket(addr.ss_family);
    if (fd < 0)
        return fd;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, addr_len) != 0 || listen(fd, backlog) != 0)
        goto fail;
    if (port_out != NULL) {
        addr_len = sizeof(addr);
        if (getsockname(fd, (struct sockaddr *)&addr, &addr_len) != 0)
            goto fail;
        *port_out = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                                    : ((struct sockaddr_in6 *)&addr)->sin6_port);
    }
    return fd;
fail:
    ret = -errno;
    close(fd);
    return ret;
}
