/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kafka frames and headers (see sp_kafka_frame.h).
 */
#include <errno.h>

#include "sp_kafka_frame.h"

int sp_kafka_frame_check(const uint8_t *buf, size_t len, size_t frame_bytes_max,
                         size_t *frame_bytes)
{
    SP_ASSERT(frame_bytes != NULL);
    if (len < 4)
        return 0;
    int32_t size = (int32_t)sp_kload32(buf);
    if (size < 0 || (size_t)size > frame_bytes_max - 4 || frame_bytes_max < 4)
        return -EBADMSG;
    if (len - 4 < (size_t)size)
        return 0;
    *frame_bytes = 4 + (size_t)size;
    return 1;
}

static bool flexible(const struct sp_kafka_msg_ops *ops, int16_t version)
{
    return ops->flexible_min >= 0 && version >= ops->flexible_min;
}

int16_t sp_kafka_request_header_version(int16_t api_key, int16_t api_version)
{
    if (api_key == SP_KAFKA_CONTROLLED_SHUTDOWN_KEY && api_version == 0)
        return 0;
    const struct sp_kafka_api *api = sp_kafka_api_find(api_key);
    if (api == NULL)
        return 1;
    /* A version newer than ours: ApiVersions is flexible from v3 on, for good. */
    if (api_version > api->version_max)
        return api->request.flexible_min >= 0 ? 2 : 1;
    return flexible(&api->request, api_version) ? 2 : 1;
}

int16_t sp_kafka_response_header_version(int16_t api_key, int16_t api_version)
{
    if (api_key == SP_KAFKA_API_VERSIONS_KEY)
        return 0;
    const struct sp_kafka_api *api = sp_kafka_api_find(api_key);
    if (api == NULL)
        return 0;
    return flexible(&api->response, api_version) ? 1 : 0;
}

/* ---- Requests ---- */

int sp_kafka_request_decode(const uint8_t *payload, size_t len, struct sp_karena *arena,
                            struct sp_kafka_request_frame *out, const char **error_field)
{
    SP_ASSERT(out != NULL);
    SP_ASSERT(error_field != NULL);
    struct sp_kreader r;
    sp_kreader_init(&r, payload, len, arena);
    *error_field = NULL;
    out->api = NULL;
    out->body = NULL;
    if (len < 4) {
        *error_field = "RequestHeader.RequestApiKey";
        return -EBADMSG;
    }
    int16_t key = (int16_t)sp_kload16(payload);
    int16_t version = (int16_t)sp_kload16(payload + 2);
    int ret = sp_kafka_request_header_decode(&r, sp_kafka_request_header_version(key, version),
                                             &out->header);
    if (ret < 0) {
        *error_field = r.error_field;
        return ret;
    }
    const struct sp_kafka_api *api = sp_kafka_api_find(key);
    if (api == NULL || version < api->version_min || version > api->version_max)
        return -ENOTSUP;
    out->api = api;
    void *body = sp_karena_alloc(arena, api->request.struct_size);
    if (body == NULL) {
        *error_field = api->request.name;
        return -ENOBUFS;
    }
    ret = api->request.decode(&r, version, body);
    if (ret == 0 && r.p != r.end)
        ret = sp_kr_fail(&r, -EBADMSG, api->request.name); /* trailing bytes */
    if (ret < 0) {
        *error_field = r.error_field;
        return ret;
    }
    out->body = body;
    return 0;
}

size_t sp_kafka_request_frame_size(const struct sp_kafka_request_header *header, const void *body)
{
    const struct sp_kafka_api *api = sp_kafka_api_find(header->request_api_key);
    SP_ASSERT(api != NULL);
    int16_t version = header->request_api_version;
    int16_t header_version = sp_kafka_request_header_version(api->key, version);
    return 4 + sp_kafka_request_header_size(header, header_version) +
           api->request.size(body, version);
}

int sp_kafka_request_encode(struct sp_kwriter *w, const struct sp_kafka_request_header *header,
                            const void *body)
{
    const struct sp_kafka_api *api = sp_kafka_api_find(header->request_api_key);
    int16_t version = header->request_api_version;
    if (api == NULL || version < api->version_min || version > api->version_max)
        return sp_kw_fail(w, -ENOTSUP, "RequestHeader.RequestApiVersion");
    size_t frame = sp_kafka_request_frame_size(header, body);
    if (frame - 4 > INT32_MAX)
        return sp_kw_fail(w, -EMSGSIZE, api->request.name);
    SP_KTRY(sp_kw_int32(w, (int32_t)(frame - 4), "RequestHeader.size"));
    uint8_t *start = w->p;
    SP_KTRY(sp_kafka_request_header_encode(w, sp_kafka_request_header_version(api->key, version),
                                           header));
    SP_KTRY(api->request.encode(w, version, body));
    SP_ASSERT((size_t)(w->p - start) == frame - 4);
    return 0;
}

