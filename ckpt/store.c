/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store (sp_ckpt_store.h): naming, writing, publishing,
 * finding, verifying and collecting checkpoints over a backend. It owns one
 * checkpoint in flight (its manifest under construction), a 1 MiB buffer
 * for verification reads and a scratch manifest for garbage collection, all
 * allocated at open; publish, read and collect allocate transient buffers
 * bounded by SP_CKPT_MANIFEST_BYTES_MAX and the configured capacities, which
 * is fine off the shards.
 *
 * Invariants: a published id is never reused and ids grow (begin refuses an
 * id at or below the newest manifest); every segment a published manifest
 * lists was durable before the manifest was written; garbage collection
 * deletes manifests before segments and never a segment that a remaining
 * manifest lists or that is newer than the newest manifest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "sp_ckpt_store.h"
#include "sp_crc32c.h"
#include "sp_log.h"

#define STORE_IO_BYTES (1u << 20)
#define STORE_SWEEP_MAX (1u << 22) /* segments a collection considers */

struct sp_ckpt_store {
    struct sp_ckpt_backend *backend;
    struct sp_ckpt_store_config config;
    struct sp_ckpt_manifest pending;
    bool in_flight;
    int pending_error; /* the first write error of the checkpoint in flight */
    uint32_t next_seq; /* per checkpoint, across its shards */
    struct sp_ckpt_manifest scratch;
    uint8_t *io_buf;
    uint64_t *ids; /* SP_CKPT_LIST_MAX listing scratch */
    enum sp_ckpt_fault fault;
};

void sp_ckpt_store_config_default(struct sp_ckpt_store_config *config)
{
    SP_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    config->segments_max = 4096;
    config->positions_max = 256;
    config->position_bytes_max = 64u << 10;
    config->checksum_kind = SP_CKPT_CHECKSUM_CRC32C;
    config->create = false;
}

/* ---- Opening and closing ---- */

int sp_ckpt_store_open_backend(struct sp_ckpt_backend *backend,
                               const struct sp_ckpt_store_config *config,
                               struct sp_ckpt_store **out)
{
    SP_ASSERT(backend != NULL);
    SP_ASSERT(config != NULL);
    SP_ASSERT(out != NULL);
    if (config->segments_max == 0 || config->segments_max > SP_CKPT_SEGMENTS_MAX ||
        config->positions_max > SP_CKPT_POSITIONS_MAX ||
        (config->checksum_kind != SP_CKPT_CHECKSUM_CRC32C &&
         config->checksum_kind != SP_CKPT_CHECKSUM_XXH64))
        return -EINVAL;
    struct sp_ckpt_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->config = *config;
    int err = sp_ckpt_manifest_init(&s->pending, config->segments_max, config->positions_max,
                                    config->position_bytes_max);
    if (err == 0)
        err = sp_ckpt_manifest_init(&s->scratch, config->segments_max, config->positions_max,
                                    config->position_bytes_max);
    s->io_buf = malloc(STORE_IO_BYTES);
    s->ids = calloc(SP_CKPT_LIST_MAX, sizeof(*s->ids));
    if (err == 0 && (s->io_buf == NULL || s->ids == NULL))
        err = -ENOMEM;
    if (err < 0) {
        sp_ckpt_manifest_deinit(&s->pending);
        sp_ckpt_manifest_deinit(&s->scratch);
        free(s->io_buf);
        free(s->ids);
        free(s);
        return err;
    }
    s->backend = backend;
    *out = s;
    return 0;
}

