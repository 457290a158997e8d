/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 client (sp_s3.h): one libcurl easy handle per client, reset and set
 * up again for every attempt of every request, so no option leaks from one
 * request into the next while the connection cache is kept. A request is a
 * struct s3_req (method, URL, body to send, where the answer goes) run by
 * s3_perform(), which owns retries and turns the outcome into -errno and a
 * message. Signing is libcurl's (CURLOPT_AWS_SIGV4); this file only gives it
 * the x-amz-content-sha256 header, the payload's SHA-256 in hex.
 *
 * XML answers (errors, LIST pages, multipart upload ids) are read by a tiny
 * tag scanner that never reads past its buffer and returns -EBADMSG on
 * anything it does not expect; S3's answers are flat enough for it.
 */
#include "sp_s3.h"
#include "s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S3_URL_BYTES_MAX 8192u
#define S3_ERROR_BODY_BYTES_MAX 4096u
#define S3_ETAG_BYTES_MAX 128u
#define S3_UPLOAD_ID_BYTES_MAX 1024u
#define S3_SHA256_HEX_BYTES 65u
#define S3_PART_BYTES_MIN (64u * 1024u)

_Static_assert(S3_URL_BYTES_MAX > 3 * SP_S3_KEY_BYTES_MAX + 3 * SP_S3_TOKEN_BYTES_MAX,
               "a URL holds an escaped key and an escaped token");

/* ---- Requests ---- */

/* Where an answer's body goes: a fixed buffer, or one grown up to max. */
struct s3_body {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
    int growable;
    int overflow;
    int oom;
};

struct s3_req {
    const char *op;  /* "PUT", "GET", ... for messages */
    const char *key; /* for messages */
    const char *method;
    const char *url;
    const char *content_type; /* NULL: none */
    const void *send;         /* body to send, NULL for none */
    size_t send_len;
    char send_sha256[S3_SHA256_HEX_BYTES]; /* once per request, not per attempt */
    int head;
    const char *range;    /* "FIRST-LAST" bytes for a ranged GET, NULL for none */
    struct s3_body *body; /* 2xx body; NULL to drop it */
    char error_body[S3_ERROR_BODY_BYTES_MAX];
    size_t error_len;
    char etag[S3_ETAG_BYTES_MAX];
    long status;
    curl_off_t content_length;
};

static pthread_once_t s3_global_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc;

static void s3_global_init(void)
{
    s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *sp_s3_error(const struct sp_s3 *s3)
{
    return s3->error;
}

static SP_PRINTF(2, 3) void s3_fail(struct sp_s3 *s3, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s3->error, sizeof(s3->error), fmt, ap);
    va_end(ap);
}

