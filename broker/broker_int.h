/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the broker: the topic registry, per-shard state, connections,
 * requests and partition operations (broker.c), the API handlers (apis.c
 * and the files of each table), TLS under a connection (tls.c) and SASL
 * authentication (sasl.c).
 */
#ifndef SP_BROKER_INT_H
#define SP_BROKER_INT_H

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/uio.h>

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
    KERR_INVALID_CONFIG = 40,
    KERR_INVALID_REQUEST = 42,
    KERR_POLICY_VIOLATION = 44,
    KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    KERR_KAFKA_STORAGE_ERROR = 56,
    KERR_UNKNOWN_SERVER_ERROR = -1,
};

#define TOPIC_NAME_MAX 249

/* The configs a topic may set (CreateTopics, AlterConfigs); admin.c knows them. */
enum {
    TCFG_CLEANUP_POLICY,
    TCFG_RETENTION_MS,
    TCFG_RETENTION_BYTES,
    TCFG_SEGMENT_BYTES,
    TCFG_MAX_MESSAGE_BYTES,
    TCFG_DELETE_RETENTION_MS,
    TCFG_MIN_COMPACTION_LAG_MS,
    TCFG_MIN_CLEANABLE_DIRTY_RATIO,
    TCFG_MESSAGE_TIMESTAMP_TYPE,
    TCFG_COUNT
};

/* A topic's own config values: the rest are the broker's. */
struct topic_config {
    uint32_t set;          /* bit 1 << TCFG_*: the topic has its own value */
    int64_t v[TCFG_COUNT]; /* cleanup.policy as SP_PLOG_CLEANUP_* bits; the dirty ratio in
                              millionths; message.timestamp.type 0 (CreateTime) */
};

struct topic {
    char *name;
    int32_t partitions;
    uint8_t id[16];
    struct topic_config config;
};

/* admin.c: topic configs by name. tcfg_key: TCFG_* or -1 (unknown). tcfg_parse:
 * a Kafka error code (INVALID_CONFIG with `msg`). tcfg_format: the value as
 * Kafka writes it. tcfg_apply: a log's settings with the topic's own values. */
const char *tcfg_name(int key);
int tcfg_key(const char *name, size_t len);
int16_t tcfg_parse(int key, const char *value, size_t len, int64_t *out, char *msg,
                   size_t msg_size);
void tcfg_format(int key, int64_t v, char *out, size_t out_size);
void tcfg_apply(const struct topic_config *c, struct sp_plog_config *log);

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
    _Atomic unsigned shards_started; /* counted (release) once each set its own */
    int64_t pid_next, pid_block_end; /* producer ids (under topics_lock) */
    uint64_t page_bytes;             /* the system's page size (mmap offsets) */
    struct tls_ctx *tls;             /* NULL: plaintext listener (tls.c) */
    struct sasl_users *users;        /* NULL: no SASL (sasl.c) */
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
    struct sp_timer accept_retry; /* accept back-off (EMFILE, ENFILE, ...) */
    struct sp_timer idle_sweep;   /* closes idle connections */
    bool accept_backoff;          /* accept_retry is armed (logged once) */
    bool stopping;
    struct part *parts;
    struct conn *conns;
    struct sp_stop_hook stop_hook;
    void *groups;         /* group.c's state on this shard */
    void *txns;           /* txn.c's state on this shard (shard 0: the coordinator) */
    void *fetch_sessions; /* fetch.c's sessions of this shard's connections */
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
    uint32_t pending;         /* partition operations not yet answered */
    bool done;                /* the response is encoded (or there is none) */
    bool no_response;         /* Produce with acks 0 */
    uint8_t *out;             /* the encoded response frame */
    size_t out_len, out_sent; /* of the whole frame, pieces included */
    /* Large bytes fields sent from where they are instead of copied into
     * `out` (a fetch's records): the handler sets how many (gap_count) and
     * their bytes (gap_bytes) before req_finish, which then sends the frame
     * as pieces: out's parts and those fields in turn. */
    uint32_t gap_count;
    size_t gap_bytes;
    struct sp_kgap *gaps;
    struct req_piece *pieces;
    uint32_t piece_count, piece_at;
    size_t piece_start; /* out_sent at the start of pieces[piece_at] */
    /* Mappings of log segments the answer's records are sent from
     * (fetch.c), unmapped with the request. */
    struct req_map *maps;
    uint32_t map_count, map_cap;
    void *api; /* the handler's own state */
    /* Called when the request is freed, answered or not (a connection
     * closing under a waiting fetch): lets the handler let go of what it
     * holds outside the request's memory. */
    void (*api_free)(struct req *r);
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
    bool active;            /* bytes arrived since the last idle sweep */
    bool authenticated;     /* SASL done (or not asked for) */
    bool sasl_legacy;       /* after SaslHandshake v0: raw size-prefixed tokens */
    bool close_when_sent;   /* read no more; close once the answers are out */
    uint64_t idle_since_ns; /* the idle sweep's view of the last activity */
    struct tls_conn *tls;   /* NULL: plaintext (tls.c) */
    struct sasl_conn *sasl; /* the SASL exchange in progress (sasl.c) */
};

