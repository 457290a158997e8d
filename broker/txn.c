/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transaction coordinator: Kafka's two-phase commit for transactional
 * producers, on shard 0 (as the group coordinator is).
 *
 * A transactional id has a producer id and an epoch (InitProducerId bumps
 * the epoch, fencing any older producer of that id), a timeout, a state,
 * and while a transaction is open the partitions it wrote to
 * (AddPartitionsToTxn), the groups whose offsets it carries
 * (AddOffsetsToTxn) and those offsets (TxnOffsetCommit). EndTxn moves it to
 * PrepareCommit or PrepareAbort (recorded first), writes a control batch
 * (the marker) into every partition of the transaction through the
 * partition's owner shard, applies the offsets to the groups on a commit,
 * then records CompleteCommit/CompleteAbort and answers. A transaction open
 * longer than its timeout is aborted the same way, with the epoch bumped
 * first so the producer that let it time out is fenced (it may come back
 * with InitProducerId naming its id and epoch, KIP-360).
 *
 * On the partitions (producers.c), the first batch of a producer's
 * transaction holds the last stable offset back until the marker; an abort
 * marker adds the transaction to the partition's aborted list, which
 * read_committed fetches return so the consumer can skip its records.
 *
 * Durability: every state change rewrites the file `transactions` of the
 * data directory (write, fsync, rename, fsync of the directory) before it is
 * acknowledged. At start, transactions found in a Prepare state are
 * completed (their markers written again: a marker written twice is
 * harmless), open ones time out from the restart on.
 *
 * Known limits: the partitions' open transactions and aborted lists are kept
 * in memory (producers.c): after a restart the coordinator's Prepare and
 * timeout handling still ends every transaction, but a partition no longer
 * knows the first offset of a transaction left open across the restart.
 * Transactional ids are never expired (Kafka forgets them after
 * transactional.id.expiration.ms); TxnOffsetCommit does not check the
 * group's generation.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "sp_log.h"

#define TXN_TICK_MS 100
#define TXN_ID_MAX 4096       /* bytes of a transactional id */
#define TXNS_MAX 100000u      /* transactional ids remembered */
#define TXN_PARTS_MAX 100000u /* partitions in one transaction */
#define TXN_OFFSETS_MAX 100000u
#define TXN_MARKER_RETRY_MS 100
/* A hex field of the state file: 2 * TXN_ID_MAX characters at most. */
#define TXN_HEX_WIDTH "8192"
#define TXN_HEX_FIELD (2 * TXN_ID_MAX + 1)
_Static_assert(2 * TXN_ID_MAX == 8192, "TXN_HEX_WIDTH is 2 * TXN_ID_MAX");

enum {
    TERR_INVALID_PRODUCER_EPOCH = 47,
    TERR_INVALID_TXN_STATE = 48,
    TERR_INVALID_PRODUCER_ID_MAPPING = 49,
    TERR_INVALID_TRANSACTION_TIMEOUT = 50,
    TERR_CONCURRENT_TRANSACTIONS = 51,
    TERR_COORDINATOR_LOAD_IN_PROGRESS = 14,
    TERR_COORDINATOR_NOT_AVAILABLE = 15,
    TERR_OPERATION_NOT_ATTEMPTED = 55,
};

enum tstate {
    T_EMPTY,
    T_ONGOING,
    T_PREPARE_COMMIT,
    T_PREPARE_ABORT,
    T_COMPLETE_COMMIT,
    T_COMPLETE_ABORT,
};

static const char *const tstate_names[] = {"Empty",        "Ongoing",        "PrepareCommit",
                                           "PrepareAbort", "CompleteCommit", "CompleteAbort"};

struct tpart {
    char *topic;
    int32_t partition;
};

struct tcoord;

struct txn {
    struct txn *next;
    struct tcoord *coord;
    char *id;
    int64_t pid;
    int16_t epoch;
    int16_t last_epoch; /* the epoch before a timeout's bump, -1 */
    int32_t timeout_ms;
    enum tstate state;
    uint64_t started_ns; /* when it went Ongoing */
    struct tpart *parts;
    uint32_t nparts, parts_cap;
    char **groups;
    uint32_t ngroups, groups_cap;
    struct txn_offset *offs;
    uint32_t noffs, offs_cap;
    /* Completion in progress: markers in flight, who waits for the end. */
    struct pop *markers;
    uint32_t markers_pending, markers_failed;
    struct pop *wait; /* EndTxn's call, answered at the end */
    struct sp_timer retry;
};

struct tcoord {
    struct sp_broker *b;
    struct bshard *bs;
    struct txn *txns;
    uint32_t count;
    struct sp_timer tick;
    struct sp_stop_hook stop_hook;
    bool stopping;
    bool recovered; /* Prepare states found at start were resumed; until
                     * then requests are answered LOAD_IN_PROGRESS */
    char *path, *tmp;
};

static void txn_advance(struct tcoord *c, struct txn *t);
static void marker_retry(struct sp_timer *timer, void *ctx);

/* ---- Small helpers ---- */

static struct tcoord *tcoord_here(struct pop *p)
{
    struct bshard *bs = bshard_here(p->home->b);
    return bs != NULL ? bs->txns : NULL;
}