int sp_ckpt_store_open(const char *url, const struct sp_ckpt_store_config *config,
                       struct sp_ckpt_store **out)
{
    SP_ASSERT(url != NULL);
    SP_ASSERT(out != NULL);
    struct sp_ckpt_backend *backend = NULL;
    int err;
    if (strncmp(url, "file://", 7) == 0) {
        if (url[7] != '/')
            return -EINVAL; /* file://host/path: only the local host */
        err = sp_ckpt_backend_file_open(url + 7, config->create, &backend);
    } else if (strncmp(url, "s3://", 5) == 0) {
        err = sp_ckpt_backend_s3_open(url, &backend);
    } else {
        return strstr(url, "://") ? -EPROTONOSUPPORT : -EINVAL;
    }
    if (err < 0)
        return err;
    err = sp_ckpt_store_open_backend(backend, config, out);
    if (err < 0)
        backend->ops->close(backend);
    return err;
}

int sp_ckpt_store_open_reader(const char *url, struct sp_ckpt_store **out)
{
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    config.segments_max = 1; /* it writes nothing */
    return sp_ckpt_store_open(url, &config, out);
}

void sp_ckpt_store_close(struct sp_ckpt_store *store)
{
    if (store == NULL)
        return;
    sp_ckpt_store_abort(store);
    store->backend->ops->close(store->backend);
    sp_ckpt_manifest_deinit(&store->pending);
    sp_ckpt_manifest_deinit(&store->scratch);
    free(store->io_buf);
    free(store->ids);
    free(store);
}

struct sp_ckpt_backend *sp_ckpt_store_backend(struct sp_ckpt_store *store)
{
    SP_ASSERT(store != NULL);
    return store->backend;
}

void sp_ckpt_store_set_fault(struct sp_ckpt_store *store, enum sp_ckpt_fault fault)
{
    SP_ASSERT(store != NULL);
    store->fault = fault;
}

/* ---- Listing ---- */

struct list_ctx {
    uint64_t *ids;
    uint32_t max;
    uint32_t count; /* found, possibly more than max */
};

static int list_one(const char *key, uint64_t size_bytes, void *ctx)
{
    struct list_ctx *l = ctx;
    (void)size_bytes;
    uint64_t id;
    if (sp_ckpt_manifest_key_id(key, &id) < 0)
        return 0; /* not a manifest of ours */
    if (l->count < l->max)
        l->ids[l->count] = id;
    l->count++;
    return 0;
}

static int id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists every id into the store's scratch, sorted: the count, -E2BIG past SP_CKPT_LIST_MAX. */
static int list_all(struct sp_ckpt_store *store)
{
    struct list_ctx l = {.ids = store->ids, .max = SP_CKPT_LIST_MAX, .count = 0};
    int err = store->backend->ops->list(store->backend, SP_CKPT_MANIFEST_PREFIX, list_one, &l);
    if (err < 0)
        return err;
    if (l.count > SP_CKPT_LIST_MAX)
        return -E2BIG;
    qsort(store->ids, l.count, sizeof(*store->ids), id_cmp);
    return (int)l.count;
}

int sp_ckpt_store_list(struct sp_ckpt_store *store, uint64_t *ids, uint32_t max)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(ids != NULL || max == 0);
    int n = list_all(store);
    if (n < 0)
        return n;
    memcpy(ids, store->ids, sizeof(*ids) * SP_MIN((uint32_t)n, max));
    return n;
}

static void manifest_key(uint64_t id, char *key, size_t cap)
{
    int n = snprintf(key, cap, SP_CKPT_MANIFEST_PREFIX "%016" PRIx64 SP_CKPT_MANIFEST_SUFFIX, id);
    SP_ASSERT(n > 0 && (size_t)n < cap);
}

/* ---- Writing a checkpoint ---- */

