/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One connection from a shard to one Kafka broker, on the shard's io_uring
 * ring: connect, ApiVersions negotiation, then requests and their responses
 * matched by correlation id.
 *
 * The connection owns an output buffer (frames are encoded straight into it
 * and sent in order, one send in flight) and an input buffer (responses are
 * framed in place; a decoded response's strings, bytes and records point into
 * it and are valid only during the response callback, which is what lets a
 * consumer hand record batches on without copying). Kafka answers a
 * connection's requests in order, so a response must answer the oldest
 * request outstanding; anything else is a protocol error.
 *
 * Failure model (as the Java client's NetworkClient): a malformed or
 * unexpected frame, a reset, or a request past request.timeout.ms closes the
 * connection; every outstanding request's callback gets the error once; the
 * connection then reconnects after reconnect.backoff.ms, doubling up to
 * reconnect.backoff.max.ms, with 20% jitter. It never aborts on a peer's
 * behaviour.
 *
 * Thread rules: a connection belongs to one shard and is used only there.
 */
#ifndef SP_KAFKA_CONN_H
#define SP_KAFKA_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sp_io.h"
#include "sp_kafka_frame.h"
#include "sp_rand.h"
#include "sp_reactor.h"

#define SP_KAFKA_HOST_BYTES_MAX 256
#define SP_KAFKA_INFLIGHT_MAX 64 /* requests outstanding on one connection */

struct sp_kafka_conn;

/*
 * A response, or the failure of its request. `err` is 0 with `body` the
 * decoded response (struct sp_kafka_<api>_response, valid during the call
 * only) at `version`; or -ETIMEDOUT, -ECONNRESET (the connection dropped
 * before an answer), -EBADMSG (the answer was malformed), -ECANCELED (the
 * connection was closed by its owner); then `body` is NULL.
 */
typedef void sp_kafka_response_fn(struct sp_kafka_conn *conn, int err, const void *body,
                                  int16_t version, void *ctx);

/* Connection state changes: up (negotiated) or down (with the reason). */
typedef void sp_kafka_conn_state_fn(struct sp_kafka_conn *conn, bool up, int err, void *ctx);

enum sp_kafka_conn_state {
    SP_KAFKA_CONN_IDLE = 0,    /* not connected, no reconnect scheduled */
    SP_KAFKA_CONN_BACKOFF,     /* waiting to reconnect */
    SP_KAFKA_CONN_CONNECTING,  /* TCP connect in flight */
    SP_KAFKA_CONN_NEGOTIATING, /* ApiVersions in flight */
    SP_KAFKA_CONN_READY,
    SP_KAFKA_CONN_CLOSING, /* socket shut down, I/O draining */
};

struct sp_kafka_conn_config {
    const char *client_id;
    uint64_t request_timeout_ns;
    uint64_t connect_timeout_ns;
    uint64_t reconnect_backoff_ns;
    uint64_t reconnect_backoff_max_ns;
    uint32_t send_buffer_bytes;    /* holds the largest request */
    uint32_t receive_buffer_bytes; /* holds the largest response */
    uint32_t arena_bytes;          /* decoding arena for one response */
    bool reconnect;                /* reconnect after a failure (else stay IDLE) */
};

struct sp_kafka_pending {
    int32_t correlation_id;
    int16_t api_key;
    int16_t version;
    uint64_t deadline_ns;
    sp_kafka_response_fn *fn;
    void *ctx;
};

struct sp_kafka_conn {
    struct sp_shard *shard;
    struct sp_kafka_conn_config config;
    char host[SP_KAFKA_HOST_BYTES_MAX];
    uint16_t port;
    int32_t node_id; /* broker id, -1 for a bootstrap address */
    enum sp_kafka_conn_state state;
    int fd;
    int last_error;
    unsigned failures;       /* consecutive, for the backoff */
    unsigned io_outstanding; /* connect, send, recv in flight */
    bool closing_by_owner;   /* sp_kafka_conn_close: no reconnect, -ECANCELED */
    struct sockaddr_storage addr;
    socklen_t addr_len;

    /* Negotiated: the version to use per API key, -1 when none works. */
    int16_t versions[SP_KAFKA_API_KEY_MAX + 1];
    int16_t api_versions_version; /* the ApiVersions version being tried */

    /* Output: frames at [sent, written) go out, one send at a time. */
    uint8_t *out;
    uint32_t out_sent;
    uint32_t out_written;
    uint32_t out_inflight; /* bytes of the send in flight, 0 when none */

    /* Input: bytes at [0, in_len) received, frames consumed from the start. */
    uint8_t *in;
    uint32_t in_len;
    bool recv_inflight;
    struct sp_karena arena;
    uint8_t *arena_mem;

    /* Outstanding requests, oldest first, a ring of SP_KAFKA_INFLIGHT_MAX. */
    struct sp_kafka_pending pending[SP_KAFKA_INFLIGHT_MAX];
    uint32_t pending_head;
    uint32_t pending_count;
    int32_t next_correlation_id;

    struct sp_io_op connect_op;
    struct sp_io_op send_op;
    struct sp_io_op recv_op;
    struct sp_timer timer; /* request time-outs and reconnect back-off */
    struct sp_rand rand;   /* back-off jitter */

    sp_kafka_conn_state_fn *state_fn;
    void *state_ctx;

    /* Statistics. */
    uint64_t requests_sent;
    uint64_t responses_received;
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t reconnects;
};

/* Fills `config` with the Java client's defaults. */
void sp_kafka_conn_config_default(struct sp_kafka_conn_config *config);

/*
 * Prepares a connection to `host`:`port` (numeric address or "localhost")
 * on `shard`; allocates its buffers from the shard's arena. Nothing is sent
 * until sp_kafka_conn_connect. 0, -EINVAL (address) or -ENOMEM.
 */
SP_MUST_CHECK int sp_kafka_conn_init(struct sp_kafka_conn *conn, struct sp_shard *shard,
                                     const struct sp_kafka_conn_config *config, const char *host,
                                     uint16_t port, int32_t node_id,
                                     sp_kafka_conn_state_fn *state_fn, void *ctx);

/* Starts connecting (no-op unless IDLE: a BACKOFF waits for its timer). */
void sp_kafka_conn_connect(struct sp_kafka_conn *conn);

/*
 * Closes the connection: outstanding requests fail with -ECANCELED, no
 * reconnect. Its I/O drains asynchronously; sp_kafka_conn_idle() says when
 * the memory may be released with sp_kafka_conn_deinit.
 */
void sp_kafka_conn_close(struct sp_kafka_conn *conn);
bool sp_kafka_conn_idle(const struct sp_kafka_conn *conn);
void sp_kafka_conn_deinit(struct sp_kafka_conn *conn);

static inline bool sp_kafka_conn_ready(const struct sp_kafka_conn *conn)
{
    return conn->state == SP_KAFKA_CONN_READY;
}

/* The negotiated version of `api_key`, or -1 when the broker has none we speak. */
static inline int16_t sp_kafka_conn_version(const struct sp_kafka_conn *conn, int16_t api_key)
{
    if (api_key < 0 || api_key > SP_KAFKA_API_KEY_MAX)
        return -1;
    return conn->versions[api_key];
}

/*
 * Encodes and queues a request of `api_key` at the negotiated version (or
 * `version` when >= 0) with body `body` (a struct sp_kafka_<api>_request,
 * copied into the output buffer now: it may be freed on return). `fn` runs
 * once with the response or the failure; with `fn` NULL no response is
 * expected (Produce with acks=0). Returns 0; -ENOTCONN when not READY;
 * -ENOTSUP when the broker has no usable version; -ENOBUFS when the output
 * buffer or the in-flight table is full (backpressure: retry after
 * responses); the encoder's error.
 */
SP_MUST_CHECK int sp_kafka_conn_send(struct sp_kafka_conn *conn, int16_t api_key, int16_t version,
                                     const void *body, sp_kafka_response_fn *fn, void *ctx);

/* Requests queued or awaiting a response. */
static inline uint32_t sp_kafka_conn_inflight(const struct sp_kafka_conn *conn)
{
    return conn->pending_count;
}

#endif /* SP_KAFKA_CONN_H */
