/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Kafka broker connection on the shard's ring (see sp_kafka_conn.h).
 *
 * I/O in flight at any time: at most one connect, one send and one recv.
 * `io_outstanding` counts them; a failing connection shuts its socket down,
 * cancels what is in flight and closes the fd only once all three have
 * completed, because the kernel may still write into the buffers until then.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_kafka_conn.h"
#include "sp_log.h"

#define SP_KAFKA_API_VERSIONS_MAX_TRY 3 /* ApiVersions v3: the first flexible one */
#define SP_KAFKA_BACKOFF_JITTER_PCT 20

void sp_kafka_conn_config_default(struct sp_kafka_conn_config *config)
{
    SP_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    config->client_id = "spate";
    config->request_timeout_ns = 30 * SP_NSEC_PER_SEC;    /* request.timeout.ms */
    config->connect_timeout_ns = 10 * SP_NSEC_PER_SEC;    /* socket.connection.setup.timeout.ms */
    config->reconnect_backoff_ns = 50 * SP_NSEC_PER_MSEC; /* reconnect.backoff.ms */
    config->reconnect_backoff_max_ns = 1000 * SP_NSEC_PER_MSEC; /* reconnect.backoff.max.ms */
    config->send_buffer_bytes = 2u << 20; /* two max.request.size (1 MiB) requests */
    config->receive_buffer_bytes = 16u << 20;
    config->arena_bytes = 1u << 20;
    config->reconnect = true;
}

static void conn_fail(struct sp_kafka_conn *conn, int err);
static void conn_timer_fired(struct sp_timer *timer, void *ctx);
static void conn_recv(struct sp_kafka_conn *conn);
static void conn_timer_rearm(struct sp_kafka_conn *conn);
static void conn_negotiate(struct sp_kafka_conn *conn, int16_t version);

/* ---- Set-up ---- */

int sp_kafka_conn_init(struct sp_kafka_conn *conn, struct sp_shard *shard,
                       const struct sp_kafka_conn_config *config, const char *host, uint16_t port,
                       int32_t node_id, sp_kafka_conn_state_fn *state_fn, void *ctx)
{
    SP_ASSERT(conn != NULL);
    SP_ASSERT(shard == sp_shard_current());
    memset(conn, 0, sizeof(*conn));
    if (strlen(host) >= sizeof(conn->host))
        return -EINVAL;
    int ret = sp_sockaddr_parse(host, port, &conn->addr, &conn->addr_len);
    if (ret < 0)
        return ret;
    conn->shard = shard;
    conn->config = *config;
    memcpy(conn->host, host, strlen(host) + 1);
    conn->port = port;
    conn->node_id = node_id;
    conn->fd = -1;
    conn->state_fn = state_fn;
    conn->state_ctx = ctx;
    conn->next_correlation_id = 1;
    for (unsigned i = 0; i < SP_ARRAY_LEN(conn->versions); i++)
        conn->versions[i] = -1;
    sp_rand_seed(&conn->rand, sp_now_ns() ^ ((uint64_t)port << 32) ^ (uint64_t)(uintptr_t)conn);
    conn->out = sp_arena_alloc(&shard->arena, config->send_buffer_bytes);
    conn->in = sp_arena_alloc(&shard->arena, config->receive_buffer_bytes);
    conn->arena_mem = sp_arena_alloc(&shard->arena, config->arena_bytes);
    if (conn->out == NULL || conn->in == NULL || conn->arena_mem == NULL) {
        sp_kafka_conn_deinit(conn);
        return -ENOMEM;
    }
    sp_karena_init(&conn->arena, conn->arena_mem, config->arena_bytes);
    sp_timer_init(&conn->timer, conn_timer_fired, conn);
    return 0;
}

