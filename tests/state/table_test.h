/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the keyed-state table tests run on: a managed-memory pool of
 * TABLE_TEST_POOL_BYTES (64 MiB unless the test defines it first) in
 * segments of SEG_BYTES (4 KiB: small, so tables span many), one budget
 * over all of it, and the cmocka setup/teardown that make and check them
 * (every segment must be back when a test ends); and where spill files go.
 */
#ifndef SP_TABLE_TEST_H
#define SP_TABLE_TEST_H

#include <stdlib.h>

#include "sp_mem.h"

#ifndef TABLE_TEST_POOL_BYTES
#define TABLE_TEST_POOL_BYTES (64u << 20)
#endif
#define SEG_BYTES 4096u

static struct sp_segment_pool pool;
static struct sp_budget budget;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(sp_segment_pool_init(&pool, TABLE_TEST_POOL_BYTES, SEG_BYTES), 0);
    sp_budget_init(&budget, &pool, "test", pool.segment_count);
    return 0;
}

/* Where the spill tests put their spill files: $TMPDIR, else /tmp. */
static inline const char *table_test_spill_dir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir != NULL && *dir != '\0' ? dir : "/tmp";
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(budget.used, 0);
    sp_segment_pool_deinit(&pool);
    return 0;
}

#endif /* SP_TABLE_TEST_H */
