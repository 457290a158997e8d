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
 */
#ifndef SP_BROKER_H
#define SP_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_plog.h"
#include "sp_reactor.h"

struct sp_broker_config {
    const char *host;            /* listen address (default 127.0.0.1) */
    uint16_t port;               /* 0: any free port (sp_broker_port says which) */
    const char *advertised_host; /* in Metadata (default: host) */
    const char *data_dir;        /* topics and partition logs */
    int32_t node_id;             /* default 0 */
    bool auto_create_topics;     /* Metadata for a missing topic creates it (default on) */
    int32_t default_partitions;  /* for auto-created topics and num_partitions -1 (1) */
    uint32_t max_request_bytes;  /* a larger frame closes the connection (100 MiB) */
    uint32_t max_connections;    /* more are closed at once (4096) */
    uint32_t max_inflight;       /* requests per connection read ahead of answers (64) */
    struct sp_plog_config log;   /* every partition's log settings (dir ignored) */
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

#endif /* SP_BROKER_H */
