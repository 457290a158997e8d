/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The executor: runs a job graph on every shard.
 *
 * On each shard, every node gets an instance (sp_inst) in topological order.
 * Chained instances call each other: an instance's output batch, when full
 * or when its input batch is done, is pushed to each downstream instance in
 * turn, which consumes it before returning. Sources are tasks on the shard's
 * run queue that poll their source for one batch's worth of rows at a time.
 *
 * A key_by is an exchange. Its instance on the sending shard routes each row
 * by key hash -> key group -> owning shard into one open batch per
 * destination, a segment of the sender's exchange budget; full batches go
 * through the ring to the destination's instance of the same node, which
 * pushes them down its chain and sends the batch back (the credit). Each
 * (exchange, sender, receiver) has `credits` batches in flight at most. A
 * channel out of credit, or a sink that says it is full, raises a counter
 * (a block point); sources and exchange receivers upstream of a raised
 * counter stop: sources stop polling, receivers queue what arrives (at most
 * the credits of their senders) and keep it until the counter falls. That
 * is the credit-based backpressure: nothing buffers without bound, and as
 * the graph is acyclic the last stage always drains.
 *
 * Watermarks, idleness and end-of-stream travel in-band, in batch headers
 * across shards and as calls along a chain; an instance with several inputs
 * (a union, an exchange receiver with a sender per shard) acts on the
 * minimum over the inputs that are not idle.
 *
 * The job ends when every sink on every shard has seen the end of its input;
 * shard 0 counts them and stops the runtime.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exec_int.h"
#include "sp_log.h"

#define TICK_NS (100 * SP_NSEC_PER_MSEC)
#define SRC_ROWS_PER_POLL 4096u

/* Counters other threads read (progress line): single writer, relaxed. */
static inline void stat_add(uint64_t *counter, uint64_t n)
{
    _Atomic uint64_t *c = (_Atomic uint64_t *)counter;
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t stat_read(const uint64_t *counter)
{
    return atomic_load_explicit((_Atomic uint64_t *)counter, memory_order_relaxed);
}

/* ---- Failing ---- */

void sp_exec_fail(struct sp_xshard *xs, int err, const char *fmt, ...)
{
    struct sp_exec *exec = xs->exec;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&exec->failed, &expected, true))
        return;
    char msg[SP_JOB_ERROR_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (err < 0)
        snprintf(exec->job->error, sizeof(exec->job->error), "%s: %s", msg, strerror(-err));
    else
        snprintf(exec->job->error, sizeof(exec->job->error), "%s", msg);
    exec->job->failed = true;
    sp_error("job %s failed: %s", exec->job->name, exec->job->error);
    sp_runtime_stop(&exec->rt);
}

bool sp_exec_failed(const struct sp_xshard *xs)
{
    return atomic_load_explicit(&xs->exec->failed, memory_order_relaxed);
}

bool sp_exec_completed(const struct sp_xshard *xs)
{
    return atomic_load(&xs->exec->completed);
}

struct sp_key_group_range sp_exec_key_range(const struct sp_xshard *xs)
{
    struct sp_key_group_range r;
    int rc =
        sp_key_group_range(xs->exec->config.key_groups, xs->exec->shard_count, xs->shard->id, &r);
    SP_ASSERT(rc == 0);
    return r;
}

void sp_exec_table_config(struct sp_xshard *xs, const char *name, uint32_t value_bytes,
                          bool ns_order, struct sp_table_config *config)
{
    struct sp_key_group_range r = sp_exec_key_range(xs);
    *config = (struct sp_table_config){
        .name = name,
        .value_bytes = value_bytes,
        .key_group_first = r.first,
        .key_group_count = r.end - r.first,
        .key_groups_total = xs->exec->config.key_groups,
        .ns_order = ns_order,
        .budget = &xs->state,
        .spill = xs->spill_on ? &xs->spill : NULL,
    };
}

/* ---- Block points ---- */

void sp_inst_defer(struct sp_inst *inst)
{
    if (!inst->deferred) {
        inst->deferred = true;
        inst->xs->deferred |= 1ull << inst->node->id;
    }
}

bool sp_inst_blocked(const struct sp_inst *inst)
{
    for (unsigned i = 0; i < inst->blocker_count; i++) {
        if (*inst->blockers[i] != 0)
            return true;
    }
    return false;
}

static void xs_resume(struct sp_xshard *xs);

static void block_dec(struct sp_xshard *xs, uint32_t *counter)
{
    SP_ASSERT(*counter > 0);
    if (--*counter == 0)
        xs_resume(xs);
}

/* ---- Output ---- */

static struct sp_batch *batch_alloc(struct sp_xshard *xs, struct sp_budget *budget,
                                    uint32_t row_bytes)
{
    void *seg;
    while (sp_budget_reserve(budget, &seg) < 0) {
        /* Within its limit but the pool is dry: state it holds may go to
         * disk (pinned state stays). */
        if (!xs->spill_on || budget->used >= budget->limit || sp_spill_reclaim(&xs->spill) < 0)
            return NULL;
    }
    struct sp_batch *b = seg;
    b->exec = xs->exec;
    b->from = (uint16_t)xs->shard->id;
    b->node = UINT32_MAX;
    sp_batch_reset(b, row_bytes, xs->exec->batch_bytes);
    return b;
}

/*
 * Spilled state (state/sp_spill.h): state segments touched since the last
 * unpin stay in memory, as operators may hold pointers into them. Every
 * table is unpinned at the top of the shard's work: a source's poll, a
 * batch an exchange receiver takes off the ring from another shard or from
 * its queue, and the shard's tasks and tick (watermarks of idle sources).
 * Nothing above them holds a pointer then. Not where an exchange hands its
 * own shard's share down at once: the operator that emitted it is in the
 * middle of a record. Operators unpin their own tables between records.
 */
static inline void xs_unpin(struct sp_xshard *xs)
{
    if (xs->spill_on)
        sp_spill_unpin(&xs->spill);
}

/* A segment could not be read back, so a lookup found nothing where state
 * was: the run cannot go on, nor complete (a restart restores the last
 * checkpoint). Checked each tick and before the shard reports done. */
static bool xs_spill_failed(struct sp_xshard *xs)
{
    if (!xs->spill_on || sp_spill_error(&xs->spill) == 0)
        return false;
    sp_exec_fail(xs, sp_spill_error(&xs->spill),
                 "keyed state: a spilled segment could not be read back (%s)",
                 strerror(-sp_spill_error(&xs->spill)));
    return true;
}

static void deliver(struct sp_inst *inst, struct sp_batch *b)
{
    for (unsigned i = 0; i < inst->down_count; i++)
        inst->down[i]->vt->push(inst->down[i], inst->down_port[i], b);
}

static void out_adopt(struct sp_out *out);

void sp_out_flush(struct sp_out *out)
{
    struct sp_batch *b = out->batch;
    if (out->pending) {
        out_adopt(out);
        out->pending = false;
        b = out->batch;
    }
    if (b == NULL)
        return;
    if (b->count == 0) {
        b->heap = b->end; /* strings of dropped rows may be left */
        return;
    }
    deliver(out->inst, b);
    sp_batch_reset(b, out->schema->row_bytes, b->end);
}

void sp_out_finish(struct sp_out *out)
{
    if (out->pending) {
        out_adopt(out);
        out->pending = false;
    }
}

static inline bool in_heap(const struct sp_batch *b, const char *p)
{
    return p >= (const char *)b + b->heap && p < (const char *)b + b->end;
}

static inline uint32_t rows_end(const struct sp_batch *b)
{
    return SP_BATCH_HEADER + b->count * b->slot;
}

/*
 * The last row, complete, and `need` more bytes of its strings do not fit:
 * deliver the rows before it and start the batch over with it alone (its
 * strings already in the batch come along). Only for a complete row: the
 * code that wrote it no longer holds its address. False when even an empty
 * batch cannot hold it.
 */
static bool out_move_last(struct sp_out *out, uint32_t need)
{
    struct sp_batch *b = out->batch;
    struct sp_xshard *xs = out->inst->xs;
    uint32_t row_bytes = out->schema->row_bytes;
    SP_ASSERT(b->count > 0);
    uint8_t *scratch = xs->scratch;
    uint32_t used = 8 + row_bytes;
    if (used > xs->scratch_bytes)
        return false;
    memcpy(scratch, sp_batch_slot(b, b->count - 1), used);
    uint8_t *row = scratch + 8;
    uint32_t in_batch = 0;
    for (uint32_t i = 0; i < out->str_count; i++) {
        struct sp_str *s = (struct sp_str *)(row + out->str_fields[i]);
        if (s->len > 0 && in_heap(b, s->ptr)) {
            if (used + s->len > xs->scratch_bytes)
                return false;
            memcpy(scratch + used, s->ptr, s->len);
            s->ptr = (const char *)scratch + used;
            used += s->len;
            in_batch += s->len;
        }
    }
    if (SP_BATCH_HEADER + b->slot + in_batch + need > b->end)
        return false;
    b->count--;
    out->pending = false;
    sp_out_flush(out);
    b->count = 1;
    memcpy(sp_batch_slot(b, 0), scratch, 8 + row_bytes);
    row = sp_batch_row(b, 0);
    for (uint32_t i = 0; i < out->str_count; i++) {
        struct sp_str *s = (struct sp_str *)(row + out->str_fields[i]);
        if (s->len > 0 && s->ptr >= (const char *)scratch &&
            s->ptr < (const char *)scratch + xs->scratch_bytes) {
            b->heap -= s->len;
            memcpy((uint8_t *)b + b->heap, s->ptr, s->len);
            s->ptr = (const char *)b + b->heap;
        }
    }
    return true;
}

void *sp_out_row(struct sp_out *out, int64_t ts)
{
    if (out->pending) {
        out_adopt(out);
        out->pending = false;
    }
    struct sp_batch *b = out->batch;
    if (rows_end(b) + b->slot > b->heap)
        sp_out_flush(out);
    uint8_t *slot = sp_batch_slot(b, b->count++);
    *(int64_t *)slot = ts;
    /* Rows are a few words: zero them inline rather than call memset. */
    uint64_t *w = (uint64_t *)(slot + 8);
    for (uint32_t k = 0, words = (b->slot - 8) / 8; k < words; k++)
        w[k] = 0;
    out->pending = true;
    return w;
}

#define OUT_SPILL_BYTES (64u * 1024u)

/*
 * Into the batch's heap when there is room; otherwise into the spill area,
 * and the row moves to a fresh batch once it is complete (out_adopt): the
 * row being written never moves under its writer.
 */
