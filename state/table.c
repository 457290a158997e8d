/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state table over managed-memory segments; see sp_table.h. The
 * snapshot stream and its copy-on-write live in snapshot.c: here, every path
 * that hands out an entry the caller may write through stamps it with the
 * current version and, while a snapshot is active, lets snapshot.c copy the
 * entry's segment aside first (sp_table_note_write in table_int.h).
 *
 * TTL: the paths that hand out a writable entry (find, upsert, namespace
 * visits) delete an expired one instead and stamp a live one with the
 * clock; sp_table_get only looks. The cleanup's cursor (ttl_seg,
 * ttl_walk_off) is a place in a segment; whatever rewinds or frees that
 * segment puts it back to the segment's start, so a reused segment is never
 * read at a stale offset.
 */
#include "sp_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sp_keygroup.h"
#include "sp_log.h"
#include "table_int.h"

#define SLOT_EMPTY 0u
#define LOAD_NUM 3u /* grow when count > capacity * 3 / 4 */
#define LOAD_DEN 4u

/* ---- Segmented arrays ---- */

/* Takes a segment from `budget`, spilling cold state to make room when it
 * is full and there is a spill. 0 or -ENOBUFS. */
static int budget_take(struct sp_budget *budget, struct sp_spill *spill, void **seg)
{
    for (;;) {
        if (sp_budget_reserve(budget, seg) == 0)
            return 0;
        if (spill == NULL || sp_spill_reclaim(spill) < 0)
            return -ENOBUFS;
    }
}

static void segvec_init(struct sp_segvec *v, struct sp_budget *budget, struct sp_spill *spill,
                        uint32_t elem_shift)
{
    memset(v, 0, sizeof(*v));
    v->budget = budget;
    v->spill = spill;
    v->elem_shift = elem_shift;
    v->per_seg_shift = (uint32_t)__builtin_ctz(budget->pool->segment_bytes) - elem_shift;
}

static inline void *segvec_at(const struct sp_segvec *v, uint64_t i)
{
    return v->segs[i >> v->per_seg_shift] +
           ((size_t)(i & ((1ull << v->per_seg_shift) - 1)) << v->elem_shift);
}

/* Makes room for `len` elements (zeroed when `zero`). 0 or -ENOBUFS/-ENOMEM. */
static int segvec_resize(struct sp_segvec *v, uint64_t len, bool zero)
{
    uint64_t need = (len + (1ull << v->per_seg_shift) - 1) >> v->per_seg_shift;
    if (need > UINT32_MAX)
        return -ENOBUFS;
    if (need > v->seg_count) {
        uint8_t **segs = realloc(v->segs, need * sizeof(*segs));
        if (segs == NULL)
            return -ENOMEM;
        v->segs = segs;
        while (v->seg_count < need) {
            void *seg;
            if (budget_take(v->budget, v->spill, &seg) < 0)
                return -ENOBUFS;
            if (zero)
                memset(seg, 0, v->budget->pool->segment_bytes);
            v->segs[v->seg_count++] = seg;
        }
    }
    v->len = len;
    return 0;
}

static void segvec_free(struct sp_segvec *v)
{
    for (uint32_t i = 0; i < v->seg_count; i++)
        sp_budget_release(v->budget, v->segs[i]);
    free(v->segs);
    v->segs = NULL;
    v->seg_count = 0;
    v->len = 0;
}

/* ---- Index ---- */

static inline uint64_t *slot_at(const struct sp_table *t, uint64_t pos)
{
    return segvec_at(&t->slots, pos);
}

static inline uint64_t slot_make(uint64_t hash, uint32_t ref)
{
    return ((uint64_t)(uint32_t)hash << 32) | ((uint64_t)ref + 1);
}

static inline uint32_t slot_ref(uint64_t slot)
{
    return (uint32_t)slot - 1;
}

static int index_alloc(struct sp_table *t, struct sp_segvec *v, uint64_t capacity)
{
    segvec_init(v, t->config.budget, t->config.spill, 3);
    uint64_t per_seg = 1ull << v->per_seg_shift;
    if (capacity < per_seg)
        capacity = per_seg;
    int rc = segvec_resize(v, capacity, true);
    if (rc < 0)
        segvec_free(v);
    return rc;
}

static void index_set_capacity(struct sp_table *t, uint64_t capacity)
{
    t->mask = capacity - 1;
    t->grow_at = capacity / LOAD_DEN * LOAD_NUM;
}

/* Rehashes the index into `capacity` slots (a power of two, larger). */
static int index_resize(struct sp_table *t, uint64_t capacity)
{
    if (capacity > (1ull << 31))
        return -ENOBUFS;
    struct sp_segvec fresh;
    int rc = index_alloc(t, &fresh, capacity);
    if (rc < 0)
        return rc;
    uint64_t mask = capacity - 1;
    for (uint64_t i = 0; i <= t->mask; i++) {
        uint64_t s = *slot_at(t, i);
        if (s == SLOT_EMPTY)
            continue;
        uint64_t pos = (s >> 32) & mask;
        while (*(uint64_t *)segvec_at(&fresh, pos) != SLOT_EMPTY)
            pos = (pos + 1) & mask;
        *(uint64_t *)segvec_at(&fresh, pos) = s;
    }
    segvec_free(&t->slots);
    t->slots = fresh;
    index_set_capacity(t, capacity);
    return 0;
}

static int index_grow(struct sp_table *t)
{
    return index_resize(t, (t->mask + 1) * 2);
}

int sp_table_reserve(struct sp_table *t, uint64_t count)
{
    if (count <= t->grow_at)
        return 0;
    uint64_t capacity = (t->mask + 1) * 2;
    while (capacity / LOAD_DEN * LOAD_NUM < count && capacity <= (1ull << 31))
        capacity *= 2;
    return index_resize(t, capacity); /* one rehash, not one per doubling */
}

/* ---- Entry segments ---- */

