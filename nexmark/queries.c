/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark queries on the job API, with the semantics of nexmark-flink's
 * SQL (see sp_nexmark.h for each one's output row). Every query reads the
 * one event stream of the source; each first keeps the kinds it needs
 * (sp_filter on kind), then projects them into a small row of its own
 * (sp_map), so nothing downstream carries the 264-byte event row. The
 * stateful ones are keyed process functions with value and list state and
 * timers (q3, q4, q6, q7, q8, q12) or windows (q5, q11); docs/nexmark.md
 * describes each.
 */
#include <stddef.h>
#include <string.h>

#include "sp_nexmark.h"

static const struct sp_field q0_fields[] = {
    SP_FIELD(struct sp_nexmark_q0_row, auction, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q0_row, bidder, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q0_row, price, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q0_row, date_time, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q0_row, extra, SP_T_STR),
};
const struct sp_schema sp_nexmark_q0_schema = SP_SCHEMA(struct sp_nexmark_q0_row, q0_fields);

static const struct sp_field q1_fields[] = {
    SP_FIELD(struct sp_nexmark_q1_row, auction, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q1_row, bidder, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q1_row, price, SP_T_F64),
    SP_FIELD(struct sp_nexmark_q1_row, date_time, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q1_row, extra, SP_T_STR),
};
const struct sp_schema sp_nexmark_q1_schema = SP_SCHEMA(struct sp_nexmark_q1_row, q1_fields);

static const struct sp_field q2_fields[] = {
    SP_FIELD(struct sp_nexmark_q2_row, auction, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q2_row, price, SP_T_I64),
};
const struct sp_schema sp_nexmark_q2_schema = SP_SCHEMA(struct sp_nexmark_q2_row, q2_fields);

static bool is_bid(void *ctx, const void *row)
{
    (void)ctx;
    return ((const struct sp_nexmark_event *)row)->kind == SP_NEXMARK_BID;
}

static struct sp_stream *bids(struct sp_stream *events)
{
    return sp_filter(events, is_bid, NULL);
}

/* q0: SELECT auction, bidder, price, dateTime, extra FROM bid. */
static void q0_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct sp_nexmark_q0_row *r = out_row;
    r->auction = e->bid_auction;
    r->bidder = e->bid_bidder;
    r->price = e->bid_price;
    r->date_time = e->date_time;
    r->extra = e->extra; /* the map copies strings with the row */
}

static struct sp_stream *q0(struct sp_stream *events)
{
    return sp_map(bids(events), &sp_nexmark_q0_schema, q0_map, NULL);
}

/* q1: SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid. */
static void q1_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct sp_nexmark_q1_row *r = out_row;
    r->auction = e->bid_auction;
    r->bidder = e->bid_bidder;
    r->price = sp_nexmark_q1_price(e->bid_price);
    r->date_time = e->date_time;
    r->extra = e->extra;
}

static struct sp_stream *q1(struct sp_stream *events)
{
    return sp_map(bids(events), &sp_nexmark_q1_schema, q1_map, NULL);
}

/* q2: SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0. */
static bool q2_filter(void *ctx, const void *row)
{
    (void)ctx;
    const struct sp_nexmark_event *e = row;
    return e->kind == SP_NEXMARK_BID && e->bid_auction % 123 == 0;
}

static void q2_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct sp_nexmark_q2_row *r = out_row;
    r->auction = e->bid_auction;
    r->price = e->bid_price;
}

static struct sp_stream *q2(struct sp_stream *events)
{
    /* One filter for both conditions: the same rows as two, one call less. */
    return sp_map(sp_filter(events, q2_filter, NULL), &sp_nexmark_q2_schema, q2_map, NULL);
}

/* ---- Helpers for the stateful queries ---- */

#define SECOND 1000
#define WINDOW_10S (10 * SECOND)

/* The start of the tumbling window of `size` holding `t` (t >= 0 here). */
static int64_t window_start(int64_t t, int64_t size)
{
    return t - (t % size + size) % size;
}

/* A short string kept in fixed-size state (the generator's names). */
struct fixed_str {
    uint8_t len;
    char bytes[SP_NEXMARK_NAME_MAX];
};

static void fixed_set(struct fixed_str *f, struct sp_str s)
{
    /* The generator's lists bound these (SP_NEXMARK_NAME_MAX). */
    f->len = (uint8_t)(s.len < sizeof(f->bytes) ? s.len : sizeof(f->bytes));
    memcpy(f->bytes, s.ptr, f->len);
}