char *sp_out_str_alloc(struct sp_out *out, uint32_t len, struct sp_str *s)
{
    struct sp_batch *b = out->batch;
    static char empty[1];
    *s = sp_str_of("", 0);
    if (len == 0)
        return empty;
    if (rows_end(b) + len <= b->heap) {
        b->heap -= len;
        char *dst = (char *)b + b->heap;
        *s = sp_str_of(dst, len);
        return dst;
    }
    if (out->spill == NULL)
        out->spill = malloc(OUT_SPILL_BYTES);
    if (out->spill == NULL || out->spill_used + len > OUT_SPILL_BYTES ||
        SP_BATCH_HEADER + b->slot + out->spill_used + len > b->end) {
        sp_exec_fail(out->inst->xs, 0,
                     "%s: a row with more than %u bytes of strings does not fit a batch of %u "
                     "bytes (raise the batch size)",
                     out->inst->node->name, out->spill_used + len, b->end);
        return NULL;
    }
    char *dst = out->spill + out->spill_used;
    out->spill_used += len;
    *s = sp_str_of(dst, len);
    return dst;
}

struct sp_str sp_out_str(struct sp_out *out, const void *bytes, uint32_t len)
{
    struct sp_str s;
    char *dst = sp_out_str_alloc(out, len, &s);
    if (dst != NULL && len > 0)
        memcpy(dst, bytes, len);
    return s;
}

/* Copies the strings of the last (now complete) row that point outside its
 * batch into it, moving the row to a fresh batch when they do not fit. */
static void out_adopt(struct sp_out *out)
{
    if (out->str_count == 0)
        return;
    struct sp_batch *b = out->batch;
    uint8_t *row = sp_batch_row(b, b->count - 1);
    uint32_t need = 0;
    for (uint32_t i = 0; i < out->str_count; i++) {
        const struct sp_str *s = (const struct sp_str *)(row + out->str_fields[i]);
        if (s->len > 0 && !in_heap(b, s->ptr))
            need += s->len;
    }
    if (need > 0 && (uint64_t)rows_end(b) + need > b->heap) {
        if (!out_move_last(out, need)) {
            sp_exec_fail(out->inst->xs, 0,
                         "%s: a row with %u bytes of strings does not fit a batch of %u bytes "
                         "(raise the batch size)",
                         out->inst->node->name, need, b->end);
            b->count--; /* dropped with the failure */
            out->spill_used = 0;
            return;
        }
        row = sp_batch_row(b, b->count - 1);
    }
    for (uint32_t i = 0; need > 0 && i < out->str_count; i++) {
        struct sp_str *s = (struct sp_str *)(row + out->str_fields[i]);
        if (s->len == 0 || in_heap(b, s->ptr))
            continue;
        b->heap -= s->len;
        memcpy((uint8_t *)b + b->heap, s->ptr, s->len);
        s->ptr = (const char *)b + b->heap;
    }
    out->spill_used = 0;
}

void sp_out_emit(struct sp_out *out, const void *row, int64_t ts)
{
    void *dst = sp_out_row(out, ts);
    memcpy(dst, row, out->schema->row_bytes);
    out_adopt(out);
    out->pending = false;
}

static void out_init(struct sp_out *out, struct sp_inst *inst, const struct sp_schema *schema)
{
    out->inst = inst;
    out->schema = schema;
    out->str_count = 0;
    for (uint32_t i = 0; i < schema->field_count; i++) {
        if (schema->fields[i].type == SP_T_STR)
            out->str_fields[out->str_count++] = schema->fields[i].offset;
    }
}

/* ---- Default operator behaviour ---- */

static void inst_input_watermark(struct sp_inst *inst, unsigned port, int64_t wm, bool idle);
static void inst_input_end(struct sp_inst *inst, unsigned port);

void sp_inst_forward_watermark(struct sp_inst *inst, int64_t wm)
{
    sp_out_flush(&inst->out);
    for (unsigned i = 0; i < inst->down_count; i++)
        inst_input_watermark(inst->down[i], inst->down_port[i], wm, false);
}

static void forward_idle(struct sp_inst *inst)
{
    sp_out_flush(&inst->out);
    for (unsigned i = 0; i < inst->down_count; i++)
        inst_input_watermark(inst->down[i], inst->down_port[i], SP_WM_MIN, true);
}

void sp_inst_forward_end(struct sp_inst *inst)
{
    sp_out_flush(&inst->out);
    for (unsigned i = 0; i < inst->down_count; i++)
        inst_input_end(inst->down[i], inst->down_port[i]);
}

static void inst_recompute(struct sp_inst *inst)
{
    /* Ended inputs hold nothing back; idle ones neither, but when every
     * input still open is idle, so is this instance (no watermark: an idle
     * input may come back with data). */
    int64_t min = SP_WM_MAX;
    unsigned open = 0, active = 0;
    for (unsigned p = 0; p < inst->port_count; p++) {
        if (inst->port_end[p])
            continue;
        open++;
        if (inst->port_idle[p])
            continue;
        active++;
        if (inst->port_wm[p] < min)
            min = inst->port_wm[p];
    }
    if (open > 0 && active == 0) {
        if (!inst->idle) {
            inst->idle = true;
            inst->vt->idle(inst);
        }
        return;
    }
    bool was_idle = inst->idle;
    inst->idle = false;
    if (inst->deferred) {
        /* Still working on the last one: it will act on this one too. */
        if (min > inst->wm)
            inst->wm = min;
        return;
    }
    if (min > inst->wm) {
        inst->wm = min;
        inst->vt->watermark(inst, min);
    } else if (was_idle && inst->wm != SP_WM_MIN) {
        inst->vt->watermark(inst, inst->wm); /* announce it is back */
    }
    if (inst->node->kind == SP_NODE_SINK)
        atomic_store_explicit((_Atomic int64_t *)&inst->xs->sink_wm, inst->wm,
                              memory_order_relaxed);
}

static bool align_hold(struct sp_inst *inst, unsigned port, const struct sp_batch *in,
                       uint16_t flags, int64_t wm);

static void inst_input_watermark(struct sp_inst *inst, unsigned port, int64_t wm, bool idle)
{
    SP_ASSERT(port < inst->port_count);
    if (SP_UNLIKELY(inst->align_holding) && inst->align_port[port] &&
        align_hold(inst, port, NULL, idle ? SP_BATCH_IDLE : SP_BATCH_WM, wm))
        return;
    if (idle) {
        inst->port_idle[port] = true;
    } else {
        inst->port_idle[port] = false;
        if (wm > inst->port_wm[port])
            inst->port_wm[port] = wm;
    }
    inst_recompute(inst);
}

static void inst_input_end(struct sp_inst *inst, unsigned port)
{
    if (SP_UNLIKELY(inst->align_holding) && inst->align_port[port] &&
        align_hold(inst, port, NULL, SP_BATCH_END, SP_WM_MAX))
        return;
    if (inst->port_end[port])
        return;
    inst->port_end[port] = true;
    inst->port_wm[port] = SP_WM_MAX;
    inst->port_idle[port] = false;
    for (unsigned p = 0; p < inst->port_count; p++) {
        if (!inst->port_end[p]) {
            inst_recompute(inst);
            return;
        }
    }
    if (inst->wm < SP_WM_MAX) {
        inst->wm = SP_WM_MAX;
        if (!inst->deferred)
            inst->vt->watermark(inst, SP_WM_MAX);
    }
    if (inst->deferred) {
        inst->end_deferred = true; /* after the watermark is done */
        return;
    }
    inst->ended = true;
    inst->vt->end(inst);
}

static void push_map(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    sp_map_fn *fn = inst->node->u.udf.fn.map;
    void *ctx = inst->node->u.udf.ctx;
    struct sp_out *out = &inst->out;
    for (uint32_t i = 0; i < in->count; i++) {
        void *row = sp_out_row(out, sp_batch_ts(in, i));
        fn(ctx, sp_batch_row(in, i), row, out);
        out_adopt(out);
        out->pending = false;
    }
    sp_out_flush(out);
}

static void push_filter(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    sp_filter_fn *fn = inst->node->u.udf.fn.filter;
    void *ctx = inst->node->u.udf.ctx;
    for (uint32_t i = 0; i < in->count; i++) {
        const void *row = sp_batch_row(in, i);
        if (fn(ctx, row))
            sp_out_emit(&inst->out, row, sp_batch_ts(in, i));
    }
    sp_out_flush(&inst->out);
}

/* A copy of `in` (rows from `from` on matter) from the batches budget, its
 * strings pointing into the copy; NULL when the budget is spent. */
static struct sp_batch *batch_copy(struct sp_inst *inst, const struct sp_batch *in, uint32_t from)
{
    struct sp_xshard *xs = inst->xs;
    struct sp_batch *b = batch_alloc(xs, &xs->batches, 0);
    if (b == NULL)
        return NULL;
    memcpy(b, in, in->end);
    b->next = NULL;
    /* Strings that pointed into `in` point into the copy. */
    const struct sp_schema *schema = xs->exec->job->nodes[inst->node->inputs[0]]->schema;
    intptr_t delta = (intptr_t)b - (intptr_t)in;
    for (uint32_t i = from; i < b->count; i++) {
        uint8_t *row = sp_batch_row(b, i);
        for (uint32_t f = 0; f < schema->field_count; f++) {
            if (schema->fields[f].type != SP_T_STR)
                continue;
            struct sp_str *s = (struct sp_str *)(row + schema->fields[f].offset);
            if (s->len > 0 && s->ptr >= (const char *)in && s->ptr < (const char *)in + in->end)
                s->ptr += delta;
        }
    }
    return b;
}

bool sp_inst_backlog(struct sp_inst *inst, const struct sp_batch *in, uint32_t from)
{
    struct sp_xshard *xs = inst->xs;
    SP_ASSERT(from < in->count);
    struct sp_batch *b = batch_copy(inst, in, from);
    if (b == NULL) {
        sp_exec_fail(xs, 0, "%s: no batch memory left to hold back its input (raise --memory)",
                     inst->node->name);
        return false;
    }
    b->node = from; /* where its rows start */
    if (inst->backlog_tail != NULL) {
        inst->backlog_tail->next = b;
    } else {
        inst->backlog = b;
        inst->backlog_next = from;
    }
    inst->backlog_tail = b;
    sp_out_flush(&inst->out);
    sp_inst_defer(inst);
    return true;
}

bool sp_inst_backlog_run(struct sp_inst *inst,
                         uint32_t (*rows)(struct sp_inst *inst, const struct sp_batch *in,
                                          uint32_t from))
{
    while (inst->backlog != NULL) {
        struct sp_batch *b = inst->backlog;
        uint32_t stopped = rows(inst, b, inst->backlog_next);
        if (stopped < b->count) {
            inst->backlog_next = stopped;
            sp_out_flush(&inst->out);
            sp_inst_defer(inst);
            return false;
        }
        inst->backlog = b->next;
        if (inst->backlog == NULL)
            inst->backlog_tail = NULL;
        else
            inst->backlog_next = inst->backlog->node;
        sp_budget_release(&inst->xs->batches, b);
    }
    return true;
}