static void txn_clear(struct txn *t)
{
    for (uint32_t i = 0; i < t->nparts; i++)
        free(t->parts[i].topic);
    for (uint32_t i = 0; i < t->ngroups; i++)
        free(t->groups[i]);
    for (uint32_t i = 0; i < t->noffs; i++) {
        free(t->offs[i].group);
        free(t->offs[i].topic);
        free(t->offs[i].meta);
    }
    t->nparts = t->ngroups = t->noffs = 0;
}

static void txn_free(struct txn *t)
{
    txn_clear(t);
    free(t->parts);
    free(t->groups);
    free(t->offs);
    free(t->markers);
    free(t->id);
    free(t);
}

static struct txn *txn_find(struct tcoord *c, struct sp_kstr id)
{
    for (struct txn *t = c->txns; t != NULL; t = t->next) {
        if (sp_kstr_eq(id, t->id))
            return t;
    }
    return NULL;
}

static struct txn *txn_new(struct tcoord *c, char *id)
{
    struct txn *t = c->count < TXNS_MAX ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL) {
        free(id);
        return NULL;
    }
    t->id = id;
    t->coord = c;
    t->pid = -1;
    t->epoch = -1;
    t->last_epoch = -1;
    t->next = c->txns;
    c->txns = t;
    c->count++;
    return t;
}

/* Grows *v (of *cap elements of `size`) to hold one more; false when out of memory. */
static bool grow(void **v, uint32_t count, uint32_t *cap, size_t size, uint32_t max)
{
    if (count < *cap)
        return true;
    if (count >= max)
        return false;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *g = realloc(*v, ncap * size);
    if (g == NULL)
        return false;
    *v = g;
    *cap = ncap;
    return true;
}

static bool txn_add_part(struct txn *t, const char *topic, int32_t partition)
{
    for (uint32_t i = 0; i < t->nparts; i++) {
        if (t->parts[i].partition == partition && strcmp(t->parts[i].topic, topic) == 0)
            return true;
    }
    char *name = strdup(topic);
    if (name == NULL ||
        !grow((void **)&t->parts, t->nparts, &t->parts_cap, sizeof(*t->parts), TXN_PARTS_MAX)) {
        free(name);
        return false;
    }
    t->parts[t->nparts++] = (struct tpart){.topic = name, .partition = partition};
    return true;
}

static bool txn_add_group(struct txn *t, const char *group)
{
    for (uint32_t i = 0; i < t->ngroups; i++) {
        if (strcmp(t->groups[i], group) == 0)
            return true;
    }
    char *g = strdup(group);
    if (g == NULL ||
        !grow((void **)&t->groups, t->ngroups, &t->groups_cap, sizeof(*t->groups), TXN_PARTS_MAX)) {
        free(g);
        return false;
    }
    t->groups[t->ngroups++] = g;
    return true;
}

/* Sets the transaction's offset for (group, topic, partition), taking the
 * malloc'd strings; false (strings freed) when out of room. */
static bool txn_set_offset(struct txn *t, struct txn_offset o)
{
    for (uint32_t i = 0; i < t->noffs; i++) {
        struct txn_offset *e = &t->offs[i];
        if (e->partition == o.partition && strcmp(e->topic, o.topic) == 0 &&
            strcmp(e->group, o.group) == 0) {
            free(e->group);
            free(e->topic);
            free(e->meta);
            *e = o;
            return true;
        }
    }
    if (!grow((void **)&t->offs, t->noffs, &t->offs_cap, sizeof(*t->offs), TXN_OFFSETS_MAX)) {
        free(o.group);
        free(o.topic);
        free(o.meta);
        return false;
    }
    t->offs[t->noffs++] = o;
    return true;
}

/* ---- Persistence ---- */

/*
 * The file, one line each: `txn ID PID EPOCH LAST_EPOCH TIMEOUT_MS STATE`,
 * followed by that transaction's `part TOPIC PARTITION`, `group GROUP` and
 * `off GROUP TOPIC PARTITION OFFSET LEADER_EPOCH META` lines; ids, groups
 * and metadata in hex ("-" when empty), topic names as they are (their
 * characters are [a-zA-Z0-9._-]).
 */
static int txns_write(FILE *f, void *ctx)
{
    const struct tcoord *c = ctx;
    for (const struct txn *t = c->txns; t != NULL; t = t->next) {
        fputs("txn ", f);
        hex_put(f, t->id);
        fprintf(f, " %" PRId64 " %d %d %" PRId32 " %s\n", t->pid, t->epoch, t->last_epoch,
                t->timeout_ms, tstate_names[t->state]);
        for (uint32_t i = 0; i < t->nparts; i++)
            fprintf(f, "part %s %" PRId32 "\n", t->parts[i].topic, t->parts[i].partition);
        for (uint32_t i = 0; i < t->ngroups; i++) {
            fputs("group ", f);
            hex_put(f, t->groups[i]);
            fputc('\n', f);
        }
        for (uint32_t i = 0; i < t->noffs; i++) {
            const struct txn_offset *o = &t->offs[i];
            fputs("off ", f);
            hex_put(f, o->group);
            fprintf(f, " %s %" PRId32 " %" PRId64 " %" PRId32 " ", o->topic, o->partition,
                    o->offset, o->leader_epoch);
            hex_put(f, o->meta);
            fputc('\n', f);
        }
    }
    return 0;
}

