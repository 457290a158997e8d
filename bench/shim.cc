// SPDX-License-Identifier: Apache-2.0
//
// The only C++ in spate: registers the C benchmark cases of sp_bench.h with
// Google Benchmark and runs them. Each case runs its C body in batches of
// iterations (or once, timing itself, for runs that span shards), so the
// shim's own overhead is one indirect call per batch.
#include <benchmark/benchmark.h>

#include <string>

#include "sp_bench.h"

namespace {

void run_case(benchmark::State &st, const sp_bench_case *c, int64_t arg)
{
    void *state = c->setup != nullptr ? c->setup(arg) : nullptr;
    if (c->setup != nullptr && state == nullptr) {
        st.SkipWithError("setup failed (see the log above)");
        return;
    }
    uint64_t done = 0;
    if (c->manual_time) {
        for (auto _ : st) {
            double seconds = c->run(state, c->fixed_iterations);
            if (seconds <= 0) {
                st.SkipWithError("the run failed (see the log above)");
                break;
            }
            st.SetIterationTime(seconds);
            done += c->fixed_iterations;
        }
    } else {
        uint64_t batch = c->run_batch != 0 ? c->run_batch : 1000;
        while (st.KeepRunningBatch(static_cast<benchmark::IterationCount>(batch))) {
            c->run(state, batch);
            done += batch;
        }
    }
    uint64_t items = c->items_per_iteration != 0 ? c->items_per_iteration : 1;
    st.SetItemsProcessed(static_cast<int64_t>(done * items));
    if (c->bytes_per_iteration_is_arg)
        st.SetBytesProcessed(static_cast<int64_t>(done) * arg);
    if (c->counters != nullptr) {
        sp_bench_counter counters[SP_BENCH_COUNTERS_MAX];
        unsigned n = c->counters(state, counters);
        for (unsigned i = 0; i < n && i < SP_BENCH_COUNTERS_MAX; i++)
            st.counters[counters[i].name] = counters[i].value;
    }
    if (c->teardown != nullptr)
        c->teardown(state);
}

void register_case(const sp_bench_case *c, int64_t arg, bool with_arg)
{
    std::string name = c->name;
    if (with_arg)
        name += "/" + std::to_string(arg);
    auto *b = benchmark::RegisterBenchmark(name.c_str(), run_case, c, arg);
    /* Rates from wall-clock time: several cases keep a second thread busy. */
    if (c->manual_time)
        b->UseManualTime()->Iterations(1);
    else
        b->UseRealTime();
}

} // namespace

extern "C" int sp_bench_micro_main(int argc, char **argv)
{
    for (unsigned t = 0; sp_bench_cases[t] != nullptr; t++) {
        for (const sp_bench_case *c = sp_bench_cases[t]; c->name != nullptr; c++) {
            if (c->args[0] == 0) {
                register_case(c, 0, false);
                continue;
            }
            for (unsigned a = 0; a < SP_BENCH_ARGS_MAX && c->args[a] != 0; a++)
                register_case(c, c->args[a], true);
        }
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