void sp_inst_backlog_free(struct sp_inst *inst)
{
    while (inst->backlog != NULL) {
        struct sp_batch *b = inst->backlog;
        inst->backlog = b->next;
        sp_budget_release(&inst->xs->batches, b);
    }
    inst->backlog_tail = NULL;
}

/* Rows of `in` from `from` on; returns the row it stopped before because
 * downstream filled up (in->count when all are done). */
static uint32_t flat_map_rows(struct sp_inst *inst, const struct sp_batch *in, uint32_t from)
{
    sp_flat_map_fn *fn = inst->node->u.udf.fn.flat_map;
    void *ctx = inst->node->u.udf.ctx;
    struct sp_out *out = &inst->out;
    for (uint32_t i = from; i < in->count; i++) {
        fn(ctx, sp_batch_row(in, i), sp_batch_ts(in, i), out);
        sp_out_finish(out);
        if (i + 1 < in->count && sp_inst_blocked(inst))
            return i + 1;
    }
    return in->count;
}

static void push_flat_map(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    uint32_t from = 0;
    if (inst->backlog == NULL) {
        from = flat_map_rows(inst, in, 0);
        sp_out_flush(&inst->out);
    }
    if (from < in->count)
        (void)sp_inst_backlog(inst, in, from);
}

static void flat_map_watermark(struct sp_inst *inst, int64_t wm)
{
    if (!sp_inst_backlog_run(inst, flat_map_rows))
        return; /* deferred again */
    sp_out_flush(&inst->out);
    sp_inst_forward_watermark(inst, wm);
}

static void flat_map_close(struct sp_inst *inst)
{
    sp_inst_backlog_free(inst);
}

static void push_through(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    if (SP_UNLIKELY(inst->align_holding) && inst->align_port[port] &&
        align_hold(inst, port, in, 0, 0))
        return;
    deliver(inst, in);
}

static void push_ignore(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)inst, (void)port, (void)in;
}

static const struct sp_op_vt map_vt = {.name = "map", .push = push_map};
static const struct sp_op_vt filter_vt = {.name = "filter", .push = push_filter};
static const struct sp_op_vt flat_map_vt = {.name = "flat_map",
                                            .push = push_flat_map,
                                            .watermark = flat_map_watermark,
                                            .close = flat_map_close};
static const struct sp_op_vt union_vt = {.name = "union", .push = push_through};
static const struct sp_op_vt late_vt = {.name = "late", .push = push_ignore};
static const struct sp_op_vt source_op_vt = {.name = "source", .push = push_ignore};

/* ---- Exchange (key_by) ---- */

struct xchg {
    struct sp_xchan *chan;  /* [shard_count]: sending side */
    uint32_t blocked;       /* channels out of credit: the block point */
    struct sp_batch *queue; /* receiving side: batches waiting for downstream */
    struct sp_batch *queue_tail;
    int64_t *in_wm; /* [shard_count] */
    bool *in_idle;
    bool *in_end;
    uint32_t ended;
    int64_t wm_sent;
    bool recv_idle;  /* every sender is idle */
    bool recv_ended; /* every sender ended */
    /* Barrier alignment on the receiving side: which senders' barriers of
     * checkpoint align_id came, and what each sent since (not processed,
     * not returned: its credits run out, and its sources stop). */
    bool *in_barrier;
    struct sp_batch **held;
    struct sp_batch **held_tail;
    uint32_t barriers;
    uint64_t align_id; /* the checkpoint being aligned, or the last aligned */
};

static void xchg_recv(struct sp_shard *shard, void *arg);
static void xchg_take(struct sp_shard *shard, struct sp_batch *b, bool top);

static void xchg_release(struct sp_shard *shard, void *arg)
{
    struct sp_batch *b = arg;
    struct sp_xshard *xs = b->exec->xs[shard->id];
    struct sp_inst *inst = xs->insts[b->node];
    struct xchg *x = inst->state;
    unsigned to = b->count; /* the receiver put its shard id here */
    sp_budget_release(&xs->exchange, b);
    struct sp_xchan *c = &x->chan[to];
    /* A pending batch takes the credit at once. */
    if (c->pending != NULL) {
        struct sp_batch *next = c->pending;
        c->pending = next->next;
        if (c->pending == NULL)
            c->pending_tail = NULL;
        next->next = NULL;
        int rc = sp_shard_send(xs->shard, to, xchg_recv, next);
        SP_ASSERT(rc == 0); /* ring capacity covers every credit (checked at start) */
        return;
    }
    if (c->credits++ == 0)
        block_dec(xs, &x->blocked);
}

static void xchg_send(struct sp_xshard *xs, struct sp_inst *inst, unsigned to)
{
    struct xchg *x = inst->state;
    struct sp_xchan *c = &x->chan[to];
    struct sp_batch *b = c->open;
    c->open = NULL;
    b->node = inst->node->id;
    if (c->credits == 0) {
        /* Over credit: park it; sources upstream are already stopping. */
        b->next = NULL;
        if (c->pending_tail)
            c->pending_tail->next = b;
        else
            c->pending = b;
        c->pending_tail = b;
        return;
    }
    if (--c->credits == 0)
        x->blocked++;
    if (to == xs->shard->id) {
        /* Our own share goes down our chain at once, in order with the
         * control that follows it; no ring hop. The operators above are
         * still in their records: nothing is unpinned. */
        xchg_take(xs->shard, b, false);
        return;
    }
    int rc = sp_shard_send(xs->shard, to, xchg_recv, b);
    SP_ASSERT(rc == 0);
}

static struct sp_batch *xchg_open(struct sp_xshard *xs, struct sp_inst *inst, unsigned to)
{
    struct xchg *x = inst->state;
    struct sp_xchan *c = &x->chan[to];
    if (c->open == NULL) {
        c->open = batch_alloc(xs, &xs->exchange, inst->node->schema->row_bytes);
        if (c->open == NULL)
            sp_exec_fail(xs, 0,
                         "key_by: the exchange budget is exhausted (%u batches in use); "
                         "raise --memory",
                         xs->exchange.used);
    }
    return c->open;
}

static void push_key_by(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct sp_xshard *xs = inst->xs;
    struct xchg *x = inst->state;
    unsigned n = xs->exec->shard_count;
    if (n == 1 && x->queue == NULL && !sp_inst_blocked(inst)) {
        /* One shard: every key is ours; the batch goes down as it is. */
        deliver(inst, in);
        return;
    }
    uint32_t groups = xs->exec->config.key_groups;
    const struct sp_keyspec *k = &inst->node->key;
    uint32_t row_bytes = inst->node->schema->row_bytes;
    for (uint32_t i = 0; i < in->count; i++) {
        const uint8_t *row = sp_batch_row(in, i);
        struct sp_str key;
        uint64_t hash = sp_key_of(k, row, &key);
        unsigned to = sp_key_group_owner(sp_key_group(hash, groups), groups, n);
        uint32_t str_bytes = 0;
        for (uint32_t f = 0; f < inst->out.str_count; f++)
            str_bytes += ((const struct sp_str *)(row + inst->out.str_fields[f]))->len;
        struct sp_batch *b = x->chan[to].open;
        if (SP_UNLIKELY(b == NULL || rows_end(b) + b->slot + str_bytes > b->heap)) {
            if (b != NULL && b->count > 0)
                xchg_send(xs, inst, to);
            b = xchg_open(xs, inst, to);
            if (b == NULL)
                return;
            if (SP_BATCH_HEADER + b->slot + str_bytes > b->end) {
                sp_exec_fail(xs, 0, "key_by: a row with %u bytes of strings does not fit a batch",
                             str_bytes);
                return;
            }
        }
        uint8_t *slot = sp_batch_slot(b, b->count++);
        memcpy(slot, sp_batch_slot(in, i), 8 + row_bytes);
        /* Strings travel with the row, in this batch. */
        for (uint32_t f = 0; f < inst->out.str_count; f++) {
            struct sp_str *s = (struct sp_str *)(slot + 8 + inst->out.str_fields[f]);
            if (s->len == 0)
                continue;
            b->heap -= s->len;
            memcpy((uint8_t *)b + b->heap, s->ptr, s->len);
            s->ptr = (const char *)b + b->heap;
        }
    }
    /* Latency: ship what this input batch produced. */
    for (unsigned to = 0; to < n; to++) {
        if (x->chan[to].open != NULL && x->chan[to].open->count > 0)
            xchg_send(xs, inst, to);
    }
}

/* Sends control (watermark, idle, end, a barrier: `wm` is the checkpoint
 * id then) to every shard, after the rows already batched for it. */
static void xchg_control(struct sp_inst *inst, uint16_t flags, int64_t wm)
{
    struct sp_xshard *xs = inst->xs;
    for (unsigned to = 0; to < xs->exec->shard_count; to++) {
        struct sp_batch *b = xchg_open(xs, inst, to);
        if (b == NULL)
            return;
        b->flags |= flags;
        if (flags & SP_BATCH_WM)
            b->watermark = wm;
        if (flags & SP_BATCH_BARRIER)
            b->ckpt = (uint64_t)wm;
        xchg_send(xs, inst, to);
    }
}

static void xchg_watermark(struct sp_inst *inst, int64_t wm)
{
    xchg_control(inst, SP_BATCH_WM, wm);
}

static void xchg_idle(struct sp_inst *inst)
{
    xchg_control(inst, SP_BATCH_IDLE, 0);
}

static void xchg_end(struct sp_inst *inst)
{
    xchg_control(inst, SP_BATCH_END | SP_BATCH_WM, SP_WM_MAX);
}

static void xchg_process(struct sp_xshard *xs, struct sp_inst *inst, struct sp_batch *b);
static void xchg_drain(struct sp_xshard *xs, struct sp_inst *inst);
static void xchg_align_try(struct sp_xshard *xs, struct sp_inst *inst);
static void barrier_forward(struct sp_inst *inst, uint64_t id);

/* Ends an alignment without passing its barrier on: what was held goes
 * back to the front of the queue, each sender's in order (it came before
 * anything queued from that sender). */
static void xchg_unalign(struct xchg *x, unsigned n)
{
    for (unsigned s = n; s-- > 0;) {
        x->in_barrier[s] = false;
        if (x->held[s] == NULL)
            continue;
        x->held_tail[s]->next = x->queue;
        if (x->queue == NULL)
            x->queue_tail = x->held_tail[s];
        x->queue = x->held[s];
        x->held[s] = x->held_tail[s] = NULL;
    }
    x->barriers = 0;
}