/* SHA-256 of DATA as 64 lowercase hex digits and a NUL. */
static int s3_sha256_hex(const void *data, size_t len, char hex[S3_SHA256_HEX_BYTES])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (EVP_Digest(data != NULL ? data : "", len, md, &md_len, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    SP_ASSERT(md_len == 32);
    for (unsigned i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static size_t s3_write_cb(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    struct s3_req *req = ctx;
    size_t n = size * nmemb;
    if (req->status == 0 || req->status >= 300 || req->body == NULL) {
        /* Errors keep their first 4 KiB: enough for <Code> and <Message>. */
        size_t room = sizeof(req->error_body) - 1 - req->error_len;
        size_t take = SP_MIN(room, n);
        memcpy(req->error_body + req->error_len, ptr, take);
        req->error_len += take;
        req->error_body[req->error_len] = '\0';
        return n;
    }
    struct s3_body *b = req->body;
    if (b->len + n > b->cap) {
        if (!b->growable || b->len + n > b->max) {
            b->overflow = 1;
            return CURL_WRITEFUNC_ERROR;
        }
        size_t cap = SP_MAX(b->cap * 2, 64 * 1024);
        while (cap < b->len + n)
            cap *= 2;
        cap = SP_MIN(cap, b->max + 1);
        char *data = realloc(b->data, cap);
        if (data == NULL) {
            b->oom = 1;
            return CURL_WRITEFUNC_ERROR;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

/* Keeps the status line's code (before any body arrives) and the ETag. */
static size_t s3_header_cb(char *buf, size_t size, size_t nitems, void *ctx)
{
    struct s3_req *req = ctx;
    size_t n = size * nitems;
    if (n > 9 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', n);
        if (sp != NULL && sp + 4 <= buf + n)
            req->status = strtol(sp + 1, NULL, 10);
        req->error_len = 0;
        req->etag[0] = '\0';
    } else if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
        size_t i = 5;
        while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        size_t end = n;
        while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == '\n' || buf[end - 1] == ' '))
            end--;
        size_t len = SP_MIN(end - i, sizeof(req->etag) - 1);
        memcpy(req->etag, buf + i, len);
        req->etag[len] = '\0';
    }
    return n;
}

/* ---- XML: flat tag scanning ---- */

/*
 * Finds the next <TAG>...</TAG> in [*pos, end) and returns its text (not
 * decoded) through *text and *len, moving *pos past it. Returns 0, -ENOENT when
 * there is no further element, -EBADMSG when it is not closed.
 */
static int s3_xml_next(const char **pos, const char *end, const char *tag, const char **text,
                       size_t *len)
{
    char open[64], close[64];
    int on = snprintf(open, sizeof(open), "<%s>", tag);
    int cn = snprintf(close, sizeof(close), "</%s>", tag);
    SP_ASSERT(on > 0 && (size_t)on < sizeof(open));
    SP_ASSERT(cn > 0 && (size_t)cn < sizeof(close));
    if (*pos == NULL || *pos >= end)
        return -ENOENT; /* an empty answer: memmem wants a buffer */
    const char *p = memmem(*pos, (size_t)(end - *pos), open, (size_t)on);
    if (p == NULL)
        return -ENOENT;
    p += on;
    const char *q = memmem(p, (size_t)(end - p), close, (size_t)cn);
    if (q == NULL)
        return -EBADMSG;
    *text = p;
    *len = (size_t)(q - p);
    *pos = q + cn;
    return 0;
}

/* Copies XML text into OUT[0..cap) decoding the five entities and &#N;. */
static int s3_xml_text(const char *text, size_t len, char *out, size_t cap)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char c = text[i];
        size_t adv = 1;
        if (c == '&') {
            size_t k;
            for (k = 0; k < SP_ARRAY_LEN(ents); k++) {
                size_t el = strlen(ents[k].name);
                if (len - i >= el && memcmp(text + i, ents[k].name, el) == 0) {
                    c = ents[k].c;
                    adv = el;
                    break;
                }
            }
            if (k == SP_ARRAY_LEN(ents)) {
                if (len - i < 4 || text[i + 1] != '#')
                    return -EBADMSG;
                const char *semi = memchr(text + i, ';', SP_MIN(len - i, 8));
                if (semi == NULL)
                    return -EBADMSG;
                unsigned long v = strtoul(text + i + 2, NULL, 10);
                if (v == 0 || v > 127)
                    return -EBADMSG; /* S3 escapes only control characters so */
                c = (char)v;
                adv = (size_t)(semi - (text + i)) + 1;
            }
        }
        if (o + 1 >= cap)
            return -EOVERFLOW;
        out[o++] = c;
        i += adv;
    }
    out[o] = '\0';
    return 0;
}

int sp_s3_xml_find(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    const char *pos = body, *text;
    size_t tlen;
    int rc = s3_xml_next(&pos, body + len, tag, &text, &tlen);
    if (rc < 0)
        return rc;
    return s3_xml_text(text, tlen, out, cap);
}

/* ---- Performing, retrying, errors ---- */

static int s3_status_errno(long status)
{
    switch (status) {
    case 400:
        return -EINVAL;
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    default:
        return status == 429 || status >= 500 ? -EIO : -EPROTO;
    }
}

static int s3_curl_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Sleeps base * 2^attempt ms, capped, then a random point of its upper half. */
static void s3_backoff(struct sp_s3 *s3, uint32_t attempt)
{
    uint64_t ms = s3->config.backoff_ms_base;
    for (uint32_t i = 0; i < attempt && ms < s3->config.backoff_ms_max; i++)
        ms *= 2;
    ms = SP_MIN(ms, (uint64_t)s3->config.backoff_ms_max);
    s3->jitter_state ^= s3->jitter_state << 13;
    s3->jitter_state ^= s3->jitter_state >> 7;
    s3->jitter_state ^= s3->jitter_state << 17;
    uint64_t wait_ms = ms / 2 + (ms > 1 ? s3->jitter_state % (ms / 2 + 1) : 0);
    struct timespec ts = {.tv_sec = (time_t)(wait_ms / 1000),
                          .tv_nsec = (long)(wait_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sets every option of one attempt on the reset handle. */
static int s3_setup(struct sp_s3 *s3, struct s3_req *req)
{
    CURL *c = s3->curl;
    char line[128];
    struct curl_slist *h = NULL, *n;
    /*
     * No "Expect:" to turn 100-continue off: libcurl 7.88 would sign the
     * empty header without sending it, and S3 would reject the signature
     * (test_s3_sign.py caught it). Uploads over 1 MiB wait for 100 Continue.
     */
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", req->send_sha256);
    if ((n = curl_slist_append(h, line)) == NULL)
        goto oom;
    h = n;
    const char *type = req->content_type;
    if (type == NULL && (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0))
        type = "application/octet-stream"; /* else libcurl says form-urlencoded */
    if (type != NULL) {
        snprintf(line, sizeof(line), "Content-Type: %s", type);
        if ((n = curl_slist_append(h, line)) == NULL)
            goto oom;
        h = n;
    }
    s3->headers = h;
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s3->sigv4);
    curl_easy_setopt(c, CURLOPT_USERPWD, s3->userpwd);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)s3->config.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s3->config.request_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_VERBOSE, (long)s3->config.verbose);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s3_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(c, CURLOPT_RANGE, req->range); /* NULL clears the last one's */
    if (req->head) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
        /*
         * The body from memory as POST fields, whatever the method: libcurl
         * resends it on every attempt by itself, and adds "Expect:
         * 100-continue" only above 1 MiB, where CURLOPT_UPLOAD would add it
         * to every PUT (a round trip more, 1 s against a server that ignores it).
         */
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->send_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->send != NULL ? req->send : "");
        if (strcmp(req->method, "PUT") == 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    }
    return 0;
oom:
    curl_slist_free_all(h);
    return -ENOMEM;
}

