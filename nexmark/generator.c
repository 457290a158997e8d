/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark generator (sp_nexmark.h): event n of the stream as a pure
 * function of the configuration and n. The logic and constants are the
 * reference's: GeneratorConfig (proportions, first ids, timestampForEvent,
 * nextAdjustedEventNumber), NexmarkGenerator / Beam's Generator (kind by
 * event id, a java.util.Random per event), PersonGenerator, AuctionGenerator,
 * BidGenerator (nexmark-flink's, with channel and url), PriceGenerator,
 * LongGenerator and StringsGenerator. Every random draw happens in the
 * reference's order, so that a change in one field does not shift the
 * others'.
 *
 * Strings are built in a buffer on the stack and copied into the batch with
 * sp_out_str; nothing is allocated per event. The 10,000 bid channels and
 * their URLs (nexmark-flink's CHANNEL_URL_CACHE) are built once per process,
 * deterministically, into a static table.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sp_nexmark.h"

/* ---- java.util.Random ---- */

#define JR_MULT 0x5DEECE66DULL
#define JR_MASK ((1ULL << 48) - 1)

void sp_jrandom_init(struct sp_jrandom *r, int64_t seed)
{
    r->seed = ((uint64_t)seed ^ JR_MULT) & JR_MASK;
}

/* Random.next(bits): the top `bits` of the 48-bit state, as a signed int. */
static inline __attribute__((always_inline)) int32_t jr_next(struct sp_jrandom *r, int bits)
{
    assert(bits > 0 && bits <= 32);
    r->seed = (r->seed * JR_MULT + 0xB) & JR_MASK;
    return (int32_t)(uint32_t)(r->seed >> (48 - bits));
}

int32_t sp_jrandom_next_int(struct sp_jrandom *r)
{
    return jr_next(r, 32);
}

/*
 * Division by a number known only at run time (a bound, the proportions'
 * total) without the divide instruction: Lemire's direct remainder, with
 * the reciprocal cached per thread (each shard its own; the same few
 * divisors come back event after event). 32-bit dividends, divisors >= 2.
 */
struct fastdiv {
    uint32_t d;
    uint64_t m; /* 2^64 / d, rounded up */
};

static __thread struct fastdiv fastdiv_cache[4];

__extension__ typedef unsigned __int128 u128;

static inline const struct fastdiv *fastdiv_of(uint32_t d)
{
    struct fastdiv *f = &fastdiv_cache[d & 3];
    if (f->d != d) {
        f->d = d;
        f->m = UINT64_MAX / d + 1;
    }
    return f;
}

static inline uint32_t fastdiv_quot(const struct fastdiv *f, uint32_t a)
{
    return (uint32_t)(((u128)f->m * a) >> 64);
}

static inline uint32_t fastdiv_rem(const struct fastdiv *f, uint32_t a)
{
    uint64_t low = f->m * a;
    return (uint32_t)(((u128)low * f->d) >> 64);
}

/* Random.nextInt(bound), inlined so that a constant bound's remainder is a
 * multiplication, in 32-bit arithmetic as Java's (a 64-bit division costs
 * several times more). */
static inline __attribute__((always_inline)) int32_t jr_bound(struct sp_jrandom *r, int32_t bound)
{
    assert(bound > 0);
    int32_t x = jr_next(r, 31);
    uint32_t m = (uint32_t)bound - 1;
    if (((uint32_t)bound & m) == 0)
        return (int32_t)(((int64_t)bound * x) >> 31);
    /* Rejects the top partial range: Java's `u - r + m < 0` is int overflow
     * (u < 2^31 and m < 2^31: the sum fits 32 unsigned bits). */
    if (__builtin_constant_p(bound)) {
        for (uint32_t u = (uint32_t)x;; u = (uint32_t)jr_next(r, 31)) {
            uint32_t rem = u % (uint32_t)bound;
            if (u - rem + m <= (uint32_t)INT32_MAX)
                return (int32_t)rem;
        }
    }
    const struct fastdiv *f = fastdiv_of((uint32_t)bound);
    for (uint32_t u = (uint32_t)x;; u = (uint32_t)jr_next(r, 31)) {
        uint32_t rem = fastdiv_rem(f, u);
        if (u - rem + m <= (uint32_t)INT32_MAX)
            return (int32_t)rem;
    }
}

int32_t sp_jrandom_next_int_bound(struct sp_jrandom *r, int32_t bound)
{
    return jr_bound(r, bound);
}

int64_t sp_jrandom_next_long(struct sp_jrandom *r)
{
    int64_t hi = jr_next(r, 32);
    int64_t lo = jr_next(r, 32);
    return (int64_t)((uint64_t)hi << 32) + lo;
}

double sp_jrandom_next_double(struct sp_jrandom *r)
{
    int64_t hi = jr_next(r, 26);
    int64_t lo = jr_next(r, 27);
    return (double)((hi << 27) + lo) * 0x1.0p-53;
}

/* LongGenerator.nextLong: [0, n). */
static int64_t next_long_below(struct sp_jrandom *r, int64_t n)
{
    assert(n > 0);
    if (n < INT32_MAX)
        return jr_bound(r, (int32_t)n);
    int64_t v = sp_jrandom_next_long(r) % n; /* the reference's skewed fallback */
    return v < 0 ? -v : v;
}

/* Math.round for the non-negative values used here. */
static int64_t java_round(double x)
{
    return (int64_t)floor(x + 0.5);
}

/* ---- Strings (StringsGenerator) ---- */

#define MIN_STRING_LENGTH 3

/* nextString(random, maxLength, special) into `buf`; returns the length after trim(). */
static uint32_t next_string(struct sp_jrandom *r, int32_t max_length, char special, char *buf)
{
    int32_t len = MIN_STRING_LENGTH + jr_bound(r, max_length - MIN_STRING_LENGTH);
    for (int32_t i = 0; i < len; i++) {
        if (jr_bound(r, 13) == 0)
            buf[i] = special;
        else
            buf[i] = (char)('a' + jr_bound(r, 26));
    }
    /* String.trim(): drop leading and trailing chars <= ' '. */
    int32_t start = 0, end = len;
    while (start < end && (unsigned char)buf[start] <= ' ')
        start++;
    while (end > start && (unsigned char)buf[end - 1] <= ' ')
        end--;
    memmove(buf, buf + start, (size_t)(end - start));
    return (uint32_t)(end - start);
}

/* nextExactString: six letters per nextInt(); a negative int gives the
 * characters below 'a' that Java's signed remainder gives too. */
/* The three letters of v in -17575..17575 (v % 26, v / 26 % 26, v / 676,
 * as Java computes them for a negative v too), at triple_letters[v +
 * 17575], padded to 4 bytes (137 KiB: it stays in L2). */
#define TRIPLE 17576
static char triple_letters[2 * TRIPLE - 1][4];

static void triple_letters_build(void)
{
    for (int v = -(TRIPLE - 1); v <= TRIPLE - 1; v++) {
        triple_letters[v + TRIPLE - 1][0] = (char)('a' + v % 26);
        triple_letters[v + TRIPLE - 1][1] = (char)('a' + v / 26 % 26);
        triple_letters[v + TRIPLE - 1][2] = (char)('a' + v / 676);
    }
}

/* Writes 6 letters and may write 2 bytes past them (the caller's buffer has room). */
static inline void six_letters(char *buf, int32_t rnd)
{
    memcpy(buf, triple_letters[rnd % TRIPLE + TRIPLE - 1], 4);
    memcpy(buf + 3, triple_letters[rnd / TRIPLE % TRIPLE + TRIPLE - 1], 4);
}

static void next_exact_string(struct sp_jrandom *r, int32_t length, char *buf)
{
    /* Letter k of an int is (rnd / 26^k) % 26 (C's division truncates as
     * Java's does, so the repeated rnd /= 26 composes into one division, and
     * letters k..k+2 are those of (rnd / 26^k) % 17576): two independent
     * divisions by constants and two table loads per int, not a chain of
     * twelve. */
    int32_t i = 0;
    /* Four ints at a time, each state straight from the first by the LCG's
     * jump-ahead (s_k = s_0 * M^k + c_k mod 2^48): four independent
     * multiplications instead of a chain of four. */
    uint64_t s0 = r->seed;
    for (; i + 24 <= length; i += 24) {
        uint64_t s1 = (s0 * JR_MULT + 0xB) & JR_MASK;
        uint64_t s2 = (s0 * 0xbb20b4600a69ULL + 0x40942de6baULL) & JR_MASK;
        uint64_t s3 = (s0 * 0xd498bd0ac4b5ULL + 0xaa8544e593dULL) & JR_MASK;
        uint64_t s4 = (s0 * 0x32eb772c5f11ULL + 0x2d3873c4cd04ULL) & JR_MASK;
        six_letters(buf + i, (int32_t)(uint32_t)(s1 >> 16));
        six_letters(buf + i + 6, (int32_t)(uint32_t)(s2 >> 16));
        six_letters(buf + i + 12, (int32_t)(uint32_t)(s3 >> 16));
        six_letters(buf + i + 18, (int32_t)(uint32_t)(s4 >> 16));
        s0 = s4;
    }
    r->seed = s0;
    for (; i + 6 <= length; i += 6)
        six_letters(buf + i, jr_next(r, 32));
    if (i < length) {
        int32_t rnd = jr_next(r, 32);
        for (; i < length; i++) {
            buf[i] = (char)('a' + rnd % 26);
            rnd /= 26;
        }
    }
}

/* nextExtra: a string making current_size + its length average avg_size. */
static struct sp_str next_extra(struct sp_jrandom *r, int32_t current_size, int32_t avg_size,
                                struct sp_out *out)
{
    if (current_size > avg_size)
        return sp_out_str(out, "", 0);
    int32_t want = avg_size - current_size;
    int32_t delta = (int32_t)java_round(want * 0.2);
    int32_t size = want - delta + (delta == 0 ? 0 : jr_bound(r, 2 * delta));
    /* Written in place, with room for six_letters' 2 bytes of overshoot. */
    struct sp_str s;
    char *buf = sp_out_str_alloc(out, (uint32_t)size + 2, &s);
    if (buf == NULL)
        return s;
    next_exact_string(r, size, buf);
    s.len = (uint32_t)size;
    return s;
}

/* PriceGenerator.nextPrice: 10^(u*6) * 100, cents from 1 to 10^8. */
static int64_t next_price(struct sp_jrandom *r)
{
    /* exp(x ln 10) is within ~4e-15 (relative; mostly the rounding of
     * x ln 10 <= 13.9) of pow(10, x): at most 4e-7 of a cent on prices up
     * to 10^8 cents. So its cents round the same way unless they lie within
     * 1e-5 of a half, where pow decides (a price in ~50,000): pow's results
     * at exp's cost. */
    double x = sp_jrandom_next_double(r) * 6.0;
    double cents = exp(x * 2.302585092994045684) * 100.0;
    double frac = cents - floor(cents);
    if (fabs(frac - 0.5) < 1e-5)
        cents = pow(10.0, x) * 100.0;
    return java_round(cents);
}

/* ---- Ids (GeneratorConfig, PersonGenerator, AuctionGenerator) ---- */

static int64_t total_proportion(const struct sp_nexmark_config *c)
{
    return (int64_t)c->person_proportion + c->auction_proportion + c->bid_proportion;
}

/* timestampForEvent: base + (long)(n * interEventDelayUs) / 1000. */
static int64_t timestamp_for_event(const struct sp_nexmark_config *c, int64_t n)
{
    double delay_us = 1000000.0 / c->first_event_rate;
    return c->base_time_ms + (int64_t)((double)n * delay_us) / 1000;
}

/* An event id split by the proportions' total (computed once per event: a
 * division by a number known only at run time is costly). */
struct pos {
    int64_t event_id;
    int64_t epoch;
    int64_t offset;
};

static struct pos pos_of(const struct sp_nexmark_config *c, int64_t event_id)
{
    int64_t total = total_proportion(c);
    struct pos p = {.event_id = event_id};
    if ((uint64_t)event_id <= UINT32_MAX && total >= 2) {
        p.epoch = fastdiv_quot(fastdiv_of((uint32_t)total), (uint32_t)event_id);
    } else {
        p.epoch = event_id / total;
    }
    p.offset = event_id - p.epoch * total;
    return p;
}

/* lastBase0PersonId: the last person id (base 0) at the event. */
static int64_t last_base0_person_id(const struct sp_nexmark_config *c, const struct pos *p)
{
    int64_t epoch = p->epoch;
    int64_t offset = p->offset;
    if (offset >= c->person_proportion)
        offset = c->person_proportion - 1;
    return epoch * c->person_proportion + offset;
}

/* lastBase0AuctionId: the last auction id (base 0) at the event. */
static int64_t last_base0_auction_id(const struct sp_nexmark_config *c, const struct pos *p)
{
    int64_t epoch = p->epoch;
    int64_t offset = p->offset;
    if (offset < c->person_proportion) {
        epoch--;
        offset = c->auction_proportion - 1;
    } else if (offset >= (int64_t)c->person_proportion + c->auction_proportion) {
        offset = c->auction_proportion - 1;
    } else {
        offset -= c->person_proportion;
    }
    return epoch * c->auction_proportion + offset;
}

/* nextBase0PersonId: one of the last num_active_people, or a few ahead. */
static int64_t next_base0_person_id(const struct sp_nexmark_config *c, struct sp_jrandom *r,
                                    const struct pos *p)
{
    int64_t people = last_base0_person_id(c, p) + 1;
    int64_t active = people < c->num_active_people ? people : c->num_active_people;
    int64_t n = next_long_below(r, active + SP_NEXMARK_PERSON_ID_LEAD);
    return people - active + n;
}

/* nextBase0AuctionId: one likely still in flight, or a few ahead. */
static int64_t next_base0_auction_id(const struct sp_nexmark_config *c, struct sp_jrandom *r,
                                     const struct pos *p)
{
    int64_t max = last_base0_auction_id(c, p);
    int64_t min = max - c->num_in_flight_auctions;
    if (min < 0)
        min = 0;
    return min + next_long_below(r, max - min + 1 + SP_NEXMARK_AUCTION_ID_LEAD);
}

/* ---- People (PersonGenerator) ---- */

static const char *const us_states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const us_cities[] = {"Phoenix",  "Los Angeles", "San Francisco", "Boise",
                                        "Portland", "Bend",        "Redmond",       "Seattle",
                                        "Kent",     "Cheyenne"};
static const char *const first_names[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                          "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
static const char *const last_names[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                         "Walton", "Smith",  "Jones",   "Noris"};

#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const char *pick(struct sp_jrandom *r, const char *const *list, int32_t n)
{
    return list[jr_bound(r, n)];
}

static void next_person(const struct sp_nexmark_config *c, struct sp_jrandom *r,
                        const struct pos *p, struct sp_nexmark_event *e, struct sp_out *out)
{
    char buf[64];
    e->person_id = last_base0_person_id(c, p) + SP_NEXMARK_FIRST_PERSON_ID;
    const char *first = pick(r, first_names, COUNT(first_names));
    const char *last = pick(r, last_names, COUNT(last_names));
    int len = snprintf(buf, sizeof(buf), "%s %s", first, last);
    e->person_name = sp_out_str(out, buf, (uint32_t)len);
    uint32_t n = next_string(r, 7, ' ', buf);
    buf[n++] = '@';
    n += next_string(r, 5, ' ', buf + n);
    memcpy(buf + n, ".com", 4);
    e->person_email_address = sp_out_str(out, buf, n + 4);
    n = 0;
    for (int i = 0; i < 4; i++)
        n += (uint32_t)snprintf(buf + n, sizeof(buf) - n, i > 0 ? " %04d" : "%04d",
                                jr_bound(r, 10000));
    e->person_credit_card = sp_out_str(out, buf, n);
    const char *city = pick(r, us_cities, COUNT(us_cities));
    const char *state = pick(r, us_states, COUNT(us_states));
    e->person_city = sp_out_str(out, city, (uint32_t)strlen(city));
    e->person_state = sp_out_str(out, state, (uint32_t)strlen(state));
    int32_t size = (int32_t)(8 + e->person_name.len + e->person_email_address.len +
                             e->person_credit_card.len + e->person_city.len + e->person_state.len);
    e->extra = next_extra(r, size, (int32_t)c->avg_person_bytes, out);
}

/* ---- Auctions (AuctionGenerator) ---- */

#define HOT_SELLER_RATIO 100

/* nextAuctionLengthMs: on average until numInFlightAuctions more auctions exist. */
static int64_t next_auction_length_ms(const struct sp_nexmark_config *c, struct sp_jrandom *r,
                                      int64_t event_number, int64_t timestamp)
{
    int64_t events_for_auctions =
        (int64_t)c->num_in_flight_auctions * total_proportion(c) / c->auction_proportion;
    int64_t future = timestamp_for_event(c, event_number + events_for_auctions);
    int64_t horizon_ms = future - timestamp;
    return 1 + next_long_below(r, horizon_ms * 2 > 1 ? horizon_ms * 2 : 1);
}

static void next_auction(const struct sp_nexmark_config *c, struct sp_jrandom *r,
                         const struct pos *p, int64_t timestamp, struct sp_nexmark_event *e,
                         struct sp_out *out)
{
    char buf[128];
    e->auction_id = last_base0_auction_id(c, p) + SP_NEXMARK_FIRST_AUCTION_ID;
    int64_t seller;
    if (jr_bound(r, (int32_t)c->hot_sellers_ratio) > 0)
        seller = last_base0_person_id(c, p) / HOT_SELLER_RATIO * HOT_SELLER_RATIO;
    else
        seller = next_base0_person_id(c, r, p);
    e->auction_seller = seller + SP_NEXMARK_FIRST_PERSON_ID;
    e->auction_category = SP_NEXMARK_FIRST_CATEGORY_ID + jr_bound(r, SP_NEXMARK_NUM_CATEGORIES);
    e->auction_initial_bid = next_price(r);
    e->auction_expires = timestamp + next_auction_length_ms(c, r, p->event_id, timestamp);
    uint32_t n = next_string(r, 20, ' ', buf);
    e->auction_item_name = sp_out_str(out, buf, n);
    n = next_string(r, 100, ' ', buf);
    e->auction_description = sp_out_str(out, buf, n);
    e->auction_reserve = e->auction_initial_bid + next_price(r);
    int32_t size = (int32_t)(8 + e->auction_item_name.len + e->auction_description.len + 8 * 5);
    e->extra = next_extra(r, size, (int32_t)c->avg_auction_bytes, out);
}

/* ---- Bids (BidGenerator) ---- */

#define HOT_AUCTION_RATIO 100
#define HOT_BIDDER_RATIO 100
#define HOT_CHANNELS_RATIO 2
#define CHANNELS_NUMBER 10000
#define HOT_CHANNELS 4
#define URL_BYTES 96

struct channel {
    char name[24];
    char url[URL_BYTES];
    uint8_t name_len;
    uint8_t url_len;
};

static const char *const hot_channel_names[HOT_CHANNELS] = {"Google", "Facebook", "Baidu", "Apple"};
static struct channel hot_channels[HOT_CHANNELS];
static struct channel channels[CHANNELS_NUMBER];
static pthread_once_t channels_once = PTHREAD_ONCE_INIT;

/* getBaseUrl: three random path parts of 3 or 4 letters and '_'. */
static uint32_t base_url(struct sp_jrandom *r, char *buf)
{
    static const char prefix[] = "https://www.nexmark.com/";
    static const char suffix[] = "item.htm?query=1";
    uint32_t n = sizeof(prefix) - 1;
    memcpy(buf, prefix, n);
    for (int i = 0; i < 3; i++) {
        n += next_string(r, 5, '_', buf + n);
        buf[n++] = '/';
    }
    memcpy(buf + n, suffix, sizeof(suffix) - 1);
    return n + (uint32_t)sizeof(suffix) - 1;
}

static uint32_t reverse32(uint32_t x)
{
    uint32_t y = 0;
    for (int i = 0; i < 32; i++, x >>= 1)
        y = (y << 1) | (x & 1);
    return y;
}

/* The channel table; nexmark-flink's URLs come from an unseeded Random, these
 * from a Random seeded by the channel number. And the letter pairs. */
static void channels_build(void)
{
    triple_letters_build();
    struct sp_jrandom r;
    for (int i = 0; i < HOT_CHANNELS; i++) {
        struct channel *ch = &hot_channels[i];
        sp_jrandom_init(&r, -1 - i);
        ch->name_len = (uint8_t)snprintf(ch->name, sizeof(ch->name), "%s", hot_channel_names[i]);
        ch->url_len = (uint8_t)base_url(&r, ch->url);
    }
    for (int32_t i = 0; i < CHANNELS_NUMBER; i++) {
        struct channel *ch = &channels[i];
        sp_jrandom_init(&r, i);
        ch->name_len = (uint8_t)snprintf(ch->name, sizeof(ch->name), "channel-%d", (int)i);
        uint32_t n = base_url(&r, ch->url);
        if (jr_bound(&r, 10) > 0) {
            /* Math.abs(Integer.reverse(channelNumber)); abs(MIN_VALUE) stays negative. */
            int64_t id = (int32_t)reverse32((uint32_t)i);
            if (id < 0 && id != INT32_MIN)
                id = -id;
            n += (uint32_t)snprintf(ch->url + n, URL_BYTES - n, "&channel_id=%lld", (long long)id);
        }
        assert(n < URL_BYTES);
        ch->url_len = (uint8_t)n;
    }
}

static void next_bid(const struct sp_nexmark_config *c, struct sp_jrandom *r, const struct pos *p,
                     struct sp_nexmark_event *e, struct sp_out *out)
{
    int64_t auction;
    if (jr_bound(r, (int32_t)c->hot_auction_ratio) > 0)
        auction = last_base0_auction_id(c, p) / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO;
    else
        auction = next_base0_auction_id(c, r, p);
    e->bid_auction = auction + SP_NEXMARK_FIRST_AUCTION_ID;
    int64_t bidder;
    if (jr_bound(r, (int32_t)c->hot_bidders_ratio) > 0)
        bidder = last_base0_person_id(c, p) / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1;
    else
        bidder = next_base0_person_id(c, r, p);
    e->bid_bidder = bidder + SP_NEXMARK_FIRST_PERSON_ID;
    e->bid_price = next_price(r);
    const struct channel *ch;
    if (jr_bound(r, HOT_CHANNELS_RATIO) > 0)
        ch = &hot_channels[jr_bound(r, HOT_CHANNELS)];
    else
        ch = &channels[jr_bound(r, CHANNELS_NUMBER)];
    e->bid_channel = sp_out_str(out, ch->name, ch->name_len);
    e->bid_url = sp_out_str(out, ch->url, ch->url_len);
    e->extra = next_extra(r, 8 + 8 + 8 + 8, (int32_t)c->avg_bid_bytes, out);
}

/* ---- Events ---- */

int64_t sp_nexmark_generate(void *ctx, uint32_t partition, uint64_t index, void *row,
                            struct sp_out *out)
{
    (void)partition;
    const struct sp_nexmark_config *c = ctx;
    struct sp_nexmark_event *e = row;
    assert(c != NULL && e != NULL);
    pthread_once(&channels_once, channels_build);
    /* nextAdjustedEventNumber: a permutation within groups of g (first id 0). */
    uint64_t g = c->out_of_order_group_size;
    int64_t event_id = g == 1 ? (int64_t)index : (int64_t)(index / g * g + index * 953 % g);
    int64_t ts = timestamp_for_event(c, event_id);
    struct sp_jrandom r;
    sp_jrandom_init(&r, event_id ^ (int64_t)(c->seed * 0x9E3779B97F4A7C15ULL));
    struct pos p = pos_of(c, event_id);
    int64_t rem = p.offset;
    e->event_id = event_id;
    e->date_time = ts;
    if (rem < c->person_proportion) {
        e->kind = SP_NEXMARK_PERSON;
        next_person(c, &r, &p, e, out);
    } else if (rem < (int64_t)c->person_proportion + c->auction_proportion) {
        e->kind = SP_NEXMARK_AUCTION;
        next_auction(c, &r, &p, ts, e, out);
    } else {
        e->kind = SP_NEXMARK_BID;
        next_bid(c, &r, &p, e, out);
    }
    return ts;
}

uint32_t sp_nexmark_size(const struct sp_nexmark_event *e)
{
    switch (e->kind) {
    case SP_NEXMARK_PERSON:
        return 8 + e->person_name.len + e->person_email_address.len + e->person_credit_card.len +
               e->person_city.len + e->person_state.len + e->extra.len;
    case SP_NEXMARK_AUCTION:
        return 8 + e->auction_item_name.len + e->auction_description.len + 8 * 5 + e->extra.len;
    default:
        return 8 * 4 + e->extra.len;
    }
}

void sp_nexmark_config_default(struct sp_nexmark_config *config)
{
    *config = (struct sp_nexmark_config){
        .first_event_rate = 10000,
        .base_time_ms = 1577836800000, /* 2020-01-01T00:00:00Z */
        .person_proportion = 1,
        .auction_proportion = 3,
        .bid_proportion = 46,
        .num_active_people = 1000,
        .num_in_flight_auctions = 100,
        .hot_auction_ratio = 2,
        .hot_sellers_ratio = 4,
        .hot_bidders_ratio = 4,
        .avg_person_bytes = 200,
        .avg_auction_bytes = 500,
        .avg_bid_bytes = 100,
        .out_of_order_group_size = 1,
        .out_of_orderness_ms = 4000,
    };
}

#define F(member, type) SP_FIELD(struct sp_nexmark_event, member, type)
static const struct sp_field event_fields[] = {
    F(kind, SP_T_I64),
    F(event_id, SP_T_I64),
    F(date_time, SP_T_I64),
    F(extra, SP_T_STR),
    F(person_id, SP_T_I64),
    F(person_name, SP_T_STR),
    F(person_email_address, SP_T_STR),
    F(person_credit_card, SP_T_STR),
    F(person_city, SP_T_STR),
    F(person_state, SP_T_STR),
    F(auction_id, SP_T_I64),
    F(auction_item_name, SP_T_STR),
    F(auction_description, SP_T_STR),
    F(auction_initial_bid, SP_T_I64),
    F(auction_reserve, SP_T_I64),
    F(auction_expires, SP_T_I64),
    F(auction_seller, SP_T_I64),
    F(auction_category, SP_T_I64),
    F(bid_auction, SP_T_I64),
    F(bid_bidder, SP_T_I64),
    F(bid_price, SP_T_I64),
    F(bid_channel, SP_T_STR),
    F(bid_url, SP_T_STR),
};
#undef F
const struct sp_schema sp_nexmark_schema = SP_SCHEMA(struct sp_nexmark_event, event_fields);

/* Returns NULL when `c` is usable, else why not. */
static const char *config_check(const struct sp_nexmark_config *c)
{
    if (!(c->first_event_rate > 0))
        return "first_event_rate must be positive";
    if (c->emit_rate < 0)
        return "emit_rate cannot be negative";
    if (c->person_proportion == 0 || c->auction_proportion == 0)
        return "person and auction proportions must be positive";
    if (total_proportion(c) > INT32_MAX)
        return "proportions too large";
    if (c->num_active_people == 0 || c->num_active_people > INT32_MAX / 2 ||
        c->num_in_flight_auctions == 0 || c->num_in_flight_auctions > INT32_MAX / 2)
        return "num_active_people and num_in_flight_auctions must be in 1..2^30";
    if (c->hot_auction_ratio == 0 || c->hot_sellers_ratio == 0 || c->hot_bidders_ratio == 0 ||
        c->hot_auction_ratio > INT32_MAX || c->hot_sellers_ratio > INT32_MAX ||
        c->hot_bidders_ratio > INT32_MAX)
        return "hot ratios must be positive";
    if (c->avg_person_bytes > SP_NEXMARK_AVG_BYTES_MAX ||
        c->avg_auction_bytes > SP_NEXMARK_AVG_BYTES_MAX ||
        c->avg_bid_bytes > SP_NEXMARK_AVG_BYTES_MAX)
        return "average sizes are at most 6000 bytes";
    if (c->out_of_order_group_size == 0)
        return "out_of_order_group_size must be at least 1";
    if (c->out_of_orderness_ms < 0)
        return "out_of_orderness_ms cannot be negative";
    return NULL;
}

struct sp_stream *sp_nexmark_source(struct sp_job *job, const struct sp_nexmark_config *config)
{
    assert(job != NULL);
    const char *why = config == NULL ? "no configuration" : config_check(config);
    if (why != NULL) {
        sp_job_set_error(job, "nexmark: %s", why);
        config = NULL;
    }
    struct sp_gen_config gc = {0};
    if (config != NULL)
        gc = (struct sp_gen_config){
            .count = config->events,
            .partitions = config->partitions,
            .rate = config->emit_rate,
        };
    struct sp_watermarks wm = {
        .ts_field = "date_time",
        .out_of_orderness_ms = config != NULL ? config->out_of_orderness_ms : 0,
    };
    return sp_source_generator(job, &sp_nexmark_schema, sp_nexmark_generate, (void *)config, &gc,
                               &wm);
}
