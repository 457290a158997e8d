/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Captures the requests spate's S3 client sends, for test_s3_sign.py: a
 * local HTTP server on 127.0.0.1 (a thread, one connection at a time) reads
 * each request whole and answers 200 with a body that satisfies every
 * operation (an UploadId, an ETag, an empty LIST page), while the main
 * thread runs one of each operation through sp_s3. Each request is written
 * to stdout as "--- N\n" and its N raw bytes, for botocore to sign again.
 * Not a test of S3's semantics: only of what goes on the wire.
 * The last request goes to a virtual-hosted URL (bucket.localhost).
 * Usage: s3_capture REGION ACCESS SECRET
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_s3.h"

#define CAPTURE_REQUEST_BYTES_MAX (1u << 20)

static int listen_fd;

static const char answer_body[] = "<R><UploadId>upload-1</UploadId><IsTruncated>false</IsTruncated>"
                                  "</R>";

/* Reads one request (headers, then Content-Length bytes); returns its length or -1. */
static long read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && len + 1 >= cap)
            return -1;
    }
    size_t head = (size_t)(end + 4 - buf), body = 0;
    for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
        if (strncasecmp(p, "content-length:", 15) == 0)
            body = strtoul(p + 15, NULL, 10);
    if (head + body >= cap)
        return -1;
    while (len < head + body) {
        ssize_t n = read(fd, buf + len, head + body - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    return (long)len;
}

static void *serve(void *arg)
{
    (void)arg;
    char *buf = malloc(CAPTURE_REQUEST_BYTES_MAX);
    if (buf == NULL)
        abort();
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            break;
        long len;
        while ((len = read_request(fd, buf, CAPTURE_REQUEST_BYTES_MAX)) > 0) {
            printf("--- %ld\n", len);
            fwrite(buf, 1, (size_t)len, stdout);
            fflush(stdout);
            char head[256];
            int head_len = snprintf(head, sizeof(head),
                                    "HTTP/1.1 200 OK\r\nETag: \"etag-1\"\r\nContent-Type: "
                                    "application/xml\r\nContent-Length: %zu\r\n\r\n",
                                    sizeof(answer_body) - 1);
            if (write(fd, head, (size_t)head_len) != head_len)
                break;
            if (strncmp(buf, "HEAD ", 5) != 0 &&
                write(fd, answer_body, sizeof(answer_body) - 1) != sizeof(answer_body) - 1)
                break;
        }
        close(fd);
    }
    free(buf);
    return NULL;
}

static int count_key(const char *key, uint64_t size, void *ctx)
{
    (void)key;
    (void)size;
    (*(int *)ctx)++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: s3_capture REGION ACCESS SECRET\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(listen_fd, 8) != 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("listen");
        return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, NULL) != 0)
        return 1;

    char endpoint[64];
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", ntohs(sa.sin_port));
    struct sp_s3_config config = {.endpoint = endpoint,
                                  .region = argv[1],
                                  .bucket = "spate-ckpt",
                                  .prefix = "job 1/",
                                  .access_key = argv[2],
                                  .secret_key = argv[3],
                                  .part_bytes = 64 * 1024,
                                  .attempts_max = 2};
    struct sp_s3 s3;
    if (sp_s3_init(&s3, &config) != 0) {
        fprintf(stderr, "init: %s\n", sp_s3_error(&s3));
        return 1;
    }
    static char data[150 * 1024];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + 3);
    char buf[256], token[SP_S3_TOKEN_BYTES_MAX] = "1/abc=+ x";
    size_t len;
    uint64_t size;
    int keys = 0, failed = 0;
    failed |= sp_s3_put(&s3, "dir/a b+c~(1).bin", data, 100) != 0;
    failed |= sp_s3_put(&s3, "empty", "", 0) != 0;
    failed |= sp_s3_get(&s3, "dir/a b+c~(1).bin", buf, sizeof(buf), &len) != 0;
    failed |= sp_s3_head(&s3, "dir/x", &size) != 0;
    failed |= sp_s3_delete(&s3, "dir/x") != 0;
    failed |= sp_s3_list(&s3, "dir/", token, 2, count_key, &keys) != 0;
    failed |= sp_s3_put_multipart(&s3, "big/segment-0001", data, sizeof(data)) != 0;
    if (failed) {
        fprintf(stderr, "an operation failed: %s\n", sp_s3_error(&s3));
        return 1;
    }
    sp_s3_deinit(&s3);

    /* Virtual-hosted: libcurl resolves any *.localhost to the loopback. */
    snprintf(endpoint, sizeof(endpoint), "http://localhost:%u", ntohs(sa.sin_port));
    config.addressing = SP_S3_ADDRESSING_VIRTUAL;
    if (sp_s3_init(&s3, &config) != 0 || sp_s3_put(&s3, "vhost/k", data, 10) != 0) {
        fprintf(stderr, "virtual-hosted: %s\n", sp_s3_error(&s3));
        return 1;
    }
    sp_s3_deinit(&s3);
    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    pthread_join(thread, NULL);
    return 0;
}
