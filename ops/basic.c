/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The built-in source and sinks that need nothing outside the process: the
 * deterministic generator; blackhole, callback, stdout and file sinks (JSON
 * lines).
 *
 * The generator splits events into `partitions` partitions (event i belongs
 * to partition i mod P) and each shard generates the partitions p with
 * p mod shards == its id, so the events are the same whatever the shard
 * count; each partition's timestamps are its own, and its watermark follows
 * them like a Kafka partition's.
 *
 * The stdout and file sinks format each row as one JSON object per line
 * into a per-shard buffer and write whole buffers; shards share the file
 * descriptor under a mutex (the only lock here: output formatting is not the
 * data path).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_op.h"

/* ---- Generator ---- */

struct gen_config {
    sp_gen_fn *fn;
    void *ctx;
    struct sp_gen_config config;
};

struct gen_state {
    uint64_t *next; /* per local partition: next event index */
    uint32_t total; /* partitions over all shards */
    uint32_t cursor;
    uint64_t made;
    uint64_t start_ns;
    double rate; /* this shard's events per second */
    struct sp_timer wake;
};

static void gen_wake(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    sp_src_wake(ctx);
}

/* ---- Its position in a checkpoint: per partition "p/N", the next index ---- */

struct gen_restoring {
    struct sp_src *src;
    struct gen_state *g;
    uint32_t seen;
    bool bad;
};

static void gen_restore_one(void *ctx, const char *key, const void *value, uint32_t len)
{
    struct gen_restoring *r = ctx;
    unsigned long p;
    uint64_t next;
    if (sscanf(key, "p/%lu", &p) != 1 || len != sizeof(next) || p >= r->g->total) {
        r->bad = true;
        return;
    }
    r->seen++;
    memcpy(&next, value, sizeof(next));
    for (uint32_t k = 0; k < r->src->partition_count; k++) {
        if (r->src->partitions[k] == p)
            r->g->next[k] = next;
    }
}

static int gen_restore(struct sp_src *src, struct gen_state *g)
{
    struct gen_restoring r = {.src = src, .g = g};
    sp_ckpt_foreach(src->xs, src->node, gen_restore_one, &r);
    if (r.bad || r.seen != g->total) {
        sp_exec_fail(src->xs, 0,
                     "%s: the checkpoint has %u generator partitions, this run %u (set the "
                     "generator's partitions to restore onto another shard count)",
                     src->node->name, r.seen, g->total);
        return -EINVAL;
    }
    return 0;
}

static void gen_checkpoint(struct sp_src *src, uint64_t id)
{
    (void)id;
    struct gen_state *g = src->state;
    for (uint32_t k = 0; k < src->partition_count; k++) {
        char key[32];
        snprintf(key, sizeof(key), "p/%u", src->partitions[k]);
        if (sp_ckpt_put(src->xs, src->node, key, &g->next[k], sizeof(g->next[k])) < 0)
            return; /* the checkpoint fails */
    }
}

static int gen_open(struct sp_src *src)
{
    const struct gen_config *gc = src->node->u.source.config;
    struct gen_state *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -ENOMEM;
    src->state = g;
    g->total = gc->config.partitions ? gc->config.partitions : src->shard_count;
    uint32_t mine = 0;
    for (uint32_t p = src->shard; p < g->total; p += src->shard_count)
        mine++;
    uint32_t *numbers = calloc(mine ? mine : 1, sizeof(*numbers));
    g->next = calloc(mine ? mine : 1, sizeof(*g->next));
    if (numbers == NULL || g->next == NULL) {
        free(numbers);
        return -ENOMEM;
    }
    uint32_t k = 0;
    for (uint32_t p = src->shard; p < g->total; p += src->shard_count) {
        numbers[k] = p;
        g->next[k++] = p;
    }
    int rc = sp_src_partitions(src, mine, numbers);
    free(numbers);
    if (rc < 0)
        return rc;
    if (sp_ckpt_restoring(src->xs) && (rc = gen_restore(src, g)) < 0)
        return rc;
    if (gc->config.rate > 0)
        g->rate = gc->config.rate * mine / g->total;
    sp_timer_init(&g->wake, gen_wake, src);
    return 0;
}

