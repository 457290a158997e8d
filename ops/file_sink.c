/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The part-file sink (sp_sink_files): JSON lines into a directory, exactly
 * once across crashes when the job takes checkpoints. Flink's FileSink in
 * small.
 *
 * Each shard writes the rows of one checkpoint epoch into a file of its own,
 * ".part-<node>-<shard>-<run>-<seq>.inprogress", opened at the epoch's first
 * row. At the barrier of checkpoint k the file is closed out: its length
 * and its name and final name ("part-<k>-<node>-<shard>.jsonl"), both
 * without the directory, go into the checkpoint (sp_ckpt_put, key
 * "f/<shard>/<n>"), and the checkpoint waits (a hold) until an fsync
 * through io_uring made it durable (a barrier that comes while an earlier
 * fsync runs waits for that one too). When checkpoint k
 * completes, every file closed out at or before it is renamed to its final
 * name; a file whose checkpoint failed is listed again in the next one and
 * published with it. Readers take the part-* files only.
 *
 * A restore publishes what the restored checkpoint lists (truncated to the
 * recorded length first: a crashed run may have written more; already
 * renamed: nothing to do; shorter than recorded: the job fails) and deletes
 * every other in-progress file of this sink (its node id in the name):
 * what a crashed run wrote after its last completed checkpoint, which the
 * restored run writes again. Shard 0 does this for every old shard, in
 * restored(), before any shard writes (files are opened at the first row,
 * after the executor's start barrier). Files closed out and waiting for a
 * checkpoint are at most spate.sink.files.pending (FS_PENDING_MAX) per
 * shard: past that (checkpoints failing for that long) the job fails
 * rather than hold rows it cannot publish.
 *
 * Without checkpoints the files are published when the input ends. With
 * them, end() asks for a final checkpoint and the sink reports done once it
 * published the last epoch. Rows are written with write(2) into the page
 * cache as the line sinks do; what reaches the disk is decided by the fsync
 * at each barrier.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_io.h"
#include "sp_log.h"
#include "sp_op.h"

#define FS_BUF_BYTES (256u * 1024u)
#define FS_PATH_BYTES 4096
#define FS_PENDING_MAX 4096 /* epochs closed out, waiting for their checkpoint */

struct fs_config {
    char *dir;
};

/* A file closed out at a barrier, waiting for its checkpoint to complete. */
struct fs_pending {
    uint64_t id; /* the barrier's checkpoint */
    char *tmp;   /* its in-progress path */
    char *final;
};

struct fs_sink {
    struct sp_inst *inst;
    const struct fs_config *config;
    uint64_t run; /* wall ms at start: in-progress names of this run */
    uint32_t seq;
    int fd; /* the epoch's file, -1 until its first row */
    char *path;
    uint64_t length;
    char *buf;
    size_t used;
    struct fs_pending *pending; /* grows up to FS_PENDING_MAX */
    uint32_t npending, pending_cap;
    /* the fsync of the file closed out at the barrier in flight */
    struct sp_io_op sync_op;
    int sync_fd;
    uint64_t sync_id;
    uint64_t sync_also; /* a later barrier's checkpoint waiting for this fsync too */
    bool syncing;
    bool ended;      /* end() ran */
    bool final_sent; /* the final checkpoint was asked for */
    uint64_t end_id; /* the first barrier after end(): its checkpoint publishes the last rows */
    bool done;
};

static int fs_write_out(struct fs_sink *f)
{
    int err = sp_fd_write_all(f->fd, f->buf, f->used);
    if (err < 0) {
        sp_exec_fail(f->inst->xs, err, "%s: cannot write %s", f->inst->node->name, f->path);
        return err;
    }
    f->length += f->used;
    f->used = 0;
    return 0;
}

static int fs_open_epoch(struct fs_sink *f)
{
    char path[FS_PATH_BYTES];
    snprintf(path, sizeof(path), "%s/.part-%u-%u-%llu-%u.inprogress", f->config->dir,
             f->inst->node->id, f->inst->xs->shard->id, (unsigned long long)f->run, f->seq++);
    f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int err = -errno;
        sp_exec_fail(f->inst->xs, err, "%s: cannot create %s", f->inst->node->name, path);
        return err;
    }
    f->path = strdup(path);
    f->length = 0;
    if (f->path == NULL) {
        sp_exec_fail(f->inst->xs, -ENOMEM, "%s: out of memory", f->inst->node->name);
        return -ENOMEM;
    }
    return 0;
}

