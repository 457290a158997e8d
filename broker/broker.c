/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker's machinery: the topic registry, accepting connections on
 * every shard, reading frames, answering in order, and partition operations
 * that run on the partition's owner shard (see sp_broker.h). The API
 * handlers are in apis.c.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_log.h"
#include "sp_record.h"

void sp_broker_config_default(struct sp_broker_config *c)
{
    *c = (struct sp_broker_config){
        .host = "127.0.0.1",
        .port = 9092,
        .node_id = 0,
        .auto_create_topics = true,
        .default_partitions = 1,
        .max_request_bytes = SP_KAFKA_FRAME_BYTES_MAX_DEFAULT,
        .max_connections = 4096,
        .max_inflight = 64,
        .transaction_max_timeout_ms = 900000,
        .fetch_sessions_max = 1000,
        .idle_timeout_ms = 600000,
        .accept_backoff_ms = 100,
        .max_topics = 10000,
        .max_partitions = 100000,
        .metadata_partitions_max = 100000,
    };
    sp_plog_config_default(&c->log, NULL);
    c->log.cleaner_interval_ms = 15000;
}

/* ---- Topic registry ---- */

const struct topic_set *topics_now(struct sp_broker *b)
{
    return atomic_load_explicit(&b->topics, memory_order_acquire);
}

static int name_cmp(const char *a, const char *b, size_t blen)
{
    int c = strncmp(a, b, blen);
    if (c != 0)
        return c;
    return a[blen] == '\0' ? 0 : 1;
}