static int seg_new(struct sp_table *t, uint32_t key_group, uint32_t *seg_out)
{
    uint32_t no;
    if (t->seg_free_count > 0) {
        no = t->seg_free[--t->seg_free_count];
    } else {
        if (t->seg_count == t->seg_cap) {
            uint32_t cap = t->seg_cap ? t->seg_cap * 2 : 16;
            if ((uint64_t)cap > (1ull << (32 - t->off_bits)) - 1)
                cap = (uint32_t)((1ull << (32 - t->off_bits)) - 1);
            if (cap <= t->seg_count)
                return -ENOBUFS;
            struct sp_table_seg *segs = realloc(t->segs, cap * sizeof(*segs));
            if (segs == NULL)
                return -ENOMEM;
            t->segs = segs;
            uint32_t *free_list = realloc(t->seg_free, cap * sizeof(*free_list));
            if (free_list == NULL)
                return -ENOMEM;
            t->seg_free = free_list;
            t->seg_cap = cap;
        }
        no = t->seg_count++;
        t->segs[no].base = NULL;
    }
    void *base;
    if (budget_take(t->config.budget, t->config.spill, &base) < 0) {
        t->segs[no].base = NULL;
        t->segs[no].slot = 0;
        t->seg_free[t->seg_free_count++] = no;
        return -ENOBUFS;
    }
    uint32_t now = t->spill_gen;
    /* A fresh segment holds no entry of the snapshot being streamed (if
     * any): its snap_seq tells the walker to skip it. */
    t->segs[no] = (struct sp_table_seg){.base = base,
                                        .key_group = key_group,
                                        .used = 0,
                                        .live = 0,
                                        .version = t->version,
                                        .snap_seq = t->snap.seq,
                                        .slot = 0,
                                        .touch = now,
                                        .seen = now - 1};
    *seg_out = no;
    return 0;
}

static void seg_release(struct sp_table *t, uint32_t no)
{
    if (no == t->ttl_seg)
        t->ttl_walk_off = 0;
    sp_budget_release(t->config.budget, t->segs[no].base);
    t->segs[no].base = NULL;
    t->seg_free[t->seg_free_count++] = no;
}

/* ---- Spilling (see sp_spill.h) ---- */

/* The budget is full and nothing more fits the spill file: segment `no`
 * is read into ordinary memory so its file slot can take a cold segment's
 * place, then into the budget. 1 with `*base` holding it, or -ENOBUFS with
 * the segment still on disk; a read or write error is sticky. */
static int load_swapping(struct sp_table *t, uint32_t no, void **base)
{
    struct sp_spill *sp = t->config.spill;
    struct sp_table_seg *seg = &t->segs[no];
    uint8_t *tmp = malloc(1u << t->seg_shift);
    if (tmp == NULL)
        return -ENOBUFS;
    int rc = sp_spill_read(sp, seg->slot - 1, tmp);
    if (rc < 0) {
        free(tmp);
        sp_error("state spill: table %s: cannot read a spilled segment back: %s",
                 t->config.name ? t->config.name : "?", strerror(-rc));
        sp->err = rc;
        return rc;
    }
    sp_spill_free(sp, seg->slot - 1);
    seg->slot = 0;
    rc = budget_take(t->config.budget, sp, base);
    if (rc == 0) {
        memcpy(*base, tmp, 1u << t->seg_shift);
        free(tmp);
        return 1;
    }
    /* Still no room (everything pinned): back to its slot, free again. */
    uint32_t slot;
    uint8_t *segs[1] = {tmp};
    rc = sp_spill_write(sp, segs, 1, &slot);
    free(tmp);
    if (rc < 0) {
        sp_error("state spill: table %s: cannot write a segment back: %s",
                 t->config.name ? t->config.name : "?", strerror(-rc));
        sp->err = rc;
        return rc;
    }
    seg->slot = slot + 1;
    return -ENOBUFS;
}

struct sp_table_entry *sp_table_entry_load(struct sp_table *t, uint32_t ref)
{
    struct sp_spill *sp = t->config.spill;
    uint32_t no = ref >> t->off_bits;
    struct sp_table_seg *seg = &t->segs[no];
    SP_ASSERT(sp != NULL && seg->base == NULL);
    if (sp->err != 0)
        return NULL; /* and a segment lost with it has no slot: never read */
    SP_ASSERT(seg->slot != 0);
    void *base;
    int rc = budget_take(t->config.budget, sp, &base);
    if (rc < 0 && sp->err == 0)
        rc = load_swapping(t, no, &base);
    if (rc < 0 && sp->err != 0)
        return NULL; /* the swap said why */
    if (rc == 1) {   /* read back by the swap */
        seg->base = base;
        seg->touch = t->spill_gen;
        seg->seen = seg->touch - 1;
        return (struct sp_table_entry *)(seg->base +
                                         ((size_t)(ref & ((1u << t->off_bits) - 1)) << 3));
    }
    if (rc < 0) {
        sp_error("state spill: table %s: no memory to read a spilled segment back into: "
                 "everything in memory was used since the operator last returned; raise the "
                 "managed memory",
                 t->config.name ? t->config.name : "?");
        sp->err = rc;
        return NULL;
    }
    rc = sp_spill_read(sp, seg->slot - 1, base);
    if (rc < 0) {
        sp_budget_release(t->config.budget, base);
        sp_error("state spill: table %s: cannot read a spilled segment back: %s",
                 t->config.name ? t->config.name : "?", strerror(-rc));
        sp->err = rc;
        return NULL;
    }
    sp_spill_free(sp, seg->slot - 1);
    seg->slot = 0;
    seg->base = base;
    seg->touch = t->spill_gen;
    seg->seen = seg->touch - 1;
    return (struct sp_table_entry *)(seg->base + ((size_t)(ref & ((1u << t->off_bits) - 1)) << 3));
}

/* Whether the clock may spill segment `no` of `t` now (and gives the
 * second chance on the way). */
static bool spill_candidate(struct sp_table *t, uint32_t no, bool open_too)
{
    struct sp_table_seg *seg = &t->segs[no];
    uint32_t now = t->spill_gen;
    if (seg->base == NULL || seg->touch == now || seg->live == 0)
        return false; /* free, spilled, pinned, or nothing to keep */
    if (!open_too && t->open_seg[seg->key_group - t->config.key_group_first] == no)
        return false; /* being filled: spilled, it would close half empty */
    if (seg->seen != seg->touch) {
        seg->seen = seg->touch;
        return false;
    }
    return true;
}

