/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file source: a file of lines, each one record parsed by serde.c (JSON
 * lines, CSV, or RAW/STRING with each line into the "value" field). The
 * file is one partition, read by shard 0 alone; other shards claim no
 * partitions and end at once (the watermark ignores them).
 *
 * Lines: '\n' ends one, a '\r' before it is dropped (CRLF files), empty
 * lines are skipped, and a last line without a newline is still a record.
 * CSV has no header line: every line is data. A quoted CSV field may hold
 * newlines, so for CSV a record ends at a newline outside quotes; line
 * numbers count physical lines and name a record by its first. A record
 * (with its newline) is at most FILE_BUF_BYTES; a longer one fails the job
 * naming its line, as does a record that does not parse. A row's timestamp
 * is its line number unless the watermark strategy says otherwise.
 *
 * The file is read with plain read(2) into one bounded buffer on the shard:
 * a read from the page cache blocks the shard for about as long as the
 * records it brings take to process, so this is a simple start, not the
 * end. Reading through the shard's io_uring (sp_io.h), with the next buffer
 * in flight while this one is parsed, is the later improvement.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_common.h"
#include "sp_op.h"

/* The read buffer, and so the longest record: 1 MiB, Kafka's default
 * message.max.bytes, so a line that could be a Kafka record fits. */
#define FILE_BUF_BYTES (1u << 20)
/* read(2) calls per poll at most: a poll stays short whatever the lines. */
#define FILE_READS_PER_POLL 4u
/* Lines (empty ones included) per poll at most, per row it may emit. */
#define FILE_LINES_PER_ROW 4u

struct file_config {
    enum sp_format format;
    char path[]; /* NUL-terminated; one allocation, freed by the job */
};

struct file_state {
    int fd;
    char *buf;           /* FILE_BUF_BYTES */
    uint32_t start, end; /* bytes not consumed yet: [start, end) */
    uint32_t scan;       /* of those, already searched for the record's end */
    uint32_t scan_lines; /* newlines inside CSV quotes the search passed */
    bool in_quote;       /* CSV: the search stopped inside quotes */
    bool eof;
    uint64_t line; /* lines consumed */
    char err[SP_JOB_ERROR_BYTES / 2];
};

/* What next_record() found. */
enum { REC_FOUND, REC_END, REC_LATER };

/* ---- Reading ---- */

/* Searches the unconsumed bytes for the end of the record (a newline, for
 * CSV one outside quotes); its offset in buf, or -1 with the search state
 * kept for the next call. */
static int64_t record_end(struct file_state *f, enum sp_format format)
{
    uint32_t p = f->start + f->scan;
    if (format != SP_FORMAT_CSV) {
        const char *nl = memchr(f->buf + p, '\n', f->end - p);
        f->scan = f->end - f->start;
        return nl ? nl - f->buf : -1;
    }
    for (; p < f->end; p++) {
        char c = f->buf[p];
        if (c == '"') {
            f->in_quote = !f->in_quote; /* "" toggles twice */
        } else if (c == '\n') {
            if (!f->in_quote)
                return p;
            f->scan_lines++;
        }
    }
    f->scan = f->end - f->start;
    return -1;
}

/* Moves the unconsumed bytes to the front and reads more after them.
 * 0, or -errno with the job failed. */
static int refill(struct sp_src *src, struct file_state *f, const char *path)
{
    if (f->start > 0) {
        memmove(f->buf, f->buf + f->start, f->end - f->start);
        f->end -= f->start;
        f->start = 0;
    }
    if (f->end == FILE_BUF_BYTES) {
        sp_exec_fail(src->xs, 0, "file %s line %llu: longer than %u bytes", path,
                     (unsigned long long)f->line + 1, FILE_BUF_BYTES);
        return -EMSGSIZE;
    }
    ssize_t n;
    do {
        n = read(f->fd, f->buf + f->end, FILE_BUF_BYTES - f->end);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = -errno;
        sp_exec_fail(src->xs, err, "file %s: cannot read", path);
        return err;
    }
    if (n == 0)
        f->eof = true;
    f->end += (uint32_t)n;
    return 0;
}

/*
 * The next record (without its newline) in `*rec`, `*len`, and the line it
 * starts on in `*line`: REC_FOUND; REC_END at the end of the file;
 * REC_LATER when this poll has read enough; -errno with the job failed.
 */
static int next_record(struct sp_src *src, struct file_state *f, const struct file_config *c,
                       uint32_t *reads, const char **rec, uint32_t *len, uint64_t *line)
{
    for (;;) {
        int64_t nl = record_end(f, c->format);
        if (nl < 0 && f->eof && f->start == f->end)
            return REC_END;
        if (nl >= 0 || f->eof) {
            uint32_t stop = nl >= 0 ? (uint32_t)nl : f->end;
            *rec = f->buf + f->start;
            *len = stop - f->start;
            *line = f->line + 1;
            f->line += 1 + f->scan_lines;
            f->start = nl >= 0 ? stop + 1 : stop;
            f->scan = 0;
            f->scan_lines = 0;
            f->in_quote = false;
            return REC_FOUND;
        }
        if (*reads == FILE_READS_PER_POLL)
            return REC_LATER;
        ++*reads;
        int rc = refill(src, f, c->path);
        if (rc < 0)
            return rc;
    }
}

