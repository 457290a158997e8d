/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed process functions (Flink's KeyedProcessFunction): a user function
 * sees each record with its key's value state, sets event-time and
 * processing-time timers for the key, and emits rows; on_timer runs when a
 * timer is due.
 *
 * Everything is keyed state in sp_tables: the value state (key -> bytes),
 * the list state (namespace -1 holds a key's length, namespaces 0..len-1
 * its elements, so each is one lookup away), the map state (below), the
 * aggregating state (key -> the user aggregate's accumulator, created on
 * the first add), and one table per timer domain whose namespace is the
 * timer's time, with namespace order: a watermark
 * fires event-time timers by taking the smallest time first, and every
 * timer of that time in the order they were set. A timer is one entry, so
 * setting it twice fires it once; it is deleted before its callback runs,
 * so a callback may set it again. Processing-time timers are driven by one
 * shard timer armed at the earliest of them. The list, map and timer
 * tables place entries by key and namespace (ns_in_hash): a key may have
 * thousands.
 *
 * State TTL (state_ttl_ms): every state table but the timers' gets the
 * TTL, and their clock is ticked with the wall clock at open, at each input batch, each
 * watermark and each processing-time timer (each tick also deletes a
 * bounded number of expired entries). A list expires as a whole: its length
 * entry then also holds the time the list was created (its first append),
 * and a list created ttl or more ago is cleared when next touched. Every
 * element was written at or after that time, so none expires in a live
 * list; a length entry that expired in the table (not touched for ttl)
 * leaves its elements behind, unreachable (positions past the length are
 * never read, and an append over a left-behind element zeroes it) until
 * they expire too. Flink keeps a time per element instead and drops only
 * the expired ones, keeping the list's younger elements: here a list lives
 * at most ttl from its first append, younger elements included.
 *
 * Map state is two tables. The index ("process.map") is keyed by the
 * record key's length (u32), its bytes and the map key's bytes, hashed by
 * the record key (so the key group is the record key's: checkpoints,
 * restores and rescales keep a key's map together) with namespace = the map
 * key's hash (never 0) placed by ns_in_hash, so thousands of map entries of
 * one key spread over the index; its value is {u32 position, pad} and the
 * user's value at MAP_VALUE_OFF. The items ("process.map.keys") are laid
 * out like the list: namespace -1 the size (and the creation time with a
 * TTL), 0..size-1 {u32 length, the map key}, so the map is iterated by
 * position; a removal moves the last item into the hole and rewrites the
 * moved key's position (one index lookup); clearing deletes each item's
 * index entry. A map expires as a whole like a list (ttl after its first
 * put; later puts do not extend it) and is cleared, index entries
 * included, when next touched. Every call that writes an index entry or
 * item writes the head too, so neither outlives the head in the table: a
 * head that expired there (untouched for ttl) leaves only entries that
 * expired too. Even so, an index entry counts only when its position is
 * inside the map and the item there names its map key (one more lookup):
 * otherwise it is absent, and a put overwrites it. (A checkpoint of a run
 * with a TTL, restored into one without, may hold such entries.)
 *
 * The aggregating state has the value state's TTL: an accumulator expires
 * ttl after its last add (sp_pctx_agg_result reads without refreshing).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_op.h"

struct sp_pctx {
    struct sp_inst *inst;
    struct sp_table values;
    struct sp_table event_timers;
    struct sp_table proc_timers;
    struct sp_table list;
    struct sp_table map_index; /* (key, map key) -> {position, value} */
    struct sp_table map_items; /* key: -1 the size, 0..size-1 the map keys */
    struct sp_table aggs;
    bool has_values, has_event, has_proc, has_list, has_map, has_agg;
    uint64_t ttl_ms;    /* fn->state_ttl_ms */
    uint64_t opened_ms; /* the TTL clock at open, before any restore */
    struct sp_timer proc_timer;
    uint64_t proc_armed_ms; /* 0: not armed */
    bool proc_ended;        /* input ended: no new processing-time timers */
    /* the current key */
    uint64_t hash;
    struct sp_str key;
    uint8_t *key_copy; /* a firing timer's key (its entry is deleted first) */
    uint32_t key_cap;
    uint8_t *ikey; /* a map index key being built (map_ikey) */
    uint32_t ikey_cap;
};

void *sp_pctx_user(struct sp_pctx *c)
{
    return c->inst->node->u.process.fn.ctx;
}

struct sp_str sp_pctx_key(struct sp_pctx *c)
{
    return c->key;
}

struct sp_out *sp_pctx_out(struct sp_pctx *c)
{
    return &c->inst->out;
}

int64_t sp_pctx_watermark(struct sp_pctx *c)
{
    return c->inst->wm;
}

int64_t sp_pctx_now_ms(struct sp_pctx *c)
{
    (void)c;
    return sp_wall_ms();
}

static void state_full(struct sp_pctx *c, int err)
{
    sp_exec_fail(c->inst->xs, err,
                 "process: keyed state does not fit the shard's managed memory (raise --memory)");
}

void *sp_pctx_state(struct sp_pctx *c)
{
    if (!c->has_values)
        return NULL;
    bool created;
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(&c->values, c->hash, c->key.ptr, c->key.len, 0, &created, &err);
    if (e == NULL) {
        state_full(c, err);
        return NULL;
    }
    return sp_table_value(&c->values, e);
}

const void *sp_pctx_state_get(struct sp_pctx *c)
{
    if (!c->has_values)
        return NULL;
    const struct sp_table_entry *e = sp_table_get(&c->values, c->hash, c->key.ptr, c->key.len, 0);
    return e != NULL ? sp_table_value(&c->values, (struct sp_table_entry *)e) : NULL;
}

void *sp_pctx_state_find(struct sp_pctx *c)
{
    if (!c->has_values)
        return NULL;
    struct sp_table_entry *e = sp_table_find(&c->values, c->hash, c->key.ptr, c->key.len, 0);
    return e != NULL ? sp_table_value(&c->values, e) : NULL;
}

void sp_pctx_state_clear(struct sp_pctx *c)
{
    if (!c->has_values)
        return;
    struct sp_table_entry *e = sp_table_find(&c->values, c->hash, c->key.ptr, c->key.len, 0);
    if (e != NULL)
        sp_table_delete(&c->values, e);
}

/* ---- List state ---- */

#define LIST_HEAD_NS (-1)
#define LIST_CREATED_OFF 8 /* TTL: the head's creation time (u64 ms) */
#define LIST_HEAD_TTL_BYTES 16

/* A list head: its length (u32) and, with a TTL, the list's creation time.
 * Whether that list expired. */
static bool list_expired(struct sp_pctx *c, const uint32_t *head)
{
    if (c->ttl_ms == 0)
        return false;
    uint64_t created;
    memcpy(&created, (const uint8_t *)head + LIST_CREATED_OFF, sizeof(created));
    /* A list restored from a checkpoint taken without TTL has no creation
     * time; its entries were stamped at the restore, after open. */
    if (created == 0)
        created = c->opened_ms;
    uint64_t now = sp_table_ttl_now(&c->list);
    return now >= created && now - created >= c->ttl_ms;
}

/* The current key's list head (writable: a write), NULL when there is none
 * and `create` is false; an expired list is cleared first. */
static uint32_t *list_head(struct sp_pctx *c, bool create)
{
    if (!c->has_list)
        return NULL;
    if (!create) {
        struct sp_table_entry *e =
            sp_table_find(&c->list, c->hash, c->key.ptr, c->key.len, LIST_HEAD_NS);
        if (e != NULL && list_expired(c, sp_table_value(&c->list, e))) {
            sp_pctx_list_clear(c);
            return NULL;
        }
        return e != NULL ? sp_table_value(&c->list, e) : NULL;
    }
    for (;;) {
        bool created;
        int err = 0;
        struct sp_table_entry *e = sp_table_upsert(&c->list, c->hash, c->key.ptr, c->key.len,
                                                   LIST_HEAD_NS, &created, &err);
        if (e == NULL) {
            state_full(c, err);
            return NULL;
        }
        uint32_t *head = sp_table_value(&c->list, e);
        if (!created && list_expired(c, head)) {
            sp_pctx_list_clear(c);
            continue; /* created afresh next */
        }
        if (created && c->ttl_ms != 0) {
            uint64_t now = sp_table_ttl_now(&c->list);
            memcpy((uint8_t *)head + LIST_CREATED_OFF, &now, sizeof(now));
        }
        return head;
    }
}

static struct sp_table_entry *list_entry(struct sp_pctx *c, uint32_t i)
{
    return sp_table_find(&c->list, c->hash, c->key.ptr, c->key.len, (int64_t)i);
}

uint32_t sp_pctx_list_len(struct sp_pctx *c)
{
    if (!c->has_list)
        return 0;
    /* A read: no write unless the list expired. */
    const struct sp_table_entry *e =
        sp_table_get(&c->list, c->hash, c->key.ptr, c->key.len, LIST_HEAD_NS);
    if (e == NULL)
        return 0;
    const uint32_t *len = sp_table_value(&c->list, (struct sp_table_entry *)e);
    if (list_expired(c, len)) {
        sp_pctx_list_clear(c);
        return 0;
    }
    return *len;
}

void *sp_pctx_list_at(struct sp_pctx *c, uint32_t i)
{
    if (i >= sp_pctx_list_len(c))
        return NULL;
    struct sp_table_entry *e = list_entry(c, i);
    return e != NULL ? sp_table_value(&c->list, e) : NULL;
}

void *sp_pctx_list_append(struct sp_pctx *c)
{
    uint32_t *len = list_head(c, true);
    if (len == NULL)
        return NULL;
    bool created;
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(&c->list, c->hash, c->key.ptr, c->key.len, (int64_t)*len, &created, &err);
    if (e == NULL) {
        state_full(c, err);
        return NULL;
    }
    /* The upsert may have grown the index, but entries never move. */
    (*len)++;
    if (!created) /* an element an expired list left behind (TTL) */
        memset(sp_table_value(&c->list, e), 0, c->list.config.value_bytes);
    return sp_table_value(&c->list, e);
}

void sp_pctx_list_remove(struct sp_pctx *c, uint32_t i)
{
    uint32_t *len = list_head(c, false);
    if (len == NULL || i >= *len)
        return;
    uint32_t last = *len - 1;
    struct sp_table_entry *e_last = list_entry(c, last);
    if (i != last) {
        struct sp_table_entry *e = list_entry(c, i);
        if (e != NULL && e_last != NULL)
            memcpy(sp_table_value(&c->list, e), sp_table_value(&c->list, e_last),
                   c->list.config.value_bytes);
    }
    if (e_last != NULL)
        sp_table_delete(&c->list, e_last);
    if (last == 0) {
        sp_pctx_list_clear(c);
        return;
    }
    *len = last;
}

void sp_pctx_list_clear(struct sp_pctx *c)
{
    if (!c->has_list)
        return;
    struct sp_table_entry *head =
        sp_table_find(&c->list, c->hash, c->key.ptr, c->key.len, LIST_HEAD_NS);
    if (head == NULL)
        return;
    uint32_t len = *(const uint32_t *)sp_table_value(&c->list, head);
    for (uint32_t i = 0; i < len; i++) {
        struct sp_table_entry *e = list_entry(c, i);
        if (e != NULL)
            sp_table_delete(&c->list, e);
    }
    sp_table_delete(&c->list, head);
}

/* ---- Map state ---- */

#define MAP_HEAD_NS (-1)
#define MAP_CREATED_OFF 8 /* TTL: the head's creation time (u64 ms) */
#define MAP_HEAD_TTL_BYTES 16
#define MAP_VALUE_OFF 8 /* an index entry's value: {u32 position, pad}, then the user's */

/* The index namespace of a map key: its hash, never 0 (ns 0 is the record
 * key's own place in the index, where every map of that key would pile up). */
static int64_t map_ns(const void *map_key, uint32_t len)
{
    uint64_t h = sp_key_hash(map_key, len);
    return h != 0 ? (int64_t)h : 1;
}

/* Builds the index key of (current key, map key) in c->ikey: the record
 * key's length (u32), its bytes, then the map key's. The length makes the
 * split unambiguous. Its length, or 0 when it cannot be allocated (the
 * job then failed). */
static uint32_t map_ikey(struct sp_pctx *c, const void *map_key, uint32_t len)
{
    SP_ASSERT(len <= c->inst->node->u.process.fn.map_key_bytes);
    size_t need = sizeof(uint32_t) + (size_t)c->key.len + len;
    if (need > SP_TABLE_KEY_MAX) {
        sp_exec_fail(c->inst->xs, -E2BIG, "process: a key of %u bytes is too long for map state",
                     c->key.len);
        return 0;
    }
    if (need > c->ikey_cap) {
        uint8_t *grown = realloc(c->ikey, need);
        if (grown == NULL) {
            sp_exec_fail(c->inst->xs, -ENOMEM, "process: a map key buffer of %zu bytes", need);
            return 0;
        }
        c->ikey = grown;
        c->ikey_cap = (uint32_t)need;
    }
    uint32_t klen = c->key.len;
    memcpy(c->ikey, &klen, sizeof(klen));
    if (klen > 0)
        memcpy(c->ikey + sizeof(klen), c->key.ptr, klen);
    if (len > 0)
        memcpy(c->ikey + sizeof(klen) + klen, map_key, len);
    return (uint32_t)need;
}

/* A map head: its size (u32) and, with a TTL, the map's creation time.
 * Whether that map expired. */
static bool map_expired(struct sp_pctx *c, const uint32_t *head)
{
    if (c->ttl_ms == 0)
        return false;
    uint64_t created;
    memcpy(&created, (const uint8_t *)head + MAP_CREATED_OFF, sizeof(created));
    if (created == 0) /* restored from a checkpoint taken without TTL */
        created = c->opened_ms;
    uint64_t now = sp_table_ttl_now(&c->map_items);
    return now >= created && now - created >= c->ttl_ms;
}

/* The current key's map head, found for writing (a write: it keeps the
 * head's last write no older than any of its entries'), NULL when there is
 * none and `create` is false; an expired map is cleared first. */
static uint32_t *map_head(struct sp_pctx *c, bool create)
{
    if (!c->has_map)
        return NULL;
    if (!create) {
        struct sp_table_entry *e =
            sp_table_find(&c->map_items, c->hash, c->key.ptr, c->key.len, MAP_HEAD_NS);
        if (e != NULL && map_expired(c, sp_table_value(&c->map_items, e))) {
            sp_pctx_map_clear(c);
            return NULL;
        }
        return e != NULL ? sp_table_value(&c->map_items, e) : NULL;
    }
    for (unsigned tries = 0; tries < 2; tries++) {
        bool created;
        int err = 0;
        struct sp_table_entry *e = sp_table_upsert(&c->map_items, c->hash, c->key.ptr, c->key.len,
                                                   MAP_HEAD_NS, &created, &err);
        if (e == NULL) {
            state_full(c, err);
            return NULL;
        }
        uint32_t *head = sp_table_value(&c->map_items, e);
        if (!created && map_expired(c, head)) {
            sp_pctx_map_clear(c);
            continue; /* created afresh next */
        }
        if (created && c->ttl_ms != 0) {
            uint64_t now = sp_table_ttl_now(&c->map_items);
            memcpy((uint8_t *)head + MAP_CREATED_OFF, &now, sizeof(now));
        }
        return head;
    }
    SP_ASSERT(!"a map created afresh expired at once");
    return NULL;
}

/* The current key's map head for reading only (no write), NULL when there
 * is none; an expired map is cleared. */
static const uint32_t *map_head_get(struct sp_pctx *c)
{
    if (!c->has_map)
        return NULL;
    const struct sp_table_entry *e =
        sp_table_get(&c->map_items, c->hash, c->key.ptr, c->key.len, MAP_HEAD_NS);
    if (e == NULL)
        return NULL;
    const uint32_t *head = sp_table_value(&c->map_items, (struct sp_table_entry *)e);
    if (map_expired(c, head)) {
        sp_pctx_map_clear(c);
        return NULL;
    }
    return head;
}

/* Whether item `e` (position i of a map) names map key (map_key, len). */
static bool map_item_is(struct sp_pctx *c, const struct sp_table_entry *e, const void *map_key,
                        uint32_t len)
{
    if (e == NULL)
        return false;
    const uint8_t *item = sp_table_value(&c->map_items, (struct sp_table_entry *)e);
    uint32_t item_len;
    memcpy(&item_len, item, sizeof(item_len));
    return item_len == len && (len == 0 || memcmp(item + sizeof(item_len), map_key, len) == 0);
}

/* Whether index entry `ie` of map key (map_key, len) belongs to the live map
 * of `size` entries: its position is inside the map and the item there
 * names it. Entries are deleted with their map, and every entry of a map
 * is written no earlier than its head, so none outlives its map even when
 * the head expired in the table; this is checked all the same (one more
 * lookup: a TTL run's checkpoint may be restored without TTL). */
static bool map_entry_live(struct sp_pctx *c, const struct sp_table_entry *ie, uint32_t size,
                           const void *map_key, uint32_t len)
{
    uint32_t pos;
    memcpy(&pos, sp_table_value(&c->map_index, (struct sp_table_entry *)ie), sizeof(pos));
    if (pos >= size)
        return false;
    return map_item_is(c, sp_table_get(&c->map_items, c->hash, c->key.ptr, c->key.len, pos),
                       map_key, len);
}

uint32_t sp_pctx_map_len(struct sp_pctx *c)
{
    const uint32_t *head = map_head_get(c);
    return head != NULL ? *head : 0;
}

const void *sp_pctx_map_get(struct sp_pctx *c, const void *map_key, uint32_t len)
{
    if (!c->has_map || len > c->inst->node->u.process.fn.map_key_bytes)
        return NULL;
    const uint32_t *head = map_head_get(c);
    if (head == NULL)
        return NULL;
    uint32_t size = *head;
    uint32_t ilen = map_ikey(c, map_key, len);
    if (ilen == 0)
        return NULL;
    const struct sp_table_entry *ie =
        sp_table_get(&c->map_index, c->hash, c->ikey, ilen, map_ns(map_key, len));
    if (ie == NULL || !map_entry_live(c, ie, size, map_key, len))
        return NULL;
    return (const uint8_t *)sp_table_value(&c->map_index, (struct sp_table_entry *)ie) +
           MAP_VALUE_OFF;
}

bool sp_pctx_map_contains(struct sp_pctx *c, const void *map_key, uint32_t len)
{
    return sp_pctx_map_get(c, map_key, len) != NULL;
}

void *sp_pctx_map_put(struct sp_pctx *c, const void *map_key, uint32_t len)
{
    if (!c->has_map)
        return NULL;
    uint32_t key_max = c->inst->node->u.process.fn.map_key_bytes;
    if (len > key_max) {
        sp_exec_fail(c->inst->xs, -E2BIG,
                     "process: a map key of %u bytes is longer than map_key_bytes (%u)", len,
                     key_max);
        return NULL;
    }
    uint32_t *head = map_head(c, true);
    if (head == NULL)
        return NULL;
    uint32_t ilen = map_ikey(c, map_key, len);
    if (ilen == 0)
        return NULL;
    bool created;
    int err = 0;
    struct sp_table_entry *ie = sp_table_upsert(&c->map_index, c->hash, c->ikey, ilen,
                                                map_ns(map_key, len), &created, &err);
    if (ie == NULL) {
        state_full(c, err);
        if (*head == 0)
            sp_pctx_map_clear(c); /* no empty map left behind */
        return NULL;
    }
    uint8_t *v = sp_table_value(&c->map_index, ie);
    if (!created && map_entry_live(c, ie, *head, map_key, len))
        return v + MAP_VALUE_OFF;
    /* A new entry (or one a map left behind): its item goes last. */
    uint32_t pos = *head;
    struct sp_table_entry *item = sp_table_upsert(&c->map_items, c->hash, c->key.ptr, c->key.len,
                                                  (int64_t)pos, &created, &err);
    if (item == NULL) {
        sp_table_delete(&c->map_index, ie);
        state_full(c, err);
        if (*head == 0)
            sp_pctx_map_clear(c);
        return NULL;
    }
    uint8_t *iv = sp_table_value(&c->map_items, item);
    memcpy(iv, &len, sizeof(len));
    if (len > 0)
        memcpy(iv + sizeof(len), map_key, len);
    memset(v, 0, c->map_index.config.value_bytes);
    memcpy(v, &pos, sizeof(pos));
    (*head)++;
    return v + MAP_VALUE_OFF;
}

bool sp_pctx_map_remove(struct sp_pctx *c, const void *map_key, uint32_t len)
{
    if (!c->has_map || len > c->inst->node->u.process.fn.map_key_bytes)
        return false;
    uint32_t *head = map_head(c, false);
    if (head == NULL)
        return false;
    uint32_t ilen = map_ikey(c, map_key, len);
    if (ilen == 0)
        return false;
    struct sp_table_entry *ie =
        sp_table_find(&c->map_index, c->hash, c->ikey, ilen, map_ns(map_key, len));
    if (ie == NULL)
        return false;
    if (!map_entry_live(c, ie, *head, map_key, len)) {
        sp_table_delete(&c->map_index, ie); /* left behind: absent */
        return false;
    }
    uint32_t pos;
    memcpy(&pos, sp_table_value(&c->map_index, ie), sizeof(pos));
    sp_table_delete(&c->map_index, ie);
    uint32_t last = *head - 1;
    struct sp_table_entry *e_last =
        sp_table_find(&c->map_items, c->hash, c->key.ptr, c->key.len, (int64_t)last);
    if (pos != last && e_last != NULL) {
        /* The last item moves into the hole; its index entry learns where. */
        struct sp_table_entry *e =
            sp_table_find(&c->map_items, c->hash, c->key.ptr, c->key.len, (int64_t)pos);
        const uint8_t *moved = sp_table_value(&c->map_items, e_last);
        uint32_t moved_len;
        memcpy(&moved_len, moved, sizeof(moved_len));
        if (e != NULL)
            memcpy(sp_table_value(&c->map_items, e), moved, sizeof(moved_len) + moved_len);
        const uint8_t *moved_key = moved + sizeof(moved_len);
        uint32_t mlen = map_ikey(c, moved_key, moved_len);
        struct sp_table_entry *me = mlen != 0 ? sp_table_find(&c->map_index, c->hash, c->ikey, mlen,
                                                              map_ns(moved_key, moved_len))
                                              : NULL;
        if (me != NULL)
            memcpy(sp_table_value(&c->map_index, me), &pos, sizeof(pos));
    }
    if (e_last != NULL)
        sp_table_delete(&c->map_items, e_last);
    if (last == 0) {
        sp_pctx_map_clear(c);
        return true;
    }
    *head = last;
    return true;
}

void *sp_pctx_map_at(struct sp_pctx *c, uint32_t i, struct sp_str *map_key_out)
{
    uint32_t *head = map_head(c, false);
    if (head == NULL || i >= *head)
        return NULL;
    const struct sp_table_entry *item =
        sp_table_get(&c->map_items, c->hash, c->key.ptr, c->key.len, (int64_t)i);
    if (item == NULL)
        return NULL;
    const uint8_t *iv = sp_table_value(&c->map_items, (struct sp_table_entry *)item);
    uint32_t len;
    memcpy(&len, iv, sizeof(len));
    const uint8_t *map_key = iv + sizeof(len);
    uint32_t ilen = map_ikey(c, map_key, len);
    if (ilen == 0)
        return NULL;
    struct sp_table_entry *ie =
        sp_table_find(&c->map_index, c->hash, c->ikey, ilen, map_ns(map_key, len));
    if (ie == NULL)
        return NULL;
    if (map_key_out != NULL)
        *map_key_out = sp_str_of((const char *)map_key, len);
    return (uint8_t *)sp_table_value(&c->map_index, ie) + MAP_VALUE_OFF;
}

void sp_pctx_map_clear(struct sp_pctx *c)
{
    if (!c->has_map)
        return;
    struct sp_table_entry *head =
        sp_table_find(&c->map_items, c->hash, c->key.ptr, c->key.len, MAP_HEAD_NS);
    if (head == NULL)
        return;
    uint32_t size = *(const uint32_t *)sp_table_value(&c->map_items, head);
    for (uint32_t i = 0; i < size; i++) {
        struct sp_table_entry *e =
            sp_table_find(&c->map_items, c->hash, c->key.ptr, c->key.len, (int64_t)i);
        if (e == NULL)
            continue; /* expired in the table: its index entry did too */
        const uint8_t *iv = sp_table_value(&c->map_items, e);
        uint32_t len;
        memcpy(&len, iv, sizeof(len));
        uint32_t ilen = map_ikey(c, iv + sizeof(len), len);
        struct sp_table_entry *ie = ilen != 0 ? sp_table_find(&c->map_index, c->hash, c->ikey, ilen,
                                                              map_ns(iv + sizeof(len), len))
                                              : NULL;
        if (ie != NULL)
            sp_table_delete(&c->map_index, ie);
        sp_table_delete(&c->map_items, e);
    }
    sp_table_delete(&c->map_items, head);
}

/* ---- Aggregating state ---- */

void sp_pctx_agg_add(struct sp_pctx *c, const void *row, int64_t ts)
{
    if (!c->has_agg)
        return;
    const struct sp_aggregate_fn *agg = c->inst->node->u.process.fn.agg;
    bool created;
    int err = 0;
    struct sp_table_entry *e =
        sp_table_upsert(&c->aggs, c->hash, c->key.ptr, c->key.len, 0, &created, &err);
    if (e == NULL) {
        state_full(c, err);
        return;
    }
    void *acc = sp_table_value(&c->aggs, e);
    if (created)
        agg->create(agg->ctx, acc);
    agg->add(agg->ctx, acc, row, ts);
}

bool sp_pctx_agg_result(struct sp_pctx *c, void *result)
{
    if (!c->has_agg)
        return false;
    const struct sp_aggregate_fn *agg = c->inst->node->u.process.fn.agg;
    const struct sp_table_entry *e = sp_table_get(&c->aggs, c->hash, c->key.ptr, c->key.len, 0);
    if (e == NULL)
        return false;
    agg->result(agg->ctx, sp_table_value(&c->aggs, (struct sp_table_entry *)e), result);
    return true;
}

void sp_pctx_agg_clear(struct sp_pctx *c)
{
    if (!c->has_agg)
        return;
    struct sp_table_entry *e = sp_table_find(&c->aggs, c->hash, c->key.ptr, c->key.len, 0);
    if (e != NULL)
        sp_table_delete(&c->aggs, e);
}

/* ---- Timers ---- */

static void proc_arm(struct sp_pctx *c);

/* The function is between two records or timers: it holds no pointer into
 * its state (spilled state may go to disk again). */
static void pctx_unpin(struct sp_pctx *c)
{
    sp_table_unpin(&c->values);
    sp_table_unpin(&c->event_timers);
    sp_table_unpin(&c->proc_timers);
    sp_table_unpin(&c->list);
    sp_table_unpin(&c->map_index);
    sp_table_unpin(&c->map_items);
    sp_table_unpin(&c->aggs);
}

/* Advances the state's TTL clock to `now_ms` (and its incremental cleanup). */
static void ttl_tick(struct sp_pctx *c, int64_t now_ms)
{
    if (c->ttl_ms == 0)
        return;
    if (c->has_values)
        sp_table_ttl_tick(&c->values, (uint64_t)now_ms);
    if (c->has_list)
        sp_table_ttl_tick(&c->list, (uint64_t)now_ms);
    if (c->has_map) {
        sp_table_ttl_tick(&c->map_items, (uint64_t)now_ms);
        sp_table_ttl_tick(&c->map_index, (uint64_t)now_ms);
    }
    if (c->has_agg)
        sp_table_ttl_tick(&c->aggs, (uint64_t)now_ms);
}

/* The same with the wall clock, read only for a TTL; the time ticked (0
 * without a TTL). */
static int64_t ttl_tick_now(struct sp_pctx *c)
{
    if (c->ttl_ms == 0)
        return 0;
    int64_t now = sp_wall_ms();
    ttl_tick(c, now);
    return now;
}

static void timer_set(struct sp_pctx *c, struct sp_table *t, int64_t ts)
{
    bool created;
    int err = 0;
    if (sp_table_upsert(t, c->hash, c->key.ptr, c->key.len, ts, &created, &err) == NULL)
        state_full(c, err);
}

void sp_pctx_timer_event(struct sp_pctx *c, int64_t ts)
{
    timer_set(c, &c->event_timers, ts);
}

void sp_pctx_timer_event_delete(struct sp_pctx *c, int64_t ts)
{
    struct sp_table_entry *e = sp_table_find(&c->event_timers, c->hash, c->key.ptr, c->key.len, ts);
    if (e != NULL)
        sp_table_delete(&c->event_timers, e);
}

void sp_pctx_timer_proc(struct sp_pctx *c, int64_t ts_ms)
{
    if (c->proc_ended)
        return; /* would never fire (or, at the end, fire forever) */
    timer_set(c, &c->proc_timers, ts_ms);
    proc_arm(c);
}

/* Makes `e`'s key current (copied: the entry is about to be deleted). */
static bool key_from_entry(struct sp_pctx *c, struct sp_table *t, struct sp_table_entry *e)
{
    uint32_t len = e->key_len;
    if (len > c->key_cap) {
        uint8_t *grown = realloc(c->key_copy, len);
        if (grown == NULL) {
            sp_exec_fail(c->inst->xs, -ENOMEM, "process: a timer's key of %u bytes", len);
            return false;
        }
        c->key_copy = grown;
        c->key_cap = len;
    }
    memcpy(c->key_copy, sp_table_key(t, e), len);
    c->key = sp_str_of((const char *)c->key_copy, len);
    c->hash = e->hash;
    return true;
}

/* Fires the timers due up to `upto`; false when it stopped because
 * downstream is blocked (the rest stay for later). */
static bool fire_due(struct sp_pctx *c, struct sp_table *t, int64_t upto, bool event_time)
{
    const struct sp_process_fn *fn = &c->inst->node->u.process.fn;
    int64_t ts;
    while (sp_table_ns_min(t, &ts) && ts <= upto) {
        struct sp_table_entry *e;
        while ((e = sp_table_ns_first(t, ts)) != NULL) {
            if (sp_inst_blocked(c->inst) || sp_exec_failed(c->inst->xs))
                return false;
            if (!key_from_entry(c, t, e))
                return false;
            sp_table_delete(t, e);
            if (fn->on_timer != NULL)
                fn->on_timer(c, ts, event_time);
            sp_out_finish(&c->inst->out); /* the key is about to change */
            pctx_unpin(c);
        }
    }
    return true;
}

static void proc_fire(struct sp_timer *timer, void *ctx)
{
    struct sp_pctx *c = ctx;
    (void)timer;
    c->proc_armed_ms = 0;
    /* One reading: the state's clock is at least every firing timer's time. */
    int64_t now = sp_wall_ms();
    ttl_tick(c, now);
    bool done = fire_due(c, &c->proc_timers, now, false);
    sp_out_flush(&c->inst->out);
    if (!done) {
        /* Downstream is full: try again in a millisecond. */
        c->proc_armed_ms = (uint64_t)sp_wall_ms();
        sp_shard_timer_arm(c->inst->xs->shard, &c->proc_timer, sp_now_ns() + SP_NSEC_PER_MSEC);
        return;
    }
    proc_arm(c);
}

static void proc_arm(struct sp_pctx *c)
{
    if (sp_shard_stopping(c->inst->xs->shard))
        return; /* the stop hook cancelled it; the drain wants no timers */
    int64_t first;
    if (!sp_table_ns_min(&c->proc_timers, &first))
        return;
    if (c->proc_armed_ms != 0 && (int64_t)c->proc_armed_ms <= first)
        return;
    int64_t delay_ms = first - sp_wall_ms();
    if (delay_ms < 0)
        delay_ms = 0;
    c->proc_armed_ms = (uint64_t)first;
    sp_shard_timer_arm(c->inst->xs->shard, &c->proc_timer,
                       sp_now_ns() + (uint64_t)delay_ms * SP_NSEC_PER_MSEC);
}

/* Map state's two tables (open). */
static int map_open(struct sp_pctx *c, const struct sp_process_fn *fn)
{
    struct sp_inst *inst = c->inst;
    if (fn->map_key_bytes == 0 || fn->map_value_bytes == 0 ||
        fn->map_key_bytes > SP_PROCESS_MAP_KEY_BYTES_MAX ||
        fn->map_value_bytes > SP_PROCESS_MAP_VALUE_BYTES_MAX) {
        sp_exec_fail(inst->xs, -EINVAL,
                     "process: map state needs map_key_bytes (1..%u) and map_value_bytes "
                     "(1..%u), got %u and %u",
                     SP_PROCESS_MAP_KEY_BYTES_MAX, SP_PROCESS_MAP_VALUE_BYTES_MAX,
                     fn->map_key_bytes, fn->map_value_bytes);
        return -EINVAL;
    }
    struct sp_table_config tc;
    int rc;
    sp_exec_table_config(inst->xs, "process.map", MAP_VALUE_OFF + fn->map_value_bytes, false, &tc);
    tc.ns_in_hash = true; /* a key's entries spread over the index */
    tc.ttl_ms = c->ttl_ms;
    if ((rc = sp_table_init(&c->map_index, &tc)) < 0)
        return rc;
    c->has_map = true; /* both tables are deinited from here on */
    uint32_t head_bytes = c->ttl_ms != 0 ? MAP_HEAD_TTL_BYTES : sizeof(uint32_t);
    uint32_t item_bytes = (uint32_t)sizeof(uint32_t) + fn->map_key_bytes;
    sp_exec_table_config(inst->xs, "process.map.keys",
                         item_bytes < head_bytes ? head_bytes : item_bytes, false, &tc);
    tc.ns_in_hash = true;
    tc.ttl_ms = c->ttl_ms;
    if ((rc = sp_table_init(&c->map_items, &tc)) < 0) {
        sp_table_deinit(&c->map_index);
        c->has_map = false;
        return rc;
    }
    if ((rc = sp_exec_state_table(inst, "map", &c->map_index)) < 0)
        return rc;
    return sp_exec_state_table(inst, "map.keys", &c->map_items);
}

static int proc_open(struct sp_inst *inst)
{
    struct sp_pctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    inst->state = c;
    c->inst = inst;
    const struct sp_process_fn *fn = &inst->node->u.process.fn;
    struct sp_table_config tc;
    int rc;
    c->ttl_ms = fn->state_ttl_ms;
    if (fn->state_bytes > 0) {
        sp_exec_table_config(inst->xs, "process.value", fn->state_bytes, false, &tc);
        tc.ttl_ms = c->ttl_ms;
        if ((rc = sp_table_init(&c->values, &tc)) < 0)
            return rc;
        c->has_values = true;
        if ((rc = sp_exec_state_table(inst, "value", &c->values)) < 0)
            return rc;
    }
    if (fn->list_bytes > 0) {
        uint32_t head_bytes = c->ttl_ms != 0 ? LIST_HEAD_TTL_BYTES : sizeof(uint32_t);
        uint32_t bytes = fn->list_bytes < head_bytes ? head_bytes : fn->list_bytes;
        sp_exec_table_config(inst->xs, "process.list", bytes, false, &tc);
        tc.ns_in_hash = true; /* a key's elements spread over the index */
        tc.ttl_ms = c->ttl_ms;
        if ((rc = sp_table_init(&c->list, &tc)) < 0)
            return rc;
        c->has_list = true;
        if ((rc = sp_exec_state_table(inst, "list", &c->list)) < 0)
            return rc;
    }
    if (fn->map_key_bytes > 0 || fn->map_value_bytes > 0) {
        if ((rc = map_open(c, fn)) < 0)
            return rc;
    }
    if (fn->agg != NULL) {
        const struct sp_aggregate_fn *agg = fn->agg;
        if (agg->create == NULL || agg->add == NULL || agg->result == NULL ||
            (agg->result_type != SP_T_I64 && agg->result_type != SP_T_F64)) {
            sp_exec_fail(inst->xs, -EINVAL,
                         "process: the aggregating state needs create, add and result, and an "
                         "I64 or F64 result");
            return -EINVAL;
        }
        sp_exec_table_config(inst->xs, "process.agg", agg->acc_bytes, false, &tc);
        tc.ttl_ms = c->ttl_ms;
        if ((rc = sp_table_init(&c->aggs, &tc)) < 0)
            return rc;
        c->has_agg = true;
        if ((rc = sp_exec_state_table(inst, "agg", &c->aggs)) < 0)
            return rc;
    }
    sp_exec_table_config(inst->xs, "process.event_timers", 0, true, &tc);
    tc.ns_in_hash = true; /* a key may have many timers */
    if ((rc = sp_table_init(&c->event_timers, &tc)) < 0)
        return rc;
    c->has_event = true;
    if ((rc = sp_exec_state_table(inst, "event_timers", &c->event_timers)) < 0)
        return rc;
    sp_exec_table_config(inst->xs, "process.proc_timers", 0, true, &tc);
    tc.ns_in_hash = true;
    if ((rc = sp_table_init(&c->proc_timers, &tc)) < 0)
        return rc;
    c->has_proc = true;
    /* The clock starts now, before a restore stamps entries. */
    c->opened_ms = (uint64_t)ttl_tick_now(c);
    sp_timer_init(&c->proc_timer, proc_fire, c);
    return sp_exec_state_table(inst, "proc_timers", &c->proc_timers);
}

/* Restored from a checkpoint: processing-time timers are armed again. */
static int proc_restored(struct sp_inst *inst)
{
    proc_arm(inst->state);
    return 0;
}

static void proc_close(struct sp_inst *inst)
{
    sp_inst_backlog_free(inst);
    struct sp_pctx *c = inst->state;
    if (c == NULL)
        return;
    if (c->has_values)
        sp_table_deinit(&c->values);
    if (c->has_list)
        sp_table_deinit(&c->list);
    if (c->has_map) {
        sp_table_deinit(&c->map_index);
        sp_table_deinit(&c->map_items);
    }
    if (c->has_agg)
        sp_table_deinit(&c->aggs);
    if (c->has_event)
        sp_table_deinit(&c->event_timers);
    if (c->has_proc) {
        sp_shard_timer_cancel(inst->xs->shard, &c->proc_timer);
        sp_table_deinit(&c->proc_timers);
    }
    free(c->key_copy);
    free(c->ikey);
    free(c);
    inst->state = NULL;
}

/* Rows of `in` from `from` on; returns the row it stopped before because
 * downstream filled up (in->count when all are done). */
static uint32_t proc_rows(struct sp_inst *inst, const struct sp_batch *in, uint32_t from)
{
    struct sp_pctx *c = inst->state;
    const struct sp_process_fn *fn = &inst->node->u.process.fn;
    for (uint32_t i = from; i < in->count; i++) {
        const void *row = sp_batch_row(in, i);
        c->hash = sp_key_of(&inst->node->key, row, &c->key);
        fn->process(c, row, sp_batch_ts(in, i));
        sp_out_finish(&inst->out); /* rows may point at the key or the state */
        pctx_unpin(c);
        if (sp_exec_failed(inst->xs))
            return in->count;
        if (i + 1 < in->count && sp_inst_blocked(inst))
            return i + 1;
    }
    return in->count;
}

static void proc_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    ttl_tick_now(inst->state);
    uint32_t from = 0;
    if (inst->backlog == NULL) {
        from = proc_rows(inst, in, 0);
        sp_out_flush(&inst->out);
    }
    if (from < in->count)
        (void)sp_inst_backlog(inst, in, from);
}

static void proc_watermark(struct sp_inst *inst, int64_t wm)
{
    struct sp_pctx *c = inst->state;
    ttl_tick_now(c);
    if (!sp_inst_backlog_run(inst, proc_rows))
        return; /* deferred again */
    if (!fire_due(c, &c->event_timers, wm, true)) {
        sp_out_flush(&inst->out);
        sp_inst_defer(inst);
        return;
    }
    /* The last watermark: every input ended. */
    if (wm == SP_WM_MAX && inst->node->u.process.fn.proc_timers_at_end) {
        sp_shard_timer_cancel(inst->xs->shard, &c->proc_timer);
        c->proc_armed_ms = 0;
        c->proc_ended = true;
        if (!fire_due(c, &c->proc_timers, INT64_MAX, false)) {
            sp_out_flush(&inst->out);
            sp_inst_defer(inst);
            return;
        }
    }
    sp_inst_forward_watermark(inst, wm);
}

static void proc_end(struct sp_inst *inst)
{
    struct sp_pctx *c = inst->state;
    /* Processing-time timers do not outlive the stream (as in Flink), unless
     * proc_timers_at_end fired them with the last watermark. */
    sp_shard_timer_cancel(inst->xs->shard, &c->proc_timer);
    c->proc_armed_ms = 0;
    sp_inst_forward_end(inst);
}

static void proc_stop(struct sp_inst *inst)
{
    struct sp_pctx *c = inst->state;
    if (c != NULL && c->has_proc)
        sp_shard_timer_cancel(inst->xs->shard, &c->proc_timer);
}

const struct sp_op_vt sp_process_vt = {
    .name = "process",
    .open = proc_open,
    .push = proc_push,
    .watermark = proc_watermark,
    .end = proc_end,
    .close = proc_close,
    .stop = proc_stop,
    .restored = proc_restored,
};