static struct sp_str fixed_out(struct sp_out *out, const struct fixed_str *f)
{
    return sp_out_str(out, f->bytes, f->len);
}

static int64_t key_i64(struct sp_pctx *c)
{
    struct sp_str k = sp_pctx_key(c);
    int64_t v = 0;
    memcpy(&v, k.ptr, k.len < sizeof(v) ? k.len : sizeof(v));
    return v;
}

/* ---- q3: local item suggestion (incremental join) ---- */

static const struct sp_field q3_fields[] = {
    SP_FIELD(struct sp_nexmark_q3_row, name, SP_T_STR),
    SP_FIELD(struct sp_nexmark_q3_row, city, SP_T_STR),
    SP_FIELD(struct sp_nexmark_q3_row, state, SP_T_STR),
    SP_FIELD(struct sp_nexmark_q3_row, id, SP_T_I64),
};
const struct sp_schema sp_nexmark_q3_schema = SP_SCHEMA(struct sp_nexmark_q3_row, q3_fields);

/* Either side of the join, keyed by the person: `id` is the person's id or
 * the auction's seller. */
struct q3_in {
    int64_t kind;
    int64_t id;
    int64_t auction;
    struct sp_str name;
    struct sp_str city;
    struct sp_str state;
};
static const struct sp_field q3_in_fields[] = {
    SP_FIELD(struct q3_in, kind, SP_T_I64),    SP_FIELD(struct q3_in, id, SP_T_I64),
    SP_FIELD(struct q3_in, auction, SP_T_I64), SP_FIELD(struct q3_in, name, SP_T_STR),
    SP_FIELD(struct q3_in, city, SP_T_STR),    SP_FIELD(struct q3_in, state, SP_T_STR),
};
static const struct sp_schema q3_in_schema = SP_SCHEMA(struct q3_in, q3_in_fields);

static bool str_is(struct sp_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static bool q3_filter(void *ctx, const void *row)
{
    (void)ctx;
    const struct sp_nexmark_event *e = row;
    if (e->kind == SP_NEXMARK_AUCTION)
        return e->auction_category == 10;
    if (e->kind == SP_NEXMARK_PERSON)
        return str_is(e->person_state, "OR") || str_is(e->person_state, "ID") ||
               str_is(e->person_state, "CA");
    return false;
}

static void q3_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct q3_in *r = out_row;
    r->kind = e->kind;
    if (e->kind == SP_NEXMARK_PERSON) {
        r->id = e->person_id;
        r->name = e->person_name;
        r->city = e->person_city;
        r->state = e->person_state;
    } else {
        r->id = e->auction_seller;
        r->auction = e->auction_id;
    }
}

struct q3_person {
    struct fixed_str name, city, state;
};

static void q3_emit(struct sp_pctx *c, const struct q3_person *p, int64_t auction, int64_t ts)
{
    struct sp_out *out = sp_pctx_out(c);
    struct sp_nexmark_q3_row *r = sp_out_row(out, ts);
    r->name = fixed_out(out, &p->name);
    r->city = fixed_out(out, &p->city);
    r->state = fixed_out(out, &p->state);
    r->id = auction;
}

static void q3_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct q3_in *in = row;
    if (in->kind == SP_NEXMARK_PERSON) {
        struct q3_person *p = sp_pctx_state(c);
        if (p == NULL)
            return;
        fixed_set(&p->name, in->name);
        fixed_set(&p->city, in->city);
        fixed_set(&p->state, in->state);
        /* The auctions that came first. */
        uint32_t n = sp_pctx_list_len(c);
        for (uint32_t i = 0; i < n; i++)
            q3_emit(c, p, *(const int64_t *)sp_pctx_list_at(c, i), ts);
        sp_pctx_list_clear(c);
        return;
    }
    const struct q3_person *p = sp_pctx_state_find(c);
    if (p != NULL) {
        q3_emit(c, p, in->auction, ts);
        return;
    }
    int64_t *waiting = sp_pctx_list_append(c);
    if (waiting != NULL)
        *waiting = in->auction;
}

static struct sp_stream *q3(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q3_person),
        .list_bytes = sizeof(int64_t),
        .process = q3_process,
    };
    struct sp_stream *s = sp_map(sp_filter(events, q3_filter, NULL), &q3_in_schema, q3_map, NULL);
    return sp_process(sp_key_by(s, "id"), &sp_nexmark_q3_schema, &fn);
}

