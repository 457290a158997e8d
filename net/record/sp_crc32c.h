/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * Kafka's RecordBatch v2. The value is the usual one (pre- and post-inverted,
 * "123456789" gives 0xE3069283), and calls chain: start with 0 and pass the
 * previous result to continue over the next piece, as with zlib's crc32().
 *
 * The implementation is picked once, at first use, from what the CPU has:
 * SSE4.2's crc32 instruction on three interleaved streams whose partial
 * checksums are folded together with carry-less multiplication (PCLMULQDQ),
 * SSE4.2 alone on one stream, or portable slicing-by-8 tables elsewhere. All
 * of them give the same value; sp_crc32c_portable() runs the portable code
 * whatever the CPU, so tests can compare the two.
 *
 * Pure functions of their arguments: any thread may call them at any time.
 */
#ifndef SP_CRC32C_H
#define SP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of `len` bytes at `data`, continuing from `crc` (0 to start). */
uint32_t sp_crc32c(uint32_t crc, const void *data, size_t len);

/* The same value through the portable table code, never the hardware. */
uint32_t sp_crc32c_portable(uint32_t crc, const void *data, size_t len);

/*
 * Name of the implementation sp_crc32c() uses on this CPU:
 * "sse4.2+pclmul", "sse4.2" or "portable".
 */
const char *sp_crc32c_impl_name(void);

#endif /* SP_CRC32C_H */