/* Names the HTTP status and S3's <Code> and <Message> of a final error answer. */
static int s3_fail_status(struct sp_s3 *s3, struct s3_req *req, uint32_t attempts)
{
    char code[64] = "", msg[256] = "";
    if (sp_s3_xml_find(req->error_body, req->error_len, "Code", code, sizeof(code)) < 0)
        snprintf(code, sizeof(code), "%s", req->head ? "(HEAD has no body)" : "(no S3 error code)");
    if (sp_s3_xml_find(req->error_body, req->error_len, "Message", msg, sizeof(msg)) < 0)
        msg[0] = '\0';
    s3_fail(s3, "S3 %s %s: HTTP %ld %s%s%s (%" PRIu32 " attempt%s)", req->op, req->key, req->status,
            code, msg[0] ? ": " : "", msg, attempts, attempts == 1 ? "" : "s");
    return s3_status_errno(req->status);
}

/*
 * Runs REQ with retries. Returns 0 for a 2xx answer, or -errno with the
 * message set. The body of a 2xx answer is in req->body.
 */
static int s3_perform(struct sp_s3 *s3, struct s3_req *req)
{
    uint32_t attempts_max = s3->config.attempts_max;
    if (s3_sha256_hex(req->send, req->send_len, req->send_sha256) < 0) {
        s3_fail(s3, "S3 %s %s: SHA-256 failed", req->op, req->key);
        return -ENOMEM;
    }
    for (uint32_t attempt = 0;; attempt++) {
        SP_ASSERT(attempt < attempts_max);
        if (attempt > 0) {
            s3->retry_count++;
            s3_backoff(s3, attempt - 1);
        }
        curl_easy_reset(s3->curl);
        req->status = 0;
        req->error_len = 0;
        req->error_body[0] = '\0';
        req->etag[0] = '\0';
        if (req->body != NULL) {
            req->body->len = 0;
            req->body->overflow = 0;
        }
        int rc = s3_setup(s3, req);
        if (rc < 0) {
            s3_fail(s3, "S3 %s %s: out of memory", req->op, req->key);
            return rc;
        }
        s3->request_count++;
        CURLcode cc = curl_easy_perform(s3->curl);
        curl_slist_free_all(s3->headers);
        s3->headers = NULL;
        long status = 0;
        curl_easy_getinfo(s3->curl, CURLINFO_RESPONSE_CODE, &status);
        req->status = status;
        curl_easy_getinfo(s3->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &req->content_length);
        if (cc == CURLE_WRITE_ERROR && req->body != NULL && req->body->overflow) {
            s3_fail(s3, "S3 %s %s: the answer is larger than %zu bytes", req->op, req->key,
                    req->body->growable ? req->body->max : req->body->cap);
            return -EFBIG;
        }
        if (cc == CURLE_WRITE_ERROR && req->body != NULL && req->body->oom) {
            s3_fail(s3, "S3 %s %s: out of memory for the answer", req->op, req->key);
            return -ENOMEM;
        }
        int retryable = cc != CURLE_OK || status == 429 || status >= 500;
        if (retryable && attempt + 1 < attempts_max)
            continue;
        if (cc != CURLE_OK) {
            s3_fail(s3, "S3 %s %s: %s (%" PRIu32 " attempts)", req->op, req->key,
                    curl_easy_strerror(cc), attempt + 1);
            return s3_curl_errno(cc);
        }
        if (status < 200 || status >= 300)
            return s3_fail_status(s3, req, attempt + 1);
        s3->error[0] = '\0';
        return 0;
    }
}