/* Sender `from`'s barrier of checkpoint `id` came; once every sender's has,
 * the barrier goes down this shard's chain and what was held is processed. */
static void xchg_barrier(struct sp_xshard *xs, struct sp_inst *inst, unsigned from, uint64_t id)
{
    struct xchg *x = inst->state;
    if (id < x->align_id || (id == x->align_id && x->barriers == 0))
        return; /* a checkpoint given up, or one aligned already: its sender is late */
    if (id > x->align_id && x->barriers > 0) {
        /* A later checkpoint while one is aligning: the earlier one was
         * given up (a sender never sent it). Its alignment ends; what was
         * held is processed again in order, and counts towards this one. */
        xchg_unalign(x, xs->exec->shard_count);
        x->align_id = id;
        x->in_barrier[from] = true;
        x->barriers = 1;
        xchg_align_try(xs, inst);
        xchg_drain(xs, inst);
        return;
    }
    x->align_id = id;
    if (!x->in_barrier[from]) {
        x->in_barrier[from] = true;
        x->barriers++;
    }
    xchg_align_try(xs, inst);
}

/* Every sender's barrier came, and the checkpoint's trigger (the verdict
 * on the one before precedes it): the barrier goes down this shard's
 * chain, then what was held. */
static void xchg_align_try(struct sp_xshard *xs, struct sp_inst *inst)
{
    struct xchg *x = inst->state;
    unsigned n = xs->exec->shard_count;
    uint64_t id = x->align_id;
    /* Not while an operator below holds rows back (a backlog, a watermark
     * half done): those rows come before the barrier. The resume task
     * tries again. */
    if (x->barriers < n || !ck_triggered(xs, id) || (inst->chain & xs->deferred) != 0)
        return;
    ck_inst_barrier(inst, id);
    barrier_forward(inst, id);
    /* What was held goes first, through the queue (downstream may be
     * blocked). */
    xchg_unalign(x, n);
    xchg_drain(xs, inst);
}

/* Receiving side: the batch's rows go down this shard's chain. */
static void xchg_process(struct sp_xshard *xs, struct sp_inst *inst, struct sp_batch *b)
{
    struct xchg *x = inst->state;
    unsigned from = b->from;
    if (x->in_barrier[from]) {
        /* Its sender is past a barrier the others have not sent yet. */
        b->next = NULL;
        if (x->held_tail[from])
            x->held_tail[from]->next = b;
        else
            x->held[from] = b;
        x->held_tail[from] = b;
        return;
    }
    if (b->count > 0)
        deliver(inst, b);
    uint16_t flags = b->flags;
    int64_t wm = b->watermark;
    uint64_t ckpt = b->ckpt;
    b->count = xs->shard->id;
    int rc = sp_shard_send(xs->shard, from, xchg_release, b);
    SP_ASSERT(rc == 0);

    if (flags & SP_BATCH_BARRIER) {
        xchg_barrier(xs, inst, from, ckpt);
        return;
    }

    if (flags & SP_BATCH_END) {
        if (!x->in_end[from]) {
            x->in_end[from] = true;
            x->in_wm[from] = SP_WM_MAX;
            x->ended++;
        }
    } else if (flags & SP_BATCH_IDLE) {
        x->in_idle[from] = true;
    } else if (flags & SP_BATCH_WM) {
        x->in_idle[from] = false;
        if (wm > x->in_wm[from])
            x->in_wm[from] = wm;
    } else {
        return;
    }
    if (x->ended == xs->exec->shard_count) {
        if (!x->recv_ended) {
            x->recv_ended = true;
            if (x->wm_sent < SP_WM_MAX) {
                x->wm_sent = SP_WM_MAX;
                sp_inst_forward_watermark(inst, SP_WM_MAX);
            }
            sp_inst_forward_end(inst);
        }
        return;
    }
    int64_t min = SP_WM_MAX;
    unsigned open = 0, active = 0;
    for (unsigned s = 0; s < xs->exec->shard_count; s++) {
        if (x->in_end[s])
            continue;
        open++;
        if (x->in_idle[s])
            continue;
        active++;
        if (x->in_wm[s] < min)
            min = x->in_wm[s];
    }
    if (open > 0 && active == 0) {
        if (!x->recv_idle) {
            x->recv_idle = true;
            forward_idle(inst);
        }
    } else {
        bool was_idle = x->recv_idle;
        x->recv_idle = false;
        if (was_idle && min <= x->wm_sent && x->wm_sent != SP_WM_MIN) {
            sp_inst_forward_watermark(inst, x->wm_sent); /* back from idle */
        } else if (min > x->wm_sent) {
            x->wm_sent = min;
            sp_inst_forward_watermark(inst, min);
        }
    }
}

static void xchg_drain(struct sp_xshard *xs, struct sp_inst *inst)
{
    struct xchg *x = inst->state;
    while (x->queue != NULL && !sp_inst_blocked(inst) && (inst->chain & xs->deferred) == 0 &&
           !xs->exec->failed) {
        struct sp_batch *b = x->queue;
        x->queue = b->next;
        if (x->queue == NULL)
            x->queue_tail = NULL;
        b->next = NULL;
        xchg_process(xs, inst, b);
    }
}

/* A batch from another shard, off the ring: the top of this shard's work. */
static void xchg_recv(struct sp_shard *shard, void *arg)
{
    xchg_take(shard, arg, true);
}

/* A batch for this exchange receiver: processed now, or queued. `top`: it
 * came off the ring, so no operator of this shard is in a record. */
static void xchg_take(struct sp_shard *shard, struct sp_batch *b, bool top)
{
    struct sp_xshard *xs = b->exec->xs[shard->id];
    struct sp_inst *inst = xs->insts[b->node];
    struct xchg *x = inst->state;
    if (sp_shard_stopping(shard) || atomic_load_explicit(&xs->exec->failed, memory_order_relaxed)) {
        /* Stopping: hand it straight back. */
        b->count = shard->id;
        int rc = sp_shard_send(shard, b->from, xchg_release, b);
        SP_ASSERT(rc == 0);
        return;
    }
    if (x->queue != NULL || sp_inst_blocked(inst) || (inst->chain & xs->deferred) != 0) {
        b->next = NULL;
        if (x->queue_tail)
            x->queue_tail->next = b;
        else
            x->queue = b;
        x->queue_tail = b;
        return;
    }
    if (top)
        xs_unpin(xs);
    xchg_process(xs, inst, b);
}

static int xchg_open_inst(struct sp_inst *inst)
{
    unsigned n = inst->xs->exec->shard_count;
    struct xchg *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -ENOMEM;
    x->chan = calloc(n, sizeof(*x->chan));
    x->in_wm = calloc(n, sizeof(*x->in_wm));
    x->in_idle = calloc(n, sizeof(*x->in_idle));
    x->in_end = calloc(n, sizeof(*x->in_end));
    x->in_barrier = calloc(n, sizeof(*x->in_barrier));
    x->held = calloc(n, sizeof(*x->held));
    x->held_tail = calloc(n, sizeof(*x->held_tail));
    inst->state = x; /* close() frees what was allocated */
    if (!x->chan || !x->in_wm || !x->in_idle || !x->in_end || !x->in_barrier || !x->held ||
        !x->held_tail)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        x->chan[i].credits = inst->xs->exec->config.credits;
        x->in_wm[i] = SP_WM_MIN;
    }
    x->wm_sent = SP_WM_MIN;
    inst->state = x;
    return 0;
}

static void xchg_close(struct sp_inst *inst)
{
    struct xchg *x = inst->state;
    if (x == NULL)
        return;
    struct sp_xshard *xs = inst->xs;
    for (unsigned i = 0; x->chan && i < xs->exec->shard_count; i++) {
        struct sp_xchan *c = &x->chan[i];
        if (c->open != NULL)
            sp_budget_release(&xs->exchange, c->open);
        while (c->pending != NULL) {
            struct sp_batch *b = c->pending;
            c->pending = b->next;
            sp_budget_release(&xs->exchange, b);
        }
    }
    free(x->chan);
    free(x->in_wm);
    free(x->in_idle);
    free(x->in_end);
    free(x->in_barrier);
    free(x->held);
    free(x->held_tail);
    free(x);
    inst->state = NULL;
}

static const struct sp_op_vt key_by_vt = {
    .name = "key_by",
    .open = xchg_open_inst,
    .push = push_key_by,
    .watermark = xchg_watermark,
    .idle = xchg_idle,
    .end = xchg_end,
    .close = xchg_close,
};

/* ---- Checkpoint barriers ----
 *
 * A barrier splits every stream into what belongs to a checkpoint and what
 * follows it. A shard's sources put it out all in one step (so an instance
 * fed by several of them gets it on each input with nothing in between),
 * once nothing downstream of them is in the middle of a watermark or holds
 * a backlog: the barrier never overtakes rows. It travels along a chain as
 * a call and across shards as a flagged exchange batch, after the rows
 * batched before it. An instance with two inputs passes it on only once it
 * came on both (alignment); what an input sends after its barrier is held
 * until then: by an exchange receiver as the batches themselves (not
 * returned, so the sender runs out of credit and its sources stop), by a
 * union as copies. Where the barrier passes an instance, ck_inst_barrier()
 * takes that instance's synchronous snapshot step.
 */

static void inst_input_barrier(struct sp_inst *inst, unsigned port, uint64_t id);

/* Passes the barrier on from `inst`, after the rows it has batched. */
static void barrier_forward(struct sp_inst *inst, uint64_t id)
{
    sp_out_flush(&inst->out);
    for (unsigned i = 0; i < inst->down_count; i++)
        inst_input_barrier(inst->down[i], inst->down_port[i], id);
}

/* Processes, in order, what a two-input instance held while aligning. */
static void align_release(struct sp_inst *inst)
{
    inst->align_holding = false;
    for (unsigned p = 0; p < 2; p++) {
        struct sp_batch *b = inst->align_held[p];
        inst->align_held[p] = inst->align_held_tail[p] = NULL;
        while (b != NULL) {
            struct sp_batch *next = b->next;
            b->next = NULL;
            if (!inst->xs->exec->failed) {
                if (b->count > 0)
                    inst->vt->push(inst, p, b);
                if (b->flags & SP_BATCH_END)
                    inst_input_end(inst, p);
                else if (b->flags & SP_BATCH_IDLE)
                    inst_input_watermark(inst, p, SP_WM_MIN, true);
                else if (b->flags & SP_BATCH_WM)
                    inst_input_watermark(inst, p, b->watermark, false);
            }
            sp_budget_release(&inst->xs->batches, b);
            b = next;
        }
    }
    inst->align_held_bytes = 0;
}