/* ---- Winning bids (q4, q6) ---- */

/* Auctions and bids, keyed by the auction. */
struct wb_in {
    int64_t kind;
    int64_t auction;
    int64_t date_time;
    int64_t expires;
    int64_t seller;
    int64_t category;
    int64_t price;
};
static const struct sp_field wb_in_fields[] = {
    SP_FIELD(struct wb_in, kind, SP_T_I64),      SP_FIELD(struct wb_in, auction, SP_T_I64),
    SP_FIELD(struct wb_in, date_time, SP_T_I64), SP_FIELD(struct wb_in, expires, SP_T_I64),
    SP_FIELD(struct wb_in, seller, SP_T_I64),    SP_FIELD(struct wb_in, category, SP_T_I64),
    SP_FIELD(struct wb_in, price, SP_T_I64),
};
static const struct sp_schema wb_in_schema = SP_SCHEMA(struct wb_in, wb_in_fields);

/* An auction's winning bid, emitted when it closes (timestamp: expires). */
struct winning {
    int64_t auction;
    int64_t seller;
    int64_t category;
    int64_t price;
    int64_t expires;
};
static const struct sp_field winning_fields[] = {
    SP_FIELD(struct winning, auction, SP_T_I64),  SP_FIELD(struct winning, seller, SP_T_I64),
    SP_FIELD(struct winning, category, SP_T_I64), SP_FIELD(struct winning, price, SP_T_I64),
    SP_FIELD(struct winning, expires, SP_T_I64),
};
static const struct sp_schema winning_schema = SP_SCHEMA(struct winning, winning_fields);

static bool wb_filter(void *ctx, const void *row)
{
    (void)ctx;
    int64_t kind = ((const struct sp_nexmark_event *)row)->kind;
    return kind == SP_NEXMARK_AUCTION || kind == SP_NEXMARK_BID;
}

static void wb_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct wb_in *r = out_row;
    r->kind = e->kind;
    r->date_time = e->date_time;
    if (e->kind == SP_NEXMARK_AUCTION) {
        r->auction = e->auction_id;
        r->expires = e->auction_expires;
        r->seller = e->auction_seller;
        r->category = e->auction_category;
    } else {
        r->auction = e->bid_auction;
        r->price = e->bid_price;
    }
}

struct wb_state {
    int64_t date_time, expires, seller, category;
    int64_t max_price;
    bool has_bid;
};

/* A bid that came before its auction. */
struct wb_waiting {
    int64_t date_time;
    int64_t price;
};

static void wb_bid(struct wb_state *a, int64_t date_time, int64_t price)
{
    if (date_time < a->date_time || date_time > a->expires)
        return;
    if (!a->has_bid || price > a->max_price)
        a->max_price = price;
    a->has_bid = true;
}

static void wb_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)ts;
    const struct wb_in *in = row;
    if (in->kind == SP_NEXMARK_AUCTION) {
        struct wb_state *a = sp_pctx_state(c);
        if (a == NULL)
            return;
        *a = (struct wb_state){.date_time = in->date_time,
                               .expires = in->expires,
                               .seller = in->seller,
                               .category = in->category};
        uint32_t n = sp_pctx_list_len(c);
        for (uint32_t i = 0; i < n; i++) {
            const struct wb_waiting *w = sp_pctx_list_at(c, i);
            wb_bid(a, w->date_time, w->price);
        }
        sp_pctx_list_clear(c);
        sp_pctx_timer_event(c, in->expires);
        return;
    }
    struct wb_state *a = sp_pctx_state_find(c);
    if (a != NULL) {
        wb_bid(a, in->date_time, in->price);
        return;
    }
    struct wb_waiting *w = sp_pctx_list_append(c);
    if (w == NULL)
        return;
    w->date_time = in->date_time;
    w->price = in->price;
    /* Once the watermark passes it, no auction that is not late can match. */
    sp_pctx_timer_event(c, in->date_time);
}

