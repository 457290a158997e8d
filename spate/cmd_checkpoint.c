/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate checkpoint list URL / spate checkpoint inspect URL [ID]: what a
 * checkpoint store holds, read through ckpt/sp_ckpt_store.h and never
 * written to (it may run beside the job that writes the store).
 *
 * list: one line per published checkpoint (id, time, shards, segments, how
 * many of them are shared with earlier checkpoints, bytes in all and bytes
 * it wrote itself, and whether its manifest and every segment verify), then
 * what the store holds in all and which checkpoint a restore would use.
 * inspect: one checkpoint in full (the newest that verifies when no ID is
 * given): job, time, shards, key groups, source positions, and each segment
 * with its size, checksum, writer and verification.
 *
 * spate savepoint FROM_URL TO_URL [ID]: a savepoint, the checkpoint ID of
 * FROM_URL (the newest that verifies without one) copied with every
 * segment it needs, its incremental chain included, into the store TO_URL
 * as one checkpoint that references nothing else: self-contained, kept
 * however FROM_URL's retention goes on, and what `spate run JOB
 * --checkpoint-dir URL --from-savepoint TO_URL` starts from. Every segment
 * is verified as it is read; nothing is published unless all were copied.
 *
 * Exit status: 0 when the store was read (list), the checkpoint verifies
 * (inspect) or the savepoint was written; 1 when a store cannot be read or
 * written, or the checkpoint is missing or fails verification; 2 for wrong
 * usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "sp_ckpt_store.h"

#define CHECKPOINT_LIST_MAX 1024 /* list shows at most this many, newest last */

static int usage_error(const char *why)
{
    fprintf(stderr,
            "spate: checkpoint: %s (usage: spate checkpoint list URL | "
            "spate checkpoint inspect URL [ID])\n",
            why);
    return 2;
}

static void format_time(int64_t time_ms, char *out, size_t cap)
{
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, cap, "?");
        return;
    }
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", day, (int)(time_ms % 1000));
}

static struct sp_ckpt_store *open_store(const char *url)
{
    struct sp_ckpt_store *store = NULL;
    int err = sp_ckpt_store_open_reader(url, &store);
    if (err < 0) {
        fprintf(stderr, "spate: checkpoint: cannot open %s: %s\n", url, strerror(-err));
        return NULL;
    }
    return store;
}

static int manifest_init(struct sp_ckpt_manifest *m)
{
    int err = sp_ckpt_manifest_init(m, SP_CKPT_SEGMENTS_MAX, SP_CKPT_POSITIONS_MAX,
                                    SP_CKPT_POSITION_BLOB_MAX);
    if (err < 0)
        fprintf(stderr, "spate: checkpoint: %s\n", strerror(-err));
    return err;
}

/* One line of verification status: "ok" or what failed. */
static void describe(int err, const struct sp_ckpt_verify *r, char *out, size_t cap)
{
    if (err == 0)
        snprintf(out, cap, "ok");
    else if (r == NULL)
        snprintf(out, cap, "BAD manifest: %s", strerror(-err));
    else if (r->first_error == -ENOENT)
        snprintf(out, cap, "BAD: %u segment(s) missing, first %s", r->missing_count, r->first_bad);
    else if (r->first_error == -EBADMSG)
        snprintf(out, cap, "BAD: %u segment(s) corrupt or truncated, first %s", r->bad_count,
                 r->first_bad);
    else
        snprintf(out, cap, "BAD: %s", strerror(-err));
}

/* ---- list ---- */

struct store_totals {
    uint64_t count;
    uint64_t bytes;
};

static int total_one(const char *key, uint64_t size_bytes, void *ctx)
{
    struct store_totals *t = ctx;
    (void)key;
    t->count++;
    t->bytes += size_bytes;
    return 0;
}

static void list_one(struct sp_ckpt_store *store, uint64_t id, struct sp_ckpt_manifest *m,
                     uint64_t *good_id)
{
    int err = sp_ckpt_store_read_manifest(store, id, m);
    if (err < 0) {
        char status[160];
        describe(err, NULL, status, sizeof(status));
        printf("%-8" PRIu64 " %-24s %6s %8s %6s %12s %12s  %s\n", id, "-", "-", "-", "-", "-", "-",
               status);
        return;
    }
    uint32_t shared = 0;
    uint64_t bytes = 0, own_bytes = 0;
    for (uint32_t i = 0; i < m->segment_count; i++) {
        bytes += m->segments[i].size_bytes;
        if (m->segments[i].written_by_id == id)
            own_bytes += m->segments[i].size_bytes;
        else
            shared++;
    }
    struct sp_ckpt_verify report;
    err = sp_ckpt_store_verify(store, m, &report);
    if (err == 0)
        *good_id = id;
    char when[40], status[200];
    format_time(m->time_ms, when, sizeof(when));
    describe(err, &report, status, sizeof(status));
    printf("%-8" PRIu64 " %-24s %6u %8u %6u %12" PRIu64 " %12" PRIu64 "  %s\n", id, when,
           m->shard_count, m->segment_count, shared, bytes, own_bytes, status);
}

static int checkpoint_list(const char *url)
{
    struct sp_ckpt_store *store = open_store(url);
    if (store == NULL)
        return 1;
    static uint64_t ids[CHECKPOINT_LIST_MAX];
    int n = sp_ckpt_store_list(store, ids, CHECKPOINT_LIST_MAX);
    struct sp_ckpt_manifest m;
    if (n < 0 || manifest_init(&m) < 0) {
        if (n < 0)
            fprintf(stderr, "spate: checkpoint: cannot list %s: %s\n", url, strerror(-n));
        sp_ckpt_store_close(store);
        return 1;
    }
    printf("%-8s %-24s %6s %8s %6s %12s %12s  %s\n", "ID", "TIME (UTC)", "SHARDS", "SEGMENTS",
           "SHARED", "BYTES", "OWN BYTES", "STATUS");
    uint64_t good_id = 0;
    int shown = SP_MIN(n, CHECKPOINT_LIST_MAX);
    for (int i = 0; i < shown; i++)
        list_one(store, ids[i], &m, &good_id);
    struct store_totals totals = {0};
    struct sp_ckpt_backend *be = sp_ckpt_store_backend(store);
    int err = be->ops->list(be, SP_CKPT_SEGMENT_PREFIX, total_one, &totals);
    printf("%d checkpoint(s)%s; %" PRIu64 " segment object(s), %" PRIu64 " bytes stored\n", n,
           n > shown ? " (the oldest shown)" : "", totals.count, totals.bytes);
    if (good_id != 0)
        printf("restore would use checkpoint %" PRIu64 "\n", good_id);
    else
        printf("no checkpoint verifies: a restore would start from scratch\n");
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(store);
    if (err < 0)
        fprintf(stderr, "spate: checkpoint: cannot list segments: %s\n", strerror(-err));
    return err < 0 ? 1 : 0;
}

/* ---- inspect ---- */

static void print_bytes(const uint8_t *p, uint32_t len)
{
    bool text = true;
    for (uint32_t i = 0; i < len; i++)
        text = text && p[i] >= 0x20 && p[i] < 0x7f;
    if (text) {
        printf("%.*s", (int)len, (const char *)p);
        return;
    }
    printf("0x");
    for (uint32_t i = 0; i < len; i++)
        printf("%02x", p[i]);
}

static void inspect_header(const struct sp_ckpt_manifest *m, uint64_t manifest_bytes)
{
    char when[40];
    format_time(m->time_ms, when, sizeof(when));
    printf("checkpoint %" PRIu64 "\n", m->checkpoint_id);
    printf("  job         %s\n", m->job);
    printf("  time        %s (%" PRId64 " ms)\n", when, m->time_ms);
    printf("  shards      %u\n", m->shard_count);
    printf("  key groups  [%u, %u)\n", m->key_group_first, m->key_group_end);
    printf("  manifest    %" PRIu64 " bytes, format version %d\n", manifest_bytes,
           SP_CKPT_MANIFEST_VERSION);
    printf("  positions   %u\n", m->position_count);
    for (uint32_t i = 0; i < m->position_count; i++) {
        const struct sp_ckpt_position *p = &m->positions[i];
        printf("    ");
        print_bytes(m->blob + p->key_offset, p->key_bytes);
        printf(" = ");
        print_bytes(m->blob + p->value_offset, p->value_bytes);
        printf("\n");
    }
}

static int inspect_segments(struct sp_ckpt_store *store, const struct sp_ckpt_manifest *m)
{
    printf("  segments    %u\n", m->segment_count);
    printf("    %-42s %5s %12s %-24s %-10s %s\n", "NAME", "SHARD", "BYTES", "CHECKSUM",
           "WRITTEN BY", "STATUS");
    int first = 0;
    uint64_t bytes = 0, bytes_read = 0;
    for (uint32_t i = 0; i < m->segment_count; i++) {
        const struct sp_ckpt_segment *s = &m->segments[i];
        int err = sp_ckpt_store_verify_segment(store, s, &bytes_read);
        const char *status = err == 0          ? "ok"
                             : err == -ENOENT  ? "MISSING"
                             : err == -EBADMSG ? "BAD (size or checksum)"
                                               : strerror(-err);
        char sum[40];
        snprintf(sum, sizeof(sum), "%s:%0*" PRIx64,
                 s->checksum_kind == SP_CKPT_CHECKSUM_CRC32C ? "crc32c" : "xxh64",
                 s->checksum_kind == SP_CKPT_CHECKSUM_CRC32C ? 8 : 16, s->checksum);
        char by[24];
        snprintf(by, sizeof(by), "%" PRIu64 "%s", s->written_by_id,
                 s->written_by_id == m->checkpoint_id ? "" : " (ref)");
        printf("    %-42s %5u %12" PRIu64 " %-24s %-10s %s\n", s->name, s->shard, s->size_bytes,
               sum, by, status);
        bytes += s->size_bytes;
        if (first == 0)
            first = err;
    }
    printf("  total       %" PRIu64 " bytes in segments\n", bytes);
    printf("  status      %s\n",
           first == 0 ? "ok: every segment verifies" : "BAD: does not verify");
    return first;
}

static int checkpoint_inspect(const char *url, const char *id_text)
{
    uint64_t id = 0;
    if (id_text != NULL) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(id_text, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || id_text[0] == '-')
            return usage_error("ID must be a positive integer");
        id = v;
    }
    struct sp_ckpt_store *store = open_store(url);
    struct sp_ckpt_manifest m;
    if (store == NULL)
        return 1;
    if (manifest_init(&m) < 0) {
        sp_ckpt_store_close(store);
        return 1;
    }
    int err =
        id != 0 ? sp_ckpt_store_read_manifest(store, id, &m) : sp_ckpt_store_latest(store, &m);
    int ret = 1;
    if (err < 0) {
        if (id != 0)
            fprintf(stderr, "spate: checkpoint: %" PRIu64 ": %s\n", id,
                    err == -ENOENT ? "no such checkpoint" : strerror(-err));
        else
            fprintf(stderr, "spate: checkpoint: no checkpoint in %s verifies\n", url);
    } else {
        char key[SP_CKPT_KEY_BYTES_MAX + 1];
        snprintf(key, sizeof(key), SP_CKPT_MANIFEST_PREFIX "%016" PRIx64 SP_CKPT_MANIFEST_SUFFIX,
                 m.checkpoint_id);
        uint64_t manifest_bytes = 0;
        struct sp_ckpt_backend *be = sp_ckpt_store_backend(store);
        (void)be->ops->stat(be, key, &manifest_bytes);
        inspect_header(&m, manifest_bytes);
        ret = inspect_segments(store, &m) == 0 ? 0 : 1;
    }
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(store);
    return ret;
}

/* Segments in restore order: by shard, then by the checkpoint that wrote
 * them, then by name (their write order). */
static int chain_cmp(const void *a, const void *b)
{
    const struct sp_ckpt_segment *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    if (x->written_by_id != y->written_by_id)
        return x->written_by_id < y->written_by_id ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int savepoint(const char *from, const char *to, const char *id_text)
{
    uint64_t id = 0;
    if (id_text != NULL) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(id_text, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || id_text[0] == '-') {
            fprintf(stderr, "spate: savepoint: ID must be a positive integer\n");
            return 2;
        }
        id = v;
    }
    struct sp_ckpt_store *src = open_store(from);
    if (src == NULL)
        return 1;
    struct sp_ckpt_manifest m;
    if (manifest_init(&m) < 0) {
        sp_ckpt_store_close(src);
        return 1;
    }
    int ret = 1;
    struct sp_ckpt_store *dst = NULL;
    uint8_t *buf = NULL;
    int err = id != 0 ? sp_ckpt_store_read_manifest(src, id, &m) : sp_ckpt_store_latest(src, &m);
    if (err < 0) {
        fprintf(stderr, "spate: savepoint: %s: %s\n", from,
                id != 0 ? strerror(-err) : "no checkpoint verifies");
        goto out;
    }
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    config.create = true;
    config.segments_max = SP_CKPT_SEGMENTS_MAX;
    config.positions_max = SP_CKPT_POSITIONS_MAX;
    config.position_bytes_max = SP_CKPT_POSITION_BLOB_MAX;
    if ((err = sp_ckpt_store_open(to, &config, &dst)) < 0) {
        fprintf(stderr, "spate: savepoint: cannot open %s: %s\n", to, strerror(-err));
        dst = NULL;
        goto out;
    }
    /* The same id unless TO_URL already holds that one or a newer. */
    uint64_t ids[SP_CKPT_LIST_MAX];
    int n = sp_ckpt_store_list(dst, ids, SP_CKPT_LIST_MAX);
    if (n < 0) {
        fprintf(stderr, "spate: savepoint: %s: %s\n", to, strerror(-n));
        goto out;
    }
    uint64_t new_id = m.checkpoint_id;
    if (n > 0 && ids[SP_MIN(n, (int)SP_CKPT_LIST_MAX) - 1] >= new_id)
        new_id = ids[SP_MIN(n, (int)SP_CKPT_LIST_MAX) - 1] + 1;
    struct sp_ckpt_info info = {.checkpoint_id = new_id,
                                .job = m.job,
                                .shard_count = m.shard_count,
                                .key_group_first = m.key_group_first,
                                .key_group_end = m.key_group_end};
    if ((err = sp_ckpt_store_begin(dst, &info)) < 0) {
        fprintf(stderr, "spate: savepoint: %s: %s\n", to, strerror(-err));
        goto out;
    }
    qsort(m.segments, m.segment_count, sizeof(m.segments[0]), chain_cmp);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m.segment_count; i++) {
        const struct sp_ckpt_segment *seg = &m.segments[i];
        free(buf);
        buf = malloc(seg->size_bytes ? seg->size_bytes : 1);
        if (buf == NULL) {
            err = -ENOMEM;
        } else if ((err = sp_ckpt_store_read_segment(src, seg, buf)) < 0) {
            fprintf(stderr, "spate: savepoint: %s: segment %s: %s\n", from, seg->name,
                    strerror(-err));
        } else if ((err = sp_ckpt_store_write_segment(dst, seg->shard, buf, seg->size_bytes,
                                                      NULL)) < 0) {
            fprintf(stderr, "spate: savepoint: %s: %s\n", to, strerror(-err));
        }
        if (err < 0)
            break;
        bytes += seg->size_bytes;
    }
    for (uint32_t i = 0; err == 0 && i < m.position_count; i++) {
        const struct sp_ckpt_position *p = &m.positions[i];
        err = sp_ckpt_store_set_position(dst, m.blob + p->key_offset, p->key_bytes,
                                         m.blob + p->value_offset, p->value_bytes);
    }
    if (err == 0)
        err = sp_ckpt_store_publish(dst, m.time_ms);
    if (err < 0) {
        fprintf(stderr, "spate: savepoint: nothing published in %s: %s\n", to, strerror(-err));
        sp_ckpt_store_abort(dst);
        goto out;
    }
    printf("savepoint of checkpoint %" PRIu64 " (job %s, %u shards) in %s as checkpoint %" PRIu64
           ": %u segments, %" PRIu64 " bytes\n",
           m.checkpoint_id, m.job, m.shard_count, to, new_id, m.segment_count, bytes);
    ret = 0;
out:
    free(buf);
    if (dst != NULL)
        sp_ckpt_store_close(dst);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(src);
    return ret;
}

int spate_savepoint(const struct spate_cli *cli)
{
    if (cli->pass_count < 2 || cli->pass_count > 3) {
        fprintf(stderr, "spate: savepoint: usage: spate savepoint FROM_URL TO_URL [ID]\n");
        return 2;
    }
    return savepoint(cli->pass[0], cli->pass[1], cli->pass_count == 3 ? cli->pass[2] : NULL);
}

int spate_checkpoint(const struct spate_cli *cli)
{
    if (cli->pass_count < 1)
        return usage_error("list or inspect?");
    const char *verb = cli->pass[0];
    if (strcmp(verb, "list") == 0) {
        if (cli->pass_count != 2)
            return usage_error("list takes one URL");
        return checkpoint_list(cli->pass[1]);
    }
    if (strcmp(verb, "inspect") == 0) {
        if (cli->pass_count < 2 || cli->pass_count > 3)
            return usage_error("inspect takes a URL and an optional ID");
        return checkpoint_inspect(cli->pass[1], cli->pass_count == 3 ? cli->pass[2] : NULL);
    }
    return usage_error("unknown subcommand");
}