int sp_ckpt_store_begin(struct sp_ckpt_store *store, const struct sp_ckpt_info *info)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(info != NULL);
    if (store->in_flight)
        return -EBUSY;
    if (info->checkpoint_id == 0 || info->job == NULL ||
        strlen(info->job) > SP_CKPT_JOB_BYTES_MAX || info->shard_count == 0 ||
        info->shard_count > SP_CKPT_SHARDS_MAX || info->key_group_first >= info->key_group_end)
        return -EINVAL;
    int n = list_all(store);
    if (n < 0)
        return n;
    if (n > 0 && store->ids[n - 1] >= info->checkpoint_id)
        return -EEXIST;
    struct sp_ckpt_manifest *m = &store->pending;
    sp_ckpt_manifest_clear(m);
    m->checkpoint_id = info->checkpoint_id;
    m->shard_count = info->shard_count;
    m->key_group_first = info->key_group_first;
    m->key_group_end = info->key_group_end;
    memcpy(m->job, info->job, strlen(info->job) + 1);
    store->in_flight = true;
    store->pending_error = 0;
    store->next_seq = 0;
    return 0;
}

static uint64_t checksum_of(uint8_t kind, const void *data, size_t len)
{
    if (kind == SP_CKPT_CHECKSUM_XXH64)
        return XXH64(data, len, 0);
    SP_ASSERT(kind == SP_CKPT_CHECKSUM_CRC32C);
    return sp_crc32c(0, data, len);
}

int sp_ckpt_store_write_segment(struct sp_ckpt_store *store, uint32_t shard, const void *data,
                                size_t len, struct sp_ckpt_segment *out)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(store->in_flight);
    SP_ASSERT(data != NULL || len == 0);
    struct sp_ckpt_manifest *m = &store->pending;
    if (shard >= m->shard_count)
        return -EINVAL;
    if (m->segment_count == m->segment_max)
        return -E2BIG;
    struct sp_ckpt_segment s;
    memset(&s, 0, sizeof(s));
    int n = snprintf(s.name, sizeof(s.name),
                     SP_CKPT_SEGMENT_PREFIX "%016" PRIx64 "-%04" PRIx32 "-%08" PRIx32,
                     m->checkpoint_id, shard, store->next_seq++);
    SP_ASSERT(n > 0 && (size_t)n < sizeof(s.name));
    s.size_bytes = len;
    s.checksum_kind = store->config.checksum_kind;
    s.checksum = checksum_of(s.checksum_kind, data != NULL ? data : "", len);
    s.shard = shard;
    s.written_by_id = m->checkpoint_id;
    int err = store->backend->ops->put(store->backend, s.name, data != NULL ? data : "", len);
    if (err < 0) {
        if (store->pending_error == 0)
            store->pending_error = err;
        return err;
    }
    err = sp_ckpt_manifest_add_segment(m, &s);
    SP_ASSERT(err == 0); /* capacity checked above, the name is ours */
    if (out != NULL)
        *out = s;
    return 0;
}

int sp_ckpt_store_reference(struct sp_ckpt_store *store, const struct sp_ckpt_segment *earlier)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(store->in_flight);
    SP_ASSERT(earlier != NULL);
    struct sp_ckpt_manifest *m = &store->pending;
    if (earlier->written_by_id == 0 || earlier->written_by_id >= m->checkpoint_id ||
        earlier->shard >= m->shard_count)
        return -EINVAL;
    if (sp_ckpt_manifest_find_segment(m, earlier->name) >= 0)
        return -EEXIST;
    if (m->segment_count == m->segment_max)
        return -E2BIG;
    uint64_t size_bytes;
    int err = store->backend->ops->stat(store->backend, earlier->name, &size_bytes);
    if (err < 0)
        return err;
    if (size_bytes != earlier->size_bytes)
        return -EBADMSG;
    return sp_ckpt_manifest_add_segment(m, earlier);
}

int sp_ckpt_store_set_position(struct sp_ckpt_store *store, const void *key, uint32_t key_bytes,
                               const void *value, uint32_t value_bytes)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(store->in_flight);
    return sp_ckpt_manifest_add_position(&store->pending, key, key_bytes, value, value_bytes);
}