static void wb_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct wb_state *a = sp_pctx_state_find(c);
    if (a == NULL) {
        /* Drop the bids that waited in vain. */
        for (uint32_t i = sp_pctx_list_len(c); i-- > 0;) {
            if (((const struct wb_waiting *)sp_pctx_list_at(c, i))->date_time <= ts)
                sp_pctx_list_remove(c, i);
        }
        return;
    }
    if (ts < a->expires)
        return; /* a waiting bid's timer, set before the auction came */
    if (a->has_bid) {
        struct winning *r = sp_out_row(sp_pctx_out(c), a->expires);
        *r = (struct winning){.auction = key_i64(c),
                              .seller = a->seller,
                              .category = a->category,
                              .price = a->max_price,
                              .expires = a->expires};
    }
    sp_pctx_state_clear(c);
}

static struct sp_stream *winning_bids(struct sp_stream *events)
{
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct wb_state),
        .list_bytes = sizeof(struct wb_waiting),
        .process = wb_process,
        .on_timer = wb_timer,
    };
    struct sp_stream *s = sp_map(sp_filter(events, wb_filter, NULL), &wb_in_schema, wb_map, NULL);
    return sp_process(sp_key_by(s, "auction"), &winning_schema, &fn);
}

/* ---- q4: average price per category ---- */

static const struct sp_field q4_fields[] = {
    SP_FIELD(struct sp_nexmark_q4_row, category, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q4_row, avg, SP_T_I64),
};
const struct sp_schema sp_nexmark_q4_schema = SP_SCHEMA(struct sp_nexmark_q4_row, q4_fields);

struct q4_state {
    int64_t sum, count;
};

static void q4_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct winning *w = row;
    struct q4_state *st = sp_pctx_state(c);
    if (st == NULL)
        return;
    st->sum += w->price;
    st->count++;
    struct sp_nexmark_q4_row *r = sp_out_row(sp_pctx_out(c), ts);
    r->category = w->category;
    r->avg = st->sum / st->count;
}

static struct sp_stream *q4(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {.state_bytes = sizeof(struct q4_state),
                                            .process = q4_process};
    return sp_process(sp_key_by(winning_bids(events), "category"), &sp_nexmark_q4_schema, &fn);
}

/* ---- q5: hot items ---- */

static const struct sp_field q5_fields[] = {
    SP_FIELD(struct sp_nexmark_q5_row, auction, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q5_row, num, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q5_row, starttime, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q5_row, endtime, SP_T_I64),
};
const struct sp_schema sp_nexmark_q5_schema = SP_SCHEMA(struct sp_nexmark_q5_row, q5_fields);

struct auction_row {
    int64_t auction;
};
static const struct sp_field auction_row_fields[] = {
    SP_FIELD(struct auction_row, auction, SP_T_I64),
};
static const struct sp_schema auction_row_schema =
    SP_SCHEMA(struct auction_row, auction_row_fields);

static void q5_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    ((struct auction_row *)out_row)->auction = ((const struct sp_nexmark_event *)in)->bid_auction;
}

struct q5_state {
    int64_t max;
};

struct q5_top {
    int64_t auction;
    int64_t num;
};

/* Per window (keyed by its end): the auctions with the most bids so far. */
static void q5_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct sp_agg_row *a = row;
    struct q5_state *st = sp_pctx_state(c);
    if (st == NULL)
        return;
    int64_t num = a->value.i64;
    if (num < st->max)
        return;
    if (num > st->max) {
        sp_pctx_list_clear(c);
        st->max = num;
    }
    struct q5_top *t = sp_pctx_list_append(c);
    if (t == NULL)
        return;
    t->auction = a->key.i64;
    t->num = num;
    sp_pctx_timer_event(c, ts); /* window_end - 1: every count of the window is in */
}

static void q5_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    int64_t end = key_i64(c);
    uint32_t n = sp_pctx_list_len(c);
    for (uint32_t i = 0; i < n; i++) {
        const struct q5_top *t = sp_pctx_list_at(c, i);
        struct sp_nexmark_q5_row *r = sp_out_row(sp_pctx_out(c), ts);
        *r = (struct sp_nexmark_q5_row){
            .auction = t->auction, .num = t->num, .starttime = end - WINDOW_10S, .endtime = end};
    }
    sp_pctx_list_clear(c);
    sp_pctx_state_clear(c);
}

static struct sp_stream *q5(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q5_state),
        .list_bytes = sizeof(struct q5_top),
        .process = q5_process,
        .on_timer = q5_timer,
    };
    struct sp_stream *s = sp_map(bids(events), &auction_row_schema, q5_map, NULL);
    s = sp_window_aggregate(sp_key_by(s, "auction"),
                            &(struct sp_window){.kind = SP_WINDOW_HOPPING,
                                                .size_ms = WINDOW_10S,
                                                .slide_ms = 2 * SECOND},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    return sp_process(sp_key_by(s, "window_end"), &sp_nexmark_q5_schema, &fn);
}