const struct topic *topic_find(const struct topic_set *set, const char *name, size_t len)
{
    uint32_t lo = 0, hi = set->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(set->topics[mid].name, name, len);
        if (c == 0)
            return &set->topics[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Kafka's rule: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
static bool topic_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > TOPIC_NAME_MAX)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Writes the registry: `topics` in the data directory, replaced atomically. */
static int topics_persist(struct sp_broker *b, const struct topic_set *set)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/topics", b->data_dir);
    snprintf(tmp, sizeof(tmp), "%s/topics.tmp", b->data_dir);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    for (uint32_t i = 0; i < set->count; i++) {
        fprintf(f, "%s %" PRId32 " ", set->topics[i].name, set->topics[i].partitions);
        for (int k = 0; k < 16; k++)
            fprintf(f, "%02x", set->topics[i].id[k]);
        /* The topic's own configs follow as name=value (older files have none). */
        for (int k = 0; k < TCFG_COUNT; k++) {
            if (set->topics[i].config.set & (1u << k)) {
                char v[64];
                tcfg_format(k, set->topics[i].config.v[k], v, sizeof(v));
                fprintf(f, " %s=%s", tcfg_name(k), v);
            }
        }
        fputc('\n', f);
    }
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0) {
        int dfd = open(b->data_dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}

static int topic_cmp(const void *a, const void *b)
{
    return strcmp(((const struct topic *)a)->name, ((const struct topic *)b)->name);
}

/* A new snapshot: `old`'s topics plus `add` (NULL: none). */
static struct topic_set *topics_with(const struct topic_set *old, const struct topic *add)
{
    struct topic_set *set = calloc(1, sizeof(*set));
    uint32_t n = (old != NULL ? old->count : 0) + (add != NULL);
    if (set == NULL || (set->topics = calloc(n ? n : 1, sizeof(struct topic))) == NULL) {
        free(set);
        return NULL;
    }
    for (uint32_t i = 0; old != NULL && i < old->count; i++)
        set->topics[set->count++] = old->topics[i]; /* names shared: freed with the broker */
    if (add != NULL)
        set->topics[set->count++] = *add;
    qsort(set->topics, set->count, sizeof(struct topic), topic_cmp);
    return set;
}

int16_t topic_create(struct sp_broker *b, const char *name, size_t len, int32_t partitions,
                     const struct topic **out)
{
    return topic_create_with(b, name, len, partitions, NULL, out);
}

/* Whether `set` may take `topics` more topics with `partitions` more partitions
 * (the broker's caps); a Kafka error code. Under the lock. */
static int16_t topics_room(const struct sp_broker *b, const struct topic_set *set, uint32_t topics,
                           int64_t partitions)
{
    int64_t have = 0;
    for (uint32_t i = 0; i < set->count; i++)
        have += set->topics[i].partitions;
    if ((uint64_t)set->count + topics > b->config.max_topics)
        return KERR_POLICY_VIOLATION;
    if (have + partitions > (int64_t)b->config.max_partitions)
        return KERR_INVALID_PARTITIONS;
    return KERR_NONE;
}

int16_t topic_create_with(struct sp_broker *b, const char *name, size_t len, int32_t partitions,
                          const struct topic_config *config, const struct topic **out)
{
    if (!topic_name_ok(name, len))
        return KERR_INVALID_TOPIC;
    if (partitions == -1)
        partitions = b->config.default_partitions;
    if (partitions <= 0 || partitions > 100000)
        return KERR_INVALID_PARTITIONS;
    pthread_mutex_lock(&b->topics_lock);
    struct topic_set *old = atomic_load_explicit(&b->topics, memory_order_acquire);
    const struct topic *exists = topic_find(old, name, len);
    if (exists != NULL) {
        pthread_mutex_unlock(&b->topics_lock);
        if (out != NULL)
            *out = exists;
        return KERR_TOPIC_ALREADY_EXISTS;
    }
    int16_t room = topics_room(b, old, 1, partitions);
    if (room != KERR_NONE) {
        pthread_mutex_unlock(&b->topics_lock);
        return room;
    }
    struct topic t = {.name = strndup(name, len), .partitions = partitions};
    if (config != NULL)
        t.config = *config;
    if (t.name == NULL || getrandom(t.id, sizeof(t.id), 0) != (ssize_t)sizeof(t.id)) {
        pthread_mutex_unlock(&b->topics_lock);
        free(t.name);
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    struct topic_set *set = topics_with(old, &t);
    int rc = set != NULL ? topics_persist(b, set) : -ENOMEM;
    if (rc < 0) {
        pthread_mutex_unlock(&b->topics_lock);
        sp_error("broker: cannot record topic '%s': %s", t.name, strerror(-rc));
        if (set != NULL) {
            free(set->topics);
            free(set);
        }
        free(t.name);
        return KERR_KAFKA_STORAGE_ERROR;
    }
    set->older = old;
    atomic_store_explicit(&b->topics, set, memory_order_release);
    pthread_mutex_unlock(&b->topics_lock);
    sp_info("broker: created topic '%s' with %" PRId32 " partitions", t.name, partitions);
    if (out != NULL)
        *out = topic_find(set, name, len);
    return KERR_NONE;
}

static int16_t topics_publish(struct sp_broker *b, struct topic_set *old, struct topic_set *set,
                              const char *what, const char *name);

void topics_create_batch(struct sp_broker *b, const struct sp_kstr *names, int32_t n, int16_t *errs)
{
    int32_t parts = b->config.default_partitions;
    pthread_mutex_lock(&b->topics_lock);
    struct topic_set *old = atomic_load_explicit(&b->topics, memory_order_acquire);
    /* The new topics, checked and named; the caller passed each name once. */
    struct topic *add = calloc(n > 0 ? (size_t)n : 1, sizeof(*add));
    uint32_t adding = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *name = names[i].ptr;
        size_t len = names[i].len > 0 ? (size_t)names[i].len : 0;
        if (!topic_name_ok(name, len)) {
            errs[i] = KERR_INVALID_TOPIC;
        } else if (topic_find(old, name, len) != NULL) {
            errs[i] = KERR_TOPIC_ALREADY_EXISTS;
        } else if (add == NULL) {
            errs[i] = KERR_UNKNOWN_SERVER_ERROR;
        } else if ((errs[i] = topics_room(b, old, adding + 1, (int64_t)(adding + 1) * parts)) ==
                   KERR_NONE) {
            struct topic *t = &add[adding];
            t->name = strndup(name, len);
            t->partitions = parts;
            if (t->name == NULL || getrandom(t->id, sizeof(t->id), 0) != (ssize_t)sizeof(t->id)) {
                free(t->name);
                errs[i] = KERR_UNKNOWN_SERVER_ERROR;
            } else {
                adding++;
            }
        }
    }
    struct topic_set *set = NULL;
    if (adding > 0 && (set = calloc(1, sizeof(*set))) != NULL &&
        (set->topics = calloc(old->count + adding, sizeof(struct topic))) == NULL) {
        free(set);
        set = NULL;
    }
    for (uint32_t i = 0; set != NULL && i < old->count; i++)
        set->topics[set->count++] = old->topics[i];
    for (uint32_t i = 0; set != NULL && i < adding; i++)
        set->topics[set->count++] = add[i];
    if (set != NULL)
        qsort(set->topics, set->count, sizeof(struct topic), topic_cmp);
    int16_t err = adding > 0 ? topics_publish(b, old, set, "the creation", add[0].name) : KERR_NONE;
    pthread_mutex_unlock(&b->topics_lock);
    for (int32_t i = 0, k = 0; i < n && adding > 0; i++) {
        if (errs[i] != KERR_NONE)
            continue;
        if (err != KERR_NONE)
            errs[i] = err;
        else
            sp_info("broker: created topic '%s' with %" PRId32 " partitions", add[k].name, parts);
        if (err != KERR_NONE)
            free(add[k].name);
        k++;
    }
    free(add);
}

int16_t topic_set_config(struct sp_broker *b, const char *name, size_t len,
                         const struct topic_config *config)
{
    if (name == NULL || len == 0 || len > TOPIC_NAME_MAX)
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    pthread_mutex_lock(&b->topics_lock);
    struct topic_set *old = atomic_load_explicit(&b->topics, memory_order_acquire);
    const struct topic *t = topic_find(old, name, len);
    if (t == NULL) {
        pthread_mutex_unlock(&b->topics_lock);
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    struct topic_set *set = topics_with(old, NULL);
    if (set != NULL)
        ((struct topic *)topic_find(set, name, len))->config = *config;
    int16_t err = topics_publish(b, old, set, "the configs", t->name);
    pthread_mutex_unlock(&b->topics_lock);
    return err;
}

void topic_log_config(const struct sp_broker *b, const struct topic *t, struct sp_plog_config *c)
{
    *c = b->config.log;
    if (t != NULL)
        tcfg_apply(&t->config, c);
}

/* Publishes `set` (built from the current snapshot `old`) under the lock:
 * persisted first; KERR_KAFKA_STORAGE_ERROR (and `set` freed) when it cannot. */
static int16_t topics_publish(struct sp_broker *b, struct topic_set *old, struct topic_set *set,
                              const char *what, const char *name)
{
    int rc = set != NULL ? topics_persist(b, set) : -ENOMEM;
    if (rc < 0) {
        sp_error("broker: cannot record %s of topic '%s': %s", what, name, strerror(-rc));
        if (set != NULL) {
            free(set->topics);
            free(set);
        }
        return KERR_KAFKA_STORAGE_ERROR;
    }
    set->older = old;
    atomic_store_explicit(&b->topics, set, memory_order_release);
    return KERR_NONE;
}

int16_t topic_delete(struct sp_broker *b, const char *name, size_t len, struct topic *out)
{
    if (name == NULL || len == 0 || len > TOPIC_NAME_MAX)
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    pthread_mutex_lock(&b->topics_lock);
    struct topic_set *old = atomic_load_explicit(&b->topics, memory_order_acquire);
    const struct topic *gone = topic_find(old, name, len);
    if (gone == NULL) {
        pthread_mutex_unlock(&b->topics_lock);
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    }
    struct topic_set *set = calloc(1, sizeof(*set));
    if (set != NULL && (set->topics = calloc(old->count, sizeof(struct topic))) == NULL) {
        free(set);
        set = NULL;
    }
    for (uint32_t i = 0; set != NULL && i < old->count; i++) {
        if (&old->topics[i] != gone)
            set->topics[set->count++] = old->topics[i]; /* still sorted */
    }
    int16_t err = topics_publish(b, old, set, "the deletion", gone->name);
    pthread_mutex_unlock(&b->topics_lock);
    if (err == KERR_NONE) {
        /* The name stays valid: `old` keeps it until the broker is freed. */
        if (out != NULL)
            *out = *gone;
        sp_info("broker: deleted topic '%s'", gone->name);
    }
    return err;
}

int16_t topic_add_partitions(struct sp_broker *b, const char *name, size_t len, int32_t count,
                             bool validate_only, int32_t *was)
{
    if (name == NULL || len == 0 || len > TOPIC_NAME_MAX)
        return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    pthread_mutex_lock(&b->topics_lock);
    struct topic_set *old = atomic_load_explicit(&b->topics, memory_order_acquire);
    const struct topic *t = topic_find(old, name, len);
    int16_t err = KERR_NONE;
    if (t == NULL)
        err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
    else if (was != NULL)
        *was = t->partitions;
    if (err == KERR_NONE && (count <= t->partitions || count > 100000))
        err = KERR_INVALID_PARTITIONS;
    if (err != KERR_NONE || validate_only) {
        pthread_mutex_unlock(&b->topics_lock);
        return err;
    }
    struct topic_set *set = topics_with(old, NULL);
    if (set != NULL) {
        struct topic *mine = (struct topic *)topic_find(set, name, len);
        mine->partitions = count;
    }
    err = topics_publish(b, old, set, "the partitions", t->name);
    pthread_mutex_unlock(&b->topics_lock);
    if (err == KERR_NONE)
        sp_info("broker: topic '%s' now has %" PRId32 " partitions", t->name, count);
    return err;
}

/* Doubles the room of a snapshot being loaded; false when out of memory. */
static bool topics_grow(struct topic_set *set, uint32_t *cap)
{
    struct topic *p = realloc(set->topics, (size_t)*cap * 2 * sizeof(struct topic));
    if (p == NULL)
        return false;
    set->topics = p;
    *cap *= 2;
    return true;
}

/* Reads the `topics` file: 0, or -errno / -EBADMSG. */
static int topics_load(struct sp_broker *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/topics", b->data_dir);
    struct topic_set *set = topics_with(NULL, NULL);
    if (set == NULL)
        return -ENOMEM;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        atomic_store(&b->topics, set);
        return errno == ENOENT ? 0 : -errno;
    }
    uint32_t cap = 1; /* topics_with(NULL, NULL) made room for one */
    char line[2048];
    int rc = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char name[TOPIC_NAME_MAX + 2], hex[40];
        int32_t parts;
        int used = 0;
        if (sscanf(line, "%250s %" SCNd32 " %39s%n", name, &parts, hex, &used) != 3 ||
            !topic_name_ok(name, strlen(name)) || parts <= 0 || strlen(hex) != 32) {
            rc = -EBADMSG;
            break;
        }
        struct topic t = {.name = NULL, .partitions = parts};
        /* Then the topic's own configs, name=value, space separated (none in older files). */
        for (char *tok = strtok(line + used, " \n"); tok != NULL && rc == 0;
             tok = strtok(NULL, " \n")) {
            char *eq = strchr(tok, '=');
            int key = eq != NULL ? tcfg_key(tok, (size_t)(eq - tok)) : -1;
            char msg[8];
            if (key < 0 || tcfg_parse(key, eq + 1, strlen(eq + 1), &t.config.v[key], msg,
                                      sizeof(msg)) != KERR_NONE)
                rc = -EBADMSG;
            else
                t.config.set |= 1u << key;
        }
        if (rc < 0)
            break;
        t.name = strdup(name);
        for (int k = 0; k < 16; k++) {
            unsigned v;
            if (sscanf(hex + 2 * k, "%2x", &v) != 1)
                rc = -EBADMSG;
            t.id[k] = (uint8_t)v;
        }
        /* Appended, then sorted once: loading stays linear in the topics. */
        if (t.name == NULL || (set->count == cap && !topics_grow(set, &cap))) {
            free(t.name);
            rc = rc < 0 ? rc : -ENOMEM;
            break;
        }
        set->topics[set->count++] = t;
    }
    fclose(f);
    qsort(set->topics, set->count, sizeof(struct topic), topic_cmp);
    atomic_store(&b->topics, set);
    return rc;
}

