/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target over the checkpoint manifest decoder (ckpt/manifest.c),
 * which reads bytes from storage that a restore must not trust. Each input
 * is decoded twice: as it is, and with its length field and CRC-32C trailer
 * repaired (otherwise nearly every mutation dies at the checksum and the
 * structural checks behind it are never reached). Either way it is refused
 * with -EBADMSG, -EPROTONOSUPPORT or -E2BIG and leaves the manifest empty,
 * or it decodes, encodes back to exactly the same bytes (one encoding per
 * manifest), and holds only segments of earlier-or-same checkpoints and
 * shards in range. Seeds: corpus/manifest (manifests test_ckpt_store wrote).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ckpt_store.h"
#include "sp_crc32c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sp_ckpt_manifest m;
static uint8_t *out, *fixed;

static void check(const uint8_t *data, size_t size)
{
    int err = sp_ckpt_manifest_decode(&m, data, size);
    if (err < 0) {
        SP_ASSERT(err == -EBADMSG || err == -EPROTONOSUPPORT || err == -E2BIG);
        SP_ASSERT(m.segment_count == 0);
        SP_ASSERT(m.position_count == 0);
        return;
    }
    SP_ASSERT(sp_ckpt_manifest_encoded_bytes(&m) == size);
    SP_ASSERT(sp_ckpt_manifest_encode(&m, out, SP_CKPT_MANIFEST_BYTES_MAX) == (int64_t)size);
    SP_ASSERT(memcmp(out, data, size) == 0);
    for (uint32_t i = 0; i < m.segment_count; i++) {
        SP_ASSERT(m.segments[i].written_by_id <= m.checkpoint_id);
        SP_ASSERT(m.segments[i].shard < m.shard_count);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (out == NULL) {
        SP_ASSERT(sp_ckpt_manifest_init(&m, 256, 64, 64 << 10) == 0);
        out = malloc(SP_CKPT_MANIFEST_BYTES_MAX);
        fixed = malloc(SP_CKPT_MANIFEST_BYTES_MAX);
        SP_ASSERT(out != NULL && fixed != NULL);
    }
    check(data, size);
    if (size < 68 || size > SP_CKPT_MANIFEST_BYTES_MAX)
        return 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) /* total bytes, little-endian, at offset 16 */
        fixed[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = sp_crc32c(0, fixed, size - 4);
    for (int i = 0; i < 4; i++)
        fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    check(fixed, size);
    return 0;
}