/* ---- The source ---- */

/* Drops the row being written: it is the batch's last slot (exec.c); the
 * strings copied for it stay behind in the batch, unreferenced. */
static void src_drop_row(struct sp_src *src)
{
    struct sp_out *out = sp_src_out(src);
    SP_ASSERT(out->pending);
    SP_ASSERT(out->batch->count > 0);
    out->batch->count--;
    out->pending = false;
    out->spill_used = 0;
}

static int file_open(struct sp_src *src)
{
    const struct file_config *c = src->node->u.source.config;
    if (src->shard != 0)
        return sp_src_partitions(src, 0, NULL);
    struct file_state *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->fd = -1;
    src->state = f;
    f->fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        int err = -errno;
        sp_exec_fail(src->xs, err, "file source: cannot open %s", c->path);
        return err;
    }
    f->buf = malloc(FILE_BUF_BYTES);
    if (f->buf == NULL)
        return -ENOMEM;
    static const uint32_t partition = 0;
    return sp_src_partitions(src, 1, &partition);
}

static int file_poll(struct sp_src *src, uint32_t max_rows)
{
    if (src->partition_count == 0)
        return SP_POLL_END;
    const struct file_config *c = src->node->u.source.config;
    const struct sp_schema *schema = src->node->schema;
    struct file_state *f = src->state;
    uint32_t reads = 0, rows = 0;
    uint64_t lines = 0, lines_max = (uint64_t)max_rows * FILE_LINES_PER_ROW;
    while (rows < max_rows && lines < lines_max) {
        const char *rec;
        uint32_t len;
        uint64_t line;
        int rc = next_record(src, f, c, &reads, &rec, &len, &line);
        if (rc < 0)
            return rc;
        if (rc == REC_LATER)
            return SP_POLL_MORE;
        if (rc == REC_END) {
            sp_src_partition_end(src, 0);
            return SP_POLL_END;
        }
        lines++;
        if (len > 0 && rec[len - 1] == '\r')
            len--;
        if (len == 0)
            continue;
        void *row = sp_src_row(src);
        rc = sp_serde_decode(c->format, schema, rec, len, row, sp_src_out(src), f->err,
                             sizeof(f->err));
        if (rc < 0) {
            src_drop_row(src);
            sp_exec_fail(src->xs, 0, "file %s line %llu: %s", c->path, (unsigned long long)line,
                         f->err); /* the reason says it all */
            return rc;
        }
        sp_src_commit(src, 0, (int64_t)line);
        rows++;
    }
    return SP_POLL_MORE;
}

static void file_close(struct sp_src *src)
{
    struct file_state *f = src->state;
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->buf);
    free(f);
    src->state = NULL;
}

static const struct sp_source_vt file_vt = {
    .name = "file",
    .open = file_open,
    .poll = file_poll,
    .close = file_close,
};

struct sp_stream *sp_source_file(struct sp_job *job, const char *path, enum sp_format format,
                                 const struct sp_schema *schema, const struct sp_watermarks *wm)
{
    if (path == NULL || path[0] == '\0') {
        sp_job_set_error(job, "file source: no path given");
        return sp_job_add_source(job, "file", &file_vt, NULL, NULL, NULL);
    }
    if (format != SP_FORMAT_JSON && format != SP_FORMAT_CSV && format != SP_FORMAT_RAW &&
        format != SP_FORMAT_STRING) {
        sp_job_set_error(job, "file source: unknown format %d", (int)format);
        return sp_job_add_source(job, "file", &file_vt, NULL, NULL, NULL);
    }
    if (format == SP_FORMAT_RAW || format == SP_FORMAT_STRING) {
        int v = sp_schema_find(schema, "value");
        if (v < 0 || schema->fields[v].type != SP_T_STR) {
            sp_job_set_error(job, "file source: RAW and STRING need a string field 'value'");
            return sp_job_add_source(job, "file", &file_vt, NULL, NULL, NULL);
        }
    }
    size_t n = strlen(path);
    struct file_config *c = calloc(1, sizeof(*c) + n + 1);
    if (c == NULL) {
        sp_job_set_error(job, "file source: out of memory");
        return sp_job_add_source(job, "file", &file_vt, NULL, NULL, NULL);
    }
    c->format = format;
    memcpy(c->path, path, n + 1);
    return sp_job_add_source(job, "file", &file_vt, c, schema, wm);
}