static int gen_poll(struct sp_src *src, uint32_t max_rows)
{
    const struct gen_config *gc = src->node->u.source.config;
    struct gen_state *g = src->state;
    uint64_t count = gc->config.count;
    uint32_t n = src->partition_count;
    if (gc->config.events_per_poll != 0 && gc->config.events_per_poll < max_rows)
        max_rows = gc->config.events_per_poll;
    if (g->rate > 0) {
        uint64_t now = sp_now_ns();
        if (g->start_ns == 0)
            g->start_ns = now;
        double due = (double)(now - g->start_ns) / 1e9 * g->rate + 1;
        if ((double)g->made >= due) {
            uint64_t at = g->start_ns + (uint64_t)((double)(g->made + 1) / g->rate * 1e9);
            sp_shard_timer_arm(src->xs->shard, &g->wake, at);
            return SP_POLL_WAIT;
        }
        if (due - (double)g->made < max_rows)
            max_rows = (uint32_t)(due - (double)g->made) + 1;
    }
    struct sp_out *out = sp_src_out(src);
    uint32_t live = 0;
    for (uint32_t k = 0; k < n; k++)
        live += count == 0 || g->next[k] < count;
    uint32_t made = 0;
    while (made < max_rows && live > 0) {
        uint32_t k = g->cursor;
        g->cursor = (g->cursor + 1) % n;
        uint64_t index = g->next[k];
        if (count != 0 && index >= count)
            continue;
        /* A run of events per partition keeps its timestamps together. */
        for (unsigned j = 0; j < 64 && made < max_rows && (count == 0 || index < count); j++) {
            void *row = sp_src_row(src);
            int64_t ts = gc->fn(gc->ctx, src->partitions[k], index, row, out);
            sp_src_commit(src, k, ts);
            index += g->total;
            made++;
        }
        g->next[k] = index;
        if (count != 0 && index >= count)
            live--;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (count != 0 && g->next[k] >= count && !src->parts[k].ended)
            sp_src_partition_end(src, k);
    }
    g->made += src->rows;
    bool all_ended = true;
    for (uint32_t k = 0; k < n; k++)
        all_ended &= src->parts[k].ended;
    if (all_ended)
        return SP_POLL_END;
    return SP_POLL_MORE;
}

static void gen_close(struct sp_src *src)
{
    struct gen_state *g = src->state;
    if (g == NULL)
        return;
    sp_shard_timer_cancel(src->xs->shard, &g->wake);
    free(g->next);
    free(g);
    src->state = NULL;
}

static void gen_stop(struct sp_src *src)
{
    struct gen_state *g = src->state;
    if (g != NULL)
        sp_shard_timer_cancel(src->xs->shard, &g->wake);
}

const struct sp_source_vt sp_generator_vt = {
    .name = "generator",
    .open = gen_open,
    .poll = gen_poll,
    .close = gen_close,
    .stop = gen_stop,
    .checkpoint = gen_checkpoint,
};

struct sp_stream *sp_source_generator(struct sp_job *job, const struct sp_schema *schema,
                                      sp_gen_fn *fn, void *ctx, const struct sp_gen_config *config,
                                      const struct sp_watermarks *wm)
{
    if (fn == NULL) {
        sp_job_set_error(job, "generator: no function given");
        return sp_job_add_source(job, "generator", &sp_generator_vt, NULL, NULL, NULL);
    }
    struct gen_config *gc = calloc(1, sizeof(*gc));
    if (gc == NULL) {
        sp_job_set_error(job, "generator: out of memory");
        return sp_job_add_source(job, "generator", &sp_generator_vt, NULL, NULL, NULL);
    }
    gc->fn = fn;
    gc->ctx = ctx;
    if (config != NULL)
        gc->config = *config;
    if (gc->config.rate < 0) {
        sp_job_set_error(job, "generator: the rate cannot be negative");
        free(gc);
        return sp_job_add_source(job, "generator", &sp_generator_vt, NULL, NULL, NULL);
    }
    return sp_job_add_source(job, "generator", &sp_generator_vt, gc, schema, wm);
}

/* ---- JSON lines ---- */

int sp_row_to_json(const struct sp_schema *schema, const void *row, char *buf, size_t cap)
{
    if (cap < 2)
        return -1;
    int n = sp_serde_encode(SP_FORMAT_JSON, schema, row, buf, cap - 1);
    if (n < 0)
        return -1;
    buf[n] = '\n';
    return n + 1;
}

/* ---- Sinks ---- */

static void count_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    sp_sink_count(inst, in->count);
}

static void sink_end(struct sp_inst *inst)
{
    sp_sink_done(inst);
}

static const struct sp_op_vt blackhole_vt = {
    .name = "blackhole", .push = count_push, .end = sink_end};

void sp_sink_blackhole(struct sp_stream *in)
{
    sp_job_add_sink(in, "blackhole", &blackhole_vt, NULL, NULL);
}

struct call_config {
    sp_sink_fn *fn;
    void *ctx;
};