void sp_spill_unpin(struct sp_spill *s)
{
    for (uint32_t i = 0; i < s->table_count; i++)
        s->tables[i]->spill_gen++;
}

/* The clock's sweep: up to `batch` segments to spill, two turns at most (the
 * first may only take second chances away); segments being filled only
 * with `open_too`. Their count. */
static uint32_t sweep(struct sp_spill *s, uint32_t batch, bool open_too, struct sp_table **owners,
                      uint32_t *nos, uint8_t **bases)
{
    uint64_t left = 2;
    for (uint32_t i = 0; i < s->table_count; i++)
        left += 2 * ((uint64_t)s->tables[i]->seg_count + 1);
    uint32_t n = 0;
    while (n < batch && left > 0 && s->table_count > 0) {
        left--;
        if (s->hand_table >= s->table_count) {
            s->hand_table = 0;
            s->hand_seg = 0;
        }
        struct sp_table *t = s->tables[s->hand_table];
        if (s->hand_seg >= t->seg_count) {
            s->hand_table++;
            s->hand_seg = 0;
            continue;
        }
        uint32_t no = s->hand_seg++;
        if (!spill_candidate(t, no, open_too))
            continue;
        owners[n] = t;
        nos[n] = no;
        bases[n] = t->segs[no].base;
        t->segs[no].touch = t->spill_gen; /* not chosen twice in this sweep */
        n++;
    }
    return n;
}

int sp_spill_reclaim(struct sp_spill *s)
{
    uint8_t *bases[SP_SPILL_BATCH_MAX];
    struct sp_table *owners[SP_SPILL_BATCH_MAX];
    uint32_t nos[SP_SPILL_BATCH_MAX];
    uint32_t slots[SP_SPILL_BATCH_MAX];
    uint32_t batch = s->config.batch;
    if (sp_spill_room(s) < batch)
        batch = (uint32_t)sp_spill_room(s);
    if (batch == 0) {
        s->stats.write_errors++;
        if (s->stats.write_errors == 1)
            sp_warn("state spill: the spill file is full (%llu bytes)",
                    (unsigned long long)s->slot_max * s->seg_bytes);
        return -ENOSPC;
    }
    uint32_t n = sweep(s, batch, false, owners, nos, bases);
    if (n == 0) /* only segments being filled are left: they go too */
        n = sweep(s, batch, true, owners, nos, bases);
    if (n == 0)
        return -ENOBUFS;
    int rc = sp_spill_write(s, bases, n, slots);
    if (rc < 0) {
        if (s->stats.write_errors == 1 || rc != -ENOSPC)
            sp_warn("state spill: cannot write to the spill file: %s", strerror(-rc));
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct sp_table_seg *seg = &owners[i]->segs[nos[i]];
        sp_budget_release(owners[i]->config.budget, seg->base);
        seg->base = NULL;
        seg->slot = slots[i] + 1;
    }
    return 0;
}

/* A spilled segment's bytes, read into `buf` (one segment) without taking
 * it back: for walks that only read (snapshots, foreach). NULL on failure,
 * with the spill's sticky error set. */
const uint8_t *sp_table_seg_peek(struct sp_table *t, uint32_t no, uint8_t *buf)
{
    struct sp_spill *sp = t->config.spill;
    SP_ASSERT(sp != NULL && t->segs[no].slot != 0);
    if (sp->err != 0)
        return NULL;
    int rc = sp_spill_read(sp, t->segs[no].slot - 1, buf);
    if (rc < 0) {
        sp_error("state spill: table %s: cannot read a spilled segment: %s",
                 t->config.name ? t->config.name : "?", strerror(-rc));
        sp->err = rc;
        return NULL;
    }
    return buf;
}

/* ---- Namespace lists ---- */

static int64_t *heap_at(struct sp_table *t, uint64_t i)
{
    return segvec_at(&t->heap, i);
}

static int heap_push(struct sp_table *t, int64_t ns)
{
    uint64_t i = t->heap.len;
    int rc = segvec_resize(&t->heap, i + 1, false);
    if (rc < 0)
        return rc;
    while (i > 0) {
        uint64_t parent = (i - 1) / 2;
        int64_t p = *heap_at(t, parent);
        if (p <= ns)
            break;
        *heap_at(t, i) = p;
        i = parent;
    }
    *heap_at(t, i) = ns;
    return 0;
}

static void heap_pop(struct sp_table *t)
{
    uint64_t n = --t->heap.len;
    if (n == 0)
        return;
    int64_t last = *heap_at(t, n);
    uint64_t i = 0;
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && *heap_at(t, c + 1) < *heap_at(t, c))
            c++;
        int64_t v = *heap_at(t, c);
        if (last <= v)
            break;
        *heap_at(t, i) = v;
        i = c;
    }
    *heap_at(t, i) = last;
}

/* The directory entry of namespace `ns`: the last one used is cached (its
 * address is stable until it is deleted, which clears the cache). */
static struct sp_table_entry *dir_entry(struct sp_table *t, int64_t ns)
{
    if (t->ns_cache != NULL && t->ns_cache_key == ns)
        return t->ns_cache;
    struct sp_table_entry *d =
        sp_table_find(t->dir, sp_key_hash(&ns, sizeof(ns)), &ns, sizeof(ns), 0);
    if (d != NULL) {
        t->ns_cache = d;
        t->ns_cache_key = ns;
    }
    return d;
}

static void dir_delete(struct sp_table *t, struct sp_table_entry *d)
{
    if (t->ns_cache == d)
        t->ns_cache = NULL;
    sp_table_delete(t->dir, d);
}

static struct sp_table_ns *dir_find(struct sp_table *t, int64_t ns)
{
    struct sp_table_entry *d = dir_entry(t, ns);
    return d ? sp_table_value(t->dir, d) : NULL;
}

static inline struct sp_table_ns_block *block_at(const struct sp_table *t, uint32_t i)
{
    return segvec_at(&t->blocks, i);
}