/* ---- q6: average selling price by seller ---- */

static const struct sp_field q6_fields[] = {
    SP_FIELD(struct sp_nexmark_q6_row, seller, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q6_row, avg_price, SP_T_I64),
};
const struct sp_schema sp_nexmark_q6_schema = SP_SCHEMA(struct sp_nexmark_q6_row, q6_fields);

struct q6_state {
    int64_t prices[SP_NEXMARK_Q6_AUCTIONS]; /* a ring of the last closed auctions' */
    uint32_t count, next;
};

/* Winning bids wait for the watermark to pass their close, so that the
 * seller sees them in close order whatever shard they come from. */
static void q6_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    const struct winning *w = row;
    struct winning *held = sp_pctx_list_append(c);
    if (held == NULL)
        return;
    *held = *w;
    sp_pctx_timer_event(c, ts);
}

static bool closes_before(const struct winning *a, const struct winning *b)
{
    return a->expires < b->expires || (a->expires == b->expires && a->auction < b->auction);
}

static void q6_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct q6_state *st = sp_pctx_state(c);
    if (st == NULL)
        return;
    for (;;) {
        /* The first to close of those due (a few at a time: a short scan). */
        uint32_t n = sp_pctx_list_len(c), best = UINT32_MAX;
        const struct winning *first = NULL;
        for (uint32_t i = 0; i < n; i++) {
            const struct winning *w = sp_pctx_list_at(c, i);
            if (w->expires <= ts && (first == NULL || closes_before(w, first))) {
                first = w;
                best = i;
            }
        }
        if (first == NULL)
            return;
        st->prices[st->next] = first->price;
        st->next = (st->next + 1) % SP_NEXMARK_Q6_AUCTIONS;
        if (st->count < SP_NEXMARK_Q6_AUCTIONS)
            st->count++;
        int64_t sum = 0;
        for (uint32_t i = 0; i < st->count; i++)
            sum += st->prices[i];
        struct sp_nexmark_q6_row *r = sp_out_row(sp_pctx_out(c), ts);
        r->seller = first->seller;
        r->avg_price = sum / st->count;
        sp_pctx_list_remove(c, best);
    }
}

static struct sp_stream *q6(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q6_state),
        .list_bytes = sizeof(struct winning),
        .process = q6_process,
        .on_timer = q6_timer,
    };
    return sp_process(sp_key_by(winning_bids(events), "seller"), &sp_nexmark_q6_schema, &fn);
}

/* ---- q7: highest bid ---- */

const struct sp_schema sp_nexmark_q7_schema = SP_SCHEMA(struct sp_nexmark_q0_row, q0_fields);

/* A bid for the window ending at window_end: `own` when it lies in it (and
 * counts for its highest price), else it only lies at its end. */
struct q7_in {
    int64_t window_end;
    int64_t own;
    struct sp_nexmark_q0_row bid;
};
static const struct sp_field q7_in_fields[] = {
    SP_FIELD(struct q7_in, window_end, SP_T_I64),  SP_FIELD(struct q7_in, own, SP_T_I64),
    SP_FIELD(struct q7_in, bid.auction, SP_T_I64), SP_FIELD(struct q7_in, bid.bidder, SP_T_I64),
    SP_FIELD(struct q7_in, bid.price, SP_T_I64),   SP_FIELD(struct q7_in, bid.date_time, SP_T_I64),
    SP_FIELD(struct q7_in, bid.extra, SP_T_STR),
};
static const struct sp_schema q7_in_schema = SP_SCHEMA(struct q7_in, q7_in_fields);

static void q7_flat_map(void *ctx, const void *in, int64_t ts, struct sp_out *out)
{
    (void)ctx;
    const struct sp_nexmark_event *e = in;
    if (e->kind != SP_NEXMARK_BID)
        return;
    int64_t end = window_start(e->date_time, WINDOW_10S) + WINDOW_10S;
    for (int own = 1; own >= 0; own--) {
        struct q7_in *r = sp_out_row(out, ts);
        r->window_end = own ? end : e->date_time;
        r->own = own;
        r->bid = (struct sp_nexmark_q0_row){.auction = e->bid_auction,
                                            .bidder = e->bid_bidder,
                                            .price = e->bid_price,
                                            .date_time = e->date_time,
                                            .extra = e->extra};
        if (e->date_time != end - WINDOW_10S)
            break; /* only a bid at a window's start lies at the previous one's end */
    }
}

