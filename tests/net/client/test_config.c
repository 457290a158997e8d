/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka client's configuration: every property's default (the Java
 * client's), parsing of each kind of value (integers with their ranges,
 * booleans, enumerations, bounded strings, the bootstrap list, the
 * assignor list) and the messages for bad ones, the unknown-property
 * message with its suggestion, Java .properties files (comments,
 * separators, continuations, escapes, line endings, errors with path and
 * line, all-or-nothing loading) written to temporary files, the
 * cross-field rules of validate and the effective values that depend on
 * what was set explicitly.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_kafka_config.h"

static char err[512];

/* Sets a property that must be accepted, printing the reason if it is not. */
static void set_ok(struct sp_kafka_config *c, const char *key, const char *value)
{
    int rc = sp_kafka_config_set(c, key, value, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s=%s: %d %s", key, value, rc, err);
    assert_string_equal(err, "");
}

/* Sets a property that must be refused with -EINVAL and leave the config as it was. */
static void set_bad(struct sp_kafka_config *c, const char *key, const char *value)
{
    struct sp_kafka_config before = *c;
    int rc = sp_kafka_config_set(c, key, value, err, sizeof(err));
    if (rc != -EINVAL)
        fail_msg("%s=%s: expected -EINVAL, got %d", key, value, rc);
    assert_memory_equal(&before, c, sizeof(before));
    assert_non_null(strstr(err, key));
}

static void init_with_servers(struct sp_kafka_config *c)
{
    sp_kafka_config_init(c);
    set_ok(c, "bootstrap.servers", "localhost:9092");
}

/* ---- Defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    memset(&c, 0xA5, sizeof(c));
    sp_kafka_config_init(&c);
    assert_string_equal(c.bootstrap_servers, "");
    assert_string_equal(c.client_id, "");
    assert_int_equal(c.metadata_max_age_ms, 300000);
    assert_int_equal(c.reconnect_backoff_ms, 50);
    assert_int_equal(c.reconnect_backoff_max_ms, 1000);
    assert_int_equal(c.retry_backoff_ms, 100);
    assert_int_equal(c.retry_backoff_max_ms, 1000);
    assert_int_equal(c.request_timeout_ms, 30000);
    assert_int_equal(c.socket_connection_setup_timeout_ms, 10000);
    assert_int_equal(c.socket_connection_setup_timeout_max_ms, 30000);

    assert_int_equal(c.acks, -1);
    assert_int_equal(c.linger_ms, 5);
    assert_int_equal(c.batch_size, 16384);
    assert_int_equal(c.compression_type, SP_RECORD_CODEC_NONE);
    assert_true(c.enable_idempotence);
    assert_string_equal(c.transactional_id, "");
    assert_int_equal(c.transaction_timeout_ms, 60000);
    assert_int_equal(c.max_in_flight_requests_per_connection, 5);
    assert_int_equal(c.retries, INT32_MAX);
    assert_int_equal(c.delivery_timeout_ms, 120000);
    assert_int_equal(c.max_request_size, 1048576);
    assert_int_equal(c.partitioner, SP_KAFKA_PARTITIONER_MURMUR2_RANDOM);

    assert_string_equal(c.group_id, "");
    assert_string_equal(c.group_instance_id, "");
    assert_int_equal(c.auto_offset_reset, SP_KAFKA_OFFSET_RESET_LATEST);
    assert_int_equal(c.isolation_level, SP_KAFKA_READ_UNCOMMITTED);
    assert_int_equal(c.session_timeout_ms, 45000);
    assert_int_equal(c.heartbeat_interval_ms, 3000);
    assert_int_equal(c.max_poll_interval_ms, 300000);
    assert_int_equal(c.max_poll_records, 500);
    assert_true(c.enable_auto_commit);
    assert_int_equal(c.auto_commit_interval_ms, 5000);
    assert_int_equal(c.fetch_min_bytes, 1);
    assert_int_equal(c.fetch_max_bytes, 52428800);
    assert_int_equal(c.fetch_max_wait_ms, 500);
    assert_int_equal(c.max_partition_fetch_bytes, 1048576);
    assert_int_equal(c.assignor_count, 2);
    assert_int_equal(c.assignors[0], SP_KAFKA_ASSIGNOR_RANGE);
    assert_int_equal(c.assignors[1], SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY);
    assert_int_equal(c.set_mask, 0);

    /* Effective values of the defaults. */
    assert_true(sp_kafka_config_idempotent(&c));
    assert_int_equal(sp_kafka_config_delivery_timeout_ms(&c), 120000);
    assert_false(sp_kafka_config_auto_commit(&c)); /* no group */
}

/* ---- Values of each kind ---- */

