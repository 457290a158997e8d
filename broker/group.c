/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, with
 * committed offsets stored durably.
 *
 * Design: shard 0 coordinates every group. A handler on any shard answers
 * what needs no group state (FindCoordinator) at once, and forwards the
 * rest to shard 0 as a POP_CALL (struct pop in the request's memory): the
 * call runs on shard 0, where it reads the request's decoded body and fills
 * the response body (allocating from the request, which nobody else touches
 * while the call is pending); pop_reply() then sends it home, where the
 * done hook finishes the request. A JoinGroup or SyncGroup that must wait
 * (for the rebalance to complete, for the leader's assignment) parks its
 * pop on the member and is answered later. Only shard 0 touches the group
 * state, so it needs no lock.
 *
 * The classic protocol, as Kafka's GroupCoordinator runs it: states Empty,
 * PreparingRebalance, CompletingRebalance (awaiting the leader's SyncGroup)
 * and Stable. A rebalance completes when every known member rejoined, or at
 * the rebalance timeout (the largest of the members'), dropping those that
 * did not. JoinGroup v4+ with no member id answers MEMBER_ID_REQUIRED with a
 * new id, which the member joins with next. A timer on shard 0 (every
 * TICK_MS) expires members whose session timed out (not while they wait in
 * a JoinGroup) and ends overdue rebalances. Static membership
 * (group.instance.id) is echoed but not special-cased.
 *
 * Committed offsets (with their metadata) are kept per group, and each
 * commit rewrites the group's file `groups/<hex of the group id>.offsets`
 * under the data directory atomically (temp file, fsync, rename, fsync of
 * the directory) before it is answered. Shard 0 loads them at start. The
 * write is synchronous on shard 0: commits are rare (seconds apart per
 * consumer) and small.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_log.h"

/* Kafka error codes of the group protocol (prefixed: broker_int.h may
 * grow its own). */
enum {
    GERR_OFFSET_METADATA_TOO_LARGE = 12,
    GERR_COORDINATOR_NOT_AVAILABLE = 15,
    GERR_ILLEGAL_GENERATION = 22,
    GERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    GERR_INVALID_GROUP_ID = 24,
    GERR_UNKNOWN_MEMBER_ID = 25,
    GERR_INVALID_SESSION_TIMEOUT = 26,
    GERR_REBALANCE_IN_PROGRESS = 27,
    GERR_OUT_OF_MEMORY = -1,
    GERR_MEMBER_ID_REQUIRED = 79,
};

#define TICK_MS 100
#define SESSION_MIN_MS 1000
#define SESSION_MAX_MS 1800000
#define REBALANCE_MAX_MS 1800000
#define METADATA_MAX 4096
#define GROUP_ID_MAX 4096
#define MEMBERS_MAX 10000 /* per group */
#define GROUPS_MAX 100000

enum gstate { G_EMPTY, G_PREPARING, G_COMPLETING, G_STABLE };

static const char *const state_names[] = {"Empty", "PreparingRebalance", "CompletingRebalance",
                                          "Stable"};

struct gproto {
    char *name;
    uint8_t *meta;
    int32_t len;
};

struct member {
    struct member *next;
    char *id, *instance_id, *client_id, *client_host, *protocol_type;
    int32_t session_ms, rebalance_ms;
    struct gproto *protos;
    int32_t nprotos;
    uint8_t *assignment;
    int32_t assignment_len;
    struct pop *join_wait, *sync_wait;
    uint64_t seen_ns;
};

struct pending_id {
    struct pending_id *next;
    char *id;
    uint64_t expire_ns;
};

struct goff {
    char *topic;
    int32_t partition;
    int32_t epoch;
    int64_t offset;
    char *meta;
};

struct group {
    struct group *next;
    char *id;
    enum gstate state;
    int32_t generation;
    char *protocol_type, *protocol, *leader;
    struct member *members;
    uint32_t member_count;
    struct pending_id *pending; /* ids handed out with MEMBER_ID_REQUIRED */
    uint32_t pending_count;
    uint64_t rebalance_deadline_ns;
    struct goff *offs;
    uint32_t noffs, offs_cap;
};

struct coord {
    struct sp_broker *b;
    struct bshard *bs;
    struct group *groups;
    uint32_t group_count;
    struct sp_timer tick;
    struct sp_stop_hook stop_hook;
    bool stopping;
    uint64_t next_id;
    char *dir; /* data_dir/groups */
};

/* ---- Small helpers ---- */

static struct sp_kstr kstr(const char *s)
{
    return (struct sp_kstr){s, s != NULL ? (int32_t)strlen(s) : -1};
}

/* A copy in the request's memory, as a wire string (NULL stays null). */
static struct sp_kstr rstr(struct req *r, const char *s)
{
    if (s == NULL)
        return SP_KSTR_NULL;
    char *d = req_strdup(r, kstr(s));
    return d != NULL ? kstr(d) : SP_KSTR("");
}

/* The same, empty rather than null (for non-nullable fields). */
static struct sp_kstr rstr_nn(struct req *r, const char *s)
{
    return rstr(r, s != NULL ? s : "");
}

static struct sp_kbytes rbytes(struct req *r, const uint8_t *p, int32_t len)
{
    if (len <= 0)
        return (struct sp_kbytes){(const uint8_t *)"", 0};
    uint8_t *d = req_alloc(r, (size_t)len);
    if (d == NULL)
        return (struct sp_kbytes){(const uint8_t *)"", 0};
    memcpy(d, p, (size_t)len);
    return (struct sp_kbytes){d, len};
}

static bool kstr_eq(struct sp_kstr a, const char *b)
{
    if (a.len < 0 || b == NULL)
        return a.len < 0 && b == NULL;
    return strlen(b) == (size_t)a.len && memcmp(a.ptr, b, (size_t)a.len) == 0;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static struct coord *coord_of(struct pop *p)
{
    struct sp_broker *b = p->req->conn->bs->b;
    struct bshard *bs = bshard_here(b);
    return bs != NULL ? bs->groups : NULL;
}

/* ---- Forwarding to shard 0 ---- */

/* ---- Groups and members (shard 0) ---- */

static struct group *group_find(struct coord *c, struct sp_kstr id)
{
    for (struct group *g = c->groups; g != NULL; g = g->next) {
        if (kstr_eq(id, g->id))
            return g;
    }
    return NULL;
}

static struct group *group_create(struct coord *c, struct sp_kstr id)
{
    if (c->group_count >= GROUPS_MAX)
        return NULL;
    struct group *g = calloc(1, sizeof(*g));
    if (g == NULL || (g->id = kstr_dup(id)) == NULL) {
        free(g);
        return NULL;
    }
    g->state = G_EMPTY;
    g->next = c->groups;
    c->groups = g;
    c->group_count++;
    return g;
}

static struct member *member_find(struct group *g, struct sp_kstr id)
{
    for (struct member *m = g->members; m != NULL; m = m->next) {
        if (kstr_eq(id, m->id))
            return m;
    }
    return NULL;
}

static void protos_free(struct member *m)
{
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    m->protos = NULL;
    m->nprotos = 0;
}

static void member_free(struct member *m)
{
    protos_free(m);
    free(m->id);
    free(m->instance_id);
    free(m->client_id);
    free(m->client_host);
    free(m->protocol_type);
    free(m->assignment);
    free(m);
}

static const struct gproto *member_proto(const struct member *m, const char *name)
{
    for (int32_t i = 0; i < m->nprotos; i++) {
        if (str_eq(m->protos[i].name, name))
            return &m->protos[i];
    }
    return NULL;
}

/* ---- Answers (fill the response, then send it home) ---- */

static void join_answer(struct group *g, struct member *m, struct pop *p, int16_t err)
{
    struct req *r = p->req;
    struct sp_kafka_join_group_response *o = p->slot;
    o->error_code = err;
    if (err == KERR_NONE) {
        o->generation_id = g->generation;
        if (r->version >= 7)
            o->protocol_type = rstr(r, g->protocol_type);
        o->protocol_name = rstr_nn(r, g->protocol);
        o->leader = rstr_nn(r, g->leader);
        o->member_id = rstr_nn(r, m->id);
        if (str_eq(m->id, g->leader) && g->member_count > 0) {
            struct sp_kafka_join_group_response_join_group_response_member *ms =
                req_alloc(r, g->member_count * sizeof(*ms));
            if (ms != NULL) {
                int32_t n = 0;
                for (struct member *x = g->members; x != NULL; x = x->next) {
                    const struct gproto *pr = member_proto(x, g->protocol);
                    sp_kafka_join_group_response_join_group_response_member_init(&ms[n]);
                    ms[n].member_id = rstr_nn(r, x->id);
                    if (r->version >= 5)
                        ms[n].group_instance_id = rstr(r, x->instance_id);
                    ms[n].metadata = pr != NULL ? rbytes(r, pr->meta, pr->len) : rbytes(r, NULL, 0);
                    n++;
                }
                o->members = ms;
                o->members_count = n;
            } else {
                o->error_code = GERR_OUT_OF_MEMORY;
            }
        }
    } else if (m != NULL) {
        o->member_id = rstr_nn(r, m->id);
    }
    pop_reply(p);
}

static void sync_answer(struct group *g, struct member *m, struct pop *p, int16_t err)
{
    struct req *r = p->req;
    struct sp_kafka_sync_group_response *o = p->slot;
    o->error_code = err;
    if (err == KERR_NONE) {
        o->assignment = rbytes(r, m->assignment, m->assignment_len);
        if (r->version >= 5) {
            o->protocol_type = rstr(r, g->protocol_type);
            o->protocol_name = rstr(r, g->protocol);
        }
    } else {
        o->assignment = rbytes(r, NULL, 0);
    }
    pop_reply(p);
}

/* Answers what the member waits on with `err`. */
static void member_release(struct group *g, struct member *m, int16_t err)
{
    struct pop *j = m->join_wait, *s = m->sync_wait;
    m->join_wait = m->sync_wait = NULL;
    if (j != NULL)
        join_answer(g, m, j, err);
    if (s != NULL)
        sync_answer(g, m, s, err);
}

static void member_remove(struct group *g, struct member *m, int16_t err)
{
    for (struct member **pp = &g->members; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            g->member_count--;
            break;
        }
    }
    member_release(g, m, err);
    if (str_eq(g->leader, m->id)) {
        free(g->leader);
        g->leader = NULL;
    }
    member_free(m);
}

static void prepare_rebalance(struct group *g)
{
    if (g->state == G_COMPLETING) {
        for (struct member *m = g->members; m != NULL; m = m->next) {
            struct pop *s = m->sync_wait;
            m->sync_wait = NULL;
            if (s != NULL)
                sync_answer(g, m, s, GERR_REBALANCE_IN_PROGRESS);
        }
    }
    int32_t ms = 0;
    for (struct member *m = g->members; m != NULL; m = m->next) {
        free(m->assignment);
        m->assignment = NULL;
        m->assignment_len = 0;
        ms = SP_MAX(ms, m->rebalance_ms);
    }
    g->state = G_PREPARING;
    g->rebalance_deadline_ns = sp_now_ns() + (uint64_t)ms * 1000000u;
}

/* The protocol every member supports that most members prefer. */
static const char *choose_protocol(struct group *g)
{
    const char *best = NULL;
    int best_votes = -1;
    struct member *first = g->members;
    for (int32_t i = 0; first != NULL && i < first->nprotos; i++) {
        const char *name = first->protos[i].name;
        bool all = true;
        for (struct member *m = g->members; m != NULL && all; m = m->next)
            all = member_proto(m, name) != NULL;
        if (!all)
            continue;
        int votes = 0;
        for (struct member *m = g->members; m != NULL; m = m->next) {
            for (int32_t k = 0; k < m->nprotos; k++) {
                /* a member votes for its first choice among those all support */
                bool supported = true;
                for (struct member *x = g->members; x != NULL && supported; x = x->next)
                    supported = member_proto(x, m->protos[k].name) != NULL;
                if (!supported)
                    continue;
                if (str_eq(m->protos[k].name, name))
                    votes++;
                break;
            }
        }
        if (votes > best_votes) {
            best = name;
            best_votes = votes;
        }
    }
    return best;
}

static void group_went_empty(struct group *g)
{
    if (g->state != G_EMPTY)
        g->generation++;
    g->state = G_EMPTY;
    /* As Kafka: the protocol type ("consumer") stays, the assignor and
     * leader of the last generation go. */
    free(g->leader);
    free(g->protocol);
    g->leader = g->protocol = NULL;
}

/* Ends the rebalance: members that did not rejoin leave; a new generation. */
static void complete_join(struct group *g)
{
    for (struct member *m = g->members, *next; m != NULL; m = next) {
        next = m->next;
        if (m->join_wait == NULL)
            member_remove(g, m, GERR_UNKNOWN_MEMBER_ID);
    }
    if (g->member_count == 0) {
        group_went_empty(g);
        return;
    }
    g->generation++;
    const char *proto = choose_protocol(g);
    char *pname = proto != NULL ? strdup(proto) : NULL;
    char *ptype = g->members->protocol_type != NULL ? strdup(g->members->protocol_type) : NULL;
    free(g->protocol);
    free(g->protocol_type);
    g->protocol = pname;
    g->protocol_type = ptype;
    bool leader_here = false;
    for (struct member *m = g->members; m != NULL; m = m->next)
        leader_here = leader_here || str_eq(m->id, g->leader);
    if (!leader_here) {
        free(g->leader);
        g->leader = strdup(g->members->id);
    }
    g->state = G_COMPLETING;
    for (struct member *m = g->members; m != NULL; m = m->next) {
        struct pop *j = m->join_wait;
        m->join_wait = NULL;
        m->seen_ns = sp_now_ns();
        join_answer(g, m, j,
                    g->protocol != NULL && g->leader != NULL ? KERR_NONE
                                                             : GERR_INCONSISTENT_GROUP_PROTOCOL);
    }
}

static void try_complete_join(struct group *g)
{
    if (g->state != G_PREPARING)
        return;
    for (struct member *m = g->members; m != NULL; m = m->next) {
        if (m->join_wait == NULL)
            return;
    }
    complete_join(g);
}

/* After members left: rebalance the rest, or go empty. */
static void members_left(struct group *g)
{
    if (g->member_count == 0) {
        group_went_empty(g);
        return;
    }
    if (g->state == G_STABLE || g->state == G_COMPLETING)
        prepare_rebalance(g);
    try_complete_join(g);
}

/* ---- Durable offsets ---- */

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return h;
}

/*
 * The group's file: its id in hex when short, else two 64-bit hashes of it
 * (file names are limited); the file's first line names the group, so
 * loading never depends on the name.
 */
static char *group_path(struct coord *c, const char *id, const char *suffix)
{
    size_t idlen = strlen(id);
    size_t n = strlen(c->dir) + 2 + 2 * SP_MIN(idlen, (size_t)100) + 64 + strlen(suffix);
    char *path = malloc(n);
    if (path == NULL)
        return NULL;
    size_t at = (size_t)snprintf(path, n, "%s/", c->dir);
    if (idlen <= 100) {
        at += (size_t)snprintf(path + at, n - at, "g-");
        for (const char *s = id; *s != '\0'; s++)
            at += (size_t)snprintf(path + at, n - at, "%02x", (unsigned char)*s);
    } else {
        at += (size_t)snprintf(path + at, n - at, "h-%016" PRIx64 "%016" PRIx64,
                               fnv1a(id, UINT64_C(0xcbf29ce484222325)),
                               fnv1a(id, UINT64_C(0x84222325cbf29ce4)));
    }
    snprintf(path + at, n - at, "%s", suffix);
    return path;
}

static int offsets_write(FILE *f, void *ctx)
{
    const struct group *g = ctx;
    fputs("group ", f);
    hex_put(f, g->id);
    fputc('\n', f);
    for (uint32_t i = 0; i < g->noffs; i++) {
        const struct goff *o = &g->offs[i];
        hex_put(f, o->topic);
        fprintf(f, " %" PRId32 " %" PRId64 " %" PRId32 " ", o->partition, o->offset, o->epoch);
        hex_put(f, o->meta);
        fputc('\n', f);
    }
    return 0;
}

/* Rewrites the group's offsets file atomically; 0 or -errno. */
static int offsets_persist(struct coord *c, struct group *g)
{
    if (c->dir == NULL)
        return -ENOENT;
    char *path = group_path(c, g->id, ".offsets");
    char *tmp = group_path(c, g->id, ".tmp");
    int rc =
        path != NULL && tmp != NULL ? file_replace(c->dir, path, tmp, offsets_write, g) : -ENOMEM;
    free(path);
    free(tmp);
    return rc;
}

static struct goff *offset_find(struct group *g, const char *topic, int32_t partition)
{
    for (uint32_t i = 0; i < g->noffs; i++) {
        if (g->offs[i].partition == partition && strcmp(g->offs[i].topic, topic) == 0)
            return &g->offs[i];
    }
    return NULL;
}

/* Sets an offset (taking topic and meta, malloc'd); false when out of memory. */
static bool offset_set(struct group *g, char *topic, int32_t partition, int64_t offset,
                       int32_t epoch, char *meta)
{
    struct goff *o = offset_find(g, topic, partition);
    if (o != NULL) {
        free(topic);
        free(o->meta);
    } else {
        if (g->noffs == g->offs_cap) {
            uint32_t cap = g->offs_cap ? g->offs_cap * 2 : 16;
            struct goff *grown = realloc(g->offs, cap * sizeof(*grown));
            if (grown == NULL) {
                free(topic);
                free(meta);
                return false;
            }
            g->offs = grown;
            g->offs_cap = cap;
        }
        o = &g->offs[g->noffs++];
        o->topic = topic;
        o->partition = partition;
    }
    o->offset = offset;
    o->epoch = epoch;
    o->meta = meta;
    return true;
}

static void offsets_load_file(struct coord *c, const char *name)
{
    size_t nlen = strlen(name);
    const char *suffix = ".offsets";
    if (nlen <= strlen(suffix) || strcmp(name + nlen - strlen(suffix), suffix) != 0)
        return;
    size_t plen = strlen(c->dir) + nlen + 2;
    char *path = malloc(plen);
    if (path == NULL)
        return;
    snprintf(path, plen, "%s/%s", c->dir, name);
    FILE *f = fopen(path, "r");
    free(path);
    if (f == NULL)
        return;
    char *line = NULL;
    size_t cap = 0;
    struct group *g = NULL;
    if (getline(&line, &cap, f) > 0 && strncmp(line, "group ", 6) == 0) {
        line[strcspn(line, "\n")] = '\0';
        char *id = hex_get(line + 6);
        if (id != NULL && *id != '\0' && strlen(id) <= GROUP_ID_MAX) {
            g = group_find(c, kstr(id));
            if (g == NULL)
                g = group_create(c, kstr(id));
        }
        free(id);
    }
    if (g == NULL)
        sp_warn("broker: %s/%s is not a group's offsets file: skipped", c->dir, name);
    while (g != NULL && getline(&line, &cap, f) > 0) {
        char *save = NULL;
        char *t = strtok_r(line, " \n", &save);
        char *ps = strtok_r(NULL, " \n", &save);
        char *os = strtok_r(NULL, " \n", &save);
        char *es = strtok_r(NULL, " \n", &save);
        char *ms = strtok_r(NULL, " \n", &save);
        if (ms == NULL)
            continue;
        char *topic = hex_get(t), *meta = hex_get(ms);
        if (topic == NULL || meta == NULL || *topic == '\0') {
            free(topic);
            free(meta);
            continue;
        }
        (void)offset_set(g, topic, (int32_t)strtol(ps, NULL, 10), strtoll(os, NULL, 10),
                         (int32_t)strtol(es, NULL, 10), meta);
    }
    free(line);
    fclose(f);
}

static void offsets_load(struct coord *c)
{
    if (c->dir == NULL)
        return;
    DIR *d = opendir(c->dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        offsets_load_file(c, e->d_name);
    closedir(d);
}

/* ---- FindCoordinator (answered where it arrives) ---- */

static void find_coordinator(struct req *r)
{
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_find_coordinator_request *q = r->f.body;
    struct sp_kafka_find_coordinator_response *o = req_alloc(r, sizeof(*o));
    if (o == NULL) {
        req_finish(r);
        return;
    }
    sp_kafka_find_coordinator_response_init(o);
    bool type_ok = q->key_type == 0 || q->key_type == 1;
    if (r->version <= 3) {
        if (type_ok) {
            o->node_id = b->config.node_id;
            o->host = kstr(b->advertised_host);
            o->port = b->port;
        } else {
            o->error_code = KERR_INVALID_REQUEST;
            o->node_id = -1;
            o->host = SP_KSTR("");
            o->port = -1;
        }
    } else {
        int32_t n = q->coordinator_keys_count > 0 ? q->coordinator_keys_count : 0;
        struct sp_kafka_find_coordinator_response_coordinator *cs =
            req_alloc(r, (size_t)(n ? n : 1) * sizeof(*cs));
        if (cs == NULL) {
            req_finish(r);
            return;
        }
        for (int32_t i = 0; i < n; i++) {
            sp_kafka_find_coordinator_response_coordinator_init(&cs[i]);
            cs[i].key = rstr_nn(r, req_strdup(r, q->coordinator_keys[i]));
            if (type_ok) {
                cs[i].node_id = b->config.node_id;
                cs[i].host = kstr(b->advertised_host);
                cs[i].port = b->port;
            } else {
                cs[i].error_code = KERR_INVALID_REQUEST;
                cs[i].node_id = -1;
                cs[i].host = SP_KSTR("");
                cs[i].port = -1;
            }
        }
        o->coordinators = cs;
        o->coordinators_count = n;
    }
    r->resp = o;
    req_finish(r);
}

/* ---- JoinGroup ---- */

static bool protocols_fit(const struct group *g, const struct sp_kafka_join_group_request *q)
{
    const struct member *any = g->members;
    if (any == NULL)
        return true;
    if (!kstr_eq(q->protocol_type, any->protocol_type))
        return false;
    /* some protocol every current member supports is offered */
    for (int32_t i = 0; i < q->protocols_count; i++) {
        bool all = true;
        for (const struct member *m = g->members; m != NULL && all; m = m->next) {
            bool has = false;
            for (int32_t k = 0; k < m->nprotos && !has; k++)
                has = kstr_eq(q->protocols[i].name, m->protos[k].name);
            all = has;
        }
        if (all)
            return true;
    }
    return false;
}

/* Takes the request's protocols; *changed says whether they differ. */
static bool member_update(struct member *m, struct req *r, int32_t session_ms, int32_t rebalance_ms,
                          bool *changed)
{
    const struct sp_kafka_join_group_request *q = r->f.body;
    int32_t n = q->protocols_count;
    bool same = n == m->nprotos;
    for (int32_t i = 0; same && i < n; i++) {
        const struct sp_kafka_join_group_request_join_group_request_protocol *pr = &q->protocols[i];
        int32_t len = pr->metadata.len > 0 ? pr->metadata.len : 0;
        same = kstr_eq(pr->name, m->protos[i].name) && len == m->protos[i].len &&
               (len == 0 || memcmp(pr->metadata.ptr, m->protos[i].meta, (size_t)len) == 0);
    }
    *changed = !same;
    m->session_ms = session_ms;
    m->rebalance_ms = rebalance_ms;
    if (!same) {
        struct gproto *ps = calloc((size_t)n, sizeof(*ps));
        if (ps == NULL)
            return false;
        for (int32_t i = 0; i < n; i++) {
            const struct sp_kafka_join_group_request_join_group_request_protocol *pr =
                &q->protocols[i];
            int32_t len = pr->metadata.len > 0 ? pr->metadata.len : 0;
            ps[i].name = kstr_dup(pr->name.len >= 0 ? pr->name : SP_KSTR(""));
            ps[i].meta = malloc((size_t)(len ? len : 1));
            ps[i].len = len;
            if (ps[i].name == NULL || ps[i].meta == NULL) {
                for (int32_t k = 0; k <= i; k++) {
                    free(ps[k].name);
                    free(ps[k].meta);
                }
                free(ps);
                return false;
            }
            if (len > 0)
                memcpy(ps[i].meta, pr->metadata.ptr, (size_t)len);
        }
        protos_free(m);
        m->protos = ps;
        m->nprotos = n;
    }
    if (m->protocol_type == NULL)
        m->protocol_type = kstr_dup(q->protocol_type);
    if (m->client_id == NULL)
        m->client_id =
            kstr_dup(r->f.header.client_id.len >= 0 ? r->f.header.client_id : SP_KSTR(""));
    if (m->client_host == NULL)
        m->client_host = strdup(r->conn->peer);
    if (m->instance_id == NULL && q->group_instance_id.len >= 0)
        m->instance_id = kstr_dup(q->group_instance_id);
    return m->protocol_type != NULL && m->client_id != NULL && m->client_host != NULL;
}

static char *new_member_id(struct coord *c, struct req *r)
{
    struct sp_kstr cid = r->f.header.client_id;
    int len = cid.len > 0 ? (int)SP_MIN(cid.len, 128) : 0;
    char buf[200];
    uint64_t n = ++c->next_id;
    snprintf(buf, sizeof(buf), "%.*s%s%016" PRIx64 "-%08" PRIx64, len, len ? cid.ptr : "",
             len ? "-" : "", (uint64_t)(sp_now_ns() ^ (n * UINT64_C(0x9e3779b97f4a7c15))), n);
    for (char *s = buf; *s; s++) {
        if ((unsigned char)*s < 0x20)
            *s = '_';
    }
    return strdup(buf);
}

static void join_fail(struct pop *p, int16_t err)
{
    struct req *r = p->req;
    const struct sp_kafka_join_group_request *q = r->f.body;
    struct sp_kafka_join_group_response *o = p->slot;
    o->error_code = err;
    o->member_id = rstr_nn(r, req_strdup(r, q->member_id));
    pop_reply(p);
}

static void join_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_join_group_request *q = r->f.body;
    if (c == NULL || c->stopping) {
        join_fail(p, GERR_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    if (q->group_id.len <= 0 || q->group_id.len > GROUP_ID_MAX) {
        join_fail(p, GERR_INVALID_GROUP_ID);
        return;
    }
    int32_t session_ms = q->session_timeout_ms;
    int32_t rebalance_ms = r->version >= 1 ? q->rebalance_timeout_ms : session_ms;
    if (session_ms < SESSION_MIN_MS || session_ms > SESSION_MAX_MS) {
        join_fail(p, GERR_INVALID_SESSION_TIMEOUT);
        return;
    }
    if (rebalance_ms <= 0)
        rebalance_ms = session_ms;
    rebalance_ms = SP_MIN(rebalance_ms, REBALANCE_MAX_MS);
    if (q->protocol_type.len <= 0 || q->protocols_count <= 0 || q->protocols_count > 64 ||
        q->member_id.len > 1024) {
        join_fail(p, GERR_INCONSISTENT_GROUP_PROTOCOL);
        return;
    }
    bool new_member = q->member_id.len <= 0;
    struct group *g = group_find(c, q->group_id);
    if (g == NULL && !new_member) {
        join_fail(p, GERR_UNKNOWN_MEMBER_ID);
        return;
    }
    if (g == NULL && (g = group_create(c, q->group_id)) == NULL) {
        join_fail(p, GERR_OUT_OF_MEMORY);
        return;
    }
    if (!protocols_fit(g, q)) {
        join_fail(p, GERR_INCONSISTENT_GROUP_PROTOCOL);
        return;
    }
    struct member *m = NULL;
    bool added = false;
    if (new_member) {
        char *id = new_member_id(c, r);
        if (id == NULL) {
            join_fail(p, GERR_OUT_OF_MEMORY);
            return;
        }
        if (r->version >= 4 && q->group_instance_id.len < 0) {
            /* Kafka's two-step join: the member comes back with this id. */
            struct pending_id *pi = g->pending_count < MEMBERS_MAX ? calloc(1, sizeof(*pi)) : NULL;
            if (pi == NULL) {
                free(id);
                join_fail(p, GERR_OUT_OF_MEMORY);
                return;
            }
            pi->id = id;
            pi->expire_ns = sp_now_ns() + (uint64_t)session_ms * 1000000u;
            pi->next = g->pending;
            g->pending = pi;
            g->pending_count++;
            struct sp_kafka_join_group_response *o = p->slot;
            o->error_code = GERR_MEMBER_ID_REQUIRED;
            o->member_id = rstr_nn(r, id);
            pop_reply(p);
            return;
        }
        m = calloc(1, sizeof(*m));
        if (m == NULL) {
            free(id);
            join_fail(p, GERR_OUT_OF_MEMORY);
            return;
        }
        m->id = id;
        added = true;
    } else {
        m = member_find(g, q->member_id);
        if (m == NULL) {
            struct pending_id **pp = &g->pending;
            while (*pp != NULL && !kstr_eq(q->member_id, (*pp)->id))
                pp = &(*pp)->next;
            if (*pp == NULL) {
                join_fail(p, GERR_UNKNOWN_MEMBER_ID);
                return;
            }
            m = calloc(1, sizeof(*m));
            if (m == NULL) {
                join_fail(p, GERR_OUT_OF_MEMORY);
                return;
            }
            struct pending_id *pi = *pp;
            *pp = pi->next;
            g->pending_count--;
            m->id = pi->id;
            free(pi);
            added = true;
        }
    }
    if (added && g->member_count >= MEMBERS_MAX) {
        member_free(m);
        join_fail(p, GERR_OUT_OF_MEMORY);
        return;
    }
    bool changed = false;
    if (!member_update(m, r, session_ms, rebalance_ms, &changed)) {
        if (added)
            member_free(m);
        join_fail(p, GERR_OUT_OF_MEMORY);
        return;
    }
    if (added) {
        struct member **tail = &g->members;
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = m;
        g->member_count++;
    }
    m->seen_ns = sp_now_ns();
    if (m->join_wait != NULL) { /* a join retried: the newer one waits */
        struct pop *old = m->join_wait;
        m->join_wait = NULL;
        join_answer(g, m, old, GERR_REBALANCE_IN_PROGRESS);
    }
    if (!added && !changed &&
        ((g->state == G_STABLE && !str_eq(m->id, g->leader)) || g->state == G_COMPLETING)) {
        /* nothing changed (a lost answer, a follower's retry): as Kafka,
         * the current generation stands */
        join_answer(g, m, p, KERR_NONE);
        return;
    }
    m->join_wait = p;
    if (g->state != G_PREPARING)
        prepare_rebalance(g);
    try_complete_join(g);
}

static void join_group(struct req *r)
{
    struct sp_kafka_join_group_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL) {
        sp_kafka_join_group_response_init(o);
        o->protocol_name = SP_KSTR("");
        o->leader = SP_KSTR("");
        o->member_id = SP_KSTR("");
        o->members_count = 0;
    }
    req_forward(r, o, join_call);
}

/* ---- SyncGroup ---- */

static void sync_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_sync_group_request *q = r->f.body;
    struct sp_kafka_sync_group_response *o = p->slot;
    struct group *g = c != NULL && !c->stopping ? group_find(c, q->group_id) : NULL;
    struct member *m = g != NULL ? member_find(g, q->member_id) : NULL;
    int16_t err = KERR_NONE;
    if (c == NULL || c->stopping)
        err = GERR_COORDINATOR_NOT_AVAILABLE;
    else if (q->group_id.len <= 0)
        err = GERR_INVALID_GROUP_ID;
    else if (m == NULL)
        err = GERR_UNKNOWN_MEMBER_ID;
    else if (q->generation_id != g->generation)
        err = GERR_ILLEGAL_GENERATION;
    else if (r->version >= 5 &&
             ((q->protocol_type.len >= 0 && !kstr_eq(q->protocol_type, g->protocol_type)) ||
              (q->protocol_name.len >= 0 && !kstr_eq(q->protocol_name, g->protocol))))
        err = GERR_INCONSISTENT_GROUP_PROTOCOL;
    else if (g->state == G_PREPARING || g->state == G_EMPTY)
        err = GERR_REBALANCE_IN_PROGRESS;
    if (err != KERR_NONE) {
        o->error_code = err;
        o->assignment = rbytes(r, NULL, 0);
        pop_reply(p);
        return;
    }
    m->seen_ns = sp_now_ns();
    if (g->state == G_STABLE) {
        sync_answer(g, m, p, KERR_NONE);
        return;
    }
    /* CompletingRebalance */
    if (m->sync_wait != NULL) {
        struct pop *old = m->sync_wait;
        m->sync_wait = NULL;
        sync_answer(g, m, old, GERR_REBALANCE_IN_PROGRESS);
    }
    m->sync_wait = p;
    if (!str_eq(m->id, g->leader))
        return;
    for (int32_t i = 0; i < q->assignments_count; i++) {
        const struct sp_kafka_sync_group_request_sync_group_request_assignment *a =
            &q->assignments[i];
        struct member *x = member_find(g, a->member_id);
        if (x == NULL || a->assignment.len <= 0)
            continue;
        uint8_t *copy = malloc((size_t)a->assignment.len);
        if (copy == NULL)
            continue;
        memcpy(copy, a->assignment.ptr, (size_t)a->assignment.len);
        free(x->assignment);
        x->assignment = copy;
        x->assignment_len = a->assignment.len;
    }
    g->state = G_STABLE;
    for (struct member *x = g->members; x != NULL; x = x->next) {
        struct pop *s = x->sync_wait;
        x->sync_wait = NULL;
        if (s != NULL)
            sync_answer(g, x, s, KERR_NONE);
    }
}

static void sync_group(struct req *r)
{
    struct sp_kafka_sync_group_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_sync_group_response_init(o);
    req_forward(r, o, sync_call);
}

/* ---- Heartbeat ---- */

static void heartbeat_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_heartbeat_request *q = r->f.body;
    struct sp_kafka_heartbeat_response *o = p->slot;
    struct group *g = c != NULL && !c->stopping ? group_find(c, q->group_id) : NULL;
    struct member *m = g != NULL ? member_find(g, q->member_id) : NULL;
    if (c == NULL || c->stopping)
        o->error_code = GERR_COORDINATOR_NOT_AVAILABLE;
    else if (q->group_id.len <= 0)
        o->error_code = GERR_INVALID_GROUP_ID;
    else if (m == NULL)
        o->error_code = GERR_UNKNOWN_MEMBER_ID;
    else if (g->state == G_PREPARING)
        o->error_code = GERR_REBALANCE_IN_PROGRESS;
    else if (q->generation_id != g->generation)
        o->error_code = GERR_ILLEGAL_GENERATION;
    if (m != NULL && o->error_code != GERR_UNKNOWN_MEMBER_ID)
        m->seen_ns = sp_now_ns();
    pop_reply(p);
}

static void heartbeat(struct req *r)
{
    struct sp_kafka_heartbeat_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_heartbeat_response_init(o);
    req_forward(r, o, heartbeat_call);
}

/* ---- LeaveGroup ---- */

static void leave_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_leave_group_request *q = r->f.body;
    struct sp_kafka_leave_group_response *o = p->slot;
    struct group *g = c != NULL && !c->stopping ? group_find(c, q->group_id) : NULL;
    if (c == NULL || c->stopping) {
        o->error_code = GERR_COORDINATOR_NOT_AVAILABLE;
        pop_reply(p);
        return;
    }
    if (q->group_id.len <= 0) {
        o->error_code = GERR_INVALID_GROUP_ID;
        pop_reply(p);
        return;
    }
    bool left = false;
    if (r->version <= 2) {
        struct member *m = g != NULL ? member_find(g, q->member_id) : NULL;
        if (m == NULL) {
            o->error_code = GERR_UNKNOWN_MEMBER_ID;
        } else {
            member_remove(g, m, GERR_UNKNOWN_MEMBER_ID);
            left = true;
        }
    } else {
        int32_t n = q->members_count > 0 ? q->members_count : 0;
        struct sp_kafka_leave_group_response_member_response *ms =
            req_alloc(r, (size_t)(n ? n : 1) * sizeof(*ms));
        if (ms == NULL) {
            o->error_code = GERR_OUT_OF_MEMORY;
            pop_reply(p);
            return;
        }
        for (int32_t i = 0; i < n; i++) {
            const struct sp_kafka_leave_group_request_member_identity *id = &q->members[i];
            sp_kafka_leave_group_response_member_response_init(&ms[i]);
            ms[i].member_id = rstr_nn(r, req_strdup(r, id->member_id));
            ms[i].group_instance_id = id->group_instance_id.len >= 0
                                          ? rstr(r, req_strdup(r, id->group_instance_id))
                                          : SP_KSTR_NULL;
            struct member *m = NULL;
            if (g != NULL && id->member_id.len > 0) {
                m = member_find(g, id->member_id);
            } else if (g != NULL && id->group_instance_id.len >= 0) {
                for (struct member *x = g->members; x != NULL && m == NULL; x = x->next) {
                    if (kstr_eq(id->group_instance_id, x->instance_id))
                        m = x;
                }
            }
            if (m == NULL) {
                ms[i].error_code = GERR_UNKNOWN_MEMBER_ID;
                continue;
            }
            member_remove(g, m, GERR_UNKNOWN_MEMBER_ID);
            left = true;
        }
        o->members = ms;
        o->members_count = n;
    }
    if (left)
        members_left(g);
    pop_reply(p);
}

static void leave_group(struct req *r)
{
    struct sp_kafka_leave_group_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_leave_group_response_init(o);
    req_forward(r, o, leave_call);
}

/* ---- OffsetCommit ---- */

static void commit_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    struct sp_broker *b = r->conn->bs->b;
    const struct sp_kafka_offset_commit_request *q = r->f.body;
    struct sp_kafka_offset_commit_response *o = p->slot;
    int32_t nt = q->topics_count > 0 ? q->topics_count : 0;
    struct sp_kafka_offset_commit_response_offset_commit_response_topic *ts =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
    if (ts == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    o->topics = ts;
    o->topics_count = nt;
    /* The group-level verdict. */
    int16_t err = KERR_NONE;
    struct group *g = NULL;
    int32_t gen = r->version >= 1 ? q->generation_id_or_member_epoch : -1;
    if (c == NULL || c->stopping) {
        err = GERR_COORDINATOR_NOT_AVAILABLE;
    } else if (q->group_id.len <= 0 || q->group_id.len > GROUP_ID_MAX) {
        err = GERR_INVALID_GROUP_ID;
    } else {
        g = group_find(c, q->group_id);
        if (gen < 0 && q->member_id.len <= 0) {
            /* a simple commit: only into a group without members */
            if (g == NULL)
                g = group_create(c, q->group_id);
            if (g == NULL)
                err = GERR_OUT_OF_MEMORY;
            else if (g->member_count > 0)
                err = GERR_UNKNOWN_MEMBER_ID;
        } else if (g == NULL) {
            err = GERR_ILLEGAL_GENERATION;
        } else {
            struct member *m = member_find(g, q->member_id);
            if (m == NULL)
                err = GERR_UNKNOWN_MEMBER_ID;
            else if (gen != g->generation)
                err = GERR_ILLEGAL_GENERATION;
            else if (g->state == G_COMPLETING)
                err = GERR_REBALANCE_IN_PROGRESS; /* as Kafka: Preparing still commits */
            if (m != NULL && err != GERR_UNKNOWN_MEMBER_ID)
                m->seen_ns = sp_now_ns();
        }
    }
    const struct topic_set *set = topics_now(b);
    bool dirty = false;
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_offset_commit_request_offset_commit_request_topic *t = &q->topics[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        struct sp_kafka_offset_commit_response_offset_commit_response_partition *ps =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ps));
        sp_kafka_offset_commit_response_offset_commit_response_topic_init(&ts[i]);
        ts[i].name = rstr_nn(r, req_strdup(r, t->name));
        if (ps == NULL) {
            ts[i].partitions_count = 0;
            continue;
        }
        ts[i].partitions = ps;
        ts[i].partitions_count = np;
        const struct topic *topic =
            t->name.len > 0 ? topic_find(set, t->name.ptr, (size_t)t->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_offset_commit_request_offset_commit_request_partition *pp =
                &t->partitions[k];
            sp_kafka_offset_commit_response_offset_commit_response_partition_init(&ps[k]);
            ps[k].partition_index = pp->partition_index;
            if (err != KERR_NONE) {
                ps[k].error_code = err;
                continue;
            }
            if (topic == NULL || pp->partition_index < 0 ||
                pp->partition_index >= topic->partitions) {
                ps[k].error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (pp->committed_metadata.len > METADATA_MAX) {
                ps[k].error_code = GERR_OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            char *tn = strdup(topic->name);
            char *meta =
                kstr_dup(pp->committed_metadata.len >= 0 ? pp->committed_metadata : SP_KSTR(""));
            if (meta != NULL && strlen(meta) != (size_t)SP_MAX(pp->committed_metadata.len, 0)) {
                free(tn);
                free(meta);
                ps[k].error_code = KERR_INVALID_REQUEST; /* an embedded NUL */
                continue;
            }
            int32_t epoch = r->version >= 6 ? pp->committed_leader_epoch : -1;
            if (tn == NULL || meta == NULL ||
                !offset_set(g, tn, pp->partition_index, pp->committed_offset, epoch, meta)) {
                if (tn == NULL || meta == NULL) {
                    free(tn);
                    free(meta);
                }
                ps[k].error_code = GERR_OUT_OF_MEMORY;
                continue;
            }
            dirty = true;
        }
    }
    if (dirty) {
        int rc = offsets_persist(c, g);
        if (rc < 0) {
            sp_error("broker: cannot store the offsets of group %s: %s", g->id, strerror(-rc));
            for (int32_t i = 0; i < nt; i++) {
                for (int32_t k = 0; k < ts[i].partitions_count; k++) {
                    if (ts[i].partitions[k].error_code == KERR_NONE)
                        ts[i].partitions[k].error_code = KERR_KAFKA_STORAGE_ERROR;
                }
            }
        }
    }
    pop_reply(p);
}

static void offset_commit(struct req *r)
{
    struct sp_kafka_offset_commit_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_offset_commit_response_init(o);
    req_forward(r, o, commit_call);
}

int group_txn_commit(struct bshard *bs, const char *group, const struct txn_offset *offs,
                     uint32_t count)
{
    struct coord *c = bs->groups;
    SP_ASSERT(c != NULL); /* shard 0 */
    struct sp_kstr id = {group, (int32_t)strlen(group)};
    struct group *g = group_find(c, id);
    if (g == NULL && (g = group_create(c, id)) == NULL)
        return -ENOMEM;
    bool dirty = false;
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(offs[i].group, group) != 0)
            continue;
        char *topic = strdup(offs[i].topic), *meta = strdup(offs[i].meta);
        if (topic == NULL || meta == NULL) {
            free(topic);
            free(meta);
            return -ENOMEM;
        }
        if (!offset_set(g, topic, offs[i].partition, offs[i].offset, offs[i].leader_epoch, meta))
            return -ENOMEM;
        dirty = true;
    }
    return dirty ? offsets_persist(c, g) : 0;
}

