/* SPDX-License-Identifier: Apache-2.0 */
/* The table of every microbenchmark module, and CPU pinning for them. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>

#include "sp_bench.h"

const struct sp_bench_case *const sp_bench_cases[] = {
    sp_bench_ring_cases,
    sp_bench_timer_cases,
    sp_bench_mem_cases,
    sp_bench_hash_cases,
    NULL,
};

int sp_bench_pin(unsigned index)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return -errno;
    unsigned seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
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