static void test_integers(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "linger.ms", "100");
    assert_int_equal(c.linger_ms, 100);
    set_ok(&c, "linger.ms", "  42\t");
    assert_int_equal(c.linger_ms, 42);
    set_ok(&c, "linger.ms", "+7");
    assert_int_equal(c.linger_ms, 7);
    set_ok(&c, "linger.ms", "0");
    assert_int_equal(c.linger_ms, 0);
    set_ok(&c, "linger.ms", "9223372036854775807");
    assert_int_equal(c.linger_ms, INT64_MAX);
    set_ok(&c, "batch.size", "2147483647");
    assert_int_equal(c.batch_size, INT32_MAX);
    set_ok(&c, "retries", "0");
    assert_int_equal(c.retries, 0);
    set_ok(&c, "max.poll.records", "1");
    assert_int_equal(c.max_poll_records, 1);
    set_ok(&c, "session.timeout.ms", "6000");
    set_ok(&c, "heartbeat.interval.ms", "2000");
    set_ok(&c, "max.poll.interval.ms", "600000");
    set_ok(&c, "auto.commit.interval.ms", "0");
    set_ok(&c, "fetch.min.bytes", "1024");
    set_ok(&c, "fetch.max.bytes", "1048576");
    set_ok(&c, "fetch.max.wait.ms", "100");
    set_ok(&c, "max.partition.fetch.bytes", "65536");
    set_ok(&c, "transaction.timeout.ms", "900000");
    set_ok(&c, "delivery.timeout.ms", "60000");
    set_ok(&c, "request.timeout.ms", "20000");
    set_ok(&c, "metadata.max.age.ms", "1000");
    set_ok(&c, "reconnect.backoff.ms", "10");
    set_ok(&c, "reconnect.backoff.max.ms", "10000");
    set_ok(&c, "retry.backoff.ms", "250");
    set_ok(&c, "retry.backoff.max.ms", "2000");
    set_ok(&c, "socket.connection.setup.timeout.ms", "5000");
    set_ok(&c, "socket.connection.setup.timeout.max.ms", "60000");
    assert_int_equal(c.session_timeout_ms, 6000);
    assert_int_equal(c.heartbeat_interval_ms, 2000);
    assert_int_equal(c.max_poll_interval_ms, 600000);
    assert_int_equal(c.auto_commit_interval_ms, 0);
    assert_int_equal(c.fetch_min_bytes, 1024);
    assert_int_equal(c.fetch_max_bytes, 1048576);
    assert_int_equal(c.fetch_max_wait_ms, 100);
    assert_int_equal(c.max_partition_fetch_bytes, 65536);
    assert_int_equal(c.transaction_timeout_ms, 900000);
    assert_int_equal(c.delivery_timeout_ms, 60000);
    assert_int_equal(c.request_timeout_ms, 20000);
    assert_int_equal(c.metadata_max_age_ms, 1000);
    assert_int_equal(c.reconnect_backoff_ms, 10);
    assert_int_equal(c.reconnect_backoff_max_ms, 10000);
    assert_int_equal(c.retry_backoff_ms, 250);
    assert_int_equal(c.retry_backoff_max_ms, 2000);
    assert_int_equal(c.socket_connection_setup_timeout_ms, 5000);
    assert_int_equal(c.socket_connection_setup_timeout_max_ms, 60000);

    set_bad(&c, "linger.ms", "abc");
    assert_string_equal(
        err, "invalid value 'abc' for linger.ms: expected an integer in [0, 9223372036854775807]");
    set_bad(&c, "linger.ms", "-1");
    set_bad(&c, "linger.ms", "");
    set_bad(&c, "linger.ms", "-");
    set_bad(&c, "linger.ms", "1e3");
    set_bad(&c, "linger.ms", "0x10");
    set_bad(&c, "linger.ms", "10ms");
    set_bad(&c, "linger.ms", "1 0");
    set_bad(&c, "linger.ms", "1_000");
    set_bad(&c, "linger.ms", "1.5");
    set_bad(&c, "linger.ms", "9223372036854775808");
    set_bad(&c, "linger.ms", "99999999999999999999999");
    set_bad(&c, "batch.size", "2147483648");
    assert_string_equal(
        err, "invalid value '2147483648' for batch.size: expected an integer in [0, 2147483647]");
    set_bad(&c, "batch.size", "-1");
    /* Messages quote 64 bytes of a long value, then "...". */
    char digits[200];
    memset(digits, '9', sizeof(digits) - 1);
    digits[sizeof(digits) - 1] = '\0';
    set_bad(&c, "batch.size", digits);
    assert_string_equal(err, "invalid value '9999999999999999999999999999999999999999999999999999"
                             "999999999999...' for batch.size: expected an integer in [0, "
                             "2147483647]");
    set_bad(&c, "max.in.flight.requests.per.connection", "0");
    set_bad(&c, "max.poll.records", "0");
    set_bad(&c, "max.poll.interval.ms", "0");
    set_bad(&c, "session.timeout.ms", "0");
    set_bad(&c, "heartbeat.interval.ms", "-5");
    set_bad(&c, "transaction.timeout.ms", "0");
    set_bad(&c, "retries", "-1");
    set_bad(&c, "request.timeout.ms", "-1");
    set_bad(&c, "socket.connection.setup.timeout.ms", "-1");
}

