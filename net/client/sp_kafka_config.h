/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration of the Kafka client, under Kafka's own property names and
 * with the Java client's defaults (Kafka 4.x ProducerConfig/ConsumerConfig),
 * so that a producer.properties or consumer.properties written for the Java
 * client works here unchanged. One struct holds the producer's and the
 * consumer's properties: a program that only produces ignores the consumer
 * part and the other way round.
 *
 * What this is: fixed-size storage (no heap; strings live in bounded char
 * arrays whose limits are below), strict parsing of each value (integers
 * with the Java client's range checks, booleans true/false, durations as
 * integer milliseconds, enumerations by their exact Kafka spelling), a
 * Java .properties file reader, and the cross-field rules the Java client
 * enforces when it is constructed (sp_kafka_config_validate). What it is
 * not: it does not resolve host names, open files other than the one given,
 * or know about SSL/SASL (not supported yet).
 *
 * Where we differ from Java, on purpose:
 *  - an unknown property is an error (Java logs a warning and goes on): a
 *    typo in a property name is the commonest configuration bug, and the
 *    error suggests the nearest known name;
 *  - every value is trimmed of surrounding whitespace, strings included;
 *  - group.id "" means no group (Java keeps "" as a deprecated group name);
 *  - where Java has no range check (session.timeout.ms,
 *    heartbeat.interval.ms, transaction.timeout.ms, the socket setup
 *    timeouts) we reject negative values, and zero where it cannot work;
 *  - message.max.bytes (librdkafka's name) is accepted as an alias of
 *    max.request.size, the Java client's name; max.request.size's default
 *    (1048576) applies;
 *  - linger.ms defaults to 5, Kafka 4.0's default (KIP-1030; 0 before):
 *    a few milliseconds of linger fills batches far better at a negligible
 *    latency cost, which is why Kafka changed it; we follow the current
 *    Java client rather than the older one.
 *
 * Threads: a config is plain memory. Fill it on one thread before the
 * client starts; afterwards it is only read, from any thread.
 */
#ifndef SP_KAFKA_CONFIG_H
#define SP_KAFKA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_common.h"
#include "sp_record.h"

/* Bytes of the bootstrap.servers list, NUL included (at most 1023 characters). */
#define SP_KAFKA_CONFIG_SERVERS_MAX 1024
/* Bytes of client.id, transactional.id and group.id, NUL included. */
#define SP_KAFKA_CONFIG_ID_MAX 256
/* Kafka's limit on group.instance.id (JoinGroupRequest: 249 characters). */
#define SP_KAFKA_CONFIG_INSTANCE_ID_LEN_MAX 249
/* Entries in partition.assignment.strategy (each assignor at most once). */
#define SP_KAFKA_CONFIG_ASSIGNORS_MAX 3
/* The Java producer's limit on in-flight requests for idempotence. */
#define SP_KAFKA_CONFIG_IDEMPOTENT_IN_FLIGHT_MAX 5
/* Longest logical line of a .properties file (after continuations). */
#define SP_KAFKA_CONFIG_LINE_MAX 4096

/* auto.offset.reset. */
enum sp_kafka_offset_reset {
    SP_KAFKA_OFFSET_RESET_LATEST = 0, /* "latest" (default) */
    SP_KAFKA_OFFSET_RESET_EARLIEST,   /* "earliest" */
    SP_KAFKA_OFFSET_RESET_NONE,       /* "none": fail when there is no committed offset */
};

/* isolation.level. */
enum sp_kafka_isolation_level {
    SP_KAFKA_READ_UNCOMMITTED = 0, /* "read_uncommitted" (default) */
    SP_KAFKA_READ_COMMITTED,       /* "read_committed" */
};

/* partition.assignment.strategy entries (short names as librdkafka spells them). */
enum sp_kafka_assignor_id {
    SP_KAFKA_ASSIGNOR_RANGE = 0,          /* "range" */
    SP_KAFKA_ASSIGNOR_ROUNDROBIN,         /* "roundrobin" */
    SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY, /* "cooperative-sticky" */
};

/*
 * partitioner (librdkafka's property; the Java client has partitioner.class
 * whose built-in default is what murmur2_random does here).
 */
enum sp_kafka_partitioner {
    /* Keys by murmur2 (Java-compatible), null keys by the sticky partitioner. */
    SP_KAFKA_PARTITIONER_MURMUR2_RANDOM = 0,
    /* Keys by murmur2; a null key hashes like an empty key (one partition). */
    SP_KAFKA_PARTITIONER_MURMUR2,
};

/*
 * The configuration. Fields are named after the properties (dots become
 * underscores); the comment gives the property's default. Read the fields
 * directly; write them through sp_kafka_config_set() so that values are
 * checked and set_mask is kept.
 */
struct sp_kafka_config {
    /* ---- Common ---- */
    char bootstrap_servers[SP_KAFKA_CONFIG_SERVERS_MAX]; /* "" (required) */
    char client_id[SP_KAFKA_CONFIG_ID_MAX];              /* "" */
    int64_t metadata_max_age_ms;                         /* 300000 */
    int64_t reconnect_backoff_ms;                        /* 50 */
    int64_t reconnect_backoff_max_ms;                    /* 1000 */
    int64_t retry_backoff_ms;                            /* 100 */
    int64_t retry_backoff_max_ms;                        /* 1000 */
    int32_t request_timeout_ms;                          /* 30000 */
    int64_t socket_connection_setup_timeout_ms;          /* 10000 */
    int64_t socket_connection_setup_timeout_max_ms;      /* 30000 */

    /* ---- Producer ---- */
    int32_t acks;                                  /* "all" = -1 (default), 0 or 1 */
    int64_t linger_ms;                             /* 5 */
    int32_t batch_size;                            /* 16384 bytes */
    enum sp_record_codec_id compression_type;      /* none */
    bool enable_idempotence;                       /* true */
    char transactional_id[SP_KAFKA_CONFIG_ID_MAX]; /* "" = none */
    int32_t transaction_timeout_ms;                /* 60000 */
    int32_t max_in_flight_requests_per_connection; /* 5 */
    int32_t retries;                               /* 2147483647 */
    int32_t delivery_timeout_ms;                   /* 120000 */
    int32_t max_request_size;                      /* 1048576 bytes (alias message.max.bytes) */
    enum sp_kafka_partitioner partitioner;         /* murmur2_random */

    /* ---- Consumer ---- */
    char group_id[SP_KAFKA_CONFIG_ID_MAX];          /* "" = no group */
    char group_instance_id[SP_KAFKA_CONFIG_ID_MAX]; /* "" = dynamic membership */
    enum sp_kafka_offset_reset auto_offset_reset;   /* latest */
    enum sp_kafka_isolation_level isolation_level;  /* read_uncommitted */
    int32_t session_timeout_ms;                     /* 45000 */
    int32_t heartbeat_interval_ms;                  /* 3000 */
    int32_t max_poll_interval_ms;                   /* 300000 */
    int32_t max_poll_records;                       /* 500 */
    bool enable_auto_commit;                        /* true (see sp_kafka_config_auto_commit) */
    int32_t auto_commit_interval_ms;                /* 5000 */
    int32_t fetch_min_bytes;                        /* 1 */
    int32_t fetch_max_bytes;                        /* 52428800 */
    int32_t fetch_max_wait_ms;                      /* 500 */
    int32_t max_partition_fetch_bytes;              /* 1048576 */
    /* range,cooperative-sticky: the Java consumer's default since 3.0 */
    enum sp_kafka_assignor_id assignors[SP_KAFKA_CONFIG_ASSIGNORS_MAX];
    unsigned assignor_count;

    /*
     * Which properties were set explicitly (bit i: the i-th property of
     * config.c's table), Java's originals(): a few rules depend on it, e.g.
     * idempotence is quietly turned off by acks=1 unless it was asked for.
     */
    uint64_t set_mask;
};

/* Fills every field with its default; nothing counts as explicitly set. */
void sp_kafka_config_init(struct sp_kafka_config *config);

/*
 * Sets property `key` from its text `value` (trimmed of surrounding
 * whitespace). Returns 0; -ENOENT for an unknown key (err names it and, when
 * a known name is close, suggests it); -EINVAL for a value that does not
 * parse or is out of range (err names the key, the value and what is
 * allowed); on error the config is unchanged. `err` (err_len bytes, always
 * NUL-terminated; may be NULL when err_len is 0) receives the reason.
 */
SP_MUST_CHECK int sp_kafka_config_set(struct sp_kafka_config *config, const char *key,
                                      const char *value, char *err, size_t err_len);

/*
 * Reads a Java .properties file and sets each property in it, in order (a
 * later line wins). The syntax is java.util.Properties.load's: # and !
 * comment lines, blank lines, key=value, key:value or key value, whitespace
 * around the separator, a backslash at the end of a line continues it on the
 * next (whose leading whitespace is dropped), escapes \t \n \r \f \uXXXX and
 * \<any> for that character. Bytes are taken as UTF-8 (Java reads them as
 * ISO-8859-1, which only matters for non-ASCII text outside \u escapes).
 * All or nothing: on error the config is unchanged.
 *
 * Returns 0; -errno when the file cannot be opened or read (-ENOENT,
 * -EACCES, -EIO...); -EINVAL for anything wrong inside it (syntax, an
 * unknown property, an invalid value, a line over SP_KAFKA_CONFIG_LINE_MAX),
 * with err "path:line: reason".
 */
SP_MUST_CHECK int sp_kafka_config_load_file(struct sp_kafka_config *config, const char *path,
                                            char *err, size_t err_len);

/*
 * Checks the rules between properties that the Java client checks when it
 * is constructed, with its messages:
 *  - bootstrap.servers has at least one entry and each is host:port;
 *  - enable.idempotence set explicitly to true needs retries > 0 and
 *    acks=all (left at its default, conflicting settings turn idempotence
 *    off instead: see sp_kafka_config_idempotent);
 *  - idempotence on (by default or explicitly) needs
 *    max.in.flight.requests.per.connection <= 5;
 *  - transactional.id needs idempotence;
 *  - delivery.timeout.ms, when set, >= linger.ms + request.timeout.ms;
 *  - enable.auto.commit set to true needs a group.id;
 *  - with a group.id, heartbeat.interval.ms < session.timeout.ms.
 * Returns 0 or -EINVAL with the first broken rule in err.
 */
SP_MUST_CHECK int sp_kafka_config_validate(const struct sp_kafka_config *config, char *err,
                                           size_t err_len);

/*
 * The index-th entry of bootstrap.servers (empty entries skipped, as Java
 * does): host (without the brackets of an IPv6 literal, NUL-terminated) and
 * port. An entry is host:port or [ipv6]:port, optionally after a
 * "PROTOCOL://" prefix, which is ignored (as Java's Utils.getHost does).
 * Returns 0; -ENOENT past the last entry; -EINVAL when the entry is
 * malformed; -ENAMETOOLONG when the host does not fit host_len bytes.
 */
SP_MUST_CHECK int sp_kafka_config_bootstrap(const struct sp_kafka_config *config, unsigned index,
                                            char *host, size_t host_len, uint16_t *port);

/*
 * Whether the producer is idempotent: enable.idempotence, unless it was
 * left at its default and retries=0 or acks is not all (Java's
 * ProducerConfig turns it off then). Meaningful after validate passed.
 */
bool sp_kafka_config_idempotent(const struct sp_kafka_config *config);

/*
 * The delivery timeout the producer uses: delivery.timeout.ms, raised to
 * linger.ms + request.timeout.ms when it was left at its default (Java's
 * KafkaProducer.configureDeliveryTimeout).
 */
int32_t sp_kafka_config_delivery_timeout_ms(const struct sp_kafka_config *config);

/* Whether the consumer auto-commits: enable.auto.commit and a group.id. */
bool sp_kafka_config_auto_commit(const struct sp_kafka_config *config);

#endif /* SP_KAFKA_CONFIG_H */