static int block_alloc(struct sp_table *t, uint32_t *out)
{
    uint32_t i = t->block_free;
    if (i != SP_TABLE_REF_NONE) {
        t->block_free = block_at(t, i)->next;
    } else {
        if (t->blocks.len >= SP_TABLE_REF_NONE - 1)
            return -ENOBUFS;
        int rc = segvec_resize(&t->blocks, t->blocks.len + 1, false);
        if (rc < 0)
            return rc;
        i = (uint32_t)t->blocks.len - 1;
    }
    *out = i;
    return 0;
}

static void block_release(struct sp_table *t, uint32_t i)
{
    block_at(t, i)->next = t->block_free;
    t->block_free = i;
}

/* Appends entry `e` (reference `ref`) to a namespace's list. */
static int list_append(struct sp_table *t, struct sp_table_ns *list, struct sp_table_entry *e,
                       uint32_t ref)
{
    struct sp_table_ns_block *b = list->tail == SP_TABLE_REF_NONE ? NULL : block_at(t, list->tail);
    if (b == NULL || b->used == SP_TABLE_NS_BLOCK_REFS) {
        uint32_t fresh;
        int rc = block_alloc(t, &fresh);
        if (rc < 0)
            return rc;
        b = block_at(t, fresh);
        *b = (struct sp_table_ns_block){
            .next = SP_TABLE_REF_NONE, .prev = list->tail, .used = 0, .live = 0};
        if (list->tail != SP_TABLE_REF_NONE)
            block_at(t, list->tail)->next = fresh;
        else
            list->head = fresh;
        list->tail = fresh;
    }
    e->ns_block = list->tail;
    e->ns_slot = b->used;
    b->refs[b->used++] = ref;
    b->live++;
    list->count++;
    return 0;
}

/* Unlinks and frees a block of a namespace's list. */
static void block_unlink(struct sp_table *t, struct sp_table_ns *list, uint32_t i)
{
    struct sp_table_ns_block *b = block_at(t, i);
    if (b->prev != SP_TABLE_REF_NONE)
        block_at(t, b->prev)->next = b->next;
    else
        list->head = b->next;
    if (b->next != SP_TABLE_REF_NONE)
        block_at(t, b->next)->prev = b->prev;
    else
        list->tail = b->prev;
    block_release(t, i);
}

static void list_remove(struct sp_table *t, struct sp_table_ns *list,
                        const struct sp_table_entry *e)
{
    struct sp_table_ns_block *b = block_at(t, e->ns_block);
    SP_ASSERT(b->refs[e->ns_slot] != SP_TABLE_REF_NONE);
    b->refs[e->ns_slot] = SP_TABLE_REF_NONE;
    list->count--;
    if (--b->live == 0)
        block_unlink(t, list, e->ns_block);
}

/* The first live entry from block `i`, slot `slot` on (the caller may
 * write through it: it counts as a write). Expired entries on the way are
 * deleted; a block whose last entry that was goes back, so its successor
 * is read first. */
static struct sp_table_entry *list_scan(struct sp_table *t, uint32_t i, uint32_t slot)
{
    while (i != SP_TABLE_REF_NONE) {
        const struct sp_table_ns_block *b = block_at(t, i);
        uint32_t next = b->next;
        bool released = false;
        for (; slot < b->used; slot++) {
            uint32_t ref = b->refs[slot];
            if (ref == SP_TABLE_REF_NONE)
                continue;
            struct sp_table_entry *e = sp_table_entry_at(t, ref);
            if (SP_UNLIKELY(e == NULL))
                return NULL; /* could not be read back: the spill's error says so */
            if (SP_UNLIKELY(sp_table_expired(t, e))) {
                released = b->live == 1;
                sp_table_delete(t, e);
                if (released)
                    break;
                continue;
            }
            sp_table_note_write(t, e, ref >> t->off_bits);
            if (t->config.ttl_ms != 0)
                sp_table_ttl_stamp(t, e, t->ttl_now_ms);
            return e;
        }
        i = released ? next : b->next;
        slot = 0;
    }
    return NULL;
}

static void entry_kill(struct sp_table *t, struct sp_table_entry *e, uint32_t ref);

/* ---- The table ---- */

