/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `spate` program as a user runs it: the built binary is started with
 * real arguments. Help and version work; every kind of wrong input (unknown
 * flag or command, --cores 0, more cores than the machine has, a malformed
 * size, a flag without its value) exits 2 with exactly one line on stderr
 * saying why; the demo and a microbenchmark really run.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_runtime.h"

#ifndef SPATE_EXE
#error "SPATE_EXE must name the spate binary"
#endif

#define OUTPUT_BYTES_MAX (64u * 1024u)

extern char **environ;

struct run {
    int status;
    char out[OUTPUT_BYTES_MAX];
    char err[OUTPUT_BYTES_MAX];
};

/* Reads both pipes to the end. */
static void collect(int out_fd, int err_fd, struct run *r)
{
    size_t out_len = 0, err_len = 0;
    struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_count = 2;
    while (open_count > 0) {
        assert_true(poll(fds, 2, 60000) > 0);
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            char *buf = i == 0 ? r->out : r->err;
            size_t *len = i == 0 ? &out_len : &err_len;
            ssize_t n = read(fds[i].fd, buf + *len, OUTPUT_BYTES_MAX - 1 - *len);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_count--;
                continue;
            }
            *len += (size_t)n;
        }
    }
    r->out[out_len] = '\0';
    r->err[err_len] = '\0';
}

/* Runs spate with the NULL-terminated arguments; returns the exit status. */
static int run_spate(struct run *r, const char *const *args)
{
    char *argv[32];
    unsigned argc = 0;
    argv[argc++] = (char *)SPATE_EXE;
    for (; args[argc - 1] != NULL && argc < 31; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;

    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, err[0]);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, SPATE_EXE, &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    close(err[1]);
    collect(out[0], err[0], r);
    assert_int_equal(waitpid(pid, &r->status, 0), pid);
    assert_true(WIFEXITED(r->status));
    return WEXITSTATUS(r->status);
}

static unsigned count_lines(const char *text)
{
    unsigned n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* Wrong input: status 2, one line on stderr that starts "spate: " and names `why`. */
static void expect_usage_error(const char *why, const char *const *args)
{
    static struct run r;
    memset(&r, 0, sizeof(r));
    int status = run_spate(&r, args);
    if (status != 2 || count_lines(r.err) != 1 || strncmp(r.err, "spate: ", 7) != 0 ||
        strstr(r.err, why) == NULL)
        fail_msg("args '%s...': status %d, stderr '%s' (wanted 2 and one line naming '%s')",
                 args[0] ? args[0] : "", status, r.err, why);
    assert_string_equal(r.out, "");
}

static void test_help_and_version(void **state)
{
    (void)state;
    static struct run r;
    assert_int_equal(run_spate(&r, (const char *[]){"--help", NULL}), 0);
    assert_non_null(strstr(r.out, "usage: spate"));
    assert_non_null(strstr(r.out, "--cores"));
    assert_non_null(strstr(r.out, "bench micro"));
    assert_int_equal(run_spate(&r, (const char *[]){"version", NULL}), 0);
    assert_non_null(strstr(r.out, "spate 0."));
    /* Valid global flags are accepted before and after the command. */
    assert_int_equal(run_spate(&r, (const char *[]){"--cores", "1", "--memory", "64M", "version",
                                                    "--log-level", "debug", NULL}),
                     0);
    assert_int_equal(run_spate(&r, (const char *[]){"version", "--cores=1", "--memory=1g", NULL}),
                     0);
}

static void test_wrong_flags_exit_2_with_a_reason(void **state)
{
    (void)state;
    char too_many[16];
    snprintf(too_many, sizeof(too_many), "%u", sp_runtime_cpu_count() + 1);
    expect_usage_error("no command", (const char *[]){NULL});
    expect_usage_error("--cores 0", (const char *[]){"--cores", "0", "version", NULL});
    expect_usage_error("must be between 1", (const char *[]){"--cores", too_many, "demo", NULL});
    expect_usage_error("--cores 'abc'", (const char *[]){"--cores", "abc", "version", NULL});
    expect_usage_error("--cores ''", (const char *[]){"version", "--cores", NULL});
    expect_usage_error("--memory '12Q'", (const char *[]){"--memory", "12Q", "version", NULL});
    expect_usage_error("--memory '-5'", (const char *[]){"--memory=-5", "version", NULL});
    expect_usage_error("at least", (const char *[]){"--memory", "1K", "version", NULL});
    expect_usage_error("--log-level 'loud'",
                       (const char *[]){"--log-level", "loud", "version", NULL});
    expect_usage_error("unknown flag '--bogus'", (const char *[]){"--bogus", "version", NULL});
    expect_usage_error("unknown command 'frobnicate'", (const char *[]){"frobnicate", NULL});
    expect_usage_error("unexpected argument 'extra'", (const char *[]){"version", "extra", NULL});
    expect_usage_error("unknown benchmark", (const char *[]){"bench", NULL});
    expect_usage_error("unknown benchmark 'nope'", (const char *[]){"bench", "nope", NULL});
    expect_usage_error("or --all is missing", (const char *[]){"bench", "nexmark", NULL});
    expect_usage_error("bench micro", (const char *[]){"--benchmark_filter=x", "version", NULL});
    expect_usage_error("--seconds '0'", (const char *[]){"demo", "--seconds", "0", NULL});
    expect_usage_error("--spill-max 'lots'",
                       (const char *[]){"run", "keyed-state", "--spill-max", "lots", NULL});
    expect_usage_error("--spill-max '0'",
                       (const char *[]){"run", "keyed-state", "--spill-max=0", NULL});
    expect_usage_error("--spill-dir needs a value",
                       (const char *[]){"run", "keyed-state", "--spill-dir", NULL});
}

static void test_demo_runs_and_reports(void **state)
{
    (void)state;
    static struct run r;
    int status = run_spate(
        &r, (const char *[]){"demo", "--cores", "1", "--seconds", "0.2", "--memory", "1M", NULL});
    if (status != 0)
        fail_msg("demo exited %d: %s", status, r.err);
    assert_non_null(strstr(r.out, "runtime workload on 1 shard"));
    assert_non_null(strstr(r.out, "phase 1"));
    assert_non_null(strstr(r.out, "messages delivered"));
    assert_non_null(strstr(r.out, "round trips: p50"));
}

static void test_bench_micro_runs_a_case(void **state)
{
    (void)state;
    static struct run r;
    int status = run_spate(&r, (const char *[]){"bench", "micro", "--benchmark_filter=^xxh3/8/",
                                                "--benchmark_min_time=0.01", NULL});
    if (status == 2 && strstr(r.err, "no Google Benchmark") != NULL)
        skip();
    if (status != 0)
        fail_msg("bench micro exited %d: %s", status, r.err);
    assert_non_null(strstr(r.out, "xxh3/8"));
    assert_non_null(strstr(r.out, "bytes_per_second"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_wrong_flags_exit_2_with_a_reason),
        cmocka_unit_test(test_demo_runs_and_reports),
        cmocka_unit_test(test_bench_micro_runs_a_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