/* ---- OffsetFetch (v0..7: one group) ---- */

static void
fetch_fill_part(struct req *r, struct group *g, const char *topic, int32_t partition,
                struct sp_kafka_offset_fetch_response_offset_fetch_response_partition *o)
{
    sp_kafka_offset_fetch_response_offset_fetch_response_partition_init(o);
    o->partition_index = partition;
    const struct goff *f = g != NULL ? offset_find(g, topic, partition) : NULL;
    o->committed_offset = f != NULL ? f->offset : -1;
    o->metadata = f != NULL ? rstr_nn(r, f->meta) : SP_KSTR("");
    if (r->version >= 5 && f != NULL)
        o->committed_leader_epoch = f->epoch;
}

static void offset_fetch_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_offset_fetch_request *q = r->f.body;
    struct sp_kafka_offset_fetch_response *o = p->slot;
    if (c == NULL || c->stopping || q->group_id.len <= 0) {
        int16_t err =
            c == NULL || c->stopping ? GERR_COORDINATOR_NOT_AVAILABLE : GERR_INVALID_GROUP_ID;
        if (r->version >= 2) {
            o->error_code = err;
            o->topics_count = 0;
            pop_reply(p);
            return;
        }
        /* v0/v1: per partition */
        int32_t nt = q->topics_count > 0 ? q->topics_count : 0;
        struct sp_kafka_offset_fetch_response_offset_fetch_response_topic *ts =
            req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
        if (ts == NULL) {
            r->resp = NULL;
            pop_reply(p);
            return;
        }
        for (int32_t i = 0; i < nt; i++) {
            sp_kafka_offset_fetch_response_offset_fetch_response_topic_init(&ts[i]);
            ts[i].name = rstr_nn(r, req_strdup(r, q->topics[i].name));
            int32_t np = SP_MAX(q->topics[i].partition_indexes_count, 0);
            ts[i].partitions = req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ts[i].partitions));
            if (ts[i].partitions == NULL)
                continue;
            ts[i].partitions_count = np;
            for (int32_t k = 0; k < np; k++) {
                fetch_fill_part(r, NULL, "", q->topics[i].partition_indexes[k],
                                &ts[i].partitions[k]);
                ts[i].partitions[k].error_code = err;
            }
        }
        o->topics = ts;
        o->topics_count = nt;
        pop_reply(p);
        return;
    }
    struct group *g = group_find(c, q->group_id);
    if (q->topics_count < 0) {
        /* every committed offset of the group, topic by topic */
        uint32_t n = g != NULL ? g->noffs : 0;
        struct sp_kafka_offset_fetch_response_offset_fetch_response_topic *ts =
            req_alloc(r, (n ? n : 1) * sizeof(*ts));
        if (ts == NULL) {
            r->resp = NULL;
            pop_reply(p);
            return;
        }
        int32_t nt = 0;
        for (uint32_t i = 0; i < n; i++) {
            const struct goff *f = &g->offs[i];
            int32_t t = 0;
            while (t < nt && !kstr_eq(ts[t].name, f->topic))
                t++;
            if (t == nt) {
                sp_kafka_offset_fetch_response_offset_fetch_response_topic_init(&ts[t]);
                ts[t].name = rstr_nn(r, f->topic);
                ts[t].partitions = req_alloc(r, n * sizeof(*ts[t].partitions));
                ts[t].partitions_count = 0;
                if (ts[t].partitions == NULL)
                    continue;
                nt++;
            }
            fetch_fill_part(r, g, f->topic, f->partition,
                            &ts[t].partitions[ts[t].partitions_count++]);
        }
        o->topics = ts;
        o->topics_count = nt;
        pop_reply(p);
        return;
    }
    int32_t nt = q->topics_count;
    struct sp_kafka_offset_fetch_response_offset_fetch_response_topic *ts =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
    if (ts == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    for (int32_t i = 0; i < nt; i++) {
        sp_kafka_offset_fetch_response_offset_fetch_response_topic_init(&ts[i]);
        char *name = req_strdup(r, q->topics[i].name);
        ts[i].name = rstr_nn(r, name);
        int32_t np = SP_MAX(q->topics[i].partition_indexes_count, 0);
        ts[i].partitions = req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ts[i].partitions));
        if (ts[i].partitions == NULL || name == NULL)
            continue;
        ts[i].partitions_count = np;
        for (int32_t k = 0; k < np; k++)
            fetch_fill_part(r, g, name, q->topics[i].partition_indexes[k], &ts[i].partitions[k]);
    }
    o->topics = ts;
    o->topics_count = nt;
    pop_reply(p);
}

