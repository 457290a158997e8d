/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate's S3 client against a real S3-compatible server, s3rver, which
 * test_s3.sh installs and starts (key and secret S3RVER, the bucket made).
 * Round trips of PUT, GET, HEAD, LIST over several pages, DELETE; a
 * multipart upload of a few MiB in small parts read back byte for byte;
 * missing keys and buckets; a wrong secret; and s3rver stopped (by the
 * STOP command) under a client that then fails cleanly after its retries,
 * and started again (START) under the same client, which works again.
 * Usage: test_s3 ENDPOINT BUCKET STOP_COMMAND START_COMMAND
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sp_rand.h"
#include "sp_s3.h"

static const char *endpoint, *bucket, *stop_command, *start_command;

static struct sp_s3_config config_base(void)
{
    struct sp_s3_config c = {.endpoint = endpoint,
                             .region = "us-east-1",
                             .bucket = bucket,
                             .prefix = "test-s3/",
                             .access_key = "S3RVER",
                             .secret_key = "S3RVER",
                             .connect_timeout_ms = 2000,
                             .request_timeout_ms = 30000,
                             .attempts_max = 3,
                             .backoff_ms_base = 20,
                             .backoff_ms_max = 100};
    return c;
}

static void client_init(struct sp_s3 *s3, const struct sp_s3_config *c)
{
    int rc = sp_s3_init(s3, c);
    if (rc != 0)
        fail_msg("sp_s3_init: %d %s", rc, sp_s3_error(s3));
}

#define assert_ok(s3, call)                                                                        \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0)                                                                              \
            fail_msg("%s: %d %s", #call, rc_, sp_s3_error(s3));                                    \
    } while (0)

static void fill(char *buf, size_t len, uint64_t seed)
{
    struct sp_rand r;
    sp_rand_seed(&r, seed);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)sp_rand_next(&r);
}

/* ---- Round trips ---- */

static void test_put_get_head(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    struct sp_s3 s3;
    client_init(&s3, &c);
    static char data[10000], back[10000];
    fill(data, sizeof(data), 1);
    size_t len = 0;
    uint64_t size = 0;
    assert_ok(&s3, sp_s3_put(&s3, "obj/one", data, sizeof(data)));
    assert_ok(&s3, sp_s3_get(&s3, "obj/one", back, sizeof(back), &len));
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(back, data, sizeof(data));
    assert_ok(&s3, sp_s3_head(&s3, "obj/one", &size));
    assert_int_equal(size, sizeof(data));

    /* Too small a buffer is -EFBIG, and the client goes on. */
    assert_int_equal(sp_s3_get(&s3, "obj/one", back, 100, &len), -EFBIG);
    assert_non_null(strstr(sp_s3_error(&s3), "larger than 100"));

    void *heap = NULL;
    assert_ok(&s3, sp_s3_get_alloc(&s3, "obj/one", &heap, &len));
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(heap, data, sizeof(data));
    free(heap);

    /* Overwrite with an empty object; keys with spaces and '+' survive. */
    assert_ok(&s3, sp_s3_put(&s3, "obj/a b+c", "", 0));
    assert_ok(&s3, sp_s3_get(&s3, "obj/a b+c", back, sizeof(back), &len));
    assert_int_equal(len, 0);
    assert_ok(&s3, sp_s3_put(&s3, "obj/a b+c", "xyz", 3));
    assert_ok(&s3, sp_s3_head(&s3, "obj/a b+c", &size));
    assert_int_equal(size, 3);
    assert_int_equal(sp_s3_put(&s3, "", "x", 1), -EINVAL);

    /* Over 1 MiB in one PUT: libcurl waits for s3rver's 100 Continue. */
    size_t big_len = 2 * 1024 * 1024 + 1;
    char *big = malloc(big_len);
    assert_non_null(big);
    fill(big, big_len, 7);
    assert_ok(&s3, sp_s3_put(&s3, "obj/two-mib", big, big_len));
    assert_ok(&s3, sp_s3_get_alloc(&s3, "obj/two-mib", &heap, &len));
    assert_int_equal(len, big_len);
    assert_memory_equal(heap, big, big_len);
    free(heap);
    free(big);
    sp_s3_deinit(&s3);
}