/* ---- URLs ---- */

/* Appends the escaped KEY (with the prefix) to URL, keeping '/' as is. */
static int s3_url_key(struct sp_s3 *s3, char *url, size_t cap, size_t *len, const char *key)
{
    char full[SP_S3_KEY_BYTES_MAX + 1];
    int n = snprintf(full, sizeof(full), "%s%s", s3->prefix, key);
    if (key[0] == '\0' || n < 0 || (size_t)n >= sizeof(full)) {
        s3_fail(s3, "S3: key '%.64s' is empty or longer than %u bytes with the prefix", key,
                SP_S3_KEY_BYTES_MAX);
        return -EINVAL;
    }
    const char *seg = full;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t seg_len = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        char *esc = curl_easy_escape(s3->curl, seg, (int)seg_len);
        if (esc == NULL)
            return -ENOMEM;
        int w = snprintf(url + *len, cap - *len, "%s%s", esc, slash != NULL ? "/" : "");
        curl_free(esc);
        if (w < 0 || (size_t)w >= cap - *len)
            return -EOVERFLOW;
        *len += (size_t)w;
        if (slash == NULL)
            return 0;
        seg = slash + 1;
    }
}

/* Builds the URL of the bucket (KEY NULL) or of KEY, then "?QUERY" if given. */
static int s3_url(struct sp_s3 *s3, char *url, size_t cap, const char *key, const char *query)
{
    size_t len;
    int n;
    if (s3->config.addressing == SP_S3_ADDRESSING_PATH) {
        n = snprintf(url, cap, "%s/%s/", s3->endpoint, s3->bucket);
    } else {
        const char *host = strstr(s3->endpoint, "://") + 3;
        n = snprintf(url, cap, "%.*s%s.%s/", (int)(host - s3->endpoint), s3->endpoint, s3->bucket,
                     host);
    }
    if (n < 0 || (size_t)n >= cap)
        return -EOVERFLOW;
    len = (size_t)n;
    if (key != NULL) {
        int rc = s3_url_key(s3, url, cap, &len, key);
        if (rc < 0)
            return rc;
    }
    if (query != NULL) {
        n = snprintf(url + len, cap - len, "?%s", query);
        if (n < 0 || (size_t)n >= cap - len)
            return -EOVERFLOW;
    }
    return 0;
}

/* ---- Setup ---- */

static char *s3_strdup_trim(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return strndup(s, n);
}

static int s3_config_check(struct sp_s3 *s3, const struct sp_s3_config *c)
{
    const char *missing = c->endpoint == NULL     ? "endpoint"
                          : c->region == NULL     ? "region"
                          : c->bucket == NULL     ? "bucket"
                          : c->access_key == NULL ? "access_key"
                          : c->secret_key == NULL ? "secret_key"
                                                  : NULL;
    if (missing != NULL) {
        s3_fail(s3, "S3 config: %s is missing", missing);
        return -EINVAL;
    }
    if (strncmp(c->endpoint, "http://", 7) != 0 && strncmp(c->endpoint, "https://", 8) != 0) {
        s3_fail(s3, "S3 config: endpoint '%s' is not http:// or https://", c->endpoint);
        return -EINVAL;
    }
    if (c->bucket[0] == '\0' || strchr(c->bucket, '/') != NULL || c->region[0] == '\0' ||
        strchr(c->region, ':') != NULL || strchr(c->access_key, ':') != NULL) {
        s3_fail(s3, "S3 config: bucket, region or access key malformed");
        return -EINVAL;
    }
    if (c->attempts_max > 1000 || (c->part_bytes != 0 && c->part_bytes < S3_PART_BYTES_MIN)) {
        s3_fail(s3, "S3 config: attempts_max > 1000 or part_bytes < %u", S3_PART_BYTES_MIN);
        return -EINVAL;
    }
    return 0;
}

