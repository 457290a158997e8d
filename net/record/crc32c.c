/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C (see sp_crc32c.h): a portable slicing-by-8 path and, on x86-64, a
 * hardware path picked at run time through cpuid.
 *
 * The crc32 instruction has a latency of 3 cycles and a throughput of one
 * per cycle, so a single chain of them runs at a third of what the unit can
 * do (about 8 GB/s at 3 GHz). The hardware path therefore cuts a buffer into
 * three consecutive streams of equal length, runs three independent chains
 * and folds them: with r the raw (uninverted) register and L the stream
 * length in bits,
 *
 *     crc(A|B|C) = crc(A)·x^(2L) + crc(B)·x^L + crc(C)   (mod P),
 *
 * each product taken with one carry-less multiply by a constant x^(s-33) mod
 * P and reduced by one crc32 instruction (crc32_u64(0, v) = v·x^32 mod P, and
 * the 64-bit product of two reflected 32-bit values carries one extra factor
 * x). The constants for every stream length used are computed once, at the
 * first call, with the rest of the tables.
 *
 * Only the functions that use the instructions are compiled for SSE4.2 and
 * PCLMULQDQ (through the target attribute), so the rest of the build needs
 * no -m flag and runs on any x86-64.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "sp_common.h"
#include "sp_crc32c.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define CRC32C_X86 1
#else
#define CRC32C_X86 0
#endif

/* Reflected Castagnoli polynomial. */
#define CRC32C_POLY 0x82F63B78u

/*
 * Words (8 bytes) per stream of the hardware path's short blocks: up to
 * 128, so one short block is up to 3 KiB; below 8 words per stream (a
 * 192-byte block) the fold costs more than the chains it parallelises.
 */
#define CRC32C_SHORT_WORDS_MAX 128u
#define CRC32C_SHORT_WORDS_MIN 8u
/* Words per stream of a long block (8 KiB, 24 KiB a block): the fold is
 * then under 1% of the block's time. */
#define CRC32C_LONG_WORDS 1024u

typedef uint32_t (*crc32c_raw_fn)(uint32_t crc, const uint8_t *p, size_t len);

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static crc32c_raw_fn crc32c_impl;
static const char *crc32c_impl_label = "portable";
static uint32_t crc32c_table[8][256];

/*
 * Fold constants: for a stream of n words, shift[n][0] multiplies by x^(64n)
 * (the middle stream) and shift[n][1] by x^(128n) (the first), both already
 * divided by x^33 as the fold needs. Index CRC32C_SHORT_WORDS_MAX + 1 holds
 * the long block's pair.
 */
static uint64_t crc32c_shift[CRC32C_SHORT_WORDS_MAX + 2][2] __attribute__((aligned(16)));

/* ---- Polynomial arithmetic modulo P (reflected: bit 31 is x^0) ---- */

