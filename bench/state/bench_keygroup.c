/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key hashing benchmarks:
 *  - xxh3/N: xxh3-64 of an N-byte key (8, 16, 64), the key changing every
 *    iteration so the hash cannot be hoisted.
 *  - keygroup/16: hash a 16-byte key and map it to its key group and shard.
 */
#include <stdlib.h>
#include <string.h>

#include "sp_bench.h"
#include "sp_keygroup.h"

struct hash_bench {
    size_t len;
    uint64_t sink;
    unsigned char key[64];
};

static void *hash_setup(int64_t len)
{
    struct hash_bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->len = (size_t)(len > 0 ? len : 16);
    for (unsigned i = 0; i < sizeof(b->key); i++)
        b->key[i] = (unsigned char)(i * 31 + 7);
    return b;
}

static double hash_run(void *state, uint64_t iterations)
{
    struct hash_bench *b = state;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        memcpy(b->key, &i, sizeof(i));
        acc += sp_key_hash(b->key, b->len);
    }
    b->sink += acc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static double keygroup_run(void *state, uint64_t iterations)
{
    struct hash_bench *b = state;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        memcpy(b->key, &i, sizeof(i));
        uint32_t group = sp_key_group(sp_key_hash(b->key, b->len), 32768);
        acc += sp_key_group_owner(group, 32768, 16);
    }
    b->sink += acc;
    __asm__ volatile("" : : "r"(b->sink) : "memory");
    return 0;
}

static void hash_teardown(void *state)
{
    free(state);
}

const struct sp_bench_case sp_bench_hash_cases[] = {
    {.name = "xxh3",
     .args = {8, 16, 64},
     .run_batch = 4096,
     .bytes_per_iteration_is_arg = 1,
     .setup = hash_setup,
     .run = hash_run,
     .teardown = hash_teardown},
    {.name = "keygroup",
     .args = {16},
     .run_batch = 4096,
     .setup = hash_setup,
     .run = keygroup_run,
     .teardown = hash_teardown},
    {.name = NULL},
};
