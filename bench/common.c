/* SPDX-License-Identifier: Apache-2.0 */
/* The table of every microbenchmark module, and CPU pinning for them. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>

#include "sp_bench.h"

const struct sp_bench_case *const sp_bench_cases[] = {
    sp_bench_ring_cases,     /* runtime */
    sp_bench_timer_cases,    /* runtime */
    sp_bench_mem_cases,      /* runtime */
    sp_bench_hash_cases,     /* state */
    sp_bench_record_cases,   /* net */
    sp_bench_kafka_cases,    /* net */
    sp_bench_table_cases,    /* state */
    sp_bench_snapshot_cases, /* state */
    sp_bench_dataflow_cases, /* ops */
    NULL,
};

/*
 * The CPUs the process could use when it started: pinning one thread must not
 * shrink the set that the next thread's index is taken from.
 */
static cpu_set_t cpus_at_start;
static int cpus_at_start_err;

__attribute__((constructor)) static void cpus_record(void)
{
    if (sched_getaffinity(0, sizeof(cpus_at_start), &cpus_at_start) != 0)
        cpus_at_start_err = errno;
}

int sp_bench_pin(unsigned index)
{
    if (cpus_at_start_err != 0)
        return -cpus_at_start_err;
    unsigned seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &cpus_at_start))
            continue;
        if (seen++ == index) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return -pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
        }
    }
    return -EINVAL;
}
