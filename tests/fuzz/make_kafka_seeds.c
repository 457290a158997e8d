/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpora of the Kafka fuzz targets: for every generated
 * API and version, one random request frame (tests/fuzz/corpus/kafka_request)
 * and one response (tests/fuzz/corpus/kafka_response, in that target's
 * input format: API index and version, then the frame payload). Run once by
 * hand when the codec changes; the output is committed.
 *
 *   build/tests/fuzz/make_kafka_seeds tests/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kafka_fill.h"
#include "sp_kafka_frame.h"

static uint8_t arena_mem[4u << 20] __attribute__((aligned(16)));
static uint8_t frame[1u << 20];

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "make_kafka_seeds: %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_kafka_seeds CORPUS_DIR\n");
        return 2;
    }
    char req_dir[256], resp_dir[256];
    snprintf(req_dir, sizeof(req_dir), "%s/kafka_request", argv[1]);
    snprintf(resp_dir, sizeof(resp_dir), "%s/kafka_response", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(req_dir, 0755);
    mkdir(resp_dir, 0755);
    struct sp_rand rng;
    sp_rand_seed(&rng, 20261126);
    for (unsigned i = 0; i < sp_kafka_api_count; i++) {
        const struct sp_kafka_api *api = &sp_kafka_apis[i];
        for (int16_t v = api->version_min; v <= api->version_max; v++) {
            struct sp_karena arena;
            sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
            char name[96];

            void *req = sp_karena_alloc(&arena, api->request.struct_size);
            sp_kafka_fill(&api->request, req, v, &rng, &arena);
            struct sp_kafka_request_header h;
            sp_kafka_request_header_init(&h);
            h.request_api_key = api->key;
            h.request_api_version = v;
            h.correlation_id = (int32_t)(i * 100 + (unsigned)v);
            h.client_id = SP_KSTR("seed");
            size_t size = sp_kafka_request_frame_size(&h, req);
            struct sp_kwriter w;
            sp_kwriter_init(&w, frame, size);
            if (size > sizeof(frame) || sp_kafka_request_encode(&w, &h, req) != 0)
                return 1;
            snprintf(name, sizeof(name), "%s-v%d", api->name, v);
            write_file(req_dir, name, frame, size);

            void *resp = sp_karena_alloc(&arena, api->response.struct_size);
            sp_kafka_fill(&api->response, resp, v, &rng, &arena);
            size = sp_kafka_response_frame_size(api->key, v, resp);
            if (size + 4 > sizeof(frame))
                return 1;
            /* The target's input: API index, version index, then the payload. */
            sp_kstore16(frame, (uint16_t)i);
            sp_kstore16(frame + 2, (uint16_t)(v - api->version_min));
            sp_kwriter_init(&w, frame + 4, size);
            if (sp_kafka_response_encode(&w, api->key, v, 1, resp) != 0)
                return 1;
            /* Drop the response's own size prefix: the target takes the payload. */
            memmove(frame + 4, frame + 8, size - 4);
            write_file(resp_dir, name, frame, size);
        }
    }
    return 0;
}
