/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starts and stops librdkafka's mock cluster (tests/kafka-peers/mock_broker)
 * for the client tests: a real Kafka-protocol broker on loopback. Its path
 * comes from the MOCK_BROKER define, or from SPATE_MOCK_BROKER in the
 * environment: under ThreadSanitizer the mock (librdkafka's threads are not
 * instrumented) crashes, so scripts/test points the TSan build at the
 * gcc build's mock. Tests exit 77 (skip) when it was not
 * built (no librdkafka-dev).
 *
 * SPATE_PEER=spate says that SPATE_MOCK_BROKER is
 * tests/kafka-peers/spate_peer.sh: spate's own Kafka endpoint behind the
 * mock's interface, one real node that honours no fault injection. Cases
 * that need the mock's steering (push-errors, broker-down, several
 * brokers) call mock_peer_needs_mock() first, and skip there; cases that
 * only a real broker can prove call mock_peer_needs_spate().
 */
#ifndef SP_TEST_MOCK_PEER_H
#define SP_TEST_MOCK_PEER_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct mock_peer {
    pid_t pid;
    FILE *control; /* its stdin: commands, and EOF to stop it */
    FILE *replies; /* its stdout after the bootstrap line */
    char bootstrap[256];
    char host[64];
    unsigned short port;
};

extern char **environ;

/* Whether the peer is spate's own endpoint (SPATE_PEER=spate). */
static inline bool mock_peer_is_spate(void)
{
    const char *peer = getenv("SPATE_PEER");
    return peer != NULL && strcmp(peer, "spate") == 0;
}

/* Skips the calling cmocka test when the peer is not librdkafka's mock. */
#define mock_peer_needs_mock()                                                                     \
    do {                                                                                           \
        if (mock_peer_is_spate()) {                                                                \
            fprintf(stderr, "needs the mock's fault injection: skipped against spate broker\n");   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Skips the calling cmocka test unless the peer is spate's own endpoint. */
#define mock_peer_needs_spate()                                                                    \
    do {                                                                                           \
        if (!mock_peer_is_spate()) {                                                               \
            fprintf(stderr, "needs a real broker: runs against spate broker only\n");              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Starts the mock with `argv_extra` (NULL-terminated); 0 or -errno. */
static inline int mock_peer_start(struct mock_peer *m, const char *const *argv_extra)
{
    memset(m, 0, sizeof(*m));
    const char *path = getenv("SPATE_MOCK_BROKER");
    if (path == NULL || path[0] == '\0') {
#ifdef MOCK_BROKER
        path = MOCK_BROKER;
#else
        fprintf(stderr, "no mock broker built: skipping\n");
        exit(77);
#endif
    }
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -errno;
    const char *argv[32] = {path};
    unsigned argc = 1;
    for (; argv_extra != NULL && argv_extra[argc - 1] != NULL && argc < 31; argc++)
        argv[argc] = argv_extra[argc - 1];
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    int err = posix_spawn(&m->pid, path, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (err != 0)
        return -err;
    m->control = fdopen(in[1], "w");
    m->replies = fdopen(out[0], "r");
    if (m->control == NULL || m->replies == NULL ||
        fgets(m->bootstrap, sizeof(m->bootstrap), m->replies) == NULL)
        return -EIO;
    m->bootstrap[strcspn(m->bootstrap, ",\n")] = '\0';
    char *colon = strrchr(m->bootstrap, ':');
    if (colon == NULL || (size_t)(colon - m->bootstrap) >= sizeof(m->host))
        return -EIO;
    memcpy(m->host, m->bootstrap, (size_t)(colon - m->bootstrap));
    m->host[colon - m->bootstrap] = '\0';
    m->port = (unsigned short)atoi(colon + 1);
    return 0;
}

/* Sends one control line (tests/kafka-peers/mock_broker.c); 0 when it answers "ok". */
static inline int mock_peer_command(struct mock_peer *m, const char *line)
{
    char reply[256];
    if (fprintf(m->control, "%s\n", line) < 0 || fflush(m->control) != 0 ||
        fgets(reply, sizeof(reply), m->replies) == NULL)
        return -EIO;
    if (strncmp(reply, "ok", 2) != 0) {
        fprintf(stderr, "mock_broker: '%s': %s", line, reply);
        return -EINVAL;
    }
    return 0;
}

static inline void mock_peer_stop(struct mock_peer *m)
{
    if (m->control != NULL)
        fclose(m->control);
    if (m->replies != NULL)
        fclose(m->replies);
    int status = 0;
    if (m->pid > 0) {
        kill(m->pid, SIGTERM);
        waitpid(m->pid, &status, 0);
    }
    memset(m, 0, sizeof(*m));
    /* Both peers exit 0 on SIGTERM: anything else is the broker's failure
     * (spate_peer passes on spate broker's status, sanitizers' included). */
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mock_peer: the peer exited %d (its log is above)\n", WEXITSTATUS(status));
        abort();
    }
}

#endif /* SP_TEST_MOCK_PEER_H */