int sp_table_init(struct sp_table *t, const struct sp_table_config *config)
{
    memset(t, 0, sizeof(*t));
    if (config->budget == NULL || config->key_group_count == 0 || config->key_groups_total == 0 ||
        config->key_groups_total > SP_KEY_GROUPS_MAX ||
        config->key_group_first + config->key_group_count > config->key_groups_total)
        return -EINVAL;
    t->config = *config;
    if (t->config.snapshot_held_bytes_max == 0)
        t->config.snapshot_held_bytes_max = SP_TABLE_SNAPSHOT_HELD_BYTES_DEFAULT;
    t->version = 1; /* snapshot versions start at 1: a delta's `since` 0 means none */
    uint32_t seg_bytes = config->budget->pool->segment_bytes;
    t->seg_shift = (uint32_t)__builtin_ctz(seg_bytes);
    t->off_bits = t->seg_shift - 3;
    t->value_off = sizeof(struct sp_table_entry);
    if (config->ttl_ms > 0) {
        if (config->ns_order) {
            t->ttl_off = t->value_off;
            t->value_off += sizeof(uint64_t);
        } else {
            t->ttl_off = offsetof(struct sp_table_entry, ns_block);
        }
        if (t->config.ttl_cleanup_entries == 0)
            t->config.ttl_cleanup_entries = SP_TABLE_TTL_CLEANUP_DEFAULT;
    }
    t->key_off = t->value_off + ((config->value_bytes + 7u) & ~7u);
    if (t->key_off + 8 > seg_bytes)
        return -EINVAL;
    t->open_seg = malloc(config->key_group_count * sizeof(*t->open_seg));
    if (t->open_seg == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < config->key_group_count; i++)
        t->open_seg[i] = SP_TABLE_REF_NONE;
    int rc;
    if (config->spill != NULL) {
        if (config->spill->budget != config->budget) {
            rc = -EINVAL;
            goto fail;
        }
        if ((rc = sp_spill_attach(config->spill, t)) < 0)
            goto fail;
        t->spill_attached = true;
    }
    rc = index_alloc(t, &t->slots, 0);
    if (rc < 0)
        goto fail;
    index_set_capacity(t, t->slots.len);
    if (config->ns_order) {
        t->dir = malloc(sizeof(*t->dir));
        if (t->dir == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        struct sp_table_config dc = {
            .name = config->name,
            .value_bytes = sizeof(struct sp_table_ns),
            .key_group_first = 0,
            .key_group_count = 1,
            .key_groups_total = 1,
            .ns_order = false,
            .budget = config->budget,
            .spill = config->spill,
        };
        rc = sp_table_init(t->dir, &dc);
        if (rc < 0) {
            free(t->dir);
            t->dir = NULL;
            goto fail;
        }
        /* Its entries are list heads the table keeps pointers to: they
         * stay in memory, only making room through the spill. */
        if (t->dir->spill_attached) {
            sp_spill_detach(config->spill, t->dir);
            t->dir->spill_attached = false;
        }
        segvec_init(&t->heap, config->budget, config->spill, 3);
        segvec_init(&t->blocks, config->budget, config->spill, 6);
        t->block_free = SP_TABLE_REF_NONE;
    }
    return 0;
fail:
    sp_table_deinit(t);
    return rc;
}

void sp_table_deinit(struct sp_table *t)
{
    sp_table_snap_deinit(t);
    if (t->spill_attached)
        sp_spill_detach(t->config.spill, t);
    for (uint32_t i = 0; i < t->seg_count; i++) {
        if (t->segs[i].base != NULL)
            sp_budget_release(t->config.budget, t->segs[i].base);
        else if (t->segs[i].slot != 0)
            sp_spill_free(t->config.spill, t->segs[i].slot - 1);
    }
    free(t->segs);
    free(t->seg_free);
    free(t->open_seg);
    if (t->slots.segs != NULL)
        segvec_free(&t->slots);
    if (t->dir != NULL) {
        sp_table_deinit(t->dir);
        free(t->dir);
        segvec_free(&t->heap);
        segvec_free(&t->blocks);
    }
    memset(t, 0, sizeof(*t));
}

uint32_t sp_table_segments(const struct sp_table *t)
{
    uint32_t n = t->seg_count - t->seg_free_count + t->slots.seg_count;
    if (t->dir != NULL)
        n += sp_table_segments(t->dir) + t->heap.seg_count + t->blocks.seg_count;
    return n;
}

static inline bool entry_matches(const struct sp_table *t, const struct sp_table_entry *e,
                                 uint64_t hash, const void *key, uint32_t key_len, int64_t ns)
{
    if (e->hash != hash || e->ns != ns || e->key_len != key_len)
        return false;
    if (key_len == 8) { /* integer keys: one compare */
        uint64_t a, b;
        memcpy(&a, sp_table_key(t, e), 8);
        memcpy(&b, key, 8);
        return a == b;
    }
    return memcmp(sp_table_key(t, e), key, key_len) == 0;
}

/* Where (hash, ns) lives in the index: the key's hash, mixed with the
 * namespace when the table asks (ns 0 is the key's own place either way). */
static inline uint64_t pos_hash(const struct sp_table *t, uint64_t hash, int64_t ns)
{
    if (!t->config.ns_in_hash || ns == 0)
        return hash;
    uint64_t z = (uint64_t)ns + 0x9E3779B97F4A7C15ULL; /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return hash ^ z ^ (z >> 31);
}

/* TTL tables: entry `e` (reference `ref`) was found by find or upsert: an
 * expired one is deleted (NULL), a live one is a write, stamped now. */
static struct sp_table_entry *ttl_found(struct sp_table *t, struct sp_table_entry *e, uint32_t ref)
{
    if (sp_table_expired(t, e)) {
        sp_table_delete(t, e);
        return NULL;
    }
    sp_table_note_write(t, e, ref >> t->off_bits);
    sp_table_ttl_stamp(t, e, t->ttl_now_ms);
    return e;
}

/* The entry of (hash, key, ns) and its reference, or NULL: the probe that
 * find and get share. */
static inline struct sp_table_entry *probe(struct sp_table *t, uint64_t hash, const void *key,
                                           uint32_t key_len, int64_t ns, uint32_t *ref)
{
    uint64_t ph = pos_hash(t, hash, ns);
    uint32_t tag = (uint32_t)ph;
    for (uint64_t pos = ph & t->mask;; pos = (pos + 1) & t->mask) {
        uint64_t s = *slot_at(t, pos);
        if (s == SLOT_EMPTY)
            return NULL;
        if ((uint32_t)(s >> 32) == tag) {
            struct sp_table_entry *e = sp_table_entry_at(t, slot_ref(s));
            if (SP_UNLIKELY(e == NULL))
                return NULL; /* could not be read back: the spill's error says so */
            if (entry_matches(t, e, hash, key, key_len, ns)) {
                *ref = slot_ref(s);
                return e;
            }
        }
    }
}

struct sp_table_entry *sp_table_find(struct sp_table *t, uint64_t hash, const void *key,
                                     uint32_t key_len, int64_t ns)
{
    uint32_t ref;
    struct sp_table_entry *e = probe(t, hash, key, key_len, ns, &ref);
    if (e == NULL)
        return NULL;
    if (SP_UNLIKELY(t->config.ttl_ms != 0))
        return ttl_found(t, e, ref);
    sp_table_note_write(t, e, ref >> t->off_bits);
    return e;
}

const struct sp_table_entry *sp_table_get(struct sp_table *t, uint64_t hash, const void *key,
                                          uint32_t key_len, int64_t ns)
{
    uint32_t ref;
    const struct sp_table_entry *e = probe(t, hash, key, key_len, ns, &ref);
    return e == NULL || SP_UNLIKELY(sp_table_expired(t, e)) ? NULL : e;
}

/* Appends an entry to its key group's open segment. */
static struct sp_table_entry *entry_alloc(struct sp_table *t, uint64_t hash, uint32_t key_len,
                                          uint32_t *ref_out, int *err)
{
    uint32_t group = sp_key_group(hash, t->config.key_groups_total);
    SP_ASSERT(group >= t->config.key_group_first &&
              group - t->config.key_group_first < t->config.key_group_count);
    uint32_t g = group - t->config.key_group_first;
    uint32_t bytes = (t->key_off + key_len + 7u) & ~7u;
    /* An entry of a cache line or less never straddles two: one miss per
     * lookup instead of two (segments are page-aligned). */
    if (bytes <= 64)
        bytes = bytes <= 32 ? 32 : 64;
    uint32_t seg_bytes = 1u << t->seg_shift;
    if (key_len > SP_TABLE_KEY_MAX || bytes > seg_bytes) {
        *err = -E2BIG;
        return NULL;
    }
    uint32_t no = t->open_seg[g];
    /* A new segment when the group's is full, or was spilled (it stays on
     * disk, closed: its room is not worth a read). */
    if (no == SP_TABLE_REF_NONE || t->segs[no].used + bytes > seg_bytes ||
        t->segs[no].base == NULL) {
        uint32_t fresh;
        int rc = seg_new(t, group, &fresh);
        if (rc < 0) {
            *err = rc;
            return NULL;
        }
        if (no != SP_TABLE_REF_NONE && t->segs[no].live == 0 && t->segs[no].base != NULL)
            seg_release(t, no);
        t->open_seg[g] = no = fresh;
    }
    struct sp_table_seg *seg = &t->segs[no];
    uint32_t off = seg->used;
    seg->used += bytes;
    seg->live++;
    seg->version = t->version;
    if (t->config.spill != NULL)
        seg->touch = t->spill_gen;
    *ref_out = (no << t->off_bits) | (off >> 3);
    struct sp_table_entry *e = (struct sp_table_entry *)(seg->base + off);
    e->bytes = bytes;
    return e;
}

/* Fills a new entry: header, its write time with a TTL, the value (`value`,
 * or zeroes when NULL) and the key. */
static void entry_init(struct sp_table *t, struct sp_table_entry *e, uint64_t hash, const void *key,
                       uint32_t key_len, int64_t ns, const void *value)
{
    e->hash = hash;
    e->ns = ns;
    e->key_len = key_len;
    e->ns_block = SP_TABLE_REF_NONE;
    e->ns_slot = 0;
    e->version = t->version;
    e->created = t->version;
    if (t->config.ttl_ms != 0)
        sp_table_ttl_stamp(t, e, t->ttl_now_ms);
    uint8_t *v = sp_table_value(t, e);
    uint32_t vb = value != NULL ? t->config.value_bytes : 0;
    if (vb > 0)
        memcpy(v, value, vb);
    memset(v + vb, 0, t->key_off - t->value_off - vb);
    memcpy((uint8_t *)e + t->key_off, key, key_len);
}

struct sp_table_entry *sp_table_upsert(struct sp_table *t, uint64_t hash, const void *key,
                                       uint32_t key_len, int64_t ns, bool *created, int *err)
{
    uint64_t ph = pos_hash(t, hash, ns);
    uint32_t tag = (uint32_t)ph;
    uint64_t pos = ph & t->mask;
    for (;; pos = (pos + 1) & t->mask) {
        uint64_t s = *slot_at(t, pos);
        if (s == SLOT_EMPTY)
            break;
        if ((uint32_t)(s >> 32) == tag) {
            struct sp_table_entry *e = sp_table_entry_at(t, slot_ref(s));
            if (SP_UNLIKELY(e == NULL)) {
                *err = -EIO; /* could not be read back: the spill's error says why */
                return NULL;
            }
            if (entry_matches(t, e, hash, key, key_len, ns)) {
                if (SP_UNLIKELY(t->config.ttl_ms != 0)) {
                    e = ttl_found(t, e, slot_ref(s));
                    if (e == NULL) /* expired and deleted: insert afresh */
                        return sp_table_upsert(t, hash, key, key_len, ns, created, err);
                    *created = false;
                    return e;
                }
                *created = false;
                sp_table_note_write(t, e, slot_ref(s) >> t->off_bits);
                return e;
            }
        }
    }
    int rc;
    if (t->count + 1 > t->grow_at) {
        rc = index_grow(t);
        if (rc < 0) {
            *err = rc;
            return NULL;
        }
        pos = ph & t->mask;
        while (*slot_at(t, pos) != SLOT_EMPTY)
            pos = (pos + 1) & t->mask;
    }
    struct sp_table_ns *list = NULL;
    if (t->dir != NULL) {
        struct sp_table_entry *d = dir_entry(t, ns);
        if (d == NULL) {
            bool fresh;
            d = sp_table_upsert(t->dir, sp_key_hash(&ns, sizeof(ns)), &ns, sizeof(ns), 0, &fresh,
                                err);
            if (d == NULL)
                return NULL;
            list = sp_table_value(t->dir, d);
            list->head = list->tail = SP_TABLE_REF_NONE;
            list->count = 0;
            rc = heap_push(t, ns);
            if (rc < 0) {
                sp_table_delete(t->dir, d);
                *err = rc;
                return NULL;
            }
            t->ns_cache = d;
            t->ns_cache_key = ns;
        }
        list = sp_table_value(t->dir, d);
    }
    uint32_t ref;
    struct sp_table_entry *e = entry_alloc(t, hash, key_len, &ref, err);
    if (e == NULL) {
        if (list != NULL && list->count == 0)
            dir_delete(t, dir_entry(t, ns));
        return NULL;
    }
    entry_init(t, e, hash, key, key_len, ns, NULL);
    if (list != NULL) {
        int rc_link = list_append(t, list, e, ref);
        if (rc_link < 0) {
            /* Undo the append: the entry is dead, its segment may empty. */
            entry_kill(t, e, ref);
            if (list->count == 0)
                dir_delete(t, dir_entry(t, ns));
            *err = rc_link;
            return NULL;
        }
    }
    *slot_at(t, pos) = slot_make(ph, ref);
    t->count++;
    *created = true;
    return e;
}

struct sp_table_entry *sp_table_insert_absent(struct sp_table *t, uint64_t hash, const void *key,
                                              uint32_t key_len, int64_t ns, const void *value,
                                              int *err)
{
    SP_ASSERT(t->dir == NULL);
    if (t->count + 1 > t->grow_at) {
        int rc = index_grow(t);
        if (rc < 0) {
            *err = rc;
            return NULL;
        }
    }
    uint32_t ref;
    struct sp_table_entry *e = entry_alloc(t, hash, key_len, &ref, err);
    if (e == NULL)
        return NULL;
    entry_init(t, e, hash, key, key_len, ns, value);
    uint64_t ph = pos_hash(t, hash, ns);
    uint64_t pos = ph & t->mask;
    while (*slot_at(t, pos) != SLOT_EMPTY)
        pos = (pos + 1) & t->mask;
    *slot_at(t, pos) = slot_make(ph, ref);
    t->count++;
    return e;
}

static uint32_t entry_ref(const struct sp_table *t, const struct sp_table_entry *e,
                          uint64_t *pos_out)
{
    for (uint64_t pos = pos_hash(t, e->hash, e->ns) & t->mask;; pos = (pos + 1) & t->mask) {
        uint64_t s = *slot_at(t, pos);
        SP_ASSERT(s != SLOT_EMPTY);
        if (sp_table_entry_resident(t, slot_ref(s)) == e) { /* e's segment is in memory */
            *pos_out = pos;
            return slot_ref(s);
        }
    }
}

/* Takes entry `e` (reference `ref`) out of the index. */
static void index_remove(struct sp_table *t, const struct sp_table_entry *e, uint32_t ref)
{
    uint64_t pos = pos_hash(t, e->hash, e->ns) & t->mask;
    for (;; pos = (pos + 1) & t->mask) {
        uint64_t s = *slot_at(t, pos);
        SP_ASSERT(s != SLOT_EMPTY);
        if (slot_ref(s) == ref)
            break;
    }
    /* Backward-shift deletion: pull later members of the probe run into the
     * hole when their home position does not lie between hole and them. */
    uint64_t hole = pos;
    for (uint64_t j = (hole + 1) & t->mask;; j = (j + 1) & t->mask) {
        uint64_t s = *slot_at(t, j);
        if (s == SLOT_EMPTY)
            break;
        uint64_t home = (s >> 32) & t->mask;
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            *slot_at(t, hole) = s;
            hole = j;
        }
    }
    *slot_at(t, hole) = SLOT_EMPTY;
    t->count--;
}