/* ---- Responses ---- */

int sp_kafka_response_decode(const uint8_t *payload, size_t len, int16_t api_key,
                             int16_t api_version, struct sp_karena *arena, int32_t *correlation_id,
                             void **body_out, int16_t *decoded_version, const char **error_field)
{
    SP_ASSERT(body_out != NULL);
    SP_ASSERT(error_field != NULL);
    *body_out = NULL;
    *error_field = NULL;
    const struct sp_kafka_api *api = sp_kafka_api_find(api_key);
    if (api == NULL || api_version < api->version_min || api_version > api->version_max)
        return -ENOTSUP;
    struct sp_kreader r;
    sp_kreader_init(&r, payload, len, arena);
    struct sp_kafka_response_header header;
    int ret = sp_kafka_response_header_decode(
        &r, sp_kafka_response_header_version(api_key, api_version), &header);
    if (ret < 0) {
        *error_field = r.error_field;
        return ret;
    }
    *correlation_id = header.correlation_id;
    /* The ApiVersions fallback: v0 body, error 35, the broker's own range. */
    int16_t version = api_version;
    if (api_key == SP_KAFKA_API_VERSIONS_KEY && sp_kreader_left(&r) >= 2 &&
        (int16_t)sp_kload16(r.p) == SP_KAFKA_ERROR_UNSUPPORTED_VERSION)
        version = 0;
    void *body = sp_karena_alloc(arena, api->response.struct_size);
    if (body == NULL) {
        *error_field = api->response.name;
        return -ENOBUFS;
    }
    const uint8_t *body_start = r.p;
    ret = api->response.decode(&r, version, body);
    if (ret == 0 && r.p != r.end)
        ret = sp_kr_fail(&r, -EBADMSG, api->response.name);
    if (ret == -EBADMSG && version != api_version) {
        /*
         * Some brokers (librdkafka's mock cluster among them) write the
         * error-35 answer in neither the v0 layout Kafka specifies nor the
         * requested one. The error code alone is what a client needs: it
         * retries with a lower version, as librdkafka does.
         */
        api->response.init(body);
        ((struct sp_kafka_api_versions_response *)body)->error_code =
            (int16_t)sp_kload16(body_start);
        ret = 0;
    }
    if (ret < 0) {
        *error_field = r.error_field;
        return ret;
    }
    *body_out = body;
    *decoded_version = version;
    return 0;
}

size_t sp_kafka_response_frame_size(int16_t api_key, int16_t api_version, const void *body)
{
    const struct sp_kafka_api *api = sp_kafka_api_find(api_key);
    SP_ASSERT(api != NULL);
    struct sp_kafka_response_header header;
    sp_kafka_response_header_init(&header);
    return 4 +
           sp_kafka_response_header_size(&header,
                                         sp_kafka_response_header_version(api_key, api_version)) +
           api->response.size(body, api_version);
}

int sp_kafka_response_encode(struct sp_kwriter *w, int16_t api_key, int16_t api_version,
                             int32_t correlation_id, const void *body)
{
    const struct sp_kafka_api *api = sp_kafka_api_find(api_key);
    if (api == NULL || api_version < api->version_min || api_version > api->version_max)
        return sp_kw_fail(w, -ENOTSUP, "ResponseHeader");
    size_t frame = sp_kafka_response_frame_size(api_key, api_version, body);
    if (frame - 4 > INT32_MAX)
        return sp_kw_fail(w, -EMSGSIZE, api->response.name);
    struct sp_kafka_response_header header;
    sp_kafka_response_header_init(&header);
    header.correlation_id = correlation_id;
    SP_KTRY(sp_kw_int32(w, (int32_t)(frame - 4), "ResponseHeader.size"));
    SP_KTRY(sp_kafka_response_header_encode(
        w, sp_kafka_response_header_version(api_key, api_version), &header));
    return api->response.encode(w, api_version, body);
}