static void s3_config_defaults(struct sp_s3_config *c, const char *endpoint)
{
#define S3_DEFAULT(field, value)                                                                   \
    if (c->field == 0)                                                                             \
    c->field = (value)
    S3_DEFAULT(connect_timeout_ms, 5000);
    S3_DEFAULT(request_timeout_ms, 120000);
    S3_DEFAULT(attempts_max, 5);
    S3_DEFAULT(backoff_ms_base, 100);
    S3_DEFAULT(backoff_ms_max, 10000);
    S3_DEFAULT(list_keys_max, 1000);
    S3_DEFAULT(part_bytes, (size_t)8 << 20);
    S3_DEFAULT(multipart_threshold_bytes, (size_t)16 << 20);
    S3_DEFAULT(object_bytes_max, (size_t)1 << 30);
    S3_DEFAULT(response_xml_bytes_max, (size_t)4 << 20);
#undef S3_DEFAULT
    if (c->addressing == SP_S3_ADDRESSING_AUTO) {
        const char *host = strstr(endpoint, "://") + 3;
        size_t host_len = strcspn(host, ":/");
        const char *aws = "amazonaws.com";
        int is_aws =
            host_len >= strlen(aws) && memcmp(host + host_len - strlen(aws), aws, strlen(aws)) == 0;
        c->addressing = is_aws ? SP_S3_ADDRESSING_VIRTUAL : SP_S3_ADDRESSING_PATH;
    }
    c->list_keys_max = SP_MIN(c->list_keys_max, 1000u);
}

int sp_s3_init(struct sp_s3 *s3, const struct sp_s3_config *config)
{
    SP_ASSERT(s3 != NULL);
    SP_ASSERT(config != NULL);
    memset(s3, 0, sizeof(*s3));
    int rc = s3_config_check(s3, config);
    if (rc < 0)
        return rc;
    pthread_once(&s3_global_once, s3_global_init);
    if (s3_global_rc != CURLE_OK) {
        s3_fail(s3, "S3: curl_global_init: %s", curl_easy_strerror(s3_global_rc));
        return -ENOMEM;
    }
    s3->config = *config;
    s3_config_defaults(&s3->config, config->endpoint);
    s3->curl = curl_easy_init();
    s3->endpoint = s3_strdup_trim(config->endpoint);
    s3->region = strdup(config->region);
    s3->bucket = strdup(config->bucket);
    s3->prefix = strdup(config->prefix != NULL ? config->prefix : "");
    if (asprintf(&s3->userpwd, "%s:%s", config->access_key, config->secret_key) < 0)
        s3->userpwd = NULL;
    if (asprintf(&s3->sigv4, "aws:amz:%s:s3", config->region) < 0)
        s3->sigv4 = NULL;
    if (s3->curl == NULL || s3->endpoint == NULL || s3->region == NULL || s3->bucket == NULL ||
        s3->prefix == NULL || s3->userpwd == NULL || s3->sigv4 == NULL) {
        sp_s3_deinit(s3);
        s3_fail(s3, "S3: out of memory");
        return -ENOMEM;
    }
    s3->config.endpoint = s3->endpoint;
    s3->config.region = s3->region;
    s3->config.bucket = s3->bucket;
    s3->config.prefix = s3->prefix;
    s3->config.access_key = NULL; /* only in userpwd */
    s3->config.secret_key = NULL;
    s3->jitter_state = sp_now_ns() | 1;
    return 0;
}

void sp_s3_deinit(struct sp_s3 *s3)
{
    if (s3->curl != NULL)
        curl_easy_cleanup(s3->curl);
    if (s3->userpwd != NULL)
        explicit_bzero(s3->userpwd, strlen(s3->userpwd));
    free(s3->endpoint);
    free(s3->region);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->userpwd);
    free(s3->sigv4);
    memset(s3, 0, sizeof(*s3));
}

/* ---- Operations ---- */

static int s3_put_one(struct sp_s3 *s3, const char *key, const void *data, size_t len)
{
    char url[S3_URL_BYTES_MAX];
    int rc = s3_url(s3, url, sizeof(url), key, NULL);
    if (rc < 0)
        return rc;
    struct s3_req req = {
        .op = "PUT", .key = key, .method = "PUT", .url = url, .send = data, .send_len = len};
    return s3_perform(s3, &req);
}

int sp_s3_put(struct sp_s3 *s3, const char *key, const void *data, size_t len)
{
    SP_ASSERT(s3->curl != NULL);
    SP_ASSERT(data != NULL || len == 0);
    if (len >= s3->config.multipart_threshold_bytes)
        return sp_s3_put_multipart(s3, key, data, len);
    return s3_put_one(s3, key, data, len);
}

static int s3_get_into(struct sp_s3 *s3, const char *key, struct s3_body *body)
{
    char url[S3_URL_BYTES_MAX];
    int rc = s3_url(s3, url, sizeof(url), key, NULL);
    if (rc < 0)
        return rc;
    struct s3_req req = {.op = "GET", .key = key, .method = "GET", .url = url, .body = body};
    return s3_perform(s3, &req);
}