struct q7_state {
    int64_t max;
    bool has_max;
};

/* A candidate: a bid at the highest price so far, extra inline. */
struct q7_candidate {
    int64_t auction, bidder, price, date_time;
    uint32_t extra_len;
    char extra[];
};

static void q7_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)ts;
    const struct q7_in *in = row;
    const struct sp_nexmark_config *config = sp_pctx_user(c);
    struct q7_state *st = sp_pctx_state(c);
    if (st == NULL)
        return;
    int64_t price = in->bid.price;
    if (in->own && (!st->has_max || price > st->max)) {
        st->max = price;
        st->has_max = true;
        for (uint32_t i = sp_pctx_list_len(c); i-- > 0;) {
            if (((const struct q7_candidate *)sp_pctx_list_at(c, i))->price < price)
                sp_pctx_list_remove(c, i);
        }
    }
    if (st->has_max && price < st->max)
        return;
    uint32_t cap = SP_NEXMARK_EXTRA_MAX(config->avg_bid_bytes);
    struct q7_candidate *k = sp_pctx_list_append(c);
    if (k == NULL)
        return;
    k->auction = in->bid.auction;
    k->bidder = in->bid.bidder;
    k->price = price;
    k->date_time = in->bid.date_time;
    k->extra_len = in->bid.extra.len < cap ? in->bid.extra.len : cap;
    memcpy(k->extra, in->bid.extra.ptr, k->extra_len);
    /* The window's end itself: bids exactly there are in by then. */
    sp_pctx_timer_event(c, in->window_end);
}

static void q7_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    const struct q7_state *st = sp_pctx_state_find(c);
    uint32_t n = sp_pctx_list_len(c);
    for (uint32_t i = 0; st != NULL && st->has_max && i < n; i++) {
        const struct q7_candidate *k = sp_pctx_list_at(c, i);
        if (k->price != st->max)
            continue;
        struct sp_out *out = sp_pctx_out(c);
        struct sp_nexmark_q0_row *r = sp_out_row(out, ts);
        r->auction = k->auction;
        r->bidder = k->bidder;
        r->price = k->price;
        r->date_time = k->date_time;
        r->extra = sp_out_str(out, k->extra, k->extra_len);
    }
    sp_pctx_list_clear(c);
    sp_pctx_state_clear(c);
}

static struct sp_stream *q7(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q7_state),
        .list_bytes =
            (uint32_t)sizeof(struct q7_candidate) + SP_NEXMARK_EXTRA_MAX(config->avg_bid_bytes),
        .process = q7_process,
        .on_timer = q7_timer,
        .ctx = (void *)config,
    };
    struct sp_stream *s = sp_flat_map(events, &q7_in_schema, q7_flat_map, NULL);
    return sp_process(sp_key_by(s, "window_end"), &sp_nexmark_q7_schema, &fn);
}

/* ---- q8: monitor new users ---- */

static const struct sp_field q8_fields[] = {
    SP_FIELD(struct sp_nexmark_q8_row, id, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q8_row, name, SP_T_STR),
    SP_FIELD(struct sp_nexmark_q8_row, starttime, SP_T_I64),
};
const struct sp_schema sp_nexmark_q8_schema = SP_SCHEMA(struct sp_nexmark_q8_row, q8_fields);

/* A person, or an auction by seller `id`, with its window's start. */
struct q8_in {
    int64_t kind;
    int64_t id;
    int64_t start;
    struct sp_str name;
};
static const struct sp_field q8_in_fields[] = {
    SP_FIELD(struct q8_in, kind, SP_T_I64),
    SP_FIELD(struct q8_in, id, SP_T_I64),
    SP_FIELD(struct q8_in, start, SP_T_I64),
    SP_FIELD(struct q8_in, name, SP_T_STR),
};
static const struct sp_schema q8_in_schema = SP_SCHEMA(struct q8_in, q8_in_fields);

static bool q8_filter(void *ctx, const void *row)
{
    (void)ctx;
    int64_t kind = ((const struct sp_nexmark_event *)row)->kind;
    return kind == SP_NEXMARK_PERSON || kind == SP_NEXMARK_AUCTION;
}