unsigned partition_owner(const struct sp_broker *b, const char *topic, int32_t partition)
{
    uint32_t h = 2166136261u;
    for (const char *p = topic; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (h + (uint32_t)partition) % b->shards;
}

/* ---- Broker ---- */

static int parse_port_host(struct sp_broker *b, char *why, size_t why_size)
{
    uint16_t port = 0;
    int fd = sp_tcp_listen(b->host, b->config.port, 1024, &port);
    if (fd < 0) {
        snprintf(why, why_size, "cannot listen on %s:%u: %s", b->host, b->config.port,
                 strerror(-fd));
        return fd;
    }
    b->listen_fd = fd;
    b->port = port;
    return 0;
}

int sp_broker_create(const struct sp_broker_config *config, unsigned shards, struct sp_broker **out,
                     char *why, size_t why_size)
{
    if (config->data_dir == NULL || shards == 0) {
        snprintf(why, why_size, "a data directory is needed");
        return -EINVAL;
    }
    if (config->default_partitions <= 0 || config->max_request_bytes < 64 ||
        config->max_inflight == 0 || config->max_connections == 0) {
        snprintf(why, why_size,
                 "default partitions, request size, in-flight requests and "
                 "connections must be positive");
        return -EINVAL;
    }
    if ((config->tls_cert_file == NULL) != (config->tls_key_file == NULL)) {
        snprintf(why, why_size, "TLS needs both a certificate and a key");
        return -EINVAL;
    }
    if (config->sasl != SP_BROKER_SASL_NONE && config->users_file == NULL) {
        snprintf(why, why_size, "SASL needs a users file");
        return -EINVAL;
    }
    if (config->accept_backoff_ms == 0) {
        snprintf(why, why_size, "the accept back-off must be positive");
        return -EINVAL;
    }
    struct sp_broker *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->config = *config;
    b->shards = shards;
    long page = sysconf(_SC_PAGESIZE);
    b->page_bytes = page > 0 ? (uint64_t)page : 4096u;
    b->listen_fd = -1;
    b->host = strdup(config->host != NULL ? config->host : "127.0.0.1");
    b->advertised_host =
        strdup(config->advertised_host != NULL ? config->advertised_host : b->host);
    b->data_dir = strdup(config->data_dir);
    b->per_shard = calloc(shards, sizeof(*b->per_shard));
    pthread_mutex_init(&b->topics_lock, NULL);
    int rc = -ENOMEM;
    if (b->host == NULL || b->advertised_host == NULL || b->data_dir == NULL ||
        b->per_shard == NULL) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    if (mkdir(b->data_dir, 0755) < 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(why, why_size, "cannot create '%s': %s", b->data_dir, strerror(errno));
        goto fail;
    }
    rc = topics_load(b);
    if (rc < 0) {
        snprintf(why, why_size, "cannot read '%s/topics': %s", b->data_dir,
                 rc == -EBADMSG ? "not a topics file" : strerror(-rc));
        goto fail;
    }
    rc = producer_ids_load(b);
    if (rc < 0) {
        snprintf(why, why_size, "cannot read '%s/producer-ids': %s", b->data_dir,
                 rc == -EBADMSG ? "not a producer id file" : strerror(-rc));
        goto fail;
    }
    if (config->tls_cert_file != NULL) {
        rc = tls_ctx_create(config->tls_cert_file, config->tls_key_file, &b->tls, why, why_size);
        if (rc < 0)
            goto fail;
    }
    if (config->sasl != SP_BROKER_SASL_NONE) {
        rc = sasl_users_load(config->users_file, config->sasl, &b->users, why, why_size);
        if (rc < 0)
            goto fail;
    }
    rc = parse_port_host(b, why, why_size);
    if (rc < 0)
        goto fail;
    *out = b;
    return 0;
fail:
    sp_broker_free(b);
    return rc;
}

uint16_t sp_broker_port(const struct sp_broker *b)
{
    return b->port;
}

void sp_broker_free(struct sp_broker *b)
{
    if (b == NULL)
        return;
    if (b->listen_fd >= 0)
        close(b->listen_fd);
    tls_ctx_free(b->tls);
    sasl_users_free(b->users);
    struct topic_set *set = atomic_load(&b->topics);
    /* Names are shared by the snapshots from the one that added a topic to
     * the one before its deletion (never added again: a new topic has its
     * own copy): each is freed by the newest snapshot that holds it, oldest
     * snapshot first (a look-up reads only names not freed yet). */
    size_t chain = 0;
    for (struct topic_set *s = set; s != NULL; s = s->older)
        chain++;
    struct topic_set **order = calloc(chain ? chain : 1, sizeof(*order));
    size_t at = chain;
    for (struct topic_set *s = set; s != NULL && order != NULL; s = s->older)
        order[--at] = s; /* oldest first */
    for (size_t k = 0; k < chain && order != NULL; k++) {
        const struct topic_set *newer = k + 1 < chain ? order[k + 1] : NULL;
        for (uint32_t i = 0; i < order[k]->count; i++) {
            char *name = order[k]->topics[i].name;
            const struct topic *kept = newer != NULL ? topic_find(newer, name, strlen(name)) : NULL;
            if (kept == NULL || kept->name != name)
                free(name);
        }
    }
    free(order);
    while (set != NULL) {
        struct topic_set *older = set->older;
        free(set->topics);
        free(set);
        set = older;
    }
    pthread_mutex_destroy(&b->topics_lock);
    free(b->per_shard);
    free(b->host);
    free(b->advertised_host);
    free(b->data_dir);
    free(b);
}

struct bshard *bshard_of(struct sp_broker *b, struct sp_shard *shard)
{
    return b->per_shard[shard->id];
}

/* ---- Partitions on their owner ---- */

/* A partition log as part_get opens it: what was started on it through
 * pop_run, so that deleting it waits for those to complete. */
struct part_own {
    struct part part; /* first: a struct part * is a struct part_own * */
    uint64_t appends, reads;
    uint32_t flushes; /* markers' flushes in flight */
    /* Appends and markers that met a full append buffer, in arrival order:
     * later ones queue behind them, so none overtakes another. */
    struct pop *wait_head, *wait_tail;
    struct sp_timer wait_timer;
};

static struct part *part_get(struct bshard *bs, const char *topic, int32_t partition, int *err)
{
    for (struct part *p = bs->parts; p != NULL; p = p->next) {
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    }
    /* Only partitions of the registry get a log (not one of a topic deleted
     * while a request for it was on its way). */
    const struct topic *t = topic_find(topics_now(bs->b), topic, strlen(topic));
    if (t == NULL || partition < 0 || partition >= t->partitions) {
        *err = -ENOENT;
        return NULL;
    }
    struct part_own *own = calloc(1, sizeof(*own));
    struct part *p = own != NULL ? &own->part : NULL;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s-%" PRId32, bs->b->data_dir, topic, partition);
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        *err = -ENOMEM;
        return NULL;
    }
    struct sp_plog_config c;
    topic_log_config(bs->b, t, &c); /* the broker's settings with the topic's own */
    c.dir = dir;
    int rc = sp_plog_open(bs->shard, &c, &p->log);
    if (rc < 0) {
        sp_error("broker: cannot open the log of %s-%" PRId32 ": %s", topic, partition,
                 strerror(-rc));
        free(p->topic);
        free(p);
        *err = rc;
        return NULL;
    }
    p->partition = partition;
    producers_recover(p, dir);
    p->next = bs->parts;
    bs->parts = p;
    return p;
}

struct part *part_here(struct sp_broker *b, const char *topic, int32_t partition, int *err)
{
    struct bshard *bs = bshard_here(b);
    int e = 0;
    struct part *p = NULL;
    if (bs == NULL)
        e = -EINVAL;
    else if (partition_owner(b, topic, partition) != bs->shard->id)
        e = -EXDEV;
    else
        p = part_get(bs, topic, partition, &e);
    if (err != NULL)
        *err = e;
    return p;
}

struct sp_plog *part_log_here(struct sp_broker *b, const char *topic, int32_t partition, int *err)
{
    struct part *p = part_here(b, topic, partition, err);
    return p != NULL ? p->log : NULL;
}

void part_read_started(struct sp_broker *b, struct sp_plog *log)
{
    struct bshard *bs = bshard_here(b);
    for (struct part *p = bs != NULL ? bs->parts : NULL; p != NULL; p = p->next) {
        if (p->log == log)
            ((struct part_own *)p)->reads++;
    }
}