/* What a partition operation does, on the partition's owner shard. */
enum pop_kind { POP_APPEND, POP_READ, POP_CALL, POP_MARKER };

struct sp_kafka_fetch_response_aborted_transaction;

struct pop {
    enum pop_kind kind;
    struct req *req;     /* the request it serves; NULL for the broker's own (markers) */
    struct bshard *home; /* the shard it reports to (default: the request's) */
    unsigned origin, owner;
    const char *topic; /* the request's own bytes, NUL-terminated copy */
    int32_t partition;
    /* in */
    const uint8_t *data; /* APPEND */
    uint32_t len;
    int64_t offset; /* READ: fetch offset; ListOffsets' call: the timestamp */
    uint32_t max_bytes;
    int8_t isolation; /* READ, LIST: 1 = read_committed (up to the last stable offset) */
    bool commit;      /* MARKER: commit (else abort) for producer pid at epoch */
    /* out */
    int16_t error;
    int64_t base_offset, high_watermark, log_start, result_offset;
    const uint8_t *records; /* READ: the batches read, in records_mem */
    void *records_mem;      /* READ: malloc'd, handed to the request */
    uint32_t records_len;
    bool slice;     /* READ: map the segment rather than read it (records point in) */
    void *map_base; /* READ with slice: the mapping records point into, or NULL */
    size_t map_len;
    int64_t lso; /* READ: the last stable offset */
    /* READ with isolation 1: the aborted transactions overlapping what was
     * read (malloc'd, handed to the request like records). */
    struct sp_kafka_fetch_response_aborted_transaction *aborted;
    int32_t aborted_count;
    struct sp_timer retry;
    struct pop *wait_next; /* APPEND, MARKER: behind it in the partition's wait queue */
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
/* Creates a topic with its own configs (NULL: none); a Kafka error code. */
int16_t topic_create_with(struct sp_broker *b, const char *name, size_t len, int32_t partitions,
                          const struct topic_config *config, const struct topic **out);
/* Creates the topics names[0..n) that do not exist yet with the default
 * partition count, as one snapshot persisted once: errs[i] says how each
 * went (KERR_NONE, TOPIC_ALREADY_EXISTS, INVALID_TOPIC, or past the
 * broker's caps INVALID_PARTITIONS / POLICY_VIOLATION). */
void topics_create_batch(struct sp_broker *b, const struct sp_kstr *names, int32_t n,
                         int16_t *errs);
/* Replaces a topic's own configs (persisted); a Kafka error code. */
int16_t topic_set_config(struct sp_broker *b, const char *name, size_t len,
                         const struct topic_config *config);
/* The log settings of a topic's partitions: the broker's with the topic's own. */
void topic_log_config(const struct sp_broker *b, const struct topic *t, struct sp_plog_config *c);
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
/* The same, the partition itself (its log and producers' state). */
struct part *part_here(struct sp_broker *b, const char *topic, int32_t partition, int *err);
/* Counts a read (or time look-up) started on a log of part_log_here, so
 * that a deletion of the partition waits for it to complete. */
void part_read_started(struct sp_broker *b, struct sp_plog *log);
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
/* A malloc'd NUL-terminated copy of a wire string (NULL for null, or when
 * out of memory). */
char *kstr_dup(struct sp_kstr s);
/* Encodes r->resp and sends what is ready. */
void req_finish(struct req *r);

struct req_map {
    void *base;
    size_t len;
};

/* A piece of an answer to send; `mapped`: it may fault (sent by io_uring's
 * workers, sp_io_send_async). */
struct req_piece {
    const uint8_t *ptr;
    size_t len;
    bool mapped;
};

/* Hands the request a mapping (munmap'd when it is freed); false when out
 * of memory (then it is unmapped at once). */
bool req_adopt_map(struct req *r, void *base, size_t len);
/* Bytes fields at least this large may be left out of `out` (gap_count). */
#define REQ_GAP_MIN_BYTES (64u << 10)
/* Sends a partition operation to its owner; p->done runs back on this shard. */
void pop_start(struct pop *p);
/* POP_CALL: runs p->call on shard `owner` (which calls pop_reply() when done,
 * there or later), then p->done back on this shard. */
void pop_call(struct pop *p, unsigned owner);
/* On the owner: sends the result home (p->done runs there). */
void pop_reply(struct pop *p);
/* Hands request r, with its response body `resp`, to shard 0 (the
 * coordinators' shard): `call` runs there with a POP_CALL whose slot is
 * resp and ends with pop_reply(); then the request finishes. */
void req_forward(struct req *r, void *resp, void (*call)(struct pop *p));
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
extern const struct api_entry fetch_apis[];    /* fetch.c: Fetch, with sessions */

/* fetch.c: at shard finish, the shard's fetch sessions. */
void fetch_sessions_free(struct bshard *bs);
extern const struct api_entry sasl_apis[]; /* sasl.c: SaslHandshake, SaslAuthenticate */

/* ---- tls.c: TLS over memory BIOs (no I/O of its own) ---- */

struct tls_ctx;
struct tls_conn;
/* Loads the PEM certificate (chain) and key: 0, or -EINVAL / -ENOMEM with
 * `why` saying what failed. Before the shards run. */
int tls_ctx_create(const char *cert_file, const char *key_file, struct tls_ctx **out, char *why,
                   size_t why_size);
void tls_ctx_free(struct tls_ctx *ctx);
/* A connection's server-side TLS state: 0 or -ENOMEM. */
int tls_conn_new(struct tls_ctx *ctx, struct tls_conn **out);
void tls_conn_free(struct tls_conn *t);
/* Where to receive ciphertext, and how much fits. */
void tls_recv_buf(struct tls_conn *t, uint8_t **buf, uint32_t *room);
/* `len` bytes arrived in that buffer: 0 or -ENOMEM. */
int tls_received(struct tls_conn *t, size_t len);
/* Plaintext (driving the handshake first): bytes read (> 0), -EAGAIN when
 * more ciphertext is needed, -ECONNRESET at the client's close_notify,
 * -EPROTO on a TLS error (why says which). */
ssize_t tls_read(struct tls_conn *t, uint8_t *buf, size_t room, char *why, size_t why_size);
/* Encrypts up to 32 KiB of `data`: 0 and *written, or -EPROTO. */
int tls_write(struct tls_conn *t, const uint8_t *data, size_t len, size_t *written, char *why,
              size_t why_size);
/* Ciphertext waiting to be sent: false when none. */
bool tls_send_buf(struct tls_conn *t, const uint8_t **buf, uint32_t *len);
/* `len` bytes of what tls_send_buf named were sent. */
void tls_sent(struct tls_conn *t, size_t len);
/* The handshake completed. */
bool tls_established(const struct tls_conn *t);

/* ---- sasl.c: PLAIN and SCRAM-SHA-256 ---- */

struct sasl_users;
struct sasl_conn;
/* Reads `user:password` lines (SCRAM: salted at load): 0, or -errno /
 * -EBADMSG with `why`. Before the shards run. */
int sasl_users_load(const char *path, enum sp_broker_sasl mechanism, struct sasl_users **out,
                    char *why, size_t why_size);
void sasl_users_free(struct sasl_users *users);
void sasl_conn_free(struct sasl_conn *s);
/* One token of the legacy exchange (after SaslHandshake v0): 0 with *out
 * (malloc'd, *out_len bytes, size prefix included) to send back, or
 * -EPERM / -EBADMSG when the connection must close (why says why). */
int sasl_legacy_token(struct conn *c, const uint8_t *token, size_t len, uint8_t **out,
                      size_t *out_len, char *why, size_t why_size);

/* ---- producers.c ---- */

struct producers;
/* Reads the producer id file: 0 or -errno / -EBADMSG. */
int producer_ids_load(struct sp_broker *b);
/* On the owner, before an append: a Kafka error code; *dup_offset >= 0 when
 * the batches were written already (answer with that offset). */
int16_t producers_check(struct part *pt, struct pop *p, int64_t *dup_offset);
/* An append checked by producers_check was handed to the log at `base`. */
void producers_appended(struct part *pt, struct pop *p, int64_t base);
/* When that append completed (err < 0: it failed). */
void producers_done(struct part *pt, struct pop *p, int err, int64_t base_offset);
/* A transaction marker of p->pid at p->epoch (p->commit) was written at
 * `offset`: the producer's transaction on this partition ends. */
void producers_marker(struct part *pt, const struct pop *p, int64_t offset);
/* The last stable offset: the first offset of the oldest open transaction,
 * or `high_watermark` when none is open. */
int64_t producers_lso(const struct part *pt, int64_t high_watermark);
/* The aborted transactions whose range overlaps [from, to): a malloc'd
 * array in *out (NULL when none) and its length; -ENOMEM. */
int producers_aborted(const struct part *pt, int64_t from, int64_t to,
                      struct sp_kafka_fetch_response_aborted_transaction **out, int32_t *count);
/* After the partition's log `dir` was opened: its producers' state (idempotence,
 * open and aborted transactions), from the snapshot a clean close left and
 * the log after it (or the whole log). */
void producers_recover(struct part *pt, const char *dir);
/* Before the log closes cleanly: the snapshot producers_recover starts from. */
void producers_save(struct part *pt, const char *dir);
/* A fresh producer id (persisting a new block when needed), or -1. */
int64_t producer_id_new(struct sp_broker *b);
void producers_free(struct part *pt);

/* ---- statefile.c: the coordinators' small files ---- */

/* Writes s as hex ("-" when empty): any byte survives a text line. */
void hex_put(FILE *f, const char *s);
/* hex_put's text back, malloc'd; NULL when it is not hex (or holds a NUL). */
char *hex_get(const char *s);
/* Replaces `path` (in directory `dir`) with what write_fn writes (0 or
 * -errno), through `tmp`: written, fsync'd, renamed over path, and the
 * directory fsync'd. 0 or -errno (then path is unchanged). */
int file_replace(const char *dir, const char *path, const char *tmp,
                 int (*write_fn)(FILE *f, void *ctx), void *ctx);

/* ---- txn.c: the transaction coordinator (shard 0) ---- */

/* An offset a transaction commits for a group (all malloc'd). */
struct txn_offset {
    char *group, *topic;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    char *meta;
};

extern const struct api_entry txn_apis[];
/* InitProducerId with a transactional id (producers.c hands it over). */
void txn_init_producer_id(struct req *r);
void txn_shard_start(struct bshard *bs);
void txn_shard_finish(struct bshard *bs);

/* group.c: on each shard at start (after its logs are open) and at finish. */
void group_shard_start(struct bshard *bs);
void group_shard_finish(struct bshard *bs);
/* On shard 0: commits the offsets of `offs` that belong to `group` (a
 * committed transaction's), durably. 0 or -errno. */
int group_txn_commit(struct bshard *bs, const char *group, const struct txn_offset *offs,
                     uint32_t count);

/* ---- apis.c ---- */

/* The versions served, for ApiVersions and for dispatch: false when not. */
bool api_served(int16_t key, int16_t version);
/* Starts handling a decoded request; it ends with req_finish. */
void api_handle(struct bshard *bs, struct req *r);
/* The ApiVersions v0 answer with error 35 for an unsupported version. */
void api_versions_unsupported(struct req *r);

#endif /* SP_BROKER_INT_H */
