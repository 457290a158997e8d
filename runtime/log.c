/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log line formatting and the assertion handler (see sp_log.h). Lines longer
 * than the 1 KiB line buffer are cut and end in "...".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_log.h"

#define SP_LOG_LINE_BYTES_MAX 1024

_Atomic int sp_log_level_current = SP_LOG_INFO;

static _Thread_local int log_shard_id = -1;
static uint64_t log_start_ns;

__attribute__((constructor)) static void log_start(void)
{
    log_start_ns = sp_now_ns();
}

void sp_log_set_level(enum sp_log_level level)
{
    SP_ASSERT(level >= SP_LOG_ERROR && level <= SP_LOG_TRACE);
    atomic_store_explicit(&sp_log_level_current, (int)level, memory_order_relaxed);
}

int sp_log_level_parse(const char *text)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    if (text == NULL)
        return -EINVAL;
    for (unsigned i = 0; i < SP_ARRAY_LEN(names); i++) {
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    }
    return -EINVAL;
}

void sp_log_set_shard(int shard_id)
{
    log_shard_id = shard_id;
}

int sp_log_shard(void)
{
    return log_shard_id;
}

static size_t log_prefix(char *line, size_t size, enum sp_log_level level)
{
    static const char letters[] = "EWIDT";
    uint64_t ns = sp_now_ns() - log_start_ns;
    int n;
    if (log_shard_id >= 0)
        n = snprintf(
            line, size, "[%5llu.%06llu] %c shard %d: ", (unsigned long long)(ns / SP_NSEC_PER_SEC),
            (unsigned long long)(ns % SP_NSEC_PER_SEC / 1000), letters[level], log_shard_id);
    else
        n = snprintf(line, size,
                     "[%5llu.%06llu] %c main: ", (unsigned long long)(ns / SP_NSEC_PER_SEC),
                     (unsigned long long)(ns % SP_NSEC_PER_SEC / 1000), letters[level]);
    return n < 0 ? 0 : SP_MIN((size_t)n, size - 1);
}

void sp_log_write(enum sp_log_level level, const char *fmt, ...)
{
    char line[SP_LOG_LINE_BYTES_MAX];
    size_t len = log_prefix(line, sizeof(line), level);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    len += (size_t)n;
    if (len > sizeof(line) - 2) {
        memcpy(line + sizeof(line) - 5, "...", 3);
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written; /* nowhere to report a failed log write */
}

void sp_assert_fail(const char *expr, const char *file, int line)
{
    char text[SP_LOG_LINE_BYTES_MAX];
    int n = snprintf(text, sizeof(text), "spate: assertion failed on %s%d: %s (%s:%d)\n",
                     log_shard_id >= 0 ? "shard " : "main thread ",
                     log_shard_id >= 0 ? log_shard_id : 0, expr, file, line);
    if (n > 0) {
        ssize_t written = write(STDERR_FILENO, text, SP_MIN((size_t)n, sizeof(text) - 1));
        (void)written;
    }
    abort();
}