int sp_ckpt_store_publish(struct sp_ckpt_store *store, int64_t time_ms)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(store->in_flight);
    if (store->pending_error < 0)
        return store->pending_error;
    struct sp_ckpt_manifest *m = &store->pending;
    m->time_ms = time_ms != 0 ? time_ms : sp_wall_ms();
    size_t bytes = sp_ckpt_manifest_encoded_bytes(m);
    if (bytes > SP_CKPT_MANIFEST_BYTES_MAX)
        return -E2BIG;
    uint8_t *buf = malloc(bytes);
    if (buf == NULL)
        return -ENOMEM;
    int64_t n = sp_ckpt_manifest_encode(m, buf, bytes);
    SP_ASSERT(n == (int64_t)bytes);
    char key[SP_CKPT_KEY_BYTES_MAX + 1];
    manifest_key(m->checkpoint_id, key, sizeof(key));
    int err = store->backend->ops->put(store->backend, key, buf, bytes);
    free(buf);
    if (err < 0)
        return err;
    store->in_flight = false;
    return 0;
}

void sp_ckpt_store_abort(struct sp_ckpt_store *store)
{
    SP_ASSERT(store != NULL);
    if (!store->in_flight)
        return;
    const struct sp_ckpt_manifest *m = &store->pending;
    for (uint32_t i = 0; i < m->segment_count; i++) {
        if (m->segments[i].written_by_id == m->checkpoint_id)
            (void)store->backend->ops->del(store->backend, m->segments[i].name);
    }
    store->in_flight = false;
}

/* ---- Reading and verifying ---- */

int sp_ckpt_store_read_manifest(struct sp_ckpt_store *store, uint64_t id,
                                struct sp_ckpt_manifest *m)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(m != NULL);
    char key[SP_CKPT_KEY_BYTES_MAX + 1];
    manifest_key(id, key, sizeof(key));
    uint64_t size_bytes;
    int err = store->backend->ops->stat(store->backend, key, &size_bytes);
    if (err < 0)
        return err;
    if (size_bytes > SP_CKPT_MANIFEST_BYTES_MAX)
        return -EBADMSG;
    uint8_t *buf = malloc(size_bytes ? size_bytes : 1);
    if (buf == NULL)
        return -ENOMEM;
    int64_t n = store->backend->ops->get(store->backend, key, 0, buf, size_bytes);
    if (n < 0)
        err = (int)n;
    else
        err = sp_ckpt_manifest_decode(m, buf, (size_t)n);
    free(buf);
    if (err == 0 && m->checkpoint_id != id)
        err = -EBADMSG; /* a manifest copied under another checkpoint's name */
    return err;
}

/* Reads through the store's buffer, a megabyte at a time. */
int sp_ckpt_store_verify_segment(struct sp_ckpt_store *store, const struct sp_ckpt_segment *s,
                                 uint64_t *bytes_read)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(s != NULL);
    SP_ASSERT(bytes_read != NULL);
    uint64_t at = 0;
    uint32_t crc = 0;
    XXH64_state_t xxh;
    XXH64_reset(&xxh, 0);
    /* Bounded: each pass reads at least one byte, and reading stops one
     * byte past the listed size (a longer object is as wrong as a shorter). */
    while (at <= s->size_bytes) {
        size_t want = (size_t)SP_MIN((uint64_t)STORE_IO_BYTES, s->size_bytes + 1 - at);
        int64_t n = store->backend->ops->get(store->backend, s->name, at, store->io_buf, want);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        if (at + (uint64_t)n > s->size_bytes)
            return -EBADMSG;
        if (s->checksum_kind == SP_CKPT_CHECKSUM_CRC32C)
            crc = sp_crc32c(crc, store->io_buf, (size_t)n);
        else
            XXH64_update(&xxh, store->io_buf, (size_t)n);
        at += (uint64_t)n;
        *bytes_read += (uint64_t)n;
    }
    if (at != s->size_bytes)
        return -EBADMSG;
    uint64_t sum = s->checksum_kind == SP_CKPT_CHECKSUM_CRC32C ? crc : XXH64_digest(&xxh);
    return sum == s->checksum ? 0 : -EBADMSG;
}

