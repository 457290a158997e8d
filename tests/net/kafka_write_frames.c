/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes frames that spate encodes, in the layout of tests/fixtures/kafka
 * (NNNN-req|resp-<API>-v<N>.bin plus manifest.txt), so that
 * scripts/kafka_capture.py can turn them into a pcap for Wireshark's Kafka
 * dissector (tests/net/test_tshark.sh). For every generated API and version:
 * a request with random content and its response, on one connection, with
 * correlation ids in order.
 *
 * Usage: kafka_write_frames DIR [SEED]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kafka_fill.h"
#include "sp_kafka_frame.h"
#include "sp_record.h"

static uint8_t arena_mem[4u << 20] __attribute__((aligned(16)));
static uint8_t frame[1u << 20];

/* Real record batches, one per codec, for the records fields. */
static uint8_t batches[SP_RECORD_CODEC_COUNT][4096];
static size_t batch_bytes[SP_RECORD_CODEC_COUNT];
static unsigned next_batch;

static void build_batches(void)
{
    static uint8_t scratch[4096];
    struct sp_record_codec codec;
    if (sp_record_codec_init(&codec, SP_RECORD_CODEC_COMPRESS) != 0)
        exit(1);
    for (int c = 0; c < SP_RECORD_CODEC_COUNT; c++) {
        struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
        config.codec = (enum sp_record_codec_id)c;
        config.scratch = scratch;
        config.scratch_bytes = sizeof(scratch);
        struct sp_record_builder b;
        if (sp_record_builder_init(&b, batches[c], sizeof(batches[c]), &config) != 0)
            exit(1);
        for (int i = 0; i < 3; i++) {
            struct sp_record_header h = {(const uint8_t *)"trace", (const uint8_t *)"t-1", 5, 3};
            struct sp_record_input in = {.offset_delta = i,
                                         .timestamp = 1764115200000 + i,
                                         .key = "key",
                                         .key_len = 3,
                                         .value = "value",
                                         .value_len = 5,
                                         .headers = &h,
                                         .header_count = 1};
            if (sp_record_builder_append(&b, &in) != 0)
                exit(1);
        }
        if (sp_record_builder_finish(&b, &codec, &batch_bytes[c]) != 0)
            exit(1);
    }
    sp_record_codec_deinit(&codec);
}

static struct sp_kbytes some_batch(void)
{
    unsigned c = next_batch++ % SP_RECORD_CODEC_COUNT;
    return (struct sp_kbytes){batches[c], (int32_t)batch_bytes[c]};
}

/* Records fields hold record batches, not random bytes: fix them up. */
static void real_records(int16_t key, bool request, void *msg)
{
    if (key == 0 && request) {
        struct sp_kafka_produce_request *p = msg;
        for (int32_t t = 0; t < p->topic_data_count; t++)
            for (int32_t q = 0; q < p->topic_data[t].partition_data_count; q++)
                p->topic_data[t].partition_data[q].records = some_batch();
    } else if (key == 1 && !request) {
        struct sp_kafka_fetch_response *f = msg;
        for (int32_t t = 0; t < f->responses_count; t++)
            for (int32_t q = 0; q < f->responses[t].partitions_count; q++)
                f->responses[t].partitions[q].records = some_batch();
    }
}

static void write_frame(const char *dir, FILE *manifest, unsigned *seq, const char *direction,
                        const struct sp_kafka_api *api, int16_t version, int32_t correlation,
                        size_t len)
{
    char name[128], path[512];
    snprintf(name, sizeof(name), "%04u-%s-%s-v%d.bin", ++*seq, direction, api->name, version);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(frame, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "kafka_write_frames: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(manifest, "%s\t%s\t%d\t%d\t%d\tspate\t1\tspate\t-\tspate-encoded %s v%d\n", name,
            direction, api->key, version, correlation, api->name, version);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kafka_write_frames DIR [SEED]\n");
        return 2;
    }
    const char *dir = argv[1];
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof(path), "%s/manifest.txt", dir);
    FILE *manifest = fopen(path, "w");
    if (manifest == NULL) {
        fprintf(stderr, "kafka_write_frames: %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(manifest, "#file\tdir\tapi_key\tapi_version\tcorrelation_id\tclient\tconn\tclient_id\t"
                      "note\tdoing\n");
    build_batches();
    struct sp_rand rng;
    sp_rand_seed(&rng, argc > 2 ? strtoull(argv[2], NULL, 10) : 1);
    unsigned seq = 0;
    int32_t correlation = 0;
    for (unsigned i = 0; i < sp_kafka_api_count; i++) {
        const struct sp_kafka_api *api = &sp_kafka_apis[i];
        for (int16_t v = api->version_min; v <= api->version_max; v++) {
            struct sp_karena arena;
            sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
            correlation++;
            void *req = sp_karena_alloc(&arena, api->request.struct_size);
            sp_kafka_fill(&api->request, req, v, &rng, &arena);
            real_records(api->key, true, req);
            struct sp_kafka_request_header h;
            sp_kafka_request_header_init(&h);
            h.request_api_key = api->key;
            h.request_api_version = v;
            h.correlation_id = correlation;
            h.client_id = SP_KSTR("spate");
            size_t size = sp_kafka_request_frame_size(&h, req);
            struct sp_kwriter w;
            sp_kwriter_init(&w, frame, size);
            if (size > sizeof(frame) || sp_kafka_request_encode(&w, &h, req) != 0)
                return 1;
            write_frame(dir, manifest, &seq, "req", api, v, correlation, size);

            void *resp = sp_karena_alloc(&arena, api->response.struct_size);
            sp_kafka_fill(&api->response, resp, v, &rng, &arena);
            real_records(api->key, false, resp);
            size = sp_kafka_response_frame_size(api->key, v, resp);
            sp_kwriter_init(&w, frame, size);
            if (size > sizeof(frame) ||
                sp_kafka_response_encode(&w, api->key, v, correlation, resp) != 0)
                return 1;
            write_frame(dir, manifest, &seq, "resp", api, v, correlation, size);
        }
    }
    return fclose(manifest) == 0 ? 0 : 1;
}
