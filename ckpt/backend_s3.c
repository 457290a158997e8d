/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store's S3 backend (`s3://bucket/prefix`): the backend
 * vtable of sp_ckpt_backend.h over the S3 client (sp_s3.h). Keys are the
 * store's flat keys under the prefix. A put is one PUT, or a multipart
 * upload from the client's threshold on: both atomic in S3 (the object
 * appears whole when the upload completes, or not at all). A get is a ranged
 * GET; a delete asks HEAD first, so a missing object is -ENOENT as the
 * vtable wants (S3's DELETE says 204 either way).
 *
 * Where it connects: the URL names the bucket and the prefix; the endpoint,
 * region and credentials come from the environment, as AWS tools take them:
 * SPATE_S3_ENDPOINT (default https://s3.REGION.amazonaws.com, addressed by
 * virtual host; any other endpoint path-style), AWS_REGION (default us-east-1),
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (both required).
 *
 * Abandoned multipart uploads (a writer that died mid-upload) are not
 * swept here: S3 keeps them, invisible to LIST, until a bucket lifecycle
 * rule (AbortIncompleteMultipartUpload) removes them; s3rver, the test
 * server, has no ListMultipartUploads to find them with.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ckpt_backend.h"
#include "sp_log.h"
#include "sp_s3.h"

struct s3_backend {
    struct sp_ckpt_backend base; /* first */
    struct sp_s3 s3;
};

static struct sp_s3 *client_of(struct sp_ckpt_backend *b)
{
    return &((struct s3_backend *)b)->s3;
}

static int s3b_put(struct sp_ckpt_backend *b, const char *key, const void *data, size_t len)
{
    return sp_s3_put(client_of(b), key, data, len); /* multipart from the threshold on */
}

static int64_t s3b_get(struct sp_ckpt_backend *b, const char *key, uint64_t offset, void *buf,
                       size_t len)
{
    if (len == 0)
        return 0;
    size_t got = 0;
    int rc = sp_s3_get_range(client_of(b), key, offset, buf, len, &got);
    return rc < 0 ? rc : (int64_t)got;
}

static int s3b_stat(struct sp_ckpt_backend *b, const char *key, uint64_t *size_bytes)
{
    return sp_s3_head(client_of(b), key, size_bytes);
}

struct list_ctx {
    sp_ckpt_list_fn *fn;
    void *ctx;
    int stopped;
};

static int list_one(const char *key, uint64_t size, void *ctx)
{
    struct list_ctx *l = ctx;
    if (l->fn(key, size, l->ctx) != 0) {
        l->stopped = 1;
        return -ECANCELED; /* ends the page; not an error for the caller */
    }
    return 0;
}

static int s3b_list(struct sp_ckpt_backend *b, const char *prefix, sp_ckpt_list_fn *fn, void *ctx)
{
    char token[SP_S3_TOKEN_BYTES_MAX] = "";
    struct list_ctx l = {.fn = fn, .ctx = ctx};
    /* Pages until the last (a bound on them: S3 gives 1000 keys a page). */
    for (uint32_t page = 0; page < 1000000u; page++) {
        int rc = sp_s3_list(client_of(b), prefix, token, 0, list_one, &l);
        if (l.stopped)
            return 0;
        if (rc < 0)
            return rc;
        if (token[0] == '\0')
            return 0;
    }
    return -E2BIG;
}

static int s3b_del(struct sp_ckpt_backend *b, const char *key)
{
    uint64_t size;
    int rc = sp_s3_head(client_of(b), key, &size);
    return rc < 0 ? rc : sp_s3_delete(client_of(b), key);
}

static void s3b_close(struct sp_ckpt_backend *b)
{
    struct s3_backend *sb = (struct s3_backend *)b;
    sp_s3_deinit(&sb->s3);
    free(sb);
}

static const struct sp_ckpt_backend_ops s3_ops = {
    .scheme = "s3",
    .put = s3b_put,
    .get = s3b_get,
    .stat = s3b_stat,
    .list = s3b_list,
    .del = s3b_del,
    .close = s3b_close,
    .sweep_partial = NULL,
};

int sp_ckpt_backend_s3_open(const char *url, struct sp_ckpt_backend **out)
{
    *out = NULL;
    if (strncmp(url, "s3://", 5) != 0)
        return -EINVAL;
    const char *bucket = url + 5;
    const char *slash = strchr(bucket, '/');
    size_t bucket_len = slash != NULL ? (size_t)(slash - bucket) : strlen(bucket);
    char bucket_buf[64];
    if (bucket_len == 0 || bucket_len >= sizeof(bucket_buf))
        return -EINVAL;
    memcpy(bucket_buf, bucket, bucket_len);
    bucket_buf[bucket_len] = '\0';
    const char *prefix = slash != NULL ? slash + 1 : "";
    const char *region = getenv("AWS_REGION");
    if (region == NULL || region[0] == '\0')
        region = "us-east-1";
    const char *access = getenv("AWS_ACCESS_KEY_ID");
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    if (access == NULL || secret == NULL || access[0] == '\0' || secret[0] == '\0') {
        sp_error("checkpoint store %s: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are needed",
                 url);
        return -EACCES;
    }
    const char *endpoint = getenv("SPATE_S3_ENDPOINT");
    char aws_endpoint[128];
    if (endpoint == NULL || endpoint[0] == '\0') {
        snprintf(aws_endpoint, sizeof(aws_endpoint), "https://s3.%s.amazonaws.com", region);
        endpoint = aws_endpoint;
    }
    struct s3_backend *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return -ENOMEM;
    struct sp_s3_config c = {.endpoint = endpoint,
                             .region = region,
                             .bucket = bucket_buf,
                             .prefix = prefix,
                             .access_key = access,
                             .secret_key = secret,
                             .addressing = SP_S3_ADDRESSING_AUTO};
    int rc = sp_s3_init(&sb->s3, &c);
    if (rc < 0) {
        sp_error("checkpoint store %s: %s", url, sp_s3_error(&sb->s3));
        sp_s3_deinit(&sb->s3);
        free(sb);
        return rc;
    }
    sb->base.ops = &s3_ops;
    *out = &sb->base;
    return 0;
}
