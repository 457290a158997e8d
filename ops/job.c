/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building a job graph (sp_job.h). Nodes are appended in the order they are
 * made, so every node's inputs come before it: the node array is already in
 * topological order, which is the order the executor opens instances in.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_op.h"

int sp_schema_find(const struct sp_schema *schema, const char *name)
{
    if (schema == NULL || name == NULL)
        return -1;
    for (uint32_t i = 0; i < schema->field_count; i++) {
        if (strcmp(schema->fields[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

struct sp_job *sp_job_new(const char *name)
{
    struct sp_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    snprintf(job->name, sizeof(job->name), "%s", name ? name : "job");
    job->dead.job = job;
    job->dead.node = UINT32_MAX;
    return job;
}

void sp_job_free(struct sp_job *job)
{
    if (job == NULL)
        return;
    for (uint32_t i = 0; i < job->node_count; i++) {
        struct sp_node *n = job->nodes[i];
        if (n->kind == SP_NODE_SOURCE)
            free(n->u.source.config);
        if (n->kind == SP_NODE_SINK && n->u.sink.config_free != NULL)
            n->u.sink.config_free(n->u.sink.config);
        free(n);
    }
    free(job);
}

const char *sp_job_error(const struct sp_job *job)
{
    return job->failed ? job->error : NULL;
}

void sp_job_set_error(struct sp_job *job, const char *fmt, ...)
{
    if (job->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    job->failed = true;
}

struct sp_job *sp_stream_job(struct sp_stream *s)
{
    return s->job;
}

static struct sp_node *node_of(struct sp_stream *s)
{
    if (s == NULL || s->node == UINT32_MAX)
        return NULL;
    return s->job->nodes[s->node];
}

const struct sp_schema *sp_stream_schema(struct sp_stream *s)
{
    struct sp_node *n = node_of(s);
    return n ? n->schema : NULL;
}

static bool schema_ok(struct sp_job *job, const struct sp_schema *schema, const char *what)
{
    if (schema == NULL || schema->row_bytes == 0 || schema->field_count > SP_SCHEMA_FIELDS_MAX) {
        sp_job_set_error(job, "%s: a schema with a row size and at most %u fields is needed", what,
                         SP_SCHEMA_FIELDS_MAX);
        return false;
    }
    for (uint32_t i = 0; i < schema->field_count; i++) {
        const struct sp_field *f = &schema->fields[i];
        uint32_t size = f->type == SP_T_STR ? sizeof(struct sp_str) : f->type == SP_T_BOOL ? 1 : 8;
        if (f->name == NULL || f->offset + size > schema->row_bytes) {
            sp_job_set_error(job, "%s: field %u of schema '%s' lies outside its %u-byte row", what,
                             i, schema->name ? schema->name : "?", schema->row_bytes);
            return false;
        }
    }
    return true;
}

/* Appends a node fed by `inputs`; NULL (and the job failed) on error. */
static struct sp_node *node_add(struct sp_job *job, enum sp_node_kind kind, const char *name,
                                struct sp_stream **inputs, uint32_t input_count,
                                const struct sp_schema *schema)
{
    if (job->failed)
        return NULL;
    for (uint32_t i = 0; i < input_count; i++) {
        if (inputs[i] == NULL || inputs[i]->job != job || node_of(inputs[i]) == NULL) {
            sp_job_set_error(job, "%s: input %u is not a stream of this job", name, i);
            return NULL;
        }
    }
    if (job->node_count == SP_JOB_NODES_MAX) {
        sp_job_set_error(job, "%s: a job has at most %u operators", name, SP_JOB_NODES_MAX);
        return NULL;
    }
    if (!schema_ok(job, schema, name))
        return NULL;
    struct sp_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        sp_job_set_error(job, "%s: out of memory", name);
        return NULL;
    }
    n->kind = kind;
    n->id = job->node_count;
    n->name = name;
    n->schema = schema;
    n->input_count = input_count;
    for (uint32_t i = 0; i < input_count; i++)
        n->inputs[i] = inputs[i]->node;
    job->nodes[n->id] = n;
    job->streams[n->id] = (struct sp_stream){.job = job, .node = n->id};
    job->node_count++;
    return n;
}

static struct sp_stream *stream_of(struct sp_job *job, struct sp_node *n)
{
    return n ? &job->streams[n->id] : &job->dead;
}

static bool resolve_ts(struct sp_job *job, const struct sp_schema *schema,
                       const struct sp_watermarks *wm, int *field_out)
{
    *field_out = -1;
    if (wm == NULL || wm->ts_field == NULL)
        return true;
    int f = sp_schema_find(schema, wm->ts_field);
    if (f < 0 || schema->fields[f].type != SP_T_I64) {
        sp_job_set_error(job, "watermarks: '%s' is not an int64 field of '%s'", wm->ts_field,
                         schema->name ? schema->name : "the source");
        return false;
    }
    *field_out = f;
    return true;
}

struct sp_stream *sp_job_add_source(struct sp_job *job, const char *name,
                                    const struct sp_source_vt *vt, void *config,
                                    const struct sp_schema *schema, const struct sp_watermarks *wm)
{
    struct sp_node *n = node_add(job, SP_NODE_SOURCE, name, NULL, 0, schema);
    int ts_field = -1;
    if (n == NULL || !resolve_ts(job, schema, wm, &ts_field)) {
        free(config);
        return &job->dead;
    }
    n->u.source.vt = vt;
    n->u.source.config = config;
    if (wm != NULL)
        n->u.source.wm = *wm;
    if (n->u.source.wm.out_of_orderness_ms < 0 || n->u.source.wm.idle_timeout_ms < 0) {
        sp_job_set_error(job, "%s: out-of-orderness and idle timeout cannot be negative", name);
        return &job->dead;
    }
    n->u.source.ts_field = ts_field;
    return stream_of(job, n);
}

void sp_job_add_sink(struct sp_stream *in, const char *name, const struct sp_op_vt *vt,
                     void *config, void (*config_free)(void *config))
{
    struct sp_job *job = in->job;
    struct sp_node *n = node_add(job, SP_NODE_SINK, name, &in, 1, sp_stream_schema(in));
    if (n == NULL) {
        if (config_free != NULL)
            config_free(config);
        return;
    }
    n->vt = vt;
    n->u.sink.vt = vt;
    n->u.sink.config = config;
    n->u.sink.config_free = config_free;
}

static struct sp_stream *udf_node(struct sp_stream *in, enum sp_node_kind kind, const char *name,
                                  const struct sp_schema *schema, sp_map_fn *map,
                                  sp_filter_fn *filter, sp_flat_map_fn *flat_map, void *ctx)
{
    struct sp_job *job = in->job;
    if (map == NULL && filter == NULL && flat_map == NULL) {
        sp_job_set_error(job, "%s: no function given", name);
        return &job->dead;
    }
    struct sp_node *n = node_add(job, kind, name, &in, 1, schema);
    if (n != NULL) {
        if (map != NULL)
            n->u.udf.fn.map = map;
        else if (filter != NULL)
            n->u.udf.fn.filter = filter;
        else
            n->u.udf.fn.flat_map = flat_map;
        n->u.udf.ctx = ctx;
    }
    return stream_of(job, n);
}

struct sp_stream *sp_map(struct sp_stream *in, const struct sp_schema *out_schema, sp_map_fn *fn,
                         void *ctx)
{
    return udf_node(in, SP_NODE_MAP, "map", out_schema, fn, NULL, NULL, ctx);
}

struct sp_stream *sp_filter(struct sp_stream *in, sp_filter_fn *fn, void *ctx)
{
    return udf_node(in, SP_NODE_FILTER, "filter", sp_stream_schema(in), NULL, fn, NULL, ctx);
}

struct sp_stream *sp_flat_map(struct sp_stream *in, const struct sp_schema *out_schema,
                              sp_flat_map_fn *fn, void *ctx)
{
    return udf_node(in, SP_NODE_FLAT_MAP, "flat_map", out_schema, NULL, NULL, fn, ctx);
}

struct sp_stream *sp_union(struct sp_stream *a, struct sp_stream *b)
{
    struct sp_job *job = a->job;
    const struct sp_schema *sa = sp_stream_schema(a), *sb = sp_stream_schema(b);
    bool same = sa == sb;
    if (!same && sa != NULL && sb != NULL && sa->row_bytes == sb->row_bytes &&
        sa->field_count == sb->field_count) {
        same = true;
        for (uint32_t i = 0; i < sa->field_count && same; i++)
            same = sa->fields[i].type == sb->fields[i].type &&
                   sa->fields[i].offset == sb->fields[i].offset &&
                   strcmp(sa->fields[i].name, sb->fields[i].name) == 0;
    }
    if (sa != NULL && sb != NULL && !same) {
        sp_job_set_error(job, "union: both inputs need the same schema ('%s' and '%s' differ)",
                         sa->name ? sa->name : "?", sb->name ? sb->name : "?");
        return &job->dead;
    }
    struct sp_stream *inputs[2] = {a, b};
    return stream_of(job, node_add(job, SP_NODE_UNION, "union", inputs, 2, sa));
}

struct sp_stream *sp_key_by(struct sp_stream *in, const char *field)
{
    struct sp_job *job = in->job;
    const struct sp_schema *schema = sp_stream_schema(in);
    if (schema == NULL)
        return &job->dead;
    int f = sp_schema_find(schema, field);
    if (f < 0) {
        sp_job_set_error(job, "key_by: '%s' has no field '%s'", schema->name ? schema->name : "?",
                         field ? field : "(null)");
        return &job->dead;
    }
    struct sp_node *n = node_add(job, SP_NODE_KEY_BY, "key_by", &in, 1, schema);
    if (n == NULL)
        return &job->dead;
    n->keyed = true;
    n->key = (struct sp_keyspec){
        .field = f, .type = schema->fields[f].type, .offset = schema->fields[f].offset};
    return stream_of(job, n);
}

struct sp_stream *sp_key_by_fn(struct sp_stream *in, sp_key_fn *fn, void *ctx)
{
    struct sp_job *job = in->job;
    if (fn == NULL) {
        sp_job_set_error(job, "key_by: no key function given");
        return &job->dead;
    }
    struct sp_node *n = node_add(job, SP_NODE_KEY_BY, "key_by", &in, 1, sp_stream_schema(in));
    if (n == NULL)
        return &job->dead;
    n->keyed = true;
    n->key = (struct sp_keyspec){.field = -1, .type = SP_T_STR, .fn = fn, .ctx = ctx};
    return stream_of(job, n);
}

static struct sp_node *keyed_input(struct sp_stream *in, const char *what)
{
    struct sp_node *n = node_of(in);
    if (n == NULL)
        return NULL;
    if (n->kind != SP_NODE_KEY_BY) {
        sp_job_set_error(in->job, "%s: needs a keyed stream (the output of key_by)", what);
        return NULL;
    }
    return n;
}

static const struct sp_schema agg_placeholder = {"agg", sizeof(struct sp_agg_row), 0, NULL};

static struct sp_node *agg_node(struct sp_stream *keyed, enum sp_node_kind kind, const char *name,
                                const struct sp_agg *agg)
{
    struct sp_job *job = keyed->job;
    struct sp_node *kn = keyed_input(keyed, name);
    if (kn == NULL)
        return NULL;
    if (agg == NULL) {
        sp_job_set_error(job, "%s: no aggregate given", name);
        return NULL;
    }
    struct sp_node *n = node_add(job, kind, name, &keyed, 1, &agg_placeholder);
    if (n == NULL)
        return NULL;
    n->keyed = true;
    n->key = kn->key;
    if (sp_agg_prepare(job, n, agg, kn->schema) < 0)
        return NULL;
    n->schema = &n->agg_schema;
    return n;
}

struct sp_stream *sp_window_aggregate(struct sp_stream *keyed, const struct sp_window *window,
                                      const struct sp_agg *agg, struct sp_stream **late_out)
{
    struct sp_job *job = keyed->job;
    if (late_out != NULL)
        *late_out = &job->dead;
    if (window == NULL) {
        sp_job_set_error(job, "window: no window given");
        return &job->dead;
    }
    const struct sp_window *w = window;
    const char *bad = NULL;
    switch (w->kind) {
    case SP_WINDOW_TUMBLING:
        if (w->size_ms <= 0)
            bad = "a tumbling window needs size_ms > 0";
        else if (w->offset_ms < 0 || w->offset_ms >= w->size_ms)
            bad = "offset_ms must lie in [0, size_ms)";
        break;
    case SP_WINDOW_HOPPING:
        if (w->size_ms <= 0 || w->slide_ms <= 0)
            bad = "a hopping window needs size_ms > 0 and slide_ms > 0";
        else if (w->size_ms / w->slide_ms > 1000)
            bad = "a hopping window may overlap at most 1000 windows (size_ms / slide_ms)";
        else if (w->offset_ms < 0 || w->offset_ms >= w->slide_ms)
            bad = "offset_ms must lie in [0, slide_ms)";
        break;
    case SP_WINDOW_SESSION:
        if (w->gap_ms <= 0)
            bad = "a session window needs gap_ms > 0";
        break;
    case SP_WINDOW_GLOBAL:
        if (w->count == 0)
            bad = "a global window needs a count trigger (count > 0)";
        break;
    default:
        bad = "unknown window kind";
    }
    if (bad == NULL && w->allowed_lateness_ms < 0)
        bad = "allowed_lateness_ms cannot be negative";
    if (bad != NULL) {
        sp_job_set_error(job, "window: %s", bad);
        return &job->dead;
    }
    if (w->kind == SP_WINDOW_SESSION && agg != NULL && agg->kind == SP_AGG_USER && agg->user &&
        agg->user->merge == NULL) {
        sp_job_set_error(job, "window: session windows merge, so a user aggregate needs merge()");
        return &job->dead;
    }
    struct sp_node *n = agg_node(keyed, SP_NODE_WINDOW, "window", agg);
    if (n == NULL)
        return &job->dead;
    n->vt = &sp_window_vt;
    n->u.window.window = *w;
    n->u.window.late_node = UINT32_MAX;
    if (late_out != NULL) {
        struct sp_stream *ws = stream_of(job, n);
        struct sp_node *late =
            node_add(job, SP_NODE_LATE, "late", &ws, 1, job->nodes[n->inputs[0]]->schema);
        if (late == NULL)
            return &job->dead;
        n->u.window.late_node = late->id;
        *late_out = stream_of(job, late);
    }
    return stream_of(job, n);
}

struct sp_stream *sp_aggregate(struct sp_stream *keyed, const struct sp_agg *agg)
{
    struct sp_node *n = agg_node(keyed, SP_NODE_AGGREGATE, "aggregate", agg);
    if (n == NULL)
        return &keyed->job->dead;
    n->vt = &sp_aggregate_vt;
    return stream_of(keyed->job, n);
}

struct sp_stream *sp_process(struct sp_stream *keyed, const struct sp_schema *out_schema,
                             const struct sp_process_fn *fn)
{
    struct sp_job *job = keyed->job;
    struct sp_node *kn = keyed_input(keyed, "process");
    if (kn == NULL)
        return &job->dead;
    if (fn == NULL || fn->process == NULL) {
        sp_job_set_error(job, "process: a process() function is needed");
        return &job->dead;
    }
    struct sp_node *n = node_add(job, SP_NODE_PROCESS, "process", &keyed, 1, out_schema);
    if (n == NULL)
        return &job->dead;
    n->keyed = true;
    n->key = kn->key;
    n->vt = &sp_process_vt;
    n->u.process.fn = *fn;
    return stream_of(job, n);
}