/* ---- OffsetFetch v8+: a batch of groups ---- */

typedef struct sp_kafka_offset_fetch_response_offset_fetch_response_topics fetch8_topic;
typedef struct sp_kafka_offset_fetch_response_offset_fetch_response_partitions fetch8_part;

static void fetch8_fill_part(struct req *r, struct group *g, const char *topic, int32_t partition,
                             fetch8_part *o)
{
    sp_kafka_offset_fetch_response_offset_fetch_response_partitions_init(o);
    o->partition_index = partition;
    const struct goff *f = g != NULL ? offset_find(g, topic, partition) : NULL;
    o->committed_offset = f != NULL ? f->offset : -1;
    o->metadata = f != NULL ? rstr_nn(r, f->meta) : SP_KSTR("");
    if (f != NULL)
        o->committed_leader_epoch = f->epoch;
}

static void fetch8_group(struct coord *c, struct req *r,
                         const struct sp_kafka_offset_fetch_request_offset_fetch_request_group *q,
                         struct sp_kafka_offset_fetch_response_offset_fetch_response_group *o)
{
    sp_kafka_offset_fetch_response_offset_fetch_response_group_init(o);
    o->group_id = rstr_nn(r, req_strdup(r, q->group_id));
    o->topics_count = 0;
    if (c == NULL || c->stopping) {
        o->error_code = GERR_COORDINATOR_NOT_AVAILABLE;
        return;
    }
    if (q->group_id.len <= 0) {
        o->error_code = GERR_INVALID_GROUP_ID;
        return;
    }
    struct group *g = group_find(c, q->group_id);
    if (q->topics_count < 0) {
        uint32_t n = g != NULL ? g->noffs : 0;
        fetch8_topic *ts = req_alloc(r, (n ? n : 1) * sizeof(*ts));
        if (ts == NULL) {
            o->error_code = GERR_OUT_OF_MEMORY;
            return;
        }
        int32_t nt = 0;
        for (uint32_t i = 0; i < n; i++) {
            const struct goff *f = &g->offs[i];
            int32_t t = 0;
            while (t < nt && !kstr_eq(ts[t].name, f->topic))
                t++;
            if (t == nt) {
                sp_kafka_offset_fetch_response_offset_fetch_response_topics_init(&ts[t]);
                ts[t].name = rstr_nn(r, f->topic);
                ts[t].partitions = req_alloc(r, n * sizeof(*ts[t].partitions));
                ts[t].partitions_count = 0;
                if (ts[t].partitions == NULL)
                    continue;
                nt++;
            }
            fetch8_fill_part(r, g, f->topic, f->partition,
                             &ts[t].partitions[ts[t].partitions_count++]);
        }
        o->topics = ts;
        o->topics_count = nt;
        return;
    }
    int32_t nt = q->topics_count;
    fetch8_topic *ts = req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
    if (ts == NULL) {
        o->error_code = GERR_OUT_OF_MEMORY;
        return;
    }
    for (int32_t i = 0; i < nt; i++) {
        sp_kafka_offset_fetch_response_offset_fetch_response_topics_init(&ts[i]);
        char *name = req_strdup(r, q->topics[i].name);
        ts[i].name = rstr_nn(r, name);
        int32_t np = SP_MAX(q->topics[i].partition_indexes_count, 0);
        ts[i].partitions = req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ts[i].partitions));
        if (ts[i].partitions == NULL || name == NULL)
            continue;
        ts[i].partitions_count = np;
        for (int32_t k = 0; k < np; k++)
            fetch8_fill_part(r, g, name, q->topics[i].partition_indexes[k], &ts[i].partitions[k]);
    }
    o->topics = ts;
    o->topics_count = nt;
}

