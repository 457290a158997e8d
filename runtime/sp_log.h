/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one line per call on stderr, written with a single write(2) so
 * lines from different shards never interleave. Each line carries the
 * monotonic time since the process started, the level and the shard id
 * ("main" off the shards):
 *
 *     [    1.204331] W shard 3: checkpoint 12 took 1840 ms
 *
 * The level check is an inline relaxed load, so a disabled level costs one
 * compare and never formats its arguments.
 */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdatomic.h>

#include "sp_common.h"

enum sp_log_level {
    SP_LOG_ERROR = 0,
    SP_LOG_WARN,
    SP_LOG_INFO,
    SP_LOG_DEBUG,
    SP_LOG_TRACE,
};

extern _Atomic int sp_log_level_current;

/* Sets the most verbose level that is written. */
void sp_log_set_level(enum sp_log_level level);

/* "error", "warn", "info", "debug" or "trace"; returns the level or -EINVAL. */
SP_MUST_CHECK int sp_log_level_parse(const char *text);

/* Tags the calling thread's lines with `shard_id` (-1: not a shard). */
void sp_log_set_shard(int shard_id);

/* The calling thread's shard id, -1 off the shards. */
int sp_log_shard(void);

/* Formats and writes one line; use the macros below. */
void sp_log_write(enum sp_log_level level, const char *fmt, ...) SP_PRINTF(2, 3);

static inline int sp_log_enabled(enum sp_log_level level)
{
    return (int)level <= atomic_load_explicit(&sp_log_level_current, memory_order_relaxed);
}

#define sp_log(level, ...)                                                                         \
    do {                                                                                           \
        if (sp_log_enabled(level))                                                                 \
            sp_log_write(level, __VA_ARGS__);                                                      \
    } while (0)

#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_warn(...) sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_info(...) sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)
#define sp_trace(...) sp_log(SP_LOG_TRACE, __VA_ARGS__)

#endif /* SP_LOG_H */
