/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store's local-directory backend (`file:///path`). An object
 * key "segments/x" is the file <root>/segments/x. A put writes
 * "<dir>/.tmp-<name>.<pid>", fsyncs it, renames it over the final name and
 * fsyncs the directory, so an object appears whole and durable or not at
 * all; a failed put (a full disk: -ENOSPC) unlinks its temporary file and
 * leaves every other object as it was. Listing skips dot files, so a
 * temporary file left by a crash is never reported as an object; garbage
 * collection removes it (sweep_partial) once its writer is gone.
 *
 * Data moves through an io_uring ring this backend owns (eight entries, one
 * request at a time: the store is synchronous and runs on its uploader
 * thread, so batching would buy little beside the fsync that dominates).
 * Writes, reads and fsyncs go through the ring; metadata calls (open,
 * rename, unlink, readdir) are plain system calls. When io_uring cannot be
 * set up (disabled by sysctl or seccomp) the same calls fall back to
 * pwrite/pread/fsync.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_ckpt_backend.h"

#define FILE_RING_ENTRIES 8
#define FILE_IO_CHUNK_BYTES (1u << 20)   /* one request moves at most 1 MiB */
#define FILE_LIST_ENTRIES_MAX (1u << 20) /* a directory listing stops there */

struct file_backend {
    struct sp_ckpt_backend base;
    struct io_uring ring;
    bool have_ring;
    char root[PATH_MAX];
};

static struct file_backend *file_of(struct sp_ckpt_backend *b)
{
    SP_ASSERT(b != NULL);
    return SP_CONTAINER_OF(b, struct file_backend, base);
}

/* ---- One request on the ring, or the plain system call ---- */

static int64_t ring_one(struct file_backend *fb, struct io_uring_sqe *sqe)
{
    SP_ASSERT(sqe != NULL);
    int ret = io_uring_submit_and_wait(&fb->ring, 1);
    if (ret < 0)
        return ret;
    struct io_uring_cqe *cqe;
    ret = io_uring_wait_cqe(&fb->ring, &cqe);
    if (ret < 0)
        return ret;
    int64_t res = cqe->res;
    io_uring_cqe_seen(&fb->ring, cqe);
    return res;
}

static int64_t file_pwrite(struct file_backend *fb, int fd, const void *buf, uint32_t len,
                           uint64_t offset)
{
    if (fb->have_ring) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&fb->ring);
        SP_ASSERT(sqe != NULL); /* one request at a time: the queue is empty */
        io_uring_prep_write(sqe, fd, buf, len, offset);
        return ring_one(fb, sqe);
    }
    ssize_t n = pwrite(fd, buf, len, (off_t)offset);
    return n < 0 ? -errno : n;
}

static int64_t file_pread(struct file_backend *fb, int fd, void *buf, uint32_t len, uint64_t offset)
{
    if (fb->have_ring) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&fb->ring);
        SP_ASSERT(sqe != NULL);
        io_uring_prep_read(sqe, fd, buf, len, offset);
        return ring_one(fb, sqe);
    }
    ssize_t n = pread(fd, buf, len, (off_t)offset);
    return n < 0 ? -errno : n;
}

static int file_fsync(struct file_backend *fb, int fd)
{
    if (fb->have_ring) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&fb->ring);
        SP_ASSERT(sqe != NULL);
        io_uring_prep_fsync(sqe, fd, 0);
        return (int)ring_one(fb, sqe);
    }
    return fsync(fd) < 0 ? -errno : 0;
}

/* ---- Paths ---- */

/* A key is relative, has no "." or ".." component and no empty one. */
static bool key_valid(const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > SP_CKPT_KEY_BYTES_MAX || key[0] == '/' || key[len - 1] == '/')
        return false;
    if (strstr(key, "//") != NULL || strstr(key, "/.") != NULL || key[0] == '.')
        return false;
    return true;
}