int sp_s3_get(struct sp_s3 *s3, const char *key, void *buf, size_t cap, size_t *len)
{
    SP_ASSERT(s3->curl != NULL);
    SP_ASSERT(buf != NULL || cap == 0);
    struct s3_body body = {.data = buf, .cap = cap, .max = cap};
    int rc = s3_get_into(s3, key, &body);
    *len = rc == 0 ? body.len : 0;
    return rc;
}

int sp_s3_get_range(struct sp_s3 *s3, const char *key, uint64_t offset, void *buf, size_t cap,
                    size_t *len)
{
    SP_ASSERT(s3->curl != NULL);
    SP_ASSERT(buf != NULL && cap > 0);
    *len = 0;
    char url[S3_URL_BYTES_MAX], range[64];
    int rc = s3_url(s3, url, sizeof(url), key, NULL);
    if (rc < 0)
        return rc;
    snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, offset, offset + cap - 1);
    struct s3_body body = {.data = buf, .cap = cap, .max = cap};
    struct s3_req req = {
        .op = "GET", .key = key, .method = "GET", .url = url, .body = &body, .range = range};
    rc = s3_perform(s3, &req);
    if (rc < 0 && req.status == 416) { /* the range starts at or past the end */
        s3->error[0] = '\0';
        return 0;
    }
    if (rc == 0)
        *len = body.len;
    return rc;
}

int sp_s3_get_alloc(struct sp_s3 *s3, const char *key, void **data, size_t *len)
{
    SP_ASSERT(s3->curl != NULL);
    struct s3_body body = {.growable = 1, .max = s3->config.object_bytes_max};
    int rc = s3_get_into(s3, key, &body);
    if (rc < 0) {
        free(body.data);
        *data = NULL;
        *len = 0;
        return rc;
    }
    if (body.data == NULL && (body.data = malloc(1)) == NULL)
        return -ENOMEM; /* an empty object: still a buffer to free */
    *data = body.data;
    *len = body.len;
    return 0;
}

int sp_s3_head(struct sp_s3 *s3, const char *key, uint64_t *size)
{
    SP_ASSERT(s3->curl != NULL);
    char url[S3_URL_BYTES_MAX];
    int rc = s3_url(s3, url, sizeof(url), key, NULL);
    if (rc < 0)
        return rc;
    struct s3_req req = {.op = "HEAD", .key = key, .method = "HEAD", .url = url, .head = 1};
    rc = s3_perform(s3, &req);
    if (rc == 0 && size != NULL)
        *size = req.content_length >= 0 ? (uint64_t)req.content_length : 0;
    return rc;
}

int sp_s3_delete(struct sp_s3 *s3, const char *key)
{
    SP_ASSERT(s3->curl != NULL);
    char url[S3_URL_BYTES_MAX];
    int rc = s3_url(s3, url, sizeof(url), key, NULL);
    if (rc < 0)
        return rc;
    struct s3_req req = {.op = "DELETE", .key = key, .method = "DELETE", .url = url};
    return s3_perform(s3, &req);
}

/* ---- LIST ---- */

int sp_s3_list_decode(const char *xml, size_t len, const char *prefix, char *token,
                      sp_s3_list_fn fn, void *ctx)
{
    const char *pos = xml, *end = xml + len, *text;
    size_t tlen, plen = strlen(prefix);
    char key[SP_S3_KEY_BYTES_MAX + 1], num[32];
    int count = 0, rc;
    while ((rc = s3_xml_next(&pos, end, "Contents", &text, &tlen)) == 0) {
        if (count >= 1000)
            return -EBADMSG; /* a page holds at most 1000 keys */
        uint64_t size = 0;
        if (sp_s3_xml_find(text, tlen, "Key", key, sizeof(key)) < 0 ||
            strncmp(key, prefix, plen) != 0)
            return -EBADMSG;
        if (sp_s3_xml_find(text, tlen, "Size", num, sizeof(num)) == 0)
            size = strtoull(num, NULL, 10);
        count++;
        rc = fn(key + plen, size, ctx);
        SP_ASSERT(rc <= 0);
        if (rc < 0)
            return rc;
    }
    if (rc != -ENOENT)
        return rc;
    char truncated[16] = "";
    if (sp_s3_xml_find(xml, len, "IsTruncated", truncated, sizeof(truncated)) < 0)
        truncated[0] = '\0'; /* absent or odd: the last page */
    token[0] = '\0';
    if (strcmp(truncated, "true") == 0) {
        rc = sp_s3_xml_find(xml, len, "NextContinuationToken", token, SP_S3_TOKEN_BYTES_MAX);
        if (rc < 0)
            return rc == -ENOENT ? -EBADMSG : rc;
    }
    return count;
}