void sp_kafka_conn_deinit(struct sp_kafka_conn *conn)
{
    SP_ASSERT(conn != NULL);
    SP_ASSERT(sp_kafka_conn_idle(conn));
    sp_shard_timer_cancel(conn->shard, &conn->timer);
    sp_arena_free(&conn->shard->arena, conn->out);
    sp_arena_free(&conn->shard->arena, conn->in);
    sp_arena_free(&conn->shard->arena, conn->arena_mem);
    conn->out = conn->in = conn->arena_mem = NULL;
}

bool sp_kafka_conn_idle(const struct sp_kafka_conn *conn)
{
    return conn->state == SP_KAFKA_CONN_IDLE || conn->state == SP_KAFKA_CONN_BACKOFF;
}

/* ---- Timer: connect and request time-outs, reconnect back-off ---- */

static void conn_timer_fired(struct sp_timer *timer, void *ctx)
{
    struct sp_kafka_conn *conn = ctx;
    (void)timer;
    uint64_t now = sp_now_ns();
    switch (conn->state) {
    case SP_KAFKA_CONN_BACKOFF:
        conn->state = SP_KAFKA_CONN_IDLE;
        sp_kafka_conn_connect(conn);
        return;
    case SP_KAFKA_CONN_CONNECTING:
        conn_fail(conn, -ETIMEDOUT);
        return;
    case SP_KAFKA_CONN_NEGOTIATING:
    case SP_KAFKA_CONN_READY:
        if (conn->pending_count > 0 && conn->pending[conn->pending_head].deadline_ns <= now) {
            sp_warn("kafka %s:%u: request %d timed out", conn->host, conn->port,
                    conn->pending[conn->pending_head].api_key);
            conn_fail(conn, -ETIMEDOUT);
            return;
        }
        conn_timer_rearm(conn);
        return;
    default:
        return;
    }
}

static void conn_timer_rearm(struct sp_kafka_conn *conn)
{
    if (conn->pending_count == 0) {
        sp_shard_timer_cancel(conn->shard, &conn->timer);
        return;
    }
    /* One timeout for all requests: the oldest is always the first due. */
    sp_shard_timer_arm(conn->shard, &conn->timer, conn->pending[conn->pending_head].deadline_ns);
}

/* ---- Connecting ---- */

static void conn_connected(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_kafka_conn *conn = ctx;
    (void)op;
    conn->io_outstanding--;
    if (conn->state != SP_KAFKA_CONN_CONNECTING) {
        conn_fail(conn, conn->last_error); /* finishes a close under way */
        return;
    }
    if (res < 0) {
        conn_fail(conn, res);
        return;
    }
    conn->state = SP_KAFKA_CONN_NEGOTIATING;
    conn_recv(conn);
    conn_negotiate(conn, SP_KAFKA_API_VERSIONS_MAX_TRY);
}

void sp_kafka_conn_connect(struct sp_kafka_conn *conn)
{
    SP_ASSERT(conn->shard == sp_shard_current());
    /* From BACKOFF only the timer reconnects: callers must not skip the wait. */
    if (conn->state != SP_KAFKA_CONN_IDLE)
        return;
    conn->closing_by_owner = false;
    int fd = sp_tcp_socket(conn->addr.ss_family);
    if (fd < 0) {
        conn->state = SP_KAFKA_CONN_CLOSING;
        conn_fail(conn, fd);
        return;
    }
    conn->fd = fd;
    conn->state = SP_KAFKA_CONN_CONNECTING;
    conn->in_len = 0;
    conn->out_sent = conn->out_written = 0;
    int ret = sp_io_connect(conn->shard, &conn->connect_op, fd, (struct sockaddr *)&conn->addr,
                            conn->addr_len, conn_connected, conn);
    if (ret < 0) {
        conn_fail(conn, ret);
        return;
    }
    conn->io_outstanding++;
    sp_shard_timer_arm(conn->shard, &conn->timer, sp_now_ns() + conn->config.connect_timeout_ns);
}

/* ---- Failing and closing ---- */