static void test_booleans(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "enable.idempotence", "false");
    assert_false(c.enable_idempotence);
    set_ok(&c, "enable.idempotence", "true");
    assert_true(c.enable_idempotence);
    /* Java's ConfigDef ignores case. */
    set_ok(&c, "enable.auto.commit", "FALSE");
    assert_false(c.enable_auto_commit);
    set_ok(&c, "enable.auto.commit", " True ");
    assert_true(c.enable_auto_commit);
    set_bad(&c, "enable.auto.commit", "yes");
    assert_string_equal(err, "invalid value 'yes' for enable.auto.commit: expected true or false");
    set_bad(&c, "enable.auto.commit", "1");
    set_bad(&c, "enable.auto.commit", "");
    set_bad(&c, "enable.auto.commit", "truee");
    set_bad(&c, "enable.idempotence", "t");
}

static void test_enums(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "acks", "0");
    assert_int_equal(c.acks, 0);
    set_ok(&c, "acks", "1");
    assert_int_equal(c.acks, 1);
    set_ok(&c, "acks", "-1");
    assert_int_equal(c.acks, -1);
    set_ok(&c, "acks", "0");
    set_ok(&c, "acks", "all");
    assert_int_equal(c.acks, -1);
    set_bad(&c, "acks", "2");
    assert_string_equal(err, "invalid value '2' for acks: expected one of all, -1, 0, 1");
    set_bad(&c, "acks", "ALL");
    set_bad(&c, "acks", "");

    static const struct {
        const char *name;
        enum sp_record_codec_id id;
    } codecs[] = {{"gzip", SP_RECORD_CODEC_GZIP},
                  {"snappy", SP_RECORD_CODEC_SNAPPY},
                  {"lz4", SP_RECORD_CODEC_LZ4},
                  {"zstd", SP_RECORD_CODEC_ZSTD},
                  {"none", SP_RECORD_CODEC_NONE}};
    for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
        set_ok(&c, "compression.type", codecs[i].name);
        assert_int_equal(c.compression_type, codecs[i].id);
    }
    set_bad(&c, "compression.type", "brotli");
    assert_string_equal(err, "invalid value 'brotli' for compression.type: expected one of none, "
                             "gzip, snappy, lz4, zstd");
    set_bad(&c, "compression.type", "GZIP");

    set_ok(&c, "auto.offset.reset", "earliest");
    assert_int_equal(c.auto_offset_reset, SP_KAFKA_OFFSET_RESET_EARLIEST);
    set_ok(&c, "auto.offset.reset", "none");
    assert_int_equal(c.auto_offset_reset, SP_KAFKA_OFFSET_RESET_NONE);
    set_ok(&c, "auto.offset.reset", "latest");
    assert_int_equal(c.auto_offset_reset, SP_KAFKA_OFFSET_RESET_LATEST);
    set_bad(&c, "auto.offset.reset", "smallest");
    assert_string_equal(
        err, "invalid value 'smallest' for auto.offset.reset: expected one of earliest, latest, "
             "none");

    set_ok(&c, "isolation.level", "read_committed");
    assert_int_equal(c.isolation_level, SP_KAFKA_READ_COMMITTED);
    set_ok(&c, "isolation.level", "read_uncommitted");
    assert_int_equal(c.isolation_level, SP_KAFKA_READ_UNCOMMITTED);
    set_bad(&c, "isolation.level", "read-committed");

    set_ok(&c, "partitioner", "murmur2");
    assert_int_equal(c.partitioner, SP_KAFKA_PARTITIONER_MURMUR2);
    set_ok(&c, "partitioner", "murmur2_random");
    assert_int_equal(c.partitioner, SP_KAFKA_PARTITIONER_MURMUR2_RANDOM);
    set_bad(&c, "partitioner", "consistent_random");
    assert_string_equal(err, "invalid value 'consistent_random' for partitioner: expected one of "
                             "murmur2_random, murmur2");
}