int sp_ckpt_store_read_segment(struct sp_ckpt_store *store, const struct sp_ckpt_segment *s,
                               void *buf)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(s != NULL);
    uint8_t *out = buf;
    uint64_t at = 0;
    while (at < s->size_bytes) {
        int64_t n =
            store->backend->ops->get(store->backend, s->name, at, out + at, s->size_bytes - at);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EBADMSG; /* shorter than listed */
        at += (uint64_t)n;
    }
    /* One byte more would say it is longer than listed. */
    uint8_t extra;
    int64_t n = store->backend->ops->get(store->backend, s->name, at, &extra, 1);
    if (n < 0)
        return (int)n;
    if (n > 0)
        return -EBADMSG;
    uint64_t sum = checksum_of(s->checksum_kind, out, (size_t)s->size_bytes);
    return sum == s->checksum ? 0 : -EBADMSG;
}

int sp_ckpt_store_verify(struct sp_ckpt_store *store, const struct sp_ckpt_manifest *m,
                         struct sp_ckpt_verify *report)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(m != NULL);
    struct sp_ckpt_verify local;
    struct sp_ckpt_verify *r = report != NULL ? report : &local;
    memset(r, 0, sizeof(*r));
    r->segment_count = m->segment_count;
    int first = 0;
    for (uint32_t i = 0; i < m->segment_count; i++) {
        int err = sp_ckpt_store_verify_segment(store, &m->segments[i], &r->bytes_read);
        if (err == 0)
            continue;
        if (err == -ENOENT)
            r->missing_count++;
        else if (err == -EBADMSG)
            r->bad_count++;
        if (first == 0) {
            first = err;
            r->first_error = err;
            memcpy(r->first_bad, m->segments[i].name, sizeof(r->first_bad));
        }
        if (err != -ENOENT && err != -EBADMSG)
            break; /* the backend is failing: stop reading */
    }
    return first;
}

int sp_ckpt_store_latest(struct sp_ckpt_store *store, struct sp_ckpt_manifest *m)
{
    SP_ASSERT(store != NULL);
    SP_ASSERT(m != NULL);
    int n = list_all(store);
    if (n < 0)
        return n;
    for (int i = n - 1; i >= 0; i--) {
        uint64_t id = store->ids[i];
        int err = sp_ckpt_store_read_manifest(store, id, m);
        struct sp_ckpt_verify report;
        if (err == 0)
            err = sp_ckpt_store_verify(store, m, &report);
        if (err == 0)
            return 0;
        if (err != -ENOENT && err != -EBADMSG && err != -EPROTONOSUPPORT && err != -E2BIG)
            return err; /* the storage failed, not the checkpoint: do not fall back */
        sp_warn("checkpoint %" PRIu64 " does not verify (%s), trying an earlier one", id,
                strerror(-err));
        /* list_all's scratch is reused by nothing above; ids stay valid. */
    }
    sp_ckpt_manifest_clear(m);
    return -ENOENT;
}

/* ---- Retention and garbage collection ---- */

struct name_set {
    char (*names)[SP_CKPT_SEGMENT_NAME_BYTES_MAX + 1];
    uint32_t count, max;
};

static int name_set_add(struct name_set *set, const char *name)
{
    if (set->count == set->max) {
        if (set->max >= STORE_SWEEP_MAX)
            return -E2BIG;
        uint32_t max = set->max ? set->max * 2 : 1024;
        void *p = realloc(set->names, (size_t)max * sizeof(*set->names));
        if (p == NULL)
            return -ENOMEM;
        set->names = p;
        set->max = max;
    }
    snprintf(set->names[set->count++], sizeof(set->names[0]), "%s", name);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int sweep_list_one(const char *key, uint64_t size_bytes, void *ctx)
{
    (void)size_bytes;
    return name_set_add(ctx, key) < 0 ? 1 : 0;
}

/* The writer's id in "segments/<16 hex>-...": 0 when the name is not ours. */
static uint64_t segment_writer_id(const char *name)
{
    const char *p = name + sizeof(SP_CKPT_SEGMENT_PREFIX) - 1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = p[i];
        if (c >= '0' && c <= '9')
            v = (v << 4) | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = (v << 4) | (uint64_t)(c - 'a' + 10);
        else
            return 0;
    }
    return p[16] == '-' ? v : 0;
}

