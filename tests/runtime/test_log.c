/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: level names, the level check, the per-thread shard tag, and the
 * line itself. To see lines exactly as written, stderr is pointed at one
 * end of a datagram socket pair: each write(2) arrives as one datagram, so a
 * line split over two writes would show as two. Checked: the format
 * "[sssss.uuuuuu] L shard N: message\n" (and "main" off the shards), levels
 * that are off write nothing, and an overlong message is cut to under
 * 1024 bytes ending in "...\n", while one that just fits is not cut.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_log.h"

#define LINE_BYTES_MAX 1024

/* ---- Capturing stderr ---- */

/*
 * Lines wait in the socket until read after capture_end, so each capture
 * writes only a few (well under the socket's buffer), else write(2) would
 * block the test.
 */

struct capture {
    int saved_fd; /* the real stderr */
    int read_fd;  /* our end of the pair */
};

static void capture_begin(struct capture *c)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    fflush(stderr);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_int_equal(dup2(sv[1], STDERR_FILENO), STDERR_FILENO);
    close(sv[1]);
    c->read_fd = sv[0];
}

/* Puts stderr back (so cmocka can report) before anything is checked. */
static void capture_end(struct capture *c)
{
    assert_int_equal(dup2(c->saved_fd, STDERR_FILENO), STDERR_FILENO);
    close(c->saved_fd);
}

/* The next line written, as one datagram; -1 when there is none. */
static ssize_t capture_next(struct capture *c, char *buf, size_t size)
{
    ssize_t n = recv(c->read_fd, buf, size - 1, MSG_DONTWAIT | MSG_TRUNC);
    if (n >= 0) {
        assert_true((size_t)n < size); /* not truncated by our buffer */
        buf[n] = '\0';
    }
    return n;
}

static void capture_close(struct capture *c)
{
    char buf[16];
    assert_true(recv(c->read_fd, buf, sizeof(buf), MSG_DONTWAIT) < 0); /* nothing left */
    close(c->read_fd);
}

/*
 * Checks the "[sssss.uuuuuu] " time prefix: at least five right-aligned
 * seconds digits (space-padded), a dot, six digits. Returns its length.
 */
static size_t check_time_prefix(const char *line)
{
    assert_int_equal(line[0], '[');
    const char *dot = strchr(line, '.');
    assert_non_null(dot);
    size_t seconds_width = (size_t)(dot - line) - 1;
    assert_true(seconds_width >= 5);
    int seen_digit = 0;
    for (size_t i = 1; i <= seconds_width; i++) {
        if (line[i] == ' ') {
            assert_false(seen_digit);
        } else {
            assert_true(line[i] >= '0' && line[i] <= '9');
            seen_digit = 1;
        }
    }
    assert_true(seen_digit);
    for (size_t i = 1; i <= 6; i++)
        assert_true(dot[i] >= '0' && dot[i] <= '9');
    assert_int_equal(dot[7], ']');
    assert_int_equal(dot[8], ' ');
    return (size_t)(dot + 9 - line);
}

/* One line: the time prefix, then exactly `rest`, one newline at the end. */
static void check_line(const char *line, ssize_t len, const char *rest)
{
    assert_true(len > 0);
    assert_int_equal(strlen(line), (size_t)len);
    assert_int_equal(line[len - 1], '\n');
    assert_ptr_equal(strchr(line, '\n'), line + len - 1);
    size_t prefix = check_time_prefix(line);
    assert_string_equal(line + prefix, rest);
}

/* ---- Levels and shard tags ---- */

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(sp_log_level_parse("error"), SP_LOG_ERROR);
    assert_int_equal(sp_log_level_parse("warn"), SP_LOG_WARN);
    assert_int_equal(sp_log_level_parse("info"), SP_LOG_INFO);
    assert_int_equal(sp_log_level_parse("debug"), SP_LOG_DEBUG);
    assert_int_equal(sp_log_level_parse("trace"), SP_LOG_TRACE);

    const char *bad[] = {"",      "e",     "err",    "errors",  "warning", "inf",
                         "info ", " info", "info\n", "debugx",  "tracer",  "2",
                         "fatal", "off",   "all",    "verbose", "i nfo"};
    for (unsigned i = 0; i < SP_ARRAY_LEN(bad); i++)
        assert_int_equal(sp_log_level_parse(bad[i]), -EINVAL);
    assert_int_equal(sp_log_level_parse(NULL), -EINVAL);
}

static void test_set_level_controls_enabled(void **state)
{
    (void)state;
    for (int level = SP_LOG_ERROR; level <= SP_LOG_TRACE; level++) {
        sp_log_set_level((enum sp_log_level)level);
        for (int l = SP_LOG_ERROR; l <= SP_LOG_TRACE; l++)
            assert_int_equal(sp_log_enabled((enum sp_log_level)l) != 0, l <= level);
    }
    /* Errors are always on. */
    sp_log_set_level(SP_LOG_ERROR);
    assert_true(sp_log_enabled(SP_LOG_ERROR));
    assert_false(sp_log_enabled(SP_LOG_WARN));
    sp_log_set_level(SP_LOG_INFO);
}

static void *shard_thread(void *arg)
{
    int *seen = arg;
    seen[0] = sp_log_shard(); /* a new thread starts off the shards */
    sp_log_set_shard(7);
    seen[1] = sp_log_shard();
    return NULL;
}

