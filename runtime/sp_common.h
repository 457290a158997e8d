/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Basic definitions shared by every spate library: assertions, attributes,
 * cache-line layout and the monotonic clock. Nothing here allocates or keeps
 * state; everything is a macro or a static inline so that it costs nothing on
 * the hot path.
 *
 * Assertions follow the house style: SP_ASSERT is always on and must be O(1);
 * SP_DEBUG_ASSERT may be O(n) and compiles away in release builds (NDEBUG).
 */
#ifndef SP_COMMON_H
#define SP_COMMON_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#define SP_MUST_CHECK __attribute__((warn_unused_result))
#define SP_LIKELY(x) __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SP_NOINLINE __attribute__((noinline))
#define SP_COLD __attribute__((cold))
#define SP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SP_UNUSED __attribute__((unused))

/* Destructive interference size on every x86-64 and most arm64 parts. */
#define SP_CACHELINE_BYTES 64
#define SP_CACHELINE_ALIGNED __attribute__((aligned(SP_CACHELINE_BYTES)))

#define SP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SP_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define SP_NSEC_PER_USEC 1000ULL
#define SP_NSEC_PER_MSEC 1000000ULL
#define SP_NSEC_PER_SEC 1000000000ULL

/*
 * Reports a failed assertion (file, line, expression, shard) on stderr and
 * aborts. Never returns.
 */
void sp_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn)) SP_COLD;

#define SP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (SP_UNLIKELY(!(cond)))                                                                  \
            sp_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

#ifdef NDEBUG
#define SP_DEBUG_ASSERT(cond) ((void)0)
#else
#define SP_DEBUG_ASSERT(cond) SP_ASSERT(cond)
#endif

/* True when the build has AddressSanitizer (gcc and clang spell it apart). */
#if defined(__SANITIZE_ADDRESS__)
#define SP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_ASAN 1
#endif
#endif
#ifndef SP_ASAN
#define SP_ASAN 0
#endif

#if SP_ASAN
#include <sanitizer/asan_interface.h>
#define SP_POISON(addr, size) ASAN_POISON_MEMORY_REGION(addr, size)
#define SP_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define SP_POISON(addr, size) ((void)(addr), (void)(size))
#define SP_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

/* Monotonic time in nanoseconds: the one clock of the runtime. */
static inline uint64_t sp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SP_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/*
 * Wall-clock time in milliseconds since the epoch: for timestamps that leave
 * the process (record timestamps, markers, manifests, retention by age),
 * never for measuring intervals (sp_now_ns).
 */
static inline int64_t sp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int sp_is_pow2(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* Little-endian fields of spate's own formats (checkpoint manifests and
 * segments, state snapshot streams), at any alignment. */
static inline void sp_le_store16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void sp_le_store32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sp_le_store64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t sp_le_load16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t sp_le_load32(const uint8_t *p)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t sp_le_load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#endif /* SP_COMMON_H */
