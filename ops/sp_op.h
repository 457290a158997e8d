/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the dataflow engine: batches, operator instances, the job graph and
 * the per-shard executor. What an operator, a source or a sink is written
 * against; users see sp_job.h only.
 *
 * A batch is one managed-memory segment: a header, then fixed-size slots
 * (an int64 timestamp and the row) growing up from the start, and the bytes
 * of the rows' strings growing down from the end. Batches carry in-band
 * control too: the sender's watermark after the batch, idleness, the end of
 * the stream. Across shards a batch travels by pointer through the ring and
 * comes back to the shard that owns its segment once processed; that return
 * is the credit of the credit-based flow control.
 *
 * An operator instance (sp_inst) exists per node and shard. push() consumes
 * a batch completely before returning (it may not keep it), watermark()
 * advances event time on one input port, end() closes a port. Each instance
 * has one output (sp_out) that fills a batch and hands it to every
 * downstream instance in turn when full or when its input batch is done.
 */
#ifndef SP_OP_H
#define SP_OP_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_job.h"
#include "sp_keygroup.h"
#include "sp_reactor.h"
#include "sp_table.h"

#define SP_WM_MIN INT64_MIN
#define SP_WM_MAX INT64_MAX

/* ---- Batches ---- */

enum {
    SP_BATCH_WM = 1u << 0,   /* `watermark` holds after this batch */
    SP_BATCH_IDLE = 1u << 1, /* the sender is idle (no watermark from it) */
    SP_BATCH_END = 1u << 2,  /* the sender's stream ended */
    /* checkpoint `ckpt`'s barrier follows the batch's rows: nothing the
     * sender sends after it belongs to that checkpoint */
    SP_BATCH_BARRIER = 1u << 3,
};

struct sp_exec;

struct sp_batch {
    struct sp_batch *next; /* queues */
    struct sp_exec *exec;
    uint32_t node;  /* exchange batches: the key_by node */
    uint16_t from;  /* the shard that owns the segment */
    uint16_t flags; /* SP_BATCH_* */
    int64_t watermark;
    uint64_t ckpt;  /* SP_BATCH_BARRIER: the checkpoint */
    uint32_t count; /* rows */
    uint32_t slot;  /* bytes per row slot: 8 (timestamp) + row, rounded to 8 */
    uint32_t end;   /* bytes of the segment */
    uint32_t heap;  /* strings occupy [heap, end) */
};

#define SP_BATCH_HEADER ((uint32_t)((sizeof(struct sp_batch) + 15u) & ~15u))

static inline void sp_batch_reset(struct sp_batch *b, uint32_t row_bytes, uint32_t bytes)
{
    b->next = NULL;
    b->flags = 0;
    b->watermark = SP_WM_MIN;
    b->count = 0;
    b->slot = 8u + ((row_bytes + 7u) & ~7u);
    b->end = bytes;
    b->heap = bytes;
}

static inline uint8_t *sp_batch_slot(const struct sp_batch *b, uint32_t i)
{
    return (uint8_t *)b + SP_BATCH_HEADER + (size_t)i * b->slot;
}

static inline int64_t sp_batch_ts(const struct sp_batch *b, uint32_t i)
{
    return *(const int64_t *)sp_batch_slot(b, i);
}

static inline void *sp_batch_row(const struct sp_batch *b, uint32_t i)
{
    return sp_batch_slot(b, i) + 8;
}

/* Rows of `row_bytes` (without strings) a batch of `bytes` holds. */
static inline uint32_t sp_batch_capacity(uint32_t bytes, uint32_t row_bytes)
{
    return (bytes - SP_BATCH_HEADER) / (8u + ((row_bytes + 7u) & ~7u));
}

/* ---- Job graph ---- */

enum sp_node_kind {
    SP_NODE_SOURCE,
    SP_NODE_MAP,
    SP_NODE_FILTER,
    SP_NODE_FLAT_MAP,
    SP_NODE_UNION,
    SP_NODE_KEY_BY,
    SP_NODE_WINDOW,
    SP_NODE_AGGREGATE,
    SP_NODE_PROCESS,
    SP_NODE_LATE, /* the late side output of a window */
    SP_NODE_SINK,
};

