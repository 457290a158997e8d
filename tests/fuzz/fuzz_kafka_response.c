/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: what a client decodes. The first 4 bytes pick the API
 * (key % number of generated APIs) and the version the request was sent at;
 * the rest is a response frame's payload (response header and body). Every
 * generated response decoder is reachable, the ApiVersions fallback too. A
 * decoded response must re-encode to a frame of its computed size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_frame.h"

#define ARENA_BYTES (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t arena_mem[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t out[1u << 20];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const struct sp_kafka_api *api = &sp_kafka_apis[sp_kload16(data) % sp_kafka_api_count];
    int range = api->version_max - api->version_min + 1;
    int16_t version = (int16_t)(api->version_min + sp_kload16(data + 2) % range);
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    int32_t correlation;
    void *body;
    int16_t decoded;
    const char *field;
    if (sp_kafka_response_decode(data + 4, size - 4, api->key, version, &arena, &correlation, &body,
                                 &decoded, &field) != 0)
        return 0;
    size_t frame = sp_kafka_response_frame_size(api->key, decoded, body);
    if (frame > sizeof(out))
        return 0;
    struct sp_kwriter w;
    sp_kwriter_init(&w, out, frame);
    if (sp_kafka_response_encode(&w, api->key, decoded, correlation, body) != 0)
        abort();
    if (w.p != out + frame)
        abort();
    return 0;
}
