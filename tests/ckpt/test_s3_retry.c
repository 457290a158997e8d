/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 client's failure paths against a scripted local HTTP server: what
 * a real server cannot be made to do on cue (s3rver never answers 5xx, 429
 * or a 200 that carries an error, and has no AbortMultipartUpload), so this
 * is a mock, and says so. Retries on 5xx and 429 and none on 4xx, errno and
 * message per status, the give-up after attempts_max, a request timeout, the
 * abort of a failed multipart upload, and LIST pages with escaped keys or
 * broken XML. test_s3.sh covers the same client against the real s3rver.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sp_s3.h"

#define FAKE_ANSWERS_MAX 16
#define FAKE_REQUEST_BYTES_MAX (256u * 1024u)

/* One scripted answer: status 0 means "never answer" (a hung server). */
struct fake_answer {
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
};

static struct {
    int listen_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    struct fake_answer answers[FAKE_ANSWERS_MAX];
    unsigned answer_count;
    unsigned served;
    char lines[FAKE_ANSWERS_MAX][256]; /* each request's first line */
    char endpoint[64];
} fake;

static long fake_read_request(int fd, char *buf, size_t cap)
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

static void fake_answer(int fd, const char *request)
{
    pthread_mutex_lock(&fake.lock);
    unsigned i = fake.served++;
    struct fake_answer a = {500, "", "<Error><Code>Unscripted</Code></Error>"};
    if (i < fake.answer_count)
        a = fake.answers[i];
    if (i < FAKE_ANSWERS_MAX)
        snprintf(fake.lines[i], sizeof(fake.lines[i]), "%.*s", (int)strcspn(request, "\r"),
                 request);
    pthread_mutex_unlock(&fake.lock);
    if (a.status == 0)
        return; /* hang: the client times out */
    const char *body = strncmp(request, "HEAD ", 5) == 0 || a.body == NULL ? "" : a.body;
    char head[512];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", a.status,
                     a.headers != NULL ? a.headers : "", a.body != NULL ? strlen(a.body) : 0);
    if (write(fd, head, (size_t)n) != n || write(fd, body, strlen(body)) != (ssize_t)strlen(body))
        return;
}

static void *fake_serve(void *arg)
{
    (void)arg;
    char *buf = malloc(FAKE_REQUEST_BYTES_MAX);
    if (buf == NULL)
        abort();
    for (;;) {
        int fd = accept(fake.listen_fd, NULL, NULL);
        if (fd < 0)
            break;
        while (fake_read_request(fd, buf, FAKE_REQUEST_BYTES_MAX) > 0)
            fake_answer(fd, buf);
        close(fd);
    }
    free(buf);
    return NULL;
}