struct sp_inst;
struct sp_xshard;

/* Operator behaviour; NULL members take the defaults in exec.c. */
struct sp_op_vt {
    const char *name;
    int (*open)(struct sp_inst *inst);
    void (*push)(struct sp_inst *inst, unsigned port, struct sp_batch *batch);
    /* The input watermark (min over ports) advanced to `wm`. */
    void (*watermark)(struct sp_inst *inst, int64_t wm);
    /* Every input went idle (sends no watermark until it resumes). */
    void (*idle)(struct sp_inst *inst);
    /* Every input ended (after a final watermark of SP_WM_MAX). */
    void (*end)(struct sp_inst *inst);
    void (*close)(struct sp_inst *inst);
    /* The job is stopping (signal, failure, end): cancel timers, stop I/O. */
    void (*stop)(struct sp_inst *inst);
    /* Checkpoints (each optional; ops/checkpoint.c). The barrier of
     * checkpoint `id` passed: every row before it was pushed, none after
     * yet. Tables registered with sp_exec_state_table() are snapshotted by
     * the executor; other state goes in with sp_ckpt_put(). A sink
     * pre-commits here: what it wrote so far is epoch `id`. Barriers keep
     * coming after end() (the job's final checkpoint). */
    void (*barrier)(struct sp_inst *inst, uint64_t id);
    /* Checkpoint `id` is published: a sink commits epoch `id` and any
     * earlier one not committed yet (a failed checkpoint's epoch rolls into
     * the next). */
    void (*checkpoint_done)(struct sp_inst *inst, uint64_t id);
    /* The job starts from a checkpoint: after open(), registered tables
     * already filled, before any input. 0 or -errno (sp_exec_fail called). */
    int (*restored)(struct sp_inst *inst);
};

/* How keys are taken from rows. */
struct sp_keyspec {
    int field; /* index in the schema, or -1 for fn */
    enum sp_type type;
    uint32_t offset;
    sp_key_fn *fn;
    void *ctx;
};

/* A source's behaviour, run by the executor's source task. */
enum sp_poll { SP_POLL_MORE, SP_POLL_WAIT, SP_POLL_END };
struct sp_src;
struct sp_source_vt {
    const char *name;
    /* On the shard: claim partitions with sp_src_partitions(). 0 or -errno
     * with sp_exec_fail() called. */
    int (*open)(struct sp_src *src);
    /* Emit up to `max_rows` rows with sp_src_row()/sp_src_commit(). MORE:
     * call again soon; WAIT: nothing now, sp_src_wake() will say when;
     * END: every partition of this shard ended. Negative: failed. */
    int (*poll)(struct sp_src *src, uint32_t max_rows);
    void (*close)(struct sp_src *src);
    /* Stop asked (signal): stop reading, no more polls. Optional. */
    void (*stop)(struct sp_src *src);
    /* Checkpoints (optional). The barrier of checkpoint `id` goes out
     * after this: put every partition's position (sp_ckpt_put), the next
     * record to read. A restored source reads them in open()
     * (sp_ckpt_foreach) and starts there. */
    void (*checkpoint)(struct sp_src *src, uint64_t id);
    /* Checkpoint `id` is published (a Kafka source commits its group's
     * offsets, for monitoring). */
    void (*checkpoint_done)(struct sp_src *src, uint64_t id);
};