/* Collects the names every remaining manifest (ids[first..n)) lists, sorted. */
static int gather_referenced(struct sp_ckpt_store *store, const uint64_t *ids, int first, int n,
                             struct name_set *keep)
{
    for (int i = first; i < n; i++) {
        int err = sp_ckpt_store_read_manifest(store, ids[i], &store->scratch);
        if (err < 0)
            return err; /* cannot tell what it needs: delete nothing */
        for (uint32_t j = 0; j < store->scratch.segment_count; j++) {
            err = name_set_add(keep, store->scratch.segments[j].name);
            if (err < 0)
                return err;
        }
    }
    qsort(keep->names, keep->count, sizeof(keep->names[0]), name_cmp);
    return 0;
}

/* Deletes listed segments no remaining manifest references: the count deleted, or -errno. */
static int sweep_segments(struct sp_ckpt_store *store, const struct name_set *keep,
                          uint64_t newest_id)
{
    struct name_set all = {0};
    int err =
        store->backend->ops->list(store->backend, SP_CKPT_SEGMENT_PREFIX, sweep_list_one, &all);
    if (err == 0 && all.count == all.max && all.max >= STORE_SWEEP_MAX)
        err = -E2BIG;
    int deleted = 0;
    for (uint32_t i = 0; err == 0 && i < all.count; i++) {
        uint64_t writer = segment_writer_id(all.names[i]);
        if (writer == 0 || writer > newest_id)
            continue; /* not ours, or a checkpoint in flight */
        if (keep->count > 0 && bsearch(all.names[i], keep->names, keep->count,
                                       sizeof(keep->names[0]), name_cmp) != NULL)
            continue;
        int ret = store->backend->ops->del(store->backend, all.names[i]);
        if (ret < 0 && ret != -ENOENT)
            err = ret;
        else
            deleted++;
    }
    free(all.names);
    return err < 0 ? err : deleted;
}

int sp_ckpt_store_retain(struct sp_ckpt_store *store, uint32_t retain_count)
{
    SP_ASSERT(store != NULL);
    if (retain_count == 0)
        return -EINVAL;
    if (store->in_flight)
        return -EBUSY;
    int n = list_all(store);
    if (n <= 0)
        return n;
    int first = n > (int)retain_count ? n - (int)retain_count : 0;
    int deleted = 0;
    /* Step 1: older manifests go first; each checkpoint stops existing here. */
    for (int i = 0; i < first; i++) {
        char key[SP_CKPT_KEY_BYTES_MAX + 1];
        manifest_key(store->ids[i], key, sizeof(key));
        int err = store->backend->ops->del(store->backend, key);
        if (err < 0 && err != -ENOENT)
            return err;
        deleted++;
    }
    if (store->fault == SP_CKPT_FAULT_GC_AFTER_MANIFESTS)
        return -EINTR; /* a simulated crash between the two steps */
    /* Step 2: mark what the remaining manifests need, sweep the rest. */
    uint64_t newest_id = store->ids[n - 1];
    struct name_set keep = {0};
    int err = gather_referenced(store, store->ids, first, n, &keep);
    if (err == 0)
        err = sweep_segments(store, &keep, newest_id);
    free(keep.names);
    if (err < 0)
        return err;
    deleted += err;
    /* Step 3: what crashed puts left behind (never a published object). */
    if (store->backend->ops->sweep_partial != NULL) {
        err = store->backend->ops->sweep_partial(store->backend);
        if (err < 0)
            return err;
        deleted += err;
    }
    return deleted;
}