/* Appends "&NAME=escaped VALUE" to Q. */
static int s3_query_add(struct sp_s3 *s3, char *q, size_t cap, const char *name, const char *value)
{
    char *esc = curl_easy_escape(s3->curl, value, 0);
    if (esc == NULL)
        return -ENOMEM;
    size_t len = strlen(q);
    int n = snprintf(q + len, cap - len, "%s%s=%s", len > 0 ? "&" : "", name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= cap - len ? -EOVERFLOW : 0;
}

int sp_s3_list(struct sp_s3 *s3, const char *prefix, char *token, uint32_t keys_max,
               sp_s3_list_fn fn, void *ctx)
{
    SP_ASSERT(s3->curl != NULL);
    SP_ASSERT(token != NULL);
    SP_ASSERT(fn != NULL);
    char query[3 * (SP_S3_KEY_BYTES_MAX + SP_S3_TOKEN_BYTES_MAX) + 128] = "",
                                                                   full[SP_S3_KEY_BYTES_MAX + 1],
                                                                   num[16];
    uint32_t max =
        keys_max == 0 ? s3->config.list_keys_max : SP_MIN(keys_max, s3->config.list_keys_max);
    int n = snprintf(full, sizeof(full), "%s%s", s3->prefix, prefix);
    if (n < 0 || (size_t)n >= sizeof(full) || strlen(token) >= SP_S3_TOKEN_BYTES_MAX) {
        s3_fail(s3, "S3 LIST %s: prefix or token too long", prefix);
        return -EINVAL;
    }
    /* Parameters in canonical (sorted) order, as SigV4 wants them. */
    snprintf(num, sizeof(num), "%" PRIu32, max);
    int rc =
        token[0] != '\0' ? s3_query_add(s3, query, sizeof(query), "continuation-token", token) : 0;
    if (rc == 0)
        rc = s3_query_add(s3, query, sizeof(query), "list-type", "2");
    if (rc == 0)
        rc = s3_query_add(s3, query, sizeof(query), "max-keys", num);
    if (rc == 0)
        rc = s3_query_add(s3, query, sizeof(query), "prefix", full);
    char url[S3_URL_BYTES_MAX];
    if (rc == 0)
        rc = s3_url(s3, url, sizeof(url), NULL, query);
    if (rc < 0)
        return rc;
    struct s3_body body = {.growable = 1, .max = s3->config.response_xml_bytes_max};
    struct s3_req req = {.op = "LIST", .key = prefix, .method = "GET", .url = url, .body = &body};
    rc = s3_perform(s3, &req);
    if (rc == 0) {
        rc = sp_s3_list_decode(body.data, body.len, s3->prefix, token, fn, ctx);
        if (rc == -EBADMSG || rc == -EOVERFLOW)
            s3_fail(s3, "S3 LIST %s: the answer does not parse", prefix);
    }
    free(body.data);
    return rc;
}

/* ---- Multipart upload ---- */

struct s3_upload {
    const char *key;
    char id[S3_UPLOAD_ID_BYTES_MAX];
    char *complete; /* the CompleteMultipartUpload XML, grown part by part */
    size_t complete_len;
    size_t complete_cap;
};

static int s3_upload_begin(struct sp_s3 *s3, struct s3_upload *up)
{
    char url[S3_URL_BYTES_MAX];
    int rc = s3_url(s3, url, sizeof(url), up->key, "uploads=");
    if (rc < 0)
        return rc;
    struct s3_body body = {.growable = 1, .max = 64 * 1024};
    struct s3_req req = {.op = "POST ?uploads",
                         .key = up->key,
                         .method = "POST",
                         .url = url,
                         .content_type = "application/octet-stream",
                         .body = &body};
    rc = s3_perform(s3, &req);
    if (rc == 0 && sp_s3_xml_find(body.data, body.len, "UploadId", up->id, sizeof(up->id)) < 0) {
        s3_fail(s3, "S3 POST ?uploads %s: no UploadId in the answer", up->key);
        rc = -EBADMSG;
    }
    free(body.data);
    return rc;
}

static int s3_upload_append(struct s3_upload *up, const char *text)
{
    size_t n = strlen(text);
    if (up->complete_len + n + 1 > up->complete_cap) {
        size_t cap = SP_MAX(up->complete_cap * 2, up->complete_len + n + 4096);
        char *p = realloc(up->complete, cap);
        if (p == NULL)
            return -ENOMEM;
        up->complete = p;
        up->complete_cap = cap;
    }
    memcpy(up->complete + up->complete_len, text, n + 1);
    up->complete_len += n;
    return 0;
}

static int s3_upload_part(struct sp_s3 *s3, struct s3_upload *up, uint32_t number, const void *data,
                          size_t len)
{
    char query[S3_UPLOAD_ID_BYTES_MAX * 3 + 64] = "", num[16], url[S3_URL_BYTES_MAX];
    snprintf(num, sizeof(num), "%" PRIu32, number);
    int rc = s3_query_add(s3, query, sizeof(query), "partNumber", num);
    if (rc == 0)
        rc = s3_query_add(s3, query, sizeof(query), "uploadId", up->id);
    if (rc == 0)
        rc = s3_url(s3, url, sizeof(url), up->key, query);
    if (rc < 0)
        return rc;
    struct s3_req req = {.op = "PUT part",
                         .key = up->key,
                         .method = "PUT",
                         .url = url,
                         .send = data,
                         .send_len = len};
    rc = s3_perform(s3, &req);
    if (rc < 0)
        return rc;
    if (req.etag[0] == '\0' || strchr(req.etag, '<') != NULL || strchr(req.etag, '&') != NULL) {
        s3_fail(s3, "S3 PUT part %s: no usable ETag in the answer", up->key);
        return -EBADMSG;
    }
    char line[S3_ETAG_BYTES_MAX + 96];
    snprintf(line, sizeof(line), "<Part><PartNumber>%" PRIu32 "</PartNumber><ETag>%s</ETag></Part>",
             number, req.etag);
    return s3_upload_append(up, line);
}

static int s3_upload_complete(struct sp_s3 *s3, struct s3_upload *up)
{
    char query[S3_UPLOAD_ID_BYTES_MAX * 3 + 16] = "", url[S3_URL_BYTES_MAX];
    int rc = s3_upload_append(up, "</CompleteMultipartUpload>");
    if (rc == 0)
        rc = s3_query_add(s3, query, sizeof(query), "uploadId", up->id);
    if (rc == 0)
        rc = s3_url(s3, url, sizeof(url), up->key, query);
    if (rc < 0)
        return rc;
    struct s3_body body = {.growable = 1, .max = 64 * 1024};
    struct s3_req req = {.op = "POST complete",
                         .key = up->key,
                         .method = "POST",
                         .url = url,
                         .content_type = "application/xml",
                         .send = up->complete,
                         .send_len = up->complete_len,
                         .body = &body};
    rc = s3_perform(s3, &req);
    /* S3 may answer 200 and put the error in the body, once it has started. */
    char code[64];
    if (rc == 0 && sp_s3_xml_find(body.data, body.len, "Code", code, sizeof(code)) == 0) {
        s3_fail(s3, "S3 POST complete %s: HTTP 200 with error %s", up->key, code);
        rc = -EIO;
    }
    free(body.data);
    return rc;
}

/* Best effort: the first error is the one reported, and s3rver lacks this. */
static void s3_upload_abort(struct sp_s3 *s3, struct s3_upload *up)
{
    char saved[SP_S3_ERROR_BYTES_MAX], query[S3_UPLOAD_ID_BYTES_MAX * 3 + 16] = "";
    char url[S3_URL_BYTES_MAX];
    memcpy(saved, s3->error, sizeof(saved));
    if (s3_query_add(s3, query, sizeof(query), "uploadId", up->id) == 0 &&
        s3_url(s3, url, sizeof(url), up->key, query) == 0) {
        struct s3_req req = {.op = "DELETE upload", .key = up->key, .method = "DELETE", .url = url};
        (void)s3_perform(s3, &req);
    }
    memcpy(s3->error, saved, sizeof(saved));
}

int sp_s3_put_multipart(struct sp_s3 *s3, const char *key, const void *data, size_t len)
{
    SP_ASSERT(s3->curl != NULL);
    SP_ASSERT(data != NULL || len == 0);
    size_t part = s3->config.part_bytes;
    size_t parts = len == 0 ? 1 : (len + part - 1) / part;
    if (parts > SP_S3_PARTS_MAX) {
        s3_fail(s3, "S3 PUT %s: %zu bytes need %zu parts of %zu, more than %u", key, len, parts,
                part, SP_S3_PARTS_MAX);
        return -EFBIG;
    }
    struct s3_upload up = {.key = key};
    int rc = s3_upload_begin(s3, &up);
    if (rc < 0)
        return rc;
    rc = s3_upload_append(&up, "<CompleteMultipartUpload>");
    for (size_t i = 0; rc == 0 && i < parts; i++) {
        size_t off = i * part;
        rc = s3_upload_part(s3, &up, (uint32_t)i + 1, (const char *)data + off,
                            SP_MIN(part, len - off));
    }
    if (rc == 0)
        rc = s3_upload_complete(s3, &up);
    if (rc < 0)
        s3_upload_abort(s3, &up);
    free(up.complete);
    return rc;
}
