/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka framing and headers: every request and response is a frame, an
 * int32 size followed by that many bytes; a request frame holds a request
 * header (v0..v2) and the body of the API and version the header names; a
 * response frame holds a response header (v0 or v1) and the body, whose API
 * and version are known only from the request with the same correlation id.
 *
 * Header versions follow from the API version: request header v2 and
 * response header v1 (both with tagged fields) for flexible versions, v1 and
 * v0 otherwise, with two exceptions Kafka keeps for compatibility:
 * ControlledShutdown v0 uses request header v0, and ApiVersions responses
 * always use header v0 so that a client of any age can read a broker's
 * answer. A broker that does not support the client's ApiVersions version
 * answers in ApiVersions v0 with error UNSUPPORTED_VERSION (35) and its
 * supported range; sp_kafka_response_decode recognises that answer.
 *
 * Decoding is zero-copy (see sp_kafka_wire.h): the frame must outlive what
 * is decoded from it.
 */
#ifndef SP_KAFKA_FRAME_H
#define SP_KAFKA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "sp_kafka_apis.h"
#include "sp_kafka_wire.h"

/* Kafka's default socket.request.max.bytes. */
#define SP_KAFKA_FRAME_BYTES_MAX_DEFAULT (100u * 1024u * 1024u)
#define SP_KAFKA_API_VERSIONS_KEY 18
#define SP_KAFKA_CONTROLLED_SHUTDOWN_KEY 7
#define SP_KAFKA_ERROR_UNSUPPORTED_VERSION 35

/*
 * Looks at `len` buffered bytes: returns 1 and sets *frame_bytes (size
 * prefix included) when a whole frame is there, 0 when more bytes are
 * needed, -EBADMSG when the size is negative or above `frame_bytes_max`.
 */
SP_MUST_CHECK int sp_kafka_frame_check(const uint8_t *buf, size_t len, size_t frame_bytes_max,
                                       size_t *frame_bytes);

/* The request header version for an API version (0, 1 or 2). */
int16_t sp_kafka_request_header_version(int16_t api_key, int16_t api_version);

/* The response header version for an API version (0 or 1). */
int16_t sp_kafka_response_header_version(int16_t api_key, int16_t api_version);

/* A decoded request: its header, its API and its body (arena memory). */
struct sp_kafka_request_frame {
    struct sp_kafka_request_header header;
    const struct sp_kafka_api *api; /* NULL when the key is not generated */
    void *body;                     /* struct sp_kafka_<api>_request */
};

/*
 * Decodes the `len` bytes of a request frame after its size prefix. Returns
 * 0; -ENOTSUP when the API key is unknown or the version out of range (the
 * header is decoded, so a broker can answer; body is NULL); -EBADMSG with
 * *error_field naming what failed; -ENOBUFS when the arena is too small.
 */
SP_MUST_CHECK int sp_kafka_request_decode(const uint8_t *payload, size_t len,
                                          struct sp_karena *arena,
                                          struct sp_kafka_request_frame *out,
                                          const char **error_field);

/* Size of the whole request frame, size prefix included. */
size_t sp_kafka_request_frame_size(const struct sp_kafka_request_header *header, const void *body);

/*
 * Encodes a whole request frame for header->request_api_key/version.
 * Returns 0, -ENOTSUP for an unknown API or version, or the body encoder's
 * error.
 */
SP_MUST_CHECK int sp_kafka_request_encode(struct sp_kwriter *w,
                                          const struct sp_kafka_request_header *header,
                                          const void *body);

/*
 * Decodes the `len` bytes of a response frame after its size prefix, for
 * the request it answers (`api_key`, `api_version`). The body (arena memory)
 * is stored in *body_out and the version it was decoded at in
 * *decoded_version: `api_version`, or 0 for the ApiVersions error-35
 * fallback. Errors as sp_kafka_request_decode.
 */
SP_MUST_CHECK int sp_kafka_response_decode(const uint8_t *payload, size_t len, int16_t api_key,
                                           int16_t api_version, struct sp_karena *arena,
                                           int32_t *correlation_id, void **body_out,
                                           int16_t *decoded_version, const char **error_field);

/* Size of the whole response frame, size prefix included. */
size_t sp_kafka_response_frame_size(int16_t api_key, int16_t api_version, const void *body);

/* Encodes a whole response frame. 0, -ENOTSUP, or the body encoder's error. */
SP_MUST_CHECK int sp_kafka_response_encode(struct sp_kwriter *w, int16_t api_key,
                                           int16_t api_version, int32_t correlation_id,
                                           const void *body);

#endif /* SP_KAFKA_FRAME_H */
