/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The job API: what Flink's DataStream API and Kafka Streams' DSL give their
 * users, in C. A program builds a graph of streams once, then runs it:
 *
 *     struct sp_job *job = sp_job_new("clicks");
 *     struct sp_stream *s = sp_source_generator(job, &click_schema, gen, NULL, &gen_config,
 *                                               &(struct sp_watermarks){.ts_field = "ts",
 *                                                   .out_of_orderness_ms = 10000});
 *     s = sp_key_by(s, "user");
 *     s = sp_window_aggregate(s, &(struct sp_window){.kind = SP_WINDOW_TUMBLING,
 *                                                   .size_ms = 300000},
 *                             &(struct sp_agg){.kind = SP_AGG_COUNT}, &late);
 *     sp_sink_stdout(s);
 *     sp_job_run(job, &config, &stats);
 *
 * The graph is instantiated on every shard (one pinned thread per core);
 * each instance processes its share: its source partitions, and after a
 * key_by the key groups the shard owns. Records move in batches; chained
 * operators call each other directly; a key_by crosses shards through the
 * runtime's rings with credit-based backpressure.
 *
 * Building never fails halfway: a wrong argument (an unknown field, a
 * window without a size) records the first error on the job, later calls
 * return harmless placeholders, and sp_job_run refuses to run, with
 * sp_job_error() saying why.
 *
 * User functions run on the shards, possibly on several at once: they may
 * read their `ctx` but must not write shared memory without their own care.
 * Timestamps are int64 milliseconds (event time as the records carry it).
 */
#ifndef SP_JOB_H
#define SP_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_schema.h"

struct sp_shard;

struct sp_job;
struct sp_stream;
struct sp_out;

/* ---- Jobs ---- */

struct sp_job *sp_job_new(const char *name);
void sp_job_free(struct sp_job *job);

/* The first error building or running the job, NULL when none. */
const char *sp_job_error(const struct sp_job *job);

