/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Windowed and running aggregation over keyed streams.
 *
 * State is one sp_table per operator and shard: entry (key, window end) ->
 * accumulator, with namespace order, so a watermark fires windows by
 * walking the smallest ends first and every entry of one end in turn, and
 * deleting them frees their segments. Aggregation is incremental: only the
 * accumulator is kept (Flink's AggregateFunction), never the records.
 *
 * Tumbling and hopping windows: a record adds to every window it falls in.
 * A window fires when the watermark reaches its end - 1 (Flink's
 * maxTimestamp) and is purged at end - 1 + allowed lateness; a record for a
 * fired but not purged window updates it and fires it again at once (an
 * updated result); a record whose windows are all purged is late and goes to
 * the late output. With lateness, a second table of markers remembers which
 * windows have not fired yet, since firing and purging then happen at
 * different watermarks.
 *
 * Session windows: a record opens [ts, ts + gap) and merges with every
 * session of its key it touches (Flink's TimeWindow.intersects), the merged
 * accumulator built with the aggregate's merge(). The sessions of one key
 * form a list threaded through their values, its head in a per-key entry.
 *
 * Global windows fire and purge every `count` records of a key (Flink's
 * GlobalWindows with a purging CountTrigger).
 */
#include <stdlib.h>
#include <string.h>

#include "sp_op.h"

/* ---- Aggregates ---- */

struct acc {
    union {
        int64_t i;
        double d;
    } v;
    int64_t n;
};

static const char *const agg_names[] = {"count", "sum", "min", "max", "avg", "value"};

int sp_agg_prepare(struct sp_job *job, struct sp_node *node, const struct sp_agg *agg,
                   const struct sp_schema *in)
{
    node->agg = *agg;
    enum sp_type result = SP_T_I64;
    if (agg->kind == SP_AGG_USER) {
        const struct sp_aggregate_fn *u = agg->user;
        if (u == NULL || u->add == NULL || u->result == NULL || u->acc_bytes == 0 ||
            (u->result_type != SP_T_I64 && u->result_type != SP_T_F64)) {
            sp_job_set_error(job, "aggregate: a user aggregate needs acc_bytes, add(), result() "
                                  "and an I64 or F64 result");
            return -1;
        }
        node->acc_bytes = u->acc_bytes;
        result = u->result_type;
    } else if (agg->kind > SP_AGG_AVG) {
        sp_job_set_error(job, "aggregate: unknown kind %d", (int)agg->kind);
        return -1;
    } else {
        node->acc_bytes = sizeof(struct acc);
        if (agg->kind != SP_AGG_COUNT) {
            int f = sp_schema_find(in, agg->field);
            if (f < 0 || (in->fields[f].type != SP_T_I64 && in->fields[f].type != SP_T_F64)) {
                sp_job_set_error(job,
                                 "aggregate: %s needs an int64 or double field; '%s' is not one",
                                 agg_names[agg->kind], agg->field ? agg->field : "(null)");
                return -1;
            }
            node->agg_offset = in->fields[f].offset;
            node->agg_type = in->fields[f].type;
            result = agg->kind == SP_AGG_AVG ? SP_T_F64 : node->agg_type;
        }
    }
    const char *key_name = node->key.field >= 0 ? in->fields[node->key.field].name : "key";
    node->agg_fields[0] =
        (struct sp_field){"window_start", SP_T_I64, offsetof(struct sp_agg_row, window_start)};
    node->agg_fields[1] =
        (struct sp_field){"window_end", SP_T_I64, offsetof(struct sp_agg_row, window_end)};
    node->agg_fields[2] = (struct sp_field){agg->name ? agg->name : agg_names[agg->kind], result,
                                            offsetof(struct sp_agg_row, value)};
    node->agg_fields[3] =
        (struct sp_field){key_name, node->key.type, offsetof(struct sp_agg_row, key)};
    node->agg_schema = (struct sp_schema){"agg", sizeof(struct sp_agg_row), 4, node->agg_fields};
    return 0;
}

static inline void agg_create(const struct sp_node *n, void *acc)
{
    if (n->agg.kind == SP_AGG_USER) {
        if (n->agg.user->create)
            n->agg.user->create(n->agg.user->ctx, acc);
        return;
    }
    struct acc *a = acc;
    a->n = 0;
    a->v.i = 0;
}

static inline double field_f64(const struct sp_node *n, const void *row)
{
    const uint8_t *p = (const uint8_t *)row + n->agg_offset;
    if (n->agg_type == SP_T_F64) {
        double d;
        memcpy(&d, p, sizeof(d));
        return d;
    }
    int64_t i;
    memcpy(&i, p, sizeof(i));
    return (double)i;
}

static inline int64_t field_i64(const struct sp_node *n, const void *row)
{
    int64_t i;
    memcpy(&i, (const uint8_t *)row + n->agg_offset, sizeof(i));
    return i;
}

static inline void agg_add(const struct sp_node *n, void *acc, const void *row, int64_t ts)
{
    struct acc *a = acc;
    bool f64 = n->agg_type == SP_T_F64;
    switch (n->agg.kind) {
    case SP_AGG_COUNT:
        a->n++;
        return;
    case SP_AGG_SUM:
        if (f64)
            a->v.d += field_f64(n, row);
        else
            a->v.i += field_i64(n, row);
        a->n++;
        return;
    case SP_AGG_MIN:
    case SP_AGG_MAX: {
        bool max = n->agg.kind == SP_AGG_MAX;
        if (f64) {
            double d = field_f64(n, row);
            if (a->n == 0 || (max ? d > a->v.d : d < a->v.d))
                a->v.d = d;
        } else {
            int64_t i = field_i64(n, row);
            if (a->n == 0 || (max ? i > a->v.i : i < a->v.i))
                a->v.i = i;
        }
        a->n++;
        return;
    }
    case SP_AGG_AVG:
        a->v.d += field_f64(n, row);
        a->n++;
        return;
    case SP_AGG_USER:
        n->agg.user->add(n->agg.user->ctx, acc, row, ts);
        return;
    }
}

static void agg_merge(const struct sp_node *n, void *acc, const void *other_acc)
{
    struct acc *a = acc;
    const struct acc *o = other_acc;
    bool f64 = n->agg_type == SP_T_F64;
    switch (n->agg.kind) {
    case SP_AGG_COUNT:
        a->n += o->n;
        return;
    case SP_AGG_SUM:
        if (f64)
            a->v.d += o->v.d;
        else
            a->v.i += o->v.i;
        a->n += o->n;
        return;
    case SP_AGG_MIN:
    case SP_AGG_MAX: {
        if (o->n == 0)
            return;
        bool max = n->agg.kind == SP_AGG_MAX;
        if (a->n == 0)
            a->v = o->v;
        else if (f64 ? (max ? o->v.d > a->v.d : o->v.d < a->v.d)
                     : (max ? o->v.i > a->v.i : o->v.i < a->v.i))
            a->v = o->v;
        a->n += o->n;
        return;
    }
    case SP_AGG_AVG:
        a->v.d += o->v.d;
        a->n += o->n;
        return;
    case SP_AGG_USER:
        n->agg.user->merge(n->agg.user->ctx, acc, other_acc);
        return;
    }
}

static void agg_result(const struct sp_node *n, const void *acc, struct sp_agg_row *row)
{
    const struct acc *a = acc;
    switch (n->agg.kind) {
    case SP_AGG_COUNT:
        row->value.i64 = a->n;
        return;
    case SP_AGG_SUM:
    case SP_AGG_MIN:
    case SP_AGG_MAX:
        row->value.i64 = a->v.i; /* the same bits for a double */
        return;
    case SP_AGG_AVG:
        row->value.f64 = a->n ? a->v.d / (double)a->n : 0.0;
        return;
    case SP_AGG_USER:
        n->agg.user->result(n->agg.user->ctx, acc, &row->value);
        return;
    }
}

/* The output row's key, typed as the key field. */
static void key_into(const struct sp_node *n, const struct sp_table *t,
                     const struct sp_table_entry *e, struct sp_agg_row *row)
{
    const void *key = sp_table_key(t, e);
    uint32_t len = e->key_len & ~SP_TABLE_DEAD;
    if (n->key.type == SP_T_STR)
        row->key.str = sp_str_of((const char *)key, len);
    else if (n->key.type == SP_T_BOOL)
        memcpy(&row->key.b, key, 1);
    else
        memcpy(&row->key.i64, key, 8);
}

/* ---- Window operator ---- */

struct win {
    struct sp_table t;     /* (key, end) -> value */
    struct sp_table fire;  /* lateness: (key, end) of windows not fired yet */
    struct sp_table heads; /* sessions: key -> end of its first session */
    bool has_fire;
    bool has_heads;
    uint32_t acc_off; /* in the value */
    struct sp_inst *late;
    struct sp_xshard *xs;
    void *tmp;          /* one accumulator */
    int64_t pane_start; /* the last record's last window start */
};

/* Session values: start and the key's next session end before the acc. */
struct session {
    int64_t start;
    int64_t next_end;
};
#define SESSION_NONE INT64_MIN

static int win_open(struct sp_inst *inst)
{
    const struct sp_node *n = inst->node;
    const struct sp_window *w = &n->u.window.window;
    struct win *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    inst->state = s;
    s->xs = inst->xs;
    s->acc_off = w->kind == SP_WINDOW_SESSION  ? sizeof(struct session)
                 : w->kind == SP_WINDOW_GLOBAL ? 8u
                                               : 0u;
    s->tmp = calloc(1, n->acc_bytes + 16);
    s->pane_start = INT64_MAX; /* no pane yet: ts >= MAX never holds */
    if (s->tmp == NULL)
        return -ENOMEM;
    struct sp_table_config c;
    sp_exec_table_config(inst->xs, "window", s->acc_off + n->acc_bytes, w->kind != SP_WINDOW_GLOBAL,
                         &c);
    int rc = sp_table_init(&s->t, &c);
    if (rc < 0 || (rc = sp_exec_state_table(inst, "window", &s->t)) < 0)
        return rc;
    if (w->allowed_lateness_ms > 0 && w->kind != SP_WINDOW_GLOBAL) {
        sp_exec_table_config(inst->xs, "window.unfired", 0, true, &c);
        if ((rc = sp_table_init(&s->fire, &c)) < 0)
            return rc;
        s->has_fire = true;
        if ((rc = sp_exec_state_table(inst, "window.unfired", &s->fire)) < 0)
            return rc;
    }
    if (w->kind == SP_WINDOW_SESSION) {
        sp_exec_table_config(inst->xs, "window.sessions", sizeof(int64_t), false, &c);
        if ((rc = sp_table_init(&s->heads, &c)) < 0)
            return rc;
        s->has_heads = true;
        if ((rc = sp_exec_state_table(inst, "window.sessions", &s->heads)) < 0)
            return rc;
    }
    if (n->u.window.late_node != UINT32_MAX)
        s->late = inst->xs->insts[n->u.window.late_node];
    return 0;
}

static void win_close(struct sp_inst *inst)
{
    struct win *s = inst->state;
    if (s == NULL)
        return;
    sp_table_deinit(&s->t);
    if (s->has_fire)
        sp_table_deinit(&s->fire);
    if (s->has_heads)
        sp_table_deinit(&s->heads);
    free(s->tmp);
    free(s);
    inst->state = NULL;
}

static void state_full(struct sp_inst *inst, int err)
{
    sp_exec_fail(inst->xs, err,
                 "%s: keyed state does not fit the shard's managed memory (raise --memory)",
                 inst->node->name);
}

static void emit_result(struct sp_inst *inst, struct win *s, struct sp_table_entry *e,
                        int64_t start, int64_t end, int64_t ts)
{
    /* Straight into the output batch; a string key is copied in when the
     * row is complete (it points into the entry, which may go next). */
    struct sp_agg_row *row = sp_out_row(&inst->out, ts);
    row->window_start = start;
    row->window_end = end;
    agg_result(inst->node, (uint8_t *)sp_table_value(&s->t, e) + s->acc_off, row);
    key_into(inst->node, &s->t, e, row);
    sp_out_finish(&inst->out); /* the key points into the entry: copy it now */
}

static void late_record(struct sp_inst *inst, struct win *s, const void *row, int64_t ts)
{
    sp_exec_count_late(inst->xs, 1);
    if (s->late != NULL)
        sp_out_emit(&s->late->out, row, ts);
}

static inline int64_t floor_mod(int64_t a, int64_t m)
{
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

static bool mark_unfired(struct sp_inst *inst, struct win *s, uint64_t hash, struct sp_str key,
                         int64_t end)
{
    bool created;
    int err = 0;
    if (sp_table_upsert(&s->fire, hash, key.ptr, key.len, end, &created, &err) == NULL) {
        state_full(inst, err);
        return false;
    }
    return true;
}

static void unmark(struct win *s, uint64_t hash, struct sp_str key, int64_t end)
{
    struct sp_table_entry *m = sp_table_find(&s->fire, hash, key.ptr, key.len, end);
    if (m != NULL)
        sp_table_delete(&s->fire, m);
}

/* Tumbling and hopping: add to each window of `ts`. */
static void add_fixed(struct sp_inst *inst, struct win *s, const void *row, int64_t ts,
                      uint64_t hash, struct sp_str key)
{
    const struct sp_node *n = inst->node;
    const struct sp_window *w = &n->u.window.window;
    int64_t wm = inst->wm;
    int64_t slide = w->kind == SP_WINDOW_TUMBLING ? w->size_ms : w->slide_ms;
    /* Consecutive records mostly share their last window: skip the division. */
    int64_t last_start;
    if (ts >= s->pane_start && ts < s->pane_start + slide) {
        last_start = s->pane_start;
    } else {
        last_start = ts - floor_mod(ts - w->offset_ms, slide);
        s->pane_start = last_start;
    }
    bool added = false;
    for (int64_t start = last_start; start > ts - w->size_ms; start -= slide) {
        int64_t end = start + w->size_ms;
        if (end - 1 + w->allowed_lateness_ms <= wm)
            continue; /* purged: late for this window */
        bool created;
        int err = 0;
        struct sp_table_entry *e =
            sp_table_upsert(&s->t, hash, key.ptr, key.len, end, &created, &err);
        if (e == NULL) {
            state_full(inst, err);
            return;
        }
        void *acc = sp_table_value(&s->t, e);
        if (created) {
            agg_create(n, acc);
            if (s->has_fire && end - 1 > wm && !mark_unfired(inst, s, hash, key, end))
                return;
        }
        agg_add(n, acc, row, ts);
        added = true;
        if (end - 1 <= wm) /* fired already: an updated result */
            emit_result(inst, s, e, start, end, end - 1);
    }
    if (!added)
        late_record(inst, s, row, ts);
}

static struct sp_table_entry *session_at(struct win *s, uint64_t hash, struct sp_str key,
                                         int64_t end)
{
    return sp_table_find(&s->t, hash, key.ptr, key.len, end);
}

/* Removes session `end` from the key's list (whose head is *head). */
static void session_unlink(struct win *s, int64_t *head, uint64_t hash, struct sp_str key,
                           int64_t end)
{
    int64_t *link = head;
    while (*link != SESSION_NONE) {
        struct sp_table_entry *e = session_at(s, hash, key, *link);
        SP_ASSERT(e != NULL);
        struct session *ss = sp_table_value(&s->t, e);
        if (*link == end) {
            *link = ss->next_end;
            return;
        }
        link = &ss->next_end;
    }
}

static void add_session(struct sp_inst *inst, struct win *s, const void *row, int64_t ts,
                        uint64_t hash, struct sp_str key)
{
    const struct sp_node *n = inst->node;
    const struct sp_window *w = &n->u.window.window;
    int64_t wm = inst->wm;
    int64_t start = ts, end = ts + w->gap_ms;
    bool created;
    int err = 0;
    struct sp_table_entry *h = sp_table_find(&s->heads, hash, key.ptr, key.len, 0);
    int64_t head = SESSION_NONE;
    if (h != NULL)
        head = *(int64_t *)sp_table_value(&s->heads, h);

    /* Which sessions does [start, end) touch? */
    unsigned overlaps = 0;
    int64_t only_end = 0, m_start = start, m_end = end;
    for (int64_t e_end = head; e_end != SESSION_NONE;) {
        struct sp_table_entry *e = session_at(s, hash, key, e_end);
        struct session *ss = sp_table_value(&s->t, e);
        if (ss->start <= end && e_end >= start) {
            overlaps++;
            only_end = e_end;
            m_start = SP_MIN(m_start, ss->start);
            m_end = SP_MAX(m_end, e_end);
        }
        e_end = ss->next_end;
    }
    if (overlaps == 0 && end - 1 + w->allowed_lateness_ms <= wm) {
        late_record(inst, s, row, ts);
        return;
    }
    struct sp_table_entry *target;
    if (overlaps == 1 && only_end == m_end) {
        /* Inside (or extending the start of) one session: update in place. */
        target = session_at(s, hash, key, only_end);
        struct session *ss = sp_table_value(&s->t, target);
        ss->start = m_start;
        agg_add(n, (uint8_t *)ss + s->acc_off, row, ts);
    } else {
        /* Merge every touched session into a new one ending at m_end. */
        void *tmp = s->tmp;
        agg_create(n, tmp);
        for (int64_t e_end = head; e_end != SESSION_NONE;) {
            struct sp_table_entry *e = session_at(s, hash, key, e_end);
            struct session *ss = sp_table_value(&s->t, e);
            int64_t next = ss->next_end;
            if (ss->start <= end && e_end >= start) {
                agg_merge(n, tmp, (uint8_t *)ss + s->acc_off);
                session_unlink(s, &head, hash, key, e_end);
                if (s->has_fire)
                    unmark(s, hash, key, e_end);
                sp_table_delete(&s->t, e);
            }
            e_end = next;
        }
        agg_add(n, tmp, row, ts);
        target = sp_table_upsert(&s->t, hash, key.ptr, key.len, m_end, &created, &err);
        if (target == NULL) {
            state_full(inst, err);
            return;
        }
        struct session *ss = sp_table_value(&s->t, target);
        ss->start = m_start;
        ss->next_end = head;
        head = m_end;
        memcpy((uint8_t *)ss + s->acc_off, tmp, n->acc_bytes);
        if (s->has_fire && m_end - 1 > wm && !mark_unfired(inst, s, hash, key, m_end))
            return;
        if (h == NULL) {
            h = sp_table_upsert(&s->heads, hash, key.ptr, key.len, 0, &created, &err);
            if (h == NULL) {
                state_full(inst, err);
                return;
            }
        }
        *(int64_t *)sp_table_value(&s->heads, h) = head;
    }
    if (m_end - 1 <= wm) {
        struct session *ss = sp_table_value(&s->t, target);
        emit_result(inst, s, target, ss->start, m_end, m_end - 1);
    }
}

static void add_global(struct sp_inst *inst, struct win *s, const void *row, int64_t ts,
                       uint64_t hash, struct sp_str key)
{
    const struct sp_node *n = inst->node;
    bool created;
    int err = 0;
    struct sp_table_entry *e = sp_table_upsert(&s->t, hash, key.ptr, key.len, 0, &created, &err);
    if (e == NULL) {
        state_full(inst, err);
        return;
    }
    uint64_t *count = sp_table_value(&s->t, e);
    void *acc = (uint8_t *)count + s->acc_off;
    if (created)
        agg_create(n, acc);
    agg_add(n, acc, row, ts);
    if (++*count >= n->u.window.window.count) {
        emit_result(inst, s, e, INT64_MIN, INT64_MAX, ts);
        sp_table_delete(&s->t, e);
    }
}

/*
 * Records are added in groups: first every key of the group is hashed and
 * its index slot prefetched, then every slot read and its entry prefetched,
 * then the records added. State is larger than the caches, and this way
 * the misses of a whole group overlap instead of each record waiting for
 * its own two.
 */
#define GROUP 32u

/* No pointer into the window's tables is held (between records, and
 * between blocks of a firing: each result was copied out), so what was read
 * back from disk may go again (spilled state); a window larger than memory
 * fires in pieces. */
static void win_unpin(struct win *s)
{
    sp_table_unpin(&s->t);
    sp_table_unpin(&s->fire);
    sp_table_unpin(&s->heads);
}

static void win_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct win *s = inst->state;
    const struct sp_node *n = inst->node;
    enum sp_window_kind kind = n->u.window.window.kind;
    uint64_t hashes[GROUP];
    struct sp_str keys[GROUP];
    uint32_t count = in->count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k = i % GROUP;
        if (k == 0) {
            uint32_t g = SP_MIN(GROUP, count - i);
            for (uint32_t j = 0; j < g; j++) {
                hashes[j] = sp_key_of(&n->key, sp_batch_row(in, i + j), &keys[j]);
                sp_table_prefetch(&s->t, hashes[j]);
            }
            for (uint32_t j = 0; j < g; j++)
                sp_table_prefetch_entry(&s->t, hashes[j]);
        }
        uint64_t hash = hashes[k];
        struct sp_str key = keys[k];
        if (n->key.field < 0) /* a key function's bytes live until its next call */
            sp_key_of(&n->key, sp_batch_row(in, i), &key);
        const void *row = sp_batch_row(in, i);
        int64_t ts = sp_batch_ts(in, i);
        if (kind == SP_WINDOW_SESSION)
            add_session(inst, s, row, ts, hash, key);
        else if (kind == SP_WINDOW_GLOBAL)
            add_global(inst, s, row, ts, hash, key);
        else
            add_fixed(inst, s, row, ts, hash, key);
        if (sp_exec_failed(inst->xs))
            return;
        win_unpin(s);
    }
    sp_out_flush(&inst->out);
    if (s->late != NULL)
        sp_out_flush(&s->late->out);
}

static int64_t window_start_of(const struct sp_window *w, int64_t end, const void *value)
{
    if (w->kind == SP_WINDOW_SESSION)
        return ((const struct session *)value)->start;
    return end - w->size_ms;
}

struct fire_ctx {
    struct sp_inst *inst;
    struct win *s;
    const struct sp_window *w;
    int64_t end;
    bool emit;
};

/* One entry of a namespace being dropped: its result out, its session off
 * its key's list. */
static void fire_entry(struct sp_table_entry *e, void *ctx)
{
    struct fire_ctx *f = ctx;
    struct win *s = f->s;
    if (f->emit)
        emit_result(f->inst, s, e, window_start_of(f->w, f->end, sp_table_value(&s->t, e)), f->end,
                    f->end - 1);
    if (f->w->kind == SP_WINDOW_SESSION) {
        struct sp_str key = sp_str_of((const char *)sp_table_key(&s->t, e), e->key_len);
        struct sp_table_entry *h = sp_table_find(&s->heads, e->hash, key.ptr, key.len, 0);
        SP_ASSERT(h != NULL);
        int64_t *head = sp_table_value(&s->heads, h);
        session_unlink(s, head, e->hash, key, e->ns);
        if (*head == SESSION_NONE)
            sp_table_delete(&s->heads, h);
    }
}

/* A marker of a window that has not fired: fire it (the window stays). */
static void fire_marker(struct sp_table_entry *m, void *ctx)
{
    struct fire_ctx *f = ctx;
    struct win *s = f->s;
    struct sp_str key = sp_str_of((const char *)sp_table_key(&s->fire, m), m->key_len);
    struct sp_table_entry *e = sp_table_find(&s->t, m->hash, key.ptr, key.len, f->end);
    if (e != NULL)
        emit_result(f->inst, s, e, window_start_of(f->w, f->end, sp_table_value(&s->t, e)), f->end,
                    f->end - 1);
}

/* Firing stops between blocks of entries while downstream is blocked. */
static bool fire_blocked(void *ctx)
{
    win_unpin(((struct fire_ctx *)ctx)->s);
    return sp_inst_blocked(((struct fire_ctx *)ctx)->inst);
}

/* Purging never stops half way (it emits nothing). */
static bool purge_goes_on(void *ctx)
{
    win_unpin(((struct fire_ctx *)ctx)->s);
    return false;
}

static void win_watermark(struct sp_inst *inst, int64_t wm)
{
    struct win *s = inst->state;
    const struct sp_window *w = &inst->node->u.window.window;
    if (s == NULL || w->kind == SP_WINDOW_GLOBAL) {
        sp_inst_forward_watermark(inst, wm);
        return;
    }
    struct fire_ctx f = {.inst = inst, .s = s, .w = w};
    int64_t end;
    if (s->has_fire) {
        /* Fire what has not fired; purge at end - 1 + lateness. */
        while (sp_table_ns_min(&s->fire, &end) && end - 1 <= wm) {
            f.end = end;
            if (fire_blocked(&f) || !sp_table_ns_drop(&s->fire, end, fire_marker, fire_blocked, &f))
                goto deferred;
        }
        f.emit = false;
        while (sp_table_ns_min(&s->t, &end) &&
               (end - 1 + w->allowed_lateness_ms <= wm || wm == SP_WM_MAX)) {
            f.end = end;
            sp_table_ns_drop(&s->t, end, fire_entry, purge_goes_on, &f);
        }
    } else {
        f.emit = true;
        while (sp_table_ns_min(&s->t, &end) && end - 1 <= wm) {
            f.end = end;
            if (fire_blocked(&f) || !sp_table_ns_drop(&s->t, end, fire_entry, fire_blocked, &f))
                goto deferred;
        }
    }
    sp_inst_forward_watermark(inst, wm);
    return;
deferred:
    /* Downstream is full: the rest fires when it has room again. */
    sp_out_flush(&inst->out);
    sp_inst_defer(inst);
}

const struct sp_op_vt sp_window_vt = {
    .name = "window",
    .open = win_open,
    .push = win_push,
    .watermark = win_watermark,
    .close = win_close,
};

/* ---- Running aggregate ---- */

static int run_open(struct sp_inst *inst)
{
    struct win *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    inst->state = s;
    s->xs = inst->xs;
    struct sp_table_config c;
    sp_exec_table_config(inst->xs, "aggregate", inst->node->acc_bytes, false, &c);
    int rc = sp_table_init(&s->t, &c);
    if (rc < 0)
        return rc;
    return sp_exec_state_table(inst, "aggregate", &s->t);
}

static void run_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct win *s = inst->state;
    const struct sp_node *n = inst->node;
    uint64_t hashes[GROUP];
    struct sp_str keys[GROUP];
    for (uint32_t i = 0; i < in->count; i++) {
        uint32_t k = i % GROUP;
        if (k == 0) {
            uint32_t g = SP_MIN(GROUP, in->count - i);
            for (uint32_t j = 0; j < g; j++) {
                hashes[j] = sp_key_of(&n->key, sp_batch_row(in, i + j), &keys[j]);
                sp_table_prefetch(&s->t, hashes[j]);
            }
            for (uint32_t j = 0; j < g; j++)
                sp_table_prefetch_entry(&s->t, hashes[j]);
        }
        const void *row = sp_batch_row(in, i);
        int64_t ts = sp_batch_ts(in, i);
        struct sp_str key = keys[k];
        if (n->key.field < 0) /* a key function's bytes live until its next call */
            sp_key_of(&n->key, row, &key);
        bool created;
        int err = 0;
        struct sp_table_entry *e =
            sp_table_upsert(&s->t, hashes[k], key.ptr, key.len, 0, &created, &err);
        if (e == NULL) {
            state_full(inst, err);
            return;
        }
        void *acc = sp_table_value(&s->t, e);
        if (created)
            agg_create(n, acc);
        agg_add(n, acc, row, ts);
        emit_result(inst, s, e, 0, 0, ts);
        sp_table_unpin(&s->t); /* e is not used past its record (spilled state) */
    }
    sp_out_flush(&inst->out);
}

const struct sp_op_vt sp_aggregate_vt = {
    .name = "aggregate",
    .open = run_open,
    .push = run_push,
    .close = win_close,
};