/* Removes the files of a partition's directory, then the directory. */
static int part_dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT && rc == 0)
            rc = -errno;
    }
    closedir(d);
    if (rmdir(dir) < 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

static void part_drop_step(struct pop *p, struct part *pt);

static void part_drop_retry(struct sp_timer *t, void *ctx)
{
    (void)t;
    struct pop *p = ctx;
    part_drop_step(p, p->slot);
}

/* Closes the log once what pop_run started on it has completed, then
 * removes the directory and answers. */
static void part_drop_step(struct pop *p, struct part *pt)
{
    struct sp_broker *b = p->home->b;
    struct sp_shard *here = b->per_shard[p->owner]->shard;
    if (pt != NULL) {
        struct part_own *own = (struct part_own *)pt;
        struct sp_plog_stats st;
        sp_plog_stats(pt->log, &st);
        if (st.append_count + st.append_failed_count < own->appends || st.read_count < own->reads ||
            own->wait_head != NULL || own->flushes > 0) {
            p->slot = pt;
            sp_timer_init(&p->retry, part_drop_retry, p);
            sp_shard_timer_arm(here, &p->retry, sp_now_ns() + 1000000);
            return;
        }
        sp_plog_close(pt->log);
        producers_free(pt);
        free(pt->topic);
        free(pt);
    }
    p->slot = NULL;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s-%" PRId32, b->data_dir, p->topic, p->partition);
    int rc = part_dir_remove(dir);
    if (rc < 0) {
        sp_error("broker: cannot remove '%s': %s", dir, strerror(-rc));
        p->error = KERR_KAFKA_STORAGE_ERROR;
    } else {
        p->error = KERR_NONE;
    }
    pop_reply(p);
}

void part_drop_call(struct pop *p)
{
    struct bshard *bs = bshard_here(p->home->b);
    struct part *pt = NULL;
    /* Out of the list first: nothing new starts on it (part_get does not
     * open it again: its topic is gone from the registry). */
    for (struct part **at = &bs->parts; *at != NULL; at = &(*at)->next) {
        if ((*at)->partition == p->partition && strcmp((*at)->topic, p->topic) == 0) {
            pt = *at;
            *at = pt->next;
            pt->next = NULL;
            break;
        }
    }
    part_drop_step(p, pt);
}

static void pop_retry_reply(struct sp_timer *t, void *ctx)
{
    (void)t;
    pop_reply(ctx);
}

/* Back on the request's shard. The handler's done hook takes the result
 * and, once nothing is pending, finishes the request, which may free it and
 * its connection: nothing here touches either after the hook. */
static void pop_arrived(struct sp_shard *shard, void *arg)
{
    (void)shard;
    struct pop *p = arg;
    if (p->req != NULL)
        p->req->pending--;
    p->done(p);
}

/* Sends the result home (or runs it here when home is here). */
void pop_reply(struct pop *p)
{
    struct sp_broker *b = p->home->b;
    struct sp_shard *here = b->per_shard[p->owner]->shard;
    if (p->origin == p->owner) {
        pop_arrived(here, p);
        return;
    }
    if (sp_shard_send(here, p->origin, pop_arrived, p) < 0) {
        /* The ring is full: backpressure; try again in a moment. */
        sp_timer_init(&p->retry, pop_retry_reply, p);
        sp_shard_timer_arm(here, &p->retry, sp_now_ns() + 100000);
    }
}

static int16_t kafka_error_of(int err)
{
    switch (err) {
    case -ERANGE:
        return KERR_OFFSET_OUT_OF_RANGE;
    case -EMSGSIZE:
        return KERR_MESSAGE_TOO_LARGE;
    case -EBADMSG:
        return KERR_CORRUPT_MESSAGE;
    default:
        return KERR_KAFKA_STORAGE_ERROR;
    }
}

static void pop_run(struct sp_shard *shard, void *arg);

static void pop_retry_run(struct sp_timer *t, void *ctx)
{
    (void)t;
    struct pop *p = ctx;
    pop_run(p->home->b->per_shard[p->owner]->shard, p);
}

static void fill_offsets(struct pop *p, struct sp_plog *log)
{
    p->high_watermark = sp_plog_stable_end(log);
    p->log_start = sp_plog_start_offset(log);
}

static void marker_flushed(void *ctx, int err, int64_t offset)
{
    (void)offset;
    struct pop *p = ctx;
    ((struct part_own *)p->part)->flushes--;
    if (err < 0)
        p->error = kafka_error_of(err); /* the coordinator writes the marker again */
    pop_reply(p);
}

static void append_done(void *ctx, int err, int64_t base_offset)
{
    struct pop *p = ctx;
    if (p->kind == POP_MARKER && err == 0) {
        producers_marker(p->part, p, base_offset);
        /* The coordinator records the transaction's end once every marker
         * is durable, whatever the flush policy: a marker lost in a crash
         * would leave the partition's stable offset stuck. */
        p->error = KERR_NONE;
        p->base_offset = base_offset;
        int rc = sp_plog_flush(p->part->log, marker_flushed, p);
        if (rc == 0) {
            ((struct part_own *)p->part)->flushes++;
            return;
        }
        err = rc;
    } else if (p->part != NULL && p->kind == POP_APPEND)
        producers_done(p->part, p, err, base_offset);
    p->error = err < 0 ? kafka_error_of(err) : KERR_NONE;
    p->base_offset = base_offset;
    pop_reply(p);
}

/* The whole batches of data[0..len) that start before `end`: their bytes. */
static uint32_t batches_before(const uint8_t *data, uint32_t len, int64_t end)
{
    struct sp_record_set set;
    sp_record_set_init(&set, data, len);
    struct sp_record_batch batch;
    uint32_t keep = 0;
    while (sp_record_set_next(&set, &batch) == 1 && batch.base_offset < end)
        keep += (uint32_t)batch.size;
    return keep;
}

static void read_done(void *ctx, int err, const uint8_t *data, uint32_t len);

/*
 * Where the records are: mapped, so the answer is sent from the page cache
 * (by io_uring's workers, which take any page fault) without a copy. A
 * mapping that fails falls back to reading.
 */
static void slice_done(void *ctx, int err, int fd, uint64_t pos, uint32_t len)
{
    struct pop *p = ctx;
    if (err < 0) {
        p->error = kafka_error_of(err);
    } else if (len > 0) {
        uint64_t page = p->home->b->page_bytes; /* mmap offsets are multiples of it */
        uint64_t at = pos - pos % page;
        size_t map_len = len + (size_t)(pos - at);
        /* Little to send: a mapping (and its unmapping) costs more than a
         * copy; read it instead. */
        void *m = len >= REQ_GAP_MIN_BYTES
                      ? mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, (off_t)at)
                      : MAP_FAILED;
        close(fd);
        if (m == MAP_FAILED) {
            struct part *pt = p->part;
            p->slice = false;
            int rc = sp_plog_read(pt->log, p->offset, p->max_bytes, read_done, p);
            if (rc == 0) {
                ((struct part_own *)pt)->reads++;
                return;
            }
            p->error = kafka_error_of(rc);
        } else {
            p->map_base = m;
            p->map_len = map_len;
            p->records = (const uint8_t *)m + (pos - at);
            p->records_len = len;
        }
    }
    pop_reply(p);
}

/* Reads at least this large keep the log's buffer instead of a copy. */
#define READ_TAKE_BYTES (64u << 10)

static void read_done(void *ctx, int err, const uint8_t *data, uint32_t len)
{
    struct pop *p = ctx;
    if (err == 0 && p->isolation == 1 && len > 0) {
        /* read_committed: nothing at or past the last stable offset, and
         * the aborted transactions the reader must skip. */
        len = batches_before(data, len, p->lso);
        if (len > 0 &&
            producers_aborted(p->part, p->offset, p->lso, &p->aborted, &p->aborted_count) < 0)
            err = -ENOMEM;
    }
    if (err < 0) {
        p->error = kafka_error_of(err);
    } else if (len >= READ_TAKE_BYTES) {
        /* A large read: its buffer is handed over rather than copied. */
        p->records_mem = sp_plog_read_take(p->part->log, data);
        p->records = data;
        p->records_len = len;
    } else if (len > 0) {
        p->records_mem = malloc(len);
        if (p->records_mem == NULL) {
            p->error = KERR_UNKNOWN_SERVER_ERROR;
        } else {
            memcpy(p->records_mem, data, len);
            p->records = p->records_mem;
            p->records_len = len;
        }
    }
    pop_reply(p);
}

/* On the owner shard. */
/*
 * On the owner: hands an append or a marker to the log. 0 when it started
 * (its callback replies), 1 when it was answered here (refused by the
 * producer checks, a retry of a batch written already, an error), -EAGAIN
 * when the log's append buffer is full.
 */
