/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Asynchronous file and TCP I/O on the calling shard's io_uring ring.
 *
 * Each call queues one request and returns at once; the request reaches the
 * kernel at the end of the reactor turn, together with the others queued in
 * it (one system call for many requests). Its completion runs
 * `fn(op, res, ctx)` on the same shard, with `res` as the system call would
 * return it: a count or fd (>= 0), or -errno. A peer's behaviour (reset,
 * refused, closed) is a result, never an abort.
 *
 * Ownership: `op`, and every buffer and address passed, are borrowed until
 * the completion runs. All calls must be made on a shard, for that shard.
 * Every call returns 0, or -EBUSY when the submission queue stays full after
 * a flush (backpressure: retry after some completions); then `fn` never runs.
 *
 * When a shard stops, requests still in flight are cancelled and complete
 * with -ECANCELED.
 */
#ifndef SP_IO_H
#define SP_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "sp_common.h"
#include "sp_reactor.h"

/* open(2) of `path`; res is the new fd. */
SP_MUST_CHECK int sp_io_open(struct sp_shard *shard, struct sp_io_op *op, const char *path,
                             int flags, unsigned mode, sp_io_fn *fn, void *ctx);

/* pread(2) of up to `len` bytes at `offset`; res is the byte count. */
SP_MUST_CHECK int sp_io_read(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf,
                             uint32_t len, uint64_t offset, sp_io_fn *fn, void *ctx);

/* pwrite(2); res is the byte count (short writes are the caller's to resume). */
SP_MUST_CHECK int sp_io_write(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf,
                              uint32_t len, uint64_t offset, sp_io_fn *fn, void *ctx);

/*
 * Reads into / writes from a buffer registered with sp_io_register_buffers:
 * `buf` must lie inside registered buffer `buf_index`. Saves the kernel's
 * page pinning on each request, which pays off for large repeated I/O.
 */
SP_MUST_CHECK int sp_io_read_fixed(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf,
                                   uint32_t len, uint64_t offset, unsigned buf_index, sp_io_fn *fn,
                                   void *ctx);
SP_MUST_CHECK int sp_io_write_fixed(struct sp_shard *shard, struct sp_io_op *op, int fd,
                                    const void *buf, uint32_t len, uint64_t offset,
                                    unsigned buf_index, sp_io_fn *fn, void *ctx);

/* fsync(2), or fdatasync(2) when `datasync`. */
SP_MUST_CHECK int sp_io_fsync(struct sp_shard *shard, struct sp_io_op *op, int fd, bool datasync,
                              sp_io_fn *fn, void *ctx);

/* close(2). */
SP_MUST_CHECK int sp_io_close(struct sp_shard *shard, struct sp_io_op *op, int fd, sp_io_fn *fn,
                              void *ctx);

/* accept4(2) on a listening socket; res is the connected fd (close-on-exec). */
SP_MUST_CHECK int sp_io_accept(struct sp_shard *shard, struct sp_io_op *op, int listen_fd,
                               sp_io_fn *fn, void *ctx);

/* connect(2) of socket `fd` (from sp_tcp_socket) to `addr`; res is 0 or -errno. */
SP_MUST_CHECK int sp_io_connect(struct sp_shard *shard, struct sp_io_op *op, int fd,
                                const struct sockaddr *addr, socklen_t addr_len, sp_io_fn *fn,
                                void *ctx);

/* send(2) with MSG_NOSIGNAL; res is the byte count. */
SP_MUST_CHECK int sp_io_send(struct sp_shard *shard, struct sp_io_op *op, int fd, const void *buf,
                             uint32_t len, sp_io_fn *fn, void *ctx);

/*
 * sp_io_send for a buffer that may fault (a mapping of a file whose pages
 * may have to be read from disk): the send runs in io_uring's worker
 * threads, blocking there, never in this shard's thread.
 */
SP_MUST_CHECK int sp_io_send_async(struct sp_shard *shard, struct sp_io_op *op, int fd,
                                   const void *buf, uint32_t len, sp_io_fn *fn, void *ctx);

/* recv(2); res is the byte count, 0 when the peer closed. */
SP_MUST_CHECK int sp_io_recv(struct sp_shard *shard, struct sp_io_op *op, int fd, void *buf,
                             uint32_t len, sp_io_fn *fn, void *ctx);

/*
 * Asks the kernel to cancel `target`, a request of this shard still in
 * flight; its callback then runs with -ECANCELED (or its result, if it
 * completed first). 0 or -EBUSY.
 */
SP_MUST_CHECK int sp_io_cancel(struct sp_shard *shard, struct sp_io_op *target);

/*
 * Registers `count` buffers with the shard's ring for the _fixed calls
 * (replacing any registered before). 0 or -errno (-ENOMEM past RLIMIT_MEMLOCK).
 */
SP_MUST_CHECK int sp_io_register_buffers(struct sp_shard *shard, const struct iovec *iov,
                                         unsigned count);

/* ---- Synchronous socket set-up (not on the data path) ---- */

/*
 * Fills `addr` from a numeric IPv4 or IPv6 address, or "localhost", and a
 * port. Returns 0 or -EINVAL.
 */
SP_MUST_CHECK int sp_sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *addr,
                                    socklen_t *addr_len);

/* A TCP socket of `family`, close-on-exec, with TCP_NODELAY. fd or -errno. */
SP_MUST_CHECK int sp_tcp_socket(int family);

/*
 * A listening TCP socket on `host`:`port` (port 0 picks a free one, written
 * to `*port_out` when not NULL), with SO_REUSEADDR. fd or -errno.
 */
SP_MUST_CHECK int sp_tcp_listen(const char *host, uint16_t port, int backlog, uint16_t *port_out);

#endif /* SP_IO_H */