static int txns_persist(struct tcoord *c)
{
    if (c->path == NULL)
        return 0;
    return file_replace(c->b->data_dir, c->path, c->tmp, txns_write, c);
}

static int state_of_name(const char *s)
{
    for (int i = 0; i < (int)(sizeof(tstate_names) / sizeof(tstate_names[0])); i++) {
        if (strcmp(s, tstate_names[i]) == 0)
            return i;
    }
    return -1;
}

/* Reads the file; 0, or -EBADMSG naming the bad line (nothing is served
 * from a file this code did not write), or -errno. */
static int txns_load(struct tcoord *c)
{
    FILE *f = fopen(c->path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    /* The longest line: "off", a group id and offset metadata in hex (each
     * up to 2 * TXN_ID_MAX characters), a topic name, three numbers. */
    struct {
        char line[5 * TXN_ID_MAX + 1024];
        char a[TXN_HEX_FIELD], bb[TXN_HEX_FIELD], m[TXN_HEX_FIELD], st[32];
    } *buf = malloc(sizeof(*buf));
    if (buf == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    char *line = buf->line, *a = buf->a, *bb = buf->bb, *m = buf->m, *st = buf->st;
    struct txn *t = NULL;
    int rc = 0;
    unsigned lineno = 0;
    while (rc == 0 && fgets(line, sizeof(buf->line), f) != NULL) {
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = -EBADMSG; /* longer than any line this code writes */
            break;
        }
        lineno++;
        int64_t pid, off;
        int epoch, last, part, lepoch;
        int32_t timeout;
        if (sscanf(line, "txn %" TXN_HEX_WIDTH "s %" SCNd64 " %d %d %" SCNd32 " %31s", a, &pid,
                   &epoch, &last, &timeout, st) == 6) {
            char *id = hex_get(a);
            int s = state_of_name(st);
            if (id == NULL || s < 0 || epoch < -1 || epoch > INT16_MAX || last < -1 ||
                last > INT16_MAX) {
                free(id);
                rc = -EBADMSG;
                break;
            }
            if ((t = txn_new(c, id)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            t->pid = pid;
            t->epoch = (int16_t)epoch;
            t->last_epoch = (int16_t)last;
            t->timeout_ms = timeout;
            t->state = (enum tstate)s;
            t->started_ns = sp_now_ns();
        } else if (t != NULL && sscanf(line, "part %300s %d", a, &part) == 2) {
            if (!txn_add_part(t, a, part))
                rc = -ENOMEM;
        } else if (t != NULL && sscanf(line, "group %" TXN_HEX_WIDTH "s", a) == 1) {
            char *g = hex_get(a);
            if (g == NULL || !txn_add_group(t, g))
                rc = g == NULL ? -EBADMSG : -ENOMEM;
            free(g);
        } else if (t != NULL &&
                   sscanf(line,
                          "off %" TXN_HEX_WIDTH "s %300s %d %" SCNd64 " %d %" TXN_HEX_WIDTH "s", a,
                          bb, &part, &off, &lepoch, m) == 6) {
            struct txn_offset o = {.group = hex_get(a),
                                   .topic = strdup(bb),
                                   .partition = part,
                                   .offset = off,
                                   .leader_epoch = lepoch,
                                   .meta = hex_get(m)};
            if (o.group == NULL || o.topic == NULL || o.meta == NULL) {
                free(o.group);
                free(o.topic);
                free(o.meta);
                rc = -EBADMSG;
            } else if (!txn_set_offset(t, o)) {
                rc = -ENOMEM;
            }
        } else {
            rc = -EBADMSG;
        }
    }
    fclose(f);
    free(buf);
    if (rc < 0)
        sp_error("broker: %s line %u: %s", c->path, lineno,
                 rc == -EBADMSG ? "not what this broker writes" : strerror(-rc));
    return rc;
}

/* ---- Completing a transaction: markers, offsets, the end ---- */

static void txn_answer_wait(struct txn *t, int16_t err)
{
    struct pop *w = t->wait;
    if (w == NULL)
        return;
    t->wait = NULL;
    struct sp_kafka_end_txn_response *o = w->slot;
    o->error_code = err;
    pop_reply(w);
}

/* Every marker is written: apply the offsets, record the end, answer. */
static void txn_finish(struct tcoord *c, struct txn *t)
{
    bool commit = t->state == T_PREPARE_COMMIT;
    for (uint32_t i = 0; commit && i < t->ngroups; i++) {
        int rc = group_txn_commit(c->bs, t->groups[i], t->offs, t->noffs);
        if (rc < 0) {
            /* The offsets belong to the commit: stay prepared and try again
             * (markers and all: a repeated marker is harmless). */
            sp_error("broker: transaction %s: cannot store the offsets of group %s: %s; retrying",
                     t->id, t->groups[i], strerror(-rc));
            if (!c->stopping) {
                sp_timer_init(&t->retry, marker_retry, t);
                sp_shard_timer_arm(c->bs->shard, &t->retry,
                                   sp_now_ns() + TXN_MARKER_RETRY_MS * 1000000ull);
            } else {
                txn_answer_wait(t, TERR_COORDINATOR_NOT_AVAILABLE);
            }
            return;
        }
    }
    txn_clear(t);
    t->state = commit ? T_COMPLETE_COMMIT : T_COMPLETE_ABORT;
    int rc = txns_persist(c);
    if (rc < 0)
        sp_error("broker: transaction %s: cannot record its end: %s", t->id, strerror(-rc));
    /* The markers are written: the outcome stands even if the record of it
     * did not (a restart writes the markers again). */
    txn_answer_wait(t, KERR_NONE);
}

static void marker_retry(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    struct txn *t = ctx;
    struct tcoord *c = t->coord;
    if (c->stopping)
        return;
    txn_advance(c, t);
}

static void marker_done(struct pop *p)
{
    struct txn *t = p->slot;
    struct tcoord *c = p->home->txns;
    if (p->error != KERR_NONE && p->error != KERR_UNKNOWN_TOPIC_OR_PARTITION) {
        sp_warn("broker: transaction %s: marker to %s-%" PRId32 " failed (error %d), retrying",
                t->id, p->topic, p->partition, p->error);
        t->markers_failed++;
    } else {
        p->topic = NULL; /* written (or its topic is gone): done */
    }
    if (--t->markers_pending > 0)
        return;
    if (t->markers_failed > 0 && !c->stopping) {
        sp_timer_init(&t->retry, marker_retry, t);
        sp_shard_timer_arm(c->bs->shard, &t->retry, sp_now_ns() + TXN_MARKER_RETRY_MS * 1000000ull);
        return;
    }
    if (t->markers_failed > 0) {
        txn_answer_wait(t, TERR_COORDINATOR_NOT_AVAILABLE); /* stopping: a restart completes it */
        return;
    }
    free(t->markers);
    t->markers = NULL;
    txn_finish(c, t);
}

/* In a Prepare state: writes the markers still to write (all of them the
 * first time), or finishes when none is left. */
static void txn_advance(struct tcoord *c, struct txn *t)
{
    SP_ASSERT(t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT);
    SP_ASSERT(t->markers_pending == 0);
    if (t->markers == NULL && t->nparts > 0) {
        t->markers = calloc(t->nparts, sizeof(*t->markers));
        if (t->markers == NULL) {
            sp_timer_init(&t->retry, marker_retry, t);
            sp_shard_timer_arm(c->bs->shard, &t->retry,
                               sp_now_ns() + TXN_MARKER_RETRY_MS * 1000000ull);
            return;
        }
        for (uint32_t i = 0; i < t->nparts; i++)
            t->markers[i].topic = t->parts[i].topic;
    }
    t->markers_failed = 0;
    uint32_t todo = 0;
    for (uint32_t i = 0; i < t->nparts; i++)
        todo += t->markers[i].topic != NULL;
    if (todo == 0) {
        free(t->markers);
        t->markers = NULL;
        txn_finish(c, t);
        return;
    }
    t->markers_pending = todo;
    for (uint32_t i = 0; i < t->nparts; i++) {
        struct pop *m = &t->markers[i];
        if (m->topic == NULL)
            continue;
        *m = (struct pop){.kind = POP_MARKER,
                          .home = c->bs,
                          .topic = t->parts[i].topic,
                          .partition = t->parts[i].partition,
                          .pid = t->pid,
                          .epoch = t->epoch,
                          .commit = t->state == T_PREPARE_COMMIT,
                          .done = marker_done,
                          .slot = t};
        pop_start(m);
    }
}

/* Ongoing → Prepare{Commit,Abort}, recorded, then the markers. A Kafka error. */
static int16_t txn_end(struct tcoord *c, struct txn *t, bool commit)
{
    enum tstate was = t->state;
    t->state = commit ? T_PREPARE_COMMIT : T_PREPARE_ABORT;
    int rc = txns_persist(c);
    if (rc < 0) {
        t->state = was;
        sp_error("broker: transaction %s: cannot record its end: %s", t->id, strerror(-rc));
        return KERR_KAFKA_STORAGE_ERROR;
    }
    txn_advance(c, t);
    return KERR_NONE;
}

/* Aborts an open transaction with the epoch bumped (fencing its producer). */
static void txn_fence_abort(struct tcoord *c, struct txn *t)
{
    int16_t epoch = t->epoch, last_epoch = t->last_epoch;
    if (t->epoch < INT16_MAX - 1) {
        t->last_epoch = t->epoch;
        t->epoch++;
    }
    if (txn_end(c, t, false) != KERR_NONE) {
        /* Not recorded: nothing changed (the next try bumps from here). */
        t->epoch = epoch;
        t->last_epoch = last_epoch;
    }
}

/* ---- Requests (each runs on shard 0) ---- */

/* The transaction a request names, checked against its producer id and
 * epoch, and not in the middle of completing. A Kafka error. */
static int16_t txn_check(struct tcoord *c, struct sp_kstr id, int64_t pid, int16_t epoch,
                         struct txn **out)
{
    *out = NULL;
    if (c == NULL || c->stopping)
        return TERR_COORDINATOR_NOT_AVAILABLE;
    if (!c->recovered)
        return TERR_COORDINATOR_LOAD_IN_PROGRESS; /* the client retries */
    struct txn *t = txn_find(c, id);
    if (t == NULL || t->pid != pid)
        return TERR_INVALID_PRODUCER_ID_MAPPING;
    if (epoch != t->epoch)
        return TERR_INVALID_PRODUCER_EPOCH; /* fenced by a newer producer */
    if (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT)
        return TERR_CONCURRENT_TRANSACTIONS;
    *out = t;
    return KERR_NONE;
}

/* Opens the transaction if it is not open yet. */
static void txn_begin(struct txn *t)
{
    if (t->state != T_ONGOING) {
        t->state = T_ONGOING;
        t->started_ns = sp_now_ns();
    }
}

static void init_call(struct pop *p)
{
    struct tcoord *c = tcoord_here(p);
    const struct sp_kafka_init_producer_id_request *q = p->req->f.body;
    struct sp_kafka_init_producer_id_response *o = p->slot;
    o->producer_id = -1;
    o->producer_epoch = -1;
    int32_t max_ms = p->home->b->config.transaction_max_timeout_ms;
    struct txn *t = NULL;
    if (c == NULL || c->stopping) {
        o->error_code = TERR_COORDINATOR_NOT_AVAILABLE;
    } else if (!c->recovered) {
        /* What the last run left prepared is completed first: nothing may
         * start another completion of the same transaction before that. */
        o->error_code = TERR_COORDINATOR_LOAD_IN_PROGRESS;
    } else if (q->transactional_id.len <= 0 || q->transactional_id.len > TXN_ID_MAX ||
               memchr(q->transactional_id.ptr, '\0', (size_t)q->transactional_id.len) != NULL) {
        o->error_code = KERR_INVALID_REQUEST;
    } else if (q->transaction_timeout_ms <= 0 || q->transaction_timeout_ms > max_ms) {
        o->error_code = TERR_INVALID_TRANSACTION_TIMEOUT;
    } else if ((t = txn_find(c, q->transactional_id)) == NULL &&
               (t = txn_new(c, kstr_dup(q->transactional_id))) == NULL) {
        o->error_code = TERR_COORDINATOR_NOT_AVAILABLE; /* no room for another id */
    } else if (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT) {
        o->error_code = TERR_CONCURRENT_TRANSACTIONS; /* the client retries */
    } else if (q->producer_id >= 0 &&
               (q->producer_id != t->pid ||
                (q->producer_epoch != t->epoch && q->producer_epoch != t->last_epoch))) {
        o->error_code = TERR_INVALID_PRODUCER_EPOCH; /* KIP-360: not the current producer */
    } else if (t->state == T_ONGOING) {
        /* A new producer of this id: abort what the old one left open,
         * fencing it; the client retries once that is done. */
        txn_fence_abort(c, t);
        o->error_code = TERR_CONCURRENT_TRANSACTIONS;
    } else {
        int64_t pid = t->pid;
        int16_t epoch = (int16_t)(t->epoch + 1);
        if (pid < 0 || t->epoch >= INT16_MAX - 1) {
            pid = producer_id_new(p->home->b);
            epoch = 0;
        }
        if (pid < 0) {
            o->error_code = KERR_KAFKA_STORAGE_ERROR;
        } else {
            int64_t was_pid = t->pid;
            int16_t was_epoch = t->epoch, was_last = t->last_epoch;
            int32_t was_timeout = t->timeout_ms;
            enum tstate was_state = t->state;
            t->pid = pid;
            t->epoch = epoch;
            t->last_epoch = -1;
            t->timeout_ms = q->transaction_timeout_ms;
            t->state = T_EMPTY;
            int rc = txns_persist(c);
            if (rc < 0) {
                sp_error("broker: transaction %s: cannot record its producer: %s", t->id,
                         strerror(-rc));
                t->pid = was_pid;
                t->epoch = was_epoch;
                t->last_epoch = was_last;
                t->timeout_ms = was_timeout;
                t->state = was_state;
                o->error_code = KERR_KAFKA_STORAGE_ERROR;
            } else {
                o->producer_id = pid;
                o->producer_epoch = epoch;
            }
        }
    }
    pop_reply(p);
}

void txn_init_producer_id(struct req *r)
{
    struct sp_kafka_init_producer_id_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_init_producer_id_response_init(o);
    req_forward(r, o, init_call);
}

static void add_partitions_call(struct pop *p)
{
    struct tcoord *c = tcoord_here(p);
    struct req *r = p->req;
    const struct sp_kafka_add_partitions_to_txn_request *q = r->f.body;
    struct sp_kafka_add_partitions_to_txn_response *o = p->slot;
    int32_t nt = SP_MAX(q->v3_and_below_topics_count, 0);
    struct sp_kafka_add_partitions_to_txn_response_add_partitions_to_txn_topic_result *ts =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
    if (ts == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    o->results_by_topic_v3_and_below = ts;
    o->results_by_topic_v3_and_below_count = nt;
    struct txn *t = NULL;
    int16_t err = txn_check(c, q->v3_and_below_transactional_id, q->v3_and_below_producer_id,
                            q->v3_and_below_producer_epoch, &t);
    /* Every partition must exist, or none is added. */
    const struct topic_set *set = topics_now(p->home->b);
    bool unknown = false;
    for (int32_t i = 0; i < nt && err == KERR_NONE; i++) {
        const struct sp_kafka_add_partitions_to_txn_request_add_partitions_to_txn_topic *tt =
            &q->v3_and_below_topics[i];
        const struct topic *topic =
            tt->name.len > 0 ? topic_find(set, tt->name.ptr, (size_t)tt->name.len) : NULL;
        for (int32_t k = 0; k < SP_MAX(tt->partitions_count, 0); k++)
            unknown |=
                topic == NULL || tt->partitions[k] < 0 || tt->partitions[k] >= topic->partitions;
    }
    uint32_t nparts_was = t != NULL ? t->nparts : 0;
    bool added = true;
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_add_partitions_to_txn_request_add_partitions_to_txn_topic *tt =
            &q->v3_and_below_topics[i];
        int32_t np = SP_MAX(tt->partitions_count, 0);
        struct sp_kafka_add_partitions_to_txn_response_add_partitions_to_txn_partition_result *ps =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ps));
        sp_kafka_add_partitions_to_txn_response_add_partitions_to_txn_topic_result_init(&ts[i]);
        char *name = req_strdup(r, tt->name);
        ts[i].name = name != NULL ? (struct sp_kstr){name, (int32_t)strlen(name)} : SP_KSTR("");
        if (ps == NULL) {
            ts[i].results_by_partition_count = 0;
            continue;
        }
        ts[i].results_by_partition = ps;
        ts[i].results_by_partition_count = np;
        const struct topic *topic =
            tt->name.len > 0 ? topic_find(set, tt->name.ptr, (size_t)tt->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            int32_t part = tt->partitions[k];
            sp_kafka_add_partitions_to_txn_response_add_partitions_to_txn_partition_result_init(
                &ps[k]);
            ps[k].partition_index = part;
            if (err != KERR_NONE) {
                ps[k].partition_error_code = err;
            } else if (unknown) {
                bool bad = topic == NULL || part < 0 || part >= topic->partitions;
                ps[k].partition_error_code =
                    bad ? KERR_UNKNOWN_TOPIC_OR_PARTITION : TERR_OPERATION_NOT_ATTEMPTED;
            } else if (!txn_add_part(t, topic->name, part)) {
                added = false;
                ps[k].partition_error_code = KERR_UNKNOWN_SERVER_ERROR;
            }
        }
    }
    if (err == KERR_NONE && !unknown) {
        enum tstate was = t->state;
        uint64_t started = t->started_ns;
        txn_begin(t);
        int rc = added ? txns_persist(c) : -ENOMEM;
        if (rc < 0) {
            /* Not recorded: not part of the transaction. */
            while (t->nparts > nparts_was)
                free(t->parts[--t->nparts].topic);
            t->state = was;
            t->started_ns = started;
            for (int32_t i = 0; i < nt; i++) {
                for (int32_t k = 0; k < ts[i].results_by_partition_count; k++)
                    ts[i].results_by_partition[k].partition_error_code =
                        rc == -ENOMEM ? KERR_UNKNOWN_SERVER_ERROR : KERR_KAFKA_STORAGE_ERROR;
            }
        }
    }
    pop_reply(p);
}

static void add_partitions_to_txn(struct req *r)
{
    struct sp_kafka_add_partitions_to_txn_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_add_partitions_to_txn_response_init(o);
    req_forward(r, o, add_partitions_call);
}

static void add_offsets_call(struct pop *p)
{
    struct tcoord *c = tcoord_here(p);
    const struct sp_kafka_add_offsets_to_txn_request *q = p->req->f.body;
    struct sp_kafka_add_offsets_to_txn_response *o = p->slot;
    struct txn *t = NULL;
    o->error_code = txn_check(c, q->transactional_id, q->producer_id, q->producer_epoch, &t);
    if (o->error_code == KERR_NONE && (q->group_id.len <= 0 || q->group_id.len > TXN_ID_MAX ||
                                       memchr(q->group_id.ptr, '\0', (size_t)q->group_id.len))) {
        o->error_code = 24; /* INVALID_GROUP_ID */
    } else if (o->error_code == KERR_NONE) {
        char *g = kstr_dup(q->group_id);
        uint32_t was = t->ngroups;
        enum tstate state = t->state;
        uint64_t started = t->started_ns;
        txn_begin(t);
        int rc = g != NULL && txn_add_group(t, g) ? txns_persist(c) : -ENOMEM;
        free(g);
        if (rc < 0) {
            while (t->ngroups > was)
                free(t->groups[--t->ngroups]);
            t->state = state;
            t->started_ns = started;
            o->error_code = rc == -ENOMEM ? KERR_UNKNOWN_SERVER_ERROR : KERR_KAFKA_STORAGE_ERROR;
        }
    }
    pop_reply(p);
}

static void add_offsets_to_txn(struct req *r)
{
    struct sp_kafka_add_offsets_to_txn_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_add_offsets_to_txn_response_init(o);
    req_forward(r, o, add_offsets_call);
}

static void txn_offset_commit_call(struct pop *p)
{
    struct tcoord *c = tcoord_here(p);
    struct req *r = p->req;
    const struct sp_kafka_txn_offset_commit_request *q = r->f.body;
    struct sp_kafka_txn_offset_commit_response *o = p->slot;
    int32_t nt = SP_MAX(q->topics_count, 0);
    struct sp_kafka_txn_offset_commit_response_txn_offset_commit_response_topic *ts =
        req_alloc(r, (size_t)(nt ? nt : 1) * sizeof(*ts));
    if (ts == NULL) {
        r->resp = NULL;
        pop_reply(p);
        return;
    }
    o->topics = ts;
    o->topics_count = nt;
    struct txn *t = NULL;
    int16_t err = txn_check(c, q->transactional_id, q->producer_id, q->producer_epoch, &t);
    char *group = err == KERR_NONE ? kstr_dup(q->group_id) : NULL;
    if (err == KERR_NONE && t->state != T_ONGOING)
        err = TERR_INVALID_TXN_STATE;
    else if (err == KERR_NONE && group == NULL)
        err = KERR_UNKNOWN_SERVER_ERROR;
    if (err == KERR_NONE) {
        bool in = false;
        for (uint32_t i = 0; i < t->ngroups; i++)
            in |= strcmp(t->groups[i], group) == 0;
        if (!in)
            err = TERR_INVALID_TXN_STATE; /* AddOffsetsToTxn first */
    }
    const struct topic_set *set = topics_now(p->home->b);
    bool dirty = false;
    for (int32_t i = 0; i < nt; i++) {
        const struct sp_kafka_txn_offset_commit_request_txn_offset_commit_request_topic *tt =
            &q->topics[i];
        int32_t np = SP_MAX(tt->partitions_count, 0);
        struct sp_kafka_txn_offset_commit_response_txn_offset_commit_response_partition *ps =
            req_alloc(r, (size_t)(np ? np : 1) * sizeof(*ps));
        sp_kafka_txn_offset_commit_response_txn_offset_commit_response_topic_init(&ts[i]);
        char *name = req_strdup(r, tt->name);
        ts[i].name = name != NULL ? (struct sp_kstr){name, (int32_t)strlen(name)} : SP_KSTR("");
        if (ps == NULL) {
            ts[i].partitions_count = 0;
            continue;
        }
        ts[i].partitions = ps;
        ts[i].partitions_count = np;
        const struct topic *topic =
            tt->name.len > 0 ? topic_find(set, tt->name.ptr, (size_t)tt->name.len) : NULL;
        for (int32_t k = 0; k < np; k++) {
            const struct sp_kafka_txn_offset_commit_request_txn_offset_commit_request_partition
                *pp = &tt->partitions[k];
            sp_kafka_txn_offset_commit_response_txn_offset_commit_response_partition_init(&ps[k]);
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
            if (pp->committed_metadata.len > 4096 ||
                (pp->committed_metadata.len > 0 &&
                 memchr(pp->committed_metadata.ptr, '\0', (size_t)pp->committed_metadata.len))) {
                ps[k].error_code = 12; /* OFFSET_METADATA_TOO_LARGE */
                continue;
            }
            struct txn_offset to = {
                .group = strdup(group),
                .topic = strdup(topic->name),
                .partition = pp->partition_index,
                .offset = pp->committed_offset,
                .leader_epoch = r->version >= 2 ? pp->committed_leader_epoch : -1,
                .meta = kstr_dup(pp->committed_metadata.len >= 0 ? pp->committed_metadata
                                                                 : SP_KSTR(""))};
            if (to.group == NULL || to.topic == NULL || to.meta == NULL) {
                free(to.group);
                free(to.topic);
                free(to.meta);
                ps[k].error_code = KERR_UNKNOWN_SERVER_ERROR;
            } else if (!txn_set_offset(t, to)) {
                ps[k].error_code = KERR_UNKNOWN_SERVER_ERROR;
            } else {
                dirty = true;
            }
        }
    }
    free(group);
    if (dirty) {
        int rc = txns_persist(c);
        if (rc < 0) {
            sp_error("broker: transaction %s: cannot record its offsets: %s", t->id, strerror(-rc));
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

static void txn_offset_commit(struct req *r)
{
    struct sp_kafka_txn_offset_commit_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_txn_offset_commit_response_init(o);
    req_forward(r, o, txn_offset_commit_call);
}

static void end_call(struct pop *p)
{
    struct tcoord *c = tcoord_here(p);
    const struct sp_kafka_end_txn_request *q = p->req->f.body;
    struct sp_kafka_end_txn_response *o = p->slot;
    struct txn *t = NULL;
    o->error_code = txn_check(c, q->transactional_id, q->producer_id, q->producer_epoch, &t);
    if (o->error_code != KERR_NONE) {
        pop_reply(p);
        return;
    }
    if (t->state == T_ONGOING) {
        t->wait = p; /* answered when the markers are written */
        int16_t err = txn_end(c, t, q->committed);
        if (err != KERR_NONE) {
            t->wait = NULL;
            o->error_code = err;
            pop_reply(p);
        }
        return;
    }
    if ((t->state == T_COMPLETE_COMMIT && q->committed) ||
        (t->state == T_COMPLETE_ABORT && !q->committed))
        o->error_code = KERR_NONE; /* a retry of the end that happened */
    else
        o->error_code = TERR_INVALID_TXN_STATE;
    pop_reply(p);
}

static void end_txn(struct req *r)
{
    struct sp_kafka_end_txn_response *o = req_alloc(r, sizeof(*o));
    if (o != NULL)
        sp_kafka_end_txn_response_init(o);
    req_forward(r, o, end_call);
}

/*
 * AddPartitionsToTxn to 3 (4 and up batch several transactions, a
 * broker-to-broker form), AddOffsetsToTxn, EndTxn and TxnOffsetCommit to 3
 * (what librdkafka 2.0, kafka-python and the Java client of Kafka 3.5 send).
 */
const struct api_entry txn_apis[] = {
    {24, 0, 3, add_partitions_to_txn},
    {25, 0, 3, add_offsets_to_txn},
    {26, 0, 3, end_txn},
    {28, 0, 3, txn_offset_commit},
    {-1, 0, 0, NULL},
};

/* ---- Timeouts, start, stop ---- */

/* Every shard has started (and published its per_shard entry: acquire). */
static bool all_shards_up(struct sp_broker *b)
{
    return atomic_load_explicit(&b->shards_started, memory_order_acquire) == b->shards;
}

static void tick(struct sp_timer *timer, void *ctx)
{
    (void)timer;
    struct tcoord *c = ctx;
    if (c->stopping)
        return;
    uint64_t now = sp_now_ns();
    if (!c->recovered && all_shards_up(c->b)) {
        /* What a previous run left half-way: finish it. */
        c->recovered = true;
        for (struct txn *t = c->txns; t != NULL; t = t->next) {
            if (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT) {
                sp_info("broker: transaction %s: completing its %s", t->id,
                        t->state == T_PREPARE_COMMIT ? "commit" : "abort");
                txn_advance(c, t);
            }
        }
    }
    for (struct txn *t = c->recovered ? c->txns : NULL; t != NULL; t = t->next) {
        if (t->state == T_ONGOING && t->markers_pending == 0 &&
            t->started_ns + (uint64_t)t->timeout_ms * 1000000ull <= now) {
            sp_info("broker: transaction %s timed out after %" PRId32 " ms: aborting it", t->id,
                    t->timeout_ms);
            txn_fence_abort(c, t);
        }
    }
    /* Until every shard is up, look again soon: requests wait for it. */
    uint64_t next_ms = c->recovered ? TXN_TICK_MS : 1;
    sp_shard_timer_arm(c->bs->shard, &c->tick, now + next_ms * 1000000ull);
}

/* The runtime stops: answer whoever waits; a restart completes the rest. */
static void tcoord_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct tcoord *c = SP_CONTAINER_OF(hook, struct tcoord, stop_hook);
    c->stopping = true;
    sp_shard_timer_cancel(shard, &c->tick);
    for (struct txn *t = c->txns; t != NULL; t = t->next) {
        if (t->markers_pending == 0) {
            sp_shard_timer_cancel(shard, &t->retry);
            txn_answer_wait(t, TERR_COORDINATOR_NOT_AVAILABLE);
        }
    }
}

void txn_shard_start(struct bshard *bs)
{
    if (bs->shard->id != 0)
        return;
    struct tcoord *c = calloc(1, sizeof(*c));
    SP_ASSERT(c != NULL);
    c->b = bs->b;
    c->bs = bs;
    if (bs->b->data_dir != NULL) {
        size_t n = strlen(bs->b->data_dir) + 32;
        c->path = malloc(n);
        c->tmp = malloc(n);
        SP_ASSERT(c->path != NULL && c->tmp != NULL);
        snprintf(c->path, n, "%s/transactions", bs->b->data_dir);
        snprintf(c->tmp, n, "%s/transactions.tmp", bs->b->data_dir);
        if (txns_load(c) < 0) {
            /* Serving without what the file says would break transactions
             * already acknowledged: refuse to coordinate any. */
            c->stopping = true;
        }
    }
    bs->txns = c;
    sp_shard_on_stop(bs->shard, &c->stop_hook, tcoord_stop);
    sp_timer_init(&c->tick, tick, c);
    sp_shard_timer_arm(bs->shard, &c->tick, sp_now_ns());
}

void txn_shard_finish(struct bshard *bs)
{
    struct tcoord *c = bs->txns;
    if (c == NULL)
        return;
    sp_shard_timer_cancel(bs->shard, &c->tick);
    while (c->txns != NULL) {
        struct txn *t = c->txns;
        c->txns = t->next;
        sp_shard_timer_cancel(bs->shard, &t->retry);
        txn_free(t);
    }
    free(c->path);
    free(c->tmp);
    free(c);
    bs->txns = NULL;
}