static void q8_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_nexmark_event *e = in;
    struct q8_in *r = out_row;
    r->kind = e->kind;
    r->start = window_start(e->date_time, WINDOW_10S);
    if (e->kind == SP_NEXMARK_PERSON) {
        r->id = e->person_id;
        r->name = e->person_name;
    } else {
        r->id = e->auction_seller;
    }
}

struct q8_person {
    int64_t start;
    bool matched;
    struct fixed_str name;
};

static bool q8_waiting_has(struct sp_pctx *c, int64_t start)
{
    uint32_t n = sp_pctx_list_len(c);
    for (uint32_t i = 0; i < n; i++) {
        if (*(const int64_t *)sp_pctx_list_at(c, i) == start)
            return true;
    }
    return false;
}

static void q8_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)ts;
    const struct q8_in *in = row;
    if (in->kind == SP_NEXMARK_PERSON) {
        struct q8_person *p = sp_pctx_state(c);
        if (p == NULL)
            return;
        p->start = in->start;
        fixed_set(&p->name, in->name);
        p->matched = q8_waiting_has(c, in->start);
        sp_pctx_list_clear(c);
        sp_pctx_timer_event(c, in->start + WINDOW_10S - 1);
        return;
    }
    struct q8_person *p = sp_pctx_state_find(c);
    if (p != NULL) {
        if (p->start == in->start)
            p->matched = true;
        return; /* a person has one window: an auction in another cannot match */
    }
    if (q8_waiting_has(c, in->start))
        return;
    int64_t *w = sp_pctx_list_append(c);
    if (w == NULL)
        return;
    *w = in->start;
    sp_pctx_timer_event(c, in->start + WINDOW_10S - 1);
}

static void q8_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct q8_person *p = sp_pctx_state_find(c);
    if (p != NULL) {
        if (p->start + WINDOW_10S - 1 != ts)
            return;
        if (p->matched) {
            struct sp_out *out = sp_pctx_out(c);
            struct sp_nexmark_q8_row *r = sp_out_row(out, ts);
            r->id = key_i64(c);
            r->name = fixed_out(out, &p->name);
            r->starttime = p->start;
        }
        sp_pctx_state_clear(c);
        return;
    }
    /* Auctions whose seller did not come in their window. */
    for (uint32_t i = sp_pctx_list_len(c); i-- > 0;) {
        if (*(const int64_t *)sp_pctx_list_at(c, i) + WINDOW_10S - 1 <= ts)
            sp_pctx_list_remove(c, i);
    }
}

static struct sp_stream *q8(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q8_person),
        .list_bytes = sizeof(int64_t),
        .process = q8_process,
        .on_timer = q8_timer,
    };
    struct sp_stream *s = sp_map(sp_filter(events, q8_filter, NULL), &q8_in_schema, q8_map, NULL);
    return sp_process(sp_key_by(s, "id"), &sp_nexmark_q8_schema, &fn);
}

/* ---- q11: user sessions ---- */

static const struct sp_field q11_fields[] = {
    SP_FIELD(struct sp_nexmark_q11_row, bidder, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q11_row, bid_count, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q11_row, starttime, SP_T_I64),
    SP_FIELD(struct sp_nexmark_q11_row, endtime, SP_T_I64),
};
const struct sp_schema sp_nexmark_q11_schema = SP_SCHEMA(struct sp_nexmark_q11_row, q11_fields);
const struct sp_schema sp_nexmark_q12_schema = SP_SCHEMA(struct sp_nexmark_q11_row, q11_fields);

struct bidder_row {
    int64_t bidder;
};
static const struct sp_field bidder_row_fields[] = {
    SP_FIELD(struct bidder_row, bidder, SP_T_I64),
};
static const struct sp_schema bidder_row_schema = SP_SCHEMA(struct bidder_row, bidder_row_fields);

static void bidder_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    ((struct bidder_row *)out_row)->bidder = ((const struct sp_nexmark_event *)in)->bid_bidder;
}

static void q11_map(void *ctx, const void *in, void *out_row, struct sp_out *out)
{
    (void)ctx, (void)out;
    const struct sp_agg_row *a = in;
    *(struct sp_nexmark_q11_row *)out_row = (struct sp_nexmark_q11_row){
        .bidder = a->key.i64,
        .bid_count = a->value.i64,
        .starttime = a->window_start,
        .endtime = a->window_end,
    };
}

