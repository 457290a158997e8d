/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store's storage backends behind one small vtable, in the
 * style of Redis's connection.h: the store (store.c) knows only objects
 * named by flat '/'-separated keys ("manifests/...", "segments/..."), and a
 * backend maps them onto a directory (backend_file.c, `file:///path`) or an
 * object store (`s3://bucket/prefix`, through ckpt/sp_s3.h's client when it
 * lands). A backend is not a checkpoint format: it moves bytes, nothing more.
 *
 * Contract every backend keeps:
 *  - put() is atomic and durable: when it returns 0 the object exists whole
 *    and survives a crash; when it fails, or the process dies midway, no
 *    object of that name appears (a file backend writes a temporary file,
 *    fsyncs it, renames it and fsyncs the directory; S3's PUT is atomic).
 *    A put over an existing name replaces it atomically.
 *  - get() reads a byte range; a short count means the object ended.
 *  - list() reports every complete object under a prefix, never a
 *    temporary one, in no particular order.
 *  - del() of a missing object returns -ENOENT; callers that only want it
 *    gone treat that as success.
 * Errors are -errno: -ENOENT (no such object), -ENOSPC (storage full),
 * -EIO, -ENAMETOOLONG (key over SP_CKPT_KEY_BYTES_MAX), -ENOMEM, or what
 * the underlying system call returned.
 *
 * A backend is used by one thread at a time (the store's owner).
 */
#ifndef SP_CKPT_BACKEND_H
#define SP_CKPT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"

/* Longest object key, including "manifests/" or "segments/"; no NUL. */
#define SP_CKPT_KEY_BYTES_MAX 96

struct sp_ckpt_backend;

/* list()'s callback: one complete object. Returning nonzero stops the listing. */
typedef int sp_ckpt_list_fn(const char *key, uint64_t size_bytes, void *ctx);

struct sp_ckpt_backend_ops {
    const char *scheme; /* "file", "s3" */
    /* Stores `len` bytes under `key`, atomically and durably (see above). */
    int (*put)(struct sp_ckpt_backend *b, const char *key, const void *data, size_t len);
    /* Reads up to `len` bytes at `offset`: the count (0 past the end), or -errno. */
    int64_t (*get)(struct sp_ckpt_backend *b, const char *key, uint64_t offset, void *buf,
                   size_t len);
    /* Size of an object: 0 with *size_bytes set, or -ENOENT. */
    int (*stat)(struct sp_ckpt_backend *b, const char *key, uint64_t *size_bytes);
    /* Calls fn for every complete object whose key starts with `prefix`. */
    int (*list)(struct sp_ckpt_backend *b, const char *prefix, sp_ckpt_list_fn *fn, void *ctx);
    /* Removes an object: 0, or -ENOENT when it did not exist. */
    int (*del)(struct sp_ckpt_backend *b, const char *key);
    /* Releases the backend and everything it holds. */
    void (*close)(struct sp_ckpt_backend *b);
    /*
     * Optional (NULL: nothing to do): removes what puts abandoned by a
     * crashed writer left behind (the file backend's temporary files; an
     * object store's unfinished multipart uploads). Called by the store's
     * garbage collection, never while this process has a put running.
     * Returns the number removed, or -errno.
     */
    int (*sweep_partial)(struct sp_ckpt_backend *b);
};

/* A backend: its ops first; each implementation embeds this struct. */
struct sp_ckpt_backend {
    const struct sp_ckpt_backend_ops *ops;
};

/*
 * Opens the file backend over the directory `path` (absolute), creating it
 * and its "manifests" and "segments" subdirectories when `create` is true.
 * Writes go through an io_uring ring the backend owns (plain system calls
 * when io_uring is unavailable). Returns 0 with *out set, or -errno: -ENOENT
 * (missing and !create), -ENOTDIR, -EACCES, -ENAMETOOLONG, -ENOMEM.
 */
SP_MUST_CHECK int sp_ckpt_backend_file_open(const char *path, int create,
                                            struct sp_ckpt_backend **out);

/*
 * Opens the S3 backend for `s3://bucket/prefix` (backend_s3.c: endpoint,
 * region and credentials from SPATE_S3_ENDPOINT, AWS_REGION,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Returns 0 with *out set, or
 * -EINVAL (a malformed URL or setting), -EACCES (no credentials), -ENOMEM.
 * Nothing is asked of the server until the first call.
 */
SP_MUST_CHECK int sp_ckpt_backend_s3_open(const char *url, struct sp_ckpt_backend **out);

/* True when the file backend `b` writes through io_uring (for tests and inspect). */
int sp_ckpt_backend_file_uses_uring(const struct sp_ckpt_backend *b);

#endif /* SP_CKPT_BACKEND_H */
