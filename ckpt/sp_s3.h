/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small synchronous S3 client for checkpoints: PUT (single or multipart),
 * GET, HEAD, DELETE and LIST (ListObjectsV2) of objects under one bucket and
 * key prefix, over HTTP or HTTPS with libcurl. Requests are signed by
 * libcurl's own AWS Signature V4 (CURLOPT_AWS_SIGV4, libcurl >= 7.88), with
 * x-amz-content-sha256 set to the SHA-256 of the payload (OpenSSL).
 *
 * It blocks: it runs on a checkpoint uploader thread, never on a shard
 * thread (a single request may take seconds, a retried one tens of them).
 * One struct sp_s3 belongs to one thread at a time; several clients may run
 * on several threads at once. Connections are reused between requests.
 *
 * Retries: a request that failed to connect or to transfer, or that S3
 * answered with 5xx or 429, is tried again, up to attempts_max tries in all, after
 * exponential backoff with jitter (base * 2^attempt, capped, then a random
 * point in its upper half); a 4xx answer is final. Every failure returns
 * -errno and leaves a one-line message in the client (sp_s3_error()) naming
 * the operation, the key, the HTTP status and S3's error code and message
 * from the XML body, or the transport error and the number of attempts.
 *
 * Keys passed in are relative to the configured prefix (the prefix is
 * prepended; keys listed back have it removed). A key is at most
 * SP_S3_KEY_BYTES_MAX bytes with the prefix, as S3 allows.
 *
 * Not here: streaming a multipart upload from a file (sp_s3_put_multipart
 * takes memory), server-side encryption settings, ListMultipartUploads
 * (abandoned multipart uploads on real S3 are cleaned by a bucket lifecycle
 * rule, AbortIncompleteMultipartUpload; see docs/architecture.md).
 */
#ifndef SP_S3_H
#define SP_S3_H

#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"

/* S3's own limits. */
#define SP_S3_KEY_BYTES_MAX 1024u
#define SP_S3_PARTS_MAX 10000u
/* Longest continuation token kept between LIST pages (S3's are ~ 200 bytes). */
#define SP_S3_TOKEN_BYTES_MAX 1024u
/* The message kept for the last error. */
#define SP_S3_ERROR_BYTES_MAX 512u

enum sp_s3_addressing {
    /* Virtual-hosted on *.amazonaws.com endpoints, path-style elsewhere. */
    SP_S3_ADDRESSING_AUTO = 0,
    /* http://host/bucket/key: s3rver, MinIO and most custom endpoints. */
    SP_S3_ADDRESSING_PATH,
    /* http://bucket.host/key: AWS's default. */
    SP_S3_ADDRESSING_VIRTUAL,
};

/*
 * Settings. Strings are copied at init (the config may go away after). A
 * zero number means the default named beside it; every limit is here.
 */
struct sp_s3_config {
    const char *endpoint;   /* "http://127.0.0.1:4568", "https://s3.eu-west-1.amazonaws.com" */
    const char *region;     /* "us-east-1" */
    const char *bucket;     /* a DNS-compatible bucket name */
    const char *prefix;     /* prepended to every key; NULL or "" for none */
    const char *access_key; /* AWS access key id */
    const char *secret_key; /* AWS secret access key */
    enum sp_s3_addressing addressing;
    uint32_t connect_timeout_ms; /* 5000 */
    uint32_t request_timeout_ms; /* 120000: one attempt, from connect to last byte */
    uint32_t attempts_max; /* 5: tries of one request, the first included (1: no retry), <= 1000 */
    uint32_t backoff_ms_base; /* 100: before the first retry */
    uint32_t backoff_ms_max;  /* 10000: the cap of one wait */
    uint32_t list_keys_max;   /* 1000: keys asked for per LIST page (S3's maximum) */
    size_t part_bytes;        /* 8 MiB: multipart part size, >= 64 KiB here, >= 5 MiB on S3 */
    size_t multipart_threshold_bytes; /* 16 MiB: sp_s3_put goes multipart from this size */
    size_t object_bytes_max;          /* 1 GiB: the largest object sp_s3_get_alloc takes */
    size_t response_xml_bytes_max;    /* 4 MiB: the largest XML answer (a LIST page) read */
    int verbose;                      /* libcurl's verbose trace on stderr */
};

/* The client. Fields are private: use the functions below. */
struct sp_s3 {
    void *curl;     /* CURL * easy handle, reused (its connection cache too) */
    void *headers;  /* struct curl_slist * of the request in flight */
    char *endpoint; /* scheme://host[:port] without the trailing '/' */
    char *region;
    char *bucket;
    char *prefix;
    char *userpwd;              /* "access:secret" for CURLOPT_USERPWD */
    char *sigv4;                /* "aws:amz:REGION:s3" */
    struct sp_s3_config config; /* numbers with defaults applied; strings point above */
    uint64_t jitter_state;
    uint64_t request_count; /* attempts made, for tests and metrics */
    uint64_t retry_count;   /* of which retries */
    char error[SP_S3_ERROR_BYTES_MAX];
};