static int append_try(struct part *pt, struct pop *p)
{
    int rc;
    if (p->kind == POP_MARKER) {
        /* A control batch ending p->pid's transaction on this partition. */
        struct sp_record_marker m = {.offset = 0,
                                     .timestamp = sp_wall_ms(),
                                     .producer_id = p->pid,
                                     .producer_epoch = p->epoch,
                                     .partition_leader_epoch = 0,
                                     .type = p->commit ? SP_RECORD_CONTROL_COMMIT
                                                       : SP_RECORD_CONTROL_ABORT,
                                     .coordinator_epoch = 0};
        uint8_t batch[128];
        size_t len = 0;
        rc = sp_record_marker_encode(batch, sizeof(batch), &m, &len);
        SP_ASSERT(rc == 0);
        p->part = pt;
        rc = sp_plog_append(pt->log, batch, (uint32_t)len, append_done, p);
    } else {
        if (!p->checked) { /* once: an append retried after -EAGAIN keeps its place */
            int64_t dup = -1;
            int16_t kerr = producers_check(pt, p, &dup);
            if (kerr != KERR_NONE || dup >= 0) {
                p->error = kerr;
                p->base_offset = dup; /* a retry of batches written already: their offset */
                pop_reply(p);
                return 1;
            }
            p->checked = true;
            p->part = p->pid >= 0 ? pt : NULL;
        }
        int64_t base = sp_plog_end_offset(pt->log);
        rc = sp_plog_append(pt->log, p->data, p->len, append_done, p);
        if (rc == 0 && p->part != NULL)
            producers_appended(pt, p, base);
        if (rc < 0 && rc != -EAGAIN && p->part != NULL)
            producers_done(pt, p, rc, -1);
    }
    if (rc == 0) {
        ((struct part_own *)pt)->appends++;
        return 0;
    }
    if (rc == -EAGAIN)
        return rc;
    p->error = kafka_error_of(rc);
    pop_reply(p);
    return 1;
}

/* The append buffer had room again, maybe: the waiting appends in order. */
static void appends_resume(struct sp_timer *t, void *ctx)
{
    struct part_own *own = ctx;
    while (own->wait_head != NULL) {
        struct pop *p = own->wait_head;
        fill_offsets(p, own->part.log);
        if (append_try(&own->part, p) == -EAGAIN) {
            sp_shard_timer_arm(sp_shard_current(), t, sp_now_ns() + 1000000);
            return;
        }
        own->wait_head = p->wait_next;
        if (own->wait_head == NULL)
            own->wait_tail = NULL;
    }
}

static void append_wait(struct part_own *own, struct pop *p)
{
    p->wait_next = NULL;
    if (own->wait_tail != NULL) {
        own->wait_tail->wait_next = p;
    } else {
        own->wait_head = p;
        sp_timer_init(&own->wait_timer, appends_resume, own);
        sp_shard_timer_arm(sp_shard_current(), &own->wait_timer, sp_now_ns() + 1000000);
    }
    own->wait_tail = p;
}

static void pop_run(struct sp_shard *shard, void *arg)
{
    struct pop *p = arg;
    struct bshard *bs = bshard_of(p->home->b, shard);
    if (p->kind == POP_CALL) {
        p->call(p);
        return;
    }
    int err = 0;
    struct part *pt = part_get(bs, p->topic, p->partition, &err);
    if (pt == NULL) {
        p->error = err == -ENOENT ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_KAFKA_STORAGE_ERROR;
        pop_reply(p);
        return;
    }
    fill_offsets(p, pt->log);
    p->lso = producers_lso(pt, p->high_watermark);
    int rc = 0;
    switch (p->kind) {
    case POP_APPEND:
    case POP_MARKER: {
        struct part_own *own = (struct part_own *)pt;
        if (own->wait_head != NULL || append_try(pt, p) == -EAGAIN)
            append_wait(own, p); /* in order behind those already waiting */
        return;
    }
    case POP_READ:
        if (p->offset == p->high_watermark ||
            (p->isolation == 1 && p->offset >= p->lso && p->offset <= p->high_watermark)) {
            pop_reply(p); /* nothing new (or nothing stable yet) */
            return;
        }
        p->part = pt;
        if (p->slice && p->isolation == 0)
            rc = sp_plog_read_slice(pt->log, p->offset, p->max_bytes, slice_done, p);
        else
            rc = sp_plog_read(pt->log, p->offset, p->max_bytes, read_done, p);
        break;
    case POP_CALL:
        break;
    }
    if (rc == 0)
        ((struct part_own *)pt)->reads++; /* a read started */
    if (rc == -EAGAIN) {
        sp_timer_init(&p->retry, pop_retry_run, p);
        sp_shard_timer_arm(shard, &p->retry, sp_now_ns() + 1000000);
    } else if (rc < 0) {
        p->error = kafka_error_of(rc);
        pop_reply(p);
    }
}

static void pop_send_retry(struct sp_timer *t, void *ctx)
{
    (void)t;
    struct pop *p = ctx;
    struct sp_shard *here = p->home->shard;
    if (sp_shard_send(here, p->owner, pop_run, p) < 0)
        sp_shard_timer_arm(here, &p->retry, sp_now_ns() + 100000);
}

static void pop_go(struct pop *p);

void pop_start(struct pop *p)
{
    if (p->home == NULL)
        p->home = p->req->conn->bs;
    p->owner = partition_owner(p->home->b, p->topic, p->partition);
    pop_go(p);
}

void pop_call(struct pop *p, unsigned owner)
{
    p->kind = POP_CALL;
    p->owner = owner;
    pop_go(p);
}

static void forward_done(struct pop *p)
{
    if (p->req->pending == 0)
        req_finish(p->req);
}

void req_forward(struct req *r, void *resp, void (*call)(struct pop *p))
{
    struct pop *p = req_alloc(r, sizeof(*p));
    if (p == NULL || resp == NULL) {
        r->resp = NULL;
        req_finish(r);
        return;
    }
    *p = (struct pop){.req = r, .call = call, .done = forward_done, .slot = resp};
    r->resp = resp;
    pop_call(p, 0);
}

struct bshard *bshard_here(struct sp_broker *b)
{
    struct sp_shard *shard = sp_shard_current();
    return shard != NULL ? b->per_shard[shard->id] : NULL;
}

static void pop_go(struct pop *p)
{
    if (p->home == NULL)
        p->home = p->req->conn->bs;
    struct bshard *bs = p->home;
    p->origin = bs->shard->id;
    if (p->req != NULL)
        p->req->pending++;
    if (p->owner == p->origin) {
        pop_run(bs->shard, p);
        return;
    }
    if (sp_shard_send(bs->shard, p->owner, pop_run, p) < 0) {
        /* The ring is full: backpressure; send it again in a moment. */
        sp_timer_init(&p->retry, pop_send_retry, p);
        sp_shard_timer_arm(bs->shard, &p->retry, sp_now_ns() + 100000);
    }
}

/* ---- Requests ---- */

void *req_alloc(struct req *r, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (p != NULL && !req_adopt(r, p)) {
        free(p);
        return NULL;
    }
    return p;
}

bool req_adopt(struct req *r, void *p)
{
    if (r->alloc_count == r->alloc_cap) {
        uint32_t cap = r->alloc_cap ? r->alloc_cap * 2 : 8;
        void **grown = realloc(r->allocs, cap * sizeof(*grown));
        if (grown == NULL)
            return false;
        r->allocs = grown;
        r->alloc_cap = cap;
    }
    r->allocs[r->alloc_count++] = p;
    return true;
}

char *req_strdup(struct req *r, struct sp_kstr s)
{
    size_t len = s.len > 0 ? (size_t)s.len : 0;
    char *p = req_alloc(r, len + 1);
    if (p != NULL && len > 0)
        memcpy(p, s.ptr, len);
    return p;
}

char *kstr_dup(struct sp_kstr s)
{
    if (s.len < 0)
        return NULL;
    char *d = malloc((size_t)s.len + 1);
    if (d == NULL)
        return NULL;
    if (s.len > 0)
        memcpy(d, s.ptr, (size_t)s.len);
    d[s.len] = '\0';
    return d;
}

static void req_free(struct req *r)
{
    if (r->api_free != NULL)
        r->api_free(r);
    for (uint32_t i = 0; i < r->alloc_count; i++)
        free(r->allocs[i]);
    free(r->allocs);
    free(r->frame);
    free(r->arena_mem);
    free(r->out);
    free(r->gaps);
    free(r->pieces);
    for (uint32_t i = 0; i < r->map_count; i++)
        munmap(r->maps[i].base, r->maps[i].len);
    free(r->maps);
    free(r);
}

static void conn_pump(struct conn *c);
static void conn_maybe_free(struct conn *c);