static int path_of(const struct file_backend *fb, const char *key, char *out, size_t cap)
{
    if (!key_valid(key))
        return -ENAMETOOLONG;
    int n = snprintf(out, cap, "%s/%s", fb->root, key);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Splits "<dir>/<name>" into the directory path and the temporary file's path. */
static int tmp_paths(const struct file_backend *fb, const char *key, char *dir, char *tmp,
                     size_t cap)
{
    const char *slash = strrchr(key, '/');
    int dir_bytes = slash ? (int)(slash - key) : 0;
    const char *name = slash ? slash + 1 : key;
    int n = snprintf(dir, cap, "%s%s%.*s", fb->root, dir_bytes ? "/" : "", dir_bytes, key);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    n = snprintf(tmp, cap, "%s/.tmp-%s.%ld", dir, name, (long)getpid());
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* ---- Operations ---- */

static int write_all(struct file_backend *fb, int fd, const uint8_t *data, size_t len)
{
    size_t at = 0;
    /* Bounded: each pass moves at least one byte or returns. */
    while (at < len) {
        uint32_t chunk = (uint32_t)SP_MIN(len - at, (size_t)FILE_IO_CHUNK_BYTES);
        int64_t n = file_pwrite(fb, fd, data + at, chunk, at);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        at += (size_t)n;
    }
    return 0;
}

static int fsync_dir(struct file_backend *fb, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int err = file_fsync(fb, fd);
    close(fd);
    return err;
}

static int file_put(struct sp_ckpt_backend *b, const char *key, const void *data, size_t len)
{
    struct file_backend *fb = file_of(b);
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    int err = path_of(fb, key, path, sizeof(path));
    if (err == 0)
        err = tmp_paths(fb, key, dir, tmp, sizeof(dir));
    if (err < 0)
        return err;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    err = write_all(fb, fd, data, len);
    if (err == 0)
        err = file_fsync(fb, fd);
    if (close(fd) < 0 && err == 0)
        err = -errno;
    if (err == 0 && rename(tmp, path) < 0)
        err = -errno;
    if (err < 0) {
        unlink(tmp);
        return err;
    }
    /* The rename is durable only once the directory is. */
    return fsync_dir(fb, dir);
}

static int64_t file_get(struct sp_ckpt_backend *b, const char *key, uint64_t offset, void *buf,
                        size_t len)
{
    struct file_backend *fb = file_of(b);
    char path[PATH_MAX];
    int err = path_of(fb, key, path, sizeof(path));
    if (err < 0)
        return err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t at = 0;
    int64_t ret = 0;
    while (at < len) {
        uint32_t chunk = (uint32_t)SP_MIN(len - at, (size_t)FILE_IO_CHUNK_BYTES);
        int64_t n = file_pread(fb, fd, (uint8_t *)buf + at, chunk, offset + at);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n < 0) {
            ret = n;
            break;
        }
        if (n == 0)
            break; /* the end of the file */
        at += (size_t)n;
    }
    close(fd);
    return ret < 0 ? ret : (int64_t)at;
}

static int file_stat(struct sp_ckpt_backend *b, const char *key, uint64_t *size_bytes)
{
    struct file_backend *fb = file_of(b);
    char path[PATH_MAX];
    int err = path_of(fb, key, path, sizeof(path));
    if (err < 0)
        return err;
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -ENOENT;
    *size_bytes = (uint64_t)st.st_size;
    return 0;
}

static int file_list(struct sp_ckpt_backend *b, const char *prefix, sp_ckpt_list_fn *fn, void *ctx)
{
    struct file_backend *fb = file_of(b);
    const char *slash = strrchr(prefix, '/');
    int dir_bytes = slash ? (int)(slash - prefix) : 0;
    const char *name_prefix = slash ? slash + 1 : prefix;
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/%.*s", fb->root, dir_bytes, prefix);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    int err = 0;
    /* Bounded: a directory with more entries than any store writes is refused. */
    for (uint32_t i = 0;; i++) {
        if (i == FILE_LIST_ENTRIES_MAX) {
            err = -E2BIG;
            break;
        }
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            err = -errno; /* 0 at the end of the directory */
            break;
        }
        if (e->d_name[0] == '.' || strncmp(e->d_name, name_prefix, strlen(name_prefix)) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue; /* gone meanwhile, or not ours */
        char key[SP_CKPT_KEY_BYTES_MAX + 1];
        n = snprintf(key, sizeof(key), "%.*s%s%s", dir_bytes, prefix, dir_bytes ? "/" : "",
                     e->d_name);
        if (n < 0 || (size_t)n >= sizeof(key))
            continue; /* longer than any key we write */
        if (fn(key, (uint64_t)st.st_size, ctx) != 0)
            break;
    }
    closedir(d);
    return err;
}

static int file_del(struct sp_ckpt_backend *b, const char *key)
{
    struct file_backend *fb = file_of(b);
    char path[PATH_MAX];
    int err = path_of(fb, key, path, sizeof(path));
    if (err < 0)
        return err;
    return unlink(path) < 0 ? -errno : 0;
}

/* A temporary file's writer: the pid after its last '.', or 0 when it has none. */
static long tmp_writer_pid(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot[1] == '\0')
        return 0;
    char *end;
    long pid = strtol(dot + 1, &end, 10);
    return *end == '\0' && pid > 0 ? pid : 0;
}