static void fail_pending(struct sp_kafka_conn *conn, int err)
{
    while (conn->pending_count > 0) {
        struct sp_kafka_pending p = conn->pending[conn->pending_head];
        conn->pending_head = (conn->pending_head + 1) % SP_KAFKA_INFLIGHT_MAX;
        conn->pending_count--;
        if (p.fn != NULL)
            p.fn(conn, err, NULL, p.version, p.ctx);
    }
}

static uint64_t backoff_ns(struct sp_kafka_conn *conn)
{
    uint64_t ns = conn->config.reconnect_backoff_ns;
    for (unsigned i = 1; i < conn->failures && ns < conn->config.reconnect_backoff_max_ns; i++)
        ns *= 2;
    ns = SP_MIN(ns, conn->config.reconnect_backoff_max_ns);
    /* +-20%, so that many clients do not reconnect in step. */
    uint64_t jitter = ns * SP_KAFKA_BACKOFF_JITTER_PCT / 100;
    return ns - jitter + (jitter > 0 ? sp_rand_below(&conn->rand, 2 * jitter + 1) : 0);
}

/*
 * Takes the connection down: shuts the socket, fails every request once,
 * cancels the I/O in flight, and when that has drained closes the fd and
 * schedules the reconnect. Called again by each draining completion.
 */
