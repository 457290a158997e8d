/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal producer made only of spate's codec, for interoperability tests:
 * it builds one RecordBatch v2 with the chosen codec, sends it in a Produce
 * v7 request (acks=-1) to partition 0 of a topic over a plain blocking
 * socket, and checks the broker's answer. tests/net/test_kcat_interop.sh
 * then reads the records back with kcat.
 *
 * Records: key "key-<i>", value "value <i> from spate, codec <codec>; ..."
 * and headers trace=t-<i>, origin=spate.
 *
 * Usage: kafka_produce HOST:PORT TOPIC CODEC COUNT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_kafka_frame.h"
#include "sp_record.h"

#define RECORDS_MAX 1000
#define BATCH_BYTES (1u << 20)

static uint8_t batch_buf[BATCH_BYTES];
static uint8_t scratch[BATCH_BYTES];
static uint8_t frame[BATCH_BYTES + 4096];
static uint8_t reply[1u << 16];
static uint8_t arena_mem[1u << 16] __attribute__((aligned(16)));

static int die(const char *what, int err)
{
    fprintf(stderr, "kafka_produce: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static int codec_of(const char *name)
{
    for (int c = 0; c < SP_RECORD_CODEC_COUNT; c++)
        if (strcmp(sp_record_codec_name(c), name) == 0)
            return c;
    return -1;
}

static size_t build_batch(int codec_id, int count, const char *codec_name)
{
    struct sp_record_builder_config config = SP_RECORD_BUILDER_CONFIG_INIT;
    config.codec = (enum sp_record_codec_id)codec_id;
    config.scratch = scratch;
    config.scratch_bytes = sizeof(scratch);
    struct sp_record_builder b;
    int ret = sp_record_builder_init(&b, batch_buf, sizeof(batch_buf), &config);
    if (ret < 0)
        die("builder", ret);
    static char keys[RECORDS_MAX][32], values[RECORDS_MAX][128], traces[RECORDS_MAX][32];
    for (int i = 0; i < count; i++) {
        int key_len = snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
        int value_len = snprintf(values[i], sizeof(values[i]),
                                 "value %d from spate, codec %s; a repetitive payload payload "
                                 "payload payload",
                                 i, codec_name);
        int trace_len = snprintf(traces[i], sizeof(traces[i]), "t-%d", i);
        struct sp_record_header headers[2] = {
            {(const uint8_t *)"trace", (const uint8_t *)traces[i], 5, trace_len},
            {(const uint8_t *)"origin", (const uint8_t *)"spate", 6, 5},
        };
        struct sp_record_input in = {
            .offset_delta = i,
            .timestamp = 1764115200000 + i,
            .key = keys[i],
            .key_len = key_len,
            .value = values[i],
            .value_len = value_len,
            .headers = headers,
            .header_count = 2,
        };
        ret = sp_record_builder_append(&b, &in);
        if (ret < 0)
            die("append", ret);
    }
    struct sp_record_codec codec;
    ret = sp_record_codec_init(&codec, SP_RECORD_CODEC_COMPRESS);
    if (ret < 0)
        die("codec", ret);
    size_t batch_bytes = 0;
    ret = sp_record_builder_finish(&b, &codec, &batch_bytes);
    sp_record_codec_deinit(&codec);
    if (ret < 0)
        die("finish", ret);
    return batch_bytes;
}

static int connect_to(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        die("address", EINVAL);
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        die("address", EINVAL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        die("connect", errno);
    return fd;
}

static void read_exactly(int fd, uint8_t *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            die("read", n == 0 ? EPIPE : errno);
        got += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: kafka_produce HOST:PORT TOPIC CODEC COUNT\n");
        return 2;
    }
    int codec = codec_of(argv[3]);
    int count = atoi(argv[4]);
    if (codec < 0 || count < 1 || count > RECORDS_MAX) {
        fprintf(stderr, "kafka_produce: bad codec or count\n");
        return 2;
    }
    size_t batch_bytes = build_batch(codec, count, argv[3]);

    struct sp_kafka_produce_request_partition_produce_data partition;
    sp_kafka_produce_request_partition_produce_data_init(&partition);
    partition.index = 0;
    partition.records = (struct sp_kbytes){batch_buf, (int32_t)batch_bytes};
    struct sp_kafka_produce_request_topic_produce_data topic;
    sp_kafka_produce_request_topic_produce_data_init(&topic);
    topic.name = (struct sp_kstr){argv[2], (int32_t)strlen(argv[2])};
    topic.partition_data = &partition;
    topic.partition_data_count = 1;
    struct sp_kafka_produce_request req;
    sp_kafka_produce_request_init(&req);
    req.acks = -1;
    req.timeout_ms = 10000;
    req.topic_data = &topic;
    req.topic_data_count = 1;
    struct sp_kafka_request_header h;
    sp_kafka_request_header_init(&h);
    h.request_api_key = 0;
    h.request_api_version = 7;
    h.correlation_id = 1;
    h.client_id = SP_KSTR("spate-kafka-produce");

    size_t size = sp_kafka_request_frame_size(&h, &req);
    struct sp_kwriter w;
    sp_kwriter_init(&w, frame, sizeof(frame));
    int ret = sp_kafka_request_encode(&w, &h, &req);
    if (ret < 0)
        die("encode", ret);
    int fd = connect_to(argv[1]);
    if (write(fd, frame, size) != (ssize_t)size)
        die("write", errno);

    read_exactly(fd, reply, 4);
    size_t frame_len = 0;
    if (sp_kafka_frame_check(reply, 4, sizeof(reply), &frame_len) < 0)
        die("reply size", EBADMSG);
    uint32_t payload = sp_kload32(reply);
    read_exactly(fd, reply + 4, payload);
    close(fd);
    struct sp_karena arena;
    sp_karena_init(&arena, arena_mem, sizeof(arena_mem));
    int32_t correlation;
    void *body;
    int16_t decoded;
    const char *field;
    ret = sp_kafka_response_decode(reply + 4, payload, 0, 7, &arena, &correlation, &body, &decoded,
                                   &field);
    if (ret < 0)
        die(field ? field : "response", ret);
    struct sp_kafka_produce_response *resp = body;
    if (correlation != 1 || resp->responses_count != 1 ||
        resp->responses[0].partition_responses_count != 1) {
        fprintf(stderr, "kafka_produce: unexpected response shape\n");
        return 1;
    }
    int16_t error = resp->responses[0].partition_responses[0].error_code;
    if (error != 0) {
        fprintf(stderr, "kafka_produce: broker error %d\n", error);
        return 1;
    }
    printf("produced %d records (%zu-byte %s batch) at offset %lld\n", count, batch_bytes, argv[3],
           (long long)resp->responses[0].partition_responses[0].base_offset);
    return 0;
}
