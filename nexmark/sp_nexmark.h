/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark event generator: people, auctions and bids of an online
 * auction, as Apache Beam's Nexmark (org.apache.beam.sdk.nexmark.sources.
 * generator) and nexmark-flink (com.github.nexmark.flink.generator), which
 * copied it, make them, and the queries on them (q0 to q8, q11, q12; docs/
 * nexmark.md). The runner is `spate bench nexmark` (spate/cmd_nexmark.c).
 *
 * One row type for the three kinds. A source has one schema, and the
 * reference itself is one stream of events (nexmark-flink's `datagen`
 * table: event_type plus a person, an auction and a bid column): `kind`
 * says which of the three the row is, the fields of the other two are zero.
 * Field names are the reference's, in snake case, prefixed by the kind
 * (Person.emailAddress is person_email_address) except for dateTime and
 * extra, which every kind has (date_time, extra).
 *
 * Event n (the n-th of the stream, 0, 1, 2, ...) is a pure function of the
 * configuration and n, so the stream is the same on any number of cores: the
 * source is spate's generator (ops/basic.c), event n in partition n mod P.
 * With out_of_order_group_size g > 1 position n carries event id
 * (n / g) * g + (n * 953) % g, the reference's nextAdjustedEventNumber.
 *
 * Randomness: like Beam's Generator.nextEvent, each event draws from a
 * java.util.Random seeded with its event id (xor a mix of `seed`, so seed 0
 * is Beam's seeding), reproduced exactly (the 48-bit LCG, nextInt(bound),
 * nextLong, nextDouble), and draws in the reference's order: the first 1M
 * events of the default configuration equal, field for field (bid URLs
 * aside), what the reference's generator functions print on a JVM. Two
 * places could differ: Math.pow may differ from C's pow in the last ulp (a
 * price off by one cent; none in those 1M events), and nexmark-flink builds
 * its bid URLs from an unseeded Random per process; here they come from
 * Randoms seeded by the channel number, the same on every run.
 *
 * Not copied: nexmark-flink's BidGenerator adds FIRST_PERSON_ID to the
 * bidder twice (bidders 1000 ids past every person); the bidder here is
 * Beam's, added once.
 */
#ifndef SP_NEXMARK_H
#define SP_NEXMARK_H

#include <stdbool.h>
#include <stdint.h>

#include "sp_job.h"

enum sp_nexmark_kind {
    SP_NEXMARK_PERSON = 0, /* nexmark-flink's event_type numbers */
    SP_NEXMARK_AUCTION = 1,
    SP_NEXMARK_BID = 2,
};

/* GeneratorConfig.FIRST_*_ID and AuctionGenerator.NUM_CATEGORIES. */
#define SP_NEXMARK_FIRST_PERSON_ID 1000
#define SP_NEXMARK_FIRST_AUCTION_ID 1000
#define SP_NEXMARK_FIRST_CATEGORY_ID 10
#define SP_NEXMARK_NUM_CATEGORIES 5
/* PersonGenerator.PERSON_ID_LEAD, AuctionGenerator.AUCTION_ID_LEAD: how far
 * past the last id that exists a random (not hot) choice may reach. */
#define SP_NEXMARK_PERSON_ID_LEAD 10
#define SP_NEXMARK_AUCTION_ID_LEAD 10
/* The largest average sizes accepted (the extra field is built on the stack). */
#define SP_NEXMARK_AVG_BYTES_MAX 6000
/* The longest person name, city and state the generator makes (its lists:
 * "Deiter Bartels", "San Francisco"), which queries keep in fixed state. */
#define SP_NEXMARK_NAME_MAX 31
/* The longest extra field of an event averaging `avg` bytes (nextExtra). */
#define SP_NEXMARK_EXTRA_MAX(avg) ((avg)*6 / 5 + 8)

/* One event: `kind` says which fields are set. */
struct sp_nexmark_event {
    int64_t kind;      /* enum sp_nexmark_kind */
    int64_t event_id;  /* the reference's event id (n with no out-of-orderness) */
    int64_t date_time; /* event time, ms since the epoch: the row's timestamp */
    struct sp_str extra;
    /* Person */
    int64_t person_id;
    struct sp_str person_name;
    struct sp_str person_email_address;
    struct sp_str person_credit_card;
    struct sp_str person_city;
    struct sp_str person_state;
    /* Auction */
    int64_t auction_id;
    struct sp_str auction_item_name;
    struct sp_str auction_description;
    int64_t auction_initial_bid;
    int64_t auction_reserve;
    int64_t auction_expires;
    int64_t auction_seller;
    int64_t auction_category;
    /* Bid */
    int64_t bid_auction;
    int64_t bid_bidder;
    int64_t bid_price;
    struct sp_str bid_channel;
    struct sp_str bid_url;
};

extern const struct sp_schema sp_nexmark_schema;