bool req_adopt_map(struct req *r, void *base, size_t len)
{
    if (r->map_count == r->map_cap) {
        uint32_t cap = r->map_cap ? r->map_cap * 2 : 8;
        struct req_map *g = realloc(r->maps, cap * sizeof(*g));
        if (g == NULL) {
            munmap(base, len);
            return false;
        }
        r->maps = g;
        r->map_cap = cap;
    }
    r->maps[r->map_count++] = (struct req_map){.base = base, .len = len};
    return true;
}

/* Whether p lies in one of the request's mappings. */
static bool req_mapped(const struct req *r, const uint8_t *p)
{
    for (uint32_t i = 0; i < r->map_count; i++) {
        const uint8_t *b = r->maps[i].base;
        if (p >= b && p < b + r->maps[i].len)
            return true;
    }
    return false;
}

/* The frame as pieces: out up to the first gap, the gap's bytes, out up to
 * the next, ... */
static void req_pieces(struct req *r)
{
    if (r->gap_count == 0)
        return;
    size_t at = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->gap_count; i++) {
        const struct sp_kgap *g = &r->gaps[i];
        if (g->at > at)
            r->pieces[n++] = (struct req_piece){.ptr = r->out + at, .len = g->at - at};
        r->pieces[n++] =
            (struct req_piece){.ptr = g->ptr, .len = g->len, .mapped = req_mapped(r, g->ptr)};
        at = g->at;
    }
    size_t phys = r->out_len - r->gap_bytes;
    if (phys > at)
        r->pieces[n++] = (struct req_piece){.ptr = r->out + at, .len = phys - at};
    r->piece_count = n;
    r->piece_at = 0;
    r->piece_start = 0;
}

/* What to send next, from out_sent on, in one run: the bytes at *ptr;
 * *mapped: they may fault (a mapped log segment). */
static size_t req_next_bytes(struct req *r, const uint8_t **ptr, bool *mapped)
{
    *mapped = false;
    if (r->piece_count == 0) {
        *ptr = r->out + r->out_sent;
        return r->out_len - r->out_sent;
    }
    while (r->out_sent >= r->piece_start + r->pieces[r->piece_at].len) {
        r->piece_start += r->pieces[r->piece_at].len;
        r->piece_at++;
        SP_ASSERT(r->piece_at < r->piece_count);
    }
    const struct req_piece *pc = &r->pieces[r->piece_at];
    size_t in = r->out_sent - r->piece_start;
    *ptr = pc->ptr + in;
    *mapped = pc->mapped;
    return pc->len - in;
}

void req_finish(struct req *r)
{
    struct conn *c = r->conn;
    if (!r->no_response && r->resp != NULL) {
        size_t n = sp_kafka_response_frame_size(r->key, r->version, r->resp);
        SP_ASSERT(r->gap_bytes <= n);
        r->out = malloc(n - r->gap_bytes);
        struct sp_kwriter w;
        if (r->out != NULL && r->gap_count > 0 &&
            ((r->gaps = calloc(r->gap_count, sizeof(*r->gaps))) == NULL ||
             (r->pieces = calloc(2 * (size_t)r->gap_count + 1, sizeof(*r->pieces))) == NULL)) {
            free(r->out);
            r->out = NULL;
        }
        if (r->out != NULL) {
            sp_kwriter_init(&w, r->out, n - r->gap_bytes);
            if (r->gap_count > 0)
                sp_kwriter_gaps(&w, r->gaps, r->gap_count, REQ_GAP_MIN_BYTES);
            int rc = sp_kafka_response_encode(&w, r->key, r->version, r->f.header.correlation_id,
                                              r->resp);
            if (rc == 0 && (w.gap_count != r->gap_count || w.p != w.end))
                rc = -EPROTO; /* the handler's gaps are not what the encoder left out */
            if (rc < 0) {
                sp_error("broker: cannot encode the %s v%d response for %s: %s",
                         r->f.api ? r->f.api->name : "?", r->version, c->peer, strerror(-rc));
                free(r->out);
                r->out = NULL;
            } else {
                r->out_len = n;
                req_pieces(r);
            }
        }
        if (r->out == NULL)
            c->closing = true;
    } else if (!r->no_response) {
        /* No answer could be built (out of memory): the client must not
         * wait for it, nor pair later answers with this request. */
        sp_error("broker: no %s answer for %s: closing", r->f.api ? r->f.api->name : "?", c->peer);
        c->closing = true;
    }
    r->done = true;
    conn_pump(c);
}

/* ---- Connections ---- */

#define CONN_UNAUTH_FRAME_MAX (512u * 1024u)
#define CONN_SASL_HANDSHAKE_KEY 17
#define CONN_SASL_AUTHENTICATE_KEY 36

static void conn_recv(struct conn *c);
static void conn_request(struct conn *c, const uint8_t *payload, size_t len);
static void conn_close(struct conn *c, const char *why);

/*
 * Turns the whole frames of the receive buffer into requests while the
 * connection has room for more (max_inflight: what a client sends ahead
 * waits in the buffer, and the socket, until answers go out). True when it
 * stopped for want of bytes, false at the limit or on closing.
 */
static bool conn_parse(struct conn *c)
{
    size_t at = 0;
    bool need_bytes = false;
    /* Requests answered at once may pump the connection: no receive may be
     * posted into the buffer until its frames are consumed. */
    c->parsing = true;
    /* Before SASL authentication a frame is at most 512 KiB (Kafka's
     * sasl.server.max.receive.size). */
    size_t frame_max = (size_t)c->bs->b->config.max_request_bytes + 4;
    if (SP_UNLIKELY(!c->authenticated))
        frame_max = SP_MIN(frame_max, (size_t)CONN_UNAUTH_FRAME_MAX + 4);
    while (!c->closing && !c->close_when_sent && c->reqs < c->bs->b->config.max_inflight) {
        size_t frame = 0;
        int rc = sp_kafka_frame_check(c->in + at, c->in_len - at, frame_max, &frame);
        if (rc < 0) {
            conn_close(c, "a frame larger than max_request_bytes, or a negative size");
            break;
        }
        if (rc == 0) {
            need_bytes = true;
            break;
        }
        conn_request(c, c->in + at + 4, frame - 4);
        at += frame;
    }
    c->parsing = false;
    if (!c->closing) {
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
    }
    return need_bytes;
}

static void conn_close(struct conn *c, const char *why)
{
    if (!c->closing && why != NULL)
        sp_warn("broker: closing %s: %s", c->peer, why);
    c->closing = true;
    /* A cancel refused (a full queue) leaves the receive to end by itself. */
    if (c->recv_posted && sp_io_cancel(c->bs->shard, &c->recv_op) < 0)
        sp_debug("broker: cannot cancel the receive of %s yet", c->peer);
    conn_maybe_free(c);
}

static void conn_maybe_free(struct conn *c)
{
    if (!c->closing || c->recv_posted || c->send_posted || c->parsing)
        return;
    /* Requests whose partition operations are still out stay until back
     * (their handlers see the connection closing and finish at once). */
    for (struct req *r = c->head; r != NULL; r = r->next) {
        if (r->pending > 0)
            return;
    }
    while (c->head != NULL) {
        struct req *r = c->head;
        c->head = r->next;
        sp_shard_timer_cancel(c->bs->shard, &r->timer);
        req_free(r);
    }
    if (c->prev_conn != NULL)
        c->prev_conn->next_conn = c->next_conn;
    else
        c->bs->conns = c->next_conn;
    if (c->next_conn != NULL)
        c->next_conn->prev_conn = c->prev_conn;
    close(c->fd);
    atomic_fetch_sub(&c->bs->b->connections, 1);
    tls_conn_free(c->tls);
    sasl_conn_free(c->sasl);
    free(c->in);
    free(c);
}

static void send_done(struct sp_io_op *op, int res, void *ctx)
{
    (void)op;
    struct conn *c = ctx;
    c->send_posted = false;
    if (res <= 0) {
        conn_close(c, res == 0 ? "send returned 0" : strerror(-res));
        return;
    }
    if (c->tls != NULL)
        tls_sent(c->tls, (size_t)res); /* plaintext was counted when encrypted */
    else
        c->head->out_sent += (size_t)res;
    conn_pump(c);
}

/* TLS: posts the send of the ciphertext waiting (handshake records or
 * encrypted answers). 1 when a send is on its way, 0 when there is nothing
 * to send, -1 when the connection was closed (c may be gone). */
