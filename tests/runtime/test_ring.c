/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPSC ring: empty and full rings, partial batches, FIFO order, index
 * wrap-around past 2^32, the high-water mark, bad capacities, and a
 * two-thread run that checks every message arrives once and in order (this
 * suite also runs under ThreadSanitizer).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sp_ring.h"

static struct sp_msg msg_of(uintptr_t v)
{
    return (struct sp_msg){.fn = NULL, .arg = (void *)v};
}

static void test_init_rejects_bad_capacity(void **state)
{
    (void)state;
    struct sp_ring ring;
    assert_int_equal(sp_ring_init(&ring, 0, 0), -EINVAL);
    assert_int_equal(sp_ring_init(&ring, 3, 0), -EINVAL);
    assert_int_equal(sp_ring_init(&ring, 1000, 0), -EINVAL);
    assert_int_equal(sp_ring_init(&ring, SP_RING_CAPACITY_MAX * 2u, 0), -EINVAL);
    assert_int_equal(sp_ring_init(&ring, 1, 0), 0);
    sp_ring_deinit(&ring);
}

static void test_empty_pop_returns_zero(void **state)
{
    (void)state;
    struct sp_ring ring;
    assert_int_equal(sp_ring_init(&ring, 8, 0), 0);
    struct sp_msg out[4];
    assert_true(sp_ring_empty(&ring));
    assert_int_equal(sp_ring_pop(&ring, out, 4), 0);
    assert_int_equal(sp_ring_count_approx(&ring), 0);
    sp_ring_deinit(&ring);
}

static void test_full_push_is_partial_then_zero(void **state)
{
    (void)state;
    struct sp_ring ring;
    assert_int_equal(sp_ring_init(&ring, 8, 0), 0);
    struct sp_msg in[16];
    for (unsigned i = 0; i < 16; i++)
        in[i] = msg_of(i);
    assert_int_equal(sp_ring_push(&ring, in, 5), 5);
    /* Only 3 slots left: a batch of 5 is cut to 3, never overwrites. */
    assert_int_equal(sp_ring_push(&ring, in + 5, 5), 3);
    assert_int_equal(sp_ring_push(&ring, in, 1), 0);
    assert_int_equal(sp_ring_count_approx(&ring), 8);
    assert_int_equal(ring.prod.count_max, 8);

    struct sp_msg out[16];
    assert_int_equal(sp_ring_pop(&ring, out, 16), 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal((uintptr_t)out[i].arg, i);
    assert_true(sp_ring_empty(&ring));
    sp_ring_deinit(&ring);
}

static void test_batches_keep_fifo_order(void **state)
{
    (void)state;
    struct sp_ring ring;
    assert_int_equal(sp_ring_init(&ring, 16, 0), 0);
    uintptr_t next_in = 0, next_out = 0;
    struct sp_msg buf[7];
    /* Uneven push and pop sizes walk the indices round the ring many times. */
    for (unsigned round = 0; round < 1000; round++) {
        unsigned want = 1 + round % 7;
        for (unsigned i = 0; i < want; i++)
            buf[i] = msg_of(next_in + i);
        next_in += sp_ring_push(&ring, buf, want);
        unsigned got = sp_ring_pop(&ring, buf, 1 + (round * 3) % 5);
        for (unsigned i = 0; i < got; i++)
            assert_int_equal((uintptr_t)buf[i].arg, next_out++);
    }
    unsigned got;
    while ((got = sp_ring_pop(&ring, buf, 7)) > 0) {
        for (unsigned i = 0; i < got; i++)
            assert_int_equal((uintptr_t)buf[i].arg, next_out++);
    }
    assert_int_equal(next_in, next_out);
    sp_ring_deinit(&ring);
}

static void test_index_wraparound(void **state)
{
    (void)state;
    struct sp_ring ring;
    /* Start 5 below 2^32 so the indices overflow within the first batch. */
    assert_int_equal(sp_ring_init(&ring, 8, UINT32_MAX - 4), 0);
    struct sp_msg in[8], out[8];
    for (unsigned round = 0; round < 10; round++) {
        for (unsigned i = 0; i < 8; i++)
            in[i] = msg_of(round * 8 + i);
        assert_int_equal(sp_ring_push(&ring, in, 8), 8);
        assert_int_equal(sp_ring_push(&ring, in, 1), 0);
        assert_int_equal(sp_ring_count_approx(&ring), 8);
        assert_int_equal(sp_ring_pop(&ring, out, 8), 8);
        for (unsigned i = 0; i < 8; i++)
            assert_int_equal((uintptr_t)out[i].arg, round * 8 + i);
        assert_true(sp_ring_empty(&ring));
    }
    assert_true(atomic_load(&ring.prod.tail) < 100); /* it did wrap */
    sp_ring_deinit(&ring);
}

/* ---- Two threads ---- */

#define THREAD_MESSAGES 2000000u

struct pair {
    struct sp_ring ring;
    uint64_t received;
    uint64_t out_of_order;
};

static void *consumer(void *arg)
{
    struct pair *p = arg;
    struct sp_msg out[32];
    uintptr_t expect = 0;
    while (expect < THREAD_MESSAGES) {
        unsigned n = sp_ring_pop(&p->ring, out, 1 + expect % 32);
        for (unsigned i = 0; i < n; i++) {
            if ((uintptr_t)out[i].arg != expect)
                p->out_of_order++;
            expect++;
        }
    }
    p->received = expect;
    return NULL;
}

static void test_two_threads_deliver_everything_in_order(void **state)
{
    (void)state;
    static struct pair p;
    assert_int_equal(sp_ring_init(&p.ring, 64, UINT32_MAX - 1000), 0);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, consumer, &p), 0);
    struct sp_msg in[32];
    uintptr_t next = 0;
    while (next < THREAD_MESSAGES) {
        unsigned want = 1 + next % 29;
        if (want > THREAD_MESSAGES - next)
            want = (unsigned)(THREAD_MESSAGES - next);
        for (unsigned i = 0; i < want; i++)
            in[i] = msg_of(next + i);
        next += sp_ring_push(&p.ring, in, want);
    }
    pthread_join(thread, NULL);
    assert_int_equal(p.received, THREAD_MESSAGES);
    assert_int_equal(p.out_of_order, 0);
    assert_true(p.ring.prod.count_max <= 64);
    sp_ring_deinit(&p.ring);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_capacity),
        cmocka_unit_test(test_empty_pop_returns_zero),
        cmocka_unit_test(test_full_push_is_partial_then_zero),
        cmocka_unit_test(test_batches_keep_fifo_order),
        cmocka_unit_test(test_index_wraparound),
        cmocka_unit_test(test_two_threads_deliver_everything_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
