/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: what a broker decodes. The input is a stream of request
 * frames as a client would send them (size prefix, request header, body):
 * each whole frame is decoded with the request decoder of the API and
 * version its header names; a decoded request is re-encoded, decoded again
 * and re-encoded to the very same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_frame.h"

#define ARENA_BYTES (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t arena_mem[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t arena2_mem[ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t out[1u << 20];
static uint8_t again[1u << 20];

/* Encodes a decoded request; its size, or 0 when it does not fit here. */
static size_t encode(const struct sp_kafka_request_frame *req, uint8_t *buf, size_t cap)
{
    size_t size = sp_kafka_request_frame_size(&req->header, req->body);
    if (size > cap)
        return 0;
    struct sp_kwriter w;
    sp_kwriter_init(&w, buf, size);
    /* Whatever the decoder accepted must encode (a null where the version
     * has none, say, would be the decoder's bug). */
    if (sp_kafka_request_encode(&w, &req->header, req->body) != 0)
        abort();
    if (w.p != buf + size)
        abort();
    return size;
}

/* Re-encoding is canonical: decode(encode(x)) encodes to the same bytes. */
static void reencode(const struct sp_kafka_request_frame *req)
{
    size_t size = encode(req, out, sizeof(out));
    if (size == 0)
        return;
    struct sp_karena arena;
    sp_karena_init(&arena, arena2_mem, sizeof(arena2_mem));
    struct sp_kafka_request_frame back;
    const char *field;
    if (sp_kafka_request_decode(out + 4, size - 4, &arena, &back, &field) != 0)
        abort();
    if (encode(&back, again, sizeof(again)) != size || memcmp(out, again, size) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    while (size > 0) {
        size_t frame = 0;
        if (sp_kafka_frame_check(data, size, SP_KAFKA_FRAME_BYTES_MAX_DEFAULT, &frame) != 1)
            break;
        struct sp_kafka_request_frame req;
        const char *field;
        sp_karena_reset(&arena);
        if (sp_kafka_request_decode(data + 4, frame - 4, &arena, &req, &field) == 0)
            reencode(&req);
        data += frame;
        size -= frame;
    }
    return 0;
}