static void offset_fetch8_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_offset_fetch_request *q = r->f.body;
    struct sp_kafka_offset_fetch_response *o = p->slot;
    int32_t n = q->groups_count > 0 ? q->groups_count : 0;
    struct sp_kafka_offset_fetch_response_offset_fetch_response_group *gs =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*gs));
    if (gs == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    for (int32_t i = 0; i < n; i++)
        fetch8_group(c, r, &q->groups[i], &gs[i]);
    o->groups = gs;
    o->groups_count = n;
    pop_reply(p);
}

static void offset_fetch(struct req *r)
{
    struct sp_kafka_offset_fetch_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL) {
        sp_kafka_offset_fetch_response_init(o);
        o->topics_count = 0;
        o->groups_count = 0;
    }
    req_forward(r, o, r->version >= 8 ? offset_fetch8_call : offset_fetch_call);
}

/* ---- DescribeGroups ---- */

static void describe_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_describe_groups_request *q = r->f.body;
    struct sp_kafka_describe_groups_response *o = p->slot;
    int32_t n = q->groups_count > 0 ? q->groups_count : 0;
    struct sp_kafka_describe_groups_response_described_group *gs =
        req_alloc(r, (size_t)(n ? n : 1) * sizeof(*gs));
    if (gs == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        struct sp_kafka_describe_groups_response_described_group *d = &gs[i];
        sp_kafka_describe_groups_response_described_group_init(d);
        d->group_id = rstr_nn(r, req_strdup(r, q->groups[i]));
        d->protocol_type = SP_KSTR("");
        d->protocol_data = SP_KSTR("");
        d->members_count = 0;
        if (c == NULL || c->stopping) {
            d->error_code = GERR_COORDINATOR_NOT_AVAILABLE;
            d->group_state = SP_KSTR("");
            continue;
        }
        if (q->groups[i].len <= 0) {
            d->error_code = GERR_INVALID_GROUP_ID;
            d->group_state = SP_KSTR("");
            continue;
        }
        struct group *g = group_find(c, q->groups[i]);
        if (g == NULL) {
            d->group_state = SP_KSTR("Dead");
            continue;
        }
        d->group_state = kstr(state_names[g->state]);
        d->protocol_type = rstr_nn(r, g->protocol_type);
        d->protocol_data = g->state == G_STABLE ? rstr_nn(r, g->protocol) : SP_KSTR("");
        struct sp_kafka_describe_groups_response_described_group_member *ms =
            req_alloc(r, (g->member_count ? g->member_count : 1) * sizeof(*ms));
        if (ms == NULL)
            continue;
        int32_t k = 0;
        for (struct member *m = g->members; m != NULL; m = m->next, k++) {
            sp_kafka_describe_groups_response_described_group_member_init(&ms[k]);
            ms[k].member_id = rstr_nn(r, m->id);
            if (r->version >= 4)
                ms[k].group_instance_id = rstr(r, m->instance_id);
            ms[k].client_id = rstr_nn(r, m->client_id);
            ms[k].client_host = rstr_nn(r, m->client_host);
            const struct gproto *pr = member_proto(m, g->protocol);
            ms[k].member_metadata = g->state == G_STABLE && pr != NULL
                                        ? rbytes(r, pr->meta, pr->len)
                                        : rbytes(r, NULL, 0);
            ms[k].member_assignment = g->state == G_STABLE
                                          ? rbytes(r, m->assignment, m->assignment_len)
                                          : rbytes(r, NULL, 0);
        }
        d->members = ms;
        d->members_count = k;
    }
    o->groups = gs;
    o->groups_count = n;
    pop_reply(p);
}