/*
 * Input on `port` of an instance aligning a barrier, past that port's
 * barrier: held (a copy of `in`, or the control in `flags`/`wm`). False
 * when the batch budget cannot hold it: the checkpoint is given up here
 * (it fails) and the input goes through as usual, after what was held.
 */
static bool align_hold(struct sp_inst *inst, unsigned port, const struct sp_batch *in,
                       uint16_t flags, int64_t wm)
{
    struct sp_xshard *xs = inst->xs;
    if (in != NULL && in->count == 0)
        return true;
    struct sp_batch *b = in != NULL ? batch_copy(inst, in, 0) : batch_alloc(xs, &xs->batches, 0);
    if (b == NULL) {
        sp_warn("%s: no batch memory left to align checkpoint %llu's barrier: it fails",
                inst->node->name, (unsigned long long)inst->align_id);
        ck_align_failed(xs, inst->align_id);
        align_release(inst);
        return false;
    }
    if (in == NULL) {
        b->flags = flags;
        b->watermark = wm;
    }
    b->next = NULL;
    if (inst->align_held_tail[port])
        inst->align_held_tail[port]->next = b;
    else
        inst->align_held[port] = b;
    inst->align_held_tail[port] = b;
    inst->align_held_bytes += xs->exec->batch_bytes;
    return true;
}

static void inst_input_barrier(struct sp_inst *inst, unsigned port, uint64_t id)
{
    if (inst->node->kind == SP_NODE_KEY_BY) {
        /* The sending side: to every shard, after the rows batched. */
        xchg_control(inst, SP_BATCH_BARRIER, (int64_t)id);
        return;
    }
    if (inst->port_count > 1) {
        if (id < inst->align_id ||
            (id == inst->align_id && !inst->align_port[0] && !inst->align_port[1]))
            return; /* a checkpoint given up, or aligned already: a late input */
        if (inst->align_id != id) {
            /* A new checkpoint (an earlier one that never aligned here was
             * given up upstream: whatever was held goes through first). */
            align_release(inst);
            inst->align_id = id;
            inst->align_port[0] = inst->align_port[1] = false;
            inst->align_holding = true;
        }
        inst->align_port[port] = true;
        for (unsigned p = 0; p < inst->port_count; p++) {
            if (!inst->align_port[p])
                return;
        }
        inst->align_port[0] = inst->align_port[1] = false;
        ck_inst_barrier(inst, id);
        barrier_forward(inst, id);
        align_release(inst);
        return;
    }
    ck_inst_barrier(inst, id);
    barrier_forward(inst, id);
}

/* Puts the pending barrier out of every source of the shard, unless
 * something downstream of one is busy with a watermark or a backlog (the
 * resume task calls again once that is done). */
static void barrier_try_inject(struct sp_xshard *xs)
{
    uint64_t id = xs->inject_id;
    if (id == 0 || xs->exec->failed)
        return;
    struct sp_job *job = xs->exec->job;
    for (uint32_t i = 0; i < job->node_count; i++) {
        const struct sp_src *src = xs->srcs[i];
        if (src != NULL && (src->inst->chain & xs->deferred) != 0)
            return;
    }
    xs->inject_id = 0;
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_src *src = xs->srcs[i];
        if (src == NULL)
            continue;
        sp_out_flush(&src->inst->out);
        ck_src_barrier(src, id);
        ck_inst_barrier(src->inst, id);
        barrier_forward(src->inst, id);
    }
}

void exec_barrier_inject(struct sp_xshard *xs, uint64_t id)
{
    xs->inject_id = id;
    barrier_try_inject(xs);
}

void exec_barrier_abandon(struct sp_xshard *xs, uint64_t id)
{
    struct sp_job *job = xs->exec->job;
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst == NULL)
            continue;
        if (job->nodes[i]->kind == SP_NODE_KEY_BY && inst->state != NULL) {
            struct xchg *x = inst->state;
            if (x->align_id == id && x->barriers > 0) {
                xchg_unalign(x, xs->exec->shard_count);
                xs_resume(xs); /* drains the queue from a task */
            }
        } else if (inst->port_count > 1 && inst->align_id == id) {
            inst->align_port[0] = inst->align_port[1] = false;
            align_release(inst);
        }
    }
}

void exec_barrier_aligned(struct sp_xshard *xs)
{
    struct sp_job *job = xs->exec->job;
    for (uint32_t i = 0; i < job->node_count; i++) {
        if (job->nodes[i]->kind == SP_NODE_KEY_BY && xs->insts[i]->state != NULL)
            xchg_align_try(xs, xs->insts[i]);
    }
}

/* ---- Sources ---- */

int sp_src_partitions(struct sp_src *src, uint32_t count, const uint32_t *numbers)
{
    free(src->partitions);
    free(src->parts);
    src->partitions = calloc(count ? count : 1, sizeof(*src->partitions));
    src->parts = calloc(count ? count : 1, sizeof(*src->parts));
    if (src->partitions == NULL || src->parts == NULL)
        return -ENOMEM;
    src->partition_count = count;
    uint64_t now = sp_now_ns();
    for (uint32_t i = 0; i < count; i++) {
        src->partitions[i] = numbers[i];
        src->parts[i] = (struct sp_src_part){
            .max_ts = SP_WM_MIN, .wm = SP_WM_MIN, .last_ns = now, .idle = false};
    }
    return 0;
}

struct sp_out *sp_src_out(struct sp_src *src)
{
    return &src->inst->out;
}

void *sp_src_row(struct sp_src *src)
{
    return sp_out_row(&src->inst->out, 0);
}

void sp_src_commit(struct sp_src *src, uint32_t part, int64_t source_ts)
{
    struct sp_out *out = &src->inst->out;
    struct sp_batch *b = out->batch;
    uint8_t *slot = sp_batch_slot(b, b->count - 1);
    const struct sp_watermarks *wm = &src->node->u.source.wm;
    int64_t ts = source_ts;
    if (src->node->u.source.ts_field >= 0)
        memcpy(&ts, slot + 8 + src->node->schema->fields[src->node->u.source.ts_field].offset,
               sizeof(ts));
    else if (wm->ts_fn != NULL)
        ts = wm->ts_fn(wm->ts_ctx, slot + 8);
    *(int64_t *)slot = ts;
    out_adopt(out);
    out->pending = false;
    SP_DEBUG_ASSERT(part < src->partition_count);
    struct sp_src_part *p = &src->parts[part];
    if (ts > p->max_ts)
        p->max_ts = ts;
    src->rows++;
    p->idle = false;
    p->last_ns = 0; /* "active this poll": stamped after the poll */
}

void sp_src_partition_end(struct sp_src *src, uint32_t part)
{
    src->parts[part].ended = true;
}

static void src_task(struct sp_task *task, struct sp_shard *shard);

static void src_schedule(struct sp_src *src)
{
    if (src->scheduled || src->ended)
        return;
    src->scheduled = true;
    sp_shard_post(src->xs->shard, &src->task, src_task);
}

void sp_src_wake(struct sp_src *src)
{
    src->waiting = false;
    src_schedule(src);
}

/* Appends the shard's sources' watermark to its clock when it rose. */
static void wm_clock_note(struct sp_xshard *xs, uint64_t now_ns)
{
    struct sp_wm_clock *clock = xs->wm_clock;
    if (clock == NULL)
        return;
    int64_t min = SP_WM_MAX;
    bool any = false;
    for (uint32_t i = 0; i < xs->exec->job->node_count; i++) {
        const struct sp_src *src = xs->srcs[i];
        if (src == NULL)
            continue;
        if (src->partition_count == 0 || src->ended) {
            any = true; /* holds nothing back */
            continue;
        }
        if (src->inst->idle)
            continue;
        any = true;
        if (src->inst->wm < min)
            min = src->inst->wm;
    }
    uint64_t head = atomic_load_explicit(&clock->head, memory_order_relaxed);
    if (!any || (head > 0 && atomic_load_explicit(&clock->e[(head - 1) % SP_WM_CLOCK_ENTRIES].wm,
                                                  memory_order_relaxed) >= min))
        return;
    uint32_t at = (uint32_t)(head % SP_WM_CLOCK_ENTRIES);
    atomic_store_explicit(&clock->e[at].wm, min, memory_order_relaxed);
    atomic_store_explicit(&clock->e[at].ns, now_ns, memory_order_relaxed);
    atomic_store_explicit(&clock->head, head + 1, memory_order_release);
}

/* The first time `clock` shows a watermark >= ts: 1 found, 0 not yet, -1 forgotten. */
static int wm_clock_find(struct sp_wm_clock *clock, int64_t ts, uint64_t *ns)
{
    uint64_t head = atomic_load_explicit(&clock->head, memory_order_acquire);
    if (head == 0 || atomic_load_explicit(&clock->e[(head - 1) % SP_WM_CLOCK_ENTRIES].wm,
                                          memory_order_relaxed) < ts)
        return 0;
    /* The oldest entries may be overwritten while this reads: keep clear of them. */
    uint64_t margin = SP_WM_CLOCK_ENTRIES / 8;
    uint64_t lo = head > SP_WM_CLOCK_ENTRIES - margin ? head - (SP_WM_CLOCK_ENTRIES - margin) : 0;
    uint64_t first = lo, hi = head - 1; /* the answer lies in [first, hi] */
    while (first < hi) {
        uint64_t mid = first + (hi - first) / 2;
        if (atomic_load_explicit(&clock->e[mid % SP_WM_CLOCK_ENTRIES].wm, memory_order_relaxed) >=
            ts)
            hi = mid;
        else
            first = mid + 1;
    }
    if (first == lo && lo > 0)
        return -1; /* it may have been reached before the oldest entry kept */
    *ns = atomic_load_explicit(&clock->e[first % SP_WM_CLOCK_ENTRIES].ns, memory_order_relaxed);
    return 1;
}

bool sp_job_watermark_time(struct sp_job *job, int64_t ts, uint64_t *ns)
{
    struct sp_exec *exec = atomic_load(&job->running);
    if (exec == NULL)
        return false;
    uint64_t latest = 0;
    for (unsigned s = 0; s < exec->shard_count; s++) {
        struct sp_xshard *xs = exec->xs[s];
        if (xs == NULL || xs->wm_clock == NULL)
            return false;
        uint64_t at;
        if (wm_clock_find(xs->wm_clock, ts, &at) != 1)
            return false;
        if (at > latest)
            latest = at;
    }
    *ns = latest;
    return true;
}

/* The source instance's watermark from its partitions'; forwards changes
 * (noted on the clock first: what they set off may ask for it). */
