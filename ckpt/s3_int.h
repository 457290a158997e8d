/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 client's decoders of S3's XML answers, private to ckpt/s3.c and
 * exposed only for its tests and fuzz target (tests/ckpt/fuzz_s3_xml.c).
 * They read S3's flat answers by tag, never past LEN, need no NUL at the
 * end, and return -EBADMSG for what they do not expect; they never assert on
 * the bytes.
 */
#ifndef SP_S3_INT_H
#define SP_S3_INT_H

#include <stddef.h>

#include "sp_s3.h"

/*
 * Copies the text of the first <TAG>...</TAG> in XML[0..len) into OUT[0..cap)
 * with the five XML entities and &#N; (1..127) decoded, NUL-terminated. XML
 * may be NULL when LEN is 0. Returns 0, -ENOENT (no such element), -EBADMSG
 * (unclosed, or a bad entity), -EOVERFLOW (the text does not fit in CAP).
 */
SP_MUST_CHECK int sp_s3_xml_find(const char *xml, size_t len, const char *tag, char *out,
                                 size_t cap);

/*
 * Decodes one ListObjectsV2 page: FN for each <Contents> (at most 1000),
 * its <Key> with PREFIX removed (a key without PREFIX is -EBADMSG) and its
 * <Size>; TOKEN (SP_S3_TOKEN_BYTES_MAX bytes) gets <NextContinuationToken>
 * when <IsTruncated> is true, else "". Returns the number of keys, FN's
 * negative return, -EBADMSG or -EOVERFLOW.
 */
SP_MUST_CHECK int sp_s3_list_decode(const char *xml, size_t len, const char *prefix, char *token,
                                    sp_s3_list_fn fn, void *ctx);

#endif /* SP_S3_INT_H */