static void describe_groups(struct req *r)
{
    struct sp_kafka_describe_groups_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_describe_groups_response_init(o);
    req_forward(r, o, describe_call);
}

/* ---- ListGroups ---- */

static void list_call(struct pop *p)
{
    struct coord *c = coord_of(p);
    struct req *r = p->req;
    const struct sp_kafka_list_groups_request *q = r->f.body;
    struct sp_kafka_list_groups_response *o = p->slot;
    if (c == NULL || c->stopping) {
        o->error_code = GERR_COORDINATOR_NOT_AVAILABLE;
        pop_reply(p);
        return;
    }
    struct sp_kafka_list_groups_response_listed_group *ls =
        req_alloc(r, (c->group_count ? c->group_count : 1) * sizeof(*ls));
    if (ls == NULL) {
        o->error_code = GERR_OUT_OF_MEMORY;
        pop_reply(p);
        return;
    }
    int32_t n = 0;
    for (struct group *g = c->groups; g != NULL; g = g->next) {
        const char *state = state_names[g->state];
        if (r->version >= 4 && q->states_filter_count > 0) {
            bool match = false;
            for (int32_t i = 0; i < q->states_filter_count && !match; i++) {
                const struct sp_kstr f = q->states_filter[i];
                match = f.len == (int32_t)strlen(state) &&
                        strncasecmp(f.ptr, state, (size_t)f.len) == 0;
            }
            if (!match)
                continue;
        }
        if (r->version >= 5 && q->types_filter_count > 0) {
            bool match = false;
            for (int32_t i = 0; i < q->types_filter_count && !match; i++)
                match = q->types_filter[i].len == 7 &&
                        strncasecmp(q->types_filter[i].ptr, "classic", 7) == 0;
            if (!match)
                continue;
        }
        sp_kafka_list_groups_response_listed_group_init(&ls[n]);
        ls[n].group_id = rstr_nn(r, g->id);
        ls[n].protocol_type = rstr_nn(r, g->protocol_type);
        if (r->version >= 4)
            ls[n].group_state = kstr(state);
        if (r->version >= 5)
            ls[n].group_type = SP_KSTR("classic");
        n++;
    }
    o->groups = ls;
    o->groups_count = n;
    pop_reply(p);
}