/* Marks `e` dead and returns its segment when it was the last one alive. */
static void entry_kill(struct sp_table *t, struct sp_table_entry *e, uint32_t ref)
{
    e->key_len |= SP_TABLE_DEAD;
    uint32_t no = ref >> t->off_bits;
    struct sp_table_seg *seg = &t->segs[no];
    seg->version = t->version;
    if (--seg->live == 0) {
        uint32_t g = seg->key_group - t->config.key_group_first;
        if (t->open_seg[g] == no) {
            /* Empty: append from its start again. A snapshot walking it
             * must not go on at its old offset: it holds nothing of it. */
            if (SP_UNLIKELY(t->snap.active))
                sp_table_snap_touch(t, no);
            if (no == t->ttl_seg)
                t->ttl_walk_off = 0;
            seg->used = 0;
        } else
            seg_release(t, no);
    }
}

void sp_table_delete(struct sp_table *t, struct sp_table_entry *e)
{
    SP_ASSERT((e->key_len & SP_TABLE_DEAD) == 0);
    uint64_t pos;
    uint32_t ref = entry_ref(t, e, &pos);
    if (SP_UNLIKELY(t->snap.ever))
        sp_table_snap_delete(t, e, ref >> t->off_bits);
    index_remove(t, e, ref);
    if (t->dir != NULL) {
        struct sp_table_entry *d = dir_entry(t, e->ns);
        SP_ASSERT(d != NULL);
        struct sp_table_ns *list = sp_table_value(t->dir, d);
        list_remove(t, list, e);
        if (list->count == 0)
            dir_delete(t, d);
    }
    entry_kill(t, e, ref);
}

