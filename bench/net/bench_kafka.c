/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka codec benchmarks:
 *  - produce_encode/1000: a whole Produce v9 request frame (header, body and
 *    one RecordBatch v2 of 1,000 records with 16-byte keys and 100-byte
 *    values, uncompressed, CRC included) built from scratch; items/s counts
 *    records.
 *  - produce_decode/1000: the same frame decoded (header and body, records
 *    as a zero-copy span) and its batch parsed with the CRC checked.
 */
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_kafka_frame.h"
#include "sp_record.h"

#define RECORDS 1000
#define FRAME_BYTES (256u * 1024u)

struct produce_bench {
    uint8_t keys[RECORDS][16];
    uint8_t value[100];
    uint8_t batch[FRAME_BYTES];
    uint8_t frame[FRAME_BYTES];
    size_t frame_bytes;
    uint8_t arena_mem[64 * 1024] __attribute__((aligned(16)));
    uint64_t sink;
};

/* Builds the batch and the request frame; returns the frame's size. */
static size_t produce_build(struct produce_bench *b)
{
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.producer_id = 4000;
    config.producer_epoch = 0;
    config.base_sequence = 0;
    struct sp_record_builder builder;
    if (sp_record_builder_init(&builder, b->batch, sizeof(b->batch), &config) != 0)
        abort();
    for (int i = 0; i < RECORDS; i++) {
        struct sp_record_input in = {.offset_delta = i,
                                     .timestamp = 1764115200000 + i,
                                     .key = b->keys[i],
                                     .key_len = 16,
                                     .value = b->value,
                                     .value_len = 100};
        if (sp_record_builder_append(&builder, &in) != 0)
            abort();
    }
    size_t batch_bytes = 0;
    if (sp_record_builder_finish(&builder, NULL, &batch_bytes) != 0)
        abort();

    struct sp_kafka_produce_request_partition_produce_data partition;
    sp_kafka_produce_request_partition_produce_data_init(&partition);
    partition.index = 3;
    partition.records = (struct sp_kbytes){b->batch, (int32_t)batch_bytes};
    struct sp_kafka_produce_request_topic_produce_data topic;
    sp_kafka_produce_request_topic_produce_data_init(&topic);
    topic.name = SP_KSTR("events");
    topic.partition_data = &partition;
    topic.partition_data_count = 1;
    struct sp_kafka_produce_request req;
    sp_kafka_produce_request_init(&req);
    req.acks = -1;
    req.timeout_ms = 30000;
    req.topic_data = &topic;
    req.topic_data_count = 1;
    struct sp_kafka_request_header h;
    sp_kafka_request_header_init(&h);
    h.request_api_key = 0;
    h.request_api_version = 9;
    h.correlation_id = 7;
    h.client_id = SP_KSTR("spate-bench");
    size_t size = sp_kafka_request_frame_size(&h, &req);
    struct sp_kwriter w;
    sp_kwriter_init(&w, b->frame, sizeof(b->frame));
    if (size > sizeof(b->frame) || sp_kafka_request_encode(&w, &h, &req) != 0)
        abort();
    return size;
}

static void *produce_setup(int64_t arg)
{
    (void)arg;
    struct produce_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    for (int i = 0; i < RECORDS; i++)
        for (int j = 0; j < 16; j++)
            b->keys[i][j] = (uint8_t)('a' + (i * 7 + j) % 26);
    memset(b->value, 'v', sizeof(b->value));
    b->frame_bytes = produce_build(b);
    return b;
}

static double produce_encode_run(void *state, uint64_t iterations)
{
    struct produce_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++)
        b->sink += produce_build(b);
    return 0;
}

static double produce_decode_run(void *state, uint64_t iterations)
{
    struct produce_bench *b = state;
    for (uint64_t i = 0; i < iterations; i++) {
        struct sp_karena arena;
        sp_karena_init(&arena, b->arena_mem, sizeof(b->arena_mem));
        struct sp_kafka_request_frame req;
        const char *field;
        if (sp_kafka_request_decode(b->frame + 4, b->frame_bytes - 4, &arena, &req, &field) != 0)
            abort();
        const struct sp_kafka_produce_request *p = req.body;
        struct sp_kbytes records = p->topic_data[0].partition_data[0].records;
        struct sp_record_batch batch;
        if (sp_record_batch_parse(records.ptr, (size_t)records.len, &batch) != 0)
            abort();
        b->sink += (uint64_t)batch.record_count;
    }
    return 0;
}

static void produce_teardown(void *state)
{
    free(state);
}

const struct sp_bench_case sp_bench_kafka_cases[] = {
    {.name = "produce_encode",
     .args = {RECORDS},
     .items_per_iteration = RECORDS,
     .run_batch = 16,
     .setup = produce_setup,
     .run = produce_encode_run,
     .teardown = produce_teardown},
    {.name = "produce_decode",
     .args = {RECORDS},
     .items_per_iteration = RECORDS,
     .run_batch = 64,
     .setup = produce_setup,
     .run = produce_decode_run,
     .teardown = produce_teardown},
    {.name = NULL},
};
