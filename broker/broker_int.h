/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the broker: the topic registry, per-shard state, connections,
 * requests and partition operations (broker.c), and the API handlers
 * (apis.c).
 */
#ifndef SP_BROKER_INT_H
#define SP_BROKER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "sp_broker.h"
#include "sp_io.h"
#include "sp_kafka_frame.h"
#include "sp_plog.h"
#include "sp_timer.h"

/* Kafka's error codes used here. */
enum {
    KERR_NONE = 0,
    KERR_OFFSET_OUT_OF_RANGE = 1,
    KERR_CORRUPT_MESSAGE = 2,
    KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    KERR_REQUEST_TIMED_OUT = 7,
    KERR_MESSAGE_TOO_LARGE = 10,
    KERR_INVALID_TOPIC = 17,
    KERR_TOPIC_ALREADY_EXISTS = 36,
    KERR_INVALID_PARTITIONS = 37,
    KERR_INVALID_REPLICATION_FACTOR = 38,
    KERR_INVALID_REQUEST = 42,
    KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    KERR_KAFKA_STORAGE_ERROR = 56,
    KERR_UNKNOWN_SERVER_ERROR = -1,
};

#define TOPIC_NAME_MAX 249

struct topic {
    char *name;
    int32_t partitions;
    uint8_t id[16];
};

/* Immutable once published. */
struct topic_set {
    uint32_t count;
    struct topic *topics; /* sorted by name */
    struct topic_set *older;
};

struct bshard;

struct sp_broker {
    struct sp_broker_config config;
    char *host, *advertised_host, *data_dir;
    int listen_fd;
    uint16_t port;
    unsigned shards;
    pthread_mutex_t topics_lock; /* writers of the registry */
    struct topic_set *_Atomic topics;
    _Atomic uint32_t connections;
    struct bshard **per_shard;       /* [shards], each set by its shard */
    int64_t pid_next, pid_block_end; /* producer ids (under topics_lock) */
};

/* A partition this shard owns. */
struct part {
    char *topic;
    int32_t partition;
    struct sp_plog *log;
    struct producers *producers; /* idempotent producers' sequences (producers.c) */
    struct part *next;
};

struct conn;

struct bshard {
    struct sp_broker *b;
    struct sp_shard *shard;
    struct sp_io_op accept_op;
    bool accepting;
    bool stopping;
    struct part *parts;
    struct conn *conns;
    struct sp_stop_hook stop_hook;
    void *groups; /* group.c's state on this shard */
};

/* A request, from its frame to its response. */
struct req {
    struct conn *conn;
    struct req *next;
    uint8_t *frame; /* the payload after the size prefix (owned) */
    size_t frame_len;
    void *arena_mem;
    struct sp_karena arena;
    struct sp_kafka_request_frame f;
    int16_t key, version;
    void *resp;    /* the response body, in `allocs` */
    void **allocs; /* response memory, freed with the request */
    uint32_t alloc_count, alloc_cap;
    uint32_t pending; /* partition operations not yet answered */
    bool done;        /* the response is encoded (or there is none) */
    bool no_response; /* Produce with acks 0 */
    uint8_t *out;     /* the encoded response frame */
    size_t out_len, out_sent;
    void *api;             /* the handler's own state */
    struct sp_timer timer; /* fetch's long poll */
};

struct conn {
    struct bshard *bs;
    struct conn *next_conn, *prev_conn;
    int fd;
    uint8_t *in;
    size_t in_len, in_cap;
    struct sp_io_op recv_op, send_op;
    bool recv_posted, send_posted, closing;
    bool parsing;            /* recv_done is walking the frames in `in` */
    struct req *head, *tail; /* in arrival order */
    uint32_t reqs;
    char peer[64];
};

/* What a partition operation does, on the partition's owner shard. */
enum pop_kind { POP_APPEND, POP_READ, POP_LIST, POP_CALL };

struct pop {
    enum pop_kind kind;
    struct req *req;
    unsigned origin, owner;
    const char *topic; /* the request's own bytes, NUL-terminated copy */
    int32_t partition;
    /* in */
    const uint8_t *data; /* APPEND */
    uint32_t len;
    int64_t offset; /* READ: fetch offset; LIST: timestamp */
    uint32_t max_bytes;
    /* out */
    int16_t error;
    int64_t base_offset, high_watermark, log_start, result_offset;
    uint8_t *records; /* READ: malloc'd copy, handed to the request */
    uint32_t records_len;
    struct sp_timer retry;
    /* APPEND of an idempotent producer's batches (producers.c) */
    struct part *part;
    bool checked; /* its sequences were checked and reserved */
    int64_t pid;
    int16_t epoch;
    int32_t seq_first, seq_last, seq_prev;
    void (*call)(struct pop *p); /* POP_CALL: runs on `owner`, ends with pop_reply() */
    void (*done)(struct pop *p); /* on the origin shard */
    void *slot;                  /* where the handler wants the result */
};