/* Loads a block's entries (they are at random places). */
static void prefetch_block_entries(const struct sp_table *t, uint32_t i)
{
    if (i == SP_TABLE_REF_NONE)
        return;
    const struct sp_table_ns_block *b = block_at(t, i);
    for (uint32_t k = 0; k < b->used; k++) {
        if (b->refs[k] != SP_TABLE_REF_NONE) {
            const struct sp_table_entry *e = sp_table_entry_resident(t, b->refs[k]);
            if (e != NULL)
                __builtin_prefetch(e, 1);
        }
    }
}

bool sp_table_ns_drop(struct sp_table *t, int64_t ns,
                      void (*fn)(struct sp_table_entry *e, void *ctx), bool (*stop)(void *ctx),
                      void *ctx)
{
    SP_ASSERT(t->dir != NULL);
    struct sp_table_entry *d = dir_entry(t, ns);
    if (d == NULL)
        return true;
    struct sp_table_ns *list = sp_table_value(t->dir, d);
    /* A block at a time: its entries were loaded while the block before was
     * being processed; now their index slots are loaded together. */
    prefetch_block_entries(t, list->head);
    for (uint32_t i = list->head; i != SP_TABLE_REF_NONE;) {
        struct sp_table_ns_block *b = block_at(t, i);
        uint32_t next = b->next;
        for (uint32_t k = 0; k < b->used; k++) {
            if (b->refs[k] != SP_TABLE_REF_NONE) {
                const struct sp_table_entry *e = sp_table_entry_resident(t, b->refs[k]);
                if (e != NULL)
                    sp_table_prefetch(t, pos_hash(t, e->hash, e->ns));
            }
        }
        prefetch_block_entries(t, next);
        for (uint32_t k = 0; k < b->used; k++) {
            uint32_t ref = b->refs[k];
            if (ref == SP_TABLE_REF_NONE)
                continue;
            struct sp_table_entry *e = sp_table_entry_at(t, ref);
            if (SP_UNLIKELY(e == NULL))
                continue; /* lost with its segment: the spill's error fails the job */
            if (SP_UNLIKELY(t->snap.ever))
                sp_table_snap_delete(t, e, ref >> t->off_bits);
            if (fn != NULL && !sp_table_expired(t, e))
                fn(e, ctx);
            index_remove(t, e, ref);
            entry_kill(t, e, ref);
            list->count--;
        }
        block_release(t, i);
        i = next;
        if (i != SP_TABLE_REF_NONE && stop != NULL && stop(ctx)) {
            list->head = i;
            block_at(t, i)->prev = SP_TABLE_REF_NONE;
            return false;
        }
    }
    list->head = list->tail = SP_TABLE_REF_NONE;
    SP_ASSERT(list->count == 0 || (t->config.spill != NULL && sp_spill_error(t->config.spill)));
    dir_delete(t, d);
    return true;
}