static int fake_start(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    fake.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fake.listen_fd < 0 || bind(fake.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fake.listen_fd, 8) != 0 ||
        getsockname(fake.listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    snprintf(fake.endpoint, sizeof(fake.endpoint), "http://127.0.0.1:%u", ntohs(sa.sin_port));
    pthread_mutex_init(&fake.lock, NULL);
    return pthread_create(&fake.thread, NULL, fake_serve, NULL) == 0 ? 0 : -1;
}

static int fake_stop(void **state)
{
    (void)state;
    shutdown(fake.listen_fd, SHUT_RDWR);
    close(fake.listen_fd);
    pthread_join(fake.thread, NULL);
    return 0;
}

/* Scripts the next answers (and forgets what was served). */
static void fake_script(const struct fake_answer *answers, unsigned count)
{
    assert_true(count <= FAKE_ANSWERS_MAX);
    pthread_mutex_lock(&fake.lock);
    memcpy(fake.answers, answers, count * sizeof(*answers));
    fake.answer_count = count;
    fake.served = 0;
    memset(fake.lines, 0, sizeof(fake.lines));
    pthread_mutex_unlock(&fake.lock);
}

/* Requests time out after `timeout_ms`: short only where a test waits for
 * it (a late answer under load would otherwise be retried, shifting the
 * script). */
static void client_init_timeout(struct sp_s3 *s3, uint32_t attempts_max, uint32_t timeout_ms)
{
    struct sp_s3_config c = {.endpoint = fake.endpoint,
                             .region = "us-east-1",
                             .bucket = "b",
                             .access_key = "k",
                             .secret_key = "s",
                             .attempts_max = attempts_max,
                             .backoff_ms_base = 5,
                             .backoff_ms_max = 20,
                             .request_timeout_ms = timeout_ms,
                             .part_bytes = 64 * 1024};
    assert_int_equal(sp_s3_init(s3, &c), 0);
}

static void client_init(struct sp_s3 *s3, uint32_t attempts_max)
{
    client_init_timeout(s3, attempts_max, 10000);
}

#define ERR_XML(code)                                                                              \
    "<?xml version=\"1.0\"?><Error><Code>" code "</Code><Message>m</Message></Error>"

/* ---- Retries ---- */

static void test_retry_then_ok(void **state)
{
    (void)state;
    struct fake_answer a[] = {{503, "", ERR_XML("SlowDown")}, {429, "", ""}, {200, "", ""}};
    fake_script(a, 3);
    struct sp_s3 s3;
    client_init(&s3, 4);
    assert_int_equal(sp_s3_put(&s3, "k", "data", 4), 0);
    assert_int_equal(s3.request_count, 3);
    assert_int_equal(s3.retry_count, 2);
    assert_string_equal(sp_s3_error(&s3), "");
    sp_s3_deinit(&s3);
}

static void test_retry_gives_up(void **state)
{
    (void)state;
    struct fake_answer a[] = {{500, "", ERR_XML("InternalError")},
                              {502, "", "<html>bad gateway</html>"},
                              {500, "", ERR_XML("InternalError")}};
    fake_script(a, 3);
    struct sp_s3 s3;
    client_init(&s3, 3);
    char buf[8];
    size_t len;
    assert_int_equal(sp_s3_get(&s3, "k", buf, sizeof(buf), &len), -EIO);
    assert_int_equal(s3.request_count, 3);
    assert_string_equal(sp_s3_error(&s3), "S3 GET k: HTTP 500 InternalError: m (3 attempts)");
    sp_s3_deinit(&s3);
}

static void test_4xx_final(void **state)
{
    (void)state;
    static const struct {
        int status;
        int rc;
    } cases[] = {{400, -EINVAL}, {403, -EACCES}, {404, -ENOENT}, {409, -EPROTO}, {412, -EPROTO}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake_answer a[] = {{cases[i].status, "", ERR_XML("Some4xx")}, {200, "", ""}};
        fake_script(a, 2);
        struct sp_s3 s3;
        client_init(&s3, 4);
        assert_int_equal(sp_s3_delete(&s3, "k"), cases[i].rc);
        assert_int_equal(s3.request_count, 1);
        assert_non_null(strstr(sp_s3_error(&s3), "Some4xx"));
        sp_s3_deinit(&s3);
    }
}

static void test_timeout(void **state)
{
    (void)state;
    struct fake_answer a[] = {{0, NULL, NULL}, {0, NULL, NULL}};
    fake_script(a, 2);
    struct sp_s3 s3;
    client_init_timeout(&s3, 2, 300);
    uint64_t size;
    assert_int_equal(sp_s3_head(&s3, "k", &size), -ETIMEDOUT);
    assert_int_equal(s3.request_count, 2);
    assert_non_null(strstr(sp_s3_error(&s3), "2 attempts"));
    sp_s3_deinit(&s3);
}

/* ---- Multipart failures ---- */

static char big[100 * 1024];

static void test_multipart_abort(void **state)
{
    (void)state;
    struct fake_answer a[] = {
        {200, "",
         "<InitiateMultipartUploadResult><UploadId>u+1/x</UploadId>"
         "</InitiateMultipartUploadResult>"},
        {200, "ETag: \"e1\"\r\n", ""},
        {403, "", ERR_XML("AccessDenied")},
        {204, "", ""},
    };
    fake_script(a, 4);
    struct sp_s3 s3;
    client_init(&s3, 1);
    assert_int_equal(sp_s3_put_multipart(&s3, "seg", big, sizeof(big)), -EACCES);
    assert_string_equal(sp_s3_error(&s3), "S3 PUT part seg: HTTP 403 AccessDenied: m (1 attempt)");
    assert_string_equal(fake.lines[0], "POST /b/seg?uploads= HTTP/1.1");
    assert_string_equal(fake.lines[1], "PUT /b/seg?partNumber=1&uploadId=u%2B1%2Fx HTTP/1.1");
    assert_string_equal(fake.lines[2], "PUT /b/seg?partNumber=2&uploadId=u%2B1%2Fx HTTP/1.1");
    assert_string_equal(fake.lines[3], "DELETE /b/seg?uploadId=u%2B1%2Fx HTTP/1.1");
    sp_s3_deinit(&s3);
}

/* S3 may answer CompleteMultipartUpload with 200 and an error inside. */
static void test_multipart_complete_error(void **state)
{
    (void)state;
    struct fake_answer a[] = {
        {200, "", "<R><UploadId>u1</UploadId></R>"},
        {200, "ETag: \"e1\"\r\n", ""},
        {200, "ETag: \"e2\"\r\n", ""},
        {200, "", ERR_XML("InternalError")},
        {501, "", ERR_XML("NotImplemented")}, /* the abort, as s3rver answers it */
    };
    fake_script(a, 5);
    struct sp_s3 s3;
    client_init(&s3, 1);
    assert_int_equal(sp_s3_put_multipart(&s3, "seg", big, sizeof(big)), -EIO);
    assert_non_null(strstr(sp_s3_error(&s3), "HTTP 200 with error InternalError"));
    assert_string_equal(fake.lines[4], "DELETE /b/seg?uploadId=u1 HTTP/1.1");
    sp_s3_deinit(&s3);
}

/* ---- LIST parsing ---- */

struct listed {
    char keys[4][64];
    int count;
};

static int collect(const char *key, uint64_t size, void *ctx)
{
    struct listed *l = ctx;
    (void)size;
    if (l->count >= 4)
        return -ENOSPC;
    snprintf(l->keys[l->count++], sizeof(l->keys[0]), "%s", key);
    return 0;
}

static void test_list_parse(void **state)
{
    (void)state;
    struct fake_answer a[] = {
        {200, "",
         "<ListBucketResult><IsTruncated>true</IsTruncated>"
         "<Contents><Key>a&amp;b&lt;c&#13;</Key><Size>5</Size></Contents>"
         "<Contents><Key>d</Key><Size>1</Size></Contents>"
         "<NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>"},
        {200, "", "<ListBucketResult><Contents><Key>broken</Contents>"},
        {200, "", "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"},
    };
    fake_script(a, 3);
    struct sp_s3 s3;
    client_init(&s3, 1);
    struct listed l = {.count = 0};
    char token[SP_S3_TOKEN_BYTES_MAX] = "";
    assert_int_equal(sp_s3_list(&s3, "", token, 0, collect, &l), 2);
    assert_string_equal(l.keys[0], "a&b<c\r");
    assert_string_equal(l.keys[1], "d");
    assert_string_equal(token, "t&1");
    assert_int_equal(sp_s3_list(&s3, "", token, 0, collect, &l), -EBADMSG);
    assert_non_null(strstr(sp_s3_error(&s3), "does not parse"));
    assert_string_equal(fake.lines[1],
                        "GET /b/?continuation-token=t%261&list-type=2&max-keys=1000&prefix= "
                        "HTTP/1.1");
    token[0] = '\0';
    assert_int_equal(sp_s3_list(&s3, "", token, 0, collect, &l), -EBADMSG); /* no token */
    sp_s3_deinit(&s3);
}

static void test_config(void **state)
{
    (void)state;
    struct sp_s3 s3;
    struct sp_s3_config c = {
        .endpoint = "ftp://x", .region = "r", .bucket = "b", .access_key = "k", .secret_key = "s"};
    assert_int_equal(sp_s3_init(&s3, &c), -EINVAL);
    assert_non_null(strstr(sp_s3_error(&s3), "ftp://x"));
    c.endpoint = "http://x";
    c.bucket = NULL;
    assert_int_equal(sp_s3_init(&s3, &c), -EINVAL);
    assert_non_null(strstr(sp_s3_error(&s3), "bucket"));
    c.bucket = "b";
    c.part_bytes = 1000;
    assert_int_equal(sp_s3_init(&s3, &c), -EINVAL);
    c.part_bytes = 0;
    assert_int_equal(sp_s3_init(&s3, &c), 0);
    assert_int_equal(s3.config.part_bytes, 8u << 20);
    assert_int_equal(s3.config.addressing, SP_S3_ADDRESSING_PATH);
    sp_s3_deinit(&s3);
    c.endpoint = "https://s3.eu-west-3.amazonaws.com/";
    assert_int_equal(sp_s3_init(&s3, &c), 0);
    assert_int_equal(s3.config.addressing, SP_S3_ADDRESSING_VIRTUAL);
    sp_s3_deinit(&s3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_then_ok),   cmocka_unit_test(test_retry_gives_up),
        cmocka_unit_test(test_4xx_final),       cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_multipart_abort), cmocka_unit_test(test_multipart_complete_error),
        cmocka_unit_test(test_list_parse),      cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