static void list_groups(struct req *r)
{
    struct sp_kafka_list_groups_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_list_groups_response_init(o);
    req_forward(r, o, list_call);
}

/* ---- The table ---- */

const struct api_entry group_apis[] = {
    {8, 0, 8, offset_commit}, {9, 0, 8, offset_fetch},     {10, 0, 4, find_coordinator},
    {11, 0, 9, join_group},   {12, 0, 4, heartbeat},       {13, 0, 5, leave_group},
    {14, 0, 5, sync_group},   {15, 0, 5, describe_groups}, {16, 0, 5, list_groups},
    {-1, 0, 0, NULL},
};

/* ---- Timer, start, stop (shard 0) ---- */

static void group_free(struct group *g)
{
    while (g->members != NULL) {
        struct member *m = g->members;
        g->members = m->next;
        member_free(m); /* its waits were answered (stop) */
    }
    while (g->pending != NULL) {
        struct pending_id *pi = g->pending;
        g->pending = pi->next;
        free(pi->id);
        free(pi);
    }
    for (uint32_t i = 0; i < g->noffs; i++) {
        free(g->offs[i].topic);
        free(g->offs[i].meta);
    }
    free(g->offs);
    free(g->id);
    free(g->leader);
    free(g->protocol);
    free(g->protocol_type);
    free(g);
}