static void test_strings(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "client.id", "spate-1");
    assert_string_equal(c.client_id, "spate-1");
    set_ok(&c, "client.id", "  padded id \t");
    assert_string_equal(c.client_id, "padded id");
    set_ok(&c, "client.id", "");
    assert_string_equal(c.client_id, "");

    char longest[SP_KAFKA_CONFIG_ID_MAX + 1];
    memset(longest, 'x', sizeof(longest));
    longest[SP_KAFKA_CONFIG_ID_MAX - 1] = '\0';
    set_ok(&c, "transactional.id", longest);
    assert_int_equal(strlen(c.transactional_id), SP_KAFKA_CONFIG_ID_MAX - 1);
    longest[SP_KAFKA_CONFIG_ID_MAX - 1] = 'x';
    longest[SP_KAFKA_CONFIG_ID_MAX] = '\0';
    set_bad(&c, "transactional.id", longest);
    assert_string_equal(err, "invalid value for transactional.id: 256 bytes, at most 255");
    set_bad(&c, "transactional.id", "");
    assert_string_equal(err, "invalid value '' for transactional.id: must be non-empty");
    set_bad(&c, "transactional.id", "   ");
    set_bad(&c, "client.id", longest);
    set_bad(&c, "group.id", longest);

    set_ok(&c, "group.id", "orders");
    assert_string_equal(c.group_id, "orders");
    set_ok(&c, "group.id", "");
    assert_string_equal(c.group_id, "");

    set_ok(&c, "group.instance.id", "pod-1.zone_a");
    assert_string_equal(c.group_instance_id, "pod-1.zone_a");
    set_bad(&c, "group.instance.id", "");
    set_bad(&c, "group.instance.id", "pod 1");
    assert_string_equal(err, "invalid value 'pod 1' for group.instance.id: only ASCII letters, "
                             "digits, '.', '_' and '-' are allowed");
    set_bad(&c, "group.instance.id", ".");
    set_bad(&c, "group.instance.id", "..");
    set_bad(&c, "group.instance.id", "a/b");
    char instance[251];
    memset(instance, 'i', 249);
    instance[249] = '\0';
    set_ok(&c, "group.instance.id", instance);
    instance[249] = 'i';
    instance[250] = '\0';
    set_bad(&c, "group.instance.id", instance);
}

static void test_servers(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "bootstrap.servers", "localhost:9092");
    set_ok(&c, "bootstrap.servers", " a:1 , b.example.com:65535,[::1]:9093,,PLAINTEXT://c_d:2 ");
    assert_string_equal(c.bootstrap_servers,
                        "a:1 , b.example.com:65535,[::1]:9093,,PLAINTEXT://c_d:2");
    set_ok(&c, "bootstrap.servers", "[fe80::1%eth0]:9092,10.0.0.1:9092");
    set_ok(&c, "bootstrap.servers", ""); /* empty is settable; validate refuses it */

    set_bad(&c, "bootstrap.servers", "localhost");
    assert_string_equal(err, "invalid value 'localhost' for bootstrap.servers: entry 'localhost': "
                             "missing ':port'");
    set_bad(&c, "bootstrap.servers", "a:1,b:0");
    assert_string_equal(err, "invalid value 'a:1,b:0' for bootstrap.servers: entry 'b:0': port not "
                             "in 1..65535");
    set_bad(&c, "bootstrap.servers", "a:65536");
    set_bad(&c, "bootstrap.servers", "a:9092x");
    set_bad(&c, "bootstrap.servers", "a:");
    set_bad(&c, "bootstrap.servers", "a:-1");
    set_bad(&c, "bootstrap.servers", ":9092");
    set_bad(&c, "bootstrap.servers", "::1:9092");
    assert_non_null(strstr(err, "an IPv6 address needs brackets"));
    set_bad(&c, "bootstrap.servers", "[::1:9092");
    set_bad(&c, "bootstrap.servers", "[::1]9092");
    set_bad(&c, "bootstrap.servers", "[]:9092");
    set_bad(&c, "bootstrap.servers", "bad host:9092");
    set_bad(&c, "bootstrap.servers", "a:1 b:2");

    /* Four entries of a 250-byte host fill the 1023 bytes exactly; one more byte is too many. */
    char list[SP_KAFKA_CONFIG_SERVERS_MAX + 8];
    size_t n = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (i > 0)
            list[n++] = ',';
        memset(list + n, 'h', 250);
        memcpy(list + n + 250, ":9092", 5);
        n += 255;
    }
    list[n] = '\0';
    assert_int_equal(n, SP_KAFKA_CONFIG_SERVERS_MAX - 1);
    set_ok(&c, "bootstrap.servers", list);
    assert_string_equal(c.bootstrap_servers, list);
    memcpy(list + n, "9", 2);
    set_bad(&c, "bootstrap.servers", list);
    assert_string_equal(err, "invalid value for bootstrap.servers: 1024 bytes, at most 1023");
    /* A host name over 255 bytes (DNS allows 253) is refused. */
    memset(list, 'h', 256);
    memcpy(list + 256, ":1", 3);
    set_bad(&c, "bootstrap.servers", list);
    assert_non_null(strstr(err, "host longer than 255 bytes"));
}