bool sp_table_ns_min(struct sp_table *t, int64_t *ns)
{
    SP_ASSERT(t->dir != NULL);
    while (t->heap.len > 0) {
        int64_t top = *heap_at(t, 0);
        struct sp_table_ns *list = dir_find(t, top);
        if (list != NULL && list->count > 0) {
            *ns = top;
            return true;
        }
        heap_pop(t); /* stale: its namespace emptied since it was pushed */
    }
    return false;
}

struct sp_table_entry *sp_table_ns_first(struct sp_table *t, int64_t ns)
{
    SP_ASSERT(t->dir != NULL);
    struct sp_table_ns *list = dir_find(t, ns);
    if (list == NULL)
        return NULL;
    return list_scan(t, list->head, 0);
}

uint64_t sp_table_ns_count(struct sp_table *t, int64_t ns)
{
    struct sp_table_ns *list = dir_find(t, ns);
    return list ? list->count : 0;
}

void sp_table_foreach(struct sp_table *t, void (*fn)(struct sp_table_entry *e, void *ctx),
                      void *ctx)
{
    for (uint32_t no = 0; no < t->seg_count; no++) {
        struct sp_table_seg *seg = &t->segs[no];
        uint8_t *base = seg->base;
        if (base == NULL && seg->slot != 0) /* spilled: a copy (fn must not write anyway) */
            base = (uint8_t *)sp_table_seg_peek(t, no, t->config.spill->peek);
        if (base == NULL)
            continue;
        seg->touch = t->spill_gen; /* pinned while fn visits it */
        for (uint32_t off = 0; off < seg->used;) {
            struct sp_table_entry *e = (struct sp_table_entry *)(base + off);
            off += e->bytes;
            if ((e->key_len & SP_TABLE_DEAD) == 0 && !sp_table_expired(t, e))
                fn(e, ctx);
        }
    }
}

struct sp_table_entry *sp_table_ns_next(struct sp_table *t, const struct sp_table_entry *e)
{
    SP_ASSERT(t->dir != NULL && e->ns_block != SP_TABLE_REF_NONE);
    return list_scan(t, e->ns_block, e->ns_slot + 1);
}

/* ---- Time to live ---- */

uint64_t sp_table_write_ms(const struct sp_table *t, const struct sp_table_entry *e)
{
    SP_ASSERT(t->config.ttl_ms != 0);
    return sp_table_ttl_written(t, e);
}

/* Whether spilled segment `no` holds expired entries: 1, 0, or -1 when it
 * could not be read (the spill's error is set). Counts its entries as work. */
static int ttl_spilled_expired(struct sp_table *t, uint32_t no, uint32_t *work)
{
    const uint8_t *base = sp_table_seg_peek(t, no, t->config.spill->peek);
    if (base == NULL)
        return -1;
    int found = 0;
    for (uint32_t off = 0; off < t->segs[no].used;) {
        const struct sp_table_entry *e = (const struct sp_table_entry *)(base + off);
        if (e->bytes < t->key_off || e->bytes > t->segs[no].used - off)
            break; /* not a segment this table wrote: the load will tell */
        off += e->bytes;
        if (*work > 1)
            (*work)--; /* the caller's loop goes on while it is not 0 */
        if ((e->key_len & SP_TABLE_DEAD) == 0 && sp_table_ttl_written(t, e) < t->ttl_live_from)
            found = 1;
    }
    return found;
}

void sp_table_ttl_tick(struct sp_table *t, uint64_t now_ms)
{
    if (now_ms > t->ttl_now_ms)
        t->ttl_now_ms = now_ms;
    if (t->config.ttl_ms == 0)
        return;
    if (t->ttl_now_ms < t->config.ttl_ms)
        return; /* nothing can have expired yet */
    t->ttl_live_from = t->ttl_now_ms - t->config.ttl_ms + 1;
    /* One unit of work per entry looked at (dead ones too) and per segment
     * passed over, so a tick is bounded however sparse the segments. */
    uint32_t work = t->config.ttl_cleanup_entries;
    while (work > 0 && t->count > 0) {
        if (t->ttl_seg >= t->seg_count) {
            t->ttl_seg = 0;
            t->ttl_walk_off = 0;
        }
        const struct sp_table_seg *seg = &t->segs[t->ttl_seg];
        if (seg->base == NULL && seg->slot != 0 && t->ttl_walk_off == 0) {
            /* Spilled: read back only if it holds expired entries (they
             * would otherwise outlive their time on disk, in the index). */
            int found = ttl_spilled_expired(t, t->ttl_seg, &work);
            if (found < 0)
                return; /* the spill's error says why */
            if (found == 0) {
                t->ttl_seg++;
                work--; /* at least 1 was left: see ttl_spilled_expired */
                continue;
            }
            if (sp_table_entry_load(t, t->ttl_seg << t->off_bits) == NULL)
                return;
        }
        if (seg->base == NULL || t->ttl_walk_off >= seg->used) {
            t->ttl_seg++;
            t->ttl_walk_off = 0;
            work--;
            continue;
        }
        /* The segment's entries up to a delete (which may free or rewind
         * it: the cursor follows, see seg_release and entry_kill). */
        uint8_t *base = seg->base;
        uint32_t off = t->ttl_walk_off, used = seg->used;
        struct sp_table_entry *victim = NULL;
        while (work > 0 && off < used) {
            struct sp_table_entry *e = (struct sp_table_entry *)(base + off);
            SP_ASSERT(e->bytes >= t->key_off && e->bytes <= used - off);
            off += e->bytes;
            work--;
            if ((e->key_len & SP_TABLE_DEAD) == 0 &&
                sp_table_ttl_written(t, e) < t->ttl_live_from) {
                victim = e;
                break;
            }
        }
        t->ttl_walk_off = off;
        if (victim != NULL)
            sp_table_delete(t, victim);
    }
}