static int conn_tls_send(struct conn *c)
{
    SP_ASSERT(!c->send_posted);
    const uint8_t *buf = NULL;
    uint32_t len = 0;
    if (!tls_send_buf(c->tls, &buf, &len))
        return 0;
    if (sp_io_send(c->bs->shard, &c->send_op, c->fd, buf, len, send_done, c) < 0) {
        conn_close(c, "the submission queue is full");
        return -1;
    }
    c->send_posted = true;
    return 1;
}

/* Sends the answers that are ready, in order; reads on when there is room. */
static void conn_pump(struct conn *c)
{
    while (!c->closing && !c->send_posted) {
        if (c->tls != NULL && conn_tls_send(c) != 0)
            return; /* ciphertext on its way first (or closed) */
        struct req *r = c->head;
        if (r == NULL || !r->done)
            break;
        if (r->out_sent < r->out_len) {
            if (c->tls != NULL) {
                /* Encrypt a chunk; the loop sends it. */
                size_t written = 0;
                char why[256];
                const uint8_t *next;
                bool mapped;
                size_t len = req_next_bytes(r, &next, &mapped);
                SP_ASSERT(!mapped); /* no mapped records over TLS (fetch.c) */
                if (tls_write(c->tls, next, len, &written, why, sizeof(why)) < 0) {
                    conn_close(c, why);
                    return;
                }
                r->out_sent += written;
                continue;
            }
            const uint8_t *next;
            bool mapped;
            size_t len = req_next_bytes(r, &next, &mapped);
            uint32_t n = (uint32_t)SP_MIN(len, (size_t)1 << 30);
            /* Mapped records may fault: sent by io_uring's workers, which
             * also send them in one blocking call (faster, for tens of
             * MiB, than sends retried on the ring). */
            if ((mapped
                     ? sp_io_send_async(c->bs->shard, &c->send_op, c->fd, next, n, send_done, c)
                     : sp_io_send(c->bs->shard, &c->send_op, c->fd, next, n, send_done, c)) < 0) {
                conn_close(c, "the submission queue is full");
                return;
            }
            c->send_posted = true;
            return;
        }
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->reqs--;
        req_free(r);
    }
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (SP_UNLIKELY(c->close_when_sent)) {
        /* A refused authentication: its answer went out, nothing more. */
        if (c->head == NULL && !c->send_posted && !c->parsing)
            conn_close(c, NULL);
        return;
    }
    uint32_t max = c->bs->b->config.max_inflight;
    if (c->recv_posted || c->parsing || c->reqs >= max)
        return;
    if (c->in_len > 0) {
        /* Frames that waited for room first. */
        bool need_bytes = conn_parse(c);
        if (c->closing) {
            conn_maybe_free(c);
            return;
        }
        if (!need_bytes || c->recv_posted || c->reqs >= max)
            return;
    }
    conn_recv(c);
}

/* After SaslHandshake v0, a frame is a raw SASL token: its answer is
 * queued as a ready response (raw too), or the connection closes. */
static void conn_sasl_token(struct conn *c, const uint8_t *token, size_t len)
{
    struct req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    uint8_t *out = NULL;
    size_t out_len = 0;
    char why[256];
    int rc = sasl_legacy_token(c, token, len, &out, &out_len, why, sizeof(why));
    if (rc < 0) {
        free(r);
        char line[300];
        snprintf(line, sizeof(line), "SASL authentication failed: %s", why);
        conn_close(c, line);
        return;
    }
    r->conn = c;
    r->key = -1; /* no Kafka API */
    r->out = out;
    r->out_len = out_len;
    r->done = true;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->reqs++;
    conn_pump(c);
}

/* A whole frame's payload: decode it and start it. */
static void conn_request(struct conn *c, const uint8_t *payload, size_t len)
{
    if (SP_UNLIKELY(c->sasl_legacy)) {
        conn_sasl_token(c, payload, len);
        return;
    }
    struct req *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->frame = malloc(len ? len : 1)) == NULL) {
        free(r);
        conn_close(c, "out of memory");
        return;
    }
    memcpy(r->frame, payload, len);
    r->frame_len = len;
    r->conn = c; /* r->timer: zeroed is idle (armed only by a waiting fetch) */
    /* Arrays take at most ~22 arena bytes per frame byte; records are spans. */
    size_t arena = len * 4 + 65536;
    int rc;
    const char *field = NULL;
    for (int attempt = 0;; attempt++) {
        free(r->arena_mem);
        r->arena_mem = malloc(arena);
        if (r->arena_mem == NULL) {
            rc = -ENOMEM;
            break;
        }
        sp_karena_init(&r->arena, r->arena_mem, arena);
        rc = sp_kafka_request_decode(r->frame, len, &r->arena, &r->f, &field);
        if (rc != -ENOBUFS || attempt > 0)
            break;
        arena = len * 22 + 65536;
    }
    r->key = r->f.header.request_api_key;
    r->version = r->f.header.request_api_version;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->reqs++;
    if (rc == -ENOTSUP || (rc == 0 && !api_served(r->key, r->version))) {
        if (r->key == SP_KAFKA_API_VERSIONS_KEY) {
            api_versions_unsupported(r);
            return;
        }
        char why[128];
        snprintf(why, sizeof(why), "API %d version %d is not served", r->key, r->version);
        r->done = true;
        conn_close(c, why);
        return;
    }
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof(why), "malformed request (API %d v%d): %s%s%s", r->key, r->version,
                 strerror(-rc), field ? " at " : "", field ? field : "");
        r->done = true;
        conn_close(c, why);
        return;
    }
    if (SP_UNLIKELY(!c->authenticated) && r->key != SP_KAFKA_API_VERSIONS_KEY &&
        r->key != CONN_SASL_HANDSHAKE_KEY && r->key != CONN_SASL_AUTHENTICATE_KEY) {
        char why[128];
        snprintf(why, sizeof(why), "%s (API %d) before SASL authentication",
                 r->f.api != NULL ? r->f.api->name : "a request", r->key);
        r->done = true;
        conn_close(c, why);
        return;
    }
    api_handle(c->bs, r);
}

static void recv_done(struct sp_io_op *op, int res, void *ctx)
{
    (void)op;
    struct conn *c = ctx;
    c->recv_posted = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (res <= 0) {
        conn_close(c, res == 0 || res == -ECONNRESET ? NULL : strerror(-res));
        return;
    }
    c->active = true;
    if (c->tls != NULL) {
        /* Ciphertext: into the read BIO; conn_pump reads the plaintext. */
        if (tls_received(c->tls, (size_t)res) < 0) {
            conn_close(c, "out of memory");
            return;
        }
        conn_pump(c);
        return;
    }
    c->in_len += (size_t)res;
    (void)conn_parse(c);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    conn_pump(c);
}

static void conn_tls_recv(struct conn *c);

static void conn_recv(struct conn *c)
{
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap * 2;
        size_t limit = (size_t)c->bs->b->config.max_request_bytes + 8;
        if (cap > limit)
            cap = limit;
        uint8_t *grown = cap > c->in_cap ? realloc(c->in, cap) : NULL;
        if (grown == NULL) {
            conn_close(c, "receive buffer");
            return;
        }
        c->in = grown;
        c->in_cap = cap;
    }
    if (c->tls != NULL) {
        conn_tls_recv(c);
        return;
    }
    size_t room = c->in_cap - c->in_len;
    if (sp_io_recv(c->bs->shard, &c->recv_op, c->fd, c->in + c->in_len,
                   (uint32_t)SP_MIN(room, (size_t)1 << 30), recv_done, c) < 0) {
        conn_close(c, "the submission queue is full");
        return;
    }
    c->recv_posted = true;
}

/*
 * TLS: plaintext out of what the read BIO holds, its frames parsed as they
 * come, while there is room for requests; once the BIO needs more
 * ciphertext, whatever the handshake wrote goes out and a receive is
 * posted. Bounded: each turn drains the BIO, which one receive fills with
 * at most 33 KiB.
 */
static void conn_tls_recv(struct conn *c)
{
    SP_ASSERT(!c->recv_posted);
    SP_ASSERT(!c->parsing);
    uint32_t max = c->bs->b->config.max_inflight;
    for (;;) {
        if (c->in_len == c->in_cap) {
            conn_recv(c); /* grows the buffer, and comes back here */
            return;
        }
        char why[256];
        ssize_t n = tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len, why, sizeof(why));
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            conn_close(c, n == -ECONNRESET ? NULL : why);
            return;
        }
        c->in_len += (size_t)n;
        bool need_bytes = conn_parse(c);
        if (c->closing) {
            conn_maybe_free(c);
            return;
        }
        if (!need_bytes || c->recv_posted || c->reqs >= max || c->close_when_sent) {
            conn_pump(c); /* resumes here once answers went out */
            return;
        }
    }
    if (!c->send_posted && conn_tls_send(c) < 0)
        return;
    uint8_t *buf = NULL;
    uint32_t room = 0;
    tls_recv_buf(c->tls, &buf, &room);
    if (sp_io_recv(c->bs->shard, &c->recv_op, c->fd, buf, room, recv_done, c) < 0) {
        conn_close(c, "the submission queue is full");
        return;
    }
    c->recv_posted = true;
}

