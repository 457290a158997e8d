/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shutdown on a signal, in a child process running a real runtime: SIGTERM
 * and SIGINT make every shard run its stop hooks, drain and exit 0; a second
 * signal while a shard refuses to drain ends the process at once with
 * 128 + the signal's number.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "rt_test.h"

struct child {
    int ready_fd;  /* the child writes one byte here once running */
    bool stubborn; /* a shard that never drains */
    struct sp_stop_hook hooks[2];
    unsigned hook_runs[2];
    struct sp_task forever;
};

static void on_stop_hook(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct child *c = shard->runtime->config.ctx;
    (void)hook;
    c->hook_runs[shard->id]++;
}

static void forever(struct sp_task *task, struct sp_shard *shard)
{
    sp_shard_post(shard, task, forever);
}

static void child_start(struct sp_shard *shard, void *ctx)
{
    struct child *c = ctx;
    sp_shard_on_stop(shard, &c->hooks[shard->id], on_stop_hook);
    if (shard->id != 0)
        return;
    if (c->stubborn)
        sp_shard_post(shard, &c->forever, forever);
    char byte = 'r';
    ssize_t n = write(c->ready_fd, &byte, 1);
    SP_ASSERT(n == 1);
}

/* Runs in the child: 0 when the runtime drained and both hooks ran once. */
static int child_main(int ready_fd, bool stubborn)
{
    static struct child c;
    memset(&c, 0, sizeof(c));
    c.ready_fd = ready_fd;
    c.stubborn = stubborn;
    struct sp_runtime_config config;
    rt_test_config(&config, 2, child_start, &c);
    config.handle_signals = true;
    config.drain_timeout_ns = 60 * SP_NSEC_PER_SEC;
    struct sp_runtime rt;
    if (sp_runtime_init(&rt, &config) < 0)
        return 3;
    int ret = sp_runtime_run(&rt);
    sp_runtime_deinit(&rt);
    if (ret != 0)
        return 4;
    return c.hook_runs[0] == 1 && c.hook_runs[1] == 1 ? 0 : 5;
}

/* Starts a child runtime and waits until it is running. */
static pid_t spawn(bool stubborn)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        _exit(child_main(fds[1], stubborn));
    }
    close(fds[1]);
    char byte;
    assert_int_equal(read(fds[0], &byte, 1), 1);
    close(fds[0]);
    return pid;
}

/* The child's wait status, or kills it and fails after `limit_ms`. */
static int wait_exit(pid_t pid, unsigned limit_ms)
{
    for (unsigned waited = 0; waited < limit_ms; waited += 5) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        assert_true(got >= 0);
        if (got == pid)
            return status;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("child still running after %u ms", limit_ms);
    return -1;
}

static void stop_with(int sig)
{
    pid_t pid = spawn(false);
    assert_int_equal(kill(pid, sig), 0);
    int status = wait_exit(pid, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sigterm_drains_and_exits_zero(void **state)
{
    (void)state;
    stop_with(SIGTERM);
}

static void test_sigint_drains_and_exits_zero(void **state)
{
    (void)state;
    stop_with(SIGINT);
}

static void test_second_signal_forces_exit(void **state)
{
    (void)state;
    pid_t pid = spawn(true);
    assert_int_equal(kill(pid, SIGTERM), 0);
    /* It cannot drain (60 s drain time-out), so it is still running... */
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
    /* ...until the second signal. */
    assert_int_equal(kill(pid, SIGINT), 0);
    int status = wait_exit(pid, 5000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGINT);
}

int main(void)
{
    rt_test_require_uring();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_drains_and_exits_zero),
        cmocka_unit_test(test_sigint_drains_and_exits_zero),
        cmocka_unit_test(test_second_signal_forces_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