static void test_missing(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    struct sp_s3 s3;
    client_init(&s3, &c);
    char buf[16];
    size_t len;
    uint64_t size;
    uint64_t requests = s3.request_count;
    assert_int_equal(sp_s3_get(&s3, "no/such/key", buf, sizeof(buf), &len), -ENOENT);
    printf("# missing key: %s\n", sp_s3_error(&s3));
    assert_non_null(strstr(sp_s3_error(&s3), "HTTP 404"));
    assert_non_null(strstr(sp_s3_error(&s3), "NoSuchKey"));
    assert_int_equal(s3.request_count, requests + 1); /* 4xx: no retry */
    assert_int_equal(sp_s3_head(&s3, "no/such/key", &size), -ENOENT);
    assert_non_null(strstr(sp_s3_error(&s3), "HTTP 404"));
    sp_s3_deinit(&s3);

    c.bucket = "no-such-bucket";
    client_init(&s3, &c);
    assert_int_equal(sp_s3_get(&s3, "x", buf, sizeof(buf), &len), -ENOENT);
    printf("# missing bucket: %s\n", sp_s3_error(&s3));
    assert_non_null(strstr(sp_s3_error(&s3), "NoSuchBucket"));
    sp_s3_deinit(&s3);
}

/*
 * An unknown access key is refused (403, no retry). s3rver does not check
 * the signature itself (a wrong secret passes): test_s3_sign.py does.
 */
static void test_wrong_key(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    c.access_key = "NOT-S3RVER";
    struct sp_s3 s3;
    client_init(&s3, &c);
    uint64_t requests = s3.request_count;
    assert_int_equal(sp_s3_put(&s3, "obj/denied", "x", 1), -EACCES);
    printf("# wrong key: %s\n", sp_s3_error(&s3));
    assert_non_null(strstr(sp_s3_error(&s3), "HTTP 403 InvalidAccessKeyId"));
    assert_int_equal(s3.request_count, requests + 1);
    sp_s3_deinit(&s3);
}

/* ---- LIST and DELETE ---- */

struct listed {
    char keys[16][64];
    uint64_t sizes[16];
    int count;
};

static int collect(const char *key, uint64_t size, void *ctx)
{
    struct listed *l = ctx;
    if (l->count >= 16)
        return -ENOSPC;
    snprintf(l->keys[l->count], sizeof(l->keys[0]), "%s", key);
    l->sizes[l->count++] = size;
    return 0;
}

static void test_list_delete(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    c.list_keys_max = 3;
    struct sp_s3 s3;
    client_init(&s3, &c);
    char name[32];
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof(name), "list/k%02d", i);
        assert_ok(&s3, sp_s3_put(&s3, name, name, (size_t)i));
    }
    assert_ok(&s3, sp_s3_put(&s3, "listx", "x", 1)); /* not under "list/" */

    struct listed l = {.count = 0};
    char token[SP_S3_TOKEN_BYTES_MAX] = "";
    int pages = 0, n;
    do {
        n = sp_s3_list(&s3, "list/", token, 0, collect, &l);
        if (n < 0)
            fail_msg("list: %d %s", n, sp_s3_error(&s3));
        assert_true(n <= 3);
        pages++;
    } while (token[0] != '\0' && pages < 10);
    assert_int_equal(pages, 3);
    assert_int_equal(l.count, 7);
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof(name), "list/k%02d", i);
        assert_string_equal(l.keys[i], name);
        assert_int_equal(l.sizes[i], i);
    }

    /* A page of 2 asked for explicitly; then delete and list again. */
    token[0] = '\0';
    l.count = 0;
    assert_int_equal(sp_s3_list(&s3, "list/", token, 2, collect, &l), 2);
    assert_true(token[0] != '\0');
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof(name), "list/k%02d", i);
        assert_ok(&s3, sp_s3_delete(&s3, name));
    }
    assert_ok(&s3, sp_s3_delete(&s3, "list/k00")); /* already gone: fine */
    token[0] = '\0';
    l.count = 0;
    assert_int_equal(sp_s3_list(&s3, "list/", token, 0, collect, &l), 0);
    assert_string_equal(token, "");
    uint64_t size;
    assert_int_equal(sp_s3_head(&s3, "list/k03", &size), -ENOENT);
    sp_s3_deinit(&s3);
}