static void fs_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct fs_sink *f = inst->state;
    if (in->count == 0)
        return;
    if (f->fd < 0 && fs_open_epoch(f) < 0)
        return;
    const struct sp_schema *schema = inst->node->schema;
    for (uint32_t i = 0; i < in->count; i++) {
        int n =
            sp_row_to_json(schema, sp_batch_row(in, i), f->buf + f->used, FS_BUF_BYTES - f->used);
        if (n < 0) {
            if (fs_write_out(f) < 0)
                return;
            n = sp_row_to_json(schema, sp_batch_row(in, i), f->buf, FS_BUF_BYTES);
            if (n < 0) {
                sp_exec_fail(inst->xs, 0, "%s: a row longer than %u bytes as JSON",
                             inst->node->name, FS_BUF_BYTES);
                return;
            }
        }
        f->used += (size_t)n;
    }
    sp_sink_count(inst, in->count);
    (void)fs_write_out(f);
}

/* Renames every file closed out at or before checkpoint `id`. */
static int fs_publish(struct fs_sink *f, uint64_t id)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < f->npending; i++) {
        struct fs_pending *p = &f->pending[i];
        if (p->id > id) {
            f->pending[kept++] = *p;
            continue;
        }
        if (rename(p->tmp, p->final) < 0) {
            int err = -errno;
            sp_exec_fail(f->inst->xs, err, "%s: cannot publish %s as %s", f->inst->node->name,
                         p->tmp, p->final);
            return err;
        }
        free(p->tmp);
        free(p->final);
    }
    f->npending = kept;
    return 0;
}

static void fs_synced(struct sp_io_op *op, int res, void *ctx)
{
    (void)op;
    struct fs_sink *f = ctx;
    close(f->sync_fd);
    f->sync_fd = -1;
    f->syncing = false;
    if (res < 0)
        sp_warn("%s: fsync before checkpoint %llu: %s", f->inst->node->name,
                (unsigned long long)f->sync_id, strerror(-res));
    sp_ckpt_release(f->inst->xs, f->sync_id, res < 0 ? res : 0);
    if (f->sync_also != 0)
        sp_ckpt_release(f->inst->xs, f->sync_also, res < 0 ? res : 0);
    f->sync_also = 0;
}

/* The barrier of checkpoint `id`: the epoch's file is closed out, every
 * file not published yet goes into the checkpoint. */
static void fs_barrier(struct sp_inst *inst, uint64_t id)
{
    struct fs_sink *f = inst->state;
    if (f->ended && f->end_id == 0)
        f->end_id = id;
    if (f->syncing) {
        /* An earlier barrier's fsync (of a checkpoint given up since) is
         * still running: this checkpoint lists that file too, so it waits. */
        if (f->sync_also != 0)
            sp_ckpt_release(inst->xs, f->sync_also, 0); /* superseded */
        f->sync_also = id;
        sp_ckpt_hold(inst->xs, id);
    }
    if (f->fd >= 0 && f->syncing) {
        /* One fsync at a time: this epoch's file stays open for the next. */
        (void)fs_write_out(f);
    } else if (f->fd >= 0) {
        if (fs_write_out(f) < 0)
            return;
        if (f->npending == FS_PENDING_MAX) {
            sp_exec_fail(inst->xs, -ENOBUFS, "%s: %u files wait for checkpoints that keep failing",
                         inst->node->name, FS_PENDING_MAX);
            return;
        }
        if (f->npending == f->pending_cap) {
            uint32_t cap = f->pending_cap ? f->pending_cap * 2 : 16;
            struct fs_pending *grown = realloc(f->pending, cap * sizeof(*grown));
            if (grown == NULL) {
                sp_exec_fail(inst->xs, -ENOMEM, "%s: out of memory", inst->node->name);
                return;
            }
            f->pending = grown;
            f->pending_cap = cap;
        }
        char final[FS_PATH_BYTES];
        snprintf(final, sizeof(final), "%s/part-%016llx-%u-%u.jsonl", f->config->dir,
                 (unsigned long long)id, inst->node->id, inst->xs->shard->id);
        struct fs_pending *p = &f->pending[f->npending];
        p->id = id;
        p->tmp = f->path;
        p->final = strdup(final);
        if (p->final == NULL) {
            sp_exec_fail(inst->xs, -ENOMEM, "%s: out of memory", inst->node->name);
            return;
        }
        f->npending++;
        f->path = NULL;
        f->sync_fd = f->fd;
        f->fd = -1;
        f->sync_id = id;
        sp_ckpt_hold(inst->xs, id);
        f->syncing = true;
        int rc = sp_io_fsync(inst->xs->shard, &f->sync_op, f->sync_fd, true, fs_synced, f);
        if (rc < 0)
            fs_synced(&f->sync_op, rc, f);
    }
    /* Everything not published yet: this checkpoint publishes it. */
    for (uint32_t i = 0; i < f->npending; i++) {
        struct fs_pending *p = &f->pending[i];
        struct stat st;
        uint64_t len = stat(p->tmp, &st) == 0 ? (uint64_t)st.st_size : 0;
        /* Names without the directory (it may be relative, or have spaces). */
        char key[64], value[2 * FS_PATH_BYTES + 32];
        snprintf(key, sizeof(key), "f/%u/%u", inst->xs->shard->id, i);
        int n = snprintf(value, sizeof(value), "%llu %s %s", (unsigned long long)len,
                         strrchr(p->tmp, '/') + 1, strrchr(p->final, '/') + 1);
        if (n < 0 || (size_t)n >= sizeof(value) ||
            sp_ckpt_put(inst->xs, inst->node, key, value, (uint32_t)n) < 0)
            return; /* the checkpoint fails; the next one lists them again */
    }
}