static void tick(struct sp_timer *t, void *ctx)
{
    (void)t;
    struct coord *c = ctx;
    if (c->stopping)
        return;
    uint64_t now = sp_now_ns();
    for (struct group **gp = &c->groups; *gp != NULL;) {
        struct group *g = *gp;
        if (g->state == G_EMPTY && g->members == NULL && g->pending == NULL && g->noffs == 0) {
            /* nothing left to remember: forget the group */
            *gp = g->next;
            c->group_count--;
            group_free(g);
            continue;
        }
        gp = &g->next;
        for (struct pending_id **pp = &g->pending; *pp != NULL;) {
            struct pending_id *pi = *pp;
            if (pi->expire_ns <= now) {
                *pp = pi->next;
                g->pending_count--;
                free(pi->id);
                free(pi);
            } else {
                pp = &pi->next;
            }
        }
        bool left = false;
        for (struct member *m = g->members, *next; m != NULL; m = next) {
            next = m->next;
            if (m->join_wait == NULL && m->seen_ns + (uint64_t)m->session_ms * 1000000u <= now) {
                sp_info("broker: group %s: member %s timed out", g->id, m->id);
                member_remove(g, m, GERR_UNKNOWN_MEMBER_ID);
                left = true;
            }
        }
        if (left)
            members_left(g);
        if (g->state == G_PREPARING && g->rebalance_deadline_ns <= now)
            complete_join(g);
    }
    sp_shard_timer_arm(c->bs->shard, &c->tick, now + TICK_MS * 1000000ull);
}