/*
 * The reference's knobs (NexmarkConfiguration, GeneratorConfig). Start from
 * sp_nexmark_config_default(), which sets the reference's defaults.
 */
struct sp_nexmark_config {
    uint64_t events;                  /* 0: unbounded */
    uint64_t seed;                    /* 0: Beam's seeding */
    uint32_t partitions;              /* generator partitions; 0: one per core */
    double emit_rate;                 /* wall-clock events/s over all partitions; 0: max speed */
    double first_event_rate;          /* events/s of event time (10,000) */
    int64_t base_time_ms;             /* date_time of event 0 (2020-01-01T00:00:00Z) */
    uint32_t person_proportion;       /* 1 */
    uint32_t auction_proportion;      /* 3 */
    uint32_t bid_proportion;          /* 46 */
    uint32_t num_active_people;       /* 1000 */
    uint32_t num_in_flight_auctions;  /* 100 */
    uint32_t hot_auction_ratio;       /* 2: 1 - 1/2 of bids on a hot auction */
    uint32_t hot_sellers_ratio;       /* 4 */
    uint32_t hot_bidders_ratio;       /* 4 */
    uint32_t avg_person_bytes;        /* 200 */
    uint32_t avg_auction_bytes;       /* 500 */
    uint32_t avg_bid_bytes;           /* 100 */
    uint32_t out_of_order_group_size; /* 1: in order */
    int64_t out_of_orderness_ms;      /* the source's watermark bound (4000) */
};

void sp_nexmark_config_default(struct sp_nexmark_config *config);

/*
 * A source of `config->events` events: sp_nexmark_schema rows, timestamped
 * with date_time, watermarks date_time - out_of_orderness_ms - 1 per
 * partition (nexmark-flink's DDL: WATERMARK FOR dateTime AS dateTime -
 * INTERVAL '4' SECOND). `config` is borrowed: it must stay valid and
 * unchanged until the job is freed. A bad configuration is an error on the
 * job (sp_job_error).
 */
struct sp_stream *sp_nexmark_source(struct sp_job *job, const struct sp_nexmark_config *config);

/*
 * Writes the event at stream position `index` into `row` (zeroed), strings
 * through sp_out_str(out, ...); returns its date_time. The sp_gen_fn of the
 * source, `ctx` the config.
 */
int64_t sp_nexmark_generate(void *ctx, uint32_t partition, uint64_t index, void *row,
                            struct sp_out *out);

/*
 * An event's size as the reference counts it when it pads with the extra
 * field (PersonGenerator, AuctionGenerator, BidGenerator: 8 bytes per number
 * it counts, the length of every string it counts, plus extra): what
 * averages avg_person_bytes, avg_auction_bytes and avg_bid_bytes.
 */
uint32_t sp_nexmark_size(const struct sp_nexmark_event *event);

/* java.util.Random, exactly: a 48-bit LCG. */
struct sp_jrandom {
    uint64_t seed;
};

void sp_jrandom_init(struct sp_jrandom *r, int64_t seed);
int32_t sp_jrandom_next_int(struct sp_jrandom *r);
/* [0, bound), bound > 0. */
int32_t sp_jrandom_next_int_bound(struct sp_jrandom *r, int32_t bound);
int64_t sp_jrandom_next_long(struct sp_jrandom *r);
double sp_jrandom_next_double(struct sp_jrandom *r);

/* ---- Queries (queries.c) ---- */

/*
 * The queries with the semantics of nexmark-flink's SQL, built on the job
 * API from the source's event stream. Rows keep the event's timestamp.
 *
 * q0, pass-through: SELECT auction, bidder, price, dateTime, extra FROM bid.
 */
struct sp_nexmark_q0_row {
    int64_t auction;
    int64_t bidder;
    int64_t price;
    int64_t date_time;
    struct sp_str extra;
};
extern const struct sp_schema sp_nexmark_q0_schema;

/*
 * q1, currency conversion: SELECT auction, bidder, 0.908 * price AS price,
 * dateTime, extra FROM bid. The SQL's price is DECIMAL(23, 3), a fraction
 * (0.908 of a price in cents): a double, 0.908 * (double)price, keeps it
 * where integral cents would round it away, is within one ulp of the exact
 * decimal (prices are far below 2^53 / 1000, so rounding to 3 decimals gives
 * it back exactly), and is bit for bit what SQLite's REAL arithmetic (the
 * checker's) computes.
 */
struct sp_nexmark_q1_row {
    int64_t auction;
    int64_t bidder;
    double price;
    int64_t date_time;
    struct sp_str extra;
};
extern const struct sp_schema sp_nexmark_q1_schema;

static inline double sp_nexmark_q1_price(int64_t price)
{
    return 0.908 * (double)price;
}

/* q2, selection: SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0. */
struct sp_nexmark_q2_row {
    int64_t auction;
    int64_t price;
};
extern const struct sp_schema sp_nexmark_q2_schema;