/* ---- broker.c, for the handlers ---- */

struct bshard *bshard_of(struct sp_broker *b, struct sp_shard *shard);
const struct topic_set *topics_now(struct sp_broker *b);
const struct topic *topic_find(const struct topic_set *set, const char *name, size_t len);
/* Creates a topic; a Kafka error code. */
int16_t topic_create(struct sp_broker *b, const char *name, size_t len, int32_t partitions,
                     const struct topic **out);
unsigned partition_owner(const struct sp_broker *b, const char *topic, int32_t partition);
/* Deletes a topic from the registry (persisted; *out: what it was, its name
 * valid until the broker is freed); a Kafka error code. Its logs stay until
 * part_drop_call removes them. */
int16_t topic_delete(struct sp_broker *b, const char *name, size_t len, struct topic *out);
/* Raises a topic's partition count to `count` (nothing changed with
 * validate_only); *was: the count before (when the topic exists). A Kafka
 * error code: INVALID_PARTITIONS when `count` is not larger. */
int16_t topic_add_partitions(struct sp_broker *b, const char *name, size_t len, int32_t count,
                             bool validate_only, int32_t *was);
/* On the partition's owner shard: its log, opened if needed; NULL with *err
 * -ENOENT (not in the registry), -EXDEV (not owned here) or the open's error. */
struct sp_plog *part_log_here(struct sp_broker *b, const char *topic, int32_t partition, int *err);
/* A POP_CALL for a deleted topic's partition (p->topic, p->partition), run on
 * its owner: closes the log once what was started on it completed, removes
 * its directory, then pop_reply() with p->error. Uses p->slot. */
void part_drop_call(struct pop *p);

/* Response memory, zeroed, freed with the request; NULL when out of memory. */
void *req_alloc(struct req *r, size_t bytes);
/* Frees malloc'd `p` with the request; false (p not taken) when out of memory. */
bool req_adopt(struct req *r, void *p);
/* A NUL-terminated copy of a wire string, freed with the request. */
char *req_strdup(struct req *r, struct sp_kstr s);
/* Encodes r->resp and sends what is ready. */
void req_finish(struct req *r);
/* Sends a partition operation to its owner; p->done runs back on this shard. */
void pop_start(struct pop *p);
/* POP_CALL: runs p->call on shard `owner` (which calls pop_reply() when done,
 * there or later), then p->done back on this shard. */
void pop_call(struct pop *p, unsigned owner);
/* On the owner: sends the result home (p->done runs there). */
void pop_reply(struct pop *p);
/* The shard state of the calling shard. */
struct bshard *bshard_here(struct sp_broker *b);

/* ---- API tables ---- */

/* A handler and the versions it serves (within what the codec knows). */
struct api_entry {
    int16_t key, min, max;
    void (*handle)(struct req *r); /* NULL ends a table */
};

extern const struct api_entry core_apis[];     /* apis.c: produce, fetch, metadata, ... */
extern const struct api_entry group_apis[];    /* group.c: the group coordinator */
extern const struct api_entry admin_apis[];    /* admin.c: topic and cluster administration */
extern const struct api_entry producer_apis[]; /* producers.c: InitProducerId */

/* ---- producers.c ---- */

struct producers;
/* Reads the producer id file: 0 or -errno / -EBADMSG. */
int producer_ids_load(struct sp_broker *b);
/* On the owner, before an append: a Kafka error code; *dup_offset >= 0 when
 * the batches were written already (answer with that offset). */
int16_t producers_check(struct part *pt, struct pop *p, int64_t *dup_offset);
/* When that append completed (err < 0: it failed). */
void producers_done(struct part *pt, struct pop *p, int err, int64_t base_offset);
void producers_free(struct part *pt);

/* group.c: on each shard at start (after its logs are open) and at finish. */
void group_shard_start(struct bshard *bs);
void group_shard_finish(struct bshard *bs);

/* ---- apis.c ---- */

/* The versions served, for ApiVersions and for dispatch: false when not. */
bool api_served(int16_t key, int16_t version);
/* Starts handling a decoded request; it ends with req_finish. */
void api_handle(struct bshard *bs, struct req *r);
/* The ApiVersions v0 answer with error 35 for an unsupported version. */
void api_versions_unsupported(struct req *r);

#endif /* SP_BROKER_INT_H */