/* The runtime stops: answer every waiting member, stop the timer. */
static void coord_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct coord *c = SP_CONTAINER_OF(hook, struct coord, stop_hook);
    c->stopping = true;
    sp_shard_timer_cancel(shard, &c->tick);
    for (struct group *g = c->groups; g != NULL; g = g->next) {
        for (struct member *m = g->members; m != NULL; m = m->next)
            member_release(g, m, GERR_COORDINATOR_NOT_AVAILABLE);
    }
}

void group_shard_start(struct bshard *bs)
{
    if (bs->shard->id != 0)
        return;
    struct coord *c = calloc(1, sizeof(*c));
    SP_ASSERT(c != NULL);
    c->b = bs->b;
    c->bs = bs;
    if (bs->b->data_dir != NULL) {
        size_t n = strlen(bs->b->data_dir) + 16;
        c->dir = malloc(n);
        SP_ASSERT(c->dir != NULL);
        snprintf(c->dir, n, "%s/groups", bs->b->data_dir);
        if (mkdir(c->dir, 0755) != 0 && errno != EEXIST)
            sp_error("broker: cannot create %s: %s", c->dir, strerror(errno));
        offsets_load(c);
    }
    bs->groups = c;
    sp_shard_on_stop(bs->shard, &c->stop_hook, coord_stop);
    sp_timer_init(&c->tick, tick, c);
    sp_shard_timer_arm(bs->shard, &c->tick, sp_now_ns() + TICK_MS * 1000000ull);
}

void group_shard_finish(struct bshard *bs)
{
    struct coord *c = bs->groups;
    if (c == NULL)
        return;
    sp_shard_timer_cancel(bs->shard, &c->tick);
    while (c->groups != NULL) {
        struct group *g = c->groups;
        c->groups = g->next;
        group_free(g);
    }
    free(c->dir);
    free(c);
    bs->groups = NULL;
}