static void src_watermark(struct sp_src *src, uint64_t now_ns)
{
    const struct sp_watermarks *wm = &src->node->u.source.wm;
    uint64_t idle_ns = (uint64_t)wm->idle_timeout_ms * SP_NSEC_PER_MSEC;
    int64_t min = SP_WM_MAX;
    unsigned open = 0, active = 0;
    for (uint32_t i = 0; i < src->partition_count; i++) {
        struct sp_src_part *p = &src->parts[i];
        if (p->last_ns == 0)
            p->last_ns = now_ns;
        if (p->ended)
            continue;
        open++;
        if (p->max_ts != SP_WM_MIN) {
            int64_t w = p->max_ts - wm->out_of_orderness_ms - 1;
            if (w > p->wm)
                p->wm = w;
        }
        if (idle_ns > 0 && now_ns - p->last_ns >= idle_ns)
            p->idle = true;
        if (p->idle)
            continue;
        active++;
        if (p->wm < min)
            min = p->wm;
    }
    struct sp_inst *inst = src->inst;
    if (open > 0 && active == 0) {
        if (!inst->idle) {
            inst->idle = true;
            wm_clock_note(src->xs, now_ns);
            forward_idle(inst);
        }
        return;
    }
    if (src->partition_count == 0) {
        /* No partitions on this shard: idle, so it holds nothing back. */
        if (!inst->idle) {
            inst->idle = true;
            wm_clock_note(src->xs, now_ns);
            forward_idle(inst);
        }
        return;
    }
    bool was_idle = inst->idle;
    inst->idle = false;
    if (min > inst->wm || (was_idle && min != SP_WM_MAX)) {
        if (min > inst->wm)
            inst->wm = min;
        wm_clock_note(src->xs, now_ns);
        sp_inst_forward_watermark(inst, inst->wm);
    }
}

static void src_finish(struct sp_src *src)
{
    src->ended = true;
    struct sp_inst *inst = src->inst;
    wm_clock_note(src->xs, sp_now_ns());
    if (inst->wm < SP_WM_MAX) {
        inst->wm = SP_WM_MAX;
        sp_inst_forward_watermark(inst, SP_WM_MAX);
    }
    inst->ended = true;
    sp_inst_forward_end(inst);
}

static void src_task(struct sp_task *task, struct sp_shard *shard)
{
    struct sp_src *src = SP_CONTAINER_OF(task, struct sp_src, task);
    struct sp_xshard *xs = src->xs;
    src->scheduled = false;
    xs_unpin(xs);
    if (src->ended || sp_shard_stopping(shard) || atomic_load(&xs->exec->failed))
        return;
    if (sp_inst_blocked(src->inst) || (src->inst->chain & xs->deferred) != 0) {
        if (src->blocked_since_ns == 0)
            src->blocked_since_ns = sp_now_ns();
        return; /* xs_resume() posts it again */
    }
    uint64_t now = sp_now_ns();
    if (src->blocked_since_ns != 0) {
        stat_add(&xs->backpressure_ns, now - src->blocked_since_ns);
        src->blocked_since_ns = 0;
    }
    src->rows = 0;
    int rc = src->node->u.source.vt->poll(src, SRC_ROWS_PER_POLL);
    sp_out_flush(&src->inst->out);
    stat_add(&xs->records_in, src->rows);
    for (uint32_t i = 0; i < src->partition_count; i++) {
        if (src->parts[i].max_ts > xs->max_ts)
            atomic_store_explicit((_Atomic int64_t *)&xs->max_ts, src->parts[i].max_ts,
                                  memory_order_relaxed);
    }
    if (rc < 0) {
        sp_exec_fail(xs, rc, "source %s", src->node->name);
        return;
    }
    src_watermark(src, sp_now_ns());
    if (rc == SP_POLL_END) {
        src_finish(src);
        return;
    }
    if (rc == SP_POLL_MORE)
        src_schedule(src);
    else
        src->waiting = true;
}

/* ---- Sinks ---- */

void sp_sink_count(struct sp_inst *inst, uint64_t rows)
{
    stat_add(&inst->xs->records_out, rows);
}

void sp_sink_block(struct sp_inst *inst)
{
    inst->sink_blocked = 1;
}

void sp_sink_unblock(struct sp_inst *inst)
{
    if (inst->sink_blocked != 0)
        block_dec(inst->xs, &inst->sink_blocked);
}

void sp_exec_count_late(struct sp_xshard *xs, uint64_t rows)
{
    stat_add(&xs->records_late, rows);
}

static void xs_send_done(struct sp_xshard *xs);

void sp_sink_done(struct sp_inst *inst)
{
    struct sp_xshard *xs = inst->xs;
    SP_ASSERT(xs->sinks_open > 0);
    if (--xs->sinks_open > 0)
        return;
    if (xs->ckpt != NULL)
        ck_shard_final(xs); /* done once a checkpoint after the end completed */
    else
        xs_send_done(xs);
}

void exec_shard_done(struct sp_xshard *xs)
{
    xs_send_done(xs);
}

/* ---- Shard lifecycle ---- */

static void on_shard_done(struct sp_shard *shard, void *arg)
{
    struct sp_exec *exec = arg;
    SP_ASSERT(shard->id == 0);
    if (++exec->done_shards == exec->shard_count) {
        atomic_store(&exec->end_ns, sp_now_ns());
        atomic_store(&exec->completed, true);
        if (exec->config.on_complete != NULL)
            exec->config.on_complete(exec->config.hook_ctx);
        if (!exec->config.linger)
            sp_runtime_stop(&exec->rt);
    }
}

static void xs_send_done(struct sp_xshard *xs)
{
    if (xs->done_sent)
        return;
    if (xs_spill_failed(xs))
        return; /* not complete */
    xs->done_sent = true;
    int rc = sp_shard_send(xs->shard, 0, on_shard_done, xs->exec);
    SP_ASSERT(rc == 0);
}

static void xs_resume_task(struct sp_task *task, struct sp_shard *shard)
{
    struct sp_xshard *xs = SP_CONTAINER_OF(task, struct sp_xshard, resume);
    (void)shard;
    xs->resume_posted = false;
    xs_unpin(xs);
    struct sp_job *job = xs->exec->job;
    /* Unfinished watermarks first, upstream to downstream: nothing new may
     * reach an operator in the middle of one. */
    for (uint32_t i = 0; i < job->node_count && xs->deferred != 0; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst == NULL || !inst->deferred || sp_inst_blocked(inst))
            continue;
        inst->deferred = false;
        xs->deferred &= ~(1ull << i);
        inst->vt->watermark(inst, inst->wm);
        if (!inst->deferred && inst->end_deferred) {
            inst->end_deferred = false;
            inst->ended = true;
            inst->vt->end(inst);
        }
    }
    barrier_try_inject(xs);
    if (xs->ckpt != NULL)
        exec_barrier_aligned(xs); /* alignments that waited for the chain below */
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst == NULL)
            continue;
        if (job->nodes[i]->kind == SP_NODE_KEY_BY && inst->state != NULL) {
            xs_unpin(xs);
            xchg_drain(xs, inst);
        }
        if (xs->srcs[i] != NULL && !xs->srcs[i]->waiting)
            src_schedule(xs->srcs[i]);
    }
}

/* Resumes what a block point held back, from the run queue: a sink may
 * unblock from inside a push, and the chain must not be re-entered. */
static void xs_resume(struct sp_xshard *xs)
{
    if (xs->resume_posted)
        return;
    xs->resume_posted = true;
    sp_shard_post(xs->shard, &xs->resume, xs_resume_task);
}

/* The instances downstream of `from` up to the next exchange or sink: new
 * input for `inst` reaches them. */
static uint64_t collect_chain(struct sp_inst *from)
{
    uint64_t mask = 0;
    for (unsigned i = 0; i < from->down_count; i++) {
        struct sp_inst *d = from->down[i];
        mask |= 1ull << d->node->id;
        if (d->node->kind != SP_NODE_KEY_BY && d->node->kind != SP_NODE_SINK)
            mask |= collect_chain(d);
    }
    return mask;
}

/* Collects the block points reachable from `inst` without crossing one. */
static bool collect_blockers(struct sp_xshard *xs, struct sp_inst *inst, struct sp_inst *from)
{
    for (unsigned i = 0; i < from->down_count; i++) {
        struct sp_inst *d = from->down[i];
        uint32_t *counter = NULL;
        if (d->node->kind == SP_NODE_KEY_BY)
            counter = &((struct xchg *)d->state)->blocked;
        else if (d->node->kind == SP_NODE_SINK)
            counter = &d->sink_blocked;
        if (counter != NULL) {
            bool have = false;
            for (unsigned j = 0; j < inst->blocker_count; j++)
                have |= inst->blockers[j] == counter;
            if (!have) {
                if (inst->blocker_count == SP_ARRAY_LEN(inst->blockers))
                    return false;
                inst->blockers[inst->blocker_count++] = counter;
            }
        } else if (!collect_blockers(xs, inst, d)) {
            return false;
        }
    }
    return true;
}

static const struct sp_op_vt *vt_of(const struct sp_node *n)
{
    switch (n->kind) {
    case SP_NODE_SOURCE:
        return &source_op_vt;
    case SP_NODE_MAP:
        return &map_vt;
    case SP_NODE_FILTER:
        return &filter_vt;
    case SP_NODE_FLAT_MAP:
        return &flat_map_vt;
    case SP_NODE_UNION:
        return &union_vt;
    case SP_NODE_KEY_BY:
        return &key_by_vt;
    case SP_NODE_LATE:
        return &late_vt;
    default:
        return n->vt;
    }
}

static void default_watermark(struct sp_inst *inst, int64_t wm)
{
    sp_inst_forward_watermark(inst, wm);
}

static void default_end(struct sp_inst *inst)
{
    sp_inst_forward_end(inst);
}

/* Whether node `id`'s input on this shard comes from any source partition
 * (an exchange upstream counts as one: other shards feed it). */
static bool has_partitions(struct sp_xshard *xs, uint32_t id)
{
    const struct sp_node *n = xs->exec->job->nodes[id];
    for (uint32_t p = 0; p < n->input_count; p++) {
        const struct sp_node *in = xs->exec->job->nodes[n->inputs[p]];
        if (in->kind == SP_NODE_KEY_BY)
            return true;
        if (in->kind == SP_NODE_SOURCE) {
            if (xs->srcs[in->id] != NULL && xs->srcs[in->id]->partition_count > 0)
                return true;
        } else if (has_partitions(xs, in->id)) {
            return true;
        }
    }
    return false;
}