/*
 * Checks the config and sets up a client. Calls curl_global_init once per
 * process (thread-safe here, through pthread_once).
 * Returns 0; -EINVAL for a missing or malformed setting (the message says
 * which, sp_s3_error()); -ENOMEM.
 */
SP_MUST_CHECK int sp_s3_init(struct sp_s3 *s3, const struct sp_s3_config *config);
/* Frees everything the client holds and closes its connections. */
void sp_s3_deinit(struct sp_s3 *s3);

/* The message of the last failure ("" after a success). Owned by the client. */
const char *sp_s3_error(const struct sp_s3 *s3);

/*
 * Stores DATA[0..len) as KEY, replacing what was there: one PUT below
 * multipart_threshold_bytes, sp_s3_put_multipart() from there on. DATA is
 * borrowed for the call.
 * Returns 0 or -errno: -EINVAL (key empty or too long), -ENOENT (no such
 * bucket), -EACCES (403), -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EIO
 * (transport error or 5xx/429 after every retry), -EPROTO (another 4xx),
 * -EBADMSG (an answer that does not parse), -ENOMEM.
 */
SP_MUST_CHECK int sp_s3_put(struct sp_s3 *s3, const char *key, const void *data, size_t len);

/*
 * Stores DATA[0..len) as KEY by a multipart upload: initiate, parts of
 * part_bytes (the last one shorter), complete. When a step fails after its
 * retries the upload is aborted (best effort: a server without
 * AbortMultipartUpload, like s3rver, keeps the parts) and the first error is
 * returned. Errors as sp_s3_put(), and -EFBIG for more than SP_S3_PARTS_MAX
 * parts.
 */
SP_MUST_CHECK int sp_s3_put_multipart(struct sp_s3 *s3, const char *key, const void *data,
                                      size_t len);

/*
 * Reads KEY into BUF[0..cap) and sets *len. Returns 0 or -errno: -ENOENT (no
 * such key or bucket), -EFBIG (the object is larger than cap; BUF holds
 * garbage), and the errors of sp_s3_put().
 */
SP_MUST_CHECK int sp_s3_get(struct sp_s3 *s3, const char *key, void *buf, size_t cap, size_t *len);

/*
 * Reads KEY into a buffer from malloc (*data, freed by the caller with
 * free()) of *len bytes, at most object_bytes_max. Errors as sp_s3_get();
 * *data is NULL after a failure.
 */
SP_MUST_CHECK int sp_s3_get_alloc(struct sp_s3 *s3, const char *key, void **data, size_t *len);

/*
 * Reads bytes [offset, offset + cap) of KEY into BUF (a ranged GET); *len is
 * what came (less at the object's end; 0 when offset is at or past it).
 * Returns as sp_s3_get().
 */
SP_MUST_CHECK int sp_s3_get_range(struct sp_s3 *s3, const char *key, uint64_t offset, void *buf,
                                  size_t cap, size_t *len);

/*
 * Asks whether KEY exists, and its size (SIZE may be NULL). Returns 0,
 * -ENOENT when it does not exist (no message body: the reason is the
 * status), or the errors of sp_s3_put().
 */
SP_MUST_CHECK int sp_s3_head(struct sp_s3 *s3, const char *key, uint64_t *size);

/* Deletes KEY; deleting a missing key succeeds (S3 says 204 either way). */
SP_MUST_CHECK int sp_s3_delete(struct sp_s3 *s3, const char *key);

/*
 * Called once per listed key, in S3's (UTF-8 binary) order: KEY without the
 * client's prefix, NUL-terminated and valid for the call only. Returns 0 to
 * go on, or -errno to stop the page (sp_s3_list() returns it and leaves
 * TOKEN as it was).
 */
typedef int (*sp_s3_list_fn)(const char *key, uint64_t size, void *ctx);

/*
 * Lists one page of at most keys_max keys (0: list_keys_max; never more than
 * it) that start with PREFIX (relative to the client's prefix; "" for all).
 * TOKEN is in/out, SP_S3_TOKEN_BYTES_MAX bytes: "" asks for the first page;
 * on return it holds the continuation token, or "" when that was the last
 * page. Returns the number of keys passed to FN (>= 0), FN's negative
 * return, or the errors of sp_s3_put() (-EINVAL for a prefix or token too
 * long; -EBADMSG or -EOVERFLOW for a page that does not parse or whose next
 * token does not fit).
 */
SP_MUST_CHECK int sp_s3_list(struct sp_s3 *s3, const char *prefix, char *token, uint32_t keys_max,
                             sp_s3_list_fn fn, void *ctx);

#endif /* SP_S3_H */