static struct sp_stream *q11(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    struct sp_stream *s = sp_map(bids(events), &bidder_row_schema, bidder_map, NULL);
    s = sp_window_aggregate(sp_key_by(s, "bidder"),
                            &(struct sp_window){.kind = SP_WINDOW_SESSION, .gap_ms = WINDOW_10S},
                            &(struct sp_agg){.kind = SP_AGG_COUNT}, NULL);
    return sp_map(s, &sp_nexmark_q11_schema, q11_map, NULL);
}

/* ---- q12: processing-time windows ---- */

struct q12_state {
    int64_t start;
    int64_t count;
};

static void q12_emit(struct sp_pctx *c, const struct q12_state *st)
{
    struct sp_nexmark_q11_row *r = sp_out_row(sp_pctx_out(c), st->start + WINDOW_10S - 1);
    *r = (struct sp_nexmark_q11_row){.bidder = key_i64(c),
                                     .bid_count = st->count,
                                     .starttime = st->start,
                                     .endtime = st->start + WINDOW_10S};
}

static void q12_process(struct sp_pctx *c, const void *row, int64_t ts)
{
    (void)row, (void)ts;
    struct q12_state *st = sp_pctx_state(c);
    if (st == NULL)
        return;
    int64_t start = window_start(sp_pctx_now_ms(c), WINDOW_10S);
    if (st->count > 0 && st->start != start) {
        /* Its timer is due but has not run yet: close it now. */
        q12_emit(c, st);
        st->count = 0;
    }
    if (st->count == 0) {
        st->start = start;
        sp_pctx_timer_proc(c, start + WINDOW_10S);
    }
    st->count++;
}

static void q12_timer(struct sp_pctx *c, int64_t ts, bool event_time)
{
    (void)event_time;
    struct q12_state *st = sp_pctx_state_find(c);
    if (st == NULL || st->count == 0 || st->start + WINDOW_10S != ts)
        return; /* closed early by a later bid */
    q12_emit(c, st);
    sp_pctx_state_clear(c);
}

static struct sp_stream *q12(struct sp_stream *events, const struct sp_nexmark_config *config)
{
    (void)config;
    static const struct sp_process_fn fn = {
        .state_bytes = sizeof(struct q12_state),
        .process = q12_process,
        .on_timer = q12_timer,
        .proc_timers_at_end = true,
    };
    struct sp_stream *s = sp_map(bids(events), &bidder_row_schema, bidder_map, NULL);
    return sp_process(sp_key_by(s, "bidder"), &sp_nexmark_q12_schema, &fn);
}

/* ---- The table of queries ---- */

struct query {
    const char *name;
    struct sp_stream *(*build)(struct sp_stream *events, const struct sp_nexmark_config *config);
};

static struct sp_stream *q0_(struct sp_stream *e, const struct sp_nexmark_config *c)
{
    (void)c;
    return q0(e);
}

static struct sp_stream *q1_(struct sp_stream *e, const struct sp_nexmark_config *c)
{
    (void)c;
    return q1(e);
}

static struct sp_stream *q2_(struct sp_stream *e, const struct sp_nexmark_config *c)
{
    (void)c;
    return q2(e);
}

static const struct query queries[] = {
    {"q0", q0_}, {"q1", q1_}, {"q2", q2_}, {"q3", q3},   {"q4", q4},   {"q5", q5},
    {"q6", q6},  {"q7", q7},  {"q8", q8},  {"q11", q11}, {"q12", q12},
};

const char *const sp_nexmark_query_names[] = {"q0", "q1", "q2", "q3",  "q4",  "q5",
                                              "q6", "q7", "q8", "q11", "q12", NULL};

const char *sp_nexmark_query_list(void)
{
    return "q0, q1, q2, q3, q4, q5, q6, q7, q8, q11, q12";
}

bool sp_nexmark_query_exists(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(queries) / sizeof(queries[0]); i++) {
        if (strcmp(queries[i].name, name) == 0)
            return true;
    }
    return false;
}

struct sp_stream *sp_nexmark_query(struct sp_job *job, const char *name, struct sp_stream *events,
                                   const struct sp_nexmark_config *config)
{
    for (size_t i = 0; name != NULL && i < sizeof(queries) / sizeof(queries[0]); i++) {
        if (strcmp(queries[i].name, name) == 0)
            return queries[i].build(events, config);
    }
    sp_job_set_error(job, "nexmark: no query '%s' (have: %s)", name ? name : "",
                     sp_nexmark_query_list());
    return events;
}
