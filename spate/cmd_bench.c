/* SPDX-License-Identifier: Apache-2.0 */
/* spate bench micro: hands the --benchmark_* flags to Google Benchmark. */
#include <stdio.h>

#include "commands.h"
#ifdef SPATE_HAVE_BENCH
#include "sp_bench.h"
#endif

int spate_bench_micro(const struct spate_cli *cli)
{
#ifdef SPATE_HAVE_BENCH
    char *argv[SPATE_CLI_ARGS_MAX + 2];
    int argc = 0;
    argv[argc++] = (char *)"spate bench micro";
    for (int i = 0; i < cli->pass_count; i++)
        argv[argc++] = cli->pass[i];
    argv[argc] = NULL;
    return sp_bench_micro_main(argc, argv);
#else
    (void)cli;
    fprintf(stderr, "spate: bench micro: this build has no Google Benchmark "
                    "(install libbenchmark-dev and rebuild)\n");
    return 2;
#endif
}