static void test_shard_is_per_thread(void **state)
{
    (void)state;
    sp_log_set_shard(-1);
    assert_int_equal(sp_log_shard(), -1);
    sp_log_set_shard(3);
    assert_int_equal(sp_log_shard(), 3);
    sp_log_set_shard(0);
    assert_int_equal(sp_log_shard(), 0);

    sp_log_set_shard(5);
    int seen[2] = {99, 99};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, shard_thread, seen), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(seen[0], -1);
    assert_int_equal(seen[1], 7);
    assert_int_equal(sp_log_shard(), 5); /* the other thread's 7 is its own */
    sp_log_set_shard(-1);
    assert_int_equal(sp_log_shard(), -1);
}

/* ---- Lines ---- */

static void test_line_format(void **state)
{
    (void)state;
    static char buf[4 * LINE_BYTES_MAX];
    struct capture c;
    sp_log_set_level(SP_LOG_INFO);

    capture_begin(&c);
    sp_log_set_shard(3);
    sp_info("checkpoint %d took %u ms", 12, 1840u);
    sp_log_set_shard(-1);
    sp_info("listening on %s", "0.0.0.0:9092");
    sp_log_set_shard(11);
    sp_warn("lagging");
    sp_log_set_shard(0);
    sp_error("disk %s", "full");
    sp_debug("off at info: %d", 1);
    sp_trace("off at info");
    sp_log_set_level(SP_LOG_TRACE);
    sp_debug("now on");
    sp_trace("%s", "");
    sp_log_set_level(SP_LOG_ERROR);
    sp_warn("off at error");
    sp_info("off at error");
    sp_log_set_level(SP_LOG_INFO);
    sp_log_set_shard(-1);
    capture_end(&c);

    ssize_t n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "I shard 3: checkpoint 12 took 1840 ms\n");
    n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "I main: listening on 0.0.0.0:9092\n");
    n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "W shard 11: lagging\n");
    n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "E shard 0: disk full\n");
    n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "D shard 0: now on\n");
    n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "T shard 0: \n");
    capture_close(&c); /* the disabled levels wrote nothing */
}

/* Two lines a little apart: the time goes forward and has microseconds. */
static void test_line_time_advances(void **state)
{
    (void)state;
    static char a[LINE_BYTES_MAX], b[LINE_BYTES_MAX];
    struct capture c;
    capture_begin(&c);
    sp_info("one");
    usleep(20000);
    sp_info("two");
    capture_end(&c);
    check_line(a, capture_next(&c, a, sizeof(a)), "I main: one\n");
    check_line(b, capture_next(&c, b, sizeof(b)), "I main: two\n");
    capture_close(&c);

    unsigned long long sa, ua, sb, ub;
    assert_int_equal(sscanf(a, "[%llu.%llu]", &sa, &ua), 2);
    assert_int_equal(sscanf(b, "[%llu.%llu]", &sb, &ub), 2);
    assert_true(ua < 1000000 && ub < 1000000);
    unsigned long long ta = sa * 1000000 + ua, tb = sb * 1000000 + ub;
    assert_true(tb >= ta + 19000);
    assert_true(tb < ta + 10000000); /* and not absurdly far (10 s) */
}

static void test_overlong_line_is_cut(void **state)
{
    (void)state;
    static char msg[5000];
    static char buf[8 * LINE_BYTES_MAX];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    struct capture c;

    /* The prefix length, from an empty message. */
    capture_begin(&c);
    sp_log_set_shard(3);
    sp_info("%s", "");
    capture_end(&c);
    ssize_t n = capture_next(&c, buf, sizeof(buf));
    check_line(buf, n, "I shard 3: \n");
    size_t prefix = (size_t)n - 1;
    assert_true(prefix < 100);

    /* Longest message that fits: prefix + message + "\n" = 1023 bytes. */
    size_t fits = LINE_BYTES_MAX - 2 - prefix;
    capture_begin(&c);
    sp_info("%.*s", (int)fits, msg);
    sp_info("%.*s", (int)fits + 1, msg);
    sp_info("%s", msg);
    sp_info("%s%s", msg, msg);
    sp_log_set_shard(-1);
    capture_end(&c);

    n = capture_next(&c, buf, sizeof(buf));
    assert_int_equal(n, (ssize_t)(prefix + fits + 1));
    assert_int_equal(n, LINE_BYTES_MAX - 1);
    assert_string_equal(buf + n - 4, "xxx\n"); /* not cut */
    assert_int_equal(strspn(buf + prefix, "x"), fits);

    for (unsigned i = 0; i < 3; i++) { /* one byte over, 5 KB and 10 KB */
        n = capture_next(&c, buf, sizeof(buf));
        assert_true(n > 0);
        assert_true(n < LINE_BYTES_MAX);
        assert_int_equal(strlen(buf), (size_t)n);
        assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
        assert_string_equal(buf + n - 4, "...\n");
        assert_int_equal(strncmp(buf + prefix - strlen("I shard 3: "), "I shard 3: ", 11), 0);
        check_time_prefix(buf);
        /* Everything between the prefix and the "..." is the message. */
        assert_int_equal(strspn(buf + prefix, "x"), (size_t)n - 4 - prefix);
        assert_true((size_t)n - 4 - prefix > LINE_BYTES_MAX - 100);
    }
    capture_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_set_level_controls_enabled),
        cmocka_unit_test(test_shard_is_per_thread),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_line_time_advances),
        cmocka_unit_test(test_overlong_line_is_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
