/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark queries on the job API, with the semantics of nexmark-flink's
 * SQL (see sp_nexmark.h for each one's output row). Every query reads the
 * one event stream of the source; those on bids first keep the bids
 * (sp_filter on kind), then project them into a small row of their own
 * (sp_map), so nothing downstream carries the 264-byte event row.
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

struct query {
    const char *name;
    struct sp_stream *(*build)(struct sp_stream *events);
};

static const struct query queries[] = {
    {"q0", q0},
    {"q1", q1},
    {"q2", q2},
};

const char *const sp_nexmark_query_names[] = {"q0", "q1", "q2", NULL};

bool sp_nexmark_query_exists(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(queries) / sizeof(queries[0]); i++) {
        if (strcmp(queries[i].name, name) == 0)
            return true;
    }
    return false;
}

struct sp_stream *sp_nexmark_query(struct sp_job *job, const char *name, struct sp_stream *events)
{
    for (size_t i = 0; name != NULL && i < sizeof(queries) / sizeof(queries[0]); i++) {
        if (strcmp(queries[i].name, name) == 0)
            return queries[i].build(events);
    }
    sp_job_set_error(job, "nexmark: no query '%s' (have: q0, q1, q2)", name ? name : "");
    return events;
}