static uint32_t crc32c_multmodp(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (unsigned bit = 0; bit < 32; bit++) {
        if (a & (0x80000000u >> bit))
            product ^= b;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return product;
}

/* x^k mod P by square and multiply. */
static uint32_t crc32c_xpow(uint64_t k)
{
    uint32_t result = 0x80000000u; /* x^0 */
    uint32_t base = 0x40000000u;   /* x^1 */
    while (k != 0) {
        if (k & 1)
            result = crc32c_multmodp(result, base);
        base = crc32c_multmodp(base, base);
        k >>= 1;
    }
    return result;
}

/* ---- Portable: slicing-by-8 ---- */

static void crc32c_tables_init(void)
{
    for (unsigned n = 0; n < 256; n++) {
        uint32_t c = n;
        for (unsigned k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_table[0][n] = c;
    }
    for (unsigned n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (unsigned t = 1; t < 8; t++) {
            c = (c >> 8) ^ crc32c_table[0][c & 0xff];
            crc32c_table[t][n] = c;
        }
    }
    for (unsigned n = 1; n <= CRC32C_SHORT_WORDS_MAX + 1; n++) {
        uint64_t words = n <= CRC32C_SHORT_WORDS_MAX ? n : CRC32C_LONG_WORDS;
        crc32c_shift[n][0] = crc32c_xpow(64 * words - 33);
        crc32c_shift[n][1] = crc32c_xpow(128 * words - 33);
    }
}

static inline uint64_t crc32c_load64le(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    const uint32_t(*t)[256] = (const uint32_t(*)[256])crc32c_table;
    while (len >= 8) {
        uint64_t w = crc32c_load64le(p) ^ crc;
        crc = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^ t[5][(w >> 16) & 0xff] ^
              t[4][(w >> 24) & 0xff] ^ t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^
              t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    return crc;
}

/* ---- Hardware: SSE4.2 crc32, three streams folded with PCLMULQDQ ---- */

#if CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw1(uint32_t crc, const uint8_t *p,
                                                             size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        c = _mm_crc32_u64(c, crc32c_load64le(p));
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len-- > 0)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

/*
 * One block of three streams of `words` words each, continuing from `crc`;
 * `k` is the stream length's pair of fold constants.
 */
__attribute__((target("sse4.2,pclmul"))) static inline uint32_t
crc32c_hw_block(uint32_t crc, const uint8_t *p, size_t words, const uint64_t *k)
{
    const uint8_t *p1 = p + words * 8;
    const uint8_t *p2 = p1 + words * 8;
    uint64_t c0 = crc, c1 = 0, c2 = 0;
    for (size_t i = 0; i < words; i++) {
        c0 = _mm_crc32_u64(c0, crc32c_load64le(p + i * 8));
        c1 = _mm_crc32_u64(c1, crc32c_load64le(p1 + i * 8));
        c2 = _mm_crc32_u64(c2, crc32c_load64le(p2 + i * 8));
    }
    __m128i kk = _mm_load_si128((const __m128i *)k);
    __m128i a = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(uint32_t)c0), kk, 0x10);
    __m128i b = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(uint32_t)c1), kk, 0x00);
    uint64_t folded = (uint64_t)_mm_cvtsi128_si64(_mm_xor_si128(a, b));
    return (uint32_t)_mm_crc32_u64(0, folded) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc32c_hw3(uint32_t crc, const uint8_t *p,
                                                                    size_t len)
{
    const size_t long_bytes = 3 * 8 * CRC32C_LONG_WORDS;
    while (len >= long_bytes) {
        crc = crc32c_hw_block(crc, p, CRC32C_LONG_WORDS, crc32c_shift[CRC32C_SHORT_WORDS_MAX + 1]);
        p += long_bytes;
        len -= long_bytes;
    }
    while (len >= 24 * CRC32C_SHORT_WORDS_MIN) {
        size_t words = SP_MIN(len / 24, (size_t)CRC32C_SHORT_WORDS_MAX);
        crc = crc32c_hw_block(crc, p, words, crc32c_shift[words]);
        p += 24 * words;
        len -= 24 * words;
    }
    return crc32c_hw1(crc, p, len);
}
#endif /* CRC32C_X86 */

/* ---- Dispatch ---- */

static void crc32c_init(void)
{
    crc32c_tables_init();
    crc32c_impl = crc32c_sw;
#if CRC32C_X86
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2)) {
        crc32c_impl = crc32c_hw1;
        crc32c_impl_label = "sse4.2";
        if (ecx & bit_PCLMUL) {
            crc32c_impl = crc32c_hw3;
            crc32c_impl_label = "sse4.2+pclmul";
        }
    }
#endif
}

uint32_t sp_crc32c(uint32_t crc, const void *data, size_t len)
{
    SP_ASSERT(data != NULL || len == 0);
    pthread_once(&crc32c_once, crc32c_init);
    if (len == 0)
        return crc;
    return ~crc32c_impl(~crc, data, len);
}

uint32_t sp_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    SP_ASSERT(data != NULL || len == 0);
    pthread_once(&crc32c_once, crc32c_init);
    if (len == 0)
        return crc;
    return ~crc32c_sw(~crc, data, len);
}

const char *sp_crc32c_impl_name(void)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_impl_label;
}