static void test_bootstrap_iterate(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    char host[64];
    uint16_t port = 0;
    assert_int_equal(sp_kafka_config_bootstrap(&c, 0, host, sizeof(host), &port), -ENOENT);

    set_ok(&c, "bootstrap.servers",
           " a:1 , [::1]:9092 ,, SASL_SSL://b.example.com:65535,[fe80::1%eth0]:19092");
    assert_int_equal(sp_kafka_config_bootstrap(&c, 0, host, sizeof(host), &port), 0);
    assert_string_equal(host, "a");
    assert_int_equal(port, 1);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 1, host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9092);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 2, host, sizeof(host), &port), 0);
    assert_string_equal(host, "b.example.com");
    assert_int_equal(port, 65535);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 3, host, sizeof(host), &port), 0);
    assert_string_equal(host, "fe80::1%eth0");
    assert_int_equal(port, 19092);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 4, host, sizeof(host), &port), -ENOENT);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 1000, host, sizeof(host), &port), -ENOENT);

    /* "b.example.com" needs 14 bytes. */
    assert_int_equal(sp_kafka_config_bootstrap(&c, 2, host, 14, &port), 0);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 2, host, 13, &port), -ENAMETOOLONG);

    /* A list written into the field directly is checked when read. */
    strcpy(c.bootstrap_servers, "good:1,bad");
    assert_int_equal(sp_kafka_config_bootstrap(&c, 0, host, sizeof(host), &port), 0);
    assert_int_equal(sp_kafka_config_bootstrap(&c, 1, host, sizeof(host), &port), -EINVAL);
}

static void test_assignors(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "partition.assignment.strategy", "roundrobin");
    assert_int_equal(c.assignor_count, 1);
    assert_int_equal(c.assignors[0], SP_KAFKA_ASSIGNOR_ROUNDROBIN);
    set_ok(&c, "partition.assignment.strategy", " cooperative-sticky , range,roundrobin ");
    assert_int_equal(c.assignor_count, 3);
    assert_int_equal(c.assignors[0], SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY);
    assert_int_equal(c.assignors[1], SP_KAFKA_ASSIGNOR_RANGE);
    assert_int_equal(c.assignors[2], SP_KAFKA_ASSIGNOR_ROUNDROBIN);
    /* The Java consumer's class names. */
    set_ok(&c, "partition.assignment.strategy",
           "org.apache.kafka.clients.consumer.CooperativeStickyAssignor,"
           "org.apache.kafka.clients.consumer.RoundRobinAssignor");
    assert_int_equal(c.assignor_count, 2);
    assert_int_equal(c.assignors[0], SP_KAFKA_ASSIGNOR_COOPERATIVE_STICKY);
    assert_int_equal(c.assignors[1], SP_KAFKA_ASSIGNOR_ROUNDROBIN);

    set_bad(&c, "partition.assignment.strategy", "range,sticky");
    assert_string_equal(err, "invalid value 'range,sticky' for partition.assignment.strategy: "
                             "'sticky' is not one of range, roundrobin, cooperative-sticky");
    set_bad(&c, "partition.assignment.strategy", "range,range");
    assert_string_equal(err, "invalid value 'range,range' for partition.assignment.strategy: "
                             "'range' is listed twice");
    set_bad(&c, "partition.assignment.strategy",
            "range,org.apache.kafka.clients.consumer.RangeAssignor");
    set_bad(&c, "partition.assignment.strategy", "range,roundrobin,cooperative-sticky,range");
    set_bad(&c, "partition.assignment.strategy", "");
    set_bad(&c, "partition.assignment.strategy", "range,,roundrobin");
    set_bad(&c, "partition.assignment.strategy", "range,");
    set_bad(&c, "partition.assignment.strategy", "Range");
}

static void test_alias(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    set_ok(&c, "message.max.bytes", "1000000");
    assert_int_equal(c.max_request_size, 1000000);
    set_ok(&c, "max.request.size", "2097152");
    assert_int_equal(c.max_request_size, 2097152);
    set_bad(&c, "message.max.bytes", "-1");
}