static void accept_post(struct bshard *bs);

static void accept_retry(struct sp_timer *t, void *ctx)
{
    (void)t;
    accept_post(ctx);
}

/* Closes the connections that had no request in flight and received
 * nothing for idle_timeout_ms, then runs again in an eighth of that
 * (5 ms to 1 s): a connection goes between the timeout and that much
 * later. */
static void idle_sweep(struct sp_timer *t, void *ctx)
{
    struct bshard *bs = ctx;
    if (bs->stopping)
        return;
    uint64_t now = sp_now_ns();
    uint64_t idle_ns = (uint64_t)bs->b->config.idle_timeout_ms * 1000000u;
    SP_ASSERT(idle_ns > 0);
    for (struct conn *c = bs->conns, *next; c != NULL; c = next) {
        next = c->next_conn;
        if (c->closing)
            continue;
        if (c->active || c->reqs > 0) {
            c->active = false;
            c->idle_since_ns = now;
            continue;
        }
        if (now - c->idle_since_ns >= idle_ns) {
            char why[96];
            snprintf(why, sizeof(why), "idle for %u ms (no request in flight, nothing received)",
                     bs->b->config.idle_timeout_ms);
            conn_close(c, why);
        }
    }
    uint64_t period = SP_MIN(SP_MAX(idle_ns / 8, (uint64_t)5000000), (uint64_t)1000000000);
    sp_shard_timer_arm(bs->shard, t, now + period);
}

static void accept_done(struct sp_io_op *op, int res, void *ctx)
{
    (void)op;
    struct bshard *bs = ctx;
    bs->accepting = false;
    if (bs->stopping || res == -ECANCELED)
        return;
    struct sp_broker *b = bs->b;
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
        /* Out of descriptors or memory: trying again at once would spin. */
        if (!bs->accept_backoff)
            sp_warn("broker: accept: %s; trying again every %u ms", strerror(-res),
                    b->config.accept_backoff_ms);
        bs->accept_backoff = true;
        sp_shard_timer_arm(bs->shard, &bs->accept_retry,
                           sp_now_ns() + (uint64_t)b->config.accept_backoff_ms * 1000000u);
        return;
    }
    if (res < 0) {
        sp_warn("broker: accept: %s", strerror(-res));
        accept_post(bs);
        return;
    }
    if (bs->accept_backoff)
        sp_info("broker: accepting again");
    bs->accept_backoff = false;
    if (atomic_fetch_add(&b->connections, 1) >= b->config.max_connections) {
        atomic_fetch_sub(&b->connections, 1);
        sp_warn("broker: refusing a connection: %u connections already", b->config.max_connections);
        close(res);
        accept_post(bs);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->in = malloc(65536)) == NULL ||
        (b->tls != NULL && tls_conn_new(b->tls, &c->tls) < 0)) {
        if (c != NULL)
            free(c->in);
        free(c);
        close(res);
        atomic_fetch_sub(&b->connections, 1);
        accept_post(bs);
        return;
    }
    c->in_cap = 65536;
    c->fd = res;
    c->bs = bs;
    c->authenticated = b->users == NULL;
    c->active = true;
    struct sockaddr_storage addr;
    socklen_t alen = sizeof(addr);
    snprintf(c->peer, sizeof(c->peer), "a client");
    if (getpeername(res, (struct sockaddr *)&addr, &alen) == 0 && addr.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&addr;
        uint32_t ip = ntohl(in->sin_addr.s_addr);
        snprintf(c->peer, sizeof(c->peer), "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255,
                 (ip >> 8) & 255, ip & 255, ntohs(in->sin_port));
    }
    c->next_conn = bs->conns;
    if (bs->conns != NULL)
        bs->conns->prev_conn = c;
    bs->conns = c;
    conn_recv(c);
    accept_post(bs);
}

static void accept_post(struct bshard *bs)
{
    if (bs->stopping || bs->accepting)
        return;
    if (sp_io_accept(bs->shard, &bs->accept_op, bs->b->listen_fd, accept_done, bs) < 0) {
        sp_warn("broker: cannot post an accept; retrying on the next connection");
        return;
    }
    bs->accepting = true;
}

static void broker_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    (void)shard;
    struct bshard *bs = SP_CONTAINER_OF(hook, struct bshard, stop_hook);
    bs->stopping = true;
    sp_shard_timer_cancel(bs->shard, &bs->accept_retry);
    sp_shard_timer_cancel(bs->shard, &bs->idle_sweep);
    if (bs->accepting && sp_io_cancel(bs->shard, &bs->accept_op) < 0)
        sp_debug("broker: cannot cancel the accept yet");
    for (struct conn *c = bs->conns, *next; c != NULL; c = next) {
        next = c->next_conn;
        conn_close(c, NULL);
    }
}

void sp_broker_shard_start(struct sp_broker *b, struct sp_shard *shard)
{
    struct bshard *bs = calloc(1, sizeof(*bs));
    SP_ASSERT(bs != NULL);
    bs->b = b;
    bs->shard = shard;
    b->per_shard[shard->id] = bs;
    sp_shard_on_stop(shard, &bs->stop_hook, broker_stop);
    sp_timer_init(&bs->accept_retry, accept_retry, bs);
    sp_timer_init(&bs->idle_sweep, idle_sweep, bs);
    if (b->config.idle_timeout_ms > 0)
        sp_shard_timer_arm(shard, &bs->idle_sweep,
                           sp_now_ns() +
                               SP_MIN((uint64_t)b->config.idle_timeout_ms, 1000u) * 1000000u / 8);
    /* Recover the logs this shard owns now, before serving. */
    const struct topic_set *set = topics_now(b);
    for (uint32_t i = 0; i < set->count; i++) {
        for (int32_t p = 0; p < set->topics[i].partitions; p++) {
            if (partition_owner(b, set->topics[i].name, p) != shard->id)
                continue;
            int err = 0;
            (void)part_get(bs, set->topics[i].name, p, &err);
        }
    }
    group_shard_start(bs);
    txn_shard_start(bs);
    atomic_fetch_add_explicit(&b->shards_started, 1, memory_order_release);
    accept_post(bs);
}

void sp_broker_shard_finish(struct sp_broker *b, struct sp_shard *shard)
{
    struct bshard *bs = b->per_shard[shard->id];
    if (bs == NULL)
        return;
    while (bs->conns != NULL) {
        struct conn *c = bs->conns;
        bs->conns = c->next_conn;
        while (c->head != NULL) {
            struct req *r = c->head;
            c->head = r->next;
            req_free(r);
        }
        close(c->fd);
        atomic_fetch_sub(&b->connections, 1);
        tls_conn_free(c->tls);
        sasl_conn_free(c->sasl);
        free(c->in);
        free(c);
    }
    group_shard_finish(bs);
    txn_shard_finish(bs);
    fetch_sessions_free(bs);
    while (bs->parts != NULL) {
        struct part *p = bs->parts;
        bs->parts = p->next;
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/%s-%" PRId32, b->data_dir, p->topic, p->partition);
        producers_save(p, dir);
        sp_plog_close(p->log);
        producers_free(p);
        free(p->topic);
        free(p);
    }
    free(bs);
    b->per_shard[shard->id] = NULL;
}

/* ---- Embedding ---- */

int sp_broker_topic_create(struct sp_broker *b, const char *name, int32_t partitions)
{
    SP_ASSERT(b != NULL);
    SP_ASSERT(name != NULL);
    switch (topic_create(b, name, strlen(name), partitions, NULL)) {
    case KERR_NONE:
        return 0;
    case KERR_TOPIC_ALREADY_EXISTS:
        return -EEXIST;
    case KERR_INVALID_TOPIC:
    case KERR_INVALID_PARTITIONS:
        return -EINVAL;
    case KERR_POLICY_VIOLATION:
        return -ENOSPC;
    case KERR_KAFKA_STORAGE_ERROR:
        return -EIO;
    default:
        return -ENOMEM;
    }
}
