/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spate's Kafka-compatible endpoint: a single-node broker any Kafka client
 * can produce to and fetch from, on the shard runtime.
 *
 * Shape: one listening socket; every shard accepts on it, so connections
 * spread over the shards, and each connection lives on the shard that
 * accepted it. Each partition is owned by one shard (a hash of topic and
 * partition), which alone opens its log (sp_plog.h); a request for another
 * shard's partition crosses through the rings and its answer comes back
 * the same way. Requests of one connection are answered in order, however
 * long each takes (a produce waiting for its write, a fetch waiting for
 * data).
 *
 * Topics are a registry shared by the shards as immutable snapshots: a
 * change (CreateTopics, auto-creation) builds a new snapshot under a lock,
 * persists it (the `topics` file of the data directory, replaced
 * atomically) and publishes it with one atomic store; readers take the
 * current one without a lock. Old snapshots stay until the broker is freed
 * (changes are rare).
 *
 * Served so far: ApiVersions (with the error-35 fallback), Metadata,
 * CreateTopics, Produce (acks 0, 1, all; batches validated), Fetch (long
 * poll with max wait and min bytes), ListOffsets. Bad input (a malformed,
 * truncated or oversized frame, an unknown API) gets a log line and a
 * closed connection, never a crash, and never holds up other connections.
 *
 * Security, as Kafka's listener modes PLAINTEXT, SSL, SASL_PLAINTEXT and
 * SASL_SSL: TLS (OpenSSL) inside each connection's own io_uring reads and
 * writes; SASL PLAIN or SCRAM-SHA-256 against a users file, nothing but
 * ApiVersions and the SASL APIs served before it succeeded. Idle
 * connections are closed after idle_timeout_ms.
 */
#ifndef SP_BROKER_H
#define SP_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_plog.h"
#include "sp_reactor.h"

/* SASL on the listener (Kafka's SASL_PLAINTEXT, or SASL_SSL with TLS). */
enum sp_broker_sasl {
    SP_BROKER_SASL_NONE = 0,
    SP_BROKER_SASL_PLAIN,         /* RFC 4616 */
    SP_BROKER_SASL_SCRAM_SHA_256, /* RFC 5802 / 7677 */
};

struct sp_broker_config {
    const char *host;                   /* listen address (default 127.0.0.1) */
    uint16_t port;                      /* 0: any free port (sp_broker_port says which) */
    const char *advertised_host;        /* in Metadata (default: host) */
    const char *data_dir;               /* topics and partition logs */
    int32_t node_id;                    /* default 0 */
    bool auto_create_topics;            /* Metadata for a missing topic creates it (default on) */
    int32_t default_partitions;         /* for auto-created topics and num_partitions -1 (1) */
    uint32_t max_request_bytes;         /* a larger frame closes the connection (100 MiB) */
    uint32_t max_connections;           /* more are closed at once (4096) */
    uint32_t max_inflight;              /* requests per connection read ahead of answers (64) */
    int32_t transaction_max_timeout_ms; /* the longest transaction timeout allowed (900000) */
    uint32_t fetch_sessions_max;        /* fetch sessions per shard (1000; 0: none) */
    struct sp_plog_config log;          /* every partition's log settings (dir ignored) */
    uint32_t max_topics;                /* topics in the registry, at most (10000) */
    uint32_t max_partitions;            /* partitions of all topics together (100000) */
    uint32_t metadata_partitions_max;   /* partitions one Metadata answer describes (100000):
                                           topics past it get an error instead */
    /* Security. TLS when both files are set (PEM certificate chain, PEM
     * key); SASL when `sasl` is not NONE, with the users of `users_file`
     * (lines `user:password`). Until a connection authenticated, only
     * ApiVersions, SaslHandshake and SaslAuthenticate are served. */
    const char *tls_cert_file, *tls_key_file; /* default NULL: plaintext */
    enum sp_broker_sasl sasl;                 /* default NONE */
    const char *users_file;                   /* needed with sasl */
    /* A connection with no request in flight that received nothing for this
     * long is closed (Kafka's connections.max.idle.ms; 600000; 0: never). */
    uint32_t idle_timeout_ms;
    /* accept() out of descriptors or memory waits this long before the next
     * try (100). */
    uint32_t accept_backoff_ms;
};

void sp_broker_config_default(struct sp_broker_config *config);

struct sp_broker;

/*
 * Creates the listening socket and loads the topic registry, before the
 * runtime starts. Returns 0 and *out, or -errno with `why` saying what
 * failed.
 */
int sp_broker_create(const struct sp_broker_config *config, unsigned shards, struct sp_broker **out,
                     char *why, size_t why_size);

uint16_t sp_broker_port(const struct sp_broker *broker);

/* On each shard once the runtime is up (its on_start): opens the logs of
 * the partitions it owns and starts accepting. */
void sp_broker_shard_start(struct sp_broker *broker, struct sp_shard *shard);

/* On each shard after the runtime drained (its on_finish): closes its logs. */
void sp_broker_shard_finish(struct sp_broker *broker, struct sp_shard *shard);

/* After the runtime: closes the socket, frees everything. */
void sp_broker_free(struct sp_broker *broker);

/*
 * Creates topic `name` with `partitions` partitions (-1: the configured
 * default), persisted, as CreateTopics would: for a program that embeds
 * the broker (spate run --embedded-broker), between sp_broker_create and
 * the runtime's start (or from any thread while it runs). Returns 0,
 * -EEXIST when the topic is there already (whatever its partitions),
 * -EINVAL for a bad name or count, -ENOSPC past the broker's caps on
 * topics or partitions, -EIO when it cannot be persisted, -ENOMEM.
 */
SP_MUST_CHECK int sp_broker_topic_create(struct sp_broker *broker, const char *name,
                                         int32_t partitions);

#endif /* SP_BROKER_H */