/* ---- Multipart ---- */

static void test_multipart(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    c.part_bytes = 512 * 1024;
    c.multipart_threshold_bytes = 1024 * 1024;
    struct sp_s3 s3;
    client_init(&s3, &c);
    size_t len = 3 * 1024 * 1024 + 12345;
    char *data = malloc(len);
    assert_non_null(data);
    fill(data, len, 42);
    uint64_t requests = s3.request_count;
    assert_ok(&s3, sp_s3_put(&s3, "big/segment", data, len)); /* over the threshold */
    /* initiate, 7 parts (6 whole and a short one), complete */
    assert_int_equal(s3.request_count - requests, 1 + 7 + 1);
    void *back = NULL;
    size_t back_len = 0;
    assert_ok(&s3, sp_s3_get_alloc(&s3, "big/segment", &back, &back_len));
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    uint64_t size;
    assert_ok(&s3, sp_s3_head(&s3, "big/segment", &size));
    assert_int_equal(size, len);

    /* Exactly one part's worth, by the explicit call. */
    assert_ok(&s3, sp_s3_put_multipart(&s3, "big/one-part", data, c.part_bytes));
    assert_ok(&s3, sp_s3_get_alloc(&s3, "big/one-part", &back, &back_len));
    assert_int_equal(back_len, c.part_bytes);
    assert_memory_equal(back, data, c.part_bytes);
    free(back);

    /* get_alloc's limit. */
    sp_s3_deinit(&s3);
    c.object_bytes_max = 1024 * 1024;
    client_init(&s3, &c);
    assert_int_equal(sp_s3_get_alloc(&s3, "big/segment", &back, &back_len), -EFBIG);
    assert_null(back);
    sp_s3_deinit(&s3);
    free(data);
}

/* ---- Outage ---- */

static void test_outage(void **state)
{
    (void)state;
    struct sp_s3_config c = config_base();
    struct sp_s3 s3;
    client_init(&s3, &c);
    char buf[64];
    size_t len;
    assert_ok(&s3, sp_s3_put(&s3, "outage/before", "before", 6));

    assert_int_equal(system(stop_command), 0);
    uint64_t requests = s3.request_count, start_ns = sp_now_ns();
    int rc = sp_s3_put(&s3, "outage/during", "during", 6);
    uint64_t took_ms = (sp_now_ns() - start_ns) / SP_NSEC_PER_MSEC;
    printf("# s3rver down: %d after %" PRIu64 " ms: %s\n", rc, took_ms, sp_s3_error(&s3));
    assert_int_equal(rc, -ECONNREFUSED);
    assert_int_equal(s3.request_count - requests, 3); /* the first and 2 retries */
    assert_non_null(strstr(sp_s3_error(&s3), "3 attempts"));
    assert_true(took_ms >= 10 + 20); /* backoff: half of 20 ms, then of 40 ms, at least */
    assert_int_equal(sp_s3_get(&s3, "outage/before", buf, sizeof(buf), &len), -ECONNREFUSED);

    assert_int_equal(system(start_command), 0);
    assert_ok(&s3, sp_s3_put(&s3, "outage/after", "after", 5));
    assert_ok(&s3, sp_s3_get(&s3, "outage/before", buf, sizeof(buf), &len));
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "before", 6);
    assert_ok(&s3, sp_s3_get(&s3, "outage/after", buf, sizeof(buf), &len));
    assert_int_equal(len, 5);
    sp_s3_deinit(&s3);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_s3 ENDPOINT BUCKET STOP_COMMAND START_COMMAND\n");
        return 2;
    }
    endpoint = argv[1];
    bucket = argv[2];
    stop_command = argv[3];
    start_command = argv[4];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_head), cmocka_unit_test(test_missing),
        cmocka_unit_test(test_wrong_key),    cmocka_unit_test(test_list_delete),
        cmocka_unit_test(test_multipart),    cmocka_unit_test(test_outage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