static void call_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    const struct call_config *c = inst->node->u.sink.config;
    for (uint32_t i = 0; i < in->count; i++)
        c->fn(c->ctx, inst->xs->shard->id, sp_batch_row(in, i), sp_batch_ts(in, i));
    sp_sink_count(inst, in->count);
}

static const struct sp_op_vt call_vt = {.name = "call", .push = call_push, .end = sink_end};

void sp_sink_call(struct sp_stream *in, sp_sink_fn *fn, void *ctx)
{
    struct call_config *c = calloc(1, sizeof(*c));
    if (c == NULL || fn == NULL) {
        free(c);
        sp_job_set_error(sp_stream_job(in), "sink: no function given");
        return;
    }
    c->fn = fn;
    c->ctx = ctx;
    sp_job_add_sink(in, "call", &call_vt, c, free);
}

/* stdout and files: JSON lines through a per-shard buffer. */
struct lines_config {
    char *path; /* NULL: stdout */
    int fd;
    unsigned opened;
    pthread_mutex_t lock;
};

struct lines_state {
    char *buf;
    size_t used;
};

#define LINES_BUF_BYTES (256u * 1024u)

int sp_fd_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int lines_write(struct sp_inst *inst, struct lines_config *c, const char *p, size_t n)
{
    pthread_mutex_lock(&c->lock);
    int err = sp_fd_write_all(c->fd, p, n);
    pthread_mutex_unlock(&c->lock);
    if (err < 0)
        sp_exec_fail(inst->xs, err, "%s: cannot write %s", inst->node->name,
                     c->path ? c->path : "stdout");
    return err;
}

static int lines_open(struct sp_inst *inst)
{
    struct lines_config *c = inst->node->u.sink.config;
    struct lines_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    inst->state = s;
    s->buf = malloc(LINES_BUF_BYTES);
    if (s->buf == NULL)
        return -ENOMEM;
    if (c->path != NULL) {
        pthread_mutex_lock(&c->lock);
        if (c->fd < 0) {
            c->fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (c->fd < 0) {
                int err = -errno;
                pthread_mutex_unlock(&c->lock);
                sp_exec_fail(inst->xs, err, "file sink: cannot open %s", c->path);
                return err;
            }
        }
        pthread_mutex_unlock(&c->lock);
    }
    return 0;
}

static void lines_flush(struct sp_inst *inst)
{
    struct lines_state *s = inst->state;
    if (s->used > 0) {
        (void)lines_write(inst, inst->node->u.sink.config, s->buf, s->used);
        s->used = 0;
    }
}

static void lines_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct lines_state *s = inst->state;
    const struct sp_schema *schema = inst->node->schema;
    for (uint32_t i = 0; i < in->count; i++) {
        int n = sp_row_to_json(schema, sp_batch_row(in, i), s->buf + s->used,
                               LINES_BUF_BYTES - s->used);
        if (n < 0) {
            lines_flush(inst);
            n = sp_row_to_json(schema, sp_batch_row(in, i), s->buf, LINES_BUF_BYTES);
            if (n < 0) {
                sp_exec_fail(inst->xs, 0, "%s: a row longer than %u bytes as JSON",
                             inst->node->name, LINES_BUF_BYTES);
                return;
            }
        }
        s->used += (size_t)n;
    }
    sp_sink_count(inst, in->count);
    /* Results reach their reader promptly: a buffer per input batch. */
    lines_flush(inst);
}

static void lines_end(struct sp_inst *inst)
{
    lines_flush(inst);
    sp_sink_done(inst);
}

static void lines_close(struct sp_inst *inst)
{
    struct lines_state *s = inst->state;
    if (s == NULL)
        return;
    free(s->buf);
    free(s);
    inst->state = NULL;
}

static void lines_config_free(void *p)
{
    struct lines_config *c = p;
    if (c->path != NULL && c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

static const struct sp_op_vt lines_vt = {
    .name = "lines",
    .open = lines_open,
    .push = lines_push,
    .end = lines_end,
    .close = lines_close,
};

static void lines_sink(struct sp_stream *in, const char *name, const char *path)
{
    struct lines_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sp_job_set_error(sp_stream_job(in), "%s: out of memory", name);
        return;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->fd = path ? -1 : STDOUT_FILENO;
    c->path = path ? strdup(path) : NULL;
    sp_job_add_sink(in, name, &lines_vt, c, lines_config_free);
}

void sp_sink_stdout(struct sp_stream *in)
{
    lines_sink(in, "stdout", NULL);
}

void sp_sink_file(struct sp_stream *in, const char *path)
{
    if (path == NULL) {
        sp_job_set_error(sp_stream_job(in), "file sink: no path given");
        return;
    }
    lines_sink(in, "file", path);
}