static void fs_checkpoint_done(struct sp_inst *inst, uint64_t id)
{
    struct fs_sink *f = inst->state;
    if (fs_publish(f, id) < 0)
        return;
    if (!f->ended || f->done)
        return;
    if (f->end_id != 0 && id >= f->end_id && f->fd < 0 && f->npending == 0) {
        f->done = true; /* every row published */
        sp_sink_done(inst);
    } else {
        /* The last rows are not published yet (the final checkpoint failed,
         * or its barrier found an fsync running and left the file open). */
        sp_ckpt_request(inst->xs);
    }
}

static void fs_end(struct sp_inst *inst)
{
    struct fs_sink *f = inst->state;
    f->ended = true;
    if (sp_ckpt_enabled(inst->xs)) {
        /* The next checkpoint publishes the last rows; then done. */
        sp_ckpt_request(inst->xs);
        return;
    }
    if (f->fd >= 0) {
        if (fs_write_out(f) < 0)
            return;
        char final[FS_PATH_BYTES];
        snprintf(final, sizeof(final), "%s/part-end-%u.jsonl", f->config->dir, inst->xs->shard->id);
        if (fsync(f->fd) < 0 || rename(f->path, final) < 0) {
            sp_exec_fail(inst->xs, -errno, "%s: cannot publish %s", inst->node->name, f->path);
            return;
        }
        close(f->fd);
        f->fd = -1;
    }
    f->done = true;
    sp_sink_done(inst);
}

/* ---- Restore: publish what the checkpoint lists, drop the rest ---- */

struct fs_restoring {
    struct sp_inst *inst;
    int err;
};