/*
 * q3, local item suggestion: SELECT P.name, P.city, P.state, A.id FROM
 * auction A JOIN person P ON A.seller = P.id WHERE A.category = 10 AND
 * P.state IN ('OR', 'ID', 'CA'). An unbounded join, keyed by person: the
 * state keeps each qualifying person, and the category-10 auctions whose
 * seller has not arrived yet (as Flink keeps both sides; the filters run
 * before the join, so an auction of a seller elsewhere waits forever, as it
 * does in Flink). A row is emitted when its second side arrives.
 */
struct sp_nexmark_q3_row {
    struct sp_str name;
    struct sp_str city;
    struct sp_str state;
    int64_t id;
};
extern const struct sp_schema sp_nexmark_q3_schema;

/*
 * q4, average price per category: the winning bid of each auction (the
 * highest price among its bids between its date_time and its expires,
 * inclusive), then AVG(final) per category, as an integer (Flink's AVG of a
 * BIGINT truncates). Emitted as a changelog: a new average for the category
 * each time one of its auctions closes (the watermark passes its expires),
 * the last one per category being the SQL's answer. Closing at expiry is
 * where this departs from Flink's SQL plan, which updates on every bid:
 * the final values are the same, with one row per auction instead of one
 * per better bid, and state freed when the auction closes. Bids waiting
 * for their auction are dropped once the watermark passes them (an auction
 * that could still match them would be late).
 */
struct sp_nexmark_q4_row {
    int64_t category;
    int64_t avg;
};
extern const struct sp_schema sp_nexmark_q4_schema;

/*
 * q5, hot items: bids counted per auction in hopping windows of 10 s every
 * 2 s; per window, the auctions with the most bids (ties: all of them),
 * emitted when the watermark passes the window's end.
 */
struct sp_nexmark_q5_row {
    int64_t auction;
    int64_t num;
    int64_t starttime;
    int64_t endtime;
};
extern const struct sp_schema sp_nexmark_q5_schema;

/*
 * q6, average selling price by seller: the winning bids of q4, and per
 * seller the average (integer) of the prices of their last 10 closed
 * auctions, ordered by close time (expires, then auction id): a changelog
 * row per closed auction. nexmark-flink's SQL (which Flink cannot run:
 * its OVER window cannot consume the winning bids' retractions) writes
 * ROWS BETWEEN 10 PRECEDING AND CURRENT ROW, 11 rows; the query's own
 * description, Beam's Query6 and this take the last 10.
 */
#define SP_NEXMARK_Q6_AUCTIONS 10
struct sp_nexmark_q6_row {
    int64_t seller;
    int64_t avg_price;
};
extern const struct sp_schema sp_nexmark_q6_schema;

/*
 * q7, highest bid: the highest price per tumbling window of 10 s, and every
 * bid with that price whose date_time is BETWEEN the window's end - 10 s
 * AND its end (inclusive: a bid at exactly a window's end also matches the
 * window before its own). q0's row; emitted when the watermark passes the
 * window's end.
 */
extern const struct sp_schema sp_nexmark_q7_schema;

/*
 * q8, monitor new users: people who entered the system and created an
 * auction in the same tumbling window of 10 s; one row per person and
 * window, emitted when the watermark passes the window's end.
 */
struct sp_nexmark_q8_row {
    int64_t id;
    struct sp_str name;
    int64_t starttime;
};
extern const struct sp_schema sp_nexmark_q8_schema;

/*
 * q11, user sessions: bids per bidder in session windows with a gap of
 * 10 s (endtime: the last bid's date_time + 10 s), emitted when the
 * watermark passes the session's end.
 */
struct sp_nexmark_q11_row {
    int64_t bidder;
    int64_t bid_count;
    int64_t starttime;
    int64_t endtime;
};
extern const struct sp_schema sp_nexmark_q11_schema;

/*
 * q12, processing-time windows: bids per bidder in tumbling windows of 10 s
 * of wall-clock time (starttime, endtime: ms since the epoch), emitted when
 * the window's end comes; at the end of a bounded run the open windows are
 * emitted early rather than lost. q11's row.
 */
extern const struct sp_schema sp_nexmark_q12_schema;

/* The query names, NULL-terminated: q0 to q8, q11, q12. */
extern const char *const sp_nexmark_query_names[];

bool sp_nexmark_query_exists(const char *name);

/* The names, comma-separated ("q0, q1, ..."), for messages. */
const char *sp_nexmark_query_list(void);

/*
 * Builds query `name` on `events` (a sp_nexmark_source stream of `config`,
 * which the queries read bounds from: borrowed like the source's) and
 * returns its output stream; an unknown name is an error on the job
 * (sp_job_error) and returns `events`, a placeholder.
 */
struct sp_stream *sp_nexmark_query(struct sp_job *job, const char *name, struct sp_stream *events,
                                   const struct sp_nexmark_config *config);

#endif /* SP_NEXMARK_H */