struct sp_node {
    enum sp_node_kind kind;
    uint32_t id;
    const char *name;
    uint32_t inputs[2];
    uint32_t input_count;
    const struct sp_schema *schema; /* of its output */
    const struct sp_op_vt *vt;
    bool keyed; /* downstream of a key_by (possibly through stateless ops) */
    struct sp_keyspec key;
    union {
        struct {
            const struct sp_source_vt *vt;
            void *config; /* the source's own, owned by the job */
            struct sp_watermarks wm;
            int ts_field;
        } source;
        struct {
            union {
                sp_map_fn *map;
                sp_filter_fn *filter;
                sp_flat_map_fn *flat_map;
            } fn;
            void *ctx;
        } udf;
        struct {
            struct sp_window window;
            uint32_t late_node; /* UINT32_MAX: none */
        } window;
        struct {
            struct sp_process_fn fn;
        } process;
        struct {
            const struct sp_op_vt *vt;
            void *config;
            void (*config_free)(void *config);
        } sink;
    } u;
    /* window / aggregate: the resolved aggregate and the output schema */
    struct sp_agg agg;
    uint32_t agg_offset;   /* the aggregated field */
    enum sp_type agg_type; /* its type */
    uint32_t acc_bytes;
    struct sp_schema agg_schema;
    struct sp_field agg_fields[4];
};

#define SP_JOB_NODES_MAX 64
#define SP_JOB_ERROR_BYTES 512

struct sp_stream {
    struct sp_job *job;
    uint32_t node; /* UINT32_MAX: the placeholder after a build error */
};

struct sp_exec;

struct sp_job {
    char name[64];
    struct sp_exec *_Atomic running; /* while sp_job_run runs it */
    char error[SP_JOB_ERROR_BYTES];
    bool failed;
    uint32_t node_count;
    struct sp_node *nodes[SP_JOB_NODES_MAX];
    struct sp_stream streams[SP_JOB_NODES_MAX];
    struct sp_stream dead;
};

/* ---- Per-shard execution ---- */

struct sp_out {
    struct sp_inst *inst;
    struct sp_batch *batch;
    const struct sp_schema *schema;
    uint32_t str_fields[SP_SCHEMA_FIELDS_MAX]; /* offsets of STR fields */
    uint32_t str_count;
    bool pending; /* the last row is still being written */
    char *spill;  /* strings of the row being written that did not fit */
    uint32_t spill_used;
};

struct sp_inst {
    const struct sp_op_vt *vt;
    const struct sp_node *node;
    struct sp_xshard *xs;
    struct sp_inst *down[8];
    unsigned down_port[8];
    unsigned down_count;
    struct sp_out out;
    int64_t port_wm[2];
    bool port_idle[2];
    bool port_end[2];
    unsigned port_count;
    int64_t wm; /* min over ports, what this instance last acted on */
    bool idle;
    bool ended;
    /* Block points downstream (exchanges, sinks) whose counters stop this
     * instance's input when non-zero. */
    uint32_t *blockers[8];
    unsigned blocker_count;
    uint32_t sink_blocked; /* a sink's block point */
    bool deferred;         /* stopped acting on `wm` because downstream is blocked */
    uint64_t chain;        /* bit per node: instances downstream up to the block points */
    /* Input held back when downstream filled up: copies of input batches,
     * in order; the head's rows from backlog_next on are still to do. */
    struct sp_batch *backlog;
    struct sp_batch *backlog_tail;
    uint32_t backlog_next;
    bool end_deferred; /* and its end waits for that */
    void *state;       /* the operator's own */
    /* Barrier alignment of an instance with two inputs (a union): the
     * checkpoint whose barrier came on some port, which ports it came on,
     * and copies of what those ports sent since, held until the other
     * port's barrier. */
    uint64_t align_id;
    bool align_port[2];
    bool align_holding; /* false once alignment gave up (no memory to hold) */
    struct sp_batch *align_held[2];
    struct sp_batch *align_held_tail[2];
    uint64_t align_held_bytes;
};

struct sp_src {
    struct sp_inst *inst;
    struct sp_xshard *xs;
    const struct sp_node *node;
    unsigned shard;
    unsigned shard_count;
    uint32_t partition_count; /* this shard's */
    uint32_t *partitions;     /* their global numbers */
    struct sp_src_part *parts;
    void *state; /* the source's own */
    struct sp_task task;
    bool scheduled;
    bool waiting;
    bool ended;
    uint64_t rows; /* committed in the current poll */
    uint64_t blocked_since_ns;
};

struct sp_src_part {
    int64_t max_ts;
    int64_t wm;
    uint64_t last_ns; /* processing time of its last record */
    bool idle;
    bool ended;
};