/* Records an error (the first one wins): the job will not run. */
void sp_job_set_error(struct sp_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Writing rows (map, flat_map, process functions, generators) ---- */

/*
 * Starts a new output row with timestamp `ts` and returns it, zeroed, to be
 * filled before the next call on `out`.
 */
void *sp_out_row(struct sp_out *out, int64_t ts);

/* Copies `len` bytes into the batch of the row being written. */
struct sp_str sp_out_str(struct sp_out *out, const void *bytes, uint32_t len);

/*
 * Room for a string of `len` bytes in the batch of the row being written,
 * to fill in place before the next call on `out` (no copy): `*s` refers to
 * it. NULL (and `*s` empty) when it cannot fit: the job then fails.
 */
char *sp_out_str_alloc(struct sp_out *out, uint32_t len, struct sp_str *s);

/* ---- Event time ---- */

/*
 * How a source assigns timestamps and watermarks (Flink's
 * WatermarkStrategy.forBoundedOutOfOrderness(...).withIdleness(...)).
 * The timestamp is the int64 field `ts_field`, else what `ts_fn` returns,
 * else the source's own (a Kafka record's timestamp, the generator's
 * index). Each source partition tracks its largest timestamp; its
 * watermark is that minus out_of_orderness_ms minus 1. A partition without
 * records for idle_timeout_ms (processing time; 0: never) is idle and does
 * not hold the watermark back until it has records again.
 */
struct sp_watermarks {
    const char *ts_field;
    int64_t (*ts_fn)(void *ctx, const void *row);
    void *ts_ctx;
    int64_t out_of_orderness_ms;
    int64_t idle_timeout_ms;
};

/* ---- Sources ---- */

/*
 * Writes event `index` (0, 1, 2, ...) of partition `partition` into `row`
 * (zeroed); returns its timestamp. Deterministic: the same (partition,
 * index) gives the same event whatever the shard count.
 */
typedef int64_t sp_gen_fn(void *ctx, uint32_t partition, uint64_t index, void *row,
                          struct sp_out *out);

struct sp_gen_config {
    uint64_t count;      /* events over all partitions; 0: unbounded */
    uint32_t partitions; /* default: the shard count */
    double rate;         /* events per second in total; 0: as fast as possible */
    /* Events per poll (0: a batch's worth). The watermark advances between
     * polls, so 1 lets every event see the watermark of those before it. */
    uint32_t events_per_poll;
};

struct sp_stream *sp_source_generator(struct sp_job *job, const struct sp_schema *schema,
                                      sp_gen_fn *fn, void *ctx, const struct sp_gen_config *config,
                                      const struct sp_watermarks *wm);

enum sp_format {
    SP_FORMAT_JSON,   /* one JSON object per line / record, fields by name */
    SP_FORMAT_CSV,    /* fields in schema order, RFC 4180 quoting */
    SP_FORMAT_RAW,    /* schema {key: str, value: str}: the record's bytes */
    SP_FORMAT_STRING, /* like RAW, checked to be UTF-8 */
};

/* Lines of a file, each parsed by `format` (JSON or CSV); one partition. */
struct sp_stream *sp_source_file(struct sp_job *job, const char *path, enum sp_format format,
                                 const struct sp_schema *schema, const struct sp_watermarks *wm);

/*
 * With a group, the source commits the offsets of the records it has handed
 * downstream, every auto.commit.interval.ms (5 s) and at the end of a run
 * that completes; not when the job is stopped or fails. Records in flight
 * or in windows not yet fired at a crash are not in the output and may be
 * behind a periodic commit: until checkpoints give sources consistent
 * restart positions, a restart after a crash is at most once for them.
 */
struct sp_kafka_source_config {
    const char *bootstrap; /* host:port[,host:port...] */
    const char *topic;
    const char *group;             /* NULL: manual assignment of every partition */
    bool from_beginning;           /* auto.offset.reset=earliest */
    const char *const *properties; /* NULL-terminated "key=value" client properties */
    bool stop_at_end;    /* bounded: end each partition at the offset that was last at start */
    bool skip_malformed; /* count and log records that do not parse (default: fail the job) */
};

/*
 * The row of the RAW and STRING formats: a Kafka record as it is (for
 * files, `value` is the line). Its schema is sp_record_schema.
 */
struct sp_record_row {
    struct sp_str key;
    struct sp_str value;
    int64_t timestamp;
    int64_t offset;
    int64_t partition;
};
extern const struct sp_schema sp_record_schema;

/* A topic's partitions spread over the shards; records parsed by `format`. */
struct sp_stream *sp_source_kafka(struct sp_job *job, const struct sp_kafka_source_config *config,
                                  enum sp_format format, const struct sp_schema *schema,
                                  const struct sp_watermarks *wm);

/* ---- Stateless transformations ---- */

typedef void sp_map_fn(void *ctx, const void *in, void *out_row, struct sp_out *out);
typedef bool sp_filter_fn(void *ctx, const void *row);
typedef void sp_flat_map_fn(void *ctx, const void *in, int64_t ts, struct sp_out *out);

struct sp_stream *sp_map(struct sp_stream *in, const struct sp_schema *out_schema, sp_map_fn *fn,
                         void *ctx);
struct sp_stream *sp_filter(struct sp_stream *in, sp_filter_fn *fn, void *ctx);
struct sp_stream *sp_flat_map(struct sp_stream *in, const struct sp_schema *out_schema,
                              sp_flat_map_fn *fn, void *ctx);
/* Both inputs must have the same schema; the watermark is their minimum. */
struct sp_stream *sp_union(struct sp_stream *a, struct sp_stream *b);

/* ---- Keys ---- */

/* Partitions by a field's value (its bytes for I64/F64/BOOL, its text for STR). */
struct sp_stream *sp_key_by(struct sp_stream *in, const char *field);

/* Partitions by the bytes a function returns (valid until the next call). */
typedef struct sp_str sp_key_fn(void *ctx, const void *row);
struct sp_stream *sp_key_by_fn(struct sp_stream *in, sp_key_fn *fn, void *ctx);

/* ---- Aggregation ---- */

enum sp_agg_kind { SP_AGG_COUNT, SP_AGG_SUM, SP_AGG_MIN, SP_AGG_MAX, SP_AGG_AVG, SP_AGG_USER };

/* A user-defined aggregate (Flink's AggregateFunction). */
struct sp_aggregate_fn {
    uint32_t acc_bytes;
    enum sp_type result_type; /* SP_T_I64 or SP_T_F64 */
    void (*create)(void *ctx, void *acc);
    void (*add)(void *ctx, void *acc, const void *row, int64_t ts);
    void (*merge)(void *ctx, void *acc, const void *other);   /* session windows */
    void (*result)(void *ctx, const void *acc, void *result); /* int64_t or double */
    void *ctx;
};

struct sp_agg {
    enum sp_agg_kind kind;
    const char *field; /* SUM, MIN, MAX, AVG: an I64 or F64 field */
    const struct sp_aggregate_fn *user;
    const char *name; /* the result's field name (default: the kind's name) */
};

enum sp_window_kind {
    SP_WINDOW_TUMBLING, /* size_ms (offset_ms) */
    SP_WINDOW_HOPPING,  /* size_ms every slide_ms: Flink's sliding window */
    SP_WINDOW_SESSION,  /* gap_ms of inactivity closes a session; sessions merge */
    SP_WINDOW_GLOBAL,   /* one window per key, fired and purged every `count` records */
};

struct sp_window {
    enum sp_window_kind kind;
    int64_t size_ms;
    int64_t slide_ms;
    int64_t offset_ms;
    int64_t gap_ms;
    uint64_t count;
    /* Windows stay this long past their end; a late record within it updates
     * the window and fires it again; later ones go to the late output. */
    int64_t allowed_lateness_ms;
};

/*
 * Incremental aggregation per key and window of a keyed stream; emits one
 * struct sp_agg_row per window firing, timestamped window_end - 1. Records
 * too late for every window they belong to go to `*late_out` (the input's
 * schema) when it is not NULL, and are counted and dropped otherwise.
 */
struct sp_stream *sp_window_aggregate(struct sp_stream *keyed, const struct sp_window *window,
                                      const struct sp_agg *agg, struct sp_stream **late_out);

/*
 * A running aggregate per key (Kafka Streams' groupByKey().aggregate()):
 * every record updates its key's value and emits the new one (a changelog
 * of struct sp_agg_row with window 0..0).
 */
struct sp_stream *sp_aggregate(struct sp_stream *keyed, const struct sp_agg *agg);

/* ---- Keyed process functions (Flink's KeyedProcessFunction) ---- */

struct sp_pctx;

struct sp_process_fn {
    uint32_t state_bytes; /* a value state per key, zeroed when first used */
    uint32_t list_bytes;  /* elements of a list state per key (Flink's ListState); 0: none */
    void (*process)(struct sp_pctx *c, const void *row, int64_t ts);
    void (*on_timer)(struct sp_pctx *c, int64_t ts, bool event_time);
    void *ctx;
    /* At the end of a bounded input, fire the processing-time timers still
     * pending (their windows close early) instead of dropping them. */
    bool proc_timers_at_end;
    /* Time to live of the value and list state, in ms of processing time
     * (Flink's StateTtlConfig: OnCreateAndWrite, NeverReturnExpired; 0:
     * state lives until cleared). A value expires ttl after its last write
     * (sp_pctx_state and sp_pctx_state_find hand out writable pointers, so
     * they count as writes; sp_pctx_state_get does not); a list as a whole,
     * ttl after its first element was appended (appends do not extend it).
     * Expired state reads as absent, and its memory is reclaimed as the
     * operator runs. Timers never expire. The map state expires as a whole
     * like the list (ttl after its first put), the aggregating state like
     * the value (ttl after its last add). */
    uint64_t state_ttl_ms;
    /* A map state per key (Flink's MapState): map keys of at most
     * map_key_bytes bytes (1..SP_PROCESS_MAP_KEY_BYTES_MAX; 0: no map
     * state), each with a value of map_value_bytes (1..
     * SP_PROCESS_MAP_VALUE_BYTES_MAX). A bad pair fails the job at start. */
    uint32_t map_key_bytes;
    uint32_t map_value_bytes;
    /* An aggregating state per key (Flink's AggregatingState; NULL: none):
     * borrowed, it must outlive the job; create, add and result are needed. */
    const struct sp_aggregate_fn *agg;
};

#define SP_PROCESS_MAP_KEY_BYTES_MAX 4096u
#define SP_PROCESS_MAP_VALUE_BYTES_MAX 16384u

struct sp_stream *sp_process(struct sp_stream *keyed, const struct sp_schema *out_schema,
                             const struct sp_process_fn *fn);

void *sp_pctx_user(struct sp_pctx *c);
/* The current key's bytes. */
struct sp_str sp_pctx_key(struct sp_pctx *c);
/* The current key's value state (state_bytes, zeroed on first use); NULL
 * when the function declared no state (state_bytes 0), or when the state
 * budget is exhausted (the job then fails). */
void *sp_pctx_state(struct sp_pctx *c);
void sp_pctx_state_clear(struct sp_pctx *c);
/* The current key's value state if it has one (NULL otherwise): a lookup
 * that creates nothing (Flink's ValueState.value() returning null). */
void *sp_pctx_state_find(struct sp_pctx *c);
/* The same for reading only: no write, so it refreshes no TTL (Flink's
 * value() under OnCreateAndWrite); the state must not be written through. */
const void *sp_pctx_state_get(struct sp_pctx *c);
/*
 * The current key's list state: elements of list_bytes, in managed memory
 * like every keyed state. Elements are numbered 0..len-1; removing one
 * moves the last into its place (order is not kept across removals).
 * Pointers stay valid until that element is removed or the list cleared.
 * append returns a zeroed element, or NULL when the state budget is
 * exhausted (the job then fails).
 */
uint32_t sp_pctx_list_len(struct sp_pctx *c);
void *sp_pctx_list_at(struct sp_pctx *c, uint32_t i);
void *sp_pctx_list_append(struct sp_pctx *c);
void sp_pctx_list_remove(struct sp_pctx *c, uint32_t i);
void sp_pctx_list_clear(struct sp_pctx *c);
/*
 * The current key's map state: map keys (byte strings of at most
 * map_key_bytes) to values of map_value_bytes, in managed memory like every
 * keyed state. put returns the key's value, writable and zeroed when the
 * key is new; NULL when the state budget is exhausted or the map key is
 * longer than map_key_bytes (the job then fails: -ENOBUFS or -E2BIG), or
 * without map state. get returns it for reading only (no write, so no TTL
 * refresh), NULL when absent; get, contains and remove of a key longer than
 * map_key_bytes find nothing. remove says whether the key was there. at
 * visits the entries by position 0..len-1 (setting *map_key_out, which
 * points into the state, when not NULL); removing one moves the last into
 * its place, so order is not kept across removals. Pointers stay valid
 * until that entry is removed or the map cleared.
 */
uint32_t sp_pctx_map_len(struct sp_pctx *c);
const void *sp_pctx_map_get(struct sp_pctx *c, const void *map_key, uint32_t len);
bool sp_pctx_map_contains(struct sp_pctx *c, const void *map_key, uint32_t len);
void *sp_pctx_map_put(struct sp_pctx *c, const void *map_key, uint32_t len);
bool sp_pctx_map_remove(struct sp_pctx *c, const void *map_key, uint32_t len);
void *sp_pctx_map_at(struct sp_pctx *c, uint32_t i, struct sp_str *map_key_out);
void sp_pctx_map_clear(struct sp_pctx *c);
/*
 * The current key's aggregating state (fn->agg): add creates the key's
 * accumulator on first use (create()) and adds the row to it (add(); the
 * job fails when the state budget is exhausted); result writes result()
 * (an int64_t or a double, per result_type) and returns true, or false when
 * the key has no accumulator (nothing added since the last clear). result
 * reads only: it refreshes no TTL.
 */
void sp_pctx_agg_add(struct sp_pctx *c, const void *row, int64_t ts);
bool sp_pctx_agg_result(struct sp_pctx *c, void *result);
void sp_pctx_agg_clear(struct sp_pctx *c);

/* Timers for the current key; one per (key, time): setting it twice fires once. */
void sp_pctx_timer_event(struct sp_pctx *c, int64_t ts);
void sp_pctx_timer_proc(struct sp_pctx *c, int64_t ts_ms);
void sp_pctx_timer_event_delete(struct sp_pctx *c, int64_t ts);
int64_t sp_pctx_watermark(struct sp_pctx *c);
int64_t sp_pctx_now_ms(struct sp_pctx *c);
struct sp_out *sp_pctx_out(struct sp_pctx *c);

/* ---- Sinks ---- */

void sp_sink_blackhole(struct sp_stream *in);
/* One JSON object per line on stdout. */
void sp_sink_stdout(struct sp_stream *in);
/* One JSON object per line into `path` (created or truncated). */
void sp_sink_file(struct sp_stream *in, const char *path);
/*
 * JSON lines into part files in directory `dir` (created if missing), one
 * file per shard and checkpoint epoch: written as ".part-*.inprogress",
 * made durable at the checkpoint's barrier and renamed to
 * "part-<checkpoint>-<shard>.jsonl" once the checkpoint completed, so a
 * reader of the part-* files sees every row exactly once across crashes and
 * restores (Flink's FileSink). Without checkpoints the files are published
 * when the input ends.
 */
void sp_sink_files(struct sp_stream *in, const char *dir);

/* Called on the shard for every row; `shard` is its index. */
typedef void sp_sink_fn(void *ctx, unsigned shard, const void *row, int64_t ts);
void sp_sink_call(struct sp_stream *in, sp_sink_fn *fn, void *ctx);

struct sp_kafka_sink_config {
    const char *bootstrap;
    const char *topic;
    const char *key_field;         /* the record key; NULL: none */
    const char *const *properties; /* NULL-terminated "key=value" producer properties */
};

/* Rows as records (JSON values by default), keyed by key_field. */
void sp_sink_kafka(struct sp_stream *in, const struct sp_kafka_sink_config *config,
                   enum sp_format format);

/* ---- Running ---- */

struct sp_run_config {
    unsigned cores;       /* shards; 0: every CPU this process may use */
    size_t memory_bytes;  /* managed memory per shard; 0: 256 MiB */
    uint32_t key_groups;  /* Flink's max parallelism; 0: 128 */
    uint32_t credits;     /* batches in flight per shard pair and exchange; 0: 8 */
    uint32_t batch_bytes; /* 0: the managed-memory segment size (32 KiB) */
    bool poll;            /* spin instead of sleeping */
    bool progress;        /* a progress line on stderr each second */
    double max_seconds;   /* stop an unbounded job after this long; 0: run until stopped */
    bool handle_signals;  /* SIGINT/SIGTERM stop the job (default on) */
    /* Keep, per shard, when its sources' watermark reached which value (the
     * last 32768 rises, 512 KiB per shard), for sp_job_watermark_time(). */
    bool watermark_times;
    /* Work that shares the job's runtime (spate run --embedded-broker runs a
     * Kafka endpoint in it). on_shard_start runs on each shard's thread
     * before the job opens there, on_shard_finish after the job closed
     * there and every shard drained (the runtime's on_start and on_finish);
     * a stop hook it registers runs after the job's own (hooks run last
     * registered first). on_complete runs once, on shard 0, when the job
     * completed (every sink ended); not when it fails or is stopped. Each
     * gets hook_ctx; NULL hooks are skipped. */
    void (*on_shard_start)(struct sp_shard *shard, void *ctx);
    void (*on_shard_finish)(struct sp_shard *shard, void *ctx);
    void (*on_complete)(void *ctx);
    void *hook_ctx;
    /* A completed job leaves the runtime running, for that work, until a
     * signal (with handle_signals) or max_seconds stops it; the stats are
     * the job's (its time ends when it completed) and the run counts as
     * finished, not interrupted. */
    bool linger;
    /* Checkpoints (ops/checkpoint.c): with checkpoint_url set (file:///dir
     * or s3://bucket/prefix), one every checkpoint_interval_ms (0: 1000)
     * after at least checkpoint_min_pause_ms since the last ended (0: none),
     * failed when not complete within checkpoint_timeout_ms (0: 60000); the
     * newest checkpoint_retain (0: 3) are kept. A shard's state is written
     * whole every checkpoint_max_deltas (0: 16) checkpoints, or when its
     * deltas add up to more than the whole, and as a delta otherwise.
     * restore: NULL or "latest" restores the newest checkpoint that verifies
     * when there is one, "none" starts empty, a number restores that
     * checkpoint (an error when it does not verify). savepoint_url: start
     * from that store's newest checkpoint instead (`spate savepoint` makes
     * one), writing new checkpoints to checkpoint_url. */
    const char *checkpoint_url;
    uint32_t checkpoint_interval_ms;
    uint32_t checkpoint_min_pause_ms;
    uint32_t checkpoint_timeout_ms;
    uint32_t checkpoint_retain;
    uint32_t checkpoint_max_deltas;
    const char *restore;
    const char *savepoint_url;
    /* Keyed state larger than memory (state/sp_spill.h): with spill_dir
     * set, each shard spills its coldest state segments to a file there
     * (unlinked: nothing is left behind) when its state budget is full, up
     * to spill_max_bytes (0: no limit), and reads them back when touched.
     * The state budget is then seven eighths of the managed memory, the
     * rest left to batches. NULL: state must fit memory. */
    const char *spill_dir;
    uint64_t spill_max_bytes;
};

void sp_run_config_default(struct sp_run_config *config);

struct sp_job_stats {
    uint64_t records_in;   /* read by the sources */
    uint64_t records_out;  /* written by the sinks */
    uint64_t records_late; /* dropped or sent to a late output */
    double seconds;
    bool interrupted;           /* stopped by a signal or max_seconds before its end */
    uint64_t state_bytes_max;   /* high-water mark of state memory, all shards */
    uint64_t spilled_bytes_max; /* of state on disk (spill_dir), summed over shards */
    uint64_t spill_reads;       /* segments read back from disk, all shards */
    uint64_t buffer_bytes_max;  /* of batch and exchange memory, all shards */
    uint64_t backpressure_ns;   /* time sources spent blocked, summed over shards */
};

/*
 * Runs the job until its sources end (and every window has fired) or it is
 * stopped. Returns 0, or -1 with sp_job_error() saying why.
 */
int sp_job_run(struct sp_job *job, const struct sp_run_config *config, struct sp_job_stats *stats);

/*
 * While the job runs with watermark_times (from a sink callback, say): the
 * time (sp_now_ns's CLOCK_MONOTONIC nanoseconds) at which the watermark of
 * every source on every shard had reached `ts`, so every operator's
 * watermark could pass it: the start of a window result's latency when
 * `ts` is its window's last millisecond. false when some source has not
 * reached it yet, or reached it longer ago than the shard remembers.
 * Idle sources (idle_timeout_ms) do not count; shards without source
 * partitions neither.
 */
bool sp_job_watermark_time(struct sp_job *job, int64_t ts, uint64_t *ns);

/* ---- Parameters and command-line runs ---- */

#define SP_PARAMS_MAX 64

/* key=value settings of a job (`spate run JOB --param k=v`). */
struct sp_params {
    unsigned count;
    const char *keys[SP_PARAMS_MAX];
    const char *values[SP_PARAMS_MAX];
    char storage[4096];
    unsigned used;
};

/* Adds "key=value" (copied). 0, or -EINVAL (no '=', empty key, too many). */
int sp_params_add(struct sp_params *params, const char *key_value);

/* The value of `key`, or `def`. */
const char *sp_param(const struct sp_params *params, const char *key, const char *def);

/* Integers and durations: the job records an error for a bad value. */
int64_t sp_param_i64(struct sp_job *job, const struct sp_params *params, const char *key,
                     int64_t def);
double sp_param_f64(struct sp_job *job, const struct sp_params *params, const char *key,
                    double def);

/* Records an error on the job for any parameter not in `known` (NULL-ended). */
void sp_params_check(struct sp_job *job, const struct sp_params *params, const char *const *known);

typedef struct sp_job *sp_job_build_fn(const struct sp_params *params);

/*
 * Builds the job from `params` and runs it: a progress line on stderr each
 * second when stderr is a terminal, a summary on stderr at the end. Returns
 * the process exit status: 0, 1 when the job failed (the reason printed),
 * 2 when it could not be built from the parameters.
 */
int sp_job_run_cli(sp_job_build_fn *build, const struct sp_params *params,
                   const struct sp_run_config *config);

/*
 * main() for a job program: `prog [key=value | --param key=value]...
 * [--cores N] [--memory BYTES]`, then sp_job_run_cli.
 */
int sp_job_main(sp_job_build_fn *build, int argc, char **argv);

#endif /* SP_JOB_H */