static void fs_restore_one(void *ctx, const char *key, const void *value, uint32_t len)
{
    struct fs_restoring *r = ctx;
    if (r->err < 0 || strncmp(key, "f/", 2) != 0)
        return;
    const struct fs_config *c = r->inst->node->u.sink.config;
    char text[2 * FS_PATH_BYTES + 32], tmp_name[FS_PATH_BYTES], final_name[FS_PATH_BYTES];
    char tmp[2 * FS_PATH_BYTES], final[2 * FS_PATH_BYTES];
    unsigned long long length;
    if (len >= sizeof(text)) {
        r->err = -EBADMSG;
        return;
    }
    memcpy(text, value, len);
    text[len] = '\0';
    if (sscanf(text, "%llu %4095s %4095s", &length, tmp_name, final_name) != 3 ||
        strchr(tmp_name, '/') != NULL || strchr(final_name, '/') != NULL) {
        r->err = -EBADMSG;
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s/%s", c->dir, tmp_name);
    snprintf(final, sizeof(final), "%s/%s", c->dir, final_name);
    struct stat st;
    if (stat(tmp, &st) == 0) {
        if ((unsigned long long)st.st_size < length) {
            sp_exec_fail(r->inst->xs, -EBADMSG,
                         "%s: %s holds %lld bytes, the checkpoint restored counts %llu: rows "
                         "of a completed checkpoint are lost",
                         r->inst->node->name, tmp, (long long)st.st_size, length);
            r->err = -EBADMSG;
        } else if (truncate(tmp, (off_t)length) < 0 || rename(tmp, final) < 0) {
            r->err = -errno;
        }
    } else if (access(final, F_OK) != 0) {
        sp_exec_fail(r->inst->xs, -ENOENT,
                     "%s: %s, which the checkpoint restored lists, is gone: its rows are lost",
                     r->inst->node->name, tmp);
        r->err = -ENOENT;
    }
}

static int fs_restored(struct sp_inst *inst)
{
    struct fs_sink *f = inst->state;
    if (inst->xs->shard->id != 0)
        return 0;
    struct fs_restoring r = {.inst = inst};
    sp_ckpt_foreach(inst->xs, inst->node, fs_restore_one, &r);
    if (r.err < 0) {
        if (!sp_exec_failed(inst->xs))
            sp_exec_fail(inst->xs, r.err, "%s: publishing the restored checkpoint's files",
                         inst->node->name);
        return r.err;
    }
    DIR *d = opendir(f->config->dir);
    if (d == NULL)
        return 0;
    char mine[32];
    int mine_len = snprintf(mine, sizeof(mine), ".part-%u-", inst->node->id);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, mine, (size_t)mine_len) != 0 || n < 11 ||
            strcmp(e->d_name + n - 11, ".inprogress") != 0)
            continue;
        char path[FS_PATH_BYTES];
        snprintf(path, sizeof(path), "%s/%s", f->config->dir, e->d_name);
        if (unlink(path) < 0)
            sp_warn("%s: cannot remove %s: %s", inst->node->name, path, strerror(errno));
    }
    closedir(d);
    return 0;
}

static int fs_open(struct sp_inst *inst)
{
    const struct fs_config *c = inst->node->u.sink.config;
    struct fs_sink *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    inst->state = f;
    f->inst = inst;
    f->config = c;
    f->fd = f->sync_fd = -1;
    f->run = (uint64_t)sp_wall_ms();
    f->buf = malloc(FS_BUF_BYTES);
    if (f->buf == NULL)
        return -ENOMEM;
    if (mkdir(c->dir, 0755) < 0 && errno != EEXIST) {
        int err = -errno;
        sp_exec_fail(inst->xs, err, "%s: cannot create %s", inst->node->name, c->dir);
        return err;
    }
    return 0;
}

static void fs_close(struct sp_inst *inst)
{
    struct fs_sink *f = inst->state;
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->sync_fd >= 0)
        close(f->sync_fd);
    for (uint32_t i = 0; i < f->npending; i++) {
        free(f->pending[i].tmp);
        free(f->pending[i].final);
    }
    free(f->pending);
    free(f->path);
    free(f->buf);
    free(f);
    inst->state = NULL;
}

static const struct sp_op_vt fs_vt = {
    .name = "files",
    .open = fs_open,
    .push = fs_push,
    .end = fs_end,
    .close = fs_close,
    .barrier = fs_barrier,
    .checkpoint_done = fs_checkpoint_done,
    .restored = fs_restored,
};

static void fs_config_free(void *p)
{
    struct fs_config *c = p;
    free(c->dir);
    free(c);
}

void sp_sink_files(struct sp_stream *in, const char *dir)
{
    struct fs_config *c = calloc(1, sizeof(*c));
    if (c == NULL || dir == NULL || *dir == '\0' || strlen(dir) > FS_PATH_BYTES - 64) {
        free(c);
        sp_job_set_error(sp_stream_job(in), "part-file sink: a directory of at most %u bytes",
                         FS_PATH_BYTES - 64);
        return;
    }
    c->dir = strdup(dir);
    if (c->dir == NULL) {
        free(c);
        sp_job_set_error(sp_stream_job(in), "part-file sink: out of memory");
        return;
    }
    sp_job_add_sink(in, "files", &fs_vt, c, fs_config_free);
}