/* An exchange's per-destination state on the sending shard. */
struct sp_xchan {
    struct sp_batch *open;    /* being filled */
    struct sp_batch *pending; /* full, waiting for credit (FIFO) */
    struct sp_batch *pending_tail;
    uint32_t credits;
};

/*
 * When a shard's sources' watermark (the minimum over its source instances)
 * reached each value: a ring its shard appends to whenever it rises, that
 * other shards read (sp_job_watermark_time), so every field is atomic.
 */
#define SP_WM_CLOCK_ENTRIES 32768u
struct sp_wm_clock {
    _Atomic uint64_t head; /* entries ever written */
    struct {
        _Atomic int64_t wm;
        _Atomic uint64_t ns;
    } e[SP_WM_CLOCK_ENTRIES];
};

struct sp_xshard {
    struct sp_exec *exec;
    struct sp_shard *shard;
    struct sp_inst **insts;    /* [node_count] */
    struct sp_src **srcs;      /* [node_count], NULL where not a source */
    struct sp_budget batches;  /* operator output batches */
    struct sp_budget exchange; /* exchange batches this shard sends */
    struct sp_budget state;    /* keyed state */
    struct sp_spill spill;     /* cold state on disk (config.spill_dir) */
    bool spill_on;
    struct sp_spill_stats spill_stats; /* kept when the spill closes */
    uint32_t sinks_open;
    bool done_sent;
    uint64_t records_in;
    uint64_t records_out;
    uint64_t records_late;
    uint64_t backpressure_ns;
    int64_t max_ts;               /* largest timestamp the sources read */
    int64_t sink_wm;              /* a sink's watermark */
    struct sp_wm_clock *wm_clock; /* config.watermark_times: the sources' watermark over time */
    struct sp_task resume;
    bool resume_posted;
    uint64_t deferred;    /* bit per node: instances waiting to finish a watermark */
    struct sp_timer tick; /* idleness and progress */
    struct sp_stop_hook stop_hook;
    uint8_t *scratch; /* a batch's worth: moving a row with its strings */
    uint32_t scratch_bytes;
    struct ck_shard *ckpt; /* checkpoints: this shard's part (ops/checkpoint.c) */
    uint64_t inject_id;    /* a barrier its sources are still to put out */
} SP_CACHELINE_ALIGNED;

/* ---- Exec API for operators ---- */

/* Fails the job (first error wins) and stops every shard. */
void sp_exec_fail(struct sp_xshard *xs, int err, const char *fmt, ...) SP_PRINTF(3, 4);

/* Hands the output batch downstream now (end of an input batch). */
void sp_out_flush(struct sp_out *out);
/* Copies a row with its strings. */
void sp_out_emit(struct sp_out *out, const void *row, int64_t ts);
/* Completes the row being written: strings it points at elsewhere are
 * copied into the batch now (before that memory changes). */
void sp_out_finish(struct sp_out *out);
/* Default behaviours, for operators that extend them. */
void sp_inst_forward_watermark(struct sp_inst *inst, int64_t wm);
void sp_inst_forward_end(struct sp_inst *inst);
/* Whether something downstream of `inst` is blocked (backpressure). */
bool sp_inst_blocked(const struct sp_inst *inst);

/*
 * For an operator whose watermark() emits a lot (windows firing, timers):
 * it found itself blocked, stopped where it was, and has not forwarded the
 * watermark. Once unblocked, the executor calls watermark(inst, inst->wm)
 * again, before any new input reaches this shard's instances; the operator
 * goes on from where it stopped.
 */
void sp_inst_defer(struct sp_inst *inst);

/*
 * For an operator that may emit many rows per input row (flat_map, process
 * functions): downstream filled up after row `from - 1` of `in`, or input
 * arrived while earlier input is held back. Keeps rows `from..` of `in`
 * (copied, strings included) after what is held back and defers the
 * instance; when resumed (watermark() again) the operator works through
 * the backlog first (sp_inst_backlog_run). At most one source poll's worth
 * of batches can arrive before the source sees the deferral. Returns false
 * when no memory is left for the copy (the job has failed).
 */