static int xs_open(struct sp_xshard *xs)
{
    struct sp_exec *exec = xs->exec;
    struct sp_job *job = exec->job;
    struct sp_shard *shard = xs->shard;
    uint32_t segs = shard->pool.segment_count;
    /* Budgets: batches and exchange a quarter each at most, state the rest. */
    sp_budget_init(&xs->batches, &shard->pool, "job.batches", segs / 4 + 1);
    sp_budget_init(&xs->exchange, &shard->pool, "job.exchange", segs / 4 + 1);
    sp_budget_init(&xs->state, &shard->pool, "job.state", segs);
    if (exec->config.spill_dir != NULL) {
        /* Spilling makes room for state only: batches keep an eighth. */
        sp_budget_set_limit(&xs->state, segs - segs / 8);
        struct sp_spill_config sc = {
            .dir = exec->config.spill_dir,
            .max_bytes = exec->config.spill_max_bytes,
        };
        int rc = sp_spill_init(&xs->spill, &xs->state, &sc);
        if (rc < 0)
            return rc;
        xs->spill_on = true;
    }
    xs->scratch_bytes = exec->batch_bytes;
    xs->scratch = malloc(xs->scratch_bytes);
    if (xs->scratch == NULL)
        return -ENOMEM;
    xs->insts = calloc(job->node_count, sizeof(*xs->insts));
    xs->srcs = calloc(job->node_count, sizeof(*xs->srcs));
    if (xs->insts == NULL || xs->srcs == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < job->node_count; i++) {
        const struct sp_node *n = job->nodes[i];
        struct sp_inst *inst = calloc(1, sizeof(*inst));
        if (inst == NULL)
            return -ENOMEM;
        xs->insts[i] = inst;
        inst->node = n;
        inst->xs = xs;
        struct sp_op_vt *vt = calloc(1, sizeof(*vt));
        if (vt == NULL)
            return -ENOMEM;
        *vt = *vt_of(n);
        if (vt->watermark == NULL)
            vt->watermark = default_watermark;
        if (vt->end == NULL)
            vt->end = default_end;
        if (vt->idle == NULL)
            vt->idle = forward_idle;
        inst->vt = vt;
        inst->port_count = n->input_count;
        inst->wm = SP_WM_MIN;
        for (unsigned p = 0; p < 2; p++)
            inst->port_wm[p] = SP_WM_MIN;
        out_init(&inst->out, inst, n->schema);
        if (n->kind != SP_NODE_SINK && n->kind != SP_NODE_KEY_BY) {
            inst->out.batch = batch_alloc(xs, &xs->batches, n->schema->row_bytes);
            if (inst->out.batch == NULL)
                return -ENOBUFS;
        }
        for (uint32_t p = 0; p < n->input_count; p++) {
            struct sp_inst *up = xs->insts[n->inputs[p]];
            if (up->down_count == SP_ARRAY_LEN(up->down))
                return -E2BIG;
            up->down[up->down_count] = inst;
            up->down_port[up->down_count++] = p;
        }
        if (n->kind == SP_NODE_SINK)
            xs->sinks_open++;
    }
    if (exec->ck != NULL && ck_shard_alloc(xs) < 0)
        return -ENOMEM;
    /* Open in topological order. */
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst->vt->open != NULL) {
            int rc = inst->vt->open(inst);
            if (rc < 0) {
                if (!exec->failed)
                    sp_exec_fail(xs, rc, "%s: cannot start", inst->node->name);
                return rc;
            }
        }
    }
    for (uint32_t i = 0; i < job->node_count; i++) {
        if (!collect_blockers(xs, xs->insts[i], xs->insts[i])) {
            sp_exec_fail(xs, 0, "%s feeds more than %zu exchanges and sinks directly",
                         job->nodes[i]->name, SP_ARRAY_LEN(xs->insts[i]->blockers));
            return -E2BIG;
        }
        xs->insts[i]->chain = collect_chain(xs->insts[i]);
    }
    /* Every exchange can have all its credits in flight at once. */
    uint32_t exchanges = 0;
    for (uint32_t i = 0; i < job->node_count; i++)
        exchanges += job->nodes[i]->kind == SP_NODE_KEY_BY;
    uint64_t need = (uint64_t)exchanges * exec->shard_count * (exec->config.credits + 2);
    if (need > xs->exchange.limit) {
        sp_exec_fail(xs, 0,
                     "%u exchanges over %u shards need %llu batches of exchange memory, the "
                     "budget holds %u: raise --memory",
                     exchanges, exec->shard_count, (unsigned long long)need, xs->exchange.limit);
        return -ENOBUFS;
    }
    if (exec->ck != NULL) {
        int rc = ck_shard_open(xs);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < job->node_count; i++) {
        const struct sp_node *n = job->nodes[i];
        if (n->kind != SP_NODE_SOURCE)
            continue;
        struct sp_src *src = calloc(1, sizeof(*src));
        if (src == NULL)
            return -ENOMEM;
        src->inst = xs->insts[i];
        src->xs = xs;
        src->node = n;
        src->shard = shard->id;
        src->shard_count = exec->shard_count;
        xs->srcs[i] = src;
        int rc = n->u.source.vt->open(src);
        if (rc < 0) {
            if (!exec->failed)
                sp_exec_fail(xs, rc, "%s: cannot start", n->name);
            return rc;
        }
    }
    for (uint32_t i = 0; i < job->node_count; i++) {
        if (job->nodes[i]->kind == SP_NODE_KEY_BY)
            exec->sender_empty[i * exec->shard_count + shard->id] = !has_partitions(xs, i);
    }
    return 0;
}

static void xs_tick(struct sp_timer *timer, void *ctx);

static void xs_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct sp_xshard *xs = SP_CONTAINER_OF(hook, struct sp_xshard, stop_hook);
    (void)shard;
    if (!atomic_load(&xs->exec->completed) && !atomic_load(&xs->exec->failed))
        atomic_store(&xs->exec->interrupted, true);
    sp_shard_timer_cancel(xs->shard, &xs->tick);
    if (xs->exec->ck != NULL)
        ck_shard_stop(xs);
    for (uint32_t i = 0; i < xs->exec->job->node_count; i++) {
        struct sp_src *src = xs->srcs ? xs->srcs[i] : NULL;
        if (src != NULL && src->node->u.source.vt->stop != NULL)
            src->node->u.source.vt->stop(src);
        struct sp_inst *inst = xs->insts ? xs->insts[i] : NULL;
        if (inst != NULL && inst->vt != NULL && inst->vt->stop != NULL)
            inst->vt->stop(inst);
        if (inst != NULL && inst->node->kind == SP_NODE_KEY_BY && inst->state != NULL) {
            /* Queued batches go home now. */
            struct xchg *x = inst->state;
            xchg_unalign(x, xs->exec->shard_count); /* what an alignment held goes home too */
            while (x->queue != NULL) {
                struct sp_batch *b = x->queue;
                x->queue = b->next;
                b->count = shard->id;
                int rc = sp_shard_send(shard, b->from, xchg_release, b);
                SP_ASSERT(rc == 0);
            }
            x->queue_tail = NULL;
        }
    }
}

static void exec_on_start(struct sp_shard *shard, void *ctx)
{
    struct sp_exec *exec = ctx;
    if (exec->config.on_shard_start != NULL)
        exec->config.on_shard_start(shard, exec->config.hook_ctx);
    struct sp_xshard *xs = calloc(1, sizeof(*xs));
    SP_ASSERT(xs != NULL);
    xs->exec = exec;
    xs->shard = shard;
    xs->max_ts = xs->sink_wm = SP_WM_MIN;
    if (exec->config.watermark_times) {
        xs->wm_clock = calloc(1, sizeof(*xs->wm_clock));
        SP_ASSERT(xs->wm_clock != NULL);
    }
    exec->xs[shard->id] = xs;
    int rc = xs_open(xs);
    if (rc < 0 && !exec->failed)
        sp_exec_fail(xs, rc, "shard %u: cannot start the job", shard->id);
    sp_shard_on_stop(shard, &xs->stop_hook, xs_stop);
    /* Nobody sends before everybody can receive. */
    pthread_barrier_wait(&exec->opened);
    if (exec->failed)
        return;
    if (shard->id == 0) {
        /* The clock starts once every shard is up (memory mapped and
         * touched, instances open): what follows is the job's own time. */
        exec->start_ns = exec->last_print_ns = sp_now_ns();
        if (exec->config.max_seconds > 0)
            exec->deadline_ns = exec->start_ns + (uint64_t)(exec->config.max_seconds * 1e9);
    }
    /* Senders without partitions count as ended from the start. */
    for (uint32_t i = 0; i < exec->job->node_count; i++) {
        if (exec->job->nodes[i]->kind != SP_NODE_KEY_BY)
            continue;
        struct xchg *x = xs->insts[i]->state;
        for (unsigned from = 0; from < exec->shard_count; from++) {
            if (exec->sender_empty[i * exec->shard_count + from] && !x->in_end[from]) {
                x->in_end[from] = true;
                x->in_wm[from] = SP_WM_MAX;
                x->ended++;
            }
        }
    }
    sp_timer_init(&xs->tick, xs_tick, xs);
    sp_shard_timer_arm(shard, &xs->tick, sp_now_ns() + TICK_NS);
    if (exec->ck != NULL)
        ck_shard_start(xs);
    for (uint32_t i = 0; i < exec->job->node_count; i++) {
        if (xs->srcs[i] != NULL)
            src_schedule(xs->srcs[i]);
    }
    if (xs->sinks_open == 0)
        xs_send_done(xs);
}

/* Closes and frees a shard's sources and operator instances. */
static void exec_close(struct sp_exec *exec, struct sp_xshard *xs)
{
    struct sp_job *job = exec->job;
    if (exec->ck != NULL)
        ck_shard_close(xs);
    for (uint32_t i = 0; xs->srcs && i < job->node_count; i++) {
        struct sp_src *src = xs->srcs[i];
        if (src == NULL)
            continue;
        if (src->node->u.source.vt->close != NULL)
            src->node->u.source.vt->close(src);
        free(src->partitions);
        free(src->parts);
        free(src);
    }
    for (uint32_t i = 0; xs->insts && i < job->node_count; i++) {
        struct sp_inst *inst = xs->insts[i];
        if (inst == NULL)
            continue;
        if (inst->vt != NULL && inst->vt->close != NULL)
            inst->vt->close(inst);
        for (unsigned p = 0; p < 2; p++) {
            while (inst->align_held[p] != NULL) {
                struct sp_batch *b = inst->align_held[p];
                inst->align_held[p] = b->next;
                sp_budget_release(&xs->batches, b);
            }
        }
        if (inst->out.batch != NULL)
            sp_budget_release(&xs->batches, inst->out.batch);
        free(inst->out.spill);
        free((void *)inst->vt);
        free(inst);
    }
    free(xs->insts);
    free(xs->scratch);
    xs->scratch = NULL;
    free(xs->srcs);
    xs->insts = NULL;
    xs->srcs = NULL;
    SP_ASSERT(xs->state.used == 0);
    SP_ASSERT(xs->exchange.used == 0);
    if (xs->spill_on) {
        xs_spill_failed(xs); /* even when the input ended first */
        xs->spill_stats = xs->spill.stats;
        sp_spill_deinit(&xs->spill);
        xs->spill_on = false;
    }
}