/*
 * Unlinks "<dir>/.tmp-*" files whose writer is gone: not this process
 * (whose puts are synchronous, so none is running when this is called) and
 * not any live process (kill(pid, 0) says ESRCH). A reused pid only delays
 * the clean-up until a later collection.
 */
static int sweep_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    int removed = 0;
    for (uint32_t i = 0; i < FILE_LIST_ENTRIES_MAX; i++) {
        struct dirent *e = readdir(d);
        if (e == NULL)
            break;
        if (strncmp(e->d_name, ".tmp-", 5) != 0)
            continue;
        long pid = tmp_writer_pid(e->d_name);
        bool gone =
            pid == (long)getpid() || pid == 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH);
        if (gone && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static int file_sweep_partial(struct sp_ckpt_backend *b)
{
    struct file_backend *fb = file_of(b);
    const char *subs[] = {"manifests", "segments"};
    int removed = 0;
    for (unsigned i = 0; i < SP_ARRAY_LEN(subs); i++) {
        char dir[PATH_MAX];
        int n = snprintf(dir, sizeof(dir), "%s/%s", fb->root, subs[i]);
        if (n < 0 || (size_t)n >= sizeof(dir))
            return -ENAMETOOLONG;
        int ret = sweep_dir(dir);
        if (ret < 0)
            return ret;
        removed += ret;
    }
    return removed;
}

static void file_close(struct sp_ckpt_backend *b)
{
    struct file_backend *fb = file_of(b);
    if (fb->have_ring)
        io_uring_queue_exit(&fb->ring);
    free(fb);
}

static const struct sp_ckpt_backend_ops file_ops = {
    .scheme = "file",
    .put = file_put,
    .get = file_get,
    .stat = file_stat,
    .list = file_list,
    .del = file_del,
    .close = file_close,
    .sweep_partial = file_sweep_partial,
};

/* ---- Opening ---- */

/* A directory, made with its missing parents (mkdir -p) when `create`. */
static int ensure_dir(const char *path, int create)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    if (errno != ENOENT || !create)
        return -errno;
    char parent[PATH_MAX];
    int n = snprintf(parent, sizeof(parent), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(parent))
        return -ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        int err = ensure_dir(parent, create);
        if (err < 0)
            return err;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int ensure_layout(const char *root, int create)
{
    int err = ensure_dir(root, create);
    char sub[PATH_MAX];
    const char *subs[] = {"manifests", "segments"};
    for (unsigned i = 0; err == 0 && i < SP_ARRAY_LEN(subs); i++) {
        int n = snprintf(sub, sizeof(sub), "%s/%s", root, subs[i]);
        if (n < 0 || (size_t)n >= sizeof(sub))
            return -ENAMETOOLONG;
        err = ensure_dir(sub, create);
    }
    return err;
}

int sp_ckpt_backend_file_open(const char *path, int create, struct sp_ckpt_backend **out)
{
    SP_ASSERT(path != NULL);
    SP_ASSERT(out != NULL);
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/')
        return -EINVAL;
    if (len >= PATH_MAX - SP_CKPT_KEY_BYTES_MAX - 64)
        return -ENAMETOOLONG;
    while (len > 1 && path[len - 1] == '/')
        len--;
    struct file_backend *fb = calloc(1, sizeof(*fb));
    if (fb == NULL)
        return -ENOMEM;
    memcpy(fb->root, path, len);
    fb->root[len] = '\0';
    int err = ensure_layout(fb->root, create);
    if (err < 0) {
        free(fb);
        return err;
    }
    fb->base.ops = &file_ops;
    fb->have_ring = io_uring_queue_init(FILE_RING_ENTRIES, &fb->ring, 0) == 0;
    *out = &fb->base;
    return 0;
}

int sp_ckpt_backend_file_uses_uring(const struct sp_ckpt_backend *b)
{
    SP_ASSERT(b != NULL);
    SP_ASSERT(b->ops == &file_ops);
    return SP_CONTAINER_OF(b, const struct file_backend, base)->have_ring;
}