bool sp_inst_backlog(struct sp_inst *inst, const struct sp_batch *in, uint32_t from);

/* Runs `rows(inst, batch, from)` over the backlog, which returns the row
 * it stopped before (count when done). True when the backlog is empty. */
bool sp_inst_backlog_run(struct sp_inst *inst,
                         uint32_t (*rows)(struct sp_inst *inst, const struct sp_batch *in,
                                          uint32_t from));
/* Hands back whatever is held (close). */
void sp_inst_backlog_free(struct sp_inst *inst);

bool sp_exec_failed(const struct sp_xshard *xs);
/* Every sink on every shard ended: the stop under way is the job's end. */
bool sp_exec_completed(const struct sp_xshard *xs);
void sp_exec_count_late(struct sp_xshard *xs, uint64_t rows);

/* The key of a row: its bytes in `*key`, hash returned. */
static inline uint64_t sp_key_of(const struct sp_keyspec *k, const void *row, struct sp_str *key)
{
    if (k->field >= 0) {
        const uint8_t *p = (const uint8_t *)row + k->offset;
        if (k->type == SP_T_STR) {
            *key = *(const struct sp_str *)p;
        } else {
            key->ptr = (const char *)p;
            key->len = k->type == SP_T_BOOL ? 1 : 8;
        }
    } else {
        *key = k->fn(k->ctx, row);
    }
    return sp_key_hash(key->ptr, key->len);
}

/* This shard's range of the run's key groups. */
struct sp_key_group_range sp_exec_key_range(const struct sp_xshard *xs);
/* A state table config for this shard (its budget, its key groups). */
void sp_exec_table_config(struct sp_xshard *xs, const char *name, uint32_t value_bytes,
                          bool ns_order, struct sp_table_config *config);

/* Sources: */
int sp_src_partitions(struct sp_src *src, uint32_t count, const uint32_t *numbers);
/* Starts a row for this shard's partition `part` (index in its list). */
void *sp_src_row(struct sp_src *src);
struct sp_out *sp_src_out(struct sp_src *src);
/* Ends the row: its timestamp comes from the strategy, else `source_ts`. */
void sp_src_commit(struct sp_src *src, uint32_t part, int64_t source_ts);
void sp_src_partition_end(struct sp_src *src, uint32_t part);
/* A waiting source has something (or its partitions changed): poll again. */
void sp_src_wake(struct sp_src *src);

/* Sinks: a sink counts rows out with this, and blocks with these. */
void sp_sink_count(struct sp_inst *inst, uint64_t rows);
void sp_sink_block(struct sp_inst *inst);
void sp_sink_unblock(struct sp_inst *inst);
/* Tell the executor a sink finished (after end()); once per instance. */
void sp_sink_done(struct sp_inst *inst);

/* ---- Checkpoints: what operators, sources and sinks call ---- */

/* Whether this run takes checkpoints (--checkpoint-dir). */
bool sp_ckpt_enabled(const struct sp_xshard *xs);
/* Whether this run started from a checkpoint, and that checkpoint's id and
 * shard count (restore may be onto another shard count). */
bool sp_ckpt_restoring(const struct sp_xshard *xs);
uint64_t sp_ckpt_restored_id(const struct sp_xshard *xs);
uint32_t sp_ckpt_restored_shards(const struct sp_xshard *xs);

/*
 * Puts a small piece of `node`'s state into the checkpoint being taken
 * (from barrier() or a source's checkpoint()): a key (≤ 200 bytes, unique
 * within the node across shards, e.g. "p/3" for partition 3 or "txn/1"
 * for shard 1's transaction) and a value (≤ 4 KiB). 0, -E2BIG (too many or
 * too large: the checkpoint fails), -ENOMEM.
 */
SP_MUST_CHECK int sp_ckpt_put(struct sp_xshard *xs, const struct sp_node *node, const char *key,
                              const void *value, uint32_t len);

