/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Microbenchmark cases, written in C against spate's own headers and run by
 * Google Benchmark through the thin C++ shim in shim.cc. A case is a table
 * entry: a setup that builds its state for one argument, a body that does
 * `iterations` operations, and optional counters (percentiles and the like)
 * read after the run. Bodies that time themselves (a run across shards)
 * return the seconds measured, which the shim reports as manual time.
 *
 * Plain C types only: the shim is C++ and cannot include headers that use
 * _Atomic.
 */
#ifndef SP_BENCH_H
#define SP_BENCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_BENCH_ARGS_MAX 4
#define SP_BENCH_COUNTERS_MAX 8

struct sp_bench_counter {
    const char *name;
    double value;
};

struct sp_bench_case {
    const char *name;
    int64_t args[SP_BENCH_ARGS_MAX];     /* one benchmark per argument; 0 ends */
    unsigned items_per_iteration;        /* for items/s; 0 means 1 */
    unsigned bytes_per_iteration_is_arg; /* report bytes/s = arg per iteration */
    uint64_t run_batch;                  /* iterations per call of run; 0 means 1000 */
    uint64_t fixed_iterations;           /* with manual_time: the one run's size */
    int manual_time;                     /* body returns its own measured seconds (<= 0: failed) */
    void *(*setup)(int64_t arg);
    double (*run)(void *state, uint64_t iterations);
    unsigned (*counters)(void *state, struct sp_bench_counter *out);
    void (*teardown)(void *state);
};

/* Every case, NULL-terminated by a case with a NULL name. */
extern const struct sp_bench_case *const sp_bench_cases[];

/* Runs the microbenchmarks with Google Benchmark's own flags. Exit status. */
int sp_bench_micro_main(int argc, char **argv);

/* Per-module tables. */
extern const struct sp_bench_case sp_bench_ring_cases[];
extern const struct sp_bench_case sp_bench_timer_cases[];
extern const struct sp_bench_case sp_bench_mem_cases[];
extern const struct sp_bench_case sp_bench_hash_cases[];
extern const struct sp_bench_case sp_bench_record_cases[];
extern const struct sp_bench_case sp_bench_kafka_cases[];
extern const struct sp_bench_case sp_bench_table_cases[];
extern const struct sp_bench_case sp_bench_snapshot_cases[];
extern const struct sp_bench_case sp_bench_dataflow_cases[];

/* Pins the calling thread to the `index`-th CPU it may run on; 0 or -errno. */
int sp_bench_pin(unsigned index);

#ifdef __cplusplus
}
#endif

#endif /* SP_BENCH_H */