static void test_unknown_key(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    struct sp_kafka_config before = c;
    static const struct {
        const char *key, *message;
    } cases[] = {
        {"bootstrap.server",
         "unknown property 'bootstrap.server' (did you mean 'bootstrap.servers'?)"},
        {"Bootstrap_Servers",
         "unknown property 'Bootstrap_Servers' (did you mean 'bootstrap.servers'?)"},
        {"lingerms", "unknown property 'lingerms' (did you mean 'linger.ms'?)"},
        {"linger", "unknown property 'linger' (did you mean 'linger.ms'?)"},
        {"ack", "unknown property 'ack' (did you mean 'acks'?)"},
        {"max.inflight.requests.per.connection",
         "unknown property 'max.inflight.requests.per.connection' (did you mean "
         "'max.in.flight.requests.per.connection'?)"},
        {"isolation.levle", "unknown property 'isolation.levle' (did you mean 'isolation.level'?)"},
        {"session.timeout", "unknown property 'session.timeout' (did you mean "
                            "'session.timeout.ms'?)"},
        {"grop.id", "unknown property 'grop.id' (did you mean 'group.id'?)"},
        {"xyz", "unknown property 'xyz'"},
        {"key.serializer", "unknown property 'key.serializer'"},
        {"", "unknown property ''"},
        {"a.very.long.property.name.that.is.longer.than.sixty.four.characters.in.all",
         "unknown property 'a.very.long.property.name.that.is.longer.than.sixty.four."
         "characters.in.all'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sp_kafka_config_set(&c, cases[i].key, "1", err, sizeof(err)), -ENOENT);
        assert_string_equal(err, cases[i].message);
    }
    assert_memory_equal(&before, &c, sizeof(c));

    /* A short buffer is filled and terminated; no buffer at all is fine. */
    char small[8];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(sp_kafka_config_set(&c, "nope", "1", small, sizeof(small)), -ENOENT);
    assert_string_equal(small, "unknown");
    assert_int_equal(sp_kafka_config_set(&c, "nope", "1", NULL, 0), -ENOENT);
    assert_int_equal(sp_kafka_config_set(&c, "linger.ms", "x", NULL, 0), -EINVAL);
    assert_int_equal(sp_kafka_config_set(&c, "linger.ms", "9", NULL, 0), 0);
    assert_int_equal(c.linger_ms, 9);
}

/* ---- .properties files ---- */

/* Writes `len` bytes to a new temporary file; its path goes to `path`. */
static void write_temp(char *path, size_t path_len, const char *text, size_t len)
{
    snprintf(path, path_len, "/tmp/sp_kafka_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Loads `text` as a file; returns load_file's result (err set). */
static int load_text(struct sp_kafka_config *c, const char *text, size_t len, char *path,
                     size_t path_len)
{
    write_temp(path, path_len, text, len);
    int rc = sp_kafka_config_load_file(c, path, err, sizeof(err));
    unlink(path);
    return rc;
}

static void load_ok(struct sp_kafka_config *c, const char *text)
{
    char path[64];
    int rc = load_text(c, text, strlen(text), path, sizeof(path));
    if (rc != 0)
        fail_msg("load: %d %s", rc, err);
}

/* Loads a bad file; checks -EINVAL, "path:line: message" and an unchanged config. */
static void load_bad(struct sp_kafka_config *c, const char *text, size_t len, unsigned line,
                     const char *message)
{
    char path[64];
    struct sp_kafka_config before = *c;
    int rc = load_text(c, text, len, path, sizeof(path));
    assert_int_equal(rc, -EINVAL);
    char expected[600];
    snprintf(expected, sizeof(expected), "%s:%u: %s", path, line, message);
    assert_string_equal(err, expected);
    assert_memory_equal(&before, c, sizeof(before));
}

static void test_file_basic(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    load_ok(&c, "# Kafka producer\n"
                "! also a comment\n"
                "   # an indented comment\n"
                "\n"
                "   \t \n"
                "bootstrap.servers=broker1:9092,broker2:9092\n"
                "acks = 1\n"
                "linger.ms:20\n"
                "batch.size 65536\n"
                "compression.type\t=\tzstd   \n"
                "  enable.idempotence  :  false\n"
                "client.id\n");
    assert_string_equal(c.bootstrap_servers, "broker1:9092,broker2:9092");
    assert_int_equal(c.acks, 1);
    assert_int_equal(c.linger_ms, 20);
    assert_int_equal(c.batch_size, 65536);
    assert_int_equal(c.compression_type, SP_RECORD_CODEC_ZSTD);
    assert_false(c.enable_idempotence);
    assert_string_equal(c.client_id, "");
    /* What a file sets counts as set explicitly. */
    assert_false(sp_kafka_config_idempotent(&c));
    assert_int_equal(sp_kafka_config_validate(&c, err, sizeof(err)), 0);

    /* A later line wins; an empty file changes nothing. */
    load_ok(&c, "linger.ms=1\nlinger.ms=2\n");
    assert_int_equal(c.linger_ms, 2);
    load_ok(&c, "");
    assert_int_equal(c.linger_ms, 2);
    load_ok(&c, "# only a comment");
    load_ok(&c, "linger.ms=3"); /* no newline at the end */
    assert_int_equal(c.linger_ms, 3);
}

static void test_file_syntax(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    /* Continuations drop the backslash and the next line's leading blanks. */
    load_ok(&c, "bootstrap.servers = a:1,\\\n"
                "        b:2,\\\n"
                "\t c:3\n"
                "client.id=my\\ client\\=1\\:2\n"
                "group.id:=odd\n"
                "transactional.id = = x\n");
    assert_string_equal(c.bootstrap_servers, "a:1,b:2,c:3");
    assert_string_equal(c.client_id, "my client=1:2");
    assert_string_equal(c.group_id, "=odd");
    assert_string_equal(c.transactional_id, "= x");

    /* A comment does not continue; an even run of backslashes does not either. */
    load_ok(&c, "# comment \\\n"
                "linger.ms=9\n"
                "client.id=path\\\\\n"
                "batch.size=100\n");
    assert_int_equal(c.linger_ms, 9);
    assert_string_equal(c.client_id, "path\\");
    assert_int_equal(c.batch_size, 100);

    /* A continuation into a blank line ends the logical line there. */
    load_ok(&c, "client.id=a\\\n\nlinger.ms=11\n");
    assert_string_equal(c.client_id, "a");
    assert_int_equal(c.linger_ms, 11);
    /* A backslash at the very end of the file. */
    load_ok(&c, "client.id=end\\");
    assert_string_equal(c.client_id, "end");

    /* Escapes in keys and values: \t \n \r \f, \u (to UTF-8), \c for c. */
    load_ok(&c, "client\\.id=tab\\there\n"
                "gr\\oup.id=caf\\u00e9 \\u20ac \\uD83D\\uDE00 \\x\n");
    assert_string_equal(c.client_id, "tab\there");
    assert_string_equal(c.group_id, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 x");
    load_ok(&c, "client.id=a\\nb\\rc\\fd\\u0041\n");
    assert_string_equal(c.client_id, "a\nb\rc\fdA");

    /* \r\n and lone \r end lines too. */
    load_ok(&c, "linger.ms=21\r\nbatch.size=22\rretries=23\r\n\r\nacks=0");
    assert_int_equal(c.linger_ms, 21);
    assert_int_equal(c.batch_size, 22);
    assert_int_equal(c.retries, 23);
    assert_int_equal(c.acks, 0);
    load_ok(&c, "client.id=x\\\r\n   y\r\n");
    assert_string_equal(c.client_id, "xy");
}

static void test_file_errors(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    const char *t;

    t = "# header\nlinger.ms=5\nlinger=7\n";
    load_bad(&c, t, strlen(t), 3, "unknown property 'linger' (did you mean 'linger.ms'?)");
    t = "acks=all\n\n\nbatch.size=\\\n  big\n";
    load_bad(&c, t, strlen(t), 4,
             "invalid value 'big' for batch.size: expected an integer in [0, 2147483647]");
    t = "client.id=ok\ngroup.id=\\u12\n";
    load_bad(&c, t, strlen(t), 2, "malformed \\uxxxx encoding");
    t = "client.id=\\u12g4\n";
    load_bad(&c, t, strlen(t), 1, "malformed \\uxxxx encoding");
    t = "client.id=\\uD83D\n";
    load_bad(&c, t, strlen(t), 1, "a \\u high surrogate not followed by a \\u low surrogate");
    t = "client.id=\\uDE00\n";
    load_bad(&c, t, strlen(t), 1, "a \\u low surrogate without its high surrogate");
    t = "client.id=a\\u0000b\n";
    load_bad(&c, t, strlen(t), 1, "\\u0000 is not allowed");
    t = "linger.ms=1\r\nclient.id=a\0b\n";
    load_bad(&c, t, 27, 2, "NUL byte in the line");
    t = "enable.idempotence=maybe\n";
    load_bad(&c, t, strlen(t), 1,
             "invalid value 'maybe' for enable.idempotence: expected true or false");
    t = "=value\n";
    load_bad(&c, t, strlen(t), 1, "unknown property ''");

    /* A logical line over the limit, continuations included. */
    static char big[2 * SP_KAFKA_CONFIG_LINE_MAX];
    size_t n = (size_t)snprintf(big, sizeof(big), "linger.ms=1\nclient.id=");
    for (size_t logical = 10; logical < SP_KAFKA_CONFIG_LINE_MAX + 16; logical += 7) {
        memcpy(big + n, "abcdefg\\\n", 9);
        n += 9;
    }
    load_bad(&c, big, n, 2, "line longer than 4095 bytes");

    /* A line just under the limit reaches set (and is too long for client.id). */
    n = (size_t)snprintf(big, sizeof(big), "client.id=");
    memset(big + n, 'v', SP_KAFKA_CONFIG_LINE_MAX - 1 - n);
    n = SP_KAFKA_CONFIG_LINE_MAX - 1;
    load_bad(&c, big, n, 1, "invalid value for client.id: 4085 bytes, at most 255");

    /* A missing file is an I/O error with the path. */
    assert_int_equal(
        sp_kafka_config_load_file(&c, "/nonexistent/spate/client.properties", err, sizeof(err)),
        -ENOENT);
    assert_string_equal(err, "/nonexistent/spate/client.properties: No such file or directory");
}

/* ---- Validation ---- */

static void validate_bad(const struct sp_kafka_config *c, const char *message)
{
    assert_int_equal(sp_kafka_config_validate(c, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, message);
}

static void validate_ok(const struct sp_kafka_config *c)
{
    int rc = sp_kafka_config_validate(c, err, sizeof(err));
    if (rc != 0)
        fail_msg("validate: %d %s", rc, err);
}

static void test_validate_servers(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    sp_kafka_config_init(&c);
    validate_bad(&c, "No bootstrap urls given in bootstrap.servers");
    set_ok(&c, "bootstrap.servers", " , ,");
    validate_bad(&c, "No bootstrap urls given in bootstrap.servers");
    set_ok(&c, "bootstrap.servers", "localhost:9092");
    validate_ok(&c);
    strcpy(c.bootstrap_servers, "a:1,b");
    validate_bad(&c, "Invalid url in bootstrap.servers: entry 'b': missing ':port'");
    strcpy(c.bootstrap_servers, "a:1,b:99999");
    validate_bad(&c, "Invalid url in bootstrap.servers: entry 'b:99999': port not in 1..65535");
    assert_int_equal(sp_kafka_config_validate(&c, NULL, 0), -EINVAL);
}

static void test_validate_idempotence(void **state)
{
    (void)state;
    struct sp_kafka_config c;

    /* Left at its default, acks=1 or retries=0 turn idempotence off quietly. */
    init_with_servers(&c);
    set_ok(&c, "acks", "1");
    validate_ok(&c);
    assert_false(sp_kafka_config_idempotent(&c));
    init_with_servers(&c);
    set_ok(&c, "retries", "0");
    validate_ok(&c);
    assert_false(sp_kafka_config_idempotent(&c));

    /* Asked for explicitly, they are errors. */
    init_with_servers(&c);
    set_ok(&c, "enable.idempotence", "true");
    set_ok(&c, "acks", "1");
    validate_bad(&c, "Must set acks to all in order to use the idempotent producer. Otherwise we "
                     "cannot guarantee idempotence.");
    set_ok(&c, "acks", "-1");
    validate_ok(&c);
    assert_true(sp_kafka_config_idempotent(&c));
    set_ok(&c, "retries", "0");
    validate_bad(&c, "Must set retries to non-zero when using the idempotent producer.");

    /* More than 5 in flight is an error whenever idempotence is on. */
    init_with_servers(&c);
    set_ok(&c, "max.in.flight.requests.per.connection", "5");
    validate_ok(&c);
    set_ok(&c, "max.in.flight.requests.per.connection", "6");
    validate_bad(&c, "To use the idempotent producer, max.in.flight.requests.per.connection must "
                     "be set to at most 5. Current value is 6.");
    set_ok(&c, "enable.idempotence", "false");
    validate_ok(&c);
    assert_false(sp_kafka_config_idempotent(&c));

    /* transactional.id needs idempotence, explicit or default. */
    init_with_servers(&c);
    set_ok(&c, "transactional.id", "tx-1");
    validate_ok(&c);
    assert_true(sp_kafka_config_idempotent(&c));
    set_ok(&c, "acks", "1");
    validate_bad(&c, "Cannot set a transactional.id without also enabling idempotence.");
    init_with_servers(&c);
    set_ok(&c, "transactional.id", "tx-1");
    set_ok(&c, "enable.idempotence", "false");
    validate_bad(&c, "Cannot set a transactional.id without also enabling idempotence.");
}

static void test_validate_timeouts(void **state)
{
    (void)state;
    struct sp_kafka_config c;

    /* delivery.timeout.ms below linger.ms + request.timeout.ms: an error when set... */
    init_with_servers(&c);
    set_ok(&c, "delivery.timeout.ms", "30004");
    validate_bad(&c, "delivery.timeout.ms should be equal to or larger than linger.ms + "
                     "request.timeout.ms");
    set_ok(&c, "delivery.timeout.ms", "30005");
    validate_ok(&c);
    assert_int_equal(sp_kafka_config_delivery_timeout_ms(&c), 30005);

    /* ...raised quietly when left at its default. */
    init_with_servers(&c);
    set_ok(&c, "linger.ms", "100000");
    validate_ok(&c);
    assert_int_equal(sp_kafka_config_delivery_timeout_ms(&c), 130000);
    set_ok(&c, "linger.ms", "9223372036854775807");
    validate_ok(&c);
    assert_int_equal(sp_kafka_config_delivery_timeout_ms(&c), INT32_MAX);

    /* Heartbeats must come more often than the session times out (with a group). */
    init_with_servers(&c);
    set_ok(&c, "heartbeat.interval.ms", "45000");
    validate_ok(&c); /* no group: no heartbeats */
    set_ok(&c, "group.id", "g");
    validate_bad(&c, "Heartbeat must be set lower than the session timeout: "
                     "heartbeat.interval.ms is 45000, session.timeout.ms 45000");
    set_ok(&c, "heartbeat.interval.ms", "44999");
    validate_ok(&c);
}

static void test_validate_auto_commit(void **state)
{
    (void)state;
    struct sp_kafka_config c;
    init_with_servers(&c);
    validate_ok(&c);
    assert_false(sp_kafka_config_auto_commit(&c));
    set_ok(&c, "enable.auto.commit", "true");
    validate_bad(&c, "enable.auto.commit cannot be set to true when default group id (null) is "
                     "used.");
    set_ok(&c, "group.id", "g");
    validate_ok(&c);
    assert_true(sp_kafka_config_auto_commit(&c));
    set_ok(&c, "enable.auto.commit", "false");
    assert_false(sp_kafka_config_auto_commit(&c));
    set_ok(&c, "group.id", "");
    validate_ok(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_servers),
        cmocka_unit_test(test_bootstrap_iterate),
        cmocka_unit_test(test_assignors),
        cmocka_unit_test(test_alias),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_file_basic),
        cmocka_unit_test(test_file_syntax),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_validate_servers),
        cmocka_unit_test(test_validate_idempotence),
        cmocka_unit_test(test_validate_timeouts),
        cmocka_unit_test(test_validate_auto_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