/*
 * When restoring: calls fn for every (key, value) `node` put into the
 * restored checkpoint, on every shard of that run (the caller keeps what is
 * its own now: the partitions it was given, the transactions of the old
 * shards it takes over). Returns how many; 0 when not restoring.
 */
int sp_ckpt_foreach(struct sp_xshard *xs, const struct sp_node *node,
                    void (*fn)(void *ctx, const char *key, const void *value, uint32_t len),
                    void *ctx);

/*
 * For a barrier() whose work finishes later (a sink waiting for the
 * acknowledgement of its epoch's records): hold the checkpoint from inside
 * barrier(), release it (once) when done; the shard's part of checkpoint
 * `id` is complete only when every hold is released. A release with err <
 * 0 fails checkpoint `id` (the job keeps running; the next one retries).
 */
void sp_ckpt_hold(struct sp_xshard *xs, uint64_t id);
void sp_ckpt_release(struct sp_xshard *xs, uint64_t id, int err);

/* Asks for a checkpoint soon (a sink at its end: the final checkpoint
 * commits its last epoch). Does nothing without checkpoints. */
void sp_ckpt_request(struct sp_xshard *xs);

/*
 * Registers a keyed state table of `inst` (after sp_table_init, in open()):
 * the executor snapshots it at every barrier, restores it from the
 * checkpoint before restored() is called, and releases nothing (the
 * operator still deinits it in close()). `name` is unique per node.
 */
SP_MUST_CHECK int sp_exec_state_table(struct sp_inst *inst, const char *name,
                                      struct sp_table *table);

/* Node constructors for source and sink implementations elsewhere. */
struct sp_stream *sp_job_add_source(struct sp_job *job, const char *name,
                                    const struct sp_source_vt *vt, void *config,
                                    const struct sp_schema *schema, const struct sp_watermarks *wm);
void sp_job_add_sink(struct sp_stream *in, const char *name, const struct sp_op_vt *vt,
                     void *config, void (*config_free)(void *config));
struct sp_job *sp_stream_job(struct sp_stream *s);
const struct sp_schema *sp_stream_schema(struct sp_stream *s);

/* Operator tables (window.c, process.c, sink_basic.c). */
extern const struct sp_op_vt sp_window_vt;
extern const struct sp_op_vt sp_aggregate_vt;
extern const struct sp_op_vt sp_process_vt;
extern const struct sp_source_vt sp_generator_vt;
int sp_agg_prepare(struct sp_job *job, struct sp_node *node, const struct sp_agg *agg,
                   const struct sp_schema *in);

/* write(2) of all `n` bytes (again after EINTR and short writes): 0 or
 * -errno. For the file sinks' blocking writes into the page cache. */
int sp_fd_write_all(int fd, const void *buf, size_t n);

/* JSON lines for stdout and file sinks: one row as a JSON object and a
 * newline. Returns the length, or -1 when `cap` is too small. */
int sp_row_to_json(const struct sp_schema *schema, const void *row, char *buf, size_t cap);

/* ---- Serdes (serde.c) ---- */

/*
 * Parses one record (a Kafka value, a line without its newline) in `format`
 * into `row` (zeroed by the caller), copying strings into the row's batch
 * with sp_out_str(out, ...). JSON: an object, fields by name, missing ones
 * left zero, unknown ones ignored, a wrong type an error (parsed with
 * jansson). CSV: fields in schema order, RFC 4180 quoting. RAW and STRING:
 * the bytes into the schema's "value" field (STRING checks UTF-8).
 * Returns 0, or -EBADMSG with a one-line reason in `err`.
 */
int sp_serde_decode(enum sp_format format, const struct sp_schema *schema, const void *data,
                    size_t len, void *row, struct sp_out *out, char *err, size_t err_bytes);

/*
 * Formats `row` in `format` without a trailing newline: JSON an object, CSV
 * one line, RAW and STRING the "value" field's bytes. Returns the length, or
 * -ENOSPC when `cap` is too small.
 */
int sp_serde_encode(enum sp_format format, const struct sp_schema *schema, const void *row,
                    char *buf, size_t cap);

#endif /* SP_OP_H */