static void conn_fail(struct sp_kafka_conn *conn, int err)
{
    bool was_up = conn->state == SP_KAFKA_CONN_READY;
    if (conn->state != SP_KAFKA_CONN_CLOSING) {
        if (conn->state == SP_KAFKA_CONN_IDLE || conn->state == SP_KAFKA_CONN_BACKOFF)
            return;
        conn->state = SP_KAFKA_CONN_CLOSING;
        conn->last_error = err;
        if (!conn->closing_by_owner)
            sp_debug("kafka %s:%u: connection down: %s", conn->host, conn->port,
                     strerror(err < 0 ? -err : EIO));
        if (conn->fd >= 0)
            shutdown(conn->fd, SHUT_RDWR);
        if (conn->io_outstanding > 0) {
            /* shutdown() ends a recv; a connect in progress needs the cancel. */
            int a = sp_io_cancel(conn->shard, &conn->connect_op);
            int b = sp_io_cancel(conn->shard, &conn->recv_op);
            if (a < 0 || b < 0)
                sp_debug("kafka %s:%u: no room to cancel: waiting for the socket", conn->host,
                         conn->port);
        }
        sp_shard_timer_cancel(conn->shard, &conn->timer);
        for (unsigned i = 0; i < SP_ARRAY_LEN(conn->versions); i++)
            conn->versions[i] = -1;
        fail_pending(conn, conn->closing_by_owner ? -ECANCELED : err);
        if (was_up && conn->state_fn != NULL && !conn->closing_by_owner)
            conn->state_fn(conn, false, err, conn->state_ctx);
    }
    if (conn->io_outstanding > 0 || conn->state != SP_KAFKA_CONN_CLOSING)
        return;
    if (conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
    conn->in_len = 0;
    conn->out_sent = conn->out_written = conn->out_inflight = 0;
    conn->recv_inflight = false;
    if (conn->closing_by_owner || !conn->config.reconnect) {
        conn->state = SP_KAFKA_CONN_IDLE;
        if (!was_up && conn->state_fn != NULL && !conn->closing_by_owner)
            conn->state_fn(conn, false, conn->last_error, conn->state_ctx);
        return;
    }
    conn->failures++;
    conn->reconnects++;
    conn->state = SP_KAFKA_CONN_BACKOFF;
    sp_shard_timer_arm(conn->shard, &conn->timer, sp_now_ns() + backoff_ns(conn));
    if (!was_up && conn->state_fn != NULL)
        conn->state_fn(conn, false, conn->last_error, conn->state_ctx);
}

void sp_kafka_conn_close(struct sp_kafka_conn *conn)
{
    SP_ASSERT(conn->shard == sp_shard_current());
    conn->closing_by_owner = true;
    if (conn->state == SP_KAFKA_CONN_BACKOFF) {
        sp_shard_timer_cancel(conn->shard, &conn->timer);
        conn->state = SP_KAFKA_CONN_IDLE;
        return;
    }
    conn_fail(conn, -ECANCELED);
}

/* ---- Sending ---- */

static void conn_sent(struct sp_io_op *op, int res, void *ctx);

static void kick_send(struct sp_kafka_conn *conn)
{
    if (conn->out_inflight > 0 || conn->out_sent == conn->out_written)
        return;
    uint32_t len = conn->out_written - conn->out_sent;
    int ret = sp_io_send(conn->shard, &conn->send_op, conn->fd, conn->out + conn->out_sent, len,
                         conn_sent, conn);
    if (ret < 0) {
        conn_fail(conn, ret);
        return;
    }
    conn->io_outstanding++;
    conn->out_inflight = len;
}

static void conn_sent(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_kafka_conn *conn = ctx;
    (void)op;
    conn->io_outstanding--;
    conn->out_inflight = 0;
    if (conn->state == SP_KAFKA_CONN_CLOSING) {
        conn_fail(conn, conn->last_error);
        return;
    }
    if (res <= 0) {
        conn_fail(conn, res < 0 ? res : -EPIPE);
        return;
    }
    conn->out_sent += (uint32_t)res;
    conn->bytes_sent += (uint64_t)res;
    if (conn->out_sent == conn->out_written)
        conn->out_sent = conn->out_written = 0;
    kick_send(conn);
}

/* Room for `bytes` more in the output buffer, moving unsent bytes down if free to. */
static bool out_room(struct sp_kafka_conn *conn, size_t bytes)
{
    if (conn->config.send_buffer_bytes - conn->out_written >= bytes)
        return true;
    if (conn->out_inflight > 0 || conn->out_sent == 0)
        return false; /* the kernel may be reading these bytes */
    uint32_t unsent = conn->out_written - conn->out_sent;
    memmove(conn->out, conn->out + conn->out_sent, unsent);
    conn->out_sent = 0;
    conn->out_written = unsent;
    return conn->config.send_buffer_bytes - conn->out_written >= bytes;
}

static int conn_queue(struct sp_kafka_conn *conn, int16_t api_key, int16_t version,
                      const void *body, sp_kafka_response_fn *fn, void *ctx)
{
    if (fn != NULL && conn->pending_count == SP_KAFKA_INFLIGHT_MAX)
        return -ENOBUFS;
    struct sp_kafka_request_header h;
    sp_kafka_request_header_init(&h);
    h.request_api_key = api_key;
    h.request_api_version = version;
    h.correlation_id = conn->next_correlation_id;
    h.client_id = sp_kstr_of(conn->config.client_id);
    size_t size = sp_kafka_request_frame_size(&h, body);
    if (size > conn->config.send_buffer_bytes)
        return -EMSGSIZE;
    if (!out_room(conn, size))
        return -ENOBUFS;
    struct sp_kwriter w;
    sp_kwriter_init(&w, conn->out + conn->out_written, size);
    int ret = sp_kafka_request_encode(&w, &h, body);
    if (ret < 0) {
        sp_warn("kafka %s:%u: cannot encode request %d v%d: %s at %s", conn->host, conn->port,
                api_key, version, strerror(-ret), w.error_field ? w.error_field : "?");
        return ret;
    }
    conn->out_written += (uint32_t)size;
    conn->next_correlation_id =
        conn->next_correlation_id == INT32_MAX ? 1 : conn->next_correlation_id + 1;
    conn->requests_sent++;
    if (fn != NULL) {
        uint32_t slot = (conn->pending_head + conn->pending_count) % SP_KAFKA_INFLIGHT_MAX;
        conn->pending[slot] = (struct sp_kafka_pending){
            .correlation_id = h.correlation_id,
            .api_key = api_key,
            .version = version,
            .deadline_ns = sp_now_ns() + conn->config.request_timeout_ns,
            .fn = fn,
            .ctx = ctx,
        };
        if (conn->pending_count++ == 0)
            conn_timer_rearm(conn);
    }
    kick_send(conn);
    return 0;
}

int sp_kafka_conn_send(struct sp_kafka_conn *conn, int16_t api_key, int16_t version,
                       const void *body, sp_kafka_response_fn *fn, void *ctx)
{
    SP_ASSERT(conn->shard == sp_shard_current());
    if (conn->state != SP_KAFKA_CONN_READY)
        return -ENOTCONN;
    int16_t negotiated = sp_kafka_conn_version(conn, api_key);
    if (version < 0)
        version = negotiated;
    if (version < 0 || negotiated < 0 || version > negotiated)
        return -ENOTSUP;
    return conn_queue(conn, api_key, version, body, fn, ctx);
}

/* ---- Negotiation ---- */

static void negotiated(struct sp_kafka_conn *conn, const struct sp_kafka_api_versions_response *r)
{
    for (int32_t i = 0; i < r->api_keys_count; i++) {
        const struct sp_kafka_api_versions_response_api_version *k = &r->api_keys[i];
        const struct sp_kafka_api *api = sp_kafka_api_find(k->api_key);
        if (api == NULL)
            continue;
        int16_t hi = SP_MIN(api->version_max, k->max_version);
        int16_t lo = SP_MAX(api->version_min, k->min_version);
        conn->versions[api->key] = hi >= lo ? hi : -1;
    }
    conn->state = SP_KAFKA_CONN_READY;
    conn->failures = 0;
    sp_debug("kafka %s:%u: ready (node %d)", conn->host, conn->port, conn->node_id);
    if (conn->state_fn != NULL)
        conn->state_fn(conn, true, 0, conn->state_ctx);
}

static void api_versions_done(struct sp_kafka_conn *conn, int err, const void *body,
                              int16_t version, void *ctx)
{
    (void)ctx;
    if (err < 0)
        return; /* the connection is already failing */
    const struct sp_kafka_api_versions_response *r = body;
    int16_t asked = conn->api_versions_version;
    (void)version; /* the error-35 answer decodes at v0 whatever was asked */
    if (r->error_code == SP_KAFKA_ERROR_UNSUPPORTED_VERSION && asked > 0) {
        /* The broker's own range when its answer says it, else one lower. */
        int16_t retry = (int16_t)(asked - 1);
        for (int32_t i = 0; i < r->api_keys_count; i++)
            if (r->api_keys[i].api_key == SP_KAFKA_API_VERSIONS_KEY)
                retry = SP_MIN(r->api_keys[i].max_version, retry);
        conn_negotiate(conn, retry < 0 ? 0 : retry);
        return;
    }
    if (r->error_code != 0) {
        sp_warn("kafka %s:%u: ApiVersions error %d", conn->host, conn->port, r->error_code);
        conn_fail(conn, -EPROTO);
        return;
    }
    negotiated(conn, r);
}

static void conn_negotiate(struct sp_kafka_conn *conn, int16_t version)
{
    struct sp_kafka_api_versions_request req;
    sp_kafka_api_versions_request_init(&req);
    req.client_software_name = SP_KSTR("spate");
    req.client_software_version = SP_KSTR("0.1.0");
    conn->api_versions_version = version;
    int ret = conn_queue(conn, SP_KAFKA_API_VERSIONS_KEY, version, &req, api_versions_done, NULL);
    if (ret < 0)
        conn_fail(conn, ret);
}

/* ---- Receiving ---- */

static void conn_received(struct sp_io_op *op, int res, void *ctx);

static void conn_recv(struct sp_kafka_conn *conn)
{
    if (conn->recv_inflight)
        return;
    uint32_t room = conn->config.receive_buffer_bytes - conn->in_len;
    if (room == 0) {
        /* A frame larger than the buffer: nothing can ever complete it. */
        conn_fail(conn, -EMSGSIZE);
        return;
    }
    int ret = sp_io_recv(conn->shard, &conn->recv_op, conn->fd, conn->in + conn->in_len, room,
                         conn_received, conn);
    if (ret < 0) {
        conn_fail(conn, ret);
        return;
    }
    conn->io_outstanding++;
    conn->recv_inflight = true;
}

/* Handles one whole frame; false when the connection failed meanwhile. */
static bool handle_frame(struct sp_kafka_conn *conn, const uint8_t *payload, size_t len)
{
    if (len < 4 || conn->pending_count == 0) {
        sp_warn("kafka %s:%u: unexpected frame of %zu bytes", conn->host, conn->port, len);
        conn_fail(conn, -EBADMSG);
        return false;
    }
    struct sp_kafka_pending p = conn->pending[conn->pending_head];
    if ((int32_t)sp_kload32(payload) != p.correlation_id) {
        sp_warn("kafka %s:%u: answer to correlation id %d, expected %d", conn->host, conn->port,
                (int32_t)sp_kload32(payload), p.correlation_id);
        conn_fail(conn, -EBADMSG);
        return false;
    }
    conn->pending_head = (conn->pending_head + 1) % SP_KAFKA_INFLIGHT_MAX;
    conn->pending_count--;
    conn->responses_received++;
    conn_timer_rearm(conn);

    sp_karena_reset(&conn->arena);
    int32_t correlation;
    void *body;
    int16_t version;
    const char *field;
    int ret = sp_kafka_response_decode(payload, len, p.api_key, p.version, &conn->arena,
                                       &correlation, &body, &version, &field);
    if (ret < 0) {
        sp_warn("kafka %s:%u: malformed response to api %d v%d: %s at %s", conn->host, conn->port,
                p.api_key, p.version, strerror(-ret), field ? field : "?");
        if (p.fn != NULL)
            p.fn(conn, -EBADMSG, NULL, p.version, p.ctx);
        conn_fail(conn, -EBADMSG);
        return false;
    }
    if (p.fn != NULL)
        p.fn(conn, 0, body, version, p.ctx);
    return conn->state == SP_KAFKA_CONN_READY || conn->state == SP_KAFKA_CONN_NEGOTIATING;
}

static void conn_received(struct sp_io_op *op, int res, void *ctx)
{
    struct sp_kafka_conn *conn = ctx;
    (void)op;
    conn->io_outstanding--;
    conn->recv_inflight = false;
    if (conn->state == SP_KAFKA_CONN_CLOSING) {
        conn_fail(conn, conn->last_error);
        return;
    }
    if (res <= 0) {
        conn_fail(conn, res < 0 ? res : -ECONNRESET);
        return;
    }
    conn->in_len += (uint32_t)res;
    conn->bytes_received += (uint64_t)res;
    uint32_t consumed = 0;
    for (;;) {
        size_t frame = 0;
        int ret = sp_kafka_frame_check(conn->in + consumed, conn->in_len - consumed,
                                       conn->config.receive_buffer_bytes, &frame);
        if (ret < 0) {
            sp_warn("kafka %s:%u: bad frame size", conn->host, conn->port);
            conn_fail(conn, -EBADMSG);
            return;
        }
        if (ret == 0)
            break;
        if (!handle_frame(conn, conn->in + consumed + 4, frame - 4))
            return;
        consumed += (uint32_t)frame;
    }
    if (consumed > 0) {
        memmove(conn->in, conn->in + consumed, conn->in_len - consumed);
        conn->in_len -= consumed;
    }
    conn_recv(conn);
}