static void exec_on_finish(struct sp_shard *shard, void *ctx)
{
    struct sp_exec *exec = ctx;
    struct sp_xshard *xs = exec->xs[shard->id];
    if (xs != NULL)
        exec_close(exec, xs);
    if (exec->config.on_shard_finish != NULL)
        exec->config.on_shard_finish(shard, exec->config.hook_ctx);
}

/* ---- Progress ---- */

/* Event-time lag: the newest timestamp any source read minus the oldest
 * watermark any sink has seen; negative when there is none yet. */
static double wm_lag_seconds(struct sp_exec *exec)
{
    int64_t newest = SP_WM_MIN, oldest = SP_WM_MAX;
    for (unsigned s = 0; s < exec->shard_count; s++) {
        struct sp_xshard *xs = exec->xs[s];
        int64_t ts = atomic_load_explicit((_Atomic int64_t *)&xs->max_ts, memory_order_relaxed);
        int64_t wm = atomic_load_explicit((_Atomic int64_t *)&xs->sink_wm, memory_order_relaxed);
        if (ts > newest)
            newest = ts;
        if (wm < oldest)
            oldest = wm;
    }
    if (newest == SP_WM_MIN || oldest == SP_WM_MIN || oldest == SP_WM_MAX || oldest > newest)
        return -1;
    return (double)(newest - oldest) / 1e3;
}

static void print_progress(struct sp_exec *exec, uint64_t now)
{
    uint64_t in = 0, out = 0, bp = 0;
    for (unsigned s = 0; s < exec->shard_count; s++) {
        struct sp_xshard *xs = exec->xs[s];
        in += stat_read(&xs->records_in);
        out += stat_read(&xs->records_out);
        bp += stat_read(&xs->backpressure_ns);
    }
    double dt = (double)(now - exec->last_print_ns) / 1e9;
    if (dt <= 0)
        return;
    double bp_pct = 100.0 * (double)(bp - exec->last_bp) / 1e9 / dt / exec->shard_count;
    double lag = wm_lag_seconds(exec);
    char lag_text[32];
    if (lag < 0)
        snprintf(lag_text, sizeof(lag_text), "-");
    else
        snprintf(lag_text, sizeof(lag_text), "%.1fs", lag);
    fprintf(stderr,
            "\r%s: %.0fs  in %.2fM/s  out %.2fM/s  (total in %llu, out %llu)  watermark lag %s  "
            "backpressure %.0f%%  ",
            exec->job->name, (double)(now - exec->start_ns) / 1e9,
            (double)(in - exec->last_in) / dt / 1e6, (double)(out - exec->last_out) / dt / 1e6,
            (unsigned long long)in, (unsigned long long)out, lag_text,
            bp_pct > 100 ? 100.0 : bp_pct);
    exec->last_in = in;
    exec->last_out = out;
    exec->last_bp = bp;
    exec->last_print_ns = now;
}

static void xs_tick(struct sp_timer *timer, void *ctx)
{
    struct sp_xshard *xs = ctx;
    struct sp_exec *exec = xs->exec;
    uint64_t now = sp_now_ns();
    xs_unpin(xs);
    if (xs_spill_failed(xs))
        return;
    /* Idleness: a waiting source's partitions age while nothing arrives. */
    for (uint32_t i = 0; i < exec->job->node_count; i++) {
        struct sp_src *src = xs->srcs[i];
        if (src != NULL && !src->ended && src->partition_count > 0 && src->waiting)
            src_watermark(src, now);
    }
    if (xs->shard->id == 0) {
        bool completed = atomic_load(&exec->completed);
        if (exec->config.progress && !completed && now - exec->last_print_ns >= SP_NSEC_PER_SEC)
            print_progress(exec, now);
        if (exec->deadline_ns != 0 && now >= exec->deadline_ns) {
            if (!completed)
                atomic_store(&exec->interrupted, true);
            sp_runtime_stop(&exec->rt);
            return;
        }
    }
    sp_shard_timer_arm(xs->shard, timer, now + TICK_NS);
}

/* ---- Running ---- */

void sp_run_config_default(struct sp_run_config *config)
{
    memset(config, 0, sizeof(*config));
    config->handle_signals = true;
}

static bool job_check(struct sp_job *job)
{
    if (job->failed)
        return false;
    if (job->node_count == 0) {
        sp_job_set_error(job, "the job has no operators");
        return false;
    }
    bool has_sink = false;
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_node *n = job->nodes[i];
        has_sink |= n->kind == SP_NODE_SINK;
        bool consumed = n->kind == SP_NODE_SINK;
        for (uint32_t j = i + 1; j < job->node_count && !consumed; j++) {
            for (uint32_t p = 0; p < job->nodes[j]->input_count; p++)
                consumed |= job->nodes[j]->inputs[p] == i;
        }
        if (!consumed && n->kind != SP_NODE_LATE) {
            sp_job_set_error(job, "%s (operator %u) leads nowhere: end it in a sink", n->name, i);
            return false;
        }
    }
    if (!has_sink) {
        sp_job_set_error(job, "the job has no sink");
        return false;
    }
    return true;
}

int sp_job_run(struct sp_job *job, const struct sp_run_config *config, struct sp_job_stats *stats)
{
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    if (!job_check(job))
        return -1;
    struct sp_exec *exec = calloc(1, sizeof(*exec));
    if (exec == NULL) {
        sp_job_set_error(job, "out of memory");
        return -1;
    }
    exec->job = job;
    exec->config = *config;
    struct sp_run_config *c = &exec->config;
    if (c->memory_bytes == 0)
        c->memory_bytes = 256u << 20;
    if (c->credits == 0)
        c->credits = 8;

    struct sp_runtime_config rc;
    sp_runtime_config_default(&rc);
    if (c->cores != 0)
        rc.shard_count = c->cores;
    rc.memory_bytes = c->memory_bytes;
    rc.poll = c->poll;
    rc.handle_signals = c->handle_signals;
    if (c->batch_bytes != 0)
        rc.segment_bytes = c->batch_bytes;
    exec->batch_bytes = rc.segment_bytes;
    rc.on_start = exec_on_start;
    rc.on_finish = exec_on_finish;
    rc.ctx = exec;
    exec->shard_count = rc.shard_count;
    if (c->key_groups == 0) {
        /* Flink's default max parallelism: 1.5 x the parallelism rounded up
         * to a power of two, at least 128. */
        unsigned want = rc.shard_count + rc.shard_count / 2, g = 128;
        while (g < want && g < SP_KEY_GROUPS_MAX)
            g *= 2;
        c->key_groups = g;
    }

    int ret = -1;
    uint32_t exchanges = 0;
    for (uint32_t i = 0; i < job->node_count; i++)
        exchanges += job->nodes[i]->kind == SP_NODE_KEY_BY;
    if (c->key_groups > SP_KEY_GROUPS_MAX || c->key_groups < rc.shard_count) {
        sp_job_set_error(job, "key groups (%u) must lie in [cores (%u), %u]", c->key_groups,
                         rc.shard_count, SP_KEY_GROUPS_MAX);
        goto out;
    }
    /* Every batch in flight and every credit coming back fit the rings. */
    if ((uint64_t)exchanges * c->credits * 2 + 64 > rc.ring_capacity) {
        sp_job_set_error(job, "%u exchanges x %u credits x 2 exceed the ring capacity (%u)",
                         exchanges, c->credits, rc.ring_capacity);
        goto out;
    }
    int err = sp_runtime_init(&exec->rt, &rc);
    if (err < 0) {
        sp_job_set_error(job, "cannot start the runtime: %s", strerror(-err));
        goto out;
    }
    exec->xs = calloc(rc.shard_count, sizeof(*exec->xs));
    exec->sender_empty = calloc((size_t)job->node_count * rc.shard_count, sizeof(bool));
    if (c->checkpoint_url != NULL && ck_run_prepare(exec) < 0) {
        free(exec->xs);
        free(exec->sender_empty);
        sp_runtime_deinit(&exec->rt);
        goto out;
    }
    pthread_barrier_init(&exec->opened, NULL, rc.shard_count);
    exec->start_ns = exec->last_print_ns = sp_now_ns();
    atomic_store(&job->running, exec);
    err = sp_runtime_run(&exec->rt);
    atomic_store(&job->running, NULL);
    uint64_t end_ns = atomic_load(&exec->end_ns);
    if (end_ns == 0 || !c->linger)
        end_ns = sp_now_ns();
    if (c->progress)
        fprintf(stderr, "\n");
    if (err < 0 && !job->failed)
        sp_job_set_error(job, "the runtime failed: %s", strerror(-err));
    if (stats != NULL) {
        stats->seconds = (double)(end_ns - exec->start_ns) / 1e9;
        stats->interrupted = atomic_load(&exec->interrupted);
        for (unsigned s = 0; s < exec->shard_count; s++) {
            struct sp_xshard *xs = exec->xs[s];
            if (xs == NULL)
                continue;
            stats->records_in += xs->records_in;
            stats->records_out += xs->records_out;
            stats->records_late += xs->records_late;
            stats->backpressure_ns += xs->backpressure_ns;
            stats->state_bytes_max += (uint64_t)xs->state.used_max * rc.segment_bytes;
            stats->spilled_bytes_max += (uint64_t)xs->spill_stats.spilled_max * rc.segment_bytes;
            stats->spill_reads += xs->spill_stats.segments_in;
            stats->buffer_bytes_max +=
                ((uint64_t)xs->batches.used_max + xs->exchange.used_max) * rc.segment_bytes;
        }
    }
    for (unsigned s = 0; s < exec->shard_count; s++) {
        if (exec->xs[s] != NULL)
            free(exec->xs[s]->wm_clock);
        free(exec->xs[s]);
    }
    free(exec->xs);
    free(exec->sender_empty);
    pthread_barrier_destroy(&exec->opened);
    if (exec->ck != NULL)
        ck_run_finish(exec);
    sp_runtime_deinit(&exec->rt);
    ret = job->failed ? -1 : 0;
out:
    free(exec);
    return ret;
}
